//! Accounts: users, passwords, devices and access tokens.
//!
//! Access tokens are 256 random bits; only their SHA-256 is stored, so a leaked database holds
//! no usable token, and lookups by hash reveal nothing a timing attacker could use.

mod interactive;
mod short_lived;

pub use interactive::{Registered, Registration};

use std::{
    collections::BTreeMap,
    sync::{Arc, OnceLock},
};

use argon2::{
    Argon2, PasswordHash, PasswordHasher, PasswordVerifier,
    password_hash::{SaltString, rand_core::OsRng},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use palisade_core::{Clock, Config, Error, ErrorKind, Result, config::TrustMode};
use palisade_storage::{AccountStore, DeviceRow, NewDevice, RefreshedTokens, UserRow};

use self::short_lived::ShortLivedTokens;
use rand::{Rng, RngCore, distributions::Uniform};
use ruma::{
    DeviceId, MilliSecondsSinceUnixEpoch, OwnedDeviceId, OwnedUserId, UInt, UserId,
    api::client::device::Device,
};
use serde_json::json;

use crate::{DeviceTrustService, outbound::OutboundSlot, uia::UiaSessions};
use sha2::{Digest, Sha256};

/// Who is making a request: the owner of a valid access token. Only
/// [`AccountService::authenticate`] makes one, so holding one (or an `Actor` made from it)
/// proves the token was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    user_id: OwnedUserId,
    device_id: OwnedDeviceId,
    guest: bool,
    suspended: bool,
}

impl Session {
    /// The user.
    pub fn user_id(&self) -> &UserId {
        &self.user_id
    }

    /// The device the access token belongs to.
    pub fn device_id(&self) -> &DeviceId {
        &self.device_id
    }

    /// Whether the user is a guest.
    pub fn is_guest(&self) -> bool {
        self.guest
    }

    /// Whether an administrator suspended the account (read-only).
    pub fn is_suspended(&self) -> bool {
        self.suspended
    }
}

/// What anyone may see of a user's profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// Display name.
    pub displayname: Option<String>,
    /// Avatar (an `mxc://` URI).
    pub avatar_url: Option<String>,
    /// The other fields (`m.tz`, custom ones), by name.
    pub fields: BTreeMap<String, serde_json::Value>,
}

impl Profile {
    /// One field, by name; `None` when unset.
    pub fn field(&self, name: &str) -> Option<ruma::profile::ProfileFieldValue> {
        let value = match name {
            "displayname" => self.displayname.clone().map(serde_json::Value::String),
            "avatar_url" => self.avatar_url.clone().map(serde_json::Value::String),
            other => self.fields.get(other).cloned(),
        }?;
        ruma::profile::ProfileFieldValue::new(name, value).ok()
    }
}

/// Longest profile field name (spec).
const MAX_PROFILE_KEY_BYTES: usize = 255;
/// Largest profile (spec).
const MAX_PROFILE_BYTES: usize = 64 * 1024;

/// Where a request came from, as recorded in the audit log.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    /// The client's address.
    pub ip: Option<String>,
    /// Its `User-Agent` header.
    pub user_agent: Option<String>,
}

/// What a user signs in with.
#[derive(Debug, Clone)]
pub enum Credential {
    /// A user id or localpart and its password.
    Password {
        /// The user, as typed.
        user: String,
        /// The password.
        password: String,
    },
    /// A login token a signed-in device issued.
    Token(String),
}

/// A freshly issued login.
#[derive(Debug, Clone)]
pub struct Login {
    /// The user logged in.
    pub user_id: OwnedUserId,
    /// The device created or reused.
    pub device_id: OwnedDeviceId,
    /// The new access token, returned to the client once and never stored.
    pub access_token: String,
    /// The refresh token and when the access token expires, when the client asked for one.
    pub refresh: Option<Refresh>,
}

/// A refresh token, and how long the access token issued with it lasts.
#[derive(Debug, Clone)]
pub struct Refresh {
    /// The refresh token, returned to the client once and never stored.
    pub refresh_token: String,
    /// Milliseconds until the access token expires.
    pub expires_in_ms: u64,
}

/// What a refresh issues: a new access token and a new refresh token.
#[derive(Debug, Clone)]
pub struct Refreshed {
    /// The new access token.
    pub access_token: String,
    /// The new refresh token and the access token's lifetime.
    pub refresh: Refresh,
}

/// Users, passwords, devices and access tokens.
pub struct AccountService {
    config: Arc<Config>,
    store: Arc<dyn AccountStore>,
    trust: Arc<DeviceTrustService>,
    clock: Arc<dyn Clock>,
    /// Other servers, for other servers' users' profiles.
    outbound: OutboundSlot,
    /// Pending user-interactive authentication sessions.
    uia: UiaSessions,
    /// OpenID tokens: short-lived, so kept in memory.
    openid: ShortLivedTokens,
    /// Login tokens a signed-in device asked for, to sign a new device in (single use).
    login_tokens: ShortLivedTokens,
    /// One registration completes at a time, so a retry racing its first attempt on the same
    /// UIA session finds the account that attempt made.
    completing_registration: tokio::sync::Mutex<()>,
}

/// Most OpenID tokens one user holds at once.
const MAX_OPENID_TOKENS_PER_USER: usize = 10;

/// How long an OpenID token proves its user's identity to third parties.
pub const OPENID_TOKEN_LIFETIME_MS: u64 = 3600 * 1000;

/// Minimum password length for new passwords.
const MIN_PASSWORD_LEN: usize = 8;

fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn new_access_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("pal_{}", URL_SAFE_NO_PAD.encode(bytes))
}

fn new_device_id() -> OwnedDeviceId {
    let letters = Uniform::new_inclusive(b'A', b'Z');
    let id: String = rand::thread_rng().sample_iter(letters).take(10).map(char::from).collect();
    id.into()
}

/// A turn to run argon2. Each hash takes about 19 MiB, so unbounded concurrent logins would
/// exhaust memory (and every blocking thread would keep its own allocator arena full of freed
/// hash buffers): at most one hash per core runs at a time, the rest wait.
async fn hashing_permit() -> Result<tokio::sync::SemaphorePermit<'static>> {
    static HASHING: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    let permits = std::thread::available_parallelism().map_or(2, usize::from);
    HASHING
        .get_or_init(|| tokio::sync::Semaphore::new(permits))
        .acquire()
        .await
        .map_err(|e| Error::internal(format!("hashing semaphore: {e}")))
}

/// Hashes a password with argon2id; slow on purpose, so it runs off the async threads.
async fn hash_password(password: String) -> Result<String> {
    let _permit = hashing_permit().await?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| Error::internal(format!("argon2: {e}")))
    })
    .await
    .map_err(|e| Error::internal(format!("hashing task: {e}")))?
}

/// Checks a password against a stored hash; a missing hash is checked against a dummy so that
/// unknown users take as long as known ones.
async fn verify_password(password: String, hash: Option<String>) -> Result<bool> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let _permit = hashing_permit().await?;
    tokio::task::spawn_blocking(move || {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| {
            DUMMY
                .get_or_init(|| {
                    let salt = SaltString::generate(&mut OsRng);
                    Argon2::default()
                        .hash_password(b"palisade-dummy-password", &salt)
                        .expect("hashing a constant succeeds")
                        .to_string()
                })
                .clone()
        });
        let parsed = PasswordHash::new(&hash)
            .map_err(|e| Error::internal(format!("stored password hash unreadable: {e}")))?;
        Ok(known && Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
    })
    .await
    .map_err(|e| Error::internal(format!("hashing task: {e}")))?
}

impl AccountService {
    /// The service over `store`.
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn AccountStore>,
        trust: Arc<DeviceTrustService>,
        clock: Arc<dyn Clock>,
        outbound: OutboundSlot,
    ) -> Self {
        let uia = UiaSessions::new(clock.clone());
        Self {
            config,
            store,
            trust,
            clock,
            outbound,
            uia,
            openid: Default::default(),
            login_tokens: Default::default(),
            completing_registration: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether a user is of this server.
    pub fn is_local(&self, user_id: &UserId) -> bool {
        user_id.server_name() == self.config.server_name
    }

    /// A user's profile: from this server's accounts (`M_NOT_FOUND` for unknown and
    /// deactivated users), or asked of the user's server.
    pub async fn profile(&self, user_id: &UserId) -> Result<Profile> {
        if !self.is_local(user_id) {
            return self.outbound.get()?.query_profile(user_id).await;
        }
        match self.store.user(user_id).await? {
            Some(user) if !user.deactivated => {
                let fields =
                    user.profile_fields.as_deref().and_then(|json| serde_json::from_str(json).ok());
                Ok(Profile {
                    displayname: user.displayname,
                    avatar_url: user.avatar_url,
                    fields: fields.unwrap_or_default(),
                })
            }
            _ => Err(Error::not_found("Profile was not found")),
        }
    }

    /// Sets (or, with `None`, removes) a profile field beyond the display name and avatar:
    /// names of letters, digits, `.`, `_` and `-` up to 255 bytes; the whole profile under
    /// 64 KiB (spec).
    pub(crate) async fn set_profile_field(
        &self,
        user_id: &UserId,
        name: &str,
        value: Option<&serde_json::Value>,
    ) -> Result<()> {
        if name.len() > MAX_PROFILE_KEY_BYTES {
            return Err(Error::new(ErrorKind::KeyTooLarge, "The field name is too long"));
        }
        if name.is_empty()
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(Error::invalid_param("Invalid profile field name"));
        }
        if let Some(value) = value {
            let mut profile = self.profile(user_id).await?;
            profile.fields.insert(name.to_owned(), value.clone());
            let size = serde_json::to_string(&profile.fields).map_or(0, |json| json.len())
                + profile.displayname.map_or(0, |n| n.len())
                + profile.avatar_url.map_or(0, |a| a.len());
            if size > MAX_PROFILE_BYTES {
                return Err(Error::new(
                    ErrorKind::ProfileTooLarge,
                    "The profile would be too large",
                ));
            }
        }
        self.store.set_profile_field(user_id, name, value.map(ToString::to_string)).await
    }

    /// The time now, from the service clock.
    pub fn now(&self) -> u64 {
        self.clock.now_millis()
    }

    /// This server's name.
    pub fn server_name(&self) -> &ruma::ServerName {
        &self.config.server_name
    }

    /// Turns a localpart or full user id into a user id of this server.
    ///
    /// Accepts historical ids too (they may exist); use [`Self::new_user_id`] for new accounts.
    pub fn local_user_id(&self, user: &str) -> Result<OwnedUserId> {
        let user_id = UserId::parse_with_server_name(user.to_lowercase(), &self.config.server_name)
            .map_err(|_| Error::new(ErrorKind::InvalidUsername, "Invalid user id"))?;
        if user_id.server_name() != self.config.server_name {
            return Err(Error::new(ErrorKind::InvalidUsername, "User is not local to this server"));
        }
        Ok(user_id)
    }

    /// Validates a requested localpart for a new account.
    pub fn new_user_id(&self, localpart: &str) -> Result<OwnedUserId> {
        let invalid = || {
            Error::new(
                ErrorKind::InvalidUsername,
                "User ID may contain only a-z, 0-9, '.', '_', '=', '-', '/' and '+'",
            )
        };
        // The grammar of new user ids (spec: appendices, user identifiers); `_` starts the
        // namespace reserved for application services, as in Synapse.
        let allowed =
            |c: char| matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '=' | '-' | '/' | '+');
        if localpart.is_empty() || localpart.starts_with('_') || !localpart.chars().all(allowed) {
            return Err(invalid());
        }
        UserId::parse_with_server_name(localpart, &self.config.server_name).map_err(|_| invalid())
    }

    /// A random user id for a registration that did not name one.
    pub async fn generate_user_id(&self) -> Result<OwnedUserId> {
        loop {
            let mut bytes = [0u8; 6];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            let localpart: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let user_id = self.new_user_id(&localpart)?;
            if self.store.user(&user_id).await?.is_none() {
                return Ok(user_id);
            }
        }
    }

    /// Whether a new account may take this localpart.
    pub async fn check_available(&self, localpart: &str) -> Result<OwnedUserId> {
        let user_id = self.new_user_id(localpart)?;
        if self.store.user(&user_id).await?.is_some() {
            return Err(Error::new(ErrorKind::UserInUse, "User ID already taken"));
        }
        Ok(user_id)
    }

    /// Creates an account.
    pub async fn create_user(
        &self,
        user_id: &UserId,
        password: Option<&str>,
        admin: bool,
    ) -> Result<()> {
        let password_hash = match password {
            Some(password) => {
                check_password_strength(password)?;
                Some(hash_password(password.to_owned()).await?)
            }
            None => None,
        };
        self.insert_account(user_id, password_hash, admin, false).await
    }

    /// Stores a new account (a guest's has no password and is no admin).
    async fn insert_account(
        &self,
        user_id: &UserId,
        password_hash: Option<String>,
        admin: bool,
        guest: bool,
    ) -> Result<()> {
        let row = UserRow {
            user_id: user_id.to_owned(),
            password_hash,
            admin,
            deactivated: false,
            guest,
            created_ts: self.clock.now_millis(),
            displayname: Some(user_id.localpart().to_owned()),
            avatar_url: None,
            locked: false,
            suspended: false,
            profile_fields: None,
        };
        if !self.store.create_user(row).await? {
            return Err(Error::new(ErrorKind::UserInUse, "User ID already taken"));
        }
        tracing::info!(%user_id, admin, guest, "account created");
        Ok(())
    }

    /// A user's account, if it exists.
    pub async fn user(&self, user_id: &UserId) -> Result<Option<UserRow>> {
        self.store.user(user_id).await
    }

    /// Users matching a directory search, at most `limit`, and whether there were more. The
    /// server-notices account is not listed.
    pub async fn search(&self, term: &str, limit: usize) -> Result<(Vec<UserRow>, bool)> {
        // No user id or display name is longer; SQLite refuses patterns past 50,000 bytes.
        const MAX_TERM_CHARS: usize = 1000;
        if term.chars().count() > MAX_TERM_CHARS {
            return Err(Error::invalid_param("The search term is too long"));
        }
        let limit = limit.clamp(1, 100);
        let mut found = self.store.search_users(term.trim(), limit + 1).await?;
        found.retain(|u| u.user_id.localpart() != self.config.server_notices_user);
        let limited = found.len() > limit;
        found.truncate(limit);
        Ok((found, limited))
    }

    /// Every account, ordered by id.
    pub async fn users(&self) -> Result<Vec<UserRow>> {
        self.store.users().await
    }

    /// Checks a user's password. Fails alike for an unknown user and a wrong password.
    pub async fn check_password(&self, user_id: &UserId, password: &str) -> Result<UserRow> {
        let user = self.store.user(user_id).await?;
        let hash = user.as_ref().and_then(|u| u.password_hash.clone());
        let valid = verify_password(password.to_owned(), hash).await?;
        match user {
            Some(user) if user.deactivated => {
                Err(Error::new(ErrorKind::UserDeactivated, "This account has been deactivated"))
            }
            Some(user) if valid => Ok(user),
            _ => Err(Error::forbidden("Invalid username or password")),
        }
    }

    /// Signs in (`/login`) with a password or a login token: a new (or replaced) device and
    /// its token.
    pub async fn login(
        &self,
        credential: Credential,
        device_id: Option<OwnedDeviceId>,
        display_name: Option<String>,
        client: &ClientInfo,
        refresh: bool,
    ) -> Result<Login> {
        match credential {
            Credential::Password { user, password } => {
                self.login_with_password(&user, &password, device_id, display_name, client, refresh)
                    .await
            }
            Credential::Token(token) => {
                self.login_with_token(&token, device_id, display_name, client, refresh).await
            }
        }
    }

    /// Logs in with a password: checks it, then creates (or replaces) a device and its token.
    async fn login_with_password(
        &self,
        user: &str,
        password: &str,
        device_id: Option<OwnedDeviceId>,
        display_name: Option<String>,
        client: &ClientInfo,
        refresh: bool,
    ) -> Result<Login> {
        let user_id = self
            .local_user_id(user)
            .map_err(|_| Error::forbidden("Invalid username or password"))?;
        self.check_password(&user_id, password).await?;
        self.create_session(&user_id, device_id, display_name, client, refresh).await
    }

    /// Issues a new access token on a new (or replaced) device, and records the sign-in;
    /// with a refresh token (the access token then expires) when the client asked for one.
    pub async fn create_session(
        &self,
        user_id: &UserId,
        device_id: Option<OwnedDeviceId>,
        display_name: Option<String>,
        client: &ClientInfo,
        refresh: bool,
    ) -> Result<Login> {
        let max = self.config.device_trust.max_devices_per_account as usize;
        if max > 0 {
            let devices = self.store.devices(user_id).await?;
            let replacing =
                device_id.as_ref().is_some_and(|id| devices.iter().any(|d| d.device_id == *id));
            if !replacing && devices.len() >= max {
                return Err(Error::forbidden(
                    "This account has the most devices allowed: sign one out before signing in here",
                ));
            }
        }
        let device_id = device_id.unwrap_or_else(new_device_id);
        let access_token = new_access_token();
        let now = self.clock.now_millis();
        let refresh = refresh.then(|| Refresh {
            refresh_token: new_access_token(),
            expires_in_ms: self.refreshable_lifetime_ms(),
        });
        self.store
            .create_device(NewDevice {
                user_id: user_id.to_owned(),
                device_id: device_id.clone(),
                display_name: display_name.clone(),
                token_hash: hash_token(&access_token),
                now: self.clock.now_millis(),
                ip: client.ip.clone(),
                user_agent: client.user_agent.clone(),
                approve_if_first: self.trust.mode() != TrustMode::Off,
                expires_ts: refresh.as_ref().map(|r| now + r.expires_in_ms),
                refresh_hash: refresh.as_ref().map(|r| hash_token(&r.refresh_token)),
            })
            .await?;
        let detail = json!({ "ip": client.ip, "user_agent": client.user_agent, "display_name": display_name });
        self.trust.record("device_added", user_id, Some(&device_id), None, detail).await?;
        Ok(Login { user_id: user_id.to_owned(), device_id, access_token, refresh })
    }

    fn refreshable_lifetime_ms(&self) -> u64 {
        self.config.refreshable_access_token_lifetime_secs.saturating_mul(1000).max(1)
    }

    /// Uses a refresh token (`/refresh`): a new access token and refresh token for the same
    /// device; the old access token ends, the old refresh token stays usable until the new
    /// pair is used (spec). `M_UNKNOWN_TOKEN` for an unknown refresh token.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Refreshed> {
        let (access_token, next) = (new_access_token(), new_access_token());
        let now = self.clock.now_millis();
        let expires_in_ms = self.refreshable_lifetime_ms();
        let tokens = RefreshedTokens {
            access_hash: hash_token(&access_token),
            refresh_hash: hash_token(&next),
            expires_ts: now + expires_in_ms,
            now,
        };
        match self.store.refresh_session(&hash_token(refresh_token), tokens).await? {
            Some(_) => Ok(Refreshed {
                access_token,
                refresh: Refresh { refresh_token: next, expires_in_ms },
            }),
            None => Err(Error::new(ErrorKind::UnknownToken, "Unknown refresh token")),
        }
    }

    /// A new OpenID token for `user`, which a third party (an integration, a call service)
    /// exchanges with this server over federation for the user's id.
    pub fn request_openid_token(&self, user: &UserId) -> String {
        let now = self.clock.now_millis();
        let expires = now + OPENID_TOKEN_LIFETIME_MS;
        self.openid.issue(user, now, expires, MAX_OPENID_TOKENS_PER_USER)
    }

    /// The user an unexpired OpenID token was issued to.
    pub fn openid_user(&self, token: &str) -> Result<OwnedUserId> {
        self.openid
            .user(token, self.clock.now_millis(), false)
            .ok_or_else(|| Error::new(ErrorKind::UnknownToken, "Unknown or expired OpenID token"))
    }

    /// The session an access token belongs to.
    pub async fn authenticate(&self, access_token: &str) -> Result<Session> {
        let hash = hash_token(access_token);
        let owner = self.store.token_owner(&hash).await?;
        let owner =
            owner.ok_or_else(|| Error::new(ErrorKind::UnknownToken, "Unknown access token"))?;
        if owner.expires_ts.is_some_and(|expires| expires <= self.clock.now_millis()) {
            return Err(Error::new(ErrorKind::ExpiredToken, "The access token has expired"));
        }
        if owner.refreshed {
            self.store.claim_refreshed_token(&hash).await?;
        }
        if owner.locked {
            return Err(Error::new(ErrorKind::UserLocked, "This account has been locked"));
        }
        Ok(Session {
            user_id: owner.user_id,
            device_id: owner.device_id,
            guest: owner.guest,
            suspended: owner.suspended,
        })
    }

    /// Ends one session: its device and token go.
    pub async fn logout(&self, session: &Session) -> Result<()> {
        let device = Some(session.device_id());
        self.trust.record("device_signed_out", session.user_id(), device, None, json!({})).await?;
        self.store
            .delete_devices(&session.user_id, std::slice::from_ref(&session.device_id))
            .await?;
        Ok(())
    }

    /// Ends every session of the user, optionally sparing one device. `actor` is who did it
    /// when not the user.
    pub async fn logout_all(
        &self,
        user_id: &UserId,
        keep: Option<&DeviceId>,
        actor: Option<&str>,
    ) -> Result<()> {
        let detail = json!({ "kept": keep });
        self.trust.record("all_devices_signed_out", user_id, None, actor, detail).await?;
        self.store.delete_all_devices(user_id, keep).await?;
        Ok(())
    }

    /// Sets a new password.
    pub async fn set_password(&self, user_id: &UserId, password: &str) -> Result<()> {
        check_password_strength(password)?;
        let hash = hash_password(password.to_owned()).await?;
        if !self.store.set_password_hash(user_id, &hash).await? {
            return Err(Error::not_found("No such user"));
        }
        tracing::info!(%user_id, "password changed");
        Ok(())
    }

    /// Grants or revokes server admin.
    pub async fn set_admin(&self, user_id: &UserId, admin: bool) -> Result<()> {
        if !self.store.set_admin(user_id, admin).await? {
            return Err(Error::not_found("No such user"));
        }
        tracing::info!(%user_id, admin, "admin flag changed");
        Ok(())
    }

    /// Deactivates an account: no more logins, every session ends, the id stays reserved.
    pub async fn deactivate(&self, user_id: &UserId) -> Result<()> {
        if !self.store.deactivate_user(user_id).await? {
            return Err(Error::not_found("No such user"));
        }
        tracing::info!(%user_id, "account deactivated");
        Ok(())
    }

    /// Sets or clears the display name.
    pub async fn set_displayname(&self, user_id: &UserId, name: Option<&str>) -> Result<()> {
        self.store.set_displayname(user_id, name).await
    }

    /// Sets or clears the avatar URL.
    pub async fn set_avatar_url(&self, user_id: &UserId, url: Option<&str>) -> Result<()> {
        self.store.set_avatar_url(user_id, url).await
    }

    /// A user's devices.
    pub async fn devices(&self, user_id: &UserId) -> Result<Vec<DeviceRow>> {
        self.store.devices(user_id).await
    }

    /// A user's devices as their owner's clients see them.
    pub async fn client_devices(&self, user_id: &UserId) -> Result<Vec<Device>> {
        Ok(self.devices(user_id).await?.into_iter().map(client_device).collect())
    }

    /// One device as its owner's clients see it, or `M_NOT_FOUND`.
    pub async fn client_device(&self, user_id: &UserId, device_id: &DeviceId) -> Result<Device> {
        self.device(user_id, device_id).await.map(client_device)
    }

    /// One device of a user, or `M_NOT_FOUND`.
    pub async fn device(&self, user_id: &UserId, device_id: &DeviceId) -> Result<DeviceRow> {
        self.store
            .device(user_id, device_id)
            .await?
            .ok_or_else(|| Error::not_found("Device not found"))
    }

    /// Renames a device, or `M_NOT_FOUND`.
    pub async fn rename_device(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        name: Option<&str>,
    ) -> Result<()> {
        if !self.store.set_device_display_name(user_id, device_id, name).await? {
            return Err(Error::not_found("Device not found"));
        }
        Ok(())
    }

    /// Deletes devices and revokes their tokens. Unknown ids are ignored, as the spec asks.
    /// `actor` is who did it when not the user (an administrator).
    pub async fn delete_devices(
        &self,
        user_id: &UserId,
        device_ids: &[OwnedDeviceId],
        actor: Option<&str>,
    ) -> Result<()> {
        self.store.delete_devices(user_id, device_ids).await?;
        for device in device_ids {
            self.trust.record("device_signed_out", user_id, Some(device), actor, json!({})).await?;
        }
        Ok(())
    }
}

fn check_password_strength(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(Error::new(
            ErrorKind::WeakPassword,
            format!("Password must be at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    Ok(())
}

/// A device in the Client-Server API's shape.
fn client_device(row: DeviceRow) -> Device {
    let mut device = Device::new(row.device_id);
    device.display_name = row.display_name;
    device.last_seen_ip = row.last_seen_ip;
    device.last_seen_ts = row.last_seen_ts.and_then(UInt::new).map(MilliSecondsSinceUnixEpoch);
    device
}
