//! Channel adapters: each translates a provider's webhooks into `InboundMessage`s and sends
//! `OutboundReply`s back through the provider's API. The engine never sees a provider's format.

pub mod slack;
