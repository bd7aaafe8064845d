//! The HTTP client for URLs users name (link previews, push gateways): it connects only to
//! public addresses (`palisade_core::net`'s classification) and to those configured, follows
//! no redirects and uses no proxy, so a user cannot make the server reach its own network.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use palisade_core::{Error, Result, net::reachable};

/// A guarded client that may also reach `allowed`, giving up after `timeout`; `purpose`
/// names it in its user agent.
pub fn guarded_client(
    allowed: Vec<IpAddr>,
    timeout: Duration,
    purpose: &str,
) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(format!("Palisade/{} ({purpose})", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(GuardedDns { allowed: Arc::new(allowed) }))
        .build()
        .map_err(|e| Error::internal(format!("{purpose} client: {e}")))
}

/// Name resolution that keeps only the addresses a guarded client may reach, so the address
/// checked is the address connected to. (An IP literal is never resolved: callers check it
/// with `palisade_core::net::host_reachable`.)
struct GuardedDns {
    allowed: Arc<Vec<IpAddr>>,
}

impl reqwest::dns::Resolve for GuardedDns {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allowed = self.allowed.clone();
        Box::pin(async move {
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let addresses: Vec<SocketAddr> =
                found.filter(|address| reachable(address.ip(), &allowed)).collect();
            if addresses.is_empty() {
                return Err("the name resolves to no address this server may reach".into());
            }
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}
