//! The wire form of a request and a draft (objects as JSON text, as the WIT world passes them)
//! and the conversion between it and the typed form.

use serde::{Serialize, de::DeserializeOwned};

use crate::{Draft, Error, Plugin, Request, Settings};

/// A request as it crosses the component boundary: objects as JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireRequest {
    /// The Task as JSON.
    pub task: String,
    /// The Agent as JSON, if any.
    pub agent: Option<String>,
    /// Controller settings.
    pub settings: Settings,
    /// The previous stage's draft.
    pub draft: Option<WireDraft>,
}

/// A draft as it crosses the component boundary: objects as JSON text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WireDraft {
    /// The Job as JSON.
    pub job: String,
    /// ConfigMaps as JSON.
    pub config_maps: Vec<String>,
    /// Notes for the Task's owner.
    pub warnings: Vec<String>,
}

impl WireDraft {
    /// A typed draft in wire form.
    pub fn encode(draft: &Draft) -> Result<Self, Error> {
        Ok(Self {
            job: to_json(&draft.job)?,
            config_maps: draft
                .config_maps
                .iter()
                .map(to_json)
                .collect::<Result<_, _>>()?,
            warnings: draft.warnings.clone(),
        })
    }

    /// The typed draft. The host produced it, so a malformed draft is an internal error.
    pub fn decode(&self) -> Result<Draft, Error> {
        Ok(Draft {
            job: from_json("Job", &self.job).map_err(internal)?,
            config_maps: self
                .config_maps
                .iter()
                .map(|map| from_json("ConfigMap", map).map_err(internal))
                .collect::<Result<_, _>>()?,
            warnings: self.warnings.clone(),
        })
    }
}

impl WireRequest {
    /// The typed request. A Task or Agent that does not parse is the user's to fix, so it is
    /// an [`Error::Invalid`] naming the field.
    /// The draft is decoded only for a plugin that reads it ([`Plugin::READS_DRAFT`]).
    pub fn decode<P: Plugin>(&self) -> Result<Request, Error> {
        Ok(Request {
            task: from_json("Task", &self.task)?,
            agent: self
                .agent
                .as_deref()
                .map(|agent| from_json("Agent", agent))
                .transpose()?,
            settings: self.settings.clone(),
            previous: match &self.draft {
                Some(draft) if P::READS_DRAFT => Some(draft.decode()?),
                _ => None,
            },
        })
    }
}

/// Runs plugin `P` on a wire request: decodes it, calls [`Plugin::render`] and encodes the
/// result. The exported component does exactly this, so a test through `render_wire` covers
/// everything but the canonical ABI.
pub fn render_wire<P: Plugin>(request: &WireRequest) -> Result<WireDraft, Error> {
    let draft = P::render(request.decode::<P>()?)?;
    WireDraft::encode(&draft)
}

fn from_json<T: DeserializeOwned>(kind: &str, json: &str) -> Result<T, Error> {
    kubetask_api::json::from_json(json)
        .map_err(|error| Error::invalid(kind, error.field, error.message))
}

fn internal(error: Error) -> Error {
    Error::Internal(format!(
        "the draft from the previous stage is not valid: {error}"
    ))
}

fn to_json<T: Serialize>(value: &T) -> Result<String, Error> {
    serde_json::to_string(value).map_err(|error| Error::Internal(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Draft, Request};

    /// Passes the draft on with a warning added.
    struct Warns;

    impl Plugin for Warns {
        fn render(request: Request) -> Result<Draft, Error> {
            let mut draft = request.draft()?;
            draft.warnings.push("seen".to_owned());
            Ok(draft)
        }
    }

    /// Builds a Job from scratch and never reads a draft.
    struct Fresh;

    impl Plugin for Fresh {
        const READS_DRAFT: bool = false;

        fn render(request: Request) -> Result<Draft, Error> {
            assert!(request.previous.is_none(), "no draft is decoded");
            Ok(Draft::default())
        }
    }

    const TASK: &str = r#"{"apiVersion":"kubetask.io/v1alpha1","kind":"Task","metadata":{"name":"t","namespace":"n"},"spec":{"contexts":[]}}"#;

    fn request(task: &str, job: Option<&str>) -> WireRequest {
        WireRequest {
            task: task.to_owned(),
            agent: None,
            settings: Settings::default(),
            draft: job.map(|job| WireDraft {
                job: job.to_owned(),
                config_maps: vec![r#"{"metadata":{"name":"m"}}"#.to_owned()],
                warnings: vec!["earlier".to_owned()],
            }),
        }
    }

    #[test]
    fn a_draft_round_trips_through_a_plugin() {
        let job = r#"{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"t"},"spec":{"backoffLimit":0,"template":{"spec":{"containers":[]}}}}"#;
        let out = render_wire::<Warns>(&request(TASK, Some(job))).expect("renders");
        assert_eq!(out.warnings, ["earlier", "seen"]);
        let value: serde_json::Value = serde_json::from_str(&out.job).expect("JSON");
        assert_eq!(value["spec"]["backoffLimit"], 0);
        assert_eq!(out.config_maps.len(), 1);
    }

    #[test]
    fn a_bad_task_names_the_field_and_a_bad_draft_is_internal() {
        let task = TASK.replace(r#""contexts":[]"#, r#""contexts":"nope""#);
        match render_wire::<Warns>(&request(&task, Some("{}"))) {
            Err(Error::Invalid { object, field, .. }) => {
                assert_eq!((object.as_str(), field.as_str()), ("Task", "spec.contexts"));
            }
            other => panic!("expected an invalid field, got {other:?}"),
        }
        let bad_job = r#"{"spec":{"backoffLimit":"zero"}}"#;
        match render_wire::<Warns>(&request(TASK, Some(bad_job))) {
            Err(Error::Internal(message)) => {
                assert!(message.contains("spec.backoffLimit"), "{message}");
            }
            other => panic!("expected an internal error, got {other:?}"),
        }
        match render_wire::<Warns>(&request(TASK, None)) {
            Err(Error::Internal(message)) => assert!(message.contains("built-in renderer")),
            other => panic!("expected an internal error, got {other:?}"),
        }
    }

    #[test]
    fn a_plugin_that_reads_no_draft_gets_none() {
        let out = render_wire::<Fresh>(&request(TASK, Some("not even JSON"))).expect("renders");
        assert!(out.warnings.is_empty());
    }
}
