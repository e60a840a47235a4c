//! What Meta checks in a send and how it says no: the Graph error body, the validation of a
//! `POST …/messages` body (`messaging_product`, `to`, `text.body` length, templates) and the
//! rules applied to a valid send (approved templates, throughput, the 24-hour window).

use std::time::Duration;

use serde_json::{Value, json};

use super::{SentKind, State, WINDOW, fbtrace_id};

/// A Graph API error: its HTTP status and `{"error":{…}}` body.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct GraphError {
    pub(super) http: u16,
    pub(super) body: Value,
}

/// The `error_data.details` Meta gives with a WhatsApp error code.
pub(super) fn details_for(code: u32) -> Option<&'static str> {
    Some(match code {
        131047 => {
            "Message failed to send because more than 24 hours have passed since the customer \
             last replied to this number."
        }
        130429 => "Cloud API message throughput has been reached.",
        131056 => {
            "Message failed to send because there were too many messages sent from this phone \
             number to the same phone number in a short period of time."
        }
        131026 => "Message Undeliverable.",
        131000 => "Something went wrong.",
        132001 => "The template does not exist in the specified language.",
        132000 => "The number of variable parameter values does not match the template.",
        132018 => {
            "Param text cannot have new-line/tab characters or more than 4 consecutive spaces"
        }
        _ => return None,
    })
}

impl GraphError {
    pub(super) fn new(
        http: u16,
        kind: &str,
        code: u32,
        subcode: Option<u32>,
        message: &str,
    ) -> GraphError {
        let mut error = json!({
            "message": message,
            "type": kind,
            "code": code,
            "fbtrace_id": fbtrace_id(),
        });
        if let Some(subcode) = subcode {
            error["error_subcode"] = json!(subcode);
        }
        if let Some(details) = details_for(code) {
            error["error_data"] = json!({ "messaging_product": "whatsapp", "details": details });
        }
        if matches!(code, 1 | 2) {
            error["is_transient"] = json!(true);
        }
        GraphError {
            http,
            body: json!({ "error": error }),
        }
    }

    /// `(#100) …`: a parameter is missing or wrong.
    pub(super) fn param(message: &str) -> GraphError {
        GraphError::new(400, "OAuthException", 100, None, message)
    }

    /// A WhatsApp error the way Meta words it, e.g. `(#131047) Re-engagement message`.
    pub(super) fn whatsapp(
        http: u16,
        code: u32,
        subcode: Option<u32>,
        message: &str,
    ) -> GraphError {
        GraphError::new(http, "OAuthException", code, subcode, message)
    }

    /// 100/33: the object does not exist or this token cannot see it (Meta does not say which).
    pub(super) fn no_object(method: &str, id: &str) -> GraphError {
        GraphError::new(
            400,
            "GraphMethodException",
            100,
            Some(33),
            &format!(
                "Unsupported {method} request. Object with ID '{id}' does not exist, cannot be \
                 loaded due to missing permissions, or does not support this operation. Please \
                 read the Graph API documentation at https://developers.facebook.com/docs/graph-api"
            ),
        )
    }
}

/// A parsed `POST …/messages` body.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Request {
    Read {
        message_id: String,
    },
    Message {
        /// As given; Meta echoes it as `contacts[].input`.
        to: String,
        wa_id: String,
        kind: SentKind,
        context: Option<String>,
    },
}

/// The message types Meta accepts besides `text` and `template`, each with an object of that
/// name.
const OTHER_TYPES: [&str; 9] = [
    "audio",
    "contacts",
    "document",
    "image",
    "interactive",
    "location",
    "reaction",
    "sticker",
    "video",
];

/// Validates a send the way Meta does and says what it asks for.
pub(super) fn parse_send(body: &Value) -> Result<Request, GraphError> {
    match body.get("messaging_product") {
        None => {
            return Err(GraphError::param(
                "(#100) The parameter messaging_product is required.",
            ));
        }
        Some(p) if p != "whatsapp" => {
            return Err(GraphError::param(&format!(
                "(#100) Param messaging_product must be one of {{WHATSAPP}} - got {p}."
            )));
        }
        Some(_) => {}
    }
    if let Some(status) = body.get("status") {
        if status != "read" {
            return Err(GraphError::param(&format!(
                "(#100) Param status must be one of {{READ}} - got {status}."
            )));
        }
        let Some(message_id) = body["message_id"].as_str().filter(|id| !id.is_empty()) else {
            return Err(GraphError::param(
                "(#100) The parameter message_id is required.",
            ));
        };
        if let Some(typing) = body.get("typing_indicator")
            && typing["type"] != "text"
        {
            return Err(GraphError::param(
                "(#100) Param typing_indicator['type'] must be one of {TEXT}.",
            ));
        }
        return Ok(Request::Read {
            message_id: message_id.to_string(),
        });
    }
    if let Some(rt) = body.get("recipient_type")
        && rt != "individual"
    {
        return Err(GraphError::param(&format!(
            "(#100) Param recipient_type must be one of {{INDIVIDUAL}} - got {rt}."
        )));
    }
    let Some(to) = body["to"].as_str() else {
        return Err(GraphError::param("(#100) The parameter to is required."));
    };
    let wa_id: String = to.chars().filter(char::is_ascii_digit).collect();
    let phone_like = to
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')'));
    if wa_id.len() < 7 || wa_id.len() > 15 || !phone_like {
        return Err(GraphError::param(&format!(
            "(#100) Invalid parameter: to must be a phone number, got \"{to}\"."
        )));
    }
    let context = match body.get("context") {
        None => None,
        Some(c) => match c["message_id"].as_str() {
            Some(id) => Some(id.to_string()),
            None => {
                return Err(GraphError::param(
                    "(#100) The parameter context['message_id'] is required.",
                ));
            }
        },
    };
    let kind = match body.get("type").map(|t| t.as_str()) {
        // `type` is optional and defaults to text.
        None | Some(Some("text")) => parse_text(body)?,
        Some(Some("template")) => parse_template(body)?,
        Some(Some(t)) if OTHER_TYPES.contains(&t) => match body.get(t) {
            Some(payload) if payload.is_object() || payload.is_array() => SentKind::Other {
                kind: t.to_string(),
                payload: payload.clone(),
            },
            _ => {
                return Err(GraphError::param(&format!(
                    "(#100) The parameter {t} is required."
                )));
            }
        },
        Some(t) => {
            let got = t.map_or_else(|| body["type"].to_string(), str::to_string);
            return Err(GraphError::param(&format!(
                "(#100) Param type must be one of {{AUDIO, CONTACTS, DOCUMENT, IMAGE, \
                 INTERACTIVE, LOCATION, REACTION, STICKER, TEMPLATE, TEXT, VIDEO}} - got \"{got}\"."
            )));
        }
    };
    Ok(Request::Message {
        to: to.to_string(),
        wa_id,
        kind,
        context,
    })
}

/// The longest text message, in characters (not bytes).
const MAX_TEXT: usize = 4096;

fn parse_text(body: &Value) -> Result<SentKind, GraphError> {
    if !body["text"].is_object() {
        return Err(GraphError::param("(#100) The parameter text is required."));
    }
    let Some(text) = body["text"]["body"].as_str() else {
        return Err(GraphError::param(
            "(#100) The parameter text['body'] is required.",
        ));
    };
    let chars = text.chars().count();
    if chars == 0 {
        return Err(GraphError::param(
            "(#100) Param text['body'] must be at least 1 character long.",
        ));
    }
    if chars > MAX_TEXT {
        return Err(GraphError::param(
            "(#100) Param text['body'] must be at most 4096 characters long.",
        ));
    }
    Ok(SentKind::Text {
        body: text.to_string(),
    })
}

fn parse_template(body: &Value) -> Result<SentKind, GraphError> {
    let template = &body["template"];
    if !template.is_object() {
        return Err(GraphError::param(
            "(#100) The parameter template is required.",
        ));
    }
    let Some(name) = template["name"].as_str().filter(|n| !n.is_empty()) else {
        return Err(GraphError::param(
            "(#100) The parameter template['name'] is required.",
        ));
    };
    let Some(language) = template["language"]["code"]
        .as_str()
        .filter(|c| !c.is_empty())
    else {
        return Err(GraphError::param(
            "(#100) The parameter template['language']['code'] is required.",
        ));
    };
    let mut params = Vec::new();
    match &template["components"] {
        Value::Null => {}
        Value::Array(components) => {
            for c in components {
                if c["type"].as_str().is_none() {
                    return Err(GraphError::param(
                        "(#100) The parameter template['components'][]['type'] is required.",
                    ));
                }
                for p in c["parameters"].as_array().into_iter().flatten() {
                    if p["type"] != "text" {
                        continue;
                    }
                    let Some(text) = p["text"].as_str() else {
                        return Err(GraphError::param(
                            "(#100) The parameter text is required for a text parameter.",
                        ));
                    };
                    if text.contains(['\n', '\t']) || text.contains("     ") {
                        return Err(GraphError::whatsapp(
                            400,
                            132018,
                            None,
                            "(#132018) There was an issue with the parameters in your template.",
                        ));
                    }
                    params.push(text.to_string());
                }
            }
        }
        _ => {
            return Err(GraphError::param(
                "(#100) Param template['components'] must be an array.",
            ));
        }
    }
    Ok(SentKind::Template {
        name: name.to_string(),
        language: language.to_string(),
        params,
    })
}

/// Meta's own checks of a valid send: the templates the WABA approved, the number's
/// throughput and the 24-hour window. Counts it against the throughput when it passes.
pub(super) fn judge(
    state: &mut State,
    phone_number_id: &str,
    wa_id: &str,
    kind: &SentKind,
    fail_later: &mut Option<(u32, String)>,
) -> Result<(), GraphError> {
    if let SentKind::Template {
        name,
        language,
        params,
    } = kind
    {
        let waba = state
            .number(phone_number_id)
            .map(|n| n.number.waba_id.clone())
            .unwrap_or_default();
        if let Some(approved) = state.templates.get(&waba).filter(|t| !t.is_empty()) {
            let Some(t) = approved
                .iter()
                .find(|t| &t.name == name && &t.language == language)
            else {
                return Err(GraphError::whatsapp(
                    404,
                    132001,
                    None,
                    "(#132001) Template name does not exist in the translation",
                ));
            };
            if t.params != params.len() {
                return Err(GraphError::whatsapp(
                    400,
                    132000,
                    None,
                    "(#132000) Number of parameters does not match the expected number of params",
                ));
            }
        }
    }
    let now = state.now_instant();
    if let Some(limit) = state.throughput {
        let recent = state.recent.entry(phone_number_id.to_string()).or_default();
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            recent.pop_front();
        }
        if recent.len() >= limit as usize {
            return Err(GraphError::whatsapp(
                400,
                130429,
                None,
                "(#130429) Rate limit hit",
            ));
        }
    }
    let free_form = !matches!(kind, SentKind::Template { .. });
    if free_form && state.enforce_window {
        let key = (phone_number_id.to_string(), wa_id.to_string());
        let open = state
            .last_inbound
            .get(&key)
            .is_some_and(|last| state.now().duration_since(*last).unwrap_or_default() < WINDOW);
        if !open {
            if !state.window_async {
                return Err(GraphError::whatsapp(
                    400,
                    131047,
                    None,
                    "(#131047) Re-engagement message",
                ));
            }
            *fail_later = Some((131047, "Re-engagement message".into()));
        }
    }
    if state.throughput.is_some() {
        state
            .recent
            .entry(phone_number_id.to_string())
            .or_default()
            .push_back(now);
    }
    Ok(())
}
