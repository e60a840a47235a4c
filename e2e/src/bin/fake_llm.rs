//! `fake-llm [ADDR] [API_KEY]`: runs the fake OpenAI-compatible and Anthropic server until
//! interrupted. Defaults: 127.0.0.1:11435 and the key `fake-key`. It echoes the last user message.

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:11435".into());
    let key = args.next().unwrap_or_else(|| "fake-key".into());
    let fake = match e2e::llm::FakeLlm::start_on(&addr, &key) {
        Ok(fake) => fake,
        Err(e) => {
            eprintln!("fake-llm: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "fake-llm: OpenAI at {0}/v1/chat/completions, Anthropic at {0}/v1/messages",
        fake.base_url
    );
    let _ = tokio::signal::ctrl_c().await;
    ExitCode::SUCCESS
}
