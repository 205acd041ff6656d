//===- KernelBuilder.h - typed helpers the GPU kernel builders share ------*- C++ -*-===//
//
// The kernels of the GPU library are built with an ImplicitLocOpBuilder inside the
// `gpu.module @moec_kernels` that buildKernelLibrary creates. This header holds what every
// family needs: kernel signatures (dynamic strided memref parameters, workgroup buffers aligned
// to 16 bytes), structured control flow with iter_args, index arithmetic through `Ix` (the
// mlir::Value instantiation of IndexMath.h's formulas), warp reductions with gpu.shuffle, and
// float conversions chosen by mlir::Type. The family builders (one file each) are declared at
// the end.
//
// Why 16-byte workgroup alignment: MLIR otherwise emits the element type's alignment
// (`.shared .align 2` for bf16), while ldmatrix needs 16-byte row addresses and LLVM's
// load/store vectorizer turns scalar shared loads into ld.shared.v4 without raising the
// `.align` printed in the PTX.
//
//===----------------------------------------------------------------------===//
#ifndef MOEC_CODEGEN_GPU_KERNELS_KERNELBUILDER_H
#define MOEC_CODEGEN_GPU_KERNELS_KERNELBUILDER_H

#include "../Kernels.h"
#include "moec/Dialect/Moe/MoeAttrs.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"
#include "llvm/ADT/STLFunctionalExtras.h"

namespace mlir::moe::gpu::kernels {

using KernelBuilder = ImplicitLocOpBuilder;

//===----------------------------------------------------------------------===//
// Index values: the mlir::Value side of IndexMath.h
//===----------------------------------------------------------------------===//

/// An `index` SSA value with C++ operators that build unsigned arith ops, so that a formula
/// written once as a template (IndexMath.h) builds IR for `Ix` and computes for int64_t.
struct Ix {
  Value v;
  KernelBuilder *b;
  operator Value() const { return v; }
};
inline Ix ix(KernelBuilder &b, Value v) { return {v, &b}; }
inline Ix ix(KernelBuilder &b, int64_t c) { return {arith::ConstantIndexOp::create(b, c), &b}; }
inline Ix operator+(Ix x, Ix y) { return {arith::AddIOp::create(*x.b, x.v, y.v), x.b}; }
inline Ix operator-(Ix x, Ix y) { return {arith::SubIOp::create(*x.b, x.v, y.v), x.b}; }
inline Ix operator*(Ix x, Ix y) { return {arith::MulIOp::create(*x.b, x.v, y.v), x.b}; }
inline Ix operator/(Ix x, Ix y) { return {arith::DivUIOp::create(*x.b, x.v, y.v), x.b}; }
inline Ix operator%(Ix x, Ix y) { return {arith::RemUIOp::create(*x.b, x.v, y.v), x.b}; }
inline Ix operator+(Ix x, int64_t c) { return x + ix(*x.b, c); }
inline Ix operator-(Ix x, int64_t c) { return x - ix(*x.b, c); }
inline Ix operator*(Ix x, int64_t c) { return x * ix(*x.b, c); }
inline Ix operator/(Ix x, int64_t c) { return x / ix(*x.b, c); }
inline Ix operator%(Ix x, int64_t c) { return x % ix(*x.b, c); }
inline Ix umin(Ix x, Ix y) { return {arith::MinUIOp::create(*x.b, x.v, y.v), x.b}; }
inline Ix umax(Ix x, Ix y) { return {arith::MaxUIOp::create(*x.b, x.v, y.v), x.b}; }
/// The Ix side of the helpers IndexMath.h's templates call unqualified.
Value ult(Ix x, Ix y);
Value isNonZero(Ix x);
Ix select(Value c, Ix x, Ix y);
inline Ix zeroOf(Ix x) { return ix(*x.b, 0); }

/// Unsigned comparisons of indices (all kernel indices are non-negative).
Value ult(KernelBuilder &b, Value x, Value y);
Value ule(KernelBuilder &b, Value x, Value y);
Value eq(KernelBuilder &b, Value x, Value y);
Value ne(KernelBuilder &b, Value x, Value y);
Value both(KernelBuilder &b, Value x, Value y); // i1 and
Value indexToF32(KernelBuilder &b, Value i);    // through i32, as sitofp
Value i32ToIndex(KernelBuilder &b, Value i);
Value indexToI32(KernelBuilder &b, Value i);

//===----------------------------------------------------------------------===//
// Constants, kernel signatures, thread ids
//===----------------------------------------------------------------------===//

Value f32(KernelBuilder &b, double v);
Value i32(KernelBuilder &b, int32_t v);
Value i1(KernelBuilder &b, bool v);

/// memref<?x..x?xT, strided<[?, .., 1], offset: ?>>: every kernel buffer parameter.
MemRefType kernelMemref(Type element, int64_t rank);
/// A static shared-memory buffer for a workgroup attribution.
MemRefType workgroupMemref(ArrayRef<int64_t> shape, Type element);

/// Creates `gpu.func @name(args) workgroup(...) kernel` with known_block_size = threads,
/// every workgroup buffer 16-byte aligned, and leaves the builder at the start of its body.
/// The caller ends the body with endKernel.
::mlir::gpu::GPUFuncOp beginKernel(KernelBuilder &b, StringRef name, TypeRange args,
                                   TypeRange workgroup, int64_t threads);
void endKernel(KernelBuilder &b, ::mlir::gpu::GPUFuncOp f);

Ix threadIdx(KernelBuilder &b);
Ix blockIdx(KernelBuilder &b, ::mlir::gpu::Dimension d = ::mlir::gpu::Dimension::x);
Ix gridDim(KernelBuilder &b, ::mlir::gpu::Dimension d);

//===----------------------------------------------------------------------===//
// Structured control flow
//===----------------------------------------------------------------------===//

using LoopBody = function_ref<SmallVector<Value>(Ix iv, ValueRange iterArgs)>;
/// scf.for lb to ub step `step` with iter_args; the body returns the values to yield.
SmallVector<Value> forLoop(KernelBuilder &b, Value lb, Value ub, Value step, ValueRange init,
                           LoopBody body);
/// scf.for without iter_args.
void forEach(KernelBuilder &b, Value lb, Value ub, Value step, function_ref<void(Ix)> body);
/// scf.if without results or else branch.
void ifThen(KernelBuilder &b, Value cond, function_ref<void()> then);
/// scf.if with results; both branches return the values to yield.
SmallVector<Value> ifElse(KernelBuilder &b, Value cond, TypeRange types,
                          function_ref<SmallVector<Value>()> then,
                          function_ref<SmallVector<Value>()> otherwise);

//===----------------------------------------------------------------------===//
// Numerics
//===----------------------------------------------------------------------===//

/// `x` (a float scalar or vector) converted to element type `to` (same shape): extf, truncf,
/// or through f32 between the two 16-bit formats; `x` itself when the types agree.
Value convertFloat(KernelBuilder &b, Value x, Type to);
/// Butterfly sum over the 32 lanes of a warp (gpu.shuffle xor 16, 8, 4, 2, 1): every lane
/// gets the total.
Value warpSum(KernelBuilder &b, Value x);
/// silu(g) * u = g / (1 + exp(-g)) * u, in f32.
Value siluMul(KernelBuilder &b, Value g, Value u);

//===----------------------------------------------------------------------===//
// Weight operands of the GEMV / GEMM kernels (kernels/Weights.cpp)
//===----------------------------------------------------------------------===//

/// A weight [G, N, K] as a kernel reads it: a float tensor, or quantized storage as
/// #moe.quant defines it (MoeAttrs.td): data [G, N, K / elementsPerByte] and scales
/// [G, N, K / group]. The data is dequantised in registers, never written back.
struct WeightOperand {
  Value data, scale; // scale: null for float weights
  QuantAttr quant;   // null for float weights
};
/// Builds a weight-reading kernel family (GEMV, mma GEMM, wgmma GEMM) for each weight variant
/// the module uses: the float weights, then each quantized format, each plain and SwiGLU.
void forEachWeightVariant(const KernelConfig &config,
                          function_ref<void(QuantAttr quant, bool swiglu)> build);
/// The kernel parameters of one weight operand: `floatType` data, or data + scales.
void appendWeightParams(SmallVector<Type> &params, Type floatType, QuantAttr quant);
/// The weight operand whose parameters start at `fn`'s argument `at`; advances `at`.
WeightOperand weightOperand(::mlir::gpu::GPUFuncOp fn, unsigned &at, QuantAttr quant);
/// Elements [k, k + width) of row n of group g as vector<width x f32>: loaded (width
/// elements, aligned to their size) and, when quantized, dequantised in registers. k is a
/// multiple of width and width divides 16, so the elements share one scale and one q4
/// half-group.
Value loadWeightsF32(KernelBuilder &b, const WeightOperand &w, Value g, Value n, Value k,
                     int64_t width);

//===----------------------------------------------------------------------===//
// Tensor cores
//===----------------------------------------------------------------------===//

/// Registers of one thread's share of an mma.sync operand (each i32 holds two bf16).
using Fragment = SmallVector<Value, 4>;
/// nvgpu.ldmatrix x4 (not transposed) of the bf16 shared-memory tile `smem` at the lane's
/// row address (row, col): the four 8x8 matrices' registers as i32.
Fragment ldmatrixX4(KernelBuilder &b, Value smem, Value row, Value col);
/// nvvm.mma.sync m16n8k16, row-major bf16 A (4 registers), column-major bf16 B (2), f32
/// C (4): the 4 f32 results.
Fragment mmaSyncBF16(KernelBuilder &b, ArrayRef<Value> a, ArrayRef<Value> bOperand,
                     ArrayRef<Value> c);

//===----------------------------------------------------------------------===//
// Grouped operands (the routed expert GEMMs)
//===----------------------------------------------------------------------===//

/// The group of row m: how many of off[1..G] are <= m (0 when G == 0).
Ix groupOfRow(KernelBuilder &b, Value off, Value G, Value m);
/// The input row of output row m: perm[m] / kdiv when `gather` != 0, else m.
Ix gatheredRow(KernelBuilder &b, Value perm, Value gather, Value kdiv, Value m);

/// The rows a row-tiled GEMM block owns (gemm_mma, gemm_wgmma).
struct RowTile {
  Value valid;            // i1: the tile exists
  Value g;                // its group (0 when dense)
  Value rowStart, rowEnd; // rows [rowStart, min(rowStart + tileRows, rowEnd))
};
/// Row tile `by` of `tileRows` rows: with G > 0 groups, tile `by` of the concatenated
/// per-group tile lists (tiles never straddle a group; `off` holds the G + 1 offsets); with
/// G == 0, rows [by * tileRows, M).
RowTile selectRowTile(KernelBuilder &b, Value off, Value G, Value M, Ix by, int64_t tileRows);

//===----------------------------------------------------------------------===//
// The kernel families (one file each); each builds its gpu.funcs at the insertion point.
//===----------------------------------------------------------------------===//

void buildElementwiseKernels(KernelBuilder &b, const KernelConfig &config);
void buildRoutingKernels(KernelBuilder &b);
void buildGemvKernels(KernelBuilder &b, const KernelConfig &config);
void buildGemmMmaKernels(KernelBuilder &b, const KernelConfig &config);
/// gemm_wgmma, gemm_wgmma_swiglu (and their quantized variants): only when config.wgmma.
void buildGemmWgmmaKernels(KernelBuilder &b, const KernelConfig &config);
void buildAttentionKernels(KernelBuilder &b, const KernelConfig &config);
void buildStepKernels(KernelBuilder &b);

} // namespace mlir::moe::gpu::kernels

#endif // MOEC_CODEGEN_GPU_KERNELS_KERNELBUILDER_H
