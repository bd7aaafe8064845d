//! The PDU as the server handles it: the few fields the pipeline reads, parsed lazily from the
//! stored JSON so that content is never validated more strictly than the auth rules ask.

use std::{borrow::Cow, collections::BTreeMap};

use palisade_core::{Error, Result};
use palisade_storage::EventRow;
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, MilliSecondsSinceUnixEpoch, OwnedEventId,
    OwnedRoomId, OwnedUserId, RoomId, UInt, UserId,
    events::{AnyStrippedStateEvent, AnyTimelineEvent, TimelineEventType},
    room_version_rules::RedactionRules,
    serde::Raw,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A PDU of any room version.
#[derive(Debug, Clone, Deserialize)]
pub struct Pdu {
    /// Known before parsing: computed from the JSON (reference hash) from room version 3,
    /// the PDU's own `event_id` field before.
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
    #[serde(deserialize_with = "event_references")]
    pub prev_events: Vec<OwnedEventId>,
    /// The events that authorise this one.
    #[serde(deserialize_with = "event_references")]
    pub auth_events: Vec<OwnedEventId>,
    /// Depth.
    pub depth: UInt,
    /// Top-level `redacts` (room versions before 11).
    pub redacts: Option<OwnedEventId>,
}

/// One entry of `prev_events` or `auth_events`: an event id from room version 3, an
/// `[event id, hashes]` pair before.
#[derive(Deserialize)]
#[serde(untagged)]
enum EventReference {
    Id(OwnedEventId),
    Pair(OwnedEventId, serde::de::IgnoredAny),
}

fn event_references<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Vec<OwnedEventId>, D::Error> {
    let references = Vec::<EventReference>::deserialize(deserializer)?;
    Ok(references
        .into_iter()
        .map(|reference| match reference {
            EventReference::Id(id) | EventReference::Pair(id, _) => id,
        })
        .collect())
}

/// The event ids a PDU object lists under `key` (`prev_events`, `auth_events`), in either
/// format; malformed entries are skipped.
pub fn referenced_events(object: &CanonicalJsonObject, key: &str) -> Vec<OwnedEventId> {
    let Some(CanonicalJsonValue::Array(entries)) = object.get(key) else { return Vec::new() };
    entries
        .iter()
        .filter_map(|entry| match entry {
            CanonicalJsonValue::String(id) => Some(id),
            CanonicalJsonValue::Array(pair) => match pair.first() {
                Some(CanonicalJsonValue::String(id)) => Some(id),
                _ => None,
            },
            _ => None,
        })
        .filter_map(|id| OwnedEventId::try_from(id.as_str()).ok())
        .collect()
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

    /// The event this one redacts: `content.redacts` from v11, the top-level `redacts` before
    /// (only the field the room version reads counts: an event may carry both, differing).
    pub fn redacted_event(&self, rules: &RedactionRules) -> Option<OwnedEventId> {
        #[derive(Deserialize)]
        struct Redacts {
            redacts: Option<OwnedEventId>,
        }
        if self.kind != TimelineEventType::RoomRedaction {
            return None;
        }
        if !rules.content_field_redacts {
            return self.redacts.clone();
        }
        serde_json::from_str::<Redacts>(self.content.get()).ok().and_then(|c| c.redacts)
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

/// The fields of a PDU a client sees, borrowed from its JSON: nothing inside them is parsed.
#[derive(Deserialize)]
struct ClientFields<'a> {
    #[serde(borrow)]
    content: &'a RawValue,
    #[serde(borrow)]
    origin_server_ts: &'a RawValue,
    #[serde(borrow)]
    sender: &'a RawValue,
    #[serde(borrow, default)]
    state_key: Option<&'a RawValue>,
    #[serde(borrow, rename = "type")]
    kind: &'a RawValue,
    #[serde(borrow, default)]
    redacts: Option<&'a RawValue>,
}

/// An event in the client format.
#[derive(Serialize)]
struct ClientEvent<'a> {
    content: &'a RawValue,
    event_id: &'a EventId,
    origin_server_ts: &'a RawValue,
    room_id: &'a RoomId,
    sender: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    state_key: Option<&'a RawValue>,
    #[serde(rename = "type")]
    kind: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    redacts: Option<&'a RawValue>,
    unsigned: Unsigned<'a>,
}

/// An event's `unsigned`: what the server stored with it, and what depends on who asks and when.
#[derive(Serialize)]
struct Unsigned<'a> {
    #[serde(flatten)]
    stored: BTreeMap<String, &'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    age: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    transaction_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    redacted_because: Option<Raw<AnyTimelineEvent>>,
}

/// A stored event's JSON with a redaction applied.
pub fn redacted_json(row: &EventRow, rules: &RedactionRules) -> Result<String> {
    let unreadable = |e: &dyn std::fmt::Display| {
        Error::internal(format!("unreadable PDU {}: {e}", row.event_id))
    };
    let object: CanonicalJsonObject =
        serde_json::from_str(&row.json).map_err(|e| unreadable(&e))?;
    let redacted = ruma::canonical_json::redact(object, rules, None).map_err(|e| unreadable(&e))?;
    serde_json::to_string(&redacted).map_err(|e| unreadable(&e))
}

/// The state event a stored state event replaced, as recorded in its `unsigned`.
pub fn replaced_state(row: &EventRow) -> Option<OwnedEventId> {
    #[derive(Deserialize)]
    struct Replaces {
        replaces_state: Option<OwnedEventId>,
    }
    let unsigned = row.unsigned.as_deref()?;
    serde_json::from_str::<Replaces>(unsigned).ok()?.replaces_state
}

/// Turns a stored event into the client format, with `unsigned` filled in.
///
/// `replaced_redacted`: the content of the state event this one replaced, when that event
/// was redacted since (its `prev_content` then shows only what the redaction kept).
/// `now` gives `unsigned.age`; `viewer` decides whether the transaction id is shown (only to
/// the device that sent the event). A redacted event comes with its redaction in client format.
/// Content is copied through as the stored JSON text, never parsed.
pub fn client_event(
    row: &EventRow,
    redaction: Option<(&RedactionRules, Raw<AnyTimelineEvent>)>,
    replaced_redacted: Option<&RawValue>,
    now: u64,
    viewer: Option<(&UserId, &ruma::DeviceId)>,
) -> Result<Raw<AnyTimelineEvent>> {
    let unreadable = |e: &dyn std::fmt::Display| {
        Error::internal(format!("unreadable PDU {}: {e}", row.event_id))
    };
    let (redacted, redacted_because) = match redaction {
        Some((rules, because)) => (Some(redacted_json(row, rules)?), Some(because)),
        None => (None, None),
    };
    let fields: ClientFields<'_> = serde_json::from_str(redacted.as_deref().unwrap_or(&row.json))
        .map_err(|e| unreadable(&e))?;
    let mut stored: BTreeMap<String, &RawValue> = match row.unsigned.as_deref() {
        Some(unsigned) => serde_json::from_str(unsigned).unwrap_or_default(),
        None => BTreeMap::new(),
    };
    for computed in ["age", "transaction_id", "redacted_because"] {
        stored.remove(computed);
    }
    if let Some(content) = replaced_redacted {
        stored.insert("prev_content".to_owned(), content);
    }
    let age = fields.origin_server_ts.get().parse::<u64>().ok().map(|ts| now.saturating_sub(ts));
    let transaction_id = match (&row.txn, viewer) {
        (Some((device, txn)), Some((user, viewer_device)))
            if row.sender == user && device == viewer_device =>
        {
            Some(txn.as_str())
        }
        _ => None,
    };
    let event = ClientEvent {
        content: fields.content,
        event_id: &row.event_id,
        origin_server_ts: fields.origin_server_ts,
        room_id: &row.room_id,
        sender: fields.sender,
        state_key: fields.state_key,
        kind: fields.kind,
        redacts: fields.redacts,
        unsigned: Unsigned { stored, age, transaction_id, redacted_because },
    };
    serde_json::value::to_raw_value(&event).map(Raw::from_json).map_err(|e| unreadable(&e))
}

/// A state event in the stripped form invites show, or `None` if it lacks a field that form
/// needs (string `type`, `state_key` and `sender`, object `content`).
pub fn stripped(event: &RawValue) -> Option<Raw<AnyStrippedStateEvent>> {
    #[derive(Deserialize, Serialize)]
    struct Stripped<'a> {
        #[serde(borrow, rename = "type")]
        kind: Cow<'a, str>,
        #[serde(borrow)]
        state_key: Cow<'a, str>,
        #[serde(borrow)]
        sender: Cow<'a, str>,
        #[serde(borrow)]
        content: &'a RawValue,
    }
    let stripped: Stripped<'_> = serde_json::from_str(event.get()).ok()?;
    if !stripped.content.get().starts_with('{') {
        return None;
    }
    serde_json::value::to_raw_value(&stripped).ok().map(Raw::from_json)
}
