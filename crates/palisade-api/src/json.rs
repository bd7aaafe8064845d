//! Moving between the services' JSON and ruma's wire types, and checks shared by handlers.

use palisade_core::{Error, Result};
use palisade_service::UiaAuth;
use ruma::{
    UserId,
    api::client::uiaa::{AuthData, UserIdentifier},
    serde::Raw,
};
use serde_json::{Map, Value};

/// The JSON of a value the client sent as `Raw`.
pub(crate) fn json_of<T>(raw: &Raw<T>) -> Result<Value> {
    serde_json::from_str(raw.json().get()).map_err(|e| Error::bad_json(e.to_string()))
}

/// A JSON object the client sent, or `M_BAD_JSON` naming `what`.
pub(crate) fn object(json: &str, what: &str) -> Result<Map<String, Value>> {
    serde_json::from_str(json).map_err(|_| Error::bad_json(format!("{what} must be a JSON object")))
}

/// Refuses requests about another user's private data (filters, account data, tags, profile).
pub(crate) fn ensure_own(session_user: &UserId, path_user: &UserId) -> Result<()> {
    if session_user != path_user {
        return Err(Error::forbidden("Cannot access another user's data"));
    }
    Ok(())
}

/// One-time key claims as the services take them: algorithm names as strings.
pub(crate) fn one_time_key_claims(
    claims: &std::collections::BTreeMap<
        ruma::OwnedUserId,
        std::collections::BTreeMap<ruma::OwnedDeviceId, ruma::OneTimeKeyAlgorithm>,
    >,
) -> std::collections::BTreeMap<
    ruma::OwnedUserId,
    std::collections::BTreeMap<ruma::OwnedDeviceId, String>,
> {
    claims
        .iter()
        .map(|(user, devices)| {
            (user.clone(), devices.iter().map(|(d, a)| (d.clone(), a.to_string())).collect())
        })
        .collect()
}

/// Turns the client's `auth` object into the service's view of it.
pub(crate) fn uia_auth(auth: AuthData) -> UiaAuth {
    let session = auth.session().map(str::to_owned);
    match auth {
        AuthData::Dummy(_) => UiaAuth::Dummy { session },
        AuthData::Password(password) => match password.identifier {
            UserIdentifier::Matrix(id) => {
                UiaAuth::Password { session, user: id.user, password: password.password }
            }
            _ => UiaAuth::Unsupported { session },
        },
        _ => UiaAuth::Unsupported { session },
    }
}
