//===- moe-quantize-weights.cpp - marked weights -> data + scales ---------===//
//
// Precondition: the model builder's module, where each weight the arena layout quantizes is a
// `memref.view` of the arena with the weight's logical float type, marked `moe.quant` (the
// format) and `moe.scale_offset` (bytes from the data to its scales), read through one
// `bufferization.to_tensor`. Afterwards every marked view is gone: the data and the scales
// are two views of their own storage types, and the moe ops that read the weight take them
// with the `quant` attribute; a view also marked `moe.panels` (q8 only) passes that mark to
// both (codes and scales in panel order). Unmarked weights are untouched, so a float model
// passes through unchanged.
//
//===----------------------------------------------------------------------===//

#include "moec/Dialect/Moe/MoeOps.h"
#include "moec/Passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/Builders.h"

#include "llvm/ADT/DenseMap.h"

#define DEBUG_TYPE "moe-quantize-weights"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEQUANTIZEWEIGHTS
#include "moec/Passes/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

constexpr StringLiteral kQuantMark = "moe.quant";
constexpr StringLiteral kScaleOffsetMark = "moe.scale_offset";
constexpr StringLiteral kPanelsMark = "moe.panels";

/// A weight in its quantized storage.
struct QuantizedWeight {
  Value data, scale;
  QuantAttr quant;
};

/// A read-only tensor over a view of `arena` at `byteOffset`, marked `panels` when given.
Value arenaTensor(OpBuilder &b, Location loc, Value arena, Value byteOffset,
                  ArrayRef<int64_t> shape, Type element, Attribute panels = nullptr) {
  auto type = MemRefType::get(shape, element);
  auto view = memref::ViewOp::create(b, loc, type, arena, byteOffset, ValueRange{});
  if (panels)
    view->setAttr(kPanelsMark, panels);
  return bufferization::ToTensorOp::create(b, loc, RankedTensorType::get(shape, element), view,
                                           /*restrict=*/true, /*writable=*/false);
}

/// Replaces the marked `view` (and its to_tensor) by data and scale views; returns the old
/// tensor's replacement, or failure with a diagnostic.
FailureOr<std::pair<Value, QuantizedWeight>> quantizeView(memref::ViewOp view, StringRef format) {
  auto quant = dyn_cast<QuantAttr>(view->getAttr(kQuantMark));
  auto scaleOffset = dyn_cast_or_null<IntegerAttr>(view->getAttr(kScaleOffsetMark));
  if (!quant || !scaleOffset)
    return view.emitError() << "expects a weight marked for quantization to carry a "
                               "#moe.quant attribute and an integer moe.scale_offset.";
  if (!format.empty() && format != stringifyQuantFormat(quant.getFormat()))
    return view.emitError() << "expects every weight in the " << format
                            << " format the pass was asked for, but this one is laid out as "
                            << stringifyQuantFormat(quant.getFormat()) << ".";
  if (!view->hasOneUse() || !isa<bufferization::ToTensorOp>(*view->getUsers().begin()))
    return view.emitError() << "expects a weight marked for quantization to be read through "
                               "exactly one bufferization.to_tensor.";
  auto tensorOp = cast<bufferization::ToTensorOp>(*view->getUsers().begin());
  MemRefType type = view.getType();
  int64_t k = type.getShape().back();
  if (type.getRank() < 2 || ShapedType::isDynamic(k) || k < 1 ||
      k % quant.groupSizeFor(k) != 0) {
    InFlightDiagnostic d = view.emitError() << "expects a weight marked for quantization to "
                                               "have a static, non-empty last dimension";
    if (quant.getGroupSize() != 0)
      d << " that is a multiple of its group size (" << quant.getGroupSize() << ")";
    return d << ".";
  }

  // q8 codes and scales in panel order (a CPU target's packed file): both views keep the
  // mark, which moe-lower-to-linalg reads. Another format has no panel order.
  Attribute panels = view->getAttr(kPanelsMark);
  if (panels && quant.getFormat() != QuantFormat::q8)
    return view.emitError() << "expects only q8 weights in panel order (moe.panels), but this "
                               "one is "
                            << stringifyQuantFormat(quant.getFormat()) << ".";

  OpBuilder b(view);
  Location loc = view.getLoc();
  MLIRContext *ctx = b.getContext();
  SmallVector<int64_t> dataShape(type.getShape()), scaleShape(type.getShape());
  dataShape.back() = k / quant.elementsPerByte();
  scaleShape.back() = k / quant.groupSizeFor(k);
  Value offset = view.getByteShift();
  Value scaleAt = arith::AddIOp::create(
      b, loc, offset, arith::ConstantIndexOp::create(b, loc, scaleOffset.getInt()));
  QuantizedWeight w;
  w.data = arenaTensor(b, loc, view.getSource(), offset, dataShape, quant.dataElementType(ctx),
                       panels);
  w.scale = arenaTensor(b, loc, view.getSource(), scaleAt, scaleShape,
                        quant.scaleElementType(ctx), panels);
  w.quant = quant;
  return std::pair<Value, QuantizedWeight>(tensorOp.getResult(), w);
}

/// Rebuilds `op` to read the quantized weight.
LogicalResult rewriteLinear(LinearOp op, const QuantizedWeight &w) {
  OpBuilder b(op);
  Value y = LinearOp::create(b, op.getLoc(), op.getType(), op.getInput(), w.data, w.scale,
                             w.quant);
  op.replaceAllUsesWith(y);
  op.erase();
  return success();
}

LogicalResult rewriteSparseBlock(SparseBlockOp op,
                                 const llvm::DenseMap<Value, QuantizedWeight> &quantized) {
  auto find = [&](Value v) -> const QuantizedWeight * {
    auto it = quantized.find(v);
    return it == quantized.end() ? nullptr : &it->second;
  };
  const QuantizedWeight *w1 = find(op.getW1()), *w3 = find(op.getW3()), *w2 = find(op.getW2());
  if (!w1 || !w3 || !w2 || w1->quant != w3->quant || w1->quant != w2->quant)
    return op.emitOpError() << "expects w1, w3 and w2 to be quantized together, in one format.";
  OpBuilder b(op);
  Value y = SparseBlockOp::create(b, op.getLoc(), op.getType(), op.getInput(),
                                  op.getGateWeight(), w1->data, w3->data, w2->data, w1->scale,
                                  w3->scale, w2->scale, op.getK(), w1->quant);
  op.replaceAllUsesWith(y);
  op.erase();
  return success();
}

/// Rewrites every reader of the old weight tensors.
LogicalResult rewriteReaders(const llvm::DenseMap<Value, QuantizedWeight> &quantized) {
  SetVector<Operation *> readers;
  for (const auto &[old, w] : quantized)
    for (OpOperand &use : old.getUses()) {
      Operation *user = use.getOwner();
      auto linear = dyn_cast<LinearOp>(user);
      auto block = dyn_cast<SparseBlockOp>(user);
      bool isWeight = (linear && use.get() == linear.getWeight()) ||
                      (block && use.get() != block.getInput() &&
                       use.get() != block.getGateWeight());
      if (!isWeight)
        return user->emitOpError() << "reads a quantized weight where only float weights are "
                                      "supported (quantized weights feed moe.linear and the "
                                      "experts of moe.sparse_block).";
      readers.insert(user);
    }
  for (Operation *op : readers) {
    if (auto linear = dyn_cast<LinearOp>(op)) {
      if (failed(rewriteLinear(linear, quantized.lookup(linear.getWeight()))))
        return failure();
    } else if (failed(rewriteSparseBlock(cast<SparseBlockOp>(op), quantized))) {
      return failure();
    }
  }
  return success();
}

struct MoeQuantizeWeights : mlir::moe::impl::MoeQuantizeWeightsBase<MoeQuantizeWeights> {
  using Base::Base;

  void runOnOperation() override {
    if (!format.empty() && format != "q8" && format != "q4" && format != "f8e4m3") {
      getOperation().emitError() << "moe-quantize-weights: format must be q8, q4 or f8e4m3, not '"
                                 << format << "'.";
      return signalPassFailure();
    }
    SmallVector<memref::ViewOp> marked;
    getOperation().walk([&](memref::ViewOp view) {
      if (view->hasAttr(kQuantMark))
        marked.push_back(view);
    });
    llvm::DenseMap<Value, QuantizedWeight> quantized;
    SmallVector<Operation *> dead;
    for (memref::ViewOp view : marked) {
      FailureOr<std::pair<Value, QuantizedWeight>> q = quantizeView(view, format);
      if (failed(q))
        return signalPassFailure();
      quantized[q->first] = q->second;
      dead.push_back(q->first.getDefiningOp());
      dead.push_back(view);
    }
    if (failed(rewriteReaders(quantized)))
      return signalPassFailure();
    for (Operation *op : dead)
      op->erase();
  }
};

} // namespace
