//! Message search (`/search`): the full-text index of the rooms a user is joined to, each
//! result subject to history visibility, with context, profiles and groups as Synapse serves
//! them. Encrypted rooms are searched by clients: the server never sees their text.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#server-side-search>

use std::collections::{BTreeMap, HashMap};

use palisade_core::{Error, Result};
pub use palisade_storage::SearchKey;
use palisade_storage::{SearchHit, SearchOrder, SearchQuery, SearchTerms};
use ruma::{
    OwnedEventId, OwnedMxcUri, OwnedRoomId, OwnedUserId, RoomId, api::Direction,
    events::AnyStateEvent, events::AnyTimelineEvent, serde::Raw,
};
use serde::Serialize;

use super::{
    RoomService,
    read::{EventFilter, Member, Visibility, Walk, viewer_of},
};
use crate::trust::{Actor, Need};

/// Results per page unless the filter says otherwise (Synapse's default).
const DEFAULT_LIMIT: usize = 10;
/// Most results per page.
const MAX_LIMIT: usize = 100;
/// Rounds of reading the index for one page; hits the user may not see are skipped, and a
/// page stops short (with a token to go on) rather than read the whole index.
const MAX_ROUNDS: usize = 10;

/// What `/search` asks of the room events category.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// What the user typed.
    pub term: String,
    /// The fields to look in; all three when empty.
    pub keys: Vec<SearchKey>,
    /// Types and senders to keep.
    pub filter: EventFilter,
    /// Only these rooms (of those the user is joined to).
    pub rooms: Option<Vec<OwnedRoomId>>,
    /// Not these rooms.
    pub not_rooms: Vec<OwnedRoomId>,
    /// Most results; the default when `None`.
    pub limit: Option<usize>,
    /// Newest first instead of best first.
    pub recent: bool,
    /// Events around each result, when asked for.
    pub context: Option<ContextRequest>,
    /// The current state of the rooms with results.
    pub include_state: bool,
    /// Group the results by room.
    pub group_by_room: bool,
    /// Group the results by sender.
    pub group_by_sender: bool,
    /// Where the previous page stopped.
    pub next_batch: Option<String>,
}

/// The events asked for around each result.
#[derive(Debug, Clone, Copy)]
pub struct ContextRequest {
    /// Events before.
    pub before: usize,
    /// Events after.
    pub after: usize,
    /// The senders' display names and avatars.
    pub include_profile: bool,
}

/// The answer to `/search`.
#[derive(Debug, Serialize)]
pub struct SearchResults {
    /// Results by category (only room events exist).
    pub search_categories: SearchCategories,
}

/// Results by category.
#[derive(Debug, Serialize)]
pub struct SearchCategories {
    /// Room events.
    pub room_events: RoomEventResults,
}

/// Room events found. `results`, `count` and `highlights` are always sent: clients read them
/// unconditionally (Synapse always sends them).
#[derive(Debug, Serialize)]
pub struct RoomEventResults {
    /// How many events match, all pages together (before history visibility is applied).
    pub count: u64,
    /// Words for clients to highlight.
    pub highlights: Vec<String>,
    /// This page.
    pub results: Vec<SearchResult>,
    /// Where the next page starts, when there may be more.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_batch: Option<String>,
    /// The current state of the rooms with results, when asked for.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub state: BTreeMap<OwnedRoomId, Vec<Raw<AnyStateEvent>>>,
    /// The results' ids grouped by `room_id` or `sender`, when asked for.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<&'static str, BTreeMap<String, ResultGroup>>,
}

/// One result.
#[derive(Debug, Serialize)]
pub struct SearchResult {
    /// How well it matches (higher is better).
    pub rank: f64,
    /// The event.
    pub result: Raw<AnyTimelineEvent>,
    /// Events around it, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<ResultContext>,
}

/// The events around a result.
#[derive(Debug, Serialize)]
pub struct ResultContext {
    /// Token of the start of the context, for `/messages`.
    pub start: String,
    /// Token of the end of the context.
    pub end: String,
    /// Events before, newest first.
    pub events_before: Vec<Raw<AnyTimelineEvent>>,
    /// Events after, oldest first.
    pub events_after: Vec<Raw<AnyTimelineEvent>>,
    /// The senders' profiles as the room knew them, when asked for.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub profile_info: BTreeMap<OwnedUserId, SenderProfile>,
}

/// A sender's display name and avatar in a room.
#[derive(Debug, Serialize)]
pub struct SenderProfile {
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub displayname: Option<String>,
    /// Avatar.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<OwnedMxcUri>,
}

/// The results of one room or sender.
#[derive(Debug, Serialize)]
pub struct ResultGroup {
    /// The results' event ids, in the page's order.
    pub results: Vec<OwnedEventId>,
    /// Where the group's first result stands in the page (from 1).
    pub order: usize,
}

/// Formats where a page stopped as a `next_batch` token.
fn token_of(order: SearchOrder) -> String {
    match order {
        SearchOrder::Rank { offset } => format!("r{offset}"),
        SearchOrder::Recent { before: Some((ts, pos)) } => format!("t{ts}_{pos}"),
        SearchOrder::Recent { before: None } => "t".to_owned(),
    }
}

/// Reads a `next_batch` token for a search in the given order.
fn parse_token(token: Option<&str>, recent: bool) -> Result<SearchOrder> {
    let invalid = || Error::invalid_param("Invalid next_batch token");
    match (token, recent) {
        (None, false) => Ok(SearchOrder::Rank { offset: 0 }),
        (None, true) => Ok(SearchOrder::Recent { before: None }),
        (Some(token), false) => {
            let offset =
                token.strip_prefix('r').and_then(|n| n.parse().ok()).ok_or_else(invalid)?;
            Ok(SearchOrder::Rank { offset })
        }
        (Some(token), true) => {
            let (ts, pos) = token
                .strip_prefix('t')
                .and_then(|rest| rest.split_once('_'))
                .and_then(|(ts, pos)| Some((ts.parse().ok()?, pos.parse().ok()?)))
                .ok_or_else(invalid)?;
            Ok(SearchOrder::Recent { before: Some((ts, pos)) })
        }
    }
}

/// Where the index stands once `hit` is served.
fn after(order: SearchOrder, hit: &SearchHit) -> SearchOrder {
    match order {
        SearchOrder::Rank { offset } => SearchOrder::Rank { offset: offset + 1 },
        SearchOrder::Recent { .. } => {
            SearchOrder::Recent { before: Some((hit.origin_server_ts, hit.row.stream_pos)) }
        }
    }
}

/// A reader's view of one room: how far they may read and what history they may see.
struct RoomView {
    bound: Option<u64>,
    visibility: Visibility,
}

impl RoomService {
    /// Searches the rooms `actor` is joined to (`POST /search`, category `room_events`).
    pub async fn search(&self, actor: Actor<'_>, request: SearchRequest) -> Result<SearchResults> {
        self.trust.require(actor, Need::RoomAccess, "search").await?;
        let user = actor.user();
        let mut rooms = self.joined_rooms_of(user).await?;
        if let Some(only) = &request.rooms {
            rooms.retain(|room| only.contains(room));
        }
        rooms.retain(|room| !request.not_rooms.contains(room));
        let terms = SearchTerms::parse(&request.term);
        let keys =
            if request.keys.is_empty() { SearchKey::ALL.to_vec() } else { request.keys.clone() };
        let limit = request.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
        let mut query = SearchQuery {
            terms,
            rooms,
            keys,
            order: parse_token(request.next_batch.as_deref(), request.recent)?,
            limit: (limit * 2).max(DEFAULT_LIMIT),
        };
        let count = self.store.search_count(&query).await?;
        let (hits, next) = self.visible_hits(user, &mut query, &request.filter, limit).await?;

        let mut results = Vec::with_capacity(hits.len());
        for hit in &hits {
            let room_id = &hit.row.room_id;
            let result = self
                .format_events(room_id, std::slice::from_ref(&hit.row), viewer_of(actor))
                .await?
                .remove(0);
            let context = match request.context {
                Some(asked) => Some(self.result_context(actor, hit, asked).await?),
                None => None,
            };
            results.push(SearchResult { rank: hit.rank, result, context });
        }
        let mut state = BTreeMap::new();
        if request.include_state {
            for hit in &hits {
                if !state.contains_key(&hit.row.room_id) {
                    let events = self.state(actor, &hit.row.room_id).await?;
                    state.insert(hit.row.room_id.clone(), events);
                }
            }
        }
        let mut groups = BTreeMap::new();
        if request.group_by_room {
            groups.insert("room_id", group(&hits, |hit| hit.row.room_id.to_string()));
        }
        if request.group_by_sender {
            groups.insert("sender", group(&hits, |hit| hit.row.sender.to_string()));
        }
        let room_events = RoomEventResults {
            count,
            highlights: query.terms.highlights(),
            results,
            next_batch: next.map(token_of),
            state,
            groups,
        };
        Ok(SearchResults { search_categories: SearchCategories { room_events } })
    }

    /// Up to `limit` hits the user may see and the filter keeps, reading the index page by
    /// page from the query's position; with where to continue when there may be more.
    async fn visible_hits(
        &self,
        user: &ruma::UserId,
        query: &mut SearchQuery,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<(Vec<SearchHit>, Option<SearchOrder>)> {
        let mut views: HashMap<OwnedRoomId, RoomView> = HashMap::new();
        let mut found = Vec::new();
        for _ in 0..MAX_ROUNDS {
            let hits = self.store.search(query).await?;
            let exhausted = hits.len() < query.limit;
            for hit in hits {
                query.order = after(query.order, &hit);
                if filter.matches(&hit.row) && self.may_see(user, &mut views, &hit).await? {
                    found.push(hit);
                    if found.len() == limit {
                        return Ok((found, Some(query.order)));
                    }
                }
            }
            if exhausted {
                return Ok((found, None));
            }
        }
        Ok((found, Some(query.order)))
    }

    /// Whether the user may see a hit: within what they may read of its room, by history
    /// visibility.
    async fn may_see(
        &self,
        user: &ruma::UserId,
        views: &mut HashMap<OwnedRoomId, RoomView>,
        hit: &SearchHit,
    ) -> Result<bool> {
        let room_id: &RoomId = &hit.row.room_id;
        if !views.contains_key(room_id) {
            let bound = match self.bound_of(user, room_id).await {
                Ok(bound) => bound,
                Err(e) if e.kind == palisade_core::ErrorKind::Forbidden => return Ok(false),
                Err(e) => return Err(e),
            };
            let visibility = self.visibility(user, room_id).await?;
            views.insert(room_id.to_owned(), RoomView { bound, visibility });
        }
        let view = views.get_mut(room_id).expect("inserted above");
        if view.bound.is_some_and(|bound| hit.row.stream_pos > bound) {
            return Ok(false);
        }
        self.can_see(&mut view.visibility, &hit.row).await
    }

    /// The events around a result, and their senders' profiles when asked for (as the room
    /// knew them after the last of the events, as Synapse reads them).
    async fn result_context(
        &self,
        actor: Actor<'_>,
        hit: &SearchHit,
        asked: ContextRequest,
    ) -> Result<ResultContext> {
        let (user, room_id, pos) = (actor.user(), &hit.row.room_id, hit.row.stream_pos);
        let filter = EventFilter::default();
        let around = |from, direction, limit| {
            self.page(user, room_id, Walk { from: Some(from), to: None, direction, limit }, &filter)
        };
        let before = around(pos - 1, Direction::Backward, asked.before).await?;
        let after = around(pos, Direction::Forward, asked.after).await?;
        let mut profile_info = BTreeMap::new();
        if asked.include_profile {
            let last = after.rows.last().unwrap_or(&hit.row);
            let senders = before.rows.iter().chain(&after.rows).map(|r| &r.sender);
            for sender in std::iter::once(&hit.row.sender).chain(senders) {
                if profile_info.contains_key(sender) {
                    continue;
                }
                let Some(id) = self
                    .store
                    .state_entry(last.state_group, "m.room.member", sender.as_str())
                    .await?
                else {
                    continue;
                };
                let Some(member) = self.store.event(&id).await?.as_ref().and_then(Member::of)
                else {
                    continue;
                };
                let profile = SenderProfile {
                    displayname: member.content.displayname,
                    avatar_url: member.content.avatar_url,
                };
                profile_info.insert(sender.clone(), profile);
            }
        }
        let before = self.messages_of(actor, room_id, before, Vec::new()).await?;
        let after = self.messages_of(actor, room_id, after, Vec::new()).await?;
        Ok(ResultContext {
            start: before.end.unwrap_or(before.start),
            end: after.end.unwrap_or(after.start),
            events_before: before.chunk,
            events_after: after.chunk,
            profile_info,
        })
    }
}

/// The hits' ids grouped by `key`, each group placed by its first hit.
fn group(hits: &[SearchHit], key: impl Fn(&SearchHit) -> String) -> BTreeMap<String, ResultGroup> {
    let mut groups: BTreeMap<String, ResultGroup> = BTreeMap::new();
    for (index, hit) in hits.iter().enumerate() {
        groups
            .entry(key(hit))
            .or_insert_with(|| ResultGroup { results: Vec::new(), order: index + 1 })
            .results
            .push(hit.row.event_id.clone());
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_the_other_order() {
        for (order, recent) in [
            (SearchOrder::Rank { offset: 20 }, false),
            (SearchOrder::Recent { before: Some((1_700_000_000_000, 42)) }, true),
        ] {
            assert_eq!(parse_token(Some(&token_of(order)), recent).unwrap(), order);
            assert!(parse_token(Some(&token_of(order)), !recent).is_err());
        }
        assert!(parse_token(Some("t12"), true).is_err());
        assert!(parse_token(Some("rx"), false).is_err());
    }
}
