#!/usr/bin/env bash
# prepare.sh — build, on a machine without a GPU, everything run.sh needs on a GPU machine.
#
#   tools/gpu-check/prepare.sh [BUNDLE_DIR (default build/gpu-check)] [--gpu sm_90]
#
# The bundle (< 60 MB, carried to the GPU machine) holds:
#   tiny, tiny.model/          the built-in model (mixtral-compile --tiny --target nvptx)
#   goldens/<name>/            each test/goldens checkpoint compiled for nvptx + its weights,
#                              goldens.json and expected.json (HF's last-prompt-position logits)
#   bench/model.out, config.json   a Mixtral-shaped layer (D 4096, F 14336, 8 experts top-2,
#                              32/8 heads, V 32000); weights are generated on the GPU machine
#   make_checkpoint            writes those weights (random bf16, ~3.5 GB)
#   lib/                       the shared libraries the binaries need beyond libc/libstdc++
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:-$ROOT/build/gpu-check}
GPU=sm_90
[[ "${2:-}" == "--gpu" ]] && GPU=$3
COMPILE=$ROOT/build/bin/mixtral-compile
PY=$ROOT/.venv/bin/python
[[ -x $PY ]] || PY=python3

ninja -C "$ROOT/build" mixtral-compile moec_runtime_artifacts >/dev/null
rm -rf "$OUT" && mkdir -p "$OUT/goldens" "$OUT/bench" "$OUT/lib"

echo "[prepare] built-in tiny model ($GPU)"
"$COMPILE" --tiny -o "$OUT/tiny" --target nvptx --gpu "$GPU"

for dir in "$ROOT"/test/goldens/*/; do
  name=$(basename "$dir")
  echo "[prepare] golden $name"
  mkdir -p "$OUT/goldens/$name"
  cp "$dir/config.json" "$dir/model.safetensors" "$dir/goldens.json" "$OUT/goldens/$name/"
  "$COMPILE" "$dir" -o "$OUT/goldens/$name/model.out" --target nvptx --gpu "$GPU" --max-seq-len 64
  # Expected logits of the last prompt position, as JSON (run.sh needs no numpy).
  "$PY" - "$dir" "$OUT/goldens/$name/expected.json" <<'PYEOF'
import json, sys, numpy as np
d, out = sys.argv[1], sys.argv[2]
meta = json.load(open(d + "/goldens.json"))
arrays = np.load(d + "/logits.npz")
cases = []
for i, c in enumerate(meta["cases"]):
    n = len(c["prompt_ids"])
    cases.append({"name": c["name"], "prompt_ids": c["prompt_ids"], "greedy_ids": c["greedy_ids"],
                  "logits": [float(x) for x in arrays[f"p{i}"][n - 1]]})
json.dump({"checkpoint_dtype": meta["checkpoint_dtype"], "cases": cases}, open(out, "w"))
PYEOF
done

echo "[prepare] Mixtral-shaped benchmark layer ($GPU)"
"$PY" "$ROOT/test/Codegen/GPU/Inputs/mixtral_header_only.py" "$OUT/bench.tmp" --layers 1
"$COMPILE" "$OUT/bench.tmp" -o "$OUT/bench/model.out" --target nvptx --gpu "$GPU" --max-seq-len 4096
cp "$OUT/bench.tmp/config.json" "$OUT/bench/"
rm -rf "$OUT/bench.tmp"
# A tokenizer for the bench model is not needed (--bench uses random ids).

echo "[prepare] checkpoint generator"
"${CXX:-clang++-22}" -O2 -std=c++17 -static-libstdc++ -static-libgcc \
  -o "$OUT/make_checkpoint" "$ROOT/tools/gpu-check/make_checkpoint.cpp"

echo "[prepare] shared libraries"
ldd "$OUT/tiny" | awk '/=> \// {print $3}' | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libgcc_s.so*|libstdc++.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*) ;;
    *) cp -L "$lib" "$OUT/lib/" ;;
  esac
done
cp "$ROOT/tools/gpu-check/run.sh" "$ROOT/tools/gpu-check/check_goldens.py" "$OUT/"
du -sh "$OUT"
size=$(du -sm "$OUT" | cut -f1)
if (( size >= 60 )); then echo "[prepare] bundle is ${size} MB, over the 60 MB carry budget" >&2; exit 1; fi
echo "[prepare] done: $OUT (${size} MB)"
