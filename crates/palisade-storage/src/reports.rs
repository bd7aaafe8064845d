//! Reports of abusive content, rooms and users, kept for the administrators.

use async_trait::async_trait;
use palisade_core::Result;
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};

/// A report as a user made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReport {
    /// Who reported.
    pub reporter: OwnedUserId,
    /// The room reported, or the room of the event reported.
    pub room_id: Option<OwnedRoomId>,
    /// The event reported.
    pub event_id: Option<OwnedEventId>,
    /// The user reported.
    pub user_id: Option<OwnedUserId>,
    /// Why, in the reporter's words.
    pub reason: Option<String>,
    /// When, milliseconds since the epoch.
    pub received_ts: u64,
}

/// A stored report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRow {
    /// Its id.
    pub id: u64,
    /// What was reported.
    pub report: NewReport,
    /// When it was resolved and by whom.
    pub resolved: Option<(u64, String)>,
}

/// Reports.
#[async_trait]
pub trait ReportStore: Send + Sync {
    /// Stores a report; returns its id.
    async fn add_report(&self, report: NewReport) -> Result<u64>;
    /// Reports, newest first, with ids below `before`; resolved ones too when asked.
    async fn reports(
        &self,
        include_resolved: bool,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ReportRow>>;
    /// Marks a report resolved; `false` if there is no such report or it already was.
    async fn resolve_report(&self, id: u64, by: &str, ts: u64) -> Result<bool>;
}
