//! Membership changes: join, invite, leave, kick, ban, unban, forget.
//!
//! Each builds an `m.room.member` event; whether it is allowed is decided by the room
//! version's authorization rules in the pipeline, not here. The few checks here are the ones
//! Synapse makes before the rules, so clients get the same answers. Joins, leaves and invites
//! that involve another server go through the outbound port; deciding when is done here.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use palisade_core::{Error, ErrorKind, Result};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, OwnedRoomId, OwnedServerName, OwnedUserId, RoomId,
    RoomOrAliasId, ServerName, UserId,
    events::room::join_rules::RoomJoinRulesEventContent,
    room::{AllowRule, JoinRule},
};
use serde_json::json;

use super::{DirectoryService, EventTemplate, Received, RoomService, rules_of};
use crate::AccountDataService;
use crate::trust::{Actor, Need};

impl RoomService {
    /// Member event content with the target's profile, as Synapse fills it.
    pub(super) async fn member_content(
        &self,
        membership: &str,
        target: &UserId,
        reason: Option<&str>,
    ) -> Result<CanonicalJsonObject> {
        let mut content = json!({ "membership": membership });
        if matches!(membership, "join" | "invite" | "knock")
            && let Some(user) = self.accounts.user(target).await?
        {
            if let Some(name) = user.displayname {
                content["displayname"] = json!(name);
            }
            if let Some(url) = user.avatar_url {
                content["avatar_url"] = json!(url);
            }
        }
        if let Some(reason) = reason {
            content["reason"] = json!(reason);
        }
        super::content(content)
    }
}

impl RoomService {
    /// The local user who authorises `user`'s join (`join_authorised_via_users_server`) when
    /// the room's join rule is restricted (versions 8 on) and the user is neither joined nor
    /// invited; `None` when no authorisation is needed. Refused when the user is in none of
    /// the rooms the rule lets in (`M_FORBIDDEN`), when this server is in none of them and
    /// cannot tell (`M_UNABLE_TO_AUTHORISE_JOIN`), or when no local member may invite
    /// (`M_UNABLE_TO_GRANT_JOIN`).
    pub(crate) async fn join_authoriser(
        &self,
        room_id: &RoomId,
        user: &UserId,
    ) -> Result<Option<OwnedUserId>> {
        let Some(version) = self.room_version(room_id).await? else { return Ok(None) };
        if !rules_of(&version)?.authorization.restricted_join_rule {
            return Ok(None);
        }
        let Some(id) = self.current_state_id(room_id, "m.room.join_rules", "").await? else {
            return Ok(None);
        };
        let rules =
            serde_json::from_value::<RoomJoinRulesEventContent>(self.event_content(&id).await?);
        let allow = match rules.map(|rules| rules.join_rule) {
            Ok(JoinRule::Restricted(rule) | JoinRule::KnockRestricted(rule)) => rule.allow,
            _ => return Ok(None),
        };
        let current = self.store.membership(room_id, user).await?;
        if current.is_some_and(|m| matches!(m.membership.as_str(), "join" | "invite")) {
            return Ok(None);
        }
        let own = &self.config.server_name;
        let (mut can_tell, mut allowed) = (false, false);
        for rule in allow {
            let AllowRule::RoomMembership(rule) = rule else { continue };
            if self.room_version(&rule.room_id).await?.is_none()
                || !self.server_in_room(&rule.room_id, own).await?
            {
                continue;
            }
            can_tell = true;
            let membership = self.store.membership(&rule.room_id, user).await?;
            if membership.is_some_and(|m| m.membership == "join") {
                allowed = true;
                break;
            }
        }
        if !can_tell {
            return Err(Error::new(
                ErrorKind::UnableToAuthoriseJoin,
                "This server is in none of the rooms whose members may join",
            ));
        }
        if !allowed {
            return Err(Error::forbidden(
                "You do not belong to any of the required rooms or spaces to join this room",
            ));
        }
        let levels = self
            .current_power_levels(room_id)
            .await?
            .ok_or_else(|| Error::not_found("Unknown room"))?;
        let members = self.store.members(room_id).await?;
        let authoriser = members.into_iter().find(|m| {
            m.membership == "join"
                && m.user_id.server_name() == own
                && levels.user_can_invite(&m.user_id)
        });
        authoriser.map(|m| Some(m.user_id)).ok_or_else(|| {
            Error::new(ErrorKind::UnableToGrantJoin, "No user of this server may let you in")
        })
    }
}

/// Creating rooms and who is in them: joins, leaves, invites, kicks and bans, through this
/// server's pipeline or, for rooms it is not in, through another server.
pub struct MembershipService {
    /// Also read by `createRoom` (`create.rs`).
    pub(super) rooms: Arc<RoomService>,
    directory: Arc<DirectoryService>,
    /// Where the settings a user had in an upgraded room are carried over.
    account_data: Arc<AccountDataService>,
}

impl MembershipService {
    /// The service over the rooms, resolving aliases with `directory`.
    pub fn new(
        rooms: Arc<RoomService>,
        directory: Arc<DirectoryService>,
        account_data: Arc<AccountDataService>,
    ) -> Self {
        Self { rooms, directory, account_data }
    }

    pub(super) async fn set_membership(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        target: &UserId,
        membership: &str,
        reason: Option<&str>,
    ) -> Result<()> {
        let mut content = self.rooms.member_content(membership, target, reason).await?;
        if membership == "join"
            && target == actor.user()
            && let Some(authoriser) = self.rooms.join_authoriser(room_id, target).await?
        {
            let authoriser = CanonicalJsonValue::String(authoriser.to_string());
            content.insert("join_authorised_via_users_server".into(), authoriser);
        }
        let template = EventTemplate::state("m.room.member", target.as_str(), content);
        self.rooms.send(actor, room_id, template, None).await?;
        Ok(())
    }

    /// Resolves a room id or alias to a room id.
    pub async fn resolve(&self, room: &RoomOrAliasId) -> Result<OwnedRoomId> {
        match <&RoomId>::try_from(room) {
            Ok(room_id) => Ok(room_id.to_owned()),
            Err(alias) => self
                .rooms
                .store
                .alias(alias)
                .await?
                .map(|(room_id, _)| room_id)
                .ok_or_else(|| Error::not_found("Room alias not found")),
        }
    }

    /// Joins a room by id or alias: through this server's pipeline when it is in the room, else
    /// through a server that is (see [`Self::locate`]).
    pub async fn join_room(
        &self,
        actor: Actor<'_>,
        room: &RoomOrAliasId,
        via: &[OwnedServerName],
        reason: Option<&str>,
    ) -> Result<OwnedRoomId> {
        self.rooms.trust.require(actor, Need::RoomAccess, "join").await?;
        actor.may_write()?;
        let (room_id, resident) = self.locate(actor, room, via).await?;
        if actor.is_guest() {
            return self.join_as_guest(actor, &room_id, reason).await.map(|()| room_id);
        }
        match resident {
            None => self.join(actor, &room_id, reason).await?,
            Some(candidates) => {
                let outbound = self.rooms.outbound.get()?;
                self.through_any(&room_id, &candidates, "join", |server| {
                    outbound.join_through(actor, &room_id, server)
                })
                .await?;
            }
        }
        if let Err(error) = self.carry_over(actor.user(), &room_id).await {
            tracing::info!(%room_id, %error, "settings of the room's predecessor not carried over");
        }
        Ok(room_id)
    }

    /// When `room_id` replaced another (an upgrade), the user's tags and push rule of that
    /// room carry over, as Synapse does when they join.
    async fn carry_over(&self, user: &UserId, room_id: &RoomId) -> Result<()> {
        let Some(create) = self.rooms.current_state_id(room_id, "m.room.create", "").await? else {
            return Ok(());
        };
        let content = self.rooms.event_content(&create).await?;
        let predecessor = content["predecessor"]["room_id"].as_str();
        let Some(old) = predecessor.and_then(|id| <&RoomId>::try_from(id).ok()) else {
            return Ok(());
        };
        self.account_data.carry_over_room(user, old, room_id).await
    }

    /// Knocks on a room by id or alias (asks its members to be let in): through this
    /// server's pipeline when it is in the room, else through a server that is.
    pub async fn knock_room(
        &self,
        actor: Actor<'_>,
        room: &RoomOrAliasId,
        via: &[OwnedServerName],
        reason: Option<&str>,
    ) -> Result<OwnedRoomId> {
        self.rooms.trust.require(actor, Need::RoomAccess, "knock").await?;
        actor.may_write()?;
        let (room_id, resident) = self.locate(actor, room, via).await?;
        let Some(candidates) = resident else {
            self.set_membership(actor, &room_id, actor.user(), "knock", reason).await?;
            return Ok(room_id);
        };
        let outbound = self.rooms.outbound.get()?;
        self.through_any(&room_id, &candidates, "knock", |server| {
            outbound.knock_through(actor, &room_id, server, reason)
        })
        .await?;
        Ok(room_id)
    }

    /// The room a join or knock is for, and `None` when this server is in it, else the
    /// servers to go through: `via`, the alias's servers, the room's own, the inviter's, the
    /// servers of its members this server knows.
    async fn locate(
        &self,
        actor: Actor<'_>,
        room: &RoomOrAliasId,
        via: &[OwnedServerName],
    ) -> Result<(OwnedRoomId, Option<Vec<OwnedServerName>>)> {
        let own = &self.rooms.config.server_name;
        let mut candidates = via.to_vec();
        let room_id = match <&RoomId>::try_from(room) {
            Ok(room_id) => room_id.to_owned(),
            Err(alias) => {
                let (room_id, servers) = self.directory.resolve_alias(alias, Some(actor)).await?;
                candidates.extend(servers);
                candidates.push(alias.server_name().to_owned());
                room_id
            }
        };
        let known = self.rooms.room_version(&room_id).await?.is_some();
        if known && self.rooms.server_in_room(&room_id, own).await? {
            return Ok((room_id, None));
        }
        if let Some(server) = room_id.server_name() {
            candidates.push(server.to_owned());
        }
        if known {
            if let Some(inviter) = self.rooms.inviter(&room_id, actor.user()).await? {
                candidates.push(inviter.server_name().to_owned());
            }
            candidates.extend(self.rooms.servers_in_room(&room_id).await?);
        }
        let mut seen = HashSet::new();
        candidates.retain(|server| server != own && seen.insert(server.clone()));
        Ok((room_id, Some(candidates)))
    }

    /// Tries `attempt` through each server in turn until one succeeds; the last error else.
    async fn through_any<'s, F, Fut>(
        &self,
        room_id: &RoomId,
        servers: &'s [OwnedServerName],
        what: &str,
        attempt: F,
    ) -> Result<()>
    where
        F: Fn(&'s ServerName) -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        let mut last = Error::not_found("No known servers for this room");
        for server in servers {
            match attempt(server).await {
                Ok(()) => return Ok(()),
                Err(error) => {
                    tracing::info!(%server, %room_id, %error, what, "through another server failed");
                    last = error;
                }
            }
        }
        Err(last)
    }

    /// A guest joins only a room this server is in whose `m.room.guest_access` is `can_join`
    /// (as Synapse, which does not send guests' joins to other servers).
    async fn join_as_guest(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        reason: Option<&str>,
    ) -> Result<()> {
        let access =
            self.rooms.current_state_text(room_id, "m.room.guest_access", "guest_access").await?;
        let own = &self.rooms.config.server_name;
        if access.as_deref() != Some("can_join") || !self.rooms.server_in_room(room_id, own).await?
        {
            return Err(Error::forbidden("Guest access not allowed"));
        }
        self.join(actor, room_id, reason).await
    }

    /// Leaves a room, rejects an invite or withdraws a knock: through this server's pipeline
    /// when it is in the room, else through the server that sent the invite or the room's
    /// (or, when that server cannot be reached, locally: the user is not held to an invite or
    /// a knock nobody can be told of).
    pub async fn leave_room(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        reason: Option<&str>,
    ) -> Result<()> {
        self.rooms.trust.require(actor, Need::RoomAccess, "leave").await?;
        let own = &self.rooms.config.server_name;
        let membership = self.rooms.store.membership(room_id, actor.user()).await?;
        let pending = membership.as_ref().map(|m| m.membership.as_str());
        if !matches!(pending, Some("invite" | "knock"))
            || self.rooms.server_in_room(room_id, own).await?
        {
            return self.leave(actor, room_id, reason).await;
        }
        let mut servers = match pending {
            Some("invite") => {
                let inviter = self.rooms.inviter(room_id, actor.user()).await?;
                inviter.map(|i| i.server_name().to_owned()).into_iter().collect()
            }
            _ => self.rooms.knock_servers(room_id, actor.user()).await?,
        };
        servers.retain(|server| server != own);
        let through = async {
            let outbound = self.rooms.outbound.get()?;
            self.through_any(room_id, &servers, "leave", |server| {
                outbound.leave_through(actor, room_id, server)
            })
            .await
        }
        .await;
        if let Err(error) = through {
            tracing::info!(%room_id, %error, "leaving locally");
            self.rooms.out_of_band_leave(actor, room_id).await?;
        }
        Ok(())
    }

    /// Invites a user: through this server's pipeline for a local user; another server's user
    /// is invited once their server countersigned the invite (it may refuse).
    pub async fn invite_user(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        target: &UserId,
        reason: Option<&str>,
        is_direct: bool,
    ) -> Result<()> {
        actor.may_write()?;
        if target.server_name() == self.rooms.config.server_name {
            return self.invite(actor, room_id, target, reason).await;
        }
        let (version, event, shown) =
            self.rooms.prepare_invite(actor, room_id, target, reason, is_direct).await?;
        let signed =
            self.rooms.outbound.get()?.countersign_invite(&event, &version, &shown).await?;
        match self.rooms.receive(room_id, signed, &HashMap::new()).await? {
            Received::Accepted | Received::Known => Ok(()),
            _ => Err(Error::forbidden("The invite is not allowed by the room's current state")),
        }
    }

    /// Joins a room this server is in.
    pub(crate) async fn join(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        reason: Option<&str>,
    ) -> Result<()> {
        self.set_membership(actor, room_id, actor.user(), "join", reason).await
    }

    /// Invites a local user.
    pub(crate) async fn invite(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        target: &UserId,
        reason: Option<&str>,
    ) -> Result<()> {
        self.set_membership(actor, room_id, target, "invite", reason).await
    }

    /// Sets one of the actor's own profile fields (`PUT /profile/{userId}/{keyName}`): the
    /// display name and avatar as their own endpoints do (their rooms are told), any other
    /// field kept with the profile.
    pub async fn set_profile_field(
        &self,
        actor: Actor<'_>,
        user: &UserId,
        field: &str,
        value: &serde_json::Value,
    ) -> Result<()> {
        if user != actor.user() {
            return Err(Error::forbidden("You may change only your own profile"));
        }
        actor.may_write()?;
        match (field, value) {
            ("displayname", serde_json::Value::String(name)) => {
                self.set_displayname(actor, Some(name)).await
            }
            ("avatar_url", serde_json::Value::String(url)) => {
                self.set_avatar_url(actor, Some(url)).await
            }
            ("displayname" | "avatar_url", _) => Err(Error::invalid_param("A string is expected")),
            _ => self.rooms.accounts.set_profile_field(user, field, Some(value)).await,
        }
    }

    /// Removes one of the actor's own profile fields (`DELETE /profile/{userId}/{keyName}`).
    pub async fn delete_profile_field(
        &self,
        actor: Actor<'_>,
        user: &UserId,
        field: &str,
    ) -> Result<()> {
        if user != actor.user() {
            return Err(Error::forbidden("You may change only your own profile"));
        }
        actor.may_write()?;
        match field {
            "displayname" => self.set_displayname(actor, None).await,
            "avatar_url" => self.set_avatar_url(actor, None).await,
            _ => self.rooms.accounts.set_profile_field(user, field, None).await,
        }
    }

    /// Changes the actor's display name (`None` removes it), and tells their rooms.
    pub async fn set_displayname(&self, actor: Actor<'_>, name: Option<&str>) -> Result<()> {
        actor.may_write()?;
        self.rooms.accounts.set_displayname(actor.user(), name).await?;
        self.propagate_profile(actor).await
    }

    /// Changes the actor's avatar (`None` removes it), and tells their rooms.
    pub async fn set_avatar_url(&self, actor: Actor<'_>, url: Option<&str>) -> Result<()> {
        actor.may_write()?;
        self.rooms.accounts.set_avatar_url(actor.user(), url).await?;
        self.propagate_profile(actor).await
    }

    /// Re-sends the user's join event in every room they are in, so that members see a new
    /// display name or avatar (as Synapse does).
    async fn propagate_profile(&self, actor: Actor<'_>) -> Result<()> {
        let user = actor.user();
        for membership in self.rooms.store.rooms_of_user(user).await? {
            if membership.membership != "join" {
                continue;
            }
            if let Err(error) =
                self.set_membership(actor, &membership.room_id, user, "join", None).await
            {
                tracing::warn!(%error, room = %membership.room_id, "profile change not propagated");
            }
        }
        Ok(())
    }

    /// Leaves a room this server is in (or rejects an invite).
    async fn leave(&self, actor: Actor<'_>, room_id: &RoomId, reason: Option<&str>) -> Result<()> {
        self.set_membership(actor, room_id, actor.user(), "leave", reason).await
    }

    /// Removes `target` from the room.
    pub async fn kick(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        target: &UserId,
        reason: Option<&str>,
    ) -> Result<()> {
        self.rooms.trust.require(actor, Need::Approval, "kick").await?;
        let current = self.rooms.store.membership(room_id, target).await?;
        if !current.is_some_and(|m| matches!(m.membership.as_str(), "join" | "invite" | "knock")) {
            return Err(Error::forbidden("The target user is not in the room"));
        }
        self.set_membership(actor, room_id, target, "leave", reason).await
    }

    /// Bans `target`.
    pub async fn ban(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        target: &UserId,
        reason: Option<&str>,
    ) -> Result<()> {
        self.set_membership(actor, room_id, target, "ban", reason).await
    }

    /// Lifts a ban on `target`.
    pub async fn unban(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        target: &UserId,
        reason: Option<&str>,
    ) -> Result<()> {
        self.rooms.trust.require(actor, Need::Approval, "unban").await?;
        let current = self.rooms.store.membership(room_id, target).await?;
        if current.is_none_or(|m| m.membership != "ban") {
            return Err(Error::forbidden("The target user is not banned"));
        }
        self.set_membership(actor, room_id, target, "leave", reason).await
    }

    /// Forgets a room the user has left.
    pub async fn forget(&self, actor: Actor<'_>, room_id: &RoomId) -> Result<()> {
        self.rooms.trust.require(actor, Need::RoomAccess, "forget").await?;
        if !self.rooms.store.forget_room(room_id, actor.user()).await? {
            return Err(Error::bad_state("You must leave the room before forgetting it"));
        }
        Ok(())
    }
}
