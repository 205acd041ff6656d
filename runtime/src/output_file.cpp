// output_file.cpp — write_output_file and check_output_path (the rules are in output_file.h).
#include "output_file.h"

#include "moec/error.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <ostream>

namespace moec {
namespace {

[[noreturn]] void fail(const std::string &path, const std::string &what) {
  throw Error(path + ": " + what);
}

std::string cannot_write(int err) { return std::string("cannot write: ") + std::strerror(err); }

// --- removing the temporary on SIGINT/SIGTERM/SIGHUP ----------------------------------------
// One temporary at a time (the runtime writes one output file at a time); its name sits in a
// static buffer so that the handler can unlink it without allocating.
char g_temp[PATH_MAX];
volatile std::sig_atomic_t g_temp_live = 0;
constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP};
struct sigaction g_previous[3];

int signal_slot(int sig) { return sig == SIGINT ? 0 : sig == SIGTERM ? 1 : 2; }

void on_signal(int sig, siginfo_t *info, void *context) {
  const struct sigaction &prev = g_previous[signal_slot(sig)];
  if (prev.sa_handler == SIG_IGN)
    return;
  if (prev.sa_handler != SIG_DFL) { // handled (--chat's Ctrl-C): the run goes on, so does the write
    if (prev.sa_flags & SA_SIGINFO)
      prev.sa_sigaction(sig, info, context);
    else
      prev.sa_handler(sig);
    return;
  }
  if (g_temp_live)
    ::unlink(g_temp);
  ::sigaction(sig, &prev, nullptr);
  ::raise(sig); // delivered with the default action once this handler returns
}

/// A unique temporary "<target>.tmp-XXXXXX", removed unless keep() is called after the rename,
/// and removed too if a signal ends the process while it exists.
class TempFile {
public:
  TempFile(const std::string &path, const std::string &target) {
    const std::string name = target + ".tmp-XXXXXX";
    if (name.size() >= sizeof g_temp)
      fail(path, cannot_write(ENAMETOOLONG));
    struct sigaction sa {};
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 3; ++i)
      ::sigaction(kSignals[i], &sa, &g_previous[i]);
    std::memcpy(g_temp, name.c_str(), name.size() + 1);
    fd_ = ::mkostemp(g_temp, O_CLOEXEC); // the file exists from here on; so does the handler
    if (fd_ < 0) {
      const int err = errno;
      restore_signals();
      fail(path, cannot_write(err));
    }
    g_temp_live = 1;
  }
  ~TempFile() {
    if (fd_ >= 0)
      ::close(fd_);
    if (g_temp_live)
      ::unlink(g_temp);
    g_temp_live = 0;
    restore_signals();
  }
  TempFile(const TempFile &) = delete;
  TempFile &operator=(const TempFile &) = delete;

  int fd() const { return fd_; }
  const char *name() const { return g_temp; }
  /// Closes the descriptor; returns 0 or an errno.
  int close() {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc == 0 ? 0 : errno;
  }
  void keep() { g_temp_live = 0; }

private:
  static void restore_signals() {
    for (int i = 0; i < 3; ++i)
      ::sigaction(kSignals[i], &g_previous[i], nullptr);
  }
  int fd_ = -1;
};

/// write(2) until all of it is written; returns 0 or an errno.
int write_all(int fd, const void *data, std::size_t n) {
  const char *p = static_cast<const char *>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return errno;
    if (w == 0)
      return EIO;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return 0;
}

// --- what the path names --------------------------------------------------------------------
struct Target {
  enum Kind { Missing, Regular, Device, StdStream } kind;
  std::string file; // Missing/Regular: the path to rename onto (a symlink's target resolved)
  mode_t mode = 0;  // Regular: its permission bits
  int fd = -1;      // StdStream: 1 or 2
};

Target classify(const std::string &path) {
  if (path.empty())
    throw Error("the output file name is empty");
  struct stat l {};
  if (::lstat(path.c_str(), &l) != 0) {
    if (errno != ENOENT)
      fail(path, cannot_write(errno));
    return {Target::Missing, path};
  }
  struct stat s = l;
  if (S_ISLNK(l.st_mode) && ::stat(path.c_str(), &s) != 0)
    fail(path, errno == ENOENT ? "cannot write: it is a dangling symbolic link"
                               : cannot_write(errno));
  for (int fd : {1, 2}) {
    struct stat f {};
    if (::fstat(fd, &f) == 0 && f.st_dev == s.st_dev && f.st_ino == s.st_ino &&
        (S_ISREG(s.st_mode) || S_ISCHR(s.st_mode) || S_ISFIFO(s.st_mode)))
      return {Target::StdStream, path, 0, fd};
  }
  if (S_ISREG(s.st_mode)) {
    std::string file = path;
    if (S_ISLNK(l.st_mode)) { // replace the link's target, never the link
      char buf[PATH_MAX];
      if (!::realpath(path.c_str(), buf))
        fail(path, cannot_write(errno));
      file = buf;
    }
    return {Target::Regular, file, static_cast<mode_t>(s.st_mode & 07777)};
  }
  if (S_ISCHR(s.st_mode) || S_ISFIFO(s.st_mode))
    return {Target::Device, path};
  if (S_ISDIR(s.st_mode))
    fail(path, "cannot write: it is a directory");
  if (S_ISBLK(s.st_mode))
    fail(path, "cannot write: it is a block device (a disk); refusing to write to it");
  fail(path, "cannot write: not a regular file, a character device or a FIFO");
}

mode_t new_file_mode() {
  const mode_t mask = ::umask(0); // read it: umask has no getter
  ::umask(mask);
  return 0666 & ~mask;
}

void write_through(const std::string &path, int fd, const void *data, std::size_t n) {
  if (int err = write_all(fd, data, n))
    fail(path, cannot_write(err));
}

} // namespace

void check_output_path(const std::string &path) {
  const Target t = classify(path);
  if (t.kind == Target::Device && ::access(path.c_str(), W_OK) != 0)
    fail(path, cannot_write(errno));
  if (t.kind != Target::Missing && t.kind != Target::Regular)
    return;
  std::string dir = std::filesystem::path(t.file).parent_path().string();
  if (dir.empty())
    dir = ".";
  struct stat d {};
  if (::stat(dir.c_str(), &d) != 0 || !S_ISDIR(d.st_mode))
    fail(path, "cannot write: directory " + dir + " does not exist");
  if (::access(dir.c_str(), W_OK) != 0)
    fail(path, "cannot write: directory " + dir + " is not writable");
}

void write_output_file(const std::string &path, const void *data, std::size_t n) {
  const Target t = classify(path);
  if (t.kind == Target::StdStream) {
    std::fflush(t.fd == 1 ? stdout : stderr); // what was printed before comes first
    return write_through(path, t.fd, data, n);
  }
  if (t.kind == Target::Device) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
      fail(path, cannot_write(errno));
    const int err = write_all(fd, data, n);
    const int close_err = ::close(fd) == 0 ? 0 : errno;
    if (err || close_err)
      fail(path, cannot_write(err ? err : close_err));
    return;
  }
  check_output_path(path); // a missing directory is named as such, not as mkstemp's ENOENT
  TempFile temp(path, t.file);
  int err = ::fchmod(temp.fd(), t.kind == Target::Regular ? t.mode : new_file_mode()) ? errno : 0;
  if (!err)
    err = write_all(temp.fd(), data, n);
  if (!err && ::fsync(temp.fd()) != 0)
    err = errno;
  if (int close_err = temp.close(); !err)
    err = close_err;
  if (!err && ::rename(temp.name(), t.file.c_str()) != 0)
    err = errno;
  if (err)
    fail(path, cannot_write(err));
  temp.keep();
}

void flush_checked(std::ostream &out) {
  // std::cout reports a failed write(2) through errno only: the write that failed is the last
  // call that set it, in the flush or in the `<<` just before.
  if (out) {
    errno = 0;
    out.flush();
  }
  if (!out) {
    const int err = errno;
    throw Error(err ? "standard output: " + cannot_write(err) : "standard output: cannot write");
  }
}

} // namespace moec
