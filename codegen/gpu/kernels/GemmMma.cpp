//===- GemmMma.cpp - the tensor-core GEMMs: gemm_mma and gemm_mma_swiglu --===//
//
// out[r, n] = sum_k A[arow(r), k] * W[g(r), n, k] for the prefill and grouped expert GEMMs;
// the _swiglu variant keeps gate (W) and up (W3) accumulators and writes silu(g) * u.
// Grid (ceil(N / gemmBN), row tiles), block Tiles::gemmThreads = 2x2 warps. Each block owns
// a gemmBM x gemmBN output tile and walks K gemmBK at a time through S shared-memory buffers
// per operand (as bf16; S = Tiles::gemmStagesFor: 4 for gemm_mma, 3 for the SwiGLU
// variant), one barrier per K tile:
//   1. stage: when K % gemmStageVector == 0 each thread copies 16-byte chunks of fixed rows
//      (IndexMath.h's stageChunkRow/Col; the gathered input rows are found once per block):
//      bf16 weights with cp.async.cg S - 1 K tiles ahead (one commit group per tile,
//      cp.async.wait_group S - 2: S - 1 tiles in flight while one is multiplied), other
//      weight types and the f32 activations through registers one tile
//      ahead (loaded before the multiply, converted to bf16 and stored); out-of-range chunks are
//      zero (a cp.async with src-size 0 reads nothing). Otherwise one element per lane per
//      staged row, single-buffered, as a fallback for odd K;
//      Quantized q8 / q4 weights with one group per K tile (gemm_mma_q8, gemm_mma_swiglu_q4,
//      ...; quantLoop) copy their codes as stored with cp.async S tiles ahead (16
//      bytes a chunk: 2 KB of q8, 1 KB of q4 a tile) and the scales through registers; the
//      block dequantises tile t + 1 from shared memory into a bf16 buffer (2 of them) while
//      tile t is multiplied. f8e4m3 (and q8/q4 at other group sizes) take the register path:
//      each thread loads its chunk as stored, dequantises it in registers (Weights.cpp) and
//      stores it to shared memory as bf16;
//   2. compute: per k16 step, nvgpu.ldmatrix x4 fragments of A and B, then mma.sync m16n8k16
//      (bf16 in, f32 accumulate) over each warp's 2x4 mma tiles;
//   3. epilogue: each accumulator register stored at its (row, col), masked to the group's
//      rows and to N.
// Row tiles never straddle an expert: blockIdx.y enumerates sum_e rowTiles(rows_e) tiles and
// the launch's grid.y bound is ceil(R / gemmBM) + E. Every index formula is in IndexMath.h.
//
//===----------------------------------------------------------------------===//

#include "IndexMath.h"
#include "KernelBuilder.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

namespace mlir::moe::gpu::kernels {
namespace {

namespace mg = ::mlir::gpu;
using namespace ::mlir::moe::gpu::index;

/// What every phase of one gemm_mma block needs.
struct GemmBlock {
  Value A, out, off, perm, N, K, gather, kdiv;
  SmallVector<WeightOperand, 2> W; // weight operands (W, W3)
  Value sa;                 // A tiles [stages * gemmBM][gemmSmemPitch] bf16
  SmallVector<Value, 2> sb; // B tiles of each weight operand, the same shape
  // Quantized weights by cp.async (quantAsync): per operand the codes as stored,
  // [stages * gemmBM][gemmBK / elementsPerByte] i8, and the scales [stages * gemmBM].
  SmallVector<Value, 2> raw, scales;
  int64_t stages = 0; // Tiles::gemmStagesFor(W.size())
  Ix tid, lane, warp, wm, wn, n0;
  Value valid, g, rowStart, rowEnd;
};

/// Which rows block `by` owns: tile `by` of the concatenated per-group tile lists (grouped),
/// or rows [by * gemmBM, M) (dense). Sets valid, g, rowStart, rowEnd.
void selectRowTile(KernelBuilder &b, GemmBlock &k, Value G, Value M, Ix by) {
  RowTile t = kernels::selectRowTile(b, k.off, G, M, by, Tiles::gemmBM);
  k.valid = t.valid, k.g = t.g, k.rowStart = t.rowStart, k.rowEnd = t.rowEnd;
}

/// Phase 1: the K tile at k0 of A and of every weight operand into shared memory as bf16.
void stageTiles(KernelBuilder &b, const GemmBlock &k, Ix k0) {
  Type bf16 = b.getBF16Type(), f = b.getF32Type();
  Ix gk = k0 + k.lane;
  Value kin = ult(b, gk, k.K);
  Value zf = f32(b, 0.0), zb = arith::ConstantOp::create(b, b.getZeroAttr(bf16));
  forEach(b, ix(b, 0), ix(b, Tiles::gemmBM / kGemmWarps), ix(b, 1), [&](Ix i) {
    Ix r = stageRow(k.warp, i);
    Ix grow = ix(b, k.rowStart) + r;
    Value ok = both(b, ult(b, grow, k.rowEnd), kin);
    Value v = ifElse(
        b, ok, {f},
        [&]() -> SmallVector<Value> {
          Value arow = gatheredRow(b, k.perm, k.gather, k.kdiv, grow);
          return {memref::LoadOp::create(b, k.A, ValueRange{arow, gk})};
        },
        [&]() -> SmallVector<Value> { return {zf}; })[0];
    memref::StoreOp::create(b, convertFloat(b, v, bf16), k.sa, ValueRange{r, k.lane});
    Ix gn = k.n0 + r;
    Value okb = both(b, ult(b, gn, k.N), kin);
    for (size_t op = 0; op < k.W.size(); ++op) {
      Value wb = ifElse(
          b, okb, {bf16},
          [&]() -> SmallVector<Value> {
            if (k.W[op].quant) {
              Value x = loadWeightsF32(b, k.W[op], k.g, gn, gk, 1);
              return {convertFloat(b, vector::ExtractOp::create(b, x, 0), bf16)};
            }
            Value x = memref::LoadOp::create(b, k.W[op].data, ValueRange{k.g, gn, gk});
            return {convertFloat(b, x, bf16)};
          },
          [&]() -> SmallVector<Value> { return {zb}; })[0];
      memref::StoreOp::create(b, wb, k.sb[op], ValueRange{r, k.lane});
    }
  });
}

/// The rows a thread stages with 16-byte chunks (the same for every K tile): per pass, the
/// input row of A (gathered) and the weight row, each with its in-range flag.
struct StageRows {
  SmallVector<Value, 2> aRow, aOk, wRow, wOk;
};

StageRows stageRows(KernelBuilder &b, const GemmBlock &k) {
  StageRows s;
  for (int64_t i = 0; i < kStagePasses; ++i) {
    Ix r = stageChunkRow(k.tid, i);
    Ix grow = ix(b, k.rowStart) + r;
    Value ok = ult(b, grow, k.rowEnd);
    s.aOk.push_back(ok);
    s.aRow.push_back(ifElse(
        b, ok, {b.getIndexType()},
        [&]() -> SmallVector<Value> { return {gatheredRow(b, k.perm, k.gather, k.kdiv, grow)}; },
        [&]() -> SmallVector<Value> { return {ix(b, 0)}; })[0]);
    Ix gn = k.n0 + r;
    s.wOk.push_back(ult(b, gn, k.N));
    s.wRow.push_back(umin(gn, ix(b, k.N) - 1)); // a valid address for a zero-fill copy
  }
  return s;
}

/// The thread's chunks of `src` (rows `rows`, in range where `ok`) of the K tile at k0 as
/// vector<gemmStageVector x T> registers, zero outside.
SmallVector<Value> loadChunks(KernelBuilder &b, const GemmBlock &k, Value src, Value g,
                              ArrayRef<Value> rows, ArrayRef<Value> ok, Ix k0) {
  Type t = cast<MemRefType>(src.getType()).getElementType();
  auto vt = VectorType::get({Tiles::gemmStageVector}, t);
  Ix kk = k0 + stageChunkCol(k.tid);
  Value kin = ult(b, kk, k.K);
  SmallVector<Value> out;
  for (int64_t i = 0; i < kStagePasses; ++i) {
    SmallVector<Value> at{rows[i], kk};
    if (g)
      at.insert(at.begin(), g);
    out.push_back(ifElse(
        b, both(b, ok[i], kin), {vt},
        [&]() -> SmallVector<Value> {
          return {vector::LoadOp::create(b, vt, src, at, false, llvm::MaybeAlign(16))};
        },
        [&]() -> SmallVector<Value> {
          return {arith::ConstantOp::create(b, DenseElementsAttr::get(vt, b.getZeroAttr(t)))};
        })[0]);
  }
  return out;
}

/// The thread's chunks of quantized weight `w` (rows `rows`, in range where `ok`) of the K
/// tile at k0, dequantised: vector<gemmStageVector x f32> registers, zero outside.
SmallVector<Value> loadQuantChunks(KernelBuilder &b, const GemmBlock &k, const WeightOperand &w,
                                   ArrayRef<Value> rows, ArrayRef<Value> ok, Ix k0) {
  auto vt = VectorType::get({Tiles::gemmStageVector}, b.getF32Type());
  Ix kk = k0 + stageChunkCol(k.tid);
  Value kin = ult(b, kk, k.K);
  SmallVector<Value> out;
  for (int64_t i = 0; i < kStagePasses; ++i)
    out.push_back(ifElse(
        b, both(b, ok[i], kin), {vt},
        [&]() -> SmallVector<Value> {
          return {loadWeightsF32(b, w, k.g, rows[i], kk, Tiles::gemmStageVector)};
        },
        [&]() -> SmallVector<Value> {
          return {arith::ConstantOp::create(b, DenseElementsAttr::get(vt, b.getF32FloatAttr(0)))};
        })[0]);
  return out;
}

/// Chunks from loadChunks, as bf16, into the stage buffer starting at row `buf` of `smem`.
void storeChunks(KernelBuilder &b, const GemmBlock &k, Value smem, Ix buf, ArrayRef<Value> v) {
  for (int64_t i = 0; i < kStagePasses; ++i)
    vector::StoreOp::create(b, convertFloat(b, v[i], b.getBF16Type()), smem,
                            ValueRange{buf + stageChunkRow(k.tid, i), stageChunkCol(k.tid)},
                            false, llvm::MaybeAlign(16));
}

/// The weight chunks of the K tile at k0 into the stage buffer at row `buf`: cp.async for
/// bf16 weights (returns the group's token; the bytes are there after its wait), else
/// through registers, stored at once (returns null).
Value stageWeights(KernelBuilder &b, const GemmBlock &k, const StageRows &s, Ix k0, Ix buf) {
  Type wt = cast<MemRefType>(k.W[0].data.getType()).getElementType();
  if (k.W[0].quant) {
    for (auto [w, smem] : llvm::zip(k.W, k.sb))
      storeChunks(b, k, smem, buf, loadQuantChunks(b, k, w, s.wRow, s.wOk, k0));
    return {};
  }
  if (!wt.isBF16()) {
    for (auto [w, smem] : llvm::zip(k.W, k.sb))
      storeChunks(b, k, smem, buf, loadChunks(b, k, w.data, k.g, s.wRow, s.wOk, k0));
    return {};
  }
  Ix kk = k0 + stageChunkCol(k.tid);
  Value kin = ult(b, kk, k.K);
  Ix kc = select(kin, kk, ix(b, 0));
  auto token = nvgpu::DeviceAsyncTokenType::get(b.getContext());
  SmallVector<Value> copies;
  for (auto [w, smem] : llvm::zip(k.W, k.sb))
    for (int64_t i = 0; i < kStagePasses; ++i) {
      Ix n = select(both(b, s.wOk[i], kin), ix(b, Tiles::gemmStageVector), ix(b, 0));
      copies.push_back(nvgpu::DeviceAsyncCopyOp::create(
          b, token, smem, ValueRange{buf + stageChunkRow(k.tid, i), stageChunkCol(k.tid)}, w.data,
          ValueRange{k.g, s.wRow[i], kc}, b.getIndexAttr(Tiles::gemmStageVector), n,
          b.getUnitAttr()));
    }
  return nvgpu::DeviceAsyncCreateGroupOp::create(b, token, copies);
}

/// Phase 2, one k16 step: ldmatrix fragments, then one mma.sync per (operand, mi, ni).
/// `buf`: the first shared-memory row of the stage buffer to read.
void mmaStep(KernelBuilder &b, const GemmBlock &k, Ix buf, int64_t kk, SmallVector<Value> &acc) {
  SmallVector<Fragment> a, bf; // a[mi]; bf[operand * (kMmaTilesN / 2) + nj]
  for (int64_t mi = 0; mi < kMmaTilesM; ++mi)
    a.push_back(ldmatrixX4(b, k.sa, buf + ldmatrixARow(k.lane, k.wm, mi), ldmatrixACol(k.lane, kk)));
  for (Value s : k.sb)
    for (int64_t nj = 0; nj < kMmaTilesN / 2; ++nj)
      bf.push_back(ldmatrixX4(b, s, buf + ldmatrixBRow(k.lane, k.wn, nj), ldmatrixBCol(k.lane, kk)));
  for (int64_t op = 0; op < int64_t(k.sb.size()); ++op)
    for (int64_t mi = 0; mi < kMmaTilesM; ++mi)
      for (int64_t ni = 0; ni < kMmaTilesN; ++ni) {
        const Fragment &bn = bf[op * (kMmaTilesN / 2) + mmaBLoad(ni)];
        int64_t br = mmaBRegister(ni);
        Value *c = &acc[accIndex(op, mi, ni, 0)];
        Fragment d = mmaSyncBF16(b, a[mi], {bn[br], bn[br + 1]}, {c[0], c[1], c[2], c[3]});
        std::copy(d.begin(), d.end(), c);
      }
}

/// Phase 3: every accumulator register to its output element (silu(g) * u when fused).
void epilogue(KernelBuilder &b, const GemmBlock &k, ValueRange res) {
  bool swiglu = k.W.size() == 2;
  for (int64_t mi = 0; mi < kMmaTilesM; ++mi)
    for (int64_t ni = 0; ni < kMmaTilesN; ++ni)
      for (int64_t r = 0; r < 4; ++r) {
        Ix row = ix(b, k.rowStart) + accRow(k.lane, k.wm, mi, r);
        Ix col = k.n0 + accCol(k.lane, k.wn, ni, r);
        Value ok = both(b, ult(b, row, k.rowEnd), ult(b, col, k.N));
        ifThen(b, ok, [&] {
          Value v = res[accIndex(0, mi, ni, r)];
          if (swiglu)
            v = siluMul(b, v, res[accIndex(1, mi, ni, r)]);
          memref::StoreOp::create(b, v, k.out, ValueRange{row, col});
        });
      }
}

/// Phases 1-2 with 16-byte staging through S = k.stages buffers per operand, K tile t in
/// buffer t % S. bf16 weights go by cp.async, one commit group per K tile, S - 1 tiles
/// ahead: at the top of iteration t the thread's groups of tiles t .. t + S - 2 are pending and
/// `cp.async.wait_group S - 2` retires tile t's; with tile t + S - 1's issued after the
/// barrier, S - 1 tiles are in flight during the multiply (copies past K are zero-fill, so
/// every iteration commits one group and the count holds).
/// Register-staged operands (A, other weight types) are loaded one tile ahead. One barrier
/// per tile: it publishes tile t and frees the buffer tile t - 1 was read from, which then
/// receives the copies of tile t + S - 1.
SmallVector<Value> pipelinedLoop(KernelBuilder &b, const GemmBlock &k, ValueRange init) {
  const int64_t S = k.stages, BK = Tiles::gemmBK;
  StageRows s = stageRows(b, k);
  Type wt = cast<MemRefType>(k.W[0].data.getType()).getElementType();
  bool async = !k.W[0].quant && wt.isBF16();
  int64_t ahead = async ? S - 1 : 1; // K tiles of weights staged ahead of the multiply
  auto bufferOf = [&](Ix t) { return t % S * Tiles::gemmBM; };
  Ix zero = ix(b, 0);
  for (int64_t t = 0; t < ahead; ++t)
    stageWeights(b, k, s, ix(b, t * BK), ix(b, t * Tiles::gemmBM));
  storeChunks(b, k, k.sa, zero, loadChunks(b, k, k.A, {}, s.aRow, s.aOk, zero));
  SmallVector<Value> res = forLoop(b, zero, k.K, ix(b, BK), init, [&](Ix k0, ValueRange acc) {
    Ix t = k0 / BK;
    if (async)
      NVVM::CpAsyncWaitGroupOp::create(b, uint32_t(S - 2));
    mg::BarrierOp::create(b);
    stageWeights(b, k, s, k0 + ahead * BK, bufferOf(t + ahead));
    SmallVector<Value> a1 = loadChunks(b, k, k.A, {}, s.aRow, s.aOk, k0 + BK);
    SmallVector<Value> out(acc);
    for (int64_t kk = 0; kk < kMmaStepsK; ++kk)
      mmaStep(b, k, bufferOf(t), kk, out);
    storeChunks(b, k, k.sa, bufferOf(t + 1), a1);
    return out;
  });
  if (async) // the zero-fill groups past K: retired before the block ends
    NVVM::CpAsyncWaitGroupOp::create(b, uint32_t(0));
  return res;
}

/// Whether quantized weights `quant` are staged by cp.async (codes and scales as stored,
/// dequantised from shared memory): q8 and q4 with one scale group per K tile. f8e4m3 (one
/// f32 scale per row) keeps the register path.
bool quantAsync(QuantAttr quant) {
  return quant && quant.getFormat() != QuantFormat::f8e4m3 &&
         quant.getGroupSize() == Tiles::gemmBK;
}
int64_t quantRowBytes(QuantAttr quant) { return Tiles::gemmBK / quant.elementsPerByte(); }

/// The thread's 16-byte chunks of every weight operand's codes of the K tile at k0 (a
/// multiple of gemmBK: one group) by cp.async into stage `st`, zero-fill past N or K; one
/// commit group (empty for threads without a chunk, so every thread's count stays in step).
void copyQuantCodes(KernelBuilder &b, const GemmBlock &k, Ix k0, Ix st) {
  int64_t rowBytes = quantRowBytes(k.W[0].quant), perByte = k.W[0].quant.elementsPerByte();
  Value kin = ult(b, k0, k.K);
  auto token = nvgpu::DeviceAsyncTokenType::get(b.getContext());
  for (int64_t i = 0; i < quantPasses(rowBytes); ++i) {
    auto copy = [&] {
      Ix r = quantChunkRow(k.tid, i, rowBytes), c = quantChunkCol(k.tid, rowBytes);
      Ix gn = k.n0 + r;
      Value ok = both(b, ult(b, gn, k.N), kin);
      Ix bytes = select(ok, ix(b, kQuantChunk), ix(b, 0));
      Ix src = select(ok, k0 / perByte + c, ix(b, 0)); // a valid address for a zero fill
      Ix row = umin(gn, ix(b, k.N) - 1);
      for (auto [w, raw] : llvm::zip(k.W, k.raw))
        nvgpu::DeviceAsyncCopyOp::create(b, token, raw, ValueRange{st * Tiles::gemmBM + r, c},
                                         w.data, ValueRange{k.g, row, src},
                                         b.getIndexAttr(kQuantChunk), bytes, b.getUnitAttr());
    };
    if ((i + 1) * Tiles::gemmThreads <= quantChunks(rowBytes))
      copy();
    else
      ifThen(b, ult(b, k.tid + i * Tiles::gemmThreads, ix(b, quantChunks(rowBytes))), copy);
  }
  NVVM::CpAsyncCommitGroupOp::create(b);
}

/// Threads tid < gemmBM: the scale of row n0 + tid for the K tile at k0, per operand, as
/// stored (0 past N or K). Loaded before the multiply, stored after it (storeQuantScales).
SmallVector<Value> loadQuantScales(KernelBuilder &b, const GemmBlock &k, Ix k0) {
  Ix gn = k.n0 + k.tid;
  Value ok = both(b, ult(b, k.tid, ix(b, Tiles::gemmBM)), both(b, ult(b, gn, k.N), ult(b, k0, k.K)));
  SmallVector<Value> out;
  for (const WeightOperand &w : k.W) {
    Type t = cast<MemRefType>(w.scale.getType()).getElementType();
    out.push_back(ifElse(
        b, ok, {t},
        [&]() -> SmallVector<Value> {
          return {memref::LoadOp::create(b, w.scale, ValueRange{k.g, gn, k0 / Tiles::gemmBK})};
        },
        [&]() -> SmallVector<Value> { return {arith::ConstantOp::create(b, b.getZeroAttr(t))}; })[0]);
  }
  return out;
}
void storeQuantScales(KernelBuilder &b, const GemmBlock &k, Ix st, ArrayRef<Value> v) {
  ifThen(b, ult(b, k.tid, ix(b, Tiles::gemmBM)), [&] {
    for (auto [x, smem] : llvm::zip(v, k.scales))
      memref::StoreOp::create(b, x, smem, ValueRange{st * Tiles::gemmBM + k.tid});
  });
}

/// Stage `st` of the codes and scales into the bf16 B buffer at row `buf`: the thread's
/// 16-byte staging chunks (stageChunkRow / stageChunkCol), as the register path computes
/// them (Weights.cpp's loadWeightsF32): f32(code) * f32(scale), rounded to bf16 once.
void dequantStage(KernelBuilder &b, const GemmBlock &k, Ix st, Ix buf) {
  QuantAttr q = k.W[0].quant;
  int64_t group = q.getGroupSize(), width = Tiles::gemmStageVector;
  auto i8v = VectorType::get({width}, b.getI8Type());
  auto f32v = VectorType::get({width}, b.getF32Type());
  auto splat = [&](int8_t v) -> Value {
    return arith::ConstantOp::create(b, DenseElementsAttr::get(i8v, b.getI8IntegerAttr(v)));
  };
  Ix c = stageChunkCol(k.tid);
  for (auto [raw, sc, sb] : llvm::zip(k.raw, k.scales, k.sb))
    for (int64_t i = 0; i < kStagePasses; ++i) {
      Ix r = stageChunkRow(k.tid, i);
      Ix row = st * Tiles::gemmBM + r;
      Value codes;
      if (q.getFormat() == QuantFormat::q8) {
        codes = vector::LoadOp::create(b, i8v, raw, ValueRange{row, c}, false, llvm::MaybeAlign(width));
      } else { // q4: the chunk's 8 elements are one nibble of 8 consecutive bytes
        Value bytes = vector::LoadOp::create(b, i8v, raw, ValueRange{row, q4Byte(c, group)},
                                             false, llvm::MaybeAlign(width));
        Value shift = vector::BroadcastOp::create(
            b, i8v, arith::IndexCastOp::create(b, b.getI8Type(), q4Shift(c, group)));
        Value nibble = arith::AndIOp::create(b, arith::ShRUIOp::create(b, bytes, shift), splat(15));
        codes = arith::SubIOp::create(b, nibble, splat(8));
      }
      Value s = convertFloat(b, memref::LoadOp::create(b, sc, ValueRange{row}), b.getF32Type());
      Value w = arith::MulFOp::create(b, arith::SIToFPOp::create(b, f32v, codes),
                                      vector::BroadcastOp::create(b, f32v, s));
      vector::StoreOp::create(b, convertFloat(b, w, b.getBF16Type()), sb,
                              ValueRange{buf + r, c}, false, llvm::MaybeAlign(16));
    }
}

/// Phases 1-2 for quantized weights by cp.async (K % gemmBK == 0): the codes of K tile j go
/// to raw stage j % S (S = k.stages) in iteration j - S (the first S in the prologue), one
/// commit group per tile; at the top of iteration t tiles t + 1 .. t + S - 1 are pending and
/// `cp.async.wait_group S - 2` retires t + 1's, which the barrier publishes and the block
/// then dequantises into bf16 buffer (t + 1) % 2 while tile t is multiplied out of t % 2 (A
/// is register-staged into the same two buffers). One barrier per K tile; it also frees raw
/// stage t % S (dequantised in iteration t - 1) for tile t + S and bf16 buffer (t + 1) % 2.
SmallVector<Value> quantLoop(KernelBuilder &b, const GemmBlock &k, ValueRange init) {
  const int64_t S = k.stages, BK = Tiles::gemmBK, BM = Tiles::gemmBM;
  StageRows s = stageRows(b, k);
  auto bf16Buffer = [&](Ix t) { return t % 2 * BM; };
  Ix zero = ix(b, 0);
  for (int64_t j = 0; j < S; ++j) {
    copyQuantCodes(b, k, ix(b, j * BK), ix(b, j));
    storeQuantScales(b, k, ix(b, j), loadQuantScales(b, k, ix(b, j * BK)));
  }
  SmallVector<Value> a0 = loadChunks(b, k, k.A, {}, s.aRow, s.aOk, zero);
  NVVM::CpAsyncWaitGroupOp::create(b, uint32_t(S - 1));
  mg::BarrierOp::create(b);
  dequantStage(b, k, zero, zero);
  storeChunks(b, k, k.sa, zero, a0);
  SmallVector<Value> res = forLoop(b, zero, k.K, ix(b, BK), init, [&](Ix k0, ValueRange acc) {
    Ix t = k0 / BK;
    NVVM::CpAsyncWaitGroupOp::create(b, uint32_t(S - 2));
    mg::BarrierOp::create(b);
    Ix kS = k0 + S * BK;
    copyQuantCodes(b, k, kS, t % S);
    SmallVector<Value> sc = loadQuantScales(b, k, kS);
    SmallVector<Value> a1 = loadChunks(b, k, k.A, {}, s.aRow, s.aOk, k0 + BK);
    dequantStage(b, k, (t + 1) % S, bf16Buffer(t + 1));
    SmallVector<Value> out(acc);
    for (int64_t kk = 0; kk < kMmaStepsK; ++kk)
      mmaStep(b, k, bf16Buffer(t), kk, out);
    storeQuantScales(b, k, t % S, sc);
    storeChunks(b, k, k.sa, bf16Buffer(t + 1), a1);
    return out;
  });
  NVVM::CpAsyncWaitGroupOp::create(b, uint32_t(0)); // the zero-fill groups past K
  return res;
}

/// Phases 1-2 one element per lane (any K): stage, barrier, multiply, barrier.
SmallVector<Value> elementLoop(KernelBuilder &b, const GemmBlock &k, ValueRange init) {
  return forLoop(b, ix(b, 0), k.K, ix(b, Tiles::gemmBK), init, [&](Ix k0, ValueRange acc) {
    stageTiles(b, k, k0);
    mg::BarrierOp::create(b);
    SmallVector<Value> next(acc);
    for (int64_t kk = 0; kk < kMmaStepsK; ++kk)
      mmaStep(b, k, ix(b, 0), kk, next);
    mg::BarrierOp::create(b);
    return next;
  });
}

/// The kernel's signature (float weights of type `w`, or `quant` storage when given); fills
/// the operands of `k` and sets `at` to the index of the `out` parameter.
mg::GPUFuncOp beginGemmKernel(KernelBuilder &b, Type w, QuantAttr quant, bool swiglu,
                              GemmBlock &k, unsigned &at) {
  Type f = b.getF32Type(), idx = b.getIndexType();
  MemRefType mi = kernelMemref(b.getI32Type(), 1);
  unsigned nW = swiglu ? 2 : 1;
  SmallVector<Type> args{kernelMemref(f, 2)};
  for (unsigned i = 0; i < nW; ++i)
    appendWeightParams(args, w, quant);
  args.append({kernelMemref(f, 2), mi, mi, idx, idx, idx, idx, idx, idx});
  // Quantized weights by cp.async dequantise into two bf16 buffers; the raw stages hold
  // the codes in flight.
  bool qAsync = quantAsync(quant);
  k.stages = Tiles::gemmStagesFor(nW);
  int64_t stages = qAsync ? 2 : k.stages;
  SmallVector<Type> smem(1 + nW, workgroupMemref({stages * Tiles::gemmBM, Tiles::gemmSmemPitch},
                                                 b.getBF16Type()));
  if (qAsync) {
    MLIRContext *ctx = b.getContext();
    smem.append(nW, workgroupMemref({k.stages * Tiles::gemmBM, quantRowBytes(quant)},
                                    quant.dataElementType(ctx)));
    smem.append(nW, workgroupMemref({k.stages * Tiles::gemmBM}, quant.scaleElementType(ctx)));
  }
  auto fn = beginKernel(b, weightKernelName(swiglu ? "gemm_mma_swiglu" : "gemm_mma", quant), args,
                        smem, Tiles::gemmThreads);
  fn->setAttr("nvvm.maxnreg", b.getI32IntegerAttr(Tiles::gemmMaxRegisters));
  k.A = fn.getArgument(0);
  at = 1;
  for (unsigned i = 0; i < nW; ++i) {
    k.W.push_back(weightOperand(fn, at, quant));
    k.sb.push_back(fn.getWorkgroupAttributions()[1 + i]);
  }
  k.sa = fn.getWorkgroupAttributions()[0];
  if (qAsync)
    for (unsigned i = 0; i < nW; ++i) {
      k.raw.push_back(fn.getWorkgroupAttributions()[1 + nW + i]);
      k.scales.push_back(fn.getWorkgroupAttributions()[1 + 2 * nW + i]);
    }
  k.out = fn.getArgument(at), k.off = fn.getArgument(at + 1), k.perm = fn.getArgument(at + 2);
  k.N = fn.getArgument(at + 5), k.K = fn.getArgument(at + 6);
  k.gather = fn.getArgument(at + 7), k.kdiv = fn.getArgument(at + 8);
  return fn;
}

void buildGemmMma(KernelBuilder &b, Type w, QuantAttr quant, bool swiglu) {
  GemmBlock k;
  unsigned at;
  auto fn = beginGemmKernel(b, w, quant, swiglu, k, at);
  Value G = fn.getArgument(at + 3), M = fn.getArgument(at + 4);
  k.tid = threadIdx(b);
  k.lane = k.tid % 32, k.warp = k.tid / 32;
  k.wm = warpRow0(k.warp), k.wn = warpCol0(k.warp);
  k.n0 = blockIdx(b) * Tiles::gemmBN;
  selectRowTile(b, k, G, M, blockIdx(b, mg::Dimension::y));
  ifThen(b, k.valid, [&] {
    SmallVector<Value> init(k.W.size() * kAccPerOperand, f32(b, 0.0));
    SmallVector<Type> types(init.size(), b.getF32Type());
    bool qAsync = quantAsync(quant);
    int64_t whole = qAsync ? Tiles::gemmBK : Tiles::gemmStageVector;
    SmallVector<Value> res = ifElse(
        b, eq(b, ix(b, k.K) % whole, ix(b, 0)), types,
        [&] { return qAsync ? quantLoop(b, k, init) : pipelinedLoop(b, k, init); },
        [&] { return elementLoop(b, k, init); });
    epilogue(b, k, res);
  });
  endKernel(b, fn);
}

} // namespace

void buildGemmMmaKernels(KernelBuilder &b, const KernelConfig &config) {
  forEachWeightVariant(config, [&](QuantAttr quant, bool swiglu) {
    buildGemmMma(b, config.weightType, quant, swiglu);
  });
}

} // namespace mlir::moe::gpu::kernels
