//===- Gemv.cpp - the decode GEMVs: gemv and gemv_swiglu ------------------===//
//
// out[m, n] = sum_k A[arow(m), k] * W[g(m), n, k] (gemv_swiglu: silu(. W) * (. W3)), for the
// decode path where M is a handful of rows. Grid (ceil(N / Tiles::gemvCols), M), block
// Tiles::gemvThreads: each warp owns Tiles::gemvWarpCols output columns (IndexMath.h's
// gemvCol). Decode is bound by the weight bytes, so every weight byte is read once and the
// activation row once per block:
//   1. thread 0 finds the row's group g(m) in the offsets and its input row (gathered rows
//      read A through the dispatch permutation, perm[m] / kdiv) and hands both to the block
//      through shared memory, instead of every thread scanning the offsets;
//   2. the block walks K Tiles::gemvChunk elements at a time: it stages that chunk of the
//      activation row in shared memory (one 32-byte vector per thread), then each lane
//      multiplies Tiles::gemvVector consecutive elements per step (16-byte weight loads for
//      16-bit types) with every column of its warp, reading the activation from shared;
//   3. a warp shuffle reduction finishes each column's dot product.
// When K is not a multiple of gemvVector everything runs one element per lane per step.
// The chunks are multiples of 32 * gemvVector, so each lane visits the same k in the same
// order as a one-column-per-warp loop over the whole row would.
// Quantized weights (gemv_q8, gemv_swiglu_q4, ...; Weights.cpp) read every stored byte and
// scale once: a lane step is one whole group (q8: two 16-byte loads, q4: one) with its scale
// loaded once, or 16 FP8 weights (one 16-byte load; the row's scale once per column, by the
// lane that stores). The lane dequantises 4 codes at a time without int-to-float conversions,
// sums codes * x over the group and multiplies by the scale once. Its 32 (FP8: 16)
// activations come from a padded staging layout (IndexMath.h's gemvQuantSlot) in which a
// quarter warp's 16-byte shared loads hit distinct banks.
//
//===----------------------------------------------------------------------===//

#include "IndexMath.h"
#include "KernelBuilder.h"
#include "QuantRows.h"

#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

#include <algorithm>

namespace mlir::moe::gpu::kernels {
namespace {

namespace mg = ::mlir::gpu;
using namespace ::mlir::moe::gpu::index;

constexpr int64_t kGemvQuantMaxRegisters = 128;
static_assert(kGemvQuantMaxRegisters * Tiles::gemvThreads * 2 <= 65536,
              "two quantized GEMV blocks per SM, as the float ones");

static_assert(Tiles::gemvChunk % (32 * Tiles::gemvVector) == 0,
              "a chunk keeps every lane's k sequence of the unchunked loop");

/// What every phase of one gemv block needs.
struct GemvBlock {
  Value A, out, N, K;
  SmallVector<WeightOperand, 2> W; // W (and W3)
  Value xs;                // the staged activation chunk [gemvChunk] f32
  Value g, arow;           // the row's group and input row (from thread 0)
  Ix tid, lane, warp, bx;
};

/// Phase 1: thread 0 computes g(m) and the input row of m; every thread reads them back.
void shareRow(KernelBuilder &b, GemvBlock &k, Value info, Value off, Value perm, Value G,
              Value gather, Value kdiv, Value m) {
  ifThen(b, eq(b, k.tid, ix(b, 0)), [&] {
    Ix g = groupOfRow(b, off, G, m);
    Ix arow = gatheredRow(b, perm, gather, kdiv, m);
    memref::StoreOp::create(b, indexToI32(b, g), info, ValueRange{ix(b, 0)});
    memref::StoreOp::create(b, indexToI32(b, arow), info, ValueRange{ix(b, 1)});
  });
  mg::BarrierOp::create(b);
  k.g = i32ToIndex(b, memref::LoadOp::create(b, info, ValueRange{ix(b, 0)}));
  k.arow = i32ToIndex(b, memref::LoadOp::create(b, info, ValueRange{ix(b, 1)}));
}

/// Phase 2a: elements [0, len) of the chunk at k0 into shared memory, `width` at a time.
void stageChunk(KernelBuilder &b, const GemvBlock &k, Ix k0, Ix len, int64_t width) {
  auto f32v = VectorType::get({width}, b.getF32Type());
  llvm::MaybeAlign align(4 * width);
  for (int64_t i = 0; i < Tiles::gemvVector / width; ++i) {
    Ix e = gemvStageFirst(k.tid, ix(b, i), width);
    ifThen(b, ult(b, e, len), [&] {
      Value x = vector::LoadOp::create(b, f32v, k.A, ValueRange{k.arow, k0 + e}, false, align);
      vector::StoreOp::create(b, x, k.xs, ValueRange{e}, false, align);
    });
  }
}

/// Phase 2b: the lane's partial sums over the chunk at k0 (length len) for every column of
/// its warp and every weight operand, `width` elements per step; acc[op * cols + c]. Plain
/// gemv takes two steps per trip (their weight loads issue together: 4 x 16 bytes per lane
/// in flight, as gemv_swiglu's two operands give), then the odd step; each lane still visits
/// its k in the same order, so the sums round alike.
SmallVector<Value> chunkDots(KernelBuilder &b, const GemvBlock &k, Ix k0, Ix len, int64_t width,
                             ValueRange acc) {
  auto f32v = VectorType::get({width}, b.getF32Type());
  llvm::MaybeAlign xAlign(4 * width);
  SmallVector<Value> cols;
  for (int64_t c = 0; c < Tiles::gemvWarpCols; ++c) // clamped: a tail column repeats N - 1
    cols.push_back(umin(gemvCol(k.bx, k.warp, c), ix(b, k.N) - 1));
  auto step = [&](Ix kk, ValueRange a) {
    Value x = vector::LoadOp::create(b, f32v, k.xs, ValueRange{kk}, false, xAlign);
    SmallVector<Value> next;
    for (auto [op, w] : llvm::enumerate(k.W))
      for (int64_t c = 0; c < Tiles::gemvWarpCols; ++c) {
        Value wx = loadWeightsF32(b, w, k.g, cols[c], k0 + kk, width);
        next.push_back(vector::FMAOp::create(b, f32v, x, wx, a[op * Tiles::gemvWarpCols + c]));
      }
    return next;
  };
  const int64_t stride = 32 * width;
  Ix first = k.lane * width;
  if (k.W.size() != 1)
    return forLoop(b, first, len, ix(b, stride), acc, step);
  Ix steps = gemvLaneSteps(len, first, stride);
  Ix trips = steps / 2;
  SmallVector<Value> pairs = forLoop(b, ix(b, 0), trips, ix(b, 1), acc, [&](Ix i, ValueRange a) {
    Ix kk = first + i * (2 * stride);
    return step(kk + stride, step(kk, a));
  });
  SmallVector<Type> types(acc.getTypes());
  return ifElse(
      b, ne(b, steps % 2, ix(b, 0)), types,
      [&] { return step(first + trips * (2 * stride), pairs); },
      [&] { return pairs; });
}

/// The K loop of both phase-2 forms: per chunk of x, `stage` it into shared memory, then the
/// warps that have columns add `dots` of the chunk to their lanes' partial sums (vectors of
/// `width` f32, acc[op * cols + c]); the barrier after lets the next chunk overwrite the staging.
using StageChunk = llvm::function_ref<void(Ix k0, Ix len)>;
using ChunkDots = llvm::function_ref<SmallVector<Value>(Ix k0, Ix len, ValueRange acc)>;
SmallVector<Value> chunkLoop(KernelBuilder &b, const GemvBlock &k, int64_t width, StageChunk stage,
                             ChunkDots dots) {
  auto f32v = VectorType::get({width}, b.getF32Type());
  Value zero = arith::ConstantOp::create(b, DenseElementsAttr::get(f32v, b.getF32FloatAttr(0)));
  SmallVector<Value> init(k.W.size() * Tiles::gemvWarpCols, zero);
  // Warps whose first column is past N stage and wait at the barriers but load no weights.
  Value active = ult(b, gemvCol(k.bx, k.warp, 0), ix(b, k.N));
  SmallVector<Type> types(init.size(), f32v);
  return forLoop(b, ix(b, 0), k.K, ix(b, Tiles::gemvChunk), init, [&](Ix k0, ValueRange acc) {
    Ix len = umin(ix(b, k.K) - k0, ix(b, Tiles::gemvChunk));
    stage(k0, len);
    mg::BarrierOp::create(b);
    SmallVector<Value> next = ifElse(
        b, active, types, [&] { return dots(k0, len, acc); },
        [&] { return SmallVector<Value>(acc); });
    mg::BarrierOp::create(b); // the next chunk overwrites the staging
    return next;
  });
}

/// Phase 2: the whole row, chunk by chunk; the lane's partial sums reduced over the warp.
SmallVector<Value> rowDots(KernelBuilder &b, const GemvBlock &k, int64_t width) {
  SmallVector<Value> sums = chunkLoop(
      b, k, width, [&](Ix k0, Ix len) { stageChunk(b, k, k0, len, width); },
      [&](Ix k0, Ix len, ValueRange acc) { return chunkDots(b, k, k0, len, width, acc); });
  SmallVector<Value> out;
  for (Value v : sums)
    out.push_back(warpSum(b, vector::ReductionOp::create(b, vector::CombiningKind::ADD, v)));
  return out;
}

/// Quantized phase 2a: the chunk at k0 into the padded layout (gemvQuantSlot), 8 elements
/// per thread: a lane segment is a multiple of 8, so they stay consecutive.
void stageQuantChunk(KernelBuilder &b, const GemvBlock &k, Ix k0, Ix len, int64_t seg) {
  auto f32v = VectorType::get({Tiles::gemvVector}, b.getF32Type());
  llvm::MaybeAlign align(4 * Tiles::gemvVector);
  Ix e = gemvStageFirst(k.tid, ix(b, 0), Tiles::gemvVector);
  ifThen(b, ult(b, e, len), [&] {
    Value x = vector::LoadOp::create(b, f32v, k.A, ValueRange{k.arow, k0 + e}, false, align);
    vector::StoreOp::create(b, x, k.xs, ValueRange{gemvQuantSlot(e, seg)}, false,
                            llvm::MaybeAlign(16));
  });
}

/// Quantized phase 2b: the lane's partial sums over the chunk at k0, `seg` elements (one
/// group, or 16 FP8 weights) per step and column. A step loads the stored bytes of every
/// column and operand first (and the group scales), then walks the segment 4 activations at
/// a time: codes * x summed per group, times the group's scale once (FP8: the row's scale
/// is applied after the warp sum). FP8's plain gemv, which loads only 16 bytes per column a
/// step, takes two steps a trip so that as many bytes are in flight as for bf16 (q4's would
/// spill). acc[op * cols + c] are vector<4xf32>.
SmallVector<Value> quantChunkDots(KernelBuilder &b, const GemvBlock &k, Ix k0, Ix len,
                                  int64_t seg, ValueRange acc) {
  auto f32v = VectorType::get({4}, b.getF32Type());
  Value zero = arith::ConstantOp::create(b, DenseElementsAttr::get(f32v, b.getF32FloatAttr(0)));
  SmallVector<Value> cols;
  for (int64_t c = 0; c < Tiles::gemvWarpCols; ++c) // clamped: a tail column repeats N - 1
    cols.push_back(umin(gemvCol(k.bx, k.warp, c), ix(b, k.N) - 1));
  bool perRow = k.W[0].quant.getFormat() == QuantFormat::f8e4m3;
  auto load = [&](Ix kk) {
    SmallVector<QuantRow> rows;
    for (const WeightOperand &w : k.W)
      for (Value n : cols)
        rows.push_back(loadQuantRow(b, w, k.g, n, k0 + kk));
    return rows;
  };
  auto compute = [&](Ix kk, ArrayRef<QuantRow> rows, SmallVector<Value> a) {
    SmallVector<Value> part(rows.size(), zero);
    // q4: a word's low-nibble piece, then its high-nibble one, so that the word dies early.
    bool q4 = k.W[0].quant.getFormat() == QuantFormat::q4;
    for (int64_t i = 0; i < seg / 4; ++i) {
      int64_t p = q4 ? i % 2 * 4 + i / 2 : i;
      Value x = vector::LoadOp::create(b, f32v, k.xs, ValueRange{gemvQuantSlot(kk, seg) + 4 * p},
                                       false, llvm::MaybeAlign(16));
      for (auto [i, w] : llvm::enumerate(rows)) {
        Value q = dequantPiece(b, k.W[i / Tiles::gemvWarpCols], w, p);
        Value &sum = perRow ? a[i] : part[i];
        sum = vector::FMAOp::create(b, f32v, x, q, sum);
      }
    }
    if (!perRow)
      for (auto [i, w] : llvm::enumerate(rows))
        a[i] = vector::FMAOp::create(b, f32v, part[i],
                                     vector::BroadcastOp::create(b, f32v, w.scale), a[i]);
    return a;
  };
  const int64_t stride = 32 * seg;
  Ix first = k.lane * seg;
  if (k.W.size() != 1 || k.W[0].quant.getFormat() != QuantFormat::f8e4m3)
    return forLoop(b, first, len, ix(b, stride), acc, [&](Ix kk, ValueRange a) {
      return compute(kk, load(kk), SmallVector<Value>(a));
    });
  Ix steps = gemvLaneSteps(len, first, stride);
  Ix trips = steps / 2;
  SmallVector<Value> pairs = forLoop(b, ix(b, 0), trips, ix(b, 1), acc, [&](Ix i, ValueRange a) {
    Ix kk = first + i * (2 * stride);
    SmallVector<QuantRow> r0 = load(kk), r1 = load(kk + stride);
    return compute(kk + stride, r1, compute(kk, r0, SmallVector<Value>(a)));
  });
  SmallVector<Type> types(acc.getTypes());
  return ifElse(
      b, ne(b, steps % 2, ix(b, 0)), types,
      [&] {
        Ix kk = first + trips * (2 * stride);
        return compute(kk, load(kk), pairs);
      },
      [&] { return pairs; });
}

/// Quantized phase 2: the whole row, chunk by chunk, in the padded staging layout.
SmallVector<Value> quantRowDots(KernelBuilder &b, const GemvBlock &k, int64_t seg) {
  SmallVector<Value> sums = chunkLoop(
      b, k, 4, [&](Ix k0, Ix len) { stageQuantChunk(b, k, k0, len, seg); },
      [&](Ix k0, Ix len, ValueRange acc) { return quantChunkDots(b, k, k0, len, seg, acc); });
  SmallVector<Value> out;
  for (auto [i, v] : llvm::enumerate(sums)) {
    Value total = warpSum(b, vector::ReductionOp::create(b, vector::CombiningKind::ADD, v));
    if (k.W[0].quant.getFormat() == QuantFormat::f8e4m3) {
      // FP8 summed codes * x: the row's scale once, loaded by the lane that stores.
      const WeightOperand &w = k.W[i / Tiles::gemvWarpCols];
      Ix n = umin(gemvCol(k.bx, k.warp, i % Tiles::gemvWarpCols), ix(b, k.N) - 1);
      Value s = ifElse(
          b, eq(b, k.lane, ix(b, 0)), {b.getF32Type()},
          [&]() -> SmallVector<Value> {
            return {convertFloat(b, memref::LoadOp::create(b, w.scale, ValueRange{k.g, n, ix(b, 0)}),
                                 b.getF32Type())};
          },
          [&]() -> SmallVector<Value> { return {f32(b, 0.0)}; })[0];
      total = arith::MulFOp::create(b, total, s);
    }
    out.push_back(total);
  }
  return out;
}

/// Phase 3: each column's total (every lane has it), fused SwiGLU, stored by lane 0.
void storeColumns(KernelBuilder &b, const GemvBlock &k, ValueRange total, Value m) {
  for (int64_t c = 0; c < Tiles::gemvWarpCols; ++c) {
    Value result = total[c];
    if (k.W.size() == 2)
      result = siluMul(b, result, total[Tiles::gemvWarpCols + c]);
    Ix n = gemvCol(k.bx, k.warp, c);
    ifThen(b, both(b, eq(b, k.lane, ix(b, 0)), ult(b, n, k.N)),
           [&] { memref::StoreOp::create(b, result, k.out, ValueRange{m, n}); });
  }
}

/// gemv / gemv_swiglu for float weights of type `w`, or for `quant` storage when given.
void buildGemv(KernelBuilder &b, Type w, QuantAttr quant, bool swiglu) {
  Type f = b.getF32Type(), idx = b.getIndexType();
  MemRefType mi = kernelMemref(b.getI32Type(), 1);
  unsigned nW = swiglu ? 2 : 1;
  SmallVector<Type> args{kernelMemref(f, 2)};
  for (unsigned i = 0; i < nW; ++i)
    appendWeightParams(args, w, quant);
  args.append({kernelMemref(f, 2), mi, mi, idx, idx, idx, idx, idx, idx});
  // Quantized kernels stage the padded layout on their fast path (gemvQuantSlot).
  int64_t seg = quant ? quantLaneElements(quant) : 0;
  int64_t slots = seg ? std::max(Tiles::gemvChunk, gemvQuantChunkSlots(seg)) : Tiles::gemvChunk;
  SmallVector<Type> smem{workgroupMemref({slots}, f),
                         workgroupMemref({2}, b.getI32Type())};
  auto fn = beginKernel(b, weightKernelName(swiglu ? "gemv_swiglu" : "gemv", quant), args, smem,
                        Tiles::gemvThreads);
  // The quantized path holds 16-32 bytes of each column's and operand's codes per lane, which
  // q4's SwiGLU variant does not fit in 96 registers on sm_80; 128 keeps the same 2 blocks
  // of 256 threads per SM (65536 registers).
  fn->setAttr("nvvm.maxnreg",
              b.getI32IntegerAttr(seg ? kGemvQuantMaxRegisters : Tiles::gemvMaxRegisters));
  unsigned at = 1;
  GemvBlock k;
  k.A = fn.getArgument(0);
  for (unsigned i = 0; i < nW; ++i)
    k.W.push_back(weightOperand(fn, at, quant));
  k.out = fn.getArgument(at);
  Value off = fn.getArgument(at + 1), perm = fn.getArgument(at + 2);
  Value G = fn.getArgument(at + 3), gather = fn.getArgument(at + 7), kdiv = fn.getArgument(at + 8);
  k.N = fn.getArgument(at + 5), k.K = fn.getArgument(at + 6);
  k.xs = fn.getWorkgroupAttributions()[0];
  k.tid = threadIdx(b), k.lane = k.tid % 32, k.warp = k.tid / 32, k.bx = blockIdx(b);
  Ix m = blockIdx(b, mg::Dimension::y);
  shareRow(b, k, fn.getWorkgroupAttributions()[1], off, perm, G, gather, kdiv, m);
  SmallVector<Type> types(nW * Tiles::gemvWarpCols, f);
  SmallVector<Value> acc;
  if (seg) // K is a multiple of the group for q8/q4; FP8 rows of odd length go element-wise
    acc = ifElse(
        b, eq(b, ix(b, k.K) % seg, ix(b, 0)), types, [&] { return quantRowDots(b, k, seg); },
        [&] { return rowDots(b, k, 1); });
  else
    acc = ifElse(
        b, eq(b, ix(b, k.K) % Tiles::gemvVector, ix(b, 0)), types,
        [&] { return rowDots(b, k, Tiles::gemvVector); }, [&] { return rowDots(b, k, 1); });
  storeColumns(b, k, acc, m);
  endKernel(b, fn);
}

} // namespace

void buildGemvKernels(KernelBuilder &b, const KernelConfig &config) {
  forEachWeightVariant(config, [&](QuantAttr quant, bool swiglu) {
    buildGemv(b, config.weightType, quant, swiglu);
  });
}

} // namespace mlir::moe::gpu::kernels
