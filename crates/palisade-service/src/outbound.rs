//! The outbound-federation port: what the services ask of other servers. The services decide
//! when another server is needed; `palisade-federation` implements the port (requests,
//! signatures, keys, retries). Until it is connected, other servers are out of reach.

use std::{
    collections::BTreeMap,
    sync::{Arc, OnceLock},
};

use async_trait::async_trait;
use palisade_core::{Error, ErrorKind, Result};
use ruma::{
    CanonicalJsonObject, EventId, OwnedDeviceId, OwnedRoomId, OwnedServerName, OwnedUserId,
    RoomAliasId, RoomId, RoomVersionId, ServerName, UInt, UserId,
    api::federation::{
        directory::get_public_rooms_filtered,
        keys::{claim_keys, get_keys},
        space::get_hierarchy,
    },
};
use serde_json::{Map, Value};

use crate::{accounts::Profile, rooms::RemoteEvent, trust::Actor};

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

    /// Knocks on a room this server is not in through `server` (`make_knock`, `send_knock`),
    /// recording the knock with the room state the server showed.
    async fn knock_through(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        server: &ServerName,
        reason: Option<&str>,
    ) -> Result<()>;

    /// Leaves a room this server is not in (rejects an invite, withdraws a knock) through `server`
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

    /// Another server's user's profile, asked of their server.
    async fn query_profile(&self, user: &UserId) -> Result<Profile>;

    /// A page of another server's public room directory.
    async fn public_rooms(
        &self,
        server: &ServerName,
        since: Option<&str>,
        limit: Option<UInt>,
        search: Option<&str>,
    ) -> Result<get_public_rooms_filtered::v1::Response>;

    /// A space and its children as another server describes them (federation's
    /// `/hierarchy`).
    async fn space_hierarchy(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        suggested_only: bool,
    ) -> Result<get_hierarchy::v1::Response>;

    /// Tells the other servers in a room that a local user started or stopped typing.
    async fn send_typing(&self, room_id: &RoomId, user: &UserId, typing: bool) -> Result<()>;

    /// Tells the other servers in a room about a local user's public read receipt.
    async fn send_receipt(
        &self,
        room_id: &RoomId,
        user: &UserId,
        event_id: &EventId,
        thread: Option<&str>,
    ) -> Result<()>;

    /// Another server's users' device and cross-signing keys, asked of that server.
    async fn query_keys(
        &self,
        server: &ServerName,
        users: BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
    ) -> Result<get_keys::v1::Response>;

    /// One-time keys of another server's users' devices, claimed from that server.
    async fn claim_keys(
        &self,
        server: &ServerName,
        users: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, String>>,
    ) -> Result<claim_keys::v1::Response>;

    /// Relays a local user's to-device messages to `server`'s users (`m.direct_to_device`);
    /// `messages` maps each user to device ids (`*` for all) and contents.
    async fn send_to_device(
        &self,
        server: &ServerName,
        sender: &UserId,
        kind: &str,
        message_id: &str,
        messages: Map<String, Value>,
    ) -> Result<()>;

    /// Tells the servers sharing a room with a local user what they said of their presence.
    async fn send_presence(
        &self,
        user: &UserId,
        presence: &str,
        status_msg: Option<&str>,
    ) -> Result<()>;

    /// Media of another server (`mxc://<server>/<media_id>`), refused past `limit` bytes.
    async fn fetch_media(
        &self,
        server: &ServerName,
        media_id: &str,
        limit: u64,
    ) -> Result<RemoteMedia>;
}

/// Media another server sent.
#[derive(Debug, Clone)]
pub struct RemoteMedia {
    /// The content type it gave.
    pub content_type: Option<String>,
    /// The file name it gave.
    pub file_name: Option<String>,
    /// The content.
    pub bytes: Vec<u8>,
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
    pub fn get(&self) -> Result<&Arc<dyn OutboundFederation>> {
        self.0.get().ok_or_else(|| {
            Error::new(ErrorKind::RemoteUnavailable, "This server does not talk to other servers")
        })
    }

    /// The port, for news other servers get if there are any (typing, receipts, presence).
    pub(crate) fn connected(&self) -> Option<&Arc<dyn OutboundFederation>> {
        self.0.get()
    }
}
