//! The runtime's integration tests: one binary, real Postgres and Redis, a fresh database per test.

mod audit;
mod fixtures;
mod http;
mod isolation;
mod pool;
mod schema_lint;
mod support;
