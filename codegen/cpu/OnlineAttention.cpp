//===- OnlineAttention.cpp - tiled online-softmax attention on tensors ----===//
//
// One iteration of the kernel's scf.forall is one (KV head, query row): its G query heads
// share every key and value row read. Per key tile of kAttentionKeyTile positions:
//
//   s[g, j]  = (q_g · k_j) * scale, -inf where j is not visible     (FMAs over HD, one sum)
//   m'       = max(m, max_j s[g, j])
//   alpha    = exp(m - m'),  p[g, j] = exp(s[g, j] - m')
//   l'       = l * alpha + p[g, 0] + ... + p[g, kTile - 1]            (in this order)
//   acc'[g]  = acc[g] * alpha, then acc'[g] = fma(p[g, j], v_j, acc'[g]) for j ascending
//
// and at the end out[g] = acc[g] / l. Every operation is an explicit vector FMA or scalar op
// in a fixed order, so the row's bits depend only on its position, window and the cache.
// A row's tiles are those holding its visible positions, aligned at absolute multiples of
// the tile, so prefill, decode and the batched step walk the same tiles; the first tile has
// a visible key (lo <= p), which makes m finite after it (alpha = exp(-inf) = 0 there).
//
//===----------------------------------------------------------------------===//

#include "OnlineAttention.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

#include <limits>

using namespace mlir;

namespace mlir::moe {
namespace {

Value indexC(OpBuilder &b, Location loc, int64_t v) {
  return arith::ConstantIndexOp::create(b, loc, v);
}
Value f32C(OpBuilder &b, Location loc, double v) {
  return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(static_cast<float>(v)));
}

/// f32 lanes per vector: 8 (one AVX2 register) when the head dim allows.
int64_t lanesFor(int64_t headDim) {
  for (int64_t lanes : {8, 4, 2})
    if (headDim % lanes == 0)
      return lanes;
  return 1;
}

/// What every step of one forall iteration needs.
struct RowKernel {
  OpBuilder &b;
  Location loc;
  const AttentionGeometry &geo;
  int64_t lanes, chunks;  // HD = lanes * chunks
  VectorType f32Vec;
  Value keys, values, kh; // kh: this iteration's KV head
  Value t, p, lo;         // query row, its position and first visible position
  CacheRowFn cacheRow;

  /// HD values of (row, kh) widened to f32, one vector per chunk.
  SmallVector<Value> readRow(Value tensor, Value row) {
    SmallVector<Value> out;
    auto type = VectorType::get({lanes}, cast<ShapedType>(tensor.getType()).getElementType());
    for (int64_t c = 0; c < chunks; ++c) {
      Value v = vector::TransferReadOp::create(b, loc, type, tensor,
                                               ValueRange{row, kh, indexC(b, loc, c * lanes)},
                                               std::nullopt, ArrayRef<bool>{true});
      if (type != f32Vec)
        v = arith::ExtFOp::create(b, loc, f32Vec, v);
      out.push_back(v);
    }
    return out;
  }
  Value splat(Value scalar) { return vector::BroadcastOp::create(b, loc, f32Vec, scalar); }
  /// sum_c a[c] * x[c] as one FMA chain over the chunks and one lane sum.
  Value dot(ArrayRef<Value> a, ArrayRef<Value> x) {
    Value acc = arith::MulFOp::create(b, loc, a[0], x[0]);
    for (int64_t c = 1; c < chunks; ++c)
      acc = vector::FMAOp::create(b, loc, a[c], x[c], acc);
    return vector::ReductionOp::create(b, loc, vector::CombiningKind::ADD, acc);
  }
};

/// The running state of head g: [max, sum, acc chunks...] at g * stride in the iter_args.
int64_t stateStride(const RowKernel &k) { return 2 + k.chunks; }

/// One key tile starting at position `base`: the state after it.
SmallVector<Value> tileStep(RowKernel &k, ArrayRef<SmallVector<Value>> q, Value base,
                            ValueRange state) {
  OpBuilder &b = k.b;
  Location loc = k.loc;
  int64_t group = k.geo.group, stride = stateStride(k);
  Value scale = f32C(b, loc, k.geo.scale);
  Value negInf = f32C(b, loc, -std::numeric_limits<double>::infinity());
  // Scores: each key row read once for the G heads. Positions outside [lo, p] read the
  // clamped (visible, hence present) row and are masked.
  SmallVector<Value> rows;
  SmallVector<SmallVector<Value>> s(group);
  for (int64_t j = 0; j < kAttentionKeyTile; ++j) {
    Value at = arith::AddIOp::create(b, loc, base, indexC(b, loc, j));
    Value visible = arith::AndIOp::create(
        b, loc, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge, at, k.lo),
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ule, at, k.p));
    Value clamped = arith::MinUIOp::create(b, loc, arith::MaxUIOp::create(b, loc, at, k.lo), k.p);
    rows.push_back(k.cacheRow(b, loc, k.t, clamped));
    SmallVector<Value> key = k.readRow(k.keys, rows.back());
    for (int64_t g = 0; g < group; ++g) {
      Value score = arith::MulFOp::create(b, loc, k.dot(q[g], key), scale);
      s[g].push_back(arith::SelectOp::create(b, loc, visible, score, negInf));
    }
  }
  // The online-softmax update of max and sum; p[g, j] overwrites s[g, j].
  SmallVector<Value> next(state.begin(), state.end()), alpha(group);
  for (int64_t g = 0; g < group; ++g) {
    Value m = state[g * stride], tileMax = s[g][0];
    for (int64_t j = 1; j < kAttentionKeyTile; ++j)
      tileMax = arith::MaximumFOp::create(b, loc, tileMax, s[g][j]);
    Value mNew = arith::MaximumFOp::create(b, loc, m, tileMax);
    alpha[g] = math::ExpOp::create(b, loc, arith::SubFOp::create(b, loc, m, mNew));
    Value l = arith::MulFOp::create(b, loc, state[g * stride + 1], alpha[g]);
    for (int64_t j = 0; j < kAttentionKeyTile; ++j) {
      s[g][j] = math::ExpOp::create(b, loc, arith::SubFOp::create(b, loc, s[g][j], mNew));
      l = arith::AddFOp::create(b, loc, l, s[g][j]);
    }
    next[g * stride] = mNew;
    next[g * stride + 1] = l;
  }
  // The weighted sum of values: each value row read once for the G heads.
  SmallVector<Value> alphaV, pV;
  for (int64_t g = 0; g < group; ++g) {
    alphaV.push_back(k.splat(alpha[g]));
    for (int64_t j = 0; j < kAttentionKeyTile; ++j)
      pV.push_back(k.splat(s[g][j]));
  }
  for (int64_t g = 0; g < group; ++g)
    for (int64_t c = 0; c < k.chunks; ++c)
      next[g * stride + 2 + c] = arith::MulFOp::create(b, loc, state[g * stride + 2 + c], alphaV[g]);
  for (int64_t j = 0; j < kAttentionKeyTile; ++j) {
    SmallVector<Value> value = k.readRow(k.values, rows[j]);
    for (int64_t g = 0; g < group; ++g)
      for (int64_t c = 0; c < k.chunks; ++c) {
        Value &acc = next[g * stride + 2 + c];
        acc = vector::FMAOp::create(b, loc, pV[g * kAttentionKeyTile + j], value[c], acc);
      }
  }
  return next;
}

/// The G heads of row t: the loop over its key tiles, then acc / l written into `slice`
/// (tensor<G x HD>).
Value attendRow(RowKernel &k, Value q4, Value slice) {
  OpBuilder &b = k.b;
  Location loc = k.loc;
  int64_t group = k.geo.group, stride = stateStride(k);
  SmallVector<SmallVector<Value>> q(group);
  auto qType = VectorType::get({k.lanes}, cast<ShapedType>(q4.getType()).getElementType());
  for (int64_t g = 0; g < group; ++g)
    for (int64_t c = 0; c < k.chunks; ++c) {
      Value v = vector::TransferReadOp::create(
          b, loc, qType, q4,
          ValueRange{k.t, k.kh, indexC(b, loc, g), indexC(b, loc, c * k.lanes)}, std::nullopt,
          ArrayRef<bool>{true});
      q[g].push_back(qType == k.f32Vec ? v : arith::ExtFOp::create(b, loc, k.f32Vec, v));
    }
  SmallVector<Value> init;
  Value zeroV = arith::ConstantOp::create(b, loc, k.f32Vec, DenseElementsAttr::get(k.f32Vec, 0.0f));
  for (int64_t g = 0; g < group; ++g) {
    init.push_back(f32C(b, loc, -std::numeric_limits<double>::infinity()));
    init.push_back(f32C(b, loc, 0.0));
    init.append(k.chunks, zeroV);
  }
  Value tile = indexC(b, loc, kAttentionKeyTile);
  Value first = arith::DivUIOp::create(b, loc, k.lo, tile);
  Value last = arith::AddIOp::create(b, loc, arith::DivUIOp::create(b, loc, k.p, tile),
                                     indexC(b, loc, 1));
  auto loop = scf::ForOp::create(b, loc, first, last, indexC(b, loc, 1), init);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToEnd(loop.getBody());
    Value base = arith::MulIOp::create(b, loc, loop.getInductionVar(), tile);
    scf::YieldOp::create(b, loc, tileStep(k, q, base, loop.getRegionIterArgs()));
  }
  auto outType = VectorType::get({k.lanes}, k.geo.resultType);
  for (int64_t g = 0; g < group; ++g) {
    Value l = k.splat(loop.getResult(g * stride + 1));
    for (int64_t c = 0; c < k.chunks; ++c) {
      Value o = arith::DivFOp::create(b, loc, loop.getResult(g * stride + 2 + c), l);
      if (outType != k.f32Vec)
        o = arith::TruncFOp::create(b, loc, outType, o);
      slice = vector::TransferWriteOp::create(
                  b, loc, o, slice, ValueRange{indexC(b, loc, g), indexC(b, loc, c * k.lanes)},
                  ArrayRef<bool>{true})
                  .getResult();
    }
  }
  return slice;
}

} // namespace

Value buildOnlineAttention(OpBuilder &b, Location loc, Value q4, Value keys, Value values,
                           const AttentionGeometry &geo, RowPositionFn position,
                           CacheRowFn cacheRow) {
  OpBuilder::InsertionGuard guard(b);
  int64_t group = geo.group, headDim = geo.headDim;
  OpFoldResult tokens = tensor::getMixedSize(b, loc, q4, 0);
  Value out = tensor::EmptyOp::create(
      b, loc,
      ArrayRef<OpFoldResult>{tokens, b.getIndexAttr(geo.kvHeads), b.getIndexAttr(group),
                             b.getIndexAttr(headDim)},
      geo.resultType);
  auto forall = scf::ForallOp::create(
      b, loc, ArrayRef<OpFoldResult>{b.getIndexAttr(geo.kvHeads), tokens}, ValueRange{out},
      std::nullopt);
  Value kh = forall.getInductionVars()[0], t = forall.getInductionVars()[1];
  Value shared = forall.getRegionIterArgs()[0];
  b.setInsertionPoint(forall.getTerminator());
  Value p = position(b, loc, t);
  Value lo = indexC(b, loc, 0);
  if (geo.window) {
    // max(0, p - W + 1), in unsigned arithmetic: p + 1 - min(p + 1, W).
    Value p1 = arith::AddIOp::create(b, loc, p, indexC(b, loc, 1));
    Value w = indexC(b, loc, static_cast<int64_t>(*geo.window));
    lo = arith::SubIOp::create(b, loc, p1, arith::MinUIOp::create(b, loc, p1, w));
  }
  int64_t lanes = lanesFor(headDim);
  RowKernel kernel{b,    loc, geo, lanes, headDim / lanes, VectorType::get({lanes}, b.getF32Type()),
                   keys, values, kh, t, p, lo, cacheRow};
  SmallVector<OpFoldResult> offsets = {t, kh, b.getIndexAttr(0), b.getIndexAttr(0)};
  SmallVector<OpFoldResult> sizes = {b.getIndexAttr(1), b.getIndexAttr(1), b.getIndexAttr(group),
                                     b.getIndexAttr(headDim)};
  SmallVector<OpFoldResult> strides(4, b.getIndexAttr(1));
  auto sliceType = RankedTensorType::get({group, headDim}, geo.resultType);
  Value slice = tensor::ExtractSliceOp::create(b, loc, sliceType, shared, offsets, sizes, strides);
  slice = attendRow(kernel, q4, slice);
  b.setInsertionPointToStart(forall.getTerminator().getBody());
  tensor::ParallelInsertSliceOp::create(b, loc, slice, shared, offsets, sizes, strides);
  return forall.getResult(0);
}

} // namespace mlir::moe
