//! The durable queue: exclusive claims, crash recovery with exactly one result, cancellation,
//! graceful shutdown.

use std::collections::HashSet;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::support::{app, classifier_batch, fast_workers, TestApp};

/// A job that runs for seconds: many bootstrap replicates of semantic MI over 50 000 samples.
fn slow_batch(seed: u64) -> Value {
    let mut b = classifier_batch(50_000, 100, 0.5, seed);
    b["estimators"] = json!([{"id": "semantic_mi", "params": {"bootstrap": 10000, "seed": seed}}]);
    b
}

async fn upload_one(app: &TestApp, body: &Value) -> String {
    let (s, b) = app.upload("m", "v1", body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    b["jobs"][0]["id"].as_str().unwrap().to_string()
}

async fn running_with_progress(app: &TestApp, id: &str) -> Value {
    app.wait_job_until(id, 60, |j| {
        j["state"] == "running" && j["progress"].as_f64().unwrap_or(0.0) > 0.0
    })
    .await
}

#[tokio::test]
async fn concurrent_claims_never_hand_out_a_job_twice() {
    let app = app().await;
    let mut expected = HashSet::new();
    for i in 0..30 {
        let mut b = classifier_batch(50, 3, 0.8, i);
        b["estimators"] = json!([{"id": "shannon_mi", "params": {"bootstrap": 0}}]);
        expected.insert(upload_one(&app, &b).await);
    }
    let cfg = fast_workers(1).queue;
    let mut tasks = Vec::new();
    for w in 0..8 {
        let (pool, cfg) = (app.pool.clone(), cfg.clone());
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(j) = infoaudit::queue::claim(&pool, &format!("w{w}"), &cfg)
                .await
                .unwrap()
            {
                got.push(j.id.to_string());
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().cloned().collect();
    assert_eq!(all.len(), 30, "every job claimed exactly once");
    assert_eq!(unique, expected);
}

#[tokio::test]
async fn two_worker_pools_run_every_job_exactly_once() {
    let app = app().await;
    let mut ids = Vec::new();
    for i in 0..24 {
        let mut b = classifier_batch(200, 4, 0.7, i);
        b["estimators"] = json!([{"id": "shannon_mi", "params": {"bootstrap": 20}}]);
        ids.push(upload_one(&app, &b).await);
    }
    let a = app.workers(fast_workers(2));
    let b = app.workers(fast_workers(2));
    for id in &ids {
        let j = app.wait_job(id, 60).await;
        assert_eq!(j["state"], "succeeded", "{j}");
        assert_eq!(j["attempts"], 1, "claimed once: {j}");
        assert_eq!(j["rescues"], 0);
    }
    a.shutdown().await;
    b.shutdown().await;
    assert_eq!(app.count("results").await, 24);
}

#[tokio::test]
async fn a_worker_killed_mid_job_leaves_a_job_another_completes_once() {
    let app = app().await;
    let id = upload_one(&app, &slow_batch(1)).await;
    let doomed = app.workers(fast_workers(1));
    let before = running_with_progress(&app, &id).await;
    assert_eq!(before["attempts"], 1);
    doomed.abort(); // as if the process died: no release, no heartbeat, no result
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rescuer = app.workers(fast_workers(1));
    let done = app.wait_job(&id, 120).await;
    rescuer.shutdown().await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(
        done["rescues"], 1,
        "taken back from the dead worker once: {done}"
    );
    assert_eq!(done["attempts"], 2);
    // The dead worker's computation may still finish on its thread; its result must not land.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let results: i64 = sqlx::query_scalar("SELECT count(*) FROM results WHERE job_id = $1::uuid")
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(results, 1, "exactly one result row");
}

#[tokio::test]
async fn cancelling_a_queued_job_is_immediate_and_idempotent() {
    let app = app().await;
    let mut b = classifier_batch(100, 3, 0.8, 3);
    b["estimators"] = json!(["shannon_mi"]);
    let id = upload_one(&app, &b).await;
    let (s, _, j) = app
        .post_json(&format!("/v1/jobs/{id}/cancel"), &json!(null))
        .await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(j["state"], "cancelled");
    let (_, _, again) = app
        .post_json(&format!("/v1/jobs/{id}/cancel"), &json!(null))
        .await;
    assert_eq!(again["state"], "cancelled");
    assert_eq!(again["finished_at"], j["finished_at"]);
    // A worker that demonstrably polls the queue (it runs a job queued after the cancelled one)
    // never runs the cancelled job.
    let w = app.workers(fast_workers(1));
    let mut later = classifier_batch(200, 3, 0.8, 5);
    later["estimators"] = json!([{"id": "shannon_mi"}]);
    let later = upload_one(&app, &later).await;
    assert_eq!(app.wait_job(&later, 30).await["state"], "succeeded");
    w.shutdown().await;
    let (_, j) = app.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(j["state"], "cancelled");
    assert_eq!(j["attempts"], 0, "never claimed");
    assert_eq!(app.count("results").await, 1, "only the later job's result");
    let (s, _, _) = app
        .post_json(
            &format!("/v1/jobs/{}/cancel", uuid::Uuid::now_v7()),
            &json!(null),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn cancelling_a_running_job_stops_it() {
    let app = app().await;
    let id = upload_one(&app, &slow_batch(2)).await;
    let w = app.workers(fast_workers(1));
    running_with_progress(&app, &id).await;
    let (s, _, j) = app
        .post_json(&format!("/v1/jobs/{id}/cancel"), &json!(null))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(j["cancel_requested"], true);
    let done = app.wait_job(&id, 30).await;
    w.shutdown().await;
    assert_eq!(done["state"], "cancelled", "{done}");
    assert!(done["result"].is_null());
    assert_eq!(app.count("results").await, 0);
}

#[tokio::test]
async fn graceful_shutdown_releases_in_flight_jobs() {
    let app = app().await;
    let id = upload_one(&app, &slow_batch(3)).await;
    let w = app.workers(fast_workers(1)); // grace period 0: release at once
    running_with_progress(&app, &id).await;
    tokio::time::timeout(Duration::from_secs(30), w.shutdown())
        .await
        .expect("shutdown completes");
    let (_, j) = app.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(j["state"], "queued", "released for another worker: {j}");
    assert_eq!(j["attempts"], 0, "a release is not a failed attempt");
    assert_eq!(j["rescues"], 0);
    let w2 = app.workers(fast_workers(1));
    let done = app.wait_job(&id, 120).await;
    w2.shutdown().await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["attempts"], 1);
    assert_eq!(app.count("results").await, 1);
}

#[tokio::test]
async fn a_job_whose_batch_cannot_be_estimated_fails_with_a_clear_problem() {
    let app = app().await;
    // Every weight but one is zero: the estimators have a single effective sample.
    let body = json!({"task": "multiclass", "labels": [0, 1, 0, 1], "predictions": [0, 1, 1, 0],
        "weights": [0, 0, 0, 0.0], "estimators": ["shannon_mi"]});
    let (s, b) = app.upload("m", "v", &body).await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "all-zero weights are refused at the door: {b}"
    );
    // The reaper fails a job whose worker keeps dying (poison input cannot crash-loop the pool).
    let id = upload_one(&app, &classifier_batch(100, 3, 0.8, 5)).await;
    sqlx::query("UPDATE jobs SET state = 'running', rescues = 2, lease_token = gen_random_uuid(), lease_expires_at = now() - interval '1 second' WHERE id = $1::uuid")
        .bind(&id)
        .execute(&app.pool)
        .await
        .unwrap();
    let n = infoaudit::queue::reap(&app.pool, &fast_workers(1).queue)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let (_, j) = app.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(j["state"], "failed", "{j}");
    assert_eq!(
        j["error"]["type"],
        "https://infoaudit.dev/problems/worker-lost"
    );
}

/// `finish` is fenced on the lease token: a worker whose lease was taken over writes nothing and
/// learns so (false); the current holder writes the one result; a second finish writes nothing.
#[tokio::test]
async fn finishing_is_fenced_on_the_lease() {
    use infoaudit::queue::{self, NewResult, QueueConfig};
    let app = app().await;
    let mut b = classifier_batch(100, 3, 0.8, 9);
    b["estimators"] = json!([{"id": "shannon_mi"}]);
    let id = upload_one(&app, &b).await;
    let cfg = QueueConfig::default();
    let stale = queue::claim(&app.pool, "a", &cfg).await.unwrap().unwrap();
    assert_eq!(stale.id.to_string(), id);
    // The lease expires and the reaper hands the job to another worker.
    sqlx::query("UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(stale.id)
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(queue::reap(&app.pool, &cfg).await.unwrap(), 1);
    sqlx::query("UPDATE jobs SET run_at = now() WHERE id = $1")
        .bind(stale.id)
        .execute(&app.pool)
        .await
        .unwrap();
    let current = queue::claim(&app.pool, "b", &cfg).await.unwrap().unwrap();
    assert_eq!(current.id, stale.id);
    assert_ne!(current.lease_token, stale.lease_token);
    let result = |v: f64| NewResult {
        value: v,
        ci_low: None,
        ci_high: None,
        ci_level: None,
        ci_method: None,
        n: 100,
        details: json!({}),
        sufficient: None,
        diagnostics: json!({"reliability": "ok", "reasons": []}),
        segments: None,
        segment_rows: vec![],
    };
    assert!(!queue::finish(&app.pool, &stale, &result(1.0))
        .await
        .unwrap());
    assert_eq!(
        app.count("results").await,
        0,
        "the stale holder wrote nothing"
    );
    assert!(queue::finish(&app.pool, &current, &result(2.0))
        .await
        .unwrap());
    assert!(!queue::finish(&app.pool, &current, &result(3.0))
        .await
        .unwrap());
    let values: Vec<f64> = sqlx::query_scalar("SELECT value FROM results WHERE job_id = $1")
        .bind(current.id)
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(values, vec![2.0]);
    let (_, j) = app.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(j["state"], "succeeded");
}

/// A job taken back from a dead worker (rescues > 0) may be what killed it: it runs alone in
/// its worker pool, so a second crash cannot take innocent jobs with it. Two rescued and two
/// fresh jobs of about the same length on a pool of four: no job's run overlaps a rescued
/// job's, while the fresh ones run side by side.
#[tokio::test]
async fn a_rescued_job_runs_alone_in_its_pool() {
    let app = app().await;
    let medium = |seed: u64| {
        let mut b = classifier_batch(20_000, 20, 0.5, seed);
        b["estimators"] =
            json!([{"id": "semantic_mi", "params": {"bootstrap": 1000, "seed": seed}}]);
        b
    };
    let mut ids = Vec::new();
    for seed in 1..=4 {
        ids.push(upload_one(&app, &medium(seed)).await);
    }
    let rescued: Vec<uuid::Uuid> = ids[..2].iter().map(|i| i.parse().unwrap()).collect();
    sqlx::query("UPDATE jobs SET rescues = 1 WHERE id = ANY($1)")
        .bind(&rescued)
        .execute(&app.pool)
        .await
        .unwrap();
    let w = app.workers(fast_workers(4));
    for id in &ids {
        let j = app.wait_job(id, 120).await;
        assert_eq!(j["state"], "succeeded", "{j}");
    }
    w.shutdown().await;
    let runs: Vec<(
        uuid::Uuid,
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
    )> = sqlx::query_as("SELECT id, started_at, finished_at FROM jobs")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(runs.len(), 4);
    let overlap = |a: &(
        uuid::Uuid,
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
    ),
                   b: &(
        uuid::Uuid,
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
    )| { a.1 < b.2 && b.1 < a.2 };
    for r in runs.iter().filter(|r| rescued.contains(&r.0)) {
        for o in runs.iter().filter(|o| o.0 != r.0) {
            assert!(!overlap(r, o), "rescued {r:?} overlapped {o:?}");
        }
    }
    let fresh: Vec<_> = runs.iter().filter(|r| !rescued.contains(&r.0)).collect();
    assert!(
        overlap(fresh[0], fresh[1]),
        "the fresh jobs ran side by side: {fresh:?}"
    );
}
