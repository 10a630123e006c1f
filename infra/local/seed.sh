#!/usr/bin/env bash
# Seeds the running local stack with demo data through its own HTTP API, as the apps would:
# an admin creates team bay-team; ana (lead), ben and cy save their profiles; ana turns on lead
# routing. Waits for the gateway first. Usage: infra/local/seed.sh [runner-binary]
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
put() {
    local who="$1" role="$2" path="$3" body="$4" code
    code=$(curl -s -o /tmp/seed-response.json -w '%{http_code}' -X PUT "${API}${path}" \
        -H "authorization: Bearer $(token "${who}" "${role}")" -H 'content-type: application/json' -d "${body}")
    log "PUT ${path} as ${who} (${role}): ${code}"
    [[ "${code}" == 200 ]] || { cat /tmp/seed-response.json >&2; echo >&2; return 1; }
}

log "seeding (the first call waits for the functions' build; this can take a few minutes)"
put admin-1 admin /teams/bay-team '{"name": "Bay Team", "leadAgentId": "ana", "agentIds": ["ben", "cy"]}'
n=1
for agent in ana ben cy; do
    put "${agent}" agent "/agents/${agent}" "{\"name\": \"${agent^} Agent\", \"email\": \"${agent}@agents.example.com\",
        \"cellPhone\": \"+1415555010${n}\", \"licensed\": true, \"zips\": [\"94110\", \"94103\"],
        \"clientTypes\": [\"buyer\", \"seller\"], \"warmTransfer\": true, \"pushToken\": \"device-token-${agent}\",
        \"timeZone\": \"America/Los_Angeles\"}"
    n=$((n + 1))
done
put admin-1 admin /agents/ana/agreement '{"feePercent": 25}'
put ana agent /teams/bay-team/routing '{"enabled": true, "members": [
    {"agentId": "ben", "receives": "seller", "warmTransfer": true},
    {"agentId": "cy", "receives": "buyer"}]}'
log "done: team bay-team led by ana, with ben (sellers) and cy (buyers); lead routing on"
