//! The real SMTP server the tests send mail through (MailDev, started by the test command), and
//! reading what it received over its REST API. Every test mails addresses of its own, so tests
//! running at once never read each other's mail.

use std::time::Duration;

use serde::Deserialize;

/// The test mail server's SMTP URL (with the credentials it requires).
pub fn smtp_url() -> String {
    std::env::var("TEST_SMTP_URL")
        .unwrap_or_else(|_| "smtp://konstruct:test-mail-secret@127.0.0.1:2525".into())
}

/// Where its REST API answers.
pub fn api() -> String {
    std::env::var("TEST_MAILDEV_URL").unwrap_or_else(|_| "http://127.0.0.1:2580".into())
}

/// The tests' SMTP-over-TLS server (`smtps://`, a certificate from the tests' own authority).
pub fn smtps_url() -> String {
    std::env::var("TEST_SMTPS_URL")
        .unwrap_or_else(|_| "smtps://konstruct:test-mail-secret@localhost:2465".into())
}

/// Where the TLS server's REST API answers.
pub fn tls_api() -> String {
    std::env::var("TEST_MAILDEV_TLS_URL").unwrap_or_else(|_| "http://127.0.0.1:2581".into())
}

/// The authority that signed the TLS server's certificate.
pub fn tls_ca_file() -> std::path::PathBuf {
    std::env::var("TEST_SMTP_CA_FILE").map_or_else(
        |_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap())
                .join(".cache/konstruct/mail/tls/ca.pem")
        },
        Into::into,
    )
}

/// The SMTP server's own address (for a test's forwarder to reach it).
pub fn smtp_addr() -> String {
    let url = url::Url::parse(&smtp_url()).unwrap();
    format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(25))
}

#[derive(Debug, Clone, Deserialize)]
pub struct Address {
    pub address: String,
    #[serde(default)]
    pub name: String,
}

/// A mail as the server received it.
#[derive(Debug, Clone, Deserialize)]
pub struct Mail {
    pub subject: String,
    pub from: Vec<Address>,
    pub to: Vec<Address>,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub html: String,
}

impl Mail {
    /// The token of the link to `path` in the mail's text (`…{path}#token=…`).
    pub fn token(&self, path: &str) -> String {
        let marker = format!("{path}#token=");
        let start = self
            .text
            .find(&marker)
            .unwrap_or_else(|| panic!("no {marker} link in the mail: {}", self.text))
            + marker.len();
        self.text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect()
    }

    /// The whole link to `path`.
    pub fn link(&self, path: &str) -> String {
        let marker = format!("{path}#token=");
        let at = self.text.find(&marker).expect("a link in the mail");
        let start = self.text[..at].rfind("http").expect("an absolute link");
        self.text[start..]
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    }
}

/// Every mail the test server received for `to`, oldest first.
pub async fn mails_to(to: &str) -> Vec<Mail> {
    mails_at(&api(), to).await
}

/// Every mail the server whose API is at `api` received for `to`, oldest first.
pub async fn mails_at(api: &str, to: &str) -> Vec<Mail> {
    let res = reqwest::Client::new()
        // Filtered by the server, so a poll reads this test's mail only.
        .get({
            let mut url = url::Url::parse(&format!("{api}/api/email")).unwrap();
            url.query_pairs_mut()
                .append_pair("to.address", &to.to_lowercase());
            url
        })
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the test mail server's API ({api}) does not answer ({e}): run the tests with \
                 scripts/test, which starts it"
            )
        });
    let mut mails: Vec<Mail> = res.json().await.unwrap();
    mails.retain(|m| m.to.iter().any(|a| a.address.eq_ignore_ascii_case(to)));
    mails
}

/// Waits until at least `n` mails for `to` arrived at the test server, and returns them (oldest
/// first).
pub async fn wait_for(to: &str, n: usize) -> Vec<Mail> {
    wait_at(&api(), to, n).await
}

/// Like `wait_for`, at the server whose API is at `api`.
pub async fn wait_at(api: &str, to: &str, n: usize) -> Vec<Mail> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mails = mails_at(api, to).await;
        if mails.len() >= n {
            return mails;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} mails for {to} did not arrive; got {}",
            mails.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
