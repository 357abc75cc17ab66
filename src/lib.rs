//! infoaudit: audit machine-learning models with information theory.
//!
//! Data flows one way: `api` (parse into `domain` types) → `store` / `queue` (SQL) → `worker` →
//! `estimate` (pure numerics) → `store`.

pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod estimate;
pub mod gate;
pub mod metrics;
pub mod monitor;
pub mod queue;
pub mod segmented;
pub mod stats;
pub mod store;
pub mod store_labels;
pub mod web;
pub mod worker;
