//! The estimator catalog as the service sees it: ids, versions, which tasks they apply to, their
//! parameters with defaults, and the resolution of a request's `estimators` list into job specs.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use super::batch::EstimatorRef;
use super::batch::{Batch, Task};
use crate::error::FieldError;
use crate::estimate;

/// One parameter of an estimator.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ParamInfo {
    pub name: &'static str,
    /// JSON type of the value.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The default value (a number, string or boolean, as the type says).
    pub default: serde_json::Value,
    /// The allowed values, in words.
    pub range: &'static str,
    pub description: &'static str,
}

/// A catalog entry (`GET /v1/estimators`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EstimatorInfo {
    pub id: &'static str,
    pub version: &'static str,
    /// Tasks it applies to.
    pub tasks: Vec<Task>,
    /// What else the batch must carry for it to apply.
    pub requires: &'static str,
    /// Unit of `value` (bits by default at the API edge; `?unit=nats` switches).
    pub unit: &'static str,
    /// What the primary value means.
    pub value: &'static str,
    /// Named secondary statistics found in a result's `details`.
    pub details: Vec<&'static str>,
    /// Whether its sufficient statistics add up across batches (exact pooled values per version).
    pub mergeable: bool,
    pub params: Vec<ParamInfo>,
    /// What a batch may cost this estimator under this service's limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<EstimatorLimits>,
}

/// The cost limits an estimator runs under, and what they allow.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EstimatorLimits {
    /// Memory one job may need (`--job-memory-bytes`), estimated from the batch's shape before
    /// anything runs.
    pub job_memory_bytes: u64,
    /// Most classes or labels a batch may have (`--max-classes`).
    pub max_classes: u64,
    /// How the memory need is estimated, in words.
    pub cost: &'static str,
    /// The largest batches that fit, for reference shapes (default parameters).
    pub largest: Vec<Largest>,
}

/// The largest value of one dimension that fits the budget, with the rest of the shape fixed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Largest {
    /// The fixed part of the shape, e.g. `N = 100000, probabilities`.
    pub shape: String,
    /// `K` (classes), `L` (labels) or `N` (samples).
    pub dimension: &'static str,
    pub value: u64,
}

/// A default estimator left out of a batch's jobs because it does not fit the limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Skipped {
    pub estimator: String,
    /// Why, with the estimated need and the limit.
    pub reason: String,
}

/// The jobs to create for a batch, and the default estimators left out.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resolved {
    pub specs: Vec<JobSpec>,
    pub skipped: Vec<Skipped>,
}

/// The shape of a batch, as the cost functions see it.
pub fn shape_of(b: &Batch) -> estimate::cost::Shape {
    use super::batch::BatchData;
    let mut s = estimate::cost::Shape {
        n: b.n as u64,
        weighted: b.weights.is_some(),
        truth_matrix: b.truth_matrix.is_some(),
        segments: b.segments.iter().map(|c| c.values.len() as u64).sum(),
        ..Default::default()
    };
    match &b.data {
        BatchData::Multiclass {
            probabilities,
            features,
            ..
        } => {
            s.k = b.k() as u64;
            s.probabilities = probabilities.is_some();
            s.dx = features.as_ref().map_or(0, |f| f.cols as u64);
        }
        BatchData::Multilabel { .. } => s.l = b.k() as u64,
        BatchData::Pairs { x, y } => {
            s.dx = x.cols as u64;
            s.dy = y.cols as u64;
        }
        BatchData::Regression { .. } => {
            s.dx = 1;
            s.dy = 1;
        }
    }
    s
}

/// Whether a job of `estimator` with these (canonical) parameters reads the true labels: every
/// estimator does, except `implied_mi` with `labels: none`.
pub fn needs_labels(estimator: &str, params: &serde_json::Value) -> bool {
    !(estimator == Kind::ImpliedMi.id()
        && params.get("labels").and_then(serde_json::Value::as_str) == Some("none"))
}

/// For a batch whose labels come later: the jobs that can run now (label-free) and those that
/// wait for the labels. A batch with probabilities always gets `implied_mi` both ways: I_q at
/// once, and with the labels the realised semantic MI and the calibration gap.
pub fn split_for_labels_later(batch: &Batch, specs: Vec<JobSpec>) -> (Vec<JobSpec>, Vec<JobSpec>) {
    let (mut now, mut later): (Vec<JobSpec>, Vec<JobSpec>) = specs
        .into_iter()
        .partition(|s| !needs_labels(&s.estimator, &s.params));
    if Kind::ImpliedMi.not_applicable(batch).is_none() {
        let label_free =
            spec(Kind::ImpliedMi, serde_json::json!({"labels": "none"})).expect("valid parameters");
        if !now.iter().any(|s| s.estimator == label_free.estimator) {
            now.push(label_free);
        }
        let with_labels = spec(Kind::ImpliedMi, serde_json::json!({})).expect("valid parameters");
        if !later.iter().any(|s| s.estimator == with_labels.estimator) {
            later.push(with_labels);
        }
    }
    (now, later)
}

/// A resolved estimator run: what a job carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    pub estimator: String,
    pub estimator_version: String,
    /// Parameters with every default filled in.
    pub params: serde_json::Value,
    /// sha256 of the canonical parameters: with the estimator and version, a job's identity.
    pub params_hash: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ShannonMi,
    SemanticMi,
    CeBound,
    ImpliedMi,
    RgCurve,
    Ksg,
    MixedKsg,
    InfoNce,
    Mine,
    Nwj,
    Smile,
}

impl Kind {
    pub const ALL: [Kind; 11] = [
        Kind::ShannonMi,
        Kind::SemanticMi,
        Kind::CeBound,
        Kind::ImpliedMi,
        Kind::RgCurve,
        Kind::Ksg,
        Kind::MixedKsg,
        Kind::InfoNce,
        Kind::Mine,
        Kind::Nwj,
        Kind::Smile,
    ];

    /// Estimators that run by default when a batch names none. The neural bounds (a network
    /// trained per batch) and mixed_ksg (k-NN search in the feature or probability space, costly
    /// for large N × K) run only on request; so does implied_mi for now (it will be the default
    /// of label-free batches).
    pub fn default_on(self) -> bool {
        !matches!(
            self,
            Kind::InfoNce | Kind::Mine | Kind::Nwj | Kind::Smile | Kind::MixedKsg | Kind::ImpliedMi
        )
    }

    /// The neural bound of this estimator, if it is one.
    pub fn bound(self) -> Option<estimate::neural::Bound> {
        match self {
            Kind::InfoNce => Some(estimate::neural::Bound::InfoNce),
            Kind::Mine => Some(estimate::neural::Bound::Mine),
            Kind::Nwj => Some(estimate::neural::Bound::Nwj),
            Kind::Smile => Some(estimate::neural::Bound::Smile),
            _ => None,
        }
    }

    pub fn id(self) -> &'static str {
        match self {
            Kind::ShannonMi => "shannon_mi",
            Kind::SemanticMi => "semantic_mi",
            Kind::CeBound => "ce_bound",
            Kind::ImpliedMi => "implied_mi",
            Kind::RgCurve => "rg_curve",
            Kind::Ksg => "ksg",
            Kind::MixedKsg => "mixed_ksg",
            Kind::InfoNce => "infonce",
            Kind::Mine => "mine",
            Kind::Nwj => "nwj",
            Kind::Smile => "smile",
        }
    }

    pub fn parse(id: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.id() == id)
    }

    pub fn version(self) -> &'static str {
        match self {
            Kind::ShannonMi => estimate::shannon::VERSION,
            Kind::SemanticMi => estimate::semantic::VERSION,
            Kind::CeBound => estimate::ce_bound::VERSION,
            Kind::ImpliedMi => estimate::implied::VERSION,
            Kind::RgCurve => estimate::rg::VERSION,
            Kind::Ksg => estimate::ksg::VERSION,
            Kind::MixedKsg => estimate::ksg::mixed::VERSION,
            Kind::InfoNce | Kind::Mine | Kind::Nwj | Kind::Smile => estimate::neural::VERSION,
        }
    }

    /// Why this estimator cannot run on the batch, if it cannot.
    pub fn not_applicable(self, b: &Batch) -> Option<String> {
        let task = b.task;
        match (self, task) {
            (Kind::ShannonMi, Task::Multiclass | Task::Multilabel) => None,
            (Kind::SemanticMi, Task::Multiclass) => None,
            (Kind::SemanticMi, Task::Multilabel) if b.has_scores() => None,
            (Kind::SemanticMi, Task::Multilabel) => Some(
                "semantic_mi on a multilabel batch needs `scores` (the truth functions)".into(),
            ),
            (Kind::CeBound, Task::Multiclass) if b.has_probabilities() => None,
            (Kind::CeBound, Task::Multiclass) => Some("ce_bound needs `probabilities`".into()),
            (Kind::ImpliedMi, Task::Multiclass) if b.has_probabilities() => None,
            (Kind::ImpliedMi, Task::Multiclass) => Some("implied_mi needs `probabilities`".into()),
            (Kind::RgCurve, Task::Multiclass) => None,
            (Kind::Ksg, Task::Pairs | Task::Regression) => None,
            (Kind::MixedKsg, Task::Multiclass) if b.has_probabilities() || b.has_features() => None,
            (Kind::MixedKsg, Task::Multiclass) => Some(
                "mixed_ksg needs features (`x`) or `probabilities` to compare with the labels"
                    .into(),
            ),
            (Kind::InfoNce | Kind::Mine | Kind::Nwj | Kind::Smile, Task::Pairs) => None,
            (k, t) => Some(format!("{} does not apply to task {}", k.id(), t.as_str())),
        }
    }

    /// Validate user parameters and fill the defaults; the canonical form is what jobs store.
    pub fn canonical_params(self, params: serde_json::Value) -> Result<serde_json::Value, String> {
        fn canon<P>(
            params: serde_json::Value,
            validate: impl Fn(&P) -> Result<(), String>,
        ) -> Result<serde_json::Value, String>
        where
            P: serde::de::DeserializeOwned + Serialize,
        {
            let p: P = serde_json::from_value(params).map_err(|e| e.to_string())?;
            validate(&p)?;
            serde_json::to_value(&p).map_err(|e| e.to_string())
        }
        let params = if params.is_null() {
            serde_json::json!({})
        } else {
            params
        };
        if !params.is_object() {
            return Err("params must be a JSON object".into());
        }
        match self {
            Kind::ShannonMi => canon::<estimate::shannon::Params>(params, |p| p.validate()),
            Kind::SemanticMi => canon::<estimate::semantic::Params>(params, |p| p.validate()),
            Kind::CeBound => canon::<estimate::ce_bound::Params>(params, |p| p.validate()),
            Kind::ImpliedMi => canon::<estimate::implied::Params>(params, |p| p.validate()),
            Kind::RgCurve => canon::<estimate::rg::Params>(params, |p| p.validate()),
            Kind::Ksg => canon::<estimate::ksg::Params>(params, |p| p.validate()),
            Kind::MixedKsg => canon::<estimate::ksg::mixed::Params>(params, |p| p.validate()),
            Kind::InfoNce | Kind::Mine | Kind::Nwj | Kind::Smile => {
                canon::<estimate::neural::Params>(params, |p| p.validate())
            }
        }
    }

    pub fn info(self) -> EstimatorInfo {
        let defaults = self
            .canonical_params(serde_json::json!({}))
            .expect("defaults are valid");
        let default_of = |name: &str| {
            defaults
                .get(name)
                .cloned()
                .unwrap_or(serde_json::Value::Null)
        };
        let p = |name: &'static str,
                 kind: &'static str,
                 range: &'static str,
                 description: &'static str| ParamInfo {
            name,
            kind,
            default: default_of(name),
            range,
            description,
        };
        let bootstrap = || {
            vec![
                p(
                    "bootstrap",
                    "integer",
                    "0..=10000 (0: no interval)",
                    "bootstrap replicates for the interval",
                ),
                p("confidence", "number", "(0, 1)", "interval level"),
                p(
                    "seed",
                    "integer",
                    "any u64",
                    "seed of the resampling (results are reproducible)",
                ),
            ]
        };
        match self {
            Kind::ShannonMi => EstimatorInfo {
                id: self.id(),
                version: self.version(),
                tasks: vec![Task::Multiclass, Task::Multilabel],
                requires: "predictions or probabilities (multiclass: argmax); multilabel: predictions or scores (thresholded)",
                unit: "bits",
                value: "jackknife bias-corrected mutual information I(true; predicted) of the confusion matrix (weights: at Kish's effective sample size), the centre of its interval value ± z·se; multilabel: the sum over labels of I(Y_j; Ŷ_j)",
                details: vec!["plug_in", "jackknife_se", "miller_madow", "n_eff", "bias_correction", "nmi", "ami", "vi", "h_true", "h_pred", "confusion", "occupied_cells", "bias_ratio", "per_label"],
                mergeable: true,
                limits: None,
                params: {
                    let mut v = bootstrap();
                    v.push(p("threshold", "number", "[0, 1]", "multilabel: a label is predicted when its score >= threshold"));
                    v
                },
            },
            Kind::SemanticMi => EstimatorInfo {
                id: self.id(),
                version: self.version(),
                tasks: vec![Task::Multiclass, Task::Multilabel],
                requires: "multiclass: probabilities, a truth_matrix, or predictions (LBI truth matrix); multilabel: scores",
                unit: "bits",
                value: "semantic mutual information (Lu's G measure) Σ P(x,y) log T(θy|x)/T(θy); probabilities mode floors a true class's truth value of 0 at half the data's resolution (floor: auto); -Infinity when a used prediction is never true and nothing floors it",
                details: vec!["efficiency", "shannon_bound", "normalized_semantic_mi", "upper_bound", "per_class", "semantic_entropy", "fuzzy_entropy", "negative_fraction", "worst_samples", "lbi_truth_matrix", "floor", "floored_samples", "floored_share", "unfloored_value"],
                mergeable: true,
                limits: None,
                params: {
                    let mut v = bootstrap();
                    v.push(p(
                        "floor",
                        "string or number",
                        "auto | none | (0, 0.5]",
                        "probabilities mode: auto (default) reads a true class's probability 0 as half the data's resolution (finite, gateable; the -Infinity stays in details.unfloored_value); none keeps -Infinity; a number floors every true class's truth value below it",
                    ));
                    v
                },
            },
            Kind::CeBound => EstimatorInfo {
                id: self.id(),
                version: self.version(),
                tasks: vec![Task::Multiclass],
                requires: "probabilities",
                unit: "bits",
                value: "Barber–Agakov lower bound Ĥ(Y) − cross-entropy",
                details: vec!["cross_entropy", "h_labels", "kl_marginal"],
                mergeable: true,
                limits: None,
                params: bootstrap(),
            },
            Kind::ImpliedMi => EstimatorInfo {
                id: self.id(),
                version: self.version(),
                tasks: vec![Task::Multiclass],
                requires: "probabilities (labels optional)",
                unit: "bits",
                value: "model-implied information I_q = H(mean q) − mean H(q(·|x)): what the probabilities convey if calibrated; normal (delta-method) interval",
                details: vec![
                    "h_mean_prediction",
                    "mean_prediction_entropy",
                    "realised_semantic_mi",
                    "calibration_gap",
                    "calibration_gap_ci_low",
                    "calibration_gap_ci_high",
                ],
                mergeable: true,
                limits: None,
                params: vec![
                    p("confidence", "number", "(0, 1)", "interval level"),
                    p(
                        "labels",
                        "string",
                        "auto | none",
                        "auto: with the batch's labels also report the realised semantic MI and the calibration gap; none: I_q alone (runs at upload when the labels come later)",
                    ),
                    p(
                        "floor",
                        "string or number",
                        "auto | none | (0, 0.5]",
                        "the floor of a true class's probability in the realised semantic MI: auto (default) reads 0 as half the data's resolution so the calibration gap stays finite; none keeps -Infinity",
                    ),
                ],
            },
            Kind::Ksg => EstimatorInfo {
                id: self.id(),
                version: self.version(),
                tasks: vec![Task::Pairs, Task::Regression],
                requires: "pairs: x and y rows; regression: targets and predictions",
                unit: "bits",
                value: "KSG (Kraskov–Stögbauer–Grassberger) algorithm 1 k-NN estimate of I(X;Y), standardised inputs, raw (not clipped at 0)",
                details: vec!["k", "per_k", "metric", "clipped_value", "tied_fraction", "subsample_sd"],
                mergeable: false,
                limits: None,
                params: vec![
                    p("k", "integer", ">= 1", "neighbours"),
                    p("metric", "string", "max | euclidean_per_space", "max: Chebyshev over the joint space (scikit-learn); euclidean_per_space: the Beyond-Normal benchmark's convention"),
                    p("ks", "array", "integers >= 1", "non-empty: report the mean over these k (benchmark: [5, 10])"),
                    p("standardize", "boolean", "", "divide each column by its standard deviation"),
                    p("subsamples", "integer", ">= 0", "m-out-of-n subsamples (without replacement) for the interval; 0: none"),
                    p("subsample_fraction", "number", "(0, 1)", "m / N"),
                    p("confidence", "number", "(0, 1)", "interval level"),
                    p("seed", "integer", "any u64", "seed of the subsampling"),
                ],
            },
            Kind::MixedKsg => EstimatorInfo {
                id: self.id(),
                version: self.version(),
                tasks: vec![Task::Multiclass],
                requires: "features `x`, or probabilities (used as features)",
                unit: "bits",
                value: "Ross (2014) discrete–continuous k-NN estimate of I(label; features)",
                details: vec!["k", "dims", "n_used", "dropped_singletons"],
                mergeable: false,
                limits: None,
                params: vec![
                    p("k", "integer", ">= 1", "neighbours"),
                    p("standardize", "boolean", "", "divide each column by its standard deviation"),
                    p("subsamples", "integer", ">= 0", "m-out-of-n subsamples for the interval"),
                    p("subsample_fraction", "number", "(0, 1)", "m / N"),
                    p("confidence", "number", "(0, 1)", "interval level"),
                    p("seed", "integer", "any u64", "seed"),
                ],
            },
            Kind::InfoNce | Kind::Mine | Kind::Nwj | Kind::Smile => EstimatorInfo {
                id: self.id(),
                version: self.version(),
                tasks: vec![Task::Pairs],
                requires: "x and y rows; at least min_samples pairs",
                unit: "bits",
                value: match self {
                    Kind::InfoNce => "InfoNCE lower bound with a trained MLP critic, on held-out pairs (≤ log batch size); interval one-sided (ci_high null); `saturated` when (e^v − 1)/B > 0.02",
                    Kind::Mine => "Donsker–Varadhan (MINE, moving-average gradient) lower bound on held-out pairs; interval one-sided (ci_high null)",
                    Kind::Nwj => "NWJ (f-divergence) lower bound on held-out pairs; interval one-sided (ci_high null)",
                    _ => "SMILE (clipped Donsker–Varadhan, tau) estimate on held-out pairs: a biased estimator, not a bound; two-sided interval about its own statistic",
                },
                details: vec!["train_curve", "selected_step", "log_batch_ceiling", "saturated", "in_sample_value", "clipped_mass_fraction", "n_train", "n_test"],
                mergeable: false,
                limits: None,
                params: vec![
                    p("hidden", "array", "layer widths", "critic hidden layers"),
                    p("activation", "string", "relu | tanh | leaky_relu", "hidden activation"),
                    p("critic", "string", "separable | concat", "critic form"),
                    p("batch_size", "integer", ">= 2", "training minibatch"),
                    p("learning_rate", "number", "> 0", "Adam step size"),
                    p("max_steps", "integer", ">= 1", "training steps at most"),
                    p("eval_every", "integer", ">= 1", "steps between held-out evaluations"),
                    p("patience", "integer", ">= 1", "evaluations without improvement before stopping"),
                    p("test_fraction", "number", "(0, 1)", "share of pairs held out"),
                    p("min_samples", "integer", ">= 2", "refuse smaller batches"),
                    p("tau", "number", "> 0", "SMILE clip"),
                    p("seed", "integer", "any u64", "seed of initialisation and batching"),
                ],
            },
            Kind::RgCurve => EstimatorInfo {
                id: self.id(),
                version: self.version(),
                tasks: vec![Task::Multiclass],
                requires: "a truth_matrix, or predictions for the LBI truth matrix",
                unit: "bits",
                value: "R(G) information rate at s = 1 of the semantic channel, converged on the Kuhn–Tucker conditions (`converged_at_1`, `gap_at_1`)",
                details: vec!["points", "g_at_1", "converged_at_1", "gap_at_1", "all_converged"],
                mergeable: false,
                limits: None,
                params: vec![],
            },
        }
    }
}

/// The catalog.
pub fn catalog() -> Vec<EstimatorInfo> {
    Kind::ALL.into_iter().map(Kind::info).collect()
}

/// The catalog with each estimator's limits and the largest batches they allow.
pub fn catalog_with_limits(limits: &estimate::cost::Limits) -> Vec<EstimatorInfo> {
    Kind::ALL
        .into_iter()
        .map(|k| {
            let mut info = k.info();
            info.limits = Some(EstimatorLimits {
                job_memory_bytes: limits.memory_bytes,
                max_classes: limits.max_classes,
                cost: estimate::cost::formula(k.id()),
                largest: largest(k, limits),
            });
            info
        })
        .collect()
}

/// Reference shapes for the catalog (and the bench figures): the largest K, L or N that fits.
pub fn largest(kind: Kind, limits: &estimate::cost::Limits) -> Vec<Largest> {
    largest_at(kind, limits, 100_000)
}

/// [`largest`] with `n` samples in the shapes whose free dimension is K or L.
pub fn largest_at(kind: Kind, limits: &estimate::cost::Limits, n: u64) -> Vec<Largest> {
    use estimate::cost::{largest_fitting, Shape};
    let params = kind
        .canonical_params(serde_json::json!({}))
        .expect("defaults are valid");
    let multiclass = |probabilities: bool| Shape {
        n,
        probabilities,
        ..Shape::default()
    };
    type Case = (String, &'static str, Shape, fn(&mut Shape, u64));
    let classes: fn(&mut Shape, u64) = |s, v| s.k = v;
    let labels: fn(&mut Shape, u64) = |s, v| s.l = v;
    let samples: fn(&mut Shape, u64) = |s, v| s.n = v;
    let d = |dx: u64, dy: u64, k: u64| Shape {
        dx,
        dy,
        k,
        ..Shape::default()
    };
    let cases: Vec<Case> = match kind {
        Kind::ShannonMi => vec![
            (
                format!("N = {n}, predictions"),
                "K",
                multiclass(false),
                classes,
            ),
            (
                format!("N = {n}, multilabel"),
                "L",
                Shape {
                    n,
                    ..Shape::default()
                },
                labels,
            ),
        ],
        Kind::SemanticMi => vec![
            (
                format!("N = {n}, probabilities"),
                "K",
                multiclass(true),
                classes,
            ),
            (
                format!("N = {n}, predictions (LBI truth matrix)"),
                "K",
                multiclass(false),
                classes,
            ),
            (
                format!("N = {n}, multilabel"),
                "L",
                Shape {
                    n,
                    ..Shape::default()
                },
                labels,
            ),
        ],
        Kind::CeBound | Kind::ImpliedMi => vec![(
            format!("N = {n}, probabilities"),
            "K",
            multiclass(true),
            classes,
        )],
        Kind::RgCurve => vec![(
            format!("N = {n}, predictions"),
            "K",
            multiclass(false),
            classes,
        )],
        Kind::Ksg => vec![
            ("dx = dy = 1".into(), "N", d(1, 1, 0), samples),
            ("dx = dy = 16".into(), "N", d(16, 16, 0), samples),
        ],
        Kind::MixedKsg => vec![("K = 10, 16 features".into(), "N", d(16, 0, 10), samples)],
        Kind::InfoNce | Kind::Mine | Kind::Nwj | Kind::Smile => {
            vec![("dx = dy = 16".into(), "N", d(16, 16, 0), samples)]
        }
    };
    cases
        .into_iter()
        .map(|(shape, dimension, base, set)| {
            let max = if dimension == "N" {
                1 << 40
            } else {
                limits.max_classes
            };
            Largest {
                shape,
                dimension,
                value: largest_fitting(kind.id(), &base, &params, limits, max, set),
            }
        })
        .collect()
}

fn spec(kind: Kind, params: serde_json::Value) -> Result<JobSpec, String> {
    let params = kind.canonical_params(params)?;
    let canonical = serde_json::to_vec(&params).expect("params serialise");
    Ok(JobSpec {
        estimator: kind.id().to_string(),
        estimator_version: kind.version().to_string(),
        params_hash: super::batch::sha256_hex(&canonical),
        params,
    })
}

/// Resolve a request's estimator list (or the default: every applicable estimator) into job specs,
/// reporting each problem at `/{field}/{i}`. Costs are checked against `limits` before anything
/// runs: a requested estimator over the budget is an error naming the estimator and the limit;
/// a default one is left out, with the reason in `skipped`.
pub fn resolve(
    batch: &Batch,
    requested: Option<&[EstimatorRef]>,
    field: &str,
    limits: &estimate::cost::Limits,
) -> Result<Resolved, Vec<FieldError>> {
    let shape = shape_of(batch);
    let Some(requested) = requested else {
        let mut out = Resolved::default();
        for k in Kind::ALL {
            if !k.default_on() || k.not_applicable(batch).is_some() {
                continue;
            }
            let s = spec(k, serde_json::json!({})).expect("defaults are valid");
            match estimate::cost::check(k.id(), &shape, &s.params, limits) {
                Ok(_) => out.specs.push(s),
                Err(reason) => out.skipped.push(Skipped {
                    estimator: k.id().to_string(),
                    reason,
                }),
            }
        }
        if out.specs.is_empty() {
            let why: Vec<String> = out.skipped.iter().map(|s| s.reason.clone()).collect();
            return Err(vec![FieldError::at(
                format!("/{field}"),
                format!(
                    "no default estimator fits the limits for this batch: {}",
                    why.join("; ")
                ),
            )]);
        }
        return Ok(out);
    };
    let mut errors = Vec::new();
    let mut out: Vec<JobSpec> = Vec::new();
    if requested.is_empty() {
        errors.push(FieldError::at(
            format!("/{field}"),
            "must name at least one estimator",
        ));
    }
    for (i, r) in requested.iter().enumerate() {
        let (id, params) = r.parts();
        let Some(kind) = Kind::parse(id) else {
            let known: Vec<_> = Kind::ALL.iter().map(|k| k.id()).collect();
            errors.push(FieldError::at(
                format!("/{field}/{i}"),
                format!("unknown estimator {id:?}; known: {}", known.join(", ")),
            ));
            continue;
        };
        if let Some(why) = kind.not_applicable(batch) {
            errors.push(FieldError::at(format!("/{field}/{i}"), why));
            continue;
        }
        match spec(kind, params) {
            Ok(s) => {
                if let Err(why) = estimate::cost::check(kind.id(), &shape, &s.params, limits) {
                    errors.push(FieldError::at(format!("/{field}/{i}"), why));
                    continue;
                }
                if !out
                    .iter()
                    .any(|o| o.estimator == s.estimator && o.params_hash == s.params_hash)
                {
                    out.push(s);
                }
            }
            Err(m) => errors.push(FieldError::at(format!("/{field}/{i}/params"), m)),
        }
    }
    if errors.is_empty() {
        Ok(Resolved {
            specs: out,
            skipped: Vec::new(),
        })
    } else {
        Err(errors)
    }
}

/// The class (or label) count limit: `None` when the batch is within it, else the error at
/// `/classes`.
pub fn check_classes(batch: &Batch, limits: &estimate::cost::Limits) -> Option<FieldError> {
    let k = batch.k() as u64;
    if matches!(batch.task, Task::Multiclass | Task::Multilabel) && k > limits.max_classes {
        let what = if batch.task == Task::Multilabel {
            "labels"
        } else {
            "classes"
        };
        return Some(FieldError::at(
            "/classes",
            format!(
                "the batch has {k} {what}, over the limit of {} (--max-classes)",
                limits.max_classes
            ),
        ));
    }
    None
}

/// Keys in `details` whose numbers are amounts of information (converted with `?unit=`); every
/// other number (ratios, counts, probabilities) is left as it is.
pub const INFORMATION_KEYS: &[&str] = &[
    "subsample_mean",
    "subsample_sd",
    "sd",
    "clipped_value",
    "validation_value",
    "in_sample_value",
    "held_out",
    "train",
    "log_batch_ceiling",
    "train_batch_ceiling",
    "mi",
    "miller_madow",
    "jackknife",
    "jackknife_se",
    "expected_mi",
    "vi",
    "h_true",
    "h_pred",
    "mean_per_label",
    "sum_per_label",
    "aggregate",
    "value",
    "g",
    "r",
    "r_direct",
    "g_at_1",
    "r_at_1",
    "max_r_discrepancy",
    "h_source",
    "upper_bound",
    "semantic_entropy",
    "fuzzy_entropy",
    "semantic_kl",
    "shannon_mi",
    "semantic_mi",
    "ce_bound",
    "kl_gap",
    "cross_entropy",
    "h_labels",
    "kl_marginal",
    "h_mean_prediction",
    "mean_prediction_entropy",
    "realised_semantic_mi",
    "calibration_gap",
    "calibration_gap_ci_low",
    "calibration_gap_ci_high",
    "calibration_gap_standard_error",
    "standard_error",
    "plug_in",
    "bias_correction",
    "gap",
    "gap_at_1",
    "saturation_threshold",
    "expected_gap_at_value",
    "shannon_bound",
    "jackknife_raw",
    "unfloored_value",
    "copula_value",
    "copula_raw_value",
];

/// Whether a named statistic (a `details` key) is an amount of information (nats inside, bits
/// or nats at the edge) rather than a ratio, count or probability.
pub fn is_information(key: &str) -> bool {
    INFORMATION_KEYS.contains(&key)
}
