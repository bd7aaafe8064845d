//! The security audit log: sign-ins, approvals, sign-outs and cross-signing changes.

use async_trait::async_trait;
use palisade_core::Result;
use ruma::{OwnedDeviceId, OwnedUserId, UserId};

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Sequence number.
    pub id: u64,
    /// When, milliseconds since the epoch.
    pub ts: u64,
    /// What happened (`device_added`, `device_trusted`, `device_approved`, `device_signed_out`,
    /// `cross_signing_changed`, `cross_signing_reset_refused`, …).
    pub kind: String,
    /// The account concerned.
    pub user_id: OwnedUserId,
    /// The device concerned.
    pub device_id: Option<OwnedDeviceId>,
    /// Who did it (a user id, or `admin-cli`), when not the account itself.
    pub actor: Option<String>,
    /// Details (client address, user agent, display name), JSON.
    pub detail: String,
}

/// The append-only security audit log.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends an entry (its `id` is assigned).
    async fn append_audit(&self, entry: AuditEntry) -> Result<()>;
    /// Entries, newest first, optionally of one account.
    async fn audit_entries(&self, user: Option<&UserId>, limit: usize) -> Result<Vec<AuditEntry>>;
}
