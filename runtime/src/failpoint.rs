//! Failpoints: named places in the reply protocol where a debug build can be told to stop dead,
//! so a test can SIGKILL the real binary at exactly that point.
//!
//! `main` arms at most one failpoint from `KONSTRUCT_FAILPOINT`, and only in debug builds (what
//! tests run); release builds compile `arm` to nothing, so a production process never stops
//! here. Reaching an armed failpoint logs `failpoint reached` with its name and then waits
//! forever: the process keeps its leases and pending entries, as a process would the instant
//! before it was killed, until the test kills it.

use std::sync::OnceLock;

/// The failpoint this process stops at, if any.
static ARMED: OnceLock<String> = OnceLock::new();

/// After the LLM answered, before the turn's result is recorded.
pub const AFTER_LLM: &str = "after_llm";
/// After a tool ran and its result was recorded, before the turn goes on.
pub const AFTER_TOOL: &str = "after_tool";
/// After the reply was recorded as pending, before it is sent.
pub const AFTER_RECORD: &str = "after_record";
/// After the channel accepted the reply, before it is marked sent.
pub const AFTER_POST: &str = "after_post";
/// After the reply was marked sent, before the entry is acknowledged.
pub const BEFORE_ACK: &str = "before_ack";

/// Arms `name` (debug builds only).
pub fn arm(name: &str) {
    if cfg!(debug_assertions) {
        let _ = ARMED.set(name.to_string());
    }
}

/// Stops here for good if `name` is armed.
pub async fn hit(name: &'static str) {
    if cfg!(debug_assertions) && ARMED.get().is_some_and(|armed| armed == name) {
        tracing::warn!(failpoint = name, "failpoint reached");
        std::future::pending::<()>().await;
    }
}
