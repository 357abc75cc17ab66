//! The database: a pool on `DATABASE_URL`, or on a private PostgreSQL cluster that this process
//! initialises and runs under the data directory (Unix socket only, no TCP port).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

/// The embedded migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The database name the service uses inside its private cluster.
pub const LOCAL_DB: &str = "infoaudit";

/// A PostgreSQL cluster owned by this process (or adopted from an earlier run on the same folder).
#[derive(Debug)]
pub struct LocalPostgres {
    pgdata: PathBuf,
    socket_dir: PathBuf,
    bin_dir: PathBuf,
    run_as: Option<nix::unistd::User>,
    started: std::sync::atomic::AtomicBool,
    options: LocalOptions,
}

/// Settings for a private cluster.
#[derive(Debug, Clone, Default)]
pub struct LocalOptions {
    /// Trade durability for speed (tests only): fsync, synchronous_commit and full_page_writes off.
    pub ephemeral: bool,
}

fn missing_binaries() -> anyhow::Error {
    anyhow::anyhow!(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found, so the embedded database cannot start.\n\
         Fix one of two ways:\n  \
         1. install PostgreSQL (Debian/Ubuntu: `apt-get install postgresql`; or set INFOAUDIT_PG_BIN to the folder holding initdb and pg_ctl), or\n  \
         2. set DATABASE_URL to an existing PostgreSQL server (e.g. postgres://user:pass@host:5432/infoaudit)."
    )
}

/// Find the folder holding `initdb` and `pg_ctl`.
pub fn find_bin_dir() -> anyhow::Result<PathBuf> {
    let has = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Ok(d) = std::env::var("INFOAUDIT_PG_BIN") {
        let d = PathBuf::from(d);
        if has(&d) {
            return Ok(d);
        }
        bail!(
            "INFOAUDIT_PG_BIN={} holds no initdb and pg_ctl",
            d.display()
        );
    }
    // Debian's pg_config (postgresql-common) reports the server's bin folder.
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has(&d) {
            return Ok(d);
        }
    }
    // Debian/Ubuntu layout: the newest /usr/lib/postgresql/<major>/bin.
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<(u32, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
                let d = e.path().join("bin");
                has(&d).then_some((v, d))
            })
            .collect();
        versions.sort();
        if let Some((_, d)) = versions.pop() {
            return Ok(d);
        }
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let d = PathBuf::from(dir);
        if has(&d) {
            return Ok(d);
        }
    }
    Err(missing_binaries())
}

impl LocalPostgres {
    /// Initialise (first time) and start the cluster under `root/postgres`, or adopt it if it is
    /// already running. As root, the cluster runs as the unprivileged `postgres` user.
    pub fn start(root: &Path, opts: &LocalOptions) -> anyhow::Result<LocalPostgres> {
        let bin_dir = find_bin_dir()?;
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create data directory {}", root.display()))?;
        let root = root
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", root.display()))?;
        let pgdata = root.join("postgres");
        let socket_dir = pgdata.clone();
        let socket_path = socket_dir.join(".s.PGSQL.5432");
        if socket_path.as_os_str().len() > 100 {
            bail!(
                "the data directory path is too long for a Unix socket ({}); choose a shorter --data-dir",
                socket_path.display()
            );
        }
        let run_as = if nix::unistd::geteuid().is_root() {
            let user = nix::unistd::User::from_name("postgres")
                .context("looking up the postgres user")?
                .context(
                    "running as root, but there is no `postgres` system user to run the embedded \
                     PostgreSQL as (initdb refuses root): install PostgreSQL, which creates it, \
                     run as an ordinary user, or set DATABASE_URL",
                )?;
            Some(user)
        } else {
            None
        };
        let pg = LocalPostgres {
            pgdata,
            socket_dir,
            bin_dir,
            run_as,
            started: Default::default(),
            options: opts.clone(),
        };
        pg.init(opts)?;
        pg.start_server(opts)?;
        Ok(pg)
    }

    fn command(&self, program: &str) -> Command {
        use std::os::unix::process::CommandExt;
        let mut c = Command::new(self.bin_dir.join(program));
        c.current_dir(self.pgdata.parent().unwrap_or(Path::new("/")));
        c.env_remove("PGDATA").env("LC_ALL", "C");
        if let Some(u) = &self.run_as {
            c.uid(u.uid.as_raw()).gid(u.gid.as_raw());
            c.env("HOME", &u.dir).env("USER", &u.name);
        }
        c
    }

    fn run(&self, mut c: Command, what: &str) -> anyhow::Result<()> {
        let out = c
            .output()
            .with_context(|| format!("could not run {what}"))?;
        if !out.status.success() {
            bail!(
                "{what} failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    fn init(&self, opts: &LocalOptions) -> anyhow::Result<()> {
        if self.pgdata.join("PG_VERSION").exists() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.pgdata)?;
        if let Some(u) = &self.run_as {
            // The cluster's owner must reach its folder: chown it and let others traverse the parents.
            std::os::unix::fs::chown(&self.pgdata, Some(u.uid.as_raw()), Some(u.gid.as_raw()))?;
            let mut p = self.pgdata.parent();
            while let Some(dir) = p {
                use std::os::unix::fs::PermissionsExt;
                let meta = std::fs::metadata(dir)?;
                let mode = meta.permissions().mode();
                if mode & 0o001 == 0 {
                    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o011))?;
                }
                p = dir.parent();
            }
        }
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&self.pgdata, std::fs::Permissions::from_mode(0o700))?;
        }
        let mut c = self.command("initdb");
        c.arg("-D")
            .arg(&self.pgdata)
            .args(["-U", "postgres", "-E", "UTF8", "--locale=C"])
            // Only the socket in the private 0700 folder reaches the server, so only its owner
            // (and root) can connect: local trust is as strict as peer authentication here.
            .args(["--auth-local=trust", "--auth-host=reject"]);
        if opts.ephemeral {
            c.arg("--no-sync");
        }
        self.run(c, "initdb")
    }

    fn running(&self) -> bool {
        let mut c = self.command("pg_ctl");
        c.arg("status").arg("-D").arg(&self.pgdata);
        c.output().map(|o| o.status.success()).unwrap_or(false)
    }

    fn start_server(&self, opts: &LocalOptions) -> anyhow::Result<()> {
        self.start_server_inner(opts, true)
    }

    fn start_server_inner(&self, opts: &LocalOptions, adopt: bool) -> anyhow::Result<()> {
        if adopt && self.running() {
            tracing::info!(pgdata = %self.pgdata.display(), "embedded PostgreSQL already running; adopting it");
            return Ok(());
        }
        let mut server_opts = format!(
            "-c listen_addresses='' -k {} -c unix_socket_permissions=0700 -c max_connections=200",
            self.socket_dir.display()
        );
        if opts.ephemeral {
            server_opts.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        let mut c = self.command("pg_ctl");
        c.arg("start")
            .arg("-D")
            .arg(&self.pgdata)
            .arg("-l")
            .arg(self.pgdata.join("server.log"))
            .args(["-w", "-t", "120", "-o", &server_opts]);
        if let Err(e) = self.run(c, "pg_ctl start") {
            // A concurrent starter (another test process) may have won the race.
            if adopt && self.running() {
                return Ok(());
            }
            let log = std::fs::read_to_string(self.pgdata.join("server.log")).unwrap_or_default();
            let tail: String = log
                .lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            bail!(
                "{e}\nserver log ({}):\n{tail}",
                self.pgdata.join("server.log").display()
            );
        }
        self.started
            .store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(pgdata = %self.pgdata.display(), "embedded PostgreSQL started");
        Ok(())
    }

    /// The PID of the running postmaster, from `postmaster.pid`; `None` when it is gone or
    /// cannot be told (see [`LocalPostgres::postmaster`]).
    pub fn postmaster_pid(&self) -> Option<i32> {
        match self.postmaster() {
            Postmaster::Alive(pid) => Some(pid),
            _ => None,
        }
    }

    /// Whether the postmaster runs: `Gone` only when `postmaster.pid` is absent or names a
    /// process that is gone (a zombie counts as gone). When the files cannot be read for another
    /// reason (out of file descriptors, say) the answer is `Unknown`: a reason to look again,
    /// never to start a second server.
    pub fn postmaster(&self) -> Postmaster {
        use std::io::ErrorKind;
        let text = match std::fs::read_to_string(self.pgdata.join("postmaster.pid")) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => return Postmaster::Gone,
            Err(e) => return Postmaster::Unknown(format!("postmaster.pid: {e}")),
        };
        let Some(pid) = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<i32>().ok())
            .filter(|&p| p > 0)
        else {
            // Being written by a starting server, or left empty by a dead one.
            return Postmaster::Unknown("postmaster.pid names no process".into());
        };
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // Field 3 (after the parenthesised name) is the state; Z and X are dead.
            Ok(stat) => match stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
            {
                Some("Z" | "X") => Postmaster::Gone,
                Some(_) => Postmaster::Alive(pid),
                None => Postmaster::Unknown(format!("/proc/{pid}/stat is unreadable")),
            },
            Err(e) if e.kind() == ErrorKind::NotFound => Postmaster::Gone,
            Err(e) if Path::new("/proc/self/stat").exists() => {
                Postmaster::Unknown(format!("/proc/{pid}/stat: {e}"))
            }
            // No procfs: ask the kernel whether the process exists.
            Err(_) => match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
                Ok(()) => Postmaster::Alive(pid),
                Err(nix::errno::Errno::ESRCH) => Postmaster::Gone,
                Err(e) => Postmaster::Unknown(format!("signal 0 to {pid}: {e}")),
            },
        }
    }

    /// Start the server again after it died (PostgreSQL runs crash recovery from the WAL on
    /// start). Fails while processes of the dead server still hold its shared memory; the
    /// caller retries.
    /// `Ok(false)`: it was running after all (nothing was started).
    pub fn restart_after_crash(&self) -> anyhow::Result<bool> {
        // Not `pg_ctl status`: it takes a dead postmaster that is not yet reaped (a zombie) for
        // a running one.
        if let Err(e) = self.start_server_inner(&self.options, false) {
            // Started by someone else meanwhile, or it was never down: not a failure.
            if self.postmaster_pid().is_some() {
                return Ok(false);
            }
            return Err(e);
        }
        if self.postmaster_pid().is_none() {
            bail!("the postmaster exited right after starting");
        }
        Ok(true)
    }

    /// The data folder of the cluster.
    pub fn pgdata(&self) -> &Path {
        &self.pgdata
    }

    /// Whether this process started the server (rather than adopting a running one).
    pub fn started_here(&self) -> bool {
        self.started.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Connection options for a database in this cluster.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(&self.socket_dir)
            .username("postgres")
            .database(database)
            .log_statements(tracing::log::LevelFilter::Trace)
    }

    /// A `DATABASE_URL` for another process to reach `database` in this cluster (its socket).
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@localhost/{database}?host={}",
            self.socket_dir.display()
        )
    }

    /// Create the database if it does not exist yet.
    pub async fn ensure_database(&self, name: &str) -> anyhow::Result<()> {
        let mut conn = sqlx::PgConnection::connect_with(&self.connect_options("postgres")).await?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(name)
                .fetch_one(&mut conn)
                .await?;
        if !exists {
            let r = sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                .execute(&mut conn)
                .await;
            if let Err(e) = r {
                // Lost a race with another process creating it: fine.
                let again: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
                )
                .bind(name)
                .fetch_one(&mut conn)
                .await?;
                if !again {
                    return Err(e.into());
                }
            }
        }
        conn.close().await?;
        Ok(())
    }

    /// Stop the cluster (fast shutdown: rolls back open transactions, waits for the checkpoint).
    pub fn stop(&self) -> anyhow::Result<()> {
        let mut c = self.command("pg_ctl");
        c.arg("stop")
            .arg("-D")
            .arg(&self.pgdata)
            .args(["-m", "fast", "-w", "-t", "60"]);
        self.run(c, "pg_ctl stop")?;
        tracing::info!("embedded PostgreSQL stopped");
        Ok(())
    }
}

/// Whether the embedded cluster's postmaster runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Postmaster {
    Alive(i32),
    Gone,
    /// Its files could not be read (the reason): look again later.
    Unknown(String),
}

/// Keep the embedded cluster running: every `every`, check that its postmaster is alive; when it
/// is not (killed, crashed, stopped by someone else), start it again (PostgreSQL replays its WAL:
/// crash recovery), logging the outage and counting the restart in `/metrics`. Retries with a
/// capped backoff while the dead server's processes still hold its shared memory. Returns when
/// `stop` is cancelled.
pub async fn supervise(
    local: std::sync::Arc<LocalPostgres>,
    every: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut unknown_logged: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match local.postmaster() {
            Postmaster::Alive(_) => continue,
            Postmaster::Unknown(why) => {
                if unknown_logged.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    tracing::warn!(%why, "cannot tell whether the embedded PostgreSQL runs; looking again, not restarting it");
                    unknown_logged = Some(std::time::Instant::now());
                }
                continue;
            }
            Postmaster::Gone => {}
        }
        let down_since = std::time::Instant::now();
        tracing::error!(
            pgdata = %local.pgdata().display(),
            "embedded PostgreSQL is down (its postmaster is gone); restarting it with crash recovery"
        );
        let mut delay = Duration::from_millis(200);
        loop {
            if stop.is_cancelled() {
                return;
            }
            // Look again before each attempt: it may be back (started by someone else), or it
            // may never have been down (its files were unreadable for a while).
            match local.postmaster() {
                Postmaster::Alive(pid) => {
                    tracing::warn!(
                        pid,
                        seconds = down_since.elapsed().as_secs_f64(),
                        "embedded PostgreSQL is running; no restart needed"
                    );
                    break;
                }
                Postmaster::Unknown(why) => {
                    tracing::warn!(%why, "cannot tell whether the embedded PostgreSQL runs; waiting");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                    continue;
                }
                Postmaster::Gone => {}
            }
            let l = local.clone();
            let r = tokio::task::spawn_blocking(move || l.restart_after_crash()).await;
            match r {
                Ok(Ok(false)) => {
                    tracing::warn!("embedded PostgreSQL is running; no restart needed");
                    break;
                }
                Ok(Ok(true)) => {
                    crate::metrics::database_restarted();
                    tracing::warn!(
                        seconds_down = down_since.elapsed().as_secs_f64(),
                        "embedded PostgreSQL restarted after a crash"
                    );
                    break;
                }
                Ok(Err(e)) => {
                    crate::metrics::database_restart_failed();
                    tracing::warn!(error = %format!("{e:#}").lines().next().unwrap_or(""), "embedded PostgreSQL did not start yet; retrying")
                }
                Err(e) => tracing::warn!(error = %e, "restart task failed; retrying"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}

/// How long a request waits for a pooled connection before the service answers 503: during a
/// database outage a request fails after this, not after a long hang.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// A pool for the service. Idle connections are tested before use, so connections broken by a
/// database restart are replaced by new ones without any intervention.
pub async fn pool(options: PgConnectOptions, max: u32) -> anyhow::Result<PgPool> {
    let options = options.log_statements(tracing::log::LevelFilter::Trace);
    let pool = PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .test_before_acquire(true)
        // The database answered: a pool timeout soon after is contention, not an outage.
        .after_connect(|_, _| {
            Box::pin(async {
                crate::error::database_answered();
                Ok(())
            })
        })
        .after_release(|_, _| {
            Box::pin(async {
                crate::error::database_answered();
                Ok(true)
            })
        })
        .connect_with(options)
        .await
        .context("cannot connect to PostgreSQL")?;
    Ok(pool)
}

/// Apply the embedded migrations.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await.context("applying migrations")?;
    Ok(())
}
