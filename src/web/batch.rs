//! A batch's page: what was uploaded, its jobs, and its results drawn.

use std::fmt::Write;

use axum::http::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use super::chart::{self, Bar, Heat, RgPoint};
use super::html::{
    bits, bytes, crumb, duration, esc, int, interval, job_state, json_block, num, opt_time, page,
    params, pct, respond, time, truncate, E,
};
use super::{WebError, WebResult};
use crate::api::views::EstimateResult;
use crate::api::{AppState, Unit};
use crate::domain::estimators::is_information;
use crate::store;

/// Confusion matrices with more classes than this are drawn in blocks of classes.
const MAX_HEAT: usize = 60;
/// Bars shown per chart (the most frequent classes beyond it).
const MAX_BARS: usize = 60;

pub async fn batch(state: &AppState, id: Uuid) -> WebResult {
    let pool = &state.pool;
    let Some(b) = store::get_batch(pool, id).await? else {
        return Err(WebError::NotFound(format!("There is no batch {id}.")));
    };
    let jobs = store::batch_jobs(pool, id).await?;
    let results: Vec<EstimateResult> = store::batch_results(pool, id)
        .await?
        .into_iter()
        .map(|r| EstimateResult::new(r, Unit::Bits))
        .collect();
    let classes: Vec<String> = b
        .classes
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    c.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| c.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    let class = |i: &Value| -> String {
        match i.as_u64() {
            Some(k) => classes
                .get(k as usize)
                .cloned()
                .unwrap_or_else(|| k.to_string()),
            None => i
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| i.to_string()),
        }
    };

    let unfinished = jobs
        .iter()
        .any(|j| j.state == "queued" || j.state == "running");
    let mut s = String::with_capacity(64 * 1024);
    let _ = write!(
        s,
        "<h1>Batch <span class=\"mono small\">{id}</span></h1>\
         <dl class=\"facts\">\
         <div><dt>Model</dt><dd><a href=\"/models/{m}\">{m}</a></dd></div>\
         <div><dt>Version</dt><dd>{v}</dd></div>\
         <div><dt>Task</dt><dd>{task}</dd></div>\
         <div><dt>Samples (N)</dt><dd>{n}</dd></div>\
         <div><dt>Uploaded</dt><dd>{at}</dd></div>\
         <div><dt>Size</dt><dd>{size} <span class=\"muted\">{ct}</span></dd></div>\
         <div class=\"wide\"><dt>{cl}</dt><dd>{k}</dd></div>\
         <div class=\"wide\"><dt>Digest (sha256)</dt><dd class=\"mono small\">{digest}</dd></div>\
         </dl>",
        m = E(&b.model),
        v = E(&b.version),
        task = E(&b.task),
        n = int(b.n),
        cl = if b.task == "multilabel" {
            "Labels"
        } else {
            "Classes"
        },
        k = classes_summary(&classes),
        at = time(&b.created_at),
        size = bytes(b.size_bytes),
        ct = E(&b.content_type),
        digest = E(&b.digest),
    );
    if let Some(at) = &b.data_purged_at {
        s.push_str(&format!(
            "<p class=\"notice purged\">Raw data purged on {} by the model's retention policy; \
             its results and sufficient statistics are kept.</p>",
            time(at)
        ));
    }
    if let Some(at) = &b.results_purged_at {
        s.push_str(&format!(
            "<p class=\"notice purged\">Results purged on {} by the model's retention policy.</p>",
            time(at)
        ));
    }
    // Labels sent later by id: how many have arrived, and what waits for them.
    if let Some(l) = crate::api::views::Batch::from(b.clone()).labels_later {
        let _ = write!(
            s,
            "<section class=\"labels-later\"><h2>Labels</h2><p>{} of {} samples labelled \
             (coverage {}; the label-dependent jobs run at {}).</p>",
            int(l.labelled),
            int(b.n),
            pct(l.coverage),
            pct(l.required)
        );
        if !l.waiting.is_empty() {
            let _ = write!(
                s,
                "<p class=\"notice\">Waiting for labels: {}.</p>",
                l.waiting
                    .iter()
                    .map(|e| format!("<span class=\"mono\">{}</span>", E(e)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if let (Some(at), Some(used)) = (&l.released_at, l.released_labelled) {
            let _ = write!(
                s,
                "<p class=\"muted\">Released {}: the jobs use the {} labels stored then{}.</p>",
                time(at),
                int(used),
                if l.labelled_after_release > 0 {
                    format!(
                        "; {} arrived after and are kept, not used",
                        int(l.labelled_after_release)
                    )
                } else {
                    String::new()
                }
            );
        }
        s.push_str("</section>");
    }
    if b.metadata.as_object().is_some_and(|o| !o.is_empty()) {
        s.push_str("<details class=\"meta\"><summary>Metadata</summary>");
        s.push_str(&json_block(&b.metadata));
        s.push_str("</details>");
    }

    // Jobs (first while some are unfinished, else after the results).
    let mut jh = String::new();
    jh.push_str("<section><h2>Jobs</h2>");
    if jobs.is_empty() {
        jh.push_str("<p class=\"muted\">No jobs.</p>");
    } else {
        jh.push_str("<div class=\"table-wrap\"><table class=\"jobs\"><thead><tr><th>Estimator</th><th>State</th><th>Progress</th><th class=\"num\">Attempts</th><th>Started</th><th class=\"num\">Duration</th><th>Parameters</th><th>Error</th></tr></thead><tbody>");
        for j in &jobs {
            let pct = (j.progress.clamp(0.0, 1.0) * 100.0).round();
            let progress = if j.state == "succeeded" { 100.0 } else { pct };
            let err = j
                .error
                .as_ref()
                .map(|e| {
                    let title = e["title"].as_str().unwrap_or("error");
                    let detail = e["detail"].as_str().unwrap_or("");
                    format!("<span class=\"strong\">{}</span> {}", E(title), E(detail))
                })
                .unwrap_or_default();
            let took = match (j.started_at, j.finished_at) {
                (Some(a), Some(b)) => duration(b - a),
                (Some(a), None) if j.state == "running" => {
                    format!("{} so far", duration(chrono::Utc::now() - a))
                }
                _ => "—".into(),
            };
            let _ = write!(
                jh,
                "<tr><td class=\"mono\">{}</td><td>{}</td>\
                 <td class=\"nowrap\"><span class=\"progress\" title=\"{progress}%\"><span style=\"width:{progress}%\"></span></span> <span class=\"small\">{progress}%</span></td>\
                 <td class=\"num\">{}</td><td>{}</td><td class=\"num\">{took}</td><td class=\"small params\">{}</td><td class=\"small\">{err}</td></tr>",
                E(&j.estimator),
                job_state(&j.state),
                j.attempts,
                opt_time(j.started_at.as_ref()),
                params(&j.params),
            );
        }
        jh.push_str("</tbody></table></div>");
        if unfinished {
            jh.push_str("<p class=\"muted small\">Jobs are still running; this page reloads every 3 seconds.</p>");
        }
    }
    jh.push_str("</section>");
    if unfinished {
        s.push_str(&jh);
    }

    // Results summary.
    if !results.is_empty() {
        s.push_str("<section><h2>Results</h2><div class=\"table-wrap\"><table><thead><tr><th>Estimator</th><th class=\"num\">Value</th><th class=\"num\">Interval</th><th>Key statistics</th><th>Reliability</th><th class=\"num\">N</th><th>Computed</th></tr></thead><tbody>");
        for r in &results {
            let trust = match &r.diagnostics {
                None => String::from("<span class=\"muted\">—</span>"),
                Some(d) => {
                    let word = match d.reliability {
                        crate::estimate::Reliability::Ok => "ok",
                        crate::estimate::Reliability::Caution => "caution",
                        crate::estimate::Reliability::Unreliable => "unreliable",
                    };
                    let reasons: Vec<String> = d
                        .reasons
                        .iter()
                        .map(|x| E(&x.message).to_string())
                        .collect();
                    format!(
                        "<span class=\"strong reliability-{word}\">{word}</span>{}",
                        if reasons.is_empty() {
                            String::new()
                        } else {
                            format!("<div class=\"muted small\">{}</div>", reasons.join("<br>"))
                        }
                    )
                }
            };
            let level = r
                .ci_level
                .filter(|_| r.ci_low.is_some())
                .map(|l| format!(" <span class=\"muted\">({})</span>", pct(l)))
                .unwrap_or_default();
            let _ = write!(
                s,
                "<tr><td class=\"mono strong\">{}</td><td class=\"num strong nowrap\">{}</td><td class=\"num nowrap\">{}{level}</td><td class=\"small\">{}</td><td class=\"small\">{trust}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                E(&r.estimator),
                bits(r.value, r.value_special.as_deref()),
                interval(r.ci_low, r.ci_high),
                key_stats(r),
                int(r.n),
                time(&r.computed_at)
            );
        }
        s.push_str("</tbody></table></div></section>");
    }

    // Per segment value, with the decomposition.
    s.push_str(&super::segments::batch_section(&results));

    // Per estimator.
    let shannon = results.iter().rev().find(|r| r.estimator == "shannon_mi");
    let semantic = results.iter().rev().find(|r| r.estimator == "semantic_mi");
    let rg = results.iter().rev().find(|r| r.estimator == "rg_curve");

    let confusion = shannon
        .and_then(|r| r.details.get("confusion"))
        .or_else(|| semantic.and_then(|r| r.details.get("confusion")))
        .filter(|c| !c.is_null());
    if let Some(c) = confusion {
        if let Some(h) = heat_of(c, &classes) {
            s.push_str("<section><h2>Confusion matrix</h2>");
            if h.1 > 1 {
                let _ = write!(
                    s,
                    "<p class=\"muted\">{} classes, drawn in blocks of {} × {} classes.</p>",
                    int(classes.len().max(h.0.rows.len()) as i64),
                    h.1,
                    h.1
                );
            }
            s.push_str("<figure class=\"chart-box heat-box\">");
            s.push_str(&chart::heatmap(&h.0));
            s.push_str("<figcaption class=\"muted\">Rows: true class; columns: predicted class. \
                Colour: share of the row (recall and confusions per true class); numbers: counts.</figcaption></figure></section>");
        }
    }
    if let Some(r) = shannon {
        if let Some(per) = r.details["per_label"].as_array() {
            let items: Vec<Bar> = top(per, "p_label")
                .into_iter()
                .map(|p| {
                    let v = p["mi"].as_f64();
                    Bar {
                        label: class(&p["label"]),
                        value: v,
                        bound: None,
                        text: v
                            .map(|x| format!("{} bits", num(x)))
                            .unwrap_or_else(|| "—".into()),
                        tip: p["nmi"]
                            .as_f64()
                            .map(|x| format!(" · NMI {}", num(x)))
                            .unwrap_or_default(),
                    }
                })
                .collect();
            s.push_str(
                "<section><h2>Shannon information per label</h2><figure class=\"chart-box\">",
            );
            s.push_str(&chart::bars(
                &items,
                "I(label; prediction) in bits",
                None,
                None,
            ));
            s.push_str(&more_note(per.len()));
            s.push_str("</figure></section>");
        }
    }
    if let Some(r) = semantic {
        s.push_str("<section><h2>Semantic information</h2>");
        let eff = r.details["efficiency"].as_f64();
        let _ = write!(
            s,
            "<div class=\"gauge-row\"><span class=\"strong\">Information efficiency G / R</span>\
             <div class=\"gauge\" role=\"meter\" aria-valuemin=\"0\" aria-valuemax=\"1\" aria-valuenow=\"{}\"><span style=\"width:{:.1}%\"></span></div>\
             <span class=\"num strong\">{}</span> <span class=\"muted small\">{}</span></div>",
            eff.unwrap_or(0.0),
            eff.unwrap_or(0.0).clamp(0.0, 1.0) * 100.0,
            eff.map(|e| format!("{:.1}%", e * 100.0)).unwrap_or_else(|| "—".into()),
            E(r.details["efficiency_reason"].as_str().unwrap_or(
                &format!(
                    "semantic MI {} against the Shannon MI R = {} of the same channel",
                    bits(r.value, r.value_special.as_deref()),
                    bits(
                        r.details["shannon_bound"]
                            .as_f64()
                            .or(r.details["upper_bound"].as_f64()),
                        None
                    )
                )
            ))
        );
        if let Some(norm) = r.details["normalized_semantic_mi"].as_f64() {
            let _ = write!(
                s,
                "<p class=\"muted small\">Normalized semantic MI G / H(Y): {:.1}% (of the label entropy {})</p>",
                norm * 100.0,
                bits(r.details["upper_bound"].as_f64(), None)
            );
        }
        if let Some(reason) = r.details["neg_inf_reason"].as_str() {
            let _ = write!(s, "<p class=\"notice\">{}</p>", E(reason));
        }
        let (per, key, weight) = if let Some(p) = r.details["per_class"].as_array() {
            (p, "class", "p_y")
        } else if let Some(p) = r.details["per_label"].as_array() {
            (p, "label", "p_label")
        } else {
            (&Vec::new(), "", "")
        };
        if !per.is_empty() {
            let shown = top(per, weight);
            let has_bound = shown.iter().any(|p| p["upper_bound"].is_number());
            let items: Vec<Bar> = shown
                .iter()
                .map(|p| {
                    let v = p["semantic_kl"].as_f64();
                    let bound = p["upper_bound"].as_f64();
                    let text = match (v, bound) {
                        (Some(v), Some(bd)) => format!("{} of {}", num(v), num(bd)),
                        (Some(v), None) => num(v),
                        (None, _) => "n/a".into(),
                    };
                    let mut tip = String::new();
                    if let Some(w) = p[weight].as_f64() {
                        let _ = write!(tip, " · share {:.1}%", w * 100.0);
                    }
                    if let Some(lp) = p["logical_prob"].as_f64() {
                        let _ = write!(tip, " · logical probability {}", num(lp));
                    }
                    if let Some(reason) = p["semantic_kl_reason"].as_str() {
                        let _ = write!(tip, " · {reason}");
                    }
                    Bar {
                        label: class(&p[key]),
                        value: v,
                        bound,
                        text,
                        tip,
                    }
                })
                .collect();
            let _ = write!(
                s,
                "<h3>Information per {key}</h3><figure class=\"chart-box\">{}{}</figure>",
                chart::bars(
                    &items,
                    &format!("semantic information I(X; θ) per {key}, bits"),
                    has_bound.then_some("upper bound"),
                    None
                ),
                more_note(per.len())
            );
            if shown.iter().any(|p| p["efficiency"].is_number()) {
                let items: Vec<Bar> = shown
                    .iter()
                    .map(|p| {
                        let e = p["efficiency"].as_f64();
                        Bar {
                            label: class(&p[key]),
                            value: e,
                            bound: None,
                            text: e
                                .map(|e| format!("{:.1}%", e * 100.0))
                                .unwrap_or_else(|| "n/a".into()),
                            tip: String::new(),
                        }
                    })
                    .collect();
                let _ = write!(
                    s,
                    "<h3>Efficiency per {key}</h3><figure class=\"chart-box\">{}</figure>",
                    chart::bars(
                        &items,
                        "efficiency: information / upper bound (1 = 100%)",
                        None,
                        Some((0.0, 1.0))
                    )
                );
            }
        }
        if let Some(worst) = r.details["worst_samples"]
            .as_array()
            .filter(|w| !w.is_empty())
        {
            s.push_str("<h3>Most misleading samples</h3><p class=\"muted small\">The samples whose prediction carried the least (most negative) semantic information about their true class.</p>");
            let has_pred = worst.iter().any(|w| !w["prediction"].is_null());
            let has_q = worst.iter().any(|w| w["q_true"].is_number());
            let has_score = worst.iter().any(|w| w["score"].is_number());
            let _ = write!(
                s,
                "<div class=\"table-wrap\"><table class=\"compact\"><thead><tr><th class=\"num\">Sample</th><th>True {key}</th>{}<th class=\"num\">Information</th>{}{}</tr></thead><tbody>",
                if has_pred { "<th>Predicted</th>" } else { "" },
                if has_q { "<th class=\"num\">P(true class)</th>" } else { "" },
                if has_score { "<th class=\"num\">Score</th>" } else { "" },
            );
            for w in worst {
                let val = if w["falsified"].as_bool() == Some(true) {
                    "<span class=\"neg\">−∞ bits (falsified)</span>".to_string()
                } else {
                    let v = w["value"].as_f64();
                    let cls = if v.is_some_and(|x| x < 0.0) {
                        "neg"
                    } else {
                        ""
                    };
                    format!("<span class=\"{cls}\">{}</span>", bits(v, None))
                };
                let _ = write!(
                    s,
                    "<tr><td class=\"num mono\">{}</td><td>{}</td>{}<td class=\"num\">{val}</td>{}{}</tr>",
                    w["index"].as_u64().map(|i| i.to_string()).unwrap_or_default(),
                    E(&class(&w["label"])),
                    if has_pred {
                        format!("<td>{}</td>", E(&class(&w["prediction"])))
                    } else {
                        String::new()
                    },
                    if has_q {
                        format!("<td class=\"num\">{}</td>", w["q_true"].as_f64().map(num).unwrap_or_default())
                    } else {
                        String::new()
                    },
                    if has_score {
                        format!("<td class=\"num\">{}</td>", w["score"].as_f64().map(num).unwrap_or_default())
                    } else {
                        String::new()
                    },
                );
            }
            s.push_str("</tbody></table></div>");
        }
        s.push_str("</section>");
    }
    if let Some(r) = rg {
        let points: Vec<RgPoint> = r.details["points"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| {
                        Some(RgPoint {
                            s: p["s"].as_f64()?,
                            g: p["g"].as_f64()?,
                            r: p["r"].as_f64()?,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        if !points.is_empty() {
            let _ = write!(
                s,
                "<section><h2>R(G) curve</h2><p class=\"muted\">The least Shannon information R needed to convey a given semantic information G (s: the matching parameter). \
                 At s = 1: G = {}, R = {}.</p><figure class=\"chart-box rg-box\">{}</figure></section>",
                bits(r.details["g_at_1"].as_f64(), None),
                bits(r.details["r_at_1"].as_f64(), None),
                chart::rg_curve(&points)
            );
        }
    }

    if !unfinished {
        s.push_str(&jh);
    }

    // Every statistic, for the curious.
    if !results.is_empty() {
        s.push_str("<section><h2>All statistics</h2>");
        for r in &results {
            let _ = write!(
                s,
                "<details class=\"stats\"><summary><span class=\"mono\">{}</span> <span class=\"muted small\">version {} · {}</span></summary>{}</details>",
                E(&r.estimator),
                E(&r.estimator_version),
                params(&r.params),
                stats_table(&r.details)
            );
        }
        s.push_str("</section>");
    }

    let title = format!("Batch {}", &id.to_string()[..8]);
    Ok(respond(
        StatusCode::OK,
        page(
            &title,
            &[
                crumb("models", Some("/".into())),
                crumb(b.model.clone(), Some(format!("/models/{}", b.model))),
                crumb(
                    format!("{} · batch {}", b.version, &id.to_string()[..8]),
                    None,
                ),
            ],
            unfinished.then_some(3),
            &s,
        ),
    ))
}

fn classes_summary(classes: &[String]) -> String {
    let shown: Vec<String> = classes
        .iter()
        .take(40)
        .map(|c| format!("<span class=\"cls\">{}</span>", E(&truncate(c, 30))))
        .collect();
    let more = if classes.len() > 40 {
        format!(
            " <span class=\"muted\">… {} more</span>",
            classes.len() - 40
        )
    } else {
        String::new()
    };
    format!("{}: {}{more}", classes.len(), shown.join(" "))
}

/// The short line of the most telling statistics of a result.
fn key_stats(r: &EstimateResult) -> String {
    let d = &r.details;
    let mut parts: Vec<String> = Vec::new();
    let mut b = |label: &str, key: &str| {
        if let Some(x) = d[key].as_f64() {
            parts.push(format!("{label} {} bits", num(x)));
        }
    };
    match r.estimator.as_str() {
        "shannon_mi" => {
            b("Miller–Madow", "miller_madow");
            b("H(true)", "h_true");
            b("H(pred)", "h_pred");
        }
        "semantic_mi" => {
            b("upper bound", "upper_bound");
        }
        "implied_mi" => {
            b("realised semantic MI", "realised_semantic_mi");
            b("calibration gap", "calibration_gap");
            b("H(mean q)", "h_mean_prediction");
        }
        "ce_bound" => {
            b("cross-entropy", "cross_entropy");
            b("H(labels)", "h_labels");
            b("KL(marginal)", "kl_marginal");
        }
        "rg_curve" => {
            b("G(1)", "g_at_1");
            b("R(1)", "r_at_1");
        }
        _ => {}
    }
    for (label, key, pct) in [
        ("NMI", "nmi", false),
        ("AMI", "ami", false),
        ("efficiency", "efficiency", true),
    ] {
        if let Some(x) = d[key].as_f64() {
            parts.insert(
                0,
                if pct {
                    format!("{label} {:.1}%", x * 100.0)
                } else {
                    format!("{label} {}", num(x))
                },
            );
        }
    }
    esc(&parts.join(" · "))
}

/// The entries to draw: all, or the `MAX_BARS` with the largest `weight`, in their order.
fn top<'a>(per: &'a [Value], weight: &str) -> Vec<&'a Value> {
    if per.len() <= MAX_BARS {
        return per.iter().collect();
    }
    let mut idx: Vec<usize> = (0..per.len()).collect();
    idx.sort_by(|&a, &b| {
        per[b][weight]
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&per[a][weight].as_f64().unwrap_or(0.0))
    });
    idx.truncate(MAX_BARS);
    idx.sort_unstable();
    idx.into_iter().map(|i| &per[i]).collect()
}

fn more_note(n: usize) -> String {
    if n > MAX_BARS {
        format!(
            "<figcaption class=\"muted\">The {MAX_BARS} most frequent of {} are shown.</figcaption>",
            int(n as i64)
        )
    } else {
        String::new()
    }
}

/// A confusion table from `details.confusion` (dense rows or `{format: sparse, shape, entries}`),
/// aggregated into blocks of classes when large. Returns the table and the block size.
fn heat_of(c: &Value, classes: &[String]) -> Option<(Heat, usize)> {
    let (kx, ky, cells): (usize, usize, Vec<(usize, usize, f64)>) = if let Some(rows) = c.as_array()
    {
        let kx = rows.len();
        let ky = rows.first()?.as_array()?.len();
        let mut cells = Vec::new();
        for (r, row) in rows.iter().enumerate() {
            for (col, v) in row.as_array()?.iter().enumerate() {
                let v = v.as_f64()?;
                if v != 0.0 && col < ky {
                    cells.push((r, col, v));
                }
            }
        }
        (kx, ky, cells)
    } else {
        let shape = c["shape"].as_array()?;
        let kx = shape.first()?.as_u64()? as usize;
        let ky = shape.get(1)?.as_u64()? as usize;
        let mut cells = Vec::new();
        for e in c["entries"].as_array()? {
            let e = e.as_array()?;
            let (r, col, v) = (
                e.first()?.as_u64()? as usize,
                e.get(1)?.as_u64()? as usize,
                e.get(2)?.as_f64()?,
            );
            if r < kx && col < ky {
                cells.push((r, col, v));
            }
        }
        (kx, ky, cells)
    };
    if kx == 0 || ky == 0 {
        return None;
    }
    let block = kx.max(ky).div_ceil(MAX_HEAT);
    let (gx, gy) = (kx.div_ceil(block), ky.div_ceil(block));
    let mut counts = vec![0.0; gx * gy];
    for (r, col, v) in cells {
        counts[(r / block) * gy + col / block] += v;
    }
    let name = |i: usize| classes.get(i).cloned().unwrap_or_else(|| i.to_string());
    let labels = |g: usize, k: usize| -> Vec<String> {
        (0..g)
            .map(|i| {
                if block == 1 {
                    name(i)
                } else {
                    let (a, b) = (i * block, ((i + 1) * block).min(k) - 1);
                    format!("#{a}–#{b}")
                }
            })
            .collect()
    };
    Some((
        Heat {
            rows: labels(gx, kx),
            cols: labels(gy, ky),
            counts,
        },
        block,
    ))
}

/// Every scalar statistic of a result's details, information values marked in bits.
fn stats_table(d: &Value) -> String {
    let Some(o) = d.as_object() else {
        return String::new();
    };
    let mut s = String::from("<table class=\"compact kv\"><tbody>");
    for (k, v) in o {
        let shown = match v {
            Value::Number(n) => {
                let x = n.as_f64().unwrap_or(f64::NAN);
                if is_information(k) {
                    format!("{} bits", num(x))
                } else if n.is_i64() || n.is_u64() {
                    n.to_string()
                } else {
                    num(x)
                }
            }
            Value::Bool(b) => b.to_string(),
            Value::String(t) => esc(t),
            Value::Null => "<span class=\"muted\">null</span>".into(),
            _ => continue,
        };
        let _ = write!(
            s,
            "<tr><th class=\"mono\">{}</th><td>{shown}</td></tr>",
            E(k)
        );
    }
    s.push_str("</tbody></table>");
    s
}
