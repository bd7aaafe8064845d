//! Outbound federation requests: find the peer, sign the request (`X-Matrix`), send it over TLS
//! and read the answer into ruma's response type.
//!
//! Spec: <https://spec.matrix.org/v1.19/server-server-api/#resolving-server-names> and
//! <https://spec.matrix.org/v1.19/server-server-api/#request-authentication>

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use palisade_core::{Config, Error, ErrorKind, RemoteRefusal, Result, net::is_public};
use palisade_service::SigningKey;
use ruma::{
    OwnedServerName, ServerName,
    api::{
        IncomingResponse, OutgoingRequest,
        auth_scheme::{AuthScheme, NoAuthentication},
        federation::authentication::{ServerSignatures, ServerSignaturesInput},
        path_builder::SinglePath,
    },
    signatures::Ed25519KeyPair,
};

use crate::policy::ServerPolicy;

/// Default federation port (spec).
const DEFAULT_PORT: u16 = 8448;
/// How long a resolved destination is reused before resolving again.
const RESOLUTION_TTL: Duration = Duration::from_secs(3600);
/// Most resolved destinations remembered at once.
const MAX_RESOLVED: usize = 10_000;
/// Largest response body read from a peer (a `send_join` of a large room is several MB).
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// Largest `/.well-known/matrix/server` document read.
const MAX_WELL_KNOWN_BYTES: usize = 64 * 1024;

/// The authentication schemes outbound federation requests use, and what each needs.
pub trait FederationAuth: AuthScheme {
    /// The input ruma needs to authenticate a request from `origin` to `destination`.
    fn input<'a>(
        origin: &ServerName,
        destination: &ServerName,
        key: &'a Ed25519KeyPair,
    ) -> Self::Input<'a>;
}

impl FederationAuth for ServerSignatures {
    fn input<'a>(
        origin: &ServerName,
        destination: &ServerName,
        key: &'a Ed25519KeyPair,
    ) -> Self::Input<'a> {
        ServerSignaturesInput::new(origin.to_owned(), destination.to_owned(), key)
    }
}

impl FederationAuth for NoAuthentication {
    fn input<'a>(_: &ServerName, _: &ServerName, _: &'a Ed25519KeyPair) -> Self::Input<'a> {}
}

/// Sends signed requests to other servers.
pub struct FederationClient {
    http: reqwest::Client,
    origin: OwnedServerName,
    key: Arc<SigningKey>,
    enabled: bool,
    allow_private: bool,
    policy: Arc<dyn ServerPolicy>,
    dns: Arc<FederationDns>,
    resolved: Mutex<HashMap<OwnedServerName, (String, Instant)>>,
}

impl FederationClient {
    /// A client signing as this server with `key`, under the configured TLS and address rules.
    pub fn new(
        config: &Config,
        key: Arc<SigningKey>,
        policy: Arc<dyn ServerPolicy>,
    ) -> Result<Self> {
        let federation = &config.federation;
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(federation.request_timeout_secs))
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("Palisade/", env!("CARGO_PKG_VERSION")))
            .tls_danger_accept_invalid_certs(!federation.verify_certificates);
        let enabled = config.listen.federation.is_some();
        let dns = Arc::new(FederationDns::new(!federation.allow_private_addresses, enabled));
        builder = builder.dns_resolver(dns.clone());
        let http =
            builder.build().map_err(|e| Error::internal(format!("federation client: {e}")))?;
        Ok(Self {
            http,
            origin: config.server_name.clone(),
            key,
            enabled,
            allow_private: federation.allow_private_addresses,
            policy,
            dns,
            resolved: Mutex::new(HashMap::new()),
        })
    }

    /// Sends `request` to `destination` and parses the answer; errors of the peer come back
    /// with their `errcode` mapped where this server has the same one.
    pub async fn send<R>(&self, destination: &ServerName, request: R) -> Result<R::IncomingResponse>
    where
        R: OutgoingRequest<PathBuilder = SinglePath>,
        R::Authentication: FederationAuth,
    {
        self.send_limited(destination, request, MAX_RESPONSE_BYTES).await
    }

    /// As [`Self::send`], reading at most `limit` bytes of the answer.
    pub async fn send_limited<R>(
        &self,
        destination: &ServerName,
        request: R,
        limit: usize,
    ) -> Result<R::IncomingResponse>
    where
        R: OutgoingRequest<PathBuilder = SinglePath>,
        R::Authentication: FederationAuth,
    {
        let base_url = self.destination_url(destination).await?;
        let input = R::Authentication::input(&self.origin, destination, self.key.pair());
        let http_request = request
            .try_into_http_request::<Vec<u8>>(&base_url, input, ())
            .map_err(|e| Error::internal(format!("building request to {destination}: {e}")))?;
        let request = reqwest::Request::try_from(http_request)
            .map_err(|e| Error::internal(format!("building request to {destination}: {e}")))?;
        let path = request.url().path().to_owned();
        let http_response = self.execute(destination, request, limit).await?;
        R::IncomingResponse::try_from_http_response(http_response).map_err(|e| {
            Error::new(
                ErrorKind::RemoteUnavailable,
                format!("{destination} sent an unreadable response to {path}: {e}"),
            )
        })
    }

    /// An unauthenticated `GET` of `path_and_query` on `destination`'s federation address,
    /// reading at most `limit` bytes: for the legacy endpoints older servers serve instead of
    /// federation ones.
    pub async fn get_unsigned(
        &self,
        destination: &ServerName,
        path_and_query: &str,
        limit: usize,
    ) -> Result<http::Response<Vec<u8>>> {
        let base_url = self.destination_url(destination).await?;
        let url = reqwest::Url::parse(&format!("{base_url}{path_and_query}"))
            .map_err(|e| Error::internal(format!("building request to {destination}: {e}")))?;
        let request = reqwest::Request::new(reqwest::Method::GET, url);
        self.execute(destination, request, limit).await
    }

    /// Where requests to `destination` go, once policy allows them.
    async fn destination_url(&self, destination: &ServerName) -> Result<String> {
        if !self.enabled {
            return Err(Error::forbidden("Federation is disabled on this server"));
        }
        if destination == self.origin {
            return Err(Error::internal("refusing to send a federation request to this server"));
        }
        if !self.policy.may_federate(destination) {
            return Err(Error::forbidden(format!("Federation with {destination} is not allowed")));
        }
        self.resolve(destination).await
    }

    /// Sends `request` and reads at most `limit` bytes of a successful answer; an error answer
    /// becomes the matching [`Error`].
    async fn execute(
        &self,
        destination: &ServerName,
        request: reqwest::Request,
        limit: usize,
    ) -> Result<http::Response<Vec<u8>>> {
        let path = request.url().path().to_owned();
        let mut response = self.http.execute(request).await.map_err(|e| {
            tracing::info!(%destination, %path, error = %e, "federation request failed");
            Error::new(ErrorKind::RemoteUnavailable, format!("{destination} is unreachable"))
        })?;
        let status = response.status();
        let body = read_limited(&mut response, limit)
            .await
            .map_err(|e| Error::new(ErrorKind::RemoteUnavailable, format!("{destination}: {e}")))?;
        if !status.is_success() {
            return Err(remote_error(destination, status, &body));
        }
        let mut http_response = http::Response::new(body);
        *http_response.status_mut() = status;
        *http_response.headers_mut() = std::mem::take(response.headers_mut());
        Ok(http_response)
    }

    /// The base URL requests to `server` go to, following the spec's resolution steps: an IP
    /// literal or explicit port directly; else `.well-known` delegation (whose target is
    /// resolved the same way); else the SRV record; else port 8448.
    async fn resolve(&self, server: &ServerName) -> Result<String> {
        if let Some((url, at)) = self.resolved.lock().expect("resolver poisoned").get(server)
            && at.elapsed() < RESOLUTION_TTL
        {
            return Ok(url.clone());
        }
        let url = match direct_url(server) {
            Some(url) => url,
            None => match self.well_known(server).await {
                Some(delegated) => match direct_url(&delegated) {
                    Some(url) => url,
                    None => self.via_srv(delegated.host()).await,
                },
                None => self.via_srv(server.host()).await,
            },
        };
        if !self.allow_private {
            match literal_ip(&url) {
                Some(ip) if !is_public(ip) => {
                    return Err(Error::forbidden(format!("{server} is on a private address")));
                }
                // URL parsers read such names as IPv4 addresses, which the resolver never sees.
                None if host_of(&url).is_some_and(looks_numeric) => {
                    return Err(Error::forbidden(format!("{server} is not a valid host name")));
                }
                _ => {}
            }
        }
        let mut resolved = self.resolved.lock().expect("resolver poisoned");
        if resolved.len() >= MAX_RESOLVED {
            resolved.retain(|_, (_, at)| at.elapsed() < RESOLUTION_TTL);
        }
        resolved.insert(server.to_owned(), (url.clone(), Instant::now()));
        Ok(url)
    }

    /// The URL of a host without a port: its SRV record's port (connecting to the record's
    /// target), else port 8448.
    async fn via_srv(&self, host: &str) -> String {
        match self.dns.srv(host).await {
            Some((target, port)) => {
                let mut targets = self.dns.srv_targets.lock().expect("dns poisoned");
                if targets.len() >= MAX_RESOLVED {
                    targets.clear();
                }
                targets.insert(host.to_owned(), target);
                format!("https://{host}:{port}")
            }
            None => format!("https://{host}:{DEFAULT_PORT}"),
        }
    }

    /// The server a name delegates to in `/.well-known/matrix/server`, if it does.
    async fn well_known(&self, server: &ServerName) -> Option<OwnedServerName> {
        #[derive(serde::Deserialize)]
        struct WellKnown {
            #[serde(rename = "m.server")]
            server: OwnedServerName,
        }
        let url = format!("https://{}/.well-known/matrix/server", server.host());
        let mut response = self.http.get(url).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let bytes = read_limited(&mut response, MAX_WELL_KNOWN_BYTES).await.ok()?;
        serde_json::from_slice::<WellKnown>(&bytes).ok().map(|w| w.server)
    }
}

/// Reads a response body, refusing one larger than `limit` bytes.
async fn read_limited(response: &mut reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > limit {
            return Err("response too large".to_owned());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Whether a host that is not an IP literal would still be read as an IPv4 address by URL
/// parsers (`2130706433`, `127.1`, `0x7f.1`): its last label is a number.
fn looks_numeric(host: &str) -> bool {
    let last = host.rsplit('.').find(|label| !label.is_empty()).unwrap_or(host);
    let hex = last.strip_prefix("0x").or_else(|| last.strip_prefix("0X"));
    match hex {
        Some(digits) => digits.chars().all(|c| c.is_ascii_hexdigit()),
        None => !last.is_empty() && last.chars().all(|c| c.is_ascii_digit()),
    }
}

/// The URL of a server name that needs no discovery: an IP literal or a name with a port.
fn direct_url(server: &ServerName) -> Option<String> {
    let host = server.host();
    match server.port() {
        Some(port) => Some(format!("https://{host}:{port}")),
        None if server.is_ip_literal() => Some(format!("https://{host}:{DEFAULT_PORT}")),
        None => None,
    }
}

/// The host of a base URL (`https://host:port`), without brackets.
fn host_of(url: &str) -> Option<&str> {
    let authority = url.strip_prefix("https://")?;
    match authority.strip_prefix('[') {
        Some(rest) => rest.split(']').next(),
        None => Some(authority.rsplit_once(':').map_or(authority, |(host, _)| host)),
    }
}

/// The IP address in a base URL, when its host is one.
fn literal_ip(url: &str) -> Option<IpAddr> {
    host_of(url)?.parse().ok()
}

/// DNS for federation: SRV records for discovery, and address lookups that follow them (a
/// name whose SRV record points elsewhere connects there, while TLS and `Host` keep the name)
/// and, unless private addresses are allowed, drop private addresses so a peer's name cannot
/// point this server at its own network.
struct FederationDns {
    resolver: Option<hickory_resolver::TokioResolver>,
    srv_targets: Mutex<HashMap<String, String>>,
    public_only: bool,
}

impl FederationDns {
    fn new(public_only: bool, federating: bool) -> Self {
        // A server that does not federate never looks up SRV records.
        let resolver = federating
            .then(|| {
                hickory_resolver::TokioResolver::builder_tokio()
                    .and_then(|builder| builder.build())
                    .map_err(|error| tracing::warn!(%error, "no DNS resolver for SRV lookups"))
                    .ok()
            })
            .flatten();
        Self { resolver, srv_targets: Mutex::new(HashMap::new()), public_only }
    }

    /// The target and port of a host's federation SRV record (`_matrix-fed._tcp`, then the
    /// deprecated `_matrix._tcp`), the best by priority then weight.
    async fn srv(&self, host: &str) -> Option<(String, u16)> {
        let resolver = self.resolver.as_ref()?;
        for service in ["_matrix-fed._tcp", "_matrix._tcp"] {
            let Ok(lookup) = resolver.srv_lookup(format!("{service}.{host}.")).await else {
                continue;
            };
            let best = lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    hickory_resolver::proto::rr::RData::SRV(srv) => Some(srv),
                    _ => None,
                })
                .min_by_key(|srv| (srv.priority, std::cmp::Reverse(srv.weight)));
            if let Some(srv) = best {
                let target = srv.target.to_utf8().trim_end_matches('.').to_owned();
                return Some((target, srv.port));
            }
        }
        None
    }
}

impl reqwest::dns::Resolve for FederationDns {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = self
            .srv_targets
            .lock()
            .expect("dns poisoned")
            .get(name.as_str())
            .cloned()
            .unwrap_or_else(|| name.as_str().to_owned());
        let public_only = self.public_only;
        Box::pin(async move {
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|address| !public_only || is_public(address.ip()))
                .collect();
            if addresses.is_empty() {
                return Err(format!("{host} has no usable address").into());
            }
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A peer's error answer as this server's error: a refusal, by what it meant, or a failure.
fn remote_error(destination: &ServerName, status: http::StatusCode, body: &[u8]) -> Error {
    #[derive(serde::Deserialize)]
    struct MatrixError {
        errcode: String,
        #[serde(default)]
        error: String,
    }
    let Ok(error) = serde_json::from_slice::<MatrixError>(body) else {
        if status == http::StatusCode::NOT_FOUND {
            let kind = ErrorKind::RemoteRefused(RemoteRefusal::Unrecognized);
            return Error::new(kind, format!("{destination} has no such endpoint"));
        }
        return Error::new(
            ErrorKind::RemoteUnavailable,
            format!("{destination} answered {status}"),
        );
    };
    let refusal = match error.errcode.as_str() {
        "M_FORBIDDEN" => RemoteRefusal::Forbidden,
        "M_NOT_FOUND" => RemoteRefusal::NotFound,
        "M_UNRECOGNIZED" => RemoteRefusal::Unrecognized,
        "M_UNSUPPORTED_ROOM_VERSION" | "M_INCOMPATIBLE_ROOM_VERSION" => {
            RemoteRefusal::UnsupportedRoomVersion
        }
        "M_BAD_JSON" | "M_NOT_JSON" | "M_INVALID_PARAM" | "M_MISSING_PARAM" => RemoteRefusal::Other,
        // Anything else (rate limits, authentication hiccups, failures) may pass.
        _ => {
            return Error::new(
                ErrorKind::RemoteUnavailable,
                format!("{destination}: {} {}", error.errcode, error.error),
            );
        }
    };
    let kind = ErrorKind::RemoteRefused(refusal);
    Error::new(kind, format!("{destination}: {} {}", error.errcode, error.error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_recognised() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.4",
            "169.254.1.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "100.64.0.1",
            "0.0.0.0",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for private in ["64:ff9b::7f00:1", "2002:7f00:1::", "::7f00:1", "198.18.0.1", "240.0.0.1"] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for numeric in ["2130706433", "127.1", "0x7f.1", "10.0.0.1.", "0X7F"] {
            assert!(looks_numeric(numeric), "{numeric}");
        }
        for name in ["example.org", "matrix.example.org", "1password.com", "x.0xyz"] {
            assert!(!looks_numeric(name), "{name}");
        }
        for public in ["8.8.8.8", "2a00:1450::1", "172.32.0.1"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn destinations_with_ports_and_literals_need_no_discovery() {
        let url = |s: &str| direct_url(<&ServerName>::try_from(s).unwrap());
        assert_eq!(url("127.0.0.1:28448").as_deref(), Some("https://127.0.0.1:28448"));
        assert_eq!(url("[::1]").as_deref(), Some("https://[::1]:8448"));
        assert_eq!(url("example.org:443").as_deref(), Some("https://example.org:443"));
        assert_eq!(url("example.org"), None);
        assert_eq!(literal_ip("https://[::1]:8448"), Some("::1".parse().unwrap()));
        assert_eq!(literal_ip("https://127.0.0.1:28448"), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(literal_ip("https://example.org:8448"), None);
    }
}
