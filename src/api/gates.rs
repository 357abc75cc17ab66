//! Aliases, gate policies, gate decisions, and version comparison.

use std::time::Duration;

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;

use super::strict::StrictJson;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::batches::path_name;
use super::views::Page;
use super::{AppState, PageQuery, Unit, UnitQuery};
use crate::error::{Error, FieldError, Problem, Result};
use crate::estimate::EstimateError;
use crate::gate::{self, Input, MetricRef, Rule, RuleOutcome, Source, Verdict};
use crate::store;

async fn model_or_404(state: &AppState, model: &str) -> Result<(Uuid, String)> {
    let name = path_name("model", model)?;
    let id = store::model_id(&state.pool, name.as_str())
        .await?
        .ok_or_else(|| Error::NotFound(format!("model {name} not found")))?;
    Ok((id, name.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Aliases

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"version": "v7"}))]
pub struct SetAlias {
    /// The version the alias should name.
    #[schema(value_type = super::NameString)]
    pub version: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Alias {
    pub model: String,
    pub alias: String,
    pub version: String,
    pub updated_at: DateTime<Utc>,
}

/// Point an alias (`production`, `candidate`, …) at a version. Every move is recorded (history
/// charts mark them).
#[utoipa::path(
    put,
    path = "/v1/models/{model}/aliases/{alias}",
    tag = "gates",
    params(("model" = String, Path), ("alias" = String, Path)),
    request_body = SetAlias,
    responses(
        (status = 200, body = Alias),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn set_alias(
    State(state): State<AppState>,
    Path((model, alias)): Path<(String, String)>,
    StrictJson(body): StrictJson<SetAlias>,
) -> Result<Json<Alias>> {
    let (model_id, model) = model_or_404(&state, &model).await?;
    let alias = path_name("alias", &alias)?;
    if alias.as_str() == "previous" {
        return Err(Error::Unprocessable(
            "\"previous\" is reserved for the version before a candidate".into(),
        ));
    }
    let (version_id, version) = store::version_by_name(&state.pool, model_id, &body.version)
        .await?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "version {} of model {model} not found",
                body.version
            ))
        })?;
    let mut tx = state.pool.begin().await?;
    let updated_at: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO aliases (model_id, alias, version_id) VALUES ($1, $2, $3)
         ON CONFLICT (model_id, alias) DO UPDATE SET version_id = $3, updated_at = now()
         RETURNING updated_at",
    )
    .bind(model_id)
    .bind(alias.as_str())
    .bind(version_id)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO alias_events (model_id, alias, version_id) VALUES ($1, $2, $3)")
        .bind(model_id)
        .bind(alias.as_str())
        .bind(version_id)
        .execute(&mut *tx)
        .await?;
    crate::monitor::on_alias_change(&mut tx, model_id, alias.as_str()).await?;
    tx.commit().await?;
    Ok(Json(Alias {
        model,
        alias: alias.to_string(),
        version,
        updated_at,
    }))
}

/// Remove an alias.
#[utoipa::path(
    delete,
    path = "/v1/models/{model}/aliases/{alias}",
    tag = "gates",
    params(("model" = String, Path), ("alias" = String, Path)),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json"))
)]
pub async fn delete_alias(
    State(state): State<AppState>,
    Path((model, alias)): Path<(String, String)>,
) -> Result<StatusCode> {
    let (model_id, _) = model_or_404(&state, &model).await?;
    let mut tx = state.pool.begin().await?;
    let n = sqlx::query("DELETE FROM aliases WHERE model_id = $1 AND alias = $2")
        .bind(model_id)
        .bind(&alias)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(Error::NotFound(format!("alias {alias} not found")));
    }
    sqlx::query("INSERT INTO alias_events (model_id, alias, version_id) VALUES ($1, $2, NULL)")
        .bind(model_id)
        .bind(&alias)
        .execute(&mut *tx)
        .await?;
    crate::monitor::on_alias_change(&mut tx, model_id, &alias).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// Policies

/// A set of rules.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    #[schema(min_items = 1)]
    pub rules: Vec<Rule>,
}

pub(crate) fn check_rules(rules: &[Rule], field: &str) -> Result<()> {
    let mut errors = Vec::new();
    if rules.is_empty() {
        errors.push(FieldError::at(
            format!("/{field}"),
            "at least one rule is required",
        ));
    }
    for (i, r) in rules.iter().enumerate() {
        if let Err(m) = r.validate() {
            errors.push(FieldError::at(format!("/{field}/{i}"), m));
        }
        if let Err(m) = MetricRef::parse(&r.metric) {
            errors.push(FieldError::at(format!("/{field}/{i}/metric"), m));
        }
        if let Some(b) = &r.baseline {
            if b != "previous" {
                if let Err(m) = crate::domain::names::Name::parse(b) {
                    errors.push(FieldError::at(format!("/{field}/{i}/baseline"), m));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Validation(errors))
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Policy {
    pub model: String,
    pub gate: String,
    /// Increases by one with every PUT; decisions record the version they used.
    pub version: i32,
    pub rules: Vec<Rule>,
    pub created_at: DateTime<Utc>,
}

/// Store a new version of a named gate policy (the model is created if needed). Rule semantics:
/// see `POST /v1/models/{model}/versions/{version}/gate`.
#[utoipa::path(
    put,
    path = "/v1/models/{model}/gates/{gate}",
    tag = "gates",
    params(("model" = String, Path), ("gate" = String, Path)),
    request_body(content = Rules, example = json!({"rules": [
        {"metric": "semantic_mi", "op": "gte", "baseline": "production", "max_regression": {"relative": 0.02}, "use": "ci_low"},
        {"metric": "shannon_mi.nmi", "op": "gte", "threshold": 0.5, "severity": "warning"}
    ]})),
    responses(
        (status = 200, body = Policy),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put_policy(
    State(state): State<AppState>,
    Path((model, gate)): Path<(String, String)>,
    StrictJson(body): StrictJson<Rules>,
) -> Result<Json<Policy>> {
    let model = path_name("model", &model)?;
    let gate = path_name("gate", &gate)?;
    check_rules(&body.rules, "rules")?;
    let mut tx = state.pool.begin().await?;
    // Serialises concurrent PUTs of one definition so versions stay dense.
    let model_id = crate::store::lock_definition(
        &mut tx,
        model.as_str(),
        crate::store::GATE_POLICY_LOCKS,
        gate.as_str(),
    )
    .await?;
    let (version, created_at): (i32, DateTime<Utc>) = sqlx::query_as(
        "INSERT INTO gate_policies (model_id, name, version, rules)
         SELECT $1, $2, coalesce(max(version), 0) + 1, $3 FROM gate_policies WHERE model_id = $1 AND name = $2
         RETURNING version, created_at",
    )
    .bind(model_id)
    .bind(gate.as_str())
    .bind(serde_json::to_value(&body.rules).expect("rules serialise"))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(Policy {
        model: model.to_string(),
        gate: gate.to_string(),
        version,
        rules: body.rules,
        created_at,
    }))
}

async fn latest_policy(
    state: &AppState,
    model_id: Uuid,
    gate: &str,
) -> Result<Option<(i32, Vec<Rule>, DateTime<Utc>)>> {
    let row: Option<(i32, serde_json::Value, DateTime<Utc>)> = sqlx::query_as(
        "SELECT version, rules, created_at FROM gate_policies WHERE model_id = $1 AND name = $2
         ORDER BY version DESC LIMIT 1",
    )
    .bind(model_id)
    .bind(gate)
    .fetch_optional(&state.pool)
    .await?;
    Ok(match row {
        Some((v, rules, at)) => Some((
            v,
            serde_json::from_value(rules).map_err(|e| Error::Internal(e.into()))?,
            at,
        )),
        None => None,
    })
}

/// The current version of a gate policy.
#[utoipa::path(
    get,
    path = "/v1/models/{model}/gates/{gate}",
    tag = "gates",
    params(("model" = String, Path), ("gate" = String, Path)),
    responses((status = 200, body = Policy), (status = 404, body = Problem, content_type = "application/problem+json"))
)]
pub async fn get_policy(
    State(state): State<AppState>,
    Path((model, gate)): Path<(String, String)>,
) -> Result<Json<Policy>> {
    let (model_id, model) = model_or_404(&state, &model).await?;
    let (version, rules, created_at) = latest_policy(&state, model_id, &gate)
        .await?
        .ok_or_else(|| Error::NotFound(format!("gate {gate} of model {model} not found")))?;
    Ok(Json(Policy {
        model,
        gate,
        version,
        rules,
        created_at,
    }))
}

// ---------------------------------------------------------------------------------------------
// Decisions

/// What to evaluate: a stored policy by name, or inline rules.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"gate": "release", "wait_seconds": 120}))]
pub struct GateRequest {
    /// Name of a stored policy (give exactly one of `gate` and `rules`).
    #[schema(value_type = Option<super::NameString>)]
    pub gate: Option<String>,
    /// Inline rules (instead of `gate`).
    #[schema(min_items = 1)]
    pub rules: Option<Vec<Rule>>,
    /// Wait up to this long (0–600 s) for the version's queued or running jobs before deciding.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 600)]
    pub wait_seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PolicyRef {
    pub name: String,
    pub version: i32,
}

/// A batch whose result entered a decision.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchRef {
    pub version: String,
    pub batch_id: Uuid,
    pub digest: String,
}

/// One rule's outcome within a decision.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DecisionRule {
    #[serde(flatten)]
    pub outcome: RuleOutcome,
    pub op: gate::Op,
    #[serde(rename = "use")]
    pub use_: gate::Use,
    /// How the candidate's value was obtained.
    pub source: Option<Source>,
}

/// A stored, immutable gate decision.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Decision {
    pub id: Uuid,
    /// `pass`, `warn`, `fail`, `inconclusive` or `pending`.
    pub verdict: Verdict,
    pub rules: Vec<DecisionRule>,
    pub model: String,
    pub version: String,
    /// The stored policy used, or null for inline rules.
    pub policy: Option<PolicyRef>,
    /// Unit of every value and threshold in the decision.
    pub unit: Unit,
    /// The batches (with digests) whose results were judged, candidate and baselines.
    pub batches: Vec<BatchRef>,
    pub evaluated_at: DateTime<Utc>,
    /// The monitor whose evaluation this is (absent for a gate called by a client).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitor: Option<MonitorRef>,
}

/// The monitor (and its version) that made a decision.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MonitorRef {
    pub name: String,
    pub version: i32,
}

struct Observed {
    input: Input,
    source: Option<Source>,
    batches: Vec<BatchRef>,
    /// The results that entered the value: (batch, labels digest, params), oldest first.
    used: Vec<(Uuid, Option<String>, serde_json::Value)>,
}

/// What one request has read: per (version, estimator), the unfinished jobs and the result rows
/// (oldest first), loaded up front in two statements; rules on the same estimator (its value and
/// its statistics) share the rows.
struct Reads(HashMap<(Uuid, String), (i64, Vec<store::MetricRow>)>);

impl Reads {
    /// Read every pair of `versions` × the series of `metrics` (an estimator's results, or one
    /// segment value's: `estimator{key=value}`).
    async fn load(j: &Judge<'_>, versions: &[Uuid], metrics: &[MetricRef]) -> Result<Reads> {
        let mut estimators: Vec<String> = metrics.iter().map(|m| m.estimator.clone()).collect();
        estimators.sort();
        estimators.dedup();
        let plain: Vec<String> = estimators
            .iter()
            .filter(|e| {
                metrics
                    .iter()
                    .any(|m| &m.estimator == *e && m.segment.is_none())
            })
            .cloned()
            .collect();
        let (unfinished, rows) = tokio::try_join!(
            store::unfinished_jobs_by_estimator(j.pool, versions, &estimators),
            store::metric_rows(j.pool, versions, &plain),
        )?;
        let mut segmented: Vec<MetricRef> = metrics
            .iter()
            .filter(|m| m.segment.is_some())
            .map(|m| MetricRef {
                statistic: None,
                ..m.clone()
            })
            .collect();
        segmented.sort_by_key(|m| m.series());
        segmented.dedup();
        let mut map: HashMap<_, (i64, Vec<store::MetricRow>)> = HashMap::new();
        for (v, e, n) in unfinished {
            for m in segmented.iter().filter(|m| m.estimator == e) {
                map.entry((v, m.series())).or_default().0 = n;
            }
            map.entry((v, e)).or_default().0 = n;
        }
        for row in rows {
            map.entry((row.version_id, row.estimator.clone()))
                .or_default()
                .1
                .push(row);
        }
        for m in &segmented {
            for row in store::segment_metric_rows(j.pool, versions, m).await? {
                map.entry((row.version_id, row.estimator.clone()))
                    .or_default()
                    .1
                    .push(row);
            }
        }
        Ok(Reads(map))
    }

    /// Keep only the results of `version` from the batches in `window` (a monitor's window), and
    /// judge what is there: unfinished jobs of the version no longer make its rules pending.
    fn restrict(&mut self, version: Uuid, window: &std::collections::HashSet<Uuid>) {
        for ((v, _), (unfinished, rows)) in self.0.iter_mut() {
            if *v == version {
                *unfinished = 0;
                rows.retain(|r| window.contains(&r.batch_id));
            }
        }
    }

    /// The metric of a version, from what was loaded.
    fn observe(&self, version: (Uuid, &str), metric: &MetricRef, unit: Unit) -> Observed {
        static NONE: (i64, Vec<store::MetricRow>) = (0, Vec::new());
        let (unfinished, rows) = self.0.get(&(version.0, metric.series())).unwrap_or(&NONE);
        // The series of the latest result: the same parameters and estimator version.
        let latest = rows.last();
        let series: Vec<&store::MetricRow> = rows
            .iter()
            .filter(|r| {
                latest.is_some_and(|l| {
                    r.params == l.params && r.estimator_version == l.estimator_version
                })
            })
            .collect();
        let batches = series
            .iter()
            .map(|r| BatchRef {
                version: version.1.to_string(),
                batch_id: r.batch_id,
                digest: r.digest.clone(),
            })
            .collect();
        let mut out = Observed {
            input: Input::Missing,
            source: None,
            batches,
            used: Vec::new(),
        };
        if *unfinished > 0 {
            out.input = Input::Pending;
            return out;
        }
        let points: Vec<_> = rows.iter().map(|r| r.point()).collect();
        if let Some((o, src)) = gate::observe(&points, metric, unit.factor()) {
            let used: Vec<&&store::MetricRow> = if src.kind == "pooled" {
                series.iter().collect()
            } else {
                series.last().into_iter().collect()
            };
            out.used = used
                .iter()
                .map(|r| (r.batch_id, r.labels_digest.clone(), r.params.clone()))
                .collect();
            out.input = Input::Value(o);
            out.source = Some(src);
        }
        out
    }
}

/// Estimators whose difference between two versions is computed paired when both were
/// evaluated on the same samples.
const PAIRABLE: [&str; 3] = ["shannon_mi", "semantic_mi", "ce_bound"];

/// Δ = candidate − baseline of one metric with its interval (in `unit`): paired when both sides'
/// results come from batches with the same samples (equal multisets of label digests), else the
/// two sides combined as independent (`pooled` when either side pools several batches). Paired
/// differences are computed from the stored batches (a paired bootstrap, 200 replicates, off
/// the async threads) and kept per process.
async fn difference(
    j: &Judge<'_>,
    metric: &MetricRef,
    cand: &Observed,
    base: &Observed,
    unit: Unit,
) -> Result<Option<gate::Delta>> {
    let (Input::Value(c), Input::Value(b)) = (&cand.input, &base.input) else {
        return Ok(None);
    };
    let pooled = [cand, base]
        .iter()
        .any(|o| o.source.as_ref().is_some_and(|s| s.kind == "pooled"));
    let independent = || Some(gate::independent_delta(c, b, pooled));
    // A segment's paired difference would need the batches restricted to the segment: its
    // sides are combined as independent.
    if metric.statistic.is_some()
        || metric.segment.is_some()
        || !PAIRABLE.contains(&metric.estimator.as_str())
    {
        return Ok(independent());
    }
    let order = |o: &Observed| -> Option<Vec<(String, Uuid, serde_json::Value)>> {
        let mut v: Vec<_> = o
            .used
            .iter()
            .map(|(id, d, p)| Some((d.clone()?, *id, p.clone())))
            .collect::<Option<_>>()?;
        v.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        Some(v)
    };
    let (Some(cs), Some(bs)) = (order(cand), order(base)) else {
        return Ok(independent());
    };
    if cs.is_empty() || cs.len() != bs.len() || cs.iter().zip(&bs).any(|(x, y)| x.0 != y.0) {
        return Ok(independent());
    }
    let key = format!(
        "{}|{}|{}|{}|{}",
        metric.estimator,
        cs.iter()
            .map(|x| x.1.to_string())
            .collect::<Vec<_>>()
            .join(","),
        bs.iter()
            .map(|x| x.1.to_string())
            .collect::<Vec<_>>()
            .join(","),
        cs[0].2,
        bs[0].2
    );
    let nats = match j.deltas.get(&key, 0) {
        Some(d) => d,
        None => {
            let mut cand_batches = Vec::with_capacity(cs.len());
            let mut base_batches = Vec::with_capacity(bs.len());
            // Raw data retention may have purged a side's batches: then the sides are combined
            // as independent (their results and intervals are kept).
            for (list, ids) in [(&mut cand_batches, &cs), (&mut base_batches, &bs)] {
                for (_, id, _) in ids.iter() {
                    match store::load_batch_data(j.pool, *id).await {
                        Ok(b) => list.push(b),
                        Err(e) if e.is::<store::DataPurged>() => return Ok(independent()),
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            let (estimator, cp, bp) = (metric.estimator.clone(), cs[0].2.clone(), bs[0].2.clone());
            use sha2::Digest;
            let seed = u64::from_le_bytes(
                sha2::Sha256::digest(key.as_bytes())[..8]
                    .try_into()
                    .expect("8 bytes"),
            );
            let computed = tokio::task::spawn_blocking(move || {
                crate::worker::paired_delta(
                    &estimator,
                    &cp,
                    &bp,
                    &cand_batches,
                    &base_batches,
                    0.95,
                    200,
                    seed,
                )
            })
            .await
            .unwrap_or_else(|e| {
                Err(EstimateError::invalid(format!(
                    "the paired comparison stopped: {e}"
                )))
            });
            match computed {
                Ok(d) => {
                    j.deltas.put(key, 0, d.clone());
                    d
                }
                Err(e) => {
                    tracing::warn!(error = %e, "paired comparison failed; combining the sides as independent");
                    return Ok(independent());
                }
            }
        }
    };
    let f = unit.factor();
    Ok(Some(gate::Delta {
        value: nats.value * f,
        relative: (b.value != 0.0).then(|| nats.value * f / b.value.abs()),
        ci_low: Some(nats.low * f),
        ci_high: Some(nats.high * f),
        method: gate::DeltaMethod::Paired,
    }))
}

/// Decide whether a version may ship.
///
/// Each rule compares one metric (`estimator` or `estimator.statistic`, e.g.
/// `semantic_mi.efficiency`) of this version with a bound: an absolute `threshold`, and/or a bound
/// derived from a `baseline` (an alias, a version, or `previous`) with `max_regression` or
/// `min_improvement` (`absolute` in the request's unit, `relative` as a fraction of |baseline|;
/// with both, both must hold; a zero baseline uses the absolute form only). `op` gives the
/// direction: `gte`/`gt` higher is better, `lte`/`lt` lower is better; inclusive ops pass at
/// equality, strict ones fail.
///
/// A rule with a baseline judges the difference Δ = candidate − baseline and its interval
/// (`delta` in the outcome): `method: paired` when both versions were evaluated on the same
/// samples (their batches' label digests match: a paired bootstrap recomputes both statistics on
/// each resample of the shared samples; a version against itself gives Δ = 0 with a zero-width
/// interval and passes), else `independent` (or `pooled`), the two sides' intervals combined as
/// independent. Example: `{"metric": "semantic_mi", "op": "gte", "baseline": "production",
/// "max_regression": {"relative": 0.02}}` passes when Δ ≥ −0.02·|production| with Δ's interval
/// clear of that bound; the outcome carries `"delta": {"value": -0.004, "relative": -0.0038,
/// "ci_low": -0.007, "ci_high": -0.001, "method": "paired"}`.
///
/// `use`: `value` (default) compares the point value (the candidate's, or Δ's) and is
/// `inconclusive` when its interval straddles the bound; `ci_low`/`ci_high` compare that end of
/// the interval (one-sided, conservative or lenient). `min_samples`: fewer samples →
/// `inconclusive`. A metric whose result is `unreliable` by its own checks (`diagnostics`) is
/// `inconclusive` with the reasons; `caution` is reported only. A failing `warning` rule gives
/// `warn`. A version with several batches is judged on the exact pooled value for mergeable
/// estimators (interval: the pooled statistic's own where it has one, else the inverse-variance
/// combination of the batches' intervals), else on its latest batch; each rule says which in
/// `source`.
///
/// Verdict: `fail` if a critical rule fails; else `pending` if jobs are still unfinished at the
/// deadline; else `inconclusive` if a critical rule is; else `warn`; else `pass`.
///
/// Example: `{"metric": "semantic_mi", "op": "gte", "baseline": "production",
/// "max_regression": {"relative": 0.02}, "use": "ci_low"}` — the candidate's semantic MI, at the
/// low end of its 95 % interval, must not fall more than 2 % below production's value.
#[utoipa::path(
    post,
    path = "/v1/models/{model}/versions/{version}/gate",
    tag = "gates",
    params(("model" = String, Path), ("version" = String, Path), UnitQuery),
    request_body = GateRequest,
    responses(
        (status = 200, body = Decision, description = "The decision (stored; see /v1/gate-decisions/{id})"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn evaluate(
    State(state): State<AppState>,
    Path((model, version)): Path<(String, String)>,
    Query(q): Query<UnitQuery>,
    StrictJson(req): StrictJson<GateRequest>,
) -> Result<Json<Decision>> {
    let unit = q.unit.unwrap_or_default();
    let name = path_name("model", &model)?.to_string();
    if !(0.0..=600.0).contains(&req.wait_seconds) {
        return Err(Error::field("/wait_seconds", "must be between 0 and 600"));
    }
    if req.gate.is_some() == req.rules.is_some() {
        return Err(Error::field(
            "/gate",
            "give either gate (a stored policy) or rules",
        ));
    }
    // The model, the version, the policy and the aliases are read together, as of the request.
    let ctx = store::gate_context(&state.pool, &name, &version, req.gate.as_deref())
        .await?
        .ok_or_else(|| Error::NotFound(format!("model {name} not found")))?;
    let (model_id, model) = (ctx.model_id, name);
    let (version_id, version) = ctx
        .version
        .clone()
        .ok_or_else(|| Error::NotFound(format!("version {version} of model {model} not found")))?;
    let (policy, rules) = match (&req.gate, req.rules) {
        (Some(name), _) => {
            let (v, rules) = ctx.policy.clone().ok_or_else(|| {
                Error::NotFound(format!("gate {name} of model {model} not found"))
            })?;
            let rules: Vec<Rule> =
                serde_json::from_value(rules).map_err(|e| Error::Internal(e.into()))?;
            (
                Some(PolicyRef {
                    name: name.clone(),
                    version: v,
                }),
                rules,
            )
        }
        (None, rules) => {
            let rules = rules.unwrap_or_default();
            check_rules(&rules, "rules")?;
            (None, rules)
        }
    };
    for r in &rules {
        MetricRef::parse(&r.metric).map_err(|m| Error::field("/rules", m))?;
    }
    // Wait for the version's unfinished jobs, up to the deadline (without a wait, the rules'
    // own unfinished jobs below make their outcome pending).
    if req.wait_seconds > 0.0 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(req.wait_seconds);
        while store::unfinished_jobs(&state.pool, version_id).await? > 0
            && tokio::time::Instant::now() < deadline
        {
            let left = deadline - tokio::time::Instant::now();
            tokio::time::sleep(left.min(Duration::from_millis(250))).await;
        }
    }
    let judge = Judge::of(&state);
    let decision = judge
        .judge(
            &ctx,
            model,
            (version_id, version),
            policy,
            &rules,
            unit,
            None,
        )
        .await?;
    judge
        .store(&state.pool, model_id, version_id, &decision)
        .await?;
    crate::metrics::gate_verdict(decision.verdict.as_str());
    tracing::info!(decision = %decision.id, verdict = decision.verdict.as_str(), "gate evaluated");
    Ok(Json(decision))
}

/// What a gate evaluation needs beside its inputs: the database and the cache of paired
/// differences. The HTTP gate and the monitors' evaluations share it.
pub struct Judge<'a> {
    pub pool: &'a sqlx::PgPool,
    pub deltas: &'a super::GenerationCache<crate::estimate::paired::PairedDelta>,
}

/// A monitor's restriction of what is judged: the target version's results from these batches
/// only, and the monitor recorded on the decision.
pub struct MonitorScope {
    pub monitor: MonitorRef,
    pub batches: std::collections::HashSet<Uuid>,
}

impl<'a> Judge<'a> {
    pub fn of(state: &'a AppState) -> Judge<'a> {
        Judge {
            pool: &state.pool,
            deltas: &state.caches.deltas,
        }
    }

    /// Judge `rules` on a version (the rule semantics are `crate::gate`'s): resolve each
    /// distinct baseline once (an alias, then a version name; `previous` is the version created
    /// just before this one), read every (version, estimator) the rules need, and decide.
    /// Nothing is stored.
    #[allow(clippy::too_many_arguments)]
    pub async fn judge(
        &self,
        ctx: &store::GateContext,
        model: String,
        (version_id, version): (Uuid, String),
        policy: Option<PolicyRef>,
        rules: &[Rule],
        unit: Unit,
        scope: Option<MonitorScope>,
    ) -> Result<Decision> {
        let metrics = rules
            .iter()
            .map(|r| MetricRef::parse(&r.metric).map_err(|m| Error::field("/rules", m)))
            .collect::<Result<Vec<_>>>()?;
        let model_id = ctx.model_id;
        let mut baselines: HashMap<&str, Option<(Uuid, String)>> = HashMap::new();
        for b in rules.iter().filter_map(|r| r.baseline.as_deref()) {
            if baselines.contains_key(b) {
                continue;
            }
            let found = match ctx.aliases.get(b) {
                Some(v) if b != "previous" => Some(v.clone()),
                _ => store::resolve_version(self.pool, model_id, b, Some(version_id)).await?,
            };
            baselines.insert(b, found);
        }
        let mut versions = vec![version_id];
        versions.extend(baselines.values().flatten().map(|(id, _)| *id));
        versions.sort();
        versions.dedup();
        let mut reads = Reads::load(self, &versions, &metrics).await?;
        if let Some(s) = &scope {
            reads.restrict(version_id, &s.batches);
        }
        let mut outcomes = Vec::with_capacity(rules.len());
        let mut batches: Vec<BatchRef> = Vec::new();
        for (rule, metric) in rules.iter().zip(&metrics) {
            let cand = reads.observe((version_id, &version), metric, unit);
            let base = rule
                .baseline
                .as_deref()
                .and_then(|b| baselines[b].as_ref())
                .map(|(bid, bname)| (bname.clone(), reads.observe((*bid, bname), metric, unit)));
            let delta = match &base {
                Some((_, b)) if rule.max_regression.is_some() || rule.min_improvement.is_some() => {
                    difference(self, metric, &cand, b, unit).await?
                }
                _ => None,
            };
            let outcome = gate::evaluate(
                rule,
                &cand.input,
                base.as_ref().map(|(n, o)| (n.as_str(), &o.input)),
                delta.as_ref(),
            );
            for b in cand
                .batches
                .iter()
                .chain(base.iter().flat_map(|(_, o)| o.batches.iter()))
            {
                if !batches.iter().any(|x| x.batch_id == b.batch_id) {
                    batches.push(b.clone());
                }
            }
            outcomes.push(DecisionRule {
                outcome,
                op: rule.op,
                use_: rule.use_,
                source: cand.source,
            });
        }
        let verdict = gate::decide(
            &outcomes
                .iter()
                .map(|o| o.outcome.clone())
                .collect::<Vec<_>>(),
        );
        Ok(Decision {
            id: Uuid::now_v7(),
            verdict,
            rules: outcomes,
            model,
            version,
            policy,
            unit,
            batches,
            evaluated_at: Utc::now(),
            monitor: scope.map(|s| s.monitor),
        })
    }

    /// Store a decision (one insert), marked with its monitor when a monitor made it.
    pub async fn store<'e>(
        &self,
        e: impl sqlx::PgExecutor<'e>,
        model_id: Uuid,
        version_id: Uuid,
        decision: &Decision,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO gate_decisions (id, model_id, version_id, policy_name, policy_version, verdict, decision, evaluated_at, monitor)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(decision.id)
        .bind(model_id)
        .bind(version_id)
        .bind(decision.policy.as_ref().map(|p| p.name.clone()))
        .bind(decision.policy.as_ref().map(|p| p.version))
        .bind(decision.verdict.as_str())
        .bind(serde_json::to_value(decision).expect("decision serialises"))
        .bind(decision.evaluated_at)
        .bind(decision.monitor.as_ref().map(|m| m.name.clone()))
        .execute(e)
        .await?;
        Ok(())
    }
}

/// A stored decision, as it was returned.
#[utoipa::path(
    get,
    path = "/v1/gate-decisions/{id}",
    tag = "gates",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Decision), (status = 404, body = Problem, content_type = "application/problem+json"))
)]
pub async fn get_decision(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Json<serde_json::Value>> {
    let d: serde_json::Value =
        sqlx::query_scalar("SELECT decision FROM gate_decisions WHERE id = $1")
            .bind(id)
            .fetch_optional(&state.pool)
            .await?
            .ok_or_else(|| Error::NotFound(format!("gate decision {id} not found")))?;
    Ok(Json(d))
}

/// A model's gate decisions, newest first.
#[utoipa::path(
    get,
    path = "/v1/models/{model}/gate-decisions",
    tag = "gates",
    params(("model" = String, Path), PageQuery),
    responses((status = 200, body = Page<Decision>), (status = 404, body = Problem, content_type = "application/problem+json"))
)]
pub async fn list_decisions(
    State(state): State<AppState>,
    Path(model): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Page<serde_json::Value>>> {
    let (model_id, _) = model_or_404(&state, &model).await?;
    let limit = q.limit()?;
    let after = q.after_time()?;
    let mut rows: Vec<(DateTime<Utc>, Uuid, serde_json::Value)> = sqlx::query_as(
        "SELECT evaluated_at, id, decision FROM gate_decisions WHERE model_id = $1
           AND ($2::timestamptz IS NULL OR (evaluated_at, id) < ($2, $3))
         ORDER BY evaluated_at DESC, id DESC LIMIT $4",
    )
    .bind(model_id)
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(limit + 1)
    .fetch_all(&state.pool)
    .await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| super::cursor::encode_time(r.0, r.1))
    } else {
        None
    };
    Ok(Json(Page {
        items: rows.into_iter().map(|r| r.2).collect(),
        next_cursor,
    }))
}

// ---------------------------------------------------------------------------------------------
// Compare

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CompareQuery {
    /// Baseline version or alias.
    pub baseline: String,
    /// Candidate version or alias.
    pub candidate: String,
    /// `bits` (default) or `nats`.
    pub unit: Option<Unit>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Side {
    pub value: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub n: Option<u64>,
    pub source: Option<Source>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MetricComparison {
    pub metric: String,
    pub baseline: Side,
    pub candidate: Side,
    /// candidate − baseline with its interval: `paired` when both versions were evaluated on the
    /// same samples (a paired bootstrap), else `independent` (or `pooled` when a side pools
    /// several batches).
    pub delta: Option<gate::Delta>,
    /// delta.value / |baseline| (null when the baseline is 0); the same as `delta.relative`.
    pub relative_delta: Option<f64>,
    /// Whether the two intervals overlap (null without both intervals).
    pub ci_overlap: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Comparison {
    pub model: String,
    pub baseline_version: String,
    pub candidate_version: String,
    pub unit: Unit,
    pub metrics: Vec<MetricComparison>,
    /// Per estimator and segment key carried by both versions' latest segmented batches: the
    /// segment values ranked by their contribution to the change of the information,
    /// P_c(s)·I_c(s) − P_b(s)·I_b(s), most negative (the segment that lost the most) first.
    pub segments: Vec<SegmentRanking>,
}

/// The segment values of one key ranked by their contribution to the change.
#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentRanking {
    pub estimator: String,
    pub key: String,
    /// The batches whose per-segment results were compared (each side's latest with segments).
    pub baseline_batch_id: Uuid,
    pub candidate_batch_id: Uuid,
    /// Σ_s P(s) I_s on each side (I(Y;Ŷ|S) for `shannon_mi`) and its change, in `unit`.
    pub baseline_conditional: Option<f64>,
    pub candidate_conditional: Option<f64>,
    pub items: Vec<crate::estimate::segmented::SegmentChange>,
}

/// Each side's latest segmented result per estimator, and the rankings of the keys both carry.
pub(crate) async fn segment_rankings(
    c: &mut sqlx::PgConnection,
    bid: Uuid,
    cid: Uuid,
    unit: Unit,
) -> Result<Vec<SegmentRanking>> {
    use crate::estimate::segmented::{rank_changes, scale_segments, Segments};
    let rows: Vec<(Uuid, String, Uuid, serde_json::Value)> = sqlx::query_as(
        "SELECT DISTINCT ON (version_id, estimator) version_id, estimator, batch_id, segments
         FROM results WHERE version_id = ANY($1) AND segments IS NOT NULL
         ORDER BY version_id, estimator, computed_at DESC, id DESC",
    )
    .bind([bid, cid].as_slice())
    .fetch_all(&mut *c)
    .await?;
    let mut sides: HashMap<(Uuid, String), (Uuid, Segments)> = HashMap::new();
    for (v, e, batch, seg) in rows {
        if let Ok(s) = serde_json::from_value::<Segments>(seg) {
            sides.insert((v, e), (batch, scale_segments(&s, unit.factor())));
        }
    }
    let mut estimators: Vec<&String> = sides.keys().map(|(_, e)| e).collect();
    estimators.sort();
    estimators.dedup();
    let mut out = Vec::new();
    for e in estimators {
        let (Some((bb, bs)), Some((cb, cs))) =
            (sides.get(&(bid, e.clone())), sides.get(&(cid, e.clone())))
        else {
            continue;
        };
        for (key, b) in bs {
            let Some(c) = cs.get(key) else { continue };
            let cond = |k: &crate::estimate::segmented::KeySegments| {
                k.decomposition.as_ref().and_then(|d| d.conditional_mi)
            };
            out.push(SegmentRanking {
                estimator: e.clone(),
                key: key.clone(),
                baseline_batch_id: *bb,
                candidate_batch_id: *cb,
                baseline_conditional: cond(b),
                candidate_conditional: cond(c),
                items: rank_changes(b, c),
            });
        }
    }
    Ok(out)
}

/// Compare two versions (or aliases) per metric: both values, the difference with its interval
/// (paired when both were evaluated on the same samples), the relative difference, and whether
/// the two intervals overlap. When both versions' batches carry the same segment key,
/// `segments` ranks its values by their contribution to the change of the information
/// (P_c(s)·I_c(s) − P_b(s)·I_b(s), most negative first): which segment lost the most.
///
/// Example `delta`: `{"value": -0.012, "relative": -0.011, "ci_low": -0.019, "ci_high": -0.005,
/// "method": "paired"}`.
#[utoipa::path(
    get,
    path = "/v1/models/{model}/compare",
    tag = "gates",
    params(("model" = String, Path), CompareQuery),
    responses((status = 200, body = Comparison), (status = 404, body = Problem, content_type = "application/problem+json"))
)]
pub async fn compare(
    State(state): State<AppState>,
    Path(model): Path<String>,
    Query(q): Query<CompareQuery>,
) -> Result<Json<Comparison>> {
    let unit = q.unit.unwrap_or_default();
    super::query_name("baseline", Some(&q.baseline))?;
    super::query_name("candidate", Some(&q.candidate))?;
    let (model_id, model) = model_or_404(&state, &model).await?;
    let resolve = |r: String| {
        let state = state.clone();
        async move {
            store::resolve_version(&state.pool, model_id, &r, None)
                .await?
                .ok_or_else(|| Error::NotFound(format!("no version or alias {r:?}")))
        }
    };
    let (bid, bname) = resolve(q.baseline.clone()).await?;
    let (cid, cname) = resolve(q.candidate.clone()).await?;
    let estimators: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT estimator FROM results WHERE version_id = $1 OR version_id = $2 ORDER BY estimator",
    )
    .bind(bid)
    .bind(cid)
    .fetch_all(&state.pool)
    .await?;
    let mut metrics = Vec::new();
    let judge = Judge::of(&state);
    let plain: Vec<MetricRef> = estimators.iter().map(|e| MetricRef::of(e)).collect();
    let reads = Reads::load(&judge, &[bid, cid], &plain).await?;
    for e in estimators {
        let m = MetricRef::of(&e);
        let side = |o: Observed| match o.input {
            Input::Value(v) => Side {
                value: super::views::finite(v.value),
                ci_low: v.ci_low,
                ci_high: v.ci_high,
                n: Some(v.n),
                source: o.source,
            },
            _ => Side {
                value: None,
                ci_low: None,
                ci_high: None,
                n: None,
                source: None,
            },
        };
        let (bo, co) = (
            reads.observe((bid, &bname), &m, unit),
            reads.observe((cid, &cname), &m, unit),
        );
        let delta = difference(&judge, &m, &co, &bo, unit).await?;
        let b = side(bo);
        let c = side(co);
        let relative_delta = delta.as_ref().and_then(|d| d.relative);
        let ci_overlap = match (b.ci_low, b.ci_high, c.ci_low, c.ci_high) {
            (Some(bl), Some(bh), Some(cl), Some(ch)) => Some(bl <= ch && cl <= bh),
            _ => None,
        };
        metrics.push(MetricComparison {
            metric: e,
            baseline: b,
            candidate: c,
            delta,
            relative_delta,
            ci_overlap,
        });
    }
    let mut conn = state.pool.acquire().await?;
    let segments = segment_rankings(&mut conn, bid, cid, unit).await?;
    Ok(Json(Comparison {
        model,
        baseline_version: bname,
        candidate_version: cname,
        unit,
        metrics,
        segments,
    }))
}
