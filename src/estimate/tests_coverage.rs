//! Coverage of every reported interval on known truths (see `coverage.rs` for the tasks). The
//! full study is ignored in the normal run because it takes minutes; `.ci/run` runs it, and its
//! table is in benches/README.md:
//!
//!     cargo test --lib coverage_study -- --ignored --nocapture
//!
//! Its promise: wherever an estimator's own checks say `ok`, its 95 % interval covers the truth
//! at least 93 % of the time (allowing 2 binomial standard errors of the measurement); where it
//! cannot promise that, the results say `caution` or `unreliable`. The fast tests below check one
//! configuration per interval family in every test run.

use super::coverage::{
    channel_mi, channel_sample, table_mi, table_semantic_mi, tally, Tally, World,
};
use super::rng::SplitMix64;
use super::{ce_bound, ksg, neural, pool, semantic, shannon, ClassInput, Control, Output};
use ndarray::{Array2, ArrayView2};

fn shannon_run(k: usize, acc: f64, n: usize, weights_sigma: f64) -> impl Fn(u64) -> Output {
    move |seed| {
        let (ys, ps) = channel_sample(k, acc, n, seed);
        let mut g = SplitMix64::new(seed ^ 0x77);
        let w: Vec<f64> = (0..n)
            .map(|_| (weights_sigma * g.normal_pair().0).exp())
            .collect();
        let input = ClassInput {
            labels: &ys,
            predictions: &ps,
            k,
            probabilities: None,
            weights: (weights_sigma > 0.0).then_some(w.as_slice()),
            truth_matrix: None,
        };
        shannon::shannon_mi(&input, &shannon::Params::default(), &Control::none()).unwrap()
    }
}

/// `batches` batches of `n` pooled: the pooled value and interval as an Output.
fn shannon_pooled_run(k: usize, acc: f64, n: usize, batches: usize) -> impl Fn(u64) -> Output {
    move |seed| {
        let stats: Vec<_> = (0..batches as u64)
            .map(|b| {
                let (ys, ps) = channel_sample(k, acc, n, seed + 7919 * b);
                let input = ClassInput {
                    labels: &ys,
                    predictions: &ps,
                    k,
                    probabilities: None,
                    weights: None,
                    truth_matrix: None,
                };
                shannon::shannon_mi(&input, &shannon::Params::default(), &Control::none())
                    .unwrap()
                    .sufficient
                    .unwrap()
            })
            .collect();
        let p = pool("shannon_mi", &stats, 0.95).unwrap();
        Output {
            value: p.value,
            interval: p.interval.map(|(low, high)| super::Interval {
                low,
                high,
                level: 0.95,
                method: String::new(),
                replicates: 0,
            }),
            n: n * batches,
            details: serde_json::Value::Null,
            sufficient: None,
            diagnostics: p.diagnostics.unwrap_or_default(),
        }
    }
}

fn world_run<'w>(w: &'w World, n: usize, mode: &'static str) -> impl Fn(u64) -> Output + 'w {
    let t = Array2::from_shape_fn((w.k, w.k), |(i, j)| if i == j { 1.0 } else { 0.3 });
    move |seed| {
        let (ys, ps, q) = w.sample(n, seed);
        let input = ClassInput {
            labels: &ys,
            predictions: &ps,
            k: w.k,
            probabilities: Some(q.view()),
            weights: None,
            truth_matrix: (mode == "truth_matrix").then(|| t.view()),
        };
        if mode == "ce_bound" {
            return ce_bound::ce_bound(&input, &ce_bound::Params::default(), &Control::none())
                .unwrap();
        }
        let p = semantic::Params {
            mode: mode.into(),
            seed,
            ..Default::default()
        };
        semantic::semantic_mi(&input, &p, &Control::none()).unwrap()
    }
}

fn world_truth(w: &World, mode: &str) -> f64 {
    let t = Array2::from_shape_fn((w.k, w.k), |(i, j)| if i == j { 1.0 } else { 0.3 });
    match mode {
        "probabilities" => w.semantic_mi(),
        "truth_matrix" => table_semantic_mi(&w.confusion(), &t),
        "lbi" => table_mi(&w.confusion()),
        "ce_bound" => w.ce_bound(),
        _ => unreachable!(),
    }
}

fn col(v: &[f64]) -> ArrayView2<'_, f64> {
    ArrayView2::from_shape((v.len(), 1), v).unwrap()
}

fn ksg_run(rho: f64, n: usize) -> impl Fn(u64) -> Output {
    move |seed| {
        let (x, y) = super::samplers::gaussian_pair_sample(rho, n, seed);
        let p = ksg::Params {
            seed,
            ..Default::default()
        };
        ksg::ksg(col(&x), col(&y), &p, &Control::none()).unwrap()
    }
}

/// Labels 0/1 with equal probability and a feature ~ N(±1, 1).
fn mixed_run(n: usize) -> impl Fn(u64) -> Output {
    move |seed| {
        let mut g = SplitMix64::new(seed);
        let mut labels = Vec::with_capacity(n);
        let mut x = Vec::with_capacity(n);
        for _ in 0..n {
            let l = g.below(2);
            labels.push(l as u32);
            x.push(g.normal_pair().0 + if l == 1 { 1.0 } else { -1.0 });
        }
        let p = ksg::mixed::Params {
            seed,
            ..Default::default()
        };
        ksg::mixed::mixed_ksg(col(&x), &labels, &p, &Control::none()).unwrap()
    }
}

/// I(L; X) for L uniform on {0, 1} and X | L ~ N(±1, 1): ln 2 − E[h(P(L|X))], by Simpson's rule.
fn two_gaussians_mi() -> f64 {
    let (a, b, m) = (-14.0f64, 14.0f64, 20_000usize);
    let h = (b - a) / m as f64;
    let f = |x: f64| {
        let phi = |u: f64| (-0.5 * u * u).exp() / (2.0 * std::f64::consts::PI).sqrt();
        let px = 0.5 * (phi(x - 1.0) + phi(x + 1.0));
        let p1 = 1.0 / (1.0 + (-2.0 * x).exp());
        let hb = |p: f64| {
            if p <= 0.0 || p >= 1.0 {
                0.0
            } else {
                -p * p.ln() - (1.0 - p) * (1.0 - p).ln()
            }
        };
        px * hb(p1)
    };
    let mut s = f(a) + f(b);
    for i in 1..m {
        s += f(a + i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
    }
    std::f64::consts::LN_2 - s * h / 3.0
}

/// A paired difference as an Output (value Δ, its interval).
fn delta_output(d: super::paired::PairedDelta, n: usize) -> Output {
    Output {
        value: d.value,
        interval: Some(super::Interval {
            low: d.low,
            high: d.high,
            level: d.level,
            method: String::new(),
            replicates: d.replicates,
        }),
        n,
        details: serde_json::Value::Null,
        sufficient: None,
        diagnostics: Default::default(),
    }
}

/// Paired Δ of shannon_mi: model A is the uniform-error channel (acc 0.7); model B replaces each
/// prediction by a uniformly random class with probability 0.2. B's channel is
/// P(ŷ|y) = 0.8·P_A(ŷ|y) + 0.2/K, so Δ = I(B) − I(A) is exact.
fn shannon_delta_truth(k: usize) -> f64 {
    let joint = |mix: f64| {
        Array2::from_shape_fn((k, k), |(i, j)| {
            let a = if i == j { 0.7 } else { 0.3 / (k - 1) as f64 };
            ((1.0 - mix) * a + mix / k as f64) / k as f64
        })
    };
    table_mi(&joint(0.2)) - table_mi(&joint(0.0))
}

fn shannon_delta_run(k: usize, n: usize) -> impl Fn(u64) -> Output {
    move |seed| {
        let (ys, pa) = channel_sample(k, 0.7, n, seed);
        let mut g = SplitMix64::new(seed ^ 0xB);
        let pb: Vec<u32> = pa
            .iter()
            .map(|&p| {
                if g.uniform() < 0.2 {
                    g.below(k) as u32
                } else {
                    p
                }
            })
            .collect();
        let a = ClassInput {
            labels: &ys,
            predictions: &pa,
            k,
            probabilities: None,
            weights: None,
            truth_matrix: None,
        };
        let b = ClassInput {
            predictions: &pb,
            ..a
        };
        let stat = |i: &ClassInput<'_>, _: bool| -> Result<f64, super::EstimateError> {
            let p = shannon::Params {
                bootstrap: 0,
                ..Default::default()
            };
            Ok(shannon::shannon_mi(i, &p, &Control::none())?.value)
        };
        let d = super::paired::paired_bootstrap(&b, &a, stat, 200, 0.95, seed, &Control::none())
            .unwrap();
        delta_output(d, n)
    }
}

/// Paired Δ of semantic_mi between two models of one world (same instances, same labels):
/// calibrated (τ = 1) and overconfident (τ = 1.5); Δ = SeMI(B) − SeMI(A) in the population.
fn semantic_delta_run(k: usize, n: usize) -> impl Fn(u64) -> Output {
    move |seed| {
        let (wa, wb) = (
            World::new(60, k, 2.0, 1.0, 5),
            World::new(60, k, 2.0, 1.5, 5),
        );
        let (ys, ps, qa) = wa.sample(n, seed);
        let (yb, _, qb) = wb.sample(n, seed);
        assert_eq!(ys, yb, "the same samples");
        let a = ClassInput {
            labels: &ys,
            predictions: &ps,
            k,
            probabilities: Some(qa.view()),
            weights: None,
            truth_matrix: None,
        };
        let b = ClassInput {
            probabilities: Some(qb.view()),
            ..a
        };
        let stat = |i: &ClassInput<'_>, _: bool| -> Result<f64, super::EstimateError> {
            let p = semantic::Params {
                bootstrap: 0,
                ..Default::default()
            };
            Ok(semantic::semantic_mi(i, &p, &Control::none())?.value)
        };
        let d = super::paired::paired_bootstrap(&b, &a, stat, 200, 0.95, seed, &Control::none())
            .unwrap();
        delta_output(d, n)
    }
}

/// Every configuration of the full study, cheapest first.
fn configurations(quick: bool) -> Vec<Box<dyn Fn() -> Tally + Send + Sync>> {
    let r = if quick { 100 } else { 400 };
    let mut c: Vec<Box<dyn Fn() -> Tally + Send + Sync>> = Vec::new();
    for k in [2usize, 10, 50] {
        for n in [200usize, 2000, 20000] {
            c.push(Box::new(move || {
                tally(
                    "shannon_mi",
                    &format!("channel K={k}, acc 0.7"),
                    n,
                    channel_mi(k, 0.7),
                    r,
                    shannon_run(k, 0.7, n, 0.0),
                )
            }));
        }
    }
    for (k, n, s) in [
        (2usize, 2000usize, 1.0f64),
        (10, 2000, 1.0),
        (10, 20000, 1.5),
    ] {
        c.push(Box::new(move || {
            tally(
                "shannon_mi weighted",
                &format!("channel K={k}, lognormal({s}) weights"),
                n,
                channel_mi(k, 0.7),
                r,
                shannon_run(k, 0.7, n, s),
            )
        }));
    }
    c.push(Box::new(move || {
        tally(
            "shannon_mi pooled",
            "10 batches, channel K=10",
            2000,
            channel_mi(10, 0.7),
            r,
            shannon_pooled_run(10, 0.7, 200, 10),
        )
    }));
    let rs = if quick { 100 } else { 200 };
    for (k, tau) in [(2usize, 1.0f64), (10, 1.5)] {
        for mode in ["probabilities", "truth_matrix", "lbi", "ce_bound"] {
            if k == 2 && mode != "probabilities" && mode != "ce_bound" {
                continue;
            }
            for n in [200usize, 2000, 20000] {
                c.push(Box::new(move || {
                    let w = World::new(60, k, 2.0, tau, 5);
                    let name = if mode == "ce_bound" {
                        "ce_bound".to_string()
                    } else {
                        format!("semantic_mi {mode}")
                    };
                    tally(
                        &name,
                        &format!("world K={k}, tau {tau}"),
                        n,
                        world_truth(&w, mode),
                        rs,
                        world_run(&w, n, mode),
                    )
                }));
            }
        }
    }
    for rho in [0.5f64, 0.9] {
        for n in [200usize, 2000] {
            c.push(Box::new(move || {
                tally(
                    "ksg",
                    &format!("Gaussian rho {rho}"),
                    n,
                    super::samplers::gaussian_pair_mi(rho),
                    rs,
                    ksg_run(rho, n),
                )
            }));
        }
    }
    for n in [200usize, 2000] {
        c.push(Box::new(move || {
            tally(
                "mixed_ksg",
                "labels 0/1, N(±1, 1)",
                n,
                two_gaussians_mi(),
                rs,
                mixed_run(n),
            )
        }));
    }
    // Each replication of a paired difference runs 2 × 200 estimates: fewer at N = 20 000.
    let rd_n = move |n: usize| match (quick, n) {
        (true, _) => 20,
        (false, n) if n >= 20_000 => 40,
        _ => 100,
    };
    for (k, n) in [(10usize, 2000usize), (10, 20000)] {
        c.push(Box::new(move || {
            tally(
                "shannon_mi paired Δ",
                &format!("channel K={k}: A acc 0.7, B 20 % random"),
                n,
                shannon_delta_truth(k),
                rd_n(n),
                shannon_delta_run(k, n),
            )
        }));
    }
    for n in [2000usize, 20000] {
        c.push(Box::new(move || {
            let truth = World::new(60, 10, 2.0, 1.5, 5).semantic_mi()
                - World::new(60, 10, 2.0, 1.0, 5).semantic_mi();
            tally(
                "semantic_mi paired Δ",
                "world K=10: tau 1.5 vs 1",
                n,
                truth,
                rd_n(n),
                semantic_delta_run(10, n),
            )
        }));
    }
    for bound in [
        neural::Bound::InfoNce,
        neural::Bound::Mine,
        neural::Bound::Nwj,
    ] {
        for mi in [0.5f64, 2.0, 4.0] {
            c.push(Box::new(move || {
                tally(
                    &format!("{} (optimal critic)", bound.id()),
                    &format!("Gaussian I={mi}"),
                    1250,
                    mi,
                    if quick { 40 } else { 100 },
                    move |seed| neural::optimal_critic_output(bound, mi, 1250, 417, seed),
                )
            }));
        }
    }
    c
}

/// Run the configurations on two threads and return their tallies in order.
fn run_all(configs: Vec<Box<dyn Fn() -> Tally + Send + Sync>>) -> Vec<Tally> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<(usize, Tally)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(f) = configs.get(i) else { break };
                let t = f();
                eprintln!("{}", t.row());
                out.lock().unwrap().push((i, t));
            });
        }
    });
    let mut v = out.into_inner().unwrap();
    v.sort_by_key(|x| x.0);
    v.into_iter().map(|x| x.1).collect()
}

/// Where the checks say `ok` (in at least 50 replications), coverage ≥ 0.93 minus 2 binomial
/// standard errors of the measurement.
fn promise_failures(tallies: &[Tally]) -> Vec<String> {
    tallies
        .iter()
        .filter(|t| t.ok >= 50)
        .filter_map(|t| {
            let c = t.ok_coverage()?;
            let slack = 2.0 * (0.95 * 0.05 / t.ok as f64).sqrt();
            (c < 0.93 - slack).then(|| {
                format!(
                    "{} {} N={}: coverage when ok {c:.3} over {} replications",
                    t.interval, t.task, t.n, t.ok
                )
            })
        })
        .collect()
}

#[test]
#[ignore = "the full coverage study takes several minutes; .ci/run runs it (cargo test --lib coverage_study -- --ignored --nocapture)"]
fn coverage_study() {
    let tallies = run_all(configurations(false));
    println!("{}", Tally::HEADER);
    for t in &tallies {
        println!("{}", t.row());
    }
    let failures = promise_failures(&tallies);
    assert!(
        failures.is_empty(),
        "intervals that break their promise:\n{}",
        failures.join("\n")
    );
}

/// One configuration per interval family, small enough for every test run: semantic MI in
/// probabilities mode (K = 10, miscalibrated model, N = 2000) and InfoNCE's one-sided bound
/// with the optimal critic at I = 2 nats. The Shannon one is `coverage_ten_class_n2000`.
#[test]
fn coverage_fast() {
    let w = World::new(60, 10, 2.0, 1.5, 5);
    let t = tally(
        "semantic_mi",
        "world",
        2000,
        w.semantic_mi(),
        100,
        world_run(&w, 2000, "probabilities"),
    );
    assert!((0.88..=1.0).contains(&t.coverage()), "{}", t.row());
    assert!(t.inside as f64 >= 0.95 * t.reps as f64, "{}", t.row());
    let t = tally("infonce", "Gaussian", 1250, 2.0, 40, |seed| {
        neural::optimal_critic_output(neural::Bound::InfoNce, 2.0, 1250, 417, seed)
    });
    assert!(t.coverage() >= 0.95, "{}", t.row());
}

/// The population values the study relies on, against independent computations: the channel
/// formula against the plug-in MI of its exact joint table, and the finite world's SeMI for a
/// calibrated model against the Shannon MI I(X; Y) over instances (equal when q = P).
#[test]
fn study_truths_are_right() {
    for k in [2usize, 10, 50] {
        let acc = 0.7;
        let joint = Array2::from_shape_fn((k, k), |(i, j)| {
            if i == j {
                acc / k as f64
            } else {
                (1.0 - acc) / ((k - 1) * k) as f64
            }
        });
        assert!((channel_mi(k, acc) - table_mi(&joint)).abs() < 1e-12);
    }
    let w = World::new(30, 4, 2.0, 1.0, 9);
    let joint = Array2::from_shape_fn((w.m, w.k), |(x, y)| w.p[[x, y]] / w.m as f64);
    assert!((w.semantic_mi() - table_mi(&joint)).abs() < 1e-12);
    // Closed form by a different route: I = h(1/2) − E h(P(L|X)) against 0.3368 nats
    // (estimators-anchors.md §0 item 7).
    assert!(
        (two_gaussians_mi() - 0.3368).abs() < 1e-4,
        "{}",
        two_gaussians_mi()
    );
    let _ = World::new(5, 2, 1.0, 1.0, 1).sample(10, 1);
}
