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
        }
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

    pub fn worker_count(&self) -> usize {
        self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        })
    }
}
