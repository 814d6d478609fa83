//! TaskTriggers (docs/triggers.md): Tasks from GitHub events. The receiver
//! (`kubetask events`, [`receiver`]) authenticates each delivery ([`github`]), maps it through
//! the built-in mapper ([`mapper`]) and creates the Task, which the API server de-duplicates
//! by its name; [`poller`] reads the same events from the REST API where GitHub cannot reach
//! the cluster; [`reporter`] comments back on the issue when the trigger asks for it.

pub mod github;
pub mod mapper;
pub mod poller;
pub mod receiver;
pub mod reporter;

/// The HTTP client of GitHub's REST API (polling, reports): answers of every status returned
/// as they are, a deadline per request, proxies from the environment.
fn github_client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(20)))
        .user_agent("kubetask-events")
        .build()
        .new_agent()
}
