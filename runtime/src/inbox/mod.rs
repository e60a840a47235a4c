//! Humans in the loop: the jobs that send a person's reply through the engine and tell the
//! tenant's people of a hand-off (`jobs`), and the live inbox (`live`): database notifications
//! of every conversation change, fanned out to the members watching on this node.
//!
//! Ownership itself lives in Postgres (`store::inbox`) and is checked by the engine where it
//! records and where it sends (`engine::turn`, `engine::reply`).

pub mod jobs;
pub mod live;
