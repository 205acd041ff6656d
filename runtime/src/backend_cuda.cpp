// backend_cuda.cpp — the CUDA backend: the model in device memory, the generated host code
// launching its kernels through the mgpu* functions (cuda_mgpu.cpp).
//
// The generated functions of the nvptx target take device pointers (abi.h, "GPU target"):
// weights, KV cache, tokens and logits all live on the device. The backend owns the driver
// (moec/cuda.h) and registers it for the mgpu* functions while it lives; every call copies the
// tokens in and the V logits back, and raises what an mgpu* call recorded (generated code
// cannot propagate exceptions). The batched step (--serve) works the same way over a device
// KV pool: each step copies its row arrays (tokens, positions, block tables, logit rows) into
// device buffers that grow to the largest step seen, and its n_logits x V logits back.
// moec_step runs as a CUDA graph (cuda::StepGraph: captured once per shape, then replayed with
// one cuGraphLaunch instead of ~20-24 cuLaunchKernel per layer), unless $MOEC_CUDA_GRAPHS=0 or the
// driver refuses graphs; the bits are those of the direct launches either way.
#include "moec/backend.h"

#include "moec/arena.h"
#include "moec/cuda.h"
#include "moec/error.h"
#include "moec/weights.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

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
    // With a step, one sequence runs over the pool of max_blocks_per_seq = ceil(S / B) blocks
    // (step_over_cache), which outgrows the contiguous cache when B does not divide S.
    std::uint64_t bytes = m_.kv_bytes;
    if (generated_.step && m_.step) {
      const ModelConfig &c = m_.config;
      const auto block_bytes = static_cast<std::uint64_t>(
          c.num_hidden_layers * 2 * m_.step->kv_block_size * c.num_key_value_heads * c.head_dim *
          static_cast<std::int64_t>(sizeof(float)));
      bytes = std::max<std::uint64_t>(
          bytes, block_bytes * static_cast<std::uint64_t>(m_.step->max_blocks_per_seq));
    }
    kv_ = DeviceBuffer(driver_, static_cast<std::size_t>(bytes));
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
    if (generated_.step && m_.step)
      return step_over_cache(tokens, n, pos, logits);
    before_call();
    tokens_.upload(tokens, static_cast<std::size_t>(n) * 4);
    generated_.prefill(weights_.get(), kv_.get(), static_cast<const std::int32_t *>(tokens_.get()),
                       n, pos, static_cast<float *>(logits_.get()));
    after_call(logits);
  }
  void decode(std::int32_t token, std::int64_t pos, float *logits) override {
    if (generated_.step && m_.step)
      return step_over_cache(&token, 1, pos, logits);
    before_call();
    tokens_.upload(&token, 4);
    generated_.decode(weights_.get(), kv_.get(), static_cast<const std::int32_t *>(tokens_.get()),
                      pos, static_cast<float *>(logits_.get()));
    after_call(logits);
  }

  void allocate_kv_pool(std::uint64_t bytes) override {
    if (!generated_.step)
      Backend::allocate_kv_pool(bytes);
    pool_ = DeviceBuffer(driver_, static_cast<std::size_t>(bytes));
    pool_.zero();
  }
  void step(std::int64_t n_blocks, const std::int32_t *tokens, const std::int32_t *positions,
            const std::int32_t *block_tables, std::int64_t n_rows, const std::int32_t *logit_rows,
            std::int64_t n_logits, float *logits) override {
    if (!pool_.get())
      throw Error("internal: step() without its KV pool");
    run_step(pool_, n_blocks, tokens, positions, block_tables, n_rows, logit_rows, n_logits,
             logits);
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

  static constexpr std::int64_t kMaxGridY = 65535;

  /// $MOEC_CUDA_GRAPHS=0 launches moec_step's kernels one by one (read per step, so that a
  /// benchmark or a test compares both paths in one process).
  static bool graphs_wanted() {
    const char *v = std::getenv("MOEC_CUDA_GRAPHS");
    return !(v && std::string(v) == "0");
  }

  /// `buf` holds at least `bytes` (a step's buffers grow to the largest step, never shrink).
  void reserve(DeviceBuffer &buf, std::size_t bytes) {
    if (!buf.get() || buf.size() < bytes)
      buf = DeviceBuffer(driver_, std::max<std::size_t>(bytes, 4));
  }
  void upload(DeviceBuffer &buf, const void *host, std::size_t bytes) {
    reserve(buf, bytes);
    if (bytes)
      buf.upload(host, bytes);
  }

  /// moec_step over `pool` (the --serve pool, or the contiguous cache for one sequence).
  void run_step(DeviceBuffer &pool, std::int64_t n_blocks, const std::int32_t *tokens,
                const std::int32_t *positions, const std::int32_t *block_tables,
                std::int64_t n_rows, const std::int32_t *logit_rows, std::int64_t n_logits,
                float *logits) {
    if (!generated_.step || !m_.step || !weights_.get())
      throw Error("internal: a step without a batched step or the weights");
    // The router GEMV runs one row per grid.y index, which CUDA caps at 65535 (below abi.h's
    // MOEC_STEP_MAX_ROWS): say so rather than fail inside a launch.
    if (n_rows > kMaxGridY)
      throw Error("a GPU step runs at most " + std::to_string(kMaxGridY) + " rows, not " +
                  std::to_string(n_rows) + " (lower --prefill-chunk)");
    driver_.make_current();
    const auto rows = static_cast<std::size_t>(n_rows);
    const auto table_ints = rows * static_cast<std::size_t>(m_.step->max_blocks_per_seq);
    const auto logit_floats =
        static_cast<std::size_t>(n_logits) * static_cast<std::size_t>(m_.config.vocab_size);
    upload(step_tokens_, tokens, rows * 4);
    upload(step_positions_, positions, rows * 4);
    upload(step_tables_, block_tables, table_ints * 4);
    upload(step_logit_rows_, logit_rows, static_cast<std::size_t>(n_logits) * 4);
    reserve(step_logits_, logit_floats * 4);
    auto call = [&] {
      generated_.step(weights_.get(), pool.get(), n_blocks,
                      static_cast<const std::int32_t *>(step_tokens_.get()),
                      static_cast<const std::int32_t *>(step_positions_.get()),
                      static_cast<const std::int32_t *>(step_tables_.get()), n_rows,
                      static_cast<const std::int32_t *>(step_logit_rows_.get()), n_logits,
                      static_cast<float *>(step_logits_.get()));
    };
    // Every argument of the call, sizes (the shape) and pointers: the generated host code reads
    // nothing else (positions, kv lengths and tokens are device data), so an equal pair replays
    // the captured graph as is.
    const std::vector<std::uint64_t> shape = {static_cast<std::uint64_t>(n_rows),
                                              static_cast<std::uint64_t>(n_logits),
                                              static_cast<std::uint64_t>(n_blocks)};
    const std::vector<std::uint64_t> args = {weights_.ptr(),        pool.ptr(),
                                             step_tokens_.ptr(),    step_positions_.ptr(),
                                             step_tables_.ptr(),    step_logit_rows_.ptr(),
                                             step_logits_.ptr()};
    if (!(graphs_wanted() && graphs_.run(shape, args, call)))
      call();
    std::string err = cuda::take_mgpu_error();
    if (!err.empty())
      throw Error(err);
    if (logit_floats)
      step_logits_.download(logits, logit_floats * 4);
  }

  /// One sequence through moec_step over the contiguous cache, which is the pool of
  /// max_blocks_per_seq blocks under the identity table (abi.h). On this target moec_prefill /
  /// moec_decode are not bit-equal to the step (their one-token projections are f32 GEMVs, the
  /// step's GEMMs take bf16 activations), so OUT --prompt runs the step whenever the object has
  /// one: its tokens equal the server's by construction (issue: batch invariance). The price:
  /// the step's paged attention gives each row its own block (no split over keys), slower than
  /// moec_prefill's on long prompts.
  void step_over_cache(const std::int32_t *tokens, std::int64_t n, std::int64_t pos,
                       float *logits) {
    if (!kv_.get())
      throw Error("internal: a model call before the KV cache is on the GPU");
    const std::int64_t blocks = m_.step->max_blocks_per_seq;
    std::vector<std::int32_t> positions(static_cast<std::size_t>(n));
    std::vector<std::int32_t> tables(static_cast<std::size_t>(n * blocks));
    for (std::int64_t r = 0; r < n; ++r) {
      positions[static_cast<std::size_t>(r)] = static_cast<std::int32_t>(pos + r);
      for (std::int64_t b = 0; b < blocks; ++b)
        tables[static_cast<std::size_t>(r * blocks + b)] = static_cast<std::int32_t>(b);
    }
    const std::int32_t last = static_cast<std::int32_t>(n - 1);
    run_step(kv_, blocks, tokens, positions.data(), tables.data(), n, &last, 1, logits);
  }

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
  cuda::StepGraph graphs_{driver_}; // moec_step as a CUDA graph (cuda.h)
  DeviceBuffer weights_; // [weights_bytes]
  DeviceBuffer kv_;      // [kv_bytes] (or the one-sequence pool, if larger), zeroed
  DeviceBuffer tokens_;  // int32 [max_seq_len]
  DeviceBuffer logits_;  // f32 [vocab_size]
  DeviceBuffer pool_;    // the paged KV pool of --serve, zeroed
  // moec_step's arguments: int32 [n_rows], [n_rows], [n_rows][max_blocks_per_seq],
  // [n_logits]; f32 [n_logits][vocab_size] (each sized for the largest step so far).
  DeviceBuffer step_tokens_, step_positions_, step_tables_, step_logit_rows_, step_logits_;
};

} // namespace

std::unique_ptr<Backend> make_cuda_backend(const Manifest &manifest, const EntryPoints &entry) {
  return std::make_unique<CudaBackend>(manifest, entry);
}

} // namespace moec
