#!/usr/bin/env bash
# Browser journeys through the portal against the real binary: Debian's Chromium driven by
# playwright-core (e2e/browser/journeys.mjs). Screenshots land in e2e/artifacts/screenshots/.
# Usage: e2e/browser.sh path/to/konstruct path/to/fake-llm [path/to/fake-slack]
# (fake-slack defaults to the one beside fake-llm).
set -euo pipefail
BIN="$1"
FAKE_LLM="$2"
FAKE_SLACK="${3:-$(dirname "$FAKE_LLM")/fake-slack}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/e2e/serve.sh"
# Here the platform's own key is the one the fake accepts, so agents answer.
KEY="sk-browser-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
start_fake_llm "$KEY" "$KEY"
# A Slack workspace where the platform's app is installed, for the Channels journey to connect.
export SLACK_BOT_TOKEN="xoxb-browser-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export SLACK_TEAM_ID=T0BROWSER
export SLACK_BOT_USER_ID=U0BROWSER
start_fake_slack "$SLACK_BOT_TOKEN" "$SLACK_TEAM_ID" "$SLACK_BOT_USER_ID"
start_konstruct
echo "browser: serving at $url"
status=0
node "$ROOT/e2e/browser/journeys.mjs" "$url" "$KONSTRUCT_ADMIN_EMAIL" "$KONSTRUCT_ADMIN_PASSWORD" || status=$?
# The bot token typed into the Channels page is sealed, never logged.
if grep -qF "$SLACK_BOT_TOKEN" "$LOG"; then
  echo "browser: FAIL the Slack bot token reached the server log"
  status=1
fi
exit $status
