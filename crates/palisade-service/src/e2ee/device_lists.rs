//! Device list changes: whose devices a user's clients must fetch again.

use std::collections::BTreeSet;

use palisade_core::Result;
use ruma::{OwnedUserId, UserId};

use super::E2eeService;

/// Users whose keys changed, and users who no longer share a room.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceListChanges {
    /// Users to refetch keys for.
    pub changed: Vec<OwnedUserId>,
    /// Users no longer sharing any room with the requester.
    pub left: Vec<OwnedUserId>,
}

impl E2eeService {
    /// Changes between two positions of the device-list and event streams: key changes of
    /// users sharing a room with `user` (and `user`'s own), users who joined a shared room (their
    /// keys are new to the requester's clients), and users who stopped sharing every room.
    pub async fn device_list_changes(
        &self,
        user: &UserId,
        since_keys: u64,
        since_events: u64,
    ) -> Result<DeviceListChanges> {
        let mut shared: BTreeSet<OwnedUserId> = BTreeSet::new();
        let mut joined_since: BTreeSet<OwnedUserId> = BTreeSet::new();
        let mut departed: BTreeSet<OwnedUserId> = BTreeSet::new();
        for membership in self.rooms.rooms_of_user(user).await? {
            let mine_is_new = membership.stream_pos > since_events;
            match membership.membership.as_str() {
                "join" => {
                    for member in self.rooms.members(&membership.room_id).await? {
                        let changed = mine_is_new || member.stream_pos > since_events;
                        match member.membership.as_str() {
                            "join" => {
                                if changed {
                                    joined_since.insert(member.user_id.clone());
                                }
                                shared.insert(member.user_id);
                            }
                            "leave" | "ban" if changed => {
                                departed.insert(member.user_id);
                            }
                            _ => {}
                        }
                    }
                }
                "leave" | "ban" if mine_is_new => {
                    for member in self.rooms.members(&membership.room_id).await? {
                        departed.insert(member.user_id);
                    }
                }
                _ => {}
            }
        }
        shared.insert(user.to_owned());
        let mut changed: BTreeSet<OwnedUserId> = self
            .store
            .device_list_changes(since_keys)
            .await?
            .into_iter()
            .filter(|u| shared.contains(u))
            .collect();
        changed.extend(joined_since);
        let left = departed.into_iter().filter(|u| !shared.contains(u)).collect();
        Ok(DeviceListChanges { changed: changed.into_iter().collect(), left })
    }
}
