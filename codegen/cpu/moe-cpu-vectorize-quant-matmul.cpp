//===- moe-cpu-vectorize-quant-matmul.cpp - x·dequant(W)ᵀ -> vector kernels ===//
//
// Precondition: bufferized IR. Every `linalg.generic` marked `moe.quant` (the quantized
// x · Wᵀ that moe-lower-to-linalg emits: inputs x[M, K] f32, the weight's data and scales,
// output C[M, N] f32) with static N and K and unit stride along K becomes
//
//   scf.parallel over blocks of `block-cols` columns of the output     (OpenMP later)
//     scf.for over rows in groups of `tile-rows` (then the remaining rows one by one)
//       scf.for over columns in groups of `tile-cols` (then the remaining ones)
//         q8, q4: scf.for over the K/32 groups: per column, the group's bytes are loaded
//           once (32 for q8; 16 for q4, split into low and high nibbles with and/shift) and
//           its f16 scale widened; each vector<width x i8> chunk is widened to f32 and
//           scaled (q4: nibble * s - 8 s, one FMA) in registers, then one FMA per row
//           (q4 single rows: column by column, each column's chunks in order).
//         f8e4m3: scf.for over K in steps of `vector-width`: bytes widened to f32 by bit
//           manipulation (see moe-lower-to-linalg's f8E4M3BitsToScaledF32), FMAs, and the
//           per-row scale (times 2^120) applied once after the horizontal add.
//         one horizontal add per output (the halving tree of moe-cpu-vectorize-matmul),
//         added to C.
//
// With gemm-min-rows > 0, float q8/q4 calls of that many rows or more (prefill, batched
// steps; N % gemm-cols == 0) call moe-cpu-vectorize-matmul's packed GEMM (PackedGemm.h) with
// a panel packer that dequantises each panel of gemm-cols weight rows once per call into the
// GEMM's f32 K-major scratch (8 lanes: 8 rows' codes transposed as bytes, then widened and
// scaled by the rows' scales as one vector; wider: chunk by chunk as above, transposed as
// f32; q4 prefetches its codes 16 groups ahead): the dequantisation is amortised over every
// row and the microkernel is the bf16 one.
// Both paths give a row the same bits (every panel value is the exact q * s).
// q8 stored in panel order (#moe.panels on the generic, mixtral-compile's layout for q8
// experts on a CPU): the same GEMM, its packer reading each stored panel row as it is (the
// scratch's row order; widened, scaled by its group's scales: no transposes), and for fewer
// rows a panel GEMV with the GEMM's chains and lane tree (buildPanelGemv): again the same bits.
// On AVX2 both take each stored row's 16 codes with one load and put 8 at a time in the top
// bytes of i32 lanes (vpshufb, within 128-bit halves; vpmovsxbd to ymm crosses them, 3 µops
// on Zen 1), converted and scaled by s * 2^-24: the same exact q * s. The row-major q8 GEMV
// widens its chunks the same way (codesHigh).
//
// int8 activations (q4's default; see buildInt8): each row of x is quantized to int8 per
// group first and each group's dot product is an exact int32 sum on vpmaddubsw/vpmaddwd (or
// vpdpbusd); q4 on AVX2 with K % 256 == 0 takes 8 groups per step (octetStep), summing the
// 8 groups' i16 partial products down to one lane per group with vphaddw, so the float part
// (conversion, * s_x, FMA with s_w) runs once per 8 groups of a column instead of 4 times.
// Single q4 rows (decode) take one column at a time, so a thread reads its weight rows as one
// sequential stream, prefetched 4 KiB ahead (columnsInt8).
//
// No dequantised weight exists outside registers but that per-thread panel scratch.
// Generics this cannot handle (f8e4m3 with K % width != 0, dynamic N) are left for the
// scalar loops, which compute the same thing.
//
//===----------------------------------------------------------------------===//

#include "moec/Codegen/Passes.h"
#include "moec/Dialect/Moe/MoeOps.h"

#include "PackedGemm.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/FunctionInterfaces.h"

#include <tuple>

#define DEBUG_TYPE "moe-cpu-vectorize-quant-matmul"

namespace mlir::moe {
#define GEN_PASS_DEF_MOECPUVECTORIZEQUANTMATMUL
#include "moec/Codegen/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

struct KernelShape {
  int64_t width, tileRows, tileCols, blockCols;
  int64_t gemmMinRows, gemmRows, gemmCols; // the packed GEMM (float q8/q4; 0 rows: never)
  Int8Activations int8Activations; // which of q8/q4 take int8 activations (AVX2 dot products)
  bool vnni;            // ... on vpdpbusd (AVX-VNNI or AVX512-VNNI with VL)
  bool prefetch;        // single rows: prefetch the next tile's weight rows
  bool q4Octets;        // q4 int8 on AVX2, K % 256 == 0: 8 groups per step (octetStep)
};

/// Whether weights of `format` meet int8 activations.
bool takesInt8(QuantFormat format, const KernelShape &shape) {
  switch (shape.int8Activations) {
  case Int8Activations::All:
    return format == QuantFormat::q8 || format == QuantFormat::q4;
  case Int8Activations::Q4:
    return format == QuantFormat::q4;
  case Int8Activations::None:
    return false;
  }
  llvm_unreachable("unknown Int8Activations");
}

bool hasUnitInnerStride(Value v) {
  auto type = dyn_cast<MemRefType>(v.getType());
  SmallVector<int64_t> strides;
  int64_t offset;
  if (!type || type.getRank() != 2 || failed(type.getStridesAndOffset(strides, offset)))
    return false;
  return strides.back() == 1;
}

/// The quantized matmul's operands, when `op` is one this pass handles.
struct QuantMatmul {
  Value x, data, scale, c;
  QuantAttr quant;
  int64_t n, k;
  // q8 in panel order (#moe.panels on the generic): data [N / cols, K, cols] with element
  // [p, l * (K / lanes) + j, r] = code of W[p * cols + r, l + lanes * j], scale
  // [N / cols, K / 32, cols] with [p, g, r] = the scale of group g of row p * cols + r.
  PanelsAttr panels;
};

/// Whether `v` is a 3-D memref of whole panels: contiguous [*, D1, D2] with static D1, D2.
bool isContiguousPanels(Value v) {
  auto type = dyn_cast<MemRefType>(v.getType());
  SmallVector<int64_t> strides;
  int64_t offset;
  if (!type || type.getRank() != 3 || ShapedType::isDynamic(type.getDimSize(1)) ||
      ShapedType::isDynamic(type.getDimSize(2)) ||
      failed(type.getStridesAndOffset(strides, offset)))
    return false;
  return strides[2] == 1 && strides[1] == type.getDimSize(2) &&
         strides[0] == type.getDimSize(1) * type.getDimSize(2);
}

/// q8 in panel order (moe-lower-to-linalg's generic marked moe.quant and moe.panels), when
/// its panel shape is this kernel's (lanes = vector-width, cols = gemm-cols) and its
/// activations are f32: the panel GEMM and GEMV below. Others stay generic (scalar loops:
/// correct, slow), as a float weight packed for another --cpu does.
std::optional<QuantMatmul> matchPanels(linalg::GenericOp op, QuantAttr quant, PanelsAttr panels,
                                       const KernelShape &shape);

std::optional<QuantMatmul> match(linalg::GenericOp op, const KernelShape &shape) {
  auto quant = dyn_cast_or_null<QuantAttr>(op->getAttr("moe.quant"));
  if (!quant || !op.hasPureBufferSemantics() || op.getNumDpsInputs() != 3 ||
      op.getNumDpsInits() != 1)
    return std::nullopt;
  if (auto panels = dyn_cast_or_null<PanelsAttr>(op->getAttr("moe.panels")))
    return matchPanels(op, quant, panels, shape);
  QuantMatmul m{op.getDpsInputs()[0], op.getDpsInputs()[1], op.getDpsInputs()[2],
                op.getDpsInits()[0], quant, 0, 0, nullptr};
  for (Value v : {m.x, m.data, m.scale, m.c})
    if (!hasUnitInnerStride(v))
      return std::nullopt;
  auto x = cast<MemRefType>(m.x.getType()), data = cast<MemRefType>(m.data.getType());
  if (!x.getElementType().isF32() || ShapedType::isDynamic(x.getDimSize(1)) ||
      ShapedType::isDynamic(data.getDimSize(0)))
    return std::nullopt;
  m.n = data.getDimSize(0);
  m.k = x.getDimSize(1);
  if (quant.getFormat() == QuantFormat::f8e4m3) {
    if (m.k % shape.width != 0)
      return std::nullopt;
  } else if (quant.getGroupSize() != 32 || m.k % 32 != 0 || 32 % shape.width != 0) {
    return std::nullopt;
  }
  return m;
}

std::optional<QuantMatmul> matchPanels(linalg::GenericOp op, QuantAttr quant, PanelsAttr panels,
                                       const KernelShape &shape) {
  QuantMatmul m{op.getDpsInputs()[0], op.getDpsInputs()[1], op.getDpsInputs()[2],
                op.getDpsInits()[0], quant, 0, 0, panels};
  int64_t cols = panels.getCols(), lanes = panels.getLanes();
  if (quant.getFormat() != QuantFormat::q8 || quant.getGroupSize() != 32 ||
      takesInt8(QuantFormat::q8, shape) || lanes != shape.width || cols != shape.gemmCols ||
      32 % lanes != 0 || !hasUnitInnerStride(m.x) || !hasUnitInnerStride(m.c) ||
      !isContiguousPanels(m.data) || !isContiguousPanels(m.scale))
    return std::nullopt;
  auto x = cast<MemRefType>(m.x.getType()), data = cast<MemRefType>(m.data.getType()),
       scale = cast<MemRefType>(m.scale.getType());
  m.k = x.getDimSize(1);
  if (!x.getElementType().isF32() || ShapedType::isDynamic(m.k) || m.k % 32 != 0 ||
      !data.getElementType().isInteger(8) || !scale.getElementType().isF16() ||
      ShapedType::isDynamic(data.getDimSize(0)) || data.getDimSize(1) != m.k ||
      data.getDimSize(2) != cols || scale.getDimSize(0) != data.getDimSize(0) ||
      scale.getDimSize(1) != m.k / 32 || scale.getDimSize(2) != cols)
    return std::nullopt;
  m.n = data.getDimSize(0) * cols;
  // The maps moe-lower-to-linalg writes for this panel shape.
  MLIRContext *ctx = op.getContext();
  AffineExpr mm, n, k;
  bindDims(ctx, mm, n, k);
  SmallVector<AffineMap> expected = {
      AffineMap::get(3, 0, {mm, k}, ctx),
      AffineMap::get(3, 0, {n.floorDiv(cols), (k % lanes) * (m.k / lanes) + k.floorDiv(lanes),
                            n % cols}, ctx),
      AffineMap::get(3, 0, {n.floorDiv(cols), k.floorDiv(32), n % cols}, ctx),
      AffineMap::get(3, 0, {mm, n}, ctx)};
  if (op.getIndexingMapsArray() != expected)
    return std::nullopt;
  return m;
}

/// The sum of the lanes of `v` by halving (lanes l and l + w/2 first, down to one), the
/// order moe-cpu-vectorize-matmul's kernels and packed GEMM use.
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

class KernelBuilder {
public:
  KernelBuilder(OpBuilder &b, Location loc, const QuantMatmul &m, KernelShape shape)
      : b(b), loc(loc), m(m), shape(shape) {
    f32 = b.getF32Type();
    i32 = b.getI32Type();
    vecType = VectorType::get({shape.width}, f32);
  }

  void build() {
    Value c0 = idx(0), c1 = idx(1);
    int64_t numBlocks = (m.n + shape.blockCols - 1) / shape.blockCols;
    Value rows = memref::DimOp::create(b, loc, m.x, 0);
    // No rows, no parallel region: a decode step calls each expert's GEMVs, and most
    // experts get no row; forking both threads for nothing cost a thread wake-up each (on a
    // busy machine, a wait for the other thread's processor).
    auto nonEmpty = scf::IfOp::create(
        b, loc, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, rows, c0),
        /*withElseRegion=*/false);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(nonEmpty.thenBlock()->getTerminator());
    Value fullRows = sub(rows, arith::RemUIOp::create(b, loc, rows, idx(shape.tileRows)));
    bool int8 = takesInt8(m.quant.getFormat(), shape);
    // Parallel over blocks of columns; `body` gets the block's column range.
    auto columnBlocks = [&](function_ref<void(Value, Value)> body) {
      scf::ParallelOp::create(
          b, loc, ValueRange{c0}, ValueRange{idx(numBlocks)}, ValueRange{c1},
          [&](OpBuilder &nb, Location l, ValueRange ivs) {
            OpBuilder::InsertionGuard guard(b);
            b.setInsertionPoint(nb.getInsertionBlock(), nb.getInsertionPoint());
            Value n0 = mul(ivs[0], idx(shape.blockCols));
            body(n0, arith::MinSIOp::create(b, loc, add(n0, idx(shape.blockCols)), idx(m.n)));
          });
    };
    if (int8)
      return buildInt8(rows, columnBlocks);
    columnBlocks([&](Value n0, Value nEnd) {
      forLoop(c0, fullRows, shape.tileRows,
              [&](Value m0) { columns(m0, shape.tileRows, n0, nEnd); });
      forLoop(fullRows, rows, 1, [&](Value m0) { columns(m0, 1, n0, nEnd); });
    });
  }

  /// q8/q4: the packed GEMM's panel of weight rows n0 .. n0 + cols (PackedGemm.h's layout),
  /// dequantised once per call: per group of 32 and block of `width` rows, each row's
  /// chunks exactly as the GEMV dequantises them (dequantChunk), the width x width block
  /// transposed in registers and stored as panel rows l * kw + j. Only m.data, m.scale
  /// and m.quant are used (the shared GEMM's views have dynamic sizes).
  void packPanel(Value panel, Value n0, Value kw, int64_t cols) {
    int64_t chunks = 32 / shape.width;
    Value groups = arith::DivUIOp::create(b, loc, kw, idx(chunks));
    if (shape.width == 8) { // AVX2: transpose the bytes, then widen (packGroupBytes8)
      forLoop(idx(0), groups, 1, [&](Value g) {
        prefetchPanelAhead(n0, g, cols);
        for (int64_t r0 = 0; r0 < cols; r0 += 8)
          packGroupBytes8(panel, n0, kw, g, r0);
      });
      return;
    }
    forLoop(idx(0), groups, 1, [&](Value g) {
      prefetchPanelAhead(n0, g, cols);
      for (int64_t r0 = 0; r0 < cols; r0 += shape.width) {
        SmallVector<std::pair<Value, Value>> scales;
        for (int64_t i = 0; i < shape.width; ++i)
          scales.push_back(groupScale(add(n0, idx(r0 + i)), g));
        for (int64_t c = 0; c < chunks; ++c) {
          SmallVector<Value> v;
          for (int64_t i = 0; i < shape.width; ++i)
            v.push_back(dequantChunk(add(n0, idx(r0 + i)), g, c, scales[i]));
          transposeLanes(b, loc, v);
          Value j = add(mul(g, idx(chunks)), idx(c));
          for (int64_t l = 0; l < shape.width; ++l)
            vector::StoreOp::create(b, loc, v[l], panel,
                                    ValueRange{add(mul(idx(l), kw), j), idx(r0)});
        }
      }
    });
  }

  /// q8 in panel order: the GEMM's panel n0 .. n0 + cols from the stored panel n0 / cols,
  /// whose rows are already the scratch's (l * kw + j): each row's codes widened and
  /// multiplied by their group's scales (group j / (32 / width), whatever the lane;
  /// panelRow). One sequential read of the codes, one write of the scratch, no transposes;
  /// every value is the exact q * s of the row-major packer, so the bits are the same.
  void packStoredPanel(Value panel, Value n0, Value kw, int64_t cols) {
    int64_t chunks = 32 / shape.width, vecs = cols / shape.width;
    Value p = arith::DivUIOp::create(b, loc, n0, idx(cols));
    Value groups = arith::DivUIOp::create(b, loc, kw, idx(chunks));
    forLoop(idx(0), idx(shape.width), 1, [&](Value l) {
      Value base = mul(l, kw);
      forLoop(idx(0), groups, 1, [&](Value g) {
        SmallVector<Value> s = panelScales(p, g, vecs);
        for (int64_t c = 0; c < chunks; ++c) {
          Value row = add(base, add(mul(g, idx(chunks)), idx(c)));
          SmallVector<Value> w = panelRow(p, row, s);
          for (int64_t v = 0; v < vecs; ++v)
            vector::StoreOp::create(b, loc, w[v], panel, ValueRange{row, idx(v * shape.width)});
        }
      });
    });
  }

  /// q8 in panel order, fewer rows than the GEMM takes (decode): per panel and row, lane l's
  /// chains (one per column) over j < K / width, x[l + width j] broadcast times the stored
  /// panel row l * kw + j dequantised, then the GEMM's halving tree over the lanes and one
  /// add to C: the GEMM's operations in its order, so a row has the same bits in either
  /// (and the row-major kernels' too). Lanes go 4 at a time (4 x cols / width chains, 8 of
  /// AVX2's 16 registers), each lane a sequential stream through the panel, prefetched
  /// kPanelPrefetchRows ahead (prefetchLanes); their chains wait in a small scratch for the
  /// tree.
  void buildPanelGemv() {
    Value c0 = idx(0), c1 = idx(1);
    Value rows = memref::DimOp::create(b, loc, m.x, 0);
    // No rows, no parallel region (see build).
    auto nonEmpty = scf::IfOp::create(
        b, loc, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, rows, c0),
        /*withElseRegion=*/false);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(nonEmpty.thenBlock()->getTerminator());
    int64_t width = shape.width, cols = m.panels.getCols(), vecs = cols / width;
    int64_t chunks = 32 / width, kw = m.k / width, quad = std::min<int64_t>(4, width);
    scf::ParallelOp::create(
        b, loc, ValueRange{c0}, ValueRange{idx(m.n / cols)}, ValueRange{c1},
        [&](OpBuilder &nb, Location, ValueRange ivs) {
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPoint(nb.getInsertionBlock(), nb.getInsertionPoint());
          Value p = ivs[0];
          Value chains = memref::AllocOp::create(
              b, loc, MemRefType::get({width, cols}, f32), b.getI64IntegerAttr(64));
          forLoop(c0, rows, 1, [&](Value row) {
            for (int64_t l0 = 0; l0 < width; l0 += quad) {
              SmallVector<Value> init(quad * vecs, vconst(vecType, b.getF32FloatAttr(0.0f)));
              SmallVector<Value> acc = reduceLoop(
                  m.k / 32, 1, init, [&](Value g, ValueRange it) {
                    SmallVector<Value> next(it.begin(), it.end());
                    SmallVector<Value> s = panelScales(p, g, vecs);
                    Value k0 = mul(g, idx(32)), j0 = mul(g, idx(chunks));
                    prefetchLanes(p, j0, l0, quad, kw);
                    for (int64_t c = 0; c < chunks; ++c)
                      for (int64_t i = 0; i < quad; ++i) {
                        int64_t l = l0 + i;
                        Value k = add(k0, idx(l + width * c)); // l + width (j0 + c)
                        Value x = memref::LoadOp::create(b, loc, m.x, ValueRange{row, k});
                        Value xs = splat(x, vecType);
                        Value stored = add(j0, idx(l * kw + c));
                        SmallVector<Value> w = panelRow(p, stored, s);
                        for (int64_t v = 0; v < vecs; ++v)
                          next[i * vecs + v] =
                              vector::FMAOp::create(b, loc, xs, w[v], next[i * vecs + v]);
                      }
                    return next;
                  });
              for (int64_t i = 0; i < quad; ++i)
                for (int64_t v = 0; v < vecs; ++v)
                  vector::StoreOp::create(b, loc, acc[i * vecs + v], chains,
                                          ValueRange{idx(l0 + i), idx(v * width)});
            }
            for (int64_t v = 0; v < vecs; ++v) {
              SmallVector<Value> lanes;
              for (int64_t l = 0; l < width; ++l)
                lanes.push_back(vector::LoadOp::create(b, loc, vecType, chains,
                                                       ValueRange{idx(l), idx(v * width)}));
              for (int64_t h = width / 2; h >= 1; h /= 2)
                for (int64_t l = 0; l < h; ++l)
                  lanes[l] = arith::AddFOp::create(b, loc, lanes[l], lanes[l + h]);
              SmallVector<Value> pos = {row, add(mul(p, idx(cols)), idx(v * width))};
              Value old = vector::LoadOp::create(b, loc, vecType, m.c, pos);
              vector::StoreOp::create(b, loc, arith::AddFOp::create(b, loc, old, lanes[0]), m.c,
                                      pos);
            }
          });
          memref::DeallocOp::create(b, loc, chains);
        });
  }

private:
  /// Stored panel rows the panel GEMV prefetches ahead of each lane's stream.
  static constexpr int64_t kPanelPrefetchRows = 32;

  /// The panel GEMV reads `quad` lanes, 8 KiB apart in a Mixtral panel, a group (the
  /// lane's next cols * 32 / width bytes: one 64-byte line for q8 on AVX2) at a time; its
  /// loop is longer than the core's reorder window, so a line's miss is not overlapped with
  /// the next ones. Once per group, prefetch each lane's row kPanelPrefetchRows on (into
  /// L1), clamped to the panel's last row (past a lane's end it is the next lane's start).
  void prefetchLanes(Value p, Value j0, int64_t l0, int64_t quad, int64_t kw) {
    Value last = idx(m.k - 1);
    for (int64_t i = 0; i < quad; ++i) {
      Value row = arith::MinUIOp::create(
          b, loc, add(j0, idx((l0 + i) * kw + kPanelPrefetchRows)), last);
      memref::PrefetchOp::create(b, loc, m.data, ValueRange{p, row, idx(0)}, /*isWrite=*/false,
                                 /*localityHint=*/3, /*isDataCache=*/true);
    }
  }

  /// q8 in panel order: the scales of group g of panel p's columns, as cols / width vectors
  /// (on AVX2 times 2^-24, for panelCodesHigh).
  SmallVector<Value> panelScales(Value p, Value g, int64_t vecs) {
    auto halfType = VectorType::get({shape.width}, b.getF16Type());
    SmallVector<Value> s;
    for (int64_t v = 0; v < vecs; ++v) {
      Value wide = arith::ExtFOp::create(
          b, loc, vecType,
          vector::LoadOp::create(b, loc, halfType, m.scale, ValueRange{p, g, idx(v * shape.width)})
              .getResult());
      if (shape.width == 8)
        wide = arith::MulFOp::create(b, loc, wide, vconst(vecType, b.getF32FloatAttr(0x1p-24f)));
      s.push_back(wide);
    }
    return s;
  }

  /// q8 in panel order: stored panel row `row` of panel p as q * s, cols / width vectors.
  SmallVector<Value> panelRow(Value p, Value row, ArrayRef<Value> s) {
    if (shape.width == 8)
      return panelCodesHigh(p, row, s);
    SmallVector<Value> w;
    for (int64_t v = 0; v < static_cast<int64_t>(s.size()); ++v)
      w.push_back(panelCodes(p, row, v, s[v]));
    return w;
  }

  /// q8 in panel order: columns v * width .. of stored panel row `row` of panel p, as q * s
  /// (widths other than AVX2's 8).
  Value panelCodes(Value p, Value row, int64_t v, Value s) {
    auto bytesType = VectorType::get({shape.width}, b.getI8Type());
    Value bytes = vector::LoadOp::create(b, loc, bytesType, m.data,
                                         ValueRange{p, row, idx(v * shape.width)});
    Value f = arith::SIToFPOp::create(
        b, loc, vecType,
        arith::ExtSIOp::create(b, loc, VectorType::get({shape.width}, i32), bytes));
    return arith::MulFOp::create(b, loc, f, s);
  }

  /// q8 in panel order on AVX2: stored panel row `row` of panel p (all its columns) as
  /// q * s, s[v] the scales of columns v * width .. times 2^-24 (panelScales): one load of
  /// the row's bytes, and per `width` columns a byte shuffle that puts each code in the top
  /// byte of a zeroed i32 lane (q * 2^24, in-lane on AVX2: no widening across 128-bit
  /// halves), a conversion and the scale's multiply. q * 2^24 * (s * 2^-24) and q * s are
  /// the same exact product, so the bits are panelCodes'.
  SmallVector<Value> panelCodesHigh(Value p, Value row, ArrayRef<Value> s) {
    int64_t width = shape.width, cols = width * static_cast<int64_t>(s.size());
    Type i8 = b.getI8Type();
    Value bytes = vector::LoadOp::create(b, loc, VectorType::get({cols}, i8), m.data,
                                         ValueRange{p, row, idx(0)});
    Value zero = vconst(VectorType::get({cols}, i8), b.getI8IntegerAttr(0));
    SmallVector<Value> out;
    for (int64_t v = 0; v < static_cast<int64_t>(s.size()); ++v) {
      SmallVector<int64_t> mask;
      for (int64_t e = 0; e < width; ++e)
        for (int64_t byte = 0; byte < 4; ++byte)
          mask.push_back(byte == 3 ? v * width + e : cols); // cols: zero's first byte
      Value high = vector::ShuffleOp::create(b, loc, bytes, zero, mask);
      Value ints = vector::BitCastOp::create(b, loc, VectorType::get({width}, i32), high);
      out.push_back(arith::MulFOp::create(
          b, loc, arith::SIToFPOp::create(b, loc, vecType, ints), s[v]));
    }
    return out;
  }

  /// Groups the q4 panel packer prefetches ahead (256 bytes of a row's codes).
  static constexpr int64_t kPrefetchGroups = 16;

  /// q4's packer reads 16 (32) rows 16 bytes at a time, a stream per row that the hardware
  /// prefetchers do not keep ahead of: once per 64-byte line, prefetch into L2 each row's
  /// codes kPrefetchGroups groups after `g`; past the row's end, the next panel's rows (this
  /// thread's next panel under OpenMP's static schedule), clamped to the last row. Measured
  /// on the expert shapes at 32 rows (2 threads, CPU time, alternating, 7 runs): q4
  /// 0.99-1.12x, median 1.05x; q8 (twice the bytes per group) no faster, so it does not.
  void prefetchPanelAhead(Value n0, Value g, int64_t cols) {
    if (m.quant.getFormat() != QuantFormat::q4)
      return;
    int64_t groupBytes = 32 / m.quant.elementsPerByte();
    Value groups = memref::DimOp::create(b, loc, m.scale, 1);
    Value ahead = add(g, idx(kPrefetchGroups));
    Value wraps = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge, ahead, groups);
    Value gAhead = arith::MinUIOp::create(
        b, loc, arith::SelectOp::create(b, loc, wraps, sub(ahead, groups), ahead),
        sub(groups, idx(1)));
    Value rowShift = arith::SelectOp::create(b, loc, wraps, idx(cols), idx(0));
    Value lastRow = sub(memref::DimOp::create(b, loc, m.data, 0), idx(1));
    Value lineStart = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                            arith::RemUIOp::create(b, loc, gAhead,
                                                                   idx(64 / groupBytes)),
                                            idx(0));
    auto once = scf::IfOp::create(b, loc, lineStart, /*withElseRegion=*/false);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(once.thenBlock()->getTerminator());
    Value byte = mul(gAhead, idx(groupBytes));
    for (int64_t r = 0; r < cols; ++r) {
      Value row = arith::MinUIOp::create(b, loc, add(add(n0, idx(r)), rowShift), lastRow);
      memref::PrefetchOp::create(b, loc, m.data, ValueRange{row, byte}, /*isWrite=*/false,
                                 /*localityHint=*/2, /*isDataCache=*/true);
    }
  }

  /// Panel rows of group `g` for weight rows n0 + r0 .. n0 + r0 + 8 (8 lanes): each row's 32
  /// codes as signed bytes (q8 as stored, q4 nibble - 8), the 8 x 32 bytes transposed in
  /// three rounds of byte, word and dword unpacks (24 shuffles, where transposing the
  /// dequantised f32 took 32 per 8 x 8 block, 128 per group), so that each 64-bit piece is
  /// one element of the group across the 8 rows; each is widened (vpmovsxbd, vcvtdq2ps) and
  /// multiplied by the 8 rows' scales as one vector. Every value is the exact q * s (q4:
  /// (nibble - 8) * s) that dequantChunk makes (both products are exact in f32), so the
  /// panel, and every row's bits, are the same.
  void packGroupBytes8(Value panel, Value n0, Value kw, Value g, int64_t r0) {
    Type i8 = b.getI8Type();
    auto v32i8 = VectorType::get({32}, i8);
    SmallVector<Value> scales, v;
    SmallVector<SmallVector<int64_t>> label; // label[i][byte] = row * 32 + element
    for (int64_t i = 0; i < 8; ++i) {
      Value row = add(n0, idx(r0 + i));
      scales.push_back(memref::LoadOp::create(b, loc, m.scale, ValueRange{row, g}));
      Value bytes = groupBytes(row, g);
      if (m.quant.getFormat() == QuantFormat::q4)
        bytes = arith::SubIOp::create(b, loc, bytes, vconst(v32i8, b.getI8IntegerAttr(8)));
      v.push_back(bytes);
      label.emplace_back();
      for (int64_t e = 0; e < 32; ++e)
        label.back().push_back(i * 32 + e);
    }
    Type scaleType = scales.front().getType();
    Value s = arith::ExtFOp::create(
        b, loc, vecType,
        vector::FromElementsOp::create(b, loc, VectorType::get({8}, scaleType), scales)
            .getResult());
    // Round with units of `unit` bytes: unpack lo/hi of the pairs (v[i], v[j]) per 128-bit
    // half (x86 punpckl/h{bw,wd,dq}), each output pair in place of its inputs.
    auto round = [&](int64_t unit, ArrayRef<std::pair<int64_t, int64_t>> pairs) {
      SmallVector<Value> out;
      SmallVector<SmallVector<int64_t>> outLabel;
      for (auto [i, j] : pairs)
        for (int64_t half = 0; half < 2; ++half) { // lo, then hi
          SmallVector<int64_t> mask, lab;
          for (int64_t lane = 0; lane < 2; ++lane)
            for (int64_t u = 0; u < 8 / unit; ++u)
              for (int64_t src = 0; src < 2; ++src)
                for (int64_t byte = 0; byte < unit; ++byte) {
                  int64_t at = 16 * lane + 8 * half + u * unit + byte;
                  mask.push_back(32 * src + at);
                  lab.push_back(label[src ? j : i][at]);
                }
          out.push_back(vector::ShuffleOp::create(b, loc, v[i], v[j], mask));
          outLabel.push_back(lab);
        }
      v = out;
      label = outLabel;
    };
    round(1, {{0, 1}, {2, 3}, {4, 5}, {6, 7}});
    round(2, {{0, 2}, {1, 3}, {4, 6}, {5, 7}});
    round(4, {{0, 4}, {1, 5}, {2, 6}, {3, 7}});
    auto wideType = VectorType::get({8}, i32);
    for (int64_t t = 0; t < 8; ++t)
      for (int64_t q = 0; q < 4; ++q) {
        int64_t e = label[t][8 * q] % 32; // bytes 8q .. 8q + 7: element e of rows 0 .. 7
        for (int64_t r = 0; r < 8; ++r)
          assert(label[t][8 * q + r] == r * 32 + e && "the byte transpose lost a row");
        Value bytes = vector::ExtractStridedSliceOp::create(
            b, loc, v[t], ArrayRef<int64_t>{8 * q}, ArrayRef<int64_t>{8}, ArrayRef<int64_t>{1});
        Value f = arith::SIToFPOp::create(b, loc, vecType,
                                          arith::ExtSIOp::create(b, loc, wideType, bytes));
        Value j = add(mul(g, idx(4)), idx(e / 8)); // k = 32 g + e = l + 8 j
        vector::StoreOp::create(b, loc, arith::MulFOp::create(b, loc, f, s), panel,
                                ValueRange{add(mul(idx(e % 8), kw), j), idx(r0)});
      }
  }

  Value idx(int64_t v) { return arith::ConstantIndexOp::create(b, loc, v); }
  Value add(Value x, Value y) { return arith::AddIOp::create(b, loc, x, y); }
  Value sub(Value x, Value y) { return arith::SubIOp::create(b, loc, x, y); }
  Value mul(Value x, Value y) { return arith::MulIOp::create(b, loc, x, y); }
  Value splat(Value scalar, VectorType type) {
    return vector::BroadcastOp::create(b, loc, type, scalar);
  }
  Value vconst(VectorType type, Attribute element) {
    return arith::ConstantOp::create(b, loc, type, DenseElementsAttr::get(type, element));
  }

  void forLoop(Value lo, Value hi, int64_t step, function_ref<void(Value)> body) {
    auto loop = scf::ForOp::create(b, loc, lo, hi, idx(step));
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(loop.getBody()->getTerminator());
    body(loop.getInductionVar());
  }

  /// Columns per tile: single rows (decode) take at least 4, so each x chunk loaded serves
  /// several weight rows; full tiles use tile-cols.
  int64_t colsFor(int64_t tileRows) const {
    return tileRows == 1 ? std::max<int64_t>(shape.tileCols, 4) : shape.tileCols;
  }

  void columns(Value m0, int64_t tileRows, Value n0, Value nEnd) {
    int64_t cols = colsFor(tileRows);
    Value span = sub(nEnd, n0);
    Value fullEnd = add(n0, sub(span, arith::RemUIOp::create(b, loc, span, idx(cols))));
    forLoop(n0, fullEnd, cols, [&](Value c) { tile(m0, tileRows, c, cols); });
    forLoop(fullEnd, nEnd, 1, [&](Value c) { tile(m0, tileRows, c, 1); });
  }

  /// A loop from 0 to `end` by `step` carrying `init`; `body` maps (iv, carried) to the next.
  SmallVector<Value> reduceLoop(int64_t end, int64_t step, ArrayRef<Value> init,
                                function_ref<SmallVector<Value>(Value, ValueRange)> body) {
    auto loop = scf::ForOp::create(
        b, loc, idx(0), idx(end), idx(step), init,
        [&](OpBuilder &nb, Location l, Value iv, ValueRange it) {
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPoint(nb.getInsertionBlock(), nb.getInsertionPoint());
          scf::YieldOp::create(b, loc, body(iv, it));
        });
    return SmallVector<Value>(loop.getResults().begin(), loop.getResults().end());
  }

  /// (int8 path) The 32 quantized values of group `g` of weight row `row` as vector<32xi8>: q8 as
  /// stored (signed), q4 as unsigned nibbles in element order (low nibbles of the group's
  /// 16 bytes are elements 0..15, the high ones 16..31).
  Value groupBytes(Value row, Value g) {
    auto v32 = VectorType::get({32}, b.getI8Type());
    if (m.quant.getFormat() == QuantFormat::q8)
      return vector::LoadOp::create(b, loc, v32, m.data, ValueRange{row, mul(g, idx(32))});
    auto v16 = VectorType::get({16}, b.getI8Type());
    Value bytes = vector::LoadOp::create(b, loc, v16, m.data, ValueRange{row, mul(g, idx(16))});
    Value lo = arith::AndIOp::create(b, loc, bytes, vconst(v16, b.getI8IntegerAttr(15)));
    Value hi = arith::ShRUIOp::create(b, loc, bytes, vconst(v16, b.getI8IntegerAttr(4)));
    SmallVector<int64_t> concat(32);
    for (int64_t i = 0; i < 32; ++i)
      concat[i] = i;
    return vector::ShuffleOp::create(b, loc, lo, hi, concat);
  }

  /// The f16 scale s of group `g` of weight row `row`, widened and splat to f32 lanes, and
  /// for q4 also -8 s (exact: a power-of-two multiple); q8 on AVX2: s * 2^-24 (codesHigh).
  std::pair<Value, Value> groupScale(Value row, Value g) {
    Value stored = memref::LoadOp::create(b, loc, m.scale, ValueRange{row, g});
    // Splat as f16, then widen: vpbroadcastw + vcvtph2ps (scalar widening, then a
    // broadcast per value, took five instructions for s and -8 s).
    Value s = arith::ExtFOp::create(
        b, loc, vecType, splat(stored, VectorType::get({shape.width}, stored.getType())));
    if (m.quant.getFormat() == QuantFormat::q8 && shape.width == 8) // for codesHigh
      return {arith::MulFOp::create(b, loc, s, vconst(vecType, b.getF32FloatAttr(0x1p-24f))),
              Value()};
    if (m.quant.getFormat() != QuantFormat::q4)
      return {s, Value()};
    return {s, arith::MulFOp::create(b, loc, s, vconst(vecType, b.getF32FloatAttr(-8.0f)))};
  }

  /// Dequantised f32 lanes [c*width, (c+1)*width) of group `g` of weight row `row`, loaded
  /// straight into 32-bit lanes (vpmovsxbd / vpmovzxbd from memory): q8 q * s; q4 the bytes
  /// holding those elements, masked (low nibbles, elements 0..15) or shifted (high, 16..31),
  /// then nibble * s - 8 s in one FMA (one rounding of the exact (nibble - 8) * s).
  Value dequantChunk(Value row, Value g, int64_t c, std::pair<Value, Value> scale) {
    auto [s, minus8s] = scale;
    auto bytesType = VectorType::get({shape.width}, b.getI8Type());
    auto wideType = VectorType::get({shape.width}, i32);
    int64_t first = c * shape.width; // element of the group
    if (m.quant.getFormat() == QuantFormat::q8 && shape.width == 8)
      return codesHigh(row, g, c, s);
    if (m.quant.getFormat() == QuantFormat::q8) {
      Value bytes = vector::LoadOp::create(b, loc, bytesType, m.data,
                                           ValueRange{row, add(mul(g, idx(32)), idx(first))});
      Value f = arith::SIToFPOp::create(b, loc, vecType,
                                        arith::ExtSIOp::create(b, loc, wideType, bytes));
      return arith::MulFOp::create(b, loc, f, s);
    }
    Value bytes = vector::LoadOp::create(b, loc, bytesType, m.data,
                                         ValueRange{row, add(mul(g, idx(16)), idx(first % 16))});
    Value wide = arith::ExtUIOp::create(b, loc, wideType, bytes);
    Value nibble = first >= 16
                       ? Value(arith::ShRUIOp::create(b, loc, wide, vconst(wideType, b.getI32IntegerAttr(4))))
                       : Value(arith::AndIOp::create(b, loc, wide, vconst(wideType, b.getI32IntegerAttr(15))));
    Value f = arith::SIToFPOp::create(b, loc, vecType, nibble);
    return vector::FMAOp::create(b, loc, f, s, minus8s);
  }

  /// q8 on AVX2: dequantChunk's q * s from the 16 bytes holding chunk c (elements 8c ..
  /// 8c + 7; one load serves chunks c and c ^ 1), each code shuffled into the top byte of a
  /// zeroed i32 lane (q * 2^24; vpshufb stays within 128-bit halves, where vpmovsxbd to ymm
  /// crosses them), converted and multiplied by s24 = s * 2^-24 (groupScale): the same exact
  /// product, so the same bits.
  Value codesHigh(Value row, Value g, int64_t c, Value s24) {
    Type i8 = b.getI8Type();
    Value bytes = vector::LoadOp::create(b, loc, VectorType::get({16}, i8), m.data,
                                         ValueRange{row, add(mul(g, idx(32)), idx(16 * (c / 2)))});
    Value zero = vconst(VectorType::get({16}, i8), b.getI8IntegerAttr(0));
    SmallVector<int64_t> mask;
    for (int64_t e = 0; e < 8; ++e)
      for (int64_t byte = 0; byte < 4; ++byte)
        mask.push_back(byte == 3 ? 8 * (c % 2) + e : 16); // 16: zero's first byte
    Value high = vector::ShuffleOp::create(b, loc, bytes, zero, mask);
    Value ints = vector::BitCastOp::create(b, loc, VectorType::get({8}, i32), high);
    return arith::MulFOp::create(b, loc, arith::SIToFPOp::create(b, loc, vecType, ints), s24);
  }

  /// Single rows (decode) with `prefetch`: byte `byte` of each weight row of the tile
  /// `ahead` rows on, where `ahead` is the tile's width or, if more, enough rows for 4 KiB
  /// of this stream (a tile of 1 column of 2 KiB q4 rows prefetches 2 rows ahead). A row
  /// of a Mixtral expert is 2-7 KiB, a page or two, and the hardware prefetchers stop at
  /// page boundaries, so each new row would otherwise start with demand misses.
  void prefetchNextTile(int64_t tileRows, Value n0, int64_t tileCols, Value byte) {
    if (!shape.prefetch || tileRows != 1)
      return;
    int64_t rowBytes = m.k / m.quant.elementsPerByte();
    int64_t ahead = std::max<int64_t>(tileCols, (4096 + rowBytes - 1) / rowBytes);
    Value last = idx(m.n - 1);
    for (int64_t j = 0; j < tileCols; ++j) {
      Value row = arith::MinUIOp::create(b, loc, add(n0, idx(ahead + j)), last);
      memref::PrefetchOp::create(b, loc, m.data, ValueRange{row, byte}, /*isWrite=*/false,
                                 /*localityHint=*/3, /*isDataCache=*/true);
    }
  }

  /// One group of 32 along K for a tileRows x tileCols tile.
  SmallVector<Value> groupStep(ValueRange acc, Value m0, int64_t tileRows, Value n0,
                               int64_t tileCols, Value g) {
    prefetchNextTile(tileRows, n0, tileCols,
                     mul(g, idx(32 / m.quant.elementsPerByte())));
    SmallVector<Value> next(acc.begin(), acc.end());
    Value k0 = mul(g, idx(32));
    if (tileRows == 1 && m.quant.getFormat() == QuantFormat::q4) {
      // q4 decode: column by column, each column's chunks in order (the same FMAs, the same
      // bits), so that a column's scale and widened bytes die before the next column's are
      // made. Chunk by chunk across the columns, the bytes q4's chunks c and c + 32/2w share
      // (one load after CSE) and every column's scales stay live together: more than AVX2's
      // 16 registers, and the loop stored or reloaded a ymm spill 27 times per 32 FMAs.
      for (int64_t j = 0; j < tileCols; ++j) {
        std::pair<Value, Value> scale = groupScale(add(n0, idx(j)), g);
        for (int64_t c = 0; c < 32 / shape.width; ++c) {
          Value x = vector::LoadOp::create(b, loc, vecType, m.x,
                                           ValueRange{m0, add(k0, idx(c * shape.width))});
          next[j] = vector::FMAOp::create(b, loc, x, dequantChunk(add(n0, idx(j)), g, c, scale),
                                          next[j]);
        }
      }
      return next;
    }
    SmallVector<std::pair<Value, Value>> scales;
    for (int64_t j = 0; j < tileCols; ++j)
      scales.push_back(groupScale(add(n0, idx(j)), g));
    for (int64_t c = 0; c < 32 / shape.width; ++c) {
      Value kk = add(k0, idx(c * shape.width));
      SmallVector<Value> xs;
      for (int64_t i = 0; i < tileRows; ++i)
        xs.push_back(vector::LoadOp::create(b, loc, vecType, m.x, ValueRange{add(m0, idx(i)), kk}));
      for (int64_t j = 0; j < tileCols; ++j) {
        Value w = dequantChunk(add(n0, idx(j)), g, c, scales[j]);
        for (int64_t i = 0; i < tileRows; ++i)
          next[i * tileCols + j] = vector::FMAOp::create(b, loc, xs[i], w, next[i * tileCols + j]);
      }
    }
    return next;
  }

  /// f8e4m3: `width` elements from `kk`, widened by bit manipulation (times 2^-120).
  SmallVector<Value> f8Step(ValueRange acc, Value m0, int64_t tileRows, Value n0,
                            int64_t tileCols, Value kk) {
    auto rawType = VectorType::get({shape.width}, Float8E4M3FNType::get(b.getContext()));
    auto byteType = VectorType::get({shape.width}, b.getI8Type());
    auto wideType = VectorType::get({shape.width}, i32);
    SmallVector<Value> xs;
    for (int64_t i = 0; i < tileRows; ++i)
      xs.push_back(vector::LoadOp::create(b, loc, vecType, m.x, ValueRange{add(m0, idx(i)), kk}));
    SmallVector<Value> next(acc.begin(), acc.end());
    for (int64_t j = 0; j < tileCols; ++j) {
      Value raw = vector::LoadOp::create(b, loc, rawType, m.data, ValueRange{add(n0, idx(j)), kk});
      Value bits = arith::ExtUIOp::create(b, loc, wideType,
                                          arith::BitcastOp::create(b, loc, byteType, raw));
      auto c = [&](int32_t v) { return vconst(wideType, b.getI32IntegerAttr(v)); };
      Value magnitude = arith::ShLIOp::create(b, loc, arith::AndIOp::create(b, loc, bits, c(0x7f)), c(20));
      Value sign = arith::ShLIOp::create(b, loc, arith::AndIOp::create(b, loc, bits, c(0x80)), c(24));
      Value w = arith::BitcastOp::create(b, loc, vecType,
                                         arith::OrIOp::create(b, loc, magnitude, sign));
      for (int64_t i = 0; i < tileRows; ++i)
        next[i * tileCols + j] = vector::FMAOp::create(b, loc, xs[i], w, next[i * tileCols + j]);
    }
    return next;
  }

  void tile(Value m0, int64_t tileRows, Value n0, int64_t tileCols) {
    Value zero = vconst(vecType, b.getF32FloatAttr(0.0f));
    SmallVector<Value> init(tileRows * tileCols, zero);
    bool f8 = m.quant.getFormat() == QuantFormat::f8e4m3;
    SmallVector<Value> acc =
        f8 ? reduceLoop(m.k, shape.width, init,
                        [&](Value kk, ValueRange it) {
                          return f8Step(it, m0, tileRows, n0, tileCols, kk);
                        })
           : reduceLoop(m.k / 32, 1, init, [&](Value g, ValueRange it) {
               return groupStep(it, m0, tileRows, n0, tileCols, g);
             });
    for (int64_t j = 0; j < tileCols; ++j) {
      Value col = add(n0, idx(j));
      Value rowScale;
      if (f8) // the f8 lanes were 2^-120 of their value; the row's scale restores it
        rowScale = arith::MulFOp::create(
            b, loc, memref::LoadOp::create(b, loc, m.scale, ValueRange{col, idx(0)}),
            arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0x1p120f)));
      for (int64_t i = 0; i < tileRows; ++i) {
        Value row = add(m0, idx(i));
        // The halving tree of the packed GEMM (and of the bf16 kernels): a row computed
        // here and the same row in a GEMM call are the same bits.
        Value sum = halvingSum(b, loc, acc[i * tileCols + j]);
        if (rowScale)
          sum = arith::MulFOp::create(b, loc, sum, rowScale);
        Value old = memref::LoadOp::create(b, loc, m.c, ValueRange{row, col});
        memref::StoreOp::create(b, loc, arith::AddFOp::create(b, loc, old, sum), m.c,
                                ValueRange{row, col});
      }
    }
  }

  //===--------------------------------------------------------------------===//
  // int8 activations (q8, q4). Every row of x is first quantized, on the calling thread,
  // to int8 per group of 32 (s_x = amax / 127, q_x = round-half-even(x * 127 / amax),
  // llama.cpp's q8_0) into heap buffers freed after the kernel. Then each (row, column)
  // pair takes, per group, the exact int32 dot product of its 32 byte pairs as 8 lanes
  // (AVX2: vpmaddubsw u8 x s8 -> i16 pairs, vpmaddwd with ones -> i32; AVX-VNNI /
  // AVX512-VNNI: one vpdpbusd), converts it to f32 and accumulates dot * s_x * s_w (one
  // multiply, one FMA). q8 weights are signed: |w| and q_x * sign(w) (vpsignb) make the
  // unsigned x signed pair (|q| <= 127: no i16 saturation). q4 nibbles are unsigned
  // already; the -8 offset is -8 * (the sum of the 4 q_x a lane covers), an int32 vector
  // per (row, group) made with the row, that starts the integer accumulation (exact).
  // Every output runs the same instruction sequence whichever tile it falls in (a tile
  // only shares loads), so a row's result depends neither on M nor on the other rows.
  //===--------------------------------------------------------------------===//

  void buildInt8(Value rows, function_ref<void(function_ref<void(Value, Value)>)> columnBlocks) {
    int64_t groups = m.k / 32;
    // At most 4 rows: a pair needs its accumulator and the rows' q_x, s_x (and q4 offsets)
    // stay live across the tile's columns; 16 ymm registers.
    int64_t tileRows = std::min<int64_t>(shape.tileRows, 4);
    Value fullRows = sub(rows, arith::RemUIOp::create(b, loc, rows, idx(tileRows)));
    bool q4 = m.quant.getFormat() == QuantFormat::q4;
    auto alloc = [&](int64_t cols, Type element) -> Value {
      return memref::AllocOp::create(b, loc,
                                     MemRefType::get({ShapedType::kDynamic, cols}, element),
                                     ValueRange{rows}, b.getI64IntegerAttr(64));
    };
    pairs = q4 && groups % 2 == 0;
    octets = q4 && shape.q4Octets && !shape.vnni && groups % 8 == 0;
    xq = alloc(m.k, b.getI8Type());
    xs = alloc(octets ? groups : pairs ? groups * 4 : groups, f32);
    if (q4)
      xbias = alloc(octets ? groups : pairs ? groups * 4 : groups * 8, i32);
    forLoop(idx(0), rows, 1, [&](Value r) { pairs ? quantizeRowPairs(r) : quantizeRow(r); });
    columnBlocks([&](Value n0, Value nEnd) {
      forLoop(idx(0), fullRows, tileRows,
              [&](Value m0) { columnsInt8(m0, tileRows, n0, nEnd); });
      forLoop(fullRows, rows, 1, [&](Value m0) { columnsInt8(m0, 1, n0, nEnd); });
    });
    for (Value buffer : {xq, xs, xbias})
      if (buffer)
        memref::DeallocOp::create(b, loc, buffer);
  }

  /// Group g of row `row` quantized: q_x as vector<32xi32> and vector<32xi8>, and s_x.
  std::tuple<Value, Value, Value> quantizeGroup(Value row, Value g) {
    auto v32f = VectorType::get({32}, f32);
    auto v32i = VectorType::get({32}, i32);
    Value xv = vector::LoadOp::create(b, loc, v32f, m.x, ValueRange{row, mul(g, idx(32))});
    Value hi = vector::ReductionOp::create(b, loc, vector::CombiningKind::MAXNUMF, xv);
    Value lo = vector::ReductionOp::create(b, loc, vector::CombiningKind::MAXNUMF,
                                           arith::NegFOp::create(b, loc, xv));
    Value amax = arith::MaxNumFOp::create(b, loc, hi, lo);
    Value zero = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0.0f));
    Value c127 = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(127.0f));
    Value isZero = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, amax, zero);
    Value inv = arith::SelectOp::create(b, loc, isZero, zero,
                                        arith::DivFOp::create(b, loc, c127, amax));
    Value scaled = arith::MulFOp::create(b, loc, xv, splat(inv, v32f));
    Value q32 = arith::FPToSIOp::create(b, loc, v32i, math::RoundEvenOp::create(b, loc, scaled));
    Value q8 = arith::TruncIOp::create(b, loc, VectorType::get({32}, b.getI8Type()), q32);
    return {q32, q8, arith::DivFOp::create(b, loc, amax, c127)};
  }

  Value shuffle(Value a, Value c, ArrayRef<int64_t> lanes) {
    return vector::ShuffleOp::create(b, loc, a, c, lanes);
  }

  /// Lane l: v[4l] + v[4l+1] + v[4l+2] + v[4l+3] (the elements a dot product's lane l covers).
  Value quadSums(Value v) {
    Value sums;
    for (int64_t c = 0; c < 4; ++c) {
      SmallVector<int64_t> lanes;
      for (int64_t l = 0; l < 8; ++l)
        lanes.push_back(4 * l + c);
      Value part = shuffle(v, v, lanes);
      sums = sums ? Value(arith::AddIOp::create(b, loc, sums, part)) : part;
    }
    return sums;
  }

  /// q4 with an even number of groups: groups 2p and 2p+1 are one 32-byte load of weight
  /// nibbles (bytes 0..15: group 2p, 16..31: group 2p+1), whose low nibbles are elements
  /// 0..15 of each group and high nibbles 16..31. The row is stored to match: per pair, 64
  /// bytes [a0..15 b0..15 | a16..31 b16..31], s_x as 8 lanes [s_a x4, s_b x4], and the -8
  /// offset per lane of the pair's dot product (lanes 0..3: group a, 4..7: group b).
  void quantizeRowPairs(Value row) {
    forLoop(idx(0), idx(m.k / 64), 1, [&](Value p) {
      Value g = mul(p, idx(2));
      auto [a32, a8, sa] = quantizeGroup(row, g);
      auto [b32, b8, sb] = quantizeGroup(row, add(g, idx(1)));
      SmallVector<int64_t> low, high;
      for (int64_t i = 0; i < 16; ++i)
        low.push_back(i), high.push_back(16 + i);
      for (int64_t i = 0; i < 16; ++i)
        low.push_back(32 + i), high.push_back(48 + i);
      Value k0 = mul(p, idx(64));
      vector::StoreOp::create(b, loc, shuffle(a8, b8, low), xq, ValueRange{row, k0});
      vector::StoreOp::create(b, loc, shuffle(a8, b8, high), xq,
                              ValueRange{row, add(k0, idx(32))});
      if (octets) { // one lane per group, in the octet's lane order (octetStep)
        Value c8 = arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(-8));
        Value slot = add(mul(arith::DivUIOp::create(b, loc, p, idx(4)), idx(8)),
                         arith::RemUIOp::create(b, loc, p, idx(4)));
        for (auto [q32, sxg, lane] : {std::tuple{a32, sa, slot}, {b32, sb, add(slot, idx(4))}}) {
          Value sum = vector::ReductionOp::create(b, loc, vector::CombiningKind::ADD, q32);
          memref::StoreOp::create(b, loc, sxg, xs, ValueRange{row, lane});
          memref::StoreOp::create(b, loc, arith::MulIOp::create(b, loc, sum, c8), xbias,
                                  ValueRange{row, lane});
        }
        return;
      }
      auto v1f = VectorType::get({1}, f32);
      Value sv = shuffle(splat(sa, v1f), splat(sb, v1f), {0, 0, 0, 0, 1, 1, 1, 1});
      vector::StoreOp::create(b, loc, sv, xs, ValueRange{row, mul(p, idx(8))});
      Value qa = quadSums(a32), qb = quadSums(b32);
      Value sums = arith::AddIOp::create(b, loc, shuffle(qa, qb, {0, 1, 2, 3, 8, 9, 10, 11}),
                                         shuffle(qa, qb, {4, 5, 6, 7, 12, 13, 14, 15}));
      auto v8i = VectorType::get({8}, i32);
      Value bias = arith::MulIOp::create(b, loc, sums, vconst(v8i, b.getI32IntegerAttr(-8)));
      vector::StoreOp::create(b, loc, bias, xbias, ValueRange{row, mul(p, idx(8))});
    });
  }

  void quantizeRow(Value row) {
    forLoop(idx(0), idx(m.k / 32), 1, [&](Value g) {
      auto [q32, q8, sx] = quantizeGroup(row, g);
      vector::StoreOp::create(b, loc, q8, xq, ValueRange{row, mul(g, idx(32))});
      memref::StoreOp::create(b, loc, sx, xs, ValueRange{row, g});
      if (!xbias)
        return;
      // Lane l of a dot product covers elements 4l .. 4l+3: its share of -8 * sum(q_x).
      auto v8i = VectorType::get({8}, i32);
      Value bias = arith::MulIOp::create(b, loc, quadSums(q32), vconst(v8i, b.getI32IntegerAttr(-8)));
      vector::StoreOp::create(b, loc, bias, xbias, ValueRange{row, mul(g, idx(8))});
    });
  }

  /// Single q4 rows (decode) in pairs or octets take one column at a time: a thread then
  /// reads its weight rows as one sequential stream (rows are contiguous), which the
  /// prefetchers follow, where 4 columns interleaved 4 streams 2 KiB apart and reached ~2/3
  /// of the read bandwidth on one core. Each output's instructions are the same whatever the
  /// tile, so are its bits; one accumulator per column is enough with one FMA per 2 or 8
  /// groups. The others keep 4 columns: their FMA per group (q8, q4 with an odd number of
  /// groups) or per 8 weights (float) would wait on the previous one (q8 int8 on one column
  /// measured 8% slower on one core; its 4 KiB rows streamed well as they were).
  void columnsInt8(Value m0, int64_t tileRows, Value n0, Value nEnd) {
    int64_t cols = tileRows == 1 && (pairs || octets) ? 1 : colsFor(tileRows);
    Value span = sub(nEnd, n0);
    Value fullEnd = add(n0, sub(span, arith::RemUIOp::create(b, loc, span, idx(cols))));
    forLoop(n0, fullEnd, cols, [&](Value c) { tileInt8(m0, tileRows, c, cols); });
    forLoop(fullEnd, nEnd, 1, [&](Value c) { tileInt8(m0, tileRows, c, 1); });
  }

  Value intrinsic(StringRef name, Type result, ValueRange args) {
    return LLVM::CallIntrinsicOp::create(b, loc, result, b.getStringAttr(name), args)
        .getResult(0);
  }

  /// acc + the sums over 4 adjacent pairs of u[i] * s[i] (u unsigned, s signed), as
  /// vector<8xi32> lanes; exact on both paths (no pair sum here reaches i16 saturation).
  Value dot32(Value acc, Value u, Value s) {
    auto v8i32 = VectorType::get({8}, i32);
    if (shape.vnni)
      return intrinsic("llvm.x86.avx512.vpdpbusd.256", v8i32, ValueRange{acc, u, s});
    auto v16i16 = VectorType::get({16}, b.getI16Type());
    Value pairs = intrinsic("llvm.x86.avx2.pmadd.ub.sw", v16i16, ValueRange{u, s});
    Value ones = vconst(v16i16, b.getI16IntegerAttr(1));
    return arith::AddIOp::create(b, loc, acc,
                                 intrinsic("llvm.x86.avx2.pmadd.wd", v8i32, ValueRange{pairs, ones}));
  }

  /// Outputs [m0, m0 + tileRows) x [n0, n0 + tileCols) from the quantized rows.
  /// q4 pairs (see quantizeRowPairs): per (row, column) and pair, two dot products (low
  /// nibbles with the rows' first halves, high with the second) summed exactly, the offset,
  /// then f32: dot * s_x * s_w with s_x and s_w as [a x4, b x4] lanes.
  SmallVector<Value> pairStep(ValueRange acc, Value m0, int64_t tileRows, Value n0,
                              int64_t tileCols, Value p) {
    auto v8f = VectorType::get({8}, f32);
    auto v8i = VectorType::get({8}, i32);
    auto v32i8 = VectorType::get({32}, b.getI8Type());
    SmallVector<Value> next(acc.begin(), acc.end()), xlo, xhi, sx, start;
    prefetchNextTile(tileRows, n0, tileCols, mul(p, idx(32)));
    for (int64_t i = 0; i < tileRows; ++i) {
      Value row = add(m0, idx(i)), k0 = mul(p, idx(64));
      xlo.push_back(vector::LoadOp::create(b, loc, v32i8, xq, ValueRange{row, k0}));
      xhi.push_back(vector::LoadOp::create(b, loc, v32i8, xq, ValueRange{row, add(k0, idx(32))}));
      sx.push_back(vector::LoadOp::create(b, loc, v8f, xs, ValueRange{row, mul(p, idx(8))}));
      start.push_back(vector::LoadOp::create(b, loc, v8i, xbias, ValueRange{row, mul(p, idx(8))}));
    }
    for (int64_t j = 0; j < tileCols; ++j) {
      Value col = add(n0, idx(j));
      Value bytes = vector::LoadOp::create(b, loc, v32i8, m.data, ValueRange{col, mul(p, idx(32))});
      Value lo = arith::AndIOp::create(b, loc, bytes, vconst(v32i8, b.getI8IntegerAttr(15)));
      Value hi = arith::ShRUIOp::create(b, loc, bytes, vconst(v32i8, b.getI8IntegerAttr(4)));
      Value two = vector::LoadOp::create(b, loc, VectorType::get({2}, b.getF16Type()), m.scale,
                                         ValueRange{col, mul(p, idx(2))});
      Value sw2 = arith::ExtFOp::create(b, loc, VectorType::get({2}, f32), two);
      Value sw = shuffle(sw2, sw2, {0, 0, 0, 0, 1, 1, 1, 1});
      for (int64_t i = 0; i < tileRows; ++i) {
        Value dot;
        if (shape.vnni) {
          dot = dot32(dot32(start[i], lo, xlo[i]), hi, xhi[i]);
        } else { // i16 sums of both halves: |each| <= 2 * 15 * 127, no saturation
          auto v16i16 = VectorType::get({16}, b.getI16Type());
          Value pairs16 = arith::AddIOp::create(
              b, loc, intrinsic("llvm.x86.avx2.pmadd.ub.sw", v16i16, ValueRange{lo, xlo[i]}),
              intrinsic("llvm.x86.avx2.pmadd.ub.sw", v16i16, ValueRange{hi, xhi[i]}));
          dot = arith::AddIOp::create(
              b, loc, start[i],
              intrinsic("llvm.x86.avx2.pmadd.wd", v8i, ValueRange{pairs16, vconst(v16i16, b.getI16IntegerAttr(1))}));
        }
        Value scaled = arith::MulFOp::create(b, loc, arith::SIToFPOp::create(b, loc, v8f, dot), sx[i]);
        next[i * tileCols + j] = vector::FMAOp::create(b, loc, scaled, sw, next[i * tileCols + j]);
      }
    }
    return next;
  }

  /// q4 octets (option q4-octets; AVX2, K % 256 == 0): groups 8o .. 8o+7 of a column are
  /// 4 loads of 32 bytes (load i: groups 8o+2i, 8o+2i+1, as in pairs, with the same rows of
  /// x). Per load and row, the two vpmaddubsw (low nibbles with x's first halves, high with
  /// the second) are added as i16 lanes [g 2i x8 | g 2i+1 x8]; three vphaddw and one
  /// vpmaddwd sum them down to one exact int32 lane per group, in the order
  /// [0 2 4 6 | 1 3 5 7] of the octet (each i16 sum covers at most 16 products of
  /// |15 * 127|: 30480, no wrap-around). Then, per group, the offset, one conversion, * s_x
  /// and one FMA with s_w. The decode loop (llc -mcpu=znver3) runs 47 instructions per 128
  /// weight bytes of a column where pairs run 76. s_x and the offsets are stored in the
  /// lane order (quantizeRowPairs); s_w is loaded as 8 f16, widened and permuted to it.
  /// moe-cpu-pipeline's default (CpuPipelineOptions::q4Octets); the pass's own option is off.
  SmallVector<Value> octetStep(ValueRange acc, Value m0, int64_t tileRows, Value n0,
                               int64_t tileCols, Value o) {
    auto v8f = VectorType::get({8}, f32);
    auto v8i = VectorType::get({8}, i32);
    auto v16i16 = VectorType::get({16}, b.getI16Type());
    auto v32i8 = VectorType::get({32}, b.getI8Type());
    SmallVector<Value> next(acc.begin(), acc.end()), sx, start;
    Value byte0 = mul(o, idx(128));
    for (int64_t i = 0; i < tileRows; ++i) {
      Value row = add(m0, idx(i));
      sx.push_back(vector::LoadOp::create(b, loc, v8f, xs, ValueRange{row, mul(o, idx(8))}));
      start.push_back(vector::LoadOp::create(b, loc, v8i, xbias, ValueRange{row, mul(o, idx(8))}));
    }
    auto phadd = [&](Value u, Value v) {
      return intrinsic("llvm.x86.avx2.phadd.w", v16i16, ValueRange{u, v});
    };
    // Column by column, load by load (LLVM schedules them as it likes; the order of the
    // loads across columns made no difference measured), each load's sums folded in.
    SmallVector<Value> partial(tileRows * tileCols), pending(tileRows * tileCols);
    auto loadStep = [&](int64_t l, int64_t j) {
      Value col = add(n0, idx(j));
      Value bytes = vector::LoadOp::create(b, loc, v32i8, m.data,
                                           ValueRange{col, add(byte0, idx(32 * l))});
      Value lo = arith::AndIOp::create(b, loc, bytes, vconst(v32i8, b.getI8IntegerAttr(15)));
      Value hi = arith::AndIOp::create(
          b, loc, arith::ShRUIOp::create(b, loc, bytes, vconst(v32i8, b.getI8IntegerAttr(4))),
          vconst(v32i8, b.getI8IntegerAttr(15)));
      for (int64_t i = 0; i < tileRows; ++i) {
        Value row = add(m0, idx(i));
        Value k0 = add(mul(o, idx(256)), idx(64 * l));
        Value xlo = vector::LoadOp::create(b, loc, v32i8, xq, ValueRange{row, k0});
        Value xhi = vector::LoadOp::create(b, loc, v32i8, xq, ValueRange{row, add(k0, idx(32))});
        Value sum = arith::AddIOp::create(
            b, loc, intrinsic("llvm.x86.avx2.pmadd.ub.sw", v16i16, ValueRange{lo, xlo}),
            intrinsic("llvm.x86.avx2.pmadd.ub.sw", v16i16, ValueRange{hi, xhi}));
        Value &p = partial[i * tileCols + j], &q = pending[i * tileCols + j];
        if (l == 0 || l == 2)
          q = sum;
        else if (l == 1)
          p = phadd(q, sum);
        else
          p = phadd(p, phadd(q, sum));
      }
      if (l != 3)
        return;
      Value eight = vector::LoadOp::create(b, loc, VectorType::get({8}, b.getF16Type()), m.scale,
                                           ValueRange{col, mul(o, idx(8))});
      Value sw8 = arith::ExtFOp::create(b, loc, v8f, eight);
      Value sw = shuffle(sw8, sw8, {0, 2, 4, 6, 1, 3, 5, 7});
      for (int64_t i = 0; i < tileRows; ++i) {
        Value dot = arith::AddIOp::create(
            b, loc, start[i],
            intrinsic("llvm.x86.avx2.pmadd.wd", v8i,
                      ValueRange{partial[i * tileCols + j], vconst(v16i16, b.getI16IntegerAttr(1))}));
        Value scaled = arith::MulFOp::create(b, loc, arith::SIToFPOp::create(b, loc, v8f, dot), sx[i]);
        next[i * tileCols + j] = vector::FMAOp::create(b, loc, scaled, sw, next[i * tileCols + j]);
      }
    };
    prefetchNextTile(tileRows, n0, tileCols, byte0);
    prefetchNextTile(tileRows, n0, tileCols, add(byte0, idx(64)));
    for (int64_t j = 0; j < tileCols; ++j)
      for (int64_t l = 0; l < 4; ++l)
        loadStep(l, j);
    return next;
  }

  void tileInt8(Value m0, int64_t tileRows, Value n0, int64_t tileCols) {
    auto v8f = VectorType::get({8}, f32);
    auto v8i = VectorType::get({8}, i32);
    auto v32i8 = VectorType::get({32}, b.getI8Type());
    bool q4 = m.quant.getFormat() == QuantFormat::q4;
    SmallVector<Value> init(tileRows * tileCols, vconst(v8f, b.getF32FloatAttr(0.0f)));
    SmallVector<Value> acc =
        octets ? reduceLoop(m.k / 256, 1, init, [&](Value o, ValueRange it) {
                   return octetStep(it, m0, tileRows, n0, tileCols, o);
                 })
        : pairs ? reduceLoop(m.k / 64, 1, init, [&](Value p, ValueRange it) {
                  return pairStep(it, m0, tileRows, n0, tileCols, p);
                })
              : reduceLoop(m.k / 32, 1, init, [&](Value g, ValueRange it) {
      SmallVector<Value> next(it.begin(), it.end()), xv, sx, start;
      prefetchNextTile(tileRows, n0, tileCols, mul(g, idx(32 / m.quant.elementsPerByte())));
      for (int64_t i = 0; i < tileRows; ++i) {
        Value row = add(m0, idx(i));
        xv.push_back(vector::LoadOp::create(b, loc, v32i8, xq, ValueRange{row, mul(g, idx(32))}));
        sx.push_back(splat(memref::LoadOp::create(b, loc, xs, ValueRange{row, g}), v8f));
        start.push_back(q4 ? Value(vector::LoadOp::create(b, loc, v8i, xbias,
                                                          ValueRange{row, mul(g, idx(8))}))
                           : vconst(v8i, b.getI32IntegerAttr(0)));
      }
      for (int64_t j = 0; j < tileCols; ++j) {
        Value col = add(n0, idx(j));
        Value w = groupBytes(col, g);
        Value wAbs = q4 ? w : Value(math::AbsIOp::create(b, loc, w));
        Value stored = memref::LoadOp::create(b, loc, m.scale, ValueRange{col, g});
        // Broadcast as f16, then widen: vpbroadcastw + vcvtph2ps.
        Value sw = arith::ExtFOp::create(
            b, loc, v8f, splat(stored, VectorType::get({8}, stored.getType())));
        for (int64_t i = 0; i < tileRows; ++i) {
          Value xSigned =
              q4 ? xv[i] : intrinsic("llvm.x86.avx2.psign.b", v32i8, ValueRange{xv[i], w});
          Value dot = arith::SIToFPOp::create(b, loc, v8f, dot32(start[i], wAbs, xSigned));
          Value scaled = arith::MulFOp::create(b, loc, dot, sx[i]);
          next[i * tileCols + j] = vector::FMAOp::create(b, loc, scaled, sw, it[i * tileCols + j]);
        }
      }
      return next;
    });
    for (int64_t i = 0; i < tileRows; ++i)
      for (int64_t j = 0; j < tileCols; ++j) {
        Value row = add(m0, idx(i)), col = add(n0, idx(j));
        Value sum = vector::ReductionOp::create(b, loc, vector::CombiningKind::ADD,
                                                acc[i * tileCols + j],
                                                arith::FastMathFlags::reassoc);
        Value old = memref::LoadOp::create(b, loc, m.c, ValueRange{row, col});
        memref::StoreOp::create(b, loc, arith::AddFOp::create(b, loc, old, sum), m.c,
                                ValueRange{row, col});
      }
  }

  Value xq, xs, xbias; // int8 path: quantized rows, their scales, q4 offsets
  bool pairs = false;  // q4 with an even number of groups: two groups per load
  bool octets = false; // ... and a multiple of 8 groups on AVX2: 8 groups per step

  OpBuilder &b;
  Location loc;
  QuantMatmul m;
  KernelShape shape;
  Type f32, i32;
  VectorType vecType;
};

/// Whether the float q8/q4 matmul `m` takes the packed GEMM from gemm-min-rows rows on.
bool takesGemm(const QuantMatmul &m, const KernelShape &shape) {
  QuantFormat format = m.quant.getFormat();
  return shape.gemmMinRows > 0 && format != QuantFormat::f8e4m3 && !takesInt8(format, shape) &&
         m.n % shape.gemmCols == 0 && m.k % shape.width == 0;
}

/// A 2-D view type with dynamic sizes, row stride and offset and unit inner stride.
MemRefType dynamicView(Type elementType) {
  int64_t dyn = ShapedType::kDynamic;
  return MemRefType::get({dyn, dyn}, elementType,
                         StridedLayoutAttr::get(elementType.getContext(), dyn, {dyn, 1}));
}

/// C += x · dequant(W)ᵀ as moe-cpu-vectorize-matmul's packed GEMM (PackedGemm.h) with q8/q4 panels
/// dequantised once per call (KernelBuilder::packPanel), at `b`'s insertion point.
void buildQuantGemm(OpBuilder &b, Location loc, const QuantMatmul &m, const KernelShape &shape) {
  Value n = memref::DimOp::create(b, loc, m.c, 1), k = memref::DimOp::create(b, loc, m.x, 1);
  auto packer = [&](OpBuilder &pb, Location l, Value panel, Value n0) {
    Value kw = arith::DivUIOp::create(pb, l, k, arith::ConstantIndexOp::create(pb, l, shape.width));
    KernelBuilder kb(pb, l, m, shape);
    if (m.panels)
      kb.packStoredPanel(panel, n0, kw, shape.gemmCols);
    else
      kb.packPanel(panel, n0, kw, shape.gemmCols);
  };
  buildPackedGemm(b, loc, m.x, m.c, n, k, GemmShape{shape.width, shape.gemmRows, shape.gemmCols},
                  packer);
}

/// The quantized GEMM as one private noinline function per module and (format, operand
/// types), called from every site that takes it (as moe-cpu-vectorize-matmul's
/// `@__moe_gemm_*`, and for the same reason: compile time). Operands travel as (base
/// buffer, offset, sizes, row stride); the body rebuilds the views:
///
///   func.func private @__moe_qgemm_<format>_<rows>x<cols>(
///       %x: memref<f32>, %x_off, %m, %k, %x_ld : index,
///       %data: memref<i8>, %d_off, %n, %d_ld : index,
///       %scale: memref<f16>, %s_off, %s_ld : index,
///       %c: memref<f32>, %c_off, %c_ld : index)
class SharedQuantGemms {
public:
  SharedQuantGemms(ModuleOp module, KernelShape shape)
      : module(module), table(module), shape(shape) {}

  void call(OpBuilder &b, Location loc, const QuantMatmul &m) {
    func::FuncOp fn = get(m, loc);
    auto xm = memref::ExtractStridedMetadataOp::create(b, loc, m.x);
    auto dm = memref::ExtractStridedMetadataOp::create(b, loc, m.data);
    auto sm = memref::ExtractStridedMetadataOp::create(b, loc, m.scale);
    auto cm = memref::ExtractStridedMetadataOp::create(b, loc, m.c);
    SmallVector<Value> args = {xm.getBaseBuffer(), xm.getOffset(), xm.getSizes()[0],
                               xm.getSizes()[1], xm.getStrides()[0], dm.getBaseBuffer(),
                               dm.getOffset(), dm.getSizes()[0]};
    if (!m.panels) // (panels: contiguous, their strides follow from K)
      args.push_back(dm.getStrides()[0]);
    args.append({sm.getBaseBuffer(), sm.getOffset()});
    if (!m.panels)
      args.push_back(sm.getStrides()[0]);
    args.append({cm.getBaseBuffer(), cm.getOffset(), cm.getStrides()[0]});
    func::CallOp::create(b, loc, fn, args);
  }

private:
  func::FuncOp get(const QuantMatmul &m, Location loc) {
    auto elementType = [](Value v) { return cast<MemRefType>(v.getType()).getElementType(); };
    Type dataType = elementType(m.data), scaleType = elementType(m.scale);
    std::tuple<Attribute, Type, Type, Attribute> key(m.quant, dataType, scaleType, m.panels);
    if (func::FuncOp fn = cache.lookup(key))
      return fn;
    OpBuilder b(module.getBodyRegion());
    b.setInsertionPointToEnd(module.getBody());
    Type index = b.getIndexType(), f32 = b.getF32Type();
    auto base = [](Type t) { return MemRefType::get({}, t); };
    SmallVector<Type> inputs = {base(f32),      index, index, index, index,
                                base(dataType), index, index};
    if (!m.panels)
      inputs.push_back(index);
    inputs.append({base(scaleType), index});
    if (!m.panels)
      inputs.push_back(index);
    inputs.append({base(f32), index, index});
    std::string name;
    llvm::raw_string_ostream os(name);
    os << "__moe_qgemm_" << stringifyQuantFormat(m.quant.getFormat())
       << (m.panels ? "_panels_" : "_") << shape.gemmRows << "x" << shape.gemmCols;
    auto fn = func::FuncOp::create(b, loc, name, b.getFunctionType(inputs, {}));
    fn.setPrivate();
    fn->setAttr("passthrough", b.getArrayAttr({b.getStringAttr("noinline")}));
    fn->setAttr("llvm.linkage", LLVM::LinkageAttr::get(b.getContext(), LLVM::Linkage::Internal));
    table.insert(fn); // renames it if the name is taken
    Block *body = fn.addEntryBlock();
    b.setInsertionPointToStart(body);
    auto arg = [&](unsigned i) -> Value { return body->getArgument(i); };
    auto view = [&](Value buffer, Value offset, Value rows, Value cols, Value ld, Type t) {
      SmallVector<OpFoldResult> sizes = {rows, cols}, strides = {ld, b.getIndexAttr(1)};
      return memref::ReinterpretCastOp::create(b, loc, dynamicView(t), buffer,
                                               OpFoldResult(offset), sizes, strides)
          .getResult();
    };
    Value rows = arg(2), k = arg(3), n = arg(7);
    auto per = [&](int64_t d) {
      return arith::DivUIOp::create(b, loc, k, arith::ConstantIndexOp::create(b, loc, d));
    };
    QuantMatmul q = m;
    q.x = view(arg(0), arg(1), rows, k, arg(4), f32);
    if (m.panels) { // n: the panel count; whole contiguous panels [n, K, cols], [n, K / 32, cols]
      int64_t cols = m.panels.getCols();
      auto panelView = [&](Value buffer, Value offset, Value depth, Type t) {
        Value c = arith::ConstantIndexOp::create(b, loc, cols);
        Value stride = arith::MulIOp::create(b, loc, depth, c);
        int64_t dyn = ShapedType::kDynamic;
        auto type = MemRefType::get({dyn, dyn, cols}, t,
                                    StridedLayoutAttr::get(b.getContext(), dyn, {dyn, cols, 1}));
        SmallVector<OpFoldResult> sizes = {n, depth, b.getIndexAttr(cols)};
        SmallVector<OpFoldResult> strides = {stride, b.getIndexAttr(cols), b.getIndexAttr(1)};
        return memref::ReinterpretCastOp::create(b, loc, type, buffer, OpFoldResult(offset),
                                                 sizes, strides)
            .getResult();
      };
      q.data = panelView(arg(5), arg(6), k, dataType);
      q.scale = panelView(arg(8), arg(9), per(m.quant.getGroupSize()), scaleType);
      q.c = view(arg(10), arg(11), rows,
                 arith::MulIOp::create(b, loc, n, arith::ConstantIndexOp::create(b, loc, cols)),
                 arg(12), f32);
    } else {
      q.data = view(arg(5), arg(6), n, per(m.quant.elementsPerByte()), arg(8), dataType);
      q.scale = view(arg(9), arg(10), n, per(m.quant.getGroupSize()), arg(11), scaleType);
      q.c = view(arg(12), arg(13), rows, n, arg(14), f32);
    }
    buildQuantGemm(b, loc, q, shape);
    func::ReturnOp::create(b, loc);
    cache[key] = fn;
    return fn;
  }

  ModuleOp module;
  SymbolTable table;
  KernelShape shape;
  llvm::DenseMap<std::tuple<Attribute, Type, Type, Attribute>, func::FuncOp> cache;
};

struct MoeCpuVectorizeQuantMatmul
    : mlir::moe::impl::MoeCpuVectorizeQuantMatmulBase<MoeCpuVectorizeQuantMatmul> {
  using Base::Base;

  void runOnOperation() override {
    if (vectorWidth < 1 || tileRows < 1 || tileCols < 1 || blockCols < 1 || gemmMinRows < 0 ||
        gemmRows < 1 || gemmCols < 1) {
      getOperation()->emitError() << "moe-cpu-vectorize-quant-matmul: sizes must be positive";
      return signalPassFailure();
    }
    if (!llvm::isPowerOf2_64(vectorWidth) || gemmCols % vectorWidth != 0) {
      getOperation()->emitError() << "moe-cpu-vectorize-quant-matmul: vector-width must be a "
                                     "power of two and gemm-cols a multiple of it";
      return signalPassFailure();
    }
    KernelShape shape{vectorWidth, tileRows, tileCols,        blockCols, gemmMinRows,
                      gemmRows,    gemmCols, int8Activations, vnni,      prefetch,
                      q4Octets};
    // The shared GEMM functions need a module to hold them; elsewhere each site gets a copy.
    std::optional<SharedQuantGemms> shared;
    auto module = dyn_cast<ModuleOp>(getOperation());
    if (module && getContext().getLoadedDialect<func::FuncDialect>())
      shared.emplace(module, shape);
    SmallVector<std::pair<linalg::GenericOp, QuantMatmul>> matmuls;
    getOperation()->walk([&](linalg::GenericOp op) {
      if (std::optional<QuantMatmul> m = match(op, shape)) {
        matmuls.push_back({op, *m});
        return;
      }
      // Panels this pipeline's kernels do not read (packed for another --cpu, or met by
      // int8 activations, whose dot products read rows) stay generic: correct, far slower.
      auto panels = dyn_cast_or_null<PanelsAttr>(op->getAttr("moe.panels"));
      if (!panels || !op->getAttr("moe.quant"))
        return;
      if (panels.getCols() != shape.gemmCols || panels.getLanes() != shape.width)
        op.emitWarning() << "quantized weights in panel order of " << panels.getCols()
                         << " columns on " << panels.getLanes()
                         << " lanes, but this pipeline's GEMM panel is " << shape.gemmCols
                         << " columns on " << shape.width
                         << " lanes: left to the generic loops (correct, far slower); pack "
                            "the weights for this target";
      else if (takesInt8(QuantFormat::q8, shape))
        op.emitWarning() << "q8 weights in panel order meet int8 activations, whose kernels "
                            "read row-major weights: left to the generic loops (correct, far "
                            "slower); pack them without panels for int8 activations";
    });
    for (auto &[op, m] : matmuls) {
      OpBuilder b(op);
      Location loc = op.getLoc();
      if (m.panels && shape.gemmMinRows == 0) {
        KernelBuilder(b, loc, m, shape).buildPanelGemv();
        op.erase();
        continue;
      }
      if (!takesGemm(m, shape)) {
        KernelBuilder(b, loc, m, shape).build();
        op.erase();
        continue;
      }
      // Prefill and batched steps (checked at run time): the packed GEMM; fewer rows: the
      // dequantising kernels above. Both give a row the same bits.
      Value rows = memref::DimOp::create(b, loc, m.x, 0);
      Value many = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge, rows,
                                         arith::ConstantIndexOp::create(b, loc, gemmMinRows));
      auto branch = scf::IfOp::create(b, loc, many, /*withElseRegion=*/true);
      OpBuilder thenB = branch.getThenBodyBuilder();
      if (shared)
        shared->call(thenB, loc, m);
      else
        buildQuantGemm(thenB, loc, m, shape);
      OpBuilder elseB = branch.getElseBodyBuilder();
      if (m.panels)
        KernelBuilder(elseB, loc, m, shape).buildPanelGemv();
      else
        KernelBuilder(elseB, loc, m, shape).build();
      op.erase();
    }
  }
};

} // namespace
