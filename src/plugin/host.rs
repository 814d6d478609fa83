//! One wasmtime `Engine` for the process, compiled plugins cached by digest, and a fresh
//! `Store` per call so no state survives between Tasks.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use wasmtime::{
    Engine, Store, Trap,
    component::{Component, HasSelf, Linker},
};

use super::{
    ArtifactCache, Limits, PluginError,
    bindings::{self, Draft, RenderRequest, kubetask::plugin::host::Level},
    digest_of,
    engine::engine_config,
    limits::MemoryLimiter,
    mapper_bindings, network_bindings,
};

/// How often the deadline clock ticks; deadlines are rounded up to it.
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// The only imports a plugin may have: the interfaces of our own world, version 0.1.x.
const ALLOWED_IMPORTS: [&str; 2] = ["kubetask:plugin/host@0.1.", "kubetask:plugin/types@0.1."];

/// A compiled plugin, ready to instantiate. Cheap to clone.
#[derive(Clone)]
pub struct Plugin {
    name: String,
    digest: String,
    compiled: Arc<Compiled>,
}

/// A component compiled and checked against the plugin world.
struct Compiled {
    pre: bindings::PluginPre<CallState>,
    /// Where its `network` interface is, if it exports one.
    network: Option<network_bindings::GuestIndices>,
}

/// The export a plugin of the `network-plugin` world has.
const NETWORK_EXPORT: &str = "kubetask:plugin/network@0.1.";

impl Plugin {
    /// The plugin's name (its ConfigMap name, or `builtin-default`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `sha256:<hex>` of the component's bytes.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// `sha256:` and the first 12 hex digits of the digest, for messages.
    pub fn short_digest(&self) -> String {
        short(&self.digest)
    }

    /// Whether the plugin renders network policies (exports the WIT `network` interface).
    pub fn renders_network(&self) -> bool {
        self.compiled.network.is_some()
    }
}

/// A compiled mapper plugin (the `event-mapper` world of `wit/mapper.wit`). Cheap to clone.
#[derive(Clone)]
pub struct Mapper {
    name: String,
    digest: String,
    pre: Arc<mapper_bindings::EventMapperPre<CallState>>,
}

impl Named for Mapper {
    fn name(&self) -> &str {
        &self.name
    }

    fn digest(&self) -> &str {
        &self.digest
    }
}

/// What names a loaded component in errors and logs.
pub trait Named {
    /// Its name (its ConfigMap's name, or `builtin-default`).
    fn name(&self) -> &str;
    /// `sha256:<hex>` of the component's bytes.
    fn digest(&self) -> &str;
    /// `sha256:` and the first 12 hex digits of the digest, for messages.
    fn short_digest(&self) -> String {
        short(self.digest())
    }
}

impl Named for Plugin {
    fn name(&self) -> &str {
        &self.name
    }

    fn digest(&self) -> &str {
        &self.digest
    }
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("digest", &self.digest)
            .finish()
    }
}

fn short(digest: &str) -> String {
    digest.chars().take("sha256:".len() + 12).collect()
}

/// What a plugin's `Store` holds during one call.
pub(crate) struct CallState {
    limiter: MemoryLimiter,
    plugin: String,
    digest: String,
}

/// The log target of the lines plugins write with `host.log` (`RUST_LOG=plugin=debug` shows
/// them all; `kubetask render -v` and `plugin check -v` do that).
pub const LOG_TARGET: &str = "plugin";

impl bindings::kubetask::plugin::host::Host for CallState {
    fn log(&mut self, level: Level, message: String) {
        let (plugin, digest) = (&self.plugin, short(&self.digest));
        match level {
            Level::Debug => tracing::debug!(target: LOG_TARGET, plugin, digest, "{message}"),
            Level::Info => tracing::info!(target: LOG_TARGET, plugin, digest, "{message}"),
            Level::Warn => tracing::warn!(target: LOG_TARGET, plugin, digest, "{message}"),
            Level::Error => tracing::error!(target: LOG_TARGET, plugin, digest, "{message}"),
        }
    }
}

impl bindings::kubetask::plugin::types::Host for CallState {}

/// Loads and runs plugins. One per process: it owns the wasmtime `Engine`, the compiled-plugin
/// cache and the clock that enforces deadlines.
pub struct PluginHost {
    engine: Engine,
    linker: Linker<CallState>,
    limits: Limits,
    compiled: Mutex<HashMap<String, Arc<Compiled>>>,
    /// Compiled mapper plugins, by digest.
    mappers: Mutex<HashMap<String, Arc<mapper_bindings::EventMapperPre<CallState>>>>,
    /// One lock per digest being compiled, so that concurrent loads of the same component
    /// compile it once (the others wait for that compilation instead of repeating it).
    compiling: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Compiled components on disk, if enabled.
    artifacts: Option<ArtifactCache>,
    _ticker: EpochTicker,
}

impl PluginHost {
    /// A host whose plugin calls are bounded by `limits`.
    pub fn new(limits: Limits) -> anyhow::Result<Self> {
        let engine = Engine::new(&engine_config(&limits))
            .map_err(|error| anyhow::anyhow!("cannot start wasmtime: {error}"))?;
        let mut linker = Linker::new(&engine);
        bindings::Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(|error| anyhow::anyhow!("cannot link the host functions: {error}"))?;
        let ticker = EpochTicker::start(engine.clone())
            .map_err(|error| anyhow::anyhow!("cannot start the plugin deadline clock: {error}"))?;
        Ok(Self {
            engine,
            linker,
            limits,
            compiled: Mutex::new(HashMap::new()),
            mappers: Mutex::new(HashMap::new()),
            compiling: Mutex::new(HashMap::new()),
            artifacts: None,
            _ticker: ticker,
        })
    }

    /// Keeps compiled components in `cache` too, and loads them from there before compiling.
    pub fn with_artifact_cache(mut self, cache: ArtifactCache) -> Self {
        self.artifacts = Some(cache);
        self
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// How many distinct components are compiled and cached.
    pub fn cached_components(&self) -> usize {
        self.compiled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Drops the compiled component with `digest` from the cache (a plugin version no longer
    /// installed). Plugins already loaded from it keep working; loading it again compiles it.
    pub fn evict(&self, digest: &str) {
        self.compiled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(digest);
        self.mappers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(digest);
        self.compiling
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(digest);
    }

    /// Compiles `component` (or reuses the compilation of identical bytes) and checks that it
    /// implements the plugin world and imports nothing else.
    pub fn load(&self, name: &str, component: &[u8]) -> Result<Plugin, PluginError> {
        self.load_with(name, component, None)
    }

    /// Like [`Self::load`] for a component built into this binary with its precompiled form
    /// (made by [`super::precompiled::precompile`]): loads that instead of compiling when it
    /// was made from `component` and this engine accepts it, else compiles.
    pub fn load_builtin(
        &self,
        name: &str,
        component: &[u8],
        precompiled: &'static [u8],
    ) -> Result<Plugin, PluginError> {
        self.load_with(name, component, Some(precompiled))
    }

    fn load_with(
        &self,
        name: &str,
        component: &[u8],
        precompiled: Option<&'static [u8]>,
    ) -> Result<Plugin, PluginError> {
        let digest = digest_of(component);
        let flight = self
            .compiling
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(digest.clone())
            .or_default()
            .clone();
        let _compiling = flight.lock().unwrap_or_else(PoisonError::into_inner);
        let cached = self
            .compiled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&digest)
            .cloned();
        let loaded = match cached {
            Some(loaded) => loaded,
            None => {
                let compiled = self.component(name, &digest, component, precompiled)?;
                let wrong_world = |error: wasmtime::Error| PluginError::WrongWorld {
                    name: name.to_owned(),
                    digest: short(&digest),
                    message: format!("{error:#}"),
                };
                let component_type = compiled.component_type();
                let instance_pre = self
                    .linker
                    .instantiate_pre(&compiled)
                    .map_err(wrong_world)?;
                let exports_network = component_type
                    .exports(&self.engine)
                    .any(|(export, _)| export.starts_with(NETWORK_EXPORT));
                let network = exports_network
                    .then(|| network_bindings::GuestIndices::new(&instance_pre))
                    .transpose()
                    .map_err(wrong_world)?;
                let pre = bindings::PluginPre::new(instance_pre).map_err(wrong_world)?;
                let loaded = Arc::new(Compiled { pre, network });
                self.compiled
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(digest.clone(), loaded.clone());
                loaded
            }
        };
        Ok(Plugin {
            name: name.to_owned(),
            digest,
            compiled: loaded,
        })
    }

    /// `component` compiled (or its precompiled form, or the artifact cache's), checked to
    /// import nothing but our own interfaces.
    fn component(
        &self,
        name: &str,
        digest: &str,
        component: &[u8],
        precompiled: Option<&'static [u8]>,
    ) -> Result<Component, PluginError> {
        let built_in = precompiled
            .and_then(|bytes| super::precompiled::load(&self.engine, name, digest, bytes));
        let stored = match built_in {
            Some(compiled) => {
                tracing::debug!(
                    plugin = name,
                    digest = short(digest),
                    "plugin loaded precompiled"
                );
                Some(compiled)
            }
            None => self.artifacts.as_ref().and_then(|cache| {
                let compiled = cache.load(&self.engine, digest)?;
                tracing::debug!(
                    plugin = name,
                    digest = short(digest),
                    "plugin loaded from the artifact cache"
                );
                Some(compiled)
            }),
        };
        let compiled = match stored {
            Some(compiled) => compiled,
            None => {
                let started = std::time::Instant::now();
                let compiled =
                    Component::from_binary(&self.engine, component).map_err(|error| {
                        PluginError::Compile {
                            name: name.to_owned(),
                            digest: short(digest),
                            message: format!("{error:#}"),
                        }
                    })?;
                tracing::debug!(
                    plugin = name,
                    digest = short(digest),
                    milliseconds = started.elapsed().as_millis() as u64,
                    "plugin compiled"
                );
                if let Some(cache) = &self.artifacts {
                    cache.store(&self.engine, digest, &compiled);
                }
                compiled
            }
        };
        let component_type = compiled.component_type();
        let foreign: Vec<&str> = component_type
            .imports(&self.engine)
            .map(|(import, _)| import)
            .filter(|import| {
                !ALLOWED_IMPORTS
                    .iter()
                    .any(|allowed| import.starts_with(allowed))
            })
            .collect();
        if !foreign.is_empty() {
            return Err(PluginError::WrongWorld {
                name: name.to_owned(),
                digest: short(digest),
                message: format!(
                    "it imports {}, which the sandbox does not provide",
                    foreign.join(", ")
                ),
            });
        }
        Ok(compiled)
    }

    /// Compiles a mapper plugin (or reuses the compilation of identical bytes) and checks that
    /// it implements the `event-mapper` world and imports nothing else.
    pub fn load_mapper(&self, name: &str, component: &[u8]) -> Result<Mapper, PluginError> {
        let digest = digest_of(component);
        let cached = self
            .mappers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&digest)
            .cloned();
        let pre = match cached {
            Some(pre) => pre,
            None => {
                let compiled = self.component(name, &digest, component, None)?;
                let wrong_world = |error: wasmtime::Error| PluginError::WrongWorld {
                    name: name.to_owned(),
                    digest: short(&digest),
                    message: format!("not a mapper plugin (the event-mapper world): {error:#}"),
                };
                let instance_pre = self
                    .linker
                    .instantiate_pre(&compiled)
                    .map_err(wrong_world)?;
                let pre = Arc::new(
                    mapper_bindings::EventMapperPre::new(instance_pre).map_err(wrong_world)?,
                );
                self.mappers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(digest.clone(), pre.clone());
                pre
            }
        };
        Ok(Mapper {
            name: name.to_owned(),
            digest,
            pre,
        })
    }

    /// Runs `mapper` once on `request` in a fresh instance, under the limits: its outcome, or
    /// why there is none (its own error is [`PluginError::Internal`]).
    pub fn map_event(
        &self,
        mapper: &Mapper,
        request: &mapper_bindings::MapRequest,
    ) -> Result<mapper_bindings::Outcome, PluginError> {
        let mut store = self.store(mapper);
        let instance = match mapper.pre.instantiate(&mut store) {
            Ok(instance) => instance,
            Err(error) => return Err(self.instantiate_error(error, &store, mapper)),
        };
        let result = instance
            .kubetask_plugin_mapper()
            .call_map_event(&mut store, request);
        match result {
            Ok(Ok(outcome)) => {
                let size = match &outcome {
                    mapper_bindings::Outcome::Task(task) => task.len(),
                    mapper_bindings::Outcome::Skip(skip) => skip.reason.len() + skip.message.len(),
                };
                self.check_size(mapper, size)?;
                Ok(outcome)
            }
            Ok(Err(message)) => Err(PluginError::Internal {
                name: mapper.name.clone(),
                digest: mapper.short_digest(),
                message,
            }),
            Err(error) => Err(self.call_error(error, &store, mapper)),
        }
    }

    /// The names `plugin` imports and exports (for `kubetask plugin check`).
    pub fn interface(&self, plugin: &Plugin) -> (Vec<String>, Vec<String>) {
        let component_type = plugin
            .compiled
            .pre
            .instance_pre()
            .component()
            .component_type();
        let imports = component_type
            .imports(&self.engine)
            .map(|(name, _)| name.to_owned());
        let exports = component_type
            .exports(&self.engine)
            .map(|(name, _)| name.to_owned());
        (imports.collect(), exports.collect())
    }

    /// A fresh store for one call of `plugin`, under the limits.
    fn store(&self, plugin: &impl Named) -> Store<CallState> {
        let state = CallState {
            limiter: MemoryLimiter {
                max_bytes: self.limits.memory_bytes,
                exceeded: false,
            },
            plugin: plugin.name().to_owned(),
            digest: plugin.digest().to_owned(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(deadline_ticks(self.limits.deadline));
        store
    }

    /// Runs `plugin` once on `request` in a fresh instance.
    pub fn render(&self, plugin: &Plugin, request: &RenderRequest) -> Result<Draft, PluginError> {
        let mut store = self.store(plugin);
        let instance = match plugin.compiled.pre.instantiate(&mut store) {
            Ok(instance) => instance,
            Err(error) => return Err(self.instantiate_error(error, &store, plugin)),
        };
        let result = instance.call_render(&mut store, request);
        match result {
            Ok(Ok(draft)) => {
                let size = draft.job.len()
                    + draft.config_maps.iter().map(String::len).sum::<usize>()
                    + draft.warnings.iter().map(String::len).sum::<usize>();
                self.check_size(plugin, size)?;
                Ok(draft)
            }
            Ok(Err(error)) => Err(refusal(plugin, error)),
            Err(error) => Err(self.call_error(error, &store, plugin)),
        }
    }

    /// Runs the network stage of `plugin` once on `request` in a fresh instance: the policies
    /// it returns, as JSON, or `None` when the plugin has no network stage.
    pub fn render_network(
        &self,
        plugin: &Plugin,
        request: &network_bindings::NetworkRequest,
    ) -> Result<Option<Vec<String>>, PluginError> {
        let Some(indices) = &plugin.compiled.network else {
            return Ok(None);
        };
        let mut store = self.store(plugin);
        let instance = match plugin.compiled.pre.instance_pre().instantiate(&mut store) {
            Ok(instance) => instance,
            Err(error) => return Err(self.instantiate_error(error, &store, plugin)),
        };
        let result = indices
            .load(&mut store, &instance)
            .and_then(|guest| guest.call_render_network(&mut store, request));
        match result {
            Ok(Ok(policies)) => {
                self.check_size(plugin, policies.iter().map(String::len).sum())?;
                Ok(Some(policies))
            }
            Ok(Err(error)) => Err(refusal(plugin, error)),
            Err(error) => Err(self.call_error(error, &store, plugin)),
        }
    }

    /// Why a call failed: a limit, a trap, or else results that break the canonical ABI (a
    /// bad pointer, invalid UTF-8, ...), which is a call that fails without a trap.
    fn call_error(
        &self,
        error: wasmtime::Error,
        store: &Store<CallState>,
        plugin: &impl Named,
    ) -> PluginError {
        let (name, digest) = (plugin.name().to_owned(), plugin.short_digest());
        self.classify(error, store, plugin, |message| PluginError::InvalidOutput {
            name,
            digest,
            message,
        })
    }

    fn instantiate_error(
        &self,
        error: wasmtime::Error,
        store: &Store<CallState>,
        plugin: &impl Named,
    ) -> PluginError {
        let (name, digest) = (plugin.name().to_owned(), plugin.short_digest());
        self.classify(error, store, plugin, |message| PluginError::Instantiate {
            name,
            digest,
            message,
        })
    }

    fn check_size(&self, plugin: &impl Named, size: usize) -> Result<(), PluginError> {
        if size > self.limits.output_bytes {
            return Err(PluginError::InvalidOutput {
                name: plugin.name().to_owned(),
                digest: plugin.short_digest(),
                message: format!(
                    "{size} bytes exceed the output limit of {} bytes",
                    self.limits.output_bytes
                ),
            });
        }
        Ok(())
    }

    /// Names what stopped a plugin: its memory limit, its deadline, a trap, or else `other`.
    fn classify(
        &self,
        error: wasmtime::Error,
        store: &Store<CallState>,
        plugin: &impl Named,
        other: impl FnOnce(String) -> PluginError,
    ) -> PluginError {
        let (name, digest) = (plugin.name().to_owned(), plugin.short_digest());
        tracing::debug!(plugin = name, digest, "plugin failed: {error:?}");
        if store.data().limiter.exceeded {
            return PluginError::Memory {
                name,
                digest,
                limit_bytes: self.limits.memory_bytes,
            };
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => PluginError::Timeout {
                name,
                digest,
                deadline: self.limits.deadline,
            },
            // The trap itself ("wasm trap: ..."), without the wasm backtrace.
            Some(trap) => PluginError::Trap {
                name,
                digest,
                message: trap.to_string(),
            },
            None => other(format!("{error:#}")),
        }
    }
}

/// What a plugin's own error says.
fn refusal(plugin: &Plugin, error: bindings::RenderError) -> PluginError {
    let (name, digest) = (plugin.name().to_owned(), plugin.short_digest());
    match error {
        bindings::RenderError::InvalidInput(field) => PluginError::InvalidInput {
            name,
            object: field.object,
            field: field.field,
            message: field.message,
        },
        bindings::RenderError::Denied(reason) => PluginError::Denied {
            name,
            digest,
            reason,
        },
        bindings::RenderError::Internal(message) => PluginError::Internal {
            name,
            digest,
            message,
        },
    }
}

/// Deadline in epoch ticks, rounded up, plus one because the current tick may be almost over.
fn deadline_ticks(deadline: Duration) -> u64 {
    let ticks = deadline.as_nanos().div_ceil(EPOCH_TICK.as_nanos());
    u64::try_from(ticks).unwrap_or(u64::MAX - 1) + 1
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = thread::Builder::new()
            .name("plugin-deadlines".to_owned())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    thread::park_timeout(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_round_up_to_whole_ticks() {
        assert_eq!(deadline_ticks(Duration::from_millis(5)), 2);
        assert_eq!(deadline_ticks(Duration::from_millis(6)), 3);
        assert_eq!(deadline_ticks(Duration::ZERO), 1);
    }

    #[test]
    fn digests_are_sha256_hex() {
        assert_eq!(
            digest_of(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
