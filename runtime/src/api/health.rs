//! `GET /healthz` (the process answers) and `GET /readyz` (its dependencies answer too), and the
//! gate that keeps the API and the webhooks closed until the database role is verified.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError, web};
use shared::ErrorCode;
use shared::health::{Check, Liveness, ReadinessReport, ReadinessStatus, RedisPersistence};

use super::AppState;
use super::error::ApiError;
use crate::redis::Redis;

/// How long one readiness check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the check of the database role stands: the server is not ready until it has verified
/// that its role cannot bypass row-level security.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleCheck {
    /// Not verified yet (Postgres did not answer); why, in our words.
    Pending(String),
    /// Verified: this role is bound by row-level security.
    Verified(String),
    /// The role could bypass row-level security; the server refuses to serve.
    Refused(String),
}

/// What has to happen before the server is ready.
#[derive(Debug)]
pub struct Startup {
    role: std::sync::Mutex<RoleCheck>,
    /// The role is verified (read on every request, so not behind the lock).
    verified: AtomicBool,
}

impl Default for Startup {
    fn default() -> Self {
        Self {
            role: std::sync::Mutex::new(RoleCheck::Pending("not checked yet".into())),
            verified: AtomicBool::new(false),
        }
    }
}

impl Startup {
    pub fn set_role(&self, check: RoleCheck) {
        self.verified
            .store(matches!(check, RoleCheck::Verified(_)), Ordering::Release);
        *self
            .role
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = check;
    }

    pub fn role(&self) -> RoleCheck {
        self.role
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Whether the database role has been verified.
    pub fn is_verified(&self) -> bool {
        self.verified.load(Ordering::Acquire)
    }
}

/// Answers 503 to the API and the webhooks until the database role is verified: until then the
/// role may be one that bypasses row-level security, and nothing may read or write as it. (The
/// health probes and the portal's static files stay open.)
pub async fn until_ready(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let path = req.path();
    let gated = path != "/healthz" && path != "/readyz";
    let ready = req
        .app_data::<web::Data<AppState>>()
        .is_some_and(|state| state.startup.is_verified());
    if gated && !ready {
        let refusal = ApiError::new(
            ErrorCode::Unavailable,
            "Konstruct is starting: its database role is not verified yet. Try again shortly.",
        )
        .with_retry_after(1)
        .error_response();
        return Ok(req.into_response(refusal).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(Liveness {
            status: "alive".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        })
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let role = state.startup.role();
    let (database_role, postgres, redis, migrations, redis_persistence) = tokio::join!(
        check("database_role", async move {
            match role {
                RoleCheck::Verified(name) => Ok(format!(
                    "role {name} is not a superuser, has no BYPASSRLS or CREATEROLE, owns no \
                     tables and can become no role that does"
                )),
                RoleCheck::Pending(why) => Err(format!("not verified yet: {why}")),
                RoleCheck::Refused(why) => Err(why),
            }
        }),
        check("postgres", async {
            state
                .store
                .ping()
                .await
                .map(|()| "reachable as the runtime role".to_string())
                .map_err(|e| e.to_string())
        }),
        check("redis", async {
            state
                .redis
                .ping()
                .await
                .map(|()| "reachable".to_string())
                .map_err(|e| e.to_string())
        }),
        check("migrations", async {
            let status = state
                .store
                .migration_status()
                .await
                .map_err(|e| e.to_string())?;
            let summary = format!(
                "{} of {} applied",
                status.known - status.pending.len(),
                status.known
            );
            if status.is_current() {
                Ok(summary)
            } else {
                Err(format!(
                    "{summary}; pending {:?}, changed after applying {:?}, unknown to this binary {:?}",
                    status.pending, status.mismatched, status.unknown
                ))
            }
        }),
        async {
            tokio::time::timeout(CHECK_TIMEOUT, redis_persistence(&state.redis))
                .await
                .unwrap_or(RedisPersistence::Unknown)
        },
    );
    let checks = vec![database_role, postgres, redis, migrations];
    let ready = checks.iter().all(|c| c.ok);
    let report = ReadinessReport {
        status: if ready {
            ReadinessStatus::Ready
        } else {
            ReadinessStatus::NotReady
        },
        checks,
        redis_persistence,
    };
    if !ready {
        tracing::warn!(report = ?report, "not ready");
    }
    let mut response = if ready {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    response
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(report)
}

/// Runs one check with a timeout. Error texts come from our own error types, which never contain
/// connection strings or secrets.
async fn check(name: &str, fut: impl Future<Output = Result<String, String>>) -> Check {
    let started = Instant::now();
    let outcome = tokio::time::timeout(CHECK_TIMEOUT, fut).await;
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (ok, detail) = match outcome {
        Ok(Ok(detail)) => (true, detail),
        Ok(Err(detail)) => (false, detail),
        Err(_) => (
            false,
            format!("no answer within {} ms", CHECK_TIMEOUT.as_millis()),
        ),
    };
    Check {
        name: name.to_string(),
        ok,
        duration_ms,
        detail,
    }
}

/// How Redis persists what it holds, from its own settings; `Unknown` when it does not say (a
/// managed Redis may refuse `CONFIG`), never an error: durability is reported, not required.
pub async fn redis_persistence(redis: &Redis) -> RedisPersistence {
    let (appendonly, appendfsync, save) = tokio::join!(
        redis.config_get("appendonly"),
        redis.config_get("appendfsync"),
        redis.config_get("save"),
    );
    match (appendonly, appendfsync, save) {
        (Ok(Some(appendonly)), Ok(Some(appendfsync)), Ok(Some(save))) => {
            RedisPersistence::from_settings(&appendonly, &appendfsync, &save)
        }
        _ => RedisPersistence::Unknown,
    }
}

/// Logs once at start how durable the queue is, and warns when a Redis restart would empty it.
pub async fn log_redis_persistence(redis: Redis) {
    match redis_persistence(&redis).await {
        RedisPersistence::None => tracing::warn!(
            redis.persistence = %RedisPersistence::None,
            "Redis persists nothing: a Redis restart loses every queued message; \
             run it with --appendonly yes --appendfsync everysec (README, Durability)"
        ),
        other => tracing::info!(redis.persistence = %other, "Redis persistence"),
    }
}

/// The readiness URL of the server these settings start, as seen from the same machine: an
/// unspecified bind address (`0.0.0.0`, `::`) is reached at loopback.
pub fn readyz_url(server: &crate::config::ServerSettings) -> String {
    let host = match server.host {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_owned(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_owned(),
        std::net::IpAddr::V4(ip) => ip.to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
    };
    format!("http://{host}:{}/readyz", server.port)
}

/// Why a health check failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    #[error("not an http:// URL with a host")]
    BadUrl,
    #[error("could not reach it: {0}")]
    Unreachable(std::io::Error),
    #[error("the answer is not HTTP")]
    NotHttp,
    #[error("not ready (HTTP {0})")]
    NotReady(u16),
}

/// One blocking `GET` of `url` (plain HTTP, as a container's health check on loopback needs):
/// `Ok` only for a 200 within `timeout`, for connecting, sending and reading the status line.
pub fn probe(url: &str, timeout: Duration) -> Result<(), HealthcheckError> {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpStream, ToSocketAddrs};

    let rest = url
        .strip_prefix("http://")
        .ok_or(HealthcheckError::BadUrl)?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    if authority.is_empty() || authority.contains('@') {
        return Err(HealthcheckError::BadUrl);
    }
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let deadline = Instant::now() + timeout;
    let address = with_port
        .to_socket_addrs()
        .map_err(HealthcheckError::Unreachable)?
        .next()
        .ok_or(HealthcheckError::BadUrl)?;
    let remaining = |now: Instant| {
        deadline
            .checked_duration_since(now)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::TimedOut))
    };
    let mut stream = TcpStream::connect_timeout(
        &address,
        remaining(Instant::now()).map_err(HealthcheckError::Unreachable)?,
    )
    .map_err(HealthcheckError::Unreachable)?;
    let left = remaining(Instant::now()).map_err(HealthcheckError::Unreachable)?;
    stream
        .set_read_timeout(Some(left))
        .and_then(|()| stream.set_write_timeout(Some(left)))
        .map_err(HealthcheckError::Unreachable)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nUser-Agent: konstruct-healthcheck\r\n\r\n"
    )
    .map_err(HealthcheckError::Unreachable)?;
    let mut status_line = String::new();
    BufReader::new(stream.take(1024))
        .read_line(&mut status_line)
        .map_err(HealthcheckError::Unreachable)?;
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|s| s.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or(HealthcheckError::NotHttp)?;
    if status == 200 {
        Ok(())
    } else {
        Err(HealthcheckError::NotReady(status))
    }
}

#[cfg(test)]
mod healthcheck_tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    /// A one-shot server that answers the first request with `answer` and hands back what it got.
    fn answer_once(answer: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/readyz", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0_u8; 512];
            while !request.ends_with(b"\r\n\r\n") {
                let n = socket.read(&mut buf).unwrap();
                assert!(n > 0, "the client closed before ending its request");
                request.extend_from_slice(&buf[..n]);
            }
            socket.write_all(answer.as_bytes()).unwrap();
            String::from_utf8(request).unwrap()
        });
        (url, handle)
    }

    #[test]
    fn a_200_is_healthy_and_the_request_is_a_plain_get_of_the_path() {
        let (url, server) = answer_once("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        probe(&url, Duration::from_secs(5)).unwrap();
        let request = server.join().unwrap();
        assert!(request.starts_with("GET /readyz HTTP/1.1\r\n"), "{request}");
        assert!(request.contains("\r\nHost: 127.0.0.1:"), "{request}");
    }

    #[test]
    fn a_503_or_a_non_http_answer_is_unhealthy() {
        let (url, server) = answer_once("HTTP/1.1 503 Service Unavailable\r\n\r\n");
        assert!(matches!(
            probe(&url, Duration::from_secs(5)),
            Err(HealthcheckError::NotReady(503))
        ));
        server.join().unwrap();
        let (url, server) = answer_once("SSH-2.0-OpenSSH\r\n\r\n");
        assert!(matches!(
            probe(&url, Duration::from_secs(5)),
            Err(HealthcheckError::NotHttp)
        ));
        server.join().unwrap();
    }

    #[test]
    fn a_server_that_never_answers_times_out() {
        // Accepts (the kernel's backlog does) but never writes.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/readyz", listener.local_addr().unwrap());
        let started = Instant::now();
        assert!(matches!(
            probe(&url, Duration::from_millis(300)),
            Err(HealthcheckError::Unreachable(_))
        ));
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(listener);
    }

    #[test]
    fn only_plain_http_urls_with_a_host_are_checked() {
        for url in [
            "https://127.0.0.1/readyz",
            "127.0.0.1:8080",
            "http:///readyz",
            "http://user@host/",
        ] {
            assert!(
                matches!(
                    probe(url, Duration::from_secs(1)),
                    Err(HealthcheckError::BadUrl)
                ),
                "{url}"
            );
        }
    }

    #[test]
    fn every_bind_address_is_checked_at_loopback() {
        let mut server = crate::config::Settings::default().server;
        server.port = 8080;
        server.host = "0.0.0.0".parse().unwrap();
        assert_eq!(readyz_url(&server), "http://127.0.0.1:8080/readyz");
        server.host = "::".parse().unwrap();
        assert_eq!(readyz_url(&server), "http://[::1]:8080/readyz");
        server.host = "10.1.2.3".parse().unwrap();
        assert_eq!(readyz_url(&server), "http://10.1.2.3:8080/readyz");
    }
}
