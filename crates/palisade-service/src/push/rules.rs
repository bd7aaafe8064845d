//! Push rule evaluation: what a user's rules say to do with events. One home for it: unread
//! counts in `/sync` and the notifications pushers are sent both come from here.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#push-rules>

use std::sync::Arc;

use palisade_core::Result;
use ruma::{
    OwnedRoomId, RoomId, UInt, UserId,
    push::{Action, PushConditionPowerLevelsCtx, PushConditionRoomCtx},
    serde::Raw,
};

use crate::{AccountDataService, AccountService, rooms::RoomService};

/// A room as push rules see it.
pub struct RoomContext {
    room_id: OwnedRoomId,
    joined: u64,
    /// Who may notify the whole room (`@room`).
    power_levels: Option<PushConditionPowerLevelsCtx>,
}

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

    /// What rules are evaluated against in a room, read once for all its recipients.
    pub async fn room(&self, room_id: &RoomId) -> Result<RoomContext> {
        let joined = self.rooms.joined_count(room_id).await?;
        let power_levels = self.rooms.current_power_levels(room_id).await?.map(Into::into);
        Ok(RoomContext { room_id: room_id.to_owned(), joined, power_levels })
    }

    /// The actions `user`'s push rules give each of `events` (of the room), in order.
    pub async fn actions<T>(
        &self,
        user: &UserId,
        room: &RoomContext,
        events: &[Raw<T>],
    ) -> Result<Vec<Vec<Action>>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let rules = self.account_data.push_rules(user).await?;
        let display_name = self
            .accounts
            .user(user)
            .await?
            .and_then(|u| u.displayname)
            .unwrap_or_else(|| user.localpart().to_owned());
        let mut context = PushConditionRoomCtx::new(
            room.room_id.clone(),
            UInt::new(room.joined).unwrap_or_default(),
            user.to_owned(),
            display_name,
        );
        // Without power levels ruma lets no one notify the room (`@room` never rings).
        if let Some(power_levels) = &room.power_levels {
            context = context.with_power_levels(power_levels.clone());
        }
        let mut actions = Vec::with_capacity(events.len());
        for event in events {
            actions.push(rules.get_actions(event, &context).await.to_vec());
        }
        Ok(actions)
    }
}
