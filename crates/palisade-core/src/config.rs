//! Server configuration: a TOML file, then environment overrides for the common keys.
//!
//! Every key is documented in `palisade.sample.toml` at the repository root; keep the two in step.

use std::{net::SocketAddr, path::PathBuf};

use ruma::{OwnedServerName, OwnedUserId, RoomVersionId};
use serde::Deserialize;

use crate::{Error, Result};

/// Whether anyone may create an account through `/register`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    /// Only administrators create accounts (CLI or admin API).
    #[default]
    Closed,
    /// `/register` with `m.login.dummy` is open to anyone: development and tests only.
    Open,
}

/// Which new rooms get end-to-end encryption without the client asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EncryptionDefault {
    /// Only rooms whose creator asks for it.
    Off,
    /// Invite-only rooms: private chats and direct messages.
    #[default]
    Invite,
    /// Every new room, public ones included.
    All,
}

/// How the server treats devices their owner has not approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TrustMode {
    /// Untrusted devices get no room keys and no key backup until approved.
    #[default]
    Quarantine,
    /// As quarantine, and they see no rooms at all until approved.
    Strict,
    /// Every device is trusted (not recommended).
    Off,
}

/// The device trust policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceTrust {
    /// What an untrusted device may do.
    pub mode: TrustMode,
    /// Most devices an account may have signed in at once (0: no limit).
    pub max_devices_per_account: u32,
    /// Seconds after which a device that was never trusted is signed out (0: never).
    pub untrusted_device_lifetime_secs: u64,
    /// Tell the account's owner, in their server-notices room, when a device signs in, becomes
    /// trusted, or the cross-signing identity changes.
    pub notify_user: bool,
}

impl Default for DeviceTrust {
    fn default() -> Self {
        Self {
            mode: TrustMode::Quarantine,
            max_devices_per_account: 50,
            untrusted_device_lifetime_secs: 7 * 24 * 3600,
            notify_user: true,
        }
    }
}

/// Listener addresses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// Address of the Client-Server API listener.
    #[serde(default = "default_client_listen")]
    pub client: SocketAddr,
    /// Address of the Server-Server API listener (TLS); federation is off without one.
    #[serde(default)]
    pub federation: Option<SocketAddr>,
}

impl Default for Listen {
    fn default() -> Self {
        Self { client: default_client_listen(), federation: None }
    }
}

/// Federation: TLS, trust in peers' certificates and keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Federation {
    /// PEM certificate chain the federation listener presents.
    pub tls_certificate_path: Option<PathBuf>,
    /// PEM private key of that certificate.
    pub tls_private_key_path: Option<PathBuf>,
    /// Without a certificate, generate a self-signed one at start (development and tests).
    pub self_signed_certificate: bool,
    /// Check peers' TLS certificates against the system's roots. Turn off only for tests.
    pub verify_certificates: bool,
    /// Allow federation requests to loopback and private addresses. Off: a server name that
    /// resolves there is refused, so peers cannot make this server probe its own network.
    pub allow_private_addresses: bool,
    /// Notary servers asked for a peer's keys when the peer itself does not answer.
    pub trusted_key_servers: Vec<OwnedServerName>,
    /// Seconds an outgoing request may take.
    pub request_timeout_secs: u64,
    /// Where other servers should connect, announced at `/.well-known/matrix/server` (for a
    /// federation listener behind another host or port, such as a reverse proxy on 443).
    pub delegate_to: Option<OwnedServerName>,
}

impl Default for Federation {
    fn default() -> Self {
        Self {
            tls_certificate_path: None,
            tls_private_key_path: None,
            self_signed_certificate: false,
            verify_certificates: true,
            allow_private_addresses: false,
            trusted_key_servers: Vec::new(),
            request_timeout_secs: 30,
            delegate_to: None,
        }
    }
}

/// The content repository (files people share, avatars).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Media {
    /// Largest upload accepted, in bytes (announced in `/media/config`).
    pub max_upload_bytes: u64,
    /// Most bytes of media one user may have uploaded; unlimited when unset.
    pub per_user_quota_bytes: Option<u64>,
    /// Serve the legacy unauthenticated `/_matrix/media/v3/download` (off, as Synapse with
    /// authenticated media: clients use `/_matrix/client/v1/media`).
    pub allow_legacy_unauthenticated: bool,
    /// Fetch web pages for link previews (`/preview_url`). Off: the server then never connects
    /// to addresses its users name.
    pub url_previews: bool,
    /// Addresses previews may reach although they are not public (an intranet site); every
    /// other loopback, private, link-local or metadata address is refused.
    pub url_preview_allowed_ips: Vec<std::net::IpAddr>,
}

impl Default for Media {
    fn default() -> Self {
        Self {
            max_upload_bytes: 100 * 1024 * 1024,
            per_user_quota_bytes: None,
            allow_legacy_unauthenticated: false,
            url_previews: false,
            url_preview_allowed_ips: Vec::new(),
        }
    }
}

/// Request rate limits: a token bucket per client address and action.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Tokens regained per second.
    pub per_second: f64,
    /// Bucket size: how many requests may come in a burst.
    pub burst: u32,
}

/// Rate limits per action.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    /// `/login` attempts per client address.
    pub login: RateLimit,
    /// `/register` attempts per client address.
    pub registration: RateLimit,
    /// Media uploads (and reservations) per client address.
    pub media_upload: RateLimit,
}

impl Default for RateLimits {
    fn default() -> Self {
        // Synapse's defaults: 0.17/s with a burst of 3.
        let strict = RateLimit { per_second: 0.17, burst: 3 };
        // Synapse's `rc_media_create`.
        let media_upload = RateLimit { per_second: 10.0, burst: 50 };
        Self { login: strict, registration: strict, media_upload }
    }
}

/// The whole server configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The server name: the domain part of user ids and room aliases.
    #[serde(default = "default_server_name")]
    pub server_name: OwnedServerName,
    /// Who may register accounts.
    #[serde(default)]
    pub registration: Registration,
    /// Whether anyone may register a guest account (off by default, as in Synapse): guests
    /// read world-readable rooms and join rooms whose `m.room.guest_access` is `can_join`.
    #[serde(default)]
    pub allow_guest_access: bool,
    /// How long an access token issued with a refresh token lasts, in seconds (Synapse's
    /// `refreshable_access_token_lifetime`; clients that ask for refresh tokens renew it).
    #[serde(default = "default_refreshable_lifetime")]
    pub refreshable_access_token_lifetime_secs: u64,
    /// Whether a signed-in device may issue a login token for a new one
    /// (`/login/get_token`, signing in with a QR code): off by default, as in Synapse. The
    /// new device is a new device like any other: device trust decides until it is approved.
    #[serde(default)]
    pub login_via_existing_session: bool,
    /// Directory holding the database and the signing key.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Base URL clients should use, advertised in `/.well-known/matrix/client`.
    #[serde(default)]
    pub public_baseurl: Option<String>,
    /// Room version of new rooms when the client does not ask for one.
    #[serde(default = "default_room_version")]
    pub default_room_version: RoomVersionId,
    /// Which new rooms are end-to-end encrypted by default.
    #[serde(default)]
    pub encryption_by_default: EncryptionDefault,
    /// Largest request body accepted, in bytes.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// Listener addresses.
    #[serde(default)]
    pub listen: Listen,
    /// Rate limits.
    #[serde(default)]
    pub rate_limits: RateLimits,
    /// The device trust policy.
    #[serde(default)]
    pub device_trust: DeviceTrust,
    /// Localpart of the system account that posts server notices.
    #[serde(default = "default_server_notices_user")]
    pub server_notices_user: String,
    /// Federation settings.
    #[serde(default)]
    pub federation: Federation,
    /// The content repository.
    #[serde(default)]
    pub media: Media,
    /// Push notifications to phones, through the push gateways clients name.
    #[serde(default)]
    pub push: Push,
    /// Who users and other administrators contact about this server
    /// (`/.well-known/matrix/support`).
    #[serde(default)]
    pub support: Support,
    /// Presence (online, away, offline).
    #[serde(default)]
    pub presence: PresenceConfig,
    /// TURN servers that relay voice and video calls (`/voip/turnServer`).
    #[serde(default)]
    pub turn: Turn,
}

/// TURN servers for calls. Clients get time-limited credentials made with the secret shared
/// with the TURN server (coturn's `use-auth-secret`), or the fixed ones configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Turn {
    /// `turn:` and `turns:` URIs of the servers; none: calls get no relay.
    pub uris: Vec<String>,
    /// The secret shared with the TURN server.
    pub shared_secret: Option<String>,
    /// Fixed credentials, for a TURN server without a shared secret.
    pub username: Option<String>,
    /// The password that goes with `username`.
    pub password: Option<String>,
    /// How long credentials last, in seconds.
    pub ttl_secs: u64,
    /// Whether guests get credentials too.
    pub allow_guests: bool,
}

impl Default for Turn {
    fn default() -> Self {
        Self {
            uris: Vec::new(),
            shared_secret: None,
            username: None,
            password: None,
            ttl_secs: 24 * 60 * 60,
            allow_guests: true,
        }
    }
}

/// Presence: on by default, as in Synapse. A large deployment may turn it off: every sign-in
/// and sign-out then no longer wakes everyone sharing a room with the user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PresenceConfig {
    /// Whether presence is kept, sent in `/sync` and exchanged with other servers; when off,
    /// every user reads as offline.
    pub enabled: bool,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// Support contacts, announced at `/.well-known/matrix/support` (none: the document is 404).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Support {
    /// People to contact.
    pub contacts: Vec<SupportContact>,
    /// A web page with the server's support information.
    pub page: Option<String>,
}

/// One support contact: a role and a way to reach them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupportContact {
    /// `m.role.admin` (the server's administrator) or `m.role.security` (security reports).
    pub role: String,
    /// Their Matrix account.
    pub matrix_id: Option<OwnedUserId>,
    /// Their email address.
    pub email_address: Option<String>,
}

/// Push notifications.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Push {
    /// Addresses push gateways may have although they are not public (a gateway on the
    /// organisation's network); every other loopback, private, link-local or metadata address
    /// is refused.
    pub gateway_allowed_ips: Vec<std::net::IpAddr>,
    /// Send message content to push gateways (only for unencrypted rooms, and only to pushers
    /// that asked for the full format). Off keeps content off third-party push services.
    pub include_content: bool,
}

fn default_server_notices_user() -> String {
    "server".to_owned()
}

fn default_server_name() -> OwnedServerName {
    "localhost".try_into().expect("valid server name")
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./palisade-data")
}

fn default_client_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8008))
}

fn default_room_version() -> RoomVersionId {
    RoomVersionId::V12
}

fn default_max_request_bytes() -> usize {
    // Room for a 64 KiB event plus transaction overhead; media gets its own limit.
    1024 * 1024
}

fn default_refreshable_lifetime() -> u64 {
    300
}

impl Default for Config {
    fn default() -> Self {
        Self::from_toml("").expect("the empty config is valid")
    }
}

/// The environment variables that override config keys, and the key each overrides.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("PALISADE_SERVER_NAME", "server_name"),
    ("PALISADE_REGISTRATION", "registration"),
    ("PALISADE_DATA_DIR", "data_dir"),
    ("PALISADE_PUBLIC_BASEURL", "public_baseurl"),
    ("PALISADE_LISTEN_CLIENT", "listen.client"),
    ("PALISADE_LISTEN_FEDERATION", "listen.federation"),
];

impl Config {
    /// Parses a TOML document; absent keys take their defaults.
    pub fn from_toml(text: &str) -> Result<Self> {
        let config: Config = toml::from_str(text)
            .map_err(|e| Error::invalid_param(format!("invalid configuration: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// Parses a TOML document, then applies overrides given as `(variable, value)` pairs
    /// (normally `std::env::vars()`), see [`ENV_OVERRIDES`].
    pub fn from_toml_with_env(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let mut doc: toml::Table = toml::from_str(text)
            .map_err(|e| Error::invalid_param(format!("invalid configuration: {e}")))?;
        for (var, value) in env {
            let Some((_, key)) = ENV_OVERRIDES.iter().find(|(name, _)| *name == var) else {
                continue;
            };
            let mut table = &mut doc;
            let mut parts = key.split('.').peekable();
            while let Some(part) = parts.next() {
                if parts.peek().is_none() {
                    table.insert(part.to_owned(), toml::Value::String(value.clone()));
                } else {
                    table = table
                        .entry(part)
                        .or_insert_with(|| toml::Value::Table(Default::default()))
                        .as_table_mut()
                        .ok_or_else(|| Error::invalid_param(format!("`{part}` is not a table")))?;
                }
            }
        }
        let config: Config = doc
            .try_into()
            .map_err(|e| Error::invalid_param(format!("invalid configuration: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        let federation = &self.federation;
        if self.listen.federation.is_some()
            && federation.tls_certificate_path.is_none()
            && !federation.self_signed_certificate
        {
            return Err(Error::invalid_param(
                "the federation listener needs federation.tls_certificate_path (or \
                 federation.self_signed_certificate for development)",
            ));
        }
        if federation.tls_certificate_path.is_some() != federation.tls_private_key_path.is_some() {
            return Err(Error::invalid_param(
                "federation.tls_certificate_path and tls_private_key_path go together",
            ));
        }
        if !crate::SUPPORTED_ROOM_VERSIONS.contains(&self.default_room_version) {
            return Err(Error::invalid_param(format!(
                "default_room_version {} is not supported",
                self.default_room_version
            )));
        }
        Ok(())
    }

    /// Path of the embedded database.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("palisade.db")
    }

    /// Directory of the content repository's files.
    pub fn media_path(&self) -> PathBuf {
        self.data_dir.join("media")
    }

    /// Path of the server's signing key.
    pub fn signing_key_path(&self) -> PathBuf {
        self.data_dir.join("signing.key")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_closed_localhost() {
        let config = Config::default();
        assert_eq!(config.server_name.as_str(), "localhost");
        assert_eq!(config.registration, Registration::Closed);
        assert_eq!(config.listen.client.to_string(), "127.0.0.1:8008");
        assert_eq!(config.default_room_version, RoomVersionId::V12);
    }

    #[test]
    fn environment_overrides_file() {
        let env = [
            ("PALISADE_REGISTRATION".to_owned(), "open".to_owned()),
            ("PALISADE_LISTEN_CLIENT".to_owned(), "127.0.0.1:9999".to_owned()),
            ("UNRELATED".to_owned(), "x".to_owned()),
        ];
        let config = Config::from_toml_with_env(
            "server_name = \"example.org\"\nregistration = \"closed\"",
            env,
        )
        .unwrap();
        assert_eq!(config.server_name.as_str(), "example.org");
        assert_eq!(config.registration, Registration::Open);
        assert_eq!(config.listen.client.port(), 9999);
    }

    #[test]
    fn sample_config_parses_to_the_defaults() {
        let sample = include_str!("../../../palisade.sample.toml");
        let config = Config::from_toml(sample).unwrap();
        let default = Config::default();
        assert_eq!(config.server_name, default.server_name);
        assert_eq!(config.registration, default.registration);
        assert_eq!(config.data_dir, default.data_dir);
        assert_eq!(config.listen.client, default.listen.client);
        assert_eq!(config.max_request_bytes, default.max_request_bytes);
        assert_eq!(config.encryption_by_default, default.encryption_by_default);
        assert_eq!(config.device_trust.mode, default.device_trust.mode);
        assert_eq!(
            config.device_trust.max_devices_per_account,
            default.device_trust.max_devices_per_account
        );
        assert_eq!(
            config.device_trust.untrusted_device_lifetime_secs,
            default.device_trust.untrusted_device_lifetime_secs
        );
        assert_eq!(config.device_trust.notify_user, default.device_trust.notify_user);
        assert_eq!(config.server_notices_user, default.server_notices_user);
        assert_eq!(config.rate_limits.login.burst, default.rate_limits.login.burst);
        assert_eq!(config.rate_limits.media_upload.burst, default.rate_limits.media_upload.burst);
        assert_eq!(config.listen.federation, default.listen.federation);
        let (federation, defaults) = (&config.federation, &default.federation);
        assert_eq!(federation.verify_certificates, defaults.verify_certificates);
        assert_eq!(federation.allow_private_addresses, defaults.allow_private_addresses);
        assert_eq!(federation.self_signed_certificate, defaults.self_signed_certificate);
        assert_eq!(federation.trusted_key_servers, defaults.trusted_key_servers);
        assert_eq!(federation.request_timeout_secs, defaults.request_timeout_secs);
        assert_eq!(federation.delegate_to, defaults.delegate_to);
        assert_eq!(config.allow_guest_access, default.allow_guest_access);
        let (media, defaults) = (&config.media, &default.media);
        assert_eq!(media.max_upload_bytes, defaults.max_upload_bytes);
        assert_eq!(media.per_user_quota_bytes, defaults.per_user_quota_bytes);
        assert_eq!(media.allow_legacy_unauthenticated, defaults.allow_legacy_unauthenticated);
        assert_eq!(media.url_previews, defaults.url_previews);
        assert_eq!(media.url_preview_allowed_ips, defaults.url_preview_allowed_ips);
    }

    #[test]
    fn unknown_keys_and_bad_versions_are_refused() {
        assert!(Config::from_toml("sever_name = \"typo\"").is_err());
        assert!(Config::from_toml("default_room_version = \"13\"").is_err());
    }
}
