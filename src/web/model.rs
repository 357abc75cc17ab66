//! The models page and a model's page.

use std::collections::HashMap;
use std::fmt::Write;

use axum::http::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use super::chart::{self, HistPoint, Marker};
use super::data::{self, Latest};
use super::html::{
    alias_badge, crumb, esc, int, interval, num, opt_time, page, pct, respond, time, verdict, E,
};
use super::{WebError, WebResult};
use crate::api::state::AppState;
use crate::domain::estimators::is_information;
use crate::domain::metric::MetricRef;

const BITS: f64 = 1.0 / std::f64::consts::LN_2;

/// Time buckets of the history chart (points are per bucket and version).
const HISTORY_BUCKETS: i32 = 240;

/// The headline metrics, in table order: (estimator, column title).
const HEADLINE: [(&str, &str); 5] = [
    ("shannon_mi", "Shannon MI"),
    ("semantic_mi", "Semantic MI"),
    ("ce_bound", "CE bound"),
    ("implied_mi", "Implied MI"),
    ("rg_curve", "R(G) at s = 1"),
];

/// A metric cell: value in bits with the interval under it.
fn metric_cell(l: Option<&Latest>, with_efficiency: bool) -> String {
    let Some(l) = l else {
        return "<td class=\"num muted\">—</td>".into();
    };
    let v = l.value;
    let shown = if v.is_finite() {
        num(v * BITS)
    } else if v < 0.0 {
        "−∞".into()
    } else {
        num(v)
    };
    let mut s = format!("<td class=\"num\"><span class=\"v\">{shown}</span>");
    let iv = interval(
        l.ci_low.filter(|x| x.is_finite()).map(|x| x * BITS),
        l.ci_high.filter(|x| x.is_finite()).map(|x| x * BITS),
    );
    if !iv.is_empty() {
        let _ = write!(s, "<span class=\"ci\">{iv}</span>");
    }
    if with_efficiency {
        if let Some(e) = l.efficiency {
            let _ = write!(s, "<span class=\"ci\">efficiency {:.1}%</span>", e * 100.0);
        }
    }
    s.push_str("</td>");
    s
}

/// Models on one page of the index (by name; the next page starts after the last name shown).
pub const INDEX_PAGE: i64 = 100;

pub async fn index(state: &AppState, only: Option<&[String]>, after: Option<&str>) -> WebResult {
    const LIMIT: i64 = INDEX_PAGE;
    let mut tx = data::snapshot(&state.pool).await?;
    let models = data::models(&mut tx, only, after, LIMIT + 1).await?;
    let more = models.len() as i64 > LIMIT;
    let models = &models[..models.len().min(LIMIT as usize)];
    let latest_ids: Vec<Uuid> = models.iter().filter_map(|m| m.latest_version_id).collect();
    let headline: Vec<String> = HEADLINE.iter().map(|(e, _)| e.to_string()).collect();
    let latest = data::latest_of(&mut tx, &latest_ids, &headline).await?;
    tx.commit().await?;
    let by: HashMap<(Uuid, &str), &Latest> = latest
        .iter()
        .map(|l| ((l.version_id, l.estimator.as_str()), l))
        .collect();

    let mut b = String::with_capacity(16 * 1024);
    b.push_str("<h1>Models</h1>");
    if models.is_empty() && after.is_some() {
        b.push_str("<p class=\"muted\">No more models. <a href=\"/\">First page</a></p>");
        return Ok(respond(
            StatusCode::OK,
            page("Models", &[crumb("models", None)], None, &b),
        ));
    }
    if models.is_empty() {
        b.push_str(
            "<section class=\"empty\"><p>No models yet. Upload a batch of predictions and labels:</p>\
             <pre class=\"json\">curl -X POST http://127.0.0.1:8080/v1/models/fraud/versions/v1/batches \\\n  \
             -H 'content-type: application/json' \\\n  \
             -d '{\"task\": \"multiclass\", \"labels\": [0, 1, 1, 0], \"predictions\": [0, 1, 0, 0]}'</pre>\
             <p>See the <a href=\"/docs\">API docs</a>.</p></section>",
        );
        return Ok(respond(
            StatusCode::OK,
            page("Models", &[crumb("models", None)], None, &b),
        ));
    }
    let _ = write!(
        b,
        "<p class=\"lead\">{} model{}{}. Metrics are the latest result of each model's newest version, in bits, with their intervals.</p>",
        models.len(),
        if models.len() == 1 { "" } else { "s" },
        if more || after.is_some() {
            " on this page"
        } else {
            ""
        }
    );
    b.push_str("<div class=\"table-wrap\"><table class=\"models\"><thead><tr><th>Model</th><th class=\"num\">Versions</th><th>Newest version</th>");
    for (_, title) in HEADLINE {
        let _ = write!(
            b,
            "<th class=\"num\">{title} <span class=\"unit\">(bits)</span></th>"
        );
    }
    b.push_str("<th>Last upload</th><th>Last gate verdict</th></tr></thead><tbody>");
    for m in models {
        let href = format!("/models/{}", m.name);
        let _ = write!(
            b,
            "<tr><td class=\"nowrap\"><a class=\"strong\" href=\"{}\">{}</a></td><td class=\"num\"><span class=\"v\">{}</span><span class=\"ci\">{} batch{}</span></td><td class=\"nowrap\">{}</td>",
            E(&href),
            E(&m.name),
            int(m.version_count),
            int(m.batch_count),
            if m.batch_count == 1 { "" } else { "es" },
            m.latest_version.as_deref().map(esc).unwrap_or_else(|| "—".into())
        );
        for (est, _) in HEADLINE {
            let l = m.latest_version_id.and_then(|v| by.get(&(v, est)).copied());
            b.push_str(&metric_cell(l, est == "semantic_mi"));
        }
        let _ = write!(b, "<td>{}</td><td>", opt_time(m.last_upload_at.as_ref()));
        match (&m.verdict, &m.verdict_version, &m.verdict_at) {
            (Some(v), Some(ver), Some(at)) => {
                let _ = write!(
                    b,
                    "<span class=\"nowrap\">{} {}</span><span class=\"ci\">{}</span>",
                    verdict(v),
                    E(ver),
                    time(at)
                );
            }
            _ => b.push_str("<span class=\"muted\">no decision</span>"),
        }
        b.push_str("</td></tr>");
    }
    b.push_str("</tbody></table></div>");
    if more {
        let _ = write!(
            b,
            "<p class=\"pager\"><a href=\"/?after={}\">Next {LIMIT} models →</a></p>",
            // Names are [A-Za-z0-9._-]: nothing to encode in a query string.
            E(&models[models.len() - 1].name)
        );
    }
    Ok(respond(
        StatusCode::OK,
        page("Models", &[crumb("models", None)], None, &b),
    ))
}

/// The metrics offered above the history chart: each estimator with results, and a few of its
/// statistics.
fn offered_metrics(estimators: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for e in estimators {
        out.push(e.clone());
        let extra: &[&str] = match e.as_str() {
            "shannon_mi" => &["nmi", "ami", "miller_madow"],
            "semantic_mi" => &["efficiency", "upper_bound"],
            "ce_bound" => &["cross_entropy"],
            "implied_mi" => &["calibration_gap", "realised_semantic_mi"],
            "rg_curve" => &["g_at_1"],
            _ => &[],
        };
        out.extend(extra.iter().map(|s| format!("{e}.{s}")));
    }
    out
}

pub async fn model(state: &AppState, name: &str, metric: Option<&str>) -> WebResult {
    let mut tx = data::snapshot(&state.pool).await?;
    let pool = &mut *tx;
    let Some((model_id, name)) = data::model(pool, name).await? else {
        return Err(WebError::NotFound(format!("There is no model {name}.")));
    };
    let mut versions = data::versions(pool, model_id, 1000).await?;
    versions.reverse(); // oldest first: colour i is the i-th version
    let index: HashMap<Uuid, usize> = versions
        .iter()
        .enumerate()
        .map(|(i, v)| (v.id, i))
        .collect();
    let ids: Vec<Uuid> = versions.iter().rev().take(200).map(|v| v.id).collect();
    let latest = data::latest(pool, &ids).await?;
    let by: HashMap<(Uuid, &str), &Latest> = latest
        .iter()
        .map(|l| ((l.version_id, l.estimator.as_str()), l))
        .collect();
    let estimators = data::estimators_with_results(pool, model_id).await?;
    let offered = offered_metrics(&estimators);

    // The chosen metric: the query's, else semantic MI, else the first with results.
    let mut notice = None;
    let chosen: Option<MetricRef> = match metric.filter(|m| !m.is_empty()) {
        Some(m) => match MetricRef::parse(m) {
            Ok(r) => Some(r),
            Err(e) => {
                notice = Some(e);
                None
            }
        },
        None => None,
    }
    .or_else(|| {
        ["semantic_mi", "shannon_mi"]
            .iter()
            .find(|e| estimators.iter().any(|x| x == *e))
            .map(|e| e.to_string())
            .or_else(|| estimators.first().cloned())
            .and_then(|e| MetricRef::parse(&e).ok())
    });

    let mut b = String::with_capacity(64 * 1024);
    let batches: i64 = versions.iter().map(|v| v.batch_count).sum();
    let last = versions.iter().filter_map(|v| v.last_upload).max();
    let _ = write!(
        b,
        "<h1>{}</h1><p class=\"lead\">{} version{} · {} batch{} · last upload {}</p>",
        E(&name),
        int(versions.len() as i64),
        if versions.len() == 1 { "" } else { "s" },
        int(batches),
        if batches == 1 { "" } else { "es" },
        opt_time(last.as_ref())
    );
    let aliases: Vec<(String, String)> = versions
        .iter()
        .flat_map(|v| v.aliases.iter().map(move |a| (a.clone(), v.name.clone())))
        .collect();
    if !aliases.is_empty() {
        b.push_str("<p class=\"aliases\">Aliases: ");
        for (a, v) in &aliases {
            let _ = write!(b, "{} → {} ", alias_badge(a), E(v));
        }
        b.push_str("</p>");
    }

    // History.
    b.push_str("<section><h2>History</h2>");
    if !offered.is_empty() {
        b.push_str("<nav class=\"tabs\" aria-label=\"metric\">");
        let current = chosen.as_ref().map(|m| m.to_string());
        for m in &offered {
            let href = format!("/models/{name}?metric={m}");
            if current.as_deref() == Some(m.as_str()) {
                let _ = write!(
                    b,
                    "<a class=\"on\" aria-current=\"page\" href=\"{}\">{}</a>",
                    E(&href),
                    E(m)
                );
            } else {
                let _ = write!(b, "<a href=\"{}\">{}</a>", E(&href), E(m));
            }
        }
        b.push_str("</nav>");
    }
    if let Some(n) = &notice {
        let _ = write!(b, "<p class=\"notice\">{}</p>", E(n));
    }
    match &chosen {
        None => b.push_str("<p class=\"muted\">No results yet: the chart appears when the first estimator job has finished.</p>"),
        Some(m) => {
            let groups = data::history(pool, model_id, m, HISTORY_BUCKETS).await?;
            let info = m.statistic.as_deref().is_none_or(is_information);
            let f = if info { BITS } else { 1.0 };
            let unit = if info { "bits" } else { "ratio" };
            let events = data::alias_events(pool, model_id, 60).await?;
            if groups.is_empty() {
                let _ = write!(
                    b,
                    "<p class=\"muted\">No results for {} yet.</p>",
                    E(&m.to_string())
                );
            } else {
                // Versions beyond the newest 1000 listed above still have their points drawn:
                // their names are read here, and they take the colours before the listed ones.
                let mut missing: Vec<Uuid> = groups
                    .iter()
                    .map(|g| g.version_id)
                    .filter(|v| !index.contains_key(v))
                    .collect();
                missing.sort();
                missing.dedup();
                let older = data::version_names(pool, &missing).await?;
                let names: Vec<String> = older
                    .iter()
                    .map(|(_, n)| n.clone())
                    .chain(versions.iter().map(|v| v.name.clone()))
                    .collect();
                let index: HashMap<Uuid, usize> = older
                    .iter()
                    .map(|(id, _)| *id)
                    .chain(versions.iter().map(|v| v.id))
                    .enumerate()
                    .map(|(i, v)| (v, i))
                    .collect();
                let mut present = vec![false; names.len()];
                let mut total = 0i64;
                let mut neg_inf = 0i64;
                let points: Vec<HistPoint> = groups
                    .iter()
                    .filter_map(|g| {
                        total += g.count;
                        neg_inf += g.neg_inf;
                        let vi = *index.get(&g.version_id)?;
                        present[vi] = true;
                        Some(HistPoint {
                            t: g.t_mean,
                            t_first: g.t_first,
                            t_last: g.t_last,
                            version: vi,
                            mean: g.mean.map(|x| x * f),
                            min: g.min.map(|x| x * f),
                            max: g.max.map(|x| x * f),
                            ci_low: g.ci_low.map(|x| x * f),
                            ci_high: g.ci_high.map(|x| x * f),
                            count: g.count,
                        })
                    })
                    .collect();
                let markers: Vec<Marker> = events
                    .iter()
                    .map(|e| Marker {
                        t: e.at.timestamp_micros() as f64 / 1e6,
                        label: match &e.version {
                            Some(v) => format!("{} → {v}", e.alias),
                            None => format!("{} removed", e.alias),
                        },
                    })
                    .collect();
                b.push_str("<figure class=\"chart-box\">");
                b.push_str(&chart::history(&points, &names, &markers, &m.to_string(), unit));
                let shown: Vec<String> = names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| if present[i] { n.clone() } else { String::new() })
                    .collect();
                b.push_str("<figcaption>");
                b.push_str(&legend_present(&shown));
                let _ = write!(
                    b,
                    "<p class=\"muted\">{} result{} in {} point{} (mean per time bucket and version; \
                     whiskers: min–max within the bucket{}). Dashed lines: alias moves.{}</p>",
                    int(total),
                    if total == 1 { "" } else { "s" },
                    int(points.len() as i64),
                    if points.len() == 1 { "" } else { "s" },
                    if m.statistic.is_none() {
                        "; band: mean interval".to_string()
                    } else {
                        format!(
                            "; a statistic is read from up to {} evenly spread results per point",
                            data::STATISTIC_SAMPLE
                        )
                    },
                    if neg_inf > 0 {
                        format!(" {} result(s) are −∞ and not drawn.", int(neg_inf))
                    } else {
                        String::new()
                    }
                );
                b.push_str("</figcaption></figure>");
            }
        }
    }
    b.push_str("</section>");

    // Segments: what changed between the two most recent segmented versions.
    b.push_str(&super::segments::model_section(pool, model_id).await?);

    // Versions.
    b.push_str("<section><h2>Versions</h2>");
    if versions.is_empty() {
        b.push_str("<p class=\"muted\">No versions yet.</p>");
    } else {
        b.push_str("<div class=\"table-wrap\"><table><thead><tr><th>Version</th><th>Created</th><th>Last upload</th><th class=\"num\">Batches</th>");
        for (_, title) in HEADLINE {
            let _ = write!(
                b,
                "<th class=\"num\">{title} <span class=\"unit\">(bits)</span></th>"
            );
        }
        b.push_str("<th>Latest batch</th></tr></thead><tbody>");
        for (i, v) in versions.iter().enumerate().rev().take(200) {
            let _ = write!(
                b,
                "<tr><td><span class=\"sw {}\" style=\"background:{}\"></span><span class=\"strong\">{}</span>",
                if (i / chart::PALETTE.len()) % 2 == 1 { "sq" } else { "dot" },
                chart::color(i),
                E(&v.name)
            );
            for a in &v.aliases {
                let _ = write!(b, " {}", alias_badge(a));
            }
            let _ = write!(
                b,
                "</td><td>{}</td><td>{}</td><td class=\"num\">{}</td>",
                time(&v.created_at),
                opt_time(v.last_upload.as_ref()),
                int(v.batch_count)
            );
            let mut newest: Option<&Latest> = None;
            for (est, _) in HEADLINE {
                let l = by.get(&(v.id, est)).copied();
                if let Some(l) = l {
                    if newest.is_none_or(|n| l.computed_at > n.computed_at) {
                        newest = Some(l);
                    }
                }
                b.push_str(&metric_cell(l, est == "semantic_mi"));
            }
            match newest {
                Some(l) => {
                    let _ = write!(
                        b,
                        "<td><a class=\"mono\" href=\"/batches/{}\">{}…</a></td>",
                        l.batch_id,
                        &l.batch_id.to_string()[..8]
                    );
                }
                None => b.push_str("<td class=\"muted\">—</td>"),
            }
            b.push_str("</tr>");
        }
        b.push_str("</tbody></table></div>");
        if versions.len() > 200 {
            b.push_str("<p class=\"muted\">The 200 newest versions are listed.</p>");
        }
    }
    b.push_str("</section>");

    // Monitors and their incidents.
    let monitors = data::monitors(pool, model_id).await?;
    let incidents = data::incidents(pool, model_id, 20).await?;
    if !monitors.is_empty() || !incidents.is_empty() {
        b.push_str("<section><h2>Monitors</h2>");
        if !monitors.is_empty() {
            b.push_str("<div class=\"table-wrap\"><table><thead><tr><th>Monitor</th><th>Target</th><th>State</th><th>Last verdict</th><th>Last evaluated</th></tr></thead><tbody>");
            for (name, kind, target, status, severity, last, at) in &monitors {
                let target = match (kind.as_str(), target) {
                    ("latest", _) => "latest version".to_string(),
                    (k, Some(t)) => format!("{k} {t}"),
                    (k, None) => k.to_string(),
                };
                let state = if status == "firing" {
                    format!(
                        "<span class=\"badge v-fail\">firing: {}</span>",
                        E(severity.as_deref().unwrap_or(""))
                    )
                } else {
                    "<span class=\"badge v-pass\">ok</span>".to_string()
                };
                let _ = write!(
                    b,
                    "<tr><td class=\"strong\">{}</td><td>{}</td><td>{state}</td><td>{}</td><td>{}</td></tr>",
                    E(name),
                    E(&target),
                    last.as_deref().map(verdict).unwrap_or_else(|| "—".into()),
                    opt_time(at.as_ref())
                );
            }
            b.push_str("</tbody></table></div>");
        }
        b.push_str("<h3>Incidents</h3>");
        if incidents.is_empty() {
            b.push_str("<p class=\"muted\">No incidents.</p>");
        } else {
            b.push_str("<div class=\"table-wrap\"><table><thead><tr><th>Monitor</th><th>State</th><th>Severity</th><th>Version</th><th>Opened</th><th>Resolved</th></tr></thead><tbody>");
            for (id, monitor, st, severity, version, opened, resolved) in &incidents {
                let badge = if st == "firing" { "v-fail" } else { "v-pass" };
                let _ = write!(
                    b,
                    "<tr id=\"incident-{id}\"><td><a href=\"/incidents/{id}\">{}</a></td><td><span class=\"badge {badge}\">{}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    E(monitor),
                    E(st),
                    verdict(severity),
                    E(version.as_deref().unwrap_or("—")),
                    time(opened),
                    opt_time(resolved.as_ref())
                );
            }
            b.push_str("</tbody></table></div>");
        }
        b.push_str("</section>");
    }

    // Gate decisions.
    let decisions = data::decisions(pool, model_id, 20).await?;
    b.push_str("<section><h2>Gate decisions</h2>");
    if decisions.is_empty() {
        b.push_str("<p class=\"muted\">No gate decisions yet (<code>POST /v1/models/{model}/versions/{version}/gate</code>).</p>");
    }
    for d in &decisions {
        b.push_str(&decision(d));
    }
    b.push_str("</section>");

    let policies = data::policies(pool, model_id).await?;
    if !policies.is_empty() {
        b.push_str("<section><h2>Gate policies</h2><ul class=\"policies\">");
        for (gate, version, rules) in &policies {
            let _ = write!(
                b,
                "<li><span class=\"strong\">{}</span> <span class=\"muted\">version {version}</span><ul>",
                E(gate)
            );
            for r in rules.as_array().map(Vec::as_slice).unwrap_or_default() {
                let _ = write!(b, "<li>{}</li>", E(&rule_text(r)));
            }
            b.push_str("</ul></li>");
        }
        b.push_str("</ul></section>");
    }

    // Recent batches.
    let recent = data::recent_batches(pool, model_id, 15).await?;
    tx.commit().await?;
    b.push_str("<section><h2>Recent batches</h2>");
    if recent.is_empty() {
        b.push_str("<p class=\"muted\">No batches.</p>");
    } else {
        b.push_str("<div class=\"table-wrap\"><table><thead><tr><th>Batch</th><th>Version</th><th>Task</th><th class=\"num\">N</th><th>Uploaded</th><th>Jobs</th></tr></thead><tbody>");
        for r in &recent {
            let jobs = if r.unfinished > 0 {
                format!(
                    "<span class=\"badge v-running\">{} of {} running or queued</span>",
                    r.unfinished, r.jobs
                )
            } else if r.failed > 0 {
                format!(
                    "<span class=\"badge v-fail\">{} of {} failed</span>",
                    r.failed, r.jobs
                )
            } else {
                format!("{} done", r.jobs)
            };
            let _ = write!(
                b,
                "<tr><td><a class=\"mono\" href=\"/batches/{}\">{}</a></td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td>{jobs}</td></tr>",
                r.id,
                r.id,
                E(&r.version),
                E(&r.task),
                int(r.n),
                time(&r.created_at)
            );
        }
        b.push_str("</tbody></table></div>");
    }
    b.push_str("</section>");

    Ok(respond(
        StatusCode::OK,
        page(
            &name,
            &[crumb("models", Some("/".into())), crumb(name.clone(), None)],
            None,
            &b,
        ),
    ))
}

fn legend_present(shown: &[String]) -> String {
    // Keep colour indexes: versions without points are skipped but keep their slot.
    let mut s = String::from("<ul class=\"legend\">");
    for (i, v) in shown.iter().enumerate() {
        if v.is_empty() {
            continue;
        }
        let shape = if (i / chart::PALETTE.len()) % 2 == 1 {
            "sq"
        } else {
            "dot"
        };
        let _ = write!(
            s,
            "<li><span class=\"sw {shape}\" style=\"background:{}\"></span>{}</li>",
            chart::color(i),
            E(v)
        );
    }
    s.push_str("</ul>");
    s
}

/// A rule in words: `semantic_mi ≥ production − 2%` …
fn rule_text(r: &Value) -> String {
    let metric = r["metric"].as_str().unwrap_or("?");
    let op = match r["op"].as_str() {
        Some("gte") => "≥",
        Some("gt") => ">",
        Some("lte") => "≤",
        Some("lt") => "<",
        _ => "?",
    };
    let used = match r["use"].as_str() {
        Some("ci_low") => " (interval low end)",
        Some("ci_high") => " (interval high end)",
        _ => "",
    };
    let mut s = format!("{metric}{used} {op} ");
    if let Some(t) = r["threshold"].as_f64() {
        s.push_str(&num(t));
    }
    if let Some(base) = r["baseline"].as_str() {
        if r["threshold"].is_number() {
            s.push_str(" and ");
        }
        s.push_str(base);
        for (key, sign) in [("max_regression", "−"), ("min_improvement", "+")] {
            if let Some(m) = r.get(key).filter(|m| m.is_object()) {
                if let Some(a) = m["absolute"].as_f64() {
                    let _ = write!(s, " {sign} {}", num(a));
                }
                if let Some(rel) = m["relative"].as_f64() {
                    let _ = write!(s, " {sign} {}", pct(rel));
                }
            }
        }
    }
    if let Some(sev) = r["severity"].as_str() {
        let _ = write!(s, " [{sev}]");
    }
    s
}

/// One stored decision: the verdict, where it came from, and each rule's outcome.
fn decision(d: &Value) -> String {
    let v = d["verdict"].as_str().unwrap_or("?");
    let version = d["version"].as_str().unwrap_or("?");
    let unit = d["unit"].as_str().unwrap_or("bits");
    let policy = match (
        d["policy"]["name"].as_str(),
        d["policy"]["version"].as_i64(),
    ) {
        (Some(n), Some(pv)) => format!("policy {} v{pv}", E(n)),
        _ => "inline rules".into(),
    };
    let at = d["evaluated_at"]
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| time(&t.with_timezone(&chrono::Utc)))
        .unwrap_or_default();
    let mut s = format!(
        "<article class=\"decision d-{}\"><header>{} <span class=\"strong\">{}</span> <span class=\"muted\">{policy} · {at}</span></header>",
        match v {
            "pass" | "warn" | "fail" | "inconclusive" | "pending" => v,
            _ => "other",
        },
        verdict(v),
        E(version)
    );
    s.push_str("<div class=\"table-wrap\"><table class=\"rules\"><thead><tr><th>Metric</th><th>Verdict</th><th class=\"num\">Value</th><th class=\"num\">Interval</th><th class=\"num\">Threshold</th><th>Baseline</th><th class=\"num\">Δ</th><th>Message</th></tr></thead><tbody>");
    for r in d["rules"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let metric = r["metric"].as_str().unwrap_or("?");
        let info = MetricRef::parse(metric)
            .ok()
            .is_none_or(|m| m.statistic.as_deref().is_none_or(is_information));
        let u = if info {
            format!(" {unit}")
        } else {
            String::new()
        };
        let f = |k: &str| {
            r[k].as_f64()
                .map(|x| format!("{}{u}", num(x)))
                .unwrap_or_else(|| "—".into())
        };
        let baseline = match (r["baseline_version"].as_str(), r["baseline_value"].as_f64()) {
            (Some(bv), Some(val)) => format!("{}: {}{u}", E(bv), num(val)),
            (Some(bv), None) => esc(bv),
            _ => "—".into(),
        };
        let sev = if r["severity"].as_str() == Some("warning") {
            " <span class=\"muted\">(warning)</span>"
        } else {
            ""
        };
        // The metric's trust report, when its checks found something.
        let trust = match r["diagnostics"]["reliability"].as_str() {
            Some(w @ ("caution" | "unreliable")) => format!(
                " <span class=\"reliability-{w}\" title=\"{}\">({w})</span>",
                E(&r["diagnostics"]["reasons"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x["message"].as_str())
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                    .unwrap_or_default())
            ),
            _ => String::new(),
        };
        let _ = write!(
            s,
            "<tr><td class=\"mono\">{}</td><td>{}{sev}{trust}</td><td class=\"num nowrap\">{}</td><td class=\"num nowrap\">{}</td><td class=\"num nowrap\">{}</td><td class=\"nowrap\">{baseline}</td><td class=\"num nowrap\">{}</td><td>{}</td></tr>",
            E(metric),
            verdict(r["verdict"].as_str().unwrap_or("?")),
            f("value"),
            interval(r["ci_low"].as_f64(), r["ci_high"].as_f64()),
            f("threshold"),
            delta_cell(&r["delta"], &u),
            E(r["message"].as_str().unwrap_or(""))
        );
    }
    s.push_str("</tbody></table></div></article>");
    s
}

/// A rule's difference from its baseline: value, interval and how it was obtained (older stored
/// decisions have a bare number).
fn delta_cell(d: &serde_json::Value, u: &str) -> String {
    if let Some(x) = d.as_f64() {
        return format!("{}{u}", num(x));
    }
    let Some(v) = d["value"].as_f64() else {
        return "—".into();
    };
    let iv = interval(d["ci_low"].as_f64(), d["ci_high"].as_f64());
    format!(
        "{}{u} {} <span class=\"muted small\">({})</span>",
        num(v),
        iv,
        E(d["method"].as_str().unwrap_or("?"))
    )
}
