//! Wiring: database, HTTP server, workers, graceful shutdown.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, Request, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::api::{self, AppState, Limits};
use crate::config::{Role, ServeArgs};
use crate::db::{self, LocalOptions, LocalPostgres};
use crate::error::{problem_response, Error, Problem};
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
        pool_id: std::env::var(WORKER_POOL_ID_ENV)
            .ok()
            .filter(|s| !s.is_empty()),
        limits: args.cost_limits(),
        // Half the machine for all running jobs together (four budgets when unknown).
        memory_pool_bytes: crate::config::machine_memory_bytes()
            .map_or(4 * args.job_memory(), |m| m / 2)
            .max(args.job_memory()),
        retention_interval: (args.retention_interval_seconds > 0.0)
            .then(|| Duration::from_secs_f64(args.retention_interval_seconds.max(1.0))),
        retention_chunk: args.retention_chunk.max(1),
        job_time: seconds(args.job_seconds, 300.0),
        monitors: crate::monitor::MonitorConfig {
            allow_private: args.webhook_allow_private,
            public_url: args.public_url(),
            retry_base: Duration::from_secs_f64(args.webhook_retry_seconds.clamp(0.01, 3600.0)),
            timeout: Duration::from_secs_f64(args.webhook_timeout_seconds.clamp(0.1, 300.0)),
            ..Default::default()
        },
        ..WorkerConfig::default()
    }
}

/// Set by a `--role all` process on its worker child: the child's worker pool id.
const WORKER_POOL_ID_ENV: &str = "INFOAUDIT_WORKER_POOL_ID";
/// Set on a worker child: it stops when its stdin closes (its parent is gone) and reports its
/// worker metrics on stdout.
const WORKER_CHILD_ENV: &str = "INFOAUDIT_WORKER_CHILD";
/// The line prefix of a worker child's metrics report.
const METRICS_LINE: &str = "infoaudit-worker-metrics ";

/// The HTTP side's limits from the command line.
pub fn api_limits(args: &ServeArgs) -> Limits {
    let rate = args.rate_limit.max(0.0);
    Limits {
        max_upload_bytes: args.max_upload_bytes,
        max_body_bytes: args.max_body_bytes,
        cost: args.cost_limits(),
        max_queued_jobs: args.max_queued_jobs,
        max_queue_age_seconds: args.max_queue_age_seconds.max(0.0),
        rate_limit: rate,
        rate_burst: args.rate_limit_burst.unwrap_or(2.0 * rate).max(1.0),
        webhook_allow_private: args.webhook_allow_private,
        metrics_max_information_series: args.metrics_max_information_series,
        metrics_cache: std::time::Duration::from_secs_f64(match args.metrics_cache_seconds {
            c if c.is_nan() => 0.0,
            c => c.clamp(0.0, 86_400.0),
        }),
        public_https: args
            .public_url
            .as_deref()
            .is_some_and(|u| u.to_ascii_lowercase().starts_with("https://")),
        metrics_public_information: args.metrics_public_information,
        body_pace: crate::api::paced::BodyPace {
            idle: seconds(args.body_idle_timeout_seconds, 20.0),
            grace: seconds(args.body_idle_timeout_seconds, 20.0),
            min_rate: args.body_min_bytes_per_second,
        },
        label_coverage: args.label_coverage,
    }
}

/// A duration from a command-line number of seconds (`default` when it is not a positive
/// finite number).
fn seconds(s: f64, default: f64) -> std::time::Duration {
    std::time::Duration::from_secs_f64(if s.is_finite() && s > 0.0 {
        s.min(86_400.0)
    } else {
        default
    })
}

/// Show the configured limits in `/metrics`.
fn publish_limits(args: &ServeArgs) {
    let l = api_limits(args);
    crate::metrics::set_setting("max_queued_jobs", l.max_queued_jobs as f64);
    crate::metrics::set_setting("max_queue_age_seconds", l.max_queue_age_seconds);
    crate::metrics::set_setting("rate_limit_per_second", l.rate_limit);
    crate::metrics::set_setting("rate_limit_burst", l.rate_burst);
    crate::metrics::set_setting("job_memory_bytes", l.cost.memory_bytes as f64);
    crate::metrics::set_setting("max_classes", l.cost.max_classes as f64);
    crate::metrics::set_setting(
        "metrics_max_information_series",
        l.metrics_max_information_series as f64,
    );
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
///
/// With the embedded cluster, a supervisor restarts PostgreSQL whenever it dies. With
/// `--role all` (unless `--in-process-workers`), estimator work runs in a worker child process
/// of this binary, restarted when it dies, so that an estimator that aborts cannot take the API
/// with it.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let (pool, local) = open_database(args.database_url.as_deref(), &args.data_dir, 32).await?;
    let local = local.map(Arc::new);
    let stop_supervisors = tokio_util::sync::CancellationToken::new();
    if let Some(local) = &local {
        tokio::spawn(db::supervise(
            local.clone(),
            Duration::from_millis(500),
            stop_supervisors.clone(),
        ));
    }
    let listener = match (args.role, args.listen_fd) {
        (Role::Worker, _) => None,
        (_, Some(fd)) => Some(tokio::net::TcpListener::from_std(inherited_listener(fd)?)?),
        _ => Some(
            tokio::net::TcpListener::bind(args.addr)
                .await
                .with_context(|| format!("cannot listen on {}", args.addr))?,
        ),
    };
    let is_child = std::env::var_os(WORKER_CHILD_ENV).is_some();
    let shutdown = {
        let stop = tokio_util::sync::CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            s.cancel();
        });
        if is_child {
            watch_parent(stop.clone());
            report_metrics_to_parent(stop.clone());
        }
        stop
    };
    let result = if args.role == Role::All && !args.in_process_workers {
        // The API here; the workers in a supervised child. Migrate first so that the child
        // finds the schema ready.
        db::migrate(&pool).await?;
        let child_url = match (&args.database_url, &local) {
            (Some(url), _) => url.clone(),
            (None, Some(l)) => l.url(db::LOCAL_DB),
            (None, None) => anyhow::bail!("no database for the worker process"),
        };
        let children = tokio::spawn(supervise_worker_child(
            args.clone(),
            child_url,
            pool.clone(),
            shutdown.clone(),
        ));
        let api_args = ServeArgs {
            role: Role::Api,
            ..args.clone()
        };
        let s = shutdown.clone();
        let r = serve(pool.clone(), &api_args, listener, async move {
            s.cancelled().await
        })
        .await;
        shutdown.cancel();
        let _ = children.await;
        r
    } else {
        let s = shutdown.clone();
        serve(
            pool.clone(),
            &args,
            listener,
            async move { s.cancelled().await },
        )
        .await
    };
    stop_supervisors.cancel();
    pool.close().await;
    if let Some(local) = local {
        if let Err(e) = tokio::task::spawn_blocking(move || local.stop()).await? {
            tracing::warn!(error = %e, "could not stop the embedded PostgreSQL");
        }
    }
    result
}

/// In a worker child: stop (gracefully) when stdin closes, that is when the parent is gone.
fn watch_parent(stop: tokio_util::sync::CancellationToken) {
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 64];
        let mut stdin = std::io::stdin();
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        tracing::warn!("the parent process is gone; stopping the worker process");
        stop.cancel();
    });
}

/// In a worker child: send the worker metrics to the parent every second (one line on stdout).
fn report_metrics_to_parent(stop: tokio_util::sync::CancellationToken) {
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut out = tokio::io::stdout();
        loop {
            let text = crate::metrics::render_worker_section();
            let line = format!(
                "{METRICS_LINE}{}\n",
                serde_json::to_string(&text).unwrap_or_default()
            );
            if out.write_all(line.as_bytes()).await.is_err() || out.flush().await.is_err() {
                return;
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
}

/// Run the workers in a child process (`serve --role worker`) and start it again whenever it
/// dies; its running jobs are taken back at once (each counts as a rescue, so a batch that
/// kills the worker every time ends `failed` after `max_rescues`). On `stop`, the child gets
/// SIGTERM and its grace period.
async fn supervise_worker_child(
    args: ServeArgs,
    database_url: String,
    pool: PgPool,
    stop: tokio_util::sync::CancellationToken,
) {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "cannot find this program to start the worker process");
            return;
        }
    };
    let queue = worker_config(&args).queue;
    let mut delay = Duration::from_millis(250);
    loop {
        let pool_id = format!(
            "{}-{}",
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "worker".into()),
            &uuid::Uuid::new_v4().to_string()[..8]
        );
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.args(args.worker_child_args())
            .env("DATABASE_URL", &database_url)
            .env(WORKER_POOL_ID_ENV, &pool_id)
            .env(WORKER_CHILD_ENV, "1")
            .env_remove("INFOAUDIT_ROLE")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the worker process; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        let started = std::time::Instant::now();
        tracing::info!(pid = child.id(), pool = %pool_id, "worker process started");
        let stdin = child.stdin.take();
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(async move {
                use tokio::io::AsyncBufReadExt;
                let mut lines = tokio::io::BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(json) = line.strip_prefix(METRICS_LINE) {
                        if let Ok(text) = serde_json::from_str::<String>(json) {
                            crate::metrics::set_child_worker_text(text);
                        }
                    }
                }
            });
        }
        let status = tokio::select! {
            s = child.wait() => s,
            _ = stop.cancelled() => {
                if let Some(pid) = child.id() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::SIGTERM,
                    );
                }
                let wait = Duration::from_secs_f64(args.shutdown_grace_seconds.max(0.0))
                    + Duration::from_secs(15);
                match tokio::time::timeout(wait, child.wait()).await {
                    Ok(_) => {}
                    Err(_) => {
                        tracing::warn!("the worker process did not stop in time; killing it");
                        let _ = child.kill().await;
                    }
                }
                drop(stdin);
                return;
            }
        };
        drop(stdin);
        let how = match &status {
            Ok(s) => describe_exit(s),
            Err(e) => format!("could not be waited for ({e})"),
        };
        crate::metrics::worker_process_restarted();
        tracing::error!(pool = %pool_id, "the worker process {how}; taking back its jobs and starting it again");
        let problem = crate::error::Problem::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "worker-crashed",
            "The worker process running this job died",
            format!(
                "the worker process running this job {how} (for example a refused memory \
                 allocation); after {} such stops the job is not retried again",
                queue.max_rescues
            ),
        );
        // The database may be down too: keep trying for a while, the reaper is the fallback.
        for _ in 0..20 {
            match crate::queue::rescue_owner(&pool, &queue, &pool_id, &problem).await {
                Ok(n) => {
                    if n > 0 {
                        tracing::warn!(jobs = n, "took back the dead worker process's jobs");
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take back the dead worker's jobs yet");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            delay = Duration::from_millis(250);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// "exited with status 3", "was killed by signal 6 (SIGABRT)".
fn describe_exit(s: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(sig) = s.signal() {
        let name = nix::sys::signal::Signal::try_from(sig)
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|_| "?".into());
        format!("was killed by signal {sig} ({name})")
    } else {
        format!("exited with status {}", s.code().unwrap_or(-1))
    }
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
    publish_limits(args);
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
            limits: api_limits(args),
            require_auth: args.require_auth,
            caches: Default::default(),
        };
        tracing::info!(addr = %listener.local_addr()?, role = ?args.role, "infoaudit listening");
        let connections = Connections {
            max: connection_limit(args.max_connections),
            header_timeout: seconds(args.header_timeout_seconds, 10.0),
        };
        serve_http(listener, router(state), connections, stop.clone()).await;
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

/// The whole HTTP application: the API's documented routes with Swagger UI, the dashboard, the
/// login form, and the middleware (rate limit inside authentication, body limit, one error
/// shape, request metrics, tracing and request ids).
pub fn router(state: AppState) -> Router {
    let limits = state.limits;
    let (api, doc) = api::routes(limits);
    // Swagger UI (vendored into the binary: no CDN, no download) also serves `/openapi.json`.
    api.merge(utoipa_swagger_ui::SwaggerUi::new("/docs").url("/openapi.json", doc))
        .merge(crate::web::router())
        .route("/login", axum::routing::get(api::keys::login_form).post(api::keys::login))
        .route("/logout", axum::routing::post(api::keys::logout))
        .fallback(|| async { Error::NotFound("no such route".into()) })
        // Inside authentication: the rate limit is per key.
        .layer(middleware::from_fn_with_state(state.clone(), api::overload::rate_limit))
        .layer(middleware::from_fn_with_state(state.clone(), crate::auth::middleware))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(middleware::from_fn(problem_everywhere))
        .layer(middleware::from_fn(track))
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(
                |req: &Request<Body>| {
                    let id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
                },
            ),
        )
        .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id())
        .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(
            tower_http::request_id::MakeRequestUuid,
        ))
        // Every request body is held to a pace (408 for a client too slow).
        .layer(tower::util::MapRequestLayer::new(
            move |req: Request<Body>| {
                req.map(|b| Body::new(crate::api::paced::PacedBody::new(b, limits.body_pace)))
            },
        ))
        .with_state(state)
}

/// Count and time every request by its route template.
async fn track(req: Request<Body>, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let resp = next.run(req).await;
    crate::metrics::http_request(
        &method,
        &route,
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    resp
}

/// Turn every plain-text error response (framework rejections: bad path parameters, wrong method,
/// body limits) into a problem document, so clients see one error shape.
async fn problem_everywhere(req: Request<Body>, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    // Problem documents and pages (the dashboard's HTML errors) are already shaped.
    let shaped = resp.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes().starts_with(b"application/problem+json")
            || v.as_bytes().starts_with(b"text/html")
    });
    if shaped {
        return resp;
    }
    let allow = resp.headers().get(header::ALLOW).cloned();
    let (_, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let (kind, title) = match status {
        StatusCode::NOT_FOUND => ("not-found", "Not found"),
        StatusCode::METHOD_NOT_ALLOWED => ("method-not-allowed", "Method not allowed"),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload-too-large", "Request body too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported-media-type", "Unsupported media type"),
        s if s.is_server_error() => ("internal", "Internal server error"),
        _ => ("bad-request", "Bad request"),
    };
    let detail = if text.is_empty() || status.is_server_error() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let mut out = problem_response(&Problem::new(status, kind, title, detail));
    if let Some(a) = allow {
        out.headers_mut().insert(header::ALLOW, a);
    }
    out
}

/// The listening socket a parent process opened and handed over as descriptor `fd`
/// (`--listen-fd`): a supervisor, or a test that keeps its port from ever being free.
#[allow(unsafe_code)]
fn inherited_listener(fd: i32) -> anyhow::Result<std::net::TcpListener> {
    use std::os::fd::FromRawFd;
    anyhow::ensure!(
        fd > 2,
        "--listen-fd {fd} is a standard stream, not a socket"
    );
    // SAFETY: `--listen-fd` names a descriptor the parent opened and left open across exec for
    // this purpose; nothing else in this process takes ownership of it.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    let addr = listener
        .local_addr()
        .with_context(|| format!("--listen-fd {fd} is not a listening TCP socket"))?;
    listener.set_nonblocking(true)?;
    // The backlog tokio gives a socket it binds (the parent may have listened with less).
    nix::sys::socket::listen(&listener, nix::sys::socket::Backlog::new(1024)?)?;
    // Not passed on again: a worker child must not hold the port.
    nix::fcntl::fcntl(
        &listener,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )?;
    tracing::info!(%addr, fd, "listening on an inherited socket");
    Ok(listener)
}

/// Limits on client connections.
#[derive(Debug, Clone, Copy)]
pub struct Connections {
    /// Most open connections; past it, new ones wait in the kernel's backlog.
    pub max: usize,
    /// Headers must arrive within this; an idle keep-alive connection is closed after it.
    pub header_timeout: std::time::Duration,
}

/// The connection limit the file-descriptor limit allows: the soft limit is raised to the hard
/// one, and connections get what is left after a reserve for the database pool, the embedded
/// cluster's files and logs.
pub fn connection_limit(wanted: usize) -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    const RESERVE: u64 = 256;
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return wanted;
    };
    let soft = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    let room = soft.saturating_sub(RESERVE).max(16) as usize;
    if wanted > room {
        tracing::warn!(
            wanted,
            allowed = room,
            "--max-connections is over what the open-file limit allows; using the smaller"
        );
    }
    wanted.min(room).max(1)
}

/// Serve HTTP/1 and HTTP/2 on `listener` until `stop`: at most `limits.max` connections at once
/// (the accept loop waits for a free slot), headers within `limits.header_timeout` (also the
/// idle keep-alive timeout), TCP_NODELAY, and an accept error (such as running out of file
/// descriptors) answered by a short pause rather than a busy loop. On `stop`, no new connection
/// is taken and open ones finish their requests (at most 30 s).
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: Connections,
    stop: tokio_util::sync::CancellationToken,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(std::time::Duration::from_secs(20)))
        .keep_alive_timeout(limits.header_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max));
    let mut last_accept_warning: Option<std::time::Instant> = None;
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.cancelled() => break,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    if last_accept_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
                        tracing::warn!(error = %e, "could not accept a connection; pausing accepts briefly");
                        last_accept_warning = Some(std::time::Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        // TCP_NODELAY: a response written in two small segments must not wait for the peer's
        // delayed ACK (Nagle), which otherwise adds up to 40 ms to idle keep-alive connections.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("could not set TCP_NODELAY: {e}");
        }
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            let app = app.clone();
            async move {
                use tower::ServiceExt as _;
                app.oneshot(req.map(Body::new)).await
            }
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            // The protocol is told from the first bytes, a wait with no timer of its own: a
            // connection that sends nothing is closed after the header timeout.
            let mut first = [0u8; 1];
            if !matches!(
                tokio::time::timeout(header_timeout, tcp.peek(&mut first)).await,
                Ok(Ok(1..))
            ) {
                drop(permit);
                return;
            }
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(30)) => {
            tracing::warn!("open connections did not finish within 30 s of shutdown; closing them");
        }
    }
}
