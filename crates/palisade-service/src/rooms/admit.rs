//! Admission: the one door through which events reach a room's storage, local or from other
//! servers. [`RoomService::admit`] runs, under the room lock its caller holds, the checks an
//! event's origin calls for, in the spec's order, and then commits it; `persist` is private to
//! this module, so no other path writes an event.
//!
//! 1. Format and size: local events are built to fit (`skeleton`); a [`RemoteEvent`] exists
//!    only once `verify` checked its format, size, signatures and content hash.
//! 2. Auth events: the rules that need no state, and the rules against the state the event's
//!    own auth events make.
//! 3. State before: the rules against the state before the event (resolved over its
//!    `prev_events`; for a local event, whose auth events come from it, the current state).
//! 4. Current state: a remote event that fails here is soft-failed (an outlier nobody sees); a
//!    local one is refused.
//! 5. Redactions: redacting another user's event needs the room's `redact` level.
//!
//! Events that are not (yet) part of the room's timeline get the checks that apply to them:
//! state and auth events fetched from a peer (outliers) steps 2; history fetched at a join
//! steps 2 and the state at the join; a local user's membership in a room this server is not
//! in (an invite from another server, or its rejection) only what a lone event allows: the
//! verified signatures, and that this server really is not in the room.
//!
//! Spec: <https://spec.matrix.org/v1.19/server-server-api/#checks-performed-on-receipt-of-a-pdu>

use std::collections::HashMap;

use palisade_core::{Error, ErrorKind, Result};
use palisade_storage::{NewEvent, RoomSnapshot, StateMap, StateUpdate};
use ruma::{
    OwnedDeviceId, OwnedEventId, RoomId, RoomVersionId, UserId, events::AnyStrippedStateEvent,
    room_version_rules::RoomVersionRules, serde::Raw,
};
use serde_json::Value;

use super::{Pdu, RemoteEvent, RoomService, Signed, rules_of};

/// An event on its way into a room, by where it comes from.
pub(super) enum Incoming<'a> {
    /// A local user's event, built on the room's current state and signed here.
    Local {
        /// The event.
        signed: Signed,
        /// The device and transaction id it was sent with.
        txn: Option<(OwnedDeviceId, String)>,
        /// For a create event: the new room's version.
        creates_room: Option<RoomVersionId>,
    },
    /// Another server's event in a room this server is in, with the state after each
    /// `prev_event` this server has no timeline state for (fetched from a peer).
    Remote { event: RemoteEvent, prev_states: &'a HashMap<OwnedEventId, StateMap> },
    /// A state or auth event fetched from a peer, kept for reference.
    Outlier(RemoteEvent),
    /// A local user's join through another server: the room takes `state` (already stored as
    /// outliers) as the state before the join, with `history` (recent events before it, each
    /// left out unless it passes against its auth events and that state).
    Join { join: RemoteEvent, state: StateMap, history: Vec<RemoteEvent> },
    /// A local user's membership in a room this server is not in: an invite another server
    /// sent or the user's knock (with the room state shown), or the user's leave.
    Outside { event: RemoteEvent, shown_state: Option<Vec<Raw<AnyStrippedStateEvent>>> },
}

/// What became of an event another server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// Stored and part of the room.
    Accepted,
    /// Stored, but it fails against the room's current state, so nobody sees it.
    SoftFailed,
    /// Already stored.
    Known,
    /// Its `prev_events` or `auth_events` name events this server lacks.
    Missing(Vec<OwnedEventId>),
}

/// How a checked event is committed: everything but the event itself.
#[derive(Default)]
struct Commit<'a> {
    /// The local device and transaction id it was sent with.
    txn: Option<(OwnedDeviceId, String)>,
    /// For a create event: the new room's version.
    creates_room: Option<RoomVersionId>,
    /// How the event moves the room's state.
    state: StateUpdate,
    /// The state before the event, when not the current state.
    before: Option<&'a StateMap>,
    /// For an invite from another server or a knock through one: the room's stripped state
    /// shown with it, kept in the event's `unsigned` (`invite_room_state`,
    /// `knock_room_state`) for the user's `/sync`.
    shown_state: Option<Vec<Raw<AnyStrippedStateEvent>>>,
}

impl RoomService {
    /// Checks an event as its origin calls for and, if it passes, commits it to the locked
    /// `room`. A refused event is an error and leaves storage untouched.
    pub(super) async fn admit(
        &self,
        room_id: &RoomId,
        room: &mut RoomSnapshot,
        incoming: Incoming<'_>,
    ) -> Result<Received> {
        match incoming {
            Incoming::Local { signed, txn, creates_room } => {
                let Signed { pdu, json, .. } = signed;
                let rules = rules_of(&room.version)?;
                if pdu.room()? != room_id {
                    return Err(Error::internal("a local event built for another room"));
                }
                // Steps 2 to 4 in one: the auth events were chosen from the current state.
                self.authorize(room, &pdu, &rules).await?;
                self.check_redaction(room, &pdu).await?;
                let commit = Commit { txn, creates_room, ..Commit::default() };
                self.persist(room, pdu, json, commit).await?;
                Ok(Received::Accepted)
            }
            Incoming::Remote { event, prev_states } => {
                self.admit_remote(room_id, room, event, prev_states).await
            }
            Incoming::Outlier(event) => {
                if self.store.has_event(event.event_id()).await? {
                    return Ok(Received::Known);
                }
                let pdu = self.pdu_in(room_id, &event)?;
                self.check_against_auth_events(&pdu, &rules_of(&room.version)?).await?;
                let commit = Commit { state: StateUpdate::Outlier, ..Commit::default() };
                self.persist(room, pdu, event.into_json(), commit).await?;
                Ok(Received::Accepted)
            }
            Incoming::Join { join, state, history } => {
                self.admit_join(room_id, room, join, state, history).await
            }
            Incoming::Outside { event, shown_state } => {
                if self.store.has_event(event.event_id()).await? {
                    return Ok(Received::Known);
                }
                // In a room this server is in, memberships are events of the room, and the
                // room's rules (not a lone event) decide them.
                if self.store.server_joined(room_id, &self.config.server_name).await? {
                    return Err(Error::forbidden(
                        "This server is in the room: the event must be received",
                    ));
                }
                let pdu = self.pdu_in(room_id, &event)?;
                let target = pdu.state_key.as_deref().unwrap_or_default();
                let local = <&UserId>::try_from(target)
                    .is_ok_and(|user| user.server_name() == self.config.server_name);
                // An invite of a local user, or that user's own knock or leave.
                let allowed = match pdu.membership().as_deref() {
                    Some("invite") => true,
                    Some("knock" | "leave") => pdu.sender.as_str() == target,
                    _ => false,
                };
                if !local || !allowed {
                    return Err(Error::bad_json(
                        "Only a local user's invite, knock or leave is recorded outside a room",
                    ));
                }
                let commit =
                    Commit { state: StateUpdate::MembershipOnly, shown_state, ..Commit::default() };
                self.persist(room, pdu, event.into_json(), commit).await?;
                Ok(Received::Accepted)
            }
        }
    }

    /// The fields of a remote event, which must belong to `room_id`.
    fn pdu_in(&self, room_id: &RoomId, event: &RemoteEvent) -> Result<Pdu> {
        let pdu = event.pdu()?;
        if pdu.room()? != room_id {
            return Err(Error::forbidden("The event belongs to another room"));
        }
        Ok(pdu)
    }

    /// Steps 2 to 5 for another server's event that continues the room.
    async fn admit_remote(
        &self,
        room_id: &RoomId,
        room: &mut RoomSnapshot,
        event: RemoteEvent,
        prev_states: &HashMap<OwnedEventId, StateMap>,
    ) -> Result<Received> {
        // An event known only as an outlier (fetched as state, or soft-failed) goes through
        // the checks again: it may now belong in the timeline.
        if self.in_timeline(event.event_id()).await? {
            return Ok(Received::Known);
        }
        let stored_as_outlier = self.store.has_event(event.event_id()).await?;
        let rules = rules_of(&room.version)?;
        let pdu = self.pdu_in(room_id, &event)?;
        let mut missing = Vec::new();
        for id in &pdu.auth_events {
            if !self.store.has_event(id).await? {
                missing.push(id.clone());
            }
        }
        let mut states = Vec::with_capacity(pdu.prev_events.len());
        for id in &pdu.prev_events {
            match prev_states.get(id) {
                Some(state) => states.push(state.clone()),
                None => match self.store.event(id).await? {
                    Some(row) if !row.outlier => states.push(
                        self.store
                            .state_after(id)
                            .await?
                            .ok_or_else(|| Error::internal("stored event without state"))?,
                    ),
                    _ => missing.push(id.clone()),
                },
            }
        }
        if !missing.is_empty() {
            return Ok(Received::Missing(missing));
        }

        // Step 2 before resolving the state: a forged event costs no resolution.
        self.check_against_auth_events(&pdu, &rules).await?;
        let before = self.resolve_state(&room.version, states, None).await?;
        self.check_against(&pdu, &rules, &before).await?;
        let soft_failed = self.check_against(&pdu, &rules, &room.state).await.is_err()
            || self.check_redaction(room, &pdu).await.is_err();
        if soft_failed {
            tracing::info!(event_id = %pdu.event_id, "event soft-failed against current state");
            if !stored_as_outlier {
                let commit = Commit { state: StateUpdate::Outlier, ..Commit::default() };
                self.persist(room, pdu, event.into_json(), commit).await?;
            }
            return Ok(Received::SoftFailed);
        }

        let mut after = before.clone();
        if let Some(key) = &pdu.state_key {
            after.insert((pdu.kind.to_string(), key.clone()), pdu.event_id.clone());
        }
        let others: Vec<OwnedEventId> = room
            .extremities
            .iter()
            .map(|(id, _)| id.clone())
            .filter(|id| !pdu.prev_events.contains(id))
            .collect();
        let state = if others.is_empty() && before == room.state {
            StateUpdate::Linear
        } else {
            let mut forks = vec![after.clone()];
            for id in &others {
                if let Some(state) = self.store.state_after(id).await? {
                    forks.push(state);
                }
            }
            let current = self.resolve_state(&room.version, forks, Some(&pdu)).await?;
            StateUpdate::Resolved { after, current }
        };
        let commit = Commit { state, before: Some(&before), ..Commit::default() };
        self.persist(room, pdu, event.into_json(), commit).await?;
        Ok(Received::Accepted)
    }

    /// A join through another server: the join is checked against its auth events and the
    /// state the resident server gave before the room takes that state; then the history
    /// (each event against its auth events and the state at the join: what the room's rules
    /// refuse now is left out, as a soft failure would be) and the join are committed.
    async fn admit_join(
        &self,
        room_id: &RoomId,
        room: &mut RoomSnapshot,
        join: RemoteEvent,
        state: StateMap,
        history: Vec<RemoteEvent>,
    ) -> Result<Received> {
        // Another local user's join may have brought this server in meanwhile: the room's own
        // state then stands, and joining is an event like any other.
        if self.store.server_joined(room_id, &self.config.server_name).await? {
            return Err(Error::new(
                ErrorKind::BadState,
                "This server joined the room meanwhile: join it again",
            ));
        }
        let rules = rules_of(&room.version)?;
        let pdu = self.pdu_in(room_id, &join)?;
        self.check_with_state(&pdu, &rules, &state).await?;
        self.mark_stale(room_id);
        self.store.reset_room_state(room_id, state.clone()).await?;
        *room = self
            .store
            .room_snapshot(room_id)
            .await?
            .ok_or_else(|| Error::internal("a joined room vanished"))?;
        let mut history: Vec<(u64, Pdu, RemoteEvent)> = history
            .into_iter()
            .filter_map(|event| Some((self.pdu_in(room_id, &event).ok()?, event)))
            .map(|(pdu, event)| (u64::from(pdu.depth), pdu, event))
            .collect();
        history.sort_by_key(|(depth, _, _)| *depth);
        for (_, pdu, event) in history {
            if self.in_timeline(&pdu.event_id).await? {
                continue;
            }
            if let Err(error) = self.check_with_state(&pdu, &rules, &state).await {
                tracing::debug!(event_id = %pdu.event_id, %error, "left out an event of history");
                continue;
            }
            let commit = Commit { state: StateUpdate::History, ..Commit::default() };
            self.persist(room, pdu, event.into_json(), commit).await?;
        }
        self.persist(room, pdu, join.into_json(), Commit::default()).await?;
        Ok(Received::Accepted)
    }

    /// Steps 2 and 3: the rules against the event's own auth events, then against the state
    /// before it.
    async fn check_with_state(
        &self,
        pdu: &Pdu,
        rules: &RoomVersionRules,
        before: &StateMap,
    ) -> Result<()> {
        self.check_against_auth_events(pdu, rules).await?;
        self.check_against(pdu, rules, before).await
    }

    /// Commits an admitted event and moves the room's cached state forward.
    async fn persist(
        &self,
        room: &mut RoomSnapshot,
        pdu: Pdu,
        json: String,
        commit: Commit<'_>,
    ) -> Result<OwnedEventId> {
        let Commit { txn, creates_room, state, before, shown_state } = commit;
        let room_id = pdu.room()?;
        let state_key = pdu.state_key.clone().map(|k| (pdu.kind.to_string(), k));
        let before = before.unwrap_or(&room.state);
        let previous = state_key.as_ref().and_then(|key| before.get(key));
        let unsigned = match (shown_state, previous) {
            // An invite or knock from outside keeps the room state shown, whatever came before.
            (Some(events), _) => {
                let key = match pdu.membership().as_deref() {
                    Some("knock") => "knock_room_state",
                    _ => "invite_room_state",
                };
                Some(serde_json::json!({ key: events }).to_string())
            }
            (None, Some(previous)) => match self.store.event(previous).await? {
                Some(prev) => {
                    let prev_pdu = Pdu::from_row(&prev)?;
                    let content: Value =
                        serde_json::from_str(prev_pdu.content.get()).unwrap_or_default();
                    Some(
                        serde_json::json!({
                            "replaces_state": previous,
                            "prev_content": content,
                            "prev_sender": prev_pdu.sender,
                        })
                        .to_string(),
                    )
                }
                None => None,
            },
            (None, None) => None,
        };
        let membership = pdu.membership();
        let depth = u64::from(pdu.depth);
        let change = membership.clone().zip(pdu.state_key.clone());
        let new = NewEvent {
            event_id: pdu.event_id.clone(),
            room_id,
            kind: pdu.kind.to_string(),
            state_key: pdu.state_key.clone(),
            sender: pdu.sender.clone(),
            depth,
            origin_server_ts: u64::from(pdu.origin_server_ts.0),
            json,
            unsigned,
            prev_events: pdu.prev_events.clone(),
            membership,
            creates_room,
            redacts: pdu.redacted_event(&rules_of(&room.version)?.redaction),
            txn,
            state: state.clone(),
        };
        let room_id = new.room_id.clone();
        self.mark_stale(&room_id);
        let appended = self.store.append_event(new).await?;
        let extends_room = state != StateUpdate::MembershipOnly;
        match state {
            StateUpdate::Linear => {
                if let Some(key) = state_key {
                    room.state.insert(key, pdu.event_id.clone());
                }
            }
            StateUpdate::Resolved { current, .. } => room.state = current,
            StateUpdate::Outlier => {
                self.unmark_stale(&room_id);
                return Ok(pdu.event_id);
            }
            StateUpdate::History => {
                self.advance_stream(appended.stream_pos);
                self.unmark_stale(&room_id);
                return Ok(pdu.event_id);
            }
            StateUpdate::MembershipOnly => {}
        }
        if extends_room {
            room.state_group = appended.current_group;
            room.extremities.retain(|(id, _)| !pdu.prev_events.contains(id));
            room.extremities.push((pdu.event_id.clone(), depth));
        }
        self.advance_stream(appended.stream_pos);
        self.committed.send_replace(appended.stream_pos);
        self.unmark_stale(&room_id);
        let change = change.as_ref().and_then(|(membership, target)| {
            <&UserId>::try_from(target.as_str()).ok().map(|user| (user, membership.as_str()))
        });
        let room_id = pdu.room()?;
        self.notifier.notify_room(&room_id, change, self.store.members(&room_id)).await?;
        Ok(pdu.event_id)
    }
}
