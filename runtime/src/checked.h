// checked.h — overflow-checked arithmetic and strict JSON integer reading (runtime-internal).
//
// Checkpoints and manifests come from outside; sizes in them are multiplied and added before
// anything is allocated or read, so every such step is checked rather than allowed to wrap.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

namespace moec::detail {

inline std::optional<std::uint64_t> checked_mul(std::uint64_t a, std::uint64_t b) {
  std::uint64_t r;
  if (__builtin_mul_overflow(a, b, &r))
    return std::nullopt;
  return r;
}

inline std::optional<std::uint64_t> checked_add(std::uint64_t a, std::uint64_t b) {
  std::uint64_t r;
  if (__builtin_add_overflow(a, b, &r))
    return std::nullopt;
  return r;
}

/// product(shape) * elem_size, or nullopt on overflow.
inline std::optional<std::uint64_t> checked_nbytes(const std::vector<std::int64_t> &shape,
                                                   std::uint64_t elem_size) {
  std::optional<std::uint64_t> n = elem_size;
  for (std::int64_t d : shape) {
    if (d < 0)
      return std::nullopt;
    n = checked_mul(*n, static_cast<std::uint64_t>(d));
    if (!n)
      return std::nullopt;
  }
  return n;
}

/// A JSON integer in [0, max]; nullopt for floats, negatives, non-numbers and huge values
/// (nlohmann parses integers beyond uint64 as floats, so those are rejected too).
inline std::optional<std::uint64_t>
json_uint(const nlohmann::json &j,
          std::uint64_t max = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
  std::uint64_t v;
  if (j.is_number_unsigned())
    v = j.get<std::uint64_t>();
  else if (j.is_number_integer()) {
    std::int64_t s = j.get<std::int64_t>();
    if (s < 0)
      return std::nullopt;
    v = static_cast<std::uint64_t>(s);
  } else
    return std::nullopt;
  if (v > max)
    return std::nullopt;
  return v;
}

} // namespace moec::detail
