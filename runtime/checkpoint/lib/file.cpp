// file.cpp — InputFile, read_small_file, Mapping: non-blocking opens of regular files only.
#include "moec/checkpoint/file.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace moec::checkpoint {
namespace {
const char *kind_of(mode_t m) {
  if (S_ISDIR(m))
    return "a directory";
  if (S_ISFIFO(m))
    return "a FIFO";
  if (S_ISCHR(m))
    return "a character device";
  if (S_ISBLK(m))
    return "a block device";
  if (S_ISSOCK(m))
    return "a socket";
  return "not a plain file";
}
} // namespace

std::string why_missing(const std::string &path) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0)
    return "";
  if (::lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
    char target[4096];
    ssize_t n = ::readlink(path.c_str(), target, sizeof target - 1);
    std::string t = n > 0 ? std::string(target, static_cast<std::size_t>(n)) : "?";
    return "is a dangling symlink to '" + t + "'";
  }
  return errno == ENOENT || errno == ENOTDIR ? "does not exist"
                                             : std::string("cannot open: ") + std::strerror(errno);
}

Result<InputFile> InputFile::open(const std::string &path) {
  if (path.empty())
    return fail("the path is empty");
  if (std::string why = why_missing(path); !why.empty())
    return fail(path + ": " + why);
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    return fail(path + ": cannot open: " + std::strerror(errno));
  InputFile f;
  f.fd_ = fd;
  f.path_ = path;
  struct stat st;
  if (::fstat(fd, &st) != 0)
    return fail(path + ": cannot stat: " + std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    return fail(path + ": not a regular file (it is " + kind_of(st.st_mode) + ")");
  f.size_ = static_cast<std::uint64_t>(st.st_size);
  return f;
}

InputFile::InputFile(InputFile &&o) noexcept
    : fd_(o.fd_), size_(o.size_), path_(std::move(o.path_)) {
  o.fd_ = -1;
}
InputFile &InputFile::operator=(InputFile &&o) noexcept {
  std::swap(fd_, o.fd_);
  std::swap(size_, o.size_);
  std::swap(path_, o.path_);
  return *this;
}
InputFile::~InputFile() {
  if (fd_ >= 0)
    ::close(fd_);
}

Status InputFile::read_at(std::uint64_t offset, void *out, std::uint64_t n) const {
  auto *p = static_cast<char *>(out);
  while (n > 0) {
    ssize_t got = ::pread(fd_, p, n, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0)
      return fail(path_ + ": cannot read: " + std::strerror(errno));
    if (got == 0)
      return fail(path_ + ": the file changed while it was read (it is shorter now)");
    p += got;
    offset += static_cast<std::uint64_t>(got);
    n -= static_cast<std::uint64_t>(got);
  }
  return ok();
}

Result<std::string> read_small_file(const std::string &path, std::uint64_t max_bytes,
                                    const char *kind) {
  Result<InputFile> f = InputFile::open(path);
  if (!f)
    return f.failure();
  if (f->size() > max_bytes)
    return fail(path + ": is " + std::to_string(f->size()) + " bytes, more than the " +
                std::to_string(max_bytes) + "-byte limit of " + kind);
  std::string text(f->size(), '\0');
  if (Status s = f->read_at(0, text.data(), text.size()); !s)
    return s.failure();
  return text;
}

Result<Mapping> Mapping::open(const std::string &path) {
  Result<InputFile> f = InputFile::open(path);
  if (!f)
    return f.failure();
  Mapping m;
  m.size_ = f->size();
  if (m.size_ > 0) {
    void *p = ::mmap(nullptr, m.size_, PROT_READ, MAP_PRIVATE, f->fd(), 0);
    if (p == MAP_FAILED)
      return fail(path + ": cannot mmap: " + std::strerror(errno));
    m.data_ = static_cast<const unsigned char *>(p);
  }
  return m; // the mapping keeps the file alive after the fd closes
}

Mapping::Mapping(Mapping &&o) noexcept : data_(o.data_), size_(o.size_) { o.data_ = nullptr; }
Mapping &Mapping::operator=(Mapping &&o) noexcept {
  std::swap(data_, o.data_);
  std::swap(size_, o.size_);
  return *this;
}
Mapping::~Mapping() {
  if (data_)
    ::munmap(const_cast<unsigned char *>(data_), size_);
}

} // namespace moec::checkpoint
