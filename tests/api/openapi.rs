//! The committed OpenAPI document matches the code (`UPDATE_OPENAPI=1 cargo test` rewrites it).

use axum::http::StatusCode;

use crate::support::app;

#[test]
fn committed_openapi_matches_the_code() {
    let generated = serde_json::to_string_pretty(&infoaudit::api::openapi()).unwrap() + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/openapi.json is out of date; run `UPDATE_OPENAPI=1 cargo test --test api openapi` and commit it"
    );
}

#[tokio::test]
async fn served_spec_and_docs_ui_work_offline() {
    let app = app().await;
    let (s, spec) = app.get("/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        spec,
        serde_json::to_value(infoaudit::api::openapi()).unwrap()
    );
    for path in [
        "/v1/models/{model}/versions/{version}/batches",
        "/v1/batches/{id}",
        "/v1/jobs/{id}/cancel",
        "/readyz",
    ] {
        assert!(spec["paths"].get(path).is_some(), "{path} documented");
    }
    let (s, html) = app.get("/docs/").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        html.as_str().unwrap().contains("swagger"),
        "Swagger UI page served from the binary"
    );
    let (s, init) = app.get("/docs/swagger-initializer.js").await;
    assert_eq!(s, StatusCode::OK);
    assert!(init.as_str().unwrap().contains("/openapi.json"));
}

/// The patterns written into the document by hand agree with the code that enforces them, and
/// the cross-field rules are stated (a generated client or a fuzzer builds only accepted bodies).
#[test]
fn stated_constraints_agree_with_the_code() {
    let doc = serde_json::to_value(infoaudit::api::openapi()).unwrap();
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["NameString"]["pattern"],
        infoaudit::domain::names::PATTERN
    );
    let rule = &schemas["Rule"]["allOf"];
    assert_eq!(
        rule[0]["properties"]["baseline"]["pattern"],
        infoaudit::domain::names::PATTERN
    );
    // Every estimator id, and nothing else, starts a metric.
    let metric = rule[0]["properties"]["metric"]["pattern"].as_str().unwrap();
    let ids: Vec<&str> = infoaudit::domain::estimators::Kind::ALL
        .iter()
        .map(|k| k.id())
        .collect();
    let listed = metric
        .trim_start_matches("^(")
        .split(')')
        .next()
        .unwrap()
        .split('|')
        .collect::<Vec<_>>();
    let mut a = ids.clone();
    let mut b = listed.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b, "metric pattern {metric}");
    for path in [
        "/v1/models/{model}/history",
        "/v1/models/{model}/kpi-correlation",
    ] {
        let params = doc["paths"][path]["get"]["parameters"].as_array().unwrap();
        let m = params.iter().find(|p| p["name"] == "metric").unwrap();
        assert_eq!(m["schema"]["pattern"], metric, "{path}");
    }
    assert_eq!(
        schemas["GateRequest"]["allOf"][1]["oneOf"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(rule[1]["oneOf"].as_array().unwrap().len(), 3);
    let jobs = doc["paths"]["/v1/jobs"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let state = jobs.iter().find(|p| p["name"] == "state").unwrap();
    assert_eq!(
        state["schema"]["pattern"],
        format!("^({})$", infoaudit::api::jobs::JOB_STATES.join("|"))
    );
    let min_samples = &rule[0]["properties"]["min_samples"];
    assert_eq!(min_samples["maximum"], i64::MAX, "{min_samples}");
    // A stored monitor is its definition plus server fields: the definition's ban on other
    // fields (a request schema) must not apply to the response.
    let monitor = &schemas["Monitor"]["allOf"][0];
    assert!(monitor.get("$ref").is_none(), "{monitor}");
    assert!(monitor["properties"]["target"].is_object(), "{monitor}");
    assert!(monitor.get("additionalProperties").is_none(), "{monitor}");
    assert_eq!(schemas["MonitorSpec"]["additionalProperties"], false);
    assert_eq!(
        schemas["Change"]["allOf"][1]["anyOf"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}
