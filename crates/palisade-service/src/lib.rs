//! Palisade's domain: accounts, devices, user-interactive auth, rate limits and (as they land)
//! rooms, the event pipeline and sync.
//!
//! Services take their stores from `palisade-storage` and their clock from `palisade-core`. They
//! know nothing of HTTP (no axum) or SQL (no rusqlite): the API layer calls them, tests can too.

pub mod accounts;
pub mod ratelimit;
pub mod uia;

use std::sync::Arc;

use palisade_core::{Clock, Config};
use palisade_storage::Stores;

pub use accounts::{AccountService, Session};
pub use ratelimit::{RateLimitedAction, RateLimiter};
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
}

impl Services {
    /// Wires the services over `stores`.
    pub fn new(config: Config, stores: Stores, clock: Arc<dyn Clock>) -> Self {
        let config = Arc::new(config);
        let accounts =
            Arc::new(AccountService::new(config.clone(), stores.accounts.clone(), clock.clone()));
        let uia = Arc::new(UiaService::new(accounts.clone(), clock.clone()));
        let rate_limiter = Arc::new(RateLimiter::new(config.rate_limits.clone(), clock));
        Self { config, accounts, uia, rate_limiter }
    }
}
