//! The Konstruct runtime: the REST API, the message engine and everything it talks to.
//!
//! Dependencies point one way: `api` → (`engine`, `llm`, `jobs`) → (`store`, `redis`, `crypto`) →
//! `shared`. Only `store` writes SQL, only `api` knows HTTP status codes, and only the binary
//! (`main.rs`) reads configuration from the environment. See ARCHITECTURE.md for the map and the invariants.

pub mod api;
pub mod app;
pub mod auth;
#[cfg(test)]
mod bad_input;
pub mod channels;
pub mod config;
pub mod crypto;
pub mod embed;
pub mod engine;
pub mod failpoint;
pub mod inbox;
pub mod jobs;
pub mod knowledge;
pub mod links;
pub mod llm;
pub mod mail;
pub mod net;
pub mod outbound;
pub mod people;
pub mod redis;
pub mod scope;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod tools;
pub mod vector;
