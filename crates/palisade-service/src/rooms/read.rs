//! Reading rooms: who may see what, state, timelines, single events and members.
//!
//! Who may read: a joined member, or a user who left after joining (up to their leave); anyone
//! else (rejected invites, strangers banned in advance) nothing, unless the room is
//! `world_readable`. Within that, each event is shown by the history visibility and the
//! reader's membership in the state at the event (`shared`, `invited`, `joined`), as Synapse
//! does.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::Duration,
};

use palisade_core::{Error, Result};
use palisade_storage::{Aggregations, EventRow, MembershipRow, StateMap};
use ruma::{
    DeviceId, EventId, OwnedEventId, OwnedMxcUri, OwnedRoomId, OwnedUserId, RoomId, UserId,
    api::{
        Direction,
        client::{
            filter::{LazyLoadOptions, RoomEventFilter, UrlFilter},
            membership::joined_members::v3::RoomMember,
            peeking::get_current_state::{self, v3::PaginationChunk},
            room::Visibility as RoomVisibility,
        },
    },
    events::{
        AnyStateEvent, AnyTimelineEvent,
        room::member::{MembershipState, RoomMemberEvent},
    },
    room_version_rules::RedactionRules,
    serde::Raw,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, value::RawValue};

use super::{
    RoomService,
    pdu::{self, client_event},
    rules_of,
};
use crate::trust::{Actor, Need};

/// Events fetched per round while filtering a timeline.
const PAGE: usize = 100;

/// A room event filter (the parts of the spec's `RoomEventFilter` the server applies).
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only these types (`*` wildcards allowed); all when `None`.
    pub types: Option<Vec<String>>,
    /// Never these types.
    pub not_types: Vec<String>,
    /// Only these senders; all when `None`.
    pub senders: Option<Vec<OwnedUserId>>,
    /// Never these senders.
    pub not_senders: Vec<OwnedUserId>,
    /// Send the members of the returned events' senders along as state.
    pub lazy_load_members: bool,
    /// Only events with (`true`) or without (`false`) a `url` in their content.
    pub contains_url: Option<bool>,
}

impl From<&RoomEventFilter> for EventFilter {
    fn from(filter: &RoomEventFilter) -> Self {
        Self {
            types: filter.types.clone(),
            not_types: filter.not_types.clone(),
            senders: filter.senders.clone(),
            not_senders: filter.not_senders.clone(),
            lazy_load_members: matches!(filter.lazy_load_options, LazyLoadOptions::Enabled { .. }),
            contains_url: filter.url_filter.as_ref().map(|f| *f == UrlFilter::EventsWithUrl),
        }
    }
}

/// Whether an event's content has a `url` (a file, an image), as `contains_url` reads it.
fn has_url(row: &EventRow) -> bool {
    #[derive(Deserialize)]
    struct Event {
        #[serde(default)]
        content: Content,
    }
    #[derive(Default, Deserialize)]
    struct Content {
        url: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_str::<Event>(&row.json).is_ok_and(|event| event.content.url.is_some())
}

fn type_matches(pattern: &str, kind: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => kind.starts_with(prefix),
        None => pattern == kind,
    }
}

impl EventFilter {
    /// Whether an event passes the filter.
    pub fn matches(&self, row: &EventRow) -> bool {
        self.allows(&row.kind, &row.sender)
            && self.contains_url.is_none_or(|wanted| has_url(row) == wanted)
    }

    /// Whether the filter lets an event of `kind` from `sender` through, by type and sender.
    pub fn allows(&self, kind: &str, sender: &UserId) -> bool {
        self.types.as_ref().is_none_or(|types| types.iter().any(|p| type_matches(p, kind)))
            && !self.not_types.iter().any(|p| type_matches(p, kind))
            && self.senders.as_ref().is_none_or(|senders| senders.iter().any(|s| s == sender))
            && !self.not_senders.iter().any(|s| s == sender)
    }
}

/// A page of `/messages`.
#[derive(Debug, Clone)]
pub struct Messages {
    /// Events in the direction asked for, in client format.
    pub chunk: Vec<Raw<AnyTimelineEvent>>,
    /// The token the page starts at.
    pub start: String,
    /// The token to continue from; `None` when there is nothing further.
    pub end: Option<String>,
    /// Member events of the senders, when lazy loading.
    pub state: Vec<Raw<AnyStateEvent>>,
}

/// What the deprecated `/events` answers (`chunk` always present, as Synapse sends it).
#[derive(Debug, Serialize)]
pub struct EventsPage {
    /// The events after `start`, oldest first.
    pub chunk: Vec<Raw<AnyTimelineEvent>>,
    /// The token the page starts at.
    pub start: String,
    /// The token to poll from next.
    pub end: String,
}

/// A user's view of a room's history: who, whether joined now, and the answer per state
/// snapshot (events between state changes share one).
pub(crate) struct Visibility {
    user: OwnedUserId,
    joined_now: bool,
    by_group: HashMap<u64, bool>,
}

impl Visibility {
    /// A viewer who is (or is not) joined to the room now.
    pub(crate) fn new(user: &UserId, joined_now: bool) -> Self {
        Self { user: user.to_owned(), joined_now, by_group: HashMap::new() }
    }
}

/// Of two memberships, the one nearer to joined (Synapse's `MEMBERSHIP_PRIORITY`).
fn more_joined<'a>(a: &'a str, b: &'a str) -> &'a str {
    let rank = |m: &str| {
        ["join", "invite", "knock", "leave", "ban"].iter().position(|p| *p == m).unwrap_or(3)
    };
    if rank(b) < rank(a) { b } else { a }
}

/// Events found by [`RoomService::timeline_page`].
pub(crate) struct TimelinePage {
    /// The events, in the direction walked.
    pub rows: Vec<EventRow>,
    /// Where the walk stopped (a token position).
    pub cursor: u64,
    /// Whether the walk reached the start or end of what it may see.
    pub reached_end: bool,
}

/// `m.room.history_visibility`, as far as reading is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HistoryVisibility {
    WorldReadable,
    Shared,
    Invited,
    Joined,
}

/// Snapshots whose history visibility is remembered; the cache starts over when full.
const MAX_CACHED_VISIBILITIES: usize = 100_000;

/// Formats a stream position as a pagination token.
pub fn stream_token(pos: u64) -> String {
    format!("s{pos}")
}

/// Parses a pagination token; a sync token (`s<events>_…`) is accepted too.
pub fn parse_stream_token(token: &str) -> Result<u64> {
    token
        .strip_prefix('s')
        .and_then(|rest| rest.split('_').next())
        .and_then(|pos| pos.parse().ok())
        .ok_or_else(|| Error::invalid_param("Invalid pagination token"))
}

impl RoomService {
    /// How far `actor` may read `room_id`: `None` for everything, `Some(pos)` up to a stream
    /// position, or `M_FORBIDDEN`.
    pub async fn read_bound(&self, actor: Actor<'_>, room_id: &RoomId) -> Result<Option<u64>> {
        self.trust.require(actor, Need::RoomAccess, "read_room").await?;
        self.bound_of(actor.user(), room_id).await
    }

    /// How far `user` may read `room_id` (see [`Self::read_bound`]).
    pub(crate) async fn bound_of(&self, user: &UserId, room_id: &RoomId) -> Result<Option<u64>> {
        match self.store.membership(room_id, user).await? {
            Some(m) if m.membership == "join" => Ok(None),
            Some(m)
                if matches!(m.membership.as_str(), "leave" | "ban")
                    && self.left_while_joined(&m).await? =>
            {
                Ok(Some(m.stream_pos))
            }
            _ if self.is_world_readable(room_id).await? => Ok(None),
            _ => Err(Error::forbidden("You are not in this room")),
        }
    }

    /// Whether a leave or ban ended a membership that was `join` (not a rejected invite or a
    /// stranger banned in advance, who never saw the room's history).
    pub(crate) async fn left_while_joined(&self, membership: &MembershipRow) -> Result<bool> {
        let Some(row) = self.store.event(&membership.event_id).await? else { return Ok(false) };
        let unsigned: Value =
            row.unsigned.as_deref().and_then(|u| serde_json::from_str(u).ok()).unwrap_or_default();
        Ok(unsigned["prev_content"]["membership"] == "join")
    }

    async fn is_world_readable(&self, room_id: &RoomId) -> Result<bool> {
        let visibility = self
            .current_state_text(room_id, "m.room.history_visibility", "history_visibility")
            .await?;
        Ok(visibility.as_deref() == Some("world_readable"))
    }

    /// The current state of a room, `None` if it is unknown.
    pub async fn current_state(&self, room_id: &RoomId) -> Result<Option<StateMap>> {
        match self.lock_room(room_id).await {
            Ok(guard) => Ok(guard.as_ref().map(|room| room.state.clone())),
            Err(e) if e.kind == palisade_core::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The content of a stored event.
    pub(crate) async fn event_content(&self, event_id: &EventId) -> Result<Value> {
        let row = self
            .store
            .event(event_id)
            .await?
            .ok_or_else(|| Error::internal("missing state event"))?;
        let pdu = super::Pdu::from_row(&row)?;
        serde_json::from_str(pdu.content.get()).map_err(|e| Error::internal(e.to_string()))
    }

    /// Rules for presenting a room's events (redaction).
    async fn redaction_rules(&self, room_id: &RoomId) -> Result<RedactionRules> {
        let guard = self.lock_room(room_id).await?;
        let version = guard.as_ref().map(|r| r.version.clone()).expect("lock_room loads the room");
        Ok(rules_of(&version)?.redaction)
    }

    /// Formats events of one room for a client.
    pub async fn format_events(
        &self,
        room_id: &RoomId,
        rows: &[EventRow],
        viewer: Option<(&UserId, &DeviceId)>,
    ) -> Result<Vec<Raw<AnyTimelineEvent>>> {
        let events = self.format_plain(room_id, rows, viewer).await?;
        match viewer {
            Some((user, _)) => self.bundle(room_id, rows, events, user, viewer).await,
            None => Ok(events),
        }
    }

    /// Events with what relates to them bundled under `unsigned.m.relations`, as the spec
    /// asks of every place a client is served events: a thread's summary (`m.thread`: reply
    /// count, latest reply, whether the user replied), the latest edit by the original's
    /// sender (`m.replace`), and the references (`m.reference`). One query for the page.
    async fn bundle(
        &self,
        room_id: &RoomId,
        rows: &[EventRow],
        events: Vec<Raw<AnyTimelineEvent>>,
        user: &UserId,
        viewer: Option<(&UserId, &DeviceId)>,
    ) -> Result<Vec<Raw<AnyTimelineEvent>>> {
        let targets: Vec<OwnedEventId> = rows
            .iter()
            .filter(|row| row.state_key.is_none() && row.redacted_by.is_none())
            .map(|row| row.event_id.clone())
            .collect();
        if targets.is_empty() {
            return Ok(events);
        }
        // Only what the viewer may read: nothing past their leave, and each bundled event
        // subject to history visibility.
        let Ok(bound) = self.bound_of(user, room_id).await else { return Ok(events) };
        let up_to = bound.unwrap_or(self.position());
        let found = self.store.aggregations(room_id, &targets, user, up_to).await?;
        if found == Aggregations::default() {
            return Ok(events);
        }
        let mut visibility = self.visibility(user, room_id).await?;
        let mut bundles: HashMap<OwnedEventId, serde_json::Map<String, Value>> = HashMap::new();
        for (root, count, latest, replied) in found.threads {
            let Some(latest) =
                self.formatted_one(room_id, &latest, viewer, &mut visibility).await?
            else {
                continue;
            };
            let started = rows.iter().any(|r| r.event_id == root && r.sender == user);
            let summary = serde_json::json!({
                "latest_event": latest,
                "count": count,
                "current_user_participated": replied || started,
            });
            bundles.entry(root).or_default().insert("m.thread".to_owned(), summary);
        }
        for (original, edit) in found.edits {
            if let Some(edit) = self.formatted_one(room_id, &edit, viewer, &mut visibility).await? {
                let edit = serde_json::to_value(&edit)
                    .map_err(|e| Error::internal(format!("edit: {e}")))?;
                bundles.entry(original).or_default().insert("m.replace".to_owned(), edit);
            }
        }
        for (target, reference) in found.references {
            let bundle = bundles.entry(target).or_default();
            let chunk =
                bundle.entry("m.reference").or_insert_with(|| serde_json::json!({ "chunk": [] }));
            if let Some(chunk) = chunk["chunk"].as_array_mut() {
                chunk.push(serde_json::json!({ "event_id": reference }));
            }
        }
        rows.iter()
            .zip(events)
            .map(|(row, event)| match bundles.remove(&row.event_id) {
                Some(relations) => with_relations(event, relations),
                None => Ok(event),
            })
            .collect()
    }

    /// One stored event in client format, without bundled relations, if the viewer may see
    /// it.
    async fn formatted_one(
        &self,
        room_id: &RoomId,
        event_id: &EventId,
        viewer: Option<(&UserId, &DeviceId)>,
        visibility: &mut Visibility,
    ) -> Result<Option<Raw<AnyTimelineEvent>>> {
        let Some(row) = self.store.event(event_id).await? else { return Ok(None) };
        if !self.can_see(visibility, &row).await? {
            return Ok(None);
        }
        Ok(self.format_plain(room_id, std::slice::from_ref(&row), viewer).await?.pop())
    }

    /// Events in client format, as stored (redactions applied), nothing bundled.
    async fn format_plain(
        &self,
        room_id: &RoomId,
        rows: &[EventRow],
        viewer: Option<(&UserId, &DeviceId)>,
    ) -> Result<Vec<Raw<AnyTimelineEvent>>> {
        let rules = self.redaction_rules(room_id).await?;
        let now = self.clock.now_millis();
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            let redaction = match &row.redacted_by {
                Some(by) => match self.store.event(by).await? {
                    Some(because) => Some((&rules, client_event(&because, None, None, now, None)?)),
                    None => None,
                },
                None => None,
            };
            // `prev_content` was copied when the event was stored; a redaction of the event
            // it replaced must reach it too.
            let replaced_redacted = match pdu::replaced_state(row) {
                Some(id) => match self.store.event(&id).await? {
                    Some(replaced) if replaced.redacted_by.is_some() => {
                        Some(redacted_content(&replaced, &rules)?)
                    }
                    _ => None,
                },
                None => None,
            };
            events.push(client_event(row, redaction, replaced_redacted.as_deref(), now, viewer)?);
        }
        Ok(events)
    }

    /// The state a user may see: current state for members, the state at their leave else.
    async fn visible_state(&self, user: &UserId, room_id: &RoomId) -> Result<StateMap> {
        let state = match self.bound_of(user, room_id).await? {
            None => self.current_state(room_id).await?,
            Some(_) => {
                let membership = self.store.membership(room_id, user).await?;
                match membership {
                    Some(m) => self.store.state_after(&m.event_id).await?,
                    None => None,
                }
            }
        };
        state.ok_or_else(|| Error::forbidden("You are not in this room"))
    }

    async fn rows(
        &self,
        ids: impl IntoIterator<Item = &ruma::OwnedEventId>,
    ) -> Result<Vec<EventRow>> {
        let mut rows = Vec::new();
        for id in ids {
            if let Some(row) = self.store.event(id).await? {
                rows.push(row);
            }
        }
        rows.sort_by_key(|r| r.stream_pos);
        Ok(rows)
    }

    /// State events by id, in stream order and client format (no viewer: state shows no
    /// transaction ids).
    pub(crate) async fn format_state(
        &self,
        room_id: &RoomId,
        ids: &[ruma::OwnedEventId],
    ) -> Result<Vec<Raw<AnyStateEvent>>> {
        let rows = self.rows(ids).await?;
        let events = self.format_events(room_id, &rows, None).await?;
        // The ids name state events, so each is one.
        Ok(events.into_iter().map(Raw::cast_unchecked).collect())
    }

    /// The whole state of a room, in client format.
    pub async fn state(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
    ) -> Result<Vec<Raw<AnyStateEvent>>> {
        self.trust.require(actor, Need::RoomAccess, "room_state").await?;
        let state = self.visible_state(actor.user(), room_id).await?;
        let ids: Vec<_> = state.into_values().collect();
        self.format_state(room_id, &ids).await
    }

    /// One state event in client format, or `M_NOT_FOUND`.
    pub async fn state_event(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        kind: &str,
        state_key: &str,
    ) -> Result<Raw<AnyStateEvent>> {
        self.trust.require(actor, Need::RoomAccess, "room_state").await?;
        let state = self.visible_state(actor.user(), room_id).await?;
        let id = state
            .get(&(kind.to_owned(), state_key.to_owned()))
            .ok_or_else(|| Error::not_found("Event not found"))?;
        let mut events = self.format_state(room_id, std::slice::from_ref(id)).await?;
        events.pop().ok_or_else(|| Error::not_found("Event not found"))
    }

    /// An event of the room the user may see, or `M_NOT_FOUND`.
    pub(crate) async fn visible_event(
        &self,
        user: &UserId,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<EventRow> {
        let bound = self.bound_of(user, room_id).await?;
        let row = self
            .store
            .event(event_id)
            .await?
            .filter(|row| row.room_id == room_id && bound.is_none_or(|b| row.stream_pos <= b))
            .ok_or_else(|| Error::not_found("Event not found"))?;
        // Outliers are not part of the room's history (soft-failed events among them); only
        // those in the current state (state learned when joining) are shown.
        if row.outlier {
            let key =
                row.state_key.as_deref().ok_or_else(|| Error::not_found("Event not found"))?;
            if self.current_state_id(room_id, &row.kind, key).await?.as_ref() != Some(&row.event_id)
            {
                return Err(Error::not_found("Event not found"));
            }
        }
        let mut viewer = self.visibility(user, room_id).await?;
        if !self.can_see(&mut viewer, &row).await? {
            return Err(Error::not_found("Event not found"));
        }
        Ok(row)
    }

    /// How `user` sees the room's history, for [`Self::can_see`].
    pub(crate) async fn visibility(&self, user: &UserId, room_id: &RoomId) -> Result<Visibility> {
        let joined_now =
            self.store.membership(room_id, user).await?.is_some_and(|m| m.membership == "join");
        Ok(Visibility::new(user, joined_now))
    }

    /// Whether the viewer may see an event, by the history visibility and their membership in
    /// the state at the event (spec: history visibility; decided as Synapse does). A user's own
    /// membership event counts with the more joined of its membership and the one before
    /// (their join is theirs to see, an invite under `joined` history is not), and a leave
    /// that ended a join or an invite is always theirs to see.
    pub(crate) async fn can_see(&self, viewer: &mut Visibility, row: &EventRow) -> Result<bool> {
        let own =
            row.kind == "m.room.member" && row.state_key.as_deref() == Some(viewer.user.as_str());
        let own_membership = if own {
            let event: Value = serde_json::from_str(&row.json).unwrap_or_default();
            let unsigned: Value = row
                .unsigned
                .as_deref()
                .and_then(|u| serde_json::from_str(u).ok())
                .unwrap_or_default();
            let new = event["content"]["membership"].as_str().unwrap_or("leave").to_owned();
            let before = unsigned["prev_content"]["membership"].as_str().unwrap_or("leave");
            if new == "leave" && matches!(before, "join" | "invite") {
                return Ok(true);
            }
            Some(more_joined(&new, before).to_owned())
        } else {
            None
        };
        if !own && let Some(known) = viewer.by_group.get(&row.state_group) {
            return Ok(*known);
        }
        let visibility = self.history_visibility(row.state_group).await?;
        // Shared history is open to current members whatever they were then.
        let allowed = if visibility == HistoryVisibility::WorldReadable
            || (visibility == HistoryVisibility::Shared && viewer.joined_now)
        {
            true
        } else {
            let membership = match own_membership {
                Some(membership) => membership,
                None => {
                    let member = self
                        .state_content(row.state_group, "m.room.member", viewer.user.as_str())
                        .await?;
                    member["membership"].as_str().unwrap_or_default().to_owned()
                }
            };
            match visibility {
                HistoryVisibility::Invited => matches!(membership.as_str(), "join" | "invite"),
                HistoryVisibility::Joined => membership == "join",
                _ => membership == "join" || viewer.joined_now,
            }
        };
        if !own {
            viewer.by_group.insert(row.state_group, allowed);
        }
        Ok(allowed)
    }

    /// The history visibility in a state snapshot, remembered across requests.
    async fn history_visibility(&self, group: u64) -> Result<HistoryVisibility> {
        if let Some(known) = self.visibility_by_group.lock().expect("cache poisoned").get(&group) {
            return Ok(*known);
        }
        let content = self.state_content(group, "m.room.history_visibility", "").await?;
        let visibility = match content["history_visibility"].as_str() {
            Some("world_readable") => HistoryVisibility::WorldReadable,
            Some("invited") => HistoryVisibility::Invited,
            Some("joined") => HistoryVisibility::Joined,
            // Unknown values are treated as `shared`, as Synapse does.
            _ => HistoryVisibility::Shared,
        };
        let mut cache = self.visibility_by_group.lock().expect("cache poisoned");
        if cache.len() >= MAX_CACHED_VISIBILITIES {
            cache.clear();
        }
        cache.insert(group, visibility);
        Ok(visibility)
    }

    /// The content of one state event of a snapshot (`null` if absent).
    async fn state_content(&self, group: u64, kind: &str, state_key: &str) -> Result<Value> {
        match self.store.state_entry(group, kind, state_key).await? {
            Some(id) => self.event_content(&id).await,
            None => Ok(Value::Null),
        }
    }

    /// One event of a room, if the user may see it: an event of a room the user is not in is
    /// "not found", as the spec (and Synapse) answer for any event the user may not read.
    pub async fn event(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<Raw<AnyTimelineEvent>> {
        self.trust.require(actor, Need::RoomAccess, "room_event").await?;
        let row = self.visible_event(actor.user(), room_id, event_id).await.map_err(|e| match e
            .kind
        {
            palisade_core::ErrorKind::Forbidden => Error::not_found("Event not found"),
            _ => e,
        })?;
        self.formatted(actor, row).await
    }

    /// One event in the client format, for the actor.
    async fn formatted(&self, actor: Actor<'_>, row: EventRow) -> Result<Raw<AnyTimelineEvent>> {
        let room_id = row.room_id.clone();
        let mut events = self.format_events(&room_id, &[row], viewer_of(actor)).await?;
        Ok(events.remove(0))
    }

    /// Up to `limit` events of a room that pass `filter`, walking from position `start` in
    /// `direction` and stopping at `to` (exclusive) or, forwards, past `ceiling`. No access
    /// check: callers decide what the user may see.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn timeline_page(
        &self,
        room_id: &RoomId,
        start: u64,
        to: Option<u64>,
        ceiling: u64,
        direction: Direction,
        limit: usize,
        filter: &EventFilter,
        mut viewer: Option<&mut Visibility>,
    ) -> Result<TimelinePage> {
        let (mut rows, mut cursor, mut reached_end) = (Vec::new(), start, false);
        // Pages start as small as the request and grow while filters drop events.
        let mut size = limit.clamp(1, PAGE);
        'pages: loop {
            let (after, up_to) = match direction {
                Direction::Backward => (to.unwrap_or(0), cursor),
                Direction::Forward => (cursor, to.unwrap_or(u64::MAX).min(ceiling)),
            };
            if after >= up_to {
                reached_end = true;
                break;
            }
            let page = self.store.timeline(room_id, after, up_to, direction, size).await?;
            let full = page.len() == size;
            size = (size * 2).min(PAGE);
            for row in page {
                cursor = match direction {
                    Direction::Backward => row.stream_pos - 1,
                    Direction::Forward => row.stream_pos,
                };
                let visible = match viewer.as_deref_mut() {
                    Some(viewer) => self.can_see(viewer, &row).await?,
                    None => true,
                };
                if visible && filter.matches(&row) {
                    rows.push(row);
                    if rows.len() == limit {
                        break 'pages;
                    }
                }
            }
            if !full {
                reached_end = true;
                break;
            }
        }
        Ok(TimelinePage { rows, cursor, reached_end })
    }

    /// A page of the timeline, filtered.
    pub async fn messages(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        walk: Walk,
        filter: &EventFilter,
    ) -> Result<Messages> {
        self.trust.require(actor, Need::RoomAccess, "room_messages").await?;
        let walk = Walk { limit: walk.limit.max(1), ..walk };
        let page = self.page(actor.user(), room_id, walk, filter).await?;
        let state = if filter.lazy_load_members {
            self.member_events_of(room_id, &page.rows).await?
        } else {
            Vec::new()
        };
        self.messages_of(actor, room_id, page, state).await
    }

    /// The events of a page the user may see, unformatted.
    pub(super) async fn page(
        &self,
        user: &UserId,
        room_id: &RoomId,
        Walk { from, to, direction, limit }: Walk,
        filter: &EventFilter,
    ) -> Result<Page> {
        let bound = self.bound_of(user, room_id).await?;
        let ceiling = bound.unwrap_or(self.position());
        let start = match direction {
            Direction::Backward => from.unwrap_or(ceiling).min(ceiling),
            Direction::Forward => from.unwrap_or(0),
        };
        if limit == 0 {
            return Ok(Page { rows: Vec::new(), start, end: None });
        }
        let limit = limit.min(1000);
        let mut viewer = self.visibility(user, room_id).await?;
        let TimelinePage { rows, cursor, reached_end } = self
            .timeline_page(room_id, start, to, ceiling, direction, limit, filter, Some(&mut viewer))
            .await?;
        Ok(Page { rows, start, end: (!reached_end).then_some(cursor) })
    }

    /// A page in client format.
    pub(super) async fn messages_of(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        page: Page,
        state: Vec<Raw<AnyStateEvent>>,
    ) -> Result<Messages> {
        Ok(Messages {
            chunk: self.format_events(room_id, &page.rows, viewer_of(actor)).await?,
            start: stream_token(page.start),
            end: page.end.map(stream_token),
            state,
        })
    }

    /// The current member events of the senders of `rows`.
    pub(crate) async fn member_events_of(
        &self,
        room_id: &RoomId,
        rows: &[EventRow],
    ) -> Result<Vec<Raw<AnyStateEvent>>> {
        let senders: BTreeSet<&UserId> = rows.iter().map(|r| r.sender.as_ref()).collect();
        let Some(state) = self.current_state(room_id).await? else { return Ok(Vec::new()) };
        let ids: Vec<_> = senders
            .into_iter()
            .filter_map(|s| state.get(&("m.room.member".to_owned(), s.to_string())).cloned())
            .collect();
        self.format_state(room_id, &ids).await
    }

    /// The member events of a room (current, or at the user's leave), optionally filtered by
    /// membership.
    pub async fn members(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        membership: Option<&str>,
        not_membership: Option<&str>,
    ) -> Result<Vec<Raw<RoomMemberEvent>>> {
        self.trust.require(actor, Need::RoomAccess, "room_members").await?;
        let rows = self.member_rows(actor.user(), room_id, membership, not_membership).await?;
        let events = self.format_events(room_id, &rows, None).await?;
        Ok(events.into_iter().map(Raw::cast_unchecked).collect())
    }

    /// The member events `user` may see, with the fields clients list them by.
    async fn member_rows(
        &self,
        user: &UserId,
        room_id: &RoomId,
        membership: Option<&str>,
        not_membership: Option<&str>,
    ) -> Result<Vec<EventRow>> {
        let state = self.visible_state(user, room_id).await?;
        let ids: Vec<_> = state
            .into_iter()
            .filter(|((kind, _), _)| kind == "m.room.member")
            .map(|(_, id)| id)
            .collect();
        let mut rows = self.rows(&ids).await?;
        rows.retain(|row| {
            let m = Member::of(row).and_then(|member| member.content.membership);
            membership.is_none_or(|want| m.as_deref() == Some(want))
                && not_membership.is_none_or(|not| m.as_deref() != Some(not))
        });
        Ok(rows)
    }

    /// Joined members with their display names and avatars; only for joined members.
    pub async fn joined_members(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
    ) -> Result<BTreeMap<OwnedUserId, RoomMember>> {
        if self.read_bound(actor, room_id).await?.is_some() {
            return Err(Error::forbidden("You are not in this room"));
        }
        let rows = self.member_rows(actor.user(), room_id, Some("join"), None).await?;
        Ok(rows
            .iter()
            .filter_map(Member::of)
            .map(|Member { state_key, content }| {
                let mut member = RoomMember::new();
                member.display_name = content.displayname;
                member.avatar_url = content.avatar_url;
                (state_key, member)
            })
            .collect())
    }

    /// A room's current state and latest messages at once (the deprecated room `initialSync`
    /// that Element still peeks into rooms with): what the user may read, as `/state` and
    /// `/messages` would give it, with their membership and the room's directory visibility.
    pub async fn initial_sync(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        limit: usize,
    ) -> Result<get_current_state::v3::Response> {
        let state = self.state(actor, room_id).await?;
        let walk = Walk { from: None, to: None, direction: Direction::Backward, limit };
        let page = self.messages(actor, room_id, walk, &EventFilter::default()).await?;
        let mut chunk = page.chunk;
        chunk.reverse();
        let mut messages = PaginationChunk::new(chunk, page.start);
        messages.start = page.end;
        let mut response = get_current_state::v3::Response::new(room_id.to_owned());
        response.state = state;
        response.messages = Some(messages);
        response.membership = self
            .store
            .membership(room_id, actor.user())
            .await?
            .map(|m| MembershipState::from(m.membership.as_str()));
        response.visibility = Some(match self.store.is_public(room_id).await? {
            true => RoomVisibility::Public,
            false => RoomVisibility::Private,
        });
        Ok(response)
    }

    /// The events of a room (or, without one, of every room the user is in) after a token,
    /// waiting up to `timeout` for one: the deprecated `/events`, which peeking clients poll
    /// with a room and older bots without. From now when no token is given.
    pub async fn events_after_token(
        &self,
        actor: Actor<'_>,
        room_id: Option<&RoomId>,
        from: Option<&str>,
        timeout: Duration,
    ) -> Result<EventsPage> {
        /// Longest a poll waits, and most events one answer carries.
        const MAX_WAIT: Duration = Duration::from_secs(300);
        const MAX_EVENTS: usize = 100;
        self.trust.require(actor, Need::RoomAccess, "room_events").await?;
        let from = match from {
            Some(token) => parse_stream_token(token)?,
            None => self.position(),
        };
        let deadline = tokio::time::Instant::now() + timeout.min(MAX_WAIT);
        let mut commits = self.subscribe_commits();
        loop {
            commits.borrow_and_update();
            let rooms = match room_id {
                Some(room_id) => vec![room_id.to_owned()],
                None => self.joined_rooms_with_events_after(actor.user(), from).await?,
            };
            let mut found: Vec<(OwnedRoomId, EventRow)> = Vec::new();
            for room_id in rooms {
                let walk = Walk {
                    from: Some(from),
                    to: None,
                    direction: Direction::Forward,
                    limit: MAX_EVENTS,
                };
                let page = self.page(actor.user(), &room_id, walk, &EventFilter::default()).await?;
                found.extend(page.rows.into_iter().map(|row| (room_id.clone(), row)));
            }
            // Each room's page holds its first events after `from`: cut across rooms at the
            // same count, every event up to the cut is in.
            found.sort_by_key(|(_, row)| row.stream_pos);
            found.truncate(MAX_EVENTS);
            let waited = tokio::time::Instant::now() >= deadline;
            if !found.is_empty() || waited {
                let end = found.last().map_or(from, |(_, row)| row.stream_pos);
                let mut chunk = Vec::with_capacity(found.len());
                // Formatted a run of one room's events at a time, in stream order.
                for run in found.chunk_by(|a, b| a.0 == b.0) {
                    let rows: Vec<EventRow> = run.iter().map(|(_, row)| row.clone()).collect();
                    chunk.extend(self.format_events(&run[0].0, &rows, viewer_of(actor)).await?);
                }
                return Ok(EventsPage { chunk, start: stream_token(from), end: stream_token(end) });
            }
            // Woken by any commit; a timeout answers with nothing new.
            let _ = tokio::time::timeout_at(deadline, commits.changed()).await;
        }
    }

    /// The rooms a user is joined to that have events after stream position `after`.
    async fn joined_rooms_with_events_after(
        &self,
        user: &UserId,
        after: u64,
    ) -> Result<Vec<OwnedRoomId>> {
        let changed = self.store.rooms_with_events_between(after, self.position(), 10_000).await?;
        Ok(self
            .store
            .rooms_of_user(user)
            .await?
            .into_iter()
            .filter(|m| m.membership == "join")
            .map(|m| m.room_id)
            .filter(|room| changed.as_ref().is_none_or(|changed| changed.contains(room)))
            .collect())
    }

    /// An event by id alone, if the user may see it (the deprecated `/events/{eventId}`).
    pub async fn event_by_id(
        &self,
        actor: Actor<'_>,
        event_id: &EventId,
    ) -> Result<Raw<AnyTimelineEvent>> {
        let row =
            self.store.event(event_id).await?.ok_or_else(|| Error::not_found("Event not found"))?;
        self.trust.require(actor, Need::RoomAccess, "room_event").await?;
        let row = self.visible_event(actor.user(), &row.room_id, event_id).await?;
        self.formatted(actor, row).await
    }

    /// Whether a user (of any server) is joined to any room this server knows.
    pub async fn in_any_room(&self, user: &UserId) -> Result<bool> {
        Ok(self.store.rooms_of_user(user).await?.iter().any(|m| m.membership == "join"))
    }

    /// The rooms the user has joined.
    pub async fn joined_rooms(&self, actor: Actor<'_>) -> Result<Vec<OwnedRoomId>> {
        self.trust.require(actor, Need::RoomAccess, "joined_rooms").await?;
        self.joined_rooms_of(actor.user()).await
    }

    /// The rooms both `actor` and `other` are joined to (`/mutual_rooms`); none for a user
    /// this server does not know, as the spec asks.
    pub async fn mutual_rooms(&self, actor: Actor<'_>, other: &UserId) -> Result<Vec<OwnedRoomId>> {
        if other == actor.user() {
            return Err(Error::invalid_param("You cannot ask for rooms shared with yourself"));
        }
        let mut own = self.joined_rooms(actor).await?;
        let theirs: BTreeSet<OwnedRoomId> =
            self.joined_rooms_of(other).await?.into_iter().collect();
        own.retain(|room| theirs.contains(room));
        own.sort();
        Ok(own)
    }

    /// The event nearest `ts` (milliseconds) in `direction` that `actor` may read
    /// (`/timestamp_to_event`, for jumping to a date).
    pub async fn event_near(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        ts: u64,
        direction: Direction,
    ) -> Result<(OwnedEventId, u64)> {
        let up_to = self.read_bound(actor, room_id).await?.unwrap_or(self.position());
        let forward = direction == Direction::Forward;
        self.store.event_near_time(room_id, ts, forward, up_to).await?.ok_or_else(|| {
            let towards = if forward { "after" } else { "before" };
            Error::not_found(format!("Unable to find an event {towards} {ts}"))
        })
    }

    /// The rooms a user is joined to.
    pub(super) async fn joined_rooms_of(&self, user: &UserId) -> Result<Vec<OwnedRoomId>> {
        let memberships = self.store.rooms_of_user(user).await?.into_iter();
        Ok(memberships.filter(|m| m.membership == "join").map(|m| m.room_id).collect())
    }
}

/// Which stretch of a timeline a page walks: from `from` towards `to` (stream positions, both
/// exclusive), at most `limit` events.
#[derive(Debug, Clone, Copy)]
pub struct Walk {
    /// Where to start; the newest (backwards) or oldest (forwards) visible event when `None`.
    pub from: Option<u64>,
    /// Where to stop.
    pub to: Option<u64>,
    /// Which way.
    pub direction: Direction,
    /// Most events.
    pub limit: usize,
}

/// Events of a page, before formatting.
pub(super) struct Page {
    pub(super) rows: Vec<EventRow>,
    /// Where the page starts.
    start: u64,
    /// Where to continue from; `None` when there is nothing further.
    end: Option<u64>,
}

/// The fields of a member event the member lists read; a field of the wrong type reads as
/// absent, as clients treat it.
#[derive(Deserialize)]
pub(super) struct Member {
    state_key: OwnedUserId,
    pub(super) content: MemberContent,
}

#[derive(Deserialize)]
pub(super) struct MemberContent {
    #[serde(default, deserialize_with = "ruma::serde::default_on_error")]
    membership: Option<String>,
    #[serde(default, deserialize_with = "ruma::serde::default_on_error")]
    pub(super) displayname: Option<String>,
    #[serde(default, deserialize_with = "ruma::serde::default_on_error")]
    pub(super) avatar_url: Option<OwnedMxcUri>,
}

impl Member {
    pub(super) fn of(row: &EventRow) -> Option<Self> {
        serde_json::from_str(&row.json).ok()
    }
}

/// The answer to `/context`.
#[derive(Debug, Clone)]
pub struct Context {
    /// Events before the event, newest first, with the token to paginate further back.
    pub before: Messages,
    /// The event itself.
    pub event: Raw<AnyTimelineEvent>,
    /// Events after the event, oldest first, with the token to paginate further forward.
    pub after: Messages,
    /// State at the event (only the senders' members when lazy loading).
    pub state: Vec<Raw<AnyStateEvent>>,
}

impl RoomService {
    /// An event with up to `limit` events around it.
    pub async fn context(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        event_id: &EventId,
        limit: usize,
        filter: &EventFilter,
    ) -> Result<Context> {
        self.trust.require(actor, Need::RoomAccess, "room_context").await?;
        let user = actor.user();
        let row = self.visible_event(user, room_id, event_id).await?;
        let before_limit = limit / 2;
        let around = |from, direction, limit| {
            self.page(user, room_id, Walk { from: Some(from), to: None, direction, limit }, filter)
        };
        let before = around(row.stream_pos - 1, Direction::Backward, before_limit).await?;
        let after = around(row.stream_pos, Direction::Forward, limit - before_limit).await?;
        let state = if filter.lazy_load_members {
            let rows: Vec<EventRow> = [&before.rows, &after.rows]
                .into_iter()
                .flatten()
                .cloned()
                .chain([row.clone()])
                .collect();
            self.member_events_of(room_id, &rows).await?
        } else {
            let state = self.store.state_after(event_id).await?.unwrap_or_default();
            let ids: Vec<_> = state.into_values().collect();
            self.format_state(room_id, &ids).await?
        };
        let event = self
            .format_events(room_id, std::slice::from_ref(&row), viewer_of(actor))
            .await?
            .remove(0);
        let before = self.messages_of(actor, room_id, before, Vec::new()).await?;
        let after = self.messages_of(actor, room_id, after, Vec::new()).await?;
        Ok(Context { before, event, after, state })
    }
}

/// The user and device events are formatted for (their own transaction ids).
pub(crate) fn viewer_of(actor: Actor<'_>) -> Option<(&UserId, &DeviceId)> {
    actor.device().map(|device| (actor.user(), device))
}

/// `event` with `relations` under `unsigned.m.relations`.
pub(crate) fn with_relations(
    event: Raw<AnyTimelineEvent>,
    relations: serde_json::Map<String, Value>,
) -> Result<Raw<AnyTimelineEvent>> {
    let mut json: Value = serde_json::from_str(event.json().get())
        .map_err(|e| Error::internal(format!("formatted event: {e}")))?;
    json["unsigned"]["m.relations"] = Value::Object(relations);
    crate::events::to_raw(&json)
}

/// The content a redaction left of a stored event.
fn redacted_content(row: &EventRow, rules: &RedactionRules) -> Result<Box<RawValue>> {
    #[derive(serde::Deserialize)]
    struct Content {
        content: Box<RawValue>,
    }
    let json = pdu::redacted_json(row, rules)?;
    serde_json::from_str::<Content>(&json)
        .map(|c| c.content)
        .map_err(|e| Error::internal(format!("unreadable PDU {}: {e}", row.event_id)))
}
