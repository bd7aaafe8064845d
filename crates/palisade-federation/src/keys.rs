//! Other servers' signing keys: fetched from the server itself (or, failing that, from trusted
//! notaries), checked against the document's own signatures, and kept in storage so that old
//! events stay verifiable after a server rotates its key.
//!
//! Spec: <https://spec.matrix.org/v1.19/server-server-api/#retrieving-server-keys>

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use palisade_core::{Clock, Error, ErrorKind, Result};
use palisade_service::SigningKey;
use palisade_storage::{FederationStore, ServerKeyRow};
use ruma::{
    CanonicalJsonObject, OwnedServerName, ServerName,
    api::federation::discovery::{
        ServerSigningKeys, get_remote_server_keys_batch, get_server_keys,
    },
    serde::{Base64, Raw},
    signatures::PublicKeyMap,
};

use crate::client::FederationClient;

/// Least time between two fetches of one server's keys for the same missing key id: a key id
/// the server never published does not make this server ask again and again, while a key it
/// has just rotated to is fetched at once.
const REFETCH_INTERVAL_MS: u64 = 30_000;
/// Least time between any two fetches of one server's keys, whatever key ids requests name
/// (anyone can name new ones without a valid signature).
const PER_SERVER_INTERVAL_MS: u64 = 2_000;
/// Most (server, key id) fetches remembered at once; past it, nothing more is fetched until
/// entries age out.
const MAX_TRACKED_FETCHES: usize = 10_000;
/// Longest a fetched key is trusted before it must be fetched again (spec: seven days).
const MAX_KEY_VALIDITY_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// Every server's verify keys this server knows of, and the means to learn more.
pub struct KeyRing {
    origin: OwnedServerName,
    own: Arc<SigningKey>,
    store: Arc<dyn FederationStore>,
    client: Arc<FederationClient>,
    notaries: Vec<OwnedServerName>,
    clock: Arc<dyn Clock>,
    /// When keys were last fetched, per server and the key id that was missing ("" for
    /// any key).
    last_fetch: Mutex<HashMap<(OwnedServerName, String), u64>>,
}

impl KeyRing {
    /// A key ring for this server (`origin`, signing with `own`).
    pub fn new(
        origin: OwnedServerName,
        own: Arc<SigningKey>,
        store: Arc<dyn FederationStore>,
        client: Arc<FederationClient>,
        notaries: Vec<OwnedServerName>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { origin, own, store, client, notaries, clock, last_fetch: Mutex::new(HashMap::new()) }
    }

    /// Public keys for verifying signatures of each of `servers`, made at time `at` (ms): for
    /// each server, the keys valid then, fetched if `key_ids` names one not known yet.
    pub async fn public_keys(
        &self,
        servers: impl IntoIterator<Item = (OwnedServerName, Vec<String>)>,
        at: u64,
    ) -> Result<PublicKeyMap> {
        let mut map = PublicKeyMap::new();
        for (server, key_ids) in servers {
            let keys = self.keys_of(&server, &key_ids, at).await?;
            map.insert(server.to_string(), keys);
        }
        Ok(map)
    }

    /// One server's keys valid at `at`, fetching when one of `key_ids` is missing.
    async fn keys_of(
        &self,
        server: &ServerName,
        key_ids: &[String],
        at: u64,
    ) -> Result<BTreeMap<String, Base64>> {
        if server == self.origin {
            let key = Base64::parse(self.own.public_key_base64())
                .map_err(|e| Error::internal(e.to_string()))?;
            return Ok(BTreeMap::from([(self.own.key_id(), key)]));
        }
        let mut rows = self.store.server_keys(server).await?;
        if let Some(key_id) = lacking(&rows, key_ids, at)
            && self.may_fetch(server, &key_id)
        {
            match self.fetch(server).await {
                Ok(()) => rows = self.store.server_keys(server).await?,
                Err(error) => tracing::info!(%server, %error, "fetching server keys failed"),
            }
        }
        Ok(rows
            .into_iter()
            .filter(|row| row.valid_until_ts >= at)
            .filter_map(|row| Some((row.key_id, Base64::parse(row.public_key).ok()?)))
            .collect())
    }

    /// Whether to fetch `server`'s keys now for `key_id` ("" for any key), and notes it.
    fn may_fetch(&self, server: &ServerName, key_id: &str) -> bool {
        let now = self.clock.now_millis();
        let mut last = self.last_fetch.lock().expect("key ring poisoned");
        // Any origin can make this server fetch keys: forget old entries rather than grow.
        if last.len() >= MAX_TRACKED_FETCHES {
            last.retain(|_, at| now.saturating_sub(*at) < REFETCH_INTERVAL_MS);
            if last.len() >= MAX_TRACKED_FETCHES {
                return false;
            }
        }
        let recent = |entry: &(OwnedServerName, String), interval: u64| {
            last.get(entry).is_some_and(|at| now.saturating_sub(*at) < interval)
        };
        let any = (server.to_owned(), String::new());
        let this = (server.to_owned(), key_id.to_owned());
        if recent(&any, PER_SERVER_INTERVAL_MS) || recent(&this, REFETCH_INTERVAL_MS) {
            return false;
        }
        last.insert(any, now);
        last.insert(this, now);
        true
    }

    /// Fetches a server's keys from the server itself, then from each notary in turn.
    async fn fetch(&self, server: &ServerName) -> Result<()> {
        let direct = match self.client.send(server, get_server_keys::v2::Request::new()).await {
            Ok(response) => self.accept(server, &response.server_key, None).await,
            Err(error) => Err(error),
        };
        let Err(mut error) = direct else { return Ok(()) };
        for notary in &self.notaries {
            let criteria = BTreeMap::from([(server.to_owned(), BTreeMap::new())]);
            let request = get_remote_server_keys_batch::v2::Request::new(criteria);
            let result = match self.client.send(notary, request).await {
                Ok(response) => {
                    let mut accepted = Err(Error::not_found("The notary knows no keys"));
                    for document in &response.server_keys {
                        accepted = self.accept(server, document, Some(notary)).await;
                    }
                    accepted
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(e) => error = e,
            }
        }
        Err(error)
    }

    /// Checks a key document (signed by the server, and by the notary it came through) and
    /// stores its keys.
    async fn accept(
        &self,
        server: &ServerName,
        document: &Raw<ServerSigningKeys>,
        notary: Option<&ServerName>,
    ) -> Result<()> {
        let invalid = |why: String| Error::new(ErrorKind::InvalidSignature, why);
        let keys = document.deserialize().map_err(|e| invalid(format!("key document: {e}")))?;
        if keys.server_name != server {
            return Err(invalid(format!("asked for {server}'s keys, got {}'s", keys.server_name)));
        }
        let object: CanonicalJsonObject = serde_json::from_str(document.json().get())
            .map_err(|e| invalid(format!("key document: {e}")))?;
        let own: BTreeMap<String, Base64> =
            keys.verify_keys.iter().map(|(id, key)| (id.to_string(), key.key.clone())).collect();
        let mut map = PublicKeyMap::from([(server.to_string(), own)]);
        if let Some(notary) = notary {
            let notary_keys = Box::pin(self.keys_of(notary, &[], self.clock.now_millis())).await?;
            map.insert(notary.to_string(), notary_keys);
        }
        // verify_json checks the signatures present; the ones that must be there are checked
        // to be there.
        let signers: Vec<&str> =
            std::iter::once(server.as_str()).chain(notary.map(|n| n.as_str())).collect();
        for signer in signers {
            let signed = matches!(
                object.get("signatures"),
                Some(ruma::CanonicalJsonValue::Object(s)) if s.contains_key(signer)
            );
            if !signed {
                return Err(invalid(format!("{server}'s key document is not signed by {signer}")));
            }
        }
        ruma::signatures::verify_json(&map, &object)
            .map_err(|e| invalid(format!("{server}'s key document: {e}")))?;

        // Room versions from 5 on trust a key for at most a week from when it is fetched.
        let valid_until =
            u64::from(keys.valid_until_ts.0).min(self.clock.now_millis() + MAX_KEY_VALIDITY_MS);
        let json = document.json().get().to_owned();
        let row = |key_id: String, key: &Base64, valid_until_ts: u64| ServerKeyRow {
            server_name: server.to_owned(),
            key_id,
            public_key: key.encode(),
            valid_until_ts,
            document: json.clone(),
        };
        let mut rows: Vec<ServerKeyRow> = keys
            .verify_keys
            .iter()
            .map(|(id, key)| row(id.to_string(), &key.key, valid_until))
            .collect();
        rows.extend(
            keys.old_verify_keys
                .iter()
                .map(|(id, old)| row(id.to_string(), &old.key, u64::from(old.expired_ts.0))),
        );
        self.store.store_server_keys(rows).await
    }

    /// Key documents for a notary answer: this server's own, or the ones stored for `server`
    /// (fetched first if none are), each countersigned by this server.
    pub async fn notarised_documents(
        &self,
        server: &ServerName,
    ) -> Result<Vec<Raw<ServerSigningKeys>>> {
        let now = self.clock.now_millis();
        if server == self.origin {
            return Ok(vec![self.own.server_key_document(server.as_str(), now)?]);
        }
        let mut rows = self.store.server_keys(server).await?;
        if let Some(any) = lacking(&rows, &[], now)
            && self.may_fetch(server, &any)
        {
            if let Err(error) = self.fetch(server).await {
                tracing::info!(%server, %error, "fetching server keys for a notary query failed");
            }
            rows = self.store.server_keys(server).await?;
        }
        let mut documents: Vec<String> = rows.into_iter().map(|row| row.document).collect();
        documents.sort();
        documents.dedup();
        documents
            .iter()
            .map(|document| {
                let mut object: CanonicalJsonObject = serde_json::from_str(document)
                    .map_err(|e| Error::internal(format!("stored key document: {e}")))?;
                ruma::signatures::sign_json(self.origin.as_str(), self.own.pair(), &mut object)
                    .map_err(|e| Error::internal(format!("countersigning keys: {e}")))?;
                serde_json::value::to_raw_value(&object)
                    .map(Raw::from_json)
                    .map_err(|e| Error::internal(e.to_string()))
            })
            .collect()
    }
}

/// The key id `rows` lack for a signature made at `at`: `None` when they have every one of
/// `key_ids`, `""` when `key_ids` is empty (any key will do) and none is valid then.
fn lacking(rows: &[ServerKeyRow], key_ids: &[String], at: u64) -> Option<String> {
    let valid = |row: &ServerKeyRow| row.valid_until_ts >= at;
    match key_ids {
        [] => (!rows.iter().any(valid)).then(String::new),
        ids => {
            ids.iter().find(|id| !rows.iter().any(|row| &row.key_id == *id && valid(row))).cloned()
        }
    }
}
