//! `semantic_mi`: Lu's semantic mutual information (SeMI, "G"),
//! G = Σ P(x, y) ln[T(θ_y|x) / T(θ_y)], T(θ_j) = Σ_x P(x) T(θ_j|x)
//! (semantic-information-spec.md §2.7), for three single-label inputs and multi-label scores.
//!
//! Modes (single label):
//! - `probabilities` (spec Mode B): each sample is its own instance x_k with P(x_k) = w_k/Σw,
//!   Y = the true label, T(θ_j|x_k) = q(j|x_k). Upper bound R = Ĥ(Y): with each sample a
//!   distinct instance, the LBI truth function is T*(θ_j|x_k) = 1 if y_k = j else 0, whose SeMI
//!   is Σ_j P(y_j) ln 1/P(y_j) = Ĥ(Y) = the plug-in Shannon MI between instance and label
//!   (spec §2.10, "G ≤ R gives Ĝ ≤ Ĥ(Y)").
//! - `truth_matrix` (Mode A): X = true class, Y = predicted class, the user's T[true][pred] on
//!   the confusion channel; R = plug-in Shannon MI of the confusion table.
//! - `lbi`: as `truth_matrix` with T* = P(y|x)/max_x P(y|x) fitted on the same table, so that
//!   G equals the plug-in Shannon MI exactly (spec §2.9).
//!
//! Efficiency (`details.efficiency`) is Lu's G/R with R the Shannon MI of the same channel: in
//! `truth_matrix` and `lbi` modes the plug-in MI of the confusion table; in `probabilities` mode
//! R = I(Y; q(X)), the MI between the true label and the model's probability vector (see
//! [`score_channel_mi`]), so a calibrated model scores 1. `normalized_semantic_mi` is G/Ĥ(Y)
//! (version 1 reported that ratio as `efficiency` in probabilities mode: 0.486 for a calibrated
//! Bayes posterior; a migration renamed it in stored results).
//!
//! −∞: zero truth values on pairs with zero mass contribute nothing; a used pair with T = 0 makes
//! the value −∞ (`falsified_samples` counts such samples, `neg_inf_reason` explains, and no
//! interval is given) with `floor: "none"`.
//!
//! Version 3: the floor (probabilities mode). Real model outputs rounded to two decimals give a
//! confident wrong prediction q(y|x) = 0, which made the whole batch's value −∞: no interval, and
//! every gate on `semantic_mi` inconclusive, even when the model's information fell by two
//! thirds. With `floor: "auto"` (the default) a sample's truth value for its true class is read
//! as max(q(y|x), f), f half the data's resolution (0.005 for two decimals; see
//! [`data_floor`]); the logical probabilities T(θ_j) are the unfloored means. The value is then
//! finite; `details.floored_samples`, `floored_share`, `floor` and `unfloored_value` (−∞) say
//! what the floor did. A stated number floors every truth value below it; `"none"` keeps −∞.
//! Batches without a zero truth value for a true class have the same value as in version 2.

use super::bootstrap::{basic_interval, block_bootstrap, random_blocks, TableResampler};
use super::contingency::Table;
use super::probabilities::{
    accumulate_row, check_probabilities, first_invalid_probability, probabilities_shape, row_slice,
};
use super::rng::SplitMix64;
use super::shannon::{check_multilabel, mi_from_parts, plugin_mi};
use super::special::entropy_of_counts;
use super::{
    bootstrap_checks, check_bootstrap_params, check_choice, check_class_input, normalized_weights,
    num, ClassInput, Control, Diagnostics, EstimateError, Interval, MultilabelInput, Output,
    Reliability,
};
use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

mod multilabel;
mod score_channel;

pub use multilabel::semantic_mi_multilabel;
use score_channel::score_channel_mi;
pub use score_channel::SCORE_KNN_MAX_ROWS;

pub const VERSION: &str = "3.0.0";

pub const MODES: [&str; 4] = ["auto", "probabilities", "truth_matrix", "lbi"];

const METHOD_BLOCKS: &str = "basic bootstrap on SeMI, re-running the whole statistic including T(theta_j); samples resampled with replacement (random equal blocks of samples when N > bootstrap_blocks)";
const METHOD_TABLE: &str = "basic bootstrap on SeMI, re-running the whole statistic including T(theta_j) (and the LBI fit in lbi mode) on multinomial resamples of the confusion table";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Bootstrap replicates (0 disables the interval; at most 10000).
    pub bootstrap: usize,
    /// Interval level in (0,1).
    pub confidence: f64,
    pub seed: u64,
    /// "auto" | "probabilities" | "truth_matrix" | "lbi" (single-label only).
    pub mode: String,
    /// Score-based modes: at most this many random blocks of samples are resampled.
    pub bootstrap_blocks: usize,
    /// Number of most misleading samples listed in `worst_samples` (0..=1000).
    pub worst_samples: usize,
    /// Probabilities mode: the floor of a sample's truth value for its true class. `"auto"`
    /// (default): when some sample gives its true class probability 0 (probabilities rounded to a
    /// few decimals), that truth value is read as half the data's resolution instead of 0, so the
    /// value stays finite and gateable; `"none"`: 0 stays 0 and the value is −∞; a number in
    /// (0, 0.5]: every truth value below it is read as it.
    pub floor: Floor,
}

/// The floor of truth values (see [`Params::floor`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Floor {
    Name(String),
    Value(f64),
}

impl Default for Floor {
    fn default() -> Self {
        Floor::Name("auto".into())
    }
}

impl Floor {
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Floor::Name(n) if n == "auto" || n == "none" => Ok(()),
            Floor::Name(n) => Err(format!(
                "floor must be \"auto\", \"none\" or a number in (0, 0.5] (got {n:?})"
            )),
            Floor::Value(v) if v.is_finite() && *v > 0.0 && *v <= 0.5 => Ok(()),
            Floor::Value(v) => Err(format!("floor must be in (0, 0.5] (got {v})")),
        }
    }

    /// The stated floor, if a number.
    pub fn stated(&self) -> Option<f64> {
        match self {
            Floor::Value(v) => Some(*v),
            _ => None,
        }
    }

    pub fn is_auto(&self) -> bool {
        matches!(self, Floor::Name(n) if n == "auto")
    }
}

/// Half the resolution of a probability matrix: its values are multiples of 10^−d for the
/// smallest d ≤ 6 (probabilities exported with d decimals), else of nothing (then the smallest
/// positive value). A truth value of 0 at this resolution means "below half a step".
pub(crate) fn data_floor(q: &ArrayView2<'_, f64>) -> f64 {
    let mut multiple = [true; 7];
    let mut smallest = f64::INFINITY;
    for &v in q.iter() {
        if v > 0.0 && v < smallest {
            smallest = v;
        }
        for (d, ok) in multiple.iter_mut().enumerate().skip(1) {
            if *ok {
                let scaled = v * 10f64.powi(d as i32);
                *ok = (scaled - scaled.round()).abs() <= 1e-6;
            }
        }
    }
    let step = (1..=6)
        .find(|&d| multiple[d])
        .map(|d| 10f64.powi(-(d as i32)))
        .unwrap_or(smallest);
    if step.is_finite() && step > 0.0 {
        step / 2.0
    } else {
        1e-9
    }
}

impl Default for Params {
    fn default() -> Self {
        Params {
            bootstrap: 200,
            confidence: 0.95,
            seed: 0,
            mode: "auto".to_string(),
            bootstrap_blocks: 2000,
            worst_samples: 10,
            floor: Floor::default(),
        }
    }
}

impl Params {
    pub fn validate(&self) -> Result<(), String> {
        check_bootstrap_params(self.bootstrap, self.confidence)?;
        check_choice("mode", &self.mode, &MODES)?;
        if !(10..=1_000_000).contains(&self.bootstrap_blocks) {
            return Err(format!(
                "bootstrap_blocks must be between 10 and 1000000 (got {})",
                self.bootstrap_blocks
            ));
        }
        self.floor.validate()?;
        if self.worst_samples > 1000 {
            return Err(format!(
                "worst_samples must be between 0 and 1000 (got {})",
                self.worst_samples
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Pure helpers
// ---------------------------------------------------------------------------------------------

/// Logical probabilities T(θ_j) = Σ_i P(x_i) T(θ_j|x_i) for a K×M truth matrix.
pub fn logical_probabilities(px: &[f64], t: ArrayView2<'_, f64>) -> Vec<f64> {
    let mut out = vec![0.0; t.ncols()];
    for (i, &p) in px.iter().enumerate() {
        if p > 0.0 {
            for (o, &v) in out.iter_mut().zip(t.row(i)) {
                *o += p * v;
            }
        }
    }
    out
}

/// The G-measure matrix I(x_i; θ_j) = ln[T(θ_j|x_i)/T(θ_j)] (−∞ where T(θ_j|x_i) = 0).
pub fn g_matrix(px: &[f64], t: ArrayView2<'_, f64>) -> ndarray::Array2<f64> {
    let tj = logical_probabilities(px, t);
    let mut g = t.to_owned();
    for ((_, j), v) in g.indexed_iter_mut() {
        *v = if *v > 0.0 {
            (*v / tj[j]).ln()
        } else {
            f64::NEG_INFINITY
        };
    }
    g
}

/// LBI truth function T*[i][j] = P(y_j|x_i) / max_i P(y_j|x_i) of a table (0 where undefined).
pub fn lbi_truth(t: &Table) -> ndarray::Array2<f64> {
    let mut m = ndarray::Array2::<f64>::zeros((t.kx, t.ky));
    let mut colmax = vec![0.0f64; t.ky];
    for c in 0..t.nnz() {
        let (i, j) = (t.rows[c] as usize, t.cols[c] as usize);
        let r = t.counts[c] / t.row_sums[i];
        m[[i, j]] = r;
        colmax[j] = colmax[j].max(r);
    }
    for ((_, j), v) in m.indexed_iter_mut() {
        if colmax[j] > 0.0 {
            *v /= colmax[j];
        }
    }
    m
}

/// Semantic quantities of a channel (X = table rows, Y = table columns) under a truth matrix.
#[derive(Debug, Clone)]
pub struct ChannelSemantics {
    /// SeMI (nats), −∞ if a used pair has T = 0.
    pub g: f64,
    /// Plug-in Shannon MI of the table.
    pub shannon: f64,
    /// T(θ_j) per column.
    pub logical_prob: Vec<f64>,
    /// P(y_j) per column.
    pub p_y: Vec<f64>,
    /// I(X;θ_j) per column (`None` when P(y_j) = 0).
    pub per_label: Vec<Option<f64>>,
    /// H(Y_θ) and H(Y_θ|X) for T divided by its column maxima (None if a column max is 0).
    pub semantic_entropy: f64,
    pub fuzzy_entropy: f64,
    /// Mass fraction of pairs with I(x;θ_y) < 0 (T(θ_j|x_i) < T(θ_j)).
    pub negative_fraction: f64,
    /// Mass of used pairs with T = 0.
    pub falsified_mass: f64,
}

/// SeMI of a table (any non-negative masses) under a truth matrix T (kx × ky).
pub fn channel_semantics(t: &Table, truth: ArrayView2<'_, f64>) -> ChannelSemantics {
    let n = t.total;
    let px: Vec<f64> = t.row_sums.iter().map(|&a| a / n).collect();
    let tj = logical_probabilities(&px, truth);
    let colmax: Vec<f64> = (0..t.ky)
        .map(|j| truth.column(j).iter().fold(0.0f64, |m, &v| m.max(v)))
        .collect();
    let mut g = 0.0;
    let mut per = vec![0.0; t.ky];
    let mut fuzzy = 0.0;
    let mut neg = 0.0;
    let mut fals = 0.0;
    for c in 0..t.nnz() {
        let (i, j) = (t.rows[c] as usize, t.cols[c] as usize);
        let p = t.counts[c] / n;
        let tv = truth[[i, j]];
        let gi = if tv > 0.0 {
            (tv / tj[j]).ln()
        } else {
            f64::NEG_INFINITY
        };
        if tv <= 0.0 {
            fals += p;
        }
        if gi < 0.0 {
            neg += p;
        }
        g += p * gi;
        per[j] += p * gi;
        fuzzy -= p * (tv / colmax[j]).ln();
    }
    let p_y: Vec<f64> = t.col_sums.iter().map(|&b| b / n).collect();
    let per_label = (0..t.ky)
        .map(|j| (p_y[j] > 0.0).then(|| per[j] / p_y[j]))
        .collect();
    let semantic_entropy = -(0..t.ky)
        .filter(|&j| p_y[j] > 0.0)
        .map(|j| p_y[j] * (tj[j] / colmax[j]).ln())
        .sum::<f64>();
    ChannelSemantics {
        g: if fals > 0.0 { f64::NEG_INFINITY } else { g },
        shannon: plugin_mi(t),
        logical_prob: tj,
        p_y,
        per_label,
        semantic_entropy,
        fuzzy_entropy: fuzzy,
        negative_fraction: neg,
        falsified_mass: fals,
    }
}

/// SeMI of a table under T, cheap form for bootstrap replicates (counts aligned with `t.counts`).
fn channel_g_counts(
    t: &Table,
    counts: &[f64],
    row_sums: &[f64],
    total: f64,
    truth: ArrayView2<'_, f64>,
) -> f64 {
    let px: Vec<f64> = row_sums.iter().map(|&a| a / total).collect();
    let tj = logical_probabilities(&px, truth);
    let mut g = 0.0;
    for (c, &cnt) in counts.iter().enumerate() {
        if cnt > 0.0 {
            let (i, j) = (t.rows[c] as usize, t.cols[c] as usize);
            let tv = truth[[i, j]];
            if tv <= 0.0 {
                return f64::NEG_INFINITY;
            }
            g += cnt * (tv / tj[j]).ln();
        }
    }
    g / total
}

fn ratio_or_null(num_v: f64, den: f64, reason: &str) -> (Value, Option<String>) {
    if den > 0.0 && num_v.is_finite() {
        (num(num_v / den), None)
    } else if den > 0.0 {
        (Value::Null, Some("the semantic MI is -inf".to_string()))
    } else {
        (Value::Null, Some(reason.to_string()))
    }
}

/// Keep the `m` smallest (value, index) pairs, ordered by value then index.
fn worst(mut items: Vec<(f64, usize)>, m: usize) -> Vec<(f64, usize)> {
    let cmp = |a: &(f64, usize), b: &(f64, usize)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
    if items.len() > m && m > 0 {
        items.select_nth_unstable_by(m - 1, cmp);
        items.truncate(m);
    } else if m == 0 {
        items.clear();
    }
    items.sort_by(cmp);
    items
}

/// Streaming form of [`worst`]: keeps the `m` smallest (value, index) pairs seen so far in a
/// bounded max-heap, O(1) per pair that does not enter. Same result as `worst` on the same pairs.
struct WorstK {
    m: usize,
    heap: std::collections::BinaryHeap<WorstKey>,
}

#[derive(Clone, Copy)]
struct WorstKey(f64, usize);

impl PartialEq for WorstKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl Eq for WorstKey {}
impl PartialOrd for WorstKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for WorstKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

impl WorstK {
    fn new(m: usize) -> Self {
        WorstK {
            m,
            heap: std::collections::BinaryHeap::with_capacity(m.saturating_add(1).min(1 << 16)),
        }
    }

    #[inline]
    fn push(&mut self, value: f64, index: usize) {
        if self.m == 0 {
            return;
        }
        let key = WorstKey(value, index);
        if self.heap.len() < self.m {
            self.heap.push(key);
        } else if let Some(mut top) = self.heap.peek_mut() {
            if key < *top {
                *top = key;
            }
        }
    }

    fn into_sorted(self) -> Vec<(f64, usize)> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|WorstKey(v, i)| (v, i))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------

/// Single-label SeMI; see the module docs for the three modes.
pub fn semantic_mi(
    input: &ClassInput<'_>,
    params: &Params,
    ctl: &Control<'_>,
) -> Result<Output, EstimateError> {
    semantic_mi_limited(input, params, ctl, SCORE_KNN_MAX_ROWS)
}

/// [`semantic_mi`] with at most `score_rows` rows for the k-NN estimate of R = I(Y; q(X))
/// (`details.efficiency`'s denominator; below 100 rows it is not estimated, with the reason).
/// The per-segment runs share the whole batch's budget of rows among the segments, so that
/// the k-NN search of all segments together costs about what the whole batch's does.
pub fn semantic_mi_limited(
    input: &ClassInput<'_>,
    params: &Params,
    ctl: &Control<'_>,
    score_rows: usize,
) -> Result<Output, EstimateError> {
    params.validate().map_err(EstimateError::Invalid)?;
    let n = check_class_input(input)?;
    let mode = match params.mode.as_str() {
        "auto" => {
            if input.truth_matrix.is_some() {
                "truth_matrix"
            } else if input.probabilities.is_some() {
                "probabilities"
            } else {
                "lbi"
            }
        }
        m => m,
    };
    match mode {
        "probabilities" => {
            let q = input.probabilities.ok_or_else(|| {
                EstimateError::invalid(
                    "mode \"probabilities\" needs class probabilities in the batch",
                )
            })?;
            probabilities_mode(input, q, n, params, ctl, score_rows)
        }
        "truth_matrix" => {
            let t = input.truth_matrix.ok_or_else(|| {
                EstimateError::invalid("mode \"truth_matrix\" needs a truth_matrix")
            })?;
            channel_mode(input, Some(t), n, params, ctl)
        }
        _ => channel_mode(input, None, n, params, ctl),
    }
}

fn probabilities_mode(
    input: &ClassInput<'_>,
    q: ArrayView2<'_, f64>,
    n: usize,
    params: &Params,
    ctl: &Control<'_>,
    score_rows: usize,
) -> Result<Output, EstimateError> {
    let k = input.k;
    probabilities_shape(&q, n, k)?;
    // The values of `q` are validated during the single pass below; when the weights are invalid
    // too, the probabilities' error still comes first.
    let w = match normalized_weights(input.weights, n) {
        Ok(w) => w,
        Err(e) => {
            check_probabilities(&q, n, k)?;
            return Err(e);
        }
    };
    ctl.tick(0.0)?;
    let mut rng = SplitMix64::new(params.seed);
    let track_blocks = params.bootstrap > 0;
    let (block, m) = if track_blocks {
        random_blocks(n, params.bootstrap_blocks, &mut rng)
    } else {
        (Vec::new(), 1)
    };
    // Block layout: [W_j (k) | Q_j (k) | Σ w ln q(y|x) (1) | weight of zero truth values (1)];
    // only kept for the bootstrap.
    let width = 2 * k + 2;
    let stated_floor = params.floor.stated();
    let stats = if track_blocks {
        vec![0.0; m * width]
    } else {
        Vec::new()
    };
    let mut sc = Scan {
        stats,
        class_w: vec![0.0; k],
        q_sum: vec![0.0; k],
        logq_sum: vec![0.0; k],
        colmax: vec![0.0f64; k],
        logq: vec![0.0; n],
        falsified: 0,
        zero_w: vec![0.0; k],
        floored: 0,
        floored_logq: 0.0,
    };
    if !scan(
        &q,
        input.labels,
        w.as_deref(),
        &block,
        width,
        stated_floor,
        ctl,
        &mut sc,
    )? {
        return Err(first_invalid_probability(&q, n, k));
    }
    let Scan {
        mut stats,
        class_w,
        q_sum,
        mut logq_sum,
        colmax,
        mut logq,
        falsified,
        zero_w,
        floored,
        floored_logq,
    } = sc;
    if colmax.iter().any(|&m| m > 1.0) {
        return Err(first_invalid_probability(&q, n, k));
    }
    // The floor of the truth values of the samples counted in `zero_w`.
    let floor = match (&params.floor, stated_floor) {
        (_, Some(f)) => Some(f),
        (f, None) if f.is_auto() && floored > 0 => Some(data_floor(&q)),
        _ => None,
    };
    let unfloored_logq: f64 = logq_sum.iter().sum();
    if let Some(f) = floor {
        for (l, &zw) in logq_sum.iter_mut().zip(&zero_w) {
            *l += zw * f.ln();
        }
        for (s, lq) in logq.iter_mut().enumerate() {
            if q[[s, input.labels[s] as usize]] < f {
                *lq = f.ln();
            }
        }
        if track_blocks {
            for b in 0..m {
                let z = stats[b * width + 2 * k + 1];
                stats[b * width + 2 * k] += z * f.ln();
            }
        }
    }
    let falsified_after = if floor.is_some() { 0 } else { falsified };
    let wt: f64 = class_w.iter().sum();
    let tj: Vec<f64> = q_sum.iter().map(|&v| v / wt).collect();
    let g_from = |cw: &[f64], qs: &[f64], lsum: f64| -> f64 {
        let tot: f64 = cw.iter().sum();
        let mut g = lsum / tot;
        for j in 0..cw.len() {
            if cw[j] > 0.0 {
                g -= cw[j] / tot * (qs[j] / tot).ln();
            }
        }
        g
    };
    let value = if falsified_after > 0 {
        f64::NEG_INFINITY
    } else {
        g_from(&class_w, &q_sum, logq_sum.iter().sum())
    };
    let h_y = entropy_of_counts(&class_w);
    // Per-sample G measures: the negative mass and the most misleading samples.
    let ln_tj: Vec<f64> = tj.iter().map(|t| t.ln()).collect();
    let mut neg_w = 0.0;
    let mut worst_k = WorstK::new(params.worst_samples);
    for s in 0..n {
        let ws = w.as_ref().map_or(1.0, |w| w[s]);
        let y = input.labels[s] as usize;
        let v = logq[s] - ln_tj[y];
        if ws > 0.0 {
            if v < 0.0 {
                neg_w += ws;
            }
            worst_k.push(v, s);
        }
    }
    let worst_list: Vec<Value> = worst_k.into_sorted()
        .into_iter()
        .map(|(v, s)| {
            json!({"index": s, "label": input.labels[s], "value": num(v), "falsified": v == f64::NEG_INFINITY,
                   "q_true": q[[s, input.labels[s] as usize]]})
        })
        .collect();
    let per_class: Vec<Value> = (0..k)
        .map(|j| {
            let mut d = json!({
                "class": j,
                "p_y": num(class_w[j] / wt),
                "logical_prob": num(tj[j]),
            });
            if class_w[j] > 0.0 {
                d["semantic_kl"] = num(logq_sum[j] / class_w[j] - tj[j].ln());
                d["upper_bound"] = num((wt / class_w[j]).ln());
            } else {
                d["semantic_kl"] = Value::Null;
                d["semantic_kl_reason"] = json!("class never occurs as a true label in the batch");
            }
            d
        })
        .collect();
    // Entropies with T normalised to max 1 per class (over the batch's instances).
    let mut sem_h = 0.0;
    let mut fuzzy = 0.0;
    let mut ent_ok = true;
    for j in 0..k {
        if class_w[j] > 0.0 {
            if colmax[j] <= 0.0 {
                ent_ok = false;
                continue;
            }
            sem_h -= class_w[j] / wt * (tj[j] / colmax[j]).ln();
            fuzzy -= (logq_sum[j] - class_w[j] * colmax[j].ln()) / wt;
        }
    }
    let ce = -logq_sum.iter().sum::<f64>() / wt;
    let (norm, norm_reason) = ratio_or_null(
        value,
        h_y,
        "the upper bound H(Y) is 0 (a single true class)",
    );
    let bound = score_channel_mi(&q, input.labels, k, w.as_deref(), params.seed, score_rows);
    let (eff, eff_reason) = match bound.value {
        Some(r) => ratio_or_null(
            value,
            r,
            "the Shannon MI between the label and the model's probabilities is 0",
        ),
        None => (Value::Null, Some(bound.reason.clone())),
    };
    let mut details = json!({
        "mode": "probabilities",
        "upper_bound": num(h_y),
        "upper_bound_kind": "plug-in H(Y): the LBI-matched SeMI with each sample a distinct instance",
        "normalized_semantic_mi": norm,
        "efficiency": eff,
        "efficiency_kind": "G/R with R = I(Y; q(X)), the Shannon MI between the true label and the model's probability vector (Lu's information efficiency; 1 when the probabilities are calibrated)",
        "shannon_bound": bound.value.map_or(Value::Null, num),
        "shannon_bound_method": bound.method,
        "shannon_bound_n": bound.n,
        "per_class": per_class,
        "semantic_entropy": if ent_ok && falsified == 0 { num(sem_h) } else { Value::Null },
        "fuzzy_entropy": if ent_ok && falsified == 0 { num(fuzzy) } else { Value::Null },
        "entropy_normalisation": "truth functions divided by their maximum over the batch (per class)",
        "negative_fraction": num(neg_w / wt),
        "worst_samples": worst_list,
        "falsified_samples": falsified,
        "cross_entropy": if falsified == 0 { num(ce) } else { Value::Null },
        "ce_bound": if falsified == 0 { num(h_y - ce) } else { Value::Null },
        "lbi_truth_matrix": Value::Null,
        "lbi_truth_matrix_reason": "in probabilities mode each sample is its own instance; T* is 1 on the true label and 0 elsewhere",
        "bootstrap_blocks_used": m,
        "weighted": w.is_some(),
    });
    if let Some(r) = eff_reason {
        details["efficiency_reason"] = json!(r);
    }
    if let Some(r) = norm_reason {
        details["normalized_semantic_mi_reason"] = json!(r);
    }
    if falsified_after > 0 {
        details["neg_inf_reason"] = json!(format!(
            "{falsified} sample(s) give probability 0 to their true class, so their semantic information is -inf (floor: \"none\")"
        ));
    }
    if let Some(f) = floor {
        let zero_total: f64 = zero_w.iter().sum();
        details["floor"] = num(f);
        details["floor_kind"] = json!(if stated_floor.is_some() {
            "stated: every truth value of a true class below it is read as it"
        } else {
            "auto: half the data's resolution; a true class with probability 0 is read as it"
        });
        details["floored_samples"] = json!(floored);
        details["floored_share"] = num(zero_total / wt);
        details["unfloored_value"] = if falsified > 0 {
            json!("-Infinity")
        } else {
            num(g_from(&class_w, &q_sum, unfloored_logq + floored_logq))
        };
    }
    let interval = if params.bootstrap > 0 && value.is_finite() {
        let reps = block_bootstrap(&stats, width, params.bootstrap, &mut rng, ctl, |acc| {
            g_from(&acc[..k], &acc[k..2 * k], acc[2 * k])
        })?;
        basic_interval(value, &reps, params.confidence, METHOD_BLOCKS)
    } else {
        None
    };
    let sufficient = json!({
        "kind": "probabilities",
        "k": k,
        "class_w": class_w,
        "q_sum": q_sum,
        "logq_sum": logq_sum,
        "falsified": falsified_after,
        "floored": floored,
    });
    let mut diagnostics = Diagnostics::default();
    bootstrap_checks(&mut diagnostics, value, interval.as_ref(), &class_w);
    semantic_checks(&mut diagnostics, falsified_after, &class_w, &tj);
    if let (Some(f), true) = (floor, floored > 0) {
        diagnostics.add(Reliability::Caution, "floored_truth_values", format!(
            "{floored} sample(s) give their true class a truth value below the floor {f}: read as {f} (the value without the floor: {})",
            if falsified > 0 { "-inf".to_string() } else { "in details.unfloored_value".to_string() }
        ));
    }
    Ok(Output {
        value,
        interval,
        n,
        details,
        sufficient: Some(sufficient),
        diagnostics,
    })
}

/// What the one pass over the probability matrix gathers in probabilities mode.
struct Scan {
    /// Per-block statistics for the bootstrap, `width` values per block (empty without it):
    /// [W_j (k) | Q_j (k) | Σ w ln q(y|x) | weight of floored truth values].
    stats: Vec<f64>,
    /// Weight of each true class.
    class_w: Vec<f64>,
    /// Column sums of q (weighted).
    q_sum: Vec<f64>,
    /// Σ w ln q(y|x) per true class, over the samples above the floor.
    logq_sum: Vec<f64>,
    /// Column maxima of q.
    colmax: Vec<f64>,
    /// ln q(y|x) per sample.
    logq: Vec<f64>,
    /// Samples with q(y|x) = 0.
    falsified: usize,
    /// Weight per true class of the samples below the floor.
    zero_w: Vec<f64>,
    /// Samples below the floor.
    floored: usize,
    /// Σ w ln q(y|x) of the floored samples with q(y|x) > 0.
    floored_logq: f64,
}

/// The single pass of probabilities mode: validation, column sums (overall and per block),
/// column maxima, the per-class log terms. False when a value is negative or NaN (values above 1
/// show in the column maxima). Compiled for the baseline CPU and for AVX2 (see
/// [`crate::estimate::simd`]); both give the same bits.
/// Rows ahead of the one being read whose cache lines are requested (see `simd::prefetch`).
const AHEAD: usize = 4;

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn scan_body(
    q: &ArrayView2<'_, f64>,
    labels: &[u32],
    w: Option<&[f64]>,
    block: &[u32],
    width: usize,
    stated_floor: Option<f64>,
    ctl: &Control<'_>,
    sc: &mut Scan,
) -> Result<bool, EstimateError> {
    let n = labels.len();
    let k = sc.class_w.len();
    let track_blocks = !sc.stats.is_empty();
    let mut scratch = Vec::new();
    // A standard-layout matrix is read as one slice, row after row (no view per row).
    let whole = q.as_slice().filter(|_| k > 0);
    for pos in 0..n {
        if pos % 65_536 == 0 && pos > 0 {
            ctl.tick(0.0)?;
        }
        let s = pos;
        let ws = w.map(|w| w[s]);
        let y = labels[s] as usize;
        let row = match whole {
            Some(all) => {
                if let Some(ahead) = all.get((s + AHEAD) * k..(s + AHEAD + 1) * k) {
                    crate::estimate::simd::prefetch(ahead);
                }
                &all[s * k..(s + 1) * k]
            }
            None => row_slice(q, s, &mut scratch),
        };
        if !accumulate_row(row, ws, &mut sc.q_sum, &mut sc.colmax) {
            return Ok(false);
        }
        let ws = ws.unwrap_or(1.0);
        let b = if track_blocks {
            let b = block[s] as usize * width;
            for (a, &v) in sc.stats[b + k..b + 2 * k].iter_mut().zip(row) {
                *a += ws * v;
            }
            Some(b)
        } else {
            None
        };
        let qy = row[y];
        let below = match stated_floor {
            Some(f) => qy < f,
            None => qy <= 0.0,
        };
        let lq = qy.ln();
        sc.logq[s] = lq;
        if ws > 0.0 {
            sc.class_w[y] += ws;
            if let Some(b) = b {
                sc.stats[b + y] += ws;
            }
            if !below {
                sc.logq_sum[y] += ws * lq;
                if let Some(b) = b {
                    sc.stats[b + 2 * k] += ws * lq;
                }
            } else {
                sc.zero_w[y] += ws;
                sc.floored += 1;
                if qy <= 0.0 {
                    sc.falsified += 1;
                } else {
                    sc.floored_logq += ws * lq;
                }
                if let Some(b) = b {
                    sc.stats[b + 2 * k + 1] += ws;
                }
            }
        }
    }
    Ok(true)
}

crate::estimate::simd::dispatched! {
    /// [`scan_body`] on the widest vector unit the CPU has.
    #[allow(clippy::too_many_arguments)]
    fn scan / scan_body(
        q: &ArrayView2<'_, f64>,
        labels: &[u32],
        w: Option<&[f64]>,
        block: &[u32],
        width: usize,
        stated_floor: Option<f64>,
        ctl: &Control<'_>,
        sc: &mut Scan,
    ) -> Result<bool, EstimateError>
}

/// The semantic checks: −∞ values (a used label that is never true for its sample) and labels
/// whose logical probability T(θ_j) is so small that ln T(θ_j) rests on a handful of samples.
fn semantic_checks(d: &mut Diagnostics, falsified: usize, class_w: &[f64], logical: &[f64]) {
    if falsified > 0 {
        d.add(Reliability::Caution, "minus_infinity", format!(
            "{falsified} sample(s) give truth value 0 to their label: the value is -inf (correct for the data, without an interval)"
        ));
    }
    if let Some((j, t)) = logical
        .iter()
        .enumerate()
        .filter(|(j, _)| class_w.get(*j).is_some_and(|&c| c > 0.0))
        .find(|(_, &t)| t > 0.0 && t < 1e-4)
    {
        d.add(Reliability::Caution, "tiny_logical_probability", format!(
            "label {j} has logical probability {t:.2e}: ln T(theta_j) is dominated by very few samples"
        ));
    }
}

fn check_truth_matrix(t: &ArrayView2<'_, f64>, k: usize) -> Result<(), EstimateError> {
    if t.dim() != (k, k) {
        return Err(EstimateError::invalid(format!(
            "truth_matrix has shape {:?}, expected ({k}, {k}) (true class x predicted class)",
            t.dim()
        )));
    }
    for ((r, c), &v) in t.indexed_iter() {
        if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
            return Err(EstimateError::invalid(format!(
                "truth_matrix[{r}][{c}] is {v}; truth values must be in [0, 1]"
            )));
        }
    }
    Ok(())
}

fn matrix_json(m: &ndarray::Array2<f64>) -> Value {
    Value::Array(
        m.rows()
            .into_iter()
            .map(|r| Value::Array(r.iter().map(|&v| num(v)).collect()))
            .collect(),
    )
}

fn channel_mode(
    input: &ClassInput<'_>,
    truth: Option<ArrayView2<'_, f64>>,
    n: usize,
    params: &Params,
    ctl: &Control<'_>,
) -> Result<Output, EstimateError> {
    let k = input.k;
    if let Some(t) = &truth {
        check_truth_matrix(t, k)?;
    }
    let w = normalized_weights(input.weights, n)?;
    ctl.tick(0.0)?;
    let table = Table::from_pairs(input.labels, input.predictions, k, k, w.as_deref());
    let lbi = lbi_truth(&table);
    let tm = match &truth {
        Some(t) => t.view(),
        None => lbi.view(),
    };
    let cs = channel_semantics(&table, tm);
    let value = if truth.is_none() && cs.g.is_finite() {
        // T* on the same table: G equals the plug-in MI exactly; use its accurate form.
        cs.shannon
    } else {
        cs.g
    };
    // Per-sample (cell) G values for worst_samples.
    let mut per_sample = Vec::with_capacity(n);
    let mut falsified = 0usize;
    for s in 0..n {
        let ws = w.as_ref().map_or(1.0, |w| w[s]);
        if ws <= 0.0 {
            continue;
        }
        let (i, j) = (input.labels[s] as usize, input.predictions[s] as usize);
        let tv = tm[[i, j]];
        let v = if tv > 0.0 {
            (tv / cs.logical_prob[j]).ln()
        } else {
            f64::NEG_INFINITY
        };
        if tv <= 0.0 {
            falsified += 1;
        }
        per_sample.push((v, s));
    }
    let worst_list: Vec<Value> = worst(per_sample, params.worst_samples)
        .into_iter()
        .map(|(v, s)| {
            json!({"index": s, "label": input.labels[s], "prediction": input.predictions[s],
                   "value": num(v), "falsified": v == f64::NEG_INFINITY})
        })
        .collect();
    let per_class: Vec<Value> = (0..k)
        .map(|j| {
            let mut d = json!({
                "class": j,
                "p_y": num(cs.p_y[j]),
                "logical_prob": num(cs.logical_prob[j]),
            });
            match cs.per_label[j] {
                Some(v) => d["semantic_kl"] = num(v),
                None => {
                    d["semantic_kl"] = Value::Null;
                    d["semantic_kl_reason"] = json!("class is never predicted in the batch");
                }
            }
            d
        })
        .collect();
    let mode = if truth.is_some() {
        "truth_matrix"
    } else {
        "lbi"
    };
    let (eff, eff_reason) = ratio_or_null(
        value,
        cs.shannon,
        "the Shannon MI of the confusion table is 0, so the efficiency is undefined",
    );
    let finite = value.is_finite();
    let mut details = json!({
        "mode": mode,
        "upper_bound": num(cs.shannon),
        "upper_bound_kind": "plug-in Shannon MI of the confusion channel (G <= R)",
        "shannon_mi": num(cs.shannon),
        "kl_gap": if finite { num(cs.shannon - value) } else { Value::Null },
        "efficiency": eff,
        "per_class": per_class,
        "semantic_entropy": if finite { num(cs.semantic_entropy) } else { Value::Null },
        "fuzzy_entropy": if finite { num(cs.fuzzy_entropy) } else { Value::Null },
        "entropy_normalisation": "truth matrix columns divided by their maximum over true classes",
        "negative_fraction": num(cs.negative_fraction),
        "worst_samples": worst_list,
        "falsified_samples": falsified,
        "confusion": table.to_json(),
        "weighted": w.is_some(),
    });
    if k <= 100 {
        details["lbi_truth_matrix"] = matrix_json(&lbi);
    } else {
        details["lbi_truth_matrix"] = Value::Null;
        details["lbi_truth_matrix_reason"] = json!("omitted for more than 100 classes");
    }
    if let Some(r) = eff_reason {
        details["efficiency_reason"] = json!(r);
    }
    if falsified > 0 {
        details["neg_inf_reason"] = json!(format!(
            "{falsified} sample(s) fall in (true, predicted) pairs whose truth value is 0, so their semantic information is -inf"
        ));
    }
    let interval = if params.bootstrap > 0 && finite {
        bootstrap_channel(&table, truth, value, params, ctl)?
    } else {
        None
    };
    let mut sufficient = json!({
        "kind": "channel",
        "mode": mode,
        "k": k,
        "entries": table.entries_json(),
    });
    if let Some(t) = &truth {
        sufficient["truth_matrix"] = matrix_json(&t.to_owned());
    }
    let mut diagnostics = Diagnostics::default();
    bootstrap_checks(&mut diagnostics, value, interval.as_ref(), &table.row_sums);
    semantic_checks(
        &mut diagnostics,
        falsified,
        &table.col_sums,
        &cs.logical_prob,
    );
    if truth.is_none() {
        // LBI fitted on the same table: G equals the plug-in Shannon MI and shares its bias.
        let c = super::shannon::corrected_mi(&table, None);
        for r in super::shannon::table_diagnostics(&table, &c, None).reasons {
            diagnostics.add(
                r.severity,
                &r.code,
                format!("{} (LBI mode is the plug-in Shannon MI)", r.message),
            );
        }
    }
    Ok(Output {
        value,
        interval,
        n,
        details,
        sufficient: Some(sufficient),
        diagnostics,
    })
}

fn bootstrap_channel(
    table: &Table,
    truth: Option<ArrayView2<'_, f64>>,
    value: f64,
    params: &Params,
    ctl: &Control<'_>,
) -> Result<Option<Interval>, EstimateError> {
    let mut rng = SplitMix64::new(params.seed);
    let mut res = TableResampler::new(table);
    let mut reps = Vec::with_capacity(params.bootstrap);
    for b in 0..params.bootstrap {
        ctl.tick(b as f64 / params.bootstrap as f64)?;
        res.draw(&mut rng);
        let total = res.total();
        let g = match &truth {
            Some(t) => channel_g_counts(table, &res.counts, &res.row_sums, total, t.view()),
            // Re-fitting T* on the replicate gives its plug-in Shannon MI exactly.
            None => mi_from_parts(
                &res.counts,
                &table.rows,
                &table.cols,
                &res.row_sums,
                &res.col_sums,
                total,
            ),
        };
        reps.push(g);
    }
    ctl.tick(1.0)?;
    Ok(basic_interval(
        value,
        &reps,
        params.confidence,
        METHOD_TABLE,
    ))
}

fn f64s(v: &Value) -> Option<Vec<f64>> {
    v.as_array()?.iter().map(Value::as_f64).collect()
}

fn add_into(acc: &mut Vec<f64>, v: &[f64]) -> Option<()> {
    if acc.is_empty() {
        *acc = vec![0.0; v.len()];
    }
    if acc.len() != v.len() {
        return None;
    }
    acc.iter_mut().zip(v).for_each(|(a, b)| *a += b);
    Some(())
}

/// Pool `semantic_mi` sufficient statistics exactly (sums of weights, of logs and of T).
pub(crate) fn pool_sufficient(suff: &[Value]) -> Option<f64> {
    let kind = suff[0].get("kind")?.as_str()?;
    if suff
        .iter()
        .any(|s| s.get("kind").and_then(Value::as_str) != Some(kind))
    {
        return None;
    }
    match kind {
        "probabilities" => {
            let (mut cw, mut qs, mut ls) = (Vec::new(), Vec::new(), Vec::new());
            let mut fals = 0u64;
            for s in suff {
                add_into(&mut cw, &f64s(s.get("class_w")?)?)?;
                add_into(&mut qs, &f64s(s.get("q_sum")?)?)?;
                add_into(&mut ls, &f64s(s.get("logq_sum")?)?)?;
                fals += s.get("falsified")?.as_u64()?;
            }
            if fals > 0 {
                return Some(f64::NEG_INFINITY);
            }
            let tot: f64 = cw.iter().sum();
            let mut g = ls.iter().sum::<f64>() / tot;
            for j in 0..cw.len() {
                if cw[j] > 0.0 {
                    g -= cw[j] / tot * (qs[j] / tot).ln();
                }
            }
            Some(g)
        }
        "channel" => {
            let mode = suff[0].get("mode")?.as_str()?;
            let k = suff[0].get("k")?.as_u64()? as usize;
            let tm = suff[0].get("truth_matrix").cloned();
            let mut entries = Vec::new();
            for s in suff {
                if s.get("mode")?.as_str()? != mode
                    || s.get("k")?.as_u64()? as usize != k
                    || s.get("truth_matrix").cloned() != tm
                {
                    return None;
                }
                let t = Table::from_entries_json(k, k, s.get("entries")?)?;
                for i in 0..t.nnz() {
                    entries.push((t.rows[i], t.cols[i], t.counts[i]));
                }
            }
            let table = Table::from_entries(k, k, entries);
            match tm {
                None => Some(plugin_mi(&table)),
                Some(tm) => {
                    let rows = tm.as_array()?;
                    let mut m = ndarray::Array2::<f64>::zeros((k, k));
                    for (i, r) in rows.iter().enumerate() {
                        for (j, v) in f64s(r)?.into_iter().enumerate() {
                            *m.get_mut([i, j])? = v;
                        }
                    }
                    Some(channel_semantics(&table, m.view()).g)
                }
            }
        }
        "multilabel" => {
            let (mut nn, mut a, mut q, mut c) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let mut wt = 0.0;
            let mut fals: Vec<f64> = Vec::new();
            for s in suff {
                wt += s.get("w_total")?.as_f64()?;
                add_into(&mut nn, &f64s(s.get("n")?)?)?;
                add_into(&mut a, &f64s(s.get("logs_sum")?)?)?;
                add_into(&mut q, &f64s(s.get("score_sum")?)?)?;
                add_into(&mut c, &f64s(s.get("ylogy_sum")?)?)?;
                add_into(&mut fals, &f64s(s.get("falsified")?)?)?;
            }
            let n_sum: f64 = nn.iter().sum();
            if n_sum <= 0.0 {
                return None;
            }
            let mut v = 0.0;
            for j in 0..nn.len() {
                if nn[j] > 0.0 {
                    if fals[j] > 0.0 {
                        return Some(f64::NEG_INFINITY);
                    }
                    v += nn[j] / n_sum * (a[j] / nn[j] - (q[j] / wt).ln());
                }
            }
            Some(v)
        }
        _ => None,
    }
}

#[cfg(test)]
#[path = "../tests_semantic.rs"]
mod tests;
