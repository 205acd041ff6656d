//===- moe-gpu-lower-to-launches.cpp - moe graph -> GPU kernel launches ----===//
//
// Preconditions: the module mixtral-compile builds after the shared middle end
// (moe-middle-end; see Passes.td): entry functions whose tensors come from
// bufferization.to_tensor of memref.views of device arenas, moe ops on tensors (the MoE block
// as the fused routed ops, which are exactly the kernel boundaries), tensor reshapes and
// slices, tensor.insert_slice into the KV cache, linalg.add residuals over tensor.empty,
// bufferization.materialize_in_destination, and one scf.for with tensor iter_args.
// Everything else must be scalar (index / integer arithmetic).
//
// This is a bufferisation specialised to that graph, done in one walk: every tensor value is
// mapped to a device buffer (a view, a subview, a reshape or a fresh gpu.alloc), and every op
// that computes becomes a gpu.launch_func of the kernel library (Kernels.cpp), by one rule
// per op (LaunchBuilder.h; the rules in launches/). Quantized weights (data + scales) launch
// the kernels' variant of their format, built only for the formats the module uses. Launches, allocations and frees all
// depend on one async token created at function entry, so they run in program order on one
// stream; `gpu.wait` on the last one's token before each return makes the call synchronous
// (and, lowered, synchronises and destroys the stream).
//
// Why not upstream `gpu-async-region` for the tokens: in MLIR 22 it ends every block that
// holds GPU ops with a host `gpu.wait` and starts a new token chain (`gpu.wait async`, a new
// stream once lowered) in each iteration of an scf.for; for the layer loop that is a host
// synchronisation and a stream per layer per token, where one stream per call suffices.
//
// Afterwards: no moe op, no tensor; host code is func/scf/arith/memref/gpu.
//
//===----------------------------------------------------------------------===//

#include "Kernels.h"
#include "LaunchBuilder.h"
#include "moec/Codegen/GPU/Passes.h"
#include "moec/Dialect/Moe/MoeOps.h"

#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"

#define DEBUG_TYPE "moe-gpu-lower-to-launches"

namespace mlir::moe::gpu {
#define GEN_PASS_DEF_MOEGPULOWERTOLAUNCHES
#include "moec/Codegen/GPU/Passes.h.inc"
} // namespace mlir::moe::gpu

using namespace mlir;
namespace mgpu = mlir::moe::gpu;

namespace {

/// The kernel library's specialisation for `module`: its float weights' storage type (one for
/// all, as the library has one float variant of each kernel), the quantized formats (each
/// its own GEMV/GEMM variants) and the attention geometry. `found` says whether the module
/// holds any moe op.
LogicalResult specialise(ModuleOp module, mgpu::KernelConfig &config, bool &found) {
  Operation *first = nullptr;
  auto weight = [&](Operation *op, Value w, moe::QuantAttr quant = {}) {
    if (quant) {
      if (!llvm::is_contained(config.quant, quant))
        config.quant.push_back(quant);
      return WalkResult::advance();
    }
    Type t = cast<ShapedType>(w.getType()).getElementType();
    if (config.weightType && config.weightType != t) {
      op->emitOpError("has ") << t << " weights where an earlier op has " << config.weightType
                              << " ones; the GPU kernel library holds one weight type per model.";
      return WalkResult::interrupt();
    }
    config.weightType = t;
    return WalkResult::advance();
  };
  WalkResult walk = module.walk([&](Operation *op) {
    if (op->getDialect() && op->getDialect()->getNamespace() == "moe" && !first)
      first = op;
    if (auto e = dyn_cast<moe::EmbeddingOp>(op))
      return weight(op, e.getTable());
    if (isa<moe::RouterOp, moe::RMSNormOp>(op)) // never quantized
      return weight(op, op->getOperand(1));
    if (auto l = dyn_cast<moe::LinearOp>(op))
      return weight(op, l.getWeight(), l.getQuantAttr());
    if (auto s = dyn_cast<moe::GroupedSwiGLUOp>(op))
      return weight(op, s.getW1(), s.getQuantAttr());
    if (auto c = dyn_cast<moe::GroupedMatmulCombineOp>(op))
      return weight(op, c.getW2(), c.getQuantAttr());
    if (auto a = dyn_cast<moe::AttentionOp>(op)) {
      auto q = cast<RankedTensorType>(a.getQuery().getType());
      auto k = cast<RankedTensorType>(a.getKeyCache().getType());
      config.headDim = q.getDimSize(2);
      config.groupSize = q.getDimSize(1) / k.getDimSize(1);
    }
    if (auto a = dyn_cast<moe::PagedAttentionOp>(op)) { // pools: [n_blocks, B, KVH, HD]
      auto q = cast<RankedTensorType>(a.getQuery().getType());
      auto pool = cast<RankedTensorType>(a.getKeyPool().getType());
      config.headDim = q.getDimSize(2);
      config.groupSize = q.getDimSize(1) / pool.getDimSize(2);
    }
    return WalkResult::advance();
  });
  found = first != nullptr;
  // A module of routing ops only (no weights of its own) gets the f32 variants.
  if (found && !config.weightType)
    config.weightType = Float32Type::get(module.getContext());
  return failure(walk.wasInterrupted());
}

struct MoeGpuLowerToLaunches
    : mgpu::impl::MoeGpuLowerToLaunchesBase<MoeGpuLowerToLaunches> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    // Weights the builder marked for quantization are still floats in the IR until
    // moe-quantize-weights rewrites them: refuse rather than read their bytes as floats.
    // (Ops that read data + scales with a `quant` attribute get the quantized kernels.)
    WalkResult quantized = module.walk([&](memref::ViewOp view) {
      if (view->hasAttr("moe.quant")) {
        view->emitError("is a weight marked for quantization (moe.quant); run "
                        "moe-quantize-weights (the middle end) before the GPU lowering.");
        return WalkResult::interrupt();
      }
      return WalkResult::advance();
    });
    if (quantized.wasInterrupted())
      return signalPassFailure();
    // Specialise the library for this model.
    mgpu::KernelConfig config;
    config.wgmma = wgmma;
    bool found = false;
    if (failed(specialise(module, config, found)))
      return signalPassFailure();
    if (!found)
      return; // no moe op: nothing to lower
    OpBuilder top(module.getBodyRegion());
    top.setInsertionPointToEnd(module.getBody());
    auto kernels = mgpu::buildKernelLibrary(top, module.getLoc(), config);
    if (!kernels)
      return signalPassFailure();
    module->setAttr(::mlir::gpu::GPUDialect::getContainerModuleAttrName(),
                    UnitAttr::get(&getContext()));

    mgpu::LaunchRules rules;
    mgpu::populateBufferLaunchRules(rules);
    mgpu::populateDenseLaunchRules(rules);
    mgpu::populateRoutingLaunchRules(rules);
    mgpu::populateExpertLaunchRules(rules);
    mgpu::populateStepLaunchRules(rules);
    for (auto f : llvm::to_vector(module.getOps<func::FuncOp>())) {
      if (f.isDeclaration())
        continue;
      mgpu::LaunchBuilder builder(kernels, rules, attentionSplit);
      if (failed(builder.lowerFunc(f)))
        return signalPassFailure();
    }
  }
};

} // namespace
