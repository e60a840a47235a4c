//! Authentication and authorization: passwords, session tokens and the signed-in principal.
//!
//! HTTP concerns (cookies, headers, status codes) live in `api::auth`; this module is pure logic
//! plus the store and Redis calls it needs.

pub mod password;
pub mod principal;
pub mod tokens;

pub use principal::{Impersonated, Principal};
pub use tokens::{Claims, TokenKeys};
