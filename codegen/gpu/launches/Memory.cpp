//===- Memory.cpp - launch rules for the host's buffers, copies and residual adds ------===//
//
// populateMemoryLaunchRules: what upstream bufferization leaves around the kernel calls of an
// entry function (see LaunchBuilder.h). Views, reshapes and loops stay as they are.
//   memref.alloc / dealloc  the static temporaries of the function's entry block (after
//                           buffer-loop-hoisting: all of decode's) are views of one arena,
//                           one gpu.alloc per call sized at compile time (packArena); the
//                           others gpu.alloc / gpu.dealloc on the function's stream. Both are
//                           stream-ordered (the runtime's pool, or the CUDA graph's arena
//                           under capture).
//   memref.copy             the copy kernel over both buffers flattened (the KV cache update,
//                           the logits into the caller's buffer)
//   linalg.add              the add kernel (the residuals; bufferization decided in place)
//   func.return             frees the arena and waits for the stream
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

/// Frees the arena (or the GEMMs' placeholder where there is none) and waits for the stream:
/// a call returns when its kernels are done.
LogicalResult lowerReturn(LaunchBuilder &l, func::ReturnOp r) {
  if (Value own = l.arena ? l.arena : l.dummy)
    ::mlir::gpu::DeallocOp::create(l.b, l.loc, l.tokenType(), ValueRange{l.stream}, own);
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

/// Bytes of a static buffer of `t`, or 0 where it has no fixed byte size.
static int64_t staticBytes(MemRefType t) {
  if (!t.hasStaticShape() || !t.getLayout().isIdentity() || t.getMemorySpace() ||
      !t.getElementType().isIntOrFloat())
    return 0;
  return t.getNumElements() * ((t.getElementTypeBitWidth() + 7) / 8);
}

void packArena(LaunchBuilder &l, func::FuncOp f) {
  // The static allocations of the entry block that are only read, written and freed there
  // (what bufferization and buffer-loop-hoisting leave), at 256-byte aligned offsets, the
  // alignment of cuMemAlloc; then a 4-byte slot for the GEMMs' placeholder.
  constexpr int64_t align = 256;
  SmallVector<std::pair<memref::AllocOp, int64_t>> members;
  int64_t size = 0;
  for (auto a : f.getBody().front().getOps<memref::AllocOp>()) {
    int64_t bytes = staticBytes(a.getType());
    if (!bytes || !a.getSymbolOperands().empty())
      continue;
    members.push_back({a, size});
    size += (bytes + align - 1) / align * align;
  }
  if (members.empty())
    return;
  int64_t dummyOffset = size;
  size += align;
  OpBuilder::InsertionGuard guard(l.b);
  l.b.setInsertionPointAfter(l.stream.getDefiningOp());
  auto arenaType = MemRefType::get({size}, l.b.getI8Type());
  l.arena = ::mlir::gpu::AllocOp::create(l.b, l.loc, arenaType, l.tokenType(),
                                         ValueRange{l.stream}, ValueRange{}, ValueRange{},
                                         /*hostShared=*/false)
                .getMemref();
  auto view = [&](int64_t offset, MemRefType t) {
    return memref::ViewOp::create(l.b, l.loc, t, l.arena, l.idx(offset), ValueRange{});
  };
  l.dummy = view(dummyOffset, MemRefType::get({1}, l.b.getI32Type()));
  for (auto [a, offset] : members) {
    for (Operation *user : llvm::make_early_inc_range(a->getUsers()))
      if (isa<memref::DeallocOp>(user))
        user->erase(); // the arena is freed once, at the return
    l.b.setInsertionPoint(a);
    l.loc = a.getLoc();
    a.getMemref().replaceAllUsesWith(view(offset, a.getType()).getResult());
    a.erase();
  }
}

void populateMemoryLaunchRules(LaunchRules &rules) {
  rules.add<memref::AllocOp>(lowerAlloc);
  rules.add<memref::DeallocOp>(lowerDealloc);
  rules.add<memref::CopyOp>(lowerCopy);
  rules.add<linalg::AddOp>(lowerAdd);
  rules.add<func::ReturnOp>(lowerReturn);
}

} // namespace mlir::moe::gpu
