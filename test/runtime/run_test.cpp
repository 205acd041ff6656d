// run_test.cpp — the generation loop and CLI end to end, driven by the fake model (fake_model.h).
#include "fake_model.h"
#include "moec/abi.h"
#include "moec/run.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

namespace moec {
namespace {
using test::fake_log;

struct Result {
  int rc;
  std::string out, err;
};

class Run : public ::testing::Test {
protected:
  void SetUp() override {
    test::write_fake_checkpoint(dir_.file("model.safetensors"));
    fake_log().clear();
  }
  Result run_cli(std::vector<std::string> args, bool with_model = true) {
    if (with_model) {
      args.insert(args.begin(), dir_.str());
      args.insert(args.begin(), "--model");
    }
    std::ostringstream out, err;
    RunIO io{out, err, false};
    int rc = run(args, test::fake_entry_points(), io, "fake-model");
    return {rc, out.str(), err.str()};
  }
  test::TempDir dir_;
};

TEST_F(Run, GreedyIdsWithPrefillThenDecode) {
  Result r = run_cli({"--prompt-ids", "3", "-n", "5", "--temperature", "0", "--print-ids"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "4 5 6 7 8\n");
  EXPECT_EQ(fake_log().prefill_calls, 1);
  EXPECT_EQ(fake_log().decode_calls, 4); // the 5th token needs no logits
  EXPECT_EQ(fake_log().positions, (std::vector<std::int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(fake_log().kv_mismatches, 0);
  EXPECT_EQ(fake_log().weight_probe, 0.5f); // the arena holds the checkpoint
  EXPECT_NE(r.err.find("prefill: 1 tokens"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("decode: 5 tokens"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("tokens/s"), std::string::npos) << r.err;
}

TEST_F(Run, MultiTokenPrefillStartsAtPositionZero) {
  Result r = run_cli({"--prompt-ids", "1,7,9", "-n", "2", "--temp", "0", "--print-ids"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "10 11\n");
  EXPECT_EQ(fake_log().positions, (std::vector<std::int64_t>{0, 3}));
  EXPECT_EQ(fake_log().kv_mismatches, 0);
}

TEST_F(Run, StopsAtEos) {
  Result r = run_cli({"--prompt-ids", "14", "-n", "10", "--temp", "0", "--print-ids"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "15 0 1 2\n"); // 2 = EOS ends generation; ids show it, text never does
  EXPECT_EQ(fake_log().decode_calls, 3);
}

// A long prompt is prefilled in calls of at most --prefill-chunk tokens, each at the position
// where the previous one ended; generation then continues from the last chunk's logits.
TEST_F(Run, PrefillsLongPromptsInChunks) {
  std::string ids = "1";
  for (int i = 1; i < 20; ++i)
    ids += ",3";
  Result r = run_cli({"--prompt-ids", ids, "-n", "2", "--temp", "0", "--print-ids",
                      "--prefill-chunk", "8"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(fake_log().positions, (std::vector<std::int64_t>{0, 8, 16, 20}));
  EXPECT_EQ(fake_log().counts, (std::vector<std::int64_t>{8, 8, 4, 1}));
  EXPECT_EQ(fake_log().kv_mismatches, 0);
  EXPECT_EQ(r.out, "4 5\n");
}

TEST_F(Run, StopsWhenTheContextIsFull) {
  std::string ids = "1";
  for (int i = 1; i < 30; ++i)
    ids += ",3";
  Result r = run_cli({"--prompt-ids", ids, "-n", "10", "--temp", "0", "--print-ids"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "4 5\n"); // 30 + 2 = 32 = max_seq_len
  EXPECT_NE(r.err.find("context of 32 tokens is full"), std::string::npos) << r.err;
  for (std::int64_t p : fake_log().positions)
    EXPECT_LT(p, test::kFakeSeqLen);
}

TEST_F(Run, PromptLongerThanContextFailsBeforeRunning) {
  std::string ids = "1";
  for (int i = 1; i < 33; ++i)
    ids += ",3";
  Result r = run_cli({"--prompt-ids", ids}); // checked before the (missing) tokenizer loads
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("error: the prompt has 33 tokens but the model was compiled for a "
                       "context of 32"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(fake_log().prefill_calls, 0);
}

TEST_F(Run, PromptIdsOutOfRangeAreUsageErrors) {
  for (const char *ids : {"16", "-1", "1,2,99"}) {
    SCOPED_TRACE(ids);
    Result r = run_cli({"--prompt-ids", ids, "--print-ids"});
    EXPECT_EQ(r.rc, 2);
    EXPECT_NE(r.err.find("is outside [0, 16)"), std::string::npos) << r.err;
  }
  EXPECT_EQ(fake_log().prefill_calls, 0);
}

TEST_F(Run, LogitsOut) {
  const std::string path = dir_.file("logits.bin");
  Result r = run_cli({"--prompt-ids", "1,2,3", "-n", "0", "--logits-out", path});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(fake_log().decode_calls, 0);
  std::ifstream f(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  ASSERT_EQ(bytes.size(), 16u * 4);
  std::vector<float> l(16);
  std::memcpy(l.data(), bytes.data(), bytes.size());
  for (int i = 0; i < 16; ++i)
    EXPECT_EQ(l[static_cast<std::size_t>(i)], i == 4 ? 10.0f : 0.0f) << i;
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

// --logits-out rows: one per token sampled (its row is the one it was sampled from), so the
// fake's one-hot rows spell the sampled ids; rows stop with EOS's or at -n or the full context.
std::vector<int> hot_ids(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_EQ(bytes.size() % (16 * 4), 0u);
  std::vector<float> l(bytes.size() / 4);
  std::memcpy(l.data(), bytes.data(), bytes.size());
  std::vector<int> ids;
  for (std::size_t row = 0; row < l.size() / 16; ++row)
    for (int i = 0; i < 16; ++i)
      if (l[row * 16 + static_cast<std::size_t>(i)] == 10.0f)
        ids.push_back(i);
  return ids;
}

TEST_F(Run, LogitsOutHasOneRowPerSampledToken) {
  const std::string path = dir_.file("logits.bin");
  Result r = run_cli({"--prompt-ids", "3", "-n", "5", "--temp", "0", "--print-ids", "--logits-out",
                      path});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "4 5 6 7 8\n");
  EXPECT_EQ(hot_ids(path), (std::vector<int>{4, 5, 6, 7, 8}));
}

TEST_F(Run, LogitsOutRowsEndWithEos) {
  const std::string path = dir_.file("logits.bin");
  Result r = run_cli({"--prompt-ids", "14", "-n", "10", "--temp", "0", "--print-ids",
                      "--logits-out", path});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "15 0 1 2\n");
  EXPECT_EQ(hot_ids(path), (std::vector<int>{15, 0, 1, 2})); // EOS's row is the last
}

TEST_F(Run, LogitsOutRowsStopWithTheContext) {
  std::string ids = "1";
  for (int i = 1; i < 30; ++i)
    ids += ",3";
  const std::string path = dir_.file("logits.bin");
  Result r = run_cli({"--prompt-ids", ids, "-n", "10", "--temp", "0", "--print-ids",
                      "--logits-out", path});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "4 5\n");
  EXPECT_EQ(hot_ids(path), (std::vector<int>{4, 5}));
}

TEST_F(Run, SeededSamplingIsReproducible) {
  Result a = run_cli({"--prompt-ids", "3", "-n", "8", "--temp", "30", "--top-k", "0", "--top-p",
                      "1", "--seed", "9", "--print-ids"});
  Result b = run_cli({"--prompt-ids", "3", "-n", "8", "--temp", "30", "--top-k", "0", "--top-p",
                      "1", "--seed", "9", "--print-ids"});
  EXPECT_EQ(a.rc, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
}

TEST_F(Run, Errors) {
  Result r = run_cli({"--prompt-ids", "3", "--print-ids"}, /*with_model=*/false);
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.err, "error: no model directory: pass --model DIR (the manifest names none)\n");

  r = run_cli({"--frobnicate"});
  EXPECT_EQ(r.rc, 2);
  EXPECT_EQ(r.err, "error: unknown flag '--frobnicate' (see --help)\n");

  r = run_cli({"--top-p", "0"});
  EXPECT_EQ(r.rc, 2);

  r = run_cli({"--prompt-ids", "3", "-n", "2"}); // text output needs the tokenizer
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("tokenizer.model: tokenizer model does not exist"), std::string::npos)
      << r.err;

  r = run_cli({"--model", dir_.file("nowhere"), "--prompt-ids", "3", "--print-ids"}, false);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find(dir_.file("nowhere")), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

// Every bad input the user can hand the binary: exit status, and exactly one "error: " line that
// names the file (or flag) and the problem.
TEST_F(Run, BadInputsGiveOneLineErrors) {
  const std::string st = dir_.file("model.safetensors");
  struct Case {
    std::string what;
    std::function<void()> setup;
    std::vector<std::string> args;
    int rc;
    std::string prefix; // the error line starts with this
  };
  const std::vector<std::string> ids = {"--prompt-ids", "1", "--print-ids", "-n", "1"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = ids;
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  const std::vector<Case> cases = {
      {"truncated safetensors", [&] { test::write_bytes(st, "abc"); }, ids, 1,
       "error: " + st + ": file is 3 bytes, shorter than the 8-byte safetensors header length"},
      {"header length past EOF", [&] { test::write_raw_safetensors(st, "{}", "", 4096); }, ids, 1,
       "error: " + st + ": header length 4096 runs past the end of the file (10 bytes)"},
      {"header not JSON", [&] { test::write_raw_safetensors(st, "{\"w\": nope}"); }, ids, 1,
       "error: " + st + ": header is not valid JSON"},
      {"missing tensor",
       [&] { test::write_safetensors(st, {{"model.embed_tokens.weight", "F32", {16, 4},
                                            test::f32_iota(64)}}); },
       ids, 1,
       "error: tensor 'layers.0.moe.w1': source "
       "'model.layers.0.block_sparse_moe.experts.0.w1.weight' is not in the checkpoint " + st},
      {"wrong shape",
       [&] {
         test::write_safetensors(
             st, {{"model.embed_tokens.weight", "F32", {16, 5}, test::f32_iota(80)}});
       },
       ids, 1,
       "error: tensor 'embed': source 'model.embed_tokens.weight' in " + st +
           " has shape [16, 5], expected [16, 4]"},
      {"wrong dtype",
       [&] {
         test::write_safetensors(
             st, {{"model.embed_tokens.weight", "F16", {16, 4}, std::string(128, '\0')}});
       },
       ids, 1,
       "error: tensor 'embed': source 'model.embed_tokens.weight' in " + st +
           " is f16, expected f32"},
      {"missing shard",
       [&] {
         std::filesystem::remove(st);
         test::write_bytes(dir_.file("model.safetensors.index.json"),
                           R"({"weight_map": {"model.embed_tokens.weight": "s1.safetensors"}})");
       },
       ids, 1,
       "error: " + dir_.file("model.safetensors.index.json") + ": shard file " +
           dir_.file("s1.safetensors") + " (holding 'model.embed_tokens.weight') does not exist"},
      {"corrupt tokenizer", [&] { test::write_bytes(dir_.file("tokenizer.model"), "garbage"); },
       {"--prompt", "hi"}, 1,
       "error: " + dir_.file("tokenizer.model") + ": cannot load the sentencepiece model"},
      {"missing tokenizer", [] {}, {"--prompt", "hi"}, 1,
       "error: " + dir_.file("tokenizer.model") + ": tokenizer model does not exist"},
      {"not enough memory", [] {}, with({"--test-mem-available", "100"}), 1,
       "error: not enough memory: the model needs 1.00 KiB (weights 512 B + KV cache 512 B) but "
       "MemAvailable is 100 B"},
      {"unknown flag", [] {}, {"--temprature", "0"}, 2,
       "error: unknown flag '--temprature' (see --help)"},
      {"negative -n", [] {}, {"-n", "-3"}, 2, "error: -n: must be >= 0, got -3"},
      {"top-p above 1", [] {}, {"--top-p", "1.5"}, 2, "error: --top-p: must be in (0, 1], got 1.5"},
      {"prompt id out of range", [] {}, {"--prompt-ids", "1,16", "--print-ids"}, 2,
       "error: --prompt-ids: id 16 is outside [0, 16)"},
      {"prompt longer than the context", [] {},
       {"--prompt-ids", "1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1",
        "--print-ids"},
       1, "error: the prompt has 33 tokens but the model was compiled for a context of 32"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.what);
    test::write_fake_checkpoint(st);
    std::filesystem::remove(dir_.file("model.safetensors.index.json"));
    std::filesystem::remove(dir_.file("tokenizer.model"));
    c.setup();
    fake_log().clear();
    const Result r = run_cli(c.args);
    EXPECT_EQ(r.rc, c.rc);
    EXPECT_EQ(r.err.rfind(c.prefix, 0), 0u) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(r.err.back(), '\n');
    EXPECT_EQ(fake_log().prefill_calls, 0);
  }
}

TEST_F(Run, TokenizerLargerThanVocabIsRejected) {
  const char *tok = std::getenv("MOEC_TOKENIZER_MODEL");
  if (!tok || !*tok)
    MOEC_SKIP_UNLESS_CI("set MOEC_TOKENIZER_MODEL to a Mixtral tokenizer.model");
  Result r = run_cli({"--tokenizer", tok, "--prompt", "Hello"});
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("tokenizer has 32000 pieces but the model's vocab_size is 16"),
            std::string::npos)
      << r.err;
}

// Non-finite logits (overflowing activations) end every mode with one line and exit 1, at
// the call that made them; --logits-out then writes nothing.
TEST_F(Run, NonFiniteLogitsEndTheRun) {
  const std::string logits = dir_.file("logits.bin");
  const std::string tail = ": the model's activations overflow; check the weights and config.json\n";
  fake_log().poison_call = 0;
  fake_log().poison_token = 5;
  fake_log().poison_value = std::nanf("");
  Result r = run_cli({"--prompt-ids", "1,2,3", "-n", "0", "--logits-out", logits, "-q"});
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.err, "error: the logits at position 2 are not finite (token 5 is NaN)" + tail);
  EXPECT_FALSE(std::filesystem::exists(logits));
  EXPECT_FALSE(std::filesystem::exists(logits + ".tmp"));

  fake_log().clear();
  fake_log().poison_call = 3; // the third decode
  fake_log().poison_token = 0;
  fake_log().poison_value = -INFINITY;
  r = run_cli({"--prompt-ids", "3", "-n", "8", "--temp", "0", "--print-ids", "-q"});
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.out, "4 5 6");
  EXPECT_EQ(r.err, "error: the logits at position 3 are not finite (token 0 is infinite)" + tail);
  EXPECT_EQ(fake_log().decode_calls, 3);

  fake_log().clear();
  fake_log().poison_call = 0;
  fake_log().poison_token = 15;
  fake_log().poison_value = INFINITY;
  r = run_cli({"--bench", "--bench-prompt", "4", "--bench-decode", "2", "--bench-buffer-mib", "1"});
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("error: the logits at position 3 are not finite (token 15 is infinite)"),
            std::string::npos)
      << r.err;
}

TEST_F(Run, Help) {
  Result r = run_cli({"--help"}, false);
  EXPECT_EQ(r.rc, 0);
  EXPECT_NE(r.out.find("usage: fake-model"), std::string::npos);
}

TEST_F(Run, RunMainUsesTheLinkedSymbols) {
  std::vector<std::string> args = {"model-bin", "--model", dir_.str(), "--prompt-ids", "3",
                                   "-n", "2", "--temp", "0", "--print-ids", "-q"};
  std::vector<char *> argv;
  for (std::string &a : args)
    argv.push_back(a.data());
  testing::internal::CaptureStdout();
  int rc = run_main(static_cast<int>(argv.size()), argv.data());
  std::string out = testing::internal::GetCapturedStdout();
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(out, "4 5\n");
}

TEST_F(Run, VersionNamesRuntimeAbiAndModel) {
  Result r = run_cli({"--version"}, /*with_model=*/false);
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out.rfind(std::string("moec runtime ") + kRuntimeVersion + ", ABI " +
                            std::to_string(MOEC_ABI_VERSION) + "\n",
                        0),
            0u)
      << r.out;
  EXPECT_NE(r.out.find("model: target cpu, 1 layers"), std::string::npos) << r.out;
}

// A binary without the batched step (the fake has none) refuses --serve
// with one line, before loading anything.
TEST_F(Run, ServeWithoutBatchedStepIsRefused) {
  Result r = run_cli({"--serve", "--port", "0"});
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.err.rfind("error: --serve: this binary has no batched step", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(fake_log().prefill_calls, 0);
}

TEST_F(Run, MinusTIsThreadsNowAndSaysWhereTheTemperatureWent) {
  Result r = run_cli({"--prompt-ids", "3", "-t", "0.7"});
  EXPECT_EQ(r.rc, 2);
  EXPECT_EQ(r.err, "error: -t: expected a thread count, got '0.7' (-t is --threads, as in "
                   "llama.cpp; the temperature is --temp)\n");
}

} // namespace
} // namespace moec
