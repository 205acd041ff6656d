//===- Memory.cpp - launch rules for the host's buffers, copies and residual adds ------===//
//
// populateMemoryLaunchRules: what upstream bufferization leaves around the kernel calls of an
// entry function (see LaunchBuilder.h). Views, reshapes and loops stay as they are.
//   memref.alloc / dealloc  gpu.alloc / gpu.dealloc on the function's stream (stream-ordered:
//                           the runtime's pool, or the CUDA graph's arena under capture)
//   memref.copy             the copy kernel over both buffers flattened (the KV cache update,
//                           the logits into the caller's buffer)
//   linalg.add              the add kernel (the residuals; bufferization decided in place)
//   func.return             frees the lowering's own buffer and waits for the stream
//
//===----------------------------------------------------------------------===//

#include "../LaunchBuilder.h"

#include "mlir/Dialect/Linalg/IR/Linalg.h"

using namespace mlir;

namespace mlir::moe::gpu {
namespace {

LogicalResult lowerAlloc(LaunchBuilder &l, memref::AllocOp a) {
  MemRefType t = a.getType();
  if (!t.getLayout().isIdentity() || t.getMemorySpace() || !a.getSymbolOperands().empty())
    return a.emitOpError("is not a plain device buffer (identity layout, default memory "
                         "space); the GPU lowering cannot allocate it.");
  auto op = ::mlir::gpu::AllocOp::create(l.b, l.loc, t, l.tokenType(), ValueRange{l.stream},
                                         a.getDynamicSizes(), ValueRange{}, /*hostShared=*/false);
  a.getMemref().replaceAllUsesWith(op.getMemref());
  return success();
}

LogicalResult lowerDealloc(LaunchBuilder &l, memref::DeallocOp d) {
  ::mlir::gpu::DeallocOp::create(l.b, l.loc, l.tokenType(), ValueRange{l.stream}, d.getMemref());
  return success();
}

/// Whether `t` can be viewed as one contiguous run of elements.
bool isContiguous(MemRefType t) {
  if (t.getRank() <= 1)
    return t.getRank() == 1 && t.isLastDimUnitStride();
  ReassociationIndices all;
  for (int64_t i = 0; i < t.getRank(); ++i)
    all.push_back(i);
  return memref::CollapseShapeOp::isGuaranteedCollapsible(t, {all});
}

LogicalResult lowerCopy(LaunchBuilder &l, memref::CopyOp c) {
  auto src = cast<MemRefType>(c.getSource().getType());
  auto dst = cast<MemRefType>(c.getTarget().getType());
  if (!isContiguous(src) || !isContiguous(dst))
    return c.emitOpError("copies a strided buffer; the GPU copy kernel takes contiguous ones.");
  l.copy(c.getSource(), c.getTarget(), l.numel(c.getSource()));
  return success();
}

/// out = lhs + rhs over the flattened buffers (out is lhs where bufferization found that safe).
LogicalResult lowerAdd(LaunchBuilder &l, linalg::AddOp a) {
  Value lhs = a.getInputs()[0], rhs = a.getInputs()[1], out = a.getOutputs()[0];
  for (Value v : {lhs, rhs, out})
    if (!isContiguous(cast<MemRefType>(v.getType())))
      return a.emitOpError("adds strided buffers; the GPU add kernel takes contiguous ones.");
  Value n = l.numel(lhs);
  l.launch("add", {l.ceilDiv(n, Tiles::elementwiseThreads), l.idx(1), l.idx(1)},
           Tiles::elementwiseThreads,
           {l.arg(l.flat(lhs)), l.arg(l.flat(rhs)), l.arg(l.flat(out)), n});
  return success();
}

/// Frees the GEMMs' placeholder and waits for the stream: a call returns when its kernels
/// are done.
LogicalResult lowerReturn(LaunchBuilder &l, func::ReturnOp r) {
  if (l.dummy)
    ::mlir::gpu::DeallocOp::create(l.b, l.loc, l.tokenType(), ValueRange{l.stream}, l.dummy);
  // Wait on the last async op's token: the entry token has no dependencies, so a wait on it
  // is a no-op that the canonicalizer erases, and the stream would be neither synchronised
  // nor destroyed. (All ops share one stream, so its last op's token covers them all.)
  Value last = l.stream;
  for (Operation *p = r->getPrevNode(); p && last == l.stream; p = p->getPrevNode())
    if (auto async = dyn_cast<::mlir::gpu::AsyncOpInterface>(p); async && async.getAsyncToken())
      last = async.getAsyncToken();
  ::mlir::gpu::WaitOp::create(l.b, l.loc, Type(), ValueRange{last});
  return success();
}

} // namespace

void populateMemoryLaunchRules(LaunchRules &rules) {
  rules.add<memref::AllocOp>(lowerAlloc);
  rules.add<memref::DeallocOp>(lowerDealloc);
  rules.add<memref::CopyOp>(lowerCopy);
  rules.add<linalg::AddOp>(lowerAdd);
  rules.add<func::ReturnOp>(lowerReturn);
}

} // namespace mlir::moe::gpu
