//! Backpressure and fairness: a ceiling on queued work that uploads respect (503 +
//! `Retry-After` instead of a queue that grows without bound) and a per-key token bucket
//! (429 + `Retry-After`).

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::state::AppState;
use crate::auth::Principal;
use crate::error::{Error, Result};

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
