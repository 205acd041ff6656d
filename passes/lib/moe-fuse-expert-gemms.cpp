//===- moe-fuse-expert-gemms.cpp - routed expert steps -> fused kernels ---===//
//
// Precondition: the routed form of `--moe-decompose-sparse-block`. Rewrites
//
//   gather_rows -> grouped_matmul(w1), grouped_matmul(w3) -> swiglu   into moe.grouped_swiglu
//   grouped_matmul(w2) -> combine                                  into moe.grouped_matmul_combine
//
// only where every intermediate (gathered rows, the two GEMM outputs, the down projection)
// has no use outside the chain being fused, and both GEMMs of the first chain read the same
// rows with the same expert offsets. Anything else is left as it is.
//
//===----------------------------------------------------------------------===//

#include "moec/Dialect/Moe/MoeOps.h"
#include "moec/Passes/Passes.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

#define DEBUG_TYPE "moe-fuse-expert-gemms"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEFUSEEXPERTGEMMS
#include "moec/Passes/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// swiglu(grouped_matmul(gather_rows(x), w1), grouped_matmul(gather_rows(x), w3))
///   -> grouped_swiglu(x, perm, offsets, w1, w3)
struct FuseGatherGateUp : OpRewritePattern<SwiGLUOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(SwiGLUOp op, PatternRewriter &rewriter) const override {
    auto gate = op.getGate().getDefiningOp<GroupedMatmulOp>();
    auto up = op.getUp().getDefiningOp<GroupedMatmulOp>();
    if (!gate || !up || gate == up || !gate->hasOneUse() || !up->hasOneUse())
      return rewriter.notifyMatchFailure(op, "operands are not two single-use grouped GEMMs");
    if (gate.getRows() != up.getRows() || gate.getExpertOffsets() != up.getExpertOffsets())
      return rewriter.notifyMatchFailure(op, "the GEMMs read different rows or offsets");
    if (gate.getQuantAttr() != up.getQuantAttr())
      return rewriter.notifyMatchFailure(op, "the gate and up weights have different formats");
    auto gather = gate.getRows().getDefiningOp<GatherRowsOp>();
    if (!gather)
      return rewriter.notifyMatchFailure(op, "the rows are not gathered");
    for (Operation *user : gather->getUsers())
      if (user != gate.getOperation() && user != up.getOperation())
        return rewriter.notifyMatchFailure(op, "the gathered rows have other uses");
    if (cast<ShapedType>(gather.getType()).getElementType() !=
        cast<ShapedType>(gather.getInput().getType()).getElementType())
      return rewriter.notifyMatchFailure(op, "the gather converts the element type");
    rewriter.replaceOpWithNewOp<GroupedSwiGLUOp>(op, op.getType(), gather.getInput(),
                                                 gather.getPermutation(), gate.getExpertOffsets(),
                                                 gate.getWeights(), up.getWeights(),
                                                 gate.getWeightsScale(), up.getWeightsScale(),
                                                 gather.getK(), gate.getQuantAttr());
    rewriter.eraseOp(gate);
    rewriter.eraseOp(up);
    rewriter.eraseOp(gather);
    return success();
  }
};

/// combine(grouped_matmul(h, w2), perm, weights) -> grouped_matmul_combine(h, w2, ...)
struct FuseDownCombine : OpRewritePattern<CombineOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(CombineOp op, PatternRewriter &rewriter) const override {
    auto down = op.getExpertOut().getDefiningOp<GroupedMatmulOp>();
    if (!down || !down->hasOneUse())
      return rewriter.notifyMatchFailure(op, "the expert outputs are not a single-use grouped GEMM");
    rewriter.replaceOpWithNewOp<GroupedMatmulCombineOp>(
        op, op.getType(), down.getRows(), down.getWeights(), down.getExpertOffsets(),
        op.getPermutation(), op.getRoutingWeights(), down.getWeightsScale(), down.getQuantAttr());
    rewriter.eraseOp(down);
    return success();
  }
};

struct MoeFuseExpertGemms : mlir::moe::impl::MoeFuseExpertGemmsBase<MoeFuseExpertGemms> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseGatherGateUp, FuseDownCombine>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
