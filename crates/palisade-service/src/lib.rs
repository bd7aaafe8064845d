//! Palisade's domain: accounts, devices, user-interactive auth, rate limits and (as they land)
//! rooms, the event pipeline and sync.
//!
//! Services take their stores from `palisade-storage` and their clock from `palisade-core`. They
//! know nothing of HTTP (no axum) or SQL (no rusqlite): the API layer calls them, tests can too.

pub mod account_data;
pub mod accounts;
pub mod calls;
pub mod e2ee;
mod events;
pub mod keys;
pub mod notices;
pub mod notify;
pub mod outbound;
pub mod presence;
pub mod push;
pub mod ratelimit;
pub mod receipts;
pub mod reports;
pub mod rooms;
pub mod sync;
pub mod trust;
pub mod typing;
pub mod uia;

use std::sync::Arc;

use palisade_core::{Clock, Config, Result};
use palisade_storage::Stores;

use crate::{
    notices::{NoticeQueue, ServerNoticeService},
    notify::Notifier,
    outbound::OutboundSlot,
};

pub use account_data::AccountDataService;
pub use accounts::{
    AccountService, ClientInfo, Refresh, Refreshed, Registered, Registration, Session,
};
pub use calls::CallService;
pub use e2ee::E2eeService;
pub use keys::SigningKey;
pub use presence::PresenceService;
use push::PushRuleEvaluator;
pub use push::PushService;
pub use ratelimit::{RateLimitedAction, RateLimiter};
pub use receipts::ReceiptService;
pub use reports::ReportService;
pub use rooms::{
    DirectoryService, EventTemplate, MembershipService, RemoteRoomService, RoomService,
};
pub use sync::SyncService;
pub use trust::DeviceTrustService;
pub use typing::TypingService;
pub use uia::{UiaAuth, UiaPurpose};

/// Every service of one running server. Built once at start-up and passed explicitly.
#[derive(Clone)]
pub struct Services {
    /// The configuration the server runs with.
    pub config: Arc<Config>,
    /// Users, passwords, devices and access tokens.
    pub accounts: Arc<AccountService>,
    /// Per-address rate limits.
    pub rate_limiter: Arc<RateLimiter>,
    /// Rooms, events and the event pipeline.
    pub rooms: Arc<RoomService>,
    /// What other servers ask of and send into the rooms.
    pub remote_rooms: Arc<RemoteRoomService>,
    /// Room aliases and the public room directory.
    pub directory: Arc<DirectoryService>,
    /// Creating rooms and who is in them.
    pub membership: Arc<MembershipService>,
    /// The server's signing key.
    pub signing_key: Arc<SigningKey>,
    /// The clock every service reads.
    pub clock: Arc<dyn Clock>,
    /// Account data, filters, tags and push rules.
    pub account_data: Arc<AccountDataService>,
    /// Read receipts and markers.
    pub receipts: Arc<ReceiptService>,
    /// Typing notifications.
    pub typing: Arc<TypingService>,
    /// `/sync`.
    pub sync: Arc<SyncService>,
    /// End-to-end encryption keys, to-device messages and key backup.
    pub e2ee: Arc<E2eeService>,
    /// Device trust decisions and the security audit log.
    pub trust: Arc<DeviceTrustService>,
    /// Server notices to users.
    pub notices: Arc<ServerNoticeService>,
    /// Security notices waiting to be posted.
    pub notice_queue: NoticeQueue,
    /// What users say about their presence.
    pub presence: Arc<PresenceService>,
    /// Pushers, notifications and their delivery to push gateways.
    pub push: Arc<PushService>,
    /// Reports of abuse, for the administrators.
    pub reports: Arc<ReportService>,
    /// What calls need: TURN credentials.
    pub calls: Arc<CallService>,
    /// Where federation connects the port the services reach other servers through.
    pub outbound: OutboundSlot,
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
        let notifier = Arc::new(Notifier::default());
        let (notice_queue, notice_receiver) = NoticeQueue::new();
        let trust = Arc::new(DeviceTrustService::new(
            &config,
            stores.accounts.clone(),
            stores.e2ee.clone(),
            stores.audit,
            notifier.clone(),
            clock.clone(),
            config.device_trust.notify_user.then(|| notice_queue.clone()),
        ));
        let outbound = OutboundSlot::default();
        let accounts = Arc::new(AccountService::new(
            config.clone(),
            stores.accounts.clone(),
            trust.clone(),
            clock.clone(),
            outbound.clone(),
        ));
        let rate_limiter = Arc::new(RateLimiter::new(config.rate_limits.clone(), clock.clone()));
        let signing_key = Arc::new(signing_key);
        let rooms = Arc::new(
            RoomService::new(
                config.clone(),
                stores.rooms.clone(),
                accounts.clone(),
                trust.clone(),
                signing_key.clone(),
                clock.clone(),
                notifier.clone(),
                outbound.clone(),
            )
            .await?,
        );
        let remote_rooms = Arc::new(RemoteRoomService::new(rooms.clone()));
        let directory = Arc::new(DirectoryService::new(rooms.clone()));
        let account_data =
            Arc::new(AccountDataService::new(stores.user_data, notifier.clone(), trust.clone()));
        let membership = Arc::new(MembershipService::new(
            rooms.clone(),
            directory.clone(),
            account_data.clone(),
        ));
        let receipts = Arc::new(ReceiptService::new(
            stores.receipts,
            rooms.clone(),
            account_data.clone(),
            notifier.clone(),
            clock.clone(),
        ));
        let typing = Arc::new(TypingService::new(clock.clone(), rooms.clone()));
        let notices_user = accounts.new_user_id(&config.server_notices_user)?;
        let notices = Arc::new(ServerNoticeService::new(
            notices_user,
            rooms.clone(),
            membership.clone(),
            accounts.clone(),
            account_data.clone(),
        ));
        notices.clone().start(notice_receiver);
        let e2ee = Arc::new(E2eeService::new(
            stores.e2ee,
            rooms.clone(),
            accounts.clone(),
            notifier.clone(),
            trust.clone(),
            outbound.clone(),
        ));
        let push_rules =
            Arc::new(PushRuleEvaluator::new(rooms.clone(), accounts.clone(), account_data.clone()));
        let push = Arc::new(PushService::new(
            stores.push,
            rooms.clone(),
            receipts.clone(),
            push_rules.clone(),
            trust.clone(),
            config.push.include_content,
            clock.clone(),
        ));
        let presence = Arc::new(PresenceService::new(
            config.presence.enabled,
            accounts.clone(),
            rooms.clone(),
            clock.clone(),
            outbound.clone(),
        ));
        let sync = Arc::new(SyncService::new(
            rooms.clone(),
            push_rules,
            account_data.clone(),
            receipts.clone(),
            typing.clone(),
            e2ee.clone(),
            notifier,
            stores.sync,
            presence.clone(),
        ));
        let reports = Arc::new(ReportService::new(
            stores.reports,
            rooms.clone(),
            trust.clone(),
            clock.clone(),
        ));
        let calls = Arc::new(CallService::new(config.turn.clone(), clock.clone()));
        Ok(Self {
            config,
            accounts,
            rate_limiter,
            rooms,
            remote_rooms,
            directory,
            membership,
            signing_key,
            clock,
            account_data,
            receipts,
            typing,
            sync,
            e2ee,
            trust,
            notices,
            notice_queue,
            presence,
            push,
            reports,
            calls,
            outbound,
        })
    }
}
