// ptxemu_test.cpp — the PTX interpreter (moec_ptxemu), instruction by instruction, against
// NVIDIA's PTX ISA manual.
//
// Every kernel below is hand-written PTX in the style LLVM's NVPTX backend emits, and every
// expected value is computed here from the manual's own definition of the instruction
// (fragment layouts, shfl.sync's pseudo-code, bfe's and shf's semantics, IEEE rounding), never
// from the compiler's kernels or from the interpreter. The section numbers quoted are those of
// the PTX ISA manual (9.x): "9.7.14.5.8 Matrix Fragments for mma.m16n8k16 with floating point
// type", "9.7.14.5.15 ldmatrix", "9.7.9.6 shfl.sync", ...
//
// The interpreter exports the CUDA driver API; the functions are declared here by hand.

#include "interp.h"
#include "moec/cuda.h"
#include "parser.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace cu = moec::cuda;

extern "C" {
cu::CUresult cuInit(unsigned);
cu::CUresult cuDeviceGetCount(int *);
cu::CUresult cuDeviceGet(cu::CUdevice *, int);
cu::CUresult cuDevicePrimaryCtxRetain(cu::CUcontext *, cu::CUdevice);
cu::CUresult cuCtxSetCurrent(cu::CUcontext);
cu::CUresult cuModuleLoadDataEx(cu::CUmodule *, const void *, unsigned, int *, void **);
cu::CUresult cuModuleUnload(cu::CUmodule);
cu::CUresult cuModuleGetFunction(cu::CUfunction *, cu::CUmodule, const char *);
cu::CUresult cuLaunchKernel(cu::CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                            unsigned, unsigned, cu::CUstream, void **, void **);
cu::CUresult cuStreamCreate(cu::CUstream *, unsigned);
cu::CUresult cuStreamSynchronize(cu::CUstream);
cu::CUresult cuStreamDestroy_v2(cu::CUstream);
cu::CUresult cuMemAlloc_v2(cu::CUdeviceptr *, std::size_t);
cu::CUresult cuMemFree_v2(cu::CUdeviceptr);
cu::CUresult cuMemcpyHtoD_v2(cu::CUdeviceptr, const void *, std::size_t);
cu::CUresult cuMemcpyDtoH_v2(void *, cu::CUdeviceptr, std::size_t);
cu::CUresult cuMemsetD8_v2(cu::CUdeviceptr, unsigned char, std::size_t);
const char *moec_ptxemu_last_error();
}

namespace {

using cu::CUdeviceptr;
using cu::CUfunction;
using cu::CUmodule;
using cu::CUresult;

// ------------------------------------------------------------------------------------------
// Helpers: context, modules, buffers, launches.
// ------------------------------------------------------------------------------------------

std::string last_error() {
  const char *e = moec_ptxemu_last_error();
  return e ? std::string(e) : std::string();
}

std::string lower(std::string s) {
  for (char &c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

void init_driver() {
  static bool done = false;
  if (done) return;
  ASSERT_EQ(cuInit(0), 0) << last_error();
  int count = 0;
  ASSERT_EQ(cuDeviceGetCount(&count), 0);
  ASSERT_GE(count, 1);
  cu::CUdevice dev = 0;
  ASSERT_EQ(cuDeviceGet(&dev, 0), 0);
  cu::CUcontext ctx = nullptr;
  ASSERT_EQ(cuDevicePrimaryCtxRetain(&ctx, dev), 0);
  ASSERT_EQ(cuCtxSetCurrent(ctx), 0);
  done = true;
}

class Module {
public:
  explicit Module(const std::string &ptx) {
    result_ = cuModuleLoadDataEx(&mod_, ptx.c_str(), 0, nullptr, nullptr);
    if (result_ != 0) error_ = last_error();
  }
  ~Module() {
    if (result_ == 0 && mod_) cuModuleUnload(mod_);
  }
  Module(const Module &) = delete;
  Module &operator=(const Module &) = delete;
  bool ok() const { return result_ == 0; }
  CUresult result() const { return result_; }
  const std::string &error() const { return error_; }
  CUfunction fn(const char *name) const {
    CUfunction f = nullptr;
    CUresult r = cuModuleGetFunction(&f, mod_, name);
    EXPECT_EQ(r, 0) << "cuModuleGetFunction(" << name << "): " << last_error();
    return r == 0 ? f : nullptr;
  }

private:
  CUmodule mod_ = nullptr;
  CUresult result_ = 0;
  std::string error_;
};

template <class T> class Buf {
public:
  explicit Buf(std::size_t n, unsigned char fill = 0) : n_(n) {
    EXPECT_EQ(cuMemAlloc_v2(&ptr_, bytes()), 0);
    EXPECT_EQ(cuMemsetD8_v2(ptr_, fill, bytes()), 0);
  }
  explicit Buf(const std::vector<T> &v) : n_(v.size()) {
    EXPECT_EQ(cuMemAlloc_v2(&ptr_, bytes()), 0);
    EXPECT_EQ(cuMemcpyHtoD_v2(ptr_, v.data(), bytes()), 0);
  }
  ~Buf() {
    if (ptr_) cuMemFree_v2(ptr_);
  }
  Buf(const Buf &) = delete;
  Buf &operator=(const Buf &) = delete;
  std::size_t bytes() const { return n_ * sizeof(T); }
  CUdeviceptr *arg() { return &ptr_; }
  CUdeviceptr ptr() const { return ptr_; }
  std::vector<T> get() const {
    std::vector<T> v(n_);
    EXPECT_EQ(cuMemcpyDtoH_v2(v.data(), ptr_, bytes()), 0);
    return v;
  }

private:
  CUdeviceptr ptr_ = 0;
  std::size_t n_;
};

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};

CUresult launch(CUfunction f, Dim3 grid, Dim3 block, std::vector<void *> args,
                unsigned shared_bytes = 0) {
  return cuLaunchKernel(f, grid.x, grid.y, grid.z, block.x, block.y, block.z, shared_bytes,
                        nullptr, args.empty() ? nullptr : args.data(), nullptr);
}

#define LOAD_MODULE(var, ptx)                                                                    \
  init_driver();                                                                                 \
  Module var(ptx);                                                                               \
  ASSERT_TRUE(var.ok()) << "module load failed (" << var.result() << "): " << var.error()

#define LAUNCH_OK(...)                                                                           \
  do {                                                                                           \
    CUresult r_ = launch(__VA_ARGS__);                                                           \
    ASSERT_EQ(r_, 0) << "launch failed: " << last_error();                                       \
  } while (0)

// Replace every "@KEY@" in a PTX template.
std::string subst(std::string s, const std::vector<std::pair<std::string, std::string>> &kv) {
  for (const auto &[k, v] : kv) {
    const std::string key = "@" + k + "@";
    for (std::size_t p = s.find(key); p != std::string::npos; p = s.find(key, p + v.size()))
      s.replace(p, key.size(), v);
  }
  return s;
}

// ------------------------------------------------------------------------------------------
// Numeric reference helpers (IEEE-754 as the manual requires: ".rn mantissa LSB rounds to
// nearest even", ".rz ... towards zero", ".rm ... towards negative infinity", ".rp ... towards
// positive infinity").
// ------------------------------------------------------------------------------------------

uint32_t fbits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float bitsf(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
float bf16_to_float(uint16_t h) { return bitsf(static_cast<uint32_t>(h) << 16); }

// f32 -> bf16 with round-to-nearest-even (non-NaN inputs).
uint16_t f32_to_bf16_rne(uint32_t u) {
  uint32_t lsb = (u >> 16) & 1u;
  return static_cast<uint16_t>((u + 0x7fffu + lsb) >> 16);
}

// An exactly known real value x (held exactly in a double) rounded to f32 in a direction.
enum Round { RN, RM, RZ, RP };
float round_to_f32(double x, Round mode) {
  float n = static_cast<float>(x); // round-to-nearest-even (default FP environment)
  if (static_cast<double>(n) == x) return n;
  float down = static_cast<double>(n) > x ? std::nextafter(n, -INFINITY) : n;
  float up = static_cast<double>(n) < x ? std::nextafter(n, INFINITY) : n;
  switch (mode) {
  case RN: return n;
  case RM: return down;
  case RP: return up;
  case RZ: return x > 0 ? down : up;
  }
  return n;
}

// An exactly known double rounded to bf16 (8 significant bits) to nearest even. Normal range only.
uint16_t double_to_bf16_rne(double x) {
  if (x == 0) return std::signbit(x) ? 0x8000 : 0;
  int e;
  std::frexp(x, &e); // |x| = f * 2^e, f in [0.5, 1)
  double scaled = std::ldexp(x, 8 - e); // 8 significant bits left of the point
  double r = std::ldexp(std::nearbyint(scaled), e - 8); // nearbyint: ties to even
  float f = static_cast<float>(r); // exact
  return static_cast<uint16_t>(fbits(f) >> 16);
}

// ==========================================================================================
// 1. mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
// ==========================================================================================
//
// Manual, "Matrix Fragments for mma.m16n8k16 with floating point type":
//   groupID = %laneid >> 2, threadID_in_group = %laneid % 4
//   A (.bf16, four .b32 registers holding a0..a7, "low to high"):
//     row = groupID       for ai where 0 <= i < 2 || 4 <= i < 6, groupID + 8 otherwise
//     col = threadID_in_group*2 + (i & 1)       for ai where i < 4
//           threadID_in_group*2 + (i & 1) + 8   for ai where i >= 4
//   B (.bf16, two .b32 registers holding b0..b3):
//     row = threadID_in_group*2 + (i & 1)       for bi where i < 2
//           threadID_in_group*2 + (i & 1) + 8   for bi where i >= 2
//     col = groupID
//   C/D (.f32, four registers c0..c3):
//     row = groupID for ci where i < 2, groupID + 8 for ci where i >= 2
//     col = threadID_in_group*2 + (i & 1)
//
// A is stored row-major (16x16 bf16), B is stored as B^T row-major (8 rows of 16 k-values:
// the ".col" layout), so each pair (a0,a1), (b0,b1), ... is one aligned 32-bit load, with the
// lower-indexed element in the low half. C and D are 16x8 f32 row-major.
//   A/B^T byte offset of a0/b0 = (g*16 + 2t)*2 = g*32 + t*4;  a2: +8 rows = +256;
//   a4: +8 cols = +16; a6: +272; b2: +8 k = +16.   C offset = (g*8 + 2t)*4 = g*32 + t*8.
const char *kMmaPtx = R"(
.version 7.0
.target sm_80
.address_size 64

.visible .entry mma_bf16(
	.param .u64 mma_bf16_param_0,
	.param .u64 mma_bf16_param_1,
	.param .u64 mma_bf16_param_2,
	.param .u64 mma_bf16_param_3
)
{
	.reg .b32 %r<20>;
	.reg .f32 %f<10>;
	.reg .b64 %rd<16>;

	ld.param.u64 %rd1, [mma_bf16_param_0];
	ld.param.u64 %rd2, [mma_bf16_param_1];
	ld.param.u64 %rd3, [mma_bf16_param_2];
	ld.param.u64 %rd4, [mma_bf16_param_3];
	cvta.to.global.u64 %rd5, %rd1;
	cvta.to.global.u64 %rd6, %rd2;
	cvta.to.global.u64 %rd7, %rd3;
	cvta.to.global.u64 %rd8, %rd4;
	mov.u32 %r1, %tid.x;
	shr.u32 %r2, %r1, 2;            // groupID
	and.b32 %r3, %r1, 3;            // threadID_in_group
	shl.b32 %r4, %r2, 5;            // g*32
	shl.b32 %r5, %r3, 2;            // t*4
	add.s32 %r6, %r4, %r5;
	cvt.u64.u32 %rd9, %r6;
	add.s64 %rd10, %rd5, %rd9;
	ld.global.u32 %r10, [%rd10];      // a0,a1: row g,   cols 2t,2t+1
	ld.global.u32 %r11, [%rd10+256];  // a2,a3: row g+8, cols 2t,2t+1
	ld.global.u32 %r12, [%rd10+16];   // a4,a5: row g,   cols 2t+8,2t+9
	ld.global.u32 %r13, [%rd10+272];  // a6,a7: row g+8, cols 2t+8,2t+9
	add.s64 %rd11, %rd6, %rd9;
	ld.global.u32 %r14, [%rd11];      // b0,b1: k 2t,2t+1,   n g
	ld.global.u32 %r15, [%rd11+16];   // b2,b3: k 2t+8,2t+9, n g
	shl.b32 %r7, %r3, 3;            // t*8
	add.s32 %r8, %r4, %r7;
	cvt.u64.u32 %rd12, %r8;
	add.s64 %rd13, %rd7, %rd12;
	ld.global.f32 %f1, [%rd13];       // c0: row g,   col 2t
	ld.global.f32 %f2, [%rd13+4];     // c1: row g,   col 2t+1
	ld.global.f32 %f3, [%rd13+256];   // c2: row g+8, col 2t
	ld.global.f32 %f4, [%rd13+260];   // c3: row g+8, col 2t+1
	mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%f5, %f6, %f7, %f8}, {%r10, %r11, %r12, %r13}, {%r14, %r15}, {%f1, %f2, %f3, %f4};
	add.s64 %rd14, %rd8, %rd12;
	st.global.v2.f32 [%rd14], {%f5, %f6};
	st.global.v2.f32 [%rd14+256], {%f7, %f8};
	ret;
}
)";

void run_mma_case(unsigned seed, bool structured) {
  LOAD_MODULE(m, kMmaPtx);
  CUfunction f = m.fn("mma_bf16");
  ASSERT_NE(f, nullptr);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  std::vector<uint16_t> a(16 * 16), bt(8 * 16);
  std::vector<float> c(16 * 8);
  for (int r = 0; r < 16; ++r)
    for (int k = 0; k < 16; ++k)
      a[r * 16 + k] = structured ? f32_to_bf16_rne(fbits(static_cast<float>(r * 16 + k)))
                                 : f32_to_bf16_rne(fbits(dist(rng)));
  for (int n = 0; n < 8; ++n)
    for (int k = 0; k < 16; ++k) // B[k][n] = bt[n][k]; structured: B = one-hot picking k == 2n+1
      bt[n * 16 + k] = structured ? (k == 2 * n + 1 ? 0x3f80 /*1.0*/ : 0)
                                  : f32_to_bf16_rne(fbits(dist(rng)));
  for (int i = 0; i < 16 * 8; ++i) c[i] = structured ? 1000.0f * static_cast<float>(i) : dist(rng);

  Buf<uint16_t> da(a), dbt(bt);
  Buf<float> dc(c), dd(16 * 8, 0xff);
  LAUNCH_OK(f, Dim3{1, 1, 1}, Dim3{32, 1, 1}, {da.arg(), dbt.arg(), dc.arg(), dd.arg()});
  std::vector<float> d = dd.get();
  for (int r = 0; r < 16; ++r)
    for (int n = 0; n < 8; ++n) {
      double ref = c[r * 8 + n], mag = std::fabs(ref);
      for (int k = 0; k < 16; ++k) {
        double p = static_cast<double>(bf16_to_float(a[r * 16 + k])) *
                   static_cast<double>(bf16_to_float(bt[n * 16 + k]));
        ref += p;
        mag += std::fabs(p);
      }
      EXPECT_NEAR(d[r * 8 + n], ref, 1e-5 * mag + 1e-30) << "D[" << r << "][" << n << "]";
    }
}

TEST(PtxEmuMma, M16N8K16Bf16RandomMatchesDoubleReference) { run_mma_case(12345, false); }
TEST(PtxEmuMma, M16N8K16Bf16RandomSecondSeed) { run_mma_case(777, false); }
// A[r][k] = 16r + k, B picks k = 2n+1 for column n: D[r][n] = C[r][n] + 16r + 2n + 1 exactly.
// A wrong A or B fragment layout yields a different k or row, visibly.
TEST(PtxEmuMma, M16N8K16Bf16StructuredExact) { run_mma_case(1, true); }

// ==========================================================================================
// 2. ldmatrix.sync.aligned.m8n8.{x4,x2.trans}.shared.b16
// ==========================================================================================
//
// Manual (ldmatrix): "The eight addresses required for each matrix are provided by eight
// threads ... Each address corresponds to the start of a matrix row. Addresses addr0–addr7
// correspond to the rows of the first matrix, addresses addr8–addr15 correspond to the rows of
// the second matrix" (.x4: threads 0–7, 8–15, 16–23, 24–31; .x2: threads 0–7, 8–15).
// "Each thread in a warp loads fragments of a row, with thread 0 receiving the first fragment in
// its register r ... A group of four threads loads an entire row" (Figure 104: thread T holds
// row T/4, elements 2*(T%4) and 2*(T%4)+1). "Each component of the vector expression holds a
// fragment from the corresponding matrix." ".trans indicates that the matrix is loaded in
// column-major format."
//
// Shared memory holds 32 row slots of 16 bytes (copied from global, one slot per lane). Lane L
// supplies the address of slot perm(L) = (5L + 3) mod 32, so rows are deliberately not
// contiguous.
const char *kLdmatrixPtx = R"(
.version 7.0
.target sm_80
.address_size 64

.visible .entry ldmatrix_x4(
	.param .u64 ldmatrix_x4_param_0,
	.param .u64 ldmatrix_x4_param_1
)
{
	.reg .b32 %r<16>;
	.reg .b64 %rd<12>;
	.shared .align 16 .b8 ldm_tile[512];

	ld.param.u64 %rd1, [ldmatrix_x4_param_0];
	ld.param.u64 %rd2, [ldmatrix_x4_param_1];
	cvta.to.global.u64 %rd3, %rd1;
	cvta.to.global.u64 %rd4, %rd2;
	mov.u32 %r1, %tid.x;
	mul.wide.u32 %rd5, %r1, 16;
	add.s64 %rd6, %rd3, %rd5;
	ld.global.v4.u32 {%r2, %r3, %r4, %r5}, [%rd6];
	mov.u64 %rd7, ldm_tile;
	add.s64 %rd8, %rd7, %rd5;
	st.shared.v4.u32 [%rd8], {%r2, %r3, %r4, %r5};
	bar.sync 0;
	mad.lo.s32 %r6, %r1, 5, 3;
	and.b32 %r7, %r6, 31;           // slot (5*lane + 3) % 32
	mul.wide.u32 %rd9, %r7, 16;
	add.s64 %rd10, %rd7, %rd9;
	ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%r8, %r9, %r10, %r11}, [%rd10];
	add.s64 %rd11, %rd4, %rd5;
	st.global.v4.u32 [%rd11], {%r8, %r9, %r10, %r11};
	ret;
}

.visible .entry ldmatrix_x2_trans(
	.param .u64 ldmatrix_x2_trans_param_0,
	.param .u64 ldmatrix_x2_trans_param_1
)
{
	.reg .b32 %r<16>;
	.reg .b64 %rd<14>;
	.shared .align 16 .b8 ldm_tile[512];

	ld.param.u64 %rd1, [ldmatrix_x2_trans_param_0];
	ld.param.u64 %rd2, [ldmatrix_x2_trans_param_1];
	cvta.to.global.u64 %rd3, %rd1;
	cvta.to.global.u64 %rd4, %rd2;
	mov.u32 %r1, %tid.x;
	mul.wide.u32 %rd5, %r1, 16;
	add.s64 %rd6, %rd3, %rd5;
	ld.global.v4.u32 {%r2, %r3, %r4, %r5}, [%rd6];
	mov.u64 %rd7, ldm_tile;
	add.s64 %rd8, %rd7, %rd5;
	st.shared.v4.u32 [%rd8], {%r2, %r3, %r4, %r5};
	bar.sync 0;
	and.b32 %r12, %r1, 15;          // lanes 16..31 repeat the addresses of lanes 0..15
	mad.lo.s32 %r6, %r12, 5, 3;
	and.b32 %r7, %r6, 31;
	mul.wide.u32 %rd9, %r7, 16;
	add.s64 %rd10, %rd7, %rd9;
	ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%r8, %r9}, [%rd10];
	mul.wide.u32 %rd12, %r1, 8;
	add.s64 %rd11, %rd4, %rd12;
	st.global.v2.u32 [%rd11], {%r8, %r9};
	ret;
}
)";

std::vector<uint16_t> ldmatrix_input() {
  std::vector<uint16_t> in(32 * 8);
  for (int s = 0; s < 32; ++s)
    for (int c = 0; c < 8; ++c) in[s * 8 + c] = static_cast<uint16_t>(0x1000 + s * 16 + c);
  return in;
}
int ldm_slot(int lane) { return (5 * lane + 3) % 32; }

TEST(PtxEmuLdmatrix, X4DistributesRowsPerManual) {
  LOAD_MODULE(m, kLdmatrixPtx);
  CUfunction f = m.fn("ldmatrix_x4");
  ASSERT_NE(f, nullptr);
  std::vector<uint16_t> in = ldmatrix_input();
  Buf<uint16_t> din(in);
  Buf<uint32_t> dout(32 * 4, 0xee);
  LAUNCH_OK(f, Dim3{}, Dim3{32, 1, 1}, {din.arg(), dout.arg()});
  std::vector<uint32_t> out = dout.get();
  for (int t = 0; t < 32; ++t)
    for (int j = 0; j < 4; ++j) {
      int row = t / 4, col = 2 * (t % 4);
      int slot = ldm_slot(8 * j + row); // row `row` of matrix j was addressed by lane 8j+row
      uint32_t want = in[slot * 8 + col] | (static_cast<uint32_t>(in[slot * 8 + col + 1]) << 16);
      EXPECT_EQ(out[t * 4 + j], want) << std::hex << "lane " << std::dec << t << " reg " << j;
    }
}

TEST(PtxEmuLdmatrix, X2TransLoadsColumnMajor) {
  LOAD_MODULE(m, kLdmatrixPtx);
  CUfunction f = m.fn("ldmatrix_x2_trans");
  ASSERT_NE(f, nullptr);
  std::vector<uint16_t> in = ldmatrix_input();
  Buf<uint16_t> din(in);
  Buf<uint32_t> dout(32 * 2, 0xee);
  LAUNCH_OK(f, Dim3{}, Dim3{32, 1, 1}, {din.arg(), dout.arg()});
  std::vector<uint32_t> out = dout.get();
  // Memory matrix j: M_j[r][c] = in[slot(8j + r)*8 + c]. Loaded column-major, thread t holds
  // element (t/4, 2(t%4)+i) of M_j^T, i.e. M_j[2(t%4)+i][t/4].
  for (int t = 0; t < 32; ++t)
    for (int j = 0; j < 2; ++j) {
      auto elem = [&](int r, int c) { return in[ldm_slot(8 * j + r) * 8 + c]; };
      uint32_t want = elem(2 * (t % 4), t / 4) |
                      (static_cast<uint32_t>(elem(2 * (t % 4) + 1, t / 4)) << 16);
      EXPECT_EQ(out[t * 2 + j], want) << "lane " << t << " reg " << j;
    }
}

// ==========================================================================================
// 3. shfl.sync
// ==========================================================================================
//
// Manual, shfl.sync semantics (verbatim pseudo-code):
//   lane[4:0] = laneid; bval[4:0] = b[4:0]; cval[4:0] = c[4:0]; segmask[4:0] = c[12:8];
//   maxLane = (lane & segmask) | (cval & ~segmask);  minLane = (lane & segmask);
//   .up:   j = lane - bval; pval = (j >= maxLane);
//   .down: j = lane + bval; pval = (j <= maxLane);
//   .bfly: j = lane ^ bval; pval = (j <= maxLane);
//   .idx:  j = minLane | (bval[4:0] & ~segmask[4:0]); pval = (j <= maxLane);
//   if (!pval) j = lane;  d = SourceA[j];  if (dest predicate selected) p = pval;
enum ShflMode { UP = 0, DOWN = 1, BFLY = 2, IDX = 3 };
void shfl_ref(ShflMode mode, const std::vector<uint32_t> &src, uint32_t b, uint32_t c,
              std::vector<uint32_t> &d, std::vector<uint32_t> &p) {
  d.assign(32, 0);
  p.assign(32, 0);
  int bval = static_cast<int>(b & 31), cval = static_cast<int>(c & 31);
  int segmask = static_cast<int>((c >> 8) & 31);
  for (int lane = 0; lane < 32; ++lane) {
    int maxLane = (lane & segmask) | (cval & ~segmask);
    int minLane = lane & segmask;
    int j = lane;
    bool pval = false;
    switch (mode) {
    case UP: j = lane - bval; pval = j >= maxLane; break;
    case DOWN: j = lane + bval; pval = j <= maxLane; break;
    case BFLY: j = lane ^ bval; pval = j <= maxLane; break;
    case IDX: j = minLane | (bval & ~segmask); pval = j <= maxLane; break;
    }
    if (!pval) j = lane;
    d[lane] = src[j];
    p[lane] = pval ? 1 : 0;
  }
}

const char *kShflPtx = R"(
.version 7.0
.target sm_80
.address_size 64

// Warp sums two ways: xor butterfly (every lane ends with the total) and shift-down (only
// lane 0 is guaranteed the total; the others hold what the manual's clamping gives them).
.visible .entry shfl_reduce(
	.param .u64 shfl_reduce_param_0,
	.param .u64 shfl_reduce_param_1,
	.param .u64 shfl_reduce_param_2
)
{
	.reg .b32 %r<40>;
	.reg .b64 %rd<12>;

	ld.param.u64 %rd1, [shfl_reduce_param_0];
	ld.param.u64 %rd2, [shfl_reduce_param_1];
	ld.param.u64 %rd3, [shfl_reduce_param_2];
	cvta.to.global.u64 %rd4, %rd1;
	cvta.to.global.u64 %rd5, %rd2;
	cvta.to.global.u64 %rd6, %rd3;
	mov.u32 %r1, %tid.x;
	mul.wide.u32 %rd7, %r1, 4;
	add.s64 %rd8, %rd4, %rd7;
	ld.global.u32 %r2, [%rd8];
	shfl.sync.bfly.b32 %r3, %r2, 16, 31, -1;
	add.s32 %r4, %r3, %r2;
	shfl.sync.bfly.b32 %r5, %r4, 8, 31, -1;
	add.s32 %r6, %r5, %r4;
	shfl.sync.bfly.b32 %r7, %r6, 4, 31, -1;
	add.s32 %r8, %r7, %r6;
	shfl.sync.bfly.b32 %r9, %r8, 2, 31, -1;
	add.s32 %r10, %r9, %r8;
	shfl.sync.bfly.b32 %r11, %r10, 1, 31, -1;
	add.s32 %r12, %r11, %r10;
	add.s64 %rd9, %rd5, %rd7;
	st.global.u32 [%rd9], %r12;
	shfl.sync.down.b32 %r13, %r2, 16, 31, -1;
	add.s32 %r14, %r13, %r2;
	shfl.sync.down.b32 %r15, %r14, 8, 31, -1;
	add.s32 %r16, %r15, %r14;
	shfl.sync.down.b32 %r17, %r16, 4, 31, -1;
	add.s32 %r18, %r17, %r16;
	shfl.sync.down.b32 %r19, %r18, 2, 31, -1;
	add.s32 %r20, %r19, %r18;
	shfl.sync.down.b32 %r21, %r20, 1, 31, -1;
	add.s32 %r22, %r21, %r20;
	add.s64 %rd10, %rd6, %rd7;
	st.global.u32 [%rd10], %r22;
	ret;
}

// All four modes with b and c from parameters (register operands) and the predicate output.
// out[(mode*32 + lane)*2 + {0,1}] = {d, p}
.visible .entry shfl_modes(
	.param .u64 shfl_modes_param_0,
	.param .u64 shfl_modes_param_1,
	.param .u32 shfl_modes_param_2,
	.param .u32 shfl_modes_param_3
)
{
	.reg .pred %p<5>;
	.reg .b32 %r<20>;
	.reg .b64 %rd<10>;

	ld.param.u64 %rd1, [shfl_modes_param_0];
	ld.param.u64 %rd2, [shfl_modes_param_1];
	ld.param.u32 %r2, [shfl_modes_param_2];
	ld.param.u32 %r3, [shfl_modes_param_3];
	cvta.to.global.u64 %rd3, %rd1;
	cvta.to.global.u64 %rd4, %rd2;
	mov.u32 %r1, %tid.x;
	mul.wide.u32 %rd5, %r1, 4;
	add.s64 %rd6, %rd3, %rd5;
	ld.global.u32 %r4, [%rd6];
	shfl.sync.up.b32 %r5|%p1, %r4, %r2, %r3, -1;
	selp.u32 %r6, 1, 0, %p1;
	shfl.sync.down.b32 %r7|%p2, %r4, %r2, %r3, -1;
	selp.u32 %r8, 1, 0, %p2;
	shfl.sync.bfly.b32 %r9|%p3, %r4, %r2, %r3, -1;
	selp.u32 %r10, 1, 0, %p3;
	shfl.sync.idx.b32 %r11|%p4, %r4, %r2, %r3, -1;
	selp.u32 %r12, 1, 0, %p4;
	mul.wide.u32 %rd7, %r1, 8;
	add.s64 %rd8, %rd4, %rd7;
	st.global.v2.u32 [%rd8], {%r5, %r6};
	st.global.v2.u32 [%rd8+256], {%r7, %r8};
	st.global.v2.u32 [%rd8+512], {%r9, %r10};
	st.global.v2.u32 [%rd8+768], {%r11, %r12};
	ret;
}
)";

TEST(PtxEmuShfl, BflyAndDownReductions) {
  LOAD_MODULE(m, kShflPtx);
  CUfunction f = m.fn("shfl_reduce");
  ASSERT_NE(f, nullptr);
  std::vector<uint32_t> in(32);
  for (uint32_t i = 0; i < 32; ++i) in[i] = i * i * 7 + 3 + (i << 20);
  Buf<uint32_t> din(in), dbfly(32, 0xcc), ddown(32, 0xcc);
  LAUNCH_OK(f, Dim3{}, Dim3{32, 1, 1}, {din.arg(), dbfly.arg(), ddown.arg()});
  uint32_t total = 0;
  for (uint32_t v : in) total += v;
  std::vector<uint32_t> bfly = dbfly.get(), down = ddown.get();
  for (int l = 0; l < 32; ++l) EXPECT_EQ(bfly[l], total) << "bfly lane " << l;
  // Host model of the down reduction, step by step with the manual's semantics.
  std::vector<uint32_t> v = in, d, p;
  for (uint32_t off : {16u, 8u, 4u, 2u, 1u}) {
    shfl_ref(DOWN, v, off, 31, d, p);
    for (int l = 0; l < 32; ++l) v[l] += d[l];
  }
  EXPECT_EQ(down[0], total);
  for (int l = 0; l < 32; ++l) EXPECT_EQ(down[l], v[l]) << "down lane " << l;
}

TEST(PtxEmuShfl, AllModesClampAndSegmentsPerManualPseudocode) {
  LOAD_MODULE(m, kShflPtx);
  CUfunction f = m.fn("shfl_modes");
  ASSERT_NE(f, nullptr);
  std::vector<uint32_t> in(32);
  for (uint32_t i = 0; i < 32; ++i) in[i] = 0xabc00000u + i * 0x101u;
  Buf<uint32_t> din(in);
  struct Case {
    uint32_t b, c;
  } cases[] = {
      {1, 0x1f},   {3, 0x1f},   {16, 0x1f},  {0, 0x1f},  {31, 0x1f},  {37, 0x1f}, // b[4:0] only
      {1, 0x0},    {2, 0x0},    {4, 0x0f},   {5, 0x0f},                            // clamp 15
      {1, 0x181f}, {5, 0x181f}, {3, 0x1800}, {2, 0x1c03}, {6, 0x101f}, {9, 0x1007}, // segments
  };
  for (const Case &cs : cases) {
    Buf<uint32_t> dout(4 * 32 * 2, 0xdd);
    uint32_t b = cs.b, c = cs.c;
    LAUNCH_OK(f, Dim3{}, Dim3{32, 1, 1}, {din.arg(), dout.arg(), &b, &c});
    std::vector<uint32_t> out = dout.get();
    for (int mode = 0; mode < 4; ++mode) {
      std::vector<uint32_t> d, p;
      shfl_ref(static_cast<ShflMode>(mode), in, b, c, d, p);
      static const char *names[] = {"up", "down", "bfly", "idx"};
      for (int l = 0; l < 32; ++l) {
        EXPECT_EQ(out[(mode * 32 + l) * 2], d[l])
            << names[mode] << " b=" << b << " c=0x" << std::hex << c << std::dec << " lane " << l;
        EXPECT_EQ(out[(mode * 32 + l) * 2 + 1], p[l])
            << "pred " << names[mode] << " b=" << b << " c=0x" << std::hex << c << std::dec
            << " lane " << l;
      }
    }
  }
}

// ==========================================================================================
// 3b. Divergence inside a warp: reconvergence, and collectives under partial member masks
// ==========================================================================================
//
// The interpreter runs a warp's lanes together and splits them where a branch diverges. The
// manual's model is per thread ("each thread has its own program counter"; since sm_70 a
// warp's threads may diverge and reconverge at any point), so the results below are each
// lane's own sequential result, computed here; shfl.sync/vote.sync name their lanes by
// membermask ("the behavior of shfl.sync is undefined if the executing thread is not in
// membermask"; a lane may read only from lanes taking part).
const char *kDivergePtx = R"(
.version 7.0
.target sm_80
.address_size 64

// Per lane: a loop of tid%5+1 trips whose body branches on the trip's parity, then a nested
// branch (lanes < 12, and among them odd lanes), then a full-warp butterfly sum, which needs
// every lane back together. out[2t] = the lane's value, out[2t+1] = its warp's sum.
.visible .entry diverge(
	.param .u64 diverge_param_0
)
{
	.reg .pred %p<6>;
	.reg .b32 %r<20>;
	.reg .b64 %rd<6>;

	ld.param.u64 %rd1, [diverge_param_0];
	cvta.to.global.u64 %rd2, %rd1;
	mov.u32 %r1, %tid.x;
	and.b32 %r11, %r1, 31;
	rem.u32 %r2, %r11, 5;
	add.s32 %r2, %r2, 1;
	mov.u32 %r3, 0;
	mov.u32 %r4, %r1;
$L__loop:
	and.b32 %r5, %r3, 1;
	setp.eq.s32 %p1, %r5, 0;
	@%p1 bra $L__even;
	mul.lo.s32 %r4, %r4, 3;
	bra.uni $L__next;
$L__even:
	add.s32 %r4, %r4, 7;
$L__next:
	add.s32 %r3, %r3, 1;
	setp.lt.u32 %p2, %r3, %r2;
	@%p2 bra $L__loop;
	setp.lt.u32 %p3, %r11, 12;
	@!%p3 bra $L__high;
	and.b32 %r6, %r1, 1;
	setp.eq.s32 %p4, %r6, 1;
	@%p4 bra $L__odd;
	xor.b32 %r4, %r4, 0x55;
	bra.uni $L__join;
$L__odd:
	shl.b32 %r4, %r4, 1;
	bra.uni $L__join;
$L__high:
	sub.s32 %r4, %r4, 1000;
$L__join:
	shfl.sync.bfly.b32 %r7, %r4, 16, 31, -1;
	add.s32 %r8, %r7, %r4;
	shfl.sync.bfly.b32 %r7, %r8, 8, 31, -1;
	add.s32 %r8, %r7, %r8;
	shfl.sync.bfly.b32 %r7, %r8, 4, 31, -1;
	add.s32 %r8, %r7, %r8;
	shfl.sync.bfly.b32 %r7, %r8, 2, 31, -1;
	add.s32 %r8, %r7, %r8;
	shfl.sync.bfly.b32 %r7, %r8, 1, 31, -1;
	add.s32 %r8, %r7, %r8;
	mul.wide.u32 %rd3, %r1, 8;
	add.s64 %rd4, %rd2, %rd3;
	st.global.v2.u32 [%rd4], {%r4, %r8};
	ret;
}

// Lanes 16..31 exchange with their xor-1 neighbour under membermask 0xffff0000 while lanes
// 0..15, on the other side of a branch, rotate by one under membermask 0x0000ffff.
.visible .entry halves(
	.param .u64 halves_param_0,
	.param .u64 halves_param_1
)
{
	.reg .pred %p<3>;
	.reg .b32 %r<10>;
	.reg .b64 %rd<8>;

	ld.param.u64 %rd1, [halves_param_0];
	ld.param.u64 %rd2, [halves_param_1];
	cvta.to.global.u64 %rd3, %rd1;
	cvta.to.global.u64 %rd4, %rd2;
	mov.u32 %r1, %tid.x;
	mul.wide.u32 %rd5, %r1, 4;
	add.s64 %rd6, %rd3, %rd5;
	ld.global.u32 %r2, [%rd6];
	setp.lt.u32 %p1, %r1, 16;
	@%p1 bra $L__low;
	shfl.sync.bfly.b32 %r3, %r2, 1, 31, -65536;
	bra.uni $L__done;
$L__low:
	add.s32 %r4, %r1, 1;
	and.b32 %r5, %r4, 15;
	shfl.sync.idx.b32 %r3, %r2, %r5, 31, 0xffff;
$L__done:
	add.s64 %rd7, %rd4, %rd5;
	st.global.u32 [%rd7], %r3;
	ret;
}

// Odd lanes only: out[t] = vote.ballot(t % 3 == 0) over membermask 0xaaaaaaaa; even lanes 0.
.visible .entry ballot_odd(
	.param .u64 ballot_odd_param_0
)
{
	.reg .pred %p<3>;
	.reg .b32 %r<6>;
	.reg .b64 %rd<5>;

	ld.param.u64 %rd1, [ballot_odd_param_0];
	cvta.to.global.u64 %rd2, %rd1;
	mov.u32 %r1, %tid.x;
	rem.u32 %r2, %r1, 3;
	setp.eq.s32 %p1, %r2, 0;
	and.b32 %r3, %r1, 1;
	setp.eq.s32 %p2, %r3, 0;
	mov.u32 %r4, 0;
	@%p2 bra $L__skip;
	vote.sync.ballot.b32 %r4, %p1, 0xaaaaaaaa;
$L__skip:
	mul.wide.u32 %rd3, %r1, 4;
	add.s64 %rd4, %rd2, %rd3;
	st.global.u32 [%rd4], %r4;
	ret;
}

// Lanes 0..15 read lane 20 under membermask 0x0000ffff: lane 20 is not taking part.
.visible .entry shfl_outside_mask(
	.param .u64 shfl_outside_mask_param_0
)
{
	.reg .pred %p<3>;
	.reg .b32 %r<6>;
	.reg .b64 %rd<5>;

	ld.param.u64 %rd1, [shfl_outside_mask_param_0];
	cvta.to.global.u64 %rd2, %rd1;
	mov.u32 %r1, %tid.x;
	setp.ge.u32 %p1, %r1, 16;
	@%p1 bra $L__end;
	shfl.sync.idx.b32 %r2, %r1, 20, 31, 0xffff;
	mul.wide.u32 %rd3, %r1, 4;
	add.s64 %rd4, %rd2, %rd3;
	st.global.u32 [%rd4], %r2;
$L__end:
	ret;
}
)";

TEST(PtxEmuDivergence, LoopsAndNestedBranchesReconvergeForAWarpShuffle) {
  LOAD_MODULE(m, kDivergePtx);
  CUfunction f = m.fn("diverge");
  ASSERT_NE(f, nullptr);
  Buf<uint32_t> dout(2 * 64, 0xcc);
  LAUNCH_OK(f, Dim3{}, Dim3{64, 1, 1}, {dout.arg()});
  std::vector<uint32_t> out = dout.get(), want(64);
  for (uint32_t t = 0; t < 64; ++t) {
    uint32_t lane = t % 32, acc = t;
    for (uint32_t i = 0; i < lane % 5 + 1; ++i) acc = (i % 2) ? acc * 3 : acc + 7;
    if (lane >= 12) acc -= 1000;
    else acc = (t % 2) ? acc << 1 : acc ^ 0x55;
    want[t] = acc;
  }
  for (uint32_t t = 0; t < 64; ++t) {
    uint32_t sum = 0;
    for (uint32_t l = 0; l < 32; ++l) sum += want[t / 32 * 32 + l];
    EXPECT_EQ(out[2 * t], want[t]) << "thread " << t;
    EXPECT_EQ(out[2 * t + 1], sum) << "warp sum, thread " << t;
  }
}

TEST(PtxEmuDivergence, ShufflesUnderPartialMasksOnBothSidesOfABranch) {
  LOAD_MODULE(m, kDivergePtx);
  CUfunction f = m.fn("halves");
  ASSERT_NE(f, nullptr);
  std::vector<uint32_t> in(32);
  for (uint32_t i = 0; i < 32; ++i) in[i] = 0x5000u + i * 17u;
  Buf<uint32_t> din(in), dout(32, 0xcc);
  LAUNCH_OK(f, Dim3{}, Dim3{32, 1, 1}, {din.arg(), dout.arg()});
  std::vector<uint32_t> out = dout.get();
  for (uint32_t l = 0; l < 32; ++l) {
    uint32_t want = l < 16 ? in[(l + 1) % 16] : in[l ^ 1];
    EXPECT_EQ(out[l], want) << "lane " << l;
  }
}

TEST(PtxEmuDivergence, VoteBallotCountsOnlyTheLanesOfItsMask) {
  LOAD_MODULE(m, kDivergePtx);
  CUfunction f = m.fn("ballot_odd");
  ASSERT_NE(f, nullptr);
  Buf<uint32_t> dout(32, 0xcc);
  LAUNCH_OK(f, Dim3{}, Dim3{32, 1, 1}, {dout.arg()});
  std::vector<uint32_t> out = dout.get();
  uint32_t ballot = 0;
  for (uint32_t l = 1; l < 32; l += 2)
    if (l % 3 == 0) ballot |= 1u << l;
  for (uint32_t l = 0; l < 32; ++l) EXPECT_EQ(out[l], l % 2 ? ballot : 0u) << "lane " << l;
}

TEST(PtxEmuDivergence, ShuffleFromALaneOutsideTheMaskFails) {
  LOAD_MODULE(m, kDivergePtx);
  CUfunction f = m.fn("shfl_outside_mask");
  ASSERT_NE(f, nullptr);
  Buf<uint32_t> dout(32, 0);
  CUresult r = launch(f, Dim3{}, Dim3{32, 1, 1}, {dout.arg()});
  EXPECT_NE(r, 0);
  EXPECT_NE(last_error().find("not taking part"), std::string::npos) << last_error();
}

// ==========================================================================================
// 4. bar.sync with shared memory across warps
// ==========================================================================================
//
// Manual (bar/barrier): "bar.sync ... causes executing thread to wait for all non-exited threads
// from its warp and marks warps' arrival at barrier"; with no thread count "all threads in the
// CTA participate in the barrier"; "bar{.cta}.sync ... guarantee that memory accesses requested
// by the threads prior to the barrier are performed relative to all threads participating in
// the barrier". 128 threads = 4 warps; each reads the slot of thread (t+33) mod 128, which lies
// in another warp, in a 4-iteration loop (store, barrier, load, barrier).
// out[t] = in[ntid - 1 - t], each thread's value passing through the shared array `smem`
// (declared by the caller: statically or as dynamic shared memory) across a bar.sync.
std::string reverse_through_shared_ptx(const std::string &kernel, const std::string &smem) {
  std::string text = R"(.visible .entry @K@(
	.param .u64 @K@_param_0,
	.param .u64 @K@_param_1
)
{
	.reg .b32 %r<8>;
	.reg .b64 %rd<14>;

	ld.param.u64 %rd1, [@K@_param_0];
	ld.param.u64 %rd2, [@K@_param_1];
	cvta.to.global.u64 %rd3, %rd1;
	cvta.to.global.u64 %rd4, %rd2;
	mov.u32 %r1, %tid.x;
	mov.u32 %r2, %ntid.x;
	mul.wide.u32 %rd5, %r1, 4;
	add.s64 %rd6, %rd3, %rd5;
	ld.global.u32 %r3, [%rd6];
	mov.u64 %rd7, @S@;
	add.s64 %rd8, %rd7, %rd5;
	st.shared.u32 [%rd8], %r3;
	bar.sync 0;
	sub.s32 %r4, %r2, %r1;
	add.s32 %r5, %r4, -1;
	mul.wide.u32 %rd9, %r5, 4;
	add.s64 %rd10, %rd7, %rd9;
	ld.shared.u32 %r6, [%rd10];
	add.s64 %rd11, %rd4, %rd5;
	st.global.u32 [%rd11], %r6;
	ret;
}
)";
  return subst(text, {{"K", kernel}, {"S", smem}});
}

const std::string kBarrierPtx = R"(
.version 7.0
.target sm_80
.address_size 64

.visible .entry bar_rotate(
	.param .u64 bar_rotate_param_0,
	.param .u64 bar_rotate_param_1
)
{
	.reg .pred %p<2>;
	.reg .b32 %r<10>;
	.reg .b64 %rd<12>;
	.shared .align 4 .b8 bar_slots[512];

	ld.param.u64 %rd1, [bar_rotate_param_0];
	ld.param.u64 %rd2, [bar_rotate_param_1];
	cvta.to.global.u64 %rd3, %rd1;
	cvta.to.global.u64 %rd4, %rd2;
	mov.u32 %r1, %tid.x;
	mul.wide.u32 %rd5, %r1, 4;
	add.s64 %rd6, %rd3, %rd5;
	ld.global.u32 %r2, [%rd6];
	mov.u64 %rd7, bar_slots;
	add.s64 %rd8, %rd7, %rd5;       // &s[tid]
	add.s32 %r3, %r1, 33;
	and.b32 %r4, %r3, 127;
	mul.wide.u32 %rd9, %r4, 4;
	add.s64 %rd10, %rd7, %rd9;      // &s[(tid + 33) % 128]
	mov.u32 %r5, 0;
$L__BB0_1:
	st.shared.u32 [%rd8], %r2;
	bar.sync 0;
	ld.shared.u32 %r6, [%rd10];
	bar.sync 0;
	mad.lo.s32 %r2, %r6, 3, %r5;
	add.s32 %r5, %r5, 1;
	setp.ge.u32 %p1, %r5, 4;
	@%p1 bra $L__BB0_2;
	bra.uni $L__BB0_1;
$L__BB0_2:
	add.s64 %rd11, %rd4, %rd5;
	st.global.u32 [%rd11], %r2;
	ret;
}

// Dynamic shared memory (size from the launch): out[t] = in[ntid - 1 - t] through shared.
.extern .shared .align 16 .b8 dyn_smem[];

)" + reverse_through_shared_ptx("dyn_reverse", "dyn_smem");

TEST(PtxEmuBarrier, BarSyncOrdersSharedAccessesAcrossWarps) {
  LOAD_MODULE(m, kBarrierPtx);
  CUfunction f = m.fn("bar_rotate");
  ASSERT_NE(f, nullptr);
  std::vector<uint32_t> in(128);
  for (uint32_t i = 0; i < 128; ++i) in[i] = 1000u + i * 17u;
  Buf<uint32_t> din(in), dout(128, 0);
  LAUNCH_OK(f, Dim3{}, Dim3{128, 1, 1}, {din.arg(), dout.arg()});
  std::vector<uint32_t> v = in;
  for (uint32_t it = 0; it < 4; ++it) {
    std::vector<uint32_t> next(128);
    for (int t = 0; t < 128; ++t) next[t] = v[(t + 33) % 128] * 3u + it;
    v = next;
  }
  std::vector<uint32_t> out = dout.get();
  for (int t = 0; t < 128; ++t) EXPECT_EQ(out[t], v[t]) << "thread " << t;
}

// A static .shared array at module scope (where LLVM's NVPTX backend puts static __shared__
// arrays), right after the newline-terminated .version/.target/.address_size directives:
// ".shared .align 4 .b8 mod_smem[1024]" declares 1024 bytes of per-CTA shared memory.
const std::string kModuleSharedPtx = R"(
.version 7.0
.target sm_80
.address_size 64

.shared .align 4 .b8 mod_smem[1024];

)" + reverse_through_shared_ptx("mod_shared_reverse", "mod_smem");

TEST(PtxEmuBarrier, ModuleScopeStaticSharedArray) {
  LOAD_MODULE(m, kModuleSharedPtx);
  CUfunction f = m.fn("mod_shared_reverse");
  ASSERT_NE(f, nullptr);
  std::vector<uint32_t> in(256);
  for (uint32_t i = 0; i < 256; ++i) in[i] = 0x7000u + i * 5u;
  Buf<uint32_t> din(in), dout(256, 0);
  LAUNCH_OK(f, Dim3{}, Dim3{256, 1, 1}, {din.arg(), dout.arg()});
  std::vector<uint32_t> out = dout.get();
  for (int t = 0; t < 256; ++t) EXPECT_EQ(out[t], in[255 - t]) << "thread " << t;
}

// Module-scope ".extern .shared .align 16 .b8 dyn_smem[]" (LLVM's form for dynamic shared
// memory): its size is the launch's sharedMemBytes.
TEST(PtxEmuBarrier, DynamicSharedMemoryReverse) {
  LOAD_MODULE(m, kBarrierPtx);
  CUfunction f = m.fn("dyn_reverse");
  ASSERT_NE(f, nullptr);
  std::vector<uint32_t> in(256);
  for (uint32_t i = 0; i < 256; ++i) in[i] = 0x5000u + i * 3u;
  Buf<uint32_t> din(in), dout(256, 0);
  LAUNCH_OK(f, Dim3{}, Dim3{256, 1, 1}, {din.arg(), dout.arg()}, 256 * 4);
  std::vector<uint32_t> out = dout.get();
  for (int t = 0; t < 256; ++t) EXPECT_EQ(out[t], in[255 - t]) << "thread " << t;
}

// cp.async (9.7.9.25): "cp.async.{ca,cg}.shared.global [dst], [src], cp-size{, src-size}"
// copies cp-size bytes (4, 8, 16; .cg: 16) "asynchronously"; "src-size ... less than
// cp-size: the remaining bytes ... are filled with zeros"; "cp.async.commit_group" closes a
// group of the thread's prior copies; "cp.async.wait_group N waits until only N or fewer of
// the most recent groups are pending"; "cp.async.wait_all" = commit_group + wait_group 0.
// The copies are unordered with the thread's own accesses until the wait, and the data
// reaches other threads only through a barrier.
// cp_rotate: thread t copies in[16t .. 16t + 16) (src-size param_2 bytes) to s[(t + 1) % 64],
// waits, passes bar.sync when param_3 != 0, then writes s[t] to out[t].
// cp_groups: thread t copies 16 bytes of in[2t] to s[2t] (group 1) and 4 bytes of in[2t+1]
// to s[2t+1] (.ca, an L2 hint; group 2) and records word 0 of each slot before any wait,
// after wait_group 1 and after wait_all.
const std::string kCpAsyncPtx = R"(
.version 7.8
.target sm_80
.address_size 64

.visible .entry cp_rotate(
	.param .u64 cp_rotate_param_0,
	.param .u64 cp_rotate_param_1,
	.param .u32 cp_rotate_param_2,
	.param .u32 cp_rotate_param_3
)
{
	.reg .pred %p<2>;
	.reg .b32 %r<12>;
	.reg .b64 %rd<12>;
	.shared .align 16 .b8 cp_slots[1024];

	ld.param.u64 %rd1, [cp_rotate_param_0];
	ld.param.u64 %rd2, [cp_rotate_param_1];
	ld.param.u32 %r1, [cp_rotate_param_2];
	ld.param.u32 %r2, [cp_rotate_param_3];
	cvta.to.global.u64 %rd3, %rd1;
	cvta.to.global.u64 %rd4, %rd2;
	mov.u32 %r3, %tid.x;
	mul.wide.u32 %rd5, %r3, 16;
	add.s64 %rd6, %rd3, %rd5;
	add.s32 %r4, %r3, 1;
	and.b32 %r5, %r4, 63;
	mul.wide.u32 %rd7, %r5, 16;
	mov.u64 %rd8, cp_slots;
	add.s64 %rd9, %rd8, %rd7;
	cp.async.cg.shared.global [%rd9], [%rd6], 16, %r1;
	cp.async.commit_group;
	cp.async.wait_group 0;
	setp.eq.s32 %p1, %r2, 0;
	@%p1 bra $L__BB0_2;
	bar.sync 0;
$L__BB0_2:
	add.s64 %rd10, %rd8, %rd5;
	ld.shared.v4.u32 {%r6, %r7, %r8, %r9}, [%rd10];
	add.s64 %rd11, %rd4, %rd5;
	st.global.v4.u32 [%rd11], {%r6, %r7, %r8, %r9};
	ret;
}

.visible .entry cp_groups(
	.param .u64 cp_groups_param_0,
	.param .u64 cp_groups_param_1
)
{
	.reg .b32 %r<8>;
	.reg .b64 %rd<12>;
	.shared .align 16 .b8 cp_pairs[1024];

	ld.param.u64 %rd1, [cp_groups_param_0];
	ld.param.u64 %rd2, [cp_groups_param_1];
	cvta.to.global.u64 %rd3, %rd1;
	cvta.to.global.u64 %rd4, %rd2;
	mov.u32 %r1, %tid.x;
	mul.wide.u32 %rd5, %r1, 32;
	add.s64 %rd6, %rd3, %rd5;
	mov.u64 %rd7, cp_pairs;
	add.s64 %rd8, %rd7, %rd5;
	cp.async.cg.shared.global [%rd8], [%rd6], 16;
	cp.async.commit_group;
	cp.async.ca.shared.global.L2::128B [%rd8+16], [%rd6+16], 4;
	cp.async.commit_group;
	ld.shared.u32 %r2, [%rd8];
	cp.async.wait_group 1;
	ld.shared.u32 %r3, [%rd8];
	ld.shared.u32 %r4, [%rd8+16];
	cp.async.wait_all;
	ld.shared.u32 %r5, [%rd8+16];
	mul.wide.u32 %rd9, %r1, 16;
	add.s64 %rd10, %rd4, %rd9;
	st.global.v4.u32 [%rd10], {%r2, %r3, %r4, %r5};
	ret;
}
)";

TEST(PtxEmuCpAsync, CopiesLandAtTheWaitWithZeroFill) {
  LOAD_MODULE(m, kCpAsyncPtx);
  CUfunction f = m.fn("cp_rotate");
  ASSERT_NE(f, nullptr);
  std::vector<uint32_t> in(256);
  for (uint32_t i = 0; i < 256; ++i) in[i] = 0x9000u + i * 7u;
  for (uint32_t src_size : {16u, 12u, 0u}) {
    Buf<uint32_t> din(in), dout(256, 0);
    uint32_t with_barrier = 1;
    LAUNCH_OK(f, Dim3{}, Dim3{64, 1, 1}, {din.arg(), dout.arg(), &src_size, &with_barrier});
    std::vector<uint32_t> out = dout.get();
    for (uint32_t t = 0; t < 64; ++t)
      for (uint32_t w = 0; w < 4; ++w) // s[t] came from thread (t + 63) % 64
        EXPECT_EQ(out[4 * t + w], 4 * w < src_size ? in[4 * ((t + 63) % 64) + w] : 0u)
            << "thread " << t << " word " << w << " src-size " << src_size;
  }
}

TEST(PtxEmuCpAsync, ReadingAnotherThreadsCopyWithoutABarrierIsARace) {
  LOAD_MODULE(m, kCpAsyncPtx);
  CUfunction f = m.fn("cp_rotate");
  ASSERT_NE(f, nullptr);
  Buf<uint32_t> din(256, 1), dout(256, 0);
  uint32_t src_size = 16, without = 0;
  CUresult r = launch(f, Dim3{}, Dim3{64, 1, 1}, {din.arg(), dout.arg(), &src_size, &without});
  EXPECT_NE(r, 0);
  EXPECT_NE(lower(last_error()).find("race"), std::string::npos) << last_error();
}

TEST(PtxEmuCpAsync, WaitGroupRetiresOnlyTheOlderGroups) {
  LOAD_MODULE(m, kCpAsyncPtx);
  CUfunction f = m.fn("cp_groups");
  ASSERT_NE(f, nullptr);
  std::vector<uint32_t> in(256);
  for (uint32_t i = 0; i < 256; ++i) in[i] = 0x4000u + i * 3u;
  Buf<uint32_t> din(in), dout(128, 0);
  LAUNCH_OK(f, Dim3{}, Dim3{32, 1, 1}, {din.arg(), dout.arg()});
  std::vector<uint32_t> out = dout.get();
  for (uint32_t t = 0; t < 32; ++t) {
    // Before any wait the slot still holds shared memory's initial bytes: the emulation
    // lands copies at the wait (a GPU may land them earlier; reading is a bug either way).
    EXPECT_EQ(out[4 * t], 0xFFFFFFFFu) << "thread " << t;
    EXPECT_EQ(out[4 * t + 1], in[8 * t]) << "thread " << t << ": group 1 after wait_group 1";
    EXPECT_EQ(out[4 * t + 2], 0xFFFFFFFFu) << "thread " << t << ": group 2 still pending";
    EXPECT_EQ(out[4 * t + 3], in[8 * t + 4]) << "thread " << t << ": group 2 after wait_all";
  }
}

TEST(PtxEmuCpAsync, UnsupportedFormsAreRejectedNamingTheLine) {
  init_driver();
  const std::string head = ".version 7.8\n.target sm_80\n.address_size 64\n"
                           ".visible .entry k(.param .u64 p)\n{\n.reg .b64 %rd<3>;\n"
                           ".shared .align 16 .b8 s[64];\nmov.u64 %rd1, s;\n";
  for (const char *bad : {"cp.async.cg.shared.global [%rd1], [%rd2], 8;",
                          "cp.async.ca.shared.global [%rd1], [%rd2], 2;",
                          "cp.async.bulk.shared.global [%rd1], [%rd2], 16;",
                          "cp.async.wait_group;"}) {
    Module m(head + bad + "\nret;\n}\n");
    EXPECT_FALSE(m.ok()) << bad;
    EXPECT_NE(m.error().find("line 9"), std::string::npos) << bad << ": " << m.error();
  }
}

// ------------------------------------------------------------------------------------------
// wgmma (9.7.15 "Asynchronous Warpgroup Level Matrix Multiply-Accumulate"): m64n64k16
// f32 += bf16 * bf16, A and B K-major in shared memory without swizzle, described by matrix
// descriptors (9.7.15.5.1: start address >> 4 in bits 0-13, leading-dimension byte offset >> 4
// in 16-29, stride-dimension byte offset >> 4 in 32-45, swizzle mode in 62-63). A core matrix is
// 8 rows x 16 bytes, its rows 16 bytes apart; the leading-dimension offset separates core
// matrices adjacent in K, the stride-dimension offset those adjacent in M (A) or N (B). The
// accumulator fragment (9.7.15.5.2, "Register Fragments"): warp w of the warpgroup holds rows
// 16w .. 16w + 15; register i of lane l is D[16w + l/4 + 8 (i/2 % 2)][8 (i/4) + 2 (l%4) + i%2].
// ------------------------------------------------------------------------------------------

// 128 threads: copy the pre-laid-out A (64 x 32) and B (64 x 32) images into shared memory
// (32 bytes per thread each), then two chained wgmmas (k 0-15 with scale-d = 0, k 16-31
// accumulating), commit, a store of d0 before the wait (async: not yet written), wait, and
// every accumulator register to out[row * 64 + col]. `desc` holds the LBO/SBO fields; the
// kernel adds each tile's start address. `fence` = false leaves wgmma.fence out.
std::string wgmma_ptx(bool fence) {
  std::string d, st;
  for (int i = 0; i < 32; ++i) {
    d += (i ? ", %f" : "%f") + std::to_string(i + 1);
    const int row = 8 * (i / 2 % 2), col = 8 * (i / 4) + i % 2;
    st += "\tst.global.f32 [%rd30+" + std::to_string((row * 64 + col) * 4) + "], %f" +
          std::to_string(i + 1) + ";\n";
  }
  return R"(.version 8.0
.target sm_90a
.address_size 64
.visible .entry wg(.param .u64 pa, .param .u64 pb, .param .u64 pout, .param .u64 pearly,
                   .param .u64 pdesc)
{
	.reg .pred %p<2>;
	.reg .b32 %r<20>;
	.reg .f32 %f<33>;
	.reg .b64 %rd<40>;
	.shared .align 128 .b8 sA[4096];
	.shared .align 128 .b8 sB[4096];
	ld.param.u64 %rd1, [pa];
	ld.param.u64 %rd2, [pb];
	ld.param.u64 %rd3, [pout];
	ld.param.u64 %rd4, [pearly];
	ld.param.u64 %rd5, [pdesc];
	cvta.to.global.u64 %rd1, %rd1;
	cvta.to.global.u64 %rd2, %rd2;
	cvta.to.global.u64 %rd3, %rd3;
	cvta.to.global.u64 %rd4, %rd4;
	mov.u32 %r1, %tid.x;
	mul.wide.u32 %rd6, %r1, 32;
	add.s64 %rd7, %rd1, %rd6;
	ld.global.v4.u32 {%r2, %r3, %r4, %r5}, [%rd7];
	ld.global.v4.u32 {%r6, %r7, %r8, %r9}, [%rd7+16];
	mov.u64 %rd8, sA;
	add.s64 %rd9, %rd8, %rd6;
	st.shared.v4.u32 [%rd9], {%r2, %r3, %r4, %r5};
	st.shared.v4.u32 [%rd9+16], {%r6, %r7, %r8, %r9};
	add.s64 %rd7, %rd2, %rd6;
	ld.global.v4.u32 {%r2, %r3, %r4, %r5}, [%rd7];
	ld.global.v4.u32 {%r6, %r7, %r8, %r9}, [%rd7+16];
	mov.u64 %rd10, sB;
	add.s64 %rd9, %rd10, %rd6;
	st.shared.v4.u32 [%rd9], {%r2, %r3, %r4, %r5};
	st.shared.v4.u32 [%rd9+16], {%r6, %r7, %r8, %r9};
	fence.proxy.async.shared::cta;
	bar.sync 0;
	shr.u64 %rd11, %rd8, 4;
	and.b64 %rd11, %rd11, 16383;
	or.b64 %rd11, %rd11, %rd5;
	shr.u64 %rd12, %rd10, 4;
	and.b64 %rd12, %rd12, 16383;
	or.b64 %rd12, %rd12, %rd5;
)" + std::string(fence ? "\twgmma.fence.sync.aligned;\n" : "") +
         R"(	{
.reg .pred p;
setp.ne.b32 p, 0, 0;
wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {)" + d + R"(}, %rd11, %rd12, p, 1,  1, 0,  0;
}
	add.s64 %rd13, %rd11, 16;
	add.s64 %rd14, %rd12, 16;
	wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {)" + d + R"(}, %rd13, %rd14, 1, 1, 1, 0, 0;
	wgmma.commit_group.sync.aligned;
	mul.wide.u32 %rd15, %r1, 4;
	add.s64 %rd16, %rd4, %rd15;
	st.global.f32 [%rd16], %f1;
	wgmma.wait_group.sync.aligned 0;
	shr.u32 %r10, %r1, 5;
	and.b32 %r11, %r1, 31;
	shr.u32 %r12, %r11, 2;
	and.b32 %r13, %r11, 3;
	shl.b32 %r14, %r10, 4;
	add.s32 %r15, %r14, %r12;
	shl.b32 %r16, %r15, 6;
	shl.b32 %r17, %r13, 1;
	add.s32 %r18, %r16, %r17;
	mul.wide.u32 %rd17, %r18, 4;
	add.s64 %rd30, %rd3, %rd17;
)" + st + "\tret;\n}\n";
}

// The shared-memory image of a rows x 32 bf16 K-major operand: element (r, k) at byte
// (r / 8) * sbo + (k / 8) * lbo + (r % 8) * 16 + (k % 8) * 2.
std::vector<uint16_t> core_matrix_image(const std::vector<uint16_t> &m, int rows, int lbo, int sbo) {
  std::vector<uint16_t> img(std::size_t(rows) * 32, 0);
  for (int r = 0; r < rows; ++r)
    for (int k = 0; k < 32; ++k)
      img[std::size_t(((r / 8) * sbo + (k / 8) * lbo + (r % 8) * 16 + (k % 8) * 2) / 2)] =
          m[std::size_t(r * 32 + k)];
  return img;
}

// Runs wg() on random bf16 A (64 x 32) and B (64 x 32, N x K) laid out with LBO 128 and SBO
// 512 bytes, the kernel's descriptors carrying `lbo`/`sbo`; returns the elements of D that
// differ from the plain matmul D = A Bᵀ (double sums), or -1 when the launch fails.
int wgmma_mismatches(uint64_t lbo, uint64_t sbo, std::vector<uint32_t> *early = nullptr) {
  std::mt19937 rng(2024);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<uint16_t> a(64 * 32), b(64 * 32);
  for (auto &x : a) x = f32_to_bf16_rne(fbits(u(rng)));
  for (auto &x : b) x = f32_to_bf16_rne(fbits(u(rng)));
  Module m(wgmma_ptx(true));
  EXPECT_TRUE(m.ok()) << m.error();
  if (!m.ok()) return -1;
  Buf<uint16_t> da(core_matrix_image(a, 64, 128, 512)), db(core_matrix_image(b, 64, 128, 512));
  Buf<float> dout(64 * 64, 0);
  Buf<uint32_t> dearly(128, 0);
  uint64_t desc = (lbo >> 4) << 16 | (sbo >> 4) << 32;
  if (launch(m.fn("wg"), Dim3{}, Dim3{128, 1, 1},
             {da.arg(), db.arg(), dout.arg(), dearly.arg(), &desc}) != 0) {
    ADD_FAILURE() << last_error();
    return -1;
  }
  if (early) *early = dearly.get();
  std::vector<float> out = dout.get();
  int bad = 0;
  for (int i = 0; i < 64; ++i)
    for (int j = 0; j < 64; ++j) {
      double want = 0, mag = 0;
      for (int k = 0; k < 32; ++k) {
        double p = double(bf16_to_float(a[std::size_t(i * 32 + k)])) * bf16_to_float(b[std::size_t(j * 32 + k)]);
        want += p, mag += std::fabs(p);
      }
      if (!(std::fabs(out[std::size_t(i * 64 + j)] - want) <= 1e-6 * mag + 1e-30)) ++bad;
    }
  return bad;
}

TEST(PtxEmuWgmma, M64N64K16ChainedMatchesPlainMatmul) {
  init_driver();
  std::vector<uint32_t> early;
  EXPECT_EQ(wgmma_mismatches(128, 512, &early), 0);
  // d0 read between commit_group and wait_group: the result is not there yet (NaN here).
  for (uint32_t t = 0; t < 128; ++t) EXPECT_EQ(early[t], 0xFFFFFFFFu) << "thread " << t;
}

TEST(PtxEmuWgmma, AWrongDescriptorStrideGivesWrongResults) {
  init_driver();
  // The injected fault: SBO of 256 bytes for an image laid out with 512 (rows 8-15 of each
  // 16 read from k 16-31 of rows 0-7): the check above must see it.
  EXPECT_GT(wgmma_mismatches(128, 256), 1000);
  EXPECT_GT(wgmma_mismatches(64, 512), 1000); // LBO of 64: k 8-15 read from rows 4-7
}

TEST(PtxEmuWgmma, MmaAsyncWithoutAFenceFails) {
  init_driver();
  Module m(wgmma_ptx(false));
  ASSERT_TRUE(m.ok()) << m.error();
  Buf<uint16_t> da(64 * 32, 0), db(64 * 32, 0);
  Buf<float> dout(64 * 64, 0);
  Buf<uint32_t> dearly(128, 0);
  uint64_t desc = uint64_t(128 >> 4) << 16 | uint64_t(512 >> 4) << 32;
  EXPECT_NE(launch(m.fn("wg"), Dim3{}, Dim3{128, 1, 1}, {da.arg(), db.arg(), dout.arg(), dearly.arg(), &desc}), 0);
  EXPECT_NE(last_error().find("wgmma.fence"), std::string::npos) << last_error();
}

// The warp-at-a-time forms of the GEMMs' staging keep every check: cp.async lands a warp's
// copies with one bounds check and one racecheck call when it can, and lane by lane otherwise
// (each fault names its lane); a warp's groups stay per lane.
// cp_checked (32 threads): thread t copies in[16t .. +16) to s[t] and writes s[t] to
// out[t] after the wait. param_2: 0 as said; 1 lanes 2k and 2k+1 copy into one slot (a race
// between two lanes of one cp.async); 2 lane 5's source is 1 MiB past in (out of bounds);
// 3 lane 7's source is 4 bytes off (misaligned); 4 each thread first stores a word of the
// next thread's source (the copy reads a byte another thread wrote in this launch: a
// global race).
// cp_diverge (32 threads, 4-byte copies): lanes 0..15 copy in[t] to s[t] and commit; lanes
// 16..31 commit two empty groups; then every lane copies in[32+t] to s[32+t] and commits,
// waits for all but its 2 newest groups, records s[t] and s[32+t], waits for all and
// records them again (out[4t..4t+3]).
const std::string kCpWarpPtx = R"(
.version 7.8
.target sm_80
.address_size 64

.visible .entry cp_checked(
	.param .u64 cp_checked_param_0,
	.param .u64 cp_checked_param_1,
	.param .u32 cp_checked_param_2
)
{
	.reg .pred %p<4>;
	.reg .b32 %r<12>;
	.reg .b64 %rd<16>;
	.shared .align 16 .b8 cp_dst[512];

	ld.param.u64 %rd1, [cp_checked_param_0];
	ld.param.u64 %rd2, [cp_checked_param_1];
	ld.param.u32 %r1, [cp_checked_param_2];
	cvta.to.global.u64 %rd3, %rd1;
	cvta.to.global.u64 %rd4, %rd2;
	mov.u32 %r2, %tid.x;
	mul.wide.u32 %rd5, %r2, 16;
	setp.eq.s32 %p1, %r1, 2;
	setp.eq.s32 %p2, %r2, 5;
	and.pred %p3, %p1, %p2;
	selp.b64 %rd6, 1048576, 0, %p3;
	add.s64 %rd5, %rd5, %rd6;
	setp.eq.s32 %p1, %r1, 3;
	setp.eq.s32 %p2, %r2, 7;
	and.pred %p3, %p1, %p2;
	selp.b64 %rd6, 4, 0, %p3;
	add.s64 %rd5, %rd5, %rd6;
	add.s64 %rd7, %rd3, %rd5;
	setp.eq.s32 %p1, %r1, 1;
	shr.u32 %r3, %r2, 1;
	selp.b32 %r4, %r3, %r2, %p1;
	mul.wide.u32 %rd8, %r4, 16;
	mov.u64 %rd9, cp_dst;
	add.s64 %rd10, %rd9, %rd8;
	setp.ne.s32 %p1, %r1, 4;
	@%p1 bra $L__cp1;
	add.s32 %r5, %r2, 1;
	and.b32 %r5, %r5, 31;
	mul.wide.u32 %rd11, %r5, 16;
	add.s64 %rd12, %rd3, %rd11;
	st.global.u32 [%rd12], %r2;
$L__cp1:
	cp.async.cg.shared.global [%rd10], [%rd7], 16;
	cp.async.commit_group;
	cp.async.wait_group 0;
	ld.shared.v4.u32 {%r6, %r7, %r8, %r9}, [%rd10];
	mul.wide.u32 %rd13, %r2, 16;
	add.s64 %rd14, %rd4, %rd13;
	st.global.v4.u32 [%rd14], {%r6, %r7, %r8, %r9};
	ret;
}

.visible .entry cp_diverge(
	.param .u64 cp_diverge_param_0,
	.param .u64 cp_diverge_param_1
)
{
	.reg .pred %p<2>;
	.reg .b32 %r<8>;
	.reg .b64 %rd<12>;
	.shared .align 16 .b8 cp_words[256];

	ld.param.u64 %rd1, [cp_diverge_param_0];
	ld.param.u64 %rd2, [cp_diverge_param_1];
	cvta.to.global.u64 %rd3, %rd1;
	cvta.to.global.u64 %rd4, %rd2;
	mov.u32 %r2, %tid.x;
	mul.wide.u32 %rd5, %r2, 4;
	add.s64 %rd6, %rd3, %rd5;
	mov.u64 %rd7, cp_words;
	add.s64 %rd8, %rd7, %rd5;
	setp.lt.u32 %p1, %r2, 16;
	@!%p1 bra $L__hi;
	cp.async.ca.shared.global [%rd8], [%rd6], 4;
	cp.async.commit_group;
	bra.uni $L__join;
$L__hi:
	cp.async.commit_group;
	cp.async.commit_group;
$L__join:
	cp.async.ca.shared.global [%rd8+128], [%rd6+128], 4;
	cp.async.commit_group;
	cp.async.wait_group 2;
	ld.shared.u32 %r3, [%rd8];
	ld.shared.u32 %r4, [%rd8+128];
	cp.async.wait_all;
	ld.shared.u32 %r5, [%rd8];
	ld.shared.u32 %r6, [%rd8+128];
	mul.wide.u32 %rd9, %r2, 16;
	add.s64 %rd10, %rd4, %rd9;
	st.global.v4.u32 [%rd10], {%r3, %r4, %r5, %r6};
	ret;
}

.visible .entry st_pairs(
	.param .u64 st_pairs_param_0,
	.param .u32 st_pairs_param_1
)
{
	.reg .pred %p<2>;
	.reg .b32 %r<8>;
	.reg .b64 %rd<8>;
	.shared .align 16 .b8 st_slots[512];

	ld.param.u64 %rd1, [st_pairs_param_0];
	ld.param.u32 %r1, [st_pairs_param_1];
	cvta.to.global.u64 %rd2, %rd1;
	mov.u32 %r2, %tid.x;
	setp.ne.s32 %p1, %r1, 0;
	shr.u32 %r3, %r2, 1;
	selp.b32 %r4, %r3, %r2, %p1;
	mul.wide.u32 %rd3, %r4, 16;
	mov.u64 %rd4, st_slots;
	add.s64 %rd5, %rd4, %rd3;
	st.shared.v4.u32 [%rd5], {%r2, %r2, %r2, %r2};
	bar.sync 0;
	ld.shared.u32 %r5, [%rd5+8];
	mul.wide.u32 %rd6, %r2, 4;
	add.s64 %rd7, %rd2, %rd6;
	st.global.u32 [%rd7], %r5;
	ret;
}

// ldmatrix_x4 of section 2 from dynamic shared memory, the barrier after the rows are
// stored taken when param_2 != 0 (else each lane reads a row another lane wrote: a race);
// param_2 = 2 moves every row address 16 bytes on (slot 31's past the 512 bytes).
.extern .shared .align 16 .b8 ldm_dyn[];

.visible .entry ldmatrix_dyn(
	.param .u64 ldmatrix_dyn_param_0,
	.param .u64 ldmatrix_dyn_param_1,
	.param .u32 ldmatrix_dyn_param_2
)
{
	.reg .pred %p<2>;
	.reg .b32 %r<16>;
	.reg .b64 %rd<12>;

	ld.param.u64 %rd1, [ldmatrix_dyn_param_0];
	ld.param.u64 %rd2, [ldmatrix_dyn_param_1];
	ld.param.u32 %r12, [ldmatrix_dyn_param_2];
	cvta.to.global.u64 %rd3, %rd1;
	cvta.to.global.u64 %rd4, %rd2;
	mov.u32 %r1, %tid.x;
	mul.wide.u32 %rd5, %r1, 16;
	add.s64 %rd6, %rd3, %rd5;
	ld.global.v4.u32 {%r2, %r3, %r4, %r5}, [%rd6];
	mov.u64 %rd7, ldm_dyn;
	add.s64 %rd8, %rd7, %rd5;
	st.shared.v4.u32 [%rd8], {%r2, %r3, %r4, %r5};
	setp.eq.s32 %p1, %r12, 0;
	@%p1 bra $L__nobar;
	bar.sync 0;
$L__nobar:
	mad.lo.s32 %r6, %r1, 5, 3;
	and.b32 %r7, %r6, 31;
	mul.wide.u32 %rd9, %r7, 16;
	add.s64 %rd10, %rd7, %rd9;
	setp.eq.s32 %p1, %r12, 2;
	selp.b64 %rd9, 16, 0, %p1;
	add.s64 %rd10, %rd10, %rd9;
	ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%r8, %r9, %r10, %r11}, [%rd10];
	add.s64 %rd11, %rd4, %rd5;
	st.global.v4.u32 [%rd11], {%r8, %r9, %r10, %r11};
	ret;
}
)";

TEST(PtxEmuWarpChecks, CpAsyncOfAWarpLandsCheckedPerLane) {
  LOAD_MODULE(m, kCpWarpPtx);
  CUfunction f = m.fn("cp_checked");
  ASSERT_NE(f, nullptr);
  std::vector<uint32_t> in(128);
  for (uint32_t i = 0; i < 128; ++i) in[i] = 0x7000u + i * 5u;
  Buf<uint32_t> din(in), dout(128, 0);
  uint32_t mode = 0;
  LAUNCH_OK(f, Dim3{}, Dim3{32, 1, 1}, {din.arg(), dout.arg(), &mode});
  EXPECT_EQ(dout.get(), in);
  const std::pair<uint32_t, const char *> bad[] = {
      {1, "shared-memory race"}, {2, "outside every allocation"},
      {3, "misaligned 16-byte cp.async source"}, {4, "global-memory race"}};
  for (const auto &[mode_bad, want] : bad) {
    Buf<uint32_t> din2(in);
    mode = mode_bad;
    CUresult r = launch(f, Dim3{}, Dim3{32, 1, 1}, {din2.arg(), dout.arg(), &mode});
    EXPECT_NE(r, 0) << "mode " << mode_bad;
    EXPECT_NE(last_error().find(want), std::string::npos) << "mode " << mode_bad << ": " << last_error();
  }
  mode = 2; // the lane that faults is named
  ASSERT_NE(launch(f, Dim3{}, Dim3{32, 1, 1}, {din.arg(), dout.arg(), &mode}), 0);
  EXPECT_NE(last_error().find("thread (5,0,0)"), std::string::npos) << last_error();
}

TEST(PtxEmuWarpChecks, CpAsyncGroupsStayPerLaneWhenLanesDiverge) {
  LOAD_MODULE(m, kCpWarpPtx);
  CUfunction f = m.fn("cp_diverge");
  ASSERT_NE(f, nullptr);
  std::vector<uint32_t> in(64);
  for (uint32_t i = 0; i < 64; ++i) in[i] = 0x5100u + i;
  Buf<uint32_t> din(in), dout(128, 0);
  LAUNCH_OK(f, Dim3{}, Dim3{32, 1, 1}, {din.arg(), dout.arg()});
  std::vector<uint32_t> out = dout.get();
  const uint32_t none = 0xFFFFFFFFu; // shared memory's initial bytes
  for (uint32_t t = 0; t < 32; ++t) {
    // wait_group 2 lands nothing of lanes 0..15 (2 groups) and one empty group of the others.
    EXPECT_EQ(out[4 * t], none) << "thread " << t;
    EXPECT_EQ(out[4 * t + 1], none) << "thread " << t;
    EXPECT_EQ(out[4 * t + 2], t < 16 ? in[t] : none) << "thread " << t;
    EXPECT_EQ(out[4 * t + 3], in[32 + t]) << "thread " << t;
  }
}

TEST(PtxEmuWarpChecks, TwoLanesOfOneSharedStoreRace) {
  LOAD_MODULE(m, kCpWarpPtx);
  CUfunction f = m.fn("st_pairs");
  ASSERT_NE(f, nullptr);
  Buf<uint32_t> dout(32, 0);
  uint32_t pairs = 0;
  LAUNCH_OK(f, Dim3{}, Dim3{32, 1, 1}, {dout.arg(), &pairs});
  std::vector<uint32_t> out = dout.get();
  for (uint32_t t = 0; t < 32; ++t) EXPECT_EQ(out[t], t);
  pairs = 1; // lanes 2k and 2k+1 store to one slot in one instruction
  ASSERT_NE(launch(f, Dim3{}, Dim3{32, 1, 1}, {dout.arg(), &pairs}), 0);
  EXPECT_NE(last_error().find("shared-memory race: writes byte"), std::string::npos) << last_error();
}

TEST(PtxEmuWarpChecks, LdmatrixFromDynamicSharedMemoryIsChecked) {
  LOAD_MODULE(m, kCpWarpPtx);
  CUfunction f = m.fn("ldmatrix_dyn");
  ASSERT_NE(f, nullptr);
  std::vector<uint16_t> in = ldmatrix_input();
  Buf<uint16_t> din(in);
  Buf<uint32_t> dout(32 * 4, 0xee);
  uint32_t with_barrier = 1;
  LAUNCH_OK(f, Dim3{}, Dim3{32, 1, 1}, {din.arg(), dout.arg(), &with_barrier}, 512);
  std::vector<uint32_t> out = dout.get();
  for (int t = 0; t < 32; ++t)
    for (int j = 0; j < 4; ++j) {
      int row = t / 4, col = 2 * (t % 4), slot = ldm_slot(8 * j + row);
      uint32_t want = in[slot * 8 + col] | (static_cast<uint32_t>(in[slot * 8 + col + 1]) << 16);
      EXPECT_EQ(out[t * 4 + j], want) << "lane " << t << " reg " << j;
    }
  with_barrier = 0;
  ASSERT_NE(launch(f, Dim3{}, Dim3{32, 1, 1}, {din.arg(), dout.arg(), &with_barrier}, 512), 0);
  EXPECT_NE(last_error().find("shared-memory race: reads"), std::string::npos) << last_error();
  with_barrier = 2; // a row past the launch's dynamic shared memory
  ASSERT_NE(launch(f, Dim3{}, Dim3{32, 1, 1}, {din.arg(), dout.arg(), &with_barrier}, 512), 0);
  EXPECT_NE(last_error().find("ldmatrix"), std::string::npos) << last_error();
  EXPECT_NE(last_error().find("dynamic shared-memory access at offset 512"), std::string::npos)
      << last_error();
}

// ==========================================================================================
// 5. Integer arithmetic
// ==========================================================================================

// mad{.hi,.lo}.cc / madc{.hi,.lo}{.cc} / addc. Manual: "mad.cc: d = a*b + c,
// with carry-out" (writes CC.CF); "madc: d = a*b + c + CC.CF, with optional carry-out";
// ".hi/.lo: the upper/lower half of the product is used". A 64x64 -> 128-bit product from 32-bit
// limbs (a = a1:a0, b = b1:b0).
const char *kCarryPtx = R"(
.version 7.0
.target sm_80
.address_size 64

.visible .entry mul128(
	.param .u64 mul128_param_0,
	.param .u64 mul128_param_1,
	.param .u64 mul128_param_2
)
{
	.reg .b32 %r<24>;
	.reg .b64 %rd<14>;

	ld.param.u64 %rd1, [mul128_param_0];
	ld.param.u64 %rd2, [mul128_param_1];
	ld.param.u64 %rd3, [mul128_param_2];
	cvta.to.global.u64 %rd4, %rd1;
	cvta.to.global.u64 %rd5, %rd2;
	cvta.to.global.u64 %rd6, %rd3;
	mov.u32 %r1, %tid.x;
	mul.wide.u32 %rd7, %r1, 8;
	add.s64 %rd8, %rd4, %rd7;
	ld.global.v2.u32 {%r2, %r3}, [%rd8];     // a0, a1
	add.s64 %rd9, %rd5, %rd7;
	ld.global.v2.u32 {%r4, %r5}, [%rd9];     // b0, b1
	mov.u32 %r20, 0;
	mul.lo.u32 %r6, %r2, %r4;               // p0 = lo(a0*b0)
	mul.hi.u32 %r7, %r2, %r4;               // p1 = hi(a0*b0)
	mad.lo.cc.u32 %r7, %r2, %r5, %r7;       // p1 += lo(a0*b1)            -> CF
	madc.hi.u32 %r8, %r2, %r5, %r20;        // p2  = hi(a0*b1) + CF
	mad.lo.cc.u32 %r7, %r3, %r4, %r7;       // p1 += lo(a1*b0)            -> CF
	madc.hi.cc.u32 %r8, %r3, %r4, %r8;      // p2 += hi(a1*b0) + CF       -> CF
	addc.u32 %r9, %r20, 0;                  // p3  = CF
	mad.lo.cc.u32 %r8, %r3, %r5, %r8;       // p2 += lo(a1*b1)            -> CF
	madc.hi.u32 %r9, %r3, %r5, %r9;         // p3 += hi(a1*b1) + CF
	mul.wide.u32 %rd10, %r1, 16;
	add.s64 %rd11, %rd6, %rd10;
	st.global.v4.u32 [%rd11], {%r6, %r7, %r8, %r9};
	ret;
}
)";

// sub.cc / subc: "sub.cc: d = a - b, with borrow-out"; "subc: d = a - (b + CC.CF)" — a 64-bit
// difference from 32-bit limbs.
const char *kSubcPtx = R"(
.version 7.0
.target sm_80
.address_size 64

.visible .entry sub64(
	.param .u64 sub64_param_0,
	.param .u64 sub64_param_1,
	.param .u64 sub64_param_2
)
{
	.reg .b32 %r<12>;
	.reg .b64 %rd<12>;

	ld.param.u64 %rd1, [sub64_param_0];
	ld.param.u64 %rd2, [sub64_param_1];
	ld.param.u64 %rd3, [sub64_param_2];
	cvta.to.global.u64 %rd4, %rd1;
	cvta.to.global.u64 %rd5, %rd2;
	cvta.to.global.u64 %rd6, %rd3;
	mov.u32 %r1, %tid.x;
	mul.wide.u32 %rd7, %r1, 8;
	add.s64 %rd8, %rd4, %rd7;
	ld.global.v2.u32 {%r2, %r3}, [%rd8];
	add.s64 %rd9, %rd5, %rd7;
	ld.global.v2.u32 {%r4, %r5}, [%rd9];
	sub.cc.u32 %r10, %r2, %r4;              // low limb            -> borrow
	subc.u32 %r11, %r3, %r5;                // high limb - borrow
	add.s64 %rd10, %rd6, %rd7;
	st.global.v2.u32 [%rd10], {%r10, %r11};
	ret;
}
)";

std::vector<uint64_t> carry_inputs(bool second) {
  std::vector<uint64_t> a = {~0ull, ~0ull, 0xffffffff00000000ull, 0x00000000ffffffffull, 0, 1,
                             0x8000000000000000ull, 0x123456789abcdef0ull};
  std::vector<uint64_t> b = {~0ull, 1, 0xffffffff00000000ull, 0xffffffffffffffffull, 5, 0,
                             0x8000000000000001ull, 0xfedcba9876543210ull};
  std::mt19937_64 rng(99);
  while (a.size() < 64) {
    a.push_back(rng());
    b.push_back(rng());
  }
  return second ? b : a;
}

TEST(PtxEmuInteger, MadCcMadcCarryChain128BitProduct) {
  LOAD_MODULE(m, kCarryPtx);
  CUfunction f = m.fn("mul128");
  ASSERT_NE(f, nullptr);
  std::vector<uint64_t> a = carry_inputs(false), b = carry_inputs(true);
  Buf<uint64_t> da(a), db(b);
  Buf<uint32_t> dout(64 * 4, 0);
  LAUNCH_OK(f, Dim3{}, Dim3{64, 1, 1}, {da.arg(), db.arg(), dout.arg()});
  std::vector<uint32_t> out = dout.get();
  for (int i = 0; i < 64; ++i) {
    unsigned __int128 p = static_cast<unsigned __int128>(a[i]) * b[i];
    uint64_t lo = static_cast<uint64_t>(p), hi = static_cast<uint64_t>(p >> 64);
    EXPECT_EQ(out[i * 4 + 0], static_cast<uint32_t>(lo)) << "i=" << i;
    EXPECT_EQ(out[i * 4 + 1], static_cast<uint32_t>(lo >> 32)) << "i=" << i;
    EXPECT_EQ(out[i * 4 + 2], static_cast<uint32_t>(hi)) << "i=" << i;
    EXPECT_EQ(out[i * 4 + 3], static_cast<uint32_t>(hi >> 32)) << "i=" << i;
  }
}

TEST(PtxEmuInteger, SubCcSubcBorrowChain) {
  LOAD_MODULE(m, kSubcPtx);
  CUfunction f = m.fn("sub64");
  ASSERT_NE(f, nullptr);
  std::vector<uint64_t> a = carry_inputs(false), b = carry_inputs(true);
  Buf<uint64_t> da(a), db(b), dout(64, 0);
  LAUNCH_OK(f, Dim3{}, Dim3{64, 1, 1}, {da.arg(), db.arg(), dout.arg()});
  std::vector<uint64_t> out = dout.get();
  for (int i = 0; i < 64; ++i) EXPECT_EQ(out[i], a[i] - b[i]) << "i=" << i;
}

// mul.wide.{u32,s32} ("the product is twice the width of the inputs"), div/rem on 64-bit
// (signed division truncates toward zero, rem takes the sign of the dividend, as in C).
const char *kMulDivPtx = R"(
.version 7.0
.target sm_80
.address_size 64

.visible .entry muldiv(
	.param .u64 muldiv_param_0,
	.param .u64 muldiv_param_1,
	.param .u64 muldiv_param_2
)
{
	.reg .b32 %r<8>;
	.reg .b64 %rd<24>;

	ld.param.u64 %rd1, [muldiv_param_0];
	ld.param.u64 %rd2, [muldiv_param_1];
	ld.param.u64 %rd3, [muldiv_param_2];
	cvta.to.global.u64 %rd4, %rd1;
	cvta.to.global.u64 %rd5, %rd2;
	cvta.to.global.u64 %rd6, %rd3;
	mov.u32 %r1, %tid.x;
	mul.wide.u32 %rd7, %r1, 8;
	add.s64 %rd8, %rd4, %rd7;
	ld.global.u32 %r2, [%rd8];
	ld.global.u32 %r3, [%rd8+4];
	mul.wide.u32 %rd9, %r1, 16;
	add.s64 %rd10, %rd5, %rd9;
	ld.global.u64 %rd11, [%rd10];
	ld.global.u64 %rd12, [%rd10+8];
	mul.wide.u32 %rd13, %r2, %r3;
	mul.wide.s32 %rd14, %r2, %r3;
	div.u64 %rd15, %rd11, %rd12;
	rem.u64 %rd16, %rd11, %rd12;
	div.s64 %rd17, %rd11, %rd12;
	rem.s64 %rd18, %rd11, %rd12;
	mul.wide.u32 %rd19, %r1, 48;
	add.s64 %rd20, %rd6, %rd19;
	st.global.u64 [%rd20], %rd13;
	st.global.u64 [%rd20+8], %rd14;
	st.global.u64 [%rd20+16], %rd15;
	st.global.u64 [%rd20+24], %rd16;
	st.global.u64 [%rd20+32], %rd17;
	st.global.u64 [%rd20+40], %rd18;
	ret;
}
)";

// min/max on integers: "Store the minimum (maximum) of a and b in d", compared as signed
// values for .s32/.s64 and unsigned for .u32/.u64 (PTX ISA, "Integer Arithmetic
// Instructions: min/max"). 48 threads: a whole warp (run lane-parallel) and a partial one.
const char *kMinMaxIntPtx = R"(
.version 7.0
.target sm_80
.address_size 64

.visible .entry minmax(
	.param .u64 minmax_param_0,
	.param .u64 minmax_param_1,
	.param .u64 minmax_param_2
)
{
	.reg .b32 %r<8>;
	.reg .b64 %rd<16>;

	ld.param.u64 %rd1, [minmax_param_0];
	ld.param.u64 %rd2, [minmax_param_1];
	ld.param.u64 %rd3, [minmax_param_2];
	mov.u32 %r1, %tid.x;
	mul.wide.u32 %rd4, %r1, 8;
	add.s64 %rd5, %rd1, %rd4;
	ld.global.u64 %rd6, [%rd5];
	add.s64 %rd7, %rd2, %rd4;
	ld.global.u64 %rd8, [%rd7];
	cvt.u32.u64 %r2, %rd6;
	cvt.u32.u64 %r3, %rd8;
	min.s32 %r4, %r2, %r3;
	max.s32 %r5, %r2, %r3;
	min.u32 %r6, %r2, %r3;
	max.u32 %r7, %r2, %r3;
	min.s64 %rd9, %rd6, %rd8;
	max.s64 %rd10, %rd6, %rd8;
	min.u64 %rd11, %rd6, %rd8;
	max.u64 %rd12, %rd6, %rd8;
	mul.wide.u32 %rd13, %r1, 48;
	add.s64 %rd14, %rd3, %rd13;
	st.global.u32 [%rd14], %r4;
	st.global.u32 [%rd14+4], %r5;
	st.global.u32 [%rd14+8], %r6;
	st.global.u32 [%rd14+12], %r7;
	st.global.u64 [%rd14+16], %rd9;
	st.global.u64 [%rd14+24], %rd10;
	st.global.u64 [%rd14+32], %rd11;
	st.global.u64 [%rd14+40], %rd12;
	ret;
}
)";

TEST(PtxEmuInteger, MinMaxSignedAndUnsigned) {
  LOAD_MODULE(m, kMinMaxIntPtx);
  CUfunction f = m.fn("minmax");
  ASSERT_NE(f, nullptr);
  const unsigned n = 48;
  std::vector<uint64_t> a(n), b(n);
  std::mt19937_64 rng(12);
  for (unsigned i = 0; i < n; ++i) {
    a[i] = rng(), b[i] = rng();
    if (i % 3 == 0) b[i] = a[i] ^ (uint64_t(1) << 63) ^ (uint64_t(1) << 31); // signs differ
    if (i % 7 == 0) b[i] = a[i];
  }
  Buf<uint64_t> da(a), db(b), dout(n * 6, 0);
  LAUNCH_OK(f, Dim3{}, Dim3{n, 1, 1}, {da.arg(), db.arg(), dout.arg()});
  std::vector<uint64_t> out = dout.get();
  for (unsigned i = 0; i < n; ++i) {
    const int32_t sa = int32_t(uint32_t(a[i])), sb = int32_t(uint32_t(b[i]));
    const uint32_t ua = uint32_t(a[i]), ub = uint32_t(b[i]);
    const uint64_t *o = &out[i * 6];
    EXPECT_EQ(uint32_t(o[0]), uint32_t(std::min(sa, sb))) << "min.s32, thread " << i;
    EXPECT_EQ(uint32_t(o[0] >> 32), uint32_t(std::max(sa, sb))) << "max.s32, thread " << i;
    EXPECT_EQ(uint32_t(o[1]), std::min(ua, ub)) << "min.u32, thread " << i;
    EXPECT_EQ(uint32_t(o[1] >> 32), std::max(ua, ub)) << "max.u32, thread " << i;
    EXPECT_EQ(o[2], uint64_t(std::min(int64_t(a[i]), int64_t(b[i])))) << "min.s64, thread " << i;
    EXPECT_EQ(o[3], uint64_t(std::max(int64_t(a[i]), int64_t(b[i])))) << "max.s64, thread " << i;
    EXPECT_EQ(o[4], std::min(a[i], b[i])) << "min.u64, thread " << i;
    EXPECT_EQ(o[5], std::max(a[i], b[i])) << "max.u64, thread " << i;
  }
}

TEST(PtxEmuInteger, MulWideDivRem64) {
  LOAD_MODULE(m, kMulDivPtx);
  CUfunction f = m.fn("muldiv");
  ASSERT_NE(f, nullptr);
  std::vector<uint32_t> xy = {0xffffffffu, 0xffffffffu, 0x80000000u, 2u, 0x7fffffffu, 0x80000000u,
                              12345u, 0xfffffff0u};
  std::vector<uint64_t> XY = {100, 7, static_cast<uint64_t>(-100), 7, 100,
                              static_cast<uint64_t>(-7), static_cast<uint64_t>(-100),
                              static_cast<uint64_t>(-7)};
  std::mt19937_64 rng(5);
  while (xy.size() < 64) {
    xy.push_back(static_cast<uint32_t>(rng()));
    xy.push_back(static_cast<uint32_t>(rng()));
  }
  while (XY.size() < 64) {
    uint64_t x = rng(), y = rng() >> (rng() % 60);
    if (y == 0) y = 3;
    if (x == 0x8000000000000000ull && y == ~0ull) y = 5; // INT64_MIN / -1 overflows
    XY.push_back(x);
    XY.push_back(y);
  }
  Buf<uint32_t> dxy(xy);
  Buf<uint64_t> dXY(XY), dout(32 * 6, 0);
  LAUNCH_OK(f, Dim3{}, Dim3{32, 1, 1}, {dxy.arg(), dXY.arg(), dout.arg()});
  std::vector<uint64_t> out = dout.get();
  for (int i = 0; i < 32; ++i) {
    uint32_t x = xy[2 * i], y = xy[2 * i + 1];
    uint64_t X = XY[2 * i], Y = XY[2 * i + 1];
    int64_t sX = static_cast<int64_t>(X), sY = static_cast<int64_t>(Y);
    EXPECT_EQ(out[i * 6 + 0], static_cast<uint64_t>(x) * y) << "mul.wide.u32 i=" << i;
    EXPECT_EQ(out[i * 6 + 1], static_cast<uint64_t>(static_cast<int64_t>(static_cast<int32_t>(x)) *
                                                    static_cast<int32_t>(y)))
        << "mul.wide.s32 i=" << i;
    EXPECT_EQ(out[i * 6 + 2], X / Y) << "div.u64 i=" << i;
    EXPECT_EQ(out[i * 6 + 3], X % Y) << "rem.u64 i=" << i;
    EXPECT_EQ(out[i * 6 + 4], static_cast<uint64_t>(sX / sY)) << "div.s64 i=" << i;
    EXPECT_EQ(out[i * 6 + 5], static_cast<uint64_t>(sX % sY)) << "rem.s64 i=" << i;
  }
}

// shf and bfe. Manual, shf: "Shift the 64-bit value formed by concatenating operands a and b
// left or right ... Operand b holds bits 63:32 and operand a holds bits 31:0 ... For shf.l, the
// most-significant 32-bits of the result are written into d; for shf.r, the least-significant
// 32-bits"; n = (.mode == .clamp) ? min(c, 32) : c & 0x1f.
// bfe semantics (verbatim): msb = 31 or 63; pos = b & 0xff; len = c & 0xff;
//   sbit = (.u32 || .u64 || len == 0) ? 0 : a[min(pos+len-1, msb)];
//   d[i] = (i < len && pos+i <= msb) ? a[pos+i] : sbit   for i = 0..msb
const char *kBitsPtx = R"(
.version 7.0
.target sm_80
.address_size 64

// in32[6i..]: a, b, n, pos, len, unused; in64[i]: x
// out32[8i..]: shf.l.wrap, shf.r.wrap, shf.l.clamp, shf.r.clamp, bfe.u32, bfe.s32
// out64[2i..]: bfe.u64, bfe.s64
.visible .entry bits(
	.param .u64 bits_param_0,
	.param .u64 bits_param_1,
	.param .u64 bits_param_2,
	.param .u64 bits_param_3
)
{
	.reg .b32 %r<24>;
	.reg .b64 %rd<24>;

	ld.param.u64 %rd1, [bits_param_0];
	ld.param.u64 %rd2, [bits_param_1];
	ld.param.u64 %rd3, [bits_param_2];
	ld.param.u64 %rd4, [bits_param_3];
	cvta.to.global.u64 %rd5, %rd1;
	cvta.to.global.u64 %rd6, %rd2;
	cvta.to.global.u64 %rd7, %rd3;
	cvta.to.global.u64 %rd8, %rd4;
	mov.u32 %r1, %tid.x;
	mul.wide.u32 %rd9, %r1, 24;
	add.s64 %rd10, %rd5, %rd9;
	ld.global.u32 %r2, [%rd10];
	ld.global.u32 %r3, [%rd10+4];
	ld.global.u32 %r4, [%rd10+8];
	ld.global.u32 %r5, [%rd10+12];
	ld.global.u32 %r6, [%rd10+16];
	mul.wide.u32 %rd11, %r1, 8;
	add.s64 %rd12, %rd6, %rd11;
	ld.global.u64 %rd13, [%rd12];
	shf.l.wrap.b32 %r7, %r2, %r3, %r4;
	shf.r.wrap.b32 %r8, %r2, %r3, %r4;
	shf.l.clamp.b32 %r9, %r2, %r3, %r4;
	shf.r.clamp.b32 %r10, %r2, %r3, %r4;
	bfe.u32 %r11, %r2, %r5, %r6;
	bfe.s32 %r12, %r2, %r5, %r6;
	bfe.u64 %rd14, %rd13, %r5, %r6;
	bfe.s64 %rd15, %rd13, %r5, %r6;
	mul.wide.u32 %rd16, %r1, 32;
	add.s64 %rd17, %rd7, %rd16;
	st.global.v4.u32 [%rd17], {%r7, %r8, %r9, %r10};
	st.global.v2.u32 [%rd17+16], {%r11, %r12};
	mul.wide.u32 %rd18, %r1, 16;
	add.s64 %rd19, %rd8, %rd18;
	st.global.u64 [%rd19], %rd14;
	st.global.u64 [%rd19+8], %rd15;
	ret;
}
)";

uint32_t shf_ref(bool left, bool clamp, uint32_t a, uint32_t b, uint32_t c) {
  uint32_t n = clamp ? std::min<uint32_t>(c, 32) : (c & 0x1f);
  uint64_t v = (static_cast<uint64_t>(b) << 32) | a;
  return left ? static_cast<uint32_t>((v << n) >> 32) : static_cast<uint32_t>(v >> n);
}

uint64_t bfe_ref(uint64_t a, uint32_t b, uint32_t c, int msb, bool is_signed) {
  uint32_t pos = b & 0xff, len = c & 0xff;
  uint64_t sbit = 0;
  if (is_signed && len != 0) sbit = (a >> std::min<uint32_t>(pos + len - 1, msb)) & 1;
  uint64_t d = 0;
  for (int i = 0; i <= msb; ++i) {
    uint64_t bit = (static_cast<uint32_t>(i) < len && pos + i <= static_cast<uint32_t>(msb))
                       ? (a >> (pos + i)) & 1
                       : sbit;
    d |= bit << i;
  }
  return d;
}

TEST(PtxEmuInteger, ShfWrapClampAndBfe) {
  LOAD_MODULE(m, kBitsPtx);
  CUfunction f = m.fn("bits");
  ASSERT_NE(f, nullptr);
  // {a, b, n, pos, len}
  std::vector<std::array<uint32_t, 5>> cases = {
      {0x89abcdefu, 0x01234567u, 4, 4, 8},     {0x89abcdefu, 0x01234567u, 37, 28, 8},
      {0x89abcdefu, 0x01234567u, 32, 0, 32},   {0x89abcdefu, 0x01234567u, 0, 31, 1},
      {0x80000000u, 0xfffffffeu, 40, 60, 10},  {0xdeadbeefu, 0xcafebabeu, 31, 260, 3},
      {0xf0f0f0f0u, 0x0f0f0f0fu, 63, 8, 0},    {0x7fffffffu, 0x80000001u, 1, 0, 64},
      {0x00000001u, 0x00000000u, 33, 40, 200}, {0x12345678u, 0x9abcdef0u, 16, 16, 16},
  };
  std::mt19937 rng(3);
  while (cases.size() < 32)
    cases.push_back({static_cast<uint32_t>(rng()), static_cast<uint32_t>(rng()),
                     static_cast<uint32_t>(rng() % 70), static_cast<uint32_t>(rng() % 80),
                     static_cast<uint32_t>(rng() % 70)});
  std::vector<uint32_t> in32;
  std::vector<uint64_t> in64;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    for (uint32_t v : cases[i]) in32.push_back(v);
    in32.push_back(0);
    in64.push_back((static_cast<uint64_t>(cases[i][1]) << 32 | cases[i][0]) ^
                   (static_cast<uint64_t>(i) * 0x9e3779b97f4a7c15ull));
  }
  Buf<uint32_t> din32(in32), dout32(32 * 8, 0);
  Buf<uint64_t> din64(in64), dout64(32 * 2, 0);
  LAUNCH_OK(f, Dim3{}, Dim3{32, 1, 1}, {din32.arg(), din64.arg(), dout32.arg(), dout64.arg()});
  std::vector<uint32_t> o32 = dout32.get();
  std::vector<uint64_t> o64 = dout64.get();
  for (int i = 0; i < 32; ++i) {
    auto [a, b, n, pos, len] = cases[i];
    std::string what = "case " + std::to_string(i) + " a=" + std::to_string(a) +
                       " b=" + std::to_string(b) + " n=" + std::to_string(n) +
                       " pos=" + std::to_string(pos) + " len=" + std::to_string(len);
    EXPECT_EQ(o32[i * 8 + 0], shf_ref(true, false, a, b, n)) << "shf.l.wrap " << what;
    EXPECT_EQ(o32[i * 8 + 1], shf_ref(false, false, a, b, n)) << "shf.r.wrap " << what;
    EXPECT_EQ(o32[i * 8 + 2], shf_ref(true, true, a, b, n)) << "shf.l.clamp " << what;
    EXPECT_EQ(o32[i * 8 + 3], shf_ref(false, true, a, b, n)) << "shf.r.clamp " << what;
    EXPECT_EQ(o32[i * 8 + 4], static_cast<uint32_t>(bfe_ref(a, pos, len, 31, false)))
        << "bfe.u32 " << what;
    EXPECT_EQ(o32[i * 8 + 5], static_cast<uint32_t>(bfe_ref(a, pos, len, 31, true)))
        << "bfe.s32 " << what;
    EXPECT_EQ(o64[i * 2 + 0], bfe_ref(in64[i], pos, len, 63, false)) << "bfe.u64 " << what;
    EXPECT_EQ(o64[i * 2 + 1], bfe_ref(in64[i], pos, len, 63, true)) << "bfe.s64 " << what;
  }
}

// setp on 64-bit operands and selp. Manual: signed comparisons .eq .ne .lt .le .gt .ge;
// unsigned .eq .ne .lo .ls .hi .hs (and .lt/.le/.gt/.ge on .u types compare unsigned).
// "selp: d = (c == 1) ? a : b".
const char *kSetpPtx = R"(
.version 7.0
.target sm_80
.address_size 64

.visible .entry setp64(
	.param .u64 setp64_param_0,
	.param .u64 setp64_param_1,
	.param .u64 setp64_param_2
)
{
	.reg .pred %p<16>;
	.reg .b32 %r<40>;
	.reg .b64 %rd<20>;

	ld.param.u64 %rd1, [setp64_param_0];
	ld.param.u64 %rd2, [setp64_param_1];
	ld.param.u64 %rd3, [setp64_param_2];
	cvta.to.global.u64 %rd4, %rd1;
	cvta.to.global.u64 %rd5, %rd2;
	cvta.to.global.u64 %rd6, %rd3;
	mov.u32 %r1, %tid.x;
	mul.wide.u32 %rd7, %r1, 16;
	add.s64 %rd8, %rd4, %rd7;
	ld.global.u64 %rd9, [%rd8];
	ld.global.u64 %rd10, [%rd8+8];
	setp.lt.s64 %p1, %rd9, %rd10;
	setp.le.s64 %p2, %rd9, %rd10;
	setp.gt.s64 %p3, %rd9, %rd10;
	setp.ge.s64 %p4, %rd9, %rd10;
	setp.eq.s64 %p5, %rd9, %rd10;
	setp.ne.s64 %p6, %rd9, %rd10;
	setp.lo.u64 %p7, %rd9, %rd10;
	setp.ls.u64 %p8, %rd9, %rd10;
	setp.hi.u64 %p9, %rd9, %rd10;
	setp.hs.u64 %p10, %rd9, %rd10;
	setp.lt.u64 %p11, %rd9, %rd10;
	setp.ge.u64 %p12, %rd9, %rd10;
	selp.u32 %r2, 1, 0, %p1;
	selp.u32 %r3, 2, 0, %p2;
	selp.u32 %r4, 4, 0, %p3;
	selp.u32 %r5, 8, 0, %p4;
	selp.u32 %r6, 16, 0, %p5;
	selp.u32 %r7, 32, 0, %p6;
	selp.u32 %r8, 64, 0, %p7;
	selp.u32 %r9, 128, 0, %p8;
	selp.u32 %r10, 256, 0, %p9;
	selp.u32 %r11, 512, 0, %p10;
	selp.u32 %r12, 1024, 0, %p11;
	selp.u32 %r13, 2048, 0, %p12;
	or.b32 %r14, %r2, %r3;
	or.b32 %r15, %r14, %r4;
	or.b32 %r16, %r15, %r5;
	or.b32 %r17, %r16, %r6;
	or.b32 %r18, %r17, %r7;
	or.b32 %r19, %r18, %r8;
	or.b32 %r20, %r19, %r9;
	or.b32 %r21, %r20, %r10;
	or.b32 %r22, %r21, %r11;
	or.b32 %r23, %r22, %r12;
	or.b32 %r24, %r23, %r13;
	selp.b64 %rd11, %rd9, %rd10, %p1;       // signed min
	selp.b64 %rd12, %rd9, %rd10, %p9;       // unsigned max
	mul.wide.u32 %rd13, %r1, 24;
	add.s64 %rd14, %rd6, %rd13;
	st.global.u64 [%rd14], %rd11;
	st.global.u64 [%rd14+8], %rd12;
	mul.wide.u32 %rd15, %r1, 4;
	add.s64 %rd16, %rd5, %rd15;
	st.global.u32 [%rd16], %r24;
	ret;
}
)";

TEST(PtxEmuInteger, Setp64SignedUnsignedAndSelp) {
  LOAD_MODULE(m, kSetpPtx);
  CUfunction f = m.fn("setp64");
  ASSERT_NE(f, nullptr);
  std::vector<uint64_t> xy = {static_cast<uint64_t>(-1), 1, 1, static_cast<uint64_t>(-1), 5, 5,
                              0x8000000000000000ull, 0x7fffffffffffffffull, 0, 0,
                              static_cast<uint64_t>(-5), static_cast<uint64_t>(-3)};
  std::mt19937_64 rng(11);
  while (xy.size() < 64) {
    uint64_t x = rng();
    xy.push_back(x);
    xy.push_back(rng() % 3 == 0 ? x : rng());
  }
  Buf<uint64_t> din(xy), dsel(32 * 3, 0);
  Buf<uint32_t> dflags(32, 0);
  LAUNCH_OK(f, Dim3{}, Dim3{32, 1, 1}, {din.arg(), dflags.arg(), dsel.arg()});
  std::vector<uint32_t> flags = dflags.get();
  std::vector<uint64_t> sel = dsel.get();
  for (int i = 0; i < 32; ++i) {
    uint64_t x = xy[2 * i], y = xy[2 * i + 1];
    int64_t sx = static_cast<int64_t>(x), sy = static_cast<int64_t>(y);
    uint32_t want = (sx < sy) << 0 | (sx <= sy) << 1 | (sx > sy) << 2 | (sx >= sy) << 3 |
                    (sx == sy) << 4 | (sx != sy) << 5 | (x < y) << 6 | (x <= y) << 7 |
                    (x > y) << 8 | (x >= y) << 9 | (x < y) << 10 | (x >= y) << 11;
    EXPECT_EQ(flags[i], want) << "i=" << i << " x=" << x << " y=" << y;
    EXPECT_EQ(sel[i * 3 + 0], static_cast<uint64_t>(std::min(sx, sy))) << "selp signed min i=" << i;
    EXPECT_EQ(sel[i * 3 + 1], std::max(x, y)) << "selp unsigned max i=" << i;
  }
}

// ==========================================================================================
// 6. Floating point
// ==========================================================================================

// A one-instruction f32 map: out[i] = OP(in[i]) (templated; @OP@ @DST@ @ST@ filled in).
const char *kUnaryTemplate = R"(
.version 7.0
.target sm_80
.address_size 64

.visible .entry unary(
	.param .u64 unary_param_0,
	.param .u64 unary_param_1,
	.param .u32 unary_param_2
)
{
	.reg .pred %p<2>;
	.reg .b32 %r<8>;
	.reg .f32 %f<4>;
	.reg .b64 %rd<8>;

	ld.param.u64 %rd1, [unary_param_0];
	ld.param.u64 %rd2, [unary_param_1];
	ld.param.u32 %r1, [unary_param_2];
	mov.u32 %r2, %ctaid.x;
	mov.u32 %r3, %ntid.x;
	mov.u32 %r4, %tid.x;
	mad.lo.s32 %r5, %r2, %r3, %r4;
	setp.ge.u32 %p1, %r5, %r1;
	@%p1 bra $L__BB0_2;
	cvta.to.global.u64 %rd3, %rd1;
	cvta.to.global.u64 %rd4, %rd2;
	mul.wide.u32 %rd5, %r5, 4;
	add.s64 %rd6, %rd3, %rd5;
	ld.global.f32 %f1, [%rd6];
	@OP@ @DST@, %f1;
	add.s64 %rd7, %rd4, %rd5;
	st.global.@ST@ [%rd7], @DST@;
$L__BB0_2:
	ret;
}
)";

// Runs `op` over `in` (32 threads per block, several blocks) and returns the raw 32-bit results.
std::vector<uint32_t> run_unary(const std::string &op, bool int_result,
                                const std::vector<float> &in, std::string *err = nullptr) {
  init_driver();
  std::string ptx = subst(kUnaryTemplate, {{"OP", op},
                                           {"DST", int_result ? "%r6" : "%f2"},
                                           {"ST", int_result ? "u32" : "f32"}});
  Module m(ptx);
  EXPECT_TRUE(m.ok()) << op << ": module load failed: " << m.error();
  if (!m.ok()) return {};
  CUfunction f = m.fn("unary");
  if (!f) return {};
  Buf<float> din(in);
  Buf<uint32_t> dout(in.size(), 0xcd);
  uint32_t n = static_cast<uint32_t>(in.size());
  CUresult r = launch(f, Dim3{(n + 31) / 32, 1, 1}, Dim3{32, 1, 1}, {din.arg(), dout.arg(), &n});
  EXPECT_EQ(r, 0) << op << ": launch failed: " << last_error();
  if (err) *err = last_error();
  return dout.get();
}

// cvt with integer rounding. Manual: ".rni round to nearest integer, choosing even integer if
// source is equidistant between two integers; .rzi round to nearest integer in the direction of
// zero; .rmi ... in direction of negative infinity; .rpi ... positive infinity". "For
// float-to-integer conversions, the result is clamped to the destination range by default"
// (example: "cvt.s32.f64 j,r; // float-to-int saturates by default").
TEST(PtxEmuFloat, CvtIntegerRoundingModes) {
  std::vector<float> in = {0.5f,   1.5f,    2.5f,   -0.5f,  -1.5f,  -2.5f,  2.4999998f, 2.5000002f,
                           -3.7f,  3.7f,    0.0f,   -0.0f,  1e10f,  -1e10f, 8388609.0f, 0.49999997f,
                           -1.25f, 123.5f,  124.5f, 1e-30f, -1e-30f, 3e9f,  -3e9f, 2147483520.0f};
  struct Op {
    const char *op;
    bool int_result;
    double (*ref)(double);
  };
  std::vector<Op> ops = {
      {"cvt.rni.f32.f32", false, [](double v) { return std::nearbyint(v); }},
      {"cvt.rzi.f32.f32", false, [](double v) { return std::trunc(v); }},
      {"cvt.rmi.f32.f32", false, [](double v) { return std::floor(v); }},
      {"cvt.rpi.f32.f32", false, [](double v) { return std::ceil(v); }},
      {"cvt.rni.s32.f32", true, [](double v) { return std::nearbyint(v); }},
      {"cvt.rzi.s32.f32", true, [](double v) { return std::trunc(v); }},
      {"cvt.rmi.s32.f32", true, [](double v) { return std::floor(v); }},
      {"cvt.rpi.s32.f32", true, [](double v) { return std::ceil(v); }},
      {"cvt.rzi.u32.f32", true, [](double v) { return std::trunc(v); }},
  };
  for (const Op &op : ops) {
    std::vector<uint32_t> out = run_unary(op.op, op.int_result, in);
    ASSERT_EQ(out.size(), in.size()) << op.op;
    bool is_u32 = std::strstr(op.op, ".u32.") != nullptr;
    for (std::size_t i = 0; i < in.size(); ++i) {
      double r = op.ref(in[i]);
      if (!op.int_result) {
        float want = static_cast<float>(r);
        EXPECT_EQ(out[i], fbits(want)) << op.op << "(" << in[i] << ") = " << bitsf(out[i])
                                       << ", want " << want;
      } else if (is_u32) {
        uint32_t want = r <= 0 ? 0u : r >= 4294967295.0 ? 0xffffffffu : static_cast<uint32_t>(r);
        EXPECT_EQ(out[i], want) << op.op << "(" << in[i] << ")";
      } else {
        double c = std::max(-2147483648.0, std::min(2147483647.0, r));
        int32_t want = static_cast<int32_t>(c);
        EXPECT_EQ(static_cast<int32_t>(out[i]), want) << op.op << "(" << in[i] << ")";
      }
    }
  }
}

// cvt to s8 / u8 in 16-bit registers. Manual, "Operand Size Exceeding Instruction-Type
// Size": "the destination data is zero- or sign-extended to the size of the destination
// register. If the corresponding instruction type is signed integer, the data is
// sign-extended; otherwise, the data is zero-extended." (LLVM widens i8 this way.)
TEST(PtxEmuInteger, CvtToS8SignExtendsIntoAWiderRegister) {
  init_driver();
  const char *ptx = R"(
.version 7.0
.target sm_80
.address_size 64

.visible .entry narrow(.param .u64 narrow_param_0, .param .u64 narrow_param_1)
{
	.reg .b16 %rs<3>;
	.reg .b32 %r<3>;
	.reg .f32 %f<3>;
	.reg .b64 %rd<8>;

	ld.param.u64 %rd1, [narrow_param_0];
	ld.param.u64 %rd2, [narrow_param_1];
	mov.u32 %r1, %tid.x;
	mul.wide.u32 %rd3, %r1, 4;
	add.s64 %rd4, %rd1, %rd3;
	ld.global.u32 %r2, [%rd4];
	cvt.s8.s32 %rs1, %r2;
	cvt.rn.f32.s16 %f1, %rs1;
	cvt.u8.s32 %rs2, %r2;
	cvt.rn.f32.u16 %f2, %rs2;
	mul.wide.u32 %rd5, %r1, 8;
	add.s64 %rd6, %rd2, %rd5;
	st.global.f32 [%rd6], %f1;
	st.global.f32 [%rd6+4], %f2;
	ret;
}
)";
  Module m(ptx);
  ASSERT_TRUE(m.ok()) << m.error();
  std::vector<uint32_t> in = {0x7f, 0x80, 0x1ff, 0x12345681, 0, 0xfe};
  Buf<uint32_t> din(in);
  Buf<float> dout(2 * in.size(), 0xcd);
  ASSERT_EQ(launch(m.fn("narrow"), Dim3{1, 1, 1}, Dim3{uint32_t(in.size()), 1, 1},
                   {din.arg(), dout.arg()}),
            0)
      << last_error();
  std::vector<float> want = {127, 127, -128, 128, -1, 255, -127, 129, 0, 0, -2, 254};
  EXPECT_EQ(dout.get(), want);
}

// cvt.sat.f32.f32. Manual: "For floating-point destination types, .sat limits the result to the
// range [0.0, 1.0]. NaN results are flushed to positive zero."
TEST(PtxEmuFloat, CvtSatClampsToUnitIntervalAndFlushesNaN) {
  std::vector<float> in = {-1.0f, 0.25f, 0.999f, 1.0f, 1.5f, 1e30f, -INFINITY, INFINITY,
                           std::numeric_limits<float>::quiet_NaN(), 0.0f, 3e-39f /*subnormal*/};
  std::vector<uint32_t> out = run_unary("cvt.sat.f32.f32", false, in);
  ASSERT_EQ(out.size(), in.size());
  std::vector<float> want = {0.0f, 0.25f, 0.999f, 1.0f, 1.0f, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f,
                             3e-39f};
  for (std::size_t i = 0; i < in.size(); ++i)
    EXPECT_EQ(out[i], fbits(want[i])) << "cvt.sat.f32.f32(" << in[i] << ") = " << bitsf(out[i]);
}

// neg.f32: "Negate the sign of a"; with .ftz a subnormal input is flushed to sign-preserving
// zero first. neg.s32 is two's-complement negation (of the same bits read as an integer).
TEST(PtxEmuFloat, NegFlipsTheSignBit) {
  std::vector<float> in = {1.5f, -2.0f, 0.0f, -0.0f, INFINITY, -INFINITY, 3e-39f, -3e-39f, 1e30f};
  std::vector<uint32_t> out = run_unary("neg.f32", false, in);
  std::vector<uint32_t> ftz = run_unary("neg.ftz.f32", false, in);
  std::vector<uint32_t> si = run_unary("neg.s32", true, in);
  ASSERT_EQ(out.size(), in.size());
  ASSERT_EQ(ftz.size(), in.size());
  ASSERT_EQ(si.size(), in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    EXPECT_EQ(out[i], fbits(in[i]) ^ 0x80000000u) << "neg.f32(" << in[i] << ")";
    bool sub = std::fpclassify(in[i]) == FP_SUBNORMAL;
    uint32_t flushed = sub ? (fbits(in[i]) & 0x80000000u) : fbits(in[i]);
    EXPECT_EQ(ftz[i], flushed ^ 0x80000000u) << "neg.ftz.f32(" << in[i] << ")";
    EXPECT_EQ(si[i], 0u - fbits(in[i])) << "neg.s32(bits of " << in[i] << ")";
  }
}

// ex2.approx.ftz.f32: "Raise 2 to the power a" — approximate; the manual gives a maximum
// relative error of about 2^-22 for the f32 form. Allow 2e-6 relative.
TEST(PtxEmuFloat, Ex2ApproxWithinRelativeError) {
  std::vector<float> in = {0.0f, 1.0f, -1.0f, 3.0f, 10.0f, -10.0f, 0.5f, -0.5f, 0.1f, 23.75f,
                           -20.3f};
  std::mt19937 rng(8);
  std::uniform_real_distribution<float> dist(-30.0f, 30.0f);
  while (in.size() < 96) in.push_back(dist(rng));
  std::vector<uint32_t> out = run_unary("ex2.approx.ftz.f32", false, in);
  ASSERT_EQ(out.size(), in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    double want = std::exp2(static_cast<double>(in[i]));
    EXPECT_NEAR(bitsf(out[i]), want, 2e-6 * want) << "ex2(" << in[i] << ")";
  }
  // Manual: ex2.approx of +Inf is +Inf, of -Inf is +0.0.
  std::vector<uint32_t> inf = run_unary("ex2.approx.ftz.f32", false, {INFINITY, -INFINITY});
  ASSERT_EQ(inf.size(), 2u);
  EXPECT_EQ(inf[0], fbits(INFINITY));
  EXPECT_EQ(inf[1], fbits(0.0f));
}

// Binary f32 ops: out[i] = OP(a[i], b[i]).
const char *kBinaryTemplate = R"(
.version 7.0
.target sm_80
.address_size 64

.visible .entry binary(
	.param .u64 binary_param_0,
	.param .u64 binary_param_1,
	.param .u64 binary_param_2
)
{
	.reg .b32 %r<4>;
	.reg .f32 %f<4>;
	.reg .b64 %rd<12>;

	ld.param.u64 %rd1, [binary_param_0];
	ld.param.u64 %rd2, [binary_param_1];
	ld.param.u64 %rd3, [binary_param_2];
	cvta.to.global.u64 %rd4, %rd1;
	cvta.to.global.u64 %rd5, %rd2;
	cvta.to.global.u64 %rd6, %rd3;
	mov.u32 %r1, %ctaid.x;
	mov.u32 %r2, %tid.x;
	shl.b32 %r3, %r1, 5;
	add.s32 %r3, %r3, %r2;
	mul.wide.u32 %rd7, %r3, 4;
	add.s64 %rd8, %rd4, %rd7;
	ld.global.f32 %f1, [%rd8];
	add.s64 %rd9, %rd5, %rd7;
	ld.global.f32 %f2, [%rd9];
	@OP@ %f3, %f1, %f2;
	add.s64 %rd10, %rd6, %rd7;
	st.global.f32 [%rd10], %f3;
	ret;
}
)";

std::vector<uint32_t> run_binary(const std::string &op, const std::vector<float> &a,
                                 const std::vector<float> &b) {
  init_driver();
  EXPECT_EQ(a.size() % 32, 0u);
  Module m(subst(kBinaryTemplate, {{"OP", op}}));
  EXPECT_TRUE(m.ok()) << op << ": module load failed: " << m.error();
  if (!m.ok()) return {};
  CUfunction f = m.fn("binary");
  if (!f) return {};
  Buf<float> da(a), db(b);
  Buf<uint32_t> dout(a.size(), 0xcd);
  CUresult r = launch(f, Dim3{static_cast<unsigned>(a.size() / 32), 1, 1}, Dim3{32, 1, 1},
                      {da.arg(), db.arg(), dout.arg()});
  EXPECT_EQ(r, 0) << op << ": launch failed: " << last_error();
  return dout.get();
}

std::vector<float> pad32(std::vector<float> v, float fill) {
  while (v.size() % 32) v.push_back(fill);
  return v;
}

// max/min. Manual: "If .NaN modifier is specified, then the result is canonical NaN if either
// of the inputs is NaN" (PTX 7.0, sm_80); without .NaN, "if one operand is NaN, the result is the
// non-NaN operand" (IEEE maxNum / minNum).
TEST(PtxEmuFloat, MaxMinNaNPropagation) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> a = pad32({1.0f, nan, 3.0f, -2.0f, nan, -INFINITY, 7.0f}, 0.0f);
  std::vector<float> b = pad32({nan, 2.0f, -5.0f, -2.5f, nan, 4.0f, 7.0f}, 0.0f);
  std::vector<uint32_t> mxn = run_binary("max.NaN.f32", a, b);
  std::vector<uint32_t> mnn = run_binary("min.NaN.f32", a, b);
  std::vector<uint32_t> mx = run_binary("max.f32", a, b);
  std::vector<uint32_t> mn = run_binary("min.f32", a, b);
  ASSERT_EQ(mxn.size(), a.size());
  ASSERT_EQ(mnn.size(), a.size());
  ASSERT_EQ(mx.size(), a.size());
  ASSERT_EQ(mn.size(), a.size());
  for (std::size_t i = 0; i < 7; ++i) {
    bool any_nan = std::isnan(a[i]) || std::isnan(b[i]);
    if (any_nan) {
      EXPECT_TRUE(std::isnan(bitsf(mxn[i]))) << "max.NaN(" << a[i] << "," << b[i] << ")";
      EXPECT_TRUE(std::isnan(bitsf(mnn[i]))) << "min.NaN(" << a[i] << "," << b[i] << ")";
    } else {
      EXPECT_EQ(bitsf(mxn[i]), std::max(a[i], b[i]));
      EXPECT_EQ(bitsf(mnn[i]), std::min(a[i], b[i]));
    }
    float want_max = std::fmax(a[i], b[i]), want_min = std::fmin(a[i], b[i]);
    if (std::isnan(want_max)) {
      EXPECT_TRUE(std::isnan(bitsf(mx[i]))) << "max(NaN,NaN)";
      EXPECT_TRUE(std::isnan(bitsf(mn[i]))) << "min(NaN,NaN)";
    } else {
      EXPECT_EQ(bitsf(mx[i]), want_max) << "max.f32(" << a[i] << "," << b[i] << ")";
      EXPECT_EQ(bitsf(mn[i]), want_min) << "min.f32(" << a[i] << "," << b[i] << ")";
    }
  }
}

// div.rn.f32 / sqrt.rn.f32 / rcp.rn.f32: ".rn ... IEEE 754 compliant" (correctly rounded), so the
// result must equal the host's IEEE result bit for bit.
TEST(PtxEmuFloat, DivRnIsCorrectlyRounded) {
  std::mt19937 rng(21);
  std::uniform_real_distribution<float> mant(1.0f, 2.0f);
  std::uniform_int_distribution<int> ex(-20, 20);
  std::vector<float> a, b;
  for (int i = 0; i < 256; ++i) {
    a.push_back(std::ldexp(mant(rng), ex(rng)) * (rng() % 2 ? 1.0f : -1.0f));
    b.push_back(std::ldexp(mant(rng), ex(rng)) * (rng() % 2 ? 1.0f : -1.0f));
  }
  a[0] = 1.0f, b[0] = 3.0f;
  a[1] = 2.0f, b[1] = 3.0f;
  a[2] = 1.0f, b[2] = 0.0f;  // +inf
  a[3] = -1.0f, b[3] = 0.0f; // -inf
  a[4] = 0.0f, b[4] = 0.0f;  // NaN
  std::vector<uint32_t> q = run_binary("div.rn.f32", a, b);
  ASSERT_EQ(q.size(), a.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    float want = a[i] / b[i];
    if (std::isnan(want))
      EXPECT_TRUE(std::isnan(bitsf(q[i]))) << a[i] << "/" << b[i];
    else
      EXPECT_EQ(q[i], fbits(want)) << a[i] << "/" << b[i] << " got " << bitsf(q[i]);
  }
  std::vector<float> pos;
  for (float v : a) pos.push_back(std::fabs(v));
  std::vector<uint32_t> s = run_unary("sqrt.rn.f32", false, pos);
  std::vector<uint32_t> rc = run_unary("rcp.rn.f32", false, b);
  ASSERT_EQ(s.size(), pos.size());
  ASSERT_EQ(rc.size(), b.size());
  for (std::size_t i = 0; i < pos.size(); ++i) {
    EXPECT_EQ(s[i], fbits(std::sqrt(pos[i]))) << "sqrt(" << pos[i] << ")";
    EXPECT_EQ(rc[i], fbits(1.0f / b[i])) << "rcp(" << b[i] << ")";
  }
}

// fma.{rn,rm,rz,rp}.f32. Manual: "fma.f32 computes the product of a and b to infinite precision
// and then adds c to this product, again in infinite precision. The resulting value is then
// rounded to single precision using the rounding mode specified by .rnd." Inputs are chosen so the
// exact result fits a double (product: 48 bits; c within a few binades), then rounded here.
const char *kFmaPtx = R"(
.version 7.0
.target sm_80
.address_size 64

.visible .entry fma_modes(
	.param .u64 fma_modes_param_0,
	.param .u64 fma_modes_param_1
)
{
	.reg .b32 %r<4>;
	.reg .f32 %f<10>;
	.reg .b64 %rd<10>;

	ld.param.u64 %rd1, [fma_modes_param_0];
	ld.param.u64 %rd2, [fma_modes_param_1];
	cvta.to.global.u64 %rd3, %rd1;
	cvta.to.global.u64 %rd4, %rd2;
	mov.u32 %r1, %tid.x;
	mul.wide.u32 %rd5, %r1, 12;
	add.s64 %rd6, %rd3, %rd5;
	ld.global.f32 %f1, [%rd6];
	ld.global.f32 %f2, [%rd6+4];
	ld.global.f32 %f3, [%rd6+8];
	fma.rn.f32 %f4, %f1, %f2, %f3;
	fma.rm.f32 %f5, %f1, %f2, %f3;
	fma.rz.f32 %f6, %f1, %f2, %f3;
	fma.rp.f32 %f7, %f1, %f2, %f3;
	mul.wide.u32 %rd7, %r1, 16;
	add.s64 %rd8, %rd4, %rd7;
	st.global.v4.f32 [%rd8], {%f4, %f5, %f6, %f7};
	ret;
}
)";

TEST(PtxEmuFloat, FmaRoundingModes) {
  LOAD_MODULE(m, kFmaPtx);
  CUfunction f = m.fn("fma_modes");
  ASSERT_NE(f, nullptr);
  const float e12 = 1.0f + std::ldexp(1.0f, -12);
  std::vector<std::array<float, 3>> cases = {
      // exact = 1 + 2^-11 + 0.75 ulp(1): .rn rounds up, .rm/.rz down, .rp up
      {e12, e12, std::ldexp(1.0f, -25)},
      // the negative mirror: .rm rounds away from zero, .rz toward it
      {-e12, e12, -std::ldexp(1.0f, -25)},
      // fused: exact 2^-24, where an unfused multiply (rounding 1+2^-11+2^-24 to even) gives 0
      {e12, e12, -(1.0f + std::ldexp(1.0f, -11))},
      // exact tie 1 + 2^-11 + 2^-24 (half ulp): .rn to even (down), .rp up
      {e12, e12, 0.0f},
      {1.0f, 1.0f, 1.0f},
  };
  std::mt19937 rng(17);
  std::uniform_real_distribution<float> mant(1.0f, 2.0f);
  while (cases.size() < 64) {
    float a = mant(rng) * (rng() % 2 ? 1.0f : -1.0f);
    float b = mant(rng) * (rng() % 2 ? 1.0f : -1.0f);
    float c = std::ldexp(mant(rng), -static_cast<int>(rng() % 4)) * (rng() % 2 ? 1.0f : -1.0f);
    cases.push_back({a, b, c});
  }
  std::vector<float> in;
  for (auto &c : cases) in.insert(in.end(), c.begin(), c.end());
  Buf<float> din(in);
  Buf<uint32_t> dout(cases.size() * 4, 0);
  LAUNCH_OK(f, Dim3{}, Dim3{static_cast<unsigned>(cases.size()), 1, 1}, {din.arg(), dout.arg()});
  std::vector<uint32_t> out = dout.get();
  const char *names[] = {"fma.rn", "fma.rm", "fma.rz", "fma.rp"};
  int rn_ne_rm = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    auto [a, b, c] = cases[i];
    double exact = static_cast<double>(a) * static_cast<double>(b) + static_cast<double>(c);
    for (int mode = 0; mode < 4; ++mode) {
      float want = round_to_f32(exact, static_cast<Round>(mode));
      EXPECT_EQ(out[i * 4 + mode], fbits(want))
          << names[mode] << "(" << a << ", " << b << ", " << c << ") = " << bitsf(out[i * 4 + mode])
          << ", want " << want;
    }
    rn_ne_rm += round_to_f32(exact, RN) != round_to_f32(exact, RM);
  }
  EXPECT_GT(rn_ne_rm, 5); // the inputs do distinguish the rounding modes
  EXPECT_EQ(bitsf(out[2 * 4 + 0]), std::ldexp(1.0f, -24)); // fused, not mul-then-add
}

// cvt.rn.bf16.f32 and cvt.rn.bf16x2.f32. ".rn: mantissa LSB rounds to nearest even". For
// .bf16x2 "the value converted from input a is stored in the upper half of d and the value
// converted from input b is stored in the lower half of d".
const char *kCvtBf16Ptx = R"(
.version 7.0
.target sm_80
.address_size 64

.visible .entry to_bf16(
	.param .u64 to_bf16_param_0,
	.param .u64 to_bf16_param_1
)
{
	.reg .b16 %rs<2>;
	.reg .b32 %r<2>;
	.reg .f32 %f<2>;
	.reg .b64 %rd<10>;

	ld.param.u64 %rd1, [to_bf16_param_0];
	ld.param.u64 %rd2, [to_bf16_param_1];
	cvta.to.global.u64 %rd3, %rd1;
	cvta.to.global.u64 %rd4, %rd2;
	mov.u32 %r1, %tid.x;
	mul.wide.u32 %rd5, %r1, 4;
	add.s64 %rd6, %rd3, %rd5;
	ld.global.f32 %f1, [%rd6];
	cvt.rn.bf16.f32 %rs1, %f1;
	mul.wide.u32 %rd7, %r1, 2;
	add.s64 %rd8, %rd4, %rd7;
	st.global.b16 [%rd8], %rs1;
	ret;
}

.visible .entry to_bf16x2(
	.param .u64 to_bf16x2_param_0,
	.param .u64 to_bf16x2_param_1
)
{
	.reg .b32 %r<4>;
	.reg .f32 %f<4>;
	.reg .b64 %rd<10>;

	ld.param.u64 %rd1, [to_bf16x2_param_0];
	ld.param.u64 %rd2, [to_bf16x2_param_1];
	cvta.to.global.u64 %rd3, %rd1;
	cvta.to.global.u64 %rd4, %rd2;
	mov.u32 %r1, %tid.x;
	mul.wide.u32 %rd5, %r1, 8;
	add.s64 %rd6, %rd3, %rd5;
	ld.global.v2.f32 {%f1, %f2}, [%rd6];
	cvt.rn.bf16x2.f32 %r2, %f1, %f2;
	mul.wide.u32 %rd7, %r1, 4;
	add.s64 %rd8, %rd4, %rd7;
	st.global.u32 [%rd8], %r2;
	ret;
}
)";

std::vector<uint32_t> bf16_inputs() {
  std::vector<uint32_t> in = {
      0x3f800000u, // 1.0 exact
      0x3f808000u, // tie, even below (0x3f80) -> 0x3f80
      0x3f818000u, // tie, odd below (0x3f81) -> 0x3f82
      0x3f808001u, // just above tie -> 0x3f81
      0x3f807fffu, // just below tie -> 0x3f80
      0xbf818000u, // negative tie -> 0xbf82
      0x7f7fffffu, // FLT_MAX -> rounds to +inf 0x7f80
      0x00018000u, // subnormal tie, odd -> 0x0002
      0x80000000u, // -0
      0x7f800000u, // +inf
      0x4049fdb0u, // ~3.1562
      0xc2f6e979u,
  };
  std::mt19937 rng(4);
  while (in.size() < 64) in.push_back(rng() & 0xbfffffffu); // finite, both signs
  return in;
}

TEST(PtxEmuFloat, CvtRnBf16RoundsToNearestEven) {
  LOAD_MODULE(m, kCvtBf16Ptx);
  CUfunction f = m.fn("to_bf16");
  ASSERT_NE(f, nullptr);
  std::vector<uint32_t> in = bf16_inputs();
  in.push_back(0x7fc00001u); // NaN
  Buf<uint32_t> din(in);
  Buf<uint16_t> dout(in.size(), 0xab);
  LAUNCH_OK(f, Dim3{}, Dim3{static_cast<unsigned>(in.size()), 1, 1}, {din.arg(), dout.arg()});
  std::vector<uint16_t> out = dout.get();
  for (std::size_t i = 0; i + 1 < in.size(); ++i)
    EXPECT_EQ(out[i], f32_to_bf16_rne(in[i])) << std::hex << "cvt.rn.bf16.f32(0x" << in[i] << ")";
  uint16_t nan = out.back();
  EXPECT_TRUE((nan & 0x7f80) == 0x7f80 && (nan & 0x7f) != 0) << "NaN -> 0x" << std::hex << nan;
}

TEST(PtxEmuFloat, CvtRnBf16x2PacksAHighBLow) {
  LOAD_MODULE(m, kCvtBf16Ptx);
  CUfunction f = m.fn("to_bf16x2");
  ASSERT_NE(f, nullptr);
  std::vector<uint32_t> in = bf16_inputs();
  Buf<uint32_t> din(in);
  Buf<uint32_t> dout(in.size() / 2, 0xab);
  LAUNCH_OK(f, Dim3{}, Dim3{static_cast<unsigned>(in.size() / 2), 1, 1},
            {din.arg(), dout.arg()});
  std::vector<uint32_t> out = dout.get();
  for (std::size_t i = 0; i < in.size() / 2; ++i) {
    uint32_t want = static_cast<uint32_t>(f32_to_bf16_rne(in[2 * i])) << 16 |
                    f32_to_bf16_rne(in[2 * i + 1]);
    EXPECT_EQ(out[i], want) << std::hex << "a=0x" << in[2 * i] << " b=0x" << in[2 * i + 1];
  }
}

// fma.rn.bf16x2: per half, "d = a*b + c" computed in infinite precision and rounded once to bf16
// (.rn). Each .b32 operand holds two bf16 values.
const char *kFmaBf16x2Ptx = R"(
.version 7.0
.target sm_80
.address_size 64

.visible .entry fma_bf16x2(
	.param .u64 fma_bf16x2_param_0,
	.param .u64 fma_bf16x2_param_1
)
{
	.reg .b32 %r<8>;
	.reg .b64 %rd<10>;

	ld.param.u64 %rd1, [fma_bf16x2_param_0];
	ld.param.u64 %rd2, [fma_bf16x2_param_1];
	cvta.to.global.u64 %rd3, %rd1;
	cvta.to.global.u64 %rd4, %rd2;
	mov.u32 %r1, %tid.x;
	mul.wide.u32 %rd5, %r1, 16;
	add.s64 %rd6, %rd3, %rd5;
	ld.global.v4.u32 {%r2, %r3, %r4, %r5}, [%rd6];
	fma.rn.bf16x2 %r6, %r2, %r3, %r4;
	mul.wide.u32 %rd7, %r1, 4;
	add.s64 %rd8, %rd4, %rd7;
	st.global.u32 [%rd8], %r6;
	ret;
}
)";

TEST(PtxEmuFloat, FmaRnBf16x2SingleRounding) {
  LOAD_MODULE(m, kFmaBf16x2Ptx);
  CUfunction f = m.fn("fma_bf16x2");
  ASSERT_NE(f, nullptr);
  std::mt19937 rng(33);
  auto rnd_bf16 = [&](int max_exp) {
    uint32_t sign = rng() & 1, exp = 127 + (rng() % (2 * max_exp + 1)) - max_exp,
             man = rng() & 0x7f;
    return static_cast<uint16_t>(sign << 15 | exp << 7 | man);
  };
  std::vector<uint32_t> in; // per thread: a, b, c, unused (packed bf16x2)
  std::vector<std::array<uint16_t, 6>> halves;
  // A case where product and c need one rounding: 1.0078125^2 - 1 = 2^-6 + 2^-14 (exact),
  // which bf16 must round to 2^-6 * (1 + 2^-8) -> tie -> even 2^-6.
  halves.push_back({0x3f81, 0x3f81, 0xbf80, 0x3f80, 0x3f80, 0x0000});
  while (halves.size() < 64)
    halves.push_back({rnd_bf16(2), rnd_bf16(2), rnd_bf16(3), rnd_bf16(2), rnd_bf16(2),
                      rnd_bf16(3)});
  for (auto &h : halves) { // {a.lo, b.lo, c.lo, a.hi, b.hi, c.hi}
    in.push_back(h[0] | static_cast<uint32_t>(h[3]) << 16);
    in.push_back(h[1] | static_cast<uint32_t>(h[4]) << 16);
    in.push_back(h[2] | static_cast<uint32_t>(h[5]) << 16);
    in.push_back(0);
  }
  Buf<uint32_t> din(in), dout(halves.size(), 0);
  LAUNCH_OK(f, Dim3{}, Dim3{static_cast<unsigned>(halves.size()), 1, 1},
            {din.arg(), dout.arg()});
  std::vector<uint32_t> out = dout.get();
  for (std::size_t i = 0; i < halves.size(); ++i) {
    auto &h = halves[i];
    auto ref = [&](uint16_t a, uint16_t b, uint16_t c) {
      double exact = static_cast<double>(bf16_to_float(a)) * bf16_to_float(b) + bf16_to_float(c);
      return double_to_bf16_rne(exact);
    };
    uint32_t want = ref(h[0], h[1], h[2]) | static_cast<uint32_t>(ref(h[3], h[4], h[5])) << 16;
    EXPECT_EQ(out[i], want) << std::hex << "case " << std::dec << i << std::hex << " a=0x" << in[4 * i]
                            << " b=0x" << in[4 * i + 1] << " c=0x" << in[4 * i + 2];
  }
}

// ==========================================================================================
// 8. Grids: multi-block 1-D with a tail, 2-D and 3-D blocks, special registers, atomics
// ==========================================================================================
//
// Manual, special registers: %tid "thread identifier within a CTA", %ntid "number of thread IDs
// per CTA dimension", %ctaid "CTA identifier within a grid", %nctaid "number of CTA ids per grid
// dimension", %laneid "the thread's lane within the warp". (Warps are formed from consecutive
// linear thread ids x + y*ntid.x + z*ntid.x*ntid.y — the CUDA programming model's definition.)
const char *kGridPtx = R"(
.version 7.0
.target sm_80
.address_size 64

.visible .entry grid_1d(
	.param .u64 grid_1d_param_0,
	.param .u64 grid_1d_param_1,
	.param .u64 grid_1d_param_2,
	.param .u32 grid_1d_param_3
)
{
	.reg .pred %p<3>;
	.reg .b32 %r<12>;
	.reg .b64 %rd<14>;

	ld.param.u64 %rd1, [grid_1d_param_0];
	ld.param.u64 %rd2, [grid_1d_param_1];
	ld.param.u64 %rd3, [grid_1d_param_2];
	cvta.to.global.u64 %rd4, %rd1;
	cvta.to.global.u64 %rd5, %rd2;
	cvta.to.global.u64 %rd6, %rd3;
	mov.u32 %r1, %ctaid.x;
	mov.u32 %r2, %ntid.x;
	mov.u32 %r3, %tid.x;
	mad.lo.s32 %r4, %r1, %r2, %r3;
	setp.ne.s32 %p1, %r3, 0;
	@%p1 bra $L__BB0_2;
	mov.u32 %r5, %nctaid.x;
	mad.lo.s32 %r6, %r2, 1000, %r5;
	mul.wide.u32 %rd7, %r1, 4;
	add.s64 %rd8, %rd6, %rd7;
	st.global.u32 [%rd8], %r6;
$L__BB0_2:
	ld.param.u32 %r7, [grid_1d_param_3];
	setp.ge.u32 %p2, %r4, %r7;
	@%p2 bra $L__BB0_4;
	mul.wide.u32 %rd9, %r4, 4;
	add.s64 %rd10, %rd4, %rd9;
	ld.global.u32 %r8, [%rd10];
	shl.b32 %r9, %r8, 1;
	add.s32 %r10, %r9, %r1;
	add.s64 %rd11, %rd5, %rd9;
	st.global.u32 [%rd11], %r10;
$L__BB0_4:
	ret;
}

// out[g] = tid.x | tid.y<<8 | tid.z<<16 | ctaid.x<<24 | ctaid.y<<28
// out2[g] = laneid | ntid.x<<8 | ntid.y<<14 | ntid.z<<18 | nctaid.x<<22 | nctaid.y<<27
// g = (ctaid.y*nctaid.x + ctaid.x) * (ntid.x*ntid.y*ntid.z) + (tid.z*ntid.y + tid.y)*ntid.x + tid.x
.visible .entry grid_nd(
	.param .u64 grid_nd_param_0,
	.param .u64 grid_nd_param_1
)
{
	.reg .b32 %r<40>;
	.reg .b64 %rd<12>;

	ld.param.u64 %rd1, [grid_nd_param_0];
	ld.param.u64 %rd2, [grid_nd_param_1];
	cvta.to.global.u64 %rd3, %rd1;
	cvta.to.global.u64 %rd4, %rd2;
	mov.u32 %r1, %tid.x;
	mov.u32 %r2, %tid.y;
	mov.u32 %r3, %tid.z;
	mov.u32 %r4, %ntid.x;
	mov.u32 %r5, %ntid.y;
	mov.u32 %r6, %ntid.z;
	mov.u32 %r7, %ctaid.x;
	mov.u32 %r8, %ctaid.y;
	mov.u32 %r9, %nctaid.x;
	mov.u32 %r10, %nctaid.y;
	mov.u32 %r11, %laneid;
	mad.lo.s32 %r12, %r3, %r5, %r2;
	mad.lo.s32 %r13, %r12, %r4, %r1;
	mad.lo.s32 %r14, %r8, %r9, %r7;
	mul.lo.s32 %r15, %r4, %r5;
	mul.lo.s32 %r16, %r15, %r6;
	mad.lo.s32 %r17, %r14, %r16, %r13;
	shl.b32 %r18, %r2, 8;
	or.b32 %r19, %r18, %r1;
	shl.b32 %r20, %r3, 16;
	or.b32 %r21, %r19, %r20;
	shl.b32 %r22, %r7, 24;
	or.b32 %r23, %r21, %r22;
	shl.b32 %r24, %r8, 28;
	or.b32 %r25, %r23, %r24;
	shl.b32 %r26, %r4, 8;
	or.b32 %r27, %r26, %r11;
	shl.b32 %r28, %r5, 14;
	or.b32 %r29, %r27, %r28;
	shl.b32 %r30, %r6, 18;
	or.b32 %r31, %r29, %r30;
	shl.b32 %r32, %r9, 22;
	or.b32 %r33, %r31, %r32;
	shl.b32 %r34, %r10, 27;
	or.b32 %r35, %r33, %r34;
	mul.wide.u32 %rd5, %r17, 4;
	add.s64 %rd6, %rd3, %rd5;
	st.global.u32 [%rd6], %r25;
	add.s64 %rd7, %rd4, %rd5;
	st.global.u32 [%rd7], %r35;
	ret;
}

// atom.global.add.u32 returns the old value ("atomically loads the original value ... performs
// a reduction operation ... and stores the result"); every thread of every block takes a ticket.
.visible .entry tickets(
	.param .u64 tickets_param_0,
	.param .u64 tickets_param_1
)
{
	.reg .b32 %r<8>;
	.reg .b64 %rd<8>;

	ld.param.u64 %rd1, [tickets_param_0];
	ld.param.u64 %rd2, [tickets_param_1];
	cvta.to.global.u64 %rd3, %rd1;
	cvta.to.global.u64 %rd4, %rd2;
	mov.u32 %r1, %ctaid.x;
	mov.u32 %r2, %ntid.x;
	mov.u32 %r3, %tid.x;
	mad.lo.s32 %r4, %r1, %r2, %r3;
	atom.global.add.u32 %r5, [%rd3], 1;
	mul.wide.u32 %rd5, %r4, 4;
	add.s64 %rd6, %rd4, %rd5;
	st.global.u32 [%rd6], %r5;
	ret;
}
)";

TEST(PtxEmuGrid, MultiBlock1DWithTail) {
  LOAD_MODULE(m, kGridPtx);
  CUfunction f = m.fn("grid_1d");
  ASSERT_NE(f, nullptr);
  const unsigned blocks = 5, threads = 96, n = 470; // the last block is partly out of range
  std::vector<uint32_t> in(blocks * threads);
  for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<uint32_t>(i * 13 + 1);
  Buf<uint32_t> din(in), dout(blocks * threads, 0xa5), dmeta(blocks, 0);
  uint32_t nn = n;
  LAUNCH_OK(f, Dim3{blocks, 1, 1}, Dim3{threads, 1, 1}, {din.arg(), dout.arg(), dmeta.arg(), &nn});
  std::vector<uint32_t> out = dout.get(), meta = dmeta.get();
  for (unsigned g = 0; g < blocks * threads; ++g) {
    uint32_t want = g < n ? in[g] * 2 + g / threads : 0xa5a5a5a5u;
    EXPECT_EQ(out[g], want) << "gid " << g;
  }
  for (unsigned b = 0; b < blocks; ++b) EXPECT_EQ(meta[b], threads * 1000 + blocks) << "block " << b;
}

void check_grid_nd(Dim3 grid, Dim3 block) {
  LOAD_MODULE(m, kGridPtx);
  CUfunction f = m.fn("grid_nd");
  ASSERT_NE(f, nullptr);
  unsigned per_block = block.x * block.y * block.z, total = per_block * grid.x * grid.y;
  Buf<uint32_t> d1(total, 0xff), d2(total, 0xff);
  LAUNCH_OK(f, grid, block, {d1.arg(), d2.arg()});
  std::vector<uint32_t> o1 = d1.get(), o2 = d2.get();
  for (unsigned cy = 0; cy < grid.y; ++cy)
    for (unsigned cx = 0; cx < grid.x; ++cx)
      for (unsigned z = 0; z < block.z; ++z)
        for (unsigned y = 0; y < block.y; ++y)
          for (unsigned x = 0; x < block.x; ++x) {
            unsigned local = (z * block.y + y) * block.x + x;
            unsigned g = (cy * grid.x + cx) * per_block + local;
            uint32_t w1 = x | y << 8 | z << 16 | cx << 24 | cy << 28;
            uint32_t w2 = (local % 32) | block.x << 8 | block.y << 14 | block.z << 18 |
                          grid.x << 22 | grid.y << 27;
            EXPECT_EQ(o1[g], w1) << "ctaid (" << cx << "," << cy << ") tid (" << x << "," << y
                                 << "," << z << ")";
            EXPECT_EQ(o2[g], w2) << "ctaid (" << cx << "," << cy << ") tid (" << x << "," << y
                                 << "," << z << ") laneid/ntid/nctaid";
          }
}

TEST(PtxEmuGrid, TwoDimensionalBlockAndGrid) { check_grid_nd(Dim3{3, 2, 1}, Dim3{16, 4, 1}); }
TEST(PtxEmuGrid, ThreeDimensionalBlockPartialWarp) { check_grid_nd(Dim3{2, 1, 1}, Dim3{4, 2, 3}); }

TEST(PtxEmuGrid, AtomicAddTicketsAreUnique) {
  LOAD_MODULE(m, kGridPtx);
  CUfunction f = m.fn("tickets");
  ASSERT_NE(f, nullptr);
  const unsigned blocks = 4, threads = 128;
  Buf<uint32_t> counter(1, 0), dout(blocks * threads, 0xff);
  LAUNCH_OK(f, Dim3{blocks, 1, 1}, Dim3{threads, 1, 1}, {counter.arg(), dout.arg()});
  EXPECT_EQ(counter.get()[0], blocks * threads);
  std::vector<uint32_t> out = dout.get();
  std::sort(out.begin(), out.end());
  for (unsigned i = 0; i < blocks * threads; ++i) EXPECT_EQ(out[i], i);
}

// ==========================================================================================
// 7. Error paths (last: a faulting launch must not disturb the tests above)
// ==========================================================================================

const char *kOobPtx = R"(
.version 7.0
.target sm_80
.address_size 64

// out[0] = in[idx] — idx comes from a parameter, so the address is past the buffer's end.
.visible .entry oob_reader(
	.param .u64 oob_reader_param_0,
	.param .u64 oob_reader_param_1,
	.param .u64 oob_reader_param_2
)
{
	.reg .b32 %r<2>;
	.reg .b64 %rd<10>;

	ld.param.u64 %rd1, [oob_reader_param_0];
	ld.param.u64 %rd2, [oob_reader_param_1];
	ld.param.u64 %rd3, [oob_reader_param_2];
	cvta.to.global.u64 %rd4, %rd1;
	cvta.to.global.u64 %rd5, %rd2;
	shl.b64 %rd6, %rd3, 2;
	add.s64 %rd7, %rd4, %rd6;
	ld.global.u32 %r1, [%rd7];
	st.global.u32 [%rd5], %r1;
	ret;
}

// in[idx] = 7
.visible .entry oob_writer(
	.param .u64 oob_writer_param_0,
	.param .u64 oob_writer_param_1
)
{
	.reg .b32 %r<2>;
	.reg .b64 %rd<8>;

	ld.param.u64 %rd1, [oob_writer_param_0];
	ld.param.u64 %rd2, [oob_writer_param_1];
	cvta.to.global.u64 %rd3, %rd1;
	shl.b64 %rd4, %rd2, 2;
	add.s64 %rd5, %rd3, %rd4;
	mov.u32 %r1, 7;
	st.global.u32 [%rd5], %r1;
	ret;
}
)";

TEST(PtxEmuErrors, InBoundsReadStillWorks) {
  LOAD_MODULE(m, kOobPtx);
  CUfunction f = m.fn("oob_reader");
  ASSERT_NE(f, nullptr);
  std::vector<uint32_t> in(16);
  for (uint32_t i = 0; i < 16; ++i) in[i] = 100 + i;
  Buf<uint32_t> din(in), dout(1, 0);
  uint64_t idx = 15; // last element: in bounds
  LAUNCH_OK(f, Dim3{}, Dim3{1, 1, 1}, {din.arg(), dout.arg(), &idx});
  EXPECT_EQ(dout.get()[0], 115u);
}

TEST(PtxEmuErrors, OutOfBoundsGlobalLoadFailsNamingKernel) {
  LOAD_MODULE(m, kOobPtx);
  CUfunction f = m.fn("oob_reader");
  ASSERT_NE(f, nullptr);
  Buf<uint32_t> din(16, 0), dout(1, 0);
  uint64_t idx = 1u << 28; // 1 GiB past the start of a 64-byte buffer
  CUresult r = launch(f, Dim3{}, Dim3{1, 1, 1}, {din.arg(), dout.arg(), &idx});
  EXPECT_NE(r, 0);
  std::string msg = last_error();
  EXPECT_NE(msg.find("oob_reader"), std::string::npos) << "message: " << msg;
}

TEST(PtxEmuErrors, LoadJustPastEndOfAllocationFails) {
  LOAD_MODULE(m, kOobPtx);
  CUfunction f = m.fn("oob_reader");
  ASSERT_NE(f, nullptr);
  Buf<uint32_t> din(16, 0), dout(1, 0);
  uint64_t idx = 16; // bytes 64..67 of a 64-byte allocation
  CUresult r = launch(f, Dim3{}, Dim3{1, 1, 1}, {din.arg(), dout.arg(), &idx});
  EXPECT_NE(r, 0) << "a 4-byte load at offset 64 of a 64-byte buffer was allowed";
  EXPECT_FALSE(last_error().empty());
}

TEST(PtxEmuErrors, OutOfBoundsGlobalStoreFails) {
  LOAD_MODULE(m, kOobPtx);
  CUfunction f = m.fn("oob_writer");
  ASSERT_NE(f, nullptr);
  Buf<uint32_t> din(16, 0);
  uint64_t idx = 1u << 26;
  CUresult r = launch(f, Dim3{}, Dim3{1, 1, 1}, {din.arg(), &idx});
  EXPECT_NE(r, 0);
  std::string msg = last_error();
  EXPECT_NE(msg.find("oob_writer"), std::string::npos) << "message: " << msg;
}

// A real deadlock: warp 0 waits at barrier 0 and warp 1 at barrier 1, both without a thread
// count, i.e. each expecting "all threads in the CTA". Neither barrier can ever complete. (The
// branch is warp-uniform, so the .aligned requirement of bar.sync holds.)
const char *kDeadlockPtx = R"(
.version 7.0
.target sm_80
.address_size 64

.visible .entry split_barriers(
	.param .u64 split_barriers_param_0
)
{
	.reg .pred %p<2>;
	.reg .b32 %r<4>;
	.reg .b64 %rd<6>;

	ld.param.u64 %rd1, [split_barriers_param_0];
	cvta.to.global.u64 %rd2, %rd1;
	mov.u32 %r1, %tid.x;
	setp.lt.u32 %p1, %r1, 32;
	@%p1 bra $L__BB0_2;
	bar.sync 1;
	bra.uni $L__BB0_3;
$L__BB0_2:
	bar.sync 0;
$L__BB0_3:
	mul.wide.u32 %rd3, %r1, 4;
	add.s64 %rd4, %rd2, %rd3;
	st.global.u32 [%rd4], %r1;
	ret;
}
)";

TEST(PtxEmuErrors, DeadlockAtBarrierIsReported) {
  LOAD_MODULE(m, kDeadlockPtx);
  CUfunction f = m.fn("split_barriers");
  ASSERT_NE(f, nullptr);
  Buf<uint32_t> dout(64, 0);
  CUresult r = launch(f, Dim3{}, Dim3{64, 1, 1}, {dout.arg()});
  EXPECT_NE(r, 0);
  std::string msg = lower(last_error());
  EXPECT_TRUE(msg.find("bar") != std::string::npos || msg.find("deadlock") != std::string::npos)
      << "message: " << msg;
}

// A shared-memory race: each thread stores its id to smem[t] and loads smem[(t + 1) % n]
// with the barrier between them only when the parameter says so. Without it the load may see
// the neighbour's store or not: ptxemu's racecheck must refuse it; with it, out[t] = t + 1.
const char *kRacePtx = R"(
.version 7.0
.target sm_80
.address_size 64

.visible .entry neighbour(
	.param .u64 neighbour_param_0,
	.param .u32 neighbour_param_1
)
{
	.shared .align 4 .b8 smem[256];
	.reg .pred %p<2>;
	.reg .b32 %r<8>;
	.reg .b64 %rd<8>;

	ld.param.u64 %rd1, [neighbour_param_0];
	ld.param.u32 %r1, [neighbour_param_1];
	cvta.to.global.u64 %rd2, %rd1;
	mov.u32 %r2, %tid.x;
	mov.u32 %r3, %ntid.x;
	mov.u64 %rd3, smem;
	mul.wide.u32 %rd4, %r2, 4;
	add.s64 %rd5, %rd3, %rd4;
	st.shared.u32 [%rd5], %r2;
	setp.eq.s32 %p1, %r1, 0;
	@%p1 bra $L__BB0_2;
	bar.sync 0;
$L__BB0_2:
	add.s32 %r4, %r2, 1;
	rem.u32 %r5, %r4, %r3;
	mul.wide.u32 %rd6, %r5, 4;
	add.s64 %rd7, %rd3, %rd6;
	ld.shared.u32 %r6, [%rd7];
	add.s64 %rd7, %rd2, %rd4;
	st.global.u32 [%rd7], %r6;
	ret;
}
)";

TEST(PtxEmuErrors, SharedMemoryRaceIsReported) {
  LOAD_MODULE(m, kRacePtx);
  CUfunction f = m.fn("neighbour");
  ASSERT_NE(f, nullptr);
  Buf<uint32_t> dout(64, 0);
  uint32_t with_barrier = 1;
  LAUNCH_OK(f, Dim3{}, Dim3{64, 1, 1}, {dout.arg(), &with_barrier});
  std::vector<uint32_t> out = dout.get();
  for (uint32_t t = 0; t < 64; ++t) EXPECT_EQ(out[t], (t + 1) % 64) << "thread " << t;
  uint32_t without = 0;
  CUresult r = launch(f, Dim3{}, Dim3{64, 1, 1}, {dout.arg(), &without});
  EXPECT_NE(r, 0);
  EXPECT_NE(lower(last_error()).find("race"), std::string::npos) << last_error();
}

// Threads of different blocks cannot order plain global accesses within a launch: thread 0 of
// every block stores its block index to out[param] (param 0: one shared slot, a race; param 1:
// out[ctaid.x], no conflict).
const char *kGlobalRacePtx = R"(
.version 7.0
.target sm_80
.address_size 64

.visible .entry block_slots(
	.param .u64 block_slots_param_0,
	.param .u32 block_slots_param_1
)
{
	.reg .pred %p<2>;
	.reg .b32 %r<6>;
	.reg .b64 %rd<6>;

	ld.param.u64 %rd1, [block_slots_param_0];
	ld.param.u32 %r1, [block_slots_param_1];
	cvta.to.global.u64 %rd2, %rd1;
	mov.u32 %r2, %tid.x;
	setp.ne.s32 %p1, %r2, 0;
	@%p1 bra $L__BB0_2;
	mov.u32 %r3, %ctaid.x;
	mul.lo.s32 %r4, %r3, %r1;
	mul.wide.u32 %rd3, %r4, 4;
	add.s64 %rd4, %rd2, %rd3;
	st.global.u32 [%rd4], %r3;
$L__BB0_2:
	ret;
}
)";

TEST(PtxEmuErrors, GlobalMemoryRaceBetweenBlocksIsReported) {
  LOAD_MODULE(m, kGlobalRacePtx);
  CUfunction f = m.fn("block_slots");
  ASSERT_NE(f, nullptr);
  Buf<uint32_t> dout(4, 0);
  uint32_t distinct = 1;
  LAUNCH_OK(f, Dim3{4, 1, 1}, Dim3{32, 1, 1}, {dout.arg(), &distinct});
  EXPECT_EQ(dout.get(), (std::vector<uint32_t>{0, 1, 2, 3}));
  uint32_t same = 0;
  CUresult r = launch(f, Dim3{4, 1, 1}, Dim3{32, 1, 1}, {dout.arg(), &same});
  EXPECT_NE(r, 0);
  EXPECT_NE(lower(last_error()).find("global-memory race"), std::string::npos) << last_error();
}

// trap: "Abort execution and generate an interrupt to the host CPU." It is valid PTX (LLVM
// emits it for llvm.trap / unreachable), so the module loads; only executing it fails.
const char *kTrapPtx = R"(
.version 7.0
.target sm_80
.address_size 64

.visible .entry trapper(
	.param .u32 trapper_param_0
)
{
	.reg .pred %p<2>;
	.reg .b32 %r<2>;

	ld.param.u32 %r1, [trapper_param_0];
	setp.eq.s32 %p1, %r1, 0;
	@%p1 bra $L__BB0_2;
	trap;
$L__BB0_2:
	ret;
}
)";

TEST(PtxEmuErrors, TrapOnlyFailsWhenExecuted) {
  LOAD_MODULE(m, kTrapPtx);
  CUfunction f = m.fn("trapper");
  ASSERT_NE(f, nullptr);
  uint32_t no = 0, yes = 1;
  EXPECT_EQ(launch(f, Dim3{}, Dim3{32, 1, 1}, {&no}), 0) << last_error();
  EXPECT_NE(launch(f, Dim3{}, Dim3{32, 1, 1}, {&yes}), 0);
  EXPECT_FALSE(last_error().empty());
}

const char *kBogusOpPtx = R"(
.version 7.0
.target sm_80
.address_size 64

.visible .entry bogus(
	.param .u64 bogus_param_0
)
{
	.reg .b32 %r<4>;
	.reg .b64 %rd<4>;

	ld.param.u64 %rd1, [bogus_param_0];
	cvta.to.global.u64 %rd2, %rd1;
	mov.u32 %r1, %tid.x;
	frobnicate.b32 %r2, %r1;
	st.global.u32 [%rd2], %r2;
	ret;
}
)";

TEST(PtxEmuErrors, UnknownOpcodeIsRejectedByName) {
  init_driver();
  Module m(kBogusOpPtx);
  if (!m.ok()) {
    EXPECT_NE(m.error().find("frobnicate"), std::string::npos) << "load message: " << m.error();
    return;
  }
  CUfunction f = m.fn("bogus");
  ASSERT_NE(f, nullptr);
  Buf<uint32_t> dout(1, 0);
  EXPECT_NE(launch(f, Dim3{}, Dim3{1, 1, 1}, {dout.arg()}), 0);
  EXPECT_NE(last_error().find("frobnicate"), std::string::npos) << "message: " << last_error();
}

TEST(PtxEmuErrors, MalformedPtxFailsToLoad) {
  init_driver();
  Module m(".version 7.0\n.target sm_80\n.address_size 64\n.visible .entry broken(\n{\n ret;\n");
  EXPECT_NE(m.result(), 0);
  EXPECT_FALSE(m.error().empty());
}

TEST(PtxEmuErrors, UnknownFunctionName) {
  init_driver();
  CUmodule mod = nullptr;
  ASSERT_EQ(cuModuleLoadDataEx(&mod, kOobPtx, 0, nullptr, nullptr), 0) << last_error();
  CUfunction f = nullptr;
  EXPECT_NE(cuModuleGetFunction(&f, mod, "no_such_kernel"), 0);
  cuModuleUnload(mod);
}

} // namespace

// ------------------------------------------------------------------------------------------
// $PTXEMU_TRACE's figures (the per-kernel bytes of test/gpu-emu/layer-report.sh), from
// run_launch directly: loads count every lane's bytes; the ideal counts each 32-byte sector
// of an allocation once.
// ------------------------------------------------------------------------------------------

TEST(PtxEmuTrace, LoadedBytesAndDistinctSectors) {
  init_driver();
  // 64 threads: a u32 at (t % 8) * 4 (32 bytes, one sector, read 8 times each) and a byte
  // at 100 + t (bytes 100..163: sectors 3, 4 and 5).
  const char *ptx = R"(.version 7.0
.target sm_80
.address_size 64
.visible .entry k(.param .u64 p0, .param .u64 p1)
{
  .reg .b32 %r<8>;
  .reg .b64 %rd<8>;
  ld.param.u64 %rd1, [p0];
  ld.param.u64 %rd5, [p1];
  mov.u32 %r1, %tid.x;
  and.b32 %r2, %r1, 7;
  mul.wide.u32 %rd2, %r2, 4;
  add.s64 %rd3, %rd1, %rd2;
  ld.global.u32 %r3, [%rd3];
  cvt.u64.u32 %rd4, %r1;
  add.s64 %rd4, %rd1, %rd4;
  ld.global.u8 %r4, [%rd4+100];
  add.s32 %r5, %r3, %r4;
  mul.wide.u32 %rd6, %r1, 4;
  add.s64 %rd6, %rd5, %rd6;
  st.global.u32 [%rd6], %r5;
  ret;
}
)";
  ptxemu::Module m;
  ptxemu::parse_module(m, ptx);
  ASSERT_EQ(m.kernels.size(), 1u);
  const ptxemu::Kernel &k = *m.kernels[0];
  Buf<uint8_t> in(256, 1), out(256, 0);
  std::vector<std::uint8_t> params(k.param_bytes);
  CUdeviceptr pin = in.ptr(), pout = out.ptr();
  std::memcpy(params.data() + k.params[0].offset, &pin, 8);
  std::memcpy(params.data() + k.params[1].offset, &pout, 8);
  ptxemu::LaunchConfig cfg;
  cfg.id = 0x7fff0000u; // no driver launch has this id
  cfg.block[0] = 64;
  cfg.params = &params;
  cfg.count_reads = true;
  ptxemu::LaunchStats stats;
  ptxemu::run_launch(k, cfg, &stats);
  std::uint64_t lo = 0;
  const ptxemu::Allocation *al = ptxemu::memory().contains(pin, 256, &lo);
  ASSERT_NE(al, nullptr);
  EXPECT_EQ(stats.reads[al], 64u * 4 + 64u);
  EXPECT_EQ(stats.distinct[al], 32u + 3 * 32u);
  EXPECT_EQ(stats.reads.size(), 1u); // the stored-to buffer is not counted
  std::vector<uint32_t> got(64);
  ASSERT_EQ(cuMemcpyDtoH_v2(got.data(), pout, 256), 0);
  EXPECT_EQ(got[5], 0x01010101u + 1u);
}

// The shared racecheck's rules (checks.h) on the shadow itself, every case: a byte written by
// one thread and read or written by another with no barrier between races; reads by many
// threads do not; the same thread never races with itself; a barrier orders everything before
// it; the race names the first racing byte and the other thread.
TEST(PtxEmuRacecheck, SharedShadowRules) {
  using ptxemu::Access;
  ptxemu::SharedShadow s;
  ptxemu::SharedRace r;
  s.reset(64);
  EXPECT_TRUE(s.access(0, 16, Access::Write, 1, &r));  // thread 1 writes 0..15
  EXPECT_TRUE(s.access(0, 16, Access::Read, 1, &r));   // and reads them back
  EXPECT_TRUE(s.access(8, 4, Access::Write, 1, &r));   // and writes again
  EXPECT_FALSE(s.access(4, 16, Access::Read, 2, &r));  // read after another's write
  EXPECT_EQ(r.byte, 4u);
  EXPECT_EQ(r.other, 1u);
  EXPECT_TRUE(r.other_wrote);
  EXPECT_FALSE(s.access(15, 2, Access::Write, 3, &r)); // write after another's write
  EXPECT_EQ(r.byte, 15u);
  EXPECT_TRUE(s.access(16, 8, Access::Read, 2, &r));   // untouched bytes: free
  EXPECT_TRUE(s.access(16, 8, Access::Read, 3, &r));   // a second reader
  EXPECT_FALSE(s.access(20, 4, Access::Write, 3, &r)); // write after other readers
  EXPECT_EQ(r.byte, 20u);
  EXPECT_EQ(r.other, ptxemu::kManyReaders);
  EXPECT_FALSE(r.other_wrote);
  EXPECT_TRUE(s.access(32, 4, Access::Read, 4, &r));
  EXPECT_TRUE(s.access(32, 4, Access::Write, 4, &r)); // its own read, then a write
  EXPECT_FALSE(s.access(34, 4, Access::Write, 5, &r));
  EXPECT_EQ(r.byte, 34u);
  EXPECT_EQ(r.other, 4u);
  EXPECT_TRUE(r.other_wrote);
  EXPECT_TRUE(s.access(40, 4, Access::Read, 6, &r));
  EXPECT_FALSE(s.access(38, 4, Access::Write, 7, &r)); // write after one other reader
  EXPECT_EQ(r.byte, 40u);
  EXPECT_EQ(r.other, 6u);
  EXPECT_FALSE(r.other_wrote);
  EXPECT_TRUE(s.access(0, 16, Access::Atomic, 9, &r)); // atomics are exempt
  s.barrier();
  EXPECT_TRUE(s.access(0, 64, Access::Write, 8, &r));  // everything before is ordered
  s.reset(64);                                          // a new block: nothing carries over
  EXPECT_TRUE(s.access(0, 64, Access::Read, 1, &r));
}

// The shadow packs its barrier epochs in 20 bits and clears itself when they run out: across
// that wrap a race is still caught, an access ordered by a barrier still is not, and epoch()
// (which the global racecheck compares) keeps growing.
TEST(PtxEmuRacecheck, SharedShadowEpochWrap) {
  using ptxemu::Access;
  ptxemu::SharedShadow s;
  ptxemu::SharedRace r;
  s.reset(16);
  const std::uint32_t first = s.epoch();
  EXPECT_TRUE(s.access(0, 8, Access::Write, 1, &r));
  for (std::uint32_t i = 0; i + 2 < ptxemu::SharedShadow::kEpochLimit; ++i) s.barrier();
  EXPECT_TRUE(s.access(8, 4, Access::Write, 2, &r));  // the last epoch before the wrap
  EXPECT_FALSE(s.access(8, 4, Access::Read, 3, &r));
  EXPECT_EQ(r.other, 2u);
  s.barrier();                                         // the wrap: the shadow is cleared
  EXPECT_GT(s.epoch(), first + ptxemu::SharedShadow::kEpochLimit - 2);
  EXPECT_TRUE(s.access(0, 16, Access::Read, 3, &r));   // every earlier write is ordered
  EXPECT_FALSE(s.access(4, 4, Access::Write, 4, &r));  // and a new race is caught
  EXPECT_EQ(r.other, 3u);
  EXPECT_FALSE(r.other_wrote);
}
