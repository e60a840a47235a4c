//! People: invitations into a tenant, password resets and password changes, and how the mail
//! that carries their links is doing.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::TenantRole;
use crate::text_enum;

/// Where an invitation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum InvitationStatus {
    /// Sent (or being sent) and not yet accepted; its link works until `expires_at`.
    Pending,
    /// Not accepted in time; resending gives it a new link and a new expiry.
    Expired,
    Accepted,
    Revoked,
}

text_enum!(InvitationStatus {
    Pending => "pending",
    Expired => "expired",
    Accepted => "accepted",
    Revoked => "revoked",
});

/// How the mail carrying a link is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its first attempt.
    Queued,
    /// The mail server took it.
    Sent,
    /// An attempt failed; another follows (`last_error` says why).
    Retrying,
    /// Every attempt failed, or the mail server refused it for good; resend to try again.
    Failed,
}

text_enum!(DeliveryState {
    Queued => "queued",
    Sent => "sent",
    Retrying => "retrying",
    Failed => "failed",
});

/// The delivery of an invitation's latest mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MailDelivery {
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    /// Our own words on the last failed attempt: never the mail server's text.
    pub last_error: Option<String>,
    /// When the mail server took it.
    pub sent_at: Option<DateTime<Utc>>,
    /// When the next attempt is due, while retrying.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// An invitation into a tenant, as its admins see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Invitation {
    pub id: Uuid,
    pub email: String,
    /// The role the invitee gets on accepting.
    pub role: TenantRole,
    pub status: InvitationStatus,
    /// Who sent it (their name, else their email); `None` once that account is gone.
    pub invited_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// How many times its mail was queued (1 + resends).
    pub sends: u32,
    pub delivery: Option<MailDelivery>,
}

/// `POST /api/tenants/{tenant_id}/invitations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct InvitationCreate {
    pub email: String,
    pub role: TenantRole,
}

/// A link's token, sent in a body (never in a URL the server logs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LinkToken {
    pub token: String,
}

/// `POST /api/invitations/lookup`: what the invitee's page shows before they accept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InvitationPreview {
    pub tenant_name: String,
    pub email: String,
    pub role: TenantRole,
    pub invited_by: Option<String>,
    pub expires_at: DateTime<Utc>,
    /// Whether an account with this email exists: then the invitee signs in to accept, else they
    /// choose a name and a password.
    pub account_exists: bool,
}

/// `POST /api/invitations/accept`: accept as a new account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct InvitationAccept {
    pub token: String,
    pub display_name: String,
    /// At least 12 characters.
    pub password: String,
}

/// `POST /api/auth/password-reset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PasswordResetRequest {
    pub email: String,
}

/// The answer to a reset request: the same whether the account exists or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PasswordResetRequested {
    pub message: String,
}

/// `POST /api/auth/password-reset/lookup`: whose password a reset link sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PasswordResetPreview {
    pub email: String,
    pub expires_at: DateTime<Utc>,
}

/// `POST /api/auth/password-reset/complete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PasswordResetComplete {
    pub token: String,
    /// At least 12 characters.
    pub password: String,
}

/// `POST /api/me/password`: change one's own password; every other session ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    /// At least 12 characters.
    pub new_password: String,
}

/// The portal's path of an invitation link; the token follows in the fragment (`#token=…`), so
/// it never reaches a server log or a `Referer`.
pub const INVITATION_PATH: &str = "/invitation";
/// The portal's path of a password-reset link (token in the fragment, as above).
pub const RESET_PATH: &str = "/reset-password";
