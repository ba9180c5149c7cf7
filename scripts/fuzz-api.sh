#!/usr/bin/env bash
# Contract fuzzing: runs schemathesis (property-based tests generated from GET /openapi.json)
# against a fresh surge server, as an admin, and prints its summary.
#
# It starts the server (SURGE_BIN, or a debug build it makes) on a temp data dir, mints an admin
# token with `surge token`, installs schemathesis into a virtualenv when `st` is not on PATH,
# and runs every operation but the WebSocket and the console page. A server panic (a dropped connection) or a
# 5xx shows as a failure; so do answers the document does not describe. Some failures are the
# API's business rules seen by a tool that does not know them (an Idempotency-Key reused with
# another body, a cursor that was never issued, a delta of 0): read them, do not silence them.
# The server's log is kept when the run fails.
#
# Usage: scripts/fuzz-api.sh [KEY=VALUE ...]   (the same keys can be set in the environment)
#   SURGE_BIN=                a surge binary (default: target/debug/surge, built if missing)
#   PORT=18555                surge listens on 127.0.0.1:$PORT
#   MAX_TIME_SECS=240         schemathesis's time budget
#   EXAMPLES=30               examples per operation and phase
#   SEED=                     a schemathesis seed, to repeat a run
set -euo pipefail

die() {
    echo "fuzz-api: $*" >&2
    exit 2
}

REPO_ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$REPO_ROOT/scripts/lib.sh"
settings_from_args "$0" " SURGE_BIN PORT MAX_TIME_SECS EXAMPLES SEED " "$@"

PORT=${PORT:-18555}
MAX_TIME_SECS=${MAX_TIME_SECS:-240}
EXAMPLES=${EXAMPLES:-30}
SEED=${SEED:-}
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_ROOT/target}
if [ -z "${SURGE_BIN:-}" ]; then
    SURGE_BIN=$TARGET_DIR/debug/surge
    [ -x "$SURGE_BIN" ] || (cd "$REPO_ROOT" && cargo build --bin surge)
fi
[ -x "$SURGE_BIN" ] || die "no surge binary at $SURGE_BIN"
# schemathesis from PATH, else from a virtualenv of its own (a system Python may refuse pip).
ST=$(command -v st || true)
if [ -z "$ST" ]; then
    VENV=${XDG_CACHE_HOME:-$HOME/.cache}/surge/schemathesis-venv
    if [ ! -x "$VENV/bin/st" ]; then
        python3 -m venv "$VENV" || die "could not make a virtualenv at $VENV"
        "$VENV/bin/pip" install --quiet schemathesis || die "could not install schemathesis"
    fi
    ST=$VENV/bin/st
fi

WORK=$(mktemp -d /tmp/surge-fuzz.XXXXXX)
# A fresh signing secret per run: the server refuses any secret published in the repository.
SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d " \n")
SURGE_PID=
cleanup() {
    local rc=$?
    [ -z "$SURGE_PID" ] || kill "$SURGE_PID" 2>/dev/null || true
    [ -z "$SURGE_PID" ] || wait "$SURGE_PID" 2>/dev/null || true
    if [ "$rc" -eq 0 ]; then rm -rf "$WORK"; else echo "server log kept: $WORK/server.log" >&2; fi
    exit "$rc"
}
trap cleanup EXIT

SURGE_AUTH__JWT_SECRET=$SECRET "$SURGE_BIN" serve --listen "127.0.0.1:$PORT" \
    --data-dir "$WORK/data" >"$WORK/server.log" 2>&1 &
SURGE_PID=$!
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break
    sleep 0.1
done
curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null || die "surge did not become ready"
TOKEN=$(SURGE_AUTH__JWT_SECRET=$SECRET "$SURGE_BIN" token --user-id fuzz-admin --role admin)

args=(run "http://127.0.0.1:$PORT/openapi.json" --url "http://127.0.0.1:$PORT/api/v1"
    -H "Authorization: Bearer $TOKEN" --exclude-path /ws --exclude-path /admin
    -n "$EXAMPLES" --workers 2 --max-time "$MAX_TIME_SECS" --continue-on-failure)
[ -z "$SEED" ] || args+=(--seed "$SEED")
status=0
# From the temp dir, where schemathesis leaves its cache.
(cd "$WORK" && "$ST" "${args[@]}") || status=$?
if grep -q 'panicked' "$WORK/server.log"; then
    echo "fuzz-api: the server panicked:" >&2
    grep -A3 'panicked' "$WORK/server.log" | head -40 >&2
    exit 1
fi
exit "$status"
