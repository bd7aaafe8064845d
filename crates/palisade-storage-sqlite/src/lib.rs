//! The embedded default backend: SQLite (bundled) in WAL mode.
//!
//! One writer thread owns the only write connection and commits pending writes in groups (one
//! transaction, one fsync for many callers); readers take connections from a small pool. This is
//! the only crate, with the future PostgreSQL backend, that contains SQL.

mod accounts;
mod database;
mod schema;

pub use database::Database;

use std::{path::Path, sync::Arc};

use palisade_core::Result;
use palisade_storage::Stores;

/// Opens (creating and migrating if needed) the database at `path` and returns its stores.
pub fn open(path: &Path) -> Result<Stores> {
    let db = Arc::new(Database::open(path)?);
    Ok(Stores { accounts: db })
}
