//! Types every Palisade crate shares: error kinds, configuration and the clock.
//!
//! This crate knows nothing of HTTP, SQL or tokio; it depends on ruma only for identifiers.

pub mod clock;
pub mod config;
pub mod error;

pub use clock::{Clock, SystemClock};
pub use config::Config;
pub use error::{Error, ErrorKind, RemoteRefusal, Result};

use ruma::RoomVersionId;

/// Room versions this server creates and joins. Versions before 10 are not offered.
pub const SUPPORTED_ROOM_VERSIONS: &[RoomVersionId] =
    &[RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12];
