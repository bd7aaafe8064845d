//! End-to-end encryption: keys, cross-signing, signatures and to-device messages.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#end-to-end-encryption> and
//! <https://spec.matrix.org/v1.19/client-server-api/#send-to-device-messaging>

use std::collections::BTreeMap;

use palisade_core::Result;
use palisade_service::{e2ee::Recipient, sync::SyncToken};
use ruma::{
    UInt,
    api::client::{
        keys::{
            claim_keys, get_key_changes, get_keys, upload_keys, upload_signatures,
            upload_signing_keys,
        },
        to_device::send_event_to_device,
    },
};
use serde_json::Value;

use crate::{
    AppState, Ruma,
    json::{json_of, one_time_key_claims, uia_auth},
    routes::{Routes, route},
};

pub(super) fn routes(router: Routes) -> Routes {
    let router = route(router, upload);
    let router = route(router, query);
    let router = route(router, claim);
    let router = route(router, changes);
    let router = route(router, signing_keys);
    let router = route(router, signatures);
    route(router, send_to_device)
}

fn counts(
    counts: BTreeMap<ruma::OneTimeKeyAlgorithm, u64>,
) -> BTreeMap<ruma::OneTimeKeyAlgorithm, UInt> {
    counts.into_iter().map(|(algorithm, count)| (algorithm, UInt::new_saturating(count))).collect()
}

/// `POST /_matrix/client/v3/keys/upload`
async fn upload(
    state: AppState,
    request: Ruma<upload_keys::v3::Request>,
) -> Result<upload_keys::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    let device_keys = body.device_keys.as_ref().map(json_of).transpose()?;
    let to_map = |keys: &BTreeMap<ruma::OwnedOneTimeKeyId, ruma::serde::Raw<_>>| -> Result<BTreeMap<String, Value>> {
        keys.iter().map(|(id, raw)| Ok((id.to_string(), json_of(raw)?))).collect()
    };
    let one_time = to_map(&body.one_time_keys)?;
    let fallback = to_map(&body.fallback_keys)?;
    let result =
        state.e2ee.upload_keys(session, device_keys.as_ref(), &one_time, &fallback).await?;
    Ok(upload_keys::v3::Response::new(counts(result)))
}

/// `POST /_matrix/client/v3/keys/query`
async fn query(
    state: AppState,
    request: Ruma<get_keys::v3::Request>,
) -> Result<get_keys::v3::Response> {
    let session = request.session()?;
    state.e2ee.query_keys(session.user_id(), &request.body.device_keys).await
}

/// `POST /_matrix/client/v3/keys/claim`
async fn claim(
    state: AppState,
    request: Ruma<claim_keys::v3::Request>,
) -> Result<claim_keys::v3::Response> {
    request.session()?;
    let wanted = one_time_key_claims(&request.body.one_time_keys);
    state.e2ee.claim_keys(&wanted).await
}

/// `GET /_matrix/client/v3/keys/changes`
async fn changes(
    state: AppState,
    request: Ruma<get_key_changes::v3::Request>,
) -> Result<get_key_changes::v3::Response> {
    let session = request.session()?;
    let from = SyncToken::parse(&request.body.from)?;
    let changes =
        state.e2ee.device_list_changes(session.user_id(), from.device_lists, from.events).await?;
    Ok(get_key_changes::v3::Response::new(changes.changed, changes.left))
}

/// `POST /_matrix/client/v3/keys/device_signing/upload`
async fn signing_keys(
    state: AppState,
    request: Ruma<upload_signing_keys::v3::Request>,
) -> Result<upload_signing_keys::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    let master = body.master_key.as_ref().map(json_of).transpose()?;
    let self_signing = body.self_signing_key.as_ref().map(json_of).transpose()?;
    let user_signing = body.user_signing_key.as_ref().map(json_of).transpose()?;
    state
        .e2ee
        .upload_cross_signing_keys(
            session,
            [master.as_ref(), self_signing.as_ref(), user_signing.as_ref()],
            body.auth.clone().map(uia_auth),
        )
        .await?;
    Ok(upload_signing_keys::v3::Response::new())
}

/// `POST /_matrix/client/v3/keys/signatures/upload`
async fn signatures(
    state: AppState,
    request: Ruma<upload_signatures::v3::Request>,
) -> Result<upload_signatures::v3::Response> {
    let session = request.session()?;
    state.e2ee.upload_signatures(session.user_id(), &request.body.signed_keys).await
}

/// `PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}`
async fn send_to_device(
    state: AppState,
    request: Ruma<send_event_to_device::v3::Request>,
) -> Result<send_event_to_device::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    let mut messages = BTreeMap::new();
    for (user, devices) in &body.messages {
        let mut targets = BTreeMap::new();
        for (device, content) in devices {
            targets.insert(Recipient::from(device), json_of(content)?);
        }
        messages.insert(user.clone(), targets);
    }
    let kind = body.event_type.to_string();
    state.e2ee.send_to_device(session, &kind, body.txn_id.as_str(), &messages).await?;
    Ok(send_event_to_device::v3::Response::new())
}
