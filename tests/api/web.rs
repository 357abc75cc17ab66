//! The dashboard's HTML pages through the real router against a real PostgreSQL.

use std::time::Instant;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};

use crate::support::{app, fast_workers, TestApp};

const EVIL: &str = "<script>alert(1)</script>";
const EVIL_ESCAPED: &str = "&lt;script&gt;alert(1)&lt;/script&gt;";

async fn html(app: &TestApp, uri: &str) -> (StatusCode, String, String) {
    let (s, h, v) = app
        .call(Request::get(uri).body(Body::empty()).unwrap())
        .await;
    let ct = h
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = match v {
        Value::String(s) => s,
        other => other.to_string(),
    };
    (s, ct, body)
}

async fn put(app: &TestApp, uri: &str, body: Value) -> (StatusCode, Value) {
    let (s, _, v) = app
        .call(
            Request::put(uri)
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await;
    (s, v)
}

/// Eight samples, two classes (the second named like a script), probabilities whose argmax is
/// always right: Shannon MI is exactly 1 bit; `wrong` rows get their argmax flipped.
/// 25 copies of 8 samples (N = 200: enough per cell for reliable estimates), `wrong` of each 8
/// given the wrong class.
fn two_class_batch(wrong: usize) -> Value {
    let labels: Vec<u32> = (0..25).flat_map(|_| [0, 0, 0, 0, 1, 1, 1, 1]).collect();
    let probs: Vec<Vec<f64>> = labels
        .iter()
        .enumerate()
        .map(|(i, &y)| {
            let right = if i % 8 < wrong { 0.3 } else { 0.8 };
            if y == 0 {
                vec![right, 1.0 - right]
            } else {
                vec![1.0 - right, right]
            }
        })
        .collect();
    json!({
        "task": "multiclass",
        "classes": ["cat", EVIL],
        "labels": labels,
        "probabilities": probs,
        "estimators": [
            {"id": "shannon_mi", "params": {"bootstrap": 0}},
            {"id": "semantic_mi", "params": {"bootstrap": 20}},
            "ce_bound",
            "rg_curve"
        ],
        "metadata": {"pipeline_run": "<script>alert(2)</script>", "owner": "team-a"}
    })
}

async fn upload_and_run(app: &TestApp, model: &str, version: &str, body: &Value) -> String {
    let (s, b) = app.upload(model, version, body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let w = app.workers(fast_workers(2));
    for j in b["jobs"].as_array().unwrap() {
        let done = app.wait_job(j["id"].as_str().unwrap(), 60).await;
        assert_eq!(done["state"], "succeeded", "{done}");
    }
    w.shutdown().await;
    b["batch"]["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn pages_show_results_in_bits_with_charts_and_escape_user_text() {
    let app = app().await;
    let b1 = upload_and_run(&app, "fraud", "v1", &two_class_batch(0)).await;
    let b2 = upload_and_run(&app, "fraud", "v2", &two_class_batch(2)).await;
    let (s, a) = put(
        &app,
        "/v1/models/fraud/aliases/production",
        json!({"version": "v1"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    let (s, p) = put(
        &app,
        "/v1/models/fraud/gates/release",
        json!({"rules": [{"metric": "shannon_mi", "op": "gte", "baseline": "production", "max_regression": {"relative": 0.02}}]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let (s, _, d) = app
        .post_json(
            "/v1/models/fraud/versions/v2/gate",
            &json!({"gate": "release"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["verdict"], "fail", "{d}");

    // The models page.
    let (s, ct, page) = html(&app, "/").await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(ct.starts_with("text/html"), "{ct}");
    assert!(page.contains("href=\"/models/fraud\""), "{page}");
    assert!(page.contains("Shannon MI"));
    assert!(page.contains("(bits)"));
    assert!(
        page.contains("badge v-fail\">fail</span>"),
        "last verdict shown: {page}"
    );
    assert!(page.contains("href=\"/docs\"") && page.contains("href=\"/openapi.json\""));

    // The model page: history chart, versions, decisions.
    let (s, _, page) = html(&app, "/models/fraud?metric=shannon_mi").await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(page.contains("<svg"), "history chart");
    assert!(page.contains("shannon_mi (bits)"), "axis label with unit");
    assert!(
        page.contains("production → v1"),
        "alias marker and label: {page}"
    );
    // v1's Shannon MI is exactly 1 bit, printed with four decimals.
    assert!(page.contains("<span class=\"v\">1.0000</span>"), "{page}");
    assert!(page.contains("v2"));
    assert!(page.contains("badge v-fail\">fail</span>"));
    assert!(page.contains("policy release v1"), "{page}");
    // Implied MI among the headline metrics.
    assert!(page.contains("Implied MI"), "{page}");
    assert!(page.contains(&format!("href=\"/batches/{b2}\"")));
    let (s, _, page) = html(&app, "/models/fraud?metric=shannon_mi.nmi").await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("shannon_mi.nmi (ratio)"), "{page}");
    let (s, _, page) = html(&app, "/models/fraud?metric=nope").await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("unknown estimator"), "{page}");
    assert!(page.contains("<svg"), "falls back to a default metric");

    // The batch page: confusion heat map, semantic bars, R(G) curve, escaped class names.
    let (s, _, page) = html(&app, &format!("/batches/{b1}")).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(page.contains("Confusion matrix"));
    assert!(page.contains("class=\"chart heat\""), "heat map");
    assert!(page.contains("class=\"chart bars\""), "per-class bars");
    assert!(page.contains("class=\"chart rg\""), "R(G) curve");
    assert!(page.contains("1.0000 bits"), "MI in bits: {page}");
    assert!(page.contains("Most misleading samples"));
    assert!(page.contains(EVIL_ESCAPED), "class name escaped");
    assert!(
        page.contains("&lt;script&gt;alert(2)&lt;/script&gt;"),
        "metadata escaped"
    );
    assert!(page.contains("sha256"));
    assert!(!page.contains("<script"), "no raw script tag anywhere");
    let (_, _, p2) = html(&app, &format!("/batches/{b2}")).await;
    assert!(!p2.contains("<script"));
    assert!(p2.contains(EVIL_ESCAPED));

    // Unknown things: 404.
    for uri in [
        "/models/nope".to_string(),
        format!("/batches/{}", uuid::Uuid::now_v7()),
        "/batches/not-a-uuid".to_string(),
    ] {
        let (s, _, body) = html(&app, &uri).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{uri}: {body}");
    }
    let (_, ct, body) = html(&app, "/models/nope").await;
    assert!(ct.starts_with("text/html"), "{ct}: {body}");
    assert!(body.contains("There is no model nope."), "{body}");
}

#[tokio::test]
async fn empty_dashboard_and_jobs_in_progress() {
    let app = app().await;
    let (s, _, page) = html(&app, "/").await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("No models yet"));
    // A batch whose jobs have not run: states, progress, auto-refresh, no result charts.
    let (s, b) = app.upload("m", "v1", &two_class_batch(1)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let id = b["batch"]["id"].as_str().unwrap();
    let (s, _, page) = html(&app, &format!("/batches/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("badge v-pending\">queued</span>"), "{page}");
    assert!(page.contains("http-equiv=\"refresh\""));
    assert!(!page.contains("<svg"));
    let (s, _, page) = html(&app, "/models/m").await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("No results yet"), "{page}");
}

/// Test-scale performance check (printed, not asserted): a model with 10^5 results.
#[tokio::test]
async fn model_page_with_many_results_downsamples_in_sql() {
    let rows: i64 = std::env::var("WEB_PERF_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let app = app().await;
    let real = upload_and_run(&app, "big", "v1", &two_class_batch(1)).await;
    let pool = &app.pool;
    let model_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM models WHERE name = 'big'")
        .fetch_one(pool)
        .await
        .unwrap();
    let started = Instant::now();
    // 4 results (one per estimator) per batch, one batch a minute up to now, versions in turn.
    let batches = rows / 4;
    sqlx::query(
        "INSERT INTO model_versions (id, model_id, name, created_at)
         SELECT gen_random_uuid(), $1, 'v' || g, now() - make_interval(mins => $2 * (6 - g) / 4)
         FROM generate_series(2, 5) g",
    )
    .bind(model_id)
    .bind(batches as i32)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO batches (id, model_id, version_id, task, n, classes, digest, size_bytes, content_type, created_at)
         SELECT gen_random_uuid(), $1,
                (SELECT id FROM model_versions WHERE model_id = $1 AND name = 'v' || (2 + (g * 4) / ($2 + 1))),
                'multiclass', 1000, '[\"a\", \"b\"]', 'synthetic', 100, 'application/json',
                now() - make_interval(mins => $2 - g)
         FROM generate_series(0, $2 - 1) g",
    )
    .bind(model_id)
    .bind(batches as i32)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO jobs (id, batch_id, estimator, estimator_version, params, params_hash, state)
         SELECT gen_random_uuid(), b.id, e, '1', '{}', 'h', 'succeeded'
         FROM batches b CROSS JOIN unnest(ARRAY['shannon_mi', 'semantic_mi', 'ce_bound', 'rg_curve']) e
         WHERE b.digest = 'synthetic'",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO results (id, job_id, batch_id, model_id, version_id, estimator, estimator_version,
                              params, value, ci_low, ci_high, ci_level, n, details, computed_at)
         SELECT gen_random_uuid(), j.id, b.id, b.model_id, b.version_id, j.estimator, '1', '{}',
                x.v, x.v - 0.05, x.v + 0.05, 0.95, 1000,
                jsonb_build_object('nmi', 0.5 + x.v / 10, 'efficiency', 0.7),
                b.created_at + interval '5 seconds'
         FROM jobs j JOIN batches b ON b.id = j.batch_id
         CROSS JOIN LATERAL (SELECT 0.4 + 0.1 * sin(extract(epoch FROM b.created_at) / 7200.0)
                                 + 0.02 * random() AS v) x
         WHERE b.digest = 'synthetic'",
    )
    .execute(pool)
    .await
    .unwrap();
    // What autovacuum does in a live system: set the visibility map so the history index is read
    // without the heap. Transactions elsewhere in the shared test cluster can hold VACUUM back,
    // so retry for a while.
    for attempt in 0.. {
        for t in ["results", "batches", "jobs"] {
            sqlx::query(&format!("VACUUM ANALYZE {t}"))
                .execute(pool)
                .await
                .unwrap();
        }
        let (visible, pages): (i32, i32) = sqlx::query_as(
            "SELECT relallvisible, relpages FROM pg_class WHERE relname = 'results'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if visible as f64 >= 0.9 * pages as f64 || attempt >= 20 {
            println!("web perf: results all-visible pages {visible} of {pages}");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM results WHERE model_id = $1")
        .bind(model_id)
        .fetch_one(pool)
        .await
        .unwrap();
    println!(
        "web perf: {n} results for model 'big' inserted in {:?}",
        started.elapsed()
    );

    // The plan of the downsampling query reads the covering history index.
    let sql = format!(
        "EXPLAIN {}",
        infoaudit::web::data::history_sql(false)
            .replace("$1", &format!("'{model_id}'::uuid"))
            .replace("$2", "'semantic_mi'")
            .replace("$3", "240")
            .replace("$4", "1767225600.0")
            .replace("$5", "3000000.0")
    );
    let plan: Vec<String> = sqlx::query_scalar(&sql).fetch_all(pool).await.unwrap();
    let plan = plan.join("\n");
    println!("web perf: history plan\n{plan}");
    assert!(plan.contains("results_history"), "{plan}");

    for (label, uri) in [
        ("GET /models/big", "/models/big".to_string()),
        (
            "GET /models/big?metric=shannon_mi.nmi",
            "/models/big?metric=shannon_mi.nmi".to_string(),
        ),
        ("GET /", "/".to_string()),
        ("GET /batches/{id}", format!("/batches/{real}")),
    ] {
        let mut v = Vec::new();
        let mut last = String::new();
        for _ in 0..7 {
            let t = Instant::now();
            let (s, _, page) = html(&app, &uri).await;
            v.push(t.elapsed());
            assert_eq!(s, StatusCode::OK, "{page}");
            last = page;
        }
        if uri.starts_with("/models/") {
            assert!(last.contains("<svg"));
            let dots = last.matches("<circle").count() + last.matches("<rect x").count();
            assert!(dots <= 800, "{dots} marks drawn");
            println!("web perf: {uri}: {} bytes, {dots} marks", last.len());
        }
        v.sort();
        println!(
            "web perf: {label}: median {:?}, min {:?}, max {:?} over {} renders",
            v[v.len() / 2],
            v[0],
            v[v.len() - 1],
            v.len()
        );
    }
}

#[tokio::test]
async fn the_models_index_pages_by_name_with_counts_per_model() {
    let app = app().await;
    // One real model with two versions and three batches, and 104 empty ones.
    upload_and_run(&app, "a-real", "v1", &two_class_batch(0)).await;
    upload_and_run(&app, "a-real", "v1", &two_class_batch(1)).await;
    upload_and_run(&app, "a-real", "v2", &two_class_batch(2)).await;
    sqlx::query(
        "INSERT INTO models (id, name) SELECT gen_random_uuid(), 'm' || lpad(i::text, 3, '0')
         FROM generate_series(1, 104) i",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let (s, _, first) = html(&app, "/").await;
    assert_eq!(s, StatusCode::OK);
    assert!(first.contains("100 models on this page"), "{first}");
    // The real model's counts: 2 versions, 3 batches.
    let row = &first[first.find("href=\"/models/a-real\"").unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(
        row.contains("<span class=\"v\">2</span><span class=\"ci\">3 batches</span>"),
        "{row}"
    );
    // Names in order; the 100th is m099, and the next page starts after it.
    assert!(first.contains("href=\"/models/m099\"") && !first.contains("href=\"/models/m100\""));
    assert!(first.contains("href=\"/?after=m099\""), "{first}");
    let (s, _, second) = html(&app, "/?after=m099").await;
    assert_eq!(s, StatusCode::OK);
    for m in ["m100", "m101", "m102", "m103", "m104"] {
        assert!(second.contains(&format!("href=\"/models/{m}\"")), "{m}");
    }
    assert!(second.contains("5 models on this page"), "{second}");
    assert!(!second.contains("?after="), "{second}");
    let (s, _, past) = html(&app, "/?after=zzz").await;
    assert_eq!(s, StatusCode::OK);
    assert!(past.contains("No more models"), "{past}");
}

#[tokio::test]
async fn points_of_versions_beyond_the_listed_thousand_are_drawn() {
    let app = app().await;
    upload_and_run(&app, "long", "first", &two_class_batch(0)).await;
    // 1000 newer versions without results push `first` out of the page's version list.
    sqlx::query(
        "INSERT INTO model_versions (id, model_id, name, created_at)
         SELECT gen_random_uuid(), m.id, 'later-' || i, now() + i * interval '1 second'
         FROM models m, generate_series(1, 1000) i WHERE m.name = 'long'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let (s, _, page) = html(&app, "/models/long?metric=shannon_mi").await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("1 result in 1 point"), "{page}");
    let legend = &page[page.find("<figcaption>").unwrap()..];
    assert!(legend.contains(">first<"), "{legend}");
}
