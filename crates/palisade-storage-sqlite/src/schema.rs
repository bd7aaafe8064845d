//! Schema migrations, tracked with `PRAGMA user_version`.
//!
//! Each entry of `MIGRATIONS` moves the schema one version up; never edit a released entry.

use palisade_core::{Error, Result};
use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: accounts.
    "CREATE TABLE users (
        user_id TEXT PRIMARY KEY NOT NULL,
        password_hash TEXT,
        admin INTEGER NOT NULL DEFAULT 0,
        deactivated INTEGER NOT NULL DEFAULT 0,
        created_ts INTEGER NOT NULL,
        displayname TEXT,
        avatar_url TEXT
    ) STRICT;
    CREATE TABLE devices (
        user_id TEXT NOT NULL REFERENCES users(user_id),
        device_id TEXT NOT NULL,
        display_name TEXT,
        created_ts INTEGER NOT NULL,
        last_seen_ts INTEGER,
        last_seen_ip TEXT,
        PRIMARY KEY (user_id, device_id)
    ) STRICT;
    CREATE TABLE access_tokens (
        token_hash BLOB PRIMARY KEY NOT NULL,
        user_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        created_ts INTEGER NOT NULL,
        FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
    ) STRICT;
    CREATE INDEX access_tokens_by_device ON access_tokens(user_id, device_id);",
    // 2: rooms, events and state. State is stored as snapshots that are deltas over a previous
    // snapshot (bounded chains), so a state event costs one row, not a copy of the room state.
    "CREATE TABLE rooms (
        room_id TEXT PRIMARY KEY NOT NULL,
        room_version TEXT NOT NULL,
        state_group INTEGER NOT NULL,
        public INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    CREATE TABLE state_groups (
        id INTEGER PRIMARY KEY,
        room_id TEXT NOT NULL,
        prev_group INTEGER REFERENCES state_groups(id),
        chain_len INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE state_group_entries (
        group_id INTEGER NOT NULL REFERENCES state_groups(id),
        type TEXT NOT NULL,
        state_key TEXT NOT NULL,
        event_id TEXT NOT NULL,
        PRIMARY KEY (group_id, type, state_key)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE events (
        stream_pos INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL UNIQUE,
        room_id TEXT NOT NULL REFERENCES rooms(room_id),
        type TEXT NOT NULL,
        state_key TEXT,
        sender TEXT NOT NULL,
        depth INTEGER NOT NULL,
        origin_server_ts INTEGER NOT NULL,
        state_group INTEGER NOT NULL REFERENCES state_groups(id),
        json TEXT NOT NULL,
        unsigned TEXT,
        txn_device TEXT,
        txn_id TEXT,
        redacted_by TEXT
    ) STRICT;
    CREATE INDEX events_by_room ON events(room_id, stream_pos);
    CREATE UNIQUE INDEX events_by_txn ON events(sender, txn_device, txn_id) WHERE txn_id IS NOT NULL;
    CREATE TABLE room_extremities (
        room_id TEXT NOT NULL,
        event_id TEXT NOT NULL,
        depth INTEGER NOT NULL,
        PRIMARY KEY (room_id, event_id)
    ) STRICT;
    CREATE TABLE memberships (
        room_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        membership TEXT NOT NULL,
        event_id TEXT NOT NULL,
        stream_pos INTEGER NOT NULL,
        forgotten INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (room_id, user_id)
    ) STRICT;
    CREATE INDEX memberships_by_user ON memberships(user_id);
    CREATE TABLE room_aliases (
        alias TEXT PRIMARY KEY NOT NULL,
        room_id TEXT NOT NULL,
        creator TEXT NOT NULL
    ) STRICT;
    CREATE INDEX room_aliases_by_room ON room_aliases(room_id);",
    // 3: sync filters, account data and read receipts. '' stands for "no room" / "no thread".
    "CREATE TABLE filters (
        user_id TEXT NOT NULL,
        filter_id INTEGER NOT NULL,
        json TEXT NOT NULL,
        PRIMARY KEY (user_id, filter_id)
    ) STRICT;
    CREATE TABLE account_data (
        user_id TEXT NOT NULL,
        room_id TEXT NOT NULL,
        type TEXT NOT NULL,
        content TEXT NOT NULL,
        stream_pos INTEGER NOT NULL,
        PRIMARY KEY (user_id, room_id, type)
    ) STRICT;
    CREATE INDEX account_data_by_pos ON account_data(user_id, stream_pos);
    CREATE TABLE receipts (
        room_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        receipt_type TEXT NOT NULL,
        thread_id TEXT NOT NULL,
        event_id TEXT NOT NULL,
        event_stream_pos INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        stream_pos INTEGER NOT NULL,
        PRIMARY KEY (room_id, user_id, receipt_type, thread_id)
    ) STRICT;
    CREATE INDEX receipts_by_pos ON receipts(room_id, stream_pos);",
    // 4: end-to-end encryption: keys, device list changes, to-device messages, key backup.
    "CREATE TABLE device_keys (
        user_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        json TEXT NOT NULL,
        PRIMARY KEY (user_id, device_id)
    ) STRICT;
    CREATE TABLE one_time_keys (
        user_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        algorithm TEXT NOT NULL,
        key_id TEXT NOT NULL,
        json TEXT NOT NULL,
        PRIMARY KEY (user_id, device_id, algorithm, key_id)
    ) STRICT;
    CREATE TABLE fallback_keys (
        user_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        algorithm TEXT NOT NULL,
        key_id TEXT NOT NULL,
        json TEXT NOT NULL,
        used INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (user_id, device_id, algorithm)
    ) STRICT;
    CREATE TABLE cross_signing_keys (
        user_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        json TEXT NOT NULL,
        PRIMARY KEY (user_id, kind)
    ) STRICT;
    CREATE TABLE device_list_changes (
        stream_pos INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id TEXT NOT NULL
    ) STRICT;
    CREATE TABLE to_device (
        stream_pos INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        sender TEXT NOT NULL,
        type TEXT NOT NULL,
        content TEXT NOT NULL
    ) STRICT;
    CREATE INDEX to_device_by_device ON to_device(user_id, device_id, stream_pos);
    CREATE TABLE to_device_txns (
        sender TEXT NOT NULL,
        sender_device TEXT NOT NULL,
        txn_id TEXT NOT NULL,
        PRIMARY KEY (sender, sender_device, txn_id)
    ) STRICT;
    CREATE TABLE backup_versions (
        user_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        algorithm TEXT NOT NULL,
        auth_data TEXT NOT NULL,
        etag INTEGER NOT NULL DEFAULT 0,
        deleted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (user_id, version)
    ) STRICT;
    CREATE TABLE backup_keys (
        user_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        room_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        json TEXT NOT NULL,
        PRIMARY KEY (user_id, version, room_id, session_id)
    ) STRICT;",
    // 5: device trust: approvals, the last computed trust state, held to-device messages,
    // cross-signing reset grants and the security audit log.
    "ALTER TABLE devices ADD COLUMN approval TEXT;
    ALTER TABLE devices ADD COLUMN trusted INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE devices ADD COLUMN user_agent TEXT;
    ALTER TABLE to_device ADD COLUMN sender_device TEXT NOT NULL DEFAULT '';
    ALTER TABLE to_device ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE cross_signing_reset_grants (
        user_id TEXT PRIMARY KEY NOT NULL,
        expires_ts INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts INTEGER NOT NULL,
        kind TEXT NOT NULL,
        user_id TEXT NOT NULL,
        device_id TEXT,
        actor TEXT,
        detail TEXT NOT NULL
    ) STRICT;
    CREATE INDEX audit_log_by_user ON audit_log(user_id, id);",
    // 6: membership changes by position, for device-list changes in /sync.
    "CREATE INDEX memberships_by_room_pos ON memberships(room_id, stream_pos);",
    // 7: whether an account ever had a device (only its very first device may be trusted
    // without approval).
    "ALTER TABLE users ADD COLUMN had_device INTEGER NOT NULL DEFAULT 0;
    UPDATE users SET had_device = 1 WHERE user_id IN (SELECT user_id FROM devices);",
    // 8: to-device messages that pass whatever the devices' trust (verification between own
    // devices), remembered so a release can tell them apart.
    "ALTER TABLE to_device ADD COLUMN exempt INTEGER NOT NULL DEFAULT 0;",
    // 9: other servers' signing keys, with the signed documents they came in.
    "CREATE TABLE server_keys (
        server_name TEXT NOT NULL,
        key_id TEXT NOT NULL,
        public_key TEXT NOT NULL,
        valid_until_ts INTEGER NOT NULL,
        document TEXT NOT NULL,
        PRIMARY KEY (server_name, key_id)
    ) STRICT;",
    // 10: events from other servers that are not part of the timeline (outliers).
    // The outbound federation queue and how far local events have been queued (starting
    // from now: events from before federation existed are not sent).
    "ALTER TABLE events ADD COLUMN outlier INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE federation_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        destination TEXT NOT NULL,
        pdu TEXT,
        edu TEXT
    ) STRICT;
    CREATE INDEX federation_outbox_by_destination ON federation_outbox(destination, id);
    CREATE TABLE federation_position (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        stream_pos INTEGER NOT NULL
    ) STRICT;
    INSERT INTO federation_position (id, stream_pos)
        SELECT 1, coalesce(max(stream_pos), 0) FROM events;",
    // 11: how far device-list changes have been announced to other servers.
    "ALTER TABLE federation_position ADD COLUMN device_list_pos INTEGER NOT NULL DEFAULT 0;
    UPDATE federation_position
        SET device_list_pos = (SELECT coalesce(max(stream_pos), 0) FROM device_list_changes);",
    // 12: stream positions on their own, for the latest position (read by every sync) and the
    // rooms with receipts between two positions; `max()` over the second column of the older
    // indexes scanned every row.
    "CREATE INDEX account_data_by_stream ON account_data(stream_pos);
    CREATE INDEX receipts_by_stream ON receipts(stream_pos);",
    // 13: guest accounts.
    "ALTER TABLE users ADD COLUMN guest INTEGER NOT NULL DEFAULT 0;",
    // 14: the content repository's records (the bytes are files named by their SHA-256).
    "CREATE TABLE media (
        origin TEXT NOT NULL,
        media_id TEXT NOT NULL,
        uploader TEXT,
        content_type TEXT,
        upload_name TEXT,
        size INTEGER NOT NULL DEFAULT 0,
        sha256 TEXT,
        created_ts INTEGER NOT NULL,
        expires_ts INTEGER,
        PRIMARY KEY (origin, media_id)
    ) STRICT;
    CREATE INDEX media_by_uploader ON media(uploader);",
    // 15: thumbnails, made on first request.
    "CREATE TABLE media_thumbnails (
        origin TEXT NOT NULL,
        media_id TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        method TEXT NOT NULL,
        content_type TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        PRIMARY KEY (origin, media_id, width, height, method)
    ) STRICT;",
    // 16: quarantine, and lookups by content (identical files are stored once, so a file goes
    // only when no record refers to it).
    "ALTER TABLE media ADD COLUMN quarantined INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX media_by_sha256 ON media(sha256);
    CREATE INDEX media_thumbnails_by_sha256 ON media_thumbnails(sha256);",
    // 17: pushers, and the notifications push rules gave (what pushers are sent, what
    // `/notifications` lists), recorded up to a position in the event stream.
    "CREATE TABLE pushers (
        user_id TEXT NOT NULL,
        app_id TEXT NOT NULL,
        pushkey TEXT NOT NULL,
        device_id TEXT,
        pusher TEXT NOT NULL,
        created_ts INTEGER NOT NULL,
        sent_up_to INTEGER NOT NULL,
        PRIMARY KEY (user_id, app_id, pushkey)
    ) STRICT;
    CREATE INDEX pushers_by_key ON pushers(app_id, pushkey);
    CREATE TABLE notifications (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id TEXT NOT NULL,
        room_id TEXT NOT NULL,
        event_id TEXT NOT NULL,
        stream_pos INTEGER NOT NULL,
        actions TEXT NOT NULL,
        highlight INTEGER NOT NULL,
        ts INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX notifications_by_user ON notifications(user_id, id);
    CREATE INDEX notifications_by_ts ON notifications(ts);
    CREATE TABLE push_position (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        stream_pos INTEGER NOT NULL
    ) STRICT;
    INSERT INTO push_position (id, stream_pos)
        VALUES (1, (SELECT coalesce(max(stream_pos), 0) FROM events));",
    // 18: sliding sync connections saved at shutdown, for clients to continue after a restart.
    "CREATE TABLE sliding_sync_saved (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        connections TEXT NOT NULL
    ) STRICT;",
    // 19: reports of abusive events, rooms and users, for the administrators.
    "CREATE TABLE reports (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        reporter TEXT NOT NULL,
        room_id TEXT,
        event_id TEXT,
        user_id TEXT,
        reason TEXT,
        received_ts INTEGER NOT NULL,
        resolved_ts INTEGER,
        resolved_by TEXT
    ) STRICT;
    CREATE INDEX reports_open ON reports(id) WHERE resolved_ts IS NULL;",
    // 20: events by time, for jumping to a date (`/timestamp_to_event`).
    "CREATE INDEX events_by_room_time ON events(room_id, origin_server_ts);",
    // 21: relations (`m.relates_to` with a `rel_type`): what relates to an event, for
    // `/relations`, threads, edits and reactions; filled from the events already stored.
    "CREATE TABLE event_relations (
        relating_id TEXT PRIMARY KEY,
        relates_to TEXT NOT NULL,
        rel_type TEXT NOT NULL
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX event_relations_by_target ON event_relations(relates_to, rel_type);
    INSERT OR IGNORE INTO event_relations (relating_id, relates_to, rel_type)
        SELECT event_id, json_extract(json, '$.content.\"m.relates_to\".event_id'),
               json_extract(json, '$.content.\"m.relates_to\".rel_type')
        FROM events
        WHERE outlier = 0
          AND json_type(json, '$.content.\"m.relates_to\".event_id') = 'text'
          AND json_type(json, '$.content.\"m.relates_to\".rel_type') = 'text';",
    // 22: accounts an administrator locked (nothing served) or suspended (read-only).
    "ALTER TABLE users ADD COLUMN locked INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE users ADD COLUMN suspended INTEGER NOT NULL DEFAULT 0;",
    // 23: profile fields beyond the display name and avatar (spec v1.16: `m.tz`, custom).
    "ALTER TABLE users ADD COLUMN profile_fields TEXT;",
    // 24: full-text search of messages, room names and topics (`/search`): an FTS5 index whose
    // tokenizer folds case and accents, kept by triggers so no write path can forget it; a
    // redacted or deleted event leaves it at once (`secure-delete`: its words are not kept).
    "CREATE VIRTUAL TABLE event_search USING fts5(
        value, key UNINDEXED, tokenize = 'unicode61 remove_diacritics 2'
    );
    INSERT INTO event_search (event_search, rank) VALUES ('secure-delete', 1);
    CREATE VIEW event_search_source AS
        SELECT stream_pos, json, outlier, redacted_by, CASE type
            WHEN 'm.room.message' THEN 'content.body'
            WHEN 'm.room.name' THEN 'content.name'
            WHEN 'm.room.topic' THEN 'content.topic' END AS key
        FROM events;
    CREATE TRIGGER event_search_insert AFTER INSERT ON events
    WHEN new.outlier = 0 AND new.type IN ('m.room.message', 'm.room.name', 'm.room.topic')
    BEGIN
        INSERT INTO event_search (rowid, key, value)
            SELECT stream_pos, key, json_extract(json, '$.' || key) FROM event_search_source
            WHERE stream_pos = new.stream_pos AND json_type(json, '$.' || key) = 'text';
    END;
    CREATE TRIGGER event_search_redact AFTER UPDATE OF redacted_by ON events
    WHEN new.redacted_by IS NOT NULL
    BEGIN
        DELETE FROM event_search WHERE rowid = new.stream_pos;
    END;
    CREATE TRIGGER event_search_delete AFTER DELETE ON events
    BEGIN
        DELETE FROM event_search WHERE rowid = old.stream_pos;
    END;
    INSERT INTO event_search (rowid, key, value)
        SELECT stream_pos, key, json_extract(json, '$.' || key) FROM event_search_source
        WHERE key IS NOT NULL AND outlier = 0 AND redacted_by IS NULL
          AND json_type(json, '$.' || key) = 'text';",
    // 25: refresh tokens. An access token issued with one expires; the refresh token makes
    // the next pair, and the one it replaced stays usable until the new pair is used.
    "ALTER TABLE access_tokens ADD COLUMN expires_ts INTEGER;
    ALTER TABLE access_tokens ADD COLUMN refreshed_from BLOB;
    CREATE TABLE refresh_tokens (
        token_hash BLOB PRIMARY KEY NOT NULL,
        user_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        access_hash BLOB NOT NULL,
        replaced_by BLOB,
        created_ts INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX refresh_tokens_by_device ON refresh_tokens(user_id, device_id);
    CREATE INDEX refresh_tokens_by_successor ON refresh_tokens(replaced_by);",
];

/// Brings the schema up to date in one transaction. Refuses a database newer than this binary.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let sql = |e: rusqlite::Error| Error::internal(format!("migration: {e}"));
    let current: usize =
        conn.query_row("PRAGMA user_version", [], |row| row.get(0)).map_err(sql)?;
    if current > MIGRATIONS.len() {
        return Err(Error::internal(format!(
            "database schema version {current} is newer than this server ({})",
            MIGRATIONS.len()
        )));
    }
    let tx = conn.transaction().map_err(sql)?;
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(current) {
        tx.execute_batch(migration).map_err(sql)?;
        tx.pragma_update(None, "user_version", index + 1).map_err(sql)?;
    }
    tx.commit().map_err(sql)
}
