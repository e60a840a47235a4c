//! Secrets at rest: XChaCha20-Poly1305 under versioned platform keys.
//!
//! A sealed secret is `version (4 bytes, big-endian) ‖ nonce (24 bytes) ‖ ciphertext+tag`. The
//! associated data binds it to its tenant and to what it is (e.g. `llm_key:openai`), so a
//! ciphertext copied to another tenant or another slot fails to open. Keys are configured as
//! `KONSTRUCT_ENCRYPTION_KEYS=1:<64 hex chars>,2:<…>`; new secrets are sealed with the highest
//! version, and older versions stay readable so keys can be rotated.

use std::collections::BTreeMap;
use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use shared::TenantId;

use crate::config::Secret;

/// Why a secret could not be sealed or opened. Never contains key material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("no encryption key is configured (set KONSTRUCT_ENCRYPTION_KEYS)")]
    NoKey,
    #[error("encryption keys are malformed: {0}")]
    BadKeys(String),
    #[error("the secret was sealed with key version {0}, which is not configured")]
    UnknownVersion(u32),
    #[error("the secret cannot be opened: it was altered or belongs to another tenant or slot")]
    Open,
}

/// The platform's encryption keys by version.
#[derive(Clone, Default)]
pub struct Keyring {
    keys: BTreeMap<u32, [u8; 32]>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("versions", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

const HEADER: usize = 4 + 24;

impl Keyring {
    /// Parses `1:<hex>,2:<hex>`; an empty or absent value gives an empty keyring.
    pub fn parse(spec: Option<&Secret<String>>) -> Result<Self, CryptoError> {
        let mut keys = BTreeMap::new();
        let Some(spec) = spec else {
            return Ok(Self { keys });
        };
        for entry in spec
            .expose()
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (version, hex_key) = entry
                .split_once(':')
                .ok_or_else(|| CryptoError::BadKeys("expected VERSION:HEX entries".into()))?;
            let version: u32 = version
                .parse()
                .map_err(|_| CryptoError::BadKeys("a version is not a number".into()))?;
            let bytes = hex::decode(hex_key)
                .map_err(|_| CryptoError::BadKeys(format!("key {version} is not hex")))?;
            let key: [u8; 32] = bytes
                .try_into()
                .map_err(|_| CryptoError::BadKeys(format!("key {version} is not 32 bytes")))?;
            keys.insert(version, key);
        }
        Ok(Self { keys })
    }

    /// A keyring with one random key (tests, throwaway processes).
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self {
            keys: BTreeMap::from([(1, key)]),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn aad(tenant: TenantId, slot: &str) -> Vec<u8> {
        let mut aad = tenant.as_uuid().as_bytes().to_vec();
        aad.extend_from_slice(slot.as_bytes());
        aad
    }

    /// Seals `plaintext` for `tenant` in `slot` with the newest key; returns the sealed bytes and
    /// the key version.
    pub fn seal(
        &self,
        tenant: TenantId,
        slot: &str,
        plaintext: &str,
    ) -> Result<(Vec<u8>, u32), CryptoError> {
        let (version, key) = self.keys.iter().next_back().ok_or(CryptoError::NoKey)?;
        let cipher = XChaCha20Poly1305::new(key.into());
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &Self::aad(tenant, slot),
                },
            )
            .map_err(|_| CryptoError::Open)?;
        let mut out = Vec::with_capacity(HEADER + sealed.len());
        out.extend_from_slice(&version.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok((out, *version))
    }

    /// Opens what `seal` produced for the same tenant and slot.
    pub fn open(
        &self,
        tenant: TenantId,
        slot: &str,
        sealed: &[u8],
    ) -> Result<Secret<String>, CryptoError> {
        if sealed.len() < HEADER + 16 {
            return Err(CryptoError::Open);
        }
        let version = u32::from_be_bytes([sealed[0], sealed[1], sealed[2], sealed[3]]);
        let key = self
            .keys
            .get(&version)
            .ok_or(CryptoError::UnknownVersion(version))?;
        let nonce: [u8; 24] = sealed[4..HEADER]
            .try_into()
            .map_err(|_| CryptoError::Open)?;
        let cipher = XChaCha20Poly1305::new(key.into());
        let plain = cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &sealed[HEADER..],
                    aad: &Self::aad(tenant, slot),
                },
            )
            .map_err(|_| CryptoError::Open)?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| CryptoError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn tenant() -> TenantId {
        TenantId::from_uuid(Uuid::new_v4())
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_tenant_and_slot() {
        let ring = Keyring::random();
        let (a, b) = (tenant(), tenant());
        let (sealed, version) = ring.seal(a, "llm_key:openai", "sk-secret-1234").unwrap();
        assert_eq!(version, 1);
        assert!(
            !sealed.windows(4).any(|w| w == b"1234"),
            "ciphertext hides the key"
        );
        assert_eq!(
            ring.open(a, "llm_key:openai", &sealed).unwrap().expose(),
            "sk-secret-1234"
        );
        assert_eq!(
            ring.open(b, "llm_key:openai", &sealed).unwrap_err(),
            CryptoError::Open
        );
        assert_eq!(
            ring.open(a, "llm_key:anthropic", &sealed).unwrap_err(),
            CryptoError::Open
        );
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(
            ring.open(a, "llm_key:openai", &flipped).unwrap_err(),
            CryptoError::Open
        );
    }

    #[test]
    fn keys_rotate_new_secrets_use_the_newest_and_old_ones_still_open() {
        let one = "1:".to_string() + &"11".repeat(32);
        let both = format!("{one},2:{}", "22".repeat(32));
        let old = Keyring::parse(Some(&Secret::new(one))).unwrap();
        let new = Keyring::parse(Some(&Secret::new(both))).unwrap();
        let t = tenant();
        let (sealed_old, v1) = old.seal(t, "s", "x").unwrap();
        let (_, v2) = new.seal(t, "s", "x").unwrap();
        assert_eq!((v1, v2), (1, 2));
        assert_eq!(new.open(t, "s", &sealed_old).unwrap().expose(), "x");
        assert!(Keyring::parse(Some(&Secret::new("1:abcd".into()))).is_err());
        assert_eq!(
            Keyring::default().seal(t, "s", "x").unwrap_err(),
            CryptoError::NoKey
        );
        assert!(!format!("{new:?}").contains("2222"));
    }
}
