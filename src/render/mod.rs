//! The render pipeline: `(Task, Agent?, settings) -> (Job, ConfigMaps)`, the same for the
//! controller and for `kubetask render`.

pub mod egress;
mod invariants;
pub mod lifecycle;
pub mod needs;
mod pipeline;
mod resolve;
pub mod stages;
pub mod validation;

pub use invariants::apply_invariants;
pub use lifecycle::LifecycleSettings;
pub use pipeline::{Pipeline, RenderError, Rendered, Settings};
pub use resolve::{AgentNotFound, resolve_agent};
