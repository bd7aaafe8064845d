//! A minimal Matrix client over reqwest: just what the scenarios need.

use std::sync::atomic::{AtomicU64, Ordering};

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

/// Result type of the tool.
pub type Result<T> = std::result::Result<T, String>;

/// A registered user.
#[derive(Clone)]
pub struct User {
    /// Access token.
    pub token: String,
}

/// The homeserver under test.
#[derive(Clone)]
pub struct Server {
    /// Base URL.
    pub base: String,
    /// HTTP client with a connection pool.
    pub http: Client,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name unique within this run and across runs.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("{prefix}{}x{n}", now.as_millis() % 1_000_000_000)
}

impl Server {
    /// A client for `base`.
    pub fn new(base: &str) -> Self {
        let http = Client::builder().pool_max_idle_per_host(2000).build().expect("HTTP client");
        Self { base: base.trim_end_matches('/').to_owned(), http }
    }

    /// One request; returns the status and the JSON body (or `null`).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value, usize)> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| format!("{path}: {e}"))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| format!("{path}: {e}"))?;
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, json, bytes.len()))
    }

    /// A request that must succeed; returns its JSON body.
    pub async fn ok(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Value> {
        let (status, json, _) = self.call(method, path, token, body).await?;
        if !status.is_success() {
            return Err(format!("{path}: {status} {json}"));
        }
        Ok(json)
    }

    /// Registers a fresh user through the `m.login.dummy` flow.
    pub async fn register(&self, prefix: &str) -> Result<User> {
        let username = unique(prefix);
        let body = json!({ "username": username, "password": "benchmark password", "initial_device_display_name": "bench" });
        let (status, challenge, _) =
            self.call(Method::POST, "/_matrix/client/v3/register", None, Some(&body)).await?;
        let response = if status == StatusCode::UNAUTHORIZED {
            let mut body = body;
            body["auth"] = json!({ "type": "m.login.dummy", "session": challenge["session"] });
            self.ok(Method::POST, "/_matrix/client/v3/register", None, Some(&body)).await?
        } else if status.is_success() {
            challenge
        } else {
            return Err(format!("register: {status} {challenge}"));
        };
        Ok(User {
            token: response["access_token"].as_str().ok_or("register: no access_token")?.to_owned(),
        })
    }

    /// Creates a room; returns its id.
    pub async fn create_room(&self, user: &User, body: Value) -> Result<String> {
        let room = self
            .ok(Method::POST, "/_matrix/client/v3/createRoom", Some(&user.token), Some(&body))
            .await?;
        Ok(room["room_id"].as_str().ok_or("createRoom: no room_id")?.to_owned())
    }

    /// Joins a room.
    pub async fn join(&self, user: &User, room_id: &str) -> Result<()> {
        self.ok(
            Method::POST,
            &format!("/_matrix/client/v3/join/{room_id}"),
            Some(&user.token),
            Some(&json!({})),
        )
        .await?;
        Ok(())
    }

    /// Sends a text message with a fresh transaction id; returns the event id.
    pub async fn send(&self, user: &User, room_id: &str, body: &str) -> Result<String> {
        let path =
            format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{}", unique("t"));
        let sent = self
            .ok(
                Method::PUT,
                &path,
                Some(&user.token),
                Some(&json!({ "msgtype": "m.text", "body": body })),
            )
            .await?;
        Ok(sent["event_id"].as_str().ok_or("send: no event_id")?.to_owned())
    }

    /// A simplified sliding sync request (`pos` as given, waiting up to `timeout_ms`);
    /// returns the body and its size in bytes.
    pub async fn sliding_sync(
        &self,
        user: &User,
        pos: Option<&str>,
        timeout_ms: u64,
        body: &Value,
    ) -> Result<(Value, usize)> {
        let query = match pos {
            Some(pos) => format!("?pos={pos}&timeout={timeout_ms}"),
            None => String::new(),
        };
        let path = format!("/_matrix/client/unstable/org.matrix.simplified_msc3575/sync{query}");
        let (status, json, bytes) =
            self.call(Method::POST, &path, Some(&user.token), Some(body)).await?;
        if !status.is_success() {
            return Err(format!("sliding sync: {status} {json}"));
        }
        Ok((json, bytes))
    }

    /// A `/sync`; returns the body and its size in bytes.
    pub async fn sync(&self, user: &User, query: &str) -> Result<(Value, usize)> {
        let (status, json, bytes) = self
            .call(Method::GET, &format!("/_matrix/client/v3/sync?{query}"), Some(&user.token), None)
            .await?;
        if !status.is_success() {
            return Err(format!("sync: {status} {json}"));
        }
        Ok((json, bytes))
    }
}
