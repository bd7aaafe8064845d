//! Account data (global and per room, room tags included), sync filters and push rules.

use std::sync::{Arc, LazyLock};

use palisade_core::{Error, Result};
use palisade_storage::UserDataStore;
use ruma::{
    RoomId, UserId,
    push::{ConditionalPushRule, Ruleset},
};
use serde_json::{Value, json};

use crate::{
    DeviceTrustService,
    notify::Notifier,
    trust::{Actor, Need},
};

/// Account data, filters and push rules of users.
pub struct AccountDataService {
    store: Arc<dyn UserDataStore>,
    notifier: Arc<Notifier>,
    trust: Arc<DeviceTrustService>,
}

/// The account data type holding room tags.
const TAGS: &str = "m.tag";
/// The account data type holding push rules.
pub const PUSH_RULES: &str = "m.push_rules";

impl AccountDataService {
    /// The service over `store`.
    pub fn new(
        store: Arc<dyn UserDataStore>,
        notifier: Arc<Notifier>,
        trust: Arc<DeviceTrustService>,
    ) -> Self {
        Self { store, notifier, trust }
    }

    /// Data about a room is part of the room for a device that may not see rooms yet.
    async fn require_room(&self, actor: Actor<'_>, room: Option<&RoomId>) -> Result<()> {
        match room {
            Some(_) => self.trust.require(actor, Need::RoomAccess, "room_account_data").await,
            None => Ok(()),
        }
    }

    /// The store, for sync.
    pub(crate) fn store(&self) -> &Arc<dyn UserDataStore> {
        &self.store
    }

    /// Stores a filter (already validated by the caller); returns its id.
    pub async fn create_filter(&self, user: &UserId, filter: &Value) -> Result<String> {
        Ok(self.store.create_filter(user, filter.to_string()).await?.to_string())
    }

    /// A stored filter, or `M_NOT_FOUND`.
    pub async fn filter(&self, user: &UserId, filter_id: &str) -> Result<Value> {
        let id = filter_id.parse().map_err(|_| Error::not_found("No such filter"))?;
        let json =
            self.store.filter(user, id).await?.ok_or_else(|| Error::not_found("No such filter"))?;
        serde_json::from_str(&json).map_err(|e| Error::internal(format!("stored filter: {e}")))
    }

    /// Sets an account data entry and wakes the user's syncs.
    pub async fn set(
        &self,
        actor: Actor<'_>,
        room: Option<&RoomId>,
        kind: &str,
        content: &Value,
    ) -> Result<()> {
        self.require_room(actor, room).await?;
        self.write(actor.user(), room, kind, content).await
    }

    /// Stores an account data entry and wakes the user's syncs.
    async fn write(
        &self,
        user: &UserId,
        room: Option<&RoomId>,
        kind: &str,
        content: &Value,
    ) -> Result<()> {
        if !content.is_object() {
            return Err(Error::bad_json("Account data content must be an object"));
        }
        self.store.set_account_data(user, room, kind, content.to_string()).await?;
        self.notifier.notify_user(user);
        Ok(())
    }

    /// An account data entry, or `M_NOT_FOUND`.
    pub async fn get(&self, actor: Actor<'_>, room: Option<&RoomId>, kind: &str) -> Result<Value> {
        self.require_room(actor, room).await?;
        let json = self
            .store
            .account_data(actor.user(), room, kind)
            .await?
            .ok_or_else(|| Error::not_found("Account data not found"))?;
        serde_json::from_str(&json)
            .map_err(|e| Error::internal(format!("stored account data: {e}")))
    }

    /// A room's tags for the user (`{}` when none).
    pub async fn tags(&self, actor: Actor<'_>, room: &RoomId) -> Result<Value> {
        match self.get(actor, Some(room), TAGS).await {
            Ok(content) => Ok(content.get("tags").cloned().unwrap_or_else(|| json!({}))),
            Err(e) if e.kind == palisade_core::ErrorKind::NotFound => Ok(json!({})),
            Err(e) => Err(e),
        }
    }

    /// Adds or replaces one tag.
    pub async fn set_tag(
        &self,
        actor: Actor<'_>,
        room: &RoomId,
        tag: &str,
        content: &Value,
    ) -> Result<()> {
        if !content.is_object() {
            return Err(Error::bad_json("Tag content must be an object"));
        }
        // Anything but an object stored under `tags` (the generic endpoint accepts any content)
        // is replaced rather than indexed into.
        let mut tags = match self.tags(actor, room).await? {
            Value::Object(tags) => tags,
            _ => serde_json::Map::new(),
        };
        tags.insert(tag.to_owned(), content.clone());
        self.set(actor, Some(room), TAGS, &json!({ "tags": tags })).await
    }

    /// Removes one tag (absent tags are fine).
    pub async fn delete_tag(&self, actor: Actor<'_>, room: &RoomId, tag: &str) -> Result<()> {
        let mut tags = self.tags(actor, room).await?;
        if let Some(map) = tags.as_object_mut() {
            map.remove(tag);
        }
        self.set(actor, Some(room), TAGS, &json!({ "tags": tags })).await
    }

    /// Changes the user's push rules with `change`, stores them as `m.push_rules` account data
    /// (which `/sync` delivers to every client) and wakes the user's syncs.
    pub async fn update_push_rules(
        &self,
        user: &UserId,
        change: impl FnOnce(&mut Ruleset) -> Result<()>,
    ) -> Result<()> {
        let mut rules = self.push_rules(user).await?;
        change(&mut rules)?;
        let global = serde_json::to_value(&rules).map_err(|e| Error::internal(e.to_string()))?;
        self.write(user, None, PUSH_RULES, &json!({ "global": global })).await
    }

    /// One push rule of the user's, as JSON, or `M_NOT_FOUND`.
    pub async fn push_rule(&self, user: &UserId, kind: &str, rule_id: &str) -> Result<Value> {
        let rules = serde_json::to_value(self.push_rules(user).await?)
            .map_err(|e| Error::internal(e.to_string()))?;
        rules[kind]
            .as_array()
            .and_then(|rules| rules.iter().find(|r| r["rule_id"] == rule_id))
            .cloned()
            .ok_or_else(|| Error::not_found("No such push rule"))
    }

    /// The user's push rules: their stored rules, else the server defaults.
    pub async fn push_rules(&self, user: &UserId) -> Result<Ruleset> {
        if let Some(json) = self.store.account_data(user, None, PUSH_RULES).await?
            && let Ok(content) = serde_json::from_str::<Value>(&json)
            && let Some(global) = content.get("global")
            && let Ok(rules) = serde_json::from_value::<Ruleset>(global.clone())
        {
            return Ok(rules);
        }
        Ok(default_push_rules(user))
    }
}

/// The two legacy mention rules the spec's default list still has and ruma's no longer does
/// (matrix-js-sdk warns when they are missing; the evaluator skips them for events with
/// `m.mentions`), each with the rule it follows. Parsed once.
static LEGACY_MENTION_RULES: LazyLock<[(&str, ConditionalPushRule); 2]> = LazyLock::new(|| {
    let rule =
        |json: Value| serde_json::from_value(json).expect("the legacy rules are well-formed");
    [
        (
            ".m.rule.is_user_mention",
            rule(json!({
                "rule_id": ".m.rule.contains_display_name", "default": true, "enabled": true,
                "conditions": [{ "kind": "contains_display_name" }],
                "actions": ["notify", { "set_tweak": "sound", "value": "default" }, { "set_tweak": "highlight" }],
            })),
        ),
        (
            ".m.rule.is_room_mention",
            rule(json!({
                "rule_id": ".m.rule.roomnotif", "default": true, "enabled": true,
                "conditions": [
                    { "kind": "event_match", "key": "content.body", "pattern": "@room" },
                    { "kind": "sender_notification_permission", "key": "room" },
                ],
                "actions": ["notify", { "set_tweak": "highlight" }],
            })),
        ),
    ]
});

/// The spec's predefined rules: ruma's defaults and the legacy mention rules.
fn default_push_rules(user: &UserId) -> Ruleset {
    let mut rules = Ruleset::server_default(user);
    let mut overrides: Vec<ConditionalPushRule> = rules.override_.into_iter().collect();
    for (after, rule) in LEGACY_MENTION_RULES.iter() {
        let at =
            overrides.iter().position(|r| r.rule_id == *after).map_or(overrides.len(), |i| i + 1);
        overrides.insert(at, rule.clone());
    }
    rules.override_ = overrides.into_iter().collect();
    rules
}
