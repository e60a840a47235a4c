//! `fake-slack TOKEN TEAM_ID BOT_USER_ID`: runs the fake Slack Web API until interrupted, with
//! the platform's app (`e2e::slack::APP_ID`) installed in workspace `TEAM_ID` under bot user
//! `BOT_USER_ID` with bot token `TOKEN`, on a free port of 127.0.0.1 (printed on stderr). The
//! browser journeys connect that workspace through the portal.

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [token, team_id, bot_user_id] = args.as_slice() else {
        eprintln!("usage: fake-slack TOKEN TEAM_ID BOT_USER_ID");
        return ExitCode::from(2);
    };
    let fake = match e2e::slack::FakeSlack::start() {
        Ok(fake) => fake,
        Err(e) => {
            eprintln!("fake-slack: cannot listen: {e}");
            return ExitCode::FAILURE;
        }
    };
    fake.install(token, team_id, bot_user_id);
    eprintln!(
        "fake-slack: Web API at {} (app {})",
        fake.api_base,
        e2e::slack::APP_ID
    );
    let _ = tokio::signal::ctrl_c().await;
    ExitCode::SUCCESS
}
