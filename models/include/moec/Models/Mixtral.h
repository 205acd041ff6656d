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
#include "moec/checkpoint/quant.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

#include <optional>
#include <string>
#include <vector>

namespace moec {

// How a weight is stored (QuantFormat, kQuantGroupSize): moec/checkpoint/quant.h, shared with
// the runtime.

/// One tensor of the weight arena.
struct ArenaTensor {
  std::string name;                 // e.g. "layers.3.moe.w1"
  std::vector<int64_t> shape;       // logical elements, row-major [..., N, K]
  int64_t offset = 0;               // bytes from the arena start, MOEC_WEIGHT_ALIGNMENT-aligned
  int64_t bytes = 0;                // of the data array
  std::vector<std::string> sources; // checkpoint tensors
  bool stacked = false;             // sources are the slices of axis 0 (the experts)
  WeightType dtype = WeightType::F32; // storage element of the data: the weight dtype, I8 (q8),
                                      // U8 (q4) or F8E4M3
  QuantFormat quant = QuantFormat::None;
  int64_t groupSize = 0;              // elements of K per scale: 32, or K for F8E4M3
  WeightType scaleDtype = WeightType::F16; // F16 (q8, q4) or F32 (f8e4m3)
  int64_t scaleOffset = 0;            // bytes from the arena start, own aligned slot
  int64_t scaleBytes = 0;
  std::vector<std::string> scaleSources; // fp8 checkpoints: their weight_scale tensors
  int64_t panelCols = 0, panelLanes = 0; // > 0: stored in panel order (#moe.panels)

  bool quantized() const { return quant != QuantFormat::None; }
  /// Shape of the data array: the logical shape, with K/2 bytes per row for q4.
  std::vector<int64_t> dataShape() const;
  /// Shape of the scale array: [..., N, K / groupSize]. Only for quantized tensors.
  std::vector<int64_t> scaleShape() const;
};

/// What the weights are stored as: `dtype` for every tensor that is not quantized (the
/// checkpoint's float type), and `quant` for the expert w1/w2/w3 and attention wq/wk/wv/wo
/// matrices (F8E4M3 when the checkpoint holds FP8 weights).
struct WeightFormat {
  WeightType dtype = WeightType::F32;
  QuantFormat quant = QuantFormat::None;
  // > 0: the expert weights that stay float are stored in the packed GEMM's panel order
  // (#moe.panels<cols, lanes>): in a packed weights file, or permuted at load.
  int64_t panelCols = 0, panelLanes = 0;
  // q8 experts in panel order too (codes and scales; a CPU target whose q8 kernels take f32
  // activations): only in a packed weights file, as quantized weights always are.
  bool q8Panels = false;
};

/// Where every weight lives. Layers share one internal layout, `layerStride` bytes apart, so
/// the generated layer loop computes a layer's offsets as base + l * stride.
struct WeightLayout {
  WeightType dtype = WeightType::F32; // of the tensors that are not quantized
  QuantFormat quant = QuantFormat::None;
  std::vector<ArenaTensor> tensors; // global tensors, then layer 0, 1, ...
  /// Tensors that `quant` would apply to but that stay in `dtype` because their K is not a
  /// multiple of the group size.
  std::vector<std::string> keptUnquantized;
  int64_t totalBytes = 0;
  int64_t layerBase = 0;   // offset of layer 0's first tensor
  int64_t layerStride = 0; // bytes per layer

  static WeightLayout build(const MixtralConfig &config, WeightFormat format);
  static WeightLayout build(const MixtralConfig &config, WeightType dtype) {
    return build(config, WeightFormat{dtype, QuantFormat::None});
  }
  /// A global tensor, or a tensor of layer 0 ("layers.0.<suffix>").
  const ArenaTensor &tensor(llvm::StringRef name) const;
  /// Offset of a global tensor, or of a tensor of layer 0 ("layers.0.<suffix>").
  int64_t offsetOf(llvm::StringRef name) const { return tensor(name).offset; }
};

struct BuildOptions {
  WeightType dtype = WeightType::F32; // storage type of the weights that are not quantized
  QuantFormat quantize = QuantFormat::None; // q8 | q4 from --quantize; f8e4m3 for FP8 checkpoints
  int64_t maxSeqLen = 4096;           // S: KV-cache positions
  std::string modelDir;               // baked into the manifest as the default --model
  std::string target = "cpu";
  std::string weightsFile;        // the packed weights file's name beside OUT ("": none, the
                                  // binary copies the weights from the checkpoint)
  std::string weightsFingerprint; // its fingerprint (moec/checkpoint/weights_file.h)
  int64_t panelCols = 0, panelLanes = 0; // WeightFormat's (a CPU target)
  bool q8Panels = false;                  // WeightFormat's

  WeightFormat format() const {
    return WeightFormat{dtype, quantize, panelCols, panelLanes, q8Panels};
  }
};

/// Positions per block of moec_step's paged KV pool (the manifest's step.kv_block_size).
constexpr int64_t kKvBlockSize = 16;

/// Whether the module has moec_step: both targets do (the nvptx one since the GPU wing's paged
/// kernels, codegen/gpu/launches/Step.cpp); kept as the one place a target could opt out.
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
