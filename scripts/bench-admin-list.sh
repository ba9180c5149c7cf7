#!/usr/bin/env bash
# How long the console's actor page takes with many activated entities: starts the release
# server on a temp data dir, creates N stock items over HTTP (wrk, scripts/memory/create-items.lua),
# then times GET /api/v1/admin/actors, first page and a filtered page after a cursor, ROUNDS
# times each with curl, and prints the medians.
#
# Usage: scripts/bench-admin-list.sh [KEY=VALUE ...]   (the same keys can be set in the environment)
#   SURGE_BIN=target/release/surge   the server
#   N=200000                         stock items to create
#   ROUNDS=15                        GETs per page
#   PORT=18571                       surge listens on 127.0.0.1:$PORT
set -euo pipefail

die() {
    echo "bench-admin-list: $*" >&2
    exit 2
}

REPO_ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$REPO_ROOT/scripts/lib.sh"
settings_from_args "$0" " SURGE_BIN N ROUNDS PORT " "$@"
SURGE_BIN=${SURGE_BIN:-${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/surge}
N=${N:-200000}
ROUNDS=${ROUNDS:-15}
PORT=${PORT:-18571}
[ -x "$SURGE_BIN" ] || die "no surge binary at $SURGE_BIN (cargo build --release)"
command -v wrk >/dev/null || die "wrk is needed (apt-get install wrk)"

# A fresh signing secret per run: the server refuses any secret published in the repository.
SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d " \n")
WORK=$(mktemp -d /tmp/surge-admin-list.XXXXXX)
SURGE_PID=
cleanup() {
    [ -z "$SURGE_PID" ] || kill "$SURGE_PID" 2>/dev/null || true
    [ -z "$SURGE_PID" ] || wait "$SURGE_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/done"

# `normal` only to create the items faster; the GETs read memory, not the journal.
SURGE_AUTH__JWT_SECRET=$SECRET SURGE_DATABASE__SQLITE_SYNCHRONOUS=normal "$SURGE_BIN" serve \
    --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" >"$WORK/server.log" 2>&1 &
SURGE_PID=$!
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break
    sleep 0.1
done
TOKEN=$(SURGE_AUTH__JWT_SECRET=$SECRET "$SURGE_BIN" token --user-id bench-admin --role admin)

wrk -t2 -c32 -d600s -s "$REPO_ROOT/scripts/memory/create-items.lua" "http://127.0.0.1:$PORT/" \
    -- "$WORK/done" "$TOKEN" "$N" 2 M >"$WORK/wrk.log" 2>&1 &
WRK_PID=$!
for _ in $(seq 1 1200); do
    [ "$(find "$WORK/done" -type f | wc -l)" -ge 2 ] && break
    sleep 0.5
done
kill -INT "$WRK_PID" 2>/dev/null || true
wait "$WRK_PID" 2>/dev/null || true
grep -m1 '^MEM_RESULT ' "$WORK/wrk.log" || die "wrk printed no result (see $WORK/wrk.log)"

median_ms() { # QUERY
    for _ in $(seq 1 "$ROUNDS"); do
        curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $TOKEN" \
            "http://127.0.0.1:$PORT/api/v1/admin/actors?$1"
    done | sort -n | awk '{ t[NR] = $1 } END { printf "%.1f", t[int((NR + 1) / 2)] * 1000 }'
}
echo "N=$N first page (limit=50): $(median_ms 'limit=50') ms median of $ROUNDS"
echo "N=$N filtered page after a cursor: $(median_ms \
    'kind=stock_item&status=parked&limit=50&cursor=stock_item/M-2-5000') ms median of $ROUNDS"
