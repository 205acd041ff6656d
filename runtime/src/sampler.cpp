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
  if (!(o.min_p >= 0 && o.min_p <= 1))
    throw UsageError("--min-p must be in [0, 1], got " + std::to_string(o.min_p));
  if (!(o.presence_penalty >= -2 && o.presence_penalty <= 2))
    throw UsageError("--presence-penalty must be in [-2, 2], got " +
                     std::to_string(o.presence_penalty));
  if (!(o.frequency_penalty >= -2 && o.frequency_penalty <= 2))
    throw UsageError("--frequency-penalty must be in [-2, 2], got " +
                     std::to_string(o.frequency_penalty));
  if (!(o.repetition_penalty > 0) || !std::isfinite(o.repetition_penalty))
    throw UsageError("--repeat-penalty must be a finite number > 0, got " +
                     std::to_string(o.repetition_penalty));
}

Sampler::Sampler(const SamplerOptions &options, std::int64_t vocab_size)
    : options_(options), vocab_size_(vocab_size), rng_(options.seed) {
  validate(options);
  if (vocab_size <= 0)
    throw Error("sampler: vocab_size must be positive");
  candidates_.reserve(static_cast<std::size_t>(vocab_size));
}

void Sampler::add_context(const std::vector<std::int32_t> &ids) {
  for (std::int32_t id : ids)
    if (id >= 0 && id < vocab_size_)
      context_.insert(id);
}

bool Sampler::penalised() const {
  return options_.repetition_penalty != 1 || options_.presence_penalty != 0 ||
         options_.frequency_penalty != 0;
}

const float *Sampler::apply_penalties(const float *logits) {
  penalised_.assign(logits, logits + vocab_size_);
  const float rep = options_.repetition_penalty;
  if (rep != 1)
    for (std::int32_t id : context_)
      penalised_[id] = penalised_[id] > 0 ? penalised_[id] / rep : penalised_[id] * rep;
  for (const auto &[id, count] : counts_)
    penalised_[id] -= options_.presence_penalty +
                      options_.frequency_penalty * static_cast<float>(count);
  return penalised_.data();
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
  if (penalised())
    logits = apply_penalties(logits);
  const std::int32_t id = pick(logits);
  context_.insert(id);
  ++counts_[id];
  return id;
}

std::int32_t Sampler::pick(const float *logits) {
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
  // min_p: probs[0] is the largest; keep those with at least min_p of it (always probs[0]).
  if (options_.min_p > 0)
    while (nucleus > 1 && probs[nucleus - 1] < options_.min_p * probs[0])
      --nucleus;
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

TokenLogprobs token_logprobs(const float *logits, std::int64_t n, std::int32_t chosen, int top) {
  // log softmax in double: logit - max - log(sum exp(logit - max)).
  const double max_logit = logits[Sampler::argmax(logits, n)];
  double sum = 0;
  for (std::int64_t i = 0; i < n; ++i)
    sum += std::exp(static_cast<double>(logits[i]) - max_logit);
  const double log_sum = std::log(sum);
  auto lp = [&](std::int32_t id) {
    return static_cast<float>(static_cast<double>(logits[id]) - max_logit - log_sum);
  };
  TokenLogprobs out;
  out.chosen = lp(chosen);
  if (top > 0) {
    std::vector<std::int32_t> ids(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i)
      ids[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i);
    const std::size_t k = std::min(static_cast<std::size_t>(top), ids.size());
    std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(k), ids.end(),
                      [&](std::int32_t a, std::int32_t b) {
                        return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
                      });
    for (std::size_t i = 0; i < k; ++i)
      out.top.emplace_back(ids[i], lp(ids[i]));
  }
  return out;
}

} // namespace moec
