//! Palisade's domain: accounts, devices, user-interactive auth, rate limits and (as they land)
//! rooms, the event pipeline and sync.
//!
//! Services take their stores from `palisade-storage` and their clock from `palisade-core`. They
//! know nothing of HTTP (no axum) or SQL (no rusqlite): the API layer calls them, tests can too.

pub mod accounts;
pub mod keys;
pub mod ratelimit;
pub mod rooms;
pub mod uia;

use std::sync::Arc;

use palisade_core::{Clock, Config, Result};
use palisade_storage::Stores;

pub use accounts::{AccountService, Session};
pub use keys::SigningKey;
pub use ratelimit::{RateLimitedAction, RateLimiter};
pub use rooms::{EventTemplate, RoomService};
pub use uia::{UiaAuth, UiaPurpose, UiaService};

/// Every service of one running server. Built once at start-up and passed explicitly.
#[derive(Clone)]
pub struct Services {
    /// The configuration the server runs with.
    pub config: Arc<Config>,
    /// Users, passwords, devices and access tokens.
    pub accounts: Arc<AccountService>,
    /// User-interactive authentication sessions.
    pub uia: Arc<UiaService>,
    /// Per-address rate limits.
    pub rate_limiter: Arc<RateLimiter>,
    /// Rooms, events and the event pipeline.
    pub rooms: Arc<RoomService>,
    /// The server's signing key.
    pub signing_key: Arc<SigningKey>,
    /// The clock every service reads.
    pub clock: Arc<dyn Clock>,
}

impl Services {
    /// Wires the services over `stores`, signing with `signing_key`.
    pub async fn new(
        config: Config,
        stores: Stores,
        signing_key: SigningKey,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        let config = Arc::new(config);
        let accounts =
            Arc::new(AccountService::new(config.clone(), stores.accounts.clone(), clock.clone()));
        let uia = Arc::new(UiaService::new(accounts.clone(), clock.clone()));
        let rate_limiter = Arc::new(RateLimiter::new(config.rate_limits.clone(), clock.clone()));
        let signing_key = Arc::new(signing_key);
        let rooms = Arc::new(
            RoomService::new(
                config.clone(),
                stores.rooms,
                accounts.clone(),
                signing_key.clone(),
                clock.clone(),
            )
            .await?,
        );
        Ok(Self { config, accounts, uia, rate_limiter, rooms, signing_key, clock })
    }
}
