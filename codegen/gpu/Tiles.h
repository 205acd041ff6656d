//===- Tiles.h - the GPU kernels' tile geometry, one source of truth ------*- C++ -*-===//
//
// Every block size, tile size and per-thread unrolling of the GPU kernel library. The kernel
// builders (codegen/gpu/kernels/), the launch code (moe-gpu-lower-kernel-calls) and the index
// math test read these constants; no kernel body spells a tile size as a literal.
// Dependency-free on purpose, so that test/Codegen/GPU/kernel_index_math_test.cpp can include
// it without MLIR.
//
//===----------------------------------------------------------------------===//
#ifndef MOEC_CODEGEN_GPU_TILES_H
#define MOEC_CODEGEN_GPU_TILES_H

#include <cstdint>

namespace mlir::moe::gpu {

/// Tile geometry shared by the kernels and the launch code.
struct Tiles {
  // Tensor-core GEMM (mma.sync m16n8k16): a gemmBM x gemmBN output tile per block of
  // gemmThreads = 2x2 warps, each warp gemmWarpM x gemmWarpN; K staged gemmBK at a time into
  // gemmStagesFor(weights) shared-memory buffers per operand: 16 bytes (gemmStageVector
  // elements) per thread and copy when K is a multiple of gemmStageVector, else one element
  // per lane per staged row (gemmBK = 32 lanes). bf16 weights go by cp.async S - 1 K tiles
  // ahead of the multiply (S - 1 tiles in flight while one is multiplied); register-staged
  // operands one tile ahead. As many stages as fit in the 48 KB of static shared memory a
  // kernel may use without opting in to dynamic shared memory: 4 for one weight (A, W:
  // 40 KB), 3 for the SwiGLU variant's two (A, W, W3: 45 KB). At one row (decode through
  // the step) a block's bytes in flight are what hides the memory latency, so the plain
  // GEMM keeps the fourth stage (tools/gpu-check/README.md: the model).
  static constexpr int64_t gemmBM = 64, gemmBN = 64, gemmBK = 32, gemmThreads = 128;
  static constexpr int64_t gemmStages = 3, gemmStagesOneWeight = 4, gemmStageVector = 8;
  static constexpr int64_t gemmStagesFor(int64_t weights) {
    return weights == 1 ? gemmStagesOneWeight : gemmStages;
  }
  static constexpr int64_t gemmWarpM = 32, gemmWarpN = 32;
  /// Shared-memory row pitch (bf16 elements): gemmBK + 8 padding columns, so that ldmatrix's
  /// eight 16-byte rows fall in distinct banks; 80-byte rows keep every row address 16-byte
  /// aligned, as ldmatrix requires.
  static constexpr int64_t gemmSmemPitch = gemmBK + 8;
  /// Register cap (nvvm.maxnreg) of the GEMM kernels: the SwiGLU variant's two accumulator
  /// sets fit without spills (ptxas: 148 registers), and 3 blocks still fit per SM.
  static constexpr int64_t gemmMaxRegisters = 168;
  /// The mma.sync shape.
  static constexpr int64_t mmaM = 16, mmaN = 8, mmaK = 16;
  // Warpgroup GEMM (wgmma.mma_async, sm_90a only): one warpgroup of wgmmaThreads = 4 warps
  // per wgmmaBM x wgmmaBN output tile, one m64nNk16 (N = wgmmaBN) per k16 step; K staged
  // wgmmaBK at a time into wgmmaStages shared-memory buffers per operand, in the no-swizzle
  // core-matrix layout (IndexMath.h's wgmmaSlot): 4 + 8 KB per stage (SwiGLU: 4 + 16 KB).
  static constexpr int64_t wgmmaBM = 64, wgmmaBN = 128, wgmmaBK = 32, wgmmaThreads = 128;
  static constexpr int64_t wgmmaStages = 2, wgmmaK = 16;
  /// A core matrix: 8 rows of 16 bytes (8 bf16), stored as 128 contiguous bytes.
  static constexpr int64_t coreRows = 8, coreBytes = 128;
  // GEMV: 8 warps per block, gemvWarpCols output columns per warp (gemvCols per block); each
  // lane loads gemvVector consecutive elements per step (16 bytes of a 16-bit weight) when K
  // allows. The block stages the activation row in shared memory gemvChunk f32 at a time
  // (one gemvVector per thread), so each activation element is read from global memory once
  // per block, not once per column: activation bytes / weight bytes = 4 / (gemvCols * 2) for
  // bf16 weights, 12.5%. Two columns per warp, not more: Mixtral's k/v projections (N = 1024)
  // still give 64 blocks, and a warp keeps 2 (SwiGLU: 4) vector accumulators.
  static constexpr int64_t gemvThreads = 256, gemvWarpCols = 2, gemvVector = 8;
  static constexpr int64_t gemvCols = gemvThreads / 32 * gemvWarpCols;
  /// Register cap (nvvm.maxnreg) of the GEMVs: left to itself ptxas aims at 3 blocks per SM
  /// (80 registers) and spills gemv_swiglu's accumulators; 96 holds them (ptxas: 92) at 2
  /// blocks per SM, 16 warps with 64 16-byte loads each in flight.
  static constexpr int64_t gemvMaxRegisters = 96;
  static constexpr int64_t gemvChunk = gemvThreads * gemvVector;
  // Attention: 4 warps, 16 (token, head) query rows per block, KV tiles staged in smem.
  static constexpr int64_t attnThreads = 128, attnRows = 16;
  static constexpr int64_t elementwiseThreads = 256;
  // Routing: top_k runs one token per thread; dispatch one thread per expert in one block,
  // so it is also the largest expert count the GPU path supports.
  static constexpr int64_t topKThreads = 128, dispatchThreads = 256;
  /// Query tokens per attention block for a given G.
  static int64_t attnTokens(int64_t g) { return g >= attnRows ? 1 : attnRows / g; }
  /// Keys per attention tile: two f32 tiles (K and V) of at most 32 KB together, inside the
  /// 48 KB of static shared memory a kernel may use without opting in.
  static int64_t attnKeyTile(int64_t hd) { return hd <= 128 ? 32 : hd <= 4096 ? 4096 / hd : 1; }
};

static_assert(Tiles::gemmBK == 32, "gemm staging gives each lane one column of a row");
static_assert(Tiles::gemmBM == Tiles::gemmBN, "one staging loop fills the A and B tiles");
static_assert(Tiles::gemmBM * Tiles::gemmBK % (Tiles::gemmThreads * Tiles::gemmStageVector) == 0,
              "16-byte staging: every thread copies the same number of chunks per tile");
static_assert(Tiles::gemmStagesFor(2) >= 3 && Tiles::gemmStagesFor(1) >= 3,
              "the pipelined loops keep at least two K tiles in flight");
static_assert(3 * Tiles::gemmStagesFor(2) * Tiles::gemmBM * Tiles::gemmSmemPitch * 2 <= 48 * 1024,
              "gemm_mma_swiglu's A, W and W3 stage buffers fit in 48 KB of static shared memory");
static_assert(2 * Tiles::gemmStagesFor(1) * Tiles::gemmBM * Tiles::gemmSmemPitch * 2 <= 48 * 1024,
              "gemm_mma's A and W stage buffers fit in 48 KB of static shared memory");
static_assert(Tiles::gemmThreads / 32 ==
                  (Tiles::gemmBM / Tiles::gemmWarpM) * (Tiles::gemmBN / Tiles::gemmWarpN),
              "one warp per warp tile");
static_assert(Tiles::gemmBK % Tiles::mmaK == 0 && Tiles::gemmWarpM % Tiles::mmaM == 0 &&
                  Tiles::gemmWarpN % (2 * Tiles::mmaN) == 0,
              "warp tiles are whole mma tiles; one ldmatrix.x4 feeds two n-tiles");

static_assert(Tiles::wgmmaBM == 64 && Tiles::wgmmaThreads == 128,
              "one warpgroup, one m64 wgmma row block per tile");
static_assert(Tiles::wgmmaBN % 8 == 0 && Tiles::wgmmaBN <= 256, "a wgmma m64nNk16 shape");
static_assert(Tiles::wgmmaBK % Tiles::wgmmaK == 0 && Tiles::wgmmaBK % Tiles::gemmStageVector == 0,
              "whole k16 steps and whole 16-byte chunks per staged tile");
static_assert(Tiles::wgmmaStages * (Tiles::wgmmaBM + 2 * Tiles::wgmmaBN) * Tiles::wgmmaBK * 2 <=
                  48 * 1024,
              "the SwiGLU variant's stages fit the 48 KB of static shared memory");

} // namespace mlir::moe::gpu

#endif // MOEC_CODEGEN_GPU_TILES_H
