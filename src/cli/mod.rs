//! The `maestro` binary's client commands: they talk to a server over its public API (never
//! to its database), with the URL and token from flags, the environment or a saved profile.

mod commands;
mod inspect;
mod profile;
mod project_cmd;

use std::io::IsTerminal;

pub use commands::{dispatch, ClientCommand};
pub use profile::Remote;

/// Colours only for a person at a terminal, and never under `NO_COLOR`.
pub fn color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}
