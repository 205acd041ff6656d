// moec/cuda.h — the CUDA driver API, loaded at run time, and the GPU entry points.
//
// Inference binaries compiled with --target nvptx call the mgpu* functions (cuda_mgpu.cpp),
// which MLIR's gpu-to-llvm lowering emits, and the runtime keeps weights, KV cache, tokens and
// logits in device memory. Nothing here links against CUDA: libcuda.so.1 is dlopen'ed on first
// use, so a binary starts (and `--help`, `--tokenize` work) on a machine without CUDA, and
// only running the model fails, with a clear message. $MOEC_CUDA_DRIVER names another library
// (tests use a fake one).
#pragma once

#include "moec/run.h"
#include "moec/weights.h"

#include <cstddef>
#include <cstdint>
#include <utility>
#include <string>

namespace moec::cuda {

// The driver API's types, as the driver ABI defines them (no cuda.h needed).
using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;
using CUcontext = struct CUctx_st *;
using CUmodule = struct CUmod_st *;
using CUfunction = struct CUfunc_st *;
using CUstream = struct CUstream_st *;
using CUevent = struct CUevent_st *;

/// Entry points of libcuda.so.1 that the runtime uses (resolved by name, `_v2` where the
/// driver versions them).
struct DriverApi {
  CUresult (*cuInit)(unsigned);
  CUresult (*cuDeviceGetCount)(int *);
  CUresult (*cuDeviceGet)(CUdevice *, int);
  CUresult (*cuDeviceGetName)(char *, int, CUdevice);
  CUresult (*cuDeviceGetAttribute)(int *, int, CUdevice);
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *, CUdevice);
  CUresult (*cuCtxSetCurrent)(CUcontext);
  CUresult (*cuGetErrorName)(CUresult, const char **);
  CUresult (*cuGetErrorString)(CUresult, const char **);
  CUresult (*cuModuleLoadDataEx)(CUmodule *, const void *, unsigned, int *, void **);
  CUresult (*cuModuleUnload)(CUmodule);
  CUresult (*cuModuleGetFunction)(CUfunction *, CUmodule, const char *);
  CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                             unsigned, unsigned, CUstream, void **, void **);
  CUresult (*cuStreamCreate)(CUstream *, unsigned);
  CUresult (*cuStreamSynchronize)(CUstream);
  CUresult (*cuStreamDestroy)(CUstream);
  CUresult (*cuStreamWaitEvent)(CUstream, CUevent, unsigned);
  CUresult (*cuEventCreate)(CUevent *, unsigned);
  CUresult (*cuEventDestroy)(CUevent);
  CUresult (*cuEventRecord)(CUevent, CUstream);
  CUresult (*cuEventSynchronize)(CUevent);
  CUresult (*cuMemAlloc)(CUdeviceptr *, std::size_t);
  CUresult (*cuMemFree)(CUdeviceptr);
  CUresult (*cuMemAllocAsync)(CUdeviceptr *, std::size_t, CUstream); // null before CUDA 11.2
  CUresult (*cuMemFreeAsync)(CUdeviceptr, CUstream);
  CUresult (*cuMemcpyHtoD)(CUdeviceptr, const void *, std::size_t);
  CUresult (*cuMemcpyDtoH)(void *, CUdeviceptr, std::size_t);
  CUresult (*cuMemcpyAsync)(CUdeviceptr, CUdeviceptr, std::size_t, CUstream);
  CUresult (*cuMemsetD8)(CUdeviceptr, unsigned char, std::size_t);
  CUresult (*cuMemsetD32Async)(CUdeviceptr, unsigned, std::size_t, CUstream);
  CUresult (*cuMemsetD16Async)(CUdeviceptr, unsigned short, std::size_t, CUstream);
  CUresult (*cuMemGetInfo)(std::size_t *, std::size_t *);
};

/// The loaded driver with a current context on device 0 (or $MOEC_CUDA_DEVICE).
class Driver {
public:
  /// Loads the library, initialises it and makes device 0's primary context current, once.
  /// Throws moec::Error: "no CUDA driver found (libcuda.so.1): ...", "no CUDA device", or the
  /// failing call with the driver's error name and string. A failure is remembered: every
  /// later call throws the same message.
  static Driver &get();

  const DriverApi &api() const { return api_; }
  CUdevice device() const { return device_; }
  const std::string &device_name() const { return name_; }
  int compute_capability() const { return cc_; } // e.g. 90

  /// Throws moec::Error "CUDA: <what>: <ERROR_NAME> (<error string>)" unless r == 0.
  void check(CUresult r, const char *what) const;
  /// The message for `r` without throwing.
  std::string describe(CUresult r, const char *what) const;

private:
  Driver() = default;
  void load();
  DriverApi api_{};
  void *handle_ = nullptr;
  CUdevice device_ = 0;
  CUcontext context_ = nullptr;
  std::string name_;
  int cc_ = 0;
};

/// The library that Driver::get() loads: $MOEC_CUDA_DRIVER, else "libcuda.so.1".
std::string driver_library_name();

/// The first error raised inside an mgpu* call since the last call (mgpu* functions are
/// called from generated code, which cannot propagate exceptions); empty if none. Clears it.
std::string take_mgpu_error();

/// Device buffer owned by RAII (cuMemFree on destruction).
class DeviceBuffer {
public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer &&o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) { o.ptr_ = 0; o.bytes_ = 0; }
  DeviceBuffer &operator=(DeviceBuffer &&o) noexcept;
  DeviceBuffer(const DeviceBuffer &) = delete;
  DeviceBuffer &operator=(const DeviceBuffer &) = delete;
  void *get() const { return reinterpret_cast<void *>(static_cast<std::uintptr_t>(ptr_)); }
  std::size_t size() const { return bytes_; }
  void upload(const void *host, std::size_t bytes, std::size_t offset = 0);
  void download(void *host, std::size_t bytes) const;

private:
  CUdeviceptr ptr_ = 0;
  std::size_t bytes_ = 0;
};

/// EntryPoints for a model compiled with --target nvptx: same host-side contract as the CPU
/// ones (weights, KV arena pointer, host tokens and logits), implemented by keeping weights and
/// KV cache on the device, copying the tokens in and the V logits back around each call to the
/// generated function, which takes device pointers (abi.h, "GPU target"). The weights are
/// those of load_device_weights() if it ran (what Session does), else the host arena passed
/// in, uploaded on the first call (keyed by its pointer).
EntryPoints device_entry_points(const EntryPoints &generated);

/// The device's memory bandwidth as --bench's roofline: `bytes` copied device to device 8
/// times per probe, (bytes read + bytes written) / time, best of `repeats` probes, in GB/s.
/// Throws moec::Error as every driver call does (no driver, no device, out of memory).
double measure_device_copy_bandwidth_gbs(std::uint64_t bytes, int repeats = 3);

/// Loads a GPU model's weights straight from the (mmapped) checkpoint into device memory, with
/// no host copy of the arena, and allocates its KV cache there; the entry points of
/// device_entry_points() then use them whatever host weights pointer they are given.
void load_device_weights(const Manifest &manifest, const Checkpoint &checkpoint,
                         const LoadOptions &options);

/// Free and total memory of the current device (cuMemGetInfo), in bytes.
std::pair<std::uint64_t, std::uint64_t> device_memory();

/// True if the manifest text says "target": "nvptx" (a cheap check, no validation).
bool manifest_targets_gpu(const char *manifest);

} // namespace moec::cuda
