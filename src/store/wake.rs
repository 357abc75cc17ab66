//! Waking workers in every process: `LISTEN`/`NOTIFY` on one channel (a poll is the fallback).

use sqlx::PgExecutor;

/// The channel workers listen on.
pub const CHANNEL: &str = "infoaudit_jobs";

/// Wake workers in every process.
pub async fn notify<'e>(e: impl PgExecutor<'e>) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(CHANNEL)
        .execute(e)
        .await?;
    Ok(())
}
