//! Device trust: which devices an account's owner has approved, and what happens when one is.
//!
//! A device is trusted when it carries a valid signature by its owner's current self-signing
//! key, or was the account's first device before it had a cross-signing identity, or an
//! administrator approved it. The rest of the server asks [`DeviceTrustService::is_trusted`]
//! at its policy points (key queries, to-device delivery, key backup, strict-mode reads).
//!
//! Operations state what they need of the device asking for them ([`Need`]) and call
//! [`DeviceTrustService::require`] themselves, so a refusal does not depend on which endpoint
//! (or which future endpoint) reached the operation.

use std::sync::Arc;

use palisade_core::{Clock, Config, Error, ErrorKind, Result, config::TrustMode};
use palisade_storage::{AccountStore, AuditEntry, AuditStore, DeviceRow, E2eeStore};
use ruma::{DeviceId, UserId};
use serde_json::{Value, json};

use crate::{
    Session,
    e2ee::signed_by_cross_signing_key,
    notices::{NoticeQueue, SecurityNotice},
    notify::Notifier,
};

/// The answer to a device that may not do something until its owner approves it.
pub const UNAPPROVED_DEVICE: &str =
    "This device is not approved yet: verify it from one of your other devices";

/// What an operation needs of the device that asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Reading or writing a room: refused to an unapproved device in strict mode.
    RoomAccess,
    /// Anything that can leak room keys or change who is in a room (invites, kicks, bans,
    /// state changes) and the admin API: refused to an unapproved device in every mode.
    Approval,
}

/// Who asks for an operation: a device of a local user (made from its `Session`), or this
/// server itself acting for a user (server notices), which only the service layer can make.
/// Other servers' users are not actors: what their servers send has operations of its own.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    user: &'a UserId,
    device: Option<&'a DeviceId>,
    guest: bool,
    suspended: bool,
}

impl<'a> Actor<'a> {
    /// The server acting for `user`, with no device to check.
    pub(crate) fn server(user: &'a UserId) -> Self {
        Self { user, device: None, guest: false, suspended: false }
    }

    /// The user acting.
    pub fn user(&self) -> &'a UserId {
        self.user
    }

    /// The device acting, unless the server acts.
    pub fn device(&self) -> Option<&'a DeviceId> {
        self.device
    }

    /// Whether the user is a guest.
    pub fn is_guest(&self) -> bool {
        self.guest
    }

    /// Refuses anything that writes (sending, joining, inviting, creating rooms, changing
    /// the profile, uploading) to a suspended account, which may still read, leave rooms,
    /// redact its own events and sign out.
    pub fn may_write(&self) -> Result<()> {
        if self.suspended {
            return Err(Error::new(ErrorKind::UserSuspended, "This account has been suspended"));
        }
        Ok(())
    }
}

impl<'a> From<&'a Session> for Actor<'a> {
    fn from(session: &'a Session) -> Self {
        Self {
            user: session.user_id(),
            device: Some(session.device_id()),
            guest: session.is_guest(),
            suspended: session.is_suspended(),
        }
    }
}

/// Proof that a server administrator acts: an admin account on an approved device, or the
/// command line on the server itself. The administration operations take one.
#[derive(Debug, Clone)]
pub struct Administrator {
    name: String,
}

impl Administrator {
    /// The command line, run by whoever holds the server's data directory.
    pub fn console() -> Self {
        Self { name: "admin-cli".to_owned() }
    }

    /// Who acts, as the audit log records it.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Device trust decisions and transitions.
pub struct DeviceTrustService {
    mode: TrustMode,
    notices: Option<NoticeQueue>,
    accounts: Arc<dyn AccountStore>,
    e2ee: Arc<dyn E2eeStore>,
    audit: Arc<dyn AuditStore>,
    notifier: Arc<Notifier>,
    clock: Arc<dyn Clock>,
}

impl DeviceTrustService {
    /// The service.
    pub fn new(
        config: &Config,
        accounts: Arc<dyn AccountStore>,
        e2ee: Arc<dyn E2eeStore>,
        audit: Arc<dyn AuditStore>,
        notifier: Arc<Notifier>,
        clock: Arc<dyn Clock>,
        notices: Option<NoticeQueue>,
    ) -> Self {
        Self { mode: config.device_trust.mode, notices, accounts, e2ee, audit, notifier, clock }
    }

    /// The configured policy.
    pub fn mode(&self) -> TrustMode {
        self.mode
    }

    /// Whether a device is trusted now.
    pub async fn is_trusted(&self, user: &UserId, device: &DeviceId) -> Result<bool> {
        if self.mode == TrustMode::Off {
            return Ok(true);
        }
        let Some(row) = self.accounts.device(user, device).await? else { return Ok(false) };
        if row.approval.is_some() {
            return Ok(true);
        }
        self.cross_signed(user, device).await
    }

    /// Whether the device's keys carry a valid signature by the owner's self-signing key.
    async fn cross_signed(&self, user: &UserId, device: &DeviceId) -> Result<bool> {
        let (Some(master), Some(ssk), Some(keys)) = (
            self.e2ee.cross_signing_key(user, "master").await?,
            self.e2ee.cross_signing_key(user, "self_signing").await?,
            self.e2ee.device_keys(user, device).await?,
        ) else {
            return Ok(false);
        };
        // The self-signing key counts only while the current master key vouches for it.
        Ok(signed_by_cross_signing_key(&ssk, user, &master)
            && signed_by_cross_signing_key(&keys, user, &ssk))
    }

    /// Refuses `operation` unless `actor`'s device meets `need`; a refused approval is
    /// written to the audit log (it is what a phished device tries first).
    pub async fn require(&self, actor: Actor<'_>, need: Need, operation: &str) -> Result<()> {
        let Some(device) = actor.device else { return Ok(()) };
        let applies = match need {
            Need::RoomAccess => self.mode == TrustMode::Strict,
            Need::Approval => self.mode != TrustMode::Off,
        };
        if !applies || self.is_trusted(actor.user, device).await? {
            return Ok(());
        }
        if need == Need::Approval {
            let detail = json!({ "operation": operation });
            self.record("unapproved_device_refused", actor.user, Some(device), None, detail)
                .await?;
        }
        Err(Error::forbidden(UNAPPROVED_DEVICE))
    }

    /// The administrator behind a session: an admin account, on a device its owner approved
    /// (a phished device of an administrator gets no admin power at all).
    pub async fn administrator(&self, session: &Session) -> Result<Administrator> {
        let admin = self.accounts.user(session.user_id()).await?.is_some_and(|u| u.admin);
        if !admin {
            return Err(Error::forbidden("You are not a server administrator"));
        }
        self.require(session.into(), Need::Approval, "admin_api").await?;
        Ok(Administrator { name: session.user_id().to_string() })
    }

    /// A user's devices with where and when each was last seen (`/admin/whois`): for the
    /// user themself, or a server administrator.
    pub async fn whois(&self, session: &Session, user: &UserId) -> Result<Vec<DeviceRow>> {
        if user != session.user_id() {
            self.administrator(session).await?;
        }
        self.accounts.devices(user).await
    }

    /// Whether a local account is locked and whether it is suspended, for an administrator.
    pub async fn restrictions(&self, session: &Session, user: &UserId) -> Result<(bool, bool)> {
        self.administrator(session).await?;
        let account = self.accounts.user(user).await?.filter(|u| !u.deactivated);
        let account = account.ok_or_else(|| Error::not_found("No such local user"))?;
        Ok((account.locked, account.suspended))
    }

    /// Locks or unlocks (`locked`), suspends or reinstates (`suspended`) a local account,
    /// for an administrator, in the audit log; answers the account's restrictions after.
    pub async fn restrict(
        &self,
        session: &Session,
        user: &UserId,
        locked: Option<bool>,
        suspended: Option<bool>,
    ) -> Result<(bool, bool)> {
        let admin = self.administrator(session).await?;
        self.restrictions(session, user).await?;
        if user == session.user_id() && locked == Some(true) {
            return Err(Error::invalid_param("Administrators may not lock themselves out"));
        }
        self.accounts.set_restrictions(user, locked, suspended).await?;
        let kind = match (locked, suspended) {
            (Some(true), _) => "account_locked",
            (Some(false), _) => "account_unlocked",
            (_, Some(true)) => "account_suspended",
            _ => "account_reinstated",
        };
        self.record(kind, user, None, Some(admin.name()), json!({})).await?;
        self.restrictions(session, user).await
    }

    /// Whether `device` may not yet see rooms (strict mode, untrusted).
    pub async fn is_walled_off(&self, user: &UserId, device: &DeviceId) -> Result<bool> {
        Ok(self.mode == TrustMode::Strict && !self.is_trusted(user, device).await?)
    }

    /// Re-evaluates a user's devices after their keys, signatures or approvals changed. A
    /// device that became trusted gets its held messages, and everyone sharing a room with the
    /// user is told to refetch the user's devices.
    pub async fn refresh(&self, user: &UserId, actor: Option<&str>) -> Result<()> {
        let mut changed = false;
        for device in self.accounts.devices(user).await? {
            let trusted = self.is_trusted(user, &device.device_id).await?;
            let Some(released) =
                self.accounts.set_device_trusted(user, &device.device_id, trusted).await?
            else {
                continue;
            };
            changed = true;
            for recipient in released {
                self.notifier.notify_user(&recipient);
            }
            let kind = if trusted { "device_trusted" } else { "device_untrusted" };
            self.record(kind, user, Some(&device.device_id), actor, Value::Null).await?;
        }
        if changed {
            self.e2ee.device_list_changed(user).await?;
        }
        Ok(())
    }

    /// Signs out devices that were never trusted within `lifetime_ms` of signing in; returns
    /// how many.
    pub async fn sign_out_stale(&self, lifetime_ms: u64) -> Result<usize> {
        if self.mode == TrustMode::Off || lifetime_ms == 0 {
            return Ok(0);
        }
        let cutoff = self.clock.now_millis().saturating_sub(lifetime_ms);
        let stale = self.accounts.untrusted_devices_created_before(cutoff).await?;
        for (user, device) in &stale {
            // Trust may have been granted since the stored state was computed.
            if self.is_trusted(user, device).await? {
                continue;
            }
            self.accounts.delete_devices(user, std::slice::from_ref(device)).await?;
            self.record("device_expired", user, Some(device), Some("policy"), Value::Null).await?;
        }
        Ok(stale.len())
    }

    /// An administrator approves a device.
    pub async fn approve(
        &self,
        admin: &Administrator,
        user: &UserId,
        device: &DeviceId,
    ) -> Result<bool> {
        if !self.accounts.set_device_approval(user, device, Some("admin")).await? {
            return Ok(false);
        }
        let actor = Some(admin.name());
        self.record("device_approved", user, Some(device), actor, Value::Null).await?;
        self.refresh(user, actor).await?;
        Ok(true)
    }

    /// A user's devices with their trust state now (for administrators).
    pub async fn devices(
        &self,
        _: &Administrator,
        user: &UserId,
    ) -> Result<Vec<(DeviceRow, bool)>> {
        let mut devices = Vec::new();
        for device in self.accounts.devices(user).await? {
            let trusted = self.is_trusted(user, &device.device_id).await?;
            devices.push((device, trusted));
        }
        Ok(devices)
    }

    /// Lets `user` replace their cross-signing keys from an untrusted device until `until`
    /// (for someone who lost every device and the recovery key).
    pub async fn allow_cross_signing_reset(
        &self,
        admin: &Administrator,
        user: &UserId,
        until: u64,
    ) -> Result<()> {
        self.e2ee.grant_cross_signing_reset(user, until).await?;
        let detail = json!({ "until": until });
        self.record("cross_signing_reset_allowed", user, None, Some(admin.name()), detail).await
    }

    /// The time now.
    pub fn now(&self) -> u64 {
        self.clock.now_millis()
    }

    /// Appends to the security audit log.
    pub async fn record(
        &self,
        kind: &str,
        user: &UserId,
        device: Option<&DeviceId>,
        actor: Option<&str>,
        detail: Value,
    ) -> Result<()> {
        tracing::info!(kind, %user, device = ?device, actor, "security event");
        let tell_owner =
            matches!(kind, "device_added" | "device_trusted" | "cross_signing_changed");
        if let (true, Some(notices)) = (tell_owner, &self.notices) {
            notices.push(SecurityNotice {
                kind: kind.to_owned(),
                user_id: user.to_owned(),
                device_id: device.map(|d| d.to_string()),
                detail: detail.clone(),
                ts: self.clock.now_millis(),
            });
        }
        self.audit
            .append_audit(AuditEntry {
                id: 0,
                ts: self.clock.now_millis(),
                kind: kind.to_owned(),
                user_id: user.to_owned(),
                device_id: device.map(ToOwned::to_owned),
                actor: actor.map(str::to_owned),
                detail: detail.to_string(),
            })
            .await
    }

    /// The audit log, newest first.
    pub async fn audit_log(
        &self,
        _: &Administrator,
        user: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>> {
        self.audit.audit_entries(user, limit).await
    }
}
