//! Line-oriented bodies (NDJSON, CSV), Arrow IPC streams and compressed bodies (gzip, zstd): each
//! decodes to the same stored batch as its JSON form; errors name the row and column; limits hold
//! on the decoded size.

use std::io::Write;
use std::sync::Arc;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder, Float64Builder};
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, DictionaryArray, Int64Array, RecordBatch};
use arrow_schema::{Field, Schema};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};

use crate::support::{app, app_with_limits, fast_workers, TestApp};

const PATH: &str = "/v1/models/m/versions/v/batches";

fn columnar() -> Value {
    json!({
        "task": "multiclass",
        "classes": ["cat", "dog", "bird"],
        "labels": ["cat", "bird", "dog", "cat", "dog"],
        "probabilities": [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.6, 0.3, 0.1], [0.25, 0.5, 0.25]],
        "estimators": ["shannon_mi", "semantic_mi"],
        "metadata": {"kpis": {"conversion": 0.031}}
    })
}

fn ndjson() -> String {
    let b = columnar();
    let mut out = String::new();
    for (l, p) in b["labels"]
        .as_array()
        .unwrap()
        .iter()
        .zip(b["probabilities"].as_array().unwrap())
    {
        out.push_str(&json!({"label": l, "probabilities": p}).to_string());
        out.push('\n');
    }
    out
}

fn csv() -> String {
    let b = columnar();
    let mut out = String::from("label,p_cat,p_dog,p_bird\n");
    for (l, p) in b["labels"]
        .as_array()
        .unwrap()
        .iter()
        .zip(b["probabilities"].as_array().unwrap())
    {
        let p: Vec<String> = p
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.to_string())
            .collect();
        out.push_str(&format!("{},{}\n", l.as_str().unwrap(), p.join(",")));
    }
    out
}

const ARROW: &str = "application/vnd.apache.arrow.stream";

/// An Arrow IPC stream of these columns, in record batches of `chunk` rows.
fn arrow_stream(columns: Vec<(&str, ArrayRef)>, chunk: usize) -> Vec<u8> {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), a.null_count() > 0))
            .collect::<Vec<_>>(),
    ));
    let n = columns[0].1.len();
    let mut w = arrow_ipc::writer::StreamWriter::try_new(Vec::new(), &schema).unwrap();
    for start in (0..n).step_by(chunk) {
        let len = chunk.min(n - start);
        let cols = columns.iter().map(|(_, a)| a.slice(start, len)).collect();
        w.write(&RecordBatch::try_new(schema.clone(), cols).unwrap())
            .unwrap();
    }
    w.into_inner().unwrap()
}

/// The columnar batch as an Arrow stream: dictionary-encoded class names, float64 probabilities.
fn arrow() -> Vec<u8> {
    let b = columnar();
    let names: DictionaryArray<Int32Type> = b["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let mut probs = FixedSizeListBuilder::new(Float64Builder::new(), 3);
    for row in b["probabilities"].as_array().unwrap() {
        for v in row.as_array().unwrap() {
            probs.values().append_value(v.as_f64().unwrap());
        }
        probs.append(true);
    }
    arrow_stream(
        vec![
            ("label", Arc::new(names)),
            ("probabilities", Arc::new(probs.finish())),
        ],
        2,
    )
}

const QUERY: &str = "?classes=cat,dog,bird&estimators=shannon_mi,semantic_mi&metadata=%7B%22kpis%22%3A%7B%22conversion%22%3A0.031%7D%7D";

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(bytes, 3).unwrap()
}

async fn post(
    app: &TestApp,
    uri: &str,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let mut r = Request::post(uri).header("content-type", content_type);
    if let Some(e) = encoding {
        r = r.header("content-encoding", e);
    }
    let (s, _, v) = app.call(r.body(Body::from(body)).unwrap()).await;
    (s, v)
}

/// Every body form of the same batch: stored with the same digest, data and metadata, and its
/// jobs give the same values.
#[tokio::test]
async fn every_format_and_coding_stores_the_same_batch() {
    let app = app().await;
    let json_bytes = serde_json::to_vec(&columnar()).unwrap();
    let nd = ndjson().into_bytes();
    let csv = csv().into_bytes();
    let arrow = arrow();
    let uri = format!("{PATH}{QUERY}");
    let cases: Vec<(&str, &str, Option<&str>, Vec<u8>)> = vec![
        ("json", PATH, None, json_bytes.clone()),
        ("json+gzip", PATH, Some("gzip"), gzip(&json_bytes)),
        ("ndjson", &uri, None, nd.clone()),
        ("ndjson+gzip", &uri, Some("gzip"), gzip(&nd)),
        ("ndjson+zstd", &uri, Some("zstd"), zstd(&nd)),
        ("csv", &uri, None, csv.clone()),
        ("csv+zstd", &uri, Some("zstd"), zstd(&csv)),
        ("arrow", &uri, None, arrow.clone()),
        ("arrow+zstd", &uri, Some("zstd"), zstd(&arrow)),
    ];
    let mut digests = Vec::new();
    let mut ids = Vec::new();
    for (name, uri, enc, body) in cases {
        let ct = match name.split('+').next().unwrap() {
            "json" => "application/json",
            "ndjson" => "application/x-ndjson",
            "arrow" => ARROW,
            _ => "text/csv; charset=utf-8",
        };
        let (s, b) = post(&app, uri, ct, enc, body).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{name}: {b}");
        assert_eq!(b["batch"]["n"], 5, "{name}");
        assert_eq!(b["jobs"].as_array().unwrap().len(), 2, "{name}");
        digests.push((name, b["batch"]["digest"].as_str().unwrap().to_string()));
        ids.push(b["batch"]["id"].as_str().unwrap().to_string());
    }
    for (name, d) in &digests {
        assert_eq!(d, &digests[0].1, "{name} stored a different batch");
    }
    let (_, data) = app.get(&format!("/v1/batches/{}/data", ids[3])).await;
    let mut expected = columnar();
    expected.as_object_mut().unwrap().remove("estimators");
    assert_eq!(
        data, expected,
        "the NDJSON upload reads back as the JSON form"
    );
    let (_, detail) = app.get(&format!("/v1/batches/{}", ids[5])).await;
    assert_eq!(detail["metadata"]["kpis"]["conversion"], 0.031);
    let (_, detail) = app.get(&format!("/v1/batches/{}", ids[7])).await;
    assert_eq!(detail["content_type"], ARROW);
    assert_eq!(detail["metadata"]["kpis"]["conversion"], 0.031);

    let pool = app.workers(fast_workers(2));
    let mut values = Vec::new();
    for id in &ids {
        for _ in 0..200 {
            let (_, d) = app.get(&format!("/v1/batches/{id}")).await;
            let done = d["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .all(|j| j["state"] == "succeeded");
            if done {
                let mut v: Vec<(String, f64)> = d["results"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| {
                        (
                            r["estimator"].as_str().unwrap().to_string(),
                            r["value"].as_f64().unwrap(),
                        )
                    })
                    .collect();
                v.sort_by(|a, b| a.0.cmp(&b.0));
                values.push(v);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    pool.shutdown().await;
    assert_eq!(values.len(), ids.len(), "every batch ran");
    for v in &values {
        assert_eq!(v, &values[0]);
    }
}

#[tokio::test]
async fn line_errors_name_row_and_column_and_store_nothing() {
    let app = app().await;
    let body = "label,p_cat,p_dog\ncat,0.9,0.1\ndog,0.3,0.8\nbird,0.5,0.5\ncat,abc,0.5\n";
    let (s, p) = post(&app, PATH, "text/csv", None, body.into()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    // The cell that does not parse is reported first (decoding stops before validation).
    assert_eq!(
        p["errors"][0],
        json!({"row": 3, "column": "p_cat", "message": "\"abc\" is not a number"})
    );

    let body = "label,p_cat,p_dog\ncat,0.9,0.1\ndog,0.3,0.8\nbird,0.5,0.5\n";
    let (s, p) = post(&app, PATH, "text/csv", None, body.into()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    let errors = p["errors"].as_array().unwrap();
    assert!(errors.contains(&json!({"row": 1, "column": "p_cat,p_dog", "message": "probabilities sum to 1.1; they must sum to 1 (within 0.001); rounded probabilities are accepted with `normalize: true` (rows within 0.1 of 1 are divided by their sum)"})), "{p}");
    assert!(
        errors
            .iter()
            .any(|e| e["row"] == 2 && e["column"] == "label"),
        "{p}"
    );

    let nd = "{\"label\": 0, \"probabilities\": [0.5, 0.5]}\n{\"label\": 1}\n";
    let (s, p) = post(&app, PATH, "application/x-ndjson", None, nd.into()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["errors"][0]["row"], 1);
    assert_eq!(p["errors"][0]["column"], "probabilities");

    let (s, p) = post(
        &app,
        &format!("{PATH}?task=binary"),
        "application/x-ndjson",
        None,
        nd.into(),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert!(
        p["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("query parameter `task`"),
        "{p}"
    );

    let (s, p) = post(
        &app,
        &format!("{PATH}?estimators=shannon_mi,nope"),
        "application/x-ndjson",
        None,
        "{\"label\": 0, \"prediction\": 0}\n{\"label\": 1, \"prediction\": 0}\n".into(),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert!(
        p["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("query parameter `estimators`"),
        "{p}"
    );

    let json_bytes = serde_json::to_vec(&columnar()).unwrap();
    let (s, p) = post(
        &app,
        &format!("{PATH}?task=multiclass"),
        "application/json",
        None,
        json_bytes,
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(app.count("batches").await, 0);
    assert_eq!(app.count("jobs").await, 0);
}

#[tokio::test]
async fn codings_are_checked_and_bombs_stop_at_the_limit() {
    let app = app_with_limits(infoaudit::api::Limits {
        max_upload_bytes: 1 << 20,
        max_body_bytes: 1 << 16,
        ..Default::default()
    })
    .await;
    let nd = ndjson().into_bytes();
    let (s, p) = post(&app, PATH, "application/x-ndjson", Some("br"), nd.clone()).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("gzip, zstd"), "{p}");

    let (s, p) = post(&app, PATH, "application/x-ndjson", Some("gzip"), nd.clone()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("gzip"), "{p}");
    let mut truncated = zstd(&nd);
    truncated.truncate(truncated.len() / 2);
    let (s, p) = post(&app, PATH, "application/x-ndjson", Some("zstd"), truncated).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{p}");

    // 64 MiB of blank lines compress to ~64 KiB: well under the wire limit, far over the decoded one.
    let bomb = vec![b'\n'; 64 << 20];
    for (coding, packed) in [("gzip", gzip(&bomb)), ("zstd", zstd(&bomb))] {
        assert!(
            packed.len() < 1 << 20,
            "{coding} bomb is {} bytes",
            packed.len()
        );
        let (s, p) = post(
            &app,
            PATH,
            "application/x-ndjson",
            Some(coding),
            packed.clone(),
        )
        .await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{coding}: {p}");
        assert!(
            p["detail"].as_str().unwrap().contains("decoded body"),
            "{p}"
        );
        let (s, p) = post(&app, PATH, "application/json", Some(coding), packed).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{coding} json: {p}");
    }
    // Over the wire limit without a Content-Length (streamed): still 413.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..40).map(|_| Ok(vec![b' '; 64 << 10])).collect();
    let body = Body::from_stream(futures_util::stream::iter(chunks));
    let (s, _, p) = app
        .call(
            Request::post(PATH)
                .header("content-type", "text/csv")
                .body(body)
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{p}");
    assert_eq!(app.count("batches").await, 0);
}

/// Arrow bodies: float32 probabilities are widened exactly; nulls and wrong types name the row
/// and column; a stream that does not decode (or that the reader chokes on) is a 400; the
/// decoded-size limit holds; nothing is stored for any refusal.
#[tokio::test]
async fn arrow_bodies_are_checked_like_the_others() {
    let app = app_with_limits(infoaudit::api::Limits {
        max_upload_bytes: 1 << 20,
        ..Default::default()
    })
    .await;
    let rows: [[f32; 2]; 4] = [[0.9, 0.1], [0.3, 0.7], [0.5, 0.5], [0.2, 0.8]];
    let probs = |rows: &[[f32; 2]]| -> ArrayRef {
        let mut b = FixedSizeListBuilder::new(Float32Builder::new(), 2);
        for r in rows {
            b.values().append_slice(r);
            b.append(true);
        }
        Arc::new(b.finish())
    };
    let labels: ArrayRef = Arc::new(Int64Array::from(vec![0, 1, 1, 1]));
    let body = arrow_stream(vec![("label", labels), ("probabilities", probs(&rows))], 3);
    let (s, b) = post(
        &app,
        &format!("{PATH}?estimators=shannon_mi"),
        ARROW,
        None,
        body,
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let id = b["batch"]["id"].as_str().unwrap();
    let (_, data) = app.get(&format!("/v1/batches/{id}/data")).await;
    // f64::from(0.3f32) = 0.30000001192092896: the float32 value itself, not a rounding of it.
    assert_eq!(data["probabilities"][1][0], json!(f64::from(0.3f32)));
    assert_eq!(data["probabilities"][1][0], json!(0.30000001192092896));
    assert_eq!(data["labels"], json!([0, 1, 1, 1]));

    let with_null: ArrayRef = Arc::new(Int64Array::from(vec![Some(0), Some(1), Some(1), None]));
    let body = arrow_stream(
        vec![("label", with_null), ("probabilities", probs(&rows))],
        3,
    );
    let (s, p) = post(&app, PATH, ARROW, None, body).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["errors"][0]["row"], 3, "{p}");
    assert_eq!(p["errors"][0]["column"], "label", "{p}");

    // Validation errors translate to rows and columns too: row 2 sums to 1.2.
    let bad = [[0.9, 0.1], [0.3, 0.7], [0.5, 0.7], [0.2, 0.8]];
    let labels: ArrayRef = Arc::new(Int64Array::from(vec![0, 1, 1, 1]));
    let body = arrow_stream(vec![("label", labels), ("probabilities", probs(&bad))], 3);
    let (s, p) = post(&app, PATH, ARROW, None, body).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["errors"][0]["row"], 2, "{p}");
    assert_eq!(p["errors"][0]["column"], "probabilities", "{p}");

    let labels: ArrayRef = Arc::new(Int64Array::from(vec![0, 1, 1, 1]));
    let body = arrow_stream(vec![("label", labels.clone()), ("p", probs(&rows))], 3);
    let (s, p) = post(&app, PATH, ARROW, None, body).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["errors"][0]["column"], "p", "{p}");

    // JSON text sent as Arrow, and streams with a damaged byte: 400 (or 422, or a valid batch
    // where the damage left one), never 500.
    let (s, p) = post(
        &app,
        PATH,
        ARROW,
        None,
        serde_json::to_vec(&columnar()).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("Arrow IPC"), "{p}");
    let good = arrow_stream(vec![("label", labels), ("probabilities", probs(&rows))], 3);
    let mut answered = std::collections::BTreeMap::new();
    for i in (0..good.len()).step_by(7) {
        let mut damaged = good.clone();
        damaged[i] ^= 0xff;
        let (s, _) = post(&app, PATH, ARROW, None, damaged).await;
        assert!(s != StatusCode::INTERNAL_SERVER_ERROR, "byte {i}");
        *answered.entry(s.as_u16()).or_insert(0) += 1;
    }
    assert!(answered.contains_key(&400), "{answered:?}");

    // 64 MiB of float64 zeros compress to a few KiB: stopped at the decoded-size limit.
    let zeros = vec![0.0f64; 8 << 20];
    let mut b = FixedSizeListBuilder::new(Float64Builder::new(), 8);
    b.values().append_slice(&zeros);
    for _ in 0..(1 << 20) {
        b.append(true);
    }
    let labels: ArrayRef = Arc::new(Int64Array::from(vec![0i64; 1 << 20]));
    let bomb = zstd(&arrow_stream(
        vec![("label", labels), ("probabilities", Arc::new(b.finish()))],
        1 << 18,
    ));
    assert!(bomb.len() < 1 << 20, "bomb is {} bytes", bomb.len());
    let (s, p) = post(&app, PATH, ARROW, Some("zstd"), bomb).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("decoded body"),
        "{p}"
    );

    // Damage in padding or in a value's low bits can leave a valid batch: those were stored.
    let accepted = answered.get(&202).copied().unwrap_or(0);
    assert_eq!(app.count("batches").await, 1 + accepted, "{answered:?}");
}

/// Sample ids and segments, labels left for later: the same stored batch from JSON, NDJSON, CSV
/// and Arrow, and a bad segment cell named by row and column.
#[tokio::test]
async fn ids_and_segments_arrive_the_same_in_every_format() {
    let app = app().await;
    let b = columnar();
    let probs = b["probabilities"].as_array().unwrap().clone();
    let ids = ["a1", "a2", "a3", "a4", "a5"];
    let region = ["eu", "us", "eu", "eu", "apac"];
    let json_body = json!({
        "task": "multiclass", "classes": ["cat", "dog", "bird"], "probabilities": probs,
        "ids": ids, "segments": {"region": region}
    });
    let mut nd = String::new();
    let mut csv = String::from("id,segment_region,p_cat,p_dog,p_bird\n");
    for i in 0..5 {
        nd.push_str(
            &json!({"id": ids[i], "segments": {"region": region[i]}, "probabilities": probs[i]})
                .to_string(),
        );
        nd.push('\n');
        let p: Vec<String> = probs[i]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.to_string())
            .collect();
        csv.push_str(&format!("{},{},{}\n", ids[i], region[i], p.join(",")));
    }
    let mut p = FixedSizeListBuilder::new(Float64Builder::new(), 3);
    for row in &probs {
        for v in row.as_array().unwrap() {
            p.values().append_value(v.as_f64().unwrap());
        }
        p.append(true);
    }
    let regions: DictionaryArray<Int32Type> = region.iter().copied().collect();
    let arrow = arrow_stream(
        vec![
            ("id", Arc::new(arrow_array::StringArray::from(ids.to_vec()))),
            ("segment_region", Arc::new(regions)),
            ("probabilities", Arc::new(p.finish())),
        ],
        2,
    );
    let q = "?classes=cat,dog,bird&task=multiclass";
    let cases: Vec<(&str, String, &str, Vec<u8>)> = vec![
        (
            "json",
            String::new(),
            "application/json",
            serde_json::to_vec(&json_body).unwrap(),
        ),
        (
            "ndjson",
            q.to_string(),
            "application/x-ndjson",
            nd.into_bytes(),
        ),
        ("csv", q.to_string(), "text/csv", csv.clone().into_bytes()),
        ("arrow", q.to_string(), ARROW, arrow),
    ];
    let mut digests = Vec::new();
    for (i, (name, query, ct, body)) in cases.into_iter().enumerate() {
        // Ids are unique within a model: one model per format.
        let uri = format!("/v1/models/ids{i}/versions/v/batches{query}");
        let (s, out) = post(&app, &uri, ct, None, body).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{name}: {out}");
        assert_eq!(out["batch"]["has_ids"], true, "{name}");
        assert_eq!(out["batch"]["labels_later"]["labelled"], 0, "{name}");
        digests.push(out["batch"]["digest"].as_str().unwrap().to_string());
        if name == "csv" {
            let (_, data) = app
                .get(&format!(
                    "/v1/batches/{}/data",
                    out["batch"]["id"].as_str().unwrap()
                ))
                .await;
            assert_eq!(data["segments"]["region"], json!(region));
            assert!(data.get("labels").is_none(), "{data}");
        }
    }
    assert!(digests.iter().all(|d| d == &digests[0]), "{digests:?}");
    // A segment value with a reserved character, in CSV: row and column named.
    let bad = csv.replace("a3,eu", "a3,e=u");
    let (s, p) = post(
        &app,
        &format!("/v1/models/bad/versions/v/batches{q}"),
        "text/csv",
        None,
        bad.into_bytes(),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["errors"][0]["row"], 2, "{p}");
    assert_eq!(p["errors"][0]["column"], "segment_region", "{p}");
}
