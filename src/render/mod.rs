//! The render pipeline: `(Task, Agent?, settings) -> (Job, ConfigMaps)`, the same for the
//! controller and for `kubetask render`.

pub mod egress;
mod error;
mod invariants;
mod json;
pub mod lifecycle;
pub mod model_gateway;
pub mod needs;
pub mod network;
mod pipeline;
mod resolve;
pub mod stages;
mod task_secret;
pub mod validation;

pub use error::RenderError;
pub use invariants::apply_invariants;
pub use lifecycle::LifecycleSettings;
pub use pipeline::{Pipeline, Rendered, Settings};
pub use resolve::{AgentNotFound, resolve_agent};
