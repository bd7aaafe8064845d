//! `/sync`: everything that changed for a user since a token, long-polling until something does.
//!
//! A token names a position in each stream: events (rooms), account data, receipts, typing.
//! Rooms the user joined after the token (or every room, on an initial sync) come with their
//! state at the start of the timeline; other rooms with the new events, and the state that
//! changed in between when the timeline had to be cut (`limited`).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use palisade_core::{Error, Result};
use palisade_storage::{AccountDataRow, EventRow, MembershipRow, ReceiptRow, StateMap, SyncStore};
use ruma::{
    OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId,
    api::{
        Direction,
        client::{
            filter::{FilterDefinition, LazyLoadOptions},
            sync::sync_events::v3::Filter,
        },
    },
    events::{AnyStrippedStateEvent, AnySyncStateEvent},
    serde::Raw,
};
use serde_json::{Value, json, value::RawValue};

mod legacy;
mod response;
mod sliding;

pub use legacy::{InitialSync, InitialSyncRoom};
pub use response::{
    DeviceLists, Events, InvitedRoom, JoinedRoom, KnockedRoom, LeftRoom, RoomSummary, Rooms,
    SyncResponse, Timeline, UnreadNotifications,
};

use crate::{
    AccountDataService, Session,
    account_data::PUSH_RULES,
    e2ee::{DeviceListChanges, E2eeService},
    events::{event_of, to_raw},
    notify::Notifier,
    presence::PresenceService,
    push::PushRuleEvaluator,
    receipts::{ReadPositions, ReceiptService},
    rooms::{EventFilter, INVITE_STATE, RoomService, Visibility, pdu::stripped, stream_token},
    typing::TypingService,
};

/// Positions in each stream a sync has delivered up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncToken {
    /// Room events.
    pub events: u64,
    /// Account data.
    pub account_data: u64,
    /// Receipts.
    pub receipts: u64,
    /// Typing.
    pub typing: u64,
    /// To-device messages.
    pub to_device: u64,
    /// Device list changes.
    pub device_lists: u64,
    /// Presence.
    pub presence: u64,
}

impl SyncToken {
    /// Parses `s<events>_<account data>_<receipts>_<typing>_<to-device>_<device lists>_
    /// <presence>`; a token from before presence was synced (no last part) reads as 0.
    pub fn parse(token: &str) -> Result<Self> {
        let invalid = || Error::invalid_param("Invalid sync token");
        let parts: Vec<u64> = token
            .strip_prefix('s')
            .ok_or_else(invalid)?
            .split('_')
            .map(|p| p.parse().map_err(|_| invalid()))
            .collect::<Result<_>>()?;
        let (events, account_data, receipts, typing, to_device, device_lists, presence) =
            match parts[..] {
                [a, b, c, d, e, f] => (a, b, c, d, e, f, 0),
                [a, b, c, d, e, f, g] => (a, b, c, d, e, f, g),
                _ => return Err(invalid()),
            };
        Ok(Self { events, account_data, receipts, typing, to_device, device_lists, presence })
    }
}

/// Saved as its text form (sliding sync connections kept across a restart).
impl serde::Serialize for SyncToken {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for SyncToken {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for SyncToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "s{}_{}_{}_{}_{}_{}_{}",
            self.events,
            self.account_data,
            self.receipts,
            self.typing,
            self.to_device,
            self.device_lists,
            self.presence
        )
    }
}

/// The parts of a sync filter the server applies.
#[derive(Debug, Clone)]
pub struct SyncFilter {
    /// Which timeline events to send.
    pub timeline: EventFilter,
    /// Most timeline events per room.
    pub timeline_limit: usize,
    /// Send only the members of the timeline's senders (and the user) as state.
    pub lazy_load_members: bool,
    /// Include rooms the user has left in an initial sync.
    pub include_leave: bool,
    /// Only these rooms, when given.
    pub rooms: Option<Vec<OwnedRoomId>>,
    /// Never these rooms.
    pub not_rooms: Vec<OwnedRoomId>,
    /// Count threads apart (`unread_thread_notifications`), the main timeline alone in the
    /// room's counts.
    pub thread_counts: bool,
    /// Which presence events to send (by type and sender); `None` for none.
    pub presence: Option<EventFilter>,
}

impl Default for SyncFilter {
    fn default() -> Self {
        Self {
            timeline: EventFilter::default(),
            timeline_limit: 10,
            lazy_load_members: false,
            include_leave: false,
            rooms: None,
            not_rooms: Vec::new(),
            thread_counts: false,
            presence: Some(EventFilter::default()),
        }
    }
}

impl From<&FilterDefinition> for SyncFilter {
    fn from(definition: &FilterDefinition) -> Self {
        let room = &definition.room;
        let timeline_limit = room.timeline.limit.map_or(Self::default().timeline_limit, |l| {
            usize::try_from(u64::from(l)).unwrap_or(usize::MAX)
        });
        Self {
            timeline: EventFilter::from(&room.timeline),
            timeline_limit,
            lazy_load_members: matches!(
                room.state.lazy_load_options,
                LazyLoadOptions::Enabled { .. }
            ),
            include_leave: room.include_leave,
            rooms: room.rooms.clone(),
            not_rooms: room.not_rooms.clone(),
            thread_counts: room.timeline.unread_thread_notifications,
            presence: presence_filter(&definition.presence),
        }
    }
}

/// The presence a sync filter asks for: `None` when it turns presence off (a limit of 0, or
/// `m.presence` left out by type, as clients that do not show presence ask).
fn presence_filter(filter: &ruma::api::client::filter::Filter) -> Option<EventFilter> {
    if filter.limit.is_some_and(|limit| limit == ruma::UInt::MIN) {
        return None;
    }
    let filter = EventFilter {
        types: filter.types.clone(),
        not_types: filter.not_types.clone(),
        senders: filter.senders.clone(),
        not_senders: filter.not_senders.clone(),
        ..EventFilter::default()
    };
    // Senders are checked per event; by type, presence is in or out as a whole.
    let by_type = EventFilter { senders: None, not_senders: Vec::new(), ..filter.clone() };
    by_type.allows("m.presence", ruma::user_id!("@anyone:localhost")).then_some(filter)
}

/// One `/sync` request.
#[derive(Debug, Clone, Default)]
pub struct SyncRequest {
    /// The token of the previous sync.
    pub since: Option<String>,
    /// Send the full state of every room.
    pub full_state: bool,
    /// How long to wait for something new.
    pub timeout: Duration,
    /// What to send: a filter, or the id of one the user stored.
    pub filter: Option<Filter>,
    /// The presence syncing gives the user (`online` when absent; `offline` changes nothing).
    pub set_presence: Option<String>,
}

/// Most events checked for unread counts per room.
const MAX_UNREAD_SCAN: usize = 1000;
/// Most events between two syncs for which the rooms they touched are listed; past this,
/// every room of the user is read.
const MAX_CHANGED_SCAN: usize = 10_000;
/// Longest a sync waits.
const MAX_TIMEOUT: Duration = Duration::from_secs(300);

/// Builds sync responses.
pub struct SyncService {
    presence: Arc<PresenceService>,
    rooms: Arc<RoomService>,
    push_rules: Arc<PushRuleEvaluator>,
    account_data: Arc<AccountDataService>,
    receipts: Arc<ReceiptService>,
    typing: Arc<TypingService>,
    e2ee: Arc<E2eeService>,
    notifier: Arc<Notifier>,
    unread_counts: Mutex<HashMap<(OwnedUserId, OwnedRoomId), UnreadCount>>,
    /// Sliding sync connections and what each has been sent.
    connections: sliding::Connections,
    /// Where the connections are kept across a restart.
    store: Arc<dyn SyncStore>,
    /// Rooms' bump stamps, valid up to the event stream position beside them.
    bumps: Mutex<(u64, HashMap<OwnedRoomId, u64>)>,
}

/// Unread counts of a user in a room, as far as they have been counted.
#[derive(Debug, Clone, Default)]
struct UnreadCount {
    /// The receipts the counts follow.
    read: ReadPositions,
    /// The position counted up to.
    counted_to: u64,
    /// Counts of the main timeline.
    main: Counts,
    /// Counts per thread, by root.
    threads: BTreeMap<OwnedEventId, Counts>,
}

/// Notifications and highlights.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Events that notify.
    pub notifications: u64,
    /// Events that highlight.
    pub highlights: u64,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.notifications += other.notifications;
        self.highlights += other.highlights;
    }
}

impl UnreadCount {
    /// The counts of the main timeline and every thread together.
    fn total(&self) -> Counts {
        let mut all = self.main;
        self.threads.values().for_each(|c| all.add(*c));
        all
    }
}

/// The thread an event belongs to: the root it replies to in a thread (`m.thread`), `None`
/// for the main timeline.
fn thread_of(row: &EventRow) -> Option<OwnedEventId> {
    #[derive(serde::Deserialize)]
    struct Event {
        content: Content,
    }
    #[derive(serde::Deserialize)]
    struct Content {
        #[serde(rename = "m.relates_to")]
        relates_to: Relation,
    }
    #[derive(serde::Deserialize)]
    struct Relation {
        rel_type: String,
        event_id: OwnedEventId,
    }
    let event: Event = serde_json::from_str(&row.json).ok()?;
    (event.content.relates_to.rel_type == "m.thread").then_some(event.content.relates_to.event_id)
}

/// Where a room's part of a pass starts and ends.
#[derive(Debug, Clone, Copy)]
struct Window {
    since: Option<SyncToken>,
    now: SyncToken,
    /// Nothing happened in the room's timeline or receipts in between.
    quiet: bool,
}

/// What a request asks for, its filter resolved.
struct Wanted {
    full_state: bool,
    filter: SyncFilter,
}

/// What one pass found.
struct Pass {
    body: SyncResponse,
    changed: bool,
}

impl SyncService {
    /// The service.
    #[expect(
        clippy::too_many_arguments,
        reason = "a sync reads every stream: rooms, push rules, account data, receipts, typing, keys"
    )]
    pub fn new(
        rooms: Arc<RoomService>,
        push_rules: Arc<PushRuleEvaluator>,
        account_data: Arc<AccountDataService>,
        receipts: Arc<ReceiptService>,
        typing: Arc<TypingService>,
        e2ee: Arc<E2eeService>,
        notifier: Arc<Notifier>,
        store: Arc<dyn SyncStore>,
        presence: Arc<PresenceService>,
    ) -> Self {
        let unread_counts = Mutex::new(HashMap::new());
        Self {
            presence,
            rooms,
            push_rules,
            account_data,
            receipts,
            typing,
            e2ee,
            notifier,
            unread_counts,
            connections: sliding::Connections::default(),
            store,
            bumps: Mutex::new((0, HashMap::new())),
        }
    }

    /// Answers a sync: at once if anything changed (or on an initial or full-state sync),
    /// otherwise as soon as something does, or empty when the timeout passes.
    pub async fn sync(&self, session: &Session, request: &SyncRequest) -> Result<SyncResponse> {
        let since = request.since.as_deref().map(SyncToken::parse).transpose()?;
        let filter = match &request.filter {
            Some(Filter::FilterDefinition(definition)) => SyncFilter::from(definition),
            Some(Filter::FilterId(id)) => {
                SyncFilter::from(&self.account_data.filter(session.user_id(), id).await?)
            }
            _ => SyncFilter::default(),
        };
        let wanted = Wanted { full_state: request.full_state, filter };
        let _syncing =
            self.presence.syncing(session.user_id(), request.set_presence.as_deref()).await;
        let deadline = tokio::time::Instant::now() + request.timeout.min(MAX_TIMEOUT);
        let mut wake = self.notifier.subscribe(session.user_id());
        loop {
            wake.borrow_and_update();
            let pass = self.pass(session, since, &wanted).await?;
            if pass.changed || since.is_none() || request.full_state {
                return Ok(pass.body);
            }
            match tokio::time::timeout_at(deadline, wake.changed()).await {
                Ok(Ok(())) => continue,
                _ => return Ok(pass.body),
            }
        }
    }

    async fn now(&self) -> Result<SyncToken> {
        Ok(SyncToken {
            events: self.rooms.position(),
            account_data: self.account_data.position().await?,
            receipts: self.receipts.position().await?,
            typing: self.typing.position(),
            to_device: self.e2ee.to_device_position().await?,
            device_lists: self.e2ee.device_list_position().await?,
            presence: self.presence.position(),
        })
    }

    async fn pass(
        &self,
        session: &Session,
        since: Option<SyncToken>,
        request: &Wanted,
    ) -> Result<Pass> {
        let user = session.user_id();
        let mut now = self.now().await?;
        let filter = &request.filter;
        // Streams that did not move since the token are not read.
        let account_data: Vec<AccountDataRow> = match since {
            Some(s) if s.account_data >= now.account_data => Vec::new(),
            _ => {
                let after = since.map_or(0, |s| s.account_data);
                self.account_data.changed_between(user, after, now.account_data).await?
            }
        };

        let mut rooms = Rooms::default();
        // Strict device trust: an unapproved device sees no rooms at all.
        let walled_off = self.e2ee.trust().is_walled_off(user, session.device_id()).await?;
        if walled_off {
            // Its token must not move past rooms it has not seen, or they would never arrive
            // once it is approved.
            now.events = since.map_or(0, |s| s.events);
        }
        let memberships =
            if walled_off { Vec::new() } else { self.rooms.memberships_of(user).await? };
        let changed_rooms = match since {
            Some(since) if !request.full_state && !memberships.is_empty() => {
                self.changed_rooms(since, now).await?
            }
            _ => None,
        };
        // A room new to this token gets all of its account data (tags included), not only
        // what changed since: it may have been set while the device could not see the room.
        let mut all_account_data: Option<Vec<AccountDataRow>> = None;
        for membership in memberships {
            let room_id = &membership.room_id;
            let wanted = filter.rooms.as_ref().is_none_or(|rooms| rooms.contains(room_id))
                && !filter.not_rooms.contains(room_id);
            // A membership newer than this pass's snapshot shows up in the next one.
            if !wanted || membership.stream_pos > now.events {
                continue;
            }
            let changed_since = since.is_none_or(|s| membership.stream_pos > s.events);
            match membership.membership.as_str() {
                "join" => {
                    let quiet = !changed_since
                        && changed_rooms.as_ref().is_some_and(|rooms| !rooms.contains(room_id));
                    let window = Window { since, now, quiet };
                    let room_data = match since {
                        Some(since) if membership.stream_pos <= since.events => &account_data,
                        Some(_) => match &mut all_account_data {
                            Some(rows) => rows,
                            all => all.insert(
                                self.account_data
                                    .changed_between(user, 0, now.account_data)
                                    .await?,
                            ),
                        },
                        None => &account_data,
                    };
                    if let Some(room) =
                        self.joined_room(session, &membership, window, request, room_data).await?
                    {
                        rooms.join.insert(room_id.clone(), room);
                    }
                }
                "invite" if changed_since => {
                    let mut room = InvitedRoom::default();
                    room.invite_state.events =
                        self.shown_state(&membership, "invite_room_state").await?;
                    rooms.invite.insert(room_id.clone(), room);
                }
                "knock" if changed_since => {
                    let mut room = KnockedRoom::default();
                    room.knock_state.events =
                        self.shown_state(&membership, "knock_room_state").await?;
                    rooms.knock.insert(room_id.clone(), room);
                }
                "leave" | "ban" if changed_since && (since.is_some() || filter.include_leave) => {
                    let left = self.left_room(session, &membership, since, request).await?;
                    rooms.leave.insert(room_id.clone(), left);
                }
                _ => {}
            }
        }

        let global_rows = account_data.iter().filter(|row| row.room_id.is_none());
        let mut global: Vec<_> = global_rows
            .clone()
            .map(|row| event_of(&row.kind, None, &row.content))
            .collect::<Result<_>>()?;
        if since.is_none() && !global_rows.clone().any(|row| row.kind == PUSH_RULES) {
            let rules = self.account_data.push_rules(user).await?;
            global.push(to_raw(&json!({ "type": PUSH_RULES, "content": { "global": rules } }))?);
        }
        let (to_device, to_device_pos) = self
            .e2ee
            .to_device_for_sync(session, since.map(|s| s.to_device), now.to_device)
            .await?;
        now.to_device = to_device_pos;
        let device_lists = match since {
            Some(since) => {
                self.e2ee.device_list_changes(user, since.device_lists, since.events).await?
            }
            None => DeviceListChanges::default(),
        };
        let (key_counts, fallback_types) = self.e2ee.key_counts(session).await?;
        let presence = match &filter.presence {
            Some(wanted) => self.presence_events(user, since, now.presence, wanted).await?,
            None => Vec::new(),
        };
        let body = SyncResponse {
            next_batch: now.to_string(),
            rooms,
            presence: Events { events: presence },
            account_data: global.into(),
            to_device: to_device.into(),
            device_lists: DeviceLists { changed: device_lists.changed, left: device_lists.left },
            device_one_time_keys_count: key_counts,
            device_unused_fallback_key_types: fallback_types,
        };
        let changed = body.is_news();
        Ok(Pass { body, changed })
    }

    /// `m.presence` events of the user and those sharing a room with them, changed between
    /// the token and this pass.
    async fn presence_events(
        &self,
        user: &UserId,
        since: Option<SyncToken>,
        up_to: u64,
        filter: &EventFilter,
    ) -> Result<Vec<Raw<ruma::events::presence::PresenceEvent>>> {
        let changes = self.presence.changes_for(user, since.map(|s| s.presence), up_to).await?;
        changes
            .into_iter()
            .filter(|(sender, _)| filter.allows("m.presence", sender))
            .map(|(sender, presence)| {
                let mut content = json!({
                    "presence": presence.state,
                    "last_active_ago": presence.last_active_ago,
                    "currently_active": presence.currently_active,
                });
                if let Some(status) = &presence.status_msg {
                    content["status_msg"] = json!(status);
                }
                to_raw(&json!({ "type": "m.presence", "sender": sender, "content": content }))
            })
            .collect()
    }

    /// Rooms with events or receipts between the token and this pass; `None` when too much
    /// happened in between to list (every room is then read).
    async fn changed_rooms(
        &self,
        since: SyncToken,
        now: SyncToken,
    ) -> Result<Option<HashSet<OwnedRoomId>>> {
        let Some(mut rooms) = self
            .rooms
            .rooms_with_events_between(since.events, now.events, MAX_CHANGED_SCAN)
            .await?
        else {
            return Ok(None);
        };
        if now.receipts > since.receipts {
            let receipts = &self.receipts;
            rooms.extend(receipts.rooms_with_receipts_between(since.receipts, now.receipts).await?);
        }
        Ok(Some(rooms))
    }

    /// The timeline of a room between `to` (exclusive) and `from`, newest `limit` events, in
    /// chronological order; with whether it was cut and the position before its first event.
    async fn timeline(
        &self,
        membership: &MembershipRow,
        from: u64,
        to: Option<u64>,
        filter: &SyncFilter,
    ) -> Result<(Vec<EventRow>, bool, u64)> {
        let (user, room_id) = (&membership.user_id, membership.room_id.as_ref());
        let limit = filter.timeline_limit.clamp(1, 1000);
        let mut viewer = Visibility::new(user, membership.membership == "join");
        let page = self
            .rooms
            .timeline_page(
                room_id,
                from,
                to,
                from,
                Direction::Backward,
                limit + 1,
                &filter.timeline,
                Some(&mut viewer),
            )
            .await?;
        let mut rows = page.rows;
        let limited = rows.len() > limit;
        rows.truncate(limit);
        rows.reverse();
        let start = rows.first().map_or(from, |row| row.stream_pos - 1);
        Ok((rows, limited, start))
    }

    /// State to send with a timeline starting after `start`.
    async fn state(
        &self,
        room_id: &RoomId,
        start: u64,
        since: Option<u64>,
        rows: &[EventRow],
        user: &UserId,
        lazy: bool,
    ) -> Result<Vec<Raw<AnySyncStateEvent>>> {
        let at_start = self.rooms.state_at_pos(room_id, start).await?.unwrap_or_default();
        let mut state: StateMap = match since {
            None => at_start.clone(),
            Some(since) => {
                let before = self.rooms.state_at_pos(room_id, since).await?.unwrap_or_default();
                at_start
                    .iter()
                    .filter(|(k, v)| before.get(*k) != Some(*v))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            }
        };
        if lazy {
            let mut needed: Vec<String> = rows.iter().map(|r| r.sender.to_string()).collect();
            needed.push(user.to_string());
            state.retain(|(kind, key), _| kind != "m.room.member" || needed.contains(key));
            for member in needed {
                let key = ("m.room.member".to_owned(), member);
                if let Some(id) = at_start.get(&key) {
                    state.insert(key, id.clone());
                }
            }
        }
        let ids: Vec<OwnedEventId> = state.into_values().collect();
        let events = self.rooms.format_state(room_id, &ids).await?;
        Ok(events.into_iter().map(Raw::cast).collect())
    }

    async fn joined_room(
        &self,
        session: &Session,
        membership: &MembershipRow,
        Window { since, now, quiet }: Window,
        request: &Wanted,
        account_data: &[AccountDataRow],
    ) -> Result<Option<JoinedRoom>> {
        let (user, room_id) = (session.user_id(), membership.room_id.as_ref());
        let filter = &request.filter;
        let joined_since = since.is_none_or(|s| membership.stream_pos > s.events);
        let to = if joined_since { None } else { since.map(|s| s.events) };
        let (rows, limited, start) = if quiet {
            (Vec::new(), false, now.events)
        } else {
            self.timeline(membership, now.events, to, filter).await?
        };
        // Full state for a new room; the changes hidden by a cut timeline; else nothing (the
        // timeline itself carries the state changes).
        let state = if joined_since || request.full_state {
            self.state(room_id, start, None, &rows, user, filter.lazy_load_members).await?
        } else if limited {
            self.state(room_id, start, to, &rows, user, filter.lazy_load_members).await?
        } else {
            Vec::new()
        };

        let mut ephemeral = Vec::new();
        if let Some(typing) = self.typing.typing_since(room_id, since.map(|s| s.typing))
            && (since.is_some() || !typing.is_empty())
        {
            ephemeral
                .push(to_raw(&json!({ "type": "m.typing", "content": { "user_ids": typing } }))?);
        }
        let receipts_from = if joined_since { 0 } else { since.map_or(0, |s| s.receipts) };
        let receipts: Vec<ReceiptRow> = if quiet || receipts_from >= now.receipts {
            Vec::new()
        } else {
            self.receipts.receipts_between(room_id, user, receipts_from, now.receipts).await?
        };
        if !receipts.is_empty() {
            ephemeral.push(to_raw(&receipt_event(&receipts))?);
        }
        let room_data: Vec<_> = account_data
            .iter()
            .filter(|row| row.room_id.as_deref() == Some(room_id))
            .map(|row| event_of(&row.kind, None, &row.content))
            .collect::<Result<_>>()?;

        if !joined_since
            && !request.full_state
            && rows.is_empty()
            && state.is_empty()
            && ephemeral.is_empty()
            && room_data.is_empty()
        {
            return Ok(None);
        }
        let unread = self.unread(user, room_id, membership, now.events).await?;
        let (counts, thread_counts) = if request.filter.thread_counts {
            let threads = unread.threads.iter().filter(|(_, c)| **c != Counts::default());
            let threads = threads.map(|(root, c)| (root.clone(), (*c).into())).collect();
            (unread.main, threads)
        } else {
            (unread.total(), BTreeMap::new())
        };
        let mut room = JoinedRoom {
            summary: RoomSummary::default(),
            state: state.into(),
            timeline: self.timeline_of(session, room_id, &rows, limited, Some(start)).await?,
            ephemeral: ephemeral.into(),
            account_data: room_data.into(),
            unread_notifications: counts.into(),
            unread_thread_notifications: thread_counts,
        };
        let members_changed = rows.iter().any(|r| r.kind == "m.room.member");
        if joined_since || members_changed {
            room.summary = self.summary(room_id, user).await?;
        }
        Ok(Some(room))
    }

    /// A timeline in client format: transaction ids shown to the device that sent them.
    async fn timeline_of(
        &self,
        session: &Session,
        room_id: &RoomId,
        rows: &[EventRow],
        limited: bool,
        start: Option<u64>,
    ) -> Result<Timeline> {
        let viewer = Some((session.user_id(), session.device_id()));
        let events = self.rooms.format_events(room_id, rows, viewer).await?;
        Ok(Timeline {
            events: events.into_iter().map(Raw::cast).collect(),
            limited,
            prev_batch: start.map(stream_token),
        })
    }

    /// Member counts, and `m.heroes` for a room without a name or alias (clients name it
    /// after them).
    async fn summary(&self, room_id: &RoomId, user: &UserId) -> Result<RoomSummary> {
        let members = self.rooms.membership_rows(room_id).await?;
        let count = |m: &str| members.iter().filter(|row| row.membership == m).count() as u64;
        let mut summary = RoomSummary {
            heroes: None,
            joined_member_count: Some(count("join")),
            invited_member_count: Some(count("invite")),
        };
        if !self.rooms.is_named(room_id).await? {
            let heroes = members
                .iter()
                .filter(|row| {
                    row.user_id != user && matches!(row.membership.as_str(), "join" | "invite")
                })
                .take(5)
                .map(|row| row.user_id.clone());
            summary.heroes = Some(heroes.collect());
        }
        Ok(summary)
    }

    /// Notification and highlight counts from the push rules, of the main timeline and of
    /// each thread, each since the user's receipt for it (threaded receipts) or their last
    /// unthreaded one, whichever is later (never before they joined).
    ///
    /// Counted incrementally: a pass evaluates only the events after the ones the previous
    /// pass counted for the same receipts, so a long-poll wake-up costs one event, not the
    /// room's whole unread history.
    async fn unread(
        &self,
        user: &UserId,
        room_id: &RoomId,
        membership: &MembershipRow,
        now: u64,
    ) -> Result<UnreadCount> {
        let mut read = self.receipts.read_positions(room_id, user).await?;
        read.unthreaded = read.unthreaded.max(membership.stream_pos);
        let key = (user.to_owned(), room_id.to_owned());
        let cached = self
            .unread_counts
            .lock()
            .expect("unread counts poisoned")
            .get(&key)
            .cloned()
            .filter(|c| c.read == read && c.counted_to <= now);
        let mut count = cached.unwrap_or(UnreadCount {
            counted_to: read.unthreaded,
            read,
            ..Default::default()
        });
        if count.counted_to < now {
            let page = self
                .rooms
                .timeline_page(
                    room_id,
                    count.counted_to,
                    Some(now),
                    now,
                    Direction::Forward,
                    MAX_UNREAD_SCAN,
                    &EventFilter::default(),
                    None,
                )
                .await?;
            let mut unread = Vec::new();
            let mut threads = Vec::new();
            for row in page.rows.into_iter().filter(|row| row.sender != user) {
                let thread = thread_of(&row);
                if row.stream_pos > count.read.of(thread.as_ref().map(|t| t.as_str())) {
                    unread.push(row);
                    threads.push(thread);
                }
            }
            let counted = self.evaluate(user, room_id, &unread).await?;
            for (thread, counts) in threads.into_iter().zip(counted) {
                match thread {
                    Some(root) => count.threads.entry(root).or_default().add(counts),
                    None => count.main.add(counts),
                }
            }
            count.counted_to = if page.reached_end { now } else { page.cursor };
        }
        self.unread_counts.lock().expect("unread counts poisoned").insert(key, count.clone());
        Ok(count)
    }

    /// Whether the user's push rules make each of `events` notify and highlight.
    async fn evaluate(
        &self,
        user: &UserId,
        room_id: &RoomId,
        unread: &[EventRow],
    ) -> Result<Vec<Counts>> {
        if unread.is_empty() {
            return Ok(Vec::new());
        }
        let events = self.rooms.format_events(room_id, unread, None).await?;
        let room = self.push_rules.room(room_id).await?;
        let actions = self.push_rules.actions(user, &room, &events).await?;
        Ok(actions
            .into_iter()
            .map(|actions| Counts {
                notifications: u64::from(actions.iter().any(|a| a.should_notify())),
                highlights: u64::from(actions.iter().any(|a| a.is_highlight())),
            })
            .collect())
    }

    /// The room state an invited or knocking user is shown: what another server sent with
    /// the invite or answered the knock with (kept in the event's `unsigned` under `key`),
    /// else the state at the membership; with the membership event itself.
    async fn shown_state(
        &self,
        membership: &MembershipRow,
        key: &str,
    ) -> Result<Vec<Raw<AnyStrippedStateEvent>>> {
        let mut shown = Vec::new();
        if let Some(row) = self.rooms.stored_event(&membership.event_id).await?
            && let Some(unsigned) = row.unsigned.as_deref()
            && let Ok(unsigned) = serde_json::from_str::<BTreeMap<&str, &RawValue>>(unsigned)
            && let Some(sent) = unsigned.get(key)
            && let Ok(sent) = serde_json::from_str::<Vec<Raw<AnyStrippedStateEvent>>>(sent.get())
        {
            shown.extend(sent);
            let event = self.rooms.format_state(&membership.room_id, &[row.event_id]).await?;
            shown.extend(event.iter().filter_map(|e| stripped(e.json())));
            return Ok(shown);
        }
        let state = self.rooms.state_after(&membership.event_id).await?.unwrap_or_default();
        let mut ids: Vec<OwnedEventId> = INVITE_STATE
            .iter()
            .filter_map(|kind| state.get(&((*kind).to_owned(), String::new())).cloned())
            .collect();
        ids.push(membership.event_id.clone());
        let events = self.rooms.format_state(&membership.room_id, &ids).await?;
        shown.extend(events.iter().filter_map(|e| stripped(e.json())));
        Ok(shown)
    }

    async fn left_room(
        &self,
        session: &Session,
        membership: &MembershipRow,
        since: Option<SyncToken>,
        request: &Wanted,
    ) -> Result<LeftRoom> {
        let room_id = membership.room_id.as_ref();
        let mut room = LeftRoom::default();
        if !self.rooms.left_while_joined(membership).await? {
            // A rejected invite or a ban before joining: the membership event, nothing more.
            let rows: Vec<_> =
                self.rooms.stored_event(&membership.event_id).await?.into_iter().collect();
            room.timeline = self.timeline_of(session, room_id, &rows, false, None).await?;
            return Ok(room);
        }
        let to = since.map(|s| s.events);
        let (rows, limited, start) =
            self.timeline(membership, membership.stream_pos, to, &request.filter).await?;
        let lazy = request.filter.lazy_load_members;
        if since.is_none() || limited {
            let state = self.state(room_id, start, to, &rows, session.user_id(), lazy).await?;
            room.state = state.into();
        }
        room.timeline = self.timeline_of(session, room_id, &rows, limited, Some(start)).await?;
        Ok(room)
    }
}

/// One `m.receipt` event: event id → receipt type → user → `{ts, thread_id}`.
fn receipt_event(receipts: &[ReceiptRow]) -> Value {
    let mut content: BTreeMap<String, BTreeMap<String, BTreeMap<String, Value>>> = BTreeMap::new();
    for receipt in receipts {
        let mut data = json!({ "ts": receipt.ts });
        if let Some(thread) = &receipt.thread_id {
            data["thread_id"] = json!(thread);
        }
        content
            .entry(receipt.event_id.to_string())
            .or_default()
            .entry(receipt.receipt_type.clone())
            .or_default()
            .insert(receipt.user_id.to_string(), data);
    }
    json!({ "type": "m.receipt", "content": content })
}
