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
  data_ = p;
}

Arena::~Arena() {
  if (data_)
    ::munmap(data_, bytes_);
}

Arena::Arena(Arena &&o) noexcept
    : data_(std::exchange(o.data_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}

Arena &Arena::operator=(Arena &&o) noexcept {
  if (this != &o) {
    if (data_)
      ::munmap(data_, bytes_);
    data_ = std::exchange(o.data_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

} // namespace moec
