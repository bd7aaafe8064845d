//! Membership changes: join, invite, leave, kick, ban, unban, forget.
//!
//! Each builds an `m.room.member` event; whether it is allowed is decided by the room
//! version's authorization rules in the pipeline, not here. The few checks here are the ones
//! Synapse makes before the rules, so clients get the same answers.

use palisade_core::{Error, Result};
use ruma::{OwnedRoomId, RoomId, RoomOrAliasId, UserId};
use serde_json::{Value, json};

use super::{EventTemplate, RoomService};
use crate::trust::{Actor, Need};

impl RoomService {
    /// Member event content with the target's profile, as Synapse fills it.
    pub(super) async fn member_content(
        &self,
        membership: &str,
        target: &UserId,
        reason: Option<&str>,
    ) -> Result<Value> {
        let mut content = json!({ "membership": membership });
        if matches!(membership, "join" | "invite")
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
        Ok(content)
    }

    async fn set_membership(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        target: &UserId,
        membership: &str,
        reason: Option<&str>,
    ) -> Result<()> {
        let content = self.member_content(membership, target, reason).await?;
        let template = EventTemplate::state("m.room.member", target.as_str(), content);
        self.send(actor, room_id, template, None).await?;
        Ok(())
    }

    /// Resolves a room id or alias to a room id.
    pub async fn resolve(&self, room: &RoomOrAliasId) -> Result<OwnedRoomId> {
        match <&RoomId>::try_from(room) {
            Ok(room_id) => Ok(room_id.to_owned()),
            Err(alias) => self
                .store
                .alias(alias)
                .await?
                .map(|(room_id, _)| room_id)
                .ok_or_else(|| Error::not_found("Room alias not found")),
        }
    }

    /// Joins a local room.
    pub async fn join(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        reason: Option<&str>,
    ) -> Result<()> {
        self.set_membership(actor, room_id, actor.user(), "join", reason).await
    }

    /// Invites `target`.
    pub async fn invite(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        target: &UserId,
        reason: Option<&str>,
    ) -> Result<()> {
        self.set_membership(actor, room_id, target, "invite", reason).await
    }

    /// Re-sends the user's join event in every room they are in, so that members see a new
    /// display name or avatar (as Synapse does).
    pub async fn propagate_profile(&self, actor: Actor<'_>) -> Result<()> {
        let user = actor.user();
        for membership in self.store.rooms_of_user(user).await? {
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

    /// Leaves (or rejects an invite).
    pub async fn leave(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        reason: Option<&str>,
    ) -> Result<()> {
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
        self.trust.require(actor, Need::Approval, "kick").await?;
        let current = self.store.membership(room_id, target).await?;
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
        self.trust.require(actor, Need::Approval, "unban").await?;
        let current = self.store.membership(room_id, target).await?;
        if current.is_none_or(|m| m.membership != "ban") {
            return Err(Error::forbidden("The target user is not banned"));
        }
        self.set_membership(actor, room_id, target, "leave", reason).await
    }

    /// Forgets a room the user has left.
    pub async fn forget(&self, actor: Actor<'_>, room_id: &RoomId) -> Result<()> {
        self.trust.require(actor, Need::RoomAccess, "forget").await?;
        if !self.store.forget_room(room_id, actor.user()).await? {
            return Err(Error::bad_state("You must leave the room before forgetting it"));
        }
        Ok(())
    }
}
