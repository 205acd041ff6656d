#!/bin/bash
# test/fuzz/run.sh [SECONDS] [--unit-tests] [--prebuilt]
#
# Builds the libFuzzer targets of test/fuzz (build.sh: clang, -fsanitize=fuzzer,address,undefined)
# in build-fuzz/, then runs each for SECONDS (default 36), starting from
# the committed seeds in test/fuzz/corpus/<target>/ (new inputs go to build-fuzz/corpus/<target>/,
# never into the repository). Prints executions per target; exits 1 if any target crashed,
# leaked, tripped a sanitizer or timed out (the reproducer is left in build-fuzz/artifacts/).
# --unit-tests: afterwards also runs the runtime unit tests under ASan+UBSan (sanitize.sh).
# --prebuilt: build-fuzz/ is already built (ctest's hostile-build fixture ran build.sh).
#
# Environment: CXX (default clang++-22), MOEC_TOKENIZER_MODEL (default: mistral-common's
# tokenizer.model.v1 from .venv), BUILD (default build-fuzz).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
seconds=36
unit_tests=0
prebuilt=0
for arg in "$@"; do
  case $arg in
    --unit-tests) unit_tests=1 ;;
    --prebuilt) prebuilt=1 ;;
    ''|*[!0-9]*) echo "usage: $0 [SECONDS] [--unit-tests] [--prebuilt]" >&2; exit 2 ;;
    *) seconds=$arg ;;
  esac
done
source "$root/test/fuzz/env.sh"
if [ -z "${MOEC_TOKENIZER_MODEL:-}" ] || [ ! -f "$MOEC_TOKENIZER_MODEL" ]; then
  echo "run.sh: set MOEC_TOKENIZER_MODEL to a Mixtral tokenizer.model (fuzz_tokenizer needs it)" >&2
  exit 2
fi
[ $prebuilt -eq 1 ] || "$root/test/fuzz/build.sh"

# Sanitizer settings: fail on the first report, leaks included.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

status=0
summary=""
mkdir -p "$build/artifacts" "$build/logs"
for target in safetensors index config manifest tokenizer model; do
  if [ ! -x "$build/fuzz_$target" ]; then
    # Only fuzz_model can be missing (it needs build/bin/mixtral-compile): a broken setup.
    echo "fuzz: $build/fuzz_$target was not built (is $root/build/bin/mixtral-compile there?)" >&2
    exit 1
  fi
  # fuzz_model's inputs are edit lists: let them be long from the start.
  extra=()
  [ "$target" = model ] && extra=(-len_control=0 -max_len=4096)
  work="$build/corpus/$target"
  mkdir -p "$work"
  log="$build/logs/$target.log"
  echo "== fuzz_$target for ${seconds}s (log: $log)"
  set +e
  "$build/fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
    -max_len=65536 "${extra[@]}" -print_final_stats=1 -artifact_prefix="$build/artifacts/$target-" \
    "$work" "$root/test/fuzz/corpus/$target" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
  if [ $rc -eq 0 ]; then
    result=ok
  else
    result="FAILED (exit $rc; see $log and $build/artifacts/)"
    status=1
    grep -m5 -E 'ERROR|runtime error|SUMMARY|deadly signal|Test unit written' "$log" >&2 || true
  fi
  line=$(printf '%-12s %4ss  %10s execs  %8s exec/s  %-10s %s' "$target" "$seconds" \
    "${execs:-?}" "${rate:-?}" "${cov:-}" "$result")
  echo "$line"
  summary+="$line"$'\n'
done
echo "== summary"
printf '%s' "$summary"

if [ $unit_tests -eq 1 ]; then
  "$root/test/fuzz/sanitize.sh" --prebuilt || status=1
fi
exit $status
