#!/usr/bin/env bash
# Bounded libFuzzer runs for `make test-fuzz`: first every committed seed and regression input under
# tests/fuzz/corpus/<target>/ once, then FUZZ_SECONDS of fuzzing per target. New coverage is kept in
# the build dir's corpus (so later runs start further), never in the repository. Exits non-zero on
# the first crash, leak, sanitizer report, timeout or out-of-memory, naming the reproducer.
set -uo pipefail

build_dir=${1:?usage: run_fuzzers.sh BUILD_DIR [SECONDS] [TARGET...]}
seconds=${2:-20}
shift 2 || shift $#
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(fuzz_segment fuzz_predictor fuzz_filter fuzz_token fuzz_request)
root=$(cd "$(dirname "$0")/.." && pwd)

declare -A max_len=([fuzz_segment]=16384 [fuzz_predictor]=16384 [fuzz_filter]=2048 [fuzz_token]=8192
                    [fuzz_request]=8192)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

status=0
for target in "${targets[@]}"; do
  bin="$build_dir/tests/fuzz/$target"
  seeds="$root/tests/fuzz/corpus/$target"
  work="$build_dir/fuzz-corpus/$target"
  crashes="$build_dir/fuzz-crashes/$target"
  mkdir -p "$work" "$crashes"
  common=(-rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 -max_len="${max_len[$target]:-4096}"
          -artifact_prefix="$crashes/" -print_final_stats=0)
  echo "keel fuzz: $target: replaying $(ls "$seeds" | wc -l) committed inputs"
  if ! "$bin" "${common[@]}" -runs=0 "$seeds" >"$crashes/replay.log" 2>&1; then
    tail -n 40 "$crashes/replay.log"
    echo "keel fuzz: $target FAILED on a committed input (see above; full log $crashes/replay.log)"
    status=1
    continue
  fi
  echo "keel fuzz: $target: fuzzing for ${seconds}s"
  if ! timeout $((seconds + 60)) "$bin" "${common[@]}" -max_total_time="$seconds" "$work" "$seeds" \
      >"$crashes/run.log" 2>&1; then
    tail -n 60 "$crashes/run.log"
    echo "keel fuzz: $target FAILED: reproducer in $crashes/ (re-run: $bin <file>); fix it, then commit"
    echo "           the file to tests/fuzz/corpus/$target/ as a regression seed"
    status=1
    continue
  fi
  grep -E "^(#[0-9]+\s+DONE|Done)" "$crashes/run.log" | tail -n 1
done
exit $status
