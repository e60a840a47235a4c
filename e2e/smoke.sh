#!/usr/bin/env bash
# Smoke test of the real binary, the way an operator runs it: set up a database of its own,
# migrate, serve on a free port, and check what a browser and a load balancer would see.
# Usage: e2e/smoke.sh path/to/konstruct
set -euo pipefail
BIN="$1"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DB=konstruct_smoke
LOG="$(mktemp -t konstruct-smoke.XXXXXX.log)"

export KONSTRUCT_DATABASE_URL="postgres://konstruct_app:konstruct_app@127.0.0.1:5432/$DB"
export KONSTRUCT_DATABASE_OWNER_URL="postgres://konstruct_owner:konstruct_owner@127.0.0.1:5432/$DB"
export KONSTRUCT_PORT=0
export KONSTRUCT_LOG_FORMAT=json
export KONSTRUCT_PORTAL_DIR="$ROOT/portal-leptos/dist"
export KONSTRUCT_REDIS_KEY_PREFIX=konstruct-smoke
export KONSTRUCT_JWT_SECRET="smoke-test-secret-smoke-test-secret-0001"
export KONSTRUCT_ADMIN_EMAIL=smoke-admin@konstruct.localhost
# A password that must never show up in the log.
export KONSTRUCT_ADMIN_PASSWORD="smoke-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"

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
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -f "$LOG"' EXIT

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
check "the log is JSON with request ids"   bash -c "grep -q '\"request.id\"' '$LOG'"
check "the admin password never reaches the log" bash -c "! grep -q '$KONSTRUCT_ADMIN_PASSWORD' '$LOG'"

echo "smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
