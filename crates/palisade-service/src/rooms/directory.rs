//! Room aliases and the public room directory.

use std::sync::Arc;

use palisade_core::{Error, ErrorKind, Result};
use ruma::{
    CanonicalJsonObject, OwnedRoomAliasId, OwnedRoomId, OwnedServerName, RoomAliasId, RoomId,
    RoomOrAliasId, UInt, UserId,
    api::client::room::get_summary,
    directory::{PublicRoomsChunk, PublicRoomsChunkInit},
    events::room::{join_rules::RoomJoinRulesEventContent, member::MembershipState},
    room::{JoinRuleKind, JoinRuleSummary, RoomSummary, RoomType},
};
use serde_json::Value;

use super::{EventTemplate, RoomService};
use crate::trust::{Actor, Need};

/// One room of the public directory.
#[derive(Debug, Clone)]
pub struct PublicRoom {
    /// The room's entry in the `/publicRooms` format.
    pub chunk: PublicRoomsChunk,
    /// Text searched by `generic_search_term`.
    pub search_text: String,
}

/// Room aliases and the public room directory.
pub struct DirectoryService {
    /// Also read by the space trees (`spaces.rs`).
    pub(super) rooms: Arc<RoomService>,
}

impl DirectoryService {
    /// The service over the rooms.
    pub fn new(rooms: Arc<RoomService>) -> Self {
        Self { rooms }
    }

    fn ensure_local_alias(&self, alias: &RoomAliasId) -> Result<()> {
        if alias.server_name() != self.rooms.config.server_name {
            return Err(Error::invalid_param("Alias must be on this server"));
        }
        Ok(())
    }

    /// Whether `user` could send `template` in the room now (a dry run of the pipeline).
    pub async fn is_allowed(
        &self,
        user: &UserId,
        room_id: &RoomId,
        template: EventTemplate,
    ) -> Result<bool> {
        match self.rooms.probe(room_id, user, template).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind == ErrorKind::Forbidden => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Maps a local alias to a room the user is in.
    pub async fn create_alias(
        &self,
        actor: Actor<'_>,
        alias: &RoomAliasId,
        room_id: &RoomId,
    ) -> Result<()> {
        self.rooms.trust.require(actor, Need::RoomAccess, "create_alias").await?;
        let user = actor.user();
        self.ensure_local_alias(alias)?;
        if self.rooms.bound_of(user, room_id).await.ok() != Some(None) {
            return Err(Error::forbidden("You are not in this room"));
        }
        if !self.rooms.store.create_alias(alias, room_id, user).await? {
            return Err(Error::new(ErrorKind::Conflict, "Room alias already exists"));
        }
        Ok(())
    }

    /// Where an alias points and servers to join the room through: this server's own
    /// aliases, or, for a signed-in `asker` (anonymous callers do not get this server to
    /// query others), the alias's server asked.
    pub async fn resolve_alias(
        &self,
        alias: &RoomAliasId,
        asker: Option<Actor<'_>>,
    ) -> Result<(OwnedRoomId, Vec<OwnedServerName>)> {
        let own = &self.rooms.config.server_name;
        if alias.server_name() == own {
            return Ok((self.alias(alias).await?, vec![own.clone()]));
        }
        if asker.is_none() {
            return Err(Error::new(
                ErrorKind::MissingToken,
                "Sign in to look up other servers' aliases",
            ));
        }
        self.rooms.outbound.get()?.resolve_alias(alias).await
    }

    /// A page of another server's public room directory.
    pub async fn remote_public_rooms(
        &self,
        server: &ruma::ServerName,
        since: Option<&str>,
        limit: Option<ruma::UInt>,
        search: Option<&str>,
    ) -> Result<ruma::api::federation::directory::get_public_rooms_filtered::v1::Response> {
        self.rooms.outbound.get()?.public_rooms(server, since, limit, search).await
    }

    /// The room one of this server's aliases points to.
    pub async fn alias(&self, alias: &RoomAliasId) -> Result<OwnedRoomId> {
        self.rooms
            .store
            .alias(alias)
            .await?
            .map(|(room, _)| room)
            .ok_or_else(|| Error::not_found("Room alias not found"))
    }

    /// Removes an alias: its creator, a server admin, or a room member allowed to change the
    /// canonical alias may.
    pub async fn delete_alias(&self, actor: Actor<'_>, alias: &RoomAliasId) -> Result<()> {
        self.rooms.trust.require(actor, Need::RoomAccess, "delete_alias").await?;
        let user = actor.user();
        let (room_id, creator) = self
            .rooms
            .store
            .alias(alias)
            .await?
            .ok_or_else(|| Error::not_found("Room alias not found"))?;
        let admin = self.rooms.accounts.user(user).await?.is_some_and(|u| u.admin);
        let allowed = creator == user
            || admin
            || (self.rooms.bound_of(user, &room_id).await.ok() == Some(None)
                && self
                    .is_allowed(
                        user,
                        &room_id,
                        EventTemplate::state(
                            "m.room.canonical_alias",
                            "",
                            CanonicalJsonObject::new(),
                        ),
                    )
                    .await?);
        if !allowed {
            return Err(Error::forbidden("You may not remove this alias"));
        }
        self.rooms.store.delete_alias(alias).await?;
        Ok(())
    }

    /// The local aliases of a room the user may read.
    pub async fn aliases(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
    ) -> Result<Vec<OwnedRoomAliasId>> {
        self.rooms.read_bound(actor, room_id).await?;
        self.rooms.store.aliases_of_room(room_id).await
    }

    /// Whether a room is listed in the directory; `M_NOT_FOUND` for unknown rooms.
    pub async fn is_public(&self, room_id: &RoomId) -> Result<bool> {
        if self.rooms.current_state(room_id).await?.is_none() {
            return Err(Error::not_found("Unknown room"));
        }
        self.rooms.store.is_public(room_id).await
    }

    /// Lists or unlists a room; needs the power to change the canonical alias (and, as
    /// changing who finds the room, an approved device).
    pub async fn set_public(&self, actor: Actor<'_>, room_id: &RoomId, public: bool) -> Result<()> {
        self.rooms.trust.require(actor, Need::Approval, "set_room_visibility").await?;
        let user = actor.user();
        if self.rooms.current_state(room_id).await?.is_none() {
            return Err(Error::not_found("Unknown room"));
        }
        let allowed = self.rooms.bound_of(user, room_id).await.ok() == Some(None)
            && self
                .is_allowed(
                    user,
                    room_id,
                    EventTemplate::state("m.room.canonical_alias", "", CanonicalJsonObject::new()),
                )
                .await?;
        if !allowed {
            return Err(Error::forbidden("You may not change this room's visibility"));
        }
        self.rooms.store.set_public(room_id, public).await
    }

    /// A room as the directory and previews describe it, from its current state; `None` for
    /// a room this server does not have.
    async fn described(&self, room_id: OwnedRoomId) -> Result<Option<PublicRoom>> {
        let Some(state) = self.rooms.current_state(&room_id).await? else { return Ok(None) };
        let content = |kind: &str| {
            let id = state.get(&(kind.to_owned(), String::new())).cloned();
            async move {
                match id {
                    Some(id) => self.rooms.event_content(&id).await.map(Some),
                    None => Ok(None),
                }
            }
        };
        // A field of the wrong type reads as absent, as clients treat it.
        let field = |content: Option<Value>, key: &str| {
            content.and_then(|c| c.get(key).and_then(Value::as_str).map(str::to_owned))
        };
        let name = field(content("m.room.name").await?, "name");
        let topic = field(content("m.room.topic").await?, "topic");
        let alias = field(content("m.room.canonical_alias").await?, "alias");
        let avatar = field(content("m.room.avatar").await?, "url");
        let join_rule = field(content("m.room.join_rules").await?, "join_rule");
        let history = field(content("m.room.history_visibility").await?, "history_visibility");
        let guest = field(content("m.room.guest_access").await?, "guest_access");
        let room_type = field(content("m.room.create").await?, "type");
        let joined = self
            .rooms
            .store
            .members(&room_id)
            .await?
            .iter()
            .filter(|m| m.membership == "join")
            .count();
        let search_text = [&name, &topic, &alias]
            .into_iter()
            .flatten()
            .map(|text| text.to_lowercase())
            .collect::<Vec<_>>()
            .join(" ");
        let mut chunk = PublicRoomsChunk::from(PublicRoomsChunkInit {
            num_joined_members: UInt::new_saturating(joined as u64),
            room_id,
            world_readable: history.as_deref() == Some("world_readable"),
            guest_can_join: guest.as_deref() == Some("can_join"),
        });
        chunk.join_rule = JoinRuleKind::from(join_rule.as_deref().unwrap_or("invite"));
        chunk.name = name;
        chunk.topic = topic;
        chunk.canonical_alias = alias.and_then(|alias| alias.try_into().ok());
        chunk.avatar_url = avatar.map(Into::into);
        chunk.room_type = room_type.map(|kind| RoomType::from(kind.as_str()));
        Ok(Some(PublicRoom { chunk, search_text }))
    }

    /// A room's summary from its current state, as previews and space trees show it (the
    /// rooms a restricted join rule lets in, the version and encryption included); `None` for
    /// a room this server does not have.
    pub(crate) async fn summary_of(&self, room_id: &RoomId) -> Result<Option<RoomSummary>> {
        let Some(PublicRoom { chunk, .. }) = self.described(room_id.to_owned()).await? else {
            return Ok(None);
        };
        let rules = match self.rooms.current_state_id(room_id, "m.room.join_rules", "").await? {
            Some(id) => serde_json::from_value::<RoomJoinRulesEventContent>(
                self.rooms.event_content(&id).await?,
            )
            .ok(),
            None => None,
        };
        let join_rule = match rules {
            Some(rules) => JoinRuleSummary::from(rules.join_rule),
            None => JoinRuleSummary::from(chunk.join_rule.clone()),
        };
        let mut summary = RoomSummary::new(
            room_id.to_owned(),
            join_rule,
            chunk.guest_can_join,
            chunk.num_joined_members,
            chunk.world_readable,
        );
        summary.canonical_alias = chunk.canonical_alias;
        summary.name = chunk.name;
        summary.topic = chunk.topic;
        summary.avatar_url = chunk.avatar_url;
        summary.room_type = chunk.room_type;
        summary.room_version = self.rooms.room_version(room_id).await?;
        summary.encryption = self
            .rooms
            .current_state_text(room_id, "m.room.encryption", "algorithm")
            .await?
            .map(|algorithm| algorithm.as_str().into());
        Ok(Some(summary))
    }

    /// A room's summary for previews (`/room_summary`, MSC3266): for anyone when the room is
    /// public, knockable or world-readable, else only for its members and invitees (anything
    /// else is not found, as Synapse answers, so a private room's existence is not told).
    pub async fn room_summary(
        &self,
        viewer: Option<&UserId>,
        room: &RoomOrAliasId,
    ) -> Result<get_summary::v1::Response> {
        let not_found = || Error::not_found("Room not found or is not accessible");
        let room_id = match <&RoomId>::try_from(room) {
            Ok(room_id) => room_id.to_owned(),
            Err(alias) => self.resolve_alias(alias, None).await.map_err(|_| not_found())?.0,
        };
        let Some(summary) = self.summary_of(&room_id).await? else { return Err(not_found()) };
        let membership = match viewer {
            Some(user) => self.rooms.store.membership(&room_id, user).await?,
            None => None,
        }
        .map(|m| m.membership);
        let open = matches!(
            summary.join_rule.kind(),
            JoinRuleKind::Public | JoinRuleKind::Knock | JoinRuleKind::KnockRestricted
        );
        let member =
            membership.as_deref().is_some_and(|m| matches!(m, "join" | "invite" | "knock"));
        if !open && !summary.world_readable && !member {
            return Err(not_found());
        }
        let mut response = get_summary::v1::Response::new(summary);
        response.membership = membership.map(|m| MembershipState::from(m.as_str()));
        Ok(response)
    }

    /// The rooms of the public directory, with their summaries.
    pub async fn public_rooms(&self) -> Result<Vec<PublicRoom>> {
        let mut rooms = Vec::new();
        for room_id in self.rooms.store.public_rooms().await? {
            rooms.extend(self.described(room_id).await?);
        }
        rooms.sort_by_key(|r| std::cmp::Reverse(r.chunk.num_joined_members));
        Ok(rooms)
    }
}
