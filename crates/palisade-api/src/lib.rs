//! The HTTP face of Palisade: the Client-Server (and, later, Server-Server) API.
//!
//! Handlers are thin: a ruma request comes in through the [`Ruma`] extractor, a service does
//! the work, a ruma response goes out. This crate alone maps domain errors to Matrix
//! `errcode`s and statuses ([`error`]); it never touches storage.

mod admin;
mod client;
pub mod error;
mod extract;
mod json;
mod public_rooms;
mod router;
mod routes;
mod server;

pub use extract::Ruma;
pub use router::{client_endpoints, federation_endpoints, federation_router, router};
pub use routes::Endpoint;

use std::{ops::Deref, sync::Arc};

use palisade_federation::Federation;
use palisade_media::MediaService;
use palisade_service::Services;

/// The state every handler receives: the server's services and federation.
#[derive(Clone)]
pub struct AppState {
    services: Services,
    /// Federation with other servers.
    pub federation: Arc<Federation>,
    /// The content repository.
    pub media: Arc<MediaService>,
}

impl AppState {
    /// The state over the server's services, its federation and its content repository.
    pub fn new(services: Services, federation: Arc<Federation>, media: Arc<MediaService>) -> Self {
        Self { services, federation, media }
    }
}

impl Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.services
    }
}
