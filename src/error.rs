//! One error type for the HTTP edge, rendered as RFC 9457 `application/problem+json`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a field error points: a JSON Pointer into the request body, or a row/column of a
/// line-oriented body (CSV, NDJSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// JSON Pointer (RFC 6901) into the request body, e.g. `/labels/17`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// 0-based data row, for CSV and NDJSON bodies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<u64>,
    /// Column name, for CSV and NDJSON bodies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// What is wrong with the value.
    pub message: String,
}

impl FieldError {
    pub fn at(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            pointer: Some(pointer.into()),
            row: None,
            column: None,
            message: message.into(),
        }
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "type": "https://infoaudit.dev/problems/validation",
    "title": "The request body is invalid",
    "status": 422,
    "detail": "1 field is invalid",
    "errors": [{"pointer": "/labels/17", "message": "label 7 is outside the 3 classes"}]
}))]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short, human-readable summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong in this occurrence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Field-level errors, for validation problems.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &str, title: &str, detail: impl Into<String>) -> Self {
        Problem {
            kind: format!("https://infoaudit.dev/problems/{kind}"),
            title: title.to_string(),
            status: status.as_u16(),
            detail: Some(detail.into()),
            errors: Vec::new(),
        }
    }
}

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A conflict about particular fields (ids already used, labels already given otherwise):
    /// 409 with each one in `errors`.
    #[error("{0}")]
    ConflictFields(String, Vec<FieldError>),
    #[error("{0}")]
    Unprocessable(String),
    #[error("request body too large: {0}")]
    PayloadTooLarge(String),
    /// The client sent its request too slowly (408).
    #[error("request timeout: {0}")]
    Timeout(String),
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// Too much queued work: 503 with `Retry-After` (seconds).
    #[error("overloaded: {detail}")]
    Overloaded { detail: String, retry_after: u64 },
    /// The caller's rate limit is exceeded: 429 with `Retry-After` (seconds).
    #[error("rate limited: {detail}")]
    RateLimited { detail: String, retry_after: u64 },
    /// The resource existed but its content is gone for good (purged by retention).
    #[error("{0}")]
    Gone(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A request body that arrived too slowly (or stalled): the client gave the server nothing for
/// too long while it waited. Carried inside body errors; answered 408.
#[derive(Debug, Clone)]
pub struct BodyTimeout(pub String);

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BodyTimeout {}

/// The [`BodyTimeout`] somewhere in an error's chain (axum and I/O errors wrap it).
pub fn body_timeout_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyTimeout> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(t) = c.downcast_ref::<BodyTimeout>() {
            return Some(t);
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(t) = body_timeout_in(inner) {
                    return Some(t);
                }
            }
        }
        cur = c.source();
    }
    None
}

/// When the database last answered (milliseconds since the process's first look at the clock):
/// a connection was handed out healthy or given back. A pool that times out while this is
/// recent is busy (every connection in use), not an outage.
static DATABASE_ANSWERED_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static CLOCK: std::sync::LazyLock<std::time::Instant> =
    std::sync::LazyLock::new(std::time::Instant::now);

/// Record that the database answered (the pool's hooks call this).
pub fn database_answered() {
    let ms = CLOCK.elapsed().as_millis() as u64 + 1;
    DATABASE_ANSWERED_MS.store(ms, std::sync::atomic::Ordering::Relaxed);
}

/// Whether the database answered within the last 3 s (shorter than the 5 s a request waits for
/// a connection: during an outage nothing answers while it waits).
fn database_answered_recently() -> bool {
    let last = DATABASE_ANSWERED_MS.load(std::sync::atomic::Ordering::Relaxed);
    last > 0 && (CLOCK.elapsed().as_millis() as u64) < last + 3_000
}

/// Whether a database error is contention, not an outage: the pool timed out handing out a
/// connection while the database itself kept answering (every connection was in use).
pub fn is_busy(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::PoolTimedOut) && database_answered_recently()
}

/// Seconds a client is asked to wait (`Retry-After`) when the database cannot be reached.
pub const DATABASE_RETRY_AFTER: u64 = 2;

/// Whether an internal error comes from the database being unreachable (an outage, a restart,
/// an exhausted pool) rather than from a bug: those answer 503, not 500.
pub fn unavailable_in_chain(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| c.downcast_ref::<sqlx::Error>().is_some_and(is_unavailable))
}

/// Whether a database error means the server cannot be reached or cannot serve right now (an
/// outage, a restart, crash recovery, an exhausted pool, a serialisation conflict) rather than a
/// bug or bad input: callers retry these, and the API answers them with 503 + `Retry-After`.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => {
            let code = d.code();
            let code = code.as_deref().unwrap_or("");
            // 08: connection exception; 53: insufficient resources; 57P01-57P03: admin or
            // crash shutdown, cannot connect now (starting up, recovering); 58: system error;
            // 40001/40P01: serialisation failure, deadlock (retry); 25006: read-only (failover).
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("58")
                || matches!(
                    code,
                    "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "25006"
                )
        }
        _ => false,
    }
}

impl Error {
    pub fn field(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Validation(vec![FieldError::at(pointer, message)])
    }

    /// Whether every database connection being in use caused this error (503 + Retry-After,
    /// called busy, not an outage).
    pub fn is_database_busy(&self) -> bool {
        match self {
            Error::Database(e) => is_busy(e),
            Error::Internal(e) => e
                .chain()
                .any(|c| c.downcast_ref::<sqlx::Error>().is_some_and(is_busy)),
            _ => false,
        }
    }

    /// Whether the database being unreachable caused this error (answered 503 + Retry-After).
    pub fn is_database_outage(&self) -> bool {
        match self {
            Error::Database(e) => is_unavailable(e),
            Error::Internal(e) => unavailable_in_chain(e),
            _ => false,
        }
    }

    /// The `Retry-After` seconds that go with this error, if any.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Error::Overloaded { retry_after, .. } | Error::RateLimited { retry_after, .. } => {
                Some((*retry_after).max(1))
            }
            Error::Unavailable(_) => Some(DATABASE_RETRY_AFTER),
            e if e.is_database_outage() => Some(DATABASE_RETRY_AFTER),
            _ => None,
        }
    }

    pub fn problem(&self) -> Problem {
        use StatusCode as S;
        match self {
            Error::Validation(errors) => {
                let n = errors.len();
                let detail = if n == 1 {
                    let e = &errors[0];
                    let place = e
                        .pointer
                        .clone()
                        .or_else(|| {
                            e.row.map(|r| match &e.column {
                                Some(c) => format!("row {r}, column {c}"),
                                None => format!("row {r}"),
                            })
                        })
                        .unwrap_or_default();
                    if place.is_empty() {
                        e.message.clone()
                    } else {
                        format!("{place}: {}", e.message)
                    }
                } else {
                    format!("{n} fields are invalid")
                };
                Problem {
                    errors: errors.clone(),
                    ..Problem::new(
                        S::UNPROCESSABLE_ENTITY,
                        "validation",
                        "The request is invalid",
                        detail,
                    )
                }
            }
            Error::BadRequest(m) => Problem::new(S::BAD_REQUEST, "bad-request", "Bad request", m),
            Error::NotFound(m) => Problem::new(S::NOT_FOUND, "not-found", "Not found", m),
            Error::Conflict(m) => Problem::new(S::CONFLICT, "conflict", "Conflict", m),
            Error::ConflictFields(m, errors) => Problem {
                errors: errors.clone(),
                ..Problem::new(S::CONFLICT, "conflict", "Conflict", m)
            },
            Error::Unprocessable(m) => Problem::new(
                S::UNPROCESSABLE_ENTITY,
                "unprocessable",
                "The request cannot be processed",
                m,
            ),
            Error::PayloadTooLarge(m) => Problem::new(
                S::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Request body too large",
                m,
            ),
            Error::Timeout(m) => Problem::new(
                S::REQUEST_TIMEOUT,
                "request-timeout",
                "The request arrived too slowly",
                m,
            ),
            Error::UnsupportedMediaType(m) => Problem::new(
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                m,
            ),
            Error::Unauthorized(m) => {
                Problem::new(S::UNAUTHORIZED, "unauthorized", "Unauthorized", m)
            }
            Error::Forbidden(m) => Problem::new(S::FORBIDDEN, "forbidden", "Forbidden", m),
            Error::Unavailable(m) => Problem::new(
                S::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
                m,
            ),
            Error::Overloaded { detail, .. } => Problem::new(
                S::SERVICE_UNAVAILABLE,
                "overloaded",
                "Too much queued work",
                detail.clone(),
            ),
            Error::RateLimited { detail, .. } => Problem::new(
                S::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
                detail.clone(),
            ),
            Error::Gone(m) => Problem::new(S::GONE, "gone", "Gone", m),
            // A deadlock or serialisation failure: the transaction was rolled back, a retry
            // succeeds. Not an outage, so not described as one.
            Error::Database(sqlx::Error::Database(d))
                if matches!(d.code().as_deref(), Some("40001" | "40P01")) =>
            {
                Problem::new(
                    S::SERVICE_UNAVAILABLE,
                    "transient-conflict",
                    "A concurrent change conflicted",
                    format!(
                        "this request conflicted with a concurrent one and was rolled back; \
                         nothing was changed; retry in {DATABASE_RETRY_AFTER} s"
                    ),
                )
            }
            e if e.is_database_busy() => Problem::new(
                S::SERVICE_UNAVAILABLE,
                "busy",
                "The service is busy",
                format!(
                    "every database connection is in use at the moment (the database itself is \
                     fine); nothing was changed by this request unless it said so; retry in \
                     {DATABASE_RETRY_AFTER} s"
                ),
            ),
            e if e.is_database_outage() => Problem::new(
                S::SERVICE_UNAVAILABLE,
                "database-unavailable",
                "The database is unavailable",
                format!(
                    "the database cannot be reached at the moment (it may be restarting); \
                     nothing was changed by this request unless it said so; retry in {DATABASE_RETRY_AFTER} s"
                ),
            ),
            // Text PostgreSQL cannot store (U+0000 in text or jsonb, bytes invalid in the
            // encoding) is the client's input, not a fault: 422 rather than 500.
            Error::Database(sqlx::Error::Database(d))
                if matches!(d.code().as_deref(), Some("22021" | "22P05")) =>
            {
                Problem::new(
                    S::UNPROCESSABLE_ENTITY,
                    "validation",
                    "The request is invalid",
                    "a text value contains a character the database cannot store (such as U+0000)",
                )
            }
            Error::Database(_) | Error::Internal(_) => Problem::new(
                S::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal server error",
                "an internal error occurred; it has been logged",
            ),
        }
    }
}

/// Render a problem document with its content type and, when given, `Retry-After`.
pub fn problem_response_retry(problem: &Problem, retry_after: Option<u64>) -> Response {
    let mut resp = problem_response(problem);
    if let Some(s) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    resp
}

/// Render a problem document with its content type.
pub fn problem_response(problem: &Problem) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(problem).unwrap_or_default();
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    resp
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match &self {
            e if e.is_database_busy() => {
                tracing::warn!(error = %e, "every database connection in use; answering 503")
            }
            e if e.is_database_outage() => {
                crate::metrics::database_unavailable_answer();
                tracing::warn!(error = %e, "database unavailable; answering 503")
            }
            Error::Database(e) => tracing::error!(error = %e, "database error"),
            Error::Internal(e) => tracing::error!(error = ?e, "internal error"),
            _ => {}
        }
        problem_response_retry(&self.problem(), self.retry_after())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool timeout while the database keeps answering is "busy", not an outage; a connection
    /// error is an outage; both are 503 with Retry-After.
    #[test]
    fn pool_contention_is_busy_and_a_lost_connection_an_outage() {
        database_answered();
        let busy = Error::Database(sqlx::Error::PoolTimedOut);
        assert!(busy.is_database_busy());
        let p = busy.problem();
        assert_eq!(p.status, 503);
        assert!(p.kind.ends_with("/busy"), "{}", p.kind);
        assert_eq!(busy.retry_after(), Some(DATABASE_RETRY_AFTER));
        let down = Error::Database(sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert!(!down.is_database_busy());
        assert!(down.is_database_outage());
        assert!(down.problem().kind.ends_with("/database-unavailable"));
        let wrapped = Error::Internal(anyhow::Error::new(sqlx::Error::PoolTimedOut));
        assert!(wrapped.is_database_busy());
    }

    #[test]
    fn a_body_timeout_is_found_inside_io_and_axum_errors() {
        let io = std::io::Error::other(axum::Error::new(BodyTimeout("slow".into())));
        assert_eq!(body_timeout_in(&io).map(|t| t.0.as_str()), Some("slow"));
        let plain = std::io::Error::other("nothing");
        assert!(body_timeout_in(&plain).is_none());
        assert_eq!(Error::Timeout("slow".into()).problem().status, 408);
    }
}
