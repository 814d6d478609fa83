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

#[test]
fn the_install_with_egress_applies_cleanly() {
    let server = TestApiServer::start(Config::default()).unwrap();
    kubectl(&server, &["create", "namespace", "kubetask-system"]);
    let secret = kubectl(
        &server,
        &[
            "-n",
            "kubetask-system",
            "create",
            "secret",
            "generic",
            "kubetask-egress-key",
            "--from-literal=key=0123456789abcdef0123456789abcdef",
        ],
    );
    assert!(
        secret.contains("secret/kubetask-egress-key created"),
        "{secret}"
    );
    // An overlay as docs/security.md shows it: the install, the exit, the controller Component.
    let overlay = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("egress-overlay-{}", std::process::id()));
    std::fs::create_dir_all(&overlay).unwrap();
    std::fs::write(
        overlay.join("kustomization.yaml"),
        "resources: [../../../manifests, ../../../manifests/egress]\ncomponents: [../../../manifests/egress/controller]\n",
    )
    .unwrap();
    let overlay = overlay.to_str().unwrap().to_owned();
    let out = kubectl(&server, &["apply", "-k", &overlay]);
    for created in [
        "customresourcedefinition.apiextensions.k8s.io/tasks.kubetask.io created",
        "deployment.apps/kubetask-controller created",
        "serviceaccount/kubetask-exit created",
        "clusterrole.rbac.authorization.k8s.io/kubetask-exit created",
        "clusterrolebinding.rbac.authorization.k8s.io/kubetask-exit created",
        "service/kubetask-exit created",
        "deployment.apps/kubetask-exit created",
    ] {
        assert!(out.contains(created), "{created} missing from:\n{out}");
    }
    let again = kubectl(&server, &["apply", "-k", &overlay]);
    assert!(
        !again.contains("configured") && !again.contains("created"),
        "{again}"
    );
    // The controller reads the key the exit reads.
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
    let pod = &deployment["spec"]["template"]["spec"];
    assert!(
        pod["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--egress-key-file=/etc/kubetask-egress/key"),
        "{pod}"
    );
    assert!(
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["secret"]["secretName"] == "kubetask-egress-key"),
        "{pod}"
    );
    // The canary runs the controller's own image (a release bumps both).
    let canary = pod["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "KUBETASK_EGRESS_CANARY_IMAGE")
        .map(|v| v["value"].clone());
    assert_eq!(canary, Some(pod["containers"][0]["image"].clone()), "{pod}");
}

/// The install with the model gateway on, as docs/budgets.md shows it: the controller and the
/// gateway read the same signing key; only the gateway reads the providers' keys.
#[test]
fn the_install_with_the_gateway_applies_cleanly() {
    let server = TestApiServer::start(Config::default()).unwrap();
    kubectl(&server, &["create", "namespace", "kubetask-system"]);
    let overlay = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("gateway-overlay-{}", std::process::id()));
    std::fs::create_dir_all(&overlay).unwrap();
    std::fs::write(
        overlay.join("kustomization.yaml"),
        "resources: [../../../manifests, ../../../manifests/gateway]\ncomponents: [../../../manifests/gateway/controller]\n",
    )
    .unwrap();
    let overlay = overlay.to_str().unwrap().to_owned();
    let out = kubectl(&server, &["apply", "-k", &overlay]);
    for created in [
        "deployment.apps/kubetask-controller created",
        "service/kubetask-gateway created",
        "deployment.apps/kubetask-gateway created",
    ] {
        assert!(out.contains(created), "{created} missing from:\n{out}");
    }
    let again = kubectl(&server, &["apply", "-k", &overlay]);
    assert!(
        !again.contains("configured") && !again.contains("created"),
        "{again}"
    );
    let pod_of = |name: &str| {
        let text = kubectl(
            &server,
            &[
                "get",
                "deployment",
                "-n",
                "kubetask-system",
                name,
                "-o",
                "json",
            ],
        );
        let deployment: serde_json::Value = serde_json::from_str(&text).unwrap();
        deployment["spec"]["template"]["spec"].clone()
    };
    let secrets = |pod: &serde_json::Value| -> Vec<String> {
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v["secret"]["secretName"].as_str().map(str::to_owned))
            .collect()
    };
    let controller = pod_of("kubetask-controller");
    let arg = "--model-gateway-key-file=/etc/kubetask-gateway-signing/signing-key";
    assert!(
        controller["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == arg),
        "{controller}"
    );
    assert_eq!(secrets(&controller), ["kubetask-gateway-signing-key"]);
    let gateway = pod_of("kubetask-gateway");
    assert_eq!(
        secrets(&gateway),
        [
            "kubetask-gateway-provider-keys",
            "kubetask-gateway-signing-key"
        ]
    );
    assert!(
        gateway["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--signing-key-file=/etc/kubetask-gateway-signing/signing-key"),
        "{gateway}"
    );
}

/// The events receiver's and the model gateway's installs apply as kubectl applies them, and a
/// second apply changes nothing.
#[test]
fn the_events_and_gateway_installs_apply_cleanly() {
    let server = TestApiServer::start(Config::default()).unwrap();
    kubectl(&server, &["create", "namespace", "kubetask-system"]);
    for (dir, created) in [
        (
            "manifests/events",
            [
                "serviceaccount/kubetask-events created",
                "role.rbac.authorization.k8s.io/kubetask-events-plugins created",
                "deployment.apps/kubetask-events created",
            ],
        ),
        (
            "manifests/gateway",
            [
                "serviceaccount/kubetask-gateway created",
                "clusterrole.rbac.authorization.k8s.io/kubetask-gateway created",
                "deployment.apps/kubetask-gateway created",
            ],
        ),
    ] {
        let path = format!("{}/{dir}", env!("CARGO_MANIFEST_DIR"));
        let out = kubectl(&server, &["apply", "-k", &path]);
        for line in created {
            assert!(out.contains(line), "{line} missing from:\n{out}");
        }
        let again = kubectl(&server, &["apply", "-k", &path]);
        assert!(
            !again.contains("configured") && !again.contains("created"),
            "{again}"
        );
    }
}
