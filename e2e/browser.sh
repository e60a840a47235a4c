#!/usr/bin/env bash
# Browser journeys through the portal against the real binary: Debian's Chromium driven by
# playwright-core (e2e/browser/journeys.mjs). Screenshots land in e2e/artifacts/screenshots/.
# Usage: e2e/browser.sh path/to/konstruct path/to/fake-llm
set -euo pipefail
BIN="$1"
FAKE_LLM="$2"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/e2e/serve.sh"
# Here the platform's own key is the one the fake accepts, so agents answer.
KEY="sk-browser-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
start_fake_llm "$KEY" "$KEY"
start_konstruct
echo "browser: serving at $url"
node "$ROOT/e2e/browser/journeys.mjs" "$url" "$KONSTRUCT_ADMIN_EMAIL" "$KONSTRUCT_ADMIN_PASSWORD"
