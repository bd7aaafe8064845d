//! The deprecated global `/initialSync`, which bots and bridges written against r0 still call
//! (Synapse serves it): every room of the user with its state and latest messages, and the
//! account data, with a token to poll `/events` from.

use palisade_core::Result;
use ruma::{
    OwnedRoomId,
    api::client::{peeking::get_current_state::v3::PaginationChunk, room::Visibility},
    events::{AnyGlobalAccountDataEvent, AnyRoomAccountDataEvent, AnyStateEvent, AnyTimelineEvent},
    serde::Raw,
};
use serde::Serialize;
use serde_json::value::RawValue;

use super::SyncService;
use crate::{
    events::event_of,
    rooms::stream_token,
    trust::{Actor, Need},
};

/// The global initial sync.
#[derive(Debug, Serialize)]
pub struct InitialSync {
    /// Where `/events` continues from.
    pub end: String,
    /// Presence (not served here: always empty).
    pub presence: Vec<Box<RawValue>>,
    /// The user's global account data.
    pub account_data: Vec<Raw<AnyGlobalAccountDataEvent>>,
    /// The rooms the user is in or invited to.
    pub rooms: Vec<InitialSyncRoom>,
}

/// One room of a global initial sync.
#[derive(Debug, Serialize)]
pub struct InitialSyncRoom {
    /// The room.
    pub room_id: OwnedRoomId,
    /// The user's membership (`join` or `invite`).
    pub membership: String,
    /// The latest messages (joined rooms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<PaginationChunk>,
    /// The current state (joined rooms).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub state: Vec<Raw<AnyStateEvent>>,
    /// Whether the room is in the public directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visibility: Option<Visibility>,
    /// The user's account data for the room (tags included).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub account_data: Vec<Raw<AnyRoomAccountDataEvent>>,
    /// The invite (invited rooms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invite: Option<Raw<AnyTimelineEvent>>,
}

impl SyncService {
    /// Every room the user is in (with up to `limit` latest messages and the current state)
    /// or invited to, and their account data.
    pub async fn initial_sync(&self, actor: Actor<'_>, limit: usize) -> Result<InitialSync> {
        self.e2ee.trust().require(actor, Need::RoomAccess, "initial_sync").await?;
        let user = actor.user();
        let end = stream_token(self.rooms.position());
        let now = self.account_data.position().await?;
        let account_data = self.account_data.changed_between(user, 0, now).await?;
        let mut rooms = Vec::new();
        for membership in self.rooms.memberships_of(user).await? {
            let room_id = membership.room_id.clone();
            let room_data = account_data
                .iter()
                .filter(|row| row.room_id.as_ref() == Some(&room_id))
                .map(|row| event_of(&row.kind, None, &row.content))
                .collect::<Result<Vec<_>>>()?;
            let room = match membership.membership.as_str() {
                "join" => {
                    let joined = self.rooms.initial_sync(actor, &room_id, limit).await?;
                    InitialSyncRoom {
                        room_id,
                        membership: membership.membership,
                        messages: joined.messages,
                        state: joined.state,
                        visibility: joined.visibility,
                        account_data: room_data,
                        invite: None,
                    }
                }
                "invite" => {
                    let Some(row) = self.rooms.stored_event(&membership.event_id).await? else {
                        continue;
                    };
                    let invite = self.rooms.format_events(&room_id, &[row], None).await?;
                    InitialSyncRoom {
                        room_id,
                        membership: membership.membership,
                        messages: None,
                        state: Vec::new(),
                        visibility: None,
                        account_data: room_data,
                        invite: invite.into_iter().next(),
                    }
                }
                _ => continue,
            };
            rooms.push(room);
        }
        let account_data = account_data
            .iter()
            .filter(|row| row.room_id.is_none())
            .map(|row| event_of(&row.kind, None, &row.content))
            .collect::<Result<_>>()?;
        Ok(InitialSync { end, presence: Vec::new(), account_data, rooms })
    }
}
