//! Checks on a PDU from another server before the room pipeline sees it: format, the
//! signatures of every server that must have signed it, and the content hash (a mismatch keeps
//! only the redacted event).
//!
//! Spec: <https://spec.matrix.org/v1.19/server-server-api/#checks-performed-on-receipt-of-a-pdu>

use palisade_core::{Error, ErrorKind, Result};
use palisade_service::rooms::{MAX_PDU_BYTES, RemoteEvent};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, OwnedServerName, RoomVersionId,
    signatures::{Verified, required_server_signatures_to_verify_event},
};
use serde_json::value::RawValue;

use crate::Federation;

fn invalid(why: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidSignature, why)
}

/// A PDU as canonical JSON.
pub(crate) fn parse_pdu(raw: &RawValue) -> Result<CanonicalJsonObject> {
    serde_json::from_str(raw.get()).map_err(|e| Error::bad_json(format!("Malformed PDU: {e}")))
}

impl Federation {
    /// Verifies a PDU of a room version: its format, signatures and content hash.
    pub async fn verify_pdu(
        &self,
        mut object: CanonicalJsonObject,
        version: &RoomVersionId,
    ) -> Result<RemoteEvent> {
        let rules = version.rules().ok_or_else(|| {
            Error::new(ErrorKind::UnsupportedRoomVersion, format!("Room version {version}"))
        })?;
        // Fields other servers add in transit are not part of the event.
        object.remove("unsigned");
        // Checked here so the answer names the limit (ruma's message leaves it out).
        let size = serde_json::to_vec(&object).map_or(usize::MAX, |json| json.len());
        if size > MAX_PDU_BYTES {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("PDU is {size} bytes, larger than the maximum of {MAX_PDU_BYTES}"),
            ));
        }
        ruma::state_res::check_pdu_format(&object, &rules.event_format).map_err(Error::bad_json)?;
        let servers = required_server_signatures_to_verify_event(&object, &rules.signatures)
            .map_err(|e| invalid(format!("PDU signatures: {e}")))?;
        let signatures = match object.get("signatures") {
            Some(CanonicalJsonValue::Object(signatures)) => signatures.clone(),
            _ => return Err(invalid("PDU is not signed")),
        };
        let wanted: Vec<(OwnedServerName, Vec<String>)> = servers
            .into_iter()
            .map(|server| {
                let key_ids = match signatures.get(server.as_str()) {
                    Some(CanonicalJsonValue::Object(keys)) => keys.keys().cloned().collect(),
                    _ => Vec::new(),
                };
                (server, key_ids)
            })
            .collect();
        let at = match (rules.enforce_key_validity, object.get("origin_server_ts")) {
            (true, Some(CanonicalJsonValue::Integer(ts))) => {
                u64::try_from(i64::from(*ts)).unwrap_or(0)
            }
            _ => 0,
        };
        let keys = self.keys.public_keys(wanted, at).await?;
        let event = RemoteEvent::new(object.clone(), version)?;
        match ruma::signatures::verify_event(&keys, &object, &rules) {
            Ok(Verified::All) => Ok(event),
            Ok(Verified::Signatures) => {
                tracing::info!(event_id = %event.event_id, "content hash mismatch: keeping the redacted event");
                let redacted = ruma::canonical_json::redact(object, &rules.redaction, None)
                    .map_err(|e| Error::bad_json(format!("PDU cannot be redacted: {e}")))?;
                Ok(RemoteEvent { event_id: event.event_id, object: redacted })
            }
            Err(e) => Err(invalid(format!("PDU {} does not verify: {e}", event.event_id))),
        }
    }

    /// Verifies raw PDUs of a room, dropping (and logging) those that fail.
    pub(crate) async fn verify_all(
        &self,
        raws: &[Box<RawValue>],
        version: &RoomVersionId,
    ) -> Vec<RemoteEvent> {
        let mut verified = Vec::with_capacity(raws.len());
        for raw in raws {
            let checked = match parse_pdu(raw) {
                Ok(object) => self.verify_pdu(object, version).await,
                Err(e) => Err(e),
            };
            match checked {
                Ok(event) => verified.push(event),
                Err(error) => tracing::info!(%error, "dropped a PDU that did not verify"),
            }
        }
        verified
    }
}

/// The `room_id` of a PDU.
pub(crate) fn room_id_of(object: &CanonicalJsonObject) -> Result<ruma::OwnedRoomId> {
    match object.get("room_id") {
        Some(CanonicalJsonValue::String(id)) => {
            id.as_str().try_into().map_err(|_| Error::bad_json("PDU has an invalid room_id"))
        }
        _ => Err(Error::bad_json("PDU has no room_id")),
    }
}

/// The event ids a PDU lists under `key` (`prev_events`, `auth_events`); malformed ones are
/// skipped.
pub(crate) fn event_ids(object: &CanonicalJsonObject, key: &str) -> Vec<ruma::OwnedEventId> {
    match object.get(key) {
        Some(CanonicalJsonValue::Array(ids)) => ids
            .iter()
            .filter_map(|id| match id {
                CanonicalJsonValue::String(id) => ruma::OwnedEventId::try_from(id.as_str()).ok(),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A PDU object as raw JSON, for a response or a request.
pub(crate) fn to_raw(object: &CanonicalJsonObject) -> Result<Box<RawValue>> {
    serde_json::value::to_raw_value(object).map_err(|e| Error::internal(e.to_string()))
}

/// Raw JSON of many PDUs.
pub(crate) fn to_raws(objects: &[CanonicalJsonObject]) -> Result<Vec<Box<RawValue>>> {
    objects.iter().map(to_raw).collect()
}
