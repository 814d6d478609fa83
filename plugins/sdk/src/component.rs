//! The WebAssembly face of a [`Plugin`]: the generated bindings of the `kubetask:plugin`
//! world and the adapter [`crate::export_plugin!`] exports.

use std::marker::PhantomData;

use crate::{Error, Level, Plugin, WireDraft, WireRequest};

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

use bindings::kubetask::plugin::{host, types};

/// Implements the generated `Guest` trait for any [`Plugin`].
pub struct Adapter<P>(PhantomData<P>);

impl<P: Plugin> bindings::Guest for Adapter<P> {
    fn render(request: types::RenderRequest) -> Result<types::Draft, types::RenderError> {
        let request = WireRequest {
            task: request.task,
            agent: request.agent,
            settings: crate::Settings {
                default_agent_image: request.settings.default_agent_image,
                controller_namespace: request.settings.controller_namespace,
            },
            draft: request.draft.map(|draft| WireDraft {
                job: draft.job,
                config_maps: draft.config_maps,
                warnings: draft.warnings,
            }),
        };
        match crate::render_wire::<P>(request) {
            Ok(draft) => Ok(types::Draft {
                job: draft.job,
                config_maps: draft.config_maps,
                warnings: draft.warnings,
            }),
            Err(Error::Invalid {
                object,
                field,
                message,
            }) => Err(types::RenderError::InvalidInput(types::InvalidField {
                object,
                field,
                message,
            })),
            Err(Error::Denied(reason)) => Err(types::RenderError::Denied(reason)),
            Err(Error::Internal(message)) => Err(types::RenderError::Internal(message)),
        }
    }
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
