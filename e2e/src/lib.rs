//! Everything that drives Konstruct from outside: fakes of the third-party services it talks to
//! (LLM providers, the Slack Web API, Meta's WhatsApp Cloud API, a tenant's own web service), usable in-process by tests and
//! as binaries for manual runs and benchmarks. Scripts (`smoke.sh`, `walkthrough.sh`) sit beside
//! this crate.

pub mod llm;
pub mod pdf;
pub mod shop;
pub mod slack;
pub mod whatsapp;
