//! The audit trail: whether the tenant's trail is intact (or where its first broken link is and
//! why, or that it has an unsealed tail), its events with filters and a CSV download (`events`),
//! its head to export and keep outside Konstruct (JSON to copy, or a download), and a check of
//! the trail against a head exported earlier — the one way to notice that the newest rows were
//! dropped. Everything here reads; operators see the same page.

use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::Deserialize;
use shared::TenantId;
use shared::audit::{AuditHead, AuditVerdict, AuditVerification};

use crate::api::{self, ApiError};
use crate::app::use_session;

mod events;

/// What an exported head must hold to verify against it; other fields (`exported_at`, …) may be
/// there too.
#[derive(Debug, Deserialize)]
struct PastedHead {
    seq: i64,
    hash: String,
}

fn verify_path(tenant: TenantId, against: Option<&PastedHead>) -> String {
    match against {
        None => format!("/api/tenants/{tenant}/audit/verify"),
        Some(h) => format!(
            "/api/tenants/{tenant}/audit/verify?seq={}&hash={}",
            h.seq,
            js_sys::encode_uri_component(h.hash.trim())
        ),
    }
}

#[component]
pub fn AuditTrail() -> impl IntoView {
    let session = use_session();
    let version = RwSignal::new(0u32);
    let report = LocalResource::new(move || {
        let (tenant, _) = (session.tenant.get(), version.get());
        async move {
            match tenant {
                Some((id, _)) => api::get::<AuditVerification>(&verify_path(id, None))
                    .await
                    .map(Some),
                None => Ok(None),
            }
        }
    });
    view! {
        <header class="page-head">
            <h1>"Audit trail"</h1>
            <p class="muted">"Every change and every unusual event is recorded in a hash chain sealed with a key the database never holds. Export the head now and then, and keep it somewhere else: it is how you would notice that the newest records were removed."</p>
        </header>
        {move || match report.get() {
            None => view! { <p class="loading" role="status">"Verifying the audit trail…"</p> }.into_any(),
            Some(Err(e)) => { session.handle(&e); view! { <p class="error" role="alert">{e.message()}</p> }.into_any() }
            Some(Ok(None)) => view! { <p class="empty">"Pick a tenant in the menu to verify its audit trail."</p> }.into_any(),
            Some(Ok(Some(r))) => view! {
                <section class="card audit-result" aria-label="Verification">
                    <Verdict report=r />
                    <button on:click=move |_| version.update(|v| *v += 1)>"Verify chain"</button>
                </section>
            }.into_any(),
        }}
        // Made anew when the tenant in focus changes, so no other tenant's head lingers.
        {move || session.tenant.get().map(|(tenant, _)| view! { <events::AuditEvents tenant /> <ExportHead /> <VerifyAgainst /> })}
    }
}

/// The report in words: intact, broken at seq N and why, an unsealed tail, or rows missing.
#[component]
fn Verdict(report: AuditVerification) -> impl IntoView {
    let (class, title) = match report.verdict {
        AuditVerdict::Intact => ("badge ok", "Intact".to_string()),
        AuditVerdict::Broken => (
            "badge bad",
            match report.first_bad_seq {
                Some(seq) => format!("Broken at record {seq}"),
                None => "Broken".to_string(),
            },
        ),
        AuditVerdict::Unsealed => ("badge warn", "Unsealed records".to_string()),
        AuditVerdict::Truncated => ("badge bad", "Newest records missing".to_string()),
    };
    let summary = match report.verdict {
        AuditVerdict::Intact => format!(
            "All {} records are intact and sealed through record {}.",
            report.rows_checked, report.sealed_through
        ),
        AuditVerdict::Unsealed => format!(
            "Records up to {} are sealed and intact; the ones after it carry no seal, so nothing vouches that they were not changed.",
            report.sealed_through
        ),
        AuditVerdict::Broken => match report.first_bad_seq {
            Some(seq) => format!(
                "The first broken link is record {seq}: the {} records before it check, but it and every record after it can no longer be trusted.",
                report.rows_checked
            ),
            None => format!(
                "{} records check; sealed through record {}.",
                report.rows_checked, report.sealed_through
            ),
        },
        AuditVerdict::Truncated => format!(
            "{} records check and are sealed through record {}, but the trail ends before the head you exported.",
            report.rows_checked, report.sealed_through
        ),
    };
    let exported = report.exported_head.clone();
    view! {
        <div class="verdict" role="status">
            <span class=class>{title}</span>
            <p>{summary}</p>
            {report.problem.clone().map(|p| view! { <p class="problem"><strong>"Why: "</strong>{p}</p> })}
            {exported.map(|e| view! {
                <p class=if e.contained { "muted" } else { "problem" }>
                    {if e.contained {
                        format!("The head you exported (record {}) is still in the trail, unchanged.", e.seq)
                    } else {
                        format!("The head you exported (record {}) is no longer in the trail.", e.seq)
                    }}
                </p>
            })}
            <dl class="pairs">
                <dt>"Newest record"</dt><dd>{report.head.seq}</dd>
                <dt>"Its hash"</dt><dd><code class="hash">{report.head.hash.clone()}</code></dd>
            </dl>
        </div>
    }
}

/// Fetches the current head and shows it as JSON to copy, with a download link.
#[component]
fn ExportHead() -> impl IntoView {
    let session = use_session();
    let head = RwSignal::new(None::<AuditHead>);
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let copied = RwSignal::new(false);
    let export = move |_| {
        let Some((tenant, _)) = session.tenant.get_untracked() else {
            return;
        };
        busy.set(true);
        copied.set(false);
        spawn_local(async move {
            match api::get::<AuditHead>(&format!("/api/tenants/{tenant}/audit/head")).await {
                Ok(h) => {
                    head.set(Some(h));
                    error.set(None);
                }
                Err(e) => {
                    session.handle(&e);
                    error.set(Some(e.message()));
                }
            }
            busy.set(false);
        });
    };
    let json = move || {
        head.get()
            .and_then(|h| serde_json::to_string_pretty(&h).ok())
            .unwrap_or_default()
    };
    let download = move || {
        format!(
            "data:application/json;charset=utf-8,{}",
            js_sys::encode_uri_component(&json())
        )
    };
    let file_name = move || {
        head.get()
            .map(|h| format!("audit-head-record-{}.json", h.seq))
            .unwrap_or_default()
    };
    let copy = move |_| {
        copied.set(copy_to_clipboard(&json()));
    };
    view! {
        <section class="card audit-export" aria-label="Export the head">
            <h2>"Export the head"</h2>
            <p class="muted">"The newest record's number and hash. Store it outside Konstruct (a ticket, a wiki, an e-mail to yourself); paste it below later to check that nothing was removed since."</p>
            <button on:click=export disabled=move || busy.get()>{move || if busy.get() { "Exporting…" } else { "Export head" }}</button>
            {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
            <Show when=move || head.get().is_some()>
                <div class="field">
                    <label for="audit-exported">"Exported head (JSON)"</label>
                    <textarea id="audit-exported" class="json" readonly rows="8" prop:value=json></textarea>
                </div>
                <div class="form-actions">
                    <button class="secondary" on:click=copy>"Copy"</button>
                    <a class="button secondary" href=download download=file_name>"Download"</a>
                    <Show when=move || copied.get()>
                        <span class="muted" role="status">"Copied."</span>
                    </Show>
                </div>
                <Show when=move || head.get().is_some_and(|h| h.sealed_through < h.seq)>
                    <p class="readonly-note" role="note">"The newest record is not sealed yet, or its seal does not check. Verify the trail before you rely on this head."</p>
                </Show>
            </Show>
        </section>
    }
}

/// Copies `text` with the asynchronous clipboard API, when the browser offers it.
fn copy_to_clipboard(text: &str) -> bool {
    let navigator = js_sys::Reflect::get(&js_sys::global(), &"navigator".into()).ok();
    let clipboard = navigator.and_then(|n| js_sys::Reflect::get(&n, &"clipboard".into()).ok());
    let Some(clipboard) = clipboard.filter(|c| !c.is_undefined()) else {
        return false;
    };
    let write = js_sys::Reflect::get(&clipboard, &"writeText".into())
        .ok()
        .and_then(|f| wasm_bindgen::JsCast::dyn_into::<js_sys::Function>(f).ok());
    write.is_some_and(|f| f.call1(&clipboard, &text.into()).is_ok())
}

/// Paste an exported head; the trail is verified against it.
#[component]
fn VerifyAgainst() -> impl IntoView {
    let session = use_session();
    let pasted = RwSignal::new(String::new());
    let parse_error = RwSignal::new(None::<String>);
    let error = RwSignal::new(None::<ApiError>);
    let result = RwSignal::new(None::<AuditVerification>);
    let busy = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some((tenant, _)) = session.tenant.get_untracked() else {
            return;
        };
        result.set(None);
        error.set(None);
        let head = match serde_json::from_str::<PastedHead>(pasted.get_untracked().trim()) {
            Ok(h) => h,
            Err(e) => {
                parse_error.set(Some(format!(
                    "This is not an exported head: paste the JSON from “Export head” ({e})."
                )));
                return;
            }
        };
        parse_error.set(None);
        busy.set(true);
        spawn_local(async move {
            match api::get::<AuditVerification>(&verify_path(tenant, Some(&head))).await {
                Ok(r) => result.set(Some(r)),
                Err(e) => {
                    session.handle(&e);
                    error.set(Some(e));
                }
            }
            busy.set(false);
        });
    };
    let field = move |f: &'static str| move || error.get().and_then(|e| e.field(f));
    view! {
        <form class="card audit-against" on:submit=submit aria-label="Verify against an exported head">
            <h2>"Verify against an exported head"</h2>
            <div class="field">
                <label for="audit-pasted">"Exported head"</label>
                <textarea id="audit-pasted" class="json" rows="6" placeholder="{\"seq\": 42, \"hash\": \"…\"}"
                    aria-invalid=move || (parse_error.get().is_some() || error.get().is_some_and(|e| !e.body.fields.is_empty())).to_string()
                    prop:value=move || pasted.get()
                    on:input=move |ev| pasted.set(event_target_value(&ev))></textarea>
                {move || parse_error.get().map(|m| view! { <span class="field-error">{m}</span> })}
                {move || field("seq")().map(|m| view! { <span class="field-error">{format!("Record number (seq): {m}")}</span> })}
                {move || field("hash")().map(|m| view! { <span class="field-error">{format!("Hash: {m}")}</span> })}
            </div>
            <div class="form-actions">
                <button type="submit" disabled=move || busy.get() || pasted.get().trim().is_empty()>
                    {move || if busy.get() { "Verifying…" } else { "Verify against this head" }}
                </button>
            </div>
            {move || error.get().filter(|e| e.body.fields.is_empty()).map(|e| view! { <p class="error" role="alert">{e.message()}</p> })}
            {move || result.get().map(|r| view! { <Verdict report=r /> })}
        </form>
    }
}
