//! The exit's table of allowed and refused connections, against a real listener on loopback.

use std::collections::HashMap;
use std::sync::Mutex;

use kubetask_api::egress::{Egress, EgressMode, effective};
use tokio::io::{AsyncRead, AsyncWrite};

use super::*;
use crate::egress::sni::client_hello;

const KEY: [u8; 32] = [42; 32];

struct StaticTasks(HashMap<(String, String), Grant>);

impl Tasks for StaticTasks {
    fn grant(&self, namespace: &str, name: &str) -> Option<Grant> {
        self.0
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }
}

struct TableResolver(HashMap<&'static str, Vec<IpAddr>>);

impl Resolve for TableResolver {
    fn resolve<'a>(&'a self, host: &'a str) -> BoxFuture<'a, io::Result<Vec<IpAddr>>> {
        let found = self.0.get(host).cloned();
        Box::pin(async move {
            found.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such host"))
        })
    }
}

#[derive(Default)]
struct Recorded(Mutex<Vec<Decision>>);

impl Audit for Recorded {
    fn record(&self, decision: &Decision) {
        if let Ok(mut all) = self.0.lock() {
            all.push(decision.clone());
        }
    }
}

impl Recorded {
    fn last(&self) -> Option<Decision> {
        self.0.lock().ok().and_then(|all| all.last().cloned())
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// A destination on loopback that echoes what it receives, and remembers how many bytes
/// each connection sent before closing.
struct Upstream {
    port: u16,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
}

async fn upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.ok();
    let Some(listener) = listener else {
        panic!("cannot bind loopback")
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let received = Arc::new(Mutex::new(Vec::new()));
    let record = received.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buffer = [0u8; 8192];
                while let Ok(n) = stream.read(&mut buffer).await {
                    if n == 0 {
                        break;
                    }
                    seen.extend_from_slice(&buffer[..n]);
                    if stream.write_all(&buffer[..n]).await.is_err() {
                        break;
                    }
                }
                if let Ok(mut all) = record.lock() {
                    all.push(seen);
                }
            });
        }
    });
    Upstream { port, received }
}

struct Fixture {
    addr: SocketAddr,
    audit: Arc<Recorded>,
    upstream: Upstream,
    key: TokenKey,
}

fn grant(uid: &str, egress: Egress) -> Grant {
    let policy = effective(EgressMode::Deny, Some(("Agent/a", &egress)), None);
    match policy {
        Ok(policy) => Grant {
            uid: uid.to_owned(),
            policy,
        },
        Err(e) => panic!("{e}"),
    }
}

async fn fixture(limits: Limits) -> Fixture {
    let upstream = upstream().await;
    let port = i32::from(upstream.port);
    let allow_list = |cidrs: &[&str]| Egress {
        mode: Some(EgressMode::AllowList),
        allowed_domains: vec!["api.github.com".into(), "*.example.com".into()],
        allowed_cidrs: cidrs.iter().map(|c| c.to_string()).collect(),
        ports: vec![443, port],
    };
    let mut tasks = HashMap::new();
    // The loopback range stands for the destinations' public addresses here.
    tasks.insert(
        ("team".to_owned(), "fix.bug".to_owned()),
        grant("uid-1", allow_list(&["127.0.0.0/8"])),
    );
    tasks.insert(
        ("team".to_owned(), "strict".to_owned()),
        grant("uid-2", allow_list(&[])),
    );
    tasks.insert(
        ("team".to_owned(), "denied".to_owned()),
        grant(
            "uid-3",
            Egress {
                mode: Some(EgressMode::Deny),
                ..Egress::default()
            },
        ),
    );
    // A Task allowed nothing by name, on 443 only, whose workspace is on the upstream's port.
    let mut workspace = grant(
        "uid-4",
        Egress {
            mode: Some(EgressMode::AllowList),
            allowed_cidrs: vec!["127.0.0.0/8".into()],
            ..Egress::default()
        },
    );
    let with_repository: kubetask_api::Workspace = serde_json::from_value(serde_json::json!({
        "repository": format!("https://git.example.org:{}/org/repo.git", upstream.port),
    }))
    .unwrap_or_default();
    workspace.policy = workspace.policy.with_workspace(Some(&with_repository));
    tasks.insert(("team".to_owned(), "workspace".to_owned()), workspace);
    let resolver = TableResolver(HashMap::from([
        ("git.example.org", vec![ip("127.0.0.1")]),
        ("api.github.com", vec![ip("127.0.0.1")]),
        ("a.example.com", vec![ip("127.0.0.1")]),
        ("internal.example.com", vec![ip("10.0.0.1")]),
        ("metadata.example.com", vec![ip("169.254.169.254")]),
        ("v6-metadata.example.com", vec![ip("fd00:ec2::254")]),
        ("evil.example.com", vec![ip("127.0.0.1")]),
    ]));
    let Some(key) = TokenKey::new(&KEY) else {
        panic!("key")
    };
    let audit = Arc::new(Recorded::default());
    let exit = Arc::new(Exit::new(
        key.clone(),
        Arc::new(StaticTasks(tasks)),
        Arc::new(resolver),
        audit.clone(),
        limits,
    ));
    let Ok(listener) = TcpListener::bind("127.0.0.1:0").await else {
        panic!("cannot bind loopback")
    };
    let Ok(addr) = listener.local_addr() else {
        panic!("no address")
    };
    tokio::spawn(exit.serve(listener));
    Fixture {
        addr,
        audit,
        upstream,
        key,
    }
}

impl Fixture {
    fn auth(&self, namespace: &str, name: &str, uid: &str) -> String {
        let token = self.key.token(namespace, name, uid);
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("{namespace}.{name}:{token}"));
        format!("Proxy-Authorization: Basic {basic}\r\n")
    }

    fn connect_request(&self, target: &str, auth: &str) -> String {
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{auth}\r\n")
    }
}

/// Reads the response head (up to `\r\n\r\n`) and returns its status code and the text read.
async fn response<S: AsyncRead + Unpin>(stream: &mut S) -> (u16, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while find_head_end(&head).is_none() {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // A refusal carries its reason in a short body.
    let mut body = String::new();
    if status != 200 {
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
        body = String::from_utf8_lossy(&rest).into_owned();
    }
    (status, text + &body)
}

async fn send<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) {
    let _ = stream.write_all(bytes).await;
}

/// The exit's answer to `request`, then the ClientHello for `sni` if it answered 200.
async fn attempt(fixture: &Fixture, request: &str, sni: Option<&str>) -> (u16, String, TcpStream) {
    let Ok(mut stream) = TcpStream::connect(fixture.addr).await else {
        panic!("cannot reach the exit")
    };
    send(&mut stream, request.as_bytes()).await;
    let (status, text) = response(&mut stream).await;
    if status == 200
        && let Some(sni) = sni
    {
        send(&mut stream, &client_hello(sni)).await;
    }
    (status, text, stream)
}

/// Whether the exit closed the stream (EOF) within a few seconds.
async fn closed(stream: &mut TcpStream) -> bool {
    let mut buffer = [0u8; 1024];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

fn short_limits() -> Limits {
    Limits {
        header_timeout: Duration::from_millis(300),
        hello_timeout: Duration::from_millis(300),
        ..Limits::default()
    }
}

#[tokio::test]
async fn an_allowed_name_is_tunnelled_with_its_client_hello() {
    let f = fixture(short_limits()).await;
    let target = format!("api.github.com:{}", f.upstream.port);
    let request = f.connect_request(&target, &f.auth("team", "fix.bug", "uid-1"));
    let (status, text, mut stream) = attempt(&f, &request, Some("api.github.com")).await;
    assert_eq!(status, 200, "{text}");
    // The destination got the ClientHello as the client sent it, and echoes it back.
    let hello = client_hello("api.github.com");
    let mut echoed = vec![0u8; hello.len()];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echoed)).await;
    assert!(matches!(read, Ok(Ok(_))), "{read:?}");
    assert_eq!(echoed[..5], hello[..5]);
    // Then anything passes both ways.
    send(&mut stream, b"after the handshake").await;
    let mut more = [0u8; 19];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut more)).await;
    assert!(matches!(read, Ok(Ok(_))));
    assert_eq!(&more, b"after the handshake");
    let decision = f.audit.last();
    assert_eq!(decision.as_ref().map(|d| d.verdict), Some(Verdict::Allowed));
    assert_eq!(
        decision.and_then(|d| d.task),
        Some(("team".to_owned(), "fix.bug".to_owned()))
    );
}

#[tokio::test]
async fn a_wildcard_name_and_a_trailing_dot_are_tunnelled() {
    let f = fixture(short_limits()).await;
    let target = format!("A.Example.com.:{}", f.upstream.port);
    let request = f.connect_request(&target, &f.auth("team", "fix.bug", "uid-1"));
    let (status, text, _stream) = attempt(&f, &request, Some("a.example.com")).await;
    assert_eq!(status, 200, "{text}");
}

/// One refused request: what was sent, the status expected, the verdict, a word of the reason.
struct Refused {
    what: &'static str,
    request: String,
    status: u16,
    verdict: Verdict,
    says: &'static str,
}

#[tokio::test]
async fn refusals_have_a_status_a_verdict_and_a_reason() {
    let f = fixture(short_limits()).await;
    let port = f.upstream.port;
    let auth = f.auth("team", "fix.bug", "uid-1");
    let strict = f.auth("team", "strict", "uid-2");
    let connect = |target: String, auth: &str| f.connect_request(&target, auth);
    let cases = vec![
        Refused {
            what: "a denied domain",
            request: connect(format!("evil.net:{port}"), &auth),
            status: 403,
            verdict: Verdict::DomainDenied,
            says: "evil.net is not allowed",
        },
        Refused {
            what: "a wildcard that must not match",
            request: connect(format!("evil-example.com:{port}"), &auth),
            status: 403,
            verdict: Verdict::DomainDenied,
            says: "evil-example.com",
        },
        Refused {
            what: "the wildcard's own suffix",
            request: connect(format!("example.com:{port}"), &auth),
            status: 403,
            verdict: Verdict::DomainDenied,
            says: "example.com",
        },
        Refused {
            what: "an IP literal no CIDR allows",
            request: connect(format!("127.0.0.1:{port}"), &strict),
            status: 403,
            verdict: Verdict::AddressLiteralDenied,
            says: "127.0.0.1 is an IP address",
        },
        Refused {
            what: "the metadata address as a literal",
            request: connect("169.254.169.254:443".into(), &auth),
            status: 403,
            verdict: Verdict::AddressLiteralDenied,
            says: "169.254.169.254",
        },
        Refused {
            what: "the IPv6 metadata address as a literal",
            request: connect("[fd00:ec2::254]:443".into(), &auth),
            status: 403,
            verdict: Verdict::AddressLiteralDenied,
            says: "fd00:ec2::254",
        },
        Refused {
            what: "an allowed name that resolves to a private address",
            request: connect("internal.example.com:443".into(), &auth),
            status: 403,
            verdict: Verdict::AddressDenied,
            says: "resolves to 10.0.0.1, a private address",
        },
        Refused {
            what: "an allowed name that resolves to the metadata address",
            request: connect("metadata.example.com:443".into(), &auth),
            status: 403,
            verdict: Verdict::AddressDenied,
            says: "a cloud metadata address",
        },
        Refused {
            what: "an allowed name that resolves to the IPv6 metadata address",
            request: connect("v6-metadata.example.com:443".into(), &auth),
            status: 403,
            verdict: Verdict::AddressDenied,
            says: "a cloud metadata address",
        },
        Refused {
            what: "an allowed name that resolves to loopback, without a CIDR",
            request: connect(format!("api.github.com:{port}"), &strict),
            status: 403,
            verdict: Verdict::AddressDenied,
            says: "a loopback address",
        },
        Refused {
            what: "a port the Task does not allow",
            request: connect("api.github.com:22".into(), &auth),
            status: 403,
            verdict: Verdict::PortDenied,
            says: "port 22",
        },
        Refused {
            what: "a Task in Deny mode",
            request: connect(
                format!("api.github.com:{port}"),
                &f.auth("team", "denied", "uid-3"),
            ),
            status: 403,
            verdict: Verdict::DomainDenied,
            says: "egress mode is Deny",
        },
        Refused {
            what: "no credentials",
            request: connect(format!("api.github.com:{port}"), ""),
            status: 407,
            verdict: Verdict::Unauthenticated,
            says: "no Proxy-Authorization",
        },
        Refused {
            what: "another Task's token",
            request: {
                let token = f.key.token("team", "strict", "uid-2");
                let basic = base64::engine::general_purpose::STANDARD
                    .encode(format!("team.fix.bug:{token}"));
                connect(
                    format!("api.github.com:{port}"),
                    &format!("Proxy-Authorization: Basic {basic}\r\n"),
                )
            },
            status: 407,
            verdict: Verdict::Unauthenticated,
            says: "not a valid token of Task team/fix.bug",
        },
        Refused {
            what: "the token of a deleted and recreated Task (another uid)",
            request: connect(
                format!("api.github.com:{port}"),
                &f.auth("team", "fix.bug", "uid-0"),
            ),
            status: 407,
            verdict: Verdict::Unauthenticated,
            says: "not a valid token",
        },
        Refused {
            what: "a Task the exit does not know",
            request: connect(
                format!("api.github.com:{port}"),
                &f.auth("team", "ghost", "uid-9"),
            ),
            status: 407,
            verdict: Verdict::Unauthenticated,
            says: "not a valid token of Task team/ghost",
        },
        Refused {
            what: "a plain-HTTP absolute-URI request",
            request: format!(
                "GET http://api.github.com/ HTTP/1.1\r\nHost: api.github.com\r\n{auth}\r\n"
            ),
            status: 405,
            verdict: Verdict::NotConnect,
            says: "only tunnels TLS",
        },
        Refused {
            what: "oversized headers",
            request: format!(
                "CONNECT api.github.com:443 HTTP/1.1\r\nX-Pad: {}\r\n{auth}\r\n",
                "a".repeat(9000)
            ),
            status: 431,
            verdict: Verdict::HeaderTooLarge,
            says: "larger than 8192 bytes",
        },
        Refused {
            what: "too many header fields",
            request: format!(
                "CONNECT api.github.com:443 HTTP/1.1\r\n{}{auth}\r\n",
                "X-A: b\r\n".repeat(40)
            ),
            status: 431,
            verdict: Verdict::HeaderTooLarge,
            says: "more than 32 header fields",
        },
        Refused {
            what: "a target without a port",
            request: connect("api.github.com".into(), &auth),
            status: 400,
            verdict: Verdict::BadRequest,
            says: "is not host:port",
        },
        Refused {
            what: "a numeric host name getaddrinfo would read as an address",
            request: connect("0x7f.1:443".into(), &auth),
            status: 400,
            verdict: Verdict::BadRequest,
            says: "not a host name",
        },
        Refused {
            what: "not HTTP",
            request: "\u{16}\u{3}\u{1}\r\n\r\n".into(),
            status: 400,
            verdict: Verdict::BadRequest,
            says: "not an HTTP/1 request",
        },
    ];
    for case in cases {
        let (status, text, _stream) = attempt(&f, &case.request, None).await;
        assert_eq!(status, case.status, "{}: {text}", case.what);
        assert!(text.contains(case.says), "{}: {text}", case.what);
        if case.status == 407 {
            assert!(
                text.contains("Proxy-Authenticate: Basic"),
                "{}: {text}",
                case.what
            );
        }
        let decision = f.audit.last();
        assert_eq!(
            decision.as_ref().map(|d| d.verdict),
            Some(case.verdict),
            "{}: {decision:?}",
            case.what
        );
    }
    // Nothing refused reached the destination.
    let reached = f.upstream.received.lock().map(|r| r.len()).unwrap_or(99);
    assert_eq!(reached, 0);
}

#[tokio::test]
async fn a_client_hello_for_another_name_closes_the_tunnel() {
    let f = fixture(short_limits()).await;
    let port = f.upstream.port;
    let auth = f.auth("team", "fix.bug", "uid-1");
    for (sni, says) in [
        (
            "evil.net",
            "asks for evil.net in a tunnel to api.github.com",
        ),
        ("a.example.com", "asks for a.example.com"),
    ] {
        let request = f.connect_request(&format!("api.github.com:{port}"), &auth);
        let (status, text, mut stream) = attempt(&f, &request, Some(sni)).await;
        assert_eq!(status, 200, "{text}");
        assert!(closed(&mut stream).await, "{sni}: the tunnel stayed open");
        let decision = f.audit.last();
        assert_eq!(
            decision.as_ref().map(|d| d.verdict),
            Some(Verdict::SniMismatch)
        );
        assert!(
            decision.as_ref().is_some_and(|d| d.reason.contains(says)),
            "{decision:?}"
        );
    }
    // Not TLS at all, and nothing in time.
    let request = f.connect_request(&format!("api.github.com:{port}"), &auth);
    let (_, _, mut stream) = attempt(&f, &request, None).await;
    send(&mut stream, b"SSH-2.0-OpenSSH_9.6\r\n").await;
    assert!(closed(&mut stream).await);
    assert_eq!(
        f.audit.last().map(|d| d.verdict),
        Some(Verdict::SniMismatch)
    );
    let (_, _, mut stream) = attempt(&f, &request, None).await;
    assert!(closed(&mut stream).await);
    assert_eq!(f.audit.last().map(|d| d.verdict), Some(Verdict::Timeout));
    // The destination saw connections, never a byte of them.
    let received = f
        .upstream
        .received
        .lock()
        .map(|r| r.clone())
        .unwrap_or_default();
    assert!(received.iter().all(Vec::is_empty), "{received:?}");
}

#[tokio::test]
async fn a_slow_head_is_cut_off() {
    let f = fixture(short_limits()).await;
    let Ok(mut stream) = TcpStream::connect(f.addr).await else {
        panic!("cannot reach the exit")
    };
    // Slowloris: a few bytes, then nothing.
    send(
        &mut stream,
        b"CONNECT api.github.com:443 HTTP/1.1\r\nX-Slow: ",
    )
    .await;
    let (status, text) = response(&mut stream).await;
    assert_eq!(status, 408, "{text}");
    assert_eq!(f.audit.last().map(|d| d.verdict), Some(Verdict::Timeout));
}

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_tunnels_leave_no_descriptor_behind() {
    let f = Arc::new(fixture(short_limits()).await);
    let before = open_descriptors();
    let target = format!("api.github.com:{}", f.upstream.port);
    let request = f.connect_request(&target, &f.auth("team", "fix.bug", "uid-1"));
    let hello_len = client_hello("api.github.com").len();
    let mut clients = Vec::new();
    for _ in 0..1000 {
        let (f, request) = (f.clone(), request.clone());
        clients.push(tokio::spawn(async move {
            let (status, _, mut stream) = attempt(&f, &request, Some("api.github.com")).await;
            let mut echoed = vec![0u8; hello_len];
            let ok = status == 200
                && tokio::time::timeout(Duration::from_secs(30), stream.read_exact(&mut echoed))
                    .await
                    .is_ok_and(|r| r.is_ok());
            (ok, stream)
        }));
    }
    let mut open = Vec::new();
    for client in clients {
        if let Ok((ok, stream)) = client.await {
            assert!(ok, "a tunnel failed");
            open.push(stream);
        }
    }
    assert_eq!(open.len(), 1000);
    // Each tunnel holds a client end, the exit's two ends and the destination's end. Other
    // tests of this binary open and close a few descriptors meanwhile: the margin is theirs;
    // a leak per tunnel would be a thousand.
    const MARGIN: usize = 50;
    let during = open_descriptors();
    assert!(during + MARGIN >= before + 4000, "{before} → {during}");
    drop(open);
    let mut after = open_descriptors();
    for _ in 0..100 {
        if after <= before + MARGIN {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = open_descriptors();
    }
    assert!(
        after <= before + MARGIN,
        "descriptors leaked: {before} before, {after} after"
    );
    assert_eq!(f.audit.0.lock().map(|a| a.len()).unwrap_or(0), 1000);
}

#[tokio::test]
async fn on_stop_new_connections_are_refused_and_open_tunnels_finish() {
    let upstream = upstream().await;
    let egress = Egress {
        mode: Some(EgressMode::AllowList),
        allowed_domains: vec!["api.github.com".into()],
        allowed_cidrs: vec!["127.0.0.0/8".into()],
        ports: vec![i32::from(upstream.port)],
    };
    let Some(key) = TokenKey::new(&KEY) else {
        panic!("key")
    };
    let tasks = StaticTasks(HashMap::from([(
        ("team".to_owned(), "t".to_owned()),
        grant("uid", egress),
    )]));
    let resolver = TableResolver(HashMap::from([("api.github.com", vec![ip("127.0.0.1")])]));
    let exit = Arc::new(Exit::new(
        key.clone(),
        Arc::new(tasks),
        Arc::new(resolver),
        Arc::new(Recorded::default()),
        short_limits(),
    ));
    let Ok(listener) = TcpListener::bind("127.0.0.1:0").await else {
        panic!("cannot bind loopback")
    };
    let Ok(addr) = listener.local_addr() else {
        panic!("no address")
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(exit.serve_until(
        listener,
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(10),
    ));
    let f = Fixture {
        addr,
        audit: Arc::new(Recorded::default()),
        upstream,
        key,
    };
    let target = format!("api.github.com:{}", f.upstream.port);
    let request = f.connect_request(&target, &f.auth("team", "t", "uid"));
    let (status, text, mut tunnel) = attempt(&f, &request, Some("api.github.com")).await;
    assert_eq!(status, 200, "{text}");
    let mut echoed = vec![0u8; client_hello("api.github.com").len()];
    assert!(tunnel.read_exact(&mut echoed).await.is_ok());

    let _ = stop.send(());
    // The listener closes: a new connection is refused (or reset before any answer).
    let mut refused = false;
    for _ in 0..100 {
        match TcpStream::connect(addr).await {
            Err(_) => {
                refused = true;
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(refused, "the listener stayed open after stop");
    // The open tunnel still carries bytes both ways, and serving ends when it closes.
    send(&mut tunnel, b"still here").await;
    let mut back = [0u8; 10];
    assert!(tunnel.read_exact(&mut back).await.is_ok());
    assert_eq!(&back, b"still here");
    assert!(!served.is_finished());
    drop(tunnel);
    let left = tokio::time::timeout(Duration::from_secs(5), served).await;
    assert!(matches!(left, Ok(Ok(Ok(0)))), "{left:?}");
}

/// The workspace's repository is reachable whatever the Task's domains and ports, on its own
/// port only; everything else stays refused.
#[tokio::test]
async fn the_workspace_repository_is_allowed_automatically() {
    let f = fixture(short_limits()).await;
    let port = f.upstream.port;
    let auth = f.auth("team", "workspace", "uid-4");
    let target = format!("git.example.org:{port}");
    let (status, text, _stream) = attempt(
        &f,
        &f.connect_request(&target, &auth),
        Some("git.example.org"),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    for (target, verdict) in [
        (format!("api.github.com:{port}"), Verdict::PortDenied),
        ("git.example.org:443".to_owned(), Verdict::DomainDenied),
    ] {
        let (status, text, _stream) = attempt(&f, &f.connect_request(&target, &auth), None).await;
        assert_eq!(status, 403, "{target}: {text}");
        assert_eq!(f.audit.last().map(|d| d.verdict), Some(verdict), "{target}");
    }
}
