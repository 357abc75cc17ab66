//! API keys: scopes, model restriction (also through batch and job ids), 401 vs 403, hashing,
//! revocation, --require-auth, the login cookie, and `infoaudit keys create`.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};

use crate::support::{app, app_with, classifier_batch, database_url, fresh_db};

async fn key(app: &crate::support::TestApp, admin: Option<&str>, body: Value) -> (String, Value) {
    let (s, v) = app.send("POST", "/v1/api-keys", admin, Some(&body)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    (v["key"].as_str().unwrap().to_string(), v)
}

#[tokio::test]
async fn scopes_and_model_limits_are_enforced() {
    let app = app().await;
    // No key yet: the local default allows everything, including creating the first admin key.
    let (admin, info) = key(&app, None, json!({"name": "root", "scopes": ["admin"]})).await;
    assert!(admin.starts_with(&format!("ia_{}_", info["prefix"].as_str().unwrap())));
    let stored: String = sqlx::query_scalar("SELECT key_hash FROM api_keys")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(!stored.contains(&admin[20..]), "only a digest is stored");
    assert_ne!(stored, admin);

    // Now that a key exists, calls need one.
    let (s, p) = app.send("GET", "/v1/models", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{p}");
    assert_eq!(p["status"], 401);
    let (s, _) = app
        .send("GET", "/v1/models", Some("ia_nothere_deadbeef"), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let mut forged = admin.clone();
    forged.pop();
    forged.push(if admin.ends_with('0') { '1' } else { '0' });
    assert_eq!(
        app.send("GET", "/v1/models", Some(&forged), None).await.0,
        StatusCode::UNAUTHORIZED,
        "right prefix, wrong secret"
    );
    assert_eq!(
        app.send("GET", "/livez", None, None).await.0,
        StatusCode::OK,
        "health needs no key"
    );
    assert_eq!(
        app.send("GET", "/openapi.json", None, None).await.0,
        StatusCode::OK
    );

    let (reader, _) = key(
        &app,
        Some(&admin),
        json!({"name": "dash", "scopes": ["read"]}),
    )
    .await;
    let (ingest_a, _) = key(
        &app,
        Some(&admin),
        json!({"name": "ci-a", "scopes": ["ingest", "read", "gate"], "models": ["a"]}),
    )
    .await;
    let mut body = classifier_batch(30, 3, 0.8, 1);
    body["estimators"] = json!(["shannon_mi"]);
    let (s, up) = app
        .send(
            "POST",
            "/v1/models/a/versions/v1/batches",
            Some(&ingest_a),
            Some(&body),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{up}");
    let (s, p) = app
        .send(
            "POST",
            "/v1/models/b/versions/v1/batches",
            Some(&ingest_a),
            Some(&body),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "model b is outside the key's models: {p}"
    );
    let (s, up_b) = app
        .send(
            "POST",
            "/v1/models/b/versions/v1/batches",
            Some(&admin),
            Some(&body),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, _) = app
        .send(
            "POST",
            "/v1/models/a/versions/v1/batches",
            Some(&reader),
            Some(&body),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "read scope cannot ingest");
    assert_eq!(
        app.send("GET", "/v1/models/a", Some(&reader), None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        app.send("GET", "/v1/api-keys", Some(&reader), None).await.0,
        StatusCode::FORBIDDEN,
        "admin only"
    );

    // Model B through ids.
    let b_batch = up_b["batch"]["id"].as_str().unwrap();
    let b_job = up_b["jobs"][0]["id"].as_str().unwrap();
    assert_eq!(
        app.send(
            "GET",
            &format!("/v1/batches/{b_batch}"),
            Some(&ingest_a),
            None
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.send(
            "GET",
            &format!("/v1/batches/{b_batch}/data"),
            Some(&ingest_a),
            None
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    // The per-sample export: read scope and the key's models, as the batch's data.
    let samples = format!("/v1/batches/{b_batch}/samples?estimator=shannon_mi");
    assert_eq!(
        app.send("GET", &samples, Some(&ingest_a), None).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.send("GET", &samples, None, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.send("GET", &samples, Some(&reader), None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        app.send("GET", &format!("/v1/jobs/{b_job}"), Some(&ingest_a), None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.send(
            "POST",
            &format!("/v1/jobs/{b_job}/cancel"),
            Some(&ingest_a),
            None
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.send(
            "POST",
            "/v1/models/b/versions/v1/gate",
            Some(&ingest_a),
            Some(&json!({"rules": [{"metric": "shannon_mi", "op": "gte", "threshold": 0}]}))
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    let a_batch = up["batch"]["id"].as_str().unwrap();
    assert_eq!(
        app.send(
            "GET",
            &format!("/v1/batches/{a_batch}"),
            Some(&ingest_a),
            None
        )
        .await
        .0,
        StatusCode::OK
    );
    let (s, models) = app.send("GET", "/v1/models", Some(&ingest_a), None).await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = models["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a"], "a limited key lists only its models");
    assert_eq!(
        app.send("GET", "/v1/jobs", Some(&ingest_a), None).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.send("GET", "/v1/jobs?model=a", Some(&ingest_a), None)
            .await
            .0,
        StatusCode::OK
    );

    // Listing shows prefixes, never secrets; revocation takes effect at once.
    let (_, list) = app.send("GET", "/v1/api-keys", Some(&admin), None).await;
    assert_eq!(list.as_array().unwrap().len(), 3);
    assert!(
        !list.to_string().contains(&reader[16..]),
        "no secret in listings"
    );
    let reader_id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "dash")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        app.send(
            "DELETE",
            &format!("/v1/api-keys/{reader_id}"),
            Some(&admin),
            None
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.send("GET", "/v1/models/a", Some(&reader), None).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn require_auth_refuses_anonymous_calls_even_without_keys() {
    let app = app_with(infoaudit::api::Limits::default(), true).await;
    assert_eq!(
        app.send("GET", "/v1/models", None, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.send(
            "POST",
            "/v1/api-keys",
            None,
            Some(&json!({"name": "x", "scopes": ["admin"]}))
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.send("GET", "/readyz", None, None).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn login_sets_a_strict_http_only_cookie_that_authenticates() {
    let app = app().await;
    let (admin, _) = key(&app, None, json!({"name": "root", "scopes": ["admin"]})).await;
    let form = |k: &str| {
        Request::post("/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(format!("key={k}&next=%2Fv1%2Fmodels")))
            .unwrap()
    };
    let (s, h, _) = app.call(form("ia_wrong_key")).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert!(h["location"]
        .to_str()
        .unwrap()
        .starts_with("/login?error=1"));
    let (s, h, _) = app.call(form(&admin)).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let cookie = h["set-cookie"].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let (s, _, _) = app
        .call(
            Request::get("/v1/models")
                .header("cookie", pair)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    // An open redirect is refused.
    let (_, h, _) = app
        .call(
            Request::post("/login")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(format!("key={admin}&next=%2F%2Fevil.example")))
                .unwrap(),
        )
        .await;
    assert_eq!(h["location"], "/");
}

#[tokio::test]
async fn the_cli_bootstraps_a_key_in_the_database() {
    let (options, name) = fresh_db().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_infoaudit"))
        .args([
            "keys",
            "create",
            "--name",
            "bootstrap",
            "--scopes",
            "admin,read",
            "--models",
            "m1,m2",
        ])
        .env("DATABASE_URL", database_url(&name))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(key.starts_with("ia_"));
    let pool = sqlx::PgPool::connect_with(options).await.unwrap();
    let p = infoaudit::auth::verify(&pool, &key)
        .await
        .unwrap()
        .expect("the printed key verifies");
    assert_eq!(p.models, Some(vec!["m1".to_string(), "m2".to_string()]));
    assert!(
        p.allows(infoaudit::auth::Scope::Gate),
        "admin implies every scope"
    );
}
