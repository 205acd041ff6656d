//===- moe-gpu-lower-to-launches.cpp - moe graph -> GPU kernel launches ----===//
//
// Preconditions: the module mixtral-compile builds after the shared middle end
// (moe-middle-end; see Passes.td): entry functions whose tensors come from
// bufferization.to_tensor of memref.views of device arenas, moe ops on tensors (the MoE block
// as the fused routed ops, which are exactly the kernel boundaries), tensor reshapes and slices, tensor.insert_slice into the KV cache, linalg.add
// residuals over tensor.empty, bufferization.materialize_in_destination, and one scf.for
// with tensor iter_args. Everything else must be scalar (index / integer arithmetic).
//
// This is a bufferisation specialised to that graph, done in one walk: every tensor value is
// mapped to a device buffer (a view, a subview, a reshape or a fresh gpu.alloc), and every op
// that computes becomes a gpu.launch_func of the kernel library (Kernels.cpp). Launches,
// allocations and frees all depend on one async token created at function entry, so they run
// in program order on one stream; `gpu.wait` on the last one's token before each return makes
// the call synchronous (and, lowered, synchronises and destroys the stream).
//
// Afterwards: no moe op, no tensor; host code is func/scf/arith/memref/gpu.
//
//===----------------------------------------------------------------------===//

#include "Kernels.h"
#include "moec/Codegen/GPU/Passes.h"
#include "moec/Dialect/Moe/MoeOps.h"

#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/IRMapping.h"

#define DEBUG_TYPE "moe-gpu-lower-to-launches"

namespace mlir::moe::gpu {
#define GEN_PASS_DEF_MOEGPULOWERTOLAUNCHES
#include "moec/Codegen/GPU/Passes.h.inc"
} // namespace mlir::moe::gpu

using namespace mlir;
namespace mgpu = mlir::moe::gpu;

namespace {

using mgpu::Tiles;

/// The kernel parameter type for a buffer: same rank and element type, every size dynamic,
/// unit innermost stride, dynamic outer strides and offset.
MemRefType kernelType(MemRefType t) {
  int64_t rank = t.getRank();
  SmallVector<int64_t> shape(rank, ShapedType::kDynamic);
  SmallVector<int64_t> strides(rank, ShapedType::kDynamic);
  if (rank)
    strides.back() = 1;
  auto layout = StridedLayoutAttr::get(t.getContext(), ShapedType::kDynamic, strides);
  return MemRefType::get(shape, t.getElementType(), layout, t.getMemorySpace());
}

class Lowerer {
public:
  Lowerer(ModuleOp module, ::mlir::gpu::GPUModuleOp kernels, int64_t split)
      : module(module), kernels(kernels), b(module.getContext()), split(split) {}

  LogicalResult lowerFunc(func::FuncOp f);

private:
  // --- small builders ----------------------------------------------------------------------
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
    auto op = ::mlir::gpu::AllocOp::create(b, loc, type, tokenType(), ValueRange{stream},
                                           dynSizes, ValueRange{}, /*hostShared=*/false);
    scopes.back().push_back(op.getMemref());
    owned.insert(op.getMemref());
    return op.getMemref();
  }
  Type tokenType() { return ::mlir::gpu::AsyncTokenType::get(b.getContext()); }
  void launch(StringRef kernel, std::array<Value, 3> grid, int64_t threads, ValueRange args) {
    auto fn = kernels.lookupSymbol<::mlir::gpu::GPUFuncOp>(kernel);
    assert(fn && "kernel missing from the library");
    ::mlir::gpu::LaunchFuncOp::create(
        b, loc, fn, ::mlir::gpu::KernelDim3{grid[0], grid[1], grid[2]},
        ::mlir::gpu::KernelDim3{idx(threads), idx(1), idx(1)}, Value(), args, tokenType(),
        ValueRange{stream});
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
      auto op = ::mlir::gpu::AllocOp::create(b, loc, MemRefType::get({1}, b.getI32Type()),
                                             tokenType(), ValueRange{stream}, ValueRange{},
                                             ValueRange{}, false);
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

  /// out[M, N] = A[rows] · W[g]ᵀ (grouped when `offsets`), choosing GEMV or mma.sync.
  void matmul(Value a, Value w, Value w3, Value out, Value offsets, Value perm, Value groups,
              Value rows, Value n, Value k, int64_t gather, int64_t kdiv, bool gemv,
              Value maxTiles) {
    SmallVector<Value> args = {arg(a), arg(asGrouped(w))};
    if (w3)
      args.push_back(arg(asGrouped(w3)));
    args.append({arg(out), arg(offsets ? offsets : dummyI32()), arg(perm ? perm : dummyI32()),
                 groups, rows, n, k, idx(gather), idx(kdiv)});
    if (gemv) {
      launch(w3 ? "gemv_swiglu" : "gemv", {ceilDiv(n, Tiles::gemvCols), rows, idx(1)},
             Tiles::gemvThreads, args);
      return;
    }
    launch(w3 ? "gemm_mma_swiglu" : "gemm_mma",
           {ceilDiv(n, Tiles::gemmBN), maxTiles ? maxTiles : ceilDiv(rows, Tiles::gemmBM), idx(1)},
           Tiles::gemmThreads, args);
  }

  /// Decode: one token, a static row count (GEMV kernels); prefill: dynamic (mma.sync).
  bool isDecode(Value rows) { return !cast<MemRefType>(rows.getType()).isDynamicDim(0); }
  /// Row tiles of a grouped GEMM over R rows and E experts: every expert may start a tile.
  Value maxGroupedTiles(Value R, int64_t E) { return add(ceilDiv(R, Tiles::gemmBM), idx(E)); }

  LogicalResult lowerOp(Operation *op);
  LogicalResult lowerMoe(Operation *op);

  ModuleOp module;
  ::mlir::gpu::GPUModuleOp kernels;
  OpBuilder b;
  Location loc = UnknownLoc::get(module.getContext());
  int64_t split;
  IRMapping map;
  Value stream, dummy;
  SmallVector<SmallVector<Value>> scopes;
  llvm::DenseSet<Value> owned; // buffers this lowering allocated (safe to update in place)
  llvm::DenseMap<Value, Value> inverse; // dispatch's permutation -> its inverse
};

LogicalResult Lowerer::lowerFunc(func::FuncOp f) {
  auto isTensor = [](Type t) { return isa<TensorType>(t); };
  if (llvm::any_of(f.getArgumentTypes(), isTensor) || llvm::any_of(f.getResultTypes(), isTensor))
    return f.emitOpError("takes or returns tensors; GPU entry points take device buffers "
                         "(memrefs) and read them through bufferization.to_tensor.");
  Block &entry = f.getBody().front();
  map.clear();
  owned.clear();
  inverse.clear();
  dummy = nullptr;
  scopes.clear();
  loc = f.getLoc();
  SmallVector<Operation *> old;
  for (Operation &op : entry)
    old.push_back(&op);
  b.setInsertionPointToStart(&entry);
  stream = ::mlir::gpu::WaitOp::create(b, loc, tokenType(), ValueRange{}).getAsyncToken();
  scopes.emplace_back();
  for (Operation *op : old) {
    b.setInsertionPoint(op);
    loc = op->getLoc();
    if (failed(lowerOp(op)))
      return failure();
  }
  for (Operation *op : llvm::reverse(old)) {
    op->dropAllDefinedValueUses();
    op->erase();
  }
  return success();
}

LogicalResult Lowerer::lowerOp(Operation *op) {
  if (op->getDialect() && op->getDialect()->getNamespace() == "moe")
    return lowerMoe(op);

  if (auto t = dyn_cast<bufferization::ToTensorOp>(op)) {
    map.map(t.getResult(), scalar(t.getBuffer()));
    return success();
  }
  if (auto d = dyn_cast<tensor::DimOp>(op)) {
    map.map(d.getResult(), memref::DimOp::create(b, loc, buf(d.getSource()), scalar(d.getIndex()))
                               .getResult());
    return success();
  }
  if (isa<tensor::EmptyOp>(op))
    return success(); // only used as linalg.add's init, which gets its own buffer
  if (auto s = dyn_cast<tensor::ExtractSliceOp>(op)) {
    if (s.getType().getRank() != s.getSourceType().getRank())
      return op->emitOpError("rank-reducing slices are not supported by the GPU lowering");
    Value v = memref::SubViewOp::create(b, loc, buf(s.getSource()), remap(s.getMixedOffsets()),
                                        remap(s.getMixedSizes()), remap(s.getMixedStrides()));
    map.map(s.getResult(), v);
    return success();
  }
  if (auto e = dyn_cast<tensor::ExpandShapeOp>(op)) {
    Value src = buf(e.getSrc());
    auto type = memref::ExpandShapeOp::computeExpandedType(
        cast<MemRefType>(src.getType()), e.getResultType().getShape(),
        e.getReassociationIndices());
    if (failed(type))
      return op->emitOpError("cannot expand this buffer on the GPU path");
    Value v = memref::ExpandShapeOp::create(b, loc, *type, src, e.getReassociationIndices(),
                                            remap(e.getMixedOutputShape()));
    map.map(e.getResult(), v);
    return success();
  }
  if (auto c = dyn_cast<tensor::CollapseShapeOp>(op)) {
    Value v = memref::CollapseShapeOp::create(b, loc, buf(c.getSrc()),
                                              c.getReassociationIndices());
    map.map(c.getResult(), v);
    return success();
  }
  if (auto ins = dyn_cast<tensor::InsertSliceOp>(op)) {
    // Only whole trailing dimensions at unit stride: a contiguous run of the destination.
    auto dstType = ins.getDestType();
    ArrayRef<int64_t> offs = ins.getStaticOffsets(), sizes = ins.getStaticSizes(),
                      strides = ins.getStaticStrides();
    for (int64_t i = 0; i < dstType.getRank(); ++i) {
      if (strides[i] != 1)
        return op->emitOpError("only unit-stride insert_slice is supported on the GPU path");
      if (i > 0 && (offs[i] != 0 || sizes[i] != dstType.getDimSize(i)))
        return op->emitOpError("only insert_slice of whole trailing dimensions is supported "
                               "on the GPU path");
    }
    Value dst = buf(ins.getDest()), src = buf(ins.getSource());
    int64_t inner = 1;
    for (int64_t i = 1; i < dstType.getRank(); ++i)
      inner *= dstType.getDimSize(i);
    Value off0 = getValueOrCreateConstantIndexOp(b, loc, remap(ins.getMixedOffsets()[0]));
    Value start = mul(off0, idx(inner));
    Value n = numel(src);
    Value dstFlat = flat(dst);
    Value window = memref::SubViewOp::create(
        b, loc, dstFlat, ArrayRef<OpFoldResult>{start}, ArrayRef<OpFoldResult>{n},
        ArrayRef<OpFoldResult>{b.getIndexAttr(1)});
    copy(src, window, n);
    map.map(ins.getResult(), dst);
    return success();
  }
  if (auto m = dyn_cast<bufferization::MaterializeInDestinationOp>(op)) {
    Value src = buf(m.getSource());
    Value dst = m.getDest();
    dst = isa<TensorType>(dst.getType()) ? buf(dst) : scalar(dst);
    if (src != dst)
      copy(src, dst, numel(src));
    if (m.getNumResults())
      map.map(m.getResult(), dst);
    return success();
  }
  if (auto a = dyn_cast<linalg::AddOp>(op)) {
    Value lhs = buf(a.getInputs()[0]), rhs = buf(a.getInputs()[1]);
    // In place into the left operand when that buffer is ours and nothing reads it later.
    bool lastUse = owned.contains(lhs) && llvm::all_of(a.getInputs()[0].getUsers(), [&](Operation *u) {
                     return u == op || (u->getBlock() == op->getBlock() && u->isBeforeInBlock(op));
                   });
    Value out = lhs;
    if (!lastUse) {
      auto t = cast<MemRefType>(lhs.getType());
      SmallVector<Value> dyn;
      for (int64_t i = 0; i < t.getRank(); ++i)
        if (t.isDynamicDim(i))
          dyn.push_back(dim(lhs, i));
      out = alloc(t.getShape(), t.getElementType(), dyn);
    }
    Value n = numel(lhs);
    launch("add", {ceilDiv(n, Tiles::elementwiseThreads), idx(1), idx(1)},
           Tiles::elementwiseThreads, {arg(flat(lhs)), arg(flat(rhs)), arg(flat(out)), n});
    map.map(a.getResult(0), out);
    return success();
  }
  if (auto loop = dyn_cast<scf::ForOp>(op)) {
    // Loop-carried tensors live in one buffer each, updated in place by the body.
    SmallVector<Value> carried;
    for (Value init : loop.getInitArgs()) {
      Value buffer = buf(init);
      if (!owned.contains(buffer)) {
        auto t = cast<MemRefType>(buffer.getType());
        SmallVector<Value> dyn;
        for (int64_t i = 0; i < t.getRank(); ++i)
          if (t.isDynamicDim(i))
            dyn.push_back(dim(buffer, i));
        Value fresh = alloc(t.getShape(), t.getElementType(), dyn);
        copy(buffer, fresh, numel(buffer));
        buffer = fresh;
      }
      carried.push_back(buffer);
    }
    auto newLoop = scf::ForOp::create(b, loc, scalar(loop.getLowerBound()),
                                      scalar(loop.getUpperBound()), scalar(loop.getStep()));
    map.map(loop.getInductionVar(), newLoop.getInductionVar());
    for (auto [arg, buffer] : llvm::zip(loop.getRegionIterArgs(), carried))
      map.map(arg, buffer);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(newLoop.getBody()->getTerminator());
    scopes.emplace_back();
    for (Operation &inner : loop.getBody()->without_terminator()) {
      loc = inner.getLoc();
      if (failed(lowerOp(&inner)))
        return failure();
    }
    auto yield = cast<scf::YieldOp>(loop.getBody()->getTerminator());
    for (auto [value, buffer] : llvm::zip(yield.getOperands(), carried)) {
      Value produced = buf(value);
      if (produced != buffer)
        copy(produced, buffer, numel(buffer));
    }
    freeScope();
    for (auto [result, buffer] : llvm::zip(loop.getResults(), carried))
      map.map(result, buffer);
    return success();
  }
  if (isa<func::ReturnOp>(op)) {
    while (!scopes.empty())
      freeScope();
    // Wait on the last async op's token: the entry token has no dependencies, so a wait on it
    // is a no-op that the canonicalizer erases, and the stream would be neither synchronised
    // nor destroyed. (All ops share one stream, so its last op's token covers them all.)
    Value last = stream;
    for (Operation *p = op->getPrevNode(); p && last == stream; p = p->getPrevNode())
      if (auto async = dyn_cast<::mlir::gpu::AsyncOpInterface>(p); async && async.getAsyncToken())
        last = async.getAsyncToken();
    ::mlir::gpu::WaitOp::create(b, loc, Type(), ValueRange{last});
    b.clone(*op, map);
    return success();
  }
  auto isTensor = [](Type t) { return isa<TensorType>(t); };
  if (llvm::any_of(op->getOperandTypes(), isTensor) || llvm::any_of(op->getResultTypes(), isTensor) ||
      op->getNumRegions())
    return op->emitOpError("is not supported by the GPU lowering");
  b.clone(*op, map);
  return success();
}

LogicalResult Lowerer::lowerMoe(Operation *op) {
  MLIRContext *ctx = b.getContext();
  Type f32Type = Float32Type::get(ctx), i32Type = IntegerType::get(ctx, 32);
  auto resultShape = [&](Operation *o) {
    return SmallVector<int64_t>(cast<RankedTensorType>(o->getResult(0).getType()).getShape());
  };
  // Results: the only dynamic dimension is the leading token/row count.
  auto allocLike = [&](Operation *o, Value rows) {
    SmallVector<int64_t> shape = resultShape(o);
    SmallVector<Value> dyn;
    if (ShapedType::isDynamic(shape[0]))
      dyn.push_back(rows);
    return alloc(shape, f32Type, dyn);
  };

  if (auto e = dyn_cast<moe::EmbeddingOp>(op)) {
    Value ids = buf(e.getIds()), table = buf(e.getTable());
    Value T = dim(ids, 0);
    Value out = allocLike(op, T);
    launch("embedding", {T, idx(1), idx(1)}, Tiles::elementwiseThreads,
           {arg(table), arg(ids), arg(out), dim(table, 1)});
    map.map(e.getResult(), out);
    return success();
  }
  if (auto n = dyn_cast<moe::RMSNormOp>(op)) {
    Value x = buf(n.getInput()), w = buf(n.getWeight());
    Value T = dim(x, 0);
    Value out = allocLike(op, T);
    launch("rms_norm", {T, idx(1), idx(1)}, Tiles::elementwiseThreads,
           {arg(x), arg(w), arg(out), dim(x, 1), f32(n.getEpsilon().convertToDouble())});
    map.map(n.getResult(), out);
    return success();
  }
  if (isa<moe::LinearOp, moe::RouterOp>(op)) {
    Value x = buf(op->getOperand(0)), w = buf(op->getOperand(1));
    Value T = dim(x, 0);
    Value out = allocLike(op, T);
    bool gemv = isa<moe::RouterOp>(op) || !cast<MemRefType>(x.getType()).isDynamicDim(0);
    matmul(x, w, Value(), out, Value(), Value(), idx(0), T, dim(w, 0), dim(w, 1), 0, 1, gemv,
           Value());
    map.map(op->getResult(0), out);
    return success();
  }
  if (auto r = dyn_cast<moe::RoPEOp>(op)) {
    Value x = buf(r.getInput());
    Value T = dim(x, 0), NH = dim(x, 1), HD = dim(x, 2);
    Value out = allocLike(op, T);
    Value pairs = mul(mul(T, NH), arith::DivUIOp::create(b, loc, HD, idx(2)));
    launch("rope", {ceilDiv(pairs, Tiles::elementwiseThreads), idx(1), idx(1)},
           Tiles::elementwiseThreads,
           {arg(x), arg(out), T, NH, HD, scalar(r.getStart()), f32(r.getTheta().convertToDouble())});
    map.map(r.getResult(), out);
    return success();
  }
  if (auto a = dyn_cast<moe::AttentionOp>(op)) {
    Value q = buf(a.getQuery()), kc = buf(a.getKeyCache()), vc = buf(a.getValueCache());
    auto qt = cast<MemRefType>(q.getType());
    auto kt = cast<MemRefType>(kc.getType());
    int64_t H = qt.getDimSize(1), HD = qt.getDimSize(2), KVH = kt.getDimSize(1),
            S = kt.getDimSize(0);
    Value T = dim(q, 0), start = scalar(a.getStart());
    Value out = allocLike(op, T);
    bool decode = !qt.isDynamicDim(0);
    int64_t chunk = decode ? split : S;
    Value splits = decode ? ceilDiv(add(start, T), chunk) : idx(1);
    Value partRows = mul(mul(splits, T), idx(H));
    Value part = alloc({ShapedType::kDynamic, HD + 2}, f32Type, {partRows});
    int64_t qTokens = Tiles::attnTokens(H / KVH);
    launch("attention", {ceilDiv(T, qTokens), idx(KVH), splits}, Tiles::attnThreads,
           {arg(q), arg(kc), arg(vc), arg(part), T, start,
            idx(a.getSlidingWindow() ? int64_t(*a.getSlidingWindow()) : 0), idx(chunk),
            f32(a.getScale().convertToDouble())});
    launch("attention_combine", {mul(T, idx(H)), idx(1), idx(1)}, Tiles::attnThreads,
           {arg(part), arg(out), T, idx(H), idx(HD), splits});
    map.map(a.getResult(), out);
    return success();
  }
  if (auto g = dyn_cast<moe::TopKGatingOp>(op)) {
    // logits [T, E] f32 -> weights [T, k] f32, ids [T, k] i32
    Value logits = buf(g.getLogits());
    Value T = dim(logits, 0);
    int64_t k = g.getK();
    Value weights = alloc({ShapedType::kDynamic, k}, f32Type, {T});
    Value ids = alloc({ShapedType::kDynamic, k}, i32Type, {T});
    launch("top_k", {ceilDiv(T, Tiles::topKThreads), idx(1), idx(1)}, Tiles::topKThreads,
           {arg(logits), arg(weights), arg(ids), T, dim(logits, 1), idx(k)});
    map.map(g.getWeights(), weights);
    map.map(g.getExpertIds(), ids);
    return success();
  }
  if (auto d = dyn_cast<moe::DispatchOp>(op)) {
    // ids [T, k] -> perm [R], offsets [E+1], and the inverse permutation [R] that the
    // combine kernel reads (kept beside the permutation in `inverse`).
    int64_t E = d.getNumExperts();
    if (E > Tiles::dispatchThreads)
      return op->emitOpError("the GPU dispatch kernel supports at most ")
             << Tiles::dispatchThreads << " experts";
    Value ids = buf(d.getExpertIds());
    Value k = dim(ids, 1);
    Value R = mul(dim(ids, 0), k);
    Value perm = alloc({ShapedType::kDynamic}, i32Type, {R});
    Value inv = alloc({ShapedType::kDynamic}, i32Type, {R});
    Value offsets = alloc({E + 1}, i32Type, {});
    launch("dispatch", {idx(1), idx(1), idx(1)}, Tiles::dispatchThreads,
           {arg(ids), arg(perm), arg(inv), arg(offsets), R, idx(E), k});
    map.map(d.getPermutation(), perm);
    map.map(d.getExpertOffsets(), offsets);
    inverse[perm] = inv;
    return success();
  }
  if (auto s = dyn_cast<moe::GroupedSwiGLUOp>(op)) {
    // h [R, F] = silu(x[perm / k] · w1[e]ᵀ) * (x[perm / k] · w3[e]ᵀ), rows grouped by expert
    Value x = buf(s.getInput()), perm = buf(s.getPermutation());
    Value offsets = buf(s.getExpertOffsets());
    Value w1 = buf(s.getW1()), w3 = buf(s.getW3());
    auto w1t = cast<MemRefType>(w1.getType());
    int64_t E = w1t.getDimSize(0), F = w1t.getDimSize(1), D = w1t.getDimSize(2);
    Value R = dim(perm, 0);
    Value h = allocLike(op, R);
    matmul(x, w1, w3, h, offsets, perm, idx(E), R, idx(F), idx(D), /*gather=*/1, s.getK(),
           isDecode(x), maxGroupedTiles(R, E));
    map.map(s.getResult(), h);
    return success();
  }
  if (auto c = dyn_cast<moe::GroupedMatmulCombineOp>(op)) {
    // down [R, D] = h · w2[e]ᵀ, then y [T, D] = the routing-weighted sum in slot order
    Value h = buf(c.getRows()), w2 = buf(c.getW2()), offsets = buf(c.getExpertOffsets());
    Value perm = buf(c.getPermutation()), weights = buf(c.getRoutingWeights());
    Value inv = inverse.lookup(perm);
    if (!inv)
      return op->emitOpError("needs a permutation made by moe.dispatch on the GPU path (the "
                             "combine kernel reads the dispatch kernel's inverse permutation)");
    auto w2t = cast<MemRefType>(w2.getType());
    int64_t E = w2t.getDimSize(0), D = w2t.getDimSize(1), F = w2t.getDimSize(2);
    Value R = dim(h, 0), T = dim(weights, 0), k = dim(weights, 1);
    Value down = alloc({ShapedType::kDynamic, D}, f32Type, {R});
    matmul(h, w2, Value(), down, offsets, perm, idx(E), R, idx(D), idx(F), 0, 1, isDecode(h),
           maxGroupedTiles(R, E));
    Value y = allocLike(op, T);
    launch("combine", {T, idx(1), idx(1)}, Tiles::elementwiseThreads,
           {arg(down), arg(inv), arg(weights), arg(y), idx(D), k});
    map.map(c.getResult(), y);
    return success();
  }
  return op->emitOpError("has no GPU kernel (the GPU path lowers the fused routed ops: run "
                         "moe-decompose-sparse-block and moe-fuse-expert-gemms first)");
}

/// The kernel library's specialisation for `module`: its weights' storage type (one for all,
/// as the library has one variant of each kernel) and the attention geometry. `found` says
/// whether the module holds any moe op.
LogicalResult specialise(ModuleOp module, mgpu::KernelConfig &config, bool &found) {
  Operation *first = nullptr;
  auto weight = [&](Operation *op, Value w) {
    Type t = cast<ShapedType>(w.getType()).getElementType();
    if (config.weightType && config.weightType != t) {
      op->emitOpError("has ") << t << " weights where an earlier op has " << config.weightType
                              << " ones; the GPU kernel library holds one weight type per model.";
      return WalkResult::interrupt();
    }
    config.weightType = t;
    return WalkResult::advance();
  };
  WalkResult walk = module.walk([&](Operation *op) {
    if (op->getDialect() && op->getDialect()->getNamespace() == "moe" && !first)
      first = op;
    if (auto e = dyn_cast<moe::EmbeddingOp>(op))
      return weight(op, e.getTable());
    if (auto l = dyn_cast<moe::LinearOp>(op))
      return weight(op, l.getWeight());
    if (auto s = dyn_cast<moe::GroupedSwiGLUOp>(op))
      return weight(op, s.getW1());
    if (auto c = dyn_cast<moe::GroupedMatmulCombineOp>(op))
      return weight(op, c.getW2());
    if (auto a = dyn_cast<moe::AttentionOp>(op)) {
      auto q = cast<RankedTensorType>(a.getQuery().getType());
      auto k = cast<RankedTensorType>(a.getKeyCache().getType());
      config.headDim = q.getDimSize(2);
      config.groupSize = q.getDimSize(1) / k.getDimSize(1);
    }
    return WalkResult::advance();
  });
  found = first != nullptr;
  // A module of routing ops only (no weights of its own) gets the f32 variants.
  if (found && !config.weightType)
    config.weightType = Float32Type::get(module.getContext());
  return failure(walk.wasInterrupted());
}

struct MoeGpuLowerToLaunches
    : mgpu::impl::MoeGpuLowerToLaunchesBase<MoeGpuLowerToLaunches> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    // Quantized weights (views the builder marked, or ops that read data + scales) have no
    // GPU kernels yet: refuse rather than read their bytes as floats.
    WalkResult quantized = module.walk([&](Operation *op) {
      if (op->hasAttr("moe.quant") || op->hasAttr("quant")) {
        op->emitError("quantized weights (#moe.quant) have no GPU lowering yet; compile them "
                      "for --target cpu.");
        return WalkResult::interrupt();
      }
      return WalkResult::advance();
    });
    if (quantized.wasInterrupted())
      return signalPassFailure();
    // Specialise the library for this model.
    mgpu::KernelConfig config;
    bool found = false;
    if (failed(specialise(module, config, found)))
      return signalPassFailure();
    if (!found)
      return; // no moe op: nothing to lower
    OpBuilder top(module.getBodyRegion());
    top.setInsertionPointToEnd(module.getBody());
    auto kernels = mgpu::buildKernelLibrary(top, module.getLoc(), config);
    if (!kernels)
      return signalPassFailure();
    module->setAttr(::mlir::gpu::GPUDialect::getContainerModuleAttrName(),
                    UnitAttr::get(&getContext()));

    Lowerer lowerer(module, kernels, attentionSplit);
    for (auto f : llvm::to_vector(module.getOps<func::FuncOp>())) {
      if (f.isDeclaration())
        continue;
      if (failed(lowerer.lowerFunc(f)))
        return signalPassFailure();
    }
  }
};

} // namespace
