#!/bin/bash
# Instructions per message, counted by callgrind: deterministic where `make bench`'s wall-clock
# figures move with whatever else the machine runs. For A/B of hot-path changes:
#   bash benches/ir/run.sh [--v5] [--qos 1] [--subscribers 100] [--messages N] [BINARY ...]
# Each binary (default: a release build of this checkout) runs under valgrind with one
# publisher and S subscribers (benches/ir/driver.py); prints Ir per delivered message.
# Needs valgrind (Debian: apt-get install valgrind). Loopback only; about 20 s per binary.
set -euo pipefail
cd "$(dirname "$0")/../.."
V5=""; QOS=0; SUBS=1; N=200000; BINS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --v5) V5="--v5" ;;
        --qos) QOS=$2; shift ;;
        --subscribers) SUBS=$2; shift ;;
        --messages) N=$2; shift ;;
        *) BINS+=("$1") ;;
    esac
    shift
done
command -v valgrind >/dev/null || { echo "valgrind is missing (apt-get install valgrind)" >&2; exit 1; }
if [ ${#BINS[@]} -eq 0 ]; then
    cargo build --release --bin midge >&2
    BINS=(target/release/midge)
fi
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
for bin in "${BINS[@]}"; do
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    ws=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" "$bin" -p "$port" --ws-port "$ws" \
        >"$OUT/broker.log" 2>&1 &
    vg=$!
    for _ in $(seq 100); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1',$port)).close()" 2>/dev/null && break
        sleep 0.1
    done
    python3 benches/ir/driver.py "$port" "$N" "$QOS" "$SUBS" $V5 >&2
    kill -TERM "$vg"; wait "$vg" || true
    total=$(callgrind_annotate "$OUT/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
    python3 -c "import sys; t=int('$total'); m=$N*$SUBS; print(f'{sys.argv[1]}: {t/m:,.0f} instructions per delivery ({t:,} for {m:,})')" "$bin"
done
