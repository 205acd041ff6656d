// moec/checkpoint/safetensors.h — safetensors headers, sharded indexes and checkpoint folders.
//
// A file: u64 little-endian N, N bytes of JSON header (at most 100 MB, as safetensors itself
// allows; no NUL bytes: the format pads with spaces), then the data region. Header entries:
// {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}} with offsets relative
// to the data region; "__metadata__" maps strings to strings. Everything is checked: bounds,
// types, dtypes, shape/size agreement, overlaps, duplicate keys, nesting depth.
//
// A sharded checkpoint: model.safetensors.index.json {"weight_map": {tensor: shard}} where each
// shard is a plain file name in the index's folder: no '/', no "..", no NUL, ending in
// ".safetensors". The compiler (headers only) and the runtime (mmapped) accept exactly the same.
#pragma once

#include "moec/checkpoint/dtype.h"
#include "moec/checkpoint/result.h"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace moec::checkpoint {

/// safetensors' own cap on the header length.
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;
/// Dimensions per tensor (PyTorch allows 64).
constexpr std::size_t kMaxRank = 64;

/// One tensor of a safetensors header.
struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape; // row-major dims, each >= 0
  std::uint64_t begin = 0;         // bytes from the start of the data region
  std::uint64_t nbytes = 0;        // product(shape) * dtype_size(dtype) == end - begin
};

/// A parsed header: the tensors in header order and "__metadata__".
struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;
  std::map<std::string, std::string> metadata;
  std::uint64_t data_start = 0; // 8 + N: file offset of the data region
};

/// Parses the header at the start of `bytes` ([0, available) of a file of `file_size` bytes;
/// available >= 8 + N is enough). Messages: "<name>: <problem>".
Result<SafetensorsHeader> parse_safetensors_header(const unsigned char *bytes,
                                                   std::uint64_t available,
                                                   std::uint64_t file_size,
                                                   const std::string &name);

/// "[4096, 14336]": a shape as the checkpoint library's and the runtime's messages print it.
std::string shape_str(const std::vector<std::int64_t> &shape);

/// "[3, 17]": the row-major multi-index of flat element `i` of a tensor of `shape` (messages
/// naming a bad element: the compiler's packing and the runtime's load say it the same way).
std::string element_index_str(const std::vector<std::int64_t> &shape, std::uint64_t i);

/// Reads and parses only the header of the file at `path` (never the data).
Result<SafetensorsHeader> read_safetensors_header(const std::string &path);

/// The bytes of a header for `tensors` (offsets as given) and `metadata`: the 8-byte length
/// and the JSON, padded with spaces so that the data starts 8-byte aligned.
std::string write_safetensors_header(const std::vector<TensorInfo> &tensors,
                                     const std::map<std::string, std::string> &metadata);

/// model.safetensors.index.json.
struct CheckpointIndex {
  std::map<std::string, std::string> weight_map; // tensor -> shard file name
};
Result<CheckpointIndex> parse_index(std::string_view text, const std::string &name);
/// The shard-name rule above; "" if `shard` is acceptable, else why not.
std::string shard_name_problem(const std::string &shard);

/// The files of a checkpoint, before any is read.
struct CheckpointFiles {
  std::string source;                  // what was opened (for messages)
  std::optional<CheckpointIndex> index; // when sharded
  std::vector<std::string> files;       // paths of the safetensors files, sorted
};
/// `path` is a folder holding model.safetensors.index.json or model.safetensors, an
/// `*.index.json` file, or a `.safetensors` file.
Result<CheckpointFiles> locate_checkpoint(const std::string &path);

/// Cross-file checks once every header is parsed (headers[i] belongs to files.files[i]): no
/// tensor in two files; every weight_map entry is in the file it names.
Status check_checkpoint(const CheckpointFiles &files,
                        const std::vector<const SafetensorsHeader *> &headers);

/// locate_checkpoint + read_safetensors_header of every file + check_checkpoint.
struct CheckpointHeaders {
  CheckpointFiles files;
  std::vector<SafetensorsHeader> headers; // one per files.files
};
Result<CheckpointHeaders> read_checkpoint_headers(const std::string &path);

} // namespace moec::checkpoint
