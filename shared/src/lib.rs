//! Wire types shared by the runtime and the portal: ids, error codes, health reports.
//!
//! This crate must compile for `wasm32-unknown-unknown` as well as natively, so it depends on
//! nothing that needs an operating system (no tokio; sqlx only behind the runtime's `sqlx`
//! feature); the test command checks both.

pub mod audit;
pub mod auth;
pub mod channel;
pub mod error;
pub mod health;
pub mod ids;
pub mod inbox;
pub mod knowledge;
pub mod people;
pub mod resources;
pub mod text_enum;
pub mod tools;
pub mod usage;

pub use error::{ErrorBody, ErrorCode, FieldError};
pub use ids::{AgentId, ConnectionId, ConversationId, EndUserId, TenantId};
