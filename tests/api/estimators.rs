//! The discrete estimator family end to end: upload → queue → worker → stored result, checked
//! against the worked examples of the semantic-information spec (§4.5, §4.6; values in bits).

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::support::{app, fast_workers, TestApp};

async fn run_all(app: &TestApp, body: &Value) -> Vec<Value> {
    let (s, b) = app.upload("m", "v1", body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let w = app.workers(fast_workers(2));
    let mut out = Vec::new();
    for j in b["jobs"].as_array().unwrap() {
        out.push(app.wait_job(j["id"].as_str().unwrap(), 60).await);
    }
    w.shutdown().await;
    out
}

fn by<'a>(jobs: &'a [Value], id: &str) -> &'a Value {
    jobs.iter()
        .find(|j| j["estimator"] == id)
        .unwrap_or_else(|| panic!("{id} ran"))
}

fn close(a: &Value, b: f64) {
    approx::assert_abs_diff_eq!(a.as_f64().unwrap_or(f64::NAN), b, epsilon = 1e-6);
}

#[tokio::test]
async fn softmax_batch_runs_every_applicable_estimator_to_the_spec_values() {
    let app = app().await;
    // Spec §4.6, Example 5.
    let body = json!({"task": "multiclass",
        "labels": [0, 0, 0, 1, 1, 2],
        "probabilities": [[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.3, 0.5, 0.2], [0.2, 0.7, 0.1], [0.3, 0.4, 0.3], [0.5, 0.2, 0.3]]});
    let jobs = run_all(&app, &body).await;
    let ids: Vec<&str> = jobs
        .iter()
        .map(|j| j["estimator"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["shannon_mi", "semantic_mi", "ce_bound", "rg_curve"]);
    for j in &jobs {
        assert_eq!(j["state"], "succeeded", "{j}");
    }
    let semi = &by(&jobs, "semantic_mi")["result"];
    close(&semi["value"], 0.378583);
    assert_eq!(
        semi["details"]["negative_fraction"].as_f64().unwrap(),
        1.0 / 6.0
    );
    let worst = &semi["details"]["worst_samples"][0];
    assert_eq!(
        worst["index"], 2,
        "sample 2 carries negative information: {semi}"
    );
    close(&worst["value"], -0.530515);
    close(&semi["details"]["upper_bound"], 1.459148);
    let ce = &by(&jobs, "ce_bound")["result"];
    close(&ce["value"], 0.365486);
    close(&ce["details"]["cross_entropy"], 1.093662);
    close(&ce["details"]["kl_marginal"], 0.013097);
    assert!(
        ce["value"].as_f64() < semi["value"].as_f64(),
        "the CE bound is below SeMI"
    );
    let rg = &by(&jobs, "rg_curve")["result"];
    assert!(rg["details"]["points"].as_array().unwrap().len() >= 5);
}

#[tokio::test]
async fn multilabel_scores_give_the_spec_example_4_information() {
    let app = app().await;
    let body = json!({
        "task": "multilabel", "classes": ["a", "b", "rare"],
        "labels": [[1,0,0],[1,1,0],[1,0,0],[0,1,0],[0,1,1],[1,0,0],[0,0,0],[0,1,0]],
        "scores": [[0.90,0.20,0.05],[0.80,0.70,0.10],[0.60,0.10,0.02],[0.30,0.80,0.05],[0.20,0.60,0.40],[0.70,0.30,0.05],[0.10,0.20,0.10],[0.40,0.55,0.30]],
        "estimators": ["semantic_mi", "shannon_mi"]
    });
    let jobs = run_all(&app, &body).await;
    let semi = &by(&jobs, "semantic_mi")["result"];
    assert_eq!(by(&jobs, "semantic_mi")["state"], "succeeded");
    close(&semi["value"], 0.696960);
    let per = semi["details"]["per_label"].as_array().unwrap();
    close(&per[2]["semantic_kl"], 1.580461);
    // The rare label: no Shannon information at the 0.5 threshold, 1.58 bits of semantic information.
    let sh = &by(&jobs, "shannon_mi")["result"];
    close(&sh["details"]["per_label"][2]["mi"], 0.0);
}

#[tokio::test]
async fn a_prediction_that_is_never_true_gives_minus_infinity_in_words() {
    let app = app().await;
    // Identity truth matrix: predicting class 1 for a class-0 sample is "false" (T = 0), and the
    // pair is used, so SeMI = −∞ (spec §3.2).
    let body = json!({"task": "multiclass", "labels": [0, 1, 0, 1, 0, 1], "predictions": [0, 1, 1, 1, 0, 0],
        "truth_matrix": [[1, 0], [0, 1]], "estimators": [{"id": "semantic_mi", "params": {"bootstrap": 0}}]});
    let jobs = run_all(&app, &body).await;
    let j = &jobs[0];
    assert_eq!(j["state"], "succeeded", "{j}");
    assert!(j["result"]["value"].is_null(), "{j}");
    assert_eq!(j["result"]["value_special"], "-Infinity");
    assert_eq!(j["result"]["details"]["falsified_samples"], 2);
    let stored: f64 = sqlx::query_scalar("SELECT value FROM results")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, f64::NEG_INFINITY, "stored raw");
    let (_, v) = app.get("/v1/models/m/versions/v1").await;
    assert_eq!(v["metrics"][0]["latest"]["value_special"], "-Infinity");
}

/// The model-implied information of spec §4.6 Example 5's probabilities, with the realised
/// semantic MI next to it. Expected values (numpy, in bits): plug-in mean of KL(q_k ‖ q̄)
/// 0.143285, correction ½ Σ_j Var(q̄_j)/q̄_j 0.024067, value 0.167352; realised
/// mean ln(q(y|x)/q̄_y) 0.378583, the spec's semantic MI of the same example; gap −0.211231.
#[tokio::test]
async fn implied_information_is_reported_with_the_realised_semantic_mi_and_their_gap() {
    let app = app().await;
    let body = json!({"task": "multiclass",
        "labels": [0, 0, 0, 1, 1, 2],
        "probabilities": [[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.3, 0.5, 0.2], [0.2, 0.7, 0.1], [0.3, 0.4, 0.3], [0.5, 0.2, 0.3]],
        "estimators": ["semantic_mi", "implied_mi"]});
    let jobs = run_all(&app, &body).await;
    let im = &by(&jobs, "implied_mi")["result"];
    close(&im["value"], 0.167352);
    close(&im["details"]["plug_in"], 0.143285);
    close(&im["details"]["bias_correction"], 0.024067);
    close(&im["details"]["realised_semantic_mi"], 0.378583);
    close(&im["details"]["calibration_gap"], -0.211231);
    let semi = &by(&jobs, "semantic_mi")["result"];
    close(
        &im["details"]["realised_semantic_mi"],
        semi["value"].as_f64().unwrap(),
    );
    let (lo, v, hi) = (
        im["ci_low"].as_f64().unwrap(),
        im["value"].as_f64().unwrap(),
        im["ci_high"].as_f64().unwrap(),
    );
    assert!(lo < v && v < hi, "{im}");
    // Not a default: a batch that names no estimators does not run it.
    let (s, b) = app
        .upload(
            "m",
            "v2",
            &json!({"task": "multiclass",
        "labels": [0, 1], "probabilities": [[0.9, 0.1], [0.2, 0.8]]}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert!(b["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|j| j["estimator"] != "implied_mi"));
    // The gap is a metric like any other statistic.
    let (s, h) = app
        .get("/v1/models/m/history?metric=implied_mi.calibration_gap&version=v1")
        .await;
    assert_eq!(s, StatusCode::OK, "{h}");
    close(&h["items"][0]["value"], -0.211231);
}
