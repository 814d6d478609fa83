//! The controller's own memory: its resident size, its container's limit (cgroup v2 or v1),
//! and a warning in the log before the kernel kills it for crossing that limit.

use std::time::Duration;

/// The share of the limit above which the controller warns.
pub const WARN_AT: f64 = 0.8;
/// How often the resident size is looked at.
const EVERY: Duration = Duration::from_secs(15);
/// Least time between two warnings.
const WARN_EVERY: Duration = Duration::from_secs(600);

/// Resident set size of this process in bytes (Linux `/proc/self/status`).
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    resident_kib(&status).map(|kib| kib.saturating_mul(1024))
}

/// The `VmRSS:` line of `/proc/<pid>/status`, in KiB.
fn resident_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The memory limit of this process's cgroup, if it has one.
pub fn limit_bytes() -> Option<u64> {
    // cgroup v2: the file of the process's own cgroup, mounted at the root in a container.
    let v2 = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok();
    let v1 = || std::fs::read_to_string("/sys/fs/cgroup/memory/memory.limit_in_bytes").ok();
    v2.or_else(v1).as_deref().and_then(parse_limit)
}

/// A cgroup limit file: `max` (v2) or a number; v1 writes a huge number for "no limit".
fn parse_limit(text: &str) -> Option<u64> {
    let value: u64 = text.trim().parse().ok()?;
    (value < 1 << 60).then_some(value)
}

/// The share of `limit` that `resident` uses, when it is past [`WARN_AT`].
pub fn pressure(resident: u64, limit: Option<u64>) -> Option<f64> {
    let limit = limit.filter(|l| *l > 0)?;
    let share = resident as f64 / limit as f64;
    (share >= WARN_AT).then_some(share)
}

/// Hands the heap's free pages back to the kernel. glibc keeps what a burst of reconciles
/// freed between the objects the caches keep, so without this the resident size follows the
/// largest burst rather than what is live (about 5 KiB per finished Task instead of 2).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn release_free_memory() {
    // SAFETY: malloc_trim only walks glibc's own heap under its locks; it has no
    // preconditions and touches no memory of ours.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators (musl's in a static build) hand free pages back by themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}

/// Every 15 s: hands free heap pages back to the kernel, and past 80 % of the limit says so
/// in the log (at most every 10 minutes) with what the caches hold, before the kernel's OOM
/// killer acts.
pub async fn watch(caches: super::caches::Caches) {
    let mut last_warning: Option<tokio::time::Instant> = None;
    let mut ticks = tokio::time::interval(EVERY);
    loop {
        ticks.tick().await;
        release_free_memory();
        let Some(resident) = resident_bytes() else {
            return;
        };
        let limit = limit_bytes();
        let Some(share) = pressure(resident, limit) else {
            continue;
        };
        if last_warning.is_some_and(|at| at.elapsed() < WARN_EVERY) {
            continue;
        }
        last_warning = Some(tokio::time::Instant::now());
        let counts = caches.counts();
        tracing::warn!(
            resident_mib = resident / (1 << 20),
            limit_mib = limit.unwrap_or_default() / (1 << 20),
            percent = (share * 100.0).round(),
            tasks = counts.tasks,
            jobs = counts.jobs,
            agents = counts.agents,
            "the controller nears its memory limit: delete finished Tasks (set ttlSecondsAfterFinished, or --default-ttl-seconds-after-finished) or raise the limit (docs/operations.md, \"Sizing\")"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_statm_and_cgroup_files() {
        assert_eq!(
            resident_kib("VmHWM:\t 9000 kB\nVmRSS:\t  5120 kB\n"),
            Some(5120)
        );
        assert_eq!(resident_kib("garbage"), None);
        assert_eq!(parse_limit("268435456\n"), Some(268_435_456));
        assert_eq!(parse_limit("max\n"), None);
        assert_eq!(
            parse_limit("9223372036854771712\n"),
            None,
            "cgroup v1 unlimited"
        );
        assert!(resident_bytes().is_some_and(|b| b > 0));
    }

    #[test]
    fn warns_past_eighty_percent_of_a_limit() {
        let mib = 1 << 20;
        assert_eq!(pressure(200 * mib, Some(256 * mib)), None);
        assert!(pressure(210 * mib, Some(256 * mib)).is_some_and(|s| s > 0.8));
        assert_eq!(pressure(10_000 * mib, None), None, "no limit, no warning");
    }
}
