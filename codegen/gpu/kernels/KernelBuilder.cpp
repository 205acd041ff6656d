//===- KernelBuilder.cpp - typed helpers the GPU kernel builders share ----===//
//
// Implementations of KernelBuilder.h: signatures, control flow, conversions and the warp
// reduction. Nothing here knows a particular kernel.
//
//===----------------------------------------------------------------------===//

#include "KernelBuilder.h"
#include "IndexMath.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

namespace mlir::moe::gpu::kernels {

namespace mg = ::mlir::gpu;

Value ult(KernelBuilder &b, Value x, Value y) {
  return arith::CmpIOp::create(b, arith::CmpIPredicate::ult, x, y);
}
Value ule(KernelBuilder &b, Value x, Value y) {
  return arith::CmpIOp::create(b, arith::CmpIPredicate::ule, x, y);
}
Value eq(KernelBuilder &b, Value x, Value y) {
  return arith::CmpIOp::create(b, arith::CmpIPredicate::eq, x, y);
}
Value ne(KernelBuilder &b, Value x, Value y) {
  return arith::CmpIOp::create(b, arith::CmpIPredicate::ne, x, y);
}
Value ult(Ix x, Ix y) { return ult(*x.b, x, y); }
Value isNonZero(Ix x) { return ne(*x.b, x, ix(*x.b, 0)); }
Ix select(Value c, Ix x, Ix y) { return {arith::SelectOp::create(*x.b, c, x.v, y.v), x.b}; }
Value both(KernelBuilder &b, Value x, Value y) { return arith::AndIOp::create(b, x, y); }
Value indexToI32(KernelBuilder &b, Value i) {
  return arith::IndexCastOp::create(b, b.getI32Type(), i);
}
Value i32ToIndex(KernelBuilder &b, Value i) {
  return arith::IndexCastOp::create(b, b.getIndexType(), i);
}
Value indexToF32(KernelBuilder &b, Value i) {
  return arith::SIToFPOp::create(b, b.getF32Type(), indexToI32(b, i));
}

Value f32(KernelBuilder &b, double v) {
  return arith::ConstantOp::create(b, b.getF32FloatAttr(static_cast<float>(v)));
}
Value i32(KernelBuilder &b, int32_t v) {
  return arith::ConstantOp::create(b, b.getI32IntegerAttr(v));
}
Value i1(KernelBuilder &b, bool v) { return arith::ConstantOp::create(b, b.getBoolAttr(v)); }

MemRefType kernelMemref(Type element, int64_t rank) {
  SmallVector<int64_t> shape(rank, ShapedType::kDynamic);
  SmallVector<int64_t> strides(rank, ShapedType::kDynamic);
  strides.back() = 1;
  auto layout = StridedLayoutAttr::get(element.getContext(), ShapedType::kDynamic, strides);
  return MemRefType::get(shape, element, layout);
}

MemRefType workgroupMemref(ArrayRef<int64_t> shape, Type element) {
  auto space = mg::AddressSpaceAttr::get(element.getContext(), mg::AddressSpace::Workgroup);
  return MemRefType::get(shape, element, MemRefLayoutAttrInterface(), space);
}

mg::GPUFuncOp beginKernel(KernelBuilder &b, StringRef name, TypeRange args,
                          TypeRange workgroup, int64_t threads) {
  auto f = mg::GPUFuncOp::create(b, name, b.getFunctionType(args, {}), workgroup);
  f->setAttr(mg::GPUDialect::getKernelFuncAttrName(), b.getUnitAttr());
  f.setKnownBlockSizeAttr(
      b.getDenseI32ArrayAttr({static_cast<int32_t>(threads), 1, 1}));
  for (unsigned i = 0; i < workgroup.size(); ++i)
    f.setWorkgroupAttributionAttr(i, "llvm.align", b.getI64IntegerAttr(16));
  b.setInsertionPointToStart(&f.getBody().front());
  return f;
}

void endKernel(KernelBuilder &b, mg::GPUFuncOp f) {
  mg::ReturnOp::create(b);
  b.setInsertionPointAfter(f);
}

Ix threadIdx(KernelBuilder &b) { return ix(b, mg::ThreadIdOp::create(b, mg::Dimension::x)); }
Ix blockIdx(KernelBuilder &b, mg::Dimension d) { return ix(b, mg::BlockIdOp::create(b, d)); }
Ix gridDim(KernelBuilder &b, mg::Dimension d) { return ix(b, mg::GridDimOp::create(b, d)); }

SmallVector<Value> forLoop(KernelBuilder &b, Value lb, Value ub, Value step, ValueRange init,
                           LoopBody body) {
  auto loop = scf::ForOp::create(b, lb, ub, step, init);
  {
    OpBuilder::InsertionGuard guard(b);
    Block *block = loop.getBody();
    if (!block->empty())
      block->back().erase(); // the implicit empty scf.yield
    b.setInsertionPointToEnd(block);
    SmallVector<Value> next = body(ix(b, loop.getInductionVar()), loop.getRegionIterArgs());
    scf::YieldOp::create(b, next);
  }
  return SmallVector<Value>(loop.getResults());
}

void forEach(KernelBuilder &b, Value lb, Value ub, Value step, function_ref<void(Ix)> body) {
  forLoop(b, lb, ub, step, {}, [&](Ix iv, ValueRange) {
    body(iv);
    return SmallVector<Value>();
  });
}

void ifThen(KernelBuilder &b, Value cond, function_ref<void()> then) {
  auto op = scf::IfOp::create(b, cond, /*withElseRegion=*/false);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPoint(op.thenBlock()->getTerminator());
  then();
}

SmallVector<Value> ifElse(KernelBuilder &b, Value cond, TypeRange types,
                          function_ref<SmallVector<Value>()> then,
                          function_ref<SmallVector<Value>()> otherwise) {
  auto op = scf::IfOp::create(b, types, cond, /*withElseRegion=*/true);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToEnd(op.thenBlock());
    scf::YieldOp::create(b, then());
    b.setInsertionPointToEnd(op.elseBlock());
    scf::YieldOp::create(b, otherwise());
  }
  return SmallVector<Value>(op.getResults());
}

Fragment ldmatrixX4(KernelBuilder &b, Value smem, Value row, Value col) {
  Type bf16 = b.getBF16Type();
  auto tiles = VectorType::get({4, 2}, bf16);
  Value m = nvgpu::LdMatrixOp::create(b, tiles, smem, ValueRange{row, col}, /*transpose=*/false,
                                      /*numTiles=*/4);
  Fragment regs;
  for (int64_t j = 0; j < 4; ++j) {
    Value pair = vector::ExtractOp::create(b, m, ArrayRef<int64_t>{j});
    Value word = vector::BitCastOp::create(b, VectorType::get({1}, b.getI32Type()), pair);
    regs.push_back(vector::ExtractOp::create(b, word, ArrayRef<int64_t>{0}));
  }
  return regs;
}

Fragment mmaSyncBF16(KernelBuilder &b, ArrayRef<Value> a, ArrayRef<Value> bOperand,
                     ArrayRef<Value> c) {
  Type f = b.getF32Type();
  auto result = LLVM::LLVMStructType::getLiteral(b.getContext(), {f, f, f, f});
  auto mma = NVVM::MmaOp::create(
      b, result, a, bOperand, c, ArrayRef<int64_t>{Tiles::mmaM, Tiles::mmaN, Tiles::mmaK}, std::nullopt, std::nullopt,
      std::array<NVVM::MMATypes, 2>{NVVM::MMATypes::bf16, NVVM::MMATypes::bf16},
      std::array<NVVM::MMALayout, 2>{NVVM::MMALayout::row, NVVM::MMALayout::col});
  Fragment d;
  for (int64_t r = 0; r < 4; ++r)
    d.push_back(LLVM::ExtractValueOp::create(b, mma, ArrayRef<int64_t>{r}));
  return d;
}

Ix groupOfRow(KernelBuilder &b, Value off, Value G, Value m) {
  Value one = ix(b, 1), zero = ix(b, 0);
  return ix(b, forLoop(b, zero, G, one, {zero}, [&](Ix e, ValueRange g) -> SmallVector<Value> {
               Value hi = i32ToIndex(b, memref::LoadOp::create(b, off, ValueRange{e + 1}));
               Value inc = arith::SelectOp::create(b, ule(b, hi, m), one, zero);
               return {arith::AddIOp::create(b, g[0], inc)};
             })[0]);
}

Ix gatheredRow(KernelBuilder &b, Value perm, Value gather, Value kdiv, Value m) {
  return ix(b, ifElse(
                   b, ne(b, gather, ix(b, 0)), {b.getIndexType()},
                   [&]() -> SmallVector<Value> {
                     Ix p = ix(b, i32ToIndex(b, memref::LoadOp::create(b, perm, ValueRange{m})));
                     return {p / ix(b, kdiv)};
                   },
                   [&]() -> SmallVector<Value> { return {m}; })[0]);
}

void forEachWeightVariant(const KernelConfig &config,
                          function_ref<void(QuantAttr quant, bool swiglu)> build) {
  SmallVector<QuantAttr> variants{QuantAttr()}; // float weights, then each quantized format
  variants.append(config.quant.begin(), config.quant.end());
  for (QuantAttr quant : variants) {
    build(quant, /*swiglu=*/false);
    build(quant, /*swiglu=*/true);
  }
}

RowTile selectRowTile(KernelBuilder &b, Value off, Value G, Value M, Ix by, int64_t tileRows) {
  Type idx = b.getIndexType();
  Value zero = ix(b, 0), one = ix(b, 1);
  SmallVector<Value> sel = ifElse(
      b, ult(b, zero, G), {idx, idx, idx, idx},
      [&]() -> SmallVector<Value> {
        SmallVector<Value> init(5, zero); // tiles so far, found, g, rowStart, rowEnd
        SmallVector<Value> r = forLoop(b, zero, G, one, init, [&](Ix e, ValueRange s) -> SmallVector<Value> {
          Ix lo = ix(b, i32ToIndex(b, memref::LoadOp::create(b, off, ValueRange{e})));
          Ix hi = ix(b, i32ToIndex(b, memref::LoadOp::create(b, off, ValueRange{e + 1})));
          Ix end = ix(b, s[0]) + index::tilesOf(hi - lo, tileRows);
          Value take = both(b, ult(b, by, end), eq(b, s[1], zero));
          Ix rs = lo + (by - ix(b, s[0])) * tileRows;
          auto pick = [&](Value x, Value y) -> Value { return arith::SelectOp::create(b, take, x, y); };
          return {end, pick(one, s[1]), pick(e, s[2]), pick(rs, s[3]), pick(hi, s[4])};
        });
        return {r[1], r[2], r[3], r[4]};
      },
      [&]() -> SmallVector<Value> {
        Ix rs = by * tileRows;
        return {arith::SelectOp::create(b, ult(b, rs, M), one, zero), zero, rs, M};
      });
  return {ne(b, sel[0], zero), sel[1], sel[2], sel[3]};
}

/// `t` with its element type replaced (scalars are their own element).
static Type withElement(Type t, Type element) {
  if (auto v = dyn_cast<VectorType>(t))
    return v.clone(element);
  return element;
}

Value convertFloat(KernelBuilder &b, Value x, Type to) {
  Type from = getElementTypeOrSelf(x.getType());
  unsigned fw = from.getIntOrFloatBitWidth(), tw = to.getIntOrFloatBitWidth();
  if (from == to)
    return x;
  if (fw < tw)
    return arith::ExtFOp::create(b, withElement(x.getType(), to), x);
  if (fw > tw)
    return arith::TruncFOp::create(b, withElement(x.getType(), to), x);
  // f16 <-> bf16: exact through f32.
  Value wide = arith::ExtFOp::create(b, withElement(x.getType(), b.getF32Type()), x);
  return arith::TruncFOp::create(b, withElement(x.getType(), to), wide);
}

Value warpSum(KernelBuilder &b, Value x) {
  Value width = i32(b, 32);
  for (int32_t offset : {16, 8, 4, 2, 1}) {
    auto shuffle = mg::ShuffleOp::create(b, x, i32(b, offset), width, mg::ShuffleMode::XOR);
    x = arith::AddFOp::create(b, x, shuffle.getShuffleResult());
  }
  return x;
}

Value siluMul(KernelBuilder &b, Value g, Value u) {
  Value neg = arith::SubFOp::create(b, f32(b, 0.0), g);
  Value den = arith::AddFOp::create(b, f32(b, 1.0), math::ExpOp::create(b, neg));
  Value silu = arith::DivFOp::create(b, g, den);
  return arith::MulFOp::create(b, silu, u);
}

} // namespace mlir::moe::gpu::kernels
