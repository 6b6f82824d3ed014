#!/usr/bin/env bash
# `make autobahn`: Autobahn|Testsuite conformance of midge's WebSocket layer (src/ws/).
#
# Installs Autobahn's `wstest` (Python 2.7, via pyenv) when missing, builds the echo server
# example (tests/autobahn/ws_echo.rs: the broker's own handshake and frame code), starts it on a
# free 127.0.0.1 port, runs `wstest -m fuzzingclient` against it, stops it and writes
# tests/autobahn/summary.md. The full HTML report goes to tests/autobahn/reports/ (not in git).
# Exits 1 when any case FAILED.
#
# Knobs (environment): AUTOBAHN_PYTHON (python), PYENV_VERSION (2.7.18),
# AUTOBAHN_CASES (space-separated case patterns; default: the groups below).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
DIR=$ROOT/tests/autobahn
OUT=$DIR/reports
PY2=${AUTOBAHN_PYTHON:-python}
export PYENV_VERSION=${PYENV_VERSION:-2.7.18}

# Groups 1-7 (framing, pings, reserved bits, opcodes, fragmentation, UTF-8, closing) and
# 9-10 (limits/performance, auto-fragmentation). There is no group 8; 11-13 are
# permessage-deflate, which midge does not negotiate (and is not asked to).
CASES=${AUTOBAHN_CASES:-"1.* 2.* 3.* 4.* 5.* 6.* 7.* 9.* 10.*"}

if ! "$PY2" -c 'import autobahntestsuite' 2>/dev/null; then
    echo "== installing autobahntestsuite for Python $PYENV_VERSION (pinned: $DIR/constraints.txt)"
    "$PY2" -m pip install -c "$DIR/constraints.txt" autobahntestsuite
fi
WSTEST=$("$PY2" -c 'import os, sys; print(os.path.join(sys.prefix, "bin", "wstest"))')
[ -x "$WSTEST" ] || { echo "wstest not found at $WSTEST" >&2; exit 1; }
WSTEST_VERSION=$("$PY2" -c 'import autobahntestsuite; print(autobahntestsuite.__version__)')

echo "== building the echo server (release)"
cargo build --release --example ws_echo
ECHO=$ROOT/target/release/examples/ws_echo

rm -rf "$OUT"
mkdir -p "$OUT"
"$ECHO" 0 >"$OUT/echo.log" 2>&1 &
ECHO_PID=$!
trap 'kill "$ECHO_PID" 2>/dev/null || true; wait "$ECHO_PID" 2>/dev/null || true' EXIT
PORT=
for _ in $(seq 100); do
    PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$OUT/echo.log")
    [ -n "$PORT" ] && break
    kill -0 "$ECHO_PID" 2>/dev/null || { cat "$OUT/echo.log" >&2; exit 1; }
    sleep 0.1
done
[ -n "$PORT" ] || { echo "echo server did not start" >&2; exit 1; }
echo "== echo server on 127.0.0.1:$PORT"

# read -a: split on spaces without expanding the patterns against files here.
read -r -a CASE_LIST <<<"$CASES"
CASES_JSON=$(printf '"%s", ' "${CASE_LIST[@]}")
cat >"$OUT/fuzzingclient.json" <<EOF
{
  "outdir": "$OUT",
  "servers": [{"agent": "midge", "url": "ws://127.0.0.1:$PORT"}],
  "cases": [${CASES_JSON%, }],
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
EOF

echo "== wstest $WSTEST_VERSION -m fuzzingclient (cases: $CASES); group 9 takes minutes"
START=$(date +%s)
(cd "$OUT" && "$WSTEST" -m fuzzingclient -s "$OUT/fuzzingclient.json") >"$OUT/wstest.log" 2>&1 || {
    tail -30 "$OUT/wstest.log" >&2
    exit 1
}
ELAPSED=$(($(date +%s) - START))

kill "$ECHO_PID" 2>/dev/null || true
wait "$ECHO_PID" 2>/dev/null || true
trap - EXIT

# summarize.py exits 1 when a case FAILED, after writing the summary.
STATUS=0
python3 "$DIR/summarize.py" "$OUT/index.json" "$WSTEST_VERSION" "$ELAPSED" >"$DIR/summary.md" || STATUS=$?
cat "$DIR/summary.md"
echo "== full report: $OUT/index.html"
exit "$STATUS"
