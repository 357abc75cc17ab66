//! Monitors: watch a model's production version and notify on regressions, reliably.
//!
//! - **Triggers** enqueue an evaluation (`monitor_jobs`) in the transaction of the event that
//!   causes it (SQL in `crate::store::triggers`): the result that finishes a batch of the
//!   target (called by the queue's finish), an alias move, a schedule slot claimed by one process
//!   (a row lock and an update of `next_run_at`).
//! - **Evaluations** are claimed with a lease like estimator jobs; the judge (`crate::gate::judge`)
//!   judges the rules on the monitor's window; the decision (marked with the
//!   monitor), the incident change ([`incident::step`]) and the messages (`webhook_deliveries`,
//!   the outbox) are written in one transaction fenced on the lease.
//! - **Deliveries** are claimed with a lease, POSTed with Standard Webhooks signatures, every
//!   attempt recorded; failures retry with exponential backoff and jitter for 24 h, then the
//!   message is dead-lettered. At least once, with a stable `webhook-id`.
//! - **The information export** ([`export`]) decides which stored results `/metrics` shows.

pub mod deliver;
pub mod export;
pub mod incident;
pub mod run;
pub mod spec;

use std::time::Duration;

use uuid::Uuid;

/// Monitor settings of a worker pool.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// Deliver to loopback, private and link-local addresses (off in production).
    pub allow_private: bool,
    /// The service's public base URL, for links in messages.
    pub public_url: String,
    /// One HTTP attempt's limit.
    pub timeout: Duration,
    /// First retry delay; doubles per attempt (with jitter) up to `retry_cap`.
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// A message still undelivered this long after it was written is dead-lettered.
    pub give_up_after: Duration,
    /// Evaluation and delivery tasks per pool.
    pub evaluators: usize,
    pub deliverers: usize,
    /// An evaluation or delivery lease.
    pub lease: Duration,
    /// How often idle loops look without a wake-up, and schedules are checked.
    pub poll_interval: Duration,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            allow_private: false,
            public_url: "http://127.0.0.1:8080".into(),
            timeout: Duration::from_secs(10),
            retry_base: Duration::from_secs(5),
            retry_cap: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(24 * 3600),
            evaluators: 1,
            deliverers: 4,
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
        }
    }
}

impl MonitorConfig {
    /// The delay before retry `n` (1-based): base·2^(n−1), capped, times a jitter in [0.5, 1.5).
    pub fn retry_delay(&self, n: i32) -> Duration {
        let exp = self.retry_base.as_secs_f64() * 2f64.powi((n - 1).clamp(0, 30));
        let capped = exp.min(self.retry_cap.as_secs_f64());
        let jitter = 0.5 + (Uuid::new_v4().as_u128() % 10_000) as f64 / 10_000.0;
        Duration::from_secs_f64(capped * jitter)
    }
}
