//===- moe-gpu-lower-kernel-calls.cpp - kernel calls on buffers -> GPU launches ----===//
//
// Preconditions: bufferized entry functions, as moe-gpu-pipeline has them after
// moe-gpu-form-kernel-calls and upstream one-shot-bufferize, buffer-loop-hoisting and the
// buffer deallocation pipeline: memref-typed `moe.kernel_call`s, memref.alloc / dealloc of
// the temporaries, memref.copy (the KV cache update, the logits out), linalg.add on memrefs
// (the residuals), views and reshapes of the arenas, scf.for, scalar arithmetic. A tensor
// left anywhere is refused.
//
// Every kernel call becomes launches of the kernel library (Kernels.cpp), by one rule per
// kernel name (LaunchBuilder.h; the rules in launches/); quantized weights (data + scales)
// launch the kernels' variant of their format, built only for the formats the module uses.
// Allocations become stream-ordered gpu.alloc / gpu.dealloc, copies and adds the copy and add
// kernels. Launches, allocations and frees all depend on one async token created at function
// entry, so they run in program order on one stream; `gpu.wait` on the last one's token before
// each return makes the call synchronous (and, lowered, synchronises and destroys the stream).
//
// Why not upstream `gpu-async-region` for the tokens: in MLIR 22 it ends every block that
// holds GPU ops with a host `gpu.wait` and starts a new token chain (`gpu.wait async`, a new
// stream once lowered) in each iteration of an scf.for; for the layer loop that is a host
// synchronisation and a stream per layer per token, where one stream per call suffices.
//
// Afterwards: no moe op, no memref.alloc / dealloc / copy, no linalg op; host code is
// func/scf/arith/memref views/gpu.
//
//===----------------------------------------------------------------------===//

#include "Kernels.h"
#include "LaunchBuilder.h"
#include "moec/Codegen/GPU/Passes.h"
#include "moec/Dialect/Moe/MoeOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"

#define DEBUG_TYPE "moe-gpu-lower-kernel-calls"

namespace mlir::moe::gpu {
#define GEN_PASS_DEF_MOEGPULOWERKERNELCALLS
#include "moec/Codegen/GPU/Passes.h.inc"
} // namespace mlir::moe::gpu

using namespace mlir;
namespace mgpu = mlir::moe::gpu;

namespace {

/// The kernel library's specialisation for `module`: its float weights' storage type (one for
/// all, as the library has one float variant of each kernel), the quantized formats (each
/// its own GEMV/GEMM variants) and the attention geometry. `found` says whether the module
/// holds any kernel call.
LogicalResult specialise(ModuleOp module, mgpu::KernelConfig &config, bool &found) {
  found = false;
  auto weight = [&](Operation *op, Value w, moe::QuantAttr quant = {}) {
    if (quant) {
      if (!llvm::is_contained(config.quant, quant))
        config.quant.push_back(quant);
      return WalkResult::advance();
    }
    Type t = cast<ShapedType>(w.getType()).getElementType();
    if (config.weightType && config.weightType != t) {
      op->emitOpError("has ") << t << " weights where an earlier call has " << config.weightType
                              << " ones; the GPU kernel library holds one weight type per model.";
      return WalkResult::interrupt();
    }
    config.weightType = t;
    return WalkResult::advance();
  };
  auto dim = [](Value v, unsigned i) { return cast<ShapedType>(v.getType()).getDimSize(i); };
  WalkResult walk = module.walk([&](moe::KernelCallOp c) {
    found = true;
    StringRef k = c.getKernel();
    OperandRange in = c.getInputs();
    if (k == "embedding")
      return weight(c, in[0]);
    if (k == "router" || k == "rms_norm") // never quantized
      return weight(c, in[1]);
    if (k == "linear" || k == "grouped_matmul_combine")
      return weight(c, in[1], mgpu::quantParam(c));
    if (k == "grouped_swiglu")
      return weight(c, in[3], mgpu::quantParam(c));
    if (k == "attention") { // q [T, H, HD], caches [S, KVH, HD]
      config.headDim = dim(in[0], 2);
      config.groupSize = dim(in[0], 1) / dim(in[1], 1);
    }
    if (k == "paged_attention") { // pools: [n_blocks, B, KVH, HD]
      config.headDim = dim(in[0], 2);
      config.groupSize = dim(in[0], 1) / dim(in[1], 2);
    }
    return WalkResult::advance();
  });
  // A module of routing kernels only (no weights of its own) gets the f32 variants.
  if (found && !config.weightType)
    config.weightType = Float32Type::get(module.getContext());
  return failure(walk.wasInterrupted());
}

struct MoeGpuLowerKernelCalls
    : mgpu::impl::MoeGpuLowerKernelCallsBase<MoeGpuLowerKernelCalls> {
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
      return; // no kernel call: nothing to lower
    OpBuilder top(module.getBodyRegion());
    top.setInsertionPointToEnd(module.getBody());
    auto kernels = mgpu::buildKernelLibrary(top, module.getLoc(), config);
    if (!kernels)
      return signalPassFailure();
    module->setAttr(::mlir::gpu::GPUDialect::getContainerModuleAttrName(),
                    UnitAttr::get(&getContext()));

    mgpu::LaunchRules rules;
    mgpu::populateMemoryLaunchRules(rules);
    mgpu::populateDenseLaunchRules(rules);
    mgpu::populateRoutingLaunchRules(rules);
    mgpu::populateExpertLaunchRules(rules);
    mgpu::populateStepLaunchRules(rules);
    for (auto f : llvm::to_vector(module.getOps<func::FuncOp>())) {
      if (f.isDeclaration())
        continue;
      mgpu::LaunchBuilder builder(kernels, rules);
      if (failed(builder.lowerFunc(f)))
        return signalPassFailure();
    }
  }
};

} // namespace
