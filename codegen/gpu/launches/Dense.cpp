//===- Dense.cpp - launch rules for the dense kernels of a decoder layer ---------===//
//
// populateDenseLaunchRules: the kernel calls "embedding", "rms_norm", "linear", "router",
// "rope" and "attention", one kernel (two for attention) each (see LaunchBuilder.h; operands
// in moe-gpu-form-kernel-calls' order).
//
//===----------------------------------------------------------------------===//

#include "../LaunchBuilder.h"

using namespace mlir;

namespace mlir::moe::gpu {
namespace {

/// ins(table, ids) outs(result)
LogicalResult lowerEmbedding(LaunchBuilder &l, KernelCallOp c) {
  Value table = c.getInputs()[0], ids = c.getInputs()[1], out = c.getOutputs()[0];
  Value T = l.dim(ids, 0);
  l.launch("embedding", {T, l.idx(1), l.idx(1)}, Tiles::elementwiseThreads,
           {l.arg(table), l.arg(ids), l.arg(out), l.dim(table, 1)});
  return success();
}

/// ins(x, weight) outs(result) params {epsilon}
LogicalResult lowerRMSNorm(LaunchBuilder &l, KernelCallOp c) {
  Value x = c.getInputs()[0], w = c.getInputs()[1], out = c.getOutputs()[0];
  Value T = l.dim(x, 0);
  l.launch("rms_norm", {T, l.idx(1), l.idx(1)}, Tiles::elementwiseThreads,
           {l.arg(x), l.arg(w), l.arg(out), l.dim(x, 1), l.f32(floatParam(c, "epsilon"))});
  return success();
}

/// "linear" ins(x, weight [, weight_scale]) and "router" ins(x, gate_weight), outs(result):
/// x · Wᵀ, GEMV for one token (and always for the router, whose E columns are too few for a
/// tensor-core tile), mma.sync otherwise.
LogicalResult lowerProjection(LaunchBuilder &l, KernelCallOp c) {
  Value x = c.getInputs()[0], w = c.getInputs()[1], out = c.getOutputs()[0];
  Value T = l.dim(x, 0);
  bool gemv = c.getKernel() == "router" || l.isDecode(x);
  // A quantized projection (data + scales): K is the scales' groups times the group size
  // (the data's last dimension counts bytes).
  QuantWeights q;
  Value K = l.dim(w, 1);
  if ((q.quant = quantParam(c))) {
    q.scale = c.getInputs()[2];
    K = l.idx(cast<MemRefType>(x.getType()).getShape().back());
  }
  l.matmul(x, w, Value(), out, Value(), Value(), l.idx(0), T, l.dim(w, 0), K, 0, 1, gemv, Value(),
           q);
  return success();
}

/// ins(x [T, NH, HD], start) outs(result) params {theta}
LogicalResult lowerRoPE(LaunchBuilder &l, KernelCallOp c) {
  Value x = c.getInputs()[0], start = c.getInputs()[1], out = c.getOutputs()[0];
  Value T = l.dim(x, 0), NH = l.dim(x, 1), HD = l.dim(x, 2);
  Value pairs = l.mul(l.mul(T, NH), arith::DivUIOp::create(l.b, l.loc, HD, l.idx(2)));
  l.launch("rope", {l.ceilDiv(pairs, Tiles::elementwiseThreads), l.idx(1), l.idx(1)},
           Tiles::elementwiseThreads,
           {l.arg(x), l.arg(out), T, NH, HD, start, l.f32(floatParam(c, "theta"))});
  return success();
}

/// ins(q, key_cache, value_cache, start) outs(result, partials) params {scale, split,
/// sliding_window?}: split-KV attention (the key range in `split`-key chunks on the decode
/// path, one chunk of the whole cache otherwise), then the combine of the splits' partial
/// results.
LogicalResult lowerAttention(LaunchBuilder &l, KernelCallOp c) {
  Value q = c.getInputs()[0], kc = c.getInputs()[1], vc = c.getInputs()[2];
  Value start = c.getInputs()[3], out = c.getOutputs()[0], part = c.getOutputs()[1];
  auto qt = cast<MemRefType>(q.getType());
  auto kt = cast<MemRefType>(kc.getType());
  int64_t H = qt.getDimSize(1), KVH = kt.getDimSize(1);
  Value T = l.dim(q, 0);
  int64_t chunk = intParam(c, "split");
  Value splits = l.isDecode(q) ? l.ceilDiv(l.add(start, T), chunk) : l.idx(1);
  int64_t qTokens = Tiles::attnTokens(H / KVH);
  l.launch("attention", {l.ceilDiv(T, qTokens), l.idx(KVH), splits}, Tiles::attnThreads,
           {l.arg(q), l.arg(kc), l.arg(vc), l.arg(part), T, start,
            l.idx(intParamOr0(c, "sliding_window")), l.idx(chunk),
            l.f32(floatParam(c, "scale"))});
  l.launch("attention_combine", {l.mul(T, l.idx(H)), l.idx(1), l.idx(1)}, Tiles::attnThreads,
           {l.arg(part), l.arg(out), T, l.idx(H), l.idx(qt.getDimSize(2)), splits});
  return success();
}

} // namespace

void populateDenseLaunchRules(LaunchRules &rules) {
  rules.addKernel("embedding", lowerEmbedding);
  rules.addKernel("rms_norm", lowerRMSNorm);
  rules.addKernel("linear", lowerProjection);
  rules.addKernel("router", lowerProjection);
  rules.addKernel("rope", lowerRoPE);
  rules.addKernel("attention", lowerAttention);
}

} // namespace mlir::moe::gpu
