//! Reporting abuse through HTTP: events, rooms and users reported, the administrators' list
//! and resolution (admin API and command line), and the audit log.

use palisade_testkit::{TestServer, assert_error, urlencode};
use reqwest::StatusCode;
use serde_json::json;

use crate::cli::palisade;

#[tokio::test]
async fn users_report_abuse_and_administrators_resolve_it() {
    let server = TestServer::start().await;
    let (alice, bob) = (server.register("alice").await, server.register("bob").await);
    let admin = server.register_admin("admin").await;
    let room = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    server.join(&bob, &room).await;
    let (_, sent) = server.send_text(&bob, &room, "something abusive").await;
    let event_id = sent["event_id"].as_str().unwrap();
    let private = server.create_room(&bob, json!({})).await;
    let (_, hidden) = server.send_text(&bob, &private, "not for alice").await;

    // An event, a room and a user.
    let report_event = format!("/_matrix/client/v3/rooms/{room}/report/{}", urlencode(event_id));
    let (status, body) =
        server.post(&report_event, alice.token(), json!({ "reason": "abuse" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let report_room = format!("/_matrix/client/v3/rooms/{room}/report");
    let (status, _) =
        server.post(&report_room, alice.token(), json!({ "reason": "spam room" })).await;
    assert_eq!(status, StatusCode::OK);
    let report_user = format!("/_matrix/client/v3/users/{}/report", urlencode(&bob.user_id));
    let (status, _) =
        server.post(&report_user, alice.token(), json!({ "reason": "harasser" })).await;
    assert_eq!(status, StatusCode::OK);

    // What the reporter may not see, or what does not exist, is not found; no one can tell
    // from a user report whether an account exists.
    let unknown = format!("/_matrix/client/v3/rooms/{room}/report/{}", urlencode("$nothing"));
    assert_error(
        &server.post(&unknown, alice.token(), json!({})).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    let elsewhere = format!(
        "/_matrix/client/v3/rooms/{private}/report/{}",
        urlencode(hidden["event_id"].as_str().unwrap())
    );
    assert_error(
        &server.post(&elsewhere, alice.token(), json!({})).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    let no_room = "/_matrix/client/v3/rooms/!nowhere:localhost/report";
    assert_error(
        &server.post(no_room, alice.token(), json!({ "reason": "x" })).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    let ghost = format!("/_matrix/client/v3/users/{}/report", urlencode("@ghost:localhost"));
    assert_eq!(
        server.post(&ghost, alice.token(), json!({ "reason": "x" })).await.0,
        StatusCode::OK
    );
    assert_eq!(
        server.post(&report_room, alice.token(), json!({ "reason": 7 })).await.0,
        StatusCode::BAD_REQUEST
    );
    let long = json!({ "reason": "x".repeat(10_001) });
    assert_error(
        &server.post(&report_room, alice.token(), long).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_eq!(
        server.post(&report_room, None, json!({ "reason": "x" })).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Administrators see them, newest first; others may not.
    let (status, _) = server.get("/_palisade/admin/v1/reports", alice.token()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, list) = server.get("/_palisade/admin/v1/reports", admin.token()).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let reports = list["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 4, "{list}");
    assert_eq!(reports[0]["user_id"], "@ghost:localhost");
    let event_report = reports.iter().find(|r| r["event_id"] == event_id).unwrap();
    assert_eq!(event_report["reporter"], alice.user_id);
    assert_eq!(event_report["room_id"], room);
    assert_eq!(event_report["reason"], "abuse");

    // Resolved through the API: no longer open, still listed with the resolved ones.
    let id = event_report["id"].as_u64().unwrap();
    let resolve = format!("/_palisade/admin/v1/reports/{id}/resolve");
    let (status, body) = server.post(&resolve, admin.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_error(
        &server.post(&resolve, admin.token(), json!({})).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    let invalid = "/_palisade/admin/v1/reports/abc/resolve";
    assert_eq!(server.post(invalid, admin.token(), json!({})).await.0, StatusCode::BAD_REQUEST);
    let (_, open) = server.get("/_palisade/admin/v1/reports", admin.token()).await;
    assert_eq!(open["reports"].as_array().unwrap().len(), 3);
    let (_, all) =
        server.get("/_palisade/admin/v1/reports?include_resolved=true", admin.token()).await;
    let resolved =
        all["reports"].as_array().unwrap().iter().find(|r| r["id"] == id).cloned().unwrap();
    assert_eq!(resolved["resolved_by"], admin.user_id);

    // The audit log has each report and the resolution.
    let (_, audit) = server.get("/_palisade/admin/v1/audit", admin.token()).await;
    let kinds: Vec<&str> =
        audit["entries"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "report_received").count(), 4, "{kinds:?}");
    assert!(kinds.contains(&"report_resolved"));

    // And the command line.
    let dir = server.config.data_dir.clone();
    let (ok, out) = palisade(&dir, &["report", "list"], None);
    assert!(ok, "{out}");
    assert_eq!(out.lines().filter(|l| l.ends_with("open")).count(), 3, "{out}");
    let room_report = open["reports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["reason"] == "spam room")
        .map(|r| r["id"].as_u64().unwrap())
        .unwrap();
    let (ok, out) = palisade(&dir, &["report", "resolve", &room_report.to_string()], None);
    assert!(ok, "{out}");
    let (ok, out) = palisade(&dir, &["report", "list", "--all"], None);
    assert!(ok && out.contains("resolved by admin-cli"), "{out}");
}
