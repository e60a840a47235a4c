//! A tenant's own HTTP tool: a method and a URL template (`{name}` replaced by the argument
//! `name`, percent-encoded, in the path or query only — never the host), headers (secret ones
//! opened from their seal only into the engine's snapshot), a timeout and a response cap. Every
//! call goes through the shared outbound client, so private, loopback and link-local addresses
//! are refused unless the platform allowlists the host; plain `http` is accepted only for such
//! a host. Redirects are not followed. Calls that change something (`POST`, `PUT`, `PATCH`,
//! `DELETE`) carry the recorded call's id as `Idempotency-Key`.

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Map, Value};
use shared::tools::{HttpMethod, ToolKind, ToolOutcome};
use url::Url;
use uuid::Uuid;

use super::{CallContext, Failure, Output, Spec, Tool};
use crate::config::Secret;
use crate::outbound::{OutboundError, OutboundRequest};

/// Headers a tool may not set: the client's own.
const RESERVED_HEADERS: [&str; 8] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "idempotency-key",
];

/// Why a URL template cannot be a tool's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("is not a URL: {0}")]
    NotAUrl(String),
    #[error("must start with https:// (plain http only for a host the platform allows)")]
    NotHttps,
    #[error("may use {{name}} placeholders in its path and query only, not in the host")]
    PlaceholderInHost,
    #[error("has an unclosed or empty placeholder")]
    BadPlaceholder,
    #[error("must not carry a user name or password")]
    Userinfo,
}

/// The placeholders of a template, in order (each once).
pub fn placeholders(template: &str) -> Result<Vec<String>, TemplateError> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or(TemplateError::BadPlaceholder)?;
        let name = &after[..close];
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(TemplateError::BadPlaceholder);
        }
        if !out.iter().any(|n| n == name) {
            out.push(name.to_string());
        }
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err(TemplateError::BadPlaceholder);
    }
    Ok(out)
}

/// Where a template sends its calls: scheme, host and port, with its placeholders filled by
/// `dummy`.
fn authority(template: &str, dummy: &str) -> Result<(Url, (String, String, u16)), TemplateError> {
    let url = Url::parse(&fill(template, |_| dummy.into()))
        .map_err(|e| TemplateError::NotAUrl(e.to_string()))?;
    let key = (
        url.scheme().to_string(),
        url.host_str().unwrap_or_default().to_string(),
        url.port_or_known_default().unwrap_or(0),
    );
    Ok((url, key))
}

/// Checks a template: a URL once its placeholders are filled, `https` unless `allowed(url)`, no
/// userinfo, and placeholders that cannot reach the scheme, host or port: filled two different
/// ways, it must point at the same place, and neither filling may show outside the path and
/// query.
pub fn check_template(
    template: &str,
    allowed: impl Fn(&Url) -> bool,
) -> Result<Vec<String>, TemplateError> {
    let names = placeholders(template)?;
    if template
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(TemplateError::NotAUrl(
            "it contains spaces or control characters".into(),
        ));
    }
    let (url, first) = authority(template, "a1b2c3")?;
    let (_, second) = authority(template, "z9y8x7")?;
    if first != second || ["a1b2c3", "z9y8x7"].iter().any(|d| first.1.contains(d)) {
        return Err(TemplateError::PlaceholderInHost);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TemplateError::Userinfo);
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(TemplateError::NotAUrl("it has no host".into()));
    }
    match url.scheme() {
        "https" => {}
        "http" if allowed(&url) => {}
        _ => return Err(TemplateError::NotHttps),
    }
    Ok(names)
}

fn fill(template: &str, value: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                out.push_str(&value(&after[..close]));
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Characters left as they are in a substituted value (RFC 3986 unreserved).
const ENCODE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// An argument as text: strings as they are, anything else as JSON.
fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A header as the engine holds it.
#[derive(Debug, Clone)]
pub struct Header {
    pub name: HeaderName,
    pub value: Secret<String>,
    pub secret: bool,
}

/// A tenant's HTTP tool, ready to call.
#[derive(Debug)]
pub struct HttpTool {
    spec: Spec,
    method: HttpMethod,
    url: String,
    headers: Vec<Header>,
    max_response_bytes: u32,
}

impl HttpTool {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: Uuid,
        name: String,
        description: String,
        parameters: Value,
        method: HttpMethod,
        url: String,
        headers: Vec<Header>,
        max_response_bytes: u32,
        timeout_ms: u32,
        needs_confirmation: bool,
    ) -> Self {
        Self {
            spec: Spec {
                id: id.to_string(),
                kind: ToolKind::Http,
                name,
                description,
                parameters,
                timeout: std::time::Duration::from_millis(u64::from(timeout_ms)),
                needs_confirmation,
            },
            method,
            url,
            headers,
            max_response_bytes,
        }
    }

    /// The request for `arguments`: placeholders filled, the other arguments in the query
    /// (`GET`, `DELETE`) or as a JSON body.
    fn request(
        &self,
        cx: &CallContext,
        arguments: &Value,
    ) -> Result<(OutboundRequest, Url), Failure> {
        let args = arguments.as_object().cloned().unwrap_or_default();
        let names = placeholders(&self.url).map_err(|e| Failure::failed(format!("URL {e}")))?;
        if let Some(missing) = names.iter().find(|n| !args.contains_key(n.as_str())) {
            return Err(Failure {
                outcome: ToolOutcome::InvalidArguments,
                message: format!("The argument {missing:?} is required (the URL uses it)."),
                status: None,
            });
        }
        // A whole segment of dots would walk up the API's path (`%2e%2e` too, by the URL rules).
        if let Some(dots) = names.iter().find(|n| {
            args.get(n.as_str())
                .map(text_of)
                .is_some_and(|v| v == "." || v == "..")
        }) {
            return Err(Failure {
                outcome: ToolOutcome::InvalidArguments,
                message: format!("The argument {dots:?} may not be \".\" or \"..\"."),
                status: None,
            });
        }
        let filled = fill(&self.url, |name| {
            let v = args.get(name).map(text_of).unwrap_or_default();
            percent_encoding::utf8_percent_encode(&v, ENCODE).to_string()
        });
        let mut url = Url::parse(&filled)
            .map_err(|e| Failure::failed(format!("The tool's URL is not valid: {e}")))?;
        // The arguments cannot move the call: it goes where the template points.
        let (_, expected) = authority(&self.url, "a1b2c3")
            .map_err(|e| Failure::failed(format!("The tool's URL {e}")))?;
        let actual = (
            url.scheme().to_string(),
            url.host_str().unwrap_or_default().to_string(),
            url.port_or_known_default().unwrap_or(0),
        );
        if actual != expected {
            return Err(Failure {
                outcome: ToolOutcome::Refused,
                message: "The arguments would change where the tool's URL points.".into(),
                status: None,
            });
        }
        // Only the arguments the schema declares are sent.
        let declared: Vec<String> = self
            .spec
            .parameters
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        let rest: Map<String, Value> = args
            .into_iter()
            .filter(|(k, _)| !names.iter().any(|n| n == k) && declared.contains(k))
            .collect();
        let method = match self.method {
            HttpMethod::Get => Method::GET,
            HttpMethod::Post => Method::POST,
            HttpMethod::Put => Method::PUT,
            HttpMethod::Patch => Method::PATCH,
            HttpMethod::Delete => Method::DELETE,
        };
        let mut body = Vec::new();
        if self.method.has_body() {
            body = serde_json::to_vec(&Value::Object(rest)).unwrap_or_default();
        } else if !rest.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &rest {
                pairs.append_pair(k, &text_of(v));
            }
        }
        let target = url.clone();
        let mut request = OutboundRequest::new(method, url.to_string())
            .timeout(self.spec.timeout)
            .max_bytes(u64::from(self.max_response_bytes))
            .max_redirects(0)
            .header(
                reqwest::header::ACCEPT,
                HeaderValue::from_static("application/json, text/plain;q=0.9, */*;q=0.5"),
            );
        if self.method.has_body() {
            request = request
                .header(
                    reqwest::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )
                .body(body);
        }
        if self.method != HttpMethod::Get
            && let Ok(key) = HeaderValue::from_str(&cx.key.to_string())
        {
            request = request.header(HeaderName::from_static("idempotency-key"), key);
        }
        for h in &self.headers {
            let mut value = HeaderValue::from_str(h.value.expose())
                .map_err(|_| Failure::failed("A header value is not valid."))?;
            value.set_sensitive(h.secret);
            request = request.header(h.name.clone(), value);
        }
        Ok((request, target))
    }
}

/// Whether a header name may be set by a tool.
pub fn header_allowed(name: &str) -> bool {
    HeaderName::from_bytes(name.as_bytes()).is_ok()
        && !RESERVED_HEADERS
            .iter()
            .any(|r| r.eq_ignore_ascii_case(name))
}

impl Tool for HttpTool {
    fn spec(&self) -> &Spec {
        &self.spec
    }

    fn secrets(&self) -> Vec<String> {
        self.headers
            .iter()
            .filter(|h| h.secret)
            .map(|h| h.value.expose().clone())
            .collect()
    }

    fn call<'a>(
        &'a self,
        cx: &'a CallContext,
        arguments: Value,
    ) -> BoxFuture<'a, Result<Output, Failure>> {
        async move {
            let Some(outbound) = cx.outbound.as_ref() else {
                return Err(Failure::failed("Outbound calls are not available."));
            };
            let (request, url) = self.request(cx, &arguments)?;
            // Plain http only where the platform allows the host (checked at save time too:
            // the allowlist may have changed since).
            if url.scheme() == "http" && !outbound.allows(&url) {
                return Err(Failure {
                    outcome: ToolOutcome::Refused,
                    message: "The tool's URL must use https.".into(),
                    status: None,
                });
            }
            let secrets = self.secrets();
            let response = outbound.send(request).await.map_err(|e| {
                let outcome = match &e {
                    OutboundError::Refused { .. } => ToolOutcome::Refused,
                    OutboundError::Timeout { .. } => ToolOutcome::Timeout,
                    _ => ToolOutcome::Failed,
                };
                let message = match &e {
                    OutboundError::Timeout { limit } => {
                        format!("The tool did not answer within {} ms.", limit.as_millis())
                    }
                    OutboundError::TooManyRedirects { .. } => {
                        "The tool's server answered with a redirect, which is not followed."
                            .to_string()
                    }
                    other => format!("The call failed: {other}."),
                };
                Failure {
                    outcome,
                    message: super::redact(&message, &secrets),
                    status: None,
                }
            })?;
            let status = response.status.as_u16();
            let body = super::redact(&String::from_utf8_lossy(&response.body), &secrets);
            if response.status.is_success() {
                Ok(Output {
                    content: body,
                    status: Some(status),
                    ..Output::default()
                })
            } else {
                let shown: String = body.chars().take(1000).collect();
                Err(Failure {
                    outcome: ToolOutcome::Failed,
                    message: format!("The tool's server answered HTTP {status}: {shown}"),
                    status: Some(status),
                })
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_names_in_braces() {
        assert_eq!(
            placeholders("https://a.example/o/{order_id}/{x}?q={order_id}").unwrap(),
            vec!["order_id", "x"]
        );
        assert_eq!(
            placeholders("https://a/{}").unwrap_err(),
            TemplateError::BadPlaceholder
        );
        assert_eq!(
            placeholders("https://a/{x").unwrap_err(),
            TemplateError::BadPlaceholder
        );
        assert_eq!(
            placeholders("https://a/{a b}").unwrap_err(),
            TemplateError::BadPlaceholder
        );
    }

    #[test]
    fn a_template_is_https_with_placeholders_after_the_host() {
        let never = |_: &Url| false;
        assert!(check_template("https://shop.example/orders/{id}", never).is_ok());
        assert_eq!(
            check_template("http://shop.example/orders/{id}", never).unwrap_err(),
            TemplateError::NotHttps
        );
        assert!(check_template("http://127.0.0.1:9/orders/{id}", |_| true).is_ok());
        assert_eq!(
            check_template("https://{host}/x", never).unwrap_err(),
            TemplateError::PlaceholderInHost
        );
        assert!(check_template("https://shop.example:{port}/x", never).is_err());
        assert_eq!(
            check_template("https://u:p@shop.example/x", never).unwrap_err(),
            TemplateError::Userinfo
        );
        assert_eq!(
            check_template("ftp://shop.example/x", never).unwrap_err(),
            TemplateError::NotHttps
        );
        assert!(matches!(
            check_template("not a url", never).unwrap_err(),
            TemplateError::NotAUrl(_)
        ));
        // Extra slashes or a tab before the host would make the argument the host.
        for sneaky in [
            "https:///{x}/orders",
            "https:////{x}",
            "https://\t/{x}",
            "https:\\\\{x}/a",
            "https://{x}.example/a",
            "https://shop.example{x}/a",
        ] {
            assert!(check_template(sneaky, never).is_err(), "{sneaky:?}");
        }
    }

    #[test]
    fn values_are_percent_encoded_into_their_segment() {
        let filled = fill("https://a.example/o/{id}?q={id}", |_| {
            percent_encoding::utf8_percent_encode("12/../x?y#z", ENCODE).to_string()
        });
        assert_eq!(
            filled,
            "https://a.example/o/12%2F..%2Fx%3Fy%23z?q=12%2F..%2Fx%3Fy%23z"
        );
    }

    #[test]
    fn reserved_headers_are_refused() {
        assert!(header_allowed("X-Shop-Key"));
        assert!(header_allowed("Authorization"));
        for bad in [
            "Host",
            "content-length",
            "Idempotency-Key",
            "bad header",
            "",
        ] {
            assert!(!header_allowed(bad), "{bad:?}");
        }
    }
}
