// moec/safetensors.h — read-only, mmapped access to safetensors checkpoints.
//
// A checkpoint is one `*.safetensors` file or a sharded set described by
// `model.safetensors.index.json` ({"weight_map": {tensor name: shard file}}). Files are mapped,
// never copied; a TensorView points straight into the mapping and is valid while the owning
// Checkpoint lives. Opening validates everything up front through the shared checkpoint library
// (moec/checkpoint/safetensors.h: header bounds, JSON shape, dtypes, shape/size agreement,
// offsets, overlaps, duplicates across shards, shard names), so later lookups cannot fail
// halfway through a load and the compiler accepts exactly the same checkpoints. Every failure
// throws moec::Error naming the file.
#pragma once

#include "moec/checkpoint/file.h"
#include "moec/dtype.h"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace moec {

/// A read-only memory mapping of a whole file (RAII: unmapped on destruction).
class MappedFile {
public:
  explicit MappedFile(const std::string &path);

  const std::string &path() const { return path_; }
  const unsigned char *data() const { return map_.data(); } // null for an empty file
  std::uint64_t size() const { return map_.size(); }

private:
  std::string path_;
  checkpoint::Mapping map_;
};

/// One tensor inside a mapped checkpoint file.
struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape; // row-major dims, each >= 0
  const void *data = nullptr;      // [nbytes] bytes inside the mapping
  std::uint64_t nbytes = 0;        // product(shape) * dtype_size(dtype)
  std::string file;                // path of the file holding it
};

/// The tensors (in header order) and "__metadata__" of one safetensors file.
struct SafetensorsContents {
  std::vector<TensorView> tensors;
  std::map<std::string, std::string> metadata;
};

/// Parses and validates the bytes [data, data + size) of a whole safetensors file; the views
/// point into `data`. Throws moec::Error "<name>: <problem>". SafetensorsFile runs this on its
/// mapping; it is public so that the fuzzer can drive it without files.
SafetensorsContents parse_safetensors(const unsigned char *data, std::uint64_t size,
                                      const std::string &name);

/// One parsed `.safetensors` file.
class SafetensorsFile {
public:
  /// Maps and validates `path`; throws moec::Error "<path>: <problem>".
  explicit SafetensorsFile(const std::string &path);

  const std::string &path() const { return file_.path(); }
  const std::vector<TensorView> &tensors() const { return tensors_; }
  const std::map<std::string, std::string> &metadata() const { return metadata_; }

private:
  MappedFile file_;
  std::vector<TensorView> tensors_;              // in header order
  std::map<std::string, std::string> metadata_;  // "__metadata__", if present
};

/// A whole checkpoint: one file or the shards of an index, with lookup by tensor name.
class Checkpoint {
public:
  /// `path` is a `.safetensors` file, a `*.index.json` file, or a directory holding
  /// `model.safetensors.index.json` or `model.safetensors`.
  static Checkpoint open(const std::string &path);

  /// Null if `name` is not in the checkpoint.
  const TensorView *find(std::string_view name) const;
  /// Throws moec::Error if `name` is not in the checkpoint.
  const TensorView &get(std::string_view name) const;
  std::size_t size() const { return by_name_.size(); }
  /// All tensor names, sorted.
  std::vector<std::string> names() const;
  /// What was opened (for messages).
  const std::string &source() const { return source_; }

private:

  std::string source_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;        // owners of the mappings
  std::unordered_map<std::string, const TensorView *> by_name_; // into files_
};

} // namespace moec
