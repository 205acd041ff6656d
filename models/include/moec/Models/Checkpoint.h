//===- Checkpoint.h - what the compiler reads of a checkpoint ---*- C++ -*-===//
//
// The compiler only needs a checkpoint's config and its weight storage type; the runtime
// checks every tensor when it loads them. The built-in tiny model is written here too: a
// Hugging Face-layout folder with deterministic random weights.
//
//===----------------------------------------------------------------------===//
#ifndef MOEC_MODELS_CHECKPOINT_H
#define MOEC_MODELS_CHECKPOINT_H

#include "moec/Models/MixtralConfig.h"

#include <string>
#include <utility>
#include <vector>

namespace moec {

/// Storage type of `model.embed_tokens.weight`, read from the safetensors header of the file
/// that holds it (via model.safetensors.index.json when sharded). All weights must share it;
/// the runtime checks that tensor by tensor.
llvm::Expected<WeightType> detectWeightType(llvm::StringRef modelDir);

/// What a checkpoint folder holds on disk, from its safetensors headers only.
struct CheckpointSummary {
  std::vector<std::string> files;                 // shards, in index order
  int64_t tensorCount = 0;
  std::vector<std::pair<std::string, int64_t>> bytesByDtype; // safetensors dtype -> bytes
};
llvm::Expected<CheckpointSummary> summarizeCheckpoint(llvm::StringRef modelDir);

/// The built-in model's shape: 2 layers, hidden 256, 8 experts top-2, 8/4 heads, the real
/// 32000-token vocabulary.
MixtralConfig tinyMixtralConfig();

/// Writes config.json and model.safetensors (weights ~ N(0, 1/fan_in), norms ~ 1) into `dir`.
llvm::Error writeRandomCheckpoint(llvm::StringRef dir, const MixtralConfig &config,
                                  WeightType dtype, uint64_t seed);

} // namespace moec

#endif // MOEC_MODELS_CHECKPOINT_H
