//===- MixtralConfig.cpp - config.json parsing and validation -------------===//
//
// Every required field must be present with the right JSON type; values are range-checked
// and cross-checked (heads divide the width, k <= experts, ...), so nothing downstream sees a
// zero, a negative size or an inconsistent shape.
//
//===----------------------------------------------------------------------===//

#include "moec/Models/MixtralConfig.h"

#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/MemoryBuffer.h"

using namespace moec;
using llvm::Expected;
using llvm::StringRef;

StringRef moec::weightTypeName(WeightType type) {
  switch (type) {
  case WeightType::F32:
    return "f32";
  case WeightType::BF16:
    return "bf16";
  case WeightType::F16:
    return "f16";
  }
  llvm_unreachable("unknown weight type");
}

int64_t moec::weightTypeBytes(WeightType type) { return type == WeightType::F32 ? 4 : 2; }

std::optional<WeightType> moec::parseSafetensorsDtype(StringRef dtype) {
  if (dtype == "F32")
    return WeightType::F32;
  if (dtype == "BF16")
    return WeightType::BF16;
  if (dtype == "F16")
    return WeightType::F16;
  return std::nullopt;
}

namespace {

/// Reads fields of one JSON object and remembers the first problem.
class FieldReader {
public:
  FieldReader(const llvm::json::Object &obj, StringRef path) : obj(obj), path(path) {}

  void integer(StringRef key, int64_t &out, bool required = true) {
    const llvm::json::Value *v = obj.get(key);
    if (!v || v->kind() == llvm::json::Value::Null) {
      if (required)
        fail(llvm::formatv("missing field \"{0}\"", key));
      return;
    }
    if (std::optional<int64_t> i = v->getAsInteger()) {
      out = *i;
      return;
    }
    fail(llvm::formatv("field \"{0}\" must be an integer", key));
  }

  void number(StringRef key, double &out, bool required = true) {
    const llvm::json::Value *v = obj.get(key);
    if (!v || v->kind() == llvm::json::Value::Null) {
      if (required)
        fail(llvm::formatv("missing field \"{0}\"", key));
      return;
    }
    if (std::optional<double> d = v->getAsNumber()) {
      out = *d;
      return;
    }
    fail(llvm::formatv("field \"{0}\" must be a number", key));
  }

  void boolean(StringRef key, bool &out) {
    const llvm::json::Value *v = obj.get(key);
    if (!v || v->kind() == llvm::json::Value::Null)
      return;
    if (std::optional<bool> b = v->getAsBoolean()) {
      out = *b;
      return;
    }
    fail(llvm::formatv("field \"{0}\" must be true or false", key));
  }

  void check(bool ok, const llvm::Twine &what) {
    if (!ok)
      fail(what);
  }

  llvm::Error takeError() {
    if (problem.empty())
      return llvm::Error::success();
    return llvm::createStringError(llvm::inconvertibleErrorCode(), "%s: %s", path.str().c_str(),
                                   problem.c_str());
  }

private:
  void fail(const llvm::Twine &what) {
    if (problem.empty())
      problem = what.str();
  }
  const llvm::json::Object &obj;
  StringRef path;
  std::string problem;
};

} // namespace

Expected<MixtralConfig> MixtralConfig::parse(StringRef json, StringRef path) {
  Expected<llvm::json::Value> parsed = llvm::json::parse(json);
  if (!parsed)
    return llvm::createStringError(llvm::inconvertibleErrorCode(), "%s: not valid JSON: %s",
                                   path.str().c_str(),
                                   llvm::toString(parsed.takeError()).c_str());
  const llvm::json::Object *obj = parsed->getAsObject();
  if (!obj)
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "%s: the top level must be a JSON object", path.str().c_str());

  MixtralConfig c;
  FieldReader r(*obj, path);
  if (const llvm::json::Value *arch = obj->get("architectures")) {
    const llvm::json::Array *list = arch->getAsArray();
    bool mixtral = list && !list->empty() && (*list)[0].getAsString() == StringRef("MixtralForCausalLM");
    r.check(mixtral, "\"architectures\" must be [\"MixtralForCausalLM\"]");
  }
  r.integer("vocab_size", c.vocabSize);
  r.integer("hidden_size", c.hiddenSize);
  r.integer("intermediate_size", c.intermediateSize);
  r.integer("num_hidden_layers", c.numLayers);
  r.integer("num_attention_heads", c.numHeads);
  r.integer("num_key_value_heads", c.numKVHeads);
  r.integer("num_local_experts", c.numExperts);
  r.integer("num_experts_per_tok", c.expertsPerToken);
  r.number("rms_norm_eps", c.rmsNormEps);
  r.number("rope_theta", c.ropeTheta);
  r.integer("max_position_embeddings", c.maxPositionEmbeddings);
  int64_t window = 0;
  r.integer("sliding_window", window, /*required=*/false);
  if (window != 0)
    c.slidingWindow = window;
  r.boolean("tie_word_embeddings", c.tieWordEmbeddings);
  r.integer("bos_token_id", c.bosTokenId, /*required=*/false);
  r.integer("eos_token_id", c.eosTokenId, /*required=*/false);
  if (llvm::Error e = r.takeError())
    return std::move(e);

  auto positive = [&](StringRef name, int64_t v) {
    r.check(v > 0, llvm::formatv("\"{0}\" must be positive, but it is {1}", name, v));
  };
  positive("vocab_size", c.vocabSize);
  positive("hidden_size", c.hiddenSize);
  positive("intermediate_size", c.intermediateSize);
  positive("num_hidden_layers", c.numLayers);
  positive("num_attention_heads", c.numHeads);
  positive("num_key_value_heads", c.numKVHeads);
  positive("num_local_experts", c.numExperts);
  positive("num_experts_per_tok", c.expertsPerToken);
  positive("max_position_embeddings", c.maxPositionEmbeddings);
  if (llvm::Error e = r.takeError())
    return std::move(e);

  c.headDim = c.hiddenSize / c.numHeads;
  r.integer("head_dim", c.headDim, /*required=*/false);
  const llvm::json::Value *explicitHeadDim = obj->get("head_dim");
  bool headDimGiven = explicitHeadDim && explicitHeadDim->kind() != llvm::json::Value::Null;
  r.check(headDimGiven || c.hiddenSize % c.numHeads == 0,
          llvm::formatv("\"hidden_size\" ({0}) must be divisible by \"num_attention_heads\" ({1})",
                        c.hiddenSize, c.numHeads));
  r.check(c.headDim > 0 && c.headDim % 2 == 0,
          llvm::formatv("the head dimension must be positive and even for RoPE, but it is {0}",
                        c.headDim));
  r.check(c.numHeads % c.numKVHeads == 0,
          llvm::formatv("\"num_attention_heads\" ({0}) must be a multiple of "
                        "\"num_key_value_heads\" ({1})",
                        c.numHeads, c.numKVHeads));
  r.check(c.expertsPerToken <= c.numExperts,
          llvm::formatv("\"num_experts_per_tok\" ({0}) must not exceed \"num_local_experts\" ({1})",
                        c.expertsPerToken, c.numExperts));
  r.check(c.rmsNormEps > 0 && c.rmsNormEps < 1,
          llvm::formatv("\"rms_norm_eps\" must be in (0, 1), but it is {0}", c.rmsNormEps));
  r.check(c.ropeTheta > 0, "\"rope_theta\" must be positive");
  r.check(!c.slidingWindow || *c.slidingWindow > 0,
          "\"sliding_window\" must be positive or null");
  r.check(c.bosTokenId >= 0 && c.bosTokenId < c.vocabSize,
          "\"bos_token_id\" must be a valid token id");
  r.check(c.eosTokenId >= 0 && c.eosTokenId < c.vocabSize,
          "\"eos_token_id\" must be a valid token id");
  // Sizes whose byte counts would overflow 64-bit arithmetic are nonsense for this compiler.
  constexpr int64_t kLimit = int64_t(1) << 24;
  for (auto [name, v] : {std::pair<StringRef, int64_t>{"vocab_size", c.vocabSize},
                         {"hidden_size", c.hiddenSize},
                         {"intermediate_size", c.intermediateSize},
                         {"num_hidden_layers", c.numLayers},
                         {"num_local_experts", c.numExperts},
                         {"num_attention_heads", c.numHeads}})
    r.check(v <= kLimit, llvm::formatv("\"{0}\" ({1}) is implausibly large", name, v));
  if (llvm::Error e = r.takeError())
    return std::move(e);
  return c;
}

Expected<MixtralConfig> MixtralConfig::load(StringRef path) {
  llvm::ErrorOr<std::unique_ptr<llvm::MemoryBuffer>> buffer = llvm::MemoryBuffer::getFile(path);
  if (!buffer)
    return llvm::createStringError(buffer.getError(), "%s: cannot read: %s", path.str().c_str(),
                                   buffer.getError().message().c_str());
  return parse((*buffer)->getBuffer(), path);
}

llvm::json::Object MixtralConfig::toJSON(WeightType dtype) const {
  llvm::json::Object o{
      {"architectures", llvm::json::Array{"MixtralForCausalLM"}},
      {"model_type", "mixtral"},
      {"vocab_size", vocabSize},
      {"hidden_size", hiddenSize},
      {"intermediate_size", intermediateSize},
      {"num_hidden_layers", numLayers},
      {"num_attention_heads", numHeads},
      {"num_key_value_heads", numKVHeads},
      {"head_dim", headDim},
      {"num_local_experts", numExperts},
      {"num_experts_per_tok", expertsPerToken},
      {"rms_norm_eps", rmsNormEps},
      {"rope_theta", ropeTheta},
      {"max_position_embeddings", maxPositionEmbeddings},
      {"tie_word_embeddings", tieWordEmbeddings},
      {"hidden_act", "silu"},
      {"bos_token_id", bosTokenId},
      {"eos_token_id", eosTokenId},
      {"torch_dtype", dtype == WeightType::F32    ? "float32"
                      : dtype == WeightType::BF16 ? "bfloat16"
                                                  : "float16"},
  };
  o["sliding_window"] = slidingWindow ? llvm::json::Value(*slidingWindow) : llvm::json::Value(nullptr);
  return o;
}

int64_t MixtralConfig::totalParameters() const {
  int64_t attention = hiddenSize * qDim() * 2 + hiddenSize * kvDim() * 2;
  int64_t experts = numExperts * 3 * hiddenSize * intermediateSize;
  int64_t perLayer = attention + experts + numExperts * hiddenSize + 2 * hiddenSize;
  int64_t embeddings = vocabSize * hiddenSize * (tieWordEmbeddings ? 1 : 2);
  return numLayers * perLayer + embeddings + hiddenSize;
}

int64_t MixtralConfig::activeParameters() const {
  int64_t inactive = (numExperts - expertsPerToken) * 3 * hiddenSize * intermediateSize;
  // The embedding table is read one row per token, not streamed.
  return totalParameters() - numLayers * inactive - vocabSize * hiddenSize;
}
