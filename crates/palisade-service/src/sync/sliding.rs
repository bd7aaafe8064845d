//! Simplified sliding sync (MSC4186), what Element X syncs with: the client asks for windows
//! (`ranges`) of its room list sorted by recent activity, and for particular rooms; the server
//! sends only those rooms, and of each only what this connection has not been sent yet.
//!
//! A connection (per device and `conn_id`) remembers, per position it handed out, the stream
//! token and which rooms it has sent up to where, so a request costs what changed since its
//! `pos`, and the first request for 20 rooms of a 1,000-room account reads 20 timelines. The
//! last two positions are kept (a client retrying a request whose answer it lost uses the
//! older one); an unknown position is `M_UNKNOWN_POS`, on which clients start afresh.
//!
//! MSC: <https://github.com/matrix-org/matrix-spec-proposals/pull/4186>

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque},
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use palisade_core::{Error, ErrorKind, Result};
use palisade_storage::{AccountDataRow, EventRow, MembershipRow, StateMap};
use ruma::{
    OwnedDeviceId, OwnedRoomId, OwnedUserId, RoomId, UInt, UserId,
    api::client::sync::sync_events::{
        UnreadNotificationsCount,
        v5::{self, request, response},
    },
    directory::RoomTypeFilter,
    events::StateEventType,
    serde::Raw,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{MAX_CHANGED_SCAN, MAX_TIMEOUT, SyncFilter, SyncService, SyncToken, receipt_event};
use crate::{
    Session,
    events::{event_of, to_raw},
    trust::Actor,
};

/// Event types that move a room up the list (Synapse's defaults): what people post, not
/// profile changes or reactions.
const BUMP_TYPES: &[&str] = &[
    "m.room.create",
    "m.room.message",
    "m.room.encrypted",
    "m.sticker",
    "m.call.invite",
    "m.poll.start",
    "m.beacon_info",
];
/// Connections remembered at once; the least recently used goes first.
const MAX_CONNECTIONS: usize = 10_000;
/// Connections one device may hold (Element X uses two: room list and encryption).
const MAX_CONNECTIONS_PER_DEVICE: usize = 8;
/// Positions remembered per connection.
const POSITIONS_KEPT: usize = 2;
/// Longest `timeline_limit` honoured.
const MAX_TIMELINE_LIMIT: u64 = 100;
/// Most rooms in one list's ranges.
const MAX_RANGE: u64 = 1000;
/// Most lists, ranges per list, room subscriptions and `required_state` entries per list or
/// subscription a request may have (one request must not cost the server without bound).
const MAX_LISTS: usize = 100;
const MAX_RANGES: usize = 100;
const MAX_SUBSCRIPTIONS: usize = 1000;
const MAX_REQUIRED_STATE: usize = 100;

/// A connection's identity: the device and its `conn_id`.
type ConnectionKey = (OwnedUserId, OwnedDeviceId, String);

/// What a connection had been sent as of one position.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ConnectionState {
    token: SyncToken,
    rooms: HashMap<OwnedRoomId, SentRoom>,
    list_counts: BTreeMap<String, u64>,
}

/// How far a room has been sent on a connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SentRoom {
    /// The event stream position its timeline was sent up to.
    up_to: u64,
    /// The membership it was sent with.
    membership: String,
    /// The state it was sent with (a wider request gets the room again in full).
    required_state: Vec<(String, String)>,
}

/// A connection's positions, newest last.
struct Connection {
    positions: VecDeque<(u64, ConnectionState)>,
    used: Instant,
}

/// The connections as saved across a restart.
#[derive(Serialize, Deserialize)]
struct Saved {
    next: u64,
    connections: Vec<(ConnectionKey, VecDeque<(u64, ConnectionState)>)>,
}

/// The connections of every device.
#[derive(Default)]
pub(super) struct Connections {
    connections: Mutex<HashMap<ConnectionKey, Connection>>,
    next: AtomicU64,
}

impl Connections {
    /// The state a connection had at `pos`.
    fn state_at(&self, key: &ConnectionKey, pos: &str) -> Result<ConnectionState> {
        let unknown = || Error::new(ErrorKind::UnknownPos, "Unknown position");
        let pos: u64 = pos.parse().map_err(|_| unknown())?;
        let mut connections = self.connections.lock().expect("connections poisoned");
        let connection = connections.get_mut(key).ok_or_else(unknown)?;
        connection.used = Instant::now();
        let (_, state) =
            connection.positions.iter().find(|(p, _)| *p == pos).ok_or_else(unknown)?;
        Ok(state.clone())
    }

    /// Every connection, as JSON.
    fn save(&self) -> Result<String> {
        let connections = self.connections.lock().expect("connections poisoned");
        let saved = Saved {
            next: self.next.load(Ordering::Relaxed),
            connections: connections
                .iter()
                .map(|(k, c)| (k.clone(), c.positions.clone()))
                .collect(),
        };
        serde_json::to_string(&saved)
            .map_err(|e| Error::internal(format!("saving connections: {e}")))
    }

    /// Takes back connections [`Self::save`] wrote; positions handed out later continue after
    /// theirs.
    fn restore(&self, json: &str) -> Result<usize> {
        let saved: Saved = serde_json::from_str(json)
            .map_err(|e| Error::internal(format!("saved connections: {e}")))?;
        self.next.fetch_max(saved.next, Ordering::Relaxed);
        let mut connections = self.connections.lock().expect("connections poisoned");
        let count = saved.connections.len();
        for (key, positions) in saved.connections.into_iter().take(MAX_CONNECTIONS) {
            connections.insert(key, Connection { positions, used: Instant::now() });
        }
        Ok(count)
    }

    /// Records a connection's new state; answers its position. The position it came from is
    /// kept too, and older ones go.
    fn advance(&self, key: ConnectionKey, from: Option<&str>, state: ConnectionState) -> String {
        let pos = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let mut connections = self.connections.lock().expect("connections poisoned");
        if !connections.contains_key(&key) {
            // A device opening connection after connection evicts its own oldest, not
            // other devices'; past the global bound the least recently used goes.
            let of_device = |k: &ConnectionKey| k.0 == key.0 && k.1 == key.1;
            let own = connections.keys().filter(|k| of_device(k)).count();
            let evict = if own >= MAX_CONNECTIONS_PER_DEVICE {
                connections.iter().filter(|(k, _)| of_device(k)).min_by_key(|(_, c)| c.used)
            } else if connections.len() >= MAX_CONNECTIONS {
                connections.iter().min_by_key(|(_, c)| c.used)
            } else {
                None
            };
            if let Some(oldest) = evict.map(|(k, _)| k.clone()) {
                connections.remove(&oldest);
            }
        }
        let connection = connections
            .entry(key)
            .or_insert_with(|| Connection { positions: VecDeque::new(), used: Instant::now() });
        connection.used = Instant::now();
        let from: Option<u64> = from.and_then(|p| p.parse().ok());
        // A fresh start (no position) forgets what was sent before.
        connection.positions.retain(|(p, _)| Some(*p) == from);
        connection.positions.push_back((pos, state));
        while connection.positions.len() > POSITIONS_KEPT {
            connection.positions.pop_front();
        }
        pos.to_string()
    }
}

/// What a request asks of one room: the widest of the lists and subscriptions naming it.
#[derive(Debug, Clone, Default)]
struct RoomConfig {
    timeline_limit: u64,
    required_state: Vec<(String, String)>,
}

impl RoomConfig {
    fn widen(&mut self, limit: UInt, required_state: &[(StateEventType, String)]) {
        self.timeline_limit = self.timeline_limit.max(u64::from(limit)).min(MAX_TIMELINE_LIMIT);
        let mut wanted: BTreeSet<(String, String)> = self.required_state.drain(..).collect();
        wanted.extend(required_state.iter().map(|(kind, key)| (kind.to_string(), key.clone())));
        // Sorted, so a connection compares what it was sent with what it asks for.
        self.required_state = wanted.into_iter().collect();
    }

    /// Whether the members of the timeline's senders are asked for (`$LAZY`).
    fn lazy_members(&self) -> bool {
        self.required_state
            .iter()
            .any(|(kind, key)| (kind == "m.room.member" || kind == "*") && key == "$LAZY")
    }

    /// Whether the state event `(kind, key)` is asked for; `lazy` are the members the timeline
    /// needs (`$LAZY`).
    fn wants(&self, kind: &str, key: &str, user: &UserId, lazy: &HashSet<String>) -> bool {
        self.required_state.iter().any(|(want_kind, want_key)| {
            let kind_matches = want_kind == "*" || want_kind == kind;
            let key_matches = match want_key.as_str() {
                "*" => true,
                "$ME" => key == user.as_str(),
                "$LAZY" => kind == "m.room.member" && lazy.contains(key),
                exact => exact == key,
            };
            kind_matches && key_matches
        })
    }
}

/// A room's data for the response, and whether anything in it is news.
struct BuiltRoom {
    room: response::Room,
    news: bool,
}

impl SyncService {
    /// Saves the sliding sync connections, at shutdown, so that clients continue after the
    /// restart instead of starting over.
    pub async fn save_connections(&self) -> Result<()> {
        self.store.save_sliding_connections(self.connections.save()?).await
    }

    /// Takes back the connections saved at the last shutdown.
    pub async fn restore_connections(&self) -> Result<()> {
        if let Some(json) = self.store.take_sliding_connections().await? {
            match self.connections.restore(&json) {
                Ok(count) => tracing::info!(count, "sliding sync connections restored"),
                Err(error) => tracing::warn!(%error, "saved sliding sync connections unreadable"),
            }
        }
        Ok(())
    }

    /// Answers a sliding sync request: at once on a new connection or when anything asked
    /// for changed since `pos`, else when something does or the timeout passes.
    pub async fn sliding_sync(
        &self,
        session: &Session,
        request: &v5::Request,
    ) -> Result<v5::Response> {
        bounded(request)?;
        let key: ConnectionKey = (
            session.user_id().to_owned(),
            session.device_id().to_owned(),
            request.conn_id.clone().unwrap_or_default(),
        );
        let previous = match &request.pos {
            Some(pos) => Some(self.connections.state_at(&key, pos)?),
            None => None,
        };
        let timeout = request.timeout.unwrap_or_default().min(MAX_TIMEOUT);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut wake = self.notifier.subscribe(session.user_id());
        loop {
            wake.borrow_and_update();
            let (mut response, state, news) =
                self.sliding_pass(session, request, previous.as_ref()).await?;
            let waited_enough = tokio::time::Instant::now() >= deadline;
            if news || previous.is_none() || waited_enough {
                response.pos = self.connections.advance(key, request.pos.as_deref(), state);
                response.txn_id = request.txn_id.clone();
                return Ok(response);
            }
            if tokio::time::timeout_at(deadline, wake.changed()).await.is_err() {
                // The timeout passed: one more pass answers with what there is.
                continue;
            }
        }
    }

    /// One computation of a response against the connection's previous state.
    async fn sliding_pass(
        &self,
        session: &Session,
        request: &v5::Request,
        previous: Option<&ConnectionState>,
    ) -> Result<(v5::Response, ConnectionState, bool)> {
        let user = session.user_id();
        let mut now = self.now().await?;
        let since = previous.map(|p| p.token);
        let walled_off = self.e2ee.trust().is_walled_off(user, session.device_id()).await?;
        if walled_off {
            // As in `/sync`: the token must not move past rooms the device has not seen.
            now.events = since.map_or(0, |s| s.events);
        }
        let memberships: Vec<MembershipRow> =
            if walled_off { Vec::new() } else { self.rooms.memberships_of(user).await? };
        let memberships: HashMap<OwnedRoomId, MembershipRow> = memberships
            .into_iter()
            .filter(|m| m.stream_pos <= now.events)
            .map(|m| (m.room_id.clone(), m))
            .collect();
        let listed: Vec<&MembershipRow> = memberships
            .values()
            .filter(|m| matches!(m.membership.as_str(), "join" | "invite" | "knock"))
            .collect();
        let direct = self.direct_rooms(session).await?;
        let bumps = self.bump_stamps(&listed, now.events).await?;

        let mut response = v5::Response::new(String::new());
        let mut state = ConnectionState {
            token: now,
            rooms: previous.map(|p| p.rooms.clone()).unwrap_or_default(),
            list_counts: BTreeMap::new(),
        };
        let mut wanted: BTreeMap<OwnedRoomId, RoomConfig> = BTreeMap::new();
        for (name, list) in &request.lists {
            let mut rooms = Vec::new();
            for membership in &listed {
                if self.passes(membership, list.filters.as_ref(), &direct).await? {
                    rooms.push(*membership);
                }
            }
            // Most recent activity first; the room id breaks ties so the order is stable.
            let bump = |m: &MembershipRow| bumps.get(&m.room_id).copied().unwrap_or(0);
            rooms.sort_by(|a, b| bump(b).cmp(&bump(a)).then_with(|| a.room_id.cmp(&b.room_id)));
            for (start, end) in &list.ranges {
                let end = u64::from(*end).min(u64::from(*start).saturating_add(MAX_RANGE));
                let start = usize::try_from(u64::from(*start)).unwrap_or(usize::MAX);
                let end = usize::try_from(end).unwrap_or(usize::MAX);
                for membership in rooms.iter().skip(start).take(end.saturating_sub(start) + 1) {
                    let details = &list.room_details;
                    wanted
                        .entry(membership.room_id.clone())
                        .or_default()
                        .widen(details.timeline_limit, &details.required_state);
                }
            }
            let count = rooms.len() as u64;
            state.list_counts.insert(name.clone(), count);
            let mut counted = response::List::default();
            counted.count = UInt::new_saturating(count);
            response.lists.insert(name.clone(), counted);
        }
        for (room_id, subscription) in &request.room_subscriptions {
            if memberships.get(room_id).is_some_and(|m| m.membership != "leave") {
                wanted
                    .entry(room_id.clone())
                    .or_default()
                    .widen(subscription.timeline_limit, &subscription.required_state);
            }
        }
        // Rooms sent before whose membership ended: the leave, so the client updates them.
        for (room_id, sent) in previous.map(|p| &p.rooms).into_iter().flatten() {
            if let Some(membership) = memberships.get(room_id)
                && membership.membership != sent.membership
                && matches!(membership.membership.as_str(), "leave" | "ban")
            {
                wanted.entry(room_id.clone()).or_default();
            }
        }

        let receipts_changed: HashSet<OwnedRoomId> = match since {
            Some(since) if now.receipts > since.receipts => self
                .receipts
                .rooms_with_receipts_between(since.receipts, now.receipts)
                .await?
                .into_iter()
                .collect(),
            _ => HashSet::new(),
        };
        // Rooms with events since the previous position; `None` when there was none, or too
        // much happened to list.
        let changed_rooms = match since {
            Some(since) if now.events > since.events => {
                let between = self.rooms.rooms_with_events_between(
                    since.events,
                    now.events,
                    MAX_CHANGED_SCAN,
                );
                between.await?
            }
            Some(_) => Some(HashSet::new()),
            None => None,
        };
        let mut news = previous.is_none_or(|p| p.list_counts != state.list_counts);
        for (room_id, config) in &wanted {
            let Some(membership) = memberships.get(room_id) else { continue };
            // A room the connection had up to the previous position, untouched since and asked
            // for as before, costs nothing: an idle connection's wake-up reads only the rooms
            // that changed.
            if let (Some(sent), Some(since), Some(changed)) =
                (state.rooms.get_mut(room_id), since, &changed_rooms)
                && sent.up_to >= since.events
                && sent.membership == membership.membership
                && sent.required_state == config.required_state
                && !changed.contains(room_id)
                && !receipts_changed.contains(room_id)
            {
                sent.up_to = now.events;
                continue;
            }
            let sent = state.rooms.get(room_id);
            let window = RoomWindow {
                since: since.map(|s| s.events),
                now: now.events,
                receipts_changed: receipts_changed.contains(room_id),
                bump: bumps.get(room_id).copied(),
                is_dm: direct.contains(room_id),
            };
            let Some(built) = self.sliding_room(session, membership, config, sent, window).await?
            else {
                continue;
            };
            news |= built.news;
            response.rooms.insert(room_id.clone(), built.room);
            state.rooms.insert(
                room_id.clone(),
                SentRoom {
                    up_to: now.events,
                    membership: membership.membership.clone(),
                    required_state: config.required_state.clone(),
                },
            );
        }
        let joined_wanted: Vec<&OwnedRoomId> = wanted
            .keys()
            .filter(|room| memberships.get(*room).is_some_and(|m| m.membership == "join"))
            .collect();
        let extensions =
            self.extensions(session, request, since, &mut now, &response, &joined_wanted).await?;
        news |= extensions.1;
        response.extensions = extensions.0;
        state.token = now;
        Ok((response, state, news))
    }

    /// Whether a room passes a list's filters.
    async fn passes(
        &self,
        membership: &MembershipRow,
        filters: Option<&request::ListFilters>,
        direct: &HashSet<OwnedRoomId>,
    ) -> Result<bool> {
        let Some(filters) = filters else { return Ok(true) };
        let room_id = &membership.room_id;
        if filters.is_invite.is_some_and(|invite| invite != (membership.membership == "invite")) {
            return Ok(false);
        }
        if filters.is_dm.is_some_and(|dm| dm != direct.contains(room_id)) {
            return Ok(false);
        }
        if let Some(encrypted) = filters.is_encrypted {
            let algorithm =
                self.rooms.current_state_text(room_id, "m.room.encryption", "algorithm").await?;
            if encrypted != algorithm.is_some() {
                return Ok(false);
            }
        }
        if !filters.room_types.is_empty() || !filters.not_room_types.is_empty() {
            let kind = self.rooms.current_state_text(room_id, "m.room.create", "type").await?;
            // A filter's string is `None` for the default type (no `type` in the create event).
            let named = |types: &[RoomTypeFilter]| {
                types.iter().any(|filter| filter.as_str() == kind.as_deref())
            };
            if !filters.room_types.is_empty() && !named(&filters.room_types) {
                return Ok(false);
            }
            if named(&filters.not_room_types) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The rooms `m.direct` names.
    async fn direct_rooms(&self, session: &Session) -> Result<HashSet<OwnedRoomId>> {
        let content = match self.account_data.get(Actor::from(session), None, "m.direct").await {
            Ok(content) => content,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(HashSet::new()),
            Err(e) => return Err(e),
        };
        let direct: HashMap<String, Vec<OwnedRoomId>> =
            serde_json::from_str(content.get()).unwrap_or_default();
        Ok(direct.into_values().flatten().collect())
    }

    /// Each room's bump stamp: the position of its latest event of the kinds that move a
    /// room up (an invite: the invite). Remembered across requests and read again only for
    /// rooms with events since.
    async fn bump_stamps(
        &self,
        rooms: &[&MembershipRow],
        now: u64,
    ) -> Result<HashMap<OwnedRoomId, u64>> {
        let cached_to = self.bumps.lock().expect("bump cache poisoned").0;
        // `None`: too much happened to list, so nothing cached is trusted.
        let changed = if cached_to < now {
            self.rooms.rooms_with_events_between(cached_to, now, MAX_CHANGED_SCAN).await?
        } else {
            Some(HashSet::new())
        };
        let mut stamps = HashMap::with_capacity(rooms.len());
        let mut missing = Vec::new();
        {
            let mut cache = self.bumps.lock().expect("bump cache poisoned");
            match &changed {
                Some(changed) => cache.1.retain(|room, _| !changed.contains(room)),
                None => cache.1.clear(),
            }
            cache.0 = cache.0.max(now);
            for membership in rooms {
                if membership.membership != "join" {
                    stamps.insert(membership.room_id.clone(), membership.stream_pos);
                } else if let Some(stamp) = cache.1.get(&membership.room_id) {
                    stamps.insert(membership.room_id.clone(), *stamp);
                } else {
                    missing.push(membership.room_id.clone());
                }
            }
        }
        for room_id in missing {
            let stamp = self.rooms.latest_of_types(&room_id, BUMP_TYPES).await?.unwrap_or(0);
            self.bumps.lock().expect("bump cache poisoned").1.insert(room_id.clone(), stamp);
            stamps.insert(room_id, stamp);
        }
        Ok(stamps)
    }

    /// One room of the response: in full when the connection has not had it (or had it with
    /// less state), else what changed since it was sent; `None` when nothing did.
    async fn sliding_room(
        &self,
        session: &Session,
        membership: &MembershipRow,
        config: &RoomConfig,
        sent: Option<&SentRoom>,
        window: RoomWindow,
    ) -> Result<Option<BuiltRoom>> {
        let (user, room_id) = (session.user_id(), membership.room_id.as_ref());
        let initial = sent.is_none_or(|sent| {
            sent.required_state != config.required_state || sent.membership != membership.membership
        });
        let mut room = response::Room::new();
        room.bump_stamp = window.bump.map(UInt::new_saturating);
        room.is_dm = window.is_dm.then_some(true);
        if membership.membership == "invite" || membership.membership == "knock" {
            if !initial {
                return Ok(None);
            }
            room.initial = Some(true);
            // Synapse sends a knock's stripped state as `invite_state` too.
            let key = format!("{}_room_state", membership.membership);
            room.invite_state = Some(self.shown_state(membership, &key).await?);
            return Ok(Some(BuiltRoom { room, news: true }));
        }
        if membership.membership != "join" {
            // Left or banned: the membership event tells the client.
            let rows: Vec<EventRow> =
                self.rooms.stored_event(&membership.event_id).await?.into_iter().collect();
            let timeline = self.timeline_of(session, room_id, &rows, false, None).await?;
            room.timeline = timeline.events;
            return Ok(Some(BuiltRoom { room, news: true }));
        }

        let after = if initial { None } else { sent.map(|s| s.up_to) };
        let limit = usize::try_from(config.timeline_limit).unwrap_or(usize::MAX);
        let (rows, limited, start) = if after.is_some_and(|a| a >= window.now) {
            (Vec::new(), false, window.now)
        } else if limit == 0 {
            // No events asked for; whether any came decides whether the room is sent (its
            // state and counts), as a timeline cut to nothing.
            let filter = SyncFilter { timeline_limit: 1, ..SyncFilter::default() };
            let (probe, _, _) = self.timeline(membership, window.now, after, &filter).await?;
            (Vec::new(), !probe.is_empty(), window.now)
        } else {
            let filter = SyncFilter { timeline_limit: limit, ..SyncFilter::default() };
            self.timeline(membership, window.now, after, &filter).await?
        };
        if !initial && rows.is_empty() && !limited && !window.receipts_changed {
            return Ok(None);
        }
        let lazy: HashSet<String> = rows.iter().map(|r| r.sender.to_string()).collect();
        let ids = if initial || limited || rows.iter().any(|r| r.state_key.is_some()) {
            let current = self.rooms.state_at_pos(room_id, window.now).await?.unwrap_or_default();
            let before = match after {
                Some(after) => self.rooms.state_at_pos(room_id, after).await?,
                None => None,
            };
            self.describe(&mut room, room_id, user, &current).await?;
            current
                .iter()
                .filter(|(k, v)| before.as_ref().is_none_or(|b| b.get(*k) != Some(*v)))
                .filter(|((kind, key), _)| config.wants(kind, key, user, &lazy))
                .map(|(_, id)| id.clone())
                .collect()
        } else {
            // Only messages since: no state changed, and of the state only the members of
            // their senders may be wanted (`$LAZY`), looked up one by one rather than
            // loading the room's whole state (thousands of members in a big room).
            let mut ids = Vec::new();
            if let Some(group) = rows.last().map(|r| r.state_group)
                && config.lazy_members()
            {
                for sender in &lazy {
                    if let Some(id) = self.rooms.state_entry(group, "m.room.member", sender).await?
                    {
                        ids.push(id);
                    }
                }
            }
            ids
        };
        let required_state = self.rooms.format_state(room_id, &ids).await?;
        room.required_state = required_state.into_iter().map(Raw::cast).collect();
        let timeline = self.timeline_of(session, room_id, &rows, limited, Some(start)).await?;
        room.num_live = Some(UInt::new_saturating(
            rows.iter().filter(|r| window.since.is_some_and(|s| r.stream_pos > s)).count() as u64,
        ));
        room.timeline = timeline.events;
        room.limited = limited;
        room.prev_batch = timeline.prev_batch;
        let unread = self.unread(user, room_id, membership, window.now).await?.total();
        room.unread_notifications = UnreadNotificationsCount::new();
        room.unread_notifications.notification_count =
            Some(UInt::new_saturating(unread.notifications));
        room.unread_notifications.highlight_count = Some(UInt::new_saturating(unread.highlights));
        room.initial = initial.then_some(true);
        Ok(Some(BuiltRoom { room, news: true }))
    }

    /// The room's name, avatar, member counts and, for a room without a name, its heroes.
    async fn describe(
        &self,
        room: &mut response::Room,
        room_id: &RoomId,
        user: &UserId,
        state: &StateMap,
    ) -> Result<()> {
        let text = |kind: &str, field: &str| {
            let id = state.get(&(kind.to_owned(), String::new())).cloned();
            let field = field.to_owned();
            async move {
                match id {
                    Some(id) => Ok::<_, Error>(
                        self.rooms.event_content(&id).await?[field.as_str()]
                            .as_str()
                            .map(str::to_owned),
                    ),
                    None => Ok(None),
                }
            }
        };
        room.name = text("m.room.name", "name").await?.filter(|n| !n.is_empty());
        if let Some(avatar) = text("m.room.avatar", "url").await?.filter(|a| !a.is_empty()) {
            room.avatar = ruma::JsOption::Some(avatar.into());
        }
        let summary = self.summary(room_id, user).await?;
        room.joined_count = summary.joined_member_count.map(UInt::new_saturating);
        room.invited_count = summary.invited_member_count.map(UInt::new_saturating);
        if room.name.is_none() {
            let mut heroes = Vec::new();
            for hero in summary.heroes.into_iter().flatten() {
                let key = ("m.room.member".to_owned(), hero.to_string());
                let content = match state.get(&key) {
                    Some(id) => self.rooms.event_content(id).await?,
                    None => serde_json::Value::Null,
                };
                let mut entry = response::Hero::new(hero);
                entry.name = content["displayname"].as_str().map(str::to_owned);
                entry.avatar = content["avatar_url"].as_str().map(Into::into);
                heroes.push(entry);
            }
            room.heroes = Some(heroes);
        }
        Ok(())
    }

    /// The extensions asked for (to-device messages, keys, account data, receipts, typing),
    /// and whether any of them is news.
    async fn extensions(
        &self,
        session: &Session,
        request: &v5::Request,
        since: Option<SyncToken>,
        now: &mut SyncToken,
        response: &v5::Response,
        wanted: &[&OwnedRoomId],
    ) -> Result<(response::Extensions, bool)> {
        let user = session.user_id();
        let asked = &request.extensions;
        let mut extensions = response::Extensions::default();
        let mut news = false;
        if asked.to_device.enabled == Some(true) {
            // A position this extension gave, or a `/sync` token (clients keep one to-device
            // position for both).
            let from = match asked.to_device.since.as_deref() {
                Some(token) => Some(match token.parse::<u64>() {
                    Ok(pos) => pos,
                    Err(_) => SyncToken::parse(token)?.to_device,
                }),
                None => None,
            };
            let (events, pos) = self.e2ee.to_device_for_sync(session, from, now.to_device).await?;
            now.to_device = pos;
            news |= !events.is_empty();
            let mut to_device = response::ToDevice::default();
            to_device.next_batch = pos.to_string();
            to_device.events = events;
            extensions.to_device = Some(to_device);
        }
        if asked.e2ee.enabled == Some(true) {
            let mut e2ee = response::E2EE::default();
            if let Some(since) = since {
                let changes =
                    self.e2ee.device_list_changes(user, since.device_lists, since.events).await?;
                news |= !changes.changed.is_empty() || !changes.left.is_empty();
                e2ee.device_lists.changed = changes.changed;
                e2ee.device_lists.left = changes.left;
            }
            let (counts, fallback) = self.e2ee.key_counts(session).await?;
            e2ee.device_one_time_keys_count =
                counts.into_iter().map(|(k, v)| (k, UInt::new_saturating(v))).collect();
            e2ee.device_unused_fallback_key_types = Some(fallback);
            extensions.e2ee = e2ee;
        }
        if asked.account_data.enabled == Some(true) {
            let after = since.map_or(0, |s| s.account_data);
            let rows: Vec<AccountDataRow> = if after < now.account_data {
                self.account_data.changed_between(user, after, now.account_data).await?
            } else {
                Vec::new()
            };
            for row in &rows {
                match &row.room_id {
                    None => extensions.account_data.global.push(event_of(
                        &row.kind,
                        None,
                        &row.content,
                    )?),
                    Some(room_id) => extensions
                        .account_data
                        .rooms
                        .entry(room_id.clone())
                        .or_default()
                        .push(event_of(&row.kind, None, &row.content)?),
                }
            }
            news |= !rows.is_empty();
        }
        if asked.receipts.enabled == Some(true) {
            for room_id in response.rooms.keys() {
                let from = match since {
                    Some(since) if response.rooms[room_id].initial.is_none() => since.receipts,
                    _ => 0,
                };
                if from >= now.receipts {
                    continue;
                }
                let receipts =
                    self.receipts.receipts_between(room_id, user, from, now.receipts).await?;
                if !receipts.is_empty() {
                    let event = to_raw(&receipt_event(&receipts))?;
                    extensions.receipts.rooms.insert(room_id.clone(), event);
                }
            }
        }
        // Typing in every joined room the request covers (a room can have nothing else new),
        // and a change wakes the connection.
        if asked.typing.enabled == Some(true) {
            for room_id in wanted {
                if let Some(typing) = self.typing.typing_since(room_id, since.map(|s| s.typing))
                    && (since.is_some() || !typing.is_empty())
                {
                    news |= since.is_some();
                    let event = json!({ "type": "m.typing", "content": { "user_ids": typing } });
                    extensions.typing.rooms.insert((*room_id).clone(), to_raw(&event)?);
                }
            }
        }
        Ok((extensions, news))
    }
}

/// Refuses a request larger than [`MAX_LISTS`] and its siblings allow.
fn bounded(request: &v5::Request) -> Result<()> {
    let too_big = |what: &str| Err(Error::invalid_param(format!("Too many {what} in one request")));
    if request.lists.len() > MAX_LISTS {
        return too_big("lists");
    }
    if request.room_subscriptions.len() > MAX_SUBSCRIPTIONS {
        return too_big("room subscriptions");
    }
    for list in request.lists.values() {
        if list.ranges.len() > MAX_RANGES {
            return too_big("ranges");
        }
        if list.room_details.required_state.len() > MAX_REQUIRED_STATE {
            return too_big("required_state entries");
        }
    }
    if request.room_subscriptions.values().any(|s| s.required_state.len() > MAX_REQUIRED_STATE) {
        return too_big("required_state entries");
    }
    Ok(())
}

/// Where a room's part of a pass starts and ends, and what the pass knows of it.
#[derive(Debug, Clone, Copy)]
struct RoomWindow {
    since: Option<u64>,
    now: u64,
    receipts_changed: bool,
    bump: Option<u64>,
    is_dm: bool,
}
