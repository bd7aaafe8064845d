//! Moving between the services' JSON and ruma's wire types, and checks shared by handlers.

use palisade_core::{Error, Result};
use ruma::{UserId, serde::Raw};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Service JSON as a ruma `Raw`.
pub(super) fn raw<T>(value: &Value) -> Result<Raw<T>> {
    serde_json::value::to_raw_value(value)
        .map(Raw::from_json)
        .map_err(|e| Error::internal(e.to_string()))
}

/// A list of service JSON values as ruma `Raw`s.
pub(super) fn raws<T>(values: &[Value]) -> Result<Vec<Raw<T>>> {
    values.iter().map(raw).collect()
}

/// The JSON of a value the client sent as `Raw`.
pub(super) fn json_of<T>(raw: &Raw<T>) -> Result<Value> {
    serde_json::from_str(raw.json().get()).map_err(|e| Error::bad_json(e.to_string()))
}

/// A JSON object the client sent, or `M_BAD_JSON` naming `what`.
pub(super) fn object(json: &str, what: &str) -> Result<Map<String, Value>> {
    serde_json::from_str(json).map_err(|_| Error::bad_json(format!("{what} must be a JSON object")))
}

/// Service JSON as a ruma response type (a mismatch is our bug, so internal).
pub(super) fn typed<T: DeserializeOwned>(value: Value) -> Result<T> {
    serde_json::from_value(value).map_err(|e| Error::internal(format!("response shape: {e}")))
}

/// Refuses requests about another user's private data (filters, account data, tags, profile).
pub(super) fn ensure_own(session_user: &UserId, path_user: &UserId) -> Result<()> {
    if session_user != path_user {
        return Err(Error::forbidden("Cannot access another user's data"));
    }
    Ok(())
}
