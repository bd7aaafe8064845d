//! The account operations a password (or, for registration, the dummy stage) must confirm:
//! registering, changing the password, deactivating, deleting devices. Each is one call that
//! runs user-interactive authentication before it changes anything.

use palisade_core::{Error, ErrorKind, Result, config::Registration as RegistrationPolicy};
use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};

use super::{AccountService, ClientInfo, Login, Session, check_password_strength, hash_password};
use crate::{
    trust::Need,
    uia::{RegistrationParams, UiaAuth, UiaPurpose},
};

/// How long a login token lasts (Synapse's default).
const LOGIN_TOKEN_LIFETIME_MS: u64 = 5 * 60 * 1000;

/// A registration request.
#[derive(Debug, Clone, Default)]
pub struct Registration {
    /// A guest account (`kind=guest`): no name, password or authentication is read.
    pub guest: bool,
    /// The access token of the guest account this registration turns into a full one (its
    /// `username` must be the guest's).
    pub guest_access_token: Option<String>,
    /// The localpart asked for (downcased, as Synapse does); a random one when `None`.
    pub username: Option<String>,
    /// The password; an account registered without one cannot sign in with a password.
    pub password: Option<String>,
    /// The device to sign in on.
    pub device_id: Option<OwnedDeviceId>,
    /// That device's display name.
    pub device_display_name: Option<String>,
    /// Create the account without signing in.
    pub inhibit_login: bool,
    /// Sign in with a refresh token (the access token then expires).
    pub refresh_token: bool,
    /// The client's UIA `auth`.
    pub auth: Option<UiaAuth>,
}

/// What a registration made: the account, and the sign-in unless it was inhibited.
#[derive(Debug, Clone)]
pub struct Registered {
    /// The new account.
    pub user_id: OwnedUserId,
    /// The new session.
    pub login: Option<Login>,
}

impl AccountService {
    /// Completes user-interactive authentication for `purpose` by `user_id` (`None` while
    /// registering), or answers with the 401 challenge to send back.
    pub async fn authenticate_interactively(
        &self,
        purpose: UiaPurpose,
        user_id: Option<&UserId>,
        auth: Option<UiaAuth>,
    ) -> Result<()> {
        let user_named = |user: &str| self.local_user_id(user).ok();
        let check_password = async |user_id: &UserId, password: &str| {
            self.check_password(user_id, password).await.map(drop)
        };
        self.uia.authenticate(purpose, user_id, auth, user_named, check_password).await
    }

    /// Refuses registration unless the configuration opens it.
    pub fn ensure_registration_open(&self) -> Result<()> {
        match self.config.registration {
            RegistrationPolicy::Open => Ok(()),
            RegistrationPolicy::Closed => {
                Err(Error::new(ErrorKind::RegistrationDisabled, "Registration has been disabled"))
            }
        }
    }

    /// Whether a new account could take `localpart` now (registration must be open).
    pub async fn username_available(&self, localpart: &str) -> Result<OwnedUserId> {
        self.ensure_registration_open()?;
        self.check_available(localpart).await
    }

    /// Registers an account and, unless inhibited, signs it in. A taken or malformed name is
    /// refused before the client goes through authentication.
    pub async fn register(
        &self,
        mut registration: Registration,
        client: &ClientInfo,
    ) -> Result<Registered> {
        if registration.guest {
            let Registration { device_display_name, refresh_token, .. } = registration;
            return self.register_guest(device_display_name, client, refresh_token).await;
        }
        self.ensure_registration_open()?;
        let session = registration.auth.as_ref().and_then(UiaAuth::session).map(str::to_owned);
        // The same completed session again: the account it made, signed in again.
        if let Some(user_id) = session.as_deref().and_then(|id| self.uia.registered(id)) {
            let login = self.login_after_registration(&user_id, registration, client).await?;
            return Ok(Registered { user_id, login });
        }
        let upgrading = match &registration.guest_access_token {
            Some(token) => {
                Some(self.guest_to_upgrade(token, registration.username.as_deref()).await?)
            }
            None => None,
        };
        let user_id = match (&upgrading, &registration.username) {
            (Some(guest), _) => Some(guest.clone()),
            (None, Some(name)) => match self.check_available(&name.to_lowercase()).await {
                Ok(user_id) => Some(user_id),
                // Taken, perhaps by this session's first attempt finishing meanwhile.
                Err(error) if error.kind == ErrorKind::UserInUse => {
                    let made = match &session {
                        Some(id) => {
                            let _completed = self.completing_registration.lock().await;
                            self.uia.registered(id)
                        }
                        None => None,
                    };
                    let Some(user_id) = made else { return Err(error) };
                    let login =
                        self.login_after_registration(&user_id, registration, client).await?;
                    return Ok(Registered { user_id, login });
                }
                Err(error) => return Err(error),
            },
            (None, None) => None,
        };
        let password_hash = match &registration.password {
            Some(password) => {
                check_password_strength(password)?;
                Some(hash_password(password.clone()).await?)
            }
            None => None,
        };
        let auth = registration.auth.take();
        if let Err(error) = self.authenticate_interactively(UiaPurpose::Register, None, auth).await
        {
            // The session the challenge opens (or continues) remembers what this request
            // named, for a client that sends its name and password only once (Synapse does).
            if let ErrorKind::UserInteractiveAuth(body) = &error.kind
                && let Some(id) = body["session"].as_str()
            {
                let username = registration.username.clone();
                self.uia.remember_registration(id, RegistrationParams { username, password_hash });
            }
            return Err(error);
        }
        let _completing = self.completing_registration.lock().await;
        // A retry that raced the first attempt: the account it made.
        if let Some(user_id) = session.as_deref().and_then(|id| self.uia.registered(id)) {
            let login = self.login_after_registration(&user_id, registration, client).await?;
            return Ok(Registered { user_id, login });
        }
        let remembered = match &session {
            Some(id) => self.uia.remembered_registration(id),
            None => RegistrationParams::default(),
        };
        let password_hash = password_hash.or(remembered.password_hash);
        if registration.username.is_none()
            && remembered.username.is_none()
            && password_hash.is_none()
        {
            return Err(Error::new(ErrorKind::MissingParam, "Missing password"));
        }
        let user_id = match (user_id, remembered.username) {
            (Some(user_id), _) => user_id,
            (None, Some(name)) => self.check_available(&name.to_lowercase()).await?,
            (None, None) => self.generate_user_id().await?,
        };
        if upgrading.is_some() {
            if !self.store.upgrade_guest(&user_id, password_hash.as_deref()).await? {
                return Err(Error::forbidden("This account is no longer a guest's"));
            }
            tracing::info!(%user_id, "guest account upgraded");
        } else {
            self.insert_account(&user_id, password_hash, false, false).await?;
        }
        if let Some(id) = &session {
            self.uia.record_registration(id, &user_id);
        }
        let login = self.login_after_registration(&user_id, registration, client).await?;
        Ok(Registered { user_id, login })
    }

    /// The guest account a registration with `guest_access_token` upgrades: the token must be
    /// a guest's, and the name asked for that guest's (as Synapse checks).
    async fn guest_to_upgrade(&self, token: &str, username: Option<&str>) -> Result<OwnedUserId> {
        let refused = || {
            Error::forbidden(
                "Cannot register taken user ID without valid guest credentials for that user",
            )
        };
        let session = self.authenticate(token).await.map_err(|_| refused())?;
        let named =
            username.is_some_and(|name| name.to_lowercase() == session.user_id().localpart());
        if !session.is_guest() || !named {
            return Err(refused());
        }
        Ok(session.user_id().to_owned())
    }

    /// The sign-in a registration asks for, unless it inhibits it.
    async fn login_after_registration(
        &self,
        user_id: &UserId,
        registration: Registration,
        client: &ClientInfo,
    ) -> Result<Option<Login>> {
        if registration.inhibit_login {
            return Ok(None);
        }
        let Registration { device_id, device_display_name, refresh_token, .. } = registration;
        self.create_session(user_id, device_id, device_display_name, client, refresh_token)
            .await
            .map(Some)
    }

    /// Registers a guest account (when the configuration allows guests) and signs it in.
    async fn register_guest(
        &self,
        device_display_name: Option<String>,
        client: &ClientInfo,
        refresh: bool,
    ) -> Result<Registered> {
        if !self.config.allow_guest_access {
            return Err(Error::forbidden("Guest access is disabled"));
        }
        let user_id = self.generate_user_id().await?;
        self.insert_account(&user_id, None, false, true).await?;
        let login =
            self.create_session(&user_id, None, device_display_name, client, refresh).await?;
        Ok(Registered { user_id, login: Some(login) })
    }

    /// A single-use login token with which a new device signs in (`/login/get_token`, for
    /// signing in with a QR code), after the user confirms with their password; with its
    /// lifetime in milliseconds. Only when `login_via_existing_session` is on (else the
    /// endpoint is unknown, as in Synapse), and recorded in the audit log.
    pub async fn issue_login_token(
        &self,
        session: &Session,
        auth: Option<UiaAuth>,
    ) -> Result<(String, u64)> {
        // Only a device the owner approved may let another in.
        self.trust.require(session.into(), Need::Approval, "get_login_token").await?;
        if !self.config.login_via_existing_session {
            return Err(Error::new(ErrorKind::Unrecognized, "Unrecognized request"));
        }
        let user = session.user_id();
        self.authenticate_interactively(UiaPurpose::GetLoginToken, Some(user), auth).await?;
        let now = self.clock.now_millis();
        let token = self.login_tokens.issue(user, now, now + LOGIN_TOKEN_LIFETIME_MS, 10);
        let device = Some(session.device_id());
        self.trust.record("login_token_issued", user, device, None, serde_json::json!({})).await?;
        Ok((token, LOGIN_TOKEN_LIFETIME_MS))
    }

    /// Signs in with a login token (`m.login.token`), which is then spent.
    pub(super) async fn login_with_token(
        &self,
        token: &str,
        device_id: Option<OwnedDeviceId>,
        display_name: Option<String>,
        client: &ClientInfo,
        refresh: bool,
    ) -> Result<Login> {
        if !self.config.login_via_existing_session {
            return Err(Error::new(ErrorKind::UnknownLoginType, "Unknown login type"));
        }
        let user = self
            .login_tokens
            .user(token, self.clock.now_millis(), true)
            .ok_or_else(|| Error::forbidden("Invalid or expired login token"))?;
        self.create_session(&user, device_id, display_name, client, refresh).await
    }

    /// Changes the session's user's password, optionally signing out every other device.
    pub async fn change_password(
        &self,
        session: &Session,
        new_password: &str,
        logout_devices: bool,
        auth: Option<UiaAuth>,
    ) -> Result<()> {
        let user = session.user_id();
        self.authenticate_interactively(UiaPurpose::ChangePassword, Some(user), auth).await?;
        self.set_password(user, new_password).await?;
        if logout_devices {
            self.logout_all(user, Some(session.device_id()), None).await?;
        }
        Ok(())
    }

    /// Deactivates the session's own account.
    pub async fn deactivate_own(&self, session: &Session, auth: Option<UiaAuth>) -> Result<()> {
        let user = session.user_id();
        self.authenticate_interactively(UiaPurpose::Deactivate, Some(user), auth).await?;
        self.deactivate(user).await
    }

    /// Deletes one of the user's devices; an unknown one is reported before authentication,
    /// as Synapse does.
    pub async fn delete_own_device(
        &self,
        session: &Session,
        device: &DeviceId,
        auth: Option<UiaAuth>,
    ) -> Result<()> {
        self.device(session.user_id(), device).await?;
        self.delete_own_devices(session, &[device.to_owned()], auth).await
    }

    /// Deletes devices of the user's (unknown ids are ignored, as the spec asks).
    pub async fn delete_own_devices(
        &self,
        session: &Session,
        devices: &[OwnedDeviceId],
        auth: Option<UiaAuth>,
    ) -> Result<()> {
        let user = session.user_id();
        self.authenticate_interactively(UiaPurpose::DeleteDevices, Some(user), auth).await?;
        self.delete_devices(user, devices, None).await
    }
}
