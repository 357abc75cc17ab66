//! What backpressure and the rate limit keep between requests: the queue gauge (read at most
//! every 200 ms) and the token buckets per caller. `overload` applies them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::Result;

/// The queue's depth and the age of its oldest due job, read at most every [`QueueGauge::FRESH`]
/// (so that a burst of uploads costs one query, not one each).
#[derive(Default)]
pub struct QueueGauge(Mutex<Option<(Instant, u64, f64)>>);

impl QueueGauge {
    const FRESH: Duration = Duration::from_millis(200);

    /// (queued jobs, counted up to `cap`; seconds the oldest due queued job has waited).
    pub(super) async fn read(&self, pool: &sqlx::PgPool, cap: u64) -> Result<(u64, f64)> {
        if let Ok(g) = self.0.lock() {
            if let Some((at, n, age)) = *g {
                if at.elapsed() < Self::FRESH {
                    return Ok((n, age));
                }
            }
        }
        // Counting stops past the ceiling: the cost is bounded however deep the queue is.
        let (n, age): (i64, Option<f64>) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE state = 'queued' LIMIT $1) q),
                    (SELECT extract(epoch FROM now() - min(run_at))::float8 FROM jobs
                     WHERE state = 'queued' AND run_at <= now())",
        )
        .bind(i64::try_from(cap.saturating_add(1)).unwrap_or(i64::MAX))
        .fetch_one(pool)
        .await?;
        let (n, age) = (n.max(0) as u64, age.unwrap_or(0.0).max(0.0));
        if let Ok(mut g) = self.0.lock() {
            *g = Some((Instant::now(), n, age));
        }
        Ok((n, age))
    }

    /// This process just enqueued `jobs`: the cached depth counts them at once, so the next
    /// upload of a burst sees the queue it made (other processes' enqueues wait for the next
    /// read).
    pub(super) fn enqueued(&self, jobs: u64) {
        if let Ok(mut g) = self.0.lock() {
            if let Some((_, n, _)) = g.as_mut() {
                *n = n.saturating_add(jobs);
            }
        }
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by caller.
#[derive(Default)]
pub struct Buckets(Mutex<HashMap<String, Bucket>>);

impl Buckets {
    /// At most this many callers are tracked; past it, buckets that have refilled are dropped
    /// (a full bucket and a missing one behave the same).
    const CAPACITY: usize = 100_000;

    /// Take one token for `caller`; `Err(seconds)` until the next token when there is none.
    pub fn take(&self, caller: &str, rate: f64, burst: f64) -> std::result::Result<(), f64> {
        let burst = burst.max(1.0);
        let now = Instant::now();
        let Ok(mut map) = self.0.lock() else {
            return Ok(());
        };
        if map.len() >= Self::CAPACITY && !map.contains_key(caller) {
            map.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let b = map.entry(caller.to_string()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err((1.0 - b.tokens) / rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let b = Buckets::default();
        for _ in 0..3 {
            assert!(b.take("a", 1.0, 3.0).is_ok());
        }
        let wait = b.take("a", 1.0, 3.0).unwrap_err();
        assert!(wait > 0.9 && wait <= 1.0, "{wait}");
        // Another caller has its own bucket.
        assert!(b.take("b", 1.0, 3.0).is_ok());
        std::thread::sleep(Duration::from_millis(120));
        // 10 per second: 0.12 s refilled one token.
        let c = Buckets::default();
        assert!(c.take("x", 10.0, 1.0).is_ok());
        assert!(c.take("x", 10.0, 1.0).is_err());
        std::thread::sleep(Duration::from_millis(120));
        assert!(c.take("x", 10.0, 1.0).is_ok());
    }
}
