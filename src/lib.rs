//! Solobase: a single-binary backend on PostgreSQL — users and authentication, file storage,
//! system events — built to be extended at compile time.
//!
//! Start reading at [`startup::Application`], which wires everything together, and at
//! [`cli`], the binary's entry point.

pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod extensions;
pub mod http;
pub mod startup;
pub mod storage;
pub mod telemetry;

/// mimalloc instead of the system allocator: a request allocates a few dozen small objects,
/// and glibc's allocator makes their cost depend on what was freed before (its fast bins are
/// consolidated when a larger block is asked for). mimalloc's per-thread free lists keep each
/// allocation cheap and steady. Declared here so that every binary built on this library —
/// the server and the benchmark alike — uses it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
