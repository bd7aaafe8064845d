//! `createRoom`: the create event and the initial state, in the order Synapse sends them.

use palisade_core::{Error, ErrorKind, Result, SUPPORTED_ROOM_VERSIONS, config::EncryptionDefault};
use palisade_storage::RoomSnapshot;
use ruma::{
    CanonicalJsonValue, OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomAliasId, RoomId, UserId,
};
use serde_json::{Map, Value, json};

use super::{EventTemplate, MembershipService, admit::Incoming, content, rules_of};
use crate::trust::{Actor, Need};

/// The presets of `createRoom`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// Invite only; invitees are ordinary members.
    PrivateChat,
    /// Invite only; invitees get the creator's power.
    TrustedPrivateChat,
    /// Anyone may join.
    PublicChat,
}

/// What a client asks `createRoom` for.
#[derive(Debug, Clone, Default)]
pub struct CreateRoom {
    /// Room version; the configured default when absent.
    pub version: Option<ruma::RoomVersionId>,
    /// Preset; from the visibility when absent.
    pub preset: Option<Preset>,
    /// Whether to list the room in the public directory.
    pub public: bool,
    /// `m.room.name`.
    pub name: Option<String>,
    /// `m.room.topic`.
    pub topic: Option<String>,
    /// Localpart of a canonical alias to create.
    pub alias_localpart: Option<String>,
    /// Users to invite.
    pub invite: Vec<OwnedUserId>,
    /// Whether the invites are for a direct chat.
    pub is_direct: bool,
    /// Extra keys for the create event's content.
    pub creation_content: Option<Map<String, Value>>,
    /// State events sent after the preset's, overriding them.
    pub initial_state: Vec<EventTemplate>,
    /// Keys replacing the default power levels.
    pub power_level_override: Option<Map<String, Value>>,
    /// Whether to encrypt, overriding the configured default.
    pub encrypted: Option<bool>,
}

impl MembershipService {
    /// The alias `#localpart:server`, validated.
    pub fn local_alias(&self, localpart: &str) -> Result<OwnedRoomAliasId> {
        if localpart.is_empty()
            || localpart.contains(':')
            || localpart.contains(char::is_whitespace)
        {
            return Err(Error::invalid_param("Invalid alias"));
        }
        RoomAliasId::parse(format!("#{localpart}:{}", self.rooms.config.server_name))
            .map_err(|_| Error::invalid_param("Invalid alias"))
    }

    /// Creates a room and its initial state; returns the room id. A room with invitees (or
    /// member events in its initial state), or one opened to others (public, published, join
    /// rules or power levels of the client's choosing), needs an approved device.
    pub async fn create_room(&self, actor: Actor<'_>, request: CreateRoom) -> Result<OwnedRoomId> {
        actor.may_write()?;
        let invites = !request.invite.is_empty()
            || request.initial_state.iter().any(|t| t.kind == "m.room.member");
        // As an invite would, a room anyone may join (or find, or be given power in) lets an
        // accomplice in.
        let opens = request.public
            || request.preset == Some(Preset::PublicChat)
            || request.power_level_override.is_some()
            || request
                .initial_state
                .iter()
                .any(|t| matches!(t.kind.as_str(), "m.room.join_rules" | "m.room.power_levels"));
        let need = if invites || opens { Need::Approval } else { Need::RoomAccess };
        self.rooms.trust.require(actor, need, "create_room").await?;
        let creator = actor.user();
        let version = request
            .version
            .clone()
            .unwrap_or_else(|| self.rooms.config.default_room_version.clone());
        if !SUPPORTED_ROOM_VERSIONS.contains(&version) {
            return Err(Error::new(
                ErrorKind::UnsupportedRoomVersion,
                format!("Room version {version} is not supported"),
            ));
        }
        let rules = rules_of(&version)?;
        let alias = match &request.alias_localpart {
            Some(localpart) => {
                let alias = self.local_alias(localpart)?;
                if self.rooms.store.alias(&alias).await?.is_some() {
                    return Err(Error::new(ErrorKind::RoomInUse, "Room alias already taken"));
                }
                Some(alias)
            }
            None => None,
        };
        let mut create_content = request.creation_content.clone().unwrap_or_default();
        create_content.insert("room_version".into(), json!(version.as_str()));
        if !rules.authorization.use_room_create_sender {
            create_content.insert("creator".into(), json!(creator));
        }
        let mut room = RoomSnapshot {
            version: version.clone(),
            state_group: 0,
            state: Default::default(),
            extremities: Vec::new(),
        };
        let room_id_field = (!rules.authorization.room_create_event_id_as_room_id)
            .then(|| RoomId::new_v1(&self.rooms.config.server_name));
        let create = EventTemplate::state("m.room.create", "", content(create_content)?);
        let signed =
            self.rooms.build(&room, room_id_field.as_deref(), creator, create, &rules).await?;
        let room_id = signed.pdu.room()?;

        let handle = self.rooms.handle(&room_id);
        let mut guard = handle.lock_owned().await;
        let create = Incoming::Local { signed, txn: None, creates_room: Some(version) };
        self.rooms.admit(&room_id, &mut room, create).await?;

        let preset = request.preset.unwrap_or(if request.public {
            Preset::PublicChat
        } else {
            Preset::PrivateChat
        });
        let result = self
            .initial_state(&mut room, &room_id, creator, &request, preset, alias.as_ref())
            .await;
        *guard = Some(room);
        drop(guard);
        result?;

        if let Some(alias) = &alias {
            self.rooms.store.create_alias(alias, &room_id, creator).await?;
        }
        if request.public {
            self.rooms.store.set_public(&room_id, true).await?;
        }
        tracing::info!(%room_id, %creator, "room created");
        // Users of other servers are invited once the room exists; a server that cannot be
        // reached does not undo it.
        let remote =
            request.invite.iter().filter(|i| i.server_name() != self.rooms.config.server_name);
        for invitee in remote {
            let invited = self.invite_user(actor, &room_id, invitee, None, request.is_direct).await;
            if let Err(error) = invited {
                tracing::info!(%room_id, %invitee, %error, "inviting a user of another server failed");
            }
        }
        Ok(room_id)
    }

    async fn initial_state(
        &self,
        room: &mut RoomSnapshot,
        room_id: &RoomId,
        creator: &UserId,
        request: &CreateRoom,
        preset: Preset,
        alias: Option<&OwnedRoomAliasId>,
    ) -> Result<()> {
        let rules = rules_of(&room.version)?;
        let join = self.rooms.member_content("join", creator, None).await?;
        self.rooms
            .append(
                room,
                room_id,
                creator,
                EventTemplate::state("m.room.member", creator.as_str(), join),
                None,
            )
            .await?;

        let mut users = Map::new();
        if !rules.authorization.explicitly_privilege_room_creators {
            users.insert(creator.to_string(), json!(100));
        }
        if preset == Preset::TrustedPrivateChat {
            for invitee in &request.invite {
                users.insert(invitee.to_string(), json!(100));
            }
        }
        let mut power_levels = json!({
            "users": users,
            "users_default": 0,
            "events": {
                "m.room.name": 50,
                "m.room.power_levels": 100,
                "m.room.history_visibility": 100,
                "m.room.canonical_alias": 50,
                "m.room.avatar": 50,
                "m.room.tombstone": 100,
                "m.room.server_acl": 100,
                "m.room.encryption": 100,
            },
            "events_default": 0,
            "state_default": 50,
            "ban": 50,
            "kick": 50,
            "redact": 50,
            "invite": if preset == Preset::PublicChat { 0 } else { 50 },
            "historical": 100,
        });
        if let Some(overrides) = &request.power_level_override {
            for (key, value) in overrides {
                power_levels[key] = value.clone();
            }
        }
        let mut events =
            vec![EventTemplate::state("m.room.power_levels", "", content(power_levels)?)];
        if let Some(alias) = alias {
            events.push(EventTemplate::state(
                "m.room.canonical_alias",
                "",
                content(json!({ "alias": alias }))?,
            ));
        }
        let join_rule = if preset == Preset::PublicChat { "public" } else { "invite" };
        let mut preset_state = vec![
            EventTemplate::state(
                "m.room.join_rules",
                "",
                content(json!({ "join_rule": join_rule }))?,
            ),
            EventTemplate::state(
                "m.room.history_visibility",
                "",
                content(json!({ "history_visibility": "shared" }))?,
            ),
        ];
        if preset != Preset::PublicChat {
            preset_state.push(EventTemplate::state(
                super::GUEST_ACCESS,
                "",
                content(json!({ "guest_access": "can_join" }))?,
            ));
        }
        let encrypt = request.encrypted.unwrap_or(match self.rooms.config.encryption_by_default {
            EncryptionDefault::Off => false,
            EncryptionDefault::Invite => preset != Preset::PublicChat,
            EncryptionDefault::All => true,
        });
        if encrypt {
            preset_state.push(EventTemplate::state(
                "m.room.encryption",
                "",
                content(json!({ "algorithm": "m.megolm.v1.aes-sha2" }))?,
            ));
        }
        for template in &request.initial_state {
            match preset_state
                .iter_mut()
                .find(|t| t.kind == template.kind && t.state_key == template.state_key)
            {
                Some(existing) => *existing = template.clone(),
                None => preset_state.push(template.clone()),
            }
        }
        events.extend(preset_state);
        if let Some(name) = &request.name {
            events.push(EventTemplate::state("m.room.name", "", content(json!({ "name": name }))?));
        }
        if let Some(topic) = &request.topic {
            events.push(EventTemplate::state(
                "m.room.topic",
                "",
                content(json!({ "topic": topic }))?,
            ));
        }
        for template in events {
            self.rooms.append(room, room_id, creator, template, None).await?;
        }
        // Users of other servers are invited through federation once the room exists.
        let local =
            request.invite.iter().filter(|i| i.server_name() == self.rooms.config.server_name);
        for invitee in local {
            let mut content = self.rooms.member_content("invite", invitee, None).await?;
            if request.is_direct {
                content.insert("is_direct".into(), CanonicalJsonValue::Bool(true));
            }
            self.rooms
                .append(
                    room,
                    room_id,
                    creator,
                    EventTemplate::state("m.room.member", invitee.as_str(), content),
                    None,
                )
                .await?;
        }
        Ok(())
    }
}
