#!/usr/bin/env bash
# Hot-item benchmark: one stock item and one time sale, many customers, every request a new order
# for one unit.
#
# It measures, in one run, on this machine, with the same number of concurrent clients:
#   1. surge  POST /api/v1/orders                   (wrk, scripts/wrk/orders.lua)   - hot SKU
#   2. surge  POST /api/v1/time-sales/{id}/purchase (wrk, scripts/wrk/purchase.lua) - the flagship:
#             one hot sale, per-user limit 1, every request by a different customer
#   3. surge  GET  /healthz                         (wrk, scripts/wrk/healthz.lua)  - HTTP ceiling
#   4. peer   PostgreSQL row lock   (pgbench, bench/peers/pg_row_lock)
#   5. peer   Redis Lua script      (redis-benchmark, bench/peers/redis_lua), twice: on a fresh
#             redis-server with appendfsync everysec, then on one with appendfsync always
# then checks that each entity's own count moved by exactly the 2xx answers wrk saw, and prints
# one table (also written to $OUT), with the server's CPU (user + system) per request of each wrk
# run beneath it. Each surge part runs on its own server and fresh data dir,
# started before and stopped (SIGTERM) after it. The peers are run exactly as bench/peers/README.md
# says: they are not to be tuned either way.
#
# Usage: scripts/bench-hot.sh [KEY=VALUE ...]   (the same keys can be set in the environment)
#   CONNS=64            concurrent clients for every tool
#   THREADS=2           wrk threads
#   DURATION_SECS=15    length of each run
#   PORT=18080          surge listens on 127.0.0.1:$PORT
#   SQLITE_SYNC=full    SQLite synchronous mode of surge's journal (off|normal|full|extra)
#   USERS=512           distinct customers (tokens) the orders are spread over
#   SALE_USERS=600000   distinct customers for the time sale (one purchase each; must exceed the
#                       purchases made in DURATION_SECS, or repeats get 422 PER_USER_LIMIT_EXCEEDED)
#   PG_URL=postgres://postgres@127.0.0.1:5432/test   database for the PostgreSQL peer
#   PEERS_DIR=<repo>/bench/peers  the peers' SQL and Lua (see its README.md)
#   OUT=$CARGO_TARGET_DIR/bench-hot.txt               where the final table is written
#   REDIS_PEER_PORT=6390  port of the dedicated, durable redis-server for the Redis peer (one
#                       at a time: everysec, then always)
#   REDIS_REQUESTS=       requests for redis-benchmark (default: calibrated to ~DURATION_SECS,
#                       for each appendfsync setting on its own)
#   PARTS="surge sale coupons wallet pg redis"  which parts to run (the others show n/a):
#                       surge = hot-SKU orders, sale = the time-sale flagship, coupons = an issue
#                       storm on one policy (per-user limit 1, one holder per request), wallet =
#                       1-point spends on one hot wallet by its owner; any of these also runs
#                       /healthz on the same server
#   COUPON_TOTAL=1000000  the storm's policy total_quantity (the largest a policy takes)
#   WALLET_POINTS=1000000000000  points earned into the hot wallet before the spends
#   SURGE_BIN=            a surge binary to use instead of building with cargo --release
#   WRK_TIMEOUT_SECS=10   wrk's per-request timeout; slower answers count as errors, not latency
#   KEEP_TMP=0            1 keeps the temp dir (server log, wrk output, pgbench logs)
# Exit status: 0 when everything ran and every count matched; 3 on a MISMATCH, on idempotent
# replays (they would make a figure meaningless) or when a server did not exit 0 on SIGTERM;
# other non-zero on failure.
#
# Only loopback traffic: every server is on 127.0.0.1. Bounded: every step has a timeout.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

die() { printf 'bench-hot: FATAL: %s\n' "$*" >&2; exit 1; }
say() { printf '\n---- %s\n' "$*"; }

# KEY=VALUE arguments override the environment, for the keys listed above only.
readonly SETTINGS=" CONNS THREADS DURATION_SECS PORT SQLITE_SYNC USERS SALE_USERS PG_URL PEERS_DIR OUT \
REDIS_PEER_PORT REDIS_REQUESTS PARTS SURGE_BIN WRK_TIMEOUT_SECS KEEP_TMP COUPON_TOTAL WALLET_POINTS "
# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"
settings_from_args "${BASH_SOURCE[0]}" "$SETTINGS" "$@"

CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
DURATION_SECS=${DURATION_SECS:-15}
PORT=${PORT:-18080}
SQLITE_SYNC=${SQLITE_SYNC:-full}
USERS=${USERS:-512}
SALE_USERS=${SALE_USERS:-600000}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
PEERS_DIR=${PEERS_DIR:-$REPO_ROOT/bench/peers}
REDIS_PEER_PORT=${REDIS_PEER_PORT:-6390}
REDIS_REQUESTS=${REDIS_REQUESTS:-}
PARTS=${PARTS:-surge sale coupons wallet pg redis}
COUPON_TOTAL=${COUPON_TOTAL:-1000000}
WALLET_POINTS=${WALLET_POINTS:-1000000000000}
readonly WALLET_USER="hot-wallet"
WRK_TIMEOUT_SECS=${WRK_TIMEOUT_SECS:-10}
KEEP_TMP=${KEEP_TMP:-0}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target}
OUT=${OUT:-$CARGO_TARGET_DIR/bench-hot.txt}
# Build unless a binary was named: a named binary is used as it is.
BUILD_SURGE=1
if [ -n "${SURGE_BIN:-}" ]; then BUILD_SURGE=0; fi
SURGE_BIN=${SURGE_BIN:-$CARGO_TARGET_DIR/release/surge}

# A fixed secret: the server and `surge token` must agree, and nothing here is secret.
# A fresh signing secret per run: the server refuses any secret published in the repository.
JWT_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d " \n")
readonly JWT_SECRET
readonly SKU="HOT-1"
readonly ON_HAND=1000000000
readonly REDIS_REMAINING=100000000

for n in CONNS THREADS DURATION_SECS PORT USERS SALE_USERS COUPON_TOTAL WALLET_POINTS REDIS_PEER_PORT WRK_TIMEOUT_SECS; do
    [[ ${!n} =~ ^[1-9][0-9]*$ ]] || die "$n must be a positive integer (got '${!n}')"
done
[ -z "$REDIS_REQUESTS" ] || [[ $REDIS_REQUESTS =~ ^[1-9][0-9]*$ ]] || die "REDIS_REQUESTS must be a positive integer"
[ "$CONNS" -ge "$THREADS" ] || die "CONNS ($CONNS) must be >= THREADS ($THREADS): wrk gives each thread CONNS/THREADS connections"
case "$SQLITE_SYNC" in off | normal | full | extra | OFF | NORMAL | FULL | EXTRA) ;; *) die "SQLITE_SYNC must be off, normal, full or extra" ;; esac
for part in $PARTS; do
    case "$part" in surge | sale | coupons | wallet | pg | redis) ;;
        *) die "unknown part '$part' in PARTS (surge sale coupons wallet pg redis)" ;;
    esac
done
want() { [[ " $PARTS " == *" $1 "* ]]; }
want_server() { want surge || want sale || want coupons || want wallet; }

if want pg || want redis; then
    [ -d "$PEERS_DIR" ] || die "peers not found at $PEERS_DIR (set PEERS_DIR)"
    PEERS_DIR=$(cd "$PEERS_DIR" && pwd)
fi

# ---- tools -----------------------------------------------------------------------------------

# Install what the selected parts need and is missing; apt-get update only when needed.
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have curl || need+=(curl)
have jq || need+=(jq)
have lscpu || need+=(util-linux)
if want_server; then have wrk || need+=(wrk); fi
if want pg; then
    have psql || need+=(postgresql-client)
    have pgbench || need+=(postgresql postgresql-client)
fi
if want redis; then
    have redis-server || need+=(redis-server)
    { have redis-cli && have redis-benchmark; } || need+=(redis-tools)
fi
if [ "${#need[@]}" -gt 0 ]; then
    say "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get update -q
    timeout 900 apt-get install -y -q "${need[@]}"
fi

# ---- state and clean-up ----------------------------------------------------------------------

WORK=$(mktemp -d "${TMPDIR:-/tmp}/surge-bench-hot.XXXXXX")
RUN_ID="r$(date +%s)-$$"
SURGE_PID=""
REDIS_STARTED=0
REDIS_DIR=""
PG_TABLES=0

stop_surge() {
    [ -n "$SURGE_PID" ] || return 0
    local pid=$SURGE_PID i
    SURGE_PID=""
    kill -TERM "$pid" 2>/dev/null || return 0
    # Graceful stop flushes the journal; give it a bounded time, then force it.
    for ((i = 0; i < 150; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "surge did not stop within 30 s of SIGTERM; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    SURGE_EXIT=0
    wait "$pid" 2>/dev/null || SURGE_EXIT=$?
}

stop_redis_peer() {
    [ "$REDIS_STARTED" = 1 ] || return 0
    REDIS_STARTED=0
    timeout 10 redis-cli -h 127.0.0.1 -p "$REDIS_PEER_PORT" shutdown nosave >/dev/null 2>&1 || true
    local pid i
    pid=$(cat "$REDIS_DIR/redis.pid" 2>/dev/null || true)
    if [ -n "$pid" ]; then
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || return 0
            sleep 0.2
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
}

drop_pg_tables() {
    [ "$PG_TABLES" = 1 ] || return 0
    PG_TABLES=0
    PGOPTIONS='-c client_min_messages=warning' timeout 30 psql -X -q "$PG_URL" \
        -c 'DROP TABLE IF EXISTS peer_sale_order; DROP TABLE IF EXISTS peer_time_sale;' >/dev/null 2>&1 || true
}

cleanup() {
    local rc=$?
    stop_surge
    stop_redis_peer
    drop_pg_tables
    if [ "$KEEP_TMP" = 1 ] || [ "$rc" -ne 0 ]; then
        echo "bench-hot: temp files kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The value of KEY in the WRK_RESULT line of a wrk output file.
wrk_value() {
    grep -m1 '^WRK_RESULT ' "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2; exit }'
}

# a / b with two decimals and an "x", or n/a when either is missing or b is 0.
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b + 0 > 0) printf "%.3fx", a / b; else printf "n/a" }'
}

# ---- results (n/a unless measured) -----------------------------------------------------------
ORD_RPS=n/a ORD_P50=n/a ORD_P99=n/a
HZ_RPS=n/a HZ_P50=n/a HZ_P99=n/a
PG_TPS=n/a PG_P50=n/a PG_P99=n/a PG_AVG=n/a PG_DURABILITY="not run" PG_NOTE=""
RD_RPS=n/a RD_P50=n/a RD_P99=n/a RD_DURABILITY="not run" RD_NOTE=""
RA_RPS=n/a RA_P50=n/a RA_P99=n/a RA_DURABILITY="not run" RA_NOTE=""
SURGE_NOTE="not run"
ORD_OK=n/a ORD_NON2XX=n/a ORD_STATUSES=n/a ORD_REPLAYS=n/a ORD_INFLIGHT=n/a HZ_NON2XX=n/a
for prefix in ORD TS CP WL; do
    for key in RPS P50 P99 OK NON2XX STATUSES REPLAYS INFLIGHT DELTA; do printf -v "${prefix}_$key" n/a; done
    printf -v "${prefix}_VERDICT" 'n/a (not run)'
done
SURGE_EXIT=n/a
FAILED_CHECK=0

# ---- surge -----------------------------------------------------------------------------------

BASE_URL="http://127.0.0.1:$PORT"

# curl METHOD PATH TOKEN [BODY [IDEMPOTENCY_KEY]]; the body goes to $WORK/last.json, the status
# code to stdout. Bounded by --max-time so a hung server cannot hang the script.
call() {
    local method=$1 path=$2 token=$3 body=${4:-} key=${5:-}
    local args=(-sS --max-time 10 -o "$WORK/last.json" -w '%{http_code}' -X "$method")
    [ -z "$token" ] || args+=(-H "Authorization: Bearer $token")
    [ -z "$key" ] || args+=(-H "Idempotency-Key: $key")
    [ -z "$body" ] || args+=(-H 'Content-Type: application/json' --data-binary "$body")
    curl "${args[@]}" "$BASE_URL$path" || true
}

# Runs `surge` with the same config and environment as the server (same cwd, same secret).
surge_cli() {
    (cd "$REPO_ROOT" && SURGE_AUTH__JWT_SECRET=$JWT_SECRET timeout 30 "$SURGE_BIN" "$@")
}

# Reads FIELD of the resource at PATH (a stock item's or sale's `reserved`, a policy's `issued`,
# a wallet's `balance`), waiting until two reads half a second apart agree, so that requests
# still being finished when wrk stopped are counted.
settled_field() { # TOKEN PATH FIELD
    local token=$1 path=$2 field=$3 prev="" cur i
    for ((i = 0; i < 40; i++)); do
        [ "$(call GET "$path" "$token")" = 200 ] || {
            cat "$WORK/last.json" >&2
            die "GET $path failed"
        }
        cur=$(jq -er --arg f "$field" '.[$f]' "$WORK/last.json") ||
            die "no integer '$field' in $(cat "$WORK/last.json")"
        [ "$cur" = "$prev" ] && { echo "$cur"; return 0; }
        prev=$cur
        sleep 0.5
    done
    die "$field of $path did not settle within 20 s"
}

# Every 2xx changes the checked count by one (nothing expires: pay_within is an hour). Requests
# still in flight when wrk stopped may have been committed without wrk seeing the answer, so a
# surplus of at most that many is consistent; anything else is a lost or an extra change.
reservation_verdict() { # DELTA OK IN_FLIGHT
    local delta=$1 ok=$2 in_flight=$3
    local surplus=$((delta - ok))
    if [ "$surplus" -eq 0 ]; then
        echo "MATCH"
    elif [ "$surplus" -gt 0 ] && [ "$surplus" -le "$in_flight" ]; then
        echo "MATCH (within in-flight: the count exceeds 2xx by $surplus; wrk left $in_flight requests unanswered at stop, which the server may have committed)"
    else
        echo "MISMATCH (the count changed by $delta, wrk saw $ok 2xx, $in_flight in flight)"
    fi
}

run_wrk() { # NAME LUA URL [SCRIPT ARGS...]
    local name=$1 lua=$2 url=$3
    shift 3
    local out="$WORK/wrk-$name.txt" ticks_before ticks_after
    say "wrk $name: -t$THREADS -c$CONNS -d${DURATION_SECS}s --latency $url"
    ticks_before=$(surge_cpu_ticks)
    timeout -k 10 $((DURATION_SECS + WRK_TIMEOUT_SECS + 60)) \
        wrk -t"$THREADS" -c"$CONNS" -d"${DURATION_SECS}s" --timeout "${WRK_TIMEOUT_SECS}s" --latency \
        -s "$lua" "$url" -- "$@" 2>&1 | tee "$out"
    ticks_after=$(surge_cpu_ticks)
    grep -q '^WRK_RESULT ' "$out" || die "wrk $name printed no WRK_RESULT line (see above)"
    # The server's own CPU (user + system, all threads) per request wrk counted: steadier than
    # req/s on a shared machine, and it tells CPU cost from waiting (fsync, queues) apart.
    awk -v n="$name" -v a="$ticks_before" -v b="$ticks_after" -v hz="$(getconf CLK_TCK)" \
        -v req="$(wrk_value "$out" requests)" 'BEGIN {
            if (a != "" && b != "" && req > 0)
                printf "%s: %.1f us of surge CPU per request (%.2f cores busy)\n", n,
                    (b - a) * 1e6 / hz / req, (b - a) / hz / '"$DURATION_SECS"' }' | tee -a "$WORK/cpu.txt"
}

# User + system clock ticks the running surge server has used so far (empty when none runs).
surge_cpu_ticks() {
    [ -n "$SURGE_PID" ] || return 0
    awk '{ print $14 + $15 }' "/proc/$SURGE_PID/stat" 2>/dev/null || true
}

# One measured load with its consistency check: FIELD of CHECK_PATH is read (settled) before and
# after wrk NAME, and must have moved by SIGN (1 or -1) per 2xx. Sets PREFIX_RPS, _P50, _P99,
# _OK, _NON2XX, _STATUSES, _REPLAYS, _INFLIGHT, _DELTA and _VERDICT; fails the run (exit 3) on
# a mismatch or on idempotent replays (colliding keys would make the figure meaningless).
measure() { # NAME PREFIX CHECK_PATH FIELD SIGN LUA URL [SCRIPT ARGS...]
    local name=$1 prefix=$2 check=$3 field=$4 sign=$5 lua=$6 url=$7
    shift 7
    local before after w="$WORK/wrk-$name.txt" key value
    before=$(settled_field "$OPERATOR" "$check" "$field")
    run_wrk "$name" "$lua" "$url" "$@"
    after=$(settled_field "$OPERATOR" "$check" "$field")
    for key in rps p50_ms p99_ms ok_2xx non_2xx statuses replays in_flight; do
        value=$(wrk_value "$w" "$key")
        case "$key" in
            p50_ms) key=P50 ;; p99_ms) key=P99 ;; ok_2xx) key=OK ;; non_2xx) key=NON2XX ;;
            in_flight) key=INFLIGHT ;; *) key=${key^^} ;;
        esac
        printf -v "${prefix}_$key" '%s' "$value"
    done
    local ok_var="${prefix}_OK" inflight_var="${prefix}_INFLIGHT" replays_var="${prefix}_REPLAYS"
    local delta=$(((after - before) * sign)) verdict
    verdict=$(reservation_verdict "$delta" "${!ok_var}" "${!inflight_var}")
    printf -v "${prefix}_DELTA" '%s' "$delta"
    printf -v "${prefix}_VERDICT" '%s' "$verdict"
    [[ $verdict == MATCH* ]] || FAILED_CHECK=1
    if [ "${!replays_var}" != 0 ]; then
        echo "WARNING: ${!replays_var} idempotent replays in $name: keys collided, the figure is not real" >&2
        FAILED_CHECK=1
    fi
    say "$name: $field of $check $before -> $after: moved $delta; wrk 2xx ${!ok_var} -> $verdict"
}

OPERATOR=""
CUSTOMER=""

build_surge() {
    if [ "$BUILD_SURGE" = 1 ]; then
        say "cargo build --release"
        if [ -d "${HOME:-/root}/.cargo/bin" ]; then PATH="${HOME:-/root}/.cargo/bin:$PATH"; fi
        have cargo || die "cargo not found (or pass SURGE_BIN=path/to/surge)"
        (cd "$REPO_ROOT" && timeout 2700 cargo build --release)
    fi
    [ -x "$SURGE_BIN" ] || die "no surge binary at $SURGE_BIN"
}

# Starts a server on a fresh data dir, $WORK/data-NAME: every measured part begins from an empty
# journal, as the PostgreSQL peer begins from freshly created tables, so no part pays for the
# rows (and the index catch-up) an earlier part left behind.
start_surge() { # NAME
    local data="$WORK/data-$1"

    if curl -s --max-time 2 -o /dev/null "$BASE_URL/healthz"; then
        die "something already answers on 127.0.0.1:$PORT; stop it or pick another PORT"
    fi

    say "starting surge on 127.0.0.1:$PORT (sqlite synchronous=$SQLITE_SYNC, data in $data)"
    # The parts before this one left dirty pages (their database and index files); flushed
    # now, their writeback does not land in this part's fsyncs.
    timeout 120 sync || true
    mkdir -p "$data"
    # pay_within is set far beyond the run so no reservation expires while it is being counted.
    (cd "$REPO_ROOT" && exec env SURGE_AUTH__JWT_SECRET="$JWT_SECRET" \
        SURGE_DATABASE__SQLITE_SYNCHRONOUS="$SQLITE_SYNC" SURGE_ORDERS__PAY_WITHIN_SECS=3600 \
        RUST_LOG=warn "$SURGE_BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$data") \
        >>"$WORK/surge.log" 2>&1 &
    SURGE_PID=$!
    local i up=0
    for ((i = 0; i < 120; i++)); do
        if ! kill -0 "$SURGE_PID" 2>/dev/null; then
            tail -n 40 "$WORK/surge.log" >&2
            die "surge exited during start-up (log above)"
        fi
        if [ "$(call GET /healthz "" 2>/dev/null)" = 200 ]; then up=1; break; fi
        sleep 0.5
    done
    if [ "$up" != 1 ]; then
        tail -n 40 "$WORK/surge.log" >&2
        die "GET /healthz did not answer 200 within 60 s"
    fi
}

mint_tokens() {
    say "minting 1 operator and $USERS customer tokens with 'surge token'"
    OPERATOR=$(surge_cli token --user-id bench-operator --role operator | tail -n 1 | tr -d '[:space:]')
    [[ $OPERATOR == *.*.* ]] || die "surge token did not print a JWT for the operator (got '$OPERATOR')"
    surge_cli token --user-id load --role customer --count "$USERS" >"$WORK/tokens.txt"
    [ "$(grep -c '\.' "$WORK/tokens.txt")" = "$USERS" ] || die "surge token --count $USERS did not print $USERS tokens"
    CUSTOMER=$(head -n 1 "$WORK/tokens.txt")
}

bench_orders() {
    say "creating stock item $SKU (on_hand $ON_HAND)"
    local code
    code=$(call POST /api/v1/stock-items "$OPERATOR" \
        "{\"sku\":\"$SKU\",\"name\":\"hot\",\"on_hand\":$ON_HAND}" "$RUN_ID-create-$SKU")
    [ "$code" = 201 ] || die "POST /api/v1/stock-items answered $code, want 201: $(cat "$WORK/last.json")"

    # One order by hand first: a broken order path fails here, in a second, with its answer shown.
    code=$(call POST /api/v1/orders "$CUSTOMER" \
        "{\"items\":[{\"sku\":\"$SKU\",\"quantity\":1}]}" "$RUN_ID-probe")
    [ "$code" = 201 ] || die "probe POST /api/v1/orders answered $code, want 201: $(cat "$WORK/last.json")"

    measure orders ORD "/api/v1/stock-items/$SKU" reserved 1 \
        "$SCRIPT_DIR/wrk/orders.lua" "$BASE_URL/api/v1/orders" "$WORK/tokens.txt" "$RUN_ID" "$SKU"
}

# Mints COUNT tokens of distinct customers PREFIX-1..PREFIX-COUNT into FILE.
mint_many() { # PREFIX COUNT FILE
    say "minting $2 distinct customer tokens ($1-1..$1-$2) with 'surge token --count'"
    surge_cli token --user-id "$1" --role customer --count "$2" >"$3"
    [ "$(wc -l <"$3")" = "$2" ] || die "surge token --count $2 printed too few tokens"
}

bench_sale() {
    mint_many buyer "$SALE_USERS" "$WORK/sale-tokens.txt"
    say "creating a product and a time sale (quantity $ON_HAND, per_user_limit 1, open now)"
    local code product sale starts ends
    code=$(call POST /api/v1/products "$OPERATOR" '{"name":"hot sneaker","price":12000}' "$RUN_ID-product")
    [ "$code" = 201 ] || die "POST /api/v1/products answered $code, want 201: $(cat "$WORK/last.json")"
    product=$(jq -er '.id' "$WORK/last.json")
    starts=$(date -u -d '-1 minute' +%Y-%m-%dT%H:%M:%SZ)
    ends=$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)
    code=$(call POST /api/v1/time-sales "$OPERATOR" \
        "{\"product_id\":\"$product\",\"quantity\":$ON_HAND,\"sale_price\":9900,\"starts_at\":\"$starts\",\"ends_at\":\"$ends\",\"per_user_limit\":1}" \
        "$RUN_ID-sale")
    [ "$code" = 201 ] || die "POST /api/v1/time-sales answered $code, want 201: $(cat "$WORK/last.json")"
    sale=$(jq -er '.id' "$WORK/last.json")

    # The probe buys as a user outside the token file, so no wrk request meets its limit.
    local probe
    probe=$(surge_cli token --user-id sale-probe --role customer | tail -n 1 | tr -d '[:space:]')
    code=$(call POST "/api/v1/time-sales/$sale/purchase" "$probe" '{"quantity":1}' "$RUN_ID-sale-probe")
    [ "$code" = 201 ] || die "probe purchase answered $code, want 201: $(cat "$WORK/last.json")"

    measure sale TS "/api/v1/time-sales/$sale" reserved 1 \
        "$SCRIPT_DIR/wrk/purchase.lua" "$BASE_URL/api/v1/time-sales/$sale/purchase" \
        "$WORK/sale-tokens.txt" "$RUN_ID" "$THREADS"
}

bench_coupons() {
    mint_many holder "$SALE_USERS" "$WORK/coupon-tokens.txt"
    say "creating a coupon policy (total $COUPON_TOTAL, per_user_limit 1, open now)"
    local code policy starts ends
    starts=$(date -u -d '-1 minute' +%Y-%m-%dT%H:%M:%SZ)
    ends=$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)
    code=$(call POST /api/v1/coupon-policies "$OPERATOR" \
        "{\"title\":\"storm\",\"discount_type\":\"PERCENTAGE\",\"discount_value\":10,\"total_quantity\":$COUPON_TOTAL,\"per_user_limit\":1,\"starts_at\":\"$starts\",\"ends_at\":\"$ends\"}" \
        "$RUN_ID-policy")
    [ "$code" = 201 ] || die "POST /api/v1/coupon-policies answered $code, want 201: $(cat "$WORK/last.json")"
    policy=$(jq -er '.id' "$WORK/last.json")

    measure coupons CP "/api/v1/coupon-policies/$policy" issued 1 \
        "$SCRIPT_DIR/wrk/purchase.lua" "$BASE_URL/api/v1/coupon-policies/$policy/issue" \
        "$WORK/coupon-tokens.txt" "$RUN_ID" "$THREADS" '{}'
}

bench_wallet() {
    say "earning $WALLET_POINTS points into wallet $WALLET_USER, then spending 1 point per request"
    local code token i
    code=$(call POST "/api/v1/wallets/$WALLET_USER/earn" "$OPERATOR" \
        "{\"amount\":$WALLET_POINTS,\"description\":\"bench\"}" "$RUN_ID-earn")
    [ "$code" = 201 ] || die "POST /api/v1/wallets/$WALLET_USER/earn answered $code: $(cat "$WORK/last.json")"
    # One owner for every request: the file repeats their token once per wrk thread.
    token=$(surge_cli token --user-id "$WALLET_USER" --role customer | tail -n 1 | tr -d '[:space:]')
    : >"$WORK/wallet-tokens.txt"
    for ((i = 0; i < THREADS; i++)); do echo "$token" >>"$WORK/wallet-tokens.txt"; done

    measure wallet WL "/api/v1/wallets/$WALLET_USER" balance -1 \
        "$SCRIPT_DIR/wrk/purchase.lua" "$BASE_URL/api/v1/wallets/me/use" \
        "$WORK/wallet-tokens.txt" "$RUN_ID" "$THREADS" '{"amount":1}'
}

bench_healthz() {
    run_wrk healthz "$SCRIPT_DIR/wrk/healthz.lua" "$BASE_URL/healthz"
    HZ_RPS=$(wrk_value "$WORK/wrk-healthz.txt" rps)
    HZ_P50=$(wrk_value "$WORK/wrk-healthz.txt" p50_ms)
    HZ_P99=$(wrk_value "$WORK/wrk-healthz.txt" p99_ms)
    HZ_NON2XX=$(wrk_value "$WORK/wrk-healthz.txt" non_2xx)
}

run_surge() {
    build_surge
    mint_tokens
    local part
    for part in surge sale coupons wallet healthz; do
        [ "$part" = healthz ] || want "$part" || continue
        start_surge "$part"
        case "$part" in
            surge) bench_orders ;;
            sale) bench_sale ;;
            coupons) bench_coupons ;;
            wallet) bench_wallet ;;
            healthz) bench_healthz ;;
        esac
        # Stopped before the next part and the peers, so each has the machine to itself.
        say "stopping surge (SIGTERM)"
        stop_surge
        echo "surge exited with status $SURGE_EXIT"
        [ "$SURGE_EXIT" = 0 ] || FAILED_CHECK=1
    done
    SURGE_NOTE="run"
}

# ---- peer: PostgreSQL row lock ---------------------------------------------------------------

run_pg() {
    say "peer pg row lock: pgbench -n -c $CONNS -j 2 -T $DURATION_SECS ($PG_URL)"
    timeout 30 pg_isready -q -d "$PG_URL" || die "PostgreSQL at $PG_URL does not answer"
    PG_TABLES=1
    PGOPTIONS='-c client_min_messages=warning' timeout 60 \
        psql -X -q -v ON_ERROR_STOP=1 "$PG_URL" -f "$PEERS_DIR/pg_row_lock/setup.sql" >/dev/null
    PG_DURABILITY="synchronous_commit=$(psql -X -A -t -q "$PG_URL" -c 'SHOW synchronous_commit'),"
    PG_DURABILITY+=" fsync=$(psql -X -A -t -q "$PG_URL" -c 'SHOW fsync')"
    # --log writes one line per transaction (a few thousand a second here): it is how pgbench
    # gives per-transaction latencies, from which p50 and p99 are computed below.
    mkdir -p "$WORK/pglog"
    timeout -k 10 $((DURATION_SECS + 120)) \
        pgbench -n -c "$CONNS" -j 2 -T "$DURATION_SECS" -f "$PEERS_DIR/pg_row_lock/purchase.sql" \
        --log --log-prefix="$WORK/pglog/tx" "$PG_URL" 2>&1 | tee "$WORK/pgbench.txt"
    PG_TPS=$(awk '/^tps = / { printf "%.1f", $3; exit }' "$WORK/pgbench.txt")
    PG_AVG=$(awk '/^latency average = / { print $4; exit }' "$WORK/pgbench.txt")
    [ -n "$PG_TPS" ] || die "could not read tps from pgbench's output (above)"
    # Column 3 of a pgbench log line is the transaction's latency in microseconds.
    cat "$WORK"/pglog/tx.* | awk '{ print $3 }' | sort -n >"$WORK/pg-latencies.txt"
    read -r PG_P50 PG_P99 < <(awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "n/a n/a"; exit }
        i50 = int(NR * 0.50); if (i50 < NR * 0.50) i50++; if (i50 < 1) i50 = 1
        i99 = int(NR * 0.99); if (i99 < NR * 0.99) i99++; if (i99 < 1) i99 = 1
        printf "%.3f %.3f\n", v[i50] / 1000, v[i99] / 1000 }' "$WORK/pg-latencies.txt")
    # The peer's own consistency: units taken from the hot row equal orders written.
    local taken orders
    taken=$(psql -X -A -t -q "$PG_URL" -c 'SELECT 100000000 - remaining FROM peer_time_sale WHERE id = 1')
    orders=$(psql -X -A -t -q "$PG_URL" -c 'SELECT count(*) FROM peer_sale_order')
    PG_NOTE="avg ${PG_AVG:-n/a} ms; $orders orders, $taken units taken"
    echo "pg row lock: tps $PG_TPS, p50 $PG_P50 ms, p99 $PG_P99 ms, $PG_NOTE"
    drop_pg_tables
}

# ---- peer: Redis Lua -------------------------------------------------------------------------

redis_peer() { timeout 30 redis-cli -h 127.0.0.1 -p "$REDIS_PEER_PORT" "$@"; }

# redis-benchmark --csv with the peer's script; prints the CSV's data line(s).
redis_bench() { # REQUESTS
    local script
    script=$(cat "$PEERS_DIR/redis_lua/purchase.lua")
    timeout -k 10 $((DURATION_SECS * 4 + 120)) \
        redis-benchmark -h 127.0.0.1 -p "$REDIS_PEER_PORT" --csv -c "$CONNS" -n "$1" -r 1000000 \
        EVAL "$script" 2 sale:1:remaining sale:1:orders __rand_int__
}

# The 7 numbers at the end of redis-benchmark 7's CSV row: rps, avg, min, p50, p95, p99, max.
# The first column is the command itself, which holds the Lua script's commas and newlines, so
# the row is read from its end.
redis_csv_numbers() {
    tr -d '\r' | grep -E '"[0-9.]+","[0-9.]+","[0-9.]+","[0-9.]+","[0-9.]+","[0-9.]+","[0-9.]+"$' |
        tail -n 1 | grep -oE '"[0-9.]+"' | tail -n 7 | tr -d '"' | tr '\n' ' '
}

# One Redis peer run on a fresh, dedicated redis-server with appendfsync MODE; sets PREFIX_RPS,
# _P50, _P99, _DURABILITY and _NOTE. Each mode gets its own server and directory, so the second
# run does not start from the first one's append-only file.
run_redis() { # MODE PREFIX
    local mode=$1 prefix=$2
    say "peer redis lua: dedicated redis-server on 127.0.0.1:$REDIS_PEER_PORT (appendonly yes, appendfsync $mode)"
    if redis-cli -h 127.0.0.1 -p "$REDIS_PEER_PORT" ping >/dev/null 2>&1; then
        die "something already answers on 127.0.0.1:$REDIS_PEER_PORT; set REDIS_PEER_PORT"
    fi
    REDIS_DIR="$WORK/redis-$mode"
    mkdir -p "$REDIS_DIR"
    REDIS_STARTED=1
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PEER_PORT" \
        --appendonly yes --appendfsync "$mode" --save "" --dir "$REDIS_DIR" \
        --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/redis.log"
    local i
    for ((i = 0; i < 100; i++)); do
        [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PEER_PORT" ping 2>/dev/null)" = PONG ] && break
        sleep 0.2
    done
    [ "$(redis_peer ping)" = PONG ] || die "the peer redis-server did not start (see $REDIS_DIR/redis.log)"
    [ "$(redis_peer config get appendonly | tail -n 1)" = yes ] || die "peer redis: appendonly is not on"
    [ "$(redis_peer config get appendfsync | tail -n 1)" = "$mode" ] || die "peer redis: appendfsync is not $mode"

    local n=$REDIS_REQUESTS
    if [ -z "$n" ]; then
        # Calibrate: a short run tells the rate, so the measured run lasts about DURATION_SECS.
        redis_peer set sale:1:remaining "$REDIS_REMAINING" >/dev/null
        local cal
        cal=$(redis_bench 100000 | redis_csv_numbers | awk '{ print int($1) }') || true
        [[ $cal =~ ^[1-9][0-9]*$ ]] || die "redis-benchmark calibration gave no rate"
        n=$((cal * DURATION_SECS))
        [ "$n" -ge 100000 ] || n=100000
        echo "calibration: $cal req/s -> $n requests"
    fi
    # The measured run starts from the README's state: full stock, empty order stream.
    redis_peer del sale:1:orders >/dev/null
    redis_peer set sale:1:remaining "$REDIS_REMAINING" >/dev/null
    echo "redis-benchmark --csv -c $CONNS -n $n -r 1000000 EVAL <purchase.lua> 2 sale:1:remaining sale:1:orders __rand_int__"
    redis_bench "$n" >"$WORK/redis-benchmark-$mode.csv"
    local nums
    nums=$(redis_csv_numbers <"$WORK/redis-benchmark-$mode.csv") || true
    [ -n "$nums" ] || { cat "$WORK/redis-benchmark-$mode.csv" >&2; die "could not parse redis-benchmark's CSV (above)"; }
    local rps avg p50 p95 p99 max left note
    read -r rps avg _ p50 p95 p99 max <<<"$nums"
    rps=$(awk -v r="$rps" 'BEGIN { printf "%.1f", r }')
    left=$(redis_peer get sale:1:remaining)
    note="avg $avg ms, p95 $p95 ms, max $max ms; $n requests, $((REDIS_REMAINING - left)) units taken"
    printf -v "${prefix}_RPS" '%s' "$rps"
    printf -v "${prefix}_P50" '%s' "$p50"
    printf -v "${prefix}_P99" '%s' "$p99"
    printf -v "${prefix}_DURABILITY" '%s' "appendonly yes, appendfsync $mode"
    printf -v "${prefix}_NOTE" '%s' "$note"
    echo "redis lua ($mode): rps $rps, p50 $p50 ms, p99 $p99 ms, $note"
    stop_redis_peer
}

# ---- run -------------------------------------------------------------------------------------

STARTED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
if want_server; then run_surge; fi
if want pg; then run_pg; fi
# everysec first: the same order as before the always run was added, so its figures compare.
if want redis; then
    run_redis everysec RD
    run_redis always RA
fi

# ---- report ----------------------------------------------------------------------------------

CPU_MODEL=$(lscpu | awk -F: '/^Model name/ { sub(/^[ \t]+/, "", $2); print $2; exit }')
CORES=$(nproc)
JOURNAL="sqlite (synchronous=$SQLITE_SYNC)"
if [ -n "${SURGE_DATABASE__URL:-}" ]; then JOURNAL="SURGE_DATABASE__URL (not sqlite)"; fi

mkdir -p "$(dirname "$OUT")"
{
    printf 'surge hot-item benchmark, %s, %s clients for every tool, %s s per run\n' \
        "$STARTED_AT" "$CONNS" "$DURATION_SECS"
    printf '%-24s %12s %10s %10s  %s\n' "" "req/s" "p50 ms" "p99 ms" "durability / notes"
    if [ "$SURGE_NOTE" = run ]; then
        journal_note="journal $JOURNAL; 2xx after commit" healthz_note="HTTP stack ceiling"
    else
        journal_note="not run" healthz_note="not run"
    fi
    row() { printf '%-26s %12s %10s %10s  %s\n' "$@"; }
    row "surge POST /orders" "$ORD_RPS" "$ORD_P50" "$ORD_P99" "$journal_note; one hot SKU"
    row "surge sale purchase" "$TS_RPS" "$TS_P50" "$TS_P99" "$journal_note; one buyer per request"
    row "surge coupon issue" "$CP_RPS" "$CP_P50" "$CP_P99" "$journal_note; one holder per request"
    row "surge wallet use" "$WL_RPS" "$WL_P50" "$WL_P99" "$journal_note; one hot wallet"
    row "surge GET /healthz" "$HZ_RPS" "$HZ_P50" "$HZ_P99" "$healthz_note"
    row "pg row lock (pgbench)" "$PG_TPS" "$PG_P50" "$PG_P99" "$PG_DURABILITY${PG_NOTE:+; $PG_NOTE}"
    row "redis lua (r-benchmark)" "$RD_RPS" "$RD_P50" "$RD_P99" "$RD_DURABILITY${RD_NOTE:+; $RD_NOTE}"
    row "redis lua (always)" "$RA_RPS" "$RA_P50" "$RA_P99" "$RA_DURABILITY${RA_NOTE:+; $RA_NOTE}"
    echo
    for pair in "orders ORD" "sale TS" "coupons CP" "wallet WL"; do
        read -r name prefix <<<"$pair"
        rps_var="${prefix}_RPS"
        [ "${!rps_var}" != n/a ] || continue
        printf 'ratios: %-8s /pg %s   /redis %s   /redis-always %s   /healthz %s\n' "$name" \
            "$(ratio "${!rps_var}" "$PG_TPS")" "$(ratio "${!rps_var}" "$RD_RPS")" \
            "$(ratio "${!rps_var}" "$RA_RPS")" "$(ratio "${!rps_var}" "$HZ_RPS")"
    done
    for pair in "orders ORD reserved" "sale TS reserved" "coupons CP issued" "wallet WL balance"; do
        read -r name prefix field <<<"$pair"
        v() { local n="${prefix}_$1"; printf '%s' "${!n}"; }
        [ "$(v RPS)" != n/a ] || continue
        printf '%s: 2xx %s, non-2xx %s (statuses %s), replays %s, in flight at stop %s; %s moved %s: %s\n' \
            "$name" "$(v OK)" "$(v NON2XX)" "$(v STATUSES)" "$(v REPLAYS)" "$(v INFLIGHT)" "$field" \
            "$(v DELTA)" "$(v VERDICT)"
    done
    printf 'healthz: non-2xx %s; surge exit status after SIGTERM: %s\n' "$HZ_NON2XX" "$SURGE_EXIT"
    [ ! -s "$WORK/cpu.txt" ] || sed 's/^/cpu: /' "$WORK/cpu.txt"
    printf 'machine: %s, %s cores; sqlite synchronous %s; conns %s; wrk threads %s; pgbench -j 2\n' \
        "$CPU_MODEL" "$CORES" "$SQLITE_SYNC" "$CONNS" "$THREADS"
    printf 'tools: %s; %s; %s\n' "$(wrk -v 2>&1 | head -n 1 | awk '{print $1, $2}' || true)" \
        "$(pgbench --version 2>/dev/null || echo 'pgbench n/a')" \
        "$(redis-benchmark --version 2>/dev/null || echo 'redis-benchmark n/a')"
} | tee "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "(written to $OUT)"

if [ "$FAILED_CHECK" = 1 ]; then exit 3; fi
