//! `cargo bench --bench cost_limits -- [--budget BYTES] [--n N] [--only ID] [--timeout SECS]`: for each
//! estimator and reference shape of the catalog, the largest K (or N) its cost bound accepts
//! under the per-job budget (default: the service's default, an eighth of this machine's
//! memory), and the heap peak of a real run there, each in a fresh process (counted by the
//! allocator of tests/counting/alloc.rs: the memory the run allocates beyond the batch, which is
//! what the bound promises).
//!
//! Reports, per case: the bound, the measured heap peak, their ratio, and the run time.
//! A case over `--timeout` (default 600 s) is reported as such. Exits 1 when a measured peak is
//! over its bound (the bound is a promise).
//!
//! `--quick`: a 16 MiB budget, N = 2000 and a 120 s timeout (a timeout fails too), so the
//! check runs in CI in a minute or two.

// The counting allocator (tests/counting/alloc.rs) is the one unsafe block.
#![allow(unsafe_code)]

use std::process::Command;
use std::time::{Duration, Instant};

use infoaudit::domain::batch::{Batch, BatchRequest};
use infoaudit::domain::estimators::{largest_at, Kind};
use infoaudit::estimate::rng::SplitMix64;
use infoaudit::estimate::{cost, Control};
use serde_json::{json, Value};

#[path = "../tests/counting/alloc.rs"]
mod counting;

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn vm_rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// A batch of the reference shape (`shape` as the catalog names it) with `value` in its free
/// dimension.
fn batch(kind: Kind, shape: &str, value: u64) -> Batch {
    let mut g = SplitMix64::new(7);
    let n = if let Some(rest) = shape.strip_prefix("N = ") {
        // The shape names its N ("N = 2000, probabilities").
        rest.split(',')
            .next()
            .and_then(|v| v.trim().parse().ok())
            .expect("the shape names its N")
    } else {
        value as usize
    };
    let b: Value = if shape.contains("multilabel") {
        let l = value as usize;
        let labels: Vec<Vec<u8>> = (0..n)
            .map(|_| (0..l).map(|_| u8::from(g.uniform() < 0.2)).collect())
            .collect();
        let scores: Vec<Vec<f64>> = (0..n)
            .map(|_| (0..l).map(|_| g.uniform()).collect())
            .collect();
        json!({"task": "multilabel", "labels": labels, "scores": scores})
    } else if shape.starts_with("N = ") {
        let k = value as usize;
        let labels: Vec<usize> = (0..n).map(|_| g.below(k)).collect();
        let preds: Vec<usize> = labels
            .iter()
            .map(|&y| if g.uniform() < 0.7 { y } else { g.below(k) })
            .collect();
        if shape.contains("probabilities") {
            let probs: Vec<Vec<f64>> = preds
                .iter()
                .map(|&p| {
                    let mut row = vec![0.3 / (k as f64 - 1.0).max(1.0); k];
                    row[p] = if k == 1 { 1.0 } else { 0.7 };
                    row
                })
                .collect();
            json!({"task": "multiclass", "classes": (0..k).map(|j| j.to_string()).collect::<Vec<_>>(), "labels": labels, "probabilities": probs})
        } else {
            json!({"task": "multiclass", "classes": (0..k).map(|j| j.to_string()).collect::<Vec<_>>(), "labels": labels, "predictions": preds})
        }
    } else {
        // "dx = dy = D", or "K = 10, 16 features"
        let d: usize = if shape.contains("16") { 16 } else { 1 };
        let x: Vec<Vec<f64>> = (0..n)
            .map(|_| (0..d).map(|_| g.normal_pair().0).collect())
            .collect();
        if kind == Kind::MixedKsg {
            let labels: Vec<usize> = (0..n).map(|_| g.below(10)).collect();
            json!({"task": "multiclass", "classes": (0..10).map(|j| j.to_string()).collect::<Vec<_>>(), "labels": labels, "predictions": labels, "x": x})
        } else {
            let y: Vec<Vec<f64>> = x
                .iter()
                .map(|r| {
                    r.iter()
                        .map(|v| 0.8 * v + 0.6 * g.normal_pair().0)
                        .collect()
                })
                .collect();
            json!({"task": "pairs", "x": x, "y": y})
        }
    };
    let req: BatchRequest = serde_json::from_value(b).expect("request");
    req.validate().expect("valid").batch
}

fn child(args: &[String]) {
    let kind = Kind::parse(&arg(args, "--estimator").unwrap()).unwrap();
    let shape = arg(args, "--shape").unwrap();
    let value: u64 = arg(args, "--value").unwrap().parse().unwrap();
    let b = batch(kind, &shape, value);
    // R(G)'s memory does not depend on its iteration cap; its run time does (up to 20 000 per
    // point of the s grid): measured with a cap of 20.
    let params = kind
        .canonical_params(if kind == Kind::RgCurve {
            json!({"max_iter": 20})
        } else {
            json!({})
        })
        .unwrap();
    // The heap peak the run adds (what the bound promises), counted by the allocator; RSS
    // would also count the freed-but-kept memory of building the batch.
    let base = vm_rss();
    let t = Instant::now();
    let (r, peak) =
        counting::peak_of(|| infoaudit::compute::compute(kind.id(), &params, &b, &Control::none()));
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{} {} {secs:.2} {}",
        peak,
        base,
        if r.is_ok() { "ok" } else { "refused" }
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--child") {
        return child(&args);
    }
    let quick = args.iter().any(|a| a == "--quick");
    let budget = arg(&args, "--budget")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            if quick {
                16 << 20
            } else {
                infoaudit::config::machine_memory_bytes().map_or(1 << 30, |m| m / 8)
            }
        });
    let only = arg(&args, "--only");
    // Samples in the shapes whose free dimension is K or L.
    let n: u64 = arg(&args, "--n")
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 2_000 } else { 100_000 });
    let timeout = Duration::from_secs(
        arg(&args, "--timeout")
            .and_then(|v| v.parse().ok())
            .unwrap_or(if quick { 120 } else { 600 }),
    );
    let mut broken = Vec::new();
    let limits = cost::Limits {
        memory_bytes: budget,
        max_classes: arg(&args, "--max-classes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000),
    };
    println!(
        "per-job budget {} ({budget} bytes)",
        cost::human_bytes(budget)
    );
    println!(
        "{:<12} {:<42} {:>3} {:>9} {:>11} {:>11} {:>6} {:>9}",
        "estimator", "shape", "dim", "largest", "bound", "heap peak", "ratio", "seconds"
    );
    let me = std::env::current_exe().unwrap();
    for kind in Kind::ALL {
        if only.as_deref().is_some_and(|o| o != kind.id()) {
            continue;
        }
        if matches!(kind, Kind::Mine | Kind::Nwj | Kind::Smile) && only.is_none() {
            // Same cost function as infonce.
            continue;
        }
        for mut l in largest_at(kind, &limits, n) {
            if l.value == 0 && quick {
                // The estimator's fixed overhead is over the quick budget (the neural bounds):
                // its case at four times the budget.
                let wider = cost::Limits {
                    memory_bytes: budget * 4,
                    ..limits
                };
                if let Some(w) = largest_at(kind, &wider, n)
                    .into_iter()
                    .find(|w| w.shape == l.shape)
                {
                    l = w;
                }
            }
            if l.value == 0 {
                println!(
                    "{:<12} {:<42} {:>3}   nothing fits the budget",
                    kind.id(),
                    l.shape,
                    l.dimension
                );
                continue;
            }
            let params = kind.canonical_params(json!({})).unwrap();
            // The bound at the largest value, for the table (the shape of a small batch of the
            // same form, with the free dimension set).
            let small = batch(kind, &l.shape, 2);
            let mut shape = infoaudit::domain::estimators::shape_of(&small);
            match l.dimension {
                "K" => shape.k = l.value,
                "L" => shape.l = l.value,
                _ => shape.n = l.value,
            }
            let bound = cost::cost(kind.id(), &shape, &params).unwrap().bytes;
            // Numbers the batch itself holds: past a point it cannot be built here (nor sent
            // within the upload limit), and the free dimension was limited by the input.
            let values = shape.n as f64
                * (if shape.probabilities {
                    shape.k as f64
                } else {
                    2.0
                } + 2.0 * shape.l as f64
                    + (shape.dx + shape.dy) as f64);
            if values > 5e7 {
                println!(
                    "{:<12} {:<42} {:>3} {:>9} {:>11} {:>11}   (a batch of {:.1e} numbers is not built)",
                    kind.id(),
                    l.shape,
                    l.dimension,
                    l.value,
                    cost::human_bytes(bound),
                    "-",
                    values
                );
                continue;
            }
            let mut c = Command::new(&me);
            c.args([
                "--child",
                "--estimator",
                kind.id(),
                "--shape",
                &l.shape,
                "--value",
                &l.value.to_string(),
            ]);
            let out = run_with_timeout(c, timeout);
            let (peak, secs, note) = match out {
                Some(line) => {
                    let f: Vec<&str> = line.split_whitespace().collect();
                    (
                        f.first().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0),
                        f.get(2).cloned().unwrap_or("?").to_string(),
                        f.get(3).cloned().unwrap_or("").to_string(),
                    )
                }
                None => (0, format!(">{}", timeout.as_secs()), "timeout".into()),
            };
            // A peak of 0: the child printed nothing (it crashed).
            if peak > bound || peak == 0 || (quick && note == "timeout") {
                broken.push(format!(
                    "{} {} {}={}: peak {peak} bytes, bound {bound} bytes {note}",
                    kind.id(),
                    l.shape,
                    l.dimension,
                    l.value
                ));
            }
            println!(
                "{:<12} {:<42} {:>3} {:>9} {:>11} {:>11} {:>6.2} {:>9} {note}",
                kind.id(),
                l.shape,
                l.dimension,
                l.value,
                cost::human_bytes(bound),
                cost::human_bytes(peak),
                peak as f64 / bound as f64,
                secs,
            );
        }
    }
    if !broken.is_empty() {
        eprintln!("cost bounds broken:");
        for b in &broken {
            eprintln!("  {b}");
        }
        std::process::exit(1);
    }
}

fn run_with_timeout(mut c: Command, timeout: Duration) -> Option<String> {
    let mut child = c
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("child");
    let start = Instant::now();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            let mut s = String::new();
            use std::io::Read;
            child.stdout.take()?.read_to_string(&mut s).ok()?;
            return Some(s.trim().to_string());
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
