//! Address classification shared by everything that connects to hosts named by others
//! (federation peers, URL previews, push gateways): only public addresses are reached unless
//! configured.

use std::net::IpAddr;

/// Whether a client for URLs users name may connect to an address.
pub fn reachable(ip: IpAddr, allowed: &[IpAddr]) -> bool {
    is_public(ip) || allowed.contains(&ip)
}

/// Whether a guarded client may connect to `url`'s host: name resolution checks names, this
/// checks an IP literal (which is never resolved).
pub fn host_reachable(url: &url::Url, allowed: &[IpAddr]) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => reachable(IpAddr::V4(ip), allowed),
        Some(url::Host::Ipv6(ip)) => reachable(IpAddr::V6(ip), allowed),
        Some(url::Host::Domain(_)) => true,
        None => false,
    }
}

/// Whether an address is on the public internet (not loopback, private, link-local, …).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || a >= 240
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (18..20).contains(&b)))
        }
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            // Addresses that embed an IPv4 one: mapped, compatible, NAT64 and 6to4.
            let embedded = if let Some(v4) = v6.to_ipv4_mapped() {
                Some(v4)
            } else if segments[..6] == [0; 6] || segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [.., a, b, c, d] = v6.octets();
                Some(std::net::Ipv4Addr::new(a, b, c, d))
            } else if segments[0] == 0x2002 {
                let [_, _, a, b, c, d, ..] = v6.octets();
                Some(std::net::Ipv4Addr::new(a, b, c, d))
            } else {
                None
            };
            if let Some(v4) = embedded {
                return !v6.is_unspecified() && !v6.is_loopback() && is_public(IpAddr::V4(v4));
            }
            let first = segments[0];
            // Unique-local, link-local, site-local (deprecated), Teredo, discard-only, and the
            // local-use NAT64 prefix.
            !(v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0
                || segments[..2] == [0x2001, 0]
                || segments[..2] == [0x2001, 0xdb8]
                || segments[..4] == [0x100, 0, 0, 0]
                || segments[..3] == [0x64, 0xff9b, 1])
        }
    }
}
