// moec/arena.h — one big zeroed, page-aligned allocation (weights arena, KV cache).
//
// Anonymous mmap gives zeroed memory aligned to the page size (a multiple of
// MOEC_WEIGHT_ALIGNMENT) and returns it to the OS on destruction; no separate memset pass over
// tens of gigabytes is needed.
#pragma once

#include <cstdint>

namespace moec {

class Arena {
public:
  Arena() = default;
  /// Allocates `bytes` zeroed bytes (none for 0); throws moec::Error naming `what` on failure.
  Arena(std::uint64_t bytes, const char *what);
  ~Arena();
  Arena(Arena &&other) noexcept;
  Arena &operator=(Arena &&other) noexcept;
  Arena(const Arena &) = delete;
  Arena &operator=(const Arena &) = delete;

  void *data() const { return data_; }
  std::uint64_t bytes() const { return bytes_; }

private:
  void *data_ = nullptr;  // [bytes_] bytes, page-aligned; null when bytes_ == 0
  std::uint64_t bytes_ = 0;
};

} // namespace moec
