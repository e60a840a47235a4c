//! The Graph API calls Konstruct makes for WhatsApp: reading a business number, listing a
//! business account's numbers, subscribing the app to its webhooks, and posting messages.
//! The base URL is the operator's configuration (Meta's, or a fake in tests), never a user's.

use std::time::Duration;

use serde::Deserialize;

/// Meta's error object (`{"error":{"message","type","code","error_subcode"}}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphError {
    pub http: u16,
    pub code: Option<i64>,
    pub subcode: Option<i64>,
    pub message: String,
}

impl std::fmt::Display for GraphError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.code {
            Some(code) => write!(f, "{} (code {code})", self.message),
            None => write!(f, "{} (HTTP {})", self.message, self.http),
        }
    }
}

/// Why a call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Meta answered with an error.
    #[error("WhatsApp refused the request: {0}")]
    Refused(GraphError),
    /// Meta could not be reached, timed out, or answered something we do not understand.
    #[error("WhatsApp could not be reached: {0}")]
    Unreachable(String),
}

/// Meta's error codes Konstruct acts on.
pub mod codes {
    /// The access token is invalid, expired or revoked.
    pub const ACCESS_TOKEN: i64 = 190;
    /// The app lacks a permission for the object.
    pub const PERMISSION: i64 = 200;
    /// The object does not exist or cannot be read with this token.
    pub const NO_OBJECT: i64 = 100;
    /// Re-engagement: more than 24 hours since the customer last wrote.
    pub const RE_ENGAGEMENT: i64 = 131047;
    /// The business number's throughput was exceeded.
    pub const THROUGHPUT: i64 = 130429;
    /// Too many messages from this number to one user in a short time.
    pub const PAIR_RATE: i64 = 131056;
    /// The recipient cannot receive this message (not on WhatsApp, blocked, …).
    pub const UNDELIVERABLE: i64 = 131026;
}

/// A business number, as the Graph API describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PhoneNumber {
    pub id: String,
    #[serde(default)]
    pub display_phone_number: String,
    #[serde(default)]
    pub verified_name: String,
    #[serde(default)]
    pub quality_rating: Option<String>,
    #[serde(default)]
    pub code_verification_status: Option<String>,
}

/// A Graph API client for one base URL and version.
#[derive(Debug, Clone)]
pub struct GraphApi {
    http: reqwest::Client,
    base: String,
    version: String,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: ErrorObject,
}

#[derive(Deserialize)]
struct ErrorObject {
    #[serde(default)]
    message: String,
    code: Option<i64>,
    error_subcode: Option<i64>,
}

impl GraphApi {
    pub fn new(base: &str, version: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .connect_timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            base: base.trim_end_matches('/').to_string(),
            version: version.to_string(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}/{path}", self.base, self.version)
    }

    /// Sends a request and reads the answer: the JSON body of a 2xx, or Meta's error.
    async fn call(&self, req: reqwest::RequestBuilder) -> Result<serde_json::Value, CallError> {
        let res = req
            .send()
            .await
            .map_err(|e| CallError::Unreachable(e.without_url().to_string()))?;
        let status = res.status();
        let bytes = res
            .bytes()
            .await
            .map_err(|e| CallError::Unreachable(e.without_url().to_string()))?;
        if status.is_success() {
            // Taken, even if the answer cannot be read: calling again could send twice.
            return Ok(serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null));
        }
        match serde_json::from_slice::<ErrorAnswer>(&bytes) {
            Ok(ErrorAnswer { error }) => Err(CallError::Refused(GraphError {
                http: status.as_u16(),
                code: error.code,
                subcode: error.error_subcode,
                message: error.message.chars().take(300).collect(),
            })),
            Err(_) if status.is_server_error() => {
                Err(CallError::Unreachable(format!("HTTP {status}")))
            }
            Err(_) => Err(CallError::Refused(GraphError {
                http: status.as_u16(),
                code: None,
                subcode: None,
                message: format!("HTTP {status}"),
            })),
        }
    }

    /// `GET /{phone_number_id}`: the number, if this token can read it.
    pub async fn phone_number(&self, token: &str, id: &str) -> Result<PhoneNumber, CallError> {
        let answer = self
            .call(
                self.http
                    .get(format!(
                        "{}?fields=id,display_phone_number,verified_name,quality_rating,\
                         code_verification_status",
                        self.url(id)
                    ))
                    .bearer_auth(token),
            )
            .await?;
        serde_json::from_value(answer)
            .map_err(|_| CallError::Unreachable("a phone number Meta did not describe".into()))
    }

    /// `GET /{waba_id}/phone_numbers`: the business account's numbers (first page: an account
    /// has a handful).
    pub async fn account_numbers(
        &self,
        token: &str,
        waba_id: &str,
    ) -> Result<Vec<PhoneNumber>, CallError> {
        #[derive(Deserialize)]
        struct List {
            #[serde(default)]
            data: Vec<PhoneNumber>,
        }
        let answer = self
            .call(
                self.http
                    .get(self.url(&format!("{waba_id}/phone_numbers?limit=100")))
                    .bearer_auth(token),
            )
            .await?;
        let list: List = serde_json::from_value(answer)
            .map_err(|_| CallError::Unreachable("a number list Meta did not describe".into()))?;
        Ok(list.data)
    }

    /// `POST /{waba_id}/subscribed_apps`: the app receives the account's webhooks.
    pub async fn subscribe(&self, token: &str, waba_id: &str) -> Result<(), CallError> {
        let answer = self
            .call(
                self.http
                    .post(self.url(&format!("{waba_id}/subscribed_apps")))
                    .bearer_auth(token),
            )
            .await?;
        if answer["success"].as_bool() == Some(true) {
            Ok(())
        } else {
            Err(CallError::Unreachable(
                "Meta did not confirm the subscription".into(),
            ))
        }
    }

    /// `POST /{phone_number_id}/messages` with `body`; the answer's JSON.
    pub async fn post_message(
        &self,
        token: &str,
        phone_number_id: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, CallError> {
        self.call(
            self.http
                .post(self.url(&format!("{phone_number_id}/messages")))
                .bearer_auth(token)
                .json(body),
        )
        .await
    }
}
