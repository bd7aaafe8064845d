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
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{Any, CorsLayer},
};

use crate::{
    AppState, admin, client,
    error::ApiError,
    extract::{Ruma, RumaResponse},
    server,
};

/// One endpoint a listener serves: its method and its newest path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    /// The HTTP method.
    pub method: String,
    /// The path, with `{parameters}`.
    pub path: String,
}

/// A router under construction, with the list of endpoints it serves.
#[derive(Default)]
pub(crate) struct Routes {
    router: Router<AppState>,
    endpoints: Vec<Endpoint>,
}

impl Routes {
    /// Adds an axum handler at `path` for `method` (endpoints ruma has no type for).
    pub(crate) fn add(
        mut self,
        method: Method,
        path: &str,
        handler: axum::routing::MethodRouter<AppState>,
    ) -> Self {
        self.endpoints.push(Endpoint { method: method.to_string(), path: path.to_owned() });
        self.router = self.router.route(path, handler);
        self
    }
}

/// Registers `handler` for request type `R` at every path (r0, v3, unstable) ruma lists.
pub(crate) fn route<R, F, Fut>(routes: Routes, handler: F) -> Routes
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
    let Routes { router, mut endpoints } = routes;
    let newest = builder.all_paths().last().expect("ruma endpoints have a path");
    endpoints.push(Endpoint { method: R::METHOD.to_string(), path: newest.to_owned() });
    let paths = builder.all_paths().flat_map(|path| {
        let short = path.strip_suffix("/{state_key}");
        [Some(path.to_owned()), short.map(str::to_owned), short.map(|p| format!("{p}/"))]
            .into_iter()
            .flatten()
    });
    let router = paths.fold(router, |router, path| {
        let handler = handler.clone();
        router.route(
            &path,
            on(filter, move |State(state): State<AppState>, request: Ruma<R>| async move {
                handler(state, request).await.map(RumaResponse).map_err(ApiError)
            }),
        )
    });
    Routes { router, endpoints }
}

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
