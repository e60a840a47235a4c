//! Keeping an agent within its business function (Meta's terms on WhatsApp; per agent
//! elsewhere) and telling customers they are talking with an AI.
//!
//! The prompt always states the function and the rule to decline anything else. Before the LLM,
//! the local scope check declines only what is *clearly* off-topic; where it is unsure, the
//! prompt rule decides.

use crate::engine::config::AgentConfig;

/// The disclosure when the agent has none of its own.
pub const DEFAULT_DISCLOSURE: &str = "I'm an AI assistant.";

/// Added to the default when asking for a person really hands the conversation over.
pub const HUMAN_HINT: &str = "Ask for a human at any time to reach a person.";

/// The agent's disclosure, or the default — which promises a person only when the agent hands
/// off to one on request.
pub fn disclosure(own: &str, rules: &[shared::resources::EscalationRule]) -> String {
    let own = own.trim();
    if !own.is_empty() {
        return own.to_string();
    }
    let hands_off = rules.iter().any(|r| {
        matches!(
            r.trigger,
            shared::resources::EscalationTrigger::HumanRequested
        )
    });
    if hands_off {
        format!("{DEFAULT_DISCLOSURE} {HUMAN_HINT}")
    } else {
        DEFAULT_DISCLOSURE.to_string()
    }
}

/// `text` with the disclosure before it, when one is due.
pub fn with_disclosure(disclosure: Option<&str>, text: String) -> String {
    match disclosure {
        Some(d) if text.trim().is_empty() => d.to_string(),
        Some(d) => format!("{d}\n\n{text}"),
        None => text,
    }
}

/// The polite decline for a request outside `business_function`.
pub fn decline_text(business_function: &str) -> String {
    format!(
        "Sorry, I can't help with that. I'm here for {}. Is there anything about that I can do \
         for you?",
        business_function.trim().trim_end_matches('.')
    )
}

/// The decline to send instead of asking the LLM, when the scope check finds `text` clearly
/// outside the agent's business function; `None` to go on (in scope, or unsure).
pub async fn decline(agent: &AgentConfig, text: &str) -> Option<String> {
    let function = agent.profile.business_function.trim();
    if function.is_empty() {
        return None;
    }
    // The first call loads the model (seconds of CPU): on the blocking pool, never on a worker
    // that other tenants' turns and the queue's Redis calls share.
    let loaded = tokio::task::spawn_blocking(crate::scope::ScopeCheck::shared).await;
    let check = match loaded {
        Ok(Ok(check)) => check,
        Err(e) => {
            tracing::error!(error = %e, "the scope check's model could not be loaded");
            return None;
        }
        Ok(Err(e)) => {
            // Without the model the prompt rule still holds; nothing is declined blindly.
            tracing::error!(error = %e, "the scope check's model could not be loaded");
            return None;
        }
    };
    let judgement = check
        .judge_async(
            function.to_string(),
            agent.in_scope_examples.clone(),
            text.to_string(),
        )
        .await;
    judgement.declines().then(|| decline_text(function))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_disclosure_comes_first_and_defaults_when_the_agent_has_none() {
        assert_eq!(disclosure("  ", &[]), DEFAULT_DISCLOSURE);
        let human = shared::resources::EscalationRule {
            trigger: shared::resources::EscalationTrigger::HumanRequested,
            handoff_target: None,
        };
        assert_eq!(
            disclosure("", std::slice::from_ref(&human)),
            format!("{DEFAULT_DISCLOSURE} {HUMAN_HINT}")
        );
        assert_eq!(disclosure("I'm Nia, a bot.", &[human]), "I'm Nia, a bot.");
        assert_eq!(
            with_disclosure(Some("AI here."), "Your order shipped.".into()),
            "AI here.\n\nYour order shipped."
        );
        assert_eq!(with_disclosure(None, "x".into()), "x");
    }
}
