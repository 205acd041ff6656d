//===- MoeOps.cpp - moe dialect verifiers and canonicalisations -----------===//
//
// Verifiers state every shape invariant the op descriptions promise. A dynamic size is
// compatible with anything (T is only known at run time); every message is one sentence that
// names the operand and both sizes, so a broken model builder is easy to find.
//
//===----------------------------------------------------------------------===//

#include "moec/Dialect/Moe/MoeOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/PatternMatch.h"

using namespace mlir;
using namespace mlir::moe;

namespace {

std::string sizeStr(int64_t size) {
  return ShapedType::isDynamic(size) ? std::string("?") : std::to_string(size);
}

/// Collects the checks of one op and reports the first failure.
class Checker {
public:
  explicit Checker(Operation *op) : op(op) {}

  /// `value` must be a tensor of rank `rank`.
  LogicalResult rank(Value value, StringRef name, int64_t rank) {
    auto type = cast<RankedTensorType>(value.getType());
    if (type.getRank() == rank)
      return success();
    return op->emitOpError() << "expects " << name << " to have rank " << rank
                             << ", but it has rank " << type.getRank() << ".";
  }

  /// Two sizes that must agree where both are static.
  LogicalResult same(StringRef lhsName, int64_t lhs, StringRef rhsName, int64_t rhs) {
    if (ShapedType::isDynamic(lhs) || ShapedType::isDynamic(rhs) || lhs == rhs)
      return success();
    return op->emitOpError() << "expects " << lhsName << " (" << sizeStr(lhs)
                             << ") to equal " << rhsName << " (" << sizeStr(rhs) << ").";
  }

  /// A size that must be known at compile time (model dimensions).
  LogicalResult isStatic(StringRef name, int64_t size) {
    if (!ShapedType::isDynamic(size))
      return success();
    return op->emitOpError() << "expects " << name
                             << " to be static, because it is a model dimension.";
  }

  /// Result element type must match the given operand's.
  LogicalResult sameElementType(Value result, StringRef resultName, Value operand,
                                StringRef operandName) {
    Type a = cast<ShapedType>(result.getType()).getElementType();
    Type b = cast<ShapedType>(operand.getType()).getElementType();
    if (a == b)
      return success();
    return op->emitOpError() << "expects " << resultName << " to have the element type of "
                             << operandName << " (" << b << "), but it has " << a << ".";
  }

private:
  Operation *op;
};

int64_t dim(Value v, unsigned i) { return cast<ShapedType>(v.getType()).getDimSize(i); }

/// R = T * k where T is known; dynamic otherwise.
int64_t routedRows(int64_t tokens, int64_t k) {
  return ShapedType::isDynamic(tokens) ? ShapedType::kDynamic : tokens * k;
}

/// The size of axis `i` of the weight whose data is `w`: q4 packs two elements of K per byte.
int64_t weightDim(Value w, unsigned i, QuantAttr quant) {
  int64_t size = dim(w, i);
  bool last = i + 1 == cast<ShapedType>(w.getType()).getRank();
  if (!last || !quant || ShapedType::isDynamic(size))
    return size;
  return size * quant.elementsPerByte();
}

/// A weight operand named `name`: a float tensor without `quant`; with it, data of the
/// format's element type and scales [..., N, K / group] of the format's scale type (the
/// group is the whole row, K, for f8e4m3).
LogicalResult checkWeight(Operation *op, Checker &c, StringRef name, Value w, Value scale,
                          QuantAttr quant) {
  Type element = cast<ShapedType>(w.getType()).getElementType();
  if (!quant) {
    if (scale)
      return op->emitOpError() << "expects no scales for " << name
                               << ", because it has no quant attribute.";
    if (!isa<FloatType>(element) || isa<Float8E4M3FNType>(element))
      return op->emitOpError() << "expects " << name
                               << " to be an f32, bf16 or f16 tensor unless the op has a quant "
                                  "attribute, but its element type is "
                               << element << ".";
    return success();
  }
  if (!scale)
    return op->emitOpError() << "expects scales for " << name
                             << ", because the op has a quant attribute.";
  MLIRContext *ctx = op->getContext();
  StringRef format = stringifyQuantFormat(quant.getFormat());
  if (element != quant.dataElementType(ctx))
    return op->emitOpError() << "expects " << name << " to hold " << quant.dataElementType(ctx)
                             << " data for " << format << ", but its element type is "
                             << element << ".";
  Type scaleElement = cast<ShapedType>(scale.getType()).getElementType();
  if (scaleElement != quant.scaleElementType(ctx))
    return op->emitOpError() << "expects the scales of " << name << " to be "
                             << quant.scaleElementType(ctx) << " for " << format
                             << ", but they are " << scaleElement << ".";
  int64_t rank = cast<ShapedType>(w.getType()).getRank();
  if (failed(c.rank(scale, ("the scales of " + name).str(), rank)))
    return failure();
  for (int64_t i = 0; i + 1 < rank; ++i)
    if (failed(c.same(("dimension " + Twine(i) + " of the scales of " + name).str(),
                      dim(scale, i), ("dimension " + Twine(i) + " of " + name).str(), dim(w, i))))
      return failure();
  int64_t k = weightDim(w, rank - 1, quant);
  if (ShapedType::isDynamic(k))
    return c.isStatic(("the last dimension of " + name).str(), k);
  int64_t group = std::max<int64_t>(quant.groupSizeFor(k), 1);
  if (k % group != 0)
    return op->emitOpError() << "expects the last dimension of " << name << " (K = " << k
                             << " elements) to be a multiple of the group size (" << group
                             << ").";
  return c.same(("the last dimension of the scales of " + name).str(), dim(scale, rank - 1),
                "K / group size", k / group);
}

/// Offsets must be a static [E + 1] vector.
LogicalResult checkOffsets(Checker &c, Value offsets, int64_t numExperts) {
  if (failed(c.rank(offsets, "the expert offsets", 1)) ||
      failed(c.isStatic("the expert offsets' size", dim(offsets, 0))))
    return failure();
  return c.same("the expert offsets' size", dim(offsets, 0), "the number of experts plus one",
                ShapedType::isDynamic(numExperts) ? numExperts : numExperts + 1);
}

} // namespace

//===----------------------------------------------------------------------===//
// Routing
//===----------------------------------------------------------------------===//

LogicalResult RouterOp::verify() {
  Checker c(*this);
  Value x = getInput(), g = getGateWeight(), y = getLogits();
  if (failed(c.rank(x, "the input", 2)) || failed(c.rank(g, "the gate weight", 2)) ||
      failed(c.rank(y, "the logits", 2)) ||
      failed(c.isStatic("the number of experts", dim(g, 0))))
    return failure();
  return success(succeeded(c.same("the gate weight's second dimension", dim(g, 1),
                                  "the input's last dimension", dim(x, 1))) &&
                 succeeded(c.same("the logits' token count", dim(y, 0),
                                  "the input's token count", dim(x, 0))) &&
                 succeeded(c.same("the logits' second dimension", dim(y, 1),
                                  "the number of experts", dim(g, 0))));
}

LogicalResult TopKGatingOp::verify() {
  Checker c(*this);
  Value logits = getLogits(), w = getWeights(), ids = getExpertIds();
  if (failed(c.rank(logits, "the logits", 2)) || failed(c.rank(w, "the weights", 2)) ||
      failed(c.rank(ids, "the expert ids", 2)) ||
      failed(c.isStatic("the number of experts", dim(logits, 1))))
    return failure();
  int64_t k = static_cast<int64_t>(getK()), numExperts = dim(logits, 1);
  if (k > numExperts)
    return emitOpError() << "expects k (" << k << ") to be at most the number of experts ("
                         << numExperts << ").";
  return success(
      succeeded(c.same("the weights' token count", dim(w, 0), "the logits' token count",
                       dim(logits, 0))) &&
      succeeded(c.same("the expert ids' token count", dim(ids, 0), "the logits' token count",
                       dim(logits, 0))) &&
      succeeded(c.same("the weights' second dimension", dim(w, 1), "k", k)) &&
      succeeded(c.same("the expert ids' second dimension", dim(ids, 1), "k", k)));
}

LogicalResult DispatchOp::verify() {
  Checker c(*this);
  Value ids = getExpertIds(), perm = getPermutation();
  if (failed(c.rank(ids, "the expert ids", 2)) || failed(c.rank(perm, "the permutation", 1)) ||
      failed(c.isStatic("the expert ids' second dimension (k)", dim(ids, 1))))
    return failure();
  if (dim(ids, 1) > static_cast<int64_t>(getNumExperts()))
    return emitOpError() << "expects k (" << dim(ids, 1)
                         << ") to be at most the number of experts (" << getNumExperts()
                         << ").";
  if (failed(c.same("the permutation's size", dim(perm, 0), "tokens times k",
                    routedRows(dim(ids, 0), dim(ids, 1)))))
    return failure();
  return checkOffsets(c, getExpertOffsets(), getNumExperts());
}

LogicalResult GatherRowsOp::verify() {
  Checker c(*this);
  Value x = getInput(), perm = getPermutation(), rows = getRows();
  if (failed(c.rank(x, "the input", 2)) || failed(c.rank(perm, "the permutation", 1)) ||
      failed(c.rank(rows, "the result", 2)))
    return failure();
  return success(
      succeeded(c.sameElementType(rows, "the result", x, "the input")) &&
      succeeded(c.same("the result's row count", dim(rows, 0), "the permutation's size",
                       dim(perm, 0))) &&
      succeeded(c.same("the permutation's size", dim(perm, 0), "tokens times k",
                       routedRows(dim(x, 0), getK()))) &&
      succeeded(c.same("the result's last dimension", dim(rows, 1),
                       "the input's last dimension", dim(x, 1))));
}

LogicalResult GroupedMatmulOp::verify() {
  Checker c(*this);
  Value rows = getRows(), w = getWeights(), out = getResult();
  if (failed(c.rank(rows, "the rows", 2)) || failed(c.rank(w, "the expert weights", 3)) ||
      failed(c.rank(out, "the result", 2)) ||
      failed(checkWeight(*this, c, "the expert weights", w, getWeightsScale(), getQuantAttr())) ||
      failed(c.isStatic("the number of experts", dim(w, 0))) ||
      failed(checkOffsets(c, getExpertOffsets(), dim(w, 0))))
    return failure();
  return success(
      succeeded(c.sameElementType(out, "the result", rows, "the rows")) &&
      succeeded(c.same("the expert weights' last dimension", weightDim(w, 2, getQuantAttr()),
                       "the rows' last dimension", dim(rows, 1))) &&
      succeeded(c.same("the result's row count", dim(out, 0), "the rows' count",
                       dim(rows, 0))) &&
      succeeded(c.same("the result's last dimension", dim(out, 1),
                       "the expert weights' output dimension", dim(w, 1))));
}

LogicalResult SwiGLUOp::verify() {
  if (getGate().getType() != getUp().getType() || getGate().getType() != getResult().getType())
    return emitOpError() << "expects the gate, the up projection and the result to have the "
                            "same type.";
  return success();
}

LogicalResult CombineOp::verify() {
  Checker c(*this);
  Value out = getExpertOut(), perm = getPermutation(), w = getRoutingWeights(),
        y = getResult();
  if (failed(c.rank(out, "the expert outputs", 2)) ||
      failed(c.rank(perm, "the permutation", 1)) ||
      failed(c.rank(w, "the routing weights", 2)) || failed(c.rank(y, "the result", 2)) ||
      failed(c.isStatic("the routing weights' second dimension (k)", dim(w, 1))))
    return failure();
  return success(
      succeeded(c.sameElementType(y, "the result", out, "the expert outputs")) &&
      succeeded(c.same("the permutation's size", dim(perm, 0), "the expert outputs' row count",
                       dim(out, 0))) &&
      succeeded(c.same("the expert outputs' row count", dim(out, 0), "tokens times k",
                       routedRows(dim(w, 0), dim(w, 1)))) &&
      succeeded(c.same("the result's token count", dim(y, 0),
                       "the routing weights' token count", dim(w, 0))) &&
      succeeded(c.same("the result's last dimension", dim(y, 1),
                       "the expert outputs' last dimension", dim(out, 1))));
}

/// Shared by the whole block and the fused gate/up kernel: w1 (and w3, which callers have
/// checked has w1's type) is [E, F, D].
static LogicalResult checkGateUp(Checker &c, Value w1, int64_t modelDim, QuantAttr quant) {
  if (failed(c.rank(w1, "w1", 3)))
    return failure();
  return success(
      succeeded(c.isStatic("the number of experts", dim(w1, 0))) &&
      succeeded(c.same("w1's last dimension", weightDim(w1, 2, quant),
                       "the input's last dimension", modelDim)));
}

LogicalResult SparseBlockOp::verify() {
  Checker c(*this);
  Value x = getInput(), g = getGateWeight(), w1 = getW1(), w3 = getW3(), w2 = getW2();
  if (failed(c.rank(x, "the input", 2)) || failed(c.rank(g, "the gate weight", 2)) ||
      failed(c.rank(w2, "w2", 3)))
    return failure();
  if (w1.getType() != w3.getType())
    return emitOpError() << "expects w1 and w3 to have the same type.";
  QuantAttr quant = getQuantAttr();
  if (failed(checkWeight(*this, c, "w1", w1, getW1Scale(), quant)) ||
      failed(checkWeight(*this, c, "w3", w3, getW3Scale(), quant)) ||
      failed(checkWeight(*this, c, "w2", w2, getW2Scale(), quant)) ||
      failed(checkGateUp(c, w1, dim(x, 1), quant)))
    return failure();
  int64_t numExperts = dim(w1, 0);
  if (static_cast<int64_t>(getK()) > numExperts)
    return emitOpError() << "expects k (" << getK()
                         << ") to be at most the number of experts (" << numExperts << ").";
  return success(
      succeeded(c.sameElementType(getResult(), "the result", x, "the input")) &&
      succeeded(c.same("the gate weight's expert count", dim(g, 0), "w1's expert count",
                       numExperts)) &&
      succeeded(c.same("the gate weight's second dimension", dim(g, 1),
                       "the input's last dimension", dim(x, 1))) &&
      succeeded(c.same("w2's expert count", dim(w2, 0), "w1's expert count", numExperts)) &&
      succeeded(c.same("w2's output dimension", dim(w2, 1), "the input's last dimension",
                       dim(x, 1))) &&
      succeeded(c.same("w2's last dimension", weightDim(w2, 2, quant), "w1's output dimension",
                       dim(w1, 1))) &&
      succeeded(c.same("the result's token count", dim(getResult(), 0), "the input's token count",
                       dim(x, 0))) &&
      succeeded(c.same("the result's last dimension", dim(getResult(), 1),
                       "the input's last dimension", dim(x, 1))));
}

LogicalResult GroupedSwiGLUOp::verify() {
  Checker c(*this);
  Value x = getInput(), perm = getPermutation(), w1 = getW1(), w3 = getW3(), h = getResult();
  if (failed(c.rank(x, "the input", 2)) || failed(c.rank(perm, "the permutation", 1)) ||
      failed(c.rank(h, "the result", 2)))
    return failure();
  if (w1.getType() != w3.getType())
    return emitOpError() << "expects w1 and w3 to have the same type.";
  QuantAttr quant = getQuantAttr();
  if (failed(checkWeight(*this, c, "w1", w1, getW1Scale(), quant)) ||
      failed(checkWeight(*this, c, "w3", w3, getW3Scale(), quant)) ||
      failed(checkGateUp(c, w1, dim(x, 1), quant)) ||
      failed(checkOffsets(c, getExpertOffsets(), dim(w1, 0))))
    return failure();
  return success(
      succeeded(c.sameElementType(h, "the result", x, "the input")) &&
      succeeded(c.same("the permutation's size", dim(perm, 0), "tokens times k",
                       routedRows(dim(x, 0), getK()))) &&
      succeeded(c.same("the result's row count", dim(h, 0), "the permutation's size",
                       dim(perm, 0))) &&
      succeeded(c.same("the result's last dimension", dim(h, 1), "w1's output dimension",
                       dim(w1, 1))));
}

LogicalResult GroupedMatmulCombineOp::verify() {
  Checker c(*this);
  Value rows = getRows(), w2 = getW2(), perm = getPermutation(), w = getRoutingWeights(),
        y = getResult();
  if (failed(c.rank(rows, "the rows", 2)) || failed(c.rank(w2, "w2", 3)) ||
      failed(c.rank(perm, "the permutation", 1)) ||
      failed(c.rank(w, "the routing weights", 2)) || failed(c.rank(y, "the result", 2)) ||
      failed(c.isStatic("the number of experts", dim(w2, 0))) ||
      failed(c.isStatic("the routing weights' second dimension (k)", dim(w, 1))) ||
      failed(checkWeight(*this, c, "w2", w2, getW2Scale(), getQuantAttr())) ||
      failed(checkOffsets(c, getExpertOffsets(), dim(w2, 0))))
    return failure();
  return success(
      succeeded(c.sameElementType(y, "the result", rows, "the rows")) &&
      succeeded(c.same("w2's last dimension", weightDim(w2, 2, getQuantAttr()), "the rows' last dimension",
                       dim(rows, 1))) &&
      succeeded(c.same("the permutation's size", dim(perm, 0), "the rows' count",
                       dim(rows, 0))) &&
      succeeded(c.same("the rows' count", dim(rows, 0), "tokens times k",
                       routedRows(dim(w, 0), dim(w, 1)))) &&
      succeeded(c.same("the result's token count", dim(y, 0),
                       "the routing weights' token count", dim(w, 0))) &&
      succeeded(c.same("the result's last dimension", dim(y, 1), "w2's output dimension",
                       dim(w2, 1))));
}

//===----------------------------------------------------------------------===//
// Dense ops
//===----------------------------------------------------------------------===//

LogicalResult EmbeddingOp::verify() {
  Checker c(*this);
  Value table = getTable(), ids = getIds(), y = getResult();
  if (failed(c.rank(table, "the table", 2)) || failed(c.rank(ids, "the ids", 1)) ||
      failed(c.rank(y, "the result", 2)))
    return failure();
  return success(succeeded(c.same("the result's token count", dim(y, 0), "the ids' size",
                                  dim(ids, 0))) &&
                 succeeded(c.same("the result's last dimension", dim(y, 1),
                                  "the table's last dimension", dim(table, 1))));
}

LogicalResult RMSNormOp::verify() {
  Checker c(*this);
  auto x = cast<RankedTensorType>(getInput().getType());
  if (x.getRank() < 1)
    return emitOpError() << "expects the input to have rank at least 1.";
  if (!(getEpsilon().convertToDouble() >= 0.0))
    return emitOpError() << "expects a non-negative epsilon.";
  if (failed(c.rank(getWeight(), "the weight", 1)))
    return failure();
  if (getResult().getType() != x)
    return emitOpError() << "expects the result to have the input's type.";
  return c.same("the weight's size", dim(getWeight(), 0), "the input's last dimension",
                x.getShape().back());
}

LogicalResult LinearOp::verify() {
  Checker c(*this);
  Value x = getInput(), w = getWeight(), y = getResult();
  if (failed(c.rank(x, "the input", 2)) || failed(c.rank(w, "the weight", 2)) ||
      failed(c.rank(y, "the result", 2)) ||
      failed(checkWeight(*this, c, "the weight", w, getWeightScale(), getQuantAttr())))
    return failure();
  return success(
      succeeded(c.sameElementType(y, "the result", x, "the input")) &&
      succeeded(c.same("the weight's last dimension", weightDim(w, 1, getQuantAttr()),
                       "the input's last dimension",
                       dim(x, 1))) &&
      succeeded(c.same("the result's row count", dim(y, 0), "the input's row count",
                       dim(x, 0))) &&
      succeeded(c.same("the result's last dimension", dim(y, 1),
                       "the weight's output dimension", dim(w, 0))));
}

LogicalResult RoPEOp::verify() {
  Checker c(*this);
  if (failed(c.rank(getInput(), "the input", 3)))
    return failure();
  if (getResult().getType() != getInput().getType())
    return emitOpError() << "expects the result to have the input's type.";
  int64_t headDim = dim(getInput(), 2);
  if (failed(c.isStatic("the head dimension", headDim)))
    return failure();
  if (headDim % 2 != 0)
    return emitOpError() << "expects an even head dimension, but it is " << headDim << ".";
  if (!(getTheta().convertToDouble() > 0.0))
    return emitOpError() << "expects a positive theta.";
  return success();
}

LogicalResult AttentionOp::verify() {
  Checker c(*this);
  Value q = getQuery(), kc = getKeyCache(), vc = getValueCache();
  if (failed(c.rank(q, "the query", 3)) || failed(c.rank(kc, "the key cache", 3)))
    return failure();
  if (kc.getType() != vc.getType())
    return emitOpError() << "expects the key and value caches to have the same type.";
  if (getResult().getType() != q.getType())
    return emitOpError() << "expects the result to have the query's type.";
  if (!(getScale().convertToDouble() > 0.0))
    return emitOpError() << "expects a positive scale.";
  int64_t heads = dim(q, 1), kvHeads = dim(kc, 1);
  if (failed(c.isStatic("the number of query heads", heads)) ||
      failed(c.isStatic("the number of key/value heads", kvHeads)) ||
      failed(c.same("the key cache's head dimension", dim(kc, 2), "the query's head dimension",
                    dim(q, 2))))
    return failure();
  if (heads % kvHeads != 0)
    return emitOpError() << "expects the number of query heads (" << heads
                         << ") to be a multiple of the number of key/value heads ("
                         << kvHeads << ").";
  return success();
}

//===----------------------------------------------------------------------===//
// The batched step
//===----------------------------------------------------------------------===//

namespace {

/// Per-row operands of the step ops: `positions` [T] and, when given, `tables` [T, blocks]
/// with T equal to `rows`'s leading size.
LogicalResult checkRowOperands(Checker &c, Value rows, StringRef rowsName, Value positions,
                               Value tables) {
  if (failed(c.rank(positions, "the positions", 1)) ||
      failed(c.same("the number of positions", dim(positions, 0), rowsName, dim(rows, 0))))
    return failure();
  if (!tables)
    return success();
  return failure(failed(c.rank(tables, "the block tables", 2)) ||
                 failed(c.same("the number of block tables", dim(tables, 0), rowsName,
                               dim(rows, 0))));
}

/// A pool [n_blocks, B, KVH, HD] whose block size and head geometry are static.
LogicalResult checkPool(Checker &c, Value pool, StringRef name) {
  if (failed(c.rank(pool, name, 4)))
    return failure();
  return failure(failed(c.isStatic("the block size", dim(pool, 1))) ||
                 failed(c.isStatic("the number of key/value heads", dim(pool, 2))) ||
                 failed(c.isStatic("the head dimension", dim(pool, 3))));
}

} // namespace

LogicalResult RoPEAtOp::verify() {
  Checker c(*this);
  if (failed(c.rank(getInput(), "the input", 3)) ||
      failed(checkRowOperands(c, getInput(), "the number of input rows", getPositions(), {})))
    return failure();
  if (getResult().getType() != getInput().getType())
    return emitOpError() << "expects the result to have the input's type.";
  int64_t headDim = dim(getInput(), 2);
  if (failed(c.isStatic("the head dimension", headDim)))
    return failure();
  if (headDim % 2 != 0)
    return emitOpError() << "expects an even head dimension, but it is " << headDim << ".";
  if (!(getTheta().convertToDouble() > 0.0))
    return emitOpError() << "expects a positive theta.";
  return success();
}

LogicalResult PagedKVWriteOp::verify() {
  Checker c(*this);
  Value update = getUpdate(), pool = getPool();
  if (failed(c.rank(update, "the update", 3)) || failed(checkPool(c, pool, "the pool")) ||
      failed(checkRowOperands(c, update, "the number of update rows", getPositions(),
                              getBlockTables())))
    return failure();
  if (getResult().getType() != pool.getType())
    return emitOpError() << "expects the result to have the pool's type.";
  if (failed(c.sameElementType(update, "the update", pool, "the pool")))
    return failure();
  return failure(
      failed(c.same("the update's number of heads", dim(update, 1), "the pool's", dim(pool, 2))) ||
      failed(c.same("the update's head dimension", dim(update, 2), "the pool's", dim(pool, 3))));
}

LogicalResult PagedAttentionOp::verify() {
  Checker c(*this);
  Value q = getQuery(), kp = getKeyPool(), vp = getValuePool();
  if (failed(c.rank(q, "the query", 3)) || failed(checkPool(c, kp, "the key pool")) ||
      failed(checkRowOperands(c, q, "the number of query rows", getPositions(),
                              getBlockTables())))
    return failure();
  if (kp.getType() != vp.getType())
    return emitOpError() << "expects the key and value pools to have the same type.";
  if (getResult().getType() != q.getType())
    return emitOpError() << "expects the result to have the query's type.";
  if (!(getScale().convertToDouble() > 0.0))
    return emitOpError() << "expects a positive scale.";
  int64_t heads = dim(q, 1), kvHeads = dim(kp, 2);
  if (failed(c.isStatic("the number of query heads", heads)) ||
      failed(c.same("the key pool's head dimension", dim(kp, 3), "the query's head dimension",
                    dim(q, 2))))
    return failure();
  if (heads % kvHeads != 0)
    return emitOpError() << "expects the number of query heads (" << heads
                         << ") to be a multiple of the number of key/value heads ("
                         << kvHeads << ").";
  return success();
}

//===----------------------------------------------------------------------===//
// Canonicalisation
//===----------------------------------------------------------------------===//

namespace {

/// With k = 1 the softmax over the one selected logit is exactly 1: the weights become a
/// constant and the router logits only decide *which* expert runs.
struct TopOneGatingWeightsAreOne : OpRewritePattern<TopKGatingOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(TopKGatingOp op, PatternRewriter &rewriter) const override {
    if (op.getK() != 1 || op.getWeights().use_empty())
      return failure();
    Location loc = op.getLoc();
    auto type = cast<RankedTensorType>(op.getWeights().getType());
    SmallVector<Value> dynSizes;
    if (type.isDynamicDim(0))
      dynSizes.push_back(tensor::DimOp::create(rewriter, loc, op.getLogits(), 0));
    Value one = arith::ConstantOp::create(rewriter, loc, rewriter.getF32FloatAttr(1.0f));
    Value ones = tensor::SplatOp::create(rewriter, loc, one, Type(type), dynSizes);
    rewriter.replaceAllUsesWith(op.getWeights(), ones);
    return success();
  }
};

/// One expert means no routing at all: the block is a dense SwiGLU FFN with weight 1.
struct SingleExpertBlockIsDense : OpRewritePattern<SparseBlockOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(SparseBlockOp op, PatternRewriter &rewriter) const override {
    auto w1Type = cast<RankedTensorType>(op.getW1().getType());
    if (w1Type.getDimSize(0) != 1)
      return failure();
    Location loc = op.getLoc();
    // [1, N, K] -> [N, K]: drop the expert axis.
    auto dropExpertAxis = [&](Value w) -> Value {
      auto type = cast<RankedTensorType>(w.getType());
      auto flat = RankedTensorType::get(type.getShape().drop_front(), type.getElementType());
      return tensor::CollapseShapeOp::create(rewriter, loc, flat, w,
                                             ArrayRef<ReassociationIndices>{{0, 1}, {2}});
    };
    auto xType = cast<RankedTensorType>(op.getInput().getType());
    auto hType = RankedTensorType::get({xType.getDimSize(0), w1Type.getDimSize(1)},
                                       xType.getElementType());
    // Quantized experts keep their format: the scales lose the expert axis too.
    QuantAttr quant = op.getQuantAttr();
    auto linear = [&](Type type, Value x, Value w, Value scale) -> Value {
      return LinearOp::create(rewriter, loc, type, x, dropExpertAxis(w),
                              quant ? dropExpertAxis(scale) : Value(), quant);
    };
    Value gate = linear(hType, op.getInput(), op.getW1(), op.getW1Scale());
    Value up = linear(hType, op.getInput(), op.getW3(), op.getW3Scale());
    Value h = SwiGLUOp::create(rewriter, loc, hType, gate, up);
    rewriter.replaceOp(op, linear(op.getType(), h, op.getW2(), op.getW2Scale()));
    return success();
  }
};

} // namespace

void TopKGatingOp::getCanonicalizationPatterns(RewritePatternSet &results,
                                               MLIRContext *context) {
  results.add<TopOneGatingWeightsAreOne>(context);
}

void SparseBlockOp::getCanonicalizationPatterns(RewritePatternSet &results,
                                                MLIRContext *context) {
  results.add<SingleExpertBlockIsDense>(context);
}

//===----------------------------------------------------------------------===//
// moe.kernel_call
//===----------------------------------------------------------------------===//

LogicalResult KernelCallOp::verify() {
  if (getKernel().empty())
    return emitOpError("expects a kernel name, but it is empty.");
  if (getOutputs().empty())
    return emitOpError("expects at least one output, because a kernel call without outputs "
                       "computes nothing.");
  auto isBuffer = [](Value v) { return isa<BaseMemRefType>(v.getType()); };
  bool onBuffers = isBuffer(getOutputs().front());
  for (auto [i, out] : llvm::enumerate(getOutputs()))
    if (isBuffer(out) != onBuffers)
      return emitOpError("expects its outputs to be all tensors or all buffers, but output #")
             << i << " is a " << (onBuffers ? "tensor" : "buffer") << " and output #0 is not.";
  for (auto [i, in] : llvm::enumerate(getInputs())) {
    bool tensor = isa<TensorType>(in.getType());
    if ((onBuffers && tensor) || (!onBuffers && isBuffer(in)))
      return emitOpError("expects ") << (onBuffers ? "buffer" : "tensor")
             << " inputs because its outputs are " << (onBuffers ? "buffers" : "tensors")
             << ", but input #" << i << " is a " << (tensor ? "tensor" : "buffer") << ".";
  }
  return success();
}

/// On buffers the call reads its inputs and reads and writes its outputs (a partial update
/// keeps the rest); on tensors it has no side effects.
void KernelCallOp::getEffects(
    SmallVectorImpl<SideEffects::EffectInstance<MemoryEffects::Effect>> &effects) {
  for (OpOperand &in : getInputsMutable())
    if (isa<BaseMemRefType>(in.get().getType()))
      effects.emplace_back(MemoryEffects::Read::get(), &in, SideEffects::DefaultResource::get());
  for (OpOperand &out : getOutputsMutable()) {
    if (!isa<BaseMemRefType>(out.get().getType()))
      continue;
    effects.emplace_back(MemoryEffects::Read::get(), &out, SideEffects::DefaultResource::get());
    effects.emplace_back(MemoryEffects::Write::get(), &out, SideEffects::DefaultResource::get());
  }
}

#define GET_OP_CLASSES
#include "moec/Dialect/Moe/MoeOps.cpp.inc"
