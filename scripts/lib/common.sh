# Shared by scripts/run and scripts/test. Source it; do not run it.
#
# Everything here is idempotent: a tool that is present at the right version is not installed
# again, a service that answers is reused. Installs are cached outside the clone
# (~/.cargo/bin, ~/.cache/konstruct) so a second run on the same machine starts in seconds.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${KONSTRUCT_CACHE_DIR:-$HOME/.cache/konstruct}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
export PATH="$HOME/.cargo/bin:$CACHE/tools/node_modules/.bin:$PATH"
export TRUNK_SKIP_VERSION_CHECK=true

TRUNK_VERSION=0.21.14
BINARYEN_VERSION=132

say() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
warn() { printf '\033[1;33mwarning:\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# Runs a step and prints how long it took.
step() {
  local name="$1"; shift
  local started=$SECONDS
  say "$name"
  "$@"
  printf '    %s took %ss\n' "$name" "$((SECONDS - started))" >&2
}

need_cmd() { command -v "$1" >/dev/null 2>&1; }

apt_install() {
  need_cmd apt-get || die "cannot install $* automatically: no apt-get. Install it and run again."
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if [ ! -f "$CACHE/.apt-updated" ]; then
    $sudo apt-get update -qq
    mkdir -p "$CACHE" && touch "$CACHE/.apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

ensure_rust() {
  need_cmd cargo || die "Rust is not installed. Install it with rustup (https://rustup.rs) and run again."
  if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    say "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
  fi
  need_cmd cc || apt_install build-essential
  need_cmd pkg-config || apt_install pkg-config
}

# The wasm-bindgen version the lockfile pins; trunk uses the system binary only when it matches.
wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock"
}

ensure_web_tools() {
  ensure_rust
  if ! trunk --version 2>/dev/null | grep -q " $TRUNK_VERSION\$"; then
    say "installing trunk $TRUNK_VERSION (once; about 14 minutes on 2 cores)"
    cargo install trunk --version "$TRUNK_VERSION" --locked
  fi
  local wbg
  wbg="$(wasm_bindgen_version)"
  [ -n "$wbg" ] || die "cannot read the wasm-bindgen version from Cargo.lock"
  if ! wasm-bindgen --version 2>/dev/null | grep -q " $wbg\$"; then
    say "installing wasm-bindgen-cli $wbg (once; about 4 minutes)"
    # Not --locked: one of its locked dependencies is no longer in the registry.
    cargo install wasm-bindgen-cli --version "$wbg" --force
  fi
  if ! wasm-opt --version 2>/dev/null | grep -q "version_$BINARYEN_VERSION"; then
    need_cmd npm || apt_install nodejs npm
    say "installing wasm-opt (npm binaryen@$BINARYEN_VERSION)"
    mkdir -p "$CACHE/tools"
    npm install --no-audit --no-fund --silent --prefix "$CACHE/tools" "binaryen@$BINARYEN_VERSION" >/dev/null
  fi
}

PLAYWRIGHT_VERSION=1.49.1

# Chromium from Debian and playwright-core from npm, for the browser journeys.
ensure_browser_tools() {
  need_cmd chromium || apt_install chromium
  need_cmd node || apt_install nodejs npm
  if [ ! -f "$CACHE/tools/node_modules/playwright-core/package.json" ] \
    || ! grep -q "\"version\": \"$PLAYWRIGHT_VERSION\"" "$CACHE/tools/node_modules/playwright-core/package.json"; then
    say "installing playwright-core $PLAYWRIGHT_VERSION (npm)"
    mkdir -p "$CACHE/tools"
    npm install --no-audit --no-fund --silent --prefix "$CACHE/tools" "playwright-core@$PLAYWRIGHT_VERSION" >/dev/null
  fi
  export PLAYWRIGHT_CORE="$CACHE/tools/node_modules/playwright-core"
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

MAILDEV_VERSION=3.0.0

# MailDev (npm), a real SMTP server that keeps what it receives and shows it over HTTP: the tests
# read their mail from it, and `scripts/run` uses it when no mail server is configured.
ensure_maildev() {
  need_cmd node || apt_install nodejs npm
  if [ ! -f "$CACHE/mail/node_modules/maildev/package.json" ] \
    || ! grep -q "\"version\": \"$MAILDEV_VERSION\"" "$CACHE/mail/node_modules/maildev/package.json"; then
    say "installing maildev $MAILDEV_VERSION (npm)"
    mkdir -p "$CACHE/mail"
    npm install --no-audit --no-fund --silent --prefix "$CACHE/mail" "maildev@$MAILDEV_VERSION" >/dev/null
  fi
  MAILDEV_BIN="$CACHE/mail/node_modules/.bin/maildev"
}

# Starts MailDev on 127.0.0.1 (SMTP port $1, web/API port $2, then any further maildev options)
# unless something already answers on both; it keeps at most 2000 mails in memory. Reused across
# runs.
start_maildev() {
  local smtp="$1" web="$2"
  shift 2
  if port_open 127.0.0.1 "$smtp" && port_open 127.0.0.1 "$web"; then
    return 0
  fi
  ensure_maildev
  mkdir -p "$CACHE/mail"
  nohup "$MAILDEV_BIN" --ip 127.0.0.1 --web-ip 127.0.0.1 -s "$smtp" -w "$web" \
    --max-emails 2000 "$@" >"$CACHE/mail/maildev-$smtp.log" 2>&1 &
  wait_for_port "MailDev (SMTP)" 127.0.0.1 "$smtp"
  wait_for_port "MailDev (web)" 127.0.0.1 "$web"
}

# A certificate authority of the tests' own and a certificate it signed for localhost, made once:
# the TLS mail server's, which the runtime trusts through KONSTRUCT_SMTP_CA_FILE.
ensure_test_mail_certs() {
  local dir="$CACHE/mail/tls"
  [ -s "$dir/ca.pem" ] && [ -s "$dir/cert.pem" ] && [ -s "$dir/key.pem" ] && return 0
  need_cmd openssl || apt_install openssl
  mkdir -p "$dir"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=Konstruct test mail CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$dir/key.pem" -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >"$dir/ext.cnf"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 3650 -extfile "$dir/ext.cnf" -out "$dir/cert.pem" 2>/dev/null
}

# The tests' mail servers: plain SMTP with a sign-in (so the client's authentication runs), and
# SMTP over TLS (smtps) with a certificate from the tests' own authority.
ensure_test_mail() {
  local auth=(--incoming-user konstruct --incoming-pass test-mail-secret)
  start_maildev 2525 2580 "${auth[@]}"
  ensure_test_mail_certs
  start_maildev 2465 2581 "${auth[@]}" --incoming-secure \
    --incoming-cert "$CACHE/mail/tls/cert.pem" --incoming-key "$CACHE/mail/tls/key.pem"
  export TEST_SMTP_URL="smtp://konstruct:test-mail-secret@127.0.0.1:2525"
  export TEST_MAILDEV_URL="http://127.0.0.1:2580"
  export TEST_SMTPS_URL="smtps://konstruct:test-mail-secret@localhost:2465"
  export TEST_MAILDEV_TLS_URL="http://127.0.0.1:2581"
  export TEST_SMTP_CA_FILE="$CACHE/mail/tls/ca.pem"
}

docker_engine() { need_cmd docker && docker info >/dev/null 2>&1; }

# Reuses the local Postgres and Redis, or starts them: the local packages if installed, else the
# compose file if a Docker engine answers. Skipped for a service whose URL was configured, since
# someone else runs it.
ensure_services() {
  if [ -z "${KONSTRUCT_DATABASE_URL:-}" ] && ! port_open 127.0.0.1 5432; then
    if need_cmd pg_ctlcluster && [ -n "$(ls /etc/postgresql 2>/dev/null)" ]; then
      say "starting the local PostgreSQL"
      local v
      for v in $(ls /etc/postgresql); do
        pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
      done
    elif docker_engine; then
      say "starting PostgreSQL with docker compose"
      docker compose -f "$ROOT/docker/compose.yml" up -d postgres
    else
      die "PostgreSQL is not running on 127.0.0.1:5432. Either install it (sudo apt-get install postgresql, then sudo pg_ctlcluster 15 main start), start a Docker engine so docker/compose.yml can run it, or point KONSTRUCT_DATABASE_URL, KONSTRUCT_DATABASE_OWNER_URL and KONSTRUCT_DATABASE_ADMIN_URL at a server you run."
    fi
    wait_for_port "PostgreSQL" 127.0.0.1 5432
  fi
  if [ -z "${KONSTRUCT_REDIS_URL:-}" ] && ! port_open 127.0.0.1 6379; then
    if need_cmd redis-server; then
      say "starting the local Redis"
      # Append-only, fsynced every second, in a folder that survives a reboot: the ingest queue
      # holds acknowledged webhooks, so a Redis restart must not empty it (README, "Durability").
      mkdir -p "$CACHE/redis"
      redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
        --appendonly yes --appendfsync everysec \
        --dir "$CACHE/redis" --logfile "$CACHE/redis/redis.log"
    elif docker_engine; then
      say "starting Redis with docker compose"
      docker compose -f "$ROOT/docker/compose.yml" up -d redis
    else
      die "Redis is not running on 127.0.0.1:6379. Either install it (sudo apt-get install redis-server), start a Docker engine so docker/compose.yml can run it, or point KONSTRUCT_REDIS_URL at a server you run."
    fi
    wait_for_port "Redis" 127.0.0.1 6379
  fi
}

wait_for_port() {
  local name="$1" host="$2" port="$3" i
  for i in $(seq 1 60); do
    port_open "$host" "$port" && return 0
    sleep 0.5
  done
  die "$name did not start listening on $host:$port within 30 s"
}

build_portal() {
  (cd "$ROOT" && trunk build --release --config Trunk.toml)
  local wasm
  wasm="$(ls "$ROOT"/portal-leptos/dist/*.wasm 2>/dev/null | head -n 1)"
  [ -n "$wasm" ] || die "trunk produced no .wasm file"
  printf '    portal: %s KiB wasm (%s KiB gzipped)\n' \
    "$(( $(stat -c %s "$wasm") / 1024 ))" "$(( $(gzip -9c "$wasm" | wc -c) / 1024 ))" >&2
}

# Builds the server and the fakes (LLM, Slack, WhatsApp, and the shop the Tools journey's HTTP
# tool calls): `build_server release` for what people run (optimised, as the benchmarks measure
# it), plain `build_server` for the tests (a debug build, which also has the failpoints the crash
# tests use).
build_server() {
  local profile="${1:-debug}"
  if [ "$profile" = release ]; then
    (cd "$ROOT" && cargo build --quiet --release -p runtime --bin konstruct -p e2e --bin fake-llm --bin fake-slack --bin fake-whatsapp --bin fake-shop)
  else
    (cd "$ROOT" && cargo build --quiet -p runtime --bin konstruct -p e2e --bin fake-llm --bin fake-slack --bin fake-whatsapp --bin fake-shop)
  fi
  KONSTRUCT_BIN="$CARGO_TARGET_DIR/$profile/konstruct"
  FAKE_LLM_BIN="$CARGO_TARGET_DIR/$profile/fake-llm"
}
