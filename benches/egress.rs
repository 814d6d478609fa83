//! The exit's cost on loopback: the setup of a tunnel (CONNECT, authentication, policy,
//! resolution, the ClientHello check) and its throughput, each beside a direct connection to
//! the same destination in the same process.
//!
//!   cargo bench --bench egress
//!
//! Setup is timed from `connect()` to the destination's echo of the ClientHello (so both paths
//! do the same TLS-shaped first round trip); throughput is 256 MiB sent through and counted by
//! the destination.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::future::BoxFuture;
use kubetask::egress::sni::client_hello;
use kubetask::egress::{Audit, Decision, Exit, Grant, Limits, Resolve, Tasks, TokenKey};
use kubetask_api::egress::{Egress, EgressMode, effective};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SETUPS: usize = 2_000;
const BULK_BYTES: usize = 256 * 1024 * 1024;
/// Goals: the exit adds at most this much to a tunnel's setup at p50 …
const SETUP_OVERHEAD_GOAL: Duration = Duration::from_millis(1);
/// … holds at most this much per open tunnel (its two buffers are 64 KiB) …
const MEMORY_PER_TUNNEL_GOAL_KIB: f64 = 100.0;
/// Tunnels held open at once for the memory figure.
const HELD: usize = 1_000;
/// … and keeps at least this share of a direct connection's throughput. The exit moves every
/// byte twice more (read and write), so on one machine with two cores the ceiling is 0.5.
const THROUGHPUT_GOAL: f64 = 0.4;

struct OneTask(Grant);

impl Tasks for OneTask {
    fn grant(&self, namespace: &str, name: &str) -> Option<Grant> {
        (namespace == "bench" && name == "task").then(|| self.0.clone())
    }
}

struct Loopback;

impl Resolve for Loopback {
    fn resolve<'a>(&'a self, _host: &'a str) -> BoxFuture<'a, io::Result<Vec<IpAddr>>> {
        Box::pin(async { Ok(vec![IpAddr::from([127, 0, 0, 1])]) })
    }
}

struct Discard;

impl Audit for Discard {
    fn record(&self, _: &Decision) {}
}

/// The destination: echoes the first `hello_len` bytes of a connection, then counts the rest
/// and answers their number (8 bytes) at EOF.
async fn destination(hello_len: usize) -> SocketAddr {
    let Ok(listener) = TcpListener::bind("127.0.0.1:0").await else {
        panic!("cannot bind loopback")
    };
    let Ok(addr) = listener.local_addr() else {
        panic!("no address")
    };
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let mut hello = vec![0u8; hello_len];
                if stream.read_exact(&mut hello).await.is_err()
                    || stream.write_all(&hello).await.is_err()
                {
                    return;
                }
                let mut counted: u64 = 0;
                let mut buffer = vec![0u8; 64 * 1024];
                while let Ok(n) = stream.read(&mut buffer).await {
                    if n == 0 {
                        break;
                    }
                    counted += n as u64;
                }
                let _ = stream.write_all(&counted.to_be_bytes()).await;
            });
        }
    });
    addr
}

/// Opens a connection (through the exit when `proxy` is set) and does the first round trip.
async fn open(
    target: SocketAddr,
    proxy: Option<(SocketAddr, &str)>,
    hello: &[u8],
) -> io::Result<TcpStream> {
    let mut stream = TcpStream::connect(proxy.map_or(target, |(addr, _)| addr)).await?;
    stream.set_nodelay(true)?;
    if let Some((_, auth)) = proxy {
        let request = format!(
            "CONNECT bench.example.com:{port} HTTP/1.1\r\nHost: bench.example.com:{port}\r\nProxy-Authorization: Basic {auth}\r\n\r\n",
            port = target.port()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).await?;
            head.push(byte[0]);
        }
        if !head.starts_with(b"HTTP/1.1 200") {
            return Err(io::Error::other(
                String::from_utf8_lossy(&head).into_owned(),
            ));
        }
    }
    stream.write_all(hello).await?;
    let mut echoed = vec![0u8; hello.len()];
    stream.read_exact(&mut echoed).await?;
    Ok(stream)
}

async fn setups(
    target: SocketAddr,
    proxy: Option<(SocketAddr, &str)>,
    hello: &[u8],
) -> io::Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(SETUPS);
    for _ in 0..SETUPS {
        let start = Instant::now();
        let stream = open(target, proxy, hello).await?;
        times.push(start.elapsed());
        drop(stream);
    }
    times.sort();
    Ok(times)
}

async fn throughput(
    target: SocketAddr,
    proxy: Option<(SocketAddr, &str)>,
    hello: &[u8],
) -> io::Result<f64> {
    let mut stream = open(target, proxy, hello).await?;
    let chunk = vec![7u8; 256 * 1024];
    let start = Instant::now();
    let mut sent = 0;
    while sent < BULK_BYTES {
        stream.write_all(&chunk).await?;
        sent += chunk.len();
    }
    stream.shutdown().await?;
    let mut counted = [0u8; 8];
    stream.read_exact(&mut counted).await?;
    let elapsed = start.elapsed();
    if u64::from_be_bytes(counted) != BULK_BYTES as u64 {
        return Err(io::Error::other(
            "the destination counted another number of bytes",
        ));
    }
    Ok(BULK_BYTES as f64 / elapsed.as_secs_f64() / (1024.0 * 1024.0))
}

/// The process's resident memory, in KiB (`VmRSS`).
fn resident_kib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0.0)
}

/// Opens `HELD` connections at once (through the exit when `proxy` is set), each with its
/// first round trip and 64 KiB sent after it, and returns them open.
async fn hold(
    target: SocketAddr,
    proxy: Option<(SocketAddr, &str)>,
    hello: &[u8],
) -> io::Result<Vec<TcpStream>> {
    let mut opening = Vec::with_capacity(HELD);
    for _ in 0..HELD {
        let hello = hello.to_vec();
        let proxy = proxy.map(|(addr, auth)| (addr, auth.to_owned()));
        opening.push(tokio::spawn(async move {
            let proxy = proxy.as_ref().map(|(addr, auth)| (*addr, auth.as_str()));
            let mut stream = open(target, proxy, &hello).await?;
            stream.write_all(&[1u8; 64 * 1024]).await?;
            Ok::<_, io::Error>(stream)
        }));
    }
    let mut held = Vec::with_capacity(HELD);
    for task in opening {
        held.push(task.await.map_err(io::Error::other)??);
    }
    // Let the bytes in flight land.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(held)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let hello = client_hello("bench.example.com");
        let target = destination(hello.len()).await;
        let egress = Egress {
            mode: Some(EgressMode::AllowList),
            allowed_domains: vec!["*.example.com".into()],
            allowed_cidrs: vec!["127.0.0.0/8".into()],
            ports: vec![i32::from(target.port())],
        };
        let policy = effective(EgressMode::Deny, Some(("Agent/bench", &egress)), None)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let Some(key) = TokenKey::new(&[9; 32]) else {
            return Err(io::Error::other("key"));
        };
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("bench.task:{}", key.token("bench", "task", "uid")));
        let exit = Arc::new(Exit::new(
            key,
            Arc::new(OneTask(Grant {
                uid: "uid".into(),
                policy,
            })),
            Arc::new(Loopback),
            Arc::new(Discard),
            Limits::default(),
        ));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let proxy = listener.local_addr()?;
        tokio::spawn(exit.serve(listener));
        let via = Some((proxy, auth.as_str()));

        // Warm up both paths.
        setups(target, None, &hello).await?;
        setups(target, via, &hello).await?;
        let direct = setups(target, None, &hello).await?;
        let exited = setups(target, via, &hello).await?;
        println!("tunnel setup, {SETUPS} sequential connections (connect → first echo), µs:");
        println!("  {:<10} {:>8} {:>8}", "", "p50", "p99");
        for (name, times) in [("direct", &direct), ("exit", &exited)] {
            println!(
                "  {name:<10} {:>8.1} {:>8.1}",
                micros(percentile(times, 0.5)),
                micros(percentile(times, 0.99))
            );
        }
        let overhead = percentile(&exited, 0.5).saturating_sub(percentile(&direct, 0.5));
        println!(
            "  the exit adds {:.1} µs at p50 (goal ≤ {:.0} µs): {}",
            micros(overhead),
            micros(SETUP_OVERHEAD_GOAL),
            if overhead <= SETUP_OVERHEAD_GOAL {
                "met"
            } else {
                "NOT met"
            }
        );

        // Memory: the same number of direct connections held open first (client and
        // destination ends), then as many tunnels; the difference is the exit's own.
        let before = resident_kib();
        let direct_held = hold(target, None, &hello).await?;
        let with_direct = resident_kib();
        let exit_held = hold(target, via, &hello).await?;
        let with_exit = resident_kib();
        let direct_each = (with_direct - before) / HELD as f64;
        let exit_each = (with_exit - with_direct) / HELD as f64 - direct_each;
        println!("memory, {HELD} connections held open with 64 KiB sent through each, KiB each:");
        println!("  direct (client and destination ends) {direct_each:>8.1}");
        println!(
            "  the exit's own per tunnel           {exit_each:>8.1} (goal ≤ {MEMORY_PER_TUNNEL_GOAL_KIB:.0}): {}",
            if exit_each <= MEMORY_PER_TUNNEL_GOAL_KIB {
                "met"
            } else {
                "NOT met"
            }
        );
        drop(exit_held);
        drop(direct_held);
        tokio::time::sleep(Duration::from_millis(500)).await;

        let mut direct_rates = Vec::new();
        let mut exit_rates = Vec::new();
        for _ in 0..3 {
            direct_rates.push(throughput(target, None, &hello).await?);
            exit_rates.push(throughput(target, via, &hello).await?);
        }
        let best = |rates: &[f64]| rates.iter().copied().fold(0.0, f64::max);
        let ratio = best(&exit_rates) / best(&direct_rates);
        println!(
            "throughput, {} MiB, best of 3, MiB/s:",
            BULK_BYTES / (1024 * 1024)
        );
        println!("  direct {:>8.0}", best(&direct_rates));
        println!("  exit   {:>8.0}", best(&exit_rates));
        println!(
            "  exit/direct {ratio:.2} (goal ≥ {THROUGHPUT_GOAL}): {}",
            if ratio >= THROUGHPUT_GOAL {
                "met"
            } else {
                "NOT met"
            }
        );
        Ok(())
    })
}
