// sampler_test.cpp — greedy ties, top-k/top-p support, determinism per seed, validation.
#include "moec/error.h"
#include "moec/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <set>

namespace moec {
namespace {

SamplerOptions opts(float t, float p, int k, std::uint64_t seed = 1) {
  SamplerOptions o;
  o.temperature = t;
  o.top_p = p;
  o.top_k = k;
  o.seed = seed;
  return o;
}

TEST(Sampler, GreedyIsArgmaxWithLowerIndexOnTies) {
  const std::vector<float> l = {0.5f, 3.0f, -1.0f, 3.0f, 2.9f};
  Sampler s(opts(0, 0.9f, 40), 5);
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(s.sample(l.data()), 1);
  EXPECT_EQ(Sampler::argmax(l.data(), 5), 1);
  const std::vector<float> neg = {-std::numeric_limits<float>::infinity(), -5.0f, -5.0f};
  EXPECT_EQ(Sampler::argmax(neg.data(), 3), 1);
}

TEST(Sampler, TopKRestrictsSupport) {
  const std::vector<float> l = {1.0f, 5.0f, 4.0f, 0.0f, 4.5f, 3.0f};
  Sampler s(opts(100.0f, 1.0f, 3), 6); // near-uniform over the kept set
  std::set<int> seen;
  for (int i = 0; i < 2000; ++i)
    seen.insert(s.sample(l.data()));
  EXPECT_EQ(seen, (std::set<int>{1, 2, 4}));
}

TEST(Sampler, TopKOneIsGreedyWithTies) {
  const std::vector<float> l = {2.0f, 7.0f, 7.0f};
  Sampler s(opts(1.0f, 1.0f, 1), 3);
  for (int i = 0; i < 100; ++i)
    EXPECT_EQ(s.sample(l.data()), 1);
}

TEST(Sampler, TopPRestrictsSupport) {
  // probabilities at T=1: 0.5, 0.25, 0.125, 0.125
  const std::vector<float> l = {std::log(0.5f), std::log(0.25f), std::log(0.125f),
                                std::log(0.125f)};
  Sampler s(opts(1.0f, 0.7f, 0), 4); // 0.5 < 0.7 <= 0.75: keep {0, 1}
  std::set<int> seen;
  int zeros = 0;
  for (int i = 0; i < 3000; ++i) {
    int t = s.sample(l.data());
    seen.insert(t);
    zeros += t == 0;
  }
  EXPECT_EQ(seen, (std::set<int>{0, 1}));
  EXPECT_NEAR(zeros / 3000.0, 2.0 / 3.0, 0.05); // renormalised 0.5 / 0.75
  Sampler tiny(opts(1.0f, 0.01f, 0), 4);       // always keeps at least the top token
  for (int i = 0; i < 50; ++i)
    EXPECT_EQ(tiny.sample(l.data()), 0);
}

// Frequencies follow softmax(logits / T): for logits {0, 1}, P(1) = 1 / (1 + e^(-1/T)) is
// 0.881 at T = 0.5 and 0.622 at T = 2 (0.731 if T were ignored). 4000 draws: sd < 0.008.
TEST(Sampler, TemperatureScalesLogits) {
  const std::vector<float> l = {0.0f, 1.0f};
  for (float t : {0.5f, 2.0f}) {
    SCOPED_TRACE(t);
    Sampler s(opts(t, 1.0f, 0, 7), 2);
    int ones = 0;
    for (int i = 0; i < 4000; ++i)
      ones += s.sample(l.data()) == 1;
    EXPECT_NEAR(ones / 4000.0, 1.0 / (1.0 + std::exp(-1.0 / t)), 0.03);
  }
}

TEST(Sampler, FullSupportWithoutFilters) {
  const std::vector<float> l = {0.0f, 0.0f, 0.0f, 0.0f};
  Sampler s(opts(1.0f, 1.0f, 0), 4);
  std::set<int> seen;
  for (int i = 0; i < 500; ++i)
    seen.insert(s.sample(l.data()));
  EXPECT_EQ(seen.size(), 4u);
}

TEST(Sampler, DeterministicPerSeed) {
  std::vector<float> l(100);
  for (int i = 0; i < 100; ++i)
    l[static_cast<std::size_t>(i)] = std::sin(static_cast<float>(i));
  auto draw = [&](std::uint64_t seed) {
    Sampler s(opts(0.8f, 0.95f, 50, seed), 100);
    std::vector<int> out;
    for (int i = 0; i < 64; ++i)
      out.push_back(s.sample(l.data()));
    return out;
  };
  EXPECT_EQ(draw(42), draw(42));
  EXPECT_NE(draw(42), draw(43));
}

TEST(Sampler, ValidatesOptions) {
  EXPECT_THROW(Sampler(opts(-0.1f, 0.9f, 40), 10), UsageError);
  EXPECT_THROW(Sampler(opts(1.0f, 0.0f, 40), 10), UsageError);
  EXPECT_THROW(Sampler(opts(1.0f, 1.01f, 40), 10), UsageError);
  EXPECT_THROW(Sampler(opts(1.0f, 0.9f, -1), 10), UsageError);
  EXPECT_THROW(Sampler(opts(std::nanf(""), 0.9f, 1), 10), UsageError);
  EXPECT_NO_THROW(Sampler(opts(0.0f, 1.0f, 0), 10));
}

// Penalties by hand: logits {2, 1, 0.5, -1}; token 0 sampled twice and token 3 once before.
// presence 0.5, frequency 1: token 0 -> 2 - 0.5 - 2 = -0.5, token 3 -> -1 - 0.5 - 1 = -2.5;
// greedy then picks token 1 (1.0) over token 2 (0.5).
TEST(Sampler, PresenceAndFrequencyPenalties) {
  SamplerOptions o = opts(0, 1.0f, 0);
  o.presence_penalty = 0.5f;
  o.frequency_penalty = 1.0f;
  Sampler s(o, 4);
  const std::vector<float> pick0 = {9, 0, 0, 0}, pick3 = {0, 0, 0, 9};
  EXPECT_EQ(s.sample(pick0.data()), 0);
  EXPECT_EQ(s.sample(pick0.data()), 0);
  EXPECT_EQ(s.sample(pick3.data()), 3);
  // Token 0's penalised logit is now 9 - 0.5 - 2 = 6.5 vs 7 for token 1.
  EXPECT_EQ(s.sample(std::vector<float>{9, 7, 0, 0}.data()), 1);
  // {2, 1, 0.5, -1}: token 0 -> -0.5 and token 1 (sampled once) -> 1 - 1.5 = -0.5: token 2 wins.
  EXPECT_EQ(s.sample(std::vector<float>{2, 1, 0.5f, -1}.data()), 2);
  // Without penalties the same history changes nothing.
  Sampler plain(opts(0, 1.0f, 0), 4);
  plain.sample(pick0.data());
  EXPECT_EQ(plain.sample(std::vector<float>{9, 7, 0, 0}.data()), 0);
}

// Repetition penalty 2 over the prompt {0, 1}: logit 3 -> 1.5 (divided), -1 -> -2 (multiplied).
TEST(Sampler, RepetitionPenaltyCoversThePrompt) {
  SamplerOptions o = opts(0, 1.0f, 0);
  o.repetition_penalty = 2.0f;
  Sampler s(o, 3);
  s.add_context({0, 1});
  EXPECT_EQ(s.sample(std::vector<float>{3, 0, 2}.data()), 2);     // 1.5 < 2
  Sampler t(o, 3);
  t.add_context({0, 1});
  EXPECT_EQ(t.sample(std::vector<float>{-1, -3, -1.5f}.data()), 2); // -2, -6 vs -1.5
}

// min_p 0.3 at T = 1: probabilities 0.5, 0.25, 0.125, 0.125; keep p >= 0.15: tokens {0, 1}.
TEST(Sampler, MinPDropsUnlikelyTokens) {
  SamplerOptions o = opts(1.0f, 1.0f, 0, 3);
  o.min_p = 0.3f;
  Sampler s(o, 4);
  const std::vector<float> l = {std::log(0.5f), std::log(0.25f), std::log(0.125f),
                                std::log(0.125f)};
  std::set<int> seen;
  int zeros = 0;
  for (int i = 0; i < 3000; ++i) {
    const int t = s.sample(l.data());
    seen.insert(t);
    zeros += t == 0;
  }
  EXPECT_EQ(seen, (std::set<int>{0, 1}));
  EXPECT_NEAR(zeros / 3000.0, 2.0 / 3.0, 0.05);
}

// log softmax of {0, ln 3}: probabilities 1/4 and 3/4.
TEST(Sampler, TokenLogprobs) {
  const std::vector<float> l = {0.0f, std::log(3.0f), -1e30f};
  TokenLogprobs lp = token_logprobs(l.data(), 3, 0, 2);
  EXPECT_NEAR(lp.chosen, std::log(0.25), 1e-6);
  ASSERT_EQ(lp.top.size(), 2u);
  EXPECT_EQ(lp.top[0].first, 1);
  EXPECT_NEAR(lp.top[0].second, std::log(0.75), 1e-6);
  EXPECT_EQ(lp.top[1].first, 0);
  EXPECT_TRUE(token_logprobs(l.data(), 3, 1, 0).top.empty());
}

TEST(Sampler, ValidatesPenaltiesAndMinP) {
  SamplerOptions o = opts(1.0f, 1.0f, 0);
  o.min_p = 1.5f;
  EXPECT_THROW(Sampler(o, 4), UsageError);
  o = opts(1.0f, 1.0f, 0);
  o.presence_penalty = 2.5f;
  EXPECT_THROW(Sampler(o, 4), UsageError);
  o = opts(1.0f, 1.0f, 0);
  o.repetition_penalty = 0;
  EXPECT_THROW(Sampler(o, 4), UsageError);
}

TEST(Sampler, NanLogitsAreAnError) {
  const std::vector<float> l = {0.0f, std::nanf(""), 1.0f};
  Sampler s(opts(0, 0.9f, 0), 3);
  EXPECT_THROW(s.sample(l.data()), Error);
}

} // namespace
} // namespace moec
