//===- PackedGemm.h - the packed GEMM's builder, for any weight format ----===//
//
// The packed GEMM of moe-cpu-vectorize-matmul, C[M, N] += A[M, K] · W[N, K]ᵀ, split at its
// panel scratch: `buildPackedGemm` widens A, runs the parallel loop over panels of
// `shape.cols` weight rows, the microkernel and the lane tree, and asks a `PanelPacker` to
// fill each panel. The float kernel's packer widens and transposes W; another weight format
// (quantized weights, dequantised once per panel) passes its own packer and gets the same
// microkernel, order of operations and batch invariance.
//
//===----------------------------------------------------------------------===//
#ifndef MOEC_CODEGEN_CPU_PACKEDGEMM_H
#define MOEC_CODEGEN_CPU_PACKEDGEMM_H

#include "mlir/IR/Builders.h"
#include "mlir/IR/Value.h"
#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/ADT/SmallVector.h"

namespace mlir::moe {

/// The microkernel: `rows` x `cols` outputs in vectors of `width` f32 lanes.
struct GemmShape {
  int64_t width, rows, cols; // cols: a multiple of width
};

/// Fills `panel` (memref<K x cols x f32>, 64-byte aligned, this thread's own) with weight
/// rows n0 .. n0 + cols in lane-split order: panel[l * KW + j, r] = W[n0 + r, l + width * j]
/// for KW = K / width (k = l + width * j), as f32.
using PanelPacker = function_ref<void(OpBuilder &b, Location loc, Value panel, Value n0)>;

/// Emits C[M, N] += A[M, K] · Wᵀ at `b`'s insertion point, W seen only through `packPanel`.
/// `a` and `c` are 2-D memrefs with unit inner stride (A of any float type up to 32 bits, C
/// f32); `n` and `k` are index values with K % width == 0 and N % cols == 0 (the caller's to
/// check). Every output is `width` FMA chains over k = l, l + width, ..., then a fixed
/// halving tree and one add to C: the same bits whatever M.
void buildPackedGemm(OpBuilder &b, Location loc, Value a, Value c, Value n, Value k,
                     const GemmShape &shape, PanelPacker packPanel);

/// Transposes `v` (as many vectors as each has lanes, a power of two) in registers, as the
/// packers need to turn weight rows into panel rows: log2(width) rounds of two-input
/// shuffles, round h swapping bit h of row and lane (8 lanes: unpack, 64-bit pair and
/// 128-bit half rounds instead, 24 single x86 shuffles where the bit swaps take 32).
void transposeLanes(OpBuilder &b, Location loc, SmallVector<Value> &v);

} // namespace mlir::moe

#endif // MOEC_CODEGEN_CPU_PACKEDGEMM_H
