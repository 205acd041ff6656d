// driver.h — runtime-internal pieces shared by the modes of run(): generate and the
// tokenizer-only modes (run.cpp), --chat (chat.cpp) and --bench (bench.cpp).
//
// Session is the loaded model: the manifest, the backend (moec/backend.h) that holds the
// weights and the KV cache wherever the target keeps them, and the ABI's token and logits
// buffers. Its prefill/decode always run at the first unfilled KV position, so a caller cannot
// put tokens at the wrong place or past the compiled context (both throw moec::Error instead).
#pragma once

#include "moec/backend.h"
#include "moec/cli.h"
#include "moec/manifest.h"
#include "moec/run.h"
#include "moec/tokenizer.h"

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace moec::driver {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t);

/// "<what>: N tokens in T s (R tokens/s)" on `err`.
void print_rate(std::ostream &err, const char *what, std::int64_t tokens, double secs);

/// --model, else the manifest's model_dir; throws moec::Error if neither is known, or if it
/// is empty or does not exist (checked_model_dir).
std::string model_dir(const CliOptions &opt, const Manifest &m);
/// `dir` if it exists; else "<dir>: model folder does not exist" (or "is a dangling symlink
/// to ..."); "--model: the path is empty" for "" (`from_flag`: it came from --model).
std::string checked_model_dir(const std::string &dir, bool from_flag);
/// Throws "<dir>/config.json: <field> is X but this binary was compiled for Y" when the
/// folder's config.json differs from the manifest's config in a field that changes the
/// numbers (a bad or missing config.json is reported too). No check for a single file.
void check_model_config(const Manifest &m, const std::string &dir);
/// The tokenizer fits the model: as many pieces as vocab_size, the same BOS and EOS ids.
void check_tokenizer_fits(const Tokenizer &tok, const ModelConfig &c, const std::string &path);

/// Loads --tokenizer, else <model dir>/tokenizer.model. With `check_vocab`, a tokenizer that
/// does not fit the model (check_tokenizer_fits) is rejected.
std::unique_ptr<Tokenizer> load_tokenizer(const CliOptions &opt, const Manifest &m,
                                          bool check_vocab);

/// One user turn of the Mixtral-Instruct format, as text: "[INST] {user} [/INST]", or with a
/// system prompt (first turn only) "[INST] {system}\n\n{user} [/INST]" as mistral-common's v1
/// instruct tokenizer writes it. BOS (first turn only) and the EOS closing each answer are ids,
/// added by the caller.
std::string instruct_turn(const std::string &user,
                          const std::optional<std::string> &system = std::nullopt);

/// Memory check (MemAvailable or --test-mem-available), config check, then the weights into
/// `backend`: the packed weights file, or the checkpoint. The one loading sequence of every
/// mode; everything that can be rejected cheaply is rejected before a weight is read.
void load_model(Backend &backend, const Manifest &m, const CliOptions &opt, const RunIO &io);

/// The model loaded and ready to run.
class Session {
public:
  /// Makes the manifest's backend (make_backend), loads the model into it (load_model),
  /// allocates the KV cache and warms the backend up.
  Session(const Manifest &m, const EntryPoints &entry, const CliOptions &opt, const RunIO &io);

  /// Runs `ids` (n >= 1) at positions [filled(), filled() + n), in calls of at most
  /// --prefill-chunk tokens (attention scores and expert temporaries grow with the tokens of a
  /// call); logits() then holds the logits of the last one. Throws moec::Error if they do not
  /// fit the context, or if the logits are not all finite.
  void prefill(const std::vector<std::int32_t> &ids);
  /// The one-token path at position filled(); throws moec::Error on non-finite logits.
  void decode(std::int32_t id);

  std::int64_t filled() const { return filled_; }
  std::int64_t capacity() const { return manifest_.max_seq_len; }
  const float *logits() const { return logits_.data(); }
  Backend &backend() { return *backend_; }

private:
  /// Throws moec::Error naming the first NaN/inf logit of position `pos`.
  void check_logits(std::int64_t pos) const;

  Manifest manifest_;
  std::unique_ptr<Backend> backend_; // weights, KV cache
  std::int64_t chunk_;               // tokens per prefill call
  std::int64_t filled_ = 0;          // KV positions [0, filled_) hold keys and values
  std::vector<std::int32_t> tokens_; // int32 [S]: the ABI's tokens buffer; the ids of one call
                                     // sit at its start whatever their position
  std::vector<float> logits_;        // f32 [V]
};

/// The sampling options of a run: --temperature/--top-p/--top-k, with --seed or, when none
/// was given, a clock-based seed (callers print it so a sampled run can be repeated).
SamplerOptions sampler_options(const CliOptions &opt);

/// --chat; returns the exit code (moec::Error propagates to run()).
int chat(const CliOptions &opt, const Manifest &m, const EntryPoints &entry, RunIO &io);

/// --bench; returns the exit code.
int bench(const CliOptions &opt, const Manifest &m, const EntryPoints &entry, RunIO &io);

} // namespace moec::driver
