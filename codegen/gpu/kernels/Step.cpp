//===- Step.cpp - the batched step's paged KV write and row gather kernels ----===//
//
// The kernels moec_step needs besides rope_at (Elementwise.cpp) and paged_attention
// (Attention.cpp), Tiles::elementwiseThreads threads each:
//   paged_kv_write  one element of one row's K or V per thread: update[t, h, d] goes to
//                   pool[tables[t, p / B], p % B, h, d], p = positions[t] (rows target distinct
//                   slots, so no two threads write one element)
//   gather_rows     grid R: out[r, :] = x[perm[r] / k, :] (the step picks its logit rows)
//
//===----------------------------------------------------------------------===//

#include "KernelBuilder.h"

namespace mlir::moe::gpu::kernels {
namespace {

constexpr int64_t kThreads = Tiles::elementwiseThreads;

/// paged_kv_write(update [T,KVH,HD], pool [n_blocks,B,KVH,HD], tables [T,MB] i32,
/// positions [T] i32, T, KVH, HD, B).
void buildPagedKVWrite(KernelBuilder &b) {
  Type f = b.getF32Type(), i32 = b.getI32Type(), idx = b.getIndexType();
  auto fn = beginKernel(b, "paged_kv_write",
                        {kernelMemref(f, 3), kernelMemref(f, 4), kernelMemref(i32, 2),
                         kernelMemref(i32, 1), idx, idx, idx, idx},
                        {}, kThreads);
  Value update = fn.getArgument(0), pool = fn.getArgument(1), tables = fn.getArgument(2);
  Value positions = fn.getArgument(3);
  Ix T = ix(b, fn.getArgument(4)), KVH = ix(b, fn.getArgument(5)), HD = ix(b, fn.getArgument(6));
  Ix B = ix(b, fn.getArgument(7));
  Ix gid = blockIdx(b) * kThreads + threadIdx(b);
  Ix inner = KVH * HD;
  ifThen(b, ult(b, gid, T * inner), [&] {
    Ix t = gid / inner, e = gid % inner;
    Ix h = e / HD, d = e % HD;
    Ix p = ix(b, i32ToIndex(b, memref::LoadOp::create(b, positions, ValueRange{t})));
    Value blk = i32ToIndex(b, memref::LoadOp::create(b, tables, ValueRange{t, p / B}));
    Value v = memref::LoadOp::create(b, update, ValueRange{t, h, d});
    memref::StoreOp::create(b, v, pool, ValueRange{blk, p % B, h, d});
  });
  endKernel(b, fn);
}

/// gather_rows(x [N,D], perm [R] i32, out [R,D], D, k).
void buildGatherRows(KernelBuilder &b) {
  Type f = b.getF32Type(), idx = b.getIndexType();
  auto fn = beginKernel(b, "gather_rows",
                        {kernelMemref(f, 2), kernelMemref(b.getI32Type(), 1), kernelMemref(f, 2),
                         idx, idx},
                        {}, kThreads);
  Value x = fn.getArgument(0), perm = fn.getArgument(1), out = fn.getArgument(2);
  Value D = fn.getArgument(3);
  Ix r = blockIdx(b);
  Ix src = ix(b, i32ToIndex(b, memref::LoadOp::create(b, perm, ValueRange{r}))) /
           ix(b, fn.getArgument(4));
  forEach(b, threadIdx(b), D, ix(b, kThreads), [&](Ix d) {
    Value v = memref::LoadOp::create(b, x, ValueRange{src, d});
    memref::StoreOp::create(b, v, out, ValueRange{r, d});
  });
  endKernel(b, fn);
}

} // namespace

void buildStepKernels(KernelBuilder &b) {
  buildPagedKVWrite(b);
  buildGatherRows(b);
}

} // namespace mlir::moe::gpu::kernels
