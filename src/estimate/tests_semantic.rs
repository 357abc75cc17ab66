//! Tests of `semantic` (spec = semantic-information-spec.md §4; values there are in bits).
#![allow(clippy::approx_constant)]
use super::*;
use crate::estimate::contingency::Table;
use crate::estimate::rng::SplitMix64;
use crate::estimate::{pool, ClassInput, Control};
use ndarray::{arr2, Array2};
use proptest::prelude::*;

const LN2: f64 = std::f64::consts::LN_2;

fn bits(x: f64) -> f64 {
    x / LN2
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

/// Expand a count table into per-sample (label, prediction) pairs.
fn samples_from_counts(c: &[&[usize]]) -> (Vec<u32>, Vec<u32>) {
    let (mut ys, mut ps) = (Vec::new(), Vec::new());
    for (i, row) in c.iter().enumerate() {
        for (j, &n) in row.iter().enumerate() {
            for _ in 0..n {
                ys.push(i as u32);
                ps.push(j as u32);
            }
        }
    }
    (ys, ps)
}

fn run(ys: &[u32], ps: &[u32], k: usize, t: Option<&Array2<f64>>, mode: &str) -> Output {
    let input = ClassInput {
        labels: ys,
        predictions: ps,
        k,
        probabilities: None,
        weights: None,
        truth_matrix: t.map(|t| t.view()),
    };
    let params = Params {
        mode: mode.into(),
        bootstrap: 100,
        ..Params::default()
    };
    semantic_mi(&input, &params, &Control::none()).unwrap()
}

fn per_class(out: &Output, key: &str) -> Vec<f64> {
    out.details["per_class"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d[key].as_f64().unwrap())
        .collect()
}

/// Spec §4.2 Example 1 (P(x,y) = [[.6,.1],[.05,.25]] = counts [[12,2],[1,5]] / 20).
#[test]
fn spec_example_1() {
    let (ys, ps) = samples_from_counts(&[&[12, 2], &[1, 5]]);
    let t1 = arr2(&[[1.0, 0.1], [0.2, 1.0]]);
    let out = run(&ys, &ps, 2, Some(&t1), "auto");
    let d = &out.details;
    assert!(close(bits(out.value), 0.311105, 1e-6));
    assert!(close(out.value, 0.215642, 1e-6));
    assert!(close(
        bits(d["shannon_mi"].as_f64().unwrap()),
        0.324890,
        1e-6
    ));
    let lp = per_class(&out, "logical_prob");
    assert!(close(lp[0], 0.76, 1e-12) && close(lp[1], 0.37, 1e-12));
    let kl = per_class(&out, "semantic_kl");
    assert!(close(bits(kl[0]), 0.217319, 1e-6) && close(bits(kl[1]), 0.485281, 1e-6));
    assert!(close(
        bits(d["semantic_entropy"].as_f64().unwrap()),
        0.759395,
        1e-6
    ));
    assert!(close(
        bits(d["fuzzy_entropy"].as_f64().unwrap()),
        0.448289,
        1e-6
    ));
    assert!(close(bits(d["kl_gap"].as_f64().unwrap()), 0.013785, 1e-6));
    assert!(close(d["efficiency"].as_f64().unwrap(), 0.957570, 1e-6));
    // G-matrix (bits).
    let g = g_matrix(&[0.7, 0.3], t1.view());
    let expect = [[0.395929, -1.887525], [-1.925999, 1.434403]];
    for i in 0..2 {
        for j in 0..2 {
            assert!(close(bits(g[[i, j]]), expect[i][j], 1e-6));
        }
    }
    // LBI column.
    let lbi = run(&ys, &ps, 2, None, "auto");
    let tstar = &lbi.details["lbi_truth_matrix"];
    assert!(close(tstar[0][1].as_f64().unwrap(), 0.171429, 1e-6));
    assert!(close(tstar[1][0].as_f64().unwrap(), 0.194444, 1e-6));
    assert!(close(bits(lbi.value), 0.324890, 1e-6));
    let lp = per_class(&lbi, "logical_prob");
    assert!(close(lp[0], 0.758333, 1e-6) && close(lp[1], 0.42, 1e-6));
    let kl = per_class(&lbi, "semantic_kl");
    assert!(close(bits(kl[0]), 0.217360, 1e-6) && close(bits(kl[1]), 0.524590, 1e-6));
    assert!(close(
        bits(lbi.details["semantic_entropy"].as_f64().unwrap()),
        0.697451,
        1e-6
    ));
    assert!(close(
        bits(lbi.details["fuzzy_entropy"].as_f64().unwrap()),
        0.372561,
        1e-6
    ));
    assert!(close(
        lbi.details["efficiency"].as_f64().unwrap(),
        1.0,
        1e-12
    ));
    assert!(out.interval.is_some() && lbi.interval.is_some());
}

/// Spec §4.3 Example 2 (counts [[30,5,0],[4,25,6],[1,4,25]], N = 100).
#[test]
fn spec_example_2() {
    let (ys, ps) = samples_from_counts(&[&[30, 5, 0], &[4, 25, 6], &[1, 4, 25]]);
    let t2 = arr2(&[[1.0, 0.3, 0.05], [0.3, 1.0, 0.3], [0.05, 0.3, 1.0]]);
    let out = run(&ys, &ps, 3, Some(&t2), "truth_matrix");
    assert!(close(bits(out.value), 0.691052, 1e-6));
    let lp = per_class(&out, "logical_prob");
    for (a, b) in lp.iter().zip([0.47, 0.545, 0.4225]) {
        assert!(close(*a, b, 1e-12));
    }
    let kl = per_class(&out, "semantic_kl");
    for (a, b) in kl.iter().zip([0.767273, 0.415887, 0.906790]) {
        assert!(close(bits(*a), b, 1e-6));
    }
    assert!(close(
        bits(out.details["semantic_entropy"].as_f64().unwrap()),
        1.064295,
        1e-6
    ));
    assert!(close(
        bits(out.details["fuzzy_entropy"].as_f64().unwrap()),
        0.373243,
        1e-6
    ));
    assert!(close(
        out.details["efficiency"].as_f64().unwrap(),
        0.926725,
        1e-6
    ));
    // LBI: T* has a zero where P(x1, y3) = 0, SeMI stays finite and equals ShMI.
    let lbi = run(&ys, &ps, 3, None, "lbi");
    assert!(close(bits(lbi.value), 0.745693, 1e-6));
    let ts = &lbi.details["lbi_truth_matrix"];
    let expect = [
        [1.0, 0.2, 0.0],
        [0.133333, 1.0, 0.205714],
        [0.038889, 0.186667, 1.0],
    ];
    for i in 0..3 {
        for j in 0..3 {
            assert!(close(ts[i][j].as_f64().unwrap(), expect[i][j], 1e-6));
        }
    }
    let kl = per_class(&lbi, "semantic_kl");
    for (a, b) in kl.iter().zip([0.826122, 0.444628, 0.985086]) {
        assert!(close(bits(*a), b, 1e-6));
    }
    let lp = per_class(&lbi, "logical_prob");
    for (a, b) in lp.iter().zip([0.408333, 0.476, 0.372]) {
        assert!(close(*a, b, 1e-6));
    }
    assert!(close(
        bits(lbi.details["semantic_entropy"].as_f64().unwrap()),
        1.258646,
        1e-6
    ));
    assert!(close(
        bits(lbi.details["fuzzy_entropy"].as_f64().unwrap()),
        0.512953,
        1e-6
    ));
    // Crisp identity truth matrix: -inf, with a reason and a falsified count, no interval.
    let eye = Array2::<f64>::eye(3);
    let inf = run(&ys, &ps, 3, Some(&eye), "auto");
    assert_eq!(inf.value, f64::NEG_INFINITY);
    assert_eq!(inf.details["falsified_samples"], 20); // off-diagonal samples: 5+4+6+1+4
    assert!(inf.details["neg_inf_reason"].is_string());
    assert!(inf.interval.is_none());
    assert!(!serde_json::to_string(&inf.details).unwrap().contains("NaN"));
    assert!(inf.details["worst_samples"][0]["falsified"]
        .as_bool()
        .unwrap());
}

/// Spec §4.4 Example 3: Gaussian truth function "x is about 2", σ = 1.
#[test]
fn spec_example_3() {
    let px = [0.1, 0.2, 0.4, 0.2, 0.1];
    let t = Array2::from_shape_fn((5, 1), |(i, _)| (-((i as f64 - 2.0).powi(2)) / 2.0).exp());
    let tj = logical_probabilities(&px, t.view());
    assert!(close(tj[0], 0.669679, 1e-6));
    let g = g_matrix(&px, t.view());
    let expect = [-2.306932, -0.142890, 0.578458, -0.142890, -2.306932];
    for i in 0..5 {
        assert!(close(bits(g[[i, 0]]), expect[i], 1e-6));
        // L25a Eq. 20: log 1/T(θ) − d, d = (x−2)²/2 nats.
        let eq20 = -(tj[0].ln()) - (i as f64 - 2.0).powi(2) / 2.0;
        assert!(close(g[[i, 0]], eq20, 1e-12));
    }
}

fn example4() -> (Array2<f64>, Array2<f64>) {
    let y = arr2(&[
        [1., 0., 0.],
        [1., 1., 0.],
        [1., 0., 0.],
        [0., 1., 0.],
        [0., 1., 1.],
        [1., 0., 0.],
        [0., 0., 0.],
        [0., 1., 0.],
    ]);
    let s = arr2(&[
        [0.90, 0.20, 0.05],
        [0.80, 0.70, 0.10],
        [0.60, 0.10, 0.02],
        [0.30, 0.80, 0.05],
        [0.20, 0.60, 0.40],
        [0.70, 0.30, 0.05],
        [0.10, 0.20, 0.10],
        [0.40, 0.55, 0.30],
    ]);
    (y, s)
}

/// Spec §4.5 Example 4 (multi-label, N = 8, 3 labels).
#[test]
fn spec_example_4() {
    let (y, s) = example4();
    let input = MultilabelInput {
        labels: y.view(),
        scores: s.view(),
        weights: None,
    };
    let out = semantic_mi_multilabel(&input, &Params::default(), &Control::none()).unwrap();
    let per = out.details["per_label"].as_array().unwrap();
    let lp = [0.5, 0.43125, 0.13375];
    let ij = [0.568633, 0.604413, 1.580461];
    let bound = [1.0, 1.0, 3.0];
    let eff = [0.568633, 0.604413, 0.526820];
    for j in 0..3 {
        assert!(close(
            per[j]["logical_prob"].as_f64().unwrap(),
            lp[j],
            1e-12
        ));
        assert!(close(
            bits(per[j]["semantic_kl"].as_f64().unwrap()),
            ij[j],
            1e-6
        ));
        assert!(close(
            bits(per[j]["upper_bound"].as_f64().unwrap()),
            bound[j],
            1e-9
        ));
        assert!(close(per[j]["efficiency"].as_f64().unwrap(), eff[j], 1e-6));
    }
    assert!(close(bits(out.value), 0.696960, 1e-6));
    assert!(close(
        bits(out.details["upper_bound"].as_f64().unwrap()),
        1.222222,
        1e-6
    ));
    // Lowest per-pair G measure among used pairs: sample 2, label 0, 0.263034 bits.
    let w0 = &out.details["worst_samples"][0];
    assert_eq!(
        (w0["index"].as_u64(), w0["label"].as_u64()),
        (Some(2), Some(0))
    );
    assert!(close(bits(w0["value"].as_f64().unwrap()), 0.263034, 1e-6));
    assert_eq!(out.details["negative_fraction"].as_f64(), Some(0.0));
    // Pooling two different parts (rows 0–4 and 5–7) gives the whole batch's value exactly.
    let part = |r: std::ops::Range<usize>| {
        let (yp, sp) = (
            y.slice(ndarray::s![r.clone(), ..]),
            s.slice(ndarray::s![r, ..]),
        );
        let inp = MultilabelInput {
            labels: yp,
            scores: sp,
            weights: None,
        };
        semantic_mi_multilabel(&inp, &Params::default(), &Control::none())
            .unwrap()
            .sufficient
            .unwrap()
    };
    let (a, b) = (part(0..5), part(5..8));
    assert_ne!(a, b);
    assert!(close(
        pool("semantic_mi", &[a, b], 0.95).unwrap().value,
        out.value,
        1e-12
    ));
    // Per-label rescaling of the scores leaves SeMI unchanged (spec §2.9).
    let scaled = Array2::from_shape_fn((8, 3), |(k, j)| s[[k, j]] * [0.5, 0.9, 0.3][j]);
    let input2 = MultilabelInput {
        labels: y.view(),
        scores: scaled.view(),
        weights: None,
    };
    let out2 = semantic_mi_multilabel(&input2, &Params::default(), &Control::none()).unwrap();
    assert!(close(out2.value, out.value, 1e-12));
}

fn example5() -> (Array2<f64>, Vec<u32>) {
    let q = arr2(&[
        [0.7, 0.2, 0.1],
        [0.6, 0.3, 0.1],
        [0.3, 0.5, 0.2],
        [0.2, 0.7, 0.1],
        [0.3, 0.4, 0.3],
        [0.5, 0.2, 0.3],
    ]);
    (q, vec![0, 0, 0, 1, 1, 2])
}

fn infonce(q: &Array2<f64>, y: &[u32]) -> f64 {
    let n = y.len();
    (0..n)
        .map(|k| {
            let j = y[k] as usize;
            let mean: f64 = (0..n).map(|l| q[[l, j]]).sum::<f64>() / n as f64;
            (q[[k, j]] / mean).ln()
        })
        .sum::<f64>()
        / n as f64
}

fn dv(q: &Array2<f64>, y: &[u32]) -> f64 {
    let n = y.len() as f64;
    let k = q.ncols();
    let mean_log: f64 = y
        .iter()
        .enumerate()
        .map(|(s, &j)| q[[s, j as usize]].ln())
        .sum::<f64>()
        / n;
    let mut z = 0.0;
    for j in 0..k {
        let py = y.iter().filter(|&&v| v as usize == j).count() as f64 / n;
        let qbar: f64 = q.column(j).sum() / n;
        z += py * qbar;
    }
    mean_log - z.ln()
}

/// Spec §4.6 Example 5 (softmax scores, Mode B).
#[test]
fn spec_example_5() {
    let (q, y) = example5();
    let input = ClassInput {
        labels: &y,
        predictions: &y,
        k: 3,
        probabilities: Some(q.view()),
        weights: None,
        truth_matrix: None,
    };
    let out = semantic_mi(&input, &Params::default(), &Control::none()).unwrap();
    let d = &out.details;
    assert_eq!(d["mode"], "probabilities");
    assert!(close(bits(out.value), 0.378583, 1e-6));
    assert!(close(out.value, infonce(&q, &y), 1e-12));
    // Spec §4.6 identity DV ≤ SeMI: the service's SeMI (0.378583 bits) against the DV bound of
    // the same critic (0.321376 bits in the spec; the helper reproduces it first).
    assert!(close(bits(dv(&q, &y)), 0.321376, 1e-6));
    assert!(out.value >= dv(&q, &y) + 0.05 * LN2);
    assert!(close(
        bits(out.value - dv(&q, &y)),
        0.378583 - 0.321376,
        1e-6
    ));
    assert!(close(bits(d["ce_bound"].as_f64().unwrap()), 0.365486, 1e-6));
    assert!(close(
        bits(d["cross_entropy"].as_f64().unwrap()),
        1.093662,
        1e-6
    ));
    assert!(close(
        bits(d["upper_bound"].as_f64().unwrap()),
        1.459148,
        1e-6
    ));
    let w0 = &d["worst_samples"][0];
    assert_eq!(w0["index"].as_u64(), Some(2));
    assert!(close(bits(w0["value"].as_f64().unwrap()), -0.530515, 1e-6));
    assert!(close(
        d["negative_fraction"].as_f64().unwrap(),
        1.0 / 6.0,
        1e-12
    ));
    assert!(out.interval.is_some());
    // Pooled halves (samples 0–2 and 3–5, different label mixes) == the whole batch.
    let half = |r: std::ops::Range<usize>| {
        let qh = q.slice(ndarray::s![r.clone(), ..]).to_owned();
        let yh = y[r].to_vec();
        let inp = ClassInput {
            labels: &yh,
            predictions: &yh,
            k: 3,
            probabilities: Some(qh.view()),
            weights: None,
            truth_matrix: None,
        };
        semantic_mi(&inp, &Params::default(), &Control::none())
            .unwrap()
            .sufficient
            .unwrap()
    };
    let (a, b) = (half(0..3), half(3..6));
    assert_ne!(a, b);
    let pooled = pool("semantic_mi", &[a, b], 0.95).unwrap().value;
    assert!(close(pooled, out.value, 1e-12), "{pooled} vs {}", out.value);
}

#[test]
fn probabilities_zero_on_true_class_is_neg_inf() {
    let q = arr2(&[[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]);
    let y = [0u32, 0, 1];
    let input = ClassInput {
        labels: &y,
        predictions: &y,
        k: 2,
        probabilities: Some(q.view()),
        weights: None,
        truth_matrix: None,
    };
    let none = Params {
        floor: super::Floor::Name("none".into()),
        ..Params::default()
    };
    let out = semantic_mi(&input, &none, &Control::none()).unwrap();
    assert_eq!(out.value, f64::NEG_INFINITY);
    assert_eq!(out.details["falsified_samples"], 1);
    assert!(out.details["neg_inf_reason"].is_string());
    assert!(out.interval.is_none());
    assert!(!serde_json::to_string(&out.details).unwrap().contains("NaN"));
    assert_eq!(
        pool("semantic_mi", &[out.sufficient.unwrap()], 0.95).map(|p| p.value),
        Some(f64::NEG_INFINITY)
    );
}

/// The default floor (version 3): the zero truth value is read as half the data's resolution.
/// The probabilities are multiples of 0.1 (one decimal), so the floor is 0.05. By hand:
/// T(θ_0) = (1 + 0 + 0.5)/3 = 0.5, T(θ_1) = (0 + 1 + 0.5)/3 = 0.5, and
/// G = [ln(1/0.5) + ln(0.05/0.5) + ln(0.5/0.5)]/3 = (0.693147 − 2.302585)/3 = −0.536479.
/// A stated floor reads every truth value below it; pooling keeps the floored sums.
#[test]
fn a_zero_truth_value_is_floored_at_the_data_resolution() {
    let q = arr2(&[[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]);
    let y = [0u32, 0, 1];
    let input = ClassInput {
        labels: &y,
        predictions: &y,
        k: 2,
        probabilities: Some(q.view()),
        weights: None,
        truth_matrix: None,
    };
    let out = semantic_mi(&input, &Params::default(), &Control::none()).unwrap();
    let by_hand = ((1.0f64 / 0.5).ln() + (0.05f64 / 0.5).ln()) / 3.0;
    assert!(close(out.value, by_hand, 1e-12), "{}", out.value);
    assert!(close(by_hand, -0.536479, 1e-6));
    assert_eq!(out.details["floor"], 0.05);
    assert_eq!(out.details["floored_samples"], 1);
    assert_eq!(out.details["unfloored_value"], "-Infinity");
    assert!(out.details.get("neg_inf_reason").is_none());
    if let Some(iv) = &out.interval {
        assert!(iv.low <= out.value && out.value <= iv.high);
    }
    assert!(
        out.diagnostics
            .reasons
            .iter()
            .any(|r| r.code == "floored_truth_values"),
        "{:?}",
        out.diagnostics
    );
    let pooled = pool("semantic_mi", &[out.sufficient.clone().unwrap()], 0.95)
        .unwrap()
        .value;
    assert!(close(pooled, out.value, 1e-12));
    // Two decimals: the floor is 0.005.
    let q2 = arr2(&[[0.99, 0.01], [0.0, 1.0], [0.37, 0.63]]);
    let out2 = semantic_mi(
        &ClassInput {
            probabilities: Some(q2.view()),
            ..input
        },
        &Params::default(),
        &Control::none(),
    )
    .unwrap();
    assert_eq!(out2.details["floor"], 0.005);
    // A stated floor of 0.5 reads 0 as 0.5; sample 3's 0.5 is not below it.
    let stated = Params {
        floor: super::Floor::Value(0.5),
        ..Params::default()
    };
    let out3 = semantic_mi(&input, &stated, &Control::none()).unwrap();
    let by_hand3 = ((1.0f64 / 0.5).ln() + (0.5f64 / 0.5).ln() + (0.5f64 / 0.5).ln()) / 3.0;
    assert!(close(out3.value, by_hand3, 1e-12), "{}", out3.value);
    assert_eq!(out3.details["floored_samples"], 1);
    assert!(Params {
        floor: super::Floor::Value(0.0),
        ..Params::default()
    }
    .validate()
    .is_err());
}

#[test]
fn mode_errors() {
    let y = [0u32, 1];
    let input = ClassInput {
        labels: &y,
        predictions: &y,
        k: 2,
        probabilities: None,
        weights: None,
        truth_matrix: None,
    };
    let p = Params {
        mode: "probabilities".into(),
        ..Params::default()
    };
    assert!(
        matches!(semantic_mi(&input, &p, &Control::none()), Err(EstimateError::Invalid(m)) if m.contains("probabilities"))
    );
    assert!(Params {
        mode: "x".into(),
        ..Params::default()
    }
    .validate()
    .unwrap_err()
    .contains("mode"));
}

fn random_class_data(seed: u64, n: usize, k: usize) -> (Vec<u32>, Vec<u32>, Array2<f64>) {
    let mut g = SplitMix64::new(seed);
    let mut ys = Vec::new();
    let mut ps = Vec::new();
    let mut q = Array2::zeros((n, k));
    for s in 0..n {
        let y = g.below(k);
        let mut row: Vec<f64> = (0..k)
            .map(|j| g.uniform() + if j == y { 1.5 * g.uniform() } else { 0.0 })
            .collect();
        let tot: f64 = row.iter().sum();
        row.iter_mut().for_each(|v| *v /= tot);
        let p = (0..k).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
        for j in 0..k {
            q[[s, j]] = row[j];
        }
        ys.push(y as u32);
        ps.push(p as u32);
    }
    (ys, ps, q)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// SeMI with the LBI truth function equals plug-in Shannon MI (spec §2.9).
    #[test]
    fn lbi_semi_equals_shannon(seed in 0u64..10_000, n in 2usize..300, k in 1usize..7) {
        let (ys, ps, _) = random_class_data(seed, n, k);
        let t = Table::from_pairs(&ys, &ps, k, k, None);
        let cs = channel_semantics(&t, lbi_truth(&t).view());
        prop_assert!((cs.g - cs.shannon).abs() < 1e-10, "{} vs {}", cs.g, cs.shannon);
    }

    /// SeMI ≤ Shannon MI for any truth matrix, and per-column rescaling leaves it unchanged.
    #[test]
    fn semi_below_shannon_and_scale_invariant(seed in 0u64..10_000, n in 2usize..300, k in 2usize..6) {
        let (ys, ps, _) = random_class_data(seed, n, k);
        let t = Table::from_pairs(&ys, &ps, k, k, None);
        let mut g = SplitMix64::new(seed ^ 77);
        let tm = Array2::from_shape_fn((k, k), |_| 0.01 + 0.99 * g.uniform());
        let cs = channel_semantics(&t, tm.view());
        prop_assert!(cs.g <= cs.shannon + 1e-12);
        let c: Vec<f64> = (0..k).map(|_| 0.05 + 0.95 * g.uniform()).collect();
        let scaled = Array2::from_shape_fn((k, k), |(i, j)| tm[[i, j]] * c[j]);
        prop_assert!((channel_semantics(&t, scaled.view()).g - cs.g).abs() < 1e-12);
    }

    /// Softmax SeMI == batch InfoNCE with critic ln q; DV ≤ ce-bound ≤ SeMI ≤ Ĥ(Y) (spec §2.10).
    #[test]
    fn softmax_semi_identities(seed in 0u64..10_000, n in 2usize..200, k in 2usize..6) {
        let (ys, ps, q) = random_class_data(seed, n, k);
        let input = ClassInput { labels: &ys, predictions: &ps, k, probabilities: Some(q.view()), weights: None, truth_matrix: None };
        let out = semantic_mi(&input, &Params { bootstrap: 0, ..Params::default() }, &Control::none()).unwrap();
        prop_assert!((out.value - infonce(&q, &ys)).abs() < 1e-10);
        prop_assert!(dv(&q, &ys) <= out.value + 1e-12);
        prop_assert!(out.details["ce_bound"].as_f64().unwrap() <= out.value + 1e-12);
        prop_assert!(out.value <= out.details["upper_bound"].as_f64().unwrap() + 1e-12);
        // Pooling halves equals the whole batch.
        let h = n / 2;
        if h >= 1 {
            let part = |r: std::ops::Range<usize>| {
                let qq = q.slice(ndarray::s![r.clone(), ..]);
                let inp = ClassInput { labels: &ys[r.clone()], predictions: &ps[r], k, probabilities: Some(qq), weights: None, truth_matrix: None };
                semantic_mi(&inp, &Params { bootstrap: 0, ..Params::default() }, &Control::none()).unwrap().sufficient.unwrap()
            };
            let pooled = pool("semantic_mi", &[part(0..h), part(h..n)], 0.95).unwrap().value;
            prop_assert!((pooled - out.value).abs() < 1e-10);
        }
    }
}

/// Lu's efficiency G/R in probabilities mode, R = I(Y; q(X)). A calibrated Bayes posterior on two
/// unit-variance Gaussians at ±1 (equal priors): q(1|x) = σ(2x), SeMI ≈ I(X;Y) = 0.3368 nats
/// (estimators-anchors.md §0 item 7), so G/R ≈ 1; G/Ĥ(Y) ≈ 0.486 is `normalized_semantic_mi`
/// (version 1 reported it as the efficiency). R comes from the k-NN route here (many distinct
/// vectors), whose error is a few 0.01 nats at N = 20 000.
#[test]
fn efficiency_of_a_calibrated_posterior_is_one() {
    let n = 20_000;
    let mut g = SplitMix64::new(31);
    let mut y = Vec::with_capacity(n);
    let mut q = Array2::<f64>::zeros((n, 2));
    for s in 0..n {
        let label = g.below(2);
        let x = g.normal_pair().0 + if label == 1 { 1.0 } else { -1.0 };
        let p1 = 1.0 / (1.0 + (-2.0 * x).exp());
        q[[s, 0]] = 1.0 - p1;
        q[[s, 1]] = p1;
        y.push(label as u32);
    }
    let input = ClassInput {
        labels: &y,
        predictions: &y,
        k: 2,
        probabilities: Some(q.view()),
        weights: None,
        truth_matrix: None,
    };
    let params = Params {
        bootstrap: 0,
        ..Params::default()
    };
    let out = semantic_mi(&input, &params, &Control::none()).unwrap();
    let d = &out.details;
    assert!((out.value - 0.3368).abs() < 0.02, "SeMI {}", out.value);
    let eff = d["efficiency"].as_f64().unwrap();
    assert!((eff - 1.0).abs() < 0.08, "efficiency {eff}: {d}");
    let r = d["shannon_bound"].as_f64().unwrap();
    assert!((r - 0.3368).abs() < 0.03, "R {r}");
    let norm = d["normalized_semantic_mi"].as_f64().unwrap();
    assert!((norm - 0.486).abs() < 0.03, "G/H(Y) {norm}");
    assert!(d["shannon_bound_method"].as_str().unwrap().contains("Ross"));
}

/// Few distinct probability vectors: R is the plug-in MI between the label and the vector's
/// identity, and G ≤ R holds exactly on the sample; with each vector equal to the empirical label
/// distribution of its samples (calibrated on the batch), G = R and the efficiency is 1 to
/// rounding. Miscalibrating the same vectors lowers it below 1.
#[test]
fn efficiency_is_exact_for_discrete_outputs() {
    // Three model outputs with label counts (8, 2), (3, 7), (5, 5).
    let groups: [([u32; 2], f64); 3] = [([8, 2], 0.8), ([3, 7], 0.3), ([5, 5], 0.5)];
    let run = |sharpen: f64| {
        let (mut y, mut rows) = (Vec::new(), Vec::new());
        for (counts, p0) in groups {
            let p0 = (p0 - 0.5) * sharpen + 0.5;
            for (label, &c) in counts.iter().enumerate() {
                for _ in 0..c {
                    y.push(label as u32);
                    rows.push([p0, 1.0 - p0]);
                }
            }
        }
        let q = Array2::from_shape_fn((y.len(), 2), |(s, j)| rows[s][j]);
        let input = ClassInput {
            labels: &y,
            predictions: &y,
            k: 2,
            probabilities: Some(q.view()),
            weights: None,
            truth_matrix: None,
        };
        semantic_mi(&input, &Params::default(), &Control::none()).unwrap()
    };
    let calibrated = run(1.0);
    let d = &calibrated.details;
    assert!(d["shannon_bound_method"]
        .as_str()
        .unwrap()
        .contains("plug-in"));
    // R = the plug-in MI of the 3×2 table [[8,2],[3,7],[5,5]] (label vs output).
    let t = Table::from_dense(3, 2, &[8.0, 2.0, 3.0, 7.0, 5.0, 5.0]);
    let r = crate::estimate::shannon::plugin_mi(&t);
    assert!(close(d["shannon_bound"].as_f64().unwrap(), r, 1e-12));
    assert!(
        close(calibrated.value, r, 1e-12),
        "{} vs {r}",
        calibrated.value
    );
    assert!(close(d["efficiency"].as_f64().unwrap(), 1.0, 1e-9));
    let over = run(1.2);
    let e = over.details["efficiency"].as_f64().unwrap();
    assert!(e < 1.0 && e > 0.0, "{e}");
}

/// The single pass and the bootstrap's block sums run on AVX2 where the CPU has it and on the
/// baseline instructions otherwise (`estimate::simd`): both paths give the same bits, for
/// unweighted and weighted batches, with and without the interval, and with a floor. (On a CPU
/// without AVX2 both runs take the baseline path and this compares a run with itself.)
#[test]
fn vector_and_baseline_paths_give_the_same_bits() {
    let (ys, ps, mut q) = random_class_data(41, 5_000, 13);
    // A few zero truth values for the true class, so that the floor is exercised.
    for s in (0..5_000).step_by(97) {
        let y = ys[s] as usize;
        q[[s, y]] = 0.0;
    }
    let weights: Vec<f64> = (0..5_000).map(|i| 0.5 + (i % 7) as f64 * 0.25).collect();
    for (w, bootstrap) in [(None, 0), (None, 200), (Some(&weights[..]), 200)] {
        let input = ClassInput {
            labels: &ys,
            predictions: &ps,
            k: 13,
            probabilities: Some(q.view()),
            weights: w,
            truth_matrix: None,
        };
        let params = Params {
            mode: "probabilities".into(),
            bootstrap,
            ..Params::default()
        };
        let wide = semantic_mi(&input, &params, &Control::none()).unwrap();
        let base = crate::estimate::simd::on_baseline(|| {
            semantic_mi(&input, &params, &Control::none()).unwrap()
        });
        assert_eq!(wide.value.to_bits(), base.value.to_bits());
        assert_eq!(
            wide.interval
                .as_ref()
                .map(|i| (i.low.to_bits(), i.high.to_bits())),
            base.interval
                .as_ref()
                .map(|i| (i.low.to_bits(), i.high.to_bits()))
        );
        assert_eq!(wide.details, base.details);
        assert_eq!(wide.sufficient, base.sufficient);
        assert!(wide.details["floored_samples"].as_u64().unwrap() > 0);
        if bootstrap > 0 {
            assert!(wide.interval.is_some());
        }
    }
}
