//===- GemmWgmma.cpp - the warpgroup GEMMs (sm_90a): gemm_wgmma, _swiglu ---===//
//
// The same contract as gemm_mma (GemmMma.cpp): out[r, n] = sum_k A[arow(r), k] * W[g(r), n, k]
// over grouped rows (tiles never straddle a group), gathered input rows (perm[r] / kdiv),
// masked to each group's rows and to N; the _swiglu variant writes silu(A W^T) * (A W3^T).
// Same parameters, so a launch picks either by chip; built only for sm_90a (wgmma.mma_async
// is an sm_90a instruction), and launched only when K % gemmStageVector == 0.
//
// Grid (ceil(N / wgmmaBN), ceil(M / wgmmaBM) + G), block Tiles::wgmmaThreads = one warpgroup,
// which owns a wgmmaBM x wgmmaBN output tile. K is walked wgmmaBK at a time through
// wgmmaStages = 2 shared-memory buffers per operand, in the no-swizzle core-matrix layout
// (IndexMath.h's wgmmaSlot: 8 x 16-byte core matrices, LBO = 128 B along K, SBO = 512 B along
// M/N), one barrier per K tile:
//   1. stage the next K tile while the current one is multiplied: bf16 weights by cp.async
//      (zero-filled outside), other weight types (and quantized ones, dequantised) and the
//      f32 activations through registers, stored as bf16 after the issue of the wgmmas; then
//      fence.proxy.async, so that the async proxy (wgmma) sees the generic proxy's writes;
//   2. compute: wgmma.fence, one wgmma.mma_async m64nNk16 (N = wgmmaBN) per k16 step and weight
//      operand, both operands from shared-memory matrix descriptors (IndexMath.h's
//      kWgmmaDescFields / wgmmaDescStart), accumulating into an !llvm.struct of N / 2 f32
//      per thread; commit_group, and wait_group 0 before the barrier that lets the buffer be
//      overwritten;
//   3. epilogue: each accumulator register (IndexMath.h's wgmmaAccRow/Col) stored masked.
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

constexpr int64_t kSlotsA = Tiles::wgmmaBM * kWgmmaCoresK; // 16-byte slots per stage
constexpr int64_t kSlotsB = Tiles::wgmmaBN * kWgmmaCoresK;
constexpr int64_t kV = Tiles::gemmStageVector;             // bf16 per slot

/// What every phase of one gemm_wgmma block needs.
struct WgBlock {
  Value A, out, off, perm, N, K, gather, kdiv;
  SmallVector<WeightOperand, 2> W;
  Value sa;                   // [wgmmaStages * kSlotsA][kV] bf16
  SmallVector<Value, 2> sb;   // [wgmmaStages * kSlotsB][kV] bf16 per weight operand
  Value aAddr;                // shared address of sa (index)
  SmallVector<Value, 2> bAddr;
  Ix tid, n0;
  Value valid, g, rowStart, rowEnd;
  SmallVector<Value, 2> aRow, aOk; // per A staging pass: gathered input row, in range
  SmallVector<Value, 4> wRow, wOk; // per B staging pass: weight row (clamped), in range
};

/// Which rows block `by` owns, as gemm_mma's selectRowTile with wgmmaBM-row tiles.
void selectRowTile(KernelBuilder &b, WgBlock &k, Value G, Value M, Ix by) {
  RowTile t = kernels::selectRowTile(b, k.off, G, M, by, Tiles::wgmmaBM);
  k.valid = t.valid, k.g = t.g, k.rowStart = t.rowStart, k.rowEnd = t.rowEnd;
}

/// The rows a thread stages (fixed for the block): gathered A rows, clamped weight rows.
void stageRows(KernelBuilder &b, WgBlock &k) {
  for (int64_t i = 0; i < kWgmmaPassesA; ++i) {
    Ix grow = ix(b, k.rowStart) + wgmmaStageRow(k.tid, i);
    Value ok = ult(b, grow, k.rowEnd);
    k.aOk.push_back(ok);
    k.aRow.push_back(ifElse(
        b, ok, {b.getIndexType()},
        [&]() -> SmallVector<Value> { return {gatheredRow(b, k.perm, k.gather, k.kdiv, grow)}; },
        [&]() -> SmallVector<Value> { return {ix(b, 0)}; })[0]);
  }
  for (int64_t i = 0; i < kWgmmaPassesB; ++i) {
    Ix gn = k.n0 + wgmmaStageRow(k.tid, i);
    k.wOk.push_back(ult(b, gn, k.N));
    k.wRow.push_back(umin(gn, ix(b, k.N) - 1)); // a valid address for a zero-fill copy
  }
}

/// The chunk (8 elements at k) of row `row` of `src` (group `g` when non-null) as
/// vector<8 x f32>, zero where !ok or k >= K; quantized weights dequantised.
Value loadChunkF32(KernelBuilder &b, const WgBlock &k, Value src, const WeightOperand *w, Value g,
                   Value row, Value ok, Ix kk) {
  auto vf = VectorType::get({kV}, b.getF32Type());
  return ifElse(
      b, both(b, ok, ult(b, kk, k.K)), {vf},
      [&]() -> SmallVector<Value> {
        if (w)
          return {loadWeightsF32(b, *w, g, row, kk, kV)};
        Type t = cast<MemRefType>(src.getType()).getElementType();
        SmallVector<Value> at{row, kk};
        if (g)
          at.insert(at.begin(), g);
        Value v = vector::LoadOp::create(b, VectorType::get({kV}, t), src, at, false,
                                         llvm::MaybeAlign(16));
        return {convertFloat(b, v, b.getF32Type())};
      },
      [&]() -> SmallVector<Value> {
        return {arith::ConstantOp::create(b, DenseElementsAttr::get(vf, b.getF32FloatAttr(0)))};
      })[0];
}

/// Chunks held in registers until their stage buffer is free.
struct Pending {
  SmallVector<Value> a;                 // [kWgmmaPassesA]
  SmallVector<SmallVector<Value>, 2> w; // per weight operand [kWgmmaPassesB] (register path)
  Value group;                          // cp.async token (bf16 weights)
};

/// Issues the loads of K tile k0: cp.async of bf16 weights straight into stage `stage`,
/// everything else into registers (stored by storeTile).
Pending loadTile(KernelBuilder &b, const WgBlock &k, Ix k0, Ix stage) {
  Pending p;
  Ix kk = k0 + wgmmaStageChunk(k.tid) * kV;
  for (int64_t i = 0; i < kWgmmaPassesA; ++i)
    p.a.push_back(loadChunkF32(b, k, k.A, nullptr, {}, k.aRow[i], k.aOk[i], kk));
  Type wt = cast<MemRefType>(k.W[0].data.getType()).getElementType();
  if (k.W[0].quant || !wt.isBF16()) {
    for (const WeightOperand &w : k.W) {
      SmallVector<Value> v;
      for (int64_t i = 0; i < kWgmmaPassesB; ++i)
        v.push_back(loadChunkF32(b, k, w.data, w.quant ? &w : nullptr, k.g, k.wRow[i], k.wOk[i], kk));
      p.w.push_back(v);
    }
    return p;
  }
  Value kin = ult(b, kk, k.K);
  Ix kc = select(kin, kk, ix(b, 0));
  auto token = nvgpu::DeviceAsyncTokenType::get(b.getContext());
  SmallVector<Value> copies;
  for (auto [w, smem] : llvm::zip(k.W, k.sb))
    for (int64_t i = 0; i < kWgmmaPassesB; ++i) {
      Ix n = select(both(b, k.wOk[i], kin), ix(b, kV), ix(b, 0));
      Ix slot = stage * kSlotsB + wgmmaSlot(wgmmaStageRow(k.tid, i), wgmmaStageChunk(k.tid));
      copies.push_back(nvgpu::DeviceAsyncCopyOp::create(
          b, token, smem, ValueRange{slot, ix(b, 0)}, w.data, ValueRange{k.g, k.wRow[i], kc},
          b.getIndexAttr(kV), n, b.getUnitAttr()));
    }
  p.group = nvgpu::DeviceAsyncCreateGroupOp::create(b, token, copies);
  return p;
}

/// Completes stage `stage`: waits for its copies, stores the register chunks as bf16, and
/// fences the generic proxy's writes for the async proxy (wgmma).
void storeTile(KernelBuilder &b, const WgBlock &k, const Pending &p, Ix stage) {
  if (p.group)
    nvgpu::DeviceAsyncWaitOp::create(b, p.group, b.getI32IntegerAttr(0));
  auto store = [&](Value v, Value smem, Ix slot) {
    vector::StoreOp::create(b, convertFloat(b, v, b.getBF16Type()), smem, ValueRange{slot, ix(b, 0)},
                            false, llvm::MaybeAlign(16));
  };
  for (int64_t i = 0; i < kWgmmaPassesA; ++i)
    store(p.a[i], k.sa, stage * kSlotsA + wgmmaSlot(wgmmaStageRow(k.tid, i), wgmmaStageChunk(k.tid)));
  for (size_t op = 0; op < p.w.size(); ++op)
    for (int64_t i = 0; i < kWgmmaPassesB; ++i)
      store(p.w[op][i], k.sb[op],
            stage * kSlotsB + wgmmaSlot(wgmmaStageRow(k.tid, i), wgmmaStageChunk(k.tid)));
  NVVM::FenceProxyOp::create(
      b, NVVM::ProxyKindAttr::get(b.getContext(), NVVM::ProxyKind::async_shared),
      NVVM::SharedSpaceAttr::get(b.getContext(), NVVM::SharedSpace::shared_cta));
}

/// The descriptor (i64) of k16 step kk of the operand tile at shared address `addr`.
Value descriptor(KernelBuilder &b, Ix addr, int64_t kk) {
  Value start = arith::IndexCastUIOp::create(b, b.getI64Type(), wgmmaDescStart(addr, kk));
  Value fields = arith::ConstantOp::create(b, b.getI64IntegerAttr(int64_t(kWgmmaDescFields)));
  return arith::OrIOp::create(b, start, fields);
}

/// Phase 2 for stage `stage`: one wgmma per (k16 step, weight operand), committed as one group
/// (not waited for).
SmallVector<Value> multiply(KernelBuilder &b, const WgBlock &k, Ix stage, ValueRange acc) {
  MLIRContext *ctx = b.getContext();
  NVVM::WgmmaFenceAlignedOp::create(b);
  SmallVector<Value> out(acc);
  Ix a0 = ix(b, k.aAddr) + stage * (kSlotsA * 16);
  for (int64_t kk = 0; kk < Tiles::wgmmaBK / Tiles::wgmmaK; ++kk) {
    Value da = descriptor(b, a0, kk);
    for (size_t op = 0; op < k.W.size(); ++op) {
      Value db = descriptor(b, ix(b, k.bAddr[op]) + stage * (kSlotsB * 16), kk);
      out[op] = NVVM::WgmmaMmaAsyncOp::create(
          b, out[op].getType(), out[op], da, db,
          NVVM::MMAShapeAttr::get(ctx, Tiles::wgmmaBM, Tiles::wgmmaBN, Tiles::wgmmaK),
          NVVM::WGMMATypesAttr::get(ctx, NVVM::WGMMATypes::bf16),
          NVVM::WGMMATypesAttr::get(ctx, NVVM::WGMMATypes::bf16),
          NVVM::WGMMATypesAttr::get(ctx, NVVM::WGMMATypes::f32),
          NVVM::WGMMAScaleOutAttr::get(ctx, NVVM::WGMMAScaleOut::one),
          NVVM::WGMMAScaleInAttr::get(ctx, NVVM::WGMMAScaleIn::one),
          NVVM::WGMMAScaleInAttr::get(ctx, NVVM::WGMMAScaleIn::one),
          NVVM::MMALayoutAttr::get(ctx, NVVM::MMALayout::row),
          NVVM::MMALayoutAttr::get(ctx, NVVM::MMALayout::col), NVVM::MMAIntOverflowAttr());
    }
  }
  NVVM::WgmmaGroupSyncAlignedOp::create(b);
  return out;
}

/// Phases 1-2, double-buffered: tile t is multiplied out of stage t % 2 while tile t + 1 is
/// loaded into the other (after the last tile: zeros, never read).
SmallVector<Value> pipelinedLoop(KernelBuilder &b, const WgBlock &k, ValueRange init) {
  Ix zero = ix(b, 0);
  storeTile(b, k, loadTile(b, k, zero, zero), zero);
  return forLoop(b, zero, k.K, ix(b, Tiles::wgmmaBK), init, [&](Ix k0, ValueRange acc) {
    mg::BarrierOp::create(b); // publishes tile t; frees the stage tile t - 1 was read from
    Ix cur = k0 / Tiles::wgmmaBK % Tiles::wgmmaStages;
    Ix next = (cur + 1) % Tiles::wgmmaStages;
    SmallVector<Value> out = multiply(b, k, cur, acc);
    Pending p = loadTile(b, k, k0 + Tiles::wgmmaBK, next);
    storeTile(b, k, p, next);
    NVVM::WgmmaWaitGroupSyncOp::create(b, b.getI64IntegerAttr(0));
    return out;
  });
}

/// Phase 3: every accumulator register to its output element (silu(g) * u when fused).
void epilogue(KernelBuilder &b, const WgBlock &k, ValueRange res) {
  for (int64_t i = 0; i < kWgmmaAcc; ++i) {
    Ix row = ix(b, k.rowStart) + wgmmaAccRow(k.tid, i);
    Ix col = k.n0 + wgmmaAccCol(k.tid, i);
    Value ok = both(b, ult(b, row, k.rowEnd), ult(b, col, k.N));
    ifThen(b, ok, [&] {
      Value v = LLVM::ExtractValueOp::create(b, res[0], ArrayRef<int64_t>{i});
      if (res.size() == 2)
        v = siluMul(b, v, LLVM::ExtractValueOp::create(b, res[1], ArrayRef<int64_t>{i}));
      memref::StoreOp::create(b, v, k.out, ValueRange{row, col});
    });
  }
}

/// The shared address of a workgroup buffer, as an index.
Value sharedAddress(KernelBuilder &b, Value smem) {
  return memref::ExtractAlignedPointerAsIndexOp::create(b, smem);
}

void buildGemmWgmma(KernelBuilder &b, Type w, QuantAttr quant, bool swiglu) {
  Type f = b.getF32Type(), idx = b.getIndexType(), bf16 = b.getBF16Type();
  MemRefType mi = kernelMemref(b.getI32Type(), 1);
  unsigned nW = swiglu ? 2 : 1;
  SmallVector<Type> args{kernelMemref(f, 2)};
  for (unsigned i = 0; i < nW; ++i)
    appendWeightParams(args, w, quant);
  args.append({kernelMemref(f, 2), mi, mi, idx, idx, idx, idx, idx, idx});
  SmallVector<Type> smem{workgroupMemref({Tiles::wgmmaStages * kSlotsA, kV}, bf16)};
  for (unsigned i = 0; i < nW; ++i)
    smem.push_back(workgroupMemref({Tiles::wgmmaStages * kSlotsB, kV}, bf16));
  auto fn = beginKernel(b, weightKernelName(swiglu ? "gemm_wgmma_swiglu" : "gemm_wgmma", quant),
                        args, smem, Tiles::wgmmaThreads);
  WgBlock k;
  k.A = fn.getArgument(0);
  unsigned at = 1;
  for (unsigned i = 0; i < nW; ++i) {
    k.W.push_back(weightOperand(fn, at, quant));
    k.sb.push_back(fn.getWorkgroupAttributions()[1 + i]);
  }
  k.sa = fn.getWorkgroupAttributions()[0];
  k.out = fn.getArgument(at), k.off = fn.getArgument(at + 1), k.perm = fn.getArgument(at + 2);
  Value G = fn.getArgument(at + 3), M = fn.getArgument(at + 4);
  k.N = fn.getArgument(at + 5), k.K = fn.getArgument(at + 6);
  k.gather = fn.getArgument(at + 7), k.kdiv = fn.getArgument(at + 8);
  k.tid = threadIdx(b);
  k.n0 = blockIdx(b) * Tiles::wgmmaBN;
  selectRowTile(b, k, G, M, blockIdx(b, mg::Dimension::y));
  ifThen(b, k.valid, [&] {
    k.aAddr = sharedAddress(b, k.sa);
    for (Value s : k.sb)
      k.bAddr.push_back(sharedAddress(b, s));
    stageRows(b, k);
    SmallVector<Type> fs(kWgmmaAcc, f);
    auto acc = LLVM::LLVMStructType::getLiteral(b.getContext(), fs);
    SmallVector<Value> init(nW, LLVM::ZeroOp::create(b, acc));
    epilogue(b, k, pipelinedLoop(b, k, init));
  });
  endKernel(b, fn);
}

} // namespace

void buildGemmWgmmaKernels(KernelBuilder &b, const KernelConfig &config) {
  forEachWeightVariant(config, [&](QuantAttr quant, bool swiglu) {
    buildGemmWgmma(b, config.weightType, quant, swiglu);
  });
}

} // namespace mlir::moe::gpu::kernels
