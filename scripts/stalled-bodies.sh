#!/usr/bin/env bash
# Stalled-body flood: does /healthz stay up while many clients stall mid-body?
#
# Starts a release surge on 127.0.0.1 with a temp data dir, then runs scripts/stalled-bodies.py:
# STALLED connections from 127.0.0.2 up (PER_SOURCE per address, under the default
# server.connections_per_address_max of 512), each sending a POST's headers with
# `Content-Length: 1000` and one byte, `{`, then stalling; meanwhile a new connection from
# 127.0.0.1 asks GET /healthz every 100 ms for DURATION_SECS (longer than the body timeout,
# server.body_read_timeout_secs, 10 s by default). It prints the probes sent, answered 200 and
# failed (no answer within 2 s), their p50/p99/max latency, and what became of the stalled
# connections: how many got 408, when, and when the server closed them.
# Traffic goes to 127.0.0.0/8 only.
#
# Usage: scripts/stalled-bodies.sh [KEY=VALUE ...]   (the same keys can be set in the environment)
#   STALLED=2000  PER_SOURCE=200  DURATION_SECS=15  PORT=18090
#   SERVER_NOFILE_SOFT= SERVER_NOFILE_HARD=   open-file limits to start the server with (ulimit
#                 -Sn / -Hn; empty: this shell's), e.g. SOFT=1024 as many machines have
#   SURGE_BIN=    binary to use instead of building with cargo --release
#   KEEP_TMP=0    1 keeps the temp dir (server log, load output)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

die() { printf 'stalled-bodies: FATAL: %s\n' "$*" >&2; exit 1; }
say() { printf '\n---- %s\n' "$*"; }

readonly SETTINGS=" STALLED PER_SOURCE DURATION_SECS PORT SERVER_NOFILE_SOFT SERVER_NOFILE_HARD SURGE_BIN KEEP_TMP "
# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"
settings_from_args "${BASH_SOURCE[0]}" "$SETTINGS" "$@"

STALLED=${STALLED:-2000}
PER_SOURCE=${PER_SOURCE:-200}
DURATION_SECS=${DURATION_SECS:-15}
PORT=${PORT:-18090}
SERVER_NOFILE_SOFT=${SERVER_NOFILE_SOFT:-}
SERVER_NOFILE_HARD=${SERVER_NOFILE_HARD:-}
KEEP_TMP=${KEEP_TMP:-0}
for n in STALLED PER_SOURCE DURATION_SECS PORT; do
    [[ ${!n} =~ ^[1-9][0-9]*$ ]] || die "$n must be a positive integer (got '${!n}')"
done
for n in SERVER_NOFILE_SOFT SERVER_NOFILE_HARD; do
    [[ ${!n} =~ ^[0-9]*$ ]] || die "$n must be empty or a number"
done
[ $(((STALLED + PER_SOURCE - 1) / PER_SOURCE)) -le 250 ] || die "STALLED / PER_SOURCE must leave the sources within 127.0.0.0/8"
command -v python3 >/dev/null || die "python3 is needed"
command -v curl >/dev/null || die "curl is needed"

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_ROOT/target}
if [ -z "${SURGE_BIN:-}" ]; then
    say "cargo build --release --bin surge"
    (cd "$REPO_ROOT" && timeout 2700 cargo build --release --bin surge)
    SURGE_BIN=$CARGO_TARGET_DIR/release/surge
fi
[ -x "$SURGE_BIN" ] || die "no binary at $SURGE_BIN"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/surge-stalled.XXXXXX")
SURGE_PID=""
cleanup() {
    if [ -n "$SURGE_PID" ]; then
        kill -TERM "$SURGE_PID" 2>/dev/null || true
        timeout 40 tail --pid="$SURGE_PID" -f /dev/null || kill -KILL "$SURGE_PID" 2>/dev/null || true
    fi
    if [ "$KEEP_TMP" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

BASE_URL="http://127.0.0.1:$PORT"
curl -s --max-time 2 -o /dev/null "$BASE_URL/healthz" && die "something already answers on $BASE_URL"
# The load program holds STALLED sockets and more.
ulimit -Sn "$(ulimit -Hn)"
limits="" # soft first: a hard limit below the soft one is refused
[ -z "$SERVER_NOFILE_SOFT" ] || limits+="ulimit -Sn $SERVER_NOFILE_SOFT && "
[ -z "$SERVER_NOFILE_HARD" ] || limits+="ulimit -Hn $SERVER_NOFILE_HARD && "
say "surge on $BASE_URL (${limits:-open-file limits as in this shell}) from $SURGE_BIN"
(cd "$WORK" && exec env SURGE_LOG__LEVEL=info bash -c "${limits}exec \"\$0\" serve --listen 127.0.0.1:$PORT --data-dir \"$WORK/data\"" \
    "$SURGE_BIN") >"$WORK/surge.log" 2>&1 &
SURGE_PID=$!
for ((i = 0; i < 120; i++)); do
    kill -0 "$SURGE_PID" 2>/dev/null || die "surge exited during start-up: $(tail -n 20 "$WORK/surge.log")"
    [ "$(curl -s --max-time 2 -o /dev/null -w '%{http_code}' "$BASE_URL/healthz")" = 200 ] && break
    sleep 0.5
done
[ "$i" -lt 120 ] || die "surge did not answer /healthz within 60 s"
echo "server's open-file limit: $(awk '/Max open files/ { print $4 " soft, " $5 " hard" }' "/proc/$SURGE_PID/limits")"
grep -E 'open-file limit|connection bound' "$WORK/surge.log" | sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^/server log: /' || true

say "$STALLED stalled bodies from 127.0.0.2 up ($PER_SOURCE each), /healthz every 100 ms for ${DURATION_SECS}s"
timeout -k 5 $((DURATION_SECS + 60)) python3 "$SCRIPT_DIR/stalled-bodies.py" --port "$PORT" \
    --stalled "$STALLED" --per-source "$PER_SOURCE" --duration-secs "$DURATION_SECS" | tee "$WORK/load.txt"
if grep -q 'Too many open files' "$WORK/surge.log"; then
    echo "server log: $(grep -c 'Too many open files' "$WORK/surge.log") lines say 'Too many open files'"
fi
kill -0 "$SURGE_PID" 2>/dev/null || die "surge died under the load: $(tail -n 20 "$WORK/surge.log")"
