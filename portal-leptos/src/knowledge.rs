//! Knowledge: the documents the tenant's AI employees look things up in and cite — each with its
//! indexing state (followed live while any is being indexed), which AI employees use it, retry,
//! edit and delete — plus uploading files, importing a web page, a preview of what a question
//! retrieves, and the embedding index. Roles without `knowledge_manage` (customer operators) see
//! all of it read-only. This file holds the page and its document list; `add`, `search` and
//! `index` hold the other panels.

mod add;
mod index;
mod search;

use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::AgentId;
use shared::auth::Permission;
use shared::knowledge::{Document, DocumentSource, DocumentStatus, DocumentUpdate};
use shared::resources::Page;
use uuid::Uuid;

use crate::api::{self, ApiError, HttpMethod};
use crate::app::{Pager, use_session};
use crate::customers::when;

/// Documents per page.
const PER_PAGE: u32 = 20;

/// How often the list (and the index, while it is rebuilt) is asked again while something is
/// being indexed.
const POLL_MS: u32 = 2_000;

/// The largest file the server takes (its default `max_document_bytes`): a larger one is refused
/// here, before minutes of uploading end in a 413.
const MAX_UPLOAD_BYTES: f64 = 20.0 * 1024.0 * 1024.0;

/// The tenant's AI employees by id and name, for "Used by" and the pickers.
type AgentNames = Memo<Vec<(AgentId, String)>>;

#[component]
pub fn Knowledge() -> impl IntoView {
    let session = use_session();
    let manage = Signal::derive(move || session.can(Permission::KnowledgeManage));
    let agents = crate::agents::tenant_agents();
    let names: AgentNames = Memo::new(move |_| match agents.get() {
        Some(Ok(Some(list))) => list.into_iter().map(|a| (a.id, a.input.name)).collect(),
        _ => Vec::new(),
    });
    let error = RwSignal::new(None::<String>);
    // Bumped to ask for the list again: after a change, and by the poll.
    let version = RwSignal::new(0u32);
    // Another tenant: no message about the last one.
    Effect::new(move |_| {
        session.tenant.track();
        error.set(None);
    });
    let on_error = Callback::new(move |m| error.set(Some(m)));
    let on_added = Callback::new(move |()| version.update(|v| *v += 1));

    view! {
        <header class="page-head">
            <h1>"Knowledge"</h1>
            <p class="muted">{move || session.tenant.get().map(|t| format!("What {}'s AI employees look up and cite when they answer.", t.1)).unwrap_or_else(|| "Choose a tenant first.".into())}</p>
            <Show when=move || session.tenant.get().is_some() && !manage.get()>
                <p class="readonly-note" role="note">"Read-only: your role can see the documents and try a search, but not add, change or delete documents. A customer admin can."</p>
            </Show>
        </header>
        {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        <Show when=move || session.tenant.get().is_some() fallback=|| view! { <p class="empty">"Pick a tenant in the menu to see its knowledge base."</p> }>
            <Show when=move || manage.get()>
                <div class="grid knowledge-add">
                    <add::Upload on_added=on_added />
                    <add::ImportUrl on_added=on_added />
                </div>
            </Show>
            <Documents names=names manage=manage version=version on_error=on_error />
            <search::Search names=names />
            <index::IndexPanel manage=manage />
        </Show>
    }
}

/// What the list shows, apart from its rows: kept apart so that a poll which only moves a
/// progress bar re-renders that row, not the table (an open editor or confirmation stays).
#[derive(Clone, PartialEq)]
enum Listing {
    Loading,
    Failed(ApiError),
    NoTenant,
    Empty { filtered: bool },
    Rows { total: u64 },
}

/// The row state that outlives a re-render of the row by a poll: which document's editor or
/// delete confirmation is open, and what the editor holds.
#[derive(Clone, Copy)]
struct RowUi {
    editing: RwSignal<Option<Uuid>>,
    draft: RwSignal<Draft>,
    edit_error: RwSignal<Option<ApiError>>,
    confirming: RwSignal<Option<Uuid>>,
}

/// The editor's fields: the title, and the AI employees that use the document.
#[derive(Clone, Default, PartialEq)]
struct Draft {
    title: String,
    all: bool,
    agents: Vec<AgentId>,
}

#[component]
fn Documents(
    names: AgentNames,
    manage: Signal<bool>,
    version: RwSignal<u32>,
    on_error: Callback<String>,
) -> impl IntoView {
    let session = use_session();
    let page = RwSignal::new(1u32);
    let status = RwSignal::new(None::<DocumentStatus>);
    let list = LocalResource::new(move || {
        let (tenant, p, s, _) = (
            session.tenant.get(),
            page.get(),
            status.get(),
            version.get(),
        );
        async move {
            let Some((tenant, _)) = tenant else {
                return Ok(None);
            };
            let filter = s
                .map(|s| format!("&status={}", s.as_str()))
                .unwrap_or_default();
            api::get::<Page<Document>>(&format!(
                "/api/tenants/{tenant}/knowledge?page={p}&per_page={PER_PAGE}{filter}"
            ))
            .await
            .map(Some)
        }
    });
    let refresh = move || version.update(|v| *v += 1);
    // Another tenant: its first page, unfiltered (set only when not so already, which would ask
    // for the list a second time).
    Effect::new(move |_| {
        session.tenant.track();
        if page.get_untracked() != 1 {
            page.set(1);
        }
        if status.get_untracked().is_some() {
            status.set(None);
        }
    });
    // While a document is being indexed, the list is asked again in a while; each answer arms
    // the next ask, and only the latest answer's timer counts, so exactly one poll runs and it
    // stops with the first answer in which nothing is active.
    let poll = StoredValue::new(0u32);
    Effect::new(move |_| {
        let active =
            matches!(list.get(), Some(Ok(Some(p))) if p.items.iter().any(|d| d.status.is_active()));
        poll.update_value(|g| *g = g.wrapping_add(1));
        if !active {
            return;
        }
        let mine = poll.get_value();
        spawn_local(async move {
            TimeoutFuture::new(POLL_MS).await;
            if poll.try_get_value() == Some(mine) {
                let _ = version.try_update(|v| *v += 1);
            }
        });
    });
    let listing = Memo::new(move |_| match list.get() {
        None => Listing::Loading,
        Some(Err(e)) => Listing::Failed(e),
        Some(Ok(None)) => Listing::NoTenant,
        Some(Ok(Some(p))) if p.items.is_empty() => Listing::Empty {
            filtered: status.get_untracked().is_some(),
        },
        Some(Ok(Some(p))) => Listing::Rows { total: p.total },
    });
    let rows = Memo::new(move |_| match list.get() {
        Some(Ok(Some(p))) => p.items,
        _ => Vec::new(),
    });
    let ui = RowUi {
        editing: RwSignal::new(None),
        draft: RwSignal::new(Draft::default()),
        edit_error: RwSignal::new(None),
        confirming: RwSignal::new(None),
    };
    let on_change = Callback::new(move |m: String| {
        session.show_toast(m);
        refresh();
    });
    let on_status = move |ev| {
        status.set(DocumentStatus::parse(&event_target_value(&ev)));
        page.set(1);
    };
    let columns = move || if manage.get() { 8 } else { 7 };

    view! {
        <section class="section" aria-labelledby="knowledge-documents">
            <h2 id="knowledge-documents">"Documents"</h2>
            <div class="toolbar">
                <label class="filter">
                    <span>"Status"</span>
                    <select on:change=on_status prop:value=move || status.get().map(|s| s.as_str()).unwrap_or("")>
                        <option value="">"All"</option>
                        {DocumentStatus::ALL.iter().map(|&s| view! { <option value=s.as_str()>{status_pill(s).1}</option> }).collect_view()}
                    </select>
                </label>
                <button class="secondary" on:click=move |_| refresh()>"Refresh"</button>
            </div>
            {move || match listing.get() {
                Listing::Loading => view! { <p class="loading" role="status">"Loading documents…"</p> }.into_any(),
                Listing::Failed(e) => { session.handle(&e); view! { <p class="error" role="alert">{e.message()}</p> }.into_any() }
                Listing::NoTenant => ().into_any(),
                Listing::Empty { filtered: true } => view! {
                    <div class="empty">
                        <p>"No documents with this status."</p>
                        <button class="secondary" on:click=move |_| { status.set(None); page.set(1); }>"Show all documents"</button>
                    </div>
                }.into_any(),
                Listing::Empty { filtered: false } => view! {
                    <div class="card empty-state">
                        <h2>"No documents yet"</h2>
                        <p>"Add what your customers ask about — FAQs, policies, product guides, opening hours. Konstruct splits each document into passages, and your AI employees look them up and cite them in their replies."</p>
                        <p class="muted">{if manage.get_untracked() {
                            "Upload Markdown, plain text, HTML or PDF files of up to 20 MB each, or import a public web page by its address."
                        } else {
                            "A customer admin adds them: Markdown, plain text, HTML or PDF files of up to 20 MB each, or a public web page by its address."
                        }}</p>
                    </div>
                }.into_any(),
                Listing::Rows { total } => view! {
                    <div class="table-wrap">
                        <table class="table stack">
                            <caption class="sr-only">"Documents"</caption>
                            <thead><tr>
                                <th>"Title"</th><th>"Format"</th><th class="num">"Size"</th><th>"Status"</th>
                                <th class="num">"Passages"</th><th>"Used by"</th><th>"Added"</th>
                                {move || manage.get().then(|| view! { <th><span class="sr-only">"Actions"</span></th> })}
                            </tr></thead>
                            <tbody>
                                <For each=move || rows.get() key=fingerprint children=move |doc| view! {
                                    <DocumentRow doc=doc names=names manage=manage ui=ui columns=Signal::derive(columns)
                                        on_change=on_change on_error=on_error />
                                } />
                            </tbody>
                        </table>
                    </div>
                    <Show when=move || { total > u64::from(PER_PAGE) }>
                        <Pager page=page total=total per_page=PER_PAGE one="document" many="documents" />
                    </Show>
                }.into_any(),
            }}
        </section>
    }
}

/// Everything a row shows, as its key: a row is rendered again only when its document changed.
fn fingerprint(doc: &Document) -> String {
    serde_json::to_string(doc).unwrap_or_else(|_| doc.id.to_string())
}

#[component]
fn DocumentRow(
    doc: Document,
    names: AgentNames,
    manage: Signal<bool>,
    ui: RowUi,
    columns: Signal<u32>,
    on_change: Callback<String>,
    on_error: Callback<String>,
) -> impl IntoView {
    let session = use_session();
    let busy = RwSignal::new(false);
    let id = doc.id;
    // Copy handles, so the nested views below can all use them.
    let title = StoredValue::new(doc.title.clone());
    let agent_ids = StoredValue::new(doc.agent_ids.clone());
    let failed = doc.status == DocumentStatus::Failed;
    let editing = move || ui.editing.get() == Some(id);
    let has_detail = move || failed || editing();

    let retry = move || {
        let Some((tenant, _)) = session.tenant.get_untracked() else {
            return;
        };
        // Read now: a poll may render the row anew (and drop this one) while the request runs.
        let name = title.get_value();
        busy.set(true);
        spawn_local(async move {
            let path = format!("/api/tenants/{tenant}/knowledge/{id}/retry");
            match api::act::<Document>(HttpMethod::POST, &path).await {
                Ok(_) => {
                    let _ = on_change.try_run(format!("{name} is queued for indexing again."));
                }
                Err(e) => {
                    session.handle(&e);
                    let _ = on_error.try_run(e.message());
                }
            }
            let _ = busy.try_set(false);
        });
    };
    let delete = move || {
        let Some((tenant, _)) = session.tenant.get_untracked() else {
            return;
        };
        let name = title.get_value();
        busy.set(true);
        spawn_local(async move {
            let path = format!("/api/tenants/{tenant}/knowledge/{id}");
            match api::act_empty(HttpMethod::DELETE, &path).await {
                Ok(()) => {
                    ui.confirming.set(None);
                    let _ = on_change.try_run(format!(
                        "Deleted {name}. Your AI employees no longer find or cite it."
                    ));
                }
                Err(e) => {
                    session.handle(&e);
                    let _ = on_error.try_run(e.message());
                }
            }
            let _ = busy.try_set(false);
        });
    };
    let open_editor = move || {
        let ids = agent_ids.get_value();
        ui.draft.set(Draft {
            title: title.get_value(),
            all: ids.is_none(),
            agents: ids.unwrap_or_default(),
        });
        ui.edit_error.set(None);
        ui.confirming.set(None);
        ui.editing.set(Some(id));
    };
    let used_by = move || agent_ids.with_value(|ids| used_by(ids.as_ref(), &names.get()));
    let error_text = doc.error.clone();

    view! {
        <tr class:failed-row=failed class:has-detail=has_detail>
            <td data-label="Title"><div class="cell">
                {match (doc.source, web_link(doc.url.as_deref())) {
                    (DocumentSource::Url, Some(url)) => view! { <a class="strong" href=url target="_blank" rel="noopener noreferrer">{doc.title.clone()}</a> }.into_any(),
                    _ => view! { <span class="strong">{doc.title.clone()}</span> }.into_any(),
                }}
                {doc.filename.clone().filter(|f| *f != doc.title).map(|f| view! { <span class="hint">{f}</span> })}
                {(doc.source == DocumentSource::Url).then(|| view! { <span class="hint">"Web page"</span> })}
            </div></td>
            <td data-label="Format">{format_label(doc.format.as_deref(), doc.pages)}</td>
            <td data-label="Size" class="num nowrap">{size_label(doc.size_bytes)}</td>
            <td data-label="Status"><div class="cell">{progress(&doc)}</div></td>
            <td data-label="Passages" class="num">{if doc.status == DocumentStatus::Ready || doc.chunks > 0 { doc.chunks.to_string() } else { "—".to_string() }}</td>
            <td data-label="Used by"><div class="cell">
                <span>{move || used_by().0}</span>
                {move || used_by().1.map(|n| view! { <span class="hint">{n}</span> })}
            </div></td>
            <td data-label="Added" class="date">{when(doc.created_at)}</td>
            <Show when=move || manage.get()>
                <td class="row-actions">
                    <div class="actions">
                        <Show when=move || failed>
                            <button class="secondary" disabled=move || busy.get() on:click=move |_| retry() aria-label=move || format!("Retry {}", title.get_value())>"Retry"</button>
                        </Show>
                        <button class="secondary" on:click=move |_| open_editor() aria-label=move || format!("Edit {}", title.get_value())>"Edit"</button>
                        <button class="danger" on:click=move |_| { ui.editing.set(None); ui.confirming.set(Some(id)); } aria-label=move || format!("Delete {}", title.get_value())>"Delete"</button>
                    </div>
                    <Show when=move || ui.confirming.get() == Some(id)>
                        <div class="confirm" role="group" aria-label="Confirm deletion">
                            <p>"The document and its passages are deleted for good; your AI employees no longer find or cite it."</p>
                            <button class="danger" disabled=move || busy.get() on:click=move |_| delete()>"Yes, delete"</button>
                            <button class="link" on:click=move |_| ui.confirming.set(None)>"Cancel"</button>
                        </div>
                    </Show>
                </td>
            </Show>
        </tr>
        <Show when=has_detail>
            <tr class="detail-row" class:failed-row=failed>
                <td colspan=move || columns.get().to_string() class="detail">
                    {error_text.clone().map(|e| view! {
                        <div class="detail-box failed-box">
                            <p class="failure"><strong>"Indexing failed: "</strong>{e}</p>
                        </div>
                    })}
                    <Show when=editing>
                        <Editor id=id title=title.get_value() names=names ui=ui on_change=on_change />
                    </Show>
                </td>
            </tr>
        </Show>
    }
}

/// The inline editor of one document: its title (shown in citations) and the AI employees that
/// use it.
#[component]
fn Editor(
    id: Uuid,
    title: String,
    names: AgentNames,
    ui: RowUi,
    on_change: Callback<String>,
) -> impl IntoView {
    let session = use_session();
    let busy = RwSignal::new(false);
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some((tenant, _)) = session.tenant.get_untracked() else {
            return;
        };
        let draft = ui.draft.get_untracked();
        if draft.title.trim().is_empty() {
            ui.edit_error.set(Some(ApiError::local_field(
                "title",
                "enter the title your AI employees cite it by",
            )));
            return;
        }
        let body = DocumentUpdate {
            title: draft.title.trim().to_string(),
            agent_ids: (!draft.all).then_some(draft.agents),
        };
        busy.set(true);
        spawn_local(async move {
            let path = format!("/api/tenants/{tenant}/knowledge/{id}");
            match api::send::<_, Document>(HttpMethod::PUT, &path, &body).await {
                Ok(d) => {
                    ui.editing.set(None);
                    ui.edit_error.set(None);
                    let _ = on_change.try_run(format!("Saved {}.", d.title));
                }
                Err(e) => {
                    session.handle(&e);
                    ui.edit_error.set(Some(e));
                }
            }
            let _ = busy.try_set(false);
        });
    };
    let message =
        move |field: &'static str| move || ui.edit_error.get().and_then(|e| e.field(field));
    let (title_msg, agents_msg) = (message("title"), message("agent_ids"));
    let title_id = format!("doc-{id}-title");
    view! {
        <form class="detail-box doc-editor" on:submit=save aria-label=format!("Edit {title}")>
            <div class="field">
                <label for=title_id.clone()>"Title"</label>
                <input id=title_id.clone() prop:value=move || ui.draft.get().title
                    on:input=move |ev| { let v = event_target_value(&ev); ui.draft.update(|d| d.title = v); }
                    aria-describedby=format!("{title_id}-hint {title_id}-error")
                    aria-invalid=move || title_msg().is_some().to_string() />
                <span id=format!("{title_id}-hint") class="hint">"Shown in the replies that cite it."</span>
                <span id=format!("{title_id}-error") class="field-error" role="alert">{title_msg}</span>
            </div>
            <fieldset class="group">
                <legend>"Used by"</legend>
                <label class="check">
                    <input type="checkbox" prop:checked=move || ui.draft.get().all
                        on:change=move |ev| { let on = event_target_checked(&ev); ui.draft.update(|d| d.all = on); } />
                    <span>"All AI employees, also those hired later"</span>
                </label>
                <Show when=move || !ui.draft.get().all>
                    {move || {
                        let list = names.get();
                        if list.is_empty() {
                            view! { <p class="muted">"This tenant has no AI employee yet."</p> }.into_any()
                        } else {
                            list.into_iter().map(|(agent, name)| view! {
                                <label class="check">
                                    <input type="checkbox" prop:checked=move || ui.draft.get().agents.contains(&agent)
                                        on:change=move |ev| {
                                            let on = event_target_checked(&ev);
                                            ui.draft.update(|d| if on { if !d.agents.contains(&agent) { d.agents.push(agent); } } else { d.agents.retain(|a| *a != agent); });
                                        } />
                                    <span>{name}</span>
                                </label>
                            }).collect_view().into_any()
                        }
                    }}
                    <Show when=move || ui.draft.get().agents.is_empty()>
                        <span class="hint">"With none ticked, no AI employee uses it: it stays here, out of every answer."</span>
                    </Show>
                </Show>
                <span class="field-error" role="alert">{agents_msg}</span>
            </fieldset>
            {move || ui.edit_error.get().filter(|e| e.body.fields.is_empty()).map(|e| view! { <p class="error" role="alert">{e.message()}</p> })}
            <div class="form-actions">
                <button type="submit" disabled=move || busy.get()>{move || if busy.get() { "Saving…" } else { "Save" }}</button>
                <button type="button" class="link" on:click=move |_| { ui.editing.set(None); ui.edit_error.set(None); }>"Cancel"</button>
            </div>
        </form>
    }
}

/// A status's badge class and name.
fn status_pill(status: DocumentStatus) -> (&'static str, &'static str) {
    match status {
        DocumentStatus::Queued => ("badge info", "Queued"),
        DocumentStatus::Extracting => ("badge info", "Extracting"),
        DocumentStatus::Embedding => ("badge info", "Embedding"),
        DocumentStatus::Ready => ("badge ok", "Ready"),
        DocumentStatus::Failed => ("badge danger", "Failed"),
    }
}

/// The status badge, and while the document is being indexed, how far it got.
fn progress(doc: &Document) -> impl IntoView + use<> {
    let (class, label) = status_pill(doc.status);
    let bar = match doc.status {
        DocumentStatus::Embedding if doc.progress_total > 0 => {
            let (done, total) = (doc.progress_done, doc.progress_total);
            Some(view! {
                <progress max=total.to_string() value=done.to_string() aria-label=format!("Embedding {}", doc.title)></progress>
                <span class="hint">{format!("embedding {done}/{total}")}</span>
            }.into_any())
        }
        // Not counted yet: a bar without a value shows that it moves, not how far.
        DocumentStatus::Queued | DocumentStatus::Extracting | DocumentStatus::Embedding => {
            let doing = match doc.status {
                DocumentStatus::Queued => "waiting to start",
                DocumentStatus::Extracting => "reading the document",
                _ => "embedding",
            };
            Some(
                view! {
                    <progress aria-label=format!("Indexing {}", doc.title)></progress>
                    <span class="hint">{doing}</span>
                }
                .into_any(),
            )
        }
        DocumentStatus::Ready | DocumentStatus::Failed => None,
    };
    view! { <span class=class>{label}</span>{bar} }
}

/// "All AI employees", or how many, with their names.
fn used_by(ids: Option<&Vec<AgentId>>, names: &[(AgentId, String)]) -> (String, Option<String>) {
    let Some(ids) = ids else {
        return ("All AI employees".into(), None);
    };
    let named: Vec<String> = ids
        .iter()
        .map(|id| {
            names.iter().find(|(a, _)| a == id).map_or_else(
                || "an AI employee that was removed".into(),
                |(_, n)| n.clone(),
            )
        })
        .collect();
    match ids.len() {
        0 => ("No AI employee".into(), None),
        1 => ("1 AI employee".into(), Some(named.join(", "))),
        n => (format!("{n} AI employees"), Some(named.join(", "))),
    }
}

/// "Markdown", "PDF · 12 pages"; "—" until the type is known.
fn format_label(format: Option<&str>, pages: Option<u32>) -> String {
    let name = match format {
        Some("markdown") => "Markdown",
        Some("text") => "Text",
        Some("html") => "HTML",
        Some("pdf") => "PDF",
        Some(other) => other,
        None => return "—".into(),
    };
    match pages {
        Some(1) => format!("{name} · 1 page"),
        Some(n) => format!("{name} · {n} pages"),
        None => name.to_string(),
    }
}

/// "812 B", "3.4 KB", "1.2 MB" (powers of 1024, as the upload limit is).
fn size_label(bytes: u64) -> String {
    let b = bytes as f64;
    if bytes < 1024 {
        format!("{bytes} B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.1} KB", b / 1024.0)
    } else {
        format!("{:.1} MB", b / (1024.0 * 1024.0))
    }
}

/// `url` when it is a web address a link may point at (never `javascript:` or the like, even
/// if one ever slipped through).
pub fn web_link(url: Option<&str>) -> Option<String> {
    let url = url?.trim();
    let lower = url.to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://")).then(|| url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_web_addresses_become_links() {
        assert_eq!(
            web_link(Some("https://example.com/faq")).as_deref(),
            Some("https://example.com/faq")
        );
        assert_eq!(
            web_link(Some(" HTTP://example.com ")).as_deref(),
            Some("HTTP://example.com")
        );
        assert_eq!(web_link(Some("javascript:alert(1)")), None);
        assert_eq!(web_link(Some("data:text/html,hi")), None);
        assert_eq!(web_link(None), None);
    }

    #[test]
    fn sizes_read_in_powers_of_1024_like_the_upload_limit() {
        assert_eq!(size_label(812), "812 B");
        assert_eq!(size_label(3 * 1024 + 400), "3.4 KB");
        assert_eq!(size_label(20 * 1024 * 1024), "20.0 MB");
        assert_eq!(MAX_UPLOAD_BYTES, (20 * 1024 * 1024) as f64);
    }

    #[test]
    fn used_by_names_every_agent_or_counts_them() {
        let (nia, bo) = (
            AgentId::from(Uuid::from_u128(1)),
            AgentId::from(Uuid::from_u128(2)),
        );
        let names = vec![(nia, "Nia".to_string()), (bo, "Bo".to_string())];
        assert_eq!(used_by(None, &names), ("All AI employees".into(), None));
        assert_eq!(
            used_by(Some(&vec![]), &names),
            ("No AI employee".into(), None)
        );
        assert_eq!(
            used_by(Some(&vec![nia, bo]), &names),
            ("2 AI employees".into(), Some("Nia, Bo".into()))
        );
        let gone = AgentId::from(Uuid::from_u128(3));
        assert_eq!(
            used_by(Some(&vec![gone]), &names).1.as_deref(),
            Some("an AI employee that was removed")
        );
    }

    #[test]
    fn formats_name_the_type_and_a_pdf_its_pages() {
        assert_eq!(format_label(Some("markdown"), None), "Markdown");
        assert_eq!(format_label(Some("pdf"), Some(12)), "PDF · 12 pages");
        assert_eq!(format_label(Some("pdf"), Some(1)), "PDF · 1 page");
        assert_eq!(format_label(None, None), "—");
    }
}
