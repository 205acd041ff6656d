// bench_test.cpp — the --bench cost model against hand-counted Mixtral 8x7B numbers, and the
// --bench report end to end with the fake model (fake_model.h).
#include "fake_model.h"
#include "moec/bench.h"
#include "moec/run.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <regex>
#include <sstream>

namespace moec {
namespace {
using test::fake_log;

ModelConfig mixtral_8x7b(DType dtype) {
  ModelConfig c;
  c.vocab_size = 32000;
  c.hidden_size = 4096;
  c.intermediate_size = 14336;
  c.num_hidden_layers = 32;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 8;
  c.head_dim = 128;
  c.num_local_experts = 8;
  c.num_experts_per_tok = 2;
  c.weight_dtype = dtype;
  return c;
}

TEST(BenchCost, MixtralActiveWeights) {
  const ModelConfig c = mixtral_8x7b(DType::BF16);
  // Per layer: q,o 4096^2 each, k,v 1024x4096 each, 2 norms, router 8x4096, 2 experts x 3 x
  // 4096x14336; plus final norm, lm_head 32000x4096, one embedding row.
  const double per_layer = 2 * 4096.0 * 4096 + 2 * 1024.0 * 4096 + 2 * 4096 + 8 * 4096 +
                           2 * 3 * 4096.0 * 14336;
  const double params = 32 * per_layer + 4096 + 32000.0 * 4096 + 4096;
  EXPECT_DOUBLE_EQ(active_params_per_token(c), params);
  EXPECT_NEAR(params / 1e9, 12.75, 0.01); // "about 13B active per token"
  EXPECT_DOUBLE_EQ(weight_bytes_per_token(c), 2 * params);
  EXPECT_DOUBLE_EQ(weight_bytes_per_token(mixtral_8x7b(DType::F32)), 4 * params);
}

/// A Mixtral 8x7B arena as the compiler lays it out (names, shapes, stacking), `quant` for
/// the attention and expert matrices.
Manifest mixtral_arena(QuantFormat quant) {
  Manifest m;
  m.config = mixtral_8x7b(DType::BF16);
  auto add = [&](const char *name, std::vector<std::int64_t> shape, bool quantizable,
                 bool stacked = false) {
    WeightTensor t;
    t.name = name;
    t.shape = shape;
    t.stacked = stacked;
    double n = 1;
    for (std::int64_t d : shape)
      n *= static_cast<double>(d);
    t.nbytes = static_cast<std::uint64_t>(2 * n);
    if (quantizable && quant != QuantFormat::None) {
      t.quant = quant;
      t.nbytes = static_cast<std::uint64_t>(quant == QuantFormat::Q8 ? n : n / 2);
      t.scale.nbytes = static_cast<std::uint64_t>(n / 32 * 2); // f16 per 32
    }
    m.tensors.push_back(t);
  };
  add("embed", {32000, 4096}, false);
  add("norm", {4096}, false);
  add("lm_head", {32000, 4096}, false);
  for (int l = 0; l < 32; ++l) {
    add("attn_norm", {4096}, false);
    add("wq", {4096, 4096}, true);
    add("wk", {1024, 4096}, true);
    add("wv", {1024, 4096}, true);
    add("wo", {4096, 4096}, true);
    add("ffn_norm", {4096}, false);
    add("moe.gate", {8, 4096}, false);
    add("moe.w1", {8, 14336, 4096}, true, true);
    add("moe.w3", {8, 14336, 4096}, true, true);
    add("moe.w2", {8, 4096, 14336}, true, true);
  }
  return m;
}

TEST(BenchCost, ArenaBytesPerToken) {
  // Unquantized: the same count as the config's.
  EXPECT_DOUBLE_EQ(weight_bytes_per_token(mixtral_arena(QuantFormat::None)),
                   weight_bytes_per_token(mixtral_8x7b(DType::BF16)));
  // q8 / q4: the quantized matrices at 8.5 / 4.5 bits per weight, the rest in bf16.
  const double quantized = 32 * (2 * 4096.0 * 4096 + 2 * 1024.0 * 4096 + 2 * 3 * 4096.0 * 14336);
  const double rest = 2 * (active_params_per_token(mixtral_8x7b(DType::BF16)) - quantized);
  EXPECT_DOUBLE_EQ(weight_bytes_per_token(mixtral_arena(QuantFormat::Q8)),
                   rest + quantized * 8.5 / 8);
  EXPECT_DOUBLE_EQ(weight_bytes_per_token(mixtral_arena(QuantFormat::Q4)),
                   rest + quantized * 4.5 / 8);
}

TEST(BenchCost, PrefillFlops) {
  ModelConfig c = mixtral_8x7b(DType::BF16);
  c.num_hidden_layers = 1;
  const double matmul = 2 * 4096.0 * 4096 + 2 * 1024.0 * 4096 + 8 * 4096 + 6 * 4096.0 * 14336;
  // 3 tokens attend to 1 + 2 + 3 positions.
  const double want = 2 * matmul * 3 + 2 * 2 * 32 * 128 * 6.0 + 2 * 32000.0 * 4096;
  EXPECT_DOUBLE_EQ(prefill_flops(c, 3), want);
  c.sliding_window = 2; // 1 + 2 + 2
  EXPECT_DOUBLE_EQ(prefill_flops(c, 3), want - 2 * 2 * 32 * 128 * 1.0);
  // moec_prefill's last layer runs its FFN (router + 2 experts) for the last row only.
  const double ffn = 8 * 4096 + 6 * 4096.0 * 14336;
  EXPECT_DOUBLE_EQ(prefill_flops(c, 3, PrefillFfn::LastRowInLastLayer),
                   want - 2 * 2 * 32 * 128 * 1.0 - 2 * ffn * 2);
  c.num_hidden_layers = 2; // only the last of two layers skips rows
  EXPECT_DOUBLE_EQ(prefill_flops(c, 3, PrefillFfn::LastRowInLastLayer),
                   2 * (want - 2 * 32000.0 * 4096 - 2 * 2 * 32 * 128 * 1.0) - 2 * ffn * 2 +
                       2 * 32000.0 * 4096);
}

TEST(BenchCost, BandwidthProbeMeasuresSomething) {
  const double gbs = measure_read_bandwidth_gbs(8 << 20, 2);
  EXPECT_GT(gbs, 0.1);
  EXPECT_LT(gbs, 100000);
}

class Bench : public ::testing::Test {
protected:
  void SetUp() override {
    test::write_fake_checkpoint(dir_.file("model.safetensors"));
    fake_log().clear();
  }
  int run_cli(std::vector<std::string> args, std::string &out, std::string &err) {
    args.insert(args.begin(), {"--model", dir_.str()});
    std::ostringstream o, e;
    RunIO io{o, e, false};
    int rc = run(args, test::fake_entry_points(), io, "fake-model");
    out = o.str();
    err = e.str();
    return rc;
  }
  test::TempDir dir_;
};

TEST_F(Bench, ReportBlock) {
  std::string out, err;
  // No tokenizer anywhere: --bench must not need one.
  int rc = run_cli({"--bench", "--bench-prompt", "8", "--bench-decode", "4", "--bench-buffer-mib",
                    "4"},
                   out, err);
  ASSERT_EQ(rc, 0) << err;
  EXPECT_EQ(fake_log().positions, (std::vector<std::int64_t>{0, 8, 9, 10, 11}));
  EXPECT_EQ(fake_log().counts, (std::vector<std::int64_t>{8, 1, 1, 1, 1}));
  EXPECT_EQ(fake_log().kv_mismatches, 0);
  for (std::int32_t id : fake_log().sequence) {
    EXPECT_GE(id, 0);
    EXPECT_LT(id, test::kFakeVocab);
  }
  const std::regex block(
      "model: 1 layers, 4 hidden, 8 intermediate, 2 experts top-1, 16 vocab, weights f32\n"
      "memory bandwidth \\(measured: reading a 4 MiB buffer, (\\? )?[0-9]+% on 2 MiB pages: the "
      "weights, 0\\.0 MB, would fit in the caches; best of 7 passes, median [0-9.]+, range "
      "[0-9.]+-[0-9.]+, [0-9]+% of the processors\\): [0-9.]+ GB/s\n"
      "(note: the probe's threads got less than 90% of the processors \\(a busy machine\\): the "
      "bandwidth and the roofline are too low\n)?"
      "prefill: 8 tokens in [0-9.]+ s = [0-9.]+ tok/s, [0-9.]+ GFLOP/s\n"
      "decode:  4 tokens in [0-9.]+ s = [0-9.]+ tok/s; weight bytes read per token 0.000 GB "
      "\\([0-9.]+ GB/s\\); "
      "roofline \\(bandwidth / bytes per token\\) [0-9.]+ tok/s; ratio Y/R = [0-9.]+%\n");
  EXPECT_TRUE(std::regex_match(out, block)) << out;
  // The roofline's bandwidth is the best pass (the top of the range), not the median.
  std::smatch probe;
  ASSERT_TRUE(std::regex_search(out, probe, std::regex("range [0-9.]+-([0-9.]+), [0-9]+% of the "
                                                       "processors\\): ([0-9.]+) GB/s")));
  EXPECT_EQ(probe[1].str(), probe[2].str()) << out;
}

TEST_F(Bench, Errors) {
  std::string out, err;
  EXPECT_EQ(run_cli({"--bench", "--bench-prompt", "30", "--bench-decode", "3"}, out, err), 2);
  EXPECT_EQ(err, "error: --bench-prompt 30 + --bench-decode 3 exceed the compiled context of 32 "
                 "tokens\n");
  EXPECT_EQ(run_cli({"--bench", "--bench-prompt", "0"}, out, err), 2);
  EXPECT_EQ(err, "error: --bench-prompt: must be in [1, 2147483647], got 0\n");
  EXPECT_EQ(run_cli({"--bench", "--bench-decode", "-1"}, out, err), 2);
  EXPECT_EQ(run_cli({"--bench", "--chat"}, out, err), 2);
  EXPECT_EQ(err, "error: --chat: only one of --tokenize, --detokenize, --chat, --bench, --serve "
                 "may be given\n");
  EXPECT_EQ(fake_log().prefill_calls, 0);
}

TEST_F(Bench, NotEnoughMemoryIsReportedBeforeLoading) {
  std::string out, err;
  int rc = run_cli({"--prompt-ids", "1", "--print-ids", "--test-mem-available", "1000"}, out, err);
  EXPECT_EQ(rc, 1);
  EXPECT_EQ(err, "error: not enough memory: the model needs 1.00 KiB (weights 512 B + KV cache "
                 "512 B) but MemAvailable is 1000 B\n");
  EXPECT_EQ(fake_log().prefill_calls, 0);
  rc = run_cli({"--prompt-ids", "1", "--print-ids", "-n", "1", "--test-mem-available", "1024"},
               out, err);
  EXPECT_EQ(rc, 0) << err; // 512 + 512 bytes fit exactly
}

// The probe's figure is the median of its passes, within their range, over the buffer given.
TEST(BenchCost, BandwidthProbeReportsTheMedianOfItsPasses) {
  std::vector<std::uint64_t> words(1 << 20, 1);
  const BandwidthProbe p = measure_read_bandwidth(words.data(), words.size() * 8, 5);
  EXPECT_EQ(p.passes, 5);
  EXPECT_GT(p.min_gbs, 0);
  EXPECT_LE(p.min_gbs, p.median_gbs);
  EXPECT_LE(p.median_gbs, p.max_gbs);
  EXPECT_GT(p.cpu_share, 0);
}

// stdout that cannot be written ends --bench with one line and exit 1.
TEST_F(Bench, AFailedWriteOnStdoutIsAnError) {
  test::FullBuf full;
  std::ostream out(&full);
  std::ostringstream err;
  RunIO io{out, err, false};
  const int rc = run({"--model", dir_.str(), "--bench", "--bench-prompt", "4", "--bench-decode",
                      "2", "--bench-buffer-mib", "4"},
                     test::fake_entry_points(), io, "fake-model");
  EXPECT_EQ(rc, 1);
  EXPECT_EQ(err.str(), "error: standard output: cannot write: No space left on device\n");
}

} // namespace
} // namespace moec
