//! Server-Server API endpoints. Only the key server so far; federation comes later.

mod keys;

use axum::Router;

use crate::AppState;

/// Adds every Server-Server endpoint.
pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    keys::routes(router)
}
