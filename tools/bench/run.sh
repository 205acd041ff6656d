#!/bin/bash
# tools/bench/run.sh [--layers N] [--dtypes "f32 bf16"] [--max-seq-len S] [--bench-prompt N]
#                    [--bench-decode N] [--threads N]
#
# For each weight dtype: writes a Mixtral-shaped random checkpoint (hidden 4096, intermediate
# 14336, 8 experts top-2, 32/8 heads, head_dim 128, vocab 32000; --layers, default 1) with
# test/reference/make_checkpoint.py into build/bench/ (reused when already there), compiles it
# with build/bin/mixtral-compile --max-seq-len S (default 512), and runs the binary's --bench,
# printing its report block. Needs >= 20 GB free under build/ (1 layer: about 6.9 GB for f32 and
# 3.4 GB for bf16 on disk, and the same again in memory while a binary runs).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
layers=1 dtypes="f32 bf16" seq=512 bench_args=()
while [ $# -gt 0 ]; do
  case $1 in
    --layers) layers=$2; shift 2 ;;
    --dtypes) dtypes=$2; shift 2 ;;
    --max-seq-len) seq=$2; shift 2 ;;
    --bench-prompt|--bench-decode|--threads|--bench-buffer-mib) bench_args+=("$1" "$2"); shift 2 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case $layers in ''|*[!0-9]*|0) echo "run.sh: --layers must be a positive integer, got '$layers'" >&2; exit 2 ;; esac
for d in $dtypes; do
  case $d in f32|bf16|f16) ;; *) echo "run.sh: unknown dtype '$d' (f32, bf16, f16)" >&2; exit 2 ;; esac
done

out=$root/build/bench
compiler=$root/build/bin/mixtral-compile
python=$root/.venv/bin/python
[ -x "$python" ] || python=python3
mkdir -p "$out"

avail=$(df --output=avail -B1 "$out" | tail -1 | tr -d ' ')
need=$((20 * 1000 * 1000 * 1000))
if [ "$avail" -lt "$need" ]; then
  echo "run.sh: only $((avail / 1000000000)) GB free under $out; the benchmark needs at least 20 GB" >&2
  exit 1
fi
if [ ! -x "$compiler" ]; then
  echo "run.sh: $compiler does not exist; build it first (ninja -C build mixtral-compile)" >&2
  exit 1
fi

for dtype in $dtypes; do
  dir=$out/mixtral-L$layers-$dtype
  bin=$out/moec-L$layers-$dtype
  echo "== $dtype: checkpoint $dir"
  if [ ! -f "$dir/config.json" ] || [ ! -f "$dir/model.safetensors" ]; then
    rm -rf "$dir.tmp" # written aside and renamed, so an interrupted run is never reused
    "$python" "$root/test/reference/make_checkpoint.py" "$dir.tmp" --vocab 32000 --hidden 4096 \
      --intermediate 14336 --layers "$layers" --heads 32 --kv-heads 8 --experts 8 --top-k 2 \
      --max-pos 32768 --dtype "$dtype" --seed 0
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
  echo "== $dtype: compiling $bin (--max-seq-len $seq)"
  if ! "$compiler" "$dir" -o "$bin" --max-seq-len "$seq"; then
    echo "run.sh: mixtral-compile could not build $bin (see above)" >&2
    exit 1
  fi
  echo "== $dtype: $bin --bench ${bench_args[*]:-}"
  "$bin" --model "$dir" --bench "${bench_args[@]}"
done
