//! The client commands' flags (clap) and their dispatch. Each command's help lists its own
//! flags and the connection flags (`--url`, `--token`, `--profile`).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;

use super::profile::{Config, Profile, Remote};
use super::{inspect, live, project_cmd};

#[derive(Subcommand)]
pub enum ClientCommand {
    /// Save a server's URL and token as a profile (checked against the server first).
    Login {
        /// The server's base URL, e.g. http://127.0.0.1:8000.
        url: String,
        /// The API token (read from stdin when left out).
        #[arg(long)]
        token: Option<String>,
        /// The profile's name; the first one saved becomes the default.
        #[arg(long, default_value = "default")]
        profile: String,
    },
    /// Write a starter project (maestro.toml and a function with its schema) into DIR.
    Init {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Show what `deploy` would change on the server, resource by resource (code as diffs).
    Plan {
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Show what `deploy --prune` would delete.
        #[arg(long)]
        prune: bool,
        /// List unchanged resources too.
        #[arg(short, long)]
        verbose: bool,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Make the server match the folder: functions first, then the workflows, webhooks and
    /// schedules that use them; stops at the first refusal and says what was applied.
    Deploy {
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Also delete what is on the server but no longer in the folder.
        #[arg(long)]
        prune: bool,
        /// Print what was applied as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Write the server's functions, schedules, webhooks, workflows, egress policy, packages
    /// and secret names into DIR as a project folder.
    Pull {
        dir: PathBuf,
        #[command(flatten)]
        remote: Remote,
    },
    /// List functions, or look at one: its versions, a rollback.
    Functions {
        #[command(subcommand)]
        action: Option<FunctionsAction>,
        /// Print JSON.
        #[arg(long, global = true)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Run a function and print its output (exit 1 if the execution failed).
    Invoke {
        name: String,
        /// The input as JSON (else --input-file, else stdin when it is not a terminal, else {}).
        #[arg(long, conflicts_with = "input_file")]
        input: Option<String>,
        /// A file holding the input as JSON.
        #[arg(long)]
        input_file: Option<PathBuf>,
        /// Print the whole answer as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// List executions, newest first; or show or cancel one.
    Executions {
        #[command(subcommand)]
        action: Option<ExecutionsAction>,
        /// Only this function's.
        #[arg(long)]
        function: Option<String>,
        /// Only these: queued, running, succeeded, failed, cancelled.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Start after this point: the cursor the previous listing printed.
        #[arg(long)]
        cursor: Option<String>,
        /// Print JSON.
        #[arg(long, global = true)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// An execution's call tree: each step's status and duration, errors with tracebacks.
    Show {
        execution: String,
        /// Print the execution and its steps as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// What an execution's calls printed; `-f` follows a running one live.
    Logs {
        execution: String,
        /// Follow: print lines as they are written, until the execution ends (reconnecting
        /// if the connection drops).
        #[arg(short, long)]
        follow: bool,
        /// Print JSON (with -f: one event per line).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// The tenant's live events (executions starting and ending, log lines) until Ctrl-C,
    /// reconnecting if the connection drops.
    Tail {
        /// Only this function's events.
        #[arg(long)]
        function: Option<String>,
        /// Print each event as one line of JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// List schedules: when they run next and how the last run went.
    Schedules {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// List webhooks.
    Webhooks {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Run workflows.
    Workflows {
        #[command(subcommand)]
        action: WorkflowsAction,
        #[command(flatten)]
        remote: Remote,
    },
    /// Run a Python script once in a sandbox of the token's tenant (`POST /api/v1/run`):
    /// prints what it printed and its results; exits 1 if it failed.
    Run {
        /// The script (`-`: read it from stdin).
        file: PathBuf,
        /// The script's global `input` (JSON).
        #[arg(long)]
        input: Option<String>,
        /// Its deadline in seconds (default: the server's FUNCTION_TIMEOUT).
        #[arg(long)]
        timeout: Option<f64>,
        /// Print the server's whole answer as JSON instead.
        #[arg(long)]
        json: bool,
        /// Run it as the next cell of this session (`POST /api/v1/sessions`), in the globals
        /// the cells before left (`--input` and `--timeout` do not apply).
        #[arg(long, conflicts_with_all = ["input", "timeout"])]
        session: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Subcommand)]
pub enum FunctionsAction {
    /// List the tenant's functions (the default).
    Ls,
    /// One function: settings, schemas and code.
    Show { name: String },
    /// A function's versions, newest first.
    Versions { name: String },
    /// Make an old version current again (recorded as a new version).
    Rollback { name: String, version: i64 },
}

#[derive(Subcommand)]
pub enum ExecutionsAction {
    /// Print one execution as JSON.
    Show { id: String },
    /// Cancel a queued execution (it never runs) or stop a running one on whichever server
    /// runs it; prints the execution once it has ended.
    Cancel {
        id: String,
        /// How long to wait for a running execution to stop (0: do not wait).
        #[arg(long, default_value = "10s", value_parser = crate::auth::parse_ttl)]
        wait: std::time::Duration,
    },
}

#[derive(Subcommand)]
pub enum WorkflowsAction {
    /// Start a run; with --wait, print how it ended (exit 1 if it failed).
    Run {
        name: String,
        /// The run's config (JSON), merged over the workflow's.
        #[arg(long)]
        config: Option<String>,
        #[arg(long)]
        wait: bool,
        #[arg(long)]
        json: bool,
    },
}

fn parse_json(what: &str, text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).with_context(|| format!("{what} is not JSON"))
}

/// The input of `invoke`: the flag, the file, stdin when piped, else `{}`.
fn read_input(input: Option<String>, file: Option<PathBuf>) -> anyhow::Result<Value> {
    use std::io::IsTerminal;
    if let Some(i) = input {
        return parse_json("--input", &i);
    }
    if let Some(f) = file {
        let text = std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        return parse_json(&f.display().to_string(), &text);
    }
    if !std::io::stdin().is_terminal() {
        let text = std::io::read_to_string(std::io::stdin())?;
        if !text.trim().is_empty() {
            return parse_json("stdin", &text);
        }
    }
    Ok(serde_json::json!({}))
}

/// Run a client command; answers the process's exit code.
pub async fn dispatch(cmd: ClientCommand) -> anyhow::Result<i32> {
    use ClientCommand as C;
    let ok = |b: bool| i32::from(!b);
    match cmd {
        C::Login { url, token, profile } => login(url, token, profile).await.map(|_| 0),
        C::Init { dir } => project_cmd::init(&dir).map(|_| 0),
        C::Plan {
            dir,
            prune,
            verbose,
            json,
            remote,
        } => project_cmd::plan(&dir, &remote.client()?, prune, json, verbose)
            .await
            .map(|_| 0),
        C::Deploy {
            dir,
            prune,
            json,
            remote,
        } => project_cmd::deploy(&dir, &remote.client()?, prune, json)
            .await
            .map(|_| 0),
        C::Pull { dir, remote } => project_cmd::pull(&dir, &remote.client()?).await.map(|_| 0),
        C::Functions { action, json, remote } => {
            let client = remote.client()?;
            let done = match action.unwrap_or(FunctionsAction::Ls) {
                FunctionsAction::Ls => inspect::functions(&client, json).await,
                FunctionsAction::Show { name } => inspect::function_show(&client, &name, json).await,
                FunctionsAction::Versions { name } => inspect::function_versions(&client, &name, json).await,
                FunctionsAction::Rollback { name, version } => {
                    inspect::function_rollback(&client, &name, version).await
                }
            };
            done.map(|_| 0)
        }
        C::Invoke {
            name,
            input,
            input_file,
            json,
            remote,
        } => {
            let input = read_input(input, input_file)?;
            inspect::invoke(&remote.client()?, &name, input, json).await.map(ok)
        }
        C::Executions {
            action,
            function,
            status,
            limit,
            cursor,
            json,
            remote,
        } => {
            let client = remote.client()?;
            let shown = match action {
                None => {
                    let filter = inspect::Listing {
                        function: function.as_deref(),
                        status: status.as_deref(),
                        cursor: cursor.as_deref(),
                        limit,
                    };
                    return inspect::executions(&client, &filter, json).await.map(|_| 0);
                }
                Some(ExecutionsAction::Show { id }) => {
                    let ok = [reqwest::StatusCode::OK];
                    client
                        .call_ok(reqwest::Method::GET, &format!("/executions/{id}"), None, &ok)
                        .await?
                }
                Some(ExecutionsAction::Cancel { id, wait }) => {
                    client.cancel_execution(&id, (!wait.is_zero()).then_some(wait)).await?
                }
            };
            println!("{shown:#}");
            Ok(0)
        }
        C::Show {
            execution,
            json,
            remote,
        } => inspect::show(&remote.client()?, &execution, json).await.map(|_| 0),
        C::Logs {
            execution,
            follow,
            json,
            remote,
        } => live::logs(&remote.client()?, &execution, follow, json).await.map(|_| 0),
        C::Tail { function, json, remote } => live::tail(&remote.client()?, function.as_deref(), json)
            .await
            .map(|_| 0),
        C::Schedules { json, remote } => inspect::schedules(&remote.client()?, json).await.map(|_| 0),
        C::Webhooks { json, remote } => inspect::webhooks(&remote.client()?, json).await.map(|_| 0),
        C::Workflows {
            action:
                WorkflowsAction::Run {
                    name,
                    config,
                    wait,
                    json,
                },
            remote,
        } => {
            let config = config.map(|c| parse_json("--config", &c)).transpose()?;
            inspect::workflow_run(&remote.client()?, &name, config, wait, json)
                .await
                .map(ok)
        }
        C::Run {
            file,
            input,
            timeout,
            json,
            session,
            remote,
        } => run(file, input, timeout, json, session, remote).await.map(ok),
    }
}

/// `maestro login URL`: check the token against the server, then save the profile.
async fn login(url: String, token: Option<String>, profile: String) -> anyhow::Result<()> {
    let token = match token {
        Some(t) => t,
        None => {
            use std::io::IsTerminal;
            if std::io::stdin().is_terminal() {
                eprint!("API token for {url}: ");
            }
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim().to_string()
        }
    };
    anyhow::ensure!(!token.is_empty(), "no token given (--token, or on stdin)");
    let client = crate::client::Client::new(&url, &token);
    let (status, me) = client.call(reqwest::Method::GET, "/me", None).await?;
    match status {
        reqwest::StatusCode::OK => {}
        reqwest::StatusCode::UNAUTHORIZED => anyhow::bail!(
            "{url} refused the token ({}): mint a new one with `maestro token` on the server",
            me["error"]["message"].as_str().unwrap_or("unauthorized")
        ),
        reqwest::StatusCode::NOT_FOUND => anyhow::bail!("{url} has no Maestro API at /api/v1: check the URL"),
        s => anyhow::bail!("{url} answered {s}"),
    }
    let mut config = Config::load()?;
    config.profiles.insert(
        profile.clone(),
        Profile {
            url: url.clone(),
            token,
        },
    );
    config.default_profile.get_or_insert(profile.clone());
    let path = config.save()?;
    println!(
        "logged in to {url} as {} in tenant {} (profile `{profile}`, saved in {})",
        me["email"].as_str().unwrap_or("?"),
        me["tenant"].as_str().unwrap_or("?"),
        path.display()
    );
    Ok(())
}

/// `maestro run FILE`: answers whether the run succeeded.
async fn run(
    file: PathBuf,
    input: Option<String>,
    timeout: Option<f64>,
    json: bool,
    session: Option<String>,
    remote: Remote,
) -> anyhow::Result<bool> {
    let code = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?
    };
    let input = input.map(|i| parse_json("--input", &i)).transpose()?;
    let client = remote.client()?;
    let answer = match session {
        Some(id) => client.run_cell(&id, &code).await?,
        None => client.run_code(&code, input, timeout).await?,
    };
    if json {
        println!("{answer:#}");
    } else {
        let (out, err) = crate::client::render_run(&answer);
        print!("{out}");
        eprint!("{err}");
    }
    Ok(answer["status"] == "succeeded")
}
