//! The WebAssembly plugin host: loads components that implement the WIT world in `wit/`,
//! compiles each once (cached by sha256 digest) and calls them in a fresh, bounded sandbox.

pub mod cache;
mod engine;
mod error;
mod host;
mod limits;
pub mod precompiled;
pub mod source;

pub use cache::ArtifactCache;
pub use error::PluginError;
pub use host::{Mapper, Named, Plugin, PluginHost};
pub use limits::Limits;
pub use source::digest_of;

/// The built-in default plugin (`plugins/default`), built by `make plugins`.
pub const DEFAULT_PLUGIN_WASM: &[u8] =
    include_bytes!("../../plugins/default/kubetask_default.wasm");
/// The built-in default plugin compiled ahead of time for x86_64 ([`precompiled`]; made by
/// `make plugins`, checked by CI).
pub const DEFAULT_PLUGIN_PRECOMPILED: &[u8] =
    include_bytes!("../../plugins/default/kubetask_default.cwasm");
/// Name under which the built-in default plugin reports.
pub const DEFAULT_PLUGIN_NAME: &str = "builtin-default";

/// Types generated from `wit/plugin.wit`.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "plugin",
    });

    pub use self::kubetask::plugin::types::{InvalidField, Settings};
}

/// Types generated from the `network-plugin` world of `wit/plugin.wit` (the `network`
/// interface; the rest is [`bindings`]').
pub mod network_bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "network-plugin",
        with: {
            "kubetask:plugin/types": super::bindings::kubetask::plugin::types,
            "kubetask:plugin/host": super::bindings::kubetask::plugin::host,
        },
    });

    pub use self::exports::kubetask::plugin::network::{
        EgressMode, EgressPlan, GuestIndices, NetworkRequest, Peer,
    };
}

/// Types generated from the `event-mapper` world of `wit/mapper.wit` (TaskTriggers' mapper
/// plugins).
pub mod mapper_bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "event-mapper",
        with: {
            "kubetask:plugin/host": super::bindings::kubetask::plugin::host,
        },
    });

    pub use self::exports::kubetask::plugin::mapper::{MapRequest, Outcome, Skip};
}
