//! Where the CLI finds its server: `--url`/`--token`, else `MAESTRO_URL`/`MAESTRO_TOKEN`,
//! else a profile saved by `maestro login` in the user's config directory
//! (`~/.config/maestro/config.toml` on Linux; `MAESTRO_CONFIG` names another file).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::client::Client;

/// Where a server started with the defaults listens.
const LOCAL: &str = "http://127.0.0.1:8000";

/// The saved profiles.
#[derive(Default, Serialize, Deserialize)]
pub struct Config {
    /// The profile used when none is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_profile: Option<String>,
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct Profile {
    pub url: String,
    pub token: String,
}

/// The config file's path.
pub fn path() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("MAESTRO_CONFIG") {
        return Ok(PathBuf::from(p));
    }
    let dir = dirs::config_dir().context("no config directory for this user: set MAESTRO_CONFIG")?;
    Ok(dir.join("maestro").join("config.toml"))
}

impl Config {
    pub fn load() -> anyhow::Result<Config> {
        let path = path()?;
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).with_context(|| format!("reading {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Written readable by its owner only: it holds tokens.
    pub fn save(&self) -> anyhow::Result<PathBuf> {
        let path = path()?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = toml::to_string_pretty(self)?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        use std::io::Write as _;
        opts.open(&path)
            .and_then(|mut f| {
                // Also when the file was there before, readable by others.
                #[cfg(unix)]
                f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
                f.write_all(text.as_bytes())
            })
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

/// How a command was told where to go.
#[derive(clap::Args, Clone)]
pub struct Remote {
    /// The server's base URL (else MAESTRO_URL, else the default profile's; a saved token is
    /// only sent to the URL it was saved with).
    #[arg(long, env = "MAESTRO_URL", global = true)]
    pub url: Option<String>,
    /// An API token (else MAESTRO_TOKEN, else the profile's).
    #[arg(long, env = "MAESTRO_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// A profile saved by `maestro login`, used whole (else MAESTRO_PROFILE, else the default
    /// profile under the URL and token given).
    #[arg(long, env = "MAESTRO_PROFILE", global = true)]
    pub profile: Option<String>,
}

impl Remote {
    /// The client these say, flags and environment over the profile.
    pub fn client(&self) -> anyhow::Result<Client> {
        let config = Config::load()?;
        // A profile named here (flag or MAESTRO_PROFILE) is used whole.
        if let Some(n) = &self.profile {
            return match config.profiles.get(n) {
                Some(p) => Ok(Client::new(&p.url, &p.token)),
                None => bail!("no profile `{n}`: `maestro login URL --profile {n}` saves one"),
            };
        }
        let saved = config.default_profile.as_ref().and_then(|n| config.profiles.get(n));
        let url = self.url.clone().or(saved.map(|p| p.url.clone()));
        let url = url.as_deref().unwrap_or(LOCAL);
        // The saved token only goes to the server it was saved for.
        let same_server = |p: &&Profile| p.url.trim_end_matches('/') == url.trim_end_matches('/');
        let token = self
            .token
            .clone()
            .or(saved.filter(same_server).map(|p| p.token.clone()));
        match token {
            Some(t) => Ok(Client::new(url, &t)),
            None => bail!(
                "no server to talk to: run `maestro login URL` once, or set MAESTRO_URL and MAESTRO_TOKEN \
                 (or pass --url and --token)"
            ),
        }
    }
}
