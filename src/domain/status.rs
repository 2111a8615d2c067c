//! Statuses, as enums. Each is stored and shown as its lowercase name; a stored name that is
//! not one of them fails the read (`FromStr`), never becomes a default.

/// A text enum: `as_str`, `Display`, `FromStr` (naming the kind on error) and `Serialize` as
/// the name.
macro_rules! text_enum_impl {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(concat!("{:?} is not a ", stringify!($name)), other)),
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

pub(crate) use text_enum_impl as text_enum;

text_enum!(
    /// Where an execution or one of its calls (a step, a workflow node's attempt) stands.
    CallStatus {
        /// An execution waiting in the queue for a server to run it.
        Queued = "queued",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        /// Stopped (or taken off the queue) by `POST /executions/{id}/cancel`.
        Cancelled = "cancelled",
        /// A workflow node not run because an ancestor failed.
        Skipped = "skipped",
    }
);

text_enum!(
    /// Where a schedule's run stands: `pending` is a retry waiting for its time.
    RunStatus {
        Pending = "pending",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Skipped = "skipped",
        /// Its execution was cancelled: it ends without retries.
        Cancelled = "cancelled",
    }
);

text_enum!(
    /// Where a package install stands.
    JobStatus {
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
    }
);

impl CallStatus {
    pub fn is_finished(self) -> bool {
        !matches!(self, CallStatus::Running | CallStatus::Queued)
    }
}

impl RunStatus {
    /// Whether a run in this status has ended (it gets a `finished_at`).
    pub fn is_finished(self) -> bool {
        !matches!(self, RunStatus::Pending | RunStatus::Running)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_fail() {
        for s in CallStatus::ALL {
            assert_eq!(s.as_str().parse::<CallStatus>(), Ok(*s));
        }
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>(), Ok(*s));
        }
        assert!("done".parse::<CallStatus>().is_err());
        assert_eq!(serde_json::to_value(RunStatus::Pending).unwrap(), "pending");
    }
}
