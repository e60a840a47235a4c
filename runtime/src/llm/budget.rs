//! Budget arithmetic for one LLM call: the worst case it may cost, reserved before it, and what
//! it is charged after it. A model without a price is charged at a deliberately high default
//! price, so it is never free by accident.

use std::time::SystemTime;

use super::cost;
use super::types::{ChatRequest, Part, Usage};

/// What a call to a model without a price is charged per million input tokens ($15).
pub const UNPRICED_INPUT_MICRO_USD_PER_MTOK: i64 = 15_000_000;
/// … and per million output tokens ($75).
pub const UNPRICED_OUTPUT_MICRO_USD_PER_MTOK: i64 = 75_000_000;

/// An upper estimate of the request's input tokens: a token is rarely shorter than three bytes
/// of text, and every message and tool costs a few tokens of framing.
pub fn estimated_input_tokens(req: &ChatRequest) -> u64 {
    let mut bytes = req.system.as_ref().map_or(0, String::len);
    let mut framing = 8usize;
    for message in &req.messages {
        framing += 8;
        for part in &message.parts {
            bytes += match part {
                Part::Text(text) => text.len(),
                // Providers bill images by size; a base64 image is a generous stand-in.
                Part::Image { data_base64, .. } => data_base64.len(),
                Part::ToolCall {
                    name, arguments, ..
                } => name.len() + arguments.to_string().len(),
                Part::ToolResult { content, .. } => content.len(),
            };
        }
    }
    for tool in &req.tools {
        framing += 16;
        bytes += tool.name.len() + tool.description.len() + tool.parameters.to_string().len();
    }
    (bytes.div_ceil(3) + framing) as u64
}

/// What `usage` costs on `provider`'s `model`, the default price for a model without one.
pub fn charged_micro_usd(provider: &str, model: &str, usage: &Usage) -> i64 {
    cost::micro_usd(provider, model, usage, SystemTime::now())
        .unwrap_or_else(|| unpriced_micro_usd(usage))
}

/// The default price of `usage`.
pub fn unpriced_micro_usd(usage: &Usage) -> i64 {
    let per = |tokens: u64, rate: i64| -> i64 {
        let micro = i128::from(tokens) * i128::from(rate) / 1_000_000;
        i64::try_from(micro).unwrap_or(i64::MAX)
    };
    per(usage.input_tokens, UNPRICED_INPUT_MICRO_USD_PER_MTOK)
        .saturating_add(per(usage.output_tokens, UNPRICED_OUTPUT_MICRO_USD_PER_MTOK))
}

/// The most the request can cost on any of `models` (`(provider, model)`: every deployment the
/// pool may fall back to): its estimated input and `max_tokens` of output.
pub fn worst_case_micro_usd<'a>(
    models: impl IntoIterator<Item = (&'a str, &'a str)>,
    req: &ChatRequest,
) -> i64 {
    let usage = Usage {
        input_tokens: estimated_input_tokens(req),
        output_tokens: u64::from(req.max_tokens),
        cached_input_tokens: 0,
    };
    models
        .into_iter()
        .map(|(provider, model)| charged_micro_usd(provider, model, &usage))
        .max()
        .unwrap_or_else(|| unpriced_micro_usd(&usage))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::types::Message;

    fn request(text: &str, max_tokens: u32) -> ChatRequest {
        ChatRequest {
            system: Some("You are helpful.".into()),
            messages: vec![Message::user(text)],
            tools: Vec::new(),
            temperature: None,
            max_tokens,
        }
    }

    #[test]
    fn a_model_without_a_price_is_charged_the_default_never_nothing() {
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 1_000_000,
            cached_input_tokens: 0,
        };
        assert_eq!(charged_micro_usd("ollama", "llama3.2", &usage), 90_000_000);
        // A priced model is charged its price (gpt-4o-mini: $0.15 + $0.60 per million).
        assert_eq!(charged_micro_usd("openai", "gpt-4o-mini", &usage), 750_000);
        let small = Usage {
            input_tokens: 1,
            output_tokens: 0,
            cached_input_tokens: 0,
        };
        assert!(charged_micro_usd("ollama", "llama3.2", &small) >= 0);
    }

    #[test]
    fn the_worst_case_covers_the_dearest_model_a_fallback_may_reach() {
        let req = request(&"word ".repeat(300), 500);
        let input = estimated_input_tokens(&req);
        // 1,516 bytes of text at three bytes a token, plus framing.
        assert!(input >= 1_516 / 4, "{input}");
        let cheap = worst_case_micro_usd([("openai", "gpt-4o-mini")], &req);
        let both = worst_case_micro_usd(
            [
                ("openai", "gpt-4o-mini"),
                ("anthropic", "claude-3-5-haiku-latest"),
            ],
            &req,
        );
        assert!(both > cheap, "{both} > {cheap}");
        // What a call that used all of its output and the estimated input costs is covered.
        let used = Usage {
            input_tokens: input,
            output_tokens: 500,
            cached_input_tokens: 0,
        };
        assert_eq!(cheap, charged_micro_usd("openai", "gpt-4o-mini", &used));
        // No deployments at all: the default price, not zero.
        assert!(worst_case_micro_usd([], &req) > 0);
    }
}
