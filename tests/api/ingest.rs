//! Uploads: acceptance, validation (422 with pointers, nothing stored), idempotency, limits.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};

use crate::support::{app, app_with_limits, fast_workers};

fn small() -> Value {
    json!({
        "task": "multiclass",
        "classes": ["cat", "dog", "bird"],
        "labels": [0, 2, 1, 0],
        "probabilities": [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.6, 0.3, 0.1]],
        "estimators": ["shannon_mi"],
        "metadata": {"pipeline_run": "abc"}
    })
}

#[tokio::test]
async fn upload_is_stored_with_its_jobs_and_round_trips() {
    let app = app().await;
    let (status, headers, body) = app
        .post_json("/v1/models/fraud/versions/v1/batches", &small())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["batch"]["id"].as_str().unwrap();
    assert_eq!(headers["location"], format!("/v1/batches/{id}"));
    assert_eq!(body["batch"]["n"], 4);
    assert_eq!(body["batch"]["model"], "fraud");
    assert_eq!(body["batch"]["digest"].as_str().unwrap().len(), 64);
    assert_eq!(body["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(body["jobs"][0]["state"], "queued");
    assert_eq!(body["jobs"][0]["params"]["bootstrap"], 200);

    let (s, data) = app.get(&format!("/v1/batches/{id}/data")).await;
    assert_eq!(s, StatusCode::OK);
    let mut sent = small();
    sent.as_object_mut().unwrap().remove("estimators");
    assert_eq!(data, sent, "what went in comes out");

    let (s, detail) = app.get(&format!("/v1/batches/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(detail["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(detail["metadata"]["pipeline_run"], "abc");
}

#[tokio::test]
async fn default_estimators_are_every_applicable_one() {
    let app = app().await;
    let mut b = small();
    b.as_object_mut().unwrap().remove("estimators");
    let (status, body) = app.upload("m", "v", &b).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let ids: Vec<&str> = body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["estimator"].as_str().unwrap())
        .collect();
    // A multiclass batch with probabilities: every estimator that runs by default on that task
    // (the table-based ones, the cross-entropy bound and R(G) via the LBI truth function); the
    // k-NN estimator (mixed_ksg) and the neural bounds run on request only.
    let mut got = ids.clone();
    got.sort_unstable();
    assert_eq!(
        got,
        ["ce_bound", "rg_curve", "semantic_mi", "shannon_mi"],
        "{ids:?}"
    );
    // Every listed estimator must say it applies to this batch.
    let (_, catalog) = app.get("/v1/estimators").await;
    for id in &ids {
        let e = catalog
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == *id)
            .unwrap();
        assert!(e["tasks"]
            .as_array()
            .unwrap()
            .contains(&json!("multiclass")));
    }
}

/// Each validation rule of the contract: 422, the right pointer, and nothing stored.
#[tokio::test]
async fn every_validation_rule_points_at_the_field_and_stores_nothing() {
    let app = app().await;
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "lengths disagree",
            json!({"predictions": [0, 1]}),
            "/predictions",
        ),
        (
            "N < 2",
            json!({"labels": [0], "probabilities": [[0.7, 0.2, 0.1]]}),
            "/labels",
        ),
        (
            "label outside classes",
            json!({"labels": [0, 2, 1, 5]}),
            "/labels/3",
        ),
        (
            "label name unknown",
            json!({"labels": [0, 2, "horse", 0]}),
            "/labels/2",
        ),
        (
            "probability negative",
            json!({"probabilities": [[0.7, 0.2, 0.1], [1.1, -0.1, 0.0], [0.2, 0.5, 0.3], [0.6, 0.3, 0.1]]}),
            "/probabilities/1/0",
        ),
        (
            "probability above 1",
            json!({"probabilities": [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.0, 1.5, -0.5]]}),
            "/probabilities/3/1",
        ),
        (
            "row does not sum to 1",
            json!({"probabilities": [[0.7, 0.2, 0.1], [0.1, 0.3, 0.5], [0.2, 0.5, 0.3], [0.6, 0.3, 0.1]]}),
            "/probabilities/1",
        ),
        (
            "ragged probabilities",
            json!({"probabilities": [[0.7, 0.2, 0.1], [0.1, 0.9], [0.2, 0.5, 0.3], [0.6, 0.3, 0.1]]}),
            "/probabilities/1",
        ),
        (
            "probabilities wrong width",
            json!({"probabilities": [[0.7, 0.3], [0.1, 0.9], [0.5, 0.5], [0.6, 0.4]]}),
            "/probabilities/0",
        ),
        (
            "probability is a string",
            json!({"probabilities": [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, "x", 0.3], [0.6, 0.3, 0.1]]}),
            "/probabilities/2/1",
        ),
        (
            "truth matrix wrong shape",
            json!({"truth_matrix": [[1, 0], [0, 1]]}),
            "/truth_matrix",
        ),
        (
            "truth matrix outside [0,1]",
            json!({"truth_matrix": [[1, 0, 0], [0, 1, 0], [0, 2, 1]]}),
            "/truth_matrix/2/1",
        ),
        (
            "negative weight",
            json!({"weights": [1, 1, -2, 1]}),
            "/weights/2",
        ),
        (
            "unknown estimator",
            json!({"estimators": ["shannon_mi", "magic"]}),
            "/estimators/1",
        ),
        (
            "estimator not applicable",
            json!({"probabilities": null, "predictions": [0, 2, 1, 0], "estimators": ["ce_bound"]}),
            "/estimators/0",
        ),
        (
            "unknown parameter",
            json!({"estimators": [{"id": "shannon_mi", "params": {"bootstrapp": 3}}]}),
            "/estimators/0/params",
        ),
        (
            "parameter out of range",
            json!({"estimators": [{"id": "shannon_mi", "params": {"confidence": 1.5}}]}),
            "/estimators/0/params",
        ),
        ("unknown field", json!({"colour": "red"}), "/colour"),
        (
            "field of another task",
            json!({"scores": [[0.1]]}),
            "/scores",
        ),
        (
            "duplicate class",
            json!({"classes": ["cat", "dog", "cat"]}),
            "/classes/2",
        ),
    ];
    for (what, patch, pointer) in cases {
        let mut body = small();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        let (status, headers, problem) = app
            .post_json("/v1/models/m/versions/v/batches", &body)
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{what}: {problem}"
        );
        assert_eq!(
            headers["content-type"], "application/problem+json",
            "{what}"
        );
        assert_eq!(problem["status"], 422, "{what}");
        let pointers: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["pointer"].as_str())
            .collect();
        assert!(
            pointers.contains(&pointer),
            "{what}: expected {pointer} in {problem}"
        );
        for e in problem["errors"].as_array().unwrap() {
            assert!(!e["message"].as_str().unwrap().is_empty(), "{what}: {e}");
        }
    }
    for t in ["models", "batches", "batch_data", "jobs"] {
        assert_eq!(app.count(t).await, 0, "{t} must stay empty");
    }
}

#[tokio::test]
async fn bad_names_media_types_and_bodies_are_refused_with_problems() {
    let app = app().await;
    let (s, b) = app.upload(".hidden", "v1", &small()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b["detail"].as_str().unwrap().contains("model name"));
    let (s, _, b) = app
        .call(
            Request::post("/v1/models/m/versions/v/batches")
                .header("content-type", "text/plain")
                .body(Body::from("x"))
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{b}");
    assert_eq!(b["status"], 415);
    let (s, _, b) = app
        .call(
            Request::post("/v1/models/m/versions/v/batches")
                .header("content-type", "application/json")
                .body(Body::from("{not json"))
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, b) = app.get("/v1/batches/not-a-uuid").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["status"], 400);
    let (s, b) = app.get("/v1/nothing-here").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(b["status"], 404);
    assert_eq!(app.count("batches").await, 0);
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let app = app_with_limits(infoaudit::api::Limits {
        max_upload_bytes: 200,
        max_body_bytes: 100,
        ..Default::default()
    })
    .await;
    let (s, _, b) = app
        .post_json("/v1/models/m/versions/v/batches", &small())
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    assert_eq!(b["status"], 413);
    assert_eq!(app.count("batches").await, 0);
}

#[tokio::test]
async fn idempotent_retries_return_the_same_batch() {
    let app = app().await;
    let req = |body: &Value| {
        Request::post("/v1/models/m/versions/v/batches")
            .header("content-type", "application/json")
            .header("idempotency-key", "run-42")
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap()
    };
    let (s1, _, first) = app.call(req(&small())).await;
    assert_eq!(s1, StatusCode::ACCEPTED, "{first}");
    let (s2, _, again) = app.call(req(&small())).await;
    assert_eq!(s2, StatusCode::ACCEPTED, "{again}");
    assert_eq!(first["batch"]["id"], again["batch"]["id"]);
    assert_eq!(first["jobs"][0]["id"], again["jobs"][0]["id"]);
    assert_eq!(app.count("batches").await, 1);
    assert_eq!(app.count("jobs").await, 1);

    let mut other = small();
    other["labels"] = json!([1, 2, 1, 0]);
    let (s3, _, p) = app.call(req(&other)).await;
    assert_eq!(s3, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("Idempotency-Key"));
    assert_eq!(app.count("batches").await, 1);
}

#[tokio::test]
async fn a_key_still_in_flight_gets_409() {
    let app = app().await;
    // Hold the key's lock as a concurrent first request would.
    let mut tx = app.pool.begin().await.unwrap();
    let _: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtextextended($1, 7))")
        .bind("busy-key")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    let (s, _, p) = app
        .call(
            Request::post("/v1/models/m/versions/v/batches")
                .header("content-type", "application/json")
                .header("idempotency-key", "busy-key")
                .body(Body::from(serde_json::to_vec(&small()).unwrap()))
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{p}");
    tx.rollback().await.unwrap();
    assert_eq!(app.count("batches").await, 0);
}

#[tokio::test]
async fn backfill_adds_new_jobs_and_returns_existing_ones() {
    let app = app().await;
    let (_, body) = app.upload("m", "v", &small()).await;
    let id = body["batch"]["id"].as_str().unwrap();
    let first_job = body["jobs"][0]["id"].clone();
    let (s, _, b) = app
        .post_json(&format!("/v1/batches/{id}/jobs"), &json!({"estimators": ["shannon_mi", {"id": "shannon_mi", "params": {"bootstrap": 50, "seed": 9}}]}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let jobs = b["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(
        jobs[0]["id"], first_job,
        "same estimator and params: the existing job"
    );
    assert_eq!(jobs[1]["params"]["bootstrap"], 50);
    assert_eq!(app.count("jobs").await, 2);
    let (s, _, p) = app
        .post_json(
            &format!("/v1/batches/{id}/jobs"),
            &json!({"estimators": ["nope"]}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["errors"][0]["pointer"], "/estimators/0");
    let (s, _, _) = app
        .post_json(
            &format!("/v1/batches/{}/jobs", uuid::Uuid::now_v7()),
            &json!({"estimators": ["shannon_mi"]}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn multiclass_upload_runs_to_a_result() {
    let app = app().await;
    // 2×2 table [[3, 1], [1, 3]] (N = 8): plug-in MI = ln 2 − H_b(1/4) nats (closed form); the
    // value is its jackknife (deletion by deletion in the test), the plug-in is in details.
    let body = json!({"task": "multiclass", "labels": [0, 0, 0, 0, 1, 1, 1, 1], "predictions": [0, 0, 0, 1, 1, 1, 1, 0],
                      "estimators": [{"id": "shannon_mi", "params": {"bootstrap": 100, "seed": 1}}]});
    let (s, b) = app.upload("m", "v1", &body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let workers = app.workers(fast_workers(1));
    let job = app.wait_job(b["jobs"][0]["id"].as_str().unwrap(), 30).await;
    workers.shutdown().await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let r = &job["result"];
    let hb = -(0.25f64 * 0.25f64.ln() + 0.75 * 0.75f64.ln());
    let plug_nats = std::f64::consts::LN_2 - hb;
    let expected_nats = crate::support::jackknife_mi_nats(&[&[3.0, 1.0], &[1.0, 3.0]]);
    assert_eq!(r["unit"], "bits");
    approx::assert_abs_diff_eq!(
        r["value"].as_f64().unwrap(),
        expected_nats.max(0.0) / std::f64::consts::LN_2,
        epsilon = 1e-9
    );
    approx::assert_abs_diff_eq!(
        r["details"]["plug_in"].as_f64().unwrap(),
        plug_nats / std::f64::consts::LN_2,
        epsilon = 1e-9
    );
    // Miller–Madow: minus (cells − rows − cols + 1)/(2N) = 1/16 nats.
    approx::assert_abs_diff_eq!(
        r["details"]["miller_madow"].as_f64().unwrap(),
        (plug_nats - 1.0 / 16.0) / std::f64::consts::LN_2,
        epsilon = 1e-9
    );
    assert_eq!(r["n"], 8);
    // The jackknife of this table is below 0 (MI's floor), so the value is reported at 0 with
    // the raw jackknife in details, and the interval starts at the value.
    assert!(expected_nats < 0.0, "{expected_nats}");
    approx::assert_abs_diff_eq!(
        r["details"]["jackknife_raw"].as_f64().unwrap(),
        expected_nats / std::f64::consts::LN_2,
        epsilon = 1e-9
    );
    assert!(r["details"]["clipped"].is_string(), "{r}");
    let (lo, hi) = (
        r["ci_low"].as_f64().unwrap(),
        r["ci_high"].as_f64().unwrap(),
    );
    assert_eq!(lo, 0.0, "{r}");
    // N = 8 cannot exclude independence: the interval reaches well above the plug-in.
    assert!(hi > plug_nats / std::f64::consts::LN_2, "{r}");
    assert_eq!(r["ci_level"], 0.95);
    let (_, nats) = app
        .get(&format!(
            "/v1/jobs/{}?unit=nats",
            job["id"].as_str().unwrap()
        ))
        .await;
    approx::assert_abs_diff_eq!(
        nats["result"]["value"].as_f64().unwrap(),
        expected_nats.max(0.0),
        epsilon = 1e-12
    );
    assert_eq!(app.count("results").await, 1);
}

#[tokio::test]
async fn multilabel_upload_runs_to_per_label_results() {
    let app = app().await;
    // Spec example 4 (multi-label, N = 8, 3 labels): scores thresholded at 0.5, one 2×2 table per label.
    let body = json!({
        "task": "multilabel", "classes": ["a", "b", "c"],
        "labels": [[1,0,0],[1,1,0],[1,0,0],[0,1,0],[0,1,1],[1,0,0],[0,0,0],[0,1,0]],
        "scores": [[0.90,0.20,0.05],[0.80,0.70,0.10],[0.60,0.10,0.02],[0.30,0.80,0.05],[0.20,0.60,0.40],[0.70,0.30,0.05],[0.10,0.20,0.10],[0.40,0.55,0.30]],
        "estimators": ["shannon_mi"]
    });
    let (s, b) = app.upload("tagger", "v1", &body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let workers = app.workers(fast_workers(1));
    let job = app.wait_job(b["jobs"][0]["id"].as_str().unwrap(), 30).await;
    workers.shutdown().await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let r = &job["result"];
    // Label a: truth [1,1,1,0,0,1,0,0] vs decisions [1,1,1,0,0,1,0,0]: perfect, table [[4,0],[0,4]].
    // Label b: truth [0,1,0,1,1,0,0,1] vs decisions [0,1,0,1,1,0,0,1]: perfect, [[4,0],[0,4]].
    // Label c: truth [0,0,0,0,1,0,0,0] vs decisions all 0: [[7,0],[1,0]].
    // The value is the sum of the per-label jackknife values; the plug-ins sum to 1 + 1 + 0 bits.
    use crate::support::jackknife_mi_nats as jk;
    let perfect = jk(&[&[4.0, 0.0], &[0.0, 4.0]]);
    let expected = (2.0 * perfect + jk(&[&[7.0, 0.0], &[1.0, 0.0]])) / std::f64::consts::LN_2;
    approx::assert_abs_diff_eq!(r["value"].as_f64().unwrap(), expected, epsilon = 1e-9);
    approx::assert_abs_diff_eq!(
        r["details"]["plug_in"].as_f64().unwrap(),
        2.0,
        epsilon = 1e-9
    );
    assert_eq!(r["details"]["per_label"].as_array().unwrap().len(), 3);
}
