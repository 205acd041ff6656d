//===- LaunchBuilder.cpp - one entry function through the launch rules ---------===//
//
// See LaunchBuilder.h.
//
//===----------------------------------------------------------------------===//

#include "LaunchBuilder.h"

using namespace mlir;

namespace mlir::moe::gpu {

LogicalResult LaunchBuilder::lowerFunc(func::FuncOp f) {
  auto isTensor = [](Type t) { return isa<TensorType>(t); };
  if (llvm::any_of(f.getArgumentTypes(), isTensor) || llvm::any_of(f.getResultTypes(), isTensor))
    return f.emitOpError("takes or returns tensors; GPU entry points take device buffers "
                         "(memrefs) and read them through bufferization.to_tensor.");
  Block &entry = f.getBody().front();
  map.clear();
  owned.clear();
  inverse.clear();
  dummy = nullptr;
  scopes.clear();
  loc = f.getLoc();
  SmallVector<Operation *> old;
  for (Operation &op : entry)
    old.push_back(&op);
  b.setInsertionPointToStart(&entry);
  stream = ::mlir::gpu::WaitOp::create(b, loc, tokenType(), ValueRange{}).getAsyncToken();
  scopes.emplace_back();
  for (Operation *op : old) {
    b.setInsertionPoint(op);
    loc = op->getLoc();
    if (failed(lowerOp(op)))
      return failure();
  }
  for (Operation *op : llvm::reverse(old)) {
    op->dropAllDefinedValueUses();
    op->erase();
  }
  return success();
}

LogicalResult LaunchBuilder::lowerOp(Operation *op) {
  if (const LaunchRules::Rule *rule = rules.lookup(op))
    return (*rule)(*this, op);
  if (op->getDialect() && op->getDialect()->getNamespace() == "moe")
    return op->emitOpError("has no GPU kernel (the GPU path lowers the fused routed ops: run "
                           "moe-decompose-sparse-block and moe-fuse-expert-gemms first)");
  // Scalar host code (index arithmetic, views of the arenas) stays as it is.
  auto isTensor = [](Type t) { return isa<TensorType>(t); };
  if (llvm::any_of(op->getOperandTypes(), isTensor) ||
      llvm::any_of(op->getResultTypes(), isTensor) || op->getNumRegions())
    return op->emitOpError("is not supported by the GPU lowering");
  b.clone(*op, map);
  return success();
}

} // namespace mlir::moe::gpu
