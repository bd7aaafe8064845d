//! Calls: `/voip/turnServer`.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#voice-over-ip>

use palisade_core::Result;
use palisade_service::calls::TurnCredentials;
use ruma::api::client::voip::get_turn_server_info;

use crate::{
    AppState, Ruma,
    routes::{Routes, route_json},
};

pub(super) fn routes(router: Routes) -> Routes {
    route_json(router, turn_server)
}

/// The answer: the credentials, or `{}` when there is no TURN server, as Synapse answers
/// (ruma's type has no empty form).
#[derive(serde::Serialize)]
struct TurnAnswer {
    #[serde(flatten)]
    credentials: Option<TurnCredentials>,
}

/// `GET /_matrix/client/v3/voip/turnServer`
async fn turn_server(
    state: AppState,
    request: Ruma<get_turn_server_info::v3::Request>,
) -> Result<TurnAnswer> {
    let credentials = state.calls.turn_credentials(request.session()?.into())?;
    Ok(TurnAnswer { credentials })
}
