//! `RoomStore` on SQLite.

use std::collections::HashSet;

use async_trait::async_trait;
use palisade_core::{Error, Result};
use palisade_storage::{
    Aggregations, Appended, EventRow, MembershipRow, NewEvent, RoomSnapshot, RoomStore, SearchHit,
    SearchQuery, StateMap, StateUpdate,
};
use ruma::{
    DeviceId, EventId, OwnedEventId, OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomAliasId,
    RoomId, RoomVersionId, ServerName, UserId, api::Direction,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::{Database, parse_id, search, sql};

/// Longest chain of delta snapshots before a full snapshot is written; bounds state reads.
const MAX_STATE_CHAIN: i64 = 100;

pub(crate) const EVENT_COLUMNS: &str = "stream_pos, event_id, room_id, type, state_key, sender, json, \
                             unsigned, txn_device, txn_id, redacted_by, state_group, outlier";

pub(crate) fn event_row(row: &Row<'_>) -> rusqlite::Result<EventRow> {
    let txn_device: Option<String> = row.get(8)?;
    let txn_id: Option<String> = row.get(9)?;
    Ok(EventRow {
        stream_pos: row.get(0)?,
        event_id: parse_id(row, 1)?,
        room_id: parse_id(row, 2)?,
        kind: row.get(3)?,
        state_key: row.get(4)?,
        sender: parse_id(row, 5)?,
        json: row.get(6)?,
        unsigned: row.get(7)?,
        txn: txn_device.zip(txn_id).map(|(device, txn)| (device.into(), txn)),
        redacted_by: row.get::<_, Option<String>>(10)?.map(EventId::parse).transpose().map_err(
            |_| {
                rusqlite::Error::InvalidColumnType(
                    10,
                    "redacted_by".into(),
                    rusqlite::types::Type::Text,
                )
            },
        )?,
        state_group: row.get(11)?,
        outlier: row.get(12)?,
    })
}

fn membership_row(row: &Row<'_>) -> rusqlite::Result<MembershipRow> {
    Ok(MembershipRow {
        room_id: parse_id(row, 0)?,
        user_id: parse_id(row, 1)?,
        membership: row.get(2)?,
        event_id: parse_id(row, 3)?,
        stream_pos: row.get(4)?,
    })
}

/// The groups of a delta chain from `?1` back to its full snapshot, nearest first (`depth`).
const STATE_CHAIN: &str = "WITH RECURSIVE chain(id, depth) AS (
        SELECT ?1, 0
        UNION ALL
        SELECT g.prev_group, chain.depth + 1 FROM state_groups g JOIN chain ON g.id = chain.id
        WHERE g.prev_group IS NOT NULL
    )";

/// Reads the full state of a snapshot by walking its delta chain, newest first.
fn state_of_group(conn: &Connection, group: u64) -> rusqlite::Result<StateMap> {
    let mut state = StateMap::new();
    let mut entries = conn.prepare_cached(&format!(
        "{STATE_CHAIN} SELECT e.type, e.state_key, e.event_id FROM chain
         JOIN state_group_entries e ON e.group_id = chain.id ORDER BY chain.depth"
    ))?;
    let rows = entries.query_map([group], |row| {
        Ok(((row.get::<_, String>(0)?, row.get::<_, String>(1)?), parse_id(row, 2)?))
    })?;
    // Nearer groups come first and override the snapshot below them.
    for row in rows {
        let (key, event_id) = row?;
        state.entry(key).or_insert(event_id);
    }
    Ok(state)
}

/// Writes the snapshot after a state event: a one-row delta, or a full copy when the chain
/// would grow past [`MAX_STATE_CHAIN`].
fn new_state_group(
    conn: &Connection,
    room_id: &str,
    prev_group: Option<u64>,
    key: (&str, &str),
    event_id: &str,
) -> rusqlite::Result<u64> {
    let chain_len: i64 = match prev_group {
        Some(prev) => conn
            .prepare_cached("SELECT chain_len FROM state_groups WHERE id = ?1")?
            .query_row([prev], |row| row.get(0))?,
        None => -1,
    };
    let mut insert_entry = conn.prepare_cached(
        "INSERT OR REPLACE INTO state_group_entries (group_id, type, state_key, event_id)
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    let insert_group = |prev: Option<u64>, len: i64| -> rusqlite::Result<u64> {
        conn.prepare_cached(
            "INSERT INTO state_groups (room_id, prev_group, chain_len) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![room_id, prev, len])?;
        Ok(conn.last_insert_rowid() as u64)
    };
    let group = match prev_group {
        Some(prev) if chain_len + 1 >= MAX_STATE_CHAIN => {
            let full = state_of_group(conn, prev)?;
            let group = insert_group(None, 0)?;
            for ((kind, state_key), id) in &full {
                insert_entry.execute(params![group, kind, state_key, id.as_str()])?;
            }
            group
        }
        prev => insert_group(prev, chain_len + 1)?,
    };
    insert_entry.execute(params![group, key.0, key.1, event_id])?;
    Ok(group)
}

fn append(conn: &Connection, event: &NewEvent) -> Result<Appended> {
    let room_id = event.room_id.as_str();
    let room_group: Option<u64> = conn
        .prepare_cached("SELECT state_group FROM rooms WHERE room_id = ?1")
        .and_then(|mut s| s.query_row([room_id], |row| row.get(0)).optional())
        .map_err(sql)?;
    let mut resolved_members = None;
    let mut current_group = None;
    let state_group = match (&event.state, &event.state_key, &event.creates_room, room_group) {
        (StateUpdate::Outlier, _, None, Some(current)) => {
            let stream_pos = insert_event(conn, event, current, true).map_err(sql)?;
            return Ok(Appended { stream_pos, state_group: current, current_group: current });
        }
        (StateUpdate::MembershipOnly, _, None, Some(current)) => {
            let stream_pos = insert_event(conn, event, current, true).map_err(sql)?;
            if let (Some(membership), Some(user_id)) = (&event.membership, &event.state_key) {
                let id = event.event_id.as_str();
                set_membership(conn, room_id, user_id, membership, id, stream_pos).map_err(sql)?;
            }
            return Ok(Appended { stream_pos, state_group: current, current_group: current });
        }
        (StateUpdate::History, _, None, Some(current)) => {
            let was_outlier = conn
                .prepare_cached("SELECT stream_pos FROM events WHERE event_id = ?1 AND outlier = 1")
                .and_then(|mut s| {
                    s.query_row([event.event_id.as_str()], |row| row.get(0)).optional()
                })
                .map_err(sql)?;
            let stream_pos = match was_outlier {
                Some(pos) => {
                    conn.execute(
                        "UPDATE events SET outlier = 0, state_group = ?2 WHERE stream_pos = ?1",
                        params![pos, current],
                    )
                    .map_err(sql)?;
                    pos
                }
                None => insert_event(conn, event, current, false).map_err(sql)?,
            };
            return Ok(Appended { stream_pos, state_group: current, current_group: current });
        }
        (StateUpdate::Resolved { after, current }, _, None, Some(base)) => {
            let old = state_of_group(conn, base).map_err(sql)?;
            let after_group = write_state(conn, room_id, base, &old, after).map_err(sql)?;
            let group = if current == after {
                after_group
            } else {
                write_state(conn, room_id, base, &old, current).map_err(sql)?
            };
            conn.execute(
                "UPDATE rooms SET state_group = ?2 WHERE room_id = ?1",
                params![room_id, group],
            )
            .map_err(sql)?;
            current_group = Some(group);
            resolved_members = Some((old, current));
            after_group
        }
        (StateUpdate::Linear, Some(state_key), Some(version), None) => {
            let group = new_state_group(
                conn,
                room_id,
                None,
                (&event.kind, state_key),
                event.event_id.as_str(),
            )
            .map_err(sql)?;
            conn.execute(
                "INSERT INTO rooms (room_id, room_version, state_group) VALUES (?1, ?2, ?3)",
                params![room_id, version.as_str(), group],
            )
            .map_err(sql)?;
            group
        }
        (_, _, Some(_), Some(_)) => return Err(Error::internal("room already exists")),
        (_, _, Some(_), None) => {
            return Err(Error::internal("a new room starts with its create event, linearly"));
        }
        (_, _, _, None) => return Err(Error::not_found("Unknown room")),
        (StateUpdate::Linear, Some(state_key), None, Some(current)) => {
            let group = new_state_group(
                conn,
                room_id,
                Some(current),
                (&event.kind, state_key),
                event.event_id.as_str(),
            )
            .map_err(sql)?;
            conn.execute(
                "UPDATE rooms SET state_group = ?2 WHERE room_id = ?1",
                params![room_id, group],
            )
            .map_err(sql)?;
            group
        }
        (StateUpdate::Linear, None, None, Some(current)) => current,
    };
    let stream_pos = insert_event(conn, event, state_group, false).map_err(sql)?;

    let mut drop_extremity = conn
        .prepare_cached("DELETE FROM room_extremities WHERE room_id = ?1 AND event_id = ?2")
        .map_err(sql)?;
    for prev in &event.prev_events {
        drop_extremity.execute(params![room_id, prev.as_str()]).map_err(sql)?;
    }
    conn.prepare_cached(
        "INSERT INTO room_extremities (room_id, event_id, depth) VALUES (?1, ?2, ?3)",
    )
    .and_then(|mut s| s.execute(params![room_id, event.event_id.as_str(), event.depth]))
    .map_err(sql)?;

    match resolved_members {
        Some((old, current)) => {
            update_memberships(conn, room_id, &old, current, stream_pos).map_err(sql)?;
        }
        None => {
            if let (Some(membership), Some(user_id)) = (&event.membership, &event.state_key) {
                set_membership(
                    conn,
                    room_id,
                    user_id,
                    membership,
                    event.event_id.as_str(),
                    stream_pos,
                )
                .map_err(sql)?;
            }
        }
    }
    if let Some(redacts) = &event.redacts {
        conn.prepare_cached(
            "UPDATE events SET redacted_by = ?2 WHERE event_id = ?1 AND room_id = ?3
             AND redacted_by IS NULL",
        )
        .and_then(|mut s| s.execute(params![redacts.as_str(), event.event_id.as_str(), room_id]))
        .map_err(sql)?;
    }
    let current_group = current_group.unwrap_or(state_group);
    Ok(Appended { stream_pos, state_group, current_group })
}

/// The SQL order of a walk in `direction` by stream position.
fn sql_order(direction: Direction) -> &'static str {
    match direction {
        Direction::Backward => "DESC",
        Direction::Forward => "ASC",
    }
}

/// Inserts the event row; returns its stream position.
fn insert_event(
    conn: &Connection,
    event: &NewEvent,
    state_group: u64,
    outlier: bool,
) -> rusqlite::Result<u64> {
    let (txn_device, txn_id) = match &event.txn {
        Some((device, txn)) => (Some(device.as_str()), Some(txn.as_str())),
        None => (None, None),
    };
    if !outlier {
        // An event known as an outlier now joins the timeline: the reference copy goes.
        conn.prepare_cached("DELETE FROM events WHERE event_id = ?1 AND outlier = 1")?
            .execute([event.event_id.as_str()])?;
    }
    conn.prepare_cached(
        "INSERT INTO events (event_id, room_id, type, state_key, sender, depth, origin_server_ts,
         state_group, json, unsigned, txn_device, txn_id, outlier)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        event.event_id.as_str(),
        event.room_id.as_str(),
        event.kind,
        event.state_key,
        event.sender.as_str(),
        event.depth,
        event.origin_server_ts,
        state_group,
        event.json,
        event.unsigned,
        txn_device,
        txn_id,
        outlier
    ])?;
    let stream_pos = conn.last_insert_rowid() as u64;
    if !outlier {
        // A relation (`m.relates_to` with a `rel_type`) is indexed by what it relates to.
        conn.prepare_cached(
            "INSERT OR IGNORE INTO event_relations (relating_id, relates_to, rel_type)
             SELECT event_id, json_extract(json, '$.content.\"m.relates_to\".event_id'),
                    json_extract(json, '$.content.\"m.relates_to\".rel_type')
             FROM events WHERE stream_pos = ?1
               AND json_type(json, '$.content.\"m.relates_to\".event_id') = 'text'
               AND json_type(json, '$.content.\"m.relates_to\".rel_type') = 'text'",
        )?
        .execute([stream_pos])?;
    }
    Ok(stream_pos)
}

/// Brings the membership index from state `old` to state `new`.
fn update_memberships(
    conn: &Connection,
    room_id: &str,
    old: &StateMap,
    new: &StateMap,
    stream_pos: u64,
) -> rusqlite::Result<()> {
    let mut membership_of = conn.prepare_cached(
        "SELECT json_extract(json, '$.content.membership') FROM events WHERE event_id = ?1",
    )?;
    for ((kind, user_id), id) in new {
        if kind != "m.room.member" || old.get(&(kind.clone(), user_id.clone())) == Some(id) {
            continue;
        }
        let membership: Option<String> =
            membership_of.query_row([id.as_str()], |row| row.get(0)).optional()?.flatten();
        if let Some(membership) = membership {
            set_membership(conn, room_id, user_id, &membership, id.as_str(), stream_pos)?;
        }
    }
    Ok(())
}

/// Records a user's membership in a room.
fn set_membership(
    conn: &Connection,
    room_id: &str,
    user_id: &str,
    membership: &str,
    event_id: &str,
    stream_pos: u64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO memberships (room_id, user_id, membership, event_id, stream_pos)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership,
           event_id = excluded.event_id, forgotten = 0,
           -- A profile change (join to join) is not a new membership: syncs, unread
           -- counts and device lists keep counting from the real join.
           stream_pos = CASE WHEN memberships.membership = excluded.membership
                        THEN memberships.stream_pos ELSE excluded.stream_pos END",
    )?
    .execute(params![room_id, user_id, membership, event_id, stream_pos])
    .map(drop)
}

/// Writes `state` as a snapshot based on snapshot `base` (whose full state is `base_state`): a
/// delta of the changed entries, or a full copy when entries disappear or the chain is long.
fn write_state(
    conn: &Connection,
    room_id: &str,
    base: u64,
    base_state: &StateMap,
    state: &StateMap,
) -> rusqlite::Result<u64> {
    if state == base_state {
        return Ok(base);
    }
    let chain_len: i64 = conn
        .prepare_cached("SELECT chain_len FROM state_groups WHERE id = ?1")?
        .query_row([base], |row| row.get(0))?;
    let shrinks = base_state.keys().any(|key| !state.contains_key(key));
    let (prev, len) = if shrinks || chain_len + 1 >= MAX_STATE_CHAIN {
        (None, 0)
    } else {
        (Some(base), chain_len + 1)
    };
    conn.prepare_cached(
        "INSERT INTO state_groups (room_id, prev_group, chain_len) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![room_id, prev, len])?;
    let group = conn.last_insert_rowid() as u64;
    let mut insert_entry = conn.prepare_cached(
        "INSERT INTO state_group_entries (group_id, type, state_key, event_id)
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    for ((kind, state_key), id) in state {
        if prev.is_none() || base_state.get(&(kind.clone(), state_key.clone())) != Some(id) {
            insert_entry.execute(params![group, kind, state_key, id.as_str()])?;
        }
    }
    Ok(group)
}

#[async_trait]
impl RoomStore for Database {
    async fn append_event(&self, event: NewEvent) -> Result<Appended> {
        self.write(move |conn| append(conn, &event)).await
    }

    async fn import_room(
        &self,
        room_id: &RoomId,
        version: &RoomVersionId,
        authoritative: bool,
    ) -> Result<()> {
        let (room_id, version) = (room_id.to_string(), version.to_string());
        self.write(move |conn| {
            let exists = conn
                .prepare_cached("SELECT 1 FROM rooms WHERE room_id = ?1")
                .and_then(|mut s| s.exists([&room_id]))
                .map_err(sql)?;
            if exists {
                if authoritative {
                    conn.execute(
                        "UPDATE rooms SET room_version = ?2 WHERE room_id = ?1",
                        params![room_id, version],
                    )
                    .map_err(sql)?;
                }
                return Ok(());
            }
            conn.execute(
                "INSERT INTO state_groups (room_id, prev_group, chain_len) VALUES (?1, NULL, 0)",
                [&room_id],
            )
            .map_err(sql)?;
            let group = conn.last_insert_rowid();
            conn.execute(
                "INSERT INTO rooms (room_id, room_version, state_group) VALUES (?1, ?2, ?3)",
                params![room_id, version, group],
            )
            .map(drop)
            .map_err(sql)
        })
        .await
    }

    async fn events_after(&self, pos: u64, limit: usize) -> Result<Vec<EventRow>> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE stream_pos > ?1 AND outlier = 0
                 ORDER BY stream_pos LIMIT ?2"
            ))?
            .query_map(params![pos, limit as i64], event_row)?
            .collect()
        })
    }

    async fn reset_room_state(&self, room_id: &RoomId, state: StateMap) -> Result<u64> {
        let room_id = room_id.to_string();
        self.write(move |conn| {
            let base: u64 = conn
                .prepare_cached("SELECT state_group FROM rooms WHERE room_id = ?1")
                .and_then(|mut s| s.query_row([&room_id], |row| row.get(0)))
                .map_err(sql)?;
            let old = state_of_group(conn, base).map_err(sql)?;
            let group = write_state(conn, &room_id, base, &old, &state).map_err(sql)?;
            conn.execute(
                "UPDATE rooms SET state_group = ?2 WHERE room_id = ?1",
                params![room_id, group],
            )
            .map_err(sql)?;
            let position: u64 = conn
                .query_row("SELECT coalesce(max(stream_pos), 0) FROM events", [], |r| r.get(0))
                .map_err(sql)?;
            update_memberships(conn, &room_id, &old, &state, position).map_err(sql)?;
            // A membership the room's state does not have (an invite that was never real, say)
            // is not one.
            let members: std::collections::HashSet<&str> = state
                .keys()
                .filter(|(kind, _)| kind == "m.room.member")
                .map(|(_, user)| user.as_str())
                .collect();
            let indexed: Vec<String> = conn
                .prepare_cached("SELECT user_id FROM memberships WHERE room_id = ?1")
                .and_then(|mut s| s.query_map([&room_id], |row| row.get(0))?.collect())
                .map_err(sql)?;
            for user in indexed.iter().filter(|u| !members.contains(u.as_str())) {
                conn.execute(
                    "DELETE FROM memberships WHERE room_id = ?1 AND user_id = ?2",
                    params![room_id, user],
                )
                .map_err(sql)?;
            }
            Ok(group)
        })
        .await
    }

    async fn has_event(&self, event_id: &EventId) -> Result<bool> {
        self.read(|conn| {
            conn.prepare_cached("SELECT 1 FROM events WHERE event_id = ?1")?
                .exists([event_id.as_str()])
        })
    }

    async fn room_snapshot(&self, room_id: &RoomId) -> Result<Option<RoomSnapshot>> {
        self.read(|conn| {
            let Some((version, group)) = conn
                .prepare_cached("SELECT room_version, state_group FROM rooms WHERE room_id = ?1")?
                .query_row([room_id.as_str()], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, u64>(1)?))
                })
                .optional()?
            else {
                return Ok(None);
            };
            let state = state_of_group(conn, group)?;
            let extremities = conn
                .prepare_cached("SELECT event_id, depth FROM room_extremities WHERE room_id = ?1")?
                .query_map([room_id.as_str()], |row| Ok((parse_id(row, 0)?, row.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let version = RoomVersionId::try_from(version.as_str()).map_err(|_| {
                rusqlite::Error::InvalidColumnType(
                    0,
                    "room_version".into(),
                    rusqlite::types::Type::Text,
                )
            })?;
            Ok(Some(RoomSnapshot { version, state_group: group, state, extremities }))
        })
    }

    async fn event(&self, event_id: &EventId) -> Result<Option<EventRow>> {
        self.read(|conn| {
            conn.prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id = ?1"))?
                .query_row([event_id.as_str()], event_row)
                .optional()
        })
    }

    async fn state_after(&self, event_id: &EventId) -> Result<Option<StateMap>> {
        self.read(|conn| {
            let group: Option<u64> = conn
                .prepare_cached("SELECT state_group FROM events WHERE event_id = ?1")?
                .query_row([event_id.as_str()], |row| row.get(0))
                .optional()?;
            group.map(|group| state_of_group(conn, group)).transpose()
        })
    }

    async fn timeline(
        &self,
        room_id: &RoomId,
        after: u64,
        up_to: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<EventRow>> {
        let order = sql_order(direction);
        let up_to = i64::try_from(up_to).unwrap_or(i64::MAX);
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE room_id = ?1 AND stream_pos > ?2
                 AND stream_pos <= ?3 AND outlier = 0 ORDER BY stream_pos {order} LIMIT ?4"
            ))?
            .query_map(params![room_id.as_str(), after as i64, up_to, limit as i64], event_row)?
            .collect()
        })
    }

    async fn event_for_txn(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        txn_id: &str,
    ) -> Result<Option<OwnedEventId>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT event_id FROM events WHERE sender = ?1 AND txn_device = ?2 AND txn_id = ?3",
            )?
            .query_row([user_id.as_str(), device_id.as_str(), txn_id], |row| parse_id(row, 0))
            .optional()
        })
    }

    async fn membership(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<Option<MembershipRow>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT room_id, user_id, membership, event_id, stream_pos FROM memberships
                 WHERE room_id = ?1 AND user_id = ?2",
            )?
            .query_row([room_id.as_str(), user_id.as_str()], membership_row)
            .optional()
        })
    }

    async fn members(&self, room_id: &RoomId) -> Result<Vec<MembershipRow>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT room_id, user_id, membership, event_id, stream_pos FROM memberships
                 WHERE room_id = ?1 ORDER BY user_id",
            )?
            .query_map([room_id.as_str()], membership_row)?
            .collect()
        })
    }

    async fn state_entry(
        &self,
        state_group: u64,
        kind: &str,
        state_key: &str,
    ) -> Result<Option<OwnedEventId>> {
        // The nearest group of the delta chain that sets the key, walked inside SQLite.
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "{STATE_CHAIN} SELECT e.event_id FROM chain JOIN state_group_entries e
                 ON e.group_id = chain.id WHERE e.type = ?2 AND e.state_key = ?3
                 ORDER BY chain.depth LIMIT 1"
            ))?
            .query_row(params![state_group, kind, state_key], |row| parse_id(row, 0))
            .optional()
        })
    }

    async fn server_joined(&self, room_id: &RoomId, server: &ServerName) -> Result<bool> {
        // A user id ends with `:` and its server name; the scan stops at the first match.
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT 1 FROM memberships WHERE room_id = ?1 AND membership = 'join'
                 AND substr(user_id, -length(?2) - 1) = ':' || ?2 LIMIT 1",
            )?
            .exists([room_id.as_str(), server.as_str()])
        })
    }

    async fn joined_count(&self, room_id: &RoomId) -> Result<u64> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT count(*) FROM memberships WHERE room_id = ?1 AND membership = 'join'",
            )?
            .query_row([room_id.as_str()], |row| row.get(0))
        })
    }

    async fn members_changed_in_joined_rooms(
        &self,
        user_id: &UserId,
        since: u64,
    ) -> Result<Vec<MembershipRow>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT m.room_id, m.user_id, m.membership, m.event_id, m.stream_pos
                 FROM memberships mine JOIN memberships m ON m.room_id = mine.room_id
                 WHERE mine.user_id = ?1 AND mine.membership = 'join' AND m.stream_pos > ?2",
            )?
            .query_map(params![user_id.as_str(), since], membership_row)?
            .collect()
        })
    }

    async fn relations(
        &self,
        room_id: &RoomId,
        target: &EventId,
        rel_type: Option<&str>,
        event_type: Option<&str>,
        (after, before): (u64, u64),
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<EventRow>> {
        let order = sql_order(direction);
        let before = i64::try_from(before).unwrap_or(i64::MAX);
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM event_relations CROSS JOIN events ON event_id = relating_id
                 WHERE relates_to = ?1 AND room_id = ?2 AND outlier = 0 AND redacted_by IS NULL
                   AND (?3 IS NULL OR rel_type = ?3) AND (?4 IS NULL OR type = ?4)
                   AND stream_pos > ?5 AND stream_pos < ?6
                 ORDER BY stream_pos {order} LIMIT ?7"
            ))?
            .query_map(
                params![
                    target.as_str(),
                    room_id.as_str(),
                    rel_type,
                    event_type,
                    after as i64,
                    before,
                    limit as i64
                ],
                event_row,
            )?
            .collect()
        })
    }

    async fn aggregations(
        &self,
        room_id: &RoomId,
        targets: &[OwnedEventId],
        user: &UserId,
        up_to: u64,
    ) -> Result<Aggregations> {
        if targets.is_empty() {
            return Ok(Aggregations::default());
        }
        // ?1 the user, ?2 the room, ?3 the last position the user may read, then the targets.
        let list: Vec<String> = (4..4 + targets.len()).map(|i| format!("?{i}")).collect();
        let list = list.join(", ");
        let ids: Vec<&str> = targets.iter().map(|id| id.as_str()).collect();
        let (user, room, up_to) =
            (user.as_str(), room_id.as_str(), i64::try_from(up_to).unwrap_or(i64::MAX));
        // Only relations from the same room, not redacted, that the user may read. `CROSS JOIN`
        // keeps the relations (found by target) outermost: SQLite would otherwise walk the
        // room's events by position, every event of a long room for each page served.
        let visible = "outlier = 0 AND room_id = ?2 AND stream_pos <= ?3 AND redacted_by IS NULL";
        self.read(|conn| {
            let mut params: Vec<&dyn rusqlite::ToSql> = vec![&user, &room, &up_to];
            params.extend(ids.iter().map(|id| id as &dyn rusqlite::ToSql));
            // SQLite takes a bare column of a query with one `max()` from the row with the
            // maximum (hence `sum`, not a second `max`, for whether the user replied).
            let threads = conn
                .prepare_cached(&format!(
                    "SELECT relates_to, count(*), relating_id, max(stream_pos), sum(sender = ?1)
                     FROM event_relations CROSS JOIN events ON event_id = relating_id
                     WHERE rel_type = 'm.thread' AND {visible} AND relates_to IN ({list})
                     GROUP BY relates_to"
                ))?
                .query_map(params.as_slice(), |row| {
                    let replied: i64 = row.get(4)?;
                    Ok((parse_id(row, 0)?, row.get(1)?, parse_id(row, 2)?, replied > 0))
                })?
                .collect::<rusqlite::Result<_>>()?;
            // An edit counts only from the original's sender and of the original's type.
            let edits = conn
                .prepare_cached(&format!(
                    "SELECT relates_to, relating_id, max(stream_pos)
                     FROM event_relations CROSS JOIN events ON event_id = relating_id
                     WHERE rel_type = 'm.replace' AND {visible} AND relates_to IN ({list})
                       AND EXISTS (SELECT 1 FROM events AS original
                                   WHERE original.event_id = relates_to
                                     AND original.sender = events.sender
                                     AND original.type = events.type)
                     GROUP BY relates_to"
                ))?
                .query_map(params.as_slice(), |row| Ok((parse_id(row, 0)?, parse_id(row, 1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let references = conn
                .prepare_cached(&format!(
                    "SELECT relates_to, relating_id
                     FROM event_relations CROSS JOIN events ON event_id = relating_id
                     WHERE rel_type = 'm.reference' AND {visible} AND relates_to IN ({list})
                     ORDER BY stream_pos"
                ))?
                .query_map(params.as_slice(), |row| Ok((parse_id(row, 0)?, parse_id(row, 1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(Aggregations { threads, edits, references })
        })
    }

    async fn annotated(
        &self,
        target: &EventId,
        sender: &UserId,
        kind: &str,
        key: &str,
    ) -> Result<bool> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM event_relations CROSS JOIN events ON event_id = relating_id
                 WHERE relates_to = ?1 AND rel_type = 'm.annotation' AND sender = ?2 AND type = ?3
                   AND redacted_by IS NULL AND outlier = 0
                   AND json_extract(json, '$.content.\"m.relates_to\".key') = ?4)",
            )?
            .query_row(params![target.as_str(), sender.as_str(), kind, key], |row| row.get(0))
        })
    }

    async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>> {
        self.read(|conn| search::search(conn, query))
    }

    async fn search_count(&self, query: &SearchQuery) -> Result<u64> {
        self.read(|conn| search::count(conn, query))
    }

    async fn thread_roots(
        &self,
        room_id: &RoomId,
        before: u64,
        up_to: u64,
        participant: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<(OwnedEventId, u64)>> {
        let (before, up_to) =
            (i64::try_from(before).unwrap_or(i64::MAX), i64::try_from(up_to).unwrap_or(i64::MAX));
        let participant = participant.map(|p| p.as_str());
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT relates_to, max(stream_pos) AS latest
                 FROM event_relations JOIN events ON event_id = relating_id
                 WHERE rel_type = 'm.thread' AND room_id = ?1 AND outlier = 0
                   AND redacted_by IS NULL AND stream_pos <= ?3
                 GROUP BY relates_to
                 HAVING latest < ?2 AND (?4 IS NULL OR max(sender = ?4) = 1
                   OR EXISTS (SELECT 1 FROM events AS root
                              WHERE root.event_id = relates_to AND root.sender = ?4))
                 ORDER BY latest DESC LIMIT ?5",
            )?
            .query_map(
                params![room_id.as_str(), before, up_to, participant, limit as i64],
                |row| Ok((parse_id(row, 0)?, row.get(1)?)),
            )?
            .collect()
        })
    }

    async fn event_near_time(
        &self,
        room_id: &RoomId,
        ts: u64,
        forward: bool,
        up_to: u64,
    ) -> Result<Option<(OwnedEventId, u64)>> {
        let sql = if forward {
            "SELECT event_id, origin_server_ts FROM events
             WHERE room_id = ?1 AND origin_server_ts >= ?2 AND stream_pos <= ?3 AND outlier = 0
             ORDER BY origin_server_ts, stream_pos LIMIT 1"
        } else {
            "SELECT event_id, origin_server_ts FROM events
             WHERE room_id = ?1 AND origin_server_ts <= ?2 AND stream_pos <= ?3 AND outlier = 0
             ORDER BY origin_server_ts DESC, stream_pos DESC LIMIT 1"
        };
        let (ts, up_to) =
            (i64::try_from(ts).unwrap_or(i64::MAX), i64::try_from(up_to).unwrap_or(i64::MAX));
        self.read(|conn| {
            conn.prepare_cached(sql)?
                .query_row(params![room_id.as_str(), ts, up_to], |row| {
                    Ok((parse_id(row, 0)?, row.get(1)?))
                })
                .optional()
        })
    }

    async fn latest_of_types(&self, room_id: &RoomId, types: &[&str]) -> Result<Option<u64>> {
        // Walks the room's events newest first (the usual latest event is a message).
        let list = vec!["?"; types.len()].join(", ");
        let sql = format!(
            "SELECT stream_pos FROM events WHERE room_id = ?1 AND outlier = 0 AND type IN ({list})
             ORDER BY stream_pos DESC LIMIT 1"
        );
        self.read(|conn| {
            let room = room_id.as_str();
            let mut params: Vec<&dyn rusqlite::ToSql> = vec![&room];
            params.extend(types.iter().map(|t| t as &dyn rusqlite::ToSql));
            conn.prepare_cached(&sql)?.query_row(params.as_slice(), |row| row.get(0)).optional()
        })
    }

    async fn rooms_with_events_between(
        &self,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<Option<HashSet<OwnedRoomId>>> {
        let up_to = i64::try_from(up_to).unwrap_or(i64::MAX);
        let rooms: Vec<OwnedRoomId> = self.read(|conn| {
            conn.prepare_cached(
                "SELECT room_id FROM events WHERE stream_pos > ?1 AND stream_pos <= ?2
                 AND outlier = 0 LIMIT ?3",
            )?
            .query_map(params![after as i64, up_to, limit as i64 + 1], |row| parse_id(row, 0))?
            .collect()
        })?;
        Ok((rooms.len() <= limit).then(|| rooms.into_iter().collect()))
    }

    async fn rooms_of_user(&self, user_id: &UserId) -> Result<Vec<MembershipRow>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT room_id, user_id, membership, event_id, stream_pos FROM memberships
                 WHERE user_id = ?1 AND forgotten = 0 ORDER BY room_id",
            )?
            .query_map([user_id.as_str()], membership_row)?
            .collect()
        })
    }

    async fn forget_room(&self, room_id: &RoomId, user_id: &UserId) -> Result<bool> {
        let (room_id, user_id) = (room_id.to_string(), user_id.to_string());
        self.write(move |conn| {
            conn.execute(
                "UPDATE memberships SET forgotten = 1 WHERE room_id = ?1 AND user_id = ?2
                 AND membership IN ('leave', 'ban')",
                params![room_id, user_id],
            )
            .map(|n| n == 1)
            .map_err(sql)
        })
        .await
    }

    async fn max_stream_pos(&self) -> Result<u64> {
        self.read(|conn| {
            conn.prepare_cached("SELECT coalesce(max(stream_pos), 0) FROM events")?
                .query_row([], |r| r.get(0))
        })
    }

    async fn state_at_pos(&self, room_id: &RoomId, pos: u64) -> Result<Option<StateMap>> {
        self.read(|conn| {
            let group: Option<u64> = conn
                .prepare_cached(
                    "SELECT state_group FROM events WHERE room_id = ?1 AND stream_pos <= ?2
                     AND outlier = 0 ORDER BY stream_pos DESC LIMIT 1",
                )?
                .query_row(params![room_id.as_str(), pos], |row| row.get(0))
                .optional()?;
            group.map(|group| state_of_group(conn, group)).transpose()
        })
    }

    async fn create_alias(
        &self,
        alias: &RoomAliasId,
        room_id: &RoomId,
        creator: &UserId,
    ) -> Result<bool> {
        let (alias, room_id, creator) =
            (alias.to_string(), room_id.to_string(), creator.to_string());
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO room_aliases (alias, room_id, creator) VALUES (?1, ?2, ?3)
                 ON CONFLICT (alias) DO NOTHING",
                params![alias, room_id, creator],
            )
            .map(|n| n == 1)
            .map_err(sql)
        })
        .await
    }

    async fn alias(&self, alias: &RoomAliasId) -> Result<Option<(OwnedRoomId, OwnedUserId)>> {
        self.read(|conn| {
            conn.prepare_cached("SELECT room_id, creator FROM room_aliases WHERE alias = ?1")?
                .query_row([alias.as_str()], |row| Ok((parse_id(row, 0)?, parse_id(row, 1)?)))
                .optional()
        })
    }

    async fn delete_alias(&self, alias: &RoomAliasId) -> Result<bool> {
        let alias = alias.to_string();
        self.write(move |conn| {
            conn.execute("DELETE FROM room_aliases WHERE alias = ?1", [alias])
                .map(|n| n == 1)
                .map_err(sql)
        })
        .await
    }

    async fn aliases_of_room(&self, room_id: &RoomId) -> Result<Vec<OwnedRoomAliasId>> {
        self.read(|conn| {
            conn.prepare_cached("SELECT alias FROM room_aliases WHERE room_id = ?1 ORDER BY alias")?
                .query_map([room_id.as_str()], |row| parse_id(row, 0))?
                .collect()
        })
    }

    async fn set_public(&self, room_id: &RoomId, public: bool) -> Result<()> {
        let room_id = room_id.to_string();
        self.write(move |conn| {
            conn.execute(
                "UPDATE rooms SET public = ?2 WHERE room_id = ?1",
                params![room_id, public],
            )
            .map(drop)
            .map_err(sql)
        })
        .await
    }

    async fn is_public(&self, room_id: &RoomId) -> Result<bool> {
        self.read(|conn| {
            conn.prepare_cached("SELECT public FROM rooms WHERE room_id = ?1")?
                .query_row([room_id.as_str()], |row| row.get(0))
                .optional()
                .map(|p| p.unwrap_or(false))
        })
    }

    async fn public_rooms(&self) -> Result<Vec<OwnedRoomId>> {
        self.read(|conn| {
            conn.prepare_cached("SELECT room_id FROM rooms WHERE public = 1 ORDER BY room_id")?
                .query_map([], |row| parse_id(row, 0))?
                .collect()
        })
    }
}
