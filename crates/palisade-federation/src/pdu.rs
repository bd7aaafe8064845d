//! PDUs from other servers: the keys their signatures need are fetched here, the checks
//! themselves (format, size, signatures, content hash) are the room service's
//! (`UnverifiedPdu`), which alone makes the `RemoteEvent` the pipeline admits.
//!
//! Spec: <https://spec.matrix.org/v1.19/server-server-api/#checks-performed-on-receipt-of-a-pdu>

use palisade_core::{Error, Result};
use palisade_service::rooms::{RemoteEvent, UnverifiedPdu};
use ruma::{CanonicalJsonObject, CanonicalJsonValue, RoomVersionId};
use serde_json::value::RawValue;

use crate::Federation;

/// A PDU as canonical JSON.
pub(crate) fn parse_pdu(raw: &RawValue) -> Result<CanonicalJsonObject> {
    serde_json::from_str(raw.get()).map_err(|e| Error::bad_json(format!("Malformed PDU: {e}")))
}

impl Federation {
    /// Verifies a PDU of a room version: its format and size, and, with the keys fetched
    /// from the servers that signed it, its signatures and content hash.
    pub async fn verify_pdu(
        &self,
        object: CanonicalJsonObject,
        version: &RoomVersionId,
    ) -> Result<RemoteEvent> {
        let pdu = UnverifiedPdu::new(object, version)?;
        let keys =
            self.keys.public_keys(pdu.keys_needed().iter().cloned(), pdu.keys_valid_at()).await?;
        pdu.verify(&keys)
    }

    /// Verifies raw PDUs of a room, all or none.
    pub(crate) async fn verify_every(
        &self,
        raws: &[Box<RawValue>],
        version: &RoomVersionId,
    ) -> Result<Vec<RemoteEvent>> {
        let mut verified = Vec::with_capacity(raws.len());
        for raw in raws {
            verified.push(self.verify_pdu(parse_pdu(raw)?, version).await?);
        }
        Ok(verified)
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

/// A PDU object as raw JSON, for a response or a request.
pub(crate) fn to_raw(object: &CanonicalJsonObject) -> Result<Box<RawValue>> {
    serde_json::value::to_raw_value(object).map_err(|e| Error::internal(e.to_string()))
}

/// Raw JSON of many PDUs.
pub(crate) fn to_raws(objects: &[CanonicalJsonObject]) -> Result<Vec<Box<RawValue>>> {
    objects.iter().map(to_raw).collect()
}
