//! `/metrics` exports the information itself: the latest result of each metric a gate policy or
//! a live monitor uses, for the versions they judge, capped.

use std::collections::BTreeMap;
use std::f64::consts::LN_2;

use axum::http::StatusCode;
use infoaudit::api::Limits;
use serde_json::{json, Value};

use crate::support::{app_with_limits, TestApp};

/// A version created `minute` minutes into 2026 (the newest version has the largest).
async fn version(app: &TestApp, model: &str, name: &str, minute: i32) {
    sqlx::query("INSERT INTO models (id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(uuid::Uuid::now_v7())
        .bind(model)
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO model_versions (id, model_id, name, created_at)
         SELECT $1, id, $3, timestamptz '2026-01-01 00:00:00+00' + make_interval(mins => $4)
         FROM models WHERE name = $2",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(model)
    .bind(name)
    .bind(minute)
    .execute(&app.pool)
    .await
    .unwrap();
}

/// A finished result (value and interval in nats) computed at `at` (unix seconds), in a batch
/// of its own.
#[allow(clippy::too_many_arguments)]
async fn result(
    app: &TestApp,
    model: &str,
    version: &str,
    estimator: &str,
    value: f64,
    ci: Option<(f64, f64)>,
    details: Value,
    at: f64,
) {
    let (batch, job) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    sqlx::query(
        "INSERT INTO batches (id, model_id, version_id, task, n, digest, size_bytes, content_type)
         SELECT $1, m.id, v.id, 'multiclass', 100, 'd', 1, 'application/json'
         FROM models m JOIN model_versions v ON v.model_id = m.id WHERE m.name = $2 AND v.name = $3",
    )
    .bind(batch)
    .bind(model)
    .bind(version)
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO jobs (id, batch_id, estimator, estimator_version, params, params_hash, state)
         VALUES ($1, $2, $3, '1', '{}', 'h', 'succeeded')",
    )
    .bind(job)
    .bind(batch)
    .bind(estimator)
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO results (id, job_id, batch_id, model_id, version_id, estimator, estimator_version,
                              params, value, ci_low, ci_high, ci_level, n, details, computed_at)
         SELECT $1, $2, b.id, b.model_id, b.version_id, $3, '1', '{}', $4, $5, $6, 0.95, 100, $7,
                to_timestamp($8)
         FROM batches b WHERE b.id = $9",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(job)
    .bind(estimator)
    .bind(value)
    .bind(ci.map(|c| c.0))
    .bind(ci.map(|c| c.1))
    .bind(details)
    .bind(at)
    .bind(batch)
    .execute(&app.pool)
    .await
    .unwrap();
}

async fn put(app: &TestApp, uri: &str, body: Value) {
    let (s, b) = app.send("PUT", uri, None, Some(&body)).await;
    assert!(s.is_success(), "PUT {uri}: {s} {b}");
}

const T0: f64 = 1_767_225_600.0; // 2026-01-01T00:00:00Z

/// Model `m`: v1 (named by `production`) and v2 (newest), a gate policy on `shannon_mi` and
/// `shannon_mi.nmi`, and a `semantic_mi` result no rule uses. Model `o`: o1 watched by a
/// monitor on `semantic_mi`, o2 (newest) with results only a deleted monitor used. Model `q`:
/// results, nothing watching.
async fn seed(app: &TestApp) {
    version(app, "m", "v1", 0).await;
    version(app, "m", "v2", 1).await;
    // An older v1 result, then the latest one.
    result(app, "m", "v1", "shannon_mi", 0.1, None, json!({}), T0).await;
    result(
        app,
        "m",
        "v1",
        "shannon_mi",
        0.5,
        Some((0.4, 0.6)),
        json!({"plug_in": 0.55}),
        T0 + 60.5,
    )
    .await;
    result(
        app,
        "m",
        "v1",
        "semantic_mi",
        0.7,
        None,
        json!({}),
        T0 + 61.0,
    )
    .await;
    result(
        app,
        "m",
        "v2",
        "shannon_mi",
        0.3,
        Some((0.2, 0.45)),
        json!({"nmi": 0.25}),
        T0 + 120.0,
    )
    .await;
    put(
        app,
        "/v1/models/m/aliases/production",
        json!({"version": "v1"}),
    )
    .await;
    put(
        app,
        "/v1/models/m/gates/release",
        json!({"rules": [{"metric": "shannon_mi", "op": "gte", "threshold": 0.1}]}),
    )
    .await;
    // The policy's latest version is the one exported.
    put(
        app,
        "/v1/models/m/gates/release",
        json!({"rules": [
            {"metric": "shannon_mi", "op": "gte", "threshold": 0.1},
            {"metric": "shannon_mi.nmi", "op": "gte", "threshold": 0.1, "severity": "warning"}
        ]}),
    )
    .await;

    version(app, "o", "o1", 0).await;
    version(app, "o", "o2", 1).await;
    result(
        app,
        "o",
        "o1",
        "semantic_mi",
        1.2,
        Some((1.0, 1.5)),
        json!({}),
        T0 + 300.0,
    )
    .await;
    result(
        app,
        "o",
        "o2",
        "semantic_mi",
        0.9,
        None,
        json!({}),
        T0 + 400.0,
    )
    .await;
    result(app, "o", "o2", "ce_bound", 0.9, None, json!({}), T0 + 400.0).await;
    put(
        app,
        "/v1/models/o/monitors/fixed",
        json!({"target": {"version": "o1"},
               "rules": [{"metric": "semantic_mi", "op": "gte", "threshold": 0.5}],
               "triggers": {"on_result": true, "on_alias_change": false}}),
    )
    .await;
    put(
        app,
        "/v1/models/o/monitors/gone",
        json!({"target": {"latest": true},
               "rules": [{"metric": "ce_bound", "op": "gte", "threshold": 0.5}],
               "triggers": {"on_result": true, "on_alias_change": false}}),
    )
    .await;
    let (s, b) = app
        .send("DELETE", "/v1/models/o/monitors/gone", None, None)
        .await;
    assert!(s.is_success(), "{s} {b}");

    version(app, "q", "q1", 0).await;
    result(app, "q", "q1", "shannon_mi", 0.2, None, json!({}), T0).await;
}

/// The samples of an exposition: `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse::<f64>().unwrap_or(f64::NAN))
        })
        .collect()
}

async fn scrape(app: &TestApp) -> String {
    let (s, h, body) = app
        .call(
            axum::http::Request::get("/metrics")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(h["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    body.as_str().unwrap().to_string()
}

fn limits(max_series: usize) -> Limits {
    Limits {
        metrics_max_information_series: max_series,
        metrics_cache: std::time::Duration::ZERO,
        ..Limits::default()
    }
}

fn close(got: Option<&f64>, want: f64, what: &str, text: &str) {
    let got = got.unwrap_or_else(|| panic!("{what} missing:\n{text}"));
    assert!(
        (got - want).abs() <= 1e-9 * want.abs().max(1.0),
        "{what}: {got} ≠ {want}"
    );
}

#[tokio::test]
async fn metrics_export_the_latest_result_of_what_policies_and_monitors_use() {
    let app = app_with_limits(limits(1000)).await;
    seed(&app).await;
    let text = scrape(&app).await;
    let s = samples(&text);
    let info: Vec<&String> = s
        .keys()
        .filter(|k| k.starts_with("infoaudit_information_value{"))
        .collect();
    assert_eq!(
        info,
        [
            "infoaudit_information_value{model=\"m\",version=\"v1\",metric=\"shannon_mi\",unit=\"bits\"}",
            "infoaudit_information_value{model=\"m\",version=\"v2\",metric=\"shannon_mi\",unit=\"bits\"}",
            "infoaudit_information_value{model=\"m\",version=\"v2\",metric=\"shannon_mi.nmi\",unit=\"ratio\"}",
            "infoaudit_information_value{model=\"o\",version=\"o1\",metric=\"semantic_mi\",unit=\"bits\"}",
        ],
        "{text}"
    );
    let l = |m: &str, v: &str, metric: &str, unit: &str| {
        format!("{{model=\"{m}\",version=\"{v}\",metric=\"{metric}\",unit=\"{unit}\"}}")
    };
    // The latest v1 result (not the older 0.1), in bits, with its interval and time.
    let v1 = l("m", "v1", "shannon_mi", "bits");
    close(
        s.get(&format!("infoaudit_information_value{v1}")),
        0.5 / LN_2,
        "v1 value",
        &text,
    );
    close(
        s.get(&format!("infoaudit_information_ci_low{v1}")),
        0.4 / LN_2,
        "v1 ci_low",
        &text,
    );
    close(
        s.get(&format!("infoaudit_information_ci_high{v1}")),
        0.6 / LN_2,
        "v1 ci_high",
        &text,
    );
    close(
        s.get(&format!(
            "infoaudit_information_result_timestamp_seconds{v1}"
        )),
        T0 + 60.5,
        "v1 time",
        &text,
    );
    close(
        s.get(&format!(
            "infoaudit_information_value{}",
            l("m", "v2", "shannon_mi", "bits")
        )),
        0.3 / LN_2,
        "v2 value",
        &text,
    );
    // A statistic read from the result's details: unitless, no interval.
    let nmi = l("m", "v2", "shannon_mi.nmi", "ratio");
    close(
        s.get(&format!("infoaudit_information_value{nmi}")),
        0.25,
        "nmi",
        &text,
    );
    assert!(!s.contains_key(&format!("infoaudit_information_ci_low{nmi}")));
    let o1 = l("o", "o1", "semantic_mi", "bits");
    close(
        s.get(&format!("infoaudit_information_value{o1}")),
        1.2 / LN_2,
        "o1",
        &text,
    );
    close(
        s.get(&format!("infoaudit_information_ci_high{o1}")),
        1.5 / LN_2,
        "o1 ci_high",
        &text,
    );
    // Not used by any rule (m's semantic_mi), a deleted monitor's (ce_bound, o2), an unwatched
    // model's (q): absent.
    assert!(
        !s.keys()
            .any(|k| k.contains("model=\"m\"") && k.contains("semantic_mi")),
        "{text}"
    );
    for absent in ["metric=\"ce_bound\"", "model=\"q\"", "version=\"o2\""] {
        assert!(!text.contains(absent), "{absent} exported:\n{text}");
    }
    assert_eq!(
        s.get("infoaudit_model_alias_info{model=\"m\",alias=\"production\",version=\"v1\"}"),
        Some(&1.0),
        "{text}"
    );
    assert_eq!(s.get("infoaudit_information_series"), Some(&4.0));
    assert_eq!(s.get("infoaudit_information_series_dropped"), Some(&0.0));
    assert_eq!(s.get("infoaudit_information_series_limit"), Some(&1000.0));
    assert_eq!(s.get("infoaudit_information_export_up"), Some(&1.0));
    for name in [
        "infoaudit_information_value",
        "infoaudit_information_ci_low",
        "infoaudit_information_ci_high",
        "infoaudit_information_result_timestamp_seconds",
        "infoaudit_model_alias_info",
        "infoaudit_information_series_dropped",
    ] {
        assert!(text.contains(&format!("# HELP {name} ")), "{name}");
        assert!(text.contains(&format!("# TYPE {name} gauge\n")), "{name}");
    }

    // Moving the alias moves what is exported for the policy (the cache is off here).
    put(
        &app,
        "/v1/models/m/aliases/production",
        json!({"version": "v2"}),
    )
    .await;
    let s = samples(&scrape(&app).await);
    assert!(!s.contains_key(&format!("infoaudit_information_value{v1}")));
    assert_eq!(
        s.get("infoaudit_model_alias_info{model=\"m\",alias=\"production\",version=\"v2\"}"),
        Some(&1.0)
    );
}

#[tokio::test]
async fn the_series_cap_keeps_the_first_series_and_counts_the_rest() {
    let app = app_with_limits(limits(2)).await;
    seed(&app).await;
    let text = scrape(&app).await;
    let s = samples(&text);
    let info: Vec<&String> = s
        .keys()
        .filter(|k| k.starts_with("infoaudit_information_value{"))
        .collect();
    assert_eq!(
        info,
        [
            "infoaudit_information_value{model=\"m\",version=\"v1\",metric=\"shannon_mi\",unit=\"bits\"}",
            "infoaudit_information_value{model=\"m\",version=\"v2\",metric=\"shannon_mi\",unit=\"bits\"}",
        ],
        "{text}"
    );
    // Four values and one alias marker were wanted; two fit.
    assert_eq!(s.get("infoaudit_information_series"), Some(&2.0), "{text}");
    assert_eq!(
        s.get("infoaudit_information_series_dropped"),
        Some(&3.0),
        "{text}"
    );
    assert!(!text.contains("infoaudit_model_alias_info{"), "{text}");

    // The default cache keeps a read for a few seconds: a new result shows later, not now.
    let app = app_with_limits(Limits::default()).await;
    seed(&app).await;
    let before = samples(&scrape(&app).await);
    result(
        &app,
        "o",
        "o1",
        "semantic_mi",
        2.0,
        None,
        json!({}),
        T0 + 900.0,
    )
    .await;
    let after = samples(&scrape(&app).await);
    let key = "infoaudit_information_value{model=\"o\",version=\"o1\",metric=\"semantic_mi\",unit=\"bits\"}";
    assert_eq!(before.get(key), after.get(key));
}

async fn scrape_with(app: &TestApp, key: Option<&str>) -> String {
    let mut req = axum::http::Request::get("/metrics");
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let (s, _, body) = app.call(req.body(axum::body::Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    body.as_str().unwrap().to_string()
}

/// While keys are required, model names and values go only to a scrape with a key, and only its
/// models' series; `--metrics-public-information` makes every scrape see every series.
#[tokio::test]
async fn information_series_need_a_key_while_keys_are_required() {
    let app = app_with_limits(limits(1000)).await;
    seed(&app).await;
    // Before any key exists nothing is required: the series are public.
    let open = scrape(&app).await;
    assert!(
        open.contains("infoaudit_information_value{model=\"o\""),
        "{open}"
    );
    let (s, k) = app
        .send(
            "POST",
            "/v1/api-keys",
            None,
            Some(&json!({"name": "scraper", "scopes": ["read"], "models": ["m"]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{k}");
    let key = k["key"].as_str().unwrap().to_string();

    let anonymous = scrape_with(&app, None).await;
    assert!(
        !anonymous.contains("infoaudit_information_value{"),
        "{anonymous}"
    );
    assert!(!anonymous.contains("infoaudit_model_alias_info{"));
    assert_eq!(
        samples(&anonymous)["infoaudit_information_withheld"],
        1.0,
        "{anonymous}"
    );
    // The process's own metrics still answer.
    assert!(anonymous.contains("infoaudit_information_export_up 1"));

    let keyed = scrape_with(&app, Some(&key)).await;
    assert!(
        keyed.contains("infoaudit_information_value{model=\"m\""),
        "{keyed}"
    );
    assert!(keyed.contains("infoaudit_model_alias_info{model=\"m\""));
    assert!(
        !keyed.contains("model=\"o\""),
        "another model's series: {keyed}"
    );
    assert_eq!(samples(&keyed)["infoaudit_information_withheld"], 0.0);
    // A wrong key is no key (the route stays public).
    let wrong = scrape_with(&app, Some("ia_nothere_deadbeef")).await;
    assert!(!wrong.contains("infoaudit_information_value{"));

    let public = app_with_limits(Limits {
        metrics_public_information: true,
        ..limits(1000)
    })
    .await;
    seed(&public).await;
    let (s, _) = public
        .send(
            "POST",
            "/v1/api-keys",
            None,
            Some(&json!({"name": "k", "scopes": ["admin"]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let text = scrape_with(&public, None).await;
    assert!(text.contains("infoaudit_information_value{model=\"m\""));
    assert!(
        text.contains("infoaudit_information_value{model=\"o\""),
        "{text}"
    );
}
