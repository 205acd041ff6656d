// scheduler.cpp — Scheduler and Generation (see moec/scheduler.h for the policy).
#include "moec/scheduler.h"

#include "moec/error.h"
#include "moec/metrics.h"

#include <algorithm>
#include <cmath>

namespace moec {

using Clock = std::chrono::steady_clock;

const char *finish_reason_name(FinishReason r) {
  switch (r) {
  case FinishReason::Stop:
    return "stop";
  case FinishReason::Length:
    return "length";
  case FinishReason::Cancelled:
    return "cancelled";
  case FinishReason::Error:
    return "error";
  case FinishReason::None:
    break;
  }
  return "none";
}

// --- Generation ----------------------------------------------------------------------------------

Generation::Generation(GenerationRequest r) : request(std::move(r)), submitted(Clock::now()) {}

FinishReason Generation::wait(std::vector<GeneratedToken> &out, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait_for(lock, timeout, [&] { return !tokens_.empty() || finish_ != FinishReason::None; });
  out.insert(out.end(), tokens_.begin(), tokens_.end());
  tokens_.clear();
  return finish_;
}

std::string Generation::error() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return error_;
}

void Generation::push(GeneratedToken token) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    tokens_.push_back(std::move(token));
  }
  cv_.notify_all();
}

void Generation::finish(FinishReason reason, std::string error) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (finish_ != FinishReason::None)
      return;
    finish_ = reason;
    error_ = std::move(error);
  }
  cv_.notify_all();
}

// --- Scheduler -----------------------------------------------------------------------------------

/// A request the scheduler has taken in: its tokens so far, its cache blocks, its sampler.
struct Scheduler::Sequence {
  std::shared_ptr<Generation> gen;
  std::vector<std::int32_t> tokens; // prompt + generated
  std::int64_t computed = 0;        // positions [0, computed) hold K/V in `blocks`
  std::int64_t generated = 0;
  std::vector<std::int32_t> blocks; // block table
  Sampler sampler;
  std::uint64_t order = 0;          // admission order (preemption picks the largest)
  std::int64_t rows = 0;            // rows in the step being planned
  std::int64_t registered = 0;      // leading blocks already offered to the prefix registry
  std::int64_t revived = 0;         // of its shared blocks, those taken from the cache
  bool done = false;                // finished: removed after the step
  Clock::time_point last_token;

  Sequence(std::shared_ptr<Generation> g, std::int64_t vocab)
      : gen(std::move(g)), tokens(gen->request.prompt), sampler(gen->request.sampling, vocab) {
    sampler.add_context(tokens);
  }
  std::int64_t length() const { return static_cast<std::int64_t>(tokens.size()); }
};

Scheduler::Scheduler(const SchedulerOptions &options, StepFunction step, Metrics *metrics)
    : options_(options), step_(std::move(step)), metrics_(metrics), blocks_(options.n_blocks),
      block_key_(static_cast<std::size_t>(options.n_blocks), 0) {
  if (options.max_batch < 1 || options.step_tokens < options.max_batch ||
      options.block_size < 1 || options.max_seq_len < 1 || options.vocab_size < 1 ||
      options.max_blocks_per_seq < blocks_for(options.max_seq_len, options.block_size))
    throw Error("scheduler: inconsistent options");
}

Scheduler::~Scheduler() { stop(); }

Scheduler::Admit Scheduler::submit(std::shared_ptr<Generation> g) {
  const GenerationRequest &r = g->request;
  if (r.prompt.empty() || r.max_tokens < 1 ||
      static_cast<std::int64_t>(r.prompt.size()) + r.max_tokens > options_.max_seq_len)
    throw Error("scheduler: request outside the context (callers check this first)");
  const std::int64_t need =
      blocks_for(static_cast<std::int64_t>(r.prompt.size()) + r.max_tokens, options_.block_size);
  if (need > options_.n_blocks)
    return Admit::TooLarge;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (draining_ || stopping_)
      return Admit::Draining;
    // The queue holds max_queue requests beyond those the batch will take at its next step.
    const std::int64_t free_slots = std::max<std::int64_t>(0, options_.max_batch - running_count_);
    if (static_cast<std::int64_t>(waiting_.size()) >= options_.max_queue + free_slots)
      return Admit::QueueFull;
    waiting_.push_back(std::make_unique<Sequence>(std::move(g), options_.vocab_size));
  }
  wake_.notify_all();
  return Admit::Ok;
}

void Scheduler::start() {
  thread_ = std::thread([this] { loop(); });
}

void Scheduler::drain() {
  std::lock_guard<std::mutex> lock(mutex_);
  draining_ = true;
}

void Scheduler::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable())
    thread_.join();
  // Whatever is left is cancelled; the blocks go back with the scheduler.
  for (auto &s : running_)
    finish(*s, FinishReason::Cancelled);
  running_.clear();
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto &s : waiting_)
    s->gen->finish(FinishReason::Cancelled);
  waiting_.clear();
}

Scheduler::Snapshot Scheduler::snapshot() const {
  Snapshot s;
  s.running = running_count_;
  s.blocks_used = blocks_used_;
  s.blocks_cached = blocks_cached_;
  s.blocks_total = options_.n_blocks;
  std::lock_guard<std::mutex> lock(mutex_);
  s.waiting = static_cast<std::int64_t>(waiting_.size());
  return s;
}

void Scheduler::loop() {
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (stopping_)
        return;
    }
    if (step_once())
      continue;
    // Nothing to run: sleep until a request arrives (or a while, to notice cancellations).
    std::unique_lock<std::mutex> lock(mutex_);
    wake_.wait_for(lock, std::chrono::milliseconds(50),
                   [&] { return stopping_ || !waiting_.empty(); });
  }
}

namespace {
/// FNV-1a over the block before (-1 for the first) and the block's tokens.
std::uint64_t block_hash(std::int32_t parent, const std::int32_t *tokens, std::int64_t n) {
  std::uint64_t h = 1469598103934665603ull;
  auto mix = [&](std::uint32_t v) {
    for (int i = 0; i < 4; ++i, v >>= 8)
      h = (h ^ (v & 0xff)) * 1099511628211ull;
  };
  mix(static_cast<std::uint32_t>(parent));
  for (std::int64_t i = 0; i < n; ++i)
    mix(static_cast<std::uint32_t>(tokens[i]));
  return h;
}
} // namespace

void Scheduler::share_prefix(Sequence &s) {
  if (!options_.share_prefixes)
    return;
  const std::int64_t B = options_.block_size;
  const std::int64_t max_shared = (s.length() - 1) / B; // the last token is always computed
  std::int32_t parent = -1;
  for (std::int64_t i = 0; i < max_shared; ++i) {
    const std::int32_t *t = s.tokens.data() + i * B;
    auto it = prefixes_.find(block_hash(parent, t, B));
    if (it == prefixes_.end() || it->second.parent != parent ||
        !std::equal(it->second.tokens.begin(), it->second.tokens.end(), t))
      break;
    if (blocks_.is_cached(it->second.block))
      ++s.revived;
    blocks_.retain(it->second.block); // in use by a running sequence, or revived from the cache
    s.blocks.push_back(it->second.block);
    parent = it->second.block;
  }
  s.computed = static_cast<std::int64_t>(s.blocks.size()) * B;
  s.registered = static_cast<std::int64_t>(s.blocks.size());
}

void Scheduler::register_blocks(Sequence &s) {
  if (!options_.share_prefixes)
    return;
  const std::int64_t B = options_.block_size, full = s.computed / B;
  for (std::int64_t i = s.registered; i < full; ++i) {
    const std::int32_t block = s.blocks[static_cast<std::size_t>(i)];
    if (blocks_.cacheable(block))
      continue; // registered already: shared with s, or s's own from an earlier step
    const std::int32_t parent = i ? s.blocks[static_cast<std::size_t>(i - 1)] : -1;
    const std::int32_t *t = s.tokens.data() + i * B;
    const std::uint64_t key = block_hash(parent, t, B);
    // A chain is registered from its start only: an entry names its parent block, which must
    // stay registered (so not reused for other tokens) as long as the entry exists. The same
    // content computed in another block (two requests prefilled at once) ends s's chain.
    if ((parent >= 0 && !blocks_.cacheable(parent)) || prefixes_.count(key))
      break;
    prefixes_.emplace(key, PrefixEntry{block, parent, std::vector<std::int32_t>(t, t + B)});
    block_key_[static_cast<std::size_t>(block)] = key;
    blocks_.set_cacheable(block);
  }
  s.registered = std::max(s.registered, full);
}

void Scheduler::release_blocks(Sequence &s) {
  // Registered blocks stay cached for a later request with the same prefix (their registry
  // entries go when allocate() evicts them); the others are free at once.
  blocks_.release(s.blocks);
  s.registered = 0;
  s.revived = 0;
}

bool Scheduler::allocate(std::int64_t n, std::vector<std::int32_t> &table) {
  evicted_.clear();
  if (!blocks_.allocate(n, table, &evicted_))
    return false;
  // An evicted block's children were evicted before it (release() caches a sequence's blocks
  // last first, and a child is only ever held together with its parent), so no entry is left
  // naming it as its parent.
  for (std::int32_t b : evicted_)
    prefixes_.erase(block_key_[static_cast<std::size_t>(b)]);
  if (metrics_ && !evicted_.empty())
    metrics_->on_eviction(static_cast<std::int64_t>(evicted_.size()));
  return true;
}

void Scheduler::finish(Sequence &s, FinishReason reason, const std::string &error) {
  release_blocks(s);
  s.done = true;
  s.gen->finish(reason, error);
}

void Scheduler::drop_cancelled() {
  auto gone = [&](std::unique_ptr<Sequence> &s) {
    if (!s->gen->cancelled())
      return false;
    finish(*s, FinishReason::Cancelled);
    return true;
  };
  running_.erase(std::remove_if(running_.begin(), running_.end(), gone), running_.end());
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto it = waiting_.begin(); it != waiting_.end();)
    if ((*it)->gen->cancelled()) {
      (*it)->gen->finish(FinishReason::Cancelled);
      it = waiting_.erase(it);
    } else {
      ++it;
    }
}

void Scheduler::admit() {
  // Arrival order, no overtaking: a large request at the head waits for blocks rather than
  // being starved by smaller ones behind it. Its tokens' blocks are allocated now.
  std::lock_guard<std::mutex> lock(mutex_);
  while (!waiting_.empty() && static_cast<std::int64_t>(running_.size()) < options_.max_batch) {
    Sequence &s = *waiting_.front();
    share_prefix(s);
    if (!allocate(blocks_for(s.length(), options_.block_size) -
                      static_cast<std::int64_t>(s.blocks.size()),
                  s.blocks)) {
      release_blocks(s); // gives back the shared ones; it waits at the head
      s.computed = 0;
      break;
    }
    if (metrics_) {
      if (s.order == 0) // first admission, not a readmission after preemption
        metrics_->on_prompt(static_cast<std::int64_t>(s.gen->request.prompt.size()));
      if (s.computed > 0)
        metrics_->on_prefix_reuse(s.computed / options_.block_size, s.computed, s.revived);
    }
    s.order = ++next_order_;
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
}

void Scheduler::preempt(std::size_t index) {
  std::unique_ptr<Sequence> s = std::move(running_[index]);
  running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(index));
  release_blocks(*s);
  s->computed = 0; // prefilled again, prompt + tokens so far, when readmitted
  s->rows = 0;
  if (metrics_)
    metrics_->on_preemption();
  std::lock_guard<std::mutex> lock(mutex_);
  waiting_.push_front(std::move(s));
}

void Scheduler::sample(Sequence &s, const float *logits) {
  const GenerationRequest &r = s.gen->request;
  // As the CLI does: non-finite logits mean the activations overflowed; sampling from them
  // would be garbage, so this request ends with the error (the others go on).
  for (std::int64_t i = 0; i < options_.vocab_size; ++i)
    if (!std::isfinite(logits[i]))
      throw Error("the logits at position " + std::to_string(s.length() - 1) +
                  " are not finite (token " + std::to_string(i) + " is " +
                  (std::isnan(logits[i]) ? "NaN" : "infinite") +
                  "): the model's activations overflow");
  GeneratedToken t;
  t.id = s.sampler.sample(logits);
  if (t.id == options_.eos_id) {
    finish(s, FinishReason::Stop);
    return;
  }
  if (r.top_logprobs >= 0)
    t.logprobs = token_logprobs(logits, options_.vocab_size, t.id, r.top_logprobs);
  const Clock::time_point now = Clock::now();
  if (metrics_) {
    if (s.generated == 0)
      metrics_->on_first_token(std::chrono::duration<double>(now - s.gen->submitted).count());
    else
      metrics_->on_next_token(std::chrono::duration<double>(now - s.last_token).count());
  }
  s.last_token = now;
  s.tokens.push_back(t.id);
  ++s.generated;
  s.gen->push(std::move(t));
  if (s.generated >= r.max_tokens || s.length() >= options_.max_seq_len)
    finish(s, FinishReason::Length);
}

void Scheduler::plan_rows() {
  // Decode rows first (one each), then prefill chunks oldest first, within the budget. When
  // the new positions need more blocks than the pool has available, preempt the youngest.
  while (true) {
    std::int64_t budget = options_.step_tokens, need = 0;
    for (auto &s : running_) {
      const std::int64_t left = s->length() - s->computed; // >= 1
      s->rows = left == 1 ? 1 : 0;
      budget -= s->rows;
    }
    for (auto &s : running_)
      if (s->rows == 0) {
        s->rows = std::min(s->length() - s->computed, budget);
        budget -= s->rows;
      }
    for (auto &s : running_)
      need += std::max<std::int64_t>(
          0, blocks_for(s->computed + s->rows, options_.block_size) -
                 static_cast<std::int64_t>(s->blocks.size()));
    if (need <= blocks_.available())
      return;
    // Cannot be the last one standing: submit() refused requests larger than the pool.
    auto youngest = std::max_element(running_.begin(), running_.end(),
                                      [](auto &a, auto &b) { return a->order < b->order; });
    preempt(static_cast<std::size_t>(youngest - running_.begin()));
  }
}

std::vector<Scheduler::Sequence *> Scheduler::build_batch() {
  // Each sequence's rows are consecutive positions, in running_ order; the blocks its new
  // positions need were counted by plan_rows().
  const std::int64_t MB = options_.max_blocks_per_seq;
  batch_.tokens.clear();
  batch_.positions.clear();
  batch_.block_tables.clear();
  batch_.logit_rows.clear();
  std::vector<Sequence *> sampled; // in logit_rows order
  for (auto &s : running_) {
    if (s->rows == 0)
      continue;
    const std::int64_t want = blocks_for(s->computed + s->rows, options_.block_size) -
                              static_cast<std::int64_t>(s->blocks.size());
    if (want > 0 && !allocate(want, s->blocks))
      throw Error("scheduler: block accounting is inconsistent"); // planned above
    for (std::int64_t i = 0; i < s->rows; ++i) {
      const std::int64_t pos = s->computed + i;
      batch_.tokens.push_back(s->tokens[static_cast<std::size_t>(pos)]);
      batch_.positions.push_back(static_cast<std::int32_t>(pos));
      for (std::int64_t b = 0; b < MB; ++b)
        batch_.block_tables.push_back(b < static_cast<std::int64_t>(s->blocks.size())
                                          ? s->blocks[static_cast<std::size_t>(b)]
                                          : -1);
    }
    if (s->computed + s->rows == s->length()) { // its last token: sample the next one
      batch_.logit_rows.push_back(static_cast<std::int32_t>(batch_.n_rows() - 1));
      sampled.push_back(s.get());
    }
  }
  batch_.logits.assign(batch_.logit_rows.size() * static_cast<std::size_t>(options_.vocab_size),
                       0.0f);
  return sampled;
}

void Scheduler::run_batch(const std::vector<Sequence *> &sampled) {
  std::int64_t sequences = 0;
  for (auto &s : running_)
    sequences += s->rows > 0;
  publish_gauges();
  if (metrics_)
    metrics_->on_step(batch_.n_rows(), sequences);
  try {
    step_(batch_);
  } catch (const std::exception &e) { // every request of the step ends with the error
    for (auto &s : running_)
      finish(*s, FinishReason::Error, e.what());
  }
  for (auto &s : running_)
    if (!s->done) {
      s->computed += s->rows;
      register_blocks(*s);
    }
  for (std::size_t i = 0; i < sampled.size(); ++i) {
    if (sampled[i]->done)
      continue;
    try { // NaN logits end this request only
      sample(*sampled[i], batch_.logits.data() + i * static_cast<std::size_t>(options_.vocab_size));
    } catch (const std::exception &e) {
      finish(*sampled[i], FinishReason::Error, e.what());
    }
  }
}

void Scheduler::publish_gauges() {
  running_count_ = static_cast<std::int64_t>(running_.size());
  blocks_used_ = blocks_.used();
  blocks_cached_ = blocks_.cached();
}

bool Scheduler::step_once() {
  drop_cancelled();
  admit();
  if (running_.empty()) {
    publish_gauges();
    return false;
  }
  plan_rows();
  run_batch(build_batch());
  running_.erase(std::remove_if(running_.begin(), running_.end(),
                                [](auto &s) { return s->done; }),
                 running_.end());
  publish_gauges();
  return true;
}

} // namespace moec
