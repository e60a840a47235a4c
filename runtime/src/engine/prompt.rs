//! Prompt assembly, as pure logic: the agent's identity, persona and instructions, what the user
//! said earlier, the recent turns and the new message, shaped as a provider-neutral request.

use shared::channel::ChannelKind;

use super::window::{Speaker, Window};
use crate::llm::types::{ChatRequest, Message};

/// What the prompt needs of an AI employee.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentProfile {
    pub name: String,
    /// The job title.
    pub role: String,
    pub persona: String,
    pub system_prompt: String,
    pub job_description: String,
    pub business_function: String,
}

/// The system prompt for one turn.
pub fn system_prompt(agent: &AgentProfile, window: &Window, channel: ChannelKind) -> String {
    let mut out = format!("You are {}", agent.name.trim());
    if !agent.role.trim().is_empty() {
        out.push_str(&format!(", {}", agent.role.trim()));
    }
    out.push_str(". You are talking with a customer");
    out.push_str(match channel {
        ChannelKind::Slack => " in Slack; keep answers short and use Slack formatting.",
        ChannelKind::Whatsapp => " on WhatsApp; keep answers short and plain, without markdown.",
        ChannelKind::Web => " in a web chat.",
    });
    for (title, text) in [
        ("Your persona", &agent.persona),
        ("Instructions", &agent.system_prompt),
        ("Your job", &agent.job_description),
    ] {
        if !text.trim().is_empty() {
            out.push_str(&format!("\n\n{title}:\n{}", text.trim()));
        }
    }
    if !agent.business_function.trim().is_empty() {
        out.push_str(&format!(
            "\n\nYou serve this business function only: {}. If asked for anything outside it, \
             say politely that you can only help with that, and offer what you can do.",
            agent.business_function.trim()
        ));
    }
    if !window.earlier.is_empty() {
        out.push_str("\n\nEarlier in this conversation the user said:");
        for note in &window.earlier {
            out.push_str(&format!("\n- {note}"));
        }
    }
    out
}

/// The request for one turn: the window's recent turns and then the new message.
pub fn chat_request(
    agent: &AgentProfile,
    window: &Window,
    channel: ChannelKind,
    new_message: &str,
    max_tokens: u32,
) -> ChatRequest {
    let mut messages: Vec<Message> = window
        .recent
        .iter()
        .map(|t| match t.speaker {
            Speaker::User => Message::user(t.text.clone()),
            Speaker::Agent => Message::assistant(t.text.clone()),
        })
        .collect();
    messages.push(Message::user(new_message));
    ChatRequest {
        system: Some(system_prompt(agent, window, channel)),
        messages,
        tools: Vec::new(),
        temperature: None,
        max_tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::window::{Budget, Turn};

    fn nia() -> AgentProfile {
        AgentProfile {
            name: "Nia".into(),
            role: "Customer support specialist".into(),
            persona: "Warm, precise, never guesses.".into(),
            system_prompt: "Answer questions about Acme widgets.".into(),
            job_description: "First-line support.".into(),
            business_function: "Customer support for Acme widgets".into(),
        }
    }

    #[test]
    fn the_system_prompt_carries_name_role_persona_and_scope() {
        let p = system_prompt(&nia(), &Window::default(), ChannelKind::Whatsapp);
        for part in [
            "You are Nia, Customer support specialist.",
            "Warm, precise, never guesses.",
            "Answer questions about Acme widgets.",
            "First-line support.",
            "business function only: Customer support for Acme widgets",
            "WhatsApp",
        ] {
            assert!(p.contains(part), "missing {part:?} in {p}");
        }
    }

    #[test]
    fn the_request_carries_earlier_notes_recent_turns_and_the_new_message() {
        let mut w = Window::default();
        // Room for the last two turns only: the first one is condensed into the notes.
        let budget = Budget {
            recent_tokens: 20,
            earlier_tokens: 200,
        };
        w.push(
            Turn {
                speaker: Speaker::User,
                text: "My order number is 4711.".into(),
            },
            budget,
        );
        w.push(
            Turn {
                speaker: Speaker::Agent,
                text: "Thanks! How can I help with order 4711 today?".into(),
            },
            budget,
        );
        w.push(
            Turn {
                speaker: Speaker::User,
                text: "When will it arrive?".into(),
            },
            budget,
        );
        let req = chat_request(
            &nia(),
            &w,
            ChannelKind::Slack,
            "And what was my order number?",
            512,
        );
        assert!(
            req.system
                .as_deref()
                .unwrap()
                .contains("- My order number is 4711.")
        );
        assert_eq!(
            req.messages.len(),
            3,
            "two recent turns and the new message"
        );
        assert_eq!(
            req.messages.last().unwrap(),
            &Message::user("And what was my order number?")
        );
        assert_eq!(req.max_tokens, 512);
    }
}
