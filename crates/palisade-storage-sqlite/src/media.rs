//! `MediaStore` on SQLite.

use async_trait::async_trait;
use palisade_core::Result;
use palisade_storage::{MediaRow, MediaStore, ThumbnailRow};
use ruma::{ServerName, UserId};
use rusqlite::{OptionalExtension, Row, params};

use crate::{Database, parse_id, sql};

const MEDIA_COLUMNS: &str = "origin, media_id, uploader, content_type, upload_name, size, \
                             sha256, created_ts, expires_ts, quarantined";

fn media_row(row: &Row<'_>) -> rusqlite::Result<MediaRow> {
    Ok(MediaRow {
        origin: parse_id(row, 0)?,
        media_id: row.get(1)?,
        uploader: row.get::<_, Option<String>>(2)?.map(|_| parse_id(row, 2)).transpose()?,
        content_type: row.get(3)?,
        upload_name: row.get(4)?,
        size: row.get(5)?,
        sha256: row.get(6)?,
        created_ts: row.get(7)?,
        expires_ts: row.get(8)?,
        quarantined: row.get(9)?,
    })
}

/// Whether any record (media or thumbnail) names content of this hash.
fn referenced(conn: &rusqlite::Connection, sha256: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM media WHERE sha256 = ?1)
         OR EXISTS (SELECT 1 FROM media_thumbnails WHERE sha256 = ?1)",
    )?
    .query_row([sha256], |row| row.get(0))
}

#[async_trait]
impl MediaStore for Database {
    async fn insert_media(&self, row: MediaRow) -> Result<bool> {
        self.write(move |conn| {
            let inserted = conn
                .execute(
                    &format!(
                        "INSERT INTO media ({MEDIA_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                         ON CONFLICT (origin, media_id) DO NOTHING"
                    ),
                    params![
                        row.origin.as_str(),
                        row.media_id,
                        row.uploader.as_ref().map(|u| u.as_str()),
                        row.content_type,
                        row.upload_name,
                        row.size,
                        row.sha256,
                        row.created_ts,
                        row.expires_ts,
                        row.quarantined,
                    ],
                )
                .map_err(sql)?;
            Ok(inserted == 1)
        })
        .await
    }

    async fn fill_media(
        &self,
        origin: &ServerName,
        media_id: &str,
        uploader: &UserId,
        content_type: Option<&str>,
        upload_name: Option<&str>,
        size: u64,
        sha256: &str,
    ) -> Result<bool> {
        let (origin, media_id, uploader) =
            (origin.to_string(), media_id.to_owned(), uploader.to_string());
        let (content_type, upload_name) =
            (content_type.map(str::to_owned), upload_name.map(str::to_owned));
        let sha256 = sha256.to_owned();
        self.write(move |conn| {
            let filled = conn
                .execute(
                    "UPDATE media SET content_type = ?4, upload_name = ?5, size = ?6,
                     sha256 = ?7, expires_ts = NULL
                     WHERE origin = ?1 AND media_id = ?2 AND uploader = ?3 AND sha256 IS NULL",
                    params![origin, media_id, uploader, content_type, upload_name, size, sha256],
                )
                .map_err(sql)?;
            Ok(filled == 1)
        })
        .await
    }

    async fn media(&self, origin: &ServerName, media_id: &str) -> Result<Option<MediaRow>> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {MEDIA_COLUMNS} FROM media WHERE origin = ?1 AND media_id = ?2"
            ))?
            .query_row(params![origin.as_str(), media_id], media_row)
            .optional()
        })
    }

    async fn uploaded_bytes(&self, uploader: &UserId) -> Result<u64> {
        self.read(|conn| {
            conn.prepare_cached("SELECT coalesce(sum(size), 0) FROM media WHERE uploader = ?1")?
                .query_row([uploader.as_str()], |row| row.get(0))
        })
    }

    async fn pending_reservations(&self, uploader: &UserId, now: u64) -> Result<u64> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT count(*) FROM media
                 WHERE uploader = ?1 AND sha256 IS NULL AND expires_ts > ?2",
            )?
            .query_row(params![uploader.as_str(), now], |row| row.get(0))
        })
    }

    async fn thumbnail(
        &self,
        origin: &ServerName,
        media_id: &str,
        width: u32,
        height: u32,
        method: &str,
    ) -> Result<Option<ThumbnailRow>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT content_type, sha256, size FROM media_thumbnails
                 WHERE origin = ?1 AND media_id = ?2 AND width = ?3 AND height = ?4
                 AND method = ?5",
            )?
            .query_row(params![origin.as_str(), media_id, width, height, method], |row| {
                Ok(ThumbnailRow {
                    origin: origin.to_owned(),
                    media_id: media_id.to_owned(),
                    width,
                    height,
                    method: method.to_owned(),
                    content_type: row.get(0)?,
                    sha256: row.get(1)?,
                    size: row.get(2)?,
                })
            })
            .optional()
        })
    }

    async fn content_referenced(&self, sha256: &str) -> Result<bool> {
        self.read(|conn| referenced(conn, sha256))
    }

    async fn media_of_uploader(&self, uploader: &UserId) -> Result<Vec<MediaRow>> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {MEDIA_COLUMNS} FROM media WHERE uploader = ?1
                 ORDER BY created_ts DESC, media_id"
            ))?
            .query_map([uploader.as_str()], media_row)?
            .collect()
        })
    }

    async fn set_quarantined(
        &self,
        origin: &ServerName,
        media_id: &str,
        quarantined: bool,
    ) -> Result<bool> {
        let (origin, media_id) = (origin.to_string(), media_id.to_owned());
        self.write(move |conn| {
            let changed = conn
                .execute(
                    "UPDATE media SET quarantined = ?3 WHERE origin = ?1 AND media_id = ?2",
                    params![origin, media_id, quarantined],
                )
                .map_err(sql)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn delete_media(
        &self,
        origin: &ServerName,
        media_id: &str,
    ) -> Result<Option<Vec<String>>> {
        let (origin, media_id) = (origin.to_string(), media_id.to_owned());
        self.write(move |conn| {
            let key = params![origin, media_id];
            let mut hashes: Vec<String> = conn
                .prepare_cached(
                    "SELECT sha256 FROM media WHERE origin = ?1 AND media_id = ?2
                     AND sha256 IS NOT NULL
                     UNION SELECT sha256 FROM media_thumbnails WHERE origin = ?1 AND media_id = ?2",
                )
                .and_then(|mut statement| statement.query_map(key, |row| row.get(0))?.collect())
                .map_err(sql)?;
            conn.execute("DELETE FROM media_thumbnails WHERE origin = ?1 AND media_id = ?2", key)
                .map_err(sql)?;
            let deleted = conn
                .execute("DELETE FROM media WHERE origin = ?1 AND media_id = ?2", key)
                .map_err(sql)?;
            if deleted == 0 {
                return Ok(None);
            }
            let mut unreferenced = Vec::new();
            for hash in hashes.drain(..) {
                if !referenced(conn, &hash).map_err(sql)? {
                    unreferenced.push(hash);
                }
            }
            Ok(Some(unreferenced))
        })
        .await
    }

    async fn insert_thumbnail(&self, row: ThumbnailRow) -> Result<()> {
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO media_thumbnails
                 (origin, media_id, width, height, method, content_type, sha256, size)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT DO NOTHING",
                params![
                    row.origin.as_str(),
                    row.media_id,
                    row.width,
                    row.height,
                    row.method,
                    row.content_type,
                    row.sha256,
                    row.size,
                ],
            )
            .map(drop)
            .map_err(sql)
        })
        .await
    }
}
