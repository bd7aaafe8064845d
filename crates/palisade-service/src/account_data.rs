//! Account data (global and per room, room tags included), sync filters and push rules.

use std::sync::{Arc, LazyLock};

use palisade_core::{Error, ErrorKind, Result};
use palisade_storage::{AccountDataRow, UserDataStore};
use ruma::{
    RoomId, UserId,
    api::client::{filter::FilterDefinition, push::PushRule},
    events::tag::{TagEventContent, TagInfo, TagName, Tags},
    push::{AnyPushRuleRef, ConditionalPushRule, RuleKind, Ruleset},
};
use serde_json::{Value, json, value::RawValue};

use crate::{
    DeviceTrustService,
    events::stored_json,
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

    /// The latest account data stream position.
    pub(crate) async fn position(&self) -> Result<u64> {
        self.store.max_account_data_pos().await
    }

    /// A user's account data entries (global and per room) set at `after < position <= up_to`.
    pub(crate) async fn changed_between(
        &self,
        user: &UserId,
        after: u64,
        up_to: u64,
    ) -> Result<Vec<AccountDataRow>> {
        let rows = self.store.account_data_since(user, after).await?;
        Ok(rows.into_iter().filter(|row| row.stream_pos <= up_to).collect())
    }

    /// Stores a filter; returns its id.
    pub async fn create_filter(&self, user: &UserId, filter: &FilterDefinition) -> Result<String> {
        let json = serde_json::to_string(filter).map_err(|e| Error::internal(e.to_string()))?;
        Ok(self.store.create_filter(user, json).await?.to_string())
    }

    /// A stored filter, or `M_NOT_FOUND`.
    pub async fn filter(&self, user: &UserId, filter_id: &str) -> Result<FilterDefinition> {
        let id = filter_id.parse().map_err(|_| Error::not_found("No such filter"))?;
        let json =
            self.store.filter(user, id).await?.ok_or_else(|| Error::not_found("No such filter"))?;
        serde_json::from_str(&json).map_err(|e| Error::internal(format!("stored filter: {e}")))
    }

    /// Sets an account data entry (a JSON object, stored as the client sent it) and wakes the
    /// user's syncs.
    pub async fn set(
        &self,
        actor: Actor<'_>,
        room: Option<&RoomId>,
        kind: &str,
        content: &RawValue,
    ) -> Result<()> {
        self.require_room(actor, room).await?;
        if !content.get().trim_start().starts_with('{') {
            return Err(Error::bad_json("Account data content must be a JSON object"));
        }
        self.write(actor.user(), room, kind, content.get().to_owned()).await
    }

    /// Stores an account data entry (JSON object text) and wakes the user's syncs.
    async fn write(
        &self,
        user: &UserId,
        room: Option<&RoomId>,
        kind: &str,
        content: String,
    ) -> Result<()> {
        self.store.set_account_data(user, room, kind, content).await?;
        self.notifier.notify_user(user);
        Ok(())
    }

    /// An account data entry as stored, or `M_NOT_FOUND`.
    pub async fn get(
        &self,
        actor: Actor<'_>,
        room: Option<&RoomId>,
        kind: &str,
    ) -> Result<Box<RawValue>> {
        self.require_room(actor, room).await?;
        let json = self
            .store
            .account_data(actor.user(), room, kind)
            .await?
            .ok_or_else(|| Error::not_found("Account data not found"))?;
        stored_json(json)
    }

    /// A room's tags for the user (none when unset, or when what the generic account data
    /// endpoint stored under `m.tag` is not tags).
    pub async fn tags(&self, actor: Actor<'_>, room: &RoomId) -> Result<Tags> {
        match self.get(actor, Some(room), TAGS).await {
            Ok(content) => Ok(serde_json::from_str::<TagEventContent>(content.get())
                .map(|content| content.tags)
                .unwrap_or_default()),
            Err(e) if e.kind == palisade_core::ErrorKind::NotFound => Ok(Tags::new()),
            Err(e) => Err(e),
        }
    }

    /// Adds or replaces one tag.
    pub async fn set_tag(
        &self,
        actor: Actor<'_>,
        room: &RoomId,
        tag: &str,
        info: &TagInfo,
    ) -> Result<()> {
        let mut tags = self.tags(actor, room).await?;
        tags.insert(TagName::from(tag), info.clone());
        self.write_tags(actor, room, tags).await
    }

    /// Removes one tag (absent tags are fine).
    pub async fn delete_tag(&self, actor: Actor<'_>, room: &RoomId, tag: &str) -> Result<()> {
        let mut tags = self.tags(actor, room).await?;
        tags.remove(&TagName::from(tag));
        self.write_tags(actor, room, tags).await
    }

    async fn write_tags(&self, actor: Actor<'_>, room: &RoomId, tags: Tags) -> Result<()> {
        let content = serde_json::to_string(&TagEventContent::new(tags))
            .map_err(|e| Error::internal(e.to_string()))?;
        self.write(actor.user(), Some(room), TAGS, content).await
    }

    /// Carries a user's own settings of an upgraded room over to its successor when they
    /// join it, as Synapse does: the room's tags (favourites, low priority) unless the new
    /// room has some, and its room-specific push rule (muted, mentions only).
    pub(crate) async fn carry_over_room(
        &self,
        user: &UserId,
        old: &RoomId,
        new: &RoomId,
    ) -> Result<()> {
        if self.store.account_data(user, Some(new), TAGS).await?.is_none()
            && let Some(tags) = self.store.account_data(user, Some(old), TAGS).await?
        {
            self.write(user, Some(new), TAGS, tags).await?;
        }
        let rules = self.push_rules(user).await?;
        let Some(rule) = rules.room.iter().find(|rule| rule.rule_id == old).cloned() else {
            return Ok(());
        };
        if rules.room.iter().any(|rule| rule.rule_id == new) {
            return Ok(());
        }
        self.update_push_rules(user, |rules| {
            let mut carried = rule;
            carried.rule_id = new.to_owned();
            rules.room.insert(carried);
            Ok(())
        })
        .await
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
        let content = serde_json::to_string(&json!({ "global": rules }))
            .map_err(|e| Error::internal(e.to_string()))?;
        self.write(user, None, PUSH_RULES, content).await
    }

    /// One push rule of the user's, or `M_NOT_FOUND` (`M_UNRECOGNIZED` for an unknown kind).
    pub async fn push_rule(
        &self,
        user: &UserId,
        kind: RuleKind,
        rule_id: &str,
    ) -> Result<PushRule> {
        let kind = known_kind(&kind)?;
        let rules = self.push_rules(user).await?;
        rules
            .get(kind, rule_id)
            .map(PushRule::from)
            .ok_or_else(|| Error::not_found("No such push rule"))
    }

    /// The user's push rules of one kind, in priority order; `M_UNRECOGNIZED` for a kind the
    /// spec does not define.
    pub async fn push_rules_of_kind(
        &self,
        user: &UserId,
        kind: &RuleKind,
    ) -> Result<Vec<PushRule>> {
        let kind = known_kind(kind)?;
        let rules = self.push_rules(user).await?;
        let of_kind = |rule: &AnyPushRuleRef<'_>| match rule {
            AnyPushRuleRef::Override(_) => kind == RuleKind::Override,
            AnyPushRuleRef::Underride(_) => kind == RuleKind::Underride,
            AnyPushRuleRef::Content(_) => kind == RuleKind::Content,
            AnyPushRuleRef::Room(_) => kind == RuleKind::Room,
            AnyPushRuleRef::Sender(_) => kind == RuleKind::Sender,
            _ => false,
        };
        Ok(rules.iter().filter(of_kind).map(PushRule::from).collect())
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

/// A rule kind the spec defines, or `M_UNRECOGNIZED` as Synapse answers.
fn known_kind(kind: &RuleKind) -> Result<RuleKind> {
    match kind {
        RuleKind::Override
        | RuleKind::Underride
        | RuleKind::Content
        | RuleKind::Room
        | RuleKind::Sender => Ok(kind.clone()),
        _ => Err(Error::new(
            ErrorKind::UnrecognizedRequest,
            format!("Unknown push rule kind {kind}"),
        )),
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
