// manifest.cpp — the manifest's writer and reader.
#include "moec/checkpoint/manifest.h"

#include "json.h"
#include "moec/abi.h"

#include <algorithm>

namespace moec::checkpoint {
using namespace detail;

namespace {
/// The reader's failure path: every message starts with "manifest: ".
struct Reader {
  std::string problem;

  bool bad(const std::string &p) {
    if (problem.empty())
      problem = "manifest: " + p;
    return false;
  }
  const json *field(const json &obj, const char *key, const std::string &where) {
    auto it = obj.find(key);
    if (it == obj.end()) {
      bad(where + "missing field \"" + key + "\"");
      return nullptr;
    }
    return &*it;
  }
  const json *object(const json &obj, const char *key, const std::string &where) {
    const json *v = field(obj, key, where);
    if (v && !v->is_object()) {
      bad(where + "\"" + key + "\" is not an object");
      return nullptr;
    }
    return v;
  }
  bool string(const json &obj, const char *key, const std::string &where, std::string &out) {
    const json *v = field(obj, key, where);
    if (!v)
      return false;
    if (!v->is_string())
      return bad(where + "\"" + key + "\" is not a string");
    out = v->get<std::string>();
    return true;
  }
  /// An integer in [min, 2^63).
  template <class T>
  bool integer(const json &obj, const char *key, const std::string &where, T &out,
               std::int64_t min = 1) {
    const json *v = field(obj, key, where);
    if (!v)
      return false;
    std::optional<std::uint64_t> u = json_uint(*v);
    if (!u || static_cast<std::int64_t>(*u) < min)
      return bad(where + "\"" + key + "\" must be an integer >= " + std::to_string(min) +
                 ", got " + brief_dump(*v));
    out = static_cast<T>(*u);
    return true;
  }
  bool shape(const json &obj, const char *key, const std::string &where,
             std::vector<std::int64_t> &out) {
    const json *v = field(obj, key, where);
    if (!v)
      return false;
    if (!v->is_array())
      return bad(where + "\"" + key + "\" is not an array");
    for (const json &d : *v) {
      std::optional<std::uint64_t> u = json_uint(d);
      if (!u)
        return bad(where + "\"" + key + "\" " + brief_dump(*v) +
                   " has a non-integer or negative entry");
      out.push_back(static_cast<std::int64_t>(*u));
    }
    return true;
  }
  bool weight_tensor(const json &t, std::size_t i, const Manifest &m, WeightTensor &out);
};

std::string shape_str(const std::vector<std::int64_t> &s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i)
    out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

bool Reader::weight_tensor(const json &t, std::size_t i, const Manifest &m, WeightTensor &out) {
  std::string w = "weights.tensors[" + std::to_string(i) + "]: ";
  if (!t.is_object())
    return bad(w + "not an object");
  if (!string(t, "name", w, out.name))
    return false;
  w = "tensor " + squote(out.name) + ": ";
  std::string ds;
  if (!string(t, "dtype", w, ds))
    return false;
  std::optional<DType> dt = parse_weight_dtype(ds);
  if (!dt)
    return bad(w + "dtype \"" + printable(ds) + "\" is not one of f32, bf16, f16");
  out.dtype = *dt;
  if (!shape(t, "shape", w, out.shape) || !integer(t, "offset", w, out.offset, 0))
    return false;
  const json *src = field(t, "sources", w);
  if (!src)
    return false;
  if (!src->is_array() || src->empty())
    return bad(w + "\"sources\" must be a non-empty array of strings");
  for (const json &s : *src) {
    if (!s.is_string())
      return bad(w + "\"sources\" must be a non-empty array of strings");
    out.sources.push_back(s.get<std::string>());
  }
  out.stacked = out.sources.size() > 1;
  if (auto st = t.find("stacked"); st != t.end()) {
    if (!st->is_boolean())
      return bad(w + "\"stacked\" must be true or false");
    out.stacked = st->get<bool>();
  }
  if (out.sources.size() > 1 && !out.stacked)
    return bad(w + "has " + std::to_string(out.sources.size()) +
               " sources but is not \"stacked\"");
  if (out.stacked &&
      (out.shape.empty() || out.shape[0] != static_cast<std::int64_t>(out.sources.size())))
    return bad(w + "stacks " + std::to_string(out.sources.size()) + " sources but has shape " +
               shape_str(out.shape));
  std::optional<std::uint64_t> nb = checked_nbytes(out.shape, dtype_size(out.dtype));
  if (!nb)
    return bad(w + "shape " + shape_str(out.shape) + " overflows a 64-bit byte count");
  out.nbytes = *nb;
  if (out.offset % m.weights_alignment != 0)
    return bad(w + "offset " + std::to_string(out.offset) +
               " is not a multiple of the alignment " + std::to_string(m.weights_alignment));
  std::optional<std::uint64_t> end = checked_add(out.offset, out.nbytes);
  if (!end || *end > m.weights_bytes)
    return bad(w + "bytes [" + std::to_string(out.offset) + ", " +
               (end ? std::to_string(*end) : std::string("overflow")) +
               ") overflow the weights arena of " + std::to_string(m.weights_bytes) + " bytes");
  return true;
}

/// Names unique, byte ranges disjoint.
Status check_tensor_set(const std::vector<WeightTensor> &tensors) {
  std::vector<const WeightTensor *> sorted;
  for (const WeightTensor &t : tensors)
    sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(),
            [](const WeightTensor *a, const WeightTensor *b) { return a->name < b->name; });
  for (std::size_t i = 1; i < sorted.size(); ++i)
    if (sorted[i]->name == sorted[i - 1]->name)
      return fail("manifest: tensor " + squote(sorted[i]->name) + " is listed twice");
  std::sort(sorted.begin(), sorted.end(),
            [](const WeightTensor *a, const WeightTensor *b) { return a->offset < b->offset; });
  const WeightTensor *prev = nullptr;
  for (const WeightTensor *t : sorted) {
    if (t->nbytes == 0)
      continue;
    if (prev && t->offset < prev->offset + prev->nbytes)
      return fail("manifest: tensors " + squote(prev->name) + " and " + squote(t->name) +
                  " overlap in the weights arena");
    prev = t;
  }
  return ok();
}
} // namespace

Result<Manifest> parse_manifest(std::string_view text) {
  Result<json> parsed = parse_json(text, "manifest");
  if (!parsed)
    return parsed.failure();
  const json &j = *parsed;
  if (!j.is_object())
    return fail("manifest: not a JSON object");
  Reader r;
  Manifest m;
  std::string magic, wd;
  if (!r.string(j, "magic", "", magic))
    return fail(r.problem);
  if (magic != MOEC_ABI_MAGIC)
    return fail("manifest: magic is not \"" MOEC_ABI_MAGIC "\"; this is not a moec manifest");
  if (!r.integer(j, "abi_version", "", m.abi_version, 0))
    return fail(r.problem);
  if (m.abi_version != MOEC_ABI_VERSION)
    return fail("manifest: abi_version " + std::to_string(m.abi_version) +
                " but this runtime implements " + std::to_string(MOEC_ABI_VERSION) +
                "; rebuild the model with a matching compiler");
  if (!r.string(j, "target", "", m.target))
    return fail(r.problem);
  if (m.target != "cpu" && m.target != "nvptx")
    return fail("manifest: target \"" + printable(m.target) +
                "\" is not supported by this runtime (cpu or nvptx)");
  if (!r.integer(j, "max_seq_len", "", m.max_seq_len))
    return fail(r.problem);
  if (m.max_seq_len > INT32_MAX)
    return fail("manifest: max_seq_len " + std::to_string(m.max_seq_len) + " is too large");
  const json *config = r.object(j, "config", "");
  if (!config)
    return fail(r.problem);
  Result<ModelConfig> c = config_from_object(*config, "manifest: config");
  if (!c)
    return c.failure();
  m.config = *c;
  if (!r.string(*config, "weight_dtype", "config: ", wd))
    return fail(r.problem);
  std::optional<DType> dt = parse_weight_dtype(wd);
  if (!dt)
    return fail("manifest: config: weight_dtype \"" + printable(wd) +
                "\" is not one of f32, bf16, f16");
  m.config.weight_dtype = *dt;
  if (auto md = j.find("model_dir"); md != j.end() && !md->is_null()) {
    if (!md->is_string())
      return fail("manifest: \"model_dir\" is not a string");
    m.model_dir = md->get<std::string>();
  }

  const json *w = r.object(j, "weights", "");
  if (!w || !r.integer(*w, "bytes", "weights: ", m.weights_bytes, 0) ||
      !r.integer(*w, "alignment", "weights: ", m.weights_alignment))
    return fail(r.problem);
  if (m.weights_alignment != MOEC_WEIGHT_ALIGNMENT)
    return fail("manifest: weights: alignment " + std::to_string(m.weights_alignment) +
                " but the ABI fixes " + std::to_string(MOEC_WEIGHT_ALIGNMENT));
  const json *ts = r.field(*w, "tensors", "weights: ");
  if (!ts)
    return fail(r.problem);
  if (!ts->is_array())
    return fail("manifest: weights: \"tensors\" is not an array");
  for (std::size_t i = 0; i < ts->size(); ++i) {
    WeightTensor t;
    if (!r.weight_tensor((*ts)[i], i, m, t))
      return fail(r.problem);
    m.tensors.push_back(std::move(t));
  }
  if (Status s = check_tensor_set(m.tensors); !s)
    return s.failure();

  const json *kv = r.object(j, "kv_cache", "");
  std::string kv_dtype;
  if (!kv || !r.integer(*kv, "bytes", "kv_cache: ", m.kv_bytes, 0) ||
      !r.string(*kv, "dtype", "kv_cache: ", kv_dtype))
    return fail(r.problem);
  if (kv_dtype != "f32")
    return fail("manifest: kv_cache: dtype must be \"f32\"");
  if (!r.shape(*kv, "shape", "kv_cache: ", m.kv_shape))
    return fail(r.problem);
  const ModelConfig &cf = m.config;
  const std::vector<std::int64_t> want = {cf.num_hidden_layers, 2, m.max_seq_len,
                                          cf.num_key_value_heads, cf.head_dim};
  if (m.kv_shape != want)
    return fail("manifest: kv_cache: shape " + shape_str(m.kv_shape) +
                " but [L, 2, S, KVH, HD] is " + shape_str(want));
  std::optional<std::uint64_t> kvb = checked_nbytes(m.kv_shape, 4);
  if (!kvb || *kvb != m.kv_bytes)
    return fail("manifest: kv_cache: bytes " + std::to_string(m.kv_bytes) + " but shape " +
                shape_str(want) + " of f32 needs " +
                (kvb ? std::to_string(*kvb) : std::string("more than 2^64")));
  if (auto st = j.find("step"); st != j.end() && !st->is_null()) {
    const json *step = r.object(j, "step", "");
    StepInfo info;
    if (!step || !r.integer(*step, "kv_block_size", "step: ", info.kv_block_size, 1) ||
        !r.integer(*step, "max_blocks_per_seq", "step: ", info.max_blocks_per_seq, 1))
      return fail(r.problem);
    if (info.max_blocks_per_seq != (m.max_seq_len + info.kv_block_size - 1) / info.kv_block_size)
      return fail("manifest: step: kv_block_size " + std::to_string(info.kv_block_size) +
                  " and max_blocks_per_seq " + std::to_string(info.max_blocks_per_seq) +
                  " do not cover max_seq_len " + std::to_string(m.max_seq_len) +
                  " (max_blocks_per_seq must be ceil(max_seq_len / kv_block_size))");
    m.step = info;
  }
  return m;
}

std::string write_manifest(const Manifest &m) {
  const ModelConfig &c = m.config;
  nlohmann::ordered_json config = {
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.hidden_size},
      {"intermediate_size", c.intermediate_size},
      {"num_hidden_layers", c.num_hidden_layers},
      {"num_attention_heads", c.num_attention_heads},
      {"num_key_value_heads", c.num_key_value_heads},
      {"head_dim", c.head_dim},
      {"num_local_experts", c.num_local_experts},
      {"num_experts_per_tok", c.num_experts_per_tok},
      {"rms_norm_eps", c.rms_norm_eps},
      {"rope_theta", c.rope_theta},
      {"max_position_embeddings", c.max_position_embeddings},
      {"sliding_window",
       c.sliding_window ? nlohmann::ordered_json(*c.sliding_window) : nlohmann::ordered_json()},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"hidden_act", c.hidden_act},
      {"bos_token_id", c.bos_token_id},
      {"eos_token_id", c.eos_token_id},
      {"weight_dtype", dtype_name(c.weight_dtype)}};
  nlohmann::ordered_json tensors = nlohmann::ordered_json::array();
  for (const WeightTensor &t : m.tensors) {
    nlohmann::ordered_json e = {{"name", t.name},
                                {"dtype", dtype_name(t.dtype)},
                                {"shape", t.shape},
                                {"offset", t.offset},
                                {"sources", t.sources}};
    if (t.stacked)
      e["stacked"] = true;
    tensors.push_back(std::move(e));
  }
  nlohmann::ordered_json j = {
      {"magic", MOEC_ABI_MAGIC},
      {"abi_version", MOEC_ABI_VERSION},
      {"target", m.target},
      {"max_seq_len", m.max_seq_len},
      {"config", std::move(config)},
      {"weights",
       {{"bytes", m.weights_bytes}, {"alignment", m.weights_alignment}, {"tensors", tensors}}},
      {"kv_cache", {{"bytes", m.kv_bytes}, {"dtype", "f32"}, {"shape", m.kv_shape}}}};
  if (m.step)
    j["step"] = {{"kv_block_size", m.step->kv_block_size},
                 {"max_blocks_per_seq", m.step->max_blocks_per_seq}};
  if (m.model_dir)
    j["model_dir"] = *m.model_dir;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

} // namespace moec::checkpoint
