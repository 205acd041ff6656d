//===- LaunchBuilder.h - moe-gpu-lower-kernel-calls' rules and their builder -*- C++ -*-===//
//
// moe-gpu-lower-kernel-calls turns the bufferized host code of an entry function into launches
// of the kernel library on one stream, one rule per op (or per kernel name), grouped by family:
//
//   populateMemoryLaunchRules   memref.alloc / dealloc (stream-ordered gpu.alloc / dealloc),
//                               memref.copy and linalg.add (the copy and add kernels),
//                               func.return (waits for the stream)
//   populateDenseLaunchRules    "embedding", "rms_norm", "linear", "router", "rope", "attention"
//   populateRoutingLaunchRules  "top_k_gating", "dispatch"
//   populateExpertLaunchRules   "grouped_swiglu", "grouped_matmul_combine"
//   populateStepLaunchRules     "rope_at", "paged_kv_write", "paged_attention", "gather_rows"
//                               (moec_step; launches/Step.cpp)
//
// A kernel rule reads the buffers of a memref-typed moe.kernel_call (its `ins`, `outs` and
// `params`, in the order moe-gpu-form-kernel-calls gives them; upstream one-shot-bufferize
// placed every buffer) and launches kernels (`launch`, `matmul`) before it; the lowering then
// erases the call. Adding a kernel family is one rule here, its case in
// moe-gpu-form-kernel-calls and its kernel builder in codegen/gpu/kernels/.
//
//===----------------------------------------------------------------------===//
#ifndef MOEC_CODEGEN_GPU_LAUNCHBUILDER_H
#define MOEC_CODEGEN_GPU_LAUNCHBUILDER_H

#include "Kernels.h"
#include "Tiles.h"
#include "moec/Dialect/Moe/MoeOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/BuiltinOps.h"

#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/StringMap.h"

#include <array>
#include <functional>

namespace mlir::moe::gpu {

class LaunchBuilder;

/// The rule for each host op type and for each kernel name this lowering knows.
class LaunchRules {
public:
  using Rule = std::function<LogicalResult(LaunchBuilder &, Operation *)>;
  template <typename OpTy> void add(std::function<LogicalResult(LaunchBuilder &, OpTy)> rule) {
    rules[TypeID::get<OpTy>()] = [rule](LaunchBuilder &l, Operation *op) {
      return rule(l, cast<OpTy>(op));
    };
  }
  /// The rule for `moe.kernel_call "kernel"`.
  void addKernel(StringRef kernel, std::function<LogicalResult(LaunchBuilder &, KernelCallOp)> rule) {
    kernelRules[kernel] = [rule](LaunchBuilder &l, Operation *op) {
      return rule(l, cast<KernelCallOp>(op));
    };
  }
  const Rule *lookup(Operation *op) const {
    if (auto call = dyn_cast<KernelCallOp>(op)) {
      auto it = kernelRules.find(call.getKernel());
      return it == kernelRules.end() ? nullptr : &it->second;
    }
    std::optional<RegisteredOperationName> name = op->getRegisteredInfo();
    if (!name)
      return nullptr;
    auto it = rules.find(name->getTypeID());
    return it == rules.end() ? nullptr : &it->second;
  }

private:
  llvm::DenseMap<TypeID, Rule> rules;
  llvm::StringMap<Rule> kernelRules;
};

void populateMemoryLaunchRules(LaunchRules &rules);
/// Makes the static temporaries of `f`'s entry block views of one device arena, allocated
/// after the stream and freed at each return (launches/Memory.cpp).
void packArena(LaunchBuilder &l, func::FuncOp f);
void populateDenseLaunchRules(LaunchRules &rules);
void populateRoutingLaunchRules(LaunchRules &rules);
void populateExpertLaunchRules(LaunchRules &rules);
void populateStepLaunchRules(LaunchRules &rules);

/// A kernel call's static parameters (moe-gpu-form-kernel-calls copies the moe op's
/// attributes into `params`; the verifier of that op checked them).
inline int64_t intParam(KernelCallOp call, StringRef name) {
  return cast<IntegerAttr>(call.getParamsAttr().get(name)).getInt();
}
inline double floatParam(KernelCallOp call, StringRef name) {
  return cast<FloatAttr>(call.getParamsAttr().get(name)).getValueAsDouble();
}
/// An optional integer parameter (sliding_window), 0 when absent.
inline int64_t intParamOr0(KernelCallOp call, StringRef name) {
  DictionaryAttr params = call.getParamsAttr();
  Attribute a = params ? params.get(name) : Attribute();
  return a ? cast<IntegerAttr>(a).getInt() : 0;
}
/// The call's quantized weight format, null for float weights.
inline QuantAttr quantParam(KernelCallOp call) {
  DictionaryAttr params = call.getParamsAttr();
  return params ? dyn_cast_or_null<QuantAttr>(params.get("quant")) : QuantAttr();
}

/// The kernel parameter type for a buffer: same rank and element type, every size dynamic,
/// unit innermost stride, dynamic outer strides and offset.
inline MemRefType kernelType(MemRefType t) {
  int64_t rank = t.getRank();
  SmallVector<int64_t> shape(rank, ShapedType::kDynamic);
  SmallVector<int64_t> strides(rank, ShapedType::kDynamic);
  if (rank)
    strides.back() = 1;
  auto layout = StridedLayoutAttr::get(t.getContext(), ShapedType::kDynamic, strides);
  return MemRefType::get(shape, t.getElementType(), layout, t.getMemorySpace());
}

/// The scales and format of a quantized matmul's weights (W and, fused, W3); all null for
/// float weights.
struct QuantWeights {
  Value scale, scale3;
  QuantAttr quant;
};

/// One entry function's lowering: the builder, the stream, and the small builders every rule
/// uses.
class LaunchBuilder {
public:
  LaunchBuilder(::mlir::gpu::GPUModuleOp kernels, const LaunchRules &rules)
      : kernels(kernels), rules(rules), b(kernels.getContext()) {}

  /// Lowers `f` in place: afterwards it holds no moe op, no host memref.alloc / dealloc /
  /// copy and no linalg op; every computation is a launch on the function's stream.
  LogicalResult lowerFunc(func::FuncOp f);

  Value idx(int64_t v) { return arith::ConstantIndexOp::create(b, loc, v); }
  Value f32(double v) {
    return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(static_cast<float>(v)));
  }
  Value mul(Value a, Value c) { return arith::MulIOp::create(b, loc, a, c); }
  Value add(Value a, Value c) { return arith::AddIOp::create(b, loc, a, c); }
  Value ceilDiv(Value a, int64_t c) { return arith::CeilDivUIOp::create(b, loc, a, idx(c)); }
  Value dim(Value m, int64_t i) {
    auto t = cast<MemRefType>(m.getType());
    if (!t.isDynamicDim(i))
      return idx(t.getDimSize(i));
    return memref::DimOp::create(b, loc, m, i);
  }
  Value numel(Value m) {
    Value n = idx(1);
    for (int64_t i = 0; i < cast<MemRefType>(m.getType()).getRank(); ++i)
      n = mul(n, dim(m, i));
    return n;
  }
  Value arg(Value m) {
    auto t = cast<MemRefType>(m.getType());
    MemRefType k = kernelType(t);
    if (t == k)
      return m;
    return memref::CastOp::create(b, loc, k, m);
  }
  Type tokenType() { return ::mlir::gpu::AsyncTokenType::get(b.getContext()); }
  void launch(StringRef kernel, std::array<Value, 3> grid, int64_t threads, ValueRange args) {
    auto fn = kernels.lookupSymbol<::mlir::gpu::GPUFuncOp>(kernel);
    assert(fn && "kernel missing from the library");
    ::mlir::gpu::LaunchFuncOp::create(b, loc, fn,
                                      ::mlir::gpu::KernelDim3{grid[0], grid[1], grid[2]},
                                      ::mlir::gpu::KernelDim3{idx(threads), idx(1), idx(1)},
                                      Value(), args, tokenType(), ValueRange{stream});
  }
  /// A 1-D view of a contiguous buffer (identity layout).
  Value flat(Value m) {
    auto t = cast<MemRefType>(m.getType());
    if (t.getRank() == 1)
      return m;
    ReassociationIndices all;
    for (int64_t i = 0; i < t.getRank(); ++i)
      all.push_back(i);
    return memref::CollapseShapeOp::create(b, loc, m, ArrayRef<ReassociationIndices>{all});
  }
  void copy(Value src, Value dst, Value n) {
    launch("copy", {ceilDiv(n, Tiles::elementwiseThreads), idx(1), idx(1)},
           Tiles::elementwiseThreads, {arg(flat(src)), arg(flat(dst)), n});
  }
  Value dummyI32() {
    if (!dummy) {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointAfter(stream.getDefiningOp());
      auto op =
          ::mlir::gpu::AllocOp::create(b, loc, MemRefType::get({1}, b.getI32Type()), tokenType(),
                                       ValueRange{stream}, ValueRange{}, ValueRange{}, false);
      dummy = op.getMemref(); // freed before each return (launches/Memory.cpp)
    }
    return dummy;
  }
  /// A weight of rank 2 viewed as rank 3 ([1, N, K]) for the grouped kernels.
  Value asGrouped(Value w) {
    auto t = cast<MemRefType>(w.getType());
    if (t.getRank() == 3)
      return w;
    SmallVector<int64_t> shape = {1, t.getDimSize(0), t.getDimSize(1)};
    SmallVector<ReassociationIndices> re = {{0, 1}, {2}};
    auto type = memref::ExpandShapeOp::computeExpandedType(t, shape, re);
    SmallVector<OpFoldResult> out = {b.getIndexAttr(1), b.getIndexAttr(shape[1]),
                                     b.getIndexAttr(shape[2])};
    return memref::ExpandShapeOp::create(b, loc, *type, w, re, out);
  }

  /// out[M, N] = A[rows] · W[g]ᵀ (grouped when `offsets`), choosing GEMV or mma.sync; the
  /// kernels' variant for `q`'s format when the weights are quantized (data + scales).
  void matmul(Value a, Value w, Value w3, Value out, Value offsets, Value perm, Value groups,
              Value rows, Value n, Value k, int64_t gather, int64_t kdiv, bool gemv,
              Value maxTiles, const QuantWeights &q = {}) {
    SmallVector<Value> args = {arg(a), arg(asGrouped(w))};
    if (q.quant)
      args.push_back(arg(asGrouped(q.scale)));
    if (w3)
      args.push_back(arg(asGrouped(w3)));
    if (w3 && q.quant)
      args.push_back(arg(asGrouped(q.scale3)));
    args.append({arg(out), arg(offsets ? offsets : dummyI32()), arg(perm ? perm : dummyI32()),
                 groups, rows, n, k, idx(gather), idx(kdiv)});
    if (gemv) {
      launch(weightKernelName(w3 ? "gemv_swiglu" : "gemv", q.quant),
             {ceilDiv(n, Tiles::gemvCols), rows, idx(1)}, Tiles::gemvThreads, args);
      return;
    }
    // sm_90a: the warpgroup GEMM when the library has it and K is a static multiple of 8
    // (it stages 16-byte chunks only); its tiles are wgmmaBM rows, one more per group.
    std::string wg = weightKernelName(w3 ? "gemm_wgmma_swiglu" : "gemm_wgmma", q.quant);
    std::optional<int64_t> kc = getConstantIntValue(k);
    if (kc && *kc % Tiles::gemmStageVector == 0 && kernels.lookupSymbol(wg)) {
      launch(wg, {ceilDiv(n, Tiles::wgmmaBN), add(ceilDiv(rows, Tiles::wgmmaBM), groups), idx(1)},
             Tiles::wgmmaThreads, args);
      return;
    }
    launch(weightKernelName(w3 ? "gemm_mma_swiglu" : "gemm_mma", q.quant),
           {ceilDiv(n, Tiles::gemmBN), maxTiles ? maxTiles : ceilDiv(rows, Tiles::gemmBM), idx(1)},
           Tiles::gemmThreads, args);
  }

  /// Decode: one token, a static row count (GEMV kernels); prefill: dynamic (mma.sync).
  bool isDecode(Value rows) { return !cast<MemRefType>(rows.getType()).isDynamicDim(0); }
  /// Row tiles of a grouped GEMM over R rows and E experts: every expert may start a tile.
  Value maxGroupedTiles(Value R, int64_t E) { return add(ceilDiv(R, Tiles::gemmBM), idx(E)); }

  ::mlir::gpu::GPUModuleOp kernels;
  const LaunchRules &rules;
  OpBuilder b;
  Location loc = b.getUnknownLoc();
  Value stream; // the entry's `gpu.wait async`: every op of the function is ordered on it
  Value dummy;  // a 1-element i32 buffer for the unused offsets / permutation of a GEMM
  Value arena;  // the static temporaries' device buffer (packArena), null if none
};

} // namespace mlir::moe::gpu

#endif // MOEC_CODEGEN_GPU_LAUNCHBUILDER_H
