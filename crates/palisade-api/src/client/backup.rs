//! Server-side key backup.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#server-side-key-backups>

use std::collections::BTreeMap;

use palisade_core::{Error, Result};
use ruma::{
    UInt,
    api::client::backup::{
        add_backup_keys, add_backup_keys_for_room, add_backup_keys_for_session,
        create_backup_version, delete_backup_keys, delete_backup_keys_for_room,
        delete_backup_keys_for_session, delete_backup_version, get_backup_info, get_backup_keys,
        get_backup_keys_for_room, get_backup_keys_for_session, get_latest_backup_info,
        update_backup_version,
    },
    serde::Raw,
};
use serde_json::Value;

use crate::{
    AppState, Ruma,
    json::json_of,
    routes::{Routes, route},
};

pub(super) fn routes(router: Routes) -> Routes {
    let router = route(router, create_version);
    let router = route(router, latest_version);
    let router = route(router, get_version);
    let router = route(router, update_version);
    let router = route(router, delete_version);
    let router = route(router, put_all);
    let router = route(router, put_room);
    let router = route(router, put_session);
    let router = route(router, get_all);
    let router = route(router, get_room);
    let router = route(router, get_session);
    let router = route(router, delete_all);
    let router = route(router, delete_room);
    route(router, delete_session)
}

/// A `BackupAlgorithm` object's algorithm and auth data (left unparsed).
#[derive(serde::Deserialize)]
struct Algorithm<'a> {
    algorithm: String,
    #[serde(borrow)]
    auth_data: &'a serde_json::value::RawValue,
}

fn algorithm(raw: &Raw<ruma::api::client::backup::BackupAlgorithm>) -> Result<Algorithm<'_>> {
    serde_json::from_str(raw.json().get())
        .map_err(|e| Error::bad_json(format!("Backup algorithm: {e}")))
}

fn count(count: u64) -> UInt {
    UInt::new(count).unwrap_or(UInt::MAX)
}

/// Sessions of one room as service JSON.
fn sessions_json(
    sessions: &BTreeMap<String, Raw<ruma::api::client::backup::KeyBackupData>>,
) -> Result<BTreeMap<String, Value>> {
    sessions.iter().map(|(id, raw)| Ok((id.clone(), json_of(raw)?))).collect()
}

/// `POST /_matrix/client/v3/room_keys/version`
async fn create_version(
    state: AppState,
    request: Ruma<create_backup_version::v3::Request>,
) -> Result<create_backup_version::v3::Response> {
    let user = request.session()?;
    let Algorithm { algorithm, auth_data } = algorithm(&request.body.algorithm)?;
    let version = state.e2ee.create_backup(user, &algorithm, auth_data).await?;
    Ok(create_backup_version::v3::Response::new(version))
}

/// `GET /_matrix/client/v3/room_keys/version`
async fn latest_version(
    state: AppState,
    request: Ruma<get_latest_backup_info::v3::Request>,
) -> Result<get_latest_backup_info::v3::Response> {
    let version = state.e2ee.backup(request.session()?.user_id(), None).await?;
    Ok(get_latest_backup_info::v3::Response::new(
        version.algorithm_data()?,
        count(version.count),
        version.etag,
        version.version,
    ))
}

/// `GET /_matrix/client/v3/room_keys/version/{version}`
async fn get_version(
    state: AppState,
    request: Ruma<get_backup_info::v3::Request>,
) -> Result<get_backup_info::v3::Response> {
    let version =
        state.e2ee.backup(request.session()?.user_id(), Some(&request.body.version)).await?;
    Ok(get_backup_info::v3::Response::new(
        version.algorithm_data()?,
        count(version.count),
        version.etag,
        version.version,
    ))
}

/// `PUT /_matrix/client/v3/room_keys/version/{version}`
async fn update_version(
    state: AppState,
    request: Ruma<update_backup_version::v3::Request>,
) -> Result<update_backup_version::v3::Response> {
    let user = request.session()?;
    let Algorithm { algorithm, auth_data } = algorithm(&request.body.algorithm)?;
    state.e2ee.update_backup(user, &request.body.version, &algorithm, auth_data).await?;
    Ok(update_backup_version::v3::Response::new())
}

/// `DELETE /_matrix/client/v3/room_keys/version/{version}`
async fn delete_version(
    state: AppState,
    request: Ruma<delete_backup_version::v3::Request>,
) -> Result<delete_backup_version::v3::Response> {
    state.e2ee.delete_backup(request.session()?, &request.body.version).await?;
    Ok(delete_backup_version::v3::Response::new())
}

/// `PUT /_matrix/client/v3/room_keys/keys`
async fn put_all(
    state: AppState,
    request: Ruma<add_backup_keys::v3::Request>,
) -> Result<add_backup_keys::v3::Response> {
    let user = request.session()?;
    let rooms = request
        .body
        .rooms
        .iter()
        .map(|(room, backup)| Ok((room.to_string(), sessions_json(&backup.sessions)?)))
        .collect::<Result<_>>()?;
    let (etag, total) = state.e2ee.put_backup_keys(user, &request.body.version, &rooms).await?;
    Ok(add_backup_keys::v3::Response::new(etag, count(total)))
}

/// `PUT /_matrix/client/v3/room_keys/keys/{roomId}`
async fn put_room(
    state: AppState,
    request: Ruma<add_backup_keys_for_room::v3::Request>,
) -> Result<add_backup_keys_for_room::v3::Response> {
    let user = request.session()?;
    let body = &request.body;
    let rooms = BTreeMap::from([(body.room_id.to_string(), sessions_json(&body.sessions)?)]);
    let (etag, total) = state.e2ee.put_backup_keys(user, &body.version, &rooms).await?;
    Ok(add_backup_keys_for_room::v3::Response::new(etag, count(total)))
}

/// `PUT /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}`
async fn put_session(
    state: AppState,
    request: Ruma<add_backup_keys_for_session::v3::Request>,
) -> Result<add_backup_keys_for_session::v3::Response> {
    let user = request.session()?;
    let body = &request.body;
    let sessions = BTreeMap::from([(body.session_id.clone(), json_of(&body.session_data)?)]);
    let rooms = BTreeMap::from([(body.room_id.to_string(), sessions)]);
    let (etag, total) = state.e2ee.put_backup_keys(user, &body.version, &rooms).await?;
    Ok(add_backup_keys_for_session::v3::Response::new(etag, count(total)))
}

/// `GET /_matrix/client/v3/room_keys/keys`
async fn get_all(
    state: AppState,
    request: Ruma<get_backup_keys::v3::Request>,
) -> Result<get_backup_keys::v3::Response> {
    let keys =
        state.e2ee.backup_keys(request.session()?, &request.body.version, None, None).await?;
    Ok(get_backup_keys::v3::Response::new(keys))
}

/// `GET /_matrix/client/v3/room_keys/keys/{roomId}`
async fn get_room(
    state: AppState,
    request: Ruma<get_backup_keys_for_room::v3::Request>,
) -> Result<get_backup_keys_for_room::v3::Response> {
    let body = &request.body;
    let room = body.room_id.as_str();
    let mut keys =
        state.e2ee.backup_keys(request.session()?, &body.version, Some(room), None).await?;
    let sessions = keys.remove(&body.room_id).map(|room| room.sessions).unwrap_or_default();
    Ok(get_backup_keys_for_room::v3::Response::new(sessions))
}

/// `GET /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}`
async fn get_session(
    state: AppState,
    request: Ruma<get_backup_keys_for_session::v3::Request>,
) -> Result<get_backup_keys_for_session::v3::Response> {
    let body = &request.body;
    let room = body.room_id.as_str();
    let mut keys = state
        .e2ee
        .backup_keys(request.session()?, &body.version, Some(room), Some(&body.session_id))
        .await?;
    let data = keys
        .remove(&body.room_id)
        .and_then(|mut room| room.sessions.remove(&body.session_id))
        .ok_or_else(|| Error::not_found("No key for this session"))?;
    Ok(get_backup_keys_for_session::v3::Response::new(data))
}

/// `DELETE /_matrix/client/v3/room_keys/keys`
async fn delete_all(
    state: AppState,
    request: Ruma<delete_backup_keys::v3::Request>,
) -> Result<delete_backup_keys::v3::Response> {
    let (etag, total) = state
        .e2ee
        .delete_backup_keys(request.session()?, &request.body.version, None, None)
        .await?;
    Ok(delete_backup_keys::v3::Response::new(etag, count(total)))
}

/// `DELETE /_matrix/client/v3/room_keys/keys/{roomId}`
async fn delete_room(
    state: AppState,
    request: Ruma<delete_backup_keys_for_room::v3::Request>,
) -> Result<delete_backup_keys_for_room::v3::Response> {
    let body = &request.body;
    let (etag, total) = state
        .e2ee
        .delete_backup_keys(request.session()?, &body.version, Some(body.room_id.as_str()), None)
        .await?;
    Ok(delete_backup_keys_for_room::v3::Response::new(etag, count(total)))
}

/// `DELETE /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}`
async fn delete_session(
    state: AppState,
    request: Ruma<delete_backup_keys_for_session::v3::Request>,
) -> Result<delete_backup_keys_for_session::v3::Response> {
    let body = &request.body;
    let (etag, total) = state
        .e2ee
        .delete_backup_keys(
            request.session()?,
            &body.version,
            Some(body.room_id.as_str()),
            Some(&body.session_id),
        )
        .await?;
    Ok(delete_backup_keys_for_session::v3::Response::new(etag, count(total)))
}
