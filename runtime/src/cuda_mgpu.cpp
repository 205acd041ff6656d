// cuda_mgpu.cpp — the mgpu* runtime functions that MLIR's gpu-to-llvm lowering calls.
//
// Signatures are those MLIR 22 emits (see mlir/lib/Conversion/GPUCommon and the gpu.binary
// translation): the module is "loaded" from a global constructor at program start, so
// mgpuModuleLoad/LoadJIT only record the embedded PTX/cubin; cuModuleLoadDataEx (the driver
// JIT-compiles PTX for the GPU present) runs on the first mgpuModuleGetFunction. That keeps a
// binary startable without CUDA. Generated code cannot handle C++ exceptions, so failures are
// recorded (first one wins), later calls become no-ops, and the runtime raises the message
// after the entry point returns (cuda::take_mgpu_error).
#include "moec/cuda.h"

#include "moec/error.h"

#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <unordered_map>

namespace moec::cuda {
namespace {

std::mutex error_mutex;
std::string first_error;

void record(const std::string &message) {
  std::lock_guard<std::mutex> lock(error_mutex);
  if (first_error.empty())
    first_error = message;
}

bool failed() {
  std::lock_guard<std::mutex> lock(error_mutex);
  return !first_error.empty();
}

/// Runs `f` with the driver; records any moec::Error instead of throwing.
template <typename F> void guarded(F &&f) {
  if (failed())
    return;
  try {
    f(Driver::get());
  } catch (const Error &e) {
    record(e.what());
  }
}

/// What mgpuModuleLoad* returns: the image, loaded into a CUmodule on first use.
struct LazyModule {
  const void *image = nullptr;
  bool ptx = false;
  CUmodule module = nullptr;
  std::unordered_map<std::string, CUfunction> functions;
  std::mutex mutex;
};

CUmodule ensure_loaded(LazyModule &m, Driver &d) {
  if (m.module)
    return m.module;
  // JIT options: the error log, so a PTX the driver rejects says why.
  constexpr int kErrorLogBuffer = 5, kErrorLogBufferSize = 6;
  static char log[8192];
  log[0] = 0;
  int options[2] = {kErrorLogBuffer, kErrorLogBufferSize};
  void *values[2] = {log, reinterpret_cast<void *>(static_cast<std::uintptr_t>(sizeof log))};
  CUresult r = d.api().cuModuleLoadDataEx(&m.module, m.image, 2, options, values);
  if (r != 0) {
    std::string msg = d.describe(r, m.ptx ? "cuModuleLoadDataEx (JIT-compiling the embedded PTX)"
                                          : "cuModuleLoadDataEx");
    if (log[0])
      msg += ": " + std::string(log);
    m.module = nullptr;
    throw Error(msg);
  }
  return m.module;
}

} // namespace

std::string take_mgpu_error() {
  std::lock_guard<std::mutex> lock(error_mutex);
  std::string e;
  e.swap(first_error);
  return e;
}

} // namespace moec::cuda

using namespace moec::cuda;

extern "C" {

void *mgpuModuleLoad(void *data, std::size_t /*size*/) {
  auto *m = new LazyModule;
  m->image = data;
  return m;
}

void *mgpuModuleLoadJIT(void *data, int /*optLevel*/) {
  auto *m = new LazyModule;
  m->image = data;
  m->ptx = true;
  return m;
}

void mgpuModuleUnload(void *module) {
  // Runs from a global destructor: leave the CUmodule to process teardown (the driver may
  // already be shutting down), just drop the bookkeeping.
  delete static_cast<LazyModule *>(module);
}

void *mgpuModuleGetFunction(void *module, const char *name) {
  auto *m = static_cast<LazyModule *>(module);
  CUfunction f = nullptr;
  guarded([&](Driver &d) {
    std::lock_guard<std::mutex> lock(m->mutex);
    auto it = m->functions.find(name);
    if (it != m->functions.end()) {
      f = it->second;
      return;
    }
    CUmodule mod = ensure_loaded(*m, d);
    d.check(d.api().cuModuleGetFunction(&f, mod, name),
            (std::string("cuModuleGetFunction(") + name + ")").c_str());
    m->functions.emplace(name, f);
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
  });
}

void *mgpuStreamCreate() {
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
  guarded([&](Driver &d) { d.api().cuStreamDestroy(static_cast<CUstream>(stream)); });
}

void mgpuStreamSynchronize(void *stream) {
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
  guarded([&](Driver &d) {
    // Stream-ordered allocation from the device's pool: cheap enough per call.
    if (d.api().cuMemAllocAsync)
      d.check(d.api().cuMemAllocAsync(&p, bytes, static_cast<CUstream>(stream)),
              ("cuMemAllocAsync of " + std::to_string(bytes) + " bytes").c_str());
    else
      d.check(d.api().cuMemAlloc(&p, bytes),
              ("cuMemAlloc of " + std::to_string(bytes) + " bytes").c_str());
  });
  return reinterpret_cast<void *>(static_cast<std::uintptr_t>(p));
}

void mgpuMemFree(void *ptr, void *stream) {
  if (!ptr)
    return;
  guarded([&](Driver &d) {
    CUdeviceptr p = reinterpret_cast<std::uintptr_t>(ptr);
    if (d.api().cuMemFreeAsync)
      d.check(d.api().cuMemFreeAsync(p, static_cast<CUstream>(stream)), "cuMemFreeAsync");
    else
      d.check(d.api().cuMemFree(p), "cuMemFree");
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
