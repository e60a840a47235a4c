//! Channel adapters: each translates a provider's webhooks into `InboundMessage`s and sends
//! `OutboundReply`s back through the provider's API. The engine never sees a provider's format.

pub mod slack;

use std::collections::HashMap;
use std::sync::Arc;

use shared::channel::ChannelKind;

use crate::crypto::Keyring;
use crate::engine::reply::{RecordedOnly, ReplySink};
use crate::store::Store;

/// The reply side of every channel: the web test chat (recorded only) and Slack.
pub fn sinks(
    store: &Store,
    keyring: &Arc<Keyring>,
    slack_api_base: &str,
) -> HashMap<ChannelKind, Arc<dyn ReplySink>> {
    let slack = slack::SlackSink::new(store.clone(), keyring.clone(), slack_api_base);
    HashMap::from([
        (
            ChannelKind::Web,
            Arc::new(RecordedOnly) as Arc<dyn ReplySink>,
        ),
        (ChannelKind::Slack, Arc::new(slack) as Arc<dyn ReplySink>),
    ])
}
