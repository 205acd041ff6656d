// run_test.cpp — the generation loop and CLI end to end, driven by the fake model (fake_model.h).
#include "fake_model.h"
#include "moec/run.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <fstream>
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
  Result r = run_cli({"--prompt-ids", "1,7,9", "-n", "2", "-t", "0", "--print-ids"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "10 11\n");
  EXPECT_EQ(fake_log().positions, (std::vector<std::int64_t>{0, 3}));
  EXPECT_EQ(fake_log().kv_mismatches, 0);
}

TEST_F(Run, StopsAtEos) {
  Result r = run_cli({"--prompt-ids", "14", "-n", "10", "-t", "0", "--print-ids"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "15 0 1\n"); // next would be 2 = EOS
  EXPECT_EQ(fake_log().decode_calls, 3);
}

TEST_F(Run, StopsWhenTheContextIsFull) {
  std::string ids = "1";
  for (int i = 1; i < 30; ++i)
    ids += ",3";
  Result r = run_cli({"--prompt-ids", ids, "-n", "10", "-t", "0", "--print-ids"});
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

TEST_F(Run, SeededSamplingIsReproducible) {
  Result a = run_cli({"--prompt-ids", "3", "-n", "8", "-t", "30", "--top-k", "0", "--top-p",
                      "1", "--seed", "9", "--print-ids"});
  Result b = run_cli({"--prompt-ids", "3", "-n", "8", "-t", "30", "--top-k", "0", "--top-p",
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

TEST_F(Run, TokenizerLargerThanVocabIsRejected) {
  const char *tok = std::getenv("MOEC_TOKENIZER_MODEL");
  if (!tok || !*tok)
    GTEST_SKIP() << "set MOEC_TOKENIZER_MODEL to a Mixtral tokenizer.model";
  Result r = run_cli({"--tokenizer", tok, "--prompt", "Hello"});
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("tokenizer has 32000 pieces but the model's vocab_size is 16"),
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
                                   "-n", "2", "-t", "0", "--print-ids", "-q"};
  std::vector<char *> argv;
  for (std::string &a : args)
    argv.push_back(a.data());
  testing::internal::CaptureStdout();
  int rc = run_main(static_cast<int>(argv.size()), argv.data());
  std::string out = testing::internal::GetCapturedStdout();
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(out, "4 5\n");
}

} // namespace
} // namespace moec
