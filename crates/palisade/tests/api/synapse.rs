//! Interoperability with Synapse, the reference homeserver: a real `matrix-synapse` (PyPI,
//! installed by `scripts/synapse-venv.sh`) federates with Palisade on loopback.

use std::{
    net::TcpListener as StdListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use base64::Engine;
use palisade_testkit::{TestServer, User, message_texts, urlencode};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

/// A Synapse process with its own data directory, federating over TLS on loopback.
struct Synapse {
    child: Option<Child>,
    dir: TempDir,
    python: PathBuf,
    server_name: String,
    client: String,
    http: reqwest::Client,
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The Python of the Synapse virtualenv (installed on first use), which also has the packages
/// the push gateway stand-in needs (`jsonschema`, `PyYAML`).
pub fn python() -> PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/synapse-venv.sh");
    let output = Command::new("bash").arg(script).output().expect("running synapse-venv.sh");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

impl Synapse {
    async fn start() -> Self {
        let python = python();
        let dir = TempDir::new().unwrap();
        let (federation_port, client_port) = (free_port(), free_port());
        let server_name = format!("127.0.0.1:{federation_port}");
        let path = |name: &str| dir.path().join(name).display().to_string();

        let certificate = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        std::fs::write(path("tls.crt"), certificate.cert.pem()).unwrap();
        std::fs::write(path("tls.key"), certificate.signing_key.serialize_pem()).unwrap();
        let seed =
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(rand::random::<[u8; 32]>());
        std::fs::write(path("signing.key"), format!("ed25519 a_test {seed}\n")).unwrap();
        let limit = "{per_second: 100000, burst_count: 100000}";
        let config = format!(
            r#"server_name: "{server_name}"
pid_file: "{pid}"
report_stats: false
signing_key_path: "{signing}"
tls_certificate_path: "{cert}"
tls_private_key_path: "{key}"
media_store_path: "{media}"
registration_shared_secret: "interop"
macaroon_secret_key: "interop-macaroon"
form_secret: "interop-form"
enable_registration: true
enable_registration_without_verification: true
suppress_key_server_warning: true
trusted_key_servers: []
federation_verify_certificates: false
bcrypt_rounds: 4
ip_range_whitelist: ["127.0.0.0/8"]
ip_range_blacklist: ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
  "192.0.0.0/24", "169.254.0.0/16", "192.88.99.0/24", "198.18.0.0/15", "192.0.2.0/24",
  "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "fe80::/10", "fc00::/7",
  "2001:db8::/32", "ff00::/8", "fec0::/10"]
federation:
  destination_min_retry_interval: 1s
  destination_max_retry_interval: 2s
rc_message: {limit}
rc_registration: {limit}
rc_login: {{address: {limit}, account: {limit}, failed_attempts: {limit}}}
rc_joins: {{local: {limit}, remote: {limit}}}
rc_joins_per_room: {limit}
rc_invites: {{per_room: {limit}, per_user: {limit}}}
rc_room_creation: {limit}
rc_federation: {{window_size: 1000, sleep_limit: 1000, sleep_delay: 1, reject_limit: 1000, concurrent: 100}}
listeners:
  - port: {federation_port}
    tls: true
    bind_addresses: ["127.0.0.1"]
    type: http
    resources: [{{names: [federation]}}]
  - port: {client_port}
    tls: false
    bind_addresses: ["127.0.0.1"]
    type: http
    resources: [{{names: [client]}}]
database:
  name: sqlite3
  args: {{database: "{db}"}}
"#,
            pid = path("synapse.pid"),
            signing = path("signing.key"),
            cert = path("tls.crt"),
            key = path("tls.key"),
            media = path("media"),
            db = path("homeserver.db"),
        );
        std::fs::write(path("homeserver.yaml"), config).unwrap();
        let mut synapse = Self {
            child: None,
            dir,
            python,
            server_name,
            client: format!("http://127.0.0.1:{client_port}"),
            http: reqwest::Client::new(),
        };
        synapse.run().await;
        synapse
    }

    /// Starts the process (again) and waits until it answers.
    async fn run(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("synapse.log"))
            .unwrap();
        let child = Command::new(&self.python)
            .args(["-m", "synapse.app.homeserver", "--config-path"])
            .arg(self.dir.path().join("homeserver.yaml"))
            .current_dir(self.dir.path())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("starting synapse");
        self.child = Some(child);
        for _ in 0..240 {
            let versions = format!("{}/_matrix/client/versions", self.client);
            if let Ok(response) = self.http.get(&versions).send().await
                && response.status().is_success()
            {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("synapse exited with {status}:\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("synapse did not start:\n{}", self.log_tail());
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("synapse.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.client)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Registers a user through the dummy flow; returns the login.
    async fn register(&self, localpart: &str) -> User {
        let body = json!({ "username": localpart, "password": "interop-password" });
        let (_, challenge) = self
            .call(reqwest::Method::POST, "/_matrix/client/v3/register", None, body.clone())
            .await;
        let mut body = body;
        body["auth"] = json!({ "type": "m.login.dummy", "session": challenge["session"] });
        let (status, login) =
            self.call(reqwest::Method::POST, "/_matrix/client/v3/register", None, body).await;
        assert_eq!(status, StatusCode::OK, "{login}");
        let text = |key: &str| login[key].as_str().unwrap().to_owned();
        User { user_id: text("user_id"), device_id: text("device_id"), token: text("access_token") }
    }

    async fn texts(&self, user: &User, room_id: &str) -> Vec<String> {
        let path =
            format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=100", urlencode(room_id));
        let (status, body) =
            self.call(reqwest::Method::GET, &path, user.token(), Value::Null).await;
        // Before the room reaches Synapse, the user is not in it yet: nothing to show.
        if status != StatusCode::OK {
            return Vec::new();
        }
        message_texts(&body)
    }

    /// Sends a text message as `user`.
    async fn send_text(&self, user: &User, room_id: &str, text: &str) -> StatusCode {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
            urlencode(room_id),
            urlencode(text)
        );
        let body = json!({ "msgtype": "m.text", "body": text });
        self.call(reqwest::Method::PUT, &path, user.token(), body).await.0
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits (up to 60 s: Synapse backs off between retries) until `check` holds.
async fn eventually<F: Future<Output = bool>>(
    what: &str,
    synapse: &Synapse,
    mut check: impl FnMut() -> F,
) {
    for _ in 0..600 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never happened: {what}\nsynapse log:\n{}", synapse.log_tail());
}

#[tokio::test]
async fn palisade_and_synapse_share_rooms_both_ways() {
    let mut synapse = Synapse::start().await;
    let palisade = TestServer::start_federated().await;
    let alice = palisade.register("alice").await;
    let sam = synapse.register("sam").await;
    let post = reqwest::Method::POST;

    // Sam (Synapse) joins alice's room on Palisade.
    let room_on_palisade = palisade.create_room(&alice, json!({ "preset": "public_chat" })).await;
    let join = format!(
        "/_matrix/client/v3/join/{}?server_name={}",
        urlencode(&room_on_palisade),
        urlencode(palisade.server_name())
    );
    let (status, body) = synapse.call(post.clone(), &join, sam.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", synapse.log_tail());
    assert_eq!(synapse.send_text(&sam, &room_on_palisade, "sam to palisade").await, StatusCode::OK);
    eventually("alice sees sam's message", &synapse, || async {
        palisade.texts(&alice, &room_on_palisade).await.contains(&"sam to palisade".to_owned())
    })
    .await;
    palisade.send_text(&alice, &room_on_palisade, "alice to synapse").await;
    eventually("sam sees alice's message", &synapse, || async {
        synapse.texts(&sam, &room_on_palisade).await.contains(&"alice to synapse".to_owned())
    })
    .await;

    // Alice (Palisade) joins sam's room on Synapse.
    let (status, room) = synapse
        .call(
            post.clone(),
            "/_matrix/client/v3/createRoom",
            sam.token(),
            json!({ "preset": "public_chat" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{room}");
    let room_on_synapse = room["room_id"].as_str().unwrap().to_owned();
    synapse.send_text(&sam, &room_on_synapse, "before alice").await;
    let join = format!(
        "/_matrix/client/v3/join/{}?via={}",
        urlencode(&room_on_synapse),
        urlencode(&synapse.server_name)
    );
    let (status, body) = palisade.post(&join, alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", synapse.log_tail());
    palisade.send_text(&alice, &room_on_synapse, "alice in synapse's room").await;
    eventually("sam sees alice in his room", &synapse, || async {
        synapse.texts(&sam, &room_on_synapse).await.contains(&"alice in synapse's room".to_owned())
    })
    .await;
    synapse.send_text(&sam, &room_on_synapse, "sam answers").await;
    eventually("alice sees sam's answer", &synapse, || async {
        palisade.texts(&alice, &room_on_synapse).await.contains(&"sam answers".to_owned())
    })
    .await;

    // Invites both ways: alice invites sam to a private room, sam invites alice to his.
    let private = palisade
        .create_room(&alice, json!({ "preset": "private_chat", "invite": [sam.user_id] }))
        .await;
    let join = format!("/_matrix/client/v3/rooms/{}/join", urlencode(&private));
    eventually("sam accepts alice's invite", &synapse, || async {
        synapse.call(post.clone(), &join, sam.token(), json!({})).await.0 == StatusCode::OK
    })
    .await;
    synapse.send_text(&sam, &private, "sam accepted").await;
    eventually("alice hears from sam in the private room", &synapse, || async {
        palisade.texts(&alice, &private).await.contains(&"sam accepted".to_owned())
    })
    .await;
    let (status, room) = synapse
        .call(
            post.clone(),
            "/_matrix/client/v3/createRoom",
            sam.token(),
            json!({ "preset": "private_chat", "invite": [alice.user_id] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{room}\n{}", synapse.log_tail());
    let sams_private = room["room_id"].as_str().unwrap().to_owned();
    let join = format!("/_matrix/client/v3/rooms/{sams_private}/join");
    eventually("alice accepts sam's invite", &synapse, || async {
        palisade.post(&join, alice.token(), json!({})).await.0 == StatusCode::OK
    })
    .await;
    palisade.send_text(&alice, &sams_private, "alice accepted").await;
    eventually("sam hears from alice in his private room", &synapse, || async {
        synapse.texts(&sam, &sams_private).await.contains(&"alice accepted".to_owned())
    })
    .await;

    // Synapse goes down; Palisade queues alice's messages, is itself restarted, and delivers
    // them once Synapse is back.
    synapse.stop();
    palisade.send_text(&alice, &room_on_synapse, "queued for synapse").await;
    let config = palisade.config.clone();
    let dir = palisade.stop().await;
    synapse.run().await;
    let palisade = TestServer::start_on(config).await;
    eventually("sam gets what palisade queued", &synapse, || async {
        synapse.texts(&sam, &room_on_synapse).await.contains(&"queued for synapse".to_owned())
    })
    .await;
    drop(dir);
    drop(palisade);
}

#[tokio::test]
async fn rooms_of_older_versions_work_across_palisade_and_synapse() {
    let synapse = Synapse::start().await;
    let palisade = TestServer::start_federated().await;
    let alice = palisade.register("alice").await;
    let sam = synapse.register("sam").await;
    let post = reqwest::Method::POST;
    for version in ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"] {
        // Alice (Palisade) joins sam's room of that version on Synapse.
        let body = json!({ "preset": "public_chat", "room_version": version });
        let (status, room) =
            synapse.call(post.clone(), "/_matrix/client/v3/createRoom", sam.token(), body).await;
        assert_eq!(status, StatusCode::OK, "{room}");
        let on_synapse = room["room_id"].as_str().unwrap().to_owned();
        synapse.send_text(&sam, &on_synapse, &format!("v{version}: before alice")).await;
        let join = format!(
            "/_matrix/client/v3/join/{}?via={}",
            urlencode(&on_synapse),
            urlencode(&synapse.server_name)
        );
        // Under load either server may answer slowly; a join that failed is asked again.
        eventually("alice joins sam's room", &synapse, || async {
            palisade.post(&join, alice.token(), json!({})).await.0 == StatusCode::OK
        })
        .await;
        let text = format!("v{version}: alice on synapse");
        palisade.send_text(&alice, &on_synapse, &text).await;
        eventually("sam sees alice", &synapse, || async {
            synapse.texts(&sam, &on_synapse).await.contains(&text)
        })
        .await;

        // Sam (Synapse) joins alice's room of that version on Palisade.
        let body = json!({ "preset": "public_chat", "room_version": version });
        let on_palisade = palisade.create_room(&alice, body).await;
        let join = format!(
            "/_matrix/client/v3/join/{}?server_name={}",
            urlencode(&on_palisade),
            urlencode(palisade.server_name())
        );
        eventually("sam joins alice's room", &synapse, || async {
            synapse.call(post.clone(), &join, sam.token(), json!({})).await.0 == StatusCode::OK
        })
        .await;
        let text = format!("v{version}: sam on palisade");
        assert_eq!(synapse.send_text(&sam, &on_palisade, &text).await, StatusCode::OK);
        eventually("alice sees sam", &synapse, || async {
            palisade.texts(&alice, &on_palisade).await.contains(&text)
        })
        .await;
    }
}

/// Palisade and Synapse change the same state at once in rooms of each state resolution
/// algorithm: once the fork is merged, both resolve it to the same state.
#[tokio::test]
async fn palisade_and_synapse_resolve_concurrent_state_alike() {
    let synapse = Synapse::start().await;
    let palisade = TestServer::start_federated().await;
    let alice = palisade.register("alice").await;
    let sam = synapse.register("sam").await;
    let (get, put, post) = (reqwest::Method::GET, reqwest::Method::PUT, reqwest::Method::POST);
    for version in ["1", "2", "12"] {
        let body = json!({ "preset": "public_chat", "room_version": version });
        let room_id = palisade.create_room(&alice, body).await;
        let join = format!(
            "/_matrix/client/v3/join/{}?server_name={}",
            urlencode(&room_id),
            urlencode(palisade.server_name())
        );
        eventually("sam joins", &synapse, || async {
            synapse.call(post.clone(), &join, sam.token(), json!({})).await.0 == StatusCode::OK
        })
        .await;
        let room = urlencode(&room_id);
        let levels = format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/");
        let (_, mut power) = palisade.get(&levels, alice.token()).await;
        power["users"][&sam.user_id] = json!(100);
        let (status, body) = palisade.put(&levels, alice.token(), power.clone()).await;
        assert_eq!(status, StatusCode::OK, "v{version}: {body}");
        eventually("sam is an admin", &synapse, || async {
            let (_, seen) = synapse.call(get.clone(), &levels, sam.token(), Value::Null).await;
            seen["users"][&sam.user_id] == 100
        })
        .await;

        let topic = format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/");
        let (mut from_palisade, mut from_synapse) = (power.clone(), power);
        from_palisade["ban"] = json!(60);
        from_synapse["kick"] = json!(60);
        let (topic_p, topic_s, levels_p, levels_s) = tokio::join!(
            palisade.put(&topic, alice.token(), json!({ "topic": "P" })),
            synapse.call(put.clone(), &topic, sam.token(), json!({ "topic": "S" })),
            palisade.put(&levels, alice.token(), from_palisade),
            synapse.call(put.clone(), &levels, sam.token(), from_synapse),
        );
        for (status, body) in [topic_p, topic_s, levels_p, levels_s] {
            assert_eq!(status, StatusCode::OK, "v{version}: {body}");
        }
        let (after_p, after_s) = (format!("v{version}: P merged"), format!("v{version}: S merged"));
        palisade.send_text(&alice, &room_id, &after_p).await;
        synapse.send_text(&sam, &room_id, &after_s).await;
        eventually("both see both", &synapse, || async {
            palisade.texts(&alice, &room_id).await.contains(&after_s)
                && synapse.texts(&sam, &room_id).await.contains(&after_p)
        })
        .await;
        for path in [&topic, &levels] {
            let on_palisade = palisade.get(path, alice.token()).await.1;
            let on_synapse = synapse.call(get.clone(), path, sam.token(), Value::Null).await.1;
            assert_eq!(on_palisade, on_synapse, "v{version}: {path}");
        }
    }
}

/// Media crosses between Palisade and Synapse both ways over the authenticated federation
/// media endpoints: each server fetches the other's file for its own user, byte for byte.
#[tokio::test]
async fn media_crosses_between_palisade_and_synapse() {
    let synapse = Synapse::start().await;
    let palisade = TestServer::start_federated().await;
    let alice = palisade.register("alice").await;
    let sam = synapse.register("sam").await;
    let bytes = |seed: u32| -> Vec<u8> {
        (0..200_000u32).map(|i| (i.wrapping_mul(seed) >> 7) as u8).collect()
    };
    let upload = |base: String, token: String, body: Vec<u8>| async move {
        let response = reqwest::Client::new()
            .post(format!("{base}/_matrix/media/v3/upload?filename=data.bin"))
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let answer: Value = response.json().await.unwrap();
        answer["content_uri"].as_str().unwrap().trim_start_matches("mxc://").to_owned()
    };
    let download = |base: String, token: String, media: String| async move {
        reqwest::Client::new()
            .get(format!("{base}/_matrix/client/v1/media/download/{media}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    };

    // Sam's file, read by alice through Palisade.
    let from_sam = bytes(2_654_435_761);
    let on_synapse = upload(synapse.client.clone(), sam.token.clone(), from_sam.clone()).await;
    eventually("palisade fetches synapse's media", &synapse, || async {
        let response =
            download(palisade.base.clone(), alice.token.clone(), on_synapse.clone()).await;
        response.status() == StatusCode::OK
    })
    .await;
    let response = download(palisade.base.clone(), alice.token.clone(), on_synapse).await;
    assert!(response.bytes().await.unwrap() == from_sam, "palisade changed synapse's file");

    // Alice's file, read by sam through Synapse.
    let from_alice = bytes(40_503);
    let on_palisade = upload(palisade.base.clone(), alice.token.clone(), from_alice.clone()).await;
    eventually("synapse fetches palisade's media", &synapse, || async {
        let response =
            download(synapse.client.clone(), sam.token.clone(), on_palisade.clone()).await;
        response.status() == StatusCode::OK
    })
    .await;
    let response = download(synapse.client.clone(), sam.token.clone(), on_palisade).await;
    assert!(response.bytes().await.unwrap() == from_alice, "synapse changed palisade's file");
}

/// A user's membership in a room as `viewer` on Synapse sees it.
async fn synapse_membership(synapse: &Synapse, viewer: &User, room: &str, user: &str) -> Value {
    let path = format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
        urlencode(room),
        urlencode(user)
    );
    synapse.call(reqwest::Method::GET, &path, viewer.token(), Value::Null).await.1["membership"]
        .clone()
}

#[tokio::test]
async fn knocks_cross_between_palisade_and_synapse() {
    let synapse = Synapse::start().await;
    let palisade = TestServer::start_federated().await;
    let alice = palisade.register("alice").await;
    let sam = synapse.register("sam").await;
    let post = reqwest::Method::POST;
    let knock_rules = json!({
        "name": "Knock first",
        "initial_state": [{
            "type": "m.room.join_rules", "state_key": "", "content": { "join_rule": "knock" },
        }],
    });

    // Sam (Synapse) knocks on alice's room; alice lets him in.
    let on_palisade = palisade.create_room(&alice, knock_rules.clone()).await;
    let knock = format!(
        "/_matrix/client/v3/knock/{}?via={}",
        urlencode(&on_palisade),
        urlencode(palisade.server_name())
    );
    let (status, body) = synapse.call(post.clone(), &knock, sam.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", synapse.log_tail());
    let member = format!(
        "/_matrix/client/v3/rooms/{on_palisade}/state/m.room.member/{}",
        urlencode(&sam.user_id)
    );
    eventually("alice sees sam's knock", &synapse, || async {
        palisade.get(&member, alice.token()).await.1["membership"] == "knock"
    })
    .await;
    let invite = format!("/_matrix/client/v3/rooms/{on_palisade}/invite");
    let (status, body) =
        palisade.post(&invite, alice.token(), json!({ "user_id": sam.user_id })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let join = format!("/_matrix/client/v3/rooms/{}/join", urlencode(&on_palisade));
    eventually("sam joins once let in", &synapse, || async {
        synapse.call(post.clone(), &join, sam.token(), json!({})).await.0 == StatusCode::OK
    })
    .await;
    eventually("alice sees sam join", &synapse, || async {
        palisade.get(&member, alice.token()).await.1["membership"] == "join"
    })
    .await;

    // Alice (Palisade) knocks on sam's room; her server shows her the room Synapse described.
    let (status, room) =
        synapse.call(post.clone(), "/_matrix/client/v3/createRoom", sam.token(), knock_rules).await;
    assert_eq!(status, StatusCode::OK, "{room}");
    let on_synapse = room["room_id"].as_str().unwrap().to_owned();
    let knock = format!(
        "/_matrix/client/v3/knock/{}?via={}",
        urlencode(&on_synapse),
        urlencode(&synapse.server_name)
    );
    let (status, body) = palisade.post(&knock, alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", synapse.log_tail());
    let sync = palisade.sync(&alice, "timeout=0").await;
    let shown = sync["rooms"]["knock"][&on_synapse]["knock_state"]["events"].clone();
    let shown = shown.as_array().unwrap_or_else(|| panic!("no knock: {sync}"));
    assert!(shown.iter().any(|e| e["type"] == "m.room.create"), "{shown:?}");
    assert!(shown.iter().any(|e| e["content"]["name"] == "Knock first"), "{shown:?}");
    eventually("sam sees alice's knock", &synapse, || async {
        synapse_membership(&synapse, &sam, &on_synapse, &alice.user_id).await == "knock"
    })
    .await;
    let invite = format!("/_matrix/client/v3/rooms/{}/invite", urlencode(&on_synapse));
    let (status, body) =
        synapse.call(post.clone(), &invite, sam.token(), json!({ "user_id": alice.user_id })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let join = format!("/_matrix/client/v3/rooms/{}/join", urlencode(&on_synapse));
    eventually("alice joins once let in", &synapse, || async {
        palisade.post(&join, alice.token(), json!({})).await.0 == StatusCode::OK
    })
    .await;
    eventually("sam sees alice join", &synapse, || async {
        synapse_membership(&synapse, &sam, &on_synapse, &alice.user_id).await == "join"
    })
    .await;
}

#[tokio::test]
async fn room_upgrades_are_followed_across_palisade_and_synapse() {
    let synapse = Synapse::start().await;
    let palisade = TestServer::start_federated().await;
    let alice = palisade.register("alice").await;
    let sam = synapse.register("sam").await;
    let post = reqwest::Method::POST;
    let tombstone_of = |room: &str| {
        format!("/_matrix/client/v3/rooms/{}/state/m.room.tombstone/", urlencode(room))
    };

    // Alice upgrades her room with sam in it: sam sees the tombstone and joins the new room.
    let old = palisade
        .create_room(&alice, json!({ "preset": "public_chat", "room_version": "10" }))
        .await;
    let join = format!(
        "/_matrix/client/v3/join/{}?server_name={}",
        urlencode(&old),
        urlencode(palisade.server_name())
    );
    eventually("sam joins alice's room", &synapse, || async {
        synapse.call(post.clone(), &join, sam.token(), json!({})).await.0 == StatusCode::OK
    })
    .await;
    let path = format!("/_matrix/client/v3/rooms/{old}/upgrade");
    let (status, body) = palisade.post(&path, alice.token(), json!({ "new_version": "11" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let new = body["replacement_room"].as_str().unwrap().to_owned();
    eventually("sam sees the tombstone", &synapse, || async {
        let (status, tombstone) =
            synapse.call(reqwest::Method::GET, &tombstone_of(&old), sam.token(), Value::Null).await;
        status == StatusCode::OK && tombstone["replacement_room"] == new.as_str()
    })
    .await;
    let join = format!(
        "/_matrix/client/v3/join/{}?server_name={}",
        urlencode(&new),
        urlencode(palisade.server_name())
    );
    let (status, body) = synapse.call(post.clone(), &join, sam.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Sam upgrades his room with alice in it: alice's server shows her the tombstone and the
    // new room's predecessor, and she follows.
    let (status, room) = synapse
        .call(
            post.clone(),
            "/_matrix/client/v3/createRoom",
            sam.token(),
            json!({ "preset": "public_chat", "room_version": "10" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{room}");
    let old = room["room_id"].as_str().unwrap().to_owned();
    let join = format!(
        "/_matrix/client/v3/join/{}?via={}",
        urlencode(&old),
        urlencode(&synapse.server_name)
    );
    let (status, body) = palisade.post(&join, alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let path = format!("/_matrix/client/v3/rooms/{}/upgrade", urlencode(&old));
    let (status, body) =
        synapse.call(post.clone(), &path, sam.token(), json!({ "new_version": "11" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let new = body["replacement_room"].as_str().unwrap().to_owned();
    eventually("alice sees the tombstone", &synapse, || async {
        let (status, tombstone) = palisade.get(&tombstone_of(&old), alice.token()).await;
        status == StatusCode::OK && tombstone["replacement_room"] == new.as_str()
    })
    .await;
    let join = format!(
        "/_matrix/client/v3/join/{}?via={}",
        urlencode(&new),
        urlencode(&synapse.server_name)
    );
    let (status, body) = palisade.post(&join, alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let create = format!("/_matrix/client/v3/rooms/{}/state/m.room.create/", urlencode(&new));
    let (_, create) = palisade.get(&create, alice.token()).await;
    assert_eq!(create["predecessor"]["room_id"], old, "{create}");
}

#[tokio::test]
async fn space_trees_span_palisade_and_synapse() {
    let synapse = Synapse::start().await;
    let palisade = TestServer::start_federated().await;
    let alice = palisade.register("alice").await;
    let sam = synapse.register("sam").await;
    let (post, put, get) = (reqwest::Method::POST, reqwest::Method::PUT, reqwest::Method::GET);
    let create = |name: &str, space: bool| {
        let mut body = json!({ "preset": "public_chat", "name": name });
        if space {
            body["creation_content"] = json!({ "type": "m.space" });
        }
        body
    };
    // Sam's space on Synapse with a room only Synapse is in: alice, in the space alone, sees
    // the room through Synapse's federation `/hierarchy`.
    let mut ids = Vec::new();
    for (name, space) in [("Sam's space", true), ("Sam's room", false)] {
        let (status, room) = synapse
            .call(post.clone(), "/_matrix/client/v3/createRoom", sam.token(), create(name, space))
            .await;
        assert_eq!(status, StatusCode::OK, "{room}");
        ids.push(room["room_id"].as_str().unwrap().to_owned());
    }
    let child = format!(
        "/_matrix/client/v3/rooms/{}/state/m.space.child/{}",
        urlencode(&ids[0]),
        urlencode(&ids[1])
    );
    let via = json!({ "via": [synapse.server_name] });
    let (status, body) = synapse.call(put.clone(), &child, sam.token(), via).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let join = format!(
        "/_matrix/client/v3/join/{}?via={}",
        urlencode(&ids[0]),
        urlencode(&synapse.server_name)
    );
    let (status, body) = palisade.post(&join, alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let path = format!("/_matrix/client/v1/rooms/{}/hierarchy", urlencode(&ids[0]));
    let (status, page) = palisade.get(&path, alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{page}\n{}", synapse.log_tail());
    assert_eq!(crate::spaces::names(&page), ["Sam's space", "Sam's room"]);

    // Alice's space on Palisade with a room only Palisade is in: Synapse asks Palisade.
    let space = palisade.create_room(&alice, create("Alice's space", true)).await;
    let room = palisade.create_room(&alice, create("Alice's room", false)).await;
    let child =
        format!("/_matrix/client/v3/rooms/{space}/state/m.space.child/{}", urlencode(&room));
    let (status, body) =
        palisade.put(&child, alice.token(), json!({ "via": [palisade.server_name()] })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let join = format!(
        "/_matrix/client/v3/join/{}?server_name={}",
        urlencode(&space),
        urlencode(palisade.server_name())
    );
    eventually("sam joins alice's space", &synapse, || async {
        synapse.call(post.clone(), &join, sam.token(), json!({})).await.0 == StatusCode::OK
    })
    .await;
    let path = format!("/_matrix/client/v1/rooms/{}/hierarchy", urlencode(&space));
    let (status, page) = synapse.call(get.clone(), &path, sam.token(), Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        crate::spaces::names(&page),
        ["Alice's space", "Alice's room"],
        "{}",
        synapse.log_tail()
    );
}

#[tokio::test]
async fn restricted_rooms_are_joined_across_palisade_and_synapse() {
    let synapse = Synapse::start().await;
    let palisade = TestServer::start_federated().await;
    let alice = palisade.register("alice").await;
    let sam = synapse.register("sam").await;
    let post = reqwest::Method::POST;
    let space = json!({ "preset": "public_chat", "creation_content": { "type": "m.space" } });
    let restricted = |space: &str| {
        json!({
            "room_version": "10",
            "initial_state": [{
                "type": "m.room.join_rules", "state_key": "",
                "content": { "join_rule": "restricted", "allow": [{ "type": "m.room_membership", "room_id": space }] },
            }],
        })
    };

    // Sam's space and restricted room on Synapse: alice joins the space, then the room,
    // which Synapse authorises.
    let (status, created) = synapse
        .call(post.clone(), "/_matrix/client/v3/createRoom", sam.token(), space.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let sams_space = created["room_id"].as_str().unwrap().to_owned();
    let (status, created) = synapse
        .call(post.clone(), "/_matrix/client/v3/createRoom", sam.token(), restricted(&sams_space))
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let sams_room = created["room_id"].as_str().unwrap().to_owned();
    let join = |room: &str| {
        format!(
            "/_matrix/client/v3/join/{}?via={}",
            urlencode(room),
            urlencode(&synapse.server_name)
        )
    };
    let refused = palisade.post(&join(&sams_room), alice.token(), json!({})).await;
    assert_eq!(refused.0, StatusCode::FORBIDDEN, "{}", refused.1);
    let (status, body) = palisade.post(&join(&sams_space), alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = palisade.post(&join(&sams_room), alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", synapse.log_tail());
    palisade.send_text(&alice, &sams_room, "alice through the space").await;
    eventually("sam hears alice in the restricted room", &synapse, || async {
        synapse.texts(&sam, &sams_room).await.contains(&"alice through the space".to_owned())
    })
    .await;

    // Alice's space and restricted room on Palisade: sam joins the space, then the room,
    // which Palisade authorises and signs for Synapse to accept.
    let alices_space = palisade.create_room(&alice, space).await;
    let alices_room = palisade.create_room(&alice, restricted(&alices_space)).await;
    let join = |room: &str| {
        format!(
            "/_matrix/client/v3/join/{}?server_name={}",
            urlencode(room),
            urlencode(palisade.server_name())
        )
    };
    let (status, body) =
        synapse.call(post.clone(), &join(&alices_space), sam.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) =
        synapse.call(post.clone(), &join(&alices_room), sam.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", synapse.log_tail());
    assert_eq!(
        synapse.send_text(&sam, &alices_room, "sam through the space").await,
        StatusCode::OK
    );
    eventually("alice hears sam in the restricted room", &synapse, || async {
        palisade.texts(&alice, &alices_room).await.contains(&"sam through the space".to_owned())
    })
    .await;
}
