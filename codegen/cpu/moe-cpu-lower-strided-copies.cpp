//===- moe-cpu-lower-strided-copies.cpp - memref.copy -> linalg.copy -------===//
//
// Precondition: bufferized IR. Every `memref.copy` whose source or target has a
// non-identity layout becomes a `linalg.copy`, so the LLVM lowering never needs
// `memrefCopy` from libmlir_c_runner_utils. Identity-layout copies are left for memcpy.
//
//===----------------------------------------------------------------------===//

#include "moec/Codegen/Passes.h"

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/PatternMatch.h"

#define DEBUG_TYPE "moe-cpu-lower-strided-copies"

namespace mlir::moe {
#define GEN_PASS_DEF_MOECPULOWERSTRIDEDCOPIES
#include "moec/Codegen/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {

bool hasIdentityLayout(Value v) {
  auto type = dyn_cast<MemRefType>(v.getType());
  return type && type.getLayout().isIdentity();
}

struct MoeCpuLowerStridedCopies
    : mlir::moe::impl::MoeCpuLowerStridedCopiesBase<MoeCpuLowerStridedCopies> {
  void runOnOperation() override {
    SmallVector<memref::CopyOp> copies;
    getOperation()->walk([&](memref::CopyOp op) {
      if (!hasIdentityLayout(op.getSource()) || !hasIdentityLayout(op.getTarget()))
        copies.push_back(op);
    });
    IRRewriter rewriter(&getContext());
    for (memref::CopyOp op : copies) {
      rewriter.setInsertionPoint(op);
      rewriter.replaceOpWithNewOp<linalg::CopyOp>(op, op.getSource(), op.getTarget());
    }
  }
};

} // namespace
