//! Session tokens: HS256 JWTs with a short lifetime, rotated as they age.
//!
//! A token names the user, its session (`sid`, revocable on sign-out), the user's `auth_version`
//! when it was issued (a role change or password change ends every older session), the sign-in
//! time (sessions end after a maximum age, however active), a CSRF secret, and an optional
//! impersonation.

use chrono::{DateTime, Duration, TimeZone, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The claims we sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: Uuid,
    /// The session id; sign-out revokes it.
    pub sid: Uuid,
    pub iat: i64,
    pub exp: i64,
    /// When the user signed in (seconds since the epoch).
    pub auth_time: i64,
    /// The user's `auth_version` at issue.
    pub ver: i32,
    /// The CSRF secret the client echoes in `X-CSRF-Token`.
    pub csrf: String,
    /// Set while a platform admin impersonates a tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imp: Option<ImpersonationClaim>,
}

/// Which tenant is impersonated, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImpersonationClaim {
    pub tenant: Uuid,
    pub exp: i64,
    /// The admin's own session, which stopping the impersonation returns to. The impersonation
    /// has a session id of its own, revoked when it stops.
    pub parent_sid: Uuid,
}

impl Claims {
    pub fn expires_at(&self) -> DateTime<Utc> {
        Utc.timestamp_opt(self.exp, 0)
            .single()
            .unwrap_or_else(Utc::now)
    }

    /// The impersonation, if it has not run out.
    pub fn active_impersonation(&self, now: DateTime<Utc>) -> Option<&ImpersonationClaim> {
        self.imp.as_ref().filter(|imp| imp.exp > now.timestamp())
    }
}

/// Signs and checks tokens.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    lifetime: Duration,
    max_session: Duration,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

/// Why a token was refused. Never shown to the client beyond "session invalid".
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token invalid: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    #[error("token expired")]
    Expired,
    #[error("session older than the maximum session age")]
    SessionTooOld,
}

impl TokenKeys {
    pub fn new(secret: &[u8], token_minutes: u32, session_max_hours: u32) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            lifetime: Duration::minutes(i64::from(token_minutes)),
            max_session: Duration::hours(i64::from(session_max_hours)),
        }
    }

    /// A random secret, for a process that was given none.
    pub fn random_secret() -> Vec<u8> {
        let mut secret = vec![0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        secret
    }

    /// Claims for a new session.
    pub fn new_session(&self, user: Uuid, auth_version: i32, now: DateTime<Utc>) -> Claims {
        let mut csrf = [0u8; 16];
        rand::rng().fill_bytes(&mut csrf);
        Claims {
            sub: user,
            sid: Uuid::new_v4(),
            iat: now.timestamp(),
            exp: now.timestamp(),
            auth_time: now.timestamp(),
            ver: auth_version,
            csrf: hex::encode(csrf),
            imp: None,
        }
    }

    /// Renews `claims` from `now`: a new expiry, capped by the session's maximum age.
    pub fn renew(&self, claims: &Claims, now: DateTime<Utc>) -> Claims {
        let cap = claims.auth_time + self.max_session.num_seconds();
        Claims {
            iat: now.timestamp(),
            exp: (now + self.lifetime).timestamp().min(cap),
            ..claims.clone()
        }
    }

    /// Signs claims (after `renew`).
    pub fn sign(&self, claims: &Claims) -> Result<String, TokenError> {
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &self.encoding,
        )?)
    }

    /// Checks signature (HS256 only: `alg: none` and other algorithms are refused), expiry (no
    /// leeway) and the maximum session age.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Claims, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked below against `now`, the caller's clock, so it can be tested.
        validation.validate_exp = false;
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)?.claims;
        if now.timestamp() >= claims.exp {
            return Err(TokenError::Expired);
        }
        if now.timestamp() > claims.auth_time + self.max_session.num_seconds() {
            return Err(TokenError::SessionTooOld);
        }
        Ok(claims)
    }

    /// Whether a token issued at `iat` should be replaced (a third of its life is gone).
    pub fn wants_rotation(&self, claims: &Claims, now: DateTime<Utc>) -> bool {
        now.timestamp() - claims.iat > self.lifetime.num_seconds() / 3
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(b"0123456789abcdef0123456789abcdef", 15, 12)
    }

    #[test]
    fn a_signed_token_verifies_and_round_trips() {
        let k = keys();
        let now = Utc::now();
        let claims = k.renew(&k.new_session(Uuid::new_v4(), 3, now), now);
        let token = k.sign(&claims).unwrap();
        assert_eq!(k.verify(&token, now).unwrap(), claims);
    }

    #[test]
    fn expired_tampered_and_unsigned_tokens_are_refused() {
        let k = keys();
        let now = Utc::now();
        let claims = k.renew(&k.new_session(Uuid::new_v4(), 0, now), now);
        let token = k.sign(&claims).unwrap();
        assert!(k.verify(&token, now + Duration::minutes(16)).is_err());
        let other = TokenKeys::new(b"another-secret-another-secret-xx", 15, 12);
        assert!(other.verify(&token, now).is_err());
        // alg: none with the same claims.
        let parts: Vec<_> = token.split('.').collect();
        let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
        assert!(
            k.verify(&format!("{none_header}.{}.", parts[1]), now)
                .is_err()
        );
    }

    #[test]
    fn sessions_end_at_their_maximum_age_however_renewed() {
        let k = keys();
        let start = Utc::now();
        let claims = k.new_session(Uuid::new_v4(), 0, start);
        let late = start + Duration::hours(12) - Duration::minutes(5);
        let renewed = k.renew(&claims, late);
        assert_eq!(renewed.exp, claims.auth_time + 12 * 3600);
        let token = k.sign(&renewed).unwrap();
        assert!(k.verify(&token, late).is_ok());
        assert!(
            k.verify(&token, start + Duration::hours(12) + Duration::seconds(1))
                .is_err()
        );
    }
}
