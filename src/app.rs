//! Build the application state, start background tasks, serve, shut down gracefully.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::auth::{self, Auth, ClaimNames, Keys};
use crate::config::Settings;
use crate::engine::Engine;
use crate::http::{self, AppState};
use crate::sandbox::Sandbox;
use crate::store::Store;

/// How long past its deadline a `running` execution is presumed dead.
const STALE_GRACE_MS: i64 = 60_000;

/// State plus what start-up learned.
pub struct Built {
    pub state: AppState,
    /// Set when no secret was configured and one was generated: an admin token to print.
    pub generated_admin_token: Option<String>,
}

pub async fn build(settings: Settings) -> anyhow::Result<Built> {
    // A console sign-in that could never work stops the start, before anything is written.
    crate::http::console_oidc::oidc(&settings)?;
    let settings = Arc::new(settings.with_absolute_paths()?);
    std::fs::create_dir_all(&settings.data_dir)?;
    let cache_ttl = Duration::from_millis(settings.function_cache_ms);
    let acquire = Duration::from_millis(settings.database_timeout_ms);
    let store = Store::connect(&settings.database_url(), cache_ttl, acquire).await?;
    tracing::info!(backend = ?store.backend(), "database ready");
    let sandbox_cfg = settings.sandbox();
    let sandbox: Arc<Sandbox> = tokio::task::spawn_blocking(move || Sandbox::open(sandbox_cfg)).await??;
    tracing::info!(initial_memory_mb = sandbox.initial_memory() >> 20, "sandbox ready");
    // Only a client: Redis being down must not stop the server starting (health reports it).
    let redis = match &settings.redis_url {
        Some(url) => Some(redis::Client::open(url.0.as_str())?),
        None => None,
    };
    let limits = crate::logs::redis_streams::Limits {
        execution_maxlen: settings.redis_stream_maxlen,
        tenant_maxlen: settings.redis_tenant_stream_maxlen,
    };
    let redis_events = redis.clone().map(|c| crate::logs::RedisEvents::start(c, limits));
    let events = Arc::new(crate::logs::Bus::new(redis_events));
    let packages = crate::packages::Packages::new(store.clone(), sandbox.clone(), &settings)?;
    let egress = crate::egress::Egress::new(store.clone(), cache_ttl)?;
    // SECRETS_KEY, or a key generated once into DATA_DIR/secrets_key.
    let configured = settings.secrets_key.as_ref().map(|k| k.0.as_str());
    let (secrets_key, _) = auth::load_or_create_key(configured, &settings.data_dir, "secrets_key")?;
    let vault = Arc::new(crate::secrets::Vault::new(&secrets_key));
    let engine = Engine::new(
        store.clone(),
        sandbox,
        settings.clone(),
        events.clone(),
        packages.clone(),
        (egress.clone(), vault.clone()),
        redis.clone(),
    )?;
    let (secret, generated) =
        auth::load_or_create_secret(settings.jwt_secret.as_ref().map(|s| s.0.as_str()), &settings.data_dir)?;
    let keys = Keys::new(&secret);
    let generated_admin_token = match generated {
        true => Some(keys.mint("default", "admin@localhost", true, Duration::from_secs(30 * 86_400))?),
        false => None,
    };
    let scheduler = crate::scheduler::Scheduler::new(store.clone(), engine.clone(), &settings);
    let external = auth::external::Issuer::open(&settings).await?;
    let claims = ClaimNames {
        email: settings.auth_email_claim.clone(),
        tenant: settings.auth_tenant_claim.clone(),
        role: settings.auth_role_claim.clone(),
        admin_role: settings.auth_admin_role.clone(),
    };
    let auth = Arc::new(Auth::new(keys, external, claims, store.clone()));
    let services = crate::service::Services::new(crate::service::Deps {
        store: store.clone(),
        engine: engine.clone(),
        settings: settings.clone(),
        scheduler: scheduler.clone(),
        vault,
        egress,
        packages,
    });
    let state = AppState {
        services,
        engine,
        store,
        auth,
        settings,
        redis,
        gates: Default::default(),
        scheduler,
        events,
    };
    Ok(Built {
        state,
        generated_admin_token,
    })
}

/// A server running in the background (tests and benchmarks use this).
pub struct Running {
    pub addr: SocketAddr,
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Bind `settings.bind` (port 0 picks a free port) and serve in the background.
pub async fn spawn(settings: Settings) -> anyhow::Result<Running> {
    let bind = settings.bind;
    let built = build(settings).await?;
    let listener = TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let state = built.state.clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = run(listener, built.state, async {
            let _ = stopped.await;
        })
        .await;
    });
    Ok(Running {
        addr,
        state,
        stop: Some(stop),
        task,
    })
}

/// `maestro serve`: serve until Ctrl-C or SIGTERM.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let bind = settings.bind;
    let built = build(settings).await?;
    let listener = TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    if let Some(token) = &built.generated_admin_token {
        println!("No MAESTRO_JWT_SECRET set: generated one in the data directory.");
        println!("Admin token for tenant `default` (valid 30 days):\n\n  {token}\n");
    }
    println!("{}", token_hint(&built.state.settings));
    println!("maestro listening on http://{addr}");
    tracing::info!(%addr, "listening");
    run(listener, built.state, shutdown_signal()).await
}

/// How to mint a token this server accepts: the command, never a secret or a token.
fn token_hint(settings: &Settings) -> String {
    let command = match settings.jwt_secret {
        Some(_) => "MAESTRO_JWT_SECRET=<this server's secret> maestro token".to_string(),
        None => format!("maestro token --data-dir {}", settings.data_dir.display()),
    };
    format!("Mint API tokens: {command} --tenant <tenant> --email <you@example.com> [--admin] [--ttl 7d]")
}

/// The background duties, owned together so that shutdown stops them in order: first the
/// loops that start work (scheduler, resumer), which finish their current pass, then the
/// housekeeping ones (sweeping, retention).
struct Duties {
    starters: tokio::task::JoinSet<()>,
    housekeeping: tokio::task::JoinSet<()>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Duties {
    fn start(state: &AppState) -> Duties {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut housekeeping = tokio::task::JoinSet::new();
        housekeeping.spawn(sweep_stale(state.store.clone()));
        housekeeping.spawn(purge_old(state.store.clone(), state.settings.retention_days));
        // Leases are kept until the drain is over (running jobs still need them).
        housekeeping.spawn(state.engine.clone().keep_leases());
        housekeeping.spawn(state.engine.clone().expire_sessions());
        let mut starters = tokio::task::JoinSet::new();
        starters.spawn(state.scheduler.clone().run(stopped.clone()));
        starters.spawn(state.engine.clone().queue_loop(stopped.clone()));
        // Taking over other servers' stranded workflow runs is background work like the
        // scheduler's, and follows its switch.
        if state.scheduler.enabled {
            starters.spawn(state.engine.clone().resume_loop(stopped));
        }
        Duties {
            starters,
            housekeeping,
            stop,
        }
    }

    /// Stop the loops that start work, after their current pass (at most `limit`).
    async fn stop_starters(&mut self, limit: Duration) {
        let _ = self.stop.send(true);
        let starters = &mut self.starters;
        if tokio::time::timeout(limit, async { while starters.join_next().await.is_some() {} })
            .await
            .is_err()
        {
            tracing::warn!("the scheduler did not stop in time; ending it");
            self.starters.shutdown().await;
        }
    }

    async fn stop(mut self) {
        self.stop_starters(Duration::from_secs(5)).await;
        self.housekeeping.shutdown().await;
    }
}

/// Serve until `shutdown` resolves, then shut down in order: stop accepting connections and
/// stop the scheduler and resumer (their pass under way finishes), refuse new executions,
/// let running ones finish for up to `SHUTDOWN_GRACE_SECONDS`, record the functions still
/// running as interrupted (everything recorded is committed first), stop the rest.
async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut duties = Duties::start(&state);
    let grace = Duration::from_secs_f64(state.settings.shutdown_grace_seconds.max(0.0));
    let engine = state.engine.clone();
    let signalled = Arc::new(tokio::sync::Notify::new());
    let notify = signalled.clone();
    let app = http::router(state);
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        notify.notify_one();
    });
    let mut server = tokio::spawn(async move { server.await });
    tokio::select! {
        // A signal wins over the server ending: with no connection open, graceful shutdown
        // ends the server at once, and the running executions still get their grace.
        biased;
        _ = signalled.notified() => {}
        ended = &mut server => {
            // The listener failed before any signal.
            duties.stop().await;
            return ended.map_err(|e| anyhow::anyhow!("the server task failed: {e}"))?.map_err(Into::into);
        }
    }
    tracing::info!(
        running = engine.in_flight(),
        grace_s = grace.as_secs_f64(),
        "shutting down"
    );
    let started = std::time::Instant::now();
    duties.stop_starters(grace.min(Duration::from_secs(5))).await;
    let reason = format!(
        "the server shut down before this execution finished (it waited SHUTDOWN_GRACE_SECONDS={})",
        grace.as_secs_f64()
    );
    let (finished, interrupted) = engine.drain(grace.saturating_sub(started.elapsed()), &reason).await;
    tracing::info!(finished, interrupted, "running executions settled");
    // Callers still connected (a sync invoke of an interrupted execution, an event stream)
    // are cut off after a last second.
    let served = match tokio::time::timeout(Duration::from_secs(1), server).await {
        Ok(Ok(result)) => result.map_err(anyhow::Error::from),
        Ok(Err(e)) => Err(anyhow::anyhow!("the server task failed: {e}")),
        Err(_) => Ok(()),
    };
    duties.stop().await;
    served
}

/// Mark executions whose server died mid-run as interrupted, now and every minute.
async fn sweep_stale(store: Store) {
    loop {
        match store.interrupt_stale(STALE_GRACE_MS).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(count = n, "marked interrupted executions"),
            Err(e) => tracing::warn!(error = %e, "could not sweep stale executions"),
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

/// Delete executions older than the retention age, in batches, every ten minutes.
async fn purge_old(store: Store, days: f64) {
    if days <= 0.0 {
        return;
    }
    let age_ms = (days * 86_400_000.0) as i64;
    loop {
        let cutoff = crate::store::now_ms() - age_ms;
        loop {
            match store.purge_finished_before(cutoff, 500, None).await {
                Ok(0) => break,
                Ok(n) => tracing::info!(count = n, "purged old executions"),
                Err(e) => {
                    tracing::warn!(error = %e, "could not purge old executions");
                    break;
                }
            }
            // Let other work in between batches.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(600)).await;
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
