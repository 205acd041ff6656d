// model_folder_test.cpp — start-up checks that the model folder is the one the binary was
// compiled for (config.json against the manifest), that the tokenizer fits, and the messages
// for a folder that is missing, empty or holds a dangling checkpoint symlink.
#include "fake_model.h"
#include "moec/run.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

namespace moec {
namespace {
using test::fake_log;

std::string read_text(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class ModelFolder : public ::testing::Test {
protected:
  void SetUp() override {
    test::write_fake_checkpoint(dir_.file("model.safetensors"));
    fake_log().clear();
  }
  /// rc and stderr of the fake binary run with `args` (a greedy 2-token id run by default).
  std::pair<int, std::string> run_with(std::vector<std::string> args) {
    std::ostringstream out, err;
    RunIO io{out, err, false};
    int rc = run(args, test::fake_entry_points(), io, "fake-model");
    return {rc, err.str()};
  }
  std::pair<int, std::string> run_model() {
    return run_with({"--model", dir_.str(), "--prompt-ids", "3", "-n", "2", "--print-ids"});
  }
  /// config.json with `from` replaced by `to`.
  void edit_config(const std::string &from, const std::string &to) {
    test::write_fake_config(dir_.str(), test::kFakeVocab);
    std::string text = read_text(dir_.file("config.json"));
    ASSERT_NE(text.find(from), std::string::npos) << from;
    text.replace(text.find(from), from.size(), to);
    test::write_bytes(dir_.file("config.json"), text);
  }
  test::TempDir dir_;
};

TEST_F(ModelFolder, ConfigMustMatchTheManifest) {
  ASSERT_EQ(run_model().first, 0) << run_model().second; // the fake's own config passes
  const std::string cfg = dir_.file("config.json");
  struct Case {
    std::string from, to, message;
  };
  const std::vector<Case> cases = {
      {"\"rope_theta\": 1000000.0", "\"rope_theta\": 10000",
       "rope_theta is 10000 but this binary was compiled for 1000000"},
      {"\"rms_norm_eps\": 1e-5", "\"rms_norm_eps\": 1e-6",
       "rms_norm_eps is 1e-06 but this binary was compiled for 1e-05"},
      {"\"num_hidden_layers\": 1", "\"num_hidden_layers\": 2",
       "num_hidden_layers is 2 but this binary was compiled for 1"},
      {"\"vocab_size\": 16", "\"vocab_size\": 17",
       "vocab_size is 17 but this binary was compiled for 16"},
      {"\"sliding_window\": null", "\"sliding_window\": 8",
       "sliding_window is 8 but this binary was compiled for null"},
      {"\"tie_word_embeddings\": false", "\"tie_word_embeddings\": true",
       "tie_word_embeddings is true but this binary was compiled for false"},
      {"\"eos_token_id\": 2", "\"eos_token_id\": 3",
       "eos_token_id is 3 but this binary was compiled for 2"},
      {"\"num_experts_per_tok\": 1", "\"num_experts_per_tok\": 2",
       "num_experts_per_tok is 2 but this binary was compiled for 1"},
      {"\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"",
       "\"hidden_act\" is \"gelu\", but only \"silu\" is implemented"},
      {"\"rms_norm_eps\": 1e-5", "\"rms_norm_eps\": -1e-5",
       "\"rms_norm_eps\" must be in (0, 1), but it is -1e-05"},
      {"\"rope_theta\": 1000000.0", "\"rope_theta\": 1e400",
       "not valid JSON (byte 288): number overflow parsing '1e400'"},
      {"\"rope_theta\": 1000000.0", "\"rope_theta\": -1",
       "\"rope_theta\" must be a finite positive number, but it is -1"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.to);
    edit_config(c.from, c.to);
    fake_log().clear();
    auto [rc, err] = run_model();
    EXPECT_EQ(rc, 1);
    EXPECT_EQ(err, "error: " + cfg + ": " + c.message + "\n");
    EXPECT_EQ(fake_log().prefill_calls, 0);
  }
  std::remove(cfg.c_str());
  EXPECT_EQ(run_model().second, "error: " + cfg + ": does not exist\n");
}

TEST_F(ModelFolder, MissingEmptyAndDanglingPaths) {
  auto [rc, err] = run_with({"--model", dir_.file("gone"), "--prompt", "hi"});
  EXPECT_EQ(rc, 1);
  EXPECT_EQ(err, "error: " + dir_.file("gone") + ": model folder does not exist\n");
  std::tie(rc, err) = run_with({"--model", "", "--prompt-ids", "3", "--print-ids"});
  EXPECT_EQ(rc, 1);
  EXPECT_EQ(err, "error: --model: the path is empty\n");
  std::remove(dir_.file("model.safetensors").c_str());
  ASSERT_EQ(::symlink("/nonexistent/model.safetensors", dir_.file("model.safetensors").c_str()), 0);
  std::tie(rc, err) = run_model();
  EXPECT_EQ(rc, 1);
  EXPECT_EQ(err, "error: " + dir_.file("model.safetensors") +
                     ": is a dangling symlink to '/nonexistent/model.safetensors'\n");
}

TEST_F(ModelFolder, FifoAndDeviceInputsAreRefusedWithoutBlocking) {
  std::remove(dir_.file("model.safetensors").c_str());
  ASSERT_EQ(::mkfifo(dir_.file("model.safetensors").c_str(), 0600), 0);
  auto [rc, err] = run_model();
  EXPECT_EQ(err, "error: " + dir_.file("model.safetensors") +
                     ": not a regular file (it is a FIFO)\n");
  std::remove(dir_.file("model.safetensors").c_str());
  ASSERT_EQ(::symlink("/dev/zero", dir_.file("model.safetensors").c_str()), 0);
  std::tie(rc, err) = run_model();
  EXPECT_EQ(err, "error: " + dir_.file("model.safetensors") +
                     ": not a regular file (it is a character device)\n");
  test::write_fake_checkpoint(dir_.file("other.safetensors"));
  std::remove(dir_.file("config.json").c_str());
  ASSERT_EQ(::mkfifo(dir_.file("config.json").c_str(), 0600), 0);
  std::tie(rc, err) = run_model();
  EXPECT_EQ(err, "error: " + dir_.file("config.json") + ": not a regular file (it is a FIFO)\n");
}

TEST_F(ModelFolder, TokenizerMustFitTheModel) {
  const char *tok = std::getenv("MOEC_TOKENIZER_MODEL");
  if (!tok || !*tok)
    GTEST_SKIP() << "set MOEC_TOKENIZER_MODEL to a Mixtral tokenizer.model";
  // 32000 pieces against the fake's 16-token vocabulary: refused before any weight is read.
  auto [rc, err] = run_with({"--model", dir_.str(), "--tokenizer", tok, "--prompt", "Hello"});
  EXPECT_EQ(rc, 1);
  EXPECT_EQ(err, std::string("error: ") + tok +
                     ": tokenizer has 32000 pieces but the model's vocab_size is 16\n");
  EXPECT_EQ(fake_log().prefill_calls, 0);
}

TEST_F(ModelFolder, TokenizerBosEosMustMatchTheConfig) {
  const char *tok = std::getenv("MOEC_TOKENIZER_MODEL");
  if (!tok || !*tok)
    GTEST_SKIP() << "set MOEC_TOKENIZER_MODEL to a Mixtral tokenizer.model";
  // The fake's manifest with the real tokenizer's 32000 pieces but bos_token_id 3.
  static std::string text;
  text = test::fake_manifest_text();
  for (auto [from, to] : {std::pair<std::string, std::string>{"\"vocab_size\": 16", "\"vocab_size\": 32000"},
                          {"\"bos_token_id\": 1", "\"bos_token_id\": 3"}})
    text.replace(text.find(from), from.size(), to);
  EntryPoints entry = test::fake_entry_points();
  entry.manifest = text.c_str();
  std::ostringstream out, err;
  RunIO io{out, err, false};
  int rc = run({"--model", dir_.str(), "--tokenizer", tok, "--prompt", "Hello"}, entry, io, "m");
  EXPECT_EQ(rc, 1);
  EXPECT_EQ(err.str(), std::string("error: ") + tok +
                           ": tokenizer's BOS/EOS ids are 1/2 but the model's "
                           "bos_token_id/eos_token_id are 3/2\n");
}

} // namespace
} // namespace moec
