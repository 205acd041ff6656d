// cuda_driver.cpp — libcuda.so.1 via dlopen, device buffers, and the GPU entry points.
#include "moec/cuda.h"

#include "moec/error.h"
#include "moec/manifest.h"

#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

namespace moec::cuda {
namespace {

// CUdevice_attribute values used here (driver ABI).
constexpr int kAttrComputeCapabilityMajor = 75;
constexpr int kAttrComputeCapabilityMinor = 76;

template <typename F> bool resolve(void *handle, F &fn, const char *name, const char *v2 = nullptr) {
  void *p = v2 ? ::dlsym(handle, v2) : nullptr;
  if (!p)
    p = ::dlsym(handle, name);
  fn = reinterpret_cast<F>(p);
  return p != nullptr;
}

} // namespace

std::string driver_library_name() {
  const char *env = std::getenv("MOEC_CUDA_DRIVER");
  return env && *env ? env : "libcuda.so.1";
}

std::string Driver::describe(CUresult r, const char *what) const {
  const char *name = nullptr, *text = nullptr;
  if (api_.cuGetErrorName)
    api_.cuGetErrorName(r, &name);
  if (api_.cuGetErrorString)
    api_.cuGetErrorString(r, &text);
  std::string msg = std::string("CUDA: ") + what + ": " + (name ? name : "error " + std::to_string(r));
  if (text)
    msg += std::string(" (") + text + ")";
  return msg;
}

void Driver::check(CUresult r, const char *what) const {
  if (r != 0)
    throw Error(describe(r, what));
}

void Driver::load() {
  const std::string lib = driver_library_name();
  handle_ = ::dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle_) {
    const char *why = ::dlerror();
    throw Error("no CUDA driver found (" + lib + "): " + (why ? why : "dlopen failed") +
                "; this binary was compiled for --target nvptx and needs an NVIDIA GPU and its "
                "driver");
  }
  bool ok = true;
  ok &= resolve(handle_, api_.cuInit, "cuInit");
  ok &= resolve(handle_, api_.cuDeviceGetCount, "cuDeviceGetCount");
  ok &= resolve(handle_, api_.cuDeviceGet, "cuDeviceGet");
  ok &= resolve(handle_, api_.cuDeviceGetName, "cuDeviceGetName");
  ok &= resolve(handle_, api_.cuDeviceGetAttribute, "cuDeviceGetAttribute");
  ok &= resolve(handle_, api_.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
  ok &= resolve(handle_, api_.cuCtxSetCurrent, "cuCtxSetCurrent");
  resolve(handle_, api_.cuGetErrorName, "cuGetErrorName");
  resolve(handle_, api_.cuGetErrorString, "cuGetErrorString");
  ok &= resolve(handle_, api_.cuModuleLoadDataEx, "cuModuleLoadDataEx");
  ok &= resolve(handle_, api_.cuModuleUnload, "cuModuleUnload");
  ok &= resolve(handle_, api_.cuModuleGetFunction, "cuModuleGetFunction");
  ok &= resolve(handle_, api_.cuLaunchKernel, "cuLaunchKernel");
  ok &= resolve(handle_, api_.cuStreamCreate, "cuStreamCreate");
  ok &= resolve(handle_, api_.cuStreamSynchronize, "cuStreamSynchronize");
  ok &= resolve(handle_, api_.cuStreamDestroy, "cuStreamDestroy", "cuStreamDestroy_v2");
  ok &= resolve(handle_, api_.cuStreamWaitEvent, "cuStreamWaitEvent");
  ok &= resolve(handle_, api_.cuEventCreate, "cuEventCreate");
  ok &= resolve(handle_, api_.cuEventDestroy, "cuEventDestroy", "cuEventDestroy_v2");
  ok &= resolve(handle_, api_.cuEventRecord, "cuEventRecord");
  ok &= resolve(handle_, api_.cuEventSynchronize, "cuEventSynchronize");
  ok &= resolve(handle_, api_.cuMemAlloc, "cuMemAlloc", "cuMemAlloc_v2");
  ok &= resolve(handle_, api_.cuMemFree, "cuMemFree", "cuMemFree_v2");
  resolve(handle_, api_.cuMemAllocAsync, "cuMemAllocAsync");
  resolve(handle_, api_.cuMemFreeAsync, "cuMemFreeAsync");
  ok &= resolve(handle_, api_.cuMemcpyHtoD, "cuMemcpyHtoD", "cuMemcpyHtoD_v2");
  ok &= resolve(handle_, api_.cuMemcpyDtoH, "cuMemcpyDtoH", "cuMemcpyDtoH_v2");
  ok &= resolve(handle_, api_.cuMemcpyAsync, "cuMemcpyAsync");
  ok &= resolve(handle_, api_.cuMemsetD8, "cuMemsetD8", "cuMemsetD8_v2");
  ok &= resolve(handle_, api_.cuMemsetD32Async, "cuMemsetD32Async");
  ok &= resolve(handle_, api_.cuMemsetD16Async, "cuMemsetD16Async");
  ok &= resolve(handle_, api_.cuMemGetInfo, "cuMemGetInfo", "cuMemGetInfo_v2");
  if (!ok)
    throw Error("no usable CUDA driver (" + lib + "): it lacks driver API entry points; the "
                "NVIDIA driver may be too old");
  check(api_.cuInit(0), "cuInit");
  int count = 0;
  check(api_.cuDeviceGetCount(&count), "cuDeviceGetCount");
  if (count < 1)
    throw Error("no CUDA device: the driver (" + lib + ") reports 0 GPUs");
  int ordinal = 0;
  if (const char *env = std::getenv("MOEC_CUDA_DEVICE"))
    ordinal = std::atoi(env);
  if (ordinal < 0 || ordinal >= count)
    throw Error("MOEC_CUDA_DEVICE=" + std::to_string(ordinal) + " but there are " +
                std::to_string(count) + " CUDA devices");
  check(api_.cuDeviceGet(&device_, ordinal), "cuDeviceGet");
  char name[256] = {0};
  if (api_.cuDeviceGetName(name, sizeof name - 1, device_) == 0)
    name_ = name;
  int major = 0, minor = 0;
  api_.cuDeviceGetAttribute(&major, kAttrComputeCapabilityMajor, device_);
  api_.cuDeviceGetAttribute(&minor, kAttrComputeCapabilityMinor, device_);
  cc_ = major * 10 + minor;
  if (cc_ != 0 && cc_ < 80)
    throw Error("CUDA device " + name_ + " has compute capability " + std::to_string(major) +
                "." + std::to_string(minor) + "; the nvptx target needs 8.0 or newer (bf16 "
                "tensor cores)");
  check(api_.cuDevicePrimaryCtxRetain(&context_, device_), "cuDevicePrimaryCtxRetain");
  check(api_.cuCtxSetCurrent(context_), "cuCtxSetCurrent");
}

Driver &Driver::get() {
  static Driver driver;
  static std::once_flag once;
  static std::string failure;
  std::call_once(once, [] {
    try {
      driver.load();
    } catch (const Error &e) {
      failure = e.what();
    }
  });
  if (!failure.empty())
    throw Error(failure);
  // The context is per thread: make it current on whichever thread calls.
  if (driver.context_)
    driver.api_.cuCtxSetCurrent(driver.context_);
  return driver;
}

// --- DeviceBuffer ------------------------------------------------------------------------------

DeviceBuffer::DeviceBuffer(std::size_t bytes) : bytes_(bytes) {
  Driver &d = Driver::get();
  if (bytes)
    d.check(d.api().cuMemAlloc(&ptr_, bytes),
            ("cuMemAlloc of " + std::to_string(bytes) + " bytes").c_str());
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_)
    Driver::get().api().cuMemFree(ptr_);
}

DeviceBuffer &DeviceBuffer::operator=(DeviceBuffer &&o) noexcept {
  if (this != &o) {
    if (ptr_)
      Driver::get().api().cuMemFree(ptr_);
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    o.ptr_ = 0;
    o.bytes_ = 0;
  }
  return *this;
}

void DeviceBuffer::upload(const void *host, std::size_t bytes, std::size_t offset) {
  if (offset + bytes > bytes_)
    throw Error("internal: device upload past the end of a buffer");
  Driver &d = Driver::get();
  d.check(d.api().cuMemcpyHtoD(ptr_ + offset, host, bytes), "cuMemcpyHtoD");
}

std::pair<std::uint64_t, std::uint64_t> device_memory() {
  Driver &d = Driver::get();
  std::size_t free_bytes = 0, total = 0;
  d.check(d.api().cuMemGetInfo(&free_bytes, &total), "cuMemGetInfo");
  return {free_bytes, total};
}

double measure_device_copy_bandwidth_gbs(std::uint64_t bytes, int repeats) {
  if (bytes == 0)
    throw Error("device bandwidth probe: the buffer is empty");
  constexpr int kCopies = 8; // per timed probe: a 256 MiB copy alone is ~0.1 ms on HBM3e
  Driver &d = Driver::get();
  DeviceBuffer src(bytes), dst(bytes);
  d.check(d.api().cuMemsetD8(reinterpret_cast<std::uintptr_t>(src.get()), 1, bytes), "cuMemsetD8");
  auto copy = [&] {
    d.check(d.api().cuMemcpyAsync(reinterpret_cast<std::uintptr_t>(dst.get()),
                                  reinterpret_cast<std::uintptr_t>(src.get()), bytes, nullptr),
            "cuMemcpyAsync (device to device)");
  };
  auto sync = [&] { d.check(d.api().cuStreamSynchronize(nullptr), "cuStreamSynchronize"); };
  copy(); // warm-up: first-touch costs stay out of the probes
  sync();
  double best = 0;
  for (int r = 0; r < std::max(repeats, 1); ++r) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < kCopies; ++i)
      copy();
    sync();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (secs > 0)
      best = std::max(best, 2.0 * kCopies * static_cast<double>(bytes) / secs / 1e9);
  }
  return best;
}

void DeviceBuffer::download(void *host, std::size_t bytes) const {
  Driver &d = Driver::get();
  d.check(d.api().cuMemcpyDtoH(host, ptr_, bytes), "cuMemcpyDtoH");
}

// --- GPU entry points --------------------------------------------------------------------------

bool manifest_targets_gpu(const char *manifest) {
  if (!manifest)
    return false;
  for (const char *p = std::strstr(manifest, "\"target\""); p; p = std::strstr(p + 1, "\"target\"")) {
    const char *q = p + 8;
    while (*q == ' ' || *q == '\n' || *q == '\t' || *q == ':')
      ++q;
    if (std::strncmp(q, "\"nvptx\"", 7) == 0)
      return true;
  }
  return false;
}

namespace {

/// What lives on the device for one loaded model.
struct DeviceModel {
  EntryPoints generated{};
  const void *host_weights = nullptr; // the host arena uploaded (re-uploaded if it changes)
  bool from_checkpoint = false;       // weights loaded by load_device_weights: no host arena
  DeviceBuffer weights;               // [weights.bytes]
  DeviceBuffer kv;                    // [kv_cache.bytes], zeroed
  DeviceBuffer tokens;                // int32 [max_seq_len]
  DeviceBuffer logits;                // f32 [vocab_size]
  std::int64_t vocab = 0, max_seq_len = 0;

  /// Device memory for one model; the weights are left to the caller.
  void allocate(const Manifest &m) {
    Driver &d = Driver::get();
    weights = DeviceBuffer(m.weights_bytes);
    kv = DeviceBuffer(m.kv_bytes);
    d.check(d.api().cuMemsetD8(reinterpret_cast<CUdeviceptr>(kv.get()), 0, m.kv_bytes),
            "cuMemsetD8");
    tokens = DeviceBuffer(static_cast<std::size_t>(m.max_seq_len) * 4);
    logits = DeviceBuffer(static_cast<std::size_t>(m.config.vocab_size) * 4);
    vocab = m.config.vocab_size;
    max_seq_len = m.max_seq_len;
  }

  void ensure(const void *host_weights_now) {
    if (from_checkpoint || host_weights == host_weights_now)
      return;
    const Manifest m = parse_manifest(generated.manifest);
    allocate(m);
    weights.upload(host_weights_now, m.weights_bytes);
    host_weights = host_weights_now;
  }

  void after_call(float *host_logits) {
    std::string err = take_mgpu_error();
    if (!err.empty())
      throw Error(err);
    logits.download(host_logits, static_cast<std::size_t>(vocab) * 4);
  }
};

DeviceModel &model() {
  static DeviceModel m;
  return m;
}

void prefill_gpu(void *weights, void * /*kv: host arena unused, the cache lives on the GPU*/,
                 const std::int32_t *tokens, std::int64_t n_tokens, std::int64_t pos,
                 float *logits) {
  DeviceModel &m = model();
  m.ensure(weights);
  m.tokens.upload(tokens, static_cast<std::size_t>(n_tokens) * 4);
  m.generated.prefill(m.weights.get(), m.kv.get(), static_cast<const std::int32_t *>(m.tokens.get()),
                      n_tokens, pos, static_cast<float *>(m.logits.get()));
  m.after_call(logits);
}

void decode_gpu(void *weights, void *, const std::int32_t *token, std::int64_t pos, float *logits) {
  DeviceModel &m = model();
  m.ensure(weights);
  m.tokens.upload(token, 4);
  m.generated.decode(m.weights.get(), m.kv.get(), static_cast<const std::int32_t *>(m.tokens.get()),
                     pos, static_cast<float *>(m.logits.get()));
  m.after_call(logits);
}

} // namespace

void load_device_weights(const Manifest &manifest, const Checkpoint &checkpoint,
                         const LoadOptions &options) {
  DeviceModel &m = model();
  m.allocate(manifest);
  copy_weights(manifest, checkpoint, options,
               [&](std::uint64_t at, const void *src, std::uint64_t n) {
                 m.weights.upload(src, static_cast<std::size_t>(n), static_cast<std::size_t>(at));
               });
  m.from_checkpoint = true;
  m.host_weights = nullptr;
}

EntryPoints device_entry_points(const EntryPoints &generated) {
  model().generated = generated;
  return EntryPoints{generated.manifest, prefill_gpu, decode_gpu};
}

} // namespace moec::cuda
