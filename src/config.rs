//! Command line and environment.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "infoaudit",
    version,
    about = "Audit machine-learning models with information theory"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (HTTP API and/or workers). This is the default command.
    Serve(ServeArgs),
    /// Evaluate a stored gate policy for a version; exit 0 pass/warn, 1 fail,
    /// 2 inconclusive/pending, 3 error.
    Gate(crate::cli::GateArgs),
    /// Upload a batch file (JSON, NDJSON or CSV) and print its id.
    Submit(crate::cli::SubmitArgs),
    /// Run the estimators on a file here, with no server and no database (CSV, NDJSON, JSON,
    /// Arrow or Parquet in; JSON out); exit 0 ok, 1 an estimator failed, 3 unusable input.
    Estimate(crate::cli::EstimateArgs),
    /// Manage API keys directly in the database (bootstrap the first admin key).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it once.
    Create(KeysCreateArgs),
}

#[derive(Debug, Clone, Args)]
pub struct KeysCreateArgs {
    #[arg(long)]
    pub name: String,
    /// Comma-separated: ingest, read, gate, admin.
    #[arg(long, value_delimiter = ',', required = true)]
    pub scopes: Vec<String>,
    /// Comma-separated model names the key is limited to (default: every model).
    #[arg(long, value_delimiter = ',')]
    pub models: Option<Vec<String>>,
    /// Data directory of the embedded PostgreSQL (used when DATABASE_URL is not set).
    #[arg(long, env = "INFOAUDIT_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

/// Which parts of the service this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Role {
    /// The HTTP API only (enqueues jobs, reads results).
    Api,
    /// Workers only (claims and runs jobs).
    Worker,
    /// Both (the default).
    #[default]
    All,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "INFOAUDIT_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Folder for the embedded PostgreSQL cluster (used when DATABASE_URL is not set).
    #[arg(long, env = "INFOAUDIT_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// External PostgreSQL server; without it the embedded cluster under --data-dir is used.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Run the API, the workers, or both.
    #[arg(long, env = "INFOAUDIT_ROLE", value_enum, default_value_t = Role::All)]
    pub role: Role,
    /// Concurrent jobs per worker process (default: the number of CPU cores).
    #[arg(long, env = "INFOAUDIT_WORKERS")]
    pub workers: Option<usize>,
    /// Largest accepted upload body, in bytes (the batch upload route).
    #[arg(long, env = "INFOAUDIT_MAX_UPLOAD_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_upload_bytes: usize,
    /// Largest accepted body on every other route, in bytes.
    #[arg(long, env = "INFOAUDIT_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Job lease length in seconds; a worker renews it every third of that while a job runs.
    #[arg(long, env = "INFOAUDIT_LEASE_SECONDS", default_value_t = 30.0)]
    pub lease_seconds: f64,
    /// Seconds in-flight jobs get to finish on shutdown before they are released for others.
    #[arg(long, env = "INFOAUDIT_SHUTDOWN_GRACE_SECONDS", default_value_t = 10.0)]
    pub shutdown_grace_seconds: f64,
    /// Require an API key on every call except health, metrics and docs (without it, keys are
    /// required only once one exists).
    #[arg(long, env = "INFOAUDIT_REQUIRE_AUTH", default_value_t = false)]
    pub require_auth: bool,
    /// Emit logs as JSON lines.
    #[arg(long, env = "INFOAUDIT_LOG_JSON", default_value_t = false)]
    pub log_json: bool,
    /// With `--role all`, run the workers inside the API process instead of in a supervised
    /// worker child process (then an estimator that aborts takes the API down with it).
    #[arg(long, env = "INFOAUDIT_IN_PROCESS_WORKERS", default_value_t = false)]
    pub in_process_workers: bool,
    /// Most classes (multiclass) or labels (multilabel) a batch may have.
    #[arg(long, env = "INFOAUDIT_MAX_CLASSES", default_value_t = 100_000)]
    pub max_classes: u64,
    /// Memory one estimator job may need, in bytes, as estimated from the batch's shape before
    /// anything is allocated (default: an eighth of the machine's memory or cgroup limit).
    #[arg(long, env = "INFOAUDIT_JOB_MEMORY_BYTES")]
    pub job_memory_bytes: Option<u64>,
    /// Uploads answer 503 + Retry-After while this many jobs are queued (0: no ceiling).
    #[arg(long, env = "INFOAUDIT_MAX_QUEUED_JOBS", default_value_t = 50_000)]
    pub max_queued_jobs: u64,
    /// Uploads answer 503 + Retry-After while the oldest due queued job has waited this many
    /// seconds (0: no ceiling).
    #[arg(long, env = "INFOAUDIT_MAX_QUEUE_AGE_SECONDS", default_value_t = 0.0)]
    pub max_queue_age_seconds: f64,
    /// Requests per second each API key (or, without a key, each client address) may make
    /// under /v1/, as a token bucket; 429 + Retry-After beyond it (0: no limit).
    #[arg(long, env = "INFOAUDIT_RATE_LIMIT", default_value_t = 0.0)]
    pub rate_limit: f64,
    /// Burst of the rate limit: requests allowed at once after a quiet spell (default: twice
    /// the rate, at least 1).
    #[arg(long, env = "INFOAUDIT_RATE_LIMIT_BURST")]
    pub rate_limit_burst: Option<f64>,
    /// How often the workers apply the models' retention policies, in seconds.
    #[arg(
        long,
        env = "INFOAUDIT_RETENTION_INTERVAL_SECONDS",
        default_value_t = 300.0
    )]
    pub retention_interval_seconds: f64,
    /// Rows a retention purge deletes per statement (each in its own short transaction).
    #[arg(long, env = "INFOAUDIT_RETENTION_CHUNK", default_value_t = 500)]
    pub retention_chunk: u32,
    /// Let monitor webhooks reach loopback, private and link-local addresses (refused by
    /// default, so a webhook URL cannot reach internal services).
    #[arg(long, env = "INFOAUDIT_WEBHOOK_ALLOW_PRIVATE", default_value_t = false)]
    pub webhook_allow_private: bool,
    /// The service's public base URL, for links in monitor messages (default: http://<addr>).
    #[arg(long, env = "INFOAUDIT_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// First webhook retry delay in seconds (doubling with jitter, up to an hour, for 24 h).
    #[arg(long, env = "INFOAUDIT_WEBHOOK_RETRY_SECONDS", default_value_t = 5.0)]
    pub webhook_retry_seconds: f64,
    /// One webhook attempt's time limit in seconds.
    #[arg(
        long,
        env = "INFOAUDIT_WEBHOOK_TIMEOUT_SECONDS",
        default_value_t = 10.0
    )]
    pub webhook_timeout_seconds: f64,
    /// At most this many information series (latest result per model, version and metric that a
    /// gate policy or monitor uses, plus alias markers) in `/metrics`; the rest are counted in
    /// `infoaudit_information_series_dropped`.
    #[arg(
        long,
        env = "INFOAUDIT_METRICS_MAX_INFORMATION_SERIES",
        default_value_t = 1000
    )]
    pub metrics_max_information_series: usize,
    /// `/metrics` reads the information series from the database at most once per this many
    /// seconds (0: at every scrape).
    #[arg(long, env = "INFOAUDIT_METRICS_CACHE_SECONDS", default_value_t = 5.0)]
    pub metrics_cache_seconds: f64,
    /// The longest one estimator job may compute (seconds): the whole-batch run is stopped past
    /// it (the job fails, saying so) and per-segment runs not done by then are skipped with the
    /// reason.
    #[arg(long, env = "INFOAUDIT_JOB_SECONDS", default_value_t = 300.0)]
    pub job_seconds: f64,
    /// Serve on this inherited listening socket instead of binding `--addr` (a descriptor a
    /// parent process left open: a supervisor, or a test that keeps its port).
    #[arg(long, env = "INFOAUDIT_LISTEN_FD")]
    pub listen_fd: Option<i32>,
    /// Most open client connections; past it new connections wait in the kernel's backlog
    /// (clamped to what the file-descriptor limit allows).
    #[arg(long, env = "INFOAUDIT_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// A request's headers must arrive within this many seconds, and an idle keep-alive
    /// connection is closed after it.
    #[arg(long, env = "INFOAUDIT_HEADER_TIMEOUT_SECONDS", default_value_t = 10.0)]
    pub header_timeout_seconds: f64,
    /// While a handler reads a request body, the client may send nothing for at most this many
    /// seconds (408).
    #[arg(
        long,
        env = "INFOAUDIT_BODY_IDLE_TIMEOUT_SECONDS",
        default_value_t = 20.0
    )]
    pub body_idle_timeout_seconds: f64,
    /// After the first `--body-idle-timeout-seconds` of waiting for a body, it must arrive at
    /// this many bytes per second of waiting at least (408; 0: no rate).
    #[arg(
        long,
        env = "INFOAUDIT_BODY_MIN_BYTES_PER_SECOND",
        default_value_t = 1024
    )]
    pub body_min_bytes_per_second: u64,
    /// While keys are required (`--require-auth`, or once a key exists), `/metrics` shows the
    /// information series (model names and their values) only to a scrape that presents a key,
    /// and only for that key's models. With this flag every scrape sees every model's series, as
    /// when no key is required.
    #[arg(
        long,
        env = "INFOAUDIT_METRICS_PUBLIC_INFORMATION",
        default_value_t = false
    )]
    pub metrics_public_information: bool,
    /// For a batch uploaded without labels (ids given): the labelled fraction that releases its
    /// label-dependent estimators, unless the upload names its own `label_coverage` (0 < f ≤ 1).
    #[arg(long, env = "INFOAUDIT_LABEL_COVERAGE", default_value_t = 1.0, value_parser = coverage)]
    pub label_coverage: f64,
}

impl Default for ServeArgs {
    fn default() -> Self {
        ServeArgs {
            addr: "127.0.0.1:8080".parse().expect("valid address"),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            role: Role::All,
            workers: None,
            max_upload_bytes: 256 * 1024 * 1024,
            max_body_bytes: 1024 * 1024,
            lease_seconds: 30.0,
            shutdown_grace_seconds: 10.0,
            require_auth: false,
            log_json: false,
            in_process_workers: false,
            max_classes: 100_000,
            job_memory_bytes: None,
            max_queued_jobs: 50_000,
            max_queue_age_seconds: 0.0,
            rate_limit: 0.0,
            rate_limit_burst: None,
            retention_interval_seconds: 300.0,
            retention_chunk: 500,
            webhook_allow_private: false,
            public_url: None,
            webhook_retry_seconds: 5.0,
            webhook_timeout_seconds: 10.0,
            metrics_max_information_series: 1000,
            metrics_cache_seconds: 5.0,
            metrics_public_information: false,
            job_seconds: 300.0,
            listen_fd: None,
            max_connections: 1024,
            header_timeout_seconds: 10.0,
            body_idle_timeout_seconds: 20.0,
            body_min_bytes_per_second: 1024,
            label_coverage: 1.0,
        }
    }
}

/// The memory this process may use: the smaller of physical memory (`MemTotal`) and the cgroup
/// limit, when either is known.
pub fn machine_memory_bytes() -> Option<u64> {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok()?.trim().parse::<u64>().ok())
    // cgroup v1 reports "no limit" as a huge number.
    .filter(|&b| b < (1 << 60));
    match (total, cgroup) {
        (Some(t), Some(c)) => Some(t.min(c)),
        (t, c) => t.or(c),
    }
}

impl ServeArgs {
    /// `serve` with no flags, reading the environment (what `infoaudit` alone runs).
    pub fn from_env() -> ServeArgs {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            serve: ServeArgs,
        }
        Only::parse_from(["infoaudit"]).serve
    }

    /// The per-job memory budget: `--job-memory-bytes`, or an eighth of the machine's memory
    /// (1 GiB when that is unknown), at least 64 MiB.
    pub fn job_memory(&self) -> u64 {
        self.job_memory_bytes
            .unwrap_or_else(|| machine_memory_bytes().map_or(1 << 30, |m| m / 8))
            .max(64 << 20)
    }

    /// The limits estimator jobs are held to, on upload and in the worker.
    pub fn cost_limits(&self) -> crate::estimate::cost::Limits {
        crate::estimate::cost::Limits {
            memory_bytes: self.job_memory(),
            max_classes: self.max_classes,
        }
    }

    /// The flags a worker child process gets from this (`--role all`) process.
    pub fn worker_child_args(&self) -> Vec<String> {
        let mut a = vec![
            "serve".to_string(),
            "--role".into(),
            "worker".into(),
            "--data-dir".into(),
            self.data_dir.display().to_string(),
            "--workers".into(),
            self.worker_count().to_string(),
            "--lease-seconds".into(),
            self.lease_seconds.to_string(),
            "--shutdown-grace-seconds".into(),
            self.shutdown_grace_seconds.to_string(),
            "--max-classes".into(),
            self.max_classes.to_string(),
            "--job-memory-bytes".into(),
            self.job_memory().to_string(),
            "--retention-interval-seconds".into(),
            self.retention_interval_seconds.to_string(),
            "--retention-chunk".into(),
            self.retention_chunk.to_string(),
        ];
        a.extend([
            "--public-url".into(),
            self.public_url(),
            "--webhook-retry-seconds".into(),
            self.webhook_retry_seconds.to_string(),
            "--webhook-timeout-seconds".into(),
            self.webhook_timeout_seconds.to_string(),
        ]);
        if self.webhook_allow_private {
            a.push("--webhook-allow-private".into());
        }
        if self.log_json {
            a.push("--log-json".into());
        }
        a
    }

    /// `--public-url`, or `http://<addr>`.
    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.addr))
    }

    pub fn worker_count(&self) -> usize {
        self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        })
    }
}

/// A labelled fraction in (0, 1].
fn coverage(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(c) if c > 0.0 && c <= 1.0 => Ok(c),
        _ => Err(format!("{s:?} is not a fraction in (0, 1]")),
    }
}
