//! The one error type of the domain. Only `palisade-api` turns it into HTTP.

use std::fmt;

/// What went wrong, in terms the HTTP layer maps to an `errcode` and status.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request is not allowed (`M_FORBIDDEN`).
    Forbidden,
    /// No access token was supplied (`M_MISSING_TOKEN`).
    MissingToken,
    /// The access token is not recognised (`M_UNKNOWN_TOKEN`).
    UnknownToken,
    /// The access token expired: the client refreshes it or signs in again, keeping its
    /// data (`M_UNKNOWN_TOKEN` with `soft_logout`, 401).
    ExpiredToken,
    /// The user is deactivated (`M_USER_DEACTIVATED`).
    UserDeactivated,
    /// The resource does not exist (`M_NOT_FOUND`).
    NotFound,
    /// The body is not JSON (`M_NOT_JSON`).
    NotJson,
    /// The JSON does not have the expected shape (`M_BAD_JSON`).
    BadJson,
    /// A parameter has an invalid value (`M_INVALID_PARAM`).
    InvalidParam,
    /// A required parameter is missing (`M_MISSING_PARAM`).
    MissingParam,
    /// The request is too large (`M_TOO_LARGE`).
    TooLarge,
    /// The password is too weak (`M_WEAK_PASSWORD`).
    WeakPassword,
    /// The user id is taken (`M_USER_IN_USE`).
    UserInUse,
    /// The user id is malformed (`M_INVALID_USERNAME`).
    InvalidUsername,
    /// The user id is reserved to an application service (`M_EXCLUSIVE`).
    Exclusive,
    /// The resource already exists (`M_UNKNOWN`, 409).
    Conflict,
    /// The room alias is taken (`M_ROOM_IN_USE`).
    RoomInUse,
    /// The room version is not supported (`M_UNSUPPORTED_ROOM_VERSION`).
    UnsupportedRoomVersion,
    /// Registration is closed (`M_FORBIDDEN`, but distinct for logs and tests).
    RegistrationDisabled,
    /// The request was rate limited (`M_LIMIT_EXCEEDED`).
    LimitExceeded {
        /// How long the client should wait.
        retry_after_ms: u64,
    },
    /// User-interactive authentication is needed; carries the UIA body to return with 401.
    UserInteractiveAuth(Box<serde_json::Value>),
    /// A sliding sync position the server does not know (any more): the client starts a new
    /// connection (`M_UNKNOWN_POS`, 400, as Synapse answers).
    UnknownPos,
    /// Email addresses and phone numbers are not kept here
    /// (`M_THREEPID_MEDIUM_NOT_SUPPORTED`, 400).
    ThreepidMediumNotSupported,
    /// An administrator locked the account (`M_USER_LOCKED`, 401, with `soft_logout`).
    UserLocked,
    /// An administrator suspended the account: it may read, not write (`M_USER_SUSPENDED`,
    /// 403).
    UserSuspended,
    /// A profile would exceed 64 KiB (`M_PROFILE_TOO_LARGE`, 400).
    ProfileTooLarge,
    /// A profile field's name is over 255 bytes (`M_KEY_TOO_LARGE`, 400).
    KeyTooLarge,
    /// The same annotation (reaction) again (`M_DUPLICATE_ANNOTATION`, 400, as Synapse).
    DuplicateAnnotation,
    /// The endpoint is unknown (`M_UNRECOGNIZED`).
    Unrecognized,
    /// A known endpoint asked about something the server does not know, such as an unknown
    /// push rule kind or scope (`M_UNRECOGNIZED`, 400, as Synapse answers).
    UnrecognizedRequest,
    /// A quota would be exceeded (`M_RESOURCE_LIMIT_EXCEEDED`).
    ResourceLimitExceeded,
    /// Media that was uploaded already cannot be uploaded again (`M_CANNOT_OVERWRITE_MEDIA`).
    CannotOverwriteMedia,
    /// A media id is reserved but its upload has not come yet (`M_NOT_YET_UPLOADED`, 504).
    NotYetUploaded,
    /// The range a download asked for is outside the content (416).
    RangeNotSatisfiable {
        /// The size of the content, for `Content-Range: bytes */<size>`.
        size: u64,
    },
    /// A guest account called an endpoint guests may not use (`M_GUEST_ACCESS_FORBIDDEN`).
    GuestAccessForbidden,
    /// The endpoint exists but not with this method (`M_UNRECOGNIZED`, 405).
    MethodNotAllowed,
    /// A signature does not verify (`M_INVALID_SIGNATURE`).
    InvalidSignature,
    /// Key backup writes must go to the current version (`M_WRONG_ROOM_KEYS_VERSION`, 403).
    WrongRoomKeysVersion {
        /// The current backup version.
        current_version: String,
    },
    /// The login type is not supported (`M_UNKNOWN`, 400).
    UnknownLoginType,
    /// The room's version is one the joining server does not support
    /// (`M_INCOMPATIBLE_ROOM_VERSION`).
    IncompatibleRoomVersion,
    /// A join to a room with a restricted join rule that this server cannot vouch for: it is
    /// in none of the rooms the rule lets in (`M_UNABLE_TO_AUTHORISE_JOIN`, 400).
    UnableToAuthoriseJoin,
    /// A join to a room with a restricted join rule that no user of this server may grant
    /// (`M_UNABLE_TO_GRANT_JOIN`, 400).
    UnableToGrantJoin,
    /// The event or state cannot be applied (`M_BAD_STATE`).
    BadState,
    /// A server's request signature is missing or wrong (`M_UNAUTHORIZED`, 401).
    Unauthorized,
    /// Another server could not be reached or failed (`M_UNKNOWN`, 502).
    RemoteUnavailable,
    /// Another server refused a request of this one. Kept apart from this server's own
    /// answers, so no code mistakes a peer's "not found" for its own; `palisade-api` decides
    /// what a client is told.
    RemoteRefused(RemoteRefusal),
    /// The server failed; details are logged, never returned (`M_UNKNOWN`, 500).
    Internal,
}

/// What another server's refusal meant, by its `errcode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteRefusal {
    /// `M_FORBIDDEN`: the peer does not allow it (an invite-only room, a ban).
    Forbidden,
    /// `M_NOT_FOUND`: the peer has no such room, alias, user or event.
    NotFound,
    /// The peer cannot serve the room version.
    UnsupportedRoomVersion,
    /// `M_UNRECOGNIZED` (or a bare 404): the peer does not serve the endpoint, being older.
    Unrecognized,
    /// Anything else the peer refused: this server's request was at fault, not the client's.
    Other,
}

/// A domain error: a kind and a message safe to show to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Human-readable explanation. For [`ErrorKind::Internal`] it is logged, never returned.
    pub message: String,
}

/// Result with the domain error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }

    /// `M_FORBIDDEN`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }

    /// `M_NOT_FOUND`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// `M_INVALID_PARAM`.
    pub fn invalid_param(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidParam, message)
    }

    /// `M_BAD_JSON`.
    pub fn bad_json(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadJson, message)
    }

    /// `M_BAD_STATE`.
    pub fn bad_state(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadState, message)
    }

    /// An internal failure; `message` is logged, not shown.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {}
