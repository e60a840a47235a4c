//! The one mail sender: `lettre` over SMTP, configured by URL (`KONSTRUCT_SMTP_URL`), with pooled
//! connections. Nothing sends from a request: mail goes out from durable jobs (`people::jobs`),
//! so a slow or failing mail server never holds a request, and a failed send is retried and shown.
//!
//! URLs: `smtp://host:25` (plain), `smtp://user:pass@host:587?tls=required` (STARTTLS, refused if
//! the server cannot), `smtp://…?tls=opportunistic`, `smtps://user:pass@host:465` (TLS from the
//! first byte). Certificates are checked against the web's roots, plus `KONSTRUCT_SMTP_CA_FILE`
//! when set (a private relay's own authority).

pub mod templates;

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::MailSettings;

/// One mail to one person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Why a mail was not sent, in our own words (the server's text stays in the log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailError {
    /// Worth trying again: the server could not be reached, timed out or said "later" (4xx).
    #[error("{0}")]
    Transient(String),
    /// Trying again will not help: the server refused the mail or the address (5xx).
    #[error("{0}")]
    Permanent(String),
}

/// Why the mail settings cannot be used: found at start.
#[derive(Debug, thiserror::Error)]
pub enum MailConfigError {
    #[error("mail.smtp_url {0}")]
    Url(String),
    #[error("mail.from {0}")]
    From(String),
    #[error("mail.smtp_ca_file: {0}")]
    Ca(String),
}

/// How long one SMTP command may take before the attempt counts as timed out.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);
/// Connections kept open to the mail server, at most.
const POOL_SIZE: u32 = 4;

/// Sends mail through the configured SMTP server.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// `host:port`, for logs (never the credentials).
    server: String,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("server", &self.server)
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

/// The parts of an SMTP URL, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpUrl {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub credentials: Option<(String, String)>,
}

/// How the connection to the mail server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// No TLS (a relay on the same host or network).
    Plain,
    /// STARTTLS, refused if the server does not offer it.
    StartTls,
    /// STARTTLS when offered, else plain.
    Opportunistic,
    /// TLS from the first byte (`smtps://`).
    Tls,
}

impl SmtpUrl {
    /// Parses `smtp://` or `smtps://` with an optional `user:pass@` and `?tls=required|opportunistic`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let url =
            url::Url::parse(text.trim()).map_err(|_| "must be a URL such as smtp://host:25")?;
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("must name a host")?
            .trim_matches(|c| c == '[' || c == ']')
            .to_string();
        let tls = url
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.into_owned());
        if url.query_pairs().any(|(k, _)| k != "tls") {
            return Err("takes no query parameter but tls".into());
        }
        let (security, default_port) = match (url.scheme(), tls.as_deref()) {
            ("smtp", None) => (Security::Plain, 25),
            ("smtp", Some("required")) => (Security::StartTls, 587),
            ("smtp", Some("opportunistic")) => (Security::Opportunistic, 587),
            ("smtps", None) => (Security::Tls, 465),
            ("smtp" | "smtps", Some(_)) => {
                return Err("has tls= other than required or opportunistic (smtp:// only)".into());
            }
            _ => return Err("must start with smtp:// or smtps://".into()),
        };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| "has credentials that are not UTF-8".to_string())
        };
        let credentials = if url.username().is_empty() {
            None
        } else {
            Some((
                decode(url.username())?,
                decode(url.password().unwrap_or(""))?,
            ))
        };
        Ok(Self {
            host,
            port: url.port().unwrap_or(default_port),
            security,
            credentials,
        })
    }
}

impl Mailer {
    /// A mailer for the settings, or `None` when no SMTP URL is set. Opens no connection yet.
    pub fn from_settings(settings: &MailSettings) -> Result<Option<Self>, MailConfigError> {
        let Some(url) = &settings.smtp_url else {
            return Ok(None);
        };
        let url = SmtpUrl::parse(url.expose()).map_err(MailConfigError::Url)?;
        let from: Mailbox = settings.from.parse().map_err(|_| {
            MailConfigError::From(
                "is not a mail address such as Konstruct <no-reply@example.com>".into(),
            )
        })?;
        let roots = match &settings.smtp_ca_file {
            None => None,
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| MailConfigError::Ca(format!("cannot be read: {e}")))?;
                Some(
                    Certificate::from_pem(&pem)
                        .map_err(|_| MailConfigError::Ca("is not a PEM certificate".into()))?,
                )
            }
        };
        let tls = |host: &str| -> Result<TlsParameters, MailConfigError> {
            let mut builder = TlsParameters::builder(host.to_string());
            if let Some(root) = roots.clone() {
                builder = builder.add_root_certificate(root);
            }
            builder.build_rustls().map_err(|e| {
                MailConfigError::Url(format!("has TLS settings that cannot be used: {e}"))
            })
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(url.host.clone())
            .port(url.port)
            .timeout(Some(COMMAND_TIMEOUT))
            .pool_config(PoolConfig::new().max_size(POOL_SIZE));
        builder = match url.security {
            Security::Plain => builder,
            Security::StartTls => builder.tls(Tls::Required(tls(&url.host)?)),
            Security::Opportunistic => builder.tls(Tls::Opportunistic(tls(&url.host)?)),
            Security::Tls => builder.tls(Tls::Wrapper(tls(&url.host)?)),
        };
        if let Some((user, pass)) = url.credentials {
            builder = builder.credentials(Credentials::new(user, pass));
        }
        Ok(Some(Self {
            transport: builder.build(),
            from,
            server: format!("{}:{}", url.host, url.port),
        }))
    }

    /// The address mail comes from.
    pub fn from_address(&self) -> &Mailbox {
        &self.from
    }

    /// Sends one mail (HTML with a plain-text alternative), with the sender's name shown as
    /// `sender_name` (the tenant's) over our own address.
    pub async fn send(&self, email: &Email, sender_name: Option<&str>) -> Result<(), MailError> {
        let to: Mailbox = email
            .to
            .parse()
            .map_err(|_| MailError::Permanent("the recipient's address cannot be used".into()))?;
        let from = match sender_name {
            Some(name) => Mailbox::new(Some(one_line(name, 80)), self.from.email.clone()),
            None => self.from.clone(),
        };
        let message = Message::builder()
            .from(from)
            .to(to)
            .subject(one_line(&email.subject, 200))
            .multipart(MultiPart::alternative_plain_html(
                email.text.clone(),
                email.html.clone(),
            ))
            .map_err(|_| MailError::Permanent("the mail could not be built".into()))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(smtp.server = %self.server, error = %e, "a mail was not sent");
                Err(classify(&e))
            }
        }
    }
}

/// Our words for an SMTP failure: the server's "no" for good, anything else worth retrying.
fn classify(e: &lettre::transport::smtp::Error) -> MailError {
    if e.is_permanent() {
        let code = e.status().map(|c| c.to_string()).unwrap_or_default();
        MailError::Permanent(format!("the mail server refused the mail ({code})"))
    } else if e.is_transient() {
        let code = e.status().map(|c| c.to_string()).unwrap_or_default();
        MailError::Transient(format!("the mail server asked to try later ({code})"))
    } else if e.is_timeout() {
        MailError::Transient("the mail server did not answer in time".into())
    } else if e.is_tls() || tls_failure(e) {
        MailError::Transient("a secure connection to the mail server could not be made".into())
    } else {
        MailError::Transient("the mail server could not be reached".into())
    }
}

/// Whether the TLS handshake failed (an untrusted or wrong certificate, no common protocol):
/// lettre reports it as a connection error with rustls' error inside.
fn tls_failure(e: &lettre::transport::smtp::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if cause.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            return true;
        }
        source = cause.source();
    }
    false
}

/// `text` on one line (no header injection), at most `max` characters.
fn one_line(text: &str, max: usize) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect::<String>()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_name_their_security_and_default_port() {
        let plain = SmtpUrl::parse("smtp://127.0.0.1:1025").unwrap();
        assert_eq!((plain.port, plain.security), (1025, Security::Plain));
        assert_eq!(plain.credentials, None);
        let starttls =
            SmtpUrl::parse("smtp://us%40er:p%3Ass@mail.example.com?tls=required").unwrap();
        assert_eq!(
            (starttls.port, starttls.security),
            (587, Security::StartTls)
        );
        assert_eq!(
            starttls.credentials,
            Some(("us@er".to_string(), "p:ss".to_string()))
        );
        assert_eq!(
            SmtpUrl::parse("smtp://m.example.com?tls=opportunistic")
                .unwrap()
                .security,
            Security::Opportunistic
        );
        let tls = SmtpUrl::parse("smtps://u:p@m.example.com").unwrap();
        assert_eq!((tls.port, tls.security), (465, Security::Tls));
        for bad in [
            "m.example.com:25",
            "http://m.example.com",
            "smtp://m.example.com?tls=maybe",
            "smtps://m.example.com?tls=required",
            "smtp://m.example.com?x=1",
            "smtp://",
        ] {
            assert!(SmtpUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn header_text_is_one_bounded_line() {
        assert_eq!(
            one_line("Acme\r\nBcc: x@evil.test", 100),
            "Acme  Bcc: x@evil.test"
        );
        assert_eq!(one_line(&"a".repeat(300), 200).len(), 200);
    }
}
