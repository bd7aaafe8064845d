//! Routes every endpoint at each path ruma knows for it, plus the fallbacks and layers.

use std::future::Future;

use axum::{
    Router,
    extract::State,
    http::Method,
    response::{IntoResponse, Response},
    routing::{MethodFilter, on},
};
use palisade_core::{Error, ErrorKind, Result};
use ruma::api::{IncomingRequest, path_builder::PathBuilder};
use tower_http::cors::{Any, CorsLayer};

use crate::{
    AppState, admin, client,
    error::ApiError,
    extract::{Ruma, RumaResponse},
    server,
};

/// Registers `handler` for request type `R` at every path (r0, v3, unstable) ruma lists.
pub(crate) fn route<R, F, Fut>(router: Router<AppState>, handler: F) -> Router<AppState>
where
    R: IncomingRequest + Send + 'static,
    R::Authentication: 'static,
    R::OutgoingResponse: Send,
    F: Fn(AppState, Ruma<R>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<R::OutgoingResponse>> + Send,
{
    let filter = MethodFilter::try_from(R::METHOD).expect("ruma endpoints use standard methods");
    // An empty state key may also be written as a trailing slash or left out entirely; the
    // extractor passes the missing trailing parameter as "".
    let builder = R::PATH_BUILDER;
    let paths = builder.all_paths().flat_map(|path| {
        let short = path.strip_suffix("/{state_key}");
        [Some(path.to_owned()), short.map(str::to_owned), short.map(|p| format!("{p}/"))]
            .into_iter()
            .flatten()
    });
    paths.fold(router, |router, path| {
        let handler = handler.clone();
        router.route(
            &path,
            on(filter, move |State(state): State<AppState>, request: Ruma<R>| async move {
                handler(state, request).await.map(RumaResponse).map_err(ApiError)
            }),
        )
    })
}

async fn unrecognized() -> Response {
    ApiError(Error::new(ErrorKind::Unrecognized, "Unrecognized request")).into_response()
}

async fn method_not_allowed() -> Response {
    ApiError(Error::new(ErrorKind::MethodNotAllowed, "Method not allowed")).into_response()
}

/// The Server-Server API application, served on the federation (TLS) listener.
pub fn federation_router(state: AppState) -> Router {
    server::routes(Router::new())
        .fallback(unrecognized)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// The Client-Server API application (with the admin API).
pub fn router(state: AppState) -> Router {
    // Browser clients (Element Web) call from other origins; the spec asks for these headers.
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            http::header::AUTHORIZATION,
            http::header::CONTENT_TYPE,
            http::header::ACCEPT,
            http::HeaderName::from_static("x-requested-with"),
        ]);
    admin::routes(server::key_routes(client::routes(Router::new())))
        .fallback(unrecognized)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(cors)
}
