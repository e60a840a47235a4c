//! Sign-in, sessions and the attacks on them.

use chrono::{Duration, Utc};
use reqwest::{Method, StatusCode};
use runtime::auth::TokenKeys;
use serde_json::json;
use shared::auth::{Me, SessionToken, TenantRole};
use shared::{ErrorBody, ErrorCode};

use crate::support::{AppOptions, JWT_SECRET, TestApp};
use crate::world::{self, PASSWORD, World};

async fn email_of(app: &TestApp, user: uuid::Uuid) -> String {
    runtime::store::users::get(&app.store, user)
        .await
        .unwrap()
        .unwrap()
        .email
}

async fn login(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    app.http
        .post(app.url("/api/auth/login"))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap()
}

async fn status_with(app: &TestApp, token: &str) -> StatusCode {
    app.request(Method::GET, "/api/me", Some(token))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn sign_in_sets_an_httponly_cookie_and_returns_a_bearer_token_and_me() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let email = email_of(&app, w.admin_a).await;
    let res = login(&app, &email.to_uppercase(), PASSWORD).await;
    assert_eq!(res.status(), StatusCode::OK);
    let cookies: Vec<String> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("konstruct_session="))
        .unwrap();
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );
    assert!(!session.contains("Secure"), "plain HTTP here: {session}");
    let body_text = res.text().await.unwrap();
    assert!(
        !body_text.contains(PASSWORD),
        "the password never comes back"
    );
    let token: SessionToken = serde_json::from_str(&body_text).unwrap();
    assert_eq!(token.me.user.email, email);
    assert_eq!(token.me.memberships.len(), 1);
    assert_eq!(token.me.memberships[0].role, TenantRole::CustomerAdmin);
    let me: Me = app
        .request(Method::GET, "/api/me", Some(&token.token))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me.user.id, w.admin_a);
    assert!(me.platform_permissions.is_empty());
    assert!(me.impersonation.is_none());
}

#[tokio::test]
async fn unknown_email_and_wrong_password_get_the_same_answer() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let email = email_of(&app, w.admin_a).await;
    let wrong: ErrorBody = login(&app, &email, "not the password")
        .await
        .json()
        .await
        .unwrap();
    let unknown_res = login(&app, "nobody@example.com", PASSWORD).await;
    assert_eq!(unknown_res.status(), StatusCode::UNAUTHORIZED);
    let unknown: ErrorBody = unknown_res.json().await.unwrap();
    assert_eq!(
        (wrong.code, &wrong.message),
        (unknown.code, &unknown.message)
    );
    assert_eq!(wrong.code, ErrorCode::Unauthenticated);
}

#[tokio::test]
async fn repeated_failures_lock_the_account_for_a_while_then_429() {
    let app = TestApp::spawn_with(AppOptions {
        login_failures_per_account: Some(3),
        ..AppOptions::default()
    })
    .await;
    let w = World::new(&app).await;
    let email = email_of(&app, w.admin_a).await;
    for _ in 0..3 {
        assert_eq!(
            login(&app, &email, "guess").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // Now even the right password is refused until the window passes.
    let res = login(&app, &email, PASSWORD).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 900, "{retry}");
    let body: ErrorBody = res.json().await.unwrap();
    assert_eq!(body.code, ErrorCode::RateLimited);
    // Another account from the same address is still fine.
    let other = email_of(&app, w.admin_b).await;
    assert_eq!(login(&app, &other, PASSWORD).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn one_address_guessing_many_accounts_is_limited_too() {
    let app = TestApp::spawn_with(AppOptions {
        login_failures_per_address: Some(4),
        ..AppOptions::default()
    })
    .await;
    let w = World::new(&app).await;
    for i in 0..4 {
        let res = login(&app, &format!("guess-{i}@example.com"), "x").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let email = email_of(&app, w.admin_a).await;
    assert_eq!(
        login(&app, &email, PASSWORD).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn the_per_address_limit_uses_the_proxys_client_address_only_when_trusted() {
    // Untrusted: X-Forwarded-For is ignored, so varying it does not dodge the limit.
    let app = TestApp::spawn_with(AppOptions {
        login_failures_per_address: Some(2),
        ..AppOptions::default()
    })
    .await;
    let attempt = |app: &TestApp, forwarded: &str| {
        app.http
            .post(app.url("/api/auth/login"))
            .header("x-forwarded-for", forwarded)
            .json(&json!({ "email": "nobody@example.com", "password": "x" }))
            .send()
    };
    for i in 0..2 {
        let res = attempt(&app, &format!("203.0.113.{i}")).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = attempt(&app, "203.0.113.9").await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);

    // Trusted: each client behind the proxy has its own count (the hop the proxy appended,
    // whatever the client wrote before it).
    let app = TestApp::spawn_with(AppOptions {
        login_failures_per_address: Some(2),
        trust_proxy_headers: true,
        ..AppOptions::default()
    })
    .await;
    for _ in 0..2 {
        let res = attempt(&app, "10.0.0.1, 203.0.113.7").await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = attempt(&app, "203.0.113.7").await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let res = attempt(&app, "203.0.113.8").await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "another client is not locked out"
    );
}

#[tokio::test]
async fn cookie_sessions_need_the_csrf_header_for_changes() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let email = email_of(&app, w.admin_a).await;
    let res = login(&app, &email, PASSWORD).await;
    let cookie_header: String = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("; ");
    let token: SessionToken = res.json().await.unwrap();
    let path = format!("/api/tenants/{}/agents", w.a);
    let agent = json!({ "name": "Cora" });
    // Reads need no CSRF token.
    let read = app
        .http
        .get(app.url(&path))
        .header("cookie", &cookie_header)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    let forged = app
        .http
        .post(app.url(&path))
        .header("cookie", &cookie_header)
        .json(&agent)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let wrong = app
        .http
        .post(app.url(&path))
        .header("cookie", &cookie_header)
        .header("x-csrf-token", "0000")
        .json(&agent)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let ok = app
        .http
        .post(app.url(&path))
        .header("cookie", &cookie_header)
        .header("x-csrf-token", &token.csrf_token)
        .json(&agent)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::CREATED);
    // Only the one agent made with the right header exists besides the world's.
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let (rows, _) = runtime::store::agents::list(&mut tx, 100, 0).await.unwrap();
    assert_eq!(rows.iter().filter(|a| a.name == "Cora").count(), 1);
}

#[tokio::test]
async fn expired_tampered_unsigned_and_foreign_tokens_are_401() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let good = app.token_for(w.admin_a, None).await;
    assert_eq!(status_with(&app, &good).await, StatusCode::OK);

    let now = Utc::now();
    let keys = TokenKeys::new(JWT_SECRET.as_bytes(), 15, 12);
    let claims = keys.new_session(w.admin_a, 0, now - Duration::minutes(30));
    let expired = keys
        .sign(&keys.renew(&claims, now - Duration::minutes(30)))
        .unwrap();
    assert_eq!(status_with(&app, &expired).await, StatusCode::UNAUTHORIZED);

    let parts: Vec<&str> = good.split('.').collect();
    let mut sig = parts[2].to_string();
    let last = if sig.ends_with('A') { "B" } else { "A" };
    sig.replace_range(sig.len() - 1.., last);
    let tampered = format!("{}.{}.{sig}", parts[0], parts[1]);
    assert_eq!(status_with(&app, &tampered).await, StatusCode::UNAUTHORIZED);

    // The payload of a platform admin's token, re-signed by nobody (alg: none).
    let platform = app.token_for(w.platform, None).await;
    let payload = platform.split('.').nth(1).unwrap();
    let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
    assert_eq!(status_with(&app, &none).await, StatusCode::UNAUTHORIZED);

    let foreign = TokenKeys::new(b"some-other-deployment-secret-0123", 15, 12);
    let forged = foreign
        .sign(&foreign.renew(&foreign.new_session(w.platform, 0, now), now))
        .unwrap();
    assert_eq!(status_with(&app, &forged).await, StatusCode::UNAUTHORIZED);

    assert_eq!(status_with(&app, "garbage").await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_deleted_user_or_a_removed_or_changed_role_ends_the_session() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;

    let gone = world::user(&app, "gone@example.com", false).await;
    world::member(&app, w.a, gone, TenantRole::CustomerAdmin).await;
    let token = app.token_for(gone, None).await;
    assert_eq!(status_with(&app, &token).await, StatusCode::OK);
    runtime::store::users::delete(&app.store, gone)
        .await
        .unwrap();
    assert_eq!(status_with(&app, &token).await, StatusCode::UNAUTHORIZED);

    // Removing a member through the API ends their sessions at once.
    let operator = app.token_for(w.operator_a, None).await;
    let admin = app.token_for(w.admin_a, None).await;
    let res = app
        .request(
            Method::DELETE,
            &format!("/api/tenants/{}/members/{}", w.a, w.operator_a),
            Some(&admin),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(status_with(&app, &operator).await, StatusCode::UNAUTHORIZED);

    // So does a role change: the old token no longer carries the current rights.
    let b_member = world::user(&app, "b-member@example.com", false).await;
    world::member(&app, w.b, b_member, TenantRole::CustomerAdmin).await;
    let token = app.token_for(b_member, None).await;
    let admin_b = app.token_for(w.admin_b, None).await;
    let res = app
        .request(
            Method::PATCH,
            &format!("/api/tenants/{}/members/{b_member}", w.b),
            Some(&admin_b),
        )
        .json(&json!({ "role": "customer_operator" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(status_with(&app, &token).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sign_out_revokes_the_token_and_clears_the_cookies() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let token = app.token_for(w.admin_a, None).await;
    let res = app
        .request(Method::POST, "/api/auth/logout", Some(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    // The session, its CSRF cookie and any impersonation cookie.
    let cleared = res.headers().get_all("set-cookie").iter().count();
    assert_eq!(cleared, 3);
    assert_eq!(status_with(&app, &token).await, StatusCode::UNAUTHORIZED);
    // Other sessions of the same user live on.
    assert_eq!(
        status_with(&app, &app.token_for(w.admin_a, None).await).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn refresh_gives_a_new_token_for_the_same_session() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let token = app.token_for(w.admin_a, None).await;
    let res = app
        .request(Method::POST, "/api/auth/refresh", Some(&token))
        .send()
        .await
        .unwrap();
    let fresh: SessionToken = res.json().await.unwrap();
    assert_eq!(status_with(&app, &fresh.token).await, StatusCode::OK);
    // Signing out with the new token ends the old one too: same session.
    app.request(Method::POST, "/api/auth/logout", Some(&fresh.token))
        .send()
        .await
        .unwrap();
    assert_eq!(status_with(&app, &token).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_burst_of_parallel_guesses_cannot_exceed_the_account_limit() {
    let app = TestApp::spawn_with(AppOptions {
        login_failures_per_account: Some(3),
        ..AppOptions::default()
    })
    .await;
    let w = World::new(&app).await;
    let email = email_of(&app, w.admin_a).await;
    let guesses = (0..12).map(|i| {
        let (app, email) = (&app, email.clone());
        async move { login(app, &email, &format!("guess {i}")).await.status() }
    });
    let statuses = futures_util::future::join_all(guesses).await;
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((checked, limited), (3, 9), "{statuses:?}");
}
