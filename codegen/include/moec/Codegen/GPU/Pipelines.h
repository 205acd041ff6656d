//===- Pipelines.h - the nvptx pipeline -------------------------*- C++ -*-===//
//
// `moe-gpu-pipeline`: the moe forward graph -> host LLVM dialect that launches PTX kernels
// embedded as a gpu.binary. mixtral-compile --target nvptx and `moe-opt --moe-gpu-pipeline`
// run the same passes. Stages (each dumpable with moe-opt):
//
//   moe-middle-end                         shared with the CPU pipeline: quantize, decompose,
//                                          fuse expert GEMMs (moec/Passes/MiddleEnd.h)
//   moe-gpu-form-kernel-calls{attention-split}  fused moe ops -> destination-style
//                                          moe.kernel_call (outputs and scratch as tensor.empty)
//   canonicalize, cse
//   one-shot-bufferize{bufferize-function-boundaries, allow-return-allocs-from-loops,
//                      function-boundary-type-conversion=identity-layout-map}
//   canonicalize, buffer-loop-hoisting      (static temporaries out of the layer loop)
//   buffer-deallocation-pipeline            memref.dealloc of every temporary
//   moe-gpu-lower-kernel-calls{wgmma}      kernel calls on buffers -> gpu.launch_func of
//                                          @moec_kernels; static temporaries -> one arena
//                                          gpu.alloc per call, the others stream-ordered
//                                          gpu.alloc/dealloc (wgmma: chip sm_90a)
//   canonicalize, cse
//   moe-gpu-expand-kernel-memrefs          memref params -> base pointer + dynamic metadata
//   nvvm-attach-target{chip, O=3}
//   gpu.module(convert-scf-to-cf, convert-nvgpu-to-nvvm,
//              convert-gpu-to-nvvm{use-bare-ptr-memref-call-conv},
//              convert-nvvm-to-llvm (sm_90a: the wgmma ops' inline PTX),
//              reconcile-unrealized-casts)
//   expand-strided-metadata, lower-affine, convert-scf-to-cf     (host)
//   gpu-to-llvm{use-bare-pointers-for-host}  host -> LLVM + mgpu* runtime calls
//   reconcile-unrealized-casts
//   gpu-module-to-binary{format=isa, toolkit} NVVM -> LLVM NVPTX -> PTX, embedded
//
//===----------------------------------------------------------------------===//
#ifndef MOEC_CODEGEN_GPU_PIPELINES_H
#define MOEC_CODEGEN_GPU_PIPELINES_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/LogicalResult.h"
#include "llvm/Support/raw_ostream.h"

#include <string>

namespace mlir::moe::gpu {

struct GpuPipelineOptions {
  /// SM architecture: sm_80, sm_86, sm_89, sm_90, sm_90a, ...
  std::string chip = "sm_90";
  /// CUDA toolkit (libdevice); empty: $CUDA_HOME, else the toolkit found at configure time.
  std::string toolkit;
  /// Keys per split of the decode attention.
  int64_t attentionSplit = 256;
  /// Stop before serialisation (kernels stay NVVM IR in the module).
  bool stopBeforeBinary = false;
};

void buildGpuPipeline(OpPassManager &pm, const GpuPipelineOptions &options);

/// Dialects, LLVM IR translations and the NVVM target / offloading interfaces.
void registerGpuCodegenDialects(DialectRegistry &registry);

/// The GPU passes and `moe-gpu-pipeline` (for moe-opt).
void registerGpuCodegenPassesAndPipelines();

/// Writes the PTX of every gpu.binary object in the module (after the pipeline).
LogicalResult writePTX(ModuleOp module, llvm::raw_ostream &os, std::string &error);

/// The default toolkit path (configure time).
std::string defaultCudaToolkit();

} // namespace mlir::moe::gpu

#endif // MOEC_CODEGEN_GPU_PIPELINES_H
