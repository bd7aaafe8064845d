//! Rooms: the event pipeline and everything clients do with rooms.
//!
//! Every event a room stores goes through one door, `admit` (`admit.rs`), under the room's
//! lock: local events built here as full PDUs (prev/auth events, depth, content hash,
//! signature, reference-hash id), events from other servers once `verify.rs` checked them;
//! both are checked against the room version's authorization rules with ruma-state-res, then
//! committed with their state snapshot in one transaction before anyone is told about them.

mod admit;
mod create;
mod directory;
mod index;
mod membership;
pub mod pdu;
mod read;
mod relations;
mod remote;
mod resolve;
mod search;
mod spaces;
mod upgrade;
mod verify;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex as SyncMutex,
        atomic::{AtomicU64, Ordering},
    },
};

use palisade_core::{Clock, Config, Error, ErrorKind, Result};
use palisade_storage::{RoomSnapshot, RoomStore, StateMap};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, OwnedDeviceId, OwnedEventId, OwnedRoomId,
    RoomId, RoomVersionId, UserId,
    events::{
        StateEventType, TimelineEventType,
        room::power_levels::{RoomPowerLevels, RoomPowerLevelsEventContent},
    },
    room_version_rules::RoomVersionRules,
    state_res,
};
use serde_json::Value;
use tokio::sync::Mutex;

pub use admit::Received;
pub use create::{CreateRoom, Preset};
pub use directory::{DirectoryService, PublicRoom};
pub use membership::MembershipService;
pub use pdu::Pdu;
pub(crate) use read::Visibility;
pub use read::{
    Context, EventFilter, EventsPage, Messages, Walk, parse_stream_token, stream_token,
};
pub use relations::{Relations, RelationsQuery, Threads};
pub use remote::{JoinedRoom, RemoteRoomService};
pub use search::{
    ContextRequest, ResultContext, ResultGroup, RoomEventResults, SearchCategories, SearchKey,
    SearchRequest, SearchResult, SearchResults, SenderProfile,
};
pub use spaces::{HierarchyPage, HierarchyQuery};
pub use verify::{RemoteEvent, UnverifiedPdu};

use self::admit::Incoming;
use crate::{
    AccountService, DeviceTrustService,
    keys::SigningKey,
    notify::Notifier,
    outbound::OutboundSlot,
    trust::{Actor, Need},
};

/// An event a local user asks to send, before it becomes a PDU.
#[derive(Debug, Clone)]
pub struct EventTemplate {
    /// Event type.
    pub kind: String,
    /// State key, for state events.
    pub state_key: Option<String>,
    /// Content, as canonical JSON (see [`content`] and [`content_from_json`]).
    pub content: CanonicalJsonObject,
}

impl EventTemplate {
    /// What sending it needs of the device: changing the room's state needs approval (an
    /// invited accomplice, or a room opened to anyone, would be sent the owner's room keys),
    /// except a user's own join, leave or knock, which needs only access to rooms.
    fn need(&self, sender: &UserId) -> Need {
        let own_membership = self.kind == "m.room.member"
            && self.state_key.as_deref() == Some(sender.as_str())
            && matches!(
                self.content.get("membership"),
                Some(CanonicalJsonValue::String(m)) if matches!(m.as_str(), "join" | "leave" | "knock")
            );
        if self.state_key.is_some() && !own_membership { Need::Approval } else { Need::RoomAccess }
    }
}

impl EventTemplate {
    /// A state event.
    pub fn state(
        kind: impl Into<String>,
        state_key: impl Into<String>,
        content: CanonicalJsonObject,
    ) -> Self {
        Self { kind: kind.into(), state_key: Some(state_key.into()), content }
    }

    /// A timeline (non-state) event.
    pub fn message(kind: impl Into<String>, content: CanonicalJsonObject) -> Self {
        Self { kind: kind.into(), state_key: None, content }
    }
}

/// Event content from the JSON text a client sent, parsed once: an object of canonical JSON
/// values (integers in range, no floats), else `M_BAD_JSON`.
pub fn content_from_json(json: &str) -> Result<CanonicalJsonObject> {
    match serde_json::from_str::<Value>(json) {
        Ok(Value::Object(object)) => ruma::canonical_json::try_from_json_map(object)
            .map_err(|e| Error::bad_json(format!("Content is not canonical JSON: {e}"))),
        _ => Err(Error::bad_json("Event content must be a JSON object")),
    }
}

/// Event content the server put together (a `json!` value, a client's object), checked as
/// [`content_from_json`] checks what clients send.
pub fn content(value: impl serde::Serialize) -> Result<CanonicalJsonObject> {
    match ruma::canonical_json::to_canonical_value(value) {
        Ok(CanonicalJsonValue::Object(object)) => Ok(object),
        Ok(_) => Err(Error::bad_json("Event content must be a JSON object")),
        Err(e) => Err(Error::bad_json(format!("Content is not canonical JSON: {e}"))),
    }
}

/// State events an invited user sees (stripped).
pub(crate) const INVITE_STATE: &[&str] = &[
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
    "m.room.topic",
];

/// Largest PDU, in bytes of canonical JSON (spec: size limits).
pub const MAX_PDU_BYTES: usize = 65_536;
/// Most `prev_events` a new event points at.
const MAX_PREV_EVENTS: usize = 20;

/// The state event that opens a room to guests (`can_join`) or closes it.
const GUEST_ACCESS: &str = "m.room.guest_access";

/// An event this server built and signed: its fields, its JSON object and that object's text
/// (serialised once, then stored and sent as is).
pub(crate) struct Signed {
    pdu: Pdu,
    object: CanonicalJsonObject,
    json: String,
}

/// A room's cached state, behind the room's pipeline lock.
type RoomHandle = Arc<Mutex<Option<RoomSnapshot>>>;

/// Rooms, their events and their state.
pub struct RoomService {
    config: Arc<Config>,
    store: Arc<dyn RoomStore>,
    accounts: Arc<AccountService>,
    trust: Arc<DeviceTrustService>,
    key: Arc<SigningKey>,
    clock: Arc<dyn Clock>,
    /// The latest `origin_server_ts` given to a create event: room version 12 derives the
    /// room id from the create event's hash, so two rooms one user creates in the same
    /// millisecond must not share a timestamp.
    last_create_ts: AtomicU64,
    handles: SyncMutex<HashMap<OwnedRoomId, RoomHandle>>,
    /// Rooms whose cached state may lag storage: a write was started and the request that
    /// started it may have been dropped before updating the cache. Reloaded on next use.
    stale: SyncMutex<std::collections::HashSet<OwnedRoomId>>,
    stream: AtomicU64,
    /// Tells listeners (the federation sender) that events were committed.
    committed: tokio::sync::watch::Sender<u64>,
    notifier: Arc<Notifier>,
    /// Other servers, for rooms this server is not (yet) in.
    outbound: OutboundSlot,
    /// History visibility of state snapshots: snapshots never change, and every reader of a
    /// room asks about the same few.
    visibility_by_group: SyncMutex<HashMap<u64, read::HistoryVisibility>>,
}

fn forbidden_from_auth(reason: String) -> Error {
    Error::forbidden(format!("Event not authorized: {reason}"))
}

fn too_large() -> Error {
    Error::new(ErrorKind::TooLarge, "Event is too large")
}

/// The id of an event: its reference hash under the room version's rules, or in room
/// versions 1 and 2 the id its origin server chose and wrote into it.
pub fn event_id_of(object: &CanonicalJsonObject, rules: &RoomVersionRules) -> Result<OwnedEventId> {
    if rules.event_format.require_event_id {
        return match object.get("event_id") {
            Some(CanonicalJsonValue::String(id)) => EventId::parse(id)
                .map_err(|e| Error::bad_json(format!("Event has an invalid event_id: {e}"))),
            _ => Err(Error::bad_json("Event has no event_id")),
        };
    }
    let hash = ruma::signatures::reference_hash(object, rules).map_err(|e| match e {
        ruma::signatures::JsonError::PduTooLarge => too_large(),
        e => Error::bad_json(format!("Event cannot be hashed: {e}")),
    })?;
    EventId::parse(format!("${hash}")).map_err(|e| Error::internal(e.to_string()))
}

pub(crate) fn rules_of(version: &RoomVersionId) -> Result<RoomVersionRules> {
    version.rules().ok_or_else(|| {
        Error::new(
            ErrorKind::UnsupportedRoomVersion,
            format!("Room version {version} is not supported"),
        )
    })
}

impl RoomService {
    /// The service over `store`, signing with `key`.
    #[expect(
        clippy::too_many_arguments,
        reason = "the pipeline sits on accounts, trust, signing, the clock, wake-ups and the port"
    )]
    pub async fn new(
        config: Arc<Config>,
        store: Arc<dyn RoomStore>,
        accounts: Arc<AccountService>,
        trust: Arc<DeviceTrustService>,
        key: Arc<SigningKey>,
        clock: Arc<dyn Clock>,
        notifier: Arc<Notifier>,
        outbound: OutboundSlot,
    ) -> Result<Self> {
        let stream = AtomicU64::new(store.max_stream_pos().await?);
        let (handles, stale) = (SyncMutex::new(HashMap::new()), SyncMutex::new(Default::default()));
        let committed = tokio::sync::watch::channel(stream.load(Ordering::Acquire)).0;
        Ok(Self {
            config,
            store,
            accounts,
            trust,
            key,
            clock,
            last_create_ts: AtomicU64::new(0),
            handles,
            stale,
            stream,
            committed,
            notifier,
            outbound,
            visibility_by_group: SyncMutex::new(HashMap::new()),
        })
    }

    /// The port to other servers, for services that tell them about rooms.
    pub(crate) fn outbound(&self) -> &OutboundSlot {
        &self.outbound
    }

    /// The latest committed stream position.
    pub fn position(&self) -> u64 {
        self.stream.load(Ordering::Acquire)
    }

    /// A receiver that changes whenever events are committed.
    pub fn subscribe_commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.committed.subscribe()
    }

    /// Timeline events of every room after stream position `pos`, in stream order.
    pub async fn events_after(
        &self,
        pos: u64,
        limit: usize,
    ) -> Result<Vec<palisade_storage::EventRow>> {
        self.store.events_after(pos, limit).await
    }

    fn handle(&self, room_id: &RoomId) -> RoomHandle {
        self.handles
            .lock()
            .expect("room handles poisoned")
            .entry(room_id.to_owned())
            .or_default()
            .clone()
    }

    /// Locks a known room for appending, loading its state on first use.
    async fn lock_room(
        &self,
        room_id: &RoomId,
    ) -> Result<tokio::sync::OwnedMutexGuard<Option<RoomSnapshot>>> {
        let mut guard = self.handle(room_id).lock_owned().await;
        let stale = self.stale.lock().expect("stale rooms poisoned").remove(room_id);
        if guard.is_none() || stale {
            *guard = self.store.room_snapshot(room_id).await?;
            if stale {
                self.stream.fetch_max(self.store.max_stream_pos().await?, Ordering::AcqRel);
            }
        }
        if guard.is_none() {
            drop(guard);
            // Unknown rooms leave no entry behind (anyone can ask about any room id).
            self.handles.lock().expect("room handles poisoned").remove(room_id);
            return Err(Error::not_found("Unknown room"));
        }
        Ok(guard)
    }

    /// Notes that the room's cached state may lag storage until [`Self::unmark_stale`].
    fn mark_stale(&self, room_id: &RoomId) {
        self.stale.lock().expect("stale rooms poisoned").insert(room_id.to_owned());
    }

    /// The room's cached state caught up with storage.
    fn unmark_stale(&self, room_id: &RoomId) {
        self.stale.lock().expect("stale rooms poisoned").remove(room_id);
    }

    /// Publishes that events up to stream position `pos` are committed.
    fn advance_stream(&self, pos: u64) {
        self.stream.fetch_max(pos, Ordering::AcqRel);
    }

    /// Builds one event of a local user in a locked room and admits it.
    async fn append(
        &self,
        room: &mut RoomSnapshot,
        room_id: &RoomId,
        sender: &UserId,
        template: EventTemplate,
        txn: Option<(OwnedDeviceId, String)>,
    ) -> Result<OwnedEventId> {
        let rules = rules_of(&room.version)?;
        let signed = self.build(room, Some(room_id), sender, template, &rules).await?;
        let event_id = signed.pdu.event_id.clone();
        let local = Incoming::Local { signed, txn, creates_room: None };
        self.admit(room_id, room, local).await?;
        Ok(event_id)
    }

    /// A local redaction of someone else's event needs the room's `redact` level. (The auth
    /// rules of current room versions leave this to the server that applies the redaction.)
    async fn check_redaction(&self, room: &RoomSnapshot, pdu: &Pdu) -> Result<()> {
        let rules = rules_of(&room.version)?;
        let Some(target) = pdu.redacted_event(&rules.redaction) else { return Ok(()) };
        let Some(target) = self.store.event(&target).await? else { return Ok(()) };
        if target.sender == pdu.sender || Some(&target.room_id) != pdu.room_id.as_ref() {
            return Ok(());
        }
        if !self.power_levels(room).await?.user_can_redact_event_of_other(&pdu.sender) {
            return Err(Error::forbidden("You may not redact other users' events"));
        }
        Ok(())
    }

    /// Sends an event as a local user, idempotently per device and transaction id.
    pub async fn send(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        template: EventTemplate,
        txn_id: Option<&str>,
    ) -> Result<OwnedEventId> {
        let sender = actor.user();
        self.trust.require(actor, template.need(sender), &template.kind).await?;
        if !self.leaves_or_redacts_own(sender, &template).await? {
            actor.may_write()?;
        }
        let txn = actor.device().zip(txn_id).map(|(d, t)| (d.to_owned(), t.to_owned()));
        if let Some((device, txn_id)) = &txn
            && let Some(existing) = self.store.event_for_txn(sender, device, txn_id).await?
        {
            return Ok(existing);
        }
        let mut guard = self.lock_room(room_id).await.map_err(|e| match e.kind {
            ErrorKind::NotFound => Error::forbidden("You are not in this room"),
            _ => e,
        })?;
        let room = guard.as_mut().expect("lock_room loads the room");
        // Re-check under the lock: a retry may have raced the first attempt.
        if let Some((device, txn_id)) = &txn
            && let Some(existing) = self.store.event_for_txn(sender, device, txn_id).await?
        {
            return Ok(existing);
        }
        if let Some(current) = self.same_state(room, sender, &template).await? {
            return Ok(current);
        }
        self.check_annotation(sender, &template).await?;
        let guest_access = template.kind == GUEST_ACCESS;
        let event_id = self.append(room, room_id, sender, template, txn).await?;
        drop(guard);
        if guest_access {
            Box::pin(self.remove_guests(room_id)).await?;
        }
        Ok(event_id)
    }

    /// Whether `template` is the sender leaving a room or redacting their own event: what a
    /// suspended account may still send.
    async fn leaves_or_redacts_own(
        &self,
        sender: &UserId,
        template: &EventTemplate,
    ) -> Result<bool> {
        let text = |field: &str| match template.content.get(field) {
            Some(CanonicalJsonValue::String(text)) => Some(text.as_str()),
            _ => None,
        };
        if template.kind == "m.room.member" {
            return Ok(template.state_key.as_deref() == Some(sender.as_str())
                && text("membership") == Some("leave"));
        }
        if template.kind == "m.room.redaction"
            && let Some(Ok(target)) = text("redacts").map(<&EventId>::try_from)
        {
            return Ok(self.store.event(target).await?.is_some_and(|row| row.sender == sender));
        }
        Ok(false)
    }

    /// A user annotates an event with a key once (the same reaction twice is refused with
    /// `M_DUPLICATE_ANNOTATION`, as Synapse does, until the first is redacted).
    async fn check_annotation(&self, sender: &UserId, template: &EventTemplate) -> Result<()> {
        let Some(CanonicalJsonValue::Object(relates_to)) = template.content.get("m.relates_to")
        else {
            return Ok(());
        };
        let text = |field: &str| match relates_to.get(field) {
            Some(CanonicalJsonValue::String(text)) => Some(text.as_str()),
            _ => None,
        };
        let (Some("m.annotation"), Some(target), Some(key)) =
            (text("rel_type"), text("event_id"), text("key"))
        else {
            return Ok(());
        };
        let Ok(target) = <&EventId>::try_from(target) else { return Ok(()) };
        if self.store.annotated(target, sender, &template.kind, key).await? {
            return Err(Error::new(
                ErrorKind::DuplicateAnnotation,
                "Can't send same reaction twice",
            ));
        }
        Ok(())
    }

    /// Once a room is closed to guests, the local guests in it leave (Synapse kicks them).
    pub(crate) async fn remove_guests(&self, room_id: &RoomId) -> Result<()> {
        let access = self.current_state_text(room_id, GUEST_ACCESS, "guest_access").await?;
        if access.as_deref() == Some("can_join") {
            return Ok(());
        }
        for member in self.store.members(room_id).await? {
            let user = &member.user_id;
            if member.membership != "join" || user.server_name() != self.config.server_name {
                continue;
            }
            if self.accounts.user(user).await?.is_some_and(|account| account.guest) {
                let leave = content(serde_json::json!({ "membership": "leave" }))?;
                let template = EventTemplate::state("m.room.member", user.as_str(), leave);
                self.send(Actor::server(user), room_id, template, None).await?;
            }
        }
        Ok(())
    }

    /// The current state event that `template` would repeat (same sender, same content),
    /// which a client resending state (a join it already made, the same name) gets back
    /// instead of a new event, as Synapse does.
    async fn same_state(
        &self,
        room: &RoomSnapshot,
        sender: &UserId,
        template: &EventTemplate,
    ) -> Result<Option<OwnedEventId>> {
        let Some(state_key) = &template.state_key else { return Ok(None) };
        let Some(current) = room.state.get(&(template.kind.clone(), state_key.clone())) else {
            return Ok(None);
        };
        // A redacted event is not the state its content says: sending that content again
        // restores it (Synapse compares with the redacted event too).
        let Some(row) = self.store.event(current).await?.filter(|row| row.redacted_by.is_none())
        else {
            return Ok(None);
        };
        let pdu = Pdu::from_row(&row)?;
        let same = pdu.sender == sender
            && serde_json::from_str::<CanonicalJsonObject>(pdu.content.get())
                .is_ok_and(|content| content == template.content);
        Ok(same.then(|| current.clone()))
    }

    /// Turns a template into a signed PDU of the room's version.
    async fn build(
        &self,
        room: &RoomSnapshot,
        room_id: Option<&RoomId>,
        sender: &UserId,
        template: EventTemplate,
        rules: &RoomVersionRules,
    ) -> Result<Signed> {
        let object = self.skeleton(room, room_id, sender, template, rules).await?;
        self.sign_and_hash(object, rules)
    }

    /// A template as an unsigned PDU on top of the room's current state and extremities.
    async fn skeleton(
        &self,
        room: &RoomSnapshot,
        room_id: Option<&RoomId>,
        sender: &UserId,
        template: EventTemplate,
        rules: &RoomVersionRules,
    ) -> Result<CanonicalJsonObject> {
        let kind = TimelineEventType::from(template.kind.as_str());
        // Only a member event's content decides which auth events it needs.
        let raw_content = match kind {
            TimelineEventType::RoomMember => serde_json::value::to_raw_value(&template.content),
            _ => serde_json::value::to_raw_value(&CanonicalJsonObject::new()),
        }
        .map_err(|e| Error::bad_json(e.to_string()))?;
        let auth_types = state_res::auth_types_for_event(
            &kind,
            sender,
            template.state_key.as_deref(),
            &raw_content,
            &rules.authorization,
        )
        .map_err(Error::bad_json)?;
        let auth_events = auth_types
            .iter()
            .filter_map(|(t, k)| room.state.get(&(t.to_string(), k.clone())).cloned())
            .collect();
        let auth_events = self.references(auth_events, rules).await?;
        let mut prevs = room.extremities.clone();
        prevs.sort_by_key(|(_, depth)| std::cmp::Reverse(*depth));
        prevs.truncate(MAX_PREV_EVENTS);
        let depth = prevs.iter().map(|(_, d)| *d).max().map_or(1, |d| d.saturating_add(1));

        let mut object = CanonicalJsonObject::new();
        object.insert("auth_events".into(), auth_events);
        let redacts = match kind {
            TimelineEventType::RoomRedaction if !rules.redaction.keep_room_redaction_redacts => {
                template.content.get("redacts").cloned()
            }
            _ => None,
        };
        object.insert("content".into(), CanonicalJsonValue::Object(template.content));
        object.insert(
            "depth".into(),
            CanonicalJsonValue::Integer(
                ruma::Int::try_from(depth).map_err(|_| Error::internal("depth overflow"))?,
            ),
        );
        let now = self.clock.now_millis();
        let ts = if kind == TimelineEventType::RoomCreate {
            let last = self.last_create_ts.fetch_max(now, Ordering::AcqRel);
            if last >= now { self.last_create_ts.fetch_add(1, Ordering::AcqRel) + 1 } else { now }
        } else {
            now
        };
        object.insert(
            "origin_server_ts".into(),
            CanonicalJsonValue::Integer(ruma::Int::try_from(ts).unwrap_or_default()),
        );
        let prev_events = prevs.into_iter().map(|(id, _)| id).collect();
        let prev_events = self.references(prev_events, rules).await?;
        object.insert("prev_events".into(), prev_events);
        if let Some(room_id) = room_id {
            object.insert("room_id".into(), CanonicalJsonValue::String(room_id.to_string()));
        }
        object.insert("sender".into(), CanonicalJsonValue::String(sender.to_string()));
        object.insert("type".into(), CanonicalJsonValue::String(template.kind));
        if let Some(state_key) = template.state_key {
            object.insert("state_key".into(), CanonicalJsonValue::String(state_key));
        }
        if let Some(redacts) = redacts {
            object.insert("redacts".into(), redacts);
        }
        Ok(object)
    }

    /// `prev_events` or `auth_events` as the room version writes them: event ids from
    /// version 3, `[event id, {"sha256": content hash}]` pairs before.
    pub(crate) async fn references(
        &self,
        ids: Vec<OwnedEventId>,
        rules: &RoomVersionRules,
    ) -> Result<CanonicalJsonValue> {
        let mut references = Vec::new();
        for id in ids {
            let reference = CanonicalJsonValue::String(id.to_string());
            if !rules.event_format.require_event_id {
                references.push(reference);
                continue;
            }
            let row = self
                .store
                .event(&id)
                .await?
                .ok_or_else(|| Error::internal(format!("referenced event {id} is missing")))?;
            let object: CanonicalJsonObject =
                serde_json::from_str(&row.json).map_err(|e| Error::internal(e.to_string()))?;
            let mut hashes = CanonicalJsonObject::new();
            if let Some(CanonicalJsonValue::Object(stored)) = object.get("hashes")
                && let Some(sha256) = stored.get("sha256")
            {
                hashes.insert("sha256".into(), sha256.clone());
            }
            references.push(CanonicalJsonValue::Array(vec![
                reference,
                CanonicalJsonValue::Object(hashes),
            ]));
        }
        Ok(CanonicalJsonValue::Array(references))
    }

    /// Adds the content hash and this server's signature; computes the event id (in room
    /// versions 1 and 2, a new one of this server's, written into the event first); checks
    /// the size of the event as it will be stored and sent.
    pub(crate) fn sign_and_hash(
        &self,
        mut object: CanonicalJsonObject,
        rules: &RoomVersionRules,
    ) -> Result<Signed> {
        if rules.event_format.require_event_id {
            let event_id = EventId::new_v1(&self.config.server_name);
            object.insert("event_id".into(), CanonicalJsonValue::String(event_id.to_string()));
        }
        ruma::signatures::hash_and_sign_event(
            self.config.server_name.as_str(),
            self.key.pair(),
            &mut object,
            &rules.redaction,
        )
        .map_err(|e| match e {
            ruma::signatures::JsonError::PduTooLarge => too_large(),
            e => Error::internal(format!("signing event: {e}")),
        })?;
        let event_id = event_id_of(&object, rules)?;
        let json = serde_json::to_string(&object).map_err(|e| Error::internal(e.to_string()))?;
        if json.len() > MAX_PDU_BYTES {
            return Err(too_large());
        }
        Ok(Signed { pdu: Pdu::parse(event_id, &json)?, object, json })
    }

    /// Loads events by id.
    async fn load_pdus(
        &self,
        ids: impl IntoIterator<Item = OwnedEventId>,
    ) -> Result<HashMap<OwnedEventId, Pdu>> {
        let mut pdus = HashMap::new();
        for id in ids {
            if pdus.contains_key(&id) {
                continue;
            }
            if let Some(row) = self.store.event(&id).await? {
                pdus.insert(id, Pdu::from_row(&row)?);
            }
        }
        Ok(pdus)
    }

    /// The authorization rules, against the event's auth events and the room's current state.
    /// The event `sender` would send now, unsigned, if the room's rules allow it: built,
    /// checked and not sent (a template for another server, or a check before acting).
    async fn probe(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        template: EventTemplate,
    ) -> Result<(RoomVersionId, CanonicalJsonObject)> {
        let mut guard = self.lock_room(room_id).await?;
        let room = guard.as_mut().expect("lock_room loads the room");
        let rules = rules_of(&room.version)?;
        let object = self.skeleton(room, Some(room_id), sender, template, &rules).await?;
        let probe = {
            let json =
                serde_json::to_string(&object).map_err(|e| Error::internal(e.to_string()))?;
            Pdu::parse(EventId::parse("$probe").expect("valid event id"), &json)?
        };
        self.authorize(room, &probe, &rules).await?;
        Ok((room.version.clone(), object))
    }

    async fn authorize(
        &self,
        room: &RoomSnapshot,
        pdu: &Pdu,
        rules: &RoomVersionRules,
    ) -> Result<()> {
        self.check_independent(pdu, rules).await?;
        self.check_against(pdu, rules, &room.state).await
    }

    /// The auth events an event names, with the v12 create event (named by the room id).
    async fn auth_events_of(
        &self,
        pdu: &Pdu,
        rules: &RoomVersionRules,
    ) -> Result<HashMap<OwnedEventId, Pdu>> {
        let create_id = pdu
            .room_id
            .as_deref()
            .filter(|_| {
                rules.authorization.room_create_event_id_as_room_id
                    && pdu.kind != TimelineEventType::RoomCreate
            })
            .and_then(|room_id| EventId::parse(format!("${}", room_id.strip_sigil())).ok());
        self.load_pdus(pdu.auth_events.iter().cloned().chain(create_id)).await
    }

    /// The rules that need no state (the auth events' shape); returns the auth events.
    async fn check_independent(
        &self,
        pdu: &Pdu,
        rules: &RoomVersionRules,
    ) -> Result<HashMap<OwnedEventId, Pdu>> {
        let auth_events = self.auth_events_of(pdu, rules).await?;
        state_res::check_state_independent_auth_rules(&rules.authorization, pdu, |id| {
            auth_events.get(id)
        })
        .map_err(forbidden_from_auth)?;
        Ok(auth_events)
    }

    /// The rules against the state the event's own auth events make (spec: checks on receipt
    /// of a PDU, step 5).
    async fn check_against_auth_events(&self, pdu: &Pdu, rules: &RoomVersionRules) -> Result<()> {
        let auth_events = self.check_independent(pdu, rules).await?;
        let state: StateMap = auth_events
            .values()
            .filter_map(|event| {
                let key = event.state_key.clone()?;
                Some(((event.kind.to_string(), key), event.event_id.clone()))
            })
            .collect();
        self.check_against(pdu, rules, &state).await
    }

    /// The rules that depend on the room state, against `state`.
    async fn check_against(
        &self,
        pdu: &Pdu,
        rules: &RoomVersionRules,
        state: &StateMap,
    ) -> Result<()> {
        let auth = &rules.authorization;
        let mut keys = state_res::auth_types_for_event(
            &pdu.kind,
            &pdu.sender,
            pdu.state_key.as_deref(),
            &pdu.content,
            auth,
        )
        .map_err(Error::bad_json)?;
        keys.push((StateEventType::RoomCreate, String::new()));
        let state_ids: HashMap<(String, String), OwnedEventId> = keys
            .into_iter()
            .filter_map(|(t, k)| {
                let key = (t.to_string(), k);
                state.get(&key).map(|id| (key, id.clone()))
            })
            .collect();
        let state_pdus = self.load_pdus(state_ids.values().cloned()).await?;
        state_res::check_state_dependent_auth_rules(auth, pdu, |t, k| {
            state_ids.get(&(t.to_string(), k.to_owned())).and_then(|id| state_pdus.get(id))
        })
        .map_err(forbidden_from_auth)
    }
}

impl RoomService {
    /// The room's current power levels as ruma reads them for its version (values may be
    /// strings before v10; creators are unbounded from v12).
    async fn power_levels(&self, room: &RoomSnapshot) -> Result<RoomPowerLevels> {
        let rules = rules_of(&room.version)?;
        let state_pdu = async |kind: &str| match room.state.get(&(kind.to_owned(), String::new())) {
            Some(id) => match self.store.event(id).await? {
                Some(row) => Pdu::from_row(&row).map(Some),
                None => Err(Error::internal("missing state event")),
            },
            None => Ok(None),
        };
        let mut creators = Vec::new();
        if let Some(create) = state_pdu("m.room.create").await? {
            #[derive(serde::Deserialize)]
            struct Creators {
                #[serde(default)]
                additional_creators: Vec<ruma::OwnedUserId>,
            }
            if rules.authorization.explicitly_privilege_room_creators {
                let extra = serde_json::from_str::<Creators>(create.content.get())
                    .map(|c| c.additional_creators)
                    .unwrap_or_default();
                creators.extend(extra);
            }
            creators.push(create.sender);
        }
        let content = match state_pdu("m.room.power_levels").await? {
            Some(levels) => {
                serde_json::from_str::<RoomPowerLevelsEventContent>(levels.content.get()).ok()
            }
            None => None,
        };
        Ok(RoomPowerLevels::new(content.into(), &rules.authorization, creators))
    }

    /// A room's current power levels; `None` for a room this server does not have.
    pub(crate) async fn current_power_levels(
        &self,
        room_id: &RoomId,
    ) -> Result<Option<RoomPowerLevels>> {
        let guard = match self.lock_room(room_id).await {
            Ok(guard) => guard,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match guard.as_ref() {
            Some(room) => self.power_levels(room).await.map(Some),
            None => Ok(None),
        }
    }

    /// Redacts an event (the pipeline checks the `redact` level for other users' events).
    pub async fn redact(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        event_id: &EventId,
        reason: Option<&str>,
        txn_id: &str,
    ) -> Result<OwnedEventId> {
        let mut content = serde_json::json!({ "redacts": event_id });
        if let Some(reason) = reason {
            content["reason"] = Value::from(reason);
        }
        let template = EventTemplate::message("m.room.redaction", self::content(content)?);
        self.send(actor, room_id, template, Some(txn_id)).await
    }
}
