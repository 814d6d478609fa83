//! Egress: where an agent pod may connect. `spec.egress` on an Agent is the default of its
//! Tasks; a Task's may only narrow its Agent's. [`effective`] resolves the two into the one
//! [`EgressPolicy`] that the exit proxy enforces (docs/security.md).

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// A domain or a `*.suffix` wildcard, lower case, as `allowedDomains` takes it.
pub const DOMAIN_PATTERN: &str = concat!(
    "^([*][.])?",
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
);
/// Most entries of `allowedDomains`.
pub const MAX_DOMAINS: u32 = 64;
/// Most entries of `allowedCIDRs`.
pub const MAX_CIDRS: u32 = 32;
/// Most entries of `ports`.
pub const MAX_PORTS: u32 = 16;
/// The ports a policy allows when it names none: HTTPS.
pub const DEFAULT_PORTS: [u16; 1] = [443];

/// `spec.egress` of an Agent or a Task.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Egress {
    /// `Deny`: no connection leaves the pod but DNS. `AllowList`: only to `allowedDomains`
    /// and `allowedCIDRs`, through the exit. `Open`: any public address, through the exit
    /// (private, loopback, link-local and cloud-metadata addresses only when a CIDR allows
    /// them). Default: the Agent's, else the controller's `--default-egress-mode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<EgressMode>,
    /// Host names the agent may reach: exact (`api.github.com`) or a wildcard of one or more
    /// labels (`*.githubusercontent.com`, which does not match `githubusercontent.com`
    /// itself), lower case.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_DOMAINS), inner(regex(pattern = DOMAIN_PATTERN), length(max = 253)))]
    pub allowed_domains: Vec<String>,
    /// Address ranges the agent may reach (`10.96.0.0/12` for in-cluster Services), the only
    /// way to reach a private, loopback or link-local address.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        rename = "allowedCIDRs"
    )]
    #[schemars(length(max = MAX_CIDRS), inner(length(max = 43)))]
    pub allowed_cidrs: Vec<String>,
    /// Destination ports (1–65535). Default: 443.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_PORTS), inner(range(min = 1, max = 65535)))]
    pub ports: Vec<i32>,
}

/// How much of the network an agent pod may reach, narrowest first.
#[derive(
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Default,
)]
pub enum EgressMode {
    /// Nothing but DNS.
    Deny,
    /// Only the listed domains and CIDRs.
    AllowList,
    /// Any public address.
    #[default]
    Open,
}

impl EgressMode {
    /// The mode's name, as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deny => "Deny",
            Self::AllowList => "AllowList",
            Self::Open => "Open",
        }
    }
}

/// An entry of `allowedDomains`, parsed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DomainPattern {
    /// This name only.
    Exact(String),
    /// Any name ending in `.suffix` (at least one more label); not `suffix` itself.
    Wildcard(String),
}

impl DomainPattern {
    /// Parses an entry; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (wildcard, name) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if !is_host_name(name) {
            return Err(format!(
                "{text:?} is not a lower-case host name or '*.' followed by one \
                 (letters, digits, '-' and '.'; each label at most 63 characters)"
            ));
        }
        if wildcard && !name.contains('.') {
            return Err(format!(
                "{text:?} matches every name under a top-level domain: name at least two labels after '*.'"
            ));
        }
        Ok(if wildcard {
            Self::Wildcard(name.to_owned())
        } else {
            Self::Exact(name.to_owned())
        })
    }

    /// Whether `host` (lower case, no trailing dot) is allowed by this pattern.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(name) => host == name,
            Self::Wildcard(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        }
    }

    /// Whether every name this pattern matches is matched by `wider` too.
    pub fn within(&self, wider: &DomainPattern) -> bool {
        match (self, wider) {
            (Self::Exact(name), _) => wider.matches(name),
            (Self::Wildcard(_), Self::Exact(_)) => false,
            (Self::Wildcard(suffix), Self::Wildcard(wider_suffix)) => {
                suffix == wider_suffix || Self::Wildcard(wider_suffix.clone()).matches(suffix)
            }
        }
    }
}

impl std::fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exact(name) => f.write_str(name),
            Self::Wildcard(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

/// A lower-case DNS name: labels of `[a-z0-9-]`, not starting or ending with `-`, at most 63
/// characters each, 253 in all. An all-digit last label is refused (it would be an IP
/// address, which `allowedCIDRs` names).
pub fn is_host_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let labels_ok = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    });
    let last_numeric = name
        .rsplit('.')
        .next()
        .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()));
    labels_ok && !last_numeric
}

/// What the exit enforces for one Task: the Agent's `spec.egress` narrowed by the Task's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressPolicy {
    /// The effective mode.
    pub mode: EgressMode,
    /// Names allowed in `AllowList` mode (ignored in the others).
    pub domains: Vec<DomainPattern>,
    /// Ranges allowed in `AllowList` and `Open` modes, private ones included.
    pub cidrs: Vec<IpNet>,
    /// Destination ports allowed.
    pub ports: Vec<u16>,
    /// The workspace's endpoints (`host`, `port`), reachable in every mode: its repository
    /// (the clone and publish steps need it) and its pull request's API
    /// ([`EgressPolicy::with_workspace`]).
    pub workspace: Vec<(String, u16)>,
}

impl EgressPolicy {
    /// The same policy letting the pod reach `workspace`'s endpoints too
    /// ([`crate::Workspace::endpoints`]: an `https://` repository, its pull request's API).
    pub fn with_workspace(mut self, workspace: Option<&crate::Workspace>) -> Self {
        self.workspace = workspace
            .map(crate::Workspace::endpoints)
            .unwrap_or_default();
        self
    }

    /// Whether `host` on `port` is one of the workspace's endpoints.
    pub fn is_workspace_endpoint(&self, host: &str, port: u16) -> bool {
        self.workspace
            .iter()
            .any(|(name, allowed)| name == host && *allowed == port)
    }

    /// A policy that allows nothing.
    pub fn deny() -> Self {
        Self {
            mode: EgressMode::Deny,
            domains: Vec::new(),
            cidrs: Vec::new(),
            ports: DEFAULT_PORTS.to_vec(),
            workspace: Vec::new(),
        }
    }

    /// Whether `host` (lower case, no trailing dot) is an allowed name.
    pub fn allows_name(&self, host: &str) -> bool {
        match self.mode {
            EgressMode::Deny => false,
            EgressMode::AllowList => self.domains.iter().any(|p| p.matches(host)),
            EgressMode::Open => true,
        }
    }

    /// Whether an allowed CIDR holds `ip`.
    pub fn cidr_allows(&self, ip: IpAddr) -> bool {
        self.mode != EgressMode::Deny && self.cidrs.iter().any(|net| net.contains(&ip))
    }

    /// Whether `port` is allowed.
    pub fn allows_port(&self, port: u16) -> bool {
        self.ports.contains(&port)
    }
}

/// A field of `spec.egress` that cannot be enforced, or asks for more than the Agent allows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{object}: {field}: {message}")]
pub struct InvalidEgress {
    /// `Kind/name` of the object, e.g. `Task/fix-bug`.
    pub object: String,
    /// Path of the field, e.g. `spec.egress.allowedDomains[2]`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// One side's `spec.egress`, parsed.
struct Parsed {
    mode: Option<EgressMode>,
    domains: Option<Vec<DomainPattern>>,
    cidrs: Option<Vec<IpNet>>,
    ports: Option<Vec<u16>>,
}

fn parse(egress: &Egress, object: &str) -> Result<Parsed, InvalidEgress> {
    let invalid = |field: String, message: String| InvalidEgress {
        object: object.to_owned(),
        field,
        message,
    };
    let mut domains = Vec::with_capacity(egress.allowed_domains.len());
    for (i, text) in egress.allowed_domains.iter().enumerate() {
        let pattern = DomainPattern::parse(text)
            .map_err(|m| invalid(format!("spec.egress.allowedDomains[{i}]"), m))?;
        domains.push(pattern);
    }
    let mut cidrs = Vec::with_capacity(egress.allowed_cidrs.len());
    for (i, text) in egress.allowed_cidrs.iter().enumerate() {
        let net: IpNet = text.parse().map_err(|_| {
            invalid(
                format!("spec.egress.allowedCIDRs[{i}]"),
                format!("{text:?} is not a CIDR such as 10.96.0.0/12 or fd00::/8"),
            )
        })?;
        cidrs.push(net.trunc());
    }
    let mut ports = Vec::with_capacity(egress.ports.len());
    for (i, port) in egress.ports.iter().enumerate() {
        let port = u16::try_from(*port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| {
                invalid(
                    format!("spec.egress.ports[{i}]"),
                    format!("{port} is not a port (1–65535)"),
                )
            })?;
        ports.push(port);
    }
    Ok(Parsed {
        mode: egress.mode,
        domains: (!egress.allowed_domains.is_empty()).then_some(domains),
        cidrs: (!egress.allowed_cidrs.is_empty()).then_some(cidrs),
        ports: (!egress.ports.is_empty()).then_some(ports),
    })
}

/// The policy of a Task: its Agent's `spec.egress` (or, without one, `default_mode` and
/// nothing listed) narrowed by the Task's. A Task that asks for more than its Agent allows
/// (a wider mode, a domain, CIDR or port its Agent does not list) is refused with the field.
pub fn effective(
    default_mode: EgressMode,
    agent: Option<(&str, &Egress)>,
    task: Option<(&str, &Egress)>,
) -> Result<EgressPolicy, InvalidEgress> {
    let agent = agent.map(|(object, e)| parse(e, object)).transpose()?;
    let agent_mode = agent.as_ref().and_then(|a| a.mode).unwrap_or(default_mode);
    let agent_domains = agent.as_ref().and_then(|a| a.domains.clone());
    let agent_cidrs = agent.as_ref().and_then(|a| a.cidrs.clone());
    let agent_ports = agent.as_ref().and_then(|a| a.ports.clone());
    let base = EgressPolicy {
        mode: agent_mode,
        domains: agent_domains.clone().unwrap_or_default(),
        cidrs: agent_cidrs.clone().unwrap_or_default(),
        ports: agent_ports
            .clone()
            .unwrap_or_else(|| DEFAULT_PORTS.to_vec()),
        workspace: Vec::new(),
    };
    let Some((object, task_egress)) = task else {
        return Ok(base);
    };
    let task = parse(task_egress, object)?;
    let invalid = |field: &str, message: String| InvalidEgress {
        object: object.to_owned(),
        field: field.to_owned(),
        message,
    };
    let mode = task.mode.unwrap_or(agent_mode);
    if mode > agent_mode {
        return Err(invalid(
            "spec.egress.mode",
            format!(
                "{} is wider than its Agent's egress mode {}: a Task may only narrow it",
                mode.as_str(),
                agent_mode.as_str()
            ),
        ));
    }
    let domains = match task.domains {
        None => base.domains,
        Some(domains) => {
            if agent_mode == EgressMode::AllowList {
                for (i, pattern) in domains.iter().enumerate() {
                    if !base.domains.iter().any(|wider| pattern.within(wider)) {
                        return Err(invalid(
                            &format!("spec.egress.allowedDomains[{i}]"),
                            format!("{pattern} is not allowed by its Agent's allowedDomains"),
                        ));
                    }
                }
            }
            domains
        }
    };
    let cidrs = match task.cidrs {
        None => base.cidrs,
        Some(cidrs) => {
            for (i, net) in cidrs.iter().enumerate() {
                if !base.cidrs.iter().any(|wider| wider.contains(net)) {
                    return Err(invalid(
                        &format!("spec.egress.allowedCIDRs[{i}]"),
                        format!("{net} is not inside its Agent's allowedCIDRs"),
                    ));
                }
            }
            cidrs
        }
    };
    let ports = match task.ports {
        None => base.ports,
        Some(ports) => {
            for (i, port) in ports.iter().enumerate() {
                if !base.ports.contains(port) {
                    return Err(invalid(
                        &format!("spec.egress.ports[{i}]"),
                        format!("port {port} is not among its Agent's egress ports"),
                    ));
                }
            }
            ports
        }
    };
    Ok(EgressPolicy {
        mode,
        domains,
        cidrs,
        ports,
        workspace: Vec::new(),
    })
}

#[cfg(test)]
mod tests;
