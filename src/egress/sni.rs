//! The server name a TLS client asks for (SNI), read from its ClientHello by rustls's
//! `Acceptor`, so the exit can hold it to the CONNECT host: a tunnel opened to an allowed name
//! cannot carry a TLS session to another (domain fronting).

use tokio::io::{AsyncRead, AsyncReadExt};

/// Most bytes of a ClientHello the exit reads (real ones are a few KiB, with post-quantum key
/// shares under 2 KiB).
pub const MAX_HELLO_BYTES: usize = 32 * 1024;

/// Why no server name could be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HelloError {
    /// The first bytes are not a TLS handshake.
    #[error("the tunnel does not start with a TLS ClientHello (only TLS passes the exit)")]
    NotTls,
    /// The ClientHello is malformed.
    #[error("malformed TLS ClientHello: {0}")]
    Malformed(String),
    /// The ClientHello is larger than [`MAX_HELLO_BYTES`].
    #[error("TLS ClientHello larger than {MAX_HELLO_BYTES} bytes")]
    TooLarge,
    /// The client closed before a whole ClientHello.
    #[error("the client closed the tunnel before a whole TLS ClientHello")]
    Closed,
    /// Reading failed.
    #[error("reading the TLS ClientHello: {0}")]
    Io(String),
}

/// Reads the client's ClientHello into `buffer` (which may already hold its first bytes) and
/// returns the server name it asks for (`None`: the client sent no SNI). Every byte read stays
/// in `buffer`, to be forwarded as it came.
pub async fn read_server_name<R: AsyncRead + Unpin>(
    client: &mut R,
    buffer: &mut Vec<u8>,
) -> Result<Option<String>, HelloError> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut fed = 0;
    loop {
        if fed < buffer.len() {
            if buffer[0] != 0x16 {
                return Err(HelloError::NotTls);
            }
            let mut unread = &buffer[fed..];
            while !unread.is_empty() {
                let before = unread.len();
                acceptor
                    .read_tls(&mut unread)
                    .map_err(|e| HelloError::Malformed(e.to_string()))?;
                fed += before - unread.len();
                if before == unread.len() {
                    break;
                }
            }
            match acceptor.accept() {
                Ok(Some(accepted)) => {
                    return Ok(accepted.client_hello().server_name().map(str::to_owned));
                }
                Ok(None) => {}
                Err((e, _alert)) => return Err(HelloError::Malformed(e.to_string())),
            }
        }
        if buffer.len() >= MAX_HELLO_BYTES {
            return Err(HelloError::TooLarge);
        }
        let mut chunk = [0u8; 4096];
        let want = chunk.len().min(MAX_HELLO_BYTES - buffer.len());
        let n = client
            .read(&mut chunk[..want])
            .await
            .map_err(|e| HelloError::Io(e.to_string()))?;
        if n == 0 {
            return Err(HelloError::Closed);
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// A real ClientHello for `server_name`, as a rustls client sends it (for tests and
/// benchmarks).
pub fn client_hello(server_name: &str) -> Vec<u8> {
    use std::sync::Arc;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        });
    let (Ok(config), Ok(name)) = (
        config,
        rustls::pki_types::ServerName::try_from(server_name.to_owned()),
    ) else {
        return Vec::new();
    };
    let mut hello = Vec::new();
    if let Ok(mut connection) = rustls::ClientConnection::new(Arc::new(config), name) {
        while connection.wants_write() {
            if connection.write_tls(&mut hello).is_err() {
                break;
            }
        }
    }
    hello
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn name_of(bytes: &[u8], split: usize) -> Result<Option<String>, HelloError> {
        // The first `split` bytes already read with the request, the rest from the stream.
        let mut buffer = bytes[..split].to_vec();
        let mut rest = &bytes[split..];
        let got = read_server_name(&mut rest, &mut buffer).await;
        if got.is_ok() {
            assert_eq!(buffer, bytes, "every byte kept to be forwarded");
        }
        got
    }

    #[tokio::test]
    async fn reads_the_server_name_however_the_bytes_arrive() {
        let hello = client_hello("api.github.com");
        assert!(hello.len() > 100);
        for split in [0, 1, 5, 6, hello.len() / 2, hello.len()] {
            assert_eq!(
                name_of(&hello, split).await,
                Ok(Some("api.github.com".to_owned())),
                "split at {split}"
            );
        }
    }

    #[tokio::test]
    async fn an_ip_address_sends_no_server_name() {
        let hello = client_hello("140.82.112.3");
        assert_eq!(name_of(&hello, 0).await, Ok(None));
    }

    #[tokio::test]
    async fn what_is_not_a_client_hello_is_refused() {
        assert_eq!(
            name_of(b"GET / HTTP/1.1\r\n\r\n", 0).await,
            Err(HelloError::NotTls)
        );
        assert_eq!(
            name_of(b"SSH-2.0-OpenSSH_9.6\r\n", 0).await,
            Err(HelloError::NotTls)
        );
        let hello = client_hello("a.example.com");
        assert_eq!(name_of(&hello[..40], 0).await, Err(HelloError::Closed));
        // A handshake record that is not a ClientHello.
        let garbage = [0x16, 3, 1, 0, 4, 2, 0, 0, 0];
        assert!(matches!(
            name_of(&garbage, 0).await,
            Err(HelloError::Malformed(_))
        ));
        // A record announcing more than the exit reads.
        let mut endless = vec![0x16, 3, 1, 0x40, 0, 1, 0, 0x3f, 0xfc];
        endless.resize(MAX_HELLO_BYTES + 10, 0);
        let got = name_of(&endless, 0).await;
        assert!(
            matches!(
                got,
                Err(HelloError::TooLarge) | Err(HelloError::Malformed(_))
            ),
            "{got:?}"
        );
    }
}
