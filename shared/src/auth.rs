//! Roles, permissions, sign-in and the `/api/me` answer.
//!
//! The role → permission table lives here so the server (which enforces it) and the portal (which
//! hides what a role cannot do) read the same one. Hidden buttons are a courtesy; the server's 403
//! is the authority.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{TenantId, text_enum};

/// A role inside one tenant. `platform_admin` is global and is not a tenant role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TenantRole {
    /// Manages the tenant: agents, members, billing, settings.
    CustomerAdmin,
    /// Reads agents, conversations and usage; changes nothing.
    CustomerOperator,
}

text_enum!(TenantRole { CustomerAdmin => "customer_admin", CustomerOperator => "customer_operator" });

impl TenantRole {
    /// What this role may do inside its tenant.
    pub fn permissions(self) -> &'static [Permission] {
        match self {
            TenantRole::CustomerAdmin => &[
                Permission::TenantRead,
                Permission::AgentsRead,
                Permission::AgentsWrite,
                Permission::ChatSend,
                Permission::MembersRead,
                Permission::MembersWrite,
                Permission::LlmKeysManage,
                Permission::ChannelsRead,
                Permission::ChannelsManage,
                Permission::SettingsManage,
                Permission::EndUsersRead,
                Permission::EndUsersManage,
                Permission::KnowledgeRead,
                Permission::KnowledgeManage,
                Permission::ToolsRead,
                Permission::ToolsManage,
                Permission::AuditRead,
                Permission::JobsRead,
                Permission::JobsManage,
                Permission::ConversationsRead,
                Permission::ConversationsHandle,
                Permission::UsageRead,
                Permission::BudgetsManage,
            ],
            TenantRole::CustomerOperator => &[
                Permission::TenantRead,
                Permission::AgentsRead,
                Permission::ChannelsRead,
                Permission::EndUsersRead,
                Permission::KnowledgeRead,
                Permission::ToolsRead,
                Permission::AuditRead,
                Permission::JobsRead,
                Permission::ConversationsRead,
                Permission::UsageRead,
            ],
        }
    }
}

/// Everything an endpoint can require. Tenant permissions apply inside one tenant; platform
/// permissions only to platform admins (and never while impersonating).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Read the tenant's own record.
    TenantRead,
    /// Read AI employees.
    AgentsRead,
    /// Create, edit and delete AI employees.
    AgentsWrite,
    /// Send messages to an AI employee in the test chat. Each one costs an LLM call, so it is not
    /// a read permission: operators watch, admins talk.
    ChatSend,
    /// List members and their roles.
    MembersRead,
    /// Change members' roles and remove members.
    MembersWrite,
    /// See, set, replace and delete the tenant's own LLM provider keys.
    LlmKeysManage,
    /// See the tenant's channel connections (Slack workspaces, WhatsApp numbers).
    ChannelsRead,
    /// Connect and disconnect channels.
    ChannelsManage,
    /// Change the tenant's own settings (time zone, locale).
    SettingsManage,
    /// See the people who talk to the tenant's agents (end users).
    EndUsersRead,
    /// See and delete what the agents remember about end users, and erase an end user.
    EndUsersManage,
    /// See the knowledge base: documents, their indexing state, and what a search retrieves.
    KnowledgeRead,
    /// Upload, import, retry, assign and delete documents; change the embedding model.
    KnowledgeManage,
    /// See the tools agents can be given and the calls agents made (with their arguments and
    /// results, as in the conversations they belong to).
    ToolsRead,
    /// Create, edit, test and delete the tenant's HTTP tools.
    ToolsManage,
    /// Verify the tenant's audit trail and export its head (read-only).
    AuditRead,
    /// See the tenant's background jobs: what ran, what waits, what failed and why.
    JobsRead,
    /// Queue a failed or cancelled background job again.
    JobsManage,
    /// See conversations, their transcripts, hand-off packets and the live inbox; choose one's
    /// own hand-off notifications.
    ConversationsRead,
    /// Claim, assign, reply as a person, write private notes, snooze, resolve and hand back to
    /// the AI.
    ConversationsHandle,
    /// See the tenant's usage and cost (tokens, calls, conversations, hand-offs), its budgets and
    /// their alerts.
    UsageRead,
    /// Set, change and remove budgets.
    BudgetsManage,
    /// Create, list, edit, suspend and delete tenants (platform).
    TenantsManage,
    /// Create user accounts with a role in a tenant (platform, until invitations exist).
    UsersCreate,
    /// Act inside a tenant as its admin for a limited time (platform).
    Impersonate,
}

impl Permission {
    /// Permissions only a platform admin holds.
    pub const PLATFORM: [Permission; 3] = [
        Permission::TenantsManage,
        Permission::UsersCreate,
        Permission::Impersonate,
    ];

    pub fn is_platform(self) -> bool {
        Self::PLATFORM.contains(&self)
    }
}

/// `POST /api/auth/login`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

/// The answer to sign-in and refresh. The same token is also set as an HttpOnly cookie; API
/// clients send it as `Authorization: Bearer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionToken {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    /// Send this back as `X-CSRF-Token` on state-changing requests authenticated by the cookie.
    pub csrf_token: String,
    pub me: Me,
}

/// Who is signed in and what they may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Me {
    pub user: UserSummary,
    pub platform_admin: bool,
    /// The tenants this user belongs to, with the role in each.
    pub memberships: Vec<Membership>,
    /// Set while a platform admin impersonates a tenant; the portal shows a banner.
    pub impersonation: Option<Impersonation>,
    /// Effective permissions per tenant the user can act in (impersonation narrows this to one).
    pub tenant_permissions: Vec<TenantPermissions>,
    /// Platform permissions (empty unless a platform admin who is not impersonating).
    pub platform_permissions: Vec<Permission>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserSummary {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Membership {
    #[cfg_attr(feature = "openapi", schema(value_type = Uuid))]
    pub tenant_id: TenantId,
    pub tenant_slug: String,
    pub tenant_name: String,
    pub role: TenantRole,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantPermissions {
    #[cfg_attr(feature = "openapi", schema(value_type = Uuid))]
    pub tenant_id: TenantId,
    pub permissions: Vec<Permission>,
}

/// An active impersonation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Impersonation {
    #[cfg_attr(feature = "openapi", schema(value_type = Uuid))]
    pub tenant_id: TenantId,
    pub tenant_name: String,
    pub expires_at: DateTime<Utc>,
}

/// `POST /api/admin/impersonate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImpersonateRequest {
    #[cfg_attr(feature = "openapi", schema(value_type = Uuid))]
    pub tenant_id: TenantId,
    /// How long, 1 to 60 minutes; 30 when omitted.
    pub minutes: Option<u32>,
}
