//===- Pipelines.cpp - moe-cpu-pipeline and object emission ---------------===//
//
// The CPU pipeline, built here in C++ and registered as `moe-cpu-pipeline`, so that
// `moe-opt --moe-cpu-pipeline` and mixtral-compile run the same passes. Stages:
//
//   moe-middle-end (moe-quantize-weights -> moe-decompose-sparse-block -> moe-fuse-expert-gemms,
//   shared with the GPU pipeline) -> moe-lower-to-linalg
//   -> canonicalize, cse -> one-shot-bufferize -> buffer deallocation
//   -> moe-cpu-vectorize-matmul, moe-cpu-vectorize-quant-matmul (vector kernels in
//      scf.parallel loops; quantized weights dequantised in registers)
//   -> moe-cpu-lower-strided-copies
//   -> convert-linalg-to-parallel-loops (the remaining linalg ops)
//   -> convert-scf-to-openmp -> LLVM dialect (bare-pointer calling convention)
//
// Input: a module of func.func's whose arguments are static memrefs and index scalars
// (the ABI of moec/abi.h), using moe ops on tensors and bufferization.to_tensor /
// materialize_in_destination on views of the i8 arenas.
//
//===----------------------------------------------------------------------===//

#include "moec/Codegen/Pipelines.h"
#include "moec/Codegen/Passes.h"
#include "moec/Passes/MiddleEnd.h"
#include "moec/Passes/Passes.h"

#include "mlir/Conversion/AffineToStandard/AffineToStandard.h"
#include "mlir/Conversion/ArithToLLVM/ArithToLLVM.h"
#include "mlir/Conversion/ControlFlowToLLVM/ControlFlowToLLVM.h"
#include "mlir/Conversion/FuncToLLVM/ConvertFuncToLLVMPass.h"
#include "mlir/Conversion/IndexToLLVM/IndexToLLVM.h"
#include "mlir/Conversion/MathToLLVM/MathToLLVM.h"
#include "mlir/Conversion/MemRefToLLVM/MemRefToLLVM.h"
#include "mlir/Conversion/OpenMPToLLVM/ConvertOpenMPToLLVM.h"
#include "mlir/Conversion/ReconcileUnrealizedCasts/ReconcileUnrealizedCasts.h"
#include "mlir/Conversion/SCFToControlFlow/SCFToControlFlow.h"
#include "mlir/Conversion/SCFToOpenMP/SCFToOpenMP.h"
#include "mlir/Conversion/UBToLLVM/UBToLLVM.h"
#include "mlir/Conversion/VectorToLLVM/ConvertVectorToLLVMPass.h"
#include "mlir/Conversion/VectorToSCF/VectorToSCF.h"
#include "mlir/Dialect/Bufferization/Pipelines/Passes.h"
#include "mlir/Dialect/Bufferization/Transforms/Passes.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/Passes.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Dialect/SCF/Transforms/Passes.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Target/LLVMIR/Export.h"
#include "mlir/Transforms/Passes.h"

#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/MC/MCSubtargetInfo.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Passes/PassBuilder.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/TargetParser/Host.h"
#include "llvm/TargetParser/Triple.h"

#include <mutex>

using namespace mlir;

namespace mlir::moe {
namespace {

void initializeX86() {
  static std::once_flag once;
  std::call_once(once, [] {
    LLVMInitializeX86TargetInfo();
    LLVMInitializeX86Target();
    LLVMInitializeX86TargetMC();
    LLVMInitializeX86AsmPrinter();
    LLVMInitializeX86AsmParser();
  });
}

/// The x86-64 target machine for `cpu` ("host": this CPU with all its features).
std::unique_ptr<llvm::TargetMachine> createTargetMachine(StringRef cpu, std::string &error) {
  initializeX86();
  llvm::Triple triple("x86_64-unknown-linux-gnu");
  const llvm::Target *target = llvm::TargetRegistry::lookupTarget(triple, error);
  if (!target)
    return nullptr;
  std::string cpuName = cpu.str(), features;
  if (cpu == "host") {
    cpuName = llvm::sys::getHostCPUName().str();
    llvm::SubtargetFeatures featureSet;
    for (const auto &feature : llvm::sys::getHostCPUFeatures())
      featureSet.AddFeature(feature.first(), feature.second);
    features = featureSet.getString();
  }
  llvm::TargetOptions options;
  // Constructors (an nvptx object's kernel-module loaders) go to .init_array, which the C
  // runtime runs whichever linker links the object: lld keeps a `.ctors.N` section apart, and
  // nothing runs it (the step test's nvptx object, linked by CMake with lld, crashed so).
  options.UseInitArray = true;
  std::unique_ptr<llvm::TargetMachine> machine(target->createTargetMachine(
      triple, cpuName, features, options, llvm::Reloc::PIC_, std::nullopt,
      llvm::CodeGenOptLevel::Aggressive));
  if (!machine)
    error = "cannot create an x86-64 target machine for CPU '" + cpu.str() + "'";
  return machine;
}

/// Whether `cpu` has every feature of `features` ("+avx512f").
bool cpuHas(StringRef cpu, StringRef features) {
  std::string error;
  std::unique_ptr<llvm::TargetMachine> machine = createTargetMachine(cpu, error);
  if (!machine)
    return false;
  const llvm::MCSubtargetInfo *info = machine->getMCSubtargetInfo();
  return info && info->checkFeatures(features);
}

/// The LLVM name of `cpu` ("host": this machine's).
std::string cpuName(StringRef cpu) {
  return cpu == "host" ? llvm::sys::getHostCPUName().str() : cpu.str();
}

/// f32 lanes for the matmul kernels: 16 where the CPU has AVX-512, else 8.
int64_t defaultVectorWidth(StringRef cpu) { return cpuHas(cpu, "+avx512f") ? 16 : 8; }
} // namespace

std::pair<int64_t, int64_t> gemmPanelShape(StringRef cpu) {
  int64_t width = defaultVectorWidth(cpu);
  return {2 * width, width};
}

namespace {

/// The command-line form of CpuPipelineOptions.
struct CpuPipelineCLOptions : public PassPipelineOptions<CpuPipelineCLOptions> {
  Option<std::string> cpu{*this, "cpu",
                          llvm::cl::desc("Target CPU: host or an LLVM CPU name"),
                          llvm::cl::init("host")};
  Option<int64_t> vectorWidth{*this, "vector-width",
                              llvm::cl::desc("f32 lanes in matmul kernels (0: from the CPU)"),
                              llvm::cl::init(0)};
  Option<int64_t> tileRows{*this, "tile-rows",
                           llvm::cl::desc("Register tile rows (0: from the vector width)"),
                           llvm::cl::init(0)};
  Option<int64_t> tileCols{*this, "tile-cols",
                           llvm::cl::desc("Register tile columns (0: from the vector width)"),
                           llvm::cl::init(0)};
  Option<int64_t> blockCols{*this, "block-cols",
                            llvm::cl::desc("Output columns per parallel task"),
                            llvm::cl::init(32)};
  Option<int64_t> gemmMinRows{
      *this, "gemm-min-rows",
      llvm::cl::desc("Rows from which float matmuls take the packed GEMM (-1: never)"),
      llvm::cl::init(8)};
  Option<int64_t> gemmRows{*this, "gemm-rows",
                           llvm::cl::desc("GEMM microkernel rows (0: from the vector width)"),
                           llvm::cl::init(0)};
  Option<int64_t> gemmCols{*this, "gemm-cols",
                           llvm::cl::desc("GEMM microkernel columns (0: 2 vectors)"),
                           llvm::cl::init(0)};
  Option<bool> gemmEpilogues{
      *this, "gemm-epilogues",
      llvm::cl::desc("Gate/up GEMMs over panels with SwiGLU in their epilogue (default false: "
                     "two GEMMs and the SwiGLU pass)"),
      llvm::cl::init(false)};
  Option<PanelWidening> gemmWidenPanels{
      *this, "gemm-widen-panels",
      llvm::cl::desc("bf16 weights in panel order widened once per panel into an f32 "
                     "scratch panel for the GEMM, or in registers at every step"),
      llvm::cl::init(PanelWidening::Auto),
      llvm::cl::values(
          clEnumValN(PanelWidening::Auto, "auto", "by the CPU (the default: widened on Zen 1)"),
          clEnumValN(PanelWidening::Widen, "true", "widened once per panel"),
          clEnumValN(PanelWidening::InPlace, "false", "in registers at every step"))};
  Option<bool> openmp{*this, "openmp", llvm::cl::desc("Emit OpenMP parallel loops"),
                      llvm::cl::init(true)};
  Option<Int8Activations> int8Activations{
      *this, "int8-activations",
      llvm::cl::desc("Which quantized weights meet activations rounded to int8, on AVX2 "
                     "integer dot products (where the CPU has AVX2; the others dequantise "
                     "the weights to f32)"),
      llvm::cl::init(Int8Activations::Q4),
      llvm::cl::values(
          clEnumValN(Int8Activations::Q4, "q4", "q4 only (the default: q8 keeps f32 ones)"),
          clEnumValN(Int8Activations::All, "true", "q8 and q4"),
          clEnumValN(Int8Activations::None, "false", "neither"))};
  Option<bool> q4Octets{
      *this, "q4-octets",
      llvm::cl::desc("q4 int8 kernels take 8 groups per step (moe-cpu-vectorize-quant-matmul's "
                     "q4-octets; the default; false: pairs)"),
      llvm::cl::init(true)};
};

} // namespace

void buildCpuPipeline(OpPassManager &pm, const CpuPipelineOptions &options) {
  // moe dialect: the shared middle end (quantized weights made explicit, routed form, fused
  // expert kernels), then upstream dialects on tensors.
  buildMoeMiddleEnd(pm);
  pm.addPass(createMoeLowerToLinalg());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());

  // Tensors -> buffers. Entry points already take memrefs; temporaries are heap buffers
  // freed by the deallocation pipeline.
  addMoeBufferize(pm);
  pm.addPass(createCanonicalizerPass());
  bufferization::buildBufferDeallocationPipeline(pm);
  // The deallocation lowering adds a private `dealloc_helper` with dynamically shaped
  // memref arguments, which the bare-pointer calling convention cannot express: inline it.
  pm.addPass(createInlinerPass());
  pm.addPass(createSymbolDCEPass());
  // The attention kernel's scf.forall (on buffers now) becomes an scf.parallel for OpenMP.
  pm.addPass(createForallToParallelLoopPass());

  // CPU kernels: vector code for x·Wᵀ, parallel loops for everything else.
  MoeCpuVectorizeMatmulOptions kernel;
  kernel.vectorWidth = options.vectorWidth > 0 ? options.vectorWidth
                                               : defaultVectorWidth(options.cpu);
  bool wide = kernel.vectorWidth >= 16;
  kernel.tileRows = options.tileRows > 0 ? options.tileRows : (wide ? 4 : 3);
  kernel.tileCols = options.tileCols > 0 ? options.tileCols : (wide ? 6 : 4);
  kernel.blockCols = options.blockCols;
  // The GEMM's microkernel: gemm-rows x 2 vectors of accumulators, plus 2 panel vectors and
  // a broadcast: 6 x 16 on AVX2 (15 of 16 ymm), 12 x 32 on AVX-512 (27 of 32 zmm).
  kernel.gemmMinRows = std::max<int64_t>(options.gemmMinRows, 0);
  kernel.gemmRows = options.gemmRows > 0 ? options.gemmRows : (wide ? 12 : 6);
  kernel.gemmCols = options.gemmCols > 0 ? options.gemmCols : 2 * kernel.vectorWidth;
  kernel.gemmEpilogues = options.gemmEpilogues;
  kernel.gemmWidenPanels = options.gemmWidenPanels == PanelWidening::Auto
                               ? cpuName(options.cpu) == "znver1"
                               : options.gemmWidenPanels == PanelWidening::Widen;
  pm.addPass(createMoeCpuVectorizeMatmul(kernel));
  MoeCpuVectorizeQuantMatmulOptions quantKernel;
  quantKernel.vectorWidth = kernel.vectorWidth;
  // Taller tiles than the float kernel's: dequantising a weight chunk costs about 4 vector
  // instructions (widen, mask or shift, convert, scale), shared by every row of the tile.
  quantKernel.tileRows = options.tileRows > 0 ? options.tileRows : (wide ? 8 : 6);
  quantKernel.tileCols = options.tileCols > 0 ? options.tileCols : (wide ? 3 : 2);
  quantKernel.blockCols = kernel.blockCols;
  // Quantized prefill through the same packed GEMM (panels dequantised once per call).
  quantKernel.gemmMinRows = kernel.gemmMinRows;
  quantKernel.gemmRows = kernel.gemmRows;
  quantKernel.gemmCols = kernel.gemmCols;
  // Decode GEMVs read each weight row (2-4 KiB: a page or less) once: prefetch the next
  // tile's rows, which the hardware prefetchers would only find after a few misses.
  quantKernel.prefetch = true;
  quantKernel.int8Activations =
      cpuHas(options.cpu, "+avx2") ? options.int8Activations : Int8Activations::None;
  quantKernel.vnni = cpuHas(options.cpu, "+avxvnni") ||
                     cpuHas(options.cpu, "+avx512vnni,+avx512vl");
  quantKernel.q4Octets = options.q4Octets;
  pm.addPass(createMoeCpuVectorizeQuantMatmul(quantKernel));
  pm.addPass(createMoeCpuLowerStridedCopies());
  pm.addNestedPass<func::FuncOp>(options.openmp ? createConvertLinalgToParallelLoopsPass()
                                                : createConvertLinalgToLoopsPass());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  if (options.openmp) {
    pm.addPass(createConvertSCFToOpenMPPass());
    // Inlines the memref.alloca_scope wrappers around loop bodies that allocate nothing;
    // scf-to-cf cannot lower loops inside a (single-block) alloca_scope.
    pm.addPass(createCanonicalizerPass());
  }

  // LLVM dialect.
  pm.addPass(createConvertVectorToSCFPass());
  pm.addPass(memref::createExpandStridedMetadataPass());
  pm.addPass(createLowerAffinePass());
  pm.addPass(createSCFToControlFlowPass());
  ConvertVectorToLLVMPassOptions vectorToLLVM;
  vectorToLLVM.reassociateFPReductions = true;
  pm.addPass(createConvertVectorToLLVMPass(vectorToLLVM));
  pm.addPass(createFinalizeMemRefToLLVMConversionPass());
  pm.addPass(createConvertMathToLLVMPass());
  pm.addPass(createArithToLLVMConversionPass());
  pm.addPass(createConvertIndexToLLVMPass());
  // Functions before OpenMP: convert-openmp-to-llvm also converts func.func, with the
  // default (descriptor) calling convention.
  ConvertFuncToLLVMPassOptions funcToLLVM;
  funcToLLVM.useBarePtrCallConv = true;
  pm.addPass(createConvertFuncToLLVMPass(funcToLLVM));
  if (options.openmp)
    pm.addPass(createConvertOpenMPToLLVMPass());
  pm.addPass(createConvertControlFlowToLLVMPass());
  pm.addPass(createUBToLLVMConversionPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
  pm.addPass(createCanonicalizerPass());
}

void registerCodegenDialects(DialectRegistry &registry) {
  registerAllDialects(registry);
  registerAllExtensions(registry);
  registerAllToLLVMIRTranslations(registry);
}

void registerCodegenPassesAndPipelines() {
  registerMoeCodegenPasses();
  PassPipelineRegistration<CpuPipelineCLOptions>(
      "moe-cpu-pipeline",
      "Lower a module in the moe dialect to the LLVM dialect for x86-64 CPUs",
      [](OpPassManager &pm, const CpuPipelineCLOptions &cl) {
        CpuPipelineOptions options;
        options.cpu = cl.cpu;
        options.vectorWidth = cl.vectorWidth;
        options.tileRows = cl.tileRows;
        options.tileCols = cl.tileCols;
        options.blockCols = cl.blockCols;
        options.gemmMinRows = cl.gemmMinRows;
        options.gemmRows = cl.gemmRows;
        options.gemmCols = cl.gemmCols;
        options.gemmEpilogues = cl.gemmEpilogues;
        options.gemmWidenPanels = cl.gemmWidenPanels;
        options.openmp = cl.openmp;
        options.int8Activations = cl.int8Activations;
        options.q4Octets = cl.q4Octets;
        buildCpuPipeline(pm, options);
      });
}

namespace {
std::unique_ptr<llvm::Module> translate(ModuleOp module, llvm::LLVMContext &context,
                                        std::string &error) {
  DialectRegistry registry;
  registerAllToLLVMIRTranslations(registry);
  module->getContext()->appendDialectRegistry(registry);
  std::unique_ptr<llvm::Module> llvmModule = translateModuleToLLVMIR(module, context, "moec");
  if (!llvmModule)
    error = "cannot translate the module to LLVM IR (is it fully in the LLVM dialect?)";
  return llvmModule;
}
} // namespace

LogicalResult emitLLVMIR(ModuleOp module, llvm::raw_ostream &os, std::string &error) {
  llvm::LLVMContext context;
  std::unique_ptr<llvm::Module> llvmModule = translate(module, context, error);
  if (!llvmModule)
    return failure();
  llvmModule->print(os, nullptr);
  return success();
}

LogicalResult emitObjectFile(ModuleOp module, StringRef cpu, StringRef path,
                             std::string &error) {
  std::unique_ptr<llvm::TargetMachine> machine = createTargetMachine(cpu, error);
  if (!machine)
    return failure();
  llvm::LLVMContext context;
  std::unique_ptr<llvm::Module> llvmModule = translate(module, context, error);
  if (!llvmModule)
    return failure();
  llvmModule->setTargetTriple(machine->getTargetTriple());
  llvmModule->setDataLayout(machine->createDataLayout());
  // Every function gets the target CPU and features, so the optimiser and the backend agree.
  for (llvm::Function &f : *llvmModule) {
    if (f.isDeclaration())
      continue;
    f.addFnAttr("target-cpu", machine->getTargetCPU());
    if (!machine->getTargetFeatureString().empty())
      f.addFnAttr("target-features", machine->getTargetFeatureString());
  }

  // -O3 on the IR, as clang would: MLIR leaves loop-invariant code, redundant loads and
  // unrolling opportunities to LLVM.
  llvm::LoopAnalysisManager lam;
  llvm::FunctionAnalysisManager fam;
  llvm::CGSCCAnalysisManager cgam;
  llvm::ModuleAnalysisManager mam;
  llvm::PassBuilder builder(machine.get());
  builder.registerModuleAnalyses(mam);
  builder.registerCGSCCAnalyses(cgam);
  builder.registerFunctionAnalyses(fam);
  builder.registerLoopAnalyses(lam);
  builder.crossRegisterProxies(lam, fam, cgam, mam);
  llvm::ModulePassManager mpm = builder.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O3);
  mpm.run(*llvmModule, mam);

  std::error_code ec;
  llvm::ToolOutputFile out(path, ec, llvm::sys::fs::OF_None);
  if (ec) {
    error = path.str() + ": cannot write: " + ec.message();
    return failure();
  }
  llvm::legacy::PassManager codegen;
  if (machine->addPassesToEmitFile(codegen, out.os(), nullptr, llvm::CodeGenFileType::ObjectFile)) {
    error = "the x86-64 target cannot emit object files";
    return failure();
  }
  codegen.run(*llvmModule);
  out.keep();
  return success();
}

} // namespace mlir::moe
