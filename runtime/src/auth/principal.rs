//! The signed-in principal and what it may do, decided from the database on every request.

use chrono::{DateTime, Utc};
use shared::TenantId;
use shared::auth::{
    Impersonation, Me, Membership, Permission, TenantPermissions, TenantRole, UserSummary,
};
use shared::resources::TenantStatus;

use crate::store::audit::Actor;
use crate::store::users::{MembershipRow, UserRow};

use super::tokens::Claims;

/// Who is calling, loaded fresh for each request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: UserRow,
    pub memberships: Vec<MembershipRow>,
    pub claims: Claims,
    /// The impersonated tenant, while an impersonation is active.
    pub impersonating: Option<Impersonated>,
}

/// The tenant a platform admin is impersonating.
#[derive(Debug, Clone)]
pub struct Impersonated {
    pub tenant: TenantId,
    pub name: String,
    /// False while the tenant is suspended: the session is then read-only, like its members'.
    pub active: bool,
    pub until: DateTime<Utc>,
}

/// What may be done in a suspended tenant: read, nothing else.
const READ_ONLY: [Permission; 6] = [
    Permission::TenantRead,
    Permission::AgentsRead,
    Permission::MembersRead,
    Permission::EndUsersRead,
    Permission::ConversationsRead,
    Permission::UsageRead,
];

fn narrowed(perms: &[Permission], active: bool) -> Vec<Permission> {
    perms
        .iter()
        .copied()
        .filter(|p| active || READ_ONLY.contains(p))
        .collect()
}

/// What a principal may do in one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantAccess {
    /// Not a member and no global access: answer 404 so the tenant's existence does not leak.
    None,
    /// Acting in the tenant with these permissions.
    Granted(Vec<Permission>),
}

impl Principal {
    pub fn is_platform_admin(&self) -> bool {
        self.user.is_platform_admin
    }

    /// Platform permissions apply to platform admins who are not impersonating: impersonation
    /// narrows the session to one tenant's admin.
    pub fn has_platform(&self, permission: Permission) -> bool {
        permission.is_platform() && self.is_platform_admin() && self.impersonating.is_none()
    }

    pub fn access_to(&self, tenant: TenantId) -> TenantAccess {
        let admin = TenantRole::CustomerAdmin.permissions();
        if let Some(imp) = &self.impersonating {
            return if imp.tenant == tenant {
                TenantAccess::Granted(narrowed(admin, imp.active))
            } else {
                TenantAccess::None
            };
        }
        if self.is_platform_admin() {
            // Platform admins may repair a suspended tenant, so they keep every permission.
            return TenantAccess::Granted(admin.to_vec());
        }
        match self.memberships.iter().find(|m| m.tenant == tenant) {
            Some(m) => TenantAccess::Granted(narrowed(
                m.role.permissions(),
                m.tenant_status == TenantStatus::Active,
            )),
            None => TenantAccess::None,
        }
    }

    /// How this principal appears in the audit trail.
    pub fn actor(&self) -> Actor {
        match (&self.impersonating, self.is_platform_admin()) {
            (Some(_), _) => Actor::Impersonating {
                admin: self.user.id,
            },
            (None, true) => Actor::PlatformAdmin {
                admin: self.user.id,
            },
            (None, false) => Actor::User(self.user.id),
        }
    }

    /// The `/api/me` answer.
    pub fn me(&self) -> Me {
        let memberships = self
            .memberships
            .iter()
            .map(|m| Membership {
                tenant_id: m.tenant,
                tenant_slug: m.tenant_slug.clone(),
                tenant_name: m.tenant_name.clone(),
                role: m.role,
            })
            .collect();
        let tenant_permissions = match &self.impersonating {
            Some(imp) => vec![TenantPermissions {
                tenant_id: imp.tenant,
                permissions: match self.access_to(imp.tenant) {
                    TenantAccess::Granted(p) => p,
                    TenantAccess::None => Vec::new(),
                },
            }],
            None => self
                .memberships
                .iter()
                .map(|m| TenantPermissions {
                    tenant_id: m.tenant,
                    permissions: match self.access_to(m.tenant) {
                        TenantAccess::Granted(p) => p,
                        TenantAccess::None => Vec::new(),
                    },
                })
                .collect(),
        };
        Me {
            user: UserSummary {
                id: self.user.id,
                email: self.user.email.clone(),
                display_name: self.user.display_name.clone(),
            },
            platform_admin: self.is_platform_admin(),
            memberships,
            impersonation: self.impersonating.as_ref().map(|imp| Impersonation {
                tenant_id: imp.tenant,
                tenant_name: imp.name.clone(),
                expires_at: imp.until,
            }),
            tenant_permissions,
            platform_permissions: if self.is_platform_admin() && self.impersonating.is_none() {
                Permission::PLATFORM.to_vec()
            } else {
                Vec::new()
            },
        }
    }
}
