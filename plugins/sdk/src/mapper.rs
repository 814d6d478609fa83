//! Mapper plugins: a TaskTrigger's `spec.mapper` (the WIT `mapper` interface of
//! `wit/mapper.wit`). A mapper receives an authenticated event, the Task the built-in mapper
//! drafted from the trigger's template (with the reason its filters would skip the event, if
//! they would) and decides: this Task — the draft, changed as it likes — or a skip with a
//! reason. The host keeps the Task's name, owner, the trigger's labels and annotations and the
//! untrusted event file whatever the plugin returns.
//!
//! ```
//! use kubetask_plugin::Error;
//! use kubetask_plugin::mapper::{MapRequest, Mapper, Outcome};
//!
//! /// Issues labelled `wontfix` make no Task; `agent:gemini` picks that Agent.
//! struct LabelRouter;
//!
//! impl Mapper for LabelRouter {
//!     fn map(request: MapRequest) -> Result<Outcome, Error> {
//!         if request.event.labels.iter().any(|l| l == "wontfix") {
//!             return Ok(Outcome::skip("WontFix", "the issue is labelled wontfix"));
//!         }
//!         let mut task = request.task;
//!         if request.event.labels.iter().any(|l| l == "agent:gemini") {
//!             task.spec.agent_ref = Some("gemini".to_owned());
//!         }
//!         Ok(Outcome::Task(Box::new(task)))
//!     }
//! }
//!
//! kubetask_plugin::export_mapper!(LabelRouter);
//! ```

pub use kubetask_api::task_trigger::TaskTrigger;
pub use kubetask_api::trigger_event::{Comment, Event, Provider};

use crate::{Error, Task};

/// What a mapper is asked.
#[derive(Debug, Clone)]
pub struct MapRequest {
    /// The TaskTrigger.
    pub trigger: TaskTrigger,
    /// The event as the receiver read it. Its title, body and comment are untrusted text.
    pub event: Event,
    /// The delivery's body as the provider sent it (untrusted).
    pub payload: String,
    /// The Task the built-in mapper drafted from the template.
    pub task: Task,
    /// Why the built-in filters skip the event, if they do.
    pub builtin_skip: Option<Skip>,
}

impl MapRequest {
    /// The payload, parsed.
    pub fn payload_json(&self) -> Result<serde_json::Value, Error> {
        serde_json::from_str(&self.payload)
            .map_err(|e| Error::Internal(format!("the payload is not JSON: {e}")))
    }
}

/// Why an event makes no Task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    /// One word of CamelCase (`WontFix`), counted in the trigger's status.
    pub reason: String,
    /// For people.
    pub message: String,
}

/// What a mapper decides.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Create this Task.
    Task(Box<Task>),
    /// Create nothing.
    Skip(Skip),
}

impl Outcome {
    /// [`Outcome::Skip`] from anything string-like.
    pub fn skip(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Outcome::Skip(Skip {
            reason: reason.into(),
            message: message.into(),
        })
    }
}

/// A mapper plugin.
pub trait Mapper {
    /// Decides what the event makes.
    fn map(request: MapRequest) -> Result<Outcome, Error>;
}

/// The request as it crosses the WIT boundary: JSON text.
#[derive(Debug, Clone, Default)]
pub struct WireMapRequest {
    pub trigger: String,
    pub event: String,
    pub payload: String,
    pub task: String,
    pub builtin_skip: Option<Skip>,
}

/// The outcome as it crosses the boundary: a Task as JSON, or a skip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireOutcome {
    Task(String),
    Skip(Skip),
}

/// Runs `M` on a wire request, exactly as the component does (for native tests).
pub fn map_wire<M: Mapper>(request: WireMapRequest) -> Result<WireOutcome, String> {
    let decode =
        |what: &str, text: &str| format!("the host sent a {what} that does not decode: {text}");
    let request = MapRequest {
        trigger: serde_json::from_str(&request.trigger)
            .map_err(|e| decode("TaskTrigger", &e.to_string()))?,
        event: serde_json::from_str(&request.event).map_err(|e| decode("event", &e.to_string()))?,
        payload: request.payload,
        task: serde_json::from_str(&request.task).map_err(|e| decode("Task", &e.to_string()))?,
        builtin_skip: request.builtin_skip,
    };
    match M::map(request).map_err(|e| e.to_string())? {
        Outcome::Task(task) => serde_json::to_string(&task)
            .map(WireOutcome::Task)
            .map_err(|e| format!("the Task does not encode: {e}")),
        Outcome::Skip(skip) => Ok(WireOutcome::Skip(skip)),
    }
}
