//! Tests of `shannon` (expected numbers cite their source).
#![allow(clippy::approx_constant)] // expected values are quoted to 6 decimals from the references
use super::*;
use crate::estimate::contingency::Table;
use crate::estimate::rng::SplitMix64;
use crate::estimate::{ClassInput, Control};
use proptest::prelude::*;

fn table(rows: &[&[f64]]) -> Table {
    let kx = rows.len();
    let ky = rows[0].len();
    let d: Vec<f64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Table::from_dense(kx, ky, &d)
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

/// estimators-anchors.md §7.2 "Exact small tables (sklearn 1.9.1 + my formulas)".
#[test]
fn anchors_7_2_small_tables() {
    // (table, MI, H(X), H(Y), E[MI], NMI arith/geom/min/max, AMI arith/max, VI, MM, JK)
    #[allow(clippy::type_complexity)]
    let cases: Vec<(Table, [f64; 13])> = vec![
        (
            table(&[&[2.0, 1.0], &[1.0, 2.0]]),
            [
                0.056633, 0.693147, 0.693147, 0.120284, 0.081704, 0.081704, 0.081704, 0.081704,
                -0.111111, -0.111111, 1.273028, -0.026700, -0.191522,
            ],
        ),
        (
            table(&[&[10.0, 0.0], &[0.0, 10.0]]),
            [
                0.693147, 0.693147, 0.693147, 0.027070, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0,
                0.718147, 0.719475,
            ],
        ),
        (
            table(&[&[5.0, 5.0], &[5.0, 5.0]]),
            [
                0.0, 0.693147, 0.693147, 0.027070, 0.0, 0.0, 0.0, 0.0, -0.040641, -0.040641,
                1.386294, -0.025000, -0.029342,
            ],
        ),
        (
            table(&[&[20.0, 3.0, 2.0], &[4.0, 15.0, 6.0], &[1.0, 5.0, 19.0]]),
            [
                0.350998, 1.098612, 1.096477, 0.027696, 0.319803, 0.319803, 0.320115, 0.319492,
                0.302194, 0.301893, 1.493093, 0.324331, 0.313844,
            ],
        ),
    ];
    for (t, e) in cases {
        let tol = 1e-6;
        let (hx, hy) = margin_entropies(&t);
        assert!(close(plugin_mi(&t), e[0], tol), "MI {}", plugin_mi(&t));
        assert!(close(hx, e[1], tol) && close(hy, e[2], tol));
        assert!(close(expected_mi(&t), e[3], tol), "EMI {}", expected_mi(&t));
        assert!(close(expected_mi_naive(&t), e[3], tol));
        for (avg, idx) in [("arithmetic", 4), ("geometric", 5), ("min", 6), ("max", 7)] {
            assert!(
                close(nmi(&t, avg), e[idx], tol),
                "NMI {avg} {}",
                nmi(&t, avg)
            );
        }
        assert!(
            close(ami(&t, "arithmetic"), e[8], tol),
            "AMI {}",
            ami(&t, "arithmetic")
        );
        assert!(close(ami(&t, "max"), e[9], tol));
        assert!(close(vi(&t), e[10], tol));
        assert!(
            close(miller_madow(&t), e[11], tol),
            "MM {}",
            miller_madow(&t)
        );
        let (jk, _) = jackknife_integer(&t).unwrap();
        assert!(close(jk, e[12], tol), "JK {jk}");
    }
}

/// BSC p = 0.1 draw from estimators-anchors.md §7.4: x = uniform() < 0.5, y = x ^ (uniform() < 0.1).
fn bsc_counts(n: usize, seed: u64) -> Table {
    let mut g = SplitMix64::new(seed);
    let mut c = [0.0; 4];
    for _ in 0..n {
        let x = usize::from(g.uniform() < 0.5);
        let y = x ^ usize::from(g.uniform() < 0.1);
        c[2 * x + y] += 1.0;
    }
    Table::from_dense(2, 2, &c)
}

/// 10-class classifier draw from §7.4: y = below(10); if uniform() < 0.7 ŷ = y else ŷ = (y+1+below(9)) % 10.
pub(crate) fn classifier_sample(n: usize, seed: u64) -> (Vec<u32>, Vec<u32>) {
    let mut g = SplitMix64::new(seed);
    let mut ys = Vec::with_capacity(n);
    let mut ps = Vec::with_capacity(n);
    for _ in 0..n {
        let y = g.below(10);
        let p = if g.uniform() < 0.7 {
            y
        } else {
            (y + 1 + g.below(9)) % 10
        };
        ys.push(y as u32);
        ps.push(p as u32);
    }
    (ys, ps)
}

/// estimators-anchors.md §7.3 "BSC p=0.1 (seed 42)".
#[test]
fn anchors_7_3_bsc() {
    let cases = [
        (100, [47.0, 6.0, 4.0, 43.0], 0.368966, 0.363966, 0.363227),
        (
            1000,
            [451.0, 53.0, 44.0, 452.0],
            0.375043,
            0.374543,
            0.374536,
        ),
        (
            10000,
            [4457.0, 479.0, 503.0, 4561.0],
            0.372013,
            0.371963,
            0.371963,
        ),
    ];
    for (n, counts, mi, mm, jk) in cases {
        let t = bsc_counts(n, 42);
        assert_eq!(t.to_dense(), counts.to_vec(), "N={n}");
        assert!(close(plugin_mi(&t), mi, 1e-6));
        assert!(close(miller_madow(&t), mm, 1e-6));
        assert!(close(jackknife_integer(&t).unwrap().0, jk, 1e-6));
    }
}

/// estimators-anchors.md §7.3 "10-class classifier, accuracy 0.7 (seed 7)".
#[test]
fn anchors_7_3_ten_class() {
    let cases = [
        (200, 1.401012, 1.326012, 1.248118, 0.568835, 0.613631),
        (2000, 1.094534, 1.074284, 1.072639, 0.471203, 0.475909),
        (20000, 1.049405, 1.047380, 1.047368, 0.455341, 0.455820),
    ];
    for (n, mi, mm, jk, a, nm) in cases {
        let (ys, ps) = classifier_sample(n, 7);
        let input = ClassInput {
            labels: &ys,
            predictions: &ps,
            k: 10,
            probabilities: None,
            weights: None,
            truth_matrix: None,
        };
        let params = Params {
            bootstrap: 50,
            ..Params::default()
        };
        let out = shannon_mi(&input, &params, &Control::none()).unwrap();
        let d = &out.details;
        assert!(close(out.value, mi, 1e-6), "N={n} MI {}", out.value);
        assert!(close(d["miller_madow"].as_f64().unwrap(), mm, 1e-6));
        assert!(close(d["jackknife"].as_f64().unwrap(), jk, 1e-6));
        assert!(
            close(d["ami"].as_f64().unwrap(), a, 1e-6),
            "AMI {}",
            d["ami"]
        );
        assert!(close(d["nmi"].as_f64().unwrap(), nm, 1e-6));
        let iv = out.interval.unwrap();
        assert!(iv.low < iv.high && iv.replicates == 50);
        assert_eq!(out.n, n);
    }
}

/// semantic-information-spec.md §4.3 "Plug-in MI bias (first order) for this 3×3 with N = 100:
/// (2·2)/(2·100) = 0.020000 nats" — Example 2 counts, all 9 cells but one occupied.
#[test]
fn spec_miller_madow_3x3() {
    let t = table(&[&[30.0, 5.0, 0.0], &[4.0, 25.0, 6.0], &[1.0, 4.0, 25.0]]);
    // m_xy = 8 occupied cells here, so MM's correction is (8−3−3+1)/200 = 0.015; the spec line
    // uses the independence form (Kx−1)(Ky−1)/(2N) = 0.02 for all 9 cells.
    let full = table(&[&[29.0, 5.0, 1.0], &[4.0, 25.0, 6.0], &[1.0, 4.0, 25.0]]);
    assert!(close(
        plugin_mi(&full) - miller_madow(&full),
        0.020000,
        1e-12
    ));
    assert!(close(plugin_mi(&t) - miller_madow(&t), 0.015, 1e-12));
    // Shannon MI of Example 2 = 0.745693 bits.
    assert!(close(
        plugin_mi(&t) / std::f64::consts::LN_2,
        0.745693,
        1e-6
    ));
}

#[test]
fn output_shape_and_reproducibility() {
    let (ys, ps) = classifier_sample(500, 3);
    let input = ClassInput {
        labels: &ys,
        predictions: &ps,
        k: 10,
        probabilities: None,
        weights: None,
        truth_matrix: None,
    };
    let p = Params::default();
    let a = shannon_mi(&input, &p, &Control::none()).unwrap();
    let b = shannon_mi(&input, &p, &Control::none()).unwrap();
    assert_eq!(
        a.interval.as_ref().unwrap().low,
        b.interval.as_ref().unwrap().low
    );
    let s = serde_json::to_string(&a.details).unwrap();
    assert!(!s.contains("NaN"));
    for key in [
        "miller_madow",
        "jackknife",
        "nmi",
        "ami",
        "vi",
        "h_true",
        "h_pred",
        "confusion",
        "occupied_cells",
        "bias_ratio",
        "interval_statistic",
    ] {
        assert!(a.details.get(key).is_some(), "missing {key}");
    }
    // Pooling two halves equals the whole.
    let (h1, h2) = (250, 500);
    let half = |r: std::ops::Range<usize>| {
        let inp = ClassInput {
            labels: &ys[r.clone()],
            predictions: &ps[r],
            k: 10,
            probabilities: None,
            weights: None,
            truth_matrix: None,
        };
        shannon_mi(
            &inp,
            &Params {
                bootstrap: 0,
                ..Params::default()
            },
            &Control::none(),
        )
        .unwrap()
        .sufficient
        .unwrap()
    };
    let pooled = crate::estimate::pool("shannon_mi", &[half(0..h1), half(h1..h2)]).unwrap();
    assert!(close(pooled, a.value, 1e-12));
    // Unit weights give the same value; weighted jackknife agrees with the integer one.
    let w = vec![2.5; 500];
    let inw = ClassInput {
        weights: Some(&w),
        ..input
    };
    let c = shannon_mi(
        &inw,
        &Params {
            bootstrap: 0,
            ..Params::default()
        },
        &Control::none(),
    )
    .unwrap();
    assert!(close(c.value, a.value, 1e-12));
    assert!(close(
        c.details["jackknife"].as_f64().unwrap(),
        a.details["jackknife"].as_f64().unwrap(),
        1e-9
    ));
    assert!(c.details["ami"].is_null() && c.details["ami_reason"].is_string());
}

#[test]
fn invalid_inputs_and_params() {
    let ys = [0u32, 1];
    let ps = [0u32, 5];
    let input = ClassInput {
        labels: &ys,
        predictions: &ps,
        k: 2,
        probabilities: None,
        weights: None,
        truth_matrix: None,
    };
    match shannon_mi(&input, &Params::default(), &Control::none()) {
        Err(EstimateError::Invalid(m)) => assert!(m.contains("prediction of sample 1")),
        other => panic!("{other:?}"),
    }
    let bad = Params {
        confidence: 1.0,
        ..Params::default()
    };
    assert!(bad.validate().unwrap_err().contains("confidence"));
    let bad = Params {
        ami_average: "median".into(),
        ..Params::default()
    };
    assert!(bad.validate().unwrap_err().contains("ami_average"));
    let p: Params = serde_json::from_str(r#"{"bootstrap": 10}"#).unwrap();
    assert_eq!((p.bootstrap, p.confidence), (10, 0.95));
    assert!(serde_json::from_str::<Params>(r#"{"bootstrapp": 10}"#).is_err());
}

#[test]
fn cancellation_is_honoured() {
    let (ys, ps) = classifier_sample(200, 1);
    let input = ClassInput {
        labels: &ys,
        predictions: &ps,
        k: 10,
        probabilities: None,
        weights: None,
        truth_matrix: None,
    };
    let yes = || true;
    let ctl = Control {
        progress: &|_| {},
        cancelled: &yes,
    };
    assert!(matches!(
        shannon_mi(&input, &Params::default(), &ctl),
        Err(EstimateError::Cancelled)
    ));
}

#[test]
fn multilabel_binary_relevance() {
    // semantic-information-spec.md §4.5: per-label Shannon MI of the 0.5-thresholded decisions:
    // 1, 1, 0 bits.
    let y = ndarray::arr2(&[
        [1., 0., 0.],
        [1., 1., 0.],
        [1., 0., 0.],
        [0., 1., 0.],
        [0., 1., 1.],
        [1., 0., 0.],
        [0., 0., 0.],
        [0., 1., 0.],
    ]);
    let s = ndarray::arr2(&[
        [0.90, 0.20, 0.05],
        [0.80, 0.70, 0.10],
        [0.60, 0.10, 0.02],
        [0.30, 0.80, 0.05],
        [0.20, 0.60, 0.40],
        [0.70, 0.30, 0.05],
        [0.10, 0.20, 0.10],
        [0.40, 0.55, 0.30],
    ]);
    let input = MultilabelInput {
        labels: y.view(),
        scores: s.view(),
        weights: None,
    };
    let out = shannon_mi_multilabel(&input, &Params::default(), &Control::none()).unwrap();
    let ln2 = std::f64::consts::LN_2;
    let per = out.details["per_label"].as_array().unwrap();
    let mis: Vec<f64> = per
        .iter()
        .map(|d| d["mi"].as_f64().unwrap() / ln2)
        .collect();
    assert!(close(mis[0], 1.0, 1e-6) && close(mis[1], 1.0, 1e-6) && close(mis[2], 0.0, 1e-6));
    assert!(close(out.value, 2.0 * ln2, 1e-12));
    assert!(out.interval.is_some());
    let pooled = crate::estimate::pool(
        "shannon_mi",
        &[out.sufficient.clone().unwrap(), out.sufficient.unwrap()],
    )
    .unwrap();
    assert!(close(pooled, out.value, 1e-12));
}

fn arb_table(max_k: usize, max_c: u32) -> impl Strategy<Value = Table> {
    (1..=max_k, 1..=max_k).prop_flat_map(move |(kx, ky)| {
        prop::collection::vec(0..=max_c, kx * ky).prop_filter_map("empty", move |v| {
            let d: Vec<f64> = v.iter().map(|&x| x as f64).collect();
            let t = Table::from_dense(kx, ky, &d);
            (t.total >= 2.0).then_some(t)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn mi_bounds_and_symmetry(t in arb_table(6, 12)) {
        let mi = plugin_mi(&t);
        let (hx, hy) = margin_entropies(&t);
        prop_assert!(mi >= -1e-12);
        prop_assert!(mi <= hx.min(hy) + 1e-12);
        let tt = t.transpose();
        prop_assert!((plugin_mi(&tt) - mi).abs() < 1e-12);
        prop_assert!((ami(&tt, "arithmetic") - ami(&t, "arithmetic")).abs() < 1e-9);
        prop_assert!((expected_mi(&tt) - expected_mi(&t)).abs() < 1e-12);
    }

    #[test]
    fn label_permutation_invariance(t in arb_table(5, 10), seed in 0u64..1000) {
        let mut g = SplitMix64::new(seed);
        let mut pr: Vec<u32> = (0..t.kx as u32).collect();
        let mut pc: Vec<u32> = (0..t.ky as u32).collect();
        for i in (1..pr.len()).rev() { let j = g.below(i + 1); pr.swap(i, j); }
        for i in (1..pc.len()).rev() { let j = g.below(i + 1); pc.swap(i, j); }
        let e = (0..t.nnz()).map(|i| (pr[t.rows[i] as usize], pc[t.cols[i] as usize], t.counts[i])).collect();
        let p = Table::from_entries(t.kx, t.ky, e);
        prop_assert!((plugin_mi(&p) - plugin_mi(&t)).abs() < 1e-12);
        prop_assert!((miller_madow(&p) - miller_madow(&t)).abs() < 1e-12);
        prop_assert!((jackknife_integer(&p).unwrap().0 - jackknife_integer(&t).unwrap().0).abs() < 1e-10);
        prop_assert!((ami(&p, "max") - ami(&t, "max")).abs() < 1e-10);
    }

    #[test]
    fn jackknife_fast_equals_naive(t in arb_table(5, 9)) {
        let fast = jackknife_integer(&t).unwrap().0;
        let naive = jackknife_naive(&t);
        prop_assert!((fast - naive).abs() < 1e-9, "{} vs {}", fast, naive);
    }

    #[test]
    fn emi_fast_equals_naive(t in arb_table(6, 15)) {
        let fast = expected_mi(&t);
        let naive = expected_mi_naive(&t);
        prop_assert!((fast - naive).abs() < 1e-12, "{} vs {}", fast, naive);
    }
}

#[test]
fn emi_fast_equals_naive_large() {
    // Bigger margins exercise the pruning (many negligible hypergeometric tails).
    let (ys, ps) = classifier_sample(20_000, 9);
    let t = Table::from_pairs(&ys, &ps, 10, 10, None);
    let (f, n) = (expected_mi(&t), expected_mi_naive(&t));
    // Both sum the same ln-gamma terms in different orders; ~1e-10 relative is the floating-point
    // floor of exp(sums of ln-gammas of size ~1e5).
    assert!((f - n).abs() < 1e-9 * n, "{f} vs {n}");
}

/// Coverage of the nominal 95 % basic-bootstrap-on-Miller–Madow interval: 10×10 channel,
/// accuracy 0.7 with uniform errors (truth 1.032553 nats, estimators-anchors.md §7.1), N = 2000,
/// 200 replications, B = 300. The anchors (§6) measured 0.88 for this scheme.
/// Run with `cargo test --release -- --ignored coverage --nocapture`.
#[test]
#[ignore]
fn coverage_basic_bootstrap_mm() {
    let truth = 1.032553;
    let reps = 200;
    let mut hits = 0;
    for r in 0..reps {
        let (ys, ps) = classifier_sample(2000, 10_000 + r as u64);
        let input = ClassInput {
            labels: &ys,
            predictions: &ps,
            k: 10,
            probabilities: None,
            weights: None,
            truth_matrix: None,
        };
        let params = Params {
            bootstrap: 300,
            seed: r as u64,
            ..Params::default()
        };
        let iv = shannon_mi(&input, &params, &Control::none())
            .unwrap()
            .interval
            .unwrap();
        if iv.low <= truth && truth <= iv.high {
            hits += 1;
        }
    }
    let coverage = hits as f64 / reps as f64;
    eprintln!(
        "coverage of the 95% basic bootstrap on Miller-Madow (N=2000, 10x10, acc 0.7): {coverage}"
    );
    assert!(coverage > 0.8, "coverage {coverage}");
}
