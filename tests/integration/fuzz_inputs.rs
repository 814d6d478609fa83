//! Property-based fuzzing of what `kubetask render` reads: generated bad (and good) Tasks,
//! Agents, raw documents, and valid Agent/Task pairs with one field replaced or removed go
//! through the same reading, checking and rendering as the CLI, in process. For each: no
//! panic, no trap in the default plugin, an answer within a time and a memory bound, and
//! either a rendering or errors naming the file, the object and the field; at least 99 % of
//! the inputs must be handled so (the others are printed). Every valid pair must render, and
//! every refusal of a pair whose spec had one place changed must name that place (the field
//! itself, one inside it, or one holding it). It runs a fixed number of cases with a fixed seed
//! in `cargo test`.

use std::{
    path::Path,
    sync::{
        Arc, LazyLock, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use kubetask::{
    cli::files::{InputError, Inputs, parse_into},
    cli::render::{Extra, render_all},
    plugin::{Limits, PluginHost},
    render::{Pipeline, Settings},
};
use proptest::{
    prelude::*,
    test_runner::{RngAlgorithm, TestRng, TestRunner},
};
use serde_json::{Value, json};

/// Longer than any input here takes even on a loaded machine: only a hang (or something
/// quadratic) reaches it.
const TIME_BOUND: Duration = Duration::from_secs(20);

/// How much one input may raise the process's peak resident memory: inputs are at most a few
/// hundred KB, and the plugin's memory is capped far below this; only a blow-up reaches it.
const MEMORY_BOUND_BYTES: u64 = 256 * 1024 * 1024;

/// The process's peak resident memory (`VmHWM`), where the kernel reports it.
fn peak_resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

struct Renderer {
    host: Arc<PluginHost>,
    pipeline: Pipeline,
}

static RENDERER: LazyLock<Renderer> = LazyLock::new(|| {
    let host = Arc::new(PluginHost::new(Limits::default()).expect("the plugin host starts"));
    let pipeline = Pipeline::new(host.clone(), Settings::default()).expect("the default plugin");
    Renderer { host, pipeline }
});

/// Cases seen and cases not handled (with what happened), across the whole suite.
static SEEN: AtomicUsize = AtomicUsize::new(0);
static RENDERED: AtomicUsize = AtomicUsize::new(0);
static UNHANDLED: LazyLock<Mutex<Vec<String>>> = LazyLock::new(Mutex::default);

/// What a run of `kubetask render` on `text` answers, judged; the errors it gave.
fn judge(text: &str) -> Vec<InputError> {
    let peak_before = peak_resident_bytes();
    let started = Instant::now();
    let file = Path::new("fuzz.yaml");
    let mut inputs = Inputs::default();
    let mut errors = Vec::new();
    parse_into(file, text, &mut inputs, &mut errors);
    if errors.is_empty() {
        let renderer = &*RENDERER;
        match render_all(
            &renderer.pipeline,
            &renderer.host,
            &inputs,
            &Extra::default(),
            "kubetask-system",
        ) {
            Ok(_) => {
                RENDERED.fetch_add(1, Ordering::Relaxed);
            }
            Err(render_errors) => errors = render_errors,
        }
    }
    let elapsed = started.elapsed();
    SEEN.fetch_add(1, Ordering::Relaxed);
    let grew = peak_before
        .zip(peak_resident_bytes())
        .map_or(0, |(before, after)| after.saturating_sub(before));
    let problem = if elapsed > TIME_BOUND {
        Some(format!("took {elapsed:?}"))
    } else if grew > MEMORY_BOUND_BYTES {
        Some(format!("raised peak memory by {} MiB", grew >> 20))
    } else {
        errors.iter().find_map(|error| unhandled(file, error))
    };
    if let Some(problem) = problem {
        let mut sample = text.to_owned();
        sample.truncate(sample.floor_char_boundary(300));
        UNHANDLED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("{problem}\n  input: {sample:?}"));
    }
    errors
}

/// Mutated cases refused, and those refused without naming the mutated field.
static MUTATED_REFUSED: AtomicUsize = AtomicUsize::new(0);
static MISNAMED: LazyLock<Mutex<Vec<String>>> = LazyLock::new(Mutex::default);

/// A field path as its steps: `spec.contexts[0].file` is `spec`, `contexts`, `0`, `file`.
fn steps(path: &str) -> Vec<String> {
    path.split(['.', '[', ']'])
        .map(|step| step.trim_matches(['\'', '"']))
        .filter(|step| !step.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether `error` is about the mutated place `path` of `object` (`Kind/name`): its field is
/// that place, inside it, or one of the objects holding it (a removed required field is
/// named by its parent's rule, a bad item by its list's).
fn names_the_place(error: &InputError, kind: &str, path: &[String]) -> bool {
    let about = error
        .object
        .as_deref()
        .is_some_and(|object| object.starts_with(&format!("{kind}/")));
    let field = steps(error.field.as_deref().unwrap_or_default());
    // A one-of rule names one alternative and says the others: a sibling whose message names
    // the changed field also names it ("env: Required value: set env, mountPath or both").
    let sibling_saying_it = field.len() == path.len()
        && field[..field.len() - 1] == path[..path.len() - 1]
        && path
            .last()
            .is_some_and(|key| error.message.contains(key.as_str()));
    about
        && !field.is_empty()
        && (field.starts_with(path) || path.starts_with(&field) || sibling_saying_it)
}

/// Why an error is not a clear answer, if it is not: it must name the file; an error about an
/// object must name it and (for a Task or Agent) the field; the default plugin must not trap.
fn unhandled(file: &Path, error: &InputError) -> Option<String> {
    let text = error.to_string();
    if error.file != file {
        return Some(format!("no file: {text}"));
    }
    if text.contains("crashed:") || text.contains("internal error") {
        return Some(format!("the plugin failed: {text}"));
    }
    let about_task_or_agent = error
        .object
        .as_deref()
        .is_some_and(|object| object.starts_with("Task/") || object.starts_with("Agent/"));
    // Whole-object errors (defined twice) name no field; so does a document that is not YAML.
    let needs_field = about_task_or_agent && !error.message.starts_with("is also defined");
    if needs_field && error.field.as_deref().is_none_or(str::is_empty) {
        return Some(format!("no field: {text}"));
    }
    None
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => "[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?",
        1 => "[A-Za-z0-9_./ -]{0,70}",
        1 => "[a-z]{60,300}",
        1 => "\\PC{0,80}",
        1 => Just(String::new()),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,40}",
        "\\PC{0,40}",
        "/[a-z/.]{0,30}",
        Just("..".to_owned())
    ]
}

/// Mostly a valid context path, sometimes anything.
fn context_path() -> impl Strategy<Value = String> {
    prop_oneof![6 => "/workspace/[a-z]{1,12}(\\.md)?", 1 => text()]
}

/// Removes the keys whose value is `null` (an absent optional field).
fn without_nulls(mut value: Value) -> Value {
    if let Value::Object(map) = &mut value {
        map.retain(|_, v| !v.is_null());
    }
    value
}

fn json_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        text().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
        (-1e12f64..1e12).prop_map(Value::from),
    ]
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    json_scalar().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(text(), inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Sometimes a valid value, sometimes anything.
fn or_anything(valid: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Value> {
    prop_oneof![3 => valid, 1 => json_value()].boxed()
}

fn context() -> impl Strategy<Value = Value> {
    let source = prop_oneof![
        4 => text().prop_map(|inline| json!({"inline": inline})),
        1 => (name(), text())
            .prop_map(|(name, key)| json!({"configMapKeyRef": {"name": name, "key": key}})),
        1 => name().prop_map(|name| json!({"configMapRef": {"name": name}})),
        1 => Just(json!({})),
    ];
    (
        or_anything(Just(json!("File"))),
        prop_oneof![
            4 => context_path().prop_map(|p| json!({"filePath": p})),
            1 => context_path().prop_map(|p| json!({"dirPath": p}))
        ],
        source,
    )
        .prop_map(|(kind, mut file, source)| {
            file["source"] = source;
            json!({"type": kind, "file": file})
        })
}

fn metadata() -> impl Strategy<Value = Value> {
    (
        name(),
        prop::option::of(name()),
        prop::collection::btree_map("[a-z]{1,8}", name(), 0..2),
    )
        .prop_map(|(name, namespace, labels)| {
            let mut metadata = json!({"name": name, "labels": labels});
            if let Some(namespace) = namespace {
                metadata["namespace"] = namespace.into();
            }
            metadata
        })
}

fn task() -> impl Strategy<Value = Value> {
    (
        metadata(),
        prop_oneof![8 => prop::collection::vec(context(), 0..4), 1 => prop::collection::vec(context(), 60..70)],
        prop::option::of(name()),
        prop::option::of(or_anything(Just(json!("30m")))),
        prop::option::of(or_anything((0..12i64).prop_map(Value::from))),
        prop::option::of((text(), json_value())),
    )
        .prop_map(|(metadata, contexts, agent, timeout, retries, unknown)| {
            let mut spec = json!({"contexts": contexts});
            if let Some(agent) = agent {
                spec["agentRef"] = agent.into();
            }
            if let Some(timeout) = timeout {
                spec["timeout"] = timeout;
            }
            if let Some(retries) = retries {
                spec["retries"] = retries;
            }
            if let Some((key, value)) = unknown {
                spec[key] = value;
            }
            json!({"apiVersion": "kubetask.io/v1alpha1", "kind": "Task", "metadata": metadata, "spec": spec})
        })
}

fn toleration() -> impl Strategy<Value = Value> {
    (
        prop::option::of(name()),
        prop::option::of(prop_oneof![Just("Exists"), Just("Equal"), Just("Maybe"), Just("")]),
        prop::option::of(name()),
        prop::option::of(prop_oneof![Just("NoSchedule"), Just("NoExecute"), Just("Never")]),
        prop::option::of(any::<i64>()),
    )
        .prop_map(|(key, operator, value, effect, seconds)| {
            without_nulls(json!({"key": key, "operator": operator, "value": value, "effect": effect, "tolerationSeconds": seconds}))
        })
}

fn agent() -> impl Strategy<Value = Value> {
    let env = prop_oneof![4 => "[A-Z][A-Z0-9_]{0,10}", 1 => text()];
    let mode = prop_oneof![4 => 0..512i64, 1 => any::<i64>()];
    let credential = (name(), name(), env, prop::option::of(context_path()), prop::option::of(mode))
        .prop_map(|(name, secret, env, mount, mode)| {
            without_nulls(json!({"name": name, "secretRef": {"name": secret, "key": "k"}, "env": env, "mountPath": mount, "fileMode": mode}))
        });
    (
        metadata(),
        name(),
        prop::option::of(prop_oneof![1 => text(), 4 => Just("quay.io/acme/agent:v1".to_owned())]),
        prop::collection::btree_map(name(), name(), 0..4),
        prop::collection::vec(toleration(), 0..3),
        prop::collection::vec(credential, 0..3),
        prop::collection::vec(Just("".to_owned()).prop_flat_map(|_| name()), 0..1),
        prop::collection::vec(context(), 0..3),
    )
        .prop_map(
            |(metadata, account, image, labels, tolerations, credentials, plugins, contexts)| {
                let spec = without_nulls(json!({
                    "serviceAccountName": account, "agentImage": image, "podLabels": labels,
                    "scheduling": {"nodeSelector": labels, "tolerations": tolerations},
                    "credentials": credentials, "plugins": plugins, "defaultContexts": contexts}));
                json!({"apiVersion": "kubetask.io/v1alpha1", "kind": "Agent", "metadata": metadata, "spec": spec})
            },
        )
}

fn dns_label() -> impl Strategy<Value = String> {
    "[a-z]([-a-z0-9]{0,14}[a-z0-9])?"
}

/// A valid Agent and a Task that uses it, in one namespace: what a user means to write.
fn valid_pair() -> impl Strategy<Value = (Value, Value)> {
    let label = ("[a-z]{1,8}(/[a-z]{1,8})?", "[a-z0-9]{0,10}");
    let toleration = (
        dns_label(),
        prop_oneof![Just("NoSchedule"), Just("NoExecute")],
    )
        .prop_map(|(key, effect)| json!({"key": key, "operator": "Exists", "effect": effect}));
    let credential =
        (dns_label(), "[A-Z][A-Z0-9_]{0,10}", any::<bool>()).prop_map(|(secret, env, as_file)| {
            let mut credential =
                json!({"name": secret, "secretRef": {"name": secret, "key": "token"}});
            if as_file {
                credential["mountPath"] = format!("/home/agent/.{secret}").into();
            } else {
                credential["env"] = env.into();
            }
            credential
        });
    let inline = ("[a-z]{1,12}", "[ -~\n]{0,200}").prop_map(
        |(file, text)| json!({"type": "File", "file": {"filePath": format!("/workspace/{file}.md"), "source": {"inline": text}}}),
    );
    (
        dns_label(),
        dns_label(),
        dns_label(),
        prop::collection::btree_map(label.0, label.1, 0..3),
        prop::collection::vec(toleration, 0..3),
        prop::collection::vec(credential, 0..3),
        prop::collection::vec(inline, 1..4),
        prop::option::of(prop_oneof![Just("90s"), Just("30m"), Just("2h")]),
        prop::option::of(0..5i64),
    )
        .prop_map(
            |(
                namespace,
                agent,
                task,
                labels,
                tolerations,
                credentials,
                contexts,
                timeout,
                retries,
            )| {
                // One credential per name, env variable and path (a second one is refused).
                let mut names = std::collections::HashSet::new();
                let mut targets = std::collections::HashSet::new();
                let credentials: Vec<Value> = credentials
                    .into_iter()
                    .filter(|c| {
                        let target = format!("{}{}", c["env"], c["mountPath"]);
                        names.insert(c["name"].to_string()) && targets.insert(target)
                    })
                    .collect();
                // One context per path.
                let mut paths = std::collections::HashSet::new();
                let contexts: Vec<Value> = contexts
                    .into_iter()
                    .filter(|c| paths.insert(c["file"]["filePath"].to_string()))
                    .collect();
                let agent = json!({"apiVersion": "kubetask.io/v1alpha1", "kind": "Agent",
                    "metadata": {"name": agent, "namespace": namespace},
                    "spec": {"agentImage": "quay.io/acme/agent:v1", "serviceAccountName": "runner",
                        "podLabels": labels, "scheduling": {"tolerations": tolerations},
                        "credentials": credentials}});
                let mut spec = json!({"agentRef": agent["metadata"]["name"], "contexts": contexts});
                if let Some(timeout) = timeout {
                    spec["timeout"] = timeout.into();
                }
                if let Some(retries) = retries {
                    spec["retries"] = retries.into();
                }
                let task = json!({"apiVersion": "kubetask.io/v1alpha1", "kind": "Task",
                    "metadata": {"name": task, "namespace": namespace}, "spec": spec});
                (agent, task)
            },
        )
}

/// The places in `value` one mutation can hit: every object member and array element.
fn places(value: &Value, path: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    let children: Vec<(Value, &Value)> = match value {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| (Value::from(k.as_str()), v))
            .collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (Value::from(i), v))
            .collect(),
        _ => return,
    };
    for (key, child) in children {
        path.push(key);
        out.push(path.clone());
        places(child, path, out);
        path.pop();
    }
}

/// `value` with the place numbered `which` (modulo their count) replaced by `with`, or removed
/// when `with` is `None`; and that place's path (empty when `value` has no places).
fn mutate(mut value: Value, which: usize, with: Option<Value>) -> (Value, Vec<String>) {
    let mut all = Vec::new();
    places(&value, &mut Vec::new(), &mut all);
    let Some(path) = all.get(which % all.len().max(1)).cloned() else {
        return (value, Vec::new());
    };
    let steps: Vec<String> = path
        .iter()
        .map(|step| match step {
            Value::String(key) => key.clone(),
            index => index.to_string(),
        })
        .collect();
    let (last, parents) = path.split_last().expect("a place has a path");
    let mut parent = &mut value;
    for key in parents {
        parent = match key {
            Value::String(key) => &mut parent[key.as_str()],
            _ => &mut parent[key.as_u64().unwrap_or(0) as usize],
        };
    }
    match (parent, last, with) {
        (Value::Object(map), Value::String(key), Some(with)) => {
            map.insert(key.clone(), with);
        }
        (Value::Object(map), Value::String(key), None) => {
            map.remove(key);
        }
        (Value::Array(items), index, with) => {
            let index = index.as_u64().unwrap_or(0) as usize;
            match with {
                Some(with) => items[index] = with,
                None => {
                    items.remove(index);
                }
            }
        }
        _ => {}
    }
    (value, steps)
}

/// Documents as YAML, often with the Agent a Task names.
fn yaml_of(documents: &[Value]) -> String {
    documents
        .iter()
        .map(|document| serde_yaml::to_string(document).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Raw text: no structure at all, broken YAML, deep nesting, aliases, BOMs, merge keys.
fn raw() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..400)
            .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
        "[\\[\\]{}:,&*!|>'\" \n\ta-z0-9-]{0,400}",
        (1usize..5000).prop_map(|depth| format!("{}{}", "[".repeat(depth), "]".repeat(depth))),
        (1usize..5000).prop_map(|depth| "{a: ".repeat(depth)),
        (1usize..8).prop_map(|levels| {
            let mut text = "a0: &a0 [x, x, x, x, x, x, x, x]\n".to_owned();
            for level in 1..=levels {
                let previous = format!("*a{}", level - 1);
                text.push_str(&format!("a{level}: &a{level} [{}]\n", vec![previous; 8].join(", ")));
            }
            text
        }),
        task().prop_map(|task| format!("\u{feff}{}", yaml_of(&[task]))),
        Just("base: &b {contexts: []}\n---\napiVersion: kubetask.io/v1alpha1\nkind: Task\nmetadata: {name: t}\nspec:\n  <<: *b\n".to_owned()),
    ]
}

/// Cases per generator. The seed is fixed so CI is reproducible; `KUBETASK_FUZZ_SEED` picks
/// another (and `KUBETASK_FUZZ_CASES` more cases) for a longer hunt.
fn runner() -> TestRunner {
    let cases = std::env::var("KUBETASK_FUZZ_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(500);
    let seed: u64 = std::env::var("KUBETASK_FUZZ_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(12);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
}

fn fuzz<S: Strategy>(strategy: S, input: impl Fn(S::Value) -> String) {
    runner()
        .run(&strategy, |value| {
            judge(&input(value));
            Ok(())
        })
        .expect("judging never fails a case: unhandled ones are counted");
}

#[test]
fn at_least_99_percent_of_generated_bad_inputs_are_handled() {
    fuzz(task(), |task| yaml_of(&[task]));
    fuzz((agent(), task()), |(agent, mut task)| {
        task["spec"]["agentRef"] = agent["metadata"]["name"].clone();
        task["metadata"]["namespace"] = agent["metadata"]
            .get("namespace")
            .cloned()
            .unwrap_or(Value::Null);
        yaml_of(&[agent, task])
    });
    fuzz(raw(), |text| text);
    // Mostly valid: what a user means, with at most one field replaced or removed. A refusal
    // must name the place that was changed.
    runner()
        .run(
            &(
                valid_pair(),
                prop::option::weighted(
                    0.7,
                    (
                        any::<bool>(),
                        any::<usize>(),
                        prop::option::of(json_value()),
                    ),
                ),
            ),
            |((agent, task), mutation)| {
                let Some((in_agent, which, with)) = mutation else {
                    let errors = judge(&yaml_of(&[agent, task]));
                    if !errors.is_empty() {
                        MISNAMED
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(format!("a valid pair is refused: {errors:?}"));
                    }
                    return Ok(());
                };
                let (kind, (agent, task), (changed, path)) = if in_agent {
                    let (agent, path) = mutate(agent, which, with.clone());
                    ("Agent", (agent.clone(), task), (agent, path))
                } else {
                    let (task, path) = mutate(task, which, with.clone());
                    ("Task", (agent, task.clone()), (task, path))
                };
                let errors = judge(&yaml_of(&[agent, task]));
                if errors.is_empty() || path.first().is_some_and(|p| p != "spec") {
                    // Accepted, or a change of kind, version or metadata (which may move the
                    // object or its reference: checked by the field rule of `unhandled`).
                    return Ok(());
                }
                MUTATED_REFUSED.fetch_add(1, Ordering::Relaxed);
                if !errors.iter().any(|e| names_the_place(e, kind, &path)) {
                    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
                    MISNAMED
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(format!(
                            "{kind} {} set to {with:?}: {}\n  object: {changed}",
                            path.join("."),
                            shown.join("; ")
                        ));
                }
                Ok(())
            },
        )
        .expect("judging never fails a case: misnamed ones are counted");
    // The classes of bad input found by hand before.
    let corpus = [
        "apiVersion: kubetask.io/v1alpha1\nkind: Task\nmetadata: {name: é}\nspec: {contexts: []}\n".to_owned(),
        format!("apiVersion: kubetask.io/v1alpha1\nkind: Task\nmetadata: {{name: {}}}\nspec: {{contexts: []}}\n", "é".repeat(200)),
        "apiVersion: kubetask.io/v1alpha1\nkind: Task\nmetadata: {name: t}\nspec: {contexts: [], agentRefs: x}\n".to_owned(),
        "apiVersion: kubetask.io/v1alpha1\nkind: Agent\nmetadata: {name: a}\nspec: {serviceAccountName: sa, credential: []}\n".to_owned(),
        "apiVersion: kubetask.io/v1alpha1\nkind: Agent\nmetadata: {name: a}\nspec: {serviceAccountName: Bad_SA}\n".to_owned(),
        format!("{}\n", "[".repeat(100_000)),
        "kind: [unclosed".to_owned(),
        "\u{feff}apiVersion: v1\nkind: List\nitems: [1, 2]\n".to_owned(),
    ];
    for text in &corpus {
        judge(text);
    }
    let seen = SEEN.load(Ordering::Relaxed);
    let unhandled = UNHANDLED.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let handled = 100.0 * (seen - unhandled.len()) as f64 / seen as f64;
    println!(
        "{seen} inputs ({} rendered, the others refused), {handled:.2} % handled",
        RENDERED.load(Ordering::Relaxed)
    );
    for case in &unhandled {
        println!("not handled: {case}");
    }
    assert!(
        unhandled.len() * 100 <= seen,
        "{handled:.2} % of {seen} inputs handled (goal: 99 %); not handled:\n{}",
        unhandled.join("\n")
    );
    let misnamed = MISNAMED.lock().unwrap_or_else(|e| e.into_inner()).clone();
    println!(
        "{} refused mutations of a spec, {} not naming the changed field",
        MUTATED_REFUSED.load(Ordering::Relaxed),
        misnamed.len()
    );
    assert!(
        misnamed.is_empty(),
        "refusals that do not name the changed field:\n{}",
        misnamed.join("\n")
    );
}

#[test]
fn an_error_without_its_field_or_from_a_crash_is_not_handled() {
    let file = Path::new("fuzz.yaml");
    let error = |object: &str, field: Option<&str>, message: &str| InputError {
        file: file.to_owned(),
        object: Some(object.to_owned()),
        field: field.map(str::to_owned),
        message: message.to_owned(),
    };
    assert_eq!(
        unhandled(file, &error("Task/t", Some("spec.x"), "bad")),
        None
    );
    assert_eq!(
        unhandled(
            file,
            &error("Task/default/t", None, "is also defined in a.yaml")
        ),
        None
    );
    assert!(unhandled(file, &error("Task/t", None, "bad")).is_some());
    assert!(
        unhandled(
            file,
            &error(
                "Task/t",
                Some("spec"),
                "plugin x (sha256:1) crashed: wasm trap"
            )
        )
        .is_some()
    );
    assert!(
        unhandled(
            Path::new("other.yaml"),
            &error("Task/t", Some("spec"), "bad")
        )
        .is_some()
    );
}

#[test]
fn a_mutation_replaces_or_removes_one_place() {
    let value = json!({"a": {"b": [1, 2]}, "c": 3});
    // Places in order: a, a.b, a.b[0], a.b[1], c.
    assert_eq!(
        mutate(value.clone(), 3, Some(json!("x"))),
        (
            json!({"a": {"b": [1, "x"]}, "c": 3}),
            vec!["a".into(), "b".into(), "1".into()]
        )
    );
    assert_eq!(mutate(value.clone(), 1, None).0, json!({"a": {}, "c": 3}));
    assert_eq!(
        mutate(value.clone(), 4 + 5, None),
        (json!({"a": {"b": [1, 2]}}), vec!["c".to_owned()])
    );
    assert_eq!(mutate(json!(1), 0, None), (json!(1), Vec::new()));
}

#[test]
fn an_error_names_the_place_when_its_field_is_that_place_inside_or_around_it() {
    let error = |object: &str, field: &str| InputError {
        file: "f.yaml".into(),
        object: Some(object.to_owned()),
        field: Some(field.to_owned()),
        message: "bad".into(),
    };
    let place = steps("spec.contexts[0].file");
    assert_eq!(place, ["spec", "contexts", "0", "file"]);
    assert!(names_the_place(
        &error("Task/t", "spec.contexts[0].file"),
        "Task",
        &place
    ));
    assert!(names_the_place(
        &error("Task/t", "spec.contexts[0].file.filePath"),
        "Task",
        &place
    ));
    assert!(names_the_place(
        &error("Task/t", "spec.contexts[0]"),
        "Task",
        &place
    ));
    assert!(!names_the_place(
        &error("Task/t", "spec.contexts[1]"),
        "Task",
        &place
    ));
    assert!(!names_the_place(
        &error("Agent/a", "spec.contexts[0].file"),
        "Task",
        &place
    ));
    assert!(!names_the_place(&error("Task/t", ""), "Task", &place));
    let mut one_of = error("Agent/a", "spec.credentials[0].env");
    let removed = steps("spec.credentials[0].mountPath");
    assert!(!names_the_place(&one_of, "Agent", &removed));
    one_of.message = "Required value: set env, mountPath or both".into();
    assert!(names_the_place(&one_of, "Agent", &removed));
}
