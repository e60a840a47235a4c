//! The attacks on sessions the outside review found, each closed: an impersonation token traded
//! for a platform session, an admin locked out from one address, a forged `X-Forwarded-For`
//! hop, IPv6 clients hopping addresses, unbounded password hashing, counters without an expiry.

use std::collections::HashMap;

use reqwest::{Method, StatusCode};
use serde_json::json;
use shared::auth::{Me, SessionToken};

use crate::support::{AppOptions, TestApp};
use crate::world::{PASSWORD, World};

/// A browser's cookies for one origin, kept by hand (name → value).
#[derive(Debug, Default, Clone)]
struct Jar(HashMap<String, String>);

impl Jar {
    /// Applies the `Set-Cookie` headers of an answer, removals included.
    fn take(&mut self, res: &reqwest::Response) {
        for header in res.headers().get_all("set-cookie") {
            let text = header.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            let removed = value.is_empty() || text.contains("Max-Age=0");
            if removed {
                self.0.remove(name);
            } else {
                self.0.insert(name.to_string(), value.to_string());
            }
        }
    }

    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn get(&self, name: &str) -> Option<&String> {
        self.0.get(name)
    }
}

/// A request as the portal makes it: the cookies, and the CSRF header from its cookie.
fn browser(app: &TestApp, jar: &Jar, method: Method, path: &str) -> reqwest::RequestBuilder {
    let mut req = app
        .http
        .request(method, app.url(path))
        .header("cookie", jar.header());
    if let Some(csrf) = jar.get("konstruct_csrf") {
        req = req.header("x-csrf-token", csrf);
    }
    req
}

async fn email_of(app: &TestApp, user: uuid::Uuid) -> String {
    runtime::store::users::get(&app.store, user)
        .await
        .unwrap()
        .unwrap()
        .email
}

async fn status(app: &TestApp, token: &str, path: &str) -> StatusCode {
    app.request(Method::GET, path, Some(token))
        .send()
        .await
        .unwrap()
        .status()
}

async fn impersonate(app: &TestApp, token: &str, w: &World) -> SessionToken {
    let res = app
        .request(Method::POST, "/api/admin/impersonate", Some(token))
        .json(&json!({ "tenant_id": w.a }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

#[tokio::test]
async fn stopping_an_impersonation_never_hands_out_a_platform_session() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let own = app.token_for(w.platform, None).await;
    let imp = impersonate(&app, &own, &w).await.token;

    // Refreshing an impersonation gives an impersonation, never the admin's rights.
    let refreshed: SessionToken = app
        .request(Method::POST, "/api/auth/refresh", Some(&imp))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(refreshed.me.impersonation.is_some());
    assert!(refreshed.me.platform_permissions.is_empty());
    let claims = app
        .keys
        .verify(&refreshed.token, chrono::Utc::now())
        .unwrap();
    assert!(
        claims.imp.is_some(),
        "the refreshed token is an impersonation"
    );
    assert_eq!(
        status(&app, &refreshed.token, "/api/tenants").await,
        StatusCode::FORBIDDEN
    );

    // Stopping answers with nothing to use: no token, no session cookie.
    let res = app
        .request(Method::DELETE, "/api/admin/impersonate", Some(&imp))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let cookies: Vec<String> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_string())
        .collect();
    assert!(
        cookies
            .iter()
            .all(|c| !c.starts_with("konstruct_session=") || c.starts_with("konstruct_session=;")),
        "{cookies:?}"
    );
    assert!(res.bytes().await.unwrap().is_empty());
    // The impersonation is over, in every token of it; the admin's own session carries on.
    assert_eq!(
        status(&app, &imp, "/api/me").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(&app, &refreshed.token, "/api/me").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(status(&app, &own, "/api/tenants").await, StatusCode::OK);
}

#[tokio::test]
async fn the_browser_keeps_the_admins_own_session_beside_the_impersonation() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let mut jar = Jar::default();
    let res = app
        .http
        .post(app.url("/api/auth/login"))
        .json(&json!({ "email": email_of(&app, w.platform).await, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    jar.take(&res);
    let own_session = jar.get("konstruct_session").cloned().unwrap();

    let res = browser(&app, &jar, Method::POST, "/api/admin/impersonate")
        .json(&json!({ "tenant_id": w.a }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    jar.take(&res);
    assert_eq!(
        jar.get("konstruct_session"),
        Some(&own_session),
        "the admin's session cookie is left alone"
    );
    assert!(jar.get("konstruct_impersonation").is_some());
    let me: Me = browser(&app, &jar, Method::GET, "/api/me")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me.impersonation.map(|i| i.tenant_id), Some(w.a));

    let res = browser(&app, &jar, Method::DELETE, "/api/admin/impersonate")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    jar.take(&res);
    assert!(jar.get("konstruct_impersonation").is_none());
    let res = browser(&app, &jar, Method::GET, "/api/me")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let me: Me = res.json().await.unwrap();
    assert!(me.impersonation.is_none());
    assert!(me.platform_admin && !me.platform_permissions.is_empty());
}

/// Every request under an impersonation carries the impersonation cookie, so the admin's own
/// session would never be renewed and lapse after its token's short life: the answers renew it
/// too, and it outlives the token it started with.
#[tokio::test]
async fn the_admins_own_session_is_renewed_while_an_impersonation_does_the_work() {
    use chrono::{Duration, Utc};
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let row = runtime::store::users::get(&app.store, w.platform)
        .await
        .unwrap()
        .unwrap();
    // The admin's own session, signed in 6 minutes ago: due for renewal, not yet expired.
    let signed_in = Utc::now() - Duration::minutes(6);
    let claims = app.keys.renew(
        &app.keys
            .new_session(w.platform, row.auth_version, signed_in),
        signed_in,
    );
    let mut jar = Jar::default();
    jar.0
        .insert("konstruct_session".into(), app.keys.sign(&claims).unwrap());
    jar.0.insert("konstruct_csrf".into(), claims.csrf.clone());
    let res = browser(&app, &jar, Method::POST, "/api/admin/impersonate")
        .json(&json!({ "tenant_id": w.a }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    jar.take(&res);
    let started_with = jar.get("konstruct_session").cloned().unwrap();

    let res = browser(&app, &jar, Method::GET, "/api/me")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    jar.take(&res);
    let me: Me = res.json().await.unwrap();
    assert_eq!(me.impersonation.map(|i| i.tenant_id), Some(w.a));
    let renewed = jar.get("konstruct_session").cloned().unwrap();
    assert_ne!(renewed, started_with, "the admin's own cookie was renewed");
    // After the first token's end, the renewed one still holds the same session.
    let later = chrono::DateTime::from_timestamp(claims.exp + 60, 0).unwrap();
    assert!(app.keys.verify(&started_with, later).is_err());
    let kept = app.keys.verify(&renewed, later).unwrap();
    assert_eq!(
        (kept.sid, kept.imp),
        (claims.sid, None),
        "the same, own session"
    );

    // Stopping leaves the admin in their renewed session.
    let res = browser(&app, &jar, Method::DELETE, "/api/admin/impersonate")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    jar.take(&res);
    let res = browser(&app, &jar, Method::GET, "/api/me")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.json::<Me>().await.unwrap().impersonation.is_none());
}

/// The requests recorded while impersonating tenant `tenant`: method and route, in order.
async fn impersonated_requests(app: &TestApp, tenant: shared::TenantId) -> Vec<String> {
    let mut tx = app.store.tenant_tx(tenant).await.unwrap();
    sqlx::query_scalar(
        "SELECT target_id FROM audit_events \
          WHERE action = 'impersonation.request' AND target_kind = 'http' ORDER BY seq",
    )
    .fetch_all(tx.connection())
    .await
    .unwrap()
}

/// A cross-site request riding the impersonation cookie is refused before anything is recorded,
/// and what is recorded names the route, never text the caller chose.
#[tokio::test]
async fn impersonated_requests_are_recorded_by_route_and_only_once_they_pass_csrf() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let mut jar = Jar::default();
    let res = app
        .http
        .post(app.url("/api/auth/login"))
        .json(&json!({ "email": email_of(&app, w.platform).await, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    jar.take(&res);
    let res = browser(&app, &jar, Method::POST, "/api/admin/impersonate")
        .json(&json!({ "tenant_id": w.a }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    jar.take(&res);

    let agents = format!("/api/tenants/{}/agents", w.a);
    let res = browser(&app, &jar, Method::GET, &format!("{agents}?q=%3Cscript%3E"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // A forged form post: the cookies come along, the CSRF header does not.
    let forged = app
        .http
        .post(app.url(&agents))
        .header("cookie", jar.header())
        .json(&json!({ "name": "Planted" }))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        impersonated_requests(&app, w.a).await,
        vec!["GET /api/tenants/{tenant_id}/agents".to_string()],
        "the forged request left no record, and the record names the route"
    );
}

#[tokio::test]
async fn an_ended_impersonation_cookie_falls_back_to_the_admins_own_session_and_is_cleared() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let own = app.token_for(w.platform, None).await;
    let imp = impersonate(&app, &own, &w).await.token;
    // Ended elsewhere (an API client stopped it); the browser still sends the cookie.
    app.request(Method::DELETE, "/api/admin/impersonate", Some(&imp))
        .send()
        .await
        .unwrap();
    let res = app
        .http
        .get(app.url("/api/me"))
        .header(
            "cookie",
            format!("konstruct_session={own}; konstruct_impersonation={imp}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let cleared = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().unwrap().starts_with("konstruct_impersonation=;"));
    assert!(cleared, "the dead impersonation cookie is removed");
    let me: Me = res.json().await.unwrap();
    assert!(me.impersonation.is_none());
}

#[tokio::test]
async fn signing_out_while_impersonating_ends_both_sessions() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let own = app.token_for(w.platform, None).await;
    let imp = impersonate(&app, &own, &w).await.token;
    let res = app
        .request(Method::POST, "/api/auth/logout", Some(&imp))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        status(&app, &imp, "/api/me").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(&app, &own, "/api/me").await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn signing_out_of_the_admins_own_session_ends_its_impersonation() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let own = app.token_for(w.platform, None).await;
    let imp = impersonate(&app, &own, &w).await.token;
    app.request(Method::POST, "/api/auth/logout", Some(&own))
        .send()
        .await
        .unwrap();
    assert_eq!(
        status(&app, &imp, "/api/me").await,
        StatusCode::UNAUTHORIZED
    );
}

/// A sign-in from `client`, as the trusted proxy in front of us reports it.
async fn login_from(app: &TestApp, client: &str, email: &str, password: &str) -> StatusCode {
    app.http
        .post(app.url("/api/auth/login"))
        .header("x-forwarded-for", client)
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn one_address_cannot_lock_an_admin_out_from_another() {
    let app = TestApp::spawn_with(AppOptions {
        login_failures_per_account: Some(3),
        trust_proxy_headers: true,
        ..AppOptions::default()
    })
    .await;
    let w = World::new(&app).await;
    let email = email_of(&app, w.platform).await;
    let mut statuses = Vec::new();
    for i in 0..10 {
        statuses.push(login_from(&app, "203.0.113.7", &email, &format!("guess {i}")).await);
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::UNAUTHORIZED)
            .count(),
        3
    );
    assert_eq!(
        login_from(&app, "203.0.113.7", &email, PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS,
        "the guessing address is locked out of the account"
    );
    assert_eq!(
        login_from(&app, "198.51.100.20", &email, PASSWORD).await,
        StatusCode::OK,
        "the admin, elsewhere, is not"
    );
}

#[tokio::test]
async fn an_address_over_its_limit_is_refused_before_anything_counts_against_the_account() {
    let app = TestApp::spawn_with(AppOptions {
        login_failures_per_address: Some(2),
        login_failures_per_account_total: Some(3),
        trust_proxy_headers: true,
        ..AppOptions::default()
    })
    .await;
    let w = World::new(&app).await;
    let email = email_of(&app, w.admin_a).await;
    // Two failures use up the address; the next attempts are refused at the address.
    for i in 0..2 {
        assert_eq!(
            login_from(&app, "203.0.113.9", &format!("other-{i}@example.com"), "x").await,
            StatusCode::UNAUTHORIZED
        );
    }
    for _ in 0..5 {
        assert_eq!(
            login_from(&app, "203.0.113.9", &email, "guess").await,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    // None of those five counted against the account, which allows three failures in all: two
    // more from elsewhere still leave the admin's own attempt within it.
    for client in ["198.51.100.30", "198.51.100.31"] {
        assert_eq!(
            login_from(&app, client, &email, "wrong").await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login_from(&app, "198.51.100.32", &email, crate::world::PASSWORD).await,
        StatusCode::OK
    );
    // And the account's own limit across addresses holds: three more failures, from three
    // addresses, and it is refused everywhere for the window.
    for client in ["198.51.100.40", "198.51.100.41", "198.51.100.42"] {
        login_from(&app, client, &email, "wrong").await;
    }
    assert_eq!(
        login_from(&app, "198.51.100.43", &email, crate::world::PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Except from where the admin signed in before: guesses from elsewhere, however many
    // addresses they come from, do not lock the owner out of the places they use.
    assert_eq!(
        login_from(&app, "198.51.100.32", &email, crate::world::PASSWORD).await,
        StatusCode::OK
    );
    // There the per-address limits still hold.
    for _ in 0..2 {
        login_from(&app, "198.51.100.32", &email, "wrong").await;
    }
    assert_eq!(
        login_from(&app, "198.51.100.32", &email, crate::world::PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn behind_a_proxy_the_right_most_untrusted_hop_is_the_client() {
    let app = TestApp::spawn_with(AppOptions {
        login_failures_per_address: Some(2),
        trust_proxy_headers: true,
        trusted_proxies: vec!["10.0.0.0/8".into()],
        ..AppOptions::default()
    })
    .await;
    // The client writes whatever it likes on the left; our proxies append the real hops.
    for i in 0..2 {
        let forged = format!("192.0.2.{i}, 198.51.100.77, 10.1.2.3");
        assert_eq!(
            login_from(&app, &forged, "nobody@example.com", "x").await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login_from(
            &app,
            "192.0.2.200, 198.51.100.77, 10.9.9.9",
            "nobody@example.com",
            "x"
        )
        .await,
        StatusCode::TOO_MANY_REQUESTS,
        "a forged left-most hop does not dodge the limit"
    );
    assert_eq!(
        login_from(&app, "198.51.100.78, 10.1.2.3", "nobody@example.com", "x").await,
        StatusCode::UNAUTHORIZED,
        "another client behind the same proxies has its own count"
    );
}

/// A proxy that adds its own `X-Forwarded-For` line (rather than appending to the client's)
/// leaves the client's forged line first: the lines are one list, and its right-most hop counts.
#[tokio::test]
async fn a_forged_first_forwarded_for_line_does_not_dodge_the_address_limit() {
    let app = TestApp::spawn_with(AppOptions {
        login_failures_per_address: Some(2),
        trust_proxy_headers: true,
        ..AppOptions::default()
    })
    .await;
    let attempt = |forged: String, proxy_line: &'static str| {
        app.http
            .post(app.url("/api/auth/login"))
            .header("x-forwarded-for", forged)
            .header("x-forwarded-for", proxy_line)
            .json(&json!({ "email": "nobody@example.com", "password": "x" }))
            .send()
    };
    let mut statuses = Vec::new();
    for i in 0..3 {
        let res = attempt(format!("192.0.2.{i}"), "198.51.100.77")
            .await
            .unwrap();
        statuses.push(res.status());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS
        ],
        "the real client 198.51.100.77 is counted, whatever the first line says"
    );
    // A proxy that writes the port too: still that client.
    let res = attempt("192.0.2.9".into(), "198.51.100.77:51234")
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}

/// A sign-in the server could not check (no free hashing slot: 503) is not a wrong password and
/// must not count towards locking the person out.
#[tokio::test]
async fn sign_ins_refused_as_busy_do_not_count_as_failures() {
    let app = TestApp::spawn_with(AppOptions {
        password_hash_concurrency: Some(1),
        login_failures_per_account: Some(2),
        trust_proxy_headers: true,
        ..AppOptions::default()
    })
    .await;
    let w = World::new(&app).await;
    let email = email_of(&app, w.admin_a).await;
    // Take the one hashing slot, as a flood of sign-ins would.
    let slot = app.app.auth_state().hasher.hold().await.unwrap();
    let mut busy = Vec::new();
    for _ in 0..3 {
        busy.push(login_from(&app, "198.51.100.9", &email, PASSWORD).await);
    }
    assert_eq!(
        busy,
        [StatusCode::SERVICE_UNAVAILABLE; 3],
        "precondition: no free slot"
    );
    drop(slot);
    assert_eq!(
        login_from(&app, "198.51.100.9", &email, PASSWORD).await,
        StatusCode::OK,
        "three 503s did not count as three failed guesses"
    );
}

#[tokio::test]
async fn ipv6_clients_are_counted_per_64() {
    let app = TestApp::spawn_with(AppOptions {
        login_failures_per_address: Some(2),
        trust_proxy_headers: true,
        ..AppOptions::default()
    })
    .await;
    for client in ["2001:db8:aa:1::1", "2001:db8:aa:1:ffff::2"] {
        assert_eq!(
            login_from(&app, client, "nobody@example.com", "x").await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login_from(
            &app,
            "2001:db8:aa:1:1234:5678:9abc:def0",
            "nobody@example.com",
            "x"
        )
        .await,
        StatusCode::TOO_MANY_REQUESTS,
        "a fresh address in the same /64 is the same client"
    );
    assert_eq!(
        login_from(&app, "2001:db8:aa:2::1", "nobody@example.com", "x").await,
        StatusCode::UNAUTHORIZED,
        "the next /64 is someone else"
    );
}

#[tokio::test]
async fn password_hashing_runs_at_most_the_configured_number_at_once() {
    let app = TestApp::spawn_with(AppOptions {
        password_hash_concurrency: Some(1),
        trust_proxy_headers: true,
        ..AppOptions::default()
    })
    .await;
    let w = World::new(&app).await;
    let email = email_of(&app, w.admin_a).await;
    // Each from its own address, so no sign-in limit interferes.
    let attempts = (0..8).map(|i| {
        let (app, email) = (&app, email.clone());
        async move {
            let password = if i % 2 == 0 { PASSWORD } else { "wrong" };
            login_from(app, &format!("198.51.100.{i}"), &email, password).await
        }
    });
    let statuses = futures_util::future::join_all(attempts).await;
    assert!(
        statuses.iter().all(|s| [
            StatusCode::OK,
            StatusCode::UNAUTHORIZED,
            StatusCode::SERVICE_UNAVAILABLE
        ]
        .contains(s)),
        "{statuses:?}"
    );
    assert!(statuses.contains(&StatusCode::OK), "{statuses:?}");
    assert_eq!(app.app.auth_state().hasher.peak(), 1, "{statuses:?}");
}

#[tokio::test]
async fn every_sign_in_counter_expires() {
    let app = TestApp::spawn_with(AppOptions {
        trust_proxy_headers: true,
        ..AppOptions::default()
    })
    .await;
    let w = World::new(&app).await;
    let email = email_of(&app, w.admin_a).await;
    login_from(&app, "198.51.100.40", &email, "wrong").await;
    login_from(&app, "2001:db8::40", &email, PASSWORD).await;
    let keys = app.redis_keys_matching("login:*").await;
    assert!(keys.len() >= 3, "{keys:?}");
    for key in keys {
        let ttl = app.redis_ttl(&key).await;
        assert!(ttl > 0, "{key} has no expiry ({ttl})");
    }
}

/// The addresses an account is known to sign in from are a bounded set: an account signing in
/// from ever new addresses (cheap with IPv6) cannot grow Redis, which the pipeline shares.
#[tokio::test]
async fn an_account_is_known_at_a_bounded_number_of_addresses() {
    let app = TestApp::spawn_with(AppOptions {
        trust_proxy_headers: true,
        ..AppOptions::default()
    })
    .await;
    let w = World::new(&app).await;
    let email = email_of(&app, w.admin_a).await;
    for i in 0..25 {
        let client = format!("2001:db8:{i:x}::1");
        assert_eq!(
            login_from(&app, &client, &email, PASSWORD).await,
            StatusCode::OK
        );
    }
    let known = app.redis_keys_matching("login:known:*").await;
    assert_eq!(known.len(), 1, "one set per account: {known:?}");
    let size: i64 = app
        .redis
        .eval(
            "return redis.call('ZCARD', KEYS[1])",
            known.clone(),
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(size, 20, "the 20 most recent addresses");
    assert!(app.redis_ttl(&known[0]).await > 0);
    // The most recent is among them, the first ones were let go.
    for (block, kept) in [("2001:db8:18::/64", true), ("2001:db8::/64", false)] {
        assert_eq!(
            app.redis.seen_since(&known[0], block, 0).await.unwrap(),
            kept,
            "{block}"
        );
    }
}

/// Behind a proxy that appends the client's address to the line it received (nginx's
/// `$proxy_add_x_forwarded_for`), a client that writes a byte that is not text in its own part
/// is still counted under its own address, not under the proxy's.
#[tokio::test]
async fn a_byte_that_is_not_text_in_the_clients_part_does_not_move_its_count() {
    let app = TestApp::spawn_with(AppOptions {
        login_failures_per_address: Some(2),
        trust_proxy_headers: true,
        ..AppOptions::default()
    })
    .await;
    let login = |xff: reqwest::header::HeaderValue| {
        app.http
            .post(app.url("/api/auth/login"))
            .header("x-forwarded-for", xff)
            .json(&json!({ "email": "nobody@example.com", "password": "wrong" }))
            .send()
    };
    let plain = reqwest::header::HeaderValue::from_static("203.0.113.7");
    for _ in 0..2 {
        assert_eq!(login(plain.clone()).await.unwrap().status(), 401);
    }
    assert_eq!(
        login(plain).await.unwrap().status(),
        429,
        "its address is spent"
    );
    let merged = reqwest::header::HeaderValue::from_bytes(b"\xff, 203.0.113.7").unwrap();
    assert_eq!(
        login(merged).await.unwrap().status(),
        429,
        "still that client, whatever it wrote before"
    );
}
