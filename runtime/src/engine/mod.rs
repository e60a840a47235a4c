//! The message engine. Today: durable ingest (`ingest`). The actors that consume it (one per
//! tenant and per conversation), rate limits, the memory window and the agent turn come next.

pub mod ingest;
