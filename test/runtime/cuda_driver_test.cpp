// cuda_driver_test.cpp — the runtime's CUDA driver layer without a GPU: a missing driver, a
// driver with no device, PTX the driver rejects, the mgpu* functions (modules loaded at
// warm-up, kernels resolved once, the context set once per thread, the cuMemAllocAsync
// fallback, StepGraph's capture, replay, update and fallbacks), all against the fake libcuda of cuda_fake_driver.cpp ("device" memory is host
// memory there). The CUDA backend's own tests are in backend_test.cpp.
//
// Each scenario runs in a forked child: $MOEC_CUDA_DRIVER and the fake's counters are
// per process.
#include "moec/cuda.h"
#include "moec/error.h"
#include "cuda_test_util.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>
#include <gtest/gtest.h>
#include <string>
#include <vector>

extern "C" {
void *mgpuModuleLoadJIT(void *data, int optLevel);
void *mgpuModuleGetFunction(void *module, const char *name);
void mgpuLaunchKernel(void *f, std::intptr_t, std::intptr_t, std::intptr_t, std::intptr_t,
                      std::intptr_t, std::intptr_t, std::int32_t, void *, void **, void **,
                      std::size_t);
void *mgpuStreamCreate();
void mgpuStreamSynchronize(void *);
void mgpuStreamDestroy(void *);
void *mgpuMemAlloc(std::uint64_t, void *, bool);
void mgpuMemFree(void *, void *);
void mgpuModuleUnload(void *);
}

namespace moec {
namespace {

// A PTX image as the generated code embeds it: two kernels.
const char kPtx[] = ".version 7.8\n.target sm_90\n.address_size 64\n"
                    ".visible .entry gemm_mma(\n.param .u64 a\n)\n{\nret;\n}\n"
                    ".visible .entry rms_norm(\n.param .u64 a\n)\n{\nret;\n}\n";

TEST(CudaDriver, MissingLibraryIsAClearError) {
  std::string out = test::in_child({{"MOEC_CUDA_DRIVER", "/nonexistent/libcuda.so.1"}}, [] {
    cuda::Driver d;
    return std::string("loaded");
  });
  EXPECT_NE(out.find("threw: no CUDA driver found (/nonexistent/libcuda.so.1)"), std::string::npos)
      << out;
}

TEST(CudaDriver, DefaultLibraryName) {
  std::string out =
      test::in_child({{"MOEC_CUDA_DRIVER", ""}}, [] { return cuda::driver_library_name(); });
  EXPECT_EQ(out, "libcuda.so.1");
}

TEST(CudaDriver, NoDeviceIsAClearError) {
  std::string out =
      test::in_child({{"MOEC_CUDA_DRIVER", test::kFakeCuda}, {"MOEC_FAKE_CUDA_DEVICES", "0"}}, [] {
        cuda::Driver d;
        return std::string("loaded");
      });
  EXPECT_NE(out.find("threw: no CUDA device"), std::string::npos) << out;
}

TEST(CudaDriver, LoadsTheFakeDevice) {
  std::string out = test::in_child(test::fake_gpu_env(), [] {
    cuda::Driver d;
    return d.device_name() + " cc" + std::to_string(d.compute_capability());
  });
  EXPECT_EQ(out, "Fake GPU cc90");
}

TEST(CudaDriver, ContextIsMadeCurrentOncePerThread) {
  std::string out = test::in_child(test::fake_gpu_env(), [] {
    cuda::Driver d; // makes it current on this thread
    for (int i = 0; i < 10; ++i)
      d.make_current();
    const int here = test::fake_cuda_count("cuCtxSetCurrent");
    std::thread([&] {
      d.make_current();
      d.make_current();
    }).join();
    return std::to_string(here) + " " + std::to_string(test::fake_cuda_count("cuCtxSetCurrent"));
  });
  EXPECT_EQ(out, "1 2");
}

TEST(CudaDriver, DeviceBandwidthProbeCopiesDeviceToDevice) {
  // The fake driver's "device" memory is host memory: the probe must run its copies through
  // the driver and report a positive rate.
  std::string out = test::in_child(test::fake_gpu_env(), [] {
    cuda::Driver d;
    return std::string(cuda::measure_copy_bandwidth_gbs(d, 1 << 20, 2) > 0 ? "positive" : "zero");
  });
  EXPECT_EQ(out, "positive");
}

TEST(CudaDriver, ErrorsCarryTheDriversNameAndString) {
  std::string out = test::in_child(test::fake_gpu_env(), [] {
    cuda::Driver().check(218, "cuSomething");
    return std::string("no throw");
  });
  EXPECT_EQ(out, "threw: CUDA: cuSomething: CUDA_ERROR_INVALID_PTX (a PTX JIT compilation failed)");
}

// mgpuModuleLoadJIT (a global constructor of the generated object) only records the image; the
// backend's warm-up loads it and resolves its kernels; a launch then looks its kernel up
// without a driver call, and never sets the context again on the same thread.
TEST(CudaMgpu, ModulesLoadAtWarmUpAndLaunchesCostNoLookups) {
  std::string out = test::in_child(test::fake_gpu_env(), [] {
    void *module = mgpuModuleLoadJIT(const_cast<char *>(kPtx), 3);
    cuda::Driver d;
    cuda::MgpuRegistration registration(d);
    std::string r = "before " + std::to_string(test::fake_cuda_count("cuModuleLoadDataEx"));
    cuda::load_mgpu_modules();
    r += " loaded " + std::to_string(test::fake_cuda_count("cuModuleLoadDataEx")) + "/" +
         std::to_string(test::fake_cuda_count("cuModuleGetFunction"));
    const int ctx = test::fake_cuda_count("cuCtxSetCurrent");
    void *stream = mgpuStreamCreate();
    for (int i = 0; i < 5; ++i) {
      void *f = mgpuModuleGetFunction(module, i % 2 ? "gemm_mma" : "rms_norm");
      mgpuLaunchKernel(f, 7, 3, 2, 128, 1, 1, 0, stream, nullptr, nullptr, 0);
    }
    mgpuStreamSynchronize(stream);
    mgpuStreamDestroy(stream);
    r += " after " + std::to_string(test::fake_cuda_count("cuModuleLoadDataEx")) + "/" +
         std::to_string(test::fake_cuda_count("cuModuleGetFunction")) + " launches " +
         std::to_string(test::fake_cuda_launches()) + " grid " +
         std::to_string(test::fake_cuda_grid(0)) + "," + std::to_string(test::fake_cuda_grid(1)) +
         " ctx +" + std::to_string(test::fake_cuda_count("cuCtxSetCurrent") - ctx) +
         " flags " + std::to_string(test::fake_cuda_stream_flags());
    const std::string err = cuda::take_mgpu_error();
    mgpuModuleUnload(module);
    return r + (err.empty() ? "" : " error: " + err);
  });
  // Flags 0: a blocking stream, ordered after the uploads and the KV-cache memset that the
  // runtime issues on the legacy default stream.
  EXPECT_EQ(out, "before 0 loaded 1/2 after 1/2 launches 5 grid 7,3 ctx +0 flags 0");
}

TEST(CudaMgpu, RejectedPtxIsReportedAtWarmUp) {
  std::string out = test::in_child(
      {{"MOEC_CUDA_DRIVER", test::kFakeCuda}, {"MOEC_FAKE_CUDA_DEVICES", "1"},
       {"MOEC_FAKE_CUDA_BAD_PTX", "1"}},
      [] {
        void *module = mgpuModuleLoadJIT(const_cast<char *>(kPtx), 3);
        cuda::Driver d;
        cuda::MgpuRegistration registration(d);
        std::string r;
        try {
          cuda::load_mgpu_modules();
        } catch (const Error &e) {
          r = e.what();
        }
        mgpuModuleUnload(module);
        return r;
      });
  EXPECT_NE(out.find("CUDA_ERROR_INVALID_PTX"), std::string::npos) << out;
  EXPECT_NE(out.find("ptxas fatal : fake rejection"), std::string::npos) << out;
}

TEST(CudaMgpu, ACallWithoutABackendIsRecordedNotThrown) {
  std::string out = test::in_child({{"MOEC_CUDA_DRIVER", "/nonexistent/libcuda.so.1"}}, [] {
    void *s = mgpuStreamCreate();
    return std::string(s ? "stream " : "null ") + cuda::take_mgpu_error() + "|" +
           cuda::take_mgpu_error();
  });
  EXPECT_EQ(out, "null internal: a CUDA runtime call (mgpu*) with no CUDA backend loaded|");
}

TEST(CudaMgpu, OnlyOneBackendRegistersAtATime) {
  std::string out = test::in_child(test::fake_gpu_env(), [] {
    cuda::Driver a, b;
    cuda::MgpuRegistration first(a);
    cuda::MgpuRegistration second(b);
    return std::string("registered twice");
  });
  EXPECT_EQ(out, "threw: internal: a second CUDA backend in one process (the mgpu* functions "
                 "serve one)");
}

// Some setups have cuMemAllocAsync but no stream-ordered pool: the call fails. Allocations then
// come from cuMemAlloc (the pool is not retried) and go back with cuMemFree.
TEST(CudaMgpu, AllocationFallsBackWhenThePoolFails) {
  auto scenario = [] {
    cuda::Driver d;
    cuda::MgpuRegistration registration(d);
    void *stream = mgpuStreamCreate();
    void *p = mgpuMemAlloc(1024, stream, false);
    void *q = mgpuMemAlloc(4096, stream, false);
    mgpuMemFree(p, stream);
    mgpuMemFree(q, stream);
    const std::string err = cuda::take_mgpu_error();
    return std::string(p && q ? "allocated" : "null") + " async " +
           std::to_string(test::fake_cuda_count("cuMemAllocAsync")) + "/" +
           std::to_string(test::fake_cuda_count("cuMemFreeAsync")) + " sync " +
           std::to_string(test::fake_cuda_count("cuMemAlloc")) + "/" +
           std::to_string(test::fake_cuda_count("cuMemFree")) + (err.empty() ? "" : " " + err);
  };
  auto env = test::fake_gpu_env();
  EXPECT_EQ(test::in_child(env, scenario), "allocated async 2/2 sync 0/0");
  env.push_back({"MOEC_FAKE_CUDA_NO_POOLS", "1"});
  EXPECT_EQ(test::in_child(env, scenario), "allocated async 1/0 sync 2/2");
}

// --- StepGraph: moec_step as a CUDA graph ---------------------------------------------------

/// What moec_step's host code does through the mgpu* functions: a stream, temporaries, three
/// launches, a free and an allocation that reuses the freed range, the last frees, a
/// synchronise, the stream destroyed. Appends the temporaries' addresses to `addresses`.
void fake_step(void *module, std::size_t bytes, std::vector<std::uintptr_t> &addresses) {
  void *s = mgpuStreamCreate();
  void *a = mgpuMemAlloc(bytes, s, false), *b = mgpuMemAlloc(bytes, s, false);
  void *f = mgpuModuleGetFunction(module, "rms_norm");
  for (int i = 0; i < 3; ++i)
    mgpuLaunchKernel(f, 1, 1, 1, 32, 1, 1, 0, s, nullptr, nullptr, 0);
  mgpuMemFree(a, s);
  void *c = mgpuMemAlloc(bytes / 2, s, false);
  mgpuMemFree(b, s);
  mgpuMemFree(c, s);
  mgpuStreamSynchronize(s);
  mgpuStreamDestroy(s);
  for (void *p : {a, b, c})
    addresses.push_back(reinterpret_cast<std::uintptr_t>(p));
}

/// The fake's graph counters: "captures/instantiates/updates/graph launches, cuLaunchKernel
/// calls, kernels run, cuMemAllocAsync calls".
std::string graph_counts() {
  return std::to_string(test::fake_cuda_count("cuStreamBeginCapture")) + "/" +
         std::to_string(test::fake_cuda_count("cuGraphInstantiateWithFlags")) + "/" +
         std::to_string(test::fake_cuda_count("cuGraphExecUpdate")) + "/" +
         std::to_string(test::fake_cuda_count("cuGraphLaunch")) + " launch calls " +
         std::to_string(test::fake_cuda_count("cuLaunchKernel")) + " run " +
         std::to_string(test::fake_cuda_count("kernels run")) + " async allocs " +
         std::to_string(test::fake_cuda_count("cuMemAllocAsync"));
}

/// Runs `body` with a registered fake driver, the module loaded and a StepGraph; returns
/// body's text and any recorded mgpu error.
std::string with_step_graph(
    const std::function<std::string(cuda::StepGraph &, void *module)> &body) {
  void *module = mgpuModuleLoadJIT(const_cast<char *>(kPtx), 3);
  std::string r;
  {
    cuda::Driver d;
    cuda::MgpuRegistration registration(d);
    cuda::load_mgpu_modules();
    cuda::StepGraph graph(d);
    r = body(graph, module);
    const std::string err = cuda::take_mgpu_error();
    if (!err.empty())
      r += " error: " + err;
  }
  mgpuModuleUnload(module);
  return r;
}

// The first call of a shape is captured (no kernel runs during the capture) and launched as
// one graph; the same call again is one cuGraphLaunch and no cuLaunchKernel; the same shape
// with other arguments re-captures and updates its executable graph; another shape gets a
// graph of its own, and the first one still replays; temporaries come from the arena at the
// same addresses in every capture (a freed range reused), never from the stream-ordered pool;
// a call whose temporaries outgrow the arena is captured twice (the arena grows in between,
// and the graphs naming the old arena are dropped).
TEST(CudaGraph, CapturesOnceReplaysTheSameCallAndUpdatesAnother) {
  std::string out = test::in_child(test::fake_gpu_env(), [] {
    return with_step_graph([](cuda::StepGraph &g, void *module) {
      std::vector<std::uintptr_t> addr, big;
      int calls = 0;
      auto step = [&] { ++calls, fake_step(module, 1024, addr); };
      auto big_step = [&] { fake_step(module, 3 << 20, big); };
      std::string r;
      auto run = [&](std::uint64_t shape, std::uint64_t arg, auto &f) {
        r += g.run({shape}, {arg}, f) ? "ran " : "direct ";
        r += graph_counts() + "; ";
      };
      run(1, 2, step);     // capture, instantiate
      run(1, 2, step);     // replay
      run(1, 3, step);     // capture, update
      run(5, 3, step);     // another shape: capture, instantiate
      run(1, 3, step);     // replay of the first shape
      run(4, 3, big_step); // two captures, the arena grows, the graphs are dropped
      run(1, 3, step);     // capture, instantiate
      r += "calls " + std::to_string(calls);
      // Three captures in the first arena, one in the grown one (the same offsets).
      bool same = addr.size() == 12;
      for (std::size_t i = 3; same && i < 9; ++i)
        same = addr[i] == addr[i % 3];
      same = same && addr[10] - addr[9] == addr[1] - addr[0] && addr[11] == addr[9];
      r += same && addr[2] == addr[0] && addr[1] != addr[0] ? " same addresses" : " moved";
      const cuda::LaunchCounts c = cuda::launch_counts();
      r += " counts " + std::to_string(c.kernel_launches) + "/" + std::to_string(c.captured) +
           "/" + std::to_string(c.graph_launches);
      return r;
    });
  });
  EXPECT_EQ(out, "ran 1/1/0/1 launch calls 3 run 3 async allocs 0; "
                 "ran 1/1/0/2 launch calls 3 run 6 async allocs 0; "
                 "ran 2/1/1/3 launch calls 6 run 9 async allocs 0; "
                 "ran 3/2/1/4 launch calls 9 run 12 async allocs 0; "
                 "ran 3/2/1/5 launch calls 9 run 15 async allocs 0; "
                 "ran 5/3/1/6 launch calls 15 run 18 async allocs 0; "
                 "ran 6/4/1/7 launch calls 18 run 21 async allocs 0; "
                 "calls 4 same addresses counts 0/18/7");
}

// A driver that refuses the update: the executable graph is instantiated afresh.
TEST(CudaGraph, ARefusedUpdateInstantiatesAfresh) {
  auto env = test::fake_gpu_env();
  env.push_back({"MOEC_FAKE_CUDA_BAD_UPDATE", "1"});
  std::string out = test::in_child(env, [] {
    return with_step_graph([](cuda::StepGraph &g, void *module) {
      std::vector<std::uintptr_t> addr;
      auto step = [&] { fake_step(module, 1024, addr); };
      std::string r = g.run({1}, {1}, step) && g.run({1}, {2}, step) ? "ran " : "direct ";
      return r + graph_counts();
    });
  });
  EXPECT_EQ(out, "ran 2/2/1/2 launch calls 6 run 6 async allocs 0");
}

// A capture the driver invalidates: graphs go off for good (one warning line), run() says so
// and the caller launches directly; the capture's refusal is not left as an error.
TEST(CudaGraph, ARefusedCaptureFallsBackToDirectLaunches) {
  auto env = test::fake_gpu_env();
  env.push_back({"MOEC_FAKE_CUDA_BAD_CAPTURE", "1"});
  std::string out = test::in_child(env, [] {
    return with_step_graph([](cuda::StepGraph &g, void *module) {
      std::vector<std::uintptr_t> addr;
      auto step = [&] { fake_step(module, 1024, addr); };
      std::string r = g.run({1}, {1}, step) ? "ran " : "direct ";
      r += g.run({1}, {1}, step) ? "ran " : "direct ";
      r += g.enabled() ? "on " : "off ";
      step(); // the direct call, as the backend makes it
      return r + graph_counts();
    });
  });
  EXPECT_EQ(out, "direct direct off 1/0/0/0 launch calls 6 run 3 async allocs 3");
}

// A driver without the graph entry points (before CUDA 12): direct launches, no crash.
TEST(CudaGraph, AnOldDriverWithoutGraphsLaunchesDirectly) {
  std::string out = test::in_child(
      {{"MOEC_CUDA_DRIVER", MOEC_FAKE_CUDA_DRIVER_NO_GRAPHS}, {"MOEC_FAKE_CUDA_DEVICES", "1"}},
      [] {
        cuda::Driver d;
        cuda::StepGraph g(d);
        int calls = 0;
        auto step = [&] { ++calls; };
        const bool ran = g.run({1}, {1}, step);
        return std::string(d.api().has_graphs() ? "has graphs " : "no graphs ") +
               (ran ? "ran " : "direct ") + std::to_string(calls);
      });
  EXPECT_EQ(out, "no graphs direct 0");
}

} // namespace
} // namespace moec
