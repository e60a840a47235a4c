//! The message engine: durable ingest (`ingest`) consumed by partition (`leases`, `consumer`),
//! one supervised actor per tenant and per conversation (`actors`) working from a configuration
//! snapshot (`config`), and the turn itself (`turn`) with its pure parts: rate limiting
//! (`limiter`), the memory window (`window`), escalation (`escalation`) and prompt assembly
//! (`prompt`). ARCHITECTURE.md draws the message path.

pub mod actors;
pub mod config;
pub mod consumer;
pub mod context;
pub mod escalation;
pub mod handoff;
pub mod ingest;
pub mod leases;
pub mod limiter;
pub mod prompt;
pub mod reply;
pub mod turn;
pub mod window;
