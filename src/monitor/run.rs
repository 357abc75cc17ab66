//! The monitor tasks of a worker pool: evaluations, deliveries, the schedule and the reaper of
//! expired leases.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::deliver;
use super::incident::{self, Change, Event, Severity};
use super::spec::{ChannelKind, MonitorSpec};
use super::MonitorConfig;
use crate::domain::unit::Unit;
use crate::gate::judge::{Decision, Judge, MonitorRef, MonitorScope, PolicyRef};
use crate::gate::Rule;
use crate::store::cache::GenerationCache;

type Deltas = GenerationCache<crate::estimate::paired::PairedDelta>;

/// Start the monitor tasks on `tasks`.
pub fn spawn(
    tasks: &mut JoinSet<()>,
    pool: PgPool,
    cfg: MonitorConfig,
    wake: Arc<Notify>,
    stop: CancellationToken,
    pool_id: &str,
) {
    let cfg = Arc::new(cfg);
    let deltas = Arc::new(Deltas::default());
    let mut builder = reqwest::Client::builder()
        .timeout(cfg.timeout)
        .connect_timeout(cfg.timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(4);
    if !cfg.allow_private {
        builder = builder.dns_resolver(Arc::new(super::spec::PublicOnly));
    }
    let client = builder.build().expect("an HTTP client");
    for i in 0..cfg.evaluators.max(1) {
        tasks.spawn(evaluator(
            pool.clone(),
            cfg.clone(),
            deltas.clone(),
            wake.clone(),
            stop.clone(),
            format!("{pool_id}/monitor-{i}"),
        ));
    }
    for i in 0..cfg.deliverers.max(1) {
        tasks.spawn(deliverer(
            pool.clone(),
            cfg.clone(),
            client.clone(),
            wake.clone(),
            stop.clone(),
            format!("{pool_id}/delivery-{i}"),
        ));
    }
    tasks.spawn(housekeeper(pool, cfg, stop));
}

/// Waits with a capped exponential backoff while the database fails; logs once per outage.
struct Backoff(Duration, bool);

impl Backoff {
    fn new() -> Backoff {
        Backoff(Duration::from_millis(250), false)
    }
    fn ok(&mut self) {
        if self.1 {
            tracing::info!("monitors: the database answers again");
        }
        *self = Backoff::new();
    }
    fn failed(&mut self, what: &str, e: &dyn std::fmt::Display) -> Duration {
        if !self.1 {
            tracing::warn!(error = %e, "monitors: {what} failed; backing off");
            self.1 = true;
        }
        let d = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
        d
    }
}

/// The schedule and the reaper: every poll interval, enqueue due `every` slots and take back
/// evaluations and deliveries whose lease expired.
async fn housekeeper(pool: PgPool, cfg: Arc<MonitorConfig>, stop: CancellationToken) {
    let mut backoff = Backoff::new();
    loop {
        let r: sqlx::Result<()> = async {
            crate::store::triggers::schedule_due(&pool).await?;
            sqlx::query(
                "UPDATE monitor_jobs SET state = CASE WHEN attempts >= 5 THEN 'failed' ELSE 'queued' END,
                     finished_at = CASE WHEN attempts >= 5 THEN now() END,
                     error = CASE WHEN attempts >= 5 THEN 'the evaluation stopped 5 times' ELSE error END,
                     lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
                 WHERE state = 'running' AND lease_expires_at < now()",
            )
            .execute(&pool)
            .await?;
            sqlx::query(
                "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = now(),
                     lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
                 WHERE state = 'delivering' AND lease_expires_at < now()",
            )
            .execute(&pool)
            .await?;
            Ok(())
        }
        .await;
        let wait = match r {
            Ok(()) => {
                backoff.ok();
                cfg.poll_interval
            }
            Err(e) => backoff.failed("the schedule", &e).max(cfg.poll_interval),
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
struct EvalJob {
    id: Uuid,
    model_id: Uuid,
    monitor: String,
    trigger: String,
    version_id: Option<Uuid>,
    attempts: i32,
    lease_token: Uuid,
}

async fn evaluator(
    pool: PgPool,
    cfg: Arc<MonitorConfig>,
    deltas: Arc<Deltas>,
    wake: Arc<Notify>,
    stop: CancellationToken,
    owner: String,
) {
    let mut backoff = Backoff::new();
    loop {
        if stop.is_cancelled() {
            return;
        }
        let notified = wake.notified();
        let claimed: sqlx::Result<Option<EvalJob>> = sqlx::query_as(
            "WITH c AS (SELECT id FROM monitor_jobs WHERE state = 'queued' AND run_at <= now()
                        ORDER BY run_at, id FOR UPDATE SKIP LOCKED LIMIT 1)
             UPDATE monitor_jobs j SET state = 'running', attempts = j.attempts + 1, lease_owner = $1,
                 lease_token = $2, lease_expires_at = now() + make_interval(secs => $3)
             FROM c WHERE j.id = c.id
             RETURNING j.id, j.model_id, j.monitor, j.trigger, j.version_id, j.attempts, j.lease_token",
        )
        .bind(&owner)
        .bind(Uuid::new_v4())
        .bind(cfg.lease.as_secs_f64())
        .fetch_optional(&pool)
        .await;
        match claimed {
            Ok(Some(job)) => {
                backoff.ok();
                let span = tracing::info_span!("monitor", monitor = %job.monitor, evaluation = %job.id, trigger = %job.trigger);
                let done = evaluate(&pool, &cfg, &deltas, &job).instrument(span).await;
                if let Err(e) = done {
                    tracing::warn!(error = %e, monitor = %job.monitor, "monitor evaluation failed; retrying later");
                    let _ = sqlx::query(
                        "UPDATE monitor_jobs SET state = CASE WHEN attempts >= 5 THEN 'failed' ELSE 'queued' END,
                             finished_at = CASE WHEN attempts >= 5 THEN now() END,
                             run_at = now() + make_interval(secs => $3), error = $4,
                             lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
                         WHERE id = $1 AND lease_token = $2 AND state = 'running'",
                    )
                    .bind(job.id)
                    .bind(job.lease_token)
                    .bind(cfg.retry_delay(job.attempts).as_secs_f64())
                    .bind(format!("{e:#}"))
                    .execute(&pool)
                    .await;
                }
            }
            Ok(None) => {
                backoff.ok();
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = notified => {}
                    _ = tokio::time::sleep(cfg.poll_interval) => {}
                }
            }
            Err(e) => {
                let wait = backoff.failed("claiming an evaluation", &e);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// End an evaluation that judges nothing (its monitor was deleted, its target is gone or moved).
async fn skip(pool: &PgPool, job: &EvalJob, why: &str) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE monitor_jobs SET state = 'done', finished_at = now(), error = $3,
             lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
         WHERE id = $1 AND lease_token = $2 AND state = 'running'",
    )
    .bind(job.id)
    .bind(job.lease_token)
    .bind(why)
    .execute(pool)
    .await?;
    tracing::info!(monitor = %job.monitor, reason = why, "monitor evaluation skipped");
    Ok(())
}

/// The version a target names now.
async fn resolve_target(
    pool: &PgPool,
    model_id: Uuid,
    spec: &MonitorSpec,
) -> sqlx::Result<Option<(Uuid, String)>> {
    let t = &spec.target;
    if let Some(alias) = &t.alias {
        sqlx::query_as(
            "SELECT v.id, v.name FROM aliases a JOIN model_versions v ON v.id = a.version_id
             WHERE a.model_id = $1 AND a.alias = $2",
        )
        .bind(model_id)
        .bind(alias)
        .fetch_optional(pool)
        .await
    } else if let Some(version) = &t.version {
        sqlx::query_as("SELECT id, name FROM model_versions WHERE model_id = $1 AND name = $2")
            .bind(model_id)
            .bind(version)
            .fetch_optional(pool)
            .await
    } else {
        sqlx::query_as(
            "SELECT id, name FROM model_versions WHERE model_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(model_id)
        .fetch_optional(pool)
        .await
    }
}

async fn evaluate(
    pool: &PgPool,
    cfg: &MonitorConfig,
    deltas: &Deltas,
    job: &EvalJob,
) -> anyhow::Result<()> {
    let row: Option<(i32, Value, Value, String)> = sqlx::query_as(
        "SELECT m.version, m.spec, m.secrets, md.name FROM monitors m JOIN models md ON md.id = m.model_id
         WHERE m.model_id = $1 AND m.name = $2 AND m.deleted_at IS NULL ORDER BY m.version DESC LIMIT 1",
    )
    .bind(job.model_id)
    .bind(&job.monitor)
    .fetch_optional(pool)
    .await?;
    let Some((monitor_version, spec, secrets, model)) = row else {
        return skip(pool, job, "the monitor was deleted").await;
    };
    let spec: MonitorSpec = serde_json::from_value(spec)?;
    let Some((version_id, version)) = resolve_target(pool, job.model_id, &spec).await? else {
        return skip(pool, job, "the target names no version").await;
    };
    if job.version_id.is_some_and(|v| v != version_id) {
        return skip(pool, job, "the target no longer names the batch's version").await;
    }
    let ctx = crate::store::gate_context(pool, &model, &version, spec.gate.as_deref())
        .await?
        .ok_or_else(|| anyhow::anyhow!("model {model} not found"))?;
    let (policy, rules): (Option<PolicyRef>, Vec<Rule>) = match &spec.gate {
        Some(name) => match &ctx.policy {
            Some((v, rules)) => (
                Some(PolicyRef {
                    name: name.clone(),
                    version: *v,
                }),
                serde_json::from_value(rules.clone())?,
            ),
            None => return skip(pool, job, "the monitor's gate policy does not exist").await,
        },
        None => (None, spec.rules.clone().unwrap_or_default()),
    };
    let batches: Vec<Uuid> = match (spec.window.batches, spec.window.hours) {
        (Some(n), _) => {
            sqlx::query_scalar(
                "SELECT id FROM batches b WHERE version_id = $1 AND NOT EXISTS (
                     SELECT 1 FROM jobs j WHERE j.batch_id = b.id AND j.state IN ('queued', 'running'))
                 ORDER BY created_at DESC, id DESC LIMIT $2",
            )
            .bind(version_id)
            .bind(i64::from(n))
            .fetch_all(pool)
            .await?
        }
        (None, Some(h)) => {
            sqlx::query_scalar(
                "SELECT id FROM batches b WHERE version_id = $1 AND created_at >= now() - make_interval(secs => $2)
                   AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.batch_id = b.id AND j.state IN ('queued', 'running'))",
            )
            .bind(version_id)
            .bind(h * 3600.0)
            .fetch_all(pool)
            .await?
        }
        (None, None) => {
            sqlx::query_scalar(
                "SELECT id FROM batches b WHERE version_id = $1 AND NOT EXISTS (
                     SELECT 1 FROM jobs j WHERE j.batch_id = b.id AND j.state IN ('queued', 'running'))",
            )
                .bind(version_id)
                .fetch_all(pool)
                .await?
        }
    };
    let judge = Judge { pool, deltas };
    let decision = judge
        .judge(
            &ctx,
            model.clone(),
            (version_id, version.clone()),
            policy,
            &rules,
            Unit::default(),
            Some(MonitorScope {
                monitor: MonitorRef {
                    name: job.monitor.clone(),
                    version: monitor_version,
                },
                batches: batches.into_iter().collect::<HashSet<_>>(),
            }),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    // One transaction, fenced on the lease: the decision, the incident, the messages.
    let mut tx = pool.begin().await?;
    let fenced = sqlx::query(
        "UPDATE monitor_jobs SET state = 'done', finished_at = now(), decision_id = $3, error = NULL,
             lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
         WHERE id = $1 AND lease_token = $2 AND state = 'running'",
    )
    .bind(job.id)
    .bind(job.lease_token)
    .bind(decision.id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if fenced == 0 {
        tx.rollback().await?;
        tracing::warn!(monitor = %job.monitor, "the evaluation's lease was lost; its outcome was not recorded");
        return Ok(());
    }
    judge
        .store(&mut *tx, job.model_id, version_id, &decision)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    type StateRow = (
        String,
        Option<String>,
        Option<Uuid>,
        Option<bool>,
        Option<DateTime<Utc>>,
    );
    let st: Option<StateRow> = sqlx::query_as(
        "SELECT s.status, s.severity, s.incident_id, i.notified, s.last_fired_message_at
         FROM monitor_state s LEFT JOIN incidents i ON i.id = s.incident_id
         WHERE s.model_id = $1 AND s.name = $2 FOR UPDATE OF s",
    )
    .bind(job.model_id)
    .bind(&job.monitor)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((status, severity, incident_id, notified, last_fired)) = st else {
        tx.commit().await?;
        return Ok(());
    };
    let now = Utc::now();
    let state = incident::State {
        firing: (status == "firing")
            .then(|| {
                severity
                    .as_deref()
                    .and_then(Severity::parse)
                    .map(|s| (s, notified.unwrap_or(true)))
            })
            .flatten(),
        last_fired_message_at: last_fired,
    };
    let (change, event) = incident::step(
        &state,
        decision.verdict,
        &spec.notify_on,
        spec.cooldown(),
        now,
    );
    let mut incident_id = incident_id;
    let mut incident_severity = state.firing.map(|f| f.0);
    let mut incident_state = if state.firing.is_some() {
        "firing"
    } else {
        "ok"
    };
    match change {
        Change::None => {
            if let Some(id) = incident_id {
                sqlx::query(
                    "UPDATE incidents SET last_decision_id = $2, updated_at = now() WHERE id = $1",
                )
                .bind(id)
                .bind(decision.id)
                .execute(&mut *tx)
                .await?;
            }
        }
        Change::Open { severity, notified } => {
            let id = Uuid::now_v7();
            sqlx::query(
                "INSERT INTO incidents (id, model_id, monitor, state, severity, version, notified, first_decision_id, last_decision_id)
                 VALUES ($1, $2, $3, 'firing', $4, $5, $6, $7, $7)",
            )
            .bind(id)
            .bind(job.model_id)
            .bind(&job.monitor)
            .bind(severity.as_str())
            .bind(&version)
            .bind(notified)
            .bind(decision.id)
            .execute(&mut *tx)
            .await?;
            incident_id = Some(id);
            incident_severity = Some(severity);
            incident_state = "firing";
        }
        Change::Update { severity, notified } => {
            sqlx::query(
                "UPDATE incidents SET severity = $2, notified = $3, last_decision_id = $4, updated_at = now(), version = $5
                 WHERE id = $1",
            )
            .bind(incident_id)
            .bind(severity.as_str())
            .bind(notified)
            .bind(decision.id)
            .bind(&version)
            .execute(&mut *tx)
            .await?;
            incident_severity = Some(severity);
        }
        Change::Resolve => {
            sqlx::query(
                "UPDATE incidents SET state = 'resolved', resolved_at = now(), last_decision_id = $2, updated_at = now()
                 WHERE id = $1",
            )
            .bind(incident_id)
            .bind(decision.id)
            .execute(&mut *tx)
            .await?;
            incident_state = "resolved";
        }
    }
    let firing_now = incident_state == "firing";
    sqlx::query(
        "UPDATE monitor_state SET status = $3, severity = $4, incident_id = $5, last_decision_id = $6,
             last_verdict = $7, last_evaluated_at = now(),
             last_fired_message_at = CASE WHEN $8 THEN now() ELSE last_fired_message_at END
         WHERE model_id = $1 AND name = $2",
    )
    .bind(job.model_id)
    .bind(&job.monitor)
    .bind(if firing_now { "firing" } else { "ok" })
    .bind(
        firing_now
            .then(|| incident_severity.map(|s| s.as_str()))
            .flatten(),
    )
    .bind(if firing_now { incident_id } else { None })
    .bind(decision.id)
    .bind(decision.verdict.as_str())
    .bind(event == Some(Event::Firing))
    .execute(&mut *tx)
    .await?;
    let mut messages = 0;
    if let (Some(event), Some(incident_id)) = (event, incident_id) {
        let opened_at: DateTime<Utc> =
            sqlx::query_scalar("SELECT opened_at FROM incidents WHERE id = $1")
                .bind(incident_id)
                .fetch_one(&mut *tx)
                .await?;
        let payload = payload(
            cfg,
            event,
            &decision,
            &job.trigger,
            json!({
                "id": incident_id,
                "state": incident_state,
                "severity": incident_severity.map(|s| s.as_str()),
                "opened_at": opened_at,
                "resolved_at": (incident_state == "resolved").then_some(now),
            }),
            now,
        );
        for ch in &spec.channels {
            let body = match ch.kind {
                ChannelKind::Webhook => payload.clone(),
                ChannelKind::Slack => deliver::slack_form(&payload),
            };
            let secret = secrets
                .get(&ch.name)
                .and_then(|s| s.as_str())
                .unwrap_or_default();
            sqlx::query(
                "INSERT INTO webhook_deliveries (id, model_id, monitor, channel, kind, url, secret, event, incident_id, decision_id, payload)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(Uuid::now_v7())
            .bind(job.model_id)
            .bind(&job.monitor)
            .bind(&ch.name)
            .bind(ch.kind.as_str())
            .bind(&ch.url)
            .bind(secret)
            .bind(event.as_str())
            .bind(incident_id)
            .bind(decision.id)
            .bind(&body)
            .execute(&mut *tx)
            .await?;
            messages += 1;
        }
        if messages > 0 {
            crate::queue::notify(&mut *tx).await?;
        }
    }
    tx.commit().await?;
    crate::metrics::monitor_evaluated(decision.verdict.as_str());
    tracing::info!(monitor = %job.monitor, decision = %decision.id, verdict = decision.verdict.as_str(), event = event.map(|e| e.as_str()).unwrap_or("none"), messages, "monitor evaluated");
    Ok(())
}

/// The JSON message: Standard Webhooks' `{type, timestamp, data}`.
fn payload(
    cfg: &MonitorConfig,
    event: Event,
    d: &Decision,
    trigger: &str,
    incident: Value,
    now: DateTime<Utc>,
) -> Value {
    let base = cfg.public_url.trim_end_matches('/');
    let rules: Vec<Value> = d
        .rules
        .iter()
        .map(|r| {
            let o = &r.outcome;
            json!({
                "metric": o.metric,
                "verdict": o.verdict.as_str(),
                "severity": o.severity,
                "value": o.value,
                "ci_low": o.ci_low,
                "ci_high": o.ci_high,
                "threshold": o.threshold,
                "baseline": o.baseline_version,
                "baseline_value": o.baseline_value,
                "delta": o.delta.as_ref().map(|x| x.value),
                "delta_ci_low": o.delta.as_ref().and_then(|x| x.ci_low),
                "delta_ci_high": o.delta.as_ref().and_then(|x| x.ci_high),
                "relative_delta": o.delta.as_ref().and_then(|x| x.relative),
                "message": o.message,
            })
        })
        .collect();
    json!({
        "type": event.as_str(),
        "timestamp": now,
        "data": {
            "model": d.model,
            "version": d.version,
            "monitor": d.monitor,
            "trigger": trigger,
            "verdict": d.verdict.as_str(),
            "unit": d.unit,
            "incident": incident,
            "rules": rules,
            "decision_id": d.id,
            "decision_url": format!("{base}/v1/gate-decisions/{}", d.id),
            "dashboard_url": format!("{base}/models/{}", d.model),
        }
    })
}

#[derive(Debug, sqlx::FromRow)]
struct Message {
    id: Uuid,
    url: String,
    secret: String,
    payload: Value,
    attempts: i32,
    created_at: DateTime<Utc>,
    retry_from: DateTime<Utc>,
    lease_token: Uuid,
}

async fn deliverer(
    pool: PgPool,
    cfg: Arc<MonitorConfig>,
    client: reqwest::Client,
    wake: Arc<Notify>,
    stop: CancellationToken,
    owner: String,
) {
    let mut backoff = Backoff::new();
    loop {
        if stop.is_cancelled() {
            return;
        }
        let notified = wake.notified();
        let claimed: sqlx::Result<Option<Message>> = sqlx::query_as(
            "WITH c AS (SELECT id FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_at <= now()
                        ORDER BY next_attempt_at, id FOR UPDATE SKIP LOCKED LIMIT 1)
             UPDATE webhook_deliveries d SET state = 'delivering', attempts = d.attempts + 1,
                 lease_owner = $1, lease_token = $2, lease_expires_at = now() + make_interval(secs => $3)
             FROM c WHERE d.id = c.id
             RETURNING d.id, d.url, d.secret, d.payload, d.attempts, d.created_at, d.retry_from, d.lease_token",
        )
        .bind(&owner)
        .bind(Uuid::new_v4())
        .bind((cfg.timeout * 2 + Duration::from_secs(5)).as_secs_f64())
        .fetch_optional(&pool)
        .await;
        match claimed {
            Ok(Some(m)) => {
                backoff.ok();
                deliver_one(&pool, &cfg, &client, m).await;
            }
            Ok(None) => {
                backoff.ok();
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = notified => {}
                    _ = tokio::time::sleep(cfg.poll_interval) => {}
                }
            }
            Err(e) => {
                let wait = backoff.failed("claiming a delivery", &e);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

async fn deliver_one(pool: &PgPool, cfg: &MonitorConfig, client: &reqwest::Client, m: Message) {
    let id = deliver::message_id(m.id);
    let attempt = match super::spec::check_destination(&m.url, cfg.allow_private).await {
        Ok(_) => {
            let body = serde_json::to_vec(&m.payload).unwrap_or_default();
            deliver::post(client, &m.url, &id, &m.secret, body).await
        }
        Err(why) => deliver::Attempt {
            status: None,
            error: Some(why),
            latency: Duration::ZERO,
        },
    };
    let now = Utc::now();
    let (state, next) = if attempt.ok() {
        ("delivered", now)
    } else {
        let next = now
            + chrono::Duration::from_std(cfg.retry_delay(m.attempts))
                .unwrap_or(chrono::Duration::hours(1));
        let give_up = m.retry_from
            + chrono::Duration::from_std(cfg.give_up_after).unwrap_or(chrono::Duration::days(1));
        if next > give_up {
            ("dead", now)
        } else {
            ("pending", next)
        }
    };
    // Record the attempt, fenced on the lease; a database outage is ridden out for up to the
    // lease (past it the message is delivered again, with the same webhook-id).
    let until = std::time::Instant::now() + cfg.lease;
    let mut backoff = Backoff::new();
    loop {
        let r: sqlx::Result<bool> = async {
            let mut tx = pool.begin().await?;
            let n = sqlx::query(
                "UPDATE webhook_deliveries SET state = $3, next_attempt_at = $4, last_status = $5, last_error = $6,
                     delivered_at = CASE WHEN $3 = 'delivered' THEN now() ELSE delivered_at END,
                     lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
                 WHERE id = $1 AND lease_token = $2 AND state = 'delivering'",
            )
            .bind(m.id)
            .bind(m.lease_token)
            .bind(state)
            .bind(next)
            .bind(attempt.status.map(i32::from))
            .bind(&attempt.error)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO webhook_attempts (delivery_id, n, status, latency_ms, error) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT DO NOTHING",
            )
            .bind(m.id)
            .bind(m.attempts)
            .bind(attempt.status.map(i32::from))
            .bind(attempt.latency.as_secs_f64() * 1000.0)
            .bind(&attempt.error)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(true)
        }
        .await;
        match r {
            Ok(recorded) => {
                let outcome = match (state, recorded) {
                    (_, false) => "lease_lost",
                    ("delivered", _) => "delivered",
                    ("dead", _) => "dead",
                    _ => "retry",
                };
                let end_to_end = (now - m.created_at).to_std().unwrap_or_default();
                crate::metrics::webhook_attempt(
                    outcome,
                    attempt.latency.as_secs_f64(),
                    (state == "delivered").then_some(end_to_end.as_secs_f64()),
                );
                if state == "dead" {
                    tracing::warn!(webhook_id = %id, attempts = m.attempts, "webhook dead-lettered after its retries");
                } else {
                    tracing::info!(webhook_id = %id, status = ?attempt.status, error = ?attempt.error, outcome, "webhook attempt");
                }
                return;
            }
            Err(e) if crate::error::is_unavailable(&e) && std::time::Instant::now() < until => {
                let wait = backoff.failed("recording a delivery", &e);
                tokio::time::sleep(wait).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, webhook_id = %id, "could not record a delivery attempt; it will be retried when its lease expires");
                return;
            }
        }
    }
}
