//! Non-uniform sample weights against an independent number: integer weights w_s mean the same
//! empirical distribution as the unweighted batch with sample s repeated w_s times, so every
//! statistic that is a function of that distribution must agree with the repeated batch, which
//! runs through the unweighted code path. (The jackknife value of `shannon_mi` is not such a
//! function: it depends on the sample size, which weights change through Kish's n_eff; its
//! weighted behaviour is checked in tests_shannon.rs against Monte Carlo.)

use super::rng::SplitMix64;
use super::{ce_bound, rg, semantic, shannon, ClassInput, Control, MultilabelInput};
use ndarray::Array2;

struct Data {
    labels: Vec<u32>,
    preds: Vec<u32>,
    probs: Array2<f64>,
    weights: Vec<f64>,
}

fn data(n: usize, k: usize, seed: u64) -> Data {
    let mut g = SplitMix64::new(seed);
    let mut labels = Vec::new();
    let mut preds = Vec::new();
    let mut probs = Array2::zeros((n, k));
    for s in 0..n {
        let y = g.below(k);
        let p = if g.uniform() < 0.6 { y } else { g.below(k) };
        let mut row: Vec<f64> = (0..k).map(|_| 0.05 + g.uniform()).collect();
        row[p] += 2.0;
        let tot: f64 = row.iter().sum();
        for j in 0..k {
            probs[[s, j]] = row[j] / tot;
        }
        labels.push(y as u32);
        preds.push(p as u32);
    }
    let weights = (0..n).map(|_| (1 + g.below(4)) as f64).collect();
    Data {
        labels,
        preds,
        probs,
        weights,
    }
}

/// The batch with sample s repeated w_s times.
fn repeated(d: &Data) -> Data {
    let k = d.probs.ncols();
    let mut out = Data {
        labels: vec![],
        preds: vec![],
        probs: Array2::zeros((0, k)),
        weights: vec![],
    };
    let mut rows = Vec::new();
    for (s, &w) in d.weights.iter().enumerate() {
        for _ in 0..w as usize {
            out.labels.push(d.labels[s]);
            out.preds.push(d.preds[s]);
            rows.extend(d.probs.row(s).iter().copied());
        }
    }
    out.probs = Array2::from_shape_vec((out.labels.len(), k), rows).unwrap();
    out
}

fn input<'a>(d: &'a Data, weighted: bool, t: Option<&'a Array2<f64>>) -> ClassInput<'a> {
    ClassInput {
        labels: &d.labels,
        predictions: &d.preds,
        k: d.probs.ncols(),
        probabilities: Some(d.probs.view()),
        weights: weighted.then_some(d.weights.as_slice()),
        truth_matrix: t.map(|t| t.view()),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-10 * (1.0 + b.abs())
}

#[test]
fn weighted_statistics_equal_the_repeated_batch() {
    let d = data(300, 4, 5);
    let r = repeated(&d);
    assert!(r.labels.len() > 600, "non-uniform weights");
    let ctl = Control::none();
    let t = Array2::from_shape_fn(
        (4, 4),
        |(i, j)| if i == j { 1.0 } else { 0.2 + 0.1 * j as f64 },
    );

    let p = shannon::Params::default();
    let (a, b) = (
        shannon::shannon_mi(&input(&d, true, None), &p, &ctl).unwrap(),
        shannon::shannon_mi(&input(&r, false, None), &p, &ctl).unwrap(),
    );
    for key in ["plug_in", "h_true", "h_pred", "nmi", "vi"] {
        let (x, y) = (
            a.details[key].as_f64().unwrap(),
            b.details[key].as_f64().unwrap(),
        );
        assert!(close(x, y), "shannon_mi {key}: {x} vs {y}");
    }

    for mode in ["probabilities", "truth_matrix", "lbi"] {
        let p = semantic::Params {
            mode: mode.into(),
            bootstrap: 0,
            ..Default::default()
        };
        let (a, b) = (
            semantic::semantic_mi(&input(&d, true, Some(&t)), &p, &ctl).unwrap(),
            semantic::semantic_mi(&input(&r, false, Some(&t)), &p, &ctl).unwrap(),
        );
        assert!(
            close(a.value, b.value),
            "semantic_mi {mode}: {} vs {}",
            a.value,
            b.value
        );
        // The statistics each mode reports (a mean over samples, so the same on the repeated
        // batch): a key on one side only is a failure, not a skip, and the two every mode has
        // must be there.
        let mut compared = Vec::new();
        for key in [
            "upper_bound",
            "negative_fraction",
            "normalized_semantic_mi",
            "efficiency",
            "kl_gap",
            "semantic_entropy",
            "fuzzy_entropy",
            "shannon_mi",
        ] {
            match (a.details[key].as_f64(), b.details[key].as_f64()) {
                (Some(x), Some(y)) => {
                    assert!(close(x, y), "semantic_mi {mode} {key}: {x} vs {y}");
                    compared.push(key);
                }
                (None, None) => {}
                (x, y) => panic!("semantic_mi {mode} {key}: {x:?} vs {y:?}"),
            }
        }
        assert!(
            compared.contains(&"upper_bound") && compared.contains(&"negative_fraction"),
            "semantic_mi {mode} compared only {compared:?}"
        );
        eprintln!("semantic_mi {mode}: compared {compared:?}");
    }

    let p = ce_bound::Params {
        bootstrap: 0,
        ..Default::default()
    };
    let (a, b) = (
        ce_bound::ce_bound(&input(&d, true, None), &p, &ctl).unwrap(),
        ce_bound::ce_bound(&input(&r, false, None), &p, &ctl).unwrap(),
    );
    assert!(
        close(a.value, b.value),
        "ce_bound: {} vs {}",
        a.value,
        b.value
    );

    let p = rg::Params::default();
    let (a, b) = (
        rg::rg_curve(&input(&d, true, Some(&t)), &p, &ctl).unwrap(),
        rg::rg_curve(&input(&r, false, Some(&t)), &p, &ctl).unwrap(),
    );
    assert!(
        (a.value - b.value).abs() < 1e-9,
        "rg_curve R(1): {} vs {}",
        a.value,
        b.value
    );
}

#[test]
fn weighted_multilabel_statistics_equal_the_repeated_batch() {
    let mut g = SplitMix64::new(8);
    let (n, l) = (200, 3);
    let y = Array2::from_shape_fn((n, l), |_| f64::from(u8::from(g.uniform() < 0.35)));
    let s = Array2::from_shape_fn((n, l), |(i, j)| {
        (0.15 + 0.6 * y[[i, j]] + 0.25 * g.uniform()).min(1.0)
    });
    let w: Vec<f64> = (0..n).map(|_| (1 + g.below(3)) as f64).collect();
    let reps: Vec<usize> = (0..n)
        .flat_map(|i| std::iter::repeat_n(i, w[i] as usize))
        .collect();
    let yr = y.select(ndarray::Axis(0), &reps);
    let sr = s.select(ndarray::Axis(0), &reps);
    let ctl = Control::none();
    let weighted = MultilabelInput {
        labels: y.view(),
        scores: s.view(),
        weights: Some(&w),
    };
    let plain = MultilabelInput {
        labels: yr.view(),
        scores: sr.view(),
        weights: None,
    };
    let p = semantic::Params {
        bootstrap: 0,
        ..Default::default()
    };
    let (a, b) = (
        semantic::semantic_mi_multilabel(&weighted, &p, &ctl).unwrap(),
        semantic::semantic_mi_multilabel(&plain, &p, &ctl).unwrap(),
    );
    assert!(
        close(a.value, b.value),
        "semantic multilabel: {} vs {}",
        a.value,
        b.value
    );
    let p = shannon::Params::default();
    let (a, b) = (
        shannon::shannon_mi_multilabel(&weighted, &p, &ctl).unwrap(),
        shannon::shannon_mi_multilabel(&plain, &p, &ctl).unwrap(),
    );
    let (x, y2) = (
        a.details["plug_in"].as_f64().unwrap(),
        b.details["plug_in"].as_f64().unwrap(),
    );
    assert!(close(x, y2), "shannon multilabel plug-in: {x} vs {y2}");
}
