//! The Agent Designer: the tenant's AI employees, and the form that hires or edits one. Customer
//! operators see the same pages read-only.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::{use_navigate, use_params_map};
use shared::auth::Permission;
use shared::resources::{Agent, AgentInput, EscalationRule, EscalationTrigger, Page, ScopeGuard};
use shared::tools::ToolKind;

use crate::api::{self, ApiError};
use crate::app::use_session;

/// The AI employees of the tenant in focus (`None` when no tenant is chosen), reloaded when the
/// focus changes.
pub fn tenant_agents() -> LocalResource<Result<Option<Vec<Agent>>, ApiError>> {
    let session = use_session();
    LocalResource::new(move || {
        let tenant = session.tenant.get();
        async move {
            match tenant {
                Some((id, _)) => {
                    api::get::<Page<Agent>>(&format!("/api/tenants/{id}/agents?per_page=100"))
                        .await
                        .map(|p| Some(p.items))
                }
                None => Ok(None),
            }
        }
    })
}

#[component]
pub fn AgentList() -> impl IntoView {
    let session = use_session();
    let list = tenant_agents();
    let writable = move || session.can(Permission::AgentsWrite);
    view! {
        <header class="page-head">
            <h1>"AI employees"</h1>
            <p class="muted">{move || session.tenant.get().map(|t| format!("Working in {}", t.1)).unwrap_or_else(|| "Choose a tenant first.".into())}</p>
            <Show when=writable fallback=|| view! { <p class="readonly-note">"Read-only: your role can view AI employees but not change them."</p> }>
                <a class="button" href="/agents/new">"Hire an AI employee"</a>
            </Show>
        </header>
        {move || match list.get() {
            None => view! { <p class="loading" role="status">"Loading AI employees…"</p> }.into_any(),
            Some(Err(e)) => { session.handle(&e); view! { <p class="error" role="alert">{e.message()}</p> }.into_any() }
            Some(Ok(None)) => view! { <p class="empty">"Pick a tenant in the menu to see its AI employees."</p> }.into_any(),
            Some(Ok(Some(items))) if items.is_empty() => view! {
                <p class="empty">"No AI employees yet. Hire one to answer your customers."</p>
            }.into_any(),
            Some(Ok(Some(items))) => view! {
                <ul class="cards">
                    {items.into_iter().map(|a| view! {
                        <li class="card agent-card">
                            <h2><a href=format!("/agents/{}", a.id)>{a.input.name.clone()}</a></h2>
                            <p class="role">{a.input.role.clone()}</p>
                            <p class="persona">{a.input.persona.clone()}</p>
                            <p class="meta">{declined_meta(&a)}</p>
                        </li>
                    }).collect_view()}
                </ul>
            }.into_any(),
        }}
    }
}

/// "2 tools · 1 escalation rule", and the requests declined lately if any.
fn declined_meta(a: &Agent) -> String {
    let mut meta = format!(
        "{} · {}",
        count(a.input.tools.len(), "tool"),
        count(a.input.escalation_rules.len(), "escalation rule")
    );
    if a.declined_last_30_days > 0 {
        meta.push_str(&format!(
            " · {} declined as off-topic (30 days)",
            a.declined_last_30_days
        ));
    }
    meta
}

/// What the first reply says when the AI disclosure is left empty (the server's default).
const DEFAULT_DISCLOSURE: &str =
    "I'm an AI assistant. Reply \"human\" at any time to reach a person.";

/// As many in-scope examples as the server takes.
const MAX_EXAMPLES: usize = 50;

/// The in-scope examples as typed, one per line: blank lines are not examples.
fn examples_from(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// The scope guard's choices, as the select shows them.
const SCOPE_GUARDS: &[(ScopeGuard, &str)] = &[
    (ScopeGuard::Whatsapp, "On WhatsApp (default)"),
    (ScopeGuard::AllChannels, "On every channel"),
    (
        ScopeGuard::Off,
        "Off — only where Meta's rule does not apply",
    ),
];

/// One escalation rule as the form edits it.
#[derive(Clone, PartialEq)]
struct RuleDraft {
    kind: String,
    threshold: String,
    keywords: String,
    target: String,
}

impl RuleDraft {
    fn from_rule(r: &EscalationRule) -> Self {
        let (kind, threshold, keywords) = match &r.trigger {
            EscalationTrigger::FailedResolutions { threshold } => {
                ("failed_resolutions", threshold.to_string(), String::new())
            }
            EscalationTrigger::Keywords { keywords } => {
                ("keywords", "3".into(), keywords.join(", "))
            }
            EscalationTrigger::HumanRequested => ("human_requested", "3".into(), String::new()),
        };
        Self {
            kind: kind.into(),
            threshold,
            keywords,
            target: r.handoff_target.clone().unwrap_or_default(),
        }
    }

    fn to_rule(&self) -> EscalationRule {
        let trigger = match self.kind.as_str() {
            "failed_resolutions" => EscalationTrigger::FailedResolutions {
                threshold: self.threshold.trim().parse().unwrap_or(0),
            },
            "keywords" => EscalationTrigger::Keywords {
                keywords: self
                    .keywords
                    .split(',')
                    .map(|k| k.trim().to_string())
                    .filter(|k| !k.is_empty())
                    .collect(),
            },
            _ => EscalationTrigger::HumanRequested,
        };
        EscalationRule {
            trigger,
            handoff_target: Some(self.target.trim().to_string()).filter(|t| !t.is_empty()),
        }
    }
}

fn empty_input() -> AgentInput {
    AgentInput {
        name: String::new(),
        role: String::new(),
        persona: String::new(),
        system_prompt: String::new(),
        job_description: String::new(),
        model_preference: String::new(),
        tools: Vec::new(),
        escalation_rules: Vec::new(),
        business_function: String::new(),
        scope_guard: Default::default(),
        in_scope_examples: Vec::new(),
        ai_disclosure: String::new(),
        cite_or_handoff: false,
        long_term_memory: true,
        max_tool_steps: None,
        turn_deadline_secs: None,
    }
}

/// A limit as typed: empty is the platform's default (`None`); anything else must be a whole
/// number.
fn limit_from(text: &str) -> Result<Option<u32>, ()> {
    let text = text.trim();
    if text.is_empty() {
        Ok(None)
    } else {
        text.parse().map(Some).map_err(|_| ())
    }
}

fn limit_text(limit: Option<u32>) -> String {
    limit.map(|n| n.to_string()).unwrap_or_default()
}

#[component]
pub fn AgentEditor() -> impl IntoView {
    let session = use_session();
    let params = use_params_map();
    let navigate = use_navigate();
    let agent_id = move || params.read().get("id");
    let form = RwSignal::new(empty_input());
    let rules = RwSignal::new(Vec::<RuleDraft>::new());
    // The in-scope examples as typed (with its blank lines, which are not examples).
    let examples = RwSignal::new(String::new());
    // Requests declined as off-topic in the last 30 days (an AI employee already hired).
    let declined = RwSignal::new(None::<u64>);
    let saved = RwSignal::new(empty_input());
    let loaded = RwSignal::new(false);
    let error = RwSignal::new(None::<ApiError>);
    let flash = session.flash;
    let busy = RwSignal::new(false);
    let tools = crate::tools::tenant_tools(None);
    // The tool limits as typed (empty: the platform's default).
    let steps = RwSignal::new(String::new());
    let deadline = RwSignal::new(String::new());

    // Load the agent being edited (or start empty).
    Effect::new(move |_| {
        let (Some((tenant, _)), id) = (session.tenant.get(), agent_id()) else {
            return;
        };
        match id {
            None => {
                form.set(empty_input());
                saved.set(empty_input());
                rules.set(Vec::new());
                examples.set(String::new());
                steps.set(String::new());
                deadline.set(String::new());
                declined.set(None);
                loaded.set(true);
            }
            Some(id) => {
                spawn_local(async move {
                    match api::get::<Agent>(&format!("/api/tenants/{tenant}/agents/{id}")).await {
                        Ok(a) => {
                            rules.set(
                                a.input
                                    .escalation_rules
                                    .iter()
                                    .map(RuleDraft::from_rule)
                                    .collect(),
                            );
                            examples.set(a.input.in_scope_examples.join("\n"));
                            steps.set(limit_text(a.input.max_tool_steps));
                            deadline.set(limit_text(a.input.turn_deadline_secs));
                            declined.set(Some(a.declined_last_30_days));
                            saved.set(a.input.clone());
                            form.set(a.input);
                            loaded.set(true);
                        }
                        Err(e) => {
                            session.handle(&e);
                            error.set(Some(e));
                        }
                    }
                });
            }
        }
    });

    let current = move || {
        let mut input = form.get();
        input.escalation_rules = rules.get().iter().map(RuleDraft::to_rule).collect();
        input.in_scope_examples = examples_from(&examples.get());
        // Not a number: unchanged here; saving says so.
        input.max_tool_steps = limit_from(&steps.get()).unwrap_or(input.max_tool_steps);
        input.turn_deadline_secs = limit_from(&deadline.get()).unwrap_or(input.turn_deadline_secs);
        input
    };
    let dirty = move || loaded.get() && current() != saved.get();
    let writable = move || session.can(Permission::AgentsWrite);
    // Closing or reloading the tab with unsaved changes asks first.
    let guard = window_event_listener(leptos::ev::beforeunload, move |ev| {
        if dirty() {
            ev.prevent_default();
            ev.set_return_value("You have unsaved changes.");
        }
    });
    on_cleanup(move || guard.remove());

    let save = {
        let navigate = navigate.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            let Some((tenant, _)) = session.tenant.get_untracked() else {
                return;
            };
            let mut problems = Vec::new();
            for (field, text) in [("max_tool_steps", steps), ("turn_deadline_secs", deadline)] {
                if limit_from(&text.get_untracked()).is_err() {
                    problems.push(shared::FieldError {
                        field: field.into(),
                        message:
                            "enter a whole number, or leave it empty for the platform's default"
                                .into(),
                    });
                }
            }
            if !problems.is_empty() {
                let mut e = ApiError::local_field(&problems[0].field, &problems[0].message);
                e.body.fields = problems;
                error.set(Some(e));
                return;
            }
            busy.set(true);
            flash.set(None);
            let body = current();
            let id = agent_id();
            let navigate = navigate.clone();
            spawn_local(async move {
                let result: Result<Agent, _> = api::save(
                    &format!("/api/tenants/{tenant}/agents"),
                    id.as_deref(),
                    &body,
                )
                .await;
                match result {
                    Ok(a) => {
                        error.set(None);
                        examples.set(a.input.in_scope_examples.join("\n"));
                        steps.set(limit_text(a.input.max_tool_steps));
                        deadline.set(limit_text(a.input.turn_deadline_secs));
                        declined.set(Some(a.declined_last_30_days));
                        saved.set(a.input.clone());
                        form.set(a.input);
                        flash.set(Some("Saved.".into()));
                        if id.is_none() {
                            navigate(&format!("/agents/{}", a.id), Default::default());
                        }
                    }
                    Err(e) => {
                        session.handle(&e);
                        error.set(Some(e));
                    }
                }
                busy.set(false);
            });
        }
    };
    let cancel = move |_| {
        let leave = !dirty()
            || window()
                .confirm_with_message("Discard your unsaved changes?")
                .unwrap_or(false);
        if leave {
            navigate("/agents", Default::default());
        }
    };

    let text_field = move |label: &'static str,
                           key: &'static str,
                           long: bool,
                           get: fn(&AgentInput) -> String,
                           set: fn(&mut AgentInput, String)| {
        let value = move || get(&form.get());
        let on_input = move |ev| {
            let v = event_target_value(&ev);
            form.update(|f| set(f, v));
        };
        let message = move || error.get().and_then(|e| e.field(key));
        // The error sits outside the label, tied to the input by aria-describedby, so the
        // field's accessible name stays its label.
        let id = format!("agent-{key}");
        let error_id = format!("agent-{key}-error");
        view! {
            <div class=if long { "field long" } else { "field" }>
                <label for=id.clone()>{label}</label>
                {if long {
                    view! { <textarea id=id.clone() rows="4" prop:value=value on:input=on_input aria-describedby=error_id.clone() aria-invalid=move || message().is_some().to_string()></textarea> }.into_any()
                } else {
                    view! { <input id=id.clone() prop:value=value on:input=on_input aria-describedby=error_id.clone() aria-invalid=move || message().is_some().to_string() /> }.into_any()
                }}
                <span id=error_id class="field-error" role="alert">{message}</span>
            </div>
        }
    };

    view! {
        <header class="page-head">
            <h1>{move || if agent_id().is_some() { form.get().name.clone().if_empty("AI employee") } else { "Hire an AI employee".to_string() }}</h1>
            <Show when=move || !writable()>
                <p class="readonly-note" role="note">"Read-only: your role can view this AI employee but not change it."</p>
            </Show>
        </header>
        <Show when=move || loaded.get() fallback=move || view! {
            {move || match error.get() {
                Some(e) => view! { <p class="error" role="alert">{e.message()}</p> }.into_any(),
                None => view! { <p class="loading" role="status">"Loading…"</p> }.into_any(),
            }}
        }>
            <form class="card designer" on:submit=save.clone() aria-label="AI employee">
                <fieldset disabled=move || !writable()>
                    <div class="grid">
                        {text_field("Name", "name", false, |f| f.name.clone(), |f, v| f.name = v)}
                        {text_field("Role", "role", false, |f| f.role.clone(), |f, v| f.role = v)}
                    </div>
                    {text_field("Persona", "persona", true, |f| f.persona.clone(), |f, v| f.persona = v)}
                    {text_field("System prompt", "system_prompt", true, |f| f.system_prompt.clone(), |f, v| f.system_prompt = v)}
                    {text_field("Job description", "job_description", true, |f| f.job_description.clone(), |f, v| f.job_description = v)}
                    <div class="grid">
                        {text_field("Model preference", "model_preference", false, |f| f.model_preference.clone(), |f, v| f.model_preference = v)}
                    </div>
                    <BusinessScope form=form examples=examples declined=declined error=error />
                    <KnowledgeAndMemory form=form error=error />
                    <ToolsGroup form=form tools=tools steps=steps deadline=deadline error=error />
                    <fieldset class="group">
                        <legend>"Escalation rules"</legend>
                        <p class="muted">"When to hand the conversation to a person."</p>
                        {move || rules.get().into_iter().enumerate().map(|(i, r)| view! { <RuleRow index=i rule=r rules=rules error=error /> }).collect_view()}
                        <Show when=writable>
                            <button type="button" class="secondary" on:click=move |_| rules.update(|r| r.push(RuleDraft {
                                kind: "human_requested".into(), threshold: "3".into(), keywords: String::new(), target: String::new(),
                            }))>"Add a rule"</button>
                        </Show>
                    </fieldset>
                </fieldset>
                {move || error.get().filter(|e| e.body.fields.is_empty()).map(|e| view! { <p class="error" role="alert">{e.message()}</p> })}
                {move || error.get().filter(|e| !e.body.fields.is_empty()).map(|_| view! { <p class="error" role="alert">"Please correct the marked fields."</p> })}
                {move || flash.get().map(|f| view! { <p class="flash" role="status">{f}</p> })}
                <div class="form-actions">
                    <Show when=writable>
                        <button type="submit" disabled=move || busy.get()>{move || if busy.get() { "Saving…" } else { "Save" }}</button>
                    </Show>
                    <button type="button" class="secondary" on:click=cancel.clone()>"Back to the list"</button>
                    <Show when=dirty>
                        <span class="unsaved" role="status">"Unsaved changes"</span>
                    </Show>
                </div>
            </form>
            {move || agent_id().filter(|_| session.can(Permission::ToolsRead)).map(|id| view! {
                <section class="card section" aria-labelledby="agent-tool-calls">
                    <h2 id="agent-tool-calls">"Last tool calls"</h2>
                    <p class="muted">"The tools this AI employee called in its conversations, newest first."</p>
                    <crate::tools::ToolCalls filter=format!("agent={id}") caption="Last tool calls".to_string() show_tool=true show_agent=false />
                </section>
            })}
        </Show>
    }
}

/// The tools the AI employee may call (built-in ones and the tenant's HTTP tools), and how far
/// one turn may go with them.
#[component]
fn ToolsGroup(
    form: RwSignal<AgentInput>,
    tools: LocalResource<Result<Option<Vec<shared::tools::ToolInfo>>, ApiError>>,
    steps: RwSignal<String>,
    deadline: RwSignal<String>,
    error: RwSignal<Option<ApiError>>,
) -> impl IntoView {
    let message = move |key: &'static str| move || error.get().and_then(|e| e.field(key));
    let tools_msg = message("tools");
    let limit = move |label: &'static str,
                      key: &'static str,
                      value: RwSignal<String>,
                      hint: &'static str| {
        let id = format!("agent-{key}");
        let msg = message(key);
        view! {
            <div class="field">
                <label for=id.clone()>{label}</label>
                <input id=id.clone() inputmode="numeric" autocomplete="off" placeholder="Platform default"
                    prop:value=move || value.get() on:input=move |ev| value.set(event_target_value(&ev))
                    aria-describedby=format!("{id}-hint {id}-error") aria-invalid=move || msg().is_some().to_string() />
                <span id=format!("{id}-hint") class="hint">{hint}</span>
                <span id=format!("{id}-error") class="field-error" role="alert">{msg}</span>
            </div>
        }
    };
    view! {
        <fieldset class="group">
            <legend>"Tools"</legend>
            <p class="muted">"What it may call while it answers: the built-in tools, and your own HTTP tools from the "<a href="/tools">"Tools page"</a>". It can call only the ones ticked here."</p>
            {move || match tools.get() {
                None => view! { <p class="loading" role="status">"Loading tools…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{format!("The tools could not be loaded. {}", e.message())}</p> }.into_any(),
                Some(Ok(None)) => ().into_any(),
                Some(Ok(Some(list))) => list.into_iter().map(|t| {
                    let id = StoredValue::new(t.id.clone());
                    let checked = move || form.get().tools.contains(&id.get_value());
                    let toggle = move |ev| {
                        let on = event_target_checked(&ev);
                        let id = id.get_value();
                        form.update(|f| {
                            f.tools.retain(|x| *x != id);
                            if on {
                                f.tools.push(id);
                            }
                        });
                    };
                    let (kind_class, kind) = match t.kind {
                        ToolKind::Builtin => ("badge muted-badge", "Built-in"),
                        ToolKind::Http => ("badge info", "HTTP"),
                    };
                    let input_id = format!("agent-tool-{}", t.id);
                    view! {
                        <div class="check-field tool-choice">
                            <label class="check">
                                <input type="checkbox" id=input_id.clone() prop:checked=checked on:change=toggle
                                    aria-describedby=format!("{input_id}-description") />
                                <span>
                                    <code class="strong">{t.name.clone()}</code>" "
                                    <span class=kind_class>{kind}</span>
                                    {t.needs_confirmation.then(|| view! { " " <span class="badge warn">"Needs confirmation"</span> })}
                                </span>
                            </label>
                            <span id=format!("{input_id}-description") class="hint">{t.description.clone()}</span>
                        </div>
                    }
                }).collect_view().into_any(),
            }}
            <span class="field-error" role="alert">{tools_msg}</span>
            <div class="grid">
                {limit("Most tool steps per turn", "max_tool_steps", steps,
                    "How many rounds of tool calls one reply may take before it stops and says so. Empty: the platform's default; never more than the platform's cap.")}
                {limit("Turn deadline (seconds)", "turn_deadline_secs", deadline,
                    "How long one reply may take, tools included, before it stops and says so. Empty: the platform's default; never more than the platform's cap.")}
            </div>
        </fieldset>
    }
}

/// "1 tool", "2 tools".
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

trait IfEmpty {
    fn if_empty(self, other: &str) -> String;
}

impl IfEmpty for String {
    fn if_empty(self, other: &str) -> String {
        if self.trim().is_empty() {
            other.to_string()
        } else {
            self
        }
    }
}

/// The business function and how the AI employee keeps to it: Meta's terms forbid
/// general-purpose AI assistants on WhatsApp and ask that customers know they talk to an AI.
#[component]
fn BusinessScope(
    form: RwSignal<AgentInput>,
    examples: RwSignal<String>,
    declined: RwSignal<Option<u64>>,
    error: RwSignal<Option<ApiError>>,
) -> impl IntoView {
    let message = move |key: &'static str| move || error.get().and_then(|e| e.field(key));
    let (function_msg, guard_msg, disclosure_msg) = (
        message("business_function"),
        message("scope_guard"),
        message("ai_disclosure"),
    );
    // The list's own message, else the first example's, with its number.
    let examples_msg = move || {
        let e = error.get()?;
        e.field("in_scope_examples").or_else(|| {
            e.body.fields.iter().find_map(|f| {
                let i: usize = f
                    .field
                    .strip_prefix("in_scope_examples[")?
                    .strip_suffix(']')?
                    .parse()
                    .ok()?;
                Some(format!("Example {}: {}", i + 1, f.message))
            })
        })
    };
    let example_count = move || examples_from(&examples.get()).len();
    view! {
        <fieldset class="group scope">
            <legend>"Keeping to the business"</legend>
            <p class="muted">
                "Meta's WhatsApp Business terms do not allow general-purpose AI assistants: on WhatsApp an AI employee must keep to the business it serves, and customers must know they are talking to an AI. "
                "Konstruct puts the business function in the instructions, declines clearly unrelated requests (a poem, homework, trivia) without asking the LLM, and starts the first reply to each customer with the AI disclosure."
            </p>
            <div class="field">
                <label for="agent-business_function">"Business function"</label>
                <input id="agent-business_function" placeholder="e.g. Order and delivery support for Acme's web shop"
                    prop:value=move || form.get().business_function
                    on:input=move |ev| { let v = event_target_value(&ev); form.update(|f| f.business_function = v); }
                    aria-describedby="agent-business_function-hint agent-business_function-error"
                    aria-invalid=move || function_msg().is_some().to_string() />
                <span id="agent-business_function-hint" class="hint">"What it is there for. Where the scope guard applies, it declines anything else, politely."</span>
                <span id="agent-business_function-error" class="field-error" role="alert">{function_msg}</span>
            </div>
            <div class="field">
                <label for="agent-scope_guard">"Scope guard"</label>
                <select id="agent-scope_guard"
                    prop:value=move || form.get().scope_guard.as_str()
                    on:change=move |ev| { if let Some(g) = ScopeGuard::parse(&event_target_value(&ev)) { form.update(|f| f.scope_guard = g); } }
                    aria-describedby="agent-scope_guard-hint agent-scope_guard-error"
                    aria-invalid=move || guard_msg().is_some().to_string()>
                    {SCOPE_GUARDS.iter().map(|(g, label)| {
                        let g = *g;
                        view! { <option value=g.as_str() selected=move || form.get().scope_guard == g>{*label}</option> }
                    }).collect_view()}
                </select>
                <span id="agent-scope_guard-hint" class="hint">"Where it keeps to the business function. Meta's rule applies to WhatsApp; turn it off only in a region where Meta has suspended it."</span>
                <span id="agent-scope_guard-error" class="field-error" role="alert">{guard_msg}</span>
            </div>
            <div class="field long">
                <label for="agent-in_scope_examples">"Requests it should take (one per line)"</label>
                <textarea id="agent-in_scope_examples" rows="4"
                    placeholder="Where is my order?\nCan I still change the delivery address?\nDo you ship to Austria?"
                    prop:value=move || examples.get()
                    on:input=move |ev| examples.set(event_target_value(&ev))
                    aria-describedby="agent-in_scope_examples-hint agent-in_scope_examples-error"
                    aria-invalid=move || examples_msg().is_some().to_string()></textarea>
                <span id="agent-in_scope_examples-hint" class="hint">
                    "In your customers' words: they help the check recognise your business's own questions, so these are never declined. "
                    <span class:warn-text=move || { example_count() > MAX_EXAMPLES }>{move || format!("{} of {MAX_EXAMPLES}.", example_count())}</span>
                </span>
                <span id="agent-in_scope_examples-error" class="field-error" role="alert">{examples_msg}</span>
            </div>
            <div class="field long">
                <label for="agent-ai_disclosure">"AI disclosure"</label>
                <textarea id="agent-ai_disclosure" rows="2" placeholder=DEFAULT_DISCLOSURE
                    prop:value=move || form.get().ai_disclosure
                    on:input=move |ev| { let v = event_target_value(&ev); form.update(|f| f.ai_disclosure = v); }
                    aria-describedby="agent-ai_disclosure-hint agent-ai_disclosure-error"
                    aria-invalid=move || disclosure_msg().is_some().to_string()></textarea>
                <span id="agent-ai_disclosure-hint" class="hint">"Starts its first reply to each customer, and its first after 24 hours of silence. Empty: the text shown greyed out. Say that it is an AI and how to reach a person."</span>
                <span id="agent-ai_disclosure-error" class="field-error" role="alert">{disclosure_msg}</span>
            </div>
            {move || declined.get().map(|n| view! {
                <p class="muted">{match n {
                    0 => "It declined no request as off-topic in the last 30 days.".to_string(),
                    1 => "It declined 1 request as off-topic in the last 30 days.".to_string(),
                    n => format!("It declined {n} requests as off-topic in the last 30 days."),
                }}</p>
            })}
        </fieldset>
    }
}

/// How the AI employee uses the knowledge base and what it remembers about each customer.
#[component]
fn KnowledgeAndMemory(
    form: RwSignal<AgentInput>,
    error: RwSignal<Option<ApiError>>,
) -> impl IntoView {
    let message = move |key: &'static str| move || error.get().and_then(|e| e.field(key));
    let (cite_msg, memory_msg) = (message("cite_or_handoff"), message("long_term_memory"));
    view! {
        <fieldset class="group">
            <legend>"Knowledge and memory"</legend>
            <div class="check-field">
                <label class="check">
                    <input type="checkbox" id="agent-cite_or_handoff"
                        prop:checked=move || form.get().cite_or_handoff
                        on:change=move |ev| { let on = event_target_checked(&ev); form.update(|f| f.cite_or_handoff = on); }
                        aria-describedby="agent-cite_or_handoff-hint agent-cite_or_handoff-error" />
                    <span>"Answer only from the knowledge base — otherwise say so and offer a person"</span>
                </label>
                <span id="agent-cite_or_handoff-hint" class="hint">"Its answers cite the documents under Knowledge. When nothing there is relevant, it says it does not know and offers to hand the conversation to a person, instead of answering from general knowledge."</span>
                <span id="agent-cite_or_handoff-error" class="field-error" role="alert">{cite_msg}</span>
            </div>
            <div class="check-field">
                <label class="check">
                    <input type="checkbox" id="agent-long_term_memory"
                        prop:checked=move || form.get().long_term_memory
                        on:change=move |ev| { let on = event_target_checked(&ev); form.update(|f| f.long_term_memory = on); }
                        aria-describedby="agent-long_term_memory-hint agent-long_term_memory-error" />
                    <span>"Remember customers across conversations"</span>
                </label>
                <span id="agent-long_term_memory-hint" class="hint">"It keeps short facts a customer shared (a name, an order, a preference) and recalls them in later conversations. A customer admin can see and delete them under Customers."</span>
                <span id="agent-long_term_memory-error" class="field-error" role="alert">{memory_msg}</span>
            </div>
        </fieldset>
    }
}

#[component]
fn RuleRow(
    index: usize,
    rule: RuleDraft,
    rules: RwSignal<Vec<RuleDraft>>,
    error: RwSignal<Option<ApiError>>,
) -> impl IntoView {
    let set = move |f: fn(&mut RuleDraft, String)| {
        move |ev| {
            let v = event_target_value(&ev);
            rules.update(|r| {
                if let Some(rule) = r.get_mut(index) {
                    f(rule, v)
                }
            });
        }
    };
    let prefix = format!("escalation_rules[{index}]");
    let message = move || {
        let prefix = prefix.clone();
        error.get().and_then(|e| {
            e.body
                .fields
                .iter()
                .find(|f| f.field.starts_with(&prefix))
                .map(|f| f.message.clone())
        })
    };
    let kind = rule.kind.clone();
    view! {
        <div class="rule" role="group" aria-label=format!("Rule {}", index + 1)>
            <label>
                <span>"When"</span>
                <select prop:value=rule.kind.clone() on:change=set(|r, v| r.kind = v)>
                    <option value="human_requested">"the user asks for a person"</option>
                    <option value="keywords">"the user uses one of these words"</option>
                    <option value="failed_resolutions">"unresolved turns in a row reach"</option>
                </select>
            </label>
            {match kind.as_str() {
                "keywords" => view! {
                    <label><span>"Keywords (comma-separated)"</span>
                        <input prop:value=rule.keywords.clone() on:input=set(|r, v| r.keywords = v) /></label>
                }.into_any(),
                "failed_resolutions" => view! {
                    <label><span>"Turns (1–20)"</span>
                        <input type="number" min="1" max="20" prop:value=rule.threshold.clone() on:input=set(|r, v| r.threshold = v) /></label>
                }.into_any(),
                _ => ().into_any(),
            }}
            <label>
                <span>"Hand off to"</span>
                <input placeholder="e.g. #support or a colleague's email" prop:value=rule.target.clone() on:input=set(|r, v| r.target = v) />
            </label>
            <button type="button" class="link" on:click=move |_| rules.update(|r| { if index < r.len() { r.remove(index); } })>"Remove"</button>
            {move || message().map(|m| view! { <span class="field-error">{m}</span> })}
        </div>
    }
}
