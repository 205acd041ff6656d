#!/usr/bin/env bash
# run.sh — the GPU check, for a machine with an NVIDIA GPU and driver (H200: ~6 minutes).
#
#   BUNDLE/run.sh [BUNDLE_DIR] [--no-bench]   (BUNDLE_DIR from prepare.sh; default: this
#                                             script's folder)
#
# Without a GPU, `MOEC_CUDA_DRIVER=build/test/gpu-emu/libmoec_ptxemu.so run.sh DIR --no-bench`
# runs steps 1-2 in the PTX interpreter (the ctest entry gpu-check-dry-run does).
#
# 1. smoke: the built-in tiny model generates 8 tokens (prefill + decode paths).
# 2. goldens: every test/goldens checkpoint, greedy ids and every step's logits against the
#    reference's model of the GPU target (bf16 step GEMMs, lm_head too) on HF's checkpoints.
# 3. bench: a Mixtral-shaped layer (weights generated here): decode tok/s and its ratio to
#    the HBM roofline (H200 4.8 TB/s), prefill TFLOP/s against bf16 dense peak (989 TFLOP/s).
#    Prefill is measured as the difference of two prompt lengths, which cancels the one-time
#    costs inside the first call (weight upload, PTX JIT).
#    With bench/sm_90a (prepare.sh builds it unless --gpu sm_90a): the same two prefills with
#    the warpgroup (wgmma) GEMMs, a third RESULT line beside the mma.sync one. The bench
#    also decodes 16 tokens again in alternating rounds with CUDA graphs on and off: "RESULT decode CUDA graphs
#    on/off" (ms per token, the ratio, host launch calls per token; runtime/README.md).
# 4. bench q8, q4: the same layer quantized (its packed file written here from the same
#    weights by pack_weights): decode tok/s against the HBM roofline of the quantized bytes.
set -uo pipefail
BENCH=1
ARGS=()
for a in "$@"; do [[ $a == --no-bench ]] && BENCH=0 || ARGS+=("$a"); done
B=$(cd "${ARGS[0]:-$(dirname "$0")}" && pwd)
export LD_LIBRARY_PATH="$B/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
HBM_GBS=${HBM_GBS:-4800}
PEAK_TFLOPS=${PEAK_TFLOPS:-989}
CKPT=${CKPT_DIR:-/tmp/moec-bench}
status=0

nvidia-smi -L 2>/dev/null || echo "(nvidia-smi not found)"
# The weights take a while to write: start now, in the background.
if (( BENCH )); then
  mkdir -p "$CKPT" && cp "$B/bench/config.json" "$CKPT/"
  ( "$B/make_checkpoint" "$CKPT" 32000 4096 14336 1 32 8 8 > "$CKPT/make.log" 2>&1 ) &
  maker=$!
fi

echo "== smoke: tiny model"
# Its weights are not carried (46 MB of the bundle's budget): same shapes, made here.
"$B/make_checkpoint" "$B/tiny.model" 32000 256 512 2 8 4 8 >/dev/null || { echo "FAIL smoke: weights"; status=1; }
# MOEC_SMOKE_TIMEOUT: seconds (default 120; the PTX interpreter on a busy machine needs more).
if ! timeout "${MOEC_SMOKE_TIMEOUT:-120}" "$B/tiny" --model "$B/tiny.model" --prompt-ids 1,415,2936 -n 8 --temperature 0 --print-ids; then
  echo "FAIL smoke"; status=1
fi

echo "== goldens"
timeout 300 python3 "$B/check_goldens.py" "$B" || status=1

(( BENCH )) || exit $status
echo "== bench: Mixtral-shaped layer"
wait $maker || { cat "$CKPT/make.log"; echo "FAIL checkpoint"; exit 1; }
cat "$CKPT/make.log"
run_bench() { timeout 240 "${BIN:-$B/bench/model.out}" --model "$CKPT" --bench --bench-prompt "$1" --bench-decode 64 --bench-buffer-mib 256; }
out1=$(run_bench 512) || { echo "$out1"; echo "FAIL bench"; exit 1; }
echo "$out1"
out2=$(run_bench 2048) || { echo "$out2"; echo "FAIL bench"; exit 1; }
echo "$out2"
parse() { awk -v key="$2" '$1 == key { for (i = 1; i <= NF; ++i) if ($i == "in") { print $(i+1); exit } }' <<<"$1"; }
p1=$(parse "$out1" prefill:); p2=$(parse "$out2" prefill:)
tps=$(awk '/^decode:/ { for (i = 1; i <= NF; ++i) if ($i == "tok/s;") { print $(i-1); exit } }' <<<"$out2")
gb=$(awk '/^decode:/ { for (i = 1; i <= NF; ++i) if ($i == "token") { print $(i+1); exit } }' <<<"$out2")
# Prefill FLOPs per token of this layer + lm_head (2 per weight of the active path) and the
# attention score/value FLOPs (4 * T * D per token at average context T/2, causal).
awk -v p1="$p1" -v p2="$p2" -v tps="$tps" -v gb="$gb" -v hbm="$HBM_GBS" -v peak="$PEAK_TFLOPS" 'BEGIN {
  D = 4096; F = 14336; V = 32000; KV = 1024; k = 2; E = 8
  w = D*D*2 + 2*KV*D + E*D + k*3*F*D          # q,o + k,v + router + 2 experts
  f1 = 512 * 2 * w + 2 * 512 * 512 * D + 2 * D * V
  f2 = 2048 * 2 * w + 2 * 2048 * 2048 * D + 2 * D * V
  tf = (p2 > p1) ? (f2 - f1) / (p2 - p1) / 1e12 : 0
  printf "RESULT prefill (2048 vs 512 tokens, differential): %.1f TFLOP/s = %.1f%% of %g TFLOP/s bf16 peak\n", tf, 100 * tf / peak, peak
  printf "RESULT decode: %.1f tok/s x %.3f GB/token = %.0f GB/s = %.1f%% of HBM %g GB/s\n", tps, gb, tps * gb, 100 * tps * gb / hbm, hbm
}'
# sm_90a: the prefill GEMMs as wgmma (same FLOPs, same differential).
if [[ -x $B/bench/sm_90a/model.out ]]; then
  echo "== bench: Mixtral-shaped layer, sm_90a (wgmma GEMMs)"
  o1=$(BIN=$B/bench/sm_90a/model.out run_bench 512) && o2=$(BIN=$B/bench/sm_90a/model.out run_bench 2048) \
    || { echo "$o1 $o2"; echo "FAIL bench sm_90a"; status=1; }
  echo "$o2"
  awk -v p1="$(parse "$o1" prefill:)" -v p2="$(parse "$o2" prefill:)" -v peak="$PEAK_TFLOPS" 'BEGIN {
    D = 4096; F = 14336; V = 32000; KV = 1024; k = 2; E = 8
    w = D*D*2 + 2*KV*D + E*D + k*3*F*D
    f1 = 512 * 2 * w + 2 * 512 * 512 * D + 2 * D * V
    f2 = 2048 * 2 * w + 2 * 2048 * 2048 * D + 2 * D * V
    tf = (p2 > p1) ? (f2 - f1) / (p2 - p1) / 1e12 : 0
    printf "RESULT prefill sm_90a wgmma (2048 vs 512 tokens, differential): %.1f TFLOP/s = %.1f%% of %g TFLOP/s bf16 peak\n", tf, 100 * tf / peak, peak
  }'
fi
# The bench's own alternating rounds with CUDA graphs on and off (launch gaps, bench.cpp).
graph_result() { # $1: label, $2: the bench's output
  awk -v label="$1" '/^launches per decode token:/ { l = $0; sub(/^launches per decode token: /, "", l) }
    /^decode graphs on\/off:/ { on = $4; off = $6; r = $NF }
    END { if (r != "") printf "RESULT decode%s CUDA graphs on/off: %s / %s ms per token = %s (%s)\n", label, on, off, r, l }' <<<"$2"
}
graph_result "" "$out2"
decode_result() { # $1: label, $2: the bench's output
  awk -v label="$1" -v hbm="$HBM_GBS" '/^decode:/ {
    for (i = 1; i <= NF; ++i) { if ($i == "tok/s;") tps = $(i-1); if ($i == "token") gb = $(i+1) }
    printf "RESULT decode %s: %.1f tok/s x %.3f GB/token = %.0f GB/s = %.1f%% of HBM %g GB/s\n", label, tps, gb, tps * gb, 100 * tps * gb / hbm, hbm
  }' <<<"$2"
}
# Quantized: the bytes per token the bench prints are the quantized ones (data + scales).
# Decode only (one 512-token prompt): each takes ~10-20 s for packing and ~10-20 s to run.
for q in q8 q4; do
  [[ -x $B/bench/$q/model.out ]] || continue
  echo "== bench: Mixtral-shaped layer, $q"
  "$B/pack_weights" "$B/bench/$q/manifest.json" "$CKPT" "$CKPT/$q.weights" || { echo "FAIL pack $q"; status=1; continue; }
  outq=$(timeout 240 "$B/bench/$q/model.out" --model "$CKPT" --weights "$CKPT/$q.weights" --bench \
           --bench-prompt 512 --bench-decode 64 --bench-buffer-mib 256) || { echo "$outq"; echo "FAIL bench $q"; status=1; }
  echo "$outq"
  rm -f "$CKPT/$q.weights"
  decode_result "$q" "$outq"
  graph_result " $q" "$outq"
done
exit $status
