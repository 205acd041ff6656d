// backend_test.cpp — the backend interface (moec/backend.h): selection by the manifest's
// target, the CUDA backend against the fake libcuda (cuda_fake_driver.cpp: "device" memory is
// host memory, so the fake model of fake_model.h runs on it unchanged), and the failure paths
// a user sees: an nvptx binary without a driver, a CPU binary that never loads one.
#include "cuda_test_util.h"
#include "fake_model.h"
#include "moec/backend.h"
#include "moec/checkpoint/weights_file.h"
#include "moec/error.h"
#include "moec/run.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

extern "C" {
void *mgpuModuleLoadJIT(void *data, int optLevel);
void mgpuModuleUnload(void *module);
}

namespace moec {
namespace {
using test::fake_log;

/// The fake's manifest with "target": "nvptx".
const std::string &gpu_manifest_text() {
  static const std::string text = [] {
    std::string s = test::fake_manifest_text();
    const std::string cpu = "\"target\": \"cpu\"";
    const auto at = s.find(cpu);
    if (at == std::string::npos)
      throw Error("the fake manifest has no cpu target");
    return s.replace(at, cpu.size(), "\"target\": \"nvptx\"");
  }();
  return text;
}

/// The fake model's functions under the nvptx manifest: the CUDA backend calls them with
/// "device" pointers, which the fake driver makes host memory.
EntryPoints gpu_entry_points() {
  EntryPoints e = test::fake_entry_points();
  e.manifest = gpu_manifest_text().c_str();
  return e;
}

struct Result {
  int rc;
  std::string out, err;
};

Result run_cli(const EntryPoints &entry, std::vector<std::string> args, const std::string &dir) {
  args.insert(args.begin(), {"--model", dir});
  std::ostringstream out, err;
  RunIO io{out, err, false};
  int rc = run(args, entry, io, "fake-model");
  return {rc, out.str(), err.str()};
}

TEST(Backend, TargetComesFromTheManifest) {
  EXPECT_EQ(target_of(parse_manifest(test::fake_manifest_text())), Target::Cpu);
  EXPECT_EQ(target_of(parse_manifest(gpu_manifest_text())), Target::Nvptx);
}

TEST(Backend, CpuManifestMakesTheCpuBackend) {
  auto b = make_backend(parse_manifest(test::fake_manifest_text()), test::fake_entry_points());
  EXPECT_EQ(b->target(), Target::Cpu);
  EXPECT_EQ(b->device_name(), "CPU");
}

TEST(Backend, NvptxManifestMakesTheCudaBackend) {
  std::string out = test::in_child(test::fake_gpu_env(), [] {
    auto b = make_backend(parse_manifest(gpu_manifest_text()), gpu_entry_points());
    return std::string(b->target() == Target::Nvptx ? "nvptx on " : "cpu on ") + b->device_name();
  });
  EXPECT_EQ(out, "nvptx on Fake GPU");
}

// The CUDA backend streams the checkpoint to device memory (the same bytes as the CPU's host
// arena), keeps the KV cache there across calls, and hands the generated code device pointers.
TEST(CudaBackend, RunsTheGeneratedCodeOnDeviceMemory) {
  std::string out = test::in_child(test::fake_gpu_env(), [] {
    test::TempDir dir;
    test::write_fake_checkpoint(dir.file("model.safetensors"));
    const Manifest m = parse_manifest(gpu_manifest_text());
    const Checkpoint checkpoint = Checkpoint::open(dir.str());
    fake_log().clear();
    auto gpu = make_backend(m, gpu_entry_points());
    gpu->check_memory(std::nullopt);
    gpu->load_weights(checkpoint, LoadOptions{});
    gpu->allocate_kv_cache();
    gpu->warm_up();
    std::vector<std::int32_t> tokens(static_cast<std::size_t>(m.max_seq_len));
    tokens[0] = 1, tokens[1] = 7, tokens[2] = 9;
    std::vector<float> logits(test::kFakeVocab);
    gpu->prefill(tokens.data(), 3, 0, logits.data());
    const int first = static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    gpu->decode(first, 3, logits.data());
    const int second = static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    const Arena host = load_weights(m, checkpoint);
    return "argmax " + std::to_string(first) + " " + std::to_string(second) + " weight " +
           std::to_string(fake_log().weight_probe) +
           " kv mismatches " + std::to_string(fake_log().kv_mismatches) +
           " host weight " + std::to_string(*static_cast<const float *>(host.data()));
  });
  EXPECT_EQ(out, "argmax 10 11 weight 0.500000 kv mismatches 0 host weight 0.500000");
}

/// A packed weights file (header page + the arena the CPU backend loads from the fake
/// checkpoint) at `path` for manifest `m`, which then names it.
void write_packed_file(Manifest &m, const std::string &path, const Checkpoint &checkpoint) {
  const Arena arena = load_weights(m, checkpoint);
  checkpoint::WeightsFileHeader h;
  h.arena_bytes = m.weights_bytes;
  h.file_bytes = checkpoint::kWeightsFileHeaderBytes + m.weights_bytes;
  h.fingerprint = checkpoint::new_fingerprint();
  std::ofstream f(path, std::ios::binary);
  f << checkpoint::encode_weights_file_header(h);
  f.write(static_cast<const char *>(arena.data()), static_cast<std::streamsize>(m.weights_bytes));
  m.weights_file = checkpoint::WeightsFile{"model.weights", h.fingerprint, h.file_bytes};
}

// A packed file (--pack, --quantize) is checked as on the CPU and uploaded to the device: the
// model runs as from the checkpoint; a file of another compile is refused in one line.
TEST(CudaBackend, UploadsAPackedWeightsFile) {
  std::string out = test::in_child(test::fake_gpu_env(), [] {
    test::TempDir dir;
    test::write_fake_checkpoint(dir.file("model.safetensors"));
    Manifest m = parse_manifest(gpu_manifest_text());
    write_packed_file(m, dir.file("model.weights"), Checkpoint::open(dir.str()));
    fake_log().clear();
    auto gpu = make_backend(m, gpu_entry_points());
    gpu->map_weights(dir.file("model.weights"));
    gpu->allocate_kv_cache();
    gpu->warm_up();
    std::vector<std::int32_t> tokens(static_cast<std::size_t>(m.max_seq_len));
    tokens[0] = 1, tokens[1] = 7, tokens[2] = 9;
    std::vector<float> logits(test::kFakeVocab);
    gpu->prefill(tokens.data(), 3, 0, logits.data());
    const int first = static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    std::string result = "argmax " + std::to_string(first) + " weight " +
                         std::to_string(fake_log().weight_probe);
    gpu.reset(); // one CUDA backend per process
    m.weights_file->fingerprint = checkpoint::new_fingerprint(); // another compile's binary
    try {
      make_backend(m, gpu_entry_points())->map_weights(dir.file("model.weights"));
      result += "; other fingerprint mapped";
    } catch (const Error &e) {
      result += std::string("; other fingerprint: ") +
                (std::string(e.what()).find("fingerprint") != std::string::npos ? "refused"
                                                                               : e.what());
    }
    return result;
  });
  EXPECT_EQ(out, "argmax 10 weight 0.500000; other fingerprint: refused");
}

// The whole CLI on the CUDA backend (fake driver): the same greedy ids as on the CPU backend.
TEST(CudaBackend, GeneratesTheSameIdsAsTheCpuBackend) {
  test::TempDir dir;
  test::write_fake_checkpoint(dir.file("model.safetensors"));
  const std::vector<std::string> args = {"--prompt-ids", "3", "-n", "5", "--temperature", "0",
                                         "--print-ids"};
  fake_log().clear();
  const Result cpu = run_cli(test::fake_entry_points(), args, dir.str());
  ASSERT_EQ(cpu.rc, 0) << cpu.err;
  std::string gpu = test::in_child(test::fake_gpu_env(), [&] {
    fake_log().clear();
    const Result r = run_cli(gpu_entry_points(), args, dir.str());
    return std::to_string(r.rc) + " " + r.out + r.err.substr(0, r.rc ? std::string::npos : 0);
  });
  EXPECT_EQ(gpu, "0 " + cpu.out);
}

// The kernels are JIT-compiled and resolved while the model loads (the backend's warm-up), so
// the first timed call pays for neither; --bench reports the device's bandwidth.
int jit_loads_at_first_call = -1, lookups_at_first_call = -1;
void prefill_noting_jit(void *w, void *kv, const std::int32_t *tokens, std::int64_t n,
                        std::int64_t pos, float *logits) {
  if (jit_loads_at_first_call < 0) {
    jit_loads_at_first_call = test::fake_cuda_count("cuModuleLoadDataEx");
    lookups_at_first_call = test::fake_cuda_count("cuModuleGetFunction");
  }
  test::fake_entry_points().prefill(w, kv, tokens, n, pos, logits);
}

TEST(CudaBackend, KernelsAreLoadedBeforeTheFirstCall) {
  test::TempDir dir;
  test::write_fake_checkpoint(dir.file("model.safetensors"));
  std::string out = test::in_child(test::fake_gpu_env(), [&] {
    static const char ptx[] = ".visible .entry rms_norm(\n)\n.visible .entry gemv(\n)\n";
    void *module = mgpuModuleLoadJIT(const_cast<char *>(ptx), 3); // as the global ctor does
    EntryPoints e = gpu_entry_points();
    e.prefill = prefill_noting_jit;
    const Result r = run_cli(e, {"--bench", "--bench-prompt", "4", "--bench-decode", "2",
                                 "--bench-buffer-mib", "1"}, dir.str());
    mgpuModuleUnload(module);
    const bool device_probe =
        r.out.find("device memory bandwidth (measured: device-to-device copies") != std::string::npos;
    return std::to_string(r.rc) + " loads " + std::to_string(jit_loads_at_first_call) +
           " lookups " + std::to_string(lookups_at_first_call) +
           (device_probe ? " device probe" : " no device probe: " + r.out + r.err);
  });
  EXPECT_EQ(out, "0 loads 1 lookups 2 device probe");
}

// An nvptx binary on a machine without the driver: one line, exit 1, nothing run. Modes that
// need no model (--version) still work.
TEST(CudaBackend, MissingDriverIsOneLineAndExitOne) {
  test::TempDir dir;
  test::write_fake_checkpoint(dir.file("model.safetensors"));
  std::string out = test::in_child({{"MOEC_CUDA_DRIVER", "/nonexistent/libcuda.so.1"}}, [&] {
    fake_log().clear();
    const Result r = run_cli(gpu_entry_points(), {"--prompt-ids", "3", "-n", "2", "--print-ids"}, dir.str());
    const Result v = run_cli(gpu_entry_points(), {"--version"}, dir.str());
    return std::to_string(r.rc) + " lines " +
           std::to_string(std::count(r.err.begin(), r.err.end(), '\n')) + " calls " +
           std::to_string(fake_log().prefill_calls) + " version " + std::to_string(v.rc) + " | " +
           r.err;
  });
  EXPECT_EQ(out.rfind("1 lines 1 calls 0 version 0 | error: no CUDA driver found "
                      "(/nonexistent/libcuda.so.1): ",
                      0),
            0u)
      << out;
}

// A CPU binary never loads libcuda, even when $MOEC_CUDA_DRIVER names one.
TEST(CpuBackend, NeverLoadsTheCudaDriver) {
  test::TempDir dir;
  test::write_fake_checkpoint(dir.file("model.safetensors"));
  std::string out = test::in_child(test::fake_gpu_env(), [&] {
    const Result r = run_cli(test::fake_entry_points(),
                             {"--prompt-ids", "3", "-n", "3", "--temperature", "0", "--print-ids"},
                             dir.str());
    return std::to_string(r.rc) + " " + r.out +
           (test::fake_cuda_loaded() ? "libcuda loaded" : "libcuda never loaded");
  });
  EXPECT_EQ(out, "0 4 5 6\nlibcuda never loaded");
}

} // namespace
} // namespace moec
