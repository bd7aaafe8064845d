//! The server's ed25519 signing key: signs every PDU this server creates and its key document.

use base64::{Engine, engine::general_purpose::STANDARD_NO_PAD};
use palisade_core::{Error, Result};
use ruma::{api::federation::discovery::ServerSigningKeys, serde::Raw, signatures::Ed25519KeyPair};

/// The signing key with its id (`ed25519:<version>`).
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl SigningKey {
    /// A new random key, returned with its serialized form for the key file.
    pub fn generate() -> Result<(Self, String)> {
        let document = Ed25519KeyPair::generate();
        let version = format!("p{}", &STANDARD_NO_PAD.encode(rand::random::<[u8; 4]>())[..5])
            .replace(['+', '/'], "_");
        let serialized = format!("ed25519 {version} {}\n", STANDARD_NO_PAD.encode(&document));
        Ok((Self::parse(&serialized)?, serialized))
    }

    /// Reads the key file format: `ed25519 <version> <base64 PKCS#8>`.
    pub fn parse(serialized: &str) -> Result<Self> {
        let bad = || Error::internal("signing key file is malformed");
        let mut parts = serialized.split_whitespace();
        if parts.next() != Some("ed25519") {
            return Err(bad());
        }
        let version = parts.next().ok_or_else(bad)?.to_owned();
        let document = STANDARD_NO_PAD.decode(parts.next().ok_or_else(bad)?).map_err(|_| bad())?;
        let pair = Ed25519KeyPair::from_der(&document, version)
            .map_err(|e| Error::internal(format!("signing key unreadable: {e}")))?;
        Ok(Self { pair })
    }

    /// The key pair, for ruma's signing functions.
    pub fn pair(&self) -> &Ed25519KeyPair {
        &self.pair
    }

    /// The key id, `ed25519:<version>`.
    pub fn key_id(&self) -> String {
        format!("ed25519:{}", self.pair.version())
    }

    /// The signed key document served at `/_matrix/key/v2/server`, valid for a week.
    pub fn server_key_document(
        &self,
        server_name: &str,
        now_ms: u64,
    ) -> Result<Raw<ServerSigningKeys>> {
        const VALIDITY_MS: u64 = 7 * 24 * 60 * 60 * 1000;
        let document = serde_json::json!({
            "server_name": server_name,
            "valid_until_ts": now_ms + VALIDITY_MS,
            "verify_keys": { self.key_id(): { "key": self.public_key_base64() } },
            "old_verify_keys": {},
        });
        let mut object = ruma::canonical_json::try_from_json_map(
            document.as_object().cloned().unwrap_or_default(),
        )
        .map_err(|e| Error::internal(e.to_string()))?;
        ruma::signatures::sign_json(server_name, &self.pair, &mut object)
            .map_err(|e| Error::internal(format!("signing key document: {e}")))?;
        crate::events::to_raw(&object)
    }

    /// The public key, unpadded base64.
    pub fn public_key_base64(&self) -> String {
        STANDARD_NO_PAD.encode(self.pair.public_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialized_keys_round_trip() {
        let (key, serialized) = SigningKey::generate().unwrap();
        let again = SigningKey::parse(&serialized).unwrap();
        assert_eq!(key.key_id(), again.key_id());
        assert_eq!(key.public_key_base64(), again.public_key_base64());
        assert!(SigningKey::parse("ed25519 x notbase64!").is_err());
    }
}
