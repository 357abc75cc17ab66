//! Nothing a client sends takes the service down: cost bounds decided before anything is
//! allocated, 503 (never 500) while the database is unreachable, the queue ceiling, the per-key
//! rate limit.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use infoaudit::api::{AppState, Limits};
use infoaudit::estimate::cost;
use serde_json::{json, Value};

use crate::support::{
    app_with_limits, classifier_batch, fast_workers, fresh_db, series_value, TestApp,
};

/// The batch of the issue: 3 samples, 200 000 class names.
fn issue_batch() -> Value {
    let classes: Vec<String> = (0..200_000).map(|i| format!("c{i}")).collect();
    json!({"task": "multiclass", "classes": classes, "labels": [0, 1, 199_999], "predictions": [0, 1, 5]})
}

fn limits(memory_bytes: u64, max_classes: u64) -> Limits {
    Limits {
        cost: cost::Limits {
            memory_bytes,
            max_classes,
        },
        ..Limits::default()
    }
}

#[tokio::test]
async fn the_issue_batch_is_refused_at_upload_and_never_reaches_a_worker() {
    // Default limits: more classes than --max-classes.
    let app = app_with_limits(Limits::default()).await;
    let (s, p) = app.upload("m", "v1", &issue_batch()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["errors"][0]["pointer"], "/classes", "{p}");
    let msg = p["errors"][0]["message"].as_str().unwrap();
    assert!(msg.contains("200000") && msg.contains("100000"), "{msg}");
    assert_eq!(app.count("batches").await, 0, "nothing stored");

    // With room for the classes, the K×K estimators are left out with the reason and the
    // sparse one runs: no allocation of 320 GB is ever attempted.
    let app = app_with_limits(limits(1 << 30, 1_000_000)).await;
    let (s, b) = app.upload("m", "v1", &issue_batch()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let jobs: Vec<&str> = b["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["estimator"].as_str().unwrap())
        .collect();
    assert_eq!(jobs, ["shannon_mi"], "{b}");
    let skipped = b["batch"]["estimators_skipped"].as_array().unwrap();
    let names: Vec<&str> = skipped
        .iter()
        .map(|s| s["estimator"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["semantic_mi", "rg_curve"], "{b}");
    for s in skipped {
        let r = s["reason"].as_str().unwrap();
        assert!(
            r.contains("K = 200000") && r.contains("1.0 GiB") && r.contains("--job-memory-bytes"),
            "{r}"
        );
    }
    // The reasons are kept with the batch.
    let id = b["batch"]["id"].as_str().unwrap();
    let (_, detail) = app.get(&format!("/v1/batches/{id}")).await;
    assert_eq!(detail["estimators_skipped"], json!(skipped));
    let workers = app.workers(fast_workers(1));
    let job = app.wait_job(b["jobs"][0]["id"].as_str().unwrap(), 60).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    workers.shutdown().await;

    // Asked for by name, a K×K estimator is refused with the estimator and the limit named.
    let mut asked = issue_batch();
    asked["estimators"] = json!(["shannon_mi", "semantic_mi"]);
    let (s, p) = app.upload("m", "v2", &asked).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["errors"][0]["pointer"], "/estimators/1", "{p}");
    let msg = p["errors"][0]["message"].as_str().unwrap();
    assert!(msg.starts_with("semantic_mi would need about"), "{msg}");
    // At least the 320 GB (298 GiB) dense K×K matrix of the issue's abort.
    let gib: f64 = msg["semantic_mi would need about ".len()..]
        .split(" GiB")
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(gib >= 298.0, "{msg}");
    assert_eq!(
        app.count("batches").await,
        1,
        "the refused upload stored nothing"
    );
}

#[tokio::test]
async fn a_batch_where_no_default_fits_is_refused_naming_the_field() {
    let app = app_with_limits(limits(64 << 20, 1_000_000)).await;
    // Pairs with 2 000 columns each: the k-NN estimator needs N·d·48 bytes.
    let rows: Vec<Vec<f64>> = (0..800)
        .map(|i| (0..2000).map(|j| ((i * 7 + j) % 13) as f64).collect())
        .collect();
    let (s, p) = app
        .upload("m", "v1", &json!({"task": "pairs", "x": rows, "y": rows}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["errors"][0]["pointer"], "/estimators", "{p}");
    assert!(
        p["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no default estimator fits"),
        "{p}"
    );
}

#[tokio::test]
async fn the_worker_checks_the_cost_again_before_it_allocates() {
    // The API process accepted the batch under a large budget; this worker's is small.
    let app = app_with_limits(limits(1 << 40, 1_000_000)).await;
    let mut b = classifier_batch(2000, 3000, 0.5, 1);
    b["estimators"] = json!(["shannon_mi", "rg_curve"]);
    let (s, v) = app.upload("m", "v1", &b).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let mut cfg = fast_workers(1);
    cfg.limits = cost::Limits {
        memory_bytes: 64 << 20,
        max_classes: 1_000_000,
    };
    let workers = app.workers(cfg);
    let mut states = Vec::new();
    for j in v["jobs"].as_array().unwrap() {
        let done = app.wait_job(j["id"].as_str().unwrap(), 60).await;
        states.push((j["estimator"].clone(), done));
    }
    workers.shutdown().await;
    let rg = &states.iter().find(|(e, _)| e == "rg_curve").unwrap().1;
    assert_eq!(rg["state"], "failed", "{rg}");
    assert_eq!(rg["attempts"], 1, "refused at once, not retried: {rg}");
    assert_eq!(
        rg["error"]["type"],
        "https://infoaudit.dev/problems/over-budget"
    );
    let detail = rg["error"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("rg_curve") && detail.contains("64.0 MiB"),
        "{detail}"
    );
    let sh = &states.iter().find(|(e, _)| e == "shannon_mi").unwrap().1;
    assert_eq!(sh["state"], "succeeded", "{sh}");
}

#[tokio::test]
async fn the_catalog_shows_the_limits_and_what_they_allow() {
    let app = app_with_limits(limits(1 << 30, 50_000)).await;
    let (s, cat) = app.get("/v1/estimators").await;
    assert_eq!(s, StatusCode::OK);
    for e in cat.as_array().unwrap() {
        let l = &e["limits"];
        assert_eq!(l["job_memory_bytes"], 1u64 << 30, "{e}");
        assert_eq!(l["max_classes"], 50_000);
        assert!(!l["cost"].as_str().unwrap().is_empty());
        let largest = l["largest"].as_array().unwrap();
        assert!(!largest.is_empty(), "{e}");
        for x in largest {
            assert!(x["value"].as_u64().unwrap() > 1, "{e}");
        }
    }
    let rg = cat
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "rg_curve")
        .unwrap();
    let k = rg["limits"]["largest"][0]["value"].as_u64().unwrap();
    // 32·K² bytes must fit in 1 GiB, and not much more.
    assert!((2000..6000).contains(&k), "{rg}");
}

/// The app on a database that cannot be reached: a pool on a socket folder with no server.
async fn app_without_database() -> TestApp {
    let dir = std::env::temp_dir().join(format!("ia-nodb-{}", uuid::Uuid::new_v4().simple()));
    let options = sqlx::postgres::PgConnectOptions::new()
        .socket(&dir)
        .username("postgres")
        .database("nothere");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy_with(options);
    let wake = std::sync::Arc::new(tokio::sync::Notify::new());
    let state = AppState {
        pool: pool.clone(),
        wake: wake.clone(),
        draining: Default::default(),
        limits: Limits::default(),
        require_auth: false,
        caches: Default::default(),
    };
    TestApp {
        router: infoaudit::app::router(state),
        pool,
        wake,
    }
}

/// Every documented route (read from the OpenAPI document, so a new route is covered without
/// editing this test), with its path parameters filled in: 503 with `Retry-After` and a
/// problem document while the database cannot be reached, except the ones that need none.
#[tokio::test]
async fn every_route_that_needs_the_database_answers_503_with_retry_after() {
    let app = app_without_database().await;
    let before = app.metrics_text().await;
    let id = uuid::Uuid::now_v7();
    let doc = serde_json::to_value(infoaudit::api::openapi()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let (mut checked, mut unavailable) = (0, 0);
    for (template, ops) in paths {
        let mut uri = template.clone();
        for (param, value) in [
            ("{model}", "m".to_string()),
            ("{version}", "v1".to_string()),
            ("{id}", id.to_string()),
            ("{name}", "n".to_string()),
            ("{alias}", "a".to_string()),
            ("{gate}", "g".to_string()),
            ("{monitor}", "mon".to_string()),
            ("{delivery}", id.to_string()),
        ] {
            uri = uri.replace(param, &value);
        }
        assert!(
            !uri.contains('{'),
            "a path parameter this test does not fill: {template}"
        );
        if uri.ends_with("/history") {
            uri.push_str("?metric=shannon_mi");
        }
        if uri.ends_with("/compare") {
            uri.push_str("?baseline=v1&candidate=v2");
        }
        for method in ops.as_object().unwrap().keys() {
            if !["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                continue;
            }
            let mut b = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&uri);
            let body = if method == "get" || method == "delete" {
                Body::empty()
            } else {
                b = b.header("content-type", "application/json");
                Body::from("{}")
            };
            let (s, h, p) = app.call(b.body(body).unwrap()).await;
            let what = format!("{method} {uri}");
            if uri == "/livez" || uri == "/metrics" {
                assert_eq!(s, StatusCode::OK, "{what}: needs no database");
                continue;
            }
            assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{what}: {p}");
            assert_eq!(h["retry-after"], "2", "{what}");
            assert_eq!(h["content-type"], "application/problem+json", "{what}");
            assert!(
                p["type"] == "https://infoaudit.dev/problems/database-unavailable"
                    || uri == "/readyz",
                "{what}: {p}"
            );
            checked += 1;
            if p["type"] == "https://infoaudit.dev/problems/database-unavailable" {
                unavailable += 1;
            }
        }
    }
    // Every route of the document, the labels, release, samples, monitors, retention and
    // compare routes among them.
    assert!(checked >= 40, "only {checked} routes checked");
    for needle in [
        "/labels",
        "/release",
        "/samples",
        "/monitors",
        "/retention",
        "/compare",
    ] {
        assert!(paths.keys().any(|p| p.contains(needle)), "{needle}");
    }
    // The dashboard says so too, as a page.
    let (s, h, _) = app
        .call(Request::get("/").body(Body::empty()).unwrap())
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(h.contains_key("retry-after"));
    // What needs no database still answers (every /v1/ route checks for keys first).
    let (s, _) = app.get("/livez").await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app.get("/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    // So do the metrics: the process's own, without the gauges read from the database, and
    // saying the information could not be exported (a scrape that fails would hide them all).
    let (s, _, m) = app
        .call(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    assert_eq!(s, StatusCode::OK);
    let m = m.as_str().unwrap();
    assert!(m.contains("\ninfoaudit_information_export_up 0\n"), "{m}");
    // The counter is the process's (other tests add to it): at least this test's 503s since it
    // began.
    assert!(
        series_value(m, "infoaudit_database_unavailable_responses_total")
            - series_value(&before, "infoaudit_database_unavailable_responses_total")
            >= unavailable as f64,
        "{m}"
    );
    assert!(m.contains("infoaudit_http_requests_total{"), "{m}");
    assert!(!m.contains("infoaudit_jobs{"), "{m}");
    assert!(!m.contains("infoaudit_information_value"), "{m}");
}

async fn upload_status(app: &TestApp, seed: u64) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut b = classifier_batch(50, 3, 0.8, seed);
    b["estimators"] = json!(["shannon_mi", "ce_bound"]);
    app.post_json("/v1/models/m/versions/v1/batches", &b).await
}

#[tokio::test]
async fn uploads_stop_at_the_queue_ceiling_with_503_and_retry_after() {
    let app = app_with_limits(Limits {
        max_queued_jobs: 3,
        ..Limits::default()
    })
    .await;
    let before = app.metrics_text().await;
    // No worker runs: 2 jobs per upload; the third upload finds 4 queued (the gauge is re-read
    // from the database at most every 200 ms, and counts this process's own enqueues at once, so
    // a burst cannot slip past the ceiling).
    for seed in 0..2 {
        let (s, _, v) = upload_status(&app, seed).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    }
    let (s, h, p) = upload_status(&app, 9).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{p}");
    assert_eq!(h["retry-after"], "5");
    assert_eq!(p["type"], "https://infoaudit.dev/problems/overloaded");
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("4 estimator jobs are queued") && detail.contains("ceiling of 3"),
        "{detail}"
    );
    assert_eq!(
        app.count("batches").await,
        2,
        "the refused upload stored nothing"
    );
    // Once workers drain the queue, uploads are accepted again.
    let workers = app.workers(fast_workers(2));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (s, _, _) = upload_status(&app, 10).await;
        if s == StatusCode::ACCEPTED {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never accepted again");
    }
    workers.shutdown().await;
    // The counter is the process's: this test's refusal made it grow.
    let m = app.metrics_text().await;
    let shed = "infoaudit_uploads_shed_total{reason=\"queued_jobs\"}";
    assert!(
        series_value(&m, shed) - series_value(&before, shed) >= 1.0,
        "{m}"
    );
}

#[tokio::test]
async fn uploads_stop_when_the_oldest_queued_job_is_too_old() {
    let app = app_with_limits(Limits {
        max_queued_jobs: 0,
        max_queue_age_seconds: 1.0,
        ..Limits::default()
    })
    .await;
    let (s, _, _) = upload_status(&app, 1).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (s, h, p) = upload_status(&app, 2).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{p}");
    assert!(h.contains_key("retry-after"));
    assert!(
        p["detail"].as_str().unwrap().contains("oldest queued"),
        "{p}"
    );
}

#[tokio::test]
async fn each_key_has_its_own_token_bucket() {
    let app = app_with_limits(Limits {
        rate_limit: 0.5,
        rate_burst: 3.0,
        ..Limits::default()
    })
    .await;
    let (_, a) = infoaudit::auth::create_key(&app.pool, "a", &[infoaudit::auth::Scope::Read], None)
        .await
        .unwrap();
    let (_, b) = infoaudit::auth::create_key(&app.pool, "b", &[infoaudit::auth::Scope::Read], None)
        .await
        .unwrap();
    for _ in 0..3 {
        let (s, v) = app.send("GET", "/v1/models", Some(&a.key), None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let req = Request::get("/v1/models")
        .header("authorization", format!("Bearer {}", a.key))
        .body(Body::empty())
        .unwrap();
    let (s, h, p) = app.call(req).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{p}");
    // One token every 2 s, less what has refilled since the burst began.
    let wait: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    assert_eq!(p["type"], "https://infoaudit.dev/problems/rate-limited");
    // Another key is not held back by the first one's traffic; neither are health checks.
    let (s, _) = app.send("GET", "/v1/models", Some(&b.key), None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app.get("/readyz").await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn the_database_outage_mapping_leaves_real_errors_alone() {
    // A bug (here: a query on a missing table) is still a 500, not a 503.
    let (options, _) = fresh_db().await;
    let pool = sqlx::PgPool::connect_with(options).await.unwrap();
    let e = sqlx::query("SELECT * FROM no_such_table")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(!infoaudit::error::is_unavailable(&e));
    let err = infoaudit::error::Error::Database(e);
    assert_eq!(err.problem().status, 500);
    assert_eq!(err.retry_after(), None);
    pool.close().await;
    let closed = sqlx::query("SELECT 1").execute(&pool).await.unwrap_err();
    assert!(infoaudit::error::is_unavailable(&closed));
    assert_eq!(
        infoaudit::error::Error::Database(closed).problem().status,
        503
    );
}

/// Text PostgreSQL cannot store (U+0000 in text and jsonb) is the client's input, not a fault:
/// a key name with a control character is refused naming the field, a batch whose metadata or
/// class names hold U+0000 answers 422, and nothing of it is stored. (Found by the contract
/// fuzzer: a key name with U+0000 answered 500.)
#[tokio::test]
async fn text_the_database_cannot_store_is_refused_not_a_server_error() {
    let app = crate::support::app().await;
    let (s, _, p) = app
        .post_json(
            "/v1/api-keys",
            &json!({"name": "ci\u{0}key", "scopes": ["read"]}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["errors"][0]["pointer"], "/name", "{p}");
    let base = json!({"task": "multiclass", "labels": [0, 1, 0, 1], "predictions": [0, 1, 1, 1]});
    let mut with_metadata = base.clone();
    with_metadata["metadata"] = json!({"note": "a\u{0}b"});
    let mut with_classes = base.clone();
    with_classes["classes"] = json!(["a\u{0}", "b"]);
    for body in [with_metadata, with_classes] {
        let (s, p) = app.upload("m", "v1", &body).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {p}");
    }
    assert_eq!(app.count("batches").await, 0);
    assert_eq!(app.count("jobs").await, 0);
    assert_eq!(app.count("api_keys").await, 0);
}

/// Deleting a batch while a worker records one of its jobs' outcome. The worker's transaction
/// holds the job's row and then takes the batch's (the result's foreign key check); the delete
/// takes the jobs' rows before the batch's, so it waits for the worker instead of deadlocking
/// (PostgreSQL would break the deadlock by aborting one side: a 503 or a lost outcome). Found by
/// the contract fuzzer's stateful phase (upload, then delete while the jobs finish).
#[tokio::test]
async fn deleting_a_batch_while_its_job_records_an_outcome_waits_instead_of_deadlocking() {
    let app = crate::support::app().await;
    let (s, v) = app
        .upload("deadlock", "v1", &classifier_batch(50, 3, 0.8, 1))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let batch = v["batch"]["id"].as_str().unwrap().to_string();
    let (_, b) = app.get(&format!("/v1/batches/{batch}")).await;
    let job: uuid::Uuid = b["jobs"][0]["id"].as_str().unwrap().parse().unwrap();
    let batch_id: uuid::Uuid = batch.parse().unwrap();
    // The worker's `finish`: the job's row first ...
    let mut tx = app.pool.begin().await.unwrap();
    sqlx::query("UPDATE jobs SET progress = 0.5 WHERE id = $1")
        .bind(job)
        .execute(&mut *tx)
        .await
        .unwrap();
    let pool = app.pool.clone();
    let worker = async move {
        // Once the DELETE waits on a lock (the job row this transaction holds), so that both
        // sides really meet: a deadlock-prone order would now abort one of them.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&pool)
            .await?;
            if waiting > 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the DELETE never waited for the worker's lock"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // ... then the batch's, as inserting the result does.
        sqlx::query("SELECT 1 FROM batches WHERE id = $1 FOR KEY SHARE")
            .bind(batch_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    };
    let uri = format!("/v1/batches/{batch}");
    let delete = app.send("DELETE", &uri, None, None);
    let (w, (s, body)) = tokio::join!(worker, delete);
    w.expect("the worker's transaction commits");
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        app.get(&format!("/v1/batches/{batch}")).await.0,
        StatusCode::NOT_FOUND
    );
}

/// One huge class index without `classes` (a fuzzer found it: the class names 0..k were made
/// for k = 10^13 and the allocation aborted the process) is refused naming `/labels`, in every
/// body format that infers classes from indices, and the service keeps answering.
#[tokio::test]
async fn a_huge_class_index_without_classes_is_refused_not_allocated() {
    let app = crate::support::app().await;
    for labels in [json!([0, 10_000_000_000_000u64]), json!([0, 1_048_576])] {
        let body = json!({"task": "multiclass", "labels": labels, "predictions": [0, 1]});
        let (s, p) = app.upload("huge", "v1", &body).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
        assert_eq!(p["errors"][0]["pointer"], "/labels", "{p}");
        assert!(
            p["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("need the classes named"),
            "{p}"
        );
    }
    // The largest index allowed without names still works (2^20 classes).
    let body = json!({"task": "multiclass", "labels": [0, 1_048_575], "predictions": [0, 1],
                      "estimators": []});
    let (s, p) = app.upload("huge", "v1", &body).await;
    assert!(
        s == StatusCode::ACCEPTED || s == StatusCode::UNPROCESSABLE_ENTITY,
        "{s} {p}"
    );
    assert_ne!(p["errors"][0]["pointer"], "/labels", "{p}");
    // NDJSON rows infer classes the same way.
    let (s, _, p) = app
        .call(
            Request::post("/v1/models/huge/versions/v2/batches?task=multiclass")
                .header("content-type", "application/x-ndjson")
                .body(Body::from(
                    "{\"label\": 0, \"prediction\": 0}\n{\"label\": 99999999999999, \"prediction\": 1}\n",
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    let (s, _) = app.get("/v1/models").await;
    assert_eq!(s, StatusCode::OK);
}
