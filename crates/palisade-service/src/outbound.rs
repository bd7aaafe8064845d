//! The outbound-federation port: what the services ask of other servers. The services decide
//! when another server is needed; `palisade-federation` implements the port (requests,
//! signatures, keys, retries). Until it is connected, other servers are out of reach.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use palisade_core::{Error, ErrorKind, Result};
use ruma::{
    CanonicalJsonObject, OwnedRoomId, OwnedServerName, RoomAliasId, RoomId, RoomVersionId,
    ServerName,
};

use crate::{rooms::RemoteEvent, trust::Actor};

/// Requests to other servers that the services make.
#[async_trait]
pub trait OutboundFederation: Send + Sync {
    /// Joins `actor`'s user to a room through `server` (`make_join`, `send_join`), importing
    /// the room.
    async fn join_through(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        server: &ServerName,
    ) -> Result<()>;

    /// Leaves a room this server is not in (rejects an invite) through `server`
    /// (`make_leave`, `send_leave`), recording the leave.
    async fn leave_through(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        server: &ServerName,
    ) -> Result<()>;

    /// Has the invitee's server countersign an invite built here; returns the countersigned
    /// event, verified. `shown` is the room state the invitee is shown (full PDUs).
    async fn countersign_invite(
        &self,
        invite: &RemoteEvent,
        version: &RoomVersionId,
        shown: &[CanonicalJsonObject],
    ) -> Result<RemoteEvent>;

    /// The room an alias of another server points to, and servers to join it through.
    async fn resolve_alias(
        &self,
        alias: &RoomAliasId,
    ) -> Result<(OwnedRoomId, Vec<OwnedServerName>)>;
}

/// Where the services find the port, connected once federation is built (it is built on the
/// services, so it cannot be passed to them).
#[derive(Clone, Default)]
pub struct OutboundSlot(Arc<OnceLock<Arc<dyn OutboundFederation>>>);

impl OutboundSlot {
    /// Connects the port; later calls are ignored.
    pub fn connect(&self, port: Arc<dyn OutboundFederation>) {
        let _ = self.0.set(port);
    }

    /// The port, or an error saying other servers cannot be reached.
    pub(crate) fn get(&self) -> Result<&Arc<dyn OutboundFederation>> {
        self.0.get().ok_or_else(|| {
            Error::new(ErrorKind::RemoteUnavailable, "This server does not talk to other servers")
        })
    }
}
