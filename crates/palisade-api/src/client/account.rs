//! Account management: `/account/password` and `/account/deactivate`.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#account-management>

use palisade_core::Result;
use ruma::api::client::account::{
    ThirdPartyIdRemovalStatus, change_password, deactivate, request_openid_token,
};

use crate::{
    AppState, Ruma,
    json::{ensure_own, uia_auth},
    routes::{Routes, route},
};

pub(super) fn routes(router: Routes) -> Routes {
    let router = route(router, change_password);
    let router = route(router, openid_token);
    route(router, deactivate)
}

/// `POST /_matrix/client/v3/user/{userId}/openid/request_token`
async fn openid_token(
    state: AppState,
    request: Ruma<request_openid_token::v3::Request>,
) -> Result<request_openid_token::v3::Response> {
    let session = request.session()?;
    ensure_own(session.user_id(), &request.body.user_id)?;
    let token = state.accounts.request_openid_token(session.user_id());
    Ok(request_openid_token::v3::Response::new(
        token,
        ruma::authentication::TokenType::Bearer,
        state.config.server_name.clone(),
        std::time::Duration::from_millis(palisade_service::accounts::OPENID_TOKEN_LIFETIME_MS),
    ))
}

/// `POST /_matrix/client/v3/account/password`
async fn change_password(
    state: AppState,
    request: Ruma<change_password::v3::Request>,
) -> Result<change_password::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    let auth = body.auth.clone().map(uia_auth);
    state.accounts.change_password(session, &body.new_password, body.logout_devices, auth).await?;
    Ok(change_password::v3::Response::new())
}

/// `POST /_matrix/client/v3/account/deactivate`
async fn deactivate(
    state: AppState,
    request: Ruma<deactivate::v3::Request>,
) -> Result<deactivate::v3::Response> {
    let auth = request.body.auth.clone().map(uia_auth);
    state.accounts.deactivate_own(request.session()?, auth).await?;
    Ok(deactivate::v3::Response::new(ThirdPartyIdRemovalStatus::NoSupport))
}
