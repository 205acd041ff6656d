// arena.cpp — Arena over anonymous mmap.
#include "moec/arena.h"

#include "moec/error.h"

#include <cerrno>
#include <cstring>
#include <string>
#include <sys/mman.h>
#include <utility>

namespace moec {

Arena::Arena(std::uint64_t bytes, const char *what) : bytes_(bytes) {
  if (bytes == 0)
    return;
  void *p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    throw Error(std::string("cannot allocate ") + std::to_string(bytes) + " bytes for the " +
                what + ": " + std::strerror(errno));
#ifdef MADV_HUGEPAGE
  ::madvise(p, bytes, MADV_HUGEPAGE); // advisory; fewer TLB misses on multi-GB arenas
#endif
  data_ = base_ = p;
  map_bytes_ = bytes;
}

Arena Arena::map_file(int fd, std::uint64_t file_bytes, std::uint64_t offset,
                      const std::string &path) {
  Arena a;
  void *p = ::mmap(nullptr, file_bytes, PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED)
    throw Error(path + ": cannot mmap: " + std::strerror(errno));
#ifdef MADV_HUGEPAGE
  ::madvise(p, file_bytes, MADV_HUGEPAGE); // advisory: 2 MiB page-cache folios where the kernel
                                           // can (CONFIG_READ_ONLY_THP_FOR_FS), fewer TLB misses
#endif
  a.base_ = p;
  a.map_bytes_ = file_bytes;
  a.data_ = static_cast<char *>(p) + offset;
  a.bytes_ = file_bytes - offset;
  return a;
}

void Arena::release() {
  if (base_)
    ::munmap(base_, map_bytes_);
  data_ = base_ = nullptr;
  bytes_ = map_bytes_ = 0;
}

Arena::~Arena() { release(); }

Arena::Arena(Arena &&o) noexcept
    : data_(std::exchange(o.data_, nullptr)), bytes_(std::exchange(o.bytes_, 0)),
      base_(std::exchange(o.base_, nullptr)), map_bytes_(std::exchange(o.map_bytes_, 0)) {}

Arena &Arena::operator=(Arena &&o) noexcept {
  if (this != &o) {
    release();
    data_ = std::exchange(o.data_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
    base_ = std::exchange(o.base_, nullptr);
    map_bytes_ = std::exchange(o.map_bytes_, 0);
  }
  return *this;
}

} // namespace moec
