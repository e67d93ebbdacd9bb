//! Solobase: a single-binary backend on PostgreSQL — users and authentication, file storage,
//! system events — built to be extended at compile time.
//!
//! Start reading at [`startup::Application`], which wires everything together, and at
//! [`cli`], the binary's entry point.

pub mod alloc;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod http;
pub mod metrics;
pub mod reload;
pub(crate) mod retention;
pub mod runtime;
pub mod startup;
pub mod storage;
pub mod telemetry;
pub mod testkit;

/// See [`alloc`]: mimalloc, counting bytes per thread.
#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;
