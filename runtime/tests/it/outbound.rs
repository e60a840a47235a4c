//! The outbound client against real local HTTP servers: what it refuses (loopback, names that
//! resolve to it, odd IP spellings, redirects into our network, other schemes), what the
//! allowlist lets through, and the caps on time, size and redirects.

use std::collections::VecDeque;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use runtime::config::OutboundSettings;
use runtime::outbound::{AddressClass, Lookup, Outbound, OutboundError, OutboundRequest, Refusal};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// What a scripted server answers on a path.
#[derive(Debug, Clone)]
enum Reply {
    Text(&'static str),
    Redirect(u16, String),
    /// `total` bytes of body in 64 KiB pieces, chunked, or with `declared` as Content-Length;
    /// the bytes it managed to write are reported when it stops.
    Big {
        declared: Option<u64>,
        total: u64,
    },
    /// Reads the request and never answers.
    Silence,
    /// Headers and the start of a body, then nothing.
    Trickle,
}

/// A request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    head: String,
}

/// An HTTP/1.1 server on 127.0.0.1 with one scripted reply per path.
struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    written: tokio::sync::Mutex<mpsc::UnboundedReceiver<u64>>,
}

impl Server {
    async fn start(script: impl Fn(&str) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (written_tx, written_rx) = mpsc::unbounded_channel();
        let script = Arc::new(script);
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (script, log, written) = (script.clone(), log.clone(), written_tx.clone());
                tokio::spawn(async move { serve(socket, &*script, &log, &written).await });
            }
        });
        Server {
            port,
            seen,
            written: tokio::sync::Mutex::new(written_rx),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The allowlist entry for exactly this server.
    fn entry(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn requests(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// How many body bytes a `Big` reply wrote before it stopped (finished or cut off).
    async fn big_reply_wrote(&self) -> u64 {
        let mut rx = self.written.lock().await;
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("the big reply stops once the client hangs up")
            .unwrap()
    }
}

async fn serve(
    mut socket: TcpStream,
    script: &(dyn Fn(&str) -> Reply + Send + Sync),
    seen: &Mutex<Vec<Seen>>,
    written: &mpsc::UnboundedSender<u64>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
    seen.lock().unwrap().push(Seen {
        path: path.clone(),
        head,
    });
    match script(&path) {
        Reply::Text(body) => {
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(answer.as_bytes()).await;
        }
        Reply::Redirect(status, location) => {
            let answer = format!(
                "HTTP/1.1 {status} Redirect\r\nlocation: {location}\r\ncontent-length: 0\r\n\
                 connection: close\r\n\r\n"
            );
            let _ = socket.write_all(answer.as_bytes()).await;
        }
        Reply::Big { declared, total } => {
            let framing = match declared {
                Some(n) => format!("content-length: {n}"),
                None => "transfer-encoding: chunked".to_string(),
            };
            let answer = format!("HTTP/1.1 200 OK\r\n{framing}\r\nconnection: close\r\n\r\n");
            let mut sent = 0u64;
            if socket.write_all(answer.as_bytes()).await.is_ok() {
                let piece = vec![b'x'; 64 * 1024];
                while sent < total {
                    let ok = if declared.is_some() {
                        socket.write_all(&piece).await.is_ok()
                    } else {
                        let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
                        chunk.extend_from_slice(&piece);
                        chunk.extend_from_slice(b"\r\n");
                        socket.write_all(&chunk).await.is_ok()
                    };
                    if !ok {
                        break;
                    }
                    sent += piece.len() as u64;
                }
            }
            let _ = written.send(sent);
        }
        Reply::Silence => std::future::pending::<()>().await,
        Reply::Trickle => {
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nthe start")
                .await;
            std::future::pending::<()>().await
        }
    }
}

fn client_with(settings: OutboundSettings) -> Outbound {
    runtime::llm::install_crypto();
    Outbound::from_settings(&settings).unwrap()
}

fn client(allow: &[String]) -> Outbound {
    client_with(OutboundSettings {
        allow: allow.to_vec(),
        ..OutboundSettings::default()
    })
}

/// The class an error refused an address for, or a panic naming what came instead.
fn refused_class(
    result: Result<runtime::outbound::OutboundResponse, OutboundError>,
) -> AddressClass {
    match result {
        Err(OutboundError::Refused {
            reason: Refusal::Address { class, .. },
        }) => class.class,
        other => panic!("expected an address refusal, got {other:?}"),
    }
}

/// A resolver with scripted answers (the last one repeats), counting its calls.
#[derive(Debug)]
struct ScriptedLookup {
    answers: Mutex<VecDeque<Vec<IpAddr>>>,
    calls: AtomicUsize,
}

impl ScriptedLookup {
    fn new(answers: &[&[&str]]) -> Arc<ScriptedLookup> {
        Arc::new(ScriptedLookup {
            answers: Mutex::new(
                answers
                    .iter()
                    .map(|ips| ips.iter().map(|ip| ip.parse().unwrap()).collect())
                    .collect(),
            ),
            calls: AtomicUsize::new(0),
        })
    }
}

impl Lookup for ScriptedLookup {
    fn lookup<'a>(
        &'a self,
        _host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, std::io::Result<Vec<SocketAddr>>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut answers = self.answers.lock().unwrap();
        let ips = if answers.len() > 1 {
            answers.pop_front().unwrap()
        } else {
            answers.front().cloned().unwrap_or_default()
        };
        let addrs: Vec<SocketAddr> = ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect();
        Box::pin(std::future::ready(Ok::<_, std::io::Error>(addrs)))
    }
}

#[tokio::test]
async fn a_server_on_loopback_is_refused_before_anything_is_sent() {
    let server = Server::start(|_| Reply::Text("secret")).await;
    let outbound = client(&[]);
    let class = refused_class(outbound.get(&server.url("/")).await);
    assert_eq!(class, AddressClass::Loopback);
    assert_eq!(server.requests(), 0, "refused before connecting");
}

#[tokio::test]
async fn the_same_server_is_fetched_once_its_host_and_port_are_allowlisted() {
    let server = Server::start(|_| Reply::Text("hello")).await;
    let outbound = client(&[server.entry()]);
    let response = outbound.get(&server.url("/file")).await.unwrap();
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.body, b"hello");
    assert_eq!(server.seen()[0].path, "/file");

    // Another port on the same host is not covered by a `host:port` entry.
    let other = Server::start(|_| Reply::Text("other")).await;
    let class = refused_class(outbound.get(&other.url("/")).await);
    assert_eq!(class, AddressClass::Loopback);
    assert_eq!(other.requests(), 0);
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_refused_even_when_its_address_is_allowlisted() {
    let server = Server::start(|_| Reply::Text("secret")).await;
    let outbound = client(&[server.entry()]);
    let result = outbound
        .get(&format!("http://localhost:{}/", server.port))
        .await;
    let Err(OutboundError::Refused {
        reason:
            Refusal::Address {
                host,
                class,
                resolved,
            },
    }) = result
    else {
        panic!("expected a refusal, got {result:?}");
    };
    assert_eq!(host, "localhost");
    assert_eq!(class.class, AddressClass::Loopback);
    assert!(resolved);
    assert_eq!(server.requests(), 0);
}

#[tokio::test]
async fn odd_spellings_of_loopback_are_refused_and_match_the_allowlist_as_the_address_they_mean() {
    let server = Server::start(|_| Reply::Text("hello")).await;
    let port = server.port;
    let spellings = [
        format!("http://2130706433:{port}/"),
        format!("http://0x7f000001:{port}/"),
        format!("http://0177.0.0.1:{port}/"),
        format!("http://127.1:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://[::ffff:7f00:1]:{port}/"),
        format!("http://[::1]:{port}/"),
        format!("http://0.0.0.0:{port}/"),
    ];
    let outbound = client(&[]);
    for url in &spellings {
        let class = refused_class(outbound.get(url).await);
        assert_ne!(class, AddressClass::Public, "{url}");
    }
    assert_eq!(server.requests(), 0);

    // The URL parser turns the IPv4 spellings into 127.0.0.1, so the allowlist entry for
    // 127.0.0.1 covers them, and only them.
    let outbound = client(&[server.entry()]);
    for url in &spellings[..4] {
        let response = outbound.get(url).await.unwrap();
        assert_eq!(response.body, b"hello", "{url}");
    }
    for url in &spellings[4..] {
        assert!(outbound.get(url).await.is_err(), "{url}");
    }
}

#[tokio::test]
async fn an_allowlisted_server_redirecting_to_a_local_address_off_the_list_is_refused_at_the_redirect()
 {
    let inner = Server::start(|_| Reply::Text("internal")).await;
    let inner_url = inner.url("/admin");
    let inner_port = inner.port;
    let outer = Server::start(move |path| match path {
        "/to-inner" => Reply::Redirect(302, inner_url.clone()),
        "/to-localhost" => Reply::Redirect(307, format!("http://localhost:{inner_port}/")),
        "/to-metadata" => Reply::Redirect(301, "http://169.254.169.254/latest/".into()),
        "/to-file" => Reply::Redirect(302, "file:///etc/passwd".into()),
        "/to-self" => Reply::Redirect(302, "/landing".into()),
        _ => Reply::Text("landed"),
    })
    .await;
    let outbound = client(&[outer.entry()]);

    let class = refused_class(outbound.get(&outer.url("/to-inner")).await);
    assert_eq!(class, AddressClass::Loopback);
    let class = refused_class(outbound.get(&outer.url("/to-localhost")).await);
    assert_eq!(class, AddressClass::Loopback);
    let class = refused_class(outbound.get(&outer.url("/to-metadata")).await);
    assert_eq!(class, AddressClass::CloudMetadata);
    let result = outbound.get(&outer.url("/to-file")).await;
    assert!(
        matches!(
            &result,
            Err(OutboundError::Refused {
                reason: Refusal::Scheme { scheme }
            }) if scheme == "file"
        ),
        "{result:?}"
    );
    assert_eq!(
        inner.requests(),
        0,
        "nothing reached the server off the list"
    );

    // A redirect that stays on the allowlisted server is followed.
    let response = outbound.get(&outer.url("/to-self")).await.unwrap();
    assert_eq!(response.body, b"landed");
    assert_eq!(response.url.path(), "/landing");
}

#[tokio::test]
async fn redirects_are_followed_up_to_the_limit_and_no_further() {
    let server = Server::start(|path| {
        let n: u32 = path.trim_start_matches("/hop/").parse().unwrap_or(0);
        if n == 0 {
            Reply::Text("arrived")
        } else {
            Reply::Redirect(302, format!("/hop/{}", n - 1))
        }
    })
    .await;
    let outbound = client_with(OutboundSettings {
        allow: vec![server.entry()],
        max_redirects: 3,
        ..OutboundSettings::default()
    });
    let response = outbound.get(&server.url("/hop/3")).await.unwrap();
    assert_eq!(response.body, b"arrived");
    assert_eq!(server.requests(), 4);

    let result = outbound.get(&server.url("/hop/4")).await;
    assert!(
        matches!(result, Err(OutboundError::TooManyRedirects { limit: 3 })),
        "{result:?}"
    );
    assert_eq!(
        server.requests(),
        4 + 4,
        "the fourth redirect is not followed"
    );

    // A call may allow fewer, not more.
    let result = outbound
        .send(OutboundRequest::get(server.url("/hop/1")).max_redirects(0))
        .await;
    assert!(
        matches!(result, Err(OutboundError::TooManyRedirects { limit: 0 })),
        "{result:?}"
    );
    let result = outbound
        .send(OutboundRequest::get(server.url("/hop/4")).max_redirects(50))
        .await;
    assert!(
        matches!(result, Err(OutboundError::TooManyRedirects { limit: 3 })),
        "{result:?}"
    );
}

#[tokio::test]
async fn credentials_are_not_carried_to_another_origin_by_a_redirect() {
    let second = Server::start(|_| Reply::Text("second")).await;
    let second_url = second.url("/there");
    let first = Server::start(move |path| match path {
        "/away" => Reply::Redirect(307, second_url.clone()),
        "/near" => Reply::Redirect(307, "/here".into()),
        _ => Reply::Text("first"),
    })
    .await;
    let outbound = client(&[first.entry(), second.entry()]);
    let token = HeaderValue::from_static("Bearer tenant-token");
    outbound
        .send(OutboundRequest::get(first.url("/away")).header(AUTHORIZATION, token.clone()))
        .await
        .unwrap();
    outbound
        .send(OutboundRequest::get(first.url("/near")).header(AUTHORIZATION, token))
        .await
        .unwrap();
    let has_token = |s: &Seen| {
        s.head
            .to_ascii_lowercase()
            .contains("authorization: bearer")
    };
    let firsts = first.seen();
    assert!(firsts.iter().all(has_token), "the origin it was meant for");
    assert_eq!(firsts.last().unwrap().path, "/here");
    assert!(!second.seen().iter().any(has_token), "{:?}", second.seen());
}

#[tokio::test]
async fn other_schemes_are_refused() {
    let outbound = client(&[]);
    for (url, scheme) in [
        ("file:///etc/passwd", "file"),
        ("ftp://127.0.0.1/pub", "ftp"),
        ("gopher://127.0.0.1:70/_SET", "gopher"),
        ("data:text/plain,hello", "data"),
    ] {
        let result = outbound.get(url).await;
        match result {
            Err(OutboundError::Refused {
                reason: Refusal::Scheme { scheme: got },
            }) => assert_eq!(got, scheme),
            other => panic!("{url}: {other:?}"),
        }
    }
    assert!(matches!(
        outbound.get("not a url").await,
        Err(OutboundError::InvalidUrl { .. })
    ));
}

#[tokio::test]
async fn a_body_over_the_cap_fails_with_too_large_without_being_read() {
    let server = Server::start(|path| match path {
        // 1 GiB, chunked: no length to refuse on, so the cap is met while reading.
        "/endless" => Reply::Big {
            declared: None,
            total: 1 << 30,
        },
        // Announces 1 GiB: refused on the header.
        "/announced" => Reply::Big {
            declared: Some(1 << 30),
            total: 1 << 30,
        },
        _ => Reply::Text("0123456789"),
    })
    .await;
    let outbound = client_with(OutboundSettings {
        allow: vec![server.entry()],
        max_bytes: 1024 * 1024,
        ..OutboundSettings::default()
    });

    let result = outbound.get(&server.url("/endless")).await;
    assert!(
        matches!(result, Err(OutboundError::TooLarge { limit: 1048576 })),
        "{result:?}"
    );
    let wrote = server.big_reply_wrote().await;
    assert!(
        wrote < 64 << 20,
        "stopped reading early: {wrote} bytes written"
    );

    let result = outbound.get(&server.url("/announced")).await;
    assert!(
        matches!(result, Err(OutboundError::TooLarge { .. })),
        "{result:?}"
    );
    let wrote = server.big_reply_wrote().await;
    assert!(wrote < 64 << 20, "not read at all: {wrote} bytes written");

    // Per call: a cap of exactly the body's size passes, one byte less does not.
    let response = outbound
        .send(OutboundRequest::get(server.url("/small")).max_bytes(10))
        .await
        .unwrap();
    assert_eq!(response.body, b"0123456789");
    let result = outbound
        .send(OutboundRequest::get(server.url("/small")).max_bytes(9))
        .await;
    assert!(
        matches!(result, Err(OutboundError::TooLarge { limit: 9 })),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_request_body_over_its_cap_is_not_sent() {
    let server = Server::start(|_| Reply::Text("ok")).await;
    let outbound = client_with(OutboundSettings {
        allow: vec![server.entry()],
        max_request_bytes: 16,
        ..OutboundSettings::default()
    });
    let request = OutboundRequest::new(reqwest::Method::POST, server.url("/")).body(vec![0u8; 17]);
    let result = outbound.send(request).await;
    assert!(
        matches!(result, Err(OutboundError::RequestTooLarge { limit: 16 })),
        "{result:?}"
    );
    assert_eq!(server.requests(), 0);
}

#[tokio::test]
async fn a_server_that_stalls_fails_with_timeout_within_the_cap() {
    let server = Server::start(|path| match path {
        "/trickle" => Reply::Trickle,
        _ => Reply::Silence,
    })
    .await;
    let outbound = client_with(OutboundSettings {
        allow: vec![server.entry()],
        timeout_secs: 1,
        ..OutboundSettings::default()
    });

    // A call may shorten the deadline…
    let started = Instant::now();
    let result = outbound
        .send(OutboundRequest::get(server.url("/silent")).timeout(Duration::from_millis(200)))
        .await;
    assert!(
        matches!(result, Err(OutboundError::Timeout { limit }) if limit == Duration::from_millis(200)),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    // …but not lengthen it past the configured one, which also covers a body that stops.
    for path in ["/silent", "/trickle"] {
        let started = Instant::now();
        let result = outbound
            .send(OutboundRequest::get(server.url(path)).timeout(Duration::from_secs(60)))
            .await;
        assert!(
            matches!(result, Err(OutboundError::Timeout { limit }) if limit == Duration::from_secs(1)),
            "{path}: {result:?}"
        );
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_secs(1), "{path}: {elapsed:?}");
        assert!(elapsed < Duration::from_secs(3), "{path}: {elapsed:?}");
    }
}

#[tokio::test]
async fn the_connection_goes_to_the_checked_addresses_and_the_name_is_resolved_once_per_hop() {
    let server = Server::start(|_| Reply::Text("pinned")).await;
    // The first answer is checked and used; a later, different answer is never asked for.
    // No DNS knows `pinned.test`, so reaching the server proves the checked address was used.
    let lookup = ScriptedLookup::new(&[&["127.0.0.1"], &["10.0.0.1"]]);
    let outbound = client(&["pinned.test".to_string()]).with_lookup(lookup.clone());
    let response = outbound
        .get(&format!("http://pinned.test:{}/", server.port))
        .await
        .unwrap();
    assert_eq!(response.body, b"pinned");
    assert_eq!(lookup.calls.load(Ordering::SeqCst), 1);
    assert!(
        server.seen()[0]
            .head
            .to_ascii_lowercase()
            .contains("host: pinned.test")
    );
}

#[tokio::test]
async fn a_name_is_refused_unless_every_address_it_resolves_to_is_public() {
    let cases: &[(&[&str], AddressClass)] = &[
        (&["8.8.8.8", "127.0.0.1"], AddressClass::Loopback),
        (
            &["2606:4700:4700::1111", "fd00:ec2::254"],
            AddressClass::CloudMetadata,
        ),
        (&["1.1.1.1", "10.1.2.3"], AddressClass::Private),
        (&["169.254.169.254"], AddressClass::CloudMetadata),
        (&["::ffff:192.168.0.1"], AddressClass::Private),
    ];
    for (answer, expected) in cases {
        let lookup = ScriptedLookup::new(&[answer]);
        let outbound = client(&[]).with_lookup(lookup);
        // Refused before any connection, so no packet goes to the public addresses.
        let class = refused_class(outbound.get("https://mixed.example/").await);
        assert_eq!(class, *expected, "{answer:?}");
    }
    let outbound = client(&[]).with_lookup(ScriptedLookup::new(&[&[]]));
    let result = outbound.get("https://nowhere.example/").await;
    assert!(
        matches!(&result, Err(OutboundError::Unresolvable { host }) if host == "nowhere.example"),
        "{result:?}"
    );
}

/// Log lines written while a test runs on this thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn the_userinfo_and_query_of_a_url_are_never_logged_or_echoed() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = Server::start(|_| Reply::Text("ok")).await;
    let secret_url = |port: u16| {
        format!("http://admin:hunter2-password@127.0.0.1:{port}/hook?token=hunter2-token")
    };

    // Refused: logged once, with the host and the class.
    let err = client(&[]).get(&secret_url(server.port)).await.unwrap_err();
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains("hunter2"), "{text}");
    }
    let logged = logs.text();
    assert_eq!(
        logged.matches("outbound request refused").count(),
        1,
        "{logged}"
    );
    assert!(
        logged.contains("127.0.0.1") && logged.contains("loopback"),
        "{logged}"
    );

    // Allowed: the userinfo becomes the request's basic credentials, and is still not logged.
    let outbound = client(&[server.entry()]);
    outbound.get(&secret_url(server.port)).await.unwrap();
    assert!(
        server.seen()[0]
            .head
            .to_ascii_lowercase()
            .contains("authorization: basic")
    );

    // A transport failure (nothing listens there) carries no URL either.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let err = client(&[format!("127.0.0.1:{closed_port}")])
        .get(&secret_url(closed_port))
        .await
        .unwrap_err();
    assert!(matches!(err, OutboundError::Http(_)), "{err:?}");
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains("hunter2"), "{text}");
    }
    let logged = logs.text();
    assert!(!logged.contains("hunter2"), "{logged}");
}
