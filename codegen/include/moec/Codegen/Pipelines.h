//===- Pipelines.h - moe code generation pipelines --------------*- C++ -*-===//
//
// The CPU pipeline (moe dialect on tensors -> LLVM dialect), its registration as
// `moe-cpu-pipeline`, and the last steps (LLVM IR text, x86-64 object file). mixtral-compile
// and `moe-opt --moe-cpu-pipeline` run exactly the same pass list.
//
//===----------------------------------------------------------------------===//
#ifndef MOEC_CODEGEN_PIPELINES_H
#define MOEC_CODEGEN_PIPELINES_H

#include "moec/Codegen/Passes.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/LogicalResult.h"
#include "llvm/Support/raw_ostream.h"

#include <string>

namespace mlir::moe {

/// Options of `moe-cpu-pipeline`.
struct CpuPipelineOptions {
  /// Target CPU: "host" (this machine's CPU and features) or an LLVM CPU name.
  std::string cpu = "host";
  /// f32 lanes per vector in the matmul kernels; 0 picks 16 with AVX-512, 8 otherwise.
  int64_t vectorWidth = 0;
  /// Register tile of the matmul kernels (rows x columns of outputs); 0 picks 4 x 6 for
  /// 16 lanes (AVX-512: 24 accumulators of 32 registers) and 3 x 4 for 8 lanes (AVX2).
  int64_t tileRows = 0;
  int64_t tileCols = 0;
  /// Output columns per parallel task of the matmul kernels.
  int64_t blockCols = 32;
  /// Float matmuls of at least this many rows (prefill, batched steps) take the packed GEMM
  /// of moe-cpu-vectorize-matmul (0 or less: never); fewer rows keep the dot-product kernel,
  /// which is bound by the weight bytes of decode. Both round every output alike.
  int64_t gemmMinRows = 8;
  /// The GEMM's microkernel (rows x columns); 0 picks 6 x 16 on AVX2, 12 x 32 on AVX-512.
  int64_t gemmRows = 0;
  int64_t gemmCols = 0;
  /// Gate/up GEMMs over weights in panel order with SwiGLU in their epilogue
  /// (moe-cpu-vectorize-matmul's gemm-epilogues); false (the default, until it is faster:
  /// 0.87-0.96x the unfused GEMMs at 128 rows, level at 32): two GEMMs and the SwiGLU pass.
  bool gemmEpilogues = false;
  /// bf16 weights in panel order widened once per panel and call into an f32 scratch panel
  /// for the GEMM (moe-cpu-vectorize-matmul's gemm-widen-panels), or in registers at every
  /// step. Auto: widened on Zen 1 (znver1), where gemm.sh measured the GEMM 1.18x faster at
  /// 128 rows and 1.08x at 32; in place elsewhere (Zen 3 ran it at 90% of the FMA peak).
  PanelWidening gemmWidenPanels = PanelWidening::Auto;
  /// Emit OpenMP parallel loops (otherwise everything runs on the calling thread).
  bool openmp = true;
  /// Which quantized weights meet int8 activations on integer dot products, where the CPU
  /// has AVX2 (moe-cpu-vectorize-quant-matmul's int8-activations; vpdpbusd where the CPU has
  /// AVX-VNNI or AVX512-VNNI): every row, row-invariant. q4 only by default: for q4 the
  /// rounding costs nothing measurable and its kernels run 1.4-2x faster, for q8 it costs
  /// accuracy the goldens show (README's table); mixtral-compile's --int8-activations[=false].
  Int8Activations int8Activations = Int8Activations::Q4;
  /// q4's int8 kernels take 8 groups per step (moe-cpu-vectorize-quant-matmul's q4-octets):
  /// 38% fewer instructions per weight byte and 0.75x the time where they are compute-bound
  /// (prefill tiles). On the quiet 2-vCPU EPYC, six alternating rounds of the 1-layer
  /// Mixtral-shaped q4 model: prefill 1.2-1.3x the pairs' build, decode level (its DRAM-bound
  /// GEMV measured 1.1x slower in isolation under load, not in the model), so the default.
  bool q4Octets = true;
};

/// Appends the CPU pipeline to `pm` (anchored on the module): decompose -> fuse ->
/// lower-to-linalg -> bufferize -> vector kernels -> OpenMP -> LLVM dialect.
void buildCpuPipeline(OpPassManager &pm, const CpuPipelineOptions &options);

/// The (cols, lanes) of the default pipeline's GEMM panels for `cpu` (16, 8 with AVX2; 32,
/// 16 with AVX-512): the #moe.panels order that `mixtral-compile --pack` stores expert
/// weights in, so that the GEMM reads them in place.
std::pair<int64_t, int64_t> gemmPanelShape(StringRef cpu);

/// Registers the dialects and LLVM IR translations the pipeline and the emitters need.
void registerCodegenDialects(DialectRegistry &registry);

/// Registers the codegen passes and the `moe-cpu-pipeline` pipeline (for moe-opt).
void registerCodegenPassesAndPipelines();

/// Translates an LLVM-dialect module and writes an x86-64 ELF object (llvm::TargetMachine,
/// host CPU + features when cpu == "host"). Returns failure with a one-line message.
LogicalResult emitObjectFile(ModuleOp module, StringRef cpu, StringRef path,
                             std::string &error);

/// Same, but LLVM IR text (for --emit=llvm).
LogicalResult emitLLVMIR(ModuleOp module, llvm::raw_ostream &os, std::string &error);

} // namespace mlir::moe

#endif // MOEC_CODEGEN_PIPELINES_H
