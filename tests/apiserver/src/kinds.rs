//! Defaulting and validation of the built-in kinds, as their REST strategies do it.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::error::{Cause, cause};
use crate::registry::ResourceType;

const MAX_CONFIG_BYTES: usize = 1024 * 1024;

/// Defaults and validates an object about to be created.
pub fn admit_create(rt: &ResourceType, object: &mut Value) -> Vec<Cause> {
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Namespace") => {
            object["status"] = json!({"phase": "Active"});
            Vec::new()
        }
        ("", "ConfigMap") => validate_config_data(object, &["data", "binaryData"]),
        ("", "Secret") => admit_secret(object),
        ("", "Pod") => {
            if object.pointer("/status/phase").is_none() {
                object["status"] = json!({"phase": "Pending"});
            }
            Vec::new()
        }
        ("batch", "Job") => admit_job(object),
        ("", "Service") => admit_service(object, None),
        ("networking.k8s.io", "NetworkPolicy") => crate::network_policy::validate(object),
        _ => Vec::new(),
    }
}

/// Validates an update against the previous object (immutable fields).
pub fn admit_update(rt: &ResourceType, old: &Value, new: &mut Value) -> Vec<Cause> {
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "ConfigMap") => validate_config_data(new, &["data", "binaryData"]),
        ("", "Secret") => admit_secret(new),
        ("", "Pod") => admit_pod_update(old, new),
        ("", "Service") => admit_service(new, Some(old)),
        ("networking.k8s.io", "NetworkPolicy") => crate::network_policy::validate(new),
        ("batch", "Job") => {
            let mut causes = Vec::new();
            for field in ["template", "selector", "completionMode", "podFailurePolicy"] {
                if old.pointer(&format!("/spec/{field}")) != new.pointer(&format!("/spec/{field}"))
                {
                    causes.push(cause(
                        "FieldValueInvalid",
                        format!("spec.{field}"),
                        "Invalid value: \"object\": field is immutable",
                    ));
                }
            }
            causes
        }
        _ => Vec::new(),
    }
}

/// A Service, as its REST strategy defaults and validates it: the name a DNS-1035 label, type
/// `ClusterIP` with an allocated address (kept on update: it may not change), ports required,
/// numbered 1–65535, named (DNS-1035, unique) when more than one, protocol TCP/UDP/SCTP,
/// `targetPort` defaulted to the port.
fn admit_service(service: &mut Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = service
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if let Some(why) = kubetask_validation::names::dns1035_label_error(&name) {
        causes.push(cause(
            "FieldValueInvalid",
            "metadata.name",
            format!(
                "Invalid value: {}: {why}",
                kubetask_validation::go_quote(&name)
            ),
        ));
    }
    let Some(spec) = service.get_mut("spec").and_then(Value::as_object_mut) else {
        causes.push(cause("FieldValueRequired", "spec.ports", "Required value"));
        return causes;
    };
    let kind = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_owned();
    let supported = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
    if !supported.contains(&kind.as_str()) {
        causes.push(unsupported("spec.type".into(), &kind, &supported));
    }
    spec.insert("type".into(), json!(kind));
    spec.entry("sessionAffinity").or_insert(json!("None"));
    if kind != "ExternalName" {
        spec.entry("internalTrafficPolicy")
            .or_insert(json!("Cluster"));
        spec.entry("ipFamilies").or_insert(json!(["IPv4"]));
        spec.entry("ipFamilyPolicy").or_insert(json!("SingleStack"));
        let old_ip = old.and_then(|o| o.pointer("/spec/clusterIP")).cloned();
        let asked = spec.get("clusterIP").cloned();
        match (old_ip, asked) {
            (Some(old_ip), Some(asked)) if asked != old_ip => causes.push(cause(
                "FieldValueInvalid",
                "spec.clusterIPs[0]",
                format!("Invalid value: {}: may not change once set", asked),
            )),
            (Some(old_ip), _) => {
                spec.insert("clusterIP".into(), old_ip.clone());
                spec.insert("clusterIPs".into(), json!([old_ip]));
            }
            (None, Some(asked)) => {
                spec.insert("clusterIPs".into(), json!([asked]));
            }
            (None, None) => {
                // Allocated from the name: stable, inside the default service CIDR.
                let hash = name
                    .bytes()
                    .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
                let ip = format!("10.96.{}.{}", (hash >> 8) % 256, hash % 254 + 1);
                spec.insert("clusterIP".into(), json!(ip));
                spec.insert("clusterIPs".into(), json!([ip]));
            }
        }
    }
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    let ports = spec.get_mut("ports").and_then(Value::as_array_mut);
    let Some(ports) = ports.filter(|p| !p.is_empty()) else {
        if kind != "ExternalName" && !headless {
            causes.push(cause("FieldValueRequired", "spec.ports", "Required value"));
        }
        return causes;
    };
    let many = ports.len() > 1;
    let mut names = std::collections::BTreeSet::new();
    for (i, port) in ports.iter_mut().enumerate() {
        let field = |f: &str| format!("spec.ports[{i}].{f}");
        let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&number) {
            causes.push(cause(
                "FieldValueInvalid",
                field("port"),
                format!("Invalid value: {number}: must be between 1 and 65535, inclusive"),
            ));
        }
        match port
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            None if many => {
                causes.push(cause("FieldValueRequired", field("name"), "Required value"))
            }
            None => {}
            Some(port_name) => {
                if let Some(why) = kubetask_validation::names::dns1035_label_error(port_name) {
                    causes.push(cause(
                        "FieldValueInvalid",
                        field("name"),
                        format!(
                            "Invalid value: {}: {why}",
                            kubetask_validation::go_quote(port_name)
                        ),
                    ));
                }
                if !names.insert(port_name.to_owned()) {
                    causes.push(cause(
                        "FieldValueDuplicate",
                        field("name"),
                        format!(
                            "Duplicate value: {}",
                            kubetask_validation::go_quote(port_name)
                        ),
                    ));
                }
            }
        }
        let protocol = port
            .get("protocol")
            .and_then(Value::as_str)
            .unwrap_or("TCP")
            .to_owned();
        if !["TCP", "UDP", "SCTP"].contains(&protocol.as_str()) {
            causes.push(unsupported(
                field("protocol"),
                &protocol,
                &["SCTP", "TCP", "UDP"],
            ));
        }
        if let Some(port) = port.as_object_mut() {
            port.insert("protocol".into(), json!(protocol));
            port.entry("targetPort").or_insert(json!(number));
        }
    }
    causes
}

/// A pod's spec is immutable but for `activeDeadlineSeconds`, which may be set or lowered
/// (never raised or removed), and the node binding.
fn admit_pod_update(old: &Value, new: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let deadline = |pod: &Value| {
        pod.pointer("/spec/activeDeadlineSeconds")
            .and_then(Value::as_i64)
    };
    match (deadline(old), deadline(new)) {
        (_, Some(new)) if new <= 0 => causes.push(cause(
            "FieldValueInvalid",
            "spec.activeDeadlineSeconds",
            format!("Invalid value: {new}: must be greater than 0"),
        )),
        (Some(old), Some(new)) if new > old => causes.push(cause(
            "FieldValueForbidden",
            "spec.activeDeadlineSeconds",
            "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations) or `spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative); activeDeadlineSeconds may only be decreased",
        )),
        (Some(_), None) => causes.push(cause(
            "FieldValueForbidden",
            "spec.activeDeadlineSeconds",
            "Forbidden: activeDeadlineSeconds may not be removed",
        )),
        _ => {}
    }
    let rest = |pod: &Value| {
        let mut spec = pod.get("spec").cloned().unwrap_or(Value::Null);
        if let Some(spec) = spec.as_object_mut() {
            spec.remove("activeDeadlineSeconds");
            if old.pointer("/spec/nodeName").is_none() {
                spec.remove("nodeName");
            }
        }
        spec
    };
    if rest(old) != rest(new) {
        causes.push(cause(
            "FieldValueForbidden",
            "spec",
            "Forbidden: pod updates may not change fields other than `spec.activeDeadlineSeconds` and a few others",
        ));
    }
    causes
}

fn validate_config_data(object: &Value, fields: &[&str]) -> Vec<Cause> {
    let mut causes = Vec::new();
    let mut total = 0;
    for field in fields {
        if let Some(map) = object.get(*field).and_then(Value::as_object) {
            for (key, value) in map {
                if let Some(why) = kubetask_validation::names::data_key_error(key) {
                    causes.push(cause(
                        "FieldValueInvalid",
                        field.to_string(),
                        format!(
                            "Invalid value: {}: {why}",
                            kubetask_validation::go_quote(key)
                        ),
                    ));
                }
                total += key.len() + value.as_str().map_or(0, str::len);
            }
        }
    }
    if total > MAX_CONFIG_BYTES {
        causes.push(cause(
            "FieldValueTooLong",
            "",
            format!("Too long: must have at most {MAX_CONFIG_BYTES} bytes"),
        ));
    }
    causes
}

fn admit_secret(object: &mut Value) -> Vec<Cause> {
    if let Some(Value::Object(string_data)) =
        object.as_object_mut().and_then(|o| o.remove("stringData"))
    {
        let data = object
            .as_object_mut()
            .map(|o| o.entry("data").or_insert_with(|| Value::Object(Map::new())));
        if let Some(Value::Object(data)) = data {
            for (key, value) in string_data {
                let text = value.as_str().unwrap_or_default();
                data.insert(
                    key,
                    json!(base64::engine::general_purpose::STANDARD.encode(text)),
                );
            }
        }
    }
    if object.get("type").is_none() {
        object["type"] = json!("Opaque");
    }
    let mut causes = Vec::new();
    if let Some(data) = object.get("data").and_then(Value::as_object) {
        for (key, value) in data {
            let decodes = value
                .as_str()
                .is_some_and(|v| base64::engine::general_purpose::STANDARD.decode(v).is_ok());
            if !decodes {
                causes.push(cause(
                    "FieldValueInvalid",
                    format!("data[{key}]"),
                    "Invalid value: illegal base64 data",
                ));
            }
        }
    }
    causes.extend(validate_config_data(object, &["data"]));
    causes
}

/// The pod template rules KubeTask's Jobs can break: the ServiceAccount name is a DNS
/// subdomain, container names are DNS labels, node selectors are labels, tolerations and node
/// affinity use the operators and effects Kubernetes knows.
fn validate_pod_spec(pod: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    let Some(pod) = pod else {
        return causes;
    };
    let field = "spec.template.spec";
    kubetask_validation::metadata::validate_labels_at(
        pod.get("nodeSelector"),
        &format!("{field}.nodeSelector"),
        &mut causes,
    );
    validate_tolerations(pod, field, &mut causes);
    validate_node_affinity(pod, field, &mut causes);
    if let Some(account) = pod.get("serviceAccountName").and_then(Value::as_str)
        && let Some(mut invalid) = kubetask_validation::names::validate_name(account, false)
    {
        invalid.field = format!("{field}.serviceAccountName");
        causes.push(invalid);
    }
    for kind in ["initContainers", "containers"] {
        for (index, container) in pod
            .get(kind)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let name = container.get("name").and_then(Value::as_str).unwrap_or("");
            if let Some(mut invalid) = kubetask_validation::names::validate_name(name, true) {
                invalid.field = format!("{field}.{kind}[{index}].name");
                causes.push(invalid);
            }
        }
    }
    causes
}

fn unsupported(field: String, value: &str, supported: &[&str]) -> Cause {
    let supported: Vec<String> = supported
        .iter()
        .map(|s| kubetask_validation::go_quote(s))
        .collect();
    cause(
        "FieldValueNotSupported",
        field,
        format!(
            "Unsupported value: {}: supported values: {}",
            kubetask_validation::go_quote(value),
            supported.join(", ")
        ),
    )
}

fn validate_tolerations(pod: &Value, field: &str, causes: &mut Vec<Cause>) {
    let tolerations = pod.get("tolerations").and_then(Value::as_array);
    for (index, toleration) in tolerations.into_iter().flatten().enumerate() {
        let at = format!("{field}.tolerations[{index}]");
        let text = |key: &str| toleration.get(key).and_then(Value::as_str).unwrap_or("");
        let operator = text("operator");
        if !["", "Exists", "Equal"].contains(&operator) {
            causes.push(unsupported(
                format!("{at}.operator"),
                operator,
                &["Equal", "Exists"],
            ));
        }
        let effect = text("effect");
        if !["", "NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
            causes.push(unsupported(
                format!("{at}.effect"),
                effect,
                &["NoExecute", "NoSchedule", "PreferNoSchedule"],
            ));
        }
        if text("key").is_empty() && operator != "Exists" {
            causes.push(cause(
                "FieldValueInvalid",
                format!("{at}.operator"),
                format!("Invalid value: {}: operator must be Exists when `key` is empty, which means \"match all values and all keys\"", kubetask_validation::go_quote(operator)),
            ));
        }
        if toleration.get("tolerationSeconds").is_some() && effect != "NoExecute" {
            causes.push(cause(
                "FieldValueInvalid",
                format!("{at}.effect"),
                format!(
                    "Invalid value: {}: effect must be 'NoExecute' when `tolerationSeconds` is set",
                    kubetask_validation::go_quote(effect)
                ),
            ));
        }
    }
}

fn validate_node_affinity(pod: &Value, field: &str, causes: &mut Vec<Cause>) {
    let terms = pod
        .pointer("/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
        .and_then(Value::as_array);
    for (term_index, term) in terms.into_iter().flatten().enumerate() {
        let expressions = term.get("matchExpressions").and_then(Value::as_array);
        for (index, expression) in expressions.into_iter().flatten().enumerate() {
            let operator = expression
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or("");
            let supported = ["DoesNotExist", "Exists", "Gt", "In", "Lt", "NotIn"];
            if !supported.contains(&operator) {
                causes.push(unsupported(
                    format!("{field}.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[{term_index}].matchExpressions[{index}].operator"),
                    operator,
                    &supported,
                ));
            }
        }
    }
}

fn admit_job(job: &mut Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    // The name was checked as a DNS-1123 label before admission (`state::writes`: a Job's
    // name becomes the value of its pods' `batch.kubernetes.io/job-name` label).
    let name = crate::meta::text(job, "name").to_owned();
    let uid = crate::meta::text(job, "uid").to_owned();
    causes.extend(validate_pod_spec(job.pointer("/spec/template/spec")));
    crate::pod_failure_policy::default(job);
    causes.extend(crate::pod_failure_policy::validate(job));
    let Some(spec) = job.get_mut("spec").and_then(Value::as_object_mut) else {
        causes.push(cause(
            "FieldValueRequired",
            "spec.template",
            "Required value",
        ));
        return causes;
    };
    for (field, value) in [
        ("backoffLimit", json!(6)),
        ("completions", json!(1)),
        ("parallelism", json!(1)),
        ("completionMode", json!("NonIndexed")),
        ("suspend", json!(false)),
        ("podReplacementPolicy", json!("TerminatingOrFailed")),
        ("manualSelector", Value::Null),
    ] {
        if !value.is_null() && !spec.contains_key(field) {
            spec.insert(field.into(), value);
        }
    }
    let controller_labels = json!({
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    });
    spec.insert(
        "selector".into(),
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
    );
    let template = spec
        .entry("template")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(template) = template.as_object_mut() {
        let metadata = template.entry("metadata").or_insert_with(|| json!({}));
        if let (Some(labels), Some(add)) = (
            metadata
                .as_object_mut()
                .map(|m| m.entry("labels").or_insert_with(|| json!({}))),
            controller_labels.as_object(),
        ) && let Some(labels) = labels.as_object_mut()
        {
            for (k, v) in add {
                labels.insert(k.clone(), v.clone());
            }
        }
    }
    let pod = job.pointer_mut("/spec/template/spec");
    match pod.and_then(Value::as_object_mut) {
        None => causes.push(cause(
            "FieldValueRequired",
            "spec.template.spec",
            "Required value",
        )),
        Some(pod) => {
            match pod.get("restartPolicy").and_then(Value::as_str) {
                Some("Never" | "OnFailure") => {}
                Some(other) => causes.push(unsupported(
                    "spec.template.spec.restartPolicy".into(),
                    other,
                    &["OnFailure", "Never"],
                )),
                None => causes.push(cause(
                    "FieldValueRequired",
                    "spec.template.spec.restartPolicy",
                    "Required value",
                )),
            }
            for (field, value) in [
                ("dnsPolicy", json!("ClusterFirst")),
                ("schedulerName", json!("default-scheduler")),
                ("terminationGracePeriodSeconds", json!(30)),
                ("securityContext", json!({})),
            ] {
                pod.entry(field).or_insert(value);
            }
            let containers = pod.get_mut("containers").and_then(Value::as_array_mut);
            match containers {
                Some(containers) if !containers.is_empty() => {
                    for (index, container) in containers.iter_mut().enumerate() {
                        default_container(
                            container,
                            &format!("spec.template.spec.containers[{index}]"),
                            &mut causes,
                        );
                    }
                }
                _ => causes.push(cause(
                    "FieldValueRequired",
                    "spec.template.spec.containers",
                    "Required value",
                )),
            }
            if let Some(containers) = pod.get_mut("initContainers").and_then(Value::as_array_mut) {
                for (index, container) in containers.iter_mut().enumerate() {
                    default_container(
                        container,
                        &format!("spec.template.spec.initContainers[{index}]"),
                        &mut causes,
                    );
                }
            }
        }
    }
    if let Some(status) = job.as_object_mut() {
        status.insert("status".into(), json!({}));
    }
    causes
}

fn default_container(container: &mut Value, path: &str, causes: &mut Vec<Cause>) {
    let Some(container) = container.as_object_mut() else {
        causes.push(cause("FieldValueTypeInvalid", path, "must be an object"));
        return;
    };
    if container
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        causes.push(cause(
            "FieldValueRequired",
            format!("{path}.name"),
            "Required value",
        ));
    }
    let image = container
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if image.is_empty() {
        causes.push(cause(
            "FieldValueRequired",
            format!("{path}.image"),
            "Required value",
        ));
    }
    let tagged = image
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains(':'))
        || image.contains('@');
    let policy = if !tagged || image.ends_with(":latest") {
        "Always"
    } else {
        "IfNotPresent"
    };
    container.entry("imagePullPolicy").or_insert(json!(policy));
    container
        .entry("terminationMessagePath")
        .or_insert(json!("/dev/termination-log"));
    container
        .entry("terminationMessagePolicy")
        .or_insert(json!("File"));
    container.entry("resources").or_insert(json!({}));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::builtins;

    fn job_type() -> ResourceType {
        builtins().into_iter().find(|t| t.kind == "Job").unwrap()
    }

    #[test]
    fn config_map_keys_as_kube_apiserver_checks_them() {
        let map = |key: &str| json!({"data": {key: "x"}});
        for good in ["a.md", ".hidden", "A_b-1"] {
            assert!(
                validate_config_data(&map(good), &["data"]).is_empty(),
                "{good}"
            );
        }
        for (bad, why) in [
            ("a/b", "a valid config key must consist of"),
            ("..", "must not be '..'"),
            ("..x", "must not start with '..'"),
            ("a\0b", "Invalid value: \"a\\x00b\""),
        ] {
            let causes = validate_config_data(&map(bad), &["data"]);
            assert!(
                causes.iter().any(|c| c.message.contains(why)),
                "{bad:?}: {causes:?}"
            );
        }
    }

    #[test]
    fn services_are_defaulted_and_validated() {
        let mut service = json!({
            "metadata": {"name": "kubetask-exit"},
            "spec": {"ports": [{"name": "proxy", "port": 3128, "targetPort": "proxy"}]},
        });
        assert!(admit_service(&mut service, None).is_empty());
        assert_eq!(service["spec"]["type"], "ClusterIP");
        assert_eq!(service["spec"]["ports"][0]["protocol"], "TCP");
        let ip = service["spec"]["clusterIP"].clone();
        assert!(
            ip.as_str().is_some_and(|ip| ip.starts_with("10.96.")),
            "{ip}"
        );
        // Applied again without the address: it stays; another address is refused.
        let mut again =
            json!({"metadata": {"name": "kubetask-exit"}, "spec": {"ports": [{"port": 80}]}});
        assert!(admit_service(&mut again, Some(&service)).is_empty());
        assert_eq!(again["spec"]["clusterIP"], ip);
        assert_eq!(again["spec"]["ports"][0]["targetPort"], 80);
        let mut moved = json!({"metadata": {"name": "kubetask-exit"}, "spec": {"clusterIP": "10.0.0.9", "ports": [{"port": 80}]}});
        let causes = admit_service(&mut moved, Some(&service));
        assert!(
            causes
                .iter()
                .any(|c| c.message.contains("may not change once set")),
            "{causes:?}"
        );

        for (spec, field, says) in [
            (json!({}), "spec.ports", "Required value"),
            (
                json!({"ports": [{"port": 0}]}),
                "spec.ports[0].port",
                "must be between 1 and 65535, inclusive",
            ),
            (
                json!({"ports": [{"port": 1}, {"name": "b", "port": 2}]}),
                "spec.ports[0].name",
                "Required value",
            ),
            (
                json!({"ports": [{"name": "a", "port": 1}, {"name": "a", "port": 2}]}),
                "spec.ports[1].name",
                "Duplicate value: \"a\"",
            ),
            (
                json!({"ports": [{"port": 1, "protocol": "ICMP"}]}),
                "spec.ports[0].protocol",
                "Unsupported value: \"ICMP\"",
            ),
            (
                json!({"type": "Magic", "ports": [{"port": 1}]}),
                "spec.type",
                "Unsupported value: \"Magic\"",
            ),
        ] {
            let mut service = json!({"metadata": {"name": "s"}, "spec": spec});
            let causes = admit_service(&mut service, None);
            assert!(
                causes
                    .iter()
                    .any(|c| c.field == field && c.message.contains(says)),
                "{field}: {causes:?}"
            );
        }
        let mut dotted = json!({"metadata": {"name": "a.b"}, "spec": {"ports": [{"port": 1}]}});
        let causes = admit_service(&mut dotted, None);
        assert!(
            causes
                .iter()
                .any(|c| c.message.contains("a DNS-1035 label")),
            "{causes:?}"
        );
    }

    #[test]
    fn jobs_are_defaulted_and_validated() {
        let mut job = json!({"metadata": {"name": "j", "uid": "u"}, "spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36"}]}}}});
        assert!(admit_create(&job_type(), &mut job).is_empty());
        assert_eq!(job["spec"]["backoffLimit"], 6);
        assert_eq!(
            job["spec"]["template"]["metadata"]["labels"]["job-name"],
            "j"
        );
        assert_eq!(
            job["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        let mut bad = json!({"metadata": {"name": "j"}, "spec": {"template": {"spec": {"restartPolicy": "Always", "containers": []}}}});
        let fields: Vec<String> = admit_create(&job_type(), &mut bad)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.template.spec.restartPolicy",
                "spec.template.spec.containers"
            ]
        );
        let mut changed = job.clone();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("other");
        assert_eq!(
            admit_update(&job_type(), &job, &mut changed)[0].field,
            "spec.template"
        );
    }

    #[test]
    fn secrets_fold_string_data() {
        let secret_type = builtins().into_iter().find(|t| t.kind == "Secret").unwrap();
        let mut secret = json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}});
        assert!(admit_create(&secret_type, &mut secret).is_empty());
        assert_eq!(
            secret,
            json!({"metadata": {"name": "s"}, "data": {"k": "dg=="}, "type": "Opaque"})
        );
    }
}
