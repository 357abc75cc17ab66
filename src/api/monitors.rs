//! Monitors (versioned definitions), their incidents, and their webhook deliveries.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::{parse_json, path_name, query_name, require_json, PageQuery};
use super::state::AppState;
use super::views::Page;
use crate::error::{Error, FieldError, Problem, Result};
use crate::monitor::deliver;
use crate::monitor::spec::{check_destination, MonitorSpec};
use crate::store;

async fn model_or_404(state: &AppState, model: &str) -> Result<(Uuid, String)> {
    let name = path_name("model", model)?;
    let id = store::model_id(&state.pool, name.as_str())
        .await?
        .ok_or_else(|| Error::NotFound(format!("model {name} not found")))?;
    Ok((id, name.to_string()))
}

/// Where a monitor stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct MonitorStatus {
    /// `ok` or `firing`.
    pub status: String,
    /// The open incident's severity (`fail`, `inconclusive`, `warn`).
    pub severity: Option<String>,
    pub incident_id: Option<Uuid>,
    pub last_verdict: Option<String>,
    pub last_decision_id: Option<Uuid>,
    pub last_evaluated_at: Option<DateTime<Utc>>,
    /// The next scheduled evaluation (`triggers.every`).
    pub next_run_at: Option<DateTime<Utc>>,
}

/// A stored monitor.
#[derive(Debug, Serialize, ToSchema)]
pub struct Monitor {
    pub model: String,
    pub name: String,
    /// Increases by one with every PUT; decisions record the version that made them.
    pub version: i32,
    #[serde(flatten)]
    pub spec: MonitorSpec,
    pub created_at: DateTime<Utc>,
    pub state: Option<MonitorStatus>,
}

/// The answer to a PUT: the monitor and the signing secrets created by this PUT (one per new
/// channel, or per channel whose URL changed), shown this once only.
#[derive(Debug, Serialize, ToSchema)]
pub struct MonitorCreated {
    #[serde(flatten)]
    pub monitor: Monitor,
    /// Channel name → `whsec_…` secret (Standard Webhooks: HMAC-SHA256 key = base64-decoded
    /// part after `whsec_`). Channels kept from the previous version keep their secret and are
    /// not listed.
    pub secrets: HashMap<String, String>,
}

/// Create or change a monitor (a new version; the model is created if needed). It evaluates
/// its target (an alias, a version, or `latest`) with a stored gate policy or inline rules (the
/// gate rule semantics: see `POST /v1/models/{model}/versions/{version}/gate`) on its window,
/// when a batch of the target has all its jobs finished (`on_result`), when the alias moves
/// (`on_alias_change`) and/or on a schedule (`every`). An incident opens when the verdict is an
/// outcome listed in `notify_on` and resolves when it is not; each opening, severity change and
/// resolution (`recovered`) sends one message to every channel. Channel URLs on loopback,
/// private or link-local addresses are refused (422) unless the server runs with
/// `--webhook-allow-private`.
#[utoipa::path(
    put,
    path = "/v1/models/{model}/monitors/{name}",
    tag = "monitors",
    params(("model" = String, Path), ("name" = String, Path)),
    request_body = MonitorSpec,
    responses(
        (status = 200, body = MonitorCreated),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put_monitor(
    State(state): State<AppState>,
    Path((model, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<MonitorCreated>> {
    require_json(&headers)?;
    let model = path_name("model", &model)?;
    let name = path_name("monitor", &name)?;
    let spec: MonitorSpec = parse_json(&body)?;
    let mut errors = spec.check();
    if let Some(rules) = &spec.rules {
        if let Err(Error::Validation(e)) = super::gates::check_rules(rules, "rules") {
            errors.extend(e);
        }
    }
    for (i, c) in spec.channels.iter().enumerate() {
        if let Err(m) = check_destination(&c.url, state.limits.webhook_allow_private).await {
            errors.push(FieldError::at(format!("/channels/{i}/url"), m));
        }
    }
    if let Some(g) = &spec.gate {
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM gate_policies p JOIN models m ON m.id = p.model_id
                            WHERE m.name = $1 AND p.name = $2)",
        )
        .bind(model.as_str())
        .bind(g)
        .fetch_one(&state.pool)
        .await?;
        if !exists && errors.is_empty() {
            // A well-formed reference to a policy that is not stored: like the gate route.
            return Err(Error::NotFound(format!(
                "gate {g} of model {model} not found (store it with PUT /v1/models/{model}/gates/{g} first)"
            )));
        }
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let mut tx = state.pool.begin().await?;
    // Serialises concurrent PUTs of one definition so versions stay dense.
    let model_id = crate::store::lock_definition(
        &mut tx,
        model.as_str(),
        crate::store::MONITOR_LOCKS,
        name.as_str(),
    )
    .await?;
    // Channels whose name and URL are unchanged keep their secret.
    let previous: Option<(serde_json::Value, serde_json::Value)> = sqlx::query_as(
        "SELECT spec, secrets FROM monitors WHERE model_id = $1 AND name = $2 AND deleted_at IS NULL
         ORDER BY version DESC LIMIT 1",
    )
    .bind(model_id)
    .bind(name.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let (old_spec, old_secrets) = match previous {
        Some((s, k)) => (
            serde_json::from_value::<MonitorSpec>(s).ok(),
            serde_json::from_value::<HashMap<String, String>>(k).unwrap_or_default(),
        ),
        None => (None, HashMap::new()),
    };
    let mut secrets = HashMap::new();
    let mut created = HashMap::new();
    for c in &spec.channels {
        let kept = old_spec
            .as_ref()
            .and_then(|o| {
                o.channels
                    .iter()
                    .find(|x| x.name == c.name && x.url == c.url)
            })
            .and_then(|_| old_secrets.get(&c.name).cloned());
        let secret = kept.unwrap_or_else(|| {
            let s = deliver::new_secret();
            created.insert(c.name.clone(), s.clone());
            s
        });
        secrets.insert(c.name.clone(), secret);
    }
    let (version, created_at): (i32, DateTime<Utc>) = sqlx::query_as(
        "INSERT INTO monitors (model_id, name, version, spec, secrets)
         SELECT $1, $2, coalesce(max(version), 0) + 1, $3, $4 FROM monitors WHERE model_id = $1 AND name = $2
         RETURNING version, created_at",
    )
    .bind(model_id)
    .bind(name.as_str())
    .bind(serde_json::to_value(&spec).expect("spec serialises"))
    .bind(serde_json::to_value(&secrets).expect("secrets serialise"))
    .fetch_one(&mut *tx)
    .await?;
    let (kind, target) = match (&spec.target.alias, &spec.target.version) {
        (Some(a), _) => ("alias", Some(a.clone())),
        (None, Some(v)) => ("version", Some(v.clone())),
        _ => ("latest", None),
    };
    let every = spec.every().map(|d| d.as_secs_f64());
    sqlx::query(
        "INSERT INTO monitor_state (model_id, name, target_kind, target, on_result, on_alias_change, every_seconds, next_run_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $7))
         ON CONFLICT (model_id, name) DO UPDATE SET target_kind = $3, target = $4, on_result = $5,
             on_alias_change = $6, every_seconds = $7,
             next_run_at = CASE WHEN monitor_state.every_seconds IS NOT DISTINCT FROM $7 AND monitor_state.next_run_at IS NOT NULL
                                THEN monitor_state.next_run_at ELSE now() + make_interval(secs => $7) END",
    )
    .bind(model_id)
    .bind(name.as_str())
    .bind(kind)
    .bind(target)
    .bind(spec.triggers.on_result)
    .bind(spec.triggers.on_alias_change && kind == "alias")
    .bind(every)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let state_now = status(&state, model_id, name.as_str()).await?;
    Ok(Json(MonitorCreated {
        monitor: Monitor {
            model: model.to_string(),
            name: name.to_string(),
            version,
            spec,
            created_at,
            state: state_now,
        },
        secrets: created,
    }))
}

async fn status(state: &AppState, model_id: Uuid, name: &str) -> Result<Option<MonitorStatus>> {
    type Row = (
        String,
        Option<String>,
        Option<Uuid>,
        Option<String>,
        Option<Uuid>,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT status, severity, incident_id, last_verdict, last_decision_id, last_evaluated_at, next_run_at
         FROM monitor_state WHERE model_id = $1 AND name = $2",
    )
    .bind(model_id)
    .bind(name)
    .fetch_optional(&state.pool)
    .await?;
    Ok(row.map(|r| MonitorStatus {
        status: r.0,
        severity: r.1,
        incident_id: r.2,
        last_verdict: r.3,
        last_decision_id: r.4,
        last_evaluated_at: r.5,
        next_run_at: r.6,
    }))
}

async fn load(state: &AppState, model_id: Uuid, model: &str, name: &str) -> Result<Monitor> {
    let row: Option<(i32, serde_json::Value, DateTime<Utc>)> = sqlx::query_as(
        "SELECT version, spec, created_at FROM monitors WHERE model_id = $1 AND name = $2 AND deleted_at IS NULL
         ORDER BY version DESC LIMIT 1",
    )
    .bind(model_id)
    .bind(name)
    .fetch_optional(&state.pool)
    .await?;
    let (version, spec, created_at) =
        row.ok_or_else(|| Error::NotFound(format!("monitor {name} of model {model} not found")))?;
    Ok(Monitor {
        model: model.to_string(),
        name: name.to_string(),
        version,
        spec: serde_json::from_value(spec).map_err(|e| Error::Internal(e.into()))?,
        created_at,
        state: status(state, model_id, name).await?,
    })
}

/// The current version of a monitor and where it stands (secrets are never shown again).
#[utoipa::path(
    get,
    path = "/v1/models/{model}/monitors/{name}",
    tag = "monitors",
    params(("model" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = Monitor), (status = 404, body = Problem, content_type = "application/problem+json"))
)]
pub async fn get_monitor(
    State(state): State<AppState>,
    Path((model, name)): Path<(String, String)>,
) -> Result<Json<Monitor>> {
    let (model_id, model) = model_or_404(&state, &model).await?;
    let name = path_name("monitor", &name)?.to_string();
    Ok(Json(load(&state, model_id, &model, &name).await?))
}

/// Delete a monitor: it stops evaluating; an open incident is closed without a message;
/// messages already written are still delivered.
#[utoipa::path(
    delete,
    path = "/v1/models/{model}/monitors/{name}",
    tag = "monitors",
    params(("model" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json"))
)]
pub async fn delete_monitor(
    State(state): State<AppState>,
    Path((model, name)): Path<(String, String)>,
) -> Result<StatusCode> {
    let (model_id, model) = model_or_404(&state, &model).await?;
    let name = path_name("monitor", &name)?.to_string();
    let mut tx = state.pool.begin().await?;
    let n = sqlx::query(
        "UPDATE monitors SET deleted_at = now() WHERE model_id = $1 AND name = $2 AND deleted_at IS NULL",
    )
    .bind(model_id)
    .bind(&name)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(Error::NotFound(format!(
            "monitor {name} of model {model} not found"
        )));
    }
    sqlx::query("DELETE FROM monitor_state WHERE model_id = $1 AND name = $2")
        .bind(model_id)
        .bind(&name)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE incidents SET state = 'resolved', resolved_at = now(), updated_at = now()
         WHERE model_id = $1 AND monitor = $2 AND state = 'firing'",
    )
    .bind(model_id)
    .bind(&name)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A model's monitors (current versions), by name.
#[utoipa::path(
    get,
    path = "/v1/models/{model}/monitors",
    tag = "monitors",
    params(("model" = String, Path)),
    responses((status = 200, body = Vec<Monitor>), (status = 404, body = Problem, content_type = "application/problem+json"))
)]
pub async fn list_monitors(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<Vec<Monitor>>> {
    let (model_id, model) = model_or_404(&state, &model).await?;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT name FROM monitors WHERE model_id = $1 AND deleted_at IS NULL ORDER BY name",
    )
    .bind(model_id)
    .fetch_all(&state.pool)
    .await?;
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        out.push(load(&state, model_id, &model, &n).await?);
    }
    Ok(Json(out))
}

/// Evaluate a monitor now (as its triggers would); the evaluation is queued durably.
#[utoipa::path(
    post,
    path = "/v1/models/{model}/monitors/{name}/evaluate",
    tag = "monitors",
    params(("model" = String, Path), ("name" = String, Path)),
    responses((status = 202, body = Evaluation), (status = 404, body = Problem, content_type = "application/problem+json"))
)]
pub async fn evaluate_monitor(
    State(state): State<AppState>,
    Path((model, name)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Evaluation>)> {
    let (model_id, model) = model_or_404(&state, &model).await?;
    let name = path_name("monitor", &name)?.to_string();
    load(&state, model_id, &model, &name).await?;
    let id = Uuid::now_v7();
    let mut tx = state.pool.begin().await?;
    sqlx::query(
        "INSERT INTO monitor_jobs (id, model_id, monitor, trigger, trigger_key) VALUES ($1, $2, $3, 'manual', 'manual:' || $1::text)",
    )
    .bind(id)
    .bind(model_id)
    .bind(&name)
    .execute(&mut *tx)
    .await?;
    crate::queue::notify(&mut *tx).await?;
    tx.commit().await?;
    state.wake.notify_waiters();
    Ok((StatusCode::ACCEPTED, Json(Evaluation { id })))
}

/// A queued evaluation.
#[derive(Debug, Serialize, ToSchema)]
pub struct Evaluation {
    pub id: Uuid,
}

/// An incident of a monitor: opened by a verdict listed in `notify_on`, resolved by the next
/// one that is not.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Incident {
    pub id: Uuid,
    pub monitor: String,
    /// `firing` or `resolved`.
    pub state: String,
    /// `fail`, `inconclusive` or `warn` (the latest).
    pub severity: String,
    /// The target's version when it last changed.
    pub version: Option<String>,
    /// Whether its opening was sent (false while a cooldown held it).
    pub notified: bool,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub first_decision_id: Uuid,
    pub last_decision_id: Uuid,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IncidentQuery {
    /// `firing` or `resolved`.
    #[param(pattern = "^(firing|resolved)$")]
    pub state: Option<String>,
    /// Only this monitor's.
    pub monitor: Option<String>,
    /// Page size, 1–1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// The previous page's `next_cursor` (empty or absent: the first page).
    pub cursor: Option<String>,
}

/// A model's incidents, newest first.
#[utoipa::path(
    get,
    path = "/v1/models/{model}/incidents",
    tag = "monitors",
    params(("model" = String, Path), IncidentQuery),
    responses((status = 200, body = Page<Incident>), (status = 404, body = Problem, content_type = "application/problem+json"))
)]
pub async fn list_incidents(
    State(state): State<AppState>,
    Path(model): Path<String>,
    Query(q): Query<IncidentQuery>,
) -> Result<Json<Page<Incident>>> {
    let (model_id, _) = model_or_404(&state, &model).await?;
    if let Some(s) = &q.state {
        if s != "firing" && s != "resolved" {
            return Err(Error::BadRequest(format!(
                "state must be firing or resolved (got {s:?})"
            )));
        }
    }
    query_name("monitor", q.monitor.as_deref())?;
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor.clone(),
    };
    let limit = page.limit()?;
    let after = page.after_time()?;
    let mut rows: Vec<Incident> = sqlx::query_as(
        "SELECT id, monitor, state, severity, version, notified, opened_at, updated_at, resolved_at,
                first_decision_id, last_decision_id
         FROM incidents WHERE model_id = $1
           AND ($2::text IS NULL OR state = $2) AND ($3::text IS NULL OR monitor = $3)
           AND ($4::timestamptz IS NULL OR (opened_at, id) < ($4, $5))
         ORDER BY opened_at DESC, id DESC LIMIT $6",
    )
    .bind(model_id)
    .bind(&q.state)
    .bind(&q.monitor)
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(limit + 1)
    .fetch_all(&state.pool)
    .await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last()
            .map(|r| super::cursor::encode_time(r.opened_at, r.id))
    } else {
        None
    };
    Ok(Json(Page {
        items: rows,
        next_cursor,
    }))
}

/// One HTTP attempt of a delivery.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct DeliveryAttempt {
    #[serde(skip)]
    pub delivery_id: Uuid,
    pub n: i32,
    pub at: DateTime<Utc>,
    /// The receiver's status code (null: no answer).
    pub status: Option<i32>,
    pub latency_ms: f64,
    pub error: Option<String>,
}

/// One message to one channel, with its attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct Delivery {
    pub id: Uuid,
    /// The `webhook-id` header: the same on every attempt and redelivery.
    pub webhook_id: String,
    pub channel: String,
    /// `webhook` or `slack`.
    pub kind: String,
    /// `incident.firing`, `incident.severity_changed` or `incident.resolved`.
    pub event: String,
    /// `pending`, `delivering`, `delivered` or `dead` (retries given up after 24 h).
    pub state: String,
    pub attempts: i32,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub incident_id: Option<Uuid>,
    pub decision_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub attempt_log: Vec<DeliveryAttempt>,
}

type DeliveryRow = (
    Uuid,
    String,
    String,
    String,
    String,
    i32,
    Option<i32>,
    Option<String>,
    Option<Uuid>,
    Option<Uuid>,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

const DELIVERY_COLUMNS: &str =
    "id, channel, kind, event, state, attempts, last_status, last_error, \
    incident_id, decision_id, created_at, next_attempt_at, delivered_at";

async fn deliveries(state: &AppState, rows: Vec<DeliveryRow>) -> Result<Vec<Delivery>> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
    let attempts: Vec<DeliveryAttempt> = sqlx::query_as(
        "SELECT delivery_id, n, at, status, latency_ms, error FROM webhook_attempts
         WHERE delivery_id = ANY($1) ORDER BY delivery_id, n",
    )
    .bind(&ids)
    .fetch_all(&state.pool)
    .await?;
    let mut by: HashMap<Uuid, Vec<DeliveryAttempt>> = HashMap::new();
    for a in attempts {
        by.entry(a.delivery_id).or_default().push(a);
    }
    Ok(rows
        .into_iter()
        .map(|r| Delivery {
            id: r.0,
            webhook_id: deliver::message_id(r.0),
            channel: r.1,
            kind: r.2,
            event: r.3,
            next_attempt_at: (r.4 == "pending").then_some(r.11),
            state: r.4,
            attempts: r.5,
            last_status: r.6,
            last_error: r.7,
            incident_id: r.8,
            decision_id: r.9,
            created_at: r.10,
            delivered_at: r.12,
            attempt_log: by.remove(&r.0).unwrap_or_default(),
        })
        .collect())
}

/// A monitor's messages, newest first, with every attempt (status code, latency, error).
#[utoipa::path(
    get,
    path = "/v1/models/{model}/monitors/{name}/deliveries",
    tag = "monitors",
    params(("model" = String, Path), ("name" = String, Path), PageQuery),
    responses((status = 200, body = Page<Delivery>), (status = 404, body = Problem, content_type = "application/problem+json"))
)]
pub async fn list_deliveries(
    State(state): State<AppState>,
    Path((model, name)): Path<(String, String)>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Page<Delivery>>> {
    let (model_id, _) = model_or_404(&state, &model).await?;
    let name = path_name("monitor", &name)?.to_string();
    let limit = q.limit()?;
    let after = q.after_time()?;
    let mut rows: Vec<DeliveryRow> = sqlx::query_as(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE model_id = $1 AND monitor = $2
           AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
         ORDER BY created_at DESC, id DESC LIMIT $5"
    ))
    .bind(model_id)
    .bind(&name)
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(limit + 1)
    .fetch_all(&state.pool)
    .await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| super::cursor::encode_time(r.10, r.0))
    } else {
        None
    };
    Ok(Json(Page {
        items: deliveries(&state, rows).await?,
        next_cursor,
    }))
}

/// Send a message again (same `webhook-id`, so receivers can deduplicate), now, with a fresh
/// 24 h of retries. 409 while an attempt is in flight.
#[utoipa::path(
    post,
    path = "/v1/models/{model}/monitors/{name}/deliveries/{id}/redeliver",
    tag = "monitors",
    params(("model" = String, Path), ("name" = String, Path), ("id" = Uuid, Path)),
    responses(
        (status = 202, body = Delivery),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn redeliver(
    State(state): State<AppState>,
    Path((model, name, id)): Path<(String, String, Uuid)>,
) -> Result<(StatusCode, Json<Delivery>)> {
    let (model_id, _) = model_or_404(&state, &model).await?;
    let name = path_name("monitor", &name)?.to_string();
    let current: Option<String> = sqlx::query_scalar(
        "SELECT state FROM webhook_deliveries WHERE id = $1 AND model_id = $2 AND monitor = $3",
    )
    .bind(id)
    .bind(model_id)
    .bind(&name)
    .fetch_optional(&state.pool)
    .await?;
    match current.as_deref() {
        None => return Err(Error::NotFound(format!("delivery {id} not found"))),
        Some("delivering") => {
            return Err(Error::Conflict(
                "an attempt of this delivery is in flight; try again when it ends".into(),
            ))
        }
        _ => {}
    }
    let mut tx = state.pool.begin().await?;
    let row: Option<DeliveryRow> = sqlx::query_as(&format!(
        "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = now(), retry_from = now()
         WHERE id = $1 AND state <> 'delivering' RETURNING {DELIVERY_COLUMNS}"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Err(Error::Conflict(
            "an attempt of this delivery is in flight; try again when it ends".into(),
        ));
    };
    crate::queue::notify(&mut *tx).await?;
    tx.commit().await?;
    state.wake.notify_waiters();
    let mut d = deliveries(&state, vec![row]).await?;
    Ok((StatusCode::ACCEPTED, Json(d.remove(0))))
}
