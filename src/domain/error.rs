//! The domain's own errors. They say what is wrong and which kind of wrong it is; each layer
//! above wraps them, and only the HTTP layer turns a kind into a status code.

use serde_json::{json, Value};

/// A value from outside that is not acceptable: the field it came in, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{summary}")]
pub struct ParseError {
    pub field: String,
    pub message: String,
    /// One line for people: names the field and usually the value.
    pub summary: String,
    /// Extra facts per problem (a JSON Schema error's path, a code check's line).
    pub details: Option<Value>,
}

impl ParseError {
    /// `invalid `field`: message`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        let (field, message) = (field.into(), message.into());
        ParseError {
            summary: format!("invalid `{field}`: {message}"),
            field,
            message,
            details: None,
        }
    }

    /// The same error with its own one-line summary.
    pub fn summarized(mut self, summary: impl Into<String>) -> Self {
        self.summary = summary.into();
        self
    }

    /// The same error with its own details (a list of problems).
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// The problems as a JSON list: the details given, or `[{field, message}]`.
    pub fn problems(&self) -> Value {
        self.details
            .clone()
            .unwrap_or_else(|| json!([{"field": self.field, "message": self.message}]))
    }
}

/// What kind of failure a coded error is (package installs, resolver answers). The HTTP
/// layer maps each to a status; jobs that fail in the background store that status too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The request itself is malformed.
    Malformed,
    /// Well-formed but refused by a rule (a wheel that is not pure Python).
    Rejected,
    NotFound,
    Conflict,
    Forbidden,
    TooLarge,
    /// A dependency (pip's index) failed.
    Upstream,
    /// A dependency took too long.
    Timeout,
    /// Not possible on this server now; may work later.
    Unavailable,
    Internal,
}

impl Fault {
    /// The HTTP status conventionally used for this kind (also stored with failed jobs).
    pub fn status_code(self) -> u16 {
        match self {
            Fault::Malformed => 400,
            Fault::Rejected => 422,
            Fault::NotFound => 404,
            Fault::Conflict => 409,
            Fault::Forbidden => 403,
            Fault::TooLarge => 413,
            Fault::Upstream => 502,
            Fault::Timeout => 504,
            Fault::Unavailable => 503,
            Fault::Internal => 500,
        }
    }
}
