// config.cpp — config.json: parse, validate, write, compare.
#include "moec/checkpoint/config.h"

#include "json.h"
#include "moec/checkpoint/file.h"

#include <cmath>

namespace moec::checkpoint {
using namespace detail;

std::string format_number(double v) { return number(v); }

namespace {
std::string q(const char *key) { return std::string("\"") + key + "\""; }

/// Reads fields of one object; the first problem wins and later reads are no-ops.
class Fields {
public:
  Fields(const json &obj) : obj_(obj) {}
  std::string problem;

  const json *get(const char *key) const {
    auto it = obj_.find(key);
    return it == obj_.end() || it->is_null() ? nullptr : &*it;
  }
  void integer(const char *key, std::int64_t &out, bool required = true) {
    if (!problem.empty())
      return;
    const json *v = get(key);
    if (!v) {
      if (required)
        problem = "missing field " + q(key);
      return;
    }
    if (v->is_number_integer() && !v->is_number_unsigned()) {
      out = v->get<std::int64_t>();
    } else if (v->is_number_unsigned()) {
      std::uint64_t u = v->get<std::uint64_t>();
      out = u > static_cast<std::uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<std::int64_t>(u);
    } else if (v->is_number_float() && std::isfinite(v->get<double>()) &&
               std::floor(v->get<double>()) == v->get<double>() &&
               std::fabs(v->get<double>()) < 9.2e18) {
      out = static_cast<std::int64_t>(v->get<double>()); // 4096.0 is 4096
    } else {
      problem = "field " + q(key) + " must be an integer";
    }
  }
  void number(const char *key, double &out) {
    if (!problem.empty())
      return;
    const json *v = get(key);
    if (!v)
      problem = "missing field " + q(key);
    else if (!v->is_number())
      problem = "field " + q(key) + " must be a number";
    else
      out = v->get<double>();
  }
  void boolean(const char *key, bool &out) {
    if (!problem.empty())
      return;
    if (const json *v = get(key)) {
      if (!v->is_boolean())
        problem = "field " + q(key) + " must be true or false";
      else
        out = v->get<bool>();
    }
  }
  void string(const char *key, std::string &out) {
    if (!problem.empty())
      return;
    if (const json *v = get(key)) {
      if (!v->is_string())
        problem = "field " + q(key) + " must be a string";
      else
        out = v->get<std::string>();
    }
  }

private:
  const json &obj_;
};

std::optional<std::int64_t> mul(std::initializer_list<std::int64_t> xs) {
  std::int64_t r = 1;
  for (std::int64_t x : xs)
    if (__builtin_mul_overflow(r, x, &r))
      return std::nullopt;
  return r;
}

/// total_parameters with every step checked; nullopt on int64 overflow.
std::optional<std::int64_t> checked_total(const ModelConfig &c) {
  const std::int64_t D = c.hidden_size, F = c.intermediate_size, E = c.num_local_experts;
  std::optional<std::int64_t> q = mul({D, c.q_dim(), 2}), kv = mul({D, c.kv_dim(), 2}),
                              experts = mul({E, 3, D, F}), router = mul({E, D}),
                              embed = mul({c.vocab_size, D, c.tie_word_embeddings ? 1 : 2});
  if (!q || !kv || !experts || !router || !embed)
    return std::nullopt;
  std::int64_t layer = 0, total = 0;
  for (std::int64_t part : {*q, *kv, *experts, *router, 2 * D})
    if (__builtin_add_overflow(layer, part, &layer))
      return std::nullopt;
  std::optional<std::int64_t> layers = mul({c.num_hidden_layers, layer});
  if (!layers || __builtin_add_overflow(*layers, *embed, &total) ||
      __builtin_add_overflow(total, D, &total))
    return std::nullopt;
  return total;
}
} // namespace

Status validate_config(const ModelConfig &c) {
  using L = ConfigLimits;
  auto bad = [](const std::string &p) { return fail(p); };
  const std::pair<const char *, std::int64_t> positive[] = {
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.hidden_size},
      {"intermediate_size", c.intermediate_size},
      {"num_hidden_layers", c.num_hidden_layers},
      {"num_attention_heads", c.num_attention_heads},
      {"num_key_value_heads", c.num_key_value_heads},
      {"num_local_experts", c.num_local_experts},
      {"num_experts_per_tok", c.num_experts_per_tok},
      {"max_position_embeddings", c.max_position_embeddings}};
  for (auto [name, v] : positive)
    if (v <= 0)
      return bad(q(name) + " must be positive, but it is " + std::to_string(v));
  const std::pair<const char *, std::pair<std::int64_t, std::int64_t>> limits[] = {
      {"vocab_size", {c.vocab_size, L::kMaxVocab}},
      {"hidden_size", {c.hidden_size, L::kMaxHidden}},
      {"intermediate_size", {c.intermediate_size, L::kMaxIntermediate}},
      {"num_hidden_layers", {c.num_hidden_layers, L::kMaxLayers}},
      {"num_attention_heads", {c.num_attention_heads, L::kMaxHeads}},
      {"num_key_value_heads", {c.num_key_value_heads, L::kMaxHeads}},
      {"num_local_experts", {c.num_local_experts, L::kMaxExperts}},
      {"max_position_embeddings", {c.max_position_embeddings, L::kMaxPositions}}};
  for (auto [name, vl] : limits)
    if (vl.first > vl.second)
      return bad(q(name) + " (" + std::to_string(vl.first) + ") is above the limit of " +
                 std::to_string(vl.second));
  if (c.head_dim <= 0 || c.head_dim % 2 != 0 || c.head_dim > L::kMaxHeadDim)
    return bad("the head dimension must be positive, even (for RoPE) and at most " +
               std::to_string(L::kMaxHeadDim) + ", but it is " + std::to_string(c.head_dim));
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    return bad(q("num_attention_heads") + " (" + std::to_string(c.num_attention_heads) +
               ") must be a multiple of " + q("num_key_value_heads") + " (" +
               std::to_string(c.num_key_value_heads) + ")");
  if (c.num_experts_per_tok > c.num_local_experts)
    return bad(q("num_experts_per_tok") + " (" + std::to_string(c.num_experts_per_tok) +
               ") must not exceed " + q("num_local_experts") + " (" +
               std::to_string(c.num_local_experts) + ")");
  if (!(c.rms_norm_eps > 0 && c.rms_norm_eps < 1))
    return bad(q("rms_norm_eps") + " must be in (0, 1), but it is " + number(c.rms_norm_eps));
  if (!(c.rope_theta > 0) || !std::isfinite(c.rope_theta))
    return bad(q("rope_theta") + " must be a finite positive number, but it is " +
               number(c.rope_theta));
  if (c.sliding_window && (*c.sliding_window <= 0 || *c.sliding_window > INT32_MAX))
    return bad(q("sliding_window") + " must be positive (at most 2^31 - 1) or null, but it is " +
               std::to_string(*c.sliding_window));
  if (c.hidden_act != "silu")
    return bad(q("hidden_act") + " is " + q(printable(c.hidden_act).c_str()) +
               ", but only \"silu\" is implemented");
  if (c.bos_token_id < 0 || c.bos_token_id >= c.vocab_size)
    return bad(q("bos_token_id") + " (" + std::to_string(c.bos_token_id) +
               ") must be a valid token id, in [0, " + std::to_string(c.vocab_size) + ")");
  if (c.eos_token_id < 0 || c.eos_token_id >= c.vocab_size)
    return bad(q("eos_token_id") + " (" + std::to_string(c.eos_token_id) +
               ") must be a valid token id, in [0, " + std::to_string(c.vocab_size) + ")");
  if (!is_weight_dtype(c.weight_dtype))
    return bad(std::string("weight dtype ") + dtype_name(c.weight_dtype) +
               " is not one of f32, bf16, f16");
  std::optional<std::int64_t> total = checked_total(c);
  if (!total || *total > L::kMaxParameters)
    return bad("the model has " + (total ? std::to_string(*total) : std::string("over 2^63")) +
               " parameters, above the limit of 2^42");
  return ok();
}

Result<ModelConfig> detail::config_from_object(const json &obj, const std::string &name) {
  if (!obj.is_object())
    return fail(name + ": the top level must be a JSON object");
  const json *j = &obj;
  Fields r(*j);
  if (const json *arch = r.get("architectures")) {
    bool mixtral = arch->is_array() && !arch->empty() && (*arch)[0].is_string() &&
                   (*arch)[0].get<std::string>() == "MixtralForCausalLM";
    if (!mixtral)
      return fail(name + ": \"architectures\" must be [\"MixtralForCausalLM\"]");
  }
  ModelConfig c;
  r.integer("vocab_size", c.vocab_size);
  r.integer("hidden_size", c.hidden_size);
  r.integer("intermediate_size", c.intermediate_size);
  r.integer("num_hidden_layers", c.num_hidden_layers);
  r.integer("num_attention_heads", c.num_attention_heads);
  r.integer("num_key_value_heads", c.num_key_value_heads);
  r.integer("num_local_experts", c.num_local_experts);
  r.integer("num_experts_per_tok", c.num_experts_per_tok);
  r.number("rms_norm_eps", c.rms_norm_eps);
  r.number("rope_theta", c.rope_theta);
  r.integer("max_position_embeddings", c.max_position_embeddings);
  std::int64_t window = 0;
  r.integer("sliding_window", window, /*required=*/false);
  r.boolean("tie_word_embeddings", c.tie_word_embeddings);
  r.string("hidden_act", c.hidden_act);
  std::int64_t bos = c.bos_token_id, eos = c.eos_token_id;
  r.integer("bos_token_id", bos, /*required=*/false);
  r.integer("eos_token_id", eos, /*required=*/false);
  std::int64_t head_dim = 0;
  r.integer("head_dim", head_dim, /*required=*/false);
  if (!r.problem.empty())
    return fail(name + ": " + r.problem);
  for (auto [key, id] : {std::pair<const char *, std::int64_t>{"bos_token_id", bos}, {"eos_token_id", eos}})
    if (id < 0 || id > INT32_MAX)
      return fail(name + ": " + q(key) + " (" + std::to_string(id) +
                  ") must be a valid token id, in [0, vocab_size)");
  c.bos_token_id = static_cast<std::int32_t>(bos); // validate_config: < vocab_size
  c.eos_token_id = static_cast<std::int32_t>(eos);
  if (window != 0) // Hugging Face configs write null; 0 has meant "none" to moec too
    c.sliding_window = window;
  const bool explicit_head_dim = r.get("head_dim") != nullptr;
  if (!explicit_head_dim && c.num_attention_heads > 0 && c.hidden_size > 0) {
    if (c.hidden_size % c.num_attention_heads != 0)
      return fail(name + ": \"hidden_size\" (" + std::to_string(c.hidden_size) +
                  ") must be divisible by \"num_attention_heads\" (" +
                  std::to_string(c.num_attention_heads) + ")");
    head_dim = c.hidden_size / c.num_attention_heads;
  }
  c.head_dim = head_dim;
  if (!explicit_head_dim && c.num_attention_heads <= 0)
    c.head_dim = 2; // the heads' own message comes first
  if (Status s = validate_config(c); !s)
    return fail(name + ": " + s.error());
  return c;
}

Result<ModelConfig> parse_config(std::string_view text, const std::string &name) {
  Result<json> j = parse_json(text, name);
  if (!j)
    return j.failure();
  return config_from_object(*j, name);
}

Result<ModelConfig> load_config(const std::string &path) {
  Result<std::string> text = read_small_file(path, kMaxJsonFileBytes, "a config.json");
  if (!text)
    return text.failure();
  return parse_config(*text, path);
}

std::string write_config_json(const ModelConfig &c) {
  nlohmann::ordered_json o;
  o["architectures"] = {"MixtralForCausalLM"};
  o["model_type"] = "mixtral";
  o["vocab_size"] = c.vocab_size;
  o["hidden_size"] = c.hidden_size;
  o["intermediate_size"] = c.intermediate_size;
  o["num_hidden_layers"] = c.num_hidden_layers;
  o["num_attention_heads"] = c.num_attention_heads;
  o["num_key_value_heads"] = c.num_key_value_heads;
  o["head_dim"] = c.head_dim;
  o["num_local_experts"] = c.num_local_experts;
  o["num_experts_per_tok"] = c.num_experts_per_tok;
  o["rms_norm_eps"] = c.rms_norm_eps;
  o["rope_theta"] = c.rope_theta;
  o["max_position_embeddings"] = c.max_position_embeddings;
  o["sliding_window"] = c.sliding_window ? nlohmann::ordered_json(*c.sliding_window) : nullptr;
  o["tie_word_embeddings"] = c.tie_word_embeddings;
  o["hidden_act"] = c.hidden_act;
  o["bos_token_id"] = c.bos_token_id;
  o["eos_token_id"] = c.eos_token_id;
  o["torch_dtype"] = c.weight_dtype == DType::F32    ? "float32"
                     : c.weight_dtype == DType::BF16 ? "bfloat16"
                                                     : "float16";
  return o.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

std::int64_t total_parameters(const ModelConfig &c) { return checked_total(c).value_or(-1); }

std::int64_t active_parameters(const ModelConfig &c) {
  // Validated configs are far below 2^63 (kMaxParameters), so these cannot overflow.
  const std::int64_t inactive = c.num_hidden_layers *
                                (c.num_local_experts - c.num_experts_per_tok) * 3 *
                                c.hidden_size * c.intermediate_size;
  const std::int64_t embedding = c.tie_word_embeddings ? 0 : c.vocab_size * c.hidden_size;
  return total_parameters(c) - inactive - embedding;
}

std::string config_mismatch(const ModelConfig &f, const ModelConfig &b) {
  auto differ = [](const char *name, const std::string &a, const std::string &bb) {
    return std::string(name) + " is " + a + " but this binary was compiled for " + bb;
  };
  const std::pair<const char *, std::pair<std::int64_t, std::int64_t>> ints[] = {
      {"vocab_size", {f.vocab_size, b.vocab_size}},
      {"hidden_size", {f.hidden_size, b.hidden_size}},
      {"intermediate_size", {f.intermediate_size, b.intermediate_size}},
      {"num_hidden_layers", {f.num_hidden_layers, b.num_hidden_layers}},
      {"num_attention_heads", {f.num_attention_heads, b.num_attention_heads}},
      {"num_key_value_heads", {f.num_key_value_heads, b.num_key_value_heads}},
      {"head_dim", {f.head_dim, b.head_dim}},
      {"num_local_experts", {f.num_local_experts, b.num_local_experts}},
      {"num_experts_per_tok", {f.num_experts_per_tok, b.num_experts_per_tok}},
      {"bos_token_id", {f.bos_token_id, b.bos_token_id}},
      {"eos_token_id", {f.eos_token_id, b.eos_token_id}}};
  for (auto [name, v] : ints)
    if (v.first != v.second)
      return differ(name, std::to_string(v.first), std::to_string(v.second));
  if (f.rms_norm_eps != b.rms_norm_eps)
    return differ("rms_norm_eps", number(f.rms_norm_eps), number(b.rms_norm_eps));
  if (f.rope_theta != b.rope_theta)
    return differ("rope_theta", number(f.rope_theta), number(b.rope_theta));
  auto window = [](const std::optional<std::int64_t> &w) {
    return w ? std::to_string(*w) : std::string("null");
  };
  if (f.sliding_window != b.sliding_window)
    return differ("sliding_window", window(f.sliding_window), window(b.sliding_window));
  if (f.tie_word_embeddings != b.tie_word_embeddings)
    return differ("tie_word_embeddings", f.tie_word_embeddings ? "true" : "false",
                  b.tie_word_embeddings ? "true" : "false");
  if (f.hidden_act != b.hidden_act)
    return differ("hidden_act", "\"" + printable(f.hidden_act) + "\"",
                  "\"" + printable(b.hidden_act) + "\"");
  return "";
}

} // namespace moec::checkpoint
