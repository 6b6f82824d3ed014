#!/usr/bin/env bash
# `make fuzz`: run each fuzz target for FUZZ_SECONDS seconds (default 60), one after another in
# one process each (the machine is shared), then print executions per target. Exits non-zero if
# any target crashed, hung or failed an invariant; the input is in fuzz/artifacts/<target>/.
#
#   make fuzz FUZZ_SECONDS=600 FUZZ_TARGETS="broker ws_frame"
#   FUZZ_SANITIZER=address make fuzz     # ASan (slower; midge itself has no unsafe code)
#   bash fuzz/run.sh --build-only         # only compile the targets (`make test` does this)
#
# New corpus entries go to fuzz/out/corpus/<target>/ (git-ignored) and are reused by the next
# run; the committed seeds in fuzz/corpus/<target>/ are only read.
set -uo pipefail
cd "$(dirname "$0")"

seconds=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-"mqtt_decode ws_frame http_upgrade broker tls_server"}
sanitizer=${FUZZ_SANITIZER:-none}
toolchain=${FUZZ_TOOLCHAIN:-nightly}

if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
    echo "fuzz: the $toolchain Rust toolchain is needed (cargo-fuzz instruments with nightly-only flags)" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz || exit 2
fi
opts=(--sanitizer "$sanitizer" --debug-assertions)

cargo "+$toolchain" fuzz build "${opts[@]}" || exit 2
if [ "${1:-}" = "--build-only" ]; then
    echo "fuzz: every target builds"
    exit 0
fi
mkdir -p out
# tls_server needs a certificate: fresh ones per run (never committed).
bash ../tests/tls/make-pki.sh out/pki >/dev/null || exit 2
export MIDGE_FUZZ_PKI="$PWD/out/pki"
status=0
summary=""
for t in $targets; do
    mkdir -p "out/corpus/$t"
    dict=()
    [ -f "dict/$t.dict" ] && dict=("-dict=dict/$t.dict")
    echo "fuzz: $t for ${seconds}s (log: fuzz/out/$t.log)"
    # -timeout: an input that runs for 10 s is a hang, reported like a crash.
    cargo "+$toolchain" fuzz run "${opts[@]}" "$t" "out/corpus/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 "${dict[@]}" >"out/$t.log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "out/$t.log" | tail -1)
    secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "out/$t.log" | tail -1)
    runs=${runs:-0}
    rate=$(( runs / ${secs:-$seconds} ))
    if [ "$rc" -eq 0 ]; then
        result="ok"
    else
        result="FAILED (exit $rc): $(grep -m1 -A1 'panicked at' "out/$t.log" | tr '\n' ' ')"
        grep -m1 'Test unit written to' "out/$t.log"
        status=1
    fi
    summary+=$(printf '%-14s %12s execs %10s exec/s  %s' "$t" "$runs" "$rate" "$result")$'\n'
done
echo
echo "target              executions       rate"
printf '%s' "$summary"
exit $status
