#!/usr/bin/env bash
# Live-update benchmark: the time-sale flagship (POST /api/v1/time-sales/{id}/purchase, every
# request by a different customer), with nobody watching the sale and with WATCHERS WebSocket
# sessions subscribed to its topic (examples/live_watchers.rs), in alternating phases.
#
# It prints, for both phases: purchases/s, p50, p99 and the server's CPU per purchase, and for
# the watched phase the frames the watchers received per second. It checks what subscribers are
# promised: no session saw a seq go backwards, and after the load every session converged to the
# sale's final `reserved`; and, as bench-hot.sh does, that `reserved` moved by exactly the 2xx
# answers wrk saw in each phase.
#
# Usage: scripts/bench-live.sh [KEY=VALUE ...]   (the same keys can be set in the environment)
#   CONNS=64  THREADS=2  DURATION_SECS=15  PORT=18081
#   WATCHERS=1000          WebSocket sessions in the watched phase
#   FRAME_INTERVAL_MS=100  the server's ws.topic_frame_interval_ms (0: every value a session takes)
#   SALE_USERS=300000      distinct customers (must exceed the purchases of a phase)
#   ROUNDS=2               rounds of (nobody watching, watched), alternating, each phase on a
#                          fresh server and sale so none runs on the state an earlier one grew
#   SURGE_BIN= WATCHERS_BIN=   binaries to use instead of building with cargo --release
#   KEEP_TMP=0             1 keeps the temp dir (server log, wrk output)
# Exit status: 0 when every check passed, 3 when one failed, other non-zero on failure.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

die() { printf 'bench-live: FATAL: %s\n' "$*" >&2; exit 1; }
say() { printf '\n---- %s\n' "$*"; }

readonly SETTINGS=" CONNS THREADS DURATION_SECS PORT WATCHERS FRAME_INTERVAL_MS SALE_USERS ROUNDS SURGE_BIN WATCHERS_BIN KEEP_TMP "
# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"
settings_from_args "${BASH_SOURCE[0]}" "$SETTINGS" "$@"

CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
DURATION_SECS=${DURATION_SECS:-15}
PORT=${PORT:-18081}
WATCHERS=${WATCHERS:-1000}
FRAME_INTERVAL_MS=${FRAME_INTERVAL_MS:-100}
SALE_USERS=${SALE_USERS:-300000}
ROUNDS=${ROUNDS:-2}
KEEP_TMP=${KEEP_TMP:-0}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target}
BUILD=1
if [ -n "${SURGE_BIN:-}" ] && [ -n "${WATCHERS_BIN:-}" ]; then BUILD=0; fi
SURGE_BIN=${SURGE_BIN:-$CARGO_TARGET_DIR/release/surge}
WATCHERS_BIN=${WATCHERS_BIN:-$CARGO_TARGET_DIR/release/examples/live_watchers}
for n in CONNS THREADS DURATION_SECS PORT WATCHERS SALE_USERS ROUNDS; do
    [[ ${!n} =~ ^[1-9][0-9]*$ ]] || die "$n must be a positive integer (got '${!n}')"
done
[[ $FRAME_INTERVAL_MS =~ ^[0-9]+$ ]] || die "FRAME_INTERVAL_MS must be a non-negative integer"

# A fresh signing secret per run: the server refuses any secret published in the repository.
JWT_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d " \n")
readonly JWT_SECRET
readonly QUANTITY=1000000000
BASE_URL="http://127.0.0.1:$PORT"
for tool in curl jq wrk; do command -v "$tool" >/dev/null || die "$tool is needed (apt-get install $tool)"; done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/surge-bench-live.XXXXXX")
RUN_ID="l$(date +%s)-$$"
SURGE_PID="" WATCHERS_PID="" FAILED=0
cleanup() {
    [ -z "$WATCHERS_PID" ] || kill "$WATCHERS_PID" 2>/dev/null || true
    exec 7>&- 2>/dev/null || true
    if [ -n "$SURGE_PID" ]; then kill -TERM "$SURGE_PID" 2>/dev/null || true; wait "$SURGE_PID" 2>/dev/null || true; fi
    if [ "$KEEP_TMP" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

call() { # METHOD PATH TOKEN [BODY [KEY]] -> status; body in $WORK/last.json
    local args=(-sS --max-time 10 -o "$WORK/last.json" -w '%{http_code}' -X "$1")
    [ -z "$3" ] || args+=(-H "Authorization: Bearer $3")
    [ -z "${5:-}" ] || args+=(-H "Idempotency-Key: $5")
    [ -z "${4:-}" ] || args+=(-H 'Content-Type: application/json' --data-binary "$4")
    curl "${args[@]}" "$BASE_URL$2" || true
}
surge_cli() { SURGE_AUTH__JWT_SECRET=$JWT_SECRET timeout 60 "$SURGE_BIN" "$@"; }
wrk_value() { grep -m1 '^WRK_RESULT ' "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2; exit }'; }
live_value() { grep -m1 '^LIVE_RESULT ' "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2; exit }'; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$SURGE_PID/stat"; }

# `reserved` of the sale once two reads half a second apart agree (requests wrk left in flight).
settled_reserved() {
    local prev="" cur i
    for ((i = 0; i < 40; i++)); do
        [ "$(call GET "/api/v1/time-sales/$SALE" "$OPERATOR")" = 200 ] || die "GET sale failed: $(cat "$WORK/last.json")"
        cur=$(jq -er .reserved "$WORK/last.json")
        [ "$cur" = "$prev" ] && { echo "$cur"; return; }
        prev=$cur
        sleep 0.5
    done
    die "reserved did not settle within 20 s"
}

# One wrk run of purchases on $SALE by the customers in TOKENS; sets NAME_RPS, _P50, _P99, _CPU.
purchase_load() { # NAME TOKENS
    local name=$1 out="$WORK/wrk-$1.txt" before after t0 t1 ok in_flight delta
    before=$(settled_reserved)
    t0=$(cpu_ticks)
    say "wrk $name: -t$THREADS -c$CONNS -d${DURATION_SECS}s purchases on sale $SALE"
    timeout -k 10 $((DURATION_SECS + 80)) wrk -t"$THREADS" -c"$CONNS" -d"${DURATION_SECS}s" --timeout 10s \
        --latency -s "$SCRIPT_DIR/wrk/purchase.lua" "$BASE_URL/api/v1/time-sales/$SALE/purchase" \
        -- "$2" "$RUN_ID-$name" "$THREADS" >"$out" 2>&1 || die "wrk failed: $(tail -n 5 "$out")"
    t1=$(cpu_ticks)
    after=$(settled_reserved)
    printf -v "${name}_RPS" '%s' "$(wrk_value "$out" rps)"
    printf -v "${name}_P50" '%s' "$(wrk_value "$out" p50_ms)"
    printf -v "${name}_P99" '%s' "$(wrk_value "$out" p99_ms)"
    ok=$(wrk_value "$out" ok_2xx)
    in_flight=$(wrk_value "$out" in_flight)
    delta=$((after - before))
    printf -v "${name}_CPU" '%s' "$(awk -v a="$t0" -v b="$t1" -v hz="$(getconf CLK_TCK)" -v n="$ok" \
        'BEGIN { printf "%.1f", (b - a) * 1e6 / hz / n }')"
    if [ "$delta" -lt "$ok" ] || [ "$delta" -gt $((ok + in_flight)) ] || [ "$(wrk_value "$out" non_2xx)" != 0 ]; then
        echo "MISMATCH in $name: reserved moved $delta, wrk saw $ok 2xx ($in_flight in flight), non-2xx $(wrk_value "$out" non_2xx)" >&2
        FAILED=1
    fi
    echo "$name: reserved moved $delta for $ok 2xx"
}

if [ "$BUILD" = 1 ]; then
    say "cargo build --release --bin surge --example live_watchers"
    (cd "$REPO_ROOT" && timeout 2700 cargo build --release --bin surge --example live_watchers)
fi

start_surge() { # PHASE
    local data="$WORK/data-$1"
    curl -s --max-time 2 -o /dev/null "$BASE_URL/healthz" && die "something already answers on $BASE_URL"
    # Earlier phases' dirty pages are flushed now, not in this phase's fsyncs.
    timeout 120 sync || true
    (cd "$REPO_ROOT" && exec env SURGE_AUTH__JWT_SECRET="$JWT_SECRET" SURGE_ORDERS__PAY_WITHIN_SECS=3600 \
        SURGE_WS__TOPIC_FRAME_INTERVAL_MS="$FRAME_INTERVAL_MS" SURGE_WS__SESSIONS_MAX=$((WATCHERS + 100)) SURGE_WS__SESSIONS_PER_USER_MAX=$((WATCHERS + 100)) \
        SURGE_SERVER__CONNECTIONS_PER_ADDRESS_MAX=$((WATCHERS + CONNS + 100)) RUST_LOG=warn "$SURGE_BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$data") >>"$WORK/surge.log" 2>&1 &
    SURGE_PID=$!
    for ((i = 0; i < 120; i++)); do
        kill -0 "$SURGE_PID" 2>/dev/null || die "surge exited during start-up: $(tail -n 20 "$WORK/surge.log")"
        [ "$(call GET /healthz "")" = 200 ] && return 0
        sleep 0.5
    done
    die "surge did not answer /healthz within 60 s"
}

stop_surge() {
    kill -TERM "$SURGE_PID"
    wait "$SURGE_PID" || { echo "surge did not exit 0 on SIGTERM" >&2; FAILED=1; }
    SURGE_PID=""
}

create_sale() {
    [ "$(call POST /api/v1/products "$OPERATOR" '{"name":"hot sneaker","price":12000}' "$RUN_ID-p")" = 201 ] ||
        die "product: $(cat "$WORK/last.json")"
    local product starts ends
    product=$(jq -er .id "$WORK/last.json")
    starts=$(date -u -d '-1 minute' +%Y-%m-%dT%H:%M:%SZ)
    ends=$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)
    [ "$(call POST /api/v1/time-sales "$OPERATOR" "{\"product_id\":\"$product\",\"quantity\":$QUANTITY,\"sale_price\":9900,\"starts_at\":\"$starts\",\"ends_at\":\"$ends\",\"per_user_limit\":1}" "$RUN_ID-s")" = 201 ] ||
        die "sale: $(cat "$WORK/last.json")"
    SALE=$(jq -er .id "$WORK/last.json")
}

start_watchers() {
    say "opening $WATCHERS WebSocket sessions on time-sale:$SALE"
    rm -f "$WORK/stop"
    mkfifo "$WORK/stop"
    # Niced: in production the watchers are other people's machines, not this one's CPU.
    nice -n 19 "$WATCHERS_BIN" --url "ws://127.0.0.1:$PORT/api/v1/ws" --token "$WATCHER_TOKEN" \
        --topic "time-sale:$SALE" --sessions "$WATCHERS" --final-url "$BASE_URL/api/v1/time-sales/$SALE" \
        --field reserved <"$WORK/stop" >"$WORK/watchers.txt" 2>"$WORK/watchers.err" &
    WATCHERS_PID=$!
    exec 7>"$WORK/stop"
    for ((i = 0; i < 120; i++)); do
        [ "$(call GET /api/v1/admin/overview "$OPERATOR")" = 200 ] || die "overview: $(cat "$WORK/last.json")"
        [ "$(jq -r .live.sessions "$WORK/last.json")" -ge "$WATCHERS" ] && break
        sleep 0.5
    done
    echo "sessions open: $(jq -c .live "$WORK/last.json")"
}

# Stops the watchers and checks their promises; sets FRAMES_PER_SEC.
stop_watchers() {
    echo stop >&7
    exec 7>&-
    wait "$WATCHERS_PID" || die "live_watchers failed: $(cat "$WORK/watchers.err")"
    WATCHERS_PID=""
    cat "$WORK/watchers.txt"
    local converged regressions errors
    converged=$(live_value "$WORK/watchers.txt" converged)
    regressions=$(live_value "$WORK/watchers.txt" seq_regressions)
    errors=$(live_value "$WORK/watchers.txt" errors)
    FRAMES_PER_SEC=$(live_value "$WORK/watchers.txt" frames_per_sec)
    if [ "$converged" != "$WATCHERS" ] || [ "$regressions" != 0 ] || [ "$errors" != 0 ]; then
        echo "LIVE CHECK FAILED: converged $converged of $WATCHERS, seq regressions $regressions, errors $errors" >&2
        FAILED=1
    fi
}

ROWS=()
# One phase on a fresh server and a fresh sale, so no phase runs on the state an earlier one grew.
phase() { # NAME WITH_WATCHERS(0|1)
    start_surge "$1"
    create_sale
    FRAMES_PER_SEC="-"
    [ "$2" = 0 ] || start_watchers
    purchase_load "$1" "$WORK/tokens.txt"
    [ "$2" = 0 ] || stop_watchers
    stop_surge
    local rps=${1}_RPS p50=${1}_P50 p99=${1}_P99 cpu=${1}_CPU label="nobody watching"
    [ "$2" = 0 ] || label="$WATCHERS watching"
    ROWS+=("$(printf '%-24s %10s %9s %9s %12s %10s' "$label" "${!rps}" "${!p50}" "${!p99}" "${!cpu}" "$FRAMES_PER_SEC")")
}

OPERATOR=$(surge_cli token --user-id bench-operator --role operator | tail -n 1)
WATCHER_TOKEN=$(surge_cli token --user-id watcher --role customer | tail -n 1)
say "minting $SALE_USERS customer tokens (each phase has its own sale, so they serve every phase)"
surge_cli token --user-id buyer --role customer --count "$SALE_USERS" >"$WORK/tokens.txt"

for ((round = 1; round <= ROUNDS; round++)); do
    phase "alone$round" 0
    phase "watched$round" 1
done

say "results ($(nproc) cores, $CONNS connections, ${DURATION_SECS}s a phase, frame interval ${FRAME_INTERVAL_MS} ms, phases alternate)"
printf '%-24s %10s %9s %9s %12s %10s\n' phase "req/s" "p50 ms" "p99 ms" "us CPU/req" "frames/s"
printf '%s\n' "${ROWS[@]}"
echo "every watcher converged to its sale's final reserved, with no seq going backwards: $([ "$FAILED" = 0 ] && echo yes || echo NO)"
[ "$FAILED" = 0 ] || exit 3
