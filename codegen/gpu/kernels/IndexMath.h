//===- IndexMath.h - the GPU kernels' index formulas, written once --------*- C++ -*-===//
//
// Which shared-memory cell a thread stages, which row a lane hands to ldmatrix, which output
// element an mma.sync accumulator register holds, which keys an attention block visits: each
// formula is a template over the index type I and is instantiated twice, as Triton's
// emitIndices is. With I = Ix (KernelBuilder.h) it builds the kernel's arith ops; with
// I = int64_t it computes the same numbers on the CPU, so that
// test/Codegen/GPU/kernel_index_math_test.cpp runs the very formulas the kernels are built
// from against the PTX ISA's fragment layouts and plain loops.
//
// The arithmetic is unsigned (divui/remui/minui/maxui in IR): every index is non-negative.
// Constants come from Tiles. Dependency-free apart from the Ix operators, which a template
// only needs when it is instantiated with Ix.
//
//===----------------------------------------------------------------------===//
#ifndef MOEC_CODEGEN_GPU_KERNELS_INDEXMATH_H
#define MOEC_CODEGEN_GPU_KERNELS_INDEXMATH_H

#include "../Tiles.h"

#include <cstdint>

namespace mlir::moe::gpu::index {

//===----------------------------------------------------------------------===//
// gemm_mma: 2x2 warps of 32x32, each 2x4 mma.sync m16n8k16 tiles; ldmatrix.x4 fragments
//===----------------------------------------------------------------------===//

constexpr int64_t kGemmWarps = Tiles::gemmThreads / 32;
constexpr int64_t kWarpsN = Tiles::gemmBN / Tiles::gemmWarpN;
/// mma tiles per warp along M and N, k16 steps per staged K tile.
constexpr int64_t kMmaTilesM = Tiles::gemmWarpM / Tiles::mmaM;
constexpr int64_t kMmaTilesN = Tiles::gemmWarpN / Tiles::mmaN;
constexpr int64_t kMmaStepsK = Tiles::gemmBK / Tiles::mmaK;
/// f32 accumulators per thread and weight operand: 4 per m16n8 tile.
constexpr int64_t kAccPerOperand = kMmaTilesM * kMmaTilesN * 4;

/// Staging: the i-th of the gemmBM / kGemmWarps rows warp `warp` copies (lane = column).
template <typename I> I stageRow(I warp, I i) { return warp + i * kGemmWarps; }

/// 16-byte staging (K % gemmStageVector == 0): a staged row is kStageChunks chunks of
/// gemmStageVector elements; chunk c = tid + i * gemmThreads of the tile (row-major) is
/// thread tid's in pass i (of kStagePasses). A thread's rows are the same for every K tile,
/// so their gathered input rows are found once per block.
constexpr int64_t kStageChunks = Tiles::gemmBK / Tiles::gemmStageVector;
constexpr int64_t kStagePasses = Tiles::gemmBM * kStageChunks / Tiles::gemmThreads;
template <typename I> I stageChunkRow(I tid, int64_t i) {
  return (tid + i * Tiles::gemmThreads) / kStageChunks;
}
template <typename I> I stageChunkCol(I tid) {
  return tid % kStageChunks * Tiles::gemmStageVector;
}

/// Quantized weights by cp.async (q8 / q4 with one group per K tile): a K tile of a weight
/// is gemmBM rows of rowBytes = gemmBK / elementsPerByte bytes as stored (q8 32, q4 16),
/// copied in kQuantChunk-byte chunks; chunk c = tid + i * gemmThreads (c < gemmBM * rowBytes /
/// kQuantChunk) is row c / (rowBytes / kQuantChunk), byte c % (rowBytes / kQuantChunk) *
/// kQuantChunk of the row.
constexpr int64_t kQuantChunk = 16;
constexpr int64_t quantChunks(int64_t rowBytes) { return Tiles::gemmBM * rowBytes / kQuantChunk; }
constexpr int64_t quantPasses(int64_t rowBytes) {
  return (quantChunks(rowBytes) + Tiles::gemmThreads - 1) / Tiles::gemmThreads;
}
template <typename I> I quantChunkRow(I tid, int64_t i, int64_t rowBytes) {
  return (tid + i * Tiles::gemmThreads) / (rowBytes / kQuantChunk);
}
template <typename I> I quantChunkCol(I tid, int64_t rowBytes) {
  return tid % (rowBytes / kQuantChunk) * kQuantChunk;
}

/// First output row / column (within the block tile) of warp `warp`'s 32x32 tile.
template <typename I> I warpRow0(I warp) { return warp / kWarpsN * Tiles::gemmWarpM; }
template <typename I> I warpCol0(I warp) { return warp % kWarpsN * Tiles::gemmWarpN; }

/// ldmatrix.x4 of the A tile for mma row tile `mi`, k16 step `kk`: lanes 0-15 address rows
/// 0-15 at column 0 (matrices 0, 1), lanes 16-31 the same rows at column 8 (matrices 2, 3),
/// which is the a0..a7 register order of mma.m16n8k16's row-major A.
template <typename I> I ldmatrixARow(I lane, I wm, int64_t mi) {
  return wm + lane % 16 + mi * Tiles::mmaM;
}
template <typename I> I ldmatrixACol(I lane, int64_t kk) {
  return lane / 16 * 8 + kk * Tiles::mmaK;
}

/// ldmatrix.x4 of the B tile (stored [n][k]) for n-tile pair `nj` (n-tiles 2nj, 2nj+1),
/// k16 step `kk`: matrices 0, 1 are k 0-7 and 8-15 of n-tile 2nj, matrices 2, 3 those of
/// n-tile 2nj+1.
template <typename I> I ldmatrixBRow(I lane, I wn, int64_t nj) {
  return wn + lane % 8 + lane / 16 * 8 + nj * 2 * Tiles::mmaN;
}
template <typename I> I ldmatrixBCol(I lane, int64_t kk) {
  return lane / 8 % 2 * 8 + kk * Tiles::mmaK;
}
/// Which B ldmatrix (of the warp's kMmaTilesN / 2) and which of its 4 registers (this and the
/// next) are the b0..b3 operands of n-tile `ni`.
constexpr int64_t mmaBLoad(int64_t ni) { return ni / 2; }
constexpr int64_t mmaBRegister(int64_t ni) { return ni % 2 * 2; }

/// The output element of accumulator register r (0..3) of mma tile (mi, ni): c0, c1 at
/// (lane/4, 2*(lane%4) + {0,1}), c2, c3 eight rows below.
template <typename I> I accRow(I lane, I wm, int64_t mi, int64_t r) {
  return wm + lane / 4 + (mi * Tiles::mmaM + (r >= 2 ? 8 : 0));
}
template <typename I> I accCol(I lane, I wn, int64_t ni, int64_t r) {
  return wn + lane % 4 * 2 + (ni * Tiles::mmaN + r % 2);
}

/// Position of accumulator (b, mi, ni, r) in a thread's flat accumulator list.
constexpr int64_t accIndex(int64_t b, int64_t mi, int64_t ni, int64_t r) {
  return ((b * kMmaTilesM + mi) * kMmaTilesN + ni) * 4 + r;
}

/// Row tiles of a group of `rows` rows (tiles never straddle a group).
/// Tiles of `tile` rows that cover `rows` (the last one partial).
template <typename I> I tilesOf(I rows, int64_t tile) { return (rows + (tile - 1)) / tile; }
template <typename I> I rowTiles(I rows) { return tilesOf(rows, Tiles::gemmBM); }

//===----------------------------------------------------------------------===//
// gemm_wgmma: one warpgroup, wgmma.mma_async m64nNk16 from shared-memory descriptors
//===----------------------------------------------------------------------===//

/// Shared-memory layout of a staged operand tile (rows x wgmmaBK bf16, K-major, no swizzle):
/// core matrix (rows 8i..8i+7, k 8j..8j+7) is the 128 bytes at (i * kWgmmaCoresK + j) * 128,
/// its row r % 8 at 16 * (r % 8). So core matrices adjacent in K are kWgmmaLBO bytes apart
/// (the descriptor's leading-dimension byte offset) and those adjacent in M or N kWgmmaSBO
/// (its stride-dimension byte offset). The buffer is [chunks][8] bf16: 16-byte chunk
/// (row r, k 8c..8c+7) of a stage is slot wgmmaSlot(r, c).
constexpr int64_t kWgmmaCoresK = Tiles::wgmmaBK / 8;
constexpr int64_t kWgmmaLBO = Tiles::coreBytes;
constexpr int64_t kWgmmaSBO = kWgmmaCoresK * Tiles::coreBytes;
template <typename I> I wgmmaSlot(I row, I chunk) {
  return row / Tiles::coreRows * (kWgmmaCoresK * Tiles::coreRows) + chunk * Tiles::coreRows +
         row % Tiles::coreRows;
}
/// Staging: chunk c = tid + i * wgmmaThreads of a tile (row-major, kWgmmaCoresK chunks per
/// row) is thread tid's in pass i; the A tile takes kWgmmaPassesA passes, a B tile
/// kWgmmaPassesB.
constexpr int64_t kWgmmaPassesA = Tiles::wgmmaBM * kWgmmaCoresK / Tiles::wgmmaThreads;
constexpr int64_t kWgmmaPassesB = Tiles::wgmmaBN * kWgmmaCoresK / Tiles::wgmmaThreads;
template <typename I> I wgmmaStageRow(I tid, int64_t i) {
  return (tid + i * Tiles::wgmmaThreads) / kWgmmaCoresK;
}
template <typename I> I wgmmaStageChunk(I tid) { return tid % kWgmmaCoresK; }
/// The matrix descriptor (PTX ISA, "Matrix Descriptor Format") of a tile whose first core
/// matrix is at shared address `addr`: start address >> 4 in bits 0-13, LBO >> 4 in bits
/// 16-29, SBO >> 4 in bits 32-45, base offset 0 (bits 49-51), swizzle mode 0 (bits 62-63,
/// none). The k16 step kk starts 2 * kk core matrices further along K.
constexpr uint64_t kWgmmaDescFields =
    uint64_t(kWgmmaLBO >> 4) << 16 | uint64_t(kWgmmaSBO >> 4) << 32;
template <typename I> I wgmmaDescStart(I addr, int64_t kk) {
  return (addr + kk * (Tiles::wgmmaK / 8) * kWgmmaLBO) / 16 % (1 << 14);
}
/// f32 accumulators per thread and weight operand (m64nNk16: N / 2), and the output element
/// of accumulator register i of thread tid: warp tid / 32 of the warpgroup owns rows
/// 16 (tid / 32) .. + 15; register i of lane l is row l / 4 + 8 (i / 2 % 2), column
/// 8 (i / 4) + 2 (l % 4) + i % 2.
constexpr int64_t kWgmmaAcc = Tiles::wgmmaBN / 2;
template <typename I> I wgmmaAccRow(I tid, int64_t i) {
  return tid / 32 * 16 + tid % 32 / 4 + 8 * (i / 2 % 2);
}
template <typename I> I wgmmaAccCol(I tid, int64_t i) { return tid % 4 * 2 + (8 * (i / 4) + i % 2); }
/// Row tiles of a group of `rows` rows for the wgmma GEMM.
template <typename I> I wgmmaRowTiles(I rows) { return tilesOf(rows, Tiles::wgmmaBM); }

//===----------------------------------------------------------------------===//
// gemv: gemvWarpCols columns per warp, the activation row staged gemvChunk at a time
//===----------------------------------------------------------------------===//

/// Output column c (0 .. gemvWarpCols) of warp `warp` in block `bx`: a block's warps own
/// consecutive pairs, so the launch's ceil(N / gemvCols) blocks cover [0, N) once.
template <typename I> I gemvCol(I bx, I warp, int64_t c) {
  return bx * Tiles::gemvCols + warp * Tiles::gemvWarpCols + c;
}
/// The activation elements [first, first + width) of a chunk that thread `tid` stages in
/// pass i of the staging loop (width = gemvVector, or 1 when K is not a multiple of it);
/// the chunk's gemvChunk elements take gemvVector / width passes.
template <typename I> I gemvStageFirst(I tid, I i, int64_t width) {
  return (i * Tiles::gemvThreads + tid) * width;
}

/// Quantized gemv: each lane step reads kGemvQuantLoad bytes per load, a whole q8 or q4 group
/// of kGemvQuantGroup elements (q8: two loads, q4: one) or 16 FP8 weights. The staged
/// activation chunk gets kGemvQuantPad f32 of padding after each lane's segment of `seg`
/// (32 or 16) floats, so that a quarter warp's eight 16-byte shared loads fall in distinct
/// banks. The slot of element e of a chunk in that layout, and the layout's size.
constexpr int64_t kGemvQuantLoad = 16, kGemvQuantGroup = 32, kGemvQuantPad = 4;
template <typename I> I gemvQuantSlot(I e, int64_t seg) {
  return e / seg * (seg + kGemvQuantPad) + e % seg;
}
constexpr int64_t gemvQuantChunkSlots(int64_t seg) {
  return Tiles::gemvChunk / seg * (seg + kGemvQuantPad);
}

//===----------------------------------------------------------------------===//
// attention: the keys a block visits
//===----------------------------------------------------------------------===//

// The int64_t side of the helpers the templates below call unqualified (the Ix side is in
// KernelBuilder.h, found by argument-dependent lookup).
inline bool ult(int64_t x, int64_t y) { return x < y; }
inline bool isNonZero(int64_t x) { return x != 0; }
inline int64_t select(bool c, int64_t x, int64_t y) { return c ? x : y; }
inline int64_t umin(int64_t x, int64_t y) { return x < y ? x : y; }
inline int64_t umax(int64_t x, int64_t y) { return x > y ? x : y; }
inline int64_t zeroOf(int64_t) { return 0; }

/// gemv: how many steps of `stride` a lane starting at `first` takes in a chunk of `len`
/// elements: ceil((len - first) / stride), 0 when first >= len.
template <typename I> I gemvLaneSteps(I len, I first, int64_t stride) {
  return (len - umin(first, len) + (stride - 1)) / stride;
}

template <typename I> struct KeyRange {
  I lo, hi;
};

/// Keys [lo, hi) that a block visits (first token t0, split z): every key one of its query
/// tokens t0 .. min(t0 + qTokens, T) - 1 may see (causal; a sliding window when `window` !=
/// 0), cut to split z's chunk [z * chunk, (z + 1) * chunk). Rows mask their own keys inside.
template <typename I>
KeyRange<I> attnKeyRange(I t0, I T, I start, I window, I z, I chunk, int64_t qTokens) {
  I zero = zeroOf(t0);
  I tLast = umin(t0 + qTokens, T) - 1;
  I pw = start + t0 + 1;
  I lo0 = select(ult(pw, window), zero, pw - window); // max(pw - window, 0), unsigned
  I kLo0 = select(isNonZero(window), lo0, zero);
  I kHi0 = start + tLast + 1;
  I zLo = z * chunk;
  return {umax(kLo0, zLo), umin(kHi0, zLo + chunk)};
}

/// Query row `i` (0 .. Tiles::attnRows) of a block: token t0 + i / G, head H0 + i % G.
template <typename I> I attnRowToken(I i, int64_t G) { return i / G; }
template <typename I> I attnRowHead(I i, int64_t G) { return i % G; }

//===----------------------------------------------------------------------===//
// Quantized weights (#moe.quant in MoeAttrs.td): where element k of a row lives
//===----------------------------------------------------------------------===//

/// q4: group g of a row is bytes [g * group / 2, (g + 1) * group / 2); byte j of it holds
/// element g * group + j in its low nibble and element g * group + group / 2 + j in its
/// high nibble. The byte of element k, and the shift that brings its nibble down (0 or 4).
template <typename I> I q4Byte(I k, int64_t group) {
  return k / group * (group / 2) + k % (group / 2);
}
template <typename I> I q4Shift(I k, int64_t group) { return k % group / (group / 2) * 4; }

} // namespace mlir::moe::gpu::index

#endif // MOEC_CODEGEN_GPU_KERNELS_INDEXMATH_H
