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
        a.model,
        a.version,
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
    let ext = a
        .file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let content_type = match ext.as_str() {
        "ndjson" | "jsonl" => "application/x-ndjson",
        "csv" => "text/csv",
        "arrows" | "arrow" => crate::api::ingest::ARROW_STREAM,
        _ => "application/json",
    };
    let base = a.url.trim_end_matches('/').to_string();
    let url = format!(
        "{base}/v1/models/{}/versions/{}/batches",
        a.model, a.version
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
        let detail = match auth(client().get(format!("{base}/v1/batches/{id}")), &a.api_key)
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
