//! People: invitations by mail, password resets and changes, through the real API, a real job
//! runner and a real SMTP server (whose received mail the tests read).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use runtime::jobs::{Registry, RunnerSettings};
use serde_json::{Value, json};
use shared::TenantId;
use shared::auth::{Me, SessionToken, TenantRole};
use shared::people::{
    DeliveryState, INVITATION_PATH, Invitation, InvitationPreview, InvitationStatus, RESET_PATH,
};
use uuid::Uuid;

use crate::mailbox::{self, Mail};
use crate::support::{AppOptions, TestApp};
use crate::world::{self, PASSWORD, World};

const PUBLIC_URL: &str = "https://konstruct.example.test";
const NEW_PASSWORD: &str = "a brand new passphrase";

fn runner() -> (RunnerSettings, Registry) {
    (
        RunnerSettings {
            concurrency: 2,
            lease: Duration::from_secs(10),
            poll_interval: Duration::from_secs(30),
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_millis(500),
        },
        Registry::builtin().unwrap(),
    )
}

async fn spawn(options: AppOptions) -> TestApp {
    TestApp::spawn_with(AppOptions {
        jobs: Some(runner()),
        public_url: Some(PUBLIC_URL.into()),
        ..options
    })
    .await
}

/// An invitation into `tenant` made straight in the store (no mail), and its link's token.
pub async fn invitation_link(app: &TestApp, tenant: TenantId, email: &str) -> (Uuid, String) {
    use runtime::people::{LinkPurpose, token_hash};
    let id = Uuid::new_v4();
    let token = app.app.people.links.token(LinkPurpose::Invitation, id, 1);
    let mut tx = app.store.tenant_tx(tenant).await.unwrap();
    runtime::store::people::create(
        &mut tx,
        &runtime::store::people::NewInvitation {
            id,
            email,
            role: TenantRole::CustomerOperator,
            token_hash: &token_hash(&token),
            invited_by: None,
            expires_at: chrono::Utc::now() + chrono::Duration::days(1),
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    (id, token)
}

/// A password reset of `user` made straight in the store (no mail), and its link's token.
pub async fn reset_link(app: &TestApp, user: Uuid) -> String {
    use runtime::people::{LinkPurpose, token_hash};
    let id = Uuid::new_v4();
    let token = app
        .app
        .people
        .links
        .token(LinkPurpose::PasswordReset, id, 1);
    runtime::store::people::create_reset(
        &app.store,
        id,
        user,
        &token_hash(&token),
        chrono::Utc::now() + chrono::Duration::minutes(30),
    )
    .await
    .unwrap();
    token
}

fn address(what: &str) -> String {
    format!(
        "{what}-{}@example.com",
        &Uuid::new_v4().simple().to_string()[..10]
    )
}

async fn invite(
    app: &TestApp,
    token: &str,
    tenant: TenantId,
    email: &str,
    role: TenantRole,
) -> reqwest::Response {
    app.request(
        Method::POST,
        &format!("/api/tenants/{tenant}/invitations"),
        Some(token),
    )
    .json(&json!({ "email": email, "role": role }))
    .send()
    .await
    .unwrap()
}

async fn invited(
    app: &TestApp,
    token: &str,
    tenant: TenantId,
    email: &str,
    role: TenantRole,
) -> Invitation {
    let res = invite(app, token, tenant, email, role).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json().await.unwrap()
}

async fn post(app: &TestApp, path: &str, token: Option<&str>, body: Value) -> reqwest::Response {
    app.request(Method::POST, path, token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn message(res: reqwest::Response) -> String {
    res.json::<Value>().await.unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn pending(app: &TestApp, token: &str, tenant: TenantId) -> Vec<Invitation> {
    let res = app
        .request(
            Method::GET,
            &format!("/api/tenants/{tenant}/invitations"),
            Some(token),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    serde_json::from_value(res.json::<Value>().await.unwrap()["items"].clone()).unwrap()
}

async fn status_of(app: &TestApp, token: &str, path: &str) -> StatusCode {
    app.request(Method::GET, path, Some(token))
        .send()
        .await
        .unwrap()
        .status()
}

/// Waits until the admin's list shows the invitation's mail in `state`.
async fn wait_delivery(
    app: &TestApp,
    token: &str,
    tenant: TenantId,
    id: Uuid,
    state: DeliveryState,
) -> Invitation {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let found = pending(app, token, tenant)
            .await
            .into_iter()
            .find(|i| i.id == id)
            .expect("the invitation is listed");
        if found.delivery.as_ref().map(|d| d.state) == Some(state) {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the mail never reached {state:?}: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn tenant_name(app: &TestApp, tenant: TenantId) -> String {
    let mut tx = app.store.tenant_tx(tenant).await.unwrap();
    runtime::store::tenants::current(&mut tx)
        .await
        .unwrap()
        .unwrap()
        .name
}

#[tokio::test]
async fn an_invited_colleague_gets_the_mail_joins_with_the_role_and_sees_only_what_it_allows() {
    let app = spawn(AppOptions::default()).await;
    let w = World::new(&app).await;
    let admin = app.token_for(w.admin_a, None).await;
    let email = address("colleague");
    let invitation = invited(&app, &admin, w.a, &email, TenantRole::CustomerOperator).await;
    assert_eq!(invitation.status, InvitationStatus::Pending);
    assert_eq!(invitation.role, TenantRole::CustomerOperator);
    assert_eq!(invitation.sends, 1);
    let days = (invitation.expires_at - invitation.created_at).num_hours();
    assert!(
        (167..=168).contains(&days),
        "expires after 7 days: {days} h"
    );

    // The mail: from the tenant's name, in HTML and text, with a link under the public URL.
    let mail = mailbox::wait_for(&email, 1).await.remove(0);
    let name = tenant_name(&app, w.a).await;
    assert!(mail.subject.contains(&name), "{}", mail.subject);
    assert_eq!(mail.from[0].name, name);
    assert_eq!(mail.from[0].address, "no-reply@konstruct.test");
    let link = mail.link(INVITATION_PATH);
    assert!(
        link.starts_with(&format!("{PUBLIC_URL}{INVITATION_PATH}#token=")),
        "{link}"
    );
    assert!(mail.html.contains(&link), "the HTML mail has the link too");
    assert!(mail.text.contains("customer operator"), "{}", mail.text);
    let listed = wait_delivery(&app, &admin, w.a, invitation.id, DeliveryState::Sent).await;
    assert!(listed.delivery.unwrap().sent_at.is_some());

    // The invitee's page learns what the link is for.
    let token = mail.token(INVITATION_PATH);
    let res = post(
        &app,
        "/api/invitations/lookup",
        None,
        json!({ "token": token }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let preview: InvitationPreview = res.json().await.unwrap();
    assert_eq!(preview.tenant_name, name);
    assert_eq!(preview.email, email);
    assert_eq!(preview.role, TenantRole::CustomerOperator);
    assert!(!preview.account_exists);
    assert!(preview.invited_by.is_some());

    // A too-short password changes nothing.
    let res = post(
        &app,
        "/api/invitations/accept",
        None,
        json!({ "token": token, "display_name": "Cole League", "password": "short" }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        runtime::store::users::get_by_email(&app.store, &email)
            .await
            .unwrap()
            .is_none()
    );

    // Accepting as a new account signs them in with the invited role in tenant A only.
    let res = post(
        &app,
        "/api/invitations/accept",
        None,
        json!({ "token": token, "display_name": "Cole League", "password": NEW_PASSWORD }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let session: SessionToken = res.json().await.unwrap();
    assert_eq!(session.me.memberships.len(), 1);
    assert_eq!(session.me.memberships[0].tenant_id, w.a);
    assert_eq!(session.me.memberships[0].role, TenantRole::CustomerOperator);
    let me = session.token;

    // What an operator may do, and not.
    assert_eq!(
        status_of(&app, &me, &format!("/api/tenants/{}/agents", w.a)).await,
        StatusCode::OK
    );
    assert_eq!(
        status_of(&app, &me, &format!("/api/tenants/{}/members", w.a)).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status_of(&app, &me, &format!("/api/tenants/{}/agents", w.b)).await,
        StatusCode::NOT_FOUND
    );
    let res = post(
        &app,
        &format!("/api/tenants/{}/agents", w.a),
        Some(&me),
        json!({ "name": "Nope", "role": "Support" }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = invite(
        &app,
        &me,
        w.a,
        &address("friend"),
        TenantRole::CustomerAdmin,
    )
    .await;
    assert_eq!(
        res.status(),
        StatusCode::FORBIDDEN,
        "an operator cannot invite"
    );

    // The link was single-use; the invitation is no longer pending; the trail says who joined.
    let res = post(
        &app,
        "/api/invitations/accept",
        None,
        json!({ "token": token, "display_name": "Again", "password": NEW_PASSWORD }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(message(res).await.contains("already been used"));
    assert!(
        pending(&app, &admin, w.a)
            .await
            .iter()
            .all(|i| i.id != invitation.id)
    );
    let actions = app.audit_actions(w.a).await;
    for action in ["invitation.created", "invitation.accepted", "member.added"] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
    // The address is not in the trail (it stays with the invitation).
    let trail = serde_json::to_string(&app.audit_events(w.a).await).unwrap();
    assert!(!trail.contains(&email), "{trail}");

    // Their sign-in is recorded for the members page.
    let res = app
        .request(
            Method::GET,
            &format!("/api/tenants/{}/members", w.a),
            Some(&admin),
        )
        .send()
        .await
        .unwrap();
    let members: Value = res.json().await.unwrap();
    let joined = members["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == email.as_str())
        .expect("the new member is listed");
    assert_eq!(joined["role"], "customer_operator");
    assert!(joined["last_sign_in_at"].is_string(), "{joined}");
}

#[tokio::test]
async fn an_existing_account_joins_only_signed_in_as_the_invited_address() {
    let app = spawn(AppOptions::default()).await;
    let w = World::new(&app).await;
    let admin = app.token_for(w.admin_a, None).await;
    // Tenant B's admin is invited into A as an admin.
    let invitee = runtime::store::users::get(&app.store, w.admin_b)
        .await
        .unwrap()
        .unwrap();
    invited(&app, &admin, w.a, &invitee.email, TenantRole::CustomerAdmin).await;
    let mail = mailbox::wait_for(&invitee.email, 1).await.remove(0);
    let token = mail.token(INVITATION_PATH);

    let res = post(
        &app,
        "/api/invitations/lookup",
        None,
        json!({ "token": token }),
    )
    .await;
    let preview: InvitationPreview = res.json().await.unwrap();
    assert!(preview.account_exists);

    // Not as a new account with the same address, not anonymously, not as someone else.
    let res = post(
        &app,
        "/api/invitations/accept",
        None,
        json!({ "token": token, "display_name": "Impostor", "password": NEW_PASSWORD }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let res = post(
        &app,
        "/api/invitations/join",
        None,
        json!({ "token": token }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let someone_else = app.token_for(w.operator_a, None).await;
    let res = post(
        &app,
        "/api/invitations/join",
        Some(&someone_else),
        json!({ "token": token }),
    )
    .await;
    assert_eq!(
        res.status(),
        StatusCode::FORBIDDEN,
        "a forwarded link admits nobody else"
    );
    let platform = app.token_for(w.platform, None).await;
    let res = post(
        &app,
        "/api/invitations/join",
        Some(&platform),
        json!({ "token": token }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // Signed in as the invited address: joined with the invited role, still in B too.
    let own = app.token_for(w.admin_b, None).await;
    let res = post(
        &app,
        "/api/invitations/join",
        Some(&own),
        json!({ "token": token }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let me: Me = res.json().await.unwrap();
    let role_in = |t: TenantId| {
        me.memberships
            .iter()
            .find(|m| m.tenant_id == t)
            .map(|m| m.role)
    };
    assert_eq!(role_in(w.a), Some(TenantRole::CustomerAdmin));
    assert_eq!(role_in(w.b), Some(TenantRole::CustomerAdmin));
    // The same session now manages A.
    assert_eq!(
        status_of(&app, &own, &format!("/api/tenants/{}/members", w.a)).await,
        StatusCode::OK
    );
    let res = post(
        &app,
        "/api/invitations/join",
        Some(&own),
        json!({ "token": token }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND, "used once");
}

async fn set_expired(app: &TestApp, tenant: TenantId, id: Uuid) {
    let mut tx = app.store.tenant_tx(tenant).await.unwrap();
    sqlx::query("UPDATE invitations SET expires_at = now() - interval '1 minute' WHERE id = $1")
        .bind(id)
        .execute(tx.connection())
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn expired_revoked_reused_tampered_and_replaced_links_admit_nobody() {
    let app = spawn(AppOptions::default()).await;
    let w = World::new(&app).await;
    let admin = app.token_for(w.admin_a, None).await;
    let accept = |token: String| json!({ "token": token, "display_name": "Someone", "password": NEW_PASSWORD });

    // Expired.
    let late = address("late");
    let expired = invited(&app, &admin, w.a, &late, TenantRole::CustomerOperator).await;
    let token = mailbox::wait_for(&late, 1).await[0].token(INVITATION_PATH);
    set_expired(&app, w.a, expired.id).await;
    let res = post(
        &app,
        "/api/invitations/lookup",
        None,
        json!({ "token": token }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(message(res).await.contains("expired"));
    let res = post(&app, "/api/invitations/accept", None, accept(token.clone())).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let listed = pending(&app, &admin, w.a).await;
    assert_eq!(
        listed.iter().find(|i| i.id == expired.id).unwrap().status,
        InvitationStatus::Expired
    );

    // Resent: a new link and a new expiry; the old link stops working, the new one works.
    let res = post(
        &app,
        &format!("/api/tenants/{}/invitations/{}/resend", w.a, expired.id),
        Some(&admin),
        json!({}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let resent: Invitation = res.json().await.unwrap();
    assert_eq!(
        (resent.status, resent.sends),
        (InvitationStatus::Pending, 2)
    );
    let mails = mailbox::wait_for(&late, 2).await;
    let fresh = mails[1].token(INVITATION_PATH);
    assert_ne!(fresh, token);
    let res = post(
        &app,
        "/api/invitations/lookup",
        None,
        json!({ "token": token }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND, "the replaced link");
    let res = post(
        &app,
        "/api/invitations/lookup",
        None,
        json!({ "token": fresh }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);

    // Tampered: one character changed, cut short, or not ours at all.
    let mut tampered = fresh.clone().into_bytes();
    tampered[5] = if tampered[5] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for bad in [
        tampered,
        fresh[..20].to_string(),
        "x".repeat(43),
        String::new(),
    ] {
        let res = post(
            &app,
            "/api/invitations/lookup",
            None,
            json!({ "token": bad }),
        )
        .await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{bad}");
        assert!(message(res).await.contains("not valid"));
        let res = post(&app, "/api/invitations/accept", None, accept(bad)).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }

    // Revoked.
    let res = app
        .request(
            Method::DELETE,
            &format!("/api/tenants/{}/invitations/{}", w.a, expired.id),
            Some(&admin),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = post(&app, "/api/invitations/accept", None, accept(fresh.clone())).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(message(res).await.contains("withdrawn"));
    assert!(
        runtime::store::users::get_by_email(&app.store, &late)
            .await
            .unwrap()
            .is_none(),
        "nobody was admitted"
    );
    // Revoked is final: neither revoked again nor resent.
    let res = app
        .request(
            Method::DELETE,
            &format!("/api/tenants/{}/invitations/{}", w.a, expired.id),
            Some(&admin),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let res = post(
        &app,
        &format!("/api/tenants/{}/invitations/{}/resend", w.a, expired.id),
        Some(&admin),
        json!({}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let actions = app.audit_actions(w.a).await;
    for action in ["invitation.resent", "invitation.revoked"] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
}

#[tokio::test]
async fn members_and_open_invitations_conflict_bad_input_is_refused_and_floods_stay_in_their_tenant()
 {
    let app = spawn(AppOptions {
        people: Some(runtime::config::PeopleSettings {
            invitations_per_hour: 3,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await;
    let w = World::new(&app).await;
    let admin = app.token_for(w.admin_a, None).await;
    // The world's fixtures hold one invitation already.
    let seeded = pending(&app, &admin, w.a).await.len();
    let member = runtime::store::users::get(&app.store, w.operator_a)
        .await
        .unwrap()
        .unwrap();
    let res = invite(
        &app,
        &admin,
        w.a,
        &member.email.to_uppercase(),
        TenantRole::CustomerAdmin,
    )
    .await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert!(message(res).await.contains("already a member"));
    for bad in [
        json!({ "email": "not-an-address", "role": "customer_admin" }),
        json!({ "email": address("x"), "role": "platform_admin" }),
        json!({ "email": address("x") }),
    ] {
        let res = post(
            &app,
            &format!("/api/tenants/{}/invitations", w.a),
            Some(&admin),
            bad.clone(),
        )
        .await;
        assert!(res.status().is_client_error(), "{bad}: {}", res.status());
        assert_ne!(res.status(), StatusCode::NOT_FOUND);
    }
    let made = pending(&app, &admin, w.a).await;
    assert_eq!(made.len(), seeded, "bad input made nothing: {made:?}");

    let twice = address("twice");
    invited(&app, &admin, w.a, &twice, TenantRole::CustomerOperator).await;
    let res = invite(&app, &admin, w.a, &twice, TenantRole::CustomerAdmin).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert!(message(res).await.contains("already pending"));

    // Three mails an hour (the conflict above was not one): the fourth is refused with a wait.
    invited(
        &app,
        &admin,
        w.a,
        &address("two"),
        TenantRole::CustomerOperator,
    )
    .await;
    let res = invite(
        &app,
        &admin,
        w.a,
        &address("three"),
        TenantRole::CustomerOperator,
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = invite(
        &app,
        &admin,
        w.a,
        &address("four"),
        TenantRole::CustomerOperator,
    )
    .await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().get("retry-after").is_some());
    assert_eq!(pending(&app, &admin, w.a).await.len(), seeded + 3);
    // Tenant B is not slowed down by A's invitations.
    let admin_b = app.token_for(w.admin_b, None).await;
    let res = invite(
        &app,
        &admin_b,
        w.b,
        &address("b"),
        TenantRole::CustomerOperator,
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);

    // BOLA: B's admin cannot see, resend or revoke A's invitations through B's own tenant.
    let a_invitation = pending(&app, &admin, w.a).await[0].id;
    assert!(
        pending(&app, &admin_b, w.b)
            .await
            .iter()
            .all(|i| i.id != a_invitation)
    );
    let res = post(
        &app,
        &format!("/api/tenants/{}/invitations/{a_invitation}/resend", w.b),
        Some(&admin_b),
        json!({}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = app
        .request(
            Method::DELETE,
            &format!("/api/tenants/{}/invitations/{a_invitation}", w.b),
            Some(&admin_b),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        pending(&app, &admin, w.a).await.len(),
        seeded + 3,
        "A's invitations are untouched"
    );
}

#[tokio::test]
async fn with_the_mail_server_down_an_invitation_is_kept_and_sent_when_it_returns() {
    // The mail server's address: a port nothing listens on yet.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let real = url::Url::parse(&mailbox::smtp_url()).unwrap();
    let mut down = real.clone();
    down.set_port(Some(port)).unwrap();
    let app = spawn(AppOptions {
        smtp_url: Some(down.to_string()),
        ..Default::default()
    })
    .await;
    let w = World::new(&app).await;
    let admin = app.token_for(w.admin_a, None).await;
    let email = address("patient");
    let invitation = invited(&app, &admin, w.a, &email, TenantRole::CustomerOperator).await;

    // The request did not wait for the mail server; the admin sees the mail retrying, and why.
    let retrying = wait_delivery(&app, &admin, w.a, invitation.id, DeliveryState::Retrying).await;
    let delivery = retrying.delivery.unwrap();
    assert_eq!(
        delivery.last_error.as_deref(),
        Some("the mail server could not be reached")
    );
    assert!(delivery.sent_at.is_none());
    assert!(mailbox::mails_to(&email).await.is_empty());

    // The mail server comes back on that port (a relay to the real one): the mail arrives, once.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let upstream = mailbox::smtp_addr();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    let mails = mailbox::wait_for(&email, 1).await;
    let sent = wait_delivery(&app, &admin, w.a, invitation.id, DeliveryState::Sent).await;
    assert!(sent.delivery.unwrap().attempts >= 2);
    assert_eq!(mailbox::mails_to(&email).await.len(), 1);
    // And its link works.
    let res = post(
        &app,
        "/api/invitations/lookup",
        None,
        json!({ "token": mails[0].token(INVITATION_PATH) }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn mail_goes_over_tls_only_to_a_server_whose_certificate_is_trusted() {
    // Trusting the authority that signed the server's certificate: the mail arrives over TLS.
    let app = spawn(AppOptions {
        smtp_url: Some(mailbox::smtps_url()),
        smtp_ca_file: Some(mailbox::tls_ca_file()),
        ..Default::default()
    })
    .await;
    let w = World::new(&app).await;
    let admin = app.token_for(w.admin_a, None).await;
    let email = address("secure");
    let invitation = invited(&app, &admin, w.a, &email, TenantRole::CustomerOperator).await;
    let mail = mailbox::wait_at(&mailbox::tls_api(), &email, 1)
        .await
        .remove(0);
    assert!(mail.token(INVITATION_PATH).len() == 43);
    wait_delivery(&app, &admin, w.a, invitation.id, DeliveryState::Sent).await;

    // Not trusting it (the web's roots only): nothing is sent in the clear instead; it retries.
    let app = spawn(AppOptions {
        smtp_url: Some(mailbox::smtps_url()),
        ..Default::default()
    })
    .await;
    let w = World::new(&app).await;
    let admin = app.token_for(w.admin_a, None).await;
    let email = address("untrusted");
    let invitation = invited(&app, &admin, w.a, &email, TenantRole::CustomerOperator).await;
    let retrying = wait_delivery(&app, &admin, w.a, invitation.id, DeliveryState::Retrying).await;
    assert_eq!(
        retrying.delivery.unwrap().last_error.as_deref(),
        Some("a secure connection to the mail server could not be made")
    );
    assert!(
        mailbox::mails_at(&mailbox::tls_api(), &email)
            .await
            .is_empty()
    );
}

async fn login(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    post(
        app,
        "/api/auth/login",
        None,
        json!({ "email": email, "password": password }),
    )
    .await
}

async fn session(app: &TestApp, email: &str, password: &str) -> String {
    let res = login(app, email, password).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json::<SessionToken>().await.unwrap().token
}

async fn me_status(app: &TestApp, token: &str) -> StatusCode {
    status_of(app, token, "/api/me").await
}

#[tokio::test]
async fn a_password_reset_by_mail_ends_every_other_session_and_works_once() {
    let app = spawn(AppOptions::default()).await;
    let email = address("forgetful");
    let user = world::user(&app, &email, false).await;
    let laptop = session(&app, &email, PASSWORD).await;
    let phone = session(&app, &email, PASSWORD).await;

    let res = post(
        &app,
        "/api/auth/password-reset",
        None,
        json!({ "email": email.to_uppercase() }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let mail: Mail = mailbox::wait_for(&email, 1).await.remove(0);
    assert_eq!(mail.subject, "Reset your Konstruct password");
    let link = mail.link(RESET_PATH);
    assert!(
        link.starts_with(&format!("{PUBLIC_URL}{RESET_PATH}#token=")),
        "{link}"
    );
    let token = mail.token(RESET_PATH);
    let res = post(
        &app,
        "/api/auth/password-reset/lookup",
        None,
        json!({ "token": token }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["email"], email.as_str());

    // A weak password changes nothing.
    let res = post(
        &app,
        "/api/auth/password-reset/complete",
        None,
        json!({ "token": token, "password": "weak" }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(me_status(&app, &laptop).await, StatusCode::OK);

    let res = post(
        &app,
        "/api/auth/password-reset/complete",
        None,
        json!({ "token": token, "password": NEW_PASSWORD }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let fresh = res.json::<SessionToken>().await.unwrap();
    assert_eq!(fresh.me.user.id, user);
    assert_eq!(me_status(&app, &fresh.token).await, StatusCode::OK);
    for old in [&laptop, &phone] {
        assert_eq!(
            me_status(&app, old).await,
            StatusCode::UNAUTHORIZED,
            "every other session ended"
        );
    }
    assert_eq!(
        login(&app, &email, PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&app, &email, NEW_PASSWORD).await.status(),
        StatusCode::OK
    );

    // Used once.
    let res = post(
        &app,
        "/api/auth/password-reset/complete",
        None,
        json!({ "token": token, "password": "yet another passphrase" }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        login(&app, &email, NEW_PASSWORD).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_unknown_address_gets_the_same_answer_no_mail_and_the_same_limits() {
    let app = spawn(AppOptions {
        people: Some(runtime::config::PeopleSettings {
            resets_per_account_per_hour: 2,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await;
    let known = address("known");
    world::user(&app, &known, false).await;
    let unknown = address("unknown");

    let ask = |email: String| {
        let app = &app;
        async move {
            post(
                app,
                "/api/auth/password-reset",
                None,
                json!({ "email": email }),
            )
            .await
        }
    };
    let for_unknown = ask(unknown.clone()).await;
    let unknown_status = for_unknown.status();
    let unknown_body: Value = for_unknown.json().await.unwrap();
    let for_known = ask(known.clone()).await;
    assert_eq!(for_known.status(), unknown_status);
    assert_eq!(for_known.json::<Value>().await.unwrap(), unknown_body);
    assert_eq!(unknown_status, StatusCode::ACCEPTED);

    // The known address's mail arrives; the unknown one never had a mail to send.
    mailbox::wait_for(&known, 1).await;
    assert!(mailbox::mails_to(&unknown).await.is_empty());
    let resets: i64 = sqlx::query_scalar("SELECT count(*) FROM password_resets")
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    assert_eq!(resets, 1, "only the known address's reset was made");

    // The per-account limit counts both alike: the third request for either is refused.
    assert_eq!(ask(unknown.clone()).await.status(), StatusCode::ACCEPTED);
    assert_eq!(ask(known.clone()).await.status(), StatusCode::ACCEPTED);
    let refused_unknown = ask(unknown).await;
    let refused_known = ask(known).await;
    assert_eq!(refused_unknown.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused_known.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(message(refused_unknown).await, message(refused_known).await);
}

#[tokio::test]
async fn changing_ones_password_ends_every_other_session_but_this_one() {
    let app = spawn(AppOptions::default()).await;
    let email = address("careful");
    world::user(&app, &email, false).await;
    let here = session(&app, &email, PASSWORD).await;
    let elsewhere = session(&app, &email, PASSWORD).await;

    let res = post(
        &app,
        "/api/me/password",
        Some(&here),
        json!({ "current_password": "not my password", "new_password": NEW_PASSWORD }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        me_status(&app, &elsewhere).await,
        StatusCode::OK,
        "a wrong guess changes nothing"
    );

    let res = post(
        &app,
        "/api/me/password",
        Some(&here),
        json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let renewed = res.json::<SessionToken>().await.unwrap().token;
    assert_eq!(
        me_status(&app, &renewed).await,
        StatusCode::OK,
        "this session goes on"
    );
    assert_eq!(me_status(&app, &elsewhere).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        login(&app, &email, NEW_PASSWORD).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        login(&app, &email, PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
}
