use super::*;
use crate::estimate::rng::SplitMix64;
use proptest::prelude::*;

fn data_from(vals: &[u8], dim: usize, scale: f64) -> Vec<f64> {
    // small integer grid => many ties
    let n = vals.len() / dim;
    vals[..n * dim]
        .iter()
        .map(|&v| (v % 7) as f64 * scale)
        .collect()
}

fn check_all(data: Vec<f64>, dim: usize, metric: Metric, k: usize) {
    let brute = Index::with("brute", data.clone(), dim, metric.clone());
    let tree = Index::with("tree", data.clone(), dim, metric.clone());
    let n = brute.len();
    let kb = brute.kth_keys(k, 0..n);
    let kt = tree.kth_keys(k, 0..n);
    assert_eq!(kb, kt, "kth keys tree vs brute");
    if dim == 1 {
        let s = Index::with("sorted", data.clone(), 1, metric.clone());
        assert_eq!(kb, s.kth_keys(k, 0..n), "kth keys sorted vs brute");
    }
    let plane =
        plane_metric(&metric, dim).map(|_| Index::with("plane", data.clone(), dim, metric.clone()));
    if let Some(p) = &plane {
        assert_eq!(kb, p.kth_keys(k, 0..n), "kth keys plane vs brute");
        assert_eq!(kb, p.all_kth_keys(k), "all kth keys plane vs brute");
    }
    // several orders at once agree with one at a time
    let ks = [k, 1, k + 2];
    let multi = tree.all_kth_keys_multi(&ks);
    for (c, &kk) in ks.iter().enumerate() {
        assert_eq!(
            multi[c],
            brute.kth_keys(kk, 0..n),
            "multi-order tree vs brute"
        );
    }
    for scale in [0.0, 0.5, 1.0, 1.7] {
        let radii: Vec<f64> = kb
            .iter()
            .map(|&r| if r.is_finite() { r * scale } else { 1.0 })
            .collect();
        let cb = brute.counts_below(&radii, 0..n);
        assert_eq!(cb, tree.counts_below(&radii, 0..n), "counts tree vs brute");
        if dim == 1 {
            let s = Index::with("sorted", data.clone(), 1, metric.clone());
            assert_eq!(cb, s.counts_below(&radii, 0..n), "counts sorted vs brute");
            assert_eq!(
                cb,
                s.all_counts_below(&radii),
                "sweep counts sorted vs brute"
            );
        }
        if let Some(p) = &plane {
            assert_eq!(cb, p.counts_below(&radii, 0..n), "counts plane vs brute");
            assert_eq!(cb, p.all_counts_below(&radii), "all counts plane vs brute");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn tree_matches_brute_with_ties(vals in proptest::collection::vec(any::<u8>(), 0..600), dim in 1usize..5, k in 1usize..6) {
        let data = data_from(&vals, dim, 0.25);
        check_all(data.clone(), dim, Metric::Max, k);
        check_all(data.clone(), dim, Metric::euclidean(dim), k);
        if dim >= 2 {
            check_all(data, dim, Metric::Euclidean(vec![1, dim]), k);
        }
    }

    #[test]
    fn tree_matches_brute_continuous(seed in any::<u64>(), n in 1usize..700, dim in 1usize..6, k in 1usize..12) {
        let mut g = SplitMix64::new(seed);
        let data: Vec<f64> = (0..n * dim).map(|_| g.normal_pair().0).collect();
        check_all(data.clone(), dim, Metric::Max, k);
        if dim >= 2 {
            check_all(data.clone(), dim, Metric::Euclidean(vec![1, dim]), k);
        }
        check_all(data, dim, Metric::Euclidean(vec![dim / 2 + 1, dim].into_iter().filter(|&e| e <= dim).collect::<std::collections::BTreeSet<_>>().into_iter().collect()), k);
    }
}

#[test]
fn plane_and_sweeps_on_large_and_heavy_tailed_data() {
    // Cauchy-like tails (ratio of normals) and a block of exact duplicates.
    let mut g = SplitMix64::new(21);
    let mut data: Vec<f64> = (0..2 * 3000)
        .map(|_| {
            let (a, b) = g.normal_pair();
            a / b
        })
        .collect();
    for i in 0..40 {
        data[2 * i] = 0.5;
        data[2 * i + 1] = -1.25;
    }
    for metric in [Metric::Max, Metric::Euclidean(vec![1, 2])] {
        let brute = Index::with("brute", data.clone(), 2, metric.clone());
        let plane = Index::auto_for(data.clone(), 2, metric.clone(), 5);
        assert!(matches!(plane, Index::Plane(..)));
        let want = brute.kth_keys_multi(&[1, 5, 10], 0..3000);
        let got = plane.all_kth_keys_multi(&[1, 5, 10]);
        for (c, g) in got.iter().enumerate() {
            let w: Vec<f64> = want.iter().skip(c).step_by(3).copied().collect();
            assert_eq!(g, &w);
            assert_eq!(plane.all_counts_below(&w), brute.counts_below(&w, 0..3000));
        }
        let xs: Vec<f64> = data.iter().step_by(2).copied().collect();
        let m1 = if metric == Metric::Max {
            Metric::Max
        } else {
            Metric::euclidean(1)
        };
        let sorted = Index::auto(xs.clone(), 1, m1.clone());
        let bx = Index::with("brute", xs, 1, m1);
        let r = &got[1];
        assert_eq!(sorted.all_counts_below(r), bx.counts_below(r, 0..3000));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn sorted_order_is_a_stable_total_order(vals in proptest::collection::vec(any::<u16>(), 0..3000), scale in prop_oneof![Just(1e-9), Just(1.0), Just(1e300)]) {
        // many ties, equal upper bits and signed zeros
        let data: Vec<f64> = vals.iter().map(|&v| match v % 5 { 0 => -0.0, 1 => 0.0, _ => (v as f64 - 30000.0) * scale + 1.0 }).collect();
        let got = sorted_order(&data);
        let mut want: Vec<u32> = (0..data.len() as u32).collect();
        want.sort_by(|&a, &b| data[a as usize].total_cmp(&data[b as usize]).then(a.cmp(&b)));
        prop_assert_eq!(got, want);
    }
}

#[test]
fn parallel_is_deterministic() {
    let mut g = SplitMix64::new(9);
    let data: Vec<f64> = (0..3 * 5000).map(|_| g.uniform()).collect();
    let idx = Index::auto(data.clone(), 3, Metric::Max);
    let a = idx.all_kth_keys(4);
    let b = idx.kth_keys(4, 0..5000);
    assert_eq!(a, b);
    let ca = idx.all_counts_below(&a);
    assert_eq!(ca, idx.counts_below(&a, 0..5000));
}
