//===- moe-gpu-expand-kernel-memrefs.cpp - the host/kernel launch ABI -----===//
//
// A memref kernel parameter becomes its base buffer (a 0-d memref: one pointer under the
// bare-pointer convention) plus one index per dynamic offset, size and stride, so that host
// (gpu-to-llvm with bare host pointers) and kernels (convert-gpu-to-nvvm with bare pointers)
// agree on every parameter, and a view's offset survives. See Passes.td.
//
// Both sides derive the list from the kernel parameter's type alone (expansionOf), so they
// cannot disagree on the order, whatever static information a launch operand's type adds.
//
//===----------------------------------------------------------------------===//

#include "moec/Codegen/GPU/Passes.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/SymbolTable.h"

#define DEBUG_TYPE "moe-gpu-expand-kernel-memrefs"

namespace mlir::moe::gpu {
#define GEN_PASS_DEF_MOEGPUEXPANDKERNELMEMREFS
#include "moec/Codegen/GPU/Passes.h.inc"
} // namespace mlir::moe::gpu

using namespace mlir;

namespace {

/// What a memref parameter of type `t` is passed as: the base buffer type, then which of
/// offset / sizes / strides are dynamic (those are the extra index parameters, in this order).
struct Expansion {
  MemRefType base;
  bool offset = false;
  SmallVector<unsigned> sizes, strides; // dimensions with a dynamic size / stride
  unsigned count() const { return 1 + offset + sizes.size() + strides.size(); }
};

FailureOr<Expansion> expansionOf(MemRefType t) {
  SmallVector<int64_t> strides;
  int64_t offset;
  if (failed(t.getStridesAndOffset(strides, offset)))
    return failure();
  Expansion e;
  e.base = MemRefType::get({}, t.getElementType(), MemRefLayoutAttrInterface(),
                           t.getMemorySpace());
  e.offset = ShapedType::isDynamic(offset);
  for (unsigned d = 0; d < t.getRank(); ++d) {
    if (t.isDynamicDim(d))
      e.sizes.push_back(d);
    if (ShapedType::isDynamic(strides[d]))
      e.strides.push_back(d);
  }
  return e;
}

/// Rewrites one kernel's signature; returns false (with a diagnostic) on an unsupported type.
bool expandKernel(::mlir::gpu::GPUFuncOp fn) {
  MLIRContext *ctx = fn.getContext();
  Block &entry = fn.getBody().front();
  unsigned numInputs = fn.getFunctionType().getNumInputs();
  SmallVector<Type> inputs;
  OpBuilder b = OpBuilder::atBlockBegin(&entry);
  // Walk the original parameters; `pos` is the block-argument index of the current one.
  unsigned pos = 0;
  for (unsigned i = 0; i < numInputs; ++i) {
    BlockArgument arg = entry.getArgument(pos);
    auto t = dyn_cast<MemRefType>(arg.getType());
    if (!t) {
      inputs.push_back(arg.getType());
      ++pos;
      continue;
    }
    FailureOr<Expansion> e = expansionOf(t);
    if (failed(e)) {
      fn.emitOpError("kernel parameter ")
          << i << " of type " << t
          << " has no strided layout, so it cannot be passed as a pointer and its metadata.";
      return false;
    }
    Location loc = arg.getLoc();
    SmallVector<BlockArgument> parts;
    for (unsigned k = 0; k < e->count(); ++k) {
      Type pt = k == 0 ? Type(e->base) : Type(IndexType::get(ctx));
      parts.push_back(entry.insertArgument(pos + k, pt, loc));
      inputs.push_back(pt);
    }
    SmallVector<int64_t> staticStrides;
    int64_t staticOffset;
    (void)t.getStridesAndOffset(staticStrides, staticOffset);
    unsigned next = 1;
    OpFoldResult offset = e->offset ? OpFoldResult(parts[next++]) : b.getIndexAttr(staticOffset);
    SmallVector<OpFoldResult> sizes, strides;
    for (unsigned d = 0; d < t.getRank(); ++d)
      sizes.push_back(t.isDynamicDim(d) ? OpFoldResult(parts[next++])
                                        : OpFoldResult(b.getIndexAttr(t.getDimSize(d))));
    for (unsigned d = 0; d < t.getRank(); ++d)
      strides.push_back(ShapedType::isDynamic(staticStrides[d])
                            ? OpFoldResult(parts[next++])
                            : OpFoldResult(b.getIndexAttr(staticStrides[d])));
    Value view = memref::ReinterpretCastOp::create(b, loc, t, parts[0], offset, sizes, strides);
    BlockArgument old = entry.getArgument(pos + e->count());
    old.replaceAllUsesWith(view);
    entry.eraseArgument(pos + e->count());
    pos += e->count();
  }
  fn.setFunctionTypeAttr(
      TypeAttr::get(FunctionType::get(ctx, inputs, fn.getFunctionType().getResults())));
  fn.removeArgAttrsAttr();
  return true;
}

struct MoeGpuExpandKernelMemrefs
    : mlir::moe::gpu::impl::MoeGpuExpandKernelMemrefsBase<MoeGpuExpandKernelMemrefs> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    // Launches first, while the kernels still have their memref signatures.
    WalkResult r = module.walk([&](::mlir::gpu::LaunchFuncOp launch) {
      auto kernel =
          SymbolTable::lookupNearestSymbolFrom<::mlir::gpu::GPUFuncOp>(launch, launch.getKernel());
      if (!kernel) {
        launch.emitOpError("launches ") << launch.getKernel() << ", which is not a gpu.func here.";
        return WalkResult::interrupt();
      }
      if (kernel.getFunctionType().getNumInputs() != launch.getNumKernelOperands()) {
        launch.emitOpError("passes ") << launch.getNumKernelOperands() << " operands to a kernel of "
                                      << kernel.getFunctionType().getNumInputs() << " parameters.";
        return WalkResult::interrupt();
      }
      OpBuilder b(launch);
      SmallVector<Value> operands;
      for (auto [v, param] :
           llvm::zip_equal(launch.getKernelOperands(), kernel.getFunctionType().getInputs())) {
        auto t = dyn_cast<MemRefType>(param);
        if (!t) {
          operands.push_back(v);
          continue;
        }
        FailureOr<Expansion> e = expansionOf(t);
        if (failed(e)) {
          launch.emitOpError("kernel operand of type ")
              << t << " has no strided layout, so it cannot be passed as a pointer and its metadata.";
          return WalkResult::interrupt();
        }
        auto md = memref::ExtractStridedMetadataOp::create(b, launch.getLoc(), v);
        operands.push_back(md.getBaseBuffer());
        if (e->offset)
          operands.push_back(md.getOffset());
        for (unsigned d : e->sizes)
          operands.push_back(md.getSizes()[d]);
        for (unsigned d : e->strides)
          operands.push_back(md.getStrides()[d]);
      }
      launch.getKernelOperandsMutable().assign(operands);
      return WalkResult::advance();
    });
    if (r.wasInterrupted())
      return signalPassFailure();
    module.walk([&](::mlir::gpu::GPUFuncOp fn) {
      if (fn.isKernel() && !expandKernel(fn))
        signalPassFailure();
    });
  }
};

} // namespace
