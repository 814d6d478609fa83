//! KubeTask: run AI agents on Kubernetes. A `Task` (what to do) and an `Agent` (how) become a
//! `batch/v1` Job, shaped by sandboxed WebAssembly plugins.
//!
//! The data flows top to bottom: [`cli::files`] (offline) or the API server → [`render::resolve_agent`]
//! → [`render::Pipeline`] (the [`plugin`] host running the built-in default plugin) → Job.
// A few functions may use `unsafe`: deserializing compiled plugins this program cached
// (`plugin::cache`) and the default plugin compiled into this binary (`plugin::precompiled`),
// the user id (`plugin::cache`) and glibc's `malloc_trim` (`controller::memory`); their
// comments say why that is sound.
#![deny(unsafe_code)]

pub mod cli;
pub mod client;
pub mod controller;
pub mod crds;
pub mod cron;
pub mod egress;
pub mod gateway;
pub mod plugin;
pub mod render;
pub mod triggers;

pub use kubetask_api as api;
