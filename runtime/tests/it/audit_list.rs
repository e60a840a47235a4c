//! Reading the audit trail through the API: the list's filters (action, actor, time range), its
//! keyset pages, the CSV export of the same rows (quoted, with formulas defused), the filters'
//! choices, and who may read any of it.

use chrono::{DateTime, Utc};
use reqwest::Method;
use runtime::store::users;
use shared::audit::{AuditActorKind, AuditEvent, AuditFilters};
use shared::resources::CursorPage;
use shared::{ErrorBody, TenantId};
use uuid::Uuid;

use crate::support::TestApp;
use crate::world::{self, World};

/// The second admin's display name: a formula, with a comma and quotes, as a spreadsheet must
/// never run it.
const FORMULA_NAME: &str = "=HYPERLINK(\"http://evil.example\",\"open\"), Esq.";

/// Tenant A with two admins who each made agents through the API: the first admin created and
/// renamed one agent, the second created another and renamed it twice.
struct Trail {
    app: TestApp,
    w: World,
    first: Uuid,
    second: Uuid,
    second_email: String,
    /// The newest seq before the admins' actions (the fixtures' own rows are at or below it).
    baseline: i64,
}

impl Trail {
    async fn new() -> Trail {
        let app = TestApp::spawn().await;
        let w = World::new(&app).await;
        let second_email = format!("second-{}@example.com", Uuid::new_v4().simple());
        // Never signs in with a password: its session token is made directly.
        let second = users::create(&app.store, &second_email, FORMULA_NAME, "unused", false)
            .await
            .unwrap()
            .id;
        world::member(&app, w.a, second, shared::auth::TenantRole::CustomerAdmin).await;
        let mut trail = Trail {
            app,
            w: w.clone(),
            first: w.admin_a,
            second,
            second_email,
            baseline: 0,
        };
        trail.baseline = trail.rows().await.first().map_or(0, |r| r.0);
        let one = trail.create_agent(trail.first, "One").await;
        trail.rename_agent(trail.first, one, "One, renamed").await;
        let two = trail.create_agent(trail.second, "Two").await;
        trail.rename_agent(trail.second, two, "Two, renamed").await;
        trail.rename_agent(trail.second, two, "Two, again").await;
        trail
    }

    /// The events the admins' actions wrote, of `events`.
    fn ours(&self, events: &[AuditEvent]) -> Vec<AuditEvent> {
        events
            .iter()
            .filter(|e| e.seq > self.baseline)
            .cloned()
            .collect()
    }

    async fn as_user(&self, user: Uuid) -> crate::support::Client<'_> {
        self.app.client(Some(self.app.token_for(user, None).await))
    }

    async fn create_agent(&self, user: Uuid, name: &str) -> Uuid {
        let res = self
            .as_user(user)
            .await
            .post(
                &format!("/api/tenants/{}/agents", self.w.a),
                serde_json::json!({ "name": name, "role": "Support", "tools": [] }),
            )
            .await;
        assert_eq!(res.status, 201, "{}", res.body);
        res.body["id"].as_str().unwrap().parse().unwrap()
    }

    async fn rename_agent(&self, user: Uuid, agent: Uuid, name: &str) {
        let res = self
            .as_user(user)
            .await
            .put(
                &format!("/api/tenants/{}/agents/{agent}", self.w.a),
                serde_json::json!({ "name": name, "role": "Support", "tools": [] }),
            )
            .await;
        assert_eq!(res.status, 200, "{}", res.body);
    }

    /// The tenant's rows straight from the database, newest first: seq, time, action, actor.
    async fn rows(&self) -> Vec<(i64, DateTime<Utc>, String, String, Option<Uuid>)> {
        let mut tx = self.app.store.tenant_tx(self.w.a).await.unwrap();
        sqlx::query_as(
            "SELECT seq, created_at, action, actor_kind, actor_id FROM audit_events \
             ORDER BY seq DESC",
        )
        .fetch_all(tx.connection())
        .await
        .unwrap()
    }

    /// `GET …/audit?{query}` as tenant A's first admin.
    async fn list(&self, query: &str) -> CursorPage<AuditEvent> {
        let res = self
            .as_user(self.first)
            .await
            .get(&format!("/api/tenants/{}/audit?{query}", self.w.a))
            .await;
        assert_eq!(res.status, 200, "{query}: {}", res.body);
        res.json()
    }

    /// Every page of `…/audit?{query}`, `limit` at a time, in order.
    async fn all_pages(&self, query: &str, limit: u32) -> Vec<AuditEvent> {
        let mut events = Vec::new();
        let mut before: Option<i64> = None;
        for _ in 0..1000 {
            let cursor = before.map_or(String::new(), |b| format!("&before={b}"));
            let page = self.list(&format!("{query}&limit={limit}{cursor}")).await;
            assert_eq!(page.limit, limit);
            assert!(page.items.len() <= limit as usize);
            events.extend(page.items);
            match page.next_before {
                Some(next) => before = Some(next),
                None => return events,
            }
        }
        panic!("the pages never ended");
    }

    async fn export(&self, query: &str) -> reqwest::Response {
        let token = self.app.token_for(self.first, None).await;
        self.app
            .request(
                Method::GET,
                &format!("/api/tenants/{}/audit/export.csv?{query}", self.w.a),
                Some(&token),
            )
            .send()
            .await
            .unwrap()
    }
}

fn seqs(events: &[AuditEvent]) -> Vec<i64> {
    events.iter().map(|e| e.seq).collect()
}

#[tokio::test]
async fn the_trail_filters_by_action_by_actor_and_by_time_range() {
    let t = Trail::new().await;
    let rows = t.rows().await;
    let agent_rows = |action: &str, actor: Option<Uuid>| -> Vec<i64> {
        rows.iter()
            .filter(|r| r.2 == action && (actor.is_none() || r.4 == actor))
            .map(|r| r.0)
            .collect()
    };

    // Two agents were created (the second admin's newer), three renames (two by the second),
    // after whatever the fixtures wrote.
    let created = t.list("action=agent.created").await;
    assert_eq!(created.next_before, None);
    assert_eq!(
        t.ours(&created.items)
            .iter()
            .map(|e| e.actor_id)
            .collect::<Vec<_>>(),
        vec![Some(t.second), Some(t.first)]
    );
    assert!(created.items.iter().all(|e| e.action == "agent.created"));
    assert_eq!(seqs(&created.items), agent_rows("agent.created", None));
    let updated = t.list("action=agent.updated").await;
    assert_eq!(
        t.ours(&updated.items)
            .iter()
            .map(|e| e.actor_id)
            .collect::<Vec<_>>(),
        vec![Some(t.second), Some(t.second), Some(t.first)]
    );
    assert_eq!(seqs(&updated.items), agent_rows("agent.updated", None));

    // The second admin did exactly three things, newest first.
    let by_second = t.list(&format!("actor={}", t.second)).await;
    assert_eq!(
        by_second
            .items
            .iter()
            .map(|e| e.action.as_str())
            .collect::<Vec<_>>(),
        vec!["agent.updated", "agent.updated", "agent.created"]
    );
    let second = &by_second.items[0];
    assert_eq!(second.actor_kind, AuditActorKind::User);
    assert_eq!(second.actor_name.as_deref(), Some(FORMULA_NAME));
    assert_eq!(second.actor_email.as_deref(), Some(t.second_email.as_str()));
    assert_eq!(second.target_kind.as_deref(), Some("agent"));
    assert_eq!(second.hash.len(), 64);
    // Both filters at once: the first admin's renames.
    let first_updates = t
        .list(&format!("action=agent.updated&actor={}", t.first))
        .await;
    assert_eq!(
        seqs(&first_updates.items),
        agent_rows("agent.updated", Some(t.first))
    );
    assert_eq!(t.ours(&first_updates.items).len(), 1);

    // The system's own rows, and none of the admins'.
    let system = t.list("actor=system&limit=200").await;
    let expected: Vec<i64> = rows
        .iter()
        .filter(|r| r.3 == "system")
        .map(|r| r.0)
        .collect();
    assert_eq!(seqs(&system.items), expected);
    assert!(
        system
            .items
            .iter()
            .all(|e| e.actor_kind == AuditActorKind::System && e.actor_id.is_none())
    );

    // From the first rename (inclusive) to the second admin's first rename (exclusive): the
    // first rename and the second agent's creation, nothing else.
    let renames: Vec<i64> = seqs(&t.ours(&updated.items));
    let (first_rename, second_rename) = (renames[2], renames[1]);
    let at = |seq: i64| rows.iter().find(|r| r.0 == seq).unwrap().1;
    let window = format!(
        "from={}&to={}",
        urlencode(&at(first_rename).to_rfc3339()),
        urlencode(&at(second_rename).to_rfc3339())
    );
    let between = t.list(&window).await;
    let expected: Vec<i64> = rows
        .iter()
        .filter(|r| r.0 >= first_rename && r.0 < second_rename)
        .map(|r| r.0)
        .collect();
    assert_eq!(seqs(&between.items), expected);
    assert_eq!(
        between
            .items
            .iter()
            .map(|e| e.action.as_str())
            .collect::<Vec<_>>(),
        vec!["agent.created", "agent.updated"]
    );
    // The same instant for both ends is an empty range, not an error.
    let empty = t
        .list(&format!(
            "from={0}&to={0}",
            urlencode(&at(first_rename).to_rfc3339())
        ))
        .await;
    assert!(empty.items.is_empty());
    // A range with an offset (written +01:00, encoded) means the same instants.
    let offset = chrono::FixedOffset::east_opt(3600).unwrap();
    let shifted = t
        .list(&format!(
            "from={}&to={}",
            urlencode(&at(first_rename).with_timezone(&offset).to_rfc3339()),
            urlencode(&at(second_rename).with_timezone(&offset).to_rfc3339())
        ))
        .await;
    assert_eq!(seqs(&shifted.items), expected);
}

fn urlencode(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn pages_return_every_row_once_newest_first() {
    let t = Trail::new().await;
    let all: Vec<i64> = t.rows().await.iter().map(|r| r.0).collect();
    assert!(all.len() >= 6, "{all:?}");
    for limit in [1, 2, 5] {
        let paged = t.all_pages("", limit).await;
        assert_eq!(seqs(&paged), all, "limit {limit}");
    }
    let updates = t.all_pages("action=agent.updated", 2).await;
    assert_eq!(updates.len(), 3);
    assert!(updates.windows(2).all(|w| w[0].seq > w[1].seq));
    // The default page is 50, and a full last page says there is nothing after it.
    let first = t.list("").await;
    assert_eq!(first.limit, 50);
    assert_eq!(first.next_before, None);
    let exact = t.list(&format!("limit={}", all.len())).await;
    assert_eq!(exact.next_before, None);
}

#[tokio::test]
async fn a_bad_filter_is_a_field_error_and_changes_nothing() {
    let t = Trail::new().await;
    let before = t.rows().await.len();
    let client = t.as_user(t.first).await;
    for (query, field) in [
        ("action=agent.exploded", "action"),
        ("action=DROP%20TABLE", "action"),
        ("actor=bob", "actor"),
        ("from=yesterday", "from"),
        ("to=2026-13-01T00%3A00%3A00Z", "to"),
        // From after to.
        (
            "from=2026-12-02T00%3A00%3A00Z&to=2026-12-01T00%3A00%3A00Z",
            "to",
        ),
        ("before=abc", "before"),
        ("before=0", "before"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
    ] {
        for route in ["audit", "audit/export.csv"] {
            if route.ends_with("csv") && field == "limit" {
                continue;
            }
            let res = client
                .get(&format!("/api/tenants/{}/{route}?{query}", t.w.a))
                .await;
            assert_eq!(res.fields(), vec![field], "{route}?{query}");
            let body: ErrorBody = res.json();
            assert_eq!(body.code, shared::ErrorCode::ValidationFailed);
        }
    }
    // Every problem at once, each by its field.
    let res = client
        .get(&format!(
            "/api/tenants/{}/audit?action=nope&actor=nobody&limit=999",
            t.w.a
        ))
        .await;
    assert_eq!(res.fields(), vec!["action", "actor", "limit"]);
    assert_eq!(t.rows().await.len(), before, "a refused read wrote nothing");
}

/// The CSV records under the header, each as its cells.
fn records(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_bytes());
    let header = reader.headers().unwrap().iter().map(String::from).collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

#[tokio::test]
async fn the_csv_export_holds_the_same_rows_as_the_list_quoted_and_with_formulas_defused() {
    let t = Trail::new().await;
    let res = t.export("").await;
    assert_eq!(res.status(), 200);
    let headers = res.headers().clone();
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    let disposition = headers["content-disposition"].to_str().unwrap();
    assert!(
        disposition.starts_with(&format!("attachment; filename=\"audit-{}-", t.w.a))
            && disposition.ends_with(".csv\""),
        "{disposition}"
    );
    assert!(!headers.contains_key("x-audit-export-continue-before"));
    let text = res.text().await.unwrap();
    assert!(text.starts_with(
        "seq,created_at,action,actor_kind,actor_id,actor_name,actor_email,impersonator_id,\
         target_kind,target_id,details,request_id,hash\r\n"
    ));
    let (header, rows) = records(&text);
    assert_eq!(header.len(), 13);
    let all: Vec<i64> = t.rows().await.iter().map(|r| r.0).collect();
    assert_eq!(
        rows.iter()
            .map(|r| r[0].parse::<i64>().unwrap())
            .collect::<Vec<_>>(),
        all
    );

    // Filtered: the same rows as the list for the same filters, cell for cell.
    let query = format!("action=agent.updated&actor={}", t.second);
    let listed = t.list(&query).await.items;
    let res = t.export(&query).await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    let (_, rows) = records(&text);
    assert_eq!(rows.len(), 2);
    assert_eq!(listed.len(), 2);
    for (row, event) in rows.iter().zip(&listed) {
        assert_eq!(row[0], event.seq.to_string());
        let at: DateTime<Utc> = row[1].parse().unwrap();
        assert_eq!(at, event.created_at);
        assert_eq!(row[2], event.action);
        assert_eq!(row[3], "user");
        assert_eq!(row[4], t.second.to_string());
        // A spreadsheet would run the name as a formula: it starts with an apostrophe instead.
        assert_eq!(row[5], format!("'{FORMULA_NAME}"));
        assert_eq!(row[6], t.second_email);
        assert_eq!(row[7], "");
        assert_eq!(row[8], "agent");
        assert_eq!(Some(row[9].as_str()), event.target_id.as_deref());
        let details: serde_json::Value = serde_json::from_str(&row[10]).unwrap();
        assert_eq!(details, event.details);
        assert_eq!(Some(row[11].as_str()), event.request_id.as_deref());
        assert_eq!(row[12], event.hash);
    }
    // As written: the name quoted (it holds a comma and quotes), its quotes doubled, the
    // apostrophe inside the quotes; lines end in CRLF.
    assert!(
        text.contains("\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"open\"\"), Esq.\""),
        "{text}"
    );
    assert_eq!(text.matches("\r\n").count(), 3);
}

#[tokio::test]
async fn a_member_who_left_shows_by_id_only() {
    let t = Trail::new().await;
    let res = t
        .as_user(t.first)
        .await
        .call(
            Method::DELETE,
            &format!("/api/tenants/{}/members/{}", t.w.a, t.second),
            None,
        )
        .await;
    assert_eq!(res.status, 204, "{}", res.body);
    let by_second = t.list(&format!("actor={}", t.second)).await;
    assert_eq!(by_second.items.len(), 3);
    assert!(by_second.items.iter().all(|e| e.actor_id == Some(t.second)
        && e.actor_name.is_none()
        && e.actor_email.is_none()));
    // The first admin's rows still carry their account.
    let by_first = t.list(&format!("actor={}", t.first)).await;
    assert!(
        by_first
            .items
            .iter()
            .all(|e| e.actor_name.as_deref() == Some("Test user") && e.actor_email.is_some())
    );
    // And the filters offer current members only.
    let filters: AuditFilters = t
        .as_user(t.first)
        .await
        .get(&format!("/api/tenants/{}/audit/filters", t.w.a))
        .await
        .json();
    assert!(filters.members.iter().all(|m| m.user_id != t.second));
    assert!(filters.members.iter().any(|m| m.user_id == t.first));
}

#[tokio::test]
async fn the_filters_offer_every_action_and_the_members() {
    let t = Trail::new().await;
    let operator = t.as_user(t.w.operator_a).await;
    let res = operator
        .get(&format!("/api/tenants/{}/audit/filters", t.w.a))
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let filters: AuditFilters = res.json();
    for action in runtime::store::audit::Action::ALL {
        assert!(
            filters.actions.contains(&action.as_str().to_string()),
            "{action}"
        );
    }
    assert!(filters.actions.windows(2).all(|w| w[0] < w[1]));
    let mut members: Vec<Uuid> = filters.members.iter().map(|m| m.user_id).collect();
    members.sort();
    let mut tx = t.app.store.tenant_tx(t.w.a).await.unwrap();
    let mut expected: Vec<Uuid> =
        sqlx::query_scalar("SELECT user_id FROM tenant_members ORDER BY user_id")
            .fetch_all(tx.connection())
            .await
            .unwrap();
    expected.sort();
    for who in [t.w.operator_a, t.w.admin_a, t.second] {
        assert!(expected.contains(&who));
    }
    assert_eq!(members, expected);
}

async fn status(app: &TestApp, tenant: TenantId, path: &str, token: Option<&str>) -> u16 {
    app.request(Method::GET, &format!("/api/tenants/{tenant}/{path}"), token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn operators_read_the_trail_and_other_tenants_admins_find_nothing() {
    let t = Trail::new().await;
    let operator = t.app.token_for(t.w.operator_a, None).await;
    let admin_b = t.app.token_for(t.w.admin_b, None).await;
    for path in ["audit", "audit/export.csv", "audit/filters"] {
        assert_eq!(
            status(&t.app, t.w.a, path, Some(&operator)).await,
            200,
            "{path}"
        );
        assert_eq!(
            status(&t.app, t.w.a, path, Some(&admin_b)).await,
            404,
            "{path}"
        );
        assert_eq!(status(&t.app, t.w.a, path, None).await, 401, "{path}");
    }
    // The operator sees the admins' rows as the admins do.
    let page: CursorPage<AuditEvent> = t
        .app
        .get_json(
            &format!("/api/tenants/{}/audit?action=agent.created", t.w.a),
            &operator,
        )
        .await;
    assert_eq!(t.ours(&page.items).len(), 2);
    // Tenant B's own trail holds none of A's rows.
    let b: CursorPage<AuditEvent> = t
        .app
        .get_json(&format!("/api/tenants/{}/audit?limit=200", t.w.b), &admin_b)
        .await;
    let a_hashes: Vec<String> = t
        .list("limit=200")
        .await
        .items
        .into_iter()
        .map(|e| e.hash)
        .collect();
    assert!(!b.items.is_empty());
    assert!(b.items.iter().all(|e| !a_hashes.contains(&e.hash)));
    assert!(
        b.items
            .iter()
            .all(|e| e.actor_id != Some(t.first) && e.actor_id != Some(t.second))
    );
}

#[tokio::test]
async fn an_export_stops_at_its_cap_and_says_where_to_go_on() {
    let t = Trail::new().await;
    let cap = 100_000;
    // More system rows than one export holds, written in one statement (the trigger chains
    // them as it would any rows).
    let mut tx = t.app.store.tenant_tx(t.w.a).await.unwrap();
    sqlx::query(
        "INSERT INTO audit_events (tenant_id, actor_kind, action, details) \
         SELECT $1, 'system', 'job.retried', jsonb_build_object('n', n) \
           FROM generate_series(1, $2) AS n",
    )
    .bind(t.w.a.as_uuid())
    .bind(cap)
    .execute(tx.connection())
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let all: Vec<i64> = t.rows().await.iter().map(|r| r.0).collect();
    assert!(all.len() > cap as usize);

    let res = t.export("").await;
    assert_eq!(res.status(), 200);
    let last_written = all[cap as usize - 1];
    assert_eq!(
        res.headers()["x-audit-export-continue-before"],
        last_written.to_string().as_str()
    );
    let text = res.text().await.unwrap();
    let (_, rows) = records(&text);
    assert_eq!(rows.len(), cap as usize + 1, "the rows and the last line");
    let (last, written) = rows.split_last().unwrap();
    assert_eq!(
        written
            .iter()
            .map(|r| r[0].parse::<i64>().unwrap())
            .collect::<Vec<_>>(),
        all[..cap as usize]
    );
    assert!(last[0].starts_with("# Truncated"), "{last:?}");
    assert!(last[0].contains(&format!("before={last_written}")));

    // Going on from there exports the rest, with no truncation.
    let res = t.export(&format!("before={last_written}")).await;
    assert!(!res.headers().contains_key("x-audit-export-continue-before"));
    let (_, rest) = records(&res.text().await.unwrap());
    assert_eq!(
        rest.iter()
            .map(|r| r[0].parse::<i64>().unwrap())
            .collect::<Vec<_>>(),
        all[cap as usize..]
    );
}
