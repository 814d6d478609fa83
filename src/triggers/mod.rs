//! TaskTriggers (docs/triggers.md): Tasks from GitHub and GitLab events and from signed
//! webhooks. The receiver (`kubetask events`, [`receiver`]) authenticates each delivery
//! ([`github`], [`gitlab`], [`webhook`]) into an [`event`], maps it through the built-in
//! mapper ([`mapper`]) and creates the Task, which the API server de-duplicates by its name;
//! [`poller`] reads the same events from the REST APIs ([`api`]) where the provider cannot
//! reach the cluster, and keeps the triggers' conditions; [`reporter`] comments back on the
//! issue when the trigger asks for it.

pub mod api;
pub mod event;
pub mod github;
pub mod gitlab;
pub mod mapper;
pub mod mapper_plugin;
pub mod poller;
pub mod receiver;
pub mod reporter;
pub mod webhook;

/// Runs `kubetask events`: the receiver, the poller and the reporter, until SIGTERM.
pub async fn run(options: receiver::Options) -> anyhow::Result<()> {
    let client = crate::client::connect(options.kubeconfig.as_deref(), None).await?;
    let receiver = std::sync::Arc::new(receiver::Receiver::new(
        client.clone(),
        options.namespace.clone(),
        options.plugin_namespace.clone(),
        options.max_body,
    ));
    tokio::spawn(reporter::run(
        receiver.clone(),
        client.clone(),
        options.namespace.clone(),
    ));
    tokio::spawn(poller::run(
        receiver.clone(),
        client,
        options.namespace.clone(),
    ));
    receiver::serve_until_stopped(receiver, &options).await
}
