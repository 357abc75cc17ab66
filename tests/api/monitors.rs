//! Monitors end to end: the real router and workers, a real PostgreSQL, and a real HTTP receiver
//! on a loopback port.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::support::{app, app_with_limits, fast_workers, series_value, TestApp};

/// What a receiver got: headers and body of each request.
type Received = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

/// An HTTP receiver on 127.0.0.1 that records every request and answers the scripted statuses
/// in turn (200 once the script is used up).
pub struct Receiver {
    pub url: String,
    got: Received,
}

impl Receiver {
    pub async fn start(script: &[u16]) -> Receiver {
        Receiver::start_with(script, false).await
    }

    /// With `hold_first`, the first request of each `webhook-id` is recorded and never answered
    /// (as if the receiver were slow while the sender dies); repeats are answered.
    pub async fn start_with(script: &[u16], hold_first: bool) -> Receiver {
        let got: Received = Default::default();
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let (g, sc) = (got.clone(), script.clone());
        let router = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let (g, sc) = (g.clone(), sc.clone());
                async move {
                    let first = {
                        let mut g = g.lock().unwrap();
                        let id = headers.get("webhook-id").cloned();
                        let first = !g.iter().any(|(h, _)| h.get("webhook-id") == id.as_ref());
                        g.push((headers, body.to_vec()));
                        first
                    };
                    if hold_first && first {
                        tokio::time::sleep(Duration::from_secs(600)).await;
                    }
                    let s = sc.lock().unwrap().pop_front().unwrap_or(200);
                    (StatusCode::from_u16(s).unwrap(), "ok")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Receiver {
            url: format!("http://{addr}/hook"),
            got,
        }
    }

    pub fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    pub fn message(&self, i: usize) -> (HeaderMap, Vec<u8>, Value) {
        let g = self.got.lock().unwrap();
        let (h, b) = g[i].clone();
        let v = serde_json::from_slice(&b).unwrap();
        (h, b, v)
    }

    pub async fn wait_for(&self, n: usize, secs: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        while self.count() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "the receiver got {} requests, expected {n}",
                self.count()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Verify a Standard Webhooks signature with the secret shown at PUT.
pub fn verifies(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let id = headers["webhook-id"].to_str().unwrap();
    let ts = headers["webhook-timestamp"].to_str().unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    headers["webhook-signature"]
        .to_str()
        .unwrap()
        .split(' ')
        .any(|s| s == expected)
}

/// 200 samples of a binary classifier with `wrong` of every 8 predictions of label 0 flipped:
/// `binary(0)` is perfect (shannon_mi ≈ 1 bit), `binary(3)` weak (≈ 0.14 bit).
pub fn binary(wrong: usize) -> Value {
    let (mut labels, mut preds) = (vec![], vec![]);
    for _ in 0..25 {
        let l = [0, 0, 0, 0, 1, 1, 1, 1];
        let mut p = l;
        for x in p.iter_mut().take(wrong) {
            *x = 1 - *x;
        }
        labels.extend(l);
        preds.extend(p);
    }
    json!({"task": "multiclass", "labels": labels, "predictions": preds,
           "estimators": [{"id": "shannon_mi"}]})
}

pub(crate) async fn upload_and_wait(app: &TestApp, version: &str, body: &Value) {
    let (s, b) = app.upload("m", version, body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    for j in b["jobs"].as_array().unwrap() {
        assert_eq!(
            app.wait_job(j["id"].as_str().unwrap(), 30).await["state"],
            "succeeded"
        );
    }
}

pub(crate) async fn put(app: &TestApp, uri: &str, body: Value) -> (StatusCode, Value) {
    app.send("PUT", uri, None, Some(&body)).await
}

/// Wait until `n` evaluations of the model's monitors have ended.
pub(crate) async fn wait_evaluations(app: &TestApp, n: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM monitor_jobs WHERE state IN ('done', 'failed')",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if done >= n {
            assert_eq!(done, n, "more evaluations than expected");
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{done} of {n} evaluations ended"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Let deliveries in flight settle (nothing pending or being delivered).
pub(crate) async fn wait_outbox_idle(app: &TestApp) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let busy: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM webhook_deliveries WHERE state IN ('pending', 'delivering')",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if busy == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the outbox never drained"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub(crate) fn monitor(url: &str, extra: Value) -> Value {
    let mut m = json!({
        "target": {"alias": "production"},
        "rules": [{"metric": "shannon_mi", "op": "gte", "threshold": 0.5}],
        "window": {"batches": 1},
        "triggers": {"on_result": true, "on_alias_change": false},
        "channels": [{"name": "ops", "type": "webhook", "url": url}],
        "notify_on": ["fail", "recovered"]
    });
    for (k, v) in extra.as_object().unwrap() {
        m[k] = v.clone();
    }
    m
}

/// A model `m` with version v1 (one perfect batch) named by `production`.
pub(crate) async fn production(app: &TestApp) {
    upload_and_wait(app, "v1", &binary(0)).await;
    let (s, b) = put(
        app,
        "/v1/models/m/aliases/production",
        json!({"version": "v1"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn a_regression_fires_once_signed_and_its_recovery_resolves() {
    let app = app().await;
    let before = app.metrics_text().await;
    let workers = app.workers(fast_workers(2));
    production(&app).await;
    let rx = Receiver::start(&[]).await;
    let (s, m) = put(
        &app,
        "/v1/models/m/monitors/watch",
        monitor(&rx.url, json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{m}");
    assert_eq!(m["version"], 1);
    let secret = m["secrets"]["ops"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{m}");
    // The secret is shown once: not by GET.
    let (s, got) = app.get("/v1/models/m/monitors/watch").await;
    assert_eq!(s, StatusCode::OK);
    assert!(got.get("secrets").is_none() && !got.to_string().contains(&secret));
    assert_eq!(got["state"]["status"], "ok");

    // A weak batch on production: one evaluation, one incident, one signed message.
    upload_and_wait(&app, "v1", &binary(3)).await;
    wait_evaluations(&app, 1).await;
    rx.wait_for(1, 30).await;
    let (h, body, msg) = rx.message(0);
    assert!(verifies(&secret, &h, &body), "the signature must verify");
    assert!(!verifies(&crate::monitors::other_secret(), &h, &body));
    let id1 = h["webhook-id"].to_str().unwrap().to_string();
    let ts: i64 = h["webhook-timestamp"].to_str().unwrap().parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);
    assert_eq!(msg["type"], "incident.firing", "{msg}");
    let d = &msg["data"];
    assert_eq!(d["model"], "m");
    assert_eq!(d["version"], "v1");
    assert_eq!(d["monitor"]["name"], "watch");
    assert_eq!(d["verdict"], "fail");
    assert_eq!(d["incident"]["severity"], "fail");
    let rule = &d["rules"][0];
    assert_eq!(rule["metric"], "shannon_mi");
    assert_eq!(rule["verdict"], "fail");
    assert!(rule["value"].as_f64().unwrap() < 0.5, "{rule}");
    assert!(rule["ci_low"].is_number() && rule["ci_high"].is_number());
    let decision = d["decision_id"].as_str().unwrap();
    assert_eq!(
        d["decision_url"],
        format!("http://infoaudit.test/v1/gate-decisions/{decision}")
    );
    // The decision is stored like a gate's, marked with the monitor, judged on the window (the
    // last batch only).
    let (s, stored) = app.get(&format!("/v1/gate-decisions/{decision}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(stored["monitor"]["name"], "watch");
    assert_eq!(stored["verdict"], "fail");
    assert_eq!(stored["batches"].as_array().unwrap().len(), 1);
    let (_, got) = app.get("/v1/models/m/monitors/watch").await;
    assert_eq!(got["state"]["status"], "firing");
    assert_eq!(got["state"]["severity"], "fail");
    // The model page lists the monitor, firing, and its open incident.
    let (s, html) = app.get("/models/m").await;
    assert_eq!(s, StatusCode::OK);
    let html = html.as_str().unwrap();
    assert!(html.contains("<h2>Monitors</h2>") && html.contains("firing: fail"));
    assert!(html.contains("alias production"));
    assert!(html.contains("<tr id=\"incident-"));

    // Another weak batch: evaluated, still firing, no second message.
    upload_and_wait(&app, "v1", &binary(3)).await;
    wait_evaluations(&app, 2).await;
    wait_outbox_idle(&app).await;
    assert_eq!(rx.count(), 1, "one message per incident, not per batch");

    // A good batch resolves it: one `incident.resolved` with its own webhook-id.
    upload_and_wait(&app, "v1", &binary(0)).await;
    wait_evaluations(&app, 3).await;
    rx.wait_for(2, 30).await;
    let (h, body, msg) = rx.message(1);
    assert!(verifies(&secret, &h, &body));
    assert_eq!(msg["type"], "incident.resolved", "{msg}");
    assert_eq!(msg["data"]["verdict"], "pass");
    assert_ne!(h["webhook-id"].to_str().unwrap(), id1);

    let (s, inc) = app.get("/v1/models/m/incidents").await;
    assert_eq!(s, StatusCode::OK);
    let items = inc["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{inc}");
    assert_eq!(items[0]["state"], "resolved");
    assert_eq!(items[0]["monitor"], "watch");
    let (_, dl) = app.get("/v1/models/m/monitors/watch/deliveries").await;
    let dl = dl["items"].as_array().unwrap().clone();
    assert_eq!(dl.len(), 2);
    for x in &dl {
        assert_eq!(x["state"], "delivered", "{x}");
        assert_eq!(x["attempts"], 1);
        assert_eq!(x["attempt_log"][0]["status"], 200);
        assert!(x["attempt_log"][0]["latency_ms"].as_f64().unwrap() >= 0.0);
    }
    assert_eq!(dl[1]["webhook_id"], id1.as_str());
    // The dashboard's incidents: the list, and the incident with its rules and both messages.
    let (s, list) = app.get("/incidents").await;
    assert_eq!(s, StatusCode::OK);
    let list = list.as_str().unwrap();
    let iid = items[0]["id"].as_str().unwrap();
    assert!(list.contains("0 firing"), "{list}");
    assert!(
        list.contains(&format!("href=\"/incidents/{iid}\">watch</a>")),
        "{list}"
    );
    let (s, one) = app.get(&format!("/incidents/{iid}")).await;
    assert_eq!(s, StatusCode::OK);
    let one = one.as_str().unwrap();
    assert!(one.contains("badge v-pass\">resolved</span>"), "{one}");
    assert!(one.contains("<h2>Rules of the last decision</h2>"), "{one}");
    for event in ["incident.firing", "incident.resolved"] {
        assert!(
            one.contains(&format!("<td class=\"mono\">{event}</td>")),
            "{one}"
        );
    }
    assert_eq!(one.matches("<td>delivered</td>").count(), 2, "{one}");
    // The delivery URL's path (where a secret may live) is not shown.
    let url = dl[0]["url"].as_str().unwrap_or("");
    if let Some(path) = url
        .split("://")
        .nth(1)
        .and_then(|r| r.find('/').map(|i| &r[i..]))
    {
        if path.len() > 1 {
            assert!(!one.contains(path), "{one}");
        }
    }
    let (s, _) = app
        .get(&format!("/incidents/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The counters are the process's (other tests add to them): this test's own share is the
    // growth since its start, at least its one failing evaluation and two deliveries. The open
    // incidents gauge is read from this test's database.
    let after = app.metrics_text().await;
    assert_eq!(
        series_value(&after, "infoaudit_monitor_open_incidents"),
        0.0
    );
    let grew = |series: &str| series_value(&after, series) - series_value(&before, series);
    assert!(
        grew("infoaudit_monitor_evaluations_total{verdict=\"fail\"}") >= 1.0,
        "{after}"
    );
    assert!(
        grew("infoaudit_webhook_delivery_seconds_count{}") >= 2.0,
        "{after}"
    );
    workers.shutdown().await;
}

pub fn other_secret() -> String {
    infoaudit::monitor::deliver::new_secret()
}

#[tokio::test]
async fn a_receiver_failing_twice_gets_one_message_in_three_attempts() {
    let app = app().await;
    let workers = app.workers(fast_workers(1));
    production(&app).await;
    upload_and_wait(&app, "v1", &binary(3)).await;
    let rx = Receiver::start(&[500, 500]).await;
    let (s, m) = put(
        &app,
        "/v1/models/m/monitors/watch",
        monitor(&rx.url, json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{m}");
    let secret = m["secrets"]["ops"].as_str().unwrap().to_string();
    let (s, e) = app
        .send("POST", "/v1/models/m/monitors/watch/evaluate", None, None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{e}");
    rx.wait_for(3, 30).await;
    wait_outbox_idle(&app).await;
    assert_eq!(rx.count(), 3);
    let ids: Vec<String> = (0..3)
        .map(|i| rx.message(i).0["webhook-id"].to_str().unwrap().to_string())
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    for i in 0..3 {
        let (h, b, _) = rx.message(i);
        assert!(verifies(&secret, &h, &b));
    }
    let (_, dl) = app.get("/v1/models/m/monitors/watch/deliveries").await;
    let dl = dl["items"].as_array().unwrap();
    assert_eq!(dl.len(), 1, "one logical delivery");
    assert_eq!(dl[0]["state"], "delivered");
    assert_eq!(dl[0]["attempts"], 3);
    assert_eq!(dl[0]["webhook_id"], ids[0].as_str());
    let statuses: Vec<i64> = dl[0]["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, vec![500, 500, 200]);

    // Manual redelivery: the same message again, the same webhook-id.
    let id = dl[0]["id"].as_str().unwrap();
    let (s, r) = app
        .send(
            "POST",
            &format!("/v1/models/m/monitors/watch/deliveries/{id}/redeliver"),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    rx.wait_for(4, 30).await;
    assert_eq!(rx.message(3).0["webhook-id"].to_str().unwrap(), ids[0]);
    assert_eq!(rx.message(3).1, rx.message(0).1, "the same body");
    workers.shutdown().await;
}

#[tokio::test]
async fn a_cooldown_holds_a_second_incident_and_its_resolution() {
    let app = app().await;
    let workers = app.workers(fast_workers(2));
    production(&app).await;
    let rx = Receiver::start(&[]).await;
    let (s, m) = put(
        &app,
        "/v1/models/m/monitors/watch",
        monitor(&rx.url, json!({"cooldown": "1h"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{m}");
    let mut n = 0;
    for (wrong, messages) in [(3, 1), (0, 2), (3, 2), (0, 2)] {
        upload_and_wait(&app, "v1", &binary(wrong)).await;
        n += 1;
        wait_evaluations(&app, n).await;
        wait_outbox_idle(&app).await;
        assert_eq!(rx.count(), messages, "after evaluation {n}");
    }
    let kinds: Vec<Value> = (0..2).map(|i| rx.message(i).2["type"].clone()).collect();
    assert_eq!(kinds, vec!["incident.firing", "incident.resolved"]);
    let (_, inc) = app.get("/v1/models/m/incidents").await;
    let items = inc["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{inc}");
    assert_eq!(items[0]["notified"], false, "the second incident was held");
    assert_eq!(items[0]["state"], "resolved");
    assert_eq!(items[1]["notified"], true);

    // Without `recovered`, no resolution is sent.
    let (s, _) = put(
        &app,
        "/v1/models/m/monitors/watch",
        monitor(&rx.url, json!({"notify_on": ["fail"]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let before = rx.count();
    for (wrong, more) in [(3, 1), (0, 1)] {
        upload_and_wait(&app, "v1", &binary(wrong)).await;
        n += 1;
        wait_evaluations(&app, n).await;
        wait_outbox_idle(&app).await;
        assert_eq!(rx.count(), before + more);
    }
    workers.shutdown().await;
}

#[tokio::test]
async fn an_alias_move_triggers_an_evaluation() {
    let app = app().await;
    let workers = app.workers(fast_workers(2));
    production(&app).await;
    upload_and_wait(&app, "v2", &binary(3)).await;
    let rx = Receiver::start(&[]).await;
    let (s, m) = put(
        &app,
        "/v1/models/m/monitors/watch",
        monitor(
            &rx.url,
            json!({"triggers": {"on_result": false, "on_alias_change": true}}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{m}");
    let (s, _) = put(
        &app,
        "/v1/models/m/aliases/production",
        json!({"version": "v2"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    wait_evaluations(&app, 1).await;
    rx.wait_for(1, 30).await;
    let (_, _, msg) = rx.message(0);
    assert_eq!(msg["type"], "incident.firing");
    assert_eq!(msg["data"]["version"], "v2");
    assert_eq!(msg["data"]["trigger"], "on_alias_change");
    // Moving back resolves it.
    let (s, _) = put(
        &app,
        "/v1/models/m/aliases/production",
        json!({"version": "v1"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    wait_evaluations(&app, 2).await;
    rx.wait_for(2, 30).await;
    assert_eq!(rx.message(1).2["type"], "incident.resolved");
    assert_eq!(rx.message(1).2["data"]["version"], "v1");
    workers.shutdown().await;
}

#[tokio::test]
async fn invalid_monitors_and_private_destinations_are_refused() {
    // The default limits: private destinations refused.
    let app = app_with_limits(Default::default()).await;
    let problem = |v: &Value| -> Vec<String> {
        v["errors"]
            .as_array()
            .unwrap_or(&vec![])
            .iter()
            .map(|e| e["pointer"].as_str().unwrap_or("").to_string())
            .collect()
    };
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.7/hook",
        "http://[::1]:9/hook",
        "ftp://8.8.8.8/hook",
    ] {
        let (s, v) = put(&app, "/v1/models/m/monitors/watch", monitor(url, json!({}))).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {v}");
        assert_eq!(problem(&v), vec!["/channels/0/url"], "{v}");
    }
    let cases = [
        (json!({"target": {}}), "/target"),
        (
            json!({"target": {"alias": "production", "latest": true}}),
            "/target",
        ),
        (json!({"triggers": {"every": "5x"}}), "/triggers/every"),
        (json!({"triggers": {"every": "5s"}}), "/triggers/every"),
        (json!({"window": {"batches": 0}}), "/window/batches"),
        (json!({"cooldown": "soon"}), "/cooldown"),
        (json!({"rules": []}), "/rules"),
        (json!({"notify_on": ["loudly"]}), "/notify_on/0"),
        (json!({"colour": "red"}), "/"),
    ];
    // A well-formed reference to a gate policy that is not stored: 404, as on the gate route.
    let mut body = monitor("https://8.8.8.8/hook", json!({"gate": "release"}));
    body.as_object_mut().unwrap().remove("rules");
    let (s, v) = put(&app, "/v1/models/m/monitors/watch", body).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains("gate release"),
        "{v}"
    );
    for (extra, pointer) in cases {
        let mut body = monitor("https://8.8.8.8/hook", extra.clone());
        if extra.get("gate").is_some() {
            body.as_object_mut().unwrap().remove("rules");
        }
        let (s, v) = put(&app, "/v1/models/m/monitors/watch", body).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{extra}: {v}");
        assert!(
            problem(&v).iter().any(|p| p.starts_with(pointer)),
            "{extra}: expected {pointer} in {v}"
        );
    }
    // Nothing was stored.
    assert_eq!(app.count("monitors").await, 0);
    // A public destination is accepted; DELETE removes it.
    let (s, v) = put(
        &app,
        "/v1/models/m/monitors/watch",
        monitor("https://8.8.8.8/hook", json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = app.get("/v1/models/m/monitors").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v.as_array().unwrap().len(), 1);
    let (s, _) = app
        .send("DELETE", "/v1/models/m/monitors/watch", None, None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app.get("/v1/models/m/monitors/watch").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_schedule_slot_is_evaluated_once_with_two_worker_pools() {
    let app = app().await;
    let (a, b) = (app.workers(fast_workers(1)), app.workers(fast_workers(1)));
    production(&app).await;
    let rx = Receiver::start(&[]).await;
    let (s, m) = put(
        &app,
        "/v1/models/m/monitors/watch",
        monitor(
            &rx.url,
            json!({"triggers": {"on_result": false, "on_alias_change": false, "every": "1h"}}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{m}");
    let next: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(m["state"]["next_run_at"].clone()).unwrap();
    assert!(next > chrono::Utc::now() + chrono::Duration::minutes(59));
    // Make the slot due now: both pools' schedulers look every 100 ms; one enqueues it.
    sqlx::query("UPDATE monitor_state SET next_run_at = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .unwrap();
    wait_evaluations(&app, 1).await;
    // A second evaluation of the slot would be enqueued by the other pool's scheduler on one of
    // its next looks: watch for it over eight of them (an absence has no event to wait for).
    let watch_until = std::time::Instant::now() + Duration::from_millis(800);
    while std::time::Instant::now() < watch_until {
        let every: i64 =
            sqlx::query_scalar("SELECT count(*) FROM monitor_jobs WHERE trigger = 'every'")
                .fetch_one(&app.pool)
                .await
                .unwrap();
        assert_eq!(every, 1, "one evaluation per slot");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let every: i64 =
        sqlx::query_scalar("SELECT count(*) FROM monitor_jobs WHERE trigger = 'every'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(every, 1, "one evaluation per slot");
    let (_, got) = app.get("/v1/models/m/monitors/watch").await;
    assert_eq!(got["state"]["last_verdict"], "pass");
    let next: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(got["state"]["next_run_at"].clone()).unwrap();
    assert!(
        next > chrono::Utc::now() + chrono::Duration::minutes(29),
        "{got}"
    );
    assert_eq!(rx.count(), 0, "a passing evaluation sends nothing");
    a.shutdown().await;
    b.shutdown().await;
}
