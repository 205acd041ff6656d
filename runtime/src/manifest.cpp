// manifest.cpp — parse_manifest: JSON → Manifest, with every field checked.
#include "moec/manifest.h"

#include "checked.h"
#include "moec/abi.h"
#include "moec/error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

namespace moec {
using detail::checked_add;
using detail::checked_nbytes;
using detail::json_uint;
using nlohmann::json;

namespace {
[[noreturn]] void fail(const std::string &problem) { throw Error("manifest: " + problem); }

const json &field(const json &obj, const char *key, const std::string &where) {
  auto it = obj.find(key);
  if (it == obj.end())
    fail(where + "missing field \"" + key + "\"");
  return *it;
}

const json &object_field(const json &obj, const char *key, const std::string &where) {
  const json &v = field(obj, key, where);
  if (!v.is_object())
    fail(where + "\"" + key + "\" is not an object");
  return v;
}

std::string string_field(const json &obj, const char *key, const std::string &where) {
  const json &v = field(obj, key, where);
  if (!v.is_string())
    fail(where + "\"" + key + "\" is not a string");
  return v.get<std::string>();
}

/// An integer field in [min, 2^63).
std::int64_t int_field(const json &obj, const char *key, const std::string &where,
                       std::int64_t min = 1) {
  const json &v = field(obj, key, where);
  std::optional<std::uint64_t> u = json_uint(v);
  if (!u || static_cast<std::int64_t>(*u) < min)
    fail(where + "\"" + key + "\" must be an integer >= " + std::to_string(min) + ", got " +
         detail::brief_dump(v));
  return static_cast<std::int64_t>(*u);
}

double positive_number_field(const json &obj, const char *key, const std::string &where) {
  const json &v = field(obj, key, where);
  if (!v.is_number() || !(v.get<double>() > 0) || !std::isfinite(v.get<double>()))
    fail(where + "\"" + key + "\" must be a positive number, got " + detail::brief_dump(v));
  return v.get<double>();
}

std::vector<std::int64_t> shape_field(const json &obj, const char *key, const std::string &where) {
  const json &v = field(obj, key, where);
  if (!v.is_array())
    fail(where + "\"" + key + "\" is not an array");
  std::vector<std::int64_t> shape;
  for (const json &d : v) {
    std::optional<std::uint64_t> u = json_uint(d);
    if (!u)
      fail(where + "\"" + key + "\" " + detail::brief_dump(v) + " has a non-integer or negative entry");
    shape.push_back(static_cast<std::int64_t>(*u));
  }
  return shape;
}

std::string shape_str(const std::vector<std::int64_t> &s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i)
    out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

ModelConfig parse_config(const json &c) {
  const std::string w = "config: ";
  ModelConfig m;
  m.vocab_size = int_field(c, "vocab_size", w);
  m.hidden_size = int_field(c, "hidden_size", w);
  m.intermediate_size = int_field(c, "intermediate_size", w);
  m.num_hidden_layers = int_field(c, "num_hidden_layers", w);
  m.num_attention_heads = int_field(c, "num_attention_heads", w);
  m.num_key_value_heads = int_field(c, "num_key_value_heads", w);
  m.head_dim = int_field(c, "head_dim", w);
  m.num_local_experts = int_field(c, "num_local_experts", w);
  m.num_experts_per_tok = int_field(c, "num_experts_per_tok", w);
  m.rms_norm_eps = positive_number_field(c, "rms_norm_eps", w);
  m.rope_theta = positive_number_field(c, "rope_theta", w);
  m.max_position_embeddings = int_field(c, "max_position_embeddings", w);
  const json &sw = field(c, "sliding_window", w);
  if (!sw.is_null())
    m.sliding_window = int_field(c, "sliding_window", w);
  if (m.vocab_size > INT32_MAX)
    fail(w + "vocab_size " + std::to_string(m.vocab_size) + " does not fit int32 token ids");
  m.bos_token_id = static_cast<std::int32_t>(int_field(c, "bos_token_id", w, 0));
  m.eos_token_id = static_cast<std::int32_t>(int_field(c, "eos_token_id", w, 0));
  if (m.bos_token_id >= m.vocab_size || m.eos_token_id >= m.vocab_size)
    fail(w + "bos_token_id/eos_token_id must be below vocab_size " + std::to_string(m.vocab_size));
  if (m.num_attention_heads % m.num_key_value_heads != 0)
    fail(w + "num_attention_heads " + std::to_string(m.num_attention_heads) +
         " is not a multiple of num_key_value_heads " + std::to_string(m.num_key_value_heads));
  if (m.num_experts_per_tok > m.num_local_experts)
    fail(w + "num_experts_per_tok " + std::to_string(m.num_experts_per_tok) +
         " exceeds num_local_experts " + std::to_string(m.num_local_experts));
  const std::string wd = string_field(c, "weight_dtype", w);
  std::optional<DType> dt = parse_weight_dtype(wd);
  if (!dt)
    fail(w + "weight_dtype \"" + detail::printable(wd) + "\" is not one of f32, bf16, f16");
  m.weight_dtype = *dt;
  return m;
}

WeightTensor parse_tensor(const json &t, std::size_t i, std::uint64_t alignment,
                          std::uint64_t arena_bytes) {
  std::string w = "weights.tensors[" + std::to_string(i) + "]: ";
  if (!t.is_object())
    fail(w + "not an object");
  WeightTensor out;
  out.name = string_field(t, "name", w);
  w = "tensor '" + detail::printable(out.name) + "': ";
  const std::string ds = string_field(t, "dtype", w);
  std::optional<DType> dt = parse_weight_dtype(ds);
  if (!dt)
    fail(w + "dtype \"" + detail::printable(ds) + "\" is not one of f32, bf16, f16");
  out.dtype = *dt;
  out.shape = shape_field(t, "shape", w);
  out.offset = static_cast<std::uint64_t>(int_field(t, "offset", w, 0));
  const json &src = field(t, "sources", w);
  if (!src.is_array() || src.empty())
    fail(w + "\"sources\" must be a non-empty array of strings");
  for (const json &s : src) {
    if (!s.is_string())
      fail(w + "\"sources\" must be a non-empty array of strings");
    out.sources.push_back(s.get<std::string>());
  }
  out.stacked = out.sources.size() > 1;
  if (t.contains("stacked")) {
    if (!t["stacked"].is_boolean())
      fail(w + "\"stacked\" must be true or false");
    out.stacked = t["stacked"].get<bool>();
  }
  if (out.sources.size() > 1 && !out.stacked)
    fail(w + "has " + std::to_string(out.sources.size()) + " sources but is not \"stacked\"");
  if (out.stacked &&
      (out.shape.empty() || out.shape[0] != static_cast<std::int64_t>(out.sources.size())))
    fail(w + "stacks " + std::to_string(out.sources.size()) + " sources but has shape " +
         shape_str(out.shape));
  std::optional<std::uint64_t> nb = checked_nbytes(out.shape, dtype_size(out.dtype));
  if (!nb)
    fail(w + "shape " + shape_str(out.shape) + " overflows a 64-bit byte count");
  out.nbytes = *nb;
  if (out.offset % alignment != 0)
    fail(w + "offset " + std::to_string(out.offset) + " is not a multiple of the alignment " +
         std::to_string(alignment));
  std::optional<std::uint64_t> end = checked_add(out.offset, out.nbytes);
  if (!end || *end > arena_bytes)
    fail(w + "bytes [" + std::to_string(out.offset) + ", " +
         (end ? std::to_string(*end) : std::string("overflow")) +
         ") overflow the weights arena of " + std::to_string(arena_bytes) + " bytes");
  return out;
}
} // namespace

Manifest parse_manifest(std::string_view text) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    fail("not valid JSON");
  if (!j.is_object())
    fail("not a JSON object");
  Manifest m;
  if (string_field(j, "magic", "") != MOEC_ABI_MAGIC)
    fail("magic is not \"" MOEC_ABI_MAGIC "\"; this is not a moec manifest");
  m.abi_version = static_cast<int>(int_field(j, "abi_version", "", 0));
  if (m.abi_version != MOEC_ABI_VERSION)
    fail("abi_version " + std::to_string(m.abi_version) + " but this runtime implements " +
         std::to_string(MOEC_ABI_VERSION) + "; rebuild the model with a matching compiler");
  m.target = string_field(j, "target", "");
  if (m.target != "cpu" && m.target != "nvptx")
    fail("target \"" + detail::printable(m.target) + "\" is not supported by this runtime (cpu or nvptx)");
  m.max_seq_len = int_field(j, "max_seq_len", "");
  if (m.max_seq_len > INT32_MAX)
    fail("max_seq_len " + std::to_string(m.max_seq_len) + " is too large");
  m.config = parse_config(object_field(j, "config", ""));
  if (auto md = j.find("model_dir"); md != j.end() && !md->is_null()) {
    if (!md->is_string())
      fail("\"model_dir\" is not a string");
    m.model_dir = md->get<std::string>();
  }

  const json &w = object_field(j, "weights", "");
  m.weights_bytes = static_cast<std::uint64_t>(int_field(w, "bytes", "weights: ", 0));
  m.weights_alignment = static_cast<std::uint64_t>(int_field(w, "alignment", "weights: "));
  if (m.weights_alignment != MOEC_WEIGHT_ALIGNMENT)
    fail("weights: alignment " + std::to_string(m.weights_alignment) + " but the ABI fixes " +
         std::to_string(MOEC_WEIGHT_ALIGNMENT));
  const json &ts = field(w, "tensors", "weights: ");
  if (!ts.is_array())
    fail("weights: \"tensors\" is not an array");
  for (std::size_t i = 0; i < ts.size(); ++i)
    m.tensors.push_back(parse_tensor(ts[i], i, m.weights_alignment, m.weights_bytes));

  // Names unique, byte ranges disjoint.
  std::vector<const WeightTensor *> sorted;
  for (const WeightTensor &t : m.tensors)
    sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(), [](const WeightTensor *a, const WeightTensor *b) {
    return a->name < b->name;
  });
  for (std::size_t i = 1; i < sorted.size(); ++i)
    if (sorted[i]->name == sorted[i - 1]->name)
      fail("tensor '" + detail::printable(sorted[i]->name) + "' is listed twice");
  std::sort(sorted.begin(), sorted.end(), [](const WeightTensor *a, const WeightTensor *b) {
    return a->offset < b->offset;
  });
  const WeightTensor *prev = nullptr;
  for (const WeightTensor *t : sorted) {
    if (t->nbytes == 0)
      continue;
    if (prev && t->offset < prev->offset + prev->nbytes)
      fail("tensors '" + detail::printable(prev->name) + "' and '" + detail::printable(t->name) +
           "' overlap in the weights arena");
    prev = t;
  }

  const json &kv = object_field(j, "kv_cache", "");
  m.kv_bytes = static_cast<std::uint64_t>(int_field(kv, "bytes", "kv_cache: ", 0));
  if (string_field(kv, "dtype", "kv_cache: ") != "f32")
    fail("kv_cache: dtype must be \"f32\"");
  m.kv_shape = shape_field(kv, "shape", "kv_cache: ");
  const ModelConfig &c = m.config;
  const std::vector<std::int64_t> want = {c.num_hidden_layers, 2, m.max_seq_len,
                                          c.num_key_value_heads, c.head_dim};
  if (m.kv_shape != want)
    fail("kv_cache: shape " + shape_str(m.kv_shape) + " but [L, 2, S, KVH, HD] is " +
         shape_str(want));
  std::optional<std::uint64_t> kvb = checked_nbytes(m.kv_shape, 4);
  if (!kvb || *kvb != m.kv_bytes)
    fail("kv_cache: bytes " + std::to_string(m.kv_bytes) + " but shape " + shape_str(want) +
         " of f32 needs " + (kvb ? std::to_string(*kvb) : std::string("more than 2^64")));
  return m;
}

} // namespace moec
