#!/usr/bin/env bash
# Bounded fuzzing of foldvault's cargo-fuzz targets (for CI and for a quick local run).
#
#   fuzz/run-bounded.sh [target ...]      default: every target in fuzz/fuzz_targets/ but stubs
#
# Each target runs for FUZZ_SECONDS (default 60) seconds with libFuzzer, starting from
# fuzz/corpus/<target>/ (new inputs are written there too; git ignores all but seed-*). Prints,
# per target, executions, executions per second and coverage (libFuzzer's `cov:`, covered
# edges), and exits non-zero if any target found a crash, a leak, an OOM (above
# -rss_limit_mb=2048) or a hang (an input slower than FUZZ_TIMEOUT, default 30, seconds); the
# input is then under fuzz/artifacts/<target>/. Reproduce with
#   cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run <target> artifacts/<target>/<file>
# and add it, minimised (`cargo fuzz tmin`), as fuzz/corpus/<target>/seed-crash-<n>: then
# `cargo test --test fuzz_corpus` replays it without libFuzzer.
#
# Needs a Rust toolchain and a C++ compiler; installs cargo-fuzz (from crates.io) if missing.
# RUSTC_BOOTSTRAP=1 lets the stable toolchain build with the sanitizer flags cargo-fuzz uses.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

seconds="${FUZZ_SECONDS:-60}"
timeout="${FUZZ_TIMEOUT:-30}"
# Targets that are placeholders so far; not run by default.
stubs=" "
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz not found: installing it"
    cargo install cargo-fuzz --locked
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for f in fuzz_targets/*.rs; do
        t="$(basename "$f" .rs)"
        case "$stubs" in *" $t "*) echo "skipping $t (a stub)";; *) targets+=("$t");; esac
    done
fi

echo "building ${targets[*]}"
cargo fuzz build

mkdir -p target/run-bounded
status=0
summary=()
for t in "${targets[@]}"; do
    log="target/run-bounded/$t.log"
    mkdir -p "corpus/$t"
    echo "fuzzing $t for ${seconds}s (log: fuzz/$log)"
    rc=0
    cargo fuzz run "$t" -- -max_total_time="$seconds" -rss_limit_mb=2048 -timeout="$timeout" \
        -print_final_stats=1 >"$log" 2>&1 || rc=$?
    last="$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)"
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)"
    cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")"
    ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")"
    corp="$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")"
    line="$t: ${runs:-?} runs, ${rate:-?} exec/s, cov ${cov:-?} edges, ft ${ft:-?}, corpus ${corp:-?}"
    if [ "$rc" -ne 0 ]; then
        status=1
        line="$line -- FAILED (exit $rc)"
        echo "---- $t: last lines of the log ----"
        tail -n 60 "$log"
        ls -1 "artifacts/$t" 2>/dev/null | sed "s|^|artifact: fuzz/artifacts/$t/|" || true
    fi
    echo "$line"
    summary+=("$line")
done

echo
echo "==== fuzz summary (${seconds}s per target) ===="
printf '%s\n' "${summary[@]}"
exit "$status"
