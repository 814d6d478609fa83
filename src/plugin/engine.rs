//! The wasmtime configuration every plugin is compiled and run with: one place for the host
//! and for the ahead-of-time compilation of the built-in plugin.

use wasmtime::{Config, Enabled, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::Limits;

/// Memory of a pooled slot kept resident between instances (see `PluginHost::new`).
const KEEP_RESIDENT_BYTES: usize = 2 * 1024 * 1024;
/// Instances that may exist at once (bounds the pooling allocator's reservation).
const MAX_CONCURRENT_INSTANCES: u32 = 256;

/// The engine configuration plugins are compiled and run with (also what
/// [`super::precompiled`] compiles the built-in plugin with, minus the host's CPU features).
pub(super) fn engine_config(limits: &Limits) -> Config {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(MAX_CONCURRENT_INSTANCES)
        .total_core_instances(MAX_CONCURRENT_INSTANCES * 4)
        .total_memories(MAX_CONCURRENT_INSTANCES)
        .total_tables(MAX_CONCURRENT_INSTANCES * 4)
        .max_memory_size(limits.memory_bytes)
        // Reset reused slots by rewriting only the pages an instance dirtied (found with
        // the PAGEMAP_SCAN ioctl where the kernel has it) instead of dropping them with
        // madvise: each fresh instance would otherwise page-fault its whole heap back in.
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(KEEP_RESIDENT_BYTES)
        .pagemap_scan(Enabled::Auto);
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}
