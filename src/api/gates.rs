//! Aliases, gate policies, gate decisions, and version comparison.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::{path_name, query_name, PageQuery, StrictJson, UnitQuery};
use super::state::AppState;
use super::views::Page;
use crate::domain::metric::MetricRef;
use crate::domain::unit::Unit;
use crate::error::{Error, FieldError, Problem, Result};
use crate::gate::compare::{self, Comparison};
use crate::gate::judge::{Decision, PolicyRef};
use crate::gate::Rule;
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
    #[schema(value_type = super::extract::NameString)]
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
    crate::store::triggers::on_alias_change(&mut tx, model_id, alias.as_str()).await?;
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
    crate::store::triggers::on_alias_change(&mut tx, model_id, &alias).await?;
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
    #[schema(value_type = Option<super::extract::NameString>)]
    pub gate: Option<String>,
    /// Inline rules (instead of `gate`).
    #[schema(min_items = 1)]
    pub rules: Option<Vec<Rule>>,
    /// Wait up to this long (0–600 s) for the version's queued or running jobs before deciding.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 600)]
    pub wait_seconds: f64,
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
    let judge = state.judge();
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
    query_name("baseline", Some(&q.baseline))?;
    query_name("candidate", Some(&q.candidate))?;
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
    let comparison =
        compare::compare_versions(&state.judge(), model, (bid, bname), (cid, cname), unit).await?;
    Ok(Json(comparison))
}
