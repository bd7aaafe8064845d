//! The applications: the endpoint modules' route tables with the fallbacks and layers.

use axum::{
    Router,
    http::Method,
    response::{IntoResponse, Response},
};
use palisade_core::{Error, ErrorKind};
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{Any, CorsLayer},
};

use crate::{
    AppState, admin, client,
    error::ApiError,
    routes::{Endpoint, Routes},
    server,
};

async fn unrecognized() -> Response {
    ApiError(Error::new(ErrorKind::Unrecognized, "Unrecognized request")).into_response()
}

/// A handler that panicked answers like any internal error (logged, generic body) instead of
/// dropping the connection.
fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic");
    ApiError(Error::internal(format!("handler panicked: {what}"))).into_response()
}

/// One line per request at `debug`: method, path (never the query, which may carry an access
/// token), status and time taken.
async fn log_request(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return next.run(request).await;
    }
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    tracing::debug!(
        %method,
        path,
        status = response.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

async fn method_not_allowed() -> Response {
    ApiError(Error::new(ErrorKind::MethodNotAllowed, "Method not allowed")).into_response()
}

/// The Server-Server API application, served on the federation (TLS) listener.
pub fn federation_router(state: AppState) -> Router {
    server::routes(Routes::default())
        .router
        .fallback(unrecognized)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(CatchPanicLayer::custom(panicked))
        .layer(axum::middleware::from_fn(log_request))
}

/// What the client listener serves: the Client-Server API, the key server and the admin API.
fn client_routes() -> Routes {
    admin::routes(server::key_routes(client::routes(Routes::default())))
}

/// Every endpoint of the client listener, one entry per endpoint (for tests that must cover
/// them all, such as the table of what each needs of a device).
pub fn client_endpoints() -> Vec<Endpoint> {
    client_routes().endpoints
}

/// Every endpoint of the federation listener, one entry per endpoint.
pub fn federation_endpoints() -> Vec<Endpoint> {
    server::routes(Routes::default()).endpoints
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
    client_routes()
        .router
        .fallback(unrecognized)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(CatchPanicLayer::custom(panicked))
        .layer(axum::middleware::from_fn(log_request))
        .layer(cors)
}
