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
/// mean ln(q(y|x)/q̄_y) 0.378583, the spec's semantic MI of the same example; gap (both as
/// plug-ins, implied_mi 1.1) 0.143285 − 0.378583 = −0.235298.
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
    close(&im["details"]["calibration_gap"], -0.235298);
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
    close(&h["items"][0]["value"], -0.235298);
}

/// A classifier's probabilities as a model exports them: rounded to two decimals (rows then sum
/// to 1 only within a few hundredths), with `confident_wrong` samples whose true class gets 0.
fn rounded_batch(n: usize, acc: f64, confident_wrong: usize, seed: u64) -> Value {
    let mut g = infoaudit::estimate::rng::SplitMix64::new(seed);
    let k = 4;
    let mut labels = Vec::with_capacity(n);
    let mut probs = Vec::with_capacity(n);
    for i in 0..n {
        let y = g.below(k);
        let pred = if g.uniform() < acc {
            y
        } else {
            (y + 1 + g.below(k - 1)) % k
        };
        let mut row: Vec<f64> = (0..k).map(|_| 0.05 + 0.3 * g.uniform()).collect();
        row[pred] += 1.5;
        if i < confident_wrong {
            row = vec![0.0; k];
            row[(y + 1) % k] = 1.0;
        }
        let s: f64 = row.iter().sum();
        let rounded: Vec<f64> = row
            .iter()
            .map(|v| (v / s * 100.0).round() / 100.0)
            .collect();
        labels.push(y);
        probs.push(rounded);
    }
    json!({"task": "multiclass", "labels": labels, "probabilities": probs})
}

/// Rounded probabilities are refused unless `normalize` says to accept them (then each row is
/// divided by its sum and every result records it), and a true class given probability 0 no
/// longer makes semantic_mi −∞: its truth value is floored at half the data's resolution, so a
/// gate on semantic_mi catches a model that lost most of its information (version 2 answered
/// `inconclusive` on every such batch).
#[tokio::test]
async fn rounded_probabilities_are_normalised_on_request_and_a_gate_catches_the_drop() {
    let app = app().await;
    let good = rounded_batch(3000, 0.9, 3, 1);
    let sums: Vec<f64> = good["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .sum()
        })
        .collect();
    assert!(
        sums.iter().any(|s| (s - 1.0).abs() > 1e-3),
        "some rows are off by rounding"
    );
    let (s, p) = app.upload("r", "v1", &good).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert!(
        p["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("normalize"),
        "{p}"
    );
    let mut good = good;
    good["normalize"] = json!(true);
    good["estimators"] = json!(["shannon_mi", "semantic_mi", "implied_mi"]);
    let (s, a) = app.upload("r", "v1", &good).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{a}");
    let mut bad = rounded_batch(3000, 0.45, 300, 2);
    bad["normalize"] = json!(true);
    bad["estimators"] = json!(["shannon_mi", "semantic_mi", "implied_mi"]);
    let (s, b) = app.upload("r", "v2", &bad).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let workers = app.workers(fast_workers(2));
    for j in a["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .chain(b["jobs"].as_array().unwrap())
    {
        let done = app.wait_job(j["id"].as_str().unwrap(), 120).await;
        assert_eq!(done["state"], "succeeded", "{done}");
    }
    workers.shutdown().await;
    let (_, v1) = app
        .get(&format!(
            "/v1/batches/{}",
            a["batch"]["id"].as_str().unwrap()
        ))
        .await;
    let (_, v2) = app
        .get(&format!(
            "/v1/batches/{}",
            b["batch"]["id"].as_str().unwrap()
        ))
        .await;
    let result = |b: &Value, e: &str| {
        b["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["estimator"] == e)
            .unwrap()
            .clone()
    };
    for b in [&v1, &v2] {
        let sem = result(b, "semantic_mi");
        assert!(sem["value"].is_number(), "finite: {sem}");
        // Half the resolution: two decimals, divided by the row sums (about 1).
        let floor = sem["details"]["floor"].as_f64().unwrap();
        assert!((0.004..=0.0101).contains(&floor), "{sem}");
        assert_eq!(sem["details"]["unfloored_value"], "-Infinity");
        assert!(
            sem["details"]["probabilities_normalized"]["rows"]
                .as_u64()
                .unwrap()
                > 0
        );
        assert!(
            sem["ci_low"].is_number() && sem["ci_high"].is_number(),
            "{sem}"
        );
        let implied = result(b, "implied_mi");
        assert!(
            implied["details"]["calibration_gap"].is_number(),
            "{implied}"
        );
    }
    let (s1, s2) = (
        result(&v1, "semantic_mi")["value"].as_f64().unwrap(),
        result(&v2, "semantic_mi")["value"].as_f64().unwrap(),
    );
    assert!(s2 < s1 - 0.3, "the drop shows: {s1} → {s2}");
    let (s, _, d) = app
        .post_json(
            "/v1/models/r/versions/v2/gate",
            &json!({"rules": [{"metric": "semantic_mi", "op": "gte", "baseline": "v1",
                               "max_regression": {"relative": 0.02}}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["verdict"], "fail", "{d}");
}
