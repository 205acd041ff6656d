// openai.cpp — request parsing and response bodies of the OpenAI API (see openai.h).
#include "openai.h"

#include "driver.h"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <random>

namespace moec::openai {
namespace {
using json = nlohmann::json;

const char *error_type(int status) {
  switch (status) {
  case 401:
    return "authentication_error";
  case 404:
    return "not_found_error";
  case 413:
    return "request_too_large";
  case 429:
    return "rate_limit_error";
  case 503:
    return "service_unavailable";
  default:
    return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

std::string fmt(double d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", d);
  return buf;
}

[[noreturn]] void bad(const std::string &param, const std::string &message) {
  throw ApiError(400, message, param);
}

/// body[key] when present and not null.
const json *field(const json &body, const char *key) {
  auto it = body.find(key);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

double number_in(const json &body, const char *key, double fallback, double lo, double hi,
                 bool lo_open = false) {
  const json *v = field(body, key);
  if (!v)
    return fallback;
  if (!v->is_number())
    bad(key, std::string("'") + key + "' must be a number");
  const double d = v->get<double>();
  if (!(lo_open ? d > lo : d >= lo) || !(d <= hi))
    bad(key, std::string("'") + key + "' must be in " + (lo_open ? "(" : "[") +
                 fmt(lo) + ", " + fmt(hi) + "], got " + v->dump());
  return d;
}

std::int64_t int_in(const json &body, const char *key, std::int64_t fallback, std::int64_t lo,
                    std::int64_t hi) {
  const json *v = field(body, key);
  if (!v)
    return fallback;
  if (!v->is_number_integer())
    bad(key, std::string("'") + key + "' must be an integer");
  if (v->is_number_unsigned() && v->get<std::uint64_t>() > static_cast<std::uint64_t>(hi))
    bad(key, std::string("'") + key + "' must be in [" + std::to_string(lo) + ", " +
                 std::to_string(hi) + "], got " + v->dump());
  const std::int64_t n = v->get<std::int64_t>();
  if (n < lo || n > hi)
    bad(key, std::string("'") + key + "' must be in [" + std::to_string(lo) + ", " +
                 std::to_string(hi) + "], got " + v->dump());
  return n;
}

bool bool_field(const json &body, const char *key, bool fallback) {
  const json *v = field(body, key);
  if (!v)
    return fallback;
  if (!v->is_boolean())
    bad(key, std::string("'") + key + "' must be a boolean");
  return v->get<bool>();
}

json parse_body(const std::string &body) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::parse_error &e) {
    throw ApiError(400, std::string("the request body is not valid JSON: ") + e.what());
  }
  if (!j.is_object())
    throw ApiError(400, "the request body must be a JSON object");
  return j;
}

/// The fields both endpoints share: model, n, stream, sampling, stop, seed.
OpenAiRequest common_fields(const json &body, const ModelInfo &model, bool chat) {
  const json *m = field(body, "model");
  if (!m || !m->is_string())
    bad("model", "'model' is required and must be a string");
  if (m->get<std::string>() != model.name)
    throw ApiError(404, "The model '" + m->get<std::string>() + "' does not exist; this server "
                   "serves '" + model.name + "'", "model");
  if (int_in(body, "n", 1, 1, 1 << 20) != 1)
    bad("n", "'n' must be 1: one completion per request");
  if (int_in(body, "best_of", 1, 1, 1 << 20) != 1)
    bad("best_of", "'best_of' is not supported (it must be 1)");
  if (bool_field(body, "echo", false))
    bad("echo", "'echo' is not supported");
  if (const json *lb = field(body, "logit_bias"); lb && !(lb->is_object() && lb->empty()))
    bad("logit_bias", "'logit_bias' is not supported");

  OpenAiRequest r;
  r.chat = chat;
  r.stream = bool_field(body, "stream", false);
  if (const json *so = field(body, "stream_options")) {
    if (!so->is_object())
      bad("stream_options", "'stream_options' must be an object");
    if (!r.stream)
      bad("stream_options", "'stream_options' is only allowed when 'stream' is true");
    r.include_usage = bool_field(*so, "include_usage", false);
  }
  SamplerOptions &s = r.generation.sampling;
  s.temperature = static_cast<float>(number_in(body, "temperature", 1.0, 0, 2));
  s.top_p = static_cast<float>(number_in(body, "top_p", 1.0, 0, 1, /*lo_open=*/true));
  const std::int64_t top_k = int_in(body, "top_k", 0, -1, INT32_MAX);
  s.top_k = top_k < 0 ? 0 : static_cast<int>(top_k); // -1: off, as in vLLM
  s.min_p = static_cast<float>(number_in(body, "min_p", 0, 0, 1));
  s.presence_penalty = static_cast<float>(number_in(body, "presence_penalty", 0, -2, 2));
  s.frequency_penalty = static_cast<float>(number_in(body, "frequency_penalty", 0, -2, 2));
  s.repetition_penalty =
      static_cast<float>(number_in(body, "repetition_penalty", 1, 0, 1e6, /*lo_open=*/true));
  if (const json *seed = field(body, "seed")) {
    if (!seed->is_number_integer())
      bad("seed", "'seed' must be an integer");
    s.seed = seed->is_number_unsigned() ? seed->get<std::uint64_t>()
                                        : static_cast<std::uint64_t>(seed->get<std::int64_t>());
  } else {
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    s.seed = rng();
  }
  if (const json *stop = field(body, "stop")) {
    if (stop->is_string()) {
      r.stop.push_back(stop->get<std::string>());
    } else if (stop->is_array() && stop->size() <= 4) {
      for (const json &x : *stop) {
        if (!x.is_string())
          bad("stop", "'stop' must be a string or an array of up to 4 strings");
        r.stop.push_back(x.get<std::string>());
      }
    } else {
      bad("stop", "'stop' must be a string or an array of up to 4 strings");
    }
    for (const std::string &x : r.stop)
      if (x.empty())
        bad("stop", "a stop string must not be empty");
  }
  return r;
}

/// max_tokens: the request's, or the default; prompt + max_tokens must fit the context.
void set_max_tokens(OpenAiRequest &r, const json &body, const ModelInfo &model,
                    std::int64_t fallback) {
  const std::int64_t P = static_cast<std::int64_t>(r.generation.prompt.size());
  std::int64_t max_tokens = int_in(body, "max_tokens", -1, 1, INT32_MAX);
  if (r.chat && max_tokens < 0)
    max_tokens = int_in(body, "max_completion_tokens", -1, 1, INT32_MAX);
  const bool given = max_tokens > 0;
  if (!given) {
    const std::int64_t room = model.pool_positions > 0
                                  ? std::min(model.max_seq_len, model.pool_positions)
                                  : model.max_seq_len;
    // A prompt that leaves no room in the pool is refused by the scheduler (TooLarge).
    max_tokens = fallback > 0 ? fallback : std::max<std::int64_t>(1, room - P);
  }
  if (P >= model.max_seq_len || (given && P + max_tokens > model.max_seq_len))
    bad(given ? "max_tokens" : "messages",
        "This model's maximum context length is " + std::to_string(model.max_seq_len) +
            " tokens. However, you requested " + std::to_string(P + (given ? max_tokens : 1)) +
            " tokens (" + std::to_string(P) + " in the prompt, " +
            std::to_string(given ? max_tokens : 1) + " for the completion).");
  r.generation.max_tokens = std::min(max_tokens, model.max_seq_len - P);
}

std::string message_text(const json &msg, std::size_t index) {
  const std::string where = "messages[" + std::to_string(index) + "]";
  const json *c = field(msg, "content");
  if (c && c->is_string())
    return c->get<std::string>();
  if (c && c->is_array()) { // [{"type": "text", "text": ...}, ...]
    std::string text;
    for (const json &part : *c) {
      if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
          !part["text"].is_string())
        bad(where + ".content", where + ".content: only text parts are supported");
      text += part["text"].get<std::string>();
    }
    return text;
  }
  bad(where + ".content", where + ".content must be a string or an array of text parts");
}

} // namespace

json error_json(int status, const std::string &message, const std::string &param) {
  return {{"error",
           {{"message", message},
            {"type", error_type(status)},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", nullptr}}}};
}

std::vector<std::int32_t> render_chat(const json &messages, const ModelInfo &model) {
  if (!messages.is_array() || messages.empty())
    bad("messages", "'messages' must be a non-empty array");
  std::optional<std::string> system;
  std::vector<std::int32_t> ids = {model.config.bos_token_id};
  std::string expect = "user"; // the role the template needs next
  bool first_user = true;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const json &msg = messages[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!msg.is_object() || !msg.contains("role") || !msg["role"].is_string())
      bad(where, where + " must be an object with a string 'role'");
    const std::string role = msg["role"].get<std::string>();
    const std::string text = message_text(msg, i);
    if (role == "system" || role == "developer") {
      if (i != 0)
        bad(where, "the Mixtral-Instruct template takes one system message, first; " + where +
                       " is a system message");
      system = text;
      continue;
    }
    if (role != "user" && role != "assistant")
      bad(where, where + ": role '" + role + "' is not supported (system, user, assistant)");
    if (role != expect)
      bad(where, "the Mixtral-Instruct template needs user and assistant messages alternating, "
                 "starting with user; " + where + " is '" + role + "'");
    std::vector<std::int32_t> part;
    if (role == "user") {
      part = model.tokenizer->encode(
          driver::instruct_turn(text, first_user ? system : std::nullopt), std::nullopt);
      first_user = false;
      expect = "assistant";
    } else {
      part = model.tokenizer->encode(text, std::nullopt);
      part.push_back(model.config.eos_token_id);
      expect = "user";
    }
    ids.insert(ids.end(), part.begin(), part.end());
  }
  if (expect != "assistant")
    bad("messages", "the last message must be from the user (the template cannot continue an "
                    "assistant message)");
  return ids;
}

OpenAiRequest parse_completion(const std::string &text, const ModelInfo &model) {
  const json body = parse_body(text);
  OpenAiRequest r = common_fields(body, model, /*chat=*/false);
  const json *p = field(body, "prompt");
  if (!p)
    bad("prompt", "'prompt' is required");
  const json *one = p;
  if (p->is_array() && !p->empty() && (p->at(0).is_string() || p->at(0).is_array())) {
    if (p->size() != 1)
      bad("prompt", "one prompt per request ('n' prompts in one request are not supported)");
    one = &p->at(0);
  }
  std::vector<std::int32_t> &ids = r.generation.prompt;
  if (one->is_string()) {
    ids = model.tokenizer->encode(one->get<std::string>(), model.config.bos_token_id);
  } else if (one->is_array() && !one->empty()) {
    for (const json &x : *one) {
      if (!x.is_number_integer() || x.get<std::int64_t>() < 0 ||
          x.get<std::int64_t>() >= model.config.vocab_size)
        bad("prompt", "token ids in 'prompt' must be integers in [0, " +
                          std::to_string(model.config.vocab_size) + ")");
      ids.push_back(static_cast<std::int32_t>(x.get<std::int64_t>()));
    }
  } else {
    bad("prompt", "'prompt' must be a string or a non-empty array of token ids");
  }
  r.generation.top_logprobs = static_cast<int>(int_in(body, "logprobs", -1, 0, 5));
  set_max_tokens(r, body, model, 16);
  return r;
}

OpenAiRequest parse_chat(const std::string &text, const ModelInfo &model) {
  const json body = parse_body(text);
  OpenAiRequest r = common_fields(body, model, /*chat=*/true);
  const json *messages = field(body, "messages");
  if (!messages)
    bad("messages", "'messages' is required");
  r.generation.prompt = render_chat(*messages, model);
  const bool logprobs = bool_field(body, "logprobs", false);
  const std::int64_t top = int_in(body, "top_logprobs", 0, 0, 20);
  if (field(body, "top_logprobs") && !logprobs)
    bad("top_logprobs", "'top_logprobs' needs 'logprobs': true");
  r.generation.top_logprobs = logprobs ? static_cast<int>(top) : -1;
  set_max_tokens(r, body, model, -1);
  return r;
}

namespace {

json bytes_of(const std::string &s) {
  json b = json::array();
  for (unsigned char c : s)
    b.push_back(static_cast<int>(c));
  return b;
}

json logprobs_json(const OpenAiRequest &r, const std::vector<TokenView> &tokens) {
  if (r.generation.top_logprobs < 0)
    return nullptr;
  if (r.chat) {
    json content = json::array();
    for (const TokenView &t : tokens) {
      json top = json::array();
      for (const auto &[text, lp] : t.top)
        top.push_back({{"token", text}, {"logprob", lp}, {"bytes", bytes_of(text)}});
      content.push_back({{"token", t.text},
                         {"logprob", t.logprob},
                         {"bytes", bytes_of(t.text)},
                         {"top_logprobs", top}});
    }
    return {{"content", content}, {"refusal", nullptr}};
  }
  json toks = json::array(), lps = json::array(), tops = json::array(), offs = json::array();
  for (const TokenView &t : tokens) {
    toks.push_back(t.text);
    lps.push_back(t.logprob);
    json top = json::object();
    for (const auto &[text, lp] : t.top)
      top[text] = lp; // alternatives with the same text keep the more likely one (listed first)
    tops.push_back(top);
    offs.push_back(t.offset);
  }
  return {{"tokens", toks}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offs}};
}

json usage_json(Usage u) {
  return {{"prompt_tokens", u.prompt},
          {"completion_tokens", u.completion},
          {"total_tokens", u.prompt + u.completion}};
}

json choice_json(const OpenAiRequest &r, const std::string &text,
                 const std::vector<TokenView> &tokens, const char *finish, bool delta,
                 bool first) {
  json c = {{"index", 0}, {"logprobs", logprobs_json(r, tokens)},
            {"finish_reason", finish ? json(finish) : json(nullptr)}};
  if (!r.chat) {
    c["text"] = text;
  } else if (delta) {
    json d = json::object();
    if (first)
      d["role"] = "assistant";
    if (first || !text.empty())
      d["content"] = text;
    c["delta"] = d;
  } else {
    c["message"] = {{"role", "assistant"}, {"content", text}};
  }
  return c;
}

} // namespace

json response_json(const OpenAiRequest &r, const std::string &id, std::int64_t created,
                   const std::string &model, const std::string &text,
                   const std::vector<TokenView> &tokens, const char *finish, Usage usage) {
  return {{"id", id},
          {"object", r.chat ? "chat.completion" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", json::array({choice_json(r, text, tokens, finish, false, false)})},
          {"usage", usage_json(usage)}};
}

json chunk_json(const OpenAiRequest &r, const std::string &id, std::int64_t created,
                const std::string &model, const std::string &text,
                const std::vector<TokenView> &tokens, const char *finish, bool first) {
  json j = {{"id", id},
            {"object", r.chat ? "chat.completion.chunk" : "text_completion"},
            {"created", created},
            {"model", model},
            {"choices", json::array({choice_json(r, text, tokens, finish, true, first)})}};
  if (r.include_usage)
    j["usage"] = nullptr; // OpenAI: null on every chunk but the last
  return j;
}

json usage_chunk_json(const OpenAiRequest &r, const std::string &id, std::int64_t created,
                      const std::string &model, Usage usage) {
  return {{"id", id},
          {"object", r.chat ? "chat.completion.chunk" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", json::array()},
          {"usage", usage_json(usage)}};
}

} // namespace moec::openai
