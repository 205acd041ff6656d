// output_file.h — writing a file the user named (--logits-out) without ever replacing what is
// not ours, and without a reader ever seeing half of it.
//
// What `path` names decides how it is written:
//   * nothing, or a regular file: the bytes go to a unique temporary in the same directory
//     ("X.tmp-XXXXXX" from mkstemp; never "X.tmp", which may be the user's), are flushed and
//     fsync'ed, and only then renamed onto X. A regular file keeps its permission bits. The
//     temporary is removed on every error path and on SIGINT/SIGTERM/SIGHUP.
//   * a character device or a FIFO (/dev/null, /dev/full, a terminal, a pipe, /dev/stdout when
//     stdout is one of those): written through, never replaced. A FIFO blocks until it has a
//     reader, as `echo > fifo` does.
//   * the same file as this process's stdout or stderr (/dev/stdout with stdout redirected to
//     a file): written through that descriptor, so the bytes land at its current offset and the
//     shell's file is not swapped for another under our feet.
//   * a directory, a block device (a disk: writing there destroys a file system), a socket or
//     a dangling symbolic link: refused.
//   * a symbolic link is followed; the link itself is never replaced.
// Every error names `path`, never the temporary, and throws moec::Error.
#pragma once

#include <cstddef>
#include <iosfwd>
#include <string>

namespace moec {

/// Refuses, before any expensive work, a `path` that write_output_file would refuse (a
/// directory, a block device, a socket, a dangling link, a missing or unwritable directory).
void check_output_path(const std::string &path);

/// Writes bytes [data, data + n) to `path` by the rules above; throws moec::Error naming it.
void write_output_file(const std::string &path, const void *data, std::size_t n);

/// Flushes `out` (the binary's stdout) and throws moec::Error "standard output: cannot write:
/// <reason>" if a write to it failed (a full disk, a closed pipe with SIGPIPE ignored), so that
/// generation stops at the first failed write instead of running on into the void.
void flush_checked(std::ostream &out);

} // namespace moec
