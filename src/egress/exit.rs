//! The exit: an HTTP CONNECT proxy that is the only way out of an agent pod (its
//! NetworkPolicy allows DNS and this). Each connection is one decision:
//!
//! 1. the request head, read within `header_timeout` and at most `max_header_bytes`;
//! 2. `CONNECT host:port` only (a plain-HTTP request is refused: only TLS passes);
//! 3. the Task, from `Proxy-Authorization: Basic <namespace>.<task>:<token>` ([`super::token`]);
//! 4. the port, then the name (exact or wildcard) or, for an IP literal, an allowed CIDR;
//! 5. the exit resolves the name itself and keeps only the addresses the Task may reach
//!    (special-use ones only inside an allowed CIDR: [`super::addresses`]);
//! 6. `200`, then the client's TLS ClientHello must name the CONNECT host ([`super::sni`]);
//! 7. the tunnel.
//!
//! Every refusal answers with a status and a one-line reason, and every decision is counted
//! and passed to the [`Audit`].

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures::future::BoxFuture;
use kubetask_api::EgressPolicy;
use kubetask_api::egress::is_host_name;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::addresses;
use super::sni;
use super::token::{TokenKey, parse_user_name};

/// What the exit knows of a Task: its uid (for its token) and its policy.
#[derive(Clone, Debug)]
pub struct Grant {
    /// `metadata.uid` of the Task.
    pub uid: String,
    /// Where it may connect.
    pub policy: EgressPolicy,
}

/// The Tasks the exit serves (in a cluster: a watch of Tasks and Agents).
pub trait Tasks: Send + Sync {
    /// The grant of the Task `namespace/name`, if it exists and is not finished.
    fn grant(&self, namespace: &str, name: &str) -> Option<Grant>;
}

/// How the exit resolves names (the system resolver in a cluster; a table in tests).
pub trait Resolve: Send + Sync {
    /// The addresses of `host`.
    fn resolve<'a>(&'a self, host: &'a str) -> BoxFuture<'a, io::Result<Vec<IpAddr>>>;
}

/// The system resolver (`getaddrinfo`, through tokio).
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str) -> BoxFuture<'a, io::Result<Vec<IpAddr>>> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host, 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// Why a connection was allowed or refused: the label of the decision's metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    /// Tunnelled.
    Allowed,
    /// No head within the header timeout (slowloris), or no ClientHello in time.
    Timeout,
    /// The head is larger than the limit.
    HeaderTooLarge,
    /// The head is not HTTP/1.
    BadRequest,
    /// A method other than CONNECT (plain HTTP).
    NotConnect,
    /// No credentials, or not a Task's.
    Unauthenticated,
    /// The port is not allowed.
    PortDenied,
    /// The name is not allowed.
    DomainDenied,
    /// An IP literal no CIDR allows.
    AddressLiteralDenied,
    /// The name resolved to addresses the Task may not reach.
    AddressDenied,
    /// The name did not resolve.
    ResolveFailed,
    /// The destination did not answer.
    ConnectFailed,
    /// The tunnel did not carry a TLS ClientHello for the CONNECT host.
    SniMismatch,
}

impl Verdict {
    /// The verdict's name (metric label, log field).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Timeout => "timeout",
            Self::HeaderTooLarge => "header_too_large",
            Self::BadRequest => "bad_request",
            Self::NotConnect => "not_connect",
            Self::Unauthenticated => "unauthenticated",
            Self::PortDenied => "port_denied",
            Self::DomainDenied => "domain_denied",
            Self::AddressLiteralDenied => "address_literal_denied",
            Self::AddressDenied => "address_denied",
            Self::ResolveFailed => "resolve_failed",
            Self::ConnectFailed => "connect_failed",
            Self::SniMismatch => "sni_mismatch",
        }
    }
}

/// One decision of the exit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The Task (`namespace`, `name`), once authenticated.
    pub task: Option<(String, String)>,
    /// The CONNECT target as asked (`host:port`), when there was one.
    pub target: Option<String>,
    /// What was decided.
    pub verdict: Verdict,
    /// Why, in words.
    pub reason: String,
}

/// Where decisions go: a metric, a log line, an Event on the Task at a bounded rate.
pub trait Audit: Send + Sync {
    /// Records one decision.
    fn record(&self, decision: &Decision);
}

/// Bytes buffered per direction of a tunnel: a thousand tunnels hold 64 MiB at most; 8 KiB
/// (tokio's default) costs three quarters of the throughput in system calls
/// (`cargo bench --bench egress`).
const TUNNEL_BUFFER: usize = 32 * 1024;

/// The exit's limits.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Longest wait for a whole request head (slowloris).
    pub header_timeout: Duration,
    /// Most bytes of a request head.
    pub max_header_bytes: usize,
    /// Longest wait for the client's ClientHello after `200`.
    pub hello_timeout: Duration,
    /// Longest wait for resolving the name and connecting to the destination.
    pub connect_timeout: Duration,
    /// Most connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 8 * 1024,
            hello_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            max_connections: 4096,
        }
    }
}

/// The exit proxy.
pub struct Exit {
    key: TokenKey,
    tasks: Arc<dyn Tasks>,
    resolver: Arc<dyn Resolve>,
    audit: Arc<dyn Audit>,
    limits: Limits,
}

/// A refusal: the status line's code and the reason sent back.
struct Refusal {
    status: u16,
    verdict: Verdict,
    reason: String,
}

fn refuse(status: u16, verdict: Verdict, reason: impl Into<String>) -> Refusal {
    Refusal {
        status,
        verdict,
        reason: reason.into(),
    }
}

/// A connection that ends without a tunnel.
struct Failure {
    refusal: Refusal,
    task: Option<(String, String)>,
    target: Option<String>,
    /// `200` was sent already: the refusal closes the tunnel without an answer.
    answered: bool,
}

/// The request head, parsed.
struct Head {
    method: String,
    target: String,
    authorization: Option<String>,
    /// Bytes read after the head (a client may send its ClientHello at once).
    rest: Vec<u8>,
}

impl Exit {
    /// An exit that checks tokens with `key`, finds Tasks in `tasks`, resolves with `resolver`.
    pub fn new(
        key: TokenKey,
        tasks: Arc<dyn Tasks>,
        resolver: Arc<dyn Resolve>,
        audit: Arc<dyn Audit>,
        limits: Limits,
    ) -> Self {
        Self {
            key,
            tasks,
            resolver,
            audit,
            limits,
        }
    }

    /// Serves connections from `listener` until the future is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> io::Result<()> {
        self.serve_until(listener, std::future::pending(), Duration::ZERO)
            .await
            .map(drop)
    }

    /// Serves connections from `listener` until `stop` resolves, then closes the listener (new
    /// connections are refused, so clients retry on another replica) and waits up to `drain`
    /// for the open tunnels to end. Returns how many were still open after it.
    pub async fn serve_until(
        self: Arc<Self>,
        listener: TcpListener,
        stop: impl std::future::Future<Output = ()>,
        drain: Duration,
    ) -> io::Result<usize> {
        let slots_total = self.limits.max_connections.max(1);
        let slots = Arc::new(Semaphore::new(slots_total));
        let mut stop = std::pin::pin!(stop);
        loop {
            let permit = tokio::select! {
                permit = slots.clone().acquire_owned() => permit,
                () = &mut stop => break,
            };
            let Ok(permit) = permit else {
                break;
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut stop => break,
            };
            let (stream, _) = match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors and the like: wait a moment, keep serving.
                Err(error) => {
                    tracing::warn!(%error, "exit: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let exit = self.clone();
            tokio::spawn(async move {
                exit.handle(stream).await;
                drop(permit);
            });
        }
        drop(listener);
        let open = |slots: &Semaphore| slots_total - slots.available_permits();
        let deadline = tokio::time::Instant::now() + drain;
        while open(&slots) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(open(&slots))
    }

    /// Serves one client connection to its end.
    pub async fn handle(&self, mut client: TcpStream) {
        let _ = client.set_nodelay(true);
        match self.open(&mut client).await {
            Ok((mut upstream, decision)) => {
                self.audit.record(&decision);
                let _ = tokio::io::copy_bidirectional_with_sizes(
                    &mut client,
                    &mut upstream,
                    TUNNEL_BUFFER,
                    TUNNEL_BUFFER,
                )
                .await;
            }
            Err(Failure {
                refusal,
                task,
                target,
                answered,
            }) => {
                self.audit.record(&Decision {
                    task,
                    target,
                    verdict: refusal.verdict,
                    reason: refusal.reason.clone(),
                });
                if !answered {
                    let _ = answer(&mut client, refusal.status, &refusal.reason).await;
                }
                let _ = client.shutdown().await;
                // Read what the client still sends (briefly, boundedly) before closing: closing
                // with unread bytes resets the connection, and the client could lose the answer.
                let mut sink = [0u8; 4096];
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    let mut drained = 0;
                    while drained < 64 * 1024 {
                        match client.read(&mut sink).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => drained += n,
                        }
                    }
                })
                .await;
            }
        }
    }

    /// Everything up to the tunnel: the upstream connection with the client's first bytes
    /// already forwarded, or the refusal (with whether `200` was already sent).
    async fn open(&self, client: &mut TcpStream) -> Result<(TcpStream, Decision), Failure> {
        let early = |refusal: Refusal, target: Option<String>| Failure {
            refusal,
            task: None,
            target,
            answered: false,
        };
        let head =
            match tokio::time::timeout(self.limits.header_timeout, self.read_head(client)).await {
                Ok(Ok(head)) => head,
                Ok(Err(refusal)) => return Err(early(refusal, None)),
                Err(_) => {
                    let refusal = refuse(
                        408,
                        Verdict::Timeout,
                        format!(
                            "no whole request head within {:?}",
                            self.limits.header_timeout
                        ),
                    );
                    return Err(early(refusal, None));
                }
            };
        let target = Some(head.target.clone());
        if !head.method.eq_ignore_ascii_case("CONNECT") {
            let refusal = refuse(
                405,
                Verdict::NotConnect,
                format!(
                    "{} is not allowed: the exit only tunnels TLS (CONNECT host:443); use https",
                    head.method
                ),
            );
            return Err(early(refusal, target));
        }
        let (namespace, name, grant) = match self.authenticate(head.authorization.as_deref()) {
            Ok(found) => found,
            Err(refusal) => return Err(early(refusal, target)),
        };
        let task = Some((namespace, name));
        let fail = |refusal: Refusal| Failure {
            refusal,
            task: task.clone(),
            target: target.clone(),
            answered: false,
        };
        let (host, port) = parse_authority(&head.target).map_err(fail)?;
        let candidates = self
            .allowed_addresses(&grant.policy, &host, port)
            .await
            .map_err(fail)?;
        let mut upstream = self.connect(&candidates, port).await.map_err(fail)?;
        let mut hello = head.rest;
        // From here the client has its 200: a refusal closes the tunnel.
        let fail = |refusal: Refusal| Failure {
            refusal,
            task: task.clone(),
            target: target.clone(),
            answered: true,
        };
        client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .map_err(|e| fail(refuse(0, Verdict::ConnectFailed, e.to_string())))?;
        let server_name = tokio::time::timeout(
            self.limits.hello_timeout,
            sni::read_server_name(client, &mut hello),
        )
        .await
        .map_err(|_| {
            fail(refuse(
                0,
                Verdict::Timeout,
                format!("no TLS ClientHello within {:?}", self.limits.hello_timeout),
            ))
        })?
        .map_err(|e| fail(refuse(0, Verdict::SniMismatch, e.to_string())))?;
        check_server_name(&grant.policy, &host, server_name.as_deref()).map_err(fail)?;
        upstream
            .write_all(&hello)
            .await
            .map_err(|e| fail(refuse(0, Verdict::ConnectFailed, e.to_string())))?;
        Ok((
            upstream,
            Decision {
                task,
                target,
                verdict: Verdict::Allowed,
                reason: format!("{host}:{port} allowed"),
            },
        ))
    }

    async fn read_head(&self, client: &mut TcpStream) -> Result<Head, Refusal> {
        let max = self.limits.max_header_bytes;
        let mut buffer = Vec::with_capacity(1024);
        let end = loop {
            if let Some(end) = find_head_end(&buffer) {
                break end;
            }
            if buffer.len() >= max {
                return Err(refuse(
                    431,
                    Verdict::HeaderTooLarge,
                    format!("request head larger than {max} bytes"),
                ));
            }
            let mut chunk = [0u8; 2048];
            let want = chunk.len().min(max + 4 - buffer.len());
            let n = client.read(&mut chunk[..want]).await.map_err(|e| {
                refuse(
                    400,
                    Verdict::BadRequest,
                    format!("reading the request: {e}"),
                )
            })?;
            if n == 0 {
                return Err(refuse(
                    400,
                    Verdict::BadRequest,
                    "the client closed before a whole request head",
                ));
            }
            buffer.extend_from_slice(&chunk[..n]);
        };
        if end > max {
            return Err(refuse(
                431,
                Verdict::HeaderTooLarge,
                format!("request head larger than {max} bytes"),
            ));
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buffer[..end]) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => {
                return Err(refuse(400, Verdict::BadRequest, "incomplete request head"));
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(refuse(
                    431,
                    Verdict::HeaderTooLarge,
                    "more than 32 header fields",
                ));
            }
            Err(e) => {
                return Err(refuse(
                    400,
                    Verdict::BadRequest,
                    format!("not an HTTP/1 request: {e}"),
                ));
            }
        }
        let authorization = request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("proxy-authorization"))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::to_owned);
        Ok(Head {
            method: request.method.unwrap_or_default().to_owned(),
            target: request.path.unwrap_or_default().to_owned(),
            authorization,
            rest: buffer[end..].to_vec(),
        })
    }

    fn authenticate(&self, header: Option<&str>) -> Result<(String, String, Grant), Refusal> {
        let unauthenticated = |reason: &str| refuse(407, Verdict::Unauthenticated, reason);
        let Some(header) = header else {
            return Err(unauthenticated(
                "no Proxy-Authorization: use the proxy URL the controller set (HTTPS_PROXY)",
            ));
        };
        let (scheme, credentials) = header.trim().split_once(' ').unwrap_or((header, ""));
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(unauthenticated("Proxy-Authorization is not Basic"));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credentials.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| unauthenticated("Proxy-Authorization is not base64 of user:token"))?;
        let (user, token) = decoded
            .split_once(':')
            .ok_or_else(|| unauthenticated("Proxy-Authorization is not user:token"))?;
        let (namespace, name) = parse_user_name(user)
            .ok_or_else(|| unauthenticated("the user name is not <namespace>.<task>"))?;
        // The same answer whether the Task is unknown or the token wrong.
        let denied = || unauthenticated(&format!("not a valid token of Task {namespace}/{name}"));
        let grant = self.tasks.grant(namespace, name).ok_or_else(denied)?;
        if !self.key.verify(namespace, name, &grant.uid, token) {
            return Err(denied());
        }
        Ok((namespace.to_owned(), name.to_owned(), grant))
    }

    /// The addresses the exit may connect to for `host:port`, or why none.
    async fn allowed_addresses(
        &self,
        policy: &EgressPolicy,
        host: &Host,
        port: u16,
    ) -> Result<Vec<IpAddr>, Refusal> {
        // The workspace's repository and pull request API are reachable in every mode (their
        // addresses are still checked).
        let repository =
            matches!(host, Host::Name(name) if policy.is_workspace_endpoint(name, port));
        if policy.mode == kubetask_api::EgressMode::Deny && !repository {
            return Err(refuse(
                403,
                Verdict::DomainDenied,
                "the Task's egress mode is Deny: no connection leaves its pod",
            ));
        }
        if !policy.allows_port(port) && !repository {
            return Err(refuse(
                403,
                Verdict::PortDenied,
                format!("port {port} is not in the Task's egress ports"),
            ));
        }
        match host {
            Host::Ip(ip) => {
                let by_cidr = policy.cidr_allows(*ip);
                let open_public = policy.mode == kubetask_api::EgressMode::Open
                    && addresses::special_use(*ip).is_none();
                if by_cidr || open_public {
                    Ok(vec![*ip])
                } else {
                    Err(refuse(
                        403,
                        Verdict::AddressLiteralDenied,
                        format!(
                            "{ip} is an IP address no allowedCIDRs entry holds: connect by name, or list its range"
                        ),
                    ))
                }
            }
            Host::Name(name) => {
                if !policy.allows_name(name) && !repository {
                    return Err(refuse(
                        403,
                        Verdict::DomainDenied,
                        format!(
                            "{name} is not allowed by the Task's egress (mode {})",
                            policy.mode.as_str()
                        ),
                    ));
                }
                let resolved =
                    tokio::time::timeout(self.limits.connect_timeout, self.resolver.resolve(name))
                        .await
                        .map_err(|_| {
                            refuse(
                                504,
                                Verdict::ResolveFailed,
                                format!("resolving {name} timed out"),
                            )
                        })?
                        .map_err(|e| {
                            refuse(
                                502,
                                Verdict::ResolveFailed,
                                format!("resolving {name}: {e}"),
                            )
                        })?;
                let mut allowed = Vec::new();
                let mut refused = None;
                for ip in resolved {
                    match addresses::permitted(ip, policy) {
                        Ok(()) => allowed.push(ip),
                        Err(reason) => refused = refused.or(Some((ip, reason))),
                    }
                }
                match (allowed.is_empty(), refused) {
                    (false, _) => Ok(allowed),
                    (true, Some((ip, reason))) => Err(refuse(
                        403,
                        Verdict::AddressDenied,
                        format!(
                            "{name} resolves to {ip}, {reason}, which no allowedCIDRs entry holds"
                        ),
                    )),
                    (true, None) => Err(refuse(
                        502,
                        Verdict::ResolveFailed,
                        format!("{name} has no address"),
                    )),
                }
            }
        }
    }

    async fn connect(&self, candidates: &[IpAddr], port: u16) -> Result<TcpStream, Refusal> {
        let mut last = String::from("no address");
        for ip in candidates {
            let addr = SocketAddr::new(*ip, port);
            match tokio::time::timeout(self.limits.connect_timeout, TcpStream::connect(addr)).await
            {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Ok(Err(e)) => last = format!("{addr}: {e}"),
                Err(_) => last = format!("{addr}: timed out"),
            }
        }
        Err(refuse(
            502,
            Verdict::ConnectFailed,
            format!("cannot connect: {last}"),
        ))
    }
}

/// A CONNECT target's host.
#[derive(Debug, PartialEq, Eq)]
enum Host {
    Name(String),
    Ip(IpAddr),
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Name(name) => f.write_str(name),
            Self::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// `host:port` of a CONNECT request: a name (lower-cased, without a trailing dot), an IPv4
/// address or a bracketed IPv6 one, and a port.
fn parse_authority(target: &str) -> Result<(Host, u16), Refusal> {
    let bad = || {
        refuse(
            400,
            Verdict::BadRequest,
            format!("CONNECT target {target:?} is not host:port"),
        )
    };
    let (host, port) = target.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(bad)?;
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let ip: IpAddr = v6.parse().map_err(|_| bad())?;
        return Ok((Host::Ip(ip), port));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok((Host::Ip(ip), port));
    }
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    // Numeric forms getaddrinfo would read as addresses (`2130706433`, `0x7f.1`) are not names.
    if !is_host_name(&name) || name.split('.').any(|l| l.starts_with("0x")) {
        return Err(refuse(
            400,
            Verdict::BadRequest,
            format!("CONNECT target {target:?} is not a host name or IP address"),
        ));
    }
    Ok((Host::Name(name), port))
}

/// The ClientHello's server name must be the CONNECT host; a tunnel to an IP literal may send
/// none (clients send none for addresses) or an allowed name.
fn check_server_name(
    policy: &EgressPolicy,
    host: &Host,
    server_name: Option<&str>,
) -> Result<(), Refusal> {
    let server_name = server_name.map(|s| s.trim_end_matches('.').to_ascii_lowercase());
    let ok = match (host, server_name.as_deref()) {
        (Host::Name(name), Some(sni)) => sni == name,
        (Host::Name(_), None) => false,
        (Host::Ip(_), None) => true,
        (Host::Ip(_), Some(sni)) => policy.allows_name(sni),
    };
    if ok {
        Ok(())
    } else {
        Err(refuse(
            0,
            Verdict::SniMismatch,
            format!(
                "the TLS ClientHello asks for {} in a tunnel to {host}",
                server_name.as_deref().unwrap_or("no server name")
            ),
        ))
    }
}

/// The end of the head (`\r\n\r\n`), as an offset past it.
fn find_head_end(buffer: &[u8]) -> Option<usize> {
    buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

async fn answer(client: &mut TcpStream, status: u16, reason: &str) -> io::Result<()> {
    let phrase = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    };
    let body = format!("kubetask egress: {reason}\n");
    let challenge = if status == 407 {
        "Proxy-Authenticate: Basic realm=\"kubetask-egress\"\r\n"
    } else {
        ""
    };
    let response = format!(
        "HTTP/1.1 {status} {phrase}\r\n{challenge}Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(response.as_bytes()).await
}

#[cfg(test)]
mod tests;
