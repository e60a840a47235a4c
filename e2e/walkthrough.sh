#!/usr/bin/env bash
# The README's curl walkthrough, runnable: sign in, create a tenant, hire an AI employee.
# Usage: e2e/walkthrough.sh BASE_URL ADMIN_EMAIL ADMIN_PASSWORD
# Prints the created agent's JSON; exits non-zero if any step fails. The smoke test runs it.
set -euo pipefail
BASE="${1%/}"
EMAIL="$2"
PASSWORD="$3"
json() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }

# 1. Sign in. The answer carries a bearer token (and sets a cookie for browsers).
TOKEN=$(curl -sf -X POST "$BASE/api/auth/login" -H 'content-type: application/json' \
  -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" | json token)
[ -n "$TOKEN" ] || { echo "sign-in failed" >&2; exit 1; }

# 2. Create a tenant (platform admin).
TENANT=$(curl -sf -X POST "$BASE/api/tenants" -H "authorization: Bearer $TOKEN" \
  -H 'content-type: application/json' -d "{\"name\":\"Acme Support $(date +%s%N)\"}" | json id)
[ -n "$TENANT" ] || { echo "creating the tenant failed" >&2; exit 1; }

# 3. Hire an AI employee in it.
curl -sf -X POST "$BASE/api/tenants/$TENANT/agents" -H "authorization: Bearer $TOKEN" \
  -H 'content-type: application/json' \
  -d '{"name":"Nia","role":"Customer support specialist","persona":"Warm, precise, never guesses",
       "system_prompt":"Answer questions about Acme widgets.","tools":["knowledge_base_search"],
       "escalation_rules":[{"trigger":{"kind":"human_requested"},"handoff_target":"#support"}]}'
echo
