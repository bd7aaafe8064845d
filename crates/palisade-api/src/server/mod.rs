//! Server-Server API endpoints, served on the federation listener. Handlers are thin: the
//! `Ruma` extractor checks the `X-Matrix` signature, `palisade-federation` does the work.

mod e2ee;
mod keys;
mod media;
mod membership;
mod query;
mod transactions;

use crate::routes::Routes;

/// The key server, served on every listener.
pub(crate) fn key_routes(router: Routes) -> Routes {
    keys::server_key_routes(router)
}

/// Every Server-Server endpoint.
pub(crate) fn routes(router: Routes) -> Routes {
    let router = query::routes(keys::notary_routes(key_routes(router)));
    let router = media::routes(router);
    e2ee::routes(transactions::routes(membership::routes(router)))
}
