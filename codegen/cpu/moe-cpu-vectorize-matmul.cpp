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
//           widened with arith.extf (bf16 in tiles of up to 4 outputs: as even and odd k,
//           a shift and a mask, see KernelBuilder::splitsEvenOdd); a masked load for the
//           K % width tail
//         one horizontal add per output (a fixed halving tree), added to C;
//   nothing at all for a call without rows (no fork).
//
// Both operands of y = x Wᵀ are contiguous along K, so the partial sums run along K and
// neither operand needs a transpose; this is also the GEMV shape of one-token decode, which
// should be bound by the weight bytes it reads: on Zen 1 arith.extf's widening of bf16 (a
// zero-extension and a shift per 8 weights, each 2 uops on the 128-bit FP units, the shift
// on one pipe) kept it below that, hence the even/odd split.
//
// With `gemm-min-rows` > 0, K % width == 0 and N % gemm-cols == 0, calls with that many rows
// or more (prefill, batched steps) take a BLAS-style GEMM instead, which is bound by FMAs:
// x widened once into a lane-split f32 scratch, each panel of gemm-cols weight rows widened
// once and transposed in registers into a K-major f32 scratch panel, and an outer-product
// microkernel (broadcast one x element per row, gemm-rows x gemm-cols/width FMAs per step;
// the last tiles one row shorter where that saves padding, any missing rows zeros; the lane
// loop outside the tile loop, which blocks K). Weights already in panel order (#moe.panels)
// are read in place, bf16 ones widened as even and odd columns (GemmBuilder::splitsEvenOdd),
// the next panel prefetched into L2 while one is multiplied; with `gemm-widen-panels`
// (moe-cpu-pipeline's default on Zen 1, where the split's bit operations cost the FMAs
// ~15%) each panel is instead widened once per call into an f32 scratch panel.
// Gate/up with SwiGLU in the epilogue: where two such panel GEMMs of the same rows write
// zero-filled scratch buffers that only an elementwise generic reads (moe.grouped_swiglu's
// expert body after bufferization), rows >= gemm-min-rows take one GEMM instead
// (`__moe_gemm_swiglu_*`): per step the same vector of columns of both weights' panels
// (6 x (8 + 8) on AVX2), each accumulator the chain the single GEMM runs, and the generic's
// body cloned into the store of each output, so the scratch buffers and their round trip
// through memory are gone and every output has the unfused bits.
// The GEMM is emitted once per module and element types, as a private noinline function
// over dynamic sizes that each site calls: a copy inlined at every site made compiling a
// model ~2.3x slower.
// It keeps the dot-product kernel's order of operations for every output (width FMA chains
// over k = l, l + width, ..., the same halving tree, one add to C), so a row's result is
// the same bits whatever the number of rows in the call: the step's batch invariance.
// Other ops are left alone.
//
//===----------------------------------------------------------------------===//

#include "moec/Codegen/Passes.h"
#include "moec/Dialect/Moe/MoeAttrs.h"

#include "PackedGemm.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "llvm/ADT/SetVector.h"

#include <tuple>

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

/// The sum of the lanes of `v` (power-of-two width) by halving: lanes l and l + w/2 first,
/// down to one lane. The GEMM applies the same tree across its per-lane partial sums, so
/// both kernels round alike (vector.reduction leaves the order to LLVM).
Value halvingSum(OpBuilder &b, Location loc, Value v) {
  for (int64_t h = cast<VectorType>(v.getType()).getDimSize(0) / 2; h >= 1; h /= 2) {
    Value lo = vector::ExtractStridedSliceOp::create(b, loc, v, ArrayRef<int64_t>{0},
                                                     ArrayRef<int64_t>{h}, ArrayRef<int64_t>{1});
    Value hi = vector::ExtractStridedSliceOp::create(b, loc, v, ArrayRef<int64_t>{h},
                                                     ArrayRef<int64_t>{h}, ArrayRef<int64_t>{1});
    v = arith::AddFOp::create(b, loc, lo, hi);
  }
  return vector::ExtractOp::create(b, loc, v, ArrayRef<int64_t>{0});
}

/// `width` elements of row `row` of `mem` from column `col` as f32 lanes; `mask` (optional)
/// limits the lanes read, the others are 0.
Value loadWide(OpBuilder &b, Location loc, Value mem, Value row, Value col, int64_t width,
               Value mask = nullptr) {
  Type elementType = cast<MemRefType>(mem.getType()).getElementType();
  auto rawType = VectorType::get({width}, elementType);
  Value v;
  if (mask) {
    Value zero = arith::ConstantOp::create(
        b, loc, rawType, DenseElementsAttr::get(rawType, b.getZeroAttr(elementType)));
    v = vector::MaskedLoadOp::create(b, loc, rawType, mem, ValueRange{row, col}, mask, zero);
  } else {
    v = vector::LoadOp::create(b, loc, rawType, mem, ValueRange{row, col});
  }
  if (!elementType.isF32())
    v = arith::ExtFOp::create(b, loc, VectorType::get({width}, b.getF32Type()), v);
  return v;
}

/// Index arithmetic and loops shared by both kernels.
struct LoopBuilder {
  OpBuilder &b;
  Location loc;

  Value idx(int64_t v) { return arith::ConstantIndexOp::create(b, loc, v); }
  Value add(Value x, Value y) { return arith::AddIOp::create(b, loc, x, y); }
  Value sub(Value x, Value y) { return arith::SubIOp::create(b, loc, x, y); }
  Value mul(Value x, Value y) { return arith::MulIOp::create(b, loc, x, y); }
  Value rem(Value x, int64_t y) { return arith::RemUIOp::create(b, loc, x, idx(y)); }

  void forLoop(Value lo, Value hi, int64_t step, function_ref<void(Value)> body) {
    auto loop = scf::ForOp::create(b, loc, lo, hi, idx(step));
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(loop.getBody()->getTerminator());
    body(loop.getInductionVar());
  }

  void parallelLoop(Value hi, function_ref<void(Value)> body) {
    scf::ParallelOp::create(b, loc, ValueRange{idx(0)}, ValueRange{hi}, ValueRange{idx(1)},
                            [&](OpBuilder &nb, Location, ValueRange ivs) {
                              OpBuilder::InsertionGuard guard(b);
                              b.setInsertionPoint(nb.getInsertionBlock(), nb.getInsertionPoint());
                              body(ivs[0]);
                            });
  }

  /// scf.for from lo to hi with `init` carried; `body` returns the next values.
  SmallVector<Value> forLoopCarried(Value lo, Value hi, int64_t step, ValueRange init,
                                    function_ref<SmallVector<Value>(Value, ValueRange)> body) {
    auto loop = scf::ForOp::create(
        b, loc, lo, hi, idx(step), init, [&](OpBuilder &nb, Location, Value iv, ValueRange it) {
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPoint(nb.getInsertionBlock(), nb.getInsertionPoint());
          scf::YieldOp::create(b, loc, body(iv, it));
        });
    return SmallVector<Value>(loop.getResults().begin(), loop.getResults().end());
  }

  Value zeros(VectorType type) {
    return arith::ConstantOp::create(b, loc, type,
                                     DenseElementsAttr::get(type, b.getF32FloatAttr(0.0f)));
  }

  /// Row `row` of a bf16 panel, 2 x width values, loaded once as width i32 and split into its
  /// even and odd columns as vector<width x f32>: a shift and a mask per 2 x width weights,
  /// the values arith.extf gives (little-endian: word i holds column 2i in its low half,
  /// 2i + 1 in its high half).
  std::pair<Value, Value> loadBf16EvenOdd(Value panel, Value row, int64_t width) {
    auto i32 = b.getI32Type();
    auto rawType = VectorType::get({2 * width}, b.getBF16Type());
    auto wordType = VectorType::get({width}, i32);
    auto f32Type = VectorType::get({width}, b.getF32Type());
    Value raw = vector::LoadOp::create(b, loc, rawType, panel, ValueRange{row, idx(0)});
    Value words = vector::BitCastOp::create(b, loc, wordType, raw);
    auto splat = [&](int64_t v) {
      return arith::ConstantOp::create(
          b, loc, wordType, DenseElementsAttr::get(wordType, b.getIntegerAttr(i32, v)));
    };
    Value even = arith::ShLIOp::create(b, loc, words, splat(16));
    Value odd = arith::AndIOp::create(b, loc, words, splat(int32_t(0xffff0000u)));
    return {vector::BitCastOp::create(b, loc, f32Type, even),
            vector::BitCastOp::create(b, loc, f32Type, odd)};
  }
};

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
    // No rows, no parallel region (see PanelGemvBuilder::build).
    auto nonEmpty = scf::IfOp::create(
        b, loc, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, rows, c0),
        /*withElseRegion=*/false);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(nonEmpty.thenBlock()->getTerminator());
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

  Value loadRow(Value mem, Value row, Value col, Value mask) {
    return loadWide(b, loc, mem, row, col, shape.width, mask);
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
    if (fullK > 0 && splitsEvenOdd(tileRows * tileCols)) {
      acc = evenOddLoop(m0, tileRows, n0, tileCols, fullK);
    } else if (fullK > 0) {
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
        Value sum = halvingSum(b, loc, acc[i * tileCols + j]);
        Value old = memref::LoadOp::create(b, loc, c, ValueRange{row, col});
        memref::StoreOp::create(b, loc, arith::AddFOp::create(b, loc, old, sum), c,
                                ValueRange{row, col});
      }
    }
  }

  /// Whether the steps over K widen bf16 weights as even and odd k: a vector of width bf16
  /// loaded as width / 2 i32, shifted left by 16 (the even k's f32) and anded with 0xffff0000
  /// (the odd k's), where arith.extf of the vector is a zero-extension (a shuffle) and a
  /// shift of twice the width: on Zen 1 (128-bit FP units, one of them shifting) the extf
  /// loop ran at ~3.5 cycles per 8 weights (llvm-mca), ~11 GB/s per core, below the
  /// memory's rate; the split takes ~1. Lane l's chain (k = l, l + width, ...) then lives in
  /// lane l / 2 of the even or odd half-width accumulator, x is split alike, and the halves
  /// are put back in lane order before the tail and the tree: the same operations per
  /// chain, so the same bits. Tiles of up to 4 outputs (decode's 1 x 4): twice as many
  /// accumulators as outputs, which a 4 x 4 tile's 32 would spill.
  bool splitsEvenOdd(int64_t outputs) const {
    return cast<MemRefType>(w.getType()).getElementType().isBF16() && shape.width % 2 == 0 &&
           outputs <= 4;
  }

  /// The full steps over K (0 .. fullK) of a tile with the even/odd split; returns the
  /// accumulators in lane order.
  SmallVector<Value> evenOddLoop(Value m0, int64_t tileRows, Value n0, int64_t tileCols,
                                 int64_t fullK) {
    int64_t half = shape.width / 2;
    auto halfType = VectorType::get({half}, f32);
    auto wordType = VectorType::get({half}, b.getI32Type());
    auto rawType = VectorType::get({shape.width}, b.getBF16Type());
    auto splat = [&](int64_t v) {
      return arith::ConstantOp::create(
          b, loc, wordType, DenseElementsAttr::get(wordType, b.getI32IntegerAttr(v)));
    };
    SmallVector<int64_t> evens, odds, merge;
    for (int64_t i = 0; i < half; ++i) {
      evens.push_back(2 * i);
      odds.push_back(2 * i + 1);
      merge.append({i, half + i});
    }
    Value zero = arith::ConstantOp::create(
        b, loc, halfType, DenseElementsAttr::get(halfType, b.getF32FloatAttr(0.0f)));
    // acc[2 * (i * tileCols + j) + e]: row i, column j, e = 0 the even k, 1 the odd ones.
    SmallVector<Value> init(2 * tileRows * tileCols, zero);
    auto loop = scf::ForOp::create(
        b, loc, idx(0), idx(fullK), idx(shape.width), init,
        [&](OpBuilder &nb, Location l, Value kk, ValueRange it) {
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPoint(nb.getInsertionBlock(), nb.getInsertionPoint());
          SmallVector<Value> xs, ws;
          for (int64_t i = 0; i < tileRows; ++i) {
            Value x = loadRow(a, add(m0, idx(i)), kk, nullptr);
            xs.push_back(vector::ShuffleOp::create(b, loc, x, x, evens));
            xs.push_back(vector::ShuffleOp::create(b, loc, x, x, odds));
          }
          for (int64_t j = 0; j < tileCols; ++j) {
            Value raw = vector::LoadOp::create(b, loc, rawType, w, ValueRange{add(n0, idx(j)), kk});
            Value words = vector::BitCastOp::create(b, loc, wordType, raw);
            // Little-endian: word i holds k = 2i in its low half, 2i + 1 in its high half.
            Value even = arith::ShLIOp::create(b, loc, words, splat(16));
            Value odd = arith::AndIOp::create(b, loc, words, splat(int32_t(0xffff0000u)));
            ws.push_back(vector::BitCastOp::create(b, loc, halfType, even));
            ws.push_back(vector::BitCastOp::create(b, loc, halfType, odd));
          }
          SmallVector<Value> next;
          for (int64_t i = 0; i < tileRows; ++i)
            for (int64_t j = 0; j < tileCols; ++j)
              for (int64_t e = 0; e < 2; ++e)
                next.push_back(vector::FMAOp::create(b, loc, xs[2 * i + e], ws[2 * j + e],
                                                     it[2 * (i * tileCols + j) + e]));
          scf::YieldOp::create(b, loc, next);
        });
    SmallVector<Value> acc;
    for (int64_t t = 0; t < tileRows * tileCols; ++t)
      acc.push_back(vector::ShuffleOp::create(b, loc, loop.getResult(2 * t),
                                              loop.getResult(2 * t + 1), merge));
    return acc;
  }

  OpBuilder &b;
  Location loc;
  Value a, w, c;
  KernelShape shape;
  int64_t k, n;
  Type f32;
  VectorType vecType;
};

/// Whether the GEMM handles `op`'s static shape (the row count is checked at run time).
/// The shared GEMM functions rely on it: they have no divisibility guards of their own.
bool gemmFits(linalg::MatmulOp op, const GemmShape &shape) {
  auto w = cast<MemRefType>(op.getDpsInputs()[1].getType());
  return w.getDimSize(1) % shape.width == 0 && w.getDimSize(0) % shape.cols == 0;
}

/// Panel `p` of weights in panel order ([N / cols, K, cols], #moe.panels) as a 2-D
/// [K, cols] view: row l * KW + j holds the panel's W[n, l + width * j].
Value panelOf(OpBuilder &b, Location loc, Value panels, Value p) {
  auto type = cast<MemRefType>(panels.getType());
  SmallVector<OpFoldResult> offsets = {p, b.getIndexAttr(0), b.getIndexAttr(0)};
  SmallVector<OpFoldResult> sizes = {b.getIndexAttr(1), memref::getMixedSize(b, loc, panels, 1),
                                     memref::getMixedSize(b, loc, panels, 2)};
  SmallVector<OpFoldResult> strides(3, b.getIndexAttr(1));
  auto viewType = memref::SubViewOp::inferRankReducedResultType(
      {type.getDimSize(1), type.getDimSize(2)}, type, offsets, sizes, strides);
  return memref::SubViewOp::create(b, loc, cast<MemRefType>(viewType), panels, offsets, sizes,
                                   strides);
}

/// Few rows (decode, small steps) against weights in panel order: per panel and row, for
/// each vector of `width` columns, `width` FMA chains (one per lane l, over j: k = l +
/// width * j, x[k] broadcast times the panel's row l * KW + j) then the halving tree across
/// the chains and one add to C: the GEMM's order of operations, so a row's bits do not
/// depend on which kernel its call took.
///
/// bf16 panels of two vectors of columns (AVX2's 16 columns on 8 lanes) take the even/odd
/// split the in-place GEMM uses: one load of a panel row (2 x width bf16 as width i32), a
/// shift left by 16 (the even columns' f32) and an and with 0xffff0000 (the odd columns'),
/// two FMAs. Widening each half instead takes a zero-extension (a shuffle) and a shift: on
/// Zen 1 (128-bit FP units, one of them shifting) that loop ran at 3.5 cycles per 8 weights
/// (llvm-mca), ~11 GB/s per core: compute-bound below the memory's rate; the split needs 2.
/// The chains of half the lanes (even and odd columns: 2 x width / 2 accumulators, 8 on
/// AVX2) run over all of K at once, each lane's panel rows one sequential stream, then the
/// other half; the chains wait in a small scratch for the tree, which runs on the even and
/// odd columns apart and is put back in column order before the add to C (the same
/// operations per column, so the same bits).
///
/// Other panels go one vector of columns at a time (width chains and a panel vector in
/// registers); the steps j go in blocks of ~16 KiB of the panel, each block read for every
/// vector of columns while it is in L1 (the chains wait in the scratch between blocks).
class PanelGemvBuilder : LoopBuilder {
public:
  PanelGemvBuilder(OpBuilder &b, Location loc, Value a, Value panels, Value c, int64_t width)
      : LoopBuilder{b, loc}, a(a), panels(panels), c(c), width(width) {
    auto type = cast<MemRefType>(panels.getType());
    k = type.getDimSize(1);
    cols = type.getDimSize(2);
    vecType = VectorType::get({width}, b.getF32Type());
    int64_t bytes = width * cols * type.getElementType().getIntOrFloatBitWidth() / 8;
    blockSteps = std::max<int64_t>(1, 16 * 1024 / bytes);
    evenOdd = type.getElementType().isBF16() && cols == 2 * width && width % 2 == 0;
  }

  void build() {
    auto type = cast<MemRefType>(panels.getType());
    Value rows = memref::DimOp::create(b, loc, a, 0);
    Value kw = idx(k / width);
    int64_t vecs = cols / width;
    // No rows, no parallel region: a decode step calls every expert's GEMVs and most experts
    // get no row (6 of 8 in Mixtral); each fork for nothing woke the other thread and ran
    // an allocation per panel.
    auto nonEmpty = scf::IfOp::create(
        b, loc, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, rows, idx(0)),
        /*withElseRegion=*/false);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(nonEmpty.thenBlock()->getTerminator());
    parallelLoop(idx(type.getDimSize(0)), [&](Value p) {
      Value panel = panelOf(b, loc, panels, p);
      // chains[v * width + l]: lane l's chain for column vector v (even/odd: v = 0 the even
      // columns, v = 1 the odd ones).
      Value chains = memref::AllocOp::create(
          b, loc, MemRefType::get({vecs * width, width}, b.getF32Type()), b.getI64IntegerAttr(64));
      forLoop(idx(0), rows, 1, [&](Value m) {
        SmallVector<Value> sums;
        if (evenOdd) {
          for (int64_t l0 = 0; l0 < width; l0 += width / 2)
            splitLanes(panel, chains, m, l0, kw);
          sums = {treeOfLanes(chains, 0), treeOfLanes(chains, 1)};
          interleave(sums[0], sums[1]);
        } else {
          for (int64_t i = 0; i < vecs * width; ++i)
            vector::StoreOp::create(b, loc, zeros(vecType), chains, ValueRange{idx(i), idx(0)});
          forLoop(idx(0), kw, blockSteps, [&](Value j0) {
            Value jEnd = arith::MinUIOp::create(b, loc, add(j0, idx(blockSteps)), kw);
            for (int64_t v = 0; v < vecs; ++v)
              block(panel, chains, m, v, j0, jEnd, kw);
          });
          for (int64_t v = 0; v < vecs; ++v)
            sums.push_back(treeOfLanes(chains, v));
        }
        for (int64_t v = 0; v < vecs; ++v) {
          SmallVector<Value> pos = {m, add(mul(p, idx(cols)), idx(v * width))};
          Value old = vector::LoadOp::create(b, loc, vecType, c, pos);
          vector::StoreOp::create(b, loc, arith::AddFOp::create(b, loc, old, sums[v]), c, pos);
        }
      });
      memref::DeallocOp::create(b, loc, chains);
    });
  }

private:
  /// x[m, l + width * j] as f32, broadcast.
  Value broadcastX(Value m, int64_t l, Value j) {
    Value x = memref::LoadOp::create(b, loc, a, ValueRange{m, add(idx(l), mul(j, idx(width)))});
    if (!x.getType().isF32())
      x = arith::ExtFOp::create(b, loc, b.getF32Type(), x);
    return vector::BroadcastOp::create(b, loc, vecType, x);
  }

  /// The halving tree across the lanes' chains of column vector v (lane l + h into lane l).
  Value treeOfLanes(Value chains, int64_t v) {
    SmallVector<Value> acc;
    for (int64_t l = 0; l < width; ++l)
      acc.push_back(vector::LoadOp::create(b, loc, vecType, chains,
                                           ValueRange{idx(v * width + l), idx(0)}));
    for (int64_t h = width / 2; h >= 1; h /= 2)
      for (int64_t l = 0; l < h; ++l)
        acc[l] = arith::AddFOp::create(b, loc, acc[l], acc[l + h]);
    return acc[0];
  }

  /// Steps j0 .. jEnd of column vector v's chains for row m.
  void block(Value panel, Value chains, Value m, int64_t v, Value j0, Value jEnd, Value kw) {
    SmallVector<Value> init;
    for (int64_t l = 0; l < width; ++l)
      init.push_back(vector::LoadOp::create(b, loc, vecType, chains,
                                            ValueRange{idx(v * width + l), idx(0)}));
    SmallVector<Value> acc = forLoopCarried(j0, jEnd, 1, init, [&](Value j, ValueRange it) {
      SmallVector<Value> next;
      for (int64_t l = 0; l < width; ++l) {
        Value w = loadWide(b, loc, panel, add(mul(idx(l), kw), j), idx(v * width), width);
        next.push_back(vector::FMAOp::create(b, loc, broadcastX(m, l, j), w, it[l]));
      }
      return next;
    });
    for (int64_t l = 0; l < width; ++l)
      vector::StoreOp::create(b, loc, acc[l], chains, ValueRange{idx(v * width + l), idx(0)});
  }

  /// Even/odd split: lanes l0 .. l0 + width / 2, every step j, both column vectors; the
  /// chains stored to chains[l] (even columns) and chains[width + l] (odd columns).
  void splitLanes(Value panel, Value chains, Value m, int64_t l0, Value kw) {
    int64_t lanes = width / 2;
    SmallVector<Value> init(2 * lanes, zeros(vecType));
    SmallVector<Value> acc = forLoopCarried(idx(0), kw, 1, init, [&](Value j, ValueRange it) {
      SmallVector<Value> next;
      for (int64_t i = 0; i < lanes; ++i) {
        auto [even, odd] = loadEvenOdd(panel, add(mul(idx(l0 + i), kw), j));
        Value xs = broadcastX(m, l0 + i, j);
        next.push_back(vector::FMAOp::create(b, loc, xs, even, it[2 * i]));
        next.push_back(vector::FMAOp::create(b, loc, xs, odd, it[2 * i + 1]));
      }
      return next;
    });
    for (int64_t i = 0; i < lanes; ++i)
      for (int64_t v = 0; v < 2; ++v)
        vector::StoreOp::create(b, loc, acc[2 * i + v], chains,
                                ValueRange{idx(v * width + l0 + i), idx(0)});
  }

  /// Panel row r's even columns and odd columns as f32 (LoopBuilder::loadBf16EvenOdd).
  std::pair<Value, Value> loadEvenOdd(Value panel, Value r) {
    return loadBf16EvenOdd(panel, r, width);
  }

  /// (even, odd) columns -> (columns 0 .. width - 1, columns width .. 2 width - 1).
  void interleave(Value &even, Value &odd) {
    SmallVector<int64_t> lo, hi;
    for (int64_t i = 0; i < width / 2; ++i) {
      lo.append({i, width + i});
      hi.append({width / 2 + i, width + width / 2 + i});
    }
    Value first = vector::ShuffleOp::create(b, loc, even, odd, lo);
    odd = vector::ShuffleOp::create(b, loc, even, odd, hi);
    even = first;
  }

  Value a, panels, c;
  int64_t width, k = 0, cols = 0, blockSteps = 1;
  bool evenOdd = false;
  VectorType vecType;
};

/// The packed GEMM for C[M, N] += A[M, K] · W[N, K]ᵀ (see the file comment), on memrefs of
/// dynamic sizes (K % width == 0 and N % cols == 0 are the caller's to check). Scratch
/// layouts, with KW = K / width and lane-split K index l * KW + j for k = l + width * j:
///   ap[ceil(M / rows), K, rows]: A widened to f32, K in lane-split order, the rows of one
///                      register tile interleaved (one stream of broadcasts per tile); the
///                      last tiles hold rows - 1 rows each where that avoids padding rows
///                      (planTiles), and any padding rows left are zeros;
///   panel[K, cols]:    rows n0 .. n0 + cols of W widened, row l * KW + j = column k of W;
///   partial[width, blockTiles * rows, cols]: each lane's sums for one block of register
///                      tiles, before the tree.
/// Per panel and block of register tiles, the lane loop is outside the tile loop: lane l
/// reads panel rows l * KW .. (l + 1) * KW (K / width of the panel, 112 KiB for w2's K of
/// 14336 on AVX2, where the whole panel is 896 KiB) for every tile of the block, so that
/// slice stays in L2 instead of the whole panel streaming from L3 once per tile.
///
/// The panel packing (a `PanelPacker`, PackedGemm.h) and the microkernel meet only in the
/// panel scratch: a packer for another weight format (dequantising a panel once) fills the
/// same panel and reuses the rest.
/// The epilogue of a GEMM over two weights in panel order (gate and up): the scalar output
/// for one element from its two sums, built at `b`'s insertion point.
using PairEpilogue = function_ref<Value(OpBuilder &b, Location loc, Value gate, Value up)>;

/// A second weight for the same rows and an elementwise epilogue (GemmBuilder's pair mode):
/// C is then never written; out[m, n] = epilogue(0 + gate[m, n], 0 + up[m, n]) instead, each
/// sum the one the single-weight GEMM would have added to a zero-filled C.
struct PairGemm {
  Value panels;   // the second weight, in panel order like the first
  Value out;      // [M, N], unit inner stride, any float type
  PairEpilogue epilogue;
};

class GemmBuilder : LoopBuilder {
public:
  /// `panels` (optional): the weights already in panel order, [N / cols, K, cols] of any
  /// float type with unit-stride panels; the microkernel then reads them in place, widening
  /// in registers, and `packer` is not called. `pair` (optional, with `panels`): see PairGemm.
  /// `widenPanels`: narrower panels are widened into the f32 scratch instead (widens()).
  GemmBuilder(OpBuilder &b, Location loc, Value a, Value c, Value n, Value k, GemmShape shape,
              PanelPacker packer, Value panels = nullptr, const PairGemm *pair = nullptr,
              bool widenPanels = false)
      : LoopBuilder{b, loc}, a(a), c(c), shape(shape), k(k), n(n), packer(packer),
        panels(panels), pair(pair), widenPanels(widenPanels) {
    kw = arith::DivUIOp::create(b, loc, k, idx(shape.width));
    f32 = b.getF32Type();
    vecType = VectorType::get({shape.width}, f32);
    // Tiles per block: the block's partial sums within ~48 KiB (L1 and a bit), at least 2.
    int64_t tileBytes = shape.width * shape.rows * shape.cols * 4 * (pair ? 2 : 1);
    blockTiles = std::max<int64_t>(2, 48 * 1024 / tileBytes);
  }

  void build() {
    Value rows = memref::DimOp::create(b, loc, a, 0);
    IntegerAttr align = b.getI64IntegerAttr(64);
    planTiles(rows);
    int64_t dyn = ShapedType::kDynamic;
    ap = memref::AllocOp::create(b, loc, MemRefType::get({dyn, dyn, shape.rows}, f32),
                                 ValueRange{tiles, k}, align);
    packA(rows);
    if (!panels || !widenPanels ||
        cast<MemRefType>(panels.getType()).getElementType().isF32()) {
      panelLoop();
      memref::DeallocOp::create(b, loc, ap);
      return;
    }
    // Widening is a cost per panel and call (a load, a widening and a store per vector of
    // the panel, against 2 FMAs per vector and row of the call that the split would save
    // bit operations on): calls of fewer than widenMinRows rows keep the in-place kernel
    // (on Zen 1 widened ran 0.86-0.90x at 8 rows, 0.92-0.98x at 16, 1.02-1.09x at 32).
    Value many = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge, rows,
                                       idx(widenMinRows));
    auto branch = scf::IfOp::create(b, loc, many, /*withElseRegion=*/true);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPoint(branch.thenBlock()->getTerminator());
      widenNow = true;
      panelLoop();
      b.setInsertionPoint(branch.elseBlock()->getTerminator());
      widenNow = false;
      panelLoop();
    }
    memref::DeallocOp::create(b, loc, ap);
  }

private:
  /// The parallel loop over panels: each panel's scratch, microkernels and lane trees.
  void panelLoop() {
    Value rows = memref::DimOp::create(b, loc, a, 0);
    IntegerAttr align = b.getI64IntegerAttr(64);
    int64_t dyn = ShapedType::kDynamic;
    parallelLoop(arith::DivUIOp::create(b, loc, n, idx(shape.cols)), [&](Value p) {
      Value n0 = mul(p, idx(shape.cols));
      auto panelType = MemRefType::get({dyn, shape.cols}, f32);
      if (!panels || widens())
        panel = memref::AllocOp::create(b, loc, panelType, ValueRange{k}, align);
      auto partialType = MemRefType::get({shape.width, blockTiles * shape.rows, shape.cols}, f32);
      partial = memref::AllocOp::create(b, loc, partialType, align);
      if (pair)
        partial2 = memref::AllocOp::create(b, loc, partialType, align);
      if (panels) {
        if (widens())
          widenInto(panelOf(b, loc, panels, p), panel);
        else
          panel = panelOf(b, loc, panels, p);
        // The microkernel prefetches the next panel (this thread's next one under OpenMP's
        // static schedule; the last panel prefetches itself) into L2 as it goes.
        Value last = sub(memref::DimOp::create(b, loc, panels, 0), idx(1));
        Value next = arith::MinUIOp::create(b, loc, add(p, idx(1)), last);
        nextPanel = panelOf(b, loc, panels, next);
        if (pair) {
          if (widens()) {
            panel2 = memref::AllocOp::create(b, loc, panelType, ValueRange{k}, align);
            widenInto(panelOf(b, loc, pair->panels, p), panel2);
          } else {
            panel2 = panelOf(b, loc, pair->panels, p);
          }
          nextPanel2 = panelOf(b, loc, pair->panels, next);
        }
      } else
        packer(b, loc, panel, n0);
      forLoop(idx(0), tiles, blockTiles, [&](Value t0) {
        Value tEnd = arith::MinUIOp::create(b, loc, add(t0, idx(blockTiles)), tiles);
        Value m0 = tileRow0(t0);
        forLoop(idx(0), idx(shape.width), 1, [&](Value l) {
          forLoop(t0, tEnd, 1, [&](Value t) {
            Value slot = sub(tileRow0(t), m0);
            if (shape.rows < 3) {
              tileKernels(t, l, slot, shape.rows);
              return;
            }
            Value isFull = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, t, fullTiles);
            auto which = scf::IfOp::create(b, loc, isFull, /*withElseRegion=*/true);
            OpBuilder::InsertionGuard guard(b);
            b.setInsertionPoint(which.thenBlock()->getTerminator());
            tileKernels(t, l, slot, shape.rows);
            b.setInsertionPoint(which.elseBlock()->getTerminator());
            tileKernels(t, l, slot, shape.rows - 1);
          });
        });
        Value mEnd = arith::MinUIOp::create(b, loc, tileRow0(tEnd), rows);
        if (pair)
          reducePairLanes(m0, mEnd, n0);
        else
          reduceLanes(m0, mEnd, n0);
      });
      memref::DeallocOp::create(b, loc, partial);
      if (pair)
        memref::DeallocOp::create(b, loc, partial2);
      if (!panels || widens())
        memref::DeallocOp::create(b, loc, panel);
      if (pair && widens())
        memref::DeallocOp::create(b, loc, panel2);
    });
  }

  /// The register tiles for M rows: ceil(M / rows) tiles, the first `fullTiles` of `rows`
  /// rows, the last ones of rows - 1 (as many as that takes off the padding), so that at most
  /// a row or two of zeros is computed (32 rows on 6x16: 2 tiles of 6 and 4 of 5, no
  /// padding, where six tiles of 6 would compute 36).
  void planTiles(Value rows) {
    tiles = arith::DivUIOp::create(b, loc, add(rows, idx(shape.rows - 1)), idx(shape.rows));
    Value shortTiles = idx(0);
    if (shape.rows >= 3) { // (a 1-row tile could not hide the FMA latency)
      Value pad = sub(mul(tiles, idx(shape.rows)), rows);
      shortTiles = arith::MinUIOp::create(b, loc, pad, tiles);
    }
    fullTiles = sub(tiles, shortTiles);
    paddedRows = tileRow0(tiles);
  }

  /// The first row of tile t (t <= tiles): rows * t less one per short tile before it.
  Value tileRow0(Value t) {
    Value shortBefore = sub(arith::MaxUIOp::create(b, loc, t, fullTiles), fullTiles);
    return sub(mul(t, idx(shape.rows)), shortBefore);
  }

  /// The tile of row m (m < paddedRows) and its place in it.
  std::pair<Value, Value> tileOf(Value m) {
    Value fullRows = mul(fullTiles, idx(shape.rows));
    Value inFull = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, m, fullRows);
    Value rest = sub(arith::MaxUIOp::create(b, loc, m, fullRows), fullRows);
    int64_t shortRows = std::max<int64_t>(shape.rows - 1, 1);
    Value tile = arith::SelectOp::create(
        b, loc, inFull, arith::DivUIOp::create(b, loc, m, idx(shape.rows)),
        add(fullTiles, arith::DivUIOp::create(b, loc, rest, idx(shortRows))));
    Value inTile = arith::SelectOp::create(b, loc, inFull, rem(m, shape.rows),
                                           rem(rest, shortRows));
    return {tile, inTile};
  }

  /// ap[tile(m), l * KW + j, place(m)] = A[m, l + width * j], in parallel over rows; the
  /// padding rows M .. paddedRows are zeros (their results are never stored).
  void packA(Value rows) {
    scf::ParallelOp::create(
        b, loc, ValueRange{idx(0)}, ValueRange{rows}, ValueRange{idx(1)},
        [&](OpBuilder &nb, Location, ValueRange ivs) {
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPoint(nb.getInsertionBlock(), nb.getInsertionPoint());
          Value tile, inTile; // not a structured binding: the lambda below captures them
          std::tie(tile, inTile) = tileOf(ivs[0]);
          forLoop(idx(0), kw, 1, [&](Value j) {
            Value v = loadWide(b, loc, a, ivs[0], mul(j, idx(shape.width)), shape.width);
            for (int64_t l = 0; l < shape.width; ++l) {
              Value x = vector::ExtractOp::create(b, loc, v, ArrayRef<int64_t>{l});
              memref::StoreOp::create(b, loc, x, ap,
                                      ValueRange{tile, add(mul(idx(l), kw), j), inTile});
            }
          });
        });
    Value zero = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0.0f));
    forLoop(rows, paddedRows, 1, [&](Value m) {
      Value tile, inTile;
      std::tie(tile, inTile) = tileOf(m);
      forLoop(idx(0), k, 1, [&](Value kk) {
        memref::StoreOp::create(b, loc, zero, ap, ValueRange{tile, kk, inTile});
      });
    });
  }

  /// Register tile `tile` (`height` rows from tileRow0(tile)), lane l: one FMA chain per
  /// accumulator over the panel's rows l * KW .. (l + 1) * KW, stored to
  /// partial[l, slot + i, :].
  void microkernel(Value tile, Value l, Value slot, int64_t height) {
    int64_t vecs = shape.cols / shape.width;
    Value base = mul(l, kw);
    bool split = splitsEvenOdd();
    SmallVector<Value> init(height * vecs, zeros(vecType));
    SmallVector<Value> acc = forLoopCarried(idx(0), kw, 1, init, [&](Value j, ValueRange it) {
      Value kk = add(base, j);
      SmallVector<Value> bs, next;
      if (nextPanel) // the same row of the next panel (see build)
        memref::PrefetchOp::create(b, loc, nextPanel, ValueRange{kk, idx(0)}, /*isWrite=*/false,
                                   /*localityHint=*/2, /*isDataCache=*/true);
      if (split)
        bs = loadEvenOdd(kk);
      else
        for (int64_t v = 0; v < vecs; ++v) // (widened here when read in place)
          bs.push_back(loadWide(b, loc, panel, kk, idx(v * shape.width), shape.width));
      for (int64_t i = 0; i < height; ++i) {
        Value x = memref::LoadOp::create(b, loc, ap, ValueRange{tile, kk, idx(i)});
        Value xs = vector::BroadcastOp::create(b, loc, vecType, x);
        for (int64_t v = 0; v < vecs; ++v)
          next.push_back(vector::FMAOp::create(b, loc, xs, bs[v], it[i * vecs + v]));
      }
      return next;
    });
    for (int64_t i = 0; i < height; ++i) {
      if (split) // back to column order: columns 0..w-1, then w..2w-1
        interleave(acc[i * vecs], acc[i * vecs + 1]);
      for (int64_t v = 0; v < vecs; ++v)
        vector::StoreOp::create(b, loc, acc[i * vecs + v], partial,
                                ValueRange{l, add(slot, idx(i)), idx(v * shape.width)});
    }
  }

  /// The microkernel(s) of one register tile and lane: in pair mode one per vector of
  /// columns, each reading that vector of both weights' panels.
  void tileKernels(Value tile, Value l, Value slot, int64_t height) {
    if (!pair)
      return microkernel(tile, l, slot, height);
    for (int64_t v = 0; v < shape.cols / shape.width; ++v)
      pairMicrokernel(tile, l, slot, height, v);
  }

  /// Pair mode: register tile `tile`, lane l, the v-th vector of columns of both weights
  /// (`height` x (width + width): 6 x (8 + 8) on AVX2, 12 accumulators as in the 6x16 tile);
  /// each accumulator is the chain the single-weight microkernel runs for its column, stored
  /// to partial / partial2[l, slot + i, v * width ..]. With bf16 rows of two vectors the
  /// vectors are the even (v = 0) and odd (v = 1) columns (splitsEvenOdd), put back in column
  /// order after the tree (reducePairLanes).
  void pairMicrokernel(Value tile, Value l, Value slot, int64_t height, int64_t v) {
    Value base = mul(l, kw);
    bool split = splitsEvenOdd();
    SmallVector<Value> init(2 * height, zeros(vecType));
    SmallVector<Value> acc = forLoopCarried(idx(0), kw, 1, init, [&](Value j, ValueRange it) {
      Value kk = add(base, j);
      if (v < 2) // the same row of the next panel of w (v = 0) and of the pair's (v = 1)
        memref::PrefetchOp::create(b, loc, v == 0 ? nextPanel : nextPanel2,
                                   ValueRange{kk, idx(0)}, /*isWrite=*/false,
                                   /*localityHint=*/2, /*isDataCache=*/true);
      Value gw = split ? loadEvenOdd(panel, kk)[v]
                       : loadWide(b, loc, panel, kk, idx(v * shape.width), shape.width);
      Value uw = split ? loadEvenOdd(panel2, kk)[v]
                       : loadWide(b, loc, panel2, kk, idx(v * shape.width), shape.width);
      SmallVector<Value> next;
      for (int64_t i = 0; i < height; ++i) {
        Value x = memref::LoadOp::create(b, loc, ap, ValueRange{tile, kk, idx(i)});
        Value xs = vector::BroadcastOp::create(b, loc, vecType, x);
        next.push_back(vector::FMAOp::create(b, loc, xs, gw, it[2 * i]));
        next.push_back(vector::FMAOp::create(b, loc, xs, uw, it[2 * i + 1]));
      }
      return next;
    });
    for (int64_t i = 0; i < height; ++i) {
      SmallVector<Value> pos = {l, add(slot, idx(i)), idx(v * shape.width)};
      vector::StoreOp::create(b, loc, acc[2 * i], partial, pos);
      vector::StoreOp::create(b, loc, acc[2 * i + 1], partial2, pos);
    }
  }

  /// Pair mode: rows m0 .. mEnd, columns n0 .. n0 + cols: for both weights the halving tree
  /// across the lanes' partial sums and the add to zero the single-weight GEMM makes to its
  /// zero-filled C (0 + -0 is +0), then the epilogue per element, stored to pair->out.
  void reducePairLanes(Value m0, Value mEnd, Value n0) {
    int64_t vecs = shape.cols / shape.width;
    Type outType = cast<MemRefType>(pair->out.getType()).getElementType();
    auto outVecType = VectorType::get({shape.width}, outType);
    forLoop(m0, mEnd, 1, [&](Value m) {
      Value i = sub(m, m0);
      auto tree = [&](Value from, int64_t v) {
        return arith::AddFOp::create(b, loc, zeros(vecType), laneSum(from, i, v)).getResult();
      };
      SmallVector<Value> gates, ups;
      for (int64_t v = 0; v < vecs; ++v) {
        gates.push_back(tree(partial, v));
        ups.push_back(tree(partial2, v));
      }
      if (splitsEvenOdd()) {
        interleave(gates[0], gates[1]);
        interleave(ups[0], ups[1]);
      }
      for (int64_t v = 0; v < vecs; ++v) {
        Value y = arith::ConstantOp::create(b, loc, outVecType,
                                            DenseElementsAttr::get(outVecType, b.getZeroAttr(outType)));
        for (int64_t e = 0; e < shape.width; ++e) {
          Value g = vector::ExtractOp::create(b, loc, gates[v], ArrayRef<int64_t>{e});
          Value u = vector::ExtractOp::create(b, loc, ups[v], ArrayRef<int64_t>{e});
          y = vector::InsertOp::create(b, loc, pair->epilogue(b, loc, g, u), y,
                                       ArrayRef<int64_t>{e});
        }
        vector::StoreOp::create(b, loc, y, pair->out,
                                ValueRange{m, add(n0, idx(v * shape.width))});
      }
    });
  }

  /// Whether the microkernel widens the panel row as even and odd columns: bf16 weights read
  /// in place, two vectors of columns. One load of the row's 2 x width bf16 (as width i32)
  /// and two bit operations (shift left 16: the even columns' f32; and with 0xffff0000: the
  /// odd ones'), where widening each half takes a load, a zero-extension (a shuffle uop) and
  /// a shift: 3 uops instead of 6 beside the 12 FMAs of a 6x16 step, fewer of them on the
  /// FMA pipes. The widened values are arith.extf's exactly, and every accumulator is still
  /// one column's chain, so no output changes a bit; only the tile's columns are permuted
  /// until its partial sums are stored.
  bool splitsEvenOdd() const {
    return panels && !widens() && shape.cols == 2 * shape.width &&
           cast<MemRefType>(panels.getType()).getElementType().isBF16();
  }

  /// Whether weights in panel order of a narrower type are widened once per panel and call
  /// into an f32 scratch panel (gemm-widen-panels), which the microkernel then reads as it
  /// reads a packed one: on Zen 1 the in-place even/odd split's two bit operations per panel
  /// row compete with the FMAs (72-74% of the FMA peak against 86-88% widened, 128 rows).
  bool widens() const {
    return panels && widenPanels && widenNow &&
           !cast<MemRefType>(panels.getType()).getElementType().isF32();
  }

  /// to[r, :] = from[r, :] as f32 for every panel row r (arith.extf, as the microkernel
  /// would widen them in registers: the same values).
  void widenInto(Value from, Value to) {
    forLoop(idx(0), k, 1, [&](Value r) {
      for (int64_t g = 0; g < shape.cols; g += shape.width)
        vector::StoreOp::create(b, loc, loadWide(b, loc, from, r, idx(g), shape.width), to,
                                ValueRange{r, idx(g)});
    });
  }

  /// Panel row kk's even columns and odd columns, as f32 (splitsEvenOdd).
  SmallVector<Value> loadEvenOdd(Value kk) { return loadEvenOdd(panel, kk); }
  SmallVector<Value> loadEvenOdd(Value from, Value kk) {
    auto [even, odd] = loadBf16EvenOdd(from, kk, shape.width);
    return {even, odd};
  }

  /// (even, odd) columns -> (columns 0..w-1, columns w..2w-1).
  void interleave(Value &even, Value &odd) {
    SmallVector<int64_t> lo, hi;
    for (int64_t i = 0; i < shape.width / 2; ++i) {
      lo.append({i, shape.width + i});
      hi.append({shape.width / 2 + i, shape.width + shape.width / 2 + i});
    }
    Value first = vector::ShuffleOp::create(b, loc, even, odd, lo);
    odd = vector::ShuffleOp::create(b, loc, even, odd, hi);
    even = first;
  }

  /// Rows m0 .. mEnd (one block), columns n0 .. n0 + cols: the halving tree across the lanes'
  /// partial sums, then one add to C. Padding rows are skipped.
  /// Row i's vector v of columns summed over the lanes' partial sums in `from` by the
  /// halving tree every kernel uses (lane l + h into lane l), so a row's bits never depend on
  /// the kernel that computed it.
  Value laneSum(Value from, Value i, int64_t v) {
    SmallVector<Value> lanes;
    for (int64_t l = 0; l < shape.width; ++l)
      lanes.push_back(vector::LoadOp::create(b, loc, vecType, from,
                                             ValueRange{idx(l), i, idx(v * shape.width)}));
    for (int64_t h = shape.width / 2; h >= 1; h /= 2)
      for (int64_t l = 0; l < h; ++l)
        lanes[l] = arith::AddFOp::create(b, loc, lanes[l], lanes[l + h]);
    return lanes[0];
  }

  void reduceLanes(Value m0, Value mEnd, Value n0) {
    int64_t vecs = shape.cols / shape.width;
    forLoop(m0, mEnd, 1, [&](Value m) {
      Value i = sub(m, m0);
      for (int64_t v = 0; v < vecs; ++v) {
        Value sum = laneSum(partial, i, v);
        SmallVector<Value> pos = {m, add(n0, idx(v * shape.width))};
        Value old = vector::LoadOp::create(b, loc, vecType, c, pos);
        vector::StoreOp::create(b, loc, arith::AddFOp::create(b, loc, old, sum), c, pos);
      }
    });
  }

  Value a, c;
  GemmShape shape;
  int64_t blockTiles;
  Value k, n, kw;
  Value tiles, fullTiles, paddedRows; // planTiles
  PanelPacker packer;
  Value panels;
  const PairGemm *pair;
  bool widenPanels;
  bool widenNow = false; // the branch being emitted: rows >= widenMinRows (build)
  static constexpr int64_t widenMinRows = 32;
  Type f32;
  VectorType vecType;
  Value ap, panel, partial, nextPanel;
  Value panel2, partial2, nextPanel2; // pair mode
};

/// The float weights' packer: W[N, K] (f32, bf16 or f16) widened and transposed in registers.
class FloatPanelPacker : LoopBuilder {
public:
  /// `kw`: K / width.
  FloatPanelPacker(OpBuilder &b, Location loc, Value w, Value panel, Value kw, int64_t width,
                   int64_t cols)
      : LoopBuilder{b, loc}, w(w), panel(panel), width(width), cols(cols), kw(kw) {}

  /// panel[l * KW + j, r] = W[n0 + r, l + width * j]: width x width blocks of W, widened,
  /// transposed, stored as rows of the panel.
  void pack(Value n0) {
    forLoop(idx(0), kw, 1, [&](Value j) {
      Value k0 = mul(j, idx(width));
      for (int64_t g = 0; g < cols; g += width) {
        SmallVector<Value> v;
        for (int64_t i = 0; i < width; ++i)
          v.push_back(loadWide(b, loc, w, add(n0, idx(g + i)), k0, width));
        transposeLanes(b, loc, v);
        for (int64_t l = 0; l < width; ++l)
          vector::StoreOp::create(b, loc, v[l], panel,
                                  ValueRange{add(mul(idx(l), kw), j), idx(g)});
      }
    });
  }

private:
  Value w, panel;
  int64_t width, cols;
  Value kw;
};

/// The GEMM over float weights in panel order, `panels` [N / cols, K, cols]: read in place,
/// or with `widenPanels` widened once per panel for calls of 32 rows or more.
void buildPanelGemm(OpBuilder &b, Location loc, Value a, Value panels, Value c,
                    const GemmShape &shape, bool widenPanels) {
  Value k = memref::DimOp::create(b, loc, panels, 1);
  Value n = arith::MulIOp::create(b, loc, memref::DimOp::create(b, loc, panels, 0),
                                  arith::ConstantIndexOp::create(b, loc, shape.cols));
  GemmBuilder(b, loc, a, c, n, k, shape, [](OpBuilder &, Location, Value, Value) {}, panels,
              /*pair=*/nullptr, widenPanels)
      .build();
}

/// out = epilogue(x · W1ᵀ, x · W3ᵀ) for two float weights in panel order, [N / cols, K, cols]
/// each, read in place: the gate/up GEMM with SwiGLU in its epilogue (PairGemm).
void buildPanelPairGemm(OpBuilder &b, Location loc, Value a, Value panels, Value panels2,
                        Value out, const GemmShape &shape, bool widenPanels,
                        PairEpilogue epilogue) {
  Value k = memref::DimOp::create(b, loc, panels, 1);
  Value n = arith::MulIOp::create(b, loc, memref::DimOp::create(b, loc, panels, 0),
                                  arith::ConstantIndexOp::create(b, loc, shape.cols));
  PairGemm pair{panels2, out, epilogue};
  GemmBuilder(b, loc, a, /*c=*/nullptr, n, k, shape,
              [](OpBuilder &, Location, Value, Value) {}, panels, &pair, widenPanels)
      .build();
}

/// The packed GEMM over float weights `w` [N, K].
void buildFloatGemm(OpBuilder &b, Location loc, Value a, Value w, Value c,
                    const GemmShape &shape) {
  Value k = memref::DimOp::create(b, loc, w, 1);
  Value n = memref::DimOp::create(b, loc, w, 0);
  Value width = arith::ConstantIndexOp::create(b, loc, shape.width);
  Value kw = arith::DivUIOp::create(b, loc, k, width);
  buildPackedGemm(b, loc, a, c, n, k, shape,
                  [&](OpBuilder &pb, Location pl, Value panel, Value n0) {
                    FloatPanelPacker(pb, pl, w, panel, kw, shape.width, shape.cols).pack(n0);
                  });
}

/// A 2-D view type with dynamic sizes, row stride and offset and unit inner stride: what
/// every operand the kernels accept can be recast to.
MemRefType dynamicView(Type elementType) {
  int64_t dyn = ShapedType::kDynamic;
  return MemRefType::get({dyn, dyn}, elementType,
                         StridedLayoutAttr::get(elementType.getContext(), dyn, {dyn, 1}));
}

/// The packed GEMM as one function per module and (A, W element types), called from every
/// matmul site that takes it: inlined at each site it made compile time ~2.3x longer.
/// Operands travel as (base buffer, offset, sizes, row stride) because the bare-pointer
/// calling convention (`moe-cpu-pipeline`) only passes statically shaped memrefs; the body
/// rebuilds the views with memref.reinterpret_cast. Marked noinline so LLVM keeps one copy.
///
///   func.func private @__moe_gemm_<A>_<W>_<rows>x<cols>(
///       %a: memref<A>, %a_off, %m, %k, %a_ld : index,
///       %w: memref<W>, %w_off, %n, %w_ld : index,
///       %c: memref<f32>, %c_off, %c_ld : index)
class SharedGemms {
public:
  SharedGemms(ModuleOp module, GemmShape shape, bool widenPanels)
      : module(module), table(module), shape(shape), widenPanels(widenPanels) {}

  /// Emits C += A · Wᵀ at `b`'s insertion point as a call to the shared GEMM. `panels`: W is
  /// in panel order, [N / cols, K, cols] with contiguous panels (W's "n" and "row stride"
  /// arguments are then the panel count and the panel stride).
  void call(OpBuilder &b, Location loc, Value a, Value w, Value c, bool panels = false) {
    auto elementType = [](Value v) { return cast<MemRefType>(v.getType()).getElementType(); };
    func::FuncOp fn = get(elementType(a), elementType(w), panels, loc);
    auto am = memref::ExtractStridedMetadataOp::create(b, loc, a);
    auto wm = memref::ExtractStridedMetadataOp::create(b, loc, w);
    auto cm = memref::ExtractStridedMetadataOp::create(b, loc, c);
    func::CallOp::create(b, loc, fn,
                         ValueRange{am.getBaseBuffer(), am.getOffset(), am.getSizes()[0],
                                    am.getSizes()[1], am.getStrides()[0], wm.getBaseBuffer(),
                                    wm.getOffset(), wm.getSizes()[0], wm.getStrides()[0],
                                    cm.getBaseBuffer(), cm.getOffset(), cm.getStrides()[0]});
  }

  /// Emits out = epilogue(x · W1ᵀ, x · W3ᵀ) for `w1`, `w3` in panel order as a call to the
  /// shared pair GEMM for this epilogue (`epilogue`: the elementwise generic whose body is
  /// cloned into the GEMM, see matchPairEpilogue):
  ///
  ///   func.func private @__moe_gemm_swiglu_<A>_<W>_<out>_panels_<rows>x<cols>(
  ///       %a: memref<A>, %a_off, %m, %k, %a_ld : index,
  ///       %w1: memref<W>, %w1_off, %panels, %w1_ld : index, %w3: memref<W>, %w3_off, %w3_ld,
  ///       %out: memref<out>, %out_off, %out_ld : index)
  void callPair(OpBuilder &b, Location loc, Value a, Value w1, Value w3, Value out,
                linalg::GenericOp epilogue) {
    auto elementType = [](Value v) { return cast<MemRefType>(v.getType()).getElementType(); };
    func::FuncOp fn = getPair(elementType(a), elementType(w1), elementType(out), epilogue, loc);
    auto am = memref::ExtractStridedMetadataOp::create(b, loc, a);
    auto w1m = memref::ExtractStridedMetadataOp::create(b, loc, w1);
    auto w3m = memref::ExtractStridedMetadataOp::create(b, loc, w3);
    auto om = memref::ExtractStridedMetadataOp::create(b, loc, out);
    func::CallOp::create(b, loc, fn,
                         ValueRange{am.getBaseBuffer(), am.getOffset(), am.getSizes()[0],
                                    am.getSizes()[1], am.getStrides()[0], w1m.getBaseBuffer(),
                                    w1m.getOffset(), w1m.getSizes()[0], w1m.getStrides()[0],
                                    w3m.getBaseBuffer(), w3m.getOffset(), w3m.getStrides()[0],
                                    om.getBaseBuffer(), om.getOffset(), om.getStrides()[0]});
  }

private:
  /// A new private noinline function with internal linkage named from `name`, its entry
  /// block the builder's insertion point.
  func::FuncOp declare(OpBuilder &b, Location loc, StringRef name, ArrayRef<Type> inputs) {
    b.setInsertionPointToEnd(module.getBody());
    auto fn = func::FuncOp::create(b, loc, name, b.getFunctionType(inputs, {}));
    fn.setPrivate();
    fn->setAttr("passthrough", b.getArrayAttr({b.getStringAttr("noinline")}));
    // Internal linkage: func-to-llvm keeps a private func's symbol external, so two modules
    // from this pipeline linked into one program (tools/bench/kernels.sh) would collide.
    fn->setAttr("llvm.linkage",
                LLVM::LinkageAttr::get(b.getContext(), LLVM::Linkage::Internal));
    table.insert(fn); // renames it if the name is taken
    b.setInsertionPointToStart(fn.addEntryBlock());
    return fn;
  }

  /// The weights in panel order, [n, K, cols] with panel stride `ld`, from the base buffer.
  Value panelView(OpBuilder &b, Location loc, Value base, Value offset, Value n, Value k,
                  Value ld) {
    int64_t dyn = ShapedType::kDynamic;
    Type wType = cast<MemRefType>(base.getType()).getElementType();
    SmallVector<OpFoldResult> sizes = {n, k, b.getIndexAttr(shape.cols)};
    SmallVector<OpFoldResult> strides = {ld, b.getIndexAttr(shape.cols), b.getIndexAttr(1)};
    auto type = MemRefType::get({dyn, dyn, shape.cols}, wType,
                                StridedLayoutAttr::get(b.getContext(), dyn, {dyn, shape.cols, 1}));
    return memref::ReinterpretCastOp::create(b, loc, type, base, OpFoldResult(offset), sizes,
                                             strides);
  }

  static Value view2d(OpBuilder &b, Location loc, Value base, Value offset, Value rows,
                      Value cols, Value ld) {
    Type t = cast<MemRefType>(base.getType()).getElementType();
    SmallVector<OpFoldResult> sizes = {rows, cols}, strides = {ld, b.getIndexAttr(1)};
    return memref::ReinterpretCastOp::create(b, loc, dynamicView(t), base, OpFoldResult(offset),
                                             sizes, strides);
  }

  func::FuncOp getPair(Type aType, Type wType, Type outType, linalg::GenericOp epilogue,
                       Location loc) {
    for (const PairEntry &e : pairs)
      if (e.a == aType && e.w == wType && e.out == outType && sameBody(e.epilogue, epilogue))
        return e.fn;
    OpBuilder b(module.getBodyRegion());
    Type index = b.getIndexType();
    auto base = [](Type t) { return MemRefType::get({}, t); };
    SmallVector<Type> inputs = {base(aType), index, index, index, index,
                                base(wType), index, index, index,
                                base(wType), index, index,
                                base(outType), index, index};
    std::string name;
    llvm::raw_string_ostream os(name);
    os << "__moe_gemm_swiglu_" << aType << "_" << wType << "_" << outType << "_panels_"
       << shape.rows << "x" << shape.cols;
    func::FuncOp fn = declare(b, loc, name, inputs);
    Block *body = &fn.getBody().front();
    auto arg = [&](unsigned i) -> Value { return body->getArgument(i); };
    Value m = arg(2), k = arg(3), n = arg(7);
    Value a = view2d(b, loc, arg(0), arg(1), m, k, arg(4));
    Value w1 = panelView(b, loc, arg(5), arg(6), n, k, arg(8));
    Value w3 = panelView(b, loc, arg(9), arg(10), n, k, arg(11));
    Value cols = arith::MulIOp::create(b, loc, n, arith::ConstantIndexOp::create(b, loc, shape.cols));
    Value out = view2d(b, loc, arg(12), arg(13), m, cols, arg(14));
    buildPanelPairGemm(b, loc, a, w1, w3, out, shape, widenPanels,
                       [&](OpBuilder &eb, Location, Value g, Value u) {
                         return cloneBody(eb, epilogue, g, u);
                       });
    func::ReturnOp::create(b, loc);
    pairs.push_back({aType, wType, outType, epilogue, fn});
    return fn;
  }

  /// The scalar result of the elementwise generic `op`'s body for inputs (g, u), cloned at
  /// `b`; the constants it captures from above (all it may capture, see matchPairEpilogue)
  /// are cloned with it.
  static Value cloneBody(OpBuilder &b, linalg::GenericOp op, Value g, Value u) {
    Block &body = op.getRegion().front();
    IRMapping map;
    map.map(body.getArgument(0), g);
    map.map(body.getArgument(1), u);
    auto mapped = [&](Value v) {
      if (!map.contains(v))
        map.map(v, b.clone(*v.getDefiningOp())->getResult(0));
      return map.lookup(v);
    };
    for (Operation &inner : body.without_terminator()) {
      for (Value v : inner.getOperands())
        mapped(v);
      b.clone(inner, map);
    }
    return mapped(body.getTerminator()->getOperand(0));
  }

  /// Whether two epilogue generics compute the same: equivalent bodies, the constants they
  /// capture equal (sites in different functions capture different constant ops).
  static bool sameBody(linalg::GenericOp x, linalg::GenericOp y) {
    llvm::DenseMap<Value, Value> same; // x's block arguments and results -> y's
    auto check = [&](Value l, Value r) -> LogicalResult {
      Attribute la, ra;
      return success(l == r || same.lookup(l) == r ||
                     (l.getType() == r.getType() && matchPattern(l, m_Constant(&la)) &&
                      matchPattern(r, m_Constant(&ra)) && la == ra));
    };
    auto mark = [&](Value l, Value r) { same[l] = r; };
    return OperationEquivalence::isRegionEquivalentTo(&x.getRegion(), &y.getRegion(), check,
                                                      mark, OperationEquivalence::IgnoreLocations);
  }

  func::FuncOp get(Type aType, Type wType, bool panels, Location loc) {
    auto key = std::make_tuple(aType, wType, int(panels));
    if (func::FuncOp fn = cache.lookup(key))
      return fn;
    OpBuilder b(module.getBodyRegion());
    b.setInsertionPointToEnd(module.getBody());
    Type index = b.getIndexType();
    auto base = [](Type t) { return MemRefType::get({}, t); };
    SmallVector<Type> inputs = {base(aType), index, index, index, index,
                                base(wType), index, index, index,
                                base(b.getF32Type()), index, index};
    std::string name;
    llvm::raw_string_ostream os(name);
    os << "__moe_gemm_" << aType << "_" << wType << (panels ? "_panels_" : "_") << shape.rows
       << "x" << shape.cols;
    func::FuncOp fn = declare(b, loc, name, inputs);
    Block *body = &fn.getBody().front();
    auto arg = [&](unsigned i) -> Value { return body->getArgument(i); };
    auto view = [&](Value base, Value offset, Value rows, Value cols, Value ld, Type t) {
      SmallVector<OpFoldResult> sizes = {rows, cols}, strides = {ld, b.getIndexAttr(1)};
      return memref::ReinterpretCastOp::create(b, loc, dynamicView(t), base,
                                               OpFoldResult(offset), sizes, strides)
          .getResult();
    };
    Value m = arg(2), k = arg(3), n = arg(7);
    Value a = view(arg(0), arg(1), m, k, arg(4), aType);
    if (panels) { // n: the panel count; arg 8: the panel stride
      int64_t dyn = ShapedType::kDynamic;
      SmallVector<OpFoldResult> sizes = {n, k, b.getIndexAttr(shape.cols)};
      SmallVector<OpFoldResult> strides = {arg(8), b.getIndexAttr(shape.cols), b.getIndexAttr(1)};
      auto type = MemRefType::get({dyn, dyn, shape.cols}, wType,
                                  StridedLayoutAttr::get(b.getContext(), dyn,
                                                         {dyn, shape.cols, 1}));
      Value w = memref::ReinterpretCastOp::create(b, loc, type, arg(5), OpFoldResult(arg(6)),
                                                  sizes, strides);
      Value cols = arith::MulIOp::create(b, loc, n, arith::ConstantIndexOp::create(b, loc, shape.cols));
      buildPanelGemm(b, loc, a, w, view(arg(9), arg(10), m, cols, arg(11), b.getF32Type()), shape,
                     widenPanels);
    } else {
      Value w = view(arg(5), arg(6), n, k, arg(8), wType);
      Value c = view(arg(9), arg(10), m, n, arg(11), b.getF32Type());
      buildFloatGemm(b, loc, a, w, c, shape);
    }
    func::ReturnOp::create(b, loc);
    cache[key] = fn;
    return fn;
  }

  struct PairEntry {
    Type a, w, out;
    linalg::GenericOp epilogue;
    func::FuncOp fn;
  };

  ModuleOp module;
  SymbolTable table;
  GemmShape shape;
  bool widenPanels;
  llvm::DenseMap<std::tuple<Type, Type, int>, func::FuncOp> cache;
  SmallVector<PairEntry> pairs;
};

/// Two panel GEMMs of the same rows into zero-filled scratch buffers (gate, up) and the
/// elementwise generic that reads both and writes the result (SwiGLU), as moe-lower-to-linalg
/// lowers moe.grouped_swiglu per expert and bufferization leaves it. `ops`: every op that
/// touches the scratch buffers (their allocs, fills, copies and deallocs, both GEMMs, the
/// epilogue), in block order.
struct PairEpilogueMatch {
  linalg::GenericOp gate, up, epilogue;
  SmallVector<Operation *> ops;
};

bool isPanelMatmulOp(linalg::GenericOp op, const GemmShape &gemm);

/// Whether `buffer` holds +0.0 everywhere just before `at` (same block): the last op before
/// it that writes `buffer` is a fill with +0.0, or a copy from a buffer of `known` that
/// holds zeros at that point.
bool zeroBefore(Value buffer, Operation *at, ArrayRef<Value> known) {
  for (Operation *op = at->getPrevNode(); op; op = op->getPrevNode()) {
    if (!llvm::is_contained(op->getOperands(), buffer))
      continue;
    if (auto fill = dyn_cast<linalg::FillOp>(op)) {
      FloatAttr value;
      return fill.getOutputs()[0] == buffer &&
             matchPattern(fill.getInputs()[0], m_Constant(&value)) && value.getValue().isPosZero();
    }
    if (auto copy = dyn_cast<memref::CopyOp>(op)) {
      if (copy.getSource() == buffer)
        continue; // a read
      return llvm::is_contained(known, copy.getSource()) &&
             zeroBefore(copy.getSource(), copy, known);
    }
    return false;
  }
  return false;
}

/// The elementwise generic `op` as the epilogue of a pair of panel GEMMs (PairEpilogueMatch).
std::optional<PairEpilogueMatch> matchPairEpilogue(linalg::GenericOp op, const GemmShape &gemm) {
  if (!op.hasPureBufferSemantics() || op.getNumDpsInputs() != 2 || op.getNumDpsInits() != 1 ||
      op.getNumReductionLoops() != 0 || op.getNumLoops() != 2)
    return std::nullopt;
  if (!llvm::all_of(op.getIndexingMapsArray(), [](AffineMap m) { return m.isIdentity(); }))
    return std::nullopt;
  auto outType = dyn_cast<MemRefType>(op.getDpsInits()[0].getType());
  if (!outType || !isa<FloatType>(outType.getElementType()) || !hasUnitInnerStride(outType))
    return std::nullopt;
  // The body: scalar ops without side effects, regions or indices, capturing only constants,
  // not reading its output (cloned as it is into the GEMM's epilogue).
  Block &body = op.getRegion().front();
  if (!body.getArgument(2).use_empty())
    return std::nullopt;
  auto capturedOk = [&](Value v) {
    return v.getParentBlock() == &body || matchPattern(v, m_Constant());
  };
  for (Operation &inner : body) {
    if (inner.getNumRegions() || isa<linalg::IndexOp>(inner) ||
        (!isa<linalg::YieldOp>(inner) && !isMemoryEffectFree(&inner)) ||
        !llvm::all_of(inner.getOperands(), capturedOk))
      return std::nullopt;
  }
  Value g = op.getDpsInputs()[0], u = op.getDpsInputs()[1];
  if (g == u)
    return std::nullopt;
  PairEpilogueMatch match;
  match.epilogue = op;
  // Each input: an alloc in this block written by exactly one panel GEMM; its other users
  // fills, copies and deallocs in this block.
  llvm::SetVector<Operation *> ops;
  for (Value buffer : {g, u}) {
    auto alloc = buffer.getDefiningOp<memref::AllocOp>();
    if (!alloc || alloc->getBlock() != op->getBlock())
      return std::nullopt;
    ops.insert(alloc);
    linalg::GenericOp writer;
    for (Operation *user : buffer.getUsers()) {
      if (user->getBlock() != op->getBlock())
        return std::nullopt;
      auto gemmOp = dyn_cast<linalg::GenericOp>(user);
      if (gemmOp && gemmOp != op) {
        if (writer || !isPanelMatmulOp(gemmOp, gemm) || gemmOp.getDpsInits()[0] != buffer ||
            !gemmOp->isBeforeInBlock(op))
          return std::nullopt;
        writer = gemmOp;
      } else if (!gemmOp && !isa<linalg::FillOp, memref::CopyOp, memref::DeallocOp>(user)) {
        return std::nullopt;
      }
      ops.insert(user);
    }
    if (!writer)
      return std::nullopt;
    (buffer == g ? match.gate : match.up) = writer;
  }
  // Both GEMMs: the same rows, weights of one type and shape, each into zeros.
  auto gw = cast<MemRefType>(match.gate.getDpsInputs()[1].getType());
  auto uw = cast<MemRefType>(match.up.getDpsInputs()[1].getType());
  if (match.gate.getDpsInputs()[0] != match.up.getDpsInputs()[0] ||
      gw.getElementType() != uw.getElementType() || gw.getShape() != uw.getShape() ||
      !zeroBefore(g, match.gate, {g, u}) || !zeroBefore(u, match.up, {g, u}))
    return std::nullopt;
  // Copies between the buffers and others are not moved along: only these.
  for (Operation *user : ops)
    if (auto copy = dyn_cast<memref::CopyOp>(user))
      if (!llvm::is_contained(SmallVector<Value>{g, u}, copy.getSource()) ||
          !llvm::is_contained(SmallVector<Value>{g, u}, copy.getTarget()))
        return std::nullopt;
  match.ops = ops.takeVector();
  llvm::sort(match.ops, [](Operation *x, Operation *y) { return x->isBeforeInBlock(y); });
  return match;
}

struct MoeCpuVectorizeMatmul
    : mlir::moe::impl::MoeCpuVectorizeMatmulBase<MoeCpuVectorizeMatmul> {
  using Base::Base;

  void runOnOperation() override {
    if (vectorWidth < 1 || tileRows < 1 || tileCols < 1 || blockCols < 1 || gemmMinRows < 0 ||
        gemmRows < 1 || gemmCols < 1) {
      getOperation()->emitError() << "moe-cpu-vectorize-matmul: sizes must be positive";
      return signalPassFailure();
    }
    if (!llvm::isPowerOf2_64(vectorWidth) || gemmCols % vectorWidth != 0) {
      getOperation()->emitError() << "moe-cpu-vectorize-matmul: vector-width must be a power "
                                     "of two and gemm-cols a multiple of it";
      return signalPassFailure();
    }
    KernelShape shape{vectorWidth, tileRows, tileCols, blockCols};
    GemmShape gemm{vectorWidth, gemmRows, gemmCols};
    // Shared GEMM functions need a module to hold them (and the func dialect, loaded by
    // any input with functions); elsewhere each site gets its own copy.
    std::optional<SharedGemms> shared;
    auto module = dyn_cast<ModuleOp>(getOperation());
    if (module && getContext().getLoadedDialect<func::FuncDialect>())
      shared.emplace(module, gemm, gemmWidenPanels);
    SmallVector<linalg::MatmulOp> matmuls;
    getOperation()->walk([&](linalg::MatmulOp op) {
      if (isTransposedBMatmul(op))
        matmuls.push_back(op);
    });
    for (linalg::MatmulOp op : matmuls) {
      OpBuilder b(op);
      Location loc = op.getLoc();
      Value x = op.getDpsInputs()[0], w = op.getDpsInputs()[1], y = op.getDpsInits()[0];
      if (gemmMinRows > 0 && gemmFits(op, gemm)) {
        Value rows = memref::DimOp::create(b, loc, x, 0);
        Value many = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge, rows,
                                           arith::ConstantIndexOp::create(b, loc, gemmMinRows));
        auto branch = scf::IfOp::create(b, loc, many, /*withElseRegion=*/true);
        OpBuilder thenB = branch.getThenBodyBuilder();
        if (shared)
          shared->call(thenB, loc, x, w, y);
        else
          buildFloatGemm(thenB, loc, x, w, y, gemm);
        OpBuilder elseB = branch.getElseBodyBuilder();
        KernelBuilder(elseB, loc, x, w, y, shape).build();
      } else {
        KernelBuilder(b, loc, x, w, y, shape).build();
      }
      op.erase();
    }
    // Gate/up GEMMs with their elementwise consumer (SwiGLU): one GEMM with it as its
    // epilogue for rows >= gemm-min-rows; fewer rows keep the three ops, lowered below.
    SmallVector<PairEpilogueMatch> pairMatches;
    if (shared && gemmMinRows > 0 && gemmEpilogues)
      getOperation()->walk([&](linalg::GenericOp op) {
        if (auto match = matchPairEpilogue(op, gemm))
          pairMatches.push_back(*match);
      });
    for (PairEpilogueMatch &match : pairMatches)
      fusePairEpilogue(match, *shared);
    SmallVector<linalg::GenericOp> panelMatmuls;
    getOperation()->walk([&](linalg::GenericOp op) {
      if (isPanelMatmul(op, gemm)) {
        panelMatmuls.push_back(op);
        return;
      }
      // Weights packed for another target's panel (an AVX2 packing met by an AVX-512
      // pipeline) still compute correctly in the generic loops, but ~100x slower: say so,
      // since nothing else would (tools/bench/gemm.sh ran that way unnoticed).
      auto panels = dyn_cast_or_null<PanelsAttr>(op->getAttr("moe.panels"));
      if (panels && (panels.getCols() != gemm.cols || panels.getLanes() != gemm.width))
        op.emitWarning() << "weights in panel order of " << panels.getCols() << " columns on "
                         << panels.getLanes() << " lanes, but this pipeline's GEMM panel is "
                         << gemm.cols << " columns on " << gemm.width
                         << " lanes: left to the generic loops (correct, far slower); pack "
                            "the weights for this target";
    });
    for (linalg::GenericOp op : panelMatmuls) {
      OpBuilder b(op);
      Location loc = op.getLoc();
      Value x = op.getDpsInputs()[0], w = op.getDpsInputs()[1], y = op.getDpsInits()[0];
      auto branch = scf::IfOp::create(
          b, loc,
          arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge,
                                memref::DimOp::create(b, loc, x, 0),
                                arith::ConstantIndexOp::create(
                                    b, loc, gemmMinRows > 0 ? gemmMinRows : INT64_MAX)),
          /*withElseRegion=*/true);
      OpBuilder thenB = branch.getThenBodyBuilder();
      if (shared)
        shared->call(thenB, loc, x, w, y, /*panels=*/true);
      else
        buildPanelGemm(thenB, loc, x, w, y, gemm, gemmWidenPanels);
      OpBuilder elseB = branch.getElseBodyBuilder();
      PanelGemvBuilder(elseB, loc, x, w, y, vectorWidth).build();
      op.erase();
    }
  }

  /// Rows >= gemm-min-rows: the pair GEMM writes the epilogue's output; fewer: the matched
  /// ops as they were (buffers, fills, both GEMMs as panel GEMVs, the epilogue generic, left
  /// to the loop lowering), moved into the else branch.
  void fusePairEpilogue(PairEpilogueMatch &match, SharedGemms &shared) {
    linalg::GenericOp epilogue = match.epilogue;
    OpBuilder b(epilogue);
    Location loc = epilogue.getLoc();
    Value x = match.gate.getDpsInputs()[0];
    auto branch = scf::IfOp::create(
        b, loc,
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge,
                              memref::DimOp::create(b, loc, x, 0),
                              arith::ConstantIndexOp::create(b, loc, gemmMinRows)),
        /*withElseRegion=*/true);
    OpBuilder thenB = branch.getThenBodyBuilder();
    shared.callPair(thenB, loc, x, match.gate.getDpsInputs()[1], match.up.getDpsInputs()[1],
                    epilogue.getDpsInits()[0], epilogue);
    for (Operation *op : match.ops)
      op->moveBefore(branch.elseBlock()->getTerminator());
    for (linalg::GenericOp gemmOp : {match.gate, match.up}) {
      OpBuilder gb(gemmOp);
      PanelGemvBuilder(gb, gemmOp.getLoc(), gemmOp.getDpsInputs()[0], gemmOp.getDpsInputs()[1],
                       gemmOp.getDpsInits()[0], vectorWidth)
          .build();
      gemmOp.erase();
    }
  }

  /// Whether `op` is moe-lower-to-linalg's matmul over weights in panel order (#moe.panels)
  /// with this kernel's panel shape, on memrefs the kernels handle. Others stay generic
  /// (correct, slow): the panel order is fixed when the weights are packed.
  static bool isPanelMatmul(linalg::GenericOp op, const GemmShape &gemm) {
    auto panels = dyn_cast_or_null<PanelsAttr>(op->getAttr("moe.panels"));
    if (!panels || panels.getCols() != gemm.cols || panels.getLanes() != gemm.width ||
        !op.hasPureBufferSemantics() || op.getNumDpsInputs() != 2 || op.getNumDpsInits() != 1)
      return false;
    auto a = dyn_cast<MemRefType>(op.getDpsInputs()[0].getType());
    auto w = dyn_cast<MemRefType>(op.getDpsInputs()[1].getType());
    auto c = dyn_cast<MemRefType>(op.getDpsInits()[0].getType());
    if (!a || !w || !c || a.getRank() != 2 || w.getRank() != 3 || c.getRank() != 2 ||
        !c.getElementType().isF32() || !isa<FloatType>(a.getElementType()) ||
        !isa<FloatType>(w.getElementType()) || a.getElementType().getIntOrFloatBitWidth() > 32 ||
        w.getElementType().getIntOrFloatBitWidth() > 32)
      return false;
    if (ShapedType::isDynamic(w.getDimSize(1)) || w.getDimSize(2) != gemm.cols ||
        w.getDimSize(1) % gemm.width != 0)
      return false;
    SmallVector<int64_t> strides;
    int64_t offset;
    if (failed(w.getStridesAndOffset(strides, offset)) || strides[1] != gemm.cols ||
        strides[2] != 1)
      return false;
    // The maps moe-lower-to-linalg writes for this panel shape.
    MLIRContext *ctx = op.getContext();
    AffineExpr m, n, k;
    bindDims(ctx, m, n, k);
    int64_t steps = w.getDimSize(1) / gemm.width;
    SmallVector<AffineMap> expected = {
        AffineMap::get(3, 0, {m, k}, ctx),
        AffineMap::get(3, 0,
                       {n.floorDiv(gemm.cols), (k % gemm.width) * steps + k.floorDiv(gemm.width),
                        n % gemm.cols},
                       ctx),
        AffineMap::get(3, 0, {m, n}, ctx)};
    return op.getIndexingMapsArray() == expected && hasUnitInnerStride(a) &&
           hasUnitInnerStride(c);
  }
};

bool isPanelMatmulOp(linalg::GenericOp op, const GemmShape &gemm) {
  return MoeCpuVectorizeMatmul::isPanelMatmul(op, gemm);
}

} // namespace

void mlir::moe::buildPackedGemm(OpBuilder &b, Location loc, Value a, Value c, Value n, Value k,
                                const GemmShape &shape, PanelPacker packPanel) {
  GemmBuilder(b, loc, a, c, n, k, shape, packPanel).build();
}

/// The 8 x 8 case in the three rounds x86 has single instructions for (24 shuffles, where
/// the bit-swap rounds below take 32 on AVX2: their last round needs two per vector):
/// interleave rows 2p, 2p + 1 within 128-bit halves (unpcklps / unpckhps), then 64-bit pairs
/// of those (shufps), then the 128-bit halves (vperm2f128).
static void transposeLanes8(OpBuilder &b, Location loc, SmallVector<Value> &v) {
  auto shuffle = [&](Value x, Value y, ArrayRef<int64_t> mask) {
    return vector::ShuffleOp::create(b, loc, x, y, mask).getResult();
  };
  const int64_t lo[] = {0, 8, 1, 9, 4, 12, 5, 13}, hi[] = {2, 10, 3, 11, 6, 14, 7, 15};
  const int64_t pairLo[] = {0, 1, 8, 9, 4, 5, 12, 13}, pairHi[] = {2, 3, 10, 11, 6, 7, 14, 15};
  const int64_t halfLo[] = {0, 1, 2, 3, 8, 9, 10, 11}, halfHi[] = {4, 5, 6, 7, 12, 13, 14, 15};
  SmallVector<Value> t(8), u(8);
  for (int p = 0; p < 4; ++p) {
    t[2 * p] = shuffle(v[2 * p], v[2 * p + 1], lo);
    t[2 * p + 1] = shuffle(v[2 * p], v[2 * p + 1], hi);
  }
  for (int q = 0; q < 2; ++q)
    for (int h = 0; h < 2; ++h) {
      u[4 * q + 2 * h] = shuffle(t[4 * q + h], t[4 * q + 2 + h], pairLo);
      u[4 * q + 2 * h + 1] = shuffle(t[4 * q + h], t[4 * q + 2 + h], pairHi);
    }
  for (int c = 0; c < 4; ++c) {
    v[c] = shuffle(u[c], u[4 + c], halfLo);
    v[c + 4] = shuffle(u[c], u[4 + c], halfHi);
  }
}

void mlir::moe::transposeLanes(OpBuilder &b, Location loc, SmallVector<Value> &v) {
  int64_t wd = static_cast<int64_t>(v.size());
  if (wd == 8)
    return transposeLanes8(b, loc, v);
  for (int64_t h = wd / 2; h >= 1; h /= 2) {
    SmallVector<int64_t> lowMask, highMask;
    for (int64_t col = 0; col < wd; ++col) {
      lowMask.push_back((col & h) ? wd + col - h : col);
      highMask.push_back((col & h) ? wd + col : col + h);
    }
    for (int64_t i = 0; i < wd; ++i) {
      if (i & h)
        continue;
      Value lo = vector::ShuffleOp::create(b, loc, v[i], v[i + h], lowMask);
      Value hi = vector::ShuffleOp::create(b, loc, v[i], v[i + h], highMask);
      v[i] = lo;
      v[i + h] = hi;
    }
  }
}
