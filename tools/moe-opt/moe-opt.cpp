//===- moe-opt.cpp - mlir-opt with the moe dialect and passes -------------===//
//
// Everything mixtral-compile runs is reachable here: the moe dialect, every moe- pass, the
// named pipelines, and the upstream dialects and passes they lower through. So
// `moe-opt --moe-...-pipeline` reproduces any stage of a compile for lit tests and debugging.
//
//===----------------------------------------------------------------------===//

#include "mlir/IR/DialectRegistry.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

#include "moec/Dialect/Moe/MoeDialect.h"
#include "moec/Passes/MiddleEnd.h"
#include "moec/Passes/Passes.h"
#include "moec/Codegen/Pipelines.h"
#include "moec/Codegen/GPU/Pipelines.h"

int main(int argc, char **argv) {
  mlir::registerAllPasses();
  mlir::moe::registerMoePasses();
  mlir::moe::registerMoeMiddleEndPipeline();
  mlir::moe::registerCodegenPassesAndPipelines();
  mlir::moe::gpu::registerGpuCodegenPassesAndPipelines();

  mlir::DialectRegistry registry;
  registry.insert<mlir::moe::MoeDialect>();
  mlir::moe::gpu::registerGpuCodegenDialects(registry);
  mlir::registerAllDialects(registry);
  mlir::registerAllExtensions(registry);
  return mlir::asMainReturnCode(
      mlir::MlirOptMain(argc, argv, "moec optimizer driver\n", registry));
}
