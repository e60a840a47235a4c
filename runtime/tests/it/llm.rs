//! The LLM pool against the fake providers: request/answer mapping for both wire formats, and
//! how the pool retries, falls back, cools down and reports failure.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::llm::{Behavior, FakeLlm};
use runtime::config::Secret;
use runtime::llm::error::FailureKind;
use runtime::llm::pool::{
    Clock, Credentials, Deployment, KeyFailure, ModelGroup, Pool, PoolError, PoolSettings,
    ProviderKind,
};
use runtime::llm::types::{ChatRequest, FinishReason, Message, Part, Role, ToolDefinition};
use serde_json::json;
use shared::TenantId;
use shared::resources::LlmProvider;
use uuid::Uuid;

const KEY: &str = "sk-platform-key";

#[derive(Debug)]
pub(crate) struct ManualClock(Mutex<Instant>);

impl ManualClock {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self(Mutex::new(Instant::now())))
    }

    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.0.lock().unwrap()
    }
}

pub(crate) fn deployment(
    id: &str,
    provider: ProviderKind,
    base_url: &str,
    key: &str,
) -> Deployment {
    Deployment {
        id: id.into(),
        provider,
        base_url: base_url.into(),
        model: "test-model".into(),
        api_key: Some(Secret::new(key.into())),
        byo_slot: None,
        weight: 0,
        timeout: Duration::from_secs(5),
        max_retries: 2,
    }
}

fn settings() -> PoolSettings {
    PoolSettings {
        failures_before_cooldown: 3,
        cooldown: Duration::from_secs(30),
        backoff_base: Duration::from_millis(1),
        max_retry_after: Duration::from_secs(5),
        ..PoolSettings::default()
    }
}

/// One group per deployment, in order: the pool falls back from one to the next.
pub(crate) fn pool(deployments: Vec<Deployment>, clock: Arc<dyn Clock>) -> Pool {
    let groups = deployments
        .into_iter()
        .map(|d| ModelGroup {
            name: d.id.clone(),
            deployments: vec![d],
        })
        .collect();
    Pool::new(groups, settings(), clock)
}

pub(crate) fn simple() -> ChatRequest {
    ChatRequest {
        system: Some("You are Nia, a warm support agent.".into()),
        messages: vec![Message::user("Where is my order?")],
        tools: vec![],
        temperature: Some(0.2),
        max_tokens: 256,
    }
}

fn rich() -> ChatRequest {
    ChatRequest {
        system: Some("You are Nia.".into()),
        messages: vec![
            Message {
                role: Role::User,
                parts: vec![
                    Part::Text("What is in this picture?".into()),
                    Part::Image {
                        media_type: "image/png".into(),
                        data_base64: "iVBORw0KGgo=".into(),
                    },
                ],
            },
            Message {
                role: Role::Assistant,
                parts: vec![Part::ToolCall {
                    id: "call_1".into(),
                    name: "knowledge_base_search".into(),
                    arguments: json!({ "query": "widget" }),
                }],
            },
            Message {
                role: Role::Tool,
                parts: vec![Part::ToolResult {
                    call_id: "call_1".into(),
                    content: "A widget is a gadget.".into(),
                    is_error: false,
                }],
            },
        ],
        tools: vec![ToolDefinition {
            name: "knowledge_base_search".into(),
            description: "Search the knowledge base".into(),
            parameters: json!({ "type": "object", "properties": { "query": { "type": "string" } } }),
        }],
        temperature: None,
        max_tokens: 512,
    }
}

#[tokio::test]
async fn openai_requests_carry_images_tools_and_tool_results_and_tool_calls_come_back() {
    let fake = FakeLlm::start(KEY).unwrap();
    fake.script([Behavior::ToolCall {
        name: "knowledge_base_search".into(),
        arguments: json!({ "query": "refund policy" }),
    }]);
    let pool = pool(
        vec![deployment(
            "openai",
            ProviderKind::OpenAi,
            &fake.base_url,
            KEY,
        )],
        ManualClock::new(),
    );
    let report = pool
        .chat(None, &Credentials::default(), &rich())
        .await
        .unwrap();
    let sent = &fake.received()[0];
    assert_eq!(sent.auth.as_deref(), Some("Bearer sk-platform-key"));
    let body = &sent.body;
    assert_eq!(body["model"], "test-model");
    assert_eq!(
        body["messages"][0],
        json!({ "role": "system", "content": "You are Nia." })
    );
    assert_eq!(body["messages"][1]["content"][1]["type"], "image_url");
    assert_eq!(
        body["messages"][1]["content"][1]["image_url"]["url"],
        "data:image/png;base64,iVBORw0KGgo="
    );
    assert_eq!(
        body["messages"][2]["tool_calls"][0]["function"]["name"],
        "knowledge_base_search"
    );
    assert_eq!(
        body["messages"][2]["tool_calls"][0]["function"]["arguments"],
        r#"{"query":"widget"}"#
    );
    assert_eq!(
        body["messages"][3],
        json!({ "role": "tool", "tool_call_id": "call_1", "content": "A widget is a gadget." })
    );
    assert_eq!(body["tools"][0]["function"]["parameters"]["type"], "object");

    let c = &report.completion;
    assert_eq!(c.finish, FinishReason::ToolCalls);
    assert!(matches!(&c.parts[0], Part::ToolCall { name, arguments, .. }
        if name == "knowledge_base_search" && arguments == &json!({ "query": "refund policy" })));
    assert!(c.usage.input_tokens > 0 && c.usage.output_tokens > 0);
    assert_eq!(
        (report.provider, report.attempts, report.byo_key),
        ("openai", 1, false)
    );
}

#[tokio::test]
async fn anthropic_requests_use_top_level_system_blocks_and_alternating_roles() {
    let fake = FakeLlm::start(KEY).unwrap();
    fake.script([
        Behavior::ToolCall {
            name: "knowledge_base_search".into(),
            arguments: json!({ "query": "hours" }),
        },
        Behavior::Text("We open at nine.".into()),
    ]);
    let pool = pool(
        vec![deployment(
            "anthropic",
            ProviderKind::Anthropic,
            &fake.base_url,
            KEY,
        )],
        ManualClock::new(),
    );
    let report = pool
        .chat(None, &Credentials::default(), &rich())
        .await
        .unwrap();
    let sent = &fake.received()[0];
    assert_eq!(sent.auth.as_deref(), Some(KEY));
    let body = &sent.body;
    assert_eq!(body["system"], "You are Nia.");
    assert_eq!(body["max_tokens"], 512);
    let roles: Vec<&str> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["user", "assistant", "user"],
        "the tool result travels as a user turn"
    );
    assert_eq!(
        body["messages"][0]["content"][1]["source"]["media_type"],
        "image/png"
    );
    assert_eq!(body["messages"][1]["content"][0]["type"], "tool_use");
    assert_eq!(body["messages"][2]["content"][0]["tool_use_id"], "call_1");
    assert_eq!(body["tools"][0]["input_schema"]["type"], "object");
    assert!(
        matches!(&report.completion.parts[0], Part::ToolCall { name, .. } if name == "knowledge_base_search")
    );
    assert_eq!(report.completion.finish, FinishReason::ToolCalls);

    let text = pool
        .chat(None, &Credentials::default(), &simple())
        .await
        .unwrap();
    assert_eq!(text.completion.text(), "We open at nine.");
    assert_eq!(text.completion.finish, FinishReason::Stop);
}

#[tokio::test]
async fn a_refused_connection_falls_back_to_the_next_deployment() {
    let fake = FakeLlm::start(KEY).unwrap();
    let pool = pool(
        vec![
            deployment("down", ProviderKind::OpenAi, "http://127.0.0.1:1", KEY),
            deployment("up", ProviderKind::OpenAi, &fake.base_url, KEY),
        ],
        ManualClock::new(),
    );
    let report = pool
        .chat(None, &Credentials::default(), &simple())
        .await
        .unwrap();
    assert_eq!(report.deployment, "up");
    assert_eq!(report.completion.text(), "echo: Where is my order?");
    assert_eq!(
        report.attempts, 4,
        "three tries on the refused one, then one"
    );
}

#[tokio::test]
async fn server_errors_are_retried_then_fall_back_and_the_failing_one_cools_down() {
    let failing = FakeLlm::start(KEY).unwrap();
    failing.set_fallback(Some(Behavior::Fail {
        status: 500,
        retry_after: None,
        message: "boom".into(),
    }));
    let healthy = FakeLlm::start(KEY).unwrap();
    let clock = ManualClock::new();
    let pool = pool(
        vec![
            deployment("failing", ProviderKind::Anthropic, &failing.base_url, KEY),
            deployment("healthy", ProviderKind::OpenAi, &healthy.base_url, KEY),
        ],
        clock.clone(),
    );
    let report = pool
        .chat(None, &Credentials::default(), &simple())
        .await
        .unwrap();
    assert_eq!(report.deployment, "healthy");
    assert_eq!(failing.calls(), 3);

    // Cooling down: the next calls skip it entirely.
    for _ in 0..3 {
        pool.chat(None, &Credentials::default(), &simple())
            .await
            .unwrap();
    }
    assert_eq!(failing.calls(), 3);

    // After the cooldown one probe goes through; it succeeds, so the deployment is healthy again.
    failing.set_fallback(None);
    clock.advance(Duration::from_secs(31));
    let report = pool
        .chat(None, &Credentials::default(), &simple())
        .await
        .unwrap();
    assert_eq!(report.deployment, "failing");
    assert_eq!(failing.calls(), 4);
}

#[tokio::test]
async fn a_failed_probe_cools_the_deployment_down_again_after_one_call() {
    let failing = FakeLlm::start(KEY).unwrap();
    failing.set_fallback(Some(Behavior::Fail {
        status: 503,
        retry_after: None,
        message: "down".into(),
    }));
    let healthy = FakeLlm::start(KEY).unwrap();
    let clock = ManualClock::new();
    let pool = pool(
        vec![
            deployment("failing", ProviderKind::OpenAi, &failing.base_url, KEY),
            deployment("healthy", ProviderKind::OpenAi, &healthy.base_url, KEY),
        ],
        clock.clone(),
    );
    pool.chat(None, &Credentials::default(), &simple())
        .await
        .unwrap();
    assert_eq!(failing.calls(), 3);
    clock.advance(Duration::from_secs(31));
    pool.chat(None, &Credentials::default(), &simple())
        .await
        .unwrap();
    assert_eq!(failing.calls(), 4, "one probe, not three tries");
    pool.chat(None, &Credentials::default(), &simple())
        .await
        .unwrap();
    assert_eq!(failing.calls(), 4, "cooling down again");
}

#[tokio::test]
async fn a_timeout_falls_back() {
    let slow = FakeLlm::start(KEY).unwrap();
    slow.set_fallback(Some(Behavior::Hang));
    let fast = FakeLlm::start(KEY).unwrap();
    let mut first = deployment("slow", ProviderKind::OpenAi, &slow.base_url, KEY);
    first.timeout = Duration::from_millis(150);
    first.max_retries = 0;
    let pool = pool(
        vec![
            first,
            deployment("fast", ProviderKind::OpenAi, &fast.base_url, KEY),
        ],
        ManualClock::new(),
    );
    let report = pool
        .chat(None, &Credentials::default(), &simple())
        .await
        .unwrap();
    assert_eq!(report.deployment, "fast");
    assert_eq!(slow.calls(), 1);
}

#[tokio::test]
async fn rate_limits_are_retried_on_the_same_deployment_after_retry_after() {
    let fake = FakeLlm::start(KEY).unwrap();
    fake.script([Behavior::Fail {
        status: 429,
        retry_after: Some(1),
        message: "slow down".into(),
    }]);
    let other = FakeLlm::start(KEY).unwrap();
    let pool = pool(
        vec![
            deployment("limited", ProviderKind::Anthropic, &fake.base_url, KEY),
            deployment("other", ProviderKind::OpenAi, &other.base_url, KEY),
        ],
        ManualClock::new(),
    );
    let started = Instant::now();
    let report = pool
        .chat(None, &Credentials::default(), &simple())
        .await
        .unwrap();
    assert_eq!(
        (report.deployment.as_str(), report.attempts),
        ("limited", 2)
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited for Retry-After"
    );
    assert_eq!(other.calls(), 0);
}

#[tokio::test]
async fn a_retry_after_beyond_the_cap_moves_on_instead_of_waiting() {
    let fake = FakeLlm::start(KEY).unwrap();
    fake.script([Behavior::Fail {
        status: 429,
        retry_after: Some(600),
        message: "later".into(),
    }]);
    let other = FakeLlm::start(KEY).unwrap();
    let pool = pool(
        vec![
            deployment("limited", ProviderKind::OpenAi, &fake.base_url, KEY),
            deployment("other", ProviderKind::OpenAi, &other.base_url, KEY),
        ],
        ManualClock::new(),
    );
    let report = pool
        .chat(None, &Credentials::default(), &simple())
        .await
        .unwrap();
    assert_eq!(report.deployment, "other");
    assert_eq!(fake.calls(), 1);
}

#[tokio::test]
async fn a_bad_key_is_not_hammered_and_the_error_surfaces() {
    let fake = FakeLlm::start(KEY).unwrap();
    let pool = pool(
        vec![deployment(
            "misconfigured",
            ProviderKind::OpenAi,
            &fake.base_url,
            "sk-wrong",
        )],
        ManualClock::new(),
    );
    let err = pool
        .chat(None, &Credentials::default(), &simple())
        .await
        .unwrap_err();
    match &err {
        PoolError::Exhausted { attempts, last, .. } => {
            assert_eq!(*attempts, 1);
            assert_eq!(last.kind, FailureKind::Auth(401));
            assert!(!last.detail.contains("sk-wrong"), "{last}");
        }
        other => panic!("expected Exhausted, got {other:?}"),
    }
    // The next call does not even try: the deployment is cooling down.
    let again = pool
        .chat(None, &Credentials::default(), &simple())
        .await
        .unwrap_err();
    assert!(matches!(again, PoolError::AllCoolingDown), "{again:?}");
    assert_eq!(fake.calls(), 1);
    assert!(again.user_message().contains("can't answer right now"));
}

#[tokio::test]
async fn a_prompt_that_is_too_long_is_refused_without_trying_other_deployments() {
    let fake = FakeLlm::start(KEY).unwrap();
    fake.script([Behavior::Fail {
        status: 400,
        retry_after: None,
        message: "This model's maximum context length is 8192 tokens (context_length_exceeded)"
            .into(),
    }]);
    let other = FakeLlm::start(KEY).unwrap();
    let pool = pool(
        vec![
            deployment("first", ProviderKind::OpenAi, &fake.base_url, KEY),
            deployment("other", ProviderKind::OpenAi, &other.base_url, KEY),
        ],
        ManualClock::new(),
    );
    let err = pool
        .chat(None, &Credentials::default(), &simple())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PoolError::Rejected { error, .. } if error.kind == FailureKind::ContextTooLong),
        "{err:?}"
    );
    assert_eq!(other.calls(), 0);
    assert!(err.user_message().contains("too long"));
}

#[tokio::test]
async fn malformed_answers_are_retried_and_then_fall_back() {
    let broken = FakeLlm::start(KEY).unwrap();
    broken.set_fallback(Some(Behavior::Malformed));
    let fine = FakeLlm::start(KEY).unwrap();
    let pool = pool(
        vec![
            deployment("broken", ProviderKind::Anthropic, &broken.base_url, KEY),
            deployment("fine", ProviderKind::Anthropic, &fine.base_url, KEY),
        ],
        ManualClock::new(),
    );
    let report = pool
        .chat(None, &Credentials::default(), &simple())
        .await
        .unwrap();
    assert_eq!(report.deployment, "fine");
    assert_eq!(broken.calls(), 3);
}

#[tokio::test]
async fn when_everything_is_down_the_caller_gets_one_typed_error_with_a_polite_message() {
    let a = FakeLlm::start(KEY).unwrap();
    a.set_fallback(Some(Behavior::Fail {
        status: 502,
        retry_after: None,
        message: "bad gateway".into(),
    }));
    let pool = pool(
        vec![
            deployment("a", ProviderKind::OpenAi, &a.base_url, KEY),
            deployment("b", ProviderKind::Anthropic, "http://127.0.0.1:1", KEY),
        ],
        ManualClock::new(),
    );
    let err = pool
        .chat(None, &Credentials::default(), &simple())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PoolError::Exhausted { attempts: 6, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.user_message(),
        "I'm sorry, I can't answer right now. Please try again in a few minutes."
    );
}

#[tokio::test]
async fn a_tenants_own_key_takes_precedence_over_the_platform_key() {
    let fake = FakeLlm::start("sk-tenant-own").unwrap();
    let mut openai = deployment(
        "openai",
        ProviderKind::OpenAi,
        &fake.base_url,
        "sk-platform",
    );
    openai.byo_slot = Some(LlmProvider::Openai);
    let pool = pool(vec![openai], ManualClock::new());
    let credentials = Credentials::of_tenant(
        TenantId::from_uuid(Uuid::new_v4()),
        Some(Secret::new("sk-tenant-own".into())),
        None,
    );
    let report = pool.chat(None, &credentials, &simple()).await.unwrap();
    assert!(report.byo_key);
    assert_eq!(
        fake.received()[0].auth.as_deref(),
        Some("Bearer sk-tenant-own")
    );
}

/// The platform's `openai` deployment on `fake`, taking tenants' own OpenAI keys.
fn openai_taking_own_keys(fake: &FakeLlm) -> Deployment {
    let mut d = deployment("openai", ProviderKind::OpenAi, &fake.base_url, KEY);
    d.byo_slot = Some(LlmProvider::Openai);
    d
}

fn own_openai_key(key: &str) -> Credentials {
    Credentials::of_tenant(
        TenantId::from_uuid(Uuid::new_v4()),
        Some(Secret::new(key.into())),
        None,
    )
}

/// How many requests `fake` received with `key` as bearer.
fn calls_with(fake: &FakeLlm, key: &str) -> usize {
    let bearer = format!("Bearer {key}");
    fake.received()
        .iter()
        .filter(|r| r.auth.as_deref() == Some(bearer.as_str()))
        .count()
}

#[tokio::test]
async fn a_tenants_refused_key_cools_down_for_that_tenant_alone() {
    let openai = FakeLlm::start(KEY).unwrap();
    let local = FakeLlm::start_open().unwrap();
    let clock = ManualClock::new();
    let pool = Pool::new(
        vec![
            ModelGroup {
                name: "openai".into(),
                deployments: vec![openai_taking_own_keys(&openai)],
            },
            ModelGroup {
                name: "local".into(),
                deployments: vec![deployment(
                    "local",
                    ProviderKind::OpenAi,
                    &local.base_url,
                    "",
                )],
            },
        ],
        settings(),
        clock.clone(),
    );
    let a = own_openai_key("sk-tenant-a-revoked");
    let b = Credentials::of_tenant(TenantId::from_uuid(Uuid::new_v4()), None, None);

    // A's key is refused once, reported, and A moves on to another group: not to the platform's
    // key on the same deployment.
    let report = pool.chat(None, &a, &simple()).await.unwrap();
    assert_eq!(report.group, "local");
    assert_eq!(
        report.key_failures,
        [KeyFailure {
            provider: LlmProvider::Openai,
            kind: FailureKind::Auth(401)
        }]
    );
    assert_eq!(calls_with(&openai, "sk-tenant-a-revoked"), 1);
    assert_eq!(
        calls_with(&openai, KEY),
        0,
        "no fallback to the platform's key"
    );
    assert!(
        local
            .received()
            .iter()
            .all(|r| r.auth.as_deref() != Some("Bearer sk-tenant-a-revoked")),
        "a tenant's OpenAI key never goes to another group"
    );

    // Tenant B (on the platform's key) and the platform itself are still answered by openai.
    for credentials in [&b, &Credentials::platform()] {
        let report = pool.chat(None, credentials, &simple()).await.unwrap();
        assert_eq!(report.group, "openai");
        assert!(!report.byo_key);
        assert!(report.key_failures.is_empty());
    }

    // A's key is cooling down: A's next call does not reach openai, and reports nothing new.
    let report = pool.chat(None, &a, &simple()).await.unwrap();
    assert_eq!(report.group, "local");
    assert!(report.key_failures.is_empty());
    assert_eq!(calls_with(&openai, "sk-tenant-a-revoked"), 1);

    // After the cooldown, B's success does not heal A's key; A's one probe fails and cools it
    // again.
    clock.advance(Duration::from_secs(31));
    pool.chat(None, &b, &simple()).await.unwrap();
    let report = pool.chat(None, &a, &simple()).await.unwrap();
    assert_eq!(report.key_failures.len(), 1);
    assert_eq!(calls_with(&openai, "sk-tenant-a-revoked"), 2, "one probe");
    pool.chat(None, &a, &simple()).await.unwrap();
    assert_eq!(
        calls_with(&openai, "sk-tenant-a-revoked"),
        2,
        "cooling down again"
    );
    assert_eq!(calls_with(&openai, KEY), 3);
}

#[tokio::test]
async fn another_keys_success_never_resets_a_tenants_failures() {
    let fake = FakeLlm::start(KEY).unwrap();
    fake.accept_key("sk-tenant-a-flaky");
    let clock = ManualClock::new();
    let mut openai = openai_taking_own_keys(&fake);
    openai.max_retries = 0;
    let pool = pool(vec![openai], clock);
    let a = own_openai_key("sk-tenant-a-flaky");
    // Three failures in a row cool a key down; between A's failures the platform's key succeeds.
    for _ in 0..3 {
        fake.script([Behavior::Fail {
            status: 503,
            retry_after: None,
            message: "overloaded".into(),
        }]);
        let err = pool.chat(None, &a, &simple()).await.unwrap_err();
        assert!(matches!(&err, PoolError::Exhausted { .. }), "{err:?}");
        assert!(
            err.key_failures().is_empty(),
            "a 503 is not the key's fault"
        );
        pool.chat(None, &Credentials::platform(), &simple())
            .await
            .unwrap();
    }
    let err = pool.chat(None, &a, &simple()).await.unwrap_err();
    assert!(matches!(err, PoolError::AllCoolingDown), "{err:?}");
    assert_eq!(calls_with(&fake, "sk-tenant-a-flaky"), 3);
    pool.chat(None, &Credentials::platform(), &simple())
        .await
        .unwrap();
}

#[tokio::test]
async fn an_agents_preferred_group_is_tried_first() {
    let a = FakeLlm::start(KEY).unwrap();
    let b = FakeLlm::start(KEY).unwrap();
    let pool = pool(
        vec![
            deployment("fast", ProviderKind::OpenAi, &a.base_url, KEY),
            deployment("smart", ProviderKind::Anthropic, &b.base_url, KEY),
        ],
        ManualClock::new(),
    );
    let report = pool
        .chat(Some("smart"), &Credentials::default(), &simple())
        .await
        .unwrap();
    assert_eq!(report.group, "smart");
    let report = pool
        .chat(None, &Credentials::default(), &simple())
        .await
        .unwrap();
    assert_eq!(report.group, "fast");
    let report = pool
        .chat(Some("unknown"), &Credentials::default(), &simple())
        .await
        .unwrap();
    assert_eq!(report.group, "fast");
}

#[test]
fn the_platform_pool_has_one_group_per_configured_provider() {
    let env = [
        ("KONSTRUCT_OPENAI_API_KEY", "sk-from-env"),
        ("KONSTRUCT_OLLAMA_URL", "http://127.0.0.1:11434"),
        ("KONSTRUCT_OLLAMA_MODEL", "qwen2.5"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let (settings, warnings) = runtime::config::Settings::load(None, env).unwrap();
    assert!(warnings.is_empty());
    let pool = Pool::from_settings(&settings.llm);
    let groups: Vec<(&str, &str, bool)> = pool
        .groups()
        .iter()
        .map(|g| {
            let d = &g.deployments[0];
            (g.name.as_str(), d.model.as_str(), d.api_key.is_some())
        })
        .collect();
    assert_eq!(
        groups,
        [
            ("openai", "gpt-4o-mini", true),
            ("ollama", "qwen2.5", false)
        ]
    );
    assert!(!format!("{:?}", pool.groups()).contains("sk-from-env"));
}
