//! Discovery: `/versions`, `/.well-known/matrix/{client,server,support}` and `/capabilities`.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#server-discovery>

use std::collections::BTreeMap;

use palisade_core::{Error, Result, SUPPORTED_ROOM_VERSIONS};
use ruma::api::{
    client::discovery::{
        discover_homeserver::{self, HomeserverInfo},
        discover_support::{self, Contact, ContactRole},
        get_capabilities::{
            self,
            v3::{Capabilities, RoomVersionStability, RoomVersionsCapability},
        },
        get_supported_versions,
    },
    federation::discovery::discover_homeserver as discover_server,
};

use crate::{
    AppState, Ruma,
    routes::{Routes, route},
};

/// Spec versions whose Client-Server API clients may rely on here.
const SPEC_VERSIONS: &[&str] = &[
    "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10",
    "v1.11", "v1.12",
];

pub(super) fn routes(router: Routes) -> Routes {
    let router = route(router, versions);
    let router = route(router, well_known_client);
    let router = route(router, well_known_server);
    let router = route(router, well_known_support);
    route(router, capabilities)
}

/// `GET /_matrix/client/versions`
async fn versions(
    _: AppState,
    _: Ruma<get_supported_versions::Request>,
) -> Result<get_supported_versions::Response> {
    let versions = SPEC_VERSIONS.iter().map(|v| (*v).to_owned()).collect();
    let mut response = get_supported_versions::Response::new(versions);
    // Clients look for these before using the features: simplified sliding sync (Element
    // X), and the rooms shared with a user (Element Web's user info).
    for feature in ["org.matrix.simplified_msc3575", "uk.half-shot.msc2666.query_mutual_rooms"] {
        response.unstable_features.insert(feature.to_owned(), true);
    }
    Ok(response)
}

/// `GET /.well-known/matrix/client`: served when `public_baseurl` is configured.
async fn well_known_client(
    state: AppState,
    _: Ruma<discover_homeserver::Request>,
) -> Result<discover_homeserver::Response> {
    let base_url = state
        .config
        .public_baseurl
        .clone()
        .ok_or_else(|| Error::not_found("No client discovery is configured"))?;
    Ok(discover_homeserver::Response::new(HomeserverInfo::new(base_url)))
}

/// `GET /.well-known/matrix/support`: the configured contacts, or 404 when there are none
/// (as Synapse answers).
async fn well_known_support(
    state: AppState,
    _: Ruma<discover_support::Request>,
) -> Result<discover_support::Response> {
    let support = &state.config.support;
    if support.contacts.is_empty() && support.page.is_none() {
        return Err(Error::not_found("No support information is configured"));
    }
    let contacts = support.contacts.iter().filter_map(|contact| {
        let role = ContactRole::from(contact.role.as_str());
        match (&contact.matrix_id, &contact.email_address) {
            (Some(id), email) => {
                let mut entry = Contact::with_matrix_id(role, id.clone());
                entry.email_address = email.clone();
                Some(entry)
            }
            (None, Some(email)) => Some(Contact::with_email_address(role, email.clone())),
            (None, None) => None,
        }
    });
    let mut response = discover_support::Response::with_contacts(contacts.collect());
    response.support_page = support.page.clone();
    Ok(response)
}

/// `GET /.well-known/matrix/server`: where federation traffic goes (`delegate_to`, else the
/// server name itself).
async fn well_known_server(
    state: AppState,
    _: Ruma<discover_server::Request>,
) -> Result<discover_server::Response> {
    let target = state.config.federation.delegate_to.as_ref().unwrap_or(&state.config.server_name);
    Ok(discover_server::Response::new(target.clone()))
}

/// `GET /_matrix/client/v3/capabilities`
async fn capabilities(
    state: AppState,
    request: Ruma<get_capabilities::v3::Request>,
) -> Result<get_capabilities::v3::Response> {
    request.session()?;
    let available: BTreeMap<_, _> =
        SUPPORTED_ROOM_VERSIONS.iter().map(|v| (v.clone(), RoomVersionStability::Stable)).collect();
    let mut capabilities = Capabilities::new();
    capabilities.room_versions =
        RoomVersionsCapability::new(state.config.default_room_version.clone(), available);
    Ok(get_capabilities::v3::Response::new(capabilities))
}
