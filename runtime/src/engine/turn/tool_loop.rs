//! The agent loop inside a turn: the LLM answers or proposes tool calls; each call's arguments
//! are checked against its schema (an invalid call goes back to the model as an error it can
//! correct, never run); the calls of a step run concurrently and their results go back to the
//! model; until a final answer, within the agent's step limit and deadline.
//!
//! Crash-safe like the reply protocol: a step's proposed calls are recorded (with that LLM
//! call's usage) in one fenced transaction before any runs, and each call's result is recorded
//! before it is used. A redelivered turn replays what was recorded — it neither asks the LLM for
//! a recorded step again nor runs a call that finished — and runs only calls still `running`,
//! with the recorded call's id as their idempotency key.
//!
//! A tool that needs the customer's confirmation is not run: the turn asks, and the next
//! message in the conversation confirms it (the call then runs in that turn) or declines it.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::Value;
use shared::knowledge::Passage;
use shared::tools::ToolOutcome;
use shared::{ConversationId, EndUserId};
use tokio::time::Instant;
use uuid::Uuid;

use super::{EngineDeps, TurnError};
use crate::engine::config::{AgentConfig, TenantConfig};
use crate::engine::ingest::Delivery;
use crate::engine::reply;
use crate::failpoint;
use crate::llm::budget::{self, Gate, Hold};
use crate::llm::metering;
use crate::llm::pool::PoolError;
use crate::llm::types::{CallReport, ChatRequest, Message, Part, Role};
use crate::store::audit::{self, Action, Actor, NewEvent, Target};
use crate::store::tools::{self as store_tools, CallRow};
use crate::tools::{CallContext, Registered, Toolbox};

/// Why the loop stopped without a final answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The agent's step limit.
    Steps,
    /// The agent's deadline.
    Deadline,
}

impl Stop {
    pub fn as_str(self) -> &'static str {
        match self {
            Stop::Steps => "step_limit",
            Stop::Deadline => "deadline",
        }
    }
}

/// How the loop ended.
#[derive(Debug)]
pub enum Ending {
    /// The model's final answer, or every deployment failed.
    Answer(Result<CallReport, PoolError>),
    /// It ran out of steps or time.
    Stopped(Stop),
    /// The model asked for a person (`handoff_to_human`), with its reason.
    Handoff(String),
    /// A call waits for the customer's yes: what to ask.
    Confirm(String),
    /// A spent budget whose policy is to hand off: no call was made.
    OverBudget,
}

/// What the loop did.
#[derive(Debug)]
pub struct Finished {
    pub ending: Ending,
    /// Passages tools found, numbered after the turn's own (in this order).
    pub passages: Vec<Passage>,
    /// The final answer's hold on the budgets, settled where the answer is recorded.
    pub hold: Hold,
}

/// What the loop works with.
#[derive(Debug)]
pub struct Turn<'a> {
    pub deps: &'a EngineDeps,
    pub d: &'a Delivery,
    pub config: &'a TenantConfig,
    pub agent: &'a AgentConfig,
    pub conversation: ConversationId,
    pub end_user: EndUserId,
    pub toolbox: &'a Toolbox,
    /// The sources the prompt numbered already.
    pub sources_before: usize,
}

impl Turn<'_> {
    fn max_steps(&self) -> u32 {
        let cap = self.deps.settings.tool_steps.max(1);
        self.agent.max_tool_steps.map_or(cap, |n| n.clamp(1, cap))
    }

    fn deadline(&self) -> Duration {
        let cap = self.deps.settings.turn_deadline;
        self.agent.turn_deadline.map_or(cap, |d| d.min(cap))
    }

    fn event(&self) -> &str {
        &self.d.message.provider_event_id
    }

    fn context(&self, key: Uuid, sources_before: usize) -> CallContext {
        CallContext {
            tenant: self.d.message.tenant_id,
            agent: self.d.message.agent_id,
            conversation: self.conversation,
            end_user: Some(self.end_user),
            key,
            now: self.deps.settings.clock.now(),
            zone: self.config.zone,
            knowledge: self.deps.knowledge.clone(),
            outbound: self.deps.outbound.clone(),
            sources_before,
        }
    }
}

/// Calls one step may run; the model is told to make the rest in the next.
pub const MAX_CALLS_PER_STEP: usize = 8;

/// Words that confirm a call waiting for the customer (the first word of their reply).
const YES: [&str; 16] = [
    "yes",
    "y",
    "yeah",
    "yep",
    "yup",
    "ok",
    "okay",
    "sure",
    "confirm",
    "confirmed",
    "sí",
    "si",
    "ja",
    "oui",
    "sim",
    "да",
];

/// Words that make a reply anything but a yes ("ok, wait", "si no puedes…").
const NOT: [&str; 16] = [
    "no", "not", "don't", "dont", "wait", "stop", "cancel", "never", "nein", "non", "não", "nao",
    "нет", "hold", "later", "but",
];

/// Whether a reply confirms: a short reply (six words at most) that starts with a yes (or is
/// "go ahead") and says nothing against it (`Yes, please`, `ok!`, `Sí` — not `ok, wait`).
pub fn confirms(text: &str) -> bool {
    let lower = text.trim().to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .collect();
    let starts_yes =
        words.first().is_some_and(|w| YES.contains(w)) || words.starts_with(&["go", "ahead"]);
    starts_yes && words.len() <= 6 && !words.iter().any(|w| NOT.contains(w))
}

/// How long a call waits for the customer's yes; after that the next message declines it.
pub const CONFIRMATION_WINDOW: chrono::TimeDelta = chrono::TimeDelta::minutes(30);

/// Calls recorded from one answer at most; the rest are not taken (nor shown to the model).
pub const MAX_CALLS_RECORDED: usize = 32;

/// The most of one result the model is shown, in characters.
pub const MAX_RESULT_CHARS: usize = 64 * 1024;

/// Runs the loop for `request` (the prompt of the turn).
pub async fn run(turn: &Turn<'_>, mut request: ChatRequest) -> Result<Finished, TurnError> {
    let started = Instant::now();
    let deadline = turn.deadline();
    let max_steps = turn.max_steps();
    request.tools = turn.toolbox.definitions();
    let mut passages: Vec<Passage> = Vec::new();
    let mut recorded = {
        let mut tx = turn.deps.store.tenant_tx(turn.d.message.tenant_id).await?;
        let rows = store_tools::for_event(&mut tx, turn.event()).await?;
        let confirmed = store_tools::confirmed_by(&mut tx, turn.event()).await?;
        let held = if rows.is_empty() && confirmed.is_none() {
            store_tools::awaiting_confirmation(&mut tx, turn.conversation, turn.end_user).await?
        } else {
            None
        };
        tx.commit().await?;
        // The customer answers a call that waited for them.
        let confirmed = match (confirmed, held) {
            (Some(row), _) => Some(row),
            (None, Some(held)) => settle(turn, held).await?,
            (None, None) => None,
        };
        if let Some(row) = confirmed {
            let row = match (row.outcome(), tool_of(turn, &row)) {
                (ToolOutcome::Running, Some(tool)) => {
                    let arguments = real_arguments(turn, &row);
                    let remaining = deadline.saturating_sub(started.elapsed());
                    execute(turn, &row, tool, arguments, remaining, 0).await?
                }
                (ToolOutcome::Running, None) => {
                    finish_row(
                        turn,
                        &row,
                        ToolOutcome::NotAssigned,
                        "This tool is not available to you any more.".into(),
                        None,
                        0,
                    )
                    .await?
                }
                _ => row,
            };
            let mut row = row;
            number_passages(&mut row, &mut passages, turn.sources_before);
            push_step(&mut request.messages, std::slice::from_ref(&row));
        }
        rows
    };
    for step in 0..max_steps {
        let remaining = deadline.saturating_sub(started.elapsed());
        if remaining.is_zero() {
            return stopped(turn, Stop::Deadline, passages).await;
        }
        let step_i16 = i16::try_from(step).unwrap_or(i16::MAX);
        let mut calls: Vec<CallRow> = recorded
            .iter()
            .filter(|r| r.step == step_i16)
            .cloned()
            .collect();
        // Fresh calls keep their real arguments (what is stored is redacted).
        let mut fresh_arguments: Vec<Value> = Vec::new();
        if calls.is_empty() {
            let (hold, downgrade) = match admit(turn, &request, remaining).await? {
                Gate::Call { hold, downgrade } => (hold, downgrade),
                Gate::HandOff { .. } => {
                    return Ok(Finished {
                        ending: Ending::OverBudget,
                        passages,
                        hold: Hold::default(),
                    });
                }
            };
            let preference = downgrade
                .as_deref()
                .or(turn.agent.model_preference.as_deref());
            // Waiting for admission took some of the turn's time.
            let remaining = deadline.saturating_sub(started.elapsed());
            let Ok(answer) = tokio::time::timeout(
                remaining,
                turn.deps
                    .pool
                    .chat(preference, &turn.config.credentials, &request),
            )
            .await
            else {
                // The provider may have billed a call that ran past the deadline: its worst
                // case is charged, never nothing.
                if let Err(e) =
                    budget::settle_unknown(&turn.deps.store, turn.d.message.tenant_id, &hold).await
                {
                    tracing::warn!(tenant.id = %turn.d.message.tenant_id, error = %e, "could not charge a timed-out call; its hold lapses at its expiry");
                }
                return stopped(turn, Stop::Deadline, passages).await;
            };
            note_key_failures(turn, &answer).await;
            failpoint::hit(failpoint::AFTER_LLM).await;
            let report = match answer {
                Ok(report) => report,
                Err(e) => {
                    release(turn, &hold).await;
                    return Ok(Finished {
                        ending: Ending::Answer(Err(e)),
                        passages,
                        hold: Hold::default(),
                    });
                }
            };
            let proposed = proposed_calls(&report);
            if proposed.is_empty() {
                return Ok(Finished {
                    ending: Ending::Answer(Ok(report)),
                    passages,
                    hold,
                });
            }
            let (rows, arguments) = propose(turn, step_i16, &report, proposed);
            record_step(turn, &rows, &report, &hold).await?;
            fresh_arguments = arguments;
            calls = rows;
        }
        // Run what is still running, concurrently.
        let base = turn.sources_before + passages.len();
        let remaining = deadline.saturating_sub(started.elapsed());
        let runs = calls.iter().enumerate().map(|(i, row)| {
            let tool = tool_of(turn, row);
            let arguments = fresh_arguments
                .get(i)
                .cloned()
                .unwrap_or_else(|| real_arguments(turn, row));
            async move {
                match (row.outcome(), tool) {
                    (ToolOutcome::Running, Some(tool)) => {
                        execute(turn, row, tool, arguments, remaining, base).await
                    }
                    (ToolOutcome::Running, None) => {
                        // Unassigned since it was proposed (a resumed turn): it does not run.
                        finish_row(
                            turn,
                            row,
                            ToolOutcome::NotAssigned,
                            "This tool is not available to you.".into(),
                            None,
                            0,
                        )
                        .await
                    }
                    _ => Ok(row.clone()),
                }
            }
        });
        let mut done: Vec<CallRow> = join_all(runs).await.into_iter().collect::<Result<_, _>>()?;
        for row in &mut done {
            number_passages(row, &mut passages, turn.sources_before);
        }
        push_step(&mut request.messages, &done);
        // Forget the recorded step once used, so a later step of the same number cannot reuse it.
        recorded.retain(|r| r.step != step_i16);
        if let Some(reason) = done
            .iter()
            .filter(|r| {
                r.outcome() == ToolOutcome::Ok && r.tool_id.as_deref() == Some("handoff_to_human")
            })
            .find_map(|r| r.arguments.get("reason").and_then(Value::as_str))
        {
            return Ok(Finished {
                ending: Ending::Handoff(reason.to_string()),
                passages,
                hold: Hold::default(),
            });
        }
        if let Some(held) = done
            .iter()
            .find(|r| r.outcome() == ToolOutcome::AwaitingConfirmation)
        {
            return Ok(Finished {
                ending: Ending::Confirm(confirmation_question(turn, held)),
                passages,
                hold: Hold::default(),
            });
        }
    }
    stopped(turn, Stop::Steps, passages).await
}

/// Decides a held call by the customer's message: confirmed (recorded for this turn, which
/// runs it) or declined. Only the person whose message made the call can answer it; a call
/// waiting longer than `CONFIRMATION_WINDOW` is declined by whatever comes next.
async fn settle(turn: &Turn<'_>, held: CallRow) -> Result<Option<CallRow>, TurnError> {
    if held.end_user_id.is_some_and(|who| who != turn.end_user) {
        return Ok(None);
    }
    let fresh = chrono::Utc::now() - held.created_at < CONFIRMATION_WINDOW;
    let yes = fresh && confirms(&turn.d.message.text);
    let mut tx = reply::fenced_tx(turn.deps, turn.d).await?;
    let changed =
        store_tools::settle_confirmation(&mut tx, held.id, yes.then_some(turn.event())).await?;
    if changed && !yes {
        audit::append(&mut tx, &call_event(turn, &held, ToolOutcome::Declined, 0)).await?;
    }
    tx.commit().await?;
    if !(changed && yes) {
        return Ok(None);
    }
    Ok(Some(CallRow {
        outcome: ToolOutcome::Running.as_str().into(),
        ..held
    }))
}

/// The agent's tool a recorded call names, if it still has it (by name, and the same tool).
fn tool_of<'t>(turn: &'t Turn<'_>, row: &CallRow) -> Option<&'t Registered> {
    turn.toolbox
        .get(&row.name)
        .filter(|t| row.tool_id.as_deref() == Some(t.spec().id.as_str()))
}

/// The arguments a recorded call runs with: the sealed originals where redaction changed them.
fn real_arguments(turn: &Turn<'_>, row: &CallRow) -> Value {
    let Some(sealed) = &row.sealed_arguments else {
        return row.arguments.clone();
    };
    turn.deps
        .keyring
        .open(
            turn.d.message.tenant_id,
            &store_tools::arguments_slot(row.id),
            sealed,
        )
        .ok()
        .and_then(|opened| serde_json::from_str(opened.expose()).ok())
        .unwrap_or_else(|| row.arguments.clone())
}

/// The tool calls in an answer: (the model's call id, name, arguments).
fn proposed_calls(report: &CallReport) -> Vec<(String, String, Value)> {
    report
        .completion
        .parts
        .iter()
        .filter_map(|p| match p {
            Part::ToolCall {
                id,
                name,
                arguments,
            } => Some((id.clone(), name.clone(), arguments.clone())),
            _ => None,
        })
        .collect()
}

/// The step's calls as recorded (each with its outcome when it will not run), and the real
/// arguments of each, in order.
fn propose(
    turn: &Turn<'_>,
    step: i16,
    report: &CallReport,
    proposed: Vec<(String, String, Value)>,
) -> (Vec<CallRow>, Vec<Value>) {
    let secrets = turn.toolbox.secrets();
    let step_text = report.completion.text();
    let mut rows = Vec::with_capacity(proposed.len());
    let mut arguments = Vec::with_capacity(proposed.len());
    let mut held = false;
    for (position, (call_id, name, args)) in
        proposed.into_iter().take(MAX_CALLS_RECORDED).enumerate()
    {
        let tool = turn.toolbox.get(&name);
        let (outcome, result) = match tool {
            Some(t) if t.spec().needs_confirmation && held => (
                ToolOutcome::Failed,
                "Only one action that needs the customer's confirmation can wait at a time: \
                 ask for this one after they answered."
                    .to_string(),
            ),
            Some(_) if position >= MAX_CALLS_PER_STEP => (
                ToolOutcome::Failed,
                format!(
                    "At most {MAX_CALLS_PER_STEP} tool calls run in one step; make this one \
                     again in the next."
                ),
            ),
            None => (
                ToolOutcome::NotAssigned,
                format!(
                    "There is no tool named {name:?} available to you. Use only the tools you \
                     were given."
                ),
            ),
            Some(tool) => match tool.check(&args) {
                Err(problems) => (
                    ToolOutcome::InvalidArguments,
                    format!(
                        "The arguments do not match the tool's schema: {}. Correct them and \
                         call the tool again.",
                        problems
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                ),
                Ok(()) if tool.spec().needs_confirmation => {
                    held = true;
                    (
                        ToolOutcome::AwaitingConfirmation,
                        "Waiting for the customer to confirm.".into(),
                    )
                }
                Ok(()) => (ToolOutcome::Running, String::new()),
            },
        };
        let id = Uuid::new_v4();
        let stored = crate::tools::redact_arguments(&args, &secrets);
        // The originals of redacted arguments, for a resumed or confirmed run of this call.
        let sealed_arguments = (stored != args)
            .then(|| {
                turn.deps
                    .keyring
                    .seal(
                        turn.d.message.tenant_id,
                        &store_tools::arguments_slot(id),
                        &args.to_string(),
                    )
                    .ok()
                    .map(|(sealed, _)| sealed)
            })
            .flatten();
        rows.push(CallRow {
            id,
            conversation_id: turn.conversation,
            event_id: turn.event().to_string(),
            agent_id: turn.d.message.agent_id,
            end_user_id: Some(turn.end_user),
            step,
            position: i16::try_from(position).unwrap_or(i16::MAX),
            call_id: if call_id.is_empty() {
                format!("call_{step}_{position}")
            } else {
                call_id.chars().take(200).collect()
            },
            tool_id: tool.map(|t| t.spec().id.clone()),
            name: name.chars().take(200).collect(),
            arguments: stored,
            sealed_arguments,
            step_text: if position == 0 {
                step_text.chars().take(20_000).collect()
            } else {
                String::new()
            },
            outcome: outcome.as_str().into(),
            result,
            passages: None,
            duration_ms: None,
            created_at: chrono::Utc::now(),
            confirmed_event: None,
        });
        arguments.push(args);
    }
    (rows, arguments)
}

/// Records a step's proposed calls with the LLM call that proposed them (its usage and
/// `llm.call`), and audits the calls that will not run.
async fn record_step(
    turn: &Turn<'_>,
    rows: &[CallRow],
    report: &CallReport,
    hold: &Hold,
) -> Result<(), TurnError> {
    let m = &turn.d.message;
    let mut tx = reply::fenced_tx(turn.deps, turn.d).await?;
    let cost = metering::add_usage_in(
        &mut tx,
        m.agent_id,
        Some(m.channel.as_str()),
        report,
        turn.deps.settings.clock.now(),
        super::usage_slot(m),
    )
    .await?;
    store_tools::record_step(&mut tx, rows).await?;
    let crossings = budget::settle_in(&mut tx, hold, report).await?;
    audit::append(&mut tx, &metering::call_event(m.agent_id, report, cost)).await?;
    for event in &crossings {
        audit::append(&mut tx, event).await?;
    }
    for row in rows {
        let outcome = row.outcome();
        if !matches!(
            outcome,
            ToolOutcome::Running | ToolOutcome::AwaitingConfirmation
        ) {
            audit::append(&mut tx, &call_event(turn, row, outcome, 0)).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Runs one call and records its result (and its audit event) before it is used.
async fn execute(
    turn: &Turn<'_>,
    row: &CallRow,
    tool: &Registered,
    arguments: Value,
    remaining: Duration,
    sources_before: usize,
) -> Result<CallRow, TurnError> {
    let cx = turn.context(row.id, sources_before);
    let mut secrets = turn.toolbox.secrets();
    secrets.extend(crate::tools::credential_values(&arguments));
    let started = Instant::now();
    let result = if remaining.is_zero() {
        Err(crate::tools::Failure {
            outcome: ToolOutcome::Timeout,
            message: "The turn ran out of time before the tool could run.".into(),
            status: None,
        })
    } else {
        tool.run(&cx, arguments, remaining).await
    };
    let duration = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
    let (outcome, content, passages) = match result {
        Ok(out) => {
            let passages = (!out.passages.is_empty())
                .then(|| serde_json::to_value(&out.passages).ok())
                .flatten();
            (ToolOutcome::Ok, out.content, passages)
        }
        Err(failure) => (failure.outcome, failure.message, None),
    };
    let content: String = crate::tools::redact(&content, &secrets)
        .chars()
        .take(300_000)
        .collect();
    let done = finish_row(turn, row, outcome, content, passages, duration).await?;
    failpoint::hit(failpoint::AFTER_TOOL).await;
    Ok(done)
}

/// Records a call's result; when another run recorded one first, that one is what counts.
async fn finish_row(
    turn: &Turn<'_>,
    row: &CallRow,
    outcome: ToolOutcome,
    result: String,
    passages: Option<Value>,
    duration_ms: i32,
) -> Result<CallRow, TurnError> {
    let mut tx = reply::fenced_tx(turn.deps, turn.d).await?;
    let first = store_tools::finish(
        &mut tx,
        row.id,
        outcome,
        &result,
        passages.as_ref(),
        duration_ms,
    )
    .await?;
    if !first {
        let recorded = store_tools::for_event(&mut tx, &row.event_id)
            .await?
            .into_iter()
            .find(|r| r.id == row.id);
        tx.commit().await?;
        return Ok(recorded.unwrap_or_else(|| row.clone()));
    }
    audit::append(&mut tx, &call_event(turn, row, outcome, duration_ms)).await?;
    tx.commit().await?;
    Ok(CallRow {
        outcome: outcome.as_str().into(),
        result,
        passages,
        duration_ms: Some(duration_ms),
        ..row.clone()
    })
}

/// `tool.called`: which tool, how it ended, how long, for which agent and call — never its
/// arguments or result.
fn call_event(turn: &Turn<'_>, row: &CallRow, outcome: ToolOutcome, duration_ms: i32) -> NewEvent {
    NewEvent::about(
        Actor::System,
        Action::ToolCalled,
        Target::Conversation(turn.conversation),
        serde_json::json!({
            "tool": row.tool_id.as_deref().unwrap_or("unknown"),
            "outcome": outcome.as_str(),
            "duration_ms": duration_ms,
            "agent_id": turn.d.message.agent_id,
            "call": row.id,
            "step": row.step,
        }),
    )
}

/// Adds a step to the conversation the model sees: its calls, then their results.
fn push_step(messages: &mut Vec<Message>, rows: &[CallRow]) {
    let mut calls = Vec::with_capacity(rows.len() + 1);
    if let Some(text) = rows
        .first()
        .map(|r| r.step_text.trim())
        .filter(|t| !t.is_empty())
    {
        calls.push(Part::Text(text.to_string()));
    }
    for r in rows {
        calls.push(Part::ToolCall {
            id: r.call_id.clone(),
            name: r.name.clone(),
            arguments: r.arguments.clone(),
        });
    }
    messages.push(Message {
        role: Role::Assistant,
        parts: calls,
    });
    messages.push(Message {
        role: Role::Tool,
        parts: rows
            .iter()
            .map(|r| Part::ToolResult {
                call_id: r.call_id.clone(),
                content: if r.result.is_empty() {
                    "(no content)".into()
                } else if r.result.chars().count() > MAX_RESULT_CHARS {
                    let cut: String = r.result.chars().take(MAX_RESULT_CHARS).collect();
                    format!("{cut}\n[the rest of this result was cut]")
                } else {
                    r.result.clone()
                },
                is_error: r.outcome() != ToolOutcome::Ok,
            })
            .collect(),
    });
}

/// Takes the passages a search found into the turn's sources, numbered after those before,
/// and shows them to the model under those numbers.
fn number_passages(row: &mut CallRow, passages: &mut Vec<Passage>, sources_before: usize) {
    let Some(found) = row
        .passages
        .as_ref()
        .and_then(|v| serde_json::from_value::<Vec<Passage>>(v.clone()).ok())
        .filter(|found| !found.is_empty())
    else {
        return;
    };
    row.result = crate::tools::builtin::render_passages(sources_before + passages.len(), &found);
    passages.extend(found);
}

/// What the customer is asked before a call that needs their yes.
fn confirmation_question(turn: &Turn<'_>, row: &CallRow) -> String {
    let what = turn
        .toolbox
        .get(&row.name)
        .map_or(row.name.clone(), |t| t.spec().description.clone());
    let details = match &row.arguments {
        Value::Object(map) if !map.is_empty() => format!(
            " ({})",
            map.iter()
                .map(|(k, v)| format!(
                    "{k}: {}",
                    match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    }
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => String::new(),
    };
    format!(
        "Before I go ahead: {}{details}. Reply YES to confirm, or anything else to cancel.",
        what.trim_end_matches('.')
    )
}

/// Audits that the loop stopped, and says so.
async fn stopped(
    turn: &Turn<'_>,
    stop: Stop,
    passages: Vec<Passage>,
) -> Result<Finished, TurnError> {
    let mut tx = reply::fenced_tx(turn.deps, turn.d).await?;
    audit::append(
        &mut tx,
        &NewEvent::about(
            Actor::System,
            Action::ToolLoopStopped,
            Target::Conversation(turn.conversation),
            serde_json::json!({
                "reason": stop.as_str(),
                "agent_id": turn.d.message.agent_id,
                "in_reply_to": turn.event(),
            }),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(Finished {
        ending: Ending::Stopped(stop),
        passages,
        hold: Hold::default(),
    })
}

/// How long a turn waits for other calls in flight to settle when they hold the rest of a
/// budget (at most half the turn's remaining time): holds are worst cases, and most calls
/// settle well below theirs.
const BUDGET_WAIT: Duration = Duration::from_secs(20);

/// Asks the tenant's budgets to admit the next LLM call of the turn.
async fn admit(
    turn: &Turn<'_>,
    request: &ChatRequest,
    remaining: Duration,
) -> Result<Gate, TurnError> {
    if turn.config.budgets.is_empty() {
        return Ok(Gate::Call {
            hold: Hold::default(),
            downgrade: None,
        });
    }
    let ask = budget::Ask {
        tenant: turn.d.message.tenant_id,
        agent: turn.d.message.agent_id,
        budgets: &turn.config.budgets,
        zone: &turn.config.zone,
        worst_case: budget::worst_case_on(&turn.deps.pool, request),
        now: turn.deps.settings.clock.now(),
        // A crashed turn's hold outlives the turn's deadline by a minute, then lapses.
        hold_for: remaining + Duration::from_secs(60),
        wait: (remaining / 2).min(BUDGET_WAIT),
    };
    Ok(budget::admit(&turn.deps.store, &ask).await?)
}

/// Lets go of a failed call's hold; if that fails too, the hold lapses at its expiry.
async fn release(turn: &Turn<'_>, hold: &Hold) {
    if let Err(e) = budget::release(&turn.deps.store, turn.d.message.tenant_id, hold).await {
        tracing::warn!(tenant.id = %turn.d.message.tenant_id, error = %e, "could not release a budget hold; it lapses at its expiry");
    }
}

async fn note_key_failures(turn: &Turn<'_>, answer: &Result<CallReport, PoolError>) {
    let refused = answer
        .as_ref()
        .map_or_else(PoolError::key_failures, |r| r.key_failures.as_slice());
    if let Err(e) =
        metering::record_key_failures(&turn.deps.store, turn.d.message.tenant_id, refused).await
    {
        tracing::error!(tenant.id = %turn.d.message.tenant_id, error = %e, "could not record a refused LLM key");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_yes_is_the_first_word_of_the_reply() {
        for yes in [
            "yes",
            "Yes, please",
            "ok!",
            "Sí",
            "confirm",
            "go ahead and do it",
            "y",
        ] {
            assert!(confirms(yes), "{yes:?}");
        }
        for no in [
            "no",
            "not yet",
            "what?",
            "",
            "yesterday I asked",
            "cancel it",
        ] {
            assert!(!confirms(no), "{no:?}");
        }
    }
}
