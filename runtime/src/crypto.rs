//! Platform keys: secrets at rest (XChaCha20-Poly1305) and the audit chain's seal (HMAC-SHA256),
//! each under versioned keys.
//!
//! A sealed secret is `version (4 bytes, big-endian) ‖ nonce (24 bytes) ‖ ciphertext+tag`. The
//! associated data binds it to its tenant and to what it is (e.g. `llm_key:openai`), so a
//! ciphertext copied to another tenant or another slot fails to open. Keys are configured as
//! `KONSTRUCT_ENCRYPTION_KEYS=1:<64 hex chars>,2:<…>`; new secrets are sealed with the highest
//! version, and older versions stay readable so keys can be rotated.
//!
//! The audit seal ([`AuditKeys`], `KONSTRUCT_AUDIT_KEYS`, same format) is an HMAC-SHA256 over one
//! run of rows of a tenant's audit chain (the first and last seq and the last row's hash): a key
//! the database never sees, so someone who can rewrite the database (and recompute its hash
//! chain) still cannot make a seal that checks, nor stretch one over rows it did not cover.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
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
    #[error("audit keys are malformed: {0}")]
    BadAuditKeys(String),
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

/// Parses `1:<64 hex chars>[,2:<…>]` into keys by version. The reason on failure names the
/// version, never the key.
fn parse_versioned_keys(spec: Option<&Secret<String>>) -> Result<BTreeMap<u32, [u8; 32]>, String> {
    let mut keys = BTreeMap::new();
    let Some(spec) = spec else {
        return Ok(keys);
    };
    for entry in spec
        .expose()
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let (version, hex_key) = entry
            .split_once(':')
            .ok_or_else(|| "expected VERSION:HEX entries".to_string())?;
        let version: u32 = version
            .parse()
            .map_err(|_| "a version is not a number".to_string())?;
        let bytes = hex::decode(hex_key).map_err(|_| format!("key {version} is not hex"))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| format!("key {version} is not 32 bytes"))?;
        keys.insert(version, key);
    }
    Ok(keys)
}

impl Keyring {
    /// Parses `1:<hex>,2:<hex>`; an empty or absent value gives an empty keyring.
    pub fn parse(spec: Option<&Secret<String>>) -> Result<Self, CryptoError> {
        let keys = parse_versioned_keys(spec).map_err(CryptoError::BadKeys)?;
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

/// What a seal binds, in a fixed layout so that no two different rows give the same message:
/// a domain tag, then fixed-width fields, then the hash with its length.
const SEAL_DOMAIN: &[u8] = b"konstruct.audit-seal.v2\0";

/// Why a seal does not check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealMismatch {
    #[error("it was made with key version {0}, which is not configured")]
    UnknownVersion(u32),
    #[error(
        "it does not match under key version {0}: it was forged, or the key is not the one that sealed it"
    )]
    Invalid(u32),
}

/// What one audit seal covers: the rows `first_seq..=seq` that one transaction appended, and the
/// hash of the last (which, through the chain's links, covers every row before it too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedRun<'a> {
    pub first_seq: i64,
    pub seq: i64,
    pub row_hash: &'a [u8],
}

/// The keys that seal each tenant's audit chain, by version; the highest seals, every one
/// configured still checks (rotation). Configured as `KONSTRUCT_AUDIT_KEYS=1:<64 hex chars>,2:<…>`.
/// Cheap to clone. Empty when no key is configured: then nothing is sealed.
#[derive(Clone, Default)]
pub struct AuditKeys {
    keys: Arc<BTreeMap<u32, Secret<[u8; 32]>>>,
}

impl fmt::Debug for AuditKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditKeys")
            .field("versions", &self.versions())
            .finish()
    }
}

impl AuditKeys {
    /// Parses `1:<hex>,2:<hex>`; an empty or absent value gives no keys.
    pub fn parse(spec: Option<&Secret<String>>) -> Result<Self, CryptoError> {
        let keys = parse_versioned_keys(spec).map_err(CryptoError::BadAuditKeys)?;
        Ok(Self {
            keys: Arc::new(keys.into_iter().map(|(v, k)| (v, Secret::new(k))).collect()),
        })
    }

    /// One random key, version 1 (tests, throwaway processes).
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self {
            keys: Arc::new(BTreeMap::from([(1, Secret::new(key))])),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The configured versions, oldest first.
    pub fn versions(&self) -> Vec<u32> {
        self.keys.keys().copied().collect()
    }

    #[expect(
        deprecated,
        reason = "digest 0.10 names keys with generic-array 0.14, which is deprecated upstream; \
                  the infallible constructor needs that type"
    )]
    fn mac(
        key: &Secret<[u8; 32]>,
        version: u32,
        tenant: TenantId,
        run: SealedRun<'_>,
    ) -> Hmac<Sha256> {
        use hmac::digest::generic_array::sequence::GenericSequence;
        // HMAC pads a key shorter than the hash's block with zeros (RFC 2104), so the key padded
        // to SHA-256's 64-byte block is the same key; built this way, construction cannot fail.
        let key = key.expose();
        let block =
            hmac::digest::Key::<Hmac<Sha256>>::generate(|i| key.get(i).copied().unwrap_or(0));
        let mut mac = <Hmac<Sha256> as Mac>::new(&block);
        mac.update(SEAL_DOMAIN);
        mac.update(&version.to_be_bytes());
        mac.update(tenant.as_uuid().as_bytes());
        mac.update(&run.first_seq.to_be_bytes());
        mac.update(&run.seq.to_be_bytes());
        mac.update(
            &u32::try_from(run.row_hash.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        mac.update(run.row_hash);
        mac
    }

    /// Seals `run` of `tenant`'s chain with the newest key: the key version and the 32-byte
    /// seal. `None` when no key is configured.
    pub fn seal(&self, tenant: TenantId, run: SealedRun<'_>) -> Option<(u32, Vec<u8>)> {
        let (version, key) = self.keys.iter().next_back()?;
        let mac = Self::mac(key, *version, tenant, run);
        Some((*version, mac.finalize().into_bytes().to_vec()))
    }

    /// Checks a seal made by [`AuditKeys::seal`] (in constant time).
    pub fn check(
        &self,
        tenant: TenantId,
        run: SealedRun<'_>,
        version: u32,
        seal: &[u8],
    ) -> Result<(), SealMismatch> {
        let key = self
            .keys
            .get(&version)
            .ok_or(SealMismatch::UnknownVersion(version))?;
        Self::mac(key, version, tenant, run)
            .verify_slice(seal)
            .map_err(|_| SealMismatch::Invalid(version))
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

    fn run(first_seq: i64, seq: i64, row_hash: &[u8]) -> SealedRun<'_> {
        SealedRun {
            first_seq,
            seq,
            row_hash,
        }
    }

    #[test]
    fn an_audit_seal_checks_only_for_its_tenant_run_and_hash_under_its_key() {
        let keys = AuditKeys::random();
        let (a, b) = (tenant(), tenant());
        let hash = [7u8; 32];
        let (version, seal) = keys.seal(a, run(3, 5, &hash)).unwrap();
        assert_eq!((version, seal.len()), (1, 32));
        assert_eq!(keys.check(a, run(3, 5, &hash), 1, &seal), Ok(()));
        for (tenant, other) in [
            (b, run(3, 5, &hash)),
            (a, run(3, 6, &hash)),
            // Stretched over rows it did not cover.
            (a, run(1, 5, &hash)),
            (a, run(3, 5, &[8u8; 32])),
        ] {
            assert_eq!(
                keys.check(tenant, other, 1, &seal),
                Err(SealMismatch::Invalid(1)),
                "{other:?}"
            );
        }
        assert_eq!(
            keys.check(a, run(3, 5, &hash), 2, &seal),
            Err(SealMismatch::UnknownVersion(2))
        );
        assert_eq!(
            AuditKeys::random().check(a, run(3, 5, &hash), 1, &seal),
            Err(SealMismatch::Invalid(1))
        );
        assert!(AuditKeys::default().seal(a, run(3, 5, &hash)).is_none());
    }

    #[test]
    fn the_audit_seal_is_plain_hmac_sha256_of_the_documented_message() {
        let spec = format!("3:{}", "ab".repeat(32));
        let keys = AuditKeys::parse(Some(&Secret::new(spec))).unwrap();
        let t = tenant();
        let (version, seal) = keys.seal(t, run(40, 42, &[1u8; 32])).unwrap();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&[0xab; 32]).unwrap();
        mac.update(b"konstruct.audit-seal.v2\0");
        mac.update(&3u32.to_be_bytes());
        mac.update(t.as_uuid().as_bytes());
        mac.update(&40i64.to_be_bytes());
        mac.update(&42i64.to_be_bytes());
        mac.update(&32u32.to_be_bytes());
        mac.update(&[1u8; 32]);
        assert_eq!(version, 3);
        assert_eq!(seal, mac.finalize().into_bytes().to_vec());
    }

    #[test]
    fn audit_keys_rotate_and_never_print() {
        let one = format!("1:{}", "11".repeat(32));
        let both = format!("{one},2:{}", "22".repeat(32));
        let old = AuditKeys::parse(Some(&Secret::new(one))).unwrap();
        let new = AuditKeys::parse(Some(&Secret::new(both))).unwrap();
        let t = tenant();
        let (v1, s1) = old.seal(t, run(1, 1, &[0u8; 32])).unwrap();
        let (v2, _) = new.seal(t, run(2, 2, &[0u8; 32])).unwrap();
        assert_eq!((v1, v2), (1, 2));
        assert_eq!(new.check(t, run(1, 1, &[0u8; 32]), 1, &s1), Ok(()));
        assert_eq!(new.versions(), vec![1, 2]);
        assert!(!format!("{new:?}").contains("2222"));
        let err = AuditKeys::parse(Some(&Secret::new("1:zz".into()))).unwrap_err();
        assert!(err.to_string().contains("audit keys"), "{err}");
        assert!(AuditKeys::parse(None).unwrap().is_empty());
    }
}
