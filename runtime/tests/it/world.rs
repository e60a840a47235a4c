//! A two-tenant world with one user per role, for the authorization tests.

use runtime::auth::password;
use runtime::store::users;
use shared::auth::TenantRole;
use shared::{AgentId, TenantId};
use uuid::Uuid;

use crate::fixtures::seed_tenant;
use crate::support::{Client, TestApp};

/// The password every world user has.
pub const PASSWORD: &str = "correct horse battery staple";

#[derive(Debug, Clone)]
pub struct World {
    pub a: TenantId,
    pub b: TenantId,
    pub operator_a: Uuid,
    pub admin_a: Uuid,
    pub admin_b: Uuid,
    pub platform: Uuid,
    pub agent_b: AgentId,
}

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Anonymous,
    OperatorA,
    AdminA,
    AdminB,
    ImpersonatingA,
    PlatformAdmin,
}

impl Who {
    /// In this order the platform admin comes last, since it may delete tenant A.
    pub const ALL: [Who; 6] = [
        Who::Anonymous,
        Who::OperatorA,
        Who::AdminA,
        Who::AdminB,
        Who::ImpersonatingA,
        Who::PlatformAdmin,
    ];
}

pub async fn user(app: &TestApp, email: &str, platform_admin: bool) -> Uuid {
    // Hashing is slow on purpose; every world user shares one hash of PASSWORD.
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let hash = HASH.get_or_init(|| password::hash(PASSWORD).unwrap());
    users::create(&app.store, email, "Test user", hash, platform_admin)
        .await
        .unwrap()
        .id
}

pub async fn member(app: &TestApp, tenant: TenantId, user: Uuid, role: TenantRole) {
    let mut tx = app.store.tenant_tx(tenant).await.unwrap();
    users::add_member(&mut tx, user, role).await.unwrap();
    tx.commit().await.unwrap();
}

pub async fn agent(app: &TestApp, tenant: TenantId, name: &str) -> AgentId {
    agent_preferring(app, tenant, name, "").await
}

/// An agent whose model preference names the group it wants first.
pub async fn agent_preferring(
    app: &TestApp,
    tenant: TenantId,
    name: &str,
    model_preference: &str,
) -> AgentId {
    agent_with(app, tenant, name, model_preference, "").await
}

/// An agent with a business function, as one that answers a WhatsApp number must have.
pub async fn agent_serving(
    app: &TestApp,
    tenant: TenantId,
    name: &str,
    business_function: &str,
) -> AgentId {
    agent_with(app, tenant, name, "", business_function).await
}

async fn agent_with(
    app: &TestApp,
    tenant: TenantId,
    name: &str,
    model_preference: &str,
    business_function: &str,
) -> AgentId {
    let mut tx = app.store.tenant_tx(tenant).await.unwrap();
    let row = runtime::store::agents::create(
        &mut tx,
        &runtime::store::agents::AgentFields {
            name,
            job_title: "Support",
            persona: "Kind",
            system_prompt: "Help",
            job_description: "",
            model_preference,
            business_function,
            tools: serde_json::json!([]),
            escalation_rules: serde_json::json!([]),
            scope_guard: "whatsapp",
            in_scope_examples: serde_json::json!([]),
            ai_disclosure: "",
            cite_or_handoff: false,
            long_term_memory: true,
            max_tool_steps: None,
            turn_deadline_secs: None,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    row.id
}

impl World {
    pub async fn new(app: &TestApp) -> World {
        let a = seed_tenant(&app.store, "a").await.tenant;
        let b = seed_tenant(&app.store, "b").await.tenant;
        let tag = &Uuid::new_v4().simple().to_string()[..8];
        let operator_a = user(app, &format!("operator-a-{tag}@example.com"), false).await;
        let admin_a = user(app, &format!("admin-a-{tag}@example.com"), false).await;
        let admin_b = user(app, &format!("admin-b-{tag}@example.com"), false).await;
        let platform = user(app, &format!("platform-{tag}@example.com"), true).await;
        member(app, a, operator_a, TenantRole::CustomerOperator).await;
        member(app, a, admin_a, TenantRole::CustomerAdmin).await;
        member(app, b, admin_b, TenantRole::CustomerAdmin).await;
        agent(app, a, "Ava").await;
        let agent_b = agent(app, b, "Bea").await;
        World {
            a,
            b,
            operator_a,
            admin_a,
            admin_b,
            platform,
            agent_b,
        }
    }

    /// A typed client calling as `who`.
    pub async fn as_who<'a>(&self, app: &'a TestApp, who: Who) -> Client<'a> {
        app.client(self.token(app, who).await)
    }

    /// Tenant A's customer admin.
    pub async fn as_admin_a<'a>(&self, app: &'a TestApp) -> Client<'a> {
        self.as_who(app, Who::AdminA).await
    }

    /// Tenant A's read-only customer operator.
    pub async fn as_operator_a<'a>(&self, app: &'a TestApp) -> Client<'a> {
        self.as_who(app, Who::OperatorA).await
    }

    /// Tenant B's customer admin (a stranger to tenant A).
    pub async fn as_admin_b<'a>(&self, app: &'a TestApp) -> Client<'a> {
        self.as_who(app, Who::AdminB).await
    }

    /// A fresh token for `who`, or none for the anonymous caller.
    pub async fn token(&self, app: &TestApp, who: Who) -> Option<String> {
        Some(match who {
            Who::Anonymous => return None,
            Who::OperatorA => app.token_for(self.operator_a, None).await,
            Who::AdminA => app.token_for(self.admin_a, None).await,
            Who::AdminB => app.token_for(self.admin_b, None).await,
            // Through the real endpoint, as the portal gets it.
            Who::ImpersonatingA => {
                let own = app.token_for(self.platform, None).await;
                let res = app
                    .request(reqwest::Method::POST, "/api/admin/impersonate", Some(&own))
                    .json(&serde_json::json!({ "tenant_id": self.a }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), reqwest::StatusCode::OK);
                res.json::<shared::auth::SessionToken>()
                    .await
                    .unwrap()
                    .token
            }
            Who::PlatformAdmin => app.token_for(self.platform, None).await,
        })
    }
}
