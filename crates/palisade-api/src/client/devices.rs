//! Device management: `/devices`, `/devices/{deviceId}`, `/delete_devices`.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#device-management>

use palisade_core::Result;
use palisade_service::UiaPurpose;
use palisade_storage::DeviceRow;
use ruma::{
    MilliSecondsSinceUnixEpoch, UInt,
    api::client::device::{
        Device, delete_device, delete_devices, get_device, get_devices, update_device,
    },
};

use crate::{
    AppState, Ruma,
    client::account::uia_auth,
    router::{Routes, route},
};

pub(super) fn routes(router: Routes) -> Routes {
    let router = route(router, list);
    let router = route(router, get);
    let router = route(router, update);
    let router = route(router, delete_one);
    route(router, delete_many)
}

fn to_device(row: DeviceRow) -> Device {
    let mut device = Device::new(row.device_id);
    device.display_name = row.display_name;
    device.last_seen_ip = row.last_seen_ip;
    device.last_seen_ts = row.last_seen_ts.and_then(UInt::new).map(MilliSecondsSinceUnixEpoch);
    device
}

/// `GET /_matrix/client/v3/devices`
async fn list(
    state: AppState,
    request: Ruma<get_devices::v3::Request>,
) -> Result<get_devices::v3::Response> {
    let devices = state.accounts.devices(&request.session()?.user_id).await?;
    Ok(get_devices::v3::Response::new(devices.into_iter().map(to_device).collect()))
}

/// `GET /_matrix/client/v3/devices/{deviceId}`
async fn get(
    state: AppState,
    request: Ruma<get_device::v3::Request>,
) -> Result<get_device::v3::Response> {
    let row = state.accounts.device(&request.session()?.user_id, &request.body.device_id).await?;
    Ok(get_device::v3::Response::new(to_device(row)))
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
        .rename_device(&session.user_id, &body.device_id, body.display_name.as_deref())
        .await?;
    Ok(update_device::v3::Response::new())
}

/// `DELETE /_matrix/client/v3/devices/{deviceId}`
async fn delete_one(
    state: AppState,
    request: Ruma<delete_device::v3::Request>,
) -> Result<delete_device::v3::Response> {
    let session = request.session()?.clone();
    let body = request.body;
    // A missing device is reported before asking for authentication, as Synapse does.
    state.accounts.device(&session.user_id, &body.device_id).await?;
    state
        .uia
        .authenticate(UiaPurpose::DeleteDevices, Some(&session.user_id), body.auth.map(uia_auth))
        .await?;
    state.accounts.delete_devices(&session.user_id, &[body.device_id], None).await?;
    Ok(delete_device::v3::Response::new())
}

/// `POST /_matrix/client/v3/delete_devices`
async fn delete_many(
    state: AppState,
    request: Ruma<delete_devices::v3::Request>,
) -> Result<delete_devices::v3::Response> {
    let session = request.session()?.clone();
    let body = request.body;
    state
        .uia
        .authenticate(UiaPurpose::DeleteDevices, Some(&session.user_id), body.auth.map(uia_auth))
        .await?;
    state.accounts.delete_devices(&session.user_id, &body.devices, None).await?;
    Ok(delete_devices::v3::Response::new())
}
