//! The real server on a real socket: health, an upload processed by its own workers, shutdown.

use std::time::Duration;

use infoaudit::config::ServeArgs;
use serde_json::json;

use crate::support::fresh_db;

#[tokio::test]
async fn serves_on_a_socket_and_shuts_down_gracefully() {
    let (options, _) = fresh_db().await;
    let pool = sqlx::PgPool::connect_with(options).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let args = ServeArgs {
        workers: Some(1),
        ..ServeArgs::default()
    };
    let server = tokio::spawn({
        let pool = pool.clone();
        async move {
            infoaudit::app::serve(pool, &args, Some(listener), async {
                let _ = stop_rx.await;
            })
            .await
        }
    });
    let http = reqwest::Client::new();
    let base = format!("http://{addr}");
    let live = http.get(format!("{base}/livez")).send().await.unwrap();
    assert_eq!(live.status(), 200);
    // Migrations run before the listener serves; readiness follows.
    let mut ready = false;
    for _ in 0..100 {
        if http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "readyz turns 200");
    let resp = http
        .post(format!("{base}/v1/models/socket-model/versions/v1/batches"))
        .json(
            &json!({"task": "multiclass", "labels": [0, 1, 1, 0], "predictions": [0, 1, 1, 0],
                      "estimators": [{"id": "shannon_mi", "params": {"bootstrap": 0}}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(request_id.len() >= 32, "request ids are issued");
    let body: serde_json::Value = resp.json().await.unwrap();
    let job = body["jobs"][0]["id"].as_str().unwrap().to_string();
    let mut result = serde_json::Value::Null;
    for _ in 0..200 {
        let j: serde_json::Value = http
            .get(format!("{base}/v1/jobs/{job}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if j["state"] == "succeeded" {
            result = j["result"].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A perfect 2-class predictor with balanced classes: plug-in exactly 1 bit; the value is
    // the jackknife of [[2,0],[0,2]], which is above ln 2 and so reported clipped at 1 bit.
    approx::assert_abs_diff_eq!(
        result["details"]["plug_in"].as_f64().unwrap(),
        1.0,
        epsilon = 1e-12
    );
    approx::assert_abs_diff_eq!(
        result["value"].as_f64().unwrap(),
        (crate::support::jackknife_mi_nats(&[&[2.0, 0.0], &[0.0, 2.0]]) / std::f64::consts::LN_2)
            .min(1.0),
        epsilon = 1e-12
    );
    let job_view: serde_json::Value = http
        .get(format!("{base}/v1/jobs/{job}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        job_view["request_id"], request_id,
        "the request id follows the job"
    );
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    for needle in [
        "infoaudit_http_requests_total{method=\"POST\",route=\"/v1/models/{model}/versions/{version}/batches\",status=\"202\"}",
        "infoaudit_jobs{state=\"succeeded\"} 1",
        "infoaudit_job_duration_seconds_count{estimator=\"shannon_mi\",outcome=\"succeeded\"}",
        "infoaudit_http_request_duration_seconds_bucket{route=\"/livez\",le=\"+Inf\"}",
        "infoaudit_oldest_queued_job_age_seconds 0",
    ] {
        assert!(text.contains(needle), "{needle} in\n{text}");
    }
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("stops")
        .unwrap()
        .unwrap();
    assert!(
        http.get(format!("{base}/livez")).send().await.is_err(),
        "socket closed after shutdown"
    );
}
