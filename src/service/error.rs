//! The services' errors: what a rule refused and why, or what failed below. Only the HTTP
//! layer turns a kind into a status.

use crate::domain::ParseError;
use crate::packages::Failure;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value refused by a rule (a schema that does not compile, a limit out of range).
    #[error(transparent)]
    Invalid(#[from] ParseError),
    /// A value that is not even of the right form (a version that is not a number).
    #[error(transparent)]
    Malformed(ParseError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Allowed to others, or not in this state (a quota of things, a managed row).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    TooLarge(String),
    #[error(transparent)]
    Engine(#[from] crate::engine::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Packages(#[from] Failure),
    #[error("internal error: {0}")]
    Internal(#[from] anyhow::Error),
}

impl Error {
    /// A rule about one field: `invalid `field`: message`.
    pub fn invalid(field: &str, message: impl Into<String>) -> Error {
        Error::Invalid(ParseError::new(field, message))
    }

    /// A malformed value of one field (a 400 naming it).
    pub fn malformed(field: &str, message: impl Into<String>) -> Error {
        Error::Malformed(ParseError::new(field, message))
    }

    /// A rule about one field, with its own one-line summary.
    pub fn invalid_as(field: &str, message: impl Into<String>, summary: impl Into<String>) -> Error {
        Error::Invalid(ParseError::new(field, message).summarized(summary))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
