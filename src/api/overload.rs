//! Backpressure and fairness: a ceiling on queued work that uploads respect (503 +
//! `Retry-After` instead of a queue that grows without bound) and a per-key token bucket
//! (429 + `Retry-After`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::auth::Principal;
use crate::error::{Error, Result};

/// The queue's depth and the age of its oldest due job, read at most every [`QueueGauge::FRESH`]
/// (so that a burst of uploads costs one query, not one each).
#[derive(Default)]
pub struct QueueGauge(Mutex<Option<(Instant, u64, f64)>>);

impl QueueGauge {
    const FRESH: Duration = Duration::from_millis(200);

    /// (queued jobs, counted up to `cap`; seconds the oldest due queued job has waited).
    async fn read(&self, pool: &sqlx::PgPool, cap: u64) -> Result<(u64, f64)> {
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
}

/// Seconds a shed upload is asked to wait.
const QUEUE_RETRY_AFTER: u64 = 5;

/// Refuse new work (503 + `Retry-After`) while the queue is over its ceiling.
pub async fn check_queue(state: &AppState) -> Result<()> {
    let (max_jobs, max_age) = (
        state.limits.max_queued_jobs,
        state.limits.max_queue_age_seconds,
    );
    if max_jobs == 0 && max_age <= 0.0 {
        return Ok(());
    }
    let (queued, age) = state
        .caches
        .queue
        .read(&state.pool, if max_jobs == 0 { 0 } else { max_jobs })
        .await?;
    if max_jobs > 0 && queued >= max_jobs {
        crate::metrics::upload_shed("queued_jobs");
        return Err(Error::Overloaded {
            detail: format!(
                "{queued} estimator jobs are queued, at the ceiling of {max_jobs} \
                 (--max-queued-jobs); nothing was stored; retry after {QUEUE_RETRY_AFTER} s"
            ),
            retry_after: QUEUE_RETRY_AFTER,
        });
    }
    if max_age > 0.0 && age >= max_age {
        crate::metrics::upload_shed("queue_age");
        return Err(Error::Overloaded {
            detail: format!(
                "the oldest queued estimator job has waited {age:.0} s, over the ceiling of \
                 {max_age:.0} s (--max-queue-age-seconds); nothing was stored; retry after \
                 {QUEUE_RETRY_AFTER} s"
            ),
            retry_after: QUEUE_RETRY_AFTER,
        });
    }
    Ok(())
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

/// The per-key rate limit on `/v1/` routes (after authentication, so a key is known): one token
/// bucket per API key, or per client address for calls without a key.
pub async fn rate_limit(State(state): State<AppState>, req: Request<Body>, next: Next) -> Response {
    let rate = state.limits.rate_limit;
    if rate <= 0.0 || !req.uri().path().starts_with("/v1/") {
        return next.run(req).await;
    }
    let caller = match req.extensions().get::<Principal>() {
        Some(p) => format!("key:{}", p.key_id),
        None => match req.extensions().get::<ConnectInfo<SocketAddr>>() {
            Some(ConnectInfo(a)) => format!("addr:{}", a.ip()),
            None => "anonymous".to_string(),
        },
    };
    match state
        .caches
        .buckets
        .take(&caller, rate, state.limits.rate_burst)
    {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            crate::metrics::rate_limited();
            let retry_after = wait.ceil().max(1.0) as u64;
            Error::RateLimited {
                detail: format!(
                    "this {} is limited to {rate} requests per second (burst {}); retry after \
                     {retry_after} s",
                    if caller.starts_with("key:") {
                        "API key"
                    } else {
                        "client"
                    },
                    state.limits.rate_burst.max(1.0)
                ),
                retry_after,
            }
            .into_response()
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
