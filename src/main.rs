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
    /// Mint an API token signed with the server's secret (the same flags and variables as
    /// `maestro serve` find it: MAESTRO_JWT_SECRET, else DATA_DIR/jwt_secret).
    Token {
        /// The tenant the token acts in.
        #[arg(long)]
        tenant: String,
        /// Who the token is for (recorded in the audit trail).
        #[arg(long)]
        email: String,
        /// Give the token the admin role (subtenants, grants, audit, any tenant).
        #[arg(long)]
        admin: bool,
        /// Lifetime, e.g. 90s, 30m, 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = maestro::auth::parse_ttl)]
        ttl: std::time::Duration,
        /// The server's data directory, which holds its generated secret.
        #[arg(long, env = "MAESTRO_DATA_DIR", default_value = "./data")]
        data_dir: std::path::PathBuf,
        /// The server's HS256 secret, when it is configured rather than generated.
        #[arg(long, env = "MAESTRO_JWT_SECRET", hide_env_values = true)]
        jwt_secret: Option<String>,
    },
    /// Fetch the Python runtime and compile it into the cache, then exit.
    Prepare {
        /// Directory holding the runtime by default.
        #[arg(long, env = "MAESTRO_DATA_DIR", default_value = "./data")]
        data_dir: std::path::PathBuf,
        /// Where the runtime goes (default: DATA_DIR/runtime).
        #[arg(long, env = "MAESTRO_RUNTIME_DIR")]
        runtime_dir: Option<std::path::PathBuf>,
        /// Where the compiled runtime is cached (default: RUNTIME_DIR/cache).
        #[arg(long, env = "MAESTRO_CACHE_DIR")]
        cache_dir: Option<std::path::PathBuf>,
    },
    /// Exit 0 when the server's /health answers 200 (for container health checks).
    Healthcheck {
        /// The URL to check (default: /health on the server's MAESTRO_BIND address).
        #[arg(long, env = "MAESTRO_HEALTH_URL")]
        url: Option<String>,
        /// The server's listen address, as `maestro serve` reads it.
        #[arg(long, env = "MAESTRO_BIND", default_value = "127.0.0.1:8000")]
        bind: std::net::SocketAddr,
    },
    /// Print the OpenAPI document the server serves at /openapi.json (to generate clients).
    Openapi,
    /// Example functions and webhooks (the seed's workflows).
    Examples {
        #[command(subcommand)]
        action: ExamplesAction,
    },
    #[command(flatten)]
    Client(maestro::cli::ClientCommand),
    /// Print a shell completion script: `maestro completions bash > /etc/bash_completion.d/maestro`.
    Completions { shell: clap_complete::Shell },
    /// Measure per-call latency against a `python3 -c` baseline; see BENCHMARKS.md.
    Bench {
        /// Calls per measurement.
        #[arg(long, default_value_t = 300)]
        iterations: usize,
        /// Measure what hostile and careless code costs the server instead (forged frames,
        /// endless loops, memory hoarders) and the edges new users hit first.
        #[arg(long)]
        hostile: bool,
        /// With --hostile: the `maestro` binary to run as the server (default: this one), so
        /// that an older build can be measured by the same client.
        #[arg(long, requires = "hostile")]
        server_exe: Option<std::path::PathBuf>,
        /// Measure the durable queue instead: async job throughput and enqueue-to-start
        /// latency against sync invokes, on `--replicas` servers sharing DATABASE_URL.
        #[arg(long, conflicts_with = "hostile")]
        queue: bool,
        /// With --queue: how many `maestro serve` replicas (more than one needs PostgreSQL).
        #[arg(long, default_value_t = 1, requires = "queue")]
        replicas: usize,
        /// Measure history listings instead: a page of executions with a short history and
        /// after `--rows` more (a million by default), on the database the settings name.
        #[arg(long, conflicts_with_all = ["hostile", "queue"])]
        listing: bool,
        /// With --listing: how many executions to add.
        #[arg(long, default_value_t = 1_000_000, requires = "listing")]
        rows: i64,
        /// Measure Maestro next to its peers instead (FastAPI exec(), Pyodide in Node, a
        /// python3 -c subprocess) on the same workloads; the peers live in `--peers-dir`.
        #[arg(long, conflicts_with_all = ["hostile", "queue", "listing"])]
        peers: bool,
        /// With --peers: where fastapi_peer.py and pyodide_peer.mjs are.
        #[arg(long, default_value = "bench/peers", requires = "peers")]
        peers_dir: std::path::PathBuf,
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
        /// Replace functions and webhooks of the same name that differ from the examples
        /// (by default they are left alone and reported as skipped).
        #[arg(long)]
        force: bool,
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
            data_dir,
            jwt_secret,
        } => {
            let secret = maestro::auth::load_secret(jwt_secret.as_deref(), &data_dir)?;
            println!(
                "{}",
                maestro::auth::Keys::new(&secret).mint(&tenant, &email, admin, ttl)?
            );
            Ok(())
        }
        Command::Prepare {
            data_dir,
            runtime_dir,
            cache_dir,
        } => {
            let mut args = vec!["--data-dir".into(), data_dir.display().to_string()];
            for (flag, dir) in [("--runtime-dir", runtime_dir), ("--cache-dir", cache_dir)] {
                if let Some(d) = dir {
                    args.extend([flag.to_string(), d.display().to_string()]);
                }
            }
            let settings = Settings::from_args(args)?;
            init_logging(&settings);
            let cfg = settings.sandbox();
            let sandbox = tokio::task::spawn_blocking(move || maestro::sandbox::Sandbox::open(cfg)).await??;
            println!(
                "runtime ready (interpreter starts with {} MiB)",
                sandbox.initial_memory() >> 20
            );
            Ok(())
        }
        Command::Healthcheck { url, bind } => {
            let url = url.unwrap_or_else(|| format!("http://{}/health", maestro::config::reachable(bind)));
            let client = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .build()?;
            let status = client.get(&url).send().await?.status();
            anyhow::ensure!(status.is_success(), "{url} answered {status}");
            Ok(())
        }
        Command::Openapi => {
            println!("{:#}", maestro::http::openapi::document());
            Ok(())
        }
        Command::Examples {
            action:
                ExamplesAction::Load {
                    url,
                    token,
                    dir,
                    path_prefix,
                    force,
                },
        } => {
            let bundles = maestro::examples::bundles(dir.as_deref())?;
            for line in maestro::examples::load(&url, &token, &bundles, &path_prefix, force).await? {
                println!("{line}");
            }
            Ok(())
        }
        Command::Client(cmd) => match maestro::cli::dispatch(cmd).await? {
            0 => Ok(()),
            code => std::process::exit(code),
        },
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "maestro", &mut std::io::stdout());
            Ok(())
        }
        Command::Bench {
            iterations,
            hostile,
            server_exe,
            queue,
            replicas,
            listing,
            rows,
            peers,
            peers_dir,
            settings,
        } => {
            init_logging(&settings);
            if peers {
                return maestro::bench::run_peers(settings, iterations, peers_dir).await;
            }
            match (hostile, queue, listing) {
                (true, _, _) => maestro::bench::run_hostile(settings, server_exe).await,
                (_, true, _) => maestro::bench::run_queue(settings, iterations, replicas).await,
                (_, _, true) => maestro::bench::run_listing(settings, iterations, rows).await,
                _ => maestro::bench::run(settings, iterations).await,
            }
        }
    }
}
