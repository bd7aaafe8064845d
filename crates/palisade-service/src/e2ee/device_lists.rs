//! Device list changes: whose devices a user's clients must fetch again.

use std::collections::BTreeSet;

use palisade_core::Result;
use palisade_storage::MembershipRow;
use ruma::{OwnedRoomId, OwnedUserId, UserId};

use super::E2eeService;

/// Users whose keys changed, and users who no longer share a room.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceListChanges {
    /// Users to refetch keys for.
    pub changed: Vec<OwnedUserId>,
    /// Users no longer sharing any room with the requester.
    pub left: Vec<OwnedUserId>,
}

/// Sorts a membership into users whose keys are new to the requester and users who left.
fn note(
    member: MembershipRow,
    changed: &mut BTreeSet<OwnedUserId>,
    departed: &mut BTreeSet<OwnedUserId>,
) {
    match member.membership.as_str() {
        "join" => {
            changed.insert(member.user_id);
        }
        "leave" | "ban" => {
            departed.insert(member.user_id);
        }
        _ => {}
    }
}

impl E2eeService {
    /// Changes between two positions of the device-list and event streams: key changes of
    /// users sharing a room with `user` (and `user`'s own), users who joined a shared room (their
    /// keys are new to the requester's clients), and users who stopped sharing every room.
    ///
    /// Only memberships that changed are read, and the set of users sharing a room only when
    /// there are key changes or departures to filter: a sync wake-up for a message stays cheap.
    pub async fn device_list_changes(
        &self,
        user: &UserId,
        since_keys: u64,
        since_events: u64,
    ) -> Result<DeviceListChanges> {
        let mut changed: BTreeSet<OwnedUserId> = BTreeSet::new();
        let mut departed: BTreeSet<OwnedUserId> = BTreeSet::new();
        let mut joined_rooms: Vec<OwnedRoomId> = Vec::new();
        // Rooms joined since: every member is new to the user; other joined rooms: only the
        // memberships that changed, read in one query.
        for member in self.rooms.members_changed_in_joined_rooms(user, since_events).await? {
            note(member, &mut changed, &mut departed);
        }
        for membership in self.rooms.memberships_of(user).await? {
            let mine_is_new = membership.stream_pos > since_events;
            match membership.membership.as_str() {
                "join" => {
                    if mine_is_new {
                        for member in self.rooms.membership_rows(&membership.room_id).await? {
                            note(member, &mut changed, &mut departed);
                        }
                    }
                    joined_rooms.push(membership.room_id);
                }
                "leave" | "ban" if mine_is_new => {
                    for member in self.rooms.membership_rows(&membership.room_id).await? {
                        departed.insert(member.user_id);
                    }
                }
                _ => {}
            }
        }
        let key_changes = self.store.device_list_changes(since_keys).await?;
        if key_changes.is_empty() && departed.is_empty() {
            return Ok(DeviceListChanges {
                changed: changed.into_iter().collect(),
                left: Vec::new(),
            });
        }
        let mut shared: BTreeSet<OwnedUserId> = BTreeSet::from([user.to_owned()]);
        for room in &joined_rooms {
            for member in self.rooms.membership_rows(room).await? {
                if member.membership == "join" {
                    shared.insert(member.user_id);
                }
            }
        }
        changed.extend(key_changes.into_iter().filter(|u| shared.contains(u)));
        let left = departed.into_iter().filter(|u| !shared.contains(u)).collect();
        Ok(DeviceListChanges { changed: changed.into_iter().collect(), left })
    }

    /// Device-list changes after `since`, in order: `(position, user)`.
    pub async fn device_list_changes_after(
        &self,
        since: u64,
        limit: usize,
    ) -> Result<Vec<(u64, OwnedUserId)>> {
        self.store.device_list_changes_after(since, limit).await
    }

    /// The current device-list stream position.
    pub async fn device_list_position(&self) -> Result<u64> {
        self.store.max_device_list_pos().await
    }

    /// `m.device_list_update` EDUs (JSON) announcing a local user's devices as other users
    /// see them (untrusted devices are not announced), at device-list position `position`,
    /// and an `m.signing_key_update` with the user's cross-signing keys when there are any
    /// (the stream does not say which of the two changed).
    pub async fn device_list_updates(&self, user: &UserId, position: u64) -> Result<Vec<String>> {
        let wanted = std::collections::BTreeMap::from([(user.to_owned(), Vec::new())]);
        let keys = self.query_local_keys(None, &wanted).await?;
        let names: std::collections::BTreeMap<_, _> = self
            .accounts
            .devices(user)
            .await?
            .into_iter()
            .map(|d| (d.device_id.to_string(), d.display_name))
            .collect();
        let mut edus = Vec::new();
        if let Some(devices) = keys.device_keys.get(user) {
            for (device_id, device_keys) in devices {
                let mut content = serde_json::json!({
                    "user_id": user,
                    "device_id": device_id,
                    "stream_id": position,
                    "prev_id": [],
                    "deleted": false,
                    "keys": device_keys,
                });
                if let Some(Some(name)) = names.get(device_id.as_str()) {
                    content["device_display_name"] = serde_json::json!(name);
                }
                let edu =
                    serde_json::json!({ "edu_type": "m.device_list_update", "content": content });
                edus.push(edu.to_string());
            }
        }
        if let Some(master) = keys.master_keys.get(user) {
            let mut content = serde_json::json!({ "user_id": user, "master_key": master });
            if let Some(self_signing) = keys.self_signing_keys.get(user) {
                content["self_signing_key"] = serde_json::json!(self_signing);
            }
            let edu = serde_json::json!({ "edu_type": "m.signing_key_update", "content": content });
            edus.push(edu.to_string());
        }
        Ok(edus)
    }
}
