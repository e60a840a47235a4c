//! Two-tenant fixtures: one row in every tenant-owned table for each tenant, written through the
//! runtime's role and `TenantTx` exactly as the runtime writes.

use runtime::store::audit::{self, Action, Actor, NewEvent, Target};
use runtime::store::{Store, tenants};
use shared::{AgentId, ConnectionId, TenantId};
use uuid::Uuid;

/// What was seeded for one tenant.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub tenant: TenantId,
    pub connection: ConnectionId,
    pub connection_external_id: String,
}

/// Seeds a tenant with a member, an agent, a Slack connection, a conversation, a message, a
/// finished job and an audit event.
pub async fn seed_tenant(store: &Store, label: &str) -> Seeded {
    let slug = format!("{label}-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let (tenant, tx) = tenants::create(store, &slug, &format!("Tenant {label}"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let tenant = tenant.id;
    let (user, agent, connection, conversation, message, end_user) = (
        Uuid::new_v4(),
        AgentId::from_uuid(Uuid::new_v4()),
        ConnectionId::from_uuid(Uuid::new_v4()),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    let external_id = format!(
        "T{}",
        &Uuid::new_v4().simple().to_string()[..10].to_uppercase()
    );

    // Users are global (not tenant-owned): written outside any tenant transaction.
    sqlx::query("INSERT INTO users (id, email, display_name) VALUES ($1, $2, $3)")
        .bind(user)
        .bind(format!("{slug}@example.com"))
        .bind(format!("Admin of {label}"))
        .execute(store.pool())
        .await
        .unwrap();

    let mut tx = store.tenant_tx(tenant).await.unwrap();
    let t = tenant.as_uuid();
    let c = tx.connection();
    sqlx::query(
        "INSERT INTO tenant_members (tenant_id, user_id, role) VALUES ($1, $2, 'customer_admin')",
    )
    .bind(t)
    .bind(user)
    .execute(&mut *c)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO agents (id, tenant_id, name, job_title, persona, system_prompt) \
         VALUES ($1, $2, $3, 'Support specialist', 'Warm and concise', 'Help customers')",
    )
    .bind(agent)
    .bind(t)
    .bind(format!("Agent of {label}"))
    .execute(&mut *c)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO channel_connections (id, tenant_id, kind, external_id, agent_id, \
                                          secret_ciphertext, secret_key_version) \
         VALUES ($1, $2, 'slack', $3, $4, '\\x00010203', 1)",
    )
    .bind(connection)
    .bind(t)
    .bind(&external_id)
    .bind(agent)
    .execute(&mut *c)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO conversations (id, tenant_id, channel_connection_id, agent_id, external_key) \
         VALUES ($1, $2, $3, $4, 'C1:1700000000.000100')",
    )
    .bind(conversation)
    .bind(t)
    .bind(connection)
    .bind(agent)
    .execute(&mut *c)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO end_users (id, tenant_id, channel, external_id, display_name) \
         VALUES ($1, $2, 'slack', $3, 'A customer')",
    )
    .bind(end_user)
    .bind(t)
    .bind(format!("{external_id}:U1"))
    .execute(&mut *c)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO messages (id, tenant_id, conversation_id, direction, sender, body, \
                               provider_event_id, end_user_id) \
         VALUES ($1, $2, $3, 'inbound', 'U1', 'hello', $4, $5)",
    )
    .bind(message)
    .bind(t)
    .bind(conversation)
    .bind(format!("Ev{label}"))
    .bind(end_user)
    .execute(&mut *c)
    .await
    .unwrap();
    // A budget with its current month (UTC: the fixtures' zone), a reservation in flight and an
    // alert it raised.
    let month = chrono::Utc::now().format("%Y-%m").to_string();
    let budget = Uuid::new_v4();
    sqlx::query("INSERT INTO budgets (id, tenant_id, monthly_micro_usd) VALUES ($1, $2, 5000000)")
        .bind(budget)
        .bind(t)
        .execute(&mut *c)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO budget_periods (tenant_id, budget_id, period, spent_micro_usd) \
         VALUES ($1, $2, $3, 2600000)",
    )
    .bind(t)
    .bind(budget)
    .bind(&month)
    .execute(&mut *c)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO budget_reservations (id, tenant_id, budget_id, period, amount, expires_at) \
         VALUES ($1, $2, $3, $4, 1000, now() + interval '1 minute')",
    )
    .bind(Uuid::new_v4())
    .bind(t)
    .bind(budget)
    .bind(&month)
    .execute(&mut *c)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO budget_alerts (id, tenant_id, budget_id, period, threshold, spent_micro_usd, \
                                    monthly_micro_usd) \
         VALUES ($1, $2, $3, $4, 50, 2600000, 5000000)",
    )
    .bind(Uuid::new_v4())
    .bind(t)
    .bind(budget)
    .bind(&month)
    .execute(&mut *c)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO escalations (id, tenant_id, conversation_id, reason, handoff_target) \
         VALUES ($1, $2, $3, 'keywords', '#support')",
    )
    .bind(Uuid::new_v4())
    .bind(t)
    .bind(conversation)
    .execute(&mut *c)
    .await
    .unwrap();
    runtime::store::llm::add_usage(
        &mut tx,
        &runtime::store::llm::UsageRecord {
            at: chrono::Utc::now(),
            agent: Some(agent),
            channel: Some("slack"),
            key_owner: shared::usage::KeyOwner::Platform,
            provider: "openai",
            model: "gpt-4o-mini",
            input_tokens: 10,
            output_tokens: 5,
            cached_input_tokens: 0,
            cost_micro_usd: Some(5),
            slot: 0,
        },
    )
    .await
    .unwrap();
    runtime::store::llm::put_key(&mut tx, "openai", b"\x00\x00\x00\x01sealed", 1, "...abcd")
        .await
        .unwrap();
    runtime::store::channels::note_inbound(&mut tx, connection)
        .await
        .unwrap();
    runtime::store::channels::note_error(&mut tx, connection, Some("a seeded error"))
        .await
        .unwrap();
    runtime::store::agents::count_decline(&mut tx, agent, chrono::Utc::now().date_naive())
        .await
        .unwrap();
    // A report for a message not marked yet.
    runtime::store::conversations::record_delivery(
        &mut tx,
        connection,
        &format!("wamid.seeded-{label}"),
        shared::channel::DeliveryStatus::Delivered,
        None,
    )
    .await
    .unwrap();
    // A document with a passage and its vector, a memory of the end user, and the tenant's
    // index (one row each, as the isolation test counts them).
    let document = Uuid::new_v4();
    runtime::store::knowledge::insert_document(
        &mut tx,
        &runtime::store::knowledge::NewDocument {
            id: document,
            title: "Seeded FAQ",
            source: shared::knowledge::DocumentSource::Upload,
            url: None,
            filename: Some("faq.md"),
            size_bytes: 10,
            agent_ids: None,
            created_by: None,
        },
    )
    .await
    .unwrap();
    let chunk = Uuid::new_v4();
    runtime::store::knowledge::replace_chunks(
        &mut tx,
        document,
        &[runtime::store::knowledge::ChunkRow {
            id: chunk,
            ordinal: 0,
            heading: String::new(),
            text: "Seeded passage".into(),
            hash: vec![0; 32],
        }],
    )
    .await
    .unwrap();
    let memory = Uuid::new_v4();
    runtime::store::knowledge::insert_memory(
        &mut tx,
        memory,
        shared::EndUserId::from_uuid(end_user),
        None,
        "Prefers email",
    )
    .await
    .unwrap();
    runtime::store::knowledge::put_embeddings(
        &mut tx,
        "fixture-model",
        &[runtime::store::knowledge::EmbeddingRow {
            id: chunk,
            kind: runtime::store::knowledge::VectorKind::Chunk,
            source: document,
            vector: vec![1.0, 0.0],
        }],
    )
    .await
    .unwrap();
    runtime::store::knowledge::put_index(
        &mut tx,
        // The index the platform's default model makes, as a tenant's first upload records it.
        &runtime::store::knowledge::IndexRow {
            model: runtime::embed::LOCAL_MODEL_ID.into(),
            dimension: 384,
            building: None,
            building_model: None,
            building_dimension: None,
            building_done: 0,
            building_total: 0,
            building_error: None,
        },
    )
    .await
    .unwrap();
    let tool = Uuid::new_v4();
    runtime::store::tools::save(
        &mut tx,
        &runtime::store::tools::ToolRow {
            id: tool,
            name: "seeded_lookup".into(),
            description: "Looks things up.".into(),
            parameters: serde_json::json!({ "type": "object" }),
            method: "GET".into(),
            url: "https://shop.example/x".into(),
            headers: serde_json::json!([]),
            secrets: None,
            secrets_key_version: None,
            max_response_bytes: 1024,
            timeout_ms: 1000,
            needs_confirmation: false,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        },
    )
    .await
    .unwrap();
    runtime::store::tools::record_step(
        &mut tx,
        &[runtime::store::tools::CallRow {
            id: Uuid::new_v4(),
            conversation_id: shared::ConversationId::from_uuid(conversation),
            event_id: format!("seeded-{tool}"),
            agent_id: Some(agent),
            end_user_id: Some(shared::EndUserId::from_uuid(end_user)),
            step: 0,
            position: 0,
            call_id: "call_seeded".into(),
            tool_id: Some(tool.to_string()),
            name: "seeded_lookup".into(),
            arguments: serde_json::json!({}),
            sealed_arguments: None,
            step_text: String::new(),
            outcome: "ok".into(),
            result: "seeded result".into(),
            passages: None,
            duration_ms: Some(1),
            created_at: chrono::Utc::now(),
            confirmed_event: None,
        }],
    )
    .await
    .unwrap();
    runtime::store::people::create(
        &mut tx,
        &runtime::store::people::NewInvitation {
            id: Uuid::new_v4(),
            email: &format!("invited-{label}-{}@example.com", Uuid::new_v4().simple()),
            role: shared::auth::TenantRole::CustomerOperator,
            token_hash: &runtime::people::token_hash(&Uuid::new_v4().to_string()),
            invited_by: Some(user),
            expires_at: chrono::Utc::now() + chrono::Duration::days(7),
        },
    )
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO conversation_events (id, tenant_id, conversation_id, kind, body) \
         SELECT $1, tenant_id, id, 'note', 'A fixture note' FROM conversations LIMIT 1",
    )
    .bind(Uuid::new_v4())
    .execute(tx.connection())
    .await
    .unwrap();
    // Finished already, so no runner in a test picks it up.
    sqlx::query(
        "INSERT INTO jobs (id, tenant_id, kind, status, attempts, finished_at) \
         VALUES ($1, $2, 'fixture.seeded', 'succeeded', 1, now())",
    )
    .bind(Uuid::new_v4())
    .bind(tx.tenant().as_uuid())
    .execute(tx.connection())
    .await
    .unwrap();
    audit::append(
        &mut tx,
        &NewEvent {
            actor: Actor::User(user),
            action: Action::AgentCreated,
            target: Target::Agent(agent),
            details: serde_json::json!({ "n": 1 }),
            request_id: Some("test".into()),
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    Seeded {
        tenant,
        connection,
        connection_external_id: external_id,
    }
}
