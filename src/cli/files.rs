//! Reading Tasks and Agents from YAML or JSON files, for offline rendering.

use std::{
    collections::HashMap,
    fmt,
    path::{Path, PathBuf},
};

use k8s_openapi::api::core::v1::ConfigMap;
use kubetask_api::{API_VERSION, Agent, CronTask, Task, plugin_labels};

use crate::render::validation::{self, Kind};
use serde::{Deserialize, de::DeserializeOwned};
use serde_yaml::Value;

/// Namespace of objects that name none (as `kubectl` does without `-n`).
pub const DEFAULT_NAMESPACE: &str = "default";

/// An object read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Sourced<T> {
    pub file: PathBuf,
    pub object: T,
}

/// The Tasks, Agents and plugin ConfigMaps found in the inputs, in the order they were read.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Inputs {
    pub tasks: Vec<Sourced<Task>>,
    pub agents: Vec<Sourced<Agent>>,
    pub cron_tasks: Vec<Sourced<CronTask>>,
    /// The Task each CronTask creates next ([`Inputs::schedule_runs`]), rendered like Tasks.
    pub cron_runs: Vec<Sourced<Task>>,
    /// ConfigMaps labelled `kubetask.io/plugin` (packed plugin manifests), as installed.
    pub plugins: Vec<Sourced<ConfigMap>>,
    /// `Kind/name` of other objects, which are ignored.
    pub skipped: Vec<String>,
}

impl Inputs {
    /// Turns each CronTask into the Task it would create at its first tick after `now`
    /// ([`Inputs::cron_runs`]); a schedule that cannot be read is an error naming its field.
    pub fn schedule_runs(&mut self, now: jiff::Timestamp) -> Vec<InputError> {
        let mut errors = Vec::new();
        for Sourced { file, object } in &self.cron_tasks {
            let name = object.metadata.name.clone().unwrap_or_default();
            let next = crate::cron::Schedule::of(&object.spec).and_then(|schedule| {
                let at = schedule.next_after(now).ok_or(crate::cron::Invalid {
                    reason: "InvalidSchedule",
                    field: "spec.schedule",
                    message: "no run after now".to_owned(),
                })?;
                let run = crate::cron::scheduled_name(&name, at);
                crate::cron::check_name(&run).map(|()| (run, at))
            });
            match next {
                Ok((run, at)) => self.cron_runs.push(Sourced {
                    file: file.clone(),
                    object: crate::cron::task_for_run(
                        object,
                        run,
                        crate::cron::Trigger::Scheduled(at),
                    ),
                }),
                Err(invalid) => errors.push(InputError {
                    file: file.clone(),
                    object: Some(format!("CronTask/{name}")),
                    field: Some(invalid.field.to_owned()),
                    message: invalid.message,
                }),
            }
        }
        errors
    }

    /// The Agents by namespace and name, for lookups that do not grow with the number of
    /// Agents.
    pub fn agent_index(&self) -> AgentIndex<'_> {
        AgentIndex(
            self.agents
                .iter()
                .map(|agent| (object_key(&agent.object), agent))
                .collect(),
        )
    }
}

/// The Agents of [`Inputs`] by `(namespace, name)`.
pub struct AgentIndex<'a>(HashMap<(String, String), &'a Sourced<Agent>>);

impl<'a> AgentIndex<'a> {
    /// The Agent `name` in `namespace`, if the inputs hold it.
    pub fn get(&self, namespace: Option<&str>, name: &str) -> Option<&'a Sourced<Agent>> {
        self.0
            .get(&(namespace.unwrap_or_default().to_owned(), name.to_owned()))
            .copied()
    }
}

fn object_key<T: kube_core::Resource>(object: &T) -> (String, String) {
    let metadata = object.meta();
    (
        metadata.namespace.clone().unwrap_or_default(),
        metadata.name.clone().unwrap_or_default(),
    )
}

/// A problem with one input, located as precisely as possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    pub file: PathBuf,
    /// `Kind/name` (or `Kind/namespace/name`), when known.
    pub object: Option<String>,
    /// Path of the offending field, when known.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(object) = &self.object {
            write!(f, ": {object}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for InputError {}

/// Largest input file read. A larger one is refused by its size, before it is read (and a
/// device or pipe once this much has been read).
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;
/// Deepest nesting of YAML flow collections (`[`, `{`) read: the parser's time grows with the
/// square of the depth, and no Task or Agent comes near it.
pub const MAX_FLOW_DEPTH: usize = 256;

/// Reads a file of at most [`MAX_FILE_BYTES`] as UTF-8, without a leading byte-order mark.
fn read_bounded(file: &Path) -> Result<String, String> {
    use std::io::Read;
    let too_big = || format!("is larger than {} MiB; split it", MAX_FILE_BYTES >> 20);
    let opened = std::fs::File::open(file).map_err(|error| format!("cannot read: {error}"))?;
    if opened
        .metadata()
        .is_ok_and(|metadata| metadata.is_file() && metadata.len() > MAX_FILE_BYTES)
    {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    opened
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| format!("cannot read: {error}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big());
    }
    let text = String::from_utf8(bytes).map_err(|error| {
        format!(
            "is not UTF-8 text (invalid byte at offset {})",
            error.utf8_error().valid_up_to()
        )
    })?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_owned(),
        None => text,
    })
}

/// The deepest nesting of flow collections in `text`, counted without parsing (brackets in
/// quoted or block scalars count too, which only makes the bound stricter).
fn flow_depth(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    for byte in text.bytes() {
        match byte {
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// File extensions read from directories (files named explicitly are always read).
const EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// Reads every path: a file (multi-document YAML or JSON) or a directory of them (not
/// recursive, like `kubectl apply -f DIR`). Collects all errors instead of stopping at the first.
pub fn load(paths: &[PathBuf]) -> (Inputs, Vec<InputError>) {
    let mut inputs = Inputs::default();
    let mut errors = Vec::new();
    for path in paths {
        match files_of(path) {
            Ok(files) => {
                for file in files {
                    match read_bounded(&file) {
                        Ok(text) => parse_into(&file, &text, &mut inputs, &mut errors),
                        Err(message) => errors.push(file_error(&file, message)),
                    }
                }
            }
            Err(error) => errors.push(error),
        }
    }
    check_unique(&inputs.tasks, "Task", &mut errors);
    check_unique(&inputs.agents, "Agent", &mut errors);
    check_unique(&inputs.plugins, "ConfigMap", &mut errors);
    check_unique(&inputs.cron_tasks, "CronTask", &mut errors);
    (inputs, errors)
}

fn files_of(path: &Path) -> Result<Vec<PathBuf>, InputError> {
    let metadata = std::fs::metadata(path)
        .map_err(|error| file_error(path, format!("cannot read: {error}")))?;
    if !metadata.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let entries = std::fs::read_dir(path)
        .map_err(|error| file_error(path, format!("cannot list: {error}")))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|file| {
            file.is_file()
                && file
                    .extension()
                    .and_then(|ext| ext.to_str())
                    .is_some_and(|ext| EXTENSIONS.contains(&ext))
        })
        .collect();
    files.sort();
    Ok(files)
}

fn file_error(file: &Path, message: String) -> InputError {
    InputError {
        file: file.to_owned(),
        object: None,
        field: None,
        message,
    }
}

/// Parses the documents of one file into `inputs`.
pub fn parse_into(file: &Path, text: &str, inputs: &mut Inputs, errors: &mut Vec<InputError>) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if flow_depth(text) > MAX_FLOW_DEPTH {
        errors.push(file_error(
            file,
            format!(
                "nests [ and {{ deeper than {MAX_FLOW_DEPTH} levels; no Task or Agent needs that"
            ),
        ));
        return;
    }
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let merged = Value::deserialize(document).and_then(|mut value| {
            // `<<: *defaults` merges as kubectl merges it (YAML 1.1 merge keys).
            value.apply_merge().map(|()| value)
        });
        match merged {
            Ok(Value::Null) => {}
            Ok(value) => classify(file, value, inputs, errors),
            Err(error) => {
                errors.push(file_error(
                    file,
                    format!("document {}: not valid YAML: {error}", index + 1),
                ));
                // A syntax error ends the stream: later documents cannot be located reliably.
                break;
            }
        }
    }
}

fn classify(file: &Path, value: Value, inputs: &mut Inputs, errors: &mut Vec<InputError>) {
    let text = |key: &str| {
        value
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (kind, api_version) = (text("kind"), text("apiVersion"));
    let name = value
        .get("metadata")
        .and_then(|metadata| metadata.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let object = format!("{kind}/{name}");
    let error = |field: Option<&str>, message: String| InputError {
        file: file.to_owned(),
        object: Some(object.clone()),
        field: field.map(str::to_owned),
        message,
    };
    match kind.as_str() {
        "List" if api_version == "v1" => {
            let items = value
                .get("items")
                .and_then(Value::as_sequence)
                .cloned()
                .unwrap_or_default();
            for item in items {
                classify(file, item, inputs, errors);
            }
        }
        "Task" | "Agent" | "CronTask" if api_version != API_VERSION => errors.push(error(
            Some("apiVersion"),
            format!("{api_version:?} is not supported; use {API_VERSION}"),
        )),
        "Task" | "Agent" | "CronTask" if name.is_empty() => {
            errors.push(error(Some("metadata.name"), "is required".to_owned()));
        }
        "Task" => {
            if let Err(problems) = push_checked(file, Kind::Task, value, &mut inputs.tasks) {
                errors.extend(
                    problems
                        .into_iter()
                        .map(|(field, message)| error(field.as_deref(), message)),
                );
            }
        }
        "CronTask" => {
            if let Err(problems) =
                push_checked(file, Kind::CronTask, value, &mut inputs.cron_tasks)
            {
                errors.extend(
                    problems
                        .into_iter()
                        .map(|(field, message)| error(field.as_deref(), message)),
                );
            }
        }
        "Agent" => {
            if let Err(problems) = push_checked(
                file,
                Kind::Agent,
                octal_file_modes(value),
                &mut inputs.agents,
            ) {
                errors.extend(
                    problems
                        .into_iter()
                        .map(|(field, message)| error(field.as_deref(), message)),
                );
            }
        }
        "ConfigMap"
            if api_version == "v1"
                && value
                    .get("metadata")
                    .and_then(|m| m.get("labels"))
                    .and_then(|l| l.get(plugin_labels::PLUGIN))
                    .is_some() =>
        {
            if let Err((field, message)) = push_decoded(file, value, &mut inputs.plugins) {
                errors.push(error(field.as_deref(), message));
            }
        }
        // Not rendered: `kubetask trigger event` shows the Task a TaskTrigger would create; a
        // Budget admits Tasks on a cluster.
        "TaskTrigger" | "Budget" if api_version == API_VERSION => inputs.skipped.push(object),
        "" => errors.push(error(Some("kind"), "is required".to_owned())),
        other if names_a_kind_we_do_not_serve(&api_version, other) => errors.push(error(
            Some("kind"),
            format!("no matches for kind {other:?} in version {api_version:?}: the kinds of kubetask.io are Task, Agent, CronTask, TaskTrigger and Budget"),
        )),
        _ => inputs.skipped.push(object),
    }
}

/// Whether `kind`, which is not exactly `Task` or `Agent`, is meant as one of ours: kubectl
/// refuses a kind its server does not serve (`kind: task`, any other kind of kubetask.io), where
/// we would otherwise skip it silently.
fn names_a_kind_we_do_not_serve(api_version: &str, kind: &str) -> bool {
    api_version.starts_with("kubetask.io/")
        || kind.eq_ignore_ascii_case("Task")
        || kind.eq_ignore_ascii_case("Agent")
        || kind.eq_ignore_ascii_case("CronTask")
}

/// Checks a Task or Agent as the API server and `kubectl apply` would (every refused field,
/// unknown ones included), then decodes and appends it.
fn push_checked<T: DeserializeOwned + kube_core::Resource>(
    file: &Path,
    kind: Kind,
    value: Value,
    objects: &mut Vec<Sourced<T>>,
) -> Result<(), Vec<(Option<String>, String)>> {
    let mut json = serde_json::to_value(&value)
        .map_err(|error| vec![(None, format!("cannot be read as JSON: {error}"))])?;
    if let Some(metadata) = json
        .get_mut("metadata")
        .and_then(serde_json::Value::as_object_mut)
    {
        metadata
            .entry("namespace")
            .or_insert_with(|| DEFAULT_NAMESPACE.into());
    }
    let problems = validation::problems(kind, &json, true);
    if !problems.is_empty() {
        return Err(problems
            .into_iter()
            .map(|cause| (Some(cause.field).filter(|f| !f.is_empty()), cause.message))
            .collect());
    }
    push_decoded(file, value, objects).map_err(|problem| vec![problem])
}

/// Decodes a Task or Agent, puts it in `default` if it names no namespace, and appends it.
fn push_decoded<T: DeserializeOwned + kube_core::Resource>(
    file: &Path,
    value: Value,
    objects: &mut Vec<Sourced<T>>,
) -> Result<(), (Option<String>, String)> {
    let mut object: T = decode(value)?;
    object
        .meta_mut()
        .namespace
        .get_or_insert_with(|| DEFAULT_NAMESPACE.to_owned());
    objects.push(Sourced {
        file: file.to_owned(),
        object,
    });
    Ok(())
}

/// Reads `fileMode: 0400` as kubectl does. Kubernetes tools parse YAML 1.1, where a plain
/// scalar with a leading zero is octal (`0400` = 256); serde_yaml follows YAML 1.2, where it is
/// a string. File modes are the only integers of our API written that way, so they alone are
/// converted.
fn octal_file_modes(mut value: Value) -> Value {
    let credentials = value
        .get_mut("spec")
        .and_then(|spec| spec.get_mut("credentials"))
        .and_then(Value::as_sequence_mut);
    for credential in credentials.into_iter().flatten() {
        if let Some(mode) = credential.get_mut("fileMode") {
            let octal = mode
                .as_str()
                .and_then(|text| text.strip_prefix('0'))
                .filter(|digits| !digits.is_empty())
                .and_then(|digits| i64::from_str_radix(digits, 8).ok());
            if let Some(octal) = octal {
                *mode = Value::Number(octal.into());
            }
        }
    }
    value
}

/// Deserializes `value`, returning the path of the offending field on failure.
fn decode<T: DeserializeOwned>(value: Value) -> Result<T, (Option<String>, String)> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let field = (path != ".").then_some(path);
        (field, error.into_inner().to_string())
    })
}

fn check_unique<T: kube_core::Resource>(
    objects: &[Sourced<T>],
    kind: &str,
    errors: &mut Vec<InputError>,
) {
    let mut first: HashMap<(String, String), &Path> = HashMap::with_capacity(objects.len());
    for sourced in objects {
        let key = object_key(&sourced.object);
        if let Some(earlier) = first.get(&key) {
            let (namespace, name) = &key;
            errors.push(InputError {
                file: sourced.file.clone(),
                object: Some(format!("{kind}/{namespace}/{name}")),
                field: None,
                message: format!("is also defined in {}", earlier.display()),
            });
        } else {
            first.insert(key, &sourced.file);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Inputs, Vec<InputError>) {
        let mut inputs = Inputs::default();
        let mut errors = Vec::new();
        parse_into(Path::new("in.yaml"), text, &mut inputs, &mut errors);
        (inputs, errors)
    }

    const TASK: &str = "apiVersion: kubetask.io/v1alpha1\nkind: Task\nmetadata:\n  name: t\nspec:\n  contexts: []\n";

    #[test]
    fn reads_multi_document_streams_and_lists() {
        let agent = "apiVersion: kubetask.io/v1alpha1\nkind: Agent\nmetadata:\n  name: a\n  namespace: x\nspec:\n  serviceAccountName: sa\n";
        let list = format!(
            "apiVersion: v1\nkind: List\nitems:\n- {}",
            TASK.replace("name: t", "name: t2").replace('\n', "\n  ")
        );
        let text = format!(
            "{TASK}---\n{agent}---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n---\n{list}"
        );
        let (inputs, errors) = parse(&text);
        assert_eq!(errors, []);
        let names: Vec<_> = inputs
            .tasks
            .iter()
            .map(|task| task.object.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, ["t", "t2"]);
        assert_eq!(
            inputs.tasks[0].object.metadata.namespace.as_deref(),
            Some("default"),
            "namespace defaults"
        );
        assert_eq!(
            inputs.agents[0].object.metadata.namespace.as_deref(),
            Some("x")
        );
        assert_eq!(inputs.skipped, ["ConfigMap/c"]);
    }

    #[test]
    fn an_unknown_kind_of_ours_is_an_error_naming_it() {
        for document in [
            "apiVersion: kubetask.io/v1alpha1\nkind: task\nmetadata: {name: t}\n",
            "apiVersion: kubetask.io/v1alpha1\nkind: Tasks\nmetadata: {name: t}\n",
        ] {
            let mut inputs = Inputs::default();
            let mut errors = Vec::new();
            parse_into(Path::new("in.yaml"), document, &mut inputs, &mut errors);
            assert_eq!(errors.len(), 1, "{document}");
            assert_eq!(errors[0].field.as_deref(), Some("kind"));
            assert!(
                errors[0].message.contains("no matches for kind"),
                "{errors:?}"
            );
            assert!(inputs.skipped.is_empty());
        }
    }

    #[test]
    fn errors_name_the_object_and_field() {
        let cases = [
            (
                TASK.replace("contexts: []", "contexts:\n  - type: Folder"),
                Some("spec.contexts[0].type"),
                "Unsupported value: \"Folder\"",
            ),
            (
                TASK.replace("  contexts: []\n", "  agentRef: x\n"),
                Some("spec.contexts"),
                "Required value",
            ),
            (
                TASK.replace("v1alpha1", "v1"),
                Some("apiVersion"),
                "not supported",
            ),
            (
                TASK.replace("  name: t\n", "  labels: {}\n"),
                Some("metadata.name"),
                "required",
            ),
            ("kind: [unclosed".to_owned(), None, "not valid YAML"),
        ];
        for (text, field, message) in cases {
            let (_, errors) = parse(&text);
            let [error] = errors.as_slice() else {
                panic!("one error expected for {text}: {errors:?}")
            };
            assert_eq!(error.field.as_deref(), field, "{error}");
            assert!(error.message.contains(message), "{error}");
            assert!(error.to_string().starts_with("in.yaml"), "{error}");
        }
    }

    #[test]
    fn what_the_api_server_refuses_is_refused_with_its_field() {
        let agent = "apiVersion: kubetask.io/v1alpha1\nkind: Agent\nmetadata:\n  name: a\nspec:\n  serviceAccountName: sa\n";
        let cases = [
            (
                TASK.replace("name: t", "name: Fix_Bug"),
                "metadata.name",
                "RFC 1123 subdomain",
            ),
            (
                TASK.replace("name: t", &format!("name: {}", "a".repeat(254))),
                "metadata.name",
                "no more than 253",
            ),
            (
                TASK.replace("name: t", "name: t\n  namespace: team.a"),
                "metadata.namespace",
                "RFC 1123 label",
            ),
            (
                TASK.replace("name: t", "name: t\n  labels: {\"a b\": x}"),
                "metadata.labels",
                "name part must consist",
            ),
            (
                TASK.replace("contexts: []", "contexts: []\n  agentRefs: x"),
                "spec.agentRefs",
                "unknown field",
            ),
            (
                TASK.replace("contexts: []", "contexts: []\n  agentRef: My_Agent"),
                "spec.agentRef",
                "should match",
            ),
            (
                agent.replace("serviceAccountName: sa", "serviceAccountName: Bad_SA"),
                "spec.serviceAccountName",
                "should match",
            ),
            (
                agent.replace(
                    "  serviceAccountName: sa\n",
                    "  serviceAccountName: sa\n  credential: []\n",
                ),
                "spec.credential",
                "unknown field",
            ),
            (
                format!("{agent}  agentImage: 'team/Agent:v1'\n"),
                "spec.agentImage",
                "should match",
            ),
            (
                format!("{agent}  podLabels: {{\"bad key\": x}}\n"),
                "spec.podLabels",
                "keys must be label keys",
            ),
            (
                format!("{agent}  podLabels: {{team: \"not valid\"}}\n"),
                "spec.podLabels.team",
                "should match",
            ),
            (
                format!("{agent}  scheduling: {{nodeSelector: {{\"-x\": y}}}}\n"),
                "spec.scheduling.nodeSelector",
                "keys must be label keys",
            ),
            (
                format!("{agent}  scheduling: {{tolerations: [{{key: k, operator: Maybe}}]}}\n"),
                "spec.scheduling.tolerations[0].operator",
                "Unsupported value",
            ),
            (
                format!("{agent}  scheduling: {{tolerations: [{{key: k, effect: NoRun}}]}}\n"),
                "spec.scheduling.tolerations[0].effect",
                "Unsupported value",
            ),
            (
                format!("{agent}  scheduling: {{tolerations: [{{operator: Equal, value: v}}]}}\n"),
                "spec.scheduling.tolerations[0].operator",
                "without a key",
            ),
            (
                format!(
                    "{agent}  scheduling: {{tolerations: [{{key: k, operator: Exists, value: v}}]}}\n"
                ),
                "spec.scheduling.tolerations[0].value",
                "value must be empty",
            ),
            (
                format!(
                    "{agent}  scheduling: {{tolerations: [{{key: k, tolerationSeconds: 5}}]}}\n"
                ),
                "spec.scheduling.tolerations[0].tolerationSeconds",
                "NoExecute",
            ),
            (
                format!(
                    "{agent}  credentials: [{{name: k, secretRef: {{name: s, key: k}}, env: '1X'}}]\n"
                ),
                "spec.credentials[0].env",
                "should match",
            ),
            (
                format!(
                    "{agent}  credentials: [{{name: k, secretRef: {{name: S, key: '..'}}, env: X}}]\n"
                ),
                "spec.credentials[0].secretRef.name",
                "should match",
            ),
            (
                format!("{agent}  plugins: [Not_A_Name]\n"),
                "spec.plugins[0]",
                "should match",
            ),
        ];
        for (text, field, message) in cases {
            let (inputs, errors) = parse(&text);
            let error = errors
                .iter()
                .find(|error| error.field.as_deref() == Some(field))
                .unwrap_or_else(|| panic!("{field} refused in {text}: {errors:?}"));
            assert!(error.message.contains(message), "{error}");
            assert!(
                inputs.tasks.is_empty() && inputs.agents.is_empty(),
                "nothing bad is kept"
            );
        }
        let fine = format!(
            "{agent}  agentImage: registry.example.com:5000/team/agent:v1.2@sha256:{}\n  scheduling: {{tolerations: [{{operator: Exists}}, {{key: example.com/gpu, operator: Equal, value: a100, effect: NoExecute, tolerationSeconds: 60}}]}}\n",
            "a".repeat(64)
        );
        assert_eq!(parse(&fine).1, []);
    }

    #[test]
    fn byte_order_marks_merge_keys_and_nesting() {
        let (inputs, errors) = parse(&format!("\u{feff}{TASK}"));
        assert_eq!((inputs.tasks.len(), errors), (1, vec![]));

        let merged = "base: &base\n  contexts: []\n---\napiVersion: kubetask.io/v1alpha1\nkind: Task\nmetadata:\n  name: t\nspec:\n  <<: {contexts: [], agentRef: a}\n";
        let (inputs, errors) = parse(merged);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            errors[0].field.as_deref(),
            Some("kind"),
            "the first document has no kind"
        );
        assert_eq!(
            inputs.tasks[0].object.spec.agent_ref.as_deref(),
            Some("a"),
            "merged"
        );

        let deep = format!(
            "{}{}",
            "[".repeat(MAX_FLOW_DEPTH + 1),
            "]".repeat(MAX_FLOW_DEPTH + 1)
        );
        let (_, errors) = parse(&deep);
        assert!(errors[0].message.contains("deeper than 256"), "{errors:?}");
        let (_, errors) = parse(
            "a: &a [1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n",
        );
        assert!(
            errors[0].message.contains("repetition limit"),
            "alias expansion is bounded: {errors:?}"
        );
    }

    #[test]
    fn large_files_are_refused_by_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = dir.path().join("big.yaml");
        let file = std::fs::File::create(&big).expect("create");
        file.set_len(MAX_FILE_BYTES + 1).expect("sparse file");
        let (_, errors) = load(&[big]);
        assert!(
            errors[0].message.contains("larger than 8 MiB"),
            "{errors:?}"
        );
        let (_, errors) = load(&[PathBuf::from("/dev/zero")]);
        assert!(
            errors[0].message.contains("larger than 8 MiB"),
            "a device is read only up to the cap: {errors:?}"
        );
    }

    #[test]
    fn an_object_defined_twice_is_an_error() {
        let mut inputs = Inputs::default();
        let mut errors = Vec::new();
        parse_into(Path::new("a.yaml"), TASK, &mut inputs, &mut errors);
        parse_into(
            Path::new("b.yaml"),
            &TASK.replace("name: t\n", "name: t\n  namespace: other\n"),
            &mut inputs,
            &mut errors,
        );
        parse_into(Path::new("c.yaml"), TASK, &mut inputs, &mut errors);
        check_unique(&inputs.tasks, "Task", &mut errors);
        let [error] = errors.as_slice() else {
            panic!("one error expected: {errors:?}")
        };
        assert_eq!(
            error.to_string(),
            "c.yaml: Task/default/t: is also defined in a.yaml"
        );
    }

    #[test]
    fn octal_file_modes_read_as_kubectl_reads_them() {
        let agent = "apiVersion: kubetask.io/v1alpha1\nkind: Agent\nmetadata:\n  name: a\nspec:\n  serviceAccountName: sa\n  credentials:\n  - name: k\n    secretRef: {name: s, key: k}\n    mountPath: /k\n    fileMode: 0400\n";
        let (inputs, errors) = parse(agent);
        assert_eq!(errors, []);
        assert_eq!(
            inputs.agents[0].object.spec.credentials[0].file_mode,
            Some(0o400)
        );
    }
}
