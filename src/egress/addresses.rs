//! Which resolved addresses the exit connects to: public ones, and special-use ones (private,
//! loopback, link-local, cloud metadata …) only when one of the Task's `allowedCIDRs` holds
//! them. Checked on the addresses the exit resolved itself, so a name that resolves to
//! `169.254.169.254` (DNS rebinding) is refused like the literal.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use kubetask_api::EgressPolicy;

/// Why an address is not public, or `None` for a public address.
pub fn special_use(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => special_v4(v4),
            None => special_v6(v6),
        },
    }
}

/// Cloud metadata services outside the link-local range (which is refused as a whole):
/// Azure's wire server.
const METADATA_V4: [Ipv4Addr; 1] = [Ipv4Addr::new(168, 63, 129, 16)];

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(
        if ip == Ipv4Addr::new(169, 254, 169, 254) || METADATA_V4.contains(&ip) {
            "a cloud metadata address"
        } else if ip.is_loopback() {
            "a loopback address"
        } else if ip.is_private() {
            "a private address"
        } else if ip.is_link_local() {
            "a link-local address"
        } else if a == 100 && (64..128).contains(&b) {
            "a carrier-grade NAT address"
        } else if ip.is_unspecified() || a == 0 {
            "an unspecified address"
        } else if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
            "a multicast, broadcast or reserved address"
        } else if ip.is_documentation()
            || (a == 198 && (18..20).contains(&b))
            || (a == 192 && b == 0)
        {
            "a documentation, benchmarking or protocol address"
        } else {
            return None;
        },
    )
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    Some(
        if ip == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254) {
            "a cloud metadata address"
        } else if ip.is_loopback() {
            "a loopback address"
        } else if ip.is_unspecified() {
            "an unspecified address"
        } else if first & 0xfe00 == 0xfc00 {
            "a unique local (private) address"
        } else if first & 0xffc0 == 0xfe80 {
            "a link-local address"
        } else if ip.is_multicast() {
            "a multicast address"
        } else if first == 0x2001 && ip.segments()[1] == 0x0db8 {
            "a documentation address"
        } else if first == 0x0064 && ip.segments()[1] == 0xff9b {
            // NAT64 (64:ff9b::/96) maps an IPv4 address the exit would have to check instead.
            "a NAT64 address"
        } else if ip.to_ipv4().is_some() {
            // The deprecated IPv4-compatible form (::a.b.c.d).
            "an IPv4-compatible address"
        } else {
            return None;
        },
    )
}

/// Whether the exit may connect to `ip` for a Task with `policy`: public addresses yes, the
/// others only inside an allowed CIDR. `Err` carries the reason.
pub fn permitted(ip: IpAddr, policy: &EgressPolicy) -> Result<(), &'static str> {
    match special_use(ip) {
        None => Ok(()),
        Some(_) if policy.cidr_allows(ip) => Ok(()),
        Some(reason) => Err(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_use_addresses_are_named() {
        let special = [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "168.63.129.16",
            "100.100.100.200",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "::1",
            "::",
            "fd00:ec2::254",
            "fc00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2001:db8::1",
        ];
        for text in special {
            let ip: IpAddr = text.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
            assert!(special_use(ip).is_some(), "{text} counted as public");
        }
        for text in [
            "140.82.112.3",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            let ip: IpAddr = text.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
            assert_eq!(special_use(ip), None, "{text}");
        }
    }

    #[test]
    fn metadata_addresses_say_so() {
        for text in ["169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254"] {
            let ip: IpAddr = text.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
            assert_eq!(special_use(ip), Some("a cloud metadata address"), "{text}");
        }
    }
}
