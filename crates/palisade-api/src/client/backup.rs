//! Server-side key backup.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#server-side-key-backups>

use std::collections::BTreeMap;

use palisade_core::{Error, Result};
use palisade_service::e2ee::BackupVersion;
use ruma::{
    UInt,
    api::client::backup::{
        RoomKeyBackup, add_backup_keys, add_backup_keys_for_room, add_backup_keys_for_session,
        create_backup_version, delete_backup_keys, delete_backup_keys_for_room,
        delete_backup_keys_for_session, delete_backup_version, get_backup_info, get_backup_keys,
        get_backup_keys_for_room, get_backup_keys_for_session, get_latest_backup_info,
        update_backup_version,
    },
    serde::Raw,
};
use serde_json::{Value, json};

use crate::{
    AppState, Ruma,
    json::{json_of, typed},
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

/// Splits a `BackupAlgorithm` object into its algorithm and auth data.
fn algorithm(raw: &Raw<ruma::api::client::backup::BackupAlgorithm>) -> Result<(String, Value)> {
    let mut value = json_of(raw)?;
    let name =
        value["algorithm"].as_str().ok_or_else(|| Error::bad_json("Missing algorithm"))?.to_owned();
    Ok((name, value["auth_data"].take()))
}

fn algorithm_raw(
    version: &BackupVersion,
) -> Result<Raw<ruma::api::client::backup::BackupAlgorithm>> {
    typed(json!({ "algorithm": version.algorithm, "auth_data": version.auth_data }))
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
    let (name, auth_data) = algorithm(&request.body.algorithm)?;
    let version = state.e2ee.create_backup(user, &name, &auth_data).await?;
    Ok(create_backup_version::v3::Response::new(version))
}

/// `GET /_matrix/client/v3/room_keys/version`
async fn latest_version(
    state: AppState,
    request: Ruma<get_latest_backup_info::v3::Request>,
) -> Result<get_latest_backup_info::v3::Response> {
    let version = state.e2ee.backup(request.session()?.user_id(), None).await?;
    Ok(get_latest_backup_info::v3::Response::new(
        algorithm_raw(&version)?,
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
        algorithm_raw(&version)?,
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
    let (name, auth_data) = algorithm(&request.body.algorithm)?;
    state.e2ee.update_backup(user, &request.body.version, &name, &auth_data).await?;
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

/// Keys as ruma's map of rooms.
fn rooms_of(mut keys: Value) -> Result<BTreeMap<ruma::OwnedRoomId, RoomKeyBackup>> {
    typed(keys["rooms"].take())
}

/// `GET /_matrix/client/v3/room_keys/keys`
async fn get_all(
    state: AppState,
    request: Ruma<get_backup_keys::v3::Request>,
) -> Result<get_backup_keys::v3::Response> {
    let keys =
        state.e2ee.backup_keys(request.session()?, &request.body.version, None, None).await?;
    Ok(get_backup_keys::v3::Response::new(rooms_of(keys)?))
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
    let sessions = keys["rooms"][room]["sessions"].take();
    let sessions = if sessions.is_null() { json!({}) } else { sessions };
    Ok(get_backup_keys_for_room::v3::Response::new(typed(sessions)?))
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
    let data = keys["rooms"][room]["sessions"][&body.session_id].take();
    if data.is_null() {
        return Err(Error::not_found("No key for this session"));
    }
    Ok(get_backup_keys_for_session::v3::Response::new(typed(data)?))
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
