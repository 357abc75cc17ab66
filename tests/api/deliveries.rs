//! Monitor messages at the edges: the Slack form, severity changes, secrets across PUTs, the
//! retry schedule, dead-lettering after 24 h and redelivery, redirects, the 4 KiB answer cap,
//! and `window.hours`. A real PostgreSQL, the real workers and real HTTP receivers on loopback.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use crate::monitors::{
    binary, monitor, production, put, upload_and_wait, verifies, wait_evaluations,
    wait_outbox_idle, Receiver,
};
use crate::support::{app, fast_workers, TestApp};

/// What a [`Scripted`] receiver answers, changeable while it runs.
#[derive(Clone)]
enum Answer {
    Status(u16),
    /// 307 to this URL.
    Redirect(String),
    /// This status with a body of this many bytes.
    Big(u16, usize),
    /// 200 with a body that never ends.
    Endless,
}

/// Every request a receiver got: headers and body.
type Got = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

/// A receiver on loopback whose answer the test sets, recording every request.
struct Scripted {
    url: String,
    got: Got,
    answer: Arc<Mutex<Answer>>,
}

impl Scripted {
    async fn start(answer: Answer) -> Scripted {
        let got: Got = Default::default();
        let answer = Arc::new(Mutex::new(answer));
        let (g, a) = (got.clone(), answer.clone());
        let router = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let (g, a) = (g.clone(), a.clone());
                async move {
                    g.lock().unwrap().push((headers, body.to_vec()));
                    let answer = a.lock().unwrap().clone();
                    let builder = axum::http::Response::builder();
                    match answer {
                        Answer::Status(s) => builder.status(s).body(axum::body::Body::from("ok")),
                        Answer::Redirect(to) => builder
                            .status(307)
                            .header("location", to)
                            .body(axum::body::Body::empty()),
                        Answer::Big(s, n) => builder
                            .status(s)
                            .body(axum::body::Body::from(vec![b'x'; n])),
                        Answer::Endless => {
                            let chunk = bytes::Bytes::from(vec![b'y'; 64 * 1024]);
                            let stream = futures_util::stream::repeat_with(move || {
                                Ok::<_, std::convert::Infallible>(chunk.clone())
                            });
                            builder
                                .status(200)
                                .body(axum::body::Body::from_stream(stream))
                        }
                    }
                    .unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Scripted {
            url: format!("http://{addr}/hook"),
            got,
            answer,
        }
    }

    fn set(&self, a: Answer) {
        *self.answer.lock().unwrap() = a;
    }

    fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }
}

/// The model's only delivery of monitor `watch`, as listed by the API (None before it is
/// written).
async fn the_delivery(app: &TestApp) -> Option<Value> {
    let (s, dl) = app.get("/v1/models/m/monitors/watch/deliveries").await;
    assert_eq!(s, StatusCode::OK, "{dl}");
    let items = dl["items"].as_array().unwrap();
    assert!(items.len() <= 1, "{dl}");
    items.first().cloned()
}

/// Wait until the delivery exists and satisfies `done` (it is read through the API).
async fn wait_delivery(app: &TestApp, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = the_delivery(app).await;
        if let Some(d) = d.as_ref().filter(|d| done(d)) {
            return d.clone();
        }
        assert!(Instant::now() < deadline, "never {what}: {d:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A firing message for monitor `watch` on production (v1 perfect, then a weak batch).
async fn firing(app: &TestApp, url: &str) -> String {
    production(app).await;
    upload_and_wait(app, "v1", &binary(3)).await;
    let (s, m) = put(app, "/v1/models/m/monitors/watch", monitor(url, json!({}))).await;
    assert_eq!(s, StatusCode::OK, "{m}");
    let (s, e) = app
        .send("POST", "/v1/models/m/monitors/watch/evaluate", None, None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{e}");
    m["secrets"]["ops"].as_str().unwrap().to_string()
}

/// A warning, then a failure, then a recovery: three messages on each channel (firing,
/// severity_changed, resolved). The Slack channel gets `{text, blocks}` built from the same
/// decision as the JSON message: its headline names the monitor, model, version, event,
/// verdict and severity, and each rule's line carries the JSON message's value to 4 places.
#[tokio::test]
async fn slack_messages_and_severity_changes() {
    let app = app().await;
    let workers = app.workers(fast_workers(2));
    production(&app).await;
    let (json_rx, slack_rx) = (Receiver::start(&[]).await, Receiver::start(&[]).await);
    // Values (bits, jackknife of the `binary` tables): binary(0) 1 (clipped), binary(1)
    // 0.549 ± 0.1, binary(3) 0.14: a warning rule at 0.8 and a failing one at 0.3.
    let spec = monitor(
        &json_rx.url,
        json!({
            "rules": [
                {"metric": "shannon_mi", "op": "gte", "threshold": 0.8, "severity": "warning"},
                {"metric": "shannon_mi", "op": "gte", "threshold": 0.3}],
            "channels": [
                {"name": "ops", "type": "webhook", "url": json_rx.url},
                {"name": "chat", "type": "slack", "url": slack_rx.url}],
            "notify_on": ["fail", "warn", "recovered"]}),
    );
    let (s, m) = put(&app, "/v1/models/m/monitors/watch", spec).await;
    assert_eq!(s, StatusCode::OK, "{m}");
    let chat_secret = m["secrets"]["chat"].as_str().unwrap().to_string();
    let mut n = 0;
    for (i, (wrong, event, verdict)) in [
        (1, "incident.firing", "warn"),
        (3, "incident.severity_changed", "fail"),
        (0, "incident.resolved", "pass"),
    ]
    .into_iter()
    .enumerate()
    {
        upload_and_wait(&app, "v1", &binary(wrong)).await;
        n += 1;
        wait_evaluations(&app, n).await;
        json_rx.wait_for(i + 1, 30).await;
        slack_rx.wait_for(i + 1, 30).await;
        let (_, _, msg) = json_rx.message(i);
        assert_eq!(msg["type"], event, "{msg}");
        assert_eq!(msg["data"]["verdict"], verdict, "{msg}");
        let (h, body, slack) = slack_rx.message(i);
        assert!(
            verifies(&chat_secret, &h, &body),
            "Slack messages are signed too"
        );
        let keys: Vec<&String> = slack.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["blocks", "text"], "{slack}");
        let d = &msg["data"];
        let head = match event {
            "incident.firing" => "firing",
            "incident.severity_changed" => "changed severity",
            _ => "resolved",
        };
        let text = format!(
            "infoaudit monitor watch on m v1: {head} ({verdict}: {})",
            d["incident"]["severity"].as_str().unwrap_or("")
        );
        assert_eq!(slack["text"], text.as_str(), "{slack}");
        assert_eq!(slack["blocks"][0]["text"]["text"], format!("*{text}*"));
        let lines = slack["blocks"][1]["text"]["text"].as_str().unwrap();
        for r in d["rules"].as_array().unwrap() {
            let line = format!(
                "• `shannon_mi` {}: value {:.4} [{:.4}, {:.4}]",
                r["verdict"].as_str().unwrap(),
                r["value"].as_f64().unwrap(),
                r["ci_low"].as_f64().unwrap(),
                r["ci_high"].as_f64().unwrap()
            );
            assert!(lines.contains(&line), "{line} not in {lines}");
        }
        let link = slack["blocks"][2]["elements"][0]["text"].as_str().unwrap();
        assert!(
            link.contains(d["decision_id"].as_str().unwrap()) && link.contains("/models/m"),
            "{link}"
        );
    }
    let (_, inc) = app.get("/v1/models/m/incidents").await;
    let items = inc["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "one incident whose severity changed: {inc}");
    assert_eq!(items[0]["state"], "resolved");
    workers.shutdown().await;
}

/// A PUT that keeps a channel's name and URL keeps its secret (and shows no new one); a new URL
/// gets a new secret, and messages are signed with the channel's current one.
#[tokio::test]
async fn a_channel_keeps_its_secret_across_puts_until_its_url_changes() {
    let app = app().await;
    let workers = app.workers(fast_workers(1));
    let (a, b) = (Receiver::start(&[]).await, Receiver::start(&[]).await);
    let first = firing(&app, &a.url).await;
    a.wait_for(1, 30).await;
    let (h, body, _) = a.message(0);
    assert!(verifies(&first, &h, &body));
    // The same channel, another rule: no secret shown, the old one still signs.
    let (s, m) = put(
        &app,
        "/v1/models/m/monitors/watch",
        monitor(
            &a.url,
            json!({"rules": [{"metric": "shannon_mi", "op": "gte", "threshold": 0.6}]}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{m}");
    assert_eq!(m["version"], 2);
    assert_eq!(m["secrets"], json!({}), "{m}");
    let (s, _) = app
        .send("POST", "/v1/models/m/monitors/watch/evaluate", None, None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    wait_evaluations(&app, 2).await;
    wait_outbox_idle(&app).await;
    // Still firing: nothing new. Resolve it to get a message under version 2.
    upload_and_wait(&app, "v1", &binary(0)).await;
    a.wait_for(2, 30).await;
    let (h, body, msg) = a.message(1);
    assert_eq!(msg["type"], "incident.resolved");
    assert!(verifies(&first, &h, &body), "the kept secret signs");
    // A new URL: a new secret, and the old one no longer verifies.
    let (s, m) = put(
        &app,
        "/v1/models/m/monitors/watch",
        monitor(&b.url, json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{m}");
    let second = m["secrets"]["ops"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    upload_and_wait(&app, "v1", &binary(3)).await;
    b.wait_for(1, 30).await;
    let (h, body, _) = b.message(0);
    assert!(verifies(&second, &h, &body) && !verifies(&first, &h, &body));
    workers.shutdown().await;
}

/// A receiver that always fails: attempts are spaced by the schedule (base 50 ms doubling to a
/// 200 ms cap in the test workers, × a jitter in [0.5, 1.5)); a message still failing 24 h
/// after it was written is `dead` and no longer tried; a redelivery gives it a fresh 24 h and
/// the same `webhook-id`, and it is delivered once the receiver answers.
#[tokio::test]
async fn retries_follow_the_schedule_die_after_24_hours_and_redelivery_starts_again() {
    let app = app().await;
    let workers = app.workers(fast_workers(1));
    let rx = Scripted::start(Answer::Status(503)).await;
    firing(&app, &rx.url).await;
    let d = wait_delivery(&app, "retried 6 times", |d| {
        d["attempts"].as_i64().unwrap() >= 6
    })
    .await;
    // Still being retried: waiting for its next attempt, or in it (the list may be read while
    // the seventh attempt is under way).
    assert!(d["state"] == "pending" || d["state"] == "delivering", "{d}");
    assert_eq!(d["last_status"], 503);
    let log = d["attempt_log"].as_array().unwrap();
    let at: Vec<chrono::DateTime<chrono::Utc>> = log
        .iter()
        .map(|a| a["at"].as_str().unwrap().parse().unwrap())
        .collect();
    for n in 1..at.len().min(6) {
        let gap = (at[n] - at[n - 1]).num_milliseconds() as f64;
        let delay = (50.0 * 2f64.powi(n as i32 - 1)).min(200.0);
        // At least half the delay; at most 1.5 × it plus an idle deliverer's look (100 ms), the
        // attempt itself and a loaded machine's scheduling.
        assert!(
            gap >= 0.5 * delay - 20.0 && gap <= 1.5 * delay + 1500.0,
            "attempt {} came {gap} ms after attempt {n} (delay {delay} ms × [0.5, 1.5)): {d}",
            n + 1
        );
    }
    // 24 h of failures: the next failure dead-letters it.
    sqlx::query("UPDATE webhook_deliveries SET retry_from = now() - interval '24 hours'")
        .execute(&app.pool)
        .await
        .unwrap();
    let dead = wait_delivery(&app, "dead", |d| d["state"] == "dead").await;
    let tried = dead["attempts"].as_i64().unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        the_delivery(&app).await.unwrap()["attempts"],
        tried,
        "a dead message is not tried"
    );
    assert_eq!(rx.count() as i64, tried);
    // Redelivery: pending again with a fresh 24 h; the receiver recovers and gets it.
    rx.set(Answer::Status(200));
    let id = dead["id"].as_str().unwrap();
    let (s, r) = app
        .send(
            "POST",
            &format!("/v1/models/m/monitors/watch/deliveries/{id}/redeliver"),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    let done = wait_delivery(&app, "delivered", |d| d["state"] == "delivered").await;
    assert_eq!(done["webhook_id"], dead["webhook_id"]);
    assert_eq!(done["attempts"].as_i64().unwrap(), tried + 1);
    let fresh: bool = sqlx::query_scalar(
        "SELECT retry_from > now() - interval '1 minute' FROM webhook_deliveries",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(fresh, "redelivery restarts the 24 h");
    workers.shutdown().await;
}

/// Redirects are not followed (a 307 is a failed attempt; its target gets nothing); an error
/// answer's body is read at most 4 KiB (the recorded error quotes 200 characters of it); and a
/// 200 whose body never ends is delivered, not held until the attempt times out.
#[tokio::test]
async fn redirects_are_refused_and_answers_are_read_at_most_4_kib() {
    let app = app().await;
    let workers = app.workers(fast_workers(1));
    let elsewhere = Scripted::start(Answer::Status(200)).await;
    let rx = Scripted::start(Answer::Redirect(elsewhere.url.clone())).await;
    firing(&app, &rx.url).await;
    let d = wait_delivery(&app, "tried", |d| d["attempts"].as_i64().unwrap() >= 2).await;
    assert_eq!(d["attempt_log"][0]["status"], 307, "{d}");
    assert_ne!(d["state"], "delivered");
    assert_eq!(elsewhere.count(), 0, "the redirect was followed");

    rx.set(Answer::Big(500, 1 << 20));
    let d = wait_delivery(&app, "answered 500", |d| d["last_status"] == 500).await;
    let error = d["last_error"].as_str().unwrap();
    assert!(error.starts_with("answered 500: xxx"), "{error}");
    assert!(error.len() <= 230, "{} bytes of error", error.len());

    rx.set(Answer::Endless);
    let d = wait_delivery(&app, "delivered", |d| d["state"] == "delivered").await;
    let last = d["attempt_log"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["status"], 200, "{d}");
    eprintln!(
        "an endless 200 answer was delivered in {} ms; a 1 MiB error answer is quoted in {} bytes",
        last["latency_ms"],
        error.len()
    );
    // The test workers' attempt limit is 5 s: an attempt that read the endless body would end
    // there, timed out (and not be delivered).
    assert!(
        last["latency_ms"].as_f64().unwrap() < 4000.0,
        "the endless answer was read for {} ms",
        last["latency_ms"]
    );
    workers.shutdown().await;
}

/// `window: {hours: 1}` judges only the batches of the last hour: a weak batch written two
/// hours ago is out of the window, so the version passes on its recent perfect batch, while
/// `{hours: 3}` pools both (the table [[125, 75], [0, 200]], 0.42 bit) and fails a 0.7 bit
/// threshold.
#[tokio::test]
async fn window_hours_leaves_older_batches_out() {
    let app = app().await;
    let workers = app.workers(fast_workers(1));
    upload_and_wait(&app, "v1", &binary(3)).await;
    sqlx::query("UPDATE batches SET created_at = now() - interval '2 hours'")
        .execute(&app.pool)
        .await
        .unwrap();
    upload_and_wait(&app, "v1", &binary(0)).await;
    let rx = Receiver::start(&[]).await;
    let mut n = 0;
    for (window, verdict, batches) in [
        (json!({"hours": 1}), "pass", 1),
        (json!({"hours": 3}), "fail", 2),
        (json!({"batches": 1}), "pass", 1),
    ] {
        let spec = monitor(
            &rx.url,
            json!({"target": {"version": "v1"}, "window": window, "notify_on": ["fail"],
                   "rules": [{"metric": "shannon_mi", "op": "gte", "threshold": 0.7}],
                   "triggers": {"on_result": true, "on_alias_change": false}}),
        );
        let (s, m) = put(&app, "/v1/models/m/monitors/watch", spec).await;
        assert_eq!(s, StatusCode::OK, "{m}");
        let (s, _) = app
            .send("POST", "/v1/models/m/monitors/watch/evaluate", None, None)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED);
        n += 1;
        wait_evaluations(&app, n).await;
        let id: uuid::Uuid = sqlx::query_scalar(
            "SELECT id FROM gate_decisions WHERE monitor IS NOT NULL ORDER BY evaluated_at DESC LIMIT 1",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        let (_, d) = app.get(&format!("/v1/gate-decisions/{id}")).await;
        assert_eq!(d["verdict"], verdict, "{window}: {d}");
        assert_eq!(
            d["batches"].as_array().unwrap().len(),
            batches,
            "{window}: {d}"
        );
    }
    workers.shutdown().await;
}
