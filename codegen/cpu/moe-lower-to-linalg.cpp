//===- moe-lower-to-linalg.cpp - moe ops -> linalg/tensor/scf on tensors ---===//
//
// Precondition: moe ops on ranked tensors (any mix of the routed and fused forms; a
// remaining moe.sparse_block is decomposed first by the pipeline). Afterwards no moe op
// remains: the dense and expert GEMMs are `linalg.matmul`s with a transposed weight map
// (y = x Wᵀ, f32 accumulation, narrow weights widened per element inside the kernel),
// elementwise and reduction kernels are `linalg.generic`s, and the sequential routing steps
// (top-k, counting sort) are `scf.for` loops over scalars. Legal afterwards: arith, math,
// linalg, tensor, scf and everything that was already there.
//
// Numerics follow the op descriptions (and Hugging Face's modeling_mixtral.py): routing,
// RMSNorm statistics, RoPE angles and the attention softmax are computed in f32.
//
//===----------------------------------------------------------------------===//

#include "OnlineAttention.h"
#include "moec/Codegen/Passes.h"
#include "moec/Dialect/Moe/MoeOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/DialectConversion.h"

#include <limits>

#define DEBUG_TYPE "moe-lower-to-linalg"

namespace mlir::moe {
#define GEN_PASS_DEF_MOELOWERTOLINALG
#include "moec/Codegen/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

//===----------------------------------------------------------------------===//
// Small builders
//===----------------------------------------------------------------------===//

Value indexConst(OpBuilder &b, Location loc, int64_t v) {
  return arith::ConstantIndexOp::create(b, loc, v);
}
Value f32Const(OpBuilder &b, Location loc, double v) {
  return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(static_cast<float>(v)));
}
Value i32Const(OpBuilder &b, Location loc, int64_t v) {
  return arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(v));
}

/// Converts a float scalar between f32/bf16/f16 (through f32 between the two narrow types).
Value convertFloat(OpBuilder &b, Location loc, Value v, Type to) {
  Type from = v.getType();
  if (from == to)
    return v;
  unsigned fromWidth = from.getIntOrFloatBitWidth(), toWidth = to.getIntOrFloatBitWidth();
  if (fromWidth < toWidth)
    return arith::ExtFOp::create(b, loc, to, v);
  if (fromWidth > toWidth)
    return arith::TruncFOp::create(b, loc, to, v);
  Value wide = arith::ExtFOp::create(b, loc, b.getF32Type(), v);
  return arith::TruncFOp::create(b, loc, to, wide);
}
Value toF32(OpBuilder &b, Location loc, Value v) {
  return convertFloat(b, loc, v, b.getF32Type());
}
Value toIndex(OpBuilder &b, Location loc, Value i32) {
  return arith::IndexCastOp::create(b, loc, b.getIndexType(), i32);
}
Value toI32(OpBuilder &b, Location loc, Value index) {
  return arith::IndexCastOp::create(b, loc, b.getI32Type(), index);
}

Value dimOf(OpBuilder &b, Location loc, Value tensor, int64_t d) {
  return tensor::DimOp::create(b, loc, tensor, d);
}
/// A size as an OpFoldResult: the static size when known, else `tensor.dim`.
OpFoldResult sizeOf(OpBuilder &b, Location loc, Value tensor, int64_t d) {
  int64_t s = cast<RankedTensorType>(tensor.getType()).getDimSize(d);
  if (!ShapedType::isDynamic(s))
    return b.getIndexAttr(s);
  return dimOf(b, loc, tensor, d);
}

Value emptyTensor(OpBuilder &b, Location loc, ArrayRef<OpFoldResult> sizes, Type elementType) {
  return tensor::EmptyOp::create(b, loc, sizes, elementType);
}
Value fillTensor(OpBuilder &b, Location loc, Value scalar, Value tensor) {
  return linalg::FillOp::create(b, loc, scalar, tensor).getResult(0);
}
Value zeros(OpBuilder &b, Location loc, ArrayRef<OpFoldResult> sizes, Type elementType) {
  Value zero = arith::ConstantOp::create(b, loc, b.getZeroAttr(elementType));
  return fillTensor(b, loc, zero, emptyTensor(b, loc, sizes, elementType));
}

/// Casts to `type` (a more or less static version of the same shape) when needed.
Value castTo(OpBuilder &b, Location loc, Value v, Type type) {
  if (v.getType() == type)
    return v;
  return tensor::CastOp::create(b, loc, type, v);
}

SmallVector<utils::IteratorType> parallelIterators(unsigned n) {
  return SmallVector<utils::IteratorType>(n, utils::IteratorType::parallel);
}

using BodyFn = function_ref<Value(OpBuilder &, Location, ValueRange)>;

/// A linalg.generic with one result; `body` gets the block arguments and returns the value
/// to yield.
Value generic(OpBuilder &b, Location loc, ValueRange inputs, Value output,
              ArrayRef<AffineMap> maps, ArrayRef<utils::IteratorType> iterators, BodyFn body) {
  auto op = linalg::GenericOp::create(
      b, loc, TypeRange{output.getType()}, inputs, ValueRange{output}, maps, iterators,
      [&](OpBuilder &nb, Location nloc, ValueRange args) {
        linalg::YieldOp::create(nb, nloc, body(nb, nloc, args));
      });
  return op.getResult(0);
}

/// Elementwise generic over `output`'s shape with identity maps for every operand.
Value elementwise(OpBuilder &b, Location loc, ValueRange inputs, Value output, BodyFn body) {
  unsigned rank = cast<RankedTensorType>(output.getType()).getRank();
  SmallVector<AffineMap> maps(inputs.size() + 1, b.getMultiDimIdentityMap(rank));
  return generic(b, loc, inputs, output, maps, parallelIterators(rank), body);
}

/// init[M, N] (f32) + x[M, K] · w[N, K]ᵀ as `linalg.matmul` with a transposed weight map.
/// Operands keep their storage types; the matmul widens them element by element.
Value matmulTransposedB(OpBuilder &b, Location loc, Value x, Value w, Value init) {
  MLIRContext *ctx = b.getContext();
  AffineExpr m, n, k;
  bindDims(ctx, m, n, k);
  ArrayAttr maps = b.getAffineMapArrayAttr({AffineMap::get(3, 0, {m, k}, ctx),
                                            AffineMap::get(3, 0, {n, k}, ctx),
                                            AffineMap::get(3, 0, {m, n}, ctx)});
  auto op = linalg::MatmulOp::create(b, loc, TypeRange{init.getType()}, ValueRange{x, w},
                                     ValueRange{init},
                                     ArrayRef<NamedAttribute>{b.getNamedAttr("indexing_maps", maps)});
  return op.getResult(0);
}

/// A weight operand: a float tensor, or quantized data with its scales and format.
struct Weight {
  Value data;
  Value scale;     // null for float weights
  QuantAttr quant; // null for float weights
  // Panel order (#moe.panels): `data` is the logical [N, K] (for its sizes only) and
  // `panelData` the bytes as they are, [N / cols, K, cols]; q8 also `panelScale`, the
  // scales as they are, [N / cols, K / 32, cols].
  PanelsAttr panels;
  Value panelData, panelScale;
  Weight(Value data, Value scale = nullptr, QuantAttr quant = nullptr)
      : data(data), scale(scale), quant(quant) {}
};

/// The arena view behind a weight tensor when the model builder marked it `moe.panels`.
memref::ViewOp panelView(Value weight) {
  auto toTensor = weight.getDefiningOp<bufferization::ToTensorOp>();
  if (!toTensor)
    return nullptr;
  auto view = toTensor.getBuffer().getDefiningOp<memref::ViewOp>();
  if (!view || !isa_and_nonnull<PanelsAttr>(view->getAttr("moe.panels")))
    return nullptr;
  return view;
}

/// init[M, N] + x[M, K] · Wᵀ for W in panel order (`w.panelData` [N / cols, K, cols]): the
/// matmul's maps with W's element (n, k) at [n floordiv cols, (k mod lanes) * (K / lanes) +
/// k floordiv lanes, n mod cols]. Marked `moe.panels` for moe-cpu-vectorize-matmul.
/// The map of (m, n, k) to W's element (n, k) in panel order, `w.panelData` [N / cols, K,
/// cols]: [n floordiv cols, (k mod lanes) * (K / lanes) + k floordiv lanes, n mod cols].
AffineMap panelOrderMap(MLIRContext *ctx, const Weight &w) {
  AffineExpr n = getAffineDimExpr(1, ctx), k = getAffineDimExpr(2, ctx);
  int64_t cols = w.panels.getCols(), lanes = w.panels.getLanes();
  int64_t steps = cast<RankedTensorType>(w.panelData.getType()).getDimSize(1) / lanes;
  return AffineMap::get(3, 0, {n.floorDiv(cols), (k % lanes) * steps + k.floorDiv(lanes), n % cols},
                        ctx);
}

Value panelMatmulTransposedB(OpBuilder &b, Location loc, Value x, const Weight &w, Value init) {
  MLIRContext *ctx = b.getContext();
  AffineExpr m, n, k;
  bindDims(ctx, m, n, k);
  SmallVector<AffineMap> maps = {AffineMap::get(3, 0, {m, k}, ctx), panelOrderMap(ctx, w),
                                 AffineMap::get(3, 0, {m, n}, ctx)};
  SmallVector<utils::IteratorType> iterators = {utils::IteratorType::parallel,
                                                utils::IteratorType::parallel,
                                                utils::IteratorType::reduction};
  auto op = linalg::GenericOp::create(
      b, loc, TypeRange{init.getType()}, ValueRange{x, w.panelData}, ValueRange{init}, maps,
      iterators, [&](OpBuilder &nb, Location l, ValueRange a) {
        Value prod = arith::MulFOp::create(nb, l, toF32(nb, l, a[0]), toF32(nb, l, a[1]));
        linalg::YieldOp::create(nb, l, arith::AddFOp::create(nb, l, a[2], prod).getResult());
      });
  op->setAttr("moe.panels", w.panels);
  return op.getResult(0);
}

/// f32 bits of an f8E4M3FN byte `bits` (i32, 0..255), scaled by 2^-120: sign to bit 31,
/// exponent and mantissa to bits 30..20, so the f32 reads 2^(e-127) (1 + m/8) for e > 0 and
/// m 2^-129 for e = 0, which is the f8 value times 2^-120 for normals and subnormals alike.
/// The caller multiplies by 2^120 (folded into the scale). The f8 NaN (S.1111.111) reads
/// as 480 * 2^-120; checkpoints do not store it.
Value f8E4M3BitsToScaledF32(OpBuilder &b, Location loc, Value bits) {
  Type i32 = bits.getType();
  auto cst = [&](int64_t v) -> Value {
    if (auto vt = dyn_cast<VectorType>(i32))
      return arith::ConstantOp::create(b, loc, vt, DenseElementsAttr::get(vt, b.getI32IntegerAttr(v)));
    return arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(v));
  };
  Value magnitude = arith::ShLIOp::create(b, loc, arith::AndIOp::create(b, loc, bits, cst(0x7f)),
                                          cst(20));
  Value sign = arith::ShLIOp::create(b, loc, arith::AndIOp::create(b, loc, bits, cst(0x80)),
                                     cst(24));
  Value word = arith::OrIOp::create(b, loc, magnitude, sign);
  Type f32 = b.getF32Type();
  if (auto vt = dyn_cast<VectorType>(i32))
    f32 = VectorType::get(vt.getShape(), f32);
  return arith::BitcastOp::create(b, loc, f32, word);
}

/// The f32 value of element `k` of a quantized weight row from its data byte (q4: the byte
/// holding element k) and its scale.
Value dequantScalar(OpBuilder &b, Location loc, QuantAttr quant, Value data, Value scale,
                    Value k) {
  Type i32 = b.getI32Type(), f32 = b.getF32Type();
  Value s = toF32(b, loc, scale);
  switch (quant.getFormat()) {
  case QuantFormat::q8:
    return arith::MulFOp::create(b, loc, arith::SIToFPOp::create(b, loc, f32, data), s);
  case QuantFormat::q4: {
    // Elements 32g + 16..31 sit in the high nibbles of the group's 16 bytes.
    Value byte = arith::ExtUIOp::create(b, loc, i32, data);
    Value inGroup = arith::RemUIOp::create(b, loc, k, indexConst(b, loc, 32));
    Value high = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge, inGroup,
                                       indexConst(b, loc, 16));
    Value nibble = arith::SelectOp::create(
        b, loc, high, arith::ShRUIOp::create(b, loc, byte, i32Const(b, loc, 4)),
        arith::AndIOp::create(b, loc, byte, i32Const(b, loc, 15)));
    Value centered = arith::SubIOp::create(b, loc, nibble, i32Const(b, loc, 8));
    return arith::MulFOp::create(b, loc, arith::SIToFPOp::create(b, loc, f32, centered), s);
  }
  case QuantFormat::f8e4m3: {
    Value bits = arith::ExtUIOp::create(
        b, loc, i32, arith::BitcastOp::create(b, loc, b.getIntegerType(8), data));
    Value w = f8E4M3BitsToScaledF32(b, loc, bits);
    Value s120 = arith::MulFOp::create(b, loc, s, f32Const(b, loc, 0x1p120));
    return arith::MulFOp::create(b, loc, w, s120);
  }
  }
  llvm_unreachable("bad quant format");
}

/// init[M, N] + x[M, K] · dequant(w)[N, K]ᵀ: a linalg.generic reading the data and scales
/// where element (n, k) lives (q4: byte 16 (k / 32) + k % 16 of row n; q8 in panel order:
/// code [n floordiv cols, (k mod lanes) * (K / lanes) + k floordiv lanes, n mod cols], scale
/// [n floordiv cols, k floordiv 32, n mod cols], also marked `moe.panels`) and dequantising
/// each element in the body. Marked `moe.quant` for moe-cpu-vectorize-quant-matmul, which
/// turns it into a kernel that dequantises in registers; as it stands it lowers to scalar
/// loops that are the reference semantics. No dequantised weight is ever materialised.
Value quantMatmulTransposedB(OpBuilder &b, Location loc, Value x, const Weight &w, Value init) {
  MLIRContext *ctx = b.getContext();
  AffineExpr m, n, k;
  bindDims(ctx, m, n, k);
  SmallVector<AffineMap> maps = {AffineMap::get(3, 0, {m, k}, ctx)};
  Value data = w.data, scale = w.scale;
  if (w.panels) { // q8 only (moe-quantize-weights refuses other formats in panel order)
    int64_t cols = w.panels.getCols();
    maps.push_back(panelOrderMap(ctx, w));
    maps.push_back(AffineMap::get(
        3, 0, {n.floorDiv(cols), k.floorDiv(w.quant.getGroupSize()), n % cols}, ctx));
    data = w.panelData;
    scale = w.panelScale;
  } else {
    // The verifier made K static; f8e4m3's group is the whole row.
    int64_t kSize =
        cast<ShapedType>(w.data.getType()).getShape().back() * w.quant.elementsPerByte();
    int64_t group = std::max<int64_t>(w.quant.groupSizeFor(kSize), 1);
    AffineExpr dataK = k;
    if (w.quant.getFormat() == QuantFormat::q4)
      dataK = k.floorDiv(32) * 16 + k % 16;
    maps.push_back(AffineMap::get(3, 0, {n, dataK}, ctx));
    maps.push_back(AffineMap::get(3, 0, {n, k.floorDiv(group)}, ctx));
  }
  maps.push_back(AffineMap::get(3, 0, {m, n}, ctx));
  SmallVector<utils::IteratorType> iterators = {utils::IteratorType::parallel,
                                                utils::IteratorType::parallel,
                                                utils::IteratorType::reduction};
  QuantAttr quant = w.quant;
  bool panels = bool(w.panels);
  auto op = linalg::GenericOp::create(
      b, loc, TypeRange{init.getType()}, ValueRange{x, data, scale}, ValueRange{init}, maps,
      iterators, [&](OpBuilder &nb, Location l, ValueRange a) {
        // q4's nibble depends on k (dequantScalar); q8 in panel order never is q4.
        Value kk = panels ? Value() : linalg::IndexOp::create(nb, l, 2).getResult();
        Value weight = dequantScalar(nb, l, quant, a[1], a[2], kk);
        Value prod = arith::MulFOp::create(nb, l, toF32(nb, l, a[0]), weight);
        linalg::YieldOp::create(nb, l, arith::AddFOp::create(nb, l, a[3], prod).getResult());
      });
  if (panels)
    op->setAttr("moe.panels", w.panels);
  op->setAttr("moe.quant", quant);
  return op.getResult(0);
}

/// x[M, K] · w[N, K]ᵀ with the result in `elementType`: accumulated in f32, written into
/// `dest` (shape [M, N]) when given and f32.
Value linearInto(OpBuilder &b, Location loc, Value x, const Weight &w, Type elementType,
                 Value dest = nullptr) {
  SmallVector<OpFoldResult> sizes = {sizeOf(b, loc, x, 0), sizeOf(b, loc, w.data, 0)};
  Type f32 = b.getF32Type();
  Value zero = f32Const(b, loc, 0.0);
  Value acc = fillTensor(b, loc, zero,
                         dest && elementType == f32 ? dest : emptyTensor(b, loc, sizes, f32));
  Value y = w.quant    ? quantMatmulTransposedB(b, loc, x, w, acc)
            : w.panels ? panelMatmulTransposedB(b, loc, x, w, acc)
                       : matmulTransposedB(b, loc, x, w.data, acc);
  if (elementType == f32)
    return y;
  Value out = dest ? dest : emptyTensor(b, loc, sizes, elementType);
  return elementwise(b, loc, y, out, [&](OpBuilder &nb, Location nl, ValueRange a) {
    return convertFloat(nb, nl, a[0], elementType);
  });
}

Type elementTypeOf(Value v) { return cast<ShapedType>(v.getType()).getElementType(); }
RankedTensorType tensorTypeOf(Value v) { return cast<RankedTensorType>(v.getType()); }

//===----------------------------------------------------------------------===//
// Routing
//===----------------------------------------------------------------------===//

/// logits[T, E] = x · gateᵀ in f32.
LogicalResult lowerRouter(RouterOp op, PatternRewriter &rw) {
  Location loc = op.getLoc();
  Value y = linearInto(rw, loc, op.getInput(), op.getGateWeight(), rw.getF32Type());
  rw.replaceOp(op, castTo(rw, loc, y, op.getType()));
  return success();
}

/// `a` precedes `b` in the order of moe.top_k_gating (each with an id below the other's
/// when the values tie): larger values first, NaN last. True when `a` is not NaN and
/// `a > b` or `b` is NaN; UGT is "greater or unordered".
Value rankedAbove(OpBuilder &b, Location l, Value a, Value bv) {
  Value aIsNumber = arith::CmpFOp::create(b, l, arith::CmpFPredicate::ORD, a, a);
  Value aAbove = arith::CmpFOp::create(b, l, arith::CmpFPredicate::UGT, a, bv);
  return arith::AndIOp::create(b, l, aIsNumber, aAbove);
}

/// Both values rank the same: IEEE-equal, or both NaN.
Value rankedEqual(OpBuilder &b, Location l, Value a, Value bv) {
  Value eq = arith::CmpFOp::create(b, l, arith::CmpFPredicate::OEQ, a, bv);
  Value aNaN = arith::CmpFOp::create(b, l, arith::CmpFPredicate::UNO, a, a);
  Value bNaN = arith::CmpFOp::create(b, l, arith::CmpFPredicate::UNO, bv, bv);
  return arith::OrIOp::create(b, l, eq, arith::AndIOp::create(b, l, aNaN, bNaN));
}

/// Per token: k arg-max passes in the op's total order (value descending, NaN below -inf,
/// ties to the lower id). Pass s takes the first (lowest-id) maximum among the entries that
/// come after the previous pick, so the k ids are distinct and in [0, E) whatever the
/// logits. Then weights = exp(l - l_max) / sum in f32 (NaN when the chosen logits hold a NaN
/// or the maximum is infinite, as in Hugging Face's softmax).
LogicalResult lowerTopKGating(TopKGatingOp op, PatternRewriter &rw) {
  Location loc = op.getLoc();
  Value logits = op.getLogits();
  int64_t k = op.getK();
  int64_t numExperts = tensorTypeOf(logits).getDimSize(1);
  Type f32 = rw.getF32Type(), i32 = rw.getI32Type();
  OpFoldResult tokens = sizeOf(rw, loc, logits, 0);
  Value weights = emptyTensor(rw, loc, {tokens, rw.getIndexAttr(k)}, f32);
  Value ids = emptyTensor(rw, loc, {tokens, rw.getIndexAttr(k)}, i32);
  Value c0 = indexConst(rw, loc, 0), c1 = indexConst(rw, loc, 1);
  Value cK = indexConst(rw, loc, k), cE = indexConst(rw, loc, numExperts);
  Value numTokens = dimOf(rw, loc, logits, 0);
  Value negInf = f32Const(rw, loc, -std::numeric_limits<double>::infinity());
  Value posInf = f32Const(rw, loc, std::numeric_limits<double>::infinity());
  Value none = indexConst(rw, loc, -1);

  auto tokenLoop = scf::ForOp::create(
      rw, loc, c0, numTokens, c1, ValueRange{weights, ids},
      [&](OpBuilder &b, Location l, Value t, ValueRange iter) {
        // Selection: chosen logits go to `weights` for now, ids to `ids`.
        auto slotLoop = scf::ForOp::create(
            b, l, c0, cK, c1, ValueRange{iter[0], iter[1], posInf, none},
            [&](OpBuilder &b, Location l, Value s, ValueRange it) {
              Value prevL = it[2], prevE = it[3];
              auto expertLoop = scf::ForOp::create(
                  b, l, c0, cE, c1, ValueRange{negInf, none},
                  [&](OpBuilder &b, Location l, Value e, ValueRange best) {
                    Value v = tensor::ExtractOp::create(b, l, logits, ValueRange{t, e});
                    // Comes after the previous pick (+inf with id -1 before the first).
                    Value laterId = arith::CmpIOp::create(b, l, arith::CmpIPredicate::sgt, e, prevE);
                    Value after = arith::OrIOp::create(
                        b, l, rankedAbove(b, l, prevL, v),
                        arith::AndIOp::create(b, l, rankedEqual(b, l, v, prevL), laterId));
                    // Ids ascend, so only a strictly higher rank displaces the best so far.
                    Value noneYet =
                        arith::CmpIOp::create(b, l, arith::CmpIPredicate::slt, best[1], c0);
                    Value take = arith::AndIOp::create(
                        b, l, after,
                        arith::OrIOp::create(b, l, noneYet, rankedAbove(b, l, v, best[0])));
                    Value bestL = arith::SelectOp::create(b, l, take, v, best[0]);
                    Value bestE = arith::SelectOp::create(b, l, take, e, best[1]);
                    scf::YieldOp::create(b, l, ValueRange{bestL, bestE});
                  });
              Value bestL = expertLoop.getResult(0), bestE = expertLoop.getResult(1);
              Value w = tensor::InsertOp::create(b, l, bestL, it[0], ValueRange{t, s});
              Value id = tensor::InsertOp::create(b, l, toI32(b, l, bestE), it[1],
                                                  ValueRange{t, s});
              scf::YieldOp::create(b, l, ValueRange{w, id, bestL, bestE});
            });
        Value chosen = slotLoop.getResult(0);
        // softmax over the chosen logits; the first pick is the maximum.
        Value maxL = tensor::ExtractOp::create(b, l, chosen, ValueRange{t, c0});
        Value zero = f32Const(b, l, 0.0);
        auto sumLoop = scf::ForOp::create(
            b, l, c0, cK, c1, ValueRange{zero},
            [&](OpBuilder &b, Location l, Value s, ValueRange it) {
              Value v = tensor::ExtractOp::create(b, l, chosen, ValueRange{t, s});
              Value ex = math::ExpOp::create(b, l, arith::SubFOp::create(b, l, v, maxL));
              scf::YieldOp::create(b, l, ValueRange{arith::AddFOp::create(b, l, it[0], ex)});
            });
        Value sum = sumLoop.getResult(0);
        auto normLoop = scf::ForOp::create(
            b, l, c0, cK, c1, ValueRange{chosen},
            [&](OpBuilder &b, Location l, Value s, ValueRange it) {
              Value v = tensor::ExtractOp::create(b, l, it[0], ValueRange{t, s});
              Value ex = math::ExpOp::create(b, l, arith::SubFOp::create(b, l, v, maxL));
              Value w = arith::DivFOp::create(b, l, ex, sum);
              scf::YieldOp::create(
                  b, l, ValueRange{tensor::InsertOp::create(b, l, w, it[0], ValueRange{t, s})});
            });
        scf::YieldOp::create(b, l, ValueRange{normLoop.getResult(0), slotLoop.getResult(1)});
      });
  rw.replaceOp(op, {castTo(rw, loc, tokenLoop.getResult(0), op.getWeights().getType()),
                    castTo(rw, loc, tokenLoop.getResult(1), op.getExpertIds().getType())});
  return success();
}

/// Stable counting sort of the R = T*k assignments by expert id.
LogicalResult lowerDispatch(DispatchOp op, PatternRewriter &rw) {
  Location loc = op.getLoc();
  Value ids = op.getExpertIds();
  int64_t numExperts = op.getNumExperts();
  int64_t k = tensorTypeOf(ids).getDimSize(1);
  Type i32 = rw.getI32Type();
  Value c0 = indexConst(rw, loc, 0), c1 = indexConst(rw, loc, 1);
  Value cK = indexConst(rw, loc, k), cE = indexConst(rw, loc, numExperts);
  Value cE1 = indexConst(rw, loc, numExperts + 1);
  Value numRows = arith::MulIOp::create(rw, loc, dimOf(rw, loc, ids, 0), cK);
  Value one = i32Const(rw, loc, 1);

  // An id outside [0, E) (never produced by moe.top_k_gating) counts as E-1: as unsigned,
  // a negative id is huge, so one unsigned min keeps every index below in bounds.
  Value lastExpert = i32Const(rw, loc, numExperts - 1);
  auto expertOf = [&](OpBuilder &b, Location l, Value a) {
    Value t = arith::DivUIOp::create(b, l, a, cK);
    Value s = arith::RemUIOp::create(b, l, a, cK);
    Value id = tensor::ExtractOp::create(b, l, ids, ValueRange{t, s});
    return toIndex(b, l, arith::MinUIOp::create(b, l, id, lastExpert));
  };

  // counts: offsets[e + 1] = number of assignments to expert e.
  Value offsets = zeros(rw, loc, {rw.getIndexAttr(numExperts + 1)}, i32);
  offsets = scf::ForOp::create(
                rw, loc, c0, numRows, c1, ValueRange{offsets},
                [&](OpBuilder &b, Location l, Value a, ValueRange it) {
                  Value slot = arith::AddIOp::create(b, l, expertOf(b, l, a), c1);
                  Value n = tensor::ExtractOp::create(b, l, it[0], ValueRange{slot});
                  Value next = arith::AddIOp::create(b, l, n, one);
                  scf::YieldOp::create(
                      b, l, ValueRange{tensor::InsertOp::create(b, l, next, it[0], ValueRange{slot})});
                })
                .getResult(0);
  // Prefix sum.
  offsets = scf::ForOp::create(
                rw, loc, c1, cE1, c1, ValueRange{offsets},
                [&](OpBuilder &b, Location l, Value e, ValueRange it) {
                  Value prev = tensor::ExtractOp::create(
                      b, l, it[0], ValueRange{arith::SubIOp::create(b, l, e, c1)});
                  Value cur = tensor::ExtractOp::create(b, l, it[0], ValueRange{e});
                  Value sum = arith::AddIOp::create(b, l, prev, cur);
                  scf::YieldOp::create(
                      b, l, ValueRange{tensor::InsertOp::create(b, l, sum, it[0], ValueRange{e})});
                })
                .getResult(0);
  // Scatter in assignment order (stable): a cursor per expert starts at its offset.
  Value cursorInit = tensor::ExtractSliceOp::create(
      rw, loc, offsets, ArrayRef<OpFoldResult>{rw.getIndexAttr(0)},
      ArrayRef<OpFoldResult>{rw.getIndexAttr(numExperts)}, ArrayRef<OpFoldResult>{rw.getIndexAttr(1)});
  Value cursor = linalg::CopyOp::create(
                     rw, loc, cursorInit,
                     emptyTensor(rw, loc, {rw.getIndexAttr(numExperts)}, i32))
                     .getResult(0);
  Value perm = emptyTensor(rw, loc, {OpFoldResult(numRows)}, i32);
  auto scatter = scf::ForOp::create(
      rw, loc, c0, numRows, c1, ValueRange{perm, cursor},
      [&](OpBuilder &b, Location l, Value a, ValueRange it) {
        Value e = expertOf(b, l, a);
        Value pos = tensor::ExtractOp::create(b, l, it[1], ValueRange{e});
        Value p = tensor::InsertOp::create(b, l, toI32(b, l, a), it[0],
                                           ValueRange{toIndex(b, l, pos)});
        Value c = tensor::InsertOp::create(b, l, arith::AddIOp::create(b, l, pos, one), it[1],
                                           ValueRange{e});
        scf::YieldOp::create(b, l, ValueRange{p, c});
      });
  (void)cE;
  rw.replaceOp(op, {castTo(rw, loc, scatter.getResult(0), op.getPermutation().getType()),
                    castTo(rw, loc, offsets, op.getExpertOffsets().getType())});
  return success();
}

/// rows[r] = x[perm[r] / k], as a [R, D] tensor of `elementType`.
Value gatherRows(OpBuilder &b, Location loc, Value x, Value perm, int64_t k, Type elementType) {
  OpFoldResult rows = sizeOf(b, loc, perm, 0);
  OpFoldResult cols = sizeOf(b, loc, x, 1);
  Value out = emptyTensor(b, loc, {rows, cols}, elementType);
  MLIRContext *ctx = b.getContext();
  AffineExpr r, d;
  bindDims(ctx, r, d);
  SmallVector<AffineMap> maps = {AffineMap::get(2, 0, {r}, ctx),
                                 AffineMap::get(2, 0, {r, d}, ctx)};
  Value cK = indexConst(b, loc, k);
  return generic(b, loc, perm, out, maps, parallelIterators(2),
                 [&](OpBuilder &nb, Location l, ValueRange a) {
                   Value token = arith::DivUIOp::create(nb, l, toIndex(nb, l, a[0]), cK);
                   Value col = linalg::IndexOp::create(nb, l, 1);
                   Value v = tensor::ExtractOp::create(nb, l, x, ValueRange{token, col});
                   return convertFloat(nb, l, v, elementType);
                 });
}

LogicalResult lowerGatherRows(GatherRowsOp op, PatternRewriter &rw) {
  Value y = gatherRows(rw, op.getLoc(), op.getInput(), op.getPermutation(), op.getK(),
                       elementTypeOf(op.getRows()));
  rw.replaceOp(op, castTo(rw, op.getLoc(), y, op.getType()));
  return success();
}

//===----------------------------------------------------------------------===//
// Expert GEMMs
//===----------------------------------------------------------------------===//

/// The rank-reduced [N, K] slice of expert `e` from a stacked [E, N, K] tensor.
Value expertSlice(OpBuilder &b, Location loc, Value weights, Value e) {
  auto type = tensorTypeOf(weights);
  auto sliceType = RankedTensorType::get({type.getDimSize(1), type.getDimSize(2)},
                                         type.getElementType());
  SmallVector<OpFoldResult> offsets = {e, b.getIndexAttr(0), b.getIndexAttr(0)};
  SmallVector<OpFoldResult> sizes = {b.getIndexAttr(1), b.getIndexAttr(type.getDimSize(1)),
                                     b.getIndexAttr(type.getDimSize(2))};
  SmallVector<OpFoldResult> strides(3, b.getIndexAttr(1));
  return tensor::ExtractSliceOp::create(b, loc, sliceType, weights, offsets, sizes, strides);
}

/// Expert e's slice of the stacked [E, N, X] `weight` in panel order (its arena `view`):
/// the same bytes seen as [E, N / cols, X, cols], then [N / cols, X, cols] of expert e.
Value panelSlice(OpBuilder &b, Location loc, Value weight, memref::ViewOp view, int64_t cols,
                 Value e) {
  auto type = tensorTypeOf(weight);
  SmallVector<int64_t> shape = {type.getDimSize(0), type.getDimSize(1) / cols,
                                type.getDimSize(2), cols};
  auto bytes = memref::ViewOp::create(b, loc, MemRefType::get(shape, type.getElementType()),
                                      view.getSource(), view.getByteShift(), ValueRange{});
  Value all = bufferization::ToTensorOp::create(
      b, loc, RankedTensorType::get(shape, type.getElementType()), bytes,
      /*restrict=*/true, /*writable=*/false);
  SmallVector<OpFoldResult> offsets = {e, b.getIndexAttr(0), b.getIndexAttr(0),
                                       b.getIndexAttr(0)};
  SmallVector<OpFoldResult> sizes = {b.getIndexAttr(1), b.getIndexAttr(shape[1]),
                                     b.getIndexAttr(shape[2]), b.getIndexAttr(shape[3])};
  SmallVector<OpFoldResult> strides(4, b.getIndexAttr(1));
  return tensor::ExtractSliceOp::create(
      b, loc, RankedTensorType::get({shape[1], shape[2], shape[3]}, type.getElementType()), all,
      offsets, sizes, strides);
}

/// Expert `e`'s weight: its data and, when quantized, its scales.
Weight expertWeight(OpBuilder &b, Location loc, const Weight &w, Value e) {
  Weight expert(expertSlice(b, loc, w.data, e),
                w.scale ? expertSlice(b, loc, w.scale, e) : Value(), w.quant);
  if (memref::ViewOp view = panelView(w.data)) {
    expert.panels = cast<PanelsAttr>(view->getAttr("moe.panels"));
    expert.panelData = panelSlice(b, loc, w.data, view, expert.panels.getCols(), e);
    if (w.quant) { // q8: the scales are in panel order too (moe-quantize-weights)
      memref::ViewOp scaleView = panelView(w.scale);
      assert(scaleView && "q8 codes in panel order without their scales");
      expert.panelScale = panelSlice(b, loc, w.scale, scaleView, expert.panels.getCols(), e);
    }
  }
  return expert;
}

Value rowSlice(OpBuilder &b, Location loc, Value t, Value lo, Value len) {
  SmallVector<OpFoldResult> offsets = {lo, b.getIndexAttr(0)};
  SmallVector<OpFoldResult> sizes = {len, sizeOf(b, loc, t, 1)};
  SmallVector<OpFoldResult> strides(2, b.getIndexAttr(1));
  return tensor::ExtractSliceOp::create(b, loc, t, offsets, sizes, strides);
}

using ExpertBodyFn =
    function_ref<Value(OpBuilder &, Location, Value e, Value lo, Value len, Value dest)>;

/// scf.for over experts; expert e owns rows [offsets[e], offsets[e+1]) of `out`. `body`
/// returns the new contents of those rows (shape [len, N]) given `dest`, the current ones.
Value forEachExpert(OpBuilder &b, Location loc, Value offsets, Value out, ExpertBodyFn body) {
  int64_t numExperts = tensorTypeOf(offsets).getDimSize(0) - 1;
  Value c0 = indexConst(b, loc, 0), c1 = indexConst(b, loc, 1);
  Value cE = indexConst(b, loc, numExperts);
  auto loop = scf::ForOp::create(
      b, loc, c0, cE, c1, ValueRange{out},
      [&](OpBuilder &b, Location l, Value e, ValueRange it) {
        Value lo = toIndex(b, l, tensor::ExtractOp::create(b, l, offsets, ValueRange{e}));
        Value hi = toIndex(b, l, tensor::ExtractOp::create(
                                     b, l, offsets, ValueRange{arith::AddIOp::create(b, l, e, c1)}));
        Value len = arith::SubIOp::create(b, l, hi, lo);
        Value dest = rowSlice(b, l, it[0], lo, len);
        Value rows = body(b, l, e, lo, len, dest);
        SmallVector<OpFoldResult> offs = {lo, b.getIndexAttr(0)};
        SmallVector<OpFoldResult> sizes = {len, sizeOf(b, l, it[0], 1)};
        SmallVector<OpFoldResult> strides(2, b.getIndexAttr(1));
        Value next = tensor::InsertSliceOp::create(b, l, rows, it[0], offs, sizes, strides);
        scf::YieldOp::create(b, l, ValueRange{next});
      });
  return loop.getResult(0);
}

/// out[r] = rows[r] · W[e(r)]ᵀ for expert-grouped rows; result [R, N] of `elementType`.
Value groupedMatmul(OpBuilder &b, Location loc, Value rows, const Weight &weights, Value offsets,
                    Type elementType) {
  auto wType = tensorTypeOf(weights.data);
  Value out = emptyTensor(b, loc, {sizeOf(b, loc, rows, 0), b.getIndexAttr(wType.getDimSize(1))},
                          elementType);
  return forEachExpert(b, loc, offsets, out,
                       [&](OpBuilder &b, Location l, Value e, Value lo, Value len, Value dest) {
                         Value x = rowSlice(b, l, rows, lo, len);
                         return linearInto(b, l, x, expertWeight(b, l, weights, e), elementType,
                                           dest);
                       });
}

LogicalResult lowerGroupedMatmul(GroupedMatmulOp op, PatternRewriter &rw) {
  Weight w(op.getWeights(), op.getWeightsScale(), op.getQuantAttr());
  Value y = groupedMatmul(rw, op.getLoc(), op.getRows(), w, op.getExpertOffsets(),
                          elementTypeOf(op.getResult()));
  rw.replaceOp(op, castTo(rw, op.getLoc(), y, op.getType()));
  return success();
}

/// silu(g) * u = g / (1 + exp(-g)) * u, in f32.
Value swigluScalar(OpBuilder &b, Location loc, Value gate, Value up, Type elementType) {
  Value g = toF32(b, loc, gate), u = toF32(b, loc, up);
  Value one = f32Const(b, loc, 1.0);
  Value e = math::ExpOp::create(b, loc, arith::NegFOp::create(b, loc, g));
  Value silu = arith::DivFOp::create(b, loc, g, arith::AddFOp::create(b, loc, one, e));
  return convertFloat(b, loc, arith::MulFOp::create(b, loc, silu, u), elementType);
}

Value swiglu(OpBuilder &b, Location loc, Value gate, Value up, Value dest) {
  Type elementType = elementTypeOf(dest);
  return elementwise(b, loc, ValueRange{gate, up}, dest,
                     [&](OpBuilder &nb, Location l, ValueRange a) {
                       return swigluScalar(nb, l, a[0], a[1], elementType);
                     });
}

LogicalResult lowerSwiGLU(SwiGLUOp op, PatternRewriter &rw) {
  Location loc = op.getLoc();
  auto type = op.getType();
  SmallVector<OpFoldResult> sizes;
  for (int64_t d = 0; d < type.getRank(); ++d)
    sizes.push_back(sizeOf(rw, loc, op.getGate(), d));
  Value y = swiglu(rw, loc, op.getGate(), op.getUp(),
                   emptyTensor(rw, loc, sizes, type.getElementType()));
  rw.replaceOp(op, castTo(rw, loc, y, type));
  return success();
}

/// y[t] = sum over s < k (in order) of weights[t, s] * rows[inverse[t*k + s]].
Value combine(OpBuilder &b, Location loc, Value rows, Value perm, Value weights,
              Type elementType) {
  int64_t k = tensorTypeOf(weights).getDimSize(1);
  Type i32 = b.getI32Type(), f32 = b.getF32Type();
  Value c0 = indexConst(b, loc, 0), c1 = indexConst(b, loc, 1);
  Value numRows = dimOf(b, loc, perm, 0);
  // inverse[a] = the grouped row of assignment a.
  Value inverse = emptyTensor(b, loc, {sizeOf(b, loc, perm, 0)}, i32);
  inverse = scf::ForOp::create(
                b, loc, c0, numRows, c1, ValueRange{inverse},
                [&](OpBuilder &b, Location l, Value r, ValueRange it) {
                  Value a = toIndex(b, l, tensor::ExtractOp::create(b, l, perm, ValueRange{r}));
                  scf::YieldOp::create(
                      b, l, ValueRange{tensor::InsertOp::create(b, l, toI32(b, l, r), it[0], ValueRange{a})});
                })
                .getResult(0);
  SmallVector<OpFoldResult> sizes = {sizeOf(b, loc, weights, 0), sizeOf(b, loc, rows, 1)};
  Value acc = zeros(b, loc, sizes, f32);
  MLIRContext *ctx = b.getContext();
  AffineExpr t, d, s;
  bindDims(ctx, t, d, s);
  SmallVector<AffineMap> maps = {AffineMap::get(3, 0, {t, s}, ctx),
                                 AffineMap::get(3, 0, {t, d}, ctx)};
  SmallVector<utils::IteratorType> iterators = {utils::IteratorType::parallel,
                                                utils::IteratorType::parallel,
                                                utils::IteratorType::reduction};
  Value cK = indexConst(b, loc, k);
  Value y = generic(b, loc, weights, acc, maps, iterators,
                    [&](OpBuilder &nb, Location l, ValueRange a) {
                      Value ti = linalg::IndexOp::create(nb, l, 0);
                      Value di = linalg::IndexOp::create(nb, l, 1);
                      Value si = linalg::IndexOp::create(nb, l, 2);
                      Value assignment =
                          arith::AddIOp::create(nb, l, arith::MulIOp::create(nb, l, ti, cK), si);
                      Value r = toIndex(nb, l, tensor::ExtractOp::create(nb, l, inverse,
                                                                         ValueRange{assignment}));
                      Value v = toF32(nb, l, tensor::ExtractOp::create(nb, l, rows, ValueRange{r, di}));
                      Value w = toF32(nb, l, a[0]);
                      return arith::AddFOp::create(nb, l, a[1], arith::MulFOp::create(nb, l, w, v))
                          .getResult();
                    });
  if (elementType == f32)
    return y;
  return elementwise(b, loc, y, emptyTensor(b, loc, sizes, elementType),
                     [&](OpBuilder &nb, Location l, ValueRange a) {
                       return convertFloat(nb, l, a[0], elementType);
                     });
}

LogicalResult lowerCombine(CombineOp op, PatternRewriter &rw) {
  Value y = combine(rw, op.getLoc(), op.getExpertOut(), op.getPermutation(),
                    op.getRoutingWeights(), elementTypeOf(op.getResult()));
  rw.replaceOp(op, castTo(rw, op.getLoc(), y, op.getType()));
  return success();
}

/// Gathers the token rows once, then per expert: two GEMMs against w1/w3 and SwiGLU.
LogicalResult lowerGroupedSwiGLU(GroupedSwiGLUOp op, PatternRewriter &rw) {
  Location loc = op.getLoc();
  Type elementType = elementTypeOf(op.getResult());
  Value x = op.getInput();
  Value rows = gatherRows(rw, loc, x, op.getPermutation(), op.getK(), elementTypeOf(x));
  auto w1Type = tensorTypeOf(op.getW1());
  Value out = emptyTensor(rw, loc, {sizeOf(rw, loc, rows, 0), rw.getIndexAttr(w1Type.getDimSize(1))},
                          elementType);
  Value h = forEachExpert(
      rw, loc, op.getExpertOffsets(), out,
      [&](OpBuilder &b, Location l, Value e, Value lo, Value len, Value dest) {
        Value xe = rowSlice(b, l, rows, lo, len);
        Type f32 = b.getF32Type();
        Weight w1(op.getW1(), op.getW1Scale(), op.getQuantAttr());
        Weight w3(op.getW3(), op.getW3Scale(), op.getQuantAttr());
        Value gate = linearInto(b, l, xe, expertWeight(b, l, w1, e), f32);
        Value up = linearInto(b, l, xe, expertWeight(b, l, w3, e), f32);
        return swiglu(b, l, gate, up, dest);
      });
  rw.replaceOp(op, castTo(rw, loc, h, op.getType()));
  return success();
}

/// The down projection per expert into an f32 [R, D] buffer, then the ordered combine.
LogicalResult lowerGroupedMatmulCombine(GroupedMatmulCombineOp op, PatternRewriter &rw) {
  Location loc = op.getLoc();
  Value down = groupedMatmul(rw, loc, op.getRows(),
                             Weight(op.getW2(), op.getW2Scale(), op.getQuantAttr()),
                             op.getExpertOffsets(),
                             rw.getF32Type());
  Value y = combine(rw, loc, down, op.getPermutation(), op.getRoutingWeights(),
                    elementTypeOf(op.getResult()));
  rw.replaceOp(op, castTo(rw, loc, y, op.getType()));
  return success();
}

//===----------------------------------------------------------------------===//
// Dense layer parts
//===----------------------------------------------------------------------===//

LogicalResult lowerEmbedding(EmbeddingOp op, PatternRewriter &rw) {
  Location loc = op.getLoc();
  Value table = op.getTable(), ids = op.getIds();
  Type elementType = elementTypeOf(op.getResult());
  Value out = emptyTensor(rw, loc, {sizeOf(rw, loc, ids, 0), sizeOf(rw, loc, table, 1)},
                          elementType);
  MLIRContext *ctx = rw.getContext();
  AffineExpr t, d;
  bindDims(ctx, t, d);
  SmallVector<AffineMap> maps = {AffineMap::get(2, 0, {t}, ctx), AffineMap::get(2, 0, {t, d}, ctx)};
  Value y = generic(rw, loc, ids, out, maps, parallelIterators(2),
                    [&](OpBuilder &nb, Location l, ValueRange a) {
                      Value col = linalg::IndexOp::create(nb, l, 1);
                      Value v = tensor::ExtractOp::create(nb, l, table,
                                                          ValueRange{toIndex(nb, l, a[0]), col});
                      return convertFloat(nb, l, v, elementType);
                    });
  rw.replaceOp(op, castTo(rw, loc, y, op.getType()));
  return success();
}

/// y = (x / sqrt(mean(x²) + eps)) * weight, statistics in f32, the normalised value rounded
/// to the activation type before the weight multiplies it (as Hugging Face does).
LogicalResult lowerRMSNorm(RMSNormOp op, PatternRewriter &rw) {
  Location loc = op.getLoc();
  Value x = op.getInput(), w = op.getWeight();
  auto xType = tensorTypeOf(x);
  int64_t rank = xType.getRank();
  Type f32 = rw.getF32Type(), act = xType.getElementType();
  Type elementType = elementTypeOf(op.getResult());
  SmallVector<OpFoldResult> sizes, rowSizes;
  for (int64_t d = 0; d < rank; ++d)
    sizes.push_back(sizeOf(rw, loc, x, d));
  rowSizes.assign(sizes.begin(), sizes.end() - 1);
  MLIRContext *ctx = rw.getContext();
  AffineMap id = rw.getMultiDimIdentityMap(rank);
  AffineMap rowMap = id.dropResult(rank - 1);
  AffineMap colMap = AffineMap::get(rank, 0, {rw.getAffineDimExpr(rank - 1)}, ctx);
  SmallVector<utils::IteratorType> iterators = parallelIterators(rank);
  iterators.back() = utils::IteratorType::reduction;
  Value sumSq = generic(rw, loc, x, zeros(rw, loc, rowSizes, f32), {id, rowMap}, iterators,
                        [&](OpBuilder &nb, Location l, ValueRange a) {
                          Value v = toF32(nb, l, a[0]);
                          return arith::AddFOp::create(nb, l, a[1],
                                                       arith::MulFOp::create(nb, l, v, v))
                              .getResult();
                        });
  int64_t width = xType.getDimSize(rank - 1);
  Value n = f32Const(rw, loc, static_cast<double>(width));
  Value eps = f32Const(rw, loc, op.getEpsilon().convertToDouble());
  Value y = generic(rw, loc, ValueRange{x, sumSq, w}, emptyTensor(rw, loc, sizes, elementType),
                    {id, rowMap, colMap, id}, parallelIterators(rank),
                    [&](OpBuilder &nb, Location l, ValueRange a) {
                      Value mean = arith::DivFOp::create(nb, l, a[1], n);
                      Value rms = math::SqrtOp::create(nb, l, arith::AddFOp::create(nb, l, mean, eps));
                      Value normed = arith::DivFOp::create(nb, l, toF32(nb, l, a[0]), rms);
                      normed = toF32(nb, l, convertFloat(nb, l, normed, act));
                      Value scaled = arith::MulFOp::create(nb, l, normed, toF32(nb, l, a[2]));
                      return convertFloat(nb, l, scaled, elementType);
                    });
  rw.replaceOp(op, castTo(rw, loc, y, op.getType()));
  return success();
}

LogicalResult lowerLinear(LinearOp op, PatternRewriter &rw) {
  Value y = linearInto(rw, op.getLoc(), op.getInput(),
                       Weight(op.getWeight(), op.getWeightScale(), op.getQuantAttr()),
                       elementTypeOf(op.getResult()));
  rw.replaceOp(op, castTo(rw, op.getLoc(), y, op.getType()));
  return success();
}

/// The absolute position (index) of row `t`.
using PositionFn = function_ref<Value(OpBuilder &, Location, Value t)>;

/// Half-split RoPE. inv_freq[i] = 1 / theta^(2i / HD) with the exponent and the power in f32
/// (as HF computes it), angle = f32(position(t)) * inv_freq[i].
Value rope(PatternRewriter &rw, Location loc, Value x, double thetaValue, Type elementType,
           PositionFn position) {
  auto xType = tensorTypeOf(x);
  int64_t headDim = xType.getDimSize(2), half = headDim / 2;
  Type f32 = rw.getF32Type();
  SmallVector<OpFoldResult> sizes = {sizeOf(rw, loc, x, 0), sizeOf(rw, loc, x, 1),
                                     rw.getIndexAttr(headDim)};
  Value theta = f32Const(rw, loc, thetaValue);
  Value hd = f32Const(rw, loc, static_cast<double>(headDim));
  Value cHalf = indexConst(rw, loc, half);
  Value one = f32Const(rw, loc, 1.0);
  Value y = elementwise(
      rw, loc, x, emptyTensor(rw, loc, sizes, elementType),
      [&](OpBuilder &b, Location l, ValueRange a) {
        Value t = linalg::IndexOp::create(b, l, 0);
        Value h = linalg::IndexOp::create(b, l, 1);
        Value d = linalg::IndexOp::create(b, l, 2);
        Value firstHalf = arith::CmpIOp::create(b, l, arith::CmpIPredicate::ult, d, cHalf);
        Value i = arith::SelectOp::create(b, l, firstHalf, d,
                                          arith::SubIOp::create(b, l, d, cHalf));
        Value partner = arith::SelectOp::create(b, l, firstHalf,
                                                arith::AddIOp::create(b, l, d, cHalf), i);
        Value twoI = arith::AddIOp::create(b, l, i, i);
        Value exponent = arith::DivFOp::create(
            b, l, arith::SIToFPOp::create(b, l, f32, arith::IndexCastOp::create(b, l, b.getI64Type(), twoI)),
            hd);
        Value invFreq = arith::DivFOp::create(b, l, one, math::PowFOp::create(b, l, theta, exponent));
        Value pos = position(b, l, t);
        Value posF = arith::SIToFPOp::create(b, l, f32, arith::IndexCastOp::create(b, l, b.getI64Type(), pos));
        Value angle = arith::MulFOp::create(b, l, posF, invFreq);
        Value c = math::CosOp::create(b, l, angle);
        Value s = math::SinOp::create(b, l, angle);
        Value self = toF32(b, l, a[0]);
        Value other = toF32(b, l, tensor::ExtractOp::create(b, l, x, ValueRange{t, h, partner}));
        Value xc = arith::MulFOp::create(b, l, self, c);
        Value os = arith::MulFOp::create(b, l, other, s);
        Value v = arith::SelectOp::create(b, l, firstHalf, arith::SubFOp::create(b, l, xc, os),
                                          arith::AddFOp::create(b, l, xc, os));
        return convertFloat(b, l, v, elementType);
      });
  return y;
}

LogicalResult lowerRoPE(RoPEOp op, PatternRewriter &rw) {
  Value start = op.getStart();
  Value y = rope(rw, op.getLoc(), op.getInput(), op.getTheta().convertToDouble(),
                 elementTypeOf(op.getResult()), [&](OpBuilder &b, Location l, Value t) -> Value {
                   return arith::AddIOp::create(b, l, start, t);
                 });
  rw.replaceOp(op, castTo(rw, op.getLoc(), y, op.getType()));
  return success();
}

/// q[T, H, HD] viewed as [T, KVH, G, HD] (query head h = kh * G + g reads KV head kh).
Value groupedQueries(PatternRewriter &rw, Location loc, Value q, int64_t kvHeads) {
  auto qType = tensorTypeOf(q);
  int64_t group = qType.getDimSize(1) / kvHeads, headDim = qType.getDimSize(2);
  auto q4Type = RankedTensorType::get({qType.getDimSize(0), kvHeads, group, headDim},
                                      qType.getElementType());
  return tensor::ExpandShapeOp::create(
      rw, loc, q4Type, q, SmallVector<ReassociationIndices>{{0}, {1, 2}, {3}},
      SmallVector<OpFoldResult>{sizeOf(rw, loc, q, 0), rw.getIndexAttr(kvHeads),
                                rw.getIndexAttr(group), rw.getIndexAttr(headDim)});
}

/// out4[T, KVH, G, HD] collapsed back to the op's [T, H, HD] result.
void replaceWithHeads(PatternRewriter &rw, Operation *op, Value out4) {
  auto type = tensorTypeOf(out4);
  auto outType = RankedTensorType::get(
      {type.getDimSize(0), type.getDimSize(1) * type.getDimSize(2), type.getDimSize(3)},
      type.getElementType());
  Value out = tensor::CollapseShapeOp::create(rw, op->getLoc(), outType, out4,
                                              SmallVector<ReassociationIndices>{{0}, {1, 2}, {3}});
  rw.replaceOp(op, castTo(rw, op->getLoc(), out, op->getResult(0).getType()));
}

/// Causal GQA attention of the T new queries over cache positions [0, start + T): the
/// tiled online-softmax kernel (OnlineAttention.h), query t at position start + t.
LogicalResult lowerAttention(AttentionOp op, PatternRewriter &rw) {
  Location loc = op.getLoc();
  Value q = op.getQuery(), start = op.getStart();
  auto qType = tensorTypeOf(q), kType = tensorTypeOf(op.getKeyCache());
  int64_t kvHeads = kType.getDimSize(1), headDim = qType.getDimSize(2);
  AttentionGeometry geometry{kvHeads, qType.getDimSize(1) / kvHeads, headDim,
                             op.getScale().convertToDouble(), op.getSlidingWindow(),
                             elementTypeOf(op.getResult())};
  // Only the positions written so far: L = start + T.
  Value length = arith::AddIOp::create(rw, loc, start, dimOf(rw, loc, q, 0));
  auto cacheSlice = [&](Value cache) {
    SmallVector<OpFoldResult> offs(3, rw.getIndexAttr(0));
    SmallVector<OpFoldResult> sizes = {length, rw.getIndexAttr(kvHeads), rw.getIndexAttr(headDim)};
    SmallVector<OpFoldResult> strides(3, rw.getIndexAttr(1));
    return tensor::ExtractSliceOp::create(rw, loc, cache, offs, sizes, strides).getResult();
  };
  Value out4 = buildOnlineAttention(
      rw, loc, groupedQueries(rw, loc, q, kvHeads), cacheSlice(op.getKeyCache()),
      cacheSlice(op.getValueCache()), geometry,
      [&](OpBuilder &b, Location l, Value t) -> Value {
        return arith::AddIOp::create(b, l, start, t);
      },
      [](OpBuilder &, Location, Value, Value at) { return at; });
  replaceWithHeads(rw, op, out4);
  return success();
}

//===----------------------------------------------------------------------===//
// The batched step: per-row positions and a paged KV pool
//===----------------------------------------------------------------------===//

/// The i32 element `t` (or [t, i]) of `tensor`, as an index.
Value extractIndex(OpBuilder &b, Location loc, Value tensor, ValueRange at) {
  return toIndex(b, loc, tensor::ExtractOp::create(b, loc, tensor, at));
}

LogicalResult lowerRoPEAt(RoPEAtOp op, PatternRewriter &rw) {
  Value positions = op.getPositions();
  Value y = rope(rw, op.getLoc(), op.getInput(), op.getTheta().convertToDouble(),
                 elementTypeOf(op.getResult()), [&](OpBuilder &b, Location l, Value t) {
                   return extractIndex(b, l, positions, ValueRange{t});
                 });
  rw.replaceOp(op, castTo(rw, op.getLoc(), y, op.getType()));
  return success();
}

/// Row t goes to block tables[t, p / B], slot p % B: one insert_slice per row into the pool,
/// which bufferizes into a copy of KVH*HD elements in place in the runtime's pool.
LogicalResult lowerPagedKVWrite(PagedKVWriteOp op, PatternRewriter &rw) {
  Location loc = op.getLoc();
  Value update = op.getUpdate(), tables = op.getBlockTables(), positions = op.getPositions();
  auto poolType = tensorTypeOf(op.getPool());
  int64_t blockSize = poolType.getDimSize(1), kvHeads = poolType.getDimSize(2),
          headDim = poolType.getDimSize(3);
  auto rowType = RankedTensorType::get({kvHeads, headDim}, elementTypeOf(update));
  Value c0 = indexConst(rw, loc, 0), c1 = indexConst(rw, loc, 1);
  Value cB = indexConst(rw, loc, blockSize);
  auto loop = scf::ForOp::create(
      rw, loc, c0, dimOf(rw, loc, update, 0), c1, ValueRange{op.getPool()},
      [&](OpBuilder &b, Location l, Value t, ValueRange it) {
        Value p = extractIndex(b, l, positions, ValueRange{t});
        Value block = extractIndex(b, l, tables, ValueRange{t, arith::DivUIOp::create(b, l, p, cB)});
        Value slot = arith::RemUIOp::create(b, l, p, cB);
        SmallVector<OpFoldResult> one = {b.getIndexAttr(1), b.getIndexAttr(1),
                                         b.getIndexAttr(1), b.getIndexAttr(1)};
        Value row = tensor::ExtractSliceOp::create(
            b, l, rowType, update, ArrayRef<OpFoldResult>{t, b.getIndexAttr(0), b.getIndexAttr(0)},
            ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(kvHeads), b.getIndexAttr(headDim)},
            ArrayRef<OpFoldResult>(one).drop_back());
        Value next = tensor::InsertSliceOp::create(
            b, l, row, it[0],
            ArrayRef<OpFoldResult>{block, slot, b.getIndexAttr(0), b.getIndexAttr(0)},
            ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1), b.getIndexAttr(kvHeads),
                                   b.getIndexAttr(headDim)},
            one);
        scf::YieldOp::create(b, l, next);
      });
  rw.replaceOp(op, castTo(rw, loc, loop.getResult(0), op.getType()));
  return success();
}

/// GQA attention of rows at their own positions over the paged pool: the kernel of
/// `lowerAttention` (same key tiles, same order, same update, hence the same bits for a row
/// at the same position), reading position `at` of row t at pool row
/// tables[t, at / B] * B + at % B.
LogicalResult lowerPagedAttention(PagedAttentionOp op, PatternRewriter &rw) {
  Location loc = op.getLoc();
  Value q = op.getQuery(), tables = op.getBlockTables(), positions = op.getPositions();
  auto qType = tensorTypeOf(q), poolType = tensorTypeOf(op.getKeyPool());
  int64_t blockSize = poolType.getDimSize(1), kvHeads = poolType.getDimSize(2);
  AttentionGeometry geometry{kvHeads, qType.getDimSize(1) / kvHeads, qType.getDimSize(2),
                             op.getScale().convertToDouble(), op.getSlidingWindow(),
                             elementTypeOf(op.getResult())};
  // Pools viewed as [n_blocks * B, KVH, HD].
  auto flatPool = [&](Value pool) -> Value {
    return tensor::CollapseShapeOp::create(rw, loc, pool,
                                           SmallVector<ReassociationIndices>{{0, 1}, {2}, {3}});
  };
  Value out4 = buildOnlineAttention(
      rw, loc, groupedQueries(rw, loc, q, kvHeads), flatPool(op.getKeyPool()),
      flatPool(op.getValuePool()), geometry,
      [&](OpBuilder &b, Location l, Value t) {
        return extractIndex(b, l, positions, ValueRange{t});
      },
      [&](OpBuilder &b, Location l, Value t, Value at) -> Value {
        Value cB = indexConst(b, l, blockSize);
        Value block = extractIndex(b, l, tables, ValueRange{t, arith::DivUIOp::create(b, l, at, cB)});
        return arith::AddIOp::create(b, l, arith::MulIOp::create(b, l, block, cB),
                                     arith::RemUIOp::create(b, l, at, cB));
      });
  replaceWithHeads(rw, op, out4);
  return success();
}

struct MoeLowerToLinalg : mlir::moe::impl::MoeLowerToLinalgBase<MoeLowerToLinalg> {
  void runOnOperation() override {
    MLIRContext *ctx = &getContext();
    RewritePatternSet patterns(ctx);
    patterns.add(lowerRouter);
    patterns.add(lowerTopKGating);
    patterns.add(lowerDispatch);
    patterns.add(lowerGatherRows);
    patterns.add(lowerGroupedMatmul);
    patterns.add(lowerSwiGLU);
    patterns.add(lowerCombine);
    patterns.add(lowerGroupedSwiGLU);
    patterns.add(lowerGroupedMatmulCombine);
    patterns.add(lowerEmbedding);
    patterns.add(lowerRMSNorm);
    patterns.add(lowerLinear);
    patterns.add(lowerRoPE);
    patterns.add(lowerAttention);
    patterns.add(lowerRoPEAt);
    patterns.add(lowerPagedKVWrite);
    patterns.add(lowerPagedAttention);

    ConversionTarget target(*ctx);
    target.addIllegalDialect<MoeDialect>();
    target.markUnknownOpDynamicallyLegal([](Operation *) { return true; });
    if (failed(applyPartialConversion(getOperation(), target, std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
