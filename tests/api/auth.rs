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
    // Model B's incident: neither its page nor the list show it to a key limited to model A.
    let incident = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO incidents (id, model_id, monitor, state, severity, notified,
                                first_decision_id, last_decision_id)
         SELECT $1, id, 'watch-b', 'firing', 'fail', true, gen_random_uuid(), gen_random_uuid()
         FROM models WHERE name = 'b'",
    )
    .bind(incident)
    .execute(&app.pool)
    .await
    .unwrap();
    let page = format!("/incidents/{incident}");
    assert_eq!(
        app.send("GET", &page, Some(&ingest_a), None).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.send("GET", &page, Some(&reader), None).await.0,
        StatusCode::OK
    );
    let (s, list) = app.send("GET", "/incidents", Some(&ingest_a), None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(!list.to_string().contains("watch-b"), "{list}");
    let (_, list) = app.send("GET", "/incidents", Some(&reader), None).await;
    assert!(list.to_string().contains("watch-b"), "{list}");
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

/// A key limited to some models manages only keys within those models: it cannot mint an
/// unrestricted key or one for another model, sees only the keys within its models, and cannot
/// revoke a wider key.
#[tokio::test]
async fn a_model_limited_admin_key_cannot_escalate() {
    let app = app().await;
    let (root, root_info) = key(&app, None, json!({"name": "root", "scopes": ["admin"]})).await;
    for m in ["a", "b"] {
        let (s, v) = app
            .send(
                "POST",
                &format!("/v1/models/{m}/versions/v1/batches"),
                Some(&root),
                Some(&classifier_batch(50, 2, 0.9, 1)),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    }
    let (limited, limited_info) = key(
        &app,
        Some(&root),
        json!({"name": "team-a", "scopes": ["admin"], "models": ["a"]}),
    )
    .await;
    // No models named: would be every model.
    let (s, p) = app
        .send(
            "POST",
            "/v1/api-keys",
            Some(&limited),
            Some(&json!({"name": "esc", "scopes": ["admin"]})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{p}");
    let (s, p) = app
        .send(
            "POST",
            "/v1/api-keys",
            Some(&limited),
            Some(&json!({"name": "esc", "scopes": ["read"], "models": ["a", "b"]})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("model b"), "{p}");
    assert_eq!(app.count("api_keys").await, 2, "nothing was created");
    // Within its models: allowed, and the new key is as limited.
    let (child, child_info) = key(
        &app,
        Some(&limited),
        json!({"name": "a-reader", "scopes": ["read"], "models": ["a"]}),
    )
    .await;
    assert_eq!(
        app.send("GET", "/v1/models/a", Some(&child), None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        app.send("GET", "/v1/models/b", Some(&child), None).await.0,
        StatusCode::FORBIDDEN
    );
    // It lists only the keys within its models.
    let (s, list) = app.send("GET", "/v1/api-keys", Some(&limited), None).await;
    assert_eq!(s, StatusCode::OK);
    let mut names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a-reader", "team-a"], "{list}");
    let (_, all) = app.send("GET", "/v1/api-keys", Some(&root), None).await;
    assert_eq!(all.as_array().unwrap().len(), 3);
    // It cannot revoke the wider key, and that key still works.
    let root_id = root_info["id"].as_str().unwrap();
    let (s, p) = app
        .send(
            "DELETE",
            &format!("/v1/api-keys/{root_id}"),
            Some(&limited),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{p}");
    assert_eq!(
        app.send("GET", "/v1/models/b", Some(&root), None).await.0,
        StatusCode::OK
    );
    // It can revoke a key within its models.
    let child_id = child_info["id"].as_str().unwrap();
    assert_eq!(
        app.send(
            "DELETE",
            &format!("/v1/api-keys/{child_id}"),
            Some(&limited),
            None
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.send("GET", "/v1/models/a", Some(&child), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert!(limited_info["models"] == json!(["a"]));
}

/// The dashboard's index shows a limited key only its models.
#[tokio::test]
async fn the_dashboard_index_shows_a_limited_key_only_its_models() {
    let app = app().await;
    let (root, _) = key(&app, None, json!({"name": "root", "scopes": ["admin"]})).await;
    for m in ["alpha", "bravo"] {
        let (s, _) = app
            .send(
                "POST",
                &format!("/v1/models/{m}/versions/v1/batches"),
                Some(&root),
                Some(&classifier_batch(50, 2, 0.9, 1)),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED);
    }
    let (reader, _) = key(
        &app,
        Some(&root),
        json!({"name": "r", "scopes": ["read"], "models": ["alpha"]}),
    )
    .await;
    let page = |k: String| {
        Request::get("/")
            .header("authorization", format!("Bearer {k}"))
            .body(Body::empty())
            .unwrap()
    };
    let (s, _, html) = app.call(page(reader)).await;
    assert_eq!(s, StatusCode::OK);
    let html = html.as_str().unwrap();
    assert!(html.contains("/models/alpha"), "{html}");
    assert!(
        !html.contains("bravo"),
        "another model on the index: {html}"
    );
    let (_, _, html) = app.call(page(root)).await;
    assert!(html.as_str().unwrap().contains("/models/bravo"));
}

fn login_form(key: &str, next: &str) -> Request<Body> {
    Request::post("/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("host", "audit.example")
        .header("origin", "http://audit.example")
        .body(Body::from(format!("key={key}&next={next}")))
        .unwrap()
}

/// `next` is a path of this service or `/`: whitespace and control characters (which browsers
/// strip, turning `/<TAB>/evil` into `//evil`) are refused, and never a 500.
#[tokio::test]
async fn login_redirects_only_to_this_service() {
    let app = app().await;
    let (admin, _) = key(&app, None, json!({"name": "root", "scopes": ["admin"]})).await;
    for (next, want) in [
        ("%2Fv1%2Fmodels%3Flimit%3D2", "/v1/models?limit=2"),
        ("%2F%09%2Fevil.example", "/"),
        ("%2F%0a", "/"),
        ("%2F%0d%0aSet-Cookie:x=1", "/"),
        ("%2F%5Cevil.example", "/"),
        ("%2F%2Fevil.example", "/"),
        ("https%3A%2F%2Fevil.example", "/"),
        ("%2F%20%2Fevil.example", "/"),
    ] {
        let (s, h, _) = app.call(login_form(&admin, next)).await;
        assert_eq!(s, StatusCode::SEE_OTHER, "{next}");
        assert_eq!(h["location"], want, "{next}");
        // A wrong key goes back to the form, with the same next, escaped.
        let (s, h, _) = app.call(login_form("ia_wrong_key", next)).await;
        assert_eq!(s, StatusCode::SEE_OTHER, "{next}");
        let loc = h["location"].to_str().unwrap();
        assert!(loc.starts_with("/login?error=1&next="), "{loc}");
        assert!(!loc.contains("//") && !loc.contains('\t'), "{loc}");
    }
}

/// The cookie holds a session token, not the key; `Secure` over HTTPS; a cross-site write with
/// the cookie alone is refused; logging out or revoking the key ends the session.
#[tokio::test]
async fn the_session_cookie_is_not_the_key_and_cross_site_writes_are_refused() {
    let app = app().await;
    let (admin, info) = key(&app, None, json!({"name": "root", "scopes": ["admin"]})).await;
    let (s, v) = app
        .send(
            "POST",
            "/v1/models/m/versions/v1/batches",
            Some(&admin),
            Some(&classifier_batch(50, 2, 0.9, 1)),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let batch = v["batch"]["id"].as_str().unwrap().to_string();
    let (s, h, _) = app.call(login_form(&admin, "%2F")).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let cookie = h["set-cookie"].to_str().unwrap().to_string();
    assert!(
        !cookie.contains(&admin),
        "the key is in the cookie: {cookie}"
    );
    assert!(!cookie.contains(&admin[admin.len() - 16..]));
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let pair = cookie.split(';').next().unwrap().to_string();
    let with_cookie = |method: &str, uri: &str, origin: Option<&str>| {
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "audit.example")
            .header("cookie", pair.clone());
        if let Some(o) = origin {
            b = b.header("origin", o);
        }
        b.body(Body::empty()).unwrap()
    };
    // Reads with the cookie work.
    assert_eq!(
        app.call(with_cookie("GET", "/v1/models", None)).await.0,
        StatusCode::OK
    );
    // A body-less write from another site's form: refused, nothing done.
    let release = format!("/v1/batches/{batch}/release");
    let (s, _, p) = app
        .call(with_cookie("POST", &release, Some("https://evil.example")))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{p}");
    let (s, _, p) = app.call(with_cookie("POST", &release, None)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "no origin at all: {p}");
    let (s, _, p) = app
        .call(with_cookie(
            "DELETE",
            &format!("/v1/batches/{batch}"),
            Some("http://audit.example.evil.com"),
        ))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{p}");
    assert_eq!(app.count("batches").await, 1);
    // From the dashboard itself: authorised (and answered by the handler).
    let (s, _, p) = app
        .call(with_cookie("POST", &release, Some("http://audit.example")))
        .await;
    assert_ne!(s, StatusCode::FORBIDDEN, "{p}");
    assert_ne!(s, StatusCode::UNAUTHORIZED, "{p}");
    // A login posted from another site is refused.
    let mut cross = login_form(&admin, "%2F");
    cross
        .headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    assert_eq!(app.call(cross).await.0, StatusCode::FORBIDDEN);
    // Over HTTPS (as a proxy says) the cookie is Secure.
    let mut https = login_form(&admin, "%2F");
    https
        .headers_mut()
        .insert("x-forwarded-proto", "https".parse().unwrap());
    let (_, h, _) = app.call(https).await;
    assert!(h["set-cookie"].to_str().unwrap().contains("; Secure"));
    // Logging out ends the session (the cookie no longer authenticates).
    let (s, h, _) = app
        .call(with_cookie("POST", "/logout", Some("http://audit.example")))
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert!(h["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(
        app.call(with_cookie("GET", "/v1/models", None)).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Revoking the key ends its other sessions.
    let (_, h, _) = app.call(login_form(&admin, "%2F")).await;
    let pair2 = h["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let read2 = || {
        Request::get("/v1/models")
            .header("cookie", pair2.clone())
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(app.call(read2()).await.0, StatusCode::OK);
    let id = info["id"].as_str().unwrap();
    assert_eq!(
        app.send("DELETE", &format!("/v1/api-keys/{id}"), Some(&admin), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.call(read2()).await.0, StatusCode::UNAUTHORIZED);
}
