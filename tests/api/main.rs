//! Integration tests: the real router and workers against a real PostgreSQL.

mod support;

mod auth;
mod continuous;
mod deliveries;
mod estimators;
mod formats;
mod gates;
mod information;
mod ingest;
mod late_labels;
mod monitors;
mod offline;
mod openapi;
mod processes;
mod queue;
mod reads;
mod retention;
mod robustness;
mod rollups;
mod samples;
mod segments;
mod server;
mod web;
