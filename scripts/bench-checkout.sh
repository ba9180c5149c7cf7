#!/usr/bin/env bash
# Checkout benchmark: full checkouts per second on one hot time sale. A checkout is a purchase
# (POST /api/v1/time-sales/{id}/purchase) then its payment (POST /api/v1/orders/{id}/pay), each
# customer buying one unit once (per-user limit 1), driven by wrk (scripts/wrk/checkout.lua).
#
# It runs three modes, each on its own server and fresh data dir (SQLite, synchronous=full):
#   points  every checkout paid with points, earned beforehand (scripts/wrk/earn.lua)
#   card0   paid by card through `surge gateway-sim` answering at once
#   card20  paid by card through `surge gateway-sim` answering after 20 ms
# then checks that the sale's `sold` equals the checkouts wrk saw CONFIRMED (a confirmed order
# took its unit), and prints one table (also written to $OUT): checkouts/s (CONFIRMED answers
# per second of the run), and p50/p99 of all requests (purchases and pays alike).
#
# Usage: scripts/bench-checkout.sh [KEY=VALUE ...]   (the same keys can be set in the environment)
#   CONNS=64  THREADS=2  DURATION_SECS=15  PORT=18080  SIM_PORT=18090
#   BUYERS=200000       distinct customers (tokens); must exceed the checkouts of one run
#   MODES="points card0 card20"
#   SURGE_BIN=          a surge binary to use instead of building with cargo --release
#   OUT=$CARGO_TARGET_DIR/bench-checkout.txt
#   KEEP_TMP=0          1 keeps the temp dir (logs, wrk output)
# Exit status: 0 when every mode ran and every count matched; 3 on a mismatch; other non-zero
# on failure. Only loopback traffic; every step is bounded by a timeout.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

die() { printf 'bench-checkout: FATAL: %s\n' "$*" >&2; exit 1; }
say() { printf '\n---- %s\n' "$*"; }

readonly SETTINGS=" CONNS THREADS DURATION_SECS PORT SIM_PORT BUYERS MODES SURGE_BIN OUT KEEP_TMP "
# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"
settings_from_args "${BASH_SOURCE[0]}" "$SETTINGS" "$@"

CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
DURATION_SECS=${DURATION_SECS:-15}
PORT=${PORT:-18080}
SIM_PORT=${SIM_PORT:-18090}
BUYERS=${BUYERS:-200000}
MODES=${MODES:-points card0 card20}
KEEP_TMP=${KEEP_TMP:-0}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_ROOT/target}
OUT=${OUT:-$CARGO_TARGET_DIR/bench-checkout.txt}
BUILD_SURGE=1
if [ -n "${SURGE_BIN:-}" ]; then BUILD_SURGE=0; fi
SURGE_BIN=${SURGE_BIN:-$CARGO_TARGET_DIR/release/surge}
readonly PRICE=9900

for n in CONNS THREADS DURATION_SECS PORT SIM_PORT BUYERS; do
    [[ ${!n} =~ ^[1-9][0-9]*$ ]] || die "$n must be a positive integer (got '${!n}')"
done
for mode in $MODES; do
    case "$mode" in points | card0 | card20) ;; *) die "unknown mode '$mode'" ;; esac
done
need=()
for tool in curl jq wrk; do command -v "$tool" >/dev/null 2>&1 || need+=("$tool"); done
if [ "${#need[@]}" -gt 0 ]; then
    say "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get update -q
    timeout 900 apt-get install -y -q "${need[@]}"
fi

JWT_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d " \n")
readonly JWT_SECRET
WORK=$(mktemp -d "${TMPDIR:-/tmp}/surge-bench-checkout.XXXXXX")
RUN_ID="c$(date +%s)-$$"
BASE_URL="http://127.0.0.1:$PORT"
SIM_URL="http://127.0.0.1:$SIM_PORT"
SURGE_PID="" SIM_PID="" FAILED=0

stop_pid() { # PID
    [ -n "$1" ] || return 0
    kill -TERM "$1" 2>/dev/null || return 0
    local i
    for ((i = 0; i < 150; i++)); do kill -0 "$1" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
cleanup() {
    stop_pid "$SURGE_PID"
    stop_pid "$SIM_PID"
    if [ "$KEEP_TMP" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

call() { # METHOD URL TOKEN [BODY [KEY]]
    local args=(-sS --max-time 10 -o "$WORK/last.json" -w '%{http_code}' -X "$1")
    [ -z "$3" ] || args+=(-H "Authorization: Bearer $3")
    [ -z "${5:-}" ] || args+=(-H "Idempotency-Key: $5")
    [ -z "${4:-}" ] || args+=(-H 'Content-Type: application/json' --data-binary "$4")
    curl "${args[@]}" "$2" || true
}
surge_cli() { (cd "$REPO_ROOT" && SURGE_AUTH__JWT_SECRET=$JWT_SECRET timeout 60 "$SURGE_BIN" "$@"); }
wrk_value() { grep -m1 "^$1 " "$2" | tr ' ' '\n' | awk -F= -v k="$3" '$1 == k { print $2; exit }'; }

wait_up() { # URL PID NAME
    local i
    for ((i = 0; i < 120; i++)); do
        kill -0 "$2" 2>/dev/null || die "$3 exited during start-up (see $WORK/$3.log)"
        [ "$(call GET "$1" "")" = 200 ] && return 0
        sleep 0.5
    done
    die "$3 did not answer $1 within 60 s"
}

if [ "$BUILD_SURGE" = 1 ]; then
    say "cargo build --release"
    (cd "$REPO_ROOT" && timeout 2700 cargo build --release)
fi
[ -x "$SURGE_BIN" ] || die "no surge binary at $SURGE_BIN"

say "starting surge gateway-sim on $SIM_URL"
"$SURGE_BIN" gateway-sim --listen "127.0.0.1:$SIM_PORT" >"$WORK/sim.log" 2>&1 &
SIM_PID=$!
wait_up "$SIM_URL/_sim/mode" "$SIM_PID" sim

say "minting 1 operator and $BUYERS customer tokens"
OPERATOR=$(surge_cli token --user-id bench-operator --role operator | tail -n 1 | tr -d '[:space:]')
surge_cli token --user-id buyer --role customer --count "$BUYERS" >"$WORK/buyers.txt"
[ "$(wc -l <"$WORK/buyers.txt")" = "$BUYERS" ] || die "surge token --count printed too few tokens"

ROWS=()
run_mode() { # MODE
    local mode=$1 data="$WORK/data-$1" latency=0 pay_body
    case "$mode" in
        points) pay_body="{\"points\":$PRICE}" ;;
        card0) pay_body='{"card_token":"tok_visa"}' ;;
        card20) pay_body='{"card_token":"tok_visa"}' latency=20 ;;
    esac
    [ "$(call POST "$SIM_URL/_sim/mode" "" "{\"mode\":\"up\",\"latency_ms\":$latency}")" = 200 ] ||
        die "the sim refused its mode"
    say "[$mode] starting surge on $BASE_URL (sqlite synchronous=full, data in $data)"
    timeout 120 sync || true
    mkdir -p "$data"
    (cd "$REPO_ROOT" && exec env SURGE_AUTH__JWT_SECRET="$JWT_SECRET" SURGE_ORDERS__PAY_WITHIN_SECS=3600 \
        SURGE_GATEWAY__URL="$SIM_URL" RUST_LOG=warn \
        "$SURGE_BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$data") >>"$WORK/surge.log" 2>&1 &
    SURGE_PID=$!
    wait_up "$BASE_URL/healthz" "$SURGE_PID" surge

    local code product sale starts ends
    code=$(call POST "$BASE_URL/api/v1/products" "$OPERATOR" '{"name":"hot sneaker","price":12000}' "$RUN_ID-$mode-p")
    [ "$code" = 201 ] || die "POST /products answered $code: $(cat "$WORK/last.json")"
    product=$(jq -er '.id' "$WORK/last.json")
    starts=$(date -u -d '-1 minute' +%Y-%m-%dT%H:%M:%SZ)
    ends=$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)
    code=$(call POST "$BASE_URL/api/v1/time-sales" "$OPERATOR" \
        "{\"product_id\":\"$product\",\"quantity\":100000000,\"sale_price\":$PRICE,\"starts_at\":\"$starts\",\"ends_at\":\"$ends\",\"per_user_limit\":1}" \
        "$RUN_ID-$mode-s")
    [ "$code" = 201 ] || die "POST /time-sales answered $code: $(cat "$WORK/last.json")"
    sale=$(jq -er '.id' "$WORK/last.json")

    if [ "$mode" = points ]; then
        local earn_secs=$((BUYERS / 2000 + 5))
        say "[points] earning $PRICE points for each of $BUYERS buyers (wrk, ${earn_secs}s)"
        timeout $((earn_secs + 60)) wrk -t"$THREADS" -c"$CONNS" -d"${earn_secs}s" -s "$SCRIPT_DIR/wrk/earn.lua" \
            "$BASE_URL/healthz" -- "$OPERATOR" buyer "$BUYERS" "$PRICE" "$THREADS" "$RUN_ID" >"$WORK/earn.txt"
        [ "$(call GET "$BASE_URL/api/v1/wallets/buyer-$BUYERS" "$OPERATOR")" = 200 ] &&
            [ "$(jq -r '.balance' "$WORK/last.json")" = "$PRICE" ] ||
            die "the last buyer has no points after the earn run (raise its time: $(cat "$WORK/last.json"))"
    fi

    say "[$mode] wrk -t$THREADS -c$CONNS -d${DURATION_SECS}s checkout.lua"
    timeout $((DURATION_SECS + 120)) wrk -t"$THREADS" -c"$CONNS" -d"${DURATION_SECS}s" --timeout 10s --latency \
        -s "$SCRIPT_DIR/wrk/checkout.lua" "$BASE_URL/api/v1/time-sales/$sale/purchase" \
        -- "$WORK/buyers.txt" "$RUN_ID-$mode" "$THREADS" "$pay_body" buyer | tee "$WORK/wrk-$mode.txt"

    local confirmed duration p50 p99 sold cps verdict
    confirmed=$(wrk_value CHECKOUT_RESULT "$WORK/wrk-$mode.txt" confirmed)
    duration=$(wrk_value WRK_RESULT "$WORK/wrk-$mode.txt" duration_s)
    p50=$(wrk_value WRK_RESULT "$WORK/wrk-$mode.txt" p50_ms)
    p99=$(wrk_value WRK_RESULT "$WORK/wrk-$mode.txt" p99_ms)
    # Pays still running when wrk stopped finish on their own; read `sold` once it settles.
    local prev=-1 i
    for ((i = 0; i < 60; i++)); do
        [ "$(call GET "$BASE_URL/api/v1/time-sales/$sale" "$OPERATOR")" = 200 ] || die "GET sale failed"
        sold=$(jq -r '.sold' "$WORK/last.json")
        [ "$sold" = "$prev" ] && break
        prev=$sold
        sleep 1
    done
    cps=$(awk -v c="$confirmed" -v d="$duration" 'BEGIN { printf "%.0f", c / d }')
    if [ "$sold" -ge "$confirmed" ]; then
        verdict="sold $sold >= $confirmed confirmed (the rest were paying when wrk stopped)"
    else
        verdict="MISMATCH: sold $sold < $confirmed confirmed"
        FAILED=3
    fi
    ROWS+=("$(printf '| %-7s | %8s | %8s | %8s | %s |' "$mode" "$cps" "$p50" "$p99" "$verdict")")
    stop_pid "$SURGE_PID"
    SURGE_PID=""
}

for mode in $MODES; do run_mode "$mode"; done

{
    echo "surge checkouts (purchase + pay) on one hot time sale, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "wrk -t$THREADS -c$CONNS -d${DURATION_SECS}s; p50/p99 over all requests (purchases and pays), ms"
    echo
    echo "| mode    | checkouts/s | p50 ms | p99 ms | check |"
    echo "|---------|------------:|-------:|-------:|-------|"
    printf '%s\n' "${ROWS[@]}"
} | tee "$OUT"
exit "$FAILED"
