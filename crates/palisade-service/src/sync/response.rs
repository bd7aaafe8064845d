//! The `/sync` response in the shape Synapse sends it: every section present, empty or not
//! (`limited: false`, `"events": []`), as clients and test suites written against Synapse
//! expect. ruma's response types leave empty sections out, so the service has its own.

use std::collections::BTreeMap;

use ruma::{
    OneTimeKeyAlgorithm, OwnedRoomId, OwnedUserId,
    events::{
        AnyGlobalAccountDataEvent, AnyRoomAccountDataEvent, AnyStrippedStateEvent,
        AnySyncEphemeralRoomEvent, AnySyncStateEvent, AnySyncTimelineEvent, AnyToDeviceEvent,
        presence::PresenceEvent,
    },
    serde::Raw,
};
use serde::Serialize;

/// A list of events, as each section of a sync carries them.
#[derive(Debug, Clone, Serialize)]
#[serde(bound = "")]
pub struct Events<T> {
    /// The events.
    pub events: Vec<Raw<T>>,
}

impl<T> Default for Events<T> {
    fn default() -> Self {
        Self { events: Vec::new() }
    }
}

impl<T> From<Vec<Raw<T>>> for Events<T> {
    fn from(events: Vec<Raw<T>>) -> Self {
        Self { events }
    }
}

/// The answer to `/sync`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncResponse {
    /// The token to sync from next.
    pub next_batch: String,
    /// What changed in the user's rooms.
    pub rooms: Rooms,
    /// Presence of the user and of those sharing a room with them.
    pub presence: Events<PresenceEvent>,
    /// Global account data.
    pub account_data: Events<AnyGlobalAccountDataEvent>,
    /// Messages sent to this device.
    pub to_device: Events<AnyToDeviceEvent>,
    /// Users whose devices changed, and users no longer sharing a room.
    pub device_lists: DeviceLists,
    /// Unclaimed one-time keys of this device, by algorithm.
    pub device_one_time_keys_count: BTreeMap<OneTimeKeyAlgorithm, u64>,
    /// Algorithms of this device's unused fallback keys.
    pub device_unused_fallback_key_types: Vec<OneTimeKeyAlgorithm>,
}

impl SyncResponse {
    /// Whether the response carries anything for the client (besides key counts).
    pub(crate) fn is_news(&self) -> bool {
        let rooms = &self.rooms;
        !(rooms.join.is_empty()
            && rooms.invite.is_empty()
            && rooms.leave.is_empty()
            && rooms.knock.is_empty()
            && self.presence.events.is_empty()
            && self.account_data.events.is_empty()
            && self.to_device.events.is_empty()
            && self.device_lists.changed.is_empty()
            && self.device_lists.left.is_empty())
    }
}

/// Rooms by the user's membership.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Rooms {
    /// Rooms the user is joined to.
    pub join: BTreeMap<OwnedRoomId, JoinedRoom>,
    /// Rooms the user is invited to.
    pub invite: BTreeMap<OwnedRoomId, InvitedRoom>,
    /// Rooms the user left (or was removed from).
    pub leave: BTreeMap<OwnedRoomId, LeftRoom>,
    /// Rooms the user knocked on, until let in or refused.
    pub knock: BTreeMap<OwnedRoomId, KnockedRoom>,
}

/// A joined room's part of a sync.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JoinedRoom {
    /// Member counts and heroes.
    pub summary: RoomSummary,
    /// State up to the start of the timeline.
    pub state: Events<AnySyncStateEvent>,
    /// The new events.
    pub timeline: Timeline,
    /// Typing and receipts.
    pub ephemeral: Events<AnySyncEphemeralRoomEvent>,
    /// The user's account data for the room.
    pub account_data: Events<AnyRoomAccountDataEvent>,
    /// Unread counts (of the main timeline alone when threads are counted apart).
    pub unread_notifications: UnreadNotifications,
    /// Unread counts per thread, by root, when the filter asks for them.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub unread_thread_notifications: BTreeMap<ruma::OwnedEventId, UnreadNotifications>,
}

/// A left room's part of a sync.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LeftRoom {
    /// State up to the start of the timeline.
    pub state: Events<AnySyncStateEvent>,
    /// The events up to the leave.
    pub timeline: Timeline,
    /// The user's account data for the room.
    pub account_data: Events<AnyRoomAccountDataEvent>,
}

/// An invited room's part of a sync.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InvitedRoom {
    /// The room's state as the invite shows it.
    pub invite_state: Events<AnyStrippedStateEvent>,
}

/// A knocked room's part of a sync.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KnockedRoom {
    /// The room's state as the knock shows it.
    pub knock_state: Events<AnyStrippedStateEvent>,
}

/// A room's timeline in a sync.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timeline {
    /// The events, oldest first.
    pub events: Vec<Raw<AnySyncTimelineEvent>>,
    /// Whether events were left out between the previous sync and these.
    pub limited: bool,
    /// The token to page back from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev_batch: Option<String>,
}

/// What clients name a room without a name by.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RoomSummary {
    /// Members to name the room after (only for a room without a name or alias).
    #[serde(rename = "m.heroes", skip_serializing_if = "Option::is_none")]
    pub heroes: Option<Vec<OwnedUserId>>,
    /// Joined members.
    #[serde(rename = "m.joined_member_count", skip_serializing_if = "Option::is_none")]
    pub joined_member_count: Option<u64>,
    /// Invited members.
    #[serde(rename = "m.invited_member_count", skip_serializing_if = "Option::is_none")]
    pub invited_member_count: Option<u64>,
}

/// Unread counts from the user's push rules.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UnreadNotifications {
    /// Events that notify.
    pub notification_count: u64,
    /// Events that highlight.
    pub highlight_count: u64,
}

impl From<super::Counts> for UnreadNotifications {
    fn from(counts: super::Counts) -> Self {
        Self { notification_count: counts.notifications, highlight_count: counts.highlights }
    }
}

/// Device list changes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeviceLists {
    /// Users whose devices changed.
    pub changed: Vec<OwnedUserId>,
    /// Users who no longer share a room with the user.
    pub left: Vec<OwnedUserId>,
}
