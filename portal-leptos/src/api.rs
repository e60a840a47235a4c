//! The runtime's REST API from the browser: same-origin `fetch` with the session cookie, the
//! CSRF header on every change, and the server's typed error body turned into [`ApiError`]. File
//! uploads go through `XMLHttpRequest` instead, the one browser API that reports upload progress.

use gloo_net::http::{Method, RequestBuilder};
use serde::Serialize;
use serde::de::DeserializeOwned;
use shared::ErrorBody;

/// Why a call failed, in words the UI can show.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub body: ErrorBody,
}

impl ApiError {
    fn network(message: impl std::fmt::Display) -> Self {
        Self {
            status: 0,
            body: ErrorBody {
                code: shared::ErrorCode::Unavailable,
                message: format!(
                    "The server could not be reached ({message}). Check your connection and try again."
                ),
                request_id: String::new(),
                fields: Vec::new(),
            },
        }
    }

    /// A field error found in the browser before anything was sent, shown like the server's.
    pub fn local_field(field: &str, message: &str) -> Self {
        Self {
            status: 422,
            body: ErrorBody {
                code: shared::ErrorCode::ValidationFailed,
                message: "The input is not valid.".into(),
                request_id: String::new(),
                fields: vec![shared::FieldError {
                    field: field.into(),
                    message: message.into(),
                }],
            },
        }
    }

    pub fn message(&self) -> String {
        match self.status {
            403 => format!(
                "You don't have permission to do this. {}",
                self.body.message
            ),
            _ => self.body.message.clone(),
        }
    }

    /// The message for one field, if the server named it, as a sentence (the server's are
    /// fragments: "a bot token, starting with xoxb-").
    pub fn field(&self, name: &str) -> Option<String> {
        self.body
            .fields
            .iter()
            .find(|f| f.field == name)
            .map(|f| sentence(&f.message))
    }

    /// The messages for a field and for the places inside it, each with the rest of its name:
    /// `parameters` gathers `parameters` ("") and `parameters/properties/x` ("/properties/x");
    /// `headers[0]` gathers `headers[0].name` (".name") but not `headers[01]`.
    pub fn fields_within(&self, name: &str) -> Vec<(String, String)> {
        self.body
            .fields
            .iter()
            .filter_map(|f| {
                let rest = f.field.strip_prefix(name)?;
                (rest.is_empty() || rest.starts_with(['/', '.', '[']))
                    .then(|| (rest.to_string(), sentence(&f.message)))
            })
            .collect()
    }

    pub fn is_unauthenticated(&self) -> bool {
        self.status == 401
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

/// `text` with its first letter capitalised.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The CSRF token the server set in its readable cookie.
fn csrf_token() -> Option<String> {
    let document = leptos::prelude::document();
    let cookies = js_sys::Reflect::get(&document, &"cookie".into())
        .ok()?
        .as_string()?;
    cookies
        .split(';')
        .find_map(|c| c.trim().strip_prefix("konstruct_csrf=").map(str::to_string))
}

async fn call<T: DeserializeOwned>(
    method: Method,
    path: &str,
    body: Option<String>,
) -> Result<T, ApiError> {
    call_with_status(method, path, body).await.map(|(_, t)| t)
}

/// The call, with the success status too (201 Created and 200 OK can mean different things).
async fn call_with_status<T: DeserializeOwned>(
    method: Method,
    path: &str,
    body: Option<String>,
) -> Result<(u16, T), ApiError> {
    let mut builder = RequestBuilder::new(path)
        .method(method.clone())
        .header("Accept", "application/json");
    if method != Method::GET
        && let Some(token) = csrf_token()
    {
        builder = builder.header("X-CSRF-Token", &token);
    }
    let request = match body {
        Some(json) => builder
            .header("Content-Type", "application/json")
            .body(json)
            .map_err(|e| ApiError::network(e.to_string()))?,
        None => builder
            .build()
            .map_err(|e| ApiError::network(e.to_string()))?,
    };
    let res = request
        .send()
        .await
        .map_err(|e| ApiError::network(e.to_string()))?;
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    answer(status, text)
}

/// The server's answer read as `T`, or as its error body.
fn answer<T: DeserializeOwned>(status: u16, text: String) -> Result<(u16, T), ApiError> {
    if (200..300).contains(&status) {
        // A 204 (or any success without a body, such as `DELETE /api/admin/impersonate`) reads
        // as JSON `null`: callers that expect nothing ask for `()`.
        let text = if status == 204 || text.trim().is_empty() {
            "null".to_string()
        } else {
            text
        };
        serde_json::from_str(&text)
            .map(|t| (status, t))
            .map_err(|e| ApiError::network(format!("unexpected answer: {e}")))
    } else {
        let body = serde_json::from_str::<ErrorBody>(&text).unwrap_or(ErrorBody {
            code: shared::ErrorCode::Internal,
            message: format!("The server answered {status}."),
            request_id: String::new(),
            fields: Vec::new(),
        });
        Err(ApiError { status, body })
    }
}

pub async fn get<T: DeserializeOwned>(path: &str) -> Result<T, ApiError> {
    call(Method::GET, path, None).await
}

pub async fn send<B: Serialize, T: DeserializeOwned>(
    method: Method,
    path: &str,
    body: &B,
) -> Result<T, ApiError> {
    let json = serde_json::to_string(body).map_err(|e| ApiError::network(e.to_string()))?;
    call(method, path, Some(json)).await
}

/// Saves a resource of `collection`: `PUT {collection}/{id}` when it exists, else
/// `POST {collection}`.
pub async fn save<B: Serialize, T: DeserializeOwned>(
    collection: &str,
    id: Option<&str>,
    body: &B,
) -> Result<T, ApiError> {
    match id {
        Some(id) => send(Method::PUT, &format!("{collection}/{id}"), body).await,
        None => send(Method::POST, collection, body).await,
    }
}

/// Like [`send`], with the success status: `POST …/channels/whatsapp` answers 201 for a new
/// connection and 200 for a number connected again.
pub async fn send_with_status<B: Serialize, T: DeserializeOwned>(
    method: Method,
    path: &str,
    body: &B,
) -> Result<(u16, T), ApiError> {
    let json = serde_json::to_string(body).map_err(|e| ApiError::network(e.to_string()))?;
    call_with_status(method, path, Some(json)).await
}

/// A request without a body (DELETE, a POST that needs none).
pub async fn act<T: DeserializeOwned>(method: Method, path: &str) -> Result<T, ApiError> {
    call(method, path, None).await
}

/// A request without a body whose answer has none either (a 204).
pub async fn act_empty(method: Method, path: &str) -> Result<(), ApiError> {
    call::<()>(method, path, None).await
}

/// POSTs `file` as the raw request body (`application/octet-stream`) to `path`, telling
/// `on_progress` how many bytes of how many have been sent as the upload goes. It carries the
/// session like every other call: same-origin, so the browser sends the cookie, plus the CSRF
/// header.
pub async fn upload<T: DeserializeOwned>(
    path: &str,
    file: &web_sys::File,
    on_progress: impl Fn(f64, f64) + 'static,
) -> Result<(u16, T), ApiError> {
    use wasm_bindgen::JsCast;
    use wasm_bindgen::closure::Closure;

    let failed = |e: wasm_bindgen::JsValue| {
        ApiError::network(
            e.as_string()
                .unwrap_or_else(|| "the browser refused".into()),
        )
    };
    let xhr = web_sys::XmlHttpRequest::new().map_err(failed)?;
    xhr.open_with_async("POST", path, true).map_err(failed)?;
    xhr.set_request_header("Accept", "application/json")
        .map_err(failed)?;
    xhr.set_request_header("Content-Type", "application/octet-stream")
        .map_err(failed)?;
    if let Some(token) = csrf_token() {
        xhr.set_request_header("X-CSRF-Token", &token)
            .map_err(failed)?;
    }
    let progress =
        Closure::<dyn Fn(web_sys::ProgressEvent)>::new(move |ev: web_sys::ProgressEvent| {
            if ev.length_computable() {
                on_progress(ev.loaded(), ev.total());
            }
        });
    let sending = xhr.upload().map_err(failed)?;
    sending.set_onprogress(Some(progress.as_ref().unchecked_ref()));
    // Settles once the whole answer is in (`load`), or when the request never got one.
    let settled = js_sys::Promise::new(&mut |resolve, reject| {
        xhr.set_onload(Some(&resolve));
        xhr.set_onerror(Some(&reject));
        xhr.set_onabort(Some(&reject));
        xhr.set_ontimeout(Some(&reject));
    });
    xhr.send_with_opt_blob(Some(file)).map_err(failed)?;
    let outcome = wasm_bindgen_futures::JsFuture::from(settled).await;
    // The callback lives until the request is over; the browser no longer holds it after this.
    sending.set_onprogress(None);
    drop(progress);
    if outcome.is_err() {
        return Err(ApiError {
            status: 0,
            body: ErrorBody {
                code: shared::ErrorCode::Unavailable,
                message: "The upload stopped before the server answered. Check your connection \
                          and try again."
                    .into(),
                request_id: String::new(),
                fields: Vec::new(),
            },
        });
    }
    let status = xhr.status().map_err(failed)?;
    let text = xhr.response_text().ok().flatten().unwrap_or_default();
    answer(status, text)
}

pub use gloo_net::http::Method as HttpMethod;
