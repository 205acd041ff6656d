// cuda_driver.cpp — the driver layer: libcuda.so.1 via dlopen, the context, device buffers.
#include "moec/cuda.h"

#include "moec/error.h"

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
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

Driver::Driver() {
  static std::atomic<std::uint64_t> next_id{1};
  id_ = next_id++;
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
  // The graph entry points: all or none (an older driver, or a test double without them:
  // StepGraph then launches directly). Only the CUDA 12+ forms: cuStreamBeginCapture without
  // _v2 takes no capture mode, cuGraphExecUpdate without it has the old result arguments.
  bool graphs = true;
  graphs &= resolve(handle_, api_.cuStreamBeginCapture, "cuStreamBeginCapture_v2");
  graphs &= resolve(handle_, api_.cuStreamEndCapture, "cuStreamEndCapture");
  graphs &= resolve(handle_, api_.cuGraphInstantiateWithFlags, "cuGraphInstantiateWithFlags");
  graphs &= resolve(handle_, api_.cuGraphExecUpdate, "cuGraphExecUpdate_v2");
  graphs &= resolve(handle_, api_.cuGraphLaunch, "cuGraphLaunch");
  graphs &= resolve(handle_, api_.cuGraphExecDestroy, "cuGraphExecDestroy");
  graphs &= resolve(handle_, api_.cuGraphDestroy, "cuGraphDestroy");
  if (!graphs)
    api_.cuStreamBeginCapture = nullptr; // has_graphs() is false
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
  make_current();
}

Driver::~Driver() {
  // The primary context stays retained and libcuda stays mapped until the process exits:
  // releasing the context would free memory the generated code's stream-ordered pool still
  // tracks, and NVIDIA's driver is not meant to be unloaded while its threads run. A later
  // Driver (tests) dlopens the same handle again and retains the same context.
}

namespace {
thread_local std::uint64_t current_driver_on_thread = 0; // Driver::id_ made current here
} // namespace

void Driver::make_current() const {
  if (current_driver_on_thread == id_)
    return;
  check(api_.cuCtxSetCurrent(context_), "cuCtxSetCurrent");
  current_driver_on_thread = id_;
}

std::pair<std::uint64_t, std::uint64_t> Driver::memory_info() const {
  make_current();
  std::size_t free_bytes = 0, total = 0;
  check(api_.cuMemGetInfo(&free_bytes, &total), "cuMemGetInfo");
  return {free_bytes, total};
}

// --- DeviceBuffer ------------------------------------------------------------------------------

DeviceBuffer::DeviceBuffer(const Driver &driver, std::size_t bytes) : driver_(&driver), bytes_(bytes) {
  driver.make_current();
  if (bytes)
    driver.check(driver.api().cuMemAlloc(&ptr_, bytes),
                 ("cuMemAlloc of " + std::to_string(bytes) + " bytes").c_str());
}

DeviceBuffer::~DeviceBuffer() { release(); }

void DeviceBuffer::release() {
  if (ptr_) {
    driver_->make_current();
    driver_->api().cuMemFree(ptr_);
  }
  ptr_ = 0;
  bytes_ = 0;
}

DeviceBuffer &DeviceBuffer::operator=(DeviceBuffer &&o) noexcept {
  if (this != &o) {
    release();
    driver_ = o.driver_;
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
  driver_->make_current();
  driver_->check(driver_->api().cuMemcpyHtoD(ptr_ + offset, host, bytes), "cuMemcpyHtoD");
}

void DeviceBuffer::download(void *host, std::size_t bytes) const {
  if (bytes > bytes_)
    throw Error("internal: device download past the end of a buffer");
  driver_->make_current();
  driver_->check(driver_->api().cuMemcpyDtoH(host, ptr_, bytes), "cuMemcpyDtoH");
}

void DeviceBuffer::zero() {
  if (!ptr_)
    return;
  driver_->make_current();
  driver_->check(driver_->api().cuMemsetD8(ptr_, 0, bytes_), "cuMemsetD8");
}

double measure_copy_bandwidth_gbs(const Driver &d, std::uint64_t bytes, int repeats) {
  if (bytes == 0)
    throw Error("device bandwidth probe: the buffer is empty");
  constexpr int kCopies = 8; // per timed probe: a 256 MiB copy alone is ~0.1 ms on HBM3e
  d.make_current();
  DeviceBuffer src(d, bytes), dst(d, bytes);
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

} // namespace moec::cuda
