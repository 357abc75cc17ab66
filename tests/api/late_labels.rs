//! Labels that arrive later: a batch uploaded with ids and without labels runs its label-free
//! estimator at once, takes its labels by id (JSON, NDJSON, CSV; idempotent; a conflicting
//! relabel refused whole), releases its label-dependent jobs at the coverage asked for, and its
//! results equal those of the same samples uploaded with their labels.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};

use crate::support::{app, classifier_batch, fast_workers, TestApp};

/// A classifier batch with ids `s0..s{n-1}`: the labelled body and the label-free one.
fn bodies(n: usize, seed: u64) -> (Value, Value, Vec<u64>) {
    let mut with = classifier_batch(n, 4, 0.7, seed);
    let ids: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    with["ids"] = json!(ids);
    let labels: Vec<u64> = with["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let mut without = with.clone();
    without.as_object_mut().unwrap().remove("labels");
    (with, without, labels)
}

async fn post_labels(app: &TestApp, model: &str, ct: &str, body: String) -> (StatusCode, Value) {
    let (s, _, v) = app
        .call(
            Request::post(format!("/v1/models/{model}/labels"))
                .header("content-type", ct)
                .body(Body::from(body))
                .unwrap(),
        )
        .await;
    (s, v)
}

fn labels_json(ids: &[usize], labels: &[u64]) -> String {
    let idv: Vec<String> = ids.iter().map(|i| format!("s{i}")).collect();
    let lv: Vec<u64> = ids.iter().map(|&i| labels[i]).collect();
    json!({"ids": idv, "labels": lv}).to_string()
}

/// Run every job of the batch to the end; the batch detail (nats).
async fn run_all(app: &TestApp, batch: &str) -> Value {
    let workers = app.workers(fast_workers(2));
    let (_, b) = app.get(&format!("/v1/batches/{batch}")).await;
    for j in b["jobs"].as_array().unwrap() {
        let done = app.wait_job(j["id"].as_str().unwrap(), 60).await;
        assert_eq!(done["state"], "succeeded", "{done}");
    }
    workers.shutdown().await;
    app.get(&format!("/v1/batches/{batch}?unit=nats")).await.1
}

fn result<'a>(detail: &'a Value, estimator: &str, labels: Option<&str>) -> &'a Value {
    detail["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["estimator"] == estimator
                && labels.is_none_or(|l| r["params"]["labels"].as_str() == Some(l))
        })
        .unwrap_or_else(|| panic!("no {estimator} result in {detail}"))
}

#[tokio::test]
async fn labels_sent_later_by_id_give_the_results_of_the_labelled_upload() {
    let app = app().await;
    let n = 400;
    let (with, without, labels) = bodies(n, 11);

    // Reference: the same samples with their labels, in another model.
    let mut with = with;
    with["estimators"] = json!(["shannon_mi", "semantic_mi", "implied_mi"]);
    let (s, a) = app.upload("ref", "v1", &with).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{a}");
    let reference = run_all(&app, a["batch"]["id"].as_str().unwrap()).await;

    let (s, a) = app.upload("late", "v1", &without).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{a}");
    let batch = a["batch"]["id"].as_str().unwrap().to_string();
    // Only the label-free estimator is queued; the others wait for the labels.
    let queued: Vec<&str> = a["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["estimator"].as_str().unwrap())
        .collect();
    assert_eq!(queued, ["implied_mi"], "{a}");
    assert_eq!(a["jobs"][0]["params"]["labels"], "none");
    let later = &a["batch"]["labels_later"];
    assert_eq!(later["labelled"], 0);
    assert_eq!(later["required"], 1.0);
    // The dashboard's batch page says the same.
    let page = |batch: String| {
        let app = &app;
        async move {
            let (s, _, v) = app
                .call(
                    Request::get(format!("/batches/{batch}"))
                        .body(Body::empty())
                        .unwrap(),
                )
                .await;
            assert_eq!(s, StatusCode::OK);
            v.as_str().unwrap().to_string()
        }
    };
    let html = page(batch.clone()).await;
    assert!(
        html.contains(
            "0 of 400 samples labelled (coverage 0%; the label-dependent jobs run at 100%)"
        ),
        "{html}"
    );
    assert!(
        html.contains("Waiting for labels: <span class=\"mono\">shannon_mi</span>"),
        "{html}"
    );
    let waiting: Vec<&str> = later["waiting"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for e in ["shannon_mi", "semantic_mi", "implied_mi"] {
        assert!(waiting.contains(&e), "{e} should wait: {later}");
    }
    let before = run_all(&app, &batch).await;
    let label_free = result(&before, "implied_mi", Some("none"));
    assert!(label_free["details"].get("realised_semantic_mi").is_none());
    // I_q needs no labels: the same as the labelled upload's (which read the same probabilities).
    let ref_implied = result(&reference, "implied_mi", None);
    assert_eq!(label_free["value"], ref_implied["value"], "{label_free}");
    assert_eq!(label_free["ci_low"], ref_implied["ci_low"]);

    // Half the labels, as JSON: stored, not yet released.
    let first: Vec<usize> = (0..n / 2).collect();
    let (s, out) = post_labels(
        &app,
        "late",
        "application/json",
        labels_json(&first, &labels),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{out}");
    assert_eq!(out["stored"], n / 2);
    assert_eq!(out["batches"][0]["coverage"], 0.5);
    assert_eq!(out["batches"][0]["released"], false);
    // The same again: idempotent.
    let (s, out) = post_labels(
        &app,
        "late",
        "application/json",
        labels_json(&first, &labels),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{out}");
    assert_eq!(
        (out["stored"].as_u64(), out["unchanged"].as_u64()),
        (Some(0), Some(n as u64 / 2))
    );
    // A different label for s3 (with a new one for s300) is refused whole, naming s3.
    let mut changed = labels.clone();
    changed[3] = (changed[3] + 1) % 4;
    let (s, p) = post_labels(
        &app,
        "late",
        "application/json",
        labels_json(&[3, 300], &changed),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{p}");
    assert_eq!(p["errors"][0]["pointer"], "/ids/0");
    assert!(
        p["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("\"s3\""),
        "{p}"
    );
    let (_, b) = app.get(&format!("/v1/batches/{batch}")).await;
    assert_eq!(
        b["labels_later"]["labelled"],
        n / 2,
        "nothing stored by the 409"
    );
    // Unknown ids are reported, not stored; an invalid class is a 422 naming it.
    let (s, out) = post_labels(
        &app,
        "late",
        "application/json",
        json!({"ids": ["nope", "s0"], "labels": [1, labels[0]]}).to_string(),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{out}");
    assert_eq!(out["unknown"], 1);
    assert_eq!(out["unknown_ids"], json!(["nope"]));
    let (s, p) = post_labels(
        &app,
        "late",
        "application/json",
        json!({"ids": ["s300"], "labels": [9]}).to_string(),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["errors"][0]["pointer"], "/labels/0");
    let (s, _) = post_labels(
        &app,
        "nosuch",
        "application/json",
        labels_json(&[0], &labels),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The rest as NDJSON: coverage 1 releases the waiting jobs in the same request.
    let ndjson: String = (n / 2..n)
        .map(|i| format!("{{\"id\": \"s{i}\", \"label\": {}}}\n", labels[i]))
        .collect();
    let (s, out) = post_labels(&app, "late", "application/x-ndjson", ndjson).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{out}");
    assert_eq!(out["batches"][0]["coverage"], 1.0);
    assert_eq!(out["batches"][0]["released"], true);
    assert!(!out["batches"][0]["jobs"].as_array().unwrap().is_empty());
    let after = run_all(&app, &batch).await;
    for e in ["shannon_mi", "semantic_mi"] {
        let (late, r) = (result(&after, e, None), result(&reference, e, None));
        assert_eq!(late["value"], r["value"], "{e}: {late} vs {r}");
        assert_eq!(late["ci_low"], r["ci_low"], "{e}");
        assert_eq!(late["ci_high"], r["ci_high"], "{e}");
        assert_eq!(late["details"]["label_coverage"], 1.0, "{e}");
    }
    // With the labels, implied_mi reports the realised semantic MI and the calibration gap.
    let joined = result(&after, "implied_mi", Some("auto"));
    let r = result(&reference, "implied_mi", None);
    assert_eq!(
        joined["details"]["calibration_gap"], r["details"]["calibration_gap"],
        "{joined}"
    );
    assert_eq!(after["labels_later"]["waiting"], json!([]));
    let html = page(batch.clone()).await;
    assert!(html.contains("400 of 400 samples labelled"), "{html}");
    assert!(!html.contains("Waiting for labels"), "{html}");
    assert!(
        html.contains("the jobs use the 400 labels stored then"),
        "{html}"
    );
    // The export joins the labels and carries the ids.
    let (s, _, text) = app
        .call(
            Request::get(format!("/v1/batches/{batch}/samples?estimator=shannon_mi"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let rows: Vec<Value> = text
        .as_str()
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), n);
    assert_eq!(rows[7]["id"], "s7");
    assert_eq!(rows[7]["label"], labels[7].to_string());
}

#[tokio::test]
async fn a_coverage_below_one_runs_on_the_labelled_samples_and_records_it() {
    let app = app().await;
    let n = 300;
    let (with, mut without, labels) = bodies(n, 5);
    without["label_coverage"] = json!(0.5);
    // Segments ride along: the per-segment runs see the labelled samples only.
    let tier: Vec<&str> = (0..n)
        .map(|i| if i % 2 == 0 { "gold" } else { "free" })
        .collect();
    without["segments"] = json!({"tier": tier});
    let (s, a) = app.upload("part", "v1", &without).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{a}");
    let batch = a["batch"]["id"].as_str().unwrap().to_string();
    // 60 % of the labels, as CSV, every other sample from 0 then the first of the rest.
    let chosen: Vec<usize> = (0..n).filter(|i| i % 5 < 3).collect();
    let csv: String = std::iter::once("id,label\n".to_string())
        .chain(chosen.iter().map(|&i| format!("s{i},{}\n", labels[i])))
        .collect();
    let (s, out) = post_labels(&app, "part", "text/csv", csv).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{out}");
    assert_eq!(out["batches"][0]["released"], true, "{out}");
    let detail = run_all(&app, &batch).await;
    let late = result(&detail, "shannon_mi", None);
    assert_eq!(late["n"], chosen.len());
    assert_eq!(late["details"]["label_coverage"], 0.6);
    let per_tier: u64 = late["segments"]["tier"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["n"].as_u64().unwrap())
        .sum();
    assert_eq!(per_tier, chosen.len() as u64, "{}", late["segments"]);
    // The same as uploading exactly the labelled samples with their labels.
    let pick = |key: &str| -> Value {
        Value::Array(chosen.iter().map(|&i| with[key][i].clone()).collect())
    };
    let subset = json!({"task": "multiclass", "labels": pick("labels"), "probabilities": pick("probabilities")});
    let (s, a) = app.upload("part-ref", "v1", &subset).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{a}");
    let reference = run_all(&app, a["batch"]["id"].as_str().unwrap()).await;
    let r = result(&reference, "shannon_mi", None);
    assert_eq!(late["value"], r["value"]);
    assert_eq!(late["ci_high"], r["ci_high"]);
}

#[tokio::test]
async fn ids_are_unique_within_a_model_and_release_on_request_runs_on_what_has_arrived() {
    let app = app().await;
    let (_, without, labels) = bodies(50, 2);
    let (s, a) = app.upload("ids", "v1", &without).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{a}");
    let batch = a["batch"]["id"].as_str().unwrap().to_string();
    let batches = app.count("batches").await;
    // The same ids again in the same model: 409 naming them, nothing stored.
    let (s, p) = app.upload("ids", "v2", &without).await;
    assert_eq!(s, StatusCode::CONFLICT, "{p}");
    assert_eq!(p["errors"][0]["pointer"], "/ids/0");
    assert_eq!(app.count("batches").await, batches);
    // Another model may use them.
    let (s, _) = app.upload("ids-other", "v1", &without).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    // Duplicates within a batch are a 422.
    let mut dup = without.clone();
    dup["ids"][1] = json!("s0");
    let (s, p) = app.upload("ids", "v3", &dup).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["errors"][0]["pointer"], "/ids/1");
    // Without ids, labels stay required.
    let mut bare = without.clone();
    bare.as_object_mut().unwrap().remove("ids");
    let (s, p) = app.upload("ids", "v4", &bare).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["errors"][0]["pointer"], "/labels");

    // 20 labels, then a release on request: the jobs run on those 20.
    let some: Vec<usize> = (0..20).collect();
    let (s, out) = post_labels(&app, "ids", "application/json", labels_json(&some, &labels)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{out}");
    assert_eq!(out["batches"][0]["released"], false);
    let (s, _, r) = app
        .post_json(&format!("/v1/batches/{batch}/release"), &json!({}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    let detail = run_all(&app, &batch).await;
    let sh = result(&detail, "shannon_mi", None);
    assert_eq!(sh["n"], 20);
    assert_eq!(sh["details"]["label_coverage"], 0.4);
    // A batch that came with its labels has nothing to release.
    let (with, _, _) = bodies(10, 3);
    let mut with = with;
    with["ids"] = json!((0..10).map(|i| format!("w{i}")).collect::<Vec<_>>());
    let (_, a) = app.upload("ids", "v5", &with).await;
    let id = a["batch"]["id"].as_str().unwrap();
    let (s, _, _) = app
        .post_json(&format!("/v1/batches/{id}/release"), &json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    // Its labels can be confirmed (unchanged) but not changed.
    let (s, out) = post_labels(
        &app,
        "ids",
        "application/json",
        json!({"ids": ["w0"], "labels": [with["labels"][0]]}).to_string(),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{out}");
    assert_eq!(out["unchanged"], 1);

    // Deleting a batch frees its ids in the same transaction (the id table carries no foreign
    // key to cascade through): none is left behind, and the ids can be used again.
    let ids_before = app.count("sample_ids").await;
    let (s, _, _) = app
        .call(
            Request::delete(format!("/v1/batches/{batch}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(app.count("sample_ids").await, ids_before - 50);
    let (s, p) = app.upload("ids", "v6", &without).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{p}");
    assert_eq!(app.count("sample_ids").await, ids_before);
}

/// Text labels mean the same in every format and route: a class name first, else a whole number
/// is a class index. Classes named by numbers ("1", "0") resolve by name from a CSV, an NDJSON
/// or a JSON labels body, as they do in an upload.
#[tokio::test]
async fn numbered_class_names_resolve_by_name_in_every_format() {
    let app = app().await;
    let body = json!({
        "task": "multiclass", "classes": ["1", "0"],
        "ids": ["n1", "n2", "n3", "n4", " spaced "],
        "probabilities": [[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4], [0.5, 0.5]],
        "estimators": ["shannon_mi"]
    });
    let (s, v) = app.upload("num", "v1", &body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let batch = v["batch"]["id"].as_str().unwrap().to_string();
    let (s, v) = post_labels(
        &app,
        "num",
        "text/csv",
        "id,label\nn1,1\nn2,0\n spaced ,1\n".into(),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["unknown"], 0, "an id with spaces is that id: {v}");
    let (s, v) = post_labels(
        &app,
        "num",
        "application/x-ndjson",
        "{\"id\": \"n3\", \"label\": \"0\"}\n".into(),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let (s, v) = post_labels(
        &app,
        "num",
        "application/json",
        json!({"ids": ["n4"], "labels": ["1"]}).to_string(),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let (s, _, text) = app
        .call(
            Request::get(format!("/v1/batches/{batch}/samples?estimator=shannon_mi"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{text}");
    let labels: Vec<(String, String)> = text
        .as_str()
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["label"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        labels,
        [
            ("n1", "1"),
            ("n2", "0"),
            ("n3", "0"),
            ("n4", "1"),
            (" spaced ", "1")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string())),
        "each sample keeps the class its label names"
    );

    // Classes "10", "20", "30": the CSV cell 20 is the class "20" (it is no index), as in JSON.
    let body = json!({
        "task": "multiclass", "classes": ["10", "20", "30"],
        "ids": ["q1", "q2"],
        "probabilities": [[0.2, 0.7, 0.1], [0.1, 0.1, 0.8]],
        "estimators": ["shannon_mi"]
    });
    let (s, v) = app.upload("tens", "v1", &body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let (s, v) = post_labels(&app, "tens", "text/csv", "id,label\nq1,20\n".into()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let (s, v) = post_labels(
        &app,
        "tens",
        "application/json",
        json!({"ids": ["q2"], "labels": ["30"]}).to_string(),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    // A number is an index everywhere: 2 is "30", and 20 is out of range.
    let (s, v) = post_labels(
        &app,
        "tens",
        "application/json",
        json!({"ids": ["q2"], "labels": [20]}).to_string(),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
}

/// A release fixes the labels its jobs use: labels that arrive after it (before the jobs run)
/// change no released result, every label-dependent estimator runs on the same samples, and the
/// batch view says which labels the results used and how many came after.
#[tokio::test]
async fn a_release_fixes_the_labels_every_released_job_uses() {
    let app = app().await;
    let n = 40;
    let (_, mut without, labels) = bodies(n, 9);
    without["estimators"] =
        json!(["shannon_mi", "semantic_mi", {"id": "implied_mi", "params": {"labels": "auto"}}]);
    let (s, a) = app.upload("fixed", "v1", &without).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{a}");
    let batch = a["batch"]["id"].as_str().unwrap().to_string();
    let first: Vec<usize> = (0..15).collect();
    let (s, out) = post_labels(
        &app,
        "fixed",
        "application/json",
        labels_json(&first, &labels),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{out}");
    let (s, _, r) = app
        .post_json(&format!("/v1/batches/{batch}/release"), &json!({}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    // The rest arrive before any job has run.
    let rest: Vec<usize> = (15..n).collect();
    let (s, out) = post_labels(
        &app,
        "fixed",
        "application/json",
        labels_json(&rest, &labels),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{out}");
    assert_eq!(out["stored"], 25, "{out}");
    let detail = run_all(&app, &batch).await;
    for (estimator, params) in [
        ("shannon_mi", None),
        ("semantic_mi", None),
        ("implied_mi", Some("auto")),
    ] {
        let r = result(&detail, estimator, params);
        assert_eq!(r["n"], 15, "{estimator} ran on other labels: {r}");
        assert_eq!(
            r["details"]["label_coverage"],
            15.0 / 40.0,
            "{estimator}: {r}"
        );
    }
    let later = &detail["labels_later"];
    assert_eq!(later["labelled"], 40, "{later}");
    assert_eq!(later["released_labelled"], 15, "{later}");
    assert_eq!(later["released_coverage"], 15.0 / 40.0, "{later}");
    assert_eq!(later["labelled_after_release"], 25, "{later}");
    // A second release changes nothing: nothing waits.
    let (s, _, r) = app
        .post_json(&format!("/v1/batches/{batch}/release"), &json!({}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    let (_, again) = app.get(&format!("/v1/batches/{batch}")).await;
    assert_eq!(again["labels_later"]["released_labelled"], 15);
    assert_eq!(
        again["jobs"].as_array().unwrap().len(),
        detail["jobs"].as_array().unwrap().len()
    );
}

/// The labels route reads its body as uploads do: gzip and zstd bodies are inflated under the
/// upload limit, other codings are a 415, a declared length over the limit is a 413 before any
/// byte is read, and a body (or its inflated text) past the limit is a 413 with nothing stored.
#[tokio::test]
async fn labels_bodies_are_read_like_uploads() {
    let app = crate::support::app_with_limits(infoaudit::api::Limits {
        max_upload_bytes: 4096,
        ..Default::default()
    })
    .await;
    let (_, without, labels) = bodies(8, 4);
    let (s, a) = app.upload("enc", "v1", &without).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{a}");
    let send = |coding: Option<&str>, body: Vec<u8>, length: Option<u64>| {
        let mut b =
            Request::post("/v1/models/enc/labels").header("content-type", "application/json");
        if let Some(c) = coding {
            b = b.header("content-encoding", c);
        }
        if let Some(n) = length {
            b = b.header("content-length", n);
        }
        b.body(Body::from(body)).unwrap()
    };
    let gz = |bytes: &[u8]| {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    };
    let first = labels_json(&[0, 1, 2], &labels);
    let (s, _, v) = app
        .call(send(Some("gzip"), gz(first.as_bytes()), None))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "gzip: {v}");
    assert_eq!(v["stored"], 3, "{v}");
    let second = labels_json(&[3, 4], &labels);
    let (s, _, v) = app
        .call(send(
            Some("zstd"),
            zstd::stream::encode_all(second.as_bytes(), 3).unwrap(),
            None,
        ))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "zstd: {v}");
    assert_eq!(v["stored"], 2, "{v}");
    let (s, _, v) = app.call(send(Some("br"), vec![1, 2, 3], None)).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "br: {v}");
    // Declared over the limit: refused before reading (the body here is small).
    let third = labels_json(&[5], &labels);
    let (s, _, v) = app
        .call(send(None, third.clone().into_bytes(), Some(1 << 30)))
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    // Sent over the limit, and inflated over it (a small gzip of a large text).
    let ids: Vec<String> = (0..2000).map(|i| format!("nobody-{i}")).collect();
    let big = json!({"ids": ids, "labels": vec![0; 2000]}).to_string();
    assert!(big.len() > 4096);
    let (s, _, v) = app.call(send(None, big.clone().into_bytes(), None)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    let repetitive = json!({"ids": vec!["nobody"; 2000], "labels": vec![0; 2000]}).to_string();
    let packed = gz(repetitive.as_bytes());
    assert!(packed.len() < 4096 && repetitive.len() > 4096);
    let (s, _, v) = app.call(send(Some("gzip"), packed, None)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "inflated: {v}");
    assert!(v["detail"].as_str().unwrap().contains("decoded"), "{v}");
    // Nothing of the refused requests was stored; the good ones were.
    let (_, b) = app
        .get(&format!(
            "/v1/batches/{}",
            a["batch"]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(b["labels_later"]["labelled"], 5, "{b}");
    // A JSON error still names its place.
    let (s, _, v) = app
        .call(send(
            None,
            br#"{"ids": ["s6"], "labels": [{"x": 1}]}"#.to_vec(),
            None,
        ))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["errors"][0]["pointer"], "/labels/0", "{v}");
}

/// Multilabel labels sent later: half as JSON lists of label names, half as CSV cells listing
/// names with `|` (an empty cell is the empty set). The results equal those of the same batch
/// uploaded with its labels.
#[tokio::test]
async fn multilabel_labels_arrive_later_as_name_lists_and_csv_pipe_cells() {
    let app = app().await;
    let n = 240;
    let names = ["a", "b", "c"];
    let mut g = infoaudit::estimate::rng::SplitMix64::new(4);
    let (mut labels, mut scores) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let y: Vec<u8> = (0..3).map(|_| u8::from(g.uniform() < 0.4)).collect();
        let s: Vec<f64> = y
            .iter()
            .map(|&on| (if on == 1 { 0.5 } else { 0.05 }) + 0.45 * g.uniform())
            .collect();
        labels.push(y);
        scores.push(s);
    }
    let ids: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
    let with = json!({"task": "multilabel", "classes": names, "labels": labels, "scores": scores,
                      "ids": ids, "estimators": ["shannon_mi", "semantic_mi"]});
    let mut without = with.clone();
    without.as_object_mut().unwrap().remove("labels");
    let (s, a) = app.upload("ml-ref", "v1", &with).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{a}");
    let reference = a["batch"]["id"].as_str().unwrap().to_string();
    let (s, a) = app.upload("ml", "v1", &without).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{a}");
    let batch = a["batch"]["id"].as_str().unwrap().to_string();
    let set = |i: usize| -> Vec<&str> {
        (0..3)
            .filter(|&j| labels[i][j] == 1)
            .map(|j| names[j])
            .collect()
    };
    assert!(
        (0..n).any(|i| set(i).len() >= 2) && (0..n).any(|i| set(i).is_empty()),
        "the batch has sets of two or more labels and empty sets"
    );
    let half = n / 2;
    let first = json!({
        "ids": (0..half).map(|i| format!("m{i}")).collect::<Vec<_>>(),
        "labels": (0..half).map(set).collect::<Vec<_>>(),
    });
    let (s, out) = post_labels(&app, "ml", "application/json", first.to_string()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{out}");
    assert_eq!(out["batches"][0]["released"], false, "{out}");
    let csv: String = std::iter::once("id,label\n".to_string())
        .chain((half..n).map(|i| format!("m{i},{}\n", set(i).join("|"))))
        .collect();
    let (s, out) = post_labels(&app, "ml", "text/csv", csv).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{out}");
    assert_eq!(out["batches"][0]["released"], true, "{out}");
    let (late, labelled) = (run_all(&app, &batch).await, run_all(&app, &reference).await);
    for est in ["shannon_mi", "semantic_mi"] {
        let (l, r) = (result(&late, est, None), result(&labelled, est, None));
        assert_eq!(l["n"], n);
        for key in ["value", "ci_low", "ci_high"] {
            assert_eq!(l[key], r[key], "{est} {key}: {l} vs {r}");
        }
    }
}

/// The server's `--label-coverage` is the default of a batch that names none; a batch's own
/// `label_coverage` overrides it.
#[tokio::test]
async fn the_server_default_coverage_applies_unless_the_batch_names_one() {
    let app = crate::support::app_with_limits(infoaudit::api::Limits {
        label_coverage: 0.5,
        ..infoaudit::api::Limits::default()
    })
    .await;
    let (_, without, labels) = bodies(100, 8);
    let (s, a) = app.upload("cov", "v1", &without).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{a}");
    let batch = a["batch"]["id"].as_str().unwrap().to_string();
    let mut strict = without.clone();
    strict["ids"] = json!((0..100).map(|i| format!("t{i}")).collect::<Vec<_>>());
    strict["label_coverage"] = json!(1.0);
    let (s, a) = app.upload("cov", "v1", &strict).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{a}");
    let ids = |prefix: &str, r: std::ops::Range<usize>| -> Vec<String> {
        r.map(|i| format!("{prefix}{i}")).collect()
    };
    let body = |prefix: &str, r: std::ops::Range<usize>| {
        json!({"ids": ids(prefix, r.clone()), "labels": r.map(|i| labels[i]).collect::<Vec<_>>()})
            .to_string()
    };
    // 49 % of each: nothing released.
    for prefix in ["s", "t"] {
        let (s, out) = post_labels(&app, "cov", "application/json", body(prefix, 0..49)).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{out}");
        assert_eq!(out["batches"][0]["released"], false, "{out}");
    }
    // 50 %: the batch without its own coverage is released; the one asking for 1 is not.
    let (_, out) = post_labels(&app, "cov", "application/json", body("s", 49..50)).await;
    assert_eq!(out["batches"][0]["released"], true, "{out}");
    let (_, out) = post_labels(&app, "cov", "application/json", body("t", 49..50)).await;
    assert_eq!(out["batches"][0]["released"], false, "{out}");
    let detail = run_all(&app, &batch).await;
    let r = result(&detail, "shannon_mi", None);
    assert_eq!(r["details"]["label_coverage"], 0.5, "{r}");
    assert_eq!(r["n"], 50);
}

/// Eight labels requests at once, split over two service processes on one database, that
/// together complete a batch: exactly one of them releases it, every waiting job is queued once,
/// and every estimator has exactly one result.
#[tokio::test]
async fn concurrent_labels_requests_release_the_batch_exactly_once() {
    let app = app().await;
    let other = app.sibling();
    let n = 400;
    let (_, without, labels) = bodies(n, 12);
    let (s, a) = app.upload("race", "v1", &without).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{a}");
    let batch = a["batch"]["id"].as_str().unwrap().to_string();
    let posts = (0..8).map(|part| {
        let router = if part % 2 == 0 { &app } else { &other };
        let chosen: Vec<usize> = (0..n).filter(|i| i % 8 == part).collect();
        let body = labels_json(&chosen, &labels);
        async move { post_labels(router, "race", "application/json", body).await }
    });
    let answers = futures_util::future::join_all(posts).await;
    let mut released = 0;
    for (s, out) in &answers {
        assert_eq!(*s, StatusCode::ACCEPTED, "{out}");
        released += (out["batches"][0]["released"] == true) as usize;
    }
    assert_eq!(released, 1, "{answers:?}");
    // One job per estimator and parameters (implied_mi runs label-free at upload and again
    // with the labels), none left waiting.
    let id = batch.parse::<uuid::Uuid>().unwrap();
    let queued: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT estimator, params::text, count(*) FROM jobs WHERE batch_id = $1
         GROUP BY estimator, params::text ORDER BY 1, 2",
    )
    .bind(id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(
        queued.len() >= 2 && queued.iter().all(|q| q.2 == 1),
        "{queued:?}"
    );
    let waiting: Option<Value> =
        sqlx::query_scalar("SELECT pending_jobs FROM batches WHERE id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(
        waiting
            .as_ref()
            .is_none_or(|w| w.as_array().is_some_and(|a| a.is_empty())),
        "{waiting:?}"
    );
    let detail = run_all(&app, &batch).await;
    let results = detail["results"].as_array().unwrap();
    assert_eq!(results.len(), queued.len(), "one result per job: {detail}");
    let r = result(&detail, "shannon_mi", None);
    assert_eq!(r["details"]["label_coverage"], 1.0);
}

/// Ids are registered by one COPY: ids with a backslash (COPY's escape character) and non-ASCII
/// letters are stored as sent, with the labels that came with them; an id already taken far past
/// the first piece sent (about 1 MiB) or in the very first row is a 409 naming it, with nothing
/// stored, and the database connection is usable afterwards.
#[tokio::test]
async fn ids_are_copied_as_sent_and_a_clash_anywhere_stores_nothing() {
    let app = app().await;
    let n = 30_000;
    let mut body = classifier_batch(n, 3, 0.7, 9);
    let ids: Vec<String> = (0..n).map(|i| format!("u\\{i}é")).collect();
    body["ids"] = json!(ids);
    let (s, a) = app.upload("copy", "v1", &body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{a}");
    assert_eq!(app.count("sample_ids").await, n as i64);
    let (id, label, at): (String, Option<String>, bool) = sqlx::query_as(
        "SELECT sample_id, label, labelled_at IS NOT NULL FROM sample_ids WHERE idx = 7",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(id, "u\\7é");
    assert_eq!(label, Some(body["labels"][7].to_string()));
    assert!(at);
    let batches = app.count("batches").await;
    for taken_at in [25_000usize, 0] {
        let mut other = classifier_batch(n, 3, 0.7, 10);
        let mut fresh: Vec<String> = (0..n).map(|i| format!("v{i}")).collect();
        fresh[taken_at] = format!("u\\{taken_at}é");
        other["ids"] = json!(fresh);
        let (s, p) = app.upload("copy", "v2", &other).await;
        assert_eq!(s, StatusCode::CONFLICT, "{p}");
        assert_eq!(p["errors"][0]["pointer"], format!("/ids/{taken_at}"));
        assert_eq!(app.count("batches").await, batches);
        assert_eq!(app.count("sample_ids").await, n as i64);
    }
    let mut last = classifier_batch(100, 3, 0.7, 11);
    last["ids"] = json!((0..100).map(|i| format!("w{i}")).collect::<Vec<_>>());
    let (s, a) = app.upload("copy", "v3", &last).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{a}");
    assert_eq!(app.count("sample_ids").await, n as i64 + 100);
}
