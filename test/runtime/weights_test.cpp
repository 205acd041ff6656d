// weights_test.cpp — packing checkpoint tensors into the arena; mismatch errors; memory check.
#include "fake_model.h"
#include "moec/checkpoint/weights_file.h"
#include "moec/error.h"
#include "moec/weights.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <omp.h>

#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <random>

#include <unistd.h>

namespace moec {
namespace {
using nlohmann::json;
using test::f32_iota;
using test::TempDir;
using test::write_safetensors;

std::string load_error(const Manifest &m, const Checkpoint &c) {
  try {
    load_weights(m, c);
  } catch (const Error &e) {
    return e.what();
  }
  return "";
}

TEST(Weights, PacksAndStacks) {
  TempDir dir;
  test::write_fake_checkpoint(dir.file("model.safetensors"));
  Manifest m = parse_manifest(test::fake_manifest_text());
  Checkpoint c = Checkpoint::open(dir.str());
  Arena a = load_weights(m, c);
  ASSERT_EQ(a.bytes(), 512u);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a.data()) % 64, 0u);
  const float *w = static_cast<const float *>(a.data());
  EXPECT_EQ(w[0], 0.5f);
  EXPECT_EQ(w[63], 63.5f);      // embed [16, 4]
  EXPECT_EQ(w[64], 100.0f);     // w1[0][0][0] = expert 0
  EXPECT_EQ(w[64 + 31], 131.0f);
  EXPECT_EQ(w[64 + 32], 200.0f); // w1[1][0][0] = expert 1
  EXPECT_EQ(w[127], 231.0f);
}

TEST(Weights, ZeroesGapsBetweenTensors) {
  TempDir dir;
  test::write_fake_checkpoint(dir.file("model.safetensors"));
  json j = json::parse(test::fake_manifest_text());
  j["weights"]["bytes"] = 1024;
  j["weights"]["tensors"][1]["offset"] = 512;
  Manifest m = parse_manifest(j.dump());
  Arena a = load_weights(m, Checkpoint::open(dir.str()));
  const unsigned char *b = static_cast<const unsigned char *>(a.data());
  for (int i = 256; i < 512; ++i)
    ASSERT_EQ(b[i], 0) << i;
  float x;
  std::memcpy(&x, b + 512, 4);
  EXPECT_EQ(x, 100.0f);
}

TEST(Weights, MismatchErrors) {
  TempDir dir;
  const Manifest m = parse_manifest(test::fake_manifest_text());
  const std::string e0 = "model.layers.0.block_sparse_moe.experts.0.w1.weight";
  const std::string e1 = "model.layers.0.block_sparse_moe.experts.1.w1.weight";
  const std::string emb = "model.embed_tokens.weight";
  struct Case {
    const char *what;
    std::vector<test::TensorSpec> tensors;
    const char *needle;
  };
  const std::vector<Case> cases = {
      {"missing source",
       {{emb, "F32", {16, 4}, f32_iota(64)}, {e0, "F32", {8, 4}, f32_iota(32)}},
       "tensor 'layers.0.moe.w1': source 'model.layers.0.block_sparse_moe.experts.1.w1.weight' "
       "is not in the checkpoint"},
      {"dtype",
       {{emb, "BF16", {16, 4}, std::string(128, '\0')},
        {e0, "F32", {8, 4}, f32_iota(32)},
        {e1, "F32", {8, 4}, f32_iota(32)}},
       "tensor 'embed': source 'model.embed_tokens.weight'"},
      {"dtype wording",
       {{emb, "BF16", {16, 4}, std::string(128, '\0')},
        {e0, "F32", {8, 4}, f32_iota(32)},
        {e1, "F32", {8, 4}, f32_iota(32)}},
       "is bf16, expected f32"},
      {"single shape",
       {{emb, "F32", {4, 16}, f32_iota(64)},
        {e0, "F32", {8, 4}, f32_iota(32)},
        {e1, "F32", {8, 4}, f32_iota(32)}},
       "has shape [4, 16], expected [16, 4]"},
      {"stacked shape",
       {{emb, "F32", {16, 4}, f32_iota(64)},
        {e0, "F32", {8, 4}, f32_iota(32)},
        {e1, "F32", {4, 8}, f32_iota(32)}},
       "has shape [4, 8], expected [8, 4] (one slice of [2, 8, 4])"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.what);
    const std::string path = dir.file(std::string(c.what) + ".safetensors");
    write_safetensors(path, c.tensors);
    const Checkpoint ck = Checkpoint::open(path);
    std::string msg = load_error(m, ck);
    EXPECT_NE(msg.find(c.needle), std::string::npos) << msg;
    EXPECT_THROW(check_weights(m, ck), Error);
  }
}

// One expert is still a stack: the manifest says so explicitly and the arena tensor keeps its
// leading E = 1 axis while the checkpoint tensor has none.
TEST(Weights, StackOfOne) {
  TempDir dir;
  test::write_fake_checkpoint(dir.file("model.safetensors"));
  json j = json::parse(test::fake_manifest_text());
  json &w1 = j["weights"]["tensors"][1];
  w1["sources"] = json::array({w1["sources"][1]});
  w1["shape"][0] = 1;
  w1["stacked"] = true;
  Arena a = load_weights(parse_manifest(j.dump()), Checkpoint::open(dir.str()));
  EXPECT_EQ(static_cast<const float *>(a.data())[64], 200.0f); // expert 1's first element
  w1["stacked"] = false; // now the [1, ...] shape cannot match the unstacked source
  EXPECT_NE(load_error(parse_manifest(j.dump()), Checkpoint::open(dir.str())).find("expected [1,"),
            std::string::npos);
}

// "panels" without a packed file: the compiler chose panel order for its CPU target and the
// loader permutes each expert while copying it (into host memory and through a device's
// write alike). Expected bytes from manifest.h's formula: element ((p * lanes + l) * (K /
// lanes) + j) * cols + r of expert e is W_e[p * cols + r, l + lanes * j], and the fake
// checkpoint's W_e[n, k] = 100 (e + 1) + 4 n + k.
TEST(Weights, PermutesIntoPanelOrder) {
  TempDir dir;
  test::write_fake_checkpoint(dir.file("model.safetensors"));
  json j = json::parse(test::fake_manifest_text());
  j["weights"]["tensors"][1]["panels"] = {2, 2}; // w1 [2, 8, 4] f32
  const Manifest m = parse_manifest(j.dump());
  const Checkpoint c = Checkpoint::open(dir.str());
  std::vector<float> want(64);
  const int cols = 2, lanes = 2, k = 4, steps = k / lanes;
  for (int e = 0; e < 2; ++e)
    for (int p = 0; p < 8 / cols; ++p)
      for (int l = 0; l < lanes; ++l)
        for (int s = 0; s < steps; ++s)
          for (int r = 0; r < cols; ++r)
            want[e * 32 + ((p * lanes + l) * steps + s) * cols + r] =
                100.0f * (e + 1) + 4.0f * (p * cols + r) + (l + lanes * s);
  Arena a = load_weights(m, c);
  const float *w = static_cast<const float *>(a.data());
  EXPECT_EQ(w[63], 63.5f); // embed stays row-major
  EXPECT_EQ(std::vector<float>(w + 64, w + 128), want);
  std::vector<float> device(128);
  copy_weights(m, c, LoadOptions{}, [&](std::uint64_t at, const void *from, std::uint64_t n) {
    std::memcpy(reinterpret_cast<unsigned char *>(device.data()) + at, from, n);
  });
  EXPECT_EQ(std::vector<float>(device.begin() + 64, device.end()), want);
}

/// Random finite elements of `bytes`/`es` elements (exponent never all ones; any sign,
/// mantissa, subnormals and zeros included).
std::string random_finite(std::uint64_t count, std::size_t es, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::string data(count * es, '\0');
  for (std::uint64_t i = 0; i < count; ++i) {
    std::uint32_t x = gen();
    if (es == 4 && (x & 0x7f800000u) == 0x7f800000u)
      x ^= 0x00800000u;
    if (es == 2 && (x & 0x7f80u) == 0x7f80u) // bf16; the test's f16 values avoid 0x7c00 below
      x ^= 0x0080u;
    if (es == 2 && (x & 0x7c00u) == 0x7c00u)
      x ^= 0x0400u;
    std::memcpy(&data[i * es], &x, es);
  }
  return data;
}

/// Panel order from manifest.h's formula, element by element: element ((p * lanes + l) *
/// (k / lanes) + j) * cols + r is W[p * cols + r, l + lanes * j].
std::string naive_panels(const std::string &w, std::uint64_t n, std::uint64_t k,
                         std::uint64_t cols, std::uint64_t lanes, std::size_t es) {
  std::string out(w.size(), '\0');
  const std::uint64_t steps = k / lanes;
  for (std::uint64_t p = 0; p < n / cols; ++p)
    for (std::uint64_t l = 0; l < lanes; ++l)
      for (std::uint64_t j = 0; j < steps; ++j)
        for (std::uint64_t r = 0; r < cols; ++r)
          std::memcpy(&out[(((p * lanes + l) * steps + j) * cols + r) * es],
                      &w[((p * cols + r) * k + l + lanes * j) * es], es);
  return out;
}

// The blocked reorder against the formula: the target's shapes (16 x 8 lanes: AVX2; 32 x 16:
// AVX-512), shapes whose rows or columns are no multiple of the vector square (8 16-bit or 4
// 32-bit elements), odd panels, one-row panels, and K across several column blocks.
TEST(Weights, ToPanelsMatchesTheFormula) {
  struct Shape {
    std::uint64_t n, k, cols, lanes;
  };
  const std::vector<Shape> shapes = {{48, 40, 16, 8},  {64, 96, 32, 16}, {24, 52, 8, 4},
                                     {6, 12, 3, 4},    {10, 35, 5, 7},   {12, 20, 12, 2},
                                     {4, 2052, 1, 4},  {32, 2056, 16, 8}, {20, 1030, 20, 1030},
                                     {1, 1, 1, 1}};
  for (DType t : {DType::F32, DType::BF16, DType::F16})
    for (const Shape &s : shapes) {
      SCOPED_TRACE(std::string(dtype_name(t)) + " [" + std::to_string(s.n) + ", " +
                   std::to_string(s.k) + "] panels [" + std::to_string(s.cols) + ", " +
                   std::to_string(s.lanes) + "]");
      const std::size_t es = dtype_size(t);
      const std::string w = random_finite(s.n * s.k, es, static_cast<std::uint32_t>(s.n * s.k));
      std::string got(w.size(), '\0');
      EXPECT_EQ(to_panels(w.data(), got.data(), s.n, s.k, s.cols, s.lanes, t), s.n * s.k);
      EXPECT_TRUE(got == naive_panels(w, s.n, s.k, s.cols, s.lanes, es));
    }
}

// A NaN or infinity is found wherever the vector or the scalar edge reads it, and the one
// reported is the first in the checkpoint's (row-major) order, not the reorder's.
TEST(Weights, ToPanelsNamesTheFirstNonFiniteElement) {
  const std::uint64_t n = 32, k = 60, cols = 16, lanes = 4; // K: 7 squares of 8 + an edge of 4
  for (DType t : {DType::F32, DType::BF16}) {
    const std::size_t es = dtype_size(t);
    const std::uint32_t inf = es == 4 ? 0x7f800000u : 0x7f80u, nan = es == 4 ? 0xffc00000u : 0xffc0u;
    for (std::uint64_t bad : {std::uint64_t{0}, 5 * k + 1, 17 * k + 58, n * k - 1}) {
      SCOPED_TRACE(std::string(dtype_name(t)) + " element " + std::to_string(bad));
      std::string w = random_finite(n * k, es, 7);
      std::memcpy(&w[bad * es], &nan, es);
      const std::uint64_t later = (bad / k + 1) * k; // the next row's first: for [17, 58], an
      if (later < n * k)                             // edge column, the vector square reads it first
        std::memcpy(&w[later * es], &inf, es);
      std::string got(w.size(), '\0');
      EXPECT_EQ(to_panels(w.data(), got.data(), n, k, cols, lanes, t), bad);
    }
  }
}

/// Sets the OpenMP threads (what --threads sets) for its lifetime.
class ThreadsGuard {
public:
  explicit ThreadsGuard(int n) : before_(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~ThreadsGuard() { omp_set_num_threads(before_); }

private:
  int before_;
};

// load_weights on 1, 2 and 3 threads (more than this VM's 2 processors; 7 makes LeakSanitizer
// report libomp's own thread data in test/fuzz/sanitize.sh): the pieces of a plain tensor and of experts in panel
// order (two pieces each: 15 panels, then 2) land where the formula puts them, and of two
// non-finite elements, the first in the checkpoint's order is named whichever thread finds
// it (a later piece, or one the threads reach first, holds the other).
TEST(Weights, LoadsOnAnyNumberOfThreads) {
  TempDir dir;
  const std::int64_t E = 3, N = 272, K = 8200; // bf16 experts of 4.46 MB, panels [16, 8]
  std::vector<std::string> experts;
  for (std::int64_t e = 0; e < E; ++e)
    experts.push_back(random_finite(static_cast<std::uint64_t>(N * K), 2, 100 + static_cast<std::uint32_t>(e)));
  const std::string big = random_finite(1100 * 1000, 4, 99); // f32, 4.4 MB: two pieces
  const std::uint64_t w_at = 256, w_bytes = static_cast<std::uint64_t>(E * N * K * 2),
                      big_at = w_at + w_bytes;
  json j = json::parse(test::fake_manifest_text());
  j["weights"]["bytes"] = big_at + big.size();
  j["weights"]["tensors"] = json::array(
      {{{"name", "embed"}, {"dtype", "f32"}, {"shape", {16, 4}}, {"offset", 0}, {"sources", {"embed"}}},
       {{"name", "w"}, {"dtype", "bf16"}, {"shape", {E, N, K}}, {"offset", w_at},
        {"sources", {"e0", "e1", "e2"}}, {"panels", {16, 8}}},
       {{"name", "big"}, {"dtype", "f32"}, {"shape", {1100, 1000}}, {"offset", big_at},
        {"sources", {"big"}}}});
  const Manifest m = parse_manifest(j.dump());
  std::string want(big_at + big.size(), '\0');
  const std::string embed = f32_iota(64);
  want.replace(0, embed.size(), embed);
  for (std::int64_t e = 0; e < E; ++e)
    want.replace(w_at + static_cast<std::uint64_t>(e) * experts[0].size(), experts[0].size(),
                 naive_panels(experts[static_cast<std::size_t>(e)], N, K, 16, 8, 2));
  want.replace(big_at, big.size(), big);
  const std::string path = dir.file("model.safetensors");
  auto write = [&] {
    write_safetensors(path, {{"embed", "F32", {16, 4}, embed},
                             {"e0", "BF16", {N, K}, experts[0]},
                             {"e1", "BF16", {N, K}, experts[1]},
                             {"e2", "BF16", {N, K}, experts[2]},
                             {"big", "F32", {1100, 1000}, big}});
  };
  write();
  for (int threads : {1, 2, 3}) {
    SCOPED_TRACE(std::to_string(threads) + " threads");
    ThreadsGuard guard(threads);
    const Arena a = load_weights(m, Checkpoint::open(dir.str()));
    EXPECT_TRUE(std::string(static_cast<const char *>(a.data()), want.size()) == want);
  }
  const std::uint16_t nan = 0x7fc1, inf = 0xff80;
  // e1's second piece (2 panels) fails at once; e2's first (15 panels), later in the
  // checkpoint, fails after it, at its last panel: its error must not win.
  std::memcpy(&experts[1][(241 * K + 3) * 2], &nan, 2); // e1 [241, 3]
  std::memcpy(&experts[2][(230 * K + 9) * 2], &inf, 2); // e2 [230, 9]
  write();
  for (int threads : {1, 2, 3}) {
    SCOPED_TRACE(std::to_string(threads) + " threads");
    ThreadsGuard guard(threads);
    EXPECT_EQ(load_error(m, Checkpoint::open(dir.str())),
              path + ": e1: element [241, 3] is NaN (weights must be finite)");
  }
}

TEST(Weights, ArenaOverflowIsAnError) {
  TempDir dir;
  test::write_fake_checkpoint(dir.file("model.safetensors"));
  Manifest m = parse_manifest(test::fake_manifest_text());
  m.weights_bytes = 300; // bypassing parse_manifest's own check
  std::string msg = load_error(m, Checkpoint::open(dir.str()));
  EXPECT_NE(msg.find("overflow the weights arena of 300 bytes"), std::string::npos) << msg;
}

TEST(Weights, MemoryCheck) {
  Manifest m = parse_manifest(test::fake_manifest_text()); // 512 + 512 bytes
  EXPECT_NO_THROW(check_memory(m, 1024));
  EXPECT_NO_THROW(check_memory(m, std::nullopt));
  try {
    check_memory(m, 1023);
    FAIL() << "expected an error";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("not enough memory"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("MemAvailable"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(check_device_memory(m, 1024, "GPU 0"));
  try {
    check_device_memory(m, 1000, "NVIDIA H200");
    FAIL() << "expected an error";
  } catch (const Error &e) {
    EXPECT_STREQ(e.what(), "not enough GPU memory: the model needs 1.00 KiB (weights 512 B + KV "
                           "cache 512 B) but NVIDIA H200 has 1000 B free");
  }
  std::optional<std::uint64_t> avail = mem_available_bytes();
  ASSERT_TRUE(avail.has_value()); // Linux
  EXPECT_GT(*avail, 0u);
}

/// A manifest holding one weight tensor `name` <- checkpoint tensor `source` at offset 0.
Manifest one_tensor_manifest(const std::string &dtype, const std::vector<std::int64_t> &shape,
                             const std::string &source) {
  json j = json::parse(test::fake_manifest_text());
  std::uint64_t n = dtype == "f32" ? 4 : 2;
  for (std::int64_t d : shape)
    n *= static_cast<std::uint64_t>(d);
  j["weights"]["bytes"] = (n + 63) / 64 * 64;
  j["weights"]["tensors"] = json::array(
      {{{"name", "t"}, {"dtype", dtype}, {"shape", shape}, {"offset", 0}, {"sources", {source}}}});
  return parse_manifest(j.dump());
}

// Every weight is checked as it is copied: the first NaN or infinity is named by file, tensor
// and multi-index, for each weight dtype, including past the first piece of a large tensor
// and in a stacked expert.
TEST(Weights, NonFiniteWeightsAreRefused) {
  TempDir dir;
  struct Case {
    const char *dtype, *st_dtype;
    std::vector<std::int64_t> shape;
    std::uint64_t bad;     // flat index of the bad element (an earlier one comes later)
    std::uint32_t bits;    // its bit pattern
    const char *want;      // the message after "<file>: w: "
  };
  const std::vector<Case> cases = {
      {"f32", "F32", {16, 4}, 14, 0x7fc00000u, "element [3, 2] is NaN"},
      {"f32", "F32", {16, 4}, 0, 0xff800000u, "element [0, 0] is -inf"},
      {"f32", "F32", {16, 4}, 63, 0x7f800000u, "element [15, 3] is +inf"},
      {"f32", "F32", {16, 4}, 5, 0xffc00001u, "element [1, 1] is NaN"}, // negative NaN
      {"bf16", "BF16", {3, 5, 7}, 52, 0x7fc1u, "element [1, 2, 3] is NaN"},
      {"bf16", "BF16", {3, 5, 7}, 104, 0xff80u, "element [2, 4, 6] is -inf"},
      {"f16", "F16", {40}, 39, 0x7c00u, "element [39] is +inf"},
      {"f16", "F16", {40}, 2, 0xfe00u, "element [2] is NaN"},
      // 4.4 MB: the bad element sits in the second 4 MiB piece.
      {"f32", "F32", {1100, 1000}, 1050 * 1000 + 7, 0x7f800001u, "element [1050, 7] is NaN"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.want);
    const std::size_t esize = std::string(c.dtype) == "f32" ? 4 : 2;
    std::uint64_t count = 1;
    for (std::int64_t d : c.shape)
      count *= static_cast<std::uint64_t>(d);
    std::string data(count * esize, '\0'); // zeros, then finite values around the bad one
    for (std::uint64_t i = 0; i < count; i += 3)
      data[i * esize + esize - 1] = 0x3c; // 2^-7-ish in every dtype: finite
    std::memcpy(&data[c.bad * esize], &c.bits, esize);
    if (c.bad + 2 < count) { // a second bad element later: the first one is reported
      const std::uint32_t inf = esize == 4 ? 0x7f800000u : std::string(c.dtype) == "f16" ? 0x7c00u : 0x7f80u;
      std::memcpy(&data[(count - 1) * esize], &inf, esize);
    }
    const std::string path = dir.file("w.safetensors");
    write_safetensors(path, {{"w", c.st_dtype, c.shape, data}});
    const std::string msg = load_error(one_tensor_manifest(c.dtype, c.shape, "w"), Checkpoint::open(path));
    EXPECT_EQ(msg, path + ": w: " + c.want + " (weights must be finite)");
  }
  // Finite extremes pass: the largest finite values, subnormals, -0.
  const std::uint32_t finite[] = {0x7f7fffffu, 0xff7fffffu, 0x00000001u, 0x80000000u};
  const std::string path = dir.file("finite.safetensors");
  write_safetensors(path, {{"w", "F32", {4}, std::string(reinterpret_cast<const char *>(finite), 16)}});
  EXPECT_EQ(load_error(one_tensor_manifest("f32", {4}, "w"), Checkpoint::open(path)), "");
}

TEST(Weights, NonFiniteExpertIsNamed) {
  TempDir dir;
  std::string e1 = f32_iota(32, 200);
  const float nan = std::nanf("");
  std::memcpy(&e1[(2 * 4 + 1) * 4], &nan, 4); // [2, 1]
  const std::string path = dir.file("model.safetensors");
  write_safetensors(path, {{"model.embed_tokens.weight", "F32", {16, 4}, f32_iota(64)},
                           {"model.layers.0.block_sparse_moe.experts.0.w1.weight", "F32", {8, 4},
                            f32_iota(32)},
                           {"model.layers.0.block_sparse_moe.experts.1.w1.weight", "F32", {8, 4},
                            e1}});
  EXPECT_EQ(load_error(parse_manifest(test::fake_manifest_text()), Checkpoint::open(dir.str())),
            path + ": model.layers.0.block_sparse_moe.experts.1.w1.weight: element [2, 1] is "
                   "NaN (weights must be finite)");
}

// A checkpoint file truncated after it was mapped: the copy raises SIGBUS on the vanished
// pages, which becomes an error naming the file; the previous SIGBUS action is restored. On
// three threads, so that the faults happen on the worker threads too.
TEST(Weights, FileTruncatedWhileLoading) {
  ThreadsGuard threads(3);
  TempDir dir;
  const std::vector<std::int64_t> shape = {3, 1024, 1024}; // 12 MiB, three pieces
  const std::string path = dir.file("model.safetensors");
  write_safetensors(path, {{"w", "F32", shape, std::string(12u << 20, '\0')}});
  const Manifest m = one_tensor_manifest("f32", shape, "w");
  struct sigaction before {};
  ASSERT_EQ(sigaction(SIGBUS, nullptr, &before), 0);
  for (bool host : {true, false}) {
    SCOPED_TRACE(host ? "load_weights (check + copy)" : "copy_weights (check, then write)");
    const Checkpoint c = Checkpoint::open(path);
    ASSERT_EQ(::truncate(path.c_str(), 6 << 20), 0); // the second piece half gone
    std::string msg;
    try {
      if (host)
        load_weights(m, c);
      else
        copy_weights(m, c, {}, [](std::uint64_t, const void *, std::uint64_t) {});
    } catch (const Error &e) {
      msg = e.what();
    }
    EXPECT_EQ(msg, path + ": the file changed while loading (truncated?)");
    struct sigaction after {};
    ASSERT_EQ(sigaction(SIGBUS, nullptr, &after), 0);
    EXPECT_EQ(after.sa_handler, before.sa_handler);
    sigset_t blocked;
    ASSERT_EQ(sigprocmask(SIG_BLOCK, nullptr, &blocked), 0);
    EXPECT_FALSE(sigismember(&blocked, SIGBUS)); // the jump left the handler's mask behind
    write_safetensors(path, {{"w", "F32", shape, std::string(12u << 20, '\0')}});
  }
  EXPECT_EQ(load_error(m, Checkpoint::open(path)), ""); // and the next load works
}

TEST(Arena, ZeroedAlignedAndMovable) {
  Arena a(1 << 20, "test");
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a.data()) % 64, 0u);
  const unsigned char *p = static_cast<const unsigned char *>(a.data());
  for (int i = 0; i < (1 << 20); i += 4096)
    ASSERT_EQ(p[i], 0);
  Arena b = std::move(a);
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_EQ(b.bytes(), 1u << 20);
  Arena empty(0, "nothing");
  EXPECT_EQ(empty.data(), nullptr);
}

// A packed weights file is mapped, not copied: the arena is the file from byte 4096 on.
TEST(Weights, MapsAPackedWeightsFile) {
  TempDir dir;
  Manifest m = parse_manifest(test::fake_manifest_text());
  const std::string fp = checkpoint::new_fingerprint();
  m.weights_file = checkpoint::WeightsFile{"model.weights", fp, 4096 + 512};
  checkpoint::WeightsFileHeader h;
  h.arena_bytes = 512;
  h.file_bytes = 4096 + 512;
  h.fingerprint = fp;
  const std::string arena = f32_iota(128, 0.5f);
  test::write_bytes(dir.file("model.weights"), checkpoint::encode_weights_file_header(h) + arena);
  Arena a = map_weights_file(m, dir.file("model.weights"));
  ASSERT_EQ(a.bytes(), 512u);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a.data()) % 4096, 0u);
  EXPECT_EQ(std::memcmp(a.data(), arena.data(), 512), 0);
  // Changing the file shows through the mapping: it is the file, not a copy of it.
  {
    std::FILE *f = std::fopen(dir.file("model.weights").c_str(), "r+b");
    ASSERT_NE(f, nullptr);
    std::fseek(f, 4096, SEEK_SET);
    const float v = 42.0f;
    std::fwrite(&v, 4, 1, f);
    std::fclose(f);
  }
  EXPECT_EQ(static_cast<const float *>(a.data())[0], 42.0f);
  // The default place is beside the executable.
  EXPECT_EQ(weights_file_path(m, std::nullopt, "/opt/models/mixtral"), "/opt/models/model.weights");
  EXPECT_EQ(weights_file_path(m, std::string("x.weights")), "x.weights");
  // Another compile's file is refused.
  m.weights_file->fingerprint = checkpoint::new_fingerprint();
  try {
    map_weights_file(m, dir.file("model.weights"));
    ADD_FAILURE() << "a foreign fingerprint was accepted";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("belongs to another compile"), std::string::npos);
  }
}

} // namespace
} // namespace moec
