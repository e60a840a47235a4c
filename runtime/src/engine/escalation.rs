//! Escalation to a human, as pure logic: which of an agent's rules fires on a turn, and the
//! conversation's count of unresolved turns in a row, kept in Redis with its memory window.
//! Whether a conversation was handed off is Postgres's `conversations.status`, written with the
//! escalation record and read by every turn, so it can neither be lost nor run ahead of them.
//!
//! Keyword and "I want a human" rules are checked on the user's message before the LLM is asked:
//! there is no point answering someone who asked for a person. The failed-resolutions rule is
//! checked after the turn: a turn is unresolved when the agent said it could not help by ending
//! its answer with [`UNRESOLVED_MARKER`] (the prompt asks for it only when the agent has such a
//! rule; the marker never reaches the user). A provider outage is not the agent failing to
//! resolve anything: such turns are not counted.

use serde::{Deserialize, Serialize};
use shared::resources::{EscalationRule, EscalationTrigger};

/// What an agent appends when it cannot resolve the user's request.
pub const UNRESOLVED_MARKER: &str = "[unresolved]";

/// Phrases that ask for a person (matched case-insensitively, as whole phrases).
const HUMAN_PHRASES: &[&str] = &[
    "talk to a human",
    "speak to a human",
    "talk to a person",
    "speak to a person",
    "talk to someone",
    "speak to someone",
    "real person",
    "human agent",
    "a human please",
    "human, please",
    "customer service representative",
    "talk to an agent",
    "speak to an agent",
    "live agent",
    "operator please",
];

/// The conversation's escalation state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationState {
    /// Turns in a row the agent could not resolve.
    pub unresolved_in_a_row: u32,
}

/// Why a conversation is handed off, as stored (`escalations.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    FailedResolutions,
    Keywords,
    HumanRequested,
    /// The agent asked for a person itself (its hand-off tool).
    AgentRequested,
    /// The month's budget is spent and its policy hands new work to a person.
    Budget,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::FailedResolutions => "failed_resolutions",
            Reason::Keywords => "keywords",
            Reason::HumanRequested => "human_requested",
            Reason::AgentRequested => "agent_requested",
            Reason::Budget => "budget",
        }
    }
}

/// A rule that fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    pub reason: Reason,
    pub handoff_target: Option<String>,
}

fn contains_phrase(haystack: &str, phrase: &str) -> bool {
    let phrase = phrase.trim().to_lowercase();
    if phrase.is_empty() {
        return false;
    }
    // Whole words: "human" must not match inside "inhumane".
    haystack.match_indices(&phrase).any(|(at, _)| {
        let before = haystack[..at].chars().next_back();
        let after = haystack[at + phrase.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

/// Whether the user explicitly asks for a person.
pub fn asks_for_human(text: &str) -> bool {
    let text = text.to_lowercase();
    HUMAN_PHRASES.iter().any(|p| contains_phrase(&text, p))
}

/// The first keyword or human-request rule the user's message fires, before the LLM is asked.
pub fn on_message(rules: &[EscalationRule], text: &str) -> Option<Fired> {
    let lower = text.to_lowercase();
    rules.iter().find_map(|rule| {
        let reason = match &rule.trigger {
            EscalationTrigger::Keywords { keywords }
                if keywords.iter().any(|k| contains_phrase(&lower, k)) =>
            {
                Reason::Keywords
            }
            EscalationTrigger::HumanRequested if asks_for_human(text) => Reason::HumanRequested,
            _ => return None,
        };
        Some(Fired {
            reason,
            handoff_target: rule.handoff_target.clone(),
        })
    })
}

/// Whether any rule counts unresolved turns (the prompt then asks for the marker).
pub fn counts_failures(rules: &[EscalationRule]) -> bool {
    rules
        .iter()
        .any(|r| matches!(r.trigger, EscalationTrigger::FailedResolutions { .. }))
}

/// Splits the marker off an answer: the text for the user, and whether it was unresolved.
pub fn strip_marker(answer: &str) -> (String, bool) {
    let trimmed = answer.trim_end();
    match trimmed.strip_suffix(UNRESOLVED_MARKER) {
        Some(rest) => (rest.trim_end().to_string(), true),
        None => (answer.to_string(), false),
    }
}

/// Counts the turn's outcome and returns the failed-resolutions rule if it fires now.
pub fn after_turn(
    rules: &[EscalationRule],
    state: &mut EscalationState,
    resolved: bool,
) -> Option<Fired> {
    if resolved {
        state.unresolved_in_a_row = 0;
        return None;
    }
    state.unresolved_in_a_row = state.unresolved_in_a_row.saturating_add(1);
    rules.iter().find_map(|rule| match rule.trigger {
        EscalationTrigger::FailedResolutions { threshold }
            if state.unresolved_in_a_row >= threshold.max(1) =>
        {
            Some(Fired {
                reason: Reason::FailedResolutions,
                handoff_target: rule.handoff_target.clone(),
            })
        }
        _ => None,
    })
}

/// The hand-off the agent asks for itself: to whoever takes requests for a person (the target
/// of the agent's "human requested" rule, else of its first rule, else the tenant's default).
pub fn agent_requested(rules: &[EscalationRule]) -> Fired {
    let target = rules
        .iter()
        .find(|r| matches!(r.trigger, EscalationTrigger::HumanRequested))
        .or_else(|| rules.first())
        .and_then(|r| r.handoff_target.clone());
    Fired {
        reason: Reason::AgentRequested,
        handoff_target: target,
    }
}

/// The hand-off a spent budget makes: to the same people as the agent's own.
pub fn over_budget(rules: &[EscalationRule]) -> Fired {
    Fired {
        reason: Reason::Budget,
        ..agent_requested(rules)
    }
}

/// What the user is told when the conversation is handed off, with when a person will answer
/// (`expected`, from the tenant's business hours).
pub fn handoff_notice(fired: &Fired, expected: &str) -> String {
    let passed = match fired.reason {
        Reason::FailedResolutions => {
            "I haven't been able to sort this out for you, so I've passed the conversation to a \
             colleague."
        }
        Reason::Keywords | Reason::HumanRequested | Reason::AgentRequested | Reason::Budget => {
            "I've passed this conversation to a colleague."
        }
    };
    format!("{passed} {expected}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(trigger: EscalationTrigger) -> EscalationRule {
        EscalationRule {
            trigger,
            handoff_target: Some("#support".into()),
        }
    }

    #[test]
    fn keywords_match_whole_words_case_insensitively() {
        let rules = [rule(EscalationTrigger::Keywords {
            keywords: vec!["refund".into(), "legal action".into()],
        })];
        let fired = on_message(&rules, "I want a REFUND now").map(|f| f.reason);
        assert_eq!(fired, Some(Reason::Keywords));
        assert!(on_message(&rules, "We may take Legal Action.").is_some());
        assert!(on_message(&rules, "refunded already, thanks").is_none());
        assert!(on_message(&rules, "what are your opening hours?").is_none());
    }

    #[test]
    fn asking_for_a_person_fires_only_the_human_rule() {
        let rules = [rule(EscalationTrigger::HumanRequested)];
        assert!(on_message(&rules, "Can I talk to a human?").is_some());
        assert!(on_message(&rules, "I need a REAL PERSON").is_some());
        assert!(on_message(&rules, "Is this product humane?").is_none());
        assert!(on_message(&[], "talk to a human").is_none());
    }

    #[test]
    fn unresolved_turns_in_a_row_reach_the_threshold_and_a_resolved_one_resets() {
        let rules = [rule(EscalationTrigger::FailedResolutions { threshold: 2 })];
        let mut state = EscalationState::default();
        assert!(after_turn(&rules, &mut state, false).is_none());
        assert!(after_turn(&rules, &mut state, true).is_none());
        assert_eq!(state.unresolved_in_a_row, 0);
        assert!(after_turn(&rules, &mut state, false).is_none());
        let fired = after_turn(&rules, &mut state, false);
        assert_eq!(
            fired,
            Some(Fired {
                reason: Reason::FailedResolutions,
                handoff_target: Some("#support".into())
            })
        );
    }

    #[test]
    fn the_marker_is_stripped_from_the_answer() {
        assert_eq!(
            strip_marker("Sorry, I can't find that order. [unresolved]\n"),
            ("Sorry, I can't find that order.".to_string(), true)
        );
        assert_eq!(
            strip_marker("Your order ships today."),
            ("Your order ships today.".to_string(), false)
        );
    }
}
