//! `ReportStore` on SQLite.

use async_trait::async_trait;
use palisade_core::Result;
use palisade_storage::{NewReport, ReportRow, ReportStore};
use rusqlite::{Row, params};

use crate::{Database, parse_id, sql};

const COLUMNS: &str =
    "id, reporter, room_id, event_id, user_id, reason, received_ts, resolved_ts, resolved_by";

fn optional_id<T: TryFrom<String>>(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<T>> {
    match row.get::<_, Option<String>>(index)? {
        Some(_) => parse_id(row, index).map(Some),
        None => Ok(None),
    }
}

fn report_row(row: &Row<'_>) -> rusqlite::Result<ReportRow> {
    let resolved_ts: Option<u64> = row.get(7)?;
    let resolved_by: Option<String> = row.get(8)?;
    Ok(ReportRow {
        id: row.get(0)?,
        report: NewReport {
            reporter: parse_id(row, 1)?,
            room_id: optional_id(row, 2)?,
            event_id: optional_id(row, 3)?,
            user_id: optional_id(row, 4)?,
            reason: row.get(5)?,
            received_ts: row.get(6)?,
        },
        resolved: resolved_ts.zip(resolved_by),
    })
}

#[async_trait]
impl ReportStore for Database {
    async fn add_report(&self, report: NewReport) -> Result<u64> {
        self.write(move |conn| {
            conn.query_row(
                "INSERT INTO reports (reporter, room_id, event_id, user_id, reason, received_ts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
                params![
                    report.reporter.as_str(),
                    report.room_id.as_ref().map(|r| r.as_str()),
                    report.event_id.as_ref().map(|e| e.as_str()),
                    report.user_id.as_ref().map(|u| u.as_str()),
                    report.reason,
                    report.received_ts,
                ],
                |row| row.get(0),
            )
            .map_err(sql)
        })
        .await
    }

    async fn reports(
        &self,
        include_resolved: bool,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ReportRow>> {
        let before = before.unwrap_or(i64::MAX as u64);
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM reports WHERE id < ?1 AND (?2 OR resolved_ts IS NULL)
                 ORDER BY id DESC LIMIT ?3"
            ))?
            .query_map(params![before, include_resolved, limit], report_row)?
            .collect()
        })
    }

    async fn resolve_report(&self, id: u64, by: &str, ts: u64) -> Result<bool> {
        let by = by.to_owned();
        self.write(move |conn| {
            conn.execute(
                "UPDATE reports SET resolved_ts = ?2, resolved_by = ?3
                 WHERE id = ?1 AND resolved_ts IS NULL",
                params![id, ts, by],
            )
            .map(|changed| changed > 0)
            .map_err(sql)
        })
        .await
    }
}
