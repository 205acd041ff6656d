#!/bin/bash
# tools/bench/run.sh [--layers "1 2"] [--dtypes "f32 bf16"] [--quantize "q8 q4"]
#                    [--max-seq-len S] [--bench-prompt N] [--bench-decode N] [--threads N]
#                    [--baseline COMPILER] [--repeat R]
#
# For each layer count and weight dtype: writes a Mixtral-shaped random checkpoint (hidden
# 4096, intermediate 14336, 8 experts top-2, 32/8 heads, head_dim 128, vocab 32000; --layers,
# default 1) with test/reference/make_checkpoint.py into build/bench/ (reused when already
# there), compiles it with build/bin/mixtral-compile --max-seq-len S (default 512), and runs
# the binary's --bench, printing its report block. Each --quantize format (default none; e.g.
# "q8 q4") is compiled from the bf16 checkpoint with mixtral-compile --quantize and benched in
# the same run; its roofline counts the quantized bytes (data + scales) a token reads
# (each format with its default activations, q8 f32 and q4 int8; "q8i8x": q8 with
# --int8-activations, "q4f32x": q4 with --int8-activations=false; "pack": bf16 with --pack,
# the expert weights in the GEMM's panel order on a CPU, 3.4 GB more per layer). A table
# of prefill tok/s, decode tok/s and roofline ratio closes the run; its "probe" column is the
# roofline's bandwidth (the best of 7 passes over the binary's own weights as mapped) with
# the share of them on 2 MiB pages, "buffer" the best over a fresh huge-page buffer. Needs >= 20 GB free under
# build/ (1 layer: about 6.9 GB for f32 and 3.4 GB for bf16 on disk, and the same again in
# memory while a binary runs). --baseline COMPILER (e.g. the previous release's
# build/bin/mixtral-compile) also compiles every model with that compiler, and the two binaries'
# --bench runs alternate R times (--repeat, default 1), so that load from other processes hits
# both alike; the summary then has a "base" and a "this" row per run, plus prefill ms/token.
# With two layer counts (--layers "1 2") it also prints a full layer's prefill ms/token, the
# difference of the two (a model's last layer runs its FFN for the last row only).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
layers=1 dtypes="f32 bf16" quantize="" seq=512 bench_args=() baseline="" repeat=1
while [ $# -gt 0 ]; do
  case $1 in
    --layers) layers=$2; shift 2 ;;
    --dtypes) dtypes=$2; shift 2 ;;
    --quantize) quantize=$2; shift 2 ;;
    --max-seq-len) seq=$2; shift 2 ;;
    --baseline) baseline=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --bench-prompt|--bench-decode|--threads|--bench-buffer-mib) bench_args+=("$1" "$2"); shift 2 ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
for l in $layers; do
  case $l in *[!0-9]*|0) echo "run.sh: --layers must list positive integers, got '$layers'" >&2; exit 2 ;; esac
done
for d in $dtypes; do
  case $d in f32|bf16|f16) ;; *) echo "run.sh: unknown dtype '$d' (f32, bf16, f16)" >&2; exit 2 ;; esac
done
for q in $quantize; do
  case $q in q8|q4|q8i8x|q4f32x|pack) ;; *) echo "run.sh: unknown --quantize format '$q' (q8, q4, q8i8x, q4f32x, pack)" >&2; exit 2 ;; esac
done
case $repeat in *[!0-9]*|0|"") echo "run.sh: --repeat must be a positive integer, got '$repeat'" >&2; exit 2 ;; esac
if [ -n "$baseline" ] && [ ! -x "$baseline" ]; then
  echo "run.sh: --baseline $baseline is not an executable mixtral-compile" >&2
  exit 2
fi

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

# checkpoint LAYERS DTYPE: the folder, written once.
checkpoint() {
  local dir=$out/mixtral-L$1-$2
  if [ ! -f "$dir/config.json" ] || [ ! -f "$dir/model.safetensors" ]; then
    rm -rf "$dir.tmp" # written aside and renamed, so an interrupted run is never reused
    "$python" "$root/test/reference/make_checkpoint.py" "$dir.tmp" --vocab 32000 --hidden 4096 \
      --intermediate 14336 --layers "$1" --heads 32 --kv-heads 8 --experts 8 --top-k 2 \
      --max-pos 32768 --dtype "$2" --seed 0 >&2
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
  echo "$dir"
}

summary=()
declare -A prefill_ms # run label -> prefill ms/token
# compile COMPILER BIN DIR [FLAGS...]
compile() {
  local compiler=$1 bin=$2 dir=$3; shift 3
  echo "== compiling $bin from $dir with $compiler (--max-seq-len $seq $*)"
  if ! "$compiler" "$dir" -o "$bin" --max-seq-len "$seq" "$@"; then
    echo "run.sh: $compiler could not build $bin (see above)" >&2
    exit 1
  fi
}

# run LABEL BIN DIR: run --bench, keep its figures.
run() {
  local label=$1 bin=$2 dir=$3
  echo "== $label: $bin --bench ${bench_args[*]:-}"
  local report
  report=$("$bin" --model "$dir" --bench "${bench_args[@]}")
  echo "$report"
  local prefill decode ratio gflops ms probe huge buffer
  prefill=$(sed -n 's/^prefill: .* = \([0-9.]*\) tok\/s.*/\1/p' <<<"$report")
  gflops=$(sed -n 's/^prefill: .* tok\/s, \([0-9.]*\) GFLOP\/s.*/\1/p' <<<"$report")
  decode=$(sed -n 's/^decode: .* = \([0-9.]*\) tok\/s;.*/\1/p' <<<"$report")
  ratio=$(sed -n 's/.*ratio Y\/R = \([0-9.]*%\).*/\1/p' <<<"$report")
  probe=$(sed -n 's/^memory bandwidth .*): \([0-9.]*\) GB\/s$/\1/p' <<<"$report")
  huge=$(sed -n 's/^memory bandwidth .*, \([?0-9 ]*%\) on 2 MiB pages.*/\1/p' <<<"$report")
  if [ -n "$huge" ]; then probe="$probe ${huge// /}"; fi
  buffer=$(sed -n 's/^reference, not the roofline: .*best of [0-9]* passes \([0-9.]*\) GB\/s.*/\1/p' <<<"$report")
  ms=$(awk -v t="$prefill" 'BEGIN { if (t > 0) printf "%.2f", 1000 / t }')
  prefill_ms["$label"]=$ms
  summary+=("$(printf '%-11s %12s %8s %10s %12s %10s %14s %8s' "$label" "$prefill" "$ms" "$gflops" "$decode" "$ratio" "${probe:--}" "${buffer:--}")")
}

# bench LAYERS NAME DIR [COMPILE FLAGS...]: compile (with the baseline too), run --bench.
bench() {
  local n=$1 name=$2 dir=$3; shift 3
  local bin=$out/moec-L$n-$name
  compile "$compiler" "$bin" "$dir" "$@"
  if [ -z "$baseline" ]; then
    run "L$n $name" "$bin" "$dir"
    return
  fi
  compile "$baseline" "$bin-base" "$dir" "$@"
  for ((r = 0; r < repeat; r++)); do
    run "L$n $name base" "$bin-base" "$dir"
    run "L$n $name this" "$bin" "$dir"
  done
}

for n in $layers; do
  for dtype in $dtypes; do
    bench "$n" "$dtype" "$(checkpoint "$n" "$dtype")"
  done
  for q in $quantize; do
    case $q in
      *i8x) bench "$n" "$q" "$(checkpoint "$n" bf16)" --quantize "${q%i8x}" --int8-activations ;;
      *f32x) bench "$n" "$q" "$(checkpoint "$n" bf16)" --quantize "${q%f32x}" --int8-activations=false ;;
      pack) bench "$n" pack "$(checkpoint "$n" bf16)" --pack ;;
      *) bench "$n" "$q" "$(checkpoint "$n" bf16)" --quantize "$q" ;;
    esac
  done
done

load=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== summary (one run; roofline: measured bandwidth / weight bytes read per token; load average $load)"
printf '%-11s %12s %8s %10s %12s %10s %14s %8s\n' run "prefill t/s" "ms/tok" "GFLOP/s" "decode t/s" "roofline" "probe GB/s 2M" "buffer"
printf '%s\n' "${summary[@]}"

# A full layer's prefill cost. A binary's prefill runs its last layer's FFN for the last row
# only (the one the logits read; llama.cpp skips the same work), so the per-token time of an
# L-layer model is not L full layers: with two layer counts a < b, (ms(b) - ms(a)) / (b - a)
# is one full layer (attention and FFN for every row) per token.
read -r -a counts <<<"$(tr ' ' '\n' <<<"$layers" | sort -n | uniq | tr '\n' ' ')"
if [ "${#counts[@]}" -ge 2 ]; then
  a=${counts[0]} b=${counts[${#counts[@]} - 1]}
  echo "== prefill per full layer: (ms/token at L$b - at L$a) / $((b - a))"
  for label in "${!prefill_ms[@]}"; do
    case $label in "L$b "*) ;; *) continue ;; esac
    rest=${label#"L$b "} other="L$a $rest"
    [ -n "${prefill_ms[$other]:-}" ] || continue
    awk -v x="${prefill_ms[$label]}" -v y="${prefill_ms[$other]}" -v n=$((b - a)) -v r="$rest" \
      'BEGIN { printf "%-16s %8.2f ms/token per layer\n", r, (x - y) / n }'
  done | sort
fi

