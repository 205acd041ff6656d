// tokenizer_test.cpp — sentencepiece wrapper and StreamDecoder.
//
// The round-trip tests need the real Mixtral tokenizer: set MOEC_TOKENIZER_MODEL to a
// tokenizer.model (e.g. mistral_common/data/tokenizer.model.v1 from pip's mistral-common);
// they are skipped otherwise.
#include "utf8_check.h"
#include "moec/error.h"
#include "moec/tokenizer.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

namespace moec {
namespace {

using test::valid_utf8;

const std::vector<std::string> kTexts = {
    "Hello world",
    "The capital of France is Paris. It has 2,148,271 inhabitants (2020).",
    "  two leading spaces and   runs   of spaces ",
    "line one\nline two\n\n\ttabbed",
    "[INST] What is 2+2? [/INST] 4</s>",
    "Ünïcödé: naïve café, 数字と日本語, Ελληνικά, עברית",
    "emoji 🙂🎉👩‍💻 and rare CJK 𠜎𠜱 need byte fallback",
    "x",
    " 1 2 3 4 5 6 7 8 9 10",
};

class RealTokenizer : public ::testing::Test {
protected:
  void SetUp() override {
    const char *path = std::getenv("MOEC_TOKENIZER_MODEL");
    if (!path || !*path)
      MOEC_SKIP_UNLESS_CI("set MOEC_TOKENIZER_MODEL to a Mixtral tokenizer.model");
    tok_ = std::make_unique<Tokenizer>(path);
  }
  std::unique_ptr<Tokenizer> tok_;
};

TEST_F(RealTokenizer, MixtralVocabulary) {
  EXPECT_EQ(tok_->vocab_size(), 32000);
  EXPECT_EQ(tok_->bos_id(), 1);
  EXPECT_EQ(tok_->eos_id(), 2);
  std::vector<std::int32_t> ids = tok_->encode("Hello", 1);
  ASSERT_GE(ids.size(), 2u);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(tok_->encode("Hello", std::nullopt), std::vector<std::int32_t>(ids.begin() + 1, ids.end()));
  EXPECT_EQ(tok_->byte_value(tok_->encode("𠜎", std::nullopt).back()).has_value(), true);
  EXPECT_THROW(tok_->decode({32000}), Error);
  EXPECT_THROW(tok_->decode({-1}), Error);
}

TEST_F(RealTokenizer, RoundTrip) {
  for (const std::string &text : kTexts) {
    SCOPED_TRACE(text);
    EXPECT_EQ(tok_->decode(tok_->encode(text, 1)), text);
  }
}

TEST_F(RealTokenizer, StreamingEqualsWholeDecode) {
  for (const std::string &text : kTexts) {
    SCOPED_TRACE(text);
    const std::vector<std::int32_t> ids = tok_->encode(text, 1);
    // From an empty context (every id streamed, BOS included).
    {
      StreamDecoder s(*tok_);
      std::string streamed;
      for (std::int32_t id : ids) {
        std::string piece = s.push(id);
        EXPECT_TRUE(valid_utf8(piece)) << "broken UTF-8 emitted for id " << id;
        streamed += piece;
      }
      streamed += s.finish();
      EXPECT_EQ(streamed, tok_->decode(ids));
    }
    // With every possible prompt/generation split.
    std::size_t tested = 0;
    for (std::size_t k = 1; k < ids.size(); ++k) {
      const std::vector<std::int32_t> ctx(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(k));
      const std::string whole = tok_->decode(ids), head = tok_->decode(ctx);
      if (whole.compare(0, head.size(), head) != 0)
        continue; // the split cuts a UTF-8 character; the context itself shows U+FFFD
      StreamDecoder s(*tok_, ctx);
      std::string streamed;
      for (std::size_t i = k; i < ids.size(); ++i) {
        std::string piece = s.push(ids[i]);
        EXPECT_TRUE(valid_utf8(piece)) << "split " << k << " id " << ids[i];
        streamed += piece;
      }
      streamed += s.finish();
      EXPECT_EQ(streamed, whole.substr(head.size())) << "split at " << k;
      ++tested;
    }
    EXPECT_GE(tested * 2, ids.size() - 1); // most splits are at character boundaries
  }
}

TEST_F(RealTokenizer, HoldsBackIncompleteCharacters) {
  const std::vector<std::int32_t> ids = tok_->encode("𠜎", std::nullopt); // 4 UTF-8 bytes
  std::vector<std::int32_t> bytes;
  for (std::int32_t id : ids)
    if (tok_->byte_value(id))
      bytes.push_back(id);
  ASSERT_EQ(bytes.size(), 4u);
  StreamDecoder s(*tok_, tok_->encode("a", 1));
  EXPECT_EQ(s.push(bytes[0]), "");
  EXPECT_EQ(s.push(bytes[1]), "");
  EXPECT_EQ(s.push(bytes[2]), "");
  EXPECT_EQ(s.push(bytes[3]), "𠜎");
  // An incomplete tail is only released by finish(), as U+FFFD.
  EXPECT_EQ(s.push(bytes[0]), "");
  EXPECT_FALSE(s.finish().empty());
}

TEST(Tokenizer, MissingOrCorruptModel) {
  test::TempDir dir;
  try {
    Tokenizer t(dir.file("tokenizer.model"));
    FAIL();
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer model does not exist"), std::string::npos);
  }
  test::write_bytes(dir.file("bad.model"), "this is not a protobuf");
  try {
    Tokenizer t(dir.file("bad.model"));
    FAIL();
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find(dir.file("bad.model")), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("cannot load"), std::string::npos) << e.what();
  }
  struct Case {
    std::string path, needle;
  };
  test::write_bytes(dir.file("empty.model"), "");
  std::vector<Case> cases = {{dir.file("empty.model"), "cannot load the sentencepiece model"},
                             {dir.str(), "tokenizer model is not a regular file"}};
  // A real model cut short, and one with bytes flipped in the middle.
  if (const char *real = std::getenv("MOEC_TOKENIZER_MODEL"); real && *real) {
    std::ifstream in(real, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    test::write_bytes(dir.file("cut.model"), bytes.substr(0, bytes.size() / 3));
    cases.push_back({dir.file("cut.model"), "cannot load the sentencepiece model"});
    for (std::size_t i = 1000; i < 1200; ++i)
      bytes[i] = static_cast<char>(0xff);
    test::write_bytes(dir.file("flipped.model"), bytes);
    cases.push_back({dir.file("flipped.model"), "cannot load the sentencepiece model"});
  }
  for (const Case &c : cases) {
    SCOPED_TRACE(c.path);
    try {
      Tokenizer t(c.path);
      FAIL() << "loaded";
    } catch (const Error &e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.rfind(c.path + ": ", 0), 0u) << msg;
      EXPECT_NE(msg.find(c.needle), std::string::npos) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
  }
}

} // namespace
} // namespace moec
