//! Push rule evaluation: what a user's rules say to do with events. One home for it: unread
//! counts in `/sync` and the notifications pushers are sent both come from here.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#push-rules>

use std::sync::Arc;

use palisade_core::Result;
use ruma::{
    RoomId, UInt, UserId,
    push::{Action, PushConditionRoomCtx},
    serde::Raw,
};

use crate::{AccountDataService, AccountService, rooms::RoomService};

/// Evaluates users' push rules against events.
pub struct PushRuleEvaluator {
    rooms: Arc<RoomService>,
    accounts: Arc<AccountService>,
    account_data: Arc<AccountDataService>,
}

impl PushRuleEvaluator {
    /// An evaluator reading rules from `account_data`.
    pub fn new(
        rooms: Arc<RoomService>,
        accounts: Arc<AccountService>,
        account_data: Arc<AccountDataService>,
    ) -> Self {
        Self { rooms, accounts, account_data }
    }

    /// The actions `user`'s push rules give each of `events` (of one room), in order.
    pub async fn actions<T>(
        &self,
        user: &UserId,
        room_id: &RoomId,
        events: &[Raw<T>],
    ) -> Result<Vec<Vec<Action>>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let rules = self.account_data.push_rules(user).await?;
        let joined = self.rooms.joined_count(room_id).await?;
        let display_name = self
            .accounts
            .user(user)
            .await?
            .and_then(|u| u.displayname)
            .unwrap_or_else(|| user.localpart().to_owned());
        let context = PushConditionRoomCtx::new(
            room_id.to_owned(),
            UInt::new(joined).unwrap_or_default(),
            user.to_owned(),
            display_name,
        );
        let mut actions = Vec::with_capacity(events.len());
        for event in events {
            actions.push(rules.get_actions(event, &context).await.to_vec());
        }
        Ok(actions)
    }
}
