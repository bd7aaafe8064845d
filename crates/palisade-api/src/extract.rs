//! The `Ruma<T>` extractor: authentication, body limits and parsing into a ruma request type.

use std::{any::TypeId, net::SocketAddr};

use axum::{
    body::Body,
    extract::{ConnectInfo, FromRequest, FromRequestParts, Path, RawPathParams, Request},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use palisade_core::{Error, ErrorKind, Result};
use palisade_service::{ClientInfo, Session};
use ruma::api::{
    IncomingRequest, OutgoingResponse,
    auth_scheme::{
        AccessToken, AccessTokenOptional, AppserviceToken, AppserviceTokenOptional, NoAccessToken,
        NoAuthentication,
    },
    error::{DeserializationError, FromHttpRequestError},
    federation::authentication::ServerSignatures,
    path_builder::PathBuilder,
};

use crate::{AppState, error::ApiError};

/// A parsed, authenticated ruma request.
pub struct Ruma<T> {
    /// The request.
    pub body: T,
    /// The session behind the access token, when one was given and valid.
    pub session: Option<Session>,
    /// The client's address, when known.
    pub client_ip: Option<std::net::IpAddr>,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
    /// The server that sent a federation request (its `X-Matrix` signature verified).
    pub origin: Option<ruma::OwnedServerName>,
}

impl<T> Ruma<T> {
    /// Where the request came from, for the audit log.
    pub fn client(&self) -> ClientInfo {
        ClientInfo {
            ip: self.client_ip.map(|ip| ip.to_string()),
            user_agent: self.user_agent.clone(),
        }
    }

    /// The server that signed a federation request; always present on federation endpoints.
    pub fn origin(&self) -> Result<&ruma::ServerName> {
        self.origin
            .as_deref()
            .ok_or_else(|| Error::new(ErrorKind::Unauthorized, "Missing X-Matrix authorization"))
    }

    /// The authenticated session; always present on endpoints that require a token.
    pub fn session(&self) -> Result<&Session> {
        self.session
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::MissingToken, "Missing access token"))
    }
}

/// How an endpoint authenticates its caller.
#[derive(PartialEq, Eq)]
enum Authentication {
    /// An access token is required.
    Token,
    /// An access token is read when given.
    OptionalToken,
    /// Nobody in particular: the endpoint is public.
    Public,
    /// An `X-Matrix` signature of another server.
    Server,
}

/// The authentication a ruma scheme asks for; a scheme this server does not know is refused
/// (fail closed) rather than treated as public.
fn authentication<A: 'static>() -> Result<Authentication> {
    let id = TypeId::of::<A>();
    Ok(if id == TypeId::of::<AccessToken>() || id == TypeId::of::<AppserviceToken>() {
        Authentication::Token
    } else if id == TypeId::of::<AccessTokenOptional>()
        || id == TypeId::of::<AppserviceTokenOptional>()
    {
        Authentication::OptionalToken
    } else if id == TypeId::of::<NoAuthentication>() || id == TypeId::of::<NoAccessToken>() {
        Authentication::Public
    } else if id == TypeId::of::<ServerSignatures>() {
        Authentication::Server
    } else {
        return Err(Error::internal(format!(
            "endpoint with an unknown authentication scheme {}",
            std::any::type_name::<A>()
        )));
    })
}

/// The access token from the `Authorization` header or, deprecated, the query string.
pub(crate) fn access_token(parts: &http::request::Parts) -> Option<String> {
    if let Some(header) = parts.headers.get(http::header::AUTHORIZATION) {
        return header.to_str().ok()?.strip_prefix("Bearer ").map(|t| t.trim().to_owned());
    }
    #[derive(serde::Deserialize)]
    struct Query {
        access_token: Option<String>,
    }
    axum::extract::Query::<Query>::try_from_uri(&parts.uri).ok()?.0.access_token
}

/// The client's address, when the listener knows it (for rate limits).
pub(crate) struct ClientIp(pub(crate) Option<std::net::IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _: &AppState,
    ) -> Result<Self, ApiError> {
        Ok(Self(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())))
    }
}

/// The session of an access token, for the few endpoints ruma has no request type for
/// (deprecated forms that clients still use); guests only where `GUESTS` says they may.
pub(crate) struct Authenticated<const GUESTS: bool = false>(pub(crate) Session);

impl<const GUESTS: bool> FromRequestParts<AppState> for Authenticated<GUESTS> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &AppState,
    ) -> Result<Self, ApiError> {
        let token = access_token(parts)
            .ok_or_else(|| Error::new(ErrorKind::MissingToken, "Missing access token"))?;
        let session = state.accounts.authenticate(&token).await?;
        if session.is_guest() && !GUESTS {
            return Err(guest_forbidden().into());
        }
        Ok(Self(session))
    }
}

fn parse_error(error: FromHttpRequestError) -> Error {
    match error {
        FromHttpRequestError::Deserialization(DeserializationError::Json(e)) => {
            Error::bad_json(format!("Invalid request body: {e}"))
        }
        FromHttpRequestError::Deserialization(e) => {
            Error::invalid_param(format!("Invalid request: {e}"))
        }
        FromHttpRequestError::MethodMismatch { .. } => {
            Error::new(ErrorKind::MethodNotAllowed, "Method not allowed")
        }
        _ => Error::invalid_param("Invalid request"),
    }
}

impl<T> FromRequest<AppState> for Ruma<T>
where
    T: IncomingRequest + Send + 'static,
    T::Authentication: 'static,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let (mut parts, body) = request.into_parts();
        let client_ip = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());

        let raw_params =
            <RawPathParams as axum::extract::FromRequestParts<AppState>>::from_request_parts(
                &mut parts, state,
            )
            .await
            .map_err(|_| Error::invalid_param("Invalid path"))?;
        let mut path_args: Vec<String> = if raw_params.iter().next().is_none() {
            Vec::new()
        } else {
            <Path<Vec<String>> as axum::extract::FromRequestParts<AppState>>::from_request_parts(
                &mut parts, state,
            )
            .await
            .map_err(|_| Error::invalid_param("Invalid path parameter"))?
            .0
        };
        let expected = T::PATH_BUILDER.all_paths().next().map_or(0, |p| p.matches('{').count());
        if path_args.len() < expected {
            path_args.resize(expected, String::new());
        }

        // The directory and alias lookups take an optional token (ruma says none): it is
        // needed to ask another server through this one.
        let id = TypeId::of::<T>();
        let authentication = if id
            == TypeId::of::<ruma::api::client::directory::get_public_rooms::v3::Request>()
            || id == TypeId::of::<ruma::api::client::alias::get_alias::v3::Request>()
        {
            Authentication::OptionalToken
        } else {
            authentication::<T::Authentication>()?
        };
        let session = match (&authentication, access_token(&parts)) {
            (Authentication::Public | Authentication::Server, _)
            | (Authentication::OptionalToken, None) => None,
            (Authentication::Token, None) => {
                return Err(Error::new(ErrorKind::MissingToken, "Missing access token").into());
            }
            (_, Some(token)) => Some(state.accounts.authenticate(&token).await?),
        };
        // Endpoints that need a token serve guests only where the spec's guest list says so.
        if authentication == Authentication::Token
            && session.as_ref().is_some_and(Session::is_guest)
            && !guests_may_call::<T>()
        {
            return Err(guest_forbidden().into());
        }
        let user_agent = parts
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);

        let bytes = axum::body::to_bytes(body, state.config.max_request_bytes)
            .await
            .map_err(|_| Error::new(ErrorKind::TooLarge, "Request body too large"))?;
        if !bytes.is_empty() && serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_err() {
            return Err(Error::new(ErrorKind::NotJson, "Content not JSON").into());
        }
        // Clients leave the body out where every field is optional (matrix-nio's join, many
        // logouts); Synapse reads that as `{}`. Where the body is itself the content (an
        // event, account data) it is not optional; a server's signed request keeps its bytes.
        let body_method = matches!(parts.method, http::Method::POST | http::Method::PUT);
        let empty = bytes.is_empty() && body_method && authentication != Authentication::Server;
        if empty && body_is_content::<T>() {
            return Err(Error::new(ErrorKind::NotJson, "Content not JSON").into());
        }
        let bytes = if empty { Bytes::from_static(b"{}") } else { bytes };
        refuse_what_ruma_cannot_parse::<T>(&bytes)?;
        let bytes = lenient_body::<T>(bytes);
        lenient_query::<T>(&mut parts);
        let http_request = http::Request::from_parts(parts, bytes);
        let origin = if authentication == Authentication::Server {
            Some(state.federation.authenticate(&http_request).await?)
        } else {
            None
        };
        let body = T::try_from_http_request(http_request, &path_args).map_err(parse_error)?;
        Ok(Self { body, session, client_ip, user_agent, origin })
    }
}

fn guest_forbidden() -> Error {
    Error::new(ErrorKind::GuestAccessForbidden, "Guest access not allowed")
}

/// Whether guest accounts may call the endpoint: the spec's list for guests (reading and
/// taking part in rooms, their own profile, devices and keys) and what a client needs to run
/// (sync filters, capabilities, push rules); everything else (creating rooms, inviting,
/// state changes, the directory, administration) is refused with `M_GUEST_ACCESS_FORBIDDEN`.
///
/// Spec: <https://spec.matrix.org/v1.19/client-server-api/#guest-access>
fn guests_may_call<T: 'static>() -> bool {
    use ruma::api::client::{
        account, config, context, device, discovery, filter, keys, membership, message, peeking,
        presence, profile, push, read_marker, receipt, room, state, sync, tag, to_device, typing,
        voip,
    };
    let allowed = [
        TypeId::of::<account::whoami::v3::Request>(),
        TypeId::of::<sync::sync_events::v3::Request>(),
        TypeId::of::<filter::create_filter::v3::Request>(),
        TypeId::of::<filter::get_filter::v3::Request>(),
        TypeId::of::<discovery::get_capabilities::v3::Request>(),
        TypeId::of::<push::get_pushrules_all::v3::Request>(),
        TypeId::of::<state::get_state_events::v3::Request>(),
        TypeId::of::<state::get_state_event_for_key::v3::Request>(),
        TypeId::of::<room::get_room_event::v3::Request>(),
        TypeId::of::<context::get_context::v3::Request>(),
        TypeId::of::<message::get_message_events::v3::Request>(),
        TypeId::of::<membership::get_member_events::v3::Request>(),
        TypeId::of::<membership::joined_rooms::v3::Request>(),
        TypeId::of::<peeking::get_current_state::v3::Request>(),
        TypeId::of::<message::send_message_event::v3::Request>(),
        TypeId::of::<membership::join_room_by_id::v3::Request>(),
        TypeId::of::<membership::join_room_by_id_or_alias::v3::Request>(),
        TypeId::of::<membership::leave_room::v3::Request>(),
        TypeId::of::<typing::create_typing_event::v3::Request>(),
        TypeId::of::<receipt::create_receipt::v3::Request>(),
        TypeId::of::<read_marker::set_read_marker::v3::Request>(),
        TypeId::of::<presence::get_presence::v3::Request>(),
        TypeId::of::<presence::set_presence::v3::Request>(),
        TypeId::of::<profile::set_display_name::v3::Request>(),
        TypeId::of::<profile::set_avatar_url::v3::Request>(),
        TypeId::of::<tag::get_tags::v3::Request>(),
        TypeId::of::<tag::create_tag::v3::Request>(),
        TypeId::of::<tag::delete_tag::v3::Request>(),
        TypeId::of::<config::get_global_account_data::v3::Request>(),
        TypeId::of::<config::set_global_account_data::v3::Request>(),
        TypeId::of::<config::get_room_account_data::v3::Request>(),
        TypeId::of::<config::set_room_account_data::v3::Request>(),
        TypeId::of::<device::get_devices::v3::Request>(),
        TypeId::of::<device::get_device::v3::Request>(),
        TypeId::of::<device::update_device::v3::Request>(),
        TypeId::of::<keys::upload_keys::v3::Request>(),
        TypeId::of::<keys::get_keys::v3::Request>(),
        TypeId::of::<keys::claim_keys::v3::Request>(),
        TypeId::of::<keys::get_key_changes::v3::Request>(),
        TypeId::of::<to_device::send_event_to_device::v3::Request>(),
        // Guests may take part in calls (`[turn] allow_guests` decides whether with a relay).
        TypeId::of::<voip::get_turn_server_info::v3::Request>(),
    ];
    allowed.contains(&TypeId::of::<T>())
}

/// Whether the endpoint's whole body is content the client chose (an event's, account
/// data's), which an empty body does not stand for.
fn body_is_content<T: 'static>() -> bool {
    use ruma::api::client::{config, message::send_message_event, state::send_state_event};
    let id = TypeId::of::<T>();
    id == TypeId::of::<send_message_event::v3::Request>()
        || id == TypeId::of::<send_state_event::v3::Request>()
        || id == TypeId::of::<config::set_global_account_data::v3::Request>()
        || id == TypeId::of::<config::set_room_account_data::v3::Request>()
}

/// Bodies ruma's parsers panic on instead of failing: a login without a `type` (ruma-client-api
/// 0.24 indexes the map). They get the error Synapse gives.
fn refuse_what_ruma_cannot_parse<T: 'static>(body: &[u8]) -> Result<()> {
    if TypeId::of::<T>() == TypeId::of::<ruma::api::client::session::login::v3::Request>() {
        let typed = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .is_some_and(|login| login.get("type").is_some_and(serde_json::Value::is_string));
        if !typed {
            return Err(Error::new(ErrorKind::MissingParam, "Missing login type"));
        }
    }
    Ok(())
}

/// Whether the endpoint's body carries a UIA `auth` object.
fn takes_uia<T: 'static>() -> bool {
    use ruma::api::client::{account, device, keys};
    let id = TypeId::of::<T>();
    id == TypeId::of::<account::register::v3::Request>()
        || id == TypeId::of::<account::change_password::v3::Request>()
        || id == TypeId::of::<account::deactivate::v3::Request>()
        || id == TypeId::of::<device::delete_device::v3::Request>()
        || id == TypeId::of::<device::delete_devices::v3::Request>()
        || id == TypeId::of::<keys::upload_signing_keys::v3::Request>()
}

/// A query Synapse accepts that ruma would refuse, completed with Synapse's default:
/// `/messages` without `dir` pages forwards, `/threads` without `include` lists them all.
fn lenient_query<T: 'static>(parts: &mut http::request::Parts) {
    use ruma::api::client::{message::get_message_events, threads::get_threads};
    let (name, default) = if TypeId::of::<T>() == TypeId::of::<get_message_events::v3::Request>() {
        ("dir", "f")
    } else if TypeId::of::<T>() == TypeId::of::<get_threads::v1::Request>() {
        ("include", "all")
    } else {
        return;
    };
    let query = parts.uri.query().unwrap_or_default();
    if query.split('&').any(|pair| pair.split('=').next() == Some(name)) {
        return;
    }
    let separator = if query.is_empty() { "" } else { "&" };
    let uri = format!("{}?{query}{separator}{name}={default}", parts.uri.path());
    if let Ok(uri) = uri.parse() {
        parts.uri = uri;
    }
}

/// A body Synapse accepts that ruma would refuse, rewritten to the form ruma parses; any other
/// body is left as it came.
fn lenient_body<T: 'static>(body: Bytes) -> Bytes {
    if takes_uia::<T>() {
        legacy_password_stage(body)
    } else if TypeId::of::<T>()
        == TypeId::of::<ruma::api::client::typing::create_typing_event::v3::Request>()
    {
        typing_without_timeout(body)
    } else if TypeId::of::<T>()
        == TypeId::of::<ruma::api::client::search::search_events::v3::Request>()
    {
        search_without_context(body)
    } else {
        body
    }
}

/// `{"typing": true}` without the `timeout` the spec leaves optional (ruma requires it): the
/// 30 seconds Synapse assumes.
fn typing_without_timeout(body: Bytes) -> Bytes {
    let Ok(serde_json::Value::Object(mut object)) = serde_json::from_slice(&body) else {
        return body;
    };
    if object.get("typing") != Some(&serde_json::Value::Bool(true))
        || object.contains_key("timeout")
    {
        return body;
    }
    object.insert("timeout".into(), serde_json::json!(30_000));
    serde_json::to_vec(&object).map(Bytes::from).unwrap_or(body)
}

/// A search without `event_context` (ruma fills in the spec's defaults, 5 events each side):
/// marked with limits of 0, so that context is computed only when asked for, as Synapse does.
fn search_without_context(body: Bytes) -> Bytes {
    let Ok(serde_json::Value::Object(mut object)) = serde_json::from_slice(&body) else {
        return body;
    };
    let Some(serde_json::Value::Object(criteria)) = object
        .get_mut("search_categories")
        .and_then(|categories| categories.get_mut("room_events"))
    else {
        return body;
    };
    if criteria.contains_key("event_context") {
        return body;
    }
    criteria
        .insert("event_context".into(), serde_json::json!({"before_limit": 0, "after_limit": 0}));
    serde_json::to_vec(&object).map(Bytes::from).unwrap_or(body)
}

/// A UIA password stage naming its user with the pre-r0.4 top-level `user` field (instead of
/// an `identifier`), which Synapse accepts and older Element versions send, rewritten to the
/// `m.id.user` identifier ruma parses.
fn legacy_password_stage(body: Bytes) -> Bytes {
    if !body.windows(6).any(|w| w == b"\"auth\"") {
        return body;
    }
    let Ok(serde_json::Value::Object(mut object)) = serde_json::from_slice(&body) else {
        return body;
    };
    let Some(serde_json::Value::Object(auth)) = object.get_mut("auth") else { return body };
    let legacy = auth.get("type").and_then(serde_json::Value::as_str) == Some("m.login.password")
        && !auth.contains_key("identifier");
    let Some(user) = auth.get("user").filter(|_| legacy).cloned() else { return body };
    auth.insert("identifier".into(), serde_json::json!({ "type": "m.id.user", "user": user }));
    serde_json::to_vec(&object).map(Bytes::from).unwrap_or(body)
}

/// A ruma response on its way out.
pub struct RumaResponse<T>(pub T);

impl<T: OutgoingResponse> IntoResponse for RumaResponse<T> {
    fn into_response(self) -> Response {
        match self.0.try_into_http_response::<Vec<u8>>() {
            Ok(response) => response.map(|body| Body::from(Bytes::from(body))),
            Err(e) => {
                ApiError(Error::internal(format!("serialising response: {e}"))).into_response()
            }
        }
    }
}
