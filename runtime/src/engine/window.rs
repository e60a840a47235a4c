//! The memory window of a conversation, as pure logic: the recent turns within a token budget,
//! and what the user said earlier, condensed rather than dropped.
//!
//! Why condense user turns and drop agent turns first: the facts a conversation depends on ("my
//! order number is 4711") come from the user; the agent's answers can be re-derived from them. So
//! when the budget is full, the oldest turn leaves the window; if it was the user's, its first
//! 240 characters stay in `earlier`, which the prompt carries as a short "earlier in this
//! conversation" list. Only if even that list outgrows its own budget are its oldest notes
//! dropped. A 30-turn conversation keeps turn 1's facts with room to spare.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Who spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    User,
    Agent,
}

/// One turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    pub speaker: Speaker,
    pub text: String,
}

/// How much of the conversation the prompt may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// For the verbatim recent turns.
    pub recent_tokens: usize,
    /// For the condensed notes of older user turns.
    pub earlier_tokens: usize,
}

impl Default for Budget {
    fn default() -> Self {
        // Well inside every current model's context, leaving room for the system prompt, tools
        // and the answer.
        Self {
            recent_tokens: 6_000,
            earlier_tokens: 1_500,
        }
    }
}

/// Characters kept of an older user turn.
const NOTE_CHARS: usize = 240;

/// A rough token count (about four characters a token for English), enough for budgeting.
pub fn estimate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4) + 1
}

/// The window, as stored in Redis between turns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub recent: VecDeque<Turn>,
    pub earlier: VecDeque<String>,
}

impl Window {
    /// Adds a turn and trims to the budget.
    pub fn push(&mut self, turn: Turn, budget: Budget) {
        self.recent.push_back(turn);
        while self.recent.len() > 1
            && tokens(self.recent.iter().map(|t| t.text.as_str())) > budget.recent_tokens
        {
            let Some(old) = self.recent.pop_front() else {
                break;
            };
            if old.speaker == Speaker::User {
                let note: String = old.text.chars().take(NOTE_CHARS).collect();
                self.earlier.push_back(note);
            }
        }
        while !self.earlier.is_empty()
            && tokens(self.earlier.iter().map(String::as_str)) > budget.earlier_tokens
        {
            self.earlier.pop_front();
        }
    }
}

fn tokens<'a>(texts: impl Iterator<Item = &'a str>) -> usize {
    texts.map(estimate_tokens).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str) -> Turn {
        Turn {
            speaker: Speaker::User,
            text: text.into(),
        }
    }

    fn agent(text: &str) -> Turn {
        Turn {
            speaker: Speaker::Agent,
            text: text.into(),
        }
    }

    #[test]
    fn a_fact_from_turn_one_survives_thirty_turns_in_a_small_window() {
        let budget = Budget {
            recent_tokens: 200,
            earlier_tokens: 400,
        };
        let mut w = Window::default();
        w.push(
            user("Hi! My order number is 4711 and I live in Lisbon."),
            budget,
        );
        for i in 2..=30 {
            let turn = if i % 2 == 0 {
                agent(&format!(
                    "Thanks, noted. Here is a long and helpful answer number {i} {}",
                    "…".repeat(40)
                ))
            } else {
                user(&format!(
                    "Follow-up question {i}: could you tell me more about shipping?"
                ))
            };
            w.push(turn, budget);
        }
        assert!(w.recent.len() < 30, "the window was trimmed");
        let all: Vec<&str> = w
            .earlier
            .iter()
            .map(String::as_str)
            .chain(w.recent.iter().map(|t| t.text.as_str()))
            .collect();
        assert!(
            all.iter().any(|t| t.contains("4711")),
            "the order number is still known"
        );
        assert!(tokens(w.recent.iter().map(|t| t.text.as_str())) <= budget.recent_tokens);
        assert!(tokens(w.earlier.iter().map(String::as_str)) <= budget.earlier_tokens);
    }

    #[test]
    fn agent_turns_leave_without_a_trace_and_the_last_turn_always_stays() {
        let budget = Budget {
            recent_tokens: 10,
            earlier_tokens: 100,
        };
        let mut w = Window::default();
        w.push(
            agent("An answer that is far too long for this tiny budget of ten tokens."),
            budget,
        );
        assert_eq!(
            w.recent.len(),
            1,
            "the newest turn is kept even when it alone exceeds the budget"
        );
        w.push(user("ok"), budget);
        assert_eq!(w.recent.len(), 1);
        assert!(w.earlier.is_empty(), "agent turns are not condensed");
    }

    #[test]
    fn the_window_round_trips_through_json() {
        let mut w = Window::default();
        w.push(user("hello"), Budget::default());
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(serde_json::from_str::<Window>(&json).unwrap(), w);
    }
}
