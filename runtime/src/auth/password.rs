//! Password hashing with argon2id. Hashing is deliberately slow and memory-hungry, so it runs on
//! the blocking pool (never on an async worker) and through a `Hasher`, which caps how many run
//! at once: a burst of sign-ins cannot take every core and 19 MiB each.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// The shortest password we accept for a new account.
pub const MIN_LENGTH: usize = 12;

/// The longest password we accept (hashing a megabyte is a denial of service, not a password).
pub const MAX_BYTES: usize = 1024;

/// Whether `password` may be a new password: `Err` says why, in words for the person choosing it.
pub fn check_new(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_LENGTH || password.len() > MAX_BYTES {
        return Err(format!("must be {MIN_LENGTH} to {MAX_BYTES} characters"));
    }
    if password.trim().is_empty() {
        return Err("must not be only spaces".into());
    }
    Ok(())
}

fn hasher() -> Argon2<'static> {
    // OWASP's recommended argon2id baseline: 19 MiB, 2 passes, 1 lane.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password into a PHC string (algorithm, parameters and salt included).
pub fn hash(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(hasher()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Checks a password against a stored hash. A malformed hash counts as a mismatch.
pub fn verify(stored: &str, password: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => hasher()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Why a hash could not be computed or checked now.
#[derive(Debug, thiserror::Error)]
pub enum HasherError {
    /// Every slot stayed busy for the whole wait: the caller should answer "try again".
    #[error("too many password checks at once")]
    Busy,
    #[error("hashing failed: {0}")]
    Failed(String),
}

/// One of the hasher's slots, taken until dropped.
#[derive(Debug)]
pub struct HashSlot(
    #[expect(dead_code, reason = "held for its drop")] tokio::sync::OwnedSemaphorePermit,
);

/// Runs password hashes on the blocking pool, at most `limit` at once; the rest wait up to
/// `wait` for a slot.
#[derive(Debug, Clone)]
pub struct Hasher {
    slots: Arc<tokio::sync::Semaphore>,
    wait: Duration,
    running: Arc<AtomicUsize>,
    /// The most that ever ran at once (for tests and metrics).
    peak: Arc<AtomicUsize>,
}

impl Hasher {
    pub fn new(limit: u32, wait: Duration) -> Self {
        Self {
            slots: Arc::new(tokio::sync::Semaphore::new(
                usize::try_from(limit.max(1)).unwrap_or(1),
            )),
            wait,
            running: Arc::default(),
            peak: Arc::default(),
        }
    }

    /// The most hashes that ran at the same time so far.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// Takes one of the slots (waiting up to the configured time), as every hash does; held
    /// until the guard is dropped. Hashing goes through it; so can anything else that must count
    /// against the cap.
    pub async fn hold(&self) -> Result<HashSlot, HasherError> {
        let permit = tokio::time::timeout(self.wait, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| HasherError::Busy)?
            .map_err(|_| HasherError::Busy)?;
        Ok(HashSlot(permit))
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HasherError> {
        let permit = self.hold().await?;
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let running = self.running.clone();
        let result = tokio::task::spawn_blocking(move || {
            let out = work();
            running.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
            out
        })
        .await
        .map_err(|e| HasherError::Failed(e.to_string()))?;
        Ok(result)
    }

    /// Hashes a new password.
    pub async fn hash(&self, password: String) -> Result<String, HasherError> {
        self.run(move || hash(&password))
            .await?
            .map_err(|e| HasherError::Failed(e.to_string()))
    }

    /// Checks a password against a stored hash.
    pub async fn verify(&self, stored: String, password: String) -> Result<bool, HasherError> {
        self.run(move || verify(&stored, &password)).await
    }
}

/// A hash to verify against when the account does not exist, so an unknown email takes as long
/// to answer as a wrong password. Made once, with the same parameters as real hashes.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash("no account has this password").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash("correct horse battery staple").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(&h, "correct horse battery staple"));
        assert!(!verify(&h, "correct horse battery stapl"));
        assert!(!verify("not a hash", "anything"));
        assert!(!verify(dummy_hash(), "anything"));
    }
}
