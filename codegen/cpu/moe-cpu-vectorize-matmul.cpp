//===- moe-cpu-vectorize-matmul.cpp - x·Wᵀ matmuls -> vector kernels ------===//
//
// Precondition: bufferized IR. Every `linalg.matmul` with maps (m, k), (n, k) -> (m, n),
// an f32 accumulator, static N and K, and unit stride along K in both operands becomes
//
//   scf.parallel over blocks of `block-cols` columns of the output     (OpenMP later)
//     scf.for over rows in groups of `tile-rows` (then the remaining rows one by one)
//       scf.for over columns in groups of `tile-cols` (then the remaining ones)
//         scf.for over K in steps of `vector-width`: tile-rows x tile-cols FMAs on
//           vector<width x f32> partial sums; weights loaded in their storage type and
//           widened with arith.extf; a masked load for the K % width tail
//         one horizontal add per output, added to C.
//
// Both operands of y = x Wᵀ are contiguous along K, so the partial sums run along K and
// neither operand needs a transpose; this is also the GEMV shape of one-token decode.
// Other ops are left alone.
//
//===----------------------------------------------------------------------===//

#include "moec/Codegen/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/PatternMatch.h"

#define DEBUG_TYPE "moe-cpu-vectorize-matmul"

namespace mlir::moe {
#define GEN_PASS_DEF_MOECPUVECTORIZEMATMUL
#include "moec/Codegen/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

struct KernelShape {
  int64_t width, tileRows, tileCols, blockCols;
};

bool hasUnitInnerStride(MemRefType type) {
  SmallVector<int64_t> strides;
  int64_t offset;
  if (failed(type.getStridesAndOffset(strides, offset)))
    return false;
  return !strides.empty() && strides.back() == 1;
}

/// Whether `op` is C[M, N] (f32) += A[M, K] · B[N, K]ᵀ on memrefs that the kernel handles.
bool isTransposedBMatmul(linalg::MatmulOp op) {
  if (!op.hasPureBufferSemantics() || op.getNumDpsInputs() != 2)
    return false;
  MLIRContext *ctx = op.getContext();
  AffineExpr m, n, k;
  bindDims(ctx, m, n, k);
  SmallVector<AffineMap> expected = {AffineMap::get(3, 0, {m, k}, ctx),
                                     AffineMap::get(3, 0, {n, k}, ctx),
                                     AffineMap::get(3, 0, {m, n}, ctx)};
  if (op.getIndexingMapsArray() != expected)
    return false;
  auto a = dyn_cast<MemRefType>(op.getDpsInputs()[0].getType());
  auto b = dyn_cast<MemRefType>(op.getDpsInputs()[1].getType());
  auto c = dyn_cast<MemRefType>(op.getDpsInits()[0].getType());
  if (!a || !b || !c || !c.getElementType().isF32())
    return false;
  if (!isa<FloatType>(a.getElementType()) || !isa<FloatType>(b.getElementType()))
    return false;
  if (a.getElementType().getIntOrFloatBitWidth() > 32 ||
      b.getElementType().getIntOrFloatBitWidth() > 32)
    return false;
  if (ShapedType::isDynamic(b.getDimSize(0)) || ShapedType::isDynamic(b.getDimSize(1)) ||
      ShapedType::isDynamic(a.getDimSize(1)))
    return false;
  return hasUnitInnerStride(a) && hasUnitInnerStride(b);
}

class KernelBuilder {
public:
  KernelBuilder(OpBuilder &b, Location loc, Value a, Value bMat, Value c, KernelShape shape)
      : b(b), loc(loc), a(a), w(bMat), c(c), shape(shape) {
    k = cast<MemRefType>(w.getType()).getDimSize(1);
    n = cast<MemRefType>(w.getType()).getDimSize(0);
    f32 = b.getF32Type();
    vecType = VectorType::get({shape.width}, f32);
  }

  void build() {
    Value c0 = idx(0), c1 = idx(1);
    int64_t numBlocks = (n + shape.blockCols - 1) / shape.blockCols;
    Value rows = memref::DimOp::create(b, loc, a, 0);
    scf::ParallelOp::create(
        b, loc, ValueRange{c0}, ValueRange{idx(numBlocks)}, ValueRange{c1},
        [&](OpBuilder &nb, Location l, ValueRange ivs) {
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPoint(nb.getInsertionBlock(), nb.getInsertionPoint());
          Value n0 = mul(ivs[0], idx(shape.blockCols));
          Value nEnd = arith::MinSIOp::create(b, loc, add(n0, idx(shape.blockCols)), idx(n));
          // Rows: full groups of tileRows, then the rest one at a time.
          Value fullRows = sub(rows, arith::RemUIOp::create(b, loc, rows, idx(shape.tileRows)));
          forLoop(c0, fullRows, shape.tileRows, [&](Value m0) {
            columns(m0, shape.tileRows, n0, nEnd);
          });
          forLoop(fullRows, rows, 1, [&](Value m0) { columns(m0, 1, n0, nEnd); });
        });
  }

private:
  Value idx(int64_t v) { return arith::ConstantIndexOp::create(b, loc, v); }
  Value add(Value x, Value y) { return arith::AddIOp::create(b, loc, x, y); }
  Value sub(Value x, Value y) { return arith::SubIOp::create(b, loc, x, y); }
  Value mul(Value x, Value y) { return arith::MulIOp::create(b, loc, x, y); }

  void forLoop(Value lo, Value hi, int64_t step, function_ref<void(Value)> body) {
    auto loop = scf::ForOp::create(b, loc, lo, hi, idx(step));
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(loop.getBody()->getTerminator());
    body(loop.getInductionVar());
  }

  void columns(Value m0, int64_t tileRows, Value n0, Value nEnd) {
    Value span = sub(nEnd, n0);
    Value fullEnd = add(n0, sub(span, arith::RemUIOp::create(b, loc, span, idx(shape.tileCols))));
    forLoop(n0, fullEnd, shape.tileCols, [&](Value c) { tile(m0, tileRows, c, shape.tileCols); });
    forLoop(fullEnd, nEnd, 1, [&](Value c) { tile(m0, tileRows, c, 1); });
  }

  /// Loads `width` elements of row `row` of `mem` from column `col` as f32 lanes;
  /// `mask` (optional) limits the lanes read, the others are 0.
  Value loadRow(Value mem, Value row, Value col, Value mask) {
    auto memType = cast<MemRefType>(mem.getType());
    Type elementType = memType.getElementType();
    auto rawType = VectorType::get({shape.width}, elementType);
    Value v;
    if (mask) {
      Value zero = arith::ConstantOp::create(b, loc, rawType,
                                             DenseElementsAttr::get(rawType, b.getZeroAttr(elementType)));
      v = vector::MaskedLoadOp::create(b, loc, rawType, mem, ValueRange{row, col}, mask, zero);
    } else {
      v = vector::LoadOp::create(b, loc, rawType, mem, ValueRange{row, col});
    }
    if (elementType != f32)
      v = arith::ExtFOp::create(b, loc, vecType, v);
    return v;
  }

  SmallVector<Value> fmaStep(ValueRange acc, Value m0, int64_t tileRows, Value n0,
                             int64_t tileCols, Value kk, Value mask) {
    SmallVector<Value> xs, ws;
    for (int64_t i = 0; i < tileRows; ++i)
      xs.push_back(loadRow(a, add(m0, idx(i)), kk, mask));
    for (int64_t j = 0; j < tileCols; ++j)
      ws.push_back(loadRow(w, add(n0, idx(j)), kk, mask));
    SmallVector<Value> next;
    for (int64_t i = 0; i < tileRows; ++i)
      for (int64_t j = 0; j < tileCols; ++j)
        next.push_back(vector::FMAOp::create(b, loc, xs[i], ws[j], acc[i * tileCols + j]));
    return next;
  }

  void tile(Value m0, int64_t tileRows, Value n0, int64_t tileCols) {
    Value zero = arith::ConstantOp::create(b, loc, vecType,
                                           DenseElementsAttr::get(vecType, b.getF32FloatAttr(0.0f)));
    SmallVector<Value> init(tileRows * tileCols, zero);
    int64_t fullK = k - k % shape.width;
    SmallVector<Value> acc = init;
    if (fullK > 0) {
      auto loop = scf::ForOp::create(
          b, loc, idx(0), idx(fullK), idx(shape.width), init,
          [&](OpBuilder &nb, Location l, Value kk, ValueRange it) {
            OpBuilder::InsertionGuard guard(b);
            b.setInsertionPoint(nb.getInsertionBlock(), nb.getInsertionPoint());
            SmallVector<Value> next = fmaStep(it, m0, tileRows, n0, tileCols, kk, nullptr);
            scf::YieldOp::create(b, loc, next);
          });
      acc.assign(loop.getResults().begin(), loop.getResults().end());
    }
    if (k % shape.width) {
      auto maskType = VectorType::get({shape.width}, b.getI1Type());
      Value mask = vector::ConstantMaskOp::create(b, loc, maskType,
                                                  ArrayRef<int64_t>{k % shape.width});
      acc = fmaStep(acc, m0, tileRows, n0, tileCols, idx(fullK), mask);
    }
    for (int64_t i = 0; i < tileRows; ++i) {
      Value row = add(m0, idx(i));
      for (int64_t j = 0; j < tileCols; ++j) {
        Value col = add(n0, idx(j));
        Value sum = vector::ReductionOp::create(b, loc, vector::CombiningKind::ADD,
                                                acc[i * tileCols + j],
                                                arith::FastMathFlags::reassoc);
        Value old = memref::LoadOp::create(b, loc, c, ValueRange{row, col});
        memref::StoreOp::create(b, loc, arith::AddFOp::create(b, loc, old, sum), c,
                                ValueRange{row, col});
      }
    }
  }

  OpBuilder &b;
  Location loc;
  Value a, w, c;
  KernelShape shape;
  int64_t k, n;
  Type f32;
  VectorType vecType;
};

struct MoeCpuVectorizeMatmul
    : mlir::moe::impl::MoeCpuVectorizeMatmulBase<MoeCpuVectorizeMatmul> {
  using Base::Base;

  void runOnOperation() override {
    if (vectorWidth < 1 || tileRows < 1 || tileCols < 1 || blockCols < 1) {
      getOperation()->emitError() << "moe-cpu-vectorize-matmul: sizes must be positive";
      return signalPassFailure();
    }
    KernelShape shape{vectorWidth, tileRows, tileCols, blockCols};
    SmallVector<linalg::MatmulOp> matmuls;
    getOperation()->walk([&](linalg::MatmulOp op) {
      if (isTransposedBMatmul(op))
        matmuls.push_back(op);
    });
    for (linalg::MatmulOp op : matmuls) {
      OpBuilder b(op);
      KernelBuilder(b, op.getLoc(), op.getDpsInputs()[0], op.getDpsInputs()[1],
                    op.getDpsInits()[0], shape)
          .build();
      op.erase();
    }
  }
};

} // namespace
