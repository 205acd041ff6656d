// moec/arena.h — one big page-aligned mapping (weights arena, KV cache).
//
// Anonymous mmap gives zeroed memory aligned to the page size (a multiple of
// MOEC_WEIGHT_ALIGNMENT) and returns it to the OS on destruction; no separate memset pass over
// tens of gigabytes is needed. map_file() instead maps a packed weights file read-only: the
// arena is then the file's page cache, shared with every process that maps it.
#pragma once

#include <cstdint>
#include <string>

namespace moec {

class Arena {
public:
  Arena() = default;
  /// Allocates `bytes` zeroed bytes (none for 0); throws moec::Error naming `what` on failure.
  Arena(std::uint64_t bytes, const char *what);
  /// Maps [0, file_bytes) of `fd` read-only; data() is the mapping + `offset` (page-aligned)
  /// and bytes() is file_bytes - offset. Throws moec::Error naming `path` on failure.
  static Arena map_file(int fd, std::uint64_t file_bytes, std::uint64_t offset,
                        const std::string &path);
  ~Arena();
  Arena(Arena &&other) noexcept;
  Arena &operator=(Arena &&other) noexcept;
  Arena(const Arena &) = delete;
  Arena &operator=(const Arena &) = delete;

  void *data() const { return data_; }
  std::uint64_t bytes() const { return bytes_; }

private:
  void release();
  void *data_ = nullptr;  // [bytes_] bytes, page-aligned; null when bytes_ == 0
  std::uint64_t bytes_ = 0;
  void *base_ = nullptr;  // the mapping: [map_bytes_] bytes from base_ (data_ lies inside)
  std::uint64_t map_bytes_ = 0;
};

} // namespace moec
