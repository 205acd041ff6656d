#!/bin/bash
# tools/bench/prefill-cycles.sh BASE_BIN THIS_BIN MODEL_DIR [--repeat R]
#
# User CPU cycles of one --bench prefill (128 tokens) of two compiled models on the same
# checkpoint, e.g. build/bench/moec-L1-bf16-base and build/bench/moec-L1-bf16 that
# run.sh --baseline left: perf record -e cycles:u, one sample per million cycles, counted in
# the shared GEMMs (__moe_gemm_*; __moe_qgemm_* in q8/q4 binaries), the rest of
# moec_prefill's outlined loops and libm, the two binaries alternating R times (default 2).
# Cycles rather than wall time because on a shared machine they do not count the time other
# processes hold the cores; the ratio this/base is printed per pair. Where the machine has
# no cycle counter (a VM without PMU passthrough: perf says cycles:u is not supported) it
# samples user CPU time instead (cpu-clock:u, one sample per ms): the columns are then
# CPU-milliseconds, which also leave out other processes.
set -euo pipefail
[ $# -ge 3 ] || { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
base=$1 this=$2 model=$3 repeat=2
[ "${4:-}" = --repeat ] && repeat=$5
for b in "$base" "$this"; do [ -x "$b" ] || { echo "prefill-cycles.sh: $b is not executable" >&2; exit 2; }; done
command -v perf >/dev/null || { echo "prefill-cycles.sh: perf is missing (apt-get install linux-perf)" >&2; exit 1; }
event=cycles:u unit=Mcyc
if perf stat -e cycles:u true 2>&1 | grep -q 'not supported'; then
  event=cpu-clock:u unit=ms-cpu
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cycles() { # BIN -> "gemm other libm"
  perf record -q -e "$event" -c 1000000 -o "$tmp/perf.data" "$1" --model "$model" --bench \
    --bench-decode 1 >"$tmp/out.txt" 2>&1
  perf report -i "$tmp/perf.data" --stdio --no-children --sort dso,sym -F sample,dso,sym 2>/dev/null |
    awk '/__moe_q?gemm/ {g += $1} /moec_prefill/ {p += $1} /libm\.so/ {m += $1} END {print g + 0, p + 0, m + 0}'
}
printf '%-5s %10s %14s %6s %12s %10s\n' run "GEMM $unit" "other prefill" libm "total $unit" "this/base"
for ((r = 0; r < repeat; r++)); do
  read -r g p m <<<"$(cycles "$base")"; tb=$((g + p + m))
  printf '%-5s %10d %14d %6d %12d\n' base "$g" "$p" "$m" "$tb"
  read -r g p m <<<"$(cycles "$this")"; tt=$((g + p + m))
  printf '%-5s %10d %14d %6d %12d %10s\n' this "$g" "$p" "$m" "$tt" "$(awk -v a="$tt" -v b="$tb" 'BEGIN {printf "%.2f", a / b}')"
done
echo "(load average $(cut -d' ' -f1-3 /proc/loadavg))"
