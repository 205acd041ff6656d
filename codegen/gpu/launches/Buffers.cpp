//===- Buffers.cpp - launch rules for buffers, views, copies and control flow ----===//
//
// populateBufferLaunchRules: the ops around the moe ops in an entry function (see
// LaunchBuilder.h). Views stay views; copies are the copy kernel; the layer loop carries
// its tensors in one buffer each.
//
//===----------------------------------------------------------------------===//

#include "../LaunchBuilder.h"

#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;

namespace mlir::moe::gpu {
namespace {

/// A tensor read from a buffer is that buffer.
LogicalResult lowerToTensor(LaunchBuilder &l, bufferization::ToTensorOp t) {
  l.map.map(t.getResult(), l.scalar(t.getBuffer()));
  return success();
}

LogicalResult lowerDim(LaunchBuilder &l, tensor::DimOp d) {
  l.map.map(
      d.getResult(),
      memref::DimOp::create(l.b, l.loc, l.buf(d.getSource()), l.scalar(d.getIndex())).getResult());
  return success();
}

/// Slices and reshapes are views of the source buffer.
LogicalResult lowerExtractSlice(LaunchBuilder &l, tensor::ExtractSliceOp s) {
  if (s.getType().getRank() != s.getSourceType().getRank())
    return s.emitOpError("rank-reducing slices are not supported by the GPU lowering");
  Value v =
      memref::SubViewOp::create(l.b, l.loc, l.buf(s.getSource()), l.remap(s.getMixedOffsets()),
                                l.remap(s.getMixedSizes()), l.remap(s.getMixedStrides()));
  l.map.map(s.getResult(), v);
  return success();
}

LogicalResult lowerExpandShape(LaunchBuilder &l, tensor::ExpandShapeOp e) {
  Value src = l.buf(e.getSrc());
  auto type = memref::ExpandShapeOp::computeExpandedType(
      cast<MemRefType>(src.getType()), e.getResultType().getShape(), e.getReassociationIndices());
  if (failed(type))
    return e.emitOpError("cannot expand this buffer on the GPU path");
  Value v = memref::ExpandShapeOp::create(l.b, l.loc, *type, src, e.getReassociationIndices(),
                                          l.remap(e.getMixedOutputShape()));
  l.map.map(e.getResult(), v);
  return success();
}

LogicalResult lowerCollapseShape(LaunchBuilder &l, tensor::CollapseShapeOp c) {
  Value v =
      memref::CollapseShapeOp::create(l.b, l.loc, l.buf(c.getSrc()), c.getReassociationIndices());
  l.map.map(c.getResult(), v);
  return success();
}

/// A copy into the destination buffer (the KV cache update), which the result then is.
LogicalResult lowerInsertSlice(LaunchBuilder &l, tensor::InsertSliceOp ins) {
  // Only whole trailing dimensions at unit stride: a contiguous run of the destination.
  auto dstType = ins.getDestType();
  ArrayRef<int64_t> offs = ins.getStaticOffsets(), sizes = ins.getStaticSizes(),
                    strides = ins.getStaticStrides();
  for (int64_t i = 0; i < dstType.getRank(); ++i) {
    if (strides[i] != 1)
      return ins.emitOpError("only unit-stride insert_slice is supported on the GPU path");
    if (i > 0 && (offs[i] != 0 || sizes[i] != dstType.getDimSize(i)))
      return ins.emitOpError("only insert_slice of whole trailing dimensions is supported "
                             "on the GPU path");
  }
  Value dst = l.buf(ins.getDest()), src = l.buf(ins.getSource());
  int64_t inner = 1;
  for (int64_t i = 1; i < dstType.getRank(); ++i)
    inner *= dstType.getDimSize(i);
  Value off0 = getValueOrCreateConstantIndexOp(l.b, l.loc, l.remap(ins.getMixedOffsets()[0]));
  Value start = l.mul(off0, l.idx(inner));
  Value n = l.numel(src);
  Value dstFlat = l.flat(dst);
  Value window = memref::SubViewOp::create(l.b, l.loc, dstFlat, ArrayRef<OpFoldResult>{start},
                                           ArrayRef<OpFoldResult>{n},
                                           ArrayRef<OpFoldResult>{l.b.getIndexAttr(1)});
  l.copy(src, window, n);
  l.map.map(ins.getResult(), dst);
  return success();
}

LogicalResult lowerMaterialize(LaunchBuilder &l, bufferization::MaterializeInDestinationOp m) {
  Value src = l.buf(m.getSource());
  Value dst = m.getDest();
  dst = isa<TensorType>(dst.getType()) ? l.buf(dst) : l.scalar(dst);
  if (src != dst)
    l.copy(src, dst, l.numel(src));
  if (m.getNumResults())
    l.map.map(m.getResult(), dst);
  return success();
}

/// The residual add: in place into the left operand where that is safe.
LogicalResult lowerAdd(LaunchBuilder &l, linalg::AddOp a) {
  Value lhs = l.buf(a.getInputs()[0]), rhs = l.buf(a.getInputs()[1]);
  // In place into the left operand when that buffer is ours and nothing reads it later.
  bool lastUse =
      l.owned.contains(lhs) && llvm::all_of(a.getInputs()[0].getUsers(), [&](Operation *u) {
        return u == a.getOperation() || (u->getBlock() == a->getBlock() && u->isBeforeInBlock(a));
      });
  Value out = lhs;
  if (!lastUse) {
    auto t = cast<MemRefType>(lhs.getType());
    SmallVector<Value> dyn;
    for (int64_t i = 0; i < t.getRank(); ++i)
      if (t.isDynamicDim(i))
        dyn.push_back(l.dim(lhs, i));
    out = l.alloc(t.getShape(), t.getElementType(), dyn);
  }
  Value n = l.numel(lhs);
  l.launch("add", {l.ceilDiv(n, Tiles::elementwiseThreads), l.idx(1), l.idx(1)},
           Tiles::elementwiseThreads,
           {l.arg(l.flat(lhs)), l.arg(l.flat(rhs)), l.arg(l.flat(out)), n});
  l.map.map(a.getResult(0), out);
  return success();
}

LogicalResult lowerFor(LaunchBuilder &l, scf::ForOp loop) {
  // Loop-carried tensors live in one buffer each, updated in place by the body.
  SmallVector<Value> carried;
  for (Value init : loop.getInitArgs()) {
    Value buffer = l.buf(init);
    if (!l.owned.contains(buffer)) {
      auto t = cast<MemRefType>(buffer.getType());
      SmallVector<Value> dyn;
      for (int64_t i = 0; i < t.getRank(); ++i)
        if (t.isDynamicDim(i))
          dyn.push_back(l.dim(buffer, i));
      Value fresh = l.alloc(t.getShape(), t.getElementType(), dyn);
      l.copy(buffer, fresh, l.numel(buffer));
      buffer = fresh;
    }
    carried.push_back(buffer);
  }
  auto newLoop = scf::ForOp::create(l.b, l.loc, l.scalar(loop.getLowerBound()),
                                    l.scalar(loop.getUpperBound()), l.scalar(loop.getStep()));
  l.map.map(loop.getInductionVar(), newLoop.getInductionVar());
  for (auto [arg, buffer] : llvm::zip(loop.getRegionIterArgs(), carried))
    l.map.map(arg, buffer);
  OpBuilder::InsertionGuard guard(l.b);
  l.b.setInsertionPoint(newLoop.getBody()->getTerminator());
  l.scopes.emplace_back();
  for (Operation &inner : loop.getBody()->without_terminator()) {
    l.loc = inner.getLoc();
    if (failed(l.lowerOp(&inner)))
      return failure();
  }
  auto yield = cast<scf::YieldOp>(loop.getBody()->getTerminator());
  for (auto [value, buffer] : llvm::zip(yield.getOperands(), carried)) {
    Value produced = l.buf(value);
    if (produced != buffer)
      l.copy(produced, buffer, l.numel(buffer));
  }
  l.freeScope();
  for (auto [result, buffer] : llvm::zip(loop.getResults(), carried))
    l.map.map(result, buffer);
  return success();
}

/// Frees every scope and waits for the stream: a call returns when its kernels are done.
LogicalResult lowerReturn(LaunchBuilder &l, func::ReturnOp r) {
  while (!l.scopes.empty())
    l.freeScope();
  // Wait on the last async op's token: the entry token has no dependencies, so a wait on it
  // is a no-op that the canonicalizer erases, and the stream would be neither synchronised
  // nor destroyed. (All ops share one stream, so its last op's token covers them all.)
  Value last = l.stream;
  for (Operation *p = r->getPrevNode(); p && last == l.stream; p = p->getPrevNode())
    if (auto async = dyn_cast<::mlir::gpu::AsyncOpInterface>(p); async && async.getAsyncToken())
      last = async.getAsyncToken();
  ::mlir::gpu::WaitOp::create(l.b, l.loc, Type(), ValueRange{last});
  l.b.clone(*r.getOperation(), l.map);
  return success();
}

} // namespace

void populateBufferLaunchRules(LaunchRules &rules) {
  rules.add<bufferization::ToTensorOp>(lowerToTensor);
  rules.add<tensor::DimOp>(lowerDim);
  // Only ever linalg.add's init, which gets its own buffer.
  rules.add<tensor::EmptyOp>([](LaunchBuilder &, tensor::EmptyOp) { return success(); });
  rules.add<tensor::ExtractSliceOp>(lowerExtractSlice);
  rules.add<tensor::ExpandShapeOp>(lowerExpandShape);
  rules.add<tensor::CollapseShapeOp>(lowerCollapseShape);
  rules.add<tensor::InsertSliceOp>(lowerInsertSlice);
  rules.add<bufferization::MaterializeInDestinationOp>(lowerMaterialize);
  rules.add<linalg::AddOp>(lowerAdd);
  rules.add<scf::ForOp>(lowerFor);
  rules.add<func::ReturnOp>(lowerReturn);
}

} // namespace mlir::moe::gpu
