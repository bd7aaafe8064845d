//! Sessions: `/login` (passwords and login tokens), `/login/get_token`, `/refresh`, `/logout`,
//! `/logout/all`, `/account/whoami`.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#login>

use std::time::Duration;

use palisade_core::{Error, ErrorKind, Result};
use palisade_service::{
    RateLimitedAction,
    accounts::{Credential, Login},
};
use ruma::api::client::{
    account::whoami,
    session::{
        get_login_token,
        get_login_types::{
            self,
            v3::{LoginType, PasswordLoginType, TokenLoginType},
        },
        login::{self, v3::LoginInfo},
        logout, logout_all, refresh_token,
    },
    uiaa::UserIdentifier,
};

use crate::{
    AppState, Ruma,
    json::uia_auth,
    routes::{Routes, route},
};

pub(super) fn routes(router: Routes) -> Routes {
    let router = route(router, login_types);
    let router = route(router, login);
    let router = route(router, refresh);
    let router = route(router, get_token);
    let router = route(router, logout);
    let router = route(router, logout_all);
    route(router, whoami)
}

/// `GET /_matrix/client/v3/login`: passwords, and login tokens when a signed-in device may
/// issue them.
async fn login_types(
    state: AppState,
    _: Ruma<get_login_types::v3::Request>,
) -> Result<get_login_types::v3::Response> {
    let mut flows = vec![LoginType::Password(PasswordLoginType::new())];
    if state.config.login_via_existing_session {
        let mut token = TokenLoginType::new();
        token.get_login_token = true;
        flows.push(LoginType::Token(token));
    }
    Ok(get_login_types::v3::Response::new(flows))
}

/// `POST /_matrix/client/v1/login/get_token`: a login token for a new device.
async fn get_token(
    state: AppState,
    request: Ruma<get_login_token::v1::Request>,
) -> Result<get_login_token::v1::Response> {
    let session = request.session()?;
    let auth = request.body.auth.clone().map(uia_auth);
    let (token, lifetime) = state.accounts.issue_login_token(session, auth).await?;
    Ok(get_login_token::v1::Response::new(Duration::from_millis(lifetime), token))
}

/// `POST /_matrix/client/v3/login`
async fn login(state: AppState, request: Ruma<login::v3::Request>) -> Result<login::v3::Response> {
    if let Some(ip) = request.client_ip {
        state.rate_limiter.check(RateLimitedAction::Login, ip)?;
    }
    let client = request.client();
    let body = request.body;
    let credential = match body.login_info {
        LoginInfo::Password(password) => {
            #[expect(deprecated, reason = "clients still send the pre-r0.4 `user` field")]
            let user = match (password.identifier, password.user) {
                (Some(UserIdentifier::Matrix(id)), _) => id.user,
                (None, Some(user)) => user,
                (Some(_), _) => {
                    return Err(Error::new(
                        ErrorKind::UnknownLoginType,
                        "Unsupported identifier type",
                    ));
                }
                (None, None) => {
                    return Err(Error::new(ErrorKind::MissingParam, "Missing identifier"));
                }
            };
            Credential::Password { user, password: password.password }
        }
        LoginInfo::Token(token) => Credential::Token(token.token),
        _ => return Err(Error::new(ErrorKind::UnknownLoginType, "Unknown login type")),
    };
    let login = state
        .accounts
        .login(
            credential,
            body.device_id,
            body.initial_device_display_name,
            &client,
            body.refresh_token,
        )
        .await?;
    Ok(login_response(&state, login))
}

/// A sign-in as `/login` answers it.
fn login_response(state: &AppState, login: Login) -> login::v3::Response {
    let mut response = login::v3::Response::new(login.user_id, login.access_token, login.device_id);
    if let Some(refresh) = login.refresh {
        response.refresh_token = Some(refresh.refresh_token);
        response.expires_in = Some(Duration::from_millis(refresh.expires_in_ms));
    }
    #[expect(deprecated, reason = "older clients read `home_server`")]
    {
        response.home_server = Some(state.config.server_name.clone());
    }
    response
}

/// `POST /_matrix/client/v3/refresh`: a new access token for a refresh token (no access
/// token needed: the refresh token is the credential).
async fn refresh(
    state: AppState,
    request: Ruma<refresh_token::v3::Request>,
) -> Result<refresh_token::v3::Response> {
    let refreshed = state.accounts.refresh(&request.body.refresh_token).await?;
    let mut response = refresh_token::v3::Response::new(refreshed.access_token);
    response.refresh_token = Some(refreshed.refresh.refresh_token);
    response.expires_in_ms = Some(Duration::from_millis(refreshed.refresh.expires_in_ms));
    Ok(response)
}

/// `POST /_matrix/client/v3/logout`
async fn logout(
    state: AppState,
    request: Ruma<logout::v3::Request>,
) -> Result<logout::v3::Response> {
    state.accounts.logout(request.session()?).await?;
    Ok(logout::v3::Response::new())
}

/// `POST /_matrix/client/v3/logout/all`
async fn logout_all(
    state: AppState,
    request: Ruma<logout_all::v3::Request>,
) -> Result<logout_all::v3::Response> {
    state.accounts.logout_all(request.session()?.user_id(), None, None).await?;
    Ok(logout_all::v3::Response::new())
}

/// `GET /_matrix/client/v3/account/whoami`
async fn whoami(
    state: AppState,
    request: Ruma<whoami::v3::Request>,
) -> Result<whoami::v3::Response> {
    let _ = state;
    let session = request.session()?;
    let mut response = whoami::v3::Response::new(session.user_id().to_owned(), session.is_guest());
    response.device_id = Some(session.device_id().to_owned());
    Ok(response)
}
