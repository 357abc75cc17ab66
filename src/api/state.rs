//! What every handler can reach: the pool, the wake-up, the limits, and the caches of answers.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::Notify;

use super::throttle::{Buckets, QueueGauge};
use super::views;
use crate::gate::judge::Judge;
use crate::store::cache::GenerationCache;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    /// Wakes this process's workers when jobs are enqueued.
    pub wake: Arc<Notify>,
    /// Set on shutdown: `/readyz` fails so load balancers stop sending traffic.
    pub draining: Arc<AtomicBool>,
    pub limits: Limits,
    /// Every call except health, metrics and docs needs a key (else only once a key exists).
    pub require_auth: bool,
    /// Answers already computed from a model's results, valid while its results generation holds.
    pub caches: Arc<Caches>,
}

/// Large bodies decoded as they arrive at once, each on a blocking thread (the rest wait for a
/// slot without one).
pub fn stream_slots() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .saturating_mul(2)
        .max(4)
}

/// Answers computed from a model's results, each kept with the model's results generation
/// (`models.results_generation`, bumped by every insert or delete of a result) read before it
/// was computed: an entry is used only while the generation is unchanged, so it is never older
/// than its key.
pub struct Caches {
    /// Downsampled histories by query (the response body).
    pub history: GenerationCache<bytes::Bytes>,
    /// The metrics of a version summary by version and unit.
    pub summaries: GenerationCache<Arc<Vec<views::Metric>>>,
    /// Paired differences by (estimator, batches, params): immutable once computed.
    pub deltas: GenerationCache<crate::estimate::paired::PairedDelta>,
    /// The queue's depth and oldest age, as last read for the upload ceiling.
    pub queue: QueueGauge,
    /// Token buckets of the per-key rate limit.
    pub buckets: Buckets,
    /// Labels requests and releases of a model, one at a time in this process (waited for
    /// without a database connection).
    pub labels: LabelsTurns,
    /// Slots for large bodies decoded as they arrive ([`stream_slots`]).
    pub streams: Arc<tokio::sync::Semaphore>,
    /// The information series of `/metrics` as last read, and when.
    pub information:
        tokio::sync::Mutex<Option<(std::time::Instant, Arc<crate::metrics::InformationSnapshot>)>>,
}

impl Default for Caches {
    fn default() -> Self {
        Caches {
            history: Default::default(),
            summaries: Default::default(),
            deltas: Default::default(),
            queue: Default::default(),
            buckets: Default::default(),
            streams: Arc::new(tokio::sync::Semaphore::new(stream_slots())),
            labels: Default::default(),
            information: Default::default(),
        }
    }
}

/// Most labels requests of one model waiting in this process; more answer 503.
pub const LABELS_WAITING: usize = 32;

/// The labels requests waiting per model.
#[derive(Default)]
pub struct LabelsTurns(std::sync::Mutex<std::collections::HashMap<uuid::Uuid, Arc<Turns>>>);

#[derive(Default)]
pub struct Turns {
    lock: Arc<tokio::sync::Mutex<()>>,
    waiting: std::sync::atomic::AtomicUsize,
}

/// A model's labels turn in this process, held until dropped.
pub struct LabelsTurn {
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Caches {
    /// Wait (without a database connection) for this process's turn to write a model's labels;
    /// 503 when [`LABELS_WAITING`] requests of the model already wait.
    pub async fn labels_turn(&self, model: uuid::Uuid) -> crate::error::Result<LabelsTurn> {
        use std::sync::atomic::Ordering;
        let turns = {
            let mut map = self.labels.0.lock().map_err(|_| {
                crate::error::Error::Internal(anyhow::anyhow!("labels turns poisoned"))
            })?;
            map.entry(model).or_default().clone()
        };
        if turns.waiting.fetch_add(1, Ordering::AcqRel) >= LABELS_WAITING {
            turns.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(crate::error::Error::Overloaded {
                detail: format!(
                    "{LABELS_WAITING} labels requests for this model are already waiting; retry later"
                ),
                retry_after: 2,
            });
        }
        // Counted as waiting until the turn comes, or the request is dropped while it waits.
        struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            }
        }
        let waiting = Waiting(&turns.waiting);
        let guard = turns.lock.clone().lock_owned().await;
        drop(waiting);
        Ok(LabelsTurn { _guard: guard })
    }
    /// Wait (without a thread) for a slot to decode a large body as it arrives.
    pub async fn stream_slot(&self) -> crate::error::Result<tokio::sync::OwnedSemaphorePermit> {
        self.streams
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| crate::error::Error::Internal(e.into()))
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_upload_bytes: usize,
    pub max_body_bytes: usize,
    /// What estimator jobs may cost (checked on upload and again by the worker).
    pub cost: crate::estimate::cost::Limits,
    /// Uploads answer 503 while this many jobs are queued (0: no ceiling).
    pub max_queued_jobs: u64,
    /// Uploads answer 503 while the oldest due queued job has waited this long (0: none).
    pub max_queue_age_seconds: f64,
    /// Requests per second per key (or client address) under /v1/ (0: no limit).
    pub rate_limit: f64,
    /// Token bucket size of the rate limit.
    pub rate_burst: f64,
    /// Accept monitor webhook URLs on loopback, private and link-local addresses.
    pub webhook_allow_private: bool,
    /// At most this many information series (and alias markers) in `/metrics`.
    pub metrics_max_information_series: usize,
    /// `/metrics` reads the information series from the database at most once per this long.
    pub metrics_cache: std::time::Duration,
    /// The service is reached over HTTPS (`--public-url https://…`): cookies are `Secure`.
    pub public_https: bool,
    /// `/metrics` shows every model's information series to every scrape, even while keys are
    /// required.
    pub metrics_public_information: bool,
    /// How fast a request body must arrive once a handler reads it (408 otherwise).
    pub body_pace: super::paced::BodyPace,
    /// The default `label_coverage` of a batch whose labels come later.
    pub label_coverage: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_upload_bytes: 256 * 1024 * 1024,
            max_body_bytes: 1024 * 1024,
            cost: Default::default(),
            max_queued_jobs: 50_000,
            max_queue_age_seconds: 0.0,
            rate_limit: 0.0,
            rate_burst: 1.0,
            webhook_allow_private: false,
            metrics_max_information_series: 1000,
            metrics_cache: std::time::Duration::from_secs(5),
            public_https: false,
            body_pace: Default::default(),
            metrics_public_information: false,
            label_coverage: 1.0,
        }
    }
}

impl AppState {
    /// The judge of gate evaluations and comparisons, with this process's paired differences.
    pub fn judge(&self) -> Judge<'_> {
        Judge {
            pool: &self.pool,
            deltas: &self.caches.deltas,
        }
    }
}
