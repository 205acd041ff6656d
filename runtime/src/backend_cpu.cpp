// backend_cpu.cpp — the CPU backend: host arenas, direct calls.
//
// The generated object for the cpu target takes host pointers: the weights arena (filled from
// the checkpoint, or the mapped packed weights file), the KV cache arena, the tokens and the
// logits. Nothing here loads or names libcuda.
#include "moec/backend.h"

#include "moec/error.h"
#include "moec/kv_cache.h"

#include <optional>

namespace moec {
namespace {

class CpuBackend final : public Backend {
public:
  CpuBackend(const Manifest &m, const EntryPoints &entry) : m_(m), entry_(entry) {}

  Target target() const override { return Target::Cpu; }
  std::string device_name() const override { return "CPU"; }

  void check_memory(std::optional<std::uint64_t> host_available) const override {
    moec::check_memory(m_, host_available);
  }
  void load_weights(const Checkpoint &checkpoint, const LoadOptions &options) override {
    weights_ = moec::load_weights(m_, checkpoint, options);
  }
  void map_weights(const std::string &path) override { weights_ = map_weights_file(m_, path); }
  void allocate_kv_cache() override { kv_.emplace(m_); }
  void warm_up() override {} // the code is linked in; the weights' pages are touched by loading

  void prefill(const std::int32_t *tokens, std::int64_t n, std::int64_t pos,
               float *logits) override {
    entry_.prefill(weights_.data(), kv(), tokens, n, pos, logits);
  }
  void decode(std::int32_t token, std::int64_t pos, float *logits) override {
    entry_.decode(weights_.data(), kv(), &token, pos, logits);
  }

  void allocate_kv_pool(std::uint64_t bytes) override {
    if (!entry_.step)
      Backend::allocate_kv_pool(bytes);
    pool_ = Arena(bytes, "the paged KV cache");
  }
  void step(std::int64_t n_blocks, const std::int32_t *tokens, const std::int32_t *positions,
            const std::int32_t *block_tables, std::int64_t n_rows, const std::int32_t *logit_rows,
            std::int64_t n_logits, float *logits) override {
    if (!entry_.step || !pool_.data())
      throw Error("internal: step() without a batched step or its KV pool");
    entry_.step(weights_.data(), pool_.data(), n_blocks, tokens, positions, block_tables, n_rows,
                logit_rows, n_logits, logits);
  }

  void touch_weights() override {
    // One read per 4 KiB page, both threads: the mapping's faults (and reads) happen here.
    const auto *bytes = static_cast<const volatile unsigned char *>(weights_.data());
    const std::int64_t pages = static_cast<std::int64_t>((weights_.bytes() + 4095) / 4096);
    unsigned sum = 0;
#pragma omp parallel for schedule(static) reduction(+ : sum)
    for (std::int64_t p = 0; p < pages; ++p)
      sum += bytes[p * 4096];
    touched_ = sum;
  }

  BandwidthReport measure_bandwidth(std::uint64_t buffer_bytes) override {
    return probe_host_bandwidth(weights_, buffer_bytes);
  }

private:
  unsigned touched_ = 0; // keeps touch_weights' reads
  void *kv() const {
    if (!kv_)
      throw Error("internal: a model call before allocate_kv_cache()");
    return kv_->data();
  }

  const Manifest m_;
  const EntryPoints entry_;
  Arena weights_;              // [weights_bytes]: filled from the checkpoint, or the packed file
  std::optional<KvCache> kv_;  // f32 [L][2][S][KVH][HD], zeroed
  Arena pool_;                 // the paged KV pool of --serve
};

} // namespace

std::unique_ptr<Backend> make_cpu_backend(const Manifest &manifest, const EntryPoints &entry) {
  return std::make_unique<CpuBackend>(manifest, entry);
}

} // namespace moec
