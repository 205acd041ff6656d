// scheduler_test.cpp — continuous batching against a FAKE STEP (a test double for moec_step).
//
// The fake keeps a paged "KV pool" of token ids: each row writes its token at its position
// through its block table, then every logits row reads its whole prefix back through the
// table. The next token is a hash of that prefix, so a wrong block table, a position written
// twice or read before it was written, or a recompute that differs shows up in the tokens.
// Token 99 anywhere in a prefix makes the fake predict EOS (2).
#include "moec/error.h"
#include "moec/metrics.h"
#include "moec/scheduler.h"

#include <gtest/gtest.h>

#include <limits>
#include <map>

namespace moec {
namespace {

constexpr std::int64_t kVocab = 128, kBlock = 4, kSeqLen = 64;

struct FakeStep {
  std::vector<std::int32_t> pool; // [n_blocks * B] token ids, -1 = never written
  int bad_reads = 0;
  std::vector<std::int64_t> rows_per_step, seqs_with_logits;
  bool fail = false;

  explicit FakeStep(std::int64_t n_blocks) : pool(static_cast<std::size_t>(n_blocks * kBlock), -1) {}

  std::int32_t &slot(const std::int32_t *table, std::int64_t pos) {
    return pool[static_cast<std::size_t>(table[pos / kBlock] * kBlock + pos % kBlock)];
  }
  void operator()(StepBatch &b) {
    if (fail)
      throw Error("step failed");
    const std::int64_t MB = blocks_for(kSeqLen, kBlock);
    rows_per_step.push_back(b.n_rows());
    seqs_with_logits.push_back(static_cast<std::int64_t>(b.logit_rows.size()));
    for (std::int64_t r = 0; r < b.n_rows(); ++r) // all rows' K/V first
      slot(&b.block_tables[static_cast<std::size_t>(r * MB)], b.positions[r]) = b.tokens[r];
    for (std::size_t i = 0; i < b.logit_rows.size(); ++i) {
      const std::int64_t r = b.logit_rows[i];
      const std::int32_t *table = &b.block_tables[static_cast<std::size_t>(r * MB)];
      std::uint64_t h = 1469598103934665603ull;
      bool eos = false;
      for (std::int64_t p = 0; p <= b.positions[r]; ++p) {
        const std::int32_t t = slot(table, p);
        bad_reads += t < 0;
        eos |= t == 99;
        h = (h ^ static_cast<std::uint64_t>(t)) * 1099511628211ull;
      }
      const std::int32_t next = eos ? 2 : static_cast<std::int32_t>(3 + h % 90); // never 99
      float *row = &b.logits[i * kVocab];
      for (std::int64_t v = 0; v < kVocab; ++v)
        row[v] = static_cast<float>(v % 7) * 0.1f; // some spread for the logprobs
      row[next] = 10.0f;
    }
  }
};

SchedulerOptions options(std::int64_t n_blocks, std::int64_t max_batch = 4,
                         std::int64_t step_tokens = 8, std::int64_t max_queue = 8) {
  SchedulerOptions o;
  o.max_batch = max_batch;
  o.max_queue = max_queue;
  o.step_tokens = step_tokens;
  o.n_blocks = n_blocks;
  o.block_size = kBlock;
  o.max_blocks_per_seq = blocks_for(kSeqLen, kBlock);
  o.max_seq_len = kSeqLen;
  o.vocab_size = kVocab;
  o.eos_id = 2;
  return o;
}

std::shared_ptr<Generation> request(std::vector<std::int32_t> prompt, std::int64_t max_tokens,
                                    float temperature = 0, std::uint64_t seed = 0) {
  GenerationRequest r;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  r.sampling.temperature = temperature;
  r.sampling.top_k = 0;
  r.sampling.top_p = 1;
  r.sampling.seed = seed;
  return std::make_shared<Generation>(std::move(r));
}

std::vector<std::int32_t> ids(const std::vector<GeneratedToken> &t) {
  std::vector<std::int32_t> out;
  for (const auto &g : t)
    out.push_back(g.id);
  return out;
}

/// Steps until every generation has finished; returns each one's tokens and finish reason.
struct Outcome {
  std::vector<std::int32_t> tokens;
  FinishReason reason = FinishReason::None;
};
std::vector<Outcome> run_all(Scheduler &s, const std::vector<std::shared_ptr<Generation>> &gens) {
  std::vector<Outcome> out(gens.size());
  for (int guard = 0; guard < 10000; ++guard) {
    const bool worked = s.step_once();
    bool all = true;
    for (std::size_t i = 0; i < gens.size(); ++i) {
      std::vector<GeneratedToken> t;
      FinishReason r = gens[i]->wait(t, std::chrono::milliseconds(0));
      auto got = ids(t);
      out[i].tokens.insert(out[i].tokens.end(), got.begin(), got.end());
      if (r != FinishReason::None)
        out[i].reason = r;
      all &= out[i].reason != FinishReason::None;
    }
    if (all || !worked)
      break;
  }
  return out;
}

/// One request alone in a big pool: the reference for the batched runs.
Outcome solo(const std::vector<std::int32_t> &prompt, std::int64_t max_tokens, float t = 0,
             std::uint64_t seed = 0) {
  FakeStep fake(64);
  Scheduler s(options(64), std::ref(fake));
  auto g = request(prompt, max_tokens, t, seed);
  EXPECT_EQ(s.submit(g), Scheduler::Admit::Ok);
  return run_all(s, {g})[0];
}

std::vector<std::int32_t> iota_prompt(std::int32_t first, std::int64_t n) {
  std::vector<std::int32_t> p;
  for (std::int64_t i = 0; i < n; ++i)
    p.push_back(static_cast<std::int32_t>(3 + (first + i) % 90));
  return p;
}

TEST(Scheduler, BatchedOutputsEqualSoloRuns) {
  const std::vector<std::vector<std::int32_t>> prompts = {
      iota_prompt(0, 3), iota_prompt(10, 21), iota_prompt(40, 1), iota_prompt(5, 9)};
  FakeStep fake(64);
  Scheduler s(options(64), std::ref(fake));
  std::vector<std::shared_ptr<Generation>> gens;
  for (const auto &p : prompts) {
    gens.push_back(request(p, 12));
    ASSERT_EQ(s.submit(gens.back()), Scheduler::Admit::Ok);
  }
  const auto out = run_all(s, gens);
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    SCOPED_TRACE(i);
    const Outcome ref = solo(prompts[i], 12);
    EXPECT_EQ(out[i].tokens, ref.tokens);
    EXPECT_EQ(out[i].tokens.size(), 12u);
    EXPECT_EQ(out[i].reason, FinishReason::Length);
  }
  EXPECT_EQ(fake.bad_reads, 0);
  EXPECT_EQ(s.snapshot().blocks_used, 0); // every block back
  // Several sequences shared steps.
  EXPECT_GT(*std::max_element(fake.seqs_with_logits.begin(), fake.seqs_with_logits.end()), 1);
}

// The 21-token prompt with an 8-token budget is prefilled over three steps, while a request
// that is already decoding gets its row in every one of them.
TEST(Scheduler, LongPromptIsChunkedAndInterleavedWithDecodes) {
  FakeStep fake(64);
  Scheduler s(options(64, 4, 8), std::ref(fake));
  auto a = request(iota_prompt(0, 2), 10);
  ASSERT_EQ(s.submit(a), Scheduler::Admit::Ok);
  s.step_once(); // a: prefill + first token
  auto b = request(iota_prompt(20, 21), 3);
  ASSERT_EQ(s.submit(b), Scheduler::Admit::Ok);
  for (int i = 0; i < 3; ++i)
    s.step_once();
  // Steps 2-4: a's decode row + 7 rows of b's prompt; step 4 ends b's prompt (21 = 7+7+7).
  EXPECT_EQ(fake.rows_per_step, (std::vector<std::int64_t>{2, 8, 8, 8}));
  EXPECT_EQ(fake.seqs_with_logits, (std::vector<std::int64_t>{1, 1, 1, 2}));
  const auto out = run_all(s, {a, b});
  EXPECT_EQ(out[1].tokens, solo(iota_prompt(20, 21), 3).tokens);
  std::vector<GeneratedToken> none;
  EXPECT_EQ(fake.bad_reads, 0);
}

// A pool of 10 blocks of 4 positions: three requests of 8-token prompts + 12 tokens (5 blocks
// each at the end) cannot all grow; the youngest is preempted, recomputed later, and every
// output still equals its solo run. Nothing crashes, nothing is lost.
TEST(Scheduler, OutOfBlocksPreemptsAndRecomputes) {
  FakeStep fake(10);
  Metrics metrics;
  Scheduler s(options(10, 4, 16), std::ref(fake), &metrics);
  std::vector<std::shared_ptr<Generation>> gens;
  for (int i = 0; i < 3; ++i) {
    gens.push_back(request(iota_prompt(7 * i, 8), 12));
    ASSERT_EQ(s.submit(gens.back()), Scheduler::Admit::Ok);
  }
  const auto out = run_all(s, gens);
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(out[i].tokens, solo(iota_prompt(7 * i, 8), 12).tokens);
    EXPECT_EQ(out[i].reason, FinishReason::Length);
  }
  EXPECT_EQ(fake.bad_reads, 0);
  EXPECT_NE(metrics.render({}).find("moec_preemptions_total "), std::string::npos);
  EXPECT_EQ(metrics.render({}).find("moec_preemptions_total 0\n"), std::string::npos);
  EXPECT_EQ(s.snapshot().blocks_used, 0);
}

TEST(Scheduler, CancelFreesBlocksAtTheNextStep) {
  FakeStep fake(16);
  Scheduler s(options(16), std::ref(fake));
  auto a = request(iota_prompt(0, 10), 40);
  auto b = request(iota_prompt(3, 4), 5);
  ASSERT_EQ(s.submit(a), Scheduler::Admit::Ok);
  s.step_once();
  s.step_once();
  EXPECT_GT(s.snapshot().blocks_used, 0);
  a->cancel(); // the client went away
  ASSERT_EQ(s.submit(b), Scheduler::Admit::Ok);
  s.step_once();
  std::vector<GeneratedToken> t;
  EXPECT_EQ(a->wait(t, std::chrono::milliseconds(0)), FinishReason::Cancelled);
  EXPECT_EQ(s.snapshot().running, 1); // only b
  EXPECT_EQ(s.snapshot().blocks_used, 1); // b: 4 positions written, 1 block
  const auto out = run_all(s, {b});
  EXPECT_EQ(out[0].tokens, solo(iota_prompt(3, 4), 5).tokens);
  EXPECT_EQ(s.snapshot().blocks_used, 0);
}

// B = 4: a second request whose first 12 tokens equal the first's takes its 3 computed blocks
// and prefills only its own tail; both outputs still equal their solo runs. With sharing off
// the same requests compute everything.
TEST(Scheduler, CommonPrefixBlocksAreShared) {
  std::vector<std::int32_t> common = iota_prompt(30, 12), pa = common, pb = common;
  pa.insert(pa.end(), {5, 6});
  pb.insert(pb.end(), {7, 8, 9});
  for (bool share : {true, false}) {
    SCOPED_TRACE(share);
    FakeStep fake(32);
    Metrics metrics;
    SchedulerOptions o = options(32, 4, 64);
    o.share_prefixes = share;
    Scheduler s(o, std::ref(fake), &metrics);
    auto a = request(pa, 6), b = request(pb, 6);
    ASSERT_EQ(s.submit(a), Scheduler::Admit::Ok);
    s.step_once(); // a: 14 rows, its first 3 blocks registered
    ASSERT_EQ(s.submit(b), Scheduler::Admit::Ok);
    s.step_once(); // a's decode row + b's rows
    EXPECT_EQ(fake.rows_per_step[1], share ? 1 + 3 : 1 + 15);
    EXPECT_EQ(s.snapshot().blocks_used, share ? 4 + 1 : 4 + 4);
    const auto out = run_all(s, {a, b});
    EXPECT_EQ(out[0].tokens, solo(pa, 6).tokens);
    EXPECT_EQ(out[1].tokens, solo(pb, 6).tokens);
    EXPECT_EQ(fake.bad_reads, 0);
    EXPECT_EQ(s.snapshot().blocks_used, 0);
    EXPECT_NE(metrics.render({}).find(share ? "moec_prefix_blocks_reused_total 3\n"
                                            : "moec_prefix_blocks_reused_total 0\n"),
              std::string::npos);
  }
}

// A prompt that is exactly a shared prefix still computes its last token (for the logits);
// a block freed by its last holder stays cached and is offered to the next request.
TEST(Scheduler, SharedPrefixKeepsTheLastTokenAndOutlivesItsHolders) {
  FakeStep fake(32);
  Scheduler s(options(32, 4, 64), std::ref(fake));
  const std::vector<std::int32_t> p = iota_prompt(50, 8); // exactly 2 blocks
  auto a = request(p, 3);
  ASSERT_EQ(s.submit(a), Scheduler::Admit::Ok);
  s.step_once();
  auto b = request(p, 3);
  ASSERT_EQ(s.submit(b), Scheduler::Admit::Ok);
  s.step_once();
  EXPECT_EQ(fake.rows_per_step[1], 1 + 4); // b shares block 0 only: positions 4..7 computed
  run_all(s, {a, b});
  EXPECT_EQ(s.snapshot().blocks_used, 0);
  EXPECT_GT(s.snapshot().blocks_cached, 0);
  auto c = request(p, 3); // a and b are gone: their blocks are cached
  ASSERT_EQ(s.submit(c), Scheduler::Admit::Ok);
  s.step_once();
  EXPECT_EQ(fake.rows_per_step.back(), 4);
  EXPECT_EQ(run_all(s, {c})[0].tokens, solo(p, 3).tokens);
  EXPECT_EQ(fake.bad_reads, 0);
}

// B = 4: a request that finished leaves its full blocks cached; a later one with the same
// 12-token prefix revives 3 of them and prefills only its tail, with the same tokens as alone.
// With sharing off it computes everything.
TEST(Scheduler, FinishedRequestsPrefixIsReusedFromTheCache) {
  std::vector<std::int32_t> common = iota_prompt(30, 12), pa = common, pb = common;
  pa.insert(pa.end(), {5, 6});
  pb.insert(pb.end(), {7, 8, 9});
  for (bool share : {true, false}) {
    SCOPED_TRACE(share);
    FakeStep fake(32);
    Metrics metrics;
    SchedulerOptions o = options(32, 4, 64);
    o.share_prefixes = share;
    Scheduler s(o, std::ref(fake), &metrics);
    auto a = request(pa, 6);
    ASSERT_EQ(s.submit(a), Scheduler::Admit::Ok);
    EXPECT_EQ(run_all(s, {a})[0].tokens, solo(pa, 6).tokens);
    // 14 + 6 tokens, 19 computed: 4 full blocks, 1 partial one (freed).
    EXPECT_EQ(s.snapshot().blocks_used, 0);
    EXPECT_EQ(s.snapshot().blocks_cached, share ? 4 : 0);
    auto b = request(pb, 6);
    ASSERT_EQ(s.submit(b), Scheduler::Admit::Ok);
    s.step_once();
    EXPECT_EQ(fake.rows_per_step.back(), share ? 3 : 15);
    EXPECT_EQ(s.snapshot().blocks_cached, share ? 1 : 0); // a's 4th block: not b's prefix
    EXPECT_EQ(run_all(s, {b})[0].tokens, solo(pb, 6).tokens);
    EXPECT_EQ(fake.bad_reads, 0);
    const std::string text = metrics.render({});
    EXPECT_NE(text.find(share ? "moec_prefix_tokens_reused_total 12\n"
                              : "moec_prefix_tokens_reused_total 0\n"),
              std::string::npos);
    EXPECT_NE(text.find(share ? "moec_prefix_cache_blocks_revived_total 3\n"
                              : "moec_prefix_cache_blocks_revived_total 0\n"),
              std::string::npos);
  }
}

// A pool of 8 blocks: two finished requests leave 2 cached blocks each (P1's older); a third
// needs 6 blocks with 4 free, so it evicts 2: P1's, not P2's. Afterwards P2 still hits and P1
// is computed again, both with their solo tokens.
TEST(Scheduler, CachedBlocksAreEvictedLeastRecentlyUsedFirst) {
  FakeStep fake(8);
  Metrics metrics;
  Scheduler s(options(8, 4, 64), std::ref(fake), &metrics);
  const std::vector<std::int32_t> p1 = iota_prompt(0, 9), p2 = iota_prompt(40, 9),
                                  q = iota_prompt(70, 17);
  for (const auto &p : {p1, p2}) { // 9 + 2 tokens, 10 computed: 2 full blocks cached
    auto g = request(p, 2);
    ASSERT_EQ(s.submit(g), Scheduler::Admit::Ok);
    run_all(s, {g});
  }
  EXPECT_EQ(s.snapshot().blocks_cached, 4);
  auto g = request(q, 6); // 23 tokens, 22 computed: 6 blocks
  ASSERT_EQ(s.submit(g), Scheduler::Admit::Ok);
  EXPECT_EQ(run_all(s, {g})[0].tokens, solo(q, 6).tokens);
  EXPECT_NE(metrics.render({}).find("moec_kv_blocks_evicted_total 2\n"), std::string::npos);
  auto again2 = request(p2, 2);
  ASSERT_EQ(s.submit(again2), Scheduler::Admit::Ok);
  s.step_once();
  EXPECT_EQ(fake.rows_per_step.back(), 1); // P2's 2 blocks revived
  EXPECT_EQ(run_all(s, {again2})[0].tokens, solo(p2, 2).tokens);
  auto again1 = request(p1, 2);
  ASSERT_EQ(s.submit(again1), Scheduler::Admit::Ok);
  s.step_once();
  EXPECT_EQ(fake.rows_per_step.back(), 9); // P1's were evicted
  EXPECT_EQ(run_all(s, {again1})[0].tokens, solo(p1, 2).tokens);
  EXPECT_EQ(fake.bad_reads, 0);
}

// Every block cached: a request that needs the whole pool is still admitted at once (the
// cache gives way, as a pool without one would serve it) and computes its solo tokens.
TEST(Scheduler, WholePoolRequestEvictsTheCache) {
  FakeStep fake(8);
  Metrics metrics;
  Scheduler s(options(8, 4, 64), std::ref(fake), &metrics);
  auto a = request(iota_prompt(0, 28), 2); // 30 tokens, 29 computed: 7 full blocks cached
  ASSERT_EQ(s.submit(a), Scheduler::Admit::Ok);
  run_all(s, {a});
  EXPECT_EQ(s.snapshot().blocks_cached, 7);
  auto b = request(iota_prompt(50, 30), 2); // 32 positions: every block
  ASSERT_EQ(s.submit(b), Scheduler::Admit::Ok);
  s.step_once();
  EXPECT_EQ(s.snapshot().running, 1);
  EXPECT_EQ(fake.rows_per_step.back(), 30);
  const auto out = run_all(s, {b});
  EXPECT_EQ(out[0].tokens, solo(iota_prompt(50, 30), 2).tokens);
  EXPECT_EQ(out[0].reason, FinishReason::Length);
  EXPECT_NE(metrics.render({}).find("moec_kv_blocks_evicted_total 7\n"), std::string::npos);
  EXPECT_EQ(fake.bad_reads, 0);
}

// Many requests over three shared "system prompts" in a pool too small for them all: blocks
// are shared with running requests, revived from the cache, evicted, and sequences preempted,
// and every request's tokens (greedy and seeded) equal its solo run. The fake reads each
// prefix back through the block table, so a block reused with the wrong contents would change
// the tokens.
TEST(Scheduler, PrefixCacheUnderPressureKeepsEveryOutput) {
  const std::vector<std::vector<std::int32_t>> system = {
      iota_prompt(10, 10), iota_prompt(20, 13), iota_prompt(60, 8)};
  std::vector<std::vector<std::int32_t>> prompts;
  for (int i = 0; i < 18; ++i) {
    prompts.push_back(system[static_cast<std::size_t>(i % 3)]);
    const auto tail = iota_prompt(i * 7, 1 + i % 5);
    prompts.back().insert(prompts.back().end(), tail.begin(), tail.end());
  }
  FakeStep fake(14);
  Metrics metrics;
  Scheduler s(options(14, 3, 8), std::ref(fake), &metrics);
  std::vector<std::shared_ptr<Generation>> gens;
  auto max_tokens = [](int i) { return 3 + i % 4; };
  for (int i = 0; i < 18; ++i) {
    gens.push_back(request(prompts[static_cast<std::size_t>(i)], max_tokens(i),
                           i % 2 ? 5.0f : 0.0f, static_cast<std::uint64_t>(i)));
    ASSERT_EQ(s.submit(gens.back()), Scheduler::Admit::Ok);
    if (i % 4 == 3) // later ones arrive while earlier ones run or have finished
      for (int k = 0; k < 6; ++k)
        s.step_once();
  }
  const auto out = run_all(s, gens);
  for (int i = 0; i < 18; ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(out[static_cast<std::size_t>(i)].tokens,
              solo(prompts[static_cast<std::size_t>(i)], max_tokens(i), i % 2 ? 5.0f : 0.0f,
                   static_cast<std::uint64_t>(i))
                  .tokens);
  }
  EXPECT_EQ(fake.bad_reads, 0);
  EXPECT_EQ(s.snapshot().blocks_used, 0);
  const std::string text = metrics.render({});
  for (const char *zero : {"moec_prefix_cache_blocks_revived_total 0\n",
                           "moec_kv_blocks_evicted_total 0\n"})
    EXPECT_EQ(text.find(zero), std::string::npos) << zero << " (the test lost its pressure)";
}

TEST(Scheduler, EosStopsAndIsNotEmitted) {
  auto out = solo({5, 99, 6}, 10);
  EXPECT_TRUE(out.tokens.empty());
  EXPECT_EQ(out.reason, FinishReason::Stop);
}

TEST(Scheduler, ContextEndIsLength) {
  auto out = solo(iota_prompt(0, kSeqLen - 2), 2);
  EXPECT_EQ(out.tokens.size(), 2u);
  EXPECT_EQ(out.reason, FinishReason::Length);
}

TEST(Scheduler, QueueFullTooLargeAndDraining) {
  FakeStep fake(8);
  Scheduler s(options(8, /*max_batch=*/1, 8, /*max_queue=*/1), std::ref(fake));
  EXPECT_EQ(s.submit(request(iota_prompt(0, 30), 10)), Scheduler::Admit::TooLarge); // 10 blocks
  EXPECT_EQ(s.submit(request({5}, 3)), Scheduler::Admit::Ok);  // takes the free batch slot
  EXPECT_EQ(s.submit(request({6}, 3)), Scheduler::Admit::Ok);  // queued
  EXPECT_EQ(s.submit(request({7}, 3)), Scheduler::Admit::QueueFull);
  s.drain();
  EXPECT_EQ(s.submit(request({8}, 3)), Scheduler::Admit::Draining);
  EXPECT_THROW(s.submit(request({}, 3)), Error);
}

TEST(Scheduler, SeededSamplingIsBatchInvariant) {
  FakeStep fake(64);
  Scheduler s(options(64), std::ref(fake));
  // Temperature 1 over the fake's spread logits: the draws depend on the seed only.
  std::vector<std::shared_ptr<Generation>> gens;
  for (std::uint64_t seed : {1, 2, 3}) {
    gens.push_back(request(iota_prompt(static_cast<std::int32_t>(seed), 5), 10, 5.0f, seed));
    ASSERT_EQ(s.submit(gens.back()), Scheduler::Admit::Ok);
  }
  const auto out = run_all(s, gens);
  for (std::uint64_t seed : {1, 2, 3})
    EXPECT_EQ(out[seed - 1].tokens,
              solo(iota_prompt(static_cast<std::int32_t>(seed), 5), 10, 5.0f, seed).tokens);
  EXPECT_NE(out[0].tokens, solo(iota_prompt(1, 5), 10, 5.0f, 99).tokens);
}

TEST(Scheduler, StepErrorEndsItsRequests) {
  FakeStep fake(8);
  Scheduler s(options(8), std::ref(fake));
  auto g = request({5, 6}, 4);
  ASSERT_EQ(s.submit(g), Scheduler::Admit::Ok);
  fake.fail = true;
  s.step_once();
  std::vector<GeneratedToken> t;
  EXPECT_EQ(g->wait(t, std::chrono::milliseconds(0)), FinishReason::Error);
  EXPECT_EQ(g->error(), "step failed");
  EXPECT_EQ(s.snapshot().blocks_used, 0);
}

// Non-finite logits end that request with an error; the others in the step go on.
TEST(Scheduler, NonFiniteLogitsEndOnlyTheirRequest) {
  FakeStep fake(16);
  Scheduler s(options(16), [&](StepBatch &b) {
    fake(b);
    b.logits[0] = std::numeric_limits<float>::infinity(); // the first logits row only
  });
  auto a = request({5, 6}, 4), b = request({7}, 4);
  ASSERT_EQ(s.submit(a), Scheduler::Admit::Ok);
  ASSERT_EQ(s.submit(b), Scheduler::Admit::Ok);
  s.step_once();
  std::vector<GeneratedToken> t;
  EXPECT_EQ(a->wait(t, std::chrono::milliseconds(0)), FinishReason::Error);
  EXPECT_NE(a->error().find("not finite"), std::string::npos) << a->error();
  EXPECT_EQ(b->wait(t, std::chrono::milliseconds(0)), FinishReason::None);
  EXPECT_EQ(t.size(), 1u);
}

TEST(Scheduler, ThreadServesConcurrentSubmitters) {
  FakeStep fake(64);
  Scheduler s(options(64), std::ref(fake));
  s.start();
  std::vector<std::shared_ptr<Generation>> gens;
  for (int i = 0; i < 6; ++i) {
    gens.push_back(request(iota_prompt(i * 3, 4 + i), 8));
    ASSERT_EQ(s.submit(gens.back()), Scheduler::Admit::Ok);
  }
  for (int i = 0; i < 6; ++i) {
    std::vector<GeneratedToken> got;
    FinishReason r = FinishReason::None;
    for (int w = 0; w < 200 && r == FinishReason::None; ++w)
      r = gens[static_cast<std::size_t>(i)]->wait(got, std::chrono::milliseconds(50));
    EXPECT_EQ(r, FinishReason::Length);
    EXPECT_EQ(ids(got), solo(iota_prompt(i * 3, 4 + i), 8).tokens);
  }
  s.stop();
}

} // namespace
} // namespace moec
