//===- moe-decompose-sparse-block.cpp - moe.sparse_block -> routed steps --===//
//
// Precondition: none. Afterwards no moe.sparse_block remains; the block is the chain
// router -> top_k_gating -> dispatch -> gather_rows -> grouped_matmul x2 -> swiglu ->
// grouped_matmul -> combine, each op carrying its own static or dynamic shapes.
//
//===----------------------------------------------------------------------===//

#include "moec/Dialect/Moe/MoeOps.h"
#include "moec/Passes/Passes.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/WalkPatternRewriteDriver.h"

#define DEBUG_TYPE "moe-decompose-sparse-block"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEDECOMPOSESPARSEBLOCK
#include "moec/Passes/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

struct DecomposeSparseBlock : OpRewritePattern<SparseBlockOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(SparseBlockOp op, PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    auto xType = cast<RankedTensorType>(op.getInput().getType());
    auto w1Type = cast<RankedTensorType>(op.getW1().getType());
    Type f32 = rewriter.getF32Type(), i32 = rewriter.getI32Type();
    Type act = xType.getElementType();
    int64_t tokens = xType.getDimSize(0), modelDim = xType.getDimSize(1);
    int64_t numExperts = w1Type.getDimSize(0), ffnDim = w1Type.getDimSize(1);
    int64_t k = op.getK();
    int64_t rows = ShapedType::isDynamic(tokens) ? ShapedType::kDynamic : tokens * k;

    Value logits = RouterOp::create(rewriter, loc, RankedTensorType::get({tokens, numExperts}, f32),
                                    op.getInput(), op.getGateWeight());
    // logits: [T, E] f32
    auto gating = TopKGatingOp::create(rewriter, loc, RankedTensorType::get({tokens, k}, f32),
                                       RankedTensorType::get({tokens, k}, i32), logits, k);
    // weights: [T, k] f32, expert_ids: [T, k] i32
    auto dispatch = DispatchOp::create(rewriter, loc, RankedTensorType::get({rows}, i32),
                                       RankedTensorType::get({numExperts + 1}, i32),
                                       gating.getExpertIds(), numExperts);
    // permutation: [R] i32, expert_offsets: [E+1] i32
    Value gathered = GatherRowsOp::create(rewriter, loc, RankedTensorType::get({rows, modelDim}, act),
                                          op.getInput(), dispatch.getPermutation(), k);
    // gathered: [R, D]
    auto hType = RankedTensorType::get({rows, ffnDim}, act);
    // Quantized experts: each GEMM takes its weight's data, scales and the block's format.
    QuantAttr quant = op.getQuantAttr();
    Value gate = GroupedMatmulOp::create(rewriter, loc, hType, gathered, op.getW1(),
                                         dispatch.getExpertOffsets(), op.getW1Scale(), quant);
    Value up = GroupedMatmulOp::create(rewriter, loc, hType, gathered, op.getW3(),
                                       dispatch.getExpertOffsets(), op.getW3Scale(), quant);
    Value h = SwiGLUOp::create(rewriter, loc, hType, gate, up);
    // h: [R, F]
    Value down = GroupedMatmulOp::create(rewriter, loc, RankedTensorType::get({rows, modelDim}, act),
                                         h, op.getW2(), dispatch.getExpertOffsets(),
                                         op.getW2Scale(), quant);
    // down: [R, D]
    rewriter.replaceOpWithNewOp<CombineOp>(op, op.getType(), down, dispatch.getPermutation(),
                                           gating.getWeights());
    // result: [T, D]
    return success();
  }
};

struct MoeDecomposeSparseBlock
    : mlir::moe::impl::MoeDecomposeSparseBlockBase<MoeDecomposeSparseBlock> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<DecomposeSparseBlock>(&getContext());
    walkAndApplyPatterns(getOperation(), std::move(patterns));
  }
};

} // namespace
