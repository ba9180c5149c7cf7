#!/usr/bin/env bash
# Memory and start-up benchmark: what an activated entity costs, whether passivation gives the
# memory back, and how long start-up takes in front of a large journal.
#
# It measures, on this machine, against the release build, each part on a fresh temp data dir:
#   1. rss          RSS per activated entity: VmRSS (/proc/PID/status) after a warm-up, then
#                   N stock items created over HTTP (wrk, scripts/memory/create-items.lua, SKUs
#                   M-<thread>-<n>), checked in GET /api/v1/admin/overview (`running` of
#                   stock_item), then VmRSS again: (after - before) / activated, in bytes.
#                   Passivation is kept out of the way (passivate_after_secs = 1 day).
#   1b. parked      the same N creations with actors.park_after_secs=PARK_AFTER_SECS: idle
#                   entities stop their actor (~8 KB each) and keep their state in memory; once
#                   `running` is near 0, (VmRSS after - before) / (running + parked).
#   2. passivation  the same N creations on a server that passivates entities idle for
#                   PASSIVATE_AFTER_SECS (sweeper every IDLE_CHECK_SECS); `running` and VmRSS are
#                   sampled every second; then it waits (polling the overview every second, at
#                   most PASSIVATE_WAIT_SECS) until `running` is near 0 and reads VmRSS again,
#                   then once a second for SETTLE_SECS more (the allocator may give memory back,
#                   or not, with a delay).
#                   Entities created early may passivate while later ones are still being created,
#                   so the peak of `running` can be below N: the report gives the sampled peak.
#   3. startup      fills a journal with at least EVENTS events by POST /api/v1/orders on HOT_SKUS
#                   hot SKUs (wrk, scripts/memory/fill-orders.lua; one order = 2 events) with
#                   sqlite synchronous=normal (to fill faster), stops it (SIGTERM), then RESTARTS
#                   times: spawn -> first 200 from GET /healthz (polled every 10 ms), VmRSS then,
#                   and the time of the first GET /api/v1/stock-items/HOT-1 (the first activation:
#                   snapshot + tail replay) and of a second one; SIGTERM between restarts.
#                   If a WAL is left (surge.db-wal) and sqlite3 is installed, it then checkpoints
#                   the WAL offline and times RESTARTS more start-ups, to show what the WAL costs.
#   4. wallets      WALLETS distinct wallets each earning once (POST /api/v1/wallets/W-<t>-<n>/earn,
#                   wrk, scripts/memory/create-items.lua with KIND wallet) on a server that
#                   passivates as in part 2: the earn throughput, VmRSS and `running`/`parked`
#                   wallets sampled every second, and the peak (VmHWM) against the 1 GiB target.
# and prints one table (also written to $OUT).
#
# Usage: scripts/bench-memory.sh [KEY=VALUE ...]   (the same keys can be set in the environment)
#   N=100000                 stock items to activate in parts 1 and 2
#   CONNS=32                 wrk connections
#   THREADS=2                wrk threads
#   PORT=18090               surge listens on 127.0.0.1:$PORT
#   CREATE_TIMEOUT_SECS=180  bound on creating the N items (each of parts 1 and 2)
#   PASSIVATE_AFTER_SECS=5   part 2: actors.passivate_after_secs
#   PARK_AFTER_SECS=2        parts 1b and 2: actors.park_after_secs (actor stops, state stays)
#   IDLE_CHECK_SECS=1        part 2: actors.idle_check_interval_secs
#   PASSIVATE_WAIT_SECS=60   part 2: longest wait for `running` to drop near 0
#   SETTLE_SECS=30           part 2: how long VmRSS is watched after that
#   EVENTS=1000000           part 3: journal events to reach before the restarts
#   HOT_SKUS=8               part 3: SKUs the orders are spread over (HOT-1..HOT-<n>)
#   USERS=64                 part 3: distinct customers (tokens) placing the orders
#   FILL_TIMEOUT_SECS=300    part 3: bound on filling the journal (fails past it)
#   RESTARTS=5               part 3: timed restarts
#   WALLETS=1000000          part 4: distinct wallets, one earn each
#   WALLETS_TIMEOUT_SECS=900 part 4: bound on the earns
#   PARTS="rss parked passivation startup wallets"   which parts to run (the others show n/a)
#   SURGE_BIN=               a surge binary to use instead of building with cargo --release
#   OUT=$CARGO_TARGET_DIR/bench-memory.txt   where the final table is written
#   KEEP_TMP=0               1 keeps the temp dir (server logs, wrk output, data dirs)
# The binary is copied into the temp dir before the first start, so a rebuild by someone else
# during the run cannot change what is measured. Other SURGE_* variables in the environment reach
# every server started here; the report lists their names.
# Exit status: 0 when every part ran; non-zero on failure. Targets missed (over 2 KB per entity,
# start-up over 1 s) are reported in the table, not turned into a failure.
#
# Only loopback traffic: every server is on 127.0.0.1. Bounded: every step has a timeout.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

die() { printf 'bench-memory: FATAL: %s\n' "$*" >&2; exit 1; }
say() { printf '\n---- %s\n' "$*"; }
warn() { printf 'bench-memory: WARNING: %s\n' "$*" >&2; }

# KEY=VALUE arguments override the environment, for the keys listed above only.
readonly SETTINGS=" N CONNS THREADS PORT CREATE_TIMEOUT_SECS PASSIVATE_AFTER_SECS IDLE_CHECK_SECS \
PASSIVATE_WAIT_SECS SETTLE_SECS EVENTS HOT_SKUS USERS FILL_TIMEOUT_SECS RESTARTS PARTS SURGE_BIN OUT KEEP_TMP \
WALLETS WALLETS_TIMEOUT_SECS "
# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"
settings_from_args "${BASH_SOURCE[0]}" "$SETTINGS" "$@"

N=${N:-100000}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
PORT=${PORT:-18090}
CREATE_TIMEOUT_SECS=${CREATE_TIMEOUT_SECS:-180}
PASSIVATE_AFTER_SECS=${PASSIVATE_AFTER_SECS:-5}
PARK_AFTER_SECS=${PARK_AFTER_SECS:-2}
IDLE_CHECK_SECS=${IDLE_CHECK_SECS:-1}
PASSIVATE_WAIT_SECS=${PASSIVATE_WAIT_SECS:-60}
SETTLE_SECS=${SETTLE_SECS:-30}
EVENTS=${EVENTS:-1000000}
HOT_SKUS=${HOT_SKUS:-8}
USERS=${USERS:-64}
FILL_TIMEOUT_SECS=${FILL_TIMEOUT_SECS:-300}
RESTARTS=${RESTARTS:-5}
WALLETS=${WALLETS:-1000000}
WALLETS_TIMEOUT_SECS=${WALLETS_TIMEOUT_SECS:-900}
PARTS=${PARTS:-rss parked passivation startup wallets}
KEEP_TMP=${KEEP_TMP:-0}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target}
OUT=${OUT:-$CARGO_TARGET_DIR/bench-memory.txt}
BUILD_SURGE=1
if [ -n "${SURGE_BIN:-}" ]; then BUILD_SURGE=0; fi
SURGE_BIN=${SURGE_BIN:-$CARGO_TARGET_DIR/release/surge}

# A fixed secret: the servers and `surge token` must agree, and nothing here is secret.
# A fresh signing secret per run: the server refuses any secret published in the repository.
JWT_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d " \n")
readonly JWT_SECRET
# Part 1 keeps every entity active for the whole run.
readonly NEVER_PASSIVATE_SECS=86400
# Part 3: orders are payable for a day, so no reservation falls due during the run and the
# deadline scan at start-up has nothing to activate; order actors passivate after this many
# seconds of idleness during the fill, so half a million of them are not all kept in memory.
readonly FILL_PAY_WITHIN_SECS=86400
readonly FILL_PASSIVATE_AFTER_SECS=10
readonly FILL_IDLE_CHECK_SECS=2
readonly HOT_ON_HAND=1000000000
readonly TARGET_BYTES_PER_ENTITY=2048
readonly TARGET_STARTUP_MS=1000
readonly TARGET_WALLETS_RSS_KB=1048576

for n in N CONNS THREADS PORT CREATE_TIMEOUT_SECS PASSIVATE_AFTER_SECS IDLE_CHECK_SECS \
    PASSIVATE_WAIT_SECS SETTLE_SECS EVENTS HOT_SKUS USERS FILL_TIMEOUT_SECS RESTARTS WALLETS \
    WALLETS_TIMEOUT_SECS; do
    [[ ${!n} =~ ^[1-9][0-9]*$ ]] || die "$n must be a positive integer (got '${!n}')"
done
[ "$CONNS" -ge "$THREADS" ] || die "CONNS ($CONNS) must be >= THREADS ($THREADS)"
[ "$N" -ge "$THREADS" ] || die "N ($N) must be >= THREADS ($THREADS)"
for part in $PARTS; do
    case "$part" in rss | parked | passivation | startup | wallets) ;; *) die "unknown part '$part' in PARTS" ;; esac
done
want() { [[ " $PARTS " == *" $1 "* ]]; }
[ -r "$SCRIPT_DIR/memory/create-items.lua" ] || die "missing $SCRIPT_DIR/memory/create-items.lua"
[ -r "$SCRIPT_DIR/memory/fill-orders.lua" ] || die "missing $SCRIPT_DIR/memory/fill-orders.lua"
[ -r /proc/self/status ] || die "/proc/PID/status is needed (Linux)"

# ---- tools -----------------------------------------------------------------------------------

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have curl || need+=(curl)
have jq || need+=(jq)
have wrk || need+=(wrk)
have lscpu || need+=(util-linux)
if [ "${#need[@]}" -gt 0 ]; then
    say "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get update -q
    timeout 900 apt-get install -y -q "${need[@]}"
fi

# ---- state and clean-up ----------------------------------------------------------------------

WORK=$(mktemp -d "${TMPDIR:-/tmp}/surge-bench-memory.XXXXXX")
BASE_URL="http://127.0.0.1:$PORT"
BIN="$WORK/surge"
SURGE_PID=""
SURGE_EXIT=n/a
STOP_MS=n/a
WRK_PID=""
OP_TOKEN=""
STARTUP_MS=""

stop_wrk() {
    [ -n "$WRK_PID" ] || return 0
    local pid=$WRK_PID i
    WRK_PID=""
    kill -INT "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# SIGTERM, then a bounded wait (the server flushes its journal), then SIGKILL. Sets SURGE_EXIT
# and STOP_MS (how long the graceful stop took).
stop_surge() {
    [ -n "$SURGE_PID" ] || return 0
    local pid=$SURGE_PID i t0
    SURGE_PID=""
    t0=${EPOCHREALTIME/[.,]/}
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 300; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        warn "surge (pid $pid) did not stop within 30 s of SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    SURGE_EXIT=0
    wait "$pid" 2>/dev/null || SURGE_EXIT=$?
    STOP_MS=$(((${EPOCHREALTIME/[.,]/} - t0) / 1000))
}

cleanup() {
    local rc=$?
    stop_wrk
    stop_surge
    if [ "$KEEP_TMP" = 1 ] || [ "$rc" -ne 0 ]; then
        echo "bench-memory: temp files kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- helpers ---------------------------------------------------------------------------------

# Field (kB) of /proc/PID/status: VmRSS, VmHWM, RssAnon.
proc_kb() { awk -v f="$2:" '$1 == f { print $2; exit }' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN { if (k ~ /^[0-9]+$/) printf "%.1f MiB", k / 1024; else printf "n/a" }'; }

# curl METHOD PATH TOKEN [BODY]: the body goes to $WORK/last.json, the status code to stdout.
call() {
    local method=$1 path=$2 token=$3 body=${4:-}
    local args=(-sS --max-time 10 -o "$WORK/last.json" -w '%{http_code}' -X "$method")
    [ -z "$token" ] || args+=(-H "Authorization: Bearer $token")
    [ -z "$body" ] || args+=(-H 'Content-Type: application/json' --data-binary "$body")
    curl "${args[@]}" "$BASE_URL$path" 2>/dev/null || true
}

mint() { # USER_ID ROLE
    local token
    token=$(cd "$WORK" && SURGE_AUTH__JWT_SECRET=$JWT_SECRET timeout 30 "$BIN" token \
        --user-id "$1" --role "$2" | tail -n 1 | tr -d '[:space:]')
    [[ $token == *.*.* ]] || die "surge token did not print a JWT for $1 (got '$token')"
    printf '%s' "$token"
}

# Reads GET /api/v1/admin/overview into $WORK/overview.json; fails after 3 tries.
overview() {
    local i code
    for ((i = 0; i < 3; i++)); do
        code=$(call GET /api/v1/admin/overview "$OP_TOKEN")
        if [ "$code" = 200 ]; then
            cp "$WORK/last.json" "$WORK/overview.json"
            return 0
        fi
        sleep 0.5
    done
    die "GET /api/v1/admin/overview answered $code: $(cat "$WORK/last.json" 2>/dev/null)"
}
running() { # KIND (from the last overview())
    jq -er --arg k "$1" '[.kinds[] | select(.kind == $k) | .running] | first // error("no kind")' \
        "$WORK/overview.json" || die "no running count for kind $1 in $(cat "$WORK/overview.json")"
}
parked() { # KIND (from the last overview()): activated entities whose actor is stopped
    jq -er --arg k "$1" '[.kinds[] | select(.kind == $k) | .parked] | first // error("no kind")' \
        "$WORK/overview.json" || die "no parked count for kind $1 in $(cat "$WORK/overview.json")"
}
activated() { echo $(($(running "$1") + $(parked "$1"))); }
journal_events() { jq -er '.journal.events' "$WORK/overview.json"; }
# Size of DATA_DIR/surge.db-wal in MiB (0 when there is none).
wal_mib() {
    local size=0
    [ ! -e "$1/surge.db-wal" ] || size=$(stat -c %s "$1/surge.db-wal")
    awk -v b="$size" 'BEGIN { printf "%.1f", b / 1048576 }'
}

# start_surge NAME DATA_DIR [VAR=VALUE ...]: spawns the server and waits (polling GET /healthz
# every 10 ms, at most 60 s) for a 200. STARTUP_MS = spawn to that 200, in milliseconds.
start_surge() {
    local name=$1 data=$2
    shift 2
    mkdir -p "$data"
    if curl -s --max-time 2 -o /dev/null "$BASE_URL/healthz"; then
        die "something already answers on 127.0.0.1:$PORT; stop it or pick another PORT"
    fi
    local log="$WORK/surge-$name.log" t0 t1 code deadline
    t0=${EPOCHREALTIME/[.,]/}
    (cd "$WORK" && exec env SURGE_AUTH__JWT_SECRET="$JWT_SECRET" RUST_LOG=warn "$@" \
        "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$data") >>"$log" 2>&1 &
    SURGE_PID=$!
    deadline=$((t0 + 60000000))
    while :; do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$BASE_URL/healthz" 2>/dev/null || true)
        if [ "$code" = 200 ]; then break; fi
        if ! kill -0 "$SURGE_PID" 2>/dev/null; then
            tail -n 40 "$log" >&2
            SURGE_PID=""
            die "surge ($name) exited during start-up (log above)"
        fi
        [ "${EPOCHREALTIME/[.,]/}" -lt "$deadline" ] || {
            tail -n 40 "$log" >&2
            die "surge ($name): GET /healthz did not answer 200 within 60 s"
        }
        sleep 0.01
    done
    t1=${EPOCHREALTIME/[.,]/}
    STARTUP_MS=$(awk -v d=$((t1 - t0)) 'BEGIN { printf "%.1f", d / 1000 }')
    echo "surge ($name) pid $SURGE_PID answered /healthz ${STARTUP_MS} ms after spawn"
}

# Runs wrk with a scripts/memory/*.lua script whose threads each write DONE_DIR/thread-<t> when
# they are done, waits (at most BOUND_SECS) for all of them, then SIGINTs wrk so that it prints
# its summary (wrk otherwise sleeps for its whole -d). Calls the function named in $ON_TICK, if
# any, about once a second while waiting. Leaves the MEM_RESULT line in $WORK/wrk-NAME.txt and
# DRIVE_SECS = how long it ran. Usage: drive_wrk NAME LUA BOUND_SECS [SCRIPT ARGS after DONE_DIR]
ON_TICK=""
drive_wrk() {
    local name=$1 lua=$2 bound=$3
    shift 3
    local done_dir="$WORK/done-$name" out="$WORK/wrk-$name.txt" t0 now next deadline finished
    rm -rf "$done_dir"
    mkdir -p "$done_dir"
    t0=${EPOCHREALTIME/[.,]/}
    wrk -t"$THREADS" -c"$CONNS" -d"$((bound + 30))s" --timeout 10s -s "$lua" "$BASE_URL/" \
        -- "$done_dir" "$@" >"$out" 2>&1 &
    WRK_PID=$!
    deadline=$((t0 + bound * 1000000))
    next=$((t0 + 1000000))
    while :; do
        finished=$(find "$done_dir" -name 'thread-*' | wc -l)
        [ "$finished" -lt "$THREADS" ] || break
        kill -0 "$WRK_PID" 2>/dev/null || { cat "$out" >&2; die "wrk ($name) exited early (above)"; }
        now=${EPOCHREALTIME/[.,]/}
        if [ "$now" -ge "$deadline" ]; then
            warn "wrk ($name): only $finished of $THREADS threads finished within $bound s; stopping it"
            break
        fi
        if [ -n "$ON_TICK" ] && [ "$now" -ge "$next" ]; then
            "$ON_TICK"
            next=$((next + 1000000))
        fi
        sleep 0.1
    done
    DRIVE_SECS=$(awk -v d=$((${EPOCHREALTIME/[.,]/} - t0)) 'BEGIN { printf "%.1f", d / 1e6 }')
    stop_wrk
    grep -q '^MEM_RESULT ' "$out" || { cat "$out" >&2; die "wrk ($name) printed no MEM_RESULT line"; }
    grep '^MEM_RESULT ' "$out"
}
mem_value() { # FILE KEY: a value of the MEM_RESULT line
    grep -m1 '^MEM_RESULT ' "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2; exit }'
}

# Waits until `running` of KIND reads the same twice 0.5 s apart (at most 20 s); prints it.
settled_running() {
    local prev="" cur i
    for ((i = 0; i < 40; i++)); do
        overview
        cur=$(running "$1")
        [ "$cur" = "$prev" ] && { echo "$cur"; return 0; }
        prev=$cur
        sleep 0.5
    done
    echo "$cur"
}

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "n/a" }'; }

# The common warm-up of parts 1 and 2: one item created and read, then 2 s of GET /healthz over
# the same connections wrk will use, so the baseline already holds the HTTP workers' buffers.
warm_up() {
    local code
    code=$(call POST /api/v1/stock-items "$OP_TOKEN" '{"sku":"WARM-1","name":"warm","on_hand":1}')
    [ "$code" = 201 ] || die "POST /api/v1/stock-items (warm-up) answered $code: $(cat "$WORK/last.json")"
    code=$(call GET /api/v1/stock-items/WARM-1 "$OP_TOKEN")
    [ "$code" = 200 ] || die "GET /api/v1/stock-items/WARM-1 answered $code"
    timeout 30 wrk -t"$THREADS" -c"$CONNS" -d2s "$BASE_URL/healthz" >"$WORK/wrk-warm-$1.txt" 2>&1 ||
        die "warm-up wrk failed: $(cat "$WORK/wrk-warm-$1.txt")"
    sleep 1
}

# ---- results (n/a unless measured) -----------------------------------------------------------
R1_BEFORE=n/a R1_AFTER=n/a R1_ANON_BEFORE=n/a R1_ANON_AFTER=n/a R1_RUN_BEFORE=n/a R1_RUN_AFTER=n/a
R1_PER=n/a R1_PER_ANON=n/a R1_VERDICT="not run" R1_CREATE="not run" R1_CHECK=""
R2_BEFORE=n/a R2_PEAK=n/a R2_AT_END=n/a R2_AFTER=n/a R2_RUN_BEFORE=n/a R2_RUN_PEAK=n/a
R2_RUN_END=n/a R2_RUN_AFTER=n/a R2_WAITED=n/a R2_CREATE="not run" R2_VERDICT="not run"
R2_SAMPLE_PEAK=n/a R2_LATER=n/a R2_LATER_MIN=n/a R2_LATER_MAX=n/a R2_RUN_LATER=n/a
R3_FILL="not run" R3_EVENTS=n/a R3_DB=n/a R3_DB_ROWS=n/a R3_STARTUPS="" R3_MEDIAN=n/a
R3_FIRST_GETS="" R3_FIRST_MEDIAN=n/a R3_SECOND_GETS="" R3_RSS_STARTS="" R3_VERDICT="not run"
R3_EMPTY_START=n/a R3_FILL_STOP="n/a" R3_HOT_TAIL=n/a R3_RUNNING_AT_START=""
R4_BEFORE=n/a R4_PEAK=n/a R4_AT_END=n/a R4_RUN_END=n/a R4_EARN="not run" R4_CHECK=n/a
R4_VERDICT="not run"
R3_WAL_AT_START="" R3_CKPT="not run (no WAL left, or no sqlite3)" R3_CLEAN_STARTUPS="" R3_CLEAN_MEDIAN=n/a

# ---- build -----------------------------------------------------------------------------------

if [ "$BUILD_SURGE" = 1 ]; then
    say "cargo build --release (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    if [ -d "${HOME:-/root}/.cargo/bin" ]; then PATH="${HOME:-/root}/.cargo/bin:$PATH"; fi
    have cargo || die "cargo not found (or pass SURGE_BIN=path/to/surge)"
    (cd "$REPO_ROOT" && timeout 2700 cargo build --release)
fi
[ -x "$SURGE_BIN" ] || die "no surge binary at $SURGE_BIN"
cp "$SURGE_BIN" "$BIN"
BIN_ID="$(sha256sum "$BIN" | cut -c1-12), built $(date -u -r "$SURGE_BIN" +%Y-%m-%dT%H:%M:%SZ)"
BIN_GIT=$(cd "$REPO_ROOT" && git rev-parse --short HEAD 2>/dev/null || echo n/a)
if [ -n "$(cd "$REPO_ROOT" && git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    BIN_GIT+=" + uncommitted changes"
fi
OP_TOKEN=$(mint bench-operator operator)
STARTED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)

# ---- part 1: RSS per activated entity --------------------------------------------------------

run_rss() {
    say "part 1: RSS per activated entity (N=$N, passivate_after_secs=$NEVER_PASSIVATE_SECS)"
    start_surge rss "$WORK/data-rss" SURGE_ACTORS__PASSIVATE_AFTER_SECS=$NEVER_PASSIVATE_SECS \
        SURGE_ACTORS__PARK_AFTER_SECS=$NEVER_PASSIVATE_SECS
    warm_up rss
    R1_RUN_BEFORE=$(settled_running stock_item)
    R1_BEFORE=$(proc_kb "$SURGE_PID" VmRSS)
    R1_ANON_BEFORE=$(proc_kb "$SURGE_PID" RssAnon)
    echo "baseline: VmRSS $R1_BEFORE kB (RssAnon $R1_ANON_BEFORE kB), running stock_item $R1_RUN_BEFORE"

    drive_wrk rss "$SCRIPT_DIR/memory/create-items.lua" "$CREATE_TIMEOUT_SECS" "$OP_TOKEN" "$N" "$THREADS" M
    local created statuses
    created=$(mem_value "$WORK/wrk-rss.txt" created)
    statuses=$(mem_value "$WORK/wrk-rss.txt" statuses)
    R1_CREATE="$created created in $DRIVE_SECS s ($(awk -v c="$created" -v s="$DRIVE_SECS" \
        'BEGIN { printf "%.0f", c / s }')/s; statuses $statuses)"
    R1_RUN_AFTER=$(settled_running stock_item)
    sleep 1
    R1_AFTER=$(proc_kb "$SURGE_PID" VmRSS)
    R1_ANON_AFTER=$(proc_kb "$SURGE_PID" RssAnon)
    local activated=$((R1_RUN_AFTER - R1_RUN_BEFORE))
    if [ "$R1_RUN_AFTER" -ge "$((N + R1_RUN_BEFORE))" ]; then
        R1_CHECK="running reached N ($R1_RUN_AFTER = $R1_RUN_BEFORE + $activated)"
    else
        R1_CHECK="running did NOT reach N: $R1_RUN_AFTER = $R1_RUN_BEFORE + $activated (per-entity figure uses $activated)"
        warn "$R1_CHECK"
    fi
    [ "$activated" -gt 0 ] || die "no entity was activated"
    R1_PER=$(((R1_AFTER - R1_BEFORE) * 1024 / activated))
    R1_PER_ANON=$(((R1_ANON_AFTER - R1_ANON_BEFORE) * 1024 / activated))
    if [ "$R1_PER" -le "$TARGET_BYTES_PER_ENTITY" ]; then
        R1_VERDICT="within the $TARGET_BYTES_PER_ENTITY-byte target"
    else
        R1_VERDICT="OVER the $TARGET_BYTES_PER_ENTITY-byte target ($(awk -v a="$R1_PER" -v t="$TARGET_BYTES_PER_ENTITY" \
            'BEGIN { printf "%.1fx", a / t }'))"
    fi
    echo "after: VmRSS $R1_AFTER kB, running stock_item $R1_RUN_AFTER: $R1_PER bytes per entity"
    stop_surge
    echo "surge exited with status $SURGE_EXIT"
    [ "$SURGE_EXIT" = 0 ] || warn "surge (rss) exited with status $SURGE_EXIT after SIGTERM"
}

# ---- part 1b: RSS per parked entity (activated, state in memory, actor stopped) -------------

run_parked() {
    say "part 1b: RSS per parked entity (N=$N, park_after_secs=$PARK_AFTER_SECS, never passivated)"
    start_surge parked "$WORK/data-parked" SURGE_ACTORS__PASSIVATE_AFTER_SECS=$NEVER_PASSIVATE_SECS \
        SURGE_ACTORS__PARK_AFTER_SECS="$PARK_AFTER_SECS" \
        SURGE_ACTORS__IDLE_CHECK_INTERVAL_SECS="$IDLE_CHECK_SECS"
    warm_up parked
    sleep "$((PARK_AFTER_SECS + 2 * IDLE_CHECK_SECS))"
    overview
    local base_activated
    base_activated=$(activated stock_item)
    R1B_BEFORE=$(proc_kb "$SURGE_PID" VmRSS)
    drive_wrk parked "$SCRIPT_DIR/memory/create-items.lua" "$CREATE_TIMEOUT_SECS" "$OP_TOKEN" "$N" "$THREADS" M
    local near=$((N / 1000)) i run
    [ "$near" -ge 1 ] || near=1
    for ((i = 0; i < PASSIVATE_WAIT_SECS; i++)); do
        overview
        run=$(running stock_item)
        [ "$run" -gt "$near" ] || break
        sleep 1
    done
    sleep "$IDLE_CHECK_SECS"
    overview
    R1B_RUNNING=$(running stock_item)
    R1B_PARKED=$(parked stock_item)
    R1B_AFTER=$(proc_kb "$SURGE_PID" VmRSS)
    local counted=$((R1B_RUNNING + R1B_PARKED - base_activated))
    [ "$counted" -gt 0 ] || die "no entity was activated"
    R1B_PER=$(((R1B_AFTER - R1B_BEFORE) * 1024 / counted))
    if [ "$R1B_PER" -le "$TARGET_BYTES_PER_ENTITY" ]; then
        R1B_VERDICT="within the $TARGET_BYTES_PER_ENTITY-byte target"
    else
        R1B_VERDICT="OVER the $TARGET_BYTES_PER_ENTITY-byte target"
    fi
    echo "parked: running $R1B_RUNNING, parked $R1B_PARKED, VmRSS $R1B_BEFORE -> $R1B_AFTER kB: $R1B_PER bytes per entity"
    stop_surge
    [ "$SURGE_EXIT" = 0 ] || warn "surge (parked) exited with status $SURGE_EXIT after SIGTERM"
}

# ---- part 2: passivation gives the memory back -----------------------------------------------

R2_SAMPLES=""
sample_passivation() {
    local run rss
    overview
    run=$(running stock_item)
    rss=$(proc_kb "$SURGE_PID" VmRSS)
    R2_SAMPLES+=" ${run}:${rss}"
    [ "$run" -le "$R2_RUN_PEAK" ] || R2_RUN_PEAK=$run
    [ "$rss" -le "$R2_SAMPLE_PEAK" ] || R2_SAMPLE_PEAK=$rss
}

run_passivation() {
    say "part 2: passivation (N=$N, passivate_after_secs=$PASSIVATE_AFTER_SECS, idle_check_interval_secs=$IDLE_CHECK_SECS)"
    start_surge passivation "$WORK/data-passivation" \
        SURGE_ACTORS__PASSIVATE_AFTER_SECS="$PASSIVATE_AFTER_SECS" \
        SURGE_ACTORS__PARK_AFTER_SECS="$PARK_AFTER_SECS" \
        SURGE_ACTORS__IDLE_CHECK_INTERVAL_SECS="$IDLE_CHECK_SECS"
    warm_up passivation
    overview
    R2_RUN_BEFORE=$(running stock_item)
    R2_BEFORE=$(proc_kb "$SURGE_PID" VmRSS)
    echo "baseline: VmRSS $R2_BEFORE kB, running stock_item $R2_RUN_BEFORE"
    R2_RUN_PEAK=$R2_RUN_BEFORE
    R2_SAMPLE_PEAK=$R2_BEFORE

    ON_TICK=sample_passivation
    drive_wrk passivation "$SCRIPT_DIR/memory/create-items.lua" "$CREATE_TIMEOUT_SECS" "$OP_TOKEN" "$N" "$THREADS" M
    ON_TICK=""
    sample_passivation
    local created statuses
    created=$(mem_value "$WORK/wrk-passivation.txt" created)
    statuses=$(mem_value "$WORK/wrk-passivation.txt" statuses)
    R2_CREATE="$created created in $DRIVE_SECS s (statuses $statuses)"
    R2_RUN_END=$(running stock_item)
    R2_AT_END=$(proc_kb "$SURGE_PID" VmRSS)
    echo "creation done: running stock_item $R2_RUN_END, VmRSS $R2_AT_END kB (samples run:rss_kB$R2_SAMPLES)"

    # Near 0: at most 0.1% of N (at least 1) still running.
    local near=$((N / 1000)) t0 run i
    [ "$near" -ge 1 ] || near=1
    t0=$SECONDS
    for ((i = 0; i < PASSIVATE_WAIT_SECS; i++)); do
        overview
        run=$(activated stock_item)
        [ "$run" -gt "$near" ] || break
        sleep 1
    done
    R2_WAITED=$((SECONDS - t0))
    # Memory freed by the stopped actors goes back to the allocator at once; give it a few
    # sweeps' time to reach the OS, then read the settled figure.
    sleep "$((IDLE_CHECK_SECS * 3))"
    overview
    R2_RUN_AFTER=$(activated stock_item)
    R2_AFTER=$(proc_kb "$SURGE_PID" VmRSS)
    R2_PEAK=$(proc_kb "$SURGE_PID" VmHWM)
    [ "$R2_SAMPLE_PEAK" -le "$R2_PEAK" ] || R2_PEAK=$R2_SAMPLE_PEAK
    local grown=$((R2_PEAK - R2_BEFORE)) back=$((R2_PEAK - R2_AFTER))
    if [ "$R2_RUN_AFTER" -gt "$near" ]; then
        R2_VERDICT="running still $R2_RUN_AFTER after ${PASSIVATE_WAIT_SECS} s: passivation did NOT finish"
        warn "$R2_VERDICT"
    elif [ "$grown" -gt 0 ]; then
        R2_VERDICT="$(awk -v b="$back" -v g="$grown" 'BEGIN { printf "%.0f%%", 100 * b / g }') of the growth given back; RSS after is $(mib "$((R2_AFTER - R2_BEFORE))") above the baseline"
    else
        R2_VERDICT="RSS did not grow"
    fi
    echo "after passivation: running stock_item $R2_RUN_AFTER (after ${R2_WAITED} s + settle), VmRSS $R2_AFTER kB, VmHWM $R2_PEAK kB"
    local rss
    R2_LATER_MIN=$R2_AFTER R2_LATER_MAX=$R2_AFTER
    for ((i = 0; i < SETTLE_SECS; i++)); do
        sleep 1
        rss=$(proc_kb "$SURGE_PID" VmRSS)
        [ "$rss" -ge "$R2_LATER_MIN" ] || R2_LATER_MIN=$rss
        [ "$rss" -le "$R2_LATER_MAX" ] || R2_LATER_MAX=$rss
    done
    R2_LATER=$(proc_kb "$SURGE_PID" VmRSS)
    overview
    R2_RUN_LATER=$(running stock_item)
    echo "$SETTLE_SECS s later: VmRSS $R2_LATER kB (min $R2_LATER_MIN, max $R2_LATER_MAX), running stock_item $R2_RUN_LATER"
    stop_surge
    echo "surge exited with status $SURGE_EXIT"
    [ "$SURGE_EXIT" = 0 ] || warn "surge (passivation) exited with status $SURGE_EXIT after SIGTERM"
}

# ---- part 3: start-up in front of a large journal --------------------------------------------

FILL_ENV=(SURGE_DATABASE__SQLITE_SYNCHRONOUS=normal
    "SURGE_ORDERS__PAY_WITHIN_SECS=$FILL_PAY_WITHIN_SECS"
    "SURGE_ACTORS__PASSIVATE_AFTER_SECS=$FILL_PASSIVATE_AFTER_SECS"
    "SURGE_ACTORS__IDLE_CHECK_INTERVAL_SECS=$FILL_IDLE_CHECK_SECS")

run_startup() {
    local data="$WORK/data-startup" code i
    say "part 3: fill the journal to $EVENTS events (sqlite synchronous=normal, $HOT_SKUS hot SKUs, $USERS customers)"
    start_surge fill "$data" "${FILL_ENV[@]}"
    R3_EMPTY_START=$STARTUP_MS
    for ((i = 1; i <= HOT_SKUS; i++)); do
        code=$(call POST /api/v1/stock-items "$OP_TOKEN" "{\"sku\":\"HOT-$i\",\"name\":\"hot $i\",\"on_hand\":$HOT_ON_HAND}")
        [ "$code" = 201 ] || die "POST /api/v1/stock-items HOT-$i answered $code: $(cat "$WORK/last.json")"
    done
    : >"$WORK/tokens.txt"
    for ((i = 1; i <= USERS; i++)); do mint "mem-$i" customer >>"$WORK/tokens.txt"; echo >>"$WORK/tokens.txt"; done
    local customer
    customer=$(head -n 1 "$WORK/tokens.txt")
    code=$(call POST /api/v1/orders "$customer" '{"items":[{"sku":"HOT-1","quantity":1}]}')
    [ "$code" = 201 ] || die "probe POST /api/v1/orders answered $code: $(cat "$WORK/last.json")"

    local t0=$SECONDS events need orders=0 rounds=0 left created
    while :; do
        overview
        events=$(journal_events)
        [ "$events" -lt "$EVENTS" ] || break
        left=$((FILL_TIMEOUT_SECS - (SECONDS - t0)))
        [ "$left" -gt 0 ] || die "the journal reached only $events events in $FILL_TIMEOUT_SECS s (want $EVENTS)"
        need=$(((EVENTS - events + 1) / 2))
        rounds=$((rounds + 1))
        echo "journal events $events; $need more orders (round $rounds, at most $left s)"
        drive_wrk "fill-$rounds" "$SCRIPT_DIR/memory/fill-orders.lua" "$left" \
            "$WORK/tokens.txt" "$HOT_SKUS" "$need" "$THREADS"
        created=$(mem_value "$WORK/wrk-fill-$rounds.txt" created)
        orders=$((orders + created))
        if [ "$(mem_value "$WORK/wrk-fill-$rounds.txt" failed)" != 0 ]; then
            warn "fill round $rounds: non-201 answers: $(mem_value "$WORK/wrk-fill-$rounds.txt" statuses)"
        fi
    done
    local fill_secs=$((SECONDS - t0))
    R3_EVENTS=$events
    local fill_rss
    fill_rss=$(proc_kb "$SURGE_PID" VmRSS)
    overview
    R3_FILL="$orders orders (2xx) in ${fill_secs} s ($((orders / (fill_secs > 0 ? fill_secs : 1))) orders/s), $rounds wrk round(s); fill server RSS $(mib "$fill_rss"), running order actors $(running order)"
    echo "$R3_FILL"
    stop_surge
    R3_FILL_STOP="exit $SURGE_EXIT after SIGTERM, stop took ${STOP_MS} ms"
    [ "$SURGE_EXIT" = 0 ] || warn "surge (fill) exited with status $SURGE_EXIT after SIGTERM"

    R3_DB=$(du -cb "$data"/surge.db* | awk '$2 == "total" { t = $1 } END { printf "%.1f MiB", t / 1048576 }')
    R3_DB+=" ($(find "$data" -maxdepth 1 -name 'surge.db*' -printf '%f %s\n' | sort |
        awk '{ printf "%s%s %.1f MiB", sep, $1, $2 / 1048576; sep = ", " }'))"
    if have sqlite3; then
        # HOT-1's latest event and latest snapshot: what its first activation has to replay.
        cat >"$WORK/hot-tail.sql" <<'SQL'
WITH l AS (SELECT coalesce(max(seq), 0) AS s FROM journal WHERE pid = 'stock_item:HOT-1'),
     p AS (SELECT coalesce(max(seq), 0) AS s FROM snapshots WHERE pid = 'stock_item:HOT-1')
SELECT 'last seq ' || l.s || ', snapshot seq ' || p.s || ' (activation replays '
       || (l.s - p.s) || ' events)' FROM l, p;
SQL
        R3_DB_ROWS=$(timeout 120 sqlite3 -readonly "$data/surge.db" \
            "SELECT (SELECT count(*) FROM journal) || ' journal rows, ' || (SELECT count(*) FROM snapshots) || ' snapshots'" 2>/dev/null || echo n/a)
        R3_HOT_TAIL=$(timeout 60 sqlite3 -readonly "$data/surge.db" <"$WORK/hot-tail.sql" 2>/dev/null || echo n/a)
    fi
    echo "database: $R3_DB; $R3_DB_ROWS; HOT-1: $R3_HOT_TAIL"

    local first second out
    for ((i = 1; i <= RESTARTS; i++)); do
        say "part 3: restart $i of $RESTARTS"
        R3_WAL_AT_START+=" $(wal_mib "$data")"
        start_surge "restart-$i" "$data" "${FILL_ENV[@]}"
        R3_STARTUPS+=" $STARTUP_MS"
        R3_RSS_STARTS+=" $(proc_kb "$SURGE_PID" VmRSS)"
        out=$(curl -sS --max-time 30 -o "$WORK/first.json" -w '%{http_code} %{time_total}' \
            -H "Authorization: Bearer $customer" "$BASE_URL/api/v1/stock-items/HOT-1") || die "first GET HOT-1 failed"
        [ "${out%% *}" = 200 ] || die "first GET /api/v1/stock-items/HOT-1 answered ${out%% *}: $(cat "$WORK/first.json")"
        first=$(awk -v s="${out#* }" 'BEGIN { printf "%.1f", s * 1000 }')
        out=$(curl -sS --max-time 30 -o "$WORK/second.json" -w '%{http_code} %{time_total}' \
            -H "Authorization: Bearer $customer" "$BASE_URL/api/v1/stock-items/HOT-1") || die "second GET HOT-1 failed"
        second=$(awk -v s="${out#* }" 'BEGIN { printf "%.1f", s * 1000 }')
        R3_FIRST_GETS+=" $first"
        R3_SECOND_GETS+=" $second"
        overview
        R3_RUNNING_AT_START+=" $(running stock_item)/$(running order)"
        echo "start-up $STARTUP_MS ms; first GET HOT-1 $first ms, second $second ms; reserved $(jq -r .reserved "$WORK/first.json")"
        stop_surge
        [ "$SURGE_EXIT" = 0 ] || warn "surge (restart $i) exited with status $SURGE_EXIT after SIGTERM"
    done
    R3_MEDIAN=$(median <<<"$R3_STARTUPS")
    R3_FIRST_MEDIAN=$(median <<<"$R3_FIRST_GETS")
    if awk -v m="$R3_MEDIAN" -v t="$TARGET_STARTUP_MS" 'BEGIN { exit !(m < t) }'; then
        R3_VERDICT="under the ${TARGET_STARTUP_MS} ms target"
    else
        R3_VERDICT="OVER the ${TARGET_STARTUP_MS} ms target"
    fi

    # Diagnosis: SQLite recovers a WAL left behind by the last process when it opens the database
    # (it reads the whole WAL), so the start-up above includes that. Checkpoint the WAL into the
    # database offline (sqlite3, which also removes the WAL when it closes) and time the same
    # start-up again: the difference is what the WAL cost.
    if have sqlite3 && [ -s "$data/surge.db-wal" ]; then
        say "part 3: checkpoint the WAL offline (sqlite3 PRAGMA wal_checkpoint(TRUNCATE)), then restart"
        local wal_before t0 t1
        wal_before=$(wal_mib "$data")
        t0=${EPOCHREALTIME/[.,]/}
        timeout 900 sqlite3 "$data/surge.db" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null ||
            warn "sqlite3 could not checkpoint the WAL"
        t1=${EPOCHREALTIME/[.,]/}
        R3_CKPT="WAL $wal_before MiB -> $(wal_mib "$data") MiB in $(awk -v d=$((t1 - t0)) 'BEGIN { printf "%.1f", d / 1e6 }') s"
        echo "$R3_CKPT"
        for ((i = 1; i <= RESTARTS; i++)); do
            start_surge "checkpointed-$i" "$data" "${FILL_ENV[@]}"
            R3_CLEAN_STARTUPS+=" $STARTUP_MS"
            stop_surge
            [ "$SURGE_EXIT" = 0 ] || warn "surge (checkpointed $i) exited with status $SURGE_EXIT after SIGTERM"
        done
        R3_CLEAN_MEDIAN=$(median <<<"$R3_CLEAN_STARTUPS")
    fi
}

# ---- part 4: a million wallets, each earning once --------------------------------------------

R4_SAMPLES="" R4_SAMPLE_PEAK=0 R4_RUN_PEAK=0
sample_wallets() {
    local run rss
    overview
    run=$(running wallet)
    rss=$(proc_kb "$SURGE_PID" VmRSS)
    R4_SAMPLES+=" ${run}:${rss}"
    [ "$run" -le "$R4_RUN_PEAK" ] || R4_RUN_PEAK=$run
    [ "$rss" -le "$R4_SAMPLE_PEAK" ] || R4_SAMPLE_PEAK=$rss
}

run_wallets() {
    say "part 4: $WALLETS wallets earning once (passivate_after_secs=$PASSIVATE_AFTER_SECS, park_after_secs=$PARK_AFTER_SECS)"
    start_surge wallets "$WORK/data-wallets" \
        SURGE_ACTORS__PASSIVATE_AFTER_SECS="$PASSIVATE_AFTER_SECS" \
        SURGE_ACTORS__PARK_AFTER_SECS="$PARK_AFTER_SECS" \
        SURGE_ACTORS__IDLE_CHECK_INTERVAL_SECS="$IDLE_CHECK_SECS"
    warm_up wallets
    R4_BEFORE=$(proc_kb "$SURGE_PID" VmRSS)
    R4_SAMPLE_PEAK=$R4_BEFORE
    ON_TICK=sample_wallets
    drive_wrk wallets "$SCRIPT_DIR/memory/create-items.lua" "$WALLETS_TIMEOUT_SECS" "$OP_TOKEN" \
        "$WALLETS" "$THREADS" W wallet
    ON_TICK=""
    sample_wallets
    local earned statuses
    earned=$(mem_value "$WORK/wrk-wallets.txt" created)
    statuses=$(mem_value "$WORK/wrk-wallets.txt" statuses)
    R4_EARN="$earned earns (201) in $DRIVE_SECS s = $(awk -v c="$earned" -v s="$DRIVE_SECS" \
        'BEGIN { printf "%.0f", c / s }')/s; statuses $statuses"
    R4_AT_END=$(proc_kb "$SURGE_PID" VmRSS)
    R4_PEAK=$(proc_kb "$SURGE_PID" VmHWM)
    [ "$R4_SAMPLE_PEAK" -le "$R4_PEAK" ] || R4_PEAK=$R4_SAMPLE_PEAK
    R4_RUN_END="$(running wallet) running, $(parked wallet) parked"
    # A spot check that the earns are durable state, not just 201s: a wallet from each end.
    local code first last
    code=$(call GET /api/v1/wallets/W-1-1 "$OP_TOKEN")
    first=$(jq -r '.balance' "$WORK/last.json" 2>/dev/null || echo "?")
    [ "$code" = 200 ] || first="GET answered $code"
    code=$(call GET "/api/v1/wallets/W-$THREADS-$((WALLETS / THREADS))" "$OP_TOKEN")
    last=$(jq -r '.balance' "$WORK/last.json" 2>/dev/null || echo "?")
    [ "$code" = 200 ] || last="GET answered $code"
    R4_CHECK="balance of W-1-1: $first, of W-$THREADS-$((WALLETS / THREADS)): $last (each earned 10)"
    if [ "$R4_PEAK" -lt "$TARGET_WALLETS_RSS_KB" ]; then
        R4_VERDICT="under 1 GiB (target met)"
    else
        R4_VERDICT="1 GiB or more (target MISSED)"
    fi
    echo "wallets: $R4_EARN; VmRSS peak $R4_PEAK kB, at end $R4_AT_END kB; $R4_RUN_END; $R4_CHECK"
    stop_surge
    [ "$SURGE_EXIT" = 0 ] || warn "surge (wallets) exited with status $SURGE_EXIT after SIGTERM"
}

# ---- run -------------------------------------------------------------------------------------

if want rss; then run_rss; fi
if want parked; then run_parked; fi
if want passivation; then run_passivation; fi
if want startup; then run_startup; fi
if want wallets; then run_wallets; fi

# ---- report ----------------------------------------------------------------------------------

CPU_MODEL=$(lscpu | awk -F: '/^Model name/ { sub(/^[ \t]+/, "", $2); print $2; exit }')
CORES=$(nproc)
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
OTHER_ENV=$(env | awk -F= '/^SURGE_/ { printf "%s%s", sep, $1; sep = " " }')
row() { printf '  %-44s %s\n' "$1" "$2"; }

mkdir -p "$(dirname "$OUT")"
{
    printf 'surge memory and start-up benchmark, %s\n' "$STARTED_AT"
    printf 'machine: %s, %s cores, load average at the end %s (shared machine: other builds and\n' \
        "$CPU_MODEL" "$CORES" "$LOAD"
    printf '  benchmarks may have run at the same time); binary %s, git %s\n' "$BIN_ID" "$BIN_GIT"
    printf 'wrk: -t%s -c%s; sqlite journal; RSS = VmRSS from /proc/PID/status; other SURGE_* env: %s\n' \
        "$THREADS" "$CONNS" "${OTHER_ENV:-none}"
    echo
    printf '1. RSS per activated entity (N=%s stock items, passivate_after_secs=%s)\n' "$N" "$NEVER_PASSIVATE_SECS"
    row "RSS before (after warm-up)" "$(mib "$R1_BEFORE") ($R1_BEFORE kB), running stock_item $R1_RUN_BEFORE"
    row "RSS after activation" "$(mib "$R1_AFTER") ($R1_AFTER kB), running stock_item $R1_RUN_AFTER"
    row "bytes per activated entity (VmRSS)" "$R1_PER: $R1_VERDICT"
    row "bytes per activated entity (RssAnon)" "$R1_PER_ANON"
    row "check" "${R1_CHECK:-n/a}"
    row "creation" "$R1_CREATE"
    echo
    printf '1b. RSS per parked entity (activated: state in memory, actor stopped; park_after_secs=%s)\n' "$PARK_AFTER_SECS"
    row "RSS before / after" "$(mib "${R1B_BEFORE:-n/a}") / $(mib "${R1B_AFTER:-n/a}")"
    row "entities running / parked" "${R1B_RUNNING:-n/a} / ${R1B_PARKED:-n/a}"
    row "bytes per parked entity (VmRSS)" "${R1B_PER:-n/a}: ${R1B_VERDICT:-not run}"
    echo
    printf '2. Passivation (passivate_after_secs=%s, idle_check_interval_secs=%s, N=%s)\n' \
        "$PASSIVATE_AFTER_SECS" "$IDLE_CHECK_SECS" "$N"
    row "RSS before activation" "$(mib "$R2_BEFORE"), running stock_item $R2_RUN_BEFORE"
    row "RSS peak (VmHWM)" "$(mib "$R2_PEAK"), peak running sampled each second $R2_RUN_PEAK"
    row "RSS when the creations ended" "$(mib "$R2_AT_END"), running stock_item $R2_RUN_END"
    row "RSS after passivation" "$(mib "$R2_AFTER"), running stock_item $R2_RUN_AFTER (waited $R2_WAITED s + $((IDLE_CHECK_SECS * 3)) s)"
    row "RSS ${SETTLE_SECS} s later, idle" "$(mib "$R2_LATER") (min $(mib "$R2_LATER_MIN"), max $(mib "$R2_LATER_MAX") in between), running stock_item $R2_RUN_LATER"
    row "given back (at 'after passivation')" "$R2_VERDICT"
    row "creation" "$R2_CREATE"
    echo
    printf '3. Start-up with a journal of >= %s events (sqlite synchronous=normal for the fill and\n' "$EVENTS"
    printf '   the restarts; %s hot SKUs; pay_within_secs=%s so nothing falls due)\n' "$HOT_SKUS" "$FILL_PAY_WITHIN_SECS"
    row "fill" "$R3_FILL"
    row "journal events committed by the fill run" "$R3_EVENTS"
    row "fill server stop" "$R3_FILL_STOP"
    row "database size" "$R3_DB"
    row "database rows" "$R3_DB_ROWS; HOT-1 $R3_HOT_TAIL"
    row "start-up, empty journal (ms)" "$R3_EMPTY_START"
    row "WAL size at each spawn (MiB)" "${R3_WAL_AT_START# }"
    row "start-up to GET /healthz 200 (ms)" "${R3_STARTUPS# }; median $R3_MEDIAN: $R3_VERDICT"
    row "RSS right after start-up (kB)" "${R3_RSS_STARTS# }"
    row "first GET /stock-items/HOT-1 (ms)" "${R3_FIRST_GETS# }; median $R3_FIRST_MEDIAN (activation: snapshot + tail)"
    row "second GET /stock-items/HOT-1 (ms)" "${R3_SECOND_GETS# }"
    row "running stock_item/order after first GET" "${R3_RUNNING_AT_START# }"
    row "diagnosis: offline WAL checkpoint" "$R3_CKPT"
    row "start-up after that checkpoint (ms)" "${R3_CLEAN_STARTUPS:+${R3_CLEAN_STARTUPS# }; median }$R3_CLEAN_MEDIAN"
    printf '   (start-up polls /healthz with curl every 10 ms: resolution about 15 ms)\n'
    echo
    printf '4. %s wallets, one earn each (passivate_after_secs=%s, park_after_secs=%s)\n' \
        "$WALLETS" "$PASSIVATE_AFTER_SECS" "$PARK_AFTER_SECS"
    row "earns" "$R4_EARN"
    row "RSS before" "$(mib "$R4_BEFORE")"
    row "RSS peak (VmHWM)" "$(mib "$R4_PEAK"): $R4_VERDICT; peak running sampled $R4_RUN_PEAK"
    row "RSS when the earns ended" "$(mib "$R4_AT_END"); wallets $R4_RUN_END"
    row "check" "$R4_CHECK"
} | tee "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "(written to $OUT)"
