#!/usr/bin/env bash
# Seeds the running local stack with demo data through its own HTTP API, as the apps would:
# an admin creates team bay-team; ana (lead), ben and cy save their profiles and prove their
# phones with the codes texted to them (TX-3); ana turns on lead routing. Waits for the gateway first. Usage: infra/local/seed.sh [runner-binary]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RUNNER="${1:-${ROOT}/target/debug/local-runner}"
API="http://127.0.0.1:${LOCAL_API_PORT:-3000}"

log() { printf '[seed] %s\n' "$*" >&2; }

for _ in $(seq 1 600); do
    curl -s -o /dev/null "${API}/_local/clock" && break
    sleep 1
done
curl -s -o /dev/null "${API}/_local/clock" || { log "the gateway at ${API} never answered"; exit 1; }

token() { "${RUNNER}" token --sub "$1" --role "$2"; }
call() {
    local method="$1" expected="$2" who="$3" role="$4" path="$5" body="$6" code
    code=$(curl -s -o /tmp/seed-response.json -w '%{http_code}' -X "${method}" "${API}${path}" \
        -H "authorization: Bearer $(token "${who}" "${role}")" -H 'content-type: application/json' -d "${body}")
    log "${method} ${path} as ${who} (${role}): ${code}"
    [[ "${code}" == "${expected}" ]] || { cat /tmp/seed-response.json >&2; echo >&2; return 1; }
}
put() { call PUT 200 "$@"; }
# Asks for a code for the agent's number, reads it from the text in the local outbox as the
# agent would read their phone, and types it back.
verify_phone() {
    local agent="$1" phone="$2" code=""
    call POST 202 "${agent}" agent "/agents/${agent}/phone-verification" "{\"phone\": \"${phone}\"}"
    for _ in $(seq 1 120); do
        code=$(curl -s "${API}/_local/outbox" | python3 -c '
import json, sys
texts = [e["body"] for e in json.load(sys.stdin) if e.get("channel") == "sms" and e.get("to") == sys.argv[1]]
codes = [t.split("Code: ")[1][:6] for t in texts if "Code: " in t]
print(codes[-1] if codes else "")' "${phone}")
        [[ -n "${code}" ]] && break
        sleep 0.5
    done
    [[ -n "${code}" ]] || { log "no code reached ${phone}"; return 1; }
    call POST 200 "${agent}" agent "/agents/${agent}/phone-verification/confirm" \
        "{\"phone\": \"${phone}\", \"code\": \"${code}\"}"
}

log "seeding (the first call waits for the functions' build; this can take a few minutes)"
put admin-1 admin /teams/bay-team '{"name": "Bay Team", "leadAgentId": "ana", "agentIds": ["ben", "cy"]}'
n=1
for agent in ana ben cy; do
    put "${agent}" agent "/agents/${agent}" "{\"name\": \"${agent^} Agent\", \"email\": \"${agent}@agents.example.com\",
        \"cellPhone\": \"+1415555010${n}\", \"licensed\": true, \"zips\": [\"94110\", \"94103\"],
        \"clientTypes\": [\"buyer\", \"seller\"], \"warmTransfer\": true, \"pushToken\": \"device-token-${agent}\",
        \"timeZone\": \"America/Los_Angeles\"}"
    verify_phone "${agent}" "+1415555010${n}"
    n=$((n + 1))
done
put admin-1 admin /agents/ana/agreement '{"feePercent": 25}'
put ana agent /teams/bay-team/routing '{"enabled": true, "members": [
    {"agentId": "ben", "receives": "seller", "warmTransfer": true},
    {"agentId": "cy", "receives": "buyer"}]}'
log "done: team bay-team led by ana, with ben (sellers) and cy (buyers); lead routing on"
