//! Names of the objects a Task turns into.

use sha2::{Digest, Sha256};

/// Longest name a Job may have: the Job name becomes a pod label value (≤ 63 characters).
pub const MAX_JOB_NAME: usize = 63;
/// Length of the hash suffix that keeps truncated names unique.
const HASH_LEN: usize = 10;

/// The Job name of a Task: the Task name when it fits in 63 characters, else a prefix of it
/// plus `-` and a hash of the full name, so distinct Tasks never share a Job.
pub fn job_name(task_name: &str) -> String {
    if task_name.len() <= MAX_JOB_NAME {
        return task_name.to_owned();
    }
    let digest = Sha256::digest(task_name.as_bytes());
    let hash: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    // Cut on a character boundary: names are ASCII once validated, but this must not panic
    // on one that is not.
    let mut cut = MAX_JOB_NAME - HASH_LEN - 1;
    while !task_name.is_char_boundary(cut) {
        cut -= 1;
    }
    // A name segment must end with an alphanumeric character.
    let prefix = task_name[..cut].trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    format!("{prefix}-{}", &hash[..HASH_LEN])
}

/// Name of the ConfigMap that holds a Task's inline contexts.
pub fn contexts_config_map_name(job_name: &str) -> String {
    format!("{job_name}-contexts")
}

/// The label selector of a Job's pods (the label the Job controller sets on them).
pub fn job_pods_selector(job_name: &str) -> String {
    format!("batch.kubernetes.io/job-name={job_name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_kept() {
        assert_eq!(job_name("fix-bug"), "fix-bug");
        let exactly_63 = "a".repeat(63);
        assert_eq!(job_name(&exactly_63), exactly_63);
    }

    #[test]
    fn long_names_are_truncated_with_a_stable_hash() {
        let long = format!("{}-x", "b".repeat(80));
        let name = job_name(&long);
        assert!(name.len() <= MAX_JOB_NAME, "{name}");
        assert!(name.starts_with(&"b".repeat(52)), "{name}");
        assert_eq!(name, job_name(&long), "deterministic");
        let other = format!("{}-y", "b".repeat(80));
        assert_ne!(name, job_name(&other), "same prefix, different hash");
    }

    #[test]
    fn truncation_never_leaves_a_dangling_separator() {
        let long = format!("{}.-{}", "c".repeat(50), "d".repeat(40));
        let name = job_name(&long);
        let prefix = name
            .rsplit_once('-')
            .map(|(prefix, _)| prefix)
            .unwrap_or_default();
        assert_eq!(prefix, "c".repeat(50));
    }

    #[test]
    fn long_non_ascii_names_are_cut_between_characters() {
        // Byte 52, where the cut falls, is inside the 26th 'é'.
        let name = job_name(&format!("a{}", "é".repeat(40)));
        assert!(name.len() <= MAX_JOB_NAME, "{name}");
        assert!(name.starts_with("a-"), "{name}");
    }

    #[test]
    fn config_map_name_derives_from_the_job() {
        assert_eq!(contexts_config_map_name("fix-bug"), "fix-bug-contexts");
    }
}
