//===- Dense.cpp - launch rules for the dense ops of a decoder layer -------------===//
//
// populateDenseLaunchRules: moe.embedding, moe.rms_norm, moe.linear, moe.router, moe.rope and
// moe.attention, one kernel (two for attention) each (see LaunchBuilder.h).
//
//===----------------------------------------------------------------------===//

#include "../LaunchBuilder.h"
#include "moec/Dialect/Moe/MoeOps.h"

using namespace mlir;

namespace mlir::moe::gpu {
namespace {

LogicalResult lowerEmbedding(LaunchBuilder &l, moe::EmbeddingOp e) {
  Value ids = l.buf(e.getIds()), table = l.buf(e.getTable());
  Value T = l.dim(ids, 0);
  Value out = l.allocResult(e, T);
  l.launch("embedding", {T, l.idx(1), l.idx(1)}, Tiles::elementwiseThreads,
           {l.arg(table), l.arg(ids), l.arg(out), l.dim(table, 1)});
  l.map.map(e.getResult(), out);
  return success();
}

LogicalResult lowerRMSNorm(LaunchBuilder &l, moe::RMSNormOp n) {
  Value x = l.buf(n.getInput()), w = l.buf(n.getWeight());
  Value T = l.dim(x, 0);
  Value out = l.allocResult(n, T);
  l.launch("rms_norm", {T, l.idx(1), l.idx(1)}, Tiles::elementwiseThreads,
           {l.arg(x), l.arg(w), l.arg(out), l.dim(x, 1), l.f32(n.getEpsilon().convertToDouble())});
  l.map.map(n.getResult(), out);
  return success();
}

/// moe.linear and moe.router: x · Wᵀ, GEMV for one token (and always for the router, whose
/// E columns are too few for a tensor-core tile), mma.sync otherwise.
LogicalResult lowerProjection(LaunchBuilder &l, Operation *op) {
  Value x = l.buf(op->getOperand(0)), w = l.buf(op->getOperand(1));
  Value T = l.dim(x, 0);
  Value out = l.allocResult(op, T);
  bool gemv = isa<moe::RouterOp>(op) || !cast<MemRefType>(x.getType()).isDynamicDim(0);
  // A quantized projection (data + scales): K is the scales' groups times the group size
  // (the data's last dimension counts bytes).
  QuantWeights q;
  Value K = l.dim(w, 1);
  if (auto linear = dyn_cast<moe::LinearOp>(op); linear && linear.getQuantAttr()) {
    q.quant = linear.getQuantAttr();
    q.scale = l.buf(linear.getWeightScale());
    K = l.idx(cast<RankedTensorType>(linear.getInput().getType()).getShape().back());
  }
  l.matmul(x, w, Value(), out, Value(), Value(), l.idx(0), T, l.dim(w, 0), K, 0, 1, gemv, Value(),
           q);
  l.map.map(op->getResult(0), out);
  return success();
}

LogicalResult lowerRoPE(LaunchBuilder &l, moe::RoPEOp r) {
  Value x = l.buf(r.getInput());
  Value T = l.dim(x, 0), NH = l.dim(x, 1), HD = l.dim(x, 2);
  Value out = l.allocResult(r, T);
  Value pairs = l.mul(l.mul(T, NH), arith::DivUIOp::create(l.b, l.loc, HD, l.idx(2)));
  l.launch("rope", {l.ceilDiv(pairs, Tiles::elementwiseThreads), l.idx(1), l.idx(1)},
           Tiles::elementwiseThreads,
           {l.arg(x), l.arg(out), T, NH, HD, l.scalar(r.getStart()),
            l.f32(r.getTheta().convertToDouble())});
  l.map.map(r.getResult(), out);
  return success();
}

/// Split-KV attention (the key range in `split`-key chunks on the decode path), then the
/// combine of the splits' partial results.
LogicalResult lowerAttention(LaunchBuilder &l, moe::AttentionOp a) {
  Value q = l.buf(a.getQuery()), kc = l.buf(a.getKeyCache()), vc = l.buf(a.getValueCache());
  auto qt = cast<MemRefType>(q.getType());
  auto kt = cast<MemRefType>(kc.getType());
  int64_t H = qt.getDimSize(1), HD = qt.getDimSize(2), KVH = kt.getDimSize(1), S = kt.getDimSize(0);
  Value T = l.dim(q, 0), start = l.scalar(a.getStart());
  Value out = l.allocResult(a, T);
  bool decode = !qt.isDynamicDim(0);
  int64_t chunk = decode ? l.split : S;
  Value splits = decode ? l.ceilDiv(l.add(start, T), chunk) : l.idx(1);
  Value partRows = l.mul(l.mul(splits, T), l.idx(H));
  Value part = l.alloc({ShapedType::kDynamic, HD + 2}, l.b.getF32Type(), {partRows});
  int64_t qTokens = Tiles::attnTokens(H / KVH);
  l.launch("attention", {l.ceilDiv(T, qTokens), l.idx(KVH), splits}, Tiles::attnThreads,
           {l.arg(q), l.arg(kc), l.arg(vc), l.arg(part), T, start,
            l.idx(a.getSlidingWindow() ? int64_t(*a.getSlidingWindow()) : 0), l.idx(chunk),
            l.f32(a.getScale().convertToDouble())});
  l.launch("attention_combine", {l.mul(T, l.idx(H)), l.idx(1), l.idx(1)}, Tiles::attnThreads,
           {l.arg(part), l.arg(out), T, l.idx(H), l.idx(HD), splits});
  l.map.map(a.getResult(), out);
  return success();
}

} // namespace

void populateDenseLaunchRules(LaunchRules &rules) {
  rules.add<moe::EmbeddingOp>(lowerEmbedding);
  rules.add<moe::RMSNormOp>(lowerRMSNorm);
  rules.add<moe::LinearOp>(
      [](LaunchBuilder &l, moe::LinearOp op) { return lowerProjection(l, op); });
  rules.add<moe::RouterOp>(
      [](LaunchBuilder &l, moe::RouterOp op) { return lowerProjection(l, op); });
  rules.add<moe::RoPEOp>(lowerRoPE);
  rules.add<moe::AttentionOp>(lowerAttention);
}

} // namespace mlir::moe::gpu
