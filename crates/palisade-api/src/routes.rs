//! Route tables: each endpoint module adds its handlers to a [`Routes`], which registers them
//! with axum at every path ruma lists and records the endpoint. Endpoint modules depend on
//! this module only; `router.rs` assembles the applications from them.

use std::future::Future;

use axum::{
    Json, Router,
    extract::State,
    http::Method,
    routing::{MethodFilter, MethodRouter, on},
};
use palisade_core::Result;
use ruma::api::{IncomingRequest, path_builder::PathBuilder};
use serde::Serialize;

use crate::{
    AppState,
    error::ApiError,
    extract::{Ruma, RumaResponse},
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
    pub(crate) router: Router<AppState>,
    pub(crate) endpoints: Vec<Endpoint>,
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
    at_every_path::<R>(routes, || {
        let handler = handler.clone();
        on(method_of::<R>(), move |State(state): State<AppState>, request: Ruma<R>| async move {
            handler(state, request).await.map(RumaResponse).map_err(ApiError)
        })
    })
}

/// Registers `handler` for request type `R` like [`route`], for an endpoint that answers with
/// a type of the service's own (as JSON) rather than ruma's response type: where the shape
/// clients expect differs from what ruma's type serialises (`/sync`).
pub(crate) fn route_json<R, T, F, Fut>(routes: Routes, handler: F) -> Routes
where
    R: IncomingRequest + Send + 'static,
    R::Authentication: 'static,
    T: Serialize + Send + 'static,
    F: Fn(AppState, Ruma<R>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<T>> + Send,
{
    at_every_path::<R>(routes, || {
        let handler = handler.clone();
        on(method_of::<R>(), move |State(state): State<AppState>, request: Ruma<R>| async move {
            handler(state, request).await.map(Json).map_err(ApiError)
        })
    })
}

/// `R`'s method, for axum.
fn method_of<R: IncomingRequest>() -> MethodFilter {
    MethodFilter::try_from(R::METHOD).expect("ruma endpoints use standard methods")
}

/// Adds the method router `make` builds at every path ruma lists for `R`, and records the
/// endpoint (its newest path).
fn at_every_path<R: IncomingRequest>(
    routes: Routes,
    make: impl Fn() -> MethodRouter<AppState>,
) -> Routes {
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
    let router = paths.fold(router, |router, path| router.route(&path, make()));
    Routes { router, endpoints }
}
