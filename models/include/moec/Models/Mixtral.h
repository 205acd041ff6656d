//===- Mixtral.h - the Mixtral forward pass as moe-dialect IR ---*- C++ -*-===//
//
// Builds the module mixtral-compile lowers: the weight-arena layout (which checkpoint tensor
// lives at which byte offset), the manifest the runtime reads, and two entry functions with
// the signatures of runtime/include/moec/abi.h:
//   moec_prefill: T tokens (dynamic) at positions [pos, pos+T)
//   moec_decode:  one token (static shapes), the explicit decode path
// Both walk the layers in an scf.for whose body is one decoder layer; the MoE FFN is a single
// moe.sparse_block that the pass pipeline decomposes, fuses and lowers.
//
//===----------------------------------------------------------------------===//
#ifndef MOEC_MODELS_MIXTRAL_H
#define MOEC_MODELS_MIXTRAL_H

#include "moec/Models/MixtralConfig.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

#include <string>
#include <vector>

namespace moec {

/// One tensor of the weight arena.
struct ArenaTensor {
  std::string name;                 // e.g. "layers.3.moe.w1"
  std::vector<int64_t> shape;       // row-major
  int64_t offset = 0;               // bytes from the arena start, MOEC_WEIGHT_ALIGNMENT-aligned
  int64_t bytes = 0;
  std::vector<std::string> sources; // checkpoint tensors
  bool stacked = false;             // sources are the slices of axis 0 (the experts)
};

/// Where every weight lives. Layers share one internal layout, `layerStride` bytes apart, so
/// the generated layer loop computes a layer's offsets as base + l * stride.
struct WeightLayout {
  WeightType dtype = WeightType::F32;
  std::vector<ArenaTensor> tensors; // global tensors, then layer 0, 1, ...
  int64_t totalBytes = 0;
  int64_t layerBase = 0;   // offset of layer 0's first tensor
  int64_t layerStride = 0; // bytes per layer

  static WeightLayout build(const MixtralConfig &config, WeightType dtype);
  /// Offset of a global tensor, or of a tensor of layer 0 ("layers.0.<suffix>").
  int64_t offsetOf(llvm::StringRef name) const;
};

struct BuildOptions {
  WeightType dtype = WeightType::F32; // storage type of the weights
  int64_t maxSeqLen = 4096;           // S: KV-cache positions
  std::string modelDir;               // baked into the manifest as the default --model
  std::string target = "cpu";
};

/// Positions per block of moec_step's paged KV pool (the manifest's step.kv_block_size).
constexpr int64_t kKvBlockSize = 16;

/// Whether the module has moec_step: the CPU target only (the GPU wing has no paged kernels).
bool emitsStep(const BuildOptions &options);

/// KV arena bytes: f32 [L][2][S][KVH][HD].
int64_t kvCacheBytes(const MixtralConfig &config, int64_t maxSeqLen);

/// The manifest JSON of abi.h for this model.
std::string buildManifest(const MixtralConfig &config, const WeightLayout &layout,
                          const BuildOptions &options);

/// The whole model as a module in the moe dialect (plus func, scf, tensor, memref,
/// bufferization, linalg, arith and an llvm.mlir.global for the manifest).
mlir::OwningOpRef<mlir::ModuleOp> buildMixtralModule(mlir::MLIRContext &context,
                                                     const MixtralConfig &config,
                                                     const BuildOptions &options);

/// Registers every dialect the built module uses.
void registerModelDialects(mlir::DialectRegistry &registry);

} // namespace moec

#endif // MOEC_MODELS_MIXTRAL_H
