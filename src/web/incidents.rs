//! Incidents: every model's (firing first, then the newest) and one incident with the rule
//! messages of the decision that last changed it and the deliveries of its messages.

use std::fmt::Write;

use axum::http::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use super::html::{crumb, int, opt_time, page, respond, time, verdict, E};
use super::{data, WebError, WebResult};
use crate::api::state::AppState;

/// Incidents listed on `/incidents`.
const LIST: i64 = 200;

fn state_badge(st: &str) -> String {
    let class = if st == "firing" { "v-fail" } else { "v-pass" };
    format!("<span class=\"badge {class}\">{}</span>", E(st))
}

/// The host of a delivery URL: the rest (paths of Slack or webhook URLs) can be a secret.
fn host(url: &str) -> String {
    url.split("://")
        .nth(1)
        .and_then(|r| r.split(['/', '?', '#']).next())
        .map(|h| h.rsplit('@').next().unwrap_or(h).to_string())
        .unwrap_or_else(|| "—".into())
}

pub async fn list(state: &AppState, only: Option<&[String]>) -> WebResult {
    let mut tx = data::snapshot(&state.pool).await?;
    let rows = data::all_incidents(&mut tx, only, LIST).await?;
    tx.commit().await?;
    let firing = rows.iter().filter(|r| r.state == "firing").count();
    let mut b = String::with_capacity(16 * 1024);
    let _ = write!(
        b,
        "<h1>Incidents</h1><p class=\"lead\">{} firing. Firing incidents first, then the newest \
         (at most {LIST}).</p>",
        int(firing as i64)
    );
    if rows.is_empty() {
        b.push_str(
            "<p class=\"muted\">No incidents. A monitor opens one when its gate fails \
                    (<code>PUT /v1/models/{model}/monitors/{name}</code>).</p>",
        );
    } else {
        b.push_str("<div class=\"table-wrap\"><table><thead><tr><th>Model</th><th>Monitor</th><th>State</th><th>Severity</th><th>Version</th><th>Opened</th><th>Resolved</th><th class=\"num\">Messages</th></tr></thead><tbody>");
        for r in &rows {
            let _ = write!(
                b,
                "<tr><td><a href=\"/models/{m}\">{m}</a></td><td><a href=\"/incidents/{id}\">{mon}</a></td><td>{st}</td><td>{sev}</td><td>{v}</td><td>{o}</td><td>{res}</td><td class=\"num\">{d}<span class=\"ci\">{dead}</span></td></tr>",
                m = E(&r.model),
                id = r.id,
                mon = E(&r.monitor),
                st = state_badge(&r.state),
                sev = verdict(&r.severity),
                v = E(r.version.as_deref().unwrap_or("—")),
                o = time(&r.opened_at),
                res = opt_time(r.resolved_at.as_ref()),
                d = int(r.deliveries),
                dead = if r.dead > 0 {
                    format!("{} undeliverable", int(r.dead))
                } else {
                    String::new()
                },
            );
        }
        b.push_str("</tbody></table></div>");
    }
    Ok(respond(
        StatusCode::OK,
        page("Incidents", &[crumb("incidents", None)], None, &b),
    ))
}

pub async fn one(state: &AppState, id: Uuid) -> WebResult {
    let mut tx = data::snapshot(&state.pool).await?;
    let Some(i) = data::incident(&mut tx, id).await? else {
        return Err(WebError::NotFound(format!("There is no incident {id}.")));
    };
    let deliveries = data::deliveries(&mut tx, id).await?;
    tx.commit().await?;
    let mut b = String::with_capacity(16 * 1024);
    let _ = write!(
        b,
        "<h1>Incident <span class=\"mono small\">{id}</span></h1>\
         <dl class=\"facts\">\
         <div><dt>Model</dt><dd><a href=\"/models/{m}\">{m}</a></dd></div>\
         <div><dt>Monitor</dt><dd>{mon}</dd></div>\
         <div><dt>State</dt><dd>{st}</dd></div>\
         <div><dt>Severity</dt><dd>{sev}</dd></div>\
         <div><dt>Version</dt><dd>{v}</dd></div>\
         <div><dt>Opened</dt><dd>{o}</dd></div>\
         <div><dt>Resolved</dt><dd>{res}</dd></div>\
         </dl>",
        m = E(&i.model),
        mon = E(&i.monitor),
        st = state_badge(&i.state),
        sev = verdict(&i.severity),
        v = E(i.version.as_deref().unwrap_or("—")),
        o = time(&i.opened_at),
        res = opt_time(i.resolved_at.as_ref()),
    );
    // What the decision that last changed it said, rule by rule.
    b.push_str("<section><h2>Rules of the last decision</h2>");
    match i.decision.as_ref().and_then(|d| d["rules"].as_array()) {
        Some(rules) if !rules.is_empty() => {
            b.push_str("<div class=\"table-wrap\"><table><thead><tr><th>Metric</th><th>Verdict</th><th>Message</th></tr></thead><tbody>");
            for r in rules {
                let s = |v: &Value| v.as_str().unwrap_or("—").to_string();
                let _ = write!(
                    b,
                    "<tr><td class=\"mono\">{}</td><td>{}</td><td>{}</td></tr>",
                    E(&s(&r["metric"])),
                    verdict(&s(&r["verdict"])),
                    E(&s(&r["message"]))
                );
            }
            b.push_str("</tbody></table></div>");
            let _ = write!(
                b,
                "<p class=\"muted\">Decision <a class=\"mono\" href=\"/v1/gate-decisions/{d}\">{d}</a>.</p>",
                d = i.last_decision_id
            );
        }
        _ => b.push_str("<p class=\"muted\">The decision is no longer stored.</p>"),
    }
    b.push_str("</section>");
    // Its messages.
    b.push_str("<section><h2>Messages</h2>");
    if deliveries.is_empty() {
        b.push_str("<p class=\"muted\">No message was sent for it (no channel, or held by the monitor's cooldown).</p>");
    } else {
        b.push_str("<div class=\"table-wrap\"><table><thead><tr><th>Event</th><th>Channel</th><th>To</th><th>State</th><th class=\"num\">Attempts</th><th>Last answer</th><th>Created</th><th>Delivered</th></tr></thead><tbody>");
        for d in &deliveries {
            let answer = match (d.last_status, &d.last_error) {
                (_, Some(e)) => E(e).to_string(),
                (Some(s), None) => format!("HTTP {s}"),
                (None, None) => "—".into(),
            };
            let _ = write!(
                b,
                "<tr><td class=\"mono\">{}</td><td>{} <span class=\"muted\">{}</span></td><td class=\"mono small\">{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"small\">{}</td><td>{}</td><td>{}</td></tr>",
                E(&d.event),
                E(&d.channel),
                E(&d.kind),
                E(&host(&d.url)),
                E(&d.state),
                int(d.attempts as i64),
                answer,
                time(&d.created_at),
                opt_time(d.delivered_at.as_ref())
            );
        }
        b.push_str("</tbody></table></div>");
    }
    b.push_str("</section>");
    Ok(respond(
        StatusCode::OK,
        page(
            "Incident",
            &[
                crumb("incidents", Some("/incidents".into())),
                crumb(i.monitor.clone(), None),
            ],
            None,
            &b,
        ),
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn delivery_hosts_leave_paths_and_credentials_out() {
        assert_eq!(
            super::host("https://hooks.slack.com/services/T000/B000/XXXX"),
            "hooks.slack.com"
        );
        assert_eq!(
            super::host("https://user:pw@example.com:8443/hook?token=1"),
            "example.com:8443"
        );
        assert_eq!(super::host("not a url"), "—");
    }
}
