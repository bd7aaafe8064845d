//! The embedded default backend: SQLite (bundled) in WAL mode.
//!
//! One writer thread owns the only write connection and commits pending writes in groups (one
//! transaction, one fsync for many callers); readers take connections from a small pool. This is
//! the only crate, with the future PostgreSQL backend, that contains SQL.

mod accounts;
mod audit;
mod database;
mod e2ee;
mod federation;
mod media;
mod push;
mod receipts;
mod reports;
mod rooms;
mod schema;
mod search;
mod sync;
mod user_data;

pub use database::Database;

use std::{path::Path, sync::Arc};

use palisade_core::{Error, Result};
use palisade_storage::Stores;
use rusqlite::Row;

/// Opens (creating and migrating if needed) the database at `path` and returns its stores.
pub fn open(path: &Path) -> Result<Stores> {
    let db = Arc::new(Database::open(path)?);
    Ok(Stores {
        accounts: db.clone(),
        rooms: db.clone(),
        user_data: db.clone(),
        receipts: db.clone(),
        e2ee: db.clone(),
        audit: db.clone(),
        federation: db.clone(),
        media: db.clone(),
        push: db.clone(),
        sync: db.clone(),
        reports: db,
    })
}

fn sql(e: rusqlite::Error) -> Error {
    Error::internal(format!("sqlite: {e}"))
}

/// Parses an identifier column; a malformed one means the database was corrupted.
fn parse_id<T: TryFrom<String>>(row: &Row<'_>, index: usize) -> rusqlite::Result<T> {
    let text: String = row.get(index)?;
    T::try_from(text).map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            rusqlite::types::Type::Text,
            "malformed identifier in database".into(),
        )
    })
}
