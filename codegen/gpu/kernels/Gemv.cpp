//===- Gemv.cpp - the decode GEMVs: gemv and gemv_swiglu ------------------===//
//
// out[m, n] = sum_k A[arow(m), k] * W[g(m), n, k] (gemv_swiglu: silu(. W) * (. W3)), for the
// decode path where M is a handful of rows. Grid (ceil(N / Tiles::gemvCols), M), block
// Tiles::gemvThreads: one warp per output column n. Each lane reads Tiles::gemvVector
// consecutive elements per step (16-byte weight loads for 16-bit types) when K is a multiple
// of that width, else one element per lane per step; a warp shuffle reduction finishes the dot
// product. Grouped rows find their group g(m) in the offsets; gathered rows read A through the
// dispatch permutation, perm[m] / kdiv.
//
//===----------------------------------------------------------------------===//

#include "KernelBuilder.h"

#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

namespace mlir::moe::gpu::kernels {
namespace {

constexpr int64_t kVec = Tiles::gemvVector;

/// What a gemv lane needs: the operands and the row/column it works on.
struct GemvRow {
  Value A;
  SmallVector<Value, 2> W; // W (and W3)
  Value arow, g, n, K;
};

/// Per-operand partial sums, kVec elements per lane per step (K % kVec == 0).
SmallVector<Value> vectorDots(KernelBuilder &b, const GemvRow &r, Ix lane) {
  auto f32v = VectorType::get({kVec}, b.getF32Type());
  Value zero = arith::ConstantOp::create(b, DenseElementsAttr::get(f32v, b.getF32FloatAttr(0)));
  SmallVector<Value> init(r.W.size(), zero);
  SmallVector<Value> sums = forLoop(
      b, lane * kVec, r.K, ix(b, 32 * kVec), init,
      [&](Ix k, ValueRange acc) -> SmallVector<Value> {
        Value x = vector::LoadOp::create(b, f32v, r.A, ValueRange{r.arow, k}, false,
                                         llvm::MaybeAlign(16));
        SmallVector<Value> next;
        for (auto [w, a] : llvm::zip(r.W, acc)) {
          Type wt = cast<MemRefType>(w.getType()).getElementType();
          Value wv = vector::LoadOp::create(b, VectorType::get({kVec}, wt), w,
                                            ValueRange{r.g, r.n, k}, false, llvm::MaybeAlign(16));
          next.push_back(vector::FMAOp::create(b, f32v, x, convertFloat(b, wv, b.getF32Type()), a));
        }
        return next;
      });
  SmallVector<Value> out;
  for (Value s : sums)
    out.push_back(vector::ReductionOp::create(b, vector::CombiningKind::ADD, s));
  return out;
}

/// Per-operand partial sums, one element per lane per step (any K).
SmallVector<Value> scalarDots(KernelBuilder &b, const GemvRow &r, Ix lane) {
  SmallVector<Value> init(r.W.size(), f32(b, 0.0));
  return forLoop(b, lane, r.K, ix(b, 32), init, [&](Ix k, ValueRange acc) -> SmallVector<Value> {
    Value x = memref::LoadOp::create(b, r.A, ValueRange{r.arow, k});
    SmallVector<Value> next;
    for (auto [w, a] : llvm::zip(r.W, acc)) {
      Value wv = memref::LoadOp::create(b, w, ValueRange{r.g, r.n, k});
      next.push_back(math::FmaOp::create(b, x, convertFloat(b, wv, b.getF32Type()), a));
    }
    return next;
  });
}

void buildGemv(KernelBuilder &b, Type w, bool swiglu) {
  Type f = b.getF32Type(), idx = b.getIndexType();
  MemRefType mw = kernelMemref(w, 3), mi = kernelMemref(b.getI32Type(), 1);
  SmallVector<Type> args{kernelMemref(f, 2), mw};
  if (swiglu)
    args.push_back(mw);
  args.append({kernelMemref(f, 2), mi, mi, idx, idx, idx, idx, idx, idx});
  auto fn = beginKernel(b, swiglu ? "gemv_swiglu" : "gemv", args, {}, Tiles::gemvThreads);
  unsigned nW = swiglu ? 2 : 1, at = 1 + nW;
  GemvRow r;
  r.A = fn.getArgument(0);
  for (unsigned i = 0; i < nW; ++i)
    r.W.push_back(fn.getArgument(1 + i));
  Value out = fn.getArgument(at), off = fn.getArgument(at + 1), perm = fn.getArgument(at + 2);
  Value G = fn.getArgument(at + 3), N = fn.getArgument(at + 5), gather = fn.getArgument(at + 7);
  Value kdiv = fn.getArgument(at + 8);
  r.K = fn.getArgument(at + 6);
  Ix tid = threadIdx(b), lane = tid % 32;
  Ix m = blockIdx(b, ::mlir::gpu::Dimension::y);
  r.n = blockIdx(b) * Tiles::gemvCols + tid / 32;
  ifThen(b, ult(b, r.n, N), [&] {
    r.g = groupOfRow(b, off, G, m);
    r.arow = gatheredRow(b, perm, gather, kdiv, m);
    SmallVector<Type> types(nW, f);
    SmallVector<Value> acc = ifElse(
        b, eq(b, ix(b, r.K) % kVec, ix(b, 0)), types,
        [&] { return vectorDots(b, r, lane); }, [&] { return scalarDots(b, r, lane); });
    Value result = warpSum(b, acc[0]);
    if (swiglu)
      result = siluMul(b, result, warpSum(b, acc[1]));
    ifThen(b, eq(b, lane, ix(b, 0)),
           [&] { memref::StoreOp::create(b, result, out, ValueRange{m, r.n}); });
  });
  endKernel(b, fn);
}

} // namespace

void buildGemvKernels(KernelBuilder &b, const KernelConfig &config) {
  buildGemv(b, config.weightType, /*swiglu=*/false);
  buildGemv(b, config.weightType, /*swiglu=*/true);
}

} // namespace mlir::moe::gpu::kernels
