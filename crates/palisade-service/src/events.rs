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

/// A value serialised once, as the `Raw` a response carries.
pub(crate) fn to_raw<T>(value: &impl Serialize) -> Result<Raw<T>> {
    serde_json::value::to_raw_value(value)
        .map(Raw::from_json)
        .map_err(|e| Error::internal(e.to_string()))
}
