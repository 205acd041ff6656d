// moec/checkpoint/file.h — opening input files safely.
//
// Every file the compiler or the runtime reads from a model folder goes through here: it is
// opened without blocking (a FIFO would otherwise hang the open), must be a regular file (a
// symlink to one is fine: Hugging Face caches are made of them; /dev/zero, a FIFO or a
// directory are refused), and files read whole have a size cap.
#pragma once

#include "moec/checkpoint/result.h"

#include <cstdint>
#include <string>

namespace moec::checkpoint {

/// Cap on config.json, model.safetensors.index.json and other JSON read whole (Mixtral
/// 8x22B's index is ~100 KB).
constexpr std::uint64_t kMaxJsonFileBytes = 16u << 20;

/// An open regular file (RAII: closed on destruction).
class InputFile {
public:
  /// "<path>: does not exist" / "is a dangling symlink to '<target>'" / "is not a regular
  /// file (it is a FIFO)" / "cannot open: <errno>".
  static Result<InputFile> open(const std::string &path);
  InputFile(InputFile &&o) noexcept;
  InputFile &operator=(InputFile &&o) noexcept;
  InputFile(const InputFile &) = delete;
  InputFile &operator=(const InputFile &) = delete;
  ~InputFile();

  int fd() const { return fd_; }
  std::uint64_t size() const { return size_; } // at open time
  const std::string &path() const { return path_; }
  /// Reads exactly n bytes at `offset`; a short read means the file shrank.
  Status read_at(std::uint64_t offset, void *out, std::uint64_t n) const;

private:
  InputFile() = default;
  int fd_ = -1;
  std::uint64_t size_ = 0;
  std::string path_;
};

/// The whole of a regular file of at most `max_bytes` bytes ("<path>: is N bytes, more than
/// the M-byte limit of <kind>").
Result<std::string> read_small_file(const std::string &path, std::uint64_t max_bytes,
                                    const char *kind);

/// What is at `path`, for messages and decisions: nullopt-like "" if it exists (even as a
/// non-regular file), else "does not exist" or "is a dangling symlink to '<target>'".
std::string why_missing(const std::string &path);

/// A read-only mapping of a whole regular file (RAII: unmapped on destruction).
class Mapping {
public:
  static Result<Mapping> open(const std::string &path);
  Mapping(Mapping &&o) noexcept;
  Mapping &operator=(Mapping &&o) noexcept;
  Mapping(const Mapping &) = delete;
  Mapping &operator=(const Mapping &) = delete;
  ~Mapping();

  const unsigned char *data() const { return data_; } // null for an empty file
  std::uint64_t size() const { return size_; }

private:
  Mapping() = default;
  const unsigned char *data_ = nullptr;
  std::uint64_t size_ = 0;
};

} // namespace moec::checkpoint
