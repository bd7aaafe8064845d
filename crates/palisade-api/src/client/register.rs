//! Registration: `/register` and `/register/available`.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#account-registration>
//! Closed unless the configuration says `registration = "open"`; then `m.login.dummy` suffices.

use palisade_core::{Error, ErrorKind, Result, config::Registration};
use palisade_service::{RateLimitedAction, UiaPurpose};
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

fn ensure_open(state: &AppState) -> Result<()> {
    match state.config.registration {
        Registration::Open => Ok(()),
        Registration::Closed => {
            Err(Error::new(ErrorKind::RegistrationDisabled, "Registration has been disabled"))
        }
    }
}

/// `POST /_matrix/client/v3/register`
async fn register(
    state: AppState,
    request: Ruma<register::v3::Request>,
) -> Result<register::v3::Response> {
    if let Some(ip) = request.client_ip {
        state.rate_limiter.check(RateLimitedAction::Registration, ip)?;
    }
    ensure_open(&state)?;
    let client = request.client();
    let body = request.body;
    if body.kind == RegistrationKind::Guest {
        return Err(Error::forbidden("Guest access is disabled"));
    }
    // Refuse a taken or malformed name before the client goes through authentication.
    let user_id = match &body.username {
        Some(name) => Some(state.accounts.check_available(name).await?),
        None => None,
    };
    state.uia.authenticate(UiaPurpose::Register, None, body.auth.map(uia_auth)).await?;
    let password =
        body.password.ok_or_else(|| Error::new(ErrorKind::MissingParam, "Missing password"))?;
    let user_id = match user_id {
        Some(user_id) => user_id,
        None => state.accounts.generate_user_id().await?,
    };
    state.accounts.create_user(&user_id, Some(&password), false).await?;

    let mut response = register::v3::Response::new(user_id.clone());
    if !body.inhibit_login {
        let login = state
            .accounts
            .create_session(&user_id, body.device_id, body.initial_device_display_name, &client)
            .await?;
        response.access_token = Some(login.access_token);
        response.device_id = Some(login.device_id);
    }
    Ok(response)
}

/// `GET /_matrix/client/v3/register/available`
async fn available(
    state: AppState,
    request: Ruma<get_username_availability::v3::Request>,
) -> Result<get_username_availability::v3::Response> {
    ensure_open(&state)?;
    state.accounts.check_available(&request.body.username).await?;
    Ok(get_username_availability::v3::Response::new(true))
}
