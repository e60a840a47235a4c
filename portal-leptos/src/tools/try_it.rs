//! "Try it": runs a saved HTTP tool with sample arguments, checked against its schema first, and
//! shows what came back — the outcome, the HTTP status, how long it took and what the AI
//! employee would see.

use leptos::prelude::*;
use leptos::task::spawn_local;
use serde_json::Value;
use shared::tools::{ToolTest, ToolTestResult};
use uuid::Uuid;

use super::{duration_label, focus, json_error, json_messages, outcome_badge, outcome_pill};
use crate::api::{self, ApiError, HttpMethod};
use crate::app::use_session;

#[component]
pub(super) fn TryIt(
    tool_id: Uuid,
    /// The saved tool's schema, to start the arguments from.
    parameters: Value,
    /// Told after each run (the run may be among the tool's calls).
    on_ran: Callback<()>,
) -> impl IntoView {
    let session = use_session();
    let arguments = RwSignal::new(sample_arguments(&parameters));
    let result = RwSignal::new(None::<ToolTestResult>);
    let error = RwSignal::new(None::<ApiError>);
    let busy = RwSignal::new(false);

    let run = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some((tenant, _)) = session.tenant.get_untracked() else {
            return;
        };
        if busy.get_untracked() {
            return;
        }
        let arguments = match serde_json::from_str::<Value>(arguments.get_untracked().trim()) {
            Ok(v) => v,
            Err(e) => {
                result.set(None);
                error.set(Some(ApiError::local_field("arguments", &json_error(&e))));
                focus("tool-test-arguments");
                return;
            }
        };
        error.set(None);
        result.set(None);
        busy.set(true);
        spawn_local(async move {
            match api::send::<_, ToolTestResult>(
                HttpMethod::POST,
                &format!("/api/tenants/{tenant}/tools/{tool_id}/test"),
                &ToolTest { arguments },
            )
            .await
            {
                Ok(r) => {
                    let _ = result.try_set(Some(r));
                    let _ = on_ran.try_run(());
                }
                Err(e) => {
                    session.handle(&e);
                    let _ = error.try_set(Some(e));
                }
            }
            let _ = busy.try_set(false);
        });
    };
    let arguments_msgs = move || {
        error
            .get()
            .map(|e| json_messages(&e, "arguments"))
            .unwrap_or_default()
    };
    // What the server said that is not about the arguments (the tool is gone, not allowed…).
    let other_error = move || {
        error
            .get()
            .filter(|e| json_messages(e, "arguments").is_empty())
            .map(|e| e.message())
    };
    let summary = move || {
        if busy.get() {
            return "Running the tool…".to_string();
        }
        match result.get() {
            Some(r) => {
                let status = r
                    .status
                    .map_or_else(|| "no HTTP answer".to_string(), |s| format!("HTTP {s}"));
                format!(
                    "Ran: {}, {status}, in {}.",
                    outcome_pill(r.outcome).1,
                    duration_label(Some(r.duration_ms))
                )
            }
            None => String::new(),
        }
    };

    view! {
        <section class="card guide" aria-labelledby="tool-try">
            <h2 id="tool-try">"Try it"</h2>
            <p class="muted">"Runs the saved tool with these arguments, as an AI employee would call it: for real, against your server. Save your changes first."</p>
            <form class="try-it" on:submit=run aria-label="Try the tool" aria-busy=move || busy.get().to_string()>
                <div class="field long">
                    <label for="tool-test-arguments">"Arguments (JSON)"</label>
                    <textarea id="tool-test-arguments" class="json" rows="5" spellcheck="false"
                        prop:value=move || arguments.get()
                        on:input=move |ev| arguments.set(event_target_value(&ev))
                        aria-describedby="tool-test-arguments-error"
                        aria-invalid=move || (!arguments_msgs().is_empty()).to_string()></textarea>
                    <span id="tool-test-arguments-error" class="field-error" role="alert">
                        {move || arguments_msgs().into_iter().map(|m| view! { <span class="error-line">{m}</span> }).collect_view()}
                    </span>
                </div>
                <div class="form-actions">
                    <button type="submit" disabled=move || busy.get()>
                        {move || busy.get().then(|| view! { <span class="spinner" aria-hidden="true"></span> })}
                        {move || if busy.get() { "Running…" } else { "Run" }}
                    </button>
                    <span class="muted" role="status">{summary}</span>
                </div>
            </form>
            {move || other_error().map(|m| view! { <p class="error" role="alert">{m}</p> })}
            {move || result.get().map(|r| view! {
                <div class="detail-box test-result" role="region" aria-label="Test result">
                    <dl class="pairs">
                        <dt>"Outcome"</dt><dd>{outcome_badge(r.outcome)}</dd>
                        <dt>"HTTP status"</dt><dd>{r.status.map_or_else(|| "— (no answer)".to_string(), |s| s.to_string())}</dd>
                        <dt>"Duration"</dt><dd>{duration_label(Some(r.duration_ms))}</dd>
                    </dl>
                    <span class="io-title">"What the AI employee would see"</span>
                    <pre class="tool-output">{if r.content.is_empty() { "(nothing)".to_string() } else { r.content }}</pre>
                </div>
            })}
        </section>
    }
}

/// Arguments to start from, by the schema's properties: the first of an `enum`, else an empty
/// value of the property's type.
fn sample_arguments(schema: &Value) -> String {
    let mut sample = serde_json::Map::new();
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, p) in properties {
            let value = match p
                .get("enum")
                .and_then(Value::as_array)
                .and_then(|e| e.first())
            {
                Some(first) => first.clone(),
                None => match p.get("type").and_then(Value::as_str) {
                    Some("string") => Value::String(String::new()),
                    Some("integer" | "number") => Value::from(0),
                    Some("boolean") => Value::Bool(false),
                    Some("array") => Value::Array(Vec::new()),
                    Some("object") => Value::Object(serde_json::Map::new()),
                    _ => Value::Null,
                },
            };
            sample.insert(name.clone(), value);
        }
    }
    super::pretty(&Value::Object(sample))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_arguments_follow_the_schema() {
        let schema = serde_json::json!({
            "type": "object",
            "properties": {
                "order_id": {"type": "string"},
                "count": {"type": "integer"},
                "unit": {"type": "string", "enum": ["kg", "lb"]},
            },
        });
        let sample: Value = serde_json::from_str(&sample_arguments(&schema)).unwrap();
        assert_eq!(
            sample,
            serde_json::json!({"order_id": "", "count": 0, "unit": "kg"})
        );
        assert_eq!(
            sample_arguments(&serde_json::json!({"type": "object"})),
            "{}"
        );
    }
}
