// moec/backend.h — where a compiled model's memory lives and how its functions are called.
//
// One Backend per loaded model, made once by make_backend() from the manifest's target and
// owned by the Session (src/driver.h) or by --serve. The run loop (run.cpp, chat.cpp,
// bench.cpp, server.cpp) talks to this interface only and never asks which target it has:
//   cpu   → CpuBackend (backend_cpu.cpp): weights in a host arena filled from the checkpoint,
//           or the mapped packed weights file; the KV cache in a host arena; the generated
//           functions called with those pointers.
//   nvptx → CudaBackend (backend_cuda.cpp): owns the CUDA driver (moec/cuda.h); weights go
//           from the mmapped checkpoint straight to device memory, where the KV cache, tokens
//           and logits also live; each call copies the tokens in and the logits back.
//           warm_up() loads the kernel modules (the driver JIT-compiles the PTX) so that no
//           timed call pays for it.
// Layering: run loop → Backend → CUDA driver layer (moec/cuda.h: dlopen, typed function
// table) → libcuda.so.1. Making a CPU backend never loads libcuda.
//
// Order of use: check_memory → load_weights or map_weights → allocate_kv_cache → warm_up →
// prefill / decode (or, for --serve, allocate_kv_pool → step).
#pragma once

#include "moec/bench.h"
#include "moec/entry_points.h"
#include "moec/manifest.h"
#include "moec/safetensors.h"
#include "moec/weights.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace moec {

/// What a compiled model runs on; the manifest's "target".
enum class Target { Cpu, Nvptx };

/// The manifest's target as an enum: the one place its string is read (parse_manifest has
/// already rejected any other value).
Target target_of(const Manifest &m);

class Backend {
public:
  virtual ~Backend() = default;
  Backend(const Backend &) = delete;
  Backend &operator=(const Backend &) = delete;

  virtual Target target() const = 0;
  /// Where the model runs, for messages: "CPU" or the GPU's name.
  virtual std::string device_name() const = 0;

  /// Throws moec::Error "not enough [GPU] memory: ..." if the weights and the KV cache do not
  /// fit, before anything is read. `host_available` (MemAvailable or --test-mem-available,
  /// nullopt: unknown) is the CPU backend's budget; the CUDA backend asks its device.
  virtual void check_memory(std::optional<std::uint64_t> host_available) const = 0;
  /// Fills the weights from `checkpoint` (copy_weights' checks and errors).
  virtual void load_weights(const Checkpoint &checkpoint, const LoadOptions &options) = 0;
  /// Uses the packed weights file at `path` (map_weights_file: checked, mapped): the CPU
  /// backend runs on the mapping, the CUDA backend uploads it to the device.
  virtual void map_weights(const std::string &path) = 0;
  /// Allocates the zeroed KV cache the manifest describes (prefill / decode).
  virtual void allocate_kv_cache() = 0;
  /// Does now what the first call would otherwise do inside a timed region.
  virtual void warm_up() = 0;

  /// The generated prefill over this backend's weights and KV cache: `tokens` [n] (in a buffer
  /// of max_seq_len ids, abi.h) at positions [pos, pos + n); the last token's logits [V] to
  /// `logits`. Host pointers whatever the backend. Throws moec::Error if the call failed.
  virtual void prefill(const std::int32_t *tokens, std::int64_t n, std::int64_t pos,
                       float *logits) = 0;
  /// The generated one-token decode at `pos`; like prefill.
  virtual void decode(std::int32_t token, std::int64_t pos, float *logits) = 0;

  /// Allocates the zeroed paged KV pool of `bytes` that step() uses.
  virtual void allocate_kv_pool(std::uint64_t bytes);
  /// moec_step over this backend's weights and KV pool (abi.h); host pointers. The default
  /// (a backend without a batched step) throws moec::Error; --serve checks the object first.
  virtual void step(std::int64_t n_blocks, const std::int32_t *tokens,
                    const std::int32_t *positions, const std::int32_t *block_tables,
                    std::int64_t n_rows, const std::int32_t *logit_rows, std::int64_t n_logits,
                    float *logits);

  /// Brings every weight page into memory (--bench, untimed, before the timed prefill): a
  /// packed file is mapped, not read, at start-up, and the first prefill would otherwise time
  /// its page faults and, after a compile dropped the file from the page cache, the disk.
  virtual void touch_weights() {}

  /// The bandwidth of the memory decode reads (--bench, after the run): the CPU backend reads
  /// its weights (or a `buffer_bytes` buffer when they would fit in the caches), the CUDA
  /// backend copies a `buffer_bytes` buffer device to device.
  virtual BandwidthReport measure_bandwidth(std::uint64_t buffer_bytes) = 0;

protected:
  Backend() = default;
};

/// The backend for `manifest`'s target, calling `entry` (the generated object's functions).
/// Throws moec::Error if it cannot start (nvptx: no CUDA driver, no device, too old a GPU).
std::unique_ptr<Backend> make_backend(const Manifest &manifest, const EntryPoints &entry);

std::unique_ptr<Backend> make_cpu_backend(const Manifest &manifest, const EntryPoints &entry);
std::unique_ptr<Backend> make_cuda_backend(const Manifest &manifest, const EntryPoints &entry);

} // namespace moec
