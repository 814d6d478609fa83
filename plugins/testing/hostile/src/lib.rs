//! A plugin that misbehaves on request, to prove the sandbox contains it. The Task annotation
//! `test.kubetask.io/behavior` picks what it does; without it the plugin passes the draft on
//! unchanged (a well-behaved stage). With `patch`, it applies the JSON merge patch in the
//! annotation `test.kubetask.io/job-patch` to the Job and appends the ConfigMaps of the JSON
//! array in `test.kubetask.io/config-maps`: any output a plugin could produce, chosen by the test.
//! Its network stage returns the JSON array in `test.kubetask.io/policies` as the pod's
//! policies, or passes the previous stage's on.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "network-plugin",
    });

    use exports::kubetask::plugin::network::{self, NetworkRequest};

    use kubetask::plugin::host::{Level, log};
    use kubetask::plugin::types::InvalidField;
    use serde_json::{Value, json};

    struct Hostile;

    fn annotation(task: &str, key: &str) -> Option<String> {
        let task: Value = serde_json::from_str(task).unwrap_or(Value::Null);
        task["metadata"]["annotations"][key]
            .as_str()
            .map(str::to_owned)
    }

    fn behavior(task: &str) -> String {
        annotation(task, "test.kubetask.io/behavior").unwrap_or_else(|| "pass".to_owned())
    }

    /// RFC 7386: objects merge key by key, `null` removes, anything else replaces.
    fn merge_patch(target: &mut Value, patch: &Value) {
        let Value::Object(patch) = patch else {
            *target = patch.clone();
            return;
        };
        if !target.is_object() {
            *target = json!({});
        }
        if let Value::Object(target) = target {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
    }

    fn patched(task: &str, mut draft: Draft) -> Result<Draft, RenderError> {
        let parse = |text: &str| {
            serde_json::from_str::<Value>(text).map_err(|e| RenderError::Internal(e.to_string()))
        };
        if let Some(patch) = annotation(task, "test.kubetask.io/job-patch") {
            let mut job = parse(&draft.job)?;
            merge_patch(&mut job, &parse(&patch)?);
            draft.job = job.to_string();
        }
        if let Some(config_maps) = annotation(task, "test.kubetask.io/config-maps") {
            let config_maps = parse(&config_maps)?;
            for config_map in config_maps.as_array().into_iter().flatten() {
                draft.config_maps.push(config_map.to_string());
            }
        }
        Ok(draft)
    }

    #[inline(never)]
    #[allow(unconditional_recursion, reason = "exhausting the stack is the point")]
    fn recurse(depth: u64, keep: &mut Vec<u64>) -> u64 {
        keep.push(depth);
        let mut frame = [depth; 64];
        frame[(depth % 64) as usize] = recurse(depth + 1, keep);
        frame.iter().sum()
    }

    impl Guest for Hostile {
        fn render(request: RenderRequest) -> Result<Draft, RenderError> {
            let behavior = behavior(&request.task);
            log(Level::Info, &format!("behaving as {behavior}"));
            let draft = request
                .draft
                .ok_or_else(|| RenderError::Internal("no draft to work on".to_owned()));
            match behavior.as_str() {
                "loop" => loop {
                    std::hint::black_box(());
                },
                "memory" => {
                    let mut hoard: Vec<Vec<u8>> = Vec::new();
                    loop {
                        hoard.push(vec![1; 1 << 20]);
                        std::hint::black_box(&hoard);
                    }
                }
                "recursion" => {
                    let mut keep = Vec::new();
                    let total = recurse(0, &mut keep);
                    Err(RenderError::Internal(format!("unreachable: {total}")))
                }
                "panic" => panic!("the hostile plugin panics on purpose"),
                "garbage" => Ok(Draft {
                    job: "this is not JSON".to_owned(),
                    config_maps: vec![],
                    warnings: vec![],
                }),
                "not-a-job" => Ok(Draft {
                    job:
                        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
                            .to_string(),
                    config_maps: vec![],
                    warnings: vec![],
                }),
                "huge" => Ok(Draft {
                    job: "x".repeat(8 << 20),
                    config_maps: vec![],
                    warnings: vec![],
                }),
                "deny" => Err(RenderError::Denied("hostile policy says no".to_owned())),
                "invalid" => Err(RenderError::InvalidInput(InvalidField {
                    object: "Task/x".to_owned(),
                    field: "metadata.annotations".to_owned(),
                    message: "not acceptable".to_owned(),
                })),
                "hijack" => {
                    let mut draft = draft?;
                    let mut job: Value = serde_json::from_str(&draft.job)
                        .map_err(|e| RenderError::Internal(e.to_string()))?;
                    job["metadata"]["name"] = json!("hijacked");
                    job["metadata"]["namespace"] = json!("kube-system");
                    job["metadata"]["labels"]["kubetask.io/task"] = json!("someone-else");
                    job["metadata"]["labels"]["hijacker"] = json!("was-here");
                    job["metadata"]["ownerReferences"] = json!([{
                        "apiVersion": "v1", "kind": "Namespace", "name": "kube-system", "uid": "evil", "controller": true
                    }]);
                    draft.job = job.to_string();
                    draft.warnings.push("hijack attempted".to_owned());
                    Ok(draft)
                }
                "patch" => patched(&request.task, draft?),
                _ => draft,
            }
        }
    }

    impl network::Guest for Hostile {
        fn render_network(request: NetworkRequest) -> Result<Vec<String>, RenderError> {
            let Some(policies) = annotation(&request.task, "test.kubetask.io/policies") else {
                return Ok(request.policies);
            };
            let policies: Value = serde_json::from_str(&policies)
                .map_err(|e| RenderError::Internal(e.to_string()))?;
            Ok(policies
                .as_array()
                .into_iter()
                .flatten()
                .map(Value::to_string)
                .collect())
        }
    }

    export!(Hostile);
}
