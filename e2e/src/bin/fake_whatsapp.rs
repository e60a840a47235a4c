//! `fake-whatsapp [--port N] --number PHONE_NUMBER_ID:WABA_ID:DISPLAY:VERIFIED_NAME:TOKEN …
//! [--webhook-url URL --app-secret SECRET]`: runs the fake WhatsApp Cloud API until interrupted
//! and prints its base URL on stdout. The port defaults to `FAKE_WHATSAPP_PORT`, else 11436.
//! With a webhook it reports statuses for every send, and a person can play the user:
//! `curl -XPOST {base}/_fake/inbound -H 'content-type: application/json'
//!   -d '{"phone_number_id":"…","from":"15550001111","name":"Ada","text":"Hi"}'`;
//! `GET {base}/_fake/sent` lists what the business sent.

use std::process::ExitCode;

use e2e::whatsapp::{FakeGraph, Number};

const USAGE: &str = "usage: fake-whatsapp [--port N] --number ID:WABA:DISPLAY:NAME:TOKEN … \
[--webhook-url URL --app-secret SECRET]";

/// A `--number` argument: `phone_number_id:waba_id:display:verified_name:token` (the display
/// number and name may not contain `:`; the token may).
fn parse_number(spec: &str) -> Option<Number> {
    let mut parts = spec.splitn(5, ':');
    let mut next = || parts.next().filter(|p| !p.is_empty()).map(str::to_string);
    Some(Number {
        phone_number_id: next()?,
        waba_id: next()?,
        display_phone_number: next()?,
        verified_name: next()?,
        token: next()?,
    })
}

#[tokio::main(flavor = "current_thread")]
#[expect(
    clippy::print_stdout,
    reason = "the base URL on stdout is how scripts learn where the fake listens"
)]
async fn main() -> ExitCode {
    let mut port = std::env::var("FAKE_WHATSAPP_PORT").unwrap_or_else(|_| "11436".into());
    let (mut numbers, mut webhook_url, mut app_secret) = (Vec::new(), None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        match (arg.as_str(), value) {
            ("--port", Some(v)) => port = v,
            ("--number", Some(v)) => match parse_number(&v) {
                Some(n) => numbers.push(n),
                None => {
                    eprintln!("fake-whatsapp: bad --number {v:?}\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            ("--webhook-url", Some(v)) => webhook_url = Some(v),
            ("--app-secret", Some(v)) => app_secret = Some(v),
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let fake = match FakeGraph::start_on(&format!("127.0.0.1:{port}")) {
        Ok(fake) => fake,
        Err(e) => {
            eprintln!("fake-whatsapp: cannot listen on port {port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    for n in numbers {
        eprintln!(
            "fake-whatsapp: number {} (WABA {}, {})",
            n.phone_number_id, n.waba_id, n.display_phone_number
        );
        fake.add_number(n);
    }
    match (webhook_url, app_secret) {
        (Some(url), Some(secret)) => {
            eprintln!("fake-whatsapp: webhooks to {url}");
            fake.webhook(url, secret);
            fake.report_statuses(true);
        }
        (None, None) => {}
        _ => {
            eprintln!("fake-whatsapp: --webhook-url and --app-secret go together\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    println!("{}", fake.base_url);
    let _ = tokio::signal::ctrl_c().await;
    ExitCode::SUCCESS
}
