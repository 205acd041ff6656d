//===- MixtralConfig.h - a Mixtral config.json, validated -------*- C++ -*-===//
//
// The model's hyper-parameters as Hugging Face's config.json states them, checked once so the
// builder can trust every field. Parsing never aborts: a malformed file is an llvm::Error with
// one line naming the file and the field.
//
//===----------------------------------------------------------------------===//
#ifndef MOEC_MODELS_MIXTRALCONFIG_H
#define MOEC_MODELS_MIXTRALCONFIG_H

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/JSON.h"

#include <cstdint>
#include <optional>
#include <string>

namespace moec {

/// Storage type of the weights in the checkpoint (and in the runtime's weight arena).
enum class WeightType { F32, BF16, F16 };
llvm::StringRef weightTypeName(WeightType type); ///< "f32", "bf16", "f16" (the ABI's names)
int64_t weightTypeBytes(WeightType type);
/// Parses a safetensors dtype ("F32", "BF16", "F16").
std::optional<WeightType> parseSafetensorsDtype(llvm::StringRef dtype);

struct MixtralConfig {
  int64_t vocabSize = 0;             // V
  int64_t hiddenSize = 0;            // D
  int64_t intermediateSize = 0;      // F, per expert
  int64_t numLayers = 0;             // L
  int64_t numHeads = 0;              // H
  int64_t numKVHeads = 0;            // KVH
  int64_t headDim = 0;               // HD (config "head_dim", else D / H)
  int64_t numExperts = 0;            // E
  int64_t expertsPerToken = 0;       // k
  double rmsNormEps = 1e-5;
  double ropeTheta = 1e6;
  int64_t maxPositionEmbeddings = 0;
  std::optional<int64_t> slidingWindow; // unset: full causal attention
  bool tieWordEmbeddings = false;
  int64_t bosTokenId = 1;
  int64_t eosTokenId = 2;

  int64_t qDim() const { return numHeads * headDim; }    // H * HD
  int64_t kvDim() const { return numKVHeads * headDim; } // KVH * HD

  /// Parsed from a config.json text; `path` only names the file in messages.
  static llvm::Expected<MixtralConfig> parse(llvm::StringRef json, llvm::StringRef path);
  static llvm::Expected<MixtralConfig> load(llvm::StringRef path);
  /// The config.json a Hugging Face checkpoint of this model would carry.
  llvm::json::Object toJSON(WeightType dtype) const;
  /// Parameter counts: all weights, and those one token reads (shared + k experts).
  int64_t totalParameters() const;
  int64_t activeParameters() const;
};

} // namespace moec

#endif // MOEC_MODELS_MIXTRALCONFIG_H
