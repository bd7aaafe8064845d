//! Tests with a real client library: matrix-sdk against a Palisade server on loopback.
//!
//! One test binary keeps link time down.

mod chat;
mod common;
mod device_trust;
mod e2ee;
mod federation;
mod room_list;
