//===- moe-gpu-form-kernel-calls.cpp - moe ops -> destination-style kernel calls ----===//
//
// Preconditions: the shared middle end's output (moe ops on tensors, the MoE block as the
// fused routed ops).
//
// Each moe op the GPU kernel library implements becomes one `moe.kernel_call` named after
// it, with a `tensor.empty` output per result and one per scratch buffer its kernels write
// (Passes.td lists them). That is the step that lets upstream one-shot bufferization place
// every device buffer of the GPU path: after it, the tensors of an entry function are
// produced only by destination-style ops, views, reshapes and upstream ops that bufferize
// themselves. A residual linalg.add over a tensor.empty takes its left operand as destination
// (the add does not read its output), so that bufferization updates the residual stream in
// place where that operand is dead afterwards, as a hand-placed buffer would be.
//
// Afterwards: no moe op but moe.kernel_call; everything else but those adds is untouched.
//
//===----------------------------------------------------------------------===//

#include "moec/Codegen/GPU/Passes.h"
#include "moec/Dialect/Moe/MoeOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/IR/PatternMatch.h"

#include "llvm/ADT/TypeSwitch.h"

#define DEBUG_TYPE "moe-gpu-form-kernel-calls"

namespace mlir::moe::gpu {
#define GEN_PASS_DEF_MOEGPUFORMKERNELCALLS
#include "moec/Codegen/GPU/Passes.h.inc"
} // namespace mlir::moe::gpu

using namespace mlir;

namespace {

/// One kernel call being formed: its inputs, outputs and parameters, built at `op`.
struct CallBuilder {
  CallBuilder(IRRewriter &rewriter, Operation *op) : r(rewriter), op(op), loc(op->getLoc()) {
    r.setInsertionPoint(op);
    for (NamedAttribute a : op->getAttrs())
      if (a.getName() != "operandSegmentSizes")
        params.push_back(a);
  }

  /// Size `i` of `tensor` when it is dynamic (null when static: nothing to pass).
  Value dim(Value tensor, int64_t i) {
    if (!cast<RankedTensorType>(tensor.getType()).isDynamicDim(i))
      return Value();
    return tensor::DimOp::create(r, loc, tensor, i);
  }
  /// Size `i` of `tensor`, static or not.
  Value size(Value tensor, int64_t i) {
    auto type = cast<RankedTensorType>(tensor.getType());
    if (type.isDynamicDim(i))
      return tensor::DimOp::create(r, loc, tensor, i);
    return arith::ConstantIndexOp::create(r, loc, type.getDimSize(i));
  }
  /// An output of `type` whose leading size, when dynamic, is `rows`.
  void out(RankedTensorType type, Value rows) {
    SmallVector<Value> dyn;
    if (type.getRank() && type.isDynamicDim(0))
      dyn.push_back(rows);
    outs.push_back(tensor::EmptyOp::create(r, loc, type, dyn));
  }
  /// Outputs for every result of `op`, all with `rows` leading rows.
  void results(Value rows) {
    for (Type t : op->getResultTypes())
      out(cast<RankedTensorType>(t), rows);
  }
  /// Replaces `op` by the call; returns it.
  moe::KernelCallOp finish() {
    StringRef kernel = op->getName().stripDialect();
    auto call = moe::KernelCallOp::create(r, loc, ValueRange(outs).getTypes(), kernel, ins, outs,
                                          params.empty() ? DictionaryAttr()
                                                         : r.getDictionaryAttr(params));
    r.replaceOp(op, call.getResults().take_front(op->getNumResults()));
    return call;
  }

  IRRewriter &r;
  Operation *op;
  Location loc;
  SmallVector<Value> ins, outs;
  SmallVector<NamedAttribute> params;
};

/// The common case: every operand in, one output per result with the leading size of
/// operand `rowSource`.
LogicalResult formRowwise(IRRewriter &r, Operation *op, unsigned rowSource) {
  CallBuilder c(r, op);
  c.ins.append(op->operand_begin(), op->operand_end());
  c.results(c.dim(op->getOperand(rowSource), 0));
  c.finish();
  return success();
}

/// perm [R], offsets [E+1], and the inverse permutation [R] the combine reads.
LogicalResult formDispatch(IRRewriter &r, moe::DispatchOp d) {
  CallBuilder c(r, d);
  Value ids = d.getExpertIds();
  c.ins.push_back(ids);
  Value R; // R = T * k, needed only when T is dynamic
  if (cast<RankedTensorType>(d.getPermutation().getType()).isDynamicDim(0))
    R = arith::MulIOp::create(r, d.getLoc(), c.size(ids, 0), c.size(ids, 1));
  c.results(R);
  c.out(cast<RankedTensorType>(d.getPermutation().getType()), R);
  c.finish();
  return success();
}

/// The grouped down GEMM's rows [R, D] and the routing-weighted combine [T, D]; reads the
/// inverse permutation that the permutation's dispatch wrote.
LogicalResult formCombine(IRRewriter &r, moe::GroupedMatmulCombineOp g) {
  auto dispatch = g.getPermutation().getDefiningOp<moe::KernelCallOp>();
  if (!dispatch || dispatch.getKernel() != "dispatch")
    return g.emitOpError("needs a permutation made by moe.dispatch on the GPU path (the "
                         "combine kernel reads the dispatch kernel's inverse permutation).");
  CallBuilder c(r, g);
  c.ins.append(g->operand_begin(), g->operand_end());
  c.ins.push_back(dispatch.getResult(2));
  c.results(c.dim(g.getRoutingWeights(), 0));
  auto rows = cast<RankedTensorType>(g.getRows().getType());
  int64_t D = cast<RankedTensorType>(g.getType()).getDimSize(1);
  c.out(RankedTensorType::get({rows.getDimSize(0), D}, rows.getElementType()),
        c.dim(g.getRows(), 0));
  c.finish();
  return success();
}

/// The split-KV partial results: [splits * T * H, HD + 2] f32, `split` keys per split on
/// the decode path (static T: sized for the whole cache S), one split otherwise.
LogicalResult formAttention(IRRewriter &r, moe::AttentionOp a, int64_t split) {
  CallBuilder c(r, a);
  c.ins.append(a->operand_begin(), a->operand_end());
  Value T = c.dim(a.getQuery(), 0);
  c.results(T);
  auto q = cast<RankedTensorType>(a.getQuery().getType());
  int64_t S = cast<RankedTensorType>(a.getKeyCache().getType()).getDimSize(0);
  int64_t H = q.getDimSize(1), HD = q.getDimSize(2);
  Type f32 = r.getF32Type();
  bool decode = !q.isDynamicDim(0);
  if (decode && !ShapedType::isDynamic(S)) {
    int64_t splits = (S + split - 1) / split;
    c.out(RankedTensorType::get({splits * q.getDimSize(0) * H, HD + 2}, f32), Value());
  } else {
    Value rows =
        arith::MulIOp::create(r, a.getLoc(), T ? T : c.size(a.getQuery(), 0),
                              arith::ConstantIndexOp::create(r, a.getLoc(), H));
    c.out(RankedTensorType::get({ShapedType::kDynamic, HD + 2}, f32), rows);
  }
  c.params.push_back(r.getNamedAttr("split", r.getI64IntegerAttr(decode ? split : S)));
  c.finish();
  return success();
}

/// In place into the pool: the pool is the output.
LogicalResult formPagedKVWrite(IRRewriter &r, moe::PagedKVWriteOp w) {
  CallBuilder c(r, w);
  c.ins = {w.getUpdate(), w.getBlockTables(), w.getPositions()};
  c.outs.push_back(w.getPool());
  c.finish();
  return success();
}

LogicalResult form(IRRewriter &r, Operation *op, int64_t split) {
  return TypeSwitch<Operation *, LogicalResult>(op)
      .Case<moe::EmbeddingOp>([&](auto e) { return formRowwise(r, e, /*ids=*/1); })
      .Case<moe::RMSNormOp, moe::LinearOp, moe::RouterOp, moe::RoPEOp, moe::RoPEAtOp,
            moe::PagedAttentionOp, moe::TopKGatingOp>(
          [&](Operation *o) { return formRowwise(r, o, 0); })
      .Case<moe::GroupedSwiGLUOp, moe::GatherRowsOp>(
          [&](Operation *o) { return formRowwise(r, o, /*permutation=*/1); })
      .Case<moe::DispatchOp>([&](auto d) { return formDispatch(r, d); })
      .Case<moe::GroupedMatmulCombineOp>([&](auto g) { return formCombine(r, g); })
      .Case<moe::AttentionOp>([&](auto a) { return formAttention(r, a, split); })
      .Case<moe::PagedKVWriteOp>([&](auto w) { return formPagedKVWrite(r, w); })
      .Default([](Operation *o) {
        return o->emitOpError("has no GPU kernel (the GPU path lowers the fused routed ops: "
                              "run moe-decompose-sparse-block and moe-fuse-expert-gemms first).");
      });
}

struct MoeGpuFormKernelCalls
    : mlir::moe::gpu::impl::MoeGpuFormKernelCallsBase<MoeGpuFormKernelCalls> {
  using Base::Base;

  void runOnOperation() override {
    if (attentionSplit < 1) {
      getOperation().emitError("expects attention-split >= 1, but it is ") << attentionSplit
                                                                           << ".";
      return signalPassFailure();
    }
    SmallVector<Operation *> ops;
    getOperation().walk([&](Operation *op) {
      if (isa<moe::MoeDialect>(op->getDialect()) && !isa<moe::KernelCallOp>(op))
        ops.push_back(op);
    });
    IRRewriter rewriter(&getContext());
    for (Operation *op : ops) // program order: a dispatch is formed before its combine
      if (failed(form(rewriter, op, attentionSplit)))
        return signalPassFailure();
    // out = lhs + rhs needs no buffer of its own where lhs is dead afterwards: say so with
    // lhs as the destination (one-shot-bufferize copies nothing for it, as add's payload
    // does not read the output, and allocates where lhs is still read).
    getOperation().walk([](linalg::AddOp add) {
      Value lhs = add.getInputs()[0];
      OpOperand &init = add.getDpsInitsMutable()[0];
      if (init.get().getDefiningOp<tensor::EmptyOp>() && lhs.getType() == init.get().getType())
        init.set(lhs);
    });
  }
};

} // namespace
