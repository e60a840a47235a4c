//! The groundwork later features stand on: a tenant's own calendar (time zone and locale, used
//! for its usage days), end users recorded with every conversation, and the public base URL
//! every link is written with.

use chrono::Utc;
use reqwest::StatusCode;
use runtime::engine::turn::{EngineSettings, Outcome};
use serde_json::json;
use shared::channel::ChannelKind;
use shared::resources::{EndUser, Page, PlatformInfo, TenantSettings};

use crate::support::{AppOptions, TestApp};
use crate::world::{self, World};

async fn engine_app() -> TestApp {
    TestApp::spawn_with(AppOptions {
        engine: Some(EngineSettings::default()),
        ..AppOptions::default()
    })
    .await
}

#[tokio::test]
async fn customer_admins_set_their_tenants_time_zone_and_locale_and_operators_only_read_them() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let path = format!("/api/tenants/{}/settings", w.a);
    let admin = w.as_admin_a(&app).await;
    let got = admin.get(&path).await;
    assert_eq!(got.status, StatusCode::OK);
    let defaults: TenantSettings = got.json();
    assert_eq!(
        (defaults.time_zone.as_str(), defaults.locale.as_str()),
        ("UTC", "en")
    );

    // Bad input: both fields named, nothing changed, nothing audited.
    let before = app.audit_actions(w.a).await.len();
    let bad = admin
        .put(
            &path,
            json!({ "time_zone": "Mars/Olympus_Mons", "locale": "english" }),
        )
        .await;
    assert_eq!(bad.fields(), ["time_zone", "locale"]);
    assert_eq!(app.audit_actions(w.a).await.len(), before);
    let unchanged: TenantSettings = admin.get(&path).await.json();
    assert_eq!(
        (unchanged.time_zone, unchanged.locale),
        (defaults.time_zone.clone(), defaults.locale.clone())
    );

    let saved = admin
        .put(&path, json!({ "time_zone": "Asia/Tokyo", "locale": "ja" }))
        .await;
    assert_eq!(saved.status, StatusCode::OK);
    let saved: TenantSettings = saved.json();
    assert_eq!(saved.time_zone, "Asia/Tokyo");
    let tokyo_now = Utc::now()
        .with_timezone(&chrono_tz::Asia::Tokyo)
        .format("%Y-%m-%d %H")
        .to_string();
    assert!(
        saved.local_time.starts_with(&tokyo_now),
        "{}",
        saved.local_time
    );
    assert!(
        app.audit_actions(w.a)
            .await
            .contains(&"tenant.settings_changed".to_string())
    );

    // Operators read, cannot change; another tenant's admin cannot even see.
    let operator = w.as_operator_a(&app).await;
    assert_eq!(operator.get(&path).await.status, StatusCode::OK);
    let refused = operator
        .put(&path, json!({ "time_zone": "UTC", "locale": "en" }))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let stranger = w.as_admin_b(&app).await;
    assert_eq!(stranger.get(&path).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        stranger
            .put(&path, json!({ "time_zone": "UTC", "locale": "en" }))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        admin.get(&path).await.json::<TenantSettings>().time_zone,
        "Asia/Tokyo"
    );

    let zones: Vec<String> = operator.get("/api/time-zones").await.json();
    assert!(zones.contains(&"Asia/Tokyo".to_string()) && zones.len() > 400);
}

#[actix_rt::test]
async fn usage_is_counted_on_each_tenants_own_calendar_day() {
    let app = engine_app().await;
    let w = World::new(&app).await;
    // Twenty-six hours apart: whatever the time now, the two tenants are on different days.
    for (tenant, zone) in [(w.a, "Pacific/Kiritimati"), (w.b, "Etc/GMT+12")] {
        let admin = if tenant == w.a {
            w.as_admin_a(&app).await
        } else {
            w.as_admin_b(&app).await
        };
        let res = admin
            .put(
                &format!("/api/tenants/{tenant}/settings"),
                json!({ "time_zone": zone, "locale": "en" }),
            )
            .await;
        assert_eq!(res.status, StatusCode::OK);
    }
    let expected = |zone: chrono_tz::Tz| Utc::now().with_timezone(&zone).date_naive();
    let before = (
        expected(chrono_tz::Pacific::Kiritimati),
        expected(chrono_tz::Etc::GMTPlus12),
    );
    let mut agents = Vec::new();
    for (tenant, who) in [
        (w.a, w.as_admin_a(&app).await),
        (w.b, w.as_admin_b(&app).await),
    ] {
        let agent = world::agent(&app, tenant, "Nia").await;
        agents.push(agent);
        let mut events = app.events();
        let sent = who
            .post(
                &format!("/api/tenants/{tenant}/agents/{agent}/messages"),
                json!({ "text": "How many days until Friday?" }),
            )
            .await;
        assert_eq!(sent.status, StatusCode::ACCEPTED);
        assert_eq!(events.finished(tenant, 1).await[0].1, Outcome::Done);
    }
    let after = (
        expected(chrono_tz::Pacific::Kiritimati),
        expected(chrono_tz::Etc::GMTPlus12),
    );
    // The day of this agent's call: the fixtures seed each tenant with usage of their own (on
    // the UTC day), which is not the row under test.
    let day_of = |tenant, agent| {
        let store = app.store.clone();
        async move {
            let mut tx = store.tenant_tx(tenant).await.unwrap();
            let rows = runtime::store::llm::usage(&mut tx).await.unwrap();
            let mine: Vec<_> = rows.iter().filter(|r| r.agent_id == Some(agent)).collect();
            assert_eq!(mine.len(), 1, "one day of usage for the agent: {rows:?}");
            mine[0].day
        }
    };
    let (a_day, b_day) = (day_of(w.a, agents[0]).await, day_of(w.b, agents[1]).await);
    assert!(
        a_day == before.0 || a_day == after.0,
        "{a_day} vs {before:?}/{after:?}"
    );
    assert!(
        b_day == before.1 || b_day == after.1,
        "{b_day} vs {before:?}/{after:?}"
    );
    assert_ne!(a_day, b_day, "the same instant, two calendars");
}

#[actix_rt::test]
async fn everyone_who_writes_becomes_an_end_user_linked_to_their_conversations_and_messages() {
    let app = engine_app().await;
    let w = World::new(&app).await;
    let agent = world::agent(&app, w.a, "Nia").await;
    let admin = w.as_admin_a(&app).await;
    let path = format!("/api/tenants/{}/agents/{agent}/messages", w.a);
    let mut events = app.events();
    for (conversation, text) in [
        ("first", "Hello"),
        ("first", "Again"),
        ("second", "New topic"),
    ] {
        let res = admin
            .post(&path, json!({ "text": text, "conversation": conversation }))
            .await;
        assert_eq!(res.status, StatusCode::ACCEPTED);
    }
    events.finished(w.a, 3).await;

    let list = admin.get(&format!("/api/tenants/{}/end-users", w.a)).await;
    assert_eq!(list.status, StatusCode::OK);
    let page: Page<EndUser> = list.json();
    // The fixture's Slack customer, and the admin who used the test chat.
    let me = page
        .items
        .iter()
        .find(|u| u.external_id == format!("user:{}", w.admin_a))
        .unwrap_or_else(|| panic!("{page:?}"));
    assert_eq!(me.channel, ChannelKind::Web);
    assert_eq!(me.conversations, 2);
    assert!(me.last_seen_at >= me.first_seen_at);
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let unlinked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM messages WHERE direction = 'inbound' AND end_user_id IS NULL",
    )
    .fetch_one(tx.connection())
    .await
    .unwrap();
    assert_eq!(unlinked, 0, "every inbound message names its end user");
    let linked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM messages WHERE end_user_id = $1 AND direction = 'inbound'",
    )
    .bind(me.id)
    .fetch_one(tx.connection())
    .await
    .unwrap();
    assert_eq!(linked, 3);
    drop(tx);

    // Search, filter and paging.
    let found: Page<EndUser> = admin
        .get(&format!(
            "/api/tenants/{}/end-users?channel=web&per_page=1",
            w.a
        ))
        .await
        .json();
    assert_eq!((found.items.len(), found.total), (1, 1));
    let none: Page<EndUser> = admin
        .get(&format!(
            "/api/tenants/{}/end-users?q=nobody-like-this",
            w.a
        ))
        .await
        .json();
    assert_eq!(none.total, 0);
    let wildcard: Page<EndUser> = admin
        .get(&format!("/api/tenants/{}/end-users?q=%25", w.a))
        .await
        .json();
    assert_eq!(wildcard.total, 0, "% is searched for, not a wildcard");
    // One of them, by id; not from another tenant.
    let one = admin
        .get(&format!("/api/tenants/{}/end-users/{}", w.a, me.id))
        .await;
    assert_eq!(one.json::<EndUser>().id, me.id);
    let stranger = w.as_admin_b(&app).await;
    assert_eq!(
        stranger
            .get(&format!("/api/tenants/{}/end-users/{}", w.b, me.id))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let b_list: Page<EndUser> = stranger
        .get(&format!("/api/tenants/{}/end-users", w.b))
        .await
        .json();
    assert!(b_list.items.iter().all(|u| u.id != me.id));
}

#[tokio::test]
async fn one_person_writing_in_many_conversations_at_once_is_one_end_user_per_tenant() {
    use runtime::store::end_users::{self, EndUserKey};
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let key = EndUserKey {
        channel: ChannelKind::Whatsapp,
        external_id: "+15550001111",
        display_name: Some("Ada"),
    };
    let create = |tenant| {
        let store = app.store.clone();
        async move {
            let mut tx = store.tenant_tx(tenant).await.unwrap();
            let id = end_users::find_or_create(&mut tx, key).await.unwrap();
            tx.commit().await.unwrap();
            id
        }
    };
    let a = futures_util::future::join_all((0..8).map(|_| create(w.a))).await;
    let b = futures_util::future::join_all((0..8).map(|_| create(w.b))).await;
    assert!(a.iter().all(|id| *id == a[0]), "{a:?}");
    assert!(b.iter().all(|id| *id == b[0]), "{b:?}");
    assert_ne!(a[0], b[0], "the same number in two tenants is two people");
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM end_users WHERE external_id = $1")
        .bind(key.external_id)
        .fetch_one(tx.connection())
        .await
        .unwrap();
    assert_eq!(rows, 1, "tenant A sees only its own row");
    // Whichever transaction began first, the last sighting is never before the first.
    let in_order: bool = sqlx::query_scalar(
        "SELECT last_seen_at >= first_seen_at FROM end_users WHERE external_id = $1",
    )
    .bind(key.external_id)
    .fetch_one(tx.connection())
    .await
    .unwrap();
    assert!(in_order);
}

#[tokio::test]
async fn links_are_written_with_the_public_url_whatever_host_the_request_names() {
    let app = TestApp::spawn_with(AppOptions {
        public_url: Some("https://konstruct.example.com/".into()),
        ..AppOptions::default()
    })
    .await;
    let w = World::new(&app).await;
    let token = w.token(&app, crate::world::Who::OperatorA).await.unwrap();
    let res = app
        .http
        .get(app.url("/api/platform"))
        .bearer_auth(&token)
        .header("host", "evil.example.net")
        .header("x-forwarded-host", "evil.example.net")
        .header("forwarded", "host=evil.example.net;proto=http")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let info: PlatformInfo = res.json().await.unwrap();
    assert_eq!(info.public_url, "https://konstruct.example.com");
    assert_eq!(
        info.slack_events_url,
        "https://konstruct.example.com/webhooks/slack/events"
    );
    assert_eq!(info.slack_app_id.as_deref(), Some(e2e::slack::APP_ID));
    // Reached over HTTPS by its public URL, so its cookies are Secure even on this plain hop.
    let email = runtime::store::users::get(&app.store, w.admin_a)
        .await
        .unwrap()
        .unwrap()
        .email;
    let login = app
        .http
        .post(app.url("/api/auth/login"))
        .json(&json!({ "email": email, "password": crate::world::PASSWORD }))
        .send()
        .await
        .unwrap();
    let session = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_string())
        .find(|c| c.starts_with("konstruct_session="))
        .unwrap();
    assert!(session.contains("Secure"), "{session}");
}
