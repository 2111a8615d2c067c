//! The `maestro` binary's client commands: they talk to a server over its public API (never
//! to its database), with the URL and token from flags, the environment or a saved profile.

mod commands;
mod inspect;
mod live;
mod profile;
mod project_cmd;
mod term;

pub use commands::{dispatch, ClientCommand};
pub use profile::Remote;
