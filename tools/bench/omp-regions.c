// omp-regions.c — an LD_PRELOAD library that times every OpenMP parallel region a moec binary
// forks (`__kmpc_fork_call` with one shared argument, as the generated code calls it): per
// region (the outlined `...omp_par.N` function), the calls, their wall time from fork to
// join, per call the busiest and the idlest thread's wall time inside the region body (so a
// region's wall time splits into work, imbalance and fork/join), threads 0 and 1 apart, and
// the CPU time of all threads inside the body (what the work cost, whatever else the machine
// runs). Written at exit to $MOEC_OMP_REGIONS (default omp-regions.tsv) with each function's
// offset in the binary; tools/bench/decode-profile.sh builds it, runs OUT --bench with it and
// names the regions with `nm`. A benchmark tool, not part of moec.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef void (*Microtask)(int32_t *gtid, int32_t *btid, ...);
typedef void (*ForkCall)(void *loc, int32_t argc, Microtask fn, ...);

enum { kMaxRegions = 1024, kMaxThreads = 64 };

typedef struct {
  Microtask fn;
  long calls;
  double wall, busiest, idlest; // seconds, summed over calls
  double thread[2];              // threads 0 and 1 inside the body, summed over calls
  double cpu;                    // CPU seconds of all threads inside the body
} Region;

static Region regions[kMaxRegions];
static int numRegions;

typedef struct {
  Microtask fn;
  void *arg;
  double start[kMaxThreads], end[kMaxThreads], cpu[kMaxThreads];
} Call;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static double threadCpu(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static void timed(int32_t *gtid, int32_t *btid, Call *call) {
  int t = *btid < kMaxThreads ? *btid : kMaxThreads - 1;
  double cpu0 = threadCpu();
  call->start[t] = now();
  call->fn(gtid, btid, call->arg);
  call->end[t] = now();
  call->cpu[t] = threadCpu() - cpu0;
}

static Region *regionOf(Microtask fn) {
  for (int i = 0; i < numRegions; ++i)
    if (regions[i].fn == fn)
      return &regions[i];
  if (numRegions == kMaxRegions)
    return NULL;
  regions[numRegions].fn = fn;
  return &regions[numRegions++];
}

void __kmpc_fork_call(void *loc, int32_t argc, Microtask fn, ...) {
  static ForkCall real;
  if (!real)
    real = (ForkCall)dlsym(RTLD_NEXT, "__kmpc_fork_call");
  va_list ap;
  va_start(ap, fn);
  void *args[8] = {0};
  for (int i = 0; i < argc && i < 8; ++i)
    args[i] = va_arg(ap, void *);
  va_end(ap);
  if (argc != 1) { // not generated code's shape: forwarded untimed
    real(loc, argc, fn, args[0], args[1], args[2], args[3], args[4], args[5], args[6], args[7]);
    return;
  }
  Call call;
  memset(&call, 0, sizeof call);
  call.fn = fn;
  call.arg = args[0];
  double t0 = now();
  real(loc, 1, (Microtask)timed, &call);
  double wall = now() - t0, busiest = 0, idlest = 1e30, threadBusy[2] = {0, 0}, cpu = 0;
  for (int t = 0; t < kMaxThreads; ++t) {
    if (call.end[t] == 0)
      continue;
    double busy = call.end[t] - call.start[t];
    cpu += call.cpu[t];
    if (t < 2)
      threadBusy[t] = busy;
    busiest = busy > busiest ? busy : busiest;
    idlest = busy < idlest ? busy : idlest;
  }
  Region *r = regionOf(fn);
  if (!r)
    return;
  r->calls += 1;
  r->wall += wall;
  r->busiest += busiest;
  r->idlest += idlest < 1e30 ? idlest : 0;
  r->thread[0] += threadBusy[0];
  r->thread[1] += threadBusy[1];
  r->cpu += cpu;
}

__attribute__((destructor)) static void report(void) {
  if (numRegions == 0) // e.g. the parent of a binary that re-executes itself
    return;
  const char *path = getenv("MOEC_OMP_REGIONS");
  FILE *f = fopen(path && *path ? path : "omp-regions.tsv", "w");
  if (!f)
    return;
  fprintf(f, "offset\tcalls\twall_s\tbusiest_s\tidlest_s\tthread0_s\tthread1_s\tcpu_s\n");
  for (int i = 0; i < numRegions; ++i) {
    Dl_info info;
    uintptr_t offset = (uintptr_t)regions[i].fn;
    if (dladdr((void *)regions[i].fn, &info) && info.dli_fbase)
      offset -= (uintptr_t)info.dli_fbase;
    fprintf(f, "%lx\t%ld\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\n", (unsigned long)offset,
            regions[i].calls, regions[i].wall, regions[i].busiest, regions[i].idlest,
            regions[i].thread[0], regions[i].thread[1], regions[i].cpu);
  }
  fclose(f);
}
