//! Storage of sample ids and of labels that arrive after their predictions: registering a batch's
//! ids at upload, applying a labels request (idempotent, refusing conflicting relabels), joining
//! the labels into a batch when its jobs run, and releasing the jobs that waited for them.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::{PgPool, Postgres, Transaction};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::batch::{Batch, Task};
use crate::domain::estimators::JobSpec;
use crate::domain::labels::{LabelSpace, LabelsRequest};
use crate::error::{Error, FieldError};

/// Most ids named in a conflict or an unknown-ids list.
const NAMED: usize = 100;

/// Register a batch's sample ids (with their labels when the batch has them) in the upload's
/// transaction. `Err` with the ids another batch of the model already uses (409).
pub async fn insert_ids(
    tx: &mut Transaction<'_, Postgres>,
    model_id: Uuid,
    batch_id: Uuid,
    ids: &[String],
    batch: &Batch,
) -> Result<(), Error> {
    // One COPY (no per-row speculative insertion, no arrays to build) behind a savepoint: an id
    // another batch already uses fails the statement, and only then are the taken ids looked up
    // to be named. The rows are sent in pieces of about 1 MiB, so memory does not grow with N.
    sqlx::query("SAVEPOINT sample_ids")
        .execute(&mut **tx)
        .await?;
    let now: String = sqlx::query_scalar("SELECT now()::text")
        .fetch_one(&mut **tx)
        .await?;
    let clash = match copy_ids(tx, model_id, batch_id, ids, batch, &now).await {
        Ok(()) => false,
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => true,
        Err(e) => return Err(e.into()),
    };
    if !clash {
        return Ok(());
    }
    sqlx::query("ROLLBACK TO SAVEPOINT sample_ids")
        .execute(&mut **tx)
        .await?;
    let taken: Vec<(String, i64)> = sqlx::query_as(
        "SELECT u.sample_id, u.ord - 1 FROM unnest($2::text[]) WITH ORDINALITY AS u(sample_id, ord)
         JOIN sample_ids s ON s.model_id = $1 AND s.sample_id = u.sample_id
         ORDER BY u.ord LIMIT $3",
    )
    .bind(model_id)
    .bind(ids)
    .bind(NAMED as i64)
    .fetch_all(&mut **tx)
    .await?;
    let errors = taken
        .iter()
        .map(|(id, i)| {
            FieldError::at(
                format!("/ids/{i}"),
                format!("sample id {id:?} is already used by another batch of this model"),
            )
        })
        .collect();
    Err(Error::ConflictFields(
        "sample ids must be unique within the model; nothing was stored".into(),
        errors,
    ))
}

/// The COPY of [`insert_ids`]: one text-format row per id (model, id, batch, index, label and
/// when it was given, or `\N`).
async fn copy_ids(
    tx: &mut Transaction<'_, Postgres>,
    model_id: Uuid,
    batch_id: Uuid,
    ids: &[String],
    batch: &Batch,
    now: &str,
) -> sqlx::Result<()> {
    use std::fmt::Write as _;
    copy_in(
        tx,
        "COPY sample_ids (model_id, sample_id, batch_id, idx, label, labelled_at) FROM STDIN",
        ids.len(),
        |i, buf| {
            let _ = write!(buf, "{model_id}\t");
            copy_text(buf, &ids[i]);
            let _ = write!(buf, "\t{batch_id}\t{i}\t");
            match batch.label_text(i) {
                Some(l) => {
                    copy_text(buf, &l);
                    buf.push('\t');
                    buf.push_str(now);
                }
                None => buf.push_str("\\N\t\\N"),
            }
        },
    )
    .await
}

/// Runs `statement` (a `COPY … FROM STDIN` in text format) with `rows` rows, row `i` written by
/// `row(i, buf)` without its newline. The rows are sent in pieces of about [`COPY_PIECE`] bytes,
/// so memory does not grow with the number of rows. When the server refuses the rows before
/// the last piece (a unique key already taken), the COPY is ended so that the connection stays
/// usable, and the server's error is returned.
async fn copy_in(
    tx: &mut Transaction<'_, Postgres>,
    statement: &str,
    rows: usize,
    mut row: impl FnMut(usize, &mut String),
) -> sqlx::Result<()> {
    let mut copy = tx.copy_in_raw(statement).await?;
    let mut buf = String::with_capacity(COPY_PIECE + 4096);
    for i in 0..rows {
        row(i, &mut buf);
        buf.push('\n');
        if buf.len() >= COPY_PIECE || i + 1 == rows {
            if let Err(e) = copy.send(buf.as_bytes()).await {
                return match copy.abort("the rows were refused").await {
                    Err(db @ sqlx::Error::Database(_)) => Err(db),
                    _ => Err(e),
                };
            }
            buf.clear();
        }
    }
    copy.finish().await?;
    Ok(())
}

/// Bytes sent per piece of a COPY.
const COPY_PIECE: usize = 1 << 20;

/// `v` as a field of COPY's text format: backslash, tab, newline and carriage return escaped
/// (nothing else is special there; sample ids have no control characters, which the upload
/// checks, so in practice only a backslash is).
fn copy_text(buf: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => buf.push_str("\\\\"),
            '\t' => buf.push_str("\\t"),
            '\n' => buf.push_str("\\n"),
            '\r' => buf.push_str("\\r"),
            c => buf.push(c),
        }
    }
}

/// Fill a labels-later batch's labels from the id table: once the batch is released, the labels
/// its release fixed (numbered up to the release's mark), so every released job reads the same
/// labels whenever it runs; before a release (the export), every label that has arrived.
pub async fn join_labels(pool: &PgPool, batch_id: Uuid, batch: &mut Batch) -> anyhow::Result<()> {
    use futures_util::TryStreamExt;
    let mut rows = sqlx::query_as::<_, (i32, String)>(
        "SELECT s.idx, s.label FROM sample_ids s JOIN batches b ON b.id = s.batch_id
         WHERE s.batch_id = $1 AND s.label IS NOT NULL
           AND (b.released_label_seq IS NULL OR s.label_seq IS NULL
                OR s.label_seq <= b.released_label_seq)",
    )
    .bind(batch_id)
    .fetch(pool);
    while let Some((idx, label)) = rows.try_next().await? {
        let i = idx as usize;
        anyhow::ensure!(i < batch.n, "stored sample index {i} is outside the batch");
        batch.set_label_text(i, &label)?;
    }
    Ok(())
}

/// The ids of samples `from..to` of a batch, by index (missing: no id).
pub async fn ids_between(
    pool: &PgPool,
    batch_id: Uuid,
    from: usize,
    to: usize,
) -> sqlx::Result<Vec<(i32, String)>> {
    sqlx::query_as(
        "SELECT idx, sample_id FROM sample_ids WHERE batch_id = $1 AND idx >= $2 AND idx < $3
         ORDER BY idx",
    )
    .bind(batch_id)
    .bind(from as i32)
    .bind(to as i32)
    .fetch_all(pool)
    .await
}

/// What a labels request did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LabelsOutcome {
    /// Labels in the request.
    pub received: u64,
    /// Labels stored by this request (first time for their sample).
    pub stored: u64,
    /// Labels already stored with the same value (a retry changes nothing).
    pub unchanged: u64,
    /// Ids no batch of this model carries: their labels were not stored.
    pub unknown: u64,
    /// The first 100 unknown ids.
    pub unknown_ids: Vec<String>,
    /// Every batch the labels belong to, with its coverage now.
    pub batches: Vec<BatchCoverage>,
}

/// A batch's label coverage after a labels request.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchCoverage {
    pub batch_id: Uuid,
    /// Samples.
    pub n: i64,
    /// Samples with their label.
    pub labelled: i64,
    /// `labelled / n`.
    pub coverage: f64,
    /// The coverage that releases the batch's label-dependent jobs (`null`: its labels came with
    /// it).
    pub required: Option<f64>,
    /// Whether this request released the waiting jobs (queued now, running on the labels so
    /// far).
    pub released: bool,
    /// The jobs this request queued.
    pub jobs: Vec<Uuid>,
}

#[derive(sqlx::FromRow)]
struct Found {
    ord: i32,
    batch_id: Uuid,
    label: Option<String>,
}

#[derive(sqlx::FromRow)]
struct BatchInfo {
    id: Uuid,
    task: String,
    classes: serde_json::Value,
}

/// One labels request (or release) per model at a time, until the transaction ends: cheaper than
/// locking each of up to millions of rows, two requests for the same ids cannot interleave, and
/// a release sees every label stored before it and none stored after. A transaction holding the
/// model's labels lock; while another process holds it, the wait is spent without a connection
/// (the transaction is given back and tried again, up to `patience`). `Ok(None)`: still taken.
pub async fn begin_labels(
    pool: &PgPool,
    model_id: Uuid,
    patience: std::time::Duration,
) -> sqlx::Result<Option<Transaction<'static, Postgres>>> {
    let until = std::time::Instant::now() + patience;
    let mut pause = std::time::Duration::from_millis(5);
    loop {
        let mut tx = pool.begin().await?;
        let locked: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtextextended($1::text, 41))")
                .bind(model_id)
                .fetch_one(&mut *tx)
                .await?;
        if locked {
            return Ok(Some(tx));
        }
        tx.rollback().await?;
        if std::time::Instant::now() >= until {
            return Ok(None);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_millis(200));
    }
}

/// Apply a labels request in one transaction (begun with [`begin_labels`], which holds the
/// model's labels lock): every label is resolved against its sample's
/// batch; a label that differs from the one stored refuses the whole request (409 naming the
/// ids); a repeated one changes nothing. Batches whose coverage reaches their requirement have
/// their waiting jobs queued in the same transaction.
pub async fn apply_labels(
    tx: &mut Transaction<'_, Postgres>,
    model_id: Uuid,
    req: &LabelsRequest,
) -> Result<LabelsOutcome, Error> {
    use futures_util::TryStreamExt;
    // The request's ids go to a staging table by COPY, and one join finds their batches and
    // stored labels (a hash or merge join chosen on the staged table's statistics, instead of
    // one index probe per id from arrays). The staging tables live as long as the connection
    // and are emptied at every commit (quietly: no notice that they exist already).
    sqlx::query("SET LOCAL client_min_messages = warning")
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "CREATE TEMP TABLE IF NOT EXISTS labels_asked (ord integer, sample_id text)
             ON COMMIT DELETE ROWS",
    )
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "CREATE TEMP TABLE IF NOT EXISTS labels_given (sample_id text, label text)
             ON COMMIT DELETE ROWS",
    )
    .execute(&mut **tx)
    .await?;
    copy_in(
        tx,
        "COPY labels_asked (ord, sample_id) FROM STDIN",
        req.ids.len(),
        |i, buf| {
            use std::fmt::Write as _;
            let _ = write!(buf, "{i}\t");
            copy_text(buf, &req.ids[i]);
        },
    )
    .await?;
    sqlx::query("ANALYZE labels_asked")
        .execute(&mut **tx)
        .await?;
    let mut found: Vec<Option<(Uuid, Option<String>)>> = vec![None; req.ids.len()];
    {
        let mut rows = sqlx::query_as::<_, Found>(
            "SELECT a.ord, s.batch_id, s.label FROM labels_asked a
             JOIN sample_ids s ON s.model_id = $1 AND s.sample_id = a.sample_id",
        )
        .bind(model_id)
        .fetch(&mut **tx);
        while let Some(r) = rows.try_next().await? {
            if let Some(slot) = found.get_mut(r.ord as usize) {
                *slot = Some((r.batch_id, r.label));
            }
        }
    }
    let mut batch_ids: Vec<Uuid> = found.iter().flatten().map(|(b, _)| *b).collect();
    batch_ids.sort_unstable();
    batch_ids.dedup();
    let infos: Vec<BatchInfo> =
        sqlx::query_as("SELECT id, task, classes FROM batches WHERE id = ANY($1)")
            .bind(&batch_ids)
            .fetch_all(&mut **tx)
            .await?;
    let classes: HashMap<Uuid, (Task, Vec<String>)> = infos
        .into_iter()
        .map(|b| {
            let task = Task::parse(&b.task).unwrap_or(Task::Multiclass);
            let names: Vec<String> = serde_json::from_value(b.classes).unwrap_or_default();
            (b.id, (task, names))
        })
        .collect();
    let spaces: HashMap<Uuid, LabelSpace<'_>> = classes
        .iter()
        .map(|(id, (task, names))| (*id, LabelSpace::new(*task, names)))
        .collect();

    let mut invalid = Vec::new();
    let mut conflicts = Vec::new();
    let mut unknown_ids = Vec::new();
    let (mut unknown, mut unchanged) = (0u64, 0u64);
    // The samples to label (index into the request) and their labels in canonical form.
    let mut writes: (Vec<usize>, Vec<String>) = (Vec::new(), Vec::new());
    let mut new_per_batch: HashMap<Uuid, i64> = HashMap::new();
    for (i, f) in found.iter().enumerate() {
        let Some((batch_id, stored)) = f else {
            unknown += 1;
            if unknown_ids.len() < NAMED {
                unknown_ids.push(req.ids[i].clone());
            }
            continue;
        };
        let space = &spaces[batch_id];
        let label = match space.canonical(&req.labels[i]) {
            Ok(l) => l,
            Err(why) => {
                if invalid.len() < 50 {
                    invalid.push(FieldError::at(format!("/labels/{i}"), why));
                }
                continue;
            }
        };
        match stored {
            Some(s) if *s == label => unchanged += 1,
            Some(s) => {
                if conflicts.len() < NAMED {
                    conflicts.push(FieldError::at(
                        format!("/ids/{i}"),
                        format!(
                            "sample {:?} is already labelled {}; this request says {}",
                            req.ids[i],
                            space.describe(s),
                            space.describe(&label)
                        ),
                    ));
                }
            }
            None => {
                writes.0.push(i);
                writes.1.push(label);
                *new_per_batch.entry(*batch_id).or_default() += 1;
            }
        }
    }
    if !invalid.is_empty() {
        return Err(Error::Validation(invalid));
    }
    if !conflicts.is_empty() {
        return Err(Error::ConflictFields(
            format!(
                "{} sample(s) already have a different label; a label, once given, is not \
                 changed (nothing was stored)",
                conflicts.len()
            ),
            conflicts,
        ));
    }
    // The new labels by COPY, then one set-based update (each label gets its number from the
    // sequence, as before).
    copy_in(
        tx,
        "COPY labels_given (sample_id, label) FROM STDIN",
        writes.0.len(),
        |w, buf| {
            copy_text(buf, &req.ids[writes.0[w]]);
            buf.push('\t');
            copy_text(buf, &writes.1[w]);
        },
    )
    .await?;
    sqlx::query("ANALYZE labels_given")
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "UPDATE sample_ids s SET label = g.label, labelled_at = now(),
             label_seq = nextval('label_seq')
         FROM labels_given g
         WHERE s.model_id = $1 AND s.sample_id = g.sample_id",
    )
    .bind(model_id)
    .execute(&mut **tx)
    .await?;
    let mut batches = Vec::with_capacity(batch_ids.len());
    for id in batch_ids {
        let added = new_per_batch.get(&id).copied().unwrap_or(0);
        let (n, labelled, required, pending, labels_later): (
            i64,
            i64,
            Option<f64>,
            Option<serde_json::Value>,
            bool,
        ) = sqlx::query_as(
            "UPDATE batches SET labelled = labelled + $2 WHERE id = $1
             RETURNING n, labelled, label_coverage_required, pending_jobs, labels_later",
        )
        .bind(id)
        .bind(added)
        .fetch_one(&mut **tx)
        .await?;
        let (labelled, coverage) = if labels_later {
            (labelled, labelled as f64 / n as f64)
        } else {
            (n, 1.0)
        };
        let mut jobs = Vec::new();
        let due = required.is_some_and(|r| coverage >= r - 1e-12);
        let released = match pending {
            Some(p) if due => {
                jobs = release(tx, id, p).await?;
                true
            }
            _ => false,
        };
        batches.push(BatchCoverage {
            batch_id: id,
            n,
            labelled,
            coverage,
            required: labels_later.then_some(required).flatten(),
            released,
            jobs,
        });
    }
    Ok(LabelsOutcome {
        received: req.ids.len() as u64,
        stored: writes.0.len() as u64,
        unchanged,
        unknown,
        unknown_ids,
        batches,
    })
}

/// Queue a batch's waiting jobs (in the caller's transaction, which holds the model's labels
/// lock) and mark them released, fixing the labels they will use: those stored so far.
pub async fn release(
    tx: &mut Transaction<'_, Postgres>,
    batch_id: Uuid,
    pending: serde_json::Value,
) -> Result<Vec<Uuid>, Error> {
    let specs: Vec<JobSpec> =
        serde_json::from_value(pending).map_err(|e| Error::Internal(e.into()))?;
    let rows = crate::queue::enqueue(tx, batch_id, &specs, None).await?;
    sqlx::query(
        "UPDATE batches SET pending_jobs = NULL, released_at = now(), released_labelled = labelled,
             released_label_seq = (SELECT coalesce(max(label_seq), 0) FROM sample_ids
                                   WHERE batch_id = $1 AND label IS NOT NULL)
         WHERE id = $1",
    )
    .bind(batch_id)
    .execute(&mut **tx)
    .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}
