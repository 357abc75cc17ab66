//! `cargo bench --bench segments`: the cost of segments. `shannon_mi` and `semantic_mi` (default
//! parameters, as the worker runs them) on N = 10^6 samples, K = 10 classes with probabilities,
//! without segments and with one segment key of 50 and of 1000 values (Zipf-like sizes, as a
//! capped real column would have), timed as the worker runs them: `compute::compute` on the whole
//! batch, then `segmented::compute_segments`. Best and median of 3 runs; the ratio is the
//! segmented run's best over the unsegmented one's. `INFOAUDIT_BENCH_N` overrides N.
//! See `benches/README.md`, "Segments".

use infoaudit::domain::batch::{Batch, BatchData, LabelForm, Task};
use infoaudit::domain::columns::Matrix;
use infoaudit::domain::segments::SegmentColumn;
use infoaudit::estimate::rng::SplitMix64;
use infoaudit::estimate::Control;
use std::time::Instant;

fn batch(n: usize, k: usize, segments: usize, seed: u64) -> Batch {
    let mut g = SplitMix64::new(seed);
    let mut labels = Vec::with_capacity(n);
    let mut probs = Vec::with_capacity(n * k);
    let mut codes = Vec::with_capacity(n);
    // Zipf-like segment sizes: P(s) ∝ 1/(s+10).
    let weights: Vec<f64> = (0..segments.max(1))
        .map(|s| 1.0 / (s as f64 + 10.0))
        .collect();
    let total: f64 = weights.iter().sum();
    let cdf: Vec<f64> = weights
        .iter()
        .scan(0.0, |a, w| {
            *a += w / total;
            Some(*a)
        })
        .collect();
    let mut row = vec![0.0; k];
    for _ in 0..n {
        let u = g.uniform();
        let s = cdf.partition_point(|&c| c < u).min(segments.max(1) - 1);
        codes.push(s as u32);
        let y = g.below(k);
        labels.push(y as u32);
        // A noisy model whose quality varies by segment.
        let sharp = 1.0 + 4.0 * (s % 7) as f64 / 6.0;
        let mut sum = 0.0;
        for (j, r) in row.iter_mut().enumerate() {
            let base = g.uniform() + if j == y { sharp * g.uniform() } else { 0.0 };
            *r = base;
            sum += base;
        }
        probs.extend(row.iter().map(|r| r / sum));
    }
    let segs = if segments > 0 {
        vec![SegmentColumn {
            key: "region".into(),
            values: (0..segments).map(|s| format!("r{s}")).collect(),
            codes,
        }]
    } else {
        vec![]
    };
    Batch {
        task: Task::Multiclass,
        classes: (0..k).map(|j| j.to_string()).collect(),
        n,
        data: BatchData::Multiclass {
            labels,
            label_form: LabelForm::Index,
            predictions: None,
            prediction_form: LabelForm::Index,
            probabilities: Some(Matrix::new(n, k, probs)),
            features: None,
        },
        weights: None,
        truth_matrix: None,
        segments: segs,
        labels_later: false,
        normalized: None,
    }
}

fn run(b: &Batch, estimator: &str) -> usize {
    let params = match estimator {
        "shannon_mi" => serde_json::to_value(infoaudit::estimate::shannon::Params::default()),
        _ => serde_json::to_value(infoaudit::estimate::semantic::Params::default()),
    }
    .expect("params");
    let none = Control::none();
    let out = infoaudit::compute::compute(estimator, &params, b, &none).expect("whole");
    let s =
        infoaudit::compute::segments::compute_segments(estimator, &params, b, &out, &none, None)
            .expect("segments");
    // Every value of the column is in the summary, and each is computed (a stored row) or
    // skipped with its reason (too few samples, none at all).
    if let Some(col) = b.segments.first() {
        let values = &s.summary[&col.key].values;
        let skipped = values.iter().filter(|v| v.skipped.is_some()).count();
        assert_eq!(
            values.len(),
            col.values.len(),
            "{estimator}: summary values"
        );
        assert_eq!(
            s.rows.len() + skipped,
            values.len(),
            "{estimator}: rows + skipped"
        );
    }
    s.rows.len()
}

fn time(f: impl Fn() -> usize, runs: usize) -> (f64, f64, usize) {
    let mut t = Vec::new();
    let mut last = 0;
    for _ in 0..runs {
        let t0 = Instant::now();
        last = f();
        t.push(t0.elapsed().as_secs_f64());
    }
    t.sort_by(f64::total_cmp);
    (t[0], t[t.len() / 2], last)
}

fn main() {
    // `--quick`: N = 20000, one run each, to check that every segment value is computed or
    // skipped with a reason (CI).
    let quick = std::env::args().any(|a| a == "--quick");
    let n: usize = std::env::var("INFOAUDIT_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 20_000 } else { 1_000_000 });
    let runs = if quick { 1 } else { 3 };
    let k = 10;
    println!("segments: N = {n}, K = {k}; best (median) of {runs} runs, seconds");
    let mut base = std::collections::HashMap::new();
    for segments in [0usize, 50, 1000] {
        let b = batch(n, k, segments, 42);
        for est in ["shannon_mi", "semantic_mi"] {
            let (best, median, rows) = time(|| run(&b, est), runs);

            let both = {
                let (x, _, _) = (best, median, rows);
                x
            };
            if segments == 0 {
                base.insert(est, both);
            }
            println!(
                "{est:>12} segments={segments:>5} rows={rows:>5}  {best:.3} ({median:.3})  ratio {:.2}",
                both / base[est]
            );
        }
        let (best, median, _) = time(|| run(&b, "shannon_mi") + run(&b, "semantic_mi"), runs);
        if segments == 0 {
            base.insert("both", best);
        }
        println!(
            "{:>12} segments={segments:>5}             {best:.3} ({median:.3})  ratio {:.2}",
            "both",
            best / base["both"]
        );
    }
}
