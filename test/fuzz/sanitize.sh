#!/bin/bash
# test/fuzz/sanitize.sh [--prebuilt] — runs the runtime's unit tests built with ASan+UBSan (the
# build-fuzz/ build that test/fuzz/build.sh makes, shared with the fuzzers), then the Hugging
# Face goldens end to end with binaries from build/bin/mixtral-compile linked against that
# sanitized runtime. Exits non-zero on any failure or sanitizer report.
# --prebuilt: build-fuzz/ is already built (ctest's hostile-build fixture ran build.sh).
# Environment: CXX (default clang++-22), BUILD (default build-fuzz), MOEC_TOKENIZER_MODEL
# (default: mistral-common's tokenizer.model.v1 from .venv; without one those tests skip).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
prebuilt=0
for arg in "$@"; do
  case $arg in
    --prebuilt) prebuilt=1 ;;
    *) echo "usage: $0 [--prebuilt]" >&2; exit 2 ;;
  esac
done
source "$root/test/fuzz/env.sh"
[ $prebuilt -eq 1 ] || "$root/test/fuzz/build.sh"
echo "== ASan+UBSan runtime unit tests in $build"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
(cd "$build" && ctest --output-on-failure -j "$(nproc)")

# End to end under the sanitizers: binaries compiled by mixtral-compile but linked with the
# ASan+UBSan runtime just built, run on the Hugging Face goldens. The link goes through a
# wrapper given to --linker that swaps in the sanitized runtime files.
echo "== ASan+UBSan end-to-end (goldens) with the runtime in $build"
compiler=$root/build/bin/mixtral-compile
if [ ! -x "$compiler" ]; then
  echo "sanitize.sh: $compiler is not built" >&2
  exit 1
fi
cat > "$build/asan-link.sh" <<LINK
#!/bin/bash
args=()
for a in "\$@"; do
  case \$a in
    */moec_main.o) args+=("$build/lib/moec_main.o") ;;
    */libmoec_runtime.a) args+=("$build/lib/libmoec_runtime.a") ;;
    *) args+=("\$a") ;;
  esac
done
exec $cxx -fsanitize=address,undefined "\${args[@]}"
LINK
cat > "$build/asan-compile.sh" <<COMPILE
#!/bin/bash
exec "$compiler" "\$@" --linker "$build/asan-link.sh"
COMPILE
chmod +x "$build/asan-link.sh" "$build/asan-compile.sh"
python=$root/.venv/bin/python
[ -x "$python" ] || python=python3
"$python" "$root/test/e2e/check_goldens.py" --quick --compiler "$build/asan-compile.sh" \
  --workdir "$build/e2e-goldens" --rtol-lowp 1e-4
