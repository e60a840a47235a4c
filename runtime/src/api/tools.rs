//! Tools: `GET /api/tools` (the built-in tools), and per tenant `/api/tenants/{t}/tools`
//! (everything its agents can be given, and CRUD and a test run of its own HTTP tools) and
//! `/api/tenants/{t}/tool-calls` (the calls its agents made, newest first).

use std::collections::HashMap;

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use shared::resources::{Page, Tool};
use shared::tools::{
    HeaderView, HttpTool, HttpToolInput, MAX_HTTP_TOOLS, MAX_RESPONSE_BYTES, MAX_TIMEOUT_MS,
    ToolCall, ToolInfo, ToolTest, ToolTestResult,
};
use shared::{AgentId, ConversationId, ErrorBody, ErrorCode};
use uuid::Uuid;

use super::auth::Authorized;
use super::error::ApiError;
use super::validate::Errors;
use super::{AppState, PageQuery, record};
use crate::store::TenantTx;
use crate::store::audit::{Action, Target};
use crate::store::tools::{self as store_tools, StoredHeader, ToolRow};
use crate::tools::{self, schema};

/// The platform's caps on an agent's own tool steps and turn deadline.
#[derive(Debug, Clone, Copy)]
pub struct TurnCaps {
    pub steps: u32,
    pub deadline_secs: u64,
}

/// Every built-in tool an agent can be given.
#[utoipa::path(get, path = "/api/tools", tag = "tools",
    responses((status = 200, body = Vec<Tool>), (status = 401, body = ErrorBody)))]
pub async fn list(_auth: Authorized) -> web::Json<Vec<Tool>> {
    web::Json(tools::registry())
}

fn header_views(row: &ToolRow) -> Vec<HeaderView> {
    row.stored_headers()
        .into_iter()
        .map(|h| HeaderView {
            name: h.name,
            value: if h.secret { None } else { h.value },
            secret: h.secret,
            hint: h.hint,
        })
        .collect()
}

fn to_dto(row: &ToolRow, agents: &HashMap<String, Vec<AgentId>>) -> HttpTool {
    HttpTool {
        id: row.id,
        name: row.name.clone(),
        description: row.description.clone(),
        parameters: row.parameters.clone(),
        method: row.method(),
        url: row.url.clone(),
        headers: header_views(row),
        max_response_bytes: u32::try_from(row.max_response_bytes).unwrap_or(0),
        timeout_ms: u32::try_from(row.timeout_ms).unwrap_or(0),
        needs_confirmation: row.needs_confirmation,
        agents: agents.get(&row.id.to_string()).cloned().unwrap_or_default(),
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

async fn assignments(tx: &mut TenantTx) -> Result<HashMap<String, Vec<AgentId>>, ApiError> {
    let mut out: HashMap<String, Vec<AgentId>> = HashMap::new();
    for (tool, agent) in store_tools::assignments(tx).await? {
        out.entry(tool).or_default().push(agent);
    }
    Ok(out)
}

/// Everything the tenant's agents can be given: the built-in tools, then its HTTP tools.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/tools", tag = "tools",
    params(("tenant_id" = Uuid, Path)),
    responses((status = 200, body = Vec<ToolInfo>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn tenant_list(
    auth: Authorized,
    state: web::Data<AppState>,
) -> Result<web::Json<Vec<ToolInfo>>, ApiError> {
    let mut out: Vec<ToolInfo> = tools::builtins().iter().map(|t| t.info()).collect();
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    for row in store_tools::list(&mut tx).await? {
        out.push(ToolInfo {
            id: row.id.to_string(),
            kind: shared::tools::ToolKind::Http,
            name: row.name,
            description: row.description,
            parameters: row.parameters,
            needs_confirmation: row.needs_confirmation,
        });
    }
    tx.commit().await?;
    Ok(web::Json(out))
}

/// Every problem with an HTTP tool's fields at once; `existing` is the tool being replaced.
fn validate(
    state: &AppState,
    input: &HttpToolInput,
    existing: Option<&ToolRow>,
) -> Result<(), ApiError> {
    let mut e = Errors::default();
    if !schema::is_valid_name(&input.name) {
        e.add("name", "use 1 to 64 letters, digits, _ and -");
    } else if tools::is_builtin_name(&input.name) {
        e.add("name", "is the name of a built-in tool");
    }
    e.text("description", &input.description, true, 1000);
    let mut arguments: Vec<String> = Vec::new();
    let mut required: Vec<String> = Vec::new();
    let compiled = schema::compile(&input.parameters);
    match &compiled {
        Ok(_) => {
            if let Some(props) = input
                .parameters
                .get("properties")
                .and_then(|p| p.as_object())
            {
                arguments = props.keys().cloned().collect();
            }
            if let Some(req) = input.parameters.get("required").and_then(|r| r.as_array()) {
                required = req
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect();
            }
        }
        Err(problems) => {
            for p in problems {
                e.add(format!("parameters{}", &p.pointer), p.message.clone());
            }
        }
    }
    if input.url.chars().count() > 2048 {
        e.add("url", "must be at most 2048 characters");
    } else {
        match tools::http::check_template(&input.url, |u| state.outbound.allows(u)) {
            // Placeholders are checked against a schema that compiled, not piled on its errors.
            Ok(names) if compiled.is_ok() => {
                for name in names {
                    if !arguments.contains(&name) || !required.contains(&name) {
                        e.add(
                            "url",
                            format!(
                                "uses {{{name}}}: make {name:?} a required argument in parameters"
                            ),
                        );
                    }
                }
            }
            Ok(_) => {}
            Err(why) => e.add("url", why.to_string()),
        }
    }
    if input.headers.len() > 20 {
        e.add("headers", "at most 20 headers");
    }
    let kept: Vec<StoredHeader> = existing.map(ToolRow::stored_headers).unwrap_or_default();
    // A kept secret goes only where it went before: pointing the tool elsewhere needs it typed
    // again (else whoever can edit a tool could send another admin's secret to their server).
    let moved = existing.is_some_and(|before| destination(&before.url) != destination(&input.url));
    for (i, h) in input.headers.iter().enumerate() {
        let at = format!("headers[{i}]");
        if !tools::http::header_allowed(&h.name) {
            e.add(
                format!("{at}.name"),
                "is not a header name a tool may set (Host, Content-Length, Idempotency-Key \
                 and connection headers are the client's own)",
            );
        } else if input.headers[..i]
            .iter()
            .any(|o| o.name.eq_ignore_ascii_case(&h.name))
        {
            e.add(format!("{at}.name"), "is listed twice");
        }
        match &h.value {
            Some(v) => {
                if v.chars().count() > 4096
                    || reqwest::header::HeaderValue::from_str(v).is_err()
                    || v.is_empty()
                {
                    e.add(
                        format!("{at}.value"),
                        "must be 1 to 4096 visible characters",
                    );
                }
            }
            None => {
                let has_sealed = h.secret
                    && kept
                        .iter()
                        .any(|k| k.secret && k.name.eq_ignore_ascii_case(&h.name));
                if !has_sealed {
                    e.add(format!("{at}.value"), "is required");
                } else if moved {
                    e.add(
                        format!("{at}.value"),
                        "type the secret again: the URL now points at another host",
                    );
                }
            }
        }
    }
    if !(1..=MAX_RESPONSE_BYTES).contains(&input.max_response_bytes) {
        e.add(
            "max_response_bytes",
            format!("must be between 1 and {MAX_RESPONSE_BYTES}"),
        );
    }
    if !(100..=MAX_TIMEOUT_MS).contains(&input.timeout_ms) {
        e.add(
            "timeout_ms",
            format!("must be between 100 and {MAX_TIMEOUT_MS}"),
        );
    }
    e.finish()
}

/// Where a URL template sends its calls (scheme, host, port), as written before any argument.
fn destination(template: &str) -> Option<(String, String, Option<u16>)> {
    let base = template.split(['{']).next().unwrap_or_default();
    url::Url::parse(base).ok().map(|u| {
        (
            u.scheme().to_string(),
            u.host_str().unwrap_or_default().to_string(),
            u.port_or_known_default(),
        )
    })
}

/// The last characters of a secret, for the operator to recognise it; nothing of a short one
/// (its last four characters would be a third of it).
fn hint(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() < 12 {
        return "…".into();
    }
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("…{tail}")
}

/// The row for `input`: plain headers kept in clear, secret ones sealed together (a secret
/// header given without a value keeps the one sealed before).
fn to_row(
    state: &AppState,
    tenant: shared::TenantId,
    id: Uuid,
    input: &HttpToolInput,
    existing: Option<&ToolRow>,
) -> Result<ToolRow, ApiError> {
    let mut old_secrets: HashMap<String, String> = HashMap::new();
    if let Some(sealed) = existing.and_then(|r| r.secrets.as_ref()) {
        let opened = state
            .keyring
            .open(tenant, &store_tools::secrets_slot(id), sealed)
            .map_err(ApiError::internal)?;
        old_secrets = serde_json::from_str(opened.expose()).map_err(ApiError::internal)?;
    }
    let old_headers = existing.map(ToolRow::stored_headers).unwrap_or_default();
    let mut secrets: HashMap<String, String> = HashMap::new();
    let mut headers: Vec<StoredHeader> = Vec::new();
    for h in &input.headers {
        if h.secret {
            let (value, hint) = match &h.value {
                Some(v) => (v.clone(), hint(v)),
                None => {
                    let old = old_headers
                        .iter()
                        .find(|o| o.secret && o.name.eq_ignore_ascii_case(&h.name));
                    let value = old
                        .and_then(|o| old_secrets.get(&o.name))
                        .cloned()
                        .ok_or_else(|| {
                            ApiError::invalid_field("headers", "a kept secret was not found")
                        })?;
                    (value, old.and_then(|o| o.hint.clone()).unwrap_or_default())
                }
            };
            secrets.insert(h.name.clone(), value);
            headers.push(StoredHeader {
                name: h.name.clone(),
                value: None,
                secret: true,
                hint: Some(hint),
            });
        } else {
            headers.push(StoredHeader {
                name: h.name.clone(),
                value: h.value.clone(),
                secret: false,
                hint: None,
            });
        }
    }
    let (sealed, version) = if secrets.is_empty() {
        (None, None)
    } else {
        let json = serde_json::to_string(&secrets).map_err(ApiError::internal)?;
        let (sealed, version) = state
            .keyring
            .seal(tenant, &store_tools::secrets_slot(id), &json)
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::Unavailable,
                    "Secret headers cannot be stored: the platform has no encryption key \
                     configured (KONSTRUCT_ENCRYPTION_KEYS).",
                )
                .with_cause(e)
            })?;
        (
            Some(sealed),
            Some(i32::try_from(version).unwrap_or(i32::MAX)),
        )
    };
    let now = chrono::Utc::now();
    Ok(ToolRow {
        id,
        name: input.name.clone(),
        description: input.description.trim().to_string(),
        parameters: input.parameters.clone(),
        method: input.method.as_str().to_string(),
        url: input.url.trim().to_string(),
        headers: serde_json::to_value(&headers).map_err(ApiError::internal)?,
        secrets: sealed,
        secrets_key_version: version,
        max_response_bytes: i32::try_from(input.max_response_bytes).unwrap_or(i32::MAX),
        timeout_ms: i32::try_from(input.timeout_ms).unwrap_or(i32::MAX),
        needs_confirmation: input.needs_confirmation,
        created_at: existing.map_or(now, |r| r.created_at),
        updated_at: now,
    })
}

/// What the audit trail says of a tool: its name, method and host (never a header value or
/// the URL's path and query, which may carry a credential).
fn summary(row: &ToolRow) -> serde_json::Value {
    let host = url::Url::parse(&row.url.replace(['{', '}'], ""))
        .ok()
        .and_then(|u| u.host_str().map(str::to_string));
    serde_json::json!({
        "name": row.name,
        "method": row.method,
        "host": host,
        "headers": row.stored_headers().iter().map(|h| h.name.clone()).collect::<Vec<_>>(),
        "needs_confirmation": row.needs_confirmation,
    })
}

/// Create an HTTP tool.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/tools", tag = "tools",
    params(("tenant_id" = Uuid, Path)), request_body = HttpToolInput,
    responses((status = 201, body = HttpTool), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    auth: Authorized,
    state: web::Data<AppState>,
    body: web::Json<HttpToolInput>,
) -> Result<HttpResponse, ApiError> {
    validate(&state, &body, None)?;
    let tenant = auth.tenant()?;
    let row = to_row(&state, tenant, Uuid::new_v4(), &body, None)?;
    let mut tx = state.store.tenant_tx(tenant).await?;
    if store_tools::count_locked(&mut tx).await? >= i64::try_from(MAX_HTTP_TOOLS).unwrap_or(100) {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("A tenant may have at most {MAX_HTTP_TOOLS} HTTP tools; delete one first."),
        ));
    }
    let saved = save(&mut tx, &row).await?;
    record(
        &mut tx,
        &auth,
        Action::ToolCreated,
        Target::Tool(saved.id),
        summary(&saved),
    )
    .await?;
    let agents = assignments(&mut tx).await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(to_dto(&saved, &agents)))
}

async fn save(tx: &mut TenantTx, row: &ToolRow) -> Result<ToolRow, ApiError> {
    store_tools::save(tx, row).await.map_err(|e| match e {
        crate::store::StoreError::Conflict(_) => ApiError::new(
            ErrorCode::Conflict,
            format!("Another tool is named {:?}; choose another name.", row.name),
        ),
        other => other.into(),
    })
}

async fn get_row(tx: &mut TenantTx, id: Uuid) -> Result<ToolRow, ApiError> {
    store_tools::get(tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("The tool"))
}

/// One HTTP tool (secret headers as hints only).
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/tools/{tool_id}", tag = "tools",
    params(("tenant_id" = Uuid, Path), ("tool_id" = Uuid, Path)),
    responses((status = 200, body = HttpTool), (status = 404, body = ErrorBody)))]
pub async fn get(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<web::Json<HttpTool>, ApiError> {
    let (_, id) = path.into_inner();
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let row = get_row(&mut tx, id).await?;
    let agents = assignments(&mut tx).await?;
    tx.commit().await?;
    Ok(web::Json(to_dto(&row, &agents)))
}

/// Replace an HTTP tool (a secret header given without a value keeps its sealed value).
#[utoipa::path(put, path = "/api/tenants/{tenant_id}/tools/{tool_id}", tag = "tools",
    params(("tenant_id" = Uuid, Path), ("tool_id" = Uuid, Path)), request_body = HttpToolInput,
    responses((status = 200, body = HttpTool), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn replace(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
    body: web::Json<HttpToolInput>,
) -> Result<web::Json<HttpTool>, ApiError> {
    let (_, id) = path.into_inner();
    let tenant = auth.tenant()?;
    let mut tx = state.store.tenant_tx(tenant).await?;
    let before = get_row(&mut tx, id).await?;
    validate(&state, &body, Some(&before))?;
    let row = to_row(&state, tenant, id, &body, Some(&before))?;
    let saved = save(&mut tx, &row).await?;
    record(
        &mut tx,
        &auth,
        Action::ToolUpdated,
        Target::Tool(id),
        serde_json::json!({ "before": summary(&before), "after": summary(&saved) }),
    )
    .await?;
    let agents = assignments(&mut tx).await?;
    tx.commit().await?;
    Ok(web::Json(to_dto(&saved, &agents)))
}

/// Delete an HTTP tool; agents that had it lose it. Its recorded calls stay with their
/// conversations.
#[utoipa::path(delete, path = "/api/tenants/{tenant_id}/tools/{tool_id}", tag = "tools",
    params(("tenant_id" = Uuid, Path), ("tool_id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (_, id) = path.into_inner();
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let before = get_row(&mut tx, id).await?;
    store_tools::delete(&mut tx, id).await?;
    record(
        &mut tx,
        &auth,
        Action::ToolDeleted,
        Target::Tool(id),
        serde_json::json!({ "before": summary(&before) }),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Run an HTTP tool once with sample arguments (checked against its schema first), through the
/// same client and caps as an agent's call. Nothing is recorded with a conversation.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/tools/{tool_id}/test", tag = "tools",
    params(("tenant_id" = Uuid, Path), ("tool_id" = Uuid, Path)), request_body = ToolTest,
    responses((status = 200, body = ToolTestResult), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn test(
    auth: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
    body: web::Json<ToolTest>,
) -> Result<web::Json<ToolTestResult>, ApiError> {
    let (_, id) = path.into_inner();
    let tenant = auth.tenant()?;
    let mut tx = state.store.tenant_tx(tenant).await?;
    let row = get_row(&mut tx, id).await?;
    tx.commit().await?;
    let tool = crate::engine::config::http_tool(tenant, &state.keyring, &row).ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unavailable,
            "The tool cannot be used: its secret headers cannot be opened with the platform's \
             keys.",
        )
    })?;
    if let Err(problems) = tool.check(&body.arguments) {
        return Err(ApiError::validation(
            problems
                .into_iter()
                .map(|p| shared::FieldError {
                    field: format!("arguments{}", p.pointer),
                    message: p.message,
                })
                .collect(),
        ));
    }
    let cx = tools::CallContext {
        tenant,
        agent: None,
        conversation: ConversationId::from_uuid(Uuid::nil()),
        end_user: None,
        key: Uuid::new_v4(),
        now: chrono::Utc::now(),
        zone: crate::time::TenantZone::default(),
        knowledge: None,
        outbound: Some(state.outbound.clone()),
        sources_before: 0,
    };
    let started = std::time::Instant::now();
    let result = tool
        .run(&cx, body.arguments.clone(), tool.spec().timeout)
        .await;
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let secrets = tool.secrets();
    let answer = match result {
        Ok(out) => ToolTestResult {
            outcome: shared::tools::ToolOutcome::Ok,
            status: out.status,
            content: tools::redact(&out.content, &secrets),
            duration_ms,
        },
        Err(failure) => ToolTestResult {
            outcome: failure.outcome,
            status: failure.status,
            content: tools::redact(&failure.message, &secrets),
            duration_ms,
        },
    };
    let mut tx = state.store.tenant_tx(tenant).await?;
    record(
        &mut tx,
        &auth,
        Action::ToolTested,
        Target::Tool(id),
        serde_json::json!({
            "outcome": answer.outcome.as_str(),
            "status": answer.status,
            "duration_ms": duration_ms,
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(web::Json(answer))
}

/// `?tool=&agent=&conversation=` on the calls list, besides the page.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
pub struct CallsQuery {
    /// A built-in tool's id or an HTTP tool's uuid.
    pub tool: Option<String>,
    pub agent: Option<Uuid>,
    pub conversation: Option<Uuid>,
    pub page: Option<u32>,
    pub per_page: Option<u32>,
}

/// The calls the tenant's agents made, newest first, with arguments and results (secrets
/// redacted).
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/tool-calls", tag = "tools",
    params(("tenant_id" = Uuid, Path), CallsQuery),
    responses((status = 200, body = Page<ToolCall>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn calls(
    auth: Authorized,
    state: web::Data<AppState>,
    query: web::Query<CallsQuery>,
) -> Result<web::Json<Page<ToolCall>>, ApiError> {
    let paging = PageQuery {
        page: query.page,
        per_page: query.per_page,
    }
    .resolve()?;
    if query.tool.as_ref().is_some_and(|t| t.len() > 100) {
        return Err(ApiError::invalid_field(
            "tool",
            "must be at most 100 characters",
        ));
    }
    let filter = store_tools::CallFilter {
        tool_id: query.tool.clone(),
        agent: query.agent.map(AgentId::from_uuid),
        conversation: query.conversation.map(ConversationId::from_uuid),
    };
    let mut tx = state.store.tenant_tx(auth.tenant()?).await?;
    let (rows, total) =
        store_tools::page(&mut tx, &filter, paging.limit(), paging.offset()).await?;
    tx.commit().await?;
    Ok(web::Json(paging.page(
        rows.iter().map(store_tools::CallRow::view).collect(),
        total,
    )))
}

/// Whether an agent may be given the tool `id`: a built-in tool, or one of the tenant's.
pub async fn assignable(tx: &mut TenantTx) -> Result<Vec<String>, ApiError> {
    let mut ids: Vec<String> = tools::builtins()
        .iter()
        .map(|t| t.spec().id.clone())
        .collect();
    ids.extend(
        store_tools::list(tx)
            .await?
            .into_iter()
            .map(|r| r.id.to_string()),
    );
    Ok(ids)
}

/// A turn cap as the agent API checks it.
pub fn check_caps(e: &mut Errors, caps: TurnCaps, steps: Option<u32>, deadline: Option<u32>) {
    if let Some(n) = steps
        && !(1..=caps.steps).contains(&n)
    {
        e.add(
            "max_tool_steps",
            format!("must be between 1 and {} (the platform's cap)", caps.steps),
        );
    }
    if let Some(n) = deadline
        && !(1..=caps.deadline_secs).contains(&u64::from(n))
    {
        e.add(
            "turn_deadline_secs",
            format!(
                "must be between 1 and {} (the platform's cap)",
                caps.deadline_secs
            ),
        );
    }
}
