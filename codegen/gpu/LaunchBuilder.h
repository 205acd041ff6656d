//===- LaunchBuilder.h - moe-gpu-lower-to-launches' rules and their builder -*- C++ -*-===//
//
// moe-gpu-lower-to-launches maps every tensor of an entry function to a device buffer and
// every op to launches of the kernel library, one rule per op, grouped by family:
//
//   populateBufferLaunchRules   to_tensor, tensor.dim / slices / reshapes / insert_slice,
//                               materialize_in_destination, linalg.add, scf.for, func.return
//   populateDenseLaunchRules    moe.embedding, rms_norm, linear, router, rope, attention
//   populateRoutingLaunchRules  moe.top_k_gating, dispatch
//   populateExpertLaunchRules   moe.grouped_swiglu, grouped_matmul_combine
//   populateStepLaunchRules     moe.rope_at, paged_kv_write, paged_attention, gather_rows
//                               (moec_step; launches/Step.cpp)
//
// A rule reads its operands' buffers (`buf`), allocates its results on the function's stream
// (`alloc`, freed at the end of the enclosing block), launches kernels (`launch`, `matmul`)
// and maps its results. Adding a kernel family is one rule here and its kernel builder in
// codegen/gpu/kernels/.
//
//===----------------------------------------------------------------------===//
#ifndef MOEC_CODEGEN_GPU_LAUNCHBUILDER_H
#define MOEC_CODEGEN_GPU_LAUNCHBUILDER_H

#include "Kernels.h"
#include "Tiles.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/IRMapping.h"

#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/DenseSet.h"

#include <array>
#include <functional>

namespace mlir::moe::gpu {

class LaunchBuilder;

/// The rule for each op type this lowering knows.
class LaunchRules {
public:
  using Rule = std::function<LogicalResult(LaunchBuilder &, Operation *)>;
  template <typename OpTy> void add(std::function<LogicalResult(LaunchBuilder &, OpTy)> rule) {
    rules[TypeID::get<OpTy>()] = [rule](LaunchBuilder &l, Operation *op) {
      return rule(l, cast<OpTy>(op));
    };
  }
  const Rule *lookup(Operation *op) const {
    std::optional<RegisteredOperationName> name = op->getRegisteredInfo();
    if (!name)
      return nullptr;
    auto it = rules.find(name->getTypeID());
    return it == rules.end() ? nullptr : &it->second;
  }

private:
  llvm::DenseMap<TypeID, Rule> rules;
};

void populateBufferLaunchRules(LaunchRules &rules);
void populateDenseLaunchRules(LaunchRules &rules);
void populateRoutingLaunchRules(LaunchRules &rules);
void populateExpertLaunchRules(LaunchRules &rules);
void populateStepLaunchRules(LaunchRules &rules);

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

/// One entry function's lowering: the builder, the tensor -> buffer map, the stream and the
/// allocation scopes, and the small builders every rule uses.
class LaunchBuilder {
public:
  LaunchBuilder(::mlir::gpu::GPUModuleOp kernels, const LaunchRules &rules, int64_t split)
      : kernels(kernels), rules(rules), b(kernels.getContext()), split(split) {}

  /// Lowers `f` in place: afterwards it holds no tensor and no moe op.
  LogicalResult lowerFunc(func::FuncOp f);
  /// Lowers one op at the builder's insertion point (its rule, or a clone of scalar code).
  LogicalResult lowerOp(Operation *op);

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
  /// A stream-ordered device allocation, freed at the end of the current scope.
  Value alloc(ArrayRef<int64_t> shape, Type elem, ValueRange dynSizes) {
    auto type = MemRefType::get(shape, elem);
    auto op = ::mlir::gpu::AllocOp::create(b, loc, type, tokenType(), ValueRange{stream}, dynSizes,
                                           ValueRange{}, /*hostShared=*/false);
    scopes.back().push_back(op.getMemref());
    owned.insert(op.getMemref());
    return op.getMemref();
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
  void freeScope() {
    for (Value m : scopes.back())
      ::mlir::gpu::DeallocOp::create(b, loc, tokenType(), ValueRange{stream}, m);
    scopes.pop_back();
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
  Value buf(Value tensor) { return map.lookup(tensor); }
  Value scalar(Value v) { return map.lookupOrDefault(v); }
  OpFoldResult remap(OpFoldResult r) {
    if (auto v = dyn_cast<Value>(r))
      return scalar(v);
    return r;
  }
  SmallVector<OpFoldResult> remap(ArrayRef<OpFoldResult> rs) {
    SmallVector<OpFoldResult> out;
    for (OpFoldResult r : rs)
      out.push_back(remap(r));
    return out;
  }
  Value dummyI32() {
    if (!dummy) {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointAfter(stream.getDefiningOp());
      auto op =
          ::mlir::gpu::AllocOp::create(b, loc, MemRefType::get({1}, b.getI32Type()), tokenType(),
                                       ValueRange{stream}, ValueRange{}, ValueRange{}, false);
      dummy = op.getMemref();
      scopes.front().push_back(dummy);
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

  /// A result buffer of `op`'s first result type, in f32: only the leading token/row count
  /// may be dynamic, and `rows` gives it.
  Value allocResult(Operation *op, Value rows) {
    auto shape = cast<RankedTensorType>(op->getResult(0).getType()).getShape();
    SmallVector<Value> dyn;
    if (ShapedType::isDynamic(shape[0]))
      dyn.push_back(rows);
    return alloc(shape, b.getF32Type(), dyn);
  }

  ::mlir::gpu::GPUModuleOp kernels;
  const LaunchRules &rules;
  OpBuilder b;
  Location loc = b.getUnknownLoc();
  int64_t split; // keys per split of the decode attention
  IRMapping map;
  Value stream, dummy;
  SmallVector<SmallVector<Value>> scopes;
  llvm::DenseSet<Value> owned;          // buffers this lowering allocated (safe to update in place)
  llvm::DenseMap<Value, Value> inverse; // dispatch's permutation -> its inverse
};

} // namespace mlir::moe::gpu

#endif // MOEC_CODEGEN_GPU_LAUNCHBUILDER_H
