//! The signed-in principal and what it may do, decided from the database on every request.

use chrono::{DateTime, Utc};
use shared::TenantId;
use shared::auth::{
    Impersonation, Me, Membership, Permission, TenantPermissions, TenantRole, UserSummary,
};

use crate::store::audit::Actor;
use crate::store::users::{MembershipRow, UserRow};

use super::tokens::Claims;

/// Who is calling, loaded fresh for each request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: UserRow,
    pub memberships: Vec<MembershipRow>,
    pub claims: Claims,
    /// The impersonated tenant and its name, while an impersonation is active.
    pub impersonating: Option<(TenantId, String, DateTime<Utc>)>,
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
        let tenant_perms = || TenantRole::CustomerAdmin.permissions().to_vec();
        if let Some((imp, _, _)) = &self.impersonating {
            return if *imp == tenant {
                TenantAccess::Granted(tenant_perms())
            } else {
                TenantAccess::None
            };
        }
        if self.is_platform_admin() {
            return TenantAccess::Granted(tenant_perms());
        }
        match self.memberships.iter().find(|m| m.tenant == tenant) {
            Some(m) => TenantAccess::Granted(m.role.permissions().to_vec()),
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
            Some((tenant, _, _)) => vec![TenantPermissions {
                tenant_id: *tenant,
                permissions: TenantRole::CustomerAdmin.permissions().to_vec(),
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
            impersonation: self
                .impersonating
                .as_ref()
                .map(|(tenant, name, expires_at)| Impersonation {
                    tenant_id: *tenant,
                    tenant_name: name.clone(),
                    expires_at: *expires_at,
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
