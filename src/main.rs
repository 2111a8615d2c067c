//! The `maestro` command line.

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use maestro::config::Settings;

#[derive(Parser)]
#[command(
    name = "maestro",
    version,
    about = "Run untrusted Python functions in a WebAssembly sandbox"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server (SQLite in ./data unless DATABASE_URL says otherwise).
    Serve(Settings),
    /// Mint an API token signed with the server's secret.
    Token {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
        /// Give the token the admin role.
        #[arg(long)]
        admin: bool,
        /// Lifetime, e.g. 90s, 30m, 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = maestro::auth::parse_ttl)]
        ttl: std::time::Duration,
        #[command(flatten)]
        settings: Settings,
    },
    /// Fetch the Python runtime and compile it into the cache, then exit.
    Prepare(Settings),
    /// Exit 0 when the server's /health answers 200 (for container health checks).
    Healthcheck {
        #[arg(long, env = "MAESTRO_HEALTH_URL", default_value = "http://127.0.0.1:8000/health")]
        url: String,
    },
    /// Example functions and webhooks (the seed's workflows).
    Examples {
        #[command(subcommand)]
        action: ExamplesAction,
    },
    /// Measure per-call latency against a `python3 -c` baseline; see BENCHMARKS.md.
    Bench {
        /// Calls per measurement.
        #[arg(long, default_value_t = 300)]
        iterations: usize,
        #[command(flatten)]
        settings: Settings,
    },
}

#[derive(Subcommand)]
enum ExamplesAction {
    /// Create (or bring up to date) the example functions and webhooks on a running server.
    Load {
        /// The server's base URL.
        #[arg(long, env = "MAESTRO_URL", default_value = "http://127.0.0.1:8000")]
        url: String,
        /// An API token; the examples go into its tenant.
        #[arg(long, env = "MAESTRO_TOKEN", hide_env_values = true)]
        token: String,
        /// Load the `*.json` bundles of this directory instead of the built-in ones.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// Put this before every webhook path (e.g. `acme/`): paths are shared by all tenants.
        #[arg(long, default_value = "")]
        path_prefix: String,
    },
}

fn init_logging(settings: &Settings) {
    use tracing_subscriber::prelude::*;
    let default = if settings.debug {
        "debug,wasmtime=info,cranelift=info"
    } else {
        "info"
    };
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let otlp = settings
        .otlp_endpoint
        .as_deref()
        .map(maestro::logs::otlp::OtlpLayer::new);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter).with(otlp);
    if settings.log_format == "json" {
        registry.with(fmt.json()).init();
    } else {
        registry.with(fmt).init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(settings) => {
            init_logging(&settings);
            maestro::app::serve(settings).await
        }
        Command::Token {
            tenant,
            email,
            admin,
            ttl,
            settings,
        } => {
            let configured = settings.jwt_secret.as_ref().map(|s| s.0.as_str());
            let (secret, _) = maestro::auth::load_or_create_secret(configured, &settings.data_dir)?;
            println!(
                "{}",
                maestro::auth::Keys::new(&secret).mint(&tenant, &email, admin, ttl)?
            );
            Ok(())
        }
        Command::Prepare(settings) => {
            init_logging(&settings);
            let cfg = settings.sandbox();
            let sandbox = tokio::task::spawn_blocking(move || maestro::sandbox::Sandbox::open(cfg)).await??;
            println!(
                "runtime ready (interpreter starts with {} MiB)",
                sandbox.initial_memory() >> 20
            );
            Ok(())
        }
        Command::Healthcheck { url } => {
            let client = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .build()?;
            let status = client.get(&url).send().await?.status();
            anyhow::ensure!(status.is_success(), "{url} answered {status}");
            Ok(())
        }
        Command::Examples {
            action:
                ExamplesAction::Load {
                    url,
                    token,
                    dir,
                    path_prefix,
                },
        } => {
            let bundles = maestro::examples::bundles(dir.as_deref())?;
            for line in maestro::examples::load(&url, &token, &bundles, &path_prefix).await? {
                println!("{line}");
            }
            Ok(())
        }
        Command::Bench { iterations, settings } => {
            init_logging(&settings);
            maestro::bench::run(settings, iterations).await
        }
    }
}
