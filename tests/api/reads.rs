//! Models, versions, paging, the version summary, and the catalog.

use axum::http::StatusCode;
use serde_json::json;

use crate::support::{app, classifier_batch, fast_workers};

#[tokio::test]
async fn models_and_versions_page_with_cursors() {
    let app = app().await;
    for m in ["alpha", "beta", "gamma"] {
        for v in ["v1", "v2", "v3"] {
            let mut b = classifier_batch(20, 3, 0.8, 1);
            b["estimators"] = json!(["shannon_mi"]);
            let (s, body) = app.upload(m, v, &b).await;
            assert_eq!(s, StatusCode::ACCEPTED, "{body}");
        }
    }
    let (s, p1) = app.get("/v1/models?limit=2").await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<_> = p1["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "beta"]);
    let cursor = p1["next_cursor"].as_str().unwrap();
    let (_, p2) = app
        .get(&format!("/v1/models?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(p2["items"][0]["name"], "gamma");
    assert!(p2["next_cursor"].is_null());
    assert_eq!(p2["items"][0]["version_count"], 3);
    assert_eq!(p2["items"][0]["batch_count"], 3);

    let (_, vs) = app.get("/v1/models/beta/versions?limit=2").await;
    let names: Vec<_> = vs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["version"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["v1", "v2"]);
    let (_, rest) = app
        .get(&format!(
            "/v1/models/beta/versions?cursor={}",
            vs["next_cursor"].as_str().unwrap()
        ))
        .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest["items"][0]["version"], "v3");

    let (s, m) = app.get("/v1/models/alpha").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(m["name"], "alpha");
    assert_eq!(app.get("/v1/models/nope").await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        app.get("/v1/models/nope/versions").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/v1/models?limit=0").await.0,
        StatusCode::BAD_REQUEST
    );
    // Cursors are transparent positions: the model list's is the last name (any name is one,
    // past the end an empty page); time-ordered lists' is `<microseconds>.<id in hex>`.
    let (s, past) = app.get("/v1/models?cursor=zz").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(past["items"], json!([]));
    assert_eq!(
        app.get("/v1/models?cursor=beta").await.1["items"][0]["name"],
        "gamma"
    );
    assert_eq!(
        app.get("/v1/models?cursor=.zz").await.0,
        StatusCode::BAD_REQUEST
    );
    let c = vs["next_cursor"].as_str().unwrap();
    let (micros, id) = c.split_once('.').unwrap();
    assert!(micros.parse::<i64>().is_ok() && id.len() == 32, "{c}");
    let end = format!("9999999999999999.{}", "f".repeat(32));
    let (s, none) = app
        .get(&format!("/v1/models/beta/versions?cursor={end}"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(none["items"], json!([]));
    let (s, bad) = app.get("/v1/models/beta/versions?cursor=zz").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        bad["detail"]
            .as_str()
            .unwrap()
            .contains("microseconds since the epoch"),
        "{bad}"
    );
    // An empty cursor (a URL template with nothing filled in) is the first page.
    let (s, first) = app.get("/v1/models?limit=2&cursor=").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(first["items"], p1["items"]);

    let (s, jobs) = app.get("/v1/jobs?state=queued&model=alpha&limit=2").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(jobs["items"].as_array().unwrap().len(), 2);
    let (_, more) = app
        .get(&format!(
            "/v1/jobs?state=queued&model=alpha&cursor={}",
            jobs["next_cursor"].as_str().unwrap()
        ))
        .await;
    assert_eq!(more["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.get("/v1/jobs?state=sleeping").await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn version_summary_shows_latest_and_exact_pooled_values() {
    let app = app().await;
    // Two batches whose pooled table is [[3,1],[1,3]] + [[3,1],[1,3]] = [[6,2],[2,6]], and a
    // third batch [[4,0],[0,4]] that moves it to [[10,2],[2,10]]. The pooled value is the
    // estimator's value on the summed table (the jackknife, computed deletion by deletion here).
    let half = json!({"task": "multiclass", "labels": [0, 0, 0, 0, 1, 1, 1, 1], "predictions": [0, 0, 0, 1, 1, 1, 1, 0], "estimators": ["shannon_mi"]});
    let perfect = json!({"task": "multiclass", "labels": [0, 0, 0, 0, 1, 1, 1, 1], "predictions": [0, 0, 0, 0, 1, 1, 1, 1], "estimators": ["shannon_mi"]});
    let (mut ids, mut batches) = (vec![], vec![]);
    for b in [&half, &half, &perfect] {
        let (s, r) = app.upload("m", "v1", b).await;
        assert_eq!(s, StatusCode::ACCEPTED);
        ids.push(r["jobs"][0]["id"].as_str().unwrap().to_string());
        batches.push(r["batch"]["id"].as_str().unwrap().to_string());
    }
    // One worker: jobs run in upload order, so the perfect batch's result is the latest.
    let w = app.workers(fast_workers(1));
    for id in &ids {
        assert_eq!(app.wait_job(id, 30).await["state"], "succeeded");
    }
    w.shutdown().await;
    let (s, v) = app.get("/v1/models/m/versions/v1?unit=nats").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["batch_count"], 3);
    assert_eq!(v["n"], 24);
    let metric = &v["metrics"][0];
    assert_eq!(metric["estimator"], "shannon_mi");
    assert_eq!(metric["pooled_batches"], 3);
    let mi =
        |a: f64, b: f64, c: f64, d: f64| crate::support::jackknife_mi_nats(&[&[a, b], &[c, d]]);
    approx::assert_abs_diff_eq!(
        metric["pooled"].as_f64().unwrap(),
        mi(10.0, 2.0, 2.0, 10.0),
        epsilon = 1e-9
    );
    // The latest batch alone is perfect.
    approx::assert_abs_diff_eq!(
        metric["latest"]["value"].as_f64().unwrap(),
        mi(4.0, 0.0, 0.0, 4.0).min(std::f64::consts::LN_2),
        epsilon = 1e-9
    );
    // The same summary in bits is the nats one over ln 2 (each unit is its own answer).
    let (_, bits) = app.get("/v1/models/m/versions/v1").await;
    approx::assert_abs_diff_eq!(
        bits["metrics"][0]["pooled"].as_f64().unwrap(),
        mi(10.0, 2.0, 2.0, 10.0) / std::f64::consts::LN_2,
        epsilon = 1e-9
    );
    // Deleting the perfect batch changes the summary at once: the pooled table is [[6,2],[2,6]]
    // and the latest result is a half batch's (answers are not kept past a change of results).
    let (s, _, _) = app
        .call(
            axum::http::Request::delete(format!("/v1/batches/{}", batches[2]))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, v) = app.get("/v1/models/m/versions/v1?unit=nats").await;
    let metric = &v["metrics"][0];
    assert_eq!(metric["pooled_batches"], 2, "{v}");
    approx::assert_abs_diff_eq!(
        metric["pooled"].as_f64().unwrap(),
        mi(6.0, 2.0, 2.0, 6.0),
        epsilon = 1e-9
    );
    approx::assert_abs_diff_eq!(
        metric["latest"]["value"].as_f64().unwrap(),
        mi(3.0, 1.0, 1.0, 3.0).max(0.0),
        epsilon = 1e-9
    );
    // A new batch's result is in the next answer too.
    let (_, r) = app.upload("m", "v1", &perfect).await;
    let w = app.workers(fast_workers(1));
    assert_eq!(
        app.wait_job(r["jobs"][0]["id"].as_str().unwrap(), 30).await["state"],
        "succeeded"
    );
    w.shutdown().await;
    let (_, v) = app.get("/v1/models/m/versions/v1?unit=nats").await;
    assert_eq!(v["metrics"][0]["pooled_batches"], 3, "{v}");
    approx::assert_abs_diff_eq!(
        v["metrics"][0]["pooled"].as_f64().unwrap(),
        mi(10.0, 2.0, 2.0, 10.0),
        epsilon = 1e-9
    );
    assert_eq!(
        app.get("/v1/models/m/versions/v9").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn catalog_lists_estimators_with_defaults() {
    let app = app().await;
    let (s, c) = app.get("/v1/estimators").await;
    assert_eq!(s, StatusCode::OK);
    let shannon = c
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "shannon_mi")
        .unwrap();
    assert_eq!(shannon["mergeable"], true);
    assert_eq!(shannon["unit"], "bits");
    let boot = shannon["params"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "bootstrap")
        .unwrap();
    assert_eq!(boot["default"], 200);
}

#[tokio::test]
async fn deleting_a_batch_removes_its_jobs_and_results() {
    let app = app().await;
    let (_, b) = app.upload("m", "v", &classifier_batch(30, 3, 0.8, 2)).await;
    let id = b["batch"]["id"].as_str().unwrap();
    let (s, _, _) = app
        .call(
            axum::http::Request::delete(format!("/v1/batches/{id}"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(app.count("batches").await, 0);
    assert_eq!(app.count("jobs").await, 0);
    assert_eq!(app.count("batch_data").await, 0);
    assert_eq!(
        app.get(&format!("/v1/batches/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
}
