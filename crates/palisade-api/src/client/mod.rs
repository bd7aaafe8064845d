//! Client-Server API endpoints, one module per area of the spec.

mod account;
mod devices;
mod directory;
mod discovery;
mod events;
mod profile;
mod register;
mod rooms;
mod session;

use axum::Router;

use crate::AppState;

/// Adds every Client-Server endpoint.
pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = discovery::routes(router);
    let router = session::routes(router);
    let router = register::routes(router);
    let router = account::routes(router);
    let router = devices::routes(router);
    let router = rooms::routes(router);
    let router = events::routes(router);
    let router = directory::routes(router);
    profile::routes(router)
}
