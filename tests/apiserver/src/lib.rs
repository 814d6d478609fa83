//! A Kubernetes API server on loopback for KubeTask's integration and end-to-end tests.
//!
//! It speaks the real wire protocol (JSON, `metav1.Status` errors, resourceVersions, chunked
//! watch streams with bookmarks), so `kube::Client`, kube-runtime controllers and `kubectl`
//! work against it unchanged. Start one with [`TestApiServer::start`]; it runs on its own
//! threads and stops when dropped. See `README.md` beside this crate for what it covers.

mod age;
mod apply;
mod discovery;
mod error;
mod events;
mod faults;
pub mod forge;
mod gc;
pub mod git_http;
mod http1;
mod jobsim;
mod kinds;
mod meta;
pub mod model_api;
mod namespaces;
mod network_policy;
mod openapi;
mod patch;
mod pod_failure_policy;
mod printers;
mod protobuf;
mod rbac;
mod registry;
mod selector;
mod server;
mod state;
mod table;
mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

pub use error::{ApiError, Cause, Details};
pub use faults::{Fault, FaultAction, RequestRecord};
pub use jobsim::{JobSimulator, OUTCOME_LABEL, OutcomeFn, Script, Step, outcome_from_label};
pub use kubetask_validation::metadata::MAX_ANNOTATIONS_BYTES;
pub use rbac::{Attributes, Decision};
pub use server::MAX_REQUEST_BODY_BYTES;
use server::{Settings, Shared, lock};
pub use state::Admission;

/// The token written to the kubeconfig, mapped to the user `admin`.
pub const DEFAULT_TOKEN: &str = "kubetask-test-token";

/// The PEM of the CA that signed the server's certificate.
pub fn test_ca_pem() -> &'static str {
    tls::CA_PEM
}

/// How to start the server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Loopback port; 0 picks a free one.
    pub port: u16,
    /// Bearer token → user name; requests without a known token get 401. Empty: no
    /// authentication.
    pub tokens: HashMap<String, String>,
    /// The token the generated kubeconfig uses.
    pub kubeconfig_token: String,
    /// Play the Job controller (off by default).
    pub job_simulator: Option<JobSimulator>,
    /// How often watches that allow bookmarks get one.
    pub bookmark_interval: Duration,
    /// How many events the watch history keeps; resuming from older is 410 Expired.
    pub history_limit: usize,
    /// Seed for uids, generated names and fault probabilities.
    pub seed: u64,
    /// Where to write the kubeconfig; a temporary directory when `None`.
    pub kubeconfig_path: Option<PathBuf>,
    /// Serve HTTPS with the test certificate in `tls/` (kubectl sends bearer tokens only
    /// over HTTPS). Plain HTTP when false.
    pub tls: bool,
    /// RBAC, OwnerReferencesPermissionEnforcement and asynchronous garbage collection; all
    /// off by default, [`Config::hardened`] turns them on.
    pub admission: Admission,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            port: 0,
            tokens: HashMap::from([(DEFAULT_TOKEN.to_owned(), "admin".to_owned())]),
            kubeconfig_token: DEFAULT_TOKEN.to_owned(),
            job_simulator: None,
            bookmark_interval: Duration::from_secs(1),
            history_limit: 100_000,
            seed: 0x6b75_6265_7461_736b,
            kubeconfig_path: None,
            tls: true,
            admission: Admission::default(),
        }
    }
}

impl Config {
    /// Turns on the Job simulator.
    pub fn with_job_simulator(mut self, simulator: JobSimulator) -> Self {
        self.job_simulator = Some(simulator);
        self
    }

    /// Behaves like a hardened cluster: every user but the kubeconfig's `admin` is
    /// authorized by RBAC (from the Roles and bindings stored in the server), the
    /// OwnerReferencesPermissionEnforcement admission plugin is on, and garbage collection is
    /// asynchronous.
    pub fn hardened(mut self) -> Self {
        self.admission = Admission {
            rbac: true,
            superusers: vec!["admin".to_owned()],
            owner_references: true,
            async_gc: true,
        };
        self
    }

    /// Adds a user with its own bearer token.
    pub fn with_user(mut self, token: &str, user: &str) -> Self {
        self.tokens.insert(token.to_owned(), user.to_owned());
        self
    }
}

/// A running server. Dropping it stops the server and removes its temporary kubeconfig.
pub struct TestApiServer {
    address: SocketAddr,
    tls: bool,
    kubeconfig: PathBuf,
    token: String,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestApiServer {
    /// Binds `127.0.0.1:<port>`, writes a kubeconfig and starts serving on a private
    /// runtime (two worker threads).
    pub fn start(config: Config) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", config.port))
            .context("binding the loopback port")?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let (dir, kubeconfig) = match &config.kubeconfig_path {
            Some(path) => (None, path.clone()),
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("kubetask-apiserver-")
                    .tempdir()?;
                let path = dir.path().join("kubeconfig");
                (Some(dir), path)
            }
        };
        let tls = if config.tls {
            Some(tls::acceptor()?)
        } else {
            None
        };
        std::fs::write(
            &kubeconfig,
            kubeconfig_yaml(address, &config.kubeconfig_token, config.tls),
        )
        .with_context(|| format!("writing {}", kubeconfig.display()))?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut state = state::State::new(config.history_limit, config.seed);
        state.set_admission(config.admission.clone());
        let async_gc = config.admission.async_gc;
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            faults: Mutex::new(faults::Faults::new(config.seed)),
            log: Mutex::new(Vec::new()),
            issued: Mutex::new(HashMap::new()),
            pod_logs: Mutex::new(HashMap::new()),
            settings: Settings {
                tokens: config.tokens.clone(),
                bookmark_interval: config.bookmark_interval,
                address: address.to_string(),
            },
            shutdown: shutdown_rx,
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("test-apiserver")
            .enable_all()
            .build()?;
        let served = shared.clone();
        let simulator = config.job_simulator.clone();
        let thread = std::thread::Builder::new()
            .name("test-apiserver".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(error) => {
                            tracing::error!(%error, "adopting the listener");
                            return;
                        }
                    };
                    tokio::spawn(namespaces::run(served.clone()));
                    if async_gc {
                        tokio::spawn(gc::run(served.clone()));
                    }
                    if let Some(simulator) = simulator {
                        tokio::spawn(jobsim::run(served.clone(), simulator));
                    }
                    serve(listener, served, tls).await;
                });
                runtime.shutdown_timeout(Duration::from_millis(100));
            })?;
        Ok(Self {
            address,
            tls: config.tls,
            kubeconfig,
            token: config.kubeconfig_token,
            shared,
            shutdown,
            thread: Some(thread),
            _dir: dir,
        })
    }

    /// `https://127.0.0.1:<port>` (or `http://` without TLS).
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.address
        )
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The kubeconfig pointing at this server (cluster, user with the bearer token, context).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// Writes another kubeconfig for this server that authenticates with `token` (add the
    /// token with [`Config::with_user`]); it lives as long as the server's own.
    pub fn kubeconfig_for(&self, token: &str) -> anyhow::Result<PathBuf> {
        let directory = self
            .kubeconfig
            .parent()
            .context("the kubeconfig has a directory")?;
        let safe: String = token.chars().filter(char::is_ascii_alphanumeric).collect();
        let path = directory.join(format!("kubeconfig-{safe}"));
        std::fs::write(&path, kubeconfig_yaml(self.address, token, self.tls))?;
        Ok(path)
    }

    /// The bearer token in the kubeconfig.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// A `kube::Client` built from the written kubeconfig.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// Every request served so far, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.log).clone()
    }

    /// Every authorization decision (RBAC on requests and in admission), in order.
    pub fn decisions(&self) -> Vec<Decision> {
        lock(&self.shared.state).decisions().to_vec()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        lock(&self.shared.log).clear();
    }

    /// Adds a fault rule.
    pub fn inject(&self, fault: Fault) {
        lock(&self.shared.faults).add(fault);
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Forgets the watch history: watches resuming from an earlier resourceVersion get 410.
    pub fn compact(&self) {
        lock(&self.shared.state).compact();
    }

    /// The latest resourceVersion.
    pub fn resource_version(&self) -> u64 {
        lock(&self.shared.state).resource_version()
    }

    /// Stops serving: open watches end, connections close, the port is released.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the test API server thread panicked");
        }
    }
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let mut shutdown = shared.shutdown.clone();
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                let tls = tls.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |request| server::handle(shared.clone(), request));
                    let builder = hyper::server::conn::http1::Builder::new();
                    let result = match tls {
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(stream) => builder.serve_connection(TokioIo::new(stream), service).await,
                            Err(error) => {
                                tracing::debug!(%error, "TLS handshake failed");
                                return;
                            }
                        },
                        None => builder.serve_connection(TokioIo::new(stream), service).await,
                    };
                    if let Err(error) = result {
                        tracing::debug!(%error, "connection ended");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    connections.abort_all();
}

fn kubeconfig_yaml(address: SocketAddr, token: &str, tls: bool) -> String {
    use base64::Engine as _;
    let cluster = if tls {
        let ca = base64::engine::general_purpose::STANDARD.encode(tls::CA_PEM);
        format!("server: https://{address}\n    certificate-authority-data: {ca}")
    } else {
        format!("server: http://{address}")
    };
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: kubetask-test
  cluster:
    {cluster}
users:
- name: admin
  user:
    token: {token}
contexts:
- name: kubetask-test
  context:
    cluster: kubetask-test
    user: admin
    namespace: default
current-context: kubetask-test
"
    )
}
