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
