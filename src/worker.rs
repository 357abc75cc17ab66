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

use crate::domain::batch::{Batch, BatchData};
use crate::domain::estimators::Kind;
use crate::error::Problem;
use crate::estimate::{self, ClassInput, Control, EstimateError, MultilabelInput, Output};
use crate::queue::{self, Beat, JobRow, NewResult, QueueConfig};
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
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 2,
            queue: QueueConfig::default(),
            poll_interval: Duration::from_secs(2),
            reap_interval: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// A running pool. Dropping it does not stop it: call `shutdown` (graceful) or `abort` (as if
/// the process died: leases are left to expire).
pub struct WorkerPool {
    tasks: JoinSet<()>,
    stop: CancellationToken,
    pub id: String,
}

impl WorkerPool {
    pub fn start(pool: PgPool, cfg: WorkerConfig, wake: Arc<Notify>) -> WorkerPool {
        let stop = CancellationToken::new();
        let id = format!("{}-{}", hostname(), &uuid::Uuid::new_v4().to_string()[..8]);
        let mut tasks = JoinSet::new();
        let cfg = Arc::new(cfg);
        for i in 0..cfg.concurrency.max(1) {
            let w = Worker {
                pool: pool.clone(),
                cfg: cfg.clone(),
                wake: wake.clone(),
                stop: stop.clone(),
                owner: format!("{id}/{i}"),
            };
            tasks.spawn(w.run());
        }
        tasks.spawn(reaper(pool.clone(), cfg.clone(), stop.clone()));
        tasks.spawn(listener(pool, wake, stop.clone()));
        WorkerPool { tasks, stop, id }
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

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "worker".into())
}

async fn reaper(pool: PgPool, cfg: Arc<WorkerConfig>, stop: CancellationToken) {
    loop {
        if let Err(e) = queue::reap(&pool, &cfg.queue).await {
            tracing::warn!(error = %e, "reaper failed");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(cfg.reap_interval) => {}
        }
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
}

/// Why a running estimator was asked to stop.
const STOP_NONE: u64 = 0;
const STOP_CANCELLED: u64 = 1;
const STOP_LEASE_LOST: u64 = 2;
const STOP_SHUTDOWN: u64 = 3;

impl Worker {
    async fn run(self) {
        loop {
            if self.stop.is_cancelled() {
                return;
            }
            // Register interest before looking, so a wake-up between the two is not missed.
            let notified = self.wake.notified();
            match queue::claim(&self.pool, &self.owner, &self.cfg.queue).await {
                Ok(Some(job)) => {
                    let span = tracing::info_span!("job", job_id = %job.id, batch_id = %job.batch_id, estimator = %job.estimator, attempt = job.attempts, request_id = job.request_id.as_deref().unwrap_or(""));
                    self.run_job(job).instrument(span).await;
                }
                Ok(None) => {
                    tokio::select! {
                        _ = self.stop.cancelled() => return,
                        _ = notified => {}
                        _ = tokio::time::sleep(self.cfg.poll_interval) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "claim failed");
                    tokio::select! {
                        _ = self.stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    async fn run_job(&self, job: JobRow) {
        let started = std::time::Instant::now();
        let batch = match store::load_batch_data(&self.pool, job.batch_id).await {
            Ok(b) => b,
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
        let progress = Arc::new(AtomicU64::new(0f64.to_bits()));
        let stop_reason = Arc::new(AtomicU64::new(STOP_NONE));
        let stop_flag = Arc::new(AtomicBool::new(false));
        let compute = {
            let (progress, stop_flag, job) = (progress.clone(), stop_flag.clone(), job.clone());
            tokio::task::spawn_blocking(move || {
                let report = |f: f64| progress.store(f.to_bits(), Ordering::Relaxed);
                let cancelled = || stop_flag.load(Ordering::Relaxed);
                let control = Control {
                    progress: &report,
                    cancelled: &cancelled,
                };
                compute(&job.estimator, &job.params, &batch, &control)
            })
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
        let written = match outcome {
            _ if reason == STOP_LEASE_LOST => Ok(false),
            Ok(Ok(out)) => {
                let r = to_result(out);
                queue::finish(&self.pool, &job, &r).await
            }
            Ok(Err(EstimateError::Cancelled)) if reason == STOP_SHUTDOWN => {
                tracing::info!("released on shutdown");
                queue::release(&self.pool, &job).await
            }
            Ok(Err(EstimateError::Cancelled)) => queue::mark_cancelled(&self.pool, &job).await,
            Ok(Err(EstimateError::Invalid(msg))) => {
                let p = Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "estimator-input",
                    "The estimator cannot run on this batch",
                    msg,
                );
                queue::fail(&self.pool, &job, &p).await
            }
            Err(join) => {
                tracing::error!(error = %join, "estimator panicked");
                let p = Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "estimator-crash",
                    "The estimator failed unexpectedly",
                    "the estimator stopped with an internal error; it has been logged",
                );
                queue::fail(&self.pool, &job, &p).await
            }
        };
        match written {
            Ok(true) => tracing::info!(seconds = elapsed, "job done"),
            Ok(false) => tracing::warn!("the job's lease was lost; its outcome was not recorded"),
            Err(e) => {
                tracing::warn!(error = %e, "could not record the job's outcome; its lease will expire and it will run again")
            }
        }
    }
}

fn to_result(out: Output) -> NewResult {
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
    }
}

fn bad_params(e: serde_json::Error) -> EstimateError {
    EstimateError::Invalid(format!("stored parameters are invalid: {e}"))
}

/// Run one estimator on a batch: the bridge from domain types to the pure numeric core.
pub fn compute(
    estimator: &str,
    params: &serde_json::Value,
    batch: &Batch,
    control: &Control,
) -> Result<Output, EstimateError> {
    let kind = Kind::parse(estimator)
        .ok_or_else(|| EstimateError::Invalid(format!("unknown estimator {estimator:?}")))?;
    let p = params.clone();
    if let Some(bound) = kind.bound() {
        let BatchData::Pairs { x, y } = &batch.data else {
            return Err(EstimateError::Invalid(format!(
                "{} needs a pairs batch",
                kind.id()
            )));
        };
        let params: estimate::neural::Params = serde_json::from_value(p).map_err(bad_params)?;
        return estimate::neural::estimate(bound, x.view(), y.view(), &params, control);
    }
    match &batch.data {
        BatchData::Pairs { x, y } => match kind {
            Kind::Ksg => estimate::ksg::ksg(
                x.view(),
                y.view(),
                &serde_json::from_value(p).map_err(bad_params)?,
                control,
            ),
            k => Err(EstimateError::Invalid(format!(
                "{} does not apply to pairs batches",
                k.id()
            ))),
        },
        BatchData::Regression {
            targets,
            predictions,
        } => match kind {
            Kind::Ksg => {
                let t =
                    ndarray::ArrayView2::from_shape((targets.len(), 1), targets).expect("column");
                let q = ndarray::ArrayView2::from_shape((predictions.len(), 1), predictions)
                    .expect("column");
                estimate::ksg::ksg(
                    t,
                    q,
                    &serde_json::from_value(p).map_err(bad_params)?,
                    control,
                )
            }
            k => Err(EstimateError::Invalid(format!(
                "{} does not apply to regression batches",
                k.id()
            ))),
        },
        BatchData::Multiclass {
            labels,
            features: Some(f),
            ..
        } if kind == Kind::MixedKsg => estimate::ksg::mixed::mixed_ksg(
            f.view(),
            labels,
            &serde_json::from_value(p).map_err(bad_params)?,
            control,
        ),
        BatchData::Multiclass {
            labels,
            probabilities: Some(q),
            ..
        } if kind == Kind::MixedKsg => estimate::ksg::mixed::mixed_ksg(
            q.view(),
            labels,
            &serde_json::from_value(p).map_err(bad_params)?,
            control,
        ),
        BatchData::Multiclass {
            labels,
            probabilities,
            ..
        } => {
            let predictions = batch
                .multiclass_predictions()
                .ok_or_else(|| EstimateError::Invalid("the batch has no predictions".into()))?;
            let input = ClassInput {
                labels,
                predictions: &predictions,
                k: batch.k(),
                probabilities: probabilities.as_ref().map(|m| m.view()),
                weights: batch.weights.as_deref(),
                truth_matrix: batch.truth_matrix.as_ref().map(|m| m.view()),
            };
            match kind {
                Kind::ShannonMi => estimate::shannon::shannon_mi(
                    &input,
                    &serde_json::from_value(p).map_err(bad_params)?,
                    control,
                ),
                Kind::SemanticMi => estimate::semantic::semantic_mi(
                    &input,
                    &serde_json::from_value(p).map_err(bad_params)?,
                    control,
                ),
                Kind::CeBound => estimate::ce_bound::ce_bound(
                    &input,
                    &serde_json::from_value(p).map_err(bad_params)?,
                    control,
                ),
                Kind::RgCurve => estimate::rg::rg_curve(
                    &input,
                    &serde_json::from_value(p).map_err(bad_params)?,
                    control,
                ),
                k => Err(EstimateError::Invalid(format!(
                    "{} does not apply to multiclass batches",
                    k.id()
                ))),
            }
        }
        BatchData::Multilabel {
            labels,
            predictions,
            scores,
            ..
        } => {
            let decisions = predictions.as_ref().or(scores.as_ref()).ok_or_else(|| {
                EstimateError::Invalid("the batch has neither predictions nor scores".into())
            })?;
            match kind {
                Kind::ShannonMi => {
                    let mut params: estimate::shannon::Params =
                        serde_json::from_value(p).map_err(bad_params)?;
                    if predictions.is_some() {
                        // Hard predicted sets (0/1) are their own decisions.
                        params.threshold = 0.5;
                    }
                    let input = MultilabelInput {
                        labels: labels.view(),
                        scores: decisions.view(),
                        weights: batch.weights.as_deref(),
                    };
                    estimate::shannon::shannon_mi_multilabel(&input, &params, control)
                }
                Kind::SemanticMi => {
                    let scores = scores.as_ref().ok_or_else(|| {
                        EstimateError::Invalid("semantic_mi needs per-label scores".into())
                    })?;
                    let input = MultilabelInput {
                        labels: labels.view(),
                        scores: scores.view(),
                        weights: batch.weights.as_deref(),
                    };
                    estimate::semantic::semantic_mi_multilabel(
                        &input,
                        &serde_json::from_value(p).map_err(bad_params)?,
                        control,
                    )
                }
                k => Err(EstimateError::Invalid(format!(
                    "{} does not apply to multilabel batches",
                    k.id()
                ))),
            }
        }
    }
}

/// One side of a paired comparison: its batches' samples concatenated (multiclass only).
struct Side {
    labels: Vec<u32>,
    predictions: Vec<u32>,
    probabilities: Option<ndarray::Array2<f64>>,
    weights: Option<Vec<f64>>,
    truth: Option<ndarray::Array2<f64>>,
    k: usize,
}

fn concat(batches: &[Batch]) -> Result<Side, EstimateError> {
    let first = batches
        .first()
        .ok_or_else(|| EstimateError::invalid("no batches to compare"))?;
    let k = first.k();
    let mut side = Side {
        labels: Vec::new(),
        predictions: Vec::new(),
        probabilities: None,
        weights: first.weights.as_ref().map(|_| Vec::new()),
        truth: first.truth_matrix.as_ref().map(|m| m.view().to_owned()),
        k,
    };
    let mut rows: Vec<f64> = Vec::new();
    let mut with_probs = true;
    for b in batches {
        let BatchData::Multiclass {
            labels,
            probabilities,
            ..
        } = &b.data
        else {
            return Err(EstimateError::invalid(
                "paired comparisons need multiclass batches",
            ));
        };
        if b.k() != k || b.weights.is_some() != side.weights.is_some() {
            return Err(EstimateError::invalid(
                "the batches differ in classes or weighting",
            ));
        }
        let predictions = b
            .multiclass_predictions()
            .ok_or_else(|| EstimateError::invalid("the batch has no predictions"))?;
        side.labels.extend_from_slice(labels);
        side.predictions.extend(predictions);
        if let (Some(w), Some(all)) = (&b.weights, side.weights.as_mut()) {
            all.extend_from_slice(w);
        }
        match probabilities {
            Some(m) if with_probs => rows.extend_from_slice(&m.data),
            _ => with_probs = false,
        }
    }
    if with_probs {
        side.probabilities = ndarray::Array2::from_shape_vec((side.labels.len(), k), rows).ok();
    }
    Ok(side)
}

/// The paired difference candidate − baseline of a multiclass estimator (`shannon_mi`,
/// `semantic_mi`, `ce_bound`) whose two sides were computed on the same samples: each side's
/// batches (in matching order) are concatenated and the paired bootstrap of
/// `estimate::paired` recomputes both values on each resample. The bridge from stored batches
/// to the numeric core, like [`compute`].
#[allow(clippy::too_many_arguments)]
pub fn paired_delta(
    estimator: &str,
    cand_params: &serde_json::Value,
    base_params: &serde_json::Value,
    cand: &[Batch],
    base: &[Batch],
    level: f64,
    replicates: usize,
    seed: u64,
) -> Result<estimate::paired::PairedDelta, EstimateError> {
    let kind = Kind::parse(estimator)
        .ok_or_else(|| EstimateError::invalid(format!("unknown estimator {estimator:?}")))?;
    let (c, b) = (concat(cand)?, concat(base)?);
    fn input(s: &Side) -> ClassInput<'_> {
        ClassInput {
            labels: &s.labels,
            predictions: &s.predictions,
            k: s.k,
            probabilities: s.probabilities.as_ref().map(|m| m.view()),
            weights: s.weights.as_deref(),
            truth_matrix: s.truth.as_ref().map(|m| m.view()),
        }
    }
    let no_interval = |p: &serde_json::Value| {
        let mut p = p.clone();
        if let Some(o) = p.as_object_mut() {
            o.insert("bootstrap".into(), serde_json::json!(0));
        }
        p
    };
    let (cp, bp) = (no_interval(cand_params), no_interval(base_params));
    let none = Control::none();
    let statistic = |i: &ClassInput<'_>, is_cand: bool| -> Result<f64, EstimateError> {
        let p = if is_cand { &cp } else { &bp };
        let out = match kind {
            Kind::ShannonMi => estimate::shannon::shannon_mi(
                i,
                &serde_json::from_value(p.clone()).map_err(bad_params)?,
                &none,
            ),
            Kind::SemanticMi => estimate::semantic::semantic_mi(
                i,
                &serde_json::from_value(p.clone()).map_err(bad_params)?,
                &none,
            ),
            Kind::CeBound => estimate::ce_bound::ce_bound(
                i,
                &serde_json::from_value(p.clone()).map_err(bad_params)?,
                &none,
            ),
            k => {
                return Err(EstimateError::invalid(format!(
                    "{} has no paired comparison",
                    k.id()
                )))
            }
        }?;
        Ok(out.value)
    };
    estimate::paired::paired_bootstrap(
        &input(&c),
        &input(&b),
        statistic,
        replicates,
        level,
        seed,
        &none,
    )
}
