//! Federation: other servers' signing keys.

use async_trait::async_trait;
use palisade_core::Result;
use ruma::{OwnedEventId, OwnedServerName, ServerName};

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

/// The stream a batch of queued items was read from, and how far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueuedUpTo {
    /// The event stream, up to this position.
    Events(u64),
    /// The device-list stream, up to this position.
    DeviceLists(u64),
    /// Items that follow no stream (typing, receipts, to-device messages).
    Nothing,
}

/// Something waiting to be sent to another server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// Queue position (also orders the sends).
    pub id: u64,
    /// The destination server.
    pub destination: OwnedServerName,
    /// A PDU, by event id.
    pub pdu: Option<OwnedEventId>,
    /// An EDU, as JSON.
    pub edu: Option<String>,
}

/// Other servers' keys, kept across restarts so old events stay verifiable, and the outbound
/// queue, kept so nothing acknowledged to a local client is lost while a peer is down.
#[async_trait]
pub trait FederationStore: Send + Sync {
    /// The event stream position up to which local events have been queued for other servers.
    async fn outbox_position(&self) -> Result<u64>;
    /// The device-list stream position up to which changes have been queued.
    async fn device_list_position(&self) -> Result<u64>;
    /// Queues PDUs and EDUs (`(destination, pdu, edu)`) and records how far the stream they
    /// were read from has been queued, in one transaction.
    async fn enqueue(
        &self,
        items: Vec<(OwnedServerName, Option<OwnedEventId>, Option<String>)>,
        up_to: QueuedUpTo,
    ) -> Result<()>;
    /// The oldest queued items for a destination.
    async fn outbox(&self, destination: &ServerName, limit: usize) -> Result<Vec<OutboxRow>>;
    /// Removes sent items.
    async fn outbox_sent(&self, ids: Vec<u64>) -> Result<()>;
    /// Destinations with queued items.
    async fn outbox_destinations(&self) -> Result<Vec<OwnedServerName>>;
    /// Stores keys; a key already known keeps the latest `valid_until_ts` and its document.
    async fn store_server_keys(&self, keys: Vec<ServerKeyRow>) -> Result<()>;
    /// The keys known for a server.
    async fn server_keys(&self, server: &ServerName) -> Result<Vec<ServerKeyRow>>;
}
