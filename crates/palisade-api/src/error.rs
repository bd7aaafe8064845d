//! The one mapping from domain errors to Matrix error responses.

use axum::{
    Json,
    response::{IntoResponse, Response},
};
use http::StatusCode;
use palisade_core::{Error, ErrorKind, RemoteRefusal};
use serde_json::json;

/// A domain error on its way out as an HTTP response.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        Self(error)
    }
}

/// The status and `errcode` of a kind.
fn status_and_code(kind: &ErrorKind) -> (StatusCode, &'static str) {
    use ErrorKind::*;
    match kind {
        Forbidden => (StatusCode::FORBIDDEN, "M_FORBIDDEN"),
        RegistrationDisabled => (StatusCode::FORBIDDEN, "M_FORBIDDEN"),
        MissingToken => (StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN"),
        UnknownToken | ExpiredToken => (StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN"),
        UserDeactivated => (StatusCode::FORBIDDEN, "M_USER_DEACTIVATED"),
        NotFound => (StatusCode::NOT_FOUND, "M_NOT_FOUND"),
        NotJson => (StatusCode::BAD_REQUEST, "M_NOT_JSON"),
        BadJson => (StatusCode::BAD_REQUEST, "M_BAD_JSON"),
        InvalidParam => (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"),
        MissingParam => (StatusCode::BAD_REQUEST, "M_MISSING_PARAM"),
        TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE"),
        WeakPassword => (StatusCode::BAD_REQUEST, "M_WEAK_PASSWORD"),
        UserInUse => (StatusCode::BAD_REQUEST, "M_USER_IN_USE"),
        InvalidUsername => (StatusCode::BAD_REQUEST, "M_INVALID_USERNAME"),
        Exclusive => (StatusCode::BAD_REQUEST, "M_EXCLUSIVE"),
        Conflict => (StatusCode::CONFLICT, "M_UNKNOWN"),
        RoomInUse => (StatusCode::BAD_REQUEST, "M_ROOM_IN_USE"),
        UnsupportedRoomVersion => (StatusCode::BAD_REQUEST, "M_UNSUPPORTED_ROOM_VERSION"),
        LimitExceeded { .. } => (StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED"),
        UserInteractiveAuth(_) => (StatusCode::UNAUTHORIZED, "M_FORBIDDEN"),
        Unrecognized => (StatusCode::NOT_FOUND, "M_UNRECOGNIZED"),
        UnrecognizedRequest => (StatusCode::BAD_REQUEST, "M_UNRECOGNIZED"),
        GuestAccessForbidden => (StatusCode::FORBIDDEN, "M_GUEST_ACCESS_FORBIDDEN"),
        ResourceLimitExceeded => (StatusCode::FORBIDDEN, "M_RESOURCE_LIMIT_EXCEEDED"),
        CannotOverwriteMedia => (StatusCode::CONFLICT, "M_CANNOT_OVERWRITE_MEDIA"),
        RangeNotSatisfiable { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, "M_UNKNOWN"),
        NotYetUploaded => (StatusCode::GATEWAY_TIMEOUT, "M_NOT_YET_UPLOADED"),
        MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "M_UNRECOGNIZED"),
        UnknownLoginType => (StatusCode::BAD_REQUEST, "M_UNKNOWN"),
        BadState => (StatusCode::BAD_REQUEST, "M_BAD_STATE"),
        UnknownPos => (StatusCode::BAD_REQUEST, "M_UNKNOWN_POS"),
        DuplicateAnnotation => (StatusCode::BAD_REQUEST, "M_DUPLICATE_ANNOTATION"),
        UserLocked => (StatusCode::UNAUTHORIZED, "M_USER_LOCKED"),
        ProfileTooLarge => (StatusCode::BAD_REQUEST, "M_PROFILE_TOO_LARGE"),
        KeyTooLarge => (StatusCode::BAD_REQUEST, "M_KEY_TOO_LARGE"),
        UserSuspended => (StatusCode::FORBIDDEN, "M_USER_SUSPENDED"),
        ThreepidMediumNotSupported => (StatusCode::BAD_REQUEST, "M_THREEPID_MEDIUM_NOT_SUPPORTED"),
        InvalidSignature => (StatusCode::BAD_REQUEST, "M_INVALID_SIGNATURE"),
        WrongRoomKeysVersion { .. } => (StatusCode::FORBIDDEN, "M_WRONG_ROOM_KEYS_VERSION"),
        Unauthorized => (StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED"),
        IncompatibleRoomVersion => (StatusCode::BAD_REQUEST, "M_INCOMPATIBLE_ROOM_VERSION"),
        UnableToAuthoriseJoin => (StatusCode::BAD_REQUEST, "M_UNABLE_TO_AUTHORISE_JOIN"),
        UnableToGrantJoin => (StatusCode::BAD_REQUEST, "M_UNABLE_TO_GRANT_JOIN"),
        RemoteUnavailable | RemoteRefused(RemoteRefusal::Other | RemoteRefusal::Unrecognized) => {
            (StatusCode::BAD_GATEWAY, "M_UNKNOWN")
        }
        RemoteRefused(RemoteRefusal::Forbidden) => (StatusCode::FORBIDDEN, "M_FORBIDDEN"),
        RemoteRefused(RemoteRefusal::NotFound) => (StatusCode::NOT_FOUND, "M_NOT_FOUND"),
        RemoteRefused(RemoteRefusal::UnsupportedRoomVersion) => {
            (StatusCode::BAD_REQUEST, "M_UNSUPPORTED_ROOM_VERSION")
        }
        Internal => (StatusCode::INTERNAL_SERVER_ERROR, "M_UNKNOWN"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "M_UNKNOWN"),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let Error { kind, message } = self.0;
        let (status, errcode) = status_and_code(&kind);
        let retry_after_ms = match kind {
            ErrorKind::LimitExceeded { retry_after_ms } => Some(retry_after_ms),
            _ => None,
        };
        let unsatisfiable = match kind {
            ErrorKind::RangeNotSatisfiable { size } => Some(size),
            _ => None,
        };
        let body = match kind {
            ErrorKind::UserInteractiveAuth(body) => *body,
            ErrorKind::Internal => {
                tracing::error!(error = %message, "internal error");
                json!({ "errcode": errcode, "error": "Internal server error" })
            }
            ErrorKind::LimitExceeded { retry_after_ms } => {
                json!({ "errcode": errcode, "error": message, "retry_after_ms": retry_after_ms })
            }
            ErrorKind::WrongRoomKeysVersion { current_version } => {
                json!({ "errcode": errcode, "error": message, "current_version": current_version })
            }
            ErrorKind::UnknownToken => {
                json!({ "errcode": errcode, "error": message, "soft_logout": false })
            }
            // The client keeps its session: for when the account is unlocked (spec), or to
            // refresh the token.
            ErrorKind::UserLocked | ErrorKind::ExpiredToken => {
                json!({ "errcode": errcode, "error": message, "soft_logout": true })
            }
            _ => json!({ "errcode": errcode, "error": message }),
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(retry_after_ms) = retry_after_ms
            && let Ok(value) =
                http::HeaderValue::from_str(&retry_after_ms.div_ceil(1000).to_string())
        {
            response.headers_mut().insert(http::header::RETRY_AFTER, value);
        }
        if let Some(size) = unsatisfiable {
            response.headers_mut().insert(
                http::header::CONTENT_RANGE,
                format!("bytes */{size}").parse().expect("a valid header"),
            );
        }
        response
    }
}
