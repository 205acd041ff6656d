// json.h — nlohmann-json as this library uses it (private): no exceptions, a depth cap and no
// duplicate keys, plus checked arithmetic and message helpers.
//
// The library is linked into -fno-exceptions code, so nlohmann is built with JSON_NOEXCEPTION:
// a failing accessor aborts, which is why every access below is preceded by a type check. The
// runtime and the tests use nlohmann WITH exceptions; to keep the two builds of the same inline
// functions from being merged by the linker (an ODR violation that could swap a throw for an
// abort), this copy lives in its own inline namespace.
#pragma once

#define JSON_NOEXCEPTION 1
#define NLOHMANN_JSON_NAMESPACE nlohmann::moec_checkpoint_noexcept
#define NLOHMANN_JSON_NAMESPACE_BEGIN                                                          \
  namespace nlohmann {                                                                         \
  inline namespace moec_checkpoint_noexcept {
#define NLOHMANN_JSON_NAMESPACE_END                                                            \
  }                                                                                            \
  }
#include <nlohmann/json.hpp>

#include "moec/checkpoint/config.h"
#include "moec/checkpoint/result.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moec::checkpoint::detail {
using json = nlohmann::json;

/// Nesting deeper than this is refused before any DOM is built (a 100 KB file of brackets
/// would otherwise be 50,000 levels of recursion in whoever walks it).
constexpr int kMaxJsonDepth = 64;

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
json_uint(const json &j,
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

inline std::string squote(std::string_view s) { return "'" + printable(s) + "'"; }

/// A double as a user wrote it: shortest form that reads back ("-1e-05", "1000000").
inline std::string number(double v) {
  // Range first: converting a double outside long long's range is undefined behaviour.
  if (v > -1e15 && v < 1e15 && v == static_cast<double>(static_cast<long long>(v)))
    return std::to_string(static_cast<long long>(v)); // 10000, not 1e+04
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  for (int prec = 1; prec <= 17; ++prec) { // shortest round-tripping form
    char shorter[32];
    std::snprintf(shorter, sizeof shorter, "%.*g", prec, v);
    if (std::strtod(shorter, nullptr) == v)
      return shorter;
  }
  return buf;
}

/// A scalar JSON value for messages (containers as [...] / {...}), cut to `max` bytes.
inline std::string brief(const json &j, std::size_t max = 80) {
  if (j.is_array())
    return j.empty() ? "[]" : "[...]";
  if (j.is_object())
    return j.empty() ? "{}" : "{...}";
  if (j.is_number_float())
    return number(j.get<double>());
  return printable(j.dump(), max);
}

/// j.dump() of an array one level deep, for messages.
inline std::string brief_dump(const json &j, std::size_t max = 80) {
  if (!j.is_array())
    return brief(j, max);
  std::string s = "[";
  for (std::size_t i = 0; i < j.size() && s.size() <= max; ++i)
    s += (i ? "," : "") + brief(j[i]);
  return printable(s + "]", max);
}

/// nlohmann's parse error without its "[json.exception.parse_error.101] " tag, one line.
inline std::string parse_error_text(const std::exception &e) {
  std::string what = e.what();
  if (std::size_t tag = what.find("] "); what.rfind("[json.exception", 0) == 0 && tag != std::string::npos)
    what = what.substr(tag + 2);
  if (std::size_t colon = what.find(": "); what.rfind("parse error", 0) == 0 && colon != std::string::npos)
    what = what.substr(colon + 2); // the caller gives the byte offset
  return printable(what, 200);
}

/// Parses `text` into a DOM after a first pass that refuses nesting deeper than kMaxJsonDepth
/// and duplicate keys in any object (Hugging Face's readers keep the last, ours would have to
/// guess). Messages: "<what>: <problem>".
Result<json> parse_json(std::string_view text, const std::string &what);

/// config.json's fields from a parsed object (config.json itself, or the manifest's "config"),
/// validated; messages "<name>: <problem>".
Result<ModelConfig> config_from_object(const json &obj, const std::string &name);

} // namespace moec::checkpoint::detail
