//! Prometheus metrics, kept in-process (one registry per process) and rendered as text.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{LazyLock, Mutex};

const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const JOB_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, buckets: &[f64], v: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; buckets.len()];
        }
        for (i, b) in buckets.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }
}

#[derive(Default)]
struct Registry {
    http_requests: BTreeMap<(String, String, u16), u64>,
    http_latency: BTreeMap<String, Histogram>,
    job_duration: BTreeMap<(String, String), Histogram>,
    leases_lost: u64,
    jobs_reaped: u64,
    gate_verdicts: BTreeMap<String, u64>,
    database_restarts: u64,
    database_restart_failures: u64,
    database_unavailable_answers: u64,
    worker_process_restarts: u64,
    uploads_shed: BTreeMap<String, u64>,
    rate_limited: u64,
    jobs_over_budget: u64,
    purged_batches: u64,
    purged_results: u64,
    monitor_evaluations: BTreeMap<String, u64>,
    webhook_attempts: BTreeMap<String, u64>,
    webhook_attempt_seconds: Histogram,
    webhook_delivery_seconds: Histogram,
    /// Worker metrics text sent by this process's worker child (`--role all`).
    child_worker_text: Option<String>,
    settings: BTreeMap<&'static str, f64>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Default::default);

fn with<R>(f: impl FnOnce(&mut Registry) -> R) -> R {
    let mut g = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    f(&mut g)
}

pub fn http_request(method: &str, route: &str, status: u16, seconds: f64) {
    with(|r| {
        *r.http_requests
            .entry((method.to_string(), route.to_string(), status))
            .or_default() += 1;
        r.http_latency
            .entry(route.to_string())
            .or_default()
            .observe(LATENCY_BUCKETS, seconds);
    });
}

pub fn job_finished(estimator: &str, outcome: &str, seconds: f64) {
    with(|r| {
        r.job_duration
            .entry((estimator.to_string(), outcome.to_string()))
            .or_default()
            .observe(JOB_BUCKETS, seconds)
    });
}

pub fn lease_lost() {
    with(|r| r.leases_lost += 1);
}

pub fn jobs_reaped(n: u64) {
    with(|r| r.jobs_reaped += n);
}

pub fn gate_verdict(verdict: &str) {
    with(|r| *r.gate_verdicts.entry(verdict.to_string()).or_default() += 1);
}

/// The embedded PostgreSQL was restarted after it died.
pub fn database_restarted() {
    with(|r| r.database_restarts += 1);
}

/// An attempt to restart the embedded PostgreSQL failed (it is retried).
pub fn database_restart_failed() {
    with(|r| r.database_restart_failures += 1);
}

/// A request was answered 503 because the database could not be reached.
pub fn database_unavailable_answer() {
    with(|r| r.database_unavailable_answers += 1);
}

/// The worker child process (`--role all`) died and was started again.
pub fn worker_process_restarted() {
    with(|r| r.worker_process_restarts += 1);
}

/// An upload was refused (503) because the queue is over its ceiling.
pub fn upload_shed(reason: &str) {
    with(|r| *r.uploads_shed.entry(reason.to_string()).or_default() += 1);
}

/// A request was refused (429) by a key's rate limit.
pub fn rate_limited() {
    with(|r| r.rate_limited += 1);
}

/// A job was refused by the worker because its estimated cost is over the budget.
pub fn job_over_budget() {
    with(|r| r.jobs_over_budget += 1);
}

/// Retention purged the raw data of `batches` batches and deleted `results` results.
pub fn purged(batches: u64, results: u64) {
    with(|r| {
        r.purged_batches += batches;
        r.purged_results += results;
    });
}

/// A configured limit, shown as a gauge (`infoaudit_limit{name=…}`).
pub fn monitor_evaluated(verdict: &str) {
    with(|r| {
        *r.monitor_evaluations
            .entry(verdict.to_string())
            .or_default() += 1
    });
}

/// One webhook attempt: its outcome (`delivered`, `retry`, `dead`, `lease_lost`), how long the
/// HTTP exchange took, and for a delivered message the time since it was written to the outbox.
pub fn webhook_attempt(outcome: &str, seconds: f64, delivered_after: Option<f64>) {
    with(|r| {
        *r.webhook_attempts.entry(outcome.to_string()).or_default() += 1;
        r.webhook_attempt_seconds.observe(LATENCY_BUCKETS, seconds);
        if let Some(s) = delivered_after {
            r.webhook_delivery_seconds.observe(DELIVERY_BUCKETS, s);
        }
    });
}

const DELIVERY_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 600.0, 3600.0, 86400.0,
];

pub fn set_setting(name: &'static str, value: f64) {
    with(|r| {
        r.settings.insert(name, value);
    });
}

/// The worker child's metrics text, shown by this process's `/metrics` in place of its own
/// (empty) worker section.
pub fn set_child_worker_text(text: String) {
    with(|r| r.child_worker_text = Some(text));
}

/// The worker section of this process's metrics: job durations, leases lost, jobs reaped, jobs
/// over budget, retention purges (what a worker child sends to its parent).
pub fn render_worker_section() -> String {
    let mut out = String::new();
    with(|r| worker_section(&mut out, r));
    out
}

fn worker_section(out: &mut String, r: &Registry) {
    out.push_str("# HELP infoaudit_job_duration_seconds Estimator job run time by estimator and outcome (this process's workers).\n# TYPE infoaudit_job_duration_seconds histogram\n");
    for ((e, o), h) in &r.job_duration {
        histogram(
            out,
            "infoaudit_job_duration_seconds",
            &format!("estimator=\"{}\",outcome=\"{}\"", label(e), label(o)),
            JOB_BUCKETS,
            h,
        );
    }
    let _ = writeln!(out, "# HELP infoaudit_lease_renewals_lost_total Heartbeats that found the job's lease taken back.\n# TYPE infoaudit_lease_renewals_lost_total counter\ninfoaudit_lease_renewals_lost_total {}", r.leases_lost);
    let _ = writeln!(out, "# HELP infoaudit_jobs_reaped_total Jobs taken back from workers whose lease expired.\n# TYPE infoaudit_jobs_reaped_total counter\ninfoaudit_jobs_reaped_total {}", r.jobs_reaped);
    let _ = writeln!(out, "# HELP infoaudit_jobs_over_budget_total Jobs a worker refused because their estimated memory is over the per-job budget.\n# TYPE infoaudit_jobs_over_budget_total counter\ninfoaudit_jobs_over_budget_total {}", r.jobs_over_budget);
    let _ = writeln!(out, "# HELP infoaudit_retention_purged_batches_total Batches whose raw data retention purged.\n# TYPE infoaudit_retention_purged_batches_total counter\ninfoaudit_retention_purged_batches_total {}", r.purged_batches);
    let _ = writeln!(out, "# HELP infoaudit_retention_purged_results_total Results retention deleted.\n# TYPE infoaudit_retention_purged_results_total counter\ninfoaudit_retention_purged_results_total {}", r.purged_results);
    out.push_str("# HELP infoaudit_monitor_evaluations_total Monitor evaluations by verdict.\n# TYPE infoaudit_monitor_evaluations_total counter\n");
    for (v, n) in &r.monitor_evaluations {
        let _ = writeln!(
            out,
            "infoaudit_monitor_evaluations_total{{verdict=\"{}\"}} {n}",
            label(v)
        );
    }
    out.push_str("# HELP infoaudit_webhook_attempts_total Webhook delivery attempts by outcome (delivered, retry, dead, lease_lost).\n# TYPE infoaudit_webhook_attempts_total counter\n");
    for o in ["delivered", "retry", "dead", "lease_lost"] {
        let n = r.webhook_attempts.get(o).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "infoaudit_webhook_attempts_total{{outcome=\"{o}\"}} {n}"
        );
    }
    out.push_str("# HELP infoaudit_webhook_attempt_duration_seconds One webhook HTTP attempt.\n# TYPE infoaudit_webhook_attempt_duration_seconds histogram\n");
    histogram(
        out,
        "infoaudit_webhook_attempt_duration_seconds",
        "",
        LATENCY_BUCKETS,
        &r.webhook_attempt_seconds,
    );
    out.push_str("# HELP infoaudit_webhook_delivery_seconds From a message's outbox write (the decision commit) to the receiver's 2xx.\n# TYPE infoaudit_webhook_delivery_seconds histogram\n");
    histogram(
        out,
        "infoaudit_webhook_delivery_seconds",
        "",
        DELIVERY_BUCKETS,
        &r.webhook_delivery_seconds,
    );
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn histogram(out: &mut String, name: &str, labels: &str, buckets: &[f64], h: &Histogram) {
    let sep = if labels.is_empty() { "" } else { "," };
    for (i, b) in buckets.iter().enumerate() {
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {}",
            h.counts.get(i).copied().unwrap_or(0)
        );
    }
    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
}

/// Queue figures read from the database at scrape time.
pub struct QueueSnapshot {
    pub by_state: Vec<(String, i64)>,
    pub oldest_queued_seconds: f64,
    /// Firing monitor incidents (whole database).
    pub open_incidents: i64,
}

/// The text exposition. `queue` and `information` are `None` when the database could not be read
/// at this scrape: their gauges are then left out (the process's own metrics still render) and
/// `infoaudit_information_export_up` is 0.
pub fn render(queue: Option<&QueueSnapshot>, information: Option<&InformationSnapshot>) -> String {
    let mut out = String::new();
    with(|r| {
        out.push_str("# HELP infoaudit_http_requests_total HTTP requests by method, route template and status.\n# TYPE infoaudit_http_requests_total counter\n");
        for ((m, route, s), n) in &r.http_requests {
            let _ = writeln!(
                out,
                "infoaudit_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{s}\"}} {n}",
                label(m),
                label(route)
            );
        }
        out.push_str("# HELP infoaudit_http_request_duration_seconds HTTP request latency by route template.\n# TYPE infoaudit_http_request_duration_seconds histogram\n");
        for (route, h) in &r.http_latency {
            histogram(
                &mut out,
                "infoaudit_http_request_duration_seconds",
                &format!("route=\"{}\"", label(route)),
                LATENCY_BUCKETS,
                h,
            );
        }
        match &r.child_worker_text {
            Some(text) => out.push_str(text),
            None => worker_section(&mut out, r),
        }
        let _ = writeln!(out, "# HELP infoaudit_database_restarts_total Times the embedded PostgreSQL was restarted after it died.\n# TYPE infoaudit_database_restarts_total counter\ninfoaudit_database_restarts_total {}", r.database_restarts);
        let _ = writeln!(out, "# HELP infoaudit_database_restart_failures_total Restart attempts of the embedded PostgreSQL that failed (retried).\n# TYPE infoaudit_database_restart_failures_total counter\ninfoaudit_database_restart_failures_total {}", r.database_restart_failures);
        let _ = writeln!(out, "# HELP infoaudit_database_unavailable_responses_total Requests answered 503 because the database could not be reached.\n# TYPE infoaudit_database_unavailable_responses_total counter\ninfoaudit_database_unavailable_responses_total {}", r.database_unavailable_answers);
        let _ = writeln!(out, "# HELP infoaudit_worker_process_restarts_total Times the worker child process (--role all) died and was started again.\n# TYPE infoaudit_worker_process_restarts_total counter\ninfoaudit_worker_process_restarts_total {}", r.worker_process_restarts);
        out.push_str("# HELP infoaudit_uploads_shed_total Uploads refused with 503 because the queue is over its ceiling, by reason.\n# TYPE infoaudit_uploads_shed_total counter\n");
        for reason in ["queued_jobs", "queue_age"] {
            let n = r.uploads_shed.get(reason).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "infoaudit_uploads_shed_total{{reason=\"{reason}\"}} {n}"
            );
        }
        let _ = writeln!(out, "# HELP infoaudit_rate_limited_total Requests refused with 429 by a key's rate limit.\n# TYPE infoaudit_rate_limited_total counter\ninfoaudit_rate_limited_total {}", r.rate_limited);
        out.push_str("# HELP infoaudit_limit Configured limits (0: off): queue ceiling, rate limit, per-job memory budget, classes.\n# TYPE infoaudit_limit gauge\n");
        for (name, v) in &r.settings {
            let _ = writeln!(out, "infoaudit_limit{{name=\"{}\"}} {v}", label(name));
        }
        out.push_str("# HELP infoaudit_gate_verdicts_total Gate decisions by verdict.\n# TYPE infoaudit_gate_verdicts_total counter\n");
        for (v, n) in &r.gate_verdicts {
            let _ = writeln!(
                out,
                "infoaudit_gate_verdicts_total{{verdict=\"{}\"}} {n}",
                label(v)
            );
        }
    });
    if let Some(queue) = queue {
        queue_section(&mut out, queue);
    }
    information_section(&mut out, information);
    out
}

fn queue_section(out: &mut String, queue: &QueueSnapshot) {
    out.push_str(
        "# HELP infoaudit_jobs Jobs by state (whole queue).\n# TYPE infoaudit_jobs gauge\n",
    );
    for state in ["queued", "running", "succeeded", "failed", "cancelled"] {
        let n = queue
            .by_state
            .iter()
            .find(|(s, _)| s == state)
            .map(|x| x.1)
            .unwrap_or(0);
        let _ = writeln!(out, "infoaudit_jobs{{state=\"{state}\"}} {n}");
    }
    let _ = writeln!(out, "# HELP infoaudit_monitor_open_incidents Monitor incidents firing now.\n# TYPE infoaudit_monitor_open_incidents gauge\ninfoaudit_monitor_open_incidents {}", queue.open_incidents);
    let _ = writeln!(out, "# HELP infoaudit_oldest_queued_job_age_seconds Age of the oldest due queued job.\n# TYPE infoaudit_oldest_queued_job_age_seconds gauge\ninfoaudit_oldest_queued_job_age_seconds {}", queue.oldest_queued_seconds);
}

// ---------------------------------------------------------------------------------------------
// The information itself: the latest result of each metric a gate policy or a monitor uses.

/// One exported series (values in bits for amounts of information, else as stored).
#[derive(Debug, Clone, PartialEq)]
pub struct InformationSeries {
    pub model: String,
    pub version: String,
    pub metric: String,
    /// `bits` or `ratio` (a unitless statistic: a normalised MI, an efficiency, a count).
    pub unit: &'static str,
    pub value: f64,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// When the result was computed (unix seconds).
    pub at: f64,
}

/// What `/metrics` shows of the information: capped series, and alias markers of their versions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InformationSnapshot {
    pub series: Vec<InformationSeries>,
    /// (model, alias, version) of the aliases naming an exported version.
    pub aliases: Vec<(String, String, String)>,
    /// Series (information and alias) left out by the cap.
    pub dropped: usize,
    /// The cap.
    pub limit: usize,
    /// The series were left out because the scrape presented no key while keys are required.
    pub withheld: bool,
}

impl InformationSnapshot {
    /// The series and alias markers of `models` only.
    pub fn only(&self, models: &[String]) -> InformationSnapshot {
        InformationSnapshot {
            series: self
                .series
                .iter()
                .filter(|s| models.contains(&s.model))
                .cloned()
                .collect(),
            aliases: self
                .aliases
                .iter()
                .filter(|a| models.contains(&a.0))
                .cloned()
                .collect(),
            ..self.clone()
        }
    }

    /// Nothing of the information, and why.
    pub fn withheld(&self) -> InformationSnapshot {
        InformationSnapshot {
            limit: self.limit,
            withheld: true,
            ..Default::default()
        }
    }
}

/// A sample value as the text format writes it.
fn num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v:?}")
    }
}

fn information_section(out: &mut String, info: Option<&InformationSnapshot>) {
    let _ = writeln!(out, "# HELP infoaudit_information_export_up Whether the information series were read from the database at this scrape (0: they are left out).\n# TYPE infoaudit_information_export_up gauge\ninfoaudit_information_export_up {}", u8::from(info.is_some()));
    let Some(info) = info else {
        return;
    };
    let _ = writeln!(out, "# HELP infoaudit_information_withheld Whether the information series were left out because keys are required and this scrape presented none (or none with the read scope); see --metrics-public-information.\n# TYPE infoaudit_information_withheld gauge\ninfoaudit_information_withheld {}", u8::from(info.withheld));
    let labels = |s: &InformationSeries| {
        format!(
            "model=\"{}\",version=\"{}\",metric=\"{}\",unit=\"{}\"",
            label(&s.model),
            label(&s.version),
            label(&s.metric),
            s.unit
        )
    };
    out.push_str("# HELP infoaudit_information_value Latest result of each metric a gate policy or monitor uses, by model, version and metric (bits, or a unitless ratio: see unit).\n# TYPE infoaudit_information_value gauge\n");
    for s in &info.series {
        let _ = writeln!(
            out,
            "infoaudit_information_value{{{}}} {}",
            labels(s),
            num(s.value)
        );
    }
    out.push_str("# HELP infoaudit_information_ci_low Lower end of the latest result's confidence interval (series with an interval only).\n# TYPE infoaudit_information_ci_low gauge\n");
    for s in &info.series {
        if let Some(v) = s.ci_low {
            let _ = writeln!(
                out,
                "infoaudit_information_ci_low{{{}}} {}",
                labels(s),
                num(v)
            );
        }
    }
    out.push_str("# HELP infoaudit_information_ci_high Upper end of the latest result's confidence interval (series with an interval only).\n# TYPE infoaudit_information_ci_high gauge\n");
    for s in &info.series {
        if let Some(v) = s.ci_high {
            let _ = writeln!(
                out,
                "infoaudit_information_ci_high{{{}}} {}",
                labels(s),
                num(v)
            );
        }
    }
    out.push_str("# HELP infoaudit_information_result_timestamp_seconds When the latest result was computed (unix seconds).\n# TYPE infoaudit_information_result_timestamp_seconds gauge\n");
    for s in &info.series {
        let _ = writeln!(
            out,
            "infoaudit_information_result_timestamp_seconds{{{}}} {}",
            labels(s),
            num(s.at)
        );
    }
    out.push_str("# HELP infoaudit_model_alias_info The version each alias names, for the versions exported above (value 1).\n# TYPE infoaudit_model_alias_info gauge\n");
    for (model, alias, version) in &info.aliases {
        let _ = writeln!(
            out,
            "infoaudit_model_alias_info{{model=\"{}\",alias=\"{}\",version=\"{}\"}} 1",
            label(model),
            label(alias),
            label(version)
        );
    }
    let _ = writeln!(out, "# HELP infoaudit_information_series Information value series exported at this scrape.\n# TYPE infoaudit_information_series gauge\ninfoaudit_information_series {}", info.series.len());
    let _ = writeln!(out, "# HELP infoaudit_information_series_dropped Series (information values and alias markers) left out at this scrape by the cap (--metrics-max-information-series).\n# TYPE infoaudit_information_series_dropped gauge\ninfoaudit_information_series_dropped {}", info.dropped);
    let _ = writeln!(out, "# HELP infoaudit_information_series_limit The cap on information series (values and alias markers).\n# TYPE infoaudit_information_series_limit gauge\ninfoaudit_information_series_limit {}", info.limit);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_labels_escaped() {
        let mut h = Histogram::default();
        for v in [0.003, 0.02, 0.02, 7.0] {
            h.observe(LATENCY_BUCKETS, v);
        }
        let mut out = String::new();
        histogram(&mut out, "x", "route=\"/a\"", LATENCY_BUCKETS, &h);
        assert!(out.contains("x_bucket{route=\"/a\",le=\"0.005\"} 1"));
        assert!(out.contains("x_bucket{route=\"/a\",le=\"0.025\"} 3"));
        assert!(out.contains("x_bucket{route=\"/a\",le=\"10\"} 4"));
        assert!(out.contains("x_bucket{route=\"/a\",le=\"+Inf\"} 4"));
        assert!(out.contains("x_count{route=\"/a\"} 4"));
        assert_eq!(label("a\"b"), "a\\\"b");
    }
}
