//! Segments on the dashboard: per-segment tables with the decomposition on the batch page, and
//! on the model page the segments ranked by their contribution to the change between the two
//! most recent segmented versions.

use std::fmt::Write;

use uuid::Uuid;

use super::html::{esc as E, interval, num, opt_num};
use crate::api::views::EstimateResult;
use crate::api::Unit;

/// Rows shown per key (the API has all of them).
const SHOWN: usize = 50;

fn pct(x: Option<f64>) -> String {
    x.map(|v| format!("{}%", num(v * 100.0)))
        .unwrap_or_else(|| "—".into())
}

/// The batch page's section: per result with segments, per key, the values and the
/// decomposition (bits).
pub fn batch_section(results: &[EstimateResult]) -> String {
    let mut s = String::new();
    let with: Vec<&EstimateResult> = results.iter().filter(|r| r.segments.is_some()).collect();
    if with.is_empty() {
        return s;
    }
    s.push_str("<section><h2>Segments</h2><p class=\"muted small\">Each estimator on each segment value's samples; contribution = P(s)·I<sub>s</sub>, whose sum over the values is the conditional information Σ P(s) I<sub>s</sub> (I(Y;Ŷ|S) for shannon_mi). Address one in history or a gate as <span class=\"mono\">estimator{key=value}</span>.</p>");
    for r in with {
        let Some(segments) = &r.segments else {
            continue;
        };
        for (key, k) in segments {
            let _ = write!(
                s,
                "<h3><span class=\"mono\">{}</span> by <span class=\"mono\">{}</span></h3>",
                E(&r.estimator),
                E(key)
            );
            if let Some(d) = &k.decomposition {
                let _ = write!(
                    s,
                    "<p class=\"small\">Σ P(s) I<sub>s</sub> = <span class=\"strong\">{}</span> bits {} · whole batch {} bits · I(Y;S) = {} bits {}",
                    opt_num(d.conditional_mi),
                    interval(d.conditional_ci_low, d.conditional_ci_high),
                    opt_num(d.whole),
                    opt_num(d.i_y_s),
                    interval(d.i_y_s_ci_low, d.i_y_s_ci_high),
                );
                if let Some(p) = &d.plug_in {
                    let _ = write!(
                        s,
                        " · plug-in chain rule: I(Y;Ŷ,S) {} = I(Y;S) {} + I(Y;Ŷ|S) {}; interaction I(Y;Ŷ) − I(Y;Ŷ|S) = {}",
                        num(p.i_y_yhat_and_s),
                        num(p.i_y_s),
                        num(p.i_y_yhat_given_s),
                        num(p.interaction)
                    );
                }
                if let Some(reason) = &d.reason {
                    let _ = write!(s, " <span class=\"muted\">({})</span>", E(reason));
                }
                s.push_str("</p>");
            }
            s.push_str("<div class=\"table-wrap\"><table class=\"segments\"><thead><tr><th>Value</th><th class=\"num\">N</th><th class=\"num\">P(s)</th><th class=\"num\">Value (bits)</th><th class=\"num\">Interval</th><th class=\"num\">Contribution</th><th class=\"num\">Share</th><th>Note</th></tr></thead><tbody>");
            for v in k.values.iter().take(SHOWN) {
                let note = match (&v.skipped, v.reliability) {
                    (Some(why), _) => E(why).to_string(),
                    (None, Some(rel)) => format!("{rel:?}").to_lowercase(),
                    _ => String::new(),
                };
                let _ = write!(
                    s,
                    "<tr><td class=\"mono\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num strong\">{}</td><td class=\"num nowrap\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"small\">{note}</td></tr>",
                    E(&v.value),
                    v.n,
                    pct(Some(v.share)),
                    match (&v.estimate, &v.estimate_special) {
                        (Some(x), _) => num(*x),
                        (None, Some(sp)) => E(sp).to_string(),
                        _ => "—".into(),
                    },
                    interval(v.ci_low, v.ci_high),
                    opt_num(v.contribution),
                    pct(v.contribution_share),
                );
            }
            s.push_str("</tbody></table></div>");
            if k.values.len() > SHOWN {
                let _ = write!(
                    s,
                    "<p class=\"muted small\">{} more values in the result's JSON.</p>",
                    k.values.len() - SHOWN
                );
            }
        }
    }
    s.push_str("</section>");
    s
}

/// The model page's section: the two most recent versions with segmented results, their
/// segments ranked by contribution to the change (most negative first).
pub async fn model_section(c: &mut sqlx::PgConnection, model_id: Uuid) -> sqlx::Result<String> {
    let versions: Vec<(Uuid, String)> = sqlx::query_as(
        // The version of the newest segmented result, then the newest other one: two walks down
        // the partial index `results_segmented` instead of grouping every segmented result.
        "WITH a AS (SELECT version_id FROM results
                    WHERE model_id = $1 AND segments IS NOT NULL
                    ORDER BY computed_at DESC LIMIT 1),
              b AS (SELECT r.version_id FROM results r, a
                    WHERE r.model_id = $1 AND r.segments IS NOT NULL AND r.version_id <> a.version_id
                    ORDER BY r.computed_at DESC LIMIT 1)
         SELECT x.version_id, v.name
         FROM (SELECT version_id, 0 AS o FROM a UNION ALL SELECT version_id, 1 FROM b) x
         JOIN model_versions v ON v.id = x.version_id ORDER BY x.o",
    )
    .bind(model_id)
    .fetch_all(&mut *c)
    .await?;
    let [(cid, cname), (bid, bname)] = versions.as_slice() else {
        return Ok(String::new());
    };
    let rankings = match crate::gate::compare::segment_rankings(c, *bid, *cid, Unit::Bits).await {
        Ok(r) => r,
        Err(crate::error::Error::Database(e)) => return Err(e),
        Err(_) => return Ok(String::new()),
    };
    if rankings.is_empty() {
        return Ok(String::new());
    }
    let mut s = String::new();
    let _ = write!(
        s,
        "<section><h2>Segments: {} → {}</h2><p class=\"muted small\">Segment values ranked by their contribution to the change of the information, P<sub>c</sub>(s)·I<sub>c</sub>(s) − P<sub>b</sub>(s)·I<sub>b</sub>(s) (bits), most negative first: the segments that lost the most. Each side's latest segmented batch; <span class=\"mono\">/v1/models/…/compare</span> has every value.</p>",
        E(bname),
        E(cname)
    );
    for r in &rankings {
        let _ = write!(
            s,
            "<h3><span class=\"mono\">{}</span> by <span class=\"mono\">{}</span> <span class=\"muted small\">Σ P(s) I<sub>s</sub>: {} → {}</span></h3>",
            E(&r.estimator),
            E(&r.key),
            opt_num(r.baseline_conditional),
            opt_num(r.candidate_conditional)
        );
        s.push_str("<div class=\"table-wrap\"><table class=\"segments\"><thead><tr><th>Value</th><th class=\"num\">Change</th><th class=\"num\">Share of change</th><th class=\"num\">Baseline P(s) · I</th><th class=\"num\">Candidate P(s) · I</th></tr></thead><tbody>");
        for i in r.items.iter().take(SHOWN) {
            let side = |x: &Option<crate::estimate::segmented::SideOfSegment>| match x {
                Some(v) => format!("{} · {}", pct(Some(v.share)), opt_num(v.estimate)),
                None => "—".into(),
            };
            let _ = write!(
                s,
                "<tr><td class=\"mono\">{}</td><td class=\"num strong\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                E(&i.value),
                opt_num(i.change),
                pct(i.change_share),
                side(&i.baseline),
                side(&i.candidate)
            );
        }
        s.push_str("</tbody></table></div>");
    }
    s.push_str("</section>");
    Ok(s)
}
