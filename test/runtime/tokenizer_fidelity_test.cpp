// tokenizer_fidelity_test.cpp — our Tokenizer (libsentencepiece, C++) against ids and texts that
// the official Python `sentencepiece` package produced from the same tokenizer.model.
//
// The expected file is written by tokenizer_expected.py: the committed
// Inputs/tokenizer_expected.json by default, or the file named by MOEC_TOKENIZER_EXPECTED (the
// ctest `runtime.tokenizer-fidelity-python` regenerates it with the Python package first).
// Needs MOEC_TOKENIZER_MODEL (the Mixtral tokenizer.model); skipped otherwise (failed in CI).
#include "test_util.h"
#include "utf8_check.h"
#include "moec/tokenizer.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>
#include <iostream>

#ifndef MOEC_TEST_INPUTS_DIR
#error "MOEC_TEST_INPUTS_DIR must name test/runtime/Inputs"
#endif

namespace moec {
namespace {
using nlohmann::json;

using test::valid_utf8;

std::string show(const std::vector<std::int32_t> &ids) {
  std::string s;
  for (std::int32_t id : ids)
    s += (s.empty() ? "" : " ") + std::to_string(id);
  return s;
}

class TokenizerFidelity : public ::testing::Test {
protected:
  void SetUp() override {
    const char *model = std::getenv("MOEC_TOKENIZER_MODEL");
    if (!model || !*model)
      MOEC_SKIP_UNLESS_CI("set MOEC_TOKENIZER_MODEL to a Mixtral tokenizer.model");
    tok_ = std::make_unique<Tokenizer>(model);
    const char *env = std::getenv("MOEC_TOKENIZER_EXPECTED");
    path_ = env && *env ? env : MOEC_TEST_INPUTS_DIR "/tokenizer_expected.json";
    std::ifstream in(path_);
    ASSERT_TRUE(in) << path_;
    expected_ = json::parse(in);
  }

  /// Streams ids through a StreamDecoder with no context; each piece must be valid UTF-8.
  std::string stream(const std::vector<std::int32_t> &ids, bool &broken) const {
    StreamDecoder s(*tok_);
    std::string out;
    for (std::int32_t id : ids) {
      std::string piece = s.push(id);
      broken |= !valid_utf8(piece);
      out += piece;
    }
    return out + s.finish();
  }

  std::unique_ptr<Tokenizer> tok_;
  std::string path_;
  json expected_;
};

TEST_F(TokenizerFidelity, EncodeDecodeAndStreamMatchPythonSentencepiece) {
  const json &texts = expected_.at("texts");
  ASSERT_GE(texts.size(), 40u);
  std::size_t equal = 0;
  for (const json &t : texts) {
    const std::string text = t.at("text").get<std::string>();
    const auto want = t.at("ids").get<std::vector<std::int32_t>>();
    const std::string decoded = t.at("decoded").get<std::string>();
    SCOPED_TRACE(t.at("text").dump());
    const std::vector<std::int32_t> got = tok_->encode(text, 1);
    EXPECT_EQ(show(got), show(want));
    EXPECT_EQ(tok_->decode(want), decoded);
    bool broken = false;
    EXPECT_EQ(stream(want, broken), decoded);
    EXPECT_FALSE(broken) << "a streamed piece was not valid UTF-8";
    equal += got == want && tok_->decode(want) == decoded && !broken;
  }
  std::size_t lists = 0;
  for (const json &l : expected_.at("id_lists")) {
    const auto ids = l.at("ids").get<std::vector<std::int32_t>>();
    const std::string decoded = l.at("decoded").get<std::string>();
    SCOPED_TRACE(show(ids));
    EXPECT_EQ(tok_->decode(ids), decoded);
    bool broken = false;
    EXPECT_EQ(stream(ids, broken), decoded);
    EXPECT_FALSE(broken);
    lists += tok_->decode(ids) == decoded;
  }
  std::cout << "tokenizer fidelity (" << path_ << "): " << equal << "/" << texts.size()
            << " texts equal to Python sentencepiece "
            << expected_.value("sentencepiece", std::string("?")) << ", " << lists << "/"
            << expected_.at("id_lists").size() << " id lists decode equal\n";
}

} // namespace
} // namespace moec
