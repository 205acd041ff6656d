#!/usr/bin/env bash
# prepare.sh — build, on a machine without a GPU, everything run.sh needs on a GPU machine.
#
#   tools/gpu-check/prepare.sh [BUNDLE_DIR (default build/gpu-check)] [--gpu sm_90] [--no-bench]
#
# --no-bench leaves out the benchmark binaries (run.sh --no-bench never reads them).
# The bundle (< 60 MB, carried to the GPU machine) holds:
#   tiny, tiny.model/          the built-in model (mixtral-compile --tiny --target nvptx): its
#                              config and tokenizer; the weights (46 MB of random bf16) are
#                              written on the GPU machine by make_checkpoint, like bench's
#   goldens/<name>/            each test/goldens checkpoint compiled for nvptx + its weights,
#                              goldens.json and expected.json (greedy ids and every step's
#                              logits: the reference's GPU model and HF's)
#   goldens/<name>-q8|q4/      mixtral_e4k2_bf16 compiled --quantize q8|q4 (model.out and its
#                              packed model.out.weights); expected.json from the reference
#                              on the same quantized weights (as e2e-quant-ptxemu checks)
#   bench/model.out, config.json   a Mixtral-shaped layer (D 4096, F 14336, 8 experts top-2,
#                              32/8 heads, V 32000); weights are generated on the GPU machine
#   bench/q8|q4/model.out, manifest.json   the same layer compiled --quantize q8|q4, without
#                              its packed file (~1-2 GB): run.sh packs the generated weights
#                              there (pack_weights, with the manifest's fingerprint)
#   make_checkpoint            writes those weights (random bf16, ~3.5 GB)
#   pack_weights               the compiler's packer (moec/checkpoint/pack.h), static
#   lib/                       the shared libraries the binaries need beyond libc/libstdc++
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:-$ROOT/build/gpu-check}
GPU=sm_90
BENCH=1
shift $(( $# > 0 ))
while (( $# )); do
  case $1 in
    --gpu) GPU=$2; shift 2 ;;
    --no-bench) BENCH=0; shift ;;
    *) echo "prepare.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
COMPILE=$ROOT/build/bin/mixtral-compile
PY=$ROOT/.venv/bin/python
[[ -x $PY ]] || PY=python3

ninja -C "$ROOT/build" mixtral-compile moec_runtime_artifacts gpu-check-pack >/dev/null
rm -rf "$OUT" && mkdir -p "$OUT/goldens" "$OUT/bench" "$OUT/lib"

echo "[prepare] built-in tiny model ($GPU)"
"$COMPILE" --tiny -o "$OUT/tiny" --target nvptx --gpu "$GPU"
rm "$OUT/tiny.model/model.safetensors" # run.sh writes same-shaped weights (make_checkpoint)

# Every golden in its checkpoint's dtype, then q8 and q4 of one whose hidden and intermediate
# sizes are multiples of the group (32), so that every projection and expert is quantized.
GOLDENS=()
for dir in "$ROOT"/test/goldens/*/; do GOLDENS+=("$(basename "$dir") $dir -"); done
for q in q8 q4; do GOLDENS+=("mixtral_e4k2_bf16-$q $ROOT/test/goldens/mixtral_e4k2_bf16 $q"); done
for entry in "${GOLDENS[@]}"; do
  read -r name dir quant <<<"$entry"
  echo "[prepare] golden $name"
  mkdir -p "$OUT/goldens/$name"
  cp "$dir/config.json" "$dir/goldens.json" "$OUT/goldens/$name/"
  if [[ $quant == - ]]; then
    cp "$dir/model.safetensors" "$OUT/goldens/$name/"
    "$COMPILE" "$dir" -o "$OUT/goldens/$name/model.out" --target nvptx --gpu "$GPU" --max-seq-len 64
  else # the binary maps model.out.weights (beside it) and reads no checkpoint
    "$COMPILE" "$dir" -o "$OUT/goldens/$name/model.out" --target nvptx --gpu "$GPU" --max-seq-len 64 \
      --quantize "$quant"
  fi
  # Expected greedy ids and per-step logits, as JSON (run.sh needs no numpy): the numpy
  # reference's model of the GPU target (bf16 operands in every step GEMM, lm_head too; a
  # quantized build's weights as its quantize -> dequantize image), and HF's f32 (unquantized).
  "$PY" - "$ROOT/test/reference" "$dir" "$OUT/goldens/$name/expected.json" "$quant" <<'PYEOF'
import json, sys, numpy as np
sys.path.insert(0, sys.argv[1])
import mixtral_ref
d, out, quant = sys.argv[2], sys.argv[3], sys.argv[4]
meta = json.load(open(d + "/goldens.json"))
arrays = np.load(d + "/logits.npz")
model = mixtral_ref.load_model(d, quantize=None if quant == "-" else quant)
model.gemm_bf16_all = True  # the GPU step: bf16 operands in every GEMM, lm_head too
rows = lambda a: [[float(x) for x in r] for r in a]
cases = []
for c in meta["cases"]:
    ids, steps = mixtral_ref.greedy_steps(model, c["prompt_ids"], len(c["greedy_ids"]))
    cases.append({"name": c["name"], "prompt_ids": c["prompt_ids"], "greedy_ids": ids,
                  "steps": rows(steps), "hf_greedy_ids": c["greedy_ids"],
                  "hf_steps": rows(arrays[c["name"] + "_steps"])})
json.dump({"checkpoint_dtype": meta["checkpoint_dtype"], "vocab_size": model.vocab,
           "cases": cases}, open(out, "w"))
PYEOF
done

if (( BENCH )); then
  echo "[prepare] Mixtral-shaped benchmark layer ($GPU)"
  "$PY" "$ROOT/test/Codegen/GPU/Inputs/mixtral_header_only.py" "$OUT/bench.tmp" --layers 1
  "$COMPILE" "$OUT/bench.tmp" -o "$OUT/bench/model.out" --target nvptx --gpu "$GPU" --max-seq-len 4096
  cp "$OUT/bench.tmp/config.json" "$OUT/bench/"
  # The same layer with the warpgroup GEMMs (wgmma, sm_90a only): run.sh measures its prefill
  # beside the mma.sync one in the same lease.
  if [[ $GPU != sm_90a ]]; then
    echo "[prepare] Mixtral-shaped benchmark layer (sm_90a: wgmma GEMMs)"
    mkdir -p "$OUT/bench/sm_90a"
    "$COMPILE" "$OUT/bench.tmp" -o "$OUT/bench/sm_90a/model.out" --target nvptx --gpu sm_90a --max-seq-len 4096
  fi
  # Quantized: the compile packs the header-only checkpoint's zeros (its file is sparse) into
  # a 1-2 GB model.out.weights that is of no use there; only the binary and its manifest go.
  for q in q8 q4; do
    echo "[prepare] Mixtral-shaped benchmark layer, --quantize $q ($GPU)"
    mkdir -p "$OUT/bench/$q"
    "$COMPILE" "$OUT/bench.tmp" -o "$OUT/bench/$q/model.out" --target nvptx --gpu "$GPU" \
      --max-seq-len 4096 --quantize "$q"
    rm "$OUT/bench/$q/model.out.weights"
    "$PY" "$ROOT/tools/gpu-check/extract_manifest.py" "$OUT/bench/$q/model.out" "$OUT/bench/$q/manifest.json"
  done
  rm -rf "$OUT/bench.tmp"
  # A tokenizer for the bench model is not needed (--bench uses random ids).
fi

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
cp "$ROOT/build/tools/gpu-check/gpu-check-pack" "$OUT/pack_weights"
# Symbol tables are ~120 KB of each binary and nothing on the GPU machine reads them: the
# bundle stays under its budget.
strip "$OUT/tiny" "$OUT"/goldens/*/model.out "$OUT/pack_weights"
if (( BENCH )); then
  strip "$OUT/bench/model.out" "$OUT"/bench/q*/model.out
  if [[ -f $OUT/bench/sm_90a/model.out ]]; then strip "$OUT/bench/sm_90a/model.out"; fi
fi
du -sh "$OUT"
size=$(du -sm "$OUT" | cut -f1)
if (( size >= 60 )); then echo "[prepare] bundle is ${size} MB, over the 60 MB carry budget" >&2; exit 1; fi
echo "[prepare] done: $OUT (${size} MB)"
