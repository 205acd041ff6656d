#!/usr/bin/env bash
# bench.sh — the PTX interpreter's speed, old against new, in one run: the same nvptx binary
# (a random checkpoint from test/reference/make_checkpoint.py, compiled with --target nvptx)
# runs a prefill of P tokens and N decode tokens under each libmoec_ptxemu.so, R times
# alternating; prints the best CPU time (user+sys: this machine is shared, wall time is not
# a measure) and wall time of each and their ratios, and checks both sampled the same ids.
# Then the interpreter alone on an integer loop (CPU time of one launch, each library loaded
# with dlopen), where memory checks and tensor-core emulation do not count.
# With CTestCostData.txt files of two builds, also prints the gpu-emu tests' ctest times.
#
# Usage: test/gpu-emu/bench.sh OLD.so NEW.so [BUILD_DIR] [-- ctest-before.txt ctest-after.txt]
#   env: P (16), N (8), R (3), WORK (a temporary directory)
set -euo pipefail
old=${1:?usage: bench.sh OLD.so NEW.so [BUILD_DIR]} new=${2:?usage: bench.sh OLD.so NEW.so}
build=${3:-build}
src=$(cd "$(dirname "$0")/../.." && pwd)
P=${P:-16} N=${N:-8} R=${R:-3}
work=${WORK:-$(mktemp -d)}
py="$src/.venv/bin/python"; [ -x "$py" ] || py=python3
for f in "$old" "$new" "$build/bin/mixtral-compile"; do
  [ -e "$f" ] || { echo "bench.sh: $f does not exist" >&2; exit 1; }
done

# The e2e suite's gqa4_e8k2_d128 shape: 3 layers, 8 experts top-2, GQA 8/2, hidden 128.
"$py" "$src/test/reference/make_checkpoint.py" --vocab 640 --hidden 128 --intermediate 160 \
  --layers 3 --heads 8 --kv-heads 2 --experts 8 --top-k 2 --seed 13 "$work/model" >/dev/null
"$build/bin/mixtral-compile" "$work/model" -o "$work/model.bin" --target nvptx --gpu sm_80
prompt=$(seq -s, 3 $((P + 2)))

# run LIB -> "cpu_seconds wall_seconds" on stdout, the sampled ids in $work/ids.LIBNAME
run() {
  local lib=$1 tag=$2
  /usr/bin/time -f "%U %S %e" -o "$work/time" env MOEC_CUDA_DRIVER="$lib" \
    "$work/model.bin" --prompt-ids "$prompt" -n "$N" --temperature 0 --print-ids \
    >"$work/out.$tag" 2>"$work/err.$tag" || { cat "$work/err.$tag" >&2; exit 1; }
  grep -E '^[0-9 ]+$' "$work/out.$tag" >"$work/ids.$tag" || true
  awk '{printf "%.3f %.3f\n", $1 + $2, $3}' "$work/time"
}

best_old_cpu=1e9 best_old_wall=1e9 best_new_cpu=1e9 best_new_wall=1e9
for ((i = 0; i < R; ++i)); do
  read -r c w < <(run "$old" old)
  best_old_cpu=$(awk -v a="$best_old_cpu" -v b="$c" 'BEGIN{print (b < a) ? b : a}')
  best_old_wall=$(awk -v a="$best_old_wall" -v b="$w" 'BEGIN{print (b < a) ? b : a}')
  read -r c w < <(run "$new" new)
  best_new_cpu=$(awk -v a="$best_new_cpu" -v b="$c" 'BEGIN{print (b < a) ? b : a}')
  best_new_wall=$(awk -v a="$best_new_wall" -v b="$w" 'BEGIN{print (b < a) ? b : a}')
done
cmp -s "$work/ids.old" "$work/ids.new" || { echo "bench.sh: old and new sampled different ids" >&2; exit 1; }

echo "prefill $P tokens + $N decode tokens, best of $R (CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
printf "old  %-60s cpu %7.2f s  wall %7.2f s\n" "$old" "$best_old_cpu" "$best_old_wall"
printf "new  %-60s cpu %7.2f s  wall %7.2f s\n" "$new" "$best_new_cpu" "$best_new_wall"
awk -v a="$best_old_cpu" -v b="$best_new_cpu" -v c="$best_old_wall" -v d="$best_new_wall" \
  'BEGIN{printf "speed-up: %.1fx cpu, %.1fx wall\n", a / b, c / d}'

# The interpreter alone on straight-line integer code: one block of 128 threads runs a loop of
# 5 instructions 100000 times (2M warp instructions), loaded with dlopen from each library.
cat >"$work/alu.cpp" <<'CPP'
#include <cstdio>
#include <ctime>
#include <dlfcn.h>
typedef int (*Init)(unsigned);
typedef int (*Load)(void **, const void *, unsigned, int *, void **);
typedef int (*Get)(void **, void *, const char *);
typedef int (*Alloc)(unsigned long long *, unsigned long);
typedef int (*Launch)(void *, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                      unsigned, void *, void **, void **);
static const char *ptx = R"(.version 7.0
.target sm_80
.address_size 64
.visible .entry k(.param .u64 p0)
{
  .reg .pred %p<2>;
  .reg .b32 %r<8>;
  .reg .b64 %rd<4>;
  ld.param.u64 %rd1, [p0];
  mov.u32 %r1, %tid.x;
  mov.u32 %r2, 0;
  mov.u32 %r3, 0;
$L:
  add.s32 %r3, %r3, %r1;
  xor.b32 %r3, %r3, 7;
  add.s32 %r2, %r2, 1;
  setp.lt.u32 %p1, %r2, 100000;
  @%p1 bra $L;
  mul.wide.u32 %rd2, %r1, 4;
  add.s64 %rd3, %rd1, %rd2;
  st.global.u32 [%rd3], %r3;
  ret;
}
)";
int main(int, char **argv) {
  void *h = dlopen(argv[1], RTLD_NOW);
  if (!h) return 1;
  void *m, *f;
  unsigned long long d;
  ((Init)dlsym(h, "cuInit"))(0);
  if (((Load)dlsym(h, "cuModuleLoadDataEx"))(&m, ptx, 0, nullptr, nullptr)) return 1;
  ((Get)dlsym(h, "cuModuleGetFunction"))(&f, m, "k");
  ((Alloc)dlsym(h, "cuMemAlloc_v2"))(&d, 512);
  void *args[] = {&d};
  std::clock_t c = std::clock();
  if (((Launch)dlsym(h, "cuLaunchKernel"))(f, 1, 1, 1, 128, 1, 1, 0, nullptr, args, nullptr)) return 1;
  std::printf("%.3f\n", double(std::clock() - c) / CLOCKS_PER_SEC);
}
CPP
if ${CXX:-c++} -O2 "$work/alu.cpp" -o "$work/alu" -ldl 2>/dev/null; then
  a_old=1e9 a_new=1e9
  for ((i = 0; i < R; ++i)); do
    t=$("$work/alu" "$(realpath "$old")"); a_old=$(awk -v a="$a_old" -v b="$t" 'BEGIN{print (b < a) ? b : a}')
    t=$("$work/alu" "$(realpath "$new")"); a_new=$(awk -v a="$a_new" -v b="$t" 'BEGIN{print (b < a) ? b : a}')
  done
  awk -v a="$a_old" -v b="$a_new" 'BEGIN{printf "integer loop (2M warp instructions): old cpu %.3f s, new cpu %.3f s: %.1fx\n", a, b, a / b}'
fi

if [ "${4:-}" = "--" ] && [ -n "${6:-}" ]; then
  echo "ctest seconds (before: $5, after: $6)"
  for t in e2e-reference-ptxemu e2e-goldens-ptxemu e2e-nonfinite-ptxemu gpu-check-dry-run; do
    b=$(awk -v t="$t" '$1 == t {print $3}' "$5") a=$(awk -v t="$t" '$1 == t {print $3}' "$6")
    printf "  %-24s before %8s  after %8s\n" "$t" "${b:-?}" "${a:-?}"
  done
fi
