//! Segments end to end: upload with a segment column → per-segment results and the
//! decomposition → history of `estimator{key=value}` → a gate on a segment's value → the version
//! summary → `/compare` ranking the segment that was made worse first → the dashboard.

use axum::http::StatusCode;
use serde_json::{json, Value};

use std::f64::consts::LN_2;

use crate::support::{app, fast_workers, jackknife_mi_nats};

/// Binary labels and predictions of a binary symmetric channel with error `e` on `n` samples,
/// exactly (n(1−e)/2 on each diagonal cell, ne/2 off it).
fn bsc(n: usize, e: f64) -> Vec<(u32, u32)> {
    let wrong = (n as f64 * e / 2.0).round() as usize;
    let right = n / 2 - wrong;
    let mut out = vec![];
    for (y, p, c) in [(0, 0, right), (0, 1, wrong), (1, 1, right), (1, 0, wrong)] {
        out.extend(std::iter::repeat_n((y, p), c));
    }
    out
}

/// 1 − H_b(e) bits: the MI of a BSC with uniform input (Cover & Thomas, eq. 7.15), which the
/// plug-in estimate of an exact table equals.
fn bsc_bits(e: f64) -> f64 {
    if e == 0.0 {
        return 1.0;
    }
    1.0 + e * e.log2() + (1.0 - e) * (1.0 - e).log2()
}

/// 2400 samples: `eu` (1600) through a BSC(e_eu), `us` (800) through a BSC(0.2); a second key
/// `device` whose value `tiny` has one sample (skipped).
fn batch(e_eu: f64) -> Value {
    let mut rows: Vec<(u32, u32, &str)> = vec![];
    rows.extend(bsc(1600, e_eu).into_iter().map(|(y, p)| (y, p, "eu")));
    rows.extend(bsc(800, 0.2).into_iter().map(|(y, p)| (y, p, "us")));
    let n = rows.len();
    let labels: Vec<u32> = rows.iter().map(|r| r.0).collect();
    let preds: Vec<u32> = rows.iter().map(|r| r.1).collect();
    let probs: Vec<[f64; 2]> = rows
        .iter()
        .map(|r| if r.1 == 0 { [0.8, 0.2] } else { [0.2, 0.8] })
        .collect();
    let region: Vec<&str> = rows.iter().map(|r| r.2).collect();
    let device: Vec<&str> = (0..n)
        .map(|i| if i == 7 { "tiny" } else { "phone" })
        .collect();
    json!({"task": "multiclass", "labels": labels, "predictions": preds, "probabilities": probs,
           "segments": {"region": region, "device": device},
           "estimators": ["shannon_mi", "semantic_mi"]})
}

fn enc(metric: &str) -> String {
    metric
        .replace('{', "%7B")
        .replace('}', "%7D")
        .replace('=', "%3D")
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[tokio::test]
async fn segments_results_history_gates_and_compare() {
    let app = app().await;
    let b1 = app.upload_and_run("v1", &batch(0.0)).await;
    // v2: the same model everywhere except eu, made worse.
    let b2 = app.upload_and_run("v2", &batch(0.3)).await;

    // Per-segment results and the decomposition.
    let (s, v) = app.get(&format!("/v1/batches/{b1}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let results = v["results"].as_array().expect("results");
    let shannon = results
        .iter()
        .find(|r| r["estimator"] == "shannon_mi")
        .expect("shannon_mi");
    let region = &shannon["segments"]["region"];
    let values = region["values"].as_array().unwrap();
    assert_eq!(values.len(), 2, "{region}");
    assert_eq!(values[0]["value"], "eu", "most frequent first");
    assert_eq!(values[0]["n"], 1600);
    assert!((f(&values[0]["share"]) - 2.0 / 3.0).abs() < 1e-12);
    // Each segment's value is the jackknife of its exact table computed the slow way
    // (support::jackknife_mi_nats, leave-one-out on the table), clipped to ln 2 (shannon_mi 3:
    // the error-free eu table's jackknife exceeds the largest possible MI), and inside its
    // interval.
    let ln2 = std::f64::consts::LN_2;
    let eu_table: [&[f64]; 2] = [&[800.0, 0.0], &[0.0, 800.0]];
    let us_table: [&[f64]; 2] = [&[320.0, 80.0], &[80.0, 320.0]];
    let expected: Vec<f64> = [eu_table, us_table]
        .iter()
        .map(|t| jackknife_mi_nats(t).min(ln2) / ln2)
        .collect();
    assert!((expected[0] - 1.0).abs() < 1e-12, "eu is clipped to 1 bit");
    for (seg, want) in values.iter().zip(&expected) {
        let (est, lo, hi) = (f(&seg["estimate"]), f(&seg["ci_low"]), f(&seg["ci_high"]));
        assert!((est - want).abs() < 1e-9, "{seg}: want {want}");
        assert!(lo <= est && est <= hi, "{seg}");
    }
    let d = &region["decomposition"];
    let cond = f(&d["conditional_mi"]);
    // Σ P(s) I_s from the shares 2/3, 1/3 and the independent values above.
    let want_cond = 2.0 / 3.0 * expected[0] + 1.0 / 3.0 * expected[1];
    assert!((cond - want_cond).abs() < 1e-9, "{d}: want {want_cond}");
    assert!(f(&d["conditional_ci_low"]) <= cond && cond <= f(&d["conditional_ci_high"]));
    for (x, (share, want)) in values
        .iter()
        .zip([(2.0 / 3.0, expected[0]), (1.0 / 3.0, expected[1])])
    {
        assert!((f(&x["contribution"]) - share * want).abs() < 1e-9, "{x}");
    }
    // I(Y;S): labels are balanced in both regions, so the Y×S table [[800, 400], [800, 400]]
    // has plug-in 0; its jackknife (the slow way, slightly below 0) is reported clipped at 0,
    // the bottom of MI's range, with an interval that holds 0.
    let ys_table: [&[f64]; 2] = [&[800.0, 400.0], &[800.0, 400.0]];
    let raw_iys = jackknife_mi_nats(&ys_table) / ln2;
    assert!(raw_iys < 0.0, "the unclipped jackknife is {raw_iys}");
    let want_iys = raw_iys.max(0.0);
    assert!(
        (f(&d["i_y_s"]) - want_iys).abs() < 1e-9,
        "{d}: want {want_iys}"
    );
    let (ilo, ihi) = (f(&d["i_y_s_ci_low"]), f(&d["i_y_s_ci_high"]));
    assert!(
        ilo <= 0.0 && 0.0 <= ihi && ilo <= want_iys && want_iys <= ihi,
        "{d}"
    );
    // Labels are balanced in both regions: I(Y;S) = 0 on the plug-in; the chain rule holds.
    let p = &d["plug_in"];
    assert!(f(&p["i_y_s"]).abs() < 1e-12, "{p}");
    let expected_given = (2.0 * bsc_bits(0.0) + bsc_bits(0.2)) / 3.0;
    assert!(
        (f(&p["i_y_yhat_given_s"]) - expected_given).abs() < 1e-9,
        "{p}"
    );
    assert!(
        (f(&p["i_y_yhat_and_s"]) - f(&p["i_y_s"]) - f(&p["i_y_yhat_given_s"])).abs() < 1e-9,
        "{p}"
    );
    // A segment value too small for the estimator is skipped with the reason.
    let device = shannon["segments"]["device"]["values"].as_array().unwrap();
    let tiny = device.iter().find(|x| x["value"] == "tiny").unwrap();
    assert!(tiny["estimate"].is_null());
    assert!(
        tiny["skipped"]
            .as_str()
            .unwrap()
            .contains("fewer samples than a per-segment run gets (10)"),
        "{tiny}"
    );
    assert!(shannon["segments"]["device"]["decomposition"]["conditional_mi"].is_null());
    // Semantic MI has its segments too: each value inside its interval, or (an interval the
    // bootstrap put beside the value, as on the error-free "eu" segment) reported as it is and
    // flagged `unreliable`, never silently widened.
    let semantic = results
        .iter()
        .find(|r| r["estimator"] == "semantic_mi")
        .unwrap();
    // Closed forms: every sample gives q = 0.8 to its prediction and 0.2 to the other class,
    // and both classes' logical probabilities are 0.5 in each region. eu predicts every label:
    // G = ln(0.8/0.5); us is right on 640 of 800: G = 0.8 ln(0.8/0.5) + 0.2 ln(0.2/0.5).
    let sem_eu = (0.8f64 / 0.5).ln() / ln2;
    let sem_us = (0.8 * (0.8f64 / 0.5).ln() + 0.2 * (0.2f64 / 0.5).ln()) / ln2;
    let sem_values = semantic["segments"]["region"]["values"].as_array().unwrap();
    for (x, want) in sem_values.iter().zip([sem_eu, sem_us]) {
        let est = f(&x["estimate"]);
        assert!((est - want).abs() < 1e-9, "{x}: want {want}");
        let inside = f(&x["ci_low"]) <= est && est <= f(&x["ci_high"]);
        assert!(inside || x["reliability"] == "unreliable", "{x}");
    }
    let decomposition = &semantic["segments"]["region"]["decomposition"];
    assert!(
        decomposition["quantity"]
            .as_str()
            .unwrap()
            .contains("not a conditional mutual information"),
        "{decomposition}"
    );
    assert!(shannon["segments"]["region"]["decomposition"]["quantity"]
        .as_str()
        .unwrap()
        .starts_with("I(Y;Ŷ|S)"));

    // History of one segment value; a value never seen has none; bad syntax is a 400.
    let (s, h) = app
        .get(&format!(
            "/v1/models/m/history?metric={}",
            enc("shannon_mi{region=eu}")
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{h}");
    assert_eq!(h["metric"], "shannon_mi{region=eu}");
    let items = h["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{h}");
    assert_eq!(items[0]["version"], "v1");
    assert!((f(&items[0]["value"]) - 1.0).abs() < 0.01);
    assert!((f(&items[1]["value"]) - bsc_bits(0.3)).abs() < 0.01, "{h}");
    let (_, sem) = app
        .get(&format!(
            "/v1/models/m/history?metric={}&buckets=5",
            enc("semantic_mi{region=eu}")
        ))
        .await;
    let counted: i64 = sem["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_i64().unwrap())
        .sum();
    assert_eq!(counted, 2, "{sem}");
    let (s, none) = app
        .get(&format!(
            "/v1/models/m/history?metric={}",
            enc("shannon_mi{region=mars}")
        ))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(none["items"], json!([]));
    let (s, bad) = app
        .get(&format!(
            "/v1/models/m/history?metric={}",
            enc("shannon_mi{region=eu")
        ))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
    assert!(bad["detail"].as_str().unwrap().contains("metric"), "{bad}");

    // A gate on a segment's value: eu fails on v2, passes on v1; us passes on v2.
    let rules = json!({"rules": [
        {"metric": "shannon_mi{region=eu}", "op": "gte", "threshold": 0.5},
        {"metric": "shannon_mi{region=us}", "op": "gte", "threshold": 0.2},
        {"metric": "shannon_mi{region=mars}", "op": "gte", "threshold": 0.2, "severity": "warning"}]});
    let (s, _, g2) = app.post_json("/v1/models/m/versions/v2/gate", &rules).await;
    assert_eq!(s, StatusCode::OK, "{g2}");
    assert_eq!(g2["verdict"], "fail", "{g2}");
    assert_eq!(g2["rules"][0]["verdict"], "fail", "{g2}");
    assert!((f(&g2["rules"][0]["value"]) - bsc_bits(0.3)).abs() < 0.01);
    assert_eq!(g2["rules"][1]["verdict"], "pass", "{g2}");
    assert_eq!(
        g2["rules"][2]["verdict"], "inconclusive",
        "no data is inconclusive: {g2}"
    );
    let (_, _, g1) = app
        .post_json(
            "/v1/models/m/versions/v1/gate",
            &json!({"rules": [{"metric": "shannon_mi{region=eu}", "op": "gte", "threshold": 0.5}]}),
        )
        .await;
    assert_eq!(g1["verdict"], "pass", "{g1}");
    let (s, _, badrule) = app
        .post_json(
            "/v1/models/m/versions/v1/gate",
            &json!({"rules": [{"metric": "shannon_mi{region}", "op": "gte", "threshold": 0.5}]}),
        )
        .await;
    assert!(s.is_client_error(), "{badrule}");

    // The version summary lists each segment value's metric.
    let (_, summary) = app.get("/v1/models/m/versions/v2").await;
    let sm = summary["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["estimator"] == "shannon_mi")
        .unwrap();
    let eu = sm["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["metric"] == "shannon_mi{region=eu}")
        .unwrap_or_else(|| panic!("{sm}"));
    assert!((f(&eu["pooled"]) - bsc_bits(0.3)).abs() < 0.01, "{eu}");

    // /compare ranks eu first: it lost the information.
    let (s, c) = app
        .get("/v1/models/m/compare?baseline=v1&candidate=v2")
        .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    for est in ["shannon_mi", "semantic_mi"] {
        let r = c["segments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["estimator"] == est && r["key"] == "region")
            .unwrap_or_else(|| panic!("{est}: {c}"));
        assert_eq!(r["items"][0]["value"], "eu", "{r}");
        assert!(f(&r["items"][0]["change"]) < -0.1, "{r}");
        if est == "shannon_mi" {
            // eu: (2/3)(I_c − I_b) with I_b = 1, I_c = 1 − H(0.3) bits; us unchanged.
            let want = 2.0 / 3.0 * (bsc_bits(0.3) - 1.0);
            assert!((f(&r["items"][0]["change"]) - want).abs() < 0.01, "{r}");
            assert!(f(&r["items"][1]["change"]).abs() < 1e-9, "{r}");
        }
    }

    // The dashboard shows the per-segment table and the ranking.
    let (s, page) = app.get(&format!("/batches/{b2}")).await;
    assert_eq!(s, StatusCode::OK);
    let page = page.as_str().unwrap();
    assert!(page.contains("<h2>Segments</h2>"), "{page}");
    assert!(
        page.contains("tiny") && page.contains("fewer samples than a per-segment run gets (10)")
    );
    let (_, model) = app.get("/models/m").await;
    let model = model.as_str().unwrap();
    let ranking = &model[model
        .find("Segments: v1 → v2")
        .expect("the ranking section")..];
    // Its first row is eu, the segment that lost the information, then us.
    let (eu_at, us_at) = (
        ranking
            .find("<td class=\"mono\">eu</td>")
            .expect("eu ranked"),
        ranking
            .find("<td class=\"mono\">us</td>")
            .expect("us ranked"),
    );
    assert!(eu_at < us_at, "eu first");
}

/// A segmented upload cannot multiply the work or the answers without bound: thousands of tiny
/// segment values are skipped (below 10 samples) instead of each running the estimator, the
/// jobs end quickly, and the batch, the version summary and the comparison list at most 100
/// values per key with the rest counted.
#[tokio::test]
async fn segment_work_and_answers_are_bounded() {
    let app = app().await;
    let n = 3000;
    let mut b = crate::support::classifier_batch(n, 4, 0.8, 7);
    b["estimators"] = json!(["shannon_mi", "semantic_mi", "ce_bound", "rg_curve"]);
    b["max_segment_values"] = json!(10000);
    let user: Vec<String> = (0..n).map(|i| format!("u{}", i / 2)).collect();
    let bucket: Vec<String> = (0..n).map(|i| format!("b{}", i % 150)).collect();
    b["segments"] = json!({"user": user, "bucket": bucket});
    let started = std::time::Instant::now();
    let batch = app.upload_and_run("v1", &b).await;
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(60), "{took:?}");
    let (s, detail) = app.get(&format!("/v1/batches/{batch}")).await;
    assert_eq!(s, StatusCode::OK);
    let size = detail.to_string().len();
    assert!(size < 2_000_000, "the batch answer is {size} bytes");
    for r in detail["results"].as_array().unwrap() {
        let users = &r["segments"]["user"];
        assert_eq!(
            users["values"].as_array().unwrap().len(),
            100,
            "{}",
            r["estimator"]
        );
        assert_eq!(users["values_omitted"], 1400);
        assert!(users["values"][0]["skipped"]
            .as_str()
            .unwrap()
            .contains("fewer samples than a per-segment run gets"));
        let buckets = r["segments"]["bucket"]["values"].as_array().unwrap();
        assert_eq!(buckets.len(), 100);
        assert!(
            buckets[0]["estimate"].is_number(),
            "20 samples are computed: {}",
            buckets[0]
        );
    }
    let (s, summary) = app.get("/v1/models/m/versions/v1").await;
    assert_eq!(s, StatusCode::OK, "{summary}");
    for m in summary["metrics"].as_array().unwrap() {
        let listed = m["segments"].as_array().unwrap().len();
        assert!(listed <= 200, "{listed} segment metrics listed");
        assert!(
            m["segments_omitted"].as_u64().unwrap() > 0,
            "{}",
            m["estimator"]
        );
    }
    // A second version on the same segments: the comparison ranks at most 100 per key.
    let mut b2 = b.clone();
    b2["probabilities"] = crate::support::classifier_batch(n, 4, 0.6, 8)["probabilities"].clone();
    b2["labels"] = crate::support::classifier_batch(n, 4, 0.6, 8)["labels"].clone();
    app.upload_and_run("v2", &b2).await;
    let (s, cmp) = app
        .get("/v1/models/m/compare?baseline=v1&candidate=v2")
        .await;
    assert_eq!(s, StatusCode::OK, "{cmp}");
    let size = cmp.to_string().len();
    assert!(size < 2_000_000, "the comparison is {size} bytes");
    for r in cmp["segments"].as_array().unwrap() {
        assert!(r["items"].as_array().unwrap().len() <= 100);
        if r["key"] == "bucket" {
            assert_eq!(r["items_omitted"], 50, "{}", r["estimator"]);
        }
    }
}

/// A job is bounded in time: past the per-job time budget the estimator is stopped and the job
/// fails saying so (it is not retried).
#[tokio::test]
async fn a_job_over_its_time_budget_is_stopped_and_says_so() {
    let app = app().await;
    let mut b = crate::support::classifier_batch(2000, 4, 0.8, 3);
    b["estimators"] = json!(["semantic_mi"]);
    let (s, v) = app.upload("slow", "v1", &b).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let mut cfg = fast_workers(1);
    cfg.job_time = std::time::Duration::from_nanos(1);
    let workers = app.workers(cfg);
    let job = app.wait_job(v["jobs"][0]["id"].as_str().unwrap(), 60).await;
    workers.shutdown().await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["attempts"], 1, "{job}");
    let detail = job["error"]["detail"].as_str().unwrap();
    assert!(detail.contains("per-job time budget"), "{detail}");
}

/// Regions eu (800 samples, a BSC whose error the test sets), us (600, BSC(0.2)), jp (400,
/// BSC(0.1)) and br (200, BSC(0.4)), with `max_segment_values` 2: jp and br are grouped as
/// `__other__`, and `metadata.kpis.conv` set to `kpi`.
fn regions(e_eu: f64, kpi: f64) -> Value {
    let mut rows: Vec<(u32, u32, &str)> = vec![];
    for (n, e, r) in [
        (800, e_eu, "eu"),
        (600, 0.2, "us"),
        (400, 0.1, "jp"),
        (200, 0.4, "br"),
    ] {
        rows.extend(bsc(n, e).into_iter().map(|(y, p)| (y, p, r)));
    }
    json!({"task": "multiclass",
           "labels": rows.iter().map(|r| r.0).collect::<Vec<_>>(),
           "predictions": rows.iter().map(|r| r.1).collect::<Vec<_>>(),
           "segments": {"region": rows.iter().map(|r| r.2).collect::<Vec<_>>()},
           "max_segment_values": 2,
           "metadata": {"kpis": {"conv": kpi}},
           "estimators": ["shannon_mi"]})
}

/// `max_segment_values` through the API (the least frequent values grouped as `__other__`, its
/// value the jackknife of the pooled jp + br table), segment metrics in the KPI correlation, in
/// baseline rules and in monitors, and `/metrics` exporting a policy's whole metric but not its
/// segment metric.
#[tokio::test]
async fn other_values_kpis_baselines_monitors_and_metrics_take_segment_metrics() {
    let app = app().await;
    // Five batches of v1 whose eu error falls as the KPI rises, then v2 with eu made worse.
    let errors = [0.3, 0.25, 0.2, 0.1, 0.05];
    let mut batches = Vec::new();
    for (i, e) in errors.iter().enumerate() {
        batches.push(app.upload_and_run("v1", &regions(*e, 1.0 + i as f64)).await);
    }
    let (_, detail) = app
        .get(&format!("/v1/batches/{}?unit=nats", batches[0]))
        .await;
    let region = &detail["results"][0]["segments"]["region"];
    let values = region["values"].as_array().unwrap();
    let names: Vec<&str> = values
        .iter()
        .map(|v| v["value"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["eu", "us", "__other__"], "{region}");
    assert_eq!(values[2]["n"], 600);
    // jp: 180 right and 20 wrong on each diagonal; br: 60 and 40: together [[240, 60], [60, 240]].
    let want = jackknife_mi_nats(&[&[240.0, 60.0], &[60.0, 240.0]]);
    assert!(
        (f(&values[2]["estimate"]) - want).abs() < 1e-9,
        "{} vs {want}",
        values[2]
    );
    let mut bad = regions(0.1, 1.0);
    bad["max_segment_values"] = json!(0);
    let (s, e) = app.upload("m", "v1", &bad).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert!(e.to_string().contains("max_segment_values"), "{e}");

    // KPI correlation of the eu segment's values: they rise with the KPI (Spearman 1), and
    // Pearson is computed here from the segment's history.
    let (s, k) = app
        .get(&format!(
            "/v1/models/m/kpi-correlation?metric={}&kpi=conv",
            enc("shannon_mi{region=eu}")
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{k}");
    let item = &k["items"][0];
    assert_eq!(item["metric"], "shannon_mi{region=eu}", "{k}");
    assert_eq!(item["n"], 5);
    assert!((f(&item["spearman"]["r"]) - 1.0).abs() < 1e-12, "{k}");
    let (_, h) = app
        .get(&format!(
            "/v1/models/m/history?metric={}",
            enc("shannon_mi{region=eu}")
        ))
        .await;
    let x: Vec<f64> = h["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| f(&p["value"]))
        .collect();
    assert_eq!(x.len(), 5, "{h}");
    let y = [1.0, 2.0, 3.0, 4.0, 5.0];
    let (mx, my) = (x.iter().sum::<f64>() / 5.0, 3.0);
    let sxy: f64 = (0..5).map(|i| (x[i] - mx) * (y[i] - my)).sum();
    let sxx: f64 = x.iter().map(|v| (v - mx).powi(2)).sum();
    let syy: f64 = y.iter().map(|v| (v - my).powi(2)).sum();
    let pearson = sxy / (sxx * syy).sqrt();
    assert!(
        (f(&item["pearson"]["r"]) - pearson).abs() < 1e-9,
        "{item} vs {pearson}"
    );

    // A baseline rule on a segment metric: v2's eu lost information against v1's eu, pooled
    // over v1's five batches (the merged table [[1640, 360], [360, 1640]]); us did not (the same
    // channel: only the jackknife's small-sample correction differs, 600 against 3000 samples).
    app.upload_and_run("v2", &regions(0.3, 6.0)).await;
    let rule = |metric: &str, allowed: f64| {
        json!({"metric": metric, "op": "gte", "baseline": "v1",
               "max_regression": {"absolute": allowed}})
    };
    let (s, _, g) = app
        .post_json(
            "/v1/models/m/versions/v2/gate",
            &json!({"rules": [rule("shannon_mi{region=eu}", 0.05), rule("shannon_mi{region=us}", 0.2)]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{g}");
    let (eu, us) = (&g["rules"][0], &g["rules"][1]);
    assert_eq!(eu["verdict"], "fail", "{g}");
    assert_eq!(eu["delta"]["method"], "pooled", "{g}");
    let pooled_eu = jackknife_mi_nats(&[&[1640.0, 360.0], &[360.0, 1640.0]]) / LN_2;
    assert!(
        (f(&eu["baseline_value"]) - pooled_eu).abs() < 1e-9,
        "{eu} vs {pooled_eu}"
    );
    let v2_eu = jackknife_mi_nats(&[&[280.0, 120.0], &[120.0, 280.0]]) / LN_2;
    assert!((f(&eu["value"]) - v2_eu).abs() < 1e-9, "{eu} vs {v2_eu}");
    assert!((f(&eu["delta"]["value"]) - (v2_eu - pooled_eu)).abs() < 1e-9);
    assert_eq!(us["verdict"], "pass", "{g}");
    assert!(f(&us["delta"]["value"]).abs() < 0.005, "{us}");

    // A monitor on the segment metric fires with the segment's rule in its message.
    let workers = app.workers(fast_workers(1));
    let rx = crate::monitors::Receiver::start(&[]).await;
    let (s, m) = app
        .send(
            "PUT",
            "/v1/models/m/monitors/eu",
            None,
            Some(&json!({
                "target": {"version": "v2"},
                "rules": [{"metric": "shannon_mi{region=eu}", "op": "gte", "threshold": 0.5}],
                "window": {"batches": 1},
                "triggers": {"on_result": true},
                "channels": [{"name": "ops", "type": "webhook", "url": rx.url}],
                "notify_on": ["fail"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{m}");
    let (s, _) = app
        .send("POST", "/v1/models/m/monitors/eu/evaluate", None, None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    rx.wait_for(1, 30).await;
    let (_, _, msg) = rx.message(0);
    let r = &msg["data"]["rules"][0];
    assert_eq!(r["metric"], "shannon_mi{region=eu}", "{msg}");
    assert_eq!(r["verdict"], "fail");
    assert!((f(&r["value"]) - bsc_bits(0.3)).abs() < 0.02, "{r}");
    workers.shutdown().await;

    // /metrics: a policy's whole metric is exported, its segment metric is not.
    let (s, p) = app
        .send(
            "PUT",
            "/v1/models/m/gates/release",
            None,
            Some(&json!({"rules": [
                {"metric": "shannon_mi", "op": "gte", "threshold": 0.1},
                {"metric": "shannon_mi{region=eu}", "op": "gte", "threshold": 0.1}]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let text = app.metrics_text().await;
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("infoaudit_information_value{model=\"m\""))
        .collect();
    assert!(
        ours.iter().any(|l| l.contains("metric=\"shannon_mi\"")),
        "{text}"
    );
    assert!(
        !text.lines().any(|l| l.contains("region=eu")),
        "a segment metric was exported: {ours:?}"
    );
}
