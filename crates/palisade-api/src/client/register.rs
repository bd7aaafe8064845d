//! Registration: `/register` and `/register/available`.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#account-registration>
//! Closed unless the configuration says `registration = "open"`; then `m.login.dummy` suffices.

use palisade_core::Result;
use palisade_service::{RateLimitedAction, Registration};
use ruma::api::client::account::{
    get_username_availability,
    register::{self, RegistrationKind},
};

use crate::{
    AppState, Ruma,
    json::uia_auth,
    routes::{Routes, route},
};

pub(super) fn routes(router: Routes) -> Routes {
    let router = route(router, register);
    route(router, available)
}

/// `POST /_matrix/client/v3/register`
async fn register(
    state: AppState,
    request: Ruma<register::v3::Request>,
) -> Result<register::v3::Response> {
    if let Some(ip) = request.client_ip {
        state.rate_limiter.check(RateLimitedAction::Registration, ip)?;
    }
    let client = request.client();
    let body = request.body;
    let registration = Registration {
        guest: body.kind == RegistrationKind::Guest,
        guest_access_token: body.guest_access_token,
        username: body.username,
        password: body.password,
        device_id: body.device_id,
        device_display_name: body.initial_device_display_name,
        inhibit_login: body.inhibit_login,
        refresh_token: body.refresh_token,
        auth: body.auth.map(uia_auth),
    };
    let registered = state.accounts.register(registration, &client).await?;
    let mut response = register::v3::Response::new(registered.user_id);
    if let Some(login) = registered.login {
        response.access_token = Some(login.access_token);
        response.device_id = Some(login.device_id);
        if let Some(refresh) = login.refresh {
            response.refresh_token = Some(refresh.refresh_token);
            response.expires_in = Some(std::time::Duration::from_millis(refresh.expires_in_ms));
        }
    }
    Ok(response)
}

/// `GET /_matrix/client/v3/register/available`
async fn available(
    state: AppState,
    request: Ruma<get_username_availability::v3::Request>,
) -> Result<get_username_availability::v3::Response> {
    state.accounts.username_available(&request.body.username).await?;
    Ok(get_username_availability::v3::Response::new(true))
}
