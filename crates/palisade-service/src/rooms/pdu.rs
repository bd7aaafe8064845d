//! The PDU as the server handles it: the few fields the pipeline reads, parsed lazily from the
//! stored JSON so that content is never validated more strictly than the auth rules ask.

use palisade_core::{Error, Result};
use palisade_storage::EventRow;
use ruma::{
    EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UInt,
    UserId, events::TimelineEventType,
};
use serde::Deserialize;
use serde_json::{Map, Value, value::RawValue};

/// A PDU of any room version from 10 on.
#[derive(Debug, Clone, Deserialize)]
pub struct Pdu {
    /// Computed from the JSON (reference hash), not part of it.
    #[serde(skip_deserializing, default = "placeholder_event_id")]
    pub event_id: OwnedEventId,
    /// Absent only in v12 `m.room.create` events.
    pub room_id: Option<OwnedRoomId>,
    /// Sender.
    pub sender: OwnedUserId,
    /// Origin timestamp.
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
    /// Event type.
    #[serde(rename = "type")]
    pub kind: TimelineEventType,
    /// Content, unparsed.
    pub content: Box<RawValue>,
    /// State key.
    pub state_key: Option<String>,
    /// Parents in the room DAG.
    pub prev_events: Vec<OwnedEventId>,
    /// The events that authorise this one.
    pub auth_events: Vec<OwnedEventId>,
    /// Depth.
    pub depth: UInt,
    /// Top-level `redacts` (room versions before 11).
    pub redacts: Option<OwnedEventId>,
}

fn placeholder_event_id() -> OwnedEventId {
    EventId::parse("$placeholder").expect("valid event id")
}

impl Pdu {
    /// Parses stored or received PDU JSON whose event id is already known.
    pub fn parse(event_id: OwnedEventId, json: &str) -> Result<Self> {
        let mut pdu: Pdu = serde_json::from_str(json)
            .map_err(|e| Error::internal(format!("unreadable PDU {event_id}: {e}")))?;
        pdu.event_id = event_id;
        Ok(pdu)
    }

    /// Parses a stored event.
    pub fn from_row(row: &EventRow) -> Result<Self> {
        Self::parse(row.event_id.clone(), &row.json)
    }

    /// The room the event belongs to; for a v12 create event, derived from its id.
    pub fn room(&self) -> Result<OwnedRoomId> {
        match &self.room_id {
            Some(room_id) => Ok(room_id.clone()),
            None => RoomId::new_v2(self.event_id.as_str().trim_start_matches('$'))
                .map_err(|e| Error::internal(format!("room id from create event: {e}"))),
        }
    }

    /// The event this one redacts: `content.redacts` from v11, top-level before.
    pub fn redacted_event(&self) -> Option<OwnedEventId> {
        #[derive(Deserialize)]
        struct Redacts {
            redacts: Option<OwnedEventId>,
        }
        if self.kind != TimelineEventType::RoomRedaction {
            return None;
        }
        serde_json::from_str::<Redacts>(self.content.get())
            .ok()
            .and_then(|c| c.redacts)
            .or_else(|| self.redacts.clone())
    }

    /// For a member event, its `membership`.
    pub fn membership(&self) -> Option<String> {
        #[derive(Deserialize)]
        struct Member {
            membership: String,
        }
        if self.kind != TimelineEventType::RoomMember {
            return None;
        }
        serde_json::from_str::<Member>(self.content.get()).ok().map(|c| c.membership)
    }
}

impl ruma::state_res::Event for Pdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &Self::Id {
        &self.event_id
    }

    fn room_id(&self) -> Option<&RoomId> {
        self.room_id.as_deref()
    }

    fn sender(&self) -> &UserId {
        &self.sender
    }

    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.origin_server_ts
    }

    fn event_type(&self) -> &TimelineEventType {
        &self.kind
    }

    fn content(&self) -> &RawValue {
        &self.content
    }

    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }

    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.prev_events.iter())
    }

    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.auth_events.iter())
    }

    fn redacts(&self) -> Option<&Self::Id> {
        self.redacts.as_ref()
    }

    fn rejected(&self) -> bool {
        false
    }
}

/// Fields of a PDU that clients see (the client event format).
const CLIENT_FIELDS: &[&str] =
    &["content", "origin_server_ts", "room_id", "sender", "state_key", "type", "redacts"];

/// Turns a stored event into the client format, with `unsigned` filled in.
///
/// `now` gives `unsigned.age`; `viewer` decides whether the transaction id is shown (only to
/// the device that sent the event). A redacted event comes with its redaction in client format.
pub fn client_event(
    row: &EventRow,
    redaction: Option<(&ruma::room_version_rules::RedactionRules, Value)>,
    now: u64,
    viewer: Option<(&UserId, &ruma::DeviceId)>,
) -> Result<Value> {
    let mut pdu: Map<String, Value> = serde_json::from_str(&row.json)
        .map_err(|e| Error::internal(format!("unreadable PDU {}: {e}", row.event_id)))?;
    let redacted_because = match redaction {
        Some((rules, because)) => {
            let object = ruma::canonical_json::try_from_json_map(pdu).map_err(|e| {
                Error::internal(format!("PDU {} is not canonical: {e}", row.event_id))
            })?;
            let redacted = ruma::canonical_json::redact(object, rules, None)
                .map_err(|e| Error::internal(format!("redacting {}: {e}", row.event_id)))?;
            pdu = serde_json::to_value(redacted)
                .ok()
                .and_then(|v| v.as_object().cloned())
                .unwrap_or_default();
            Some(because)
        }
        None => None,
    };
    let mut event: Map<String, Value> =
        CLIENT_FIELDS.iter().filter_map(|f| pdu.remove(*f).map(|v| ((*f).to_owned(), v))).collect();
    event.insert("event_id".into(), Value::String(row.event_id.to_string()));
    event.entry("room_id").or_insert_with(|| Value::String(row.room_id.to_string()));

    let mut unsigned: Map<String, Value> =
        row.unsigned.as_deref().and_then(|u| serde_json::from_str(u).ok()).unwrap_or_default();
    if let Some(ts) = event.get("origin_server_ts").and_then(Value::as_u64) {
        unsigned.insert("age".into(), Value::from(now.saturating_sub(ts)));
    }
    if let (Some((device, txn)), Some((user, viewer_device))) = (&row.txn, viewer)
        && row.sender == user
        && device == viewer_device
    {
        unsigned.insert("transaction_id".into(), Value::String(txn.clone()));
    }
    if let Some(because) = redacted_because {
        unsigned.insert("redacted_because".into(), because);
    }
    event.insert("unsigned".into(), Value::Object(unsigned));
    Ok(Value::Object(event))
}
