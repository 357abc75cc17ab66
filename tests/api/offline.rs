//! `infoaudit estimate`: the estimators on a file with no server and no database. Its numbers
//! must be the service's for the same rows (checked against an upload of the same file to the
//! real router and workers), every format must read the same rows, and unusable input is an
//! error that names the problem with exit code 3.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::support::{app, classifier_batch};

struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        let d = std::env::temp_dir().join(format!("infoaudit-estimate-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
    fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Run the binary: (exit code, stdout, stderr).
fn estimate(file: &Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_infoaudit"))
        .arg("estimate")
        .arg(file)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn close(a: &Value, b: &Value, path: &str) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-12 * x.abs().max(1.0),
                "{path}: {x} offline vs {y} in the service"
            );
        }
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in y {
                close(&x[k], v, &format!("{path}/{k}"));
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{path}");
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                close(p, q, &format!("{path}/{i}"));
            }
        }
        _ => assert_eq!(a, b, "{path}"),
    }
}

/// A 4-class classifier batch (about 80 % accurate) with a segment column, uploaded to the
/// service and estimated offline from the same JSON file: value, interval, details, diagnostics
/// and the per-segment results agree to 1e-12 for each default estimator.
#[tokio::test]
async fn the_offline_estimate_equals_the_services_result_for_the_same_file() {
    let mut body = classifier_batch(1500, 4, 0.8, 11);
    let region: Vec<&str> = (0..1500)
        .map(|i| if i % 3 == 0 { "eu" } else { "us" })
        .collect();
    body["segments"] = json!({"region": region});
    body["estimators"] = json!(["shannon_mi", "semantic_mi", "ce_bound", "implied_mi"]);
    let dir = Dir::new();
    let file = dir.write("batch.json", body.to_string());

    let app = app().await;
    let id = app.upload_and_run("v1", &body).await;
    let (s, detail) = app.get(&format!("/v1/batches/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    let served = detail["results"].as_array().unwrap();
    assert_eq!(served.len(), 4, "{detail}");

    let (code, out, err) = estimate(&file, &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["n"], 1500);
    assert_eq!(doc["unit"], "bits");
    let offline = doc["results"].as_array().unwrap();
    assert_eq!(offline.len(), 4, "{doc}");
    for r in served {
        let name = r["estimator"].as_str().unwrap();
        let o = offline
            .iter()
            .find(|o| o["estimator"] == name)
            .unwrap_or_else(|| panic!("{name} missing offline: {doc}"));
        assert_eq!(o["estimator_version"], r["estimator_version"], "{name}");
        assert_eq!(o["params"], r["params"], "{name}");
        for field in [
            "value",
            "ci_low",
            "ci_high",
            "ci_level",
            "ci_method",
            "n",
            "details",
            "diagnostics",
            "segments",
        ] {
            close(&o[field], &r[field], &format!("{name}/{field}"));
        }
        assert!(o["segments"]["region"].is_object(), "{name}: {o}");
    }
}

/// Standard bivariate normal pairs with correlation ρ (Box–Muller on a fixed generator).
fn normal_pairs(n: usize, rho: f64) -> Vec<(f64, f64, f64)> {
    let mut g = infoaudit::estimate::rng::SplitMix64::new(5);
    (0..n)
        .map(|_| {
            let (u1, u2) = (g.uniform().max(1e-300), g.uniform());
            let r = (-2.0 * u1.ln()).sqrt();
            let (a, b) = (
                r * (std::f64::consts::TAU * u2).cos(),
                r * (std::f64::consts::TAU * u2).sin(),
            );
            let c = g.uniform() * 2.0 - 1.0;
            (a, rho * a + (1.0 - rho * rho).sqrt() * b, c)
        })
        .collect()
}

/// The benchmark's sample files (header `X0,X1,Y0`, no extension, the format named) are read
/// as pairs: `--output value` prints one number and nothing else (the benchmark reads it as a
/// float from the merged output), equal to the value of the same rows under the upload's own
/// column names and of the same rows as Parquet, and near the closed form
/// I = −½ ln(1 − ρ²) (X1 is independent noise, so I(X0,X1;Y0) = I(X0;Y0)).
#[test]
fn benchmark_csv_parquet_and_upload_columns_give_one_value() {
    let rho = 0.75_f64;
    let truth = -0.5 * (1.0 - rho * rho).ln();
    let rows = normal_pairs(2000, rho);
    let dir = Dir::new();
    let mut bench = String::from("X0,X1,Y0\n");
    let mut ours = String::from("x_0,x_1,y_0\n");
    for (a, b, c) in &rows {
        bench.push_str(&format!("{a},{c},{b}\n"));
        ours.push_str(&format!("{a},{c},{b}\n"));
    }
    let bench_file = dir.write("sample", bench);
    let ours_file = dir.write("pairs.csv", ours);
    let parquet_file = dir.0.join("pairs.parquet");
    write_parquet(&parquet_file, &rows);

    let args = ["--estimator", "ksg", "--unit", "nats", "--output", "value"];
    let (code, out, err) = estimate(&bench_file, &[&["--format", "csv"], &args[..]].concat());
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.is_empty(), "nothing on stderr: {err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    let v: f64 = out.trim().parse().unwrap();
    // KSG at N = 2000 on a bivariate normal: within 0.05 nats (bias and spread of KSG at this
    // N and k = 3, Kraskov et al. 2004, fig. 4).
    assert!((v - truth).abs() < 0.05, "{v} vs {truth}");
    for other in [&ours_file, &parquet_file] {
        let (code, out2, err) = estimate(other, &args);
        assert_eq!(code, 0, "{other:?}: {out2}\n{err}");
        assert_eq!(out2, out, "{other:?} reads the same rows");
    }
    // Standard input, with the format named.
    let piped = std::process::Command::new(env!("CARGO_BIN_EXE_infoaudit"))
        .args(["estimate", "-", "--format", "csv"])
        .args(args)
        .stdin(std::fs::File::open(&ours_file).unwrap())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&piped.stdout), out);
    // bits = nats / ln 2
    let (_, bits, _) = estimate(&ours_file, &["--estimator", "ksg", "--output", "value"]);
    let b: f64 = bits.trim().parse().unwrap();
    assert!((b - v / std::f64::consts::LN_2).abs() < 1e-12);
    // A parameter reaches the estimator: k = 10 gives another (still close) value.
    let (code, k10, err) = estimate(&ours_file, &[&args[..], &["--param", "k=10"]].concat());
    assert_eq!(code, 0, "{err}");
    assert_ne!(k10, out);
    let (_, doc, _) = estimate(&ours_file, &["--estimator", "ksg", "--param", "ksg.k=10"]);
    let doc: Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(doc["results"][0]["params"]["k"], 10, "{doc}");
    assert_eq!(doc["task"], "pairs");
}

fn write_parquet(path: &Path, rows: &[(f64, f64, f64)]) {
    use arrow_array::builder::{Float64Builder, ListBuilder};
    use arrow_array::{ArrayRef, RecordBatch};
    let mut x = ListBuilder::new(Float64Builder::new());
    let mut y = ListBuilder::new(Float64Builder::new());
    for (a, b, c) in rows {
        x.values().append_value(*a);
        x.values().append_value(*c);
        x.append(true);
        y.values().append_value(*b);
        y.append(true);
    }
    let batch = RecordBatch::try_from_iter([
        ("x", Arc::new(x.finish()) as ArrayRef),
        ("y", Arc::new(y.finish()) as ArrayRef),
    ])
    .unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// Unusable input exits 3 and says why on stderr, naming the file, the column or the field.
#[test]
fn unusable_input_is_exit_3_naming_the_problem() {
    let dir = Dir::new();
    let good = dir.write("ok.csv", "label,prediction\n0,0\n1,1\n0,1\n1,1\n");
    let cases: Vec<(PathBuf, Vec<&str>, &str)> = vec![
        (dir.0.join("missing.csv"), vec![], "cannot read"),
        (
            dir.write("bad.csv", "label,colour\n0,red\n"),
            vec![],
            "colour",
        ),
        (dir.write("data.txt", "x"), vec![], "--format"),
        (good.clone(), vec!["--param", "k=3"], "needs an --estimator"),
        (good.clone(), vec!["--estimator", "ksg"], "/estimators/0"),
        (
            good.clone(),
            vec!["--estimator", "shannon_mi", "--param", "ksg.k=3"],
            "not among --estimator",
        ),
        (good.clone(), vec!["--unit", "bans"], "--unit"),
        (
            dir.write("not.parquet", "PAR1 this is not parquet"),
            vec![],
            "Parquet",
        ),
        (
            dir.write(
                "later.json",
                r#"{"task":"multiclass","classes":["a","b"],"predictions":[0,1],"ids":["a","b"]}"#,
            ),
            vec![],
            "/labels",
        ),
    ];
    for (file, args, needle) in cases {
        let (code, out, err) = estimate(&file, &args);
        assert_eq!(code, 3, "{file:?} {args:?}: {out}\n{err}");
        assert!(
            err.contains(needle),
            "{file:?} {args:?}: {err:?} lacks {needle:?}"
        );
        assert!(out.is_empty(), "{out}");
    }
    let (code, out, err) = estimate(&good, &["--estimator", "shannon_mi", "--output", "value"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.trim().parse::<f64>().is_ok(), "{out}");
}
