//===- LaunchBuilder.cpp - one entry function through the launch rules ---------===//
//
// See LaunchBuilder.h.
//
//===----------------------------------------------------------------------===//

#include "LaunchBuilder.h"

using namespace mlir;

namespace mlir::moe::gpu {

LogicalResult LaunchBuilder::lowerFunc(func::FuncOp f) {
  // The input is bufferized: a tensor left over means a pass before this one did not run.
  auto isTensor = [](Type t) { return isa<TensorType>(t); };
  WalkResult tensors = f.walk([&](Operation *op) {
    if (llvm::any_of(op->getOperandTypes(), isTensor) ||
        llvm::any_of(op->getResultTypes(), isTensor)) {
      op->emitOpError("works on tensors; the GPU launch lowering takes bufferized functions "
                      "(run moe-gpu-form-kernel-calls and one-shot-bufferize first).");
      return WalkResult::interrupt();
    }
    return WalkResult::advance();
  });
  if (tensors.wasInterrupted())
    return failure();
  dummy = arena = nullptr;
  loc = f.getLoc();
  b.setInsertionPointToStart(&f.getBody().front());
  stream = ::mlir::gpu::WaitOp::create(b, loc, tokenType(), ValueRange{}).getAsyncToken();
  packArena(*this, f);
  // Program order, outer ops before the ops of their regions (loops stay as they are).
  SmallVector<Operation *> ops;
  f.walk<WalkOrder::PreOrder>([&](Operation *op) {
    if (rules.lookup(op) || isa<KernelCallOp>(op))
      ops.push_back(op);
  });
  for (Operation *op : ops) {
    const LaunchRules::Rule *rule = rules.lookup(op);
    if (!rule)
      return op->emitOpError("names a kernel that the GPU kernel library does not have.");
    b.setInsertionPoint(op);
    loc = op->getLoc();
    if (failed((*rule)(*this, op)))
      return failure();
    // The rule emitted what replaces the op before it (and redirected its uses); a
    // terminator stays.
    if (!op->hasTrait<OpTrait::IsTerminator>())
      op->erase();
  }
  return success();
}

} // namespace mlir::moe::gpu
