// moec/sampler.h — picking the next token from a logits row.
//
// temperature 0 is greedy (argmax, lower index on ties). Otherwise: logits / temperature,
// keep the top_k largest (0 = all), softmax, keep the smallest prefix (by descending
// probability) whose mass reaches top_p, renormalise, draw. The RNG is mt19937_64 with our own
// double conversion, so a seed gives the same tokens with any standard library.
#pragma once

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace moec {

struct SamplerOptions {
  float temperature = 0.7f; // >= 0; 0 = greedy
  float top_p = 0.9f;       // in (0, 1]; 1 = off
  int top_k = 40;           // >= 0; 0 = off
  std::uint64_t seed = 0;
};

/// Throws moec::UsageError if an option is out of range.
void validate(const SamplerOptions &options);

class Sampler {
public:
  Sampler(const SamplerOptions &options, std::int64_t vocab_size);

  /// Picks a token id in [0, vocab_size) from logits[vocab_size]; throws on NaN logits.
  std::int32_t sample(const float *logits);

  /// Index of the largest logit, lower index on ties.
  static std::int32_t argmax(const float *logits, std::int64_t n);

private:
  double uniform(); // in [0, 1)

  SamplerOptions options_;
  std::int64_t vocab_size_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, std::int32_t>> candidates_; // scratch: (logit or prob, id)
};

} // namespace moec
