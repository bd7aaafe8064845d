//! Integration tests: a real server on a loopback port, driven over HTTP.
//!
//! One test binary (modules below) keeps link time down.

mod accounts;
mod calls;
mod cli;
mod client_input;
mod device_trust;
mod devices;
mod discovery;
mod e2ee;
mod endpoints;
mod federation;
mod guests;
mod knocking;
mod media;
mod profile;
mod push;
mod relations;
mod reports;
mod room_auth;
mod room_history;
mod rooms;
mod search;
mod sliding_sync;
mod spaces;
mod synapse;
mod sync;
mod upgrades;
