//! Rooms: events (PDUs), state snapshots, forward extremities, memberships and aliases.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use palisade_core::Result;
use ruma::{
    DeviceId, EventId, OwnedDeviceId, OwnedEventId, OwnedRoomAliasId, OwnedRoomId, OwnedUserId,
    RoomAliasId, RoomId, RoomVersionId, ServerName, UserId, api::Direction,
};

use crate::{SearchHit, SearchQuery};

/// Room state: `(event type, state key)` to the id of the state event.
pub type StateMap = HashMap<(String, String), OwnedEventId>;

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    /// Position in the server-wide stream: the order events were committed in.
    pub stream_pos: u64,
    /// The event id (reference hash).
    pub event_id: OwnedEventId,
    /// The room.
    pub room_id: OwnedRoomId,
    /// Event type.
    pub kind: String,
    /// State key, for state events.
    pub state_key: Option<String>,
    /// Sender.
    pub sender: OwnedUserId,
    /// The full signed PDU as canonical JSON.
    pub json: String,
    /// Extra fields for the client's `unsigned` (`prev_content`, `replaces_state`), as JSON.
    pub unsigned: Option<String>,
    /// The device and transaction id the sender used, for local sends.
    pub txn: Option<(OwnedDeviceId, String)>,
    /// The redaction event that redacted this one, if any.
    pub redacted_by: Option<OwnedEventId>,
    /// The state snapshot after this event (meaningless for an outlier).
    pub state_group: u64,
    /// Stored for reference, not part of the timeline (see [`StateUpdate::Outlier`]).
    pub outlier: bool,
}

/// How an appended event moves the room's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StateUpdate {
    /// The event follows the current state: a state event replaces its key in it.
    #[default]
    Linear,
    /// The state after the event and the room's new current state, as the caller resolved
    /// them (an event from another server on a fork, or the first event of a joined room).
    Resolved {
        /// The state after the event.
        after: StateMap,
        /// The room's current state once the event is in.
        current: StateMap,
    },
    /// Not part of the timeline (an auth or state event fetched from another server, or an
    /// event that failed against the current state): stored for reference only.
    Outlier,
    /// History from before this server joined, placed in the timeline with the room's current
    /// state; it changes no state, extremity or membership (an outlier becomes part of the
    /// timeline).
    History,
    /// A membership event of a local user in a room this server is not in (an invite from
    /// another server, or its rejection): stored as an outlier, it updates the membership
    /// index only.
    MembershipOnly,
}

/// An event to append, with everything derived from it that must commit together.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The event id.
    pub event_id: OwnedEventId,
    /// The room.
    pub room_id: OwnedRoomId,
    /// Event type.
    pub kind: String,
    /// State key, for state events.
    pub state_key: Option<String>,
    /// Sender.
    pub sender: OwnedUserId,
    /// Depth in the room DAG.
    pub depth: u64,
    /// Origin timestamp.
    pub origin_server_ts: u64,
    /// The full signed PDU as canonical JSON.
    pub json: String,
    /// Client `unsigned` extras, as JSON.
    pub unsigned: Option<String>,
    /// The events this one points at; they stop being forward extremities.
    pub prev_events: Vec<OwnedEventId>,
    /// For `m.room.member`: the target's new membership.
    pub membership: Option<String>,
    /// For `m.room.create`: the new room's version (the room row is created with the event).
    pub creates_room: Option<RoomVersionId>,
    /// For redactions: the event redacted.
    pub redacts: Option<OwnedEventId>,
    /// The device and transaction id of a local send.
    pub txn: Option<(OwnedDeviceId, String)>,
    /// How the event moves the room's state.
    pub state: StateUpdate,
}

/// Where an appended event landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Its stream position.
    pub stream_pos: u64,
    /// The state snapshot after it.
    pub state_group: u64,
    /// The room's current state snapshot once it is in.
    pub current_group: u64,
}

/// The current state of a room, as the event pipeline needs it.
#[derive(Debug, Clone)]
pub struct RoomSnapshot {
    /// Room version.
    pub version: RoomVersionId,
    /// The current state snapshot.
    pub state_group: u64,
    /// The current state.
    pub state: StateMap,
    /// Forward extremities with their depths.
    pub extremities: Vec<(OwnedEventId, u64)>,
}

/// What relates to some events, for bundling with them (see [`RoomStore::aggregations`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aggregations {
    /// Thread root, reply count, latest reply, whether the user replied.
    pub threads: Vec<(OwnedEventId, u64, OwnedEventId, bool)>,
    /// Edited event, its latest edit.
    pub edits: Vec<(OwnedEventId, OwnedEventId)>,
    /// Referenced event, a reference to it (in stream order).
    pub references: Vec<(OwnedEventId, OwnedEventId)>,
}

/// A user's membership in a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipRow {
    /// The room.
    pub room_id: OwnedRoomId,
    /// The user.
    pub user_id: OwnedUserId,
    /// `join`, `invite`, `leave`, `ban` or `knock`.
    pub membership: String,
    /// The membership event.
    pub event_id: OwnedEventId,
    /// Stream position of the membership event.
    pub stream_pos: u64,
}

/// Rooms and their events.
#[async_trait]
pub trait RoomStore: Send + Sync {
    /// Appends an event and everything derived from it in one transaction: the event row, a
    /// new state snapshot for state events, the room's current state and extremities, the
    /// membership index and the redaction mark.
    async fn append_event(&self, event: NewEvent) -> Result<Appended>;
    /// Creates a room this server learns of from another server, with empty state, unless it
    /// exists; its state comes later ([`RoomStore::reset_room_state`]). An `authoritative`
    /// version (from the resident server this server joins through) replaces the one stored
    /// (which may have come with an invite, from a server that could have lied about it).
    async fn import_room(
        &self,
        room_id: &RoomId,
        version: &RoomVersionId,
        authoritative: bool,
    ) -> Result<()>;
    /// Timeline events of every room after stream position `pos`, in stream order.
    async fn events_after(&self, pos: u64, limit: usize) -> Result<Vec<EventRow>>;
    /// Replaces a room's current state with `state` (the state a joining server learns), with
    /// the membership index (memberships the state does not have are dropped); returns the new
    /// snapshot.
    async fn reset_room_state(&self, room_id: &RoomId, state: StateMap) -> Result<u64>;
    /// Whether an event is stored (as part of the timeline or as an outlier).
    async fn has_event(&self, event_id: &EventId) -> Result<bool>;
    /// The room's current state and extremities; `None` for an unknown room.
    async fn room_snapshot(&self, room_id: &RoomId) -> Result<Option<RoomSnapshot>>;
    /// One event.
    async fn event(&self, event_id: &EventId) -> Result<Option<EventRow>>;
    /// The state snapshot after an event; `None` if the event is unknown.
    async fn state_after(&self, event_id: &EventId) -> Result<Option<StateMap>>;
    /// Events of a room with `after < stream_pos <= up_to`, walked in `direction`.
    async fn timeline(
        &self,
        room_id: &RoomId,
        after: u64,
        up_to: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<EventRow>>;
    /// The event a device sent with a transaction id.
    async fn event_for_txn(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        txn_id: &str,
    ) -> Result<Option<OwnedEventId>>;
    /// A user's membership in a room.
    async fn membership(&self, room_id: &RoomId, user_id: &UserId)
    -> Result<Option<MembershipRow>>;
    /// Every membership of a room.
    async fn members(&self, room_id: &RoomId) -> Result<Vec<MembershipRow>>;
    /// One entry of a state snapshot: the event id at `(kind, state_key)`, if any.
    async fn state_entry(
        &self,
        state_group: u64,
        kind: &str,
        state_key: &str,
    ) -> Result<Option<OwnedEventId>>;
    /// How many users are joined to a room.
    async fn joined_count(&self, room_id: &RoomId) -> Result<u64>;
    /// Whether a user of `server` is joined to a room.
    async fn server_joined(&self, room_id: &RoomId, server: &ServerName) -> Result<bool>;
    /// Memberships that changed after stream position `since` in the rooms `user_id` is
    /// joined to.
    async fn members_changed_in_joined_rooms(
        &self,
        user_id: &UserId,
        since: u64,
    ) -> Result<Vec<MembershipRow>>;
    /// The events relating to `target` (of `rel_type` and `event_type` when given) with
    /// stream positions strictly between the bounds, walked in `direction`, at most `limit`.
    #[expect(clippy::too_many_arguments, reason = "the filters `/relations` takes")]
    async fn relations(
        &self,
        room_id: &RoomId,
        target: &EventId,
        rel_type: Option<&str>,
        event_type: Option<&str>,
        bounds: (u64, u64),
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<EventRow>>;
    /// What relates to `targets` from within `room_id`, not redacted and up to stream
    /// position `up_to`, for bundling with them: each thread's reply count, latest reply and
    /// whether `user` replied; each event's latest edit by its own sender; the events
    /// referencing each.
    async fn aggregations(
        &self,
        room_id: &RoomId,
        targets: &[OwnedEventId],
        user: &UserId,
        up_to: u64,
    ) -> Result<Aggregations>;
    /// Whether `sender` already annotated `target` with `key` in an event of `kind` that is
    /// not redacted (a reaction given twice).
    async fn annotated(
        &self,
        target: &EventId,
        sender: &UserId,
        kind: &str,
        key: &str,
    ) -> Result<bool>;
    /// A room's threads (events with `m.thread` relations) whose latest reply is below stream
    /// position `before` (and at most `up_to`), latest activity first, with that reply's
    /// position; only those `participant` started or replied to, when given.
    async fn thread_roots(
        &self,
        room_id: &RoomId,
        before: u64,
        up_to: u64,
        participant: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<(OwnedEventId, u64)>>;
    /// Events of the query's rooms whose indexed text matches its terms, in its order, at
    /// most its limit; only timeline events, none redacted.
    async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>>;
    /// How many events [`Self::search`] would find, all pages together.
    async fn search_count(&self, query: &SearchQuery) -> Result<u64>;
    /// The timeline event of a room nearest `ts` (origin milliseconds) at or after it
    /// (`forward`) or at or before it, among events up to stream position `up_to`: its id and
    /// timestamp.
    async fn event_near_time(
        &self,
        room_id: &RoomId,
        ts: u64,
        forward: bool,
        up_to: u64,
    ) -> Result<Option<(OwnedEventId, u64)>>;
    /// The stream position of a room's latest timeline event of one of `types`.
    async fn latest_of_types(&self, room_id: &RoomId, types: &[&str]) -> Result<Option<u64>>;
    /// Rooms with events at `after < stream_pos <= up_to`; `None` when more than `limit`
    /// events lie in between (then every room may have changed).
    async fn rooms_with_events_between(
        &self,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<Option<HashSet<OwnedRoomId>>>;
    /// A user's memberships (not forgotten ones).
    async fn rooms_of_user(&self, user_id: &UserId) -> Result<Vec<MembershipRow>>;
    /// Hides a left room from the user; `false` unless the user has left or been banned.
    async fn forget_room(&self, room_id: &RoomId, user_id: &UserId) -> Result<bool>;
    /// The latest stream position.
    async fn max_stream_pos(&self) -> Result<u64>;
    /// The room state after the last event of the room at or before stream position `pos`;
    /// `None` if the room has no event that early.
    async fn state_at_pos(&self, room_id: &RoomId, pos: u64) -> Result<Option<StateMap>>;

    /// Maps an alias to a room; `false` if the alias is taken.
    async fn create_alias(
        &self,
        alias: &RoomAliasId,
        room_id: &RoomId,
        creator: &UserId,
    ) -> Result<bool>;
    /// The room and creator of an alias.
    async fn alias(&self, alias: &RoomAliasId) -> Result<Option<(OwnedRoomId, OwnedUserId)>>;
    /// Removes an alias; `false` if it did not exist.
    async fn delete_alias(&self, alias: &RoomAliasId) -> Result<bool>;
    /// The aliases of a room.
    async fn aliases_of_room(&self, room_id: &RoomId) -> Result<Vec<OwnedRoomAliasId>>;
    /// Lists or unlists a room in the public directory.
    async fn set_public(&self, room_id: &RoomId, public: bool) -> Result<()>;
    /// Whether a room is in the public directory.
    async fn is_public(&self, room_id: &RoomId) -> Result<bool>;
    /// The rooms in the public directory.
    async fn public_rooms(&self) -> Result<Vec<OwnedRoomId>>;
}
