//! The one way this program connects to a cluster: a kubeconfig file when named, the
//! kubeconfig's context when named, else what `kube` infers ($KUBECONFIG, ~/.kube/config, or
//! the in-cluster service account).

use std::path::Path;

use anyhow::Context as _;

/// The client configuration from the flags every command takes (`--kubeconfig`, `--context`).
pub async fn config(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> anyhow::Result<kube::Config> {
    let options = kube::config::KubeConfigOptions {
        context: context.map(str::to_owned),
        ..Default::default()
    };
    Ok(match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?
        }
        None if context.is_some() => kube::Config::from_kubeconfig(&options).await?,
        None => kube::Config::infer()
            .await
            .context("no kubeconfig or in-cluster configuration")?,
    })
}

/// A client built from [`config`].
pub async fn connect(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> anyhow::Result<kube::Client> {
    Ok(kube::Client::try_from(config(kubeconfig, context).await?)?)
}
