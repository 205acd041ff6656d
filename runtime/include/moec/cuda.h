// moec/cuda.h — the CUDA driver layer: libcuda.so.1 loaded at run time, its typed function
// table, device buffers, the hook of the mgpu* functions that generated code calls, and
// StepGraph, which runs one generated call as a captured CUDA graph.
//
// Nothing here links against CUDA: the CUDA backend (moec/backend.h, backend_cuda.cpp)
// constructs a Driver, which dlopens libcuda.so.1, so a binary starts (and `--help`,
// `--tokenize` work) on a machine without CUDA, and only running the model fails, with a clear
// message. $MOEC_CUDA_DRIVER names another library (tests use a fake one, test/gpu-emu the PTX
// interpreter). This layer knows nothing of manifests, weights or the run loop.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

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
using CUgraph = struct CUgraph_st *;
using CUgraphExec = struct CUgraphExec_st *;
using CUgraphNode = struct CUgraphNode_st *;

/// What cuGraphExecUpdate_v2 reports (CUgraphExecUpdateResultInfo_v1 of the driver ABI).
struct CUgraphExecUpdateResultInfo {
  int result;
  CUgraphNode errorNode;
  CUgraphNode errorFromNode;
};

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
  // Stream capture and graphs (CUDA 12+ names and signatures): optional, all null unless the
  // driver has every one of them; then the CUDA backend launches kernels directly.
  CUresult (*cuStreamBeginCapture)(CUstream, int /*CUstreamCaptureMode*/); // _v2
  CUresult (*cuStreamEndCapture)(CUstream, CUgraph *);
  CUresult (*cuGraphInstantiateWithFlags)(CUgraphExec *, CUgraph, unsigned long long);
  CUresult (*cuGraphExecUpdate)(CUgraphExec, CUgraph, CUgraphExecUpdateResultInfo *); // _v2
  CUresult (*cuGraphLaunch)(CUgraphExec, CUstream);
  CUresult (*cuGraphExecDestroy)(CUgraphExec);
  CUresult (*cuGraphDestroy)(CUgraph);
  bool has_graphs() const { return cuStreamBeginCapture != nullptr; }
};

/// The loaded driver and the primary context of device 0 (or $MOEC_CUDA_DEVICE). Owned by the
/// CUDA backend; several may exist one after another in a process (tests), each loading the
/// library again (dlopen counts references).
class Driver {
public:
  /// Loads the library, initialises it, retains the device's primary context and makes it
  /// current on this thread. Throws moec::Error: "no CUDA driver found (libcuda.so.1): ...",
  /// "no CUDA device", a compute capability below 8.0, or the failing call with the driver's
  /// error name and string.
  Driver();
  ~Driver();
  Driver(const Driver &) = delete;
  Driver &operator=(const Driver &) = delete;

  const DriverApi &api() const { return api_; }
  CUdevice device() const { return device_; }
  const std::string &device_name() const { return name_; }
  int compute_capability() const { return cc_; } // e.g. 90

  /// Makes the context current on the calling thread; a driver call only the first time on
  /// each thread (the context is per thread, and the check is a thread_local compare).
  void make_current() const;

  /// Throws moec::Error "CUDA: <what>: <ERROR_NAME> (<error string>)" unless r == 0.
  void check(CUresult r, const char *what) const;
  /// The message for `r` without throwing.
  std::string describe(CUresult r, const char *what) const;

  /// Free and total memory of the device (cuMemGetInfo), in bytes.
  std::pair<std::uint64_t, std::uint64_t> memory_info() const;

private:
  DriverApi api_{};
  void *handle_ = nullptr;
  CUdevice device_ = 0;
  CUcontext context_ = nullptr;
  std::uint64_t id_ = 0; // unique per Driver: the thread_local "current" mark of make_current
  std::string name_;
  int cc_ = 0;
};

/// The library that Driver() loads: $MOEC_CUDA_DRIVER, else "libcuda.so.1".
std::string driver_library_name();

/// Device buffer owned by RAII (cuMemFree on destruction); the driver must outlive it.
class DeviceBuffer {
public:
  DeviceBuffer() = default;
  DeviceBuffer(const Driver &driver, std::size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer &&o) noexcept
      : driver_(o.driver_), ptr_(o.ptr_), bytes_(o.bytes_) { o.ptr_ = 0; o.bytes_ = 0; }
  DeviceBuffer &operator=(DeviceBuffer &&o) noexcept;
  DeviceBuffer(const DeviceBuffer &) = delete;
  DeviceBuffer &operator=(const DeviceBuffer &) = delete;
  void *get() const { return reinterpret_cast<void *>(static_cast<std::uintptr_t>(ptr_)); }
  CUdeviceptr ptr() const { return ptr_; }
  std::size_t size() const { return bytes_; }
  void upload(const void *host, std::size_t bytes, std::size_t offset = 0);
  void download(void *host, std::size_t bytes) const;
  void zero();

private:
  void release();
  const Driver *driver_ = nullptr;
  CUdeviceptr ptr_ = 0;
  std::size_t bytes_ = 0;
};

/// The device's memory bandwidth: `bytes` copied device to device 8 times per probe,
/// (bytes read + bytes written) / time, best of `repeats` probes, in GB/s. Throws moec::Error
/// as every driver call does (out of memory).
double measure_copy_bandwidth_gbs(const Driver &driver, std::uint64_t bytes, int repeats = 3);

// --- the mgpu* functions (cuda_mgpu.cpp) --------------------------------------------------------

/// Makes `driver` the one the mgpu* functions use while this object lives. Generated code calls
/// them with no context argument (MLIR's runtime-wrapper ABI), so exactly one driver pointer is
/// registered process-wide: the CUDA backend's. On destruction the kernel modules it loaded are
/// unloaded and the pointer is cleared. A second registration while one lives throws.
class MgpuRegistration {
public:
  explicit MgpuRegistration(Driver &driver);
  ~MgpuRegistration();
  MgpuRegistration(const MgpuRegistration &) = delete;
  MgpuRegistration &operator=(const MgpuRegistration &) = delete;
};

/// Loads every kernel module the generated code registered (mgpuModuleLoad*, from a global
/// constructor at program start) with the registered driver (the driver JIT-compiles PTX here)
/// and resolves each module's kernels, so that no later call compiles or looks anything up.
/// Throws moec::Error (a module the driver rejects, with its log).
void load_mgpu_modules();

/// Host calls the mgpu* functions and the step graphs made since the registration: what a
/// decode token costs in launches (moec_cuda_launch_counts, --bench).
struct LaunchCounts {
  std::uint64_t kernel_launches = 0; // cuLaunchKernel calls that ran a kernel (direct)
  std::uint64_t captured = 0;        // cuLaunchKernel calls recorded into a graph (not run)
  std::uint64_t graph_launches = 0;  // cuGraphLaunch calls (StepGraph replays)
  std::uint64_t captures = 0, updates = 0, instantiates = 0;
};
LaunchCounts launch_counts();

/// The launches of one generated call (moec_step) as CUDA graphs, one executable graph per
/// recent shape (the call's sizes: rows, logits, blocks). The first call of a shape is
/// captured (cuStreamBeginCapture on this object's stream: while capturing, the mgpu*
/// functions hand the generated code this stream, make its synchronise/destroy no-ops, and
/// serve its temporaries from a scratch arena owned here), instantiated and launched. A later
/// call of the same shape and the same arguments (the pointers) replays its graph unchanged;
/// the same shape with other arguments is captured again and updates that executable graph
/// in place (cuGraphExecUpdate), or instantiates afresh when the driver refuses the update.
/// The generated host code reads nothing but its arguments (positions, kv lengths and tokens
/// are device data), so shape + arguments determine every launch.
///
/// Why an arena and not the stream-ordered allocator: cudaMallocAsync inside a capture becomes
/// a memory node whose address belongs to that graph, so a re-captured graph's kernels would
/// name other addresses than the executable graph they update (and graphs with memory nodes
/// may be instantiated once at a time). The arena is a first-fit allocator over offsets, run
/// again from empty by every capture: the same call sequence gets the same addresses, so a
/// replay is exact and an update changes only what really changed. Reusing a freed range
/// inside one capture is safe because every captured operation lands on one stream: the graph
/// is a chain. The graphs share the arena (they run one at a time, and temporaries do not
/// outlive a call). A capture that outgrows the arena is dropped, the arena grows (outside any
/// capture; the cached graphs, which name the old one, are dropped too) and the call is
/// captured again.
///
/// Anything the driver refuses (no graph entry points, a capture invalidated by a call that
/// cannot be captured, an instantiation or a graph launch that fails) turns graphs off for this
/// object with one warning line on stderr; run() then returns false and the caller launches
/// directly. Nothing of a failed capture ran on the device, so the direct call computes the
/// same bits.
class StepGraph {
public:
  static constexpr std::size_t kMaxGraphs = 8; // shapes kept; the least recently used goes

  explicit StepGraph(Driver &driver);
  ~StepGraph();
  StepGraph(const StepGraph &) = delete;
  StepGraph &operator=(const StepGraph &) = delete;

  /// Runs `call` (the generated entry point) as a graph launch for (`shape`, `args`) and waits
  /// for it; false if graphs are off (the call did not run). Throws moec::Error for a failure
  /// on the device (a kernel fault), as a direct call does.
  template <typename F>
  bool run(const std::vector<std::uint64_t> &shape, const std::vector<std::uint64_t> &args,
           F &call) {
    return run_erased(shape, args, [](void *f) { (*static_cast<F *>(f))(); }, &call);
  }
  bool enabled() const { return enabled_; }

private:
  struct Entry {
    std::vector<std::uint64_t> shape, args; // the call the executable graph holds
    CUgraphExec exec = nullptr;
    std::uint64_t last_used = 0;
  };
  bool run_erased(const std::vector<std::uint64_t> &shape, const std::vector<std::uint64_t> &args,
                  void (*call)(void *), void *arg);
  CUgraph capture(void (*call)(void *), void *arg);
  Entry *install(const std::vector<std::uint64_t> &shape, CUgraph graph);
  bool grow_arena(std::size_t bytes);
  void drop_graphs();
  void disable(const std::string &why);

  Driver &driver_;
  bool enabled_ = false;
  CUstream stream_ = nullptr;         // blocking: graph launches
  CUstream capture_stream_ = nullptr; // non-blocking: captures
  std::vector<Entry> graphs_;         // at most kMaxGraphs, distinct shapes
  std::uint64_t clock_ = 0;           // Entry::last_used
  DeviceBuffer arena_;                // the captured calls' temporaries
};

/// The first error raised inside an mgpu* call since the last call (mgpu* functions are
/// called from generated code, which cannot propagate exceptions); empty if none. Clears it.
std::string take_mgpu_error();

} // namespace moec::cuda
