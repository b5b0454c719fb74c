#!/usr/bin/env bash
# Fuzzes a live `sluice serve` (on a free loopback port, fresh data dir)
# against its own /openapi.json with schemathesis: every check except the
# ones that need a stateful setup (resources created across calls), for a
# bounded time. Fails on any failure. Run by scripts/test.sh after the
# release build; expects target/release/sluice and schemathesis (`st`).
set -euo pipefail
cd "$(dirname "$0")/.."

max_time=${SCHEMATHESIS_MAX_TIME:-90}
data_dir=$(mktemp -d)
log="$data_dir/serve.log"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
admin="schemathesis-admin-token"

# Generous rates: the point is the API's answers, not the rate limiter's.
target/release/sluice serve --listen "127.0.0.1:$port" --data-dir "$data_dir/data" \
    --admin-token "$admin" --workers 2 --rate 100000 --burst 100000 \
    --timeout-ms 2000 >"$log" 2>&1 &
server=$!
cleanup() {
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    rm -rf "$data_dir"
}
trap cleanup EXIT

for _ in $(seq 1 100); do
    curl -sf "$url/healthz" >/dev/null && break
    kill -0 "$server" 2>/dev/null || { cat "$log"; echo "sluice serve exited" >&2; exit 1; }
    sleep 0.1
done
key=$(curl -sSf -X POST "$url/v1/tenants" -H "Authorization: Bearer $admin" -d '{"name":"fuzz"}' \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["api_key"])')

# fuzz TOKEN MAX_TIME [FILTER…]: one bounded schemathesis run as TOKEN.
fuzz() {
    local token=$1 seconds=$2
    shift 2
    python3 scripts/schemathesis_cli.py --config-file scripts/schemathesis.toml run "$url/openapi.json" \
        --checks all \
        --exclude-checks use_after_free,ensure_resource_availability,object_level_authorization \
        --phases examples,coverage,fuzzing \
        --max-time "$seconds" \
        --max-examples 50 \
        --workers 2 \
        --request-timeout 10 \
        --seed 1 \
        --header "Authorization: Bearer $token" \
        --report junit --report-dir "$data_dir/report" "$@"
}

# Every operation as a tenant (the admin's answer 401 to it), then the
# admin's tenant operations as the admin.
status=0
fuzz "$key" "$max_time" || status=$?
fuzz "$admin" "${SCHEMATHESIS_ADMIN_MAX_TIME:-45}" --include-tag tenants || status=$?
if [ "$status" != 0 ]; then
    echo "schemathesis found failures (server log: last lines below)" >&2
    tail -n 40 "$log" >&2
fi
exit "$status"
