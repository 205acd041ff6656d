//===- MoeBlock.cpp - launch rules for the routed MoE block ----------------------===//
//
// populateRoutingLaunchRules ("top_k_gating", "dispatch") and populateExpertLaunchRules
// ("grouped_swiglu", "grouped_matmul_combine"): the kernel calls of the middle end's fused
// routed ops, one kernel boundary each (see LaunchBuilder.h; operands in
// moe-gpu-form-kernel-calls' order). The router is a projection (Dense.cpp).
//
//===----------------------------------------------------------------------===//

#include "../LaunchBuilder.h"

using namespace mlir;

namespace mlir::moe::gpu {
namespace {

/// ins(logits [T, E] f32) outs(weights [T, k] f32, ids [T, k] i32) params {k}
LogicalResult lowerTopK(LaunchBuilder &l, KernelCallOp c) {
  Value logits = c.getInputs()[0], weights = c.getOutputs()[0], ids = c.getOutputs()[1];
  Value T = l.dim(logits, 0);
  l.launch("top_k", {l.ceilDiv(T, Tiles::topKThreads), l.idx(1), l.idx(1)}, Tiles::topKThreads,
           {l.arg(logits), l.arg(weights), l.arg(ids), T, l.dim(logits, 1),
            l.idx(intParam(c, "k"))});
  return success();
}

/// ins(ids [T, k]) outs(perm [R], offsets [E+1], inverse permutation [R]) params
/// {num_experts}; the combine kernel reads the inverse.
LogicalResult lowerDispatch(LaunchBuilder &l, KernelCallOp c) {
  int64_t E = intParam(c, "num_experts");
  if (E > Tiles::dispatchThreads)
    return c.emitOpError("the GPU dispatch kernel supports at most ")
           << Tiles::dispatchThreads << " experts.";
  Value ids = c.getInputs()[0];
  Value perm = c.getOutputs()[0], offsets = c.getOutputs()[1], inv = c.getOutputs()[2];
  Value k = l.dim(ids, 1);
  Value R = l.mul(l.dim(ids, 0), k);
  l.launch("dispatch", {l.idx(1), l.idx(1), l.idx(1)}, Tiles::dispatchThreads,
           {l.arg(ids), l.arg(perm), l.arg(inv), l.arg(offsets), R, l.idx(E), k});
  return success();
}

/// ins(x, perm, offsets, w1, w3 [, w1_scale, w3_scale]) outs(h [R, F]) params {k, quant?}:
/// h = silu(x[perm / k] · w1[e]ᵀ) * (x[perm / k] · w3[e]ᵀ), rows grouped by expert.
LogicalResult lowerGroupedSwiGLU(LaunchBuilder &l, KernelCallOp c) {
  OperandRange in = c.getInputs();
  Value x = in[0], perm = in[1], offsets = in[2], w1 = in[3], w3 = in[4];
  Value h = c.getOutputs()[0];
  auto w1t = cast<MemRefType>(w1.getType());
  // D from the input: quantized data's last dimension counts bytes (q4: D / 2).
  int64_t E = w1t.getDimSize(0), F = w1t.getDimSize(1);
  int64_t D = cast<MemRefType>(x.getType()).getDimSize(1);
  QuantWeights q;
  if ((q.quant = quantParam(c)))
    q.scale = in[5], q.scale3 = in[6];
  Value R = l.dim(perm, 0);
  l.matmul(x, w1, w3, h, offsets, perm, l.idx(E), R, l.idx(F), l.idx(D), /*gather=*/1,
           intParam(c, "k"), l.isDecode(x), l.maxGroupedTiles(R, E), q);
  return success();
}

/// ins(h [R, F], w2, offsets, perm, routing weights [T, k] [, w2_scale], inverse permutation)
/// outs(y [T, D], down [R, D]) params {quant?}: down = h · w2[e]ᵀ, then y = the
/// routing-weighted sum in slot order.
LogicalResult lowerGroupedMatmulCombine(LaunchBuilder &l, KernelCallOp c) {
  OperandRange in = c.getInputs();
  Value h = in[0], w2 = in[1], offsets = in[2], perm = in[3], weights = in[4];
  Value inv = in.back(), y = c.getOutputs()[0], down = c.getOutputs()[1];
  auto w2t = cast<MemRefType>(w2.getType());
  // F from the rows: quantized data's last dimension counts bytes (q4: F / 2).
  int64_t E = w2t.getDimSize(0), D = w2t.getDimSize(1);
  int64_t F = cast<MemRefType>(h.getType()).getDimSize(1);
  QuantWeights q;
  if ((q.quant = quantParam(c)))
    q.scale = in[5];
  Value R = l.dim(h, 0), T = l.dim(weights, 0), k = l.dim(weights, 1);
  l.matmul(h, w2, Value(), down, offsets, perm, l.idx(E), R, l.idx(D), l.idx(F), 0, 1,
           l.isDecode(h), l.maxGroupedTiles(R, E), q);
  l.launch("combine", {T, l.idx(1), l.idx(1)}, Tiles::elementwiseThreads,
           {l.arg(down), l.arg(inv), l.arg(weights), l.arg(y), l.idx(D), k});
  return success();
}

} // namespace

void populateRoutingLaunchRules(LaunchRules &rules) {
  rules.addKernel("top_k_gating", lowerTopK);
  rules.addKernel("dispatch", lowerDispatch);
}

void populateExpertLaunchRules(LaunchRules &rules) {
  rules.addKernel("grouped_swiglu", lowerGroupedSwiGLU);
  rules.addKernel("grouped_matmul_combine", lowerGroupedMatmulCombine);
}

} // namespace mlir::moe::gpu
