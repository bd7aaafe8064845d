//! Connections: one group-committing writer thread and a pool of readers.

use std::{
    path::{Path, PathBuf},
    sync::{Mutex, mpsc},
    thread,
};

use palisade_core::{Error, Result};
use rusqlite::{Connection, OpenFlags, config::DbConfig};
use tokio::sync::oneshot;

use crate::{schema, sql};

/// Most writes committed in one transaction.
const MAX_GROUP: usize = 256;
/// Idle read connections kept open.
const MAX_IDLE_READERS: usize = 8;
/// Prepared statements kept per connection: more than the distinct queries of one `/sync`
/// pass, so a pass never re-prepares (rusqlite keeps 16 by default).
const STATEMENT_CACHE: usize = 256;

/// A write waiting for the writer thread: runs inside the group transaction (or, given `None`,
/// records that no transaction could be opened) and returns the completion to call once the
/// transaction has committed or failed.
type Job = Box<dyn FnOnce(Option<&Connection>) -> Completion + Send>;
type Completion = Box<dyn FnOnce(Result<()>) + Send>;

/// The SQLite database: the writer thread's queue and a pool of read connections.
pub struct Database {
    path: PathBuf,
    writer: mpsc::Sender<Job>,
    readers: Mutex<Vec<Connection>>,
}

/// Settings of every connection, reader or writer.
fn tune(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // Without the planner stability guarantee, binding a value SQLite looked at while planning
    // (a `LIMIT ?`) expires the cached statement and every execution prepares it again.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    // FULL: a commit is on disk before we acknowledge it; group commit pays for the fsync.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA busy_timeout = 5000;",
    )
}

impl Database {
    /// Opens the database file, applies migrations and starts the writer thread.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::internal(format!("creating {}: {e}", dir.display())))?;
        }
        let mut conn = Connection::open(path).map_err(sql)?;
        configure(&conn).map_err(sql)?;
        tune(&conn).map_err(sql)?;
        schema::migrate(&mut conn)?;

        let (tx, rx) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(|e| Error::internal(format!("spawning writer: {e}")))?;
        Ok(Self { path: path.to_owned(), writer: tx, readers: Mutex::new(Vec::new()) })
    }

    /// Runs `f` inside the writer's transaction and resolves once it is durably committed.
    ///
    /// `f` runs under a savepoint: if it fails, only its own changes are undone.
    pub async fn write<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        let (done_tx, done_rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let outcome = match conn {
                Some(conn) => run_in_savepoint(conn, f),
                None => Err(Error::internal("sqlite writer could not open a transaction")),
            };
            Box::new(move |committed: Result<()>| {
                let _ = done_tx.send(committed.and(outcome));
            })
        });
        self.writer.send(job).map_err(|_| Error::internal("sqlite writer has stopped"))?;
        done_rx.await.map_err(|_| Error::internal("sqlite writer dropped a write"))?
    }

    /// Runs `f` on a pooled read connection. Reads see every write that has been acknowledged.
    pub fn read<R>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R> {
        let pooled = self.readers.lock().expect("reader pool poisoned").pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                let conn = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(sql)?;
                conn.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;")
                    .map_err(sql)?;
                tune(&conn).map_err(sql)?;
                conn
            }
        };
        let result = f(&conn).map_err(sql);
        let mut pool = self.readers.lock().expect("reader pool poisoned");
        if pool.len() < MAX_IDLE_READERS {
            pool.push(conn);
        }
        result
    }
}

fn run_in_savepoint<R>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<R>) -> Result<R> {
    conn.execute_batch("SAVEPOINT job").map_err(sql)?;
    match f(conn) {
        Ok(value) => {
            conn.execute_batch("RELEASE job").map_err(sql)?;
            Ok(value)
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO job; RELEASE job").map_err(sql)?;
            Err(e)
        }
    }
}

fn writer_loop(conn: Connection, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let error = sql(e);
            tracing::error!(%error, "could not begin a write transaction");
            for job in jobs {
                job(None)(Err(error.clone()));
            }
            continue;
        }
        let completions: Vec<Completion> = jobs.into_iter().map(|job| job(Some(&conn))).collect();
        let committed = conn.execute_batch("COMMIT").map_err(sql);
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
            tracing::error!(error = ?committed, "group commit failed");
        }
        for completion in completions {
            completion(committed.clone());
        }
    }
}
