// cuda_mgpu.cpp — the mgpu* runtime functions that MLIR's gpu-to-llvm lowering calls.
//
// Signatures are those MLIR 22 emits (see mlir/lib/Conversion/GPUCommon and the gpu.binary
// translation): the module is "loaded" from a global constructor at program start, so
// mgpuModuleLoad/LoadJIT only record the embedded PTX/cubin in a registry; the CUDA backend's
// warm-up (load_mgpu_modules) runs cuModuleLoadDataEx (the driver JIT-compiles PTX for the GPU
// present) and resolves every `.entry` of the PTX. That keeps a binary startable without
// CUDA and keeps the JIT out of the first timed call. The generated code then asks for its
// kernel by name before every launch: a lock-free, allocation-free scan of the module's small
// table.
//
// The functions take no context argument, so they use the one driver the CUDA backend
// registered (MgpuRegistration), whose context is made current once per thread. Generated code
// cannot handle C++ exceptions, so failures are recorded (first one wins), later calls become
// no-ops, and the backend raises the message after the entry point returns (take_mgpu_error).
//
// While a StepGraph captures (cuda_graph.cpp, cuda_capture.h), the stream, synchronise and
// memory functions serve the capture instead of the driver: see begin_mgpu_capture.
#include "moec/cuda.h"

#include "cuda_capture.h"

#include "moec/error.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace moec::cuda {
namespace {

std::atomic<Driver *> registered{nullptr}; // the CUDA backend's driver, while it lives

// The first error since the last take_mgpu_error; `any_error` lets the per-call check skip the
// mutex.
std::mutex error_mutex;
std::string first_error;
std::atomic<bool> any_error{false};

void record(const std::string &message) {
  std::lock_guard<std::mutex> lock(error_mutex);
  if (first_error.empty())
    first_error = message;
  any_error.store(true, std::memory_order_release);
}

/// Runs `f` with the registered driver, its context current on this thread; records any
/// moec::Error instead of throwing.
template <typename F> void guarded(F &&f) {
  if (any_error.load(std::memory_order_acquire))
    return;
  Driver *d = registered.load(std::memory_order_acquire);
  if (!d) {
    record("internal: a CUDA runtime call (mgpu*) with no CUDA backend loaded");
    return;
  }
  try {
    d->make_current();
    f(*d);
  } catch (const Error &e) {
    record(e.what());
  }
}

struct Kernel {
  std::string name;
  CUfunction function = nullptr;
};

/// What mgpuModuleLoad* returns: the image, loaded into a CUmodule by load_mgpu_modules (or
/// on the first lookup, when no warm-up ran).
struct LazyModule {
  const void *image = nullptr;
  bool ptx = false;
  std::mutex mutex;                 // guards loading and unloading
  std::atomic<bool> loaded{false};  // set once module and kernels are complete: then read-only
  CUmodule module = nullptr;
  std::vector<Kernel> kernels;      // every `.entry` of a PTX image
};

std::mutex registry_mutex;
std::vector<LazyModule *> &registry() {
  static std::vector<LazyModule *> modules; // mgpuModuleLoad* adds, mgpuModuleUnload removes
  return modules;
}

/// The names of the PTX image's kernels: each `.entry NAME(`.
std::vector<std::string> ptx_entries(const char *ptx) {
  std::vector<std::string> names;
  for (const char *p = std::strstr(ptx, ".entry"); p; p = std::strstr(p + 6, ".entry")) {
    const char *q = p + 6;
    if (*q != ' ' && *q != '\t')
      continue;
    while (*q == ' ' || *q == '\t')
      ++q;
    const char *e = q;
    while (*e && *e != '(' && *e != ' ' && *e != '\t' && *e != '\n')
      ++e;
    if (e > q)
      names.emplace_back(q, e);
  }
  return names;
}

/// Loads `m` and resolves its kernels; throws moec::Error. Caller holds m.mutex.
void load_locked(LazyModule &m, const Driver &d) {
  if (m.loaded.load(std::memory_order_acquire))
    return;
  // JIT options: the error log, so a PTX the driver rejects says why.
  constexpr int kErrorLogBuffer = 5, kErrorLogBufferSize = 6;
  char log[8192];
  log[0] = 0;
  int options[2] = {kErrorLogBuffer, kErrorLogBufferSize};
  void *values[2] = {log, reinterpret_cast<void *>(static_cast<std::uintptr_t>(sizeof log))};
  CUmodule module = nullptr;
  CUresult r = d.api().cuModuleLoadDataEx(&module, m.image, 2, options, values);
  if (r != 0) {
    std::string msg = d.describe(r, m.ptx ? "cuModuleLoadDataEx (JIT-compiling the embedded PTX)"
                                          : "cuModuleLoadDataEx");
    if (log[0])
      msg += ": " + std::string(log);
    throw Error(msg);
  }
  m.module = module;
  m.kernels.clear();
  if (m.ptx)
    for (std::string &name : ptx_entries(static_cast<const char *>(m.image))) {
      CUfunction f = nullptr;
      d.check(d.api().cuModuleGetFunction(&f, module, name.c_str()),
              ("cuModuleGetFunction(" + name + ")").c_str());
      m.kernels.push_back({std::move(name), f});
    }
  m.loaded.store(true, std::memory_order_release);
}

void unload_all(const Driver &d) {
  std::lock_guard<std::mutex> lock(registry_mutex);
  for (LazyModule *m : registry()) {
    std::lock_guard<std::mutex> module_lock(m->mutex);
    if (m->module)
      d.api().cuModuleUnload(m->module);
    m->module = nullptr;
    m->kernels.clear();
    m->loaded.store(false, std::memory_order_release);
  }
}

// cuMemAllocAsync needs the device's stream-ordered pool, which some setups lack (the call then
// fails, e.g. CUDA_ERROR_NOT_SUPPORTED, though the symbol exists). Then every allocation falls
// back to cuMemAlloc, and those pointers are freed with cuMemFree: `sync_allocated` holds them
// (touched only once a fallback happened).
std::atomic<bool> pool_failed{false};
std::mutex sync_mutex;
std::unordered_set<CUdeviceptr> sync_allocated;

// launch_counts(): advanced by mgpuLaunchKernel and StepGraph, reset by a registration.
std::atomic<std::uint64_t> n_launches{0}, n_captured{0}, n_graph_launches{0}, n_captures{0},
    n_updates{0}, n_instantiates{0};

/// The capture in progress (StepGraph): its stream and its arena of temporaries, handed out
/// first fit over offsets so that the same sequence of calls gets the same addresses.
struct Capture {
  static constexpr std::size_t kAlign = 256; // cudaMalloc's alignment
  CUstream stream = nullptr;
  CUdeviceptr base = 0;
  std::size_t top = 0, high = 0;           // end of the used offsets; its maximum
  std::map<std::size_t, std::size_t> free; // offset -> bytes, below `top`, coalesced
  std::unordered_map<CUdeviceptr, std::size_t> live; // pointer -> bytes

  CUdeviceptr alloc(std::size_t bytes) {
    bytes = (bytes + kAlign - 1) / kAlign * kAlign;
    std::size_t at = top;
    auto it = std::find_if(free.begin(), free.end(), [&](auto &r) { return r.second >= bytes; });
    if (it != free.end()) {
      at = it->first;
      if (it->second > bytes)
        free[at + bytes] = it->second - bytes;
      free.erase(it);
    } else {
      top += bytes;
      high = std::max(high, top);
    }
    live[base + at] = bytes;
    return base + at;
  }
  bool release(CUdeviceptr p) {
    auto it = live.find(p);
    if (it == live.end())
      return false;
    std::size_t at = p - base, bytes = it->second;
    live.erase(it);
    auto next = free.find(at + bytes);
    if (next != free.end()) { // merge with the free range after
      bytes += next->second;
      free.erase(next);
    }
    auto prev = free.lower_bound(at);
    if (prev != free.begin() && std::prev(prev)->first + std::prev(prev)->second == at) {
      --prev; // merge with the free range before
      at = prev->first;
      bytes += prev->second;
      free.erase(prev);
    }
    if (at + bytes == top)
      top = at; // the top range returns to the untouched end
    else
      free[at] = bytes;
    return true;
  }
};
thread_local Capture *capturing = nullptr; // the capture runs the generated call on this thread

} // namespace

namespace detail {

void begin_mgpu_capture(CUstream stream, CUdeviceptr base) {
  thread_local Capture state;
  state = Capture{};
  state.stream = stream;
  state.base = base;
  capturing = &state;
}

std::size_t end_mgpu_capture() {
  const std::size_t high = capturing ? capturing->high : 0;
  capturing = nullptr;
  return high;
}

void count(GraphEvent event) {
  switch (event) {
  case GraphEvent::Capture: ++n_captures; break;
  case GraphEvent::Update: ++n_updates; break;
  case GraphEvent::Instantiate: ++n_instantiates; break;
  case GraphEvent::Launch: ++n_graph_launches; break;
  }
}

} // namespace detail

LaunchCounts launch_counts() {
  LaunchCounts c;
  c.kernel_launches = n_launches;
  c.captured = n_captured;
  c.graph_launches = n_graph_launches;
  c.captures = n_captures;
  c.updates = n_updates;
  c.instantiates = n_instantiates;
  return c;
}

MgpuRegistration::MgpuRegistration(Driver &driver) {
  Driver *expected = nullptr;
  if (!registered.compare_exchange_strong(expected, &driver))
    throw Error("internal: a second CUDA backend in one process (the mgpu* functions serve one)");
  pool_failed.store(false); // a new driver: try its pool again
  for (auto *n : {&n_launches, &n_captured, &n_graph_launches, &n_captures, &n_updates,
                  &n_instantiates})
    n->store(0);
}

MgpuRegistration::~MgpuRegistration() {
  if (Driver *d = registered.exchange(nullptr)) {
    d->make_current();
    unload_all(*d);
  }
  std::lock_guard<std::mutex> lock(sync_mutex);
  sync_allocated.clear(); // the driver's memory goes with it
  take_mgpu_error();
}

void load_mgpu_modules() {
  Driver *d = registered.load(std::memory_order_acquire);
  if (!d)
    throw Error("internal: loading kernel modules with no CUDA backend");
  d->make_current();
  std::lock_guard<std::mutex> lock(registry_mutex);
  for (LazyModule *m : registry()) {
    std::lock_guard<std::mutex> module_lock(m->mutex);
    load_locked(*m, *d);
  }
}

std::string take_mgpu_error() {
  std::lock_guard<std::mutex> lock(error_mutex);
  std::string e;
  e.swap(first_error);
  any_error.store(false, std::memory_order_release);
  return e;
}

} // namespace moec::cuda

using namespace moec::cuda;

extern "C" {

void *mgpuModuleLoad(void *data, std::size_t /*size*/) {
  auto *m = new LazyModule;
  m->image = data;
  std::lock_guard<std::mutex> lock(registry_mutex);
  registry().push_back(m);
  return m;
}

void *mgpuModuleLoadJIT(void *data, int /*optLevel*/) {
  auto *m = static_cast<LazyModule *>(mgpuModuleLoad(data, 0));
  m->ptx = true;
  return m;
}

void mgpuModuleUnload(void *module) {
  // Runs from a global destructor: the CUmodule went with the backend (or is left to process
  // teardown, the driver may already be shutting down); just drop the bookkeeping.
  auto *m = static_cast<LazyModule *>(module);
  {
    std::lock_guard<std::mutex> lock(registry_mutex);
    auto &r = registry();
    r.erase(std::remove(r.begin(), r.end(), m), r.end());
  }
  delete m;
}

void *mgpuModuleGetFunction(void *module, const char *name) {
  auto *m = static_cast<LazyModule *>(module);
  CUfunction f = nullptr;
  if (m->loaded.load(std::memory_order_acquire) && !any_error.load(std::memory_order_acquire))
    for (const Kernel &k : m->kernels) // loaded: read-only until the backend goes
      if (std::strcmp(k.name.c_str(), name) == 0)
        return k.function;
  guarded([&](Driver &d) { // not warmed up, or a name the PTX scan missed
    std::lock_guard<std::mutex> lock(m->mutex);
    load_locked(*m, d);
    for (const Kernel &k : m->kernels)
      if (std::strcmp(k.name.c_str(), name) == 0) {
        f = k.function;
        return;
      }
    d.check(d.api().cuModuleGetFunction(&f, m->module, name),
            (std::string("cuModuleGetFunction(") + name + ")").c_str());
  });
  return f;
}

void mgpuLaunchKernel(void *function, std::intptr_t gridX, std::intptr_t gridY,
                      std::intptr_t gridZ, std::intptr_t blockX, std::intptr_t blockY,
                      std::intptr_t blockZ, std::int32_t smem, void *stream, void **params,
                      void **extra, std::size_t /*paramsCount*/) {
  if (!function)
    return; // the lookup failed and recorded why
  guarded([&](Driver &d) {
    if (gridX == 0 || gridY == 0 || gridZ == 0)
      return; // an empty launch (zero tokens or rows) does nothing
    d.check(d.api().cuLaunchKernel(static_cast<CUfunction>(function), unsigned(gridX),
                                   unsigned(gridY), unsigned(gridZ), unsigned(blockX),
                                   unsigned(blockY), unsigned(blockZ), unsigned(smem),
                                   static_cast<CUstream>(stream), params, extra),
            "cuLaunchKernel");
    ++(capturing ? n_captured : n_launches);
  });
}

void *mgpuStreamCreate() {
  if (capturing)
    return capturing->stream;
  CUstream s = nullptr;
  // A blocking stream (flags 0), unlike MLIR's own wrappers: the runtime uploads tokens and
  // weights with cuMemcpyHtoD and zeroes the KV cache with cuMemsetD8 on the legacy default
  // stream, and neither has finished on the device when it returns (pageable HtoD returns once
  // staged; memset is asynchronous). Work in a blocking stream waits for that legacy-stream
  // work; a CU_STREAM_NON_BLOCKING stream would race it.
  guarded([&](Driver &d) { d.check(d.api().cuStreamCreate(&s, /*CU_STREAM_DEFAULT*/ 0), "cuStreamCreate"); });
  return s;
}

void mgpuStreamDestroy(void *stream) {
  if (capturing && stream == capturing->stream)
    return; // StepGraph's own stream
  guarded([&](Driver &d) { d.api().cuStreamDestroy(static_cast<CUstream>(stream)); });
}

void mgpuStreamSynchronize(void *stream) {
  if (capturing && stream == capturing->stream)
    return; // nothing ran yet: the graph launch is waited for by StepGraph
  guarded([&](Driver &d) {
    d.check(d.api().cuStreamSynchronize(static_cast<CUstream>(stream)),
            "cuStreamSynchronize (a kernel failed)");
  });
}

void mgpuStreamWaitEvent(void *stream, void *event) {
  guarded([&](Driver &d) {
    d.check(d.api().cuStreamWaitEvent(static_cast<CUstream>(stream), static_cast<CUevent>(event), 0),
            "cuStreamWaitEvent");
  });
}

void *mgpuEventCreate() {
  CUevent e = nullptr;
  guarded([&](Driver &d) { d.check(d.api().cuEventCreate(&e, /*disable timing*/ 2), "cuEventCreate"); });
  return e;
}

void mgpuEventDestroy(void *event) {
  guarded([&](Driver &d) { d.api().cuEventDestroy(static_cast<CUevent>(event)); });
}

void mgpuEventSynchronize(void *event) {
  guarded([&](Driver &d) {
    d.check(d.api().cuEventSynchronize(static_cast<CUevent>(event)), "cuEventSynchronize");
  });
}

void mgpuEventRecord(void *event, void *stream) {
  guarded([&](Driver &d) {
    d.check(d.api().cuEventRecord(static_cast<CUevent>(event), static_cast<CUstream>(stream)),
            "cuEventRecord");
  });
}

void *mgpuMemAlloc(std::uint64_t bytes, void *stream, bool /*isHostShared*/) {
  CUdeviceptr p = 0;
  if (bytes == 0)
    return nullptr;
  if (capturing)
    return reinterpret_cast<void *>(static_cast<std::uintptr_t>(capturing->alloc(bytes)));
  guarded([&](Driver &d) {
    // Stream-ordered allocation from the device's pool: cheap enough per call.
    if (d.api().cuMemAllocAsync && !pool_failed.load(std::memory_order_relaxed)) {
      if (d.api().cuMemAllocAsync(&p, bytes, static_cast<CUstream>(stream)) == 0)
        return;
      pool_failed.store(true); // no pool here (or it is out of memory): plain allocations
      p = 0;
    }
    d.check(d.api().cuMemAlloc(&p, bytes),
            ("cuMemAlloc of " + std::to_string(bytes) + " bytes").c_str());
    if (d.api().cuMemFreeAsync) { // mgpuMemFree must know to use cuMemFree for this one
      std::lock_guard<std::mutex> lock(sync_mutex);
      sync_allocated.insert(p);
    }
  });
  return reinterpret_cast<void *>(static_cast<std::uintptr_t>(p));
}

void mgpuMemFree(void *ptr, void *stream) {
  if (!ptr)
    return;
  if (capturing && capturing->release(reinterpret_cast<std::uintptr_t>(ptr)))
    return;
  guarded([&](Driver &d) {
    CUdeviceptr p = reinterpret_cast<std::uintptr_t>(ptr);
    bool sync = !d.api().cuMemFreeAsync;
    if (!sync && pool_failed.load(std::memory_order_relaxed)) {
      std::lock_guard<std::mutex> lock(sync_mutex);
      sync = sync_allocated.erase(p) > 0;
    }
    if (sync)
      d.check(d.api().cuMemFree(p), "cuMemFree");
    else
      d.check(d.api().cuMemFreeAsync(p, static_cast<CUstream>(stream)), "cuMemFreeAsync");
  });
}

void mgpuMemcpy(void *dst, void *src, std::size_t bytes, void *stream) {
  guarded([&](Driver &d) {
    d.check(d.api().cuMemcpyAsync(reinterpret_cast<std::uintptr_t>(dst),
                                  reinterpret_cast<std::uintptr_t>(src), bytes,
                                  static_cast<CUstream>(stream)),
            "cuMemcpyAsync");
  });
}

void mgpuMemset32(void *dst, unsigned value, std::size_t count, void *stream) {
  guarded([&](Driver &d) {
    d.check(d.api().cuMemsetD32Async(reinterpret_cast<std::uintptr_t>(dst), value, count,
                                     static_cast<CUstream>(stream)),
            "cuMemsetD32Async");
  });
}

void mgpuMemset16(void *dst, unsigned short value, std::size_t count, void *stream) {
  guarded([&](Driver &d) {
    d.check(d.api().cuMemsetD16Async(reinterpret_cast<std::uintptr_t>(dst), value, count,
                                     static_cast<CUstream>(stream)),
            "cuMemsetD16Async");
  });
}

void mgpuSetDefaultDevice(std::int32_t /*device*/) {} // device chosen by $MOEC_CUDA_DEVICE

} // extern "C"
