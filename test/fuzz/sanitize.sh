#!/bin/bash
# test/fuzz/sanitize.sh — builds the runtime and its unit tests with ASan+UBSan (standalone
# runtime build in build-asan/, clang), runs them, then runs the Hugging Face goldens end to end
# with binaries from build/bin/mixtral-compile linked against that sanitized runtime.
# Exits non-zero on any failure or sanitizer report.
# Environment: CXX (default clang++-22), BUILD (default build-asan), MOEC_TOKENIZER_MODEL
# (default: mistral-common's tokenizer.model.v1 from .venv; without one those tests skip).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cxx=${CXX:-clang++-22}
build=${BUILD:-$root/build-asan}
if [ -z "${MOEC_TOKENIZER_MODEL:-}" ] && [ -x "$root/.venv/bin/python" ]; then
  MOEC_TOKENIZER_MODEL=$("$root/.venv/bin/python" -c \
    "import mistral_common, os; print(os.path.dirname(mistral_common.__file__) + '/data/tokenizer.model.v1')" \
    2>/dev/null || true)
fi
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
echo "== ASan+UBSan runtime unit tests in $build ($cxx)"
cmake -S "$root/runtime" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_CXX_FLAGS="$san" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DMOEC_TOKENIZER_MODEL="${MOEC_TOKENIZER_MODEL:-}" >/dev/null
ninja -C "$build" >/dev/null
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
(cd "$build" && ctest --output-on-failure)

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
