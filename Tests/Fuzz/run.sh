#!/usr/bin/env bash
# `make fuzz`: runs each libFuzzer target of .build-fuzz/release/airlock-fuzz for FUZZ_SECONDS.
# Usage: Tests/Fuzz/run.sh TARGET...   (environment: FUZZ_SECONDS, FUZZ_TIMEOUT, FUZZ_ARGS)
#
# Tests/Fuzz/Dictionaries/<target>.dict, when present, gives libFuzzer the format's tokens.
# The committed corpus (Tests/Fuzz/Corpus/<target>) seeds a working copy in .build-fuzz/corpus/<target>, which keeps
# growing from run to run without touching the tree. Crashes, timeouts and out-of-memory inputs go to
# .build-fuzz/artifacts/<target>/; full logs to .build-fuzz/logs/<target>.log. Exits 1 when any target failed.
set -u
cd "$(dirname "$0")/../.."

BIN=.build-fuzz/release/airlock-fuzz
SECONDS_PER_TARGET=${FUZZ_SECONDS:-20}
TIMEOUT=${FUZZ_TIMEOUT:-10}
[ -x "$BIN" ] || { echo "fuzz: $BIN is missing (make fuzz builds it)" >&2; exit 2; }
[ $# -gt 0 ] || { echo "usage: $0 TARGET..." >&2; exit 2; }

# Swift's backtracer hangs after a crash under ASan; libFuzzer and ASan report crashes themselves.
export SWIFT_BACKTRACE=enable=no
failed=()
for target in "$@"; do
    corpus=.build-fuzz/corpus/$target
    artifacts=.build-fuzz/artifacts/$target
    log=.build-fuzz/logs/$target.log
    mkdir -p "$corpus" "$artifacts" .build-fuzz/logs
    cp -n Tests/Fuzz/Corpus/"$target"/* "$corpus"/ 2>/dev/null
    before=$(find "$artifacts" -type f | wc -l)
    dict=()
    [ -f Tests/Fuzz/Dictionaries/"$target".dict ] && dict=(-dict=Tests/Fuzz/Dictionaries/"$target".dict)
    # shellcheck disable=SC2086
    AIRLOCK_FUZZ_TARGET=$target "$BIN" "$corpus" \
        -max_total_time="$SECONDS_PER_TARGET" -max_len=65536 -rss_limit_mb=2048 -timeout="$TIMEOUT" \
        -print_final_stats=1 -artifact_prefix="$artifacts/" "${dict[@]}" ${FUZZ_ARGS:-} >"$log" 2>&1
    status=$?
    after=$(find "$artifacts" -type f | wc -l)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    files=$(find "$corpus" -type f | wc -l)
    if [ "$status" -ne 0 ] || [ "$after" -gt "$before" ]; then
        failed+=("$target")
        verdict="FAILED (exit $status): $(grep -m1 -E 'ERROR:|SUMMARY:|Fatal error|Test unit written' "$log" | cut -c1-160)"
    else
        verdict="ok"
    fi
    printf 'fuzz %-11s %10s execs %7s/s  cov %5s  ft %6s  corpus %5s  %s\n' \
        "$target" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$files" "$verdict"
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: ${failed[*]} failed; inputs in .build-fuzz/artifacts/, logs in .build-fuzz/logs/." >&2
    echo "fuzz: reproduce with AIRLOCK_FUZZ_TARGET=<target> SWIFT_BACKTRACE=enable=no $BIN <artifact>" >&2
    exit 1
fi
