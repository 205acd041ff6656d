//===- Step.cpp - launch rules for the batched step (moec_step) ------------------===//
//
// populateStepLaunchRules: the kernel calls only moec_step has, one kernel each (see
// LaunchBuilder.h; operands in moe-gpu-form-kernel-calls' order):
//   "rope_at"          rope_at (rows at their own positions)
//   "paged_kv_write"   paged_kv_write, in place into the runtime's pool (the call's output)
//   "paged_attention"  paged_attention: one block per (row, KV head), no split of the key
//                      range, so a row's bits do not depend on the rest of the step
//   "gather_rows"      gather_rows (the rows whose logits the step returns)
// The step's MoE block is the routed kernels of every entry point (MoeBlock.cpp) over all rows
// of the step; its projections are the prefill's tensor-core GEMMs (the row count is dynamic),
// whose per-row reduction order along K does not depend on the row tile a row falls in.
//
//===----------------------------------------------------------------------===//

#include "../LaunchBuilder.h"

using namespace mlir;

namespace mlir::moe::gpu {
namespace {

/// ins(x [T, NH, HD], positions [T]) outs(result) params {theta}
LogicalResult lowerRoPEAt(LaunchBuilder &l, KernelCallOp c) {
  Value x = c.getInputs()[0], positions = c.getInputs()[1], out = c.getOutputs()[0];
  Value T = l.dim(x, 0), NH = l.dim(x, 1), HD = l.dim(x, 2);
  Value pairs = l.mul(l.mul(T, NH), arith::DivUIOp::create(l.b, l.loc, HD, l.idx(2)));
  l.launch("rope_at", {l.ceilDiv(pairs, Tiles::elementwiseThreads), l.idx(1), l.idx(1)},
           Tiles::elementwiseThreads,
           {l.arg(x), l.arg(positions), l.arg(out), T, NH, HD, l.f32(floatParam(c, "theta"))});
  return success();
}

/// ins(update [T, KVH, HD], block tables, positions) outs(pool)
LogicalResult lowerPagedKVWrite(LaunchBuilder &l, KernelCallOp c) {
  Value update = c.getInputs()[0], tables = c.getInputs()[1], positions = c.getInputs()[2];
  Value pool = c.getOutputs()[0];
  Value T = l.dim(update, 0), KVH = l.dim(update, 1), HD = l.dim(update, 2);
  Value n = l.mul(l.mul(T, KVH), HD);
  l.launch("paged_kv_write", {l.ceilDiv(n, Tiles::elementwiseThreads), l.idx(1), l.idx(1)},
           Tiles::elementwiseThreads,
           {l.arg(update), l.arg(pool), l.arg(tables), l.arg(positions), T, KVH, HD,
            l.dim(pool, 1)});
  return success();
}

/// ins(q, key pool, value pool, block tables, positions) outs(result) params {scale,
/// sliding_window?}
LogicalResult lowerPagedAttention(LaunchBuilder &l, KernelCallOp c) {
  OperandRange in = c.getInputs();
  Value q = in[0], kp = in[1], vp = in[2], tables = in[3], positions = in[4];
  Value out = c.getOutputs()[0];
  auto kt = cast<MemRefType>(kp.getType());
  Value T = l.dim(q, 0);
  l.launch("paged_attention", {T, l.idx(kt.getDimSize(2)), l.idx(1)}, Tiles::attnThreads,
           {l.arg(q), l.arg(kp), l.arg(vp), l.arg(tables), l.arg(positions), l.arg(out), T,
            l.idx(intParamOr0(c, "sliding_window")), l.dim(kp, 1),
            l.f32(floatParam(c, "scale"))});
  return success();
}

/// ins(x, perm [R]) outs(rows [R, D]) params {k}
LogicalResult lowerGatherRows(LaunchBuilder &l, KernelCallOp c) {
  Value x = c.getInputs()[0], perm = c.getInputs()[1], out = c.getOutputs()[0];
  Value R = l.dim(perm, 0), D = l.dim(x, 1);
  l.launch("gather_rows", {R, l.idx(1), l.idx(1)}, Tiles::elementwiseThreads,
           {l.arg(x), l.arg(perm), l.arg(out), D, l.idx(intParam(c, "k"))});
  return success();
}

} // namespace

void populateStepLaunchRules(LaunchRules &rules) {
  rules.addKernel("rope_at", lowerRoPEAt);
  rules.addKernel("paged_kv_write", lowerPagedKVWrite);
  rules.addKernel("paged_attention", lowerPagedAttention);
  rules.addKernel("gather_rows", lowerGatherRows);
}

} // namespace mlir::moe::gpu
