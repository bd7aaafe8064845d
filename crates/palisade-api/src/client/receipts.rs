//! Typing, read receipts and read markers.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#typing-notifications>,
//! <https://spec.matrix.org/v1.19/client-server-api/#receipts> and
//! <https://spec.matrix.org/v1.19/client-server-api/#read-markers>

use palisade_core::{Error, Result};
use palisade_service::receipts::{FULLY_READ, READ, READ_PRIVATE};
use ruma::{
    api::client::{
        read_marker::set_read_marker,
        receipt::create_receipt::{self, v3::ReceiptType},
        typing::create_typing_event::{self, v3::Typing},
    },
    events::receipt::ReceiptThread,
};

use crate::{
    AppState, Ruma,
    routes::{Routes, route},
};

pub(super) fn routes(router: Routes) -> Routes {
    let router = route(router, typing);
    let router = route(router, receipt);
    route(router, read_markers)
}

/// `PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}`
async fn typing(
    state: AppState,
    request: Ruma<create_typing_event::v3::Request>,
) -> Result<create_typing_event::v3::Response> {
    let body = &request.body;
    let timeout = match &body.state {
        Typing::Yes(info) => Some(u64::try_from(info.timeout.as_millis()).unwrap_or(u64::MAX)),
        _ => None,
    };
    let actor = request.session()?.into();
    state.typing.user_typing(actor, &body.room_id, &body.user_id, timeout).await?;
    Ok(create_typing_event::v3::Response::new())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}`
async fn receipt(
    state: AppState,
    request: Ruma<create_receipt::v3::Request>,
) -> Result<create_receipt::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    let kind = match body.receipt_type {
        ReceiptType::Read => READ,
        ReceiptType::ReadPrivate => READ_PRIVATE,
        ReceiptType::FullyRead => FULLY_READ,
        _ => return Err(Error::invalid_param("Unknown receipt type")),
    };
    let thread = match &body.thread {
        ReceiptThread::Unthreaded => None,
        thread => thread.as_str(),
    };
    state.receipts.receipt(session.into(), &body.room_id, kind, &body.event_id, thread).await?;
    Ok(create_receipt::v3::Response::new())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/read_markers`
async fn read_markers(
    state: AppState,
    request: Ruma<set_read_marker::v3::Request>,
) -> Result<set_read_marker::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    let markers = [
        (FULLY_READ, &body.fully_read),
        (READ, &body.read_receipt),
        (READ_PRIVATE, &body.private_read_receipt),
    ];
    for (kind, event_id) in markers {
        if let Some(event_id) = event_id {
            state.receipts.receipt(session.into(), &body.room_id, kind, event_id, None).await?;
        }
    }
    Ok(set_read_marker::v3::Response::new())
}
