//! The engine's errors. Callers decide on these (a schedule requeues on `Quota`, a webhook
//! answers 404 on `NotFound`); only the HTTP layer turns them into statuses.

use serde_json::Value;

use crate::domain::ParseError;
use crate::packages::Failure;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    /// A request field is malformed (a run's config, a tenant's quotas).
    #[error(transparent)]
    Malformed(ParseError),
    /// Input or code refused by a rule: the input schema, a code check, a stored schema.
    #[error(transparent)]
    InputInvalid(ParseError),
    #[error("{0}")]
    Conflict(String),
    /// What was asked for has ended and cannot be used again (a session).
    #[error("{0}")]
    Gone(String),
    /// A session held by another server of the cluster, named.
    #[error("{message}")]
    Elsewhere { server: String, message: String },
    #[error("{0}")]
    TooLarge(String),
    /// The tenant is over a quota; trying again after `retry_after_seconds` may work.
    #[error("{message}")]
    Quota { message: String, retry_after_seconds: u64 },
    /// The tenant's packages could not be made ready.
    #[error(transparent)]
    Packages(#[from] Failure),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The server is shutting down and starts nothing new; another server (or this one,
    /// restarted) will.
    #[error("the server is shutting down; try again")]
    ShuttingDown,
    /// The run ended but its record is not committed (the database is unavailable; it is
    /// written when the database is back, or the write failed).
    #[error("execution {0} ran but its record could not be written yet; check it later")]
    NotRecorded(String),
    #[error("internal error: {0}")]
    Internal(#[from] anyhow::Error),
}

impl Error {
    /// What may be shown to a tenant (a schedule run's reason): internal details are not.
    pub fn public(&self) -> String {
        match self {
            Error::Internal(_) | Error::Store(StoreError::Db(_) | StoreError::Corrupt(_)) => "internal error".into(),
            Error::Store(StoreError::Unavailable(_)) => "the database was unavailable".into(),
            other => other.to_string(),
        }
    }
}

impl Error {
    /// Input that broke a rule, with the list of violations.
    pub fn input(field: &str, summary: impl Into<String>, violations: Value) -> Self {
        let summary = summary.into();
        Error::InputInvalid(
            ParseError::new(field, summary.clone())
                .summarized(summary)
                .with_details(violations),
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
