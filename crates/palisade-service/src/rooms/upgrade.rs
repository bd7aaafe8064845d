//! Room upgrades (`POST /rooms/{roomId}/upgrade`): a new room of another version that carries
//! on the old one, as Synapse makes it: the old room's state copied, its bans kept, its
//! aliases and directory listing moved, the old room closed with a tombstone and its power
//! levels raised so that its members move on. Members are neither invited nor joined: their
//! clients follow the tombstone.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#room-upgrades>

use palisade_core::{Error, ErrorKind, Result, SUPPORTED_ROOM_VERSIONS};
use ruma::{OwnedRoomId, OwnedUserId, RoomId, RoomVersionId, UserId};
use serde_json::{Map, Value, json};

use super::{CreateRoom, EventTemplate, MembershipService, content, rules_of};
use crate::trust::{Actor, Need};

/// State copied into the new room as it is (Synapse's list).
const COPIED_STATE: &[&str] = &[
    "m.room.join_rules",
    "m.room.name",
    "m.room.topic",
    "m.room.history_visibility",
    "m.room.guest_access",
    "m.room.avatar",
    "m.room.encryption",
    "m.room.server_acl",
];

/// Keys of the create event's content the new room keeps.
const COPIED_CREATION: &[&str] = &["m.federate", "type"];

impl MembershipService {
    /// Replaces `room_id` with a new room of `version`; returns the new room's id.
    /// `additional_creators` share the creator's unlimited power in rooms of version 12 on.
    pub async fn upgrade_room(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        version: &RoomVersionId,
        additional_creators: &[OwnedUserId],
    ) -> Result<OwnedRoomId> {
        self.rooms.trust.require(actor, Need::Approval, "upgrade_room").await?;
        actor.may_write()?;
        let user = actor.user();
        if !SUPPORTED_ROOM_VERSIONS.contains(version) {
            return Err(Error::new(
                ErrorKind::UnsupportedRoomVersion,
                format!("Room version {version} is not supported"),
            ));
        }
        let joined = self.rooms.store.membership(room_id, user).await?;
        if joined.is_none_or(|m| m.membership != "join") {
            return Err(Error::forbidden("You are not in the room"));
        }
        let privileged = rules_of(version)?.authorization.explicitly_privilege_room_creators;
        if !additional_creators.is_empty() && !privileged {
            return Err(Error::invalid_param(format!(
                "Room version {version} has no additional creators"
            )));
        }
        // Only who may close the old room may replace it.
        let tombstone = |replacement: &RoomId| {
            let body =
                json!({ "body": "This room has been replaced", "replacement_room": replacement });
            Ok::<_, Error>(EventTemplate::state("m.room.tombstone", "", content(body)?))
        };
        self.rooms.probe(room_id, user, tombstone(room_id)?).await?;

        let state = self.rooms.current_state(room_id).await?.unwrap_or_default();
        let state_content = |kind: &str, key: &str| {
            let id = state.get(&(kind.to_owned(), key.to_owned())).cloned();
            async move {
                match id {
                    Some(id) => self.rooms.event_content(&id).await.map(Some),
                    None => Ok(None),
                }
            }
        };
        // The predecessor names the last event known of the old room, where clients link to.
        let old_version = {
            let guard = self.rooms.lock_room(room_id).await?;
            let room = guard.as_ref().expect("lock_room loads the room");
            (room.version.clone(), room.extremities.first().map(|(id, _)| id.clone()))
        };
        let (old_version, last_event) = old_version;
        let mut predecessor = json!({ "room_id": room_id });
        if let Some(last) = last_event {
            predecessor["event_id"] = json!(last);
        }
        let mut creation = Map::new();
        if let Some(Value::Object(old)) = state_content("m.room.create", "").await? {
            for key in COPIED_CREATION {
                if let Some(value) = old.get(*key) {
                    creation.insert((*key).to_owned(), value.clone());
                }
            }
        }
        creation.insert("predecessor".into(), predecessor);
        if privileged && !additional_creators.is_empty() {
            creation.insert("additional_creators".into(), json!(additional_creators));
        }

        let mut initial_state = Vec::new();
        for kind in COPIED_STATE {
            if let Some(Value::Object(old)) = state_content(kind, "").await? {
                initial_state.push(EventTemplate::state(*kind, "", content(Value::Object(old))?));
            }
        }
        for ((kind, key), _) in state.iter().filter(|((kind, _), _)| kind == "m.space.child") {
            if let Some(Value::Object(child)) = state_content(kind, key).await?
                && !child.is_empty()
            {
                initial_state.push(EventTemplate::state(kind, key, content(Value::Object(child))?));
            }
        }

        let old_levels = match state_content("m.room.power_levels", "").await? {
            Some(Value::Object(levels)) => levels,
            _ => Map::new(),
        };
        let mut creators: Vec<&UserId> = vec![user];
        creators.extend(additional_creators.iter().map(|c| &**c));
        let was_privileged =
            rules_of(&old_version)?.authorization.explicitly_privilege_room_creators;
        let (levels, boosted) =
            new_room_levels(&old_levels, user, &creators, (was_privileged, privileged));
        let request = CreateRoom {
            version: Some(version.clone()),
            creation_content: Some(creation),
            initial_state,
            power_level_override: Some(boosted.clone().unwrap_or_else(|| levels.clone())),
            encrypted: Some(false),
            ..CreateRoom::default()
        };
        let new_room = self.create_room(actor, request).await?;

        for ((kind, banned), id) in &state {
            if kind != "m.room.member" {
                continue;
            }
            let member = self.rooms.event_content(id).await?;
            if member["membership"] == "ban"
                && let Ok(banned) = <&UserId>::try_from(banned.as_str())
            {
                let reason = member["reason"].as_str();
                let copied = self.set_membership(actor, &new_room, banned, "ban", reason).await;
                if let Err(error) = copied {
                    tracing::info!(%new_room, %banned, %error, "a ban was not carried over");
                }
            }
        }
        if boosted.is_some() {
            let restored =
                EventTemplate::state("m.room.power_levels", "", content(Value::Object(levels))?);
            self.rooms.send(actor, &new_room, restored, None).await?;
        }
        self.move_aliases(actor, room_id, &new_room).await?;
        if self.rooms.store.is_public(room_id).await? {
            self.rooms.store.set_public(&new_room, true).await?;
            self.rooms.store.set_public(room_id, false).await?;
        }

        self.rooms.send(actor, room_id, tombstone(&new_room)?, None).await?;
        if let Some(restricted) = restricted_levels(&old_levels) {
            let template = EventTemplate::state("m.room.power_levels", "", content(restricted)?);
            if let Err(error) = self.rooms.send(actor, room_id, template, None).await {
                tracing::info!(%room_id, %error, "the old room's power levels stay as they were");
            }
        }
        tracing::info!(old = %room_id, new = %new_room, %version, "room upgraded");
        Ok(new_room)
    }

    /// Moves the old room's local aliases and canonical alias to the new room: the new room
    /// names them, the old one no longer does.
    async fn move_aliases(&self, actor: Actor<'_>, old: &RoomId, new: &RoomId) -> Result<()> {
        let store = &self.rooms.store;
        for alias in store.aliases_of_room(old).await? {
            if let Some((_, creator)) = store.alias(&alias).await? {
                store.delete_alias(&alias).await?;
                store.create_alias(&alias, new, &creator).await?;
            }
        }
        let Some(id) = self.rooms.current_state_id(old, "m.room.canonical_alias", "").await? else {
            return Ok(());
        };
        let Value::Object(names) = self.rooms.event_content(&id).await? else { return Ok(()) };
        if names.is_empty() {
            return Ok(());
        }
        let template = |names| EventTemplate::state("m.room.canonical_alias", "", names);
        self.rooms.send(actor, new, template(content(Value::Object(names))?), None).await?;
        self.rooms.send(actor, old, template(content(json!({}))?), None).await?;
        Ok(())
    }
}

/// The new room's power levels: the old room's, without the creators where creators have
/// unlimited power by the new version (and with the upgrader at 100 where they had it by the
/// old one only); and, when the upgrading user's level is short of what copying the state
/// needs, the levels to create the room with (the user raised), to be replaced by the first
/// once the state is in. `privileged`: whether creators have unlimited power, in the old room
/// and in the new.
fn new_room_levels(
    old: &Map<String, Value>,
    user: &UserId,
    creators: &[&UserId],
    privileged: (bool, bool),
) -> (Map<String, Value>, Option<Map<String, Value>>) {
    let mut levels = old.clone();
    if privileged.1 {
        if let Some(Value::Object(users)) = levels.get_mut("users") {
            users.retain(|id, _| !creators.iter().any(|c| c.as_str() == id));
        }
        return (levels, None);
    }
    if privileged.0 {
        let users = levels.entry("users").or_insert_with(|| json!({}));
        if let Value::Object(users) = users {
            users.insert(user.to_string(), json!(100));
        }
    }
    let old = &levels.clone();
    let level =
        |value: Option<&Value>, default: i64| value.and_then(Value::as_i64).unwrap_or(default);
    let users_default = level(old.get("users_default"), 0);
    let own = level(old.get("users").and_then(|u| u.get(user.as_str())), users_default);
    let events_needed = old
        .get("events")
        .and_then(Value::as_object)
        .map(|events| events.values().filter_map(Value::as_i64).max().unwrap_or(0))
        .unwrap_or(0);
    let needed = [level(old.get("state_default"), 50), level(old.get("ban"), 50), events_needed]
        .into_iter()
        .max()
        .unwrap_or(0);
    if own >= needed {
        return (levels, None);
    }
    let mut boosted = levels.clone();
    let users = boosted.entry("users").or_insert_with(|| json!({}));
    if let Value::Object(users) = users {
        users.insert(user.to_string(), json!(needed));
    }
    if !matches!(levels.get("users"), Some(Value::Object(_))) {
        levels.insert("users".into(), json!({}));
    }
    (levels, Some(boosted))
}

/// The old room's power levels once it is replaced: sending messages and inviting need at
/// least 50, and more than members have by default (as Synapse restricts them); `None` when
/// they already do.
fn restricted_levels(old: &Map<String, Value>) -> Option<Value> {
    let level = |key: &str, default: i64| old.get(key).and_then(Value::as_i64).unwrap_or(default);
    let restricted = (level("users_default", 0) + 1).max(50);
    let mut levels = old.clone();
    let mut changed = false;
    for (key, default) in [("events_default", 0), ("invite", 0)] {
        if level(key, default) < restricted {
            levels.insert(key.to_owned(), json!(restricted));
            changed = true;
        }
    }
    changed.then_some(Value::Object(levels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upgrader_is_raised_only_when_short_and_creators_drop_out_of_v12_levels() {
        let alice = UserId::parse("@alice:example.org").unwrap();
        let old = json!({ "users": { "@alice:example.org": 50 }, "state_default": 50,
            "events": { "m.room.tombstone": 50, "m.room.power_levels": 100 } });
        let old = old.as_object().unwrap();
        let (levels, boosted) = new_room_levels(old, &alice, &[&alice], (false, false));
        assert_eq!(&levels, old);
        assert_eq!(boosted.unwrap()["users"]["@alice:example.org"], 100);
        let (levels, boosted) = new_room_levels(old, &alice, &[&alice], (false, true));
        assert_eq!(levels["users"], json!({}));
        assert!(boosted.is_none());
        let (levels, boosted) = new_room_levels(&levels, &alice, &[&alice], (true, false));
        assert_eq!(levels["users"]["@alice:example.org"], 100);
        assert!(boosted.is_none());
    }

    #[test]
    fn the_old_room_is_restricted_once() {
        let open = json!({ "events_default": 0, "invite": 0, "users_default": 0 });
        let restricted = restricted_levels(open.as_object().unwrap()).unwrap();
        assert_eq!(
            (restricted["events_default"].clone(), restricted["invite"].clone()),
            (json!(50), json!(50))
        );
        assert!(restricted_levels(restricted.as_object().unwrap()).is_none());
    }
}
