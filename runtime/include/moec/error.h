// moec/error.h — the exception types the runtime throws.
//
// Every failure the user can cause (bad checkpoint, bad manifest, bad flag) is reported as a
// one-line message that names the file or flag and the problem; run_main prints it as
// `error: <message>`. UsageError marks command-line mistakes, which exit with code 2.
#pragma once

#include <stdexcept>
#include <string>

namespace moec {

/// A user-facing failure with a one-line message.
class Error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// A bad command line (unknown flag, missing or bad value): exit code 2.
class UsageError : public Error {
public:
  using Error::Error;
};

} // namespace moec
