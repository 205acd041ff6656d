// sampler.cpp — Sampler.
#include "moec/sampler.h"

#include "moec/error.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace moec {

void validate(const SamplerOptions &o) {
  if (!(o.temperature >= 0) || !std::isfinite(o.temperature))
    throw UsageError("--temperature must be a finite number >= 0, got " +
                     std::to_string(o.temperature));
  if (!(o.top_p > 0 && o.top_p <= 1))
    throw UsageError("--top-p must be in (0, 1], got " + std::to_string(o.top_p));
  if (o.top_k < 0)
    throw UsageError("--top-k must be >= 0, got " + std::to_string(o.top_k));
}

Sampler::Sampler(const SamplerOptions &options, std::int64_t vocab_size)
    : options_(options), vocab_size_(vocab_size), rng_(options.seed) {
  validate(options);
  if (vocab_size <= 0)
    throw Error("sampler: vocab_size must be positive");
  candidates_.reserve(static_cast<std::size_t>(vocab_size));
}

double Sampler::uniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

std::int32_t Sampler::argmax(const float *logits, std::int64_t n) {
  std::int64_t best = 0;
  for (std::int64_t i = 1; i < n; ++i)
    if (logits[i] > logits[best])
      best = i;
  return static_cast<std::int32_t>(best);
}

std::int32_t Sampler::sample(const float *logits) {
  for (std::int64_t i = 0; i < vocab_size_; ++i)
    if (std::isnan(logits[i]))
      throw Error("sampler: logits contain NaN (at id " + std::to_string(i) + ")");
  if (options_.temperature == 0)
    return argmax(logits, vocab_size_);

  // Candidates sorted by descending logit, lower id first on ties.
  candidates_.clear();
  for (std::int64_t i = 0; i < vocab_size_; ++i)
    candidates_.emplace_back(logits[i], static_cast<std::int32_t>(i));
  auto before = [](const std::pair<float, std::int32_t> &a,
                   const std::pair<float, std::int32_t> &b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  };
  std::size_t keep = candidates_.size();
  if (options_.top_k > 0 && static_cast<std::size_t>(options_.top_k) < keep) {
    keep = static_cast<std::size_t>(options_.top_k);
    std::partial_sort(candidates_.begin(), candidates_.begin() + static_cast<std::ptrdiff_t>(keep),
                      candidates_.end(), before);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), before);
  }
  candidates_.resize(keep);

  // Softmax over the kept candidates, in double for a stable cumulative sum.
  const double max_logit = candidates_.front().first;
  if (!std::isfinite(max_logit)) // all -inf, or a +inf that owns all the mass
    return candidates_.front().second;
  std::vector<double> probs(keep);
  double sum = 0;
  for (std::size_t i = 0; i < keep; ++i) {
    probs[i] = std::exp((static_cast<double>(candidates_[i].first) - max_logit) /
                        static_cast<double>(options_.temperature));
    sum += probs[i];
  }
  // Nucleus: smallest prefix whose mass reaches top_p (at least one candidate).
  std::size_t nucleus = keep;
  if (options_.top_p < 1) {
    double cum = 0;
    for (std::size_t i = 0; i < keep; ++i) {
      cum += probs[i] / sum;
      if (cum >= options_.top_p) {
        nucleus = i + 1;
        break;
      }
    }
  }
  double mass = 0;
  for (std::size_t i = 0; i < nucleus; ++i)
    mass += probs[i];
  double r = uniform() * mass;
  for (std::size_t i = 0; i < nucleus; ++i) {
    r -= probs[i];
    if (r < 0)
      return candidates_[i].second;
  }
  return candidates_[nucleus - 1].second; // rounding left r >= 0
}

} // namespace moec
