//! Real processes of the service binary against one PostgreSQL database: API and worker roles
//! scaled out, and a SIGKILL in the middle of work followed by a restart.

use std::collections::HashSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::PgPool;

use crate::support::{classifier_batch, database_url, fresh_db};

/// One `infoaudit serve` process; killed when dropped, and its log file removed.
struct Service {
    child: tokio::process::Child,
    url: Option<String>,
    log: std::path::PathBuf,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start(role: &str, db: &str, port: Option<u16>, extra: &[&str]) -> Service {
    let log = std::env::temp_dir().join(format!(
        "infoaudit-proc-{db}-{role}-{}.log",
        uuid::Uuid::new_v4().simple()
    ));
    let file = std::fs::File::create(&log).unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_infoaudit"));
    cmd.args(["serve", "--role", role])
        .args(extra)
        .env("DATABASE_URL", database_url(db))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(file)
        .kill_on_drop(true);
    let url = port.map(|p| {
        cmd.args(["--addr", &format!("127.0.0.1:{p}")]);
        format!("http://127.0.0.1:{p}")
    });
    let child = cmd.spawn().expect("start the service binary");
    let svc = Service {
        child,
        url,
        log: log.clone(),
    };
    if let Some(url) = &svc.url {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = reqwest::get(format!("{url}/readyz")).await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the {role} process did not become ready; log: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    svc
}

impl Service {
    fn url(&self) -> &str {
        self.url.as_deref().unwrap()
    }

    fn signal(&mut self, sig: nix::sys::signal::Signal) {
        let pid = self.child.id().expect("still running") as i32;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::SIGTERM,
            );
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
    }
}

async fn upload(http: &reqwest::Client, url: &str, version: &str, body: &Value) -> Option<String> {
    let r = http
        .post(format!("{url}/v1/models/scale/versions/{version}/batches"))
        .json(body)
        .send()
        .await
        .ok()?;
    if r.status().as_u16() != 202 {
        return None;
    }
    let v: Value = r.json().await.ok()?;
    v["batch"]["id"].as_str().map(str::to_string)
}

/// Wait until no job is queued or running.
async fn drain(pool: &PgPool, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let open: i64 =
            sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')")
                .fetch_one(pool)
                .await
                .unwrap();
        if open == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{open} jobs still open");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every accepted batch has all its jobs succeeded, each with exactly one result; no batch
/// exists without jobs.
async fn assert_exactly_once(pool: &PgPool, accepted: &[String]) {
    let ids: Vec<uuid::Uuid> = accepted.iter().map(|s| s.parse().unwrap()).collect();
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM batches WHERE id = ANY($1)")
        .bind(&ids)
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(stored as usize, ids.len(), "every 202 is stored");
    let bad: Vec<(uuid::Uuid, String, i64)> = sqlx::query_as(
        "SELECT j.id, j.state, (SELECT count(*) FROM results r WHERE r.job_id = j.id)
         FROM jobs j WHERE j.state <> 'succeeded'
            OR (SELECT count(*) FROM results r WHERE r.job_id = j.id) <> 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(bad.is_empty(), "jobs not run exactly once: {bad:?}");
    let orphans: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM batches b WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.batch_id = b.id)",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(orphans, 0, "a batch was stored without its jobs");
    let results: i64 = sqlx::query_scalar("SELECT count(*) FROM results")
        .fetch_one(pool)
        .await
        .unwrap();
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(results, jobs);
}

fn batch(seed: u64, n: usize) -> Value {
    let mut b = classifier_batch(n, 8, 0.7, seed);
    b["estimators"] = json!(["shannon_mi", "semantic_mi"]);
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_and_an_api_process_share_the_queue() {
    let (options, db) = fresh_db().await;
    let pool = PgPool::connect_with(options).await.unwrap();
    let api = start("api", &db, Some(free_port()), &[]).await;
    let w1 = start("worker", &db, None, &["--workers", "2"]).await;
    let w2 = start("worker", &db, None, &["--workers", "2"]).await;
    let http = reqwest::Client::new();
    let mut accepted = Vec::new();
    for i in 0..40 {
        let id = upload(&http, api.url(), "v1", &batch(i, 4000)).await;
        accepted.push(id.expect("upload accepted"));
    }
    drain(&pool, 180).await;
    assert_exactly_once(&pool, &accepted).await;
    let by: Vec<(Option<String>, i64)> = sqlx::query_as(
        "SELECT split_part(ran_by, '/', 1), count(*) FROM jobs GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        by.len(),
        2,
        "both worker processes ran jobs (and no one else): {by:?}"
    );
    assert!(by.iter().all(|(who, n)| who.is_some() && *n > 0), "{by:?}");
    eprintln!(
        "scale-out: {} batches, jobs per worker process: {by:?}",
        accepted.len()
    );
    let retried: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE attempts <> 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(retried, 0, "no job was claimed twice");
    for s in [api, w1, w2] {
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_jobs_run_then_restart_loses_nothing() {
    let (options, db) = fresh_db().await;
    let pool = PgPool::connect_with(options).await.unwrap();
    let port = free_port();
    let args = ["--workers", "2", "--lease-seconds", "2"];
    let mut svc = start("all", &db, Some(port), &args).await;
    let http = reqwest::Client::new();
    let mut accepted = Vec::new();
    for i in 0..12 {
        accepted.push(
            upload(&http, svc.url(), "v1", &batch(i, 20_000))
                .await
                .unwrap(),
        );
    }
    // Keep uploading while the process is killed: requests in flight at the kill may fail, but
    // every one that got its 202 must survive.
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let uploader = {
        let (http, url, sent) = (http.clone(), svc.url().to_string(), sent.clone());
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 100..160 {
                match upload(&http, &url, "v2", &batch(i, 20_000)).await {
                    Some(id) => ids.push(id),
                    None => break,
                }
                sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            ids
        })
    };
    // Kill once some jobs have finished and others are running. A job seen running can finish
    // before a signal lands, so the process is frozen first (SIGSTOP: it can send nothing more),
    // statements it had already sent are given time to complete, and the running set is read
    // while it is frozen; if nothing is running at that moment it is thawed and we wait again.
    let deadline = Instant::now() + Duration::from_secs(120);
    let stale: Vec<uuid::Uuid> = loop {
        let (done, running): (i64, i64) = (
            sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state = 'succeeded'")
                .fetch_one(&pool)
                .await
                .unwrap(),
            sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state = 'running'")
                .fetch_one(&pool)
                .await
                .unwrap(),
        );
        let uploading = sent.load(std::sync::atomic::Ordering::Relaxed);
        if done > 0 && running > 0 && (3..60).contains(&uploading) {
            svc.signal(nix::sys::signal::SIGSTOP);
            tokio::time::sleep(Duration::from_millis(300)).await;
            let frozen: Vec<uuid::Uuid> =
                sqlx::query_scalar("SELECT id FROM jobs WHERE state = 'running'")
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            if !frozen.is_empty() {
                svc.signal(nix::sys::signal::SIGKILL);
                break frozen;
            }
            svc.signal(nix::sys::signal::SIGCONT);
        }
        assert!(Instant::now() < deadline, "jobs never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let _ = svc.child.wait().await;
    accepted.extend(uploader.await.unwrap());
    let after: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM jobs WHERE state = 'running'")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        after.iter().collect::<HashSet<_>>(),
        stale.iter().collect::<HashSet<_>>(),
        "the jobs running while the process was frozen are the ones the kill left running"
    );

    // Restart on the same database: the expired leases are taken back and run again.
    let svc = start("all", &db, Some(port), &args).await;
    for i in 200..205 {
        accepted.push(
            upload(&http, svc.url(), "v3", &batch(i, 2000))
                .await
                .unwrap(),
        );
    }
    drain(&pool, 240).await;
    assert_exactly_once(&pool, &accepted).await;
    let rerun: Vec<(i32, i32)> =
        sqlx::query_as("SELECT attempts, rescues FROM jobs WHERE id = ANY($1)")
            .bind(&stale)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(
        rerun.iter().all(|(a, r)| *a >= 2 && *r >= 1),
        "every job running at the kill was taken back and run again: {rerun:?}"
    );
    eprintln!(
        "fault: {} batches accepted ({} while the kill came), {} jobs running at the SIGKILL, all re-run (attempts, rescues): {rerun:?}",
        accepted.len(),
        sent.load(std::sync::atomic::Ordering::Relaxed),
        stale.len()
    );
    let owners: HashSet<Option<String>> =
        sqlx::query_scalar("SELECT split_part(ran_by, '/', 1) FROM jobs")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert!(owners.iter().all(Option::is_some), "{owners:?}");
    svc.stop().await;
}
