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

/// Runs `kubetask events`: the receiver, the poller and the reporter, until SIGTERM.
pub async fn run(options: receiver::Options) -> anyhow::Result<()> {
    let client = crate::client::connect(options.kubeconfig.as_deref(), None).await?;
    let receiver = std::sync::Arc::new(receiver::Receiver::new(
        client.clone(),
        options.namespace.clone(),
        options.max_body,
    ));
    tokio::spawn(reporter::run(client.clone(), options.namespace.clone()));
    tokio::spawn(poller::run(
        receiver.clone(),
        client,
        options.namespace.clone(),
    ));
    receiver::serve_until_stopped(receiver, &options).await
}
