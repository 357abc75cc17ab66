//! What every handler uses to read a request: media types, JSON bodies read strictly (problems
//! name the field), path and query names, cursor paging and the unit of the answer.

use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderMap, StatusCode};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::strict;
use crate::domain::names::Name;
use crate::domain::unit::Unit;
use crate::error::{Error, FieldError, Result};

/// The media type of `Content-Type`, lower case, without parameters ("" when absent).
pub fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Parse a path name, or say what is wrong with it.
pub fn path_name(what: &str, s: &str) -> Result<Name> {
    Name::parse(s).map_err(|m| Error::Unprocessable(format!("{what} name {s:?} {m}")))
}

pub fn body_rejection(r: BytesRejection) -> Error {
    if let Some(t) = crate::error::body_timeout_in(&r) {
        return Error::Timeout(t.0.clone());
    }
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Error::PayloadTooLarge(r.body_text())
    } else {
        Error::BadRequest(r.body_text())
    }
}

pub fn require_json(headers: &HeaderMap) -> Result<()> {
    let mime = media_type(headers);
    if mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json")) {
        Ok(())
    } else if mime.is_empty() {
        Err(Error::UnsupportedMediaType(
            "no Content-Type given; send application/json".into(),
        ))
    } else {
        Err(Error::UnsupportedMediaType(format!(
            "{mime} is not accepted here; send application/json"
        )))
    }
}

/// Parse JSON, reporting the JSON Pointer of the first value that does not fit. Structs are read
/// only from objects (see [`strict`]).
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
    match strict::from_slice::<T>(body) {
        Ok(v) => Ok(v),
        Err(first) => {
            // Cold path: parse again, tracking the path, to name the offending field.
            let mut de = serde_json::Deserializer::from_slice(body);
            let pointer = match serde_path_to_error::deserialize::<_, T>(strict::Strict(&mut de)) {
                Err(e) => pointer_of(e.path()),
                Ok(_) => String::new(),
            };
            if first.is_syntax() || first.is_eof() {
                return Err(Error::BadRequest(format!(
                    "the body is not valid JSON: {first}"
                )));
            }
            let message = first.to_string();
            let message = message
                .split(" at line ")
                .next()
                .unwrap_or(&message)
                .to_string();
            let pointer = if pointer.is_empty() {
                "/".to_string()
            } else {
                pointer
            };
            Err(Error::Validation(vec![FieldError::at(pointer, message)]))
        }
    }
}

/// Parse JSON as it is read (structs only from objects, the whole text consumed): the body is
/// never held whole. A read error is mapped by `failure` (limits, timeouts); a value that does
/// not fit is a 422 naming its JSON Pointer (tracked in the one pass).
pub fn parse_json_stream<T: serde::de::DeserializeOwned>(
    reader: impl std::io::Read,
    failure: impl Fn(std::io::Error) -> Error,
) -> Result<T> {
    let mut de =
        serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(64 * 1024, reader));
    let value = serde_path_to_error::deserialize::<_, T>(strict::Strict(&mut de))
        .map_err(|e| (pointer_of(e.path()), e.into_inner()))
        .and_then(|v| de.end().map(|()| v).map_err(|e| (String::new(), e)));
    match value {
        Ok(v) => Ok(v),
        Err((pointer, inner)) => {
            if inner.is_io() {
                return Err(failure(std::io::Error::from(inner)));
            }
            if inner.is_syntax() || inner.is_eof() {
                return Err(Error::BadRequest(format!(
                    "the body is not valid JSON: {inner}"
                )));
            }
            let message = inner.to_string();
            let message = message.split(" at line ").next().unwrap_or(&message);
            Err(Error::Validation(vec![FieldError::at(
                if pointer.is_empty() {
                    "/".to_string()
                } else {
                    pointer
                },
                message,
            )]))
        }
    }
}

/// A JSON Pointer from a deserialisation path.
fn pointer_of(path: &serde_path_to_error::Path) -> String {
    let mut p = String::new();
    for seg in path.iter() {
        use serde_path_to_error::Segment as S;
        match seg {
            S::Seq { index } => p.push_str(&format!("/{index}")),
            S::Map { key } | S::Enum { variant: key } => {
                p.push('/');
                p.push_str(&key.replace('~', "~0").replace('/', "~1"));
            }
            S::Unknown => {}
        }
    }
    p
}

/// A JSON request body (`application/json` or `+json`), read with [`strict::from_slice`]; problems are
/// problem documents naming the field (see [`parse_json`]).
pub struct StrictJson<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S>
    for StrictJson<T>
{
    type Rejection = crate::error::Error;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        require_json(req.headers())?;
        let body = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        parse_json(&body).map(StrictJson)
    }
}

/// A model, version, alias or gate name: 1–128 of letters, digits, '.', '_' and '-', not
/// starting with '.' (`domain::names::PATTERN`; a test checks the two agree).
#[derive(ToSchema)]
#[schema(pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")]
pub struct NameString(#[allow(dead_code)] String);

/// Cursor paging: `?limit=` (1–1000, default 50) and `?cursor=` from the previous page.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1–1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// The previous page's `next_cursor` (empty or absent: the first page).
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn limit(&self) -> Result<i64, Error> {
        match self.limit {
            None => Ok(50),
            Some(l) if (1..=1000).contains(&l) => Ok(l),
            Some(l) => Err(Error::BadRequest(format!(
                "limit must be between 1 and 1000 (got {l})"
            ))),
        }
    }

    /// The position of a time-ordered list's cursor (see `super::cursor`).
    pub fn after_time(&self) -> Result<Option<(chrono::DateTime<chrono::Utc>, uuid::Uuid)>, Error> {
        super::cursor::decode_time(self.cursor.as_deref())
    }
}

/// Check a query parameter that names a model, monitor, version or alias (the document states the
/// same pattern): a 400 naming the parameter, so a malformed name is never an empty answer.
pub fn query_name(param: &str, value: Option<&str>) -> Result<(), Error> {
    match value.map(crate::domain::names::Name::parse) {
        Some(Err(why)) => Err(Error::BadRequest(format!(
            "query parameter `{param}`: {value:?} is not a name: it {why}",
            value = value.unwrap_or_default()
        ))),
        _ => Ok(()),
    }
}

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UnitQuery {
    /// `bits` (default) or `nats`.
    pub unit: Option<Unit>,
}
