//! The WebAssembly face of a [`Plugin`]: the generated bindings of the `kubetask:plugin`
//! world and the adapter [`crate::export_plugin!`] exports.

use std::marker::PhantomData;

use crate::network::{EgressMode, WireNetworkRequest};
use crate::{EgressPlan, Error, Level, NetworkPlugin, Peer, Plugin, WireDraft, WireRequest};

/// Bindings generated from `wit/` (the one definition of the contract).
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_kubetask_plugin_world",
        default_bindings_module: "::kubetask_plugin::component::bindings",
    });
}

/// Bindings of the `network-plugin` world (the `plugin` world and the `network` interface),
/// sharing the types of [`bindings`].
pub mod network_bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "network-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_kubetask_network_plugin_world",
        default_bindings_module: "::kubetask_plugin::component::network_bindings",
        with: {
            "kubetask:plugin/types@0.1.0": crate::component::bindings::kubetask::plugin::types,
            "kubetask:plugin/host@0.1.0": crate::component::bindings::kubetask::plugin::host,
        },
    });
}

/// Bindings of the `event-mapper` world (mapper plugins), sharing the host of [`bindings`].
pub mod mapper_bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "event-mapper",
        pub_export_macro: true,
        export_macro_name: "__export_kubetask_mapper_world",
        default_bindings_module: "::kubetask_plugin::component::mapper_bindings",
        with: {
            "kubetask:plugin/host@0.1.0": crate::component::bindings::kubetask::plugin::host,
        },
    });
}

use bindings::kubetask::plugin::{host, types};
use mapper_bindings::exports::kubetask::plugin::mapper as wit_mapper;
use network_bindings::exports::kubetask::plugin::network;

/// Implements the generated `Guest` trait for any [`Plugin`].
pub struct Adapter<P>(PhantomData<P>);

impl<P: Plugin> bindings::Guest for Adapter<P> {
    fn render(request: types::RenderRequest) -> Result<types::Draft, types::RenderError> {
        render::<P>(request)
    }
}

impl<P: Plugin> network_bindings::Guest for Adapter<P> {
    fn render(request: types::RenderRequest) -> Result<types::Draft, types::RenderError> {
        render::<P>(request)
    }
}

impl<P: NetworkPlugin> network::Guest for Adapter<P> {
    fn render_network(request: network::NetworkRequest) -> Result<Vec<String>, types::RenderError> {
        let peer = |peer: network::Peer| Peer {
            namespace: peer.namespace,
            pod_labels: peer.pod_labels.into_iter().collect(),
            port: peer.port,
        };
        let request = WireNetworkRequest {
            task: request.task,
            agent: request.agent,
            settings: settings(request.settings),
            job: request.job,
            egress: EgressPlan {
                mode: match request.egress.mode {
                    network::EgressMode::Deny => EgressMode::Deny,
                    network::EgressMode::AllowList => EgressMode::AllowList,
                    network::EgressMode::Open => EgressMode::Open,
                },
                allowed_domains: request.egress.allowed_domains,
                allowed_cidrs: request.egress.allowed_cidrs,
                ports: request.egress.ports,
                exit: peer(request.egress.exit),
                dns: peer(request.egress.dns),
            },
            policies: request.policies,
        };
        crate::network::network_wire::<P>(request).map_err(render_error)
    }
}

impl<M: crate::mapper::Mapper> wit_mapper::Guest for Adapter<M> {
    fn map_event(request: wit_mapper::MapRequest) -> Result<wit_mapper::Outcome, String> {
        use crate::mapper::{Skip, WireMapRequest, WireOutcome};
        let request = WireMapRequest {
            trigger: request.trigger,
            event: request.event,
            payload: request.payload,
            task: request.task,
            builtin_skip: request.builtin_skip.map(|s| Skip {
                reason: s.reason,
                message: s.message,
            }),
        };
        crate::mapper::map_wire::<M>(request).map(|outcome| match outcome {
            WireOutcome::Task(task) => wit_mapper::Outcome::Task(task),
            WireOutcome::Skip(skip) => wit_mapper::Outcome::Skip(wit_mapper::Skip {
                reason: skip.reason,
                message: skip.message,
            }),
        })
    }
}

fn settings(settings: types::Settings) -> crate::Settings {
    crate::Settings {
        default_agent_image: settings.default_agent_image,
        controller_namespace: settings.controller_namespace,
    }
}

fn render_error(error: Error) -> types::RenderError {
    match error {
        Error::Invalid {
            object,
            field,
            message,
        } => types::RenderError::InvalidInput(types::InvalidField {
            object,
            field,
            message,
        }),
        Error::Denied(reason) => types::RenderError::Denied(reason),
        Error::Internal(message) => types::RenderError::Internal(message),
    }
}

fn render<P: Plugin>(request: types::RenderRequest) -> Result<types::Draft, types::RenderError> {
    let request = WireRequest {
        task: request.task,
        agent: request.agent,
        settings: settings(request.settings),
        draft: request.draft.map(|draft| WireDraft {
            job: draft.job,
            config_maps: draft.config_maps,
            warnings: draft.warnings,
        }),
    };
    crate::render_wire::<P>(request)
        .map(|draft| types::Draft {
            job: draft.job,
            config_maps: draft.config_maps,
            warnings: draft.warnings,
        })
        .map_err(render_error)
}

pub(crate) fn log(level: Level, message: &str) {
    let level = match level {
        Level::Debug => host::Level::Debug,
        Level::Info => host::Level::Info,
        Level::Warn => host::Level::Warn,
        Level::Error => host::Level::Error,
    };
    host::log(level, message);
}
