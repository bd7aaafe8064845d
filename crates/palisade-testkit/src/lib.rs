//! Starts real Palisade servers on `127.0.0.1:0`, each with its own data directory, and talks
//! to them over HTTP. Shared by the server's integration tests and the client-library tests.

use std::{path::Path, sync::Arc};

use palisade::Server;
use palisade_core::{Config, SystemClock, config::RateLimit};
use palisade_service::Services;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// A server running in this process on 127.0.0.1 with its own data directory.
pub struct TestServer {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// A client for raw requests.
    pub http: reqwest::Client,
    /// The configuration the server runs with.
    pub config: Config,
    /// The running server's services, for set-up that has no HTTP API (such as making a user
    /// an administrator) and for checks behind the API.
    pub services: Services,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _dir: Option<TempDir>,
}

/// Open registration and no practical rate limit: what most tests want.
pub fn test_config(data_dir: &Path) -> Config {
    let mut config = Config::from_toml("registration = \"open\"").unwrap();
    config.data_dir = data_dir.to_owned();
    // Security notices add a room per account; tests that want them turn them on.
    config.device_trust.notify_user = false;
    let generous = RateLimit { per_second: 1000.0, burst: 1000 };
    config.rate_limits.login = generous;
    config.rate_limits.registration = generous;
    config
}

impl TestServer {
    /// A fresh server with [`test_config`].
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A fresh server whose config `adjust` may change.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = TempDir::new().unwrap();
        let mut config = test_config(dir.path());
        adjust(&mut config);
        let mut server = Self::start_on(config).await;
        server._dir = Some(dir);
        server
    }

    /// A fresh server with federation on: its server name is `127.0.0.1:<federation port>`,
    /// with a self-signed certificate, trusting peers on loopback with self-signed ones.
    pub async fn start_federated() -> Self {
        Self::start_federated_with(|_| {}).await
    }

    /// A fresh federating server whose config `adjust` may change.
    pub async fn start_federated_with(adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_federated_as("127.0.0.1", adjust).await
    }

    /// A fresh federating server named `<host>:<federation port>` (`localhost` gives a
    /// loopback server a host name distinct from the `127.0.0.1` ones).
    pub async fn start_federated_as(host: &str, adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = TempDir::new().unwrap();
        let federation = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = federation.local_addr().unwrap();
        let mut config = test_config(dir.path());
        config.server_name = format!("{host}:{}", address.port()).try_into().unwrap();
        config.listen.federation = Some(address);
        config.federation.self_signed_certificate = true;
        config.federation.verify_certificates = false;
        config.federation.allow_private_addresses = true;
        adjust(&mut config);
        let mut server = Self::start_with_listener(config, Some(federation)).await;
        server._dir = Some(dir);
        server
    }

    /// A server on an existing configuration (and data directory): a restart binds the
    /// federation address the configuration names again.
    pub async fn start_on(config: Config) -> Self {
        let federation = match config.listen.federation {
            Some(address) => Some(TcpListener::bind(address).await.unwrap()),
            None => None,
        };
        Self::start_with_listener(config, federation).await
    }

    async fn start_with_listener(config: Config, federation: Option<TcpListener>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server =
            Server::with_listeners(config.clone(), listener, federation, Arc::new(SystemClock))
                .await
                .unwrap();
        let base = format!("http://{}", server.local_addr());
        let services = server.services().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server.run(async { drop(stopped.await) }).await.unwrap();
        });
        Self {
            base,
            http: reqwest::Client::new(),
            config,
            services,
            stop: Some(stop),
            task: Some(task),
            _dir: None,
        }
    }

    /// The server name, as in user ids.
    pub fn server_name(&self) -> &str {
        self.config.server_name.as_str()
    }

    /// `https://<federation address>`, for raw federation requests.
    pub fn federation_base(&self) -> String {
        format!("https://{}", self.config.listen.federation.expect("a federating server"))
    }

    /// Stops the server and waits until it has finished.
    pub async fn stop(mut self) -> Option<TempDir> {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.take().unwrap().await.unwrap();
        self._dir.take()
    }

    /// Sends a request with an optional JSON body and token; returns status and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let json = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() };
        (status, json)
    }

    /// Sends a raw body (for malformed-input tests).
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, Value) {
        let mut request =
            self.http.request(method, format!("{}{path}", self.base)).body(body.to_owned());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    /// `GET` with an optional token.
    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::GET, path, token, None).await
    }

    /// `POST` a JSON body.
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// `PUT` a JSON body.
    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, token, Some(body)).await
    }

    /// The text messages of a room, oldest first, as `/messages` shows them to `user`.
    pub async fn texts(&self, user: &User, room_id: &str) -> Vec<String> {
        let path = format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=100");
        let (status, page) = self.get(&path, user.token()).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        message_texts(&page)
    }

    /// Registers `localpart` through the UIA dance; returns the login.
    pub async fn register(&self, localpart: &str) -> User {
        User::from_login(&self.register_with(localpart, false).await)
    }

    /// Registers `localpart` as a server administrator (on its first, approved device).
    pub async fn register_admin(&self, localpart: &str) -> User {
        let admin = self.register(localpart).await;
        let user_id = self.services.accounts.local_user_id(localpart).unwrap();
        self.services.accounts.set_admin(&user_id, true).await.unwrap();
        admin
    }

    /// Registers `localpart` without signing in (`inhibit_login`), so that the account's first
    /// device is the one a client library signs in with next.
    pub async fn register_account(&self, localpart: &str) {
        let response = self.register_with(localpart, true).await;
        assert!(response.get("access_token").is_none(), "{response}");
    }

    async fn register_with(&self, localpart: &str, inhibit_login: bool) -> Value {
        let body =
            json!({ "username": localpart, "password": PASSWORD, "inhibit_login": inhibit_login });
        let (status, challenge) =
            self.post("/_matrix/client/v3/register", None, body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{challenge}");
        let mut body = body;
        body["auth"] = json!({ "type": "m.login.dummy", "session": challenge["session"] });
        let (status, response) = self.post("/_matrix/client/v3/register", None, body).await;
        assert_eq!(status, StatusCode::OK, "{response}");
        response
    }

    /// Logs in with the test password.
    pub async fn login(&self, localpart: &str, device_name: Option<&str>) -> User {
        let (status, login) = self
            .post(
                "/_matrix/client/v3/login",
                None,
                json!({
                    "type": "m.login.password",
                    "identifier": { "type": "m.id.user", "user": localpart },
                    "password": PASSWORD,
                    "initial_device_display_name": device_name,
                }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{login}");
        User::from_login(&login)
    }

    /// Creates a room as `user` with a `createRoom` body; returns the room id.
    pub async fn create_room(&self, user: &User, body: Value) -> String {
        let (status, room) = self.post("/_matrix/client/v3/createRoom", user.token(), body).await;
        assert_eq!(status, StatusCode::OK, "{room}");
        room["room_id"].as_str().unwrap().to_owned()
    }

    /// Sends an `m.room.message` with a fresh transaction id; returns the response.
    pub async fn send_text(&self, user: &User, room_id: &str, body: &str) -> (StatusCode, Value) {
        static TXN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let txn = TXN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.message/t{txn}");
        self.put(&path, user.token(), json!({ "msgtype": "m.text", "body": body })).await
    }

    /// Joins a room, asserting success.
    pub async fn join(&self, user: &User, room: &str) {
        let (status, body) =
            self.post(&format!("/_matrix/client/v3/join/{room}"), user.token(), json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// A membership action (`invite`, `kick`, `ban`, `unban`, `leave`) on `target`.
    pub async fn membership(
        &self,
        user: &User,
        room_id: &str,
        action: &str,
        target: Option<&User>,
    ) -> (StatusCode, Value) {
        let body = match target {
            Some(target) => json!({ "user_id": target.user_id, "reason": "test" }),
            None => json!({}),
        };
        self.post(&format!("/_matrix/client/v3/rooms/{room_id}/{action}"), user.token(), body).await
    }

    /// One sync with a query string (`since`, `filter`, `timeout`, …); asserts 200.
    pub async fn sync(&self, user: &User, query: &str) -> Value {
        let (status, body) =
            self.get(&format!("/_matrix/client/v3/sync?{query}"), user.token()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }
}

/// The password every test account uses.
pub const PASSWORD: &str = "correct horse battery";

/// A logged-in user.
pub struct User {
    /// Full user id.
    pub user_id: String,
    /// The device of this login.
    pub device_id: String,
    /// Its access token.
    pub token: String,
}

impl User {
    fn from_login(login: &Value) -> Self {
        Self {
            user_id: login["user_id"].as_str().unwrap().to_owned(),
            device_id: login["device_id"].as_str().unwrap().to_owned(),
            token: login["access_token"].as_str().unwrap().to_owned(),
        }
    }

    /// The access token, as the request helpers take it.
    pub fn token(&self) -> Option<&str> {
        Some(&self.token)
    }
}

/// Asserts an error response's status and `errcode`.
#[track_caller]
pub fn assert_error(response: &(StatusCode, Value), status: StatusCode, errcode: &str) {
    assert_eq!(response.0, status, "{}", response.1);
    assert_eq!(response.1["errcode"], errcode, "{}", response.1);
}

/// The message bodies of a backward `/messages` page, oldest first (any homeserver's).
pub fn message_texts(page: &Value) -> Vec<String> {
    let mut texts: Vec<String> = page["chunk"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"] == "m.room.message")
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect();
    texts.reverse();
    texts
}

/// Asserts a 403 `M_FORBIDDEN`, the answer to most refused actions.
#[track_caller]
pub fn assert_forbidden(response: &(StatusCode, Value)) {
    assert_error(response, StatusCode::FORBIDDEN, "M_FORBIDDEN");
}

/// Percent-encodes `text` for a query string (filters are JSON in the query).
pub fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
