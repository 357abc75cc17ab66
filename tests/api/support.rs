//! Test harness: a real PostgreSQL (the project's own embedded launcher when DATABASE_URL is not
//! set), one fresh database per test cloned from a migrated template, and the real router.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use infoaudit::api::{AppState, Limits};
use infoaudit::db::{LocalOptions, LocalPostgres};
use infoaudit::worker::{WorkerConfig, WorkerPool};
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgPool};
use tokio::sync::Notify;
use tower::ServiceExt;

struct Cluster {
    admin: PgConnectOptions,
    template: String,
    /// A URL for child processes: `DATABASE_URL` itself, or the embedded cluster's socket.
    url_base: String,
}

/// A `DATABASE_URL` for another process to reach a test database.
pub fn database_url(db: &str) -> String {
    cluster().url_base.replace("{db}", db)
}

fn template_name() -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for m in infoaudit::db::MIGRATOR.iter() {
        h.update(m.version.to_le_bytes());
        h.update(&*m.checksum);
    }
    format!("infoaudit_tpl_{}", &hex::encode(h.finalize())[..16])
}

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        // Own thread and runtime: tests run inside their own runtimes.
        std::thread::spawn(init_cluster)
            .join()
            .expect("test cluster starts")
    })
}

fn init_cluster() -> Cluster {
    let root: PathBuf = std::env::temp_dir().join(format!(
        "infoaudit-test-{}",
        &infoaudit::domain::batch::sha256_hex(env!("CARGO_MANIFEST_DIR").as_bytes())[..10]
    ));
    std::fs::create_dir_all(&root).expect("test folder");
    // One process at a time sets up (cargo nextest runs tests as separate processes).
    let lock = std::fs::File::create(root.join("setup.lock")).expect("lock file");
    lock.lock().expect("setup lock");
    let (admin, url_base) = match std::env::var("DATABASE_URL") {
        Ok(url) => {
            let admin = url
                .parse::<PgConnectOptions>()
                .expect("DATABASE_URL parses");
            let (head, tail) = match url.split_once('?') {
                Some((h, t)) => (h.to_string(), format!("?{t}")),
                None => (url.clone(), String::new()),
            };
            let base = head
                .rsplit_once('/')
                .map(|(h, _)| h.to_string())
                .unwrap_or(head);
            (admin, format!("{base}/{{db}}{tail}"))
        }
        Err(_) => {
            let pg = LocalPostgres::start(&root, &LocalOptions { ephemeral: true })
                .expect("embedded PostgreSQL starts for the tests");
            let socket = root.canonicalize().unwrap().join("postgres");
            let url = format!(
                "postgres://postgres@localhost/{{db}}?host={}",
                socket.display()
            );
            (pg.connect_options("postgres"), url)
        }
    };
    let template = template_name();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = sqlx::PgConnection::connect_with(&admin)
            .await
            .expect("admin connection");
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&template)
                .fetch_one(&mut c)
                .await
                .unwrap();
        if !exists {
            let tmp = format!("{template}_building");
            sqlx::query(&format!("DROP DATABASE IF EXISTS {tmp}"))
                .execute(&mut c)
                .await
                .unwrap();
            sqlx::query(&format!("CREATE DATABASE {tmp}"))
                .execute(&mut c)
                .await
                .unwrap();
            let pool = PgPool::connect_with(admin.clone().database(&tmp))
                .await
                .unwrap();
            infoaudit::db::migrate(&pool).await.unwrap();
            pool.close().await;
            sqlx::query(&format!("ALTER DATABASE {tmp} RENAME TO {template}"))
                .execute(&mut c)
                .await
                .unwrap();
        }
        // Databases of earlier runs (older than an hour) are dropped; in-use ones are skipped.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let old: Vec<String> =
            sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'iat\\_%'")
                .fetch_all(&mut c)
                .await
                .unwrap();
        for name in old {
            let t: u64 = name
                .split('_')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if t + 3600 < now {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
                    .execute(&mut c)
                    .await;
            }
        }
    });
    let _ = writeln!(std::io::stderr(), "test databases from template {template}");
    drop(lock);
    Cluster {
        admin,
        template,
        url_base,
    }
}

/// A fresh, migrated database for one test.
pub async fn fresh_db() -> (PgConnectOptions, String) {
    let cl = cluster();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let name = format!("iat_{now}_{}", uuid::Uuid::new_v4().simple());
    let mut c = sqlx::PgConnection::connect_with(&cl.admin)
        .await
        .expect("admin connection");
    // PostgreSQL refuses to clone a template another session is cloning at the same moment
    // ("being accessed by other users"): the tests of this process take turns, and a clash
    // with another process (another test binary on the same cluster) is retried for up to a
    // minute.
    static CLONING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = CLONING.lock().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE {}", cl.template))
            .execute(&mut c)
            .await
        {
            Ok(_) => break,
            Err(e)
                if std::time::Instant::now() < deadline
                    && e.to_string().contains("being accessed") =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("create test database: {e}"),
        }
    }
    c.close().await.ok();
    (cl.admin.clone().database(&name), name)
}

pub struct TestApp {
    pub pool: PgPool,
    pub router: Router,
    pub wake: Arc<Notify>,
}

/// The router with default limits, except that monitor webhooks may reach loopback (the
/// tests' receivers listen there).
pub async fn app() -> TestApp {
    app_with_limits(Limits {
        webhook_allow_private: true,
        ..Limits::default()
    })
    .await
}

pub async fn app_with_limits(limits: Limits) -> TestApp {
    app_with(limits, false).await
}

pub async fn app_with(limits: Limits, require_auth: bool) -> TestApp {
    let (options, _) = fresh_db().await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(20)
        .connect_with(options.clone())
        .await
        .expect("test pool");
    TestApp::on(pool, Arc::new(Notify::new()), limits, require_auth)
}

impl TestApp {
    /// A router of its own (fresh caches and in-process turns) on `pool`.
    fn on(pool: PgPool, wake: Arc<Notify>, limits: Limits, require_auth: bool) -> TestApp {
        let state = AppState {
            pool: pool.clone(),
            wake: wake.clone(),
            draining: Default::default(),
            limits,
            require_auth,
            caches: Default::default(),
        };
        TestApp {
            router: infoaudit::app::router(state),
            pool,
            wake,
        }
    }

    /// Another service process on the same database: its own router, caches and in-process
    /// turns (what two replicas behind a load balancer share is only the database).
    pub fn sibling(&self) -> TestApp {
        let limits = Limits {
            webhook_allow_private: true,
            ..Limits::default()
        };
        TestApp::on(self.pool.clone(), self.wake.clone(), limits, false)
    }
}

/// Queue timings short enough for tests.
pub fn fast_workers(concurrency: usize) -> WorkerConfig {
    WorkerConfig {
        concurrency,
        queue: infoaudit::queue::QueueConfig {
            lease: Duration::from_millis(1500),
            backoff_base: Duration::from_millis(50),
            backoff_cap: Duration::from_millis(200),
            max_rescues: 3,
        },
        poll_interval: Duration::from_millis(100),
        reap_interval: Duration::from_millis(200),
        shutdown_grace: Duration::from_secs(0),
        monitors: infoaudit::monitor::MonitorConfig {
            allow_private: true,
            public_url: "http://infoaudit.test".into(),
            timeout: Duration::from_secs(5),
            retry_base: Duration::from_millis(50),
            retry_cap: Duration::from_millis(200),
            lease: Duration::from_secs(5),
            poll_interval: Duration::from_millis(100),
            ..Default::default()
        },
        ..WorkerConfig::default()
    }
}

impl TestApp {
    pub fn workers(&self, cfg: WorkerConfig) -> WorkerPool {
        WorkerPool::start(self.pool.clone(), cfg, self.wake.clone())
    }

    pub async fn call(&self, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, headers, v)
    }

    /// A request with a bearer key.
    pub async fn send(
        &self,
        method: &str,
        uri: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(k) = key {
            b = b.header("authorization", format!("Bearer {k}"));
        }
        let req = match body {
            Some(v) => b
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(v).unwrap()))
                .unwrap(),
            None => b.body(Body::empty()).unwrap(),
        };
        let (s, _, v) = self.call(req).await;
        (s, v)
    }

    pub async fn get(&self, uri: &str) -> (StatusCode, Value) {
        let (s, _, v) = self
            .call(Request::get(uri).body(Body::empty()).unwrap())
            .await;
        (s, v)
    }

    pub async fn post_json(
        &self,
        uri: &str,
        body: &Value,
    ) -> (StatusCode, axum::http::HeaderMap, Value) {
        self.call(
            Request::post(uri)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(body).unwrap()))
                .unwrap(),
        )
        .await
    }

    pub async fn upload(&self, model: &str, version: &str, body: &Value) -> (StatusCode, Value) {
        let (s, _, v) = self
            .post_json(
                &format!("/v1/models/{model}/versions/{version}/batches"),
                body,
            )
            .await;
        (s, v)
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Upload `body` to model `m`, run its jobs to success on two fast workers, and return the
    /// batch id.
    pub async fn upload_and_run(&self, version: &str, body: &Value) -> String {
        let (s, b) = self.upload("m", version, body).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        let w = self.workers(fast_workers(2));
        for j in b["jobs"].as_array().unwrap() {
            let job = self.wait_job(j["id"].as_str().unwrap(), 60).await;
            assert_eq!(job["state"], "succeeded", "{job}");
        }
        w.shutdown().await;
        b["batch"]["id"].as_str().unwrap().to_string()
    }

    /// Poll a job until it reaches a terminal state (or panic after `secs`).
    pub async fn wait_job(&self, id: &str, secs: u64) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let (s, v) = self.get(&format!("/v1/jobs/{id}")).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            if ["succeeded", "failed", "cancelled"].contains(&v["state"].as_str().unwrap()) {
                return v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "job {id} did not finish: {v}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Poll until `pred` holds for the job (or panic after `secs`).
    pub async fn wait_job_until(
        &self,
        id: &str,
        secs: u64,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let (_, v) = self.get(&format!("/v1/jobs/{id}")).await;
            if pred(&v) {
                return v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "job {id} never reached the state: {v}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The value of one series in a Prometheus text exposition (`name` or `name{labels}` exactly as
/// rendered, e.g. `infoaudit_uploads_shed_total{reason="queued_jobs"}`); 0 when absent. The
/// registry is the process's, shared by tests running at once: compare a reading after the test's
/// own actions with one before (a delta), never a bare "contains".
pub fn series_value(text: &str, series: &str) -> f64 {
    text.lines()
        .filter_map(|l| l.strip_prefix(series))
        .filter_map(|rest| rest.strip_prefix(' '))
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .sum()
}

impl TestApp {
    /// The `/metrics` text.
    pub async fn metrics_text(&self) -> String {
        let (s, _, m) = self
            .call(
                axum::http::Request::get("/metrics")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        m.as_str().unwrap_or_default().to_string()
    }
}

/// A deterministic multiclass batch: a K-class classifier that is right with probability `acc`
/// (errors uniform over the other classes), with softmax-like probability rows.
pub fn classifier_batch(n: usize, k: usize, acc: f64, seed: u64) -> Value {
    let mut g = infoaudit::estimate::rng::SplitMix64::new(seed);
    let mut labels = Vec::with_capacity(n);
    let mut probs = Vec::with_capacity(n);
    for _ in 0..n {
        let y = g.below(k);
        let pred = if g.uniform() < acc {
            y
        } else {
            (y + 1 + g.below(k - 1)) % k
        };
        let mut row = vec![(1.0 - 0.6) / (k as f64 - 1.0); k];
        row[pred] = 0.6;
        labels.push(y);
        probs.push(row);
    }
    serde_json::json!({"task": "multiclass", "labels": labels, "probabilities": probs})
}

/// Plug-in MI (nats) of a dense table: Σ (n_ij/N) ln(N n_ij / (a_i b_j)).
pub fn plugin_mi_nats(t: &[&[f64]]) -> f64 {
    let n: f64 = t.iter().flat_map(|r| r.iter()).sum();
    let rows: Vec<f64> = t.iter().map(|r| r.iter().sum()).collect();
    let cols: Vec<f64> = (0..t[0].len())
        .map(|j| t.iter().map(|r| r[j]).sum())
        .collect();
    let mut mi = 0.0;
    for (i, r) in t.iter().enumerate() {
        for (j, &c) in r.iter().enumerate() {
            if c > 0.0 {
                mi += c / n * (c * n / (rows[i] * cols[j])).ln();
            }
        }
    }
    mi
}

/// `shannon_mi`'s value (nats) computed the slow way: the jackknife N·Î − (N−1)·mean_s Î₋ₛ,
/// deleting each sample in turn and recomputing the plug-in (Efron & Stein; independent of the
/// service's per-cell formula).
pub fn jackknife_mi_nats(t: &[&[f64]]) -> f64 {
    let n: f64 = t.iter().flat_map(|r| r.iter()).sum();
    let mut loo = 0.0;
    for i in 0..t.len() {
        for j in 0..t[i].len() {
            if t[i][j] > 0.0 {
                let mut u: Vec<Vec<f64>> = t.iter().map(|r| r.to_vec()).collect();
                u[i][j] -= 1.0;
                let rows: Vec<&[f64]> = u.iter().map(|r| r.as_slice()).collect();
                loo += t[i][j] * plugin_mi_nats(&rows);
            }
        }
    }
    n * plugin_mi_nats(t) - (n - 1.0) * loo / n
}
