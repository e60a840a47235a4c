//! The message engine. Today: durable ingest (`ingest`) and the pure logic the actors will use:
//! rate limiting (`limiter`), the memory window (`window`) and prompt assembly (`prompt`). The
//! actors that consume the ingest streams (one per tenant and per conversation) come next.

pub mod actors;
pub mod consumer;
pub mod ingest;
pub mod limiter;
pub mod prompt;
pub mod turn;
pub mod window;
