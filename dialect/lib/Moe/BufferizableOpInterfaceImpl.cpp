//===- BufferizableOpInterfaceImpl.cpp - moe.kernel_call under bufferization ---===//
//
// moe.kernel_call is destination style: inputs are read, outputs are read (a kernel may
// update only part of one, as paged_kv_write does) and written, and each output is
// equivalent to its result. The upstream DPS model states exactly that; bufferize() swaps
// every tensor operand for its buffer and the results for the output buffers.
//
//===----------------------------------------------------------------------===//

#include "moec/Dialect/Moe/BufferizableOpInterfaceImpl.h"
#include "moec/Dialect/Moe/MoeDialect.h"
#include "moec/Dialect/Moe/MoeOps.h"

#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Bufferization/IR/DstBufferizableOpInterfaceImpl.h"
#include "mlir/IR/DialectRegistry.h"

using namespace mlir;
using namespace mlir::bufferization;

namespace {

struct KernelCallOpInterface
    : public DstBufferizableOpInterfaceExternalModel<KernelCallOpInterface,
                                                     moe::KernelCallOp> {
  LogicalResult bufferize(Operation *op, RewriterBase &rewriter,
                          const BufferizationOptions &options,
                          BufferizationState &state) const {
    auto call = cast<moe::KernelCallOp>(op);
    auto buffers = [&](ValueRange values, SmallVector<Value> &out) -> LogicalResult {
      for (Value v : values) {
        if (!isa<TensorType>(v.getType())) {
          out.push_back(v); // a scalar
          continue;
        }
        FailureOr<Value> buffer = getBuffer(rewriter, v, options, state);
        if (failed(buffer))
          return failure();
        out.push_back(*buffer);
      }
      return success();
    };
    SmallVector<Value> inputs, outputs;
    if (failed(buffers(call.getInputs(), inputs)) || failed(buffers(call.getOutputs(), outputs)))
      return failure();
    rewriter.setInsertionPoint(op);
    moe::KernelCallOp::create(rewriter, op->getLoc(), TypeRange{}, call.getKernel(), inputs,
                              outputs, call.getParamsAttr());
    replaceOpWithBufferizedValues(rewriter, op, outputs);
    return success();
  }
};

} // namespace

void mlir::moe::registerBufferizableOpInterfaceExternalModels(DialectRegistry &registry) {
  registry.addExtension(+[](MLIRContext *ctx, moe::MoeDialect *) {
    moe::KernelCallOp::attachInterface<KernelCallOpInterface>(*ctx);
  });
}
