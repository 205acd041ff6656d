// moec/weights.h — filling the weights arena from a checkpoint, as the manifest lays it out.
//
// Every manifest tensor is copied from its checkpoint source(s) to its arena offset; n > 1
// sources are stacked along a new leading axis (the experts of one layer). All sources are
// checked (present, same dtype as the arena tensor, matching shape) before a single byte is
// copied, so a bad checkpoint fails in milliseconds rather than after minutes of copying.
#pragma once

#include "moec/arena.h"
#include "moec/manifest.h"
#include "moec/safetensors.h"

#include <cstdint>
#include <functional>
#include <optional>

namespace moec {

struct LoadOptions {
  bool progress = false; // draw a progress bar on stderr (callers pass isatty(2))
};

/// Validates `checkpoint` against `manifest` without copying; throws moec::Error naming the
/// first mismatching tensor, expected vs found.
void check_weights(const Manifest &manifest, const Checkpoint &checkpoint);

/// Calls check_weights, then hands every weight's bytes to `write(arena offset, source,
/// bytes)` in pieces (a progress bar on stderr if options.progress): the arena is device memory
/// (the CUDA backend's load_weights). Each piece is checked first: a NaN or infinity throws
/// moec::Error "<file>: <tensor>: element [i, j] is NaN (weights must be finite)" naming the
/// first one (+inf, -inf). A checkpoint file that shrinks while it is read (SIGBUS on the
/// mapping) throws "<file>: the file changed while loading (truncated?)"; SIGBUS is handled
/// only for the duration of the call, while the check reads the mapping (not inside `write`).
using WriteFn = std::function<void(std::uint64_t, const void *, std::uint64_t)>;
void copy_weights(const Manifest &manifest, const Checkpoint &checkpoint,
                  const LoadOptions &options, const WriteFn &write);

/// Allocates the arena (`manifest.weights_bytes`) and fills it like copy_weights (same checks
/// and errors), checking and copying each byte in one pass.
Arena load_weights(const Manifest &manifest, const Checkpoint &checkpoint,
                   const LoadOptions &options = {});

/// Rows [0, n) of the row-major [n, k] matrix `from` (f32, bf16 or f16) into panel order at
/// `to` (WeightTensor::panel_cols: `cols` rows per panel, `lanes` lanes; n a multiple of cols,
/// k of lanes), every element checked finite in the same pass. Returns n * k, or the
/// row-major index of the first NaN or infinity (`to` then holds only some panels). One
/// thread; load_weights runs it on its pieces in parallel.
std::uint64_t to_panels(const void *from, void *to, std::uint64_t n, std::uint64_t k,
                        std::uint64_t cols, std::uint64_t lanes, DType dtype);

/// The packed weights file of a manifest with a "weights_file": `flag` (--weights) if given,
/// else the manifest's file name in the directory of `executable` (/proc/self/exe).
std::string weights_file_path(const Manifest &manifest, const std::optional<std::string> &flag,
                              const std::string &executable = "/proc/self/exe");

/// Maps the packed weights file at `path` read-only and returns it as the arena (the mapping
/// from byte 4096 on: moec/checkpoint/weights_file.h). Checked like a checkpoint before use:
/// a regular file, magic, version, exact size (truncated or grown), the manifest's arena size
/// and fingerprint; one-line moec::Error naming the file. No weight byte is read here: the
/// weights were checked finite when the file was packed, and the fingerprint says this file is
/// that one, so start-up costs a header read and a mmap whatever the model's size.
Arena map_weights_file(const Manifest &manifest, const std::string &path);

/// MemAvailable from /proc/meminfo in bytes; nullopt if it cannot be read.
std::optional<std::uint64_t> mem_available_bytes();

/// Throws moec::Error if `available` (by default MemAvailable) is smaller than the weights
/// arena plus the KV cache; passes when `available` is nullopt (unknown). (A GPU model checks
/// its device instead: check_device_memory.)
void check_memory(const Manifest &manifest,
                  std::optional<std::uint64_t> available = mem_available_bytes());

/// The same check for a GPU model's device memory: throws moec::Error "not enough GPU memory"
/// naming `device` if `free_bytes` (cuMemGetInfo) cannot hold the weights and the KV cache.
void check_device_memory(const Manifest &manifest, std::uint64_t free_bytes,
                         const std::string &device);

} // namespace moec
