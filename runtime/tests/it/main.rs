//! The runtime's integration tests: one binary, real Postgres and Redis, a fresh database per test.
// Helpers here are test code too: a failed step must stop the test loudly.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail the test on any error"
)]

mod audit;
// The bad-input strategies the lib's unit tests use too (test code, compiled into each).
mod audit_content;
mod audit_list;
mod auth;
#[path = "../../src/bad_input.rs"]
mod bad_input;
mod budgets;
mod chat;
mod cluster;
mod crash;
mod degraded;
mod dependencies;
mod fixtures;
mod groundwork;
mod http;
mod inbox;
mod ingest;
mod isolation;
mod jobs;
mod knowledge;
mod llm;
mod llm_keys;
mod mailbox;
mod management;
mod matrix;
mod nodes;
mod outage;
mod outbound;
mod parsers;
mod people;
mod pipeline;
mod pool;
mod schema_lint;
mod sessions;
mod slack;
mod startup;
mod support;
mod tools;
mod usage;
mod whatsapp;
mod world;
