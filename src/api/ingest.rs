//! Reading an upload body: media type and content coding negotiation, incremental decompression,
//! size limits on both the wire bytes and the decoded bytes, and the request fingerprint for
//! `Idempotency-Key`. Runs on a blocking thread fed by the async body, so a large or compressed
//! upload is decoded as it arrives and never held twice.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::{header, HeaderMap};
use futures_util::TryStreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::IntoParams;

use super::extract::{media_type, parse_json};
use crate::domain::arrow;
use crate::domain::batch::{BatchRequest, Task};
use crate::domain::estimators::EstimatorRef;
use crate::domain::rows::{self, ColumnMap, RowOptions, RowsError};
use crate::error::{Error, FieldError, Result};

/// The body formats an upload may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Ndjson,
    Csv,
    Arrow,
}

impl Format {
    /// The canonical media type, stored with the batch.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv",
            Format::Arrow => ARROW_STREAM,
        }
    }
}

/// The media type of an Arrow IPC stream.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// The content codings an upload may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Gzip,
    Zstd,
}

impl Coding {
    fn name(self) -> &'static str {
        match self {
            Coding::Identity => "identity",
            Coding::Gzip => "gzip",
            Coding::Zstd => "zstd",
        }
    }
}

/// Which body format the `Content-Type` names (415 otherwise).
pub fn format_of(headers: &HeaderMap) -> Result<Format> {
    let mime = media_type(headers);
    const ACCEPTED: &str = "send application/json, application/x-ndjson, text/csv or \
                            application/vnd.apache.arrow.stream";
    match mime.as_str() {
        "application/json" => Ok(Format::Json),
        m if m.starts_with("application/") && m.ends_with("+json") => Ok(Format::Json),
        "application/x-ndjson"
        | "application/ndjson"
        | "application/jsonl"
        | "application/x-jsonlines" => Ok(Format::Ndjson),
        "text/csv" | "application/csv" => Ok(Format::Csv),
        ARROW_STREAM => Ok(Format::Arrow),
        "" => Err(Error::UnsupportedMediaType(format!(
            "no Content-Type given; {ACCEPTED}"
        ))),
        m => Err(Error::UnsupportedMediaType(format!(
            "{m} is not accepted here; {ACCEPTED}"
        ))),
    }
}

/// Which content coding `Content-Encoding` names (415 otherwise; one coding at most).
pub fn coding_of(headers: &HeaderMap) -> Result<Coding> {
    let Some(v) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(Coding::Identity);
    };
    let v = v.to_str().unwrap_or("").trim().to_ascii_lowercase();
    match v.as_str() {
        "" | "identity" => Ok(Coding::Identity),
        "gzip" | "x-gzip" => Ok(Coding::Gzip),
        "zstd" => Ok(Coding::Zstd),
        other => Err(Error::UnsupportedMediaType(format!(
            "Content-Encoding {other:?} is not accepted; send gzip, zstd or an uncompressed body"
        ))),
    }
}

/// Batch options for NDJSON, CSV and Arrow bodies (JSON bodies carry them as fields).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// NDJSON, CSV and Arrow only: `multiclass | multilabel | pairs | regression`; default: from the columns
    /// (`y`→pairs, `target`→regression, `scores`→multilabel, else multiclass).
    pub task: Option<String>,
    /// NDJSON, CSV and Arrow only: comma-separated class (or label) names; CSV default: the `p_`/`score_`
    /// column suffixes in header order.
    pub classes: Option<String>,
    /// NDJSON, CSV and Arrow only: comma-separated estimator ids, or a JSON array of ids and `{id, params}`.
    pub estimators: Option<String>,
    /// NDJSON, CSV and Arrow only: a JSON object kept with the batch (e.g. `{"kpis": {"conversion": 0.03}}`).
    pub metadata: Option<String>,
    /// NDJSON, CSV and Arrow only: cap on distinct values per segment key (1–10000; default 50).
    #[param(minimum = 1, maximum = 10000)]
    pub max_segment_values: Option<u32>,
    /// NDJSON, CSV and Arrow only: for a batch whose labels come later, the labelled fraction
    /// that releases its label-dependent estimators (0 < f ≤ 1; default 1).
    #[param(minimum = 0.0, maximum = 1.0)]
    pub label_coverage: Option<f64>,
    /// NDJSON, CSV and Arrow only: accept probability rows that sum to 1 within 0.1 (rounded
    /// probabilities) and divide each by its sum; recorded in every result's details.
    pub normalize: Option<bool>,
}

impl UploadQuery {
    /// The first option given, if any.
    fn first_given(&self) -> Option<&'static str> {
        [
            ("task", self.task.is_some()),
            ("classes", self.classes.is_some()),
            ("estimators", self.estimators.is_some()),
            ("metadata", self.metadata.is_some()),
            ("max_segment_values", self.max_segment_values.is_some()),
            ("label_coverage", self.label_coverage.is_some()),
            ("normalize", self.normalize.is_some()),
        ]
        .into_iter()
        .find_map(|(name, given)| given.then_some(name))
    }

    /// The row options, or every query parameter that is wrong.
    pub fn options(&self, format: Format) -> Result<RowOptions> {
        let err = |field: &str, message: String| FieldError {
            pointer: None,
            row: None,
            column: None,
            message: format!("query parameter `{field}`: {message}"),
        };
        if format == Format::Json {
            let Some(given) = self.first_given() else {
                return Ok(RowOptions::default());
            };
            return Err(Error::Validation(vec![err(
                given,
                "the query options apply to NDJSON, CSV and Arrow bodies; a JSON body carries task, \
                 classes, estimators, metadata, max_segment_values, label_coverage and normalize as fields"
                    .into(),
            )]));
        }
        let mut errors = Vec::new();
        let task = self.task.as_deref().and_then(|t| {
            let parsed = Task::parse(t);
            if parsed.is_none() {
                errors.push(err(
                    "task",
                    format!("{t:?} is not one of multiclass, multilabel, pairs, regression"),
                ));
            }
            parsed
        });
        let classes = self.classes.as_deref().map(|c| {
            c.split(',')
                .map(|s| s.trim().to_string())
                .collect::<Vec<_>>()
        });
        let estimators = match self.estimators.as_deref().map(str::trim) {
            None => None,
            Some(e) if e.starts_with('[') => match serde_json::from_str::<Vec<EstimatorRef>>(e) {
                Ok(v) => Some(v),
                Err(x) => {
                    errors.push(err(
                        "estimators",
                        format!("is not a JSON array of estimators: {x}"),
                    ));
                    None
                }
            },
            Some(e) => Some(
                e.split(',')
                    .map(|s| EstimatorRef::Id(s.trim().to_string()))
                    .collect(),
            ),
        };
        let metadata = self.metadata.as_deref().and_then(|m| {
            match serde_json::from_str::<serde_json::Value>(m) {
                Ok(v) if v.is_object() => Some(v),
                Ok(_) => {
                    errors.push(err("metadata", "must be a JSON object".into()));
                    None
                }
                Err(x) => {
                    errors.push(err("metadata", format!("is not JSON: {x}")));
                    None
                }
            }
        });
        if !errors.is_empty() {
            return Err(Error::Validation(errors));
        }
        Ok(RowOptions {
            task,
            classes,
            estimators,
            metadata,
            max_segment_values: self.max_segment_values,
            label_coverage: self.label_coverage,
            normalize: self.normalize,
        })
    }
}

/// What went wrong while the body was being read, shared between the readers in the chain.
#[derive(Default)]
pub struct Flags {
    over_wire: AtomicBool,
    over_decoded: AtomicBool,
    wire_failed: AtomicBool,
}

/// The wire side: counts (and fingerprints, when asked) the bytes as sent, and stops past the
/// limit.
struct Wire<R> {
    inner: R,
    seen: u64,
    limit: u64,
    hasher: Option<Arc<Mutex<Sha256>>>,
    flags: Arc<Flags>,
}

impl<R: Read> Read for Wire<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) => {
                self.flags.wire_failed.store(true, Ordering::Relaxed);
                return Err(e);
            }
        };
        self.seen += n as u64;
        if self.seen > self.limit {
            self.flags.over_wire.store(true, Ordering::Relaxed);
            return Err(io::Error::other("the body is over the upload limit"));
        }
        if let Some(Ok(mut h)) = self.hasher.as_ref().map(|h| h.lock()) {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// The decoded side: stops once the decoded text passes the limit (a compression bomb ends here).
pub struct DecodedLimit<R> {
    inner: R,
    seen: u64,
    limit: u64,
    flags: Arc<Flags>,
}

impl<R: Read> Read for DecodedLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen += n as u64;
        if self.seen > self.limit {
            self.flags.over_decoded.store(true, Ordering::Relaxed);
            return Err(io::Error::other(
                "the decoded body is over the upload limit",
            ));
        }
        Ok(n)
    }
}

/// An upload body decoded into a request, with its fingerprint.
pub struct Decoded {
    pub request: BatchRequest,
    /// Translates validation pointers to rows and columns (NDJSON, CSV); `None` for JSON.
    pub columns: Option<ColumnMap>,
    /// sha256 of the path, media type, coding and wire bytes: what `Idempotency-Key` compares.
    pub request_hash: String,
}

/// A body being read on a blocking thread.
pub struct Upload {
    pub format: Format,
    pub coding: Coding,
    pub limit: u64,
    pub declared_length: Option<u64>,
    pub options: RowOptions,
    pub path: String,
}

/// Bytes of a body read asynchronously before any decoding: a body that ends within this is
/// decoded from memory, so it never holds a blocking thread while the client sends it.
pub const PREFETCH_BYTES: usize = 256 * 1024;

/// A request body, read asynchronously up to [`PREFETCH_BYTES`]: whole, or its first bytes and
/// the rest still to come (a large body, decoded as it arrives on one of a few stream slots).
pub enum BodySource {
    Whole(bytes::Bytes),
    Stream {
        head: bytes::Bytes,
        rest: axum::body::Body,
    },
}

impl BodySource {
    /// Refuse a declared `Content-Length` over `limit` at once (413, nothing read), then read
    /// ahead. The body's pace is the router's (`paced`): a stalled client ends in 408 here,
    /// without a thread.
    pub async fn read(body: axum::body::Body, declared: Option<u64>, limit: u64) -> Result<Self> {
        use http_body_util::BodyExt;
        if declared.is_some_and(|n| n > limit) {
            return Err(Error::PayloadTooLarge(format!(
                "the body is larger than the {limit}-byte upload limit"
            )));
        }
        let mut body = body;
        let mut head = bytes::BytesMut::new();
        loop {
            match body.frame().await {
                None => return Ok(BodySource::Whole(head.freeze())),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        head.extend_from_slice(&data);
                        if head.len() as u64 > limit {
                            return Err(Error::PayloadTooLarge(format!(
                                "the body is larger than the {limit}-byte upload limit"
                            )));
                        }
                        if head.len() > PREFETCH_BYTES {
                            return Ok(BodySource::Stream {
                                head: head.freeze(),
                                rest: body,
                            });
                        }
                    }
                }
                Some(Err(e)) => return Err(body_error(&e)),
            }
        }
    }

    /// Whether the rest of the body is still to come.
    pub fn is_stream(&self) -> bool {
        matches!(self, BodySource::Stream { .. })
    }

    /// The bytes as a blocking reader. Must be called on the runtime; the reader is then used on
    /// a blocking thread.
    pub fn into_reader(self) -> Box<dyn Read + Send + 'static> {
        match self {
            BodySource::Whole(b) => Box::new(io::Cursor::new(b)),
            BodySource::Stream { head, rest } => {
                let stream = rest.into_data_stream().map_err(io::Error::other);
                let rest =
                    tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
                Box::new(io::Cursor::new(head).chain(rest))
            }
        }
    }
}

/// A body read error as a problem: a client too slow is a 408, anything else a 400.
pub fn body_error(e: &(dyn std::error::Error + 'static)) -> Error {
    match crate::error::body_timeout_in(e) {
        Some(t) => Error::Timeout(t.0.clone()),
        None => Error::BadRequest(format!("could not read the body: {e}")),
    }
}

/// A body's bytes as decoded text: the wire bytes counted (and fingerprinted when `hasher` is
/// given) and held to `limit`, decompressed, the decoded bytes held to `limit` too (a compression
/// bomb ends there). [`ReadFailure::map`] turns a read error into the right problem.
pub type Inflated<'a> = DecodedLimit<Box<dyn Read + 'a>>;

/// What an [`Inflated`] body's read errors mean.
pub struct ReadFailure {
    flags: Arc<Flags>,
    coding: Coding,
    limit: u64,
}

impl ReadFailure {
    /// The problem for a read error: 413 past a limit, 408 for a client too slow, 400 for a
    /// body that could not be read or decompressed.
    pub fn map(&self, e: io::Error) -> Error {
        let too_large = |what: &str| {
            Error::PayloadTooLarge(format!(
                "the {what} is larger than the {}-byte upload limit",
                self.limit
            ))
        };
        if self.flags.over_wire.load(Ordering::Relaxed) {
            too_large("body")
        } else if self.flags.over_decoded.load(Ordering::Relaxed) {
            too_large("decoded body")
        } else if let Some(t) = crate::error::body_timeout_in(&e) {
            Error::Timeout(t.0.clone())
        } else if self.flags.wire_failed.load(Ordering::Relaxed) || self.coding == Coding::Identity
        {
            Error::BadRequest(format!("could not read the body: {e}"))
        } else {
            Error::BadRequest(format!(
                "the {} body could not be decompressed: {e}",
                self.coding.name()
            ))
        }
    }
}

/// Open a body for decoding (see [`Inflated`]).
pub fn inflate<'a, R: Read + 'a>(
    body: R,
    coding: Coding,
    limit: u64,
    hasher: Option<Arc<Mutex<Sha256>>>,
) -> Result<(Inflated<'a>, ReadFailure)> {
    let flags = Arc::new(Flags::default());
    let wire = Wire {
        inner: body,
        seen: 0,
        limit,
        hasher,
        flags: flags.clone(),
    };
    let inflated: Box<dyn Read + 'a> = match coding {
        Coding::Identity => Box::new(wire),
        Coding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(wire))),
        Coding::Zstd => match zstd::stream::read::Decoder::new(wire) {
            Ok(d) => Box::new(d),
            Err(e) => return Err(Error::Internal(e.into())),
        },
    };
    Ok((
        DecodedLimit {
            inner: inflated,
            seen: 0,
            limit,
            flags: flags.clone(),
        },
        ReadFailure {
            flags,
            coding,
            limit,
        },
    ))
}

impl Upload {
    /// Read, decompress and decode the body (blocking). Limits: the wire bytes and the decoded
    /// bytes are each held to `limit` (413); a corrupt compressed stream is a 400.
    pub fn decode<R: Read>(self, body: R) -> Result<Decoded> {
        if self.declared_length.is_some_and(|n| n > self.limit) {
            return Err(Error::PayloadTooLarge(format!(
                "the body is larger than the {}-byte upload limit",
                self.limit
            )));
        }
        let hasher = Arc::new(Mutex::new(Sha256::new()));
        if let Ok(mut h) = hasher.lock() {
            for part in [
                self.path.as_bytes(),
                b"\n",
                self.format.media_type().as_bytes(),
                b"\n",
                self.coding.name().as_bytes(),
                b"\n",
            ] {
                h.update(part);
            }
        }
        let coding = self.coding;
        let (decoded, read_failure) = inflate(body, coding, self.limit, Some(hasher.clone()))?;
        let failure = |e: io::Error| read_failure.map(e);
        let (request, columns) = match self.format {
            Format::Json => {
                let capacity = match coding {
                    Coding::Identity => self.declared_length.unwrap_or(0),
                    _ => self.declared_length.unwrap_or(0).saturating_mul(4),
                };
                // The declared size is the client's word: reserve it fallibly (bounded by the
                // limit), so a refused allocation is an answer, not an abort.
                let mut text = Vec::new();
                if text
                    .try_reserve_exact(capacity.min(self.limit) as usize)
                    .is_err()
                {
                    return Err(Error::Overloaded {
                        detail: "not enough memory to read this body now; retry later".into(),
                        retry_after: 5,
                    });
                }
                let mut decoded = decoded;
                decoded.read_to_end(&mut text).map_err(failure)?;
                drop(decoded);
                let request = parse_json::<BatchRequest>(&text)?;
                (request, None)
            }
            Format::Ndjson => {
                let reader = BufReader::with_capacity(64 * 1024, decoded);
                split(rows::decode_ndjson(reader, self.options), failure)?
            }
            Format::Csv => {
                let reader: Box<dyn BufRead> =
                    Box::new(BufReader::with_capacity(64 * 1024, decoded));
                split(
                    crate::domain::csv::decode_csv(reader, self.options),
                    failure,
                )?
            }
            Format::Arrow => {
                let body_bytes = match coding {
                    Coding::Identity => self.declared_length,
                    _ => None,
                };
                split(
                    arrow::decode_arrow(decoded, self.options, body_bytes),
                    failure,
                )?
            }
        };
        let request_hash = match hasher.lock() {
            Ok(h) => hex::encode(h.clone().finalize()),
            Err(_) => return Err(Error::Internal(anyhow::anyhow!("request hash poisoned"))),
        };
        Ok(Decoded {
            request,
            columns,
            request_hash,
        })
    }
}

fn split(
    r: std::result::Result<(BatchRequest, ColumnMap), RowsError>,
    failure: impl Fn(io::Error) -> Error,
) -> Result<(BatchRequest, Option<ColumnMap>)> {
    match r {
        Ok((req, map)) => Ok((req, Some(map))),
        Err(RowsError::Io(e)) => Err(failure(e)),
        Err(RowsError::Invalid(errors)) => Err(Error::Validation(errors)),
        Err(RowsError::Malformed(m)) => Err(Error::BadRequest(m)),
    }
}
