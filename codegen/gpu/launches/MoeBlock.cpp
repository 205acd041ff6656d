//===- MoeBlock.cpp - launch rules for the routed MoE block ----------------------===//
//
// populateRoutingLaunchRules (moe.top_k_gating, moe.dispatch) and populateExpertLaunchRules
// (moe.grouped_swiglu, moe.grouped_matmul_combine): the middle end's fused routed ops, one
// kernel boundary each (see LaunchBuilder.h). The router is a projection (Dense.cpp).
//
//===----------------------------------------------------------------------===//

#include "../LaunchBuilder.h"
#include "moec/Dialect/Moe/MoeOps.h"

using namespace mlir;

namespace mlir::moe::gpu {
namespace {

LogicalResult lowerTopK(LaunchBuilder &l, moe::TopKGatingOp g) {
  // logits [T, E] f32 -> weights [T, k] f32, ids [T, k] i32
  Value logits = l.buf(g.getLogits());
  Value T = l.dim(logits, 0);
  int64_t k = g.getK();
  Value weights = l.alloc({ShapedType::kDynamic, k}, l.b.getF32Type(), {T});
  Value ids = l.alloc({ShapedType::kDynamic, k}, l.b.getI32Type(), {T});
  l.launch("top_k", {l.ceilDiv(T, Tiles::topKThreads), l.idx(1), l.idx(1)}, Tiles::topKThreads,
           {l.arg(logits), l.arg(weights), l.arg(ids), T, l.dim(logits, 1), l.idx(k)});
  l.map.map(g.getWeights(), weights);
  l.map.map(g.getExpertIds(), ids);
  return success();
}

LogicalResult lowerDispatch(LaunchBuilder &l, moe::DispatchOp d) {
  // ids [T, k] -> perm [R], offsets [E+1], and the inverse permutation [R] that the
  // combine kernel reads (kept beside the permutation in `inverse`).
  int64_t E = d.getNumExperts();
  if (E > Tiles::dispatchThreads)
    return d.emitOpError("the GPU dispatch kernel supports at most ")
           << Tiles::dispatchThreads << " experts";
  Value ids = l.buf(d.getExpertIds());
  Value k = l.dim(ids, 1);
  Value R = l.mul(l.dim(ids, 0), k);
  Value perm = l.alloc({ShapedType::kDynamic}, l.b.getI32Type(), {R});
  Value inv = l.alloc({ShapedType::kDynamic}, l.b.getI32Type(), {R});
  Value offsets = l.alloc({E + 1}, l.b.getI32Type(), {});
  l.launch("dispatch", {l.idx(1), l.idx(1), l.idx(1)}, Tiles::dispatchThreads,
           {l.arg(ids), l.arg(perm), l.arg(inv), l.arg(offsets), R, l.idx(E), k});
  l.map.map(d.getPermutation(), perm);
  l.map.map(d.getExpertOffsets(), offsets);
  l.inverse[perm] = inv;
  return success();
}

LogicalResult lowerGroupedSwiGLU(LaunchBuilder &l, moe::GroupedSwiGLUOp s) {
  // h [R, F] = silu(x[perm / k] · w1[e]ᵀ) * (x[perm / k] · w3[e]ᵀ), rows grouped by expert
  Value x = l.buf(s.getInput()), perm = l.buf(s.getPermutation());
  Value offsets = l.buf(s.getExpertOffsets());
  Value w1 = l.buf(s.getW1()), w3 = l.buf(s.getW3());
  auto w1t = cast<MemRefType>(w1.getType());
  // D from the input: quantized data's last dimension counts bytes (q4: D / 2).
  int64_t E = w1t.getDimSize(0), F = w1t.getDimSize(1);
  int64_t D = cast<MemRefType>(x.getType()).getDimSize(1);
  QuantWeights q;
  if ((q.quant = s.getQuantAttr()))
    q.scale = l.buf(s.getW1Scale()), q.scale3 = l.buf(s.getW3Scale());
  Value R = l.dim(perm, 0);
  Value h = l.allocResult(s, R);
  l.matmul(x, w1, w3, h, offsets, perm, l.idx(E), R, l.idx(F), l.idx(D), /*gather=*/1, s.getK(),
           l.isDecode(x), l.maxGroupedTiles(R, E), q);
  l.map.map(s.getResult(), h);
  return success();
}

LogicalResult lowerGroupedMatmulCombine(LaunchBuilder &l, moe::GroupedMatmulCombineOp c) {
  // down [R, D] = h · w2[e]ᵀ, then y [T, D] = the routing-weighted sum in slot order
  Value h = l.buf(c.getRows()), w2 = l.buf(c.getW2()), offsets = l.buf(c.getExpertOffsets());
  Value perm = l.buf(c.getPermutation()), weights = l.buf(c.getRoutingWeights());
  Value inv = l.inverse.lookup(perm);
  if (!inv)
    return c.emitOpError("needs a permutation made by moe.dispatch on the GPU path (the "
                         "combine kernel reads the dispatch kernel's inverse permutation)");
  auto w2t = cast<MemRefType>(w2.getType());
  // F from the rows: quantized data's last dimension counts bytes (q4: F / 2).
  int64_t E = w2t.getDimSize(0), D = w2t.getDimSize(1);
  int64_t F = cast<MemRefType>(h.getType()).getDimSize(1);
  QuantWeights q;
  if ((q.quant = c.getQuantAttr()))
    q.scale = l.buf(c.getW2Scale());
  Value R = l.dim(h, 0), T = l.dim(weights, 0), k = l.dim(weights, 1);
  Value down = l.alloc({ShapedType::kDynamic, D}, l.b.getF32Type(), {R});
  l.matmul(h, w2, Value(), down, offsets, perm, l.idx(E), R, l.idx(D), l.idx(F), 0, 1,
           l.isDecode(h), l.maxGroupedTiles(R, E), q);
  Value y = l.allocResult(c, T);
  l.launch("combine", {T, l.idx(1), l.idx(1)}, Tiles::elementwiseThreads,
           {l.arg(down), l.arg(inv), l.arg(weights), l.arg(y), l.idx(D), k});
  l.map.map(c.getResult(), y);
  return success();
}

} // namespace

void populateRoutingLaunchRules(LaunchRules &rules) {
  rules.add<moe::TopKGatingOp>(lowerTopK);
  rules.add<moe::DispatchOp>(lowerDispatch);
}

void populateExpertLaunchRules(LaunchRules &rules) {
  rules.add<moe::GroupedSwiGLUOp>(lowerGroupedSwiGLU);
  rules.add<moe::GroupedMatmulCombineOp>(lowerGroupedMatmulCombine);
}

} // namespace mlir::moe::gpu
