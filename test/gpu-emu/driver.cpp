// driver.cpp — TEST DOUBLE for libcuda.so.1: the CUDA driver API functions the runtime calls
// (cu*), over the PTX parser (parser.h) and interpreter (interp.h). The runtime loads this
// library through $MOEC_CUDA_DRIVER, so an inference binary compiled with --target nvptx runs
// its real kernels on a machine without a GPU, and its logits can be checked against goldens.
// Device memory is host memory (fresh allocations are 0xFF bytes, NaN, so a read of something
// never written shows); launches, copies and memsets are synchronous.
// Stream capture and graphs: work issued to a capturing stream (launches, async memsets and
// copies) is recorded, not run; cuGraphLaunch runs the recorded operations in order, with the
// parameters of the last instantiate or update. What CUDA refuses inside a capture in thread-
// local mode is refused here too and invalidates the capture (synchronising the capturing
// stream, a synchronous cuMemAlloc/cuMemFree); the stream-ordered allocator inside a capture
// (memory nodes) is not emulated and is refused the same way. moec_ptxemu_count(name) says how
// often the runtime made each host call that costs a launch (cuLaunchKernel, cuGraphLaunch,
// ...), and "kernels" how many kernels ran.
#include "moec/cuda.h"

#include "checks.h"
#include "interp.h"
#include "parser.h"

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <sys/mman.h>

using namespace moec::cuda;

namespace ptxemu {
namespace {

// Leaked on purpose, like memory(): used from static destructors of the caller.
std::mutex &g_mutex = *new std::mutex;
std::string &g_last_error = *new std::string;
std::vector<std::unique_ptr<Module>> &g_modules = *new std::vector<std::unique_ptr<Module>>;

CUresult error(CUresult code, const std::string &msg) {
  g_last_error = msg;
  std::fprintf(stderr, "ptxemu: %s\n", msg.c_str());
  return code;
}

// The device's memory: $PTXEMU_MEMORY_MIB, default 16 GiB (allocations past it fail).
std::size_t device_bytes() {
  static const std::size_t bytes = [] {
    const char *v = std::getenv("PTXEMU_MEMORY_MIB");
    return v ? std::size_t(std::strtoull(v, nullptr, 10)) << 20 : std::size_t(16) << 30;
  }();
  return bytes;
}

constexpr CUresult kInvalidValue = 1, kOutOfMemory = 2, kInvalidPtx = 218, kIllegalState = 401,
                   kNotFound = 500, kIllegalAddress = 700, kLaunchFailed = 719,
                   kCaptureUnsupported = 900, kCaptureInvalidated = 901,
                   kGraphUpdateFailure = 910;

// --- streams, capture, graphs ----------------------------------------------------------------

/// One recorded operation of a captured stream.
struct Node {
  enum Kind { Launch, Memset32, Memset16, Copy } kind = Launch;
  const Kernel *kernel = nullptr; // Launch: the kernel, its geometry, its packed parameters
  unsigned grid[3] = {}, block[3] = {}, smem = 0;
  std::vector<std::uint8_t> params;
  CUdeviceptr dst = 0, src = 0; // Memset*/Copy
  std::size_t count = 0;
  unsigned value = 0;
};
struct Graph {
  std::vector<Node> nodes;
};
struct Stream {
  Graph *capture = nullptr; // while capturing
  bool invalidated = false; // a refused call inside the capture
};
thread_local Stream *g_capturing = nullptr; // thread-local capture mode: this thread's capture

// Host calls that a launch costs, by name (moec_ptxemu_count).
std::uint64_t g_launch_calls, g_graph_launches, g_instantiates, g_updates, g_captures, g_kernels;

/// The capturing stream `s` refuses a call: the capture is invalidated (as CUDA does).
CUresult refuse_in_capture(Stream *s, const char *what) {
  s->invalidated = true;
  return error(kCaptureUnsupported, std::string(what) + " is not permitted while the stream is "
                                                        "being captured");
}

/// The stream if it is capturing.
Stream *capturing(CUstream s) {
  auto *st = reinterpret_cast<Stream *>(s);
  return st && st->capture ? st : nullptr;
}

// $PTXEMU_TRACE: copies to the host are where the runtime waits for results, so the trace
// shows where one step's launches end (test/gpu-emu/layer-report.sh splits steps there).
// This thread's CPU time: what a launch cost on a machine whose other load varies.
double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

void trace_copy_to_host(std::size_t n) {
  static const bool trace = std::getenv("PTXEMU_TRACE") != nullptr;
  if (trace) std::fprintf(stderr, "ptxemu: copy to host %zu bytes\n", n);
}

} // namespace
} // namespace ptxemu

using namespace ptxemu;

extern "C" {

const char *moec_ptxemu_last_error() { return g_last_error.c_str(); }

/// How often a host call was made since the library loaded: "cuLaunchKernel", "cuGraphLaunch",
/// "cuGraphInstantiateWithFlags", "cuGraphExecUpdate", "cuStreamBeginCapture"; "kernels": the
/// kernels that ran (direct or inside a graph launch). -1 for another name.
long long moec_ptxemu_count(const char *name) {
  const std::pair<const char *, std::uint64_t> counts[] = {
      {"cuLaunchKernel", g_launch_calls}, {"cuGraphLaunch", g_graph_launches},
      {"cuGraphInstantiateWithFlags", g_instantiates}, {"cuGraphExecUpdate", g_updates},
      {"cuStreamBeginCapture", g_captures}, {"kernels", g_kernels}};
  for (const auto &[n, v] : counts)
    if (std::strcmp(n, name) == 0) return static_cast<long long>(v);
  return -1;
}

CUresult cuInit(unsigned) { return 0; }
CUresult cuDeviceGetCount(int *n) { *n = 1; return 0; }
CUresult cuDeviceGet(CUdevice *d, int i) { *d = i; return i == 0 ? 0 : kInvalidValue; }
CUresult cuDeviceGetName(char *name, int len, CUdevice) {
  std::snprintf(name, std::size_t(len), "ptxemu (PTX interpreter)");
  return 0;
}
CUresult cuDeviceGetAttribute(int *v, int attr, CUdevice) {
  // 75/76: compute capability major/minor (8.0); 16: multiprocessors; 1: max threads per block.
  *v = attr == 75 ? 8 : attr == 76 ? 0 : attr == 16 ? 1 : attr == 1 ? 1024 : 0;
  return 0;
}
CUresult cuDevicePrimaryCtxRetain(CUcontext *ctx, CUdevice) {
  static int c;
  *ctx = reinterpret_cast<CUcontext>(&c);
  return 0;
}
CUresult cuCtxSetCurrent(CUcontext) { return 0; }
CUresult cuGetErrorName(CUresult r, const char **s) {
  switch (r) {
  case 0: *s = "CUDA_SUCCESS"; break;
  case kInvalidValue: *s = "CUDA_ERROR_INVALID_VALUE"; break;
  case kOutOfMemory: *s = "CUDA_ERROR_OUT_OF_MEMORY"; break;
  case kInvalidPtx: *s = "CUDA_ERROR_INVALID_PTX"; break;
  case kNotFound: *s = "CUDA_ERROR_NOT_FOUND"; break;
  case kIllegalAddress: *s = "CUDA_ERROR_ILLEGAL_ADDRESS"; break;
  case kIllegalState: *s = "CUDA_ERROR_ILLEGAL_STATE"; break;
  case kCaptureUnsupported: *s = "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED"; break;
  case kCaptureInvalidated: *s = "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED"; break;
  case kGraphUpdateFailure: *s = "CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE"; break;
  default: *s = "CUDA_ERROR_LAUNCH_FAILED"; break;
  }
  return 0;
}
CUresult cuGetErrorString(CUresult, const char **s) {
  *s = g_last_error.empty() ? "ptxemu error" : g_last_error.c_str();
  return 0;
}

CUresult cuModuleLoadDataEx(CUmodule *m, const void *image, unsigned n, int *opts, void **vals) {
  std::lock_guard<std::mutex> l(g_mutex);
  g_last_error.clear();
  auto mod = std::make_unique<Module>();
  try {
    parse_module(*mod, static_cast<const char *>(image));
  } catch (const std::exception &e) {
    for (unsigned i = 0; i < n; ++i)
      if (opts[i] == 5) { // CU_JIT_ERROR_LOG_BUFFER; its size is option 6
        std::size_t cap = 0;
        for (unsigned j = 0; j < n; ++j)
          if (opts[j] == 6) cap = reinterpret_cast<std::uintptr_t>(vals[j]);
        if (cap) std::snprintf(static_cast<char *>(vals[i]), cap, "ptxemu: %s", e.what());
      }
    return error(kInvalidPtx, std::string("PTX rejected: ") + e.what());
  }
  *m = reinterpret_cast<CUmodule>(mod.get());
  g_modules.push_back(std::move(mod));
  return 0;
}
CUresult cuModuleUnload(CUmodule) { return 0; }
CUresult cuModuleGetFunction(CUfunction *f, CUmodule m, const char *name) {
  for (auto &k : reinterpret_cast<Module *>(m)->kernels)
    if (k->name == name) {
      *f = reinterpret_cast<CUfunction>(k.get());
      return 0;
    }
  return error(kNotFound, std::string("no kernel named ") + name);
}

static CUresult run_node(const Node &n);
static CUresult memset32(CUdeviceptr d, unsigned v, std::size_t n);
static CUresult memset16(CUdeviceptr d, unsigned short v, std::size_t n);
static CUresult copy(CUdeviceptr d, CUdeviceptr s, std::size_t n);

/// cuLaunchKernel's checks, then the launch runs or, on a capturing stream, is recorded.
static CUresult launch_or_record(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                          unsigned by, unsigned bz, unsigned smem, CUstream stream, void **params,
                          void **extra) {
  Node n;
  {
    std::lock_guard<std::mutex> l(g_mutex);
    g_last_error.clear();
    const Kernel &k = *reinterpret_cast<const Kernel *>(f);
    if (extra) return error(kInvalidValue, k.name + ": the `extra` launch argument is not supported");
    // The limits of every GPU since sm_30: a driver refuses such launches.
    if (bx * by * bz == 0 || bx * by * bz > 1024 || bz > 64)
      return error(kInvalidValue, k.name + ": block of " + std::to_string(bx * by * bz) + " threads");
    if (gx == 0 || gy == 0 || gz == 0 || gx > 0x7fffffffu || gy > 65535 || gz > 65535)
      return error(kInvalidValue, k.name + ": grid (" + std::to_string(gx) + ", " +
                                      std::to_string(gy) + ", " + std::to_string(gz) +
                                      ") beyond the grid limits");
    if (k.shared_bytes > 48 * 1024 || smem > 48 * 1024)
      return error(kInvalidValue, k.name + ": " + std::to_string(k.shared_bytes) + " bytes of static and " +
                                      std::to_string(smem) + " of dynamic shared memory: over 48 KiB "
                                      "needs cuFuncSetAttribute, which this runtime does not call");
    n.kernel = &k;
    n.grid[0] = gx, n.grid[1] = gy, n.grid[2] = gz;
    n.block[0] = bx, n.block[1] = by, n.block[2] = bz;
    n.smem = smem;
    n.params.assign(std::max<std::size_t>(k.param_bytes, 1), 0);
    for (std::size_t i = 0; i < k.params.size(); ++i)
      std::memcpy(n.params.data() + k.params[i].offset, params[i], k.params[i].size);
  }
  if (Stream *s = capturing(stream)) { // recorded: its parameters are copied now, as CUDA does
    s->capture->nodes.push_back(std::move(n));
    return 0;
  }
  return run_node(n);
}

/// Runs one launch (direct, or a node of a graph launch).
static CUresult run_launch_node(const Node &n) {
  std::lock_guard<std::mutex> l(g_mutex);
  g_last_error.clear();
  const Kernel &k = *n.kernel;
  ++g_kernels;
  static const bool trace = std::getenv("PTXEMU_TRACE") != nullptr;
  if (trace)
    std::fprintf(stderr, "ptxemu: launch %s grid (%u,%u,%u) block (%u,%u,%u), %zu params, %zu bytes\n",
                 k.name.c_str(), n.grid[0], n.grid[1], n.grid[2], n.block[0], n.block[1],
                 n.block[2], k.params.size(), k.param_bytes);
  std::vector<std::uint8_t> pbuf = n.params;
  static std::uint32_t launches = 0;
  LaunchConfig cfg;
  cfg.id = ++launches;
  for (int i = 0; i < 3; ++i)
    cfg.grid[i] = n.grid[i], cfg.block[i] = n.block[i];
  cfg.dynamic_shared = n.smem;
  cfg.params = &pbuf;
  cfg.count_reads = trace;
  LaunchStats stats;
  auto start = std::chrono::steady_clock::now();
  const double cpu_start = thread_cpu_seconds();
  try {
    run_launch(k, cfg, &stats);
  } catch (const Fault &e) {
    std::string m = e.what();
    if (trace) std::fprintf(stderr, "ptxemu: launch %s failed: %s\n", k.name.c_str(), m.c_str());
    return error(m.find("outside") != std::string::npos ? kIllegalAddress : kLaunchFailed, m);
  }
  if (trace) {
    std::uint64_t total = 0, top = 0, distinct = 0;
    const Allocation *top_alloc = nullptr;
    for (const auto &[al, bytes] : stats.reads) {
      total += bytes;
      if (bytes > top) top = bytes, top_alloc = al;
    }
    for (const auto &[al, bytes] : stats.distinct) distinct += bytes;
    std::fprintf(stderr,
                 "ptxemu: %s done in %.3f s (cpu %.3f s); global loads %" PRIu64 " bytes, %" PRIu64
                 " of them from one buffer of %zu bytes; distinct 32-byte sectors %" PRIu64
                 " bytes\n",
                 k.name.c_str(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                 thread_cpu_seconds() - cpu_start, total, top,
                 top_alloc ? top_alloc->size : std::size_t(0), distinct);
    // PTXEMU_TRACE=2: every buffer's share, largest first (weights against activations).
    static const bool detail = std::string(std::getenv("PTXEMU_TRACE")) == "2";
    if (detail) {
      std::vector<std::pair<std::uint64_t, std::size_t>> per;
      for (const auto &[al, bytes] : stats.reads) per.emplace_back(bytes, al ? al->size : 0);
      std::sort(per.rbegin(), per.rend());
      for (const auto &[bytes, size] : per)
        std::fprintf(stderr, "ptxemu:   %" PRIu64 " bytes from a buffer of %zu bytes\n", bytes,
                     size);
    }
  }
  return 0;
}

static CUresult run_node(const Node &n) {
  switch (n.kind) {
  case Node::Launch: return run_launch_node(n);
  case Node::Memset32: return memset32(n.dst, n.value, n.count);
  case Node::Memset16: return memset16(n.dst, static_cast<unsigned short>(n.value), n.count);
  case Node::Copy: return copy(n.dst, n.src, n.count);
  }
  return kInvalidValue;
}

CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                        unsigned by, unsigned bz, unsigned smem, CUstream stream, void **params,
                        void **extra) {
  ++g_launch_calls;
  const CUresult r = launch_or_record(f, gx, gy, gz, bx, by, bz, smem, stream, params, extra);
  if (r != 0)
    if (Stream *s = capturing(stream))
      s->invalidated = true;
  return r;
}

// Each stream its own object: a capture belongs to one stream.
CUresult cuStreamCreate(CUstream *s, unsigned) {
  *s = reinterpret_cast<CUstream>(new Stream);
  return 0;
}
CUresult cuStreamSynchronize(CUstream s) {
  if (Stream *st = capturing(s)) return refuse_in_capture(st, "cuStreamSynchronize");
  return 0;
}
CUresult cuStreamDestroy_v2(CUstream s) {
  auto *st = reinterpret_cast<Stream *>(s);
  if (st && st->capture) return error(kIllegalState, "cuStreamDestroy of a capturing stream");
  delete st;
  return 0;
}

CUresult cuStreamBeginCapture_v2(CUstream s, int /*mode*/) {
  auto *st = reinterpret_cast<Stream *>(s);
  if (!st) return error(kInvalidValue, "cuStreamBeginCapture on the legacy stream");
  if (st->capture || g_capturing) return error(kIllegalState, "a capture is already in progress");
  st->capture = new Graph;
  st->invalidated = false;
  g_capturing = st;
  ++g_captures;
  return 0;
}
CUresult cuStreamEndCapture(CUstream s, CUgraph *graph) {
  auto *st = reinterpret_cast<Stream *>(s);
  *graph = nullptr;
  if (!st || !st->capture) return error(kIllegalState, "cuStreamEndCapture without a capture");
  Graph *g = st->capture;
  st->capture = nullptr;
  g_capturing = nullptr;
  if (st->invalidated) {
    delete g;
    return error(kCaptureInvalidated, "the capture was invalidated by a refused call");
  }
  *graph = reinterpret_cast<CUgraph>(g);
  return 0;
}
CUresult cuGraphInstantiateWithFlags(CUgraphExec *exec, CUgraph graph, unsigned long long) {
  ++g_instantiates;
  *exec = reinterpret_cast<CUgraphExec>(new Graph(*reinterpret_cast<Graph *>(graph)));
  return 0;
}
// An update keeps the executable graph's topology: the same operations in the same order, each
// launch of the same kernel (CUDA's rules for kernel nodes); parameters, geometry, addresses
// and sizes may change.
CUresult cuGraphExecUpdate_v2(CUgraphExec exec, CUgraph graph, CUgraphExecUpdateResultInfo *info) {
  ++g_updates;
  auto &to = *reinterpret_cast<Graph *>(exec);
  const auto &from = *reinterpret_cast<const Graph *>(graph);
  *info = {};
  bool same = to.nodes.size() == from.nodes.size();
  for (std::size_t i = 0; same && i < to.nodes.size(); ++i)
    same = to.nodes[i].kind == from.nodes[i].kind && to.nodes[i].kernel == from.nodes[i].kernel;
  if (!same) {
    info->result = 2; // CU_GRAPH_EXEC_UPDATE_ERROR_TOPOLOGY_CHANGED
    g_last_error = "cuGraphExecUpdate: the graph's topology changed"; // routine: not printed
    return kGraphUpdateFailure;
  }
  to.nodes = from.nodes;
  return 0;
}
CUresult cuGraphLaunch(CUgraphExec exec, CUstream s) {
  ++g_graph_launches;
  if (Stream *st = capturing(s)) return refuse_in_capture(st, "cuGraphLaunch");
  for (const Node &n : reinterpret_cast<const Graph *>(exec)->nodes)
    if (CUresult r = run_node(n)) return r;
  return 0;
}
CUresult cuGraphExecDestroy(CUgraphExec exec) {
  delete reinterpret_cast<Graph *>(exec);
  return 0;
}
CUresult cuGraphDestroy(CUgraph graph) {
  delete reinterpret_cast<Graph *>(graph);
  return 0;
}
CUresult cuStreamWaitEvent(CUstream, CUevent, unsigned) { return 0; }
CUresult cuEventCreate(CUevent *e, unsigned) {
  static int ev;
  *e = reinterpret_cast<CUevent>(&ev);
  return 0;
}
CUresult cuEventDestroy_v2(CUevent) { return 0; }
CUresult cuEventRecord(CUevent, CUstream) { return 0; }
CUresult cuEventSynchronize(CUevent) { return 0; }

CUresult cuMemAlloc_v2(CUdeviceptr *p, std::size_t n) {
  if (g_capturing) return refuse_in_capture(g_capturing, "cuMemAlloc");
  if (memory().allocated + n > device_bytes())
    return error(kOutOfMemory, "out of device memory allocating " + std::to_string(n) + " bytes");
  // Fresh memory is garbage on a GPU: fill it with 0xFF bytes (NaN) so a read of something
  // never written shows in the results.
  // Large buffers (the weights: GBs) in 2 MB pages where the kernel offers them on request
  // (transparent huge pages in "madvise" mode): a fault per 2 MB instead of per 4 KB when the
  // fill touches them first.
  constexpr std::size_t kHuge = std::size_t(2) << 20;
  void *m = n >= 2 * kHuge ? std::aligned_alloc(kHuge, (n + kHuge - 1) / kHuge * kHuge)
                           : std::malloc(n ? n : 1);
  if (m && n >= 2 * kHuge) madvise(m, (n + kHuge - 1) / kHuge * kHuge, MADV_HUGEPAGE);
  if (!m) return error(kOutOfMemory, "out of memory allocating " + std::to_string(n) + " bytes");
  std::memset(m, 0xff, n);
  memory().add(m, n);
  *p = reinterpret_cast<CUdeviceptr>(m);
  return 0;
}
CUresult cuMemFree_v2(CUdeviceptr p) {
  if (g_capturing) return refuse_in_capture(g_capturing, "cuMemFree");
  if (!p) return 0;
  if (!memory().remove(p)) return error(kInvalidValue, "cuMemFree of a pointer not allocated");
  std::free(reinterpret_cast<void *>(p));
  return 0;
}
CUresult cuMemAllocAsync(CUdeviceptr *p, std::size_t n, CUstream s) {
  if (Stream *st = capturing(s)) return refuse_in_capture(st, "cuMemAllocAsync (memory nodes are not emulated)");
  return cuMemAlloc_v2(p, n);
}
CUresult cuMemFreeAsync(CUdeviceptr p, CUstream s) {
  if (Stream *st = capturing(s)) return refuse_in_capture(st, "cuMemFreeAsync (memory nodes are not emulated)");
  return cuMemFree_v2(p);
}

static CUresult check_range(CUdeviceptr p, std::size_t n, const char *what) {
  std::uint64_t lo;
  if (n && !memory().contains(p, n, &lo))
    return error(kInvalidValue, std::string(what) + " of " + std::to_string(n) +
                                    " bytes outside every allocation");
  return 0;
}
CUresult cuMemcpyHtoD_v2(CUdeviceptr d, const void *h, std::size_t n) {
  if (CUresult r = check_range(d, n, "cuMemcpyHtoD")) return r;
  std::memcpy(reinterpret_cast<void *>(d), h, n);
  return 0;
}
CUresult cuMemcpyDtoH_v2(void *h, CUdeviceptr d, std::size_t n) {
  if (CUresult r = check_range(d, n, "cuMemcpyDtoH")) return r;
  std::memcpy(h, reinterpret_cast<void *>(d), n);
  trace_copy_to_host(n);
  return 0;
}
// Unified addressing: either side may be host or device memory. Only device sides are checked.
static CUresult copy(CUdeviceptr d, CUdeviceptr s, std::size_t n) {
  std::uint64_t lo;
  bool dd = memory().contains(d, n, &lo) != nullptr, sd = memory().contains(s, n, &lo) != nullptr;
  if (!dd && !sd && n) return error(kInvalidValue, "cuMemcpyAsync between two non-device ranges");
  std::memmove(reinterpret_cast<void *>(d), reinterpret_cast<void *>(s), n);
  if (!dd) trace_copy_to_host(n);
  return 0;
}
CUresult cuMemcpyAsync(CUdeviceptr d, CUdeviceptr s, std::size_t n, CUstream stream) {
  if (Stream *st = capturing(stream)) {
    Node node;
    node.kind = Node::Copy;
    node.dst = d, node.src = s, node.count = n;
    st->capture->nodes.push_back(std::move(node));
    return 0;
  }
  return copy(d, s, n);
}
CUresult cuMemsetD8_v2(CUdeviceptr d, unsigned char v, std::size_t n) {
  if (CUresult r = check_range(d, n, "cuMemsetD8")) return r;
  std::memset(reinterpret_cast<void *>(d), v, n);
  return 0;
}
static CUresult memset32(CUdeviceptr d, unsigned v, std::size_t n) {
  if (CUresult r = check_range(d, n * 4, "cuMemsetD32")) return r;
  auto *p = reinterpret_cast<std::uint32_t *>(d);
  for (std::size_t i = 0; i < n; ++i) p[i] = v;
  return 0;
}
static CUresult memset16(CUdeviceptr d, unsigned short v, std::size_t n) {
  if (CUresult r = check_range(d, n * 2, "cuMemsetD16")) return r;
  auto *p = reinterpret_cast<std::uint16_t *>(d);
  for (std::size_t i = 0; i < n; ++i) p[i] = v;
  return 0;
}
/// Records a memset on a capturing stream; false if `stream` is not capturing.
static bool record_memset(CUstream stream, Node::Kind kind, CUdeviceptr d, unsigned v,
                          std::size_t n) {
  Stream *st = capturing(stream);
  if (!st) return false;
  Node node;
  node.kind = kind;
  node.dst = d, node.value = v, node.count = n;
  st->capture->nodes.push_back(std::move(node));
  return true;
}
CUresult cuMemsetD32Async(CUdeviceptr d, unsigned v, std::size_t n, CUstream s) {
  return record_memset(s, Node::Memset32, d, v, n) ? 0 : memset32(d, v, n);
}
CUresult cuMemsetD16Async(CUdeviceptr d, unsigned short v, std::size_t n, CUstream s) {
  return record_memset(s, Node::Memset16, d, v, n) ? 0 : memset16(d, v, n);
}
CUresult cuMemGetInfo_v2(std::size_t *free_bytes, std::size_t *total) {
  *total = device_bytes();
  *free_bytes = *total - std::min(*total, memory().allocated);
  return 0;
}

} // extern "C"