//! `cargo bench --bench discrete`: the discrete estimators of `infoaudit::estimate` side by side
//! with scikit-learn / numpy on the same data, in one run. See `benches/README.md`.
//!
//! The data is generated deterministically with `SplitMix64`, written as raw little-endian
//! binaries under `target/bench-data/` (or `$INFOAUDIT_BENCH_DATA`), timed here (best and median
//! of at least 3 runs), then `benches/discrete_sklearn.py` is run with the interpreter named by
//! `$INFOAUDIT_BENCH_PYTHON` (default `/work/venv/bin/python` when it exists, else `python3`). It
//! loads the same files, times the reference implementations the same way, checks that its values
//! agree with ours and prints its timings as JSON on stdout. Without Python, numpy or scikit-learn
//! only the Rust timings are printed.

use infoaudit::estimate::contingency::Table;
use infoaudit::estimate::rng::SplitMix64;
use infoaudit::estimate::{semantic, shannon, ClassInput, Control};
use serde_json::{json, Value};
use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Bump when the generators change (the files are rewritten when the manifest differs).
const DATA_VERSION: u64 = 1;
/// Values must agree to this (absolute, scaled by max(1, |value|)).
const TOLERANCE: f64 = 1e-9;

// ---------------------------------------------------------------------------------------------
// Timing
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct Timing {
    best: f64,
    median: f64,
    runs: usize,
}

impl Timing {
    fn show(&self) -> String {
        format!(
            "{} ({}) x{}",
            fmt_s(self.best),
            fmt_s(self.median),
            self.runs
        )
    }
}

/// At least `MIN_RUNS` runs, then more until ~`BUDGET_S` seconds were spent (at most `MAX_RUNS`);
/// one run with `--quick`.
const MIN_RUNS: usize = 3;
/// `--quick`: small sizes and one run of each, to check the values (CI), not to time them.
static QUICK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn quick() -> bool {
    QUICK.load(std::sync::atomic::Ordering::Relaxed)
}
const MAX_RUNS: usize = 15;
const BUDGET_S: f64 = 2.0;

fn time_it<T>(mut f: impl FnMut() -> T) -> (Timing, T) {
    let mut times = Vec::new();
    let mut spent = 0.0;
    let mut last;
    loop {
        let t0 = Instant::now();
        last = black_box(f());
        let dt = t0.elapsed().as_secs_f64();
        times.push(dt);
        spent += dt;
        if quick() || times.len() >= MAX_RUNS || (times.len() >= MIN_RUNS && spent >= BUDGET_S) {
            break;
        }
    }
    times.sort_by(f64::total_cmp);
    let n = times.len();
    let median = if n % 2 == 1 {
        times[n / 2]
    } else {
        0.5 * (times[n / 2 - 1] + times[n / 2])
    };
    (
        Timing {
            best: times[0],
            median,
            runs: n,
        },
        last,
    )
}

// ---------------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------------

/// A class from a skewed prior: P(class < x·K) = x^(2/3), so class 0 is the most frequent.
fn skewed_class(rng: &mut SplitMix64, k: usize) -> u32 {
    let u = rng.uniform();
    ((u * u.sqrt() * k as f64) as usize).min(k - 1) as u32
}

/// A noisy classifier: true labels from the skewed prior; the prediction is the true label with
/// probability `accuracy`, else a uniformly random class.
fn noisy_labels(n: usize, k: usize, accuracy: f64, seed: u64) -> (Vec<u32>, Vec<u32>) {
    let mut rng = SplitMix64::new(seed);
    let mut ys = Vec::with_capacity(n);
    let mut ps = Vec::with_capacity(n);
    for _ in 0..n {
        let y = skewed_class(&mut rng, k);
        let p = if rng.uniform() < accuracy {
            y
        } else {
            rng.below(k) as u32
        };
        ys.push(y);
        ps.push(p);
    }
    (ys, ps)
}

/// N×K row-stochastic probabilities of a noisy probabilistic classifier: per row uniform noise
/// plus a bump of 2K·u on the "believed" class (the true class with probability 0.7, else a random
/// one), normalised. All entries are in (0, 1).
fn noisy_probabilities(n: usize, k: usize, seed: u64) -> (Vec<u32>, Vec<f64>) {
    let mut rng = SplitMix64::new(seed);
    let mut ys = Vec::with_capacity(n);
    let mut q = vec![0.0f64; n * k];
    for (s, row) in q.chunks_exact_mut(k).enumerate() {
        let y = skewed_class(&mut rng, k);
        let believed = if rng.uniform() < 0.7 {
            y as usize
        } else {
            rng.below(k)
        };
        let mut total = 0.0;
        for v in row.iter_mut() {
            *v = rng.uniform();
            total += *v;
        }
        let bump = 2.0 * k as f64 * rng.uniform();
        row[believed] += bump;
        total += bump;
        let inv = 1.0 / total;
        row.iter_mut().for_each(|v| *v *= inv);
        ys.push(y);
        debug_assert!(s < n);
    }
    (ys, q)
}

fn data_dir() -> PathBuf {
    match std::env::var_os("INFOAUDIT_BENCH_DATA") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data"),
    }
}

/// FNV-1a over 64-bit words: a cheap fingerprint of a data file's content.
fn fingerprint(words: impl Iterator<Item = u64>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for w in words {
        h ^= w;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn u32_bytes(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Write `name` unless a file of that size with the same fingerprint (per the old manifest) is
/// already there.
fn write_file(
    dir: &Path,
    name: &str,
    old: &Value,
    print: &str,
    bytes: usize,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> std::io::Result<Value> {
    let path = dir.join(name);
    let same = old["files"][name]["fingerprint"].as_str() == Some(print)
        && std::fs::metadata(&path).map(|m| m.len() as usize).ok() == Some(bytes);
    if !same {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
        write(&mut w)?;
        w.flush()?;
    }
    Ok(json!({"fingerprint": print, "bytes": bytes}))
}

fn write_u32(dir: &Path, name: &str, old: &Value, v: &[u32]) -> std::io::Result<Value> {
    let print = fingerprint(v.iter().map(|&x| x as u64));
    write_file(dir, name, old, &print, 4 * v.len(), |w| {
        w.write_all(&u32_bytes(v))
    })
}

fn write_f64(dir: &Path, name: &str, old: &Value, v: &[f64]) -> std::io::Result<Value> {
    let print = fingerprint(v.iter().map(|x| x.to_bits()));
    write_file(dir, name, old, &print, 8 * v.len(), |w| {
        for chunk in v.chunks(1 << 16) {
            let b: Vec<u8> = chunk.iter().flat_map(|x| x.to_le_bytes()).collect();
            w.write_all(&b)?;
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Rust cases
// ---------------------------------------------------------------------------------------------

/// MI, NMI and AMI from the raw label arrays (table building included), as scikit-learn's three
/// functions compute them.
fn mi_nmi_ami(ys: &[u32], ps: &[u32], k: usize) -> [f64; 3] {
    let t = Table::from_pairs(ys, ps, k, k, None);
    [
        shannon::plugin_mi(&t).max(0.0),
        shannon::nmi(&t, "arithmetic"),
        shannon::ami(&t, "arithmetic"),
    ]
}

fn ami_only(ys: &[u32], ps: &[u32], k: usize) -> f64 {
    let t = Table::from_pairs(ys, ps, k, k, None);
    shannon::ami(&t, "arithmetic")
}

/// Plain sum of the matrix: the library's dispatched 16-accumulator sum
/// (`estimate::simd::sum`, AVX2 when the CPU has it), the memory-bandwidth yardstick for one
/// pass.
fn plain_sum(q: &[f64]) -> f64 {
    infoaudit::estimate::simd::sum(q)
}

struct Row {
    case: &'static str,
    /// Key of the reference timing in the Python JSON (None: no reference).
    reference: Option<&'static str>,
    rust: Timing,
    /// (name, rust value, key of the reference value in the Python JSON).
    values: Vec<(&'static str, f64, Option<&'static str>)>,
    /// Bytes read per run (for GB/s), if meaningful.
    bytes: Option<f64>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` passes `--bench`; other arguments starting with `-` are ignored too, except
    // `--rust-only` (skip the reference) and `--quick` (small sizes, one run each, and the
    // reference is required: a check that cannot compare fails). Plain arguments filter the
    // cases by substring.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rust_only = args.iter().any(|a| a == "--rust-only");
    if args.iter().any(|a| a == "--quick") {
        QUICK.store(true, std::sync::atomic::Ordering::Relaxed);
        std::env::set_var("INFOAUDIT_BENCH_QUICK", "1");
    }
    let filters: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    let wanted = |case: &str| filters.is_empty() || filters.iter().any(|f| case.contains(f));
    let dir = if quick() {
        data_dir().join("quick")
    } else {
        data_dir()
    };
    std::fs::create_dir_all(&dir)?;
    let manifest_path = dir.join("manifest.json");
    let old: Value = std::fs::read(&manifest_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let old = if old["version"].as_u64() == Some(DATA_VERSION) {
        old
    } else {
        Value::Null
    };

    let ((n1, k1), (n2, k2), (n3, k3)) = if quick() {
        (
            (20_000usize, 20usize),
            (5_000usize, 200usize),
            (20_000usize, 20usize),
        )
    } else {
        ((1_000_000, 100), (50_000, 1000), (1_000_000, 100))
    };
    eprintln!("generating data ...");
    let t0 = Instant::now();
    let (ys1, ps1) = noisy_labels(n1, k1, 0.6, 1);
    let (ys2, ps2) = noisy_labels(n2, k2, 0.6, 2);
    let (ys3, q3) = noisy_probabilities(n3, k3, 3);
    // Held the way the service holds a decoded batch's matrix (`reserve_f64`: huge pages where
    // the kernel allows them, as numpy does for its large arrays).
    let q3 = {
        let mut v = infoaudit::estimate::simd::reserve_f64(q3.len())?;
        v.extend_from_slice(&q3);
        v
    };
    let mut files = serde_json::Map::new();
    files.insert(
        "disc_labels.u32".into(),
        write_u32(&dir, "disc_labels.u32", &old, &ys1)?,
    );
    files.insert(
        "disc_preds.u32".into(),
        write_u32(&dir, "disc_preds.u32", &old, &ps1)?,
    );
    files.insert(
        "wide_labels.u32".into(),
        write_u32(&dir, "wide_labels.u32", &old, &ys2)?,
    );
    files.insert(
        "wide_preds.u32".into(),
        write_u32(&dir, "wide_preds.u32", &old, &ps2)?,
    );
    files.insert(
        "sem_labels.u32".into(),
        write_u32(&dir, "sem_labels.u32", &old, &ys3)?,
    );
    files.insert(
        "sem_probs.f64".into(),
        write_f64(&dir, "sem_probs.f64", &old, &q3)?,
    );
    eprintln!(
        "data ready in {:.1} s under {}",
        t0.elapsed().as_secs_f64(),
        dir.display()
    );

    let mut rows: Vec<Row> = Vec::new();
    let mut rust_values = serde_json::Map::new();

    // 1. MI + NMI + AMI, N = 10^6, K = 100, from the raw label arrays.
    let case = "MI+NMI+AMI (table)";
    if wanted(case) {
        eprintln!("rust: {case} ...");
        let (t, v) = time_it(|| mi_nmi_ami(&ys1, &ps1, k1));
        rows.push(Row {
            case,
            reference: Some("disc_trio"),
            rust: t,
            values: vec![
                ("mi", v[0], Some("disc_mi")),
                ("nmi", v[1], Some("disc_nmi")),
                ("ami", v[2], Some("disc_ami")),
            ],
            bytes: None,
        });
        rust_values.insert("disc_mi".into(), json!(v[0]));
        rust_values.insert("disc_nmi".into(), json!(v[1]));
        rust_values.insert("disc_ami".into(), json!(v[2]));
    }

    // 1b. The whole estimator entry point (jackknife, VI, details JSON, interval), for
    // information: compared with the same three scikit-learn calls (its plug-in, which is what
    // scikit-learn's mutual_info_score computes; the reported value is the jackknife, shown
    // beside it without a reference).
    let input1 = ClassInput {
        labels: &ys1,
        predictions: &ps1,
        k: k1,
        probabilities: None,
        weights: None,
        truth_matrix: None,
    };
    for (case, boot) in [
        ("shannon_mi() bootstrap=0", 0usize),
        ("shannon_mi() bootstrap=200", 200),
    ] {
        if !wanted(case) {
            continue;
        }
        eprintln!("rust: {case} ...");
        let params = shannon::Params {
            bootstrap: boot,
            ..Default::default()
        };
        let (t, out) = time_it(|| shannon::shannon_mi(&input1, &params, &Control::none()).unwrap());
        let detail = |key: &str| out.details[key].as_f64().unwrap_or(f64::NAN);
        rows.push(Row {
            case,
            reference: Some("disc_trio"),
            rust: t,
            values: vec![
                ("plug_in", detail("plug_in"), Some("disc_mi")),
                ("jackknife", out.value, None),
                ("nmi", detail("nmi"), Some("disc_nmi")),
                ("ami", detail("ami"), Some("disc_ami")),
            ],
            bytes: None,
        });
    }

    // 2. AMI with 1000 x 1000 classes, N = 50,000.
    let case = "AMI (wide table)";
    if wanted(case) {
        eprintln!("rust: {case} ...");
        let (t, v) = time_it(|| ami_only(&ys2, &ps2, k2));
        rows.push(Row {
            case,
            reference: Some("wide_ami"),
            rust: t,
            values: vec![("ami", v, Some("wide_ami"))],
            bytes: None,
        });
        rust_values.insert("wide_ami".into(), json!(v));
    }

    // 3. Semantic MI, probabilities mode, N = 10^6, K = 100.
    let qview = ndarray::ArrayView2::from_shape((n3, k3), &q3)?;
    let input3 = ClassInput {
        labels: &ys3,
        predictions: &ys3,
        k: k3,
        probabilities: Some(qview),
        weights: None,
        truth_matrix: None,
    };
    let matrix_bytes = (8 * n3 * k3) as f64;
    for (case, boot) in [
        ("semantic_mi bootstrap=0", 0usize),
        ("semantic_mi bootstrap=200", 200),
    ] {
        if !wanted(case) {
            continue;
        }
        eprintln!("rust: {case} ...");
        let params = semantic::Params {
            bootstrap: boot,
            mode: "probabilities".into(),
            ..Default::default()
        };
        let (t, out) =
            time_it(|| semantic::semantic_mi(&input3, &params, &Control::none()).unwrap());
        rows.push(Row {
            case,
            reference: Some("sem_numpy"),
            rust: t,
            values: vec![("G", out.value, Some("sem_g"))],
            bytes: Some(matrix_bytes),
        });
        rust_values.insert("sem_g".into(), json!(out.value));
    }
    let case = "plain sum of the matrix";
    if wanted(case) {
        eprintln!("rust: {case} ...");
        let (t, s) = time_it(|| plain_sum(&q3));
        rows.push(Row {
            case,
            reference: Some("sum_numpy"),
            rust: t,
            values: vec![("sum", s, Some("sum"))],
            bytes: Some(matrix_bytes),
        });
        rust_values.insert("sum".into(), json!(s));
    }

    // Manifest: shapes, files and our values (the Python side checks against them).
    let manifest = json!({
        "version": DATA_VERSION,
        "files": files,
        "cases": {
            "disc": {"n": n1, "k": k1, "labels": "disc_labels.u32", "preds": "disc_preds.u32"},
            "wide": {"n": n2, "k": k2, "labels": "wide_labels.u32", "preds": "wide_preds.u32"},
            "sem": {"n": n3, "k": k3, "labels": "sem_labels.u32", "probs": "sem_probs.f64"},
        },
        "rust_values": rust_values,
        "tolerance": TOLERANCE,
    });
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&manifest)?)?;
    drop(q3);

    let reference = if rust_only {
        eprintln!("comparison skipped: --rust-only");
        None
    } else {
        run_reference(&dir)
    };
    if quick() && !rust_only && reference.is_none() {
        eprintln!("--quick checks values against the reference, which did not run");
        std::process::exit(1);
    }
    println!(
        "sizes: table N={n1} K={k1}; wide table N={n2} K={k2}; semantic N={n3} K={k3}{}",
        if quick() {
            " (--quick: one run each)"
        } else {
            ""
        }
    );
    let ok = print_table(&rows, reference.as_ref());
    if !ok {
        eprintln!("VALUE MISMATCH between Rust and the reference (see the table)");
        std::process::exit(1);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reference side
// ---------------------------------------------------------------------------------------------

fn python() -> String {
    if let Some(p) = std::env::var_os("INFOAUDIT_BENCH_PYTHON") {
        return p.to_string_lossy().into_owned();
    }
    if Path::new("/work/venv/bin/python").exists() {
        "/work/venv/bin/python".into()
    } else {
        "python3".into()
    }
}

/// Run the Python side; `None` (with a note on stderr) when it cannot run.
fn run_reference(dir: &Path) -> Option<Value> {
    let py = python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/discrete_sklearn.py");
    eprintln!("reference: {py} {} ...", script.display());
    let out = match Command::new(&py)
        .arg(&script)
        .arg(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("comparison skipped: cannot run {py}: {e}");
            return None;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let parsed: Option<Value> = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok());
    match parsed {
        Some(v) if v.get("skipped").is_some() => {
            eprintln!(
                "comparison skipped: {}",
                v["skipped"].as_str().unwrap_or("reference unavailable")
            );
            None
        }
        Some(v) if out.status.success() => Some(v),
        _ => {
            eprintln!(
                "comparison skipped: the reference script failed ({}); stdout: {}",
                out.status,
                text.trim()
            );
            None
        }
    }
}

fn fmt_s(t: f64) -> String {
    if t >= 1.0 {
        format!("{t:.3} s")
    } else if t >= 1e-3 {
        format!("{:.2} ms", t * 1e3)
    } else {
        format!("{:.1} us", t * 1e6)
    }
}

/// Print the table; returns false when a compared value disagrees.
fn print_table(rows: &[Row], reference: Option<&Value>) -> bool {
    let mut ok = true;
    println!();
    if let Some(r) = reference {
        println!(
            "reference: {} (numpy {}, scikit-learn {}); times are best (median) of >= {} runs",
            r["python"].as_str().unwrap_or("?"),
            r["numpy"].as_str().unwrap_or("?"),
            r["sklearn"].as_str().unwrap_or("?"),
            if quick() { 1 } else { MIN_RUNS }
        );
    } else {
        println!(
            "reference comparison skipped; Rust times are best (median) of >= {} runs",
            if quick() { 1 } else { MIN_RUNS }
        );
    }
    println!(
        "{:<28} {:>27} {:>27} {:>7}  values (rust | reference | |diff|)",
        "case", "rust best (median) xruns", "reference best (median) xruns", "ratio"
    );
    for row in rows {
        let rust = row.rust.show();
        let (refs, ratio) = match (reference, row.reference) {
            (Some(r), Some(key)) => match (
                r["timings"][key]["best"].as_f64(),
                r["timings"][key]["median"].as_f64(),
            ) {
                (Some(b), Some(m)) => (
                    Timing {
                        best: b,
                        median: m,
                        runs: r["timings"][key]["runs"].as_u64().unwrap_or(0) as usize,
                    }
                    .show(),
                    format!("{:.1}x", b / row.rust.best),
                ),
                _ => ("-".into(), "-".into()),
            },
            _ => ("-".into(), "-".into()),
        };
        let mut vals = Vec::new();
        for (name, v, key) in &row.values {
            let rv = match (reference, key) {
                (Some(r), Some(k)) => r["values"][k].as_f64(),
                _ => None,
            };
            match rv {
                Some(rv) => {
                    let diff = (v - rv).abs();
                    let good = diff <= TOLERANCE * v.abs().max(1.0);
                    ok &= good;
                    vals.push(format!(
                        "{name} {v:.12} | {rv:.12} | {diff:.1e}{}",
                        if good { "" } else { " MISMATCH" }
                    ));
                }
                None => vals.push(format!("{name} {v:.12}")),
            }
        }
        if let Some(b) = row.bytes {
            vals.push(format!("{:.2} GB/s", b / row.rust.best / 1e9));
        }
        println!(
            "{:<28} {:>27} {:>27} {:>7}  {}",
            row.case,
            rust,
            refs,
            ratio,
            vals.join("; ")
        );
    }
    println!("ratio = reference best / rust best (higher is better for Rust)");
    ok
}
