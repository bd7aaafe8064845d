//! Third-party identifiers (email addresses, phone numbers) and registration tokens. This
//! server keeps neither: identity comes from the organisation (its administrators, later its
//! identity provider), so an account has no email or phone to add, and no token opens
//! registration. The endpoints answer as Synapse does without email, SMS or tokens set up, so
//! that clients' settings pages work.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#adding-account-administrative-contact-information>

use axum::{http::Method, routing::post};
use palisade_core::{Error, ErrorKind, Result};
use ruma::api::client::account::{
    ThirdPartyIdRemovalStatus, add_3pid, bind_3pid, check_registration_token_validity, delete_3pid,
    get_3pids, request_3pid_management_token_via_email, request_3pid_management_token_via_msisdn,
    request_password_change_token_via_email, request_password_change_token_via_msisdn,
    request_registration_token_via_email, request_registration_token_via_msisdn, unbind_3pid,
};

use crate::{
    AppState, Ruma,
    error::ApiError,
    extract::Authenticated,
    routes::{Routes, route, route_json},
};

pub(super) fn routes(router: Routes) -> Routes {
    let router = route_json(router, list);
    let router = route(router, add);
    let router = route(router, bind);
    let router = route(router, delete);
    let router = route(router, unbind);
    let router = route(router, account_email_token);
    let router = route(router, account_msisdn_token);
    let router = route(router, password_email_token);
    let router = route(router, password_msisdn_token);
    let router = route(router, register_email_token);
    let router = route(router, register_msisdn_token);
    let router = route(router, token_validity);
    // The deprecated `POST /account/3pid` (ruma has no type for it).
    ["r0", "v3"].into_iter().fold(router, |router, version| {
        let path = format!("/_matrix/client/{version}/account/3pid");
        router.add(Method::POST, &path, post(add_deprecated))
    })
}

/// The answer to adding or verifying an identifier of any medium.
fn not_kept() -> Error {
    Error::new(
        ErrorKind::ThreepidMediumNotSupported,
        "This server does not keep email addresses or phone numbers",
    )
}

/// The identifiers of an account: always none. Serialised here because ruma's type leaves an
/// empty list out, and clients read `threepids` as Synapse sends it.
#[derive(serde::Serialize)]
struct Threepids {
    threepids: [(); 0],
}

/// `GET /_matrix/client/v3/account/3pid`: none.
async fn list(_: AppState, request: Ruma<get_3pids::v3::Request>) -> Result<Threepids> {
    request.session()?;
    Ok(Threepids { threepids: [] })
}

/// `POST /_matrix/client/v3/account/3pid/add`
async fn add(_: AppState, request: Ruma<add_3pid::v3::Request>) -> Result<add_3pid::v3::Response> {
    request.session()?;
    Err(not_kept())
}

/// `POST /_matrix/client/v3/account/3pid` (deprecated)
async fn add_deprecated(_: Authenticated) -> std::result::Result<(), ApiError> {
    Err(not_kept().into())
}

/// `POST /_matrix/client/v3/account/3pid/bind`
async fn bind(
    _: AppState,
    request: Ruma<bind_3pid::v3::Request>,
) -> Result<bind_3pid::v3::Response> {
    request.session()?;
    Err(not_kept())
}

/// `POST /_matrix/client/v3/account/3pid/delete`: there is nothing to delete, and no identity
/// server to unbind from.
async fn delete(
    _: AppState,
    request: Ruma<delete_3pid::v3::Request>,
) -> Result<delete_3pid::v3::Response> {
    request.session()?;
    Ok(delete_3pid::v3::Response::new(ThirdPartyIdRemovalStatus::NoSupport))
}

/// `POST /_matrix/client/v3/account/3pid/unbind`
async fn unbind(
    _: AppState,
    request: Ruma<unbind_3pid::v3::Request>,
) -> Result<unbind_3pid::v3::Response> {
    request.session()?;
    Ok(unbind_3pid::v3::Response::new(ThirdPartyIdRemovalStatus::NoSupport))
}

/// `POST /_matrix/client/v3/account/3pid/email/requestToken`
async fn account_email_token(
    _: AppState,
    _: Ruma<request_3pid_management_token_via_email::v3::Request>,
) -> Result<request_3pid_management_token_via_email::v3::Response> {
    Err(not_kept())
}

/// `POST /_matrix/client/v3/account/3pid/msisdn/requestToken`
async fn account_msisdn_token(
    _: AppState,
    _: Ruma<request_3pid_management_token_via_msisdn::v3::Request>,
) -> Result<request_3pid_management_token_via_msisdn::v3::Response> {
    Err(not_kept())
}

/// `POST /_matrix/client/v3/account/password/email/requestToken`: passwords are reset by the
/// administrators, not by mail.
async fn password_email_token(
    _: AppState,
    _: Ruma<request_password_change_token_via_email::v3::Request>,
) -> Result<request_password_change_token_via_email::v3::Response> {
    Err(not_kept())
}

/// `POST /_matrix/client/v3/account/password/msisdn/requestToken`
async fn password_msisdn_token(
    _: AppState,
    _: Ruma<request_password_change_token_via_msisdn::v3::Request>,
) -> Result<request_password_change_token_via_msisdn::v3::Response> {
    Err(not_kept())
}

/// `POST /_matrix/client/v3/register/email/requestToken`
async fn register_email_token(
    _: AppState,
    _: Ruma<request_registration_token_via_email::v3::Request>,
) -> Result<request_registration_token_via_email::v3::Response> {
    Err(not_kept())
}

/// `POST /_matrix/client/v3/register/msisdn/requestToken`
async fn register_msisdn_token(
    _: AppState,
    _: Ruma<request_registration_token_via_msisdn::v3::Request>,
) -> Result<request_registration_token_via_msisdn::v3::Response> {
    Err(not_kept())
}

/// `GET /_matrix/client/v1/register/m.login.registration_token/validity`: no token is valid.
async fn token_validity(
    _: AppState,
    _: Ruma<check_registration_token_validity::v1::Request>,
) -> Result<check_registration_token_validity::v1::Response> {
    Ok(check_registration_token_validity::v1::Response::new(false))
}
