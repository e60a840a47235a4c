//! The body of `GET /readyz`: one entry per dependency, so an operator sees what is wrong, and
//! how durable Redis is.

use serde::{Deserialize, Serialize};

/// Overall readiness and the result of every check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadinessReport {
    /// `ready` when every check passed, else `not_ready`.
    pub status: ReadinessStatus,
    /// One entry per check, in a fixed order: `postgres`, `redis`, `migrations`.
    pub checks: Vec<Check>,
    /// How Redis keeps the ingest queue across its own restart. Informational: readiness does not
    /// depend on it (README, "Durability", says what each mode can lose).
    pub redis_persistence: RedisPersistence,
}

/// Redis' persistence mode, from its `appendonly`, `appendfsync` and `save` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RedisPersistence {
    /// Append-only file, fsynced after every write.
    #[serde(rename = "aof always")]
    AofAlways,
    /// Append-only file, fsynced once a second.
    #[serde(rename = "aof everysec")]
    AofEverysec,
    /// Append-only file, fsync left to the operating system (typically every 30 seconds).
    #[serde(rename = "aof no")]
    AofNo,
    /// Snapshots only (`save` rules, no append-only file).
    #[serde(rename = "rdb only")]
    RdbOnly,
    /// Nothing is written to disk: a restart empties Redis.
    #[serde(rename = "none")]
    None,
    /// Redis did not say (unreachable, or a managed Redis that refuses `CONFIG`).
    #[serde(rename = "unknown")]
    Unknown,
}

impl RedisPersistence {
    /// Classifies Redis' settings: `appendonly` (`yes`/`no`), `appendfsync`
    /// (`always`/`everysec`/`no`) and `save` (empty when snapshots are off). Anything else is
    /// `Unknown`, never a guess.
    pub fn from_settings(appendonly: &str, appendfsync: &str, save: &str) -> Self {
        match (appendonly, appendfsync) {
            ("yes", "always") => RedisPersistence::AofAlways,
            ("yes", "everysec") => RedisPersistence::AofEverysec,
            ("yes", "no") => RedisPersistence::AofNo,
            ("yes", _) => RedisPersistence::Unknown,
            ("no", _) if save.trim().is_empty() => RedisPersistence::None,
            ("no", _) => RedisPersistence::RdbOnly,
            _ => RedisPersistence::Unknown,
        }
    }

    /// The wire name, e.g. `aof everysec`.
    pub fn as_str(self) -> &'static str {
        match self {
            RedisPersistence::AofAlways => "aof always",
            RedisPersistence::AofEverysec => "aof everysec",
            RedisPersistence::AofNo => "aof no",
            RedisPersistence::RdbOnly => "rdb only",
            RedisPersistence::None => "none",
            RedisPersistence::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for RedisPersistence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_persistence_is_classified_from_its_settings_and_never_guessed() {
        let p = RedisPersistence::from_settings;
        assert_eq!(p("yes", "always", ""), RedisPersistence::AofAlways);
        assert_eq!(
            p("yes", "everysec", "3600 1"),
            RedisPersistence::AofEverysec
        );
        assert_eq!(p("yes", "no", ""), RedisPersistence::AofNo);
        assert_eq!(
            p("no", "everysec", "3600 1 300 100"),
            RedisPersistence::RdbOnly
        );
        assert_eq!(p("no", "everysec", ""), RedisPersistence::None);
        assert_eq!(p("", "", ""), RedisPersistence::Unknown);
        assert_eq!(p("yes", "sometimes", ""), RedisPersistence::Unknown);
    }

    #[test]
    fn redis_persistence_serialises_to_its_wire_name() {
        for p in [
            RedisPersistence::AofAlways,
            RedisPersistence::AofEverysec,
            RedisPersistence::AofNo,
            RedisPersistence::RdbOnly,
            RedisPersistence::None,
            RedisPersistence::Unknown,
        ] {
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
    }
}
