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

/// What the binary does; set by --tokenize / --detokenize / --chat / --bench (default: generate).
enum class Mode { Generate, Tokenize, Detokenize, Chat, Bench };

struct CliOptions {
  Mode mode = Mode::Generate;                // at most one mode flag may be given
  std::optional<std::string> model_dir;      // --model; else the manifest's model_dir
  std::optional<std::string> tokenizer;      // --tokenizer; else <model_dir>/tokenizer.model
  std::optional<std::string> weights;        // --weights FILE: the packed weights file (default:
                                             // the manifest's name, beside the binary)
  std::optional<std::string> prompt;         // --prompt TEXT
  std::optional<std::vector<std::int64_t>> prompt_ids; // --prompt-ids 1,415,2936 (unchecked range)
  std::optional<std::string> tokenize;       // --tokenize TEXT: print its ids, no model run
  std::optional<std::vector<std::int64_t>> detokenize; // --detokenize IDS: print their text
  bool chat_template = false;                // --chat-template: wrap --prompt as [INST] .. [/INST]
  bool add_bos = true;                       // --no-bos clears it (text prompts only)
  std::int64_t max_new_tokens = 64;          // -n, >= 0 (per answer in --chat)
  bool max_new_tokens_given = false;         // -n was on the command line (--chat: else unlimited)
  SamplerOptions sampling;                   // --temperature --top-p --top-k
  std::optional<std::uint64_t> seed;         // --seed; else time-based (printed on stderr)
  bool print_ids = false;                    // --print-ids
  std::optional<std::string> logits_out;     // --logits-out FILE
  std::optional<int> threads;                // --threads, >= 1
  bool quiet = false;                        // --quiet: no stats on stderr
  std::int64_t prefill_chunk = 256;          // --prefill-chunk N: tokens per prefill call, >= 1
  std::int64_t bench_prompt = 128;           // --bench-prompt N: prefill tokens, >= 1
  std::int64_t bench_decode = 32;            // --bench-decode N: decode steps, >= 0
  std::int64_t bench_buffer_mib = 1024;      // --bench-buffer-mib N: bandwidth buffer, >= 1
  std::optional<std::uint64_t> test_mem_available; // --test-mem-available BYTES: fake MemAvailable
  bool help = false;                         // --help / -h
};

/// Parses argv[1..]; throws moec::UsageError.
CliOptions parse_cli(const std::vector<std::string> &args);

/// The --help text.
std::string cli_help(const std::string &argv0);

} // namespace moec
