//! matplotlib's font list, built once per runtime directory. Without it every fresh instance
//! that draws scans and parses the bundled fonts again (matplotlib cannot write its cache in
//! the read-only guest). The guest builds the list with matplotlib's own code and hands it
//! over as its result; the host writes it into the guest root's `MPLCONFIGDIR`, where every
//! later instance finds it.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::runtime::write_atomic;
use super::{Budget, NoHost, Sandbox, UNMETERED_FUEL};

const BUILD: &str = "import json, _host\n\
try:\n    \
    import matplotlib.font_manager as fm\n    \
    out = {'name': 'fontlist-v%s.json' % fm.FontManager.__version__,\n           \
           'json': json.dumps(fm.fontManager, cls=fm._JSONEncoder, indent=2)}\n    \
    _host.call(json.dumps({'op': 'end', 'ok': True, 'output': out}).encode())\n\
except BaseException as e:\n    \
    _host.call(json.dumps({'op': 'end', 'ok': False, 'error': {'kind': 'crash', 'message': repr(e)}}).encode())\n";

impl Sandbox {
    /// Build matplotlib's font list into the guest's config directory unless one is there.
    /// A failure only costs speed (matplotlib rebuilds the list per instance), so it is logged.
    pub(super) fn ensure_font_cache(&self) {
        let dir = self.paths.mpl_config();
        let present = std::fs::read_dir(&dir).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("fontlist-"))
        });
        if present || !self.paths.mpl_data.is_dir() {
            return;
        }
        if let Err(e) = self.build_font_cache(&dir) {
            tracing::warn!(error = %e, "could not build matplotlib's font list; instances will build their own");
        }
    }

    fn build_font_cache(&self, dir: &std::path::Path) -> anyhow::Result<()> {
        let mut inst = self
            .new_instance(512 << 20)
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        let budget = Budget {
            fuel: UNMETERED_FUEL,
            deadline: Instant::now() + Duration::from_secs(30),
            cancel: super::Cancel::NEVER,
        };
        let end = inst.turn(BUILD, Vec::new(), budget, Box::new(NoHost));
        let frame: Value = end
            .frame
            .as_deref()
            .and_then(|b| serde_json::from_slice(b).ok())
            .ok_or_else(|| anyhow::anyhow!("the guest reported nothing (status {})", end.status))?;
        let (Some(name), Some(json)) = (frame["output"]["name"].as_str(), frame["output"]["json"].as_str()) else {
            anyhow::bail!("building the font list failed: {}", frame["error"]);
        };
        let plain = name.starts_with("fontlist-v")
            && name.ends_with(".json")
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'));
        anyhow::ensure!(plain, "unexpected font list name {name:?}");
        write_atomic(&dir.join(name), json.as_bytes())?;
        tracing::info!(file = %dir.join(name).display(), "built matplotlib's font list");
        Ok(())
    }
}
