#!/usr/bin/env bash
# pack_test.sh BUILD_DIR — ctest gpu-check-pack: the bundle's packer writes the very file the
# compiler writes. A golden checkpoint is compiled --quantize q8 and q4 (CPU target: q8's
# experts in panel order; q4's file does not depend on the target), its manifest taken out
# of the binary by extract_manifest.py, and gpu-check-pack packs the checkpoint again with
# it: the two files must be byte for byte equal (same fingerprint, same quantized bytes); the
# binary then runs on the repacked file. Then a manifest naming no packed file, a missing
# checkpoint and a missing argument must each fail with one line.
set -euo pipefail
BUILD=$1
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CKPT=$ROOT/test/goldens/mixtral_e4k2_bf16
W=$BUILD/gpu-check-pack-test
rm -rf "$W" && mkdir -p "$W"
PY=$ROOT/.venv/bin/python
[[ -x $PY ]] || PY=python3
# q8 too: on a CPU target its experts' codes and scales are in panel order.
for fmt in q8 q4; do
  "$BUILD/bin/mixtral-compile" "$CKPT" -o "$W/model.out" --quantize $fmt --max-seq-len 64
  "$PY" "$ROOT/tools/gpu-check/extract_manifest.py" "$W/model.out" "$W/manifest.json"
  mv "$W/model.out.weights" "$W/compiler.weights"
  "$BUILD/tools/gpu-check/gpu-check-pack" "$W/manifest.json" "$CKPT" "$W/model.out.weights"
  cmp "$W/compiler.weights" "$W/model.out.weights"
  want=$("$W/model.out" --model "$CKPT" --prompt-ids 1,15,29 -n 4 --temperature 0 --print-ids --weights "$W/compiler.weights")
  got=$("$W/model.out" --model "$CKPT" --prompt-ids 1,15,29 -n 4 --temperature 0 --print-ids)
  [[ -n $got && $got == "$want" ]] || { echo "$fmt: ids on the repacked file: '$got', want '$want'"; exit 1; }
done
expect_fail() { # $1: the expected exit status, then the command
  local rc=0 err
  err=$("${@:2}" 2>&1 >/dev/null) || rc=$?
  [[ $rc == "$1" && $(wc -l <<<"$err") == 1 && ( $err == error:* || $err == usage:* ) ]] \
    || { echo "want exit $1 and one line from: ${*:2}; got $rc: $err"; exit 1; }
}
"$PY" -c "import json,sys; m=json.load(open(sys.argv[1])); m.pop('weights_file'); json.dump(m, open(sys.argv[2], 'w'))" \
  "$W/manifest.json" "$W/nofile.json"
expect_fail 1 "$BUILD/tools/gpu-check/gpu-check-pack" "$W/nofile.json" "$CKPT" "$W/x.weights"
expect_fail 1 "$BUILD/tools/gpu-check/gpu-check-pack" "$W/manifest.json" "$W/missing" "$W/x.weights"
expect_fail 2 "$BUILD/tools/gpu-check/gpu-check-pack" "$W/manifest.json" "$CKPT"
[[ ! -e $W/x.weights && ! -e $W/x.weights.tmp ]] || { echo "a failed pack left a file"; exit 1; }
rm -rf "$W"
echo "gpu-check-pack: repacked file identical, ids $got"
