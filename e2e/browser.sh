#!/usr/bin/env bash
# Browser journeys through the portal against the real binary: Debian's Chromium driven by
# playwright-core (e2e/browser/journeys.mjs). Screenshots land in e2e/artifacts/screenshots/.
# Usage: e2e/browser.sh path/to/konstruct path/to/fake-llm [path/to/fake-slack
# [path/to/fake-whatsapp [path/to/fake-shop]]] (the fakes default to the ones beside fake-llm).
set -euo pipefail
BIN="$1"
FAKE_LLM="$2"
FAKE_SLACK="${3:-$(dirname "$FAKE_LLM")/fake-slack}"
FAKE_WHATSAPP="${4:-$(dirname "$FAKE_LLM")/fake-whatsapp}"
FAKE_SHOP="${5:-$(dirname "$FAKE_LLM")/fake-shop}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/e2e/serve.sh"
# Here the platform's own key is the one the fake accepts, so agents answer.
KEY="sk-browser-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
start_fake_llm "$KEY" "$KEY"
# The settings journey saves the same key as a tenant's own (the fake accepts only it).
export LLM_KEY="$KEY"
# A Slack workspace where the platform's app is installed, for the Channels journey to connect.
export SLACK_BOT_TOKEN="xoxb-browser-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export SLACK_TEAM_ID=T0BROWSER
export SLACK_BOT_USER_ID=U0BROWSER
start_fake_slack "$SLACK_BOT_TOKEN" "$SLACK_TEAM_ID" "$SLACK_BOT_USER_ID"
# A WhatsApp business number at the fake Meta, for the Channels journey to connect.
export WHATSAPP_PHONE_NUMBER_ID=1055501002
export WHATSAPP_WABA_ID=2055501002
export WHATSAPP_DISPLAY="+1 555-010-0200"
export WHATSAPP_VERIFIED_NAME="Browser Bakery"
export WHATSAPP_TOKEN="EAAGbrowser$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
# The app secret the journey types for "I use my own Meta app".
export WHATSAPP_OWN_APP_SECRET="ownapp$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
start_fake_whatsapp "$WHATSAPP_PHONE_NUMBER_ID:$WHATSAPP_WABA_ID:$WHATSAPP_DISPLAY:$WHATSAPP_VERIFIED_NAME:$WHATSAPP_TOKEN"
# The shop the Tools journey's HTTP tool looks orders up in, with the key its secret header sends.
start_fake_shop "shop-browser-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
start_konstruct
echo "browser: serving at $url"
status=0
node "$ROOT/e2e/browser/journeys.mjs" "$url" "$KONSTRUCT_ADMIN_EMAIL" "$KONSTRUCT_ADMIN_PASSWORD" || status=$?
# The tokens and the app secret typed into the Channels page, and the HTTP tool's secret header
# typed into the Tools page, are sealed, never logged.
for secret in "$KEY" "$SLACK_BOT_TOKEN" "$WHATSAPP_TOKEN" "$WHATSAPP_OWN_APP_SECRET" "$KONSTRUCT_WHATSAPP_APP_SECRET" "$SHOP_KEY"; do
  if grep -qF "$secret" "$LOG"; then
    echo "browser: FAIL a token or secret typed into the Channels or Tools page reached the server log"
    status=1
  fi
done
exit $status
