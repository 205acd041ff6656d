#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine for moec and builds it; safe to run again.
#   bash tools/setup.sh            install, build, then compile the built-in model and generate text
#   bash tools/setup.sh --no-run   install and build only (what the test command uses)
# Needs root (or sudo) for apt-get. Everything else stays inside the checkout: build/ and .venv/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUN_MAIN=1
[ "${1:-}" = "--no-run" ] && RUN_MAIN=0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

APT_PACKAGES=(
  llvm-22-dev libmlir-22-dev mlir-22-tools llvm-22-tools clang-22 lld-22 libomp-22-dev
  cmake ninja-build ccache python3-venv
  libsentencepiece-dev nlohmann-json3-dev libgtest-dev libbenchmark-dev
  libcpp-httplib-dev libedit-dev
  libopenblas-dev
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Python: numpy + safetensors for the reference model and test drivers, the official openai
# client for the server's end-to-end test (test/e2e/check_serve.py); the real Mixtral
# tokenizer ships inside mistral-common (only its data file is used, so no dependencies).
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import numpy, safetensors, sentencepiece, mistral_common, openai" 2>/dev/null; then
  .venv/bin/pip install -q --disable-pip-version-check numpy safetensors sentencepiece openai
  .venv/bin/pip install -q --disable-pip-version-check --no-deps mistral-common
fi
TOKENIZER=$(.venv/bin/python -c "import mistral_common, os; print(os.path.join(os.path.dirname(mistral_common.__file__), 'data', 'tokenizer.model.v1'))")
[ -f "$TOKENIZER" ] || { echo "setup: tokenizer.model.v1 not found in mistral-common" >&2; exit 1; }

LLVM=/usr/lib/llvm-22
if [ ! -f build/build.ninja ]; then
  cmake -S . -B build -G Ninja \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_COMPILER=$LLVM/bin/clang -DCMAKE_CXX_COMPILER=$LLVM/bin/clang++ \
    -DLLVM_USE_LINKER=lld -DMLIR_DIR=$LLVM/lib/cmake/mlir \
    -DMOEC_TOKENIZER_MODEL="$TOKENIZER" >/dev/null
fi
cmake --build build -j "$(nproc)"

[ $RUN_MAIN -eq 1 ] || exit 0

# The main job: compile the built-in tiny Mixtral and generate text with it.
if [ -x build/bin/mixtral-compile ]; then
  # --tiny refuses a folder it did not mark as its own; one from an older build has no marker.
  [ -f build/tiny-mixtral.model/.mixtral-compile-tiny ] || rm -rf build/tiny-mixtral.model
  build/bin/mixtral-compile --tiny -o build/tiny-mixtral
  build/tiny-mixtral --prompt "The capital of France is" -n 32 --seed 1
else
  echo "setup: mixtral-compile is not built yet; showing the MoE block decomposition instead" >&2
  build/bin/moe-opt --moe-decompose-sparse-block test/Passes/moe-decompose-sparse-block.mlir -split-input-file
fi
