//===- Routing.cpp - top_k, dispatch and combine kernels ------------------===//
//
// The routed half of the MoE block:
//   top_k     grid ceil(T / Tiles::topKThreads): one token per thread, k arg-max passes in
//             the op's total order (NaN lowest, ties to the lower id), then an f32 softmax
//             over the k selected logits
//   dispatch  one block of Tiles::dispatchThreads, one thread per expert (E <= that): counts
//             -> prefix sum -> stable scatter into the permutation, plus its inverse; ids
//             outside [0, E) count as E-1, as on the CPU
//   combine   grid T: y[t] = sum_s w[t,s] * out[inv[t*k+s]], in slot order
//
//===----------------------------------------------------------------------===//

#include "KernelBuilder.h"

#include "mlir/Dialect/Math/IR/Math.h"

namespace mlir::moe::gpu::kernels {
namespace {

namespace mg = ::mlir::gpu;

/// The best expert of row t not among ids[t, 0..s): (logit, id), id = -1 if none.
SmallVector<Value> argMaxPass(KernelBuilder &b, Value logits, Value ids, Ix t, Ix s, Value E) {
  Value none = i32(b, -1), fmin = f32(b, -3.4e+38);
  return forLoop(
      b, ix(b, 0), E, ix(b, 1), {fmin, none}, [&](Ix e, ValueRange best) -> SmallVector<Value> {
        Value v = memref::LoadOp::create(b, logits, ValueRange{t, e});
        Value ei = indexToI32(b, e);
        Value taken = forLoop(b, ix(b, 0), s, ix(b, 1), {i1(b, false)},
                              [&](Ix q, ValueRange tk) -> SmallVector<Value> {
                                Value prev = memref::LoadOp::create(b, ids, ValueRange{t, q});
                                return {arith::OrIOp::create(b, tk[0], eq(b, prev, ei))};
                              })[0];
        // v displaces the best so far only if v is a number above it (ord, ugt) or there is
        // none yet: NaN ranks lowest and ties keep the lower id, as on the CPU.
        Value noBest = eq(b, best[1], none);
        Value isNum = arith::CmpFOp::create(b, arith::CmpFPredicate::ORD, v, v);
        Value ugt = arith::CmpFOp::create(b, arith::CmpFPredicate::UGT, v, best[0]);
        Value above = both(b, isNum, ugt);
        Value better0 = arith::OrIOp::create(b, noBest, above);
        Value notTaken = arith::XOrIOp::create(b, taken, i1(b, true));
        Value better = both(b, better0, notTaken);
        return {arith::SelectOp::create(b, better, v, best[0]),
                arith::SelectOp::create(b, better, ei, best[1])};
      });
}

/// w[t, 0..K) = softmax(w[t, 0..K)); w[t, 0] is the largest.
void softmaxRow(KernelBuilder &b, Value w, Ix t, Value K) {
  Value mx = memref::LoadOp::create(b, w, ValueRange{t, ix(b, 0)});
  auto expAt = [&](Ix s) {
    Value l = memref::LoadOp::create(b, w, ValueRange{t, s});
    return math::ExpOp::create(b, arith::SubFOp::create(b, l, mx)).getResult();
  };
  Value sum = forLoop(b, ix(b, 0), K, ix(b, 1), {f32(b, 0.0)},
                      [&](Ix s, ValueRange a) -> SmallVector<Value> {
                        return {arith::AddFOp::create(b, a[0], expAt(s))};
                      })[0];
  forEach(b, ix(b, 0), K, ix(b, 1), [&](Ix s) {
    memref::StoreOp::create(b, arith::DivFOp::create(b, expAt(s), sum), w, ValueRange{t, s});
  });
}

void buildTopK(KernelBuilder &b) {
  Type f = b.getF32Type(), idx = b.getIndexType();
  auto fn = beginKernel(b, "top_k",
                        {kernelMemref(f, 2), kernelMemref(f, 2), kernelMemref(b.getI32Type(), 2),
                         idx, idx, idx},
                        {}, Tiles::topKThreads);
  Value logits = fn.getArgument(0), w = fn.getArgument(1), ids = fn.getArgument(2);
  Value T = fn.getArgument(3), E = fn.getArgument(4), K = fn.getArgument(5);
  Ix t = blockIdx(b) * Tiles::topKThreads + threadIdx(b);
  ifThen(b, ult(b, t, T), [&] {
    forEach(b, ix(b, 0), K, ix(b, 1), [&](Ix s) {
      SmallVector<Value> best = argMaxPass(b, logits, ids, t, s, E);
      memref::StoreOp::create(b, best[1], ids, ValueRange{t, s});
      memref::StoreOp::create(b, best[0], w, ValueRange{t, s});
    });
    softmaxRow(b, w, t, K);
  });
  endKernel(b, fn);
}

/// Expert of assignment a = t*K + s, clamped to E-1 as on the CPU.
Value expertOf(KernelBuilder &b, Value ids, Ix a, Value K, Value eLast) {
  Value id = memref::LoadOp::create(b, ids, ValueRange{a / ix(b, K), a % ix(b, K)});
  return arith::MinUIOp::create(b, id, eLast);
}

/// cnt[x] = first slot of expert x, offsets[x + 1] = end of expert x (thread 0 alone).
void prefixSum(KernelBuilder &b, Value cnt, Value offsets, Value E) {
  Value zero = i32(b, 0);
  memref::StoreOp::create(b, zero, offsets, ValueRange{ix(b, 0)});
  forLoop(b, ix(b, 0), E, ix(b, 1), {zero}, [&](Ix x, ValueRange acc) -> SmallVector<Value> {
    Value n = memref::LoadOp::create(b, cnt, ValueRange{x});
    Value end = arith::AddIOp::create(b, acc[0], n);
    memref::StoreOp::create(b, end, offsets, ValueRange{x + 1});
    memref::StoreOp::create(b, acc[0], cnt, ValueRange{x});
    return {end};
  });
}

void buildDispatch(KernelBuilder &b) {
  Type i = b.getI32Type(), idx = b.getIndexType();
  MemRefType m1 = kernelMemref(i, 1);
  auto fn = beginKernel(b, "dispatch", {kernelMemref(i, 2), m1, m1, m1, idx, idx, idx},
                        {workgroupMemref({Tiles::dispatchThreads}, i)}, Tiles::dispatchThreads);
  Value ids = fn.getArgument(0), perm = fn.getArgument(1), inv = fn.getArgument(2);
  Value offsets = fn.getArgument(3), R = fn.getArgument(4), E = fn.getArgument(5);
  Value K = fn.getArgument(6), cnt = fn.getWorkgroupAttributions()[0];
  Ix e = threadIdx(b);
  Value mine = ult(b, e, E), ei = indexToI32(b, e);
  Value one = i32(b, 1), zero = i32(b, 0);
  Value eLast = arith::SubIOp::create(b, indexToI32(b, E), one);
  ifThen(b, mine, [&] {
    Value n = forLoop(b, ix(b, 0), R, ix(b, 1), {zero}, [&](Ix a, ValueRange acc) -> SmallVector<Value> {
      Value hit = eq(b, expertOf(b, ids, a, K, eLast), ei);
      return {arith::AddIOp::create(b, acc[0], arith::SelectOp::create(b, hit, one, zero))};
    })[0];
    memref::StoreOp::create(b, n, cnt, ValueRange{e});
  });
  mg::BarrierOp::create(b);
  ifThen(b, eq(b, e, ix(b, 0)), [&] { prefixSum(b, cnt, offsets, E); });
  mg::BarrierOp::create(b);
  ifThen(b, mine, [&] {
    Value base = memref::LoadOp::create(b, cnt, ValueRange{e});
    forLoop(b, ix(b, 0), R, ix(b, 1), {base}, [&](Ix a, ValueRange pos) -> SmallVector<Value> {
      return ifElse(
          b, eq(b, expertOf(b, ids, a, K, eLast), ei), {i},
          [&]() -> SmallVector<Value> {
            memref::StoreOp::create(b, indexToI32(b, a), perm, ValueRange{i32ToIndex(b, pos[0])});
            memref::StoreOp::create(b, pos[0], inv, ValueRange{a});
            return {arith::AddIOp::create(b, pos[0], one)};
          },
          [&]() -> SmallVector<Value> { return {pos[0]}; });
    });
  });
  endKernel(b, fn);
}

void buildCombine(KernelBuilder &b) {
  Type f = b.getF32Type(), idx = b.getIndexType();
  auto fn = beginKernel(b, "combine",
                        {kernelMemref(f, 2), kernelMemref(b.getI32Type(), 1), kernelMemref(f, 2),
                         kernelMemref(f, 2), idx, idx},
                        {}, Tiles::elementwiseThreads);
  Value out = fn.getArgument(0), inv = fn.getArgument(1), w = fn.getArgument(2);
  Value y = fn.getArgument(3), D = fn.getArgument(4), K = fn.getArgument(5);
  Ix t = blockIdx(b), tk = t * ix(b, K);
  forEach(b, threadIdx(b), D, ix(b, Tiles::elementwiseThreads), [&](Ix d) {
    Value acc = forLoop(b, ix(b, 0), K, ix(b, 1), {f32(b, 0.0)},
                        [&](Ix s, ValueRange a) -> SmallVector<Value> {
                          Value r = i32ToIndex(b, memref::LoadOp::create(b, inv, ValueRange{tk + s}));
                          Value v = memref::LoadOp::create(b, out, ValueRange{r, d});
                          Value ws = memref::LoadOp::create(b, w, ValueRange{t, s});
                          return {math::FmaOp::create(b, ws, v, a[0])};
                        })[0];
    memref::StoreOp::create(b, acc, y, ValueRange{t, d});
  });
  endKernel(b, fn);
}

} // namespace

void buildRoutingKernels(KernelBuilder &b) {
  buildTopK(b);
  buildDispatch(b);
  buildCombine(b);
}

} // namespace mlir::moe::gpu::kernels
