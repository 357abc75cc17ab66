//! Retention: raw data dropped after `data_days` with pooled values and history unchanged, 410
//! for purged data, results dropped after `results_days`, a minimum holding period that deletes
//! and purges respect, purges in bounded chunks in the background.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};

use crate::support::{app, classifier_batch, fast_workers, TestApp};

async fn put(app: &TestApp, model: &str, body: Value) -> (StatusCode, Value) {
    app.send(
        "PUT",
        &format!("/v1/models/{model}/retention"),
        None,
        Some(&body),
    )
    .await
}

async fn backdate(app: &TestApp, ids: &[String], days: i32) {
    let ids: Vec<uuid::Uuid> = ids.iter().map(|s| s.parse().unwrap()).collect();
    sqlx::query(
        "UPDATE batches SET created_at = now() - make_interval(days => $2) WHERE id = ANY($1)",
    )
    .bind(&ids)
    .bind(days)
    .execute(&app.pool)
    .await
    .unwrap();
}

/// The version summary's pooled values and the history's points: what must not change when
/// raw data is purged.
async fn what_users_read(app: &TestApp) -> (Value, Value) {
    let (s, v) = app.get("/v1/models/r/versions/v1").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let pooled: Vec<Value> = v["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| json!([m["estimator"], m["pooled"], m["pooled_batches"]]))
        .collect();
    let (s, h) = app
        .get("/v1/models/r/history?metric=semantic_mi&version=v1")
        .await;
    assert_eq!(s, StatusCode::OK, "{h}");
    (json!(pooled), h)
}

#[tokio::test]
async fn purged_data_answers_410_and_pooled_values_and_history_stay_exact() {
    let app = app().await;
    let mut ids = Vec::new();
    for seed in 0..4 {
        let mut b = classifier_batch(400, 5, 0.7, seed);
        b["estimators"] = json!(["shannon_mi", "semantic_mi"]);
        let (s, v) = app.upload("r", "v1", &b).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        ids.push(v["batch"]["id"].as_str().unwrap().to_string());
    }
    let workers = app.workers(fast_workers(2));
    for id in &ids {
        let (_, b) = app.get(&format!("/v1/batches/{id}")).await;
        for j in b["jobs"].as_array().unwrap() {
            app.wait_job(j["id"].as_str().unwrap(), 60).await;
        }
    }
    workers.shutdown().await;
    let before = what_users_read(&app).await;
    assert_eq!(before.0[0][2], 4, "{:?}", before.0);

    // Policies: validated, stored, read back.
    let (s, p) = put(&app, "r", json!({"data_days": 1, "keep": 3})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    let (s, _) = put(&app, "nobody", json!({"data_days": 1})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, p) = app.get("/v1/models/r/retention").await;
    assert_eq!((s, &p["updated_at"]), (StatusCode::OK, &Value::Null), "{p}");
    // A period shorter than the holding period is accepted: the holding period wins, and the
    // answer says what takes effect.
    let (s, p) = put(&app, "r", json!({"data_days": 1, "min_days": 5})).await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(
        (&p["data_days"], &p["effective_data_days"]),
        (&json!(1), &json!(5)),
        "{p}"
    );
    assert_eq!(p["effective_results_days"], Value::Null, "{p}");
    let (s, p) = put(&app, "r", json!({"data_days": 40000})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["errors"][0]["pointer"], "/data_days");
    let (s, p) = put(&app, "r", json!({"data_days": 1, "min_days": 1})).await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let (_, got) = app.get("/v1/models/r/retention").await;
    assert_eq!(got["data_days"], 1);
    assert_eq!(got["min_days"], 1);
    assert_eq!(got["results_days"], Value::Null);

    // Three batches are two days old, one is new.
    backdate(&app, &ids[..3], 2).await;
    // The minimum holding period: the new batch cannot be deleted yet.
    let (s, p) = app
        .send("DELETE", &format!("/v1/batches/{}", ids[3]), None, None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("min_days"), "{p}");

    // While the holding period (3 days) is longer than the data period (1 day), the two-day-old
    // batches keep their data.
    let (s, p) = put(&app, "r", json!({"data_days": 1, "min_days": 3})).await;
    assert_eq!(
        (s, &p["effective_data_days"]),
        (StatusCode::OK, &json!(3)),
        "{p}"
    );
    let held = infoaudit::store::purge_retention(&app.pool, 100)
        .await
        .unwrap();
    assert_eq!((held.batches, held.results), (0, 0));
    let (s, _) = put(&app, "r", json!({"data_days": 1, "min_days": 1})).await;
    assert_eq!(s, StatusCode::OK);

    // One batch per statement: three statements, each its own transaction.
    let purged = infoaudit::store::purge_retention(&app.pool, 1)
        .await
        .unwrap();
    assert_eq!((purged.batches, purged.results), (3, 0));
    let left: i64 = sqlx::query_scalar("SELECT count(DISTINCT batch_id) FROM batch_data")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(left, 1, "only the new batch keeps its raw data");
    // Nothing more to do: a second pass purges nothing.
    let again = infoaudit::store::purge_retention(&app.pool, 100)
        .await
        .unwrap();
    assert_eq!((again.batches, again.results), (0, 0));

    for id in &ids[..3] {
        let (s, _, p) = app
            .call(
                Request::get(format!("/v1/batches/{id}/data"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(s, StatusCode::GONE, "{p}");
        assert_eq!(p["type"], "https://infoaudit.dev/problems/gone");
        assert!(p["detail"].as_str().unwrap().contains("purged"), "{p}");
        let (_, b) = app.get(&format!("/v1/batches/{id}")).await;
        assert!(b["data_purged_at"].is_string(), "{b}");
        assert_eq!(
            b["results"].as_array().unwrap().len(),
            2,
            "results are kept"
        );
        let (s, p) = app
            .send(
                "POST",
                &format!("/v1/batches/{id}/jobs"),
                None,
                Some(&json!({"estimators": ["ce_bound"]})),
            )
            .await;
        assert_eq!(s, StatusCode::GONE, "{p}");
    }
    let (s, _) = app.get(&format!("/v1/batches/{}/data", ids[3])).await;
    assert_eq!(s, StatusCode::OK);
    let (_, b) = app.get(&format!("/v1/batches/{}", ids[3])).await;
    assert_eq!(b["data_purged_at"], Value::Null);
    let (s, _, page) = app
        .call(
            Request::get(format!("/batches/{}", ids[0]))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.as_str().unwrap().contains("Raw data purged"));

    // Pooled values and history are exactly what they were.
    assert_eq!(what_users_read(&app).await, before);

    // A job queued on purged data fails with the reason instead of retrying.
    let batch_id: uuid::Uuid = ids[0].parse().unwrap();
    sqlx::query(
        "INSERT INTO jobs (id, batch_id, estimator, estimator_version, params, params_hash)
         VALUES ($1, $2, 'ce_bound', '1', '{}', 'x')",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(batch_id)
    .execute(&app.pool)
    .await
    .unwrap();
    let workers = app.workers(fast_workers(1));
    let (_, b) = app.get(&format!("/v1/batches/{}", ids[0])).await;
    let job = b["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["estimator"] == "ce_bound")
        .unwrap()
        .clone();
    let done = app.wait_job(job["id"].as_str().unwrap(), 30).await;
    workers.shutdown().await;
    assert_eq!(done["state"], "failed", "{done}");
    assert_eq!(done["attempts"], 1, "{done}");
    assert_eq!(
        done["error"]["type"],
        "https://infoaudit.dev/problems/data-purged"
    );
}

#[tokio::test]
async fn results_expire_in_the_background_and_the_batches_say_so() {
    let app = app().await;
    let mut ids = Vec::new();
    for seed in 0..3 {
        let mut b = classifier_batch(200, 3, 0.8, seed);
        b["estimators"] = json!([{"id": "shannon_mi", "params": {"bootstrap": 0}}]);
        let (s, v) = app.upload("r", "v1", &b).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        ids.push(v["batch"]["id"].as_str().unwrap().to_string());
    }
    // The purge runs in the worker pool every 100 ms.
    let mut cfg = fast_workers(1);
    cfg.retention_interval = Some(Duration::from_millis(100));
    cfg.retention_chunk = 1;
    let workers = app.workers(cfg);
    for id in &ids {
        let (_, b) = app.get(&format!("/v1/batches/{id}")).await;
        app.wait_job(b["jobs"][0]["id"].as_str().unwrap(), 60).await;
    }
    let (s, _) = put(&app, "r", json!({"results_days": 1})).await;
    assert_eq!(s, StatusCode::OK);
    // Two batches (and their results) are old enough.
    backdate(&app, &ids[..2], 3).await;
    let old: Vec<uuid::Uuid> = ids[..2].iter().map(|s| s.parse().unwrap()).collect();
    // Their results become three days old (deleted and inserted again through the triggers that
    // keep the history cells), in one transaction: the purge running meanwhile must never see the
    // batches without results.
    let mut tx = app.pool.begin().await.unwrap();
    sqlx::query("DELETE FROM results WHERE batch_id = ANY($1)")
        .bind(&old)
        .execute(&mut *tx)
        .await
        .unwrap();
    for id in &old {
        sqlx::query(
            "INSERT INTO results (id, job_id, batch_id, model_id, version_id, estimator,
                 estimator_version, params, value, n, details, computed_at)
             SELECT gen_random_uuid(), j.id, j.batch_id, b.model_id, b.version_id, j.estimator,
                 j.estimator_version, j.params, 0.1, b.n, '{}', now() - interval '3 days'
             FROM jobs j JOIN batches b ON b.id = j.batch_id WHERE j.batch_id = $1",
        )
        .bind(id)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, b) = app.get(&format!("/v1/batches/{}", ids[0])).await;
        if b["results_purged_at"].is_string() {
            assert!(b["results"].as_array().unwrap().is_empty(), "{b}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "results never purged: {b}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    workers.shutdown().await;
    let (_, h) = app
        .get("/v1/models/r/history?metric=shannon_mi&version=v1")
        .await;
    let points = h["items"].as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(points, 1, "only the new batch's result is left: {h}");
    let (_, b) = app.get(&format!("/v1/batches/{}", ids[2])).await;
    assert_eq!(b["results"].as_array().unwrap().len(), 1);
    assert_eq!(b["results_purged_at"], Value::Null);
    let (_, _, m) = app
        .call(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    assert!(m
        .as_str()
        .unwrap()
        .contains("infoaudit_retention_purged_results_total"));
}

/// A batch whose jobs wait for labels is held by the retention purge: its data and ids stay, its
/// later labels are taken, its release runs the jobs; once they are done the purge takes it. A
/// purged batch's release answers 410.
#[tokio::test]
async fn batches_waiting_for_labels_are_held_until_their_jobs_run() {
    let app = app().await;
    let mut b = classifier_batch(4, 2, 0.9, 3);
    b["ids"] = json!(["w0", "w1", "w2", "w3"]);
    let labels = b.as_object_mut().unwrap().remove("labels").unwrap();
    let (s, v) = app.upload("r", "v1", &b).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let batch = v["batch"]["id"].as_str().unwrap().to_string();
    let (s, _) = put(&app, "r", json!({"data_days": 0})).await;
    assert_eq!(s, StatusCode::OK);
    let post_labels = |ids: &[&str]| {
        let l: Vec<Value> = ids
            .iter()
            .map(|id| labels[id[1..].parse::<usize>().unwrap()].clone())
            .collect();
        json!({"ids": ids, "labels": l})
    };
    let (s, _, out) = app
        .post_json("/v1/models/r/labels", &post_labels(&["w0", "w1"]))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{out}");
    backdate(&app, std::slice::from_ref(&batch), 1).await;
    let workers = app.workers(fast_workers(1));
    let (_, before) = app.get(&format!("/v1/batches/{batch}")).await;
    for j in before["jobs"].as_array().unwrap() {
        app.wait_job(j["id"].as_str().unwrap(), 60).await;
    }
    // A purge pass while the batch waits for labels leaves it alone.
    let purged = infoaudit::store::purge_retention(&app.pool, 10)
        .await
        .unwrap();
    assert_eq!(purged.batches, 0);
    let (_, held) = app.get(&format!("/v1/batches/{batch}")).await;
    assert_eq!(
        held["data_purged_at"],
        Value::Null,
        "purged while waiting: {held}"
    );
    assert!(!held["labels_later"]["waiting"]
        .as_array()
        .unwrap()
        .is_empty());
    // Later labels are still known.
    let (s, _, out) = app
        .post_json("/v1/models/r/labels", &post_labels(&["w2", "w3"]))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{out}");
    assert_eq!(out["unknown"], 0, "{out}");
    assert_eq!(out["batches"][0]["released"], true, "{out}");
    let (_, after) = app.get(&format!("/v1/batches/{batch}")).await;
    for j in after["jobs"].as_array().unwrap() {
        let done = app.wait_job(j["id"].as_str().unwrap(), 60).await;
        assert_eq!(done["state"], "succeeded", "{done}");
    }
    workers.shutdown().await;
    // Now nothing waits: the next pass takes it.
    let purged = infoaudit::store::purge_retention(&app.pool, 10)
        .await
        .unwrap();
    assert_eq!(purged.batches, 1);
    let (_, b) = app.get(&format!("/v1/batches/{batch}")).await;
    assert!(b["data_purged_at"].is_string(), "{b}");
    // A purged labels-later batch cannot be released.
    sqlx::query("UPDATE batches SET pending_jobs = '[]'::jsonb WHERE id = $1::uuid")
        .bind(&batch)
        .execute(&app.pool)
        .await
        .unwrap();
    let (s, _, p) = app
        .post_json(&format!("/v1/batches/{batch}/release"), &json!({}))
        .await;
    assert_eq!(s, StatusCode::GONE, "{p}");
}

/// Purging a batch's raw data takes its sample ids and their labels with it: labels sent for
/// those ids afterwards are unknown ids, and the ids may be used again. A batch whose jobs wait
/// for labels is held (its data is what they will run on) until they are released and done.
#[tokio::test]
async fn a_purge_takes_the_ids_and_labels_and_holds_batches_waiting_for_labels() {
    let app = app().await;
    let ids = |p: &str| -> Vec<String> { (0..50).map(|i| format!("{p}{i}")).collect() };
    let mut labelled = classifier_batch(50, 3, 0.8, 1);
    labelled["ids"] = json!(ids("a"));
    let labels: Vec<Value> = labelled["labels"].as_array().unwrap().clone();
    let mut waiting = classifier_batch(50, 3, 0.8, 2);
    waiting["ids"] = json!(ids("b"));
    let waiting_labels: Vec<Value> = waiting["labels"].as_array().unwrap().clone();
    waiting.as_object_mut().unwrap().remove("labels");
    let (s, a) = app.upload("r2", "v1", &labelled).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{a}");
    let (s, b) = app.upload("r2", "v1", &waiting).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let (a, b) = (
        a["batch"]["id"].as_str().unwrap().to_string(),
        b["batch"]["id"].as_str().unwrap().to_string(),
    );
    let run = |batch: String| {
        let app = &app;
        async move {
            let workers = app.workers(fast_workers(1));
            let (_, d) = app.get(&format!("/v1/batches/{batch}")).await;
            for j in d["jobs"].as_array().unwrap() {
                let done = app.wait_job(j["id"].as_str().unwrap(), 30).await;
                assert_eq!(done["state"], "succeeded", "{done}");
            }
            workers.shutdown().await;
        }
    };
    run(a.clone()).await;
    run(b.clone()).await;
    let (s, p) = put(&app, "r2", json!({"data_days": 1})).await;
    assert_eq!(s, StatusCode::OK, "{p}");
    backdate(&app, &[a.clone(), b.clone()], 2).await;
    let count_ids = |batch: &str| {
        let id: uuid::Uuid = batch.parse().unwrap();
        let pool = app.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sample_ids WHERE batch_id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let purged = infoaudit::store::purge_retention(&app.pool, 10)
        .await
        .unwrap();
    assert_eq!(purged.batches, 1, "only the batch no job waits on");
    assert_eq!(
        app.get(&format!("/v1/batches/{a}/data")).await.0,
        StatusCode::GONE
    );
    assert_eq!(
        app.get(&format!("/v1/batches/{b}/data")).await.0,
        StatusCode::OK
    );
    assert_eq!((count_ids(&a).await, count_ids(&b).await), (0, 50));

    // Labels for the purged batch's ids are unknown ids; nothing is stored.
    let body = json!({"ids": ids("a")[..10], "labels": labels[..10]});
    let (s, out) = app
        .send("POST", "/v1/models/r2/labels", None, Some(&body))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{out}");
    assert_eq!(
        (out["unknown"].as_u64(), out["stored"].as_u64()),
        (Some(10), Some(0)),
        "{out}"
    );
    // The waiting batch's labels release it; once its jobs are done it is purged too.
    let body = json!({"ids": ids("b"), "labels": waiting_labels});
    let (s, out) = app
        .send("POST", "/v1/models/r2/labels", None, Some(&body))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{out}");
    assert_eq!(out["batches"][0]["released"], true, "{out}");
    run(b.clone()).await;
    let purged = infoaudit::store::purge_retention(&app.pool, 10)
        .await
        .unwrap();
    assert_eq!(purged.batches, 1);
    assert_eq!(count_ids(&b).await, 0);
    // The purged ids are free again (ids are unique among a model's stored samples).
    let (s, again) = app.upload("r2", "v2", &labelled).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{again}");
}
