//! Full-text search on SQLite: an FTS5 index (`event_search`, kept by triggers on `events`)
//! queried in FTS5's syntax.

use palisade_storage::{SearchHit, SearchOrder, SearchPhrase, SearchQuery, SearchTerms};
use rusqlite::{Connection, params};

use crate::rooms::{EVENT_COLUMNS, event_row};

/// The terms in FTS5's query syntax; `None` when they can match nothing. Every word is
/// quoted, so nothing a user types is read as an operator.
pub(crate) fn fts5_query(terms: &SearchTerms) -> Option<String> {
    let phrase = |p: &SearchPhrase| {
        let star = if p.prefix { "*" } else { "" };
        format!("\"{}\"{star}", p.words.join(" "))
    };
    let clauses: Vec<String> = terms
        .any_of
        .iter()
        .map(|clause| {
            let all: Vec<String> = clause.all.iter().map(phrase).collect();
            let none: String = clause.none.iter().map(|p| format!(" NOT {}", phrase(p))).collect();
            format!("({}{none})", all.join(" AND "))
        })
        .collect();
    (!clauses.is_empty()).then(|| clauses.join(" OR "))
}

/// What a query and its count share (the index is the outer loop, `CROSS JOIN`: the
/// matches are few beside the events of the rooms searched): the match, the rooms, the keys and, searching by
/// recency, where the previous page stopped.
const CONDITIONS: &str = "event_search MATCH ?1
    AND events.room_id IN (SELECT value FROM json_each(?2))
    AND event_search.key IN (SELECT value FROM json_each(?3))
    AND events.outlier = 0 AND events.redacted_by IS NULL
    AND (events.origin_server_ts, events.stream_pos) < (?4, ?5)";

/// The parameters of [`CONDITIONS`].
fn parameters(query: &SearchQuery, matching: String) -> (String, String, String, i64, i64) {
    let rooms = serde_json::to_string(&query.rooms).expect("room ids serialise");
    let keys: Vec<&str> = query.keys.iter().map(|k| k.as_str()).collect();
    let keys = serde_json::to_string(&keys).expect("strings serialise");
    let (ts, pos) = match query.order {
        SearchOrder::Recent { before: Some((ts, pos)) } => (ts, pos),
        _ => (u64::MAX, u64::MAX),
    };
    let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    (matching, rooms, keys, clamp(ts), clamp(pos))
}

/// The events [`SearchQuery`] finds, in its order.
pub(crate) fn search(conn: &Connection, query: &SearchQuery) -> rusqlite::Result<Vec<SearchHit>> {
    let Some(matching) = fts5_query(&query.terms) else { return Ok(Vec::new()) };
    let (order, offset) = match query.order {
        SearchOrder::Rank { offset } => ("score DESC, events.stream_pos DESC", offset),
        SearchOrder::Recent { .. } => ("events.origin_server_ts DESC, events.stream_pos DESC", 0),
    };
    let columns = EVENT_COLUMNS.split(", ").map(|c| format!("events.{c}")).collect::<Vec<_>>();
    let sql = format!(
        "SELECT {}, -bm25(event_search) AS score, events.origin_server_ts
         FROM event_search CROSS JOIN events ON events.stream_pos = event_search.rowid
         WHERE {CONDITIONS} ORDER BY {order} LIMIT ?6 OFFSET ?7",
        columns.join(", "),
    );
    let (matching, rooms, keys, ts, pos) = parameters(query, matching);
    let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
    let offset = i64::try_from(offset).unwrap_or(i64::MAX);
    conn.prepare_cached(&sql)?
        .query_map(params![matching, rooms, keys, ts, pos, limit, offset], |row| {
            Ok(SearchHit {
                row: event_row(row)?,
                rank: row.get(13)?,
                origin_server_ts: row.get(14)?,
            })
        })?
        .collect()
}

/// How many events [`search`] finds, all pages together.
pub(crate) fn count(conn: &Connection, query: &SearchQuery) -> rusqlite::Result<u64> {
    let Some(matching) = fts5_query(&query.terms) else { return Ok(0) };
    let sql = format!(
        "SELECT count(*) FROM event_search CROSS JOIN events ON events.stream_pos = event_search.rowid
         WHERE {CONDITIONS}"
    );
    // Every page: no cursor.
    let (matching, rooms, keys, _, _) = parameters(query, matching);
    let (ts, pos) = (i64::MAX, i64::MAX);
    conn.prepare_cached(&sql)?.query_row(params![matching, rooms, keys, ts, pos], |row| row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_become_quoted_fts5_phrases() {
        let terms = SearchTerms::parse(r#"café "big crème" -noise or AND*"#);
        assert_eq!(
            fts5_query(&terms).as_deref(),
            Some(r#"("café"* AND "big crème" NOT "noise") OR ("and"*)"#)
        );
        assert_eq!(fts5_query(&SearchTerms::parse("-only")), None);
    }
}
