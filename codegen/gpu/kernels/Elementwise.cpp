//===- Elementwise.cpp - embedding, rms_norm, rope, add and copy kernels --===//
//
// The memory-bound per-row and per-element kernels, Tiles::elementwiseThreads threads each:
//   embedding  grid T: one token row, table[id] widened from the weight type to f32
//   rms_norm   grid T: one row; f32 sum of squares reduced by warp shuffles, then across the
//              block's warps through shared memory; y = x * rsqrt(mean + eps) * w
//   rope       one rotation pair per thread, half-split layout (Hugging Face's rotate_half)
//   rope_at    the same with row t at positions[t] (the batched step's rows)
//   add, copy  one element per thread
//
//===----------------------------------------------------------------------===//

#include "KernelBuilder.h"

#include "mlir/Dialect/Math/IR/Math.h"

namespace mlir::moe::gpu::kernels {
namespace {

namespace mg = ::mlir::gpu;
constexpr int64_t kThreads = Tiles::elementwiseThreads;
constexpr int64_t kWarps = kThreads / 32;

void buildEmbedding(KernelBuilder &b, Type w) {
  Type f = b.getF32Type(), i = b.getI32Type();
  auto fn = beginKernel(b, "embedding",
                        {kernelMemref(w, 2), kernelMemref(i, 1), kernelMemref(f, 2),
                         b.getIndexType()},
                        {}, kThreads);
  Value table = fn.getArgument(0), ids = fn.getArgument(1), out = fn.getArgument(2);
  Value D = fn.getArgument(3);
  Ix t = blockIdx(b), tid = threadIdx(b);
  Value id = i32ToIndex(b, memref::LoadOp::create(b, ids, ValueRange{t}));
  forEach(b, tid, D, ix(b, kThreads), [&](Ix d) {
    Value v = memref::LoadOp::create(b, table, ValueRange{id, d});
    memref::StoreOp::create(b, convertFloat(b, v, f), out, ValueRange{t, d});
  });
  endKernel(b, fn);
}

/// The sum of `x` over the block: warp shuffles, one partial per warp in `red`, then every
/// thread adds the partials.
Value blockSum(KernelBuilder &b, Value x, Value red, Ix tid) {
  Ix lane = tid % 32, warp = tid / 32;
  Value part = warpSum(b, x);
  ifThen(b, eq(b, lane, ix(b, 0)),
         [&] { memref::StoreOp::create(b, part, red, ValueRange{warp}); });
  mg::BarrierOp::create(b);
  return forLoop(b, ix(b, 0), ix(b, kWarps), ix(b, 1), {f32(b, 0.0)},
                 [&](Ix i, ValueRange acc) -> SmallVector<Value> {
                   Value v = memref::LoadOp::create(b, red, ValueRange{i});
                   return {arith::AddFOp::create(b, acc[0], v)};
                 })[0];
}

void buildRmsNorm(KernelBuilder &b, Type w) {
  Type f = b.getF32Type();
  auto fn = beginKernel(b, "rms_norm",
                        {kernelMemref(f, 2), kernelMemref(w, 1), kernelMemref(f, 2),
                         b.getIndexType(), f},
                        {workgroupMemref({kWarps}, f)}, kThreads);
  Value x = fn.getArgument(0), wt = fn.getArgument(1), out = fn.getArgument(2);
  Value D = fn.getArgument(3), eps = fn.getArgument(4);
  Value red = fn.getWorkgroupAttributions()[0];
  Ix t = blockIdx(b), tid = threadIdx(b);
  Value ss = forLoop(b, tid, D, ix(b, kThreads), {f32(b, 0.0)},
                     [&](Ix d, ValueRange acc) -> SmallVector<Value> {
                       Value v = memref::LoadOp::create(b, x, ValueRange{t, d});
                       return {math::FmaOp::create(b, v, v, acc[0])};
                     })[0];
  Value total = blockSum(b, ss, red, tid);
  Value mean = arith::DivFOp::create(b, total, indexToF32(b, D));
  Value r = math::RsqrtOp::create(b, arith::AddFOp::create(b, mean, eps));
  forEach(b, tid, D, ix(b, kThreads), [&](Ix d) {
    Value v = memref::LoadOp::create(b, x, ValueRange{t, d});
    Value wv = convertFloat(b, memref::LoadOp::create(b, wt, ValueRange{d}), f);
    Value y = arith::MulFOp::create(b, arith::MulFOp::create(b, v, r), wv);
    memref::StoreOp::create(b, y, out, ValueRange{t, d});
  });
  endKernel(b, fn);
}

/// One rotation of pair (i, i + HD/2) of head h of token t by angle p * theta^-2i/HD, p the
/// token's position (start + t for rope, positions[t] for rope_at).
void ropePair(KernelBuilder &b, Value x, Value out, Ix t, Ix h, Ix i, Ix half, Value HD, Ix p,
              Value theta) {
  Value pos = indexToF32(b, p);
  Value ex = arith::DivFOp::create(b, indexToF32(b, i * 2), indexToF32(b, HD));
  Value inv = arith::DivFOp::create(b, f32(b, 1.0), math::PowFOp::create(b, theta, ex));
  Value ang = arith::MulFOp::create(b, pos, inv);
  Value co = math::CosOp::create(b, ang), si = math::SinOp::create(b, ang);
  Ix j = i + half;
  Value x1 = memref::LoadOp::create(b, x, ValueRange{t, h, i});
  Value x2 = memref::LoadOp::create(b, x, ValueRange{t, h, j});
  Value y1 = arith::SubFOp::create(b, arith::MulFOp::create(b, x1, co),
                                   arith::MulFOp::create(b, x2, si));
  Value y2 = arith::AddFOp::create(b, arith::MulFOp::create(b, x2, co),
                                   arith::MulFOp::create(b, x1, si));
  memref::StoreOp::create(b, y1, out, ValueRange{t, h, i});
  memref::StoreOp::create(b, y2, out, ValueRange{t, h, j});
}

/// rope(x, out, T, NH, HD, start, theta) or, `at`, rope_at(x, positions, out, T, NH, HD,
/// theta).
void buildRope(KernelBuilder &b, bool at) {
  Type f = b.getF32Type(), idx = b.getIndexType();
  SmallVector<Type> args = {kernelMemref(f, 3), kernelMemref(f, 3), idx, idx, idx, idx, f};
  if (at) { // positions instead of start
    args.erase(args.begin() + 5);
    args.insert(args.begin() + 1, kernelMemref(b.getI32Type(), 1));
  }
  auto fn = beginKernel(b, at ? "rope_at" : "rope", args, {}, kThreads);
  unsigned a0 = at ? 1 : 0; // rope_at's arguments from `out` on are rope's, shifted by one
  Value x = fn.getArgument(0), out = fn.getArgument(a0 + 1);
  Ix T = ix(b, fn.getArgument(a0 + 2)), NH = ix(b, fn.getArgument(a0 + 3));
  Value HD = fn.getArgument(a0 + 4), theta = fn.getArgument(6);
  Ix gid = blockIdx(b) * kThreads + threadIdx(b);
  Ix half = ix(b, HD) / 2;
  ifThen(b, ult(b, gid, T * NH * half), [&] {
    Ix rest = gid / half;
    Ix t = rest / NH;
    Ix p = at ? ix(b, i32ToIndex(b, memref::LoadOp::create(b, fn.getArgument(1), ValueRange{t})))
              : ix(b, fn.getArgument(5)) + t;
    ropePair(b, x, out, t, rest % NH, gid % half, half, HD, p, theta);
  });
  endKernel(b, fn);
}

/// add (out = a + b) or copy (out = a), one element per thread.
void buildAddOrCopy(KernelBuilder &b, bool add) {
  MemRefType m = kernelMemref(b.getF32Type(), 1);
  SmallVector<Type> args = add ? SmallVector<Type>{m, m, m} : SmallVector<Type>{m, m};
  args.push_back(b.getIndexType());
  auto fn = beginKernel(b, add ? "add" : "copy", args, {}, kThreads);
  unsigned nIn = add ? 2 : 1;
  Value out = fn.getArgument(nIn), n = fn.getArgument(nIn + 1);
  Ix gid = blockIdx(b) * kThreads + threadIdx(b);
  ifThen(b, ult(b, gid, n), [&] {
    Value y = memref::LoadOp::create(b, fn.getArgument(0), ValueRange{gid});
    if (add)
      y = arith::AddFOp::create(b, y, memref::LoadOp::create(b, fn.getArgument(1), ValueRange{gid}));
    memref::StoreOp::create(b, y, out, ValueRange{gid});
  });
  endKernel(b, fn);
}

} // namespace

void buildElementwiseKernels(KernelBuilder &b, const KernelConfig &config) {
  buildEmbedding(b, config.weightType);
  buildRmsNorm(b, config.weightType);
  buildRope(b, /*at=*/false);
  buildRope(b, /*at=*/true);
  buildAddOrCopy(b, /*add=*/true);
  buildAddOrCopy(b, /*add=*/false);
}

} // namespace mlir::moe::gpu::kernels
