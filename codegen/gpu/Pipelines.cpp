//===- Pipelines.cpp - moe-gpu-pipeline, PTX extraction --------------------===//
//
// The nvptx pipeline, built in C++ and registered as `moe-gpu-pipeline` so that
// `moe-opt --moe-gpu-pipeline` and `mixtral-compile --target nvptx` run the same passes.
// Stages are listed in moec/Codegen/GPU/Pipelines.h.
//
//===----------------------------------------------------------------------===//

#include "moec/Codegen/GPU/Pipelines.h"
#include "moec/Codegen/GPU/Passes.h"
#include "moec/Dialect/Moe/BufferizableOpInterfaceImpl.h"
#include "moec/Passes/MiddleEnd.h"

#include "mlir/Conversion/AffineToStandard/AffineToStandard.h"
#include "mlir/Conversion/GPUCommon/GPUCommonPass.h"
#include "mlir/Conversion/GPUToNVVM/GPUToNVVMPass.h"
#include "mlir/Conversion/NVGPUToNVVM/NVGPUToNVVM.h"
#include "mlir/Conversion/NVVMToLLVM/NVVMToLLVM.h"
#include "mlir/Conversion/ReconcileUnrealizedCasts/ReconcileUnrealizedCasts.h"
#include "mlir/Conversion/SCFToControlFlow/SCFToControlFlow.h"
#include "mlir/Dialect/Bufferization/Pipelines/Passes.h"
#include "mlir/Dialect/Bufferization/Transforms/Passes.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Dialect/LLVMIR/Transforms/Passes.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Target/LLVM/NVVM/Target.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Transforms/Passes.h"

#include <cstdlib>

using namespace mlir;

namespace mlir::moe::gpu {

std::string defaultCudaToolkit() {
  if (const char *home = std::getenv("CUDA_HOME"))
    return home;
  return MOEC_CUDA_TOOLKIT;
}

void buildGpuPipeline(OpPassManager &pm, const GpuPipelineOptions &options) {
  // The dialect passes the CPU pipeline runs too: the GPU lowering starts from the fused
  // routed ops (router, top_k_gating, dispatch, grouped_swiglu, grouped_matmul_combine).
  buildMoeMiddleEnd(pm);
  // Kernel boundaries in destination style, so that upstream bufferization places every
  // buffer a kernel writes (its results and its scratch).
  MoeGpuFormKernelCallsOptions form;
  form.attentionSplit = options.attentionSplit;
  pm.addPass(createMoeGpuFormKernelCalls(form));
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  // Tensors -> device buffers, as on the CPU path: entry points already take memrefs (device
  // pointers); temporaries are allocations that the launch lowering puts on the stream.
  addMoeBufferize(pm);
  pm.addPass(createCanonicalizerPass());
  // Static temporaries (all of decode's) once per call instead of once per layer.
  pm.nest<func::FuncOp>().addPass(bufferization::createBufferLoopHoistingPass());
  bufferization::buildBufferDeallocationPipeline(pm);
  MoeGpuLowerKernelCallsOptions lower;
  lower.wgmma = options.chip == "sm_90a"; // wgmma.mma_async exists on sm_90a only
  pm.addPass(createMoeGpuLowerKernelCalls(lower));
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  pm.addPass(createMoeGpuExpandKernelMemrefs());

  GpuNVVMAttachTargetOptions target;
  target.chip = options.chip;
  target.optLevel = 3;
  pm.addPass(createGpuNVVMAttachTarget(target));
  OpPassManager &kernels = pm.nest<::mlir::gpu::GPUModuleOp>();
  kernels.addPass(createSCFToControlFlowPass());
  kernels.addPass(createConvertNVGPUToNVVMPass());
  // Kernel parameters are bare pointers and indices (moe-gpu-expand-kernel-memrefs), as the
  // host's launches pass them.
  ConvertGpuOpsToNVVMOpsOptions nvvm;
  nvvm.useBarePtrCallConv = true;
  kernels.addPass(createConvertGpuOpsToNVVMOps(nvvm));
  // The wgmma ops are inline PTX (BasicPtxBuilderOpInterface), lowered by convert-nvvm-to-llvm;
  // other chips keep the pipeline (and their PTX) as it was.
  if (lower.wgmma)
    kernels.addPass(createConvertNVVMToLLVMPass());
  kernels.addPass(createReconcileUnrealizedCastsPass());

  pm.addPass(memref::createExpandStridedMetadataPass());
  pm.addPass(createLowerAffinePass());
  pm.addPass(createSCFToControlFlowPass());
  GpuToLLVMConversionPassOptions toLLVM;
  toLLVM.hostBarePtrCallConv = true;
  pm.addPass(createGpuToLLVMConversionPass(toLLVM));
  pm.addPass(createReconcileUnrealizedCastsPass());
  if (options.stopBeforeBinary)
    return;
  GpuModuleToBinaryPassOptions binary;
  binary.compilationTarget = "isa"; // PTX, JIT-compiled by the driver for the GPU present
  binary.toolkitPath = options.toolkit.empty() ? defaultCudaToolkit() : options.toolkit;
  pm.addPass(createGpuModuleToBinaryPass(binary));
}

void registerGpuCodegenDialects(DialectRegistry &registry) {
  registerAllDialects(registry);
  registerAllExtensions(registry);
  registerAllToLLVMIRTranslations(registry);
  NVVM::registerNVVMTargetInterfaceExternalModels(registry);
  moe::registerBufferizableOpInterfaceExternalModels(registry);
}

namespace {
struct PipelineCLOptions : public PassPipelineOptions<PipelineCLOptions> {
  Option<std::string> chip{*this, "chip", llvm::cl::desc("SM architecture (sm_80, sm_90, ...)"),
                           llvm::cl::init("sm_90")};
  Option<std::string> toolkit{*this, "toolkit",
                              llvm::cl::desc("CUDA toolkit path (libdevice)"),
                              llvm::cl::init("")};
  Option<int64_t> attentionSplit{*this, "attention-split",
                                 llvm::cl::desc("keys per split of the decode attention"),
                                 llvm::cl::init(256)};
  Option<bool> stopBeforeBinary{*this, "stop-before-binary",
                                llvm::cl::desc("keep the kernels as NVVM IR"),
                                llvm::cl::init(false)};
};
} // namespace

void registerGpuCodegenPassesAndPipelines() {
  registerMoeGpuCodegenPasses();
  PassPipelineRegistration<PipelineCLOptions>(
      "moe-gpu-pipeline",
      "moe forward graph -> host LLVM dialect launching embedded PTX kernels (nvptx target)",
      [](OpPassManager &pm, const PipelineCLOptions &cl) {
        GpuPipelineOptions options;
        options.chip = cl.chip;
        options.toolkit = cl.toolkit;
        options.attentionSplit = cl.attentionSplit;
        options.stopBeforeBinary = cl.stopBeforeBinary;
        buildGpuPipeline(pm, options);
      });
}

LogicalResult writePTX(ModuleOp module, llvm::raw_ostream &os, std::string &error) {
  bool any = false;
  for (auto binary : module.getOps<::mlir::gpu::BinaryOp>()) {
    for (Attribute a : binary.getObjects()) {
      auto object = cast<::mlir::gpu::ObjectAttr>(a);
      os << "// gpu.binary @" << binary.getSymName() << " target " << object.getTarget() << "\n";
      os << object.getObject().getValue() << "\n";
      any = true;
    }
  }
  if (!any) {
    error = "the module holds no gpu.binary (did the nvptx pipeline run?)";
    return failure();
  }
  return success();
}

} // namespace mlir::moe::gpu
