//! Events from other servers enter the same pipeline as local ones, at the checks: against
//! their auth events, against the state before them (resolved over their `prev_events`), and
//! against the current state (soft failure). Federation (`palisade-federation`) verifies
//! signatures and hashes first and fetches what is missing; this module never talks to peers.
//!
//! Spec: <https://spec.matrix.org/v1.19/server-server-api/#checks-performed-on-receipt-of-a-pdu>

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use palisade_core::{Error, ErrorKind, Result};
use palisade_storage::{RoomSnapshot, StateMap};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, OwnedEventId, RoomId, RoomVersionId,
    ServerName, UserId,
    events::{AnyStrippedStateEvent, TimelineEventType},
    serde::Raw,
};
use serde_json::json;

use super::{
    EventTemplate, Pdu, Received, RemoteEvent, RoomService, admit::Incoming, content, rules_of,
};
use crate::trust::{Actor, Need};

/// What other servers ask of this server's rooms and send into them: state, history and auth
/// chains served to peers, joins and leaves made through this server, joins imported from a
/// resident server, invites from elsewhere. Used by `palisade-federation` only; events enter
/// rooms through [`RoomService`]'s pipeline.
pub struct RemoteRoomService {
    rooms: Arc<RoomService>,
}

impl RemoteRoomService {
    /// The service over the rooms.
    pub fn new(rooms: Arc<RoomService>) -> Self {
        Self { rooms }
    }
}

/// What a joining server learned from `send_join` (and `/backfill`), verified.
#[derive(Debug, Clone)]
pub struct JoinedRoom {
    /// The room state before the join.
    pub state: Vec<RemoteEvent>,
    /// The auth chain of that state.
    pub auth_chain: Vec<RemoteEvent>,
    /// Recent events before the join.
    pub history: Vec<RemoteEvent>,
    /// The join event, signed by this server.
    pub join: RemoteEvent,
}

impl RoomService {
    /// The version of a room this server has; `None` for an unknown room.
    pub async fn room_version(&self, room_id: &RoomId) -> Result<Option<RoomVersionId>> {
        match self.lock_room(room_id).await {
            Ok(guard) => Ok(guard.as_ref().map(|room| room.version.clone())),
            Err(e) if e.kind == palisade_core::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The event at `(kind, state_key)` in the room's current state.
    pub async fn current_state_id(
        &self,
        room_id: &RoomId,
        kind: &str,
        state_key: &str,
    ) -> Result<Option<OwnedEventId>> {
        let guard = self.lock_room(room_id).await?;
        let room = guard.as_ref().expect("lock_room loads the room");
        Ok(room.state.get(&(kind.to_owned(), state_key.to_owned())).cloned())
    }

    /// Whether any user of `server` is joined to the room now.
    pub async fn server_in_room(
        &self,
        room_id: &RoomId,
        server: &ruma::ServerName,
    ) -> Result<bool> {
        self.store.server_joined(room_id, server).await
    }

    /// The servers with a user joined to the room.
    pub async fn servers_in_room(&self, room_id: &RoomId) -> Result<Vec<ruma::OwnedServerName>> {
        let mut servers: Vec<_> = self
            .store
            .members(room_id)
            .await?
            .into_iter()
            .filter(|m| m.membership == "join")
            .map(|m| m.user_id.server_name().to_owned())
            .collect();
        servers.sort();
        servers.dedup();
        Ok(servers)
    }

    /// Receives an event another server sent into a room this server is in. `prev_states`
    /// gives the state after each `prev_event` this server has no timeline state for (fetched
    /// from a peer); the others come from storage.
    pub async fn receive(
        &self,
        room_id: &RoomId,
        event: RemoteEvent,
        prev_states: &HashMap<OwnedEventId, StateMap>,
    ) -> Result<Received> {
        let guest_access = event.object().get("type")
            == Some(&CanonicalJsonValue::String(super::GUEST_ACCESS.to_owned()));
        let mut guard = self.lock_room(room_id).await?;
        let room = guard.as_mut().expect("lock_room loads the room");
        let received = self.admit(room_id, room, Incoming::Remote { event, prev_states }).await?;
        drop(guard);
        if guest_access && received == Received::Accepted {
            self.remove_guests(room_id).await?;
        }
        Ok(received)
    }

    /// Whether an event is in this server's timeline of a room (not only an outlier).
    pub async fn in_timeline(&self, event_id: &EventId) -> Result<bool> {
        Ok(self.store.event(event_id).await?.is_some_and(|row| !row.outlier))
    }

    /// Builds and authorizes an invite of a user of another server without storing it: that
    /// server countersigns it first. Returns it with the room's version and the state the
    /// invitee is shown (full PDUs).
    pub(crate) async fn prepare_invite(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        target: &UserId,
        reason: Option<&str>,
        is_direct: bool,
    ) -> Result<(RoomVersionId, RemoteEvent, Vec<CanonicalJsonObject>)> {
        self.trust.require(actor, Need::Approval, "m.room.member").await?;
        let sender = actor.user();
        let mut content = self.member_content("invite", target, reason).await?;
        if is_direct {
            content.insert("is_direct".into(), CanonicalJsonValue::Bool(true));
        }
        let mut guard = self.lock_room(room_id).await?;
        let room = guard.as_mut().expect("lock_room loads the room");
        let rules = rules_of(&room.version)?;
        let template = EventTemplate::state("m.room.member", target.as_str(), content);
        let signed = self.build(room, Some(room_id), sender, template, &rules).await?;
        self.authorize(room, &signed.pdu, &rules).await?;
        let shown = self.prejoin_state(&room.state, Some(sender)).await?;
        Ok((room.version.clone(), RemoteEvent::signed_here(signed), shown))
    }

    /// The state that shows a room to a user not in it, as full PDUs (an invite's or a
    /// knock's room state): create, join rules, name, avatar, alias, encryption, topic, and
    /// the member event of `member` (the inviter) when given.
    pub(crate) async fn prejoin_state(
        &self,
        state: &StateMap,
        member: Option<&UserId>,
    ) -> Result<Vec<CanonicalJsonObject>> {
        let keys = super::INVITE_STATE
            .iter()
            .map(|kind| ((*kind).to_owned(), String::new()))
            .chain(member.map(|member| ("m.room.member".to_owned(), member.to_string())));
        let mut shown = Vec::new();
        for key in keys {
            if let Some(id) = state.get(&key) {
                shown.extend(self.pdu_object(id).await?);
            }
        }
        Ok(shown)
    }

    /// Who invited `user` to the room, when the user's membership is an invite.
    pub async fn inviter(
        &self,
        room_id: &RoomId,
        user: &UserId,
    ) -> Result<Option<ruma::OwnedUserId>> {
        let Some(membership) = self.store.membership(room_id, user).await? else { return Ok(None) };
        if membership.membership != "invite" {
            return Ok(None);
        }
        Ok(self.store.event(&membership.event_id).await?.map(|row| row.sender))
    }

    /// The servers that can take a local user's leave of a room they knocked on from outside:
    /// those of the senders of the state their knock was answered with (the creator's
    /// first), then the room id's (rooms before version 12 name one).
    pub async fn knock_servers(
        &self,
        room_id: &RoomId,
        user: &UserId,
    ) -> Result<Vec<ruma::OwnedServerName>> {
        #[derive(serde::Deserialize)]
        struct Unsigned {
            knock_room_state: Vec<Shown>,
        }
        #[derive(serde::Deserialize)]
        struct Shown {
            #[serde(rename = "type")]
            kind: String,
            sender: ruma::OwnedUserId,
        }
        let Some(membership) = self.store.membership(room_id, user).await? else {
            return Ok(Vec::new());
        };
        let row = self.store.event(&membership.event_id).await?;
        let unsigned = row.and_then(|row| row.unsigned);
        let mut shown = unsigned
            .and_then(|u| serde_json::from_str::<Unsigned>(&u).ok())
            .map(|u| u.knock_room_state)
            .unwrap_or_default();
        shown.sort_by_key(|event| event.kind != "m.room.create");
        let mut servers: Vec<ruma::OwnedServerName> =
            shown.into_iter().map(|event| event.sender.server_name().to_owned()).collect();
        servers.extend(room_id.server_name().map(ToOwned::to_owned));
        let mut seen = std::collections::HashSet::new();
        servers.retain(|server| seen.insert(server.clone()));
        Ok(servers)
    }

    /// Rejects an invite or withdraws a knock locally when no server in the room can be
    /// reached (as Synapse's out-of-band leave): a leave event this server signs, seen by the
    /// user's devices only.
    pub(crate) async fn out_of_band_leave(&self, actor: Actor<'_>, room_id: &RoomId) -> Result<()> {
        let user = actor.user();
        let membership = self
            .store
            .membership(room_id, user)
            .await?
            .filter(|m| matches!(m.membership.as_str(), "invite" | "knock"))
            .ok_or_else(|| Error::forbidden("There is no invite to reject"))?;
        let invite = self
            .store
            .event(&membership.event_id)
            .await?
            .ok_or_else(|| Error::internal("the membership event is missing"))?;
        let depth = u64::from(Pdu::from_row(&invite)?.depth).saturating_add(1);
        let version =
            self.room_version(room_id).await?.ok_or_else(|| Error::not_found("Unknown room"))?;
        let rules = rules_of(&version)?;
        let mut object: CanonicalJsonObject = serde_json::from_value(json!({
            "type": "m.room.member",
            "state_key": user,
            "sender": user,
            "room_id": room_id,
            "content": { "membership": "leave" },
            "depth": depth,
            "origin_server_ts": self.clock.now_millis(),
        }))
        .map_err(|e| Error::internal(e.to_string()))?;
        for key in ["auth_events", "prev_events"] {
            let references = self.references(vec![invite.event_id.clone()], &rules).await?;
            object.insert(key.into(), references);
        }
        let event = RemoteEvent::signed_here(self.sign_and_hash(object, &rules)?);
        let mut guard = self.lock_room(room_id).await?;
        let room = guard.as_mut().expect("lock_room loads the room");
        self.admit(room_id, room, Incoming::Outside { event, shown_state: None }).await?;
        Ok(())
    }

    /// An event as the PDU other servers get (its stored JSON).
    pub async fn pdu_object(&self, event_id: &EventId) -> Result<Option<CanonicalJsonObject>> {
        match self.store.event(event_id).await? {
            Some(row) => serde_json::from_str(&row.json)
                .map(Some)
                .map_err(|e| Error::internal(format!("stored PDU {event_id}: {e}"))),
            None => Ok(None),
        }
    }
}

impl RemoteRoomService {
    /// The servers with a user joined to any room `user` is joined to.
    pub async fn servers_sharing_rooms_with(
        &self,
        user: &UserId,
    ) -> Result<Vec<ruma::OwnedServerName>> {
        let mut servers = Vec::new();
        for membership in self.rooms.store.rooms_of_user(user).await? {
            if membership.membership == "join" {
                servers.extend(self.rooms.servers_in_room(&membership.room_id).await?);
            }
        }
        servers.sort();
        servers.dedup();
        Ok(servers)
    }

    /// Whether the room's server ACL (`m.room.server_acl`) lets `server` take part.
    pub async fn server_allowed(
        &self,
        room_id: &RoomId,
        server: &ruma::ServerName,
    ) -> Result<bool> {
        Ok(self.server_acl(room_id).await?.is_none_or(|acl| acl.is_allowed(server)))
    }

    /// The room's server ACL, if it has one; entries that are not strings are skipped, the
    /// rest still apply.
    pub async fn server_acl(
        &self,
        room_id: &RoomId,
    ) -> Result<Option<ruma::events::room::server_acl::RoomServerAclEventContent>> {
        let Some(acl) = self.rooms.current_state_id(room_id, "m.room.server_acl", "").await? else {
            return Ok(None);
        };
        let content = self.rooms.event_content(&acl).await?;
        let globs = |key: &str| -> Vec<String> {
            content[key]
                .as_array()
                .map(|list| list.iter().filter_map(|g| g.as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        };
        let allow_ip_literals = content["allow_ip_literals"].as_bool().unwrap_or(true);
        Ok(Some(ruma::events::room::server_acl::RoomServerAclEventContent::new(
            allow_ip_literals,
            globs("allow"),
            globs("deny"),
        )))
    }

    /// Whether a user is joined to the room now.
    pub async fn is_joined(&self, room_id: &RoomId, user: &UserId) -> Result<bool> {
        Ok(self
            .rooms
            .store
            .membership(room_id, user)
            .await?
            .is_some_and(|m| m.membership == "join"))
    }

    /// Stores events another server sent as the state and auth chain of a room (outliers),
    /// each checked against its own auth events. Events that fail are dropped; the ids of
    /// those stored (or already known) are returned.
    pub async fn store_outliers(
        &self,
        room_id: &RoomId,
        events: Vec<RemoteEvent>,
    ) -> Result<HashSet<OwnedEventId>> {
        let mut guard = self.rooms.lock_room(room_id).await?;
        let room = guard.as_mut().expect("lock_room loads the room");
        self.admit_outliers(room_id, room, events).await
    }

    /// [`Self::store_outliers`] in a locked room.
    async fn admit_outliers(
        &self,
        room_id: &RoomId,
        room: &mut RoomSnapshot,
        events: Vec<RemoteEvent>,
    ) -> Result<HashSet<OwnedEventId>> {
        // Auth events come before the events they authorise: the create event first, then by
        // depth (an event is deeper than its ancestors). One that arrives out of that order
        // from a dishonest server fails its check and is dropped.
        let mut pending: Vec<(bool, u64, RemoteEvent)> = Vec::new();
        for event in events {
            let Ok(pdu) = event.pdu() else { continue };
            let not_create = pdu.kind != TimelineEventType::RoomCreate;
            pending.push((not_create, u64::from(pdu.depth), event));
        }
        pending.sort_by_key(|(not_create, depth, _)| (*not_create, *depth));
        let mut stored = HashSet::new();
        for (_, _, event) in pending {
            let id = event.event_id().to_owned();
            match self.rooms.admit(room_id, room, Incoming::Outlier(event)).await {
                Ok(_) => {
                    stored.insert(id);
                }
                Err(error) if error.kind == ErrorKind::Internal => return Err(error),
                Err(error) => {
                    tracing::info!(event_id = %id, %error, "rejected a state or auth event")
                }
            }
        }
        Ok(stored)
    }

    /// Enters a room joined through another server: creates it, stores its state and auth
    /// chain as outliers, and admits the join with that state and the recent `history` before
    /// it, all under the room's lock.
    pub async fn import_join(
        &self,
        room_id: &RoomId,
        version: &RoomVersionId,
        joined: JoinedRoom,
    ) -> Result<()> {
        let JoinedRoom { state, auth_chain, history, join } = joined;
        self.rooms.store.import_room(room_id, version, true).await?;
        // A room known only from an invite may be cached; the next lock reads it again.
        self.rooms.mark_stale(room_id);
        let mut guard = self.rooms.lock_room(room_id).await?;
        let room = guard.as_mut().expect("lock_room loads the room");
        if room.version != *version {
            return Err(Error::bad_json(format!(
                "The room is of version {}, not {version}",
                room.version
            )));
        }
        let mut state_map = StateMap::new();
        for event in &state {
            let pdu = event.pdu()?;
            let key = pdu.state_key.ok_or_else(|| {
                Error::bad_json(format!(
                    "{} in the room state is not a state event",
                    event.event_id()
                ))
            })?;
            state_map.insert((pdu.kind.to_string(), key), event.event_id().to_owned());
        }
        let stored = self
            .admit_outliers(room_id, room, auth_chain.into_iter().chain(state).collect())
            .await?;
        // Every state event must check out: a room missing, say, its encryption event would
        // look unencrypted to local clients.
        if state_map.values().any(|id| !stored.contains(id)) {
            return Err(Error::forbidden("The room's state could not be verified"));
        }
        self.rooms.admit(room_id, room, Incoming::Join { join, state: state_map, history }).await?;
        Ok(())
    }

    /// Events before `from` (inclusive), walking `prev_events` back, newest first
    /// (`/backfill`).
    pub async fn backfill(
        &self,
        room_id: &RoomId,
        from: &[OwnedEventId],
        limit: usize,
        server: &ServerName,
    ) -> Result<Vec<CanonicalJsonObject>> {
        let mut view = HashMap::new();
        let mut seen: HashSet<OwnedEventId> = from.iter().cloned().collect();
        let mut queue: std::collections::VecDeque<OwnedEventId> = from.iter().cloned().collect();
        let mut found: Vec<(u64, CanonicalJsonObject)> = Vec::new();
        while let Some(id) = queue.pop_front() {
            if found.len() >= limit {
                break;
            }
            let Some(row) = self.rooms.store.event(&id).await?.filter(|r| r.room_id == room_id)
            else {
                continue;
            };
            let pdu = Pdu::from_row(&row)?;
            let object = self.object_for_server(&row, server, &mut view).await?;
            found.push((u64::from(pdu.depth), object));
            for prev in pdu.prev_events {
                if seen.insert(prev.clone()) {
                    queue.push_back(prev);
                }
            }
        }
        found.sort_by_key(|(depth, _)| std::cmp::Reverse(*depth));
        Ok(found.into_iter().map(|(_, object)| object).collect())
    }

    /// An unsigned membership event for a user of another server, on top of the current
    /// state (`make_join` / `make_leave`), refused early when the rules would refuse it.
    pub async fn membership_template(
        &self,
        room_id: &RoomId,
        user: &UserId,
        membership: &str,
    ) -> Result<(RoomVersionId, CanonicalJsonObject)> {
        let mut member = json!({ "membership": membership });
        if membership == "join"
            && let Some(authoriser) = self.rooms.join_authoriser(room_id, user).await?
        {
            member["join_authorised_via_users_server"] = json!(authoriser);
        }
        let template = EventTemplate::state("m.room.member", user.as_str(), content(member)?);
        self.rooms.probe(room_id, user, template).await
    }

    /// Completes a membership template another server gave this one for `actor`'s own join
    /// or leave: the timestamp, hashes, this server's signature and the event id.
    pub async fn complete_template(
        &self,
        actor: Actor<'_>,
        mut object: CanonicalJsonObject,
        version: &RoomVersionId,
    ) -> Result<RemoteEvent> {
        self.rooms.trust.require(actor, Need::RoomAccess, "m.room.member").await?;
        let text = |key: &str| match object.get(key) {
            Some(CanonicalJsonValue::String(value)) => Some(value.as_str()),
            _ => None,
        };
        let own = text("sender") == Some(actor.user().as_str())
            && text("state_key") == Some(actor.user().as_str())
            && text("type") == Some("m.room.member");
        if !own {
            return Err(Error::forbidden("Only a user's own membership is signed for them"));
        }
        let rules = rules_of(version)?;
        object.insert(
            "origin_server_ts".into(),
            CanonicalJsonValue::Integer(
                ruma::Int::try_from(self.rooms.clock.now_millis()).unwrap_or_default(),
            ),
        );
        object.remove("signatures");
        object.remove("hashes");
        object.remove("event_id");
        Ok(RemoteEvent::signed_here(self.rooms.sign_and_hash(object, &rules)?))
    }

    /// The room's current state and its auth chain, as PDUs (for `send_join` and `/state`).
    pub async fn state_and_auth_chain(
        &self,
        room_id: &RoomId,
        at: Option<&EventId>,
    ) -> Result<(Vec<CanonicalJsonObject>, Vec<CanonicalJsonObject>)> {
        let state = match at {
            Some(event_id) => self.state_before(room_id, event_id).await?,
            None => self
                .rooms
                .current_state(room_id)
                .await?
                .ok_or_else(|| Error::not_found("Unknown room"))?,
        };
        let chain = self.rooms.auth_chain(state.values().cloned(), &mut HashMap::new()).await?;
        let mut state_pdus = Vec::new();
        for id in state.values() {
            state_pdus.extend(self.rooms.pdu_object(id).await?);
        }
        let mut chain_pdus = Vec::new();
        for id in &chain {
            chain_pdus.extend(self.rooms.pdu_object(id).await?);
        }
        Ok((state_pdus, chain_pdus))
    }

    /// The state before an event of the room.
    pub async fn state_before(&self, room_id: &RoomId, event_id: &EventId) -> Result<StateMap> {
        let row = self
            .rooms
            .store
            .event(event_id)
            .await?
            .filter(|row| row.room_id == room_id && !row.outlier)
            .ok_or_else(|| Error::not_found("Unknown event"))?;
        let mut state = self
            .rooms
            .store
            .state_after(event_id)
            .await?
            .ok_or_else(|| Error::not_found("Unknown event"))?;
        if let Some(key) = row.state_key {
            let key = (row.kind.clone(), key);
            // The pipeline records the entry a state event replaced in its `unsigned`.
            let previous = row
                .unsigned
                .as_deref()
                .and_then(|u| serde_json::from_str::<serde_json::Value>(u).ok())
                .and_then(|u| u.get("replaces_state")?.as_str().map(str::to_owned))
                .and_then(|id| EventId::parse(id).ok());
            match previous {
                Some(id) => state.insert(key, id),
                None => state.remove(&key),
            };
        }
        Ok(state)
    }

    /// Whether an event is a join of `user` (the kind of event `send_join` accepts).
    pub fn is_membership_of(
        event: &RemoteEvent,
        user_server: &ruma::ServerName,
        membership: &str,
    ) -> bool {
        let Ok(pdu) = event.pdu() else { return false };
        pdu.sender.server_name() == user_server
            && pdu.state_key.as_deref() == Some(pdu.sender.as_str())
            && pdu.membership().as_deref() == Some(membership)
    }

    /// Which of `ids` this server has stored (in any form).
    pub async fn known_events(&self, ids: &[OwnedEventId]) -> Result<HashSet<OwnedEventId>> {
        let mut known = HashSet::new();
        for id in ids {
            if self.rooms.store.has_event(id).await? {
                known.insert(id.clone());
            }
        }
        Ok(known)
    }

    /// The state map made of the room's stored state events `ids` (unknown, non-state and
    /// other rooms' ids are skipped).
    pub async fn state_map_of(&self, room_id: &RoomId, ids: &[OwnedEventId]) -> Result<StateMap> {
        let mut state = StateMap::new();
        for id in ids {
            if let Some(row) = self.rooms.store.event(id).await?
                && row.room_id == room_id
                && let Some(key) = row.state_key
            {
                state.insert((row.kind, key), id.clone());
            }
        }
        Ok(state)
    }

    /// The room's forward extremities.
    pub async fn extremities(&self, room_id: &RoomId) -> Result<Vec<OwnedEventId>> {
        let guard = self.rooms.lock_room(room_id).await?;
        let room = guard.as_ref().expect("lock_room loads the room");
        Ok(room.extremities.iter().map(|(id, _)| id.clone()).collect())
    }

    /// The ids of the state before an event and of that state's auth chain (`/state_ids`).
    pub async fn state_ids_before(
        &self,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<(Vec<OwnedEventId>, Vec<OwnedEventId>)> {
        let state = self.state_before(room_id, event_id).await?;
        let chain = self.rooms.auth_chain(state.values().cloned(), &mut HashMap::new()).await?;
        Ok((state.into_values().collect(), chain.into_iter().collect()))
    }

    /// The auth chain of one event of the room, as PDUs (`/event_auth`).
    pub async fn auth_chain_of(
        &self,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<Vec<CanonicalJsonObject>> {
        let row = self
            .rooms
            .store
            .event(event_id)
            .await?
            .filter(|row| row.room_id == room_id)
            .ok_or_else(|| Error::not_found("Unknown event"))?;
        let chain = self.rooms.auth_chain([row.event_id], &mut HashMap::new()).await?;
        let mut pdus = Vec::with_capacity(chain.len());
        for id in &chain {
            pdus.extend(self.rooms.pdu_object(id).await?);
        }
        Ok(pdus)
    }

    /// Events between `earliest` and `latest`, walking `prev_events` back from `latest`
    /// (`/get_missing_events`), oldest first.
    pub async fn missing_events(
        &self,
        room_id: &RoomId,
        earliest: &[OwnedEventId],
        latest: &[OwnedEventId],
        limit: usize,
        min_depth: u64,
        server: &ServerName,
    ) -> Result<Vec<CanonicalJsonObject>> {
        let mut view = HashMap::new();
        let mut seen: HashSet<OwnedEventId> = earliest.iter().cloned().collect();
        seen.extend(latest.iter().cloned());
        let mut queue: std::collections::VecDeque<OwnedEventId> = latest.iter().cloned().collect();
        let mut found: Vec<(u64, CanonicalJsonObject)> = Vec::new();
        while let Some(id) = queue.pop_front() {
            let Some(row) = self.rooms.store.event(&id).await?.filter(|r| r.room_id == room_id)
            else {
                continue;
            };
            let pdu = Pdu::from_row(&row)?;
            // The requester has the latest events; it asks for what lies behind them.
            if !latest.contains(&id) {
                if u64::from(pdu.depth) < min_depth || found.len() >= limit {
                    continue;
                }
                let object = self.object_for_server(&row, server, &mut view).await?;
                found.push((u64::from(pdu.depth), object));
            }
            for prev in pdu.prev_events {
                if seen.insert(prev.clone()) {
                    queue.push_back(prev);
                }
            }
        }
        found.sort_by_key(|(depth, _)| *depth);
        Ok(found.into_iter().map(|(_, object)| object).collect())
    }

    /// A join another server sends through this one (`send_join`), signed by this server when
    /// it names a local user as the authoriser of a restricted join
    /// (`join_authorised_via_users_server`), as the rules require, once the joining user is
    /// found to be allowed in; any other event is returned as it came.
    pub async fn authorise_join(
        &self,
        room_id: &RoomId,
        mut object: CanonicalJsonObject,
        version: &RoomVersionId,
    ) -> Result<CanonicalJsonObject> {
        let text = |value: Option<&CanonicalJsonValue>| match value {
            Some(CanonicalJsonValue::String(text)) => Some(text.clone()),
            _ => None,
        };
        let (authoriser, membership) = match object.get("content") {
            Some(CanonicalJsonValue::Object(content)) => (
                text(content.get("join_authorised_via_users_server")),
                text(content.get("membership")),
            ),
            _ => (None, None),
        };
        let authoriser = authoriser.and_then(|a| ruma::OwnedUserId::try_from(a).ok());
        let Some(authoriser) =
            authoriser.filter(|a| a.server_name() == self.rooms.config.server_name)
        else {
            return Ok(object);
        };
        let user = text(object.get("state_key"))
            .and_then(|u| ruma::OwnedUserId::try_from(u).ok())
            .ok_or_else(|| Error::bad_json("A membership event needs a user as state key"))?;
        if membership.as_deref() != Some("join") {
            return Ok(object);
        }
        self.rooms.join_authoriser(room_id, &user).await?;
        tracing::debug!(%room_id, %user, %authoriser, "authorising a restricted join");
        let rules = rules_of(version)?;
        ruma::signatures::hash_and_sign_event(
            self.rooms.config.server_name.as_str(),
            self.rooms.key.pair(),
            &mut object,
            &rules.redaction,
        )
        .map_err(|e| Error::internal(format!("signing a join: {e}")))?;
        Ok(object)
    }

    /// The state a knock from another server is answered with (`knock_room_state`).
    pub async fn knock_room_state(&self, room_id: &RoomId) -> Result<Vec<CanonicalJsonObject>> {
        let state = self.rooms.current_state(room_id).await?.unwrap_or_default();
        self.rooms.prejoin_state(&state, None).await
    }

    /// Adds this server's signature to an event another server made (an invite of a local
    /// user, which the inviting server needs countersigned).
    pub fn countersign(&self, event: &RemoteEvent, version: &RoomVersionId) -> Result<RemoteEvent> {
        let rules = rules_of(version)?;
        let mut object = event.object().clone();
        ruma::signatures::hash_and_sign_event(
            self.rooms.config.server_name.as_str(),
            self.rooms.key.pair(),
            &mut object,
            &rules.redaction,
        )
        .map_err(|e| Error::internal(format!("countersigning: {e}")))?;
        // Signatures are not part of the reference hash: the id stays.
        event.countersigned(object)
    }

    /// Records a membership event of a local user in a room this server is not in: an
    /// invite another server sent or the user's knock (with the room state it showed,
    /// `shown_state`), or the user's leave (rejecting the invite, withdrawing the knock).
    /// Only the membership index changes.
    pub async fn record_outside_membership(
        &self,
        room_id: &RoomId,
        version: &RoomVersionId,
        event: RemoteEvent,
        shown_state: Option<Vec<Raw<AnyStrippedStateEvent>>>,
    ) -> Result<()> {
        self.rooms.store.import_room(room_id, version, false).await?;
        let mut guard = self.rooms.lock_room(room_id).await?;
        let room = guard.as_mut().expect("lock_room loads the room");
        if room.version != *version {
            return Err(Error::bad_json("The room is of another version"));
        }
        self.rooms.admit(room_id, room, Incoming::Outside { event, shown_state }).await?;
        Ok(())
    }

    /// One event of a room as `server` may see it (`/event`).
    pub async fn event_for_server(
        &self,
        event_id: &EventId,
        server: &ServerName,
    ) -> Result<Option<(ruma::OwnedRoomId, CanonicalJsonObject)>> {
        let Some(row) = self.rooms.store.event(event_id).await? else { return Ok(None) };
        let object = self.object_for_server(&row, server, &mut HashMap::new()).await?;
        Ok(Some((row.room_id, object)))
    }

    /// An event as another server may see it: in full when the room's history was shared
    /// or world-readable at the event, or a user of that server was a member then (invited,
    /// for `invited` visibility); otherwise redacted, so the server keeps the room's graph but
    /// not what was said (spec: history visibility applies to servers too). `view` caches the
    /// answer per state snapshot.
    async fn object_for_server(
        &self,
        row: &palisade_storage::EventRow,
        server: &ServerName,
        view: &mut HashMap<u64, bool>,
    ) -> Result<CanonicalJsonObject> {
        let object: CanonicalJsonObject = serde_json::from_str(&row.json)
            .map_err(|e| Error::internal(format!("stored PDU {}: {e}", row.event_id)))?;
        // Outliers are state and auth events peers need whole; other outliers (soft-failed
        // events) are not part of the history anyone may read.
        if row.outlier && row.state_key.is_some() {
            return Ok(object);
        }
        let visible = row.outlier.then_some(false);
        let visible = match visible.or_else(|| view.get(&row.state_group).copied()) {
            Some(visible) => visible,
            None => {
                let visible = self.server_saw(row, server).await?;
                view.insert(row.state_group, visible);
                visible
            }
        };
        if visible {
            return Ok(object);
        }
        let version = self
            .rooms
            .room_version(&row.room_id)
            .await?
            .ok_or_else(|| Error::not_found("Unknown room"))?;
        ruma::canonical_json::redact(object, &rules_of(&version)?.redaction, None)
            .map_err(|e| Error::internal(format!("redacting {}: {e}", row.event_id)))
    }

    /// Whether `server` may see events with the state after `row`.
    async fn server_saw(
        &self,
        row: &palisade_storage::EventRow,
        server: &ServerName,
    ) -> Result<bool> {
        let visibility = match self
            .rooms
            .store
            .state_entry(row.state_group, "m.room.history_visibility", "")
            .await?
        {
            Some(id) => self.rooms.event_content(&id).await?["history_visibility"]
                .as_str()
                .unwrap_or("shared")
                .to_owned(),
            None => "shared".to_owned(),
        };
        if matches!(visibility.as_str(), "shared" | "world_readable") {
            return Ok(true);
        }
        let memberships: &[&str] =
            if visibility == "invited" { &["join", "invite"] } else { &["join"] };
        let state = self.rooms.store.state_after(&row.event_id).await?.unwrap_or_default();
        for ((kind, user), id) in &state {
            let of_server =
                <&UserId>::try_from(user.as_str()).is_ok_and(|u| u.server_name() == server);
            if kind == "m.room.member" && of_server {
                let membership =
                    self.rooms.event_content(id).await?["membership"].as_str().map(str::to_owned);
                if membership.is_some_and(|m| memberships.contains(&m.as_str())) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}
