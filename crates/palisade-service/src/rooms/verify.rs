//! Checks on a PDU from another server before it may be admitted: format and size, the
//! signatures of every server that must have signed it, and the content hash (a mismatch
//! keeps only the redacted event). Federation fetches the keys the signatures need; the checks
//! are here, and only this module makes a [`RemoteEvent`], so holding one proves they passed.
//!
//! Spec: <https://spec.matrix.org/v1.19/server-server-api/#checks-performed-on-receipt-of-a-pdu>

use palisade_core::{Error, ErrorKind, Result};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, OwnedEventId, OwnedServerName, RoomVersionId,
    room_version_rules::RoomVersionRules,
    signatures::{PublicKeyMap, Verified, required_server_signatures_to_verify_event},
};

use super::{MAX_PDU_BYTES, Pdu, Signed, event_id_of, rules_of};

/// An event whose format, signatures and content hash were checked (or one this server
/// signed itself). Only the service layer makes one.
#[derive(Debug, Clone)]
pub struct RemoteEvent {
    event_id: OwnedEventId,
    object: CanonicalJsonObject,
    /// The object as text, serialised once: parsed for the pipeline's fields, then stored.
    json: String,
}

impl RemoteEvent {
    /// Its id (reference hash).
    pub fn event_id(&self) -> &EventId {
        &self.event_id
    }

    /// The PDU (redacted if its content hash did not match).
    pub fn object(&self) -> &CanonicalJsonObject {
        &self.object
    }

    /// An event this server built and signed.
    pub(super) fn signed_here(signed: Signed) -> Self {
        let Signed { pdu, object, json } = signed;
        Self { event_id: pdu.event_id, object, json }
    }

    /// The same event with this server's signature added (`object`: the event, countersigned).
    pub(super) fn countersigned(&self, object: CanonicalJsonObject) -> Result<Self> {
        let json = serde_json::to_string(&object).map_err(|e| Error::internal(e.to_string()))?;
        Ok(Self { event_id: self.event_id.clone(), object, json })
    }

    /// The fields the pipeline reads.
    pub(super) fn pdu(&self) -> Result<Pdu> {
        serde_json::from_str::<Pdu>(&self.json)
            .map(|mut pdu| {
                pdu.event_id = self.event_id.clone();
                pdu
            })
            .map_err(|e| Error::bad_json(format!("Malformed PDU {}: {e}", self.event_id)))
    }

    /// The PDU's JSON, for storage.
    pub(super) fn into_json(self) -> String {
        self.json
    }
}

/// A received PDU of a room version, its format and size checked, waiting for the keys its
/// signatures need.
pub struct UnverifiedPdu {
    object: CanonicalJsonObject,
    /// The object as text (what its size was checked on).
    json: String,
    rules: RoomVersionRules,
    event_id: OwnedEventId,
    keys_needed: Vec<(OwnedServerName, Vec<String>)>,
    keys_valid_at: u64,
}

impl UnverifiedPdu {
    /// Checks a PDU's size and format (fields other servers add in transit are dropped).
    pub fn new(mut object: CanonicalJsonObject, version: &RoomVersionId) -> Result<Self> {
        let rules = rules_of(version)?;
        object.remove("unsigned");
        let json = serde_json::to_string(&object).map_err(|e| Error::bad_json(e.to_string()))?;
        let size = json.len();
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
            Some(CanonicalJsonValue::Object(signatures)) => signatures,
            _ => return Err(invalid("PDU is not signed")),
        };
        let keys_needed = servers
            .into_iter()
            .map(|server| {
                let key_ids = match signatures.get(server.as_str()) {
                    Some(CanonicalJsonValue::Object(keys)) => keys.keys().cloned().collect(),
                    _ => Vec::new(),
                };
                (server, key_ids)
            })
            .collect();
        // Room versions that enforce key validity check keys at the event's own time.
        let keys_valid_at = match (rules.enforce_key_validity, object.get("origin_server_ts")) {
            // 0 would mean "any time": a negative timestamp must not switch the check off.
            (true, Some(CanonicalJsonValue::Integer(ts))) => u64::try_from(i64::from(*ts))
                .ok()
                .filter(|ts| *ts > 0)
                .ok_or_else(|| Error::bad_json("PDU has no valid origin_server_ts"))?,
            _ => 0,
        };
        let event_id = event_id_of(&object, &rules)?;
        Ok(Self { object, json, rules, event_id, keys_needed, keys_valid_at })
    }

    /// The servers that must have signed it, with the key ids each signed with.
    pub fn keys_needed(&self) -> &[(OwnedServerName, Vec<String>)] {
        &self.keys_needed
    }

    /// When the keys must have been valid (milliseconds since the epoch; 0 for any time).
    pub fn keys_valid_at(&self) -> u64 {
        self.keys_valid_at
    }

    /// Checks the signatures with `keys` and the content hash: a mismatched hash keeps only
    /// the redacted event, as the spec asks.
    pub fn verify(self, keys: &PublicKeyMap) -> Result<RemoteEvent> {
        let Self { object, json, rules, event_id, .. } = self;
        match ruma::signatures::verify_event(keys, &object, &rules) {
            Ok(Verified::All) => Ok(RemoteEvent { event_id, object, json }),
            Ok(Verified::Signatures) => {
                tracing::info!(%event_id, "content hash mismatch: keeping the redacted event");
                let redacted = ruma::canonical_json::redact(object, &rules.redaction, None)
                    .map_err(|e| Error::bad_json(format!("PDU cannot be redacted: {e}")))?;
                let json =
                    serde_json::to_string(&redacted).map_err(|e| Error::bad_json(e.to_string()))?;
                Ok(RemoteEvent { event_id, object: redacted, json })
            }
            Err(e) => Err(invalid(format!("PDU {event_id} does not verify: {e}"))),
        }
    }
}

fn invalid(why: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidSignature, why)
}
