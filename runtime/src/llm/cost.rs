//! What a call cost, from the maintained price table of the `genai-prices` crate.

use std::time::SystemTime;

use genai_prices::{PriceRequest, Usage as PriceUsage, UsageKey};

use super::types::Usage;

/// The price of one call in millionths of a US dollar, or `None` when the table does not know the
/// model (an unknown price is recorded as unknown, never as zero).
pub fn micro_usd(provider: &str, model: &str, usage: &Usage, at: SystemTime) -> Option<i64> {
    let priced = PriceUsage::from([
        (UsageKey::INPUT_TOKENS, usage.input_tokens as f64),
        (UsageKey::OUTPUT_TOKENS, usage.output_tokens as f64),
        (
            UsageKey::CACHE_READ_TOKENS,
            usage.cached_input_tokens as f64,
        ),
    ]);
    let request = PriceRequest::new(model, &priced)
        .with_provider_id(provider)
        .with_timestamp(at);
    let price = genai_prices::calculate(&request).ok()?;
    let micro = (price.total_price * 1_000_000.0).round();
    (micro.is_finite() && micro >= 0.0).then_some(micro as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_models_are_priced_from_the_table_and_unknown_ones_are_not_guessed() {
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 1_000_000,
            cached_input_tokens: 0,
        };
        // The bundled table: gpt-4o-mini costs $0.15 per million input and $0.60 per million
        // output tokens.
        assert_eq!(
            micro_usd("openai", "gpt-4o-mini", &usage, SystemTime::now()),
            Some(750_000)
        );
        // claude-3-5-haiku: $0.80 in, $4 out.
        assert_eq!(
            micro_usd(
                "anthropic",
                "claude-3-5-haiku-latest",
                &usage,
                SystemTime::now()
            ),
            Some(4_800_000)
        );
        assert_eq!(
            micro_usd("openai", "no-such-model-xyz", &usage, SystemTime::now()),
            None
        );
        assert_eq!(
            micro_usd("ollama", "llama3.2", &usage, SystemTime::now()),
            None
        );
    }
}
