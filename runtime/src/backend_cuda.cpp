// backend_cuda.cpp — the CUDA backend: the model in device memory, the generated host code
// launching its kernels through the mgpu* functions (cuda_mgpu.cpp).
//
// The generated functions of the nvptx target take device pointers (abi.h, "GPU target"):
// weights, KV cache, tokens and logits all live on the device. The backend owns the driver
// (moec/cuda.h) and registers it for the mgpu* functions while it lives; every call copies the
// tokens in and the V logits back, and raises what an mgpu* call recorded (generated code
// cannot propagate exceptions).
#include "moec/backend.h"

#include "moec/arena.h"
#include "moec/cuda.h"
#include "moec/error.h"
#include "moec/weights.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdio>

namespace moec {
namespace {

using cuda::DeviceBuffer;

class CudaBackend final : public Backend {
public:
  CudaBackend(const Manifest &m, const EntryPoints &generated)
      : m_(m), generated_(generated), registration_(driver_) {}

  Target target() const override { return Target::Nvptx; }
  std::string device_name() const override { return driver_.device_name(); }

  void check_memory(std::optional<std::uint64_t>) const override {
    check_device_memory(m_, driver_.memory_info().first, driver_.device_name());
  }
  void load_weights(const Checkpoint &checkpoint, const LoadOptions &options) override {
    // Straight from the mmapped checkpoint to the device, piece by piece: no host arena.
    weights_ = DeviceBuffer(driver_, m_.weights_bytes);
    copy_weights(m_, checkpoint, options, [&](std::uint64_t at, const void *src, std::uint64_t n) {
      weights_.upload(src, static_cast<std::size_t>(n), static_cast<std::size_t>(at));
    });
  }
  void map_weights(const std::string &path) override {
    // The packed file (--pack, --quantize: weights.h checks its header, size and fingerprint
    // as for a CPU binary) mapped read-only and uploaded in slices, each dropped from this
    // process's mapping once it is on the device: host memory holds one slice, not the model.
    const Arena file = map_weights_file(m_, path);
    weights_ = DeviceBuffer(driver_, m_.weights_bytes);
    const auto *src = static_cast<const unsigned char *>(file.data());
    for (std::uint64_t at = 0; at < m_.weights_bytes; at += kUploadSlice) {
      const std::uint64_t n = std::min<std::uint64_t>(kUploadSlice, m_.weights_bytes - at);
      weights_.upload(src + at, static_cast<std::size_t>(n), static_cast<std::size_t>(at));
      ::madvise(const_cast<unsigned char *>(src + at), static_cast<std::size_t>(n), MADV_DONTNEED);
    }
  }
  void allocate_kv_cache() override {
    kv_ = DeviceBuffer(driver_, m_.kv_bytes);
    kv_.zero();
    tokens_ = DeviceBuffer(driver_, static_cast<std::size_t>(m_.max_seq_len) * 4);
    logits_ = DeviceBuffer(driver_, static_cast<std::size_t>(m_.config.vocab_size) * 4);
  }
  void warm_up() override {
    // The driver JIT-compiles the kernels' PTX here (~0.9 s estimated), not inside
    // the first timed prefill; the kernels are resolved once, not looked up per launch.
    cuda::load_mgpu_modules();
  }

  void prefill(const std::int32_t *tokens, std::int64_t n, std::int64_t pos,
               float *logits) override {
    before_call();
    tokens_.upload(tokens, static_cast<std::size_t>(n) * 4);
    generated_.prefill(weights_.get(), kv_.get(), static_cast<const std::int32_t *>(tokens_.get()),
                       n, pos, static_cast<float *>(logits_.get()));
    after_call(logits);
  }
  void decode(std::int32_t token, std::int64_t pos, float *logits) override {
    before_call();
    tokens_.upload(&token, 4);
    generated_.decode(weights_.get(), kv_.get(), static_cast<const std::int32_t *>(tokens_.get()),
                      pos, static_cast<float *>(logits_.get()));
    after_call(logits);
  }

  BandwidthReport measure_bandwidth(std::uint64_t buffer_bytes) override {
    constexpr int kProbes = 6;
    const double gbs = cuda::measure_copy_bandwidth_gbs(driver_, buffer_bytes, kProbes);
    char line[256];
    std::snprintf(line, sizeof line,
                  "device memory bandwidth (measured: device-to-device copies, read + write, "
                  "best of %d probes): %.1f GB/s\n",
                  kProbes, gbs);
    return {gbs, line};
  }

private:
  static constexpr std::uint64_t kUploadSlice = 64ull << 20; // a multiple of the page size

  void before_call() {
    if (!weights_.get() || !kv_.get())
      throw Error("internal: a model call before the weights and the KV cache are on the GPU");
    driver_.make_current();
  }
  void after_call(float *host_logits) {
    std::string err = cuda::take_mgpu_error();
    if (!err.empty())
      throw Error(err);
    logits_.download(host_logits, static_cast<std::size_t>(m_.config.vocab_size) * 4);
  }

  // Declaration order is teardown order reversed: the buffers are freed while the driver
  // lives, the kernel modules unloaded (registration_) before the driver goes.
  const Manifest m_;
  const EntryPoints generated_;
  cuda::Driver driver_;
  cuda::MgpuRegistration registration_;
  DeviceBuffer weights_; // [weights_bytes]
  DeviceBuffer kv_;      // [kv_bytes], zeroed
  DeviceBuffer tokens_;  // int32 [max_seq_len]
  DeviceBuffer logits_;  // f32 [vocab_size]
};

} // namespace

std::unique_ptr<Backend> make_cuda_backend(const Manifest &manifest, const EntryPoints &entry) {
  return std::make_unique<CudaBackend>(manifest, entry);
}

} // namespace moec
