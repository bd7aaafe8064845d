//! Relations: the events that relate to another (`m.relates_to` with a `rel_type`: edits,
//! reactions, threads, references), as `/relations` lists them.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#forming-relationships-between-events>

use std::collections::{BTreeMap, HashSet};

use palisade_core::{Error, ErrorKind, Result};
use palisade_storage::EventRow;
use ruma::{EventId, OwnedEventId, RoomId, api::Direction, events::AnyTimelineEvent, serde::Raw};

use super::{
    RoomService,
    read::{parse_stream_token, stream_token, viewer_of},
};
use crate::trust::{Actor, Need};

/// How deep `recurse` follows relations of relations (as Synapse does).
const MAX_RECURSION: u64 = 3;
/// Most relations read per event while recursing.
const MAX_RECURSED: usize = 1000;

/// What `/relations` asks for.
#[derive(Debug, Clone)]
pub struct RelationsQuery {
    /// Only relations of this type.
    pub rel_type: Option<String>,
    /// Only events of this type.
    pub event_type: Option<String>,
    /// Where to start (a token of an earlier page).
    pub from: Option<String>,
    /// Where to stop.
    pub to: Option<String>,
    /// Newest first (backward, the default) or oldest first.
    pub direction: Direction,
    /// Most events.
    pub limit: usize,
    /// Relations of the relations too.
    pub recurse: bool,
}

/// A page of relations.
#[derive(Debug)]
pub struct Relations {
    /// The events, in the direction walked.
    pub chunk: Vec<Raw<AnyTimelineEvent>>,
    /// Where the next page starts, when there is more.
    pub next_batch: Option<String>,
    /// Where this page started.
    pub prev_batch: Option<String>,
    /// How deep the recursion went, when asked to recurse.
    pub recursion_depth: Option<u64>,
}

/// A page of a room's threads.
#[derive(Debug)]
pub struct Threads {
    /// The threads' root events, latest activity first, each with its summary bundled
    /// (`unsigned.m.relations.m.thread`).
    pub chunk: Vec<Raw<AnyTimelineEvent>>,
    /// Where the next page starts, when there is more.
    pub next_batch: Option<String>,
}

impl RoomService {
    /// A room's threads, latest activity first (`/threads`); with `participated`, only
    /// those the user started or replied to.
    pub async fn threads(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        from: Option<&str>,
        participated: bool,
        limit: usize,
    ) -> Result<Threads> {
        self.trust.require(actor, Need::RoomAccess, "threads").await?;
        let user = actor.user();
        let up_to = self.bound_of(user, room_id).await?.unwrap_or(self.position());
        let before = from.map(parse_stream_token).transpose()?.unwrap_or(u64::MAX);
        let limit = limit.clamp(1, 100);
        let participant = participated.then_some(user);
        let mut roots =
            self.store.thread_roots(room_id, before, up_to, participant, limit + 1).await?;
        let more = roots.len() > limit;
        roots.truncate(limit);
        let next_batch = more.then(|| roots.last().map(|(_, pos)| stream_token(*pos))).flatten();
        // Each root comes with its thread's summary bundled, as every served event does.
        let mut viewer = self.visibility(user, room_id).await?;
        let mut rows = Vec::with_capacity(roots.len());
        for (root, _) in roots {
            if let Some(row) = self.store.event(&root).await?
                && row.room_id == room_id
                && self.can_see(&mut viewer, &row).await?
            {
                rows.push(row);
            }
        }
        let chunk = self.format_events(room_id, &rows, viewer_of(actor)).await?;
        Ok(Threads { chunk, next_batch })
    }

    /// The events relating to `event_id`, which `actor` must be able to see; of those, the
    /// ones `actor` may see.
    pub async fn relations(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        event_id: &EventId,
        query: RelationsQuery,
    ) -> Result<Relations> {
        self.trust.require(actor, Need::RoomAccess, "relations").await?;
        let user = actor.user();
        // Not in the room: forbidden; an event of it the user may not see: not found.
        let ceiling = self.bound_of(user, room_id).await?.unwrap_or(self.position());
        self.visible_event(user, room_id, event_id).await.map_err(|e| match e.kind {
            ErrorKind::Forbidden => Error::not_found("Event not found"),
            _ => e,
        })?;
        let from = query.from.as_deref().map(parse_stream_token).transpose()?;
        let to = query.to.as_deref().map(parse_stream_token).transpose()?;
        // Positions strictly between the bounds.
        let bounds = match query.direction {
            Direction::Backward => (to.unwrap_or(0), from.unwrap_or(ceiling + 1).min(ceiling + 1)),
            Direction::Forward => (from.unwrap_or(0), to.unwrap_or(ceiling + 1).min(ceiling + 1)),
        };
        let limit = query.limit.clamp(1, 1000);
        let (rel_type, event_type) = (query.rel_type.as_deref(), query.event_type.as_deref());
        let mut depth = None;
        let mut rows: Vec<EventRow> = if query.recurse {
            let (found, reached) = self.recursive_relations(room_id, event_id, bounds).await?;
            depth = Some(reached);
            let mut rows: Vec<EventRow> = found
                .into_iter()
                .filter(|(row, rel)| {
                    event_type.is_none_or(|t| row.kind == t) && rel_type.is_none_or(|r| rel == r)
                })
                .map(|(row, _)| row)
                .collect();
            if query.direction == Direction::Backward {
                rows.reverse();
            }
            rows
        } else {
            let page = (bounds, query.direction, limit + 1);
            self.store
                .relations(room_id, event_id, rel_type, event_type, page.0, page.1, page.2)
                .await?
        };
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_batch =
            more.then(|| rows.last().map(|row| stream_token(row.stream_pos))).flatten();
        let mut viewer = self.visibility(user, room_id).await?;
        let mut visible = Vec::with_capacity(rows.len());
        for row in rows {
            if self.can_see(&mut viewer, &row).await? {
                visible.push(row);
            }
        }
        Ok(Relations {
            chunk: self.format_events(room_id, &visible, viewer_of(actor)).await?,
            next_batch,
            prev_batch: query.from,
            recursion_depth: depth,
        })
    }

    /// Every relation of `event_id` and of its relations, up to [`MAX_RECURSION`] deep,
    /// oldest first, each with its relation type; and how deep it went.
    async fn recursive_relations(
        &self,
        room_id: &RoomId,
        event_id: &EventId,
        bounds: (u64, u64),
    ) -> Result<(Vec<(EventRow, String)>, u64)> {
        let mut found: BTreeMap<u64, (EventRow, String)> = BTreeMap::new();
        let mut seen: HashSet<OwnedEventId> = HashSet::from([event_id.to_owned()]);
        let mut targets = vec![event_id.to_owned()];
        let mut depth = 0;
        while !targets.is_empty() && depth < MAX_RECURSION {
            let mut next = Vec::new();
            for target in &targets {
                let rows = self
                    .store
                    .relations(
                        room_id,
                        target,
                        None,
                        None,
                        (0, u64::MAX),
                        Direction::Forward,
                        MAX_RECURSED,
                    )
                    .await?;
                for row in rows {
                    if !seen.insert(row.event_id.clone()) {
                        continue;
                    }
                    next.push(row.event_id.clone());
                    if row.stream_pos > bounds.0 && row.stream_pos < bounds.1 {
                        let rel = relation_type(&row);
                        found.insert(row.stream_pos, (row, rel));
                    }
                }
            }
            if !next.is_empty() {
                depth += 1;
            }
            targets = next;
        }
        Ok((found.into_values().collect(), depth))
    }
}

/// The `rel_type` of a stored relation.
fn relation_type(row: &EventRow) -> String {
    let event: serde_json::Value = serde_json::from_str(&row.json).unwrap_or_default();
    event["content"]["m.relates_to"]["rel_type"].as_str().unwrap_or_default().to_owned()
}
