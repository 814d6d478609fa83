//! The network stage: plugins that render the NetworkPolicies (or a CNI's own policies) of a
//! Task's pod, when the controller runs with egress on. The WIT `network` interface, typed.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::{Agent, Error, Job, Object, Plugin, Settings, Task};
pub use kubetask_api::egress::EgressMode;

/// Pods a Task pod must reach: those with all of `pod_labels` in `namespace`, on `port`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Peer {
    /// The peer's namespace.
    pub namespace: String,
    /// Labels every peer pod has.
    pub pod_labels: BTreeMap<String, String>,
    /// The port the pods listen on (the container port, which policies match).
    pub port: u16,
}

/// What the Task's pod may reach, as the controller enforces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPlan {
    /// The effective mode (the Task's, narrowed from its Agent's or the cluster default).
    pub mode: EgressMode,
    /// Exact names and `*.suffix` wildcards, allowed by the exit (not by a policy).
    pub allowed_domains: Vec<String>,
    /// CIDRs the pod reaches directly, on [`Self::ports`].
    pub allowed_cidrs: Vec<String>,
    /// TCP ports allowed to the domains and CIDRs.
    pub ports: Vec<u16>,
    /// The exit every proxied connection goes through, over TCP.
    pub exit: Peer,
    /// The cluster DNS, over UDP and TCP.
    pub dns: Peer,
}

/// What the network stage of a plugin is asked for.
#[derive(Debug, Clone)]
pub struct NetworkRequest {
    /// The Task (as in [`crate::Request`]).
    pub task: Object<Task>,
    /// The resolved Agent, if any.
    pub agent: Option<Object<Agent>>,
    /// Controller settings.
    pub settings: Settings,
    /// The Job every stage rendered: its pod template's labels select the pod.
    pub job: Object<Job>,
    /// The Task's egress.
    pub egress: EgressPlan,
    /// The previous stage's policies; empty for the first stage.
    pub policies: Vec<Object<Value>>,
}

impl NetworkRequest {
    /// The labels of the Job's pods (what a policy selects them by).
    pub fn pod_labels(&self) -> Result<BTreeMap<String, String>, Error> {
        Ok(self
            .job
            .get("/spec/template/metadata/labels")?
            .unwrap_or_default())
    }
}

/// A plugin that also renders the network policies of a Task's pod. Export it with
/// [`crate::export_network_plugin!`] (instead of [`crate::export_plugin!`]).
pub trait NetworkPlugin: Plugin {
    /// The policies to create before the Job (`networking.k8s.io/v1` NetworkPolicies or
    /// `cilium.io/v2` CiliumNetworkPolicies, at most 4, each named `<job name>-<suffix>`).
    /// Return `request.policies` to keep the previous stage's.
    fn network(request: NetworkRequest) -> Result<Vec<Object<Value>>, Error>;
}

/// A network request as it crosses the component boundary: objects as JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireNetworkRequest {
    /// The Task as JSON.
    pub task: String,
    /// The Agent as JSON, if any.
    pub agent: Option<String>,
    /// Controller settings.
    pub settings: Settings,
    /// The Job as JSON.
    pub job: String,
    /// The Task's egress.
    pub egress: EgressPlan,
    /// The previous stage's policies as JSON.
    pub policies: Vec<String>,
}

/// Runs the network stage of plugin `P` on a wire request, as the exported component does.
pub fn network_wire<P: NetworkPlugin>(request: WireNetworkRequest) -> Result<Vec<String>, Error> {
    let request = NetworkRequest {
        task: Object::from_json(request.task),
        agent: request.agent.map(Object::from_json),
        settings: request.settings,
        job: Object::from_json(request.job),
        egress: request.egress,
        policies: request
            .policies
            .into_iter()
            .map(Object::from_json)
            .collect(),
    };
    P::network(request)?
        .into_iter()
        .map(Object::into_json)
        .collect()
}
