// openai_test.cpp — request parsing of the OpenAI endpoints (openai.h): the default max_tokens
// against the context and the KV pool. The rest of the API is driven end to end by
// test/e2e/check_serve.py with the official client.
#include "openai.h"

#include "test_util.h"

#include <gtest/gtest.h>

#include <memory>

namespace moec {
namespace {

class OpenAiParse : public ::testing::Test {
protected:
  void SetUp() override {
    const char *path = std::getenv("MOEC_TOKENIZER_MODEL");
    if (!path || !*path)
      MOEC_SKIP_UNLESS_CI("set MOEC_TOKENIZER_MODEL to a Mixtral tokenizer.model");
    tok_ = std::make_unique<Tokenizer>(path);
    model_.name = "m";
    model_.tokenizer = tok_.get();
    model_.config.vocab_size = 32000;
    model_.max_seq_len = 256;
  }
  std::unique_ptr<Tokenizer> tok_;
  openai::ModelInfo model_;
};

const char *kChat = R"({"model": "m", "messages": [{"role": "user", "content": "Hi there"}]})";

// Without max_tokens a chat may generate up to the context's end; with a KV pool smaller than
// the context, up to the pool's end instead, so that the scheduler can admit it.
TEST_F(OpenAiParse, ChatDefaultMaxTokensFitsTheContextAndThePool) {
  const openai::OpenAiRequest r = openai::parse_chat(kChat, model_);
  const std::int64_t P = static_cast<std::int64_t>(r.generation.prompt.size());
  ASSERT_GT(P, 3);
  EXPECT_EQ(r.generation.max_tokens, 256 - P);
  model_.pool_positions = 1024; // larger than the context: the context bounds it
  EXPECT_EQ(openai::parse_chat(kChat, model_).generation.max_tokens, 256 - P);
  model_.pool_positions = 64;
  EXPECT_EQ(openai::parse_chat(kChat, model_).generation.max_tokens, 64 - P);
  model_.pool_positions = P; // no room: one token, which the scheduler refuses (TooLarge)
  EXPECT_EQ(openai::parse_chat(kChat, model_).generation.max_tokens, 1);
}

// An explicit max_tokens is the client's: kept (the server refuses it if the pool is smaller),
// and still checked against the context.
TEST_F(OpenAiParse, ExplicitMaxTokensIsKept) {
  model_.pool_positions = 64;
  const std::string messages = R"("messages": [{"role": "user", "content": "Hi there"}]})";
  const std::string with = R"({"model": "m", "max_tokens": 100, )" + messages;
  EXPECT_EQ(openai::parse_chat(with, model_).generation.max_tokens, 100);
  const std::string over = R"({"model": "m", "max_tokens": 250, )" + messages;
  try {
    openai::parse_chat(over, model_);
    ADD_FAILURE() << "prompt + max_tokens over the context was accepted";
  } catch (const openai::ApiError &e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.param, "max_tokens");
  }
  // Completions keep OpenAI's default of 16 whatever the pool.
  EXPECT_EQ(openai::parse_completion(R"({"model": "m", "prompt": [1, 22, 333]})", model_)
                .generation.max_tokens,
            16);
}

} // namespace
} // namespace moec
