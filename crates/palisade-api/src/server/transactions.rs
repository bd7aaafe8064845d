//! Transactions and events: `PUT /send/{txnId}` and the reads other servers fill gaps with.
//!
//! Spec: <https://spec.matrix.org/v1.19/server-server-api/#transactions>

use palisade_core::{Error, Result};
use ruma::{
    MilliSecondsSinceUnixEpoch,
    api::federation::{
        authorization::get_event_authorization,
        backfill::get_backfill,
        event::{get_event, get_missing_events, get_room_state, get_room_state_ids},
        transactions::send_transaction_message,
    },
};

use crate::{
    AppState, Ruma,
    routes::{Routes, route},
};

pub(super) fn routes(router: Routes) -> Routes {
    let router = route(router, send);
    let router = route(router, event);
    let router = route(router, state_ids);
    let router = route(router, room_state);
    let router = route(router, event_auth);
    let router = route(router, backfill);
    route(router, missing_events)
}

/// `GET /_matrix/federation/v1/backfill/{roomId}`
async fn backfill(
    state: AppState,
    request: Ruma<get_backfill::v1::Request>,
) -> Result<get_backfill::v1::Response> {
    let body = &request.body;
    let limit = usize::try_from(u64::from(body.limit)).unwrap_or(usize::MAX);
    let pdus =
        state.federation.backfill_for(request.origin()?, &body.room_id, &body.v, limit).await?;
    Ok(get_backfill::v1::Response::new(
        state.config.server_name.clone(),
        MilliSecondsSinceUnixEpoch::now(),
        pdus,
    ))
}

/// `PUT /_matrix/federation/v1/send/{txnId}`
async fn send(
    state: AppState,
    request: Ruma<send_transaction_message::v1::Request>,
) -> Result<send_transaction_message::v1::Response> {
    let origin = request.origin()?;
    let body = &request.body;
    if body.origin != *origin {
        return Err(Error::forbidden("The transaction's origin is not the signing server"));
    }
    let results = state
        .federation
        .receive_transaction(origin, body.transaction_id.as_str(), &body.pdus, &body.edus)
        .await?;
    Ok(send_transaction_message::v1::Response::new(results))
}

/// `GET /_matrix/federation/v1/event/{eventId}`
async fn event(
    state: AppState,
    request: Ruma<get_event::v1::Request>,
) -> Result<get_event::v1::Response> {
    let pdu = state.federation.event_for(request.origin()?, &request.body.event_id).await?;
    Ok(get_event::v1::Response::new(
        state.config.server_name.clone(),
        MilliSecondsSinceUnixEpoch::now(),
        pdu,
    ))
}

/// `GET /_matrix/federation/v1/state_ids/{roomId}`
async fn state_ids(
    state: AppState,
    request: Ruma<get_room_state_ids::v1::Request>,
) -> Result<get_room_state_ids::v1::Response> {
    let body = &request.body;
    let (pdu_ids, auth_chain_ids) =
        state.federation.state_ids_for(request.origin()?, &body.room_id, &body.event_id).await?;
    Ok(get_room_state_ids::v1::Response::new(auth_chain_ids, pdu_ids))
}

/// `GET /_matrix/federation/v1/state/{roomId}`
async fn room_state(
    state: AppState,
    request: Ruma<get_room_state::v1::Request>,
) -> Result<get_room_state::v1::Response> {
    let body = &request.body;
    let (pdus, auth_chain) =
        state.federation.state_for(request.origin()?, &body.room_id, &body.event_id).await?;
    Ok(get_room_state::v1::Response::new(auth_chain, pdus))
}

/// `GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}`
async fn event_auth(
    state: AppState,
    request: Ruma<get_event_authorization::v1::Request>,
) -> Result<get_event_authorization::v1::Response> {
    let body = &request.body;
    let chain =
        state.federation.event_auth_for(request.origin()?, &body.room_id, &body.event_id).await?;
    Ok(get_event_authorization::v1::Response::new(chain))
}

/// `POST /_matrix/federation/v1/get_missing_events/{roomId}`
async fn missing_events(
    state: AppState,
    request: Ruma<get_missing_events::v1::Request>,
) -> Result<get_missing_events::v1::Response> {
    let body = &request.body;
    let limit = usize::try_from(u64::from(body.limit)).unwrap_or(usize::MAX);
    let events = state
        .federation
        .missing_events_for(
            request.origin()?,
            &body.room_id,
            &body.earliest_events,
            &body.latest_events,
            limit,
            u64::from(body.min_depth),
        )
        .await?;
    Ok(get_missing_events::v1::Response::new(events))
}
