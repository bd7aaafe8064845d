//! Client-Server API endpoints, one module per area of the spec.

mod account;
mod account_data;
mod backup;
mod devices;
mod directory;
mod discovery;
mod e2ee;
mod events;
mod media;
mod presence;
mod profile;
mod push_rules;
mod pushers;
mod receipts;
mod register;
mod relations;
mod reports;
mod rooms;
mod search;
mod session;
mod sync;
mod thirdparty;
mod threepid;
mod voip;

use crate::routes::Routes;

/// Adds every Client-Server endpoint.
pub(crate) fn routes(router: Routes) -> Routes {
    let router = discovery::routes(router);
    let router = session::routes(router);
    let router = register::routes(router);
    let router = account::routes(router);
    let router = devices::routes(router);
    let router = rooms::routes(router);
    let router = events::routes(router);
    let router = directory::routes(router);
    let router = sync::routes(router);
    let router = receipts::routes(router);
    let router = account_data::routes(router);
    let router = presence::routes(router);
    let router = push_rules::routes(router);
    let router = pushers::routes(router);
    let router = reports::routes(router);
    let router = relations::routes(router);
    let router = search::routes(router);
    let router = thirdparty::routes(router);
    let router = threepid::routes(router);
    let router = voip::routes(router);
    let router = e2ee::routes(router);
    let router = backup::routes(router);
    let router = media::routes(router);
    profile::routes(router)
}
