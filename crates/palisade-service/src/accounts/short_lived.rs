//! Short-lived tokens kept in memory, hashed: OpenID tokens (third parties learn who a user
//! is) and login tokens (a signed-in device lets a new one sign in).

use std::{collections::HashMap, sync::Mutex};

use ruma::{OwnedUserId, UserId};

use super::{hash_token, new_access_token};

/// Tokens by hash, with their user and expiry (milliseconds since the epoch).
#[derive(Default)]
pub(super) struct ShortLivedTokens {
    tokens: Mutex<HashMap<[u8; 32], (OwnedUserId, u64)>>,
}

impl ShortLivedTokens {
    /// A new token for `user` until `expires`; a user holds at most `most` (the oldest goes).
    pub(super) fn issue(&self, user: &UserId, now: u64, expires: u64, most: usize) -> String {
        let token = new_access_token();
        let mut tokens = self.tokens.lock().expect("short-lived tokens poisoned");
        tokens.retain(|_, (_, until)| *until > now);
        let mut mine: Vec<([u8; 32], u64)> =
            tokens.iter().filter(|(_, (u, _))| u == user).map(|(h, (_, e))| (*h, *e)).collect();
        if mine.len() >= most {
            mine.sort_by_key(|(_, until)| *until);
            tokens.remove(&mine[0].0);
        }
        tokens.insert(hash_token(&token), (user.to_owned(), expires));
        token
    }

    /// The user of an unexpired token, which is spent if `spend`.
    pub(super) fn user(&self, token: &str, now: u64, spend: bool) -> Option<OwnedUserId> {
        let mut tokens = self.tokens.lock().expect("short-lived tokens poisoned");
        let hash = hash_token(token);
        let user = tokens.get(&hash).filter(|(_, until)| *until > now).map(|(u, _)| u.clone());
        if spend {
            tokens.remove(&hash);
        }
        user
    }
}
