// moec/checkpoint/result.h — the checkpoint library's error model: a value or a one-line message.
//
// The library is built without exceptions (the compiler links it into -fno-exceptions code), so
// every fallible function returns Result<T>. The runtime turns a failure into moec::Error, the
// compiler into llvm::Error; the message is the same on both sides.
#pragma once

#include <optional>
#include <string>
#include <utility>

namespace moec::checkpoint {

/// A failure: converts to any Result<T>.
struct Failure {
  std::string message; // one line, names the file or field
};
inline Failure fail(std::string message) { return Failure{std::move(message)}; }

/// T, or the Failure that prevented it.
template <class T> class [[nodiscard]] Result {
public:
  Result(T value) : value_(std::move(value)) {}
  Result(Failure f) : error_(std::move(f.message)) {}

  bool ok() const { return value_.has_value(); }
  explicit operator bool() const { return ok(); }
  T &operator*() { return *value_; }
  const T &operator*() const { return *value_; }
  T *operator->() { return &*value_; }
  const T *operator->() const { return &*value_; }
  /// The message; empty when ok().
  const std::string &error() const { return error_; }
  Failure failure() const { return Failure{error_}; }

private:
  std::optional<T> value_;
  std::string error_;
};

struct Ok {};
/// Success or a message.
using Status = Result<Ok>;
inline Status ok() { return Ok{}; }

} // namespace moec::checkpoint
