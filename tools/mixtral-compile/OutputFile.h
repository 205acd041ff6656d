//===- OutputFile.h - where mixtral-compile writes OUT ----------*- C++ -*-===//
//
// The compiler's side of runtime/src/output_file.h: never replace what is not ours, never let
// a reader see half a file, never leave a temporary behind.
//
//  * OUT missing or a regular file (a symlink is followed and kept): the stage is written to a
//    unique temporary beside the file ("OUT.tmp-XXXXXX"; never "OUT.tmp", which may be the
//    user's) and commit() renames it into place only when it is complete.
//  * OUT a character device or a FIFO (/dev/null, /dev/full, a pipe, /dev/stdout), or the same
//    file as our stdout/stderr: the stage is written to a temporary in the system's temporary
//    directory (the object and link steps need a seekable file), then copied into OUT, which
//    is never replaced.
//  * a directory, a block device (a disk), a socket or a dangling symlink: refused.
//
// Temporaries are sys::fs::TempFiles: removed by the destructor on every error path and by
// LLVM's signal handlers (RemoveFileOnSignal) on SIGINT/SIGTERM/SIGHUP. Errors name OUT.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_TOOLS_MIXTRAL_COMPILE_OUTPUTFILE_H
#define MOEC_TOOLS_MIXTRAL_COMPILE_OUTPUTFILE_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/FileSystem.h"

#include <memory>
#include <optional>
#include <string>

namespace moec {

class OutputFile {
public:
  /// Refuses, before any work, a `path` that create() would refuse, and a missing or
  /// unwritable directory.
  static llvm::Error check(llvm::StringRef path);

  /// Checks `path` and creates the temporary the stage writes to.
  static llvm::Expected<std::unique_ptr<OutputFile>> create(llvm::StringRef path);

  OutputFile(const OutputFile &) = delete;
  OutputFile &operator=(const OutputFile &) = delete;
  ~OutputFile(); // removes the temporary unless commit() succeeded

  /// Where the stage writes (a file name for tools that open it themselves).
  llvm::StringRef tempPath() const { return temp->TmpName; }
  /// The temporary's open descriptor (for a raw_fd_ostream that does not own it).
  int tempFD() const { return temp->FD; }

  /// Puts the finished temporary in place: renames it onto OUT, or copies it into OUT when
  /// OUT is a device or FIFO.
  llvm::Error commit();

private:
  OutputFile() = default;
  std::string path;   // as the user wrote it, for messages
  std::string target; // what commit() renames onto (a symlink resolved), or the device
  bool writeThrough = false;
  int stdFD = -1; // 1 or 2 when OUT is our stdout/stderr
  std::optional<llvm::sys::fs::TempFile> temp;
};

/// Runs argv[0] (found on PATH) with `argv` in a process group of its own and waits for it.
/// While it runs, SIGINT/SIGTERM/SIGHUP are forwarded to that group and waited for before
/// LLVM's handlers remove our temporaries, so neither the child (a compiler driver) nor its
/// children (the linker) outlive us to write into a temporary after it was removed.
/// Returns the exit status, or -1 with `error` set.
int runChildGroup(llvm::ArrayRef<std::string> argv, std::string &error);

} // namespace moec

#endif // MOEC_TOOLS_MIXTRAL_COMPILE_OUTPUTFILE_H
