//! The checks kube-apiserver runs on a Task or Agent before it stores one: its name and
//! namespace, its metadata, and the CRD's schema (types, bounds, patterns, enums and CEL
//! rules). The schema is the installed CRD (`manifests/crds/crds.yaml`, which is what
//! `kubetask crds` prints), evaluated by the same code as the project's test API server, so
//! `kubetask render`, the controller and `kubectl apply` refuse the same objects, naming the
//! same fields.

use std::sync::LazyLock;

use kubetask_validation::{
    Cause, cause, metadata::validate_metadata, names, schema::CompiledSchema,
};
use serde::Deserialize;
use serde_json::Value;

/// The kinds this module checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Task,
    Agent,
    CronTask,
}

impl Kind {
    /// The kind as written in `kind:`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Task => "Task",
            Self::Agent => "Agent",
            Self::CronTask => "CronTask",
        }
    }
}

struct CompiledCrd {
    schema: Value,
    rules: CompiledSchema,
}

/// The CRDs as installed on a cluster: `manifests/crds/crds.yaml`, which CI checks is what
/// `kubetask crds` prints (and a test below too). Reading this text at start costs a few ms;
/// generating the CRDs from the Rust types costs tens (`docs/performance.md`, CLI start).
const INSTALLED_CRDS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/manifests/crds/crds.yaml"
));

impl CompiledCrd {
    /// The schema of `kind` in [`INSTALLED_CRDS`]; `Null` (every object admitted) only if the
    /// embedded text is not the CRDs, which the tests rule out.
    fn of(kind: Kind) -> Self {
        let schema = serde_yaml::Deserializer::from_str(INSTALLED_CRDS)
            .filter_map(|document| Value::deserialize(document).ok())
            .find(|crd| {
                crd.pointer("/spec/names/kind").and_then(Value::as_str) == Some(kind.name())
            })
            .and_then(|mut crd| {
                crd.pointer_mut("/spec/versions/0/schema/openAPIV3Schema")
                    .map(Value::take)
            })
            .unwrap_or(Value::Null);
        let rules = kubetask_validation::schema::compile(&schema);
        Self { schema, rules }
    }
}

/// The CRD schemas, compiled once per process.
static SCHEMAS: LazyLock<[CompiledCrd; 3]> = LazyLock::new(|| {
    [
        CompiledCrd::of(Kind::Task),
        CompiledCrd::of(Kind::Agent),
        CompiledCrd::of(Kind::CronTask),
    ]
});

/// Every field of `object` (a Task or Agent as JSON) the API server would refuse. With
/// `strict`, fields the schema does not know are refused too, as `kubectl apply` does (its
/// default `--validate=strict`); without, they are dropped silently, as the server prunes them.
pub fn problems(kind: Kind, object: &Value, strict: bool) -> Vec<Cause> {
    let metadata = object.get("metadata");
    let text = |field: &str| metadata.and_then(|m| m.get(field)).and_then(Value::as_str);
    let mut causes: Vec<Cause> = names::validate_name(text("name").unwrap_or_default(), false)
        .into_iter()
        .collect();
    if let Some(namespace) = text("namespace")
        && let Some(why) = names::label_error(namespace)
    {
        causes.push(cause(
            "FieldValueInvalid",
            "metadata.namespace",
            format!(
                "Invalid value: {}: {why}",
                kubetask_validation::go_quote(namespace)
            ),
        ));
    }
    causes.extend(validate_metadata(object));
    let crd = &SCHEMAS[kind as usize];
    let mut admitted = object.clone();
    let (failed, unknown) =
        kubetask_validation::schema::admit(&crd.schema, Some(&crd.rules), &mut admitted, None);
    causes.extend(failed);
    if strict {
        causes.extend(unknown.into_iter().map(|field| {
            cause(
                "FieldValueNotSupported",
                field,
                "unknown field (the API server would drop it; kubectl apply refuses it)",
            )
        }));
    }
    causes
}

#[cfg(test)]
mod tests {
    use kubetask_api::Agent;
    use serde_json::json;

    use super::*;

    #[test]
    fn the_embedded_crds_are_the_ones_this_binary_prints() {
        let printed = crate::crds::yaml().expect("the CRDs encode");
        assert!(
            INSTALLED_CRDS == printed,
            "manifests/crds/crds.yaml is stale: run `make crds`"
        );
        for crd in SCHEMAS.iter() {
            assert_eq!(crd.schema["type"], "object");
            assert!(crd.schema["properties"]["spec"].is_object());
        }
    }

    fn task(spec: Value) -> Value {
        json!({"apiVersion": "kubetask.io/v1alpha1", "kind": "Task",
            "metadata": {"name": "t", "namespace": "default"}, "spec": spec})
    }

    fn agent(spec: Value) -> Value {
        json!({"apiVersion": "kubetask.io/v1alpha1", "kind": "Agent",
            "metadata": {"name": "a", "namespace": "default"}, "spec": spec})
    }

    fn fields(kind: Kind, object: &Value) -> Vec<String> {
        problems(kind, object, true)
            .into_iter()
            .map(|cause| cause.field)
            .collect()
    }

    #[test]
    fn valid_objects_pass() {
        let inline = json!({"type": "File", "file": {"filePath": "/workspace/a.md", "source": {"inline": "x"}}});
        assert_eq!(
            fields(Kind::Task, &task(json!({"contexts": [inline]}))),
            Vec::<String>::new()
        );
        assert_eq!(
            fields(Kind::Agent, &agent(json!({"serviceAccountName": "runner"}))),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_file_path_must_be_absolute_without_dot_dot_segments() {
        let with_path = |path: &str| {
            let file = json!({"filePath": path, "source": {"inline": "x"}});
            fields(
                Kind::Task,
                &task(json!({"contexts": [{"type": "File", "file": file}]})),
            )
        };
        for refused in [
            "/workspace/../etc",
            "/workspace/..",
            "/..",
            "/../x",
            "workspace/a",
        ] {
            assert_eq!(
                with_path(refused),
                ["spec.contexts[0].file.filePath"],
                "{refused}"
            );
        }
        for accepted in [
            "/workspace/a..b",
            "/workspace/..a/b",
            "/workspace/.x/...",
            "/a/./b",
        ] {
            assert_eq!(with_path(accepted), Vec::<String>::new(), "{accepted}");
        }
    }

    #[test]
    fn names_namespaces_and_unknown_fields_are_refused() {
        let mut bad_name = task(json!({"contexts": []}));
        bad_name["metadata"]["name"] = json!("Fix_Bug");
        bad_name["metadata"]["namespace"] = json!("team.a");
        assert_eq!(
            fields(Kind::Task, &bad_name),
            ["metadata.name", "metadata.namespace"]
        );

        let typo = task(json!({"contexts": [], "agentRefs": "x"}));
        assert_eq!(fields(Kind::Task, &typo), ["spec.agentRefs"]);
        assert!(
            problems(Kind::Task, &typo, false).is_empty(),
            "pruned when not strict"
        );
    }

    #[test]
    fn a_parsed_object_is_checked_against_the_crd() {
        let mut agent = Agent::new("a", kubetask_api::AgentSpec::default());
        agent.metadata.namespace = Some("default".to_owned());
        let json = serde_json::to_value(&agent).expect("encodes");
        assert_eq!(
            fields(Kind::Agent, &json),
            ["spec.serviceAccountName"],
            "an empty serviceAccountName"
        );
    }
}
