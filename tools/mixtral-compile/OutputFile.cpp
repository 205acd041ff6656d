//===- OutputFile.cpp - where mixtral-compile writes OUT ------------------===//
//
// OutputFile and runChildGroup; the rules are in OutputFile.h.
//
//===----------------------------------------------------------------------===//

#include "OutputFile.h"

#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <ctime>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

using namespace llvm;

namespace moec {
namespace {

Error cannotWrite(StringRef path, const Twine &why) {
  return createStringError(inconvertibleErrorCode(), "%s: cannot write: %s", path.str().c_str(),
                           why.str().c_str());
}

/// What OUT is, after the refusals.
struct Kind {
  std::string target; // rename target or device
  bool writeThrough = false;
  int stdFD = -1;
  bool exists = false;
};

Expected<Kind> classify(StringRef path) {
  if (path.empty())
    return createStringError(inconvertibleErrorCode(), "the output file name is empty");
  sys::fs::file_status link;
  if (std::error_code ec = sys::fs::status(path, link, /*follow=*/false)) {
    if (ec != std::errc::no_such_file_or_directory)
      return cannotWrite(path, ec.message());
    return Kind{path.str()};
  }
  sys::fs::file_status st = link;
  if (link.type() == sys::fs::file_type::symlink_file)
    if (std::error_code ec = sys::fs::status(path, st, /*follow=*/true))
      return cannotWrite(path, ec == std::errc::no_such_file_or_directory
                                   ? Twine("it is a dangling symbolic link")
                                   : Twine(ec.message()));
  const sys::fs::file_type type = st.type();
  const bool streamLike = type == sys::fs::file_type::regular_file ||
                          type == sys::fs::file_type::character_file ||
                          type == sys::fs::file_type::fifo_file;
  for (int fd : {1, 2}) {
    sys::fs::file_status s;
    if (streamLike && !sys::fs::status(fd, s) && s.getUniqueID() == st.getUniqueID())
      return Kind{path.str(), /*writeThrough=*/true, fd, true};
  }
  switch (type) {
  case sys::fs::file_type::regular_file: {
    SmallString<256> real(path);
    if (link.type() == sys::fs::file_type::symlink_file) // replace the target, keep the link
      if (std::error_code ec = sys::fs::real_path(path, real))
        return cannotWrite(path, ec.message());
    return Kind{std::string(real), false, -1, true};
  }
  case sys::fs::file_type::character_file:
  case sys::fs::file_type::fifo_file:
    return Kind{path.str(), /*writeThrough=*/true, -1, true};
  case sys::fs::file_type::directory_file:
    return cannotWrite(path, "it is a directory");
  case sys::fs::file_type::block_file:
    return cannotWrite(path, "it is a block device (a disk); refusing to write to it");
  default:
    return cannotWrite(path, "not a regular file, a character device or a FIFO");
  }
}

} // namespace

Error OutputFile::check(StringRef path) {
  Expected<Kind> kind = classify(path);
  if (!kind)
    return kind.takeError();
  if (kind->writeThrough) {
    if (kind->stdFD < 0 && sys::fs::access(path, sys::fs::AccessMode::Write))
      return cannotWrite(path, "permission denied");
    return Error::success();
  }
  SmallString<256> parent(kind->target);
  sys::path::remove_filename(parent);
  if (parent.empty())
    parent = ".";
  if (!sys::fs::is_directory(parent))
    return cannotWrite(path, "directory " + parent + " does not exist");
  if (sys::fs::access(parent, sys::fs::AccessMode::Write))
    return cannotWrite(path, "directory " + parent + " is not writable");
  return Error::success();
}

Expected<std::unique_ptr<OutputFile>> OutputFile::create(StringRef path) {
  if (Error e = check(path))
    return std::move(e);
  Expected<Kind> kind = classify(path);
  if (!kind)
    return kind.takeError();
  std::unique_ptr<OutputFile> out(new OutputFile());
  out->path = path.str();
  out->target = kind->target;
  out->writeThrough = kind->writeThrough;
  out->stdFD = kind->stdFD;
  SmallString<256> model;
  if (kind->writeThrough) { // a device or FIFO has no directory of its own to put a file in
    sys::path::system_temp_directory(/*ErasedOnReboot=*/true, model);
    sys::path::append(model, "mixtral-compile-%%%%%%");
  } else {
    model = kind->target + ".tmp-%%%%%%";
  }
  Expected<sys::fs::TempFile> temp = sys::fs::TempFile::create(model);
  if (!temp)
    return cannotWrite(path, toString(temp.takeError()));
  out->temp.emplace(std::move(*temp));
  return std::move(out);
}

OutputFile::~OutputFile() {
  if (temp)
    consumeError(temp->discard());
}

Error OutputFile::commit() {
  if (!writeThrough) {
    if (Error e = temp->keep(target))
      return cannotWrite(path, toString(std::move(e)));
    temp.reset();
    return Error::success();
  }
  ErrorOr<std::unique_ptr<MemoryBuffer>> bytes =
      MemoryBuffer::getFile(temp->TmpName, /*IsText=*/false, /*RequiresNullTerminator=*/false);
  if (!bytes)
    return cannotWrite(path, bytes.getError().message());
  int fd = stdFD;
  if (fd < 0) // no O_CREAT, no O_TRUNC: the device stays what it is
    if (std::error_code ec = sys::fs::openFileForWrite(target, fd, sys::fs::CD_OpenExisting))
      return cannotWrite(path, ec.message());
  raw_fd_ostream os(fd, /*shouldClose=*/stdFD < 0);
  os << (*bytes)->getBuffer();
  if (stdFD < 0)
    os.close();
  else
    os.flush();
  if (os.has_error()) {
    std::error_code ec = os.error();
    os.clear_error();
    return cannotWrite(path, ec.message());
  }
  return Error::success(); // the destructor removes the temporary
}

// --- runChildGroup ------------------------------------------------------------------------
namespace {

constexpr int forwarded[] = {SIGINT, SIGTERM, SIGHUP};
struct sigaction previous[3];
volatile std::sig_atomic_t childGroup = 0;
volatile std::sig_atomic_t reapedStatus = -1; // the child's status when the handler reaped it

int slotOf(int sig) { return sig == SIGINT ? 0 : sig == SIGTERM ? 1 : 2; }

/// Ends the child's group first, then lets LLVM's handler (the previous one) remove our
/// temporaries and end the process.
void forwardSignal(int sig, siginfo_t *info, void *context) {
  const pid_t group = childGroup;
  if (group > 0) {
    ::kill(-group, sig);
    int status;
    while (::waitpid(group, &status, 0) < 0 && errno == EINTR) {
    }
    reapedStatus = status;
    // The driver's own children (the linker) got the signal too: wait (at most 2 s) until the
    // group is gone, so that none of them writes a temporary after it was removed.
    for (int i = 0; i < 200 && ::kill(-group, 0) == 0; ++i) {
      struct timespec tenMs = {0, 10 * 1000 * 1000};
      ::nanosleep(&tenMs, nullptr);
    }
  }
  const struct sigaction &prev = previous[slotOf(sig)];
  ::sigaction(sig, &prev, nullptr);
  if (prev.sa_flags & SA_SIGINFO)
    prev.sa_sigaction(sig, info, context);
  else if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN)
    prev.sa_handler(sig);
  else
    ::raise(sig);
}

/// Blocks the forwarded signals while it lives.
class BlockSignals {
public:
  BlockSignals() {
    sigset_t set;
    sigemptyset(&set);
    for (int sig : forwarded)
      sigaddset(&set, sig);
    ::sigprocmask(SIG_BLOCK, &set, &old);
  }
  ~BlockSignals() { ::sigprocmask(SIG_SETMASK, &old, nullptr); }
  sigset_t old;
};

} // namespace

int runChildGroup(ArrayRef<std::string> argv, std::string &error) {
  std::vector<char *> args;
  for (const std::string &a : argv)
    args.push_back(const_cast<char *>(a.c_str()));
  args.push_back(nullptr);

  pid_t pid = 0;
  {
    BlockSignals blocked; // no signal between the spawn and childGroup naming it
    struct sigaction sa {};
    sa.sa_sigaction = forwardSignal;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    for (int sig : forwarded) {
      ::sigaction(sig, &sa, &previous[slotOf(sig)]);
      if (previous[slotOf(sig)].sa_handler == SIG_IGN) // nohup: stay deaf, as the child will be
        ::sigaction(sig, &previous[slotOf(sig)], nullptr);
    }
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
    posix_spawnattr_setpgroup(&attr, 0); // a group of its own, led by the child
    posix_spawnattr_setsigmask(&attr, &blocked.old);
    const int rc = ::posix_spawn(&pid, args[0], nullptr, &attr, args.data(), environ);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
      for (int sig : forwarded)
        ::sigaction(sig, &previous[slotOf(sig)], nullptr);
      error = "cannot run " + argv[0] + ": " + std::strerror(rc);
      return -1;
    }
    reapedStatus = -1;
    childGroup = pid;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno == ECHILD && reapedStatus != -1) { // the handler reaped it, and we live on
      status = reapedStatus;
      break;
    }
    if (errno != EINTR) {
      error = "waiting for " + argv[0] + ": " + std::strerror(errno);
      status = -1;
      break;
    }
  }
  {
    BlockSignals blocked;
    childGroup = 0;
    for (int sig : forwarded)
      ::sigaction(sig, &previous[slotOf(sig)], nullptr);
  }
  if (status == -1)
    return -1;
  if (WIFSIGNALED(status)) {
    error = argv[0] + " was killed by signal " + std::to_string(WTERMSIG(status));
    return -1;
  }
  return WEXITSTATUS(status);
}

} // namespace moec
