//! The one HTTP client for URLs that a user, a tenant or a provider supplied (media downloads,
//! tenants' HTTP tools, outgoing webhooks, document imports), so none of them can be turned
//! against our own network.
//!
//! Every hop — the first request and each redirect, which we follow ourselves — is admitted the
//! same way: `http` or `https` only; the host resolved by us (with a timeout), and refused
//! unless *every* address is public (see [`address`]) or the host is on the platform admin's
//! allowlist; then the connection goes only to the addresses that were checked, so a DNS
//! answer that changes between the check and the connect (rebinding) is never used. No proxy
//! from the environment, no decompression, a total deadline, and a response body read in
//! chunks up to a cap. A refusal is logged once, with the host and the address class, never
//! the URL (its query may carry a token, its userinfo a password).

pub mod address;

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use url::{Host, Url};

pub use address::{AddressClass, Classification, Embedding, classify};

use crate::config::OutboundSettings;

/// Why an outbound request did not produce a response. Messages never contain the URL's
/// path, query or userinfo, so callers may show them to the user who supplied it.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// Not a URL, no host, or a redirect to something that is not a URL.
    #[error("the URL is not valid: {reason}")]
    InvalidUrl { reason: String },
    /// The scheme or the address is not one we may reach.
    #[error("{reason}")]
    Refused { reason: Refusal },
    /// The host has no address (or the resolver failed).
    #[error("{host} could not be resolved")]
    Unresolvable { host: String },
    /// The whole request (or one connection attempt, or one lookup) took longer than allowed.
    #[error("the request did not finish within {} ms", limit.as_millis())]
    Timeout { limit: Duration },
    /// The response body is larger than the cap; it was not read past it.
    #[error("the response is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// The request body is larger than the cap; nothing was sent.
    #[error("the request body is larger than {limit} bytes")]
    RequestTooLarge { limit: u64 },
    /// More redirects than allowed.
    #[error("more than {limit} redirects")]
    TooManyRedirects { limit: u32 },
    /// Connecting, TLS or HTTP failed. The error carries no URL.
    #[error("the request failed: {0}")]
    Http(#[source] reqwest::Error),
    /// An allowlist entry (1-based) is not `host` or `host:port`.
    #[error("outbound allowlist entry {entry} is not a host or host:port")]
    InvalidAllowEntry { entry: usize },
    /// TLS could not be set up at all.
    #[error("TLS could not be set up: {0}")]
    Tls(#[source] rustls::Error),
}

pub type Result<T> = std::result::Result<T, OutboundError>;

/// Why a hop was refused before anything was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not `http` or `https`.
    Scheme { scheme: String },
    /// The host is, or resolves to, an address of a class only the allowlist may reach.
    Address {
        host: String,
        class: Classification,
        /// Whether `host` is a name that resolved to the address (else an IP literal).
        resolved: bool,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Scheme { scheme } => {
                write!(f, "only http and https URLs may be fetched, not {scheme}:")
            }
            Refusal::Address {
                host,
                class,
                resolved,
            } => write!(
                f,
                "{host} {} an address outbound requests may not reach ({class})",
                if *resolved { "resolves to" } else { "is" }
            ),
        }
    }
}

/// A host (and optionally a port) that may resolve to non-public addresses: `host` or
/// `host:port`, a DNS name or an IP literal (`[v6]:port` with a port), matched exactly and
/// case-insensitively against the URL's host as URLs normalise it (so `2130706433` and
/// `127.0.0.1` are the same host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowEntry {
    /// As `Url::host_str` spells it: lowercase, IPv4 dotted, IPv6 in brackets.
    host: String,
    port: Option<u16>,
}

impl AllowEntry {
    /// Parses one entry; `None` if it is not `host` or `host:port`.
    pub fn parse(entry: &str) -> Option<AllowEntry> {
        let entry = entry.trim();
        // Anything that makes it more than an authority (or a userinfo) is a mistake.
        if entry.is_empty() || entry.contains(['/', '?', '#', '@', '\\', ' ']) {
            return None;
        }
        if let Ok(ip) = entry.parse::<Ipv6Addr>() {
            return Some(AllowEntry {
                host: format!("[{ip}]"),
                port: None,
            });
        }
        let (host, port) = match entry.strip_prefix('[') {
            Some(rest) => {
                let (inside, after) = rest.split_once(']')?;
                let port = match after {
                    "" => None,
                    _ => Some(after.strip_prefix(':')?.parse().ok()?),
                };
                (format!("[{inside}]"), port)
            }
            None => match entry.split_once(':') {
                Some((host, port)) => (host.to_string(), Some(port.parse().ok()?)),
                None => (entry.to_string(), None),
            },
        };
        // Spelled the way a URL's host is, so the comparison is exact.
        let url = Url::parse(&format!("http://{host}/")).ok()?;
        Some(AllowEntry {
            host: url.host_str()?.to_string(),
            port,
        })
    }

    fn matches(&self, host: &str, port: u16) -> bool {
        self.host == host && self.port.is_none_or(|p| p == port)
    }
}

/// Resolves a host name to addresses: the system resolver, unless a test supplies its own.
/// Whatever it answers is checked like any answer.
pub trait Lookup: Send + Sync + fmt::Debug {
    fn lookup<'a>(&'a self, host: &'a str, port: u16)
    -> BoxFuture<'a, io::Result<Vec<SocketAddr>>>;
}

/// `getaddrinfo` through tokio.
#[derive(Debug)]
struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host, port)).await?;
            Ok::<_, io::Error>(addrs.collect::<Vec<_>>())
        })
    }
}

/// The resolver of every per-hop client: it answers nothing, so the only names a hop can
/// connect to are the ones pinned to their checked addresses.
#[derive(Debug)]
struct PinnedOnly;

impl reqwest::dns::Resolve for PinnedOnly {
    fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let refusal: Box<dyn std::error::Error + Send + Sync> =
            "outbound requests connect only to checked addresses".into();
        Box::pin(std::future::ready(Err::<reqwest::dns::Addrs, _>(refusal)))
    }
}

/// The caps every request is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_bytes: u64,
    pub max_request_bytes: u64,
    pub max_redirects: u32,
}

/// The client. Cheap to clone; every clone shares the configuration and the TLS roots.
#[derive(Clone)]
pub struct Outbound {
    inner: Arc<Inner>,
}

struct Inner {
    limits: Limits,
    allow: Vec<AllowEntry>,
    /// Built once: loading the system's roots per request would read them from disk each time.
    tls: rustls::ClientConfig,
    lookup: Arc<dyn Lookup>,
}

impl fmt::Debug for Outbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbound")
            .field("limits", &self.inner.limits)
            .field("allow", &self.inner.allow)
            .finish_non_exhaustive()
    }
}

impl Outbound {
    /// The client the settings describe.
    pub fn from_settings(settings: &OutboundSettings) -> Result<Outbound> {
        let allow = settings
            .allow
            .iter()
            .enumerate()
            .map(|(n, entry)| {
                AllowEntry::parse(entry).ok_or(OutboundError::InvalidAllowEntry { entry: n + 1 })
            })
            .collect::<Result<Vec<_>>>()?;
        let limits = Limits {
            timeout: Duration::from_secs(settings.timeout_secs),
            connect_timeout: Duration::from_secs(settings.connect_timeout_secs),
            max_bytes: settings.max_bytes,
            max_request_bytes: settings.max_request_bytes,
            max_redirects: settings.max_redirects,
        };
        Ok(Outbound {
            inner: Arc::new(Inner {
                limits,
                allow,
                tls: tls_config()?,
                lookup: Arc::new(SystemLookup),
            }),
        })
    }

    /// The same client resolving names with `lookup` (tests: names no DNS knows). Its answers
    /// are checked and pinned like the system resolver's.
    pub fn with_lookup(self, lookup: Arc<dyn Lookup>) -> Outbound {
        let inner = &self.inner;
        Outbound {
            inner: Arc::new(Inner {
                limits: inner.limits,
                allow: inner.allow.clone(),
                tls: inner.tls.clone(),
                lookup,
            }),
        }
    }

    /// The caps in force.
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// `GET url` with the default caps.
    pub async fn get(&self, url: &str) -> Result<OutboundResponse> {
        self.send(OutboundRequest::get(url)).await
    }

    /// Whether `url` may be fetched now: it parses, its scheme is http or https, and its host is
    /// (and resolves only to) addresses we may reach. Nothing is sent. A later fetch checks
    /// again, hop by hop, so this is for answering a user at once, not a guarantee.
    pub async fn check(&self, url: &str) -> Result<()> {
        let url = Url::parse(url).map_err(|e| OutboundError::InvalidUrl {
            reason: e.to_string(),
        })?;
        self.admit(&url).await.map(|_| ())
    }

    /// Whether `url`'s host (and port) is on the platform's allowlist: the hosts that may be
    /// reached on non-public addresses, and the only ones a tenant's HTTP tool may call over
    /// plain `http`.
    pub fn allows(&self, url: &Url) -> bool {
        match (url.host_str(), url.port_or_known_default()) {
            (Some(host), Some(port)) => self.inner.allow.iter().any(|e| e.matches(host, port)),
            _ => false,
        }
    }

    /// Sends the request, following redirects, and reads the whole body (up to the cap).
    pub async fn send(&self, request: OutboundRequest) -> Result<OutboundResponse> {
        let limits = self.inner.limits;
        let timeout = request
            .timeout
            .map_or(limits.timeout, |t| t.min(limits.timeout));
        if request.body.len() as u64 > limits.max_request_bytes {
            return Err(OutboundError::RequestTooLarge {
                limit: limits.max_request_bytes,
            });
        }
        match tokio::time::timeout(timeout, self.follow(request)).await {
            Ok(result) => result,
            Err(_) => Err(OutboundError::Timeout { limit: timeout }),
        }
    }

    /// The request and its redirects, each hop admitted like the first.
    async fn follow(&self, request: OutboundRequest) -> Result<OutboundResponse> {
        let limits = self.inner.limits;
        let max_redirects = request
            .max_redirects
            .map_or(limits.max_redirects, |n| n.min(limits.max_redirects));
        let max_bytes = request.max_bytes.unwrap_or(limits.max_bytes);
        let OutboundRequest {
            mut method,
            url,
            mut headers,
            mut body,
            ..
        } = request;
        let mut url = Url::parse(&url).map_err(|e| OutboundError::InvalidUrl {
            reason: e.to_string(),
        })?;
        // The fragment is the client's business and never sent.
        url.set_fragment(None);
        let mut redirects = 0;
        loop {
            let target = self.admit(&url).await?;
            let response = self.hop(&target, &url, &method, &headers, &body).await?;
            let Some(next) = redirect_location(&url, &response)? else {
                return read_body(url, response, max_bytes).await;
            };
            if redirects == max_redirects {
                return Err(OutboundError::TooManyRedirects {
                    limit: max_redirects,
                });
            }
            redirects += 1;
            // What browsers (and reqwest) do: 301/302/303 become a GET without a body; 307 and
            // 308 repeat the request as it was.
            let status = response.status();
            if matches!(
                status,
                StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND | StatusCode::SEE_OTHER
            ) && method != Method::HEAD
            {
                method = Method::GET;
                body.clear();
                for name in [
                    header::CONTENT_TYPE,
                    header::CONTENT_LENGTH,
                    header::CONTENT_ENCODING,
                    header::TRANSFER_ENCODING,
                ] {
                    headers.remove(name);
                }
            }
            // Credentials meant for one origin are not handed to another.
            if url.origin() != next.origin() {
                for name in [
                    header::AUTHORIZATION,
                    header::COOKIE,
                    header::PROXY_AUTHORIZATION,
                ] {
                    headers.remove(name);
                }
            }
            url = next;
        }
    }

    /// Checks one hop's URL and returns the addresses it may connect to.
    async fn admit(&self, url: &Url) -> Result<Target> {
        let scheme = url.scheme();
        if scheme != "http" && scheme != "https" {
            tracing::warn!(
                outbound.scheme = scheme,
                "outbound request refused: not http or https"
            );
            return Err(OutboundError::Refused {
                reason: Refusal::Scheme {
                    scheme: scheme.to_string(),
                },
            });
        }
        let (Some(host), Some(host_str), Some(port)) =
            (url.host(), url.host_str(), url.port_or_known_default())
        else {
            return Err(OutboundError::InvalidUrl {
                reason: "it has no host".into(),
            });
        };
        let allowed = self.inner.allow.iter().any(|e| e.matches(host_str, port));
        let (addrs, domain) = match host {
            Host::Ipv4(ip) => (vec![SocketAddr::new(IpAddr::V4(ip), port)], None),
            Host::Ipv6(ip) => (vec![SocketAddr::new(IpAddr::V6(ip), port)], None),
            Host::Domain(name) => (self.resolve(name, port).await?, Some(name.to_string())),
        };
        if !allowed {
            for addr in &addrs {
                let class = classify(addr.ip());
                if !class.is_public() {
                    tracing::warn!(
                        outbound.host = host_str,
                        outbound.port = port,
                        outbound.class = %class,
                        "outbound request refused: the address is not public"
                    );
                    return Err(OutboundError::Refused {
                        reason: Refusal::Address {
                            host: host_str.to_string(),
                            class,
                            resolved: domain.is_some(),
                        },
                    });
                }
            }
        }
        Ok(Target { domain, addrs })
    }

    async fn resolve(&self, name: &str, port: u16) -> Result<Vec<SocketAddr>> {
        let limit = self.inner.limits.connect_timeout;
        let unresolvable = || OutboundError::Unresolvable {
            host: name.to_string(),
        };
        match tokio::time::timeout(limit, self.inner.lookup.lookup(name, port)).await {
            Err(_) => Err(OutboundError::Timeout { limit }),
            Ok(Err(_)) => Err(unresolvable()),
            Ok(Ok(addrs)) if addrs.is_empty() => Err(unresolvable()),
            Ok(Ok(addrs)) => Ok(addrs),
        }
    }

    /// One request to one admitted target, on a client of its own whose only way to a name
    /// is the checked addresses.
    async fn hop(
        &self,
        target: &Target,
        url: &Url,
        method: &Method,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<reqwest::Response> {
        let limits = self.inner.limits;
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .user_agent("Konstruct")
            .connect_timeout(limits.connect_timeout)
            .pool_max_idle_per_host(0)
            .dns_resolver(PinnedOnly)
            .tls_backend_preconfigured(self.inner.tls.clone());
        if let Some(domain) = &target.domain {
            builder = builder.resolve_to_addrs(domain, &target.addrs);
        }
        let client = builder.build().map_err(|e| transport(e, limits))?;
        let mut request = client
            .request(method.clone(), url.clone())
            .headers(headers.clone());
        if !body.is_empty() {
            request = request.body(body.to_vec());
        }
        request.send().await.map_err(|e| transport(e, limits))
    }
}

/// Where a hop was admitted to go.
struct Target {
    /// The name pinned to `addrs`; `None` for an IP literal, which is connected to as it is.
    domain: Option<String>,
    addrs: Vec<SocketAddr>,
}

fn tls_config() -> Result<rustls::ClientConfig> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = || {
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(OutboundError::Tls)
    };
    match builder()?.with_platform_verifier() {
        Ok(config) => Ok(config.with_no_client_auth()),
        Err(e) => {
            // No system roots: plain http still works, https fails certificate checks.
            tracing::warn!(error = %e, "outbound HTTPS has no trusted roots");
            Ok(builder()?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth())
        }
    }
}

/// reqwest's error, without the URL it would otherwise print (its query may hold a token).
fn transport(e: reqwest::Error, limits: Limits) -> OutboundError {
    if e.is_timeout() {
        OutboundError::Timeout {
            limit: limits.connect_timeout,
        }
    } else {
        OutboundError::Http(e.without_url())
    }
}

/// The next hop, if the response is a redirect with a `Location`.
fn redirect_location(url: &Url, response: &reqwest::Response) -> Result<Option<Url>> {
    let status = response.status();
    if !matches!(
        status,
        StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT
    ) {
        return Ok(None);
    }
    let Some(location) = response.headers().get(header::LOCATION) else {
        return Ok(None);
    };
    let invalid = || OutboundError::InvalidUrl {
        reason: "a redirect's Location is not a URL".into(),
    };
    let location = location.to_str().map_err(|_| invalid())?;
    let mut next = url.join(location).map_err(|_| invalid())?;
    next.set_fragment(None);
    Ok(Some(next))
}

/// Reads the body in chunks, stopping with `TooLarge` before it holds more than `max_bytes`.
async fn read_body(
    url: Url,
    mut response: reqwest::Response,
    max_bytes: u64,
) -> Result<OutboundResponse> {
    let too_large = OutboundError::TooLarge { limit: max_bytes };
    if response.content_length().is_some_and(|n| n > max_bytes) {
        return Err(too_large);
    }
    let status = response.status();
    let headers = response.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| OutboundError::Http(e.without_url()))?
    {
        if (body.len() + chunk.len()) as u64 > max_bytes {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(OutboundResponse {
        status,
        headers,
        url,
        body,
    })
}

/// What to send. Built with [`OutboundRequest::get`] or [`OutboundRequest::new`] and the
/// builder methods; the caps may be changed per call (the time only downward).
pub struct OutboundRequest {
    method: Method,
    url: String,
    headers: HeaderMap,
    body: Vec<u8>,
    timeout: Option<Duration>,
    max_bytes: Option<u64>,
    max_redirects: Option<u32>,
}

impl fmt::Debug for OutboundRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Neither the URL nor header values: either may carry a credential.
        f.debug_struct("OutboundRequest")
            .field("method", &self.method)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("body_bytes", &self.body.len())
            .field("timeout", &self.timeout)
            .field("max_bytes", &self.max_bytes)
            .field("max_redirects", &self.max_redirects)
            .finish_non_exhaustive()
    }
}

impl OutboundRequest {
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            headers: HeaderMap::new(),
            body: Vec::new(),
            timeout: None,
            max_bytes: None,
            max_redirects: None,
        }
    }

    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::GET, url)
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// A shorter deadline than the configured one (a longer one is cut to it).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Another cap on the response body for this call.
    pub fn max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = Some(max_bytes);
        self
    }

    /// Fewer redirects than the configured number (more are cut to it).
    pub fn max_redirects(mut self, max_redirects: u32) -> Self {
        self.max_redirects = Some(max_redirects);
        self
    }
}

/// The final answer, after any redirects, with its whole body.
pub struct OutboundResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The URL that answered (after redirects). It may carry the caller's credentials.
    pub url: Url,
    pub body: Vec<u8>,
}

impl fmt::Debug for OutboundResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundResponse")
            .field("status", &self.status)
            .field("host", &self.url.host_str())
            .field("body_bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_entries_are_hosts_with_an_optional_port() {
        // The text, and the host and port it stands for (none: refused).
        type Case = (&'static str, Option<(&'static str, Option<u16>)>);
        let cases: &[Case] = &[
            ("files.internal", Some(("files.internal", None))),
            ("Files.Internal:8443", Some(("files.internal", Some(8443)))),
            ("127.0.0.1:8080", Some(("127.0.0.1", Some(8080)))),
            ("2130706433", Some(("127.0.0.1", None))),
            ("::1", Some(("[::1]", None))),
            ("[::1]", Some(("[::1]", None))),
            ("[0:0::1]:9000", Some(("[::1]", Some(9000)))),
            ("localhost:80", Some(("localhost", Some(80)))),
            ("", None),
            ("http://files.internal", None),
            ("files.internal/path", None),
            ("user@files.internal", None),
            ("files.internal:port", None),
            ("files.internal:70000", None),
            ("a:b:c", None),
            ("[::1]9000", None),
            ("two words", None),
        ];
        for (text, expected) in cases {
            let got = AllowEntry::parse(text);
            let expected = expected.map(|(host, port)| AllowEntry {
                host: host.to_string(),
                port,
            });
            assert_eq!(got, expected, "{text:?}");
        }
    }

    #[test]
    fn an_entry_with_a_port_matches_only_that_port_and_one_without_matches_any() {
        let with_port = AllowEntry::parse("127.0.0.1:8080").unwrap();
        assert!(with_port.matches("127.0.0.1", 8080));
        assert!(!with_port.matches("127.0.0.1", 8081));
        assert!(!with_port.matches("localhost", 8080));
        let any_port = AllowEntry::parse("LOCALHOST").unwrap();
        assert!(any_port.matches("localhost", 1));
        assert!(any_port.matches("localhost", 443));
        assert!(!any_port.matches("localhost.", 443));
    }

    #[test]
    fn odd_ipv4_spellings_are_normalised_by_the_url_parser_to_the_address_they_mean() {
        // What the checks see for each spelling: the parsed host, never the text.
        for text in [
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://0x7f.1/",
            "http://127.1/",
            "http://127.0.0.1./",
        ] {
            let url = Url::parse(text).unwrap();
            assert_eq!(
                url.host(),
                Some(Host::Ipv4(std::net::Ipv4Addr::LOCALHOST)),
                "{text}"
            );
        }
    }
}
