# Sourced by smoke.sh and browser.sh: runs the real binary the way an operator does, on a
# database and Redis key space of its own, with the fake LLM provider in front of it.
# Needs BIN, FAKE_LLM and ROOT (and FAKE_SLACK for start_fake_slack, FAKE_WHATSAPP for
# start_fake_whatsapp; start_fake_shop takes FAKE_SHOP, else the fake-shop beside FAKE_LLM); sets
# url, LOG, pid, fake_pid, slack_pid, whatsapp_pid, shop_pid; cleans up on exit.

# A database of its own per run (the integration tests' harness drops those older than a
# quarter of an hour), so no state of an earlier run, such as the admin account, leaks in.
DB="konstruct_smoke_$(date +%s)_$$"
LOG="$(mktemp -t konstruct-smoke.XXXXXX.log)"
FAKE_LOG="$(mktemp -t konstruct-fake-llm.XXXXXX.log)"
SLACK_LOG="$(mktemp -t konstruct-fake-slack.XXXXXX.log)"
WHATSAPP_LOG="$(mktemp -t konstruct-fake-whatsapp.XXXXXX.log)"
WHATSAPP_OUT="$(mktemp -t konstruct-fake-whatsapp.XXXXXX.out)"
SHOP_LOG="$(mktemp -t konstruct-fake-shop.XXXXXX.log)"

export KONSTRUCT_DATABASE_URL="postgres://konstruct_app:konstruct_app@127.0.0.1:5432/$DB"
export KONSTRUCT_DATABASE_OWNER_URL="postgres://konstruct_owner:konstruct_owner@127.0.0.1:5432/$DB"
export KONSTRUCT_PORT=0
export KONSTRUCT_LOG_FORMAT=json
export KONSTRUCT_DATA_DIR="$(mktemp -d -t konstruct-smoke-data.XXXXXX)"
export KONSTRUCT_PORTAL_DIR="$ROOT/portal-leptos/dist"
# Its own Redis key space too: sign-in failure counters of earlier runs must not count here.
export KONSTRUCT_REDIS_KEY_PREFIX="konstruct-smoke-$(date +%s)-$$"
export KONSTRUCT_JWT_SECRET="smoke-test-secret-smoke-test-secret-0001"
export KONSTRUCT_ADMIN_EMAIL=smoke-admin@konstruct.localhost
# A password that must never show up in the log.
export KONSTRUCT_ADMIN_PASSWORD="smoke-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export KONSTRUCT_SLACK_SIGNING_SECRET="smoke-slack-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
# The platform's Slack app (the one the fake Slack installs): events for any other app are
# refused, the portal's Channels page shows it, and workspaces can be connected to the fake.
export KONSTRUCT_SLACK_APP_ID=A0KONSTRUCT
# The platform's Meta app for WhatsApp: its webhooks are taken, and the Channels page says so.
export KONSTRUCT_WHATSAPP_APP_SECRET="smokewa$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export KONSTRUCT_WHATSAPP_VERIFY_TOKEN="smoke-verify-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export KONSTRUCT_ENCRYPTION_KEYS="1:$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
# The audit seal's key; the smoke test checks it never reaches the log either.
export KONSTRUCT_AUDIT_KEYS="1:$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
# Mail goes to the tests' MailDev (scripts/test starts it; the journeys read it over its API).
export KONSTRUCT_SMTP_URL="${TEST_SMTP_URL:-smtp://konstruct:test-mail-secret@127.0.0.1:2525}"
export TEST_MAILDEV_URL="${TEST_MAILDEV_URL:-http://127.0.0.1:2580}"

# Starts the fake provider accepting key $1 and points the platform's OpenAI group at it with
# key $2.
start_fake_llm() {
  "$FAKE_LLM" 127.0.0.1:0 "$1" 2>"$FAKE_LOG" &
  fake_pid=$!
  local fake_url=""
  for _ in $(seq 1 100); do
    fake_url="$(grep -o 'http://127.0.0.1:[0-9]*' "$FAKE_LOG" | head -n 1 || true)"
    [ -n "$fake_url" ] && break
    sleep 0.1
  done
  [ -n "$fake_url" ] || { cat "$FAKE_LOG"; echo "fake-llm did not start"; exit 1; }
  export KONSTRUCT_OPENAI_BASE_URL="$fake_url"
  export KONSTRUCT_OPENAI_API_KEY="$2"
}

# Starts the fake Slack Web API with the platform's app installed in workspace $2 under bot user
# $3 with bot token $1, and points Konstruct's Slack client at it.
start_fake_slack() {
  "$FAKE_SLACK" "$1" "$2" "$3" 2>"$SLACK_LOG" &
  slack_pid=$!
  local slack_url=""
  for _ in $(seq 1 100); do
    slack_url="$(grep -o 'http://127.0.0.1:[0-9]*/api' "$SLACK_LOG" | head -n 1 || true)"
    [ -n "$slack_url" ] && break
    sleep 0.1
  done
  [ -n "$slack_url" ] || { cat "$SLACK_LOG"; echo "fake-slack did not start"; exit 1; }
  export KONSTRUCT_SLACK_API_URL="$slack_url"
}

# Starts the fake WhatsApp Cloud API with the business numbers given
# (`phone_number_id:waba_id:display:verified_name:token` each) and points Konstruct's Graph API
# client at it.
start_fake_whatsapp() {
  local args=() number
  for number in "$@"; do args+=(--number "$number"); done
  "$FAKE_WHATSAPP" --port 0 "${args[@]}" >"$WHATSAPP_OUT" 2>"$WHATSAPP_LOG" &
  whatsapp_pid=$!
  local whatsapp_url=""
  for _ in $(seq 1 100); do
    whatsapp_url="$(grep -o 'http://127.0.0.1:[0-9]*' "$WHATSAPP_OUT" | head -n 1 || true)"
    [ -n "$whatsapp_url" ] && break
    kill -0 $whatsapp_pid 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$whatsapp_url" ] || { cat "$WHATSAPP_LOG"; echo "fake-whatsapp did not start"; exit 1; }
  export KONSTRUCT_WHATSAPP_GRAPH_URL="$whatsapp_url"
}

# Starts the fake shop (an order-status API, for the tenant's HTTP tool) that answers only
# requests with the header `X-Shop-Key: $1`; exports SHOP_URL and SHOP_KEY, and adds the shop's
# address to KONSTRUCT_OUTBOUND_ALLOW (keeping what is there) so the runtime may call it over plain
# http on loopback.
start_fake_shop() {
  "${FAKE_SHOP:-$(dirname "$FAKE_LLM")/fake-shop}" 127.0.0.1:0 "$1" 2>"$SHOP_LOG" &
  shop_pid=$!
  local shop_url=""
  for _ in $(seq 1 100); do
    shop_url="$(grep -o 'http://127.0.0.1:[0-9]*' "$SHOP_LOG" | head -n 1 || true)"
    [ -n "$shop_url" ] && break
    kill -0 $shop_pid 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$shop_url" ] || { cat "$SHOP_LOG"; echo "fake-shop did not start"; exit 1; }
  export SHOP_URL="$shop_url"
  export SHOP_KEY="$1"
  export KONSTRUCT_OUTBOUND_ALLOW="${KONSTRUCT_OUTBOUND_ALLOW:+$KONSTRUCT_OUTBOUND_ALLOW,}${shop_url#http://}"
}

start_konstruct() {
  "$BIN" setup-db
  "$BIN" migrate
  "$BIN" serve >"$LOG" 2>&1 &
  pid=$!
  trap cleanup EXIT
  url=""
  for _ in $(seq 1 100); do
    url="$(grep -o '"url":"http://[^"]*"' "$LOG" | head -n 1 | cut -d'"' -f4 || true)"
    [ -n "$url" ] && break
    kill -0 $pid 2>/dev/null || { cat "$LOG"; echo "konstruct serve exited early"; exit 1; }
    sleep 0.1
  done
  [ -n "$url" ] || { cat "$LOG"; echo "konstruct serve did not report its URL"; exit 1; }
  # The API opens once the database role is verified.
  for _ in $(seq 1 300); do
    grep -q 'connected to Postgres as the runtime role' "$LOG" && return 0
    kill -0 $pid 2>/dev/null || { cat "$LOG"; echo "konstruct serve exited early"; exit 1; }
    sleep 0.1
  done
  cat "$LOG"; echo "konstruct serve did not verify its database role"; exit 1
}

cleanup() {
  kill ${pid:-} ${fake_pid:-} ${slack_pid:-} ${whatsapp_pid:-} ${shop_pid:-} 2>/dev/null || true
  wait ${pid:-} ${fake_pid:-} ${slack_pid:-} ${whatsapp_pid:-} ${shop_pid:-} 2>/dev/null || true
  rm -f "$LOG" "$FAKE_LOG" "$SLACK_LOG" "$WHATSAPP_LOG" "$WHATSAPP_OUT" "$SHOP_LOG"
  rm -rf "$KONSTRUCT_DATA_DIR"
  # Best effort: drop this run's Redis keys (streams have no expiry).
  if command -v redis-cli >/dev/null 2>&1; then
    redis-cli --scan --pattern "$KONSTRUCT_REDIS_KEY_PREFIX:*" | xargs -r redis-cli del >/dev/null 2>&1 || true
  fi
}
