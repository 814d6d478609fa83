//! `kubectl apply -k manifests/` (the install) applies cleanly, then the example Agent.

use std::process::Command;

use kubetask_test_apiserver::{Config, TestApiServer};

fn kubectl(server: &TestApiServer, args: &[&str]) -> String {
    let output = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", server.kubeconfig_path())
        .env("HOME", server.kubeconfig_path().parent().unwrap())
        .output()
        .expect("kubectl is installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "kubectl {args:?} failed:\n{text}");
    text
}

#[test]
fn the_kustomization_installs_cleanly() {
    let server = TestApiServer::start(Config::default()).unwrap();
    let manifests = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests");
    let out = kubectl(&server, &["apply", "-k", manifests]);
    for created in [
        "namespace/kubetask-system created",
        "customresourcedefinition.apiextensions.k8s.io/tasks.kubetask.io created",
        "customresourcedefinition.apiextensions.k8s.io/agents.kubetask.io created",
        "serviceaccount/kubetask-controller created",
        "clusterrole.rbac.authorization.k8s.io/kubetask-controller created",
        "clusterrolebinding.rbac.authorization.k8s.io/kubetask-controller created",
        "role.rbac.authorization.k8s.io/kubetask-controller-leader-election created",
        "rolebinding.rbac.authorization.k8s.io/kubetask-controller-leader-election created",
        "deployment.apps/kubetask-controller created",
    ] {
        assert!(out.contains(created), "{created} missing from:\n{out}");
    }
    let agent = kubectl(
        &server,
        &[
            "apply",
            "-f",
            &format!("{manifests}/examples/default-agent.yaml"),
        ],
    );
    assert!(
        agent.contains("agent.kubetask.io/default created"),
        "{agent}"
    );
    // Applying again changes nothing.
    let again = kubectl(&server, &["apply", "-k", manifests]);
    assert!(
        !again.contains("configured") && !again.contains("created"),
        "{again}"
    );
    let deployment = kubectl(
        &server,
        &[
            "get",
            "deployment",
            "-n",
            "kubetask-system",
            "kubetask-controller",
            "-o",
            "json",
        ],
    );
    let deployment: serde_json::Value = serde_json::from_str(&deployment).unwrap();
    let args = &deployment["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(
        args.as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--leader-elect"),
        "{args}"
    );
}
