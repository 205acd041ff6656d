// fp8.cpp — config.json's "quantization_config" (moec/checkpoint/fp8.h).
#include "moec/checkpoint/fp8.h"

#include "json.h"
#include "moec/checkpoint/file.h"

namespace moec::checkpoint {
using namespace detail;

namespace {
const char *kSupported = "; moec reads FP8 (F8_E4M3) checkpoints with per-tensor or per-channel "
                         "weight_scale, and quantizes bf16/f16/f32 ones itself (--quantize q8|q4)";

std::string str(const json &obj, const char *key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

/// One compressed-tensors config group: FP8 weights we can read, activations we note.
Status check_group(const std::string &where, const json &g, Fp8Config &out) {
  if (!g.is_object())
    return fail(where + " is not an object");
  auto w = g.find("weights");
  if (w == g.end() || !w->is_object())
    return fail(where + " has no \"weights\" scheme" + kSupported);
  auto num = w->find("num_bits");
  const std::string type = str(*w, "type"), strategy = str(*w, "strategy");
  if (num == w->end() || !num->is_number_integer() || num->get<std::int64_t>() != 8 ||
      type != "float")
    return fail(where + ": weights of " + (num != w->end() ? brief(*num) : std::string("?")) +
                " bits of type \"" + printable(type) + "\" are not FP8" + kSupported);
  if (strategy != "tensor" && strategy != "channel")
    return fail(where + ": weight strategy \"" + printable(strategy) +
                "\" is not supported (tensor or channel; group and block scales are not)");
  if (auto s = w->find("symmetric"); s != w->end() && s->is_boolean() && !s->get<bool>())
    return fail(where + ": asymmetric weights (zero points) are not supported");
  if (auto a = g.find("input_activations"); a != g.end() && a->is_object()) {
    auto dyn = a->find("dynamic");
    if (dyn != a->end() && dyn->is_boolean() && !dyn->get<bool>())
      out.static_activations = true;
    out.note = "activation quantization is not applied: activations stay f32";
  }
  return ok();
}

Result<Fp8Config> parse_fp8(const std::string &name, const json &q) {
  Fp8Config out;
  out.method = "fp8";
  if (auto b = q.find("weight_block_size"); b != q.end() && !b->is_null())
    return fail(name + ": quantization_config: block-wise FP8 (\"weight_block_size\" " +
                brief_dump(*b) + ") is not supported" + kSupported);
  const std::string fmt = str(q, "fmt");
  if (!fmt.empty() && fmt != "e4m3")
    return fail(name + ": quantization_config: FP8 format \"" + printable(fmt) +
                "\" is not supported (e4m3)");
  const std::string scheme = str(q, "activation_scheme");
  out.static_activations = scheme == "static";
  if (!scheme.empty())
    out.note = "activation_scheme \"" + printable(scheme) +
               "\" is not applied: activations stay f32";
  return out;
}

Result<Fp8Config> parse_compressed(const std::string &name, const json &q) {
  Fp8Config out;
  out.method = "compressed-tensors";
  const std::string format = str(q, "format");
  if (format != "float-quantized" && format != "naive-quantized")
    return fail(name + ": quantization_config: compressed-tensors format \"" + printable(format) +
                "\" is not supported (float-quantized)" + kSupported);
  auto groups = q.find("config_groups");
  if (groups == q.end() || !groups->is_object() || groups->empty())
    return fail(name + ": quantization_config: no \"config_groups\"");
  for (auto it = groups->begin(); it != groups->end(); ++it)
    if (Status s = check_group(name + ": quantization_config: group " + squote(it.key()),
                               it.value(), out);
        !s)
      return s.failure();
  if (auto kv = q.find("kv_cache_scheme"); kv != q.end() && !kv->is_null())
    out.note += std::string(out.note.empty() ? "" : "; ") +
                "kv_cache_scheme is not applied: the KV cache stays f32";
  return out;
}
} // namespace

Result<std::optional<Fp8Config>> parse_quantization_config(std::string_view text,
                                                           const std::string &name) {
  Result<json> j = parse_json(text, name);
  if (!j)
    return j.failure();
  if (!j->is_object())
    return std::optional<Fp8Config>();
  auto q = j->find("quantization_config");
  if (q == j->end() || q->is_null())
    return std::optional<Fp8Config>();
  if (!q->is_object())
    return fail(name + ": \"quantization_config\" is not an object");
  const std::string method = str(*q, "quant_method");
  Result<Fp8Config> c = method == "fp8" ? parse_fp8(name, *q)
                        : method == "compressed-tensors"
                            ? parse_compressed(name, *q)
                            : Result<Fp8Config>(fail(name + ": quantization_config: quant_method \"" +
                                                     printable(method) + "\" is not supported" +
                                                     kSupported));
  if (!c)
    return c.failure();
  return std::optional<Fp8Config>(*c);
}

Result<std::optional<Fp8Config>> load_quantization_config(const std::string &path) {
  Result<std::string> text = read_small_file(path, kMaxJsonFileBytes, "a config.json");
  if (!text)
    return text.failure();
  return parse_quantization_config(*text, path);
}

std::string fp8_scale_name(const std::string &weight) {
  const std::string suffix = ".weight";
  if (weight.size() >= suffix.size() && weight.compare(weight.size() - suffix.size(), suffix.size(), suffix) == 0)
    return weight + "_scale";
  return weight + ".weight_scale";
}

std::string fp8_input_scale_name(const std::string &weight) {
  const std::string suffix = ".weight";
  if (weight.size() >= suffix.size() && weight.compare(weight.size() - suffix.size(), suffix.size(), suffix) == 0)
    return weight.substr(0, weight.size() - suffix.size()) + ".input_scale";
  return weight + ".input_scale";
}

} // namespace moec::checkpoint
