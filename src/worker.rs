//! The worker pool: claims jobs, runs the pure estimator on a blocking thread while a heartbeat
//! keeps the lease, and records the outcome (fenced on the lease token).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::compute::compute;
use crate::domain::batch::Batch;
use crate::error::Problem;
use crate::estimate::{self, Control, EstimateError, Output};
use crate::queue::{self, Beat, JobRow, NewResult, Pick, QueueConfig};
use crate::store;

/// Worker pool settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub concurrency: usize,
    pub queue: QueueConfig,
    /// How often an idle worker looks for due jobs even without a wake-up.
    pub poll_interval: Duration,
    /// How often this pool looks for expired leases.
    pub reap_interval: Duration,
    /// On shutdown, how long in-flight jobs may run on before they are released.
    pub shutdown_grace: Duration,
    /// The pool's id (lease owners are `<id>/<slot>`); generated when `None`. A parent process
    /// names its worker child's pool so that it can take back the child's jobs if it dies.
    pub pool_id: Option<String>,
    /// What one job may cost; checked from the batch's shape before the estimator runs.
    pub limits: crate::estimate::cost::Limits,
    /// The memory all of this pool's running jobs may need together (bytes): a job waits, its
    /// lease kept, until its estimated need fits beside the others'.
    pub memory_pool_bytes: u64,
    /// How often the pool applies the models' retention policies (`None`: never).
    pub retention_interval: Option<Duration>,
    /// Rows a retention purge deletes per statement.
    pub retention_chunk: u32,
    /// Monitor evaluations and webhook deliveries run in this pool.
    pub monitors: crate::monitor::MonitorConfig,
    /// The longest one job may compute: the whole-batch run is stopped past it (the job fails
    /// saying so), and per-segment runs not done by then are skipped with the reason.
    pub job_time: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 2,
            queue: QueueConfig::default(),
            poll_interval: Duration::from_secs(2),
            reap_interval: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(10),
            pool_id: None,
            limits: Default::default(),
            memory_pool_bytes: 4 << 30,
            retention_interval: None,
            retention_chunk: 500,
            monitors: Default::default(),
            job_time: Duration::from_secs(300),
        }
    }
}

/// Logs a run of database failures once when it starts and once when it ends, instead of once
/// per attempt, and gives the capped exponential backoff between attempts.
struct Outage {
    what: &'static str,
    failing_since: Option<std::time::Instant>,
    delay: Duration,
}

impl Outage {
    const FIRST: Duration = Duration::from_millis(250);
    const CAP: Duration = Duration::from_secs(5);

    fn new(what: &'static str) -> Outage {
        Outage {
            what,
            failing_since: None,
            delay: Outage::FIRST,
        }
    }

    fn ok(&mut self) {
        if let Some(since) = self.failing_since.take() {
            tracing::info!(
                seconds = since.elapsed().as_secs_f64(),
                "{}: the database answers again; resuming",
                self.what
            );
        }
        self.delay = Outage::FIRST;
    }

    /// Record a failure; returns how long to wait before the next attempt.
    fn failed(&mut self, e: &dyn std::fmt::Display) -> Duration {
        if self.failing_since.is_none() {
            self.failing_since = Some(std::time::Instant::now());
            tracing::warn!(error = %e, "{}: database error; backing off until it answers", self.what);
        } else {
            tracing::debug!(error = %e, "{}: still failing", self.what);
        }
        let d = self.delay;
        self.delay = (self.delay * 2).min(Outage::CAP);
        d
    }
}

/// A fault injected on purpose, for tests of fault containment: `INFOAUDIT_TEST_FAULT` set to
/// `abort:<estimator>` (the estimator asks for an impossible allocation, which aborts the process
/// exactly as a real refused allocation does) or `panic:<estimator>`. Never set in production.
fn injected_fault(estimator: &str) {
    static FAULT: std::sync::LazyLock<Option<(String, String)>> = std::sync::LazyLock::new(|| {
        let v = std::env::var("INFOAUDIT_TEST_FAULT").ok()?;
        let (kind, est) = v.split_once(':')?;
        Some((kind.to_string(), est.to_string()))
    });
    let Some((kind, target)) = FAULT.as_ref() else {
        return;
    };
    if target != estimator {
        return;
    }
    match kind.as_str() {
        "abort" => {
            tracing::warn!("INFOAUDIT_TEST_FAULT: allocating 64 TiB to abort this process");
            let v: Vec<u8> = Vec::with_capacity(1 << 46);
            std::hint::black_box(v);
        }
        "panic" => panic!("INFOAUDIT_TEST_FAULT: injected panic in {estimator}"),
        _ => {}
    }
}

/// A running pool. Dropping it does not stop it: call `shutdown` (graceful) or `abort` (as if
/// the process died: leases are left to expire).
pub struct WorkerPool {
    tasks: JoinSet<()>,
    memory: Arc<tokio::sync::Semaphore>,
    stop: CancellationToken,
    pub id: String,
}

impl WorkerPool {
    pub fn start(pool: PgPool, cfg: WorkerConfig, wake: Arc<Notify>) -> WorkerPool {
        let stop = CancellationToken::new();
        let id = cfg.pool_id.clone().unwrap_or_else(|| {
            format!("{}-{}", hostname(), &uuid::Uuid::new_v4().to_string()[..8])
        });
        let mut tasks = JoinSet::new();
        let cfg = Arc::new(cfg);
        let memory = Arc::new(tokio::sync::Semaphore::new(mib(cfg
            .memory_pool_bytes
            .max(cfg.limits.memory_bytes))));
        let solo = Arc::new(tokio::sync::RwLock::new(()));
        for i in 0..cfg.concurrency.max(1) {
            let w = Worker {
                solo: solo.clone(),
                pool: pool.clone(),
                cfg: cfg.clone(),
                wake: wake.clone(),
                stop: stop.clone(),
                owner: format!("{id}/{i}"),
                memory: memory.clone(),
            };
            tasks.spawn(w.run());
        }
        tasks.spawn(reaper(pool.clone(), cfg.clone(), stop.clone()));
        if let Some(every) = cfg.retention_interval {
            tasks.spawn(retention(
                pool.clone(),
                every,
                cfg.retention_chunk,
                stop.clone(),
            ));
        }
        crate::monitor::run::spawn(
            &mut tasks,
            pool.clone(),
            cfg.monitors.clone(),
            wake.clone(),
            stop.clone(),
            &id,
        );
        tasks.spawn(listener(pool, wake, stop.clone()));
        WorkerPool {
            tasks,
            memory,
            stop,
            id,
        }
    }

    /// MiB of the memory pool not reserved by running jobs.
    pub fn memory_available_mib(&self) -> usize {
        self.memory.available_permits()
    }

    /// Stop claiming, let in-flight jobs finish within the grace period, release the rest.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Stop every task at once, as a crash would: nothing is released or written.
    pub fn abort(mut self) {
        self.tasks.abort_all();
        self.tasks.detach_all();
    }
}

/// Bytes in whole MiB, rounded up, as semaphore permits (at least 1).
fn mib(bytes: u64) -> usize {
    usize::try_from(bytes.div_ceil(1 << 20))
        .unwrap_or(usize::MAX)
        .clamp(1, tokio::sync::Semaphore::MAX_PERMITS)
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "worker".into())
}

async fn reaper(pool: PgPool, cfg: Arc<WorkerConfig>, stop: CancellationToken) {
    let mut outage = Outage::new("reaper");
    loop {
        let wait = match queue::reap(&pool, &cfg.queue).await {
            Ok(_) => {
                outage.ok();
                cfg.reap_interval
            }
            Err(e) => outage.failed(&e).min(cfg.reap_interval),
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Apply the models' retention policies every `every` (the first pass soon after start).
async fn retention(pool: PgPool, every: Duration, chunk: u32, stop: CancellationToken) {
    let mut outage = Outage::new("retention");
    let mut wait = every.min(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = match store::purge_retention(&pool, chunk).await {
            Ok(p) => {
                outage.ok();
                if p.batches > 0 || p.results > 0 {
                    crate::metrics::purged(p.batches, p.results);
                    tracing::info!(
                        batches = p.batches,
                        results = p.results,
                        "retention purged raw data and results"
                    );
                }
                every
            }
            Err(e) => outage.failed(&e).min(every),
        };
    }
}

/// Wake local workers on NOTIFY from any process; reconnects after errors.
async fn listener(pool: PgPool, wake: Arc<Notify>, stop: CancellationToken) {
    loop {
        let mut l = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN; polling only");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                }
            }
        };
        if let Err(e) = l.listen(queue::CHANNEL).await {
            tracing::warn!(error = %e, "LISTEN failed");
        }
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                n = l.recv() => match n {
                    Ok(_) => wake.notify_waiters(),
                    Err(e) => {
                        tracing::warn!(error = %e, "listener connection lost");
                        break;
                    }
                }
            }
        }
    }
}

struct Worker {
    pool: PgPool,
    cfg: Arc<WorkerConfig>,
    wake: Arc<Notify>,
    stop: CancellationToken,
    owner: String,
    memory: Arc<tokio::sync::Semaphore>,
    /// Held shared while a job runs, exclusively while a rescued job runs alone.
    solo: Arc<tokio::sync::RwLock<()>>,
}

/// How a job holds the pool's [`Worker::solo`] lock while it runs.
enum Turn {
    Shared(#[allow(dead_code)] tokio::sync::OwnedRwLockReadGuard<()>),
    Alone(#[allow(dead_code)] tokio::sync::OwnedRwLockWriteGuard<()>),
}

/// Why a running estimator was asked to stop.
const STOP_NONE: u64 = 0;
const STOP_CANCELLED: u64 = 1;
const STOP_LEASE_LOST: u64 = 2;
const STOP_SHUTDOWN: u64 = 3;

impl Worker {
    async fn run(self) {
        let mut outage = Outage::new("worker");
        loop {
            if self.stop.is_cancelled() {
                return;
            }
            // Register interest before looking, so a wake-up between the two is not missed.
            let notified = self.wake.notified();
            // A job that was running when a worker died may be what killed it: it runs alone in
            // this pool (the other tasks finish their jobs and wait), so a second crash takes
            // no innocent job with it. Other jobs share the pool.
            let claimed = match queue::rescued_due(&self.pool).await {
                Ok(true) => {
                    let alone = tokio::select! {
                        _ = self.stop.cancelled() => return,
                        g = self.solo.clone().write_owned() => g,
                    };
                    queue::claim_where(&self.pool, &self.owner, &self.cfg.queue, Pick::Rescued)
                        .await
                        .map(|j| j.map(|j| (j, Turn::Alone(alone))))
                }
                Ok(false) => {
                    let shared = tokio::select! {
                        _ = self.stop.cancelled() => return,
                        g = self.solo.clone().read_owned() => g,
                    };
                    queue::claim_where(&self.pool, &self.owner, &self.cfg.queue, Pick::Fresh)
                        .await
                        .map(|j| j.map(|j| (j, Turn::Shared(shared))))
                }
                Err(e) => Err(e),
            };
            if claimed.is_ok() {
                outage.ok();
            }
            match claimed {
                Ok(Some((job, turn))) => {
                    let span = tracing::info_span!("job", job_id = %job.id, batch_id = %job.batch_id, estimator = %job.estimator, attempt = job.attempts, request_id = job.request_id.as_deref().unwrap_or(""), alone = matches!(turn, Turn::Alone(_)));
                    self.run_job(job).instrument(span).await;
                    drop(turn);
                }
                Ok(None) => {
                    tokio::select! {
                        _ = self.stop.cancelled() => return,
                        _ = notified => {}
                        _ = tokio::time::sleep(self.cfg.poll_interval) => {}
                    }
                }
                Err(e) => {
                    let wait = outage.failed(&e);
                    tokio::select! {
                        _ = self.stop.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    /// Load the batch, riding out a database outage for up to a third of the lease (heartbeats
    /// are tried meanwhile); other errors are returned at once.
    async fn load_batch(&self, job: &JobRow) -> anyhow::Result<Batch> {
        let until = std::time::Instant::now() + self.cfg.queue.lease / 3;
        let mut outage = Outage::new("loading a batch");
        loop {
            let loaded = match store::load_batch_data(&self.pool, job.batch_id).await {
                Ok(mut b) if b.labels_later => {
                    // Labels that came later are joined by id, as far as they have arrived.
                    crate::store::labels::join_labels(&self.pool, job.batch_id, &mut b)
                        .await
                        .map(|()| b)
                }
                other => other,
            };
            match loaded {
                Ok(b) => return Ok(b),
                Err(e)
                    if crate::error::unavailable_in_chain(&e)
                        && std::time::Instant::now() < until =>
                {
                    let wait = outage.failed(&e);
                    tokio::time::sleep(wait).await;
                    if let Some(token) = job.lease_token {
                        let _ =
                            queue::heartbeat(&self.pool, job.id, token, 0.0, &self.cfg.queue).await;
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn run_job(&self, job: JobRow) {
        let started = std::time::Instant::now();
        let batch = match self.load_batch(&job).await {
            Ok(b) => b,
            Err(e) if crate::error::unavailable_in_chain(&e) => {
                // Still unreachable: leave the job to its lease; the reaper takes it back.
                tracing::warn!(error = %e, "cannot load the batch: the database is unreachable");
                return;
            }
            Err(e) if e.downcast_ref::<store::DataPurged>().is_some() => {
                let p = Problem::new(
                    StatusCode::GONE,
                    "data-purged",
                    "The batch's data was purged",
                    e.to_string(),
                );
                self.record(&job, Record::Fail(p)).await;
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot load the batch; retrying later");
                let p = Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "transient",
                    "The batch could not be loaded",
                    "a temporary error stopped the job; it will be retried",
                );
                let _ = queue::retry_later(&self.pool, &job, &p, &self.cfg.queue).await;
                return;
            }
        };
        // Labels that come later: a label-dependent job runs on the samples labelled so far (and
        // its result records the coverage); one that needs no labels runs on them all.
        let (batch, label_coverage) = if batch.labels_later {
            let rows = batch.labelled_rows();
            let coverage = rows.len() as f64 / batch.n.max(1) as f64;
            if !crate::domain::estimators::needs_labels(&job.estimator, &job.params) {
                (batch, None)
            } else if rows.len() < 2 {
                let p = Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "labels-missing",
                    "Too few labels have arrived",
                    format!(
                        "{} of the batch's {} samples are labelled; {} needs at least 2 (send \
                         them to POST /v1/models/{{model}}/labels, then add the job again)",
                        rows.len(),
                        batch.n,
                        job.estimator
                    ),
                );
                self.record(&job, Record::Fail(p)).await;
                return;
            } else if rows.len() == batch.n {
                (batch, Some(coverage))
            } else {
                (batch.subset(&rows), Some(coverage))
            }
        } else {
            (batch, None)
        };
        // The cost bound, again, before anything is allocated: the upload checked it with the
        // limits of the API process; these are this worker's.
        let shape = crate::domain::estimators::shape_of(&batch);
        let need =
            match estimate::cost::check(&job.estimator, &shape, &job.params, &self.cfg.limits) {
                Ok(c) => c.bytes,
                Err(reason) => {
                    crate::metrics::job_over_budget();
                    tracing::warn!(%reason, "job refused: over the per-job memory budget");
                    let p = Problem::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "over-budget",
                        "The job does not fit the worker's memory budget",
                        reason,
                    );
                    self.record(&job, Record::Fail(p)).await;
                    return;
                }
            };
        let progress = Arc::new(AtomicU64::new(0f64.to_bits()));
        let stop_reason = Arc::new(AtomicU64::new(STOP_NONE));
        let stop_flag = Arc::new(AtomicBool::new(false));
        let job_time = self.cfg.job_time;
        let compute = {
            let (progress, stop_flag, job) = (progress.clone(), stop_flag.clone(), job.clone());
            let memory = self.memory.clone();
            async move {
                // Wait (heartbeating) until this job's need fits beside the running ones'.
                // Never more than the pool holds: the pool is at least the per-job budget, and the
                // need was checked against that budget.
                let want = u32::try_from(mib(need)).unwrap_or(u32::MAX);
                let permit = memory.acquire_many_owned(want).await;
                let r = tokio::task::spawn_blocking(move || {
                    let report = |f: f64| progress.store(f.to_bits(), Ordering::Relaxed);
                    // Bounded in time as well as memory: past the deadline the estimator's
                    // next check stops it.
                    let deadline = std::time::Instant::now() + job_time;
                    let over = || std::time::Instant::now() >= deadline;
                    let cancelled = || stop_flag.load(Ordering::Relaxed) || over();
                    // With segments: the whole batch is the first half of the progress, the
                    // per-segment runs the second.
                    let half = if batch.segments.is_empty() { 1.0 } else { 0.5 };
                    let whole = |f: f64| report(f * half);
                    let per_segment = |f: f64| report(0.5 + 0.5 * f);
                    let control = Control {
                        progress: &whole,
                        cancelled: &cancelled,
                    };
                    injected_fault(&job.estimator);
                    let out = match compute(&job.estimator, &job.params, &batch, &control) {
                        Err(EstimateError::Cancelled)
                            if over() && !stop_flag.load(Ordering::Relaxed) =>
                        {
                            return Err(EstimateError::Invalid(format!(
                                "{} ran longer than the per-job time budget of {} s \
                                 (--job-seconds) on this batch (N = {}) and was stopped; \
                                 raise the budget, or upload a smaller batch or subsample",
                                job.estimator,
                                job_time.as_secs_f64(),
                                batch.n
                            )))
                        }
                        r => r?,
                    };
                    let control = Control {
                        progress: &per_segment,
                        cancelled: &cancelled,
                    };
                    let segments = crate::compute::segments::compute_segments(
                        &job.estimator,
                        &job.params,
                        &batch,
                        &out,
                        &control,
                        Some(deadline),
                    )?;
                    Ok::<_, EstimateError>((out, segments))
                })
                .await;
                drop(permit);
                r
            }
        };
        tokio::pin!(compute);
        let token = job.lease_token.expect("claimed");
        let beat_every = self.cfg.queue.lease / 3;
        let mut grace_deadline: Option<tokio::time::Instant> = None;
        let request_stop = |reason: u64| {
            let _ =
                stop_reason.compare_exchange(STOP_NONE, reason, Ordering::SeqCst, Ordering::SeqCst);
            stop_flag.store(true, Ordering::Relaxed);
        };
        let outcome = loop {
            let grace = async {
                match grace_deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = &mut compute => break r,
                _ = tokio::time::sleep(beat_every) => {
                    let p = f64::from_bits(progress.load(Ordering::Relaxed));
                    match queue::heartbeat(&self.pool, job.id, token, p, &self.cfg.queue).await {
                        Ok(Beat::Alive { cancel: true }) => request_stop(STOP_CANCELLED),
                        Ok(Beat::Alive { cancel: false }) => {}
                        Ok(Beat::Lost) => {
                            crate::metrics::lease_lost();
                            tracing::warn!("lease lost; abandoning the job");
                            request_stop(STOP_LEASE_LOST);
                        }
                        Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                    }
                }
                _ = self.stop.cancelled(), if grace_deadline.is_none() => {
                    grace_deadline = Some(tokio::time::Instant::now() + self.cfg.shutdown_grace);
                }
                _ = grace => request_stop(STOP_SHUTDOWN),
            }
        };
        let reason = stop_reason.load(Ordering::SeqCst);
        let elapsed = started.elapsed().as_secs_f64();
        let outcome_label = match (&outcome, reason) {
            (_, STOP_LEASE_LOST) => "lease_lost",
            (_, STOP_SHUTDOWN) => "released",
            (Ok(Ok(_)), _) => "succeeded",
            (Ok(Err(EstimateError::Cancelled)), _) => "cancelled",
            _ => "failed",
        };
        crate::metrics::job_finished(&job.estimator, outcome_label, elapsed);
        let record = match outcome {
            _ if reason == STOP_LEASE_LOST => Record::Nothing,
            Ok(Ok((mut out, segments))) => {
                if let (Some(c), Some(d)) = (label_coverage, out.details.as_object_mut()) {
                    d.insert("label_coverage".into(), serde_json::json!(c));
                }
                Record::Finish(to_result(out, segments))
            }
            Ok(Err(EstimateError::Cancelled)) if reason == STOP_SHUTDOWN => {
                tracing::info!("released on shutdown");
                Record::Release
            }
            Ok(Err(EstimateError::Cancelled)) => Record::Cancelled,
            Ok(Err(EstimateError::Invalid(msg))) => Record::Fail(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "estimator-input",
                "The estimator cannot run on this batch",
                msg,
            )),
            Err(join) => {
                tracing::error!(error = %join, "estimator panicked");
                Record::Fail(Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "estimator-crash",
                    "The estimator failed unexpectedly",
                    "the estimator stopped with an internal error; it has been logged",
                ))
            }
        };
        self.record(&job, record).await;
    }

    /// Write a job's outcome (fenced on its lease). While the database is unreachable the write
    /// is retried with backoff for up to twice the lease, so a short outage costs no rerun; past
    /// that the lease has long expired and the reaper reruns the job.
    async fn record(&self, job: &JobRow, record: Record) {
        let until = std::time::Instant::now() + self.cfg.queue.lease * 2;
        let mut outage = Outage::new("recording a job's outcome");
        loop {
            let written = match &record {
                Record::Nothing => Ok(false),
                Record::Finish(r) => queue::finish(&self.pool, job, r).await,
                Record::Release => queue::release(&self.pool, job).await,
                Record::Cancelled => queue::mark_cancelled(&self.pool, job).await,
                Record::Fail(p) => queue::fail(&self.pool, job, p).await,
            };
            match written {
                Ok(true) => {
                    outage.ok();
                    tracing::info!("job done");
                    return;
                }
                Ok(false) => {
                    if !matches!(record, Record::Nothing) {
                        tracing::warn!("the job's lease was lost; its outcome was not recorded");
                    }
                    return;
                }
                Err(e) if crate::error::is_unavailable(&e) && std::time::Instant::now() < until => {
                    let wait = outage.failed(&e);
                    tokio::time::sleep(wait).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not record the job's outcome; its lease will expire and it will run again");
                    return;
                }
            }
        }
    }
}

/// What a finished run writes.
enum Record {
    Nothing,
    Finish(NewResult),
    Release,
    Cancelled,
    Fail(Problem),
}

fn to_result(out: Output, segments: crate::compute::segments::SegmentResults) -> NewResult {
    let (ci_low, ci_high, ci_level, ci_method) = match out.interval {
        // A one-sided interval has no upper (or lower) end: stored as NULL.
        Some(i) => (
            i.low.is_finite().then_some(i.low),
            i.high.is_finite().then_some(i.high),
            Some(i.level),
            Some(i.method),
        ),
        None => (None, None, None, None),
    };
    NewResult {
        value: out.value,
        ci_low,
        ci_high,
        ci_level,
        ci_method,
        n: out.n as i64,
        details: out.details,
        sufficient: out.sufficient,
        diagnostics: serde_json::to_value(&out.diagnostics).unwrap_or(serde_json::Value::Null),
        segments: (!segments.summary.is_empty())
            .then(|| serde_json::to_value(&segments.summary).ok())
            .flatten(),
        segment_rows: segments.rows,
    }
}
