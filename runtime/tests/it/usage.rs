//! The usage report against sums worked out by hand over a seeded month: several agents, models
//! and key owners, in a time zone (Asia/Kolkata, UTC+5:30) where a UTC day would put calls on
//! the wrong side of midnight. Another tenant sees none of it.

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use runtime::store::llm::{UsageRecord, add_usage};
use shared::usage::{KeyOwner, LlmTotals, UsageReport};
use shared::{AgentId, TenantId};
use uuid::Uuid;

use crate::support::{TestApp, field_errors};
use crate::world::{self, Who, World};

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

struct Call<'a> {
    at: &'a str,
    agent: AgentId,
    channel: Option<&'a str>,
    owner: KeyOwner,
    provider: &'a str,
    model: &'a str,
    tokens: (i64, i64),
    cost: Option<i64>,
}

async fn seed(app: &TestApp, tenant: TenantId, calls: &[Call<'_>]) {
    let mut tx = app.store.tenant_tx(tenant).await.unwrap();
    for (i, c) in calls.iter().enumerate() {
        add_usage(
            &mut tx,
            &UsageRecord {
                at: at(c.at),
                agent: Some(c.agent),
                channel: c.channel,
                key_owner: c.owner,
                provider: c.provider,
                model: c.model,
                input_tokens: c.tokens.0,
                output_tokens: c.tokens.1,
                cached_input_tokens: 0,
                cost_micro_usd: c.cost,
                slot: (i % 16) as i16,
            },
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
}

fn llm(calls: i64, input: i64, output: i64, cost: i64, unpriced: i64) -> LlmTotals {
    LlmTotals {
        calls,
        input_tokens: input,
        output_tokens: output,
        cached_input_tokens: 0,
        cost_micro_usd: cost,
        unpriced_calls: unpriced,
    }
}

#[tokio::test]
async fn a_month_of_usage_adds_up_by_the_tenants_own_days_with_platform_and_own_keys_apart() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let (sales, support) = (
        world::agent(&app, w.a, "Sales").await,
        world::agent(&app, w.a, "Support").await,
    );
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    sqlx::query("UPDATE tenants SET time_zone = 'Asia/Kolkata'")
        .execute(tx.connection())
        .await
        .unwrap();
    // Conversation traffic of December 2025 (the fixtures' own rows are of today, later).
    let connection: Uuid = sqlx::query_scalar("SELECT id FROM channel_connections LIMIT 1")
        .fetch_one(tx.connection())
        .await
        .unwrap();
    for (key, created, agent) in [
        // 00:15 on 1 December in Kolkata, still 30 November in UTC.
        ("k1", "2025-11-30T18:45:00Z", sales),
        ("k2", "2025-12-10T09:00:00Z", support),
        // 23:45 on 30 November in Kolkata: not in December.
        ("k3", "2025-11-30T18:15:00Z", sales),
    ] {
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO conversations (id, tenant_id, channel_connection_id, agent_id, external_key, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(w.a.as_uuid())
        .bind(connection)
        .bind(agent)
        .bind(key)
        .bind(at(created))
        .execute(tx.connection())
        .await
        .unwrap();
        for (direction, minutes) in [("inbound", 0), ("outbound", 1), ("inbound", 2)] {
            // A reply has the shape the reply protocol gives it: an answer to one event, sent.
            let outbound = direction == "outbound";
            sqlx::query(
                "INSERT INTO messages (id, tenant_id, conversation_id, direction, body, created_at, \
                                       reply_to, kind, status) \
                 VALUES ($1, $2, $3, $4, 'x', $5, $6, $7, $8)",
            )
            .bind(Uuid::new_v4())
            .bind(w.a.as_uuid())
            .bind(id)
            .bind(direction)
            .bind(at(created) + chrono::Duration::minutes(minutes))
            .bind(outbound.then(|| format!("{key}-event")))
            .bind(outbound.then_some("answer"))
            .bind(outbound.then_some("sent"))
            .execute(tx.connection())
            .await
            .unwrap();
        }
        if key == "k2" {
            sqlx::query(
                "INSERT INTO escalations (id, tenant_id, conversation_id, reason, created_at) \
                 VALUES ($1, $2, $3, 'keywords', $4)",
            )
            .bind(Uuid::new_v4())
            .bind(w.a.as_uuid())
            .bind(id)
            .bind(at(created) + chrono::Duration::minutes(3))
            .execute(tx.connection())
            .await
            .unwrap();
        }
    }
    tx.commit().await.unwrap();
    let gpt = ("openai", "gpt-4o-mini");
    let claude = ("anthropic", "claude-3-5-haiku-latest");
    seed(
        &app,
        w.a,
        &[
            // 23:59 on 30 November in Kolkata: November.
            Call {
                at: "2025-11-30T18:29:00Z",
                agent: sales,
                channel: Some("slack"),
                owner: KeyOwner::Platform,
                provider: gpt.0,
                model: gpt.1,
                tokens: (100, 10),
                cost: Some(50),
            },
            // 00:01 on 1 December in Kolkata (30 November in UTC): December.
            Call {
                at: "2025-11-30T18:31:00Z",
                agent: sales,
                channel: Some("slack"),
                owner: KeyOwner::Platform,
                provider: gpt.0,
                model: gpt.1,
                tokens: (200, 20),
                cost: Some(70),
            },
            Call {
                at: "2025-12-15T10:00:00Z",
                agent: support,
                channel: Some("whatsapp"),
                owner: KeyOwner::Platform,
                provider: claude.0,
                model: claude.1,
                tokens: (300, 30),
                cost: Some(400),
            },
            Call {
                at: "2025-12-15T10:05:00Z",
                agent: support,
                channel: Some("whatsapp"),
                owner: KeyOwner::Tenant,
                provider: gpt.0,
                model: gpt.1,
                tokens: (50, 5),
                cost: Some(20),
            },
            // A model without a price: counted, its cost unknown (not zero).
            Call {
                at: "2025-12-31T18:29:00Z",
                agent: sales,
                channel: Some("web"),
                owner: KeyOwner::Platform,
                provider: "ollama",
                model: "llama3.2",
                tokens: (10, 1),
                cost: None,
            },
            // 00:01 on 1 January in Kolkata: not December.
            Call {
                at: "2025-12-31T18:31:00Z",
                agent: sales,
                channel: Some("web"),
                owner: KeyOwner::Platform,
                provider: gpt.0,
                model: gpt.1,
                tokens: (999, 99),
                cost: Some(999),
            },
        ],
    )
    .await;
    // The other tenant has usage of its own in the same month, which A never sees.
    seed(
        &app,
        w.b,
        &[Call {
            at: "2025-12-15T10:00:00Z",
            agent: w.agent_b,
            channel: Some("slack"),
            owner: KeyOwner::Platform,
            provider: gpt.0,
            model: gpt.1,
            tokens: (7, 7),
            cost: Some(7_000),
        }],
    )
    .await;

    let operator = w.token(&app, Who::OperatorA).await.unwrap();
    let path = format!("/api/tenants/{}/usage?from=2025-12-01&to=2025-12-31", w.a);
    let report: UsageReport = app.get_json(&path, &operator).await;
    assert_eq!(report.zone, "Asia/Kolkata");
    assert_eq!(report.series.len(), 31, "every day, empty ones too");
    assert_eq!(report.totals.platform, llm(3, 510, 51, 470, 1));
    assert_eq!(report.totals.own_keys, llm(1, 50, 5, 20, 0));
    assert_eq!(
        (
            report.totals.conversations,
            report.totals.messages,
            report.totals.handoffs
        ),
        (2, 4, 1),
        "k1 and k2 with two customer messages each, one hand-off"
    );
    let day = |d: &str| {
        report
            .series
            .iter()
            .find(|p| p.start.to_string() == d)
            .unwrap()
    };
    assert_eq!(day("2025-12-01").platform, llm(1, 200, 20, 70, 0));
    assert_eq!(day("2025-12-01").conversations, 1);
    assert_eq!(day("2025-12-15").platform, llm(1, 300, 30, 400, 0));
    assert_eq!(day("2025-12-15").own_keys, llm(1, 50, 5, 20, 0));
    assert_eq!(day("2025-12-31").platform, llm(1, 10, 1, 0, 1));
    assert_eq!(day("2025-12-02").platform, LlmTotals::default());
    // Dearest agent first; each line keeps whose key paid apart.
    assert_eq!(report.by_agent.len(), 2);
    assert_eq!(report.by_agent[0].label, "Support");
    assert_eq!(report.by_agent[0].platform, llm(1, 300, 30, 400, 0));
    assert_eq!(report.by_agent[0].own_keys, llm(1, 50, 5, 20, 0));
    assert_eq!(report.by_agent[1].label, "Sales");
    assert_eq!(report.by_agent[1].platform, llm(2, 210, 21, 70, 1));
    let model = |key: &str| report.by_model.iter().find(|l| l.key == key).unwrap();
    assert_eq!(model("openai/gpt-4o-mini").platform, llm(1, 200, 20, 70, 0));
    assert_eq!(model("openai/gpt-4o-mini").own_keys, llm(1, 50, 5, 20, 0));
    assert_eq!(model("ollama/llama3.2").platform, llm(1, 10, 1, 0, 1));
    let channel = |key: &str| report.by_channel.iter().find(|l| l.key == key).unwrap();
    assert_eq!(channel("whatsapp").platform.cost_micro_usd, 400);
    assert_eq!(channel("slack").platform.calls, 1);
    assert_eq!(report.by_key_owner.len(), 2);

    // By month: one point with the same sums; by week, weeks from Monday.
    let monthly: UsageReport = app
        .get_json(&format!("{path}&granularity=month"), &operator)
        .await;
    assert_eq!(monthly.series.len(), 1);
    assert_eq!(monthly.series[0].platform, report.totals.platform);
    let weekly: UsageReport = app
        .get_json(&format!("{path}&granularity=week"), &operator)
        .await;
    // 1 December 2025 is a Monday: five weeks begin in the range.
    assert_eq!(weekly.series.len(), 5);
    assert_eq!(weekly.series[0].start.to_string(), "2025-12-01");
    let summed = weekly.series.iter().fold(LlmTotals::default(), |mut t, p| {
        t.add(&p.platform);
        t
    });
    assert_eq!(summed, report.totals.platform);
    // Filters: the tenant's own keys only; one agent.
    let own: UsageReport = app
        .get_json(&format!("{path}&key_owner=tenant"), &operator)
        .await;
    assert_eq!(own.totals.platform, LlmTotals::default());
    assert_eq!(own.totals.own_keys, llm(1, 50, 5, 20, 0));
    let sales_only: UsageReport = app
        .get_json(&format!("{path}&agent={sales}"), &operator)
        .await;
    assert_eq!(sales_only.totals.platform, llm(2, 210, 21, 70, 1));
    assert_eq!(sales_only.totals.conversations, 1);

    // The CSV download: a row per day, the same sums, dollars exact to the micro-dollar.
    let res = app
        .request(
            Method::GET,
            &format!(
                "/api/tenants/{}/usage/export?from=2025-12-01&to=2025-12-31",
                w.a
            ),
            Some(&operator),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("usage-2025-12-01-to-2025-12-31.csv")
    );
    let csv = res.text().await.unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 32, "a header and 31 days");
    assert_eq!(rows[0][0], "period_start");
    let first = &rows[1];
    assert_eq!(first[0], "2025-12-01");
    assert_eq!((first[1], first[2], first[5]), ("1", "200", "0.000070"));
    let fifteenth = rows.iter().find(|r| r[0] == "2025-12-15").unwrap();
    assert_eq!(
        (fifteenth[7], fifteenth[10]),
        ("1", "0.000020"),
        "own keys apart"
    );
    let last = rows.iter().find(|r| r[0] == "2025-12-31").unwrap();
    assert_eq!(
        (last[1], last[5], last[6]),
        ("1", "0.000000", "1"),
        "unpriced counted, cost unknown"
    );

    // Bad input is a field error, and nothing else.
    for (query, field) in [
        ("from=2025-13-01", "from"),
        ("from=2025-12-31&to=2025-12-01", "to"),
        ("granularity=hour", "granularity"),
        ("agent=nope", "agent"),
        ("channel=fax", "channel"),
        ("key_owner=mine", "key_owner"),
        ("from=2020-01-01&to=2025-12-01", "from"),
    ] {
        let res = app
            .request(
                Method::GET,
                &format!("/api/tenants/{}/usage?{query}", w.a),
                Some(&operator),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(field_errors(res).await, vec![field.to_string()], "{query}");
    }

    // B's admin: A's usage does not exist for them, and B's own report has only B's call.
    let admin_b = w.token(&app, Who::AdminB).await.unwrap();
    let res = app
        .request(Method::GET, &path, Some(&admin_b))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let b: UsageReport = app
        .get_json(
            &format!("/api/tenants/{}/usage?from=2025-12-01&to=2025-12-31", w.b),
            &admin_b,
        )
        .await;
    assert_eq!(b.totals.platform, llm(1, 7, 7, 7_000, 0));
    assert_eq!(b.totals.own_keys, LlmTotals::default());

    // The platform admin's view across tenants, by UTC days: December 2025 in UTC holds A's
    // calls of the 15th and the two of the 31st (the 30 November 18:31 one is November in UTC)
    // and B's; the top spender first; only the tenants listed learn of the read.
    let platform = w.token(&app, Who::PlatformAdmin).await.unwrap();
    let all: shared::usage::PlatformUsage = app
        .get_json(
            "/api/platform/usage?from=2025-12-01&to=2025-12-31&top=1",
            &platform,
        )
        .await;
    assert_eq!(all.tenants, 2);
    assert_eq!(
        all.platform,
        llm(4, 300 + 10 + 999 + 7, 30 + 1 + 99 + 7, 400 + 999 + 7_000, 1)
    );
    assert_eq!(all.own_keys, llm(1, 50, 5, 20, 0));
    assert_eq!(all.top.len(), 1);
    assert_eq!(all.top[0].tenant_id, w.b);
    let reads = |tenant: TenantId| {
        let store = app.store.clone();
        async move {
            let mut tx = store.tenant_tx(tenant).await.unwrap();
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM audit_events WHERE action = 'usage.read_by_platform'",
            )
            .fetch_one(tx.connection())
            .await
            .unwrap();
            n
        }
    };
    assert_eq!((reads(w.a).await, reads(w.b).await), (0, 1));
    let both: shared::usage::PlatformUsage = app
        .get_json(
            "/api/platform/usage?from=2025-12-01&to=2025-12-31",
            &platform,
        )
        .await;
    assert_eq!(
        both.top
            .iter()
            .map(|t| (t.tenant_id, t.platform.cost_micro_usd))
            .collect::<Vec<_>>(),
        vec![(w.b, 7_000), (w.a, 1_399)]
    );
    assert_eq!(both.top[1].own_keys, llm(1, 50, 5, 20, 0));
    assert_eq!((reads(w.a).await, reads(w.b).await), (1, 2));
    for (query, field) in [
        ("top=0", "top"),
        ("from=2025-12-31&to=2025-12-01", "to"),
        ("from=x", "from"),
    ] {
        let res = app
            .request(
                Method::GET,
                &format!("/api/platform/usage?{query}"),
                Some(&platform),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(field_errors(res).await, vec![field.to_string()], "{query}");
    }
}
