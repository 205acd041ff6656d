// openai.h — the OpenAI API's request and response bodies (nlohmann-json), for server.cpp.
//
// parse_completion / parse_chat turn a request body into a plain OpenAiRequest, checking every
// field's type and range; any problem throws ApiError with the status and message the client
// gets (400 malformed or wrong type, 404 unknown model). Responses and stream chunks are built
// by the *_json functions below. What the fields mean: README.md, "Serving".
#pragma once

#include "moec/manifest.h"
#include "moec/scheduler.h"
#include "moec/tokenizer.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace moec::openai {

/// An error the client sees as {"error": {"message", "type", "param", "code"}}.
struct ApiError : std::runtime_error {
  ApiError(int status, const std::string &message, std::string param = "")
      : std::runtime_error(message), status(status), param(std::move(param)) {}
  int status;
  std::string param;
};

/// The OpenAI error body for `status`.
nlohmann::json error_json(int status, const std::string &message, const std::string &param = "");

/// What parsing needs to know about the served model.
struct ModelInfo {
  std::string name;             // the id clients must send as "model"
  const Tokenizer *tokenizer;
  ModelConfig config;
  std::int64_t max_seq_len = 0; // S
  std::int64_t pool_positions = 0; // the KV pool's positions (0: no tighter than S): a default
                                   // max_tokens stays within them as well as the context
};

struct OpenAiRequest {
  bool chat = false;
  bool stream = false;
  bool include_usage = false;     // stream_options.include_usage
  GenerationRequest generation;   // prompt ids, sampling (seed drawn if none), max_tokens,
                                  // top_logprobs (-1 = no logprobs)
  std::vector<std::string> stop;  // at most 4, non-empty
};

/// POST /v1/completions: "prompt" is a string (BOS prepended, as the CLI does) or an array of
/// token ids (used as given); default max_tokens 16 (OpenAI's).
OpenAiRequest parse_completion(const std::string &body, const ModelInfo &model);
/// POST /v1/chat/completions: messages rendered with the Mixtral-Instruct template (an optional
/// leading system message folded into the first user turn); default max_tokens: the rest of the
/// context, or of the KV pool when it holds fewer positions (a small --kv-cache-mib must not
/// make every chat that leaves max_tokens out too large to admit).
OpenAiRequest parse_chat(const std::string &body, const ModelInfo &model);

/// The conversation's ids: <s>[INST] (system\n\n)user [/INST] answer</s>[INST] ... [/INST].
/// Roles must be: an optional system message first, then user and assistant alternating,
/// starting and ending with user; anything else throws ApiError 400.
std::vector<std::int32_t> render_chat(const nlohmann::json &messages, const ModelInfo &model);

/// One generated token as the client sees it: its text and, when asked for, its logprobs.
struct TokenView {
  std::string text;
  std::int64_t offset = 0; // where `text` starts in the completion's text
  float logprob = 0;
  std::vector<std::pair<std::string, float>> top; // alternatives' text and logprob
};

struct Usage {
  std::int64_t prompt = 0, completion = 0;
};

/// The whole response of a non-streaming request.
nlohmann::json response_json(const OpenAiRequest &r, const std::string &id, std::int64_t created,
                             const std::string &model, const std::string &text,
                             const std::vector<TokenView> &tokens, const char *finish,
                             Usage usage);
/// One stream chunk: text (and its tokens' logprobs), or the final one with finish_reason.
/// `first`: the chat stream's first chunk carries {"role": "assistant"}.
nlohmann::json chunk_json(const OpenAiRequest &r, const std::string &id, std::int64_t created,
                          const std::string &model, const std::string &text,
                          const std::vector<TokenView> &tokens, const char *finish, bool first);
/// The stream's usage chunk (stream_options.include_usage): empty choices.
nlohmann::json usage_chunk_json(const OpenAiRequest &r, const std::string &id,
                                std::int64_t created, const std::string &model, Usage usage);

} // namespace moec::openai
