//===- Checkpoint.h - what the compiler reads of a checkpoint ---*- C++ -*-===//
//
// The compiler reads every safetensors header of a checkpoint (never the weights, except to
// compare a tied lm_head) through the shared checkpoint library, the same reader the runtime
// uses, and checks that the model it will build is the model the checkpoint describes: every
// tensor it needs is there with its shape and dtype, and every tensor there is one it reads.
// The built-in tiny model is written here too: a Hugging Face-layout folder with deterministic
// random weights.
//
//===----------------------------------------------------------------------===//
#ifndef MOEC_MODELS_CHECKPOINT_H
#define MOEC_MODELS_CHECKPOINT_H

#include "moec/Models/Mixtral.h"
#include "moec/Models/MixtralConfig.h"
#include "moec/checkpoint/safetensors.h"

#include <string>
#include <utility>
#include <vector>

namespace moec {

/// All safetensors headers of the checkpoint in `modelDir` (sharded or not), cross-checked.
llvm::Expected<checkpoint::CheckpointHeaders> readCheckpointHeaders(llvm::StringRef modelDir);

/// Storage type of `model.embed_tokens.weight` (F32, BF16 or F16). All weights must share it.
llvm::Expected<WeightType> detectWeightType(const checkpoint::CheckpointHeaders &headers);

/// The checkpoint matches the model `config` describes, stored as `format`: each tensor the
/// model reads is present with its shape and dtype (`format.dtype`, or F8_E4M3 with its
/// weight_scale for the projections of an FP8 checkpoint, `format.quant` == F8E4M3); a tensor
/// the model does not read (a bias, an extra layer, a stray name) is refused unless
/// `allowUnused` (an FP8 weight's input_scale is read and ignored: activations stay f32);
/// with tie_word_embeddings an lm_head.weight is accepted only when it is byte-identical to
/// the embedding.
llvm::Error checkCheckpointMatchesConfig(const checkpoint::CheckpointHeaders &headers,
                                         const MixtralConfig &config, WeightFormat format,
                                         bool allowUnused);

/// What a checkpoint folder holds on disk, from its safetensors headers only.
struct CheckpointSummary {
  std::vector<std::string> files;                 // shards, sorted
  int64_t tensorCount = 0;
  std::vector<std::pair<std::string, int64_t>> bytesByDtype; // safetensors dtype -> bytes
};
CheckpointSummary summarizeCheckpoint(const checkpoint::CheckpointHeaders &headers);

/// The built-in model's shape: 2 layers, hidden 256, 8 experts top-2, 8/4 heads, the real
/// 32000-token vocabulary.
MixtralConfig tinyMixtralConfig();

/// Writes config.json and model.safetensors (weights ~ N(0, 1/fan_in), norms ~ 1) into `dir`.
llvm::Error writeRandomCheckpoint(llvm::StringRef dir, const MixtralConfig &config,
                                  WeightType dtype, uint64_t seed);

} // namespace moec

#endif // MOEC_MODELS_CHECKPOINT_H
