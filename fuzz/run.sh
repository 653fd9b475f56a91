#!/usr/bin/env bash
# Run seawall's fuzz targets one after the other, each for SECONDS, and
# print one line per target: executions, and crashes (docs/proxy/fuzzing.md).
#
#   fuzz/run.sh SECONDS [TARGET...]      (default: every target)
#
# Each target runs on its working corpus, fuzz/corpus/<target>/ (not checked
# in), seeded from fuzz/seeds/<target>/ (checked in); what it finds goes to
# fuzz/artifacts/<target>/, its log to fuzz/artifacts/<target>.log. Exits 1
# if any target crashed (the others still run).
#
# Environment: CARGO_FUZZ (the cargo-fuzz binary, default: the one on PATH or
# in ~/.cargo/bin), FUZZ_TOOLCHAIN (default nightly), FUZZ_ARGS (more
# libFuzzer flags, e.g. FUZZ_ARGS=-jobs=2).
set -euo pipefail

seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(request_head trace_context spec_json response_head connect_head otlp_decode)
fi
cargo_fuzz=${CARGO_FUZZ:-$(command -v cargo-fuzz || echo "$HOME/.cargo/bin/cargo-fuzz")}
export RUSTUP_TOOLCHAIN=${FUZZ_TOOLCHAIN:-nightly}

# The largest input worth trying, per target: past the limits in
# data/request-spec.json (a 2 KiB head) for heads; a spec document, or an
# OTLP body of a few spans, is larger.
max_len() {
    case $1 in
        spec_json | otlp_decode) echo 16384 ;;
        trace_context) echo 2048 ;;
        *) echo 4096 ;;
    esac
}

# One build for every target (release with debug assertions and ASan: the
# cargo-fuzz defaults), so that the runs below measure fuzzing only.
mkdir -p fuzz/artifacts
start=$(date +%s)
if ! "$cargo_fuzz" fuzz build >fuzz/artifacts/build.log 2>&1; then
    cat fuzz/artifacts/build.log >&2
    exit 1
fi
echo "fuzz build: $(($(date +%s) - start)) s"

failed=0
summary=()
for target in "${targets[@]}"; do
    corpus=fuzz/corpus/$target
    mkdir -p "$corpus" "fuzz/artifacts/$target"
    cp -n fuzz/seeds/"$target"/* "$corpus"/ 2>/dev/null || true
    dict=()
    if [ -f "fuzz/dict/$target.dict" ]; then
        dict=("-dict=fuzz/dict/$target.dict")
    fi
    log=fuzz/artifacts/$target.log
    # -rss_limit_mb / -malloc_limit_mb: an input that makes the process
    # grow past 2 GiB, or ask for 128 MiB at once, is a crash (unbounded
    # allocation); -timeout: one input running 10 s is a crash (a hang).
    set +e
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    "$cargo_fuzz" fuzz run "$target" "$corpus" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=128 \
        -timeout=10 -max_len="$(max_len "$target")" -print_final_stats=1 \
        "${dict[@]}" ${FUZZ_ARGS:-} >"$log" 2>&1
    status=$?
    set -e
    execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' || true)
    crashes=$(grep -c '^artifact_prefix=.*Test unit written to' "$log" || true)
    if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        crashes=1 # died without writing an input (see the log)
    fi
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    rss=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    line="$target: ${execs:-?} execs (${rate:-?}/s), $crashes crashes, peak rss ${rss:-?} MB, corpus $(find "$corpus" -type f | wc -l) inputs"
    if [ "$crashes" -ne 0 ]; then
        failed=1
        line="$line  <- see $log"
        grep -E 'panicked at|^(thread|SUMMARY|==[0-9]+== ERROR)|Test unit written to' "$log" | head -8 | sed 's/^/    /' >&2
    fi
    echo "$line"
    summary+=("$line")
done
echo "--- fuzz summary (${seconds} s per target)"
printf '%s\n' "${summary[@]}"
exit "$failed"
