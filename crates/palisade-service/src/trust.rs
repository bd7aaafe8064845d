//! Device trust: which devices an account's owner has approved, and what happens when one is.
//!
//! A device is trusted when it carries a valid signature by its owner's current self-signing
//! key, or was the account's first device before it had a cross-signing identity, or an
//! administrator approved it. The rest of the server asks [`DeviceTrustService::is_trusted`]
//! at its policy points (key queries, to-device delivery, key backup, strict-mode reads).

use std::sync::Arc;

use palisade_core::{Clock, Result, config::TrustMode};
use palisade_storage::{AccountStore, AuditEntry, AuditStore, DeviceRow, E2eeStore};
use ruma::{DeviceId, UserId};
use serde_json::Value;

use crate::{
    e2ee::signed_by_cross_signing_key,
    notices::{NoticeQueue, SecurityNotice},
    notify::Notifier,
};

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
        mode: TrustMode,
        accounts: Arc<dyn AccountStore>,
        e2ee: Arc<dyn E2eeStore>,
        audit: Arc<dyn AuditStore>,
        notifier: Arc<Notifier>,
        clock: Arc<dyn Clock>,
        notices: Option<NoticeQueue>,
    ) -> Self {
        Self { mode, notices, accounts, e2ee, audit, notifier, clock }
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
    pub async fn approve(&self, user: &UserId, device: &DeviceId, actor: &str) -> Result<bool> {
        if !self.accounts.set_device_approval(user, device, Some("admin")).await? {
            return Ok(false);
        }
        self.record("device_approved", user, Some(device), Some(actor), Value::Null).await?;
        self.refresh(user, Some(actor)).await?;
        Ok(true)
    }

    /// A user's devices with their trust state now (for administrators).
    pub async fn devices(&self, user: &UserId) -> Result<Vec<(DeviceRow, bool)>> {
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
        user: &UserId,
        until: u64,
        actor: &str,
    ) -> Result<()> {
        self.e2ee.grant_cross_signing_reset(user, until).await?;
        self.record(
            "cross_signing_reset_allowed",
            user,
            None,
            Some(actor),
            serde_json::json!({ "until": until }),
        )
        .await
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
    pub async fn audit_log(&self, user: Option<&UserId>, limit: usize) -> Result<Vec<AuditEntry>> {
        self.audit.audit_entries(user, limit).await
    }
}
