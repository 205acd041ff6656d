#!/bin/bash
# tools/bench/step.sh [tiny|mixtral-layer] [moec_step_bench flags: --rows 1,4,16 --context N --steps N --repeat N]
#
# The batched step's throughput (build/bin/moec_step_bench, see tools/bench/step_bench.cpp):
# compiles the model to an object (mixtral-compile --emit=obj), links it into a shared library
# the benchmark loads, and prints rows/s for 1, 4 and 16 decode rows per moec_step call next to
# moec_decode's tokens/s. `tiny` (default) is mixtral-compile --tiny (2 layers, hidden 256,
# 8 experts top-2, vocab 32000, bf16); `mixtral-layer` is run.sh's 1-layer Mixtral-shaped bf16
# checkpoint (hidden 4096, intermediate 14336, 8 experts top-2, 32/8 heads; 3.4 GB under
# build/bench/, written once).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
which=${1:-tiny}
[ $# -gt 0 ] && shift
out=$root/build/bench
compiler=$root/build/bin/mixtral-compile
bench=$root/build/tools/bench/moec_step_bench
python=$root/.venv/bin/python
[ -x "$python" ] || python=python3
for f in "$compiler" "$bench"; do
  [ -x "$f" ] || { echo "step.sh: $f does not exist; build it first (ninja -C build)" >&2; exit 1; }
done
mkdir -p "$out"
case $which in
  tiny)
    obj=$out/step-tiny.o
    "$compiler" --tiny --emit=obj -o "$obj" --max-seq-len 512
    model=$obj.model ;;
  mixtral-layer)
    model=$out/mixtral-L1-bf16
    if [ ! -f "$model/config.json" ] || [ ! -f "$model/model.safetensors" ]; then
      rm -rf "$model.tmp"
      "$python" "$root/test/reference/make_checkpoint.py" "$model.tmp" --vocab 32000 --hidden 4096 \
        --intermediate 14336 --layers 1 --heads 32 --kv-heads 8 --experts 8 --top-k 2 \
        --max-pos 32768 --dtype bf16 --seed 0
      rm -rf "$model" && mv "$model.tmp" "$model"
    fi
    obj=$out/step-mixtral-L1-bf16.o
    "$compiler" "$model" --emit=obj -o "$obj" --max-seq-len 512 ;;
  *) echo "step.sh: unknown model '$which' (tiny or mixtral-layer)" >&2; exit 2 ;;
esac
# The generated code calls the OpenMP runtime (libomp, as the binaries mixtral-compile links).
/usr/lib/llvm-22/bin/clang++ -shared -o "${obj%.o}.so" "$obj" -L/usr/lib/llvm-22/lib -lomp \
  -Wl,-rpath,/usr/lib/llvm-22/lib
"$bench" "${obj%.o}.so" "$model" "$@"
