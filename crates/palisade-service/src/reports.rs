//! Reports of abuse (an event, a room, a user), kept for the administrators, who list and
//! resolve them; each report and resolution is in the audit log.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#reporting-content>

use std::sync::Arc;

use palisade_core::{Clock, Error, Result};
use palisade_storage::{NewReport, ReportRow, ReportStore};
use ruma::{EventId, RoomId, UserId};
use serde_json::json;

use crate::{
    DeviceTrustService,
    rooms::RoomService,
    trust::{Actor, Administrator, Need},
};

/// Longest reason kept.
const MAX_REASON_CHARS: usize = 10_000;

/// Reports and their handling.
pub struct ReportService {
    store: Arc<dyn ReportStore>,
    rooms: Arc<RoomService>,
    trust: Arc<DeviceTrustService>,
    clock: Arc<dyn Clock>,
}

impl ReportService {
    /// The service.
    pub fn new(
        store: Arc<dyn ReportStore>,
        rooms: Arc<RoomService>,
        trust: Arc<DeviceTrustService>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { store, rooms, trust, clock }
    }

    /// Reports an event the reporter can see (any other is "not found", as Synapse answers).
    pub async fn report_event(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        event_id: &EventId,
        reason: Option<&str>,
    ) -> Result<()> {
        self.trust.require(actor, Need::RoomAccess, "report_event").await?;
        self.rooms.event(actor, room_id, event_id).await.map_err(|_| {
            Error::not_found(format!("Unable to find event {event_id} in room {room_id}"))
        })?;
        let report = self.report(actor, reason)?;
        let report = NewReport {
            room_id: Some(room_id.to_owned()),
            event_id: Some(event_id.to_owned()),
            ..report
        };
        self.keep(actor, report).await
    }

    /// Reports a room the server knows.
    pub async fn report_room(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        reason: &str,
    ) -> Result<()> {
        if self.rooms.current_state(room_id).await?.is_none() {
            return Err(Error::not_found("Room does not exist"));
        }
        let report =
            NewReport { room_id: Some(room_id.to_owned()), ..self.report(actor, Some(reason))? };
        self.keep(actor, report).await
    }

    /// Reports a user. Answered alike whether the user exists or not (the spec allows it), so
    /// that reports cannot be used to find out which accounts exist.
    pub async fn report_user(
        &self,
        actor: Actor<'_>,
        user_id: &UserId,
        reason: &str,
    ) -> Result<()> {
        let report =
            NewReport { user_id: Some(user_id.to_owned()), ..self.report(actor, Some(reason))? };
        self.keep(actor, report).await
    }

    /// Reports, newest first, with ids below `before` (open ones only unless asked).
    pub async fn reports(
        &self,
        _: &Administrator,
        include_resolved: bool,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ReportRow>> {
        self.store.reports(include_resolved, before, limit.clamp(1, 1000)).await
    }

    /// Marks a report resolved.
    pub async fn resolve(&self, admin: &Administrator, id: u64) -> Result<()> {
        let open = self.store.reports(false, Some(id.saturating_add(1)), 1).await?;
        let Some(report) = open.into_iter().find(|r| r.id == id) else {
            return Err(Error::not_found("No such open report"));
        };
        if !self.store.resolve_report(id, admin.name(), self.clock.now_millis()).await? {
            return Err(Error::not_found("No such open report"));
        }
        let detail = json!({ "report": id });
        let reporter = &report.report.reporter;
        self.trust.record("report_resolved", reporter, None, Some(admin.name()), detail).await
    }

    /// The common part of a report, its reason checked.
    fn report(&self, actor: Actor<'_>, reason: Option<&str>) -> Result<NewReport> {
        if reason.is_some_and(|r| r.chars().count() > MAX_REASON_CHARS) {
            return Err(Error::invalid_param("The reason is too long"));
        }
        Ok(NewReport {
            reporter: actor.user().to_owned(),
            room_id: None,
            event_id: None,
            user_id: None,
            reason: reason.map(str::to_owned),
            received_ts: self.clock.now_millis(),
        })
    }

    /// Stores a report and writes it in the audit log.
    async fn keep(&self, actor: Actor<'_>, report: NewReport) -> Result<()> {
        let detail = json!({
            "room_id": report.room_id,
            "event_id": report.event_id,
            "user_id": report.user_id,
        });
        let reporter = report.reporter.clone();
        let id = self.store.add_report(report).await?;
        let detail = json!({ "report": id, "about": detail });
        self.trust.record("report_received", &reporter, actor.device(), None, detail).await
    }
}
