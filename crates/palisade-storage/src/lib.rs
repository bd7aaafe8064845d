//! The storage boundary: the traits every database backend implements, and their row types.
//!
//! This crate holds no SQL and no engine. Services hold `Arc<dyn …Store>` and never learn which
//! backend is behind it; each backend runs the same conformance suite.

pub mod accounts;
pub mod audit;
pub mod e2ee;
pub mod federation;
pub mod media;
pub mod push;
pub mod receipts;
pub mod reports;
pub mod rooms;
pub mod search;
pub mod sync;
pub mod user_data;

pub use accounts::{AccountStore, DeviceRow, NewDevice, RefreshedTokens, TokenOwner, UserRow};
pub use audit::{AuditEntry, AuditStore};
pub use e2ee::{
    BackupKeyRow, BackupVersionRow, ClaimedKey, E2eeStore, NewToDevice, OneTimeKeyUpload,
    ToDeviceRow,
};
pub use federation::{FederationStore, OutboxRow, QueuedUpTo, ServerKeyRow};
pub use media::{MediaRow, MediaStore, ThumbnailRow};
pub use push::{NewNotification, NotificationRow, PushStore, PusherRow};
pub use receipts::{NewReceipt, ReceiptRow, ReceiptStore};
pub use reports::{NewReport, ReportRow, ReportStore};
pub use rooms::{
    Aggregations, Appended, EventRow, MembershipRow, NewEvent, RoomSnapshot, RoomStore, StateMap,
    StateUpdate,
};
pub use search::{
    SearchClause, SearchHit, SearchKey, SearchOrder, SearchPhrase, SearchQuery, SearchTerms,
};
pub use sync::SyncStore;
pub use user_data::{AccountDataRow, UserDataStore};

use std::sync::Arc;

/// Every store of one backend, handed to the services at start-up.
#[derive(Clone)]
pub struct Stores {
    /// Users, devices and access tokens.
    pub accounts: Arc<dyn AccountStore>,
    /// Rooms, events and state.
    pub rooms: Arc<dyn RoomStore>,
    /// Filters and account data.
    pub user_data: Arc<dyn UserDataStore>,
    /// Read receipts.
    pub receipts: Arc<dyn ReceiptStore>,
    /// End-to-end encryption keys, to-device messages and key backups.
    pub e2ee: Arc<dyn E2eeStore>,
    /// The security audit log.
    pub audit: Arc<dyn AuditStore>,
    /// Other servers' keys.
    pub federation: Arc<dyn FederationStore>,
    /// The content repository's records.
    pub media: Arc<dyn MediaStore>,
    /// Pushers and notifications.
    pub push: Arc<dyn PushStore>,
    /// Sliding sync connections across a restart.
    pub sync: Arc<dyn SyncStore>,
    /// Reports of abuse.
    pub reports: Arc<dyn ReportStore>,
}
