#!/usr/bin/env bash
# Ticketing benchmark: a 60,000-seat stadium sold out by best-available holds, and 100,000 joins
# to one waiting room.
#
# It runs, against the release build on the SQLite default (synchronous as SQLITE_SYNC):
#   1. seats  creates an event of 100 sections x 30 rows x 20 seats, then USERS distinct customers
#             on CONNS connections (wrk, scripts/wrk/until.lua) ask for QUANTITY adjacent seats
#             (best available) until the event is sold out (every thread stops after 50 409s in a
#             row). Reports holds/s (201s over the time to sell out), p50/p99 of all answers, the
#             server's VmRSS before and after the event was created and after the sell-out, and
#             checks that held seats = QUANTITY x 201s and nothing is left available.
#             WATCHERS WebSocket sessions (examples/live_watchers.rs, niced) watch the map's
#             event:{id}:seats topic during the sell-out; each folds its frames into its own
#             copy of the map, and once the map is sold out every copy must equal it, seat by
#             seat. Reports their frames/s, KiB/s and full frames (first frames + resyncs).
#   2. queue  one time sale, JOINS distinct customers join its waiting room on JOIN_CONNS
#             connections; reports joins/s and p99, and checks waiting + admitted = 201s.
# The cost of one admission with 100,000 waiting is a criterion bench (it is a pure function):
#   cargo bench --bench core -- waiting_room
# and prints one table (also written to $OUT).
#
# Usage: scripts/bench-tickets.sh [KEY=VALUE ...]   (the same keys can be set in the environment)
#   USERS=10000 CONNS=10000 QUANTITY=2   part 1
#   WATCHERS=100                         part 1's WebSocket watchers (0: none)
#   JOINS=100000 JOIN_CONNS=64           part 2
#   THREADS=2 PORT=18095 BOUND_SECS=300 SQLITE_SYNC=full PARTS="seats queue"
#   SURGE_BIN= WATCHERS_BIN= (binaries instead of cargo build --release)
#   OUT=$CARGO_TARGET_DIR/bench-tickets.txt
#   KEEP_TMP=0
# Exit status: 0 when every part ran and its check matched; 3 on a mismatch; other on failure.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
die() { printf 'bench-tickets: FATAL: %s\n' "$*" >&2; exit 1; }
say() { printf '\n---- %s\n' "$*"; }

readonly SETTINGS=" WATCHERS WATCHERS_BIN USERS CONNS QUANTITY JOINS JOIN_CONNS THREADS PORT BOUND_SECS SQLITE_SYNC PARTS SURGE_BIN OUT KEEP_TMP "
# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"
settings_from_args "${BASH_SOURCE[0]}" "$SETTINGS" "$@"
USERS=${USERS:-10000} CONNS=${CONNS:-10000} QUANTITY=${QUANTITY:-2} WATCHERS=${WATCHERS:-100}
JOINS=${JOINS:-100000} JOIN_CONNS=${JOIN_CONNS:-64}
THREADS=${THREADS:-2} PORT=${PORT:-18095} BOUND_SECS=${BOUND_SECS:-300}
SQLITE_SYNC=${SQLITE_SYNC:-full} PARTS=${PARTS:-seats queue} KEEP_TMP=${KEEP_TMP:-0}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target}
OUT=${OUT:-$CARGO_TARGET_DIR/bench-tickets.txt}
BUILD_SURGE=1
if [ -n "${SURGE_BIN:-}" ] && [ -n "${WATCHERS_BIN:-}" ]; then BUILD_SURGE=0; fi
SURGE_BIN=${SURGE_BIN:-$CARGO_TARGET_DIR/release/surge}
WATCHERS_BIN=${WATCHERS_BIN:-$CARGO_TARGET_DIR/release/examples/live_watchers}
[[ $WATCHERS =~ ^[0-9]+$ ]] || die "WATCHERS must be a non-negative integer (got '$WATCHERS')"
for n in USERS CONNS QUANTITY JOINS JOIN_CONNS THREADS PORT BOUND_SECS; do
    [[ ${!n} =~ ^[1-9][0-9]*$ ]] || die "$n must be a positive integer (got '${!n}')"
done
case "$QUANTITY" in 1 | 2 | 4) ;; *) die "QUANTITY must be 1, 2 or 4 (it divides the rows of 20 seats, so the stadium sells out exactly)" ;; esac
[ "$JOINS" -ge "$THREADS" ] || die "JOINS must be at least THREADS"
want() { [[ " $PARTS " == *" $1 "* ]]; }
for tool in curl jq wrk; do command -v "$tool" >/dev/null || die "$tool is needed (apt-get install $tool)"; done
[ "$(ulimit -n)" -gt $((CONNS + 1000)) ] || ulimit -n $((CONNS + 1000)) 2>/dev/null ||
    die "CONNS=$CONNS needs more open files than 'ulimit -n' allows"

# A fresh signing secret per run: the server refuses any secret published in the repository.
JWT_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d " \n")
readonly JWT_SECRET
WORK=$(mktemp -d "${TMPDIR:-/tmp}/surge-bench-tickets.XXXXXX")
BASE_URL="http://127.0.0.1:$PORT"
SURGE_PID="" WRK_PID="" WATCHERS_PID=""
FAILED_CHECK=0

stop_wrk() {
    [ -n "$WRK_PID" ] || return 0
    kill -INT "$WRK_PID" 2>/dev/null || true
    local i
    for ((i = 0; i < 50; i++)); do kill -0 "$WRK_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$WRK_PID" 2>/dev/null || true
    wait "$WRK_PID" 2>/dev/null || true
    WRK_PID=""
}
stop_surge() {
    [ -n "$SURGE_PID" ] || return 0
    kill -TERM "$SURGE_PID" 2>/dev/null || true
    local i
    for ((i = 0; i < 150; i++)); do kill -0 "$SURGE_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$SURGE_PID" 2>/dev/null || true
    wait "$SURGE_PID" 2>/dev/null || true
    SURGE_PID=""
}
cleanup() {
    local rc=$?
    stop_wrk
    [ -z "$WATCHERS_PID" ] || kill "$WATCHERS_PID" 2>/dev/null || true
    stop_surge
    if [ "$KEEP_TMP" = 1 ] || [ "$rc" -ne 0 ]; then echo "bench-tickets: temp files kept in $WORK" >&2; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

call() { # METHOD PATH TOKEN [BODY_FILE]: body to $WORK/last.json, status to stdout
    local args=(-sS --max-time 30 -o "$WORK/last.json" -w '%{http_code}' -X "$1" -H "Authorization: Bearer $3")
    [ -z "${4:-}" ] || args+=(-H 'Content-Type: application/json' --data-binary "@$4")
    curl "${args[@]}" "$BASE_URL$2" || true
}
token() { (cd "$WORK" && SURGE_AUTH__JWT_SECRET=$JWT_SECRET timeout 60 "$SURGE_BIN" token "$@"); }
rss_kb() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$SURGE_PID/status"; }
wrk_value() { grep -m1 '^WRK_RESULT ' "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2; exit }'; }

start_surge() {
    if [ "$BUILD_SURGE" = 1 ]; then
        say "cargo build --release --bin surge --example live_watchers"
        (cd "$REPO_ROOT" && timeout 2700 cargo build --release --bin surge --example live_watchers)
    fi
    [ -x "$SURGE_BIN" ] || die "no surge binary at $SURGE_BIN"
    curl -s --max-time 2 -o /dev/null "$BASE_URL/healthz" && die "something already answers on port $PORT"
    mkdir -p "$WORK/data"
    (cd "$WORK" && exec env SURGE_AUTH__JWT_SECRET="$JWT_SECRET" SURGE_DATABASE__SQLITE_SYNCHRONOUS="$SQLITE_SYNC" \
        SURGE_WS__SESSIONS_MAX=$((WATCHERS + 100)) SURGE_WS__SESSIONS_PER_USER_MAX=$((WATCHERS + 100)) \
        SURGE_SERVER__CONNECTIONS_PER_ADDRESS_MAX=$((CONNS + JOIN_CONNS + WATCHERS + 100)) \
        SURGE_ORDERS__PAY_WITHIN_SECS=3600 RUST_LOG=warn "$SURGE_BIN" serve --listen "127.0.0.1:$PORT" \
        --data-dir "$WORK/data") >"$WORK/surge.log" 2>&1 &
    SURGE_PID=$!
    local i
    for ((i = 0; i < 120; i++)); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE_URL/healthz" || true)" = 200 ] && return 0
        kill -0 "$SURGE_PID" 2>/dev/null || { tail -n 30 "$WORK/surge.log" >&2; die "surge exited at start-up"; }
        sleep 0.5
    done
    die "surge did not answer /healthz within 60 s"
}

# drive NAME CONNS URL [until.lua ARGS after DONE_DIR...]: runs wrk until every thread is done
# (or BOUND_SECS), then SIGINTs it. DRIVE_SECS = how long it ran.
drive() {
    local name=$1 conns=$2 url=$3
    shift 3
    local done_dir="$WORK/done-$name" out="$WORK/wrk-$name.txt" t0
    mkdir -p "$done_dir"
    say "wrk $name: -t$THREADS -c$conns $url"
    t0=${EPOCHREALTIME/[.,]/}
    wrk -t"$THREADS" -c"$conns" -d"$((BOUND_SECS + 30))s" --timeout 30s --latency \
        -s "$SCRIPT_DIR/wrk/until.lua" "$url" -- "$1" "$done_dir" "${@:2}" >"$out" 2>&1 &
    WRK_PID=$!
    while [ "$(find "$done_dir" -name 'thread-*' | wc -l)" -lt "$THREADS" ]; do
        kill -0 "$WRK_PID" 2>/dev/null || { cat "$out" >&2; die "wrk $name exited early"; }
        [ $(((${EPOCHREALTIME/[.,]/} - t0) / 1000000)) -lt "$BOUND_SECS" ] || { echo "wrk $name: bound of $BOUND_SECS s reached" >&2; break; }
        sleep 0.1
    done
    DRIVE_SECS=$(awk -v d=$((${EPOCHREALTIME/[.,]/} - t0)) 'BEGIN { printf "%.2f", d / 1e6 }')
    stop_wrk
    grep '^WRK_RESULT ' "$out" || { cat "$out" >&2; die "wrk $name printed no WRK_RESULT"; }
}

SEATS_ROW="not run" SEATS_CHECK="" SEATS_RSS="" SEATS_LIVE="" QUEUE_ROW="not run" QUEUE_CHECK=""
live_value() { grep -m1 '^LIVE_RESULT ' "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2; exit }'; }

# start_watchers EVENT OPERATOR_TOKEN: WATCHERS sessions on the event's seats topic.
start_watchers() {
    [ "$WATCHERS" -gt 0 ] || return 0
    say "opening $WATCHERS WebSocket sessions on event:$1:seats"
    local fan i
    fan=$(token --user-id watching-fan --role customer)
    mkfifo "$WORK/stop-watchers"
    # Niced: in production the watchers are other people's machines, not this one's CPU.
    nice -n 19 "$WATCHERS_BIN" --seats --url "ws://127.0.0.1:$PORT/api/v1/ws" --token "$fan" \
        --topic "event:$1:seats" --sessions "$WATCHERS" --settle-secs 30 \
        --final-url "$BASE_URL/api/v1/events/$1/seats" \
        <"$WORK/stop-watchers" >"$WORK/watchers.txt" 2>"$WORK/watchers.err" &
    WATCHERS_PID=$!
    exec 7>"$WORK/stop-watchers"
    for ((i = 0; i < 120; i++)); do
        [ "$(call GET /api/v1/admin/overview "$2")" = 200 ] || die "overview: $(cat "$WORK/last.json")"
        [ "$(jq -r .live.sessions "$WORK/last.json")" -ge "$WATCHERS" ] && return 0
        sleep 0.5
    done
    die "the watchers did not open $WATCHERS sessions in 60 s: $(cat "$WORK/watchers.err")"
}

# Stops the watchers and checks that every copy of the map equals the map.
stop_watchers() {
    [ "$WATCHERS" -gt 0 ] || return 0
    echo stop >&7
    exec 7>&-
    wait "$WATCHERS_PID" || die "live_watchers failed: $(cat "$WORK/watchers.err")"
    WATCHERS_PID=""
    local w="$WORK/watchers.txt" converged
    cat "$w"
    converged=$(live_value "$w" converged)
    SEATS_LIVE=$(printf '%s watchers: %s frames/s, %s KiB/s, %s full frames, %s of %s copies equal the map seat by seat (%s seats taken), %s seq regressions, %s errors' \
        "$WATCHERS" "$(live_value "$w" frames_per_sec)" "$(live_value "$w" kib_per_sec)" "$(live_value "$w" full_frames)" \
        "$converged" "$WATCHERS" "$(live_value "$w" final_taken_seats)" "$(live_value "$w" seq_regressions)" "$(live_value "$w" errors)")
    if [ "$converged" != "$WATCHERS" ] || [ "$(live_value "$w" seq_regressions)" != 0 ] || [ "$(live_value "$w" errors)" != 0 ]; then
        SEATS_LIVE="MISMATCH: $SEATS_LIVE"
        FAILED_CHECK=1
    fi
}

run_seats() {
    say "creating a 60,000-seat event (100 sections x 30 rows x 20 seats)"
    local before_kb op event
    before_kb=$(rss_kb)
    op=$(token --user-id bench-op --role operator)
    jq -n --arg starts "$(date -u -d '+30 days' +%Y-%m-%dT%H:%M:%SZ)" '{
        name: "Stadium final", venue: "Stadium", starts_at: $starts, hold_ttl_secs: 3600,
        max_seats_per_order: 4,
        sections: [range(100) as $s | {name: "S\($s)", rows: [range(1; 31) as $r |
            {name: "\($r)", seats: 20, price: (10000 - $r * 100)}]}]
    }' >"$WORK/stadium.json"
    [ "$(call POST /api/v1/events "$op" "$WORK/stadium.json")" = 201 ] || die "create event: $(cat "$WORK/last.json")"
    event=$(jq -er .id "$WORK/last.json")
    local created_kb
    created_kb=$(rss_kb)
    token --user-id fan --role customer --count "$USERS" >"$WORK/fans.txt"
    printf '{"quantity":%s}' "$QUANTITY" >"$WORK/hold.json"
    start_watchers "$event" "$op"
    drive seats "$CONNS" "$BASE_URL/api/v1/events/$event/holds" "$WORK/fans.txt" "$THREADS" 0 \
        "$(cat "$WORK/hold.json")" 409
    stop_watchers
    local w="$WORK/wrk-seats.txt" ok held available
    ok=$(wrk_value "$w" ok_2xx)
    [ "$(call GET "/api/v1/events/$event" "$op")" = 200 ] || die "GET event failed"
    held=$(jq -er .availability.held "$WORK/last.json")
    available=$(jq -er .availability.available "$WORK/last.json")
    SEATS_ROW=$(printf '%s holds of %s seats in %s s = %s holds/s (%s seats/s); p50 %s ms, p99 %s ms; statuses %s' \
        "$ok" "$QUANTITY" "$DRIVE_SECS" "$(awk -v o="$ok" -v s="$DRIVE_SECS" 'BEGIN { printf "%.0f", o / s }')" \
        "$(awk -v o="$ok" -v q="$QUANTITY" -v s="$DRIVE_SECS" 'BEGIN { printf "%.0f", o * q / s }')" \
        "$(wrk_value "$w" p50_ms)" "$(wrk_value "$w" p99_ms)" "$(wrk_value "$w" statuses)")
    if [ "$held" = $((ok * QUANTITY)) ] && [ "$available" = 0 ]; then
        SEATS_CHECK="MATCH: held $held = $QUANTITY x $ok 201s, available 0"
    else
        SEATS_CHECK="MISMATCH: held $held, available $available, 201s $ok"
        FAILED_CHECK=1
    fi
    SEATS_RSS="VmRSS $before_kb kB before the event, $created_kb kB after creating it, $(rss_kb) kB after the sell-out"
}

run_queue() {
    say "one time sale and $JOINS joins to its waiting room"
    local op product sale
    op=$(token --user-id bench-op --role operator)
    echo '{"name":"queued","price":1000}' >"$WORK/product.json"
    [ "$(call POST /api/v1/products "$op" "$WORK/product.json")" = 201 ] || die "create product: $(cat "$WORK/last.json")"
    product=$(jq -er .id "$WORK/last.json")
    jq -n --arg p "$product" --arg s "$(date -u -d '-1 minute' +%Y-%m-%dT%H:%M:%SZ)" \
        --arg e "$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)" \
        '{product_id: $p, quantity: 1000, sale_price: 900, starts_at: $s, ends_at: $e, queue_required: true}' \
        >"$WORK/sale.json"
    [ "$(call POST /api/v1/time-sales "$op" "$WORK/sale.json")" = 201 ] || die "create sale: $(cat "$WORK/last.json")"
    sale=$(jq -er .id "$WORK/last.json")
    token --user-id queuer --role customer --count "$JOINS" >"$WORK/queuers.txt"
    drive queue "$JOIN_CONNS" "$BASE_URL/api/v1/time-sales/$sale/queue/join" "$WORK/queuers.txt" "$THREADS" \
        "$JOINS" '{}' 0
    local w="$WORK/wrk-queue.txt" ok waiting admitted
    ok=$(wrk_value "$w" ok_2xx)
    [ "$(call GET "/api/v1/time-sales/$sale/queue" "$op")" = 200 ] || die "GET queue stats failed"
    waiting=$(jq -er .waiting "$WORK/last.json")
    admitted=$(jq -er .admitted "$WORK/last.json")
    QUEUE_ROW=$(printf '%s joins in %s s = %s joins/s; p50 %s ms, p99 %s ms; statuses %s' "$ok" "$DRIVE_SECS" \
        "$(awk -v o="$ok" -v s="$DRIVE_SECS" 'BEGIN { printf "%.0f", o / s }')" \
        "$(wrk_value "$w" p50_ms)" "$(wrk_value "$w" p99_ms)" "$(wrk_value "$w" statuses)")
    if [ $((waiting + admitted)) = "$ok" ]; then
        QUEUE_CHECK="MATCH: waiting $waiting + admitted $admitted = $ok 201s"
    else
        QUEUE_CHECK="MISMATCH: waiting $waiting + admitted $admitted, 201s $ok"
        FAILED_CHECK=1
    fi
}

STARTED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
start_surge
if want seats; then run_seats; fi
if want queue; then run_queue; fi
stop_surge

mkdir -p "$(dirname "$OUT")"
{
    printf 'surge ticketing benchmark, %s; sqlite synchronous=%s; wrk -t%s; %s cores (%s)\n' "$STARTED_AT" \
        "$SQLITE_SYNC" "$THREADS" "$(nproc)" "$(lscpu | awk -F: '/^Model name/ { sub(/^[ \t]+/, "", $2); print $2; exit }')"
    printf 'seats (60,000, %s users on %s connections, best available x%s): %s\n' "$USERS" "$CONNS" "$QUANTITY" "$SEATS_ROW"
    printf '  %s\n  %s\n' "${SEATS_CHECK:-n/a}" "${SEATS_RSS:-n/a}"
    [ -z "$SEATS_LIVE" ] || printf '  live: %s\n' "$SEATS_LIVE"
    printf 'queue (%s distinct users on %s connections): %s\n' "$JOINS" "$JOIN_CONNS" "$QUEUE_ROW"
    printf '  %s\n' "${QUEUE_CHECK:-n/a}"
} | tee "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "(written to $OUT)"
if [ "$FAILED_CHECK" = 1 ]; then exit 3; fi
