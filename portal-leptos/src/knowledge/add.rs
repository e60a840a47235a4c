//! Adding to the knowledge base: uploading files (several at once, sent one after another, each
//! with its progress and its own error) and importing a public web page by its address.

use std::collections::VecDeque;

use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::TenantId;
use shared::knowledge::{Document, UrlImport};
use wasm_bindgen::JsCast;

use super::{MAX_UPLOAD_BYTES, size_label};
use crate::api::{self, ApiError, HttpMethod};
use crate::app::use_session;

/// The types the server reads, for the file picker (it reads the type from the content, so this
/// only narrows what the picker offers).
const ACCEPT: &str =
    ".md,.markdown,.txt,.text,.html,.htm,.pdf,text/markdown,text/plain,text/html,application/pdf";

/// Where one picked file stands.
#[derive(Clone, PartialEq)]
enum UploadState {
    Waiting,
    /// Bytes sent, of how many.
    Sending(f64, f64),
    /// Taken: the server indexes it now.
    Done,
    Failed(String),
}

/// A picked file in the uploads list.
#[derive(Clone)]
struct Item {
    key: u32,
    name: String,
    size: f64,
    state: RwSignal<UploadState>,
}

/// The file picker and the list of its uploads.
#[component]
pub(super) fn Upload(on_added: Callback<()>) -> impl IntoView {
    let session = use_session();
    let items = RwSignal::new(Vec::<Item>::new());
    // The files still to send, in the order they were picked, with the tenant they were picked
    // for. Browser objects, so kept off the reactive graph's thread-safe storage.
    let pending = StoredValue::new_local(VecDeque::<(u32, TenantId, web_sys::File)>::new());
    let running = StoredValue::new(false);
    let next_key = StoredValue::new(0u32);
    // Another tenant: what was picked for the last one is not sent.
    Effect::new(move |_| {
        session.tenant.track();
        pending.update_value(VecDeque::clear);
        items.set(Vec::new());
    });

    // Sends the queue, one file after another, until it is empty. One sender at a time.
    let pump = move || {
        if running.get_value() {
            return;
        }
        running.set_value(true);
        spawn_local(async move {
            while let Some((key, tenant, file)) =
                pending.try_update_value(VecDeque::pop_front).flatten()
            {
                let Some(state) = items
                    .try_get_untracked()
                    .and_then(|list| list.into_iter().find(|i| i.key == key))
                    .map(|i| i.state)
                else {
                    continue;
                };
                let outcome = send(tenant, &file, state).await;
                match outcome {
                    Ok(_) => {
                        let _ = state.try_set(UploadState::Done);
                        let _ = on_added.try_run(());
                    }
                    Err(e) => {
                        session.handle(&e);
                        let _ = state.try_set(UploadState::Failed(upload_error(&e)));
                    }
                }
            }
            let _ = running.try_set_value(false);
        });
    };

    let picked = move |ev: leptos::ev::Event| {
        let Some(input) = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
        else {
            return;
        };
        let Some((tenant, _)) = session.tenant.get_untracked() else {
            return;
        };
        let Some(files) = input.files() else {
            return;
        };
        for i in 0..files.length() {
            let Some(file) = files.get(i) else {
                continue;
            };
            next_key.update_value(|k| *k = k.wrapping_add(1));
            let key = next_key.get_value();
            let size = file.size();
            let state = RwSignal::new(if size > MAX_UPLOAD_BYTES {
                UploadState::Failed(format!(
                    "Too large: {} — the most Konstruct takes is 20 MB. Split it into smaller files.",
                    size_label(size as u64)
                ))
            } else {
                UploadState::Waiting
            });
            items.update(|list| {
                list.push(Item {
                    key,
                    name: file.name(),
                    size,
                    state,
                })
            });
            if size <= MAX_UPLOAD_BYTES {
                pending.update_value(|q| q.push_back((key, tenant, file)));
            }
        }
        // Picking the same file again later starts another upload.
        input.set_value("");
        pump();
    };
    let finished = move || {
        items
            .get()
            .iter()
            .any(|i| matches!(i.state.get(), UploadState::Done | UploadState::Failed(_)))
    };
    let clear = move |_| {
        items.update(|list| {
            list.retain(|i| {
                !matches!(
                    i.state.get_untracked(),
                    UploadState::Done | UploadState::Failed(_)
                )
            })
        })
    };

    view! {
        <section class="card connect" aria-labelledby="knowledge-upload">
            <h2 id="knowledge-upload">"Upload files"</h2>
            <div class="field">
                <label for="knowledge-files">"Files to upload"</label>
                <input id="knowledge-files" type="file" multiple accept=ACCEPT on:change=picked
                    aria-describedby="knowledge-files-hint" />
                <span id="knowledge-files-hint" class="hint">"Markdown, plain text, HTML or PDF, up to 20 MB each. Pick several at once: they are sent one after another."</span>
            </div>
            <Show when=move || !items.get().is_empty()>
                <ul class="uploads" aria-label="Uploads" aria-live="polite">
                    {move || items.get().into_iter().map(|item| view! { <UploadRow item=item /> }).collect_view()}
                </ul>
                <Show when=finished>
                    <button type="button" class="link clear-uploads" on:click=clear>"Clear finished uploads"</button>
                </Show>
            </Show>
        </section>
    }
}

/// Sends one file, moving its progress as the bytes go.
async fn send(
    tenant: TenantId,
    file: &web_sys::File,
    state: RwSignal<UploadState>,
) -> Result<Document, ApiError> {
    let path = format!(
        "/api/tenants/{tenant}/knowledge?filename={}",
        js_sys::encode_uri_component(&file.name())
    );
    let _ = state.try_set(UploadState::Sending(0.0, file.size()));
    api::upload::<Document>(&path, file, move |sent, total| {
        let _ = state.try_set(UploadState::Sending(sent, total));
    })
    .await
    .map(|(_, d)| d)
}

/// Why a file was refused, led by what it means for the file (the server's own words follow).
fn upload_error(e: &ApiError) -> String {
    let lead = match e.status {
        413 => "Too large.",
        415 | 422 => "Not a file Konstruct can read.",
        429 => "Not now.",
        _ => "Not uploaded.",
    };
    let fields: Vec<String> = e
        .body
        .fields
        .iter()
        .filter_map(|f| e.field(&f.field))
        .collect();
    if fields.is_empty() {
        format!("{lead} {}", e.message())
    } else {
        format!("{lead} {}", fields.join(" "))
    }
}

#[component]
fn UploadRow(item: Item) -> impl IntoView {
    let state = item.state;
    let name = item.name.clone();
    view! {
        <li class="upload">
            <div class="upload-head">
                <span class="strong">{item.name.clone()}</span>
                <span class="hint">{size_label(item.size as u64)}</span>
            </div>
            {move || match state.get() {
                UploadState::Waiting => view! { <span class="hint">"Waiting for the files before it"</span> }.into_any(),
                UploadState::Sending(sent, total) => {
                    let percent = if total > 0.0 { (sent / total * 100.0).round() } else { 0.0 };
                    view! {
                        <div class="upload-progress">
                            <progress max="100" value=percent.to_string() aria-label=format!("Uploading {name}")></progress>
                            <span class="hint">{format!("Uploading… {percent}%")}</span>
                        </div>
                    }.into_any()
                }
                UploadState::Done => view! { <span><span class="badge ok">"Uploaded"</span>" Indexing has started: follow it in the list below."</span> }.into_any(),
                UploadState::Failed(m) => view! { <span class="field-error" role="alert">{m}</span> }.into_any(),
            }}
        </li>
    }
}

/// Importing a public web page: Konstruct fetches it, and again on a retry.
#[component]
pub(super) fn ImportUrl(on_added: Callback<()>) -> impl IntoView {
    let session = use_session();
    let url = RwSignal::new(String::new());
    let title = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ApiError>);
    let busy = RwSignal::new(false);
    // Another tenant: nothing typed for the last one is kept.
    Effect::new(move |_| {
        session.tenant.track();
        url.set(String::new());
        title.set(String::new());
        error.set(None);
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some((tenant, _)) = session.tenant.get_untracked() else {
            return;
        };
        if busy.get_untracked() {
            return;
        }
        let address = url.get_untracked().trim().to_string();
        if address.is_empty() {
            error.set(Some(ApiError::local_field(
                "url",
                "enter the page's address, starting with https://",
            )));
            return;
        }
        let body = UrlImport {
            url: address,
            title: title.get_untracked().trim().to_string(),
            agent_ids: None,
        };
        busy.set(true);
        spawn_local(async move {
            match api::send::<_, Document>(
                HttpMethod::POST,
                &format!("/api/tenants/{tenant}/knowledge/import"),
                &body,
            )
            .await
            {
                Ok(d) => {
                    error.set(None);
                    url.set(String::new());
                    title.set(String::new());
                    session.show_toast(format!(
                        "Importing {}: follow it in the list below.",
                        d.url.unwrap_or(d.title)
                    ));
                    let _ = on_added.try_run(());
                }
                Err(e) => {
                    session.handle(&e);
                    error.set(Some(e));
                }
            }
            let _ = busy.try_set(false);
        });
    };
    let message = move |field: &'static str| move || error.get().and_then(|e| e.field(field));
    let (url_msg, title_msg) = (message("url"), message("title"));
    view! {
        <form class="card connect" on:submit=submit aria-label="Import a web page">
            <h2>"Import a web page"</h2>
            <div class="field">
                <label for="knowledge-url">"Web address"</label>
                <input id="knowledge-url" type="url" inputmode="url" placeholder="https://example.com/help/refunds" autocomplete="off" spellcheck="false"
                    prop:value=move || url.get() on:input=move |ev| url.set(event_target_value(&ev))
                    aria-describedby="knowledge-url-hint knowledge-url-error"
                    aria-invalid=move || url_msg().is_some().to_string() />
                <span id="knowledge-url-hint" class="hint">"A public page (not one behind a sign-in, nor an address inside your network). Konstruct fetches it once; Retry fetches it again."</span>
                <span id="knowledge-url-error" class="field-error" role="alert">{url_msg}</span>
            </div>
            <div class="field">
                <label for="knowledge-url-title">"Title (optional)"</label>
                <input id="knowledge-url-title" autocomplete="off"
                    prop:value=move || title.get() on:input=move |ev| title.set(event_target_value(&ev))
                    aria-describedby="knowledge-url-title-hint knowledge-url-title-error"
                    aria-invalid=move || title_msg().is_some().to_string() />
                <span id="knowledge-url-title-hint" class="hint">"Shown in the replies that cite it; the page's own title when empty."</span>
                <span id="knowledge-url-title-error" class="field-error" role="alert">{title_msg}</span>
            </div>
            {move || error.get().map(|e| form_error(&e))}
            <div class="form-actions">
                <button type="submit" disabled=move || busy.get()>{move || if busy.get() { "Importing…" } else { "Import" }}</button>
            </div>
        </form>
    }
}

/// The banner over the import button: the server's refusal, or with field errors, a pointer to
/// them (and any field the form does not show).
fn form_error(e: &ApiError) -> impl IntoView + use<> {
    if e.body.fields.is_empty() {
        view! { <div class="error" role="alert"><strong>"Not imported."</strong>" "{e.message()}</div> }.into_any()
    } else {
        let others: Vec<String> = e
            .body
            .fields
            .iter()
            .filter(|f| f.field != "url" && f.field != "title")
            .map(|f| format!("{}: {}", f.field, f.message))
            .collect();
        view! { <p class="error" role="alert">"Please correct the marked fields." {others.into_iter().map(|o| view! { " " {o} }).collect_view()}</p> }.into_any()
    }
}
