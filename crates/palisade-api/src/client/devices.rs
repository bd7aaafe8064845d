//! Device management: `/devices`, `/devices/{deviceId}`, `/delete_devices`.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#device-management>

use palisade_core::Result;
use ruma::api::client::admin::{
    get_user_info::{
        self,
        v3::{ConnectionInfo, DeviceInfo, SessionInfo},
    },
    is_user_locked, is_user_suspended, lock_user, suspend_user,
};
use ruma::api::client::device::{
    delete_device, delete_devices, get_device, get_devices, update_device,
};

use crate::{
    AppState, Ruma,
    json::uia_auth,
    routes::{Routes, route},
};

pub(super) fn routes(router: Routes) -> Routes {
    let router = route(router, list);
    let router = route(router, get);
    let router = route(router, update);
    let router = route(router, delete_one);
    let router = route(router, delete_many);
    let router = route(router, whois);
    let router = route(router, is_locked);
    let router = route(router, lock);
    let router = route(router, is_suspended);
    route(router, suspend)
}

/// `GET /_matrix/client/v1/admin/lock/{userId}`
async fn is_locked(
    state: AppState,
    request: Ruma<is_user_locked::v1::Request>,
) -> Result<is_user_locked::v1::Response> {
    let (locked, _) = state.trust.restrictions(request.session()?, &request.body.user_id).await?;
    Ok(is_user_locked::v1::Response::new(locked))
}

/// `PUT /_matrix/client/v1/admin/lock/{userId}`: a locked account is served nothing (its
/// clients keep their session, for when it is unlocked).
async fn lock(
    state: AppState,
    request: Ruma<lock_user::v1::Request>,
) -> Result<lock_user::v1::Response> {
    let body = &request.body;
    let session = request.session()?;
    let (locked, _) = state.trust.restrict(session, &body.user_id, Some(body.locked), None).await?;
    Ok(lock_user::v1::Response::new(locked))
}

/// `GET /_matrix/client/v1/admin/suspend/{userId}`
async fn is_suspended(
    state: AppState,
    request: Ruma<is_user_suspended::v1::Request>,
) -> Result<is_user_suspended::v1::Response> {
    let (_, suspended) =
        state.trust.restrictions(request.session()?, &request.body.user_id).await?;
    Ok(is_user_suspended::v1::Response::new(suspended))
}

/// `PUT /_matrix/client/v1/admin/suspend/{userId}`: a suspended account may read, leave
/// rooms, redact its own events and sign out, and nothing else.
async fn suspend(
    state: AppState,
    request: Ruma<suspend_user::v1::Request>,
) -> Result<suspend_user::v1::Response> {
    let body = &request.body;
    let session = request.session()?;
    let restricted = state.trust.restrict(session, &body.user_id, None, Some(body.suspended));
    let (_, suspended) = restricted.await?;
    Ok(suspend_user::v1::Response::new(suspended))
}

/// `GET /_matrix/client/v3/admin/whois/{userId}`: each device with where and when it was last
/// seen (one session and connection per device), for the user themself or an administrator.
async fn whois(
    state: AppState,
    request: Ruma<get_user_info::v3::Request>,
) -> Result<get_user_info::v3::Response> {
    let user_id = &request.body.user_id;
    let devices = state.trust.whois(request.session()?, user_id).await?;
    let mut response = get_user_info::v3::Response::new();
    response.user_id = Some(user_id.clone());
    for device in devices {
        let mut connection = ConnectionInfo::new();
        connection.ip = device.last_seen_ip;
        connection.last_seen = device
            .last_seen_ts
            .map(|ts| ruma::MilliSecondsSinceUnixEpoch(ruma::UInt::new_saturating(ts)));
        connection.user_agent = device.user_agent;
        let mut session = SessionInfo::new();
        session.connections = vec![connection];
        let mut info = DeviceInfo::new();
        info.sessions = vec![session];
        response.devices.insert(device.device_id.to_string(), info);
    }
    Ok(response)
}

/// `GET /_matrix/client/v3/devices`
async fn list(
    state: AppState,
    request: Ruma<get_devices::v3::Request>,
) -> Result<get_devices::v3::Response> {
    let devices = state.accounts.client_devices(request.session()?.user_id()).await?;
    Ok(get_devices::v3::Response::new(devices))
}

/// `GET /_matrix/client/v3/devices/{deviceId}`
async fn get(
    state: AppState,
    request: Ruma<get_device::v3::Request>,
) -> Result<get_device::v3::Response> {
    let session = request.session()?;
    let device = state.accounts.client_device(session.user_id(), &request.body.device_id).await?;
    Ok(get_device::v3::Response::new(device))
}

/// `PUT /_matrix/client/v3/devices/{deviceId}`
async fn update(
    state: AppState,
    request: Ruma<update_device::v3::Request>,
) -> Result<update_device::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    state
        .accounts
        .rename_device(session.user_id(), &body.device_id, body.display_name.as_deref())
        .await?;
    Ok(update_device::v3::Response::new())
}

/// `DELETE /_matrix/client/v3/devices/{deviceId}`
async fn delete_one(
    state: AppState,
    request: Ruma<delete_device::v3::Request>,
) -> Result<delete_device::v3::Response> {
    let body = &request.body;
    let auth = body.auth.clone().map(uia_auth);
    state.accounts.delete_own_device(request.session()?, &body.device_id, auth).await?;
    Ok(delete_device::v3::Response::new())
}

/// `POST /_matrix/client/v3/delete_devices`
async fn delete_many(
    state: AppState,
    request: Ruma<delete_devices::v3::Request>,
) -> Result<delete_devices::v3::Response> {
    let body = &request.body;
    let auth = body.auth.clone().map(uia_auth);
    state.accounts.delete_own_devices(request.session()?, &body.devices, auth).await?;
    Ok(delete_devices::v3::Response::new())
}
