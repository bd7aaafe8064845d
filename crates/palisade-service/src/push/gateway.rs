//! What is posted to push gateways (Push Gateway API), in the format each pusher asked for: `event_id_only` (what Element X asks for: the phone fetches and decrypts the event
//! itself) or the full format, whose content is sent only when the server is configured to.
//!
//! Spec: <https://spec.matrix.org/v1.19/push-gateway-api/#post_matrixpushv1notify>

use async_trait::async_trait;
use palisade_core::Result;
use palisade_storage::{NewNotification, PusherRow};
use ruma::api::client::push::{Pusher, PusherKind};
use serde_json::{Map, Value, json};

/// The port pushes leave through: posting to a push gateway, over HTTP, which the domain does
/// not speak (`palisade-push` implements it; `palisade::Server` connects it).
#[async_trait]
pub trait PushGateway: Send + Sync {
    /// Posts a Push Gateway API request to `url`; answers the pushkeys the gateway rejected.
    async fn notify(&self, url: &str, body: &Value) -> Result<Vec<String>>;
}

/// The request body: `event_id_only` when the pusher asked for it or the event is encrypted
/// (its ciphertext is of no use to a gateway), else the full format.
pub(super) fn payload(
    row: &PusherRow,
    pusher: &Pusher,
    notification: &NewNotification,
    event: &Value,
    unread: u64,
    include_content: bool,
) -> Value {
    let PusherKind::Http(http) = &pusher.kind else { return Value::Null };
    let actions: Value = serde_json::from_str(&notification.actions).unwrap_or_default();
    let tweaks = tweaks(&actions);
    let kind = event["type"].as_str().unwrap_or_default();
    let prio = if kind == "m.room.encrypted"
        || tweaks.contains_key("highlight")
        || tweaks.contains_key("sound")
    {
        "high"
    } else {
        "low"
    };
    // The pusher's data, less the URL, is the gateway's to pass on to the app.
    let mut data = serde_json::to_value(http).unwrap_or_default();
    if let Some(data) = data.as_object_mut() {
        data.remove("url");
    }
    let device = json!({
        "app_id": pusher.ids.app_id,
        "pushkey": pusher.ids.pushkey,
        "pushkey_ts": row.created_ts / 1000,
        "data": data,
        "tweaks": tweaks,
    });
    let mut body = json!({
        "event_id": notification.event_id,
        "room_id": notification.room_id,
        "counts": { "unread": unread },
        "prio": prio,
        "devices": [device],
    });
    let event_id_only = http.format.as_ref().is_some_and(|f| f.as_str() == "event_id_only");
    if !event_id_only && kind != "m.room.encrypted" {
        body["type"] = json!(kind);
        body["sender"] = event["sender"].clone();
        if kind == "m.room.member" {
            body["user_is_target"] =
                json!(event["state_key"].as_str() == Some(notification.user_id.as_str()));
        }
        if include_content {
            body["content"] = event["content"].clone();
        }
    }
    json!({ "notification": body })
}

/// The tweaks of push rule actions (`sound`, `highlight`…), as gateways expect them.
fn tweaks(actions: &Value) -> Map<String, Value> {
    let mut tweaks = Map::new();
    for action in actions.as_array().into_iter().flatten() {
        if let Some(name) = action["set_tweak"].as_str() {
            // A highlight tweak without a value means true (spec).
            let value = action.get("value").cloned().unwrap_or(Value::Bool(true));
            tweaks.insert(name.to_owned(), value);
        }
    }
    tweaks
}
