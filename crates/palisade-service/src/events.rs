//! Event JSON built for clients from stored parts, the content copied through unparsed.

use palisade_core::{Error, Result};
use ruma::{UserId, serde::Raw};
use serde::Serialize;
use serde_json::value::RawValue;

/// An event of `kind` with stored `content` (JSON text), and a sender where the event has one
/// (to-device events).
pub(crate) fn event_of<T>(kind: &str, sender: Option<&UserId>, content: &str) -> Result<Raw<T>> {
    #[derive(Serialize)]
    struct Event<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        sender: Option<&'a UserId>,
        content: &'a RawValue,
    }
    let content: &RawValue = serde_json::from_str(content)
        .map_err(|e| Error::internal(format!("stored {kind} content: {e}")))?;
    to_raw(&Event { kind, sender, content })
}

/// Stored JSON text, as the `Raw` a response carries.
pub(crate) fn stored_raw<T>(json: String) -> Result<Raw<T>> {
    stored_json(json).map(Raw::from_json)
}

/// Stored JSON text, checked to be JSON and carried unparsed.
pub(crate) fn stored_json(json: String) -> Result<Box<RawValue>> {
    RawValue::from_string(json).map_err(|e| Error::internal(format!("stored JSON unreadable: {e}")))
}

/// A value serialised once, as the `Raw` a response carries.
pub(crate) fn to_raw<T>(value: &impl Serialize) -> Result<Raw<T>> {
    to_json(value).map(Raw::from_json)
}

/// A value serialised once, as JSON text.
pub(crate) fn to_json(value: &impl Serialize) -> Result<Box<RawValue>> {
    serde_json::value::to_raw_value(value).map_err(|e| Error::internal(e.to_string()))
}
