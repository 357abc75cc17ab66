//! `infoaudit gate` and `infoaudit submit`: HTTP clients for CI/CD pipelines.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::Value;

#[derive(Debug, Clone, Args)]
pub struct GateArgs {
    /// Base URL of the service, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "INFOAUDIT_URL")]
    pub url: String,
    #[arg(long)]
    pub model: String,
    #[arg(long)]
    pub version: String,
    /// Name of the stored gate policy.
    #[arg(long)]
    pub gate: String,
    /// Seconds to wait for the version's unfinished jobs (0–600).
    #[arg(long, default_value_t = 0.0)]
    pub wait: f64,
    /// Unit of values and thresholds: bits or nats.
    #[arg(long, default_value = "bits")]
    pub unit: String,
    /// API key (Bearer), when the service requires one.
    #[arg(long, env = "INFOAUDIT_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct SubmitArgs {
    #[arg(long, env = "INFOAUDIT_URL")]
    pub url: String,
    #[arg(long)]
    pub model: String,
    #[arg(long)]
    pub version: String,
    /// The batch: .json (columnar), .ndjson, .csv or .arrows (an Arrow IPC stream).
    pub file: PathBuf,
    /// Wait for every job of the batch to finish and print the results.
    #[arg(long)]
    pub wait: bool,
    /// Seconds to wait with --wait.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Idempotency-Key for safe retries (default: none).
    #[arg(long)]
    pub idempotency_key: Option<String>,
    #[arg(long, env = "INFOAUDIT_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(900))
        .build()
        .expect("HTTP client builds")
}

fn auth(req: reqwest::RequestBuilder, key: &Option<String>) -> reqwest::RequestBuilder {
    match key {
        Some(k) => req.bearer_auth(k),
        None => req,
    }
}

async fn json_or_problem(resp: reqwest::Response) -> Result<Value, String> {
    let status = resp.status();
    let body: Value = resp
        .json()
        .await
        .map_err(|e| format!("unreadable response ({status}): {e}"))?;
    if status.is_success() {
        Ok(body)
    } else {
        let detail = body["detail"].as_str().unwrap_or("");
        let mut msg = format!(
            "{status}: {} {detail}",
            body["title"].as_str().unwrap_or("")
        );
        for e in body["errors"].as_array().into_iter().flatten() {
            msg.push_str(&format!(
                "\n  {}: {}",
                e["pointer"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or("")
            ));
        }
        Err(msg)
    }
}

fn fmt_num(v: &Value) -> String {
    match v.as_f64() {
        Some(x) => format!("{x:.4}"),
        None => "—".into(),
    }
}

/// Render a decision as a per-rule table.
pub fn render_decision(d: &Value) -> String {
    let mut out = format!(
        "gate {} for {} {}: {}\n",
        d["policy"]["name"].as_str().unwrap_or("(inline)"),
        d["model"].as_str().unwrap_or(""),
        d["version"].as_str().unwrap_or(""),
        d["verdict"].as_str().unwrap_or("?").to_uppercase()
    );
    out.push_str(&format!(
        "{:<28} {:<13} {:>10} {:>21} {:>10} {:>10} {:>32}  {}\n",
        "metric", "verdict", "value", "interval", "bound", "baseline", "difference", "message"
    ));
    for r in d["rules"].as_array().into_iter().flatten() {
        let interval = match (r["ci_low"].as_f64(), r["ci_high"].as_f64()) {
            (Some(a), Some(b)) => format!("[{a:.4}, {b:.4}]"),
            _ => "—".into(),
        };
        let d = &r["delta"];
        let difference = match (
            d["value"].as_f64(),
            d["ci_low"].as_f64(),
            d["ci_high"].as_f64(),
        ) {
            (Some(v), Some(a), Some(b)) => format!(
                "{v:+.4} [{a:+.4}, {b:+.4}] {}",
                d["method"].as_str().unwrap_or("")
            ),
            (Some(v), _, _) => format!("{v:+.4} {}", d["method"].as_str().unwrap_or("")),
            _ => "—".into(),
        };
        out.push_str(&format!(
            "{:<28} {:<13} {:>10} {:>21} {:>10} {:>10} {:>32}  {}\n",
            r["metric"].as_str().unwrap_or(""),
            r["verdict"].as_str().unwrap_or(""),
            fmt_num(&r["value"]),
            interval,
            fmt_num(&r["threshold"]),
            fmt_num(&r["baseline_value"]),
            difference,
            r["message"].as_str().unwrap_or("")
        ));
    }
    out.push_str(&format!(
        "unit: {}; decision {}\n",
        d["unit"].as_str().unwrap_or(""),
        d["id"].as_str().unwrap_or("")
    ));
    out
}

/// A path segment percent-encoded (everything but `A-Za-z0-9-._~`), so a name with `/`, `?` or
/// `#` reaches the service as one segment and is refused there by name, as the Python client
/// sends it.
fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A file's extension, lower-cased ("" when it has none).
fn extension(path: &std::path::Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// Exit code of a verdict: 0 pass/warn, 1 fail, 2 inconclusive/pending.
pub fn exit_code(verdict: &str) -> u8 {
    match verdict {
        "pass" | "warn" => 0,
        "fail" => 1,
        "inconclusive" | "pending" => 2,
        _ => 3,
    }
}

pub async fn gate(a: GateArgs) -> ExitCode {
    let url = format!(
        "{}/v1/models/{}/versions/{}/gate?unit={}",
        a.url.trim_end_matches('/'),
        seg(&a.model),
        seg(&a.version),
        a.unit
    );
    let body = serde_json::json!({"gate": a.gate, "wait_seconds": a.wait});
    let resp = match auth(client().post(&url), &a.api_key)
        .json(&body)
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot reach {url}: {e}");
            return ExitCode::from(3);
        }
    };
    match json_or_problem(resp).await {
        Ok(d) => {
            print!("{}", render_decision(&d));
            ExitCode::from(exit_code(d["verdict"].as_str().unwrap_or("")))
        }
        Err(m) => {
            eprintln!("error: {m}");
            ExitCode::from(3)
        }
    }
}

pub async fn submit(a: SubmitArgs) -> ExitCode {
    let body = match std::fs::read(&a.file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", a.file.display());
            return ExitCode::from(3);
        }
    };
    let ext = extension(&a.file);
    let content_type = match ext.as_str() {
        "ndjson" | "jsonl" => "application/x-ndjson",
        "csv" => "text/csv",
        "arrows" | "arrow" => crate::api::ingest::ARROW_STREAM,
        _ => "application/json",
    };
    let base = a.url.trim_end_matches('/').to_string();
    let url = format!(
        "{base}/v1/models/{}/versions/{}/batches",
        seg(&a.model),
        seg(&a.version)
    );
    let mut req = auth(client().post(&url), &a.api_key)
        .header("content-type", content_type)
        .body(body);
    if let Some(k) = &a.idempotency_key {
        req = req.header("idempotency-key", k);
    }
    let accepted = match req.send().await {
        Ok(r) => match json_or_problem(r).await {
            Ok(v) => v,
            Err(m) => {
                eprintln!("error: {m}");
                return ExitCode::from(3);
            }
        },
        Err(e) => {
            eprintln!("error: cannot reach {url}: {e}");
            return ExitCode::from(3);
        }
    };
    let id = accepted["batch"]["id"].as_str().unwrap_or("").to_string();
    println!("{id}");
    if !a.wait {
        return ExitCode::SUCCESS;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(a.timeout);
    loop {
        let detail = match auth(
            client().get(format!("{base}/v1/batches/{}", seg(&id))),
            &a.api_key,
        )
        .send()
        .await
        {
            Ok(r) => json_or_problem(r).await,
            Err(e) => Err(e.to_string()),
        };
        let detail = match detail {
            Ok(d) => d,
            Err(m) => {
                eprintln!("error: {m}");
                return ExitCode::from(3);
            }
        };
        let jobs = detail["jobs"].as_array().cloned().unwrap_or_default();
        let done = jobs.iter().all(|j| {
            matches!(
                j["state"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            )
        });
        if done {
            let mut failed = false;
            for j in &jobs {
                let r = detail["results"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|r| r["job_id"] == j["id"]);
                match r {
                    Some(r) => println!(
                        "{:<14} {:>10} {} [{} , {}]",
                        j["estimator"].as_str().unwrap_or(""),
                        r["value"]
                            .as_f64()
                            .map(|v| format!("{v:.6}"))
                            .unwrap_or_else(|| r["value_special"]
                                .as_str()
                                .unwrap_or("—")
                                .to_string()),
                        r["unit"].as_str().unwrap_or(""),
                        fmt_num(&r["ci_low"]),
                        fmt_num(&r["ci_high"])
                    ),
                    None => {
                        failed = true;
                        println!(
                            "{:<14} {} {}",
                            j["estimator"].as_str().unwrap_or(""),
                            j["state"].as_str().unwrap_or(""),
                            j["error"]["detail"].as_str().unwrap_or("")
                        )
                    }
                }
            }
            return if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
        if std::time::Instant::now() > deadline {
            eprintln!("error: jobs still unfinished after {} s", a.timeout);
            return ExitCode::from(2);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `infoaudit estimate`: the estimators on a file, with no server and no database.
#[derive(Debug, Clone, Args)]
pub struct EstimateArgs {
    /// The samples: .json (the upload's columnar body), .ndjson/.jsonl, .csv, .arrows/.arrow (an
    /// Arrow IPC stream) or .parquet. A CSV whose header is only `X0…`, `Y0…` columns (the "Beyond
    /// Normal" benchmark's sample files) is read as the pairs `x_0…`, `y_0…`. `-` reads standard
    /// input (with --format).
    pub file: PathBuf,
    /// The file's format when its extension does not say: json, ndjson, csv, arrow, parquet.
    #[arg(long)]
    pub format: Option<String>,
    /// multiclass, multilabel, pairs or regression (default: from the columns).
    #[arg(long)]
    pub task: Option<String>,
    /// Comma-separated class (or label) names.
    #[arg(long)]
    pub classes: Option<String>,
    /// An estimator to run (repeat, or comma-separate); default: every applicable default one,
    /// as for an upload.
    #[arg(long = "estimator", value_delimiter = ',')]
    pub estimators: Vec<String>,
    /// A parameter, `KEY=VALUE` for every named estimator or `ESTIMATOR.KEY=VALUE` for one; the
    /// value is read as JSON when it parses (`k=5`, `hidden=[64,64]`), else as a string.
    #[arg(long = "param")]
    pub params: Vec<String>,
    /// Unit of the information values: bits or nats.
    #[arg(long, default_value = "bits")]
    pub unit: String,
    /// `json` (a document with every result) or `value` (each estimator's value alone on a line,
    /// for tools that read one number from standard output).
    #[arg(long, default_value = "json")]
    pub output: String,
    /// Accept probability rows that sum to 1 within 0.1 and divide each by its sum.
    #[arg(long)]
    pub normalize: bool,
    /// Cap on distinct values per segment key (1–10000; default 50).
    #[arg(long)]
    pub max_segment_values: Option<u32>,
    /// The most memory one estimator may need, MiB: an estimator whose predicted need is larger
    /// is refused (named) or, when none was named, left out with the reason under `skipped`.
    #[arg(long, default_value_t = 1024)]
    pub memory_mib: u64,
}

/// The estimators named on the command line, with their parameters.
fn requested_estimators(
    names: &[String],
    params: &[String],
) -> Result<Option<Vec<crate::domain::batch::EstimatorRef>>, String> {
    use crate::domain::batch::EstimatorRef;
    let names: Vec<&str> = names
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect();
    if names.is_empty() {
        return match params.first() {
            Some(p) => Err(format!("--param {p} needs an --estimator to apply to")),
            None => Ok(None),
        };
    }
    let mut per: Vec<serde_json::Map<String, Value>> = vec![serde_json::Map::new(); names.len()];
    for p in params {
        let Some((key, raw)) = p.split_once('=') else {
            return Err(format!("--param {p:?} is not KEY=VALUE"));
        };
        let value = serde_json::from_str::<Value>(raw).unwrap_or_else(|_| Value::from(raw));
        let (only, key) = match key.split_once('.') {
            Some((est, k)) => {
                if !names.contains(&est) {
                    return Err(format!(
                        "--param {p:?} names estimator {est:?}, which is not among --estimator"
                    ));
                }
                (Some(est), k)
            }
            None => (None, key),
        };
        if key.is_empty() {
            return Err(format!("--param {p:?} has no key"));
        }
        for (i, n) in names.iter().enumerate() {
            if only.is_none_or(|o| o == *n) {
                per[i].insert(key.to_string(), value.clone());
            }
        }
    }
    Ok(Some(
        names
            .iter()
            .zip(per)
            .map(|(id, p)| {
                if p.is_empty() {
                    EstimatorRef::Id(id.to_string())
                } else {
                    EstimatorRef::WithParams {
                        id: id.to_string(),
                        params: Value::Object(p),
                    }
                }
            })
            .collect(),
    ))
}

/// A CSV header of only `X<i>`/`Y<i>` names (the benchmark's sample files) rewritten to the
/// upload's `x_<i>`/`y_<i>`; any other header is left as it is.
fn benchmark_header(body: &mut Vec<u8>) {
    let mut end = body.iter().position(|&b| b == b'\n').unwrap_or(body.len());
    if end > 0 && body[end - 1] == b'\r' {
        end -= 1;
    }
    let Ok(line) = std::str::from_utf8(&body[..end]) else {
        return;
    };
    let names: Vec<&str> = line
        .split(',')
        .map(|n| n.trim().trim_matches('"'))
        .collect();
    let renamed: Option<Vec<String>> = names
        .iter()
        .map(|n| {
            let (axis, digits) = n.split_at(n.len().min(1));
            let ok = matches!(axis, "X" | "Y")
                && !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit());
            ok.then(|| format!("{}_{digits}", axis.to_ascii_lowercase()))
        })
        .collect();
    if let Some(renamed) = renamed.filter(|r| !r.is_empty()) {
        body.splice(..end, renamed.join(",").into_bytes());
    }
}

fn field_errors(errors: &[crate::error::FieldError]) -> String {
    errors
        .iter()
        .map(|e| {
            let mut at = Vec::new();
            if let Some(p) = &e.pointer {
                at.push(p.clone());
            }
            if let Some(r) = e.row {
                at.push(format!("row {r}"));
            }
            if let Some(c) = &e.column {
                at.push(format!("column {c}"));
            }
            if at.is_empty() {
                format!("  {}", e.message)
            } else {
                format!("  {}: {}", at.join(", "), e.message)
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Read and decode the file into an upload request (and the map from its fields to rows and
/// columns where it is row-oriented).
fn read_request(
    a: &EstimateArgs,
) -> Result<
    (
        crate::domain::batch::BatchRequest,
        Option<crate::domain::rows::ColumnMap>,
        &'static str,
    ),
    String,
> {
    use crate::api::ingest::{Coding, Format, Upload};
    use crate::domain::batch::Task;
    use crate::domain::rows::{RowOptions, RowsError};
    let ext = extension(&a.file);
    let name = a.format.clone().unwrap_or(ext).to_ascii_lowercase();
    let (format, label) = match name.as_str() {
        "json" => (Some(Format::Json), "json"),
        "ndjson" | "jsonl" => (Some(Format::Ndjson), "ndjson"),
        "csv" => (Some(Format::Csv), "csv"),
        "arrows" | "arrow" => (Some(Format::Arrow), "arrow"),
        "parquet" | "pq" => (None, "parquet"),
        other => {
            return Err(format!(
                "cannot tell the format of {} from {other:?}; give --format json, ndjson, csv, arrow or parquet",
                a.file.display()
            ))
        }
    };
    let task = match a.task.as_deref() {
        None => None,
        Some(t) => Some(Task::parse(t).ok_or_else(|| {
            format!("--task {t:?} is not one of multiclass, multilabel, pairs, regression")
        })?),
    };
    let classes = a.classes.as_deref().map(|c| {
        c.split(',')
            .map(|s| s.trim().to_string())
            .collect::<Vec<_>>()
    });
    let mut body = if a.file.as_os_str() == "-" {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut b)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        b
    } else {
        std::fs::read(&a.file).map_err(|e| format!("cannot read {}: {e}", a.file.display()))?
    };
    let mut options = RowOptions {
        task,
        classes: classes.clone(),
        max_segment_values: a.max_segment_values,
        normalize: a.normalize.then_some(true),
        ..RowOptions::default()
    };
    let (mut request, columns) = match format {
        None => match crate::domain::arrow::decode_parquet(bytes::Bytes::from(body), options) {
            Ok((r, map)) => (r, Some(map)),
            Err(RowsError::Invalid(e)) => {
                return Err(format!(
                    "{} is not a batch:\n{}",
                    a.file.display(),
                    field_errors(&e)
                ))
            }
            Err(RowsError::Malformed(m)) => return Err(format!("{}: {m}", a.file.display())),
            Err(RowsError::Io(e)) => return Err(format!("cannot read {}: {e}", a.file.display())),
        },
        Some(format) => {
            if format == Format::Csv {
                benchmark_header(&mut body);
            }
            if format == Format::Json {
                // A JSON body carries its options as fields: the flags are applied below.
                options = RowOptions::default();
            }
            let upload = Upload {
                format,
                coding: Coding::Identity,
                limit: u64::MAX,
                declared_length: Some(body.len() as u64),
                options,
                path: a.file.display().to_string(),
            };
            match upload.decode(body.as_slice()) {
                Ok(d) => (d.request, d.columns),
                Err(crate::error::Error::Validation(e)) => {
                    return Err(format!(
                        "{} is not a batch:\n{}",
                        a.file.display(),
                        field_errors(&e)
                    ))
                }
                Err(e) => return Err(format!("{}: {e}", a.file.display())),
            }
        }
    };
    if format == Some(Format::Json) {
        if task.is_some() {
            request.task = task;
        }
        if classes.is_some() {
            request.classes = classes;
        }
        if a.max_segment_values.is_some() {
            request.max_segment_values = a.max_segment_values;
        }
        if a.normalize {
            request.normalize = Some(true);
        }
    }
    Ok((request, columns, label))
}

pub fn estimate(a: EstimateArgs) -> ExitCode {
    use crate::api::views::{convert_details, finite, special};
    use crate::domain::unit::Unit;
    let unit = match a.unit.as_str() {
        "bits" => Unit::Bits,
        "nats" => Unit::Nats,
        other => {
            eprintln!("error: --unit {other:?} is not bits or nats");
            return ExitCode::from(3);
        }
    };
    let values_only = match a.output.as_str() {
        "json" => false,
        "value" => true,
        other => {
            eprintln!("error: --output {other:?} is not json or value");
            return ExitCode::from(3);
        }
    };
    let requested = match requested_estimators(&a.estimators, &a.params) {
        Ok(r) => r,
        Err(m) => {
            eprintln!("error: {m}");
            return ExitCode::from(3);
        }
    };
    let (request, columns, format) = match read_request(&a) {
        Ok(r) => r,
        Err(m) => {
            eprintln!("error: {m}");
            return ExitCode::from(3);
        }
    };
    let limits = crate::estimate::cost::Limits {
        memory_bytes: a.memory_mib.saturating_mul(1 << 20),
        ..Default::default()
    };
    let plan = match crate::compute::offline::plan(request, columns.as_ref(), requested, &limits) {
        Ok(p) => p,
        Err(e) => {
            eprintln!(
                "error: {} is not a batch this can estimate:\n{}",
                a.file.display(),
                field_errors(&e)
            );
            return ExitCode::from(3);
        }
    };
    let f = unit.factor();
    let scale = |x: Option<f64>| x.and_then(|x| finite(x * f));
    let mut failed = false;
    let mut results = Vec::new();
    let mut values = Vec::new();
    for spec in &plan.specs {
        let run =
            crate::compute::offline::run(&plan.batch, spec, &crate::estimate::Control::none());
        let mut r = serde_json::json!({
            "estimator": run.spec.estimator,
            "estimator_version": run.spec.estimator_version,
            "params": run.spec.params,
            "seconds": run.seconds,
        });
        match run.outcome {
            Ok((out, segments)) => {
                values.push(match finite(out.value * f) {
                    Some(v) => format!("{v}"),
                    None => special(out.value).unwrap_or_default(),
                });
                let (low, high, level, method) = match &out.interval {
                    Some(i) => (
                        Some(i.low),
                        Some(i.high),
                        Some(i.level),
                        Some(i.method.clone()),
                    ),
                    None => (None, None, None, None),
                };
                let extra = serde_json::json!({
                    "value": finite(out.value * f),
                    "value_special": special(out.value),
                    "unit": unit,
                    "ci_low": scale(low),
                    "ci_high": scale(high),
                    "ci_level": level,
                    "ci_method": method,
                    "n": out.n,
                    "details": convert_details(&out.details, f),
                    "diagnostics": out.diagnostics,
                    "segments": (!segments.summary.is_empty()).then(|| {
                        crate::estimate::segmented::shown_segments(
                            crate::estimate::segmented::scale_segments(&segments.summary, f),
                        )
                    }),
                });
                if let (Some(o), Value::Object(e)) = (r.as_object_mut(), extra) {
                    o.extend(e);
                }
            }
            Err(e) => {
                failed = true;
                let message = match e {
                    crate::estimate::EstimateError::Invalid(m) => m,
                    other => other.to_string(),
                };
                if values_only {
                    eprintln!("error: {}: {message}", run.spec.estimator);
                }
                r["error"] = Value::from(message);
            }
        }
        results.push(r);
    }
    if values_only {
        for v in values {
            println!("{v}");
        }
    } else {
        let doc = serde_json::json!({
            "file": a.file.display().to_string(),
            "format": format,
            "task": plan.batch.task.as_str(),
            "n": plan.batch.n,
            "unit": unit,
            "results": results,
            "skipped": plan.skipped,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).unwrap_or_else(|_| doc.to_string())
        );
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn path_segments_are_percent_encoded_like_the_python_client() {
        // urllib.parse.quote(s, safe="") gives these for the same strings.
        assert_eq!(super::seg("fraud-v1.2_x~"), "fraud-v1.2_x~");
        assert_eq!(super::seg("a/b?c#d e"), "a%2Fb%3Fc%23d%20e");
        assert_eq!(super::seg("é"), "%C3%A9");
    }

    #[test]
    fn benchmark_headers_become_pairs_and_others_stay() {
        let mut b = b"X0,X1,Y0\r\n1,2,3\n".to_vec();
        super::benchmark_header(&mut b);
        assert_eq!(b, b"x_0,x_1,y_0\r\n1,2,3\n".to_vec());
        for keep in [&b"label,X0\n0,1\n"[..], b"X,Y0\n1,2\n", b"Xa,Y0\n"] {
            let mut k = keep.to_vec();
            super::benchmark_header(&mut k);
            assert_eq!(k, keep);
        }
    }
}
