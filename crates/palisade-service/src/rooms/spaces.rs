//! Spaces: the room tree under a space (`/hierarchy`), walked depth first as Synapse walks it,
//! through other servers (federation's `/hierarchy`) for rooms this server is not in; and the
//! answer to other servers asking the same.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv1roomsroomidhierarchy>

use std::collections::{HashMap, HashSet, VecDeque};

use palisade_core::{Error, Result};
use ruma::{
    OwnedRoomId, OwnedServerName, RoomId, ServerName, UserId,
    api::{client::space::SpaceHierarchyRoomsChunk, federation::space::get_hierarchy},
    events::space::child::HierarchySpaceChildEvent,
    room::{JoinRuleSummary, RoomSummary, RoomType},
    serde::Raw,
};
use serde_json::json;

use super::DirectoryService;
use crate::trust::{Actor, Need};

/// Rooms per page unless the client asks for fewer.
const DEFAULT_LIMIT: usize = 50;
/// Most rooms one walk looks at, whatever the pages: bounds the work of a request.
const MAX_WALKED: usize = 1000;

/// What `/hierarchy` asks for.
#[derive(Debug, Clone, Default)]
pub struct HierarchyQuery {
    /// Where the previous page stopped.
    pub from: Option<String>,
    /// Most rooms.
    pub limit: Option<usize>,
    /// How deep below the root to go; no limit when `None`.
    pub max_depth: Option<usize>,
    /// Only children marked `suggested`.
    pub suggested_only: bool,
}

/// A page of the tree.
#[derive(Debug)]
pub struct HierarchyPage {
    /// The rooms, depth first.
    pub rooms: Vec<SpaceHierarchyRoomsChunk>,
    /// Where the next page starts, when there is more.
    pub next_batch: Option<String>,
}

/// A room as a walk knows it: its summary and its children.
struct Known {
    summary: RoomSummary,
    children: Vec<(HierarchySpaceChildEvent, Raw<HierarchySpaceChildEvent>)>,
}

/// The pagination token: rooms already served, and the query they were served for (a token
/// of another query is refused, as Synapse refuses it).
fn token(served: usize, query: &HierarchyQuery) -> String {
    let depth = query.max_depth.map_or("-".to_owned(), |d| d.to_string());
    format!("{served}_{depth}_{}", u8::from(query.suggested_only))
}

fn served_before(query: &HierarchyQuery) -> Result<usize> {
    let Some(from) = &query.from else { return Ok(0) };
    let invalid = || Error::invalid_param("Invalid or mismatched pagination token");
    let (served, _) = from.split_once('_').ok_or_else(invalid)?;
    let served: usize = served.parse().map_err(|_| invalid())?;
    if token(served, query) != *from {
        return Err(invalid());
    }
    Ok(served)
}

/// Whether a room's join rule or history lets anyone see it.
fn open(summary: &RoomSummary) -> bool {
    summary.world_readable
        || matches!(
            summary.join_rule,
            JoinRuleSummary::Public | JoinRuleSummary::Knock | JoinRuleSummary::KnockRestricted(_)
        )
}

/// The rooms whose members a restricted join rule lets in.
fn allowed_rooms(summary: &RoomSummary) -> &[OwnedRoomId] {
    match &summary.join_rule {
        JoinRuleSummary::Restricted(r) | JoinRuleSummary::KnockRestricted(r) => &r.allowed_room_ids,
        _ => &[],
    }
}

impl DirectoryService {
    /// A page of the tree of rooms under `root` that `actor` may see (`/hierarchy`); the root
    /// itself must be one, else `M_FORBIDDEN`.
    pub async fn hierarchy(
        &self,
        actor: Actor<'_>,
        root: &RoomId,
        query: HierarchyQuery,
    ) -> Result<HierarchyPage> {
        self.rooms.trust.require(actor, Need::RoomAccess, "hierarchy").await?;
        let user = actor.user();
        let served = served_before(&query)?;
        if query.limit == Some(0) {
            return Err(Error::invalid_param("limit must be a positive integer"));
        }
        let limit = query.limit.unwrap_or(DEFAULT_LIMIT).min(DEFAULT_LIMIT);
        let forbidden = || Error::forbidden(format!("You cannot see the space {root}"));
        let own = &self.rooms.config.server_name;
        let root_local = self.rooms.room_version(root).await?.is_some()
            && self.rooms.server_in_room(root, own).await?;
        if !root_local {
            return Err(forbidden());
        }
        let mut cache = HashMap::new();
        let mut queue: VecDeque<(OwnedRoomId, Vec<OwnedServerName>, usize)> =
            VecDeque::from([(root.to_owned(), Vec::new(), 0)]);
        let (mut seen, mut walked, mut rooms) = (HashSet::new(), 0, Vec::new());
        while let Some((room_id, via, depth)) = queue.pop_front() {
            if !seen.insert(room_id.clone()) {
                continue;
            }
            if seen.len() > MAX_WALKED {
                break;
            }
            let deeper = query.max_depth.is_none_or(|max| depth < max);
            let known =
                self.known(&room_id, &via, deeper, query.suggested_only, &mut cache).await?;
            let Some(known) = known.filter(|k| k.summary.room_id == room_id) else { continue };
            if !self.user_may_see(user, &known.summary).await? {
                if depth == 0 {
                    return Err(forbidden());
                }
                continue;
            }
            if deeper {
                for (child, _) in known.children.iter().rev() {
                    queue.push_front((
                        child.state_key.clone(),
                        child.content.via.clone(),
                        depth + 1,
                    ));
                }
            }
            walked += 1;
            if walked > served {
                let children = known.children.into_iter().map(|(_, raw)| raw).collect();
                rooms.push(SpaceHierarchyRoomsChunk::new(known.summary, children));
                if rooms.len() == limit {
                    break;
                }
            }
        }
        let more = queue.iter().any(|(room_id, _, _)| !seen.contains(room_id));
        let next_batch = (rooms.len() == limit && more).then(|| token(served + limit, &query));
        Ok(HierarchyPage { rooms, next_batch })
    }

    /// What another server may know of a space this server is in (federation's
    /// `/hierarchy`): the room and its children this server is in, those the asking server
    /// may see in full, the others by id only.
    pub async fn hierarchy_for_server(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        suggested_only: bool,
    ) -> Result<get_hierarchy::v1::Response> {
        let not_found = || Error::not_found("Unknown room or not accessible");
        let mut cache = HashMap::new();
        let room = match self.local(room_id, suggested_only).await? {
            Some(room) if self.server_may_see(origin, room_id, &room.summary).await? => room,
            _ => return Err(not_found()),
        };
        let children_state = room.children.iter().map(|(_, raw)| raw.clone()).collect();
        let mut response = get_hierarchy::v1::Response::new(
            ruma::api::federation::space::SpaceHierarchyParentSummary::new(
                room.summary,
                children_state,
            ),
        );
        for (child, _) in &room.children {
            let child_id = &child.state_key;
            match self.known(child_id, &[], false, suggested_only, &mut cache).await? {
                Some(known) if self.server_may_see(origin, child_id, &known.summary).await? => {
                    response.children.push(known.summary);
                }
                Some(_) => response.inaccessible_children.push(child_id.clone()),
                None => {}
            }
        }
        Ok(response)
    }

    /// A room as this server knows it (when in it) or another server tells it: from `cache`
    /// (children another server described) when its children are not needed, else asked of
    /// the servers `via`.
    async fn known(
        &self,
        room_id: &RoomId,
        via: &[OwnedServerName],
        with_children: bool,
        suggested_only: bool,
        cache: &mut HashMap<OwnedRoomId, RoomSummary>,
    ) -> Result<Option<Known>> {
        if let Some(room) = self.local(room_id, suggested_only).await? {
            return Ok(Some(room));
        }
        if let Some(summary) = cache.get(room_id) {
            let space = summary.room_type == Some(RoomType::Space);
            if !(with_children && space) {
                return Ok(Some(Known { summary: summary.clone(), children: Vec::new() }));
            }
        }
        let Some(outbound) = self.rooms.outbound.connected() else { return Ok(None) };
        let own = &self.rooms.config.server_name;
        for server in via.iter().filter(|server| *server != own) {
            let answer = match outbound.space_hierarchy(server, room_id, suggested_only).await {
                Ok(answer) => answer,
                Err(error) => {
                    tracing::info!(%server, %room_id, %error, "no hierarchy from this server");
                    continue;
                }
            };
            for child in answer.children {
                cache.insert(child.room_id.clone(), child);
            }
            let children = answer
                .room
                .children_state
                .into_iter()
                .filter_map(|raw| Some((raw.deserialize().ok()?, raw)))
                .filter(|(child, _)| wanted_child(child, suggested_only))
                .collect();
            return Ok(Some(Known { summary: answer.room.summary, children }));
        }
        Ok(None)
    }

    /// A room this server is in, with its children in the spec's order.
    async fn local(&self, room_id: &RoomId, suggested_only: bool) -> Result<Option<Known>> {
        let own = &self.rooms.config.server_name;
        if self.rooms.room_version(room_id).await?.is_none()
            || !self.rooms.server_in_room(room_id, own).await?
        {
            return Ok(None);
        }
        let Some(summary) = self.summary_of(room_id).await? else { return Ok(None) };
        let state = self.rooms.current_state(room_id).await?.unwrap_or_default();
        let mut children = Vec::new();
        for ((kind, _), id) in state.iter().filter(|((kind, _), _)| kind == "m.space.child") {
            let Some(row) = self.rooms.store.event(id).await? else { continue };
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&row.json) else { continue };
            let shown = json!({
                "type": kind,
                "state_key": event["state_key"],
                "sender": event["sender"],
                "content": event["content"],
                "origin_server_ts": event["origin_server_ts"],
            });
            let Ok(raw) = Raw::new(&shown).map(Raw::cast_unchecked) else { continue };
            if let Ok(child) = raw.deserialize()
                && wanted_child(&child, suggested_only)
            {
                children.push((child, raw));
            }
        }
        children.sort_by(|(a, _), (b, _)| a.cmp(b));
        Ok(Some(Known { summary, children }))
    }

    /// Whether `user` may see a room in a tree: anyone may see an open room; members and
    /// invitees theirs; a restricted room's, members of a room it lets in.
    async fn user_may_see(&self, user: &UserId, summary: &RoomSummary) -> Result<bool> {
        if open(summary) {
            return Ok(true);
        }
        let store = &self.rooms.store;
        let membership = store.membership(&summary.room_id, user).await?;
        if membership.is_some_and(|m| matches!(m.membership.as_str(), "join" | "invite")) {
            return Ok(true);
        }
        for allowed in allowed_rooms(summary) {
            if store.membership(allowed, user).await?.is_some_and(|m| m.membership == "join") {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether another server may see a room in full: an open room, or one it (or, for a
    /// restricted room, a room the rule lets in) has a member in.
    async fn server_may_see(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        summary: &RoomSummary,
    ) -> Result<bool> {
        if open(summary) || self.rooms.store.server_joined(room_id, server).await? {
            return Ok(true);
        }
        for allowed in allowed_rooms(summary) {
            if self.rooms.store.server_joined(allowed, server).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Whether a child event names a child (a `via` list) the query wants.
fn wanted_child(child: &HierarchySpaceChildEvent, suggested_only: bool) -> bool {
    !child.content.via.is_empty() && (!suggested_only || child.content.suggested)
}

#[cfg(test)]
mod tests {
    use palisade_core::ErrorKind;

    use super::*;

    #[test]
    fn tokens_belong_to_their_query() {
        let query = HierarchyQuery { max_depth: Some(2), ..HierarchyQuery::default() };
        let from = token(50, &query);
        assert_eq!(
            served_before(&HierarchyQuery { from: Some(from.clone()), ..query.clone() }).unwrap(),
            50
        );
        let other = HierarchyQuery { from: Some(from), suggested_only: true, ..query };
        assert_eq!(served_before(&other).unwrap_err().kind, ErrorKind::InvalidParam);
    }
}
