//! People: invitations into a tenant and password resets, and the links their mails carry.
//!
//! A link's token is never stored. It is an HMAC, under a key derived from the session-signing
//! secret, of what the link is for, the row's id and its generation; the row keeps the token's
//! SHA-256, which a presented token is looked up by. So a database reader cannot make a working
//! link, the job that mails a link can make it again on every attempt (the same link each time),
//! and resending (a new generation) makes the previous link stop working.

pub mod jobs;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::config::PeopleSettings;
use crate::links::PublicUrl;
use crate::mail::Mailer;

type HmacSha256 = Hmac<Sha256>;

#[expect(
    clippy::expect_used,
    reason = "HMAC takes a key of any length: this cannot fail"
)]
fn mac(key: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(key).expect("HMAC takes any key length")
}

/// What a link is for: part of what its token signs, so one kind's token is never another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkPurpose {
    Invitation,
    PasswordReset,
}

impl LinkPurpose {
    fn label(self) -> &'static str {
        match self {
            LinkPurpose::Invitation => "invitation",
            LinkPurpose::PasswordReset => "password_reset",
        }
    }
}

/// The length of every token: 32 bytes, base64url without padding.
pub const TOKEN_LEN: usize = 43;

/// Makes links' tokens.
#[derive(Clone)]
pub struct LinkKey([u8; 32]);

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey([redacted])")
    }
}

impl LinkKey {
    /// The key for links, derived from the session-signing secret (a key of its own: a token is
    /// never usable as, or derivable from, anything the session key signs).
    pub fn derive(secret: &[u8]) -> Self {
        let mut mac = mac(secret);
        mac.update(b"konstruct link tokens v1");
        Self(mac.finalize().into_bytes().into())
    }

    /// The token of the link for `purpose` of row `id` at `generation`.
    pub fn token(&self, purpose: LinkPurpose, id: Uuid, generation: i32) -> String {
        let mut mac = mac(&self.0);
        mac.update(format!("{}:{id}:{generation}", purpose.label()).as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

/// What the row stores of a token: its SHA-256.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Whether `token` has the shape of one of ours (checked before anything is looked up).
pub fn well_formed(token: &str) -> bool {
    token.len() == TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Mail and links for people: what the API and the mail jobs share.
#[derive(Debug, Clone)]
pub struct People {
    /// `None`: no SMTP server is configured (mail jobs wait for one, visibly).
    pub mailer: Option<Mailer>,
    pub public_url: PublicUrl,
    pub links: LinkKey,
    pub settings: PeopleSettings,
}

impl People {
    /// The absolute link of a portal page with `token` in the fragment (never sent to a server).
    pub fn link(&self, path: &str, token: &str) -> String {
        format!("{}#token={token}", self.public_url.link(path))
    }
}

/// How people read a role in a mail.
pub fn role_words(role: shared::auth::TenantRole) -> &'static str {
    match role {
        shared::auth::TenantRole::CustomerAdmin => "customer admin",
        shared::auth::TenantRole::CustomerOperator => "customer operator (read-only)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_bound_to_purpose_row_and_generation() {
        let key = LinkKey::derive(b"a session secret of thirty-two bytes!");
        let id = Uuid::new_v4();
        let first = key.token(LinkPurpose::Invitation, id, 1);
        assert!(well_formed(&first), "{first}");
        assert_eq!(first, key.token(LinkPurpose::Invitation, id, 1));
        assert_ne!(first, key.token(LinkPurpose::Invitation, id, 2));
        assert_ne!(first, key.token(LinkPurpose::PasswordReset, id, 1));
        assert_ne!(first, key.token(LinkPurpose::Invitation, Uuid::new_v4(), 1));
        let other = LinkKey::derive(b"another session secret, also long");
        assert_ne!(first, other.token(LinkPurpose::Invitation, id, 1));
        assert_eq!(token_hash(&first).len(), 32);
        for bad in [
            "",
            "short",
            &format!("{first}x"),
            &first.replace(|_| true, "="),
        ] {
            assert!(!well_formed(bad), "{bad}");
        }
    }
}
