//! Presence, minimal: what each user last said about themselves, kept in memory.
//!
//! Clients set it on start-up and read it for their contacts; servers sharing a room with a
//! user hear of it. Nothing is pushed through `/sync` yet.

use std::{collections::HashMap, sync::Arc, sync::Mutex};

use palisade_core::{Clock, Error, Result};
use ruma::{OwnedUserId, UserId};

use crate::{AccountService, outbound::OutboundSlot, trust::Actor};

/// A user's presence as they set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    /// `online`, `unavailable` or `offline`.
    pub state: String,
    /// Free-text status.
    pub status_msg: Option<String>,
    /// When it was set, milliseconds since the epoch.
    pub set_at: u64,
}

/// In-memory presence.
pub struct PresenceService {
    accounts: Arc<AccountService>,
    clock: Arc<dyn Clock>,
    outbound: OutboundSlot,
    users: Mutex<HashMap<OwnedUserId, Presence>>,
}

impl PresenceService {
    /// An empty service.
    pub fn new(
        accounts: Arc<AccountService>,
        clock: Arc<dyn Clock>,
        outbound: OutboundSlot,
    ) -> Self {
        Self { accounts, clock, outbound, users: Mutex::new(HashMap::new()) }
    }

    /// A local user sets their presence: recorded, and told to the servers sharing a room
    /// with them.
    pub async fn set_own(
        &self,
        actor: Actor<'_>,
        state: &str,
        status_msg: Option<String>,
    ) -> Result<()> {
        let user = actor.user();
        self.set(user, state, status_msg.clone());
        if let Some(port) = self.outbound.connected() {
            port.send_presence(user, state, status_msg.as_deref()).await?;
        }
        Ok(())
    }

    /// Records what `user` says about themselves (or their server says for them).
    pub fn set(&self, user: &UserId, state: &str, status_msg: Option<String>) {
        let presence =
            Presence { state: state.to_owned(), status_msg, set_at: self.clock.now_millis() };
        self.users.lock().expect("presence poisoned").insert(user.to_owned(), presence);
    }

    /// What `user` last said, with how long ago in milliseconds; `offline` if nothing (for
    /// another server's user, what their server said). `M_NOT_FOUND` for an unknown local user.
    pub async fn get(&self, user: &UserId) -> Result<(Presence, Option<u64>)> {
        if self.accounts.is_local(user) && self.accounts.user(user).await?.is_none() {
            return Err(Error::not_found("No such user"));
        }
        Ok(self.last_said(user))
    }

    fn last_said(&self, user: &UserId) -> (Presence, Option<u64>) {
        let now = self.clock.now_millis();
        match self.users.lock().expect("presence poisoned").get(user) {
            Some(presence) => (presence.clone(), Some(now.saturating_sub(presence.set_at))),
            None => (Presence { state: "offline".to_owned(), status_msg: None, set_at: 0 }, None),
        }
    }
}
