// cuda_driver_test.cpp — the runtime's CUDA layer without a GPU: a missing driver, a driver
// with no device, PTX the driver rejects, the mgpu* shims and the GPU entry points, all against
// the fake libcuda of cuda_fake_driver.cpp ("device" memory is host memory there).
//
// Driver::get() loads once per process, so each scenario runs in a forked child.
#include "fake_model.h"
#include "moec/cuda.h"
#include "moec/error.h"
#include "moec/weights.h"
#include "test_util.h"

#include <dlfcn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
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

/// Runs `body` in a child process with `env` set; returns what it wrote to the pipe.
std::string in_child(const std::vector<std::pair<std::string, std::string>> &env,
                     const std::function<std::string()> &body) {
  int fds[2];
  if (::pipe(fds) != 0)
    return "pipe failed";
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    for (auto &[k, v] : env)
      ::setenv(k.c_str(), v.c_str(), 1);
    std::string out;
    try {
      out = body();
    } catch (const std::exception &e) {
      out = std::string("threw: ") + e.what();
    }
    (void)!::write(fds[1], out.data(), out.size());
    ::close(fds[1]);
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0)
    out.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return out;
}

const std::string kFake = MOEC_FAKE_CUDA_DRIVER;

TEST(CudaDriver, MissingLibraryIsAClearError) {
  std::string out = in_child({{"MOEC_CUDA_DRIVER", "/nonexistent/libcuda.so.1"}}, [] {
    cuda::Driver::get();
    return std::string("loaded");
  });
  EXPECT_NE(out.find("threw: no CUDA driver found (/nonexistent/libcuda.so.1)"), std::string::npos)
      << out;
}

TEST(CudaDriver, DefaultLibraryName) {
  std::string out = in_child({{"MOEC_CUDA_DRIVER", ""}}, [] { return cuda::driver_library_name(); });
  EXPECT_EQ(out, "libcuda.so.1");
}

TEST(CudaDriver, NoDeviceIsAClearError) {
  std::string out = in_child({{"MOEC_CUDA_DRIVER", kFake}, {"MOEC_FAKE_CUDA_DEVICES", "0"}}, [] {
    cuda::Driver::get();
    return std::string("loaded");
  });
  EXPECT_NE(out.find("threw: no CUDA device"), std::string::npos) << out;
  // The failure is remembered: a second call says the same.
  out = in_child({{"MOEC_CUDA_DRIVER", kFake}}, [] {
    try {
      cuda::Driver::get();
    } catch (const Error &) {
    }
    cuda::Driver::get();
    return std::string("loaded");
  });
  EXPECT_NE(out.find("threw: no CUDA device"), std::string::npos) << out;
}

TEST(CudaDriver, LoadsTheFakeDevice) {
  std::string out = in_child({{"MOEC_CUDA_DRIVER", kFake}, {"MOEC_FAKE_CUDA_DEVICES", "1"}}, [] {
    cuda::Driver &d = cuda::Driver::get();
    return d.device_name() + " cc" + std::to_string(d.compute_capability());
  });
  EXPECT_EQ(out, "Fake GPU cc90");
}

TEST(CudaDriver, DeviceBandwidthProbeCopiesDeviceToDevice) {
  // The fake driver's "device" memory is host memory: the probe must run its copies through
  // the driver and report a positive rate; without a device it fails like any driver call.
  std::string out = in_child({{"MOEC_CUDA_DRIVER", kFake}, {"MOEC_FAKE_CUDA_DEVICES", "1"}}, [] {
    return std::string(cuda::measure_device_copy_bandwidth_gbs(1 << 20, 2) > 0 ? "positive" : "zero");
  });
  EXPECT_EQ(out, "positive");
  out = in_child({{"MOEC_CUDA_DRIVER", kFake}, {"MOEC_FAKE_CUDA_DEVICES", "0"}}, [] {
    cuda::measure_device_copy_bandwidth_gbs(1 << 20, 2);
    return std::string("no throw");
  });
  EXPECT_NE(out.find("threw: no CUDA device"), std::string::npos) << out;
}

TEST(CudaDriver, ErrorsCarryTheDriversNameAndString) {
  std::string out = in_child({{"MOEC_CUDA_DRIVER", kFake}, {"MOEC_FAKE_CUDA_DEVICES", "1"}}, [] {
    cuda::Driver::get().check(218, "cuSomething");
    return std::string("no throw");
  });
  EXPECT_EQ(out, "threw: CUDA: cuSomething: CUDA_ERROR_INVALID_PTX (a PTX JIT compilation failed)");
}

TEST(CudaMgpu, ModuleLoadIsLazyAndLaunchesReachTheDriver) {
  std::string out = in_child({{"MOEC_CUDA_DRIVER", kFake}, {"MOEC_FAKE_CUDA_DEVICES", "1"}}, [] {
    static const char ptx[] = "// ptx";
    void *module = mgpuModuleLoadJIT(const_cast<char *>(ptx), 3); // no driver call yet
    void *f = mgpuModuleGetFunction(module, "gemm_mma");
    void *stream = mgpuStreamCreate();
    void *p = mgpuMemAlloc(1024, stream, false);
    mgpuLaunchKernel(f, 7, 3, 2, 128, 1, 1, 0, stream, nullptr, nullptr, 0);
    mgpuStreamSynchronize(stream);
    mgpuMemFree(p, stream);
    mgpuStreamDestroy(stream);
    mgpuModuleUnload(module);
    void *h = ::dlopen(kFake.c_str(), RTLD_NOW);
    auto grid = reinterpret_cast<int (*)(int)>(::dlsym(h, "moec_fake_grid"));
    auto block = reinterpret_cast<int (*)(int)>(::dlsym(h, "moec_fake_block"));
    auto flags = reinterpret_cast<unsigned (*)()>(::dlsym(h, "moec_fake_stream_flags"));
    std::string err = cuda::take_mgpu_error();
    return std::to_string(grid(0)) + "," + std::to_string(grid(1)) + "," +
           std::to_string(grid(2)) + "/" + std::to_string(block(0)) + (p ? " alloc" : " null") +
           " flags " + std::to_string(flags()) + (err.empty() ? "" : " error: " + err);
  });
  // Flags 0: a blocking stream, ordered after the uploads and the KV-cache memset that the
  // runtime issues on the legacy default stream.
  EXPECT_EQ(out, "7,3,2/128 alloc flags 0");
}

TEST(CudaMgpu, RejectedPtxIsReportedAfterTheCall) {
  std::string out = in_child({{"MOEC_CUDA_DRIVER", kFake},
                              {"MOEC_FAKE_CUDA_DEVICES", "1"},
                              {"MOEC_FAKE_CUDA_BAD_PTX", "1"}},
                             [] {
                               static const char ptx[] = "// ptx";
                               void *module = mgpuModuleLoadJIT(const_cast<char *>(ptx), 3);
                               void *f = mgpuModuleGetFunction(module, "rms_norm");
                               mgpuLaunchKernel(f, 1, 1, 1, 256, 1, 1, 0, nullptr, nullptr,
                                                nullptr, 0);
                               return cuda::take_mgpu_error();
                             });
  EXPECT_NE(out.find("CUDA_ERROR_INVALID_PTX"), std::string::npos) << out;
  EXPECT_NE(out.find("ptxas fatal : fake rejection"), std::string::npos) << out;
}

TEST(CudaMgpu, MissingDriverSurfacesThroughTakeError) {
  std::string out = in_child({{"MOEC_CUDA_DRIVER", "/nonexistent/libcuda.so.1"}}, [] {
    void *s = mgpuStreamCreate();
    return std::string(s ? "stream " : "null ") + cuda::take_mgpu_error() + "|" +
           cuda::take_mgpu_error();
  });
  EXPECT_NE(out.find("null no CUDA driver found"), std::string::npos) << out;
  EXPECT_EQ(out.back(), '|'); // taking the error clears it
}

// --- the GPU entry points: weights uploaded once, tokens in, logits out ----------------------

struct Seen {
  const void *weights = nullptr, *kv = nullptr;
  float weight0 = 0;
  std::int32_t token0 = 0;
};
Seen seen;

void generated_prefill(void *weights, void *kv, const std::int32_t *tokens, std::int64_t n,
                       std::int64_t pos, float *logits) {
  seen.weights = weights;
  seen.kv = kv;
  seen.weight0 = *static_cast<const float *>(weights); // "device" memory is host memory here
  seen.token0 = tokens[0];
  for (std::int64_t i = 0; i < test::kFakeVocab; ++i)
    logits[i] = static_cast<float>(i + 100 * n + 1000 * pos);
}
void generated_decode(void *weights, void *kv, const std::int32_t *token, std::int64_t pos,
                      float *logits) {
  generated_prefill(weights, kv, token, 1, pos, logits);
}

TEST(CudaEntryPoints, UploadWeightsOnceAndCopyLogitsBack) {
  std::string out = in_child({{"MOEC_CUDA_DRIVER", kFake}, {"MOEC_FAKE_CUDA_DEVICES", "1"}}, [] {
    static std::string manifest = test::fake_manifest_text();
    const std::string cpu = "\"target\": \"cpu\"";
    auto at = manifest.find(cpu);
    if (at == std::string::npos)
      return std::string("fake manifest has no cpu target");
    manifest.replace(at, cpu.size(), "\"target\": \"nvptx\"");
    if (!cuda::manifest_targets_gpu(manifest.c_str()))
      return std::string("not detected as a GPU manifest");
    EntryPoints gpu =
        cuda::device_entry_points(EntryPoints{manifest.c_str(), generated_prefill, generated_decode});
    std::vector<float> host_weights(1 << 16, 0.0f);
    host_weights[0] = 42.5f;
    std::vector<float> kv(16), logits(test::kFakeVocab);
    std::vector<std::int32_t> tokens = {7, 8, 9};
    gpu.prefill(host_weights.data(), kv.data(), tokens.data(), 3, 0, logits.data());
    const void *first_device_weights = seen.weights;
    std::string r = "w0=" + std::to_string(int(seen.weight0)) + " t0=" + std::to_string(seen.token0) +
                    " l5=" + std::to_string(int(logits[5]));
    std::int32_t next = 11;
    gpu.decode(host_weights.data(), kv.data(), &next, 3, logits.data());
    r += " same=" + std::to_string(seen.weights == first_device_weights) +
         " host=" + std::to_string(seen.weights == host_weights.data() || seen.kv == kv.data()) +
         " t0=" + std::to_string(seen.token0) + " l5=" + std::to_string(int(logits[5]));
    return r;
  });
  EXPECT_EQ(out, "w0=42 t0=7 l5=305 same=1 host=0 t0=11 l5=3105");
}

TEST(CudaEntryPoints, WeightsGoFromTheCheckpointToTheDevice) {
  // load_device_weights copies each tensor to its arena offset in device memory; the entry
  // points then run on those weights whatever host pointer they get (Session passes none).
  std::string out = in_child({{"MOEC_CUDA_DRIVER", kFake}, {"MOEC_FAKE_CUDA_DEVICES", "1"}}, [] {
    test::TempDir dir;
    test::write_fake_checkpoint(dir.file("model.safetensors"));
    static std::string manifest = test::fake_manifest_text();
    const std::string cpu = "\"target\": \"cpu\"";
    manifest.replace(manifest.find(cpu), cpu.size(), "\"target\": \"nvptx\"");
    const Manifest m = parse_manifest(manifest.c_str());
    const Checkpoint checkpoint = Checkpoint::open(dir.str());
    EntryPoints gpu =
        cuda::device_entry_points(EntryPoints{manifest.c_str(), generated_prefill, generated_decode});
    cuda::load_device_weights(m, checkpoint, LoadOptions{});
    const Arena host = load_weights(m, checkpoint); // the same bytes, through host memory
    std::vector<float> logits(test::kFakeVocab);
    std::int32_t token = 5;
    gpu.prefill(nullptr, nullptr, &token, 1, 0, logits.data());
    const bool same_bytes = std::memcmp(seen.weights, host.data(), m.weights_bytes) == 0;
    return std::string(same_bytes ? "device weights = host arena" : "weights differ") +
           " t0=" + std::to_string(seen.token0) + " l5=" + std::to_string(int(logits[5]));
  });
  EXPECT_EQ(out, "device weights = host arena t0=5 l5=105");
}

TEST(CudaEntryPoints, CpuManifestIsNotRedirected) {
  EXPECT_FALSE(cuda::manifest_targets_gpu(test::fake_manifest_text().c_str()));
  EXPECT_FALSE(cuda::manifest_targets_gpu(nullptr));
}

} // namespace
} // namespace moec
