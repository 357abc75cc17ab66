//! infoaudit: audit machine-learning models with information theory.
//!
//! Data flows one way, each layer using only those below it: `app` → `web` → `api` → `worker` /
//! `monitor` → `gate` (the judge) → `compute` (stored batch to maths) → `store` / `queue` (SQL) →
//! `domain` (validated types) → `estimate` (pure numerics) → `error`, `metrics`, `stats`.

pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod compute;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod estimate;
pub mod gate;
pub mod metrics;
pub mod monitor;
pub mod queue;
pub mod stats;
pub mod store;
pub mod web;
pub mod worker;
