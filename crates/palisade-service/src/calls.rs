//! What calls need of the server: TURN credentials for relaying voice and video.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv3voipturnserver>

use std::sync::Arc;

use base64::Engine;
use hmac::{Hmac, Mac};
use palisade_core::{Clock, Error, Result, config::Turn};
use serde::Serialize;
use sha1::Sha1;

use crate::trust::Actor;

/// Credentials for the TURN servers.
#[derive(Debug, Clone, Serialize)]
pub struct TurnCredentials {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
    /// The servers.
    pub uris: Vec<String>,
    /// How long the credentials last, in seconds.
    pub ttl: u64,
}

/// TURN credentials for calls.
pub struct CallService {
    turn: Turn,
    clock: Arc<dyn Clock>,
}

impl CallService {
    /// The service, with the configured TURN servers.
    pub fn new(turn: Turn, clock: Arc<dyn Clock>) -> Self {
        Self { turn, clock }
    }

    /// Credentials for `actor`, or `None` when no TURN server is configured (clients then
    /// call without a relay). With a shared secret they are the TURN REST API's: the user
    /// name is the expiry and the user id, the password its HMAC-SHA1 under the secret.
    pub fn turn_credentials(&self, actor: Actor<'_>) -> Result<Option<TurnCredentials>> {
        if self.turn.uris.is_empty() || (actor.is_guest() && !self.turn.allow_guests) {
            return Ok(None);
        }
        let ttl = self.turn.ttl_secs;
        let (username, password) = match (&self.turn.shared_secret, &self.turn.username) {
            (Some(secret), _) => {
                let expiry = self.clock.now_millis() / 1000 + ttl;
                let username = format!("{expiry}:{}", actor.user());
                let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes())
                    .map_err(|e| Error::internal(format!("TURN secret: {e}")))?;
                mac.update(username.as_bytes());
                let password =
                    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
                (username, password)
            }
            (None, Some(username)) => {
                (username.clone(), self.turn.password.clone().unwrap_or_default())
            }
            (None, None) => return Ok(None),
        };
        Ok(Some(TurnCredentials { username, password, uris: self.turn.uris.clone(), ttl }))
    }
}
