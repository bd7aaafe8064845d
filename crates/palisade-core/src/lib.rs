//! Types every Palisade crate shares: error kinds, configuration and the clock.
//!
//! This crate knows nothing of HTTP, SQL or tokio; it depends on ruma only for identifiers.

pub mod clock;
pub mod config;
pub mod error;
pub mod net;

pub use clock::{Clock, SystemClock};
pub use config::Config;
pub use error::{Error, ErrorKind, RemoteRefusal, Result};

use ruma::RoomVersionId;

/// Room versions this server creates and joins: every stable version, as Synapse.
pub const SUPPORTED_ROOM_VERSIONS: &[RoomVersionId] = &[
    RoomVersionId::V1,
    RoomVersionId::V2,
    RoomVersionId::V3,
    RoomVersionId::V4,
    RoomVersionId::V5,
    RoomVersionId::V6,
    RoomVersionId::V7,
    RoomVersionId::V8,
    RoomVersionId::V9,
    RoomVersionId::V10,
    RoomVersionId::V11,
    RoomVersionId::V12,
];
