// kernel_index_math_test.cpp — a CPU emulation of the index math of the GPU kernel library
// (codegen/gpu/kernels/), checked against plain reference loops.
//
// WHAT THIS PROVES. Two halves are kept apart on purpose:
//   * "PTX ISA" functions restate, from the PTX ISA, which lane holds which matrix element for
//     ldmatrix.sync.aligned.m8n8.x4.b16 (no .trans) and mma.sync.aligned.m16n8k16.row.col with
//     .bf16 multiplicands and .f32 accumulators. They know nothing about the kernels.
//   * "KERNEL" emulations call the index formulas of codegen/gpu/kernels/IndexMath.h with
//     I = int64_t: the very templates the kernel builders instantiate with I = Ix to build
//     gemm_mma / gemm_mma_swiglu and attention. They cover which shared-memory cell each
//     (warp, lane, i) stages, the per-lane ldmatrix row/column, which ldmatrix register feeds
//     which mma operand, the accumulator -> (row, col) epilogue, the row tiles per expert and
//     the attention key range per split, the gemv columns per warp and activation staging.
//     The loop structure around them (row-tile selection,
//     the gather `perm[r] / k`, the online-softmax merge) is restated here from the builders.
// Running the copies on the spec model and comparing with a plain grouped GEMM (and plain
// attention) shows the formulas are consistent with the ISA's fragment layouts, for ragged M,
// N, K (K % 32 != 0), empty experts and several warps.
//
// WHAT IT DOES NOT PROVE. The control flow around the formulas is restated, not shared: if a
// builder's loops change, update the emulation too. It does not check MLIR's
// lowering of nvgpu.ldmatrix / nvvm.mma.sync (that the op's operand order is the PTX one), the
// bf16 rounding of the hardware, barriers, races or alignment (exact small integers are used,
// so the GEMM comparison is exact). Those need the GPU.
#include "codegen/gpu/kernels/IndexMath.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace {

using mlir::moe::gpu::Tiles;
namespace ix = mlir::moe::gpu::index;

//===----------------------------------------------------------------------===//
// PTX ISA models (restated from the ISA, independent of the kernels)
//===----------------------------------------------------------------------===//

/// One .b32 register holding two 16-bit elements, low half first.
using Reg = std::array<float, 2>;

/// ldmatrix.sync.aligned.m8n8.x4.shared.b16 (non-transposed): lanes 8i..8i+7 give the
/// addresses of rows 0..7 of matrix i; destination register i of lane l holds row l/4,
/// elements 2*(l%4) and 2*(l%4)+1 of matrix i. `rowAt(lane)` returns the 8 consecutive
/// 16-bit elements a lane's address points at.
template <typename RowAt> std::array<std::array<Reg, 4>, 32> ldmatrixX4(RowAt rowAt) {
  std::array<std::array<Reg, 4>, 32> out{};
  for (int lane = 0; lane < 32; ++lane)
    for (int i = 0; i < 4; ++i) {
      std::array<float, 8> row = rowAt(8 * i + lane / 4);
      out[lane][i] = {row[2 * (lane % 4)], row[2 * (lane % 4) + 1]};
    }
  return out;
}

/// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, per the ISA's fragment tables
/// (groupID = lane >> 2, tig = lane % 4):
///   A a0..a7 (regs 0..3, two each): row = groupID for a0,a1,a4,a5 else groupID+8;
///                                   col = tig*2 + (i&1), +8 for i >= 4.
///   B b0..b3 (regs 0..1):           row(k) = tig*2 + (i&1), +8 for i >= 2; col(n) = groupID.
///   C/D c0..c3:                     row = groupID for c0,c1 else groupID+8; col = tig*2+(i&1).
struct Mma {
  std::array<std::array<Reg, 4>, 32> a;
  std::array<std::array<Reg, 2>, 32> b;
  std::array<std::array<float, 4>, 32> c;
};
std::array<std::array<float, 4>, 32> mmaM16N8K16(const Mma &in) {
  float A[16][16], B[16][8], C[16][8];
  for (int lane = 0; lane < 32; ++lane) {
    int g = lane >> 2, t = lane % 4;
    for (int i = 0; i < 8; ++i) {
      int row = (i < 2 || (i >= 4 && i < 6)) ? g : g + 8;
      int col = t * 2 + (i & 1) + (i >= 4 ? 8 : 0);
      A[row][col] = in.a[lane][i / 2][i % 2];
    }
    for (int i = 0; i < 4; ++i)
      B[t * 2 + (i & 1) + (i >= 2 ? 8 : 0)][g] = in.b[lane][i / 2][i % 2];
    for (int i = 0; i < 4; ++i)
      C[i < 2 ? g : g + 8][t * 2 + (i & 1)] = in.c[lane][i];
  }
  std::array<std::array<float, 4>, 32> d{};
  for (int lane = 0; lane < 32; ++lane) {
    int g = lane >> 2, t = lane % 4;
    for (int i = 0; i < 4; ++i) {
      int row = i < 2 ? g : g + 8, col = t * 2 + (i & 1);
      float acc = C[row][col];
      for (int k = 0; k < 16; ++k)
        acc += A[row][k] * B[k][col];
      d[lane][i] = acc;
    }
  }
  return d;
}

//===----------------------------------------------------------------------===//
// KERNEL: gemm_mma / gemm_mma_swiglu (kernels/GemmMma.cpp) with IndexMath.h's formulas
//===----------------------------------------------------------------------===//

constexpr int BM = Tiles::gemmBM, BN = Tiles::gemmBN, BK = Tiles::gemmBK;
constexpr int LD = Tiles::gemmSmemPitch;
constexpr int MI = ix::kMmaTilesM, NI = ix::kMmaTilesN; // mma tiles per warp

struct GemmProblem {
  int M = 0, N = 0, K = 0;          // out [M, N]; rows M (= R when grouped)
  int G = 0;                        // groups (experts); 0 = dense
  std::vector<int> off;             // [G+1] expert offsets (grouped)
  bool gather = false;              // A row = perm[r] / kdiv
  std::vector<int> perm;            // [M]
  int kdiv = 1;
  std::vector<float> A;             // [rowsA, K]
  std::vector<std::vector<float>> W; // weights per operand: [max(G,1), N, K]
};

/// Emulates one launch: grid (ceil(N/BN), tiles) x Tiles::gemmThreads threads. Returns out [M, N] (unwritten
/// cells stay NaN). `swiglu` uses W[0] as gate, W[1] as up.
std::vector<float> emulateGemmMma(const GemmProblem &p, bool swiglu, int gridY) {
  const int nB = swiglu ? 2 : 1;
  std::vector<float> out(size_t(p.M) * p.N, std::numeric_limits<float>::quiet_NaN());
  auto Wat = [&](int b, int g, int n, int k) { return p.W[b][(size_t(g) * p.N + n) * p.K + k]; };
  const int gridX = (p.N + BN - 1) / BN;
  for (int by = 0; by < gridY; ++by)
    for (int bx = 0; bx < gridX; ++bx) {
      // Row tile selection (the %sel scf.if).
      int found = 0, g = 0, rowStart = 0, rowEnd = 0;
      if (p.G > 0) {
        int acc = 0;
        for (int e = 0; e < p.G; ++e) {
          int lo = p.off[e], hi = p.off[e + 1];
          int tiles = int(ix::rowTiles<int64_t>(hi - lo)), end = acc + tiles;
          bool take = by < end && found == 0;
          if (take) {
            found = 1;
            g = e;
            rowStart = lo + (by - acc) * BM;
            rowEnd = hi;
          }
          acc = end;
        }
      } else {
        rowStart = by * BM;
        found = rowStart < p.M;
        rowEnd = p.M;
      }
      if (!found)
        continue;
      const int n0 = bx * BN;
      // Per-thread accumulators: [thread][b][mi][ni][r].
      std::vector<float> acc(size_t(Tiles::gemmThreads) * nB * MI * NI * 4, 0.0f);
      auto accAt = [&](int tid, int b, int mi, int ni, int r) -> float & {
        return acc[(((size_t(tid) * nB + b) * MI + mi) * NI + ni) * 4 + r];
      };
      for (int k0 = 0; k0 < p.K; k0 += BK) {
        // Staging: warp w, lane l, i in [0, BM / warps): row stageRow(w, i), column l.
        std::vector<float> sa(BM * LD, -7.0f), sb[2] = {std::vector<float>(BM * LD, -7.0f),
                                                        std::vector<float>(BM * LD, -7.0f)};
        for (int tid = 0; tid < Tiles::gemmThreads; ++tid) {
          int lane = tid % 32, warp = tid / 32, gk = k0 + lane;
          bool kin = gk < p.K;
          for (int i = 0; i < BM / ix::kGemmWarps; ++i) {
            int r = int(ix::stageRow<int64_t>(warp, i)), grow = rowStart + r;
            bool ok = grow < rowEnd && kin;
            float v = 0;
            if (ok) {
              int arow = p.gather ? p.perm[grow] / p.kdiv : grow;
              v = p.A[size_t(arow) * p.K + gk];
            }
            sa[r * LD + lane] = v;
            int gn = n0 + r;
            bool okb = gn < p.N && kin;
            for (int b = 0; b < nB; ++b)
              sb[b][r * LD + lane] = okb ? Wat(b, g, gn, gk) : 0.0f;
          }
        }
        // (gpu.barrier)
        for (int warp = 0; warp < ix::kGemmWarps; ++warp) {
          int64_t wm32 = ix::warpRow0<int64_t>(warp), wn32 = ix::warpCol0<int64_t>(warp);
          for (int kk = 0; kk < ix::kMmaStepsK; ++kk) {
            // ldmatrix addresses per lane: IndexMath.h's ldmatrixA*/ldmatrixB*.
            std::array<std::array<std::array<Reg, 4>, 32>, MI> fa;
            for (int mi = 0; mi < MI; ++mi)
              fa[mi] = ldmatrixX4([&](int lane) {
                int64_t row = ix::ldmatrixARow<int64_t>(lane, wm32, mi);
                int64_t col = ix::ldmatrixACol<int64_t>(lane, kk);
                std::array<float, 8> v;
                for (int j = 0; j < 8; ++j)
                  v[j] = sa[row * LD + col + j];
                return v;
              });
            std::array<std::array<std::array<std::array<Reg, 4>, 32>, NI / 2>, 2> fb;
            for (int b = 0; b < nB; ++b)
              for (int nj = 0; nj < NI / 2; ++nj)
                fb[b][nj] = ldmatrixX4([&](int lane) {
                  int64_t row = ix::ldmatrixBRow<int64_t>(lane, wn32, nj);
                  int64_t col = ix::ldmatrixBCol<int64_t>(lane, kk);
                  std::array<float, 8> v;
                  for (int j = 0; j < 8; ++j)
                    v[j] = sb[b][row * LD + col + j];
                  return v;
                });
            // mma operands: A = the 4 registers of ldmatrix A[mi]; B = registers br, br+1
            // of ldmatrix B[b][mmaBLoad(ni)] with br = mmaBRegister(ni).
            for (int b = 0; b < nB; ++b)
              for (int mi = 0; mi < MI; ++mi)
                for (int ni = 0; ni < NI; ++ni) {
                  Mma in;
                  int br = int(ix::mmaBRegister(ni)), bl = int(ix::mmaBLoad(ni));
                  for (int lane = 0; lane < 32; ++lane) {
                    in.a[lane] = fa[mi][lane];
                    in.b[lane] = {fb[b][bl][lane][br], fb[b][bl][lane][br + 1]};
                    for (int r = 0; r < 4; ++r)
                      in.c[lane][r] = accAt(warp * 32 + lane, b, mi, ni, r);
                  }
                  auto d = mmaM16N8K16(in);
                  for (int lane = 0; lane < 32; ++lane)
                    for (int r = 0; r < 4; ++r)
                      accAt(warp * 32 + lane, b, mi, ni, r) = d[lane][r];
                }
          }
        }
        // (gpu.barrier)
      }
      // Epilogue: accumulator (mi, ni, r) at rowStart + accRow, n0 + accCol.
      for (int tid = 0; tid < Tiles::gemmThreads; ++tid) {
        int lane = tid % 32, warp = tid / 32;
        int64_t wm32 = ix::warpRow0<int64_t>(warp), wn32 = ix::warpCol0<int64_t>(warp);
        for (int mi = 0; mi < MI; ++mi)
          for (int ni = 0; ni < NI; ++ni)
            for (int r = 0; r < 4; ++r) {
              int row = rowStart + int(ix::accRow<int64_t>(lane, wm32, mi, r));
              int col = n0 + int(ix::accCol<int64_t>(lane, wn32, ni, r));
              if (row < rowEnd && col < p.N) {
                float v = accAt(tid, 0, mi, ni, r);
                if (swiglu) {
                  float u = accAt(tid, 1, mi, ni, r);
                  v = v / (1.0f + std::exp(-v)) * u;
                }
                out[size_t(row) * p.N + col] = v;
              }
            }
      }
    }
  return out;
}

/// Plain reference: out[r, n] = sum_k A[arow(r), k] * W[e(r)][n, k].
std::vector<float> referenceGemm(const GemmProblem &p, bool swiglu) {
  std::vector<float> out(size_t(p.M) * p.N);
  for (int r = 0; r < p.M; ++r) {
    int e = 0;
    if (p.G > 0)
      while (!(p.off[e] <= r && r < p.off[e + 1]))
        ++e;
    int arow = p.gather ? p.perm[r] / p.kdiv : r;
    for (int n = 0; n < p.N; ++n) {
      double s[2] = {0, 0};
      for (int b = 0; b < (swiglu ? 2 : 1); ++b)
        for (int k = 0; k < p.K; ++k)
          s[b] += double(p.A[size_t(arow) * p.K + k]) * p.W[b][(size_t(e) * p.N + n) * p.K + k];
      float v = float(s[0]);
      if (swiglu)
        v = v / (1.0f + std::exp(-v)) * float(s[1]);
      out[size_t(r) * p.N + n] = v;
    }
  }
  return out;
}

/// Small integers: exact in bf16 and in f32 sums, so the comparison can be exact.
std::vector<float> smallInts(size_t n, std::mt19937 &rng) {
  std::uniform_int_distribution<int> d(-3, 3);
  std::vector<float> v(n);
  for (float &x : v)
    x = float(d(rng));
  return v;
}

void expectSame(const std::vector<float> &got, const std::vector<float> &want, bool exact) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_FALSE(std::isnan(got[i])) << "output " << i << " never written";
    if (exact)
      ASSERT_EQ(got[i], want[i]) << "at " << i;
    else
      ASSERT_NEAR(got[i], want[i], 1e-4f * (1.0f + std::fabs(want[i]))) << "at " << i;
  }
}

TEST(GemmMmaIndexMath, ChunkStagingCoversEachTileCellOnceWithFixedRows) {
  // The 16-byte staging: passes x threads cover every (row, 8-column chunk) of a gemmBM x
  // gemmBK tile once, and a thread's rows do not depend on the K tile (the kernel gathers
  // them once per block).
  std::vector<int> seen(size_t(BM) * Tiles::gemmBK, 0);
  for (int64_t tid = 0; tid < Tiles::gemmThreads; ++tid)
    for (int64_t i = 0; i < ix::kStagePasses; ++i) {
      int64_t r = ix::stageChunkRow<int64_t>(tid, i), c = ix::stageChunkCol<int64_t>(tid);
      ASSERT_LT(r, BM);
      ASSERT_EQ(c % Tiles::gemmStageVector, 0);
      for (int64_t e = 0; e < Tiles::gemmStageVector; ++e)
        ++seen[size_t(r) * Tiles::gemmBK + size_t(c + e)];
    }
  for (size_t cell = 0; cell < seen.size(); ++cell)
    ASSERT_EQ(seen[cell], 1) << "row " << cell / Tiles::gemmBK << " col " << cell % Tiles::gemmBK;
}

TEST(GemmMmaIndexMath, QuantChunkCopiesCoverEachTileByteOnce) {
  // cp.async of quantized codes (q8: 32 bytes a row and K tile, q4: 16): the chunks of the
  // passes x threads below quantChunks cover every byte of a gemmBM-row tile once.
  for (int64_t rowBytes : {int64_t(32), int64_t(16)}) {
    std::vector<int> seen(size_t(BM) * rowBytes, 0);
    for (int64_t tid = 0; tid < Tiles::gemmThreads; ++tid)
      for (int64_t i = 0; i < ix::quantPasses(rowBytes); ++i) {
        if (tid + i * Tiles::gemmThreads >= ix::quantChunks(rowBytes))
          continue;
        int64_t r = ix::quantChunkRow<int64_t>(tid, i, rowBytes);
        int64_t c = ix::quantChunkCol<int64_t>(tid, rowBytes);
        ASSERT_LT(r, BM);
        ASSERT_EQ(c % ix::kQuantChunk, 0);
        ASSERT_LE(c + ix::kQuantChunk, rowBytes);
        for (int64_t e = 0; e < ix::kQuantChunk; ++e)
          ++seen[size_t(r * rowBytes + c + e)];
      }
    for (size_t at = 0; at < seen.size(); ++at)
      ASSERT_EQ(seen[at], 1) << rowBytes << " bytes a row: row " << at / rowBytes << " byte "
                             << at % rowBytes;
  }
}

TEST(GemmMmaIndexMath, QuantStagingChunkIsOneNibbleOfConsecutiveBytes) {
  // The dequantisation from shared memory reads a q4 staging chunk (8 elements at column c,
  // one group per K tile) as 8 consecutive bytes of its row's tile shifted by one amount:
  // element c + e must be in byte q4Byte(c) + e under shift q4Shift(c), inside the row's
  // gemmBK / 2 bytes.
  for (int64_t tid = 0; tid < Tiles::gemmThreads; ++tid) {
    int64_t c = ix::stageChunkCol<int64_t>(tid);
    for (int64_t e = 0; e < Tiles::gemmStageVector; ++e) {
      ASSERT_EQ(ix::q4Byte<int64_t>(c + e, Tiles::gemmBK), ix::q4Byte<int64_t>(c, Tiles::gemmBK) + e);
      ASSERT_EQ(ix::q4Shift<int64_t>(c + e, Tiles::gemmBK), ix::q4Shift<int64_t>(c, Tiles::gemmBK));
      ASSERT_LT(ix::q4Byte<int64_t>(c + e, Tiles::gemmBK), Tiles::gemmBK / 2);
    }
  }
}

TEST(GemmMmaIndexMath, DenseRaggedMNK) {
  std::mt19937 rng(1);
  for (auto [M, N, K] : std::vector<std::array<int, 3>>{{1, 8, 16}, {70, 100, 40}, {64, 64, 32},
                                                       {130, 72, 77}}) {
    GemmProblem p;
    p.M = M, p.N = N, p.K = K;
    p.A = smallInts(size_t(M) * K, rng);
    p.W = {smallInts(size_t(N) * K, rng)};
    expectSame(emulateGemmMma(p, false, (M + BM - 1) / BM), referenceGemm(p, false), true);
  }
}

TEST(GemmMmaIndexMath, GroupedGatherThroughPermutation) {
  // Tokens T with k = 2 experts each out of E = 5 (one expert unused): dispatch's stable
  // grouping, then the fused gather rows = x[perm[r] / k].
  std::mt19937 rng(2);
  const int T = 45, k = 2, E = 5, D = 48, F = 72;
  std::vector<int> ids(T * k);
  for (int t = 0; t < T; ++t) {
    int a = int(rng() % 4), b = int(rng() % 3);
    if (b >= a)
      ++b; // distinct, never expert 4
    ids[t * k] = a, ids[t * k + 1] = b;
  }
  GemmProblem p;
  p.M = T * k, p.N = F, p.K = D, p.G = E, p.gather = true, p.kdiv = k;
  p.off.assign(E + 1, 0);
  for (int e = 0; e < E; ++e) {
    p.off[e + 1] = p.off[e];
    for (int a = 0; a < T * k; ++a)
      if (ids[a] == e) {
        p.perm.push_back(a);
        ++p.off[e + 1];
      }
  }
  p.A = smallInts(size_t(T) * D, rng);
  p.W = {smallInts(size_t(E) * F * D, rng), smallInts(size_t(E) * F * D, rng)};
  int maxTiles = (p.M + BM - 1) / BM + E; // the launch's grid.y bound
  expectSame(emulateGemmMma(p, false, maxTiles), referenceGemm(p, false), true);
  expectSame(emulateGemmMma(p, true, maxTiles), referenceGemm(p, true), false);
}

//===----------------------------------------------------------------------===//
// KERNEL: gemm_wgmma / gemm_wgmma_swiglu (kernels/GemmWgmma.cpp) with IndexMath.h's formulas
//===----------------------------------------------------------------------===//

/// PTX ISA model of wgmma.mma_async m64nNk16 .f32.bf16.bf16 with K-major operands in shared
/// memory, no swizzle ("Matrix Descriptor Format", "Shared Memory Matrix Layout", "Register
/// Fragments"): descriptor bits 0-13 = start address >> 4, 16-29 = LBO >> 4, 32-45 = SBO >> 4;
/// element (row, k) of an operand at start + (row / 8) * SBO + (k / 8) * LBO + (row % 8) * 16 +
/// (k % 8) * 2 (core matrices of 8 rows x 16 bytes). D fragment: register i of thread t
/// (warp w = t / 32 of the warpgroup, lane l = t % 32) is D[16 w + l / 4 + 8 (i / 2 % 2)]
/// [8 (i / 4) + 2 (l % 4) + i % 2]. `smem(addr)` reads the element at byte address addr.
template <typename Smem>
void wgmmaModel(uint64_t descA, uint64_t descB, int n, Smem smem, std::vector<float> &acc /*[128][n/2]*/) {
  auto field = [](uint64_t d, int lo) { return int64_t((d >> lo) & 0x3fff) << 4; };
  ASSERT_EQ(descA >> 46, 0u) << "no base offset, no swizzle";
  ASSERT_EQ(descB >> 46, 0u);
  auto at = [&](uint64_t d, int row, int k) {
    return smem(field(d, 0) + row / 8 * field(d, 32) + k / 8 * field(d, 16) + row % 8 * 16 + k % 8 * 2);
  };
  for (int t = 0; t < 128; ++t)
    for (int i = 0; i < n / 2; ++i) {
      int l = t % 32, row = 16 * (t / 32) + l / 4 + 8 * (i / 2 % 2), col = 8 * (i / 4) + 2 * (l % 4) + i % 2;
      float &d = acc[size_t(t) * (n / 2) + i];
      for (int k = 0; k < 16; ++k)
        d += at(descA, row, k) * at(descB, col, k);
    }
}

/// Emulates one gemm_wgmma launch, grid (ceil(N / wgmmaBN), gridY) x one warpgroup: the row
/// tile choice (with wgmmaRowTiles), the staging slots (wgmmaStageRow/Chunk, wgmmaSlot) into a
/// byte image of the stage buffers, the descriptors (kWgmmaDescFields | wgmmaDescStart) handed
/// to the ISA model, the epilogue (wgmmaAccRow/Col). Unwritten cells stay NaN.
std::vector<float> emulateGemmWgmma(const GemmProblem &p, bool swiglu, int gridY) {
  const int nB = swiglu ? 2 : 1, WBM = Tiles::wgmmaBM, WBN = Tiles::wgmmaBN, WBK = Tiles::wgmmaBK;
  const int V = Tiles::gemmStageVector, nAcc = int(ix::kWgmmaAcc);
  std::vector<float> out(size_t(p.M) * p.N, std::numeric_limits<float>::quiet_NaN());
  auto Wat = [&](int b, int g, int n, int k) { return p.W[b][(size_t(g) * p.N + n) * p.K + k]; };
  // Shared memory: A's stage buffer at address 0, B's at 0x4000 and 0x8000 (one stage: the
  // emulation is sequential, so double buffering changes nothing).
  const int64_t aBase = 0, bBase[2] = {0x4000, 0x8000};
  for (int by = 0; by < gridY; ++by)
    for (int bx = 0; bx < (p.N + WBN - 1) / WBN; ++bx) {
      int found = 0, g = 0, rowStart = 0, rowEnd = 0;
      if (p.G > 0) {
        int acc = 0;
        for (int e = 0; e < p.G; ++e) {
          int lo = p.off[e], hi = p.off[e + 1];
          int end = acc + int(ix::wgmmaRowTiles<int64_t>(hi - lo));
          if (by < end && found == 0)
            found = 1, g = e, rowStart = lo + (by - acc) * WBM, rowEnd = hi;
          acc = end;
        }
      } else {
        rowStart = by * WBM, found = rowStart < p.M, rowEnd = p.M;
      }
      if (!found)
        continue;
      const int n0 = bx * WBN;
      std::vector<float> acc(size_t(nB) * 128 * nAcc, 0.0f);
      for (int k0 = 0; k0 < p.K; k0 += WBK) {
        std::vector<float> smem(0xC000 / 2, -7.0f); // bf16 slots as floats, by address / 2
        for (int tid = 0; tid < 128; ++tid) {
          int kk = k0 + int(ix::wgmmaStageChunk<int64_t>(tid)) * V;
          for (int i = 0; i < ix::kWgmmaPassesA; ++i) {
            int r = int(ix::wgmmaStageRow<int64_t>(tid, i)), grow = rowStart + r;
            int64_t slot = ix::wgmmaSlot<int64_t>(r, ix::wgmmaStageChunk<int64_t>(tid));
            for (int e = 0; e < V; ++e) {
              int arow = grow < rowEnd ? (p.gather ? p.perm[grow] / p.kdiv : grow) : 0;
              smem[size_t(aBase / 2 + slot * V + e)] =
                  grow < rowEnd && kk + e < p.K ? p.A[size_t(arow) * p.K + kk + e] : 0.0f;
            }
          }
          for (int b = 0; b < nB; ++b)
            for (int i = 0; i < ix::kWgmmaPassesB; ++i) {
              int r = int(ix::wgmmaStageRow<int64_t>(tid, i)), gn = n0 + r;
              int64_t slot = ix::wgmmaSlot<int64_t>(r, ix::wgmmaStageChunk<int64_t>(tid));
              for (int e = 0; e < V; ++e)
                smem[size_t(bBase[b] / 2 + slot * V + e)] =
                    gn < p.N && kk + e < p.K ? Wat(b, g, gn, kk + e) : 0.0f;
            }
        }
        for (int kk = 0; kk < WBK / Tiles::wgmmaK; ++kk)
          for (int b = 0; b < nB; ++b) {
            uint64_t da = uint64_t(ix::wgmmaDescStart<int64_t>(aBase, kk)) | ix::kWgmmaDescFields;
            uint64_t db = uint64_t(ix::wgmmaDescStart<int64_t>(bBase[b], kk)) | ix::kWgmmaDescFields;
            std::vector<float> part(acc.begin() + b * 128 * nAcc, acc.begin() + (b + 1) * 128 * nAcc);
            wgmmaModel(da, db, WBN, [&](int64_t a) { return smem[size_t(a / 2)]; }, part);
            std::copy(part.begin(), part.end(), acc.begin() + b * 128 * nAcc);
          }
      }
      for (int tid = 0; tid < 128; ++tid)
        for (int i = 0; i < nAcc; ++i) {
          int row = rowStart + int(ix::wgmmaAccRow<int64_t>(tid, i));
          int col = n0 + int(ix::wgmmaAccCol<int64_t>(tid, i));
          if (row >= rowEnd || col >= p.N)
            continue;
          float v = acc[size_t(tid) * nAcc + i];
          if (swiglu) {
            float u = acc[size_t(128 + tid) * nAcc + i];
            v = v / (1.0f + std::exp(-v)) * u;
          }
          out[size_t(row) * p.N + col] = v;
        }
    }
  return out;
}

TEST(GemmWgmmaIndexMath, StageSlotsAreTheDescriptorsCoreMatrixAddresses) {
  // Every (row, k) of a staged tile has one slot, and its byte address is the one the
  // descriptor's core-matrix rule gives (LBO along K, SBO along rows).
  for (int rows : {int(Tiles::wgmmaBM), int(Tiles::wgmmaBN)}) {
    std::vector<int> seen(size_t(rows) * ix::kWgmmaCoresK, 0);
    for (int64_t tid = 0; tid < Tiles::wgmmaThreads; ++tid)
      for (int64_t i = 0; i < rows * ix::kWgmmaCoresK / Tiles::wgmmaThreads; ++i) {
        int64_t r = ix::wgmmaStageRow<int64_t>(tid, i), c = ix::wgmmaStageChunk<int64_t>(tid);
        ASSERT_LT(r, rows);
        int64_t slot = ix::wgmmaSlot<int64_t>(r, c);
        ASSERT_LT(slot, rows * ix::kWgmmaCoresK);
        ++seen[size_t(slot)];
        EXPECT_EQ(slot * 16, r / 8 * ix::kWgmmaSBO + c * ix::kWgmmaLBO + r % 8 * 16);
      }
    for (int s : seen)
      ASSERT_EQ(s, 1);
  }
}

TEST(GemmWgmmaIndexMath, DenseRaggedMNK) {
  std::mt19937 rng(4);
  for (auto [M, N, K] : std::vector<std::array<int, 3>>{{1, 8, 16}, {70, 200, 40}, {64, 128, 32},
                                                       {130, 72, 96}}) {
    GemmProblem p;
    p.M = M, p.N = N, p.K = K;
    p.A = smallInts(size_t(M) * K, rng);
    p.W = {smallInts(size_t(N) * K, rng), smallInts(size_t(N) * K, rng)};
    int gridY = int(ix::wgmmaRowTiles<int64_t>(M));
    expectSame(emulateGemmWgmma(p, false, gridY), referenceGemm(p, false), true);
    expectSame(emulateGemmWgmma(p, true, gridY), referenceGemm(p, true), false);
  }
}

TEST(GemmWgmmaIndexMath, GroupedGatherThroughPermutation) {
  std::mt19937 rng(5);
  const int T = 45, k = 2, E = 5, D = 48, F = 136;
  GemmProblem p;
  p.M = T * k, p.N = F, p.K = D, p.G = E, p.gather = true, p.kdiv = k;
  std::vector<int> ids(T * k);
  for (int t = 0; t < T; ++t) {
    int a = int(rng() % 4), b = int(rng() % 3);
    if (b >= a)
      ++b;
    ids[t * k] = a, ids[t * k + 1] = b;
  }
  p.off.assign(E + 1, 0);
  for (int e = 0; e < E; ++e) {
    p.off[e + 1] = p.off[e];
    for (int a = 0; a < T * k; ++a)
      if (ids[a] == e)
        p.perm.push_back(a), ++p.off[e + 1];
  }
  p.A = smallInts(size_t(T) * D, rng);
  p.W = {smallInts(size_t(E) * F * D, rng), smallInts(size_t(E) * F * D, rng)};
  int gridY = int(ix::wgmmaRowTiles<int64_t>(p.M)) + E; // the launch's grid.y
  expectSame(emulateGemmWgmma(p, false, gridY), referenceGemm(p, false), true);
  expectSame(emulateGemmWgmma(p, true, gridY), referenceGemm(p, true), false);
}

//===----------------------------------------------------------------------===//
// KERNEL: attention key ranges (IndexMath.h's attnKeyRange); the mask and the split-K merge
// restated from kernels/Attention.cpp, the launch (chunk, splits) from
// launches/Dense.cpp
//===----------------------------------------------------------------------===//

struct Partial {
  std::vector<float> o;
  float m, l;
};

/// One (query row, split) of the attention kernel: keys [kLo, kHi) of the block, masked per
/// row, online softmax from m = -1e30, l = 0, o = 0. `s(j)` is the (pre-scaled) score.
template <typename Score>
Partial attentionSplit(int T, int start, int window, int chunk, int QT, int t, int z, int HD,
                       Score s, const std::vector<std::vector<float>> &V) {
  int t0 = (t / QT) * QT;
  ix::KeyRange<int64_t> keys = ix::attnKeyRange<int64_t>(t0, T, start, window, z, chunk, QT);
  int kLo = int(keys.lo), kHi = int(keys.hi);
  int p = start + t;
  Partial r{std::vector<float>(HD, 0.0f), -1.0e30f, 0.0f};
  for (int key = kLo; key < kHi; ++key) {
    bool ok = key <= p && (!window || key + window > p);
    float sc = s(key);
    float mn = ok ? std::max(r.m, sc) : r.m;
    float corr = std::exp(r.m - mn);
    float pe = ok ? std::exp(sc - mn) : 0.0f;
    r.l = r.l * corr + pe;
    for (int d = 0; d < HD; ++d)
      r.o[d] = std::fma(pe, V[key][d], r.o[d] * corr);
    r.m = mn;
  }
  return r;
}

TEST(AttentionIndexMath, SplitsWindowsAndCombineMatchPlainSoftmax) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  const int HD = 4, S = 600;
  std::vector<float> score(S);
  std::vector<std::vector<float>> V(S, std::vector<float>(HD));
  for (int j = 0; j < S; ++j) {
    score[j] = nd(rng);
    for (float &v : V[j])
      v = nd(rng);
  }
  auto sAt = [&](int j) { return score[j]; };
  struct Case { int T, start, window, chunk, QT; };
  for (Case c : {Case{1, 0, 0, 256, 4}, Case{1, 300, 0, 256, 4}, Case{1, 511, 0, 256, 4},
                 Case{1, 520, 8, 256, 4}, Case{1, 520, 300, 256, 4}, Case{37, 0, 0, S, 4},
                 Case{37, 200, 0, S, 5}, Case{37, 200, 8, S, 16}, Case{3, 255, 0, 256, 1}}) {
    // The launch: decode splits the key range in chunks, prefill uses one split of S.
    int splits = (c.start + c.T + c.chunk - 1) / c.chunk;
    for (int t = 0; t < c.T; ++t) {
      std::vector<Partial> parts;
      for (int z = 0; z < splits; ++z)
        parts.push_back(attentionSplit(c.T, c.start, c.window, c.chunk, c.QT, t, z, HD, sAt, V));
      // attention_combine
      float M = -1.0e30f, L = 0.0f;
      for (const Partial &q : parts)
        M = std::max(M, q.m);
      for (const Partial &q : parts)
        L = std::fma(std::exp(q.m - M), q.l, L);
      // Plain reference over j <= p && j > p - W.
      int p = c.start + t;
      double mx = -1e300, den = 0;
      for (int j = 0; j <= p; ++j)
        if (!c.window || j > p - c.window)
          mx = std::max(mx, double(score[j]));
      std::vector<double> num(HD, 0.0);
      for (int j = 0; j <= p; ++j)
        if (!c.window || j > p - c.window) {
          double w = std::exp(score[j] - mx);
          den += w;
          for (int d = 0; d < HD; ++d)
            num[d] += w * V[j][d];
        }
      for (int d = 0; d < HD; ++d) {
        float o = 0.0f;
        for (const Partial &q : parts)
          o = std::fma(std::exp(q.m - M), q.o[d], o);
        EXPECT_NEAR(o / L, num[d] / den, 1e-4) << "T=" << c.T << " start=" << c.start
                                               << " W=" << c.window << " t=" << t;
      }
    }
  }
}

/// paged_attention (kernels/Attention.cpp) calls attnKeyRange for its one row at position p as
/// a one-token sequence starting at p: (t0 = 0, T = 1, start = p, z = 0, chunk = p + 1,
/// qTokens = 1). The range must be exactly the row's visible keys, ascending: every key in it
/// passes the row's mask (causal, window) and none outside does, so no key is skipped and the
/// walk does not depend on anything but p and the window.
TEST(AttentionIndexMath, PagedRowKeyRangeIsExactlyItsVisibleKeys) {
  for (int64_t window : {0, 1, 3, 8, 16, 200})
    for (int64_t p = 0; p < 100; ++p) {
      ix::KeyRange<int64_t> keys = ix::attnKeyRange<int64_t>(0, 1, p, window, 0, p + 1, 1);
      for (int64_t key = 0; key < 128; ++key) {
        bool visible = key <= p && (!window || key + window > p);
        bool inRange = key >= keys.lo && key < keys.hi;
        ASSERT_EQ(visible, inRange) << "p " << p << " window " << window << " key " << key;
      }
    }
}

//===----------------------------------------------------------------------===//
// KERNEL: gemv columns and activation staging (IndexMath.h's gemvCol, gemvStageFirst); the
// chunk loop restated from kernels/Gemv.cpp, the grid (ceil(N / gemvCols), M) from
// launches/Dense.cpp and LaunchBuilder.h
//===----------------------------------------------------------------------===//

TEST(GemvIndexMath, ColumnsCoverNOnce) {
  const int64_t warps = Tiles::gemvThreads / 32;
  for (int64_t N : {1, 8, 15, 16, 17, 160, 1000}) {
    std::vector<int> seen(N, 0);
    for (int64_t bx = 0; bx < (N + Tiles::gemvCols - 1) / Tiles::gemvCols; ++bx)
      for (int64_t w = 0; w < warps; ++w)
        for (int64_t c = 0; c < Tiles::gemvWarpCols; ++c) {
          int64_t n = ix::gemvCol<int64_t>(bx, w, c);
          if (n < N)
            ++seen[n];
        }
    for (int64_t n = 0; n < N; ++n)
      ASSERT_EQ(seen[n], 1) << "column " << n << " of " << N;
  }
}

TEST(GemvIndexMath, StagingFillsEachChunkOnce) {
  for (int64_t width : {Tiles::gemvVector, int64_t(1)})
    for (int64_t len : {Tiles::gemvChunk, int64_t(8), int64_t(1000), int64_t(1)}) {
      if (len % width) // the vector path runs only when K (so every chunk) is a multiple
        continue;
      std::vector<int> seen(Tiles::gemvChunk, 0);
      for (int64_t i = 0; i < Tiles::gemvVector / width; ++i)
        for (int64_t tid = 0; tid < Tiles::gemvThreads; ++tid) {
          int64_t e = ix::gemvStageFirst<int64_t>(tid, i, width);
          if (e < len) // the kernel's guard
            for (int64_t j = 0; j < width; ++j)
              ++seen[e + j];
        }
      for (int64_t e = 0; e < Tiles::gemvChunk; ++e)
        ASSERT_EQ(seen[e], e < len ? 1 : 0) << "element " << e << ", width " << width;
    }
}

TEST(GemvIndexMath, ChunkedLaneSequenceIsTheUnchunkedOne) {
  // Each lane's k sequence through the chunks (k0 + kk, kk = lane * width, step 32 * width,
  // kk < min(K - k0, gemvChunk)) is the whole-row loop's, so the f32 sums round alike; also
  // in plain gemv's form, two steps per trip for gemvLaneSteps / 2 trips, then the odd one.
  for (int64_t width : {Tiles::gemvVector, int64_t(1)})
    for (int64_t K : {width * 5, int64_t(4096), int64_t(14336), int64_t(2056), int64_t(2312)}) {
      if (K % width)
        continue;
      const int64_t stride = 32 * width;
      for (int64_t lane = 0; lane < 32; ++lane) {
        std::vector<int64_t> chunked, paired, whole;
        for (int64_t k0 = 0; k0 < K; k0 += Tiles::gemvChunk) {
          int64_t len = std::min(K - k0, Tiles::gemvChunk), first = lane * width;
          for (int64_t kk = first; kk < len; kk += stride)
            chunked.push_back(k0 + kk);
          int64_t steps = ix::gemvLaneSteps<int64_t>(len, first, stride);
          for (int64_t i = 0; i < steps / 2; ++i) {
            paired.push_back(k0 + first + i * 2 * stride);
            paired.push_back(k0 + first + i * 2 * stride + stride);
          }
          if (steps % 2)
            paired.push_back(k0 + first + steps / 2 * 2 * stride);
        }
        ASSERT_EQ(paired, chunked) << "lane " << lane << ", K " << K;
        for (int64_t k = lane * width; k < K; k += 32 * width)
          whole.push_back(k);
        ASSERT_EQ(chunked, whole) << "lane " << lane << ", K " << K;
      }
    }
}

// Quantized gemv's padded staging (gemvQuantSlot): every chunk element gets its own slot
// inside the buffer, 8 staged elements stay consecutive and 16-byte aligned, and the 16-byte
// shared accesses of a quarter warp (8 lanes: one 128-byte shared wavefront) hit 8 distinct
// groups of 4 banks for the lanes' reads of their segment (lane l reads elements
// [l * seg, (l + 1) * seg) of each 32 * seg, 4 at a time), and for the staging stores of
// whole groups (thread t writes elements [8t, 8t + 8) as two 16-byte halves; FP8: at most
// 2-way). Banks: 32 of 4 bytes.
TEST(GemvIndexMath, QuantStagingSlotsAreDistinctAndBankConflictFree) {
  for (int64_t seg : {ix::kGemvQuantGroup, ix::kGemvQuantLoad}) {
    const int64_t slots = ix::gemvQuantChunkSlots(seg);
    std::vector<int> used(slots, 0);
    for (int64_t e = 0; e < Tiles::gemvChunk; ++e) {
      int64_t s = ix::gemvQuantSlot<int64_t>(e, seg);
      ASSERT_LT(s, slots);
      ++used[s];
      if (e % Tiles::gemvVector == 0) {
        EXPECT_EQ(s % 4, 0) << "element " << e;
        for (int64_t j = 1; j < Tiles::gemvVector; ++j)
          EXPECT_EQ(ix::gemvQuantSlot<int64_t>(e + j, seg), s + j);
      }
    }
    EXPECT_EQ(std::count(used.begin(), used.end(), 1), Tiles::gemvChunk);
    EXPECT_EQ(std::count(used.begin(), used.end(), 0), slots - Tiles::gemvChunk);
    auto bankGroup = [](int64_t slot) { return slot / 4 % 8; };
    for (int64_t base = 0; base < Tiles::gemvChunk; base += 32 * seg)
      for (int64_t p = 0; p < seg / 4; ++p)
        for (int64_t q = 0; q < 4; ++q) { // quarter warp q: lanes 8q .. 8q + 7
          std::vector<int> hit(8, 0);
          for (int64_t lane = 8 * q; lane < 8 * q + 8; ++lane)
            ++hit[bankGroup(ix::gemvQuantSlot<int64_t>(base + lane * seg, seg) + 4 * p)];
          EXPECT_EQ(std::count(hit.begin(), hit.end(), 1), 8)
              << "seg " << seg << ", piece " << p << ", quarter " << q;
        }
    for (int64_t half = 0; half < 2; ++half)
      for (int64_t t0 = 0; t0 < Tiles::gemvThreads; t0 += 8) {
        std::vector<int> hit(8, 0);
        for (int64_t t = t0; t < t0 + 8; ++t)
          ++hit[bankGroup(ix::gemvQuantSlot<int64_t>(ix::gemvStageFirst<int64_t>(t, 0, 8), seg) +
                          4 * half)];
        // FP8's 16-float segments hold two threads' halves: at most 2-way, once per chunk.
        EXPECT_LE(*std::max_element(hit.begin(), hit.end()), seg == ix::kGemvQuantGroup ? 1 : 2)
            << "seg " << seg << ", threads " << t0;
      }
  }
}

} // namespace

// q4 (#moe.quant in MoeAttrs.td, written here from the definition): "group g occupies bytes
// [16g, 16g+16): byte j holds element 32g+j in its low nibble and element 32g+16+j in its
// high nibble". The kernels' q4Byte / q4Shift find every element of a row in exactly that
// byte and nibble, and a run of 8 elements starting at a multiple of 8 (one dequantising
// load) in 8 consecutive bytes with one shift.
TEST(QuantIndexMath, Q4NibblesFollowTheFormat) {
  constexpr int64_t group = 32, K = 128;
  std::vector<int> seen(K / 2 * 2, 0); // [byte][nibble]
  for (int64_t g = 0; g < K / group; ++g)
    for (int64_t j = 0; j < 16; ++j) {
      const int64_t lo = group * g + j, hi = group * g + 16 + j;
      EXPECT_EQ(ix::q4Byte<int64_t>(lo, group), 16 * g + j);
      EXPECT_EQ(ix::q4Shift<int64_t>(lo, group), 0);
      EXPECT_EQ(ix::q4Byte<int64_t>(hi, group), 16 * g + j);
      EXPECT_EQ(ix::q4Shift<int64_t>(hi, group), 4);
    }
  for (int64_t k = 0; k < K; ++k)
    ++seen[2 * ix::q4Byte<int64_t>(k, group) + ix::q4Shift<int64_t>(k, group) / 4];
  EXPECT_TRUE(std::all_of(seen.begin(), seen.end(), [](int n) { return n == 1; }));
  for (int64_t k = 0; k < K; k += 8)
    for (int64_t i = 0; i < 8; ++i) {
      EXPECT_EQ(ix::q4Byte<int64_t>(k + i, group), ix::q4Byte<int64_t>(k, group) + i);
      EXPECT_EQ(ix::q4Shift<int64_t>(k + i, group), ix::q4Shift<int64_t>(k, group));
    }
}
