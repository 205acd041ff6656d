// moec/scheduler.h — continuous batching over the compiled batched step.
//
// One scheduler thread owns the model. Every step it
//   1. drops the sequences whose request was cancelled (client gone, stop string seen),
//      returning their KV blocks at once;
//   2. admits waiting requests in arrival order while the batch has room (--max-batch) and the
//      pool has the blocks for the request's tokens (allocated on admission);
//   3. plans the step's rows within a token budget (--prefill-chunk): one row for every
//      sequence that is decoding, then the next chunk of each prefilling sequence, oldest
//      first, so a long prompt is prefilled over several steps interleaved with the others'
//      decode rows;
//   4. allocates the blocks the new positions need; when the pool is out of blocks it
//      PREEMPTS the most recently admitted sequence: its blocks are freed and it goes back to
//      the front of the queue, keeping its tokens and sampler, to be prefilled again (prompt +
//      tokens so far) when blocks free up. Recomputing never samples again, so a preempted
//      request's output is unchanged;
//   5. calls the step and samples, with each request's own Sampler, one token for every
//      sequence whose last row was in the step.
// A request that could never fit the pool (prompt + max_tokens over the pool's positions) is
// refused at submit; so is one that finds the queue full (--max-queue).
//
// Prefix sharing: every full block whose K/V are computed is registered by its content (its
// B tokens and the block before it, so the whole prefix up to it). A request admitted later
// whose tokens start with the same full blocks (a common system prompt, a chat's earlier
// turns) takes those blocks (reference-counted) instead of computing them again; it prefills
// from the first block it does not share (at least its last token is always computed, for the
// logits). Shared blocks are never written: a sequence writes only positions past them.
// A registered block whose last holder ends (finished, cancelled, preempted) stays CACHED
// (moec/block_allocator.h): still registered, so the next request with that prefix revives it
// (the same system prompt is prefilled once, not once per request); the allocator reclaims
// cached blocks, least recently released first, only when no free block is left, and their
// registry entries go with them.
//
// Batch invariance: the step computes every row with the same reduction order whatever the
// other rows (moec/abi.h), and each request samples from its own RNG, so a request's tokens do
// not depend on what else is in the batch, on chunking, or on preemption.
#pragma once

#include "moec/block_allocator.h"
#include "moec/sampler.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace moec {

class Metrics;

/// One call of the compiled step (moec_step in moec/abi.h).
struct StepBatch {
  std::vector<std::int32_t> tokens;       // [n_rows]
  std::vector<std::int32_t> positions;    // [n_rows]
  std::vector<std::int32_t> block_tables; // [n_rows][max_blocks_per_seq], -1 past the table
  std::vector<std::int32_t> logit_rows;   // [n_logits], ascending
  std::vector<float> logits;              // [n_logits][V], written by the step
  std::int64_t n_rows() const { return static_cast<std::int64_t>(tokens.size()); }
};
/// Runs a batch: fills batch.logits. May throw moec::Error (the step's requests then fail).
using StepFunction = std::function<void(StepBatch &)>;

struct SchedulerOptions {
  std::int64_t max_batch = 16;         // sequences in one step, >= 1
  std::int64_t max_queue = 64;         // waiting requests, >= 0
  std::int64_t step_tokens = 256;      // rows per step, >= max_batch
  std::int64_t n_blocks = 0;           // KV pool size in blocks
  std::int64_t block_size = 16;        // positions per block (B)
  std::int64_t max_blocks_per_seq = 0; // ceil(max_seq_len / B)
  std::int64_t max_seq_len = 0;        // S
  std::int64_t vocab_size = 0;         // V
  std::int32_t eos_id = 2;
  bool share_prefixes = true;          // reuse computed blocks of a common prefix, and
                                       // keep finished requests' (see above)
};

enum class FinishReason { None, Stop, Length, Cancelled, Error };
const char *finish_reason_name(FinishReason r); // "stop", "length", "cancelled", "error"

struct GenerationRequest {
  std::vector<std::int32_t> prompt; // >= 1 ids, each < V
  SamplerOptions sampling;          // seed included
  std::int64_t max_tokens = 16;     // >= 1; prompt + max_tokens <= S
  int top_logprobs = -1;            // -1: no logprobs; else how many alternatives per token
};

struct GeneratedToken {
  std::int32_t id = 0;
  TokenLogprobs logprobs; // filled when the request asked for logprobs
};

/// A request in flight, shared by its submitter (an HTTP handler) and the scheduler thread.
class Generation {
public:
  explicit Generation(GenerationRequest request);

  const GenerationRequest request;
  const std::chrono::steady_clock::time_point submitted;

  /// Waits until there are new tokens or the generation ended, at most `timeout`; moves the new
  /// tokens to the end of `out` and returns the finish reason (None while it goes on).
  FinishReason wait(std::vector<GeneratedToken> &out, std::chrono::milliseconds timeout);
  /// Asks the scheduler to drop this generation at its next step and free its blocks.
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }
  /// The message of FinishReason::Error.
  std::string error() const;

  // Scheduler side.
  void push(GeneratedToken token);
  void finish(FinishReason reason, std::string error = "");

private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<GeneratedToken> tokens_; // not yet taken by wait()
  FinishReason finish_ = FinishReason::None;
  std::string error_;
  std::atomic<bool> cancelled_{false};
};

class Scheduler {
public:
  Scheduler(const SchedulerOptions &options, StepFunction step, Metrics *metrics = nullptr);
  ~Scheduler(); // stop()
  Scheduler(const Scheduler &) = delete;
  Scheduler &operator=(const Scheduler &) = delete;

  enum class Admit { Ok, QueueFull, TooLarge, Draining };
  /// Queues a request. TooLarge: its prompt + max_tokens need more blocks than the whole pool.
  Admit submit(std::shared_ptr<Generation> generation);

  /// Starts the scheduler thread (tests may call step_once() instead, without a thread).
  void start();
  /// Refuses new requests from now on; those in flight go on.
  void drain();
  /// Cancels everything in flight (each gets FinishReason::Cancelled) and joins the thread.
  void stop();
  /// Runs one step: drop cancelled, admit, plan, step, sample. False if there was nothing to do.
  bool step_once();

  struct Snapshot {
    std::int64_t running = 0, waiting = 0, blocks_used = 0, blocks_cached = 0, blocks_total = 0;
  };
  Snapshot snapshot() const;
  /// Positions the pool holds (n_blocks * B).
  std::int64_t pool_positions() const { return options_.n_blocks * options_.block_size; }

private:
  struct Sequence;
  // One step, in order: drop_cancelled, admit, plan_rows, build_batch, run_batch.
  void drop_cancelled();
  void admit();                       // waiting -> running while there is room and blocks
  void plan_rows();                   // decode rows, then prefill chunks; preempts if short
  std::vector<Sequence *> build_batch(); // allocates the planned blocks, fills batch_
  void run_batch(const std::vector<Sequence *> &sampled); // the step, then sampling
  void publish_gauges();
  void share_prefix(Sequence &s);     // admission: take registered blocks of s's prefix
  void register_blocks(Sequence &s);  // after a step: register s's newly full blocks
  void release_blocks(Sequence &s);   // s's blocks back: registered ones cached, others free
  bool allocate(std::int64_t n, std::vector<std::int32_t> &table); // + forget evicted blocks
  void preempt(std::size_t index);
  void finish(Sequence &s, FinishReason reason, const std::string &error = "");
  void sample(Sequence &s, const float *logits);
  void loop();

  const SchedulerOptions options_;
  const StepFunction step_;
  Metrics *metrics_;
  BlockAllocator blocks_;                              // scheduler thread only
  struct PrefixEntry {
    std::int32_t block, parent;                        // parent: the block before, or -1
    std::vector<std::int32_t> tokens;                  // [B] the block's tokens
  };
  std::unordered_map<std::uint64_t, PrefixEntry> prefixes_; // content hash -> block
  std::vector<std::uint64_t> block_key_;               // [n_blocks] key, when cacheable
  std::vector<std::int32_t> evicted_;                  // allocate()'s scratch
  std::vector<std::unique_ptr<Sequence>> running_;     // scheduler thread only; oldest first
  std::deque<std::unique_ptr<Sequence>> waiting_;      // guarded by mutex_
  std::uint64_t next_order_ = 0;                       // admission order
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool draining_ = false, stopping_ = false;           // guarded by mutex_
  std::atomic<std::int64_t> running_count_{0}, blocks_used_{0}, blocks_cached_{0};
  std::thread thread_;
  StepBatch batch_; // reused between steps
};

} // namespace moec
