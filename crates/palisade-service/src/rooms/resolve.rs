//! State resolution over states stored here: v2 through ruma-state-res (loading the auth
//! chains and the conflicted subgraph it asks for), and v1 for room version 1, which
//! ruma-state-res does not implement, as Synapse resolves it (`synapse/state/v1.py`).

use std::collections::{BTreeSet, HashMap, HashSet};

use palisade_core::{Error, Result};
use palisade_storage::StateMap;
use ruma::{
    EventId, OwnedEventId, RoomVersionId,
    events::StateEventType,
    room_version_rules::{AuthorizationRules, StateResolutionVersion},
    state_res::{self, utils::event_id_set::EventIdSet},
};
use sha1::{Digest, Sha1};

use super::{Pdu, RoomService, rules_of};

type RumaStateMap = state_res::StateMap<OwnedEventId>;

impl RoomService {
    /// The state of a room where `states` (forks) meet. `pending` is an event being admitted
    /// (not stored yet) that one of the states names: it takes part like a stored one.
    pub(crate) async fn resolve_state(
        &self,
        version: &RoomVersionId,
        mut states: Vec<StateMap>,
        pending: Option<&Pdu>,
    ) -> Result<StateMap> {
        let first = match states.first() {
            Some(first) => first,
            None => return Ok(StateMap::new()),
        };
        if states.iter().all(|state| state == first) {
            return Ok(states.swap_remove(0));
        }
        let rules = rules_of(version)?;
        let resolution = match &rules.state_res {
            StateResolutionVersion::V2(resolution) => resolution,
            StateResolutionVersion::V1 => {
                return self.resolve_v1(&rules.authorization, &states, pending).await;
            }
            _ => {
                return Err(Error::internal(format!("room version {version}: unknown resolution")));
            }
        };
        let mut events: HashMap<OwnedEventId, Pdu> =
            pending.map(|pdu| (pdu.event_id.clone(), pdu.clone())).into_iter().collect();
        let mut auth_chains = Vec::with_capacity(states.len());
        for state in &states {
            // A state's full auth chain counts its own events, as Synapse computes the auth
            // difference: an event that is state in every fork (a member whose join authorises
            // one fork's event) must not enter the difference, or the forks resolve differently
            // here and there.
            let mut chain = self.auth_chain(state.values().cloned(), &mut events).await?;
            chain.extend(state.values().cloned());
            auth_chains.push(chain.into_iter().collect::<EventIdSet<OwnedEventId>>());
        }
        let maps: Vec<RumaStateMap> = states
            .iter()
            .map(|state| {
                state
                    .iter()
                    .map(|((kind, key), id)| {
                        ((StateEventType::from(kind.as_str()), key.clone()), id.clone())
                    })
                    .collect()
            })
            .collect();
        let resolved = state_res::resolve(
            &rules.authorization,
            resolution,
            maps.iter(),
            auth_chains,
            |id| events.get(id).cloned(),
            |conflicted| Some(conflicted_subgraph(conflicted, &events)),
        )
        .map_err(|e| Error::internal(format!("state resolution failed: {e}")))?;
        Ok(resolved.into_iter().map(|((kind, key), id)| ((kind.to_string(), key), id)).collect())
    }

    /// State resolution v1: unconflicted state stands; conflicted power levels, then join
    /// rules, then memberships are resolved by replaying them against the auth events, and
    /// every other conflict goes to the deepest event the rules allow.
    async fn resolve_v1(
        &self,
        rules: &AuthorizationRules,
        states: &[StateMap],
        pending: Option<&Pdu>,
    ) -> Result<StateMap> {
        let (mut unconflicted, conflicted) = separate(states);
        let mut events = self.load_pdus(conflicted.values().flatten().cloned()).await?;
        events.extend(pending.map(|pdu| (pdu.event_id.clone(), pdu.clone())));
        // The auth events of the conflicted events, taken from the unconflicted state.
        let mut auth_ids: HashMap<StateKey, OwnedEventId> = HashMap::new();
        for event in events.values() {
            for key in auth_keys(rules, event)? {
                if let Some(id) = unconflicted.get(&key).filter(|_| !auth_ids.contains_key(&key)) {
                    auth_ids.insert(key, id.clone());
                }
            }
        }
        let auth_pdus = self.load_pdus(auth_ids.values().cloned()).await?;
        let mut auth: HashMap<StateKey, &Pdu> = auth_ids
            .iter()
            .filter_map(|(key, id)| Some((key.clone(), auth_pdus.get(id)?)))
            .collect();
        let mut contested: Vec<(StateKey, Vec<&Pdu>)> = Vec::new();
        for (key, ids) in conflicted {
            let found: Vec<&Pdu> = ids.iter().filter_map(|id| events.get(id)).collect();
            match found.as_slice() {
                [] => {}
                [only] => {
                    unconflicted.insert(key, only.event_id.clone());
                }
                _ => contested.push((key, found)),
            }
        }
        let mut resolved: HashMap<StateKey, &Pdu> = HashMap::new();
        let phases: [fn(&StateKey) -> bool; 3] = [
            |key| key.0 == "m.room.power_levels" && key.1.is_empty(),
            |key| key.0 == "m.room.join_rules",
            |key| key.0 == "m.room.member",
        ];
        for in_phase in phases {
            for (key, candidates) in contested.iter().filter(|(key, _)| in_phase(key)) {
                resolved.insert(key.clone(), replay_auth_events(rules, candidates, &auth)?);
            }
            auth.extend(resolved.iter().map(|(key, event)| (key.clone(), *event)));
        }
        for (key, candidates) in &contested {
            if !resolved.contains_key(key) {
                resolved.insert(key.clone(), first_allowed(rules, candidates, &auth));
            }
        }
        unconflicted.extend(resolved.into_iter().map(|(key, event)| (key, event.event_id.clone())));
        Ok(unconflicted)
    }

    /// The events reachable from `ids` through `auth_events` (not `ids` themselves, unless
    /// reachable), loading them and `ids` into `events`.
    pub(crate) async fn auth_chain(
        &self,
        ids: impl IntoIterator<Item = OwnedEventId>,
        events: &mut HashMap<OwnedEventId, Pdu>,
    ) -> Result<HashSet<OwnedEventId>> {
        let mut chain = HashSet::new();
        let mut seen = HashSet::new();
        let mut queue: Vec<OwnedEventId> = ids.into_iter().collect();
        while let Some(id) = queue.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            if !events.contains_key(&id) {
                match self.store.event(&id).await? {
                    Some(row) => {
                        events.insert(id.clone(), Pdu::from_row(&row)?);
                    }
                    None => continue,
                }
            }
            for parent in &events[&id].auth_events {
                if chain.insert(parent.clone()) {
                    queue.push(parent.clone());
                }
            }
        }
        Ok(chain)
    }
}

/// The conflicted state subgraph (room version 12): the conflicted events and every event on
/// an auth path from one conflicted event to another.
fn conflicted_subgraph(
    conflicted: &state_res::StateMap<Vec<OwnedEventId>>,
    events: &HashMap<OwnedEventId, Pdu>,
) -> EventIdSet<OwnedEventId> {
    let targets: HashSet<&EventId> = conflicted.values().flatten().map(|id| &**id).collect();
    let parents = |id: &EventId| -> Vec<OwnedEventId> {
        events.get(id).map(|event| event.auth_events.clone()).unwrap_or_default()
    };
    // Whether each event reaches a conflicted event (itself included), computed bottom-up.
    let mut reaches: HashMap<OwnedEventId, bool> = HashMap::new();
    let mut stack: Vec<(OwnedEventId, bool)> =
        targets.iter().map(|id| ((*id).to_owned(), false)).collect();
    while let Some((id, expanded)) = stack.pop() {
        if reaches.contains_key(&id) {
            continue;
        }
        let ancestors = parents(&id);
        if expanded {
            let reached = targets.contains(&*id)
                || ancestors.iter().any(|parent| reaches.get(parent) == Some(&true));
            reaches.insert(id, reached);
        } else {
            stack.push((id, true));
            stack.extend(
                ancestors
                    .into_iter()
                    .filter(|parent| !reaches.contains_key(parent))
                    .map(|parent| (parent, false)),
            );
        }
    }
    // Every event visited is an ancestor of a conflicted event (or one itself).
    reaches.into_iter().filter(|(_, reached)| *reached).map(|(id, _)| id).collect()
}

type StateKey = (String, String);

/// Splits states into the entries they agree on (or only one has) and, for the keys they
/// disagree on, every event named.
fn separate(states: &[StateMap]) -> (StateMap, HashMap<StateKey, BTreeSet<OwnedEventId>>) {
    let mut unconflicted = states.first().cloned().unwrap_or_default();
    let mut conflicted: HashMap<StateKey, BTreeSet<OwnedEventId>> = HashMap::new();
    for state in states.iter().skip(1) {
        for (key, id) in state {
            match unconflicted.get(key) {
                None => match conflicted.get_mut(key) {
                    Some(ids) => {
                        ids.insert(id.clone());
                    }
                    None => {
                        unconflicted.insert(key.clone(), id.clone());
                    }
                },
                Some(agreed) if agreed != id => {
                    let agreed = unconflicted.remove(key).expect("present");
                    conflicted.insert(key.clone(), BTreeSet::from([agreed, id.clone()]));
                }
                Some(_) => {}
            }
        }
    }
    (unconflicted, conflicted)
}

/// The state keys whose events authorise `event`.
fn auth_keys(rules: &AuthorizationRules, event: &Pdu) -> Result<Vec<StateKey>> {
    let keys = state_res::auth_types_for_event(
        &event.kind,
        &event.sender,
        event.state_key.as_deref(),
        &event.content,
        rules,
    )
    .map_err(|e| Error::internal(format!("auth types of {}: {e}", event.event_id)))?;
    Ok(keys.into_iter().map(|(kind, key)| (kind.to_string(), key)).collect())
}

/// Whether the rules that depend on state allow `event` against `auth`.
fn allowed(rules: &AuthorizationRules, event: &Pdu, auth: &HashMap<StateKey, &Pdu>) -> bool {
    state_res::check_state_dependent_auth_rules(rules, event, |kind, key| {
        auth.get(&(kind.to_string(), key.to_owned())).copied()
    })
    .is_ok()
}

/// Deepest first, ties broken by the SHA-1 of the event id (v1's order).
fn ordered<'a>(events: &[&'a Pdu]) -> Vec<&'a Pdu> {
    let mut ordered = events.to_vec();
    ordered.sort_by_cached_key(|event| {
        (std::cmp::Reverse(event.depth), Sha1::digest(event.event_id.as_str().as_bytes()))
    });
    ordered
}

/// Replays conflicting auth events from the shallowest, each on top of the last one
/// allowed, until one is refused: the last allowed wins.
fn replay_auth_events<'a>(
    rules: &AuthorizationRules,
    candidates: &[&'a Pdu],
    auth: &HashMap<StateKey, &'a Pdu>,
) -> Result<&'a Pdu> {
    let mut keys = HashSet::new();
    for event in candidates {
        keys.extend(auth_keys(rules, event)?);
    }
    let mut state: HashMap<StateKey, &Pdu> =
        keys.into_iter().filter_map(|key| Some((key.clone(), *auth.get(&key)?))).collect();
    let mut replay = ordered(candidates).into_iter().rev();
    let mut winner = replay.next().expect("a conflict has two events or more");
    for event in replay {
        let key = (winner.kind.to_string(), winner.state_key.clone().unwrap_or_default());
        state.insert(key, winner);
        if !allowed(rules, event, &state) {
            break;
        }
        winner = event;
    }
    Ok(winner)
}

/// The deepest conflicting event the rules allow, or the shallowest if none is.
fn first_allowed<'a>(
    rules: &AuthorizationRules,
    candidates: &[&'a Pdu],
    auth: &HashMap<StateKey, &'a Pdu>,
) -> &'a Pdu {
    let ordered = ordered(candidates);
    let fallback = *ordered.last().expect("a conflict has two events or more");
    ordered.into_iter().find(|event| allowed(rules, event, auth)).unwrap_or(fallback)
}
