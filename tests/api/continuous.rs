//! Pairs and regression batches through the queue: KSG, Ross and a neural bound, checked against
//! the anchor values of `../shared/reference/estimators-anchors.md` §7.3 (nats).

use axum::http::StatusCode;
use serde_json::{json, Value};

use infoaudit::estimate::rng::SplitMix64;
use infoaudit::estimate::samplers::gaussian_pair_sample;

use crate::support::{app, fast_workers, TestApp};

async fn run(app: &TestApp, body: &Value) -> Vec<Value> {
    let (s, b) = app.upload("emb", "v1", body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let w = app.workers(fast_workers(2));
    let mut out = vec![];
    for j in b["jobs"].as_array().unwrap() {
        out.push(app.wait_job(j["id"].as_str().unwrap(), 120).await);
    }
    w.shutdown().await;
    out
}

fn nats(j: &Value) -> f64 {
    assert_eq!(j["state"], "succeeded", "{j}");
    j["result"]["value"].as_f64().unwrap() * std::f64::consts::LN_2
}

#[tokio::test]
async fn pairs_and_regression_batches_give_the_anchor_ksg_value() {
    let app = app().await;
    // Bivariate normal ρ = 0.75, N = 2000, SplitMix64 seed 1: scikit-learn's
    // mutual_info_regression (k = 3) = brute-force KSG1 = 0.460753 (anchors §7.3).
    let (x, y) = gaussian_pair_sample(0.75, 2000, 1);
    let rows = |v: &[f64]| v.iter().map(|a| vec![*a]).collect::<Vec<_>>();
    let pairs = json!({"task": "pairs", "x": rows(&x), "y": rows(&y), "estimators": ["ksg"]});
    let jobs = run(&app, &pairs).await;
    approx::assert_abs_diff_eq!(nats(&jobs[0]), 0.460753, epsilon = 1e-6);
    let r = &jobs[0]["result"];
    assert!(r["ci_low"].as_f64().unwrap() < r["ci_high"].as_f64().unwrap());
    let regression = json!({"task": "regression", "targets": x, "predictions": y});
    let jobs = run(&app, &regression).await;
    assert_eq!(jobs.len(), 1, "ksg is the default for regression");
    approx::assert_abs_diff_eq!(nats(&jobs[0]), 0.460753, epsilon = 1e-6);
    // Stored and returned as sent.
    let (_, data) = app
        .get(&format!(
            "/v1/batches/{}/data",
            jobs[0]["batch_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(data["targets"], json!(x));
    assert_eq!(data["predictions"], json!(y));
}

#[tokio::test]
async fn ross_estimator_matches_scikit_learn_on_the_gao_mixture() {
    let app = app().await;
    // Gao mixture m = 5, seed 3, N = 200: label X ~ U{0..4}, feature Y = X + 2·U(0,1);
    // scikit-learn mutual_info_classif (k = 3) = 1.030804 (anchors §7.3).
    let mut g = SplitMix64::new(3);
    let (mut labels, mut feats) = (vec![], vec![]);
    for _ in 0..200 {
        let x = g.below(5);
        let y = x as f64 + 2.0 * g.uniform();
        labels.push(x);
        feats.push(vec![y]);
    }
    let body = json!({"task": "multiclass", "labels": labels, "predictions": labels, "x": feats, "estimators": ["mixed_ksg"]});
    let jobs = run(&app, &body).await;
    approx::assert_abs_diff_eq!(nats(&jobs[0]), 1.030804, epsilon = 1e-6);
}

#[tokio::test]
async fn a_neural_bound_trains_in_the_service() {
    let app = app().await;
    let (x, y) = gaussian_pair_sample(0.75, 2000, 7);
    let rows = |v: &[f64]| v.iter().map(|a| vec![*a]).collect::<Vec<_>>();
    let body = json!({"task": "pairs", "x": rows(&x), "y": rows(&y),
        "estimators": [{"id": "infonce", "params": {"max_steps": 600, "seed": 1}}]});
    let jobs = run(&app, &body).await;
    let v = nats(&jobs[0]);
    // Truth −½ ln(1 − 0.75²) = 0.413339; this seeded 600-step run lands within 0.04 of it
    // (0.430), and the one-sided lower confidence bound lies below the truth, with no upper end.
    assert!((v - 0.413339).abs() < 0.04, "InfoNCE {v}");
    let r = &jobs[0]["result"];
    assert!(
        r["ci_low"].as_f64().unwrap() * std::f64::consts::LN_2 <= 0.413339,
        "{r}"
    );
    assert!(
        r["ci_high"].is_null(),
        "a lower bound has no upper end: {r}"
    );
    let d = &jobs[0]["result"]["details"];
    assert!(d["train_curve"].as_array().unwrap().len() > 1);
    assert!(d["log_batch_ceiling"].as_f64().is_some());
    // Below the minimum N the job fails with a clear message.
    let small = json!({"task": "pairs", "x": rows(&x[..50]), "y": rows(&y[..50]), "estimators": ["infonce"]});
    let jobs = run(&app, &small).await;
    assert_eq!(jobs[0]["state"], "failed", "{}", jobs[0]);
    assert!(
        jobs[0]["error"]["detail"].as_str().unwrap().contains("256"),
        "{}",
        jobs[0]["error"]
    );
}

#[tokio::test]
async fn continuous_batches_are_validated_with_pointers() {
    let app = app().await;
    let cases = [
        (
            json!({"task": "pairs", "x": [[1.0], [2.0], [3.0]], "y": [[1.0], [2.0]]}),
            "/y",
        ),
        (
            json!({"task": "pairs", "x": [[1.0, 2.0], [2.0], [3.0, 1.0]], "y": [[1.0], [2.0], [3.0]]}),
            "/x/1",
        ),
        (json!({"task": "pairs", "x": [[1.0], [2.0], [3.0]]}), "/x"),
        (
            json!({"task": "regression", "targets": [1.0, 2.0, 3.0], "predictions": [1.0, "a", 2.0]}),
            "/predictions/1",
        ),
        (
            json!({"task": "regression", "targets": [1.0, 2.0, 3.0], "predictions": [1.0, 2.0]}),
            "/predictions",
        ),
        (
            json!({"task": "regression", "targets": [1.0, 2.0], "predictions": [1.0, 2.0], "weights": [1, 1]}),
            "/weights",
        ),
        (
            json!({"task": "regression", "targets": [1.0, 2.0], "predictions": [1.0, 2.0], "labels": [0, 1]}),
            "/labels",
        ),
        (
            json!({"task": "pairs", "x": [[1.0], [2.0]], "y": [[1.0], [2.0]], "estimators": ["shannon_mi"]}),
            "/estimators/0",
        ),
    ];
    for (body, pointer) in cases {
        let (s, p) = app.upload("m", "v", &body).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {p}");
        let pointers: Vec<&str> = p["errors"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["pointer"].as_str())
            .collect();
        assert!(
            pointers.contains(&pointer),
            "{body}: expected {pointer} in {p}"
        );
    }
    assert_eq!(app.count("batches").await, 0);
}
