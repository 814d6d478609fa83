//! The egress canary: an init container of each Task pod (with `--egress-canary-image` on the
//! controller) opens one TCP connection to an address the pod's policy denies — the API
//! server's Service by default, which every pod reaches unless a policy stops it — and reports
//! what happened in its termination message. A CNI that ignores NetworkPolicy lets it through,
//! and the Task's `EgressEnforced` condition then says so, whatever the policies read like.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The canary's init container.
pub const CONTAINER: &str = "kubetask-egress-canary";

/// What the canary saw.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    /// The address it tried.
    pub address: String,
    /// Whether the connection opened.
    pub reached: bool,
    /// Why not (`timed out after 3s`, `connection refused`), when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Probe {
    /// The termination message that carries it (one line of JSON).
    pub fn message(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a termination message; `None` for anything else.
    pub fn parse(message: &str) -> Option<Self> {
        serde_json::from_str(message.trim()).ok()
    }
}

/// Connects to `address` within `timeout`: reached, or why not.
pub async fn probe(address: SocketAddr, timeout: Duration) -> Probe {
    let result = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await;
    let error = match result {
        Ok(Ok(_)) => None,
        Ok(Err(error)) => Some(error.to_string()),
        Err(_) => Some(format!("timed out after {}s", timeout.as_secs_f32())),
    };
    Probe {
        address: address.to_string(),
        reached: error.is_none(),
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_open_port_is_reached_and_a_closed_one_is_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap();
        let reached = probe(open, Duration::from_secs(2)).await;
        assert!(reached.reached, "{reached:?}");
        drop(listener);
        let closed = probe(open, Duration::from_secs(2)).await;
        assert!(!closed.reached && closed.error.is_some(), "{closed:?}");
        assert_eq!(Probe::parse(&closed.message()), Some(closed));
    }

    #[tokio::test]
    async fn a_silent_address_times_out() {
        // TEST-NET-1 (RFC 5737): routed nowhere, so the SYN goes unanswered (or the network
        // says unreachable at once): not reached either way.
        let probe = probe("192.0.2.1:443".parse().unwrap(), Duration::from_millis(300)).await;
        assert!(!probe.reached, "{probe:?}");
    }

    #[test]
    fn other_messages_are_not_probes() {
        assert_eq!(Probe::parse("Error: OOMKilled"), None);
        assert_eq!(Probe::parse(""), None);
    }
}
