//===- Kernels.h - the GPU kernel library of moe-gpu-lower-to-launches ----*- C++ -*-===//
//
// Every device kernel of the GPU target, written once as MLIR (gpu.func with memref, scf,
// arith, math, vector, nvgpu and nvvm ops) and specialised per model: the weight storage type
// and the attention head geometry are substituted in, tile sizes are constants here.
// moe-gpu-lower-to-launches parses the text into a gpu.module and launches these kernels;
// the NVVM pipeline turns them into PTX.
//
// All memref parameters are fully dynamic with a unit innermost stride, so one kernel serves
// arena views, subviews and fresh allocations alike.
//
//===----------------------------------------------------------------------===//
#ifndef MOEC_CODEGEN_GPU_KERNELS_H
#define MOEC_CODEGEN_GPU_KERNELS_H

#include <cstdint>
#include <string>

namespace mlir::moe::gpu {

/// What the library is specialised for.
struct KernelConfig {
  std::string weightType = "bf16"; // "bf16" | "f16" | "f32": storage type of every weight
  int64_t headDim = 128;           // HD
  int64_t groupSize = 4;           // G = query heads per KV head
};

/// Tile geometry shared by the kernels and the launch code.
struct Tiles {
  // Tensor-core GEMM (mma.sync m16n8k16): 128 threads = 2x2 warps, each warp 32x32.
  static constexpr int64_t gemmBM = 64, gemmBN = 64, gemmBK = 32, gemmThreads = 128;
  // GEMV: one warp per output column, 8 warps per block.
  static constexpr int64_t gemvCols = 8, gemvThreads = 256;
  // Attention: 4 warps, 16 (token, head) query rows per block, KV tiles staged in smem.
  static constexpr int64_t attnThreads = 128, attnRows = 16;
  static constexpr int64_t elementwiseThreads = 256;
  /// Query tokens per attention block for a given G.
  static int64_t attnTokens(int64_t g) { return g >= attnRows ? 1 : attnRows / g; }
  /// Keys per attention tile: two f32 tiles (K and V) of at most 32 KB together, inside the
  /// 48 KB of static shared memory a kernel may use without opting in.
  static int64_t attnKeyTile(int64_t hd) { return hd <= 128 ? 32 : hd <= 4096 ? 4096 / hd : 1; }
};

/// The whole kernel library as MLIR text: `module attributes {gpu.container_module}`
/// holding `gpu.module @moec_kernels`.
std::string buildKernelLibrary(const KernelConfig &config);

} // namespace mlir::moe::gpu

#endif // MOEC_CODEGEN_GPU_KERNELS_H
