//! Neural variational lower bounds on MI (`infonce`, `mine`, `nwj`, `smile`) with a small MLP
//! critic trained by Adam; hand-derived gradients (no autodiff), ndarray only.
//!
//! Bounds on a batch with score matrix S_ij = T(x_i, y_j) (diagonal = joint pairs, off-diagonal =
//! product-of-marginals pairs; anchors §5):
//! - InfoNCE: log B + mean_i [S_ii − logsumexp_j S_ij] (≤ log B); gradient (δ_ij − softmax_j)/B;
//! - MINE: Donsker–Varadhan mean diag S − log mean_{i≠j} e^{S_ij}; the gradient of the partition
//!   term is divided by a moving average of mean_{i≠j} e^{S_ij} (rate `ma_rate`) instead of the
//!   batch value (Belghazi et al. 2018), which de-biases the minibatch gradient;
//! - NWJ: mean diag S − e^{−1} mean_{i≠j} e^{S_ij};
//! - SMILE (Song & Ermon 2020): value mean diag S − log mean_{i≠j} clip(e^{S_ij}, e^{−τ}, e^{τ});
//!   the critic is trained with the Jensen–Shannon (f-GAN) objective, as in their code.
//!
//! Protocol (and how selection bias is avoided): the rows are shuffled (seeded) and split into a
//! training part (1 − `test_fraction`) and a held-out part, which is split again into a
//! *validation* half and a *test* half. The critic is trained on minibatches of the training part;
//! every `eval_every` steps the bound is evaluated on the validation half; training stops after
//! `patience` evaluations without improvement (or at `max_steps`). The critic of the best
//! validation step is kept, and the **reported value is that fixed critic's bound on the test
//! half**, which played no part in training or selection (bmi instead reports the maximum of its
//! test curve, which is optimistic).
//!
//! Held-out evaluation: the rows are cut into near-equal blocks of at most `eval_batch_size`; the
//! negatives of a row are the other rows of its block. InfoNCE's value is the mean of per-row terms
//! each ≤ log(block size): `log_batch_ceiling` in `details` is the mean of log(block size).
//!
//! Intervals. InfoNCE, MINE (DV) and NWJ are lower bounds on I for any fixed critic, and the
//! held-out value estimates the bound of the trained critic; the variational gap I − bound is not
//! observable from the data. The honest interval is one-sided: the lower confidence bound
//! value − z·sd with z = Φ⁻¹(level) (one-sided), and no upper end (`ci_high` null). sd comes from
//! a bootstrap over the test rows of the per-row terms (critic and within-block negatives fixed;
//! 200 replicates); with `restarts > 1` (independent critics with derived seeds on the same split)
//! the value is their mean and the between-restart variance / R is added. SMILE clips the
//! partition terms to [e^−τ, e^τ] and is therefore neither a lower nor an upper bound (with the
//! optimal critic at I = 5 nats and τ = 5 it reads 5.19 ± 0.05): its interval is two-sided,
//! value ± z·sd, about the fixed critic's SMILE statistic, and it does not cover SMILE's bias;
//! `details.clipped_mass_fraction` says how much of the partition mass the clipping changed.
//!
//! InfoNCE saturation: with B rows per held-out block, InfoNCE's expectation at the optimal critic
//! is about I − ln(1 + (e^I − 1)/B) (≤ ln B). `saturated` is set when (e^value − 1)/B > 0.02,
//! i.e. value > ln(1 + 0.02·B) ≈ ln B − 3.9, where that gap exceeds ~0.02 nats and grows fast:
//! the value is then a loose lower bound.
//!
//! Version 2 (this file): one-sided intervals for the bounds, SMILE's two-sided interval and
//! clipped mass, the earlier saturation flag. Version 1 stretched the upper end to the in-sample
//! value, which covered I = 4 nats 2 % of the time, and flagged saturation only within 1 nat of
//! ln B.

mod bounds;
mod critic;

use super::rng::SplitMix64;
use super::{
    check_choice, num, Control, Diagnostics, EstimateError, Interval, Output, Reliability,
};
use crate::stats::normal_quantile;
use bounds::*;
use critic::*;
use ndarray::{s, Array2, ArrayView2, Axis, Zip};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub const VERSION: &str = "2.0.0";

/// Which variational bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    InfoNce,
    Mine,
    Nwj,
    Smile,
}

impl Bound {
    /// The estimator id.
    pub fn id(self) -> &'static str {
        match self {
            Bound::InfoNce => "infonce",
            Bound::Mine => "mine",
            Bound::Nwj => "nwj",
            Bound::Smile => "smile",
        }
    }

    pub fn from_id(id: &str) -> Option<Bound> {
        match id {
            "infonce" => Some(Bound::InfoNce),
            "mine" => Some(Bound::Mine),
            "nwj" => Some(Bound::Nwj),
            "smile" => Some(Bound::Smile),
            _ => None,
        }
    }
}

/// Interval method string of the lower bounds (InfoNCE, MINE, NWJ).
pub const INTERVAL_METHOD: &str = "one-sided lower confidence bound [value - z*sd, +inf) with z the one-sided normal quantile; sd from a bootstrap (200 replicates) of the per-row held-out terms with the trained critic fixed, plus the between-restart variance / R when restarts > 1; the variational gap (I - bound) is not covered, so there is no upper end";
/// Interval method string of SMILE.
pub const INTERVAL_METHOD_SMILE: &str = "two-sided value +/- z*sd about the fixed critic's SMILE statistic (sd as for the bounds); SMILE's clipping bias is not covered: SMILE is not a bound";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Hidden layer widths of the critic MLP(s).
    pub hidden: Vec<usize>,
    /// "relu", "tanh" or "leaky_relu" (slope 0.01).
    pub activation: String,
    /// "separable" (g(x)ᵀh(y), two MLPs with `embed_dim` outputs) or "concat" (MLP([x, y]) → 1).
    pub critic: String,
    /// Output width of each tower of the separable critic.
    pub embed_dim: usize,
    /// Training minibatch size (the batch provides the negatives).
    pub batch_size: usize,
    /// Maximum block size for held-out evaluation.
    pub eval_batch_size: usize,
    /// Adam step size.
    pub learning_rate: f64,
    /// Decoupled weight decay (AdamW): each step multiplies the weights by 1 − lr·weight_decay.
    pub weight_decay: f64,
    pub max_steps: usize,
    /// Evaluate on the validation half every this many steps.
    pub eval_every: usize,
    /// Stop after this many evaluations without improvement.
    pub patience: usize,
    /// Held-out fraction (split in half: validation for selection, test for the reported value).
    pub test_fraction: f64,
    /// z-score every column with the training part's mean and std.
    pub standardize: bool,
    pub seed: u64,
    /// SMILE clip τ.
    pub tau: f64,
    /// MINE moving-average rate α (ema ← (1−α)·ema + α·batch).
    pub ma_rate: f64,
    /// Refuse below this many samples.
    pub min_samples: usize,
    /// Independent critics (seeds derived from `seed`); the value is their mean.
    pub restarts: usize,
    /// Interval level in (0, 1).
    pub confidence: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            hidden: vec![32, 32],
            activation: "tanh".into(),
            critic: "separable".into(),
            embed_dim: 8,
            batch_size: 128,
            eval_batch_size: 512,
            learning_rate: 2e-3,
            weight_decay: 0.0,
            max_steps: 3000,
            eval_every: 100,
            patience: 5,
            test_fraction: 0.5,
            standardize: true,
            seed: 0,
            tau: 5.0,
            ma_rate: 0.01,
            min_samples: 256,
            restarts: 1,
            confidence: 0.95,
        }
    }
}

impl Params {
    pub fn validate(&self) -> Result<(), String> {
        check_choice(
            "activation",
            &self.activation,
            &["relu", "tanh", "leaky_relu"],
        )?;
        check_choice("critic", &self.critic, &["separable", "concat"])?;
        if self.hidden.len() > 8 || self.hidden.iter().any(|&h| !(1..=1024).contains(&h)) {
            return Err(format!(
                "hidden must list at most 8 layer widths between 1 and 1024 (got {:?})",
                self.hidden
            ));
        }
        if !(1..=1024).contains(&self.embed_dim) {
            return Err(format!(
                "embed_dim must be between 1 and 1024 (got {})",
                self.embed_dim
            ));
        }
        if !(2..=4096).contains(&self.batch_size) {
            return Err(format!(
                "batch_size must be between 2 and 4096 (got {})",
                self.batch_size
            ));
        }
        if !(2..=8192).contains(&self.eval_batch_size) {
            return Err(format!(
                "eval_batch_size must be between 2 and 8192 (got {})",
                self.eval_batch_size
            ));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate <= 1.0) {
            return Err(format!(
                "learning_rate must be in (0, 1] (got {})",
                self.learning_rate
            ));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay < 100.0) {
            return Err(format!(
                "weight_decay must be in [0, 100) (got {})",
                self.weight_decay
            ));
        }
        if !(1..=1_000_000).contains(&self.max_steps) {
            return Err(format!(
                "max_steps must be between 1 and 1000000 (got {})",
                self.max_steps
            ));
        }
        if self.eval_every == 0 || self.patience == 0 {
            return Err("eval_every and patience must be at least 1".into());
        }
        if !(self.test_fraction > 0.0 && self.test_fraction < 1.0) {
            return Err(format!(
                "test_fraction must be strictly between 0 and 1 (got {})",
                self.test_fraction
            ));
        }
        if !(self.tau > 0.0 && self.tau.is_finite()) {
            return Err(format!("tau must be positive (got {})", self.tau));
        }
        if !(self.ma_rate > 0.0 && self.ma_rate <= 1.0) {
            return Err(format!("ma_rate must be in (0, 1] (got {})", self.ma_rate));
        }
        if self.min_samples < 16 {
            return Err(format!(
                "min_samples must be at least 16 (got {})",
                self.min_samples
            ));
        }
        if !(1..=32).contains(&self.restarts) {
            return Err(format!(
                "restarts must be between 1 and 32 (got {})",
                self.restarts
            ));
        }
        if !(self.confidence > 0.0 && self.confidence < 1.0) {
            return Err(format!(
                "confidence must be strictly between 0 and 1 (got {})",
                self.confidence
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Training
// ---------------------------------------------------------------------------------------------

struct Run {
    value: f64,
    in_sample: f64,
    clipped_mass_fraction: f64,
    clipped_fraction: f64,
    boot_var: f64,
    validation: f64,
    selected_step: usize,
    steps_run: usize,
    stopped_early: bool,
    curve: Vec<(usize, f64, f64)>,
    log_ceiling: f64,
    seed: u64,
}

fn gather(a: &Array2<f64>, rows: &[usize]) -> Array2<f64> {
    a.select(Axis(0), rows)
}

#[allow(clippy::too_many_arguments)]
fn train_one(
    bound: Bound,
    train: (&Array2<f64>, &Array2<f64>),
    val: (&Array2<f64>, &Array2<f64>),
    test: (&Array2<f64>, &Array2<f64>),
    p: &Params,
    seed: u64,
    ctl: &Control,
    progress: (f64, f64),
) -> Result<Run, EstimateError> {
    let mut g = SplitMix64::new(seed);
    let (dx, dy) = (train.0.ncols(), train.1.ncols());
    let mut net = Net::new(dx, dy, p, &mut g);
    let mut adam = Adam::new(&net, p.learning_rate, p.weight_decay);
    let n_train = train.0.nrows();
    let bsz = p.batch_size.min(n_train);
    let mut perm: Vec<usize> = (0..n_train).collect();
    let mut cursor = n_train; // forces a shuffle first
    let mut log_ema: Option<f64> = None;
    let mut best = f64::NEG_INFINITY;
    let mut best_net = net.clone();
    let mut best_step = 0;
    let mut since = 0;
    let mut curve = Vec::new();
    let mut train_acc = 0.0;
    let mut train_cnt = 0usize;
    let mut steps_run = 0;
    let mut stopped_early = false;
    let mut batch = vec![0usize; bsz];
    for step in 1..=p.max_steps {
        for slot in batch.iter_mut() {
            if cursor == n_train {
                for i in (1..n_train).rev() {
                    perm.swap(i, g.below(i + 1));
                }
                cursor = 0;
            }
            *slot = perm[cursor];
            cursor += 1;
        }
        let xb = gather(train.0, &batch);
        let yb = gather(train.1, &batch);
        let (s, fwd) = net.forward(xb.view(), yb.view());
        let (v, ds) = batch_objective(bound, &s, p, &mut log_ema);
        let grads = net.backward(fwd, ds);
        if grads.iter().all(|gm| gm.iter().all(|x| x.is_finite())) {
            adam.step(&mut net, &grads);
        }
        if v.is_finite() {
            train_acc += v;
            train_cnt += 1;
        }
        steps_run = step;
        if step % p.eval_every == 0 || step == p.max_steps {
            let hv = evaluate(
                &net,
                bound,
                val.0.view(),
                val.1.view(),
                p.eval_batch_size,
                p.tau,
            )
            .value();
            let tv = if train_cnt > 0 {
                train_acc / train_cnt as f64
            } else {
                f64::NAN
            };
            curve.push((step, tv, hv));
            train_acc = 0.0;
            train_cnt = 0;
            if hv.is_finite() && hv > best {
                best = hv;
                best_step = step;
                best_net = net.clone();
                since = 0;
            } else {
                since += 1;
                if since >= p.patience {
                    stopped_early = true;
                    break;
                }
            }
        }
        ctl.tick(progress.0 + progress.1 * step as f64 / p.max_steps as f64)?;
    }
    if best_step == 0 {
        // never a finite validation value: keep the initial-like last critic for reporting
        best_net = net;
    }
    let terms = evaluate(
        &best_net,
        bound,
        test.0.view(),
        test.1.view(),
        p.eval_batch_size,
        p.tau,
    );
    let value = terms.value();
    // in-sample value of the same critic on as many training rows (same blocking): optimistic by
    // its overfitting; reported (train/held-out gap), not used for the interval
    let m = test.0.nrows().min(train.0.nrows());
    let in_sample = evaluate(
        &best_net,
        bound,
        train.0.slice(s![..m, ..]),
        train.1.slice(s![..m, ..]),
        p.eval_batch_size,
        p.tau,
    )
    .value();
    let boot_var = bootstrap_var(&terms, seed);
    Ok(Run {
        value,
        in_sample,
        clipped_mass_fraction: terms.clipped_mass_fraction(),
        clipped_fraction: if terms.pairs > 0 {
            terms.clipped as f64 / terms.pairs as f64
        } else {
            0.0
        },
        boot_var,
        validation: best,
        selected_step: best_step,
        steps_run,
        stopped_early,
        curve,
        log_ceiling: terms.log_ceiling,
        seed,
    })
}

/// Variance of the value over 200 bootstrap resamples of the rows' terms (critic and within-block
/// negatives fixed).
fn bootstrap_var(terms: &Terms, seed: u64) -> f64 {
    let n = terms.a.len();
    let mut bg = SplitMix64::new(seed ^ 0xB007_5742_0000_0001);
    let reps = 200;
    let mut vals = Vec::with_capacity(reps);
    let mut idx = vec![0usize; n];
    for _ in 0..reps {
        for r in idx.iter_mut() {
            *r = bg.below(n);
        }
        let v = terms.value_of(idx.iter().copied());
        if v.is_finite() {
            vals.push(v);
        }
    }
    if vals.len() >= 2 {
        let m = vals.iter().sum::<f64>() / vals.len() as f64;
        vals.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (vals.len() - 1) as f64
    } else {
        f64::NAN
    }
}

/// The neural checks: InfoNCE near its ceiling, training still improving at the step cap, the
/// gap between the critic's value on training rows and on held-out rows (overfitting), the spread
/// across restarts, SMILE's nature, and a sample small for the dimension.
///
/// `small_sample` (caution) below N = max(1000, 100·(dx + dy)): the `--neural-sweep` bench
/// (benches/README.md) measured, with the default critic, biases of −0.16 to −0.27 nats (30–45 %)
/// on the 5×5 dense Gaussian (I = 0.593) at N = 256, −0.01 to −0.05 at N = 1000; on the 1×1
/// Gaussian (I = 0.413) biases within ±0.03 but a seed-to-seed sd of 0.06–0.09 up to N = 1000.
#[allow(clippy::too_many_arguments)]
fn neural_checks(
    bound: Bound,
    shape: (usize, usize),
    value: f64,
    sd: f64,
    in_sample: f64,
    log_ceiling: f64,
    runs: &[Run],
    p: &Params,
) -> Diagnostics {
    let mut d = Diagnostics::default();
    let (n, dims) = shape;
    let min_n = small_sample_below(dims);
    if n < min_n {
        d.add(Reliability::Caution, "small_sample", format!(
            "{n} rows for {dims} dimensions: below {min_n} rows, neural bounds were measured to read up to 45 % low and to vary by ±0.09 nats between seeds"
        ));
    }
    if bound == Bound::InfoNce && value.is_finite() {
        if value >= 0.9 * log_ceiling {
            d.add(Reliability::Unreliable, "saturated", format!(
                "InfoNCE {value:.3} is at least 0.9 of its ceiling ln B = {log_ceiling:.3}: the true MI may be far larger"
            ));
        } else if infonce_saturation(value, log_ceiling).0 {
            d.add(Reliability::Caution, "near_ceiling", format!(
                "InfoNCE {value:.3} is within reach of its ceiling ln B = {log_ceiling:.3}: (e^v - 1)/B > 0.02, so the bound's gap is noticeable"
            ));
        }
    }
    if runs
        .iter()
        .any(|r| !r.stopped_early && r.selected_step * 10 >= r.steps_run * 9)
    {
        d.add(Reliability::Caution, "still_improving", format!(
            "training reached max_steps = {} with the held-out bound still improving: a longer run may give a higher value",
            p.max_steps
        ));
    }
    let gap = in_sample - value;
    if gap.is_finite() && gap > (3.0 * sd).max(0.1) {
        d.add(Reliability::Caution, "overfitting", format!(
            "the critic scores {in_sample:.3} on training rows and {value:.3} on held-out rows: it overfits"
        ));
    }
    if runs.len() > 1 {
        let m = runs.iter().map(|r| r.value).sum::<f64>() / runs.len() as f64;
        let spread = (runs.iter().map(|r| (r.value - m).powi(2)).sum::<f64>()
            / (runs.len() - 1) as f64)
            .sqrt();
        let within = (runs.iter().map(|r| r.boot_var).sum::<f64>() / runs.len() as f64).sqrt();
        if spread > 3.0 * within && spread > 0.02 {
            d.add(Reliability::Caution, "seed_spread", format!(
                "restarts disagree (sd {spread:.3} across seeds against {within:.3} within one): the training is unstable"
            ));
        }
    }
    if bound == Bound::Smile {
        d.add(Reliability::Caution, "not_a_bound", "SMILE's clipping biases it either way: its interval is about its own statistic and does not cover the bias");
    }
    d
}

/// The rows below which a neural bound is flagged `small_sample`, for dx + dy dimensions.
pub fn small_sample_below(dims: usize) -> usize {
    1000usize.max(100 * dims)
}

/// InfoNCE's saturation from its value and the mean log block size: (saturated, the value above
/// which it is flagged, the gap ln(1 + (e^value − 1)/B) expected at the optimal critic).
fn infonce_saturation(value: f64, log_ceiling: f64) -> (bool, f64, f64) {
    let b = log_ceiling.exp();
    let threshold = (0.02 * b).ln_1p();
    (
        value > threshold,
        threshold,
        ((value.exp() - 1.0) / b).ln_1p(),
    )
}

/// The reported interval (see the module docs): one-sided for the bounds, two-sided for SMILE.
fn interval(
    bound: Bound,
    value: f64,
    sd: f64,
    confidence: f64,
    replicates: usize,
) -> Option<Interval> {
    if !(sd.is_finite() && value.is_finite()) {
        return None;
    }
    Some(if bound == Bound::Smile {
        let z = normal_quantile(0.5 * (1.0 + confidence));
        Interval {
            low: value - z * sd,
            high: value + z * sd,
            level: confidence,
            method: INTERVAL_METHOD_SMILE.to_string(),
            replicates,
        }
    } else {
        let z = normal_quantile(confidence);
        Interval {
            low: value - z * sd,
            high: f64::INFINITY,
            level: confidence,
            method: INTERVAL_METHOD.to_string(),
            replicates,
        }
    })
}

fn thin(curve: &[(usize, f64, f64)], max: usize) -> Vec<Value> {
    let stride = curve.len().div_ceil(max).max(1);
    curve
        .iter()
        .enumerate()
        .filter(|(i, _)| i % stride == 0 || *i + 1 == curve.len())
        .map(|(_, &(s, t, h))| json!({"step": s, "train": num(t), "held_out": num(h)}))
        .collect()
}

fn prepare(a: ArrayView2<f64>, name: &str) -> Result<Array2<f64>, EstimateError> {
    if let Some(((r, c), _)) = a.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return Err(EstimateError::invalid(format!(
            "{name} has a non-finite value at row {r}, column {c}"
        )));
    }
    Ok(a.to_owned())
}

/// z-score the columns of `a` with the mean and std of the rows `fit`.
fn zscore(a: &mut Array2<f64>, fit: &[usize]) {
    let n = fit.len() as f64;
    for mut col in a.columns_mut() {
        let mean = fit.iter().map(|&i| col[i]).sum::<f64>() / n;
        let var = fit.iter().map(|&i| (col[i] - mean).powi(2)).sum::<f64>() / n;
        let sd = if var > 0.0 { var.sqrt() } else { 1.0 };
        col.mapv_inplace(|v| (v - mean) / sd);
    }
}

/// Train critic(s) and report the held-out bound (see the module docs). `x`: N×dx, `y`: N×dy.
pub fn estimate(
    bound: Bound,
    x: ArrayView2<f64>,
    y: ArrayView2<f64>,
    p: &Params,
    ctl: &Control,
) -> Result<Output, EstimateError> {
    p.validate().map_err(EstimateError::Invalid)?;
    let (n, dx) = x.dim();
    let (ny, dy) = y.dim();
    if n != ny {
        return Err(EstimateError::invalid(format!(
            "x has {n} rows but y has {ny}"
        )));
    }
    if dx == 0 || dy == 0 {
        return Err(EstimateError::invalid(
            "x and y need at least one column each",
        ));
    }
    if n < p.min_samples {
        return Err(EstimateError::invalid(format!(
            "{} needs at least {} samples (got {n}): variational bounds trained on fewer samples are not reliable; use ksg instead or lower min_samples",
            bound.id(),
            p.min_samples
        )));
    }
    let mut xa = prepare(x, "x")?;
    let mut ya = prepare(y, "y")?;
    ctl.tick(0.0)?;
    // split: train | validation | test
    let mut g = SplitMix64::new(p.seed);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, g.below(i + 1));
    }
    let n_held = ((p.test_fraction * n as f64).round() as usize).clamp(4, n - 2);
    let n_val = n_held / 2;
    let (train_idx, held) = order.split_at(n - n_held);
    let (val_idx, test_idx) = held.split_at(n_val);
    if p.standardize {
        zscore(&mut xa, train_idx);
        zscore(&mut ya, train_idx);
    }
    let tr = (gather(&xa, train_idx), gather(&ya, train_idx));
    let va = (gather(&xa, val_idx), gather(&ya, val_idx));
    let te = (gather(&xa, test_idx), gather(&ya, test_idx));
    let r = p.restarts;
    let mut runs = Vec::with_capacity(r);
    for k in 0..r {
        let seed = p
            .seed
            .wrapping_add(0x9E37_79B9_7F4A_7C15u64.wrapping_mul(k as u64 + 1));
        runs.push(train_one(
            bound,
            (&tr.0, &tr.1),
            (&va.0, &va.1),
            (&te.0, &te.1),
            p,
            seed,
            ctl,
            (k as f64 / r as f64, 1.0 / r as f64),
        )?);
    }
    let rf = r as f64;
    let value = runs.iter().map(|q| q.value).sum::<f64>() / rf;
    let within = runs.iter().map(|q| q.boot_var).sum::<f64>() / rf;
    let between = if r > 1 {
        runs.iter().map(|q| (q.value - value).powi(2)).sum::<f64>() / (rf - 1.0) / rf
    } else {
        0.0
    };
    let sd = (within + between).sqrt();
    let in_sample = runs.iter().map(|q| q.in_sample).sum::<f64>() / rf;
    let interval = interval(bound, value, sd, p.confidence, 200 * r);
    let first = &runs[0];
    let ceiling = first.log_ceiling;
    let mut details = json!({
        "estimator": bound.id(),
        "version": VERSION,
        "n": n,
        "n_train": train_idx.len(),
        "n_validation": val_idx.len(),
        "n_test": test_idx.len(),
        "dx": dx,
        "dy": dy,
        "critic": p.critic,
        "selection": "critic of the best validation-half evaluation; value = its bound on the untouched test half",
        "train_curve": thin(&first.curve, 200),
        "selected_step": first.selected_step,
        "steps_run": first.steps_run,
        "stopped_early": first.stopped_early,
        "validation_value": num(first.validation),
        "in_sample_value": num(in_sample),
        "sd": num(sd),
        "seeds": runs.iter().map(|q| q.seed).collect::<Vec<_>>(),
        "restarts": runs.iter().map(|q| json!({
            "seed": q.seed,
            "value": num(q.value),
            "validation_value": num(q.validation),
            "selected_step": q.selected_step,
            "steps_run": q.steps_run,
        })).collect::<Vec<_>>(),
        "interval_method": if bound == Bound::Smile { INTERVAL_METHOD_SMILE } else { INTERVAL_METHOD },
        "train_batch_ceiling": (p.batch_size.min(train_idx.len()) as f64).ln(),
        "params": serde_json::to_value(p).unwrap_or(Value::Null),
    });
    let obj = details.as_object_mut().expect("object");
    obj.insert(
        "kind".into(),
        json!(if bound == Bound::Smile {
            "biased_estimator"
        } else {
            "lower_bound"
        }),
    );
    obj.insert(
        "interval_sides".into(),
        json!(if bound == Bound::Smile {
            "two_sided"
        } else {
            "lower"
        }),
    );
    if bound == Bound::InfoNce {
        let (saturated, threshold, gap) = infonce_saturation(value, ceiling);
        obj.insert("log_batch_ceiling".into(), num(ceiling));
        obj.insert("saturation_threshold".into(), num(threshold));
        obj.insert("saturated".into(), json!(saturated));
        obj.insert("expected_gap_at_value".into(), num(gap));
        obj.insert(
            "saturation_note".into(),
            json!("at the optimal critic InfoNCE reads about I - ln(1 + (e^I - 1)/B) with B rows per held-out block; saturated = (e^value - 1)/B > 0.02: the true MI may be far above the value"),
        );
    } else {
        obj.insert("log_batch_ceiling".into(), Value::Null);
        obj.insert(
            "log_batch_ceiling_reason".into(),
            json!("only InfoNCE is capped by the log of the evaluation batch size"),
        );
    }
    if bound == Bound::Smile {
        obj.insert("tau".into(), json!(p.tau));
        obj.insert(
            "clipped_mass_fraction".into(),
            num(runs.iter().map(|q| q.clipped_mass_fraction).sum::<f64>() / rf),
        );
        obj.insert(
            "clipped_fraction".into(),
            num(runs.iter().map(|q| q.clipped_fraction).sum::<f64>() / rf),
        );
    }
    if interval.is_none() {
        obj.insert(
            "interval_reason".into(),
            json!("the bootstrap of the held-out terms was not finite"),
        );
    }
    let diagnostics = neural_checks(
        bound,
        (n, x.ncols() + y.ncols()),
        value,
        sd,
        in_sample,
        ceiling,
        &runs,
        p,
    );
    ctl.tick(1.0)?;
    Ok(Output {
        value,
        interval,
        n,
        details,
        sufficient: None,
        diagnostics,
    })
}

/// Held-out terms of the optimal critic of a bivariate Gaussian with MI `mi` (nats) on `n` fresh
/// rows in blocks of at most `block`: T(x, y) = ln p(x, y)/(p(x)p(y)) =
/// mi − (ρ²x² − 2ρxy + ρ²y²)/(2(1 − ρ²)), ρ² = 1 − e^{−2·mi} (no training).
#[cfg(test)]
fn optimal_critic_terms(
    bound: Bound,
    mi: f64,
    n: usize,
    block: usize,
    tau: f64,
    seed: u64,
) -> Terms {
    let rho = (1.0 - (-2.0 * mi).exp()).sqrt();
    let mut g = SplitMix64::new(seed);
    let (mut xs, mut ys) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let (a, b) = g.normal_pair();
        xs.push(a);
        ys.push(rho * a + (1.0 - rho * rho).sqrt() * b);
    }
    let c = 2.0 * (1.0 - rho * rho);
    // The critic each bound is tight at: ln r (r the density ratio) for InfoNCE, MINE and SMILE
    // (their values are invariant to a constant), 1 + ln r for NWJ, whose value
    // E_p[T] − e^{−1} E_q[e^T] is maximised there (at ln r it sits 1/e nats below I).
    let offset = if bound == Bound::Nwj { 1.0 } else { 0.0 };
    evaluate_scores(bound, n, block, tau, |lo, hi| {
        Array2::from_shape_fn((hi - lo, hi - lo), |(i, j)| {
            let (x, y) = (xs[lo + i], ys[lo + j]);
            offset + mi - (rho * rho * x * x - 2.0 * rho * x * y + rho * rho * y * y) / c
        })
    })
}

/// The reported output of the optimal critic (see [`optimal_critic_terms`]): value, interval and
/// the saturation check, for the coverage study of the interval logic.
#[cfg(test)]
pub(crate) fn optimal_critic_output(
    bound: Bound,
    mi: f64,
    n: usize,
    block: usize,
    seed: u64,
) -> Output {
    let terms = optimal_critic_terms(bound, mi, n, block, 5.0, seed);
    let value = terms.value();
    let sd = bootstrap_var(&terms, seed).sqrt();
    let mut diagnostics = Diagnostics::default();
    if bound == Bound::InfoNce && infonce_saturation(value, terms.log_ceiling).0 {
        diagnostics.add(
            Reliability::Caution,
            "near_ceiling",
            "InfoNCE near its ceiling",
        );
    }
    Output {
        value,
        interval: interval(bound, value, sd, 0.95, 200),
        n,
        details: Value::Null,
        sufficient: None,
        diagnostics,
    }
}

#[cfg(test)]
mod tests;
