//! The HTTP face of Palisade: the Client-Server (and, later, Server-Server) API.
//!
//! Handlers are thin: a ruma request comes in through the [`Ruma`] extractor, a service does
//! the work, a ruma response goes out. This crate alone maps domain errors to Matrix
//! `errcode`s and statuses ([`error`]); it never touches storage.

mod admin;
mod client;
pub mod error;
mod extract;
mod router;
mod server;

pub use extract::Ruma;
pub use router::router;

/// The state every handler receives: the server's services.
pub type AppState = palisade_service::Services;
