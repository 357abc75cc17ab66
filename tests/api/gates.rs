//! Gates, aliases, comparisons, history and KPI correlation, end to end.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::support::{app, fast_workers, fresh_db, TestApp};

/// The jackknife `shannon_mi` (bits) of a 2×2 table, computed deletion by deletion.
fn jk_bits(t: [[f64; 2]; 2]) -> f64 {
    crate::support::jackknife_mi_nats(&[&t[0], &t[1]]) / std::f64::consts::LN_2
}

/// `shannon_mi` of `binary(0)`, the table [[100,0],[0,100]] (plug-in 1 bit): its jackknife is
/// above ln 2 and is reported clipped at 1 bit, the most two classes carry.
fn perfect_bits() -> f64 {
    let raw = jk_bits([[100.0, 0.0], [0.0, 100.0]]);
    assert!(raw > 1.0, "the unclipped jackknife is {raw}");
    raw.min(1.0)
}

/// A batch whose shannon_mi is known: 25 copies of labels 0,0,0,0,1,1,1,1 with the first
/// `wrong` predictions of each copy flipped (N = 200, enough samples per cell for a reliable
/// estimate): table [[100 − 25·wrong, 25·wrong], [0, 100]] for wrong ≤ 4.
fn binary(wrong: usize) -> Value {
    let (mut labels, mut preds) = (vec![], vec![]);
    for _ in 0..25 {
        let l = [0, 0, 0, 0, 1, 1, 1, 1];
        let mut p = l;
        for x in p.iter_mut().take(wrong) {
            *x = 1 - *x;
        }
        labels.extend(l);
        preds.extend(p);
    }
    json!({"task": "multiclass", "labels": labels, "predictions": preds,
           "estimators": [{"id": "shannon_mi"}]})
}

async fn upload_and_run(app: &TestApp, version: &str, body: &Value) {
    let (s, b) = app.upload("m", version, body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let w = app.workers(fast_workers(1));
    for j in b["jobs"].as_array().unwrap() {
        assert_eq!(
            app.wait_job(j["id"].as_str().unwrap(), 30).await["state"],
            "succeeded"
        );
    }
    w.shutdown().await;
}

async fn put(app: &TestApp, uri: &str, body: Value) -> (StatusCode, Value) {
    let (s, _, v) = app
        .call(
            axum::http::Request::put(uri)
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body.to_string()))
                .unwrap(),
        )
        .await;
    (s, v)
}

#[tokio::test]
async fn aliases_policies_decisions_and_compare() {
    let app = app().await;
    upload_and_run(&app, "v1", &binary(0)).await; // perfect: about 1 bit
    upload_and_run(&app, "v2", &binary(2)).await; // [[50,50],[0,100]]: well below
    let (s, a) = put(
        &app,
        "/v1/models/m/aliases/production",
        json!({"version": "v1"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(a["version"], "v1");
    assert_eq!(
        put(
            &app,
            "/v1/models/m/aliases/production",
            json!({"version": "v9"})
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    let rules = json!({"rules": [{"metric": "shannon_mi", "op": "gte", "baseline": "production", "max_regression": {"relative": 0.02}}]});
    let (s, p) = put(&app, "/v1/models/m/gates/release", rules.clone()).await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["version"], 1);
    let (_, p2) = put(&app, "/v1/models/m/gates/release", rules).await;
    assert_eq!(p2["version"], 2, "policies are versioned");
    let (s, bad) = put(
        &app,
        "/v1/models/m/gates/bad",
        json!({"rules": [{"metric": "nope", "op": "gte", "threshold": 1}]}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    assert_eq!(bad["errors"][0]["pointer"], "/rules/0/metric");

    let (s, _, d) = app
        .post_json("/v1/models/m/versions/v2/gate", &json!({"gate": "release"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["verdict"], "fail", "{d}");
    assert_eq!(d["policy"]["version"], 2);
    let r = &d["rules"][0];
    assert_eq!(r["baseline_version"], "v1");
    approx::assert_abs_diff_eq!(
        r["baseline_value"].as_f64().unwrap(),
        perfect_bits(),
        epsilon = 1e-9
    );
    approx::assert_abs_diff_eq!(
        r["threshold"].as_f64().unwrap(),
        0.98 * perfect_bits(),
        epsilon = 1e-9
    );
    assert!(r["delta"]["value"].as_f64().unwrap() < 0.0);
    assert_eq!(
        d["batches"].as_array().unwrap().len(),
        2,
        "candidate and baseline batches recorded"
    );
    assert_eq!(d["batches"][0]["digest"].as_str().unwrap().len(), 64);
    let (s, stored) = app
        .get(&format!("/v1/gate-decisions/{}", d["id"].as_str().unwrap()))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(stored, d, "decisions are stored as returned");
    let (_, _, d1) = app
        .post_json("/v1/models/m/versions/v1/gate", &json!({"gate": "release"}))
        .await;
    assert_eq!(d1["verdict"], "pass", "{d1}");
    let (_, list) = app.get("/v1/models/m/gate-decisions?limit=1").await;
    assert_eq!(list["items"][0]["id"], d1["id"], "newest first");
    assert!(list["next_cursor"].is_string());

    let (s, c) = app
        .get("/v1/models/m/compare?baseline=production&candidate=v2")
        .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let m = &c["metrics"][0];
    assert_eq!(m["metric"], "shannon_mi");
    approx::assert_abs_diff_eq!(
        m["baseline"]["value"].as_f64().unwrap(),
        perfect_bits(),
        epsilon = 1e-9
    );
    approx::assert_abs_diff_eq!(
        m["delta"]["value"].as_f64().unwrap(),
        m["candidate"]["value"].as_f64().unwrap() - perfect_bits(),
        epsilon = 1e-12
    );
    approx::assert_abs_diff_eq!(
        m["relative_delta"].as_f64().unwrap(),
        m["delta"]["value"].as_f64().unwrap() / perfect_bits(),
        epsilon = 1e-12
    );

    let (s, _, inline) = app
        .post_json("/v1/models/m/versions/v2/gate", &json!({"rules": [{"metric": "shannon_mi.nmi", "op": "gte", "threshold": 0.1, "severity": "warning"}]}))
        .await;
    assert_eq!(s, StatusCode::OK, "{inline}");
    assert!(inline["policy"].is_null());
    let (s, _, none) = app
        .post_json("/v1/models/m/versions/v2/gate", &json!({"gate": "missing"}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{none}");
}

/// A baseline names an alias, a version, `previous` (the version created just before), or the
/// version itself; one that resolves to nothing makes the rule inconclusive. Values (bits) are the
/// jackknife MI of the `binary` tables, computed deletion by deletion: v1 [[100,0],[0,100]]
/// 1.0036, v2 [[50,50],[0,100]] 0.3113, v3 [[75,25],[0,100]] 0.5488. With a tolerated regression of 0.1 bits the
/// verdict depends on which baseline was resolved: v3 fails against v1 and passes against v2
/// and against itself.
#[tokio::test]
async fn every_kind_of_baseline_reference_resolves() {
    let app = app().await;
    upload_and_run(&app, "v1", &binary(0)).await;
    upload_and_run(&app, "v2", &binary(2)).await;
    upload_and_run(&app, "v3", &binary(1)).await;
    assert_eq!(
        put(
            &app,
            "/v1/models/m/aliases/production",
            json!({"version": "v1"})
        )
        .await
        .0,
        StatusCode::OK
    );
    let rule = |b: &str| json!({"metric": "shannon_mi", "op": "gte", "baseline": b, "max_regression": {"absolute": 0.1}});
    let gate = |v: &'static str, refs: &'static [&'static str]| {
        let body = json!({"rules": refs.iter().map(|b| rule(b)).collect::<Vec<_>>()});
        let app = &app;
        async move {
            let (s, _, d) = app
                .post_json(&format!("/v1/models/m/versions/{v}/gate"), &body)
                .await;
            assert_eq!(s, StatusCode::OK, "{d}");
            d
        }
    };
    let d = gate(
        "v3",
        &["production", "v2", "previous", "v3", "nosuch", "production"],
    )
    .await;
    let got: Vec<(&str, &str)> = d["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["baseline_version"].as_str().unwrap_or("-"),
                r["verdict"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("v1", "fail"),
            ("v2", "pass"),
            ("v2", "pass"),
            ("v3", "pass"),
            ("-", "inconclusive"),
            ("v1", "fail")
        ],
        "{d}"
    );
    approx::assert_abs_diff_eq!(
        d["rules"][0]["baseline_value"].as_f64().unwrap(),
        perfect_bits(),
        epsilon = 1e-9
    );
    assert_eq!(
        d["rules"][3]["delta"]["value"].as_f64().unwrap(),
        0.0,
        "the version against itself"
    );
    // Every binary batch has the same labels: the differences are paired.
    for r in d["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["delta"].is_object())
    {
        assert_eq!(r["delta"]["method"], "paired", "{r}");
    }
    assert_eq!(d["rules"][3]["delta"]["ci_high"], 0.0);
    assert!(
        d["rules"][4]["message"]
            .as_str()
            .unwrap()
            .contains("nosuch"),
        "{d}"
    );
    let v2 = jk_bits([[50.0, 50.0], [0.0, 100.0]]);
    let v3 = jk_bits([[75.0, 25.0], [0.0, 100.0]]);
    approx::assert_abs_diff_eq!(
        d["rules"][1]["baseline_value"].as_f64().unwrap(),
        v2,
        epsilon = 1e-9
    );
    approx::assert_abs_diff_eq!(d["rules"][1]["value"].as_f64().unwrap(), v3, epsilon = 1e-9);
    approx::assert_abs_diff_eq!(
        d["rules"][1]["threshold"].as_f64().unwrap(),
        v2 - 0.1,
        epsilon = 1e-9
    );
    assert_eq!(d["verdict"], "fail");
    let versions: std::collections::BTreeSet<&str> = d["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["version"].as_str().unwrap())
        .collect();
    assert_eq!(
        versions,
        ["v1", "v2", "v3"].into(),
        "each batch recorded once"
    );
    assert_eq!(d["batches"].as_array().unwrap().len(), 3);
    // The first version has no previous one; an alias moved is followed by the next decision.
    let first = gate("v1", &["previous"]).await;
    assert_eq!(first["rules"][0]["verdict"], "inconclusive", "{first}");
    assert!(first["rules"][0]["baseline_version"].is_null());
    put(
        &app,
        "/v1/models/m/aliases/production",
        json!({"version": "v2"}),
    )
    .await;
    let moved = gate("v3", &["production"]).await;
    assert_eq!(moved["rules"][0]["baseline_version"], "v2", "{moved}");
    // Unknown models and versions are 404 whatever the rules.
    let (s, _, p) = app
        .post_json(
            "/v1/models/nosuch/versions/v1/gate",
            &json!({"gate": "release"}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{p}");
    let (s, _, p) = app
        .post_json(
            "/v1/models/m/versions/v9/gate",
            &json!({"rules": [rule("v1")]}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{p}");
}

#[tokio::test]
async fn unfinished_jobs_at_the_deadline_give_pending() {
    let app = app().await;
    let (s, _) = app.upload("m", "v1", &binary(1)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let started = std::time::Instant::now();
    let (s, _, d) = app
        .post_json("/v1/models/m/versions/v1/gate", &json!({"rules": [{"metric": "shannon_mi", "op": "gte", "threshold": 0.1}], "wait_seconds": 0.5}))
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["verdict"], "pending", "{d}");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "waited for the deadline"
    );
}

/// Insert a synthetic result series (values in nats) for one model/version at known times.
async fn series(app: &TestApp, model: &str, values: &[(f64, Option<f64>)], minutes_apart: i64) {
    let (s, b) = app.upload(model, "v1", &binary(0)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let batch = b["batch"]["id"].as_str().unwrap().to_string();
    sqlx::query("DELETE FROM jobs")
        .execute(&app.pool)
        .await
        .unwrap();
    for (i, (v, kpi)) in values.iter().enumerate() {
        // One batch per point, each with its KPI.
        let bid = uuid::Uuid::now_v7();
        sqlx::query(
            "INSERT INTO batches (id, model_id, version_id, task, n, digest, size_bytes, content_type, metadata)
             SELECT $1, model_id, version_id, task, n, digest, size_bytes, content_type, $2 FROM batches WHERE id = $3::uuid",
        )
        .bind(bid)
        .bind(match kpi { Some(k) => json!({"kpis": {"conversion": k}}), None => json!({}) })
        .bind(&batch)
        .execute(&app.pool)
        .await
        .unwrap();
        let job = uuid::Uuid::now_v7();
        sqlx::query("INSERT INTO jobs (id, batch_id, estimator, estimator_version, params, params_hash, state) VALUES ($1, $2, 'shannon_mi', '1', '{}', 'h', 'succeeded')")
            .bind(job)
            .bind(bid)
            .execute(&app.pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO results (id, job_id, batch_id, model_id, version_id, estimator, estimator_version, params, value, n, details, computed_at)
             SELECT $1, $2, b.id, b.model_id, b.version_id, 'shannon_mi', '1', '{}', $3, 8, '{\"nmi\": 0.5}',
                    timestamptz '2026-01-01 00:00:00+00' + make_interval(mins => $4)
             FROM batches b WHERE b.id = $5",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(job)
        .bind(v)
        .bind((i as i64 * minutes_apart) as i32)
        .bind(bid)
        .execute(&app.pool)
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn history_downsamples_to_the_right_min_mean_max() {
    let app = app().await;
    let values: Vec<(f64, Option<f64>)> = (0..10).map(|i| (i as f64, None)).collect();
    series(&app, "h", &values, 1).await;
    // 10 points one minute apart from 00:00 to 00:09; 5 buckets over [00:00, 00:10): 2 points each.
    let (s, h) = app
        .get("/v1/models/h/history?metric=shannon_mi&buckets=5&unit=nats&from=2026-01-01T00:00:00Z&to=2026-01-01T00:10:00Z")
        .await;
    assert_eq!(s, StatusCode::OK, "{h}");
    let b = h["buckets"].as_array().unwrap();
    assert_eq!(b.len(), 5, "{h}");
    for (k, bucket) in b.iter().enumerate() {
        assert_eq!(bucket["count"], 2, "{bucket}");
        assert_eq!(bucket["min"].as_f64().unwrap(), 2.0 * k as f64);
        assert_eq!(bucket["max"].as_f64().unwrap(), 2.0 * k as f64 + 1.0);
        approx::assert_abs_diff_eq!(
            bucket["mean"].as_f64().unwrap(),
            2.0 * k as f64 + 0.5,
            epsilon = 1e-12
        );
    }
    assert_eq!(b[1]["t_start"], "2026-01-01T00:02:00Z");
    // Raw points, paged, in bits by default.
    let (_, p) = app
        .get("/v1/models/h/history?metric=shannon_mi&limit=4")
        .await;
    assert_eq!(p["items"].as_array().unwrap().len(), 4);
    approx::assert_abs_diff_eq!(
        p["items"][1]["value"].as_f64().unwrap(),
        1.0 / std::f64::consts::LN_2,
        epsilon = 1e-12
    );
    let (_, p2) = app
        .get(&format!(
            "/v1/models/h/history?metric=shannon_mi&limit=100&cursor={}",
            p["next_cursor"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        p2["items"].as_array().unwrap().len(),
        6,
        "10 points in all, 4 on the first page"
    );
    assert!(p2["next_cursor"].is_null());
    let (_, st) = app
        .get("/v1/models/h/history?metric=shannon_mi.nmi&limit=1")
        .await;
    assert_eq!(st["items"][0]["value"], 0.5, "ratios are not converted");
    assert_eq!(
        app.get("/v1/models/h/history?metric=bogus").await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn kpi_correlation_matches_hand_computation() {
    let app = app().await;
    // x = (1, 2, 3, 4, 5) nats, KPI y = (2, 1, 4, 3, 5): Pearson = Spearman = 0.8 (by hand:
    // Σ(x−3)(y−3) = 8, Σ(x−3)² = Σ(y−3)² = 10).
    let values = [
        (1.0, Some(2.0)),
        (2.0, Some(1.0)),
        (3.0, Some(4.0)),
        (4.0, Some(3.0)),
        (5.0, Some(5.0)),
        (9.0, None),
    ];
    series(&app, "k", &values, 1).await;
    let (s, r) = app
        .get("/v1/models/k/kpi-correlation?metric=shannon_mi&kpi=conversion")
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let item = &r["items"][0];
    assert_eq!(item["n"], 5, "{r}");
    approx::assert_abs_diff_eq!(item["pearson"]["r"].as_f64().unwrap(), 0.8, epsilon = 1e-12);
    approx::assert_abs_diff_eq!(
        item["spearman"]["r"].as_f64().unwrap(),
        0.8,
        epsilon = 1e-12
    );
    let (lo, hi) = (
        item["pearson"]["ci_low"].as_f64().unwrap(),
        item["pearson"]["ci_high"].as_f64().unwrap(),
    );
    assert!(lo < 0.8 && 0.8 < hi && lo > -1.0 && hi < 1.0);
}

#[tokio::test]
async fn the_gate_cli_exits_with_the_verdict_against_a_running_server() {
    let (options, _) = fresh_db().await;
    let pool = sqlx::PgPool::connect_with(options).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let args = infoaudit::config::ServeArgs {
        workers: Some(2),
        ..Default::default()
    };
    let server = tokio::spawn(async move {
        infoaudit::app::serve(pool, &args, Some(listener), async {
            let _ = stop_rx.await;
        })
        .await
    });
    let bin = env!("CARGO_BIN_EXE_infoaudit");
    let dir = std::env::temp_dir().join(format!("infoaudit-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |args: Vec<String>| async move {
        let out = tokio::process::Command::new(bin)
            .args(&args)
            .output()
            .await
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let s = |x: &str| x.to_string();
    for (version, wrong) in [("v1", 0), ("v2", 2)] {
        let f = dir.join(format!("{version}.json"));
        std::fs::write(&f, binary(wrong).to_string()).unwrap();
        let (code, out, err) = run(vec![
            s("submit"),
            s("--url"),
            url.clone(),
            s("--model"),
            s("m"),
            s("--version"),
            s(version),
            f.display().to_string(),
            s("--wait"),
            s("--timeout"),
            s("60"),
        ])
        .await;
        assert_eq!(code, 0, "submit: {out} {err}");
        assert!(out.contains("shannon_mi"), "{out}");
    }
    let http = reqwest::Client::new();
    http.put(format!("{url}/v1/models/m/aliases/production"))
        .json(&json!({"version": "v1"}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    http.put(format!("{url}/v1/models/m/gates/release"))
        .json(&json!({"rules": [{"metric": "shannon_mi", "op": "gte", "baseline": "production", "max_regression": {"relative": 0.02}}]}))
        .send().await.unwrap().error_for_status().unwrap();
    http.put(format!("{url}/v1/models/m/gates/big-sample"))
        .json(&json!({"rules": [{"metric": "shannon_mi", "op": "gte", "threshold": 0.1, "min_samples": 1000}]}))
        .send().await.unwrap().error_for_status().unwrap();
    let gate = |version: &str, gate: &str| {
        vec![
            s("gate"),
            s("--url"),
            url.clone(),
            s("--model"),
            s("m"),
            s("--version"),
            s(version),
            s("--gate"),
            s(gate),
            s("--wait"),
            s("30"),
        ]
    };
    let (code, out, _) = run(gate("v1", "release")).await;
    assert_eq!(code, 0, "v1 equals production: pass\n{out}");
    assert!(out.contains("PASS") && out.contains("shannon_mi"), "{out}");
    let (code, out, _) = run(gate("v2", "release")).await;
    assert_eq!(code, 1, "v2 regressed: fail\n{out}");
    assert!(out.contains("FAIL"), "{out}");
    let (code, out, _) = run(gate("v2", "big-sample")).await;
    assert_eq!(code, 2, "too few samples: inconclusive\n{out}");
    let (code, _, err) = run(gate("v2", "no-such-gate")).await;
    assert_eq!(code, 3, "error: {err}");
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A multiclass batch of 3000 samples on a fixed evaluation set (labels from seed 1) with a
/// model's probabilities: `sharp` sets how confident, `flip` moves every `flip`-th prediction.
fn eval_batch(sharp: f64, flip: usize) -> Value {
    let mut g = infoaudit::estimate::rng::SplitMix64::new(1);
    let mut m = infoaudit::estimate::rng::SplitMix64::new(2);
    let (k, n) = (5usize, 3000usize);
    let mut labels = Vec::with_capacity(n);
    let mut probs = Vec::with_capacity(n);
    for i in 0..n {
        let y = g.below(k);
        let noise: Vec<f64> = (0..k).map(|_| m.uniform()).collect();
        let mut pred = if noise[0] < 0.75 { y } else { (y + 1) % k };
        if flip > 0 && i % flip == 0 {
            pred = (pred + 2) % k;
        }
        let mut row: Vec<f64> = (0..k).map(|j| 0.2 + noise[j]).collect();
        row[pred] += sharp;
        let t: f64 = row.iter().sum();
        labels.push(y);
        probs.push(row.iter().map(|v| v / t).collect::<Vec<_>>());
    }
    json!({"task": "multiclass", "labels": labels, "probabilities": probs,
           "estimators": ["semantic_mi", "shannon_mi"]})
}

/// The review's scenario: production aliased to v1 and v1 gated against itself with
/// `semantic_mi gte production, max_regression relative 0.02` (3000 samples). Version 1 judged
/// v1's own interval against a bound from its point value and answered inconclusive; the
/// difference is paired (same samples), exactly 0 with a zero-width interval, and passes. A second
/// model on the same evaluation set is compared paired too, with a narrower interval than the
/// two sides' intervals combined as independent; /compare reports the same object.
#[tokio::test]
async fn a_version_against_itself_passes_and_same_samples_compare_paired() {
    let app = app().await;
    upload_and_run(&app, "v1", &eval_batch(2.0, 0)).await;
    upload_and_run(&app, "v2", &eval_batch(2.0, 9)).await;
    put(
        &app,
        "/v1/models/m/aliases/production",
        json!({"version": "v1"}),
    )
    .await;
    let rule = json!({"metric": "semantic_mi", "op": "gte", "baseline": "production", "max_regression": {"relative": 0.02}});
    let (s, _, d) = app
        .post_json("/v1/models/m/versions/v1/gate", &json!({"rules": [rule]}))
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["verdict"], "pass", "{d}");
    let delta = &d["rules"][0]["delta"];
    assert_eq!(delta["method"], "paired", "{d}");
    assert_eq!(delta["value"], 0.0);
    assert_eq!(
        (delta["ci_low"].as_f64(), delta["ci_high"].as_f64()),
        (Some(0.0), Some(0.0))
    );
    // v2 against v1 on the same samples: paired, Δ the difference of the two values.
    let (_, _, d2) = app
        .post_json("/v1/models/m/versions/v2/gate", &json!({"rules": [rule]}))
        .await;
    let r = &d2["rules"][0];
    let delta = &r["delta"];
    assert_eq!(delta["method"], "paired", "{d2}");
    let (v, b) = (
        r["value"].as_f64().unwrap(),
        r["baseline_value"].as_f64().unwrap(),
    );
    approx::assert_abs_diff_eq!(delta["value"].as_f64().unwrap(), v - b, epsilon = 1e-12);
    let (lo, hi) = (
        delta["ci_low"].as_f64().unwrap(),
        delta["ci_high"].as_f64().unwrap(),
    );
    assert!(lo < v - b && v - b < hi, "{delta}");
    // Against the independent combination of the two sides' own intervals.
    let (_, j1) = app.get("/v1/models/m/versions/v1").await;
    let (_, j2) = app.get("/v1/models/m/versions/v2").await;
    let half = |j: &Value| {
        let m = j["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["estimator"] == "semantic_mi")
            .unwrap();
        let l = &m["latest"];
        (l["ci_high"].as_f64().unwrap() - l["ci_low"].as_f64().unwrap()) / 2.0
    };
    let independent = (half(&j1).powi(2) + half(&j2).powi(2)).sqrt();
    let paired = (hi - lo) / 2.0;
    eprintln!("paired half-width {paired:.5} bits, independent {independent:.5} bits");
    assert!(
        paired < 0.6 * independent,
        "paired {paired} vs independent {independent}"
    );
    let (s, c) = app
        .get("/v1/models/m/compare?baseline=production&candidate=v2")
        .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    for m in c["metrics"].as_array().unwrap() {
        assert_eq!(m["delta"]["method"], "paired", "{m}");
    }
    let sem = c["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == "semantic_mi")
        .unwrap();
    approx::assert_abs_diff_eq!(
        sem["delta"]["ci_low"].as_f64().unwrap(),
        lo,
        epsilon = 1e-12
    );
    // A batch on other samples is compared as independent.
    let mut other = eval_batch(2.0, 0);
    other["labels"][0] = json!((other["labels"][0].as_u64().unwrap() + 1) % 5);
    upload_and_run(&app, "v3", &other).await;
    let (_, _, d3) = app
        .post_json("/v1/models/m/versions/v3/gate", &json!({"rules": [rule]}))
        .await;
    assert_eq!(d3["rules"][0]["delta"]["method"], "independent", "{d3}");
}

/// Two versions on the same labels are compared paired only when their weights agree too and
/// both sides' data is still stored; otherwise the difference falls back to the two sides'
/// own intervals combined as independent (Δ ± 1.96·√(se_c² + se_b²), recomputed here from the
/// two stored intervals), and says so in `method`.
#[tokio::test]
async fn weights_that_differ_or_purged_data_fall_back_to_independent() {
    let app = app().await;
    let weighted = |sharp: f64, flip: usize, w: &dyn Fn(usize) -> f64| {
        let mut b = eval_batch(sharp, flip);
        b["weights"] = json!((0..3000).map(w).collect::<Vec<f64>>());
        b
    };
    upload_and_run(&app, "w1", &weighted(2.0, 0, &|i| 1.0 + (i % 2) as f64)).await;
    upload_and_run(&app, "w2", &weighted(2.0, 9, &|i| 1.0 + (i % 2) as f64)).await;
    upload_and_run(&app, "w3", &weighted(2.0, 9, &|i| 1.0 + (i % 3) as f64)).await;
    upload_and_run(&app, "p1", &eval_batch(2.0, 0)).await;
    upload_and_run(&app, "p2", &eval_batch(2.0, 9)).await;
    let compare = |base: &'static str, cand: &'static str| {
        let app = &app;
        async move {
            let (s, c) = app
                .get(&format!(
                    "/v1/models/m/compare?baseline={base}&candidate={cand}"
                ))
                .await;
            assert_eq!(s, StatusCode::OK, "{c}");
            c["metrics"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["metric"] == "semantic_mi")
                .unwrap()
                .clone()
        }
    };
    // The independent combination, from the two sides as stored.
    let check_independent = |m: &Value| {
        assert_eq!(m["delta"]["method"], "independent", "{m}");
        let se = |o: &Value| {
            (o["ci_high"].as_f64().unwrap() - o["ci_low"].as_f64().unwrap()) / (2.0 * 1.959964)
        };
        let (c, b) = (&m["candidate"], &m["baseline"]);
        let value = c["value"].as_f64().unwrap() - b["value"].as_f64().unwrap();
        let half = 1.959964 * (se(c).powi(2) + se(b).powi(2)).sqrt();
        let d = &m["delta"];
        approx::assert_abs_diff_eq!(d["value"].as_f64().unwrap(), value, epsilon = 1e-12);
        approx::assert_abs_diff_eq!(d["ci_low"].as_f64().unwrap(), value - half, epsilon = 1e-5);
        approx::assert_abs_diff_eq!(d["ci_high"].as_f64().unwrap(), value + half, epsilon = 1e-5);
    };
    // The same weights: paired, narrower than the independent combination.
    let same = compare("w1", "w2").await;
    assert_eq!(same["delta"]["method"], "paired", "{same}");
    // Other weights on the same labels are other samples.
    check_independent(&compare("w1", "w3").await);
    let paired = compare("w1", "w2").await;
    assert_eq!(paired, same, "the paired difference is kept");

    // Retention purges p1's raw data: nothing to resample, so p2 against p1 is independent.
    let (s, p) = app
        .send(
            "PUT",
            "/v1/models/m/retention",
            None,
            Some(&json!({"data_days": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let aged = sqlx::query(
        "UPDATE batches SET created_at = now() - interval '2 days' WHERE version_id =
           (SELECT id FROM model_versions WHERE name = 'p1')",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    assert_eq!(aged.rows_affected(), 1);
    let purged = infoaudit::store::purge_retention(&app.pool, 10)
        .await
        .unwrap();
    assert_eq!(purged.batches, 1);
    check_independent(&compare("p1", "p2").await);
}
