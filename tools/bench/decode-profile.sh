#!/bin/bash
# tools/bench/decode-profile.sh [--bytes "N=BYTES ..."] OUT [OUT's --bench options]
#
# Where a decode token's time goes, region by region: builds tools/bench/omp-regions.c (an
# LD_PRELOAD library timing every OpenMP region the binary forks), runs `OUT --bench
# --bench-prompt 1 [options]` with it and prints, per `moec_decode..omp_par.N` region: calls
# per token, wall ms per token and its share of the decode time, the busiest and idlest
# thread inside the body (their difference: load imbalance; wall minus the busiest:
# fork/join), and CPU ms per token of all threads (on a shared machine the stable figure).
# What no region covers (serial code on the calling thread: norms, routing, the x
# quantisation of int8 GEMVs, mallocs) is the last line. --bytes names the weight bytes a
# region reads per token ("62=66.06e6 58=262.1e6": region omp_par.62 reads 66.06 MB) and adds
# GB/s of wall time, GB per CPU-second and the share of the run's bandwidth probe.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bytes=""
if [ "${1:-}" = "--bytes" ]; then bytes=$2; shift 2; fi
if [ $# -lt 1 ] || [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
  exit $(( $# < 1 ))
fi
[ -f "$1" ] && [ -x "$1" ] || { echo "decode-profile.sh: $1: not an executable file" >&2; exit 1; }
out=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
shift
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf 'VERSION { global: __kmpc_fork_call; local: *; };\n' > "$work/omp.map"
cc -O2 -shared -fPIC -Wl,--version-script="$work/omp.map" -o "$work/omp-regions.so" \
  "$root/tools/bench/omp-regions.c" -ldl
MOEC_OMP_REGIONS="$work/regions.tsv" LD_PRELOAD="$work/omp-regions.so" \
  "$out" --bench --bench-prompt 1 "$@" | tee "$work/bench.txt"
[ -s "$work/regions.tsv" ] || { echo "decode-profile.sh: no OpenMP region was recorded" >&2; exit 1; }
nm "$out" > "$work/syms.txt"
python3 - "$work" "$bytes" <<'EOF'
import re, sys
work, byte_spec = sys.argv[1], sys.argv[2]
bench = open(f"{work}/bench.txt").read()
m = re.search(r"^decode:\s+(\d+) tokens in ([0-9.]+) s", bench, re.M)
if not m:
    sys.exit("decode-profile.sh: no decode line in OUT --bench's output (--bench-decode 0?)")
tokens, decode_s = int(m.group(1)), float(m.group(2))
probe = re.search(r"^memory bandwidth.*: ([0-9.]+) GB/s$", bench, re.M)
probe = float(probe.group(1)) if probe else None
region_bytes = {}
for item in byte_spec.split():
    name, value = item.split("=")
    region_bytes[name] = float(value)
syms = {}
for line in open(f"{work}/syms.txt"):
    p = line.split()
    if len(p) == 3 and p[1] in "tT":
        syms[int(p[0], 16)] = p[2]
rows = []
for line in open(f"{work}/regions.tsv").read().split("\n")[1:]:
    if not line:
        continue
    off, calls, wall, busiest, idlest, _t0, _t1, cpu = line.split("\t")
    name = syms.get(int(off, 16), "0x" + off)
    if name.startswith("moec_decode.."):
        rows.append((name, int(calls), float(wall), float(busiest), float(idlest), float(cpu)))
rows.sort(key=lambda r: -r[2])
per = lambda s: 1e3 * s / tokens  # ms per token
total = 1e3 * decode_s / tokens
print(f"\ndecode: {total:.2f} ms/token over {tokens} tokens; regions of moec_decode, by wall time:")
head = f"{'region':26s} {'calls/tok':>9s} {'wall ms':>8s} {'share':>6s} {'busiest':>8s} {'idlest':>8s} {'cpu ms':>8s}"
if region_bytes:
    head += f" {'MB/tok':>8s} {'GB/s':>6s} {'GB/cpu-s':>8s} {'/probe':>6s}"
print(head)
covered = 0.0
for name, calls, wall, busiest, idlest, cpu in rows:
    covered += wall
    if per(wall) < 0.005 * total:
        continue
    line = (f"{name.replace('moec_decode..', ''):26s} {calls / tokens:9.1f} {per(wall):8.3f} "
            f"{100 * per(wall) / total:5.1f}% {per(busiest):8.3f} {per(idlest):8.3f} {per(cpu):8.3f}")
    key = name.rsplit(".", 1)[-1] if name[-1].isdigit() else "0"
    if key in region_bytes:
        b = region_bytes[key]
        gbs = b / (wall / tokens) / 1e9
        line += (f" {b / 1e6:8.2f} {gbs:6.1f} {b / (cpu / tokens) / 1e9:8.1f}"
                 + (f" {100 * gbs / probe:5.0f}%" if probe else ""))
    print(line)
rest = total - per(covered)
print(f"{'(outside regions)':26s} {'':9s} {rest:8.3f} {100 * rest / total:5.1f}%")
EOF
