//! Wiring: database, HTTP server, workers, graceful shutdown.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::api::{self, AppState, Limits};
use crate::config::{Role, ServeArgs};
use crate::db::{self, LocalOptions, LocalPostgres};
use crate::queue::QueueConfig;
use crate::worker::{WorkerConfig, WorkerPool};

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), as text or JSON lines.
pub fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

pub fn worker_config(args: &ServeArgs) -> WorkerConfig {
    WorkerConfig {
        concurrency: args.worker_count(),
        queue: QueueConfig {
            lease: Duration::from_secs_f64(args.lease_seconds.max(1.0)),
            ..QueueConfig::default()
        },
        shutdown_grace: Duration::from_secs_f64(args.shutdown_grace_seconds.max(0.0)),
        ..WorkerConfig::default()
    }
}

/// Resolve `SIGINT`/`SIGTERM`.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown requested");
}

/// A pool on `DATABASE_URL`, or on the embedded cluster under `data_dir` (started if needed).
pub async fn open_database(
    database_url: Option<&str>,
    data_dir: &std::path::Path,
    max_connections: u32,
) -> anyhow::Result<(PgPool, Option<LocalPostgres>)> {
    match database_url {
        Some(url) => {
            let opts: sqlx::postgres::PgConnectOptions = url
                .parse()
                .context("DATABASE_URL is not a valid PostgreSQL URL")?;
            Ok((db::pool(opts, max_connections).await?, None))
        }
        None => {
            let dir = data_dir.to_path_buf();
            let local = tokio::task::spawn_blocking(move || {
                LocalPostgres::start(&dir, &LocalOptions::default())
            })
            .await??;
            local.ensure_database(db::LOCAL_DB).await?;
            let pool = db::pool(local.connect_options(db::LOCAL_DB), max_connections).await?;
            Ok((pool, Some(local)))
        }
    }
}

/// `infoaudit keys create`: straight into the database, whether or not the service runs.
pub async fn create_key(a: crate::config::KeysCreateArgs) -> anyhow::Result<()> {
    let scopes = a
        .scopes
        .iter()
        .map(|s| {
            crate::auth::Scope::parse(s.trim())
                .with_context(|| format!("unknown scope {s:?}; use ingest, read, gate, admin"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (pool, local) = open_database(a.database_url.as_deref(), &a.data_dir, 2).await?;
    db::migrate(&pool).await?;
    let (_, key) = crate::auth::create_key(&pool, &a.name, &scopes, a.models.as_deref()).await?;
    pool.close().await;
    if let Some(local) = local {
        if local.started_here() {
            tokio::task::spawn_blocking(move || local.stop()).await??;
        }
    }
    println!("{}", key.key);
    eprintln!(
        "Store this key now: it is shown once. Its prefix is ia_{}.",
        key.prefix
    );
    Ok(())
}

/// Run the service until a shutdown signal.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let (pool, local) = open_database(args.database_url.as_deref(), &args.data_dir, 32).await?;
    let listener = match args.role {
        Role::Worker => None,
        _ => Some(
            tokio::net::TcpListener::bind(args.addr)
                .await
                .with_context(|| format!("cannot listen on {}", args.addr))?,
        ),
    };
    let result = serve(pool.clone(), &args, listener, shutdown_signal()).await;
    pool.close().await;
    if let Some(local) = local {
        if let Err(e) = tokio::task::spawn_blocking(move || local.stop()).await? {
            tracing::warn!(error = %e, "could not stop the embedded PostgreSQL");
        }
    }
    result
}

/// Migrate, then serve HTTP and/or run workers until `shutdown` resolves; then stop taking
/// requests, stop claiming jobs, let in-flight jobs finish within the grace period and release
/// the rest.
pub async fn serve(
    pool: PgPool,
    args: &ServeArgs,
    listener: Option<tokio::net::TcpListener>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    db::migrate(&pool).await?;
    let wake = Arc::new(Notify::new());
    let draining = Arc::new(AtomicBool::new(false));
    let workers = match args.role {
        Role::Worker | Role::All => Some(WorkerPool::start(
            pool.clone(),
            worker_config(args),
            wake.clone(),
        )),
        Role::Api => None,
    };
    let stop = tokio_util::sync::CancellationToken::new();
    {
        let (stop, draining) = (stop.clone(), draining.clone());
        tokio::spawn(async move {
            shutdown.await;
            draining.store(true, Ordering::Relaxed);
            stop.cancel();
        });
    }
    if let Some(listener) = listener {
        let state = AppState {
            pool: pool.clone(),
            wake,
            draining,
            limits: Limits {
                max_upload_bytes: args.max_upload_bytes,
                max_body_bytes: args.max_body_bytes,
            },
            require_auth: args.require_auth,
            caches: Default::default(),
        };
        tracing::info!(addr = %listener.local_addr()?, role = ?args.role, "infoaudit listening");
        let stop_http = stop.clone();
        // TCP_NODELAY: a response written in two small segments must not wait for the peer's
        // delayed ACK (Nagle), which otherwise adds up to 40 ms to idle keep-alive connections.
        use axum::serve::ListenerExt as _;
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!("could not set TCP_NODELAY: {e}");
            }
        });
        axum::serve(listener, api::router(state))
            .with_graceful_shutdown(async move { stop_http.cancelled().await })
            .await?;
    } else {
        tracing::info!("infoaudit worker running");
        stop.cancelled().await;
    }
    if let Some(w) = workers {
        w.shutdown().await;
    }
    tracing::info!("stopped");
    Ok(())
}
