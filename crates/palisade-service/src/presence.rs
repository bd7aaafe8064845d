//! Presence: what each user last said about themselves, and whether they are syncing; kept in
//! memory, as a stream `/sync` reads (each change has a position) and the servers sharing a
//! room with a user hear.
//!
//! Syncing marks a user online (unless the sync says otherwise, `set_presence`); 30 seconds
//! after their last sync ends they go offline, as in Synapse. Positions follow the clock
//! (never below its milliseconds), so tokens from before a restart stay behind new changes.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use palisade_core::{Clock, Error, Result};
use ruma::{OwnedRoomId, OwnedUserId, UserId};

use crate::{AccountService, RoomService, outbound::OutboundSlot, trust::Actor};

/// How long after their last sync a user who went online by syncing goes offline.
const SYNC_ONLINE_TIMEOUT_MS: u64 = 30_000;
/// How long presence changes are gathered before the rooms they concern are woken.
const ANNOUNCE_DELAY_MS: u64 = 500;
/// How long a user's joined rooms are remembered for presence.
const JOINED_CACHE_MS: u64 = 10_000;
/// Most users whose joined rooms are remembered.
const MAX_JOINED_CACHED: usize = 100_000;
/// How recently a user must have been active to count as currently active.
const CURRENTLY_ACTIVE_MS: u64 = 60_000;

/// The rooms a user is joined to, shared.
type JoinedRooms = Arc<HashSet<OwnedRoomId>>;

/// A user's presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    /// `online`, `unavailable` or `offline`.
    pub state: String,
    /// Free-text status.
    pub status_msg: Option<String>,
    /// When they were last active (set their presence or synced), milliseconds since the
    /// epoch.
    pub last_active: u64,
    /// Stream position of the last change.
    pub position: u64,
}

/// A user's presence as clients are told it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceReport {
    /// `online`, `unavailable` or `offline`.
    pub state: String,
    /// Free-text status.
    pub status_msg: Option<String>,
    /// Milliseconds since the user was last active.
    pub last_active_ago: u64,
    /// Whether the user is online and was active in the last minute.
    pub currently_active: bool,
}

impl Presence {
    /// The presence as clients are told it at `now`.
    fn report(&self, now: u64) -> PresenceReport {
        let last_active_ago = now.saturating_sub(self.last_active);
        PresenceReport {
            state: self.state.clone(),
            status_msg: self.status_msg.clone(),
            last_active_ago,
            currently_active: self.state == "online" && last_active_ago < CURRENTLY_ACTIVE_MS,
        }
    }
}

/// What is known of one user.
struct Entry {
    presence: Presence,
    /// Online because they sync (not because they said so): offline when they stop.
    by_sync: bool,
    /// Syncs in progress.
    syncing: u32,
    /// When the last sync ended.
    last_sync: u64,
}

/// In-memory presence.
pub struct PresenceService {
    /// Whether presence is on (`[presence] enabled`).
    enabled: bool,
    accounts: Arc<AccountService>,
    rooms: Arc<RoomService>,
    clock: Arc<dyn Clock>,
    outbound: OutboundSlot,
    users: Mutex<HashMap<OwnedUserId, Entry>>,
    /// Users whose going offline is being watched for.
    watched: Mutex<HashSet<OwnedUserId>>,
    /// Users' joined rooms, with when they were read (see [`Self::joined_rooms`]).
    joined_cache: Mutex<HashMap<OwnedUserId, (u64, JoinedRooms)>>,
    /// Users whose change is yet to be announced.
    pending: Mutex<HashSet<OwnedUserId>>,
    /// Whether an announcing round is on its way.
    announcing: AtomicBool,
    position: AtomicU64,
}

/// Marks a user as syncing until dropped (when their sync ends, however it ends).
pub struct Syncing {
    service: Arc<PresenceService>,
    user: OwnedUserId,
}

impl Drop for Syncing {
    fn drop(&mut self) {
        let now = self.service.clock.now_millis();
        if let Some(entry) =
            self.service.users.lock().expect("presence poisoned").get_mut(&self.user)
        {
            entry.syncing = entry.syncing.saturating_sub(1);
            entry.last_sync = now;
        }
    }
}

impl PresenceService {
    /// An empty service.
    pub fn new(
        enabled: bool,
        accounts: Arc<AccountService>,
        rooms: Arc<RoomService>,
        clock: Arc<dyn Clock>,
        outbound: OutboundSlot,
    ) -> Self {
        let position = AtomicU64::new(clock.now_millis());
        Self {
            enabled,
            accounts,
            rooms,
            clock,
            outbound,
            users: Mutex::new(HashMap::new()),
            watched: Mutex::new(HashSet::new()),
            pending: Mutex::new(HashSet::new()),
            joined_cache: Mutex::new(HashMap::new()),
            announcing: AtomicBool::new(false),
            position,
        }
    }

    /// The presence stream position.
    pub fn position(&self) -> u64 {
        self.position.load(Ordering::Acquire)
    }

    /// The next position: past the last, and not behind the clock.
    fn advance(&self) -> u64 {
        let now = self.clock.now_millis();
        let previous = self
            .position
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| Some((p + 1).max(now)))
            .expect("the update always succeeds");
        (previous + 1).max(now)
    }

    /// A local user sets their presence: recorded, and told to the servers sharing a room
    /// with them.
    pub async fn set_own(
        self: &Arc<Self>,
        actor: Actor<'_>,
        state: &str,
        status_msg: Option<String>,
    ) -> Result<()> {
        let user = actor.user();
        self.set(user, state, status_msg.clone()).await;
        if let Some(port) = self.outbound.connected().filter(|_| self.enabled) {
            port.send_presence(user, state, status_msg.as_deref()).await?;
        }
        Ok(())
    }

    /// Records what `user` says about themselves (or their server says for them), and wakes
    /// the syncs of the users sharing a room with them.
    pub async fn set(self: &Arc<Self>, user: &UserId, state: &str, status_msg: Option<String>) {
        if !self.enabled {
            return;
        }
        let now = self.clock.now_millis();
        let position = self.advance();
        let presence = Presence { state: state.to_owned(), status_msg, last_active: now, position };
        {
            let mut users = self.users.lock().expect("presence poisoned");
            let entry = users.entry(user.to_owned()).or_insert_with(|| Entry {
                presence: presence.clone(),
                by_sync: false,
                syncing: 0,
                last_sync: 0,
            });
            entry.presence = presence;
            entry.by_sync = false;
        }
        self.announce(user);
    }

    /// A local user starts a sync: online unless the sync says `offline` (then nothing
    /// changes) or `unavailable`; what they said themselves stands. They count as syncing
    /// until the returned guard is dropped.
    pub async fn syncing(self: &Arc<Self>, user: &UserId, set_presence: Option<&str>) -> Syncing {
        let now = self.clock.now_millis();
        let wanted = match set_presence {
            _ if !self.enabled => None,
            Some("offline") => None,
            Some("unavailable") => Some("unavailable"),
            _ => Some("online"),
        };
        let changed = {
            let mut users = self.users.lock().expect("presence poisoned");
            let entry = users.entry(user.to_owned()).or_insert_with(|| Entry {
                presence: Presence {
                    state: "offline".to_owned(),
                    status_msg: None,
                    last_active: now,
                    position: 0,
                },
                by_sync: false,
                syncing: 0,
                last_sync: now,
            });
            entry.syncing += 1;
            entry.last_sync = now;
            match wanted {
                Some(state) if entry.presence.state == "offline" || entry.by_sync => {
                    entry.presence.last_active = now;
                    let changed = entry.presence.state != state;
                    if changed {
                        entry.presence.state = state.to_owned();
                        entry.presence.position = self.advance();
                    }
                    entry.by_sync = true;
                    changed
                }
                _ => false,
            }
        };
        if changed {
            self.announce(user);
        }
        if self.enabled {
            self.watch(user);
        }
        Syncing { service: Arc::clone(self), user: user.to_owned() }
    }

    /// Watches for a user online by syncing to stop syncing, to take them offline.
    fn watch(self: &Arc<Self>, user: &UserId) {
        if !self.watched.lock().expect("presence poisoned").insert(user.to_owned()) {
            return;
        }
        let (this, user) = (Arc::clone(self), user.to_owned());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(SYNC_ONLINE_TIMEOUT_MS / 2)).await;
                let now = this.clock.now_millis();
                let outcome = {
                    let mut users = this.users.lock().expect("presence poisoned");
                    match users.get_mut(&user) {
                        Some(entry) if entry.by_sync && entry.presence.state != "offline" => {
                            let stale = entry.syncing == 0
                                && now.saturating_sub(entry.last_sync) >= SYNC_ONLINE_TIMEOUT_MS;
                            if stale {
                                entry.presence.state = "offline".to_owned();
                                entry.presence.position = this.advance();
                                Some(true)
                            } else {
                                None
                            }
                        }
                        _ => Some(false),
                    }
                };
                match outcome {
                    None => continue,
                    Some(went_offline) => {
                        this.watched.lock().expect("presence poisoned").remove(&user);
                        if went_offline {
                            this.announce(&user);
                        }
                        return;
                    }
                }
            }
        });
    }

    /// Wakes, soon, the syncs of everyone sharing a room with `user` (and the user's own).
    /// Changes are gathered for half a second and each room is woken once for all of them:
    /// a morning's sign-ins in a large room wake its members a few times, not once per
    /// member.
    fn announce(self: &Arc<Self>, user: &UserId) {
        self.pending.lock().expect("presence poisoned").insert(user.to_owned());
        if self.announcing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(ANNOUNCE_DELAY_MS)).await;
                let users = std::mem::take(&mut *this.pending.lock().expect("presence poisoned"));
                let mut rooms = HashSet::new();
                for user in &users {
                    match this.joined_rooms(user).await {
                        Ok(joined) => rooms.extend(joined.iter().cloned()),
                        Err(error) => tracing::warn!(%error, "presence change not announced"),
                    }
                }
                for room_id in rooms {
                    if let Err(error) = this.rooms.notify_room(&room_id).await {
                        tracing::warn!(%error, "presence change not announced");
                    }
                }
                this.announcing.store(false, Ordering::Release);
                // A change that came while the rooms were woken is announced in another round.
                let more = !this.pending.lock().expect("presence poisoned").is_empty();
                if !more || this.announcing.swap(true, Ordering::AcqRel) {
                    return;
                }
            }
        });
    }

    /// The rooms `user` is joined to, remembered for a few seconds: every sync pass after a
    /// change asks who shares a room with whom, and a membership a few seconds old is good
    /// enough for presence.
    async fn joined_rooms(&self, user: &UserId) -> Result<JoinedRooms> {
        let now = self.clock.now_millis();
        if let Some((at, rooms)) = self.joined_cache.lock().expect("presence poisoned").get(user)
            && now.saturating_sub(*at) < JOINED_CACHE_MS
        {
            return Ok(Arc::clone(rooms));
        }
        let memberships = self.rooms.memberships_of(user).await?;
        let rooms: JoinedRooms = Arc::new(
            memberships.into_iter().filter(|m| m.membership == "join").map(|m| m.room_id).collect(),
        );
        let mut cache = self.joined_cache.lock().expect("presence poisoned");
        if cache.len() >= MAX_JOINED_CACHED {
            cache.retain(|_, (at, _)| now.saturating_sub(*at) < JOINED_CACHE_MS);
        }
        cache.insert(user.to_owned(), (now, Arc::clone(&rooms)));
        Ok(rooms)
    }

    /// The presence of `user` and of the users sharing a joined room with them that changed
    /// after position `since` (all known, for `None`), up to position `up_to`.
    pub async fn changes_for(
        &self,
        user: &UserId,
        since: Option<u64>,
        up_to: u64,
    ) -> Result<Vec<(OwnedUserId, PresenceReport)>> {
        let changed: Vec<(OwnedUserId, Presence)> = self
            .users
            .lock()
            .expect("presence poisoned")
            .iter()
            .filter(|(_, e)| {
                since.is_none_or(|s| e.presence.position > s) && e.presence.position <= up_to
            })
            .filter(|(_, e)| e.presence.position > 0)
            .map(|(u, e)| (u.clone(), e.presence.clone()))
            .collect();
        if changed.is_empty() {
            return Ok(Vec::new());
        }
        let own = self.joined_rooms(user).await?;
        let mut shared = Vec::new();
        for (other, presence) in changed {
            if other == user || !self.joined_rooms(&other).await?.is_disjoint(&own) {
                shared.push((other, presence));
            }
        }
        shared.sort_by_key(|(_, p)| p.position);
        let now = self.clock.now_millis();
        Ok(shared.into_iter().map(|(user, p)| (user, p.report(now))).collect())
    }

    /// What `user` last said (`offline` if nothing; for another server's user, what their
    /// server said). `M_NOT_FOUND` for an unknown local user.
    pub async fn get(&self, user: &UserId) -> Result<Option<PresenceReport>> {
        if self.accounts.is_local(user) && self.accounts.user(user).await?.is_none() {
            return Err(Error::not_found("No such user"));
        }
        let now = self.clock.now_millis();
        let users = self.users.lock().expect("presence poisoned");
        Ok(users.get(user).map(|entry| entry.presence.report(now)))
    }
}
