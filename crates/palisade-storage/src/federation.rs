//! Federation: other servers' signing keys.

use async_trait::async_trait;
use palisade_core::Result;
use ruma::{OwnedServerName, ServerName};

/// One signing key of another server, with the signed document it came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerKeyRow {
    /// The server the key belongs to.
    pub server_name: OwnedServerName,
    /// The key id, `ed25519:<version>`.
    pub key_id: String,
    /// The public key, unpadded base64.
    pub public_key: String,
    /// Until when signatures made with it are valid (ms since the epoch); for an old key, when
    /// it stopped being used.
    pub valid_until_ts: u64,
    /// The server's key document (`/_matrix/key/v2/server`) the key was taken from, as
    /// received, so this server can serve it again as a notary.
    pub document: String,
}

/// Other servers' keys, kept across restarts so old events stay verifiable.
#[async_trait]
pub trait FederationStore: Send + Sync {
    /// Stores keys; a key already known keeps the latest `valid_until_ts` and its document.
    async fn store_server_keys(&self, keys: Vec<ServerKeyRow>) -> Result<()>;
    /// The keys known for a server.
    async fn server_keys(&self, server: &ServerName) -> Result<Vec<ServerKeyRow>>;
}
