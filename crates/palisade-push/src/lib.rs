//! The push gateway port over HTTP: `POST` a Push Gateway API request to the URL a pusher
//! names, through the guarded client (a user names the URL, so only public addresses and
//! `[push] gateway_allowed_ips` are reached).
//!
//! Spec: <https://spec.matrix.org/v1.19/push-gateway-api/#post_matrixpushv1notify>

use std::{net::IpAddr, time::Duration};

use async_trait::async_trait;
use palisade_core::{Config, Error, ErrorKind, Result, net::host_reachable};
use palisade_service::push::PushGateway;
use serde_json::Value;

/// Longest a gateway may take to answer.
const TIMEOUT: Duration = Duration::from_secs(20);
/// Largest gateway answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Posts to push gateways over HTTP.
pub struct HttpPushGateway {
    http: reqwest::Client,
    allowed: Vec<IpAddr>,
}

fn unavailable(why: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::RemoteUnavailable, format!("push gateway: {why}"))
}

impl HttpPushGateway {
    /// A client for the gateways `config` lets the server reach.
    pub fn new(config: &Config) -> Result<Self> {
        let allowed = config.push.gateway_allowed_ips.clone();
        let http = palisade_net::guarded_client(allowed.clone(), TIMEOUT, "push")?;
        Ok(Self { http, allowed })
    }
}

#[async_trait]
impl PushGateway for HttpPushGateway {
    async fn notify(&self, url: &str, body: &Value) -> Result<Vec<String>> {
        let url = reqwest::Url::parse(url).map_err(unavailable)?;
        if !host_reachable(&url, &self.allowed) {
            return Err(unavailable("its address may not be reached"));
        }
        let mut response = self.http.post(url).json(body).send().await.map_err(unavailable)?;
        if !response.status().is_success() {
            return Err(unavailable(response.status()));
        }
        let mut answer = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unavailable)? {
            if answer.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(unavailable("answer too large"));
            }
            answer.extend_from_slice(&chunk);
        }
        let answer: Value = serde_json::from_slice(&answer).map_err(unavailable)?;
        let rejected = answer["rejected"].as_array().into_iter().flatten();
        Ok(rejected.filter_map(|key| key.as_str().map(str::to_owned)).collect())
    }
}
