//! The body of `GET /readyz`: one entry per dependency, so an operator sees what is wrong.

use serde::{Deserialize, Serialize};

/// Overall readiness and the result of every check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadinessReport {
    /// `ready` when every check passed, else `not_ready`.
    pub status: ReadinessStatus,
    /// One entry per check, in a fixed order: `postgres`, `redis`, `migrations`.
    pub checks: Vec<Check>,
}

/// Whether the process can serve traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadinessStatus {
    Ready,
    NotReady,
}

/// The outcome of one readiness check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// The dependency checked, e.g. `postgres`.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// How long the check took.
    pub duration_ms: u64,
    /// A short, secret-free explanation (e.g. `3 of 3 migrations applied`).
    pub detail: String,
}

/// The body of `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Liveness {
    /// Always `alive` while the process answers.
    pub status: String,
    /// The runtime's version.
    pub version: String,
}
