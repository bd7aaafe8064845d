//! Federation: how Palisade talks to other Matrix servers (the Server-Server API's logic).
//!
//! The HTTP handlers in `palisade-api` stay thin and call into [`Federation`]; this crate owns
//! outbound requests ([`client`]), other servers' keys ([`keys`]) and the policy hook
//! ([`policy`]). It never touches SQL: storage comes through `palisade-storage` traits.

pub mod client;
mod devices;
mod edus;
mod events;
pub mod keys;
mod media;
pub mod membership;
mod outbound;
mod pdu;
pub mod policy;
pub mod query;
pub mod sender;
mod transactions;

use std::sync::Arc;

use palisade_core::{Error, ErrorKind, Result};
use palisade_service::Services;
use palisade_storage::FederationStore;
use ruma::{
    OwnedServerName,
    api::{auth_scheme::AuthScheme, federation::authentication::ServerSignatures},
};

pub use client::FederationClient;
pub use keys::KeyRing;
pub use policy::{OpenFederation, ServerPolicy};
pub use sender::Sender;

/// Everything federation needs, built once at start-up.
pub struct Federation {
    /// The server's services (rooms, accounts, …).
    services: Services,
    /// Outbound requests.
    pub client: Arc<FederationClient>,
    /// Other servers' keys.
    pub keys: Arc<KeyRing>,
    /// The outbound queue.
    pub sender: Arc<Sender>,
    policy: Arc<dyn ServerPolicy>,
    /// Inbound transactions in progress.
    inbound: transactions::Inbound,
    /// The latest transactions received, with their answers.
    recent_transactions: std::sync::Mutex<
        std::collections::VecDeque<(
            (ruma::OwnedServerName, String),
            transactions::TransactionResults,
        )>,
    >,
}

impl Federation {
    /// Wires federation over the server's services, federating under `policy`.
    pub fn new(
        services: Services,
        store: Arc<dyn FederationStore>,
        policy: Arc<dyn ServerPolicy>,
    ) -> Result<Self> {
        let config = services.config.clone();
        let client =
            Arc::new(FederationClient::new(&config, services.signing_key.clone(), policy.clone())?);
        let keys = Arc::new(KeyRing::new(
            config.server_name.clone(),
            services.signing_key.clone(),
            store.clone(),
            client.clone(),
            config.federation.trusted_key_servers.clone(),
            services.clock.clone(),
        ));
        let sender =
            Arc::new(Sender::new(config.server_name.clone(), &services, store, client.clone()));
        let recent_transactions = std::sync::Mutex::new(std::collections::VecDeque::with_capacity(
            transactions::RECENT_TRANSACTIONS,
        ));
        let inbound = transactions::Inbound::default();
        Ok(Self { services, client, keys, sender, policy, inbound, recent_transactions })
    }

    /// Starts sending to other servers, when federation is on.
    pub async fn start(&self) -> Result<()> {
        if self.services.config.listen.federation.is_some() {
            self.sender.start().await?;
        }
        Ok(())
    }

    /// Stops sending (what is queued stays queued).
    pub fn stop(&self) {
        self.sender.stop();
    }

    /// Checks a request's `X-Matrix` signature and returns the server that sent it: `401` when
    /// the signature is missing or wrong, `403` when policy refuses the server.
    pub async fn authenticate<T: AsRef<[u8]>>(
        &self,
        request: &http::Request<T>,
    ) -> Result<OwnedServerName> {
        let unauthorized = |why: String| Error::new(ErrorKind::Unauthorized, why);
        let header = ServerSignatures::extract_authentication(request)
            .map_err(|e| unauthorized(format!("Invalid X-Matrix authorization: {e}")))?;
        if !self.policy.may_federate(&header.origin) {
            return Err(Error::forbidden(format!(
                "Federation with {} is not allowed",
                header.origin
            )));
        }
        let origin = header.origin.clone();
        let keys = self
            .keys
            .public_keys(
                [(origin.clone(), vec![header.key.to_string()])],
                self.services.clock.now_millis(),
            )
            .await?;
        header.verify_request(request, &self.services.config.server_name, &keys).map_err(|e| {
            unauthorized(format!("Request signature of {origin} does not verify: {e}"))
        })?;
        self.sender.peer_is_up(&origin);
        Ok(origin)
    }
}
