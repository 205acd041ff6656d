// moec/cli.h — the inference binary's command line.
//
// One table of flags drives both parsing and --help, so the two cannot drift. Values are parsed
// strictly (the whole string must be a number); every mistake throws moec::UsageError with a
// one-line message naming the flag, which run_main turns into exit code 2. Checks that need the
// model (prompt ids < vocab_size) happen later, in run().
#pragma once

#include "moec/sampler.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace moec {

struct CliOptions {
  std::optional<std::string> model_dir;      // --model; else the manifest's model_dir
  std::optional<std::string> tokenizer;      // --tokenizer; else <model_dir>/tokenizer.model
  std::optional<std::string> prompt;         // --prompt TEXT
  std::optional<std::vector<std::int64_t>> prompt_ids; // --prompt-ids 1,415,2936 (unchecked range)
  bool add_bos = true;                       // --no-bos clears it (text prompts only)
  std::int64_t max_new_tokens = 64;          // -n, >= 0
  SamplerOptions sampling;                   // --temperature --top-p --top-k
  std::optional<std::uint64_t> seed;         // --seed; else time-based (printed on stderr)
  bool print_ids = false;                    // --print-ids
  std::optional<std::string> logits_out;     // --logits-out FILE
  std::optional<int> threads;                // --threads, >= 1
  bool quiet = false;                        // --quiet: no stats on stderr
  bool help = false;                         // --help / -h
};

/// Parses argv[1..]; throws moec::UsageError.
CliOptions parse_cli(const std::vector<std::string> &args);

/// The --help text.
std::string cli_help(const std::string &argv0);

} // namespace moec
