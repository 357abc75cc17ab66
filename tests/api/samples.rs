//! Per-sample export (`GET /v1/batches/{id}/samples`): NDJSON and CSV carry the same rows, the
//! (weighted) mean of the information column is the stored result's plug-in value, a hand-worked
//! example, and the error answers.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};

use crate::support::{app, classifier_batch, fast_workers, TestApp};

/// The raw response: status, content type and body text.
async fn fetch(app: &TestApp, uri: &str, accept: Option<&str>) -> (StatusCode, String, String) {
    let mut req = Request::get(uri);
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let resp = tower::ServiceExt::oneshot(app.router.clone(), req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, ct, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn ndjson(app: &TestApp, uri: &str) -> Vec<Value> {
    let (s, ct, text) = fetch(app, uri, None).await;
    assert_eq!(s, StatusCode::OK, "{text}");
    assert_eq!(ct, "application/x-ndjson");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// CSV rows as maps of column name to cell text.
async fn csv_rows(app: &TestApp, uri: &str, accept: Option<&str>) -> Vec<Vec<(String, String)>> {
    let (s, ct, text) = fetch(app, uri, accept).await;
    assert_eq!(s, StatusCode::OK, "{text}");
    assert!(ct.starts_with("text/csv"), "{ct}");
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let head: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            head.iter()
                .cloned()
                .zip(rec.iter().map(str::to_string))
                .collect()
        })
        .collect()
}

/// Σ w·i / Σ w over the rows (w = 1 when the rows carry no weight).
fn weighted_mean(rows: &[Value]) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    for r in rows {
        let w = r.get("weight").map_or(1.0, |w| w.as_f64().unwrap());
        if w > 0.0 {
            num += w * r["information"].as_f64().unwrap();
            den += w;
        }
    }
    num / den
}

async fn run_jobs(app: &TestApp, batch_id: &str) -> Value {
    let workers = app.workers(fast_workers(2));
    let (_, b) = app.get(&format!("/v1/batches/{batch_id}")).await;
    for j in b["jobs"].as_array().unwrap() {
        let done = app.wait_job(j["id"].as_str().unwrap(), 60).await;
        assert_eq!(done["state"], "succeeded", "{done}");
    }
    workers.shutdown().await;
    let (s, b) = app.get(&format!("/v1/batches/{batch_id}?unit=nats")).await;
    assert_eq!(s, StatusCode::OK);
    b
}

fn result<'a>(detail: &'a Value, estimator: &str) -> &'a Value {
    detail["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["estimator"] == estimator)
        .unwrap_or_else(|| panic!("no {estimator} result: {detail}"))
}

#[tokio::test]
async fn ndjson_and_csv_agree_and_the_mean_is_the_stored_plug_in_value() {
    let app = app().await;
    for weighted in [false, true] {
        let mut b = classifier_batch(600, 4, 0.7, 3);
        b["classes"] = json!(["cat", "dog", "bird", "fish, salted"]);
        b["estimators"] = json!(["shannon_mi", "semantic_mi", "ce_bound"]);
        if weighted {
            let w: Vec<f64> = (0..600)
                .map(|i| {
                    if i == 5 {
                        0.0
                    } else {
                        0.5 + (i % 7) as f64 * 0.3
                    }
                })
                .collect();
            b["weights"] = json!(w);
        }
        let (s, v) = app.upload("ex", "v1", &b).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        let id = v["batch"]["id"].as_str().unwrap().to_string();
        let detail = run_jobs(&app, &id).await;
        let labels = b["labels"].as_array().unwrap();

        // The stored results' plug-in values (nats): shannon_mi's `value` is the jackknife
        // bias-corrected MI, so its plug-in is `details.plug_in`; semantic_mi (probabilities
        // mode) and ce_bound store the plug-in value itself.
        let stored = [
            (
                "shannon_mi",
                result(&detail, "shannon_mi")["details"]["plug_in"]
                    .as_f64()
                    .unwrap(),
            ),
            (
                "semantic_mi",
                result(&detail, "semantic_mi")["value"].as_f64().unwrap(),
            ),
            (
                "ce_bound",
                result(&detail, "ce_bound")["value"].as_f64().unwrap(),
            ),
        ];
        let jackknife = result(&detail, "shannon_mi")["value"].as_f64().unwrap();
        assert!(
            (jackknife - stored[0].1).abs() > 1e-6,
            "the test tells the plug-in from the corrected value"
        );
        for (est, want) in stored {
            let base = format!("/v1/batches/{id}/samples?estimator={est}");
            let rows = ndjson(&app, &format!("{base}&unit=nats")).await;
            assert_eq!(rows.len(), 600);
            let mean = weighted_mean(&rows);
            assert!(
                (mean - want).abs() < 1e-9,
                "{est} weighted={weighted}: mean {mean} vs stored {want}"
            );
            for (i, r) in rows.iter().enumerate() {
                assert_eq!(r["index"], i);
                assert_eq!(r["id"], Value::Null);
                let names = ["cat", "dog", "bird", "fish, salted"];
                assert_eq!(r["label"], names[labels[i].as_u64().unwrap() as usize]);
                assert_eq!(r.get("weight").is_some(), weighted);
            }
            // Bits: the same numbers divided by ln 2.
            let bits = ndjson(&app, &base).await;
            for (n, b) in rows.iter().zip(&bits) {
                let (n, b) = (
                    n["information"].as_f64().unwrap(),
                    b["information"].as_f64().unwrap(),
                );
                assert!((b - n / std::f64::consts::LN_2).abs() < 1e-12, "{n} {b}");
            }
            // CSV (by Accept and by ?format=csv): the same rows, cell for cell.
            let by_accept = csv_rows(&app, &format!("{base}&unit=nats"), Some("text/csv")).await;
            let by_query = csv_rows(
                &app,
                &format!("{base}&unit=nats&format=csv"),
                Some("application/x-ndjson"),
            )
            .await;
            assert_eq!(by_accept, by_query);
            assert_eq!(by_accept.len(), rows.len());
            for (c, r) in by_accept.iter().zip(&rows) {
                let cols: Vec<&str> = c.iter().map(|(k, _)| k.as_str()).collect();
                let mut want_cols = vec!["index", "id", "label", "prediction", "information"];
                if weighted {
                    want_cols.push("weight");
                }
                assert_eq!(cols, want_cols);
                assert_eq!(c[0].1, r["index"].to_string());
                assert_eq!(c[1].1, "");
                assert_eq!(c[2].1, r["label"].as_str().unwrap());
                assert_eq!(c[3].1, r["prediction"].as_str().unwrap());
                assert_eq!(
                    c[4].1.parse::<f64>().unwrap(),
                    r["information"].as_f64().unwrap()
                );
                if weighted {
                    assert_eq!(
                        c[5].1.parse::<f64>().unwrap(),
                        r["weight"].as_f64().unwrap()
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn a_hand_worked_example() {
    // Six samples, classes cat and dog; predictions are the argmax (ties: the lower index):
    //   labels      y = [cat, cat, cat, dog, dog, dog]
    //   q(·|x)        = [.8 .2], [.6 .4], [.3 .7], [.1 .9], [.2 .8], [.5 .5]
    //   predictions ŷ = [cat, cat, dog, dog, dog, cat]
    // shannon_mi: the table is [[2, 1], [1, 2]], N = 6, margins 3: a diagonal cell's term is
    //   ln(2·6/(3·3)) = ln(4/3), an off-diagonal one ln(1·6/(3·3)) = ln(2/3).
    // semantic_mi (probabilities mode): T(cat) = (.8+.6+.3+.1+.2+.5)/6 = 2.5/6, T(dog) = 3.5/6;
    //   i = ln q(y|x) − ln T(y): ln(.8·6/2.5) = ln 1.92, ln 1.44, ln 0.72, ln(.9·6/3.5) = ln(54/35),
    //   ln(48/35), ln(3/3.5) = ln(6/7).
    // ce_bound: p̂(cat) = p̂(dog) = 1/2, i = ln(2 q(y|x)): ln 1.6, ln 1.2, ln 0.6, ln 1.8, ln 1.6, 0.
    let app = app().await;
    let b = json!({
        "task": "multiclass",
        "classes": ["cat", "dog"],
        "labels": ["cat", "cat", "cat", "dog", "dog", "dog"],
        "probabilities": [[0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.1, 0.9], [0.2, 0.8], [0.5, 0.5]],
        "estimators": ["shannon_mi"],
    });
    let (s, v) = app.upload("hand", "v1", &b).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["batch"]["id"].as_str().unwrap();
    let (d, o) = ((4.0f64 / 3.0).ln(), (2.0f64 / 3.0).ln());
    let cases: [(&str, [f64; 6]); 3] = [
        ("shannon_mi", [d, d, o, d, d, o]),
        (
            "semantic_mi",
            [1.92, 1.44, 0.72, 54.0 / 35.0, 48.0 / 35.0, 6.0 / 7.0].map(f64::ln),
        ),
        ("ce_bound", [1.6, 1.2, 0.6, 1.8, 1.6, 1.0].map(f64::ln)),
    ];
    for (est, want) in cases {
        let rows = ndjson(
            &app,
            &format!("/v1/batches/{id}/samples?estimator={est}&unit=nats"),
        )
        .await;
        assert_eq!(rows.len(), 6);
        for (r, w) in rows.iter().zip(want) {
            let got = r["information"].as_f64().unwrap();
            assert!((got - w).abs() < 1e-12, "{est}: {r} vs {w}");
        }
        let labels: Vec<&str> = rows.iter().map(|r| r["label"].as_str().unwrap()).collect();
        let preds: Vec<&str> = rows
            .iter()
            .map(|r| r["prediction"].as_str().unwrap())
            .collect();
        assert_eq!(labels, ["cat", "cat", "cat", "dog", "dog", "dog"]);
        assert_eq!(preds, ["cat", "cat", "dog", "dog", "dog", "cat"]);
        let mut keys: Vec<&String> = rows[0].as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["id", "index", "information", "label", "prediction"]);
    }
    // The CSV's text, exactly: the first row of shannon_mi in bits is log2(4/3).
    let (_, _, text) = fetch(
        &app,
        &format!("/v1/batches/{id}/samples?estimator=shannon_mi&format=csv"),
        None,
    )
    .await;
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("index,id,label,prediction,information"));
    let first = lines.next().unwrap();
    let cell: f64 = first.rsplit(',').next().unwrap().parse().unwrap();
    assert!(first.starts_with("0,,cat,cat,"), "{first}");
    assert!((cell - (4.0f64 / 3.0).log2()).abs() < 1e-15, "{first}");

    // A truth matrix that gives 0 to (cat, dog): sample 2 carries −∞ (T(θ_dog) = (0 + 1)/2).
    let mut t = b.clone();
    t["truth_matrix"] = json!([[1.0, 0.0], [0.5, 1.0]]);
    t["estimators"] = json!(["shannon_mi"]);
    let (_, v) = app.upload("hand", "v1", &t).await;
    let tid = v["batch"]["id"].as_str().unwrap();
    let rows = ndjson(
        &app,
        &format!("/v1/batches/{tid}/samples?estimator=semantic_mi&unit=nats"),
    )
    .await;
    assert_eq!(rows[2]["information"], Value::Null);
    assert_eq!(rows[2]["information_special"], "-Infinity");
    // (dog, dog): ln(1 / T(θ_dog)) = ln 2.
    assert!((rows[3]["information"].as_f64().unwrap() - 2f64.ln()).abs() < 1e-15);
    assert!(rows[3].get("information_special").is_none());
    let (_, _, text) = fetch(
        &app,
        &format!("/v1/batches/{tid}/samples?estimator=semantic_mi&format=csv"),
        None,
    )
    .await;
    assert_eq!(text.lines().nth(3), Some("2,,cat,dog,-Infinity"));
}

#[tokio::test]
async fn multilabel_rows_list_label_names_and_reproduce_the_stored_values() {
    let app = app().await;
    let n = 300;
    let mut g = infoaudit::estimate::rng::SplitMix64::new(9);
    let mut labels = Vec::new();
    let mut scores = Vec::new();
    for _ in 0..n {
        let y: Vec<u8> = (0..3).map(|_| u8::from(g.uniform() < 0.4)).collect();
        let s: Vec<f64> = y
            .iter()
            .map(|&on| ((if on == 1 { 0.5 } else { 0.05 }) + 0.45 * g.uniform()).min(1.0))
            .collect();
        labels.push(y);
        scores.push(s);
    }
    let b = json!({
        "task": "multilabel", "classes": ["a", "b", "c|d"],
        "labels": labels, "scores": scores,
        "estimators": ["shannon_mi", "semantic_mi"],
    });
    let (s, v) = app.upload("ml", "v1", &b).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["batch"]["id"].as_str().unwrap().to_string();
    let detail = run_jobs(&app, &id).await;
    for (est, want) in [
        (
            "shannon_mi",
            result(&detail, "shannon_mi")["details"]["plug_in"]
                .as_f64()
                .unwrap(),
        ),
        (
            "semantic_mi",
            result(&detail, "semantic_mi")["value"].as_f64().unwrap(),
        ),
    ] {
        let rows = ndjson(
            &app,
            &format!("/v1/batches/{id}/samples?estimator={est}&unit=nats"),
        )
        .await;
        let mean = weighted_mean(&rows);
        assert!((mean - want).abs() < 1e-9, "{est}: {mean} vs {want}");
        for (i, r) in rows.iter().enumerate() {
            let names = ["a", "b", "c|d"];
            let want: Vec<&str> = (0..3)
                .filter(|&j| labels[i][j] == 1)
                .map(|j| names[j])
                .collect();
            assert_eq!(r["label"], json!(want));
            let pred: Vec<&str> = (0..3)
                .filter(|&j| scores[i][j] >= 0.5)
                .map(|j| names[j])
                .collect();
            assert_eq!(r["prediction"], json!(pred));
        }
        let csv = csv_rows(
            &app,
            &format!("/v1/batches/{id}/samples?estimator={est}&unit=nats"),
            Some("text/csv"),
        )
        .await;
        for (c, r) in csv.iter().zip(&rows) {
            let joined: Vec<&str> = r["label"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert_eq!(c[2].1, joined.join("|"));
        }
    }
}

#[tokio::test]
async fn unknown_batch_purged_data_and_bad_requests_answer_problems() {
    let app = app().await;
    let mut b = classifier_batch(40, 3, 0.8, 1);
    b["estimators"] = json!(["shannon_mi"]);
    let (_, v) = app.upload("err", "v1", &b).await;
    let id = v["batch"]["id"].as_str().unwrap().to_string();
    let hard = json!({"task": "multiclass", "labels": [0, 1, 1, 0], "predictions": [0, 1, 0, 0],
                      "estimators": ["shannon_mi"]});
    let (_, v) = app.upload("err", "v1", &hard).await;
    let hard_id = v["batch"]["id"].as_str().unwrap().to_string();
    let pairs = json!({"task": "pairs", "x": [[0.1], [0.5], [0.2], [0.9]], "y": [[1.0], [0.3], [0.4], [0.8]],
                       "estimators": ["ksg"]});
    let (s, v) = app.upload("err", "v1", &pairs).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let pairs_id = v["batch"]["id"].as_str().unwrap().to_string();

    let cases: Vec<(String, StatusCode, &str)> = vec![
        (
            format!(
                "/v1/batches/{}/samples?estimator=shannon_mi",
                uuid::Uuid::now_v7()
            ),
            StatusCode::NOT_FOUND,
            "not found",
        ),
        (
            format!("/v1/batches/{id}/samples?estimator=nope"),
            StatusCode::BAD_REQUEST,
            "estimator \"nope\"",
        ),
        (
            format!("/v1/batches/{id}/samples"),
            StatusCode::BAD_REQUEST,
            "estimator",
        ),
        (
            format!("/v1/batches/{id}/samples?estimator=ksg"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "estimator: ksg has no per-sample terms",
        ),
        (
            format!("/v1/batches/{hard_id}/samples?estimator=ce_bound"),
            StatusCode::CONFLICT,
            "estimator: ce_bound needs `probabilities`",
        ),
        (
            format!("/v1/batches/{hard_id}/samples?estimator=semantic_mi&mode=probabilities"),
            StatusCode::CONFLICT,
            "mode \"probabilities\" needs class probabilities",
        ),
        (
            format!("/v1/batches/{id}/samples?estimator=semantic_mi&mode=truth_matrix"),
            StatusCode::CONFLICT,
            "mode \"truth_matrix\" needs a truth_matrix",
        ),
        (
            format!("/v1/batches/{pairs_id}/samples?estimator=semantic_mi"),
            StatusCode::CONFLICT,
            "estimator: semantic_mi does not apply to task pairs",
        ),
        (
            format!("/v1/batches/{id}/samples?estimator=ce_bound&clip=0.5"),
            StatusCode::BAD_REQUEST,
            "clip must be in (0, 0.001]",
        ),
        (
            format!("/v1/batches/{id}/samples?estimator=semantic_mi&mode=best"),
            StatusCode::BAD_REQUEST,
            "mode must be one of",
        ),
        (
            format!("/v1/batches/{id}/samples?estimator=shannon_mi&unit=furlongs"),
            StatusCode::BAD_REQUEST,
            "unit",
        ),
        (
            format!("/v1/batches/{id}/samples?estimator=shannon_mi&format=xml"),
            StatusCode::BAD_REQUEST,
            "format",
        ),
    ];
    // Another estimator's parameter is range-checked but changes nothing.
    let plain = fetch(
        &app,
        &format!("/v1/batches/{id}/samples?estimator=shannon_mi"),
        None,
    )
    .await;
    let with_clip = fetch(
        &app,
        &format!("/v1/batches/{id}/samples?estimator=shannon_mi&clip=0.001"),
        None,
    )
    .await;
    assert_eq!(plain.0, StatusCode::OK, "{}", plain.2);
    assert_eq!(with_clip.2, plain.2);
    for (uri, status, says) in cases {
        let (s, ct, text) = fetch(&app, &uri, None).await;
        assert_eq!(s, status, "{uri}: {text}");
        assert_eq!(ct, "application/problem+json", "{uri}");
        let p: Value = serde_json::from_str(&text).unwrap();
        assert!(
            p["detail"].as_str().unwrap().contains(says),
            "{uri}: {p} should say {says:?}"
        );
    }
    // A hard-prediction batch exports shannon_mi and semantic_mi (lbi mode) alike.
    let sh = ndjson(
        &app,
        &format!("/v1/batches/{hard_id}/samples?estimator=shannon_mi"),
    )
    .await;
    let se = ndjson(
        &app,
        &format!("/v1/batches/{hard_id}/samples?estimator=semantic_mi"),
    )
    .await;
    assert_eq!(sh, se);

    // Retention purges the raw data (of batches whose jobs are done): 410, as
    // GET /v1/batches/{id}/data.
    run_jobs(&app, &id).await;
    let (s, p) = app
        .send(
            "PUT",
            "/v1/models/err/retention",
            None,
            Some(&json!({"data_days": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    sqlx::query("UPDATE batches SET created_at = now() - interval '2 days' WHERE id = $1")
        .bind(id.parse::<uuid::Uuid>().unwrap())
        .execute(&app.pool)
        .await
        .unwrap();
    let purged = infoaudit::store::purge_retention(&app.pool, 10)
        .await
        .unwrap();
    assert_eq!(purged.batches, 1);
    let (s, ct, text) = fetch(
        &app,
        &format!("/v1/batches/{id}/samples?estimator=shannon_mi"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::GONE, "{text}");
    assert_eq!(ct, "application/problem+json");
    assert!(text.contains("purged"), "{text}");
    assert_eq!(
        app.get(&format!("/v1/batches/{id}/data")).await.0,
        StatusCode::GONE
    );
}
