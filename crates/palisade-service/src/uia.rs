//! User-interactive authentication: the 401 dance that guards registration and destructive
//! account operations (deleting devices, changing the password, deactivating).

use std::{collections::HashMap, sync::Arc, sync::Mutex};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use palisade_core::{Clock, Error, ErrorKind, Result};
use rand::RngCore;
use ruma::{OwnedUserId, UserId};
use serde_json::json;

/// What a UIA session authorises; a session cannot be reused for another purpose or user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UiaPurpose {
    /// Creating an account (`m.login.dummy`).
    Register,
    /// Deleting devices.
    DeleteDevices,
    /// Changing the password.
    ChangePassword,
    /// Deactivating the account.
    Deactivate,
    /// Replacing existing cross-signing keys.
    ReplaceCrossSigning,
    /// Issuing a login token for a new device.
    GetLoginToken,
}

/// The `auth` object a client sent, already parsed by the API layer.
#[derive(Debug, Clone)]
pub enum UiaAuth {
    /// `m.login.dummy`.
    Dummy {
        /// The session id, if any.
        session: Option<String>,
    },
    /// `m.login.password` with a user identifier.
    Password {
        /// The session id, if any.
        session: Option<String>,
        /// Localpart or user id from the `m.id.user` identifier.
        user: String,
        /// The password.
        password: String,
    },
    /// A stage this server does not offer.
    Unsupported {
        /// The session id, if any.
        session: Option<String>,
    },
}

impl UiaAuth {
    /// The UIA session the client names.
    pub fn session(&self) -> Option<&str> {
        match self {
            Self::Dummy { session }
            | Self::Password { session, .. }
            | Self::Unsupported { session } => session.as_deref(),
        }
    }
}

struct PendingSession {
    purpose: UiaPurpose,
    user_id: Option<OwnedUserId>,
    created_ms: u64,
    /// The account a completed registration session made: a client repeating the request
    /// gets that account again (as Synapse answers), not "user in use".
    registered: Option<OwnedUserId>,
    /// What a registration's first request named, for a client that does not send it again.
    params: RegistrationParams,
}

/// What a registration request named, remembered in its UIA session (as Synapse does).
#[derive(Debug, Clone, Default)]
pub(crate) struct RegistrationParams {
    /// The user name asked for.
    pub(crate) username: Option<String>,
    /// The password, hashed (the plain password is never kept).
    pub(crate) password_hash: Option<String>,
}

/// Sessions live this long.
const SESSION_TTL_MS: u64 = 15 * 60 * 1000;

/// Pending UIA sessions, in memory: a restart only makes a client start the dance again.
/// The account service holds them (it checks the passwords the stages carry).
pub(crate) struct UiaSessions {
    clock: Arc<dyn Clock>,
    sessions: Mutex<HashMap<String, PendingSession>>,
}

impl UiaSessions {
    /// No pending sessions.
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        Self { clock, sessions: Mutex::new(HashMap::new()) }
    }

    fn stage(purpose: UiaPurpose) -> &'static str {
        match purpose {
            UiaPurpose::Register => "m.login.dummy",
            _ => "m.login.password",
        }
    }

    /// Opens a session and returns the 401 challenge, with an error added if `failure` is given.
    fn challenge(
        &self,
        purpose: UiaPurpose,
        user_id: Option<&UserId>,
        session: Option<&str>,
        failure: Option<&Error>,
    ) -> Error {
        let now = self.clock.now_millis();
        let mut sessions = self.sessions.lock().expect("uia sessions poisoned");
        sessions.retain(|_, s| now.saturating_sub(s.created_ms) < SESSION_TTL_MS);
        let id = match session.filter(|id| sessions.contains_key(*id)) {
            Some(id) => id.to_owned(),
            None => {
                let mut bytes = [0u8; 18];
                rand::rngs::OsRng.fill_bytes(&mut bytes);
                let id = URL_SAFE_NO_PAD.encode(bytes);
                sessions.insert(
                    id.clone(),
                    PendingSession {
                        purpose,
                        user_id: user_id.map(ToOwned::to_owned),
                        created_ms: now,
                        registered: None,
                        params: RegistrationParams::default(),
                    },
                );
                id
            }
        };
        let mut body = json!({
            "flows": [{ "stages": [Self::stage(purpose)] }],
            "params": {},
            "session": id,
            "completed": [],
        });
        if let Some(failure) = failure {
            body["errcode"] = json!(match failure.kind {
                ErrorKind::UserDeactivated => "M_USER_DEACTIVATED",
                ErrorKind::Unrecognized => "M_UNRECOGNIZED",
                _ => "M_FORBIDDEN",
            });
            body["error"] = json!(failure.message);
        }
        Error::new(
            ErrorKind::UserInteractiveAuth(Box::new(body)),
            "Additional authentication required",
        )
    }

    /// The account a registration session already made.
    pub(crate) fn registered(&self, session: &str) -> Option<OwnedUserId> {
        let now = self.clock.now_millis();
        let sessions = self.sessions.lock().expect("uia sessions poisoned");
        let pending = sessions.get(session)?;
        let live = now.saturating_sub(pending.created_ms) < SESSION_TTL_MS;
        pending.registered.clone().filter(|_| live && pending.purpose == UiaPurpose::Register)
    }

    /// Remembers what a registration request named in its session (what it left out keeps
    /// what an earlier request of the session named).
    pub(crate) fn remember_registration(&self, session: &str, params: RegistrationParams) {
        let mut sessions = self.sessions.lock().expect("uia sessions poisoned");
        if let Some(pending) = sessions.get_mut(session)
            && pending.purpose == UiaPurpose::Register
        {
            let remembered = &mut pending.params;
            remembered.username = params.username.or(remembered.username.take());
            remembered.password_hash = params.password_hash.or(remembered.password_hash.take());
        }
    }

    /// What a registration session's requests named.
    pub(crate) fn remembered_registration(&self, session: &str) -> RegistrationParams {
        let sessions = self.sessions.lock().expect("uia sessions poisoned");
        sessions
            .get(session)
            .filter(|pending| pending.purpose == UiaPurpose::Register)
            .map(|pending| pending.params.clone())
            .unwrap_or_default()
    }

    /// Records the account a registration session made.
    pub(crate) fn record_registration(&self, session: &str, user_id: &UserId) {
        let mut sessions = self.sessions.lock().expect("uia sessions poisoned");
        if let Some(pending) = sessions.get_mut(session)
            && pending.purpose == UiaPurpose::Register
        {
            pending.registered = Some(user_id.to_owned());
        }
    }

    /// Completes UIA for `purpose` by `user_id` (`None` while registering), or returns the
    /// 401 challenge to send back. A password stage names its user as the client wrote it,
    /// which `user_named` turns into a user id; `check_password` verifies the password.
    pub(crate) async fn authenticate(
        &self,
        purpose: UiaPurpose,
        user_id: Option<&UserId>,
        auth: Option<UiaAuth>,
        user_named: impl Fn(&str) -> Option<OwnedUserId>,
        check_password: impl AsyncFnOnce(&UserId, &str) -> Result<()>,
    ) -> Result<()> {
        let Some(auth) = auth else {
            return Err(self.challenge(purpose, user_id, None, None));
        };
        let session = auth.session().map(str::to_owned);
        if let Some(id) = &session {
            let sessions = self.sessions.lock().expect("uia sessions poisoned");
            if let Some(pending) = sessions.get(id)
                && (pending.purpose != purpose || pending.user_id.as_deref() != user_id)
            {
                return Err(Error::forbidden("This session was started for another request"));
            }
        }
        let outcome = match (&auth, purpose) {
            (UiaAuth::Dummy { .. }, UiaPurpose::Register) => Ok(()),
            (UiaAuth::Password { user, password, .. }, p) if p != UiaPurpose::Register => {
                let user_id = user_id.ok_or_else(|| Error::forbidden("No user to authenticate"))?;
                if user_named(user).as_deref() != Some(user_id) {
                    return Err(Error::forbidden("Requested user does not match the session"));
                }
                check_password(user_id, password).await
            }
            _ => Err(Error::new(ErrorKind::Unrecognized, "Unsupported authentication stage")),
        };
        match outcome {
            // A registration session stays until it expires, to remember what it made.
            Ok(()) => {
                if let Some(id) = session.filter(|_| purpose != UiaPurpose::Register) {
                    self.sessions.lock().expect("uia sessions poisoned").remove(&id);
                }
                Ok(())
            }
            Err(e) if e.kind == ErrorKind::Internal => Err(e),
            Err(e) => Err(self.challenge(purpose, user_id, session.as_deref(), Some(&e))),
        }
    }
}
