// moec/sampler.h — picking the next token from a logits row.
//
// Order of work (each step is off at its default):
//   1. penalties on the raw logits, over the tokens this sampler has seen:
//      repetition_penalty (Hugging Face / CTRL: a logit > 0 of a token in the context or in the
//      tokens sampled so far is divided by it, one <= 0 multiplied), then OpenAI's
//      presence_penalty and frequency_penalty (logit -= presence * [count > 0] +
//      frequency * count, counting only the tokens this sampler sampled, as vLLM does);
//   2. temperature 0 is greedy: argmax of the penalised logits, lower index on ties;
//   3. otherwise logits / temperature, keep the top_k largest (0 = all), softmax, keep the
//      smallest prefix (by descending probability) whose mass reaches top_p, then drop the
//      tokens whose probability is below min_p times the largest one, renormalise, draw.
// The RNG is mt19937_64 with our own double conversion, so a seed gives the same tokens with any
// standard library; each request of the server owns its Sampler, so its draws do not depend on
// what else is in the batch.
#pragma once

#include <cstdint>
#include <random>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace moec {

struct SamplerOptions {
  float temperature = 0.7f;       // >= 0; 0 = greedy
  float top_p = 0.9f;             // in (0, 1]; 1 = off
  int top_k = 40;                 // >= 0; 0 = off
  float min_p = 0.0f;             // in [0, 1]; 0 = off
  float presence_penalty = 0.0f;  // in [-2, 2]; 0 = off
  float frequency_penalty = 0.0f; // in [-2, 2]; 0 = off
  float repetition_penalty = 1.0f; // > 0; 1 = off
  std::uint64_t seed = 0;
};

/// Throws moec::UsageError if an option is out of range (the message names the CLI flag).
void validate(const SamplerOptions &options);

class Sampler {
public:
  Sampler(const SamplerOptions &options, std::int64_t vocab_size);

  /// Picks a token id in [0, vocab_size) from logits[vocab_size] and remembers it for the
  /// penalties; throws on NaN logits.
  std::int32_t sample(const float *logits);

  /// Tokens the repetition penalty also applies to (the prompt); ids outside the vocabulary
  /// are ignored.
  void add_context(const std::vector<std::int32_t> &ids);

  /// Index of the largest logit, lower index on ties.
  static std::int32_t argmax(const float *logits, std::int64_t n);

private:
  double uniform(); // in [0, 1)
  std::int32_t pick(const float *logits); // steps 2 and 3 of the header
  bool penalised() const;
  /// logits with the penalties applied, in penalised_.
  const float *apply_penalties(const float *logits);

  SamplerOptions options_;
  std::int64_t vocab_size_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, std::int32_t>> candidates_; // scratch: (logit or prob, id)
  std::vector<float> penalised_;                            // scratch: f32 [V]
  std::unordered_set<std::int32_t> context_;                // prompt and sampled ids
  std::unordered_map<std::int32_t, std::int64_t> counts_;   // sampled id -> times sampled
};

/// The log-probability of `chosen` under softmax(logits) (the model's own distribution, before
/// penalties and temperature, as OpenAI's and vLLM's logprobs are) and the `top` most likely
/// tokens with theirs, most likely first (lower id on ties).
struct TokenLogprobs {
  float chosen = 0;
  std::vector<std::pair<std::int32_t, float>> top;
};
TokenLogprobs token_logprobs(const float *logits, std::int64_t n, std::int32_t chosen, int top);

} // namespace moec
