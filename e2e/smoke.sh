#!/usr/bin/env bash
# Smoke test of the real binary, the way an operator runs it: set up a database of its own,
# migrate, serve on a free port, and check what a browser and a load balancer would see.
# Usage: e2e/smoke.sh path/to/konstruct path/to/fake-llm
set -euo pipefail
BIN="$1"
FAKE_LLM="$2"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# A database of its own per run (the integration tests' harness drops those older than a
# quarter of an hour), so no state of an earlier run, such as the admin account, leaks in.
DB="konstruct_smoke_$(date +%s)_$$"
LOG="$(mktemp -t konstruct-smoke.XXXXXX.log)"

export KONSTRUCT_DATABASE_URL="postgres://konstruct_app:konstruct_app@127.0.0.1:5432/$DB"
export KONSTRUCT_DATABASE_OWNER_URL="postgres://konstruct_owner:konstruct_owner@127.0.0.1:5432/$DB"
export KONSTRUCT_PORT=0
export KONSTRUCT_LOG_FORMAT=json
export KONSTRUCT_PORTAL_DIR="$ROOT/portal-leptos/dist"
# Its own Redis key space too: sign-in failure counters of earlier runs must not count here.
export KONSTRUCT_REDIS_KEY_PREFIX="konstruct-smoke-$(date +%s)-$$"
export KONSTRUCT_JWT_SECRET="smoke-test-secret-smoke-test-secret-0001"
export KONSTRUCT_ADMIN_EMAIL=smoke-admin@konstruct.localhost
# A password that must never show up in the log.
export KONSTRUCT_ADMIN_PASSWORD="smoke-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"

# A tenant's LLM key that must never show up in the log either; the fake provider accepts it.
TENANT_KEY="sk-smoke-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
FAKE_LOG="$(mktemp -t konstruct-fake-llm.XXXXXX.log)"
"$FAKE_LLM" 127.0.0.1:0 "$TENANT_KEY" 2>"$FAKE_LOG" &
fake_pid=$!
fake_url=""
for _ in $(seq 1 100); do
  fake_url="$(grep -o 'http://127.0.0.1:[0-9]*' "$FAKE_LOG" | head -n 1 || true)"
  [ -n "$fake_url" ] && break
  sleep 0.1
done
[ -n "$fake_url" ] || { cat "$FAKE_LOG"; echo "fake-llm did not start"; exit 1; }
export KONSTRUCT_OPENAI_BASE_URL="$fake_url"
export KONSTRUCT_OPENAI_API_KEY="sk-platform-not-accepted-by-the-fake"
export KONSTRUCT_SLACK_SIGNING_SECRET="smoke-slack-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export KONSTRUCT_ENCRYPTION_KEYS="1:$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"

passed=0
failed=0
check() {
  local name="$1"; shift
  if "$@"; then
    passed=$((passed + 1)); echo "  ok    $name"
  else
    failed=$((failed + 1)); echo "  FAIL  $name"
  fi
}

"$BIN" setup-db
"$BIN" migrate
"$BIN" serve >"$LOG" 2>&1 &
pid=$!
cleanup() {
  kill $pid $fake_pid 2>/dev/null || true
  wait $pid $fake_pid 2>/dev/null || true
  rm -f "$LOG" "$FAKE_LOG"
  # Best effort: drop this run's Redis keys (streams have no expiry).
  if command -v redis-cli >/dev/null 2>&1; then
    redis-cli --scan --pattern "$KONSTRUCT_REDIS_KEY_PREFIX:*" | xargs -r redis-cli del >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

url=""
for _ in $(seq 1 100); do
  url="$(grep -o '"url":"http://[^"]*"' "$LOG" | head -n 1 | cut -d'"' -f4 || true)"
  [ -n "$url" ] && break
  kill -0 $pid 2>/dev/null || { cat "$LOG"; echo "konstruct serve exited early"; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { cat "$LOG"; echo "konstruct serve did not report its URL"; exit 1; }
echo "smoke: serving at $url"

status() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
body() { curl -s "$@"; }

check "GET /healthz is 200"                [ "$(status "${url}healthz")" = 200 ]
check "GET /readyz is 200 and ready"       bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' '${url}readyz')\" = 200 ] && curl -s '${url}readyz' | grep -q '\"status\":\"ready\"'"
check "GET / serves the portal"            bash -c "curl -s '${url}' | grep -q '<title>Konstruct</title>'"
wasm="$(body "$url" | grep -o 'portal-leptos-[a-f0-9]*_bg.wasm' | head -n 1)"
check "the portal's wasm is served as application/wasm" \
  bash -c "[ -n '$wasm' ] && curl -s -o /dev/null -w '%{content_type}' '${url}${wasm}' | grep -q application/wasm"
check "a deep link falls back to the portal" bash -c "curl -s '${url}agents/42' | grep -q '<title>Konstruct</title>'"
check "an unknown API path is a JSON 404"  bash -c "curl -s '${url}api/nope' | grep -q '\"code\":\"not_found\"'"
check "every answer carries X-Request-Id"  bash -c "curl -s -D - -o /dev/null '${url}healthz' | grep -qi '^x-request-id: '"
check "the README walkthrough: sign in, create a tenant, hire an agent" \
  bash -c "'$ROOT/e2e/walkthrough.sh' '$url' '$KONSTRUCT_ADMIN_EMAIL' '$KONSTRUCT_ADMIN_PASSWORD' | grep -q '\"name\":\"Nia\"'"
check "a wrong password is refused with 401" \
  bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' -X POST '${url}api/auth/login' -H 'content-type: application/json' -d '{\"email\":\"nobody@example.com\",\"password\":\"x\"}')\" = 401 ]"
byo_key() {
  local token tenant
  token=$(curl -sf -X POST "${url}api/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$KONSTRUCT_ADMIN_EMAIL\",\"password\":\"$KONSTRUCT_ADMIN_PASSWORD\"}" \
    | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
  tenant=$(curl -sf -X POST "${url}api/tenants" -H "authorization: Bearer $token" \
    -H 'content-type: application/json' -d "{\"name\":\"Keys $(date +%s%N)\"}" \
    | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
  curl -sf -X PUT "${url}api/tenants/$tenant/llm-keys/openai" -H "authorization: Bearer $token" \
    -H 'content-type: application/json' -d "{\"api_key\":\"$TENANT_KEY\"}" | grep -q '"hint":"…'"${TENANT_KEY: -4}"'"'
}
check "a tenant's own LLM key is checked with the provider and stored (hint only)" byo_key
# Slack's URL verification, signed as Slack signs it (HMAC-SHA256 of v0:timestamp:body).
slack_verify() {
  local body='{"token":"t","challenge":"smoke-challenge-123","type":"url_verification"}'
  local ts; ts="$(date +%s)"
  local sig; sig="v0=$(printf 'v0:%s:%s' "$ts" "$body" | openssl dgst -sha256 -hmac "$KONSTRUCT_SLACK_SIGNING_SECRET" -r | cut -d' ' -f1)"
  curl -s -X POST "${url}webhooks/slack/events" -H 'Content-Type: application/json' \
    -H "X-Slack-Request-Timestamp: $ts" -H "X-Slack-Signature: $sig" -d "$body" \
    | grep -q '"challenge":"smoke-challenge-123"' || return 1
  # The same body with a wrong signature is refused.
  [ "$(curl -s -o /dev/null -w '%{http_code}' -X POST "${url}webhooks/slack/events" \
    -H "X-Slack-Request-Timestamp: $ts" -H 'X-Slack-Signature: v0=00' -d "$body")" = 401 ]
}
check "Slack's signed URL verification is answered, a forged one refused" slack_verify
check "the log is JSON with request ids"   bash -c "grep -q '\"request.id\"' '$LOG'"
check "the admin password never reaches the log" bash -c "! grep -q '$KONSTRUCT_ADMIN_PASSWORD' '$LOG'"
check "the tenant's LLM key never reaches the log" bash -c "! grep -q '$TENANT_KEY' '$LOG'"

echo "smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
