//===- GemmMma.cpp - the tensor-core GEMMs: gemm_mma and gemm_mma_swiglu --===//
//
// out[r, n] = sum_k A[arow(r), k] * W[g(r), n, k] for the prefill and grouped expert GEMMs;
// the _swiglu variant keeps gate (W) and up (W3) accumulators and writes silu(g) * u.
// Grid (ceil(N / gemmBN), row tiles), block Tiles::gemmThreads = 2x2 warps. Each block owns
// a gemmBM x gemmBN output tile and walks K gemmBK at a time:
//   1. stage: every warp copies whole rows of A (gathered through the dispatch permutation,
//      f32 -> bf16) and of each weight operand (-> bf16) into shared memory, one element per
//      lane, so global reads are coalesced; out-of-range cells are zero;
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
  SmallVector<Value, 2> W;  // weight operands (W, W3)
  Value sa;                 // A tile [gemmBM][gemmSmemPitch] bf16
  SmallVector<Value, 2> sb; // one B tile per weight operand
  Ix lane, warp, wm, wn, n0;
  Value valid, g, rowStart, rowEnd;
};

/// Which rows block `by` owns: tile `by` of the concatenated per-group tile lists (grouped),
/// or rows [by * gemmBM, M) (dense). Sets valid, g, rowStart, rowEnd.
void selectRowTile(KernelBuilder &b, GemmBlock &k, Value G, Value M, Ix by) {
  Type idx = b.getIndexType();
  Value zero = ix(b, 0), one = ix(b, 1);
  SmallVector<Value> sel = ifElse(
      b, ult(b, zero, G), {idx, idx, idx, idx},
      [&]() -> SmallVector<Value> {
        SmallVector<Value> init(5, zero); // tiles so far, found, g, rowStart, rowEnd
        SmallVector<Value> r = forLoop(b, zero, G, one, init, [&](Ix e, ValueRange s) -> SmallVector<Value> {
          Ix lo = ix(b, i32ToIndex(b, memref::LoadOp::create(b, k.off, ValueRange{e})));
          Ix hi = ix(b, i32ToIndex(b, memref::LoadOp::create(b, k.off, ValueRange{e + 1})));
          Ix end = ix(b, s[0]) + rowTiles(hi - lo);
          Value take = both(b, ult(b, by, end), eq(b, s[1], zero));
          Ix rs = lo + (by - ix(b, s[0])) * Tiles::gemmBM;
          auto pick = [&](Value x, Value y) -> Value { return arith::SelectOp::create(b, take, x, y); };
          return {end, pick(one, s[1]), pick(e, s[2]), pick(rs, s[3]), pick(hi, s[4])};
        });
        return {r[1], r[2], r[3], r[4]};
      },
      [&]() -> SmallVector<Value> {
        Ix rs = by * Tiles::gemmBM;
        return {arith::SelectOp::create(b, ult(b, rs, M), one, zero), zero, rs, M};
      });
  k.valid = ne(b, sel[0], zero);
  k.g = sel[1], k.rowStart = sel[2], k.rowEnd = sel[3];
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
            Value x = memref::LoadOp::create(b, k.W[op], ValueRange{k.g, gn, gk});
            return {convertFloat(b, x, bf16)};
          },
          [&]() -> SmallVector<Value> { return {zb}; })[0];
      memref::StoreOp::create(b, wb, k.sb[op], ValueRange{r, k.lane});
    }
  });
}

/// Phase 2, one k16 step: ldmatrix fragments, then one mma.sync per (operand, mi, ni).
void mmaStep(KernelBuilder &b, const GemmBlock &k, int64_t kk, SmallVector<Value> &acc) {
  SmallVector<Fragment> a, bf; // a[mi]; bf[operand * (kMmaTilesN / 2) + nj]
  for (int64_t mi = 0; mi < kMmaTilesM; ++mi)
    a.push_back(ldmatrixX4(b, k.sa, ldmatrixARow(k.lane, k.wm, mi), ldmatrixACol(k.lane, kk)));
  for (Value s : k.sb)
    for (int64_t nj = 0; nj < kMmaTilesN / 2; ++nj)
      bf.push_back(ldmatrixX4(b, s, ldmatrixBRow(k.lane, k.wn, nj), ldmatrixBCol(k.lane, kk)));
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

/// The kernel's signature; fills the operands of `k`.
mg::GPUFuncOp beginGemmKernel(KernelBuilder &b, Type w, bool swiglu, GemmBlock &k) {
  Type f = b.getF32Type(), idx = b.getIndexType();
  MemRefType mw = kernelMemref(w, 3), mi = kernelMemref(b.getI32Type(), 1);
  SmallVector<Type> args{kernelMemref(f, 2), mw};
  if (swiglu)
    args.push_back(mw);
  args.append({kernelMemref(f, 2), mi, mi, idx, idx, idx, idx, idx, idx});
  unsigned nW = swiglu ? 2 : 1;
  SmallVector<Type> smem(1 + nW, workgroupMemref({Tiles::gemmBM, Tiles::gemmSmemPitch},
                                                 b.getBF16Type()));
  auto fn = beginKernel(b, swiglu ? "gemm_mma_swiglu" : "gemm_mma", args, smem, Tiles::gemmThreads);
  fn->setAttr("nvvm.maxnreg", b.getI32IntegerAttr(Tiles::gemmMaxRegisters));
  k.A = fn.getArgument(0);
  for (unsigned i = 0; i < nW; ++i) {
    k.W.push_back(fn.getArgument(1 + i));
    k.sb.push_back(fn.getWorkgroupAttributions()[1 + i]);
  }
  k.sa = fn.getWorkgroupAttributions()[0];
  unsigned at = 1 + nW;
  k.out = fn.getArgument(at), k.off = fn.getArgument(at + 1), k.perm = fn.getArgument(at + 2);
  k.N = fn.getArgument(at + 5), k.K = fn.getArgument(at + 6);
  k.gather = fn.getArgument(at + 7), k.kdiv = fn.getArgument(at + 8);
  return fn;
}

void buildGemmMma(KernelBuilder &b, Type w, bool swiglu) {
  GemmBlock k;
  auto fn = beginGemmKernel(b, w, swiglu, k);
  unsigned at = swiglu ? 3 : 2;
  Value G = fn.getArgument(at + 3), M = fn.getArgument(at + 4);
  Ix tid = threadIdx(b);
  k.lane = tid % 32, k.warp = tid / 32;
  k.wm = warpRow0(k.warp), k.wn = warpCol0(k.warp);
  k.n0 = blockIdx(b) * Tiles::gemmBN;
  selectRowTile(b, k, G, M, blockIdx(b, mg::Dimension::y));
  ifThen(b, k.valid, [&] {
    SmallVector<Value> init(k.W.size() * kAccPerOperand, f32(b, 0.0));
    SmallVector<Value> res = forLoop(
        b, ix(b, 0), k.K, ix(b, Tiles::gemmBK), init, [&](Ix k0, ValueRange acc) {
          stageTiles(b, k, k0);
          mg::BarrierOp::create(b);
          SmallVector<Value> next(acc);
          for (int64_t kk = 0; kk < kMmaStepsK; ++kk)
            mmaStep(b, k, kk, next);
          mg::BarrierOp::create(b);
          return next;
        });
    epilogue(b, k, res);
  });
  endKernel(b, fn);
}

} // namespace

void buildGemmMmaKernels(KernelBuilder &b, const KernelConfig &config) {
  buildGemmMma(b, config.weightType, /*swiglu=*/false);
  buildGemmMma(b, config.weightType, /*swiglu=*/true);
}

} // namespace mlir::moe::gpu::kernels
