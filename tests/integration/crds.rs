//! The committed CRDs are what `kubetask crds` prints, and they carry the promised rules.

#[test]
fn committed_crds_match_the_generated_ones() {
    let committed = include_str!("../../manifests/crds/crds.yaml");
    let generated = kubetask::crds::yaml().expect("the CRDs encode");
    assert!(
        committed == generated,
        "manifests/crds/crds.yaml is stale: run `kubetask crds > manifests/crds/crds.yaml`"
    );
}

/// The names of a CRD's printer columns: all of them (`wide`, as `-o wide` shows), or those
/// `kubectl get` shows by default (priority 0).
fn columns(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    wide: bool,
) -> Vec<&str> {
    crd.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .filter(|column| wide || column.priority.unwrap_or(0) == 0)
        .map(|column| column.name.as_str())
        .collect()
}

#[test]
fn crds_have_status_columns_short_names_and_validation_rules() {
    let [task, agent, cron_task, trigger, budget] = kubetask::crds::definitions();
    assert_eq!(budget.spec.names.plural, "budgets");
    assert_eq!(budget.spec.scope, "Namespaced");
    assert_eq!(
        columns(&budget, true),
        [
            "Period",
            "Spent USD",
            "Reserved USD",
            "Limit USD",
            "Tokens",
            "Token Limit",
            "Since",
            "Age"
        ]
    );
    assert_eq!(trigger.spec.names.short_names, Some(vec!["ttr".to_owned()]));
    assert_eq!(trigger.spec.names.plural, "tasktriggers");
    assert_eq!(
        columns(&trigger, true),
        ["Source", "Events", "Accepted", "Last Event", "Age"]
    );
    assert_eq!(task.spec.group, "kubetask.io");
    assert_eq!(task.spec.scope, "Namespaced");
    assert_eq!(task.spec.names.short_names, Some(vec!["tk".to_owned()]));
    assert_eq!(agent.spec.names.short_names, Some(vec!["ag".to_owned()]));
    assert_eq!(
        cron_task.spec.names.short_names,
        Some(vec!["ctk".to_owned()])
    );
    assert_eq!(cron_task.spec.names.plural, "crontasks");
    assert_eq!(
        columns(&cron_task, false),
        ["Schedule", "Suspend", "Active", "Last Schedule", "Age"]
    );
    let version = &task.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(
        version
            .subresources
            .as_ref()
            .and_then(|sub| sub.status.as_ref())
            .is_some(),
        "status subresource"
    );
    assert_eq!(
        columns(&task, true),
        [
            "Phase",
            "Agent",
            "Job",
            "Reason",
            "Summary",
            "Pull Request",
            "Age"
        ]
    );

    let yaml = kubetask::crds::yaml().expect("the CRDs encode");
    for rule in [
        "!has(oldSelf.cancel) || (has(self.cancel) && self.cancel == oldSelf.cancel)",
        "has(self.filePath) != has(self.dirPath)",
        "has(self.dirPath) == has(self.source.configMapRef)",
        "[has(self.inline), has(self.configMapKeyRef), has(self.configMapRef)].filter(x, x).size() == 1",
        "self.startsWith('/') && !self.contains('/../') && !self.endsWith('/..')",
        "has(self.env) || has(self.mountPath)",
    ] {
        assert!(yaml.contains(rule), "missing rule {rule}");
    }
}
