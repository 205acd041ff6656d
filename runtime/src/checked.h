// checked.h — overflow-checked arithmetic and strict JSON integer reading (runtime-internal).
//
// Checkpoints and manifests come from outside; sizes in them are multiplied and added before
// anything is allocated or read, so every such step is checked rather than allowed to wrap.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
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

/// `s` made safe for a one-line message: control bytes as \xNN, cut to `max` bytes with "...".
/// (Names in checkpoint headers are attacker-controlled: they may hold newlines or be huge.)
inline std::string printable(std::string_view s, std::size_t max = 120) {
  std::string out;
  for (unsigned char c : s) {
    if (out.size() >= max) {
      out += "...";
      break;
    }
    if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

/// j.dump() for messages: one level deep only (a hostile header can nest arrays a million
/// levels deep, and dump() recurses), cut to `max` bytes.
inline std::string brief_dump(const nlohmann::json &j, std::size_t max = 80) {
  auto flat = [](const nlohmann::json &e) -> std::string {
    if (e.is_array())
      return e.empty() ? "[]" : "[...]";
    if (e.is_object())
      return e.empty() ? "{}" : "{...}";
    return e.dump();
  };
  std::string s;
  if (j.is_array()) {
    s = "[";
    for (std::size_t i = 0; i < j.size() && s.size() <= max; ++i)
      s += (i ? "," : "") + flat(j[i]);
    s += "]";
  } else {
    s = flat(j);
  }
  return printable(s, max);
}

} // namespace moec::detail
