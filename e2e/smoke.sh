#!/usr/bin/env bash
# Smoke test of the real binary, the way an operator runs it: set up a database of its own,
# migrate, serve on a free port, and check what a browser and a load balancer would see.
# Usage: e2e/smoke.sh path/to/konstruct path/to/fake-llm
set -euo pipefail
BIN="$1"
FAKE_LLM="$2"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/e2e/serve.sh"
# A tenant's LLM key that must never show up in the log either; the fake provider accepts it,
# and not the platform's.
TENANT_KEY="sk-smoke-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
start_fake_llm "$TENANT_KEY" "sk-platform-not-accepted-by-the-fake"

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

start_konstruct
echo "smoke: serving at $url"

status() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
body() { curl -s "$@"; }

check "GET /healthz is 200"                [ "$(status "${url}healthz")" = 200 ]
check "GET /readyz is 200 and ready"       bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' '${url}readyz')\" = 200 ] && curl -s '${url}readyz' | grep -q '\"status\":\"ready\"'"
port="$(printf '%s' "$url" | sed -n 's#^http://[^/]*:\([0-9]*\)/.*#\1#p')"
check "konstruct healthcheck (the image's health check) passes on the configured port" \
  env KONSTRUCT_PORT="$port" "$BIN" healthcheck
check "konstruct healthcheck fails when nothing answers" \
  bash -c "! '$BIN' healthcheck --url http://127.0.0.1:1/readyz --timeout-secs 1 2>/dev/null"
check "konstruct healthcheck fails on an answer other than 200" \
  bash -c "! '$BIN' healthcheck --url '${url}api/nope' 2>/dev/null"
check "GET / serves the portal"            bash -c "curl -s '${url}' | grep -q '<title>Konstruct</title>'"
wasm="$(body "$url" | grep -o 'portal-leptos-[a-f0-9]*_bg.wasm' | head -n 1)"
check "the portal's wasm is served as application/wasm" \
  bash -c "[ -n '$wasm' ] && curl -s -o /dev/null -w '%{content_type}' '${url}${wasm}' | grep -q application/wasm"
check "the portal's page carries a Content-Security-Policy with its loader's hash" \
  bash -c "curl -s -D - -o /dev/null '${url}' | grep -i '^content-security-policy:' | grep -q \"script-src 'self' 'wasm-unsafe-eval' 'sha256-\""
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
# The audit trail of a tenant with some history verifies, sealed through its head, and verifies
# against the head it exported.
audit_sealed() {
  local token tenant head seq hash
  token=$(curl -sf -X POST "${url}api/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$KONSTRUCT_ADMIN_EMAIL\",\"password\":\"$KONSTRUCT_ADMIN_PASSWORD\"}" \
    | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
  tenant=$(curl -sf -X POST "${url}api/tenants" -H "authorization: Bearer $token" \
    -H 'content-type: application/json' -d "{\"name\":\"Audit $(date +%s%N)\"}" \
    | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
  head=$(curl -sf "${url}api/tenants/$tenant/audit/head" -H "authorization: Bearer $token")
  seq=$(printf '%s' "$head" | sed -n 's/.*"seq":\([0-9]*\).*/\1/p')
  hash=$(printf '%s' "$head" | sed -n 's/.*"hash":"\([0-9a-f]*\)".*/\1/p')
  [ -n "$seq" ] && [ "${#hash}" = 64 ] || return 1
  printf '%s' "$head" | grep -q "\"sealed_through\":$seq" || return 1
  curl -sf "${url}api/tenants/$tenant/audit/verify?seq=$seq&hash=$hash" -H "authorization: Bearer $token" \
    | grep -q '"ok":true'
}
check "the audit trail is sealed and verifies against its exported head" audit_sealed
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
check "the audit key never reaches the log" bash -c "! grep -q '${KONSTRUCT_AUDIT_KEYS#1:}' '$LOG'"

echo "smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
