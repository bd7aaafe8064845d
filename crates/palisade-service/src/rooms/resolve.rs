//! State resolution (v2, through ruma-state-res) over states stored here: loads the auth
//! chains and the conflicted subgraph the algorithm asks for.

use std::collections::{HashMap, HashSet};

use palisade_core::{Error, Result};
use palisade_storage::StateMap;
use ruma::{
    EventId, OwnedEventId, RoomVersionId,
    events::StateEventType,
    room_version_rules::StateResolutionVersion,
    state_res::{self, utils::event_id_set::EventIdSet},
};

use super::{Pdu, RoomService, rules_of};

type RumaStateMap = state_res::StateMap<OwnedEventId>;

impl RoomService {
    /// The state of a room where `states` (forks) meet.
    pub(crate) async fn resolve_state(
        &self,
        version: &RoomVersionId,
        mut states: Vec<StateMap>,
    ) -> Result<StateMap> {
        let first = match states.first() {
            Some(first) => first,
            None => return Ok(StateMap::new()),
        };
        if states.iter().all(|state| state == first) {
            return Ok(states.swap_remove(0));
        }
        let rules = rules_of(version)?;
        let StateResolutionVersion::V2(resolution) = &rules.state_res else {
            return Err(Error::internal(format!("room version {version} resolves state with v1")));
        };
        let mut events = HashMap::new();
        let mut auth_chains = Vec::with_capacity(states.len());
        for state in &states {
            let chain = self.auth_chain(state.values().cloned(), &mut events).await?;
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
