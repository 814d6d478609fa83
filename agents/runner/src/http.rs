//! The runner's HTTP client (GitHub's and GitLab's APIs): answers of every status returned as
//! they are (the caller reads the status), a deadline per request, proxies from the
//! environment (the egress exit's `HTTPS_PROXY`).

use std::time::Duration;

/// A client whose every request ends within 30 s.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .user_agent("kubetask-agent")
        .build()
        .new_agent()
}
