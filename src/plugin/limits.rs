//! Per-call limits of the plugin sandbox.

use std::time::Duration;

/// Bounds of one plugin call; set by controller flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most linear memory one instance may use.
    pub memory_bytes: usize,
    /// Wall-clock deadline of one call (instantiation included).
    pub deadline: Duration,
    /// Most bytes a plugin may return (Job, ConfigMaps and warnings together).
    pub output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 * 1024 * 1024,
            deadline: Duration::from_millis(500),
            output_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Enforces [`Limits::memory_bytes`] and remembers whether a plugin hit it.
pub(crate) struct MemoryLimiter {
    pub max_bytes: usize,
    pub exceeded: bool,
}

/// Tables hold function references; no plugin needs more than this many.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.exceeded = true;
            // An error (rather than `false`) traps at once, so the plugin cannot mask the failure.
            return Err(wasmtime::format_err!(
                "memory limit of {} bytes exceeded",
                self.max_bytes
            ));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
