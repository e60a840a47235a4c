//! The knowledge base and long-term memory, end to end against the real server, Postgres,
//! Redis and the embedded vector engine: documents become searchable passages, answers cite
//! them, each tenant finds only its own, URL imports stay on the public internet, customers are
//! remembered across conversations and can be forgotten completely.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use reqwest::{Method, StatusCode};
use runtime::engine::turn::{EngineSettings, Outcome};
use runtime::jobs::{Registry, RunnerSettings};
use runtime::vector::{Kind, Search};
use serde_json::{Value, json};
use shared::channel::ChatMessage;
use shared::knowledge::{Document, DocumentStatus, KnowledgeIndex, KnowledgeResults, Memory};
use shared::resources::Page;
use shared::{AgentId, EndUserId, TenantId};
use uuid::Uuid;

use crate::support::{AppOptions, TestApp};
use crate::world::{self, World};

pub(crate) const FAQ: &str = "# Acme FAQ\n\n## Refunds\n\nRefunds are issued within 14 days of the return \
                   being received.\n\n## Shipping\n\nOrders ship from Rotterdam every weekday \
                   before noon.\n";

fn runner() -> RunnerSettings {
    RunnerSettings {
        concurrency: 2,
        lease: Duration::from_secs(10),
        poll_interval: Duration::from_secs(1),
        retry_base: Duration::from_millis(100),
        retry_max: Duration::from_millis(500),
    }
}

/// The server with the engine and the job runner (every built-in handler).
async fn app_with(knowledge: Option<runtime::config::KnowledgeSettings>) -> TestApp {
    TestApp::spawn_with(AppOptions {
        engine: Some(EngineSettings::default()),
        jobs: Some((runner(), Registry::builtin().unwrap())),
        knowledge,
        ..AppOptions::default()
    })
    .await
}

pub(crate) async fn app() -> TestApp {
    app_with(None).await
}

/// Uploads `bytes` as `filename` into `tenant`'s knowledge base.
async fn upload(
    app: &TestApp,
    token: &str,
    tenant: TenantId,
    filename: &str,
    bytes: &[u8],
) -> (StatusCode, Value) {
    let res = app
        .request(
            Method::POST,
            &format!("/api/tenants/{tenant}/knowledge?filename={filename}"),
            Some(token),
        )
        .header("content-type", "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn document(app: &TestApp, token: &str, tenant: TenantId, id: Uuid) -> Document {
    app.get_json(&format!("/api/tenants/{tenant}/knowledge/{id}"), token)
        .await
}

/// Waits until the document leaves the active states (or the deadline passes).
async fn settled(app: &TestApp, token: &str, tenant: TenantId, id: Uuid) -> Document {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let doc = document(app, token, tenant, id).await;
        if !doc.status.is_active() {
            return doc;
        }
        assert!(
            Instant::now() < deadline,
            "the document never settled: {doc:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn ready_upload(
    app: &TestApp,
    token: &str,
    tenant: TenantId,
    name: &str,
    text: &str,
) -> Document {
    let (status, body) = upload(app, token, tenant, name, text.as_bytes()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let doc: Document = serde_json::from_value(body).unwrap();
    assert_eq!(doc.status, DocumentStatus::Queued);
    let doc = settled(app, token, tenant, doc.id).await;
    assert_eq!(doc.status, DocumentStatus::Ready, "{doc:?}");
    doc
}

async fn search(app: &TestApp, token: &str, tenant: TenantId, q: &str) -> KnowledgeResults {
    let res = app
        .request(
            Method::POST,
            &format!("/api/tenants/{tenant}/knowledge/search"),
            Some(token),
        )
        .json(&json!({ "q": q }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// Sends a test-chat message and waits for its turn.
pub(crate) async fn chat(
    app: &TestApp,
    token: &str,
    tenant: TenantId,
    agent: AgentId,
    conversation: &str,
    text: &str,
) {
    let mut events = app.events();
    let res = app
        .request(
            Method::POST,
            &format!("/api/tenants/{tenant}/agents/{agent}/messages"),
            Some(token),
        )
        .json(&json!({ "text": text, "conversation": conversation }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(events.finished(tenant, 1).await[0].1, Outcome::Done);
}

pub(crate) async fn transcript(
    app: &TestApp,
    token: &str,
    tenant: TenantId,
    agent: AgentId,
    conversation: &str,
) -> Vec<ChatMessage> {
    app.get_json(
        &format!("/api/tenants/{tenant}/agents/{agent}/messages?conversation={conversation}"),
        token,
    )
    .await
}

/// The system prompts of every turn the LLM was asked for, in order (not the memory
/// summaries, which the job runner asks for on its own schedule).
fn turn_prompts(app: &TestApp) -> Vec<String> {
    app.llm
        .received()
        .into_iter()
        .filter(|r| r.path == "/v1/chat/completions")
        .filter_map(|r| {
            r.body["messages"][0]["content"]
                .as_str()
                .map(str::to_string)
        })
        .filter(|system| system.starts_with("You are "))
        .collect()
}

fn last_system_prompt(app: &TestApp) -> String {
    turn_prompts(app).pop().expect("a turn asked the LLM")
}

#[actix_rt::test]
async fn an_uploaded_faq_becomes_ready_and_answers_cite_it() {
    let app = app().await;
    let w = World::new(&app).await;
    let admin = app.token_for(w.admin_a, None).await;
    let agent = world::agent(&app, w.a, "Nia").await;
    let doc = ready_upload(&app, &admin, w.a, "faq.md", FAQ).await;
    assert_eq!(doc.format.as_deref(), Some("markdown"));
    assert_eq!(doc.title, "Acme FAQ", "the document's own title");
    assert!(
        doc.chunks >= 1 && doc.progress_done == doc.progress_total,
        "{doc:?}"
    );

    let found = search(&app, &admin, w.a, "how long do refunds take").await;
    let top = found.passages.first().expect("a passage");
    assert_eq!(top.document_id, doc.id);
    assert!(top.text.contains("14 days"), "{top:?}");
    assert!(top.score >= found.floor);

    app.llm.script([e2e::llm::Behavior::Text(
        "Refunds are issued within 14 days of receiving the return [1].".into(),
    )]);
    chat(&app, &admin, w.a, agent, "faq", "How long do refunds take?").await;
    let system = last_system_prompt(&app);
    assert!(
        system.contains("Refunds are issued within 14 days"),
        "{system}"
    );
    assert!(system.contains("[1] Acme FAQ"), "{system}");
    let messages = transcript(&app, &admin, w.a, agent, "faq").await;
    let reply = messages.last().unwrap();
    assert_eq!(reply.citations.len(), 1, "{reply:?}");
    assert_eq!(reply.citations[0].document_id, doc.id);
    assert_eq!(reply.citations[0].title, "Acme FAQ");
}

#[actix_rt::test]
async fn each_tenant_finds_only_its_own_documents_through_the_api_and_in_a_turn() {
    let app = app().await;
    let w = World::new(&app).await;
    let (admin_a, admin_b) = (
        app.token_for(w.admin_a, None).await,
        app.token_for(w.admin_b, None).await,
    );
    let doc_a = ready_upload(&app, &admin_a, w.a, "faq.md", FAQ).await;
    let doc_b = ready_upload(&app, &admin_b, w.b, "faq.md", FAQ).await;
    for (token, tenant, own) in [(&admin_a, w.a, doc_a.id), (&admin_b, w.b, doc_b.id)] {
        let found = search(&app, token, tenant, "refunds within 14 days").await;
        assert!(!found.passages.is_empty());
        assert!(
            found.passages.iter().all(|p| p.document_id == own),
            "{found:?}"
        );
    }
    // A's document under A's path is not B's to read, and B's id under A's path is not A's.
    let stranger = app
        .request(
            Method::GET,
            &format!("/api/tenants/{}/knowledge/{}", w.a, doc_a.id),
            Some(&admin_b),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status(), StatusCode::NOT_FOUND);
    let crossed = app
        .request(
            Method::GET,
            &format!("/api/tenants/{}/knowledge/{}", w.a, doc_b.id),
            Some(&admin_a),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(crossed.status(), StatusCode::NOT_FOUND);
    let delete = app
        .request(
            Method::DELETE,
            &format!("/api/tenants/{}/knowledge/{}", w.a, doc_b.id),
            Some(&admin_a),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), StatusCode::NOT_FOUND);

    // Inside a turn: B's agent is given B's passage, never A's.
    app.llm
        .script([e2e::llm::Behavior::Text("Within 14 days [1].".into())]);
    chat(
        &app,
        &admin_b,
        w.b,
        w.agent_b,
        "iso",
        "How long do refunds take?",
    )
    .await;
    let messages = transcript(&app, &admin_b, w.b, w.agent_b, "iso").await;
    let cites = &messages.last().unwrap().citations;
    assert_eq!(cites.len(), 1);
    assert_eq!(cites[0].document_id, doc_b.id);

    // The store itself: a search names its tenant, and B's points never answer A's search.
    let k = app.app.knowledge();
    let space = {
        let mut tx = app.store.tenant_tx(w.a).await.unwrap();
        k.space(&mut tx).await.unwrap().unwrap()
    };
    let query = space
        .embedder
        .embed(&["refunds".to_string()])
        .await
        .unwrap()
        .remove(0);
    let hits = k
        .vectors()
        .search(&space.collection, &Search::new(w.a, Kind::Chunk, query, 50))
        .await
        .unwrap();
    assert!(!hits.is_empty());
    assert!(hits.iter().all(|h| h.source == doc_a.id), "{hits:?}");
}

#[actix_rt::test]
async fn deleting_a_document_removes_it_from_search_and_from_the_index() {
    let app = app().await;
    let w = World::new(&app).await;
    let admin = app.token_for(w.admin_a, None).await;
    let doc = ready_upload(&app, &admin, w.a, "faq.md", FAQ).await;
    let k = app.app.knowledge();
    let collection = {
        let mut tx = app.store.tenant_tx(w.a).await.unwrap();
        k.space(&mut tx).await.unwrap().unwrap().collection
    };
    assert!(k.vectors().count(&collection, w.a).await.unwrap() >= 1);
    let res = app
        .request(
            Method::DELETE,
            &format!("/api/tenants/{}/knowledge/{}", w.a, doc.id),
            Some(&admin),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(
        search(&app, &admin, w.a, "refunds")
            .await
            .passages
            .is_empty()
    );
    assert_eq!(k.vectors().count(&collection, w.a).await.unwrap(), 0);
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM embeddings WHERE source = $1")
        .bind(doc.id)
        .fetch_one(tx.connection())
        .await
        .unwrap();
    assert_eq!(left, 0);
    assert!(
        !k.original_path(w.a, doc.id).exists(),
        "the original is deleted too"
    );
    assert!(
        app.audit_actions(w.a)
            .await
            .contains(&"knowledge.document_deleted".to_string())
    );
}

/// A scripted web server for URL imports: what it answers at `/doc`, and a redirect at `/jump`.
#[derive(Debug, Clone)]
struct Site {
    state: Arc<Mutex<(u16, String, String)>>,
    port: u16,
}

impl Site {
    fn start() -> Site {
        let state = Arc::new(Mutex::new((200u16, String::new(), String::new())));
        let data = web::Data::from(state.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route(
                    "/doc",
                    web::get().to(|s: web::Data<Mutex<(u16, String, String)>>| async move {
                        let (status, body, _) = s.lock().unwrap().clone();
                        HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                            .content_type("text/markdown")
                            .body(body)
                    }),
                )
                .route(
                    "/jump",
                    web::get().to(|s: web::Data<Mutex<(u16, String, String)>>| async move {
                        let to = s.lock().unwrap().2.clone();
                        HttpResponse::Found()
                            .insert_header(("location", to))
                            .finish()
                    }),
                )
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        drop(tokio::spawn(server));
        Site { state, port }
    }

    fn serve(&self, status: u16, body: &str) {
        let mut s = self.state.lock().unwrap();
        s.0 = status;
        s.1 = body.to_string();
    }

    fn redirect_to(&self, to: &str) {
        self.state.lock().unwrap().2 = to.to_string();
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// The knowledge settings of a test that embeds with the fake provider (so embeddings can be
/// counted) and imports from `site` (allowlisted by host and port, nothing else local).
fn provider_settings() -> runtime::config::KnowledgeSettings {
    runtime::config::KnowledgeSettings {
        embedding_model: "openai:text-embedding-3-small".into(),
        memory_delay_secs: 3600,
        ..Default::default()
    }
}

/// Forgets the tenant's index (the fixtures give every tenant one of the local model), as a
/// tenant that never embedded anything: its first vectors are the platform default's.
async fn fresh_index(app: &TestApp, tenant: TenantId) {
    let mut tx = app.store.tenant_tx(tenant).await.unwrap();
    sqlx::query("DELETE FROM knowledge_index")
        .execute(tx.connection())
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

async fn import(app: &TestApp, token: &str, tenant: TenantId, url: &str) -> (StatusCode, Value) {
    let res = app
        .request(
            Method::POST,
            &format!("/api/tenants/{tenant}/knowledge/import"),
            Some(token),
        )
        .json(&json!({ "url": url }))
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn site_app(site: &Site) -> TestApp {
    TestApp::spawn_with(AppOptions {
        engine: Some(EngineSettings::default()),
        jobs: Some((runner(), Registry::builtin().unwrap())),
        knowledge: Some(provider_settings()),
        outbound_allow: vec![format!("127.0.0.1:{}", site.port)],
        ..AppOptions::default()
    })
    .await
}

#[actix_rt::test]
async fn a_failing_import_shows_its_reason_and_a_changed_page_re_embeds_only_what_changed() {
    let site = Site::start();
    let app = site_app(&site).await;
    let w = World::new(&app).await;
    fresh_index(&app, w.a).await;
    let admin = app.token_for(w.admin_a, None).await;
    site.serve(404, "");
    let (status, body) = import(&app, &admin, w.a, &site.url("/doc")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id: Uuid = serde_json::from_value(body["id"].clone()).unwrap();
    let failed = settled(&app, &admin, w.a, id).await;
    assert_eq!(failed.status, DocumentStatus::Failed);
    assert_eq!(failed.error.as_deref(), Some("the URL answered HTTP 404"));

    // Fixed at the source, retried by hand: ready, every passage embedded once.
    let page = "# Handbook\n\n## Returns\n\nReturns are accepted for 30 days.\n\n## Warranty\n\n\
                Every product has a two year warranty.\n\n## Support\n\nSupport answers within \
                one business day.\n";
    site.serve(200, page);
    let retry = app
        .request(
            Method::POST,
            &format!("/api/tenants/{}/knowledge/{id}/retry", w.a),
            Some(&admin),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), StatusCode::ACCEPTED);
    let ready = settled(&app, &admin, w.a, id).await;
    assert_eq!(ready.status, DocumentStatus::Ready, "{ready:?}");
    let first = app.llm.embedded().len();
    assert_eq!(first, ready.chunks as usize, "each passage embedded once");
    assert!(ready.chunks >= 1);

    // One section changes: only its passage is embedded again.
    site.serve(
        200,
        &page.replace("two year warranty", "three year warranty"),
    );
    let again = app
        .request(
            Method::POST,
            &format!("/api/tenants/{}/knowledge/{id}/retry", w.a),
            Some(&admin),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    let updated = settled(&app, &admin, w.a, id).await;
    assert_eq!(updated.status, DocumentStatus::Ready);
    let embedded = app.llm.embedded();
    assert_eq!(
        embedded.len() - first,
        1,
        "only the changed passage: {:?}",
        &embedded[first..]
    );
    assert!(embedded.last().unwrap().contains("three year warranty"));
    let found = search(&app, &admin, w.a, "three year warranty on every product").await;
    assert!(
        found
            .passages
            .iter()
            .any(|p| p.text.contains("three year warranty"))
    );
    assert!(
        !found
            .passages
            .iter()
            .any(|p| p.text.contains("two year warranty"))
    );
}

#[actix_rt::test]
async fn url_imports_refuse_our_own_network_now_and_at_a_redirect() {
    let site = Site::start();
    let app = site_app(&site).await;
    let w = World::new(&app).await;
    let admin = app.token_for(w.admin_a, None).await;
    for url in [
        "http://127.0.0.1/faq",
        "http://10.1.2.3/faq",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/faq",
        // A name that resolves to a private address.
        "http://localhost/faq",
        // The allowlisted site's host on another port is not the allowlisted site.
        &format!("http://127.0.0.1:{}/doc", site.port.wrapping_add(1)),
        "file:///etc/passwd",
    ] {
        let (status, body) = import(&app, &admin, w.a, url).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {body}");
        assert_eq!(body["fields"][0]["field"], "url", "{body}");
    }
    let page: Page<Document> = app
        .get_json(&format!("/api/tenants/{}/knowledge", w.a), &admin)
        .await;
    assert!(
        page.items.iter().all(|d| d.url.is_none()),
        "nothing refused was added: {:?}",
        page.items
    );

    // A public-looking start that redirects into our network fails at the redirect.
    site.redirect_to("http://169.254.169.254/latest/meta-data/");
    let (status, body) = import(&app, &admin, w.a, &site.url("/jump")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id: Uuid = serde_json::from_value(body["id"].clone()).unwrap();
    let failed = settled(&app, &admin, w.a, id).await;
    assert_eq!(failed.status, DocumentStatus::Failed);
    let reason = failed.error.unwrap();
    assert!(
        reason.contains("169.254.169.254") && reason.contains("may not reach"),
        "{reason}"
    );
}

#[actix_rt::test]
async fn bad_uploads_are_refused_with_a_clear_error_and_change_nothing() {
    let app = app().await;
    let w = World::new(&app).await;
    let admin = app.token_for(w.admin_a, None).await;
    let path = format!("/api/tenants/{}/knowledge", w.a);
    let before = app.get_json::<Page<Document>>(&path, &admin).await.total;
    // A PNG named like Markdown: the content decides.
    let png = [
        0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, b'I', b'H', b'D', b'R',
    ];
    let (status, body) = upload(&app, &admin, w.a, "notes.md", &png).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    let (status, _) = upload(&app, &admin, w.a, "empty.md", b"").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let too_big = vec![b'a'; 20 * 1024 * 1024 + 1];
    let (status, _) = upload(&app, &admin, w.a, "big.txt", &too_big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let after = app.get_json::<Page<Document>>(&path, &admin).await.total;
    assert_eq!(after, before, "nothing was added");
    let operator = app.token_for(w.operator_a, None).await;
    let (status, _) = upload(&app, &operator, w.a, "faq.md", FAQ.as_bytes()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// The knowledge settings of a memory test: conversations are summarised right after an answer.
fn memory_settings() -> runtime::config::KnowledgeSettings {
    runtime::config::KnowledgeSettings {
        memory_delay_secs: 0,
        ..Default::default()
    }
}

async fn memories(
    app: &TestApp,
    token: &str,
    tenant: TenantId,
    end_user: EndUserId,
) -> Vec<Memory> {
    let page: Page<Memory> = app
        .get_json(
            &format!("/api/tenants/{tenant}/end-users/{end_user}/memories"),
            token,
        )
        .await;
    page.items
}

async fn end_user_of(app: &TestApp, tenant: TenantId, user: Uuid) -> EndUserId {
    let mut tx = app.store.tenant_tx(tenant).await.unwrap();
    sqlx::query_scalar("SELECT id FROM end_users WHERE external_id = $1")
        .bind(format!("user:{user}"))
        .fetch_one(tx.connection())
        .await
        .unwrap()
}

async fn remembered(
    app: &TestApp,
    token: &str,
    tenant: TenantId,
    end_user: EndUserId,
) -> Vec<Memory> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = memories(app, token, tenant, end_user).await;
        if !found.is_empty() {
            return found;
        }
        assert!(Instant::now() < deadline, "nothing was remembered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_rt::test]
async fn a_fact_from_one_conversation_is_recalled_in_the_next_a_day_later_until_it_is_deleted() {
    let app = app_with(Some(memory_settings())).await;
    let w = World::new(&app).await;
    let admin = app.token_for(w.admin_a, None).await;
    let agent = world::agent(&app, w.a, "Nia").await;
    app.llm.script([
        e2e::llm::Behavior::Text("Nice to meet you, Ada!".into()),
        // The summary of the conversation, asked for after the answer.
        e2e::llm::Behavior::Text(
            "- The customer's name is Ada Lovelace\n- Prefers email over phone".into(),
        ),
    ]);
    chat(
        &app,
        &admin,
        w.a,
        agent,
        "first",
        "Hi, I'm Ada Lovelace and I prefer email over phone.",
    )
    .await;
    let end_user = end_user_of(&app, w.a, w.admin_a).await;
    let kept = remembered(&app, &admin, w.a, end_user).await;
    let texts: Vec<&str> = kept.iter().map(|m| m.text.as_str()).collect();
    assert!(
        texts.contains(&"The customer's name is Ada Lovelace"),
        "{texts:?}"
    );

    // A day later, another conversation: the window is new, the memory is not.
    app.deps.settings.clock.advance(chrono::Duration::days(1));
    app.llm
        .script([e2e::llm::Behavior::Text("You are Ada.".into())]);
    chat(
        &app,
        &admin,
        w.a,
        agent,
        "second",
        "Do you remember my name?",
    )
    .await;
    let system = last_system_prompt(&app);
    assert!(
        system.contains("The customer's name is Ada Lovelace"),
        "{system}"
    );
    let messages = transcript(&app, &admin, w.a, agent, "second").await;
    assert!(
        messages
            .last()
            .unwrap()
            .memories
            .iter()
            .any(|m| m.contains("Ada Lovelace"))
    );

    // Deleted by an admin: never recalled again.
    for memory in &kept {
        let res = app
            .request(
                Method::DELETE,
                &format!(
                    "/api/tenants/{}/end-users/{end_user}/memories/{}",
                    w.a, memory.id
                ),
                Some(&admin),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
    }
    let turns = turn_prompts(&app).len();
    chat(
        &app,
        &admin,
        w.a,
        agent,
        "third",
        "Do you remember my name?",
    )
    .await;
    assert_eq!(turn_prompts(&app).len(), turns + 1);
    let system = last_system_prompt(&app);
    assert!(!system.contains("Ada Lovelace"), "{system}");
    // Another tenant's admin cannot read them.
    let admin_b = app.token_for(w.admin_b, None).await;
    let res = app
        .request(
            Method::GET,
            &format!("/api/tenants/{}/end-users/{end_user}/memories", w.a),
            Some(&admin_b),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[actix_rt::test]
async fn forgetting_a_customer_leaves_no_row_vector_or_redis_key_of_theirs() {
    let app = app_with(Some(memory_settings())).await;
    let w = World::new(&app).await;
    let admin = app.token_for(w.admin_a, None).await;
    let operator = app.token_for(w.operator_a, None).await;
    let colleague = world::user(
        &app,
        &format!("colleague-{}@example.com", Uuid::new_v4().simple()),
        false,
    )
    .await;
    world::member(
        &app,
        w.a,
        colleague,
        shared::auth::TenantRole::CustomerAdmin,
    )
    .await;
    let colleague = app.token_for(colleague, None).await;
    let agent = world::agent(&app, w.a, "Nia").await;
    app.llm.script([
        e2e::llm::Behavior::Text("Noted.".into()),
        e2e::llm::Behavior::Text("- Lives at 12 Elm Street".into()),
    ]);
    chat(
        &app,
        &admin,
        w.a,
        agent,
        "private",
        "Please send it to 12 Elm Street.",
    )
    .await;
    let end_user = end_user_of(&app, w.a, w.admin_a).await;
    remembered(&app, &admin, w.a, end_user).await;
    // Someone else's conversation stays.
    chat(&app, &colleague, w.a, agent, "other", "Hello").await;
    let state_keys = app
        .redis_keys_matching(&format!("{}:conversation:*private*", w.a))
        .await;
    assert_eq!(state_keys.len(), 1, "the conversation's state is cached");

    // An operator may not; an admin may.
    let path = format!("/api/tenants/{}/end-users/{end_user}", w.a);
    let res = app
        .request(Method::DELETE, &path, Some(&operator))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = app
        .request(Method::DELETE, &path, Some(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    // Postgres, as a superuser sees it (no row-level security in the way of the check).
    let mut owner = <sqlx::PgConnection as sqlx::Connection>::connect(&app.db.superuser_url())
        .await
        .unwrap();
    for (what, sql) in [
        ("end user", "SELECT count(*) FROM end_users WHERE id = $1"),
        (
            "messages",
            "SELECT count(*) FROM messages WHERE end_user_id = $1 OR body LIKE '%Elm Street%'",
        ),
        (
            "conversations",
            "SELECT count(*) FROM conversations WHERE end_user_id = $1",
        ),
        (
            "memories",
            "SELECT count(*) FROM memories WHERE end_user_id = $1",
        ),
        (
            "vectors",
            "SELECT count(*) FROM embeddings WHERE source = $1",
        ),
    ] {
        let n: i64 = sqlx::query_scalar(sql)
            .bind(end_user)
            .fetch_one(&mut owner)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(n, 0, "{what} of the erased customer remain");
    }
    // The vector index.
    let k = app.app.knowledge();
    let space = {
        let mut tx = app.store.tenant_tx(w.a).await.unwrap();
        k.space(&mut tx).await.unwrap().unwrap()
    };
    let query = space
        .embedder
        .embed(&["Elm Street".to_string()])
        .await
        .unwrap()
        .remove(0);
    let hits = k
        .vectors()
        .search(
            &space.collection,
            &Search::new(w.a, Kind::Memory, query, 10).sources(vec![*end_user.as_uuid()]),
        )
        .await
        .unwrap();
    assert!(hits.is_empty(), "{hits:?}");
    // Redis.
    assert!(
        app.redis_keys_matching(&format!("{}:conversation:*private*", w.a))
            .await
            .is_empty()
    );
    // The other conversation, and the audit of the erasure without content.
    let other = transcript(&app, &operator, w.a, agent, "other").await;
    assert!(!other.is_empty());
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let details: Value =
        sqlx::query_scalar("SELECT details FROM audit_events WHERE action = 'end_user.erased'")
            .fetch_one(tx.connection())
            .await
            .unwrap();
    assert!(details["messages"].as_u64().unwrap() >= 2, "{details}");
    assert!(!details.to_string().contains("Elm"), "{details}");
}

#[actix_rt::test]
async fn another_node_rebuilds_its_index_from_postgres_and_a_model_change_swaps_when_complete() {
    let app = TestApp::spawn_with(AppOptions {
        engine: Some(EngineSettings::default()),
        jobs: Some((runner(), Registry::builtin().unwrap())),
        ..AppOptions::default()
    })
    .await;
    let w = World::new(&app).await;
    let admin = app.token_for(w.admin_a, None).await;
    let doc = ready_upload(&app, &admin, w.a, "faq.md", FAQ).await;
    let k = app.app.knowledge();

    // A second node: an empty embedded index of its own, filled from Postgres.
    let dir = std::env::temp_dir().join(format!("konstruct-node2-{}", Uuid::new_v4()));
    let node2 = runtime::knowledge::Knowledge::new(
        app.store.clone(),
        Arc::new(runtime::vector::edge::EdgeStore::open(&dir).unwrap()),
        k.settings().clone(),
        runtime::config::LlmSettings::default(),
        app.keyring.clone(),
        k.http().clone(),
        k.http().clone(),
    );
    // Its embedded index is empty; `sync_all` (run at start) fills it from Postgres. (A search
    // that finds a collection missing rebuilds it the same way.)
    let loaded = node2.sync_all().await.unwrap();
    let collection = {
        let mut tx = app.store.tenant_tx(w.a).await.unwrap();
        k.space(&mut tx).await.unwrap().unwrap().collection
    };
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let truth: i64 = sqlx::query_scalar("SELECT count(*) FROM embeddings WHERE model = $1")
        .bind(collection.model())
        .fetch_one(tx.connection())
        .await
        .unwrap();
    drop(tx);
    assert_eq!(truth, i64::from(doc.chunks));
    assert!(loaded >= doc.chunks as u64, "{loaded}");
    assert_eq!(
        node2.vectors().count(&collection, w.a).await.unwrap() as i64,
        truth
    );
    let found = node2
        .search(w.a, None, "how long do refunds take", 3)
        .await
        .unwrap();
    assert_eq!(found.passages.first().map(|p| p.document_id), Some(doc.id));
    // In step already: nothing to load again.
    assert_eq!(node2.sync_all().await.unwrap(), 0);

    // The model changes: a new index is built beside the old one and swapped in.
    let old: KnowledgeIndex = app
        .get_json(&format!("/api/tenants/{}/knowledge/index", w.a), &admin)
        .await;
    assert_eq!((old.model.as_str(), old.dimension), ("local", 384));
    let old_collection = {
        let mut tx = app.store.tenant_tx(w.a).await.unwrap();
        k.space(&mut tx).await.unwrap().unwrap().collection
    };
    let res = app
        .request(
            Method::PUT,
            &format!("/api/tenants/{}/knowledge/index", w.a),
            Some(&admin),
        )
        .json(&json!({ "model": "openai:text-embedding-3-small" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let deadline = Instant::now() + Duration::from_secs(60);
    let swapped = loop {
        let index: KnowledgeIndex = app
            .get_json(&format!("/api/tenants/{}/knowledge/index", w.a), &admin)
            .await;
        assert!(index.building_error.is_none(), "{index:?}");
        if index.building.is_none() && index.model != "local" {
            break index;
        }
        assert!(Instant::now() < deadline, "never swapped: {index:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(swapped.model, "openai:text-embedding-3-small");
    assert_eq!(swapped.dimension as usize, e2e::llm::EMBEDDING_DIMENSION);
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let texts: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM knowledge_chunks) + (SELECT count(*) FROM memories)",
    )
    .fetch_one(tx.connection())
    .await
    .unwrap();
    drop(tx);
    let embedded = app.llm.embedded();
    assert_eq!(
        embedded.len() as i64,
        texts,
        "every passage and memory embedded anew: {embedded:?}"
    );
    // Old vectors are gone from the old collection and from Postgres; search uses the new.
    assert_eq!(k.vectors().count(&old_collection, w.a).await.unwrap(), 0);
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let models: Vec<String> = sqlx::query_scalar("SELECT DISTINCT model FROM embeddings")
        .fetch_all(tx.connection())
        .await
        .unwrap();
    assert!(
        models.contains(&"openai:text-embedding-3-small".to_string()),
        "{models:?}"
    );
    assert!(
        !models.contains(&old_collection.model().to_string()),
        "{models:?}"
    );
    drop(tx);
    let found = search(&app, &admin, w.a, "refunds issued within 14 days").await;
    assert_eq!(found.model, "openai:text-embedding-3-small");
    assert_eq!(found.passages.first().map(|p| p.document_id), Some(doc.id));
    // The shard flushes as it is dropped: drop it before its directory goes.
    drop(node2);
    let _ = std::fs::remove_dir_all(dir);
}

#[actix_rt::test]
async fn an_agent_that_must_cite_says_it_does_not_know_instead_of_guessing() {
    let app = app().await;
    let w = World::new(&app).await;
    let admin = app.token_for(w.admin_a, None).await;
    let agent = world::agent(&app, w.a, "Nia").await;
    let res = app
        .request(
            Method::PUT,
            &format!("/api/tenants/{}/agents/{agent}", w.a),
            Some(&admin),
        )
        .json(&json!({ "name": "Nia", "role": "Support", "cite_or_handoff": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    app.config_applied(w.a).await;
    ready_upload(&app, &admin, w.a, "faq.md", FAQ).await;
    let turns = turn_prompts(&app).len();
    chat(
        &app,
        &admin,
        w.a,
        agent,
        "cite",
        "What is the capital of Mongolia?",
    )
    .await;
    assert_eq!(
        turn_prompts(&app).len(),
        turns,
        "no guess was asked of the LLM"
    );
    let reply = transcript(&app, &admin, w.a, agent, "cite")
        .await
        .pop()
        .unwrap();
    assert!(reply.text.contains("don't know"), "{}", reply.text);
    // It has no rule that hands off on request, so it promises no person.
    assert!(!reply.text.contains("person"), "{}", reply.text);
    assert!(reply.citations.is_empty());
}
