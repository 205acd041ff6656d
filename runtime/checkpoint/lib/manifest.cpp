// manifest.cpp — the manifest's writer and reader.
#include "moec/checkpoint/manifest.h"

#include "json.h"
#include "moec/abi.h"
#include "moec/checkpoint/safetensors.h"
#include "moec/checkpoint/weights_file.h"

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
  bool strings(const json &obj, const char *key, const std::string &where,
               std::vector<std::string> &out) {
    const json *v = field(obj, key, where);
    if (!v)
      return false;
    if (!v->is_array() || v->empty())
      return bad(where + "\"" + key + "\" must be a non-empty array of strings");
    for (const json &s : *v) {
      if (!s.is_string())
        return bad(where + "\"" + key + "\" must be a non-empty array of strings");
      out.push_back(s.get<std::string>());
    }
    return true;
  }
  bool in_arena(const std::string &w, const char *what, std::uint64_t offset,
                std::uint64_t nbytes, const Manifest &m);
  bool quantization(const json &t, const std::string &w, const Manifest &m, WeightTensor &out);
  bool weight_tensor(const json &t, std::size_t i, const Manifest &m, WeightTensor &out);
  bool weights_file(const json &j, Manifest &m);
  bool panels(const json &t, const std::string &w, WeightTensor &out);
};

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
  if (std::optional<DType> dt = parse_weight_dtype(ds))
    out.dtype = *dt;
  else if (std::optional<QuantFormat> q = parse_quant_format(ds))
    out.quant = *q, out.dtype = quant_data_dtype(*q);
  else
    return bad(w + "dtype \"" + printable(ds) + "\" is not one of f32, bf16, f16, q8, q4, f8e4m3");
  if (!shape(t, "shape", w, out.shape) || !integer(t, "offset", w, out.offset, 0) ||
      !strings(t, "sources", w, out.sources))
    return false;
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
  if (t.contains("panels") && !panels(t, w, out))
    return false;
  if (out.quantized())
    return quantization(t, w, m, out);
  for (const char *key : {"group_size", "scale", "scale_sources"})
    if (t.contains(key))
      return bad(w + "\"" + key + "\" is only for quantized tensors (dtype q8, q4, f8e4m3)");
  std::optional<std::uint64_t> nb = checked_nbytes(out.shape, dtype_size(out.dtype));
  if (!nb)
    return bad(w + "shape " + shape_str(out.shape) + " overflows a 64-bit byte count");
  out.nbytes = *nb;
  return in_arena(w, "bytes", out.offset, out.nbytes, m);
}

/// [offset, offset + nbytes) aligned and inside the arena.
bool Reader::in_arena(const std::string &w, const char *what, std::uint64_t offset,
                      std::uint64_t nbytes, const Manifest &m) {
  if (offset % m.weights_alignment != 0)
    return bad(w + std::string(what == std::string("bytes") ? "offset " : "scale offset ") +
               std::to_string(offset) + " is not a multiple of the alignment " +
               std::to_string(m.weights_alignment));
  std::optional<std::uint64_t> end = checked_add(offset, nbytes);
  if (!end || *end > m.weights_bytes)
    return bad(w + what + " [" + std::to_string(offset) + ", " +
               (end ? std::to_string(*end) : std::string("overflow")) +
               ") overflow the weights arena of " + std::to_string(m.weights_bytes) + " bytes");
  return true;
}

/// A quantized tensor's group size, scale array and scale sources (moec/checkpoint/quant.h).
bool Reader::quantization(const json &t, const std::string &w, const Manifest &m,
                          WeightTensor &out) {
  const char *fmt = quant_format_name(out.quant);
  if (const char *why = quant_shape_problem(out.quant, out.shape); *why)
    return bad(w + fmt + " cannot hold shape " + shape_str(out.shape) + ": " + why);
  std::optional<QuantBytes> qb = quant_bytes(out.quant, out.shape);
  if (!qb)
    return bad(w + "shape " + shape_str(out.shape) + " overflows a 64-bit byte count");
  out.nbytes = qb->data;
  const std::int64_t want_group = quant_group_size(out.quant, out.shape.back());
  if (!integer(t, "group_size", w, out.group_size))
    return false;
  if (out.group_size != want_group)
    return bad(w + "group_size " + std::to_string(out.group_size) + " but " + fmt +
               " of shape " + shape_str(out.shape) + " has " + std::to_string(want_group));
  const json *sc = object(t, "scale", w);
  std::string sd;
  if (!sc || !string(*sc, "dtype", w + "scale: ", sd) ||
      !integer(*sc, "offset", w + "scale: ", out.scale.offset, 0))
    return false;
  out.scale.dtype = quant_scale_dtype(out.quant);
  if (sd != dtype_name(out.scale.dtype))
    return bad(w + "scale: dtype \"" + printable(sd) + "\" but " + fmt + " scales are " +
               dtype_name(out.scale.dtype));
  out.scale.nbytes = qb->scale;
  if (t.contains("scale_sources")) {
    if (!strings(t, "scale_sources", w, out.scale_sources))
      return false;
    if (out.quant != QuantFormat::F8E4M3 || out.scale_sources.size() != out.sources.size())
      return bad(w + "\"scale_sources\" needs dtype f8e4m3 and one entry per source");
  }
  if (!m.weights_file)
    return bad(w + "is " + fmt + " but the manifest names no \"weights_file\" (quantized "
                   "weights exist only in a packed file)");
  return in_arena(w, "bytes", out.offset, out.nbytes, m) &&
         in_arena(w, "scale bytes", out.scale.offset, out.scale.nbytes, m);
}

/// "panels": [cols, lanes] of an unquantized or q8 [..., N, K] tensor, N a multiple of cols
/// and K of lanes (WeightTensor::panel_cols): in a packed file as stored, else (unquantized)
/// permuted at load.
bool Reader::panels(const json &t, const std::string &w, WeightTensor &out) {
  const json &p = t["panels"];
  std::optional<std::uint64_t> cols, lanes;
  if (p.is_array() && p.size() == 2)
    cols = json_uint(p[0]), lanes = json_uint(p[1]);
  if (!cols || !lanes || *cols < 1 || *lanes < 1 || *cols > 256 || *lanes > 256)
    return bad(w + "\"panels\" must be [cols, lanes], two integers in 1..256, got " +
               brief_dump(p));
  out.panel_cols = static_cast<std::int64_t>(*cols);
  out.panel_lanes = static_cast<std::int64_t>(*lanes);
  if (out.quantized() && out.quant != QuantFormat::Q8)
    return bad(w + "\"panels\" is only for unquantized (f32, bf16, f16) and q8 tensors");
  if (out.shape.size() < 2 || out.shape[out.shape.size() - 2] % out.panel_cols != 0 ||
      out.shape.back() % out.panel_lanes != 0)
    return bad(w + "panels of " + std::to_string(out.panel_cols) + " rows and " +
               std::to_string(out.panel_lanes) + " lanes cannot hold shape " +
               shape_str(out.shape) + " (rows must be a multiple of cols, K of lanes)");
  return true;
}

/// "weights_file": a plain name, a fingerprint, the file's exact size.
bool Reader::weights_file(const json &j, Manifest &m) {
  auto it = j.find("weights_file");
  if (it == j.end() || it->is_null())
    return true;
  if (!it->is_object())
    return bad("\"weights_file\" is not an object");
  WeightsFile f;
  const std::string w = "weights_file: ";
  if (!string(*it, "name", w, f.name) || !string(*it, "fingerprint", w, f.fingerprint) ||
      !integer(*it, "bytes", w, f.bytes))
    return false;
  if (f.name.empty() || f.name == "." || f.name == ".." ||
      f.name.find_first_of(std::string("/\0", 2)) != std::string::npos)
    return bad(w + "name " + squote(f.name) + " is not a plain file name");
  if (std::string why = fingerprint_problem(f.fingerprint); !why.empty())
    return bad(w + "fingerprint " + why);
  std::optional<std::uint64_t> want = checked_add(kWeightsFileHeaderBytes, m.weights_bytes);
  if (!want || f.bytes != *want)
    return bad(w + "bytes " + std::to_string(f.bytes) + " but a header page and the arena of " +
               std::to_string(m.weights_bytes) + " bytes make " +
               (want ? std::to_string(*want) : std::string("more than 2^64")));
  m.weights_file = std::move(f);
  return true;
}

/// Names unique, byte ranges (data and scale arrays) disjoint.
Status check_tensor_set(const std::vector<WeightTensor> &tensors) {
  std::vector<const WeightTensor *> sorted;
  for (const WeightTensor &t : tensors)
    sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(),
            [](const WeightTensor *a, const WeightTensor *b) { return a->name < b->name; });
  for (std::size_t i = 1; i < sorted.size(); ++i)
    if (sorted[i]->name == sorted[i - 1]->name)
      return fail("manifest: tensor " + squote(sorted[i]->name) + " is listed twice");
  struct Range {
    std::uint64_t offset, nbytes;
    std::string what;
  };
  std::vector<Range> ranges;
  for (const WeightTensor &t : tensors) {
    ranges.push_back({t.offset, t.nbytes, squote(t.name)});
    if (t.quantized())
      ranges.push_back({t.scale.offset, t.scale.nbytes, "the scales of " + squote(t.name)});
  }
  std::sort(ranges.begin(), ranges.end(),
            [](const Range &a, const Range &b) { return a.offset < b.offset; });
  const Range *prev = nullptr;
  for (const Range &r : ranges) {
    if (r.nbytes == 0)
      continue;
    if (prev && r.offset < prev->offset + prev->nbytes)
      return fail("manifest: " + prev->what + " and " + r.what + " overlap in the weights arena");
    prev = &r;
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
  if (!r.weights_file(j, m))
    return fail(r.problem);
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

bool Manifest::any_quantized() const {
  return std::any_of(tensors.begin(), tensors.end(),
                     [](const WeightTensor &t) { return t.quantized(); });
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
    nlohmann::ordered_json e = {
        {"name", t.name},
        {"dtype", t.quantized() ? quant_format_name(t.quant) : dtype_name(t.dtype)},
        {"shape", t.shape},
        {"offset", t.offset}};
    if (t.quantized()) {
      e["group_size"] = t.group_size;
      e["scale"] = {{"dtype", dtype_name(t.scale.dtype)}, {"offset", t.scale.offset}};
    }
    e["sources"] = t.sources;
    if (!t.scale_sources.empty())
      e["scale_sources"] = t.scale_sources;
    if (t.stacked)
      e["stacked"] = true;
    if (t.panels())
      e["panels"] = {t.panel_cols, t.panel_lanes};
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
  if (m.weights_file)
    j["weights_file"] = {{"name", m.weights_file->name},
                         {"fingerprint", m.weights_file->fingerprint},
                         {"bytes", m.weights_file->bytes}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

} // namespace moec::checkpoint
