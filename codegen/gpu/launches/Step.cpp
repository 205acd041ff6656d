//===- Step.cpp - launch rules for the batched step (moec_step) ------------------===//
//
// populateStepLaunchRules: the ops only moec_step has, one kernel each (see LaunchBuilder.h):
//   moe.rope_at          rope_at (rows at their own positions)
//   moe.paged_kv_write   paged_kv_write, in place into the runtime's pool (destination style:
//                        the result is the pool buffer)
//   moe.paged_attention  paged_attention: one block per (row, KV head), no split of the key
//                        range, so a row's bits do not depend on the rest of the step
//   moe.gather_rows      gather_rows (the rows whose logits the step returns)
// The step's MoE block is the routed ops of every entry point (MoeBlock.cpp) over all rows of
// the step; its projections are the prefill's tensor-core GEMMs (the row count is dynamic), whose
// per-row reduction order along K does not depend on the row tile a row falls in.
//
//===----------------------------------------------------------------------===//

#include "../LaunchBuilder.h"
#include "moec/Dialect/Moe/MoeOps.h"

using namespace mlir;

namespace mlir::moe::gpu {
namespace {

LogicalResult lowerRoPEAt(LaunchBuilder &l, moe::RoPEAtOp r) {
  Value x = l.buf(r.getInput()), positions = l.buf(r.getPositions());
  Value T = l.dim(x, 0), NH = l.dim(x, 1), HD = l.dim(x, 2);
  Value out = l.allocResult(r, T);
  Value pairs = l.mul(l.mul(T, NH), arith::DivUIOp::create(l.b, l.loc, HD, l.idx(2)));
  l.launch("rope_at", {l.ceilDiv(pairs, Tiles::elementwiseThreads), l.idx(1), l.idx(1)},
           Tiles::elementwiseThreads,
           {l.arg(x), l.arg(positions), l.arg(out), T, NH, HD,
            l.f32(r.getTheta().convertToDouble())});
  l.map.map(r.getResult(), out);
  return success();
}

LogicalResult lowerPagedKVWrite(LaunchBuilder &l, moe::PagedKVWriteOp w) {
  Value update = l.buf(w.getUpdate()), pool = l.buf(w.getPool());
  Value tables = l.buf(w.getBlockTables()), positions = l.buf(w.getPositions());
  Value T = l.dim(update, 0), KVH = l.dim(update, 1), HD = l.dim(update, 2);
  Value n = l.mul(l.mul(T, KVH), HD);
  l.launch("paged_kv_write", {l.ceilDiv(n, Tiles::elementwiseThreads), l.idx(1), l.idx(1)},
           Tiles::elementwiseThreads,
           {l.arg(update), l.arg(pool), l.arg(tables), l.arg(positions), T, KVH, HD,
            l.dim(pool, 1)});
  l.map.map(w.getResult(), pool);
  return success();
}

LogicalResult lowerPagedAttention(LaunchBuilder &l, moe::PagedAttentionOp a) {
  Value q = l.buf(a.getQuery()), kp = l.buf(a.getKeyPool()), vp = l.buf(a.getValuePool());
  Value tables = l.buf(a.getBlockTables()), positions = l.buf(a.getPositions());
  auto kt = cast<MemRefType>(kp.getType());
  Value T = l.dim(q, 0);
  Value out = l.allocResult(a, T);
  l.launch("paged_attention", {T, l.idx(kt.getDimSize(2)), l.idx(1)}, Tiles::attnThreads,
           {l.arg(q), l.arg(kp), l.arg(vp), l.arg(tables), l.arg(positions), l.arg(out), T,
            l.idx(a.getSlidingWindow() ? int64_t(*a.getSlidingWindow()) : 0), l.dim(kp, 1),
            l.f32(a.getScale().convertToDouble())});
  l.map.map(a.getResult(), out);
  return success();
}

LogicalResult lowerGatherRows(LaunchBuilder &l, moe::GatherRowsOp g) {
  Value x = l.buf(g.getInput()), perm = l.buf(g.getPermutation());
  Value R = l.dim(perm, 0), D = l.dim(x, 1);
  Value out = l.allocResult(g, R);
  l.launch("gather_rows", {R, l.idx(1), l.idx(1)}, Tiles::elementwiseThreads,
           {l.arg(x), l.arg(perm), l.arg(out), D, l.idx(g.getK())});
  l.map.map(g.getRows(), out);
  return success();
}

} // namespace

void populateStepLaunchRules(LaunchRules &rules) {
  rules.add<moe::RoPEAtOp>(lowerRoPEAt);
  rules.add<moe::PagedKVWriteOp>(lowerPagedKVWrite);
  rules.add<moe::PagedAttentionOp>(lowerPagedAttention);
  rules.add<moe::GatherRowsOp>(lowerGatherRows);
}

} // namespace mlir::moe::gpu
