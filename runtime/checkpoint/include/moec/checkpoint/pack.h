// moec/checkpoint/pack.h — writing the packed weights file (weights_file.h) from a checkpoint.
//
// The manifest says where each tensor goes and in which format; the packer reads every
// source once, in slices of rows, checks that it is finite, quantizes it when the manifest asks
// (quantize.h), and writes the result at its offset with pwrite. Memory stays bounded whatever
// the checkpoint's size (one slice per thread and its f32 copy: under 25 MiB), the source pages
// read are dropped from the page cache as the stream passes them (posix_fadvise) when the
// checkpoint is larger than half the machine's memory, and the work is spread over threads by
// slice (every processor: quantizing is compute, ~175 M weights/s per core). Everything that can be checked from the headers (sources
// present, shapes, dtypes, FP8 scale tensors) is checked before the first byte is written.
#pragma once

#include "moec/checkpoint/manifest.h"
#include "moec/checkpoint/result.h"
#include "moec/checkpoint/safetensors.h"

#include <cstdint>
#include <string>

namespace moec::checkpoint {

struct PackOptions {
  unsigned threads = 0;                  // 0: every processor this process may use
  bool progress = false;                 // a progress line on stderr (callers pass isatty(2))
  std::uint64_t slice_bytes = 8ull << 20; // source bytes per unit of work (at least one row)
};

struct PackStats {
  std::uint64_t source_bytes = 0; // checkpoint bytes read
  std::uint64_t file_bytes = 0;   // bytes of the file written
  unsigned threads = 0;
};

/// Writes the weights file of `m` (m.weights_file must be set; its fingerprint goes in the
/// header) into `fd`, an empty regular file open for writing (a temporary the caller renames;
/// `path` names the final file in messages), reading sources from `ckpt`. The file is synced
/// before this returns. One-line errors: "<checkpoint file>: <tensor>: element [i, j] is NaN
/// (weights must be finite)", "<path>: cannot write: No space left on device", ...
Result<PackStats> pack_weights(const Manifest &m, const CheckpointHeaders &ckpt, int fd,
                               const std::string &path, const PackOptions &options = {});

} // namespace moec::checkpoint
