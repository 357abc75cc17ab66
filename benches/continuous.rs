//! `cargo bench --bench continuous [-- --rust-only | --table | --no-neural]`: the continuous and
//! neural MI estimators of `infoaudit::estimate` against reference implementations (see
//! `benches/README.md`, section "continuous").
//!
//! Default run:
//! - `ksg` (k=3, max-norm, standardised, no interval) on a 1-D Gaussian pair (ρ = 0.75) at
//!   N = 10⁴ and 10⁵ against scikit-learn's `mutual_info_regression` (its 1e-10 noise on, so the
//!   values agree to ~1e-6 rather than bit-for-bit; ours is reported unclipped);
//! - the benchmark-convention KSG (Euclidean within each space, max across, mean of k = 5, 10) on
//!   the 5×5 dense Gaussian at N = 5000 against a chunked numpy brute force of the same estimator
//!   (bmi's `KSGEnsembleFirstEstimator` algorithm);
//! - the four neural bounds (default params) on the 5×5 dense Gaussian at N = 5000: seconds per
//!   fit and the error against the truth 0.592812.
//!
//! The data are generated with `SplitMix64`, written as little-endian f64 files under
//! `target/bench-data/` (or `$INFOAUDIT_BENCH_DATA`) and read by `benches/continuous_ref.py`
//! (interpreter: `$INFOAUDIT_BENCH_PYTHON`, default `/work/venv/bin/python` when present, else
//! `python3`), which prints its timings and values as one JSON line.
//!
//! `--quick`: the same value checks on small samples (N = 2000 and 5000 pairs, the 5×5 Gaussian
//! at N = 1000), one run each, no neural fits; fails when the reference cannot run (CI).
//!
//! `--table [FILTER]`: the §8.3 accuracy table (KSG-5 and KSG-10, bmi convention, N = 5000,
//! 3 seeds) on all 40 bmi tasks (samplers re-implemented; see `estimate::samplers`), next to
//! bmi's numbers; FILTER keeps the tasks whose name contains it.
//! `--neural-sweep`: each neural bound's bias and spread against N and critic width on three
//! tasks with known truth (the evidence for the minimum N and the caution thresholds).
//! `--neural-table [FILTER]`: InfoNCE, NWJ, MINE and SMILE (default params, seed 0) on the
//! 12-task subset of the §8.3 neural table, next to bmi's numbers.

use infoaudit::estimate::samplers::*;
use infoaudit::estimate::{ksg, neural, Control};
use ndarray::{Array2, ArrayView2};
use serde_json::{json, Value};
use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const MIN_RUNS: usize = 3;
const MAX_RUNS: usize = 15;
/// `--quick`: small sizes, one run each, no neural fits, and the reference is required: the
/// values are checked (CI), the timings are not the point.
static QUICK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn quick() -> bool {
    QUICK.load(std::sync::atomic::Ordering::Relaxed)
}
const BUDGET_S: f64 = 2.0;

#[derive(Clone, Copy)]
struct Timing {
    best: f64,
    median: f64,
    runs: usize,
}

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

fn fmt_s(t: f64) -> String {
    if t >= 1.0 {
        format!("{t:.3} s")
    } else if t >= 1e-3 {
        format!("{:.2} ms", t * 1e3)
    } else {
        format!("{:.1} us", t * 1e6)
    }
}

fn data_dir() -> PathBuf {
    match std::env::var_os("INFOAUDIT_BENCH_DATA") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data"),
    }
}

fn write_f64(path: &Path, v: &[f64]) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    for x in v {
        w.write_all(&x.to_le_bytes())?;
    }
    w.flush()
}

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

fn run_reference(dir: &Path) -> Option<Value> {
    let py = python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/continuous_ref.py");
    eprintln!("reference: {py} {} ...", script.display());
    let out = Command::new(&py)
        .arg(&script)
        .arg(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| eprintln!("comparison skipped: cannot run {py}: {e}"))
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())?;
    if v.get("skipped").is_some() || !out.status.success() {
        eprintln!("comparison skipped: {}", v["skipped"]);
        return None;
    }
    Some(v)
}

fn col(v: &[f64]) -> ArrayView2<'_, f64> {
    ArrayView2::from_shape((v.len(), 1), v).unwrap()
}

fn ksg_plain(x: ArrayView2<f64>, y: ArrayView2<f64>) -> f64 {
    let p = ksg::Params {
        subsamples: 0,
        ..Default::default()
    };
    ksg::ksg(x, y, &p, &Control::none()).unwrap().value
}

fn ksg_bmi(x: ArrayView2<f64>, y: ArrayView2<f64>, ks: &[usize]) -> (f64, Vec<f64>) {
    let p = ksg::Params {
        metric: "euclidean_per_space".into(),
        ks: ks.to_vec(),
        subsamples: 0,
        ..Default::default()
    };
    let out = ksg::ksg(x, y, &p, &Control::none()).unwrap();
    let per: Vec<f64> = out.details["per_k"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["value"].as_f64().unwrap_or(f64::NAN))
        .collect();
    (out.value, per)
}

struct Row {
    case: String,
    rust: Timing,
    value: f64,
    reference: Option<(&'static str, f64)>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // optional task-name filter after --table / --neural-table
    let filter = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .filter(|f| !f.starts_with("--"))
            .cloned()
    };
    if args.iter().any(|a| a == "--table") {
        table(filter("--table").as_deref());
        return Ok(());
    }
    if args.iter().any(|a| a == "--neural-sweep") {
        neural_sweep();
        return Ok(());
    }
    if args.iter().any(|a| a == "--neural-table") {
        neural_table(filter("--neural-table").as_deref());
        return Ok(());
    }
    let rust_only = args.iter().any(|a| a == "--rust-only");
    if args.iter().any(|a| a == "--quick") {
        QUICK.store(true, std::sync::atomic::Ordering::Relaxed);
        std::env::set_var("INFOAUDIT_BENCH_QUICK", "1");
    }
    let no_neural = quick() || args.iter().any(|a| a == "--no-neural");
    let dir = if quick() {
        data_dir().join("quick")
    } else {
        data_dir()
    };
    std::fs::create_dir_all(&dir)?;
    let mut rows = Vec::new();
    let mut files = serde_json::Map::new();

    let pairs: [(usize, &'static str); 2] = if quick() {
        [(2_000, "sk_small"), (5_000, "sk_large")]
    } else {
        [(10_000, "sk_small"), (100_000, "sk_large")]
    };
    for (n, key) in pairs {
        let (x, y) = gaussian_pair_sample(0.75, n, 1);
        let name = format!("cont_pair_{n}");
        write_f64(&dir.join(format!("{name}_x.f64")), &x)?;
        write_f64(&dir.join(format!("{name}_y.f64")), &y)?;
        files.insert(
            name.clone(),
            json!({"n": n, "dx": 1, "dy": 1, "sklearn_key": key}),
        );
        eprintln!("rust: ksg N={n} ...");
        let (t, v) = time_it(|| ksg_plain(col(&x), col(&y)));
        rows.push(Row {
            case: format!("ksg k=3 max 1x1 N={n}"),
            rust: t,
            value: v,
            reference: Some((key, 1e-6)),
        });
    }
    let cov = dense_cov(5, 5, 0.5);
    let truth = gaussian_mi(&cov, 5);
    let n5 = if quick() { 1000 } else { 5000 };
    let (x5, y5) = gaussian_sample(&cov, 5, n5, 1);
    write_f64(&dir.join("cont_dense5_x.f64"), x5.as_slice().unwrap())?;
    write_f64(&dir.join("cont_dense5_y.f64"), y5.as_slice().unwrap())?;
    files.insert("cont_dense5".into(), json!({"n": n5, "dx": 5, "dy": 5}));
    eprintln!("rust: bmi-convention KSG 5x5 ...");
    let (t, v) = time_it(|| ksg_bmi(x5.view(), y5.view(), &[5, 10]).0);
    rows.push(Row {
        case: format!("ksg euclid/space k=(5,10) 5x5 N={n5}"),
        rust: t,
        value: v,
        reference: Some(("bmi_5x5", 1e-9)),
    });
    std::fs::write(
        dir.join("continuous_manifest.json"),
        serde_json::to_vec_pretty(&json!({"files": files}))?,
    )?;

    let mut neural_rows = Vec::new();
    if !no_neural {
        for b in ["infonce", "mine", "nwj", "smile"] {
            eprintln!("rust: {b} 5x5 ...");
            let bound = neural::Bound::from_id(b).unwrap();
            let t0 = Instant::now();
            let out = neural::estimate(
                bound,
                x5.view(),
                y5.view(),
                &neural::Params::default(),
                &Control::none(),
            )
            .unwrap();
            neural_rows.push((
                b,
                t0.elapsed().as_secs_f64(),
                out.value,
                out.details["steps_run"].clone(),
            ));
        }
    }

    let reference = if rust_only { None } else { run_reference(&dir) };
    if quick() && !rust_only && reference.is_none() {
        eprintln!("--quick checks values against the reference, which did not run");
        std::process::exit(1);
    }
    println!();
    println!(
        "{:<40} {:>26} {:>26} {:>8}  value (rust | reference)",
        "case", "rust best (median) xruns", "ref best (median) xruns", "ratio"
    );
    let mut ok = true;
    for r in &rows {
        let rs = format!(
            "{} ({}) x{}",
            fmt_s(r.rust.best),
            fmt_s(r.rust.median),
            r.rust.runs
        );
        let (refs, ratio, val) = match (&reference, r.reference) {
            (Some(rf), Some((key, tol))) => {
                let t = &rf["timings"][key];
                let rv = rf["values"][key].as_f64().unwrap_or(f64::NAN);
                // scikit-learn clips at 0
                let ours = if key.starts_with("sk") {
                    r.value.max(0.0)
                } else {
                    r.value
                };
                let good = (ours - rv).abs() <= tol;
                ok &= good;
                (
                    format!(
                        "{} ({}) x{}",
                        fmt_s(t["best"].as_f64().unwrap_or(f64::NAN)),
                        fmt_s(t["median"].as_f64().unwrap_or(f64::NAN)),
                        t["runs"]
                    ),
                    format!(
                        "{:.1}x",
                        t["best"].as_f64().unwrap_or(f64::NAN) / r.rust.best
                    ),
                    format!(
                        "{:.9} | {rv:.9}{}",
                        r.value,
                        if good { "" } else { " MISMATCH" }
                    ),
                )
            }
            _ => ("-".into(), "-".into(), format!("{:.9}", r.value)),
        };
        println!("{:<40} {rs:>26} {refs:>26} {ratio:>8}  {val}", r.case);
    }
    if !neural_rows.is_empty() {
        println!();
        println!("neural bounds, default params, 5x5 dense Gaussian N=5000 (truth {truth:.6}); one fit each:");
        for (b, secs, v, steps) in neural_rows {
            println!(
                "  {b:<8} {:>9}  value {v:.4}  error {:+.4}  steps {steps}",
                fmt_s(secs),
                v - truth
            );
        }
    }
    if !ok {
        eprintln!("VALUE MISMATCH between Rust and the reference");
        std::process::exit(1);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// §8.3-like accuracy table
// ---------------------------------------------------------------------------------------------

/// A task's sampler: seed → (x, y), N = 5000.
type Sampler = Box<dyn Fn(u64) -> (Array2<f64>, Array2<f64>)>;

/// A task: name, true MI, bmi KSG-5 and KSG-10 means (estimators-anchors.md §8.3), sampler.
struct Task {
    name: &'static str,
    truth: f64,
    bmi5: f64,
    bmi10: f64,
    sampler: Sampler,
}

fn task(name: &'static str, truth: f64, bmi5: f64, bmi10: f64, sampler: Sampler) -> Task {
    Task {
        name,
        truth,
        bmi5,
        bmi10,
        sampler,
    }
}

const N_TABLE: usize = 5000;

fn gauss(cov: Array2<f64>, d: usize) -> Sampler {
    Box::new(move |seed| gaussian_sample(&cov, d, N_TABLE, seed))
}

fn student(d: usize, nu: u32) -> Sampler {
    Box::new(move |seed| split(&student_sample(&Array2::eye(2 * d), nu, N_TABLE, seed), d))
}

fn mapped(s: Sampler, f: fn(f64) -> f64) -> Sampler {
    Box::new(move |seed| {
        let (x, y) = s(seed);
        (x.mapv(f), y.mapv(f))
    })
}

fn rho(r: f64) -> Array2<f64> {
    let mut c = Array2::<f64>::eye(2);
    c[[0, 1]] = r;
    c[[1, 0]] = r;
    c
}

/// bmi's 2-pair sparse Gaussian (`task_multinormal_sparse`): its sampler uses the correlation
/// matrix of the latent-variable model (unit variances, corr(X_i, Y_i) = 0.8 for i < 2), which
/// matters for the transforms that are not affine (normal CDF, spiral).
fn sparse(d: usize) -> Sampler {
    gauss(sparse_pair_cov(d, d, 2, 0.8), d)
}

/// bmi `transform_spiral_task` (normalised speed): X rotated in its (0, 1) plane with speed
/// 1/dim_x, Y in its (1, 2) plane with speed 1/dim_y (anchors §8.4).
fn spiral(s: Sampler) -> Sampler {
    Box::new(move |seed| {
        let (mut x, mut y) = s(seed);
        let (dx, dy) = (x.ncols(), y.ncols());
        spiral_rows(&mut x, 0, 1, 1.0 / dx as f64);
        spiral_rows(&mut y, 1, 2, 1.0 / dy as f64);
        (x, y)
    })
}

fn tasks() -> Vec<Task> {
    let sid = |d: usize, nu: f64| student_mi(&Array2::eye(2 * d), d, nu);
    let sparse_mi = 1.021651;
    let additive = |eps: f64| -> Sampler {
        Box::new(move |seed| {
            let (x, y) = additive_uniform_sample(eps, N_TABLE, seed);
            (
                Array2::from_shape_vec((N_TABLE, 1), x).unwrap(),
                Array2::from_shape_vec((N_TABLE, 1), y).unwrap(),
            )
        })
    };
    let bimodal: Sampler = Box::new(|seed| {
        let (x, y) = gaussian_sample(&rho(0.75), 1, N_TABLE, seed);
        (x.mapv(bimodal_x), y.mapv(bimodal_y))
    });
    // swissroll_x-normal_cdf-1v1-normal-0.75: X = swissroll(Φ(x)) (2-D), Y = Φ(y)
    let swissroll_task: Sampler = Box::new(|seed| {
        let (x, y) = gaussian_sample(&rho(0.75), 1, N_TABLE, seed);
        let mut sx = Array2::<f64>::zeros((N_TABLE, 2));
        for (i, v) in x.column(0).iter().enumerate() {
            let [a, b] = swissroll(normal_cdf(*v));
            sx[[i, 0]] = a;
            sx[[i, 1]] = b;
        }
        (sx, y.mapv(normal_cdf))
    });
    vec![
        task(
            "1v1-normal-0.75",
            0.413339,
            0.408,
            0.415,
            gauss(rho(0.75), 1),
        ),
        task(
            "normal_cdf-1v1-normal-0.75",
            0.413339,
            0.412,
            0.415,
            mapped(gauss(rho(0.75), 1), normal_cdf),
        ),
        task(
            "1v1-additive-0.1",
            additive_uniform_mi(0.1),
            1.684,
            1.669,
            additive(0.1),
        ),
        task(
            "1v1-additive-0.75",
            additive_uniform_mi(0.75),
            0.328,
            0.323,
            additive(0.75),
        ),
        task("1v1-bimodal-0.75", 0.413339, 0.410, 0.415, bimodal),
        task(
            "wiggly-1v1-normal-0.75 (our map)",
            0.413339,
            0.411,
            0.413,
            mapped(gauss(rho(0.75), 1), wiggly),
        ),
        task(
            "half_cube-1v1-normal-0.75",
            0.413339,
            0.408,
            0.408,
            mapped(gauss(rho(0.75), 1), half_cube),
        ),
        task(
            "student-identity-1-1-1",
            sid(1, 1.0),
            0.162,
            0.137,
            student(1, 1),
        ),
        task(
            "asinh-student-identity-1-1-1",
            sid(1, 1.0),
            0.225,
            0.225,
            mapped(student(1, 1), f64::asinh),
        ),
        task(
            "swissroll_x-normal_cdf-1v1-normal-0.75",
            0.413339,
            0.412,
            0.416,
            swissroll_task,
        ),
        task(
            "multinormal-dense-2-2-0.5",
            0.293893,
            0.289,
            0.290,
            gauss(dense_cov(2, 2, 0.5), 2),
        ),
        task(
            "multinormal-dense-3-3-0.5",
            0.413339,
            0.406,
            0.401,
            gauss(dense_cov(3, 3, 0.5), 3),
        ),
        task(
            "multinormal-dense-5-5-0.5",
            0.592812,
            0.571,
            0.559,
            gauss(dense_cov(5, 5, 0.5), 5),
        ),
        task(
            "multinormal-dense-25-25-0.5",
            1.292184,
            1.080,
            1.051,
            gauss(dense_cov(25, 25, 0.5), 25),
        ),
        task(
            "multinormal-dense-50-50-0.5",
            1.624265,
            1.278,
            1.246,
            gauss(dense_cov(50, 50, 0.5), 50),
        ),
        task(
            "multinormal-sparse-2-2-2-2.0",
            sparse_mi,
            1.024,
            1.017,
            gauss(sparse_pair_cov(2, 2, 2, 0.8), 2),
        ),
        task(
            "multinormal-sparse-3-3-2-2.0",
            sparse_mi,
            0.942,
            0.908,
            gauss(sparse_pair_cov(3, 3, 2, 0.8), 3),
        ),
        task(
            "multinormal-sparse-5-5-2-2.0",
            sparse_mi,
            0.754,
            0.698,
            gauss(sparse_pair_cov(5, 5, 2, 0.8), 5),
        ),
        task(
            "multinormal-sparse-25-25-2-2.0",
            sparse_mi,
            0.205,
            0.184,
            gauss(sparse_pair_cov(25, 25, 2, 0.8), 25),
        ),
        task(
            "student-identity-2-2-1",
            sid(2, 1.0),
            0.233,
            0.198,
            student(2, 1),
        ),
        task(
            "student-identity-2-2-2",
            sid(2, 2.0),
            0.098,
            0.082,
            student(2, 2),
        ),
        task(
            "student-identity-3-3-2",
            sid(3, 2.0),
            0.123,
            0.117,
            student(3, 2),
        ),
        task(
            "student-identity-3-3-3",
            sid(3, 3.0),
            0.067,
            0.068,
            student(3, 3),
        ),
        task(
            "student-identity-5-5-2",
            sid(5, 2.0),
            0.195,
            0.201,
            student(5, 2),
        ),
        task(
            "student-identity-5-5-3",
            sid(5, 3.0),
            0.144,
            0.156,
            student(5, 3),
        ),
        task(
            "normal_cdf-multinormal-sparse-3-3-2-2.0",
            sparse_mi,
            0.907,
            0.878,
            mapped(sparse(3), normal_cdf),
        ),
        task(
            "normal_cdf-multinormal-sparse-5-5-2-2.0",
            sparse_mi,
            0.723,
            0.676,
            mapped(sparse(5), normal_cdf),
        ),
        task(
            "normal_cdf-multinormal-sparse-25-25-2-2.0",
            sparse_mi,
            0.206,
            0.182,
            mapped(sparse(25), normal_cdf),
        ),
        task(
            "half_cube-multinormal-sparse-3-3-2-2.0",
            sparse_mi,
            0.869,
            0.826,
            mapped(sparse(3), half_cube),
        ),
        task(
            "half_cube-multinormal-sparse-5-5-2-2.0",
            sparse_mi,
            0.674,
            0.621,
            mapped(sparse(5), half_cube),
        ),
        task(
            "half_cube-multinormal-sparse-25-25-2-2.0",
            sparse_mi,
            0.185,
            0.167,
            mapped(sparse(25), half_cube),
        ),
        task(
            "spiral-multinormal-sparse-3-3-2-2.0",
            sparse_mi,
            0.704,
            0.647,
            spiral(sparse(3)),
        ),
        task(
            "spiral-multinormal-sparse-5-5-2-2.0",
            sparse_mi,
            0.561,
            0.508,
            spiral(sparse(5)),
        ),
        task(
            "spiral-multinormal-sparse-25-25-2-2.0",
            sparse_mi,
            0.184,
            0.166,
            spiral(sparse(25)),
        ),
        task(
            "spiral-normal_cdf-multinormal-sparse-3-3-2-2.0",
            sparse_mi,
            0.885,
            0.849,
            spiral(mapped(sparse(3), normal_cdf)),
        ),
        task(
            "spiral-normal_cdf-multinormal-sparse-5-5-2-2.0",
            sparse_mi,
            0.698,
            0.647,
            spiral(mapped(sparse(5), normal_cdf)),
        ),
        task(
            "spiral-normal_cdf-multinormal-sparse-25-25-2-2.0",
            sparse_mi,
            0.200,
            0.176,
            spiral(mapped(sparse(25), normal_cdf)),
        ),
        task(
            "asinh-student-identity-2-2-1",
            sid(2, 1.0),
            0.397,
            0.365,
            mapped(student(2, 1), f64::asinh),
        ),
        task(
            "asinh-student-identity-3-3-2",
            sid(3, 2.0),
            0.184,
            0.165,
            mapped(student(3, 2), f64::asinh),
        ),
        task(
            "asinh-student-identity-5-5-2",
            sid(5, 2.0),
            0.237,
            0.233,
            mapped(student(5, 2), f64::asinh),
        ),
    ]
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let sd = if v.len() > 1 {
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
    } else {
        0.0
    };
    (m, sd)
}

/// ✔ when |log(estimate / truth)| < log 1.5 (bmi's "solved" criterion, on the mean).
fn within(est: f64, truth: f64) -> &'static str {
    if est > 0.0 && (est / truth).ln().abs() < 1.5f64.ln() {
        "✔"
    } else {
        "✘"
    }
}

fn table(filter: Option<&str>) {
    let seeds = 3u64;
    println!("KSG (Euclidean per space, max across, standardised), N = {N_TABLE}, {seeds} seeds; bmi = estimators-anchors.md §8.3 (bmi 0.1.3, 5 seeds, other samples); trust = the service's own checks on seed 0 (ks = [5, 10] with its subsampling interval)");
    println!(
        "{:<50} {:>7} {:>16} {:>7} {:>16} {:>7} {:>5} {:>8}  trust",
        "task", "true", "ours K5 mean±sd", "bmi K5", "ours K10 mean±sd", "bmi K10", "×1.5", "s/fit"
    );
    let t_all = Instant::now();
    // (meets ×1.5 on the ensemble mean?, reliability) per task
    let mut tally: Vec<(bool, String)> = Vec::new();
    for t in tasks() {
        if filter.is_some_and(|f| !t.name.contains(f)) {
            continue;
        }
        let mut v5 = Vec::new();
        let mut v10 = Vec::new();
        let mut secs = 0.0;
        for s in 0..seeds {
            let (x, y) = (t.sampler)(s);
            let t0 = Instant::now();
            let (_, per) = ksg_bmi(x.view(), y.view(), &[5, 10]);
            secs += t0.elapsed().as_secs_f64();
            v5.push(per[0]);
            v10.push(per[1]);
        }
        let ((m5, s5), (m10, s10)) = (mean_sd(&v5), mean_sd(&v10));
        // The service's result on seed 0 with its interval and checks.
        let (x, y) = (t.sampler)(0);
        let p = ksg::Params {
            metric: "euclidean_per_space".into(),
            ks: vec![5, 10],
            ..Default::default()
        };
        let out = ksg::ksg(x.view(), y.view(), &p, &Control::none()).unwrap();
        let d = &out.diagnostics;
        let trust = format!(
            "{}{}",
            serde_json::to_value(d.reliability)
                .unwrap()
                .as_str()
                .unwrap_or("?"),
            if d.reasons.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    d.reasons
                        .iter()
                        .map(|r| r.code.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
        let ensemble = 0.5 * (m5 + m10);
        tally.push((
            within(ensemble, t.truth) == "✔",
            serde_json::to_value(d.reliability)
                .unwrap()
                .as_str()
                .unwrap_or("?")
                .to_string(),
        ));
        println!(
            "{:<50} {:>7.3} {:>16} {:>7.3} {:>16} {:>7.3} {:>2}/{} {:>8.2}  {trust}",
            t.name,
            t.truth,
            format!("{m5:.3} ± {s5:.3}"),
            t.bmi5,
            format!("{m10:.3} ± {s10:.3}"),
            t.bmi10,
            within(m5, t.truth),
            within(m10, t.truth),
            secs / seeds as f64
        );
    }
    println!("\ntrust against the ×1.5 criterion (KSG-5/10 ensemble mean):");
    for meets in [false, true] {
        let rows: Vec<&(bool, String)> = tally.iter().filter(|r| r.0 == meets).collect();
        let count = |w: &str| rows.iter().filter(|r| r.1 == w).count();
        println!(
            "  {} ×1.5 ({} tasks): unreliable {}, caution {}, ok {}",
            if meets { "meets " } else { "misses" },
            rows.len(),
            count("unreliable"),
            count("caution"),
            count("ok")
        );
    }
    println!("table: {:.1} s in all", t_all.elapsed().as_secs_f64());
}

/// The 12 tasks of the neural table of estimators-anchors.md §8.3, with bmi's InfoNCE, NWJ and
/// MINE values (one seed, bmi defaults).
const NEURAL_TASKS: [(&str, f64, f64, f64); 12] = [
    ("1v1-normal-0.75", 0.384, 0.375, 0.395),
    ("1v1-additive-0.1", 1.642, 1.675, 1.655),
    ("student-identity-1-1-1", 0.151, -0.379, 0.129),
    ("multinormal-dense-5-5-0.5", 0.553, 0.543, 0.576),
    ("multinormal-dense-25-25-0.5", 1.043, -0.001, 1.077),
    ("multinormal-sparse-5-5-2-2.0", 0.958, 0.936, 0.928),
    ("multinormal-sparse-25-25-2-2.0", 0.720, 0.794, 0.646),
    ("student-identity-5-5-2", 0.179, 0.029, 0.075),
    (
        "half_cube-multinormal-sparse-25-25-2-2.0",
        0.589,
        0.758,
        0.633,
    ),
    ("spiral-multinormal-sparse-5-5-2-2.0", 0.486, 0.494, 0.487),
    ("asinh-student-identity-5-5-2", 0.309, 0.008, 0.006),
    ("multinormal-dense-50-50-0.5", 1.169, 1.408, 1.477),
];

fn neural_table(filter: Option<&str>) {
    let all = tasks();
    println!("neural bounds, default params (N = {N_TABLE}, half held out), seed 0; bmi = estimators-anchors.md §8.3 (bmi defaults, 1 seed, other samples)");
    println!(
        "{:<42} {:>6} {:>15} {:>15} {:>15} {:>15}",
        "task", "true", "InfoNCE (bmi)", "NWJ (bmi)", "MINE (bmi)", "SMILE"
    );
    let t_all = Instant::now();
    for (name, nce, nwj, mine) in NEURAL_TASKS {
        if filter.is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let t = all
            .iter()
            .find(|t| t.name == name)
            .expect("task in the KSG list");
        let (x, y) = (t.sampler)(0);
        let mut cells = Vec::new();
        let mut secs = Vec::new();
        for (b, reference) in [
            ("infonce", Some(nce)),
            ("nwj", Some(nwj)),
            ("mine", Some(mine)),
            ("smile", None),
        ] {
            let bound = neural::Bound::from_id(b).unwrap();
            let t0 = Instant::now();
            let v = neural::estimate(
                bound,
                x.view(),
                y.view(),
                &neural::Params::default(),
                &Control::none(),
            )
            .map(|o| o.value)
            .unwrap_or(f64::NAN);
            secs.push(t0.elapsed().as_secs_f64());
            cells.push(match reference {
                Some(r) => format!("{v:.3} ({r:.3})"),
                None => format!("{v:.3}"),
            });
        }
        println!(
            "{:<42} {:>6.3} {:>15} {:>15} {:>15} {:>15}   s/fit: {}",
            name,
            t.truth,
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            secs.iter()
                .map(|s| format!("{s:.1}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    println!(
        "neural table: {:.1} s in all",
        t_all.elapsed().as_secs_f64()
    );
}

/// `--neural-sweep`: each neural bound's bias and spread against N and critic width on three
/// tasks with known truth (3 seeds each; 1 seed at N = 100 000): the evidence behind the bounds'
/// minimum N and their `caution` thresholds (benches/README.md).
fn neural_sweep() {
    type Sample = Box<dyn Fn(usize, u64) -> (Array2<f64>, Array2<f64>)>;
    let pair = |v: (Vec<f64>, Vec<f64>)| {
        let n = v.0.len();
        (
            Array2::from_shape_vec((n, 1), v.0).unwrap(),
            Array2::from_shape_vec((n, 1), v.1).unwrap(),
        )
    };
    let cov = dense_cov(5, 5, 0.5);
    let tasks: Vec<(&str, f64, Sample)> = vec![
        (
            "1v1 Gaussian rho 0.75",
            gaussian_pair_mi(0.75),
            Box::new(move |n, s| pair(gaussian_pair_sample(0.75, n, s))),
        ),
        (
            "5x5 dense Gaussian 0.5",
            gaussian_mi(&cov, 5),
            Box::new(move |n, s| gaussian_sample(&dense_cov(5, 5, 0.5), 5, n, s)),
        ),
        (
            "1v1 additive uniform 0.1",
            additive_uniform_mi(0.1),
            Box::new(move |n, s| pair(additive_uniform_sample(0.1, n, s))),
        ),
    ];
    println!("| task | truth | N | critic | bound | mean | bias | sd | caution share | s/fit |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let t_all = Instant::now();
    for (name, truth, sample) in &tasks {
        for n in [256usize, 1000, 5000, 20_000, 100_000] {
            let seeds = if n >= 100_000 { 1 } else { 3 };
            for hidden in [vec![8], vec![32, 32], vec![128, 128]] {
                if n >= 100_000 && hidden != vec![32, 32] {
                    continue;
                }
                for b in ["infonce", "mine", "nwj", "smile"] {
                    let bound = neural::Bound::from_id(b).unwrap();
                    let mut vals = Vec::new();
                    let mut caution = 0;
                    let t0 = Instant::now();
                    for s in 0..seeds {
                        let (x, y) = sample(n, 1000 + s);
                        let p = neural::Params {
                            hidden: hidden.clone(),
                            seed: s,
                            ..Default::default()
                        };
                        if let Ok(o) =
                            neural::estimate(bound, x.view(), y.view(), &p, &Control::none())
                        {
                            vals.push(o.value);
                            let codes: Vec<&str> = o
                                .diagnostics
                                .reasons
                                .iter()
                                .map(|r| r.code.as_str())
                                .filter(|c| *c != "not_a_bound")
                                .collect();
                            caution += usize::from(!codes.is_empty());
                        }
                    }
                    let secs = t0.elapsed().as_secs_f64() / seeds as f64;
                    let (m, sd) = if vals.is_empty() {
                        (f64::NAN, f64::NAN)
                    } else {
                        mean_sd(&vals)
                    };
                    println!(
                        "| {name} | {truth:.3} | {n} | {hidden:?} | {b} | {m:.3} | {:+.3} | {sd:.3} | {caution}/{} | {secs:.1} |",
                        m - truth,
                        vals.len()
                    );
                }
            }
        }
    }
    println!(
        "neural sweep: {:.0} s in all",
        t_all.elapsed().as_secs_f64()
    );
}
