//! Inbound transactions and the events in them: each PDU is verified, gaps before it are
//! filled from the sending server (bounded), and it enters the room pipeline.
//!
//! Spec: <https://spec.matrix.org/v1.19/server-server-api/#transactions>

use std::collections::{BTreeMap, HashMap};

use palisade_core::{Error, Result};
use palisade_service::rooms::{Received, RemoteEvent, event_id_of, pdu::referenced_events};
use palisade_storage::StateMap;
use ruma::{
    OwnedEventId, RoomId, RoomVersionId, ServerName, UInt,
    api::federation::{
        authorization::get_event_authorization,
        event::{get_event, get_missing_events, get_room_state_ids},
        transactions::edu::Edu,
    },
    serde::Raw,
};
use serde_json::value::RawValue;

use crate::{
    Federation,
    pdu::{parse_pdu, room_id_of},
};

/// Most PDUs and EDUs in one transaction (spec).
const MAX_PDUS: usize = 50;
const MAX_EDUS: usize = 100;
/// Most events asked for in one `/get_missing_events`.
const MISSING_EVENTS_LIMIT: u32 = 20;
/// Most state events fetched one by one to learn the state at a gap.
const MAX_STATE_FETCH: usize = 500;
/// Most `prev_events` of one event whose state is fetched from the sender.
const MAX_UNKNOWN_PREVS: usize = 5;
/// How many recent transactions are remembered, so a retry gets the same answer.
pub(crate) const RECENT_TRANSACTIONS: usize = 256;

/// Inbound transactions in progress, one lock per origin.
#[derive(Default)]
pub(crate) struct Inbound {
    turns: std::sync::Mutex<HashMap<ruma::OwnedServerName, std::sync::Arc<tokio::sync::Mutex<()>>>>,
}

impl Inbound {
    /// The lock a transaction from `origin` holds while it is processed.
    fn turn_of(&self, origin: &ServerName) -> std::sync::Arc<tokio::sync::Mutex<()>> {
        let mut turns = self.turns.lock().expect("inbound poisoned");
        // Origins are authenticated servers; locks nobody holds are dropped as the map grows.
        if turns.len() >= 1024 {
            turns.retain(|_, lock| std::sync::Arc::strong_count(lock) > 1);
        }
        turns.entry(origin.to_owned()).or_default().clone()
    }
}

/// Per-PDU results of a transaction.
pub type TransactionResults = BTreeMap<OwnedEventId, Result<(), String>>;

impl Federation {
    /// Handles the PDUs of a transaction from `origin`; per-PDU results as the spec returns.
    pub async fn receive_transaction(
        &self,
        origin: &ServerName,
        txn_id: &str,
        pdus: &[Box<RawValue>],
        edus: &[Raw<Edu>],
    ) -> Result<TransactionResults> {
        if pdus.len() > MAX_PDUS || edus.len() > MAX_EDUS {
            return Err(Error::bad_json("Too many PDUs or EDUs in one transaction"));
        }
        // One transaction per origin at a time (as Synapse): a peer's retries and gap filling
        // do not pile up, and a retry waits for the first attempt's answer.
        let turn = self.inbound.turn_of(origin);
        let _turn = turn.lock().await;
        let key = (origin.to_owned(), txn_id.to_owned());
        // A retried transaction gets the answer it got; its EDUs are not applied twice.
        if let Some((_, results)) = self
            .recent_transactions
            .lock()
            .expect("transactions poisoned")
            .iter()
            .find(|(k, _)| *k == key)
        {
            return Ok(results.clone());
        }
        let results = self.process_transaction(origin, pdus, edus).await?;
        let mut recent = self.recent_transactions.lock().expect("transactions poisoned");
        if recent.len() == RECENT_TRANSACTIONS {
            recent.pop_front();
        }
        recent.push_back((key, results.clone()));
        Ok(results)
    }

    async fn process_transaction(
        &self,
        origin: &ServerName,
        pdus: &[Box<RawValue>],
        edus: &[Raw<Edu>],
    ) -> Result<TransactionResults> {
        // EDUs first: a room key sent to a device ahead of the message it opens arrives first.
        self.receive_edus(origin, edus).await;
        let mut results = BTreeMap::new();
        for raw in pdus {
            let Ok(object) = parse_pdu(raw) else { continue };
            let Ok(room_id) = room_id_of(&object) else { continue };
            let Some(version) = self.services.rooms.room_version(&room_id).await? else {
                tracing::info!(%origin, %room_id, "PDU for a room this server is not in");
                continue;
            };
            let Some(Ok(event_id)) = version.rules().map(|rules| event_id_of(&object, &rules))
            else {
                continue;
            };
            let outcome = match self.ensure_in_room(origin, &room_id).await {
                Ok(()) => match self.verify_pdu(object, &version).await {
                    Ok(event) => self.receive_pdu(origin, &room_id, &version, event).await,
                    Err(error) => Err(error),
                },
                Err(error) => Err(error),
            };
            let result = match outcome {
                Ok(Received::Accepted | Received::Known) => Ok(()),
                Ok(Received::SoftFailed) => Err("soft-failed".to_owned()),
                Ok(Received::Missing(ids)) => Err(format!("missing events: {ids:?}")),
                Err(error) => {
                    tracing::info!(%origin, %event_id, %error, "rejected a PDU");
                    Err(error.message)
                }
            };
            results.insert(event_id, result);
        }
        Ok(results)
    }

    /// Runs a verified PDU through the pipeline, fetching from `origin` what it lacks.
    pub(crate) async fn receive_pdu(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        version: &RoomVersionId,
        event: RemoteEvent,
    ) -> Result<Received> {
        let rooms = &self.services.rooms;
        let remote_rooms = &self.services.remote_rooms;
        let outcome = rooms.receive(room_id, event.clone(), &HashMap::new()).await?;
        let Received::Missing(missing) = outcome else { return Ok(outcome) };
        tracing::debug!(event_id = %event.event_id(), ?missing, "filling a gap");

        // The event's own auth chain, when auth events are missing.
        let known = remote_rooms.known_events(&missing).await?;
        let auth_ids = referenced_events(event.object(), "auth_events");
        if auth_ids.iter().any(|id| missing.contains(id) && !known.contains(id)) {
            let request = get_event_authorization::v1::Request::new(
                room_id.to_owned(),
                event.event_id().to_owned(),
            );
            let chain = self.client.send(origin, request).await?.auth_chain;
            let chain = self.verify_all(&chain, version).await;
            remote_rooms.store_outliers(room_id, chain).await?;
        }

        // The events between what this server has and the new one.
        let mut request = get_missing_events::v1::Request::new(
            room_id.to_owned(),
            remote_rooms.extremities(room_id).await?,
            vec![event.event_id().to_owned()],
        );
        request.limit = UInt::from(MISSING_EVENTS_LIMIT);
        if let Ok(answer) = self.client.send(origin, request).await {
            let events = &answer.events[..answer.events.len().min(MISSING_EVENTS_LIMIT as usize)];
            let mut gap = self.verify_all(events, version).await;
            gap.sort_by_key(|event| match event.object().get("depth") {
                Some(ruma::CanonicalJsonValue::Integer(depth)) => i64::from(*depth),
                _ => 0,
            });
            for gap_event in gap {
                let gap_id = gap_event.event_id().to_owned();
                if let Err(error) =
                    self.receive_with_state(origin, room_id, version, gap_event).await
                {
                    tracing::info!(event_id = %gap_id, %error, "an earlier event could not be placed");
                }
            }
        }
        self.receive_with_state(origin, room_id, version, event).await
    }

    /// Runs an event through the pipeline, learning from `origin` the state after each of its
    /// `prev_events` this server has not got in its timeline.
    async fn receive_with_state(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        version: &RoomVersionId,
        event: RemoteEvent,
    ) -> Result<Received> {
        let rooms = &self.services.rooms;
        let outcome = rooms.receive(room_id, event.clone(), &HashMap::new()).await?;
        let Received::Missing(_) = outcome else { return Ok(outcome) };
        let mut unknown = Vec::new();
        for prev in referenced_events(event.object(), "prev_events") {
            if !rooms.in_timeline(&prev).await? {
                unknown.push(prev);
            }
        }
        if unknown.len() > MAX_UNKNOWN_PREVS {
            return Err(Error::forbidden("Too many unknown earlier events"));
        }
        let mut prev_states = HashMap::new();
        for prev in unknown {
            let state = self.state_after_remote(origin, room_id, version, &prev).await?;
            prev_states.insert(prev, state);
        }
        rooms.receive(room_id, event, &prev_states).await
    }

    /// The state after an event this server lacks, as `origin` reports it: the state before
    /// it (`/state_ids`), the events fetched and checked, plus the event itself.
    async fn state_after_remote(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        version: &RoomVersionId,
        event_id: &OwnedEventId,
    ) -> Result<StateMap> {
        let remote_rooms = &self.services.remote_rooms;
        let request = get_room_state_ids::v1::Request::new(event_id.clone(), room_id.to_owned());
        let ids = self.client.send(origin, request).await?;
        let mut wanted: Vec<OwnedEventId> =
            ids.auth_chain_ids.iter().chain(&ids.pdu_ids).cloned().collect();
        wanted.push(event_id.clone());
        let known = remote_rooms.known_events(&wanted).await?;
        let unknown: Vec<&OwnedEventId> = wanted.iter().filter(|id| !known.contains(*id)).collect();
        if unknown.len() > MAX_STATE_FETCH {
            return Err(Error::forbidden("Too much unknown state to fetch"));
        }
        let mut fetched = Vec::with_capacity(unknown.len());
        for id in unknown {
            let answer = self.client.send(origin, get_event::v1::Request::new(id.clone())).await?;
            let event = self.verify_pdu(parse_pdu(&answer.pdu)?, version).await?;
            if event.event_id() != id {
                return Err(Error::bad_json("The peer answered with another event"));
            }
            fetched.push(event);
        }
        remote_rooms.store_outliers(room_id, fetched).await?;
        let mut state = remote_rooms.state_map_of(room_id, &ids.pdu_ids).await?;
        state.extend(remote_rooms.state_map_of(room_id, std::slice::from_ref(event_id)).await?);
        Ok(state)
    }
}
