//! The wire form of a request and a draft (objects as JSON text, as the WIT world passes them)
//! and the conversion between it and the typed form.

use crate::{Draft, Error, Object, Plugin, Request, Settings};

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
    /// A draft in wire form (what was never read passes through as it came).
    pub fn encode(draft: Draft) -> Result<Self, Error> {
        Ok(Self {
            job: draft.job.into_json()?,
            config_maps: draft
                .config_maps
                .into_iter()
                .map(Object::into_json)
                .collect::<Result<_, _>>()?,
            warnings: draft.warnings,
        })
    }

    /// The draft, not yet decoded: [`Object`]s decode what a plugin reads (a malformed part
    /// is then an internal error, as the host produced it).
    pub fn decode(self) -> Draft {
        Draft {
            job: Object::from_json(self.job),
            config_maps: self
                .config_maps
                .into_iter()
                .map(Object::from_json)
                .collect(),
            warnings: self.warnings,
        }
    }
}

impl WireRequest {
    /// The request, not yet decoded: the plugin decodes what it reads ([`Request::task`] names
    /// the field of a Task that does not decode). The draft is passed only to a plugin that
    /// reads it ([`Plugin::READS_DRAFT`]).
    pub fn decode<P: Plugin>(self) -> Result<Request, Error> {
        Ok(Request {
            task: Object::from_json(self.task),
            agent: self.agent.map(Object::from_json),
            settings: self.settings,
            previous: self.draft.filter(|_| P::READS_DRAFT).map(WireDraft::decode),
        })
    }
}

/// Runs plugin `P` on a wire request: decodes it, calls [`Plugin::render`] and encodes the
/// result. The exported component does exactly this, so a test through `render_wire` covers
/// everything but the canonical ABI.
pub fn render_wire<P: Plugin>(request: WireRequest) -> Result<WireDraft, Error> {
    let draft = P::render(request.decode::<P>()?)?;
    WireDraft::encode(draft)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Draft, Request};

    /// Reads the Task and passes the draft on with a warning added.
    struct Warns;

    impl Plugin for Warns {
        fn render(request: Request) -> Result<Draft, Error> {
            request.task()?;
            let mut draft = request.draft()?;
            draft.warnings.push("seen".to_owned());
            Ok(draft)
        }
    }

    /// Reads the Job's backoff limit.
    struct Reads;

    impl Plugin for Reads {
        fn render(request: Request) -> Result<Draft, Error> {
            let draft = request.draft()?;
            draft.job.get::<i32>("/spec/backoffLimit")?;
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
        let out = render_wire::<Warns>(request(TASK, Some(job))).expect("renders");
        assert_eq!(out.warnings, ["earlier", "seen"]);
        let value: serde_json::Value = serde_json::from_str(&out.job).expect("JSON");
        assert_eq!(value["spec"]["backoffLimit"], 0);
        assert_eq!(out.config_maps.len(), 1);
    }

    #[test]
    fn a_bad_task_names_the_field_and_a_bad_draft_is_internal() {
        let task = TASK.replace(r#""contexts":[]"#, r#""contexts":"nope""#);
        match render_wire::<Warns>(request(&task, Some("{}"))) {
            Err(Error::Invalid { object, field, .. }) => {
                assert_eq!((object.as_str(), field.as_str()), ("Task", "spec.contexts"));
            }
            other => panic!("expected an invalid field, got {other:?}"),
        }
        let bad_job = r#"{"spec":{"backoffLimit":"zero"}}"#;
        let passed = render_wire::<Warns>(request(TASK, Some(bad_job))).expect("not read");
        assert_eq!(
            passed.job, bad_job,
            "what a plugin does not read passes as it came"
        );
        match render_wire::<Reads>(request(TASK, Some(bad_job))) {
            Err(Error::Internal(message)) => {
                assert!(message.contains("spec.backoffLimit"), "{message}");
            }
            other => panic!("expected an internal error, got {other:?}"),
        }
        match render_wire::<Warns>(request(TASK, None)) {
            Err(Error::Internal(message)) => assert!(message.contains("built-in renderer")),
            other => panic!("expected an internal error, got {other:?}"),
        }
    }

    #[test]
    fn a_plugin_that_reads_no_draft_gets_none() {
        let out = render_wire::<Fresh>(request(TASK, Some("not even JSON"))).expect("renders");
        assert!(out.warnings.is_empty());
    }
}
