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

/// Every `$ref` of the document points at a component it defines (a dangling one makes clients
/// and the contract fuzzer skip that part of the schema).
#[test]
fn every_reference_resolves() {
    fn walk(v: &serde_json::Value, doc: &serde_json::Value, refs: &mut usize) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(|r| r.as_str()) {
                    *refs += 1;
                    let pointer = r.strip_prefix('#').expect("a local reference");
                    assert!(doc.pointer(pointer).is_some(), "dangling reference {r}");
                }
                m.values().for_each(|x| walk(x, doc, refs));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, doc, refs)),
            _ => {}
        }
    }
    let doc = serde_json::to_value(infoaudit::api::openapi()).unwrap();
    let mut refs = 0;
    walk(&doc, &doc, &mut refs);
    assert!(refs > 50, "only {refs} references");
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
    // The monitor's cross-field rules (spec.rs `check`): its own fields, exactly one of gate and
    // rules, some trigger that can fire; exactly one target kind; batches or hours.
    let spec = schemas["MonitorSpec"]["allOf"].as_array().unwrap();
    assert_eq!(spec.len(), 3);
    assert_eq!(spec[0]["additionalProperties"], false);
    assert_eq!(spec[1]["oneOf"].as_array().unwrap().len(), 2);
    assert_eq!(spec[2]["anyOf"].as_array().unwrap().len(), 3);
    assert_eq!(
        schemas["Target"]["allOf"][1]["oneOf"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        schemas["Window"]["allOf"][1]["anyOf"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let triggers = &schemas["Triggers"]["properties"]["every"];
    assert_eq!(
        triggers["pattern"],
        infoaudit::monitor::spec::EVERY_PATTERN,
        "{triggers}"
    );
    let cooldown = &spec[0]["properties"]["cooldown"];
    assert_eq!(
        cooldown["pattern"],
        infoaudit::monitor::spec::COOLDOWN_PATTERN,
        "{cooldown}"
    );
    // Cursors: every string of the stated pattern is a position (api::cursor's proptests).
    let cursor = |path: &str| {
        let params = doc["paths"][path]["get"]["parameters"].as_array().unwrap();
        params.iter().find(|p| p["name"] == "cursor").unwrap()["schema"]["pattern"].clone()
    };
    assert_eq!(cursor("/v1/models"), infoaudit::api::cursor::name_pattern());
    for path in [
        "/v1/jobs",
        "/v1/models/{model}/versions",
        "/v1/models/{model}/history",
        "/v1/models/{model}/incidents",
        "/v1/models/{model}/gate-decisions",
        "/v1/models/{model}/monitors/{name}/deliveries",
    ] {
        assert_eq!(cursor(path), infoaudit::api::cursor::TIME_PATTERN, "{path}");
    }
    // Estimator ids in requests: the catalog's.
    let ids_pattern = format!("^({})$", ids.join("|"));
    assert_eq!(schemas["EstimatorRef"]["oneOf"][0]["pattern"], ids_pattern);
    assert_eq!(
        schemas["Change"]["allOf"][1]["anyOf"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}
