//! Giving up on a message: once an entry is dead-lettered (its retries ran out, or it can never
//! work), the sender is told, unless the channel itself is what failed.

use shared::channel::ReplyKind;

use super::deps::{EngineDeps, TurnError};
use super::{Recording, connection, record_and_send, record_inbound};
use crate::engine::ingest::Delivery;

const APOLOGY: &str = "I'm sorry, something went wrong on our side and I couldn't answer your \
                       message. Please send it again in a little while.";

/// Apologises for a message that was dead-lettered (its entry is already out of the queue), if
/// nothing was recorded as its reply. Best effort: a failure is only logged.
pub async fn apologise(deps: &EngineDeps, d: &Delivery) {
    let result = async {
        let config = deps.snapshot(d.message.tenant_id).await?;
        if !config.exists {
            return Ok::<_, TurnError>(());
        }
        let connection = connection(deps, &config, d).await?;
        let recorded = record_inbound(deps, &d.message).await?;
        if recorded.reply.is_some() {
            return Ok(());
        }
        // The entry is out of the queue already: record and send, nothing to acknowledge.
        record_and_send(
            deps,
            d,
            &connection,
            recorded.conversation,
            ReplyKind::Apology,
            APOLOGY.into(),
            Recording::default(),
        )
        .await
    }
    .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "could not apologise for a dead-lettered message");
    }
}
