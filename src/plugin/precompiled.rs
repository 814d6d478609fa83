//! The built-in default plugin, compiled ahead of time so that a process starts without
//! compiling it (Cranelift takes 1–2 s of CPU for it).
//!
//! The artifact (`plugins/default/kubetask_default.cwasm`, made by
//! `kubetask plugin precompile` and checked for drift by CI) is a header naming the digest
//! of the component it was compiled from, then wasmtime's serialized component. It is
//! compiled with the host's engine configuration but without the host's CPU features, so the
//! same bytes come out on every machine and load on any CPU of the architecture; wasmtime
//! refuses it on another architecture, wasmtime version or configuration, and then the host
//! compiles the component as it would any plugin.

use wasmtime::{Engine, component::Component};

use super::{Limits, engine::engine_config};

/// The first line of an artifact.
const MAGIC: &[u8] = b"kubetask-precompiled-component\n";

/// Compiles `component` into an artifact for [`load`]: the host's engine configuration (with
/// the default limits), for this architecture, with no CPU feature beyond its baseline.
pub fn precompile(component: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut config = engine_config(&Limits::default());
    config
        .target(&target_lexicon::Triple::host().to_string())
        .map_err(|error| anyhow::anyhow!("cannot configure wasmtime: {error}"))?;
    let engine =
        Engine::new(&config).map_err(|error| anyhow::anyhow!("cannot start wasmtime: {error}"))?;
    let compiled = engine
        .precompile_component(component)
        .map_err(|error| anyhow::anyhow!("cannot compile the component: {error:#}"))?;
    let mut artifact = MAGIC.to_vec();
    artifact.extend_from_slice(super::digest_of(component).as_bytes());
    artifact.push(b'\n');
    artifact.extend_from_slice(&compiled);
    Ok(artifact)
}

/// The digest an artifact was compiled from, and wasmtime's bytes.
fn split(artifact: &[u8]) -> Option<(&str, &[u8])> {
    let rest = artifact.strip_prefix(MAGIC)?;
    let end = rest.iter().position(|b| *b == b'\n')?;
    let digest = std::str::from_utf8(&rest[..end]).ok()?;
    Some((digest, &rest[end + 1..]))
}

/// The compiled component in `artifact`, when it was made from the component of `digest` and
/// `engine` accepts it; `None` (and the caller compiles) otherwise.
pub(super) fn load(
    engine: &Engine,
    name: &str,
    digest: &str,
    artifact: &'static [u8],
) -> Option<Component> {
    let Some((made_from, compiled)) = split(artifact) else {
        tracing::warn!(
            plugin = name,
            "the precompiled plugin built into this binary is not an artifact; compiling"
        );
        return None;
    };
    if made_from != digest {
        tracing::warn!(
            plugin = name,
            made_from,
            digest,
            "the precompiled plugin built into this binary is stale (run `make plugins`); compiling"
        );
        return None;
    }
    match deserialize(engine, compiled) {
        Ok(component) => Some(component),
        Err(error) => {
            tracing::debug!(plugin = name, %error, "the precompiled plugin does not fit this engine; compiling");
            None
        }
    }
}

/// Turns the built-in artifact's wasmtime bytes back into a component.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, compiled: &'static [u8]) -> wasmtime::Result<Component> {
    // SAFETY: `Component::deserialize` runs the machine code in its input, so the input must
    // be what wasmtime's own `precompile_component` produced. It is: the artifact is a
    // constant of this binary (`include_bytes!` of a file made by `precompile` above and
    // checked in CI to equal a fresh `precompile` of the component whose digest it names),
    // not anything read at run time. Wasmtime still checks that its version, configuration
    // and CPU features fit this engine, and refuses the bytes otherwise.
    unsafe { Component::deserialize(engine, compiled) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::{DEFAULT_PLUGIN_PRECOMPILED, DEFAULT_PLUGIN_WASM, digest_of};

    fn engine() -> Engine {
        Engine::new(&engine_config(&Limits::default())).expect("an engine")
    }

    #[test]
    fn the_built_in_artifact_names_the_built_in_component() {
        let (made_from, compiled) =
            split(DEFAULT_PLUGIN_PRECOMPILED).expect("the built-in artifact has a header");
        assert_eq!(
            made_from,
            digest_of(DEFAULT_PLUGIN_WASM),
            "run `make plugins`"
        );
        assert!(!compiled.is_empty());
        // It loads here: this test runs on the architecture the artifact is committed for.
        if cfg!(all(target_arch = "x86_64", target_os = "linux")) {
            let limits = Limits {
                memory_bytes: 16 * 1024 * 1024,
                ..Limits::default()
            };
            let other_limits = Engine::new(&engine_config(&limits)).expect("an engine");
            for engine in [engine(), other_limits] {
                assert!(
                    load(
                        &engine,
                        "d",
                        &digest_of(DEFAULT_PLUGIN_WASM),
                        DEFAULT_PLUGIN_PRECOMPILED
                    )
                    .is_some()
                );
            }
        }
    }

    #[test]
    fn a_stale_or_foreign_artifact_is_not_loaded() {
        let digest = digest_of(DEFAULT_PLUGIN_WASM);
        // Made from another component.
        assert!(load(&engine(), "d", "sha256:00", DEFAULT_PLUGIN_PRECOMPILED).is_none());
        // Not an artifact at all.
        assert!(load(&engine(), "d", &digest, b"\x7fELF").is_none());
        // The right header, but wasmtime's bytes from an engine configured otherwise: the
        // host compiles instead of running code built for other settings. (A small component,
        // so that no test compiles the default plugin.)
        let component: &[u8] = include_bytes!("../../plugins/testing/hostile.wasm");
        let digest = digest_of(component);
        let mut config = engine_config(&Limits::default());
        config.epoch_interruption(false);
        let other = Engine::new(&config).expect("an engine");
        let compiled = other
            .precompile_component(component)
            .expect("the component compiles");
        let foreign: &'static [u8] =
            Vec::leak([MAGIC, digest.as_bytes(), b"\n", &compiled].concat());
        assert!(load(&engine(), "d", &digest, foreign).is_none());
        assert!(load(&other, "d", &digest, foreign).is_some());
    }
}
