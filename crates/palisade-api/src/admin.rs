//! Palisade's administration API, for server administrators only:
//! `/_palisade/admin/v1/users/{userId}/devices[/{deviceId}[/approve]]`,
//! `/_palisade/admin/v1/users/{userId}/allow_cross_signing_reset`,
//! `/_palisade/admin/v1/users/{userId}/media`, `/_palisade/admin/v1/media/{serverName}/{mediaId}[/quarantine]`,
//! `/_palisade/admin/v1/reports[/{id}/resolve]` and `/_palisade/admin/v1/audit`.

use axum::{
    Json,
    extract::{FromRequestParts, Path, Query, State},
    http::{Method, request::Parts},
    routing::{delete, get, post},
};
use palisade_core::{Error, ErrorKind, Result};
use palisade_service::trust::Administrator;
use ruma::{OwnedDeviceId, OwnedUserId};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{AppState, error::ApiError, extract::access_token, routes::Routes};

/// An authenticated server administrator on an approved device.
pub(crate) struct Admin(Administrator);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = access_token(parts)
            .ok_or_else(|| Error::new(ErrorKind::MissingToken, "Missing access token"))?;
        let session = state.accounts.authenticate(&token).await?;
        Ok(Self(state.trust.administrator(&session).await?))
    }
}

fn user_id(raw: &str) -> Result<OwnedUserId> {
    OwnedUserId::try_from(raw).map_err(|_| Error::invalid_param("Invalid user id"))
}

/// The user and device a device route names.
fn device_of((user, device): (String, String)) -> Result<(OwnedUserId, OwnedDeviceId)> {
    Ok((user_id(&user)?, OwnedDeviceId::from(device)))
}

type Reply = std::result::Result<Json<Value>, ApiError>;

/// `GET …/users/{userId}/devices`: devices with their trust state.
async fn devices(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(user): Path<String>,
) -> Reply {
    let user = user_id(&user)?;
    let devices: Vec<Value> = state
        .trust
        .devices(&admin, &user)
        .await?
        .into_iter()
        .map(|(d, trusted)| {
            json!({
                "device_id": d.device_id,
                "display_name": d.display_name,
                "trusted": trusted,
                "approval": d.approval,
                "created_ts": d.created_ts,
                "last_seen_ts": d.last_seen_ts,
                "last_seen_ip": d.last_seen_ip,
                "user_agent": d.user_agent,
            })
        })
        .collect();
    Ok(Json(json!({ "devices": devices })))
}

/// `POST …/users/{userId}/devices/{deviceId}/approve`
async fn approve(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(target): Path<(String, String)>,
) -> Reply {
    let (user, device) = device_of(target)?;
    if !state.trust.approve(&admin, &user, &device).await? {
        return Err(Error::not_found("No such device").into());
    }
    Ok(Json(json!({})))
}

/// `DELETE …/users/{userId}/devices/{deviceId}`: signs the device out.
async fn sign_out(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(target): Path<(String, String)>,
) -> Reply {
    let (user, device) = device_of(target)?;
    state.accounts.device(&user, &device).await?;
    state.accounts.delete_devices(&user, &[device], Some(admin.name())).await?;
    Ok(Json(json!({})))
}

/// `DELETE …/users/{userId}/devices`: signs every device out.
async fn sign_out_all(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(user): Path<String>,
) -> Reply {
    let user = user_id(&user)?;
    state.accounts.logout_all(&user, None, Some(admin.name())).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct ResetGrant {
    minutes: Option<u64>,
}

/// `POST …/users/{userId}/allow_cross_signing_reset` with `{"minutes": n}` (default 60).
async fn allow_reset(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(user): Path<String>,
    body: axum::body::Bytes,
) -> Reply {
    let user = user_id(&user)?;
    let grant: ResetGrant = if body.is_empty() {
        ResetGrant { minutes: None }
    } else {
        serde_json::from_slice(&body).map_err(|e| Error::bad_json(e.to_string()))?
    };
    let until =
        state.trust.now().saturating_add(grant.minutes.unwrap_or(60).saturating_mul(60_000));
    state.trust.allow_cross_signing_reset(&admin, &user, until).await?;
    Ok(Json(json!({ "expires_ts": until })))
}

#[derive(Deserialize)]
struct AuditQuery {
    user_id: Option<String>,
    limit: Option<usize>,
}

/// `GET …/audit?user_id=&limit=`: the security audit log, newest first.
async fn audit(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Query(query): Query<AuditQuery>,
) -> Reply {
    let user = query.user_id.as_deref().map(user_id).transpose()?;
    let entries: Vec<Value> = state
        .trust
        .audit_log(&admin, user.as_deref(), query.limit.unwrap_or(100).min(1000))
        .await?
        .into_iter()
        .map(|e| {
            json!({
                "id": e.id,
                "ts": e.ts,
                "kind": e.kind,
                "user_id": e.user_id,
                "device_id": e.device_id,
                "actor": e.actor,
                "detail": serde_json::from_str::<Value>(&e.detail).unwrap_or(Value::Null),
            })
        })
        .collect();
    Ok(Json(json!({ "entries": entries })))
}

/// The query of the report list.
#[derive(Deserialize)]
struct ReportsQuery {
    #[serde(default)]
    include_resolved: bool,
    before: Option<u64>,
    limit: Option<usize>,
}

/// `GET …/reports?include_resolved=&before=&limit=`: reports, newest first.
async fn reports(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Query(query): Query<ReportsQuery>,
) -> Reply {
    let limit = query.limit.unwrap_or(100);
    let rows = state.reports.reports(&admin, query.include_resolved, query.before, limit).await?;
    let reports: Vec<Value> = rows
        .iter()
        .map(|row| {
            let report = &row.report;
            json!({
                "id": row.id,
                "reporter": report.reporter,
                "room_id": report.room_id,
                "event_id": report.event_id,
                "user_id": report.user_id,
                "reason": report.reason,
                "received_ts": report.received_ts,
                "resolved_ts": row.resolved.as_ref().map(|(ts, _)| ts),
                "resolved_by": row.resolved.as_ref().map(|(_, by)| by),
            })
        })
        .collect();
    Ok(Json(json!({ "reports": reports })))
}

/// `POST …/reports/{id}/resolve`
async fn resolve_report(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Reply {
    let id = id.parse().map_err(|_| Error::invalid_param("Invalid report id"))?;
    state.reports.resolve(&admin, id).await?;
    Ok(Json(json!({})))
}

/// The media an administration route names.
fn media_of((server, media_id): (String, String)) -> Result<(ruma::OwnedServerName, String)> {
    let server = server.try_into().map_err(|_| Error::invalid_param("Invalid server name"))?;
    Ok((server, media_id))
}

/// `GET …/users/{userId}/media`: what the user uploaded, newest first.
async fn user_media(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(user): Path<String>,
) -> Reply {
    let user = user_id(&user)?;
    let media: Vec<Value> = state
        .media
        .media_of(&admin, &user)
        .await?
        .into_iter()
        .map(|row| {
            json!({
                "content_uri": format!("mxc://{}/{}", row.origin, row.media_id),
                "content_type": row.content_type,
                "upload_name": row.upload_name,
                "size": row.size,
                "created_ts": row.created_ts,
                "quarantined": row.quarantined,
            })
        })
        .collect();
    Ok(Json(json!({ "media": media })))
}

/// `DELETE …/users/{userId}/media`: deletes everything the user uploaded.
async fn delete_user_media(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(user): Path<String>,
) -> Reply {
    let user = user_id(&user)?;
    Ok(Json(json!({ "deleted": state.media.delete_all_of(&admin, &user).await? })))
}

/// `DELETE /_palisade/admin/v1/media/{serverName}/{mediaId}`: the file, its thumbnails and
/// its record go.
async fn delete_media(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(target): Path<(String, String)>,
) -> Reply {
    let (server, media_id) = media_of(target)?;
    state.media.delete(&admin, &server, &media_id).await?;
    Ok(Json(json!({})))
}

/// `POST …/media/{serverName}/{mediaId}/quarantine` (kept, served to no one); `DELETE` to
/// serve it again.
async fn quarantine(
    State(state): State<AppState>,
    Admin(admin): Admin,
    method: Method,
    Path(target): Path<(String, String)>,
) -> Reply {
    let (server, media_id) = media_of(target)?;
    state.media.quarantine(&admin, &server, &media_id, method == Method::POST).await?;
    Ok(Json(json!({})))
}

/// Adds the administration routes.
pub(crate) fn routes(routes: Routes) -> Routes {
    const USERS: &str = "/_palisade/admin/v1/users/{user_id}";
    const MEDIA: &str = "/_palisade/admin/v1/media/{server_name}/{media_id}";
    routes
        .add(Method::GET, &format!("{USERS}/media"), get(user_media))
        .add(Method::DELETE, &format!("{USERS}/media"), delete(delete_user_media))
        .add(Method::DELETE, MEDIA, delete(delete_media))
        .add(Method::POST, &format!("{MEDIA}/quarantine"), post(quarantine))
        .add(Method::DELETE, &format!("{MEDIA}/quarantine"), delete(quarantine))
        .add(Method::GET, &format!("{USERS}/devices"), get(devices))
        .add(Method::DELETE, &format!("{USERS}/devices"), delete(sign_out_all))
        .add(Method::DELETE, &format!("{USERS}/devices/{{device_id}}"), delete(sign_out))
        .add(Method::POST, &format!("{USERS}/devices/{{device_id}}/approve"), post(approve))
        .add(Method::POST, &format!("{USERS}/allow_cross_signing_reset"), post(allow_reset))
        .add(Method::GET, "/_palisade/admin/v1/reports", get(reports))
        .add(Method::POST, "/_palisade/admin/v1/reports/{id}/resolve", post(resolve_report))
        .add(Method::GET, "/_palisade/admin/v1/audit", get(audit))
}
