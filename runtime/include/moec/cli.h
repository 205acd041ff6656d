// moec/cli.h — the inference binary's command line.
//
// One table of flags drives both parsing and --help, so the two cannot drift. Values are parsed
// strictly (the whole string must be a number); every mistake throws moec::UsageError with a
// one-line message naming the flag, which run_main turns into exit code 2. Checks that need the
// model (prompt ids < vocab_size) happen later, in run().
#pragma once

#include "moec/sampler.h"

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

namespace moec {

/// What the binary does; set by --tokenize / --detokenize / --chat / --bench / --serve
/// (default: generate).
enum class Mode { Generate, Tokenize, Detokenize, Chat, Bench, Serve };

/// --serve: the OpenAI-compatible HTTP server (runtime/src/server.cpp).
struct ServeOptions {
  std::string host = "127.0.0.1";   // --host: loopback unless told otherwise
  int port = 8080;                  // --port, in [0, 65535]; 0 = any free port (printed)
  std::optional<std::string> api_key; // --api-key: "Authorization: Bearer KEY" required
  std::int64_t max_batch = 16;      // --max-batch: sequences in one step, >= 1
  std::int64_t max_queue = 64;      // --max-queue: waiting requests before 429, >= 0
  std::int64_t kv_cache_mib = 0;    // --kv-cache-mib: paged KV pool; 0 = room for max_batch
                                    // full-context sequences
  std::int64_t max_body_bytes = 1 << 20; // --max-body-bytes: larger requests get 413
  double shutdown_seconds = 30;     // --shutdown-timeout: SIGTERM drains this long, then cancels
  std::optional<std::string> model_name; // --served-model-name; default: the binary's name
};

struct CliOptions {
  Mode mode = Mode::Generate;                // at most one mode flag may be given
  std::optional<std::string> model_dir;      // --model; else the manifest's model_dir
  std::optional<std::string> tokenizer;      // --tokenizer; else <model_dir>/tokenizer.model
  std::optional<std::string> weights;        // --weights FILE: the packed weights file (default:
                                             // the manifest's name, beside the binary)
  std::optional<std::string> prompt;         // --prompt TEXT ("-": read stdin)
  std::optional<std::string> prompt_file;    // -f FILE: the prompt is the file's text
  bool prompt_from_stdin = false;            // set by read_prompt_source for `-p -`
  std::optional<std::string> system;         // --system TEXT: --chat / --chat-template
  std::vector<std::string> stop;             // --stop STR (repeatable): end before STR
  std::optional<std::vector<std::int64_t>> prompt_ids; // --prompt-ids 1,415,2936 (unchecked range)
  std::optional<std::string> tokenize;       // --tokenize TEXT: print its ids, no model run
  std::optional<std::vector<std::int64_t>> detokenize; // --detokenize IDS: print their text
  bool chat_template = false;                // --chat-template: wrap --prompt as [INST] .. [/INST]
  bool add_bos = true;                       // --no-bos clears it (text prompts only)
  std::int64_t max_new_tokens = 64;          // -n, >= 0 (per answer in --chat)
  bool max_new_tokens_given = false;         // -n was on the command line (--chat: else unlimited)
  SamplerOptions sampling;                   // --temp --top-p --top-k --min-p, penalties
  std::optional<std::uint64_t> seed;         // --seed; else time-based (printed on stderr)
  bool print_ids = false;                    // --print-ids
  std::optional<std::string> logits_out;     // --logits-out FILE
  std::optional<int> threads;                // --threads / -t, >= 1
  bool quiet = false;                        // --quiet: no stats on stderr
  std::int64_t prefill_chunk = 256;          // --prefill-chunk N: tokens per prefill call, >= 1
  std::int64_t bench_prompt = 128;           // --bench-prompt N: prefill tokens, >= 1
  std::int64_t bench_decode = 32;            // --bench-decode N: decode steps, >= 0
  std::int64_t bench_buffer_mib = 1024;      // --bench-buffer-mib N: bandwidth buffer, >= 1
  std::optional<std::uint64_t> test_mem_available; // --test-mem-available BYTES: fake MemAvailable
  ServeOptions serve;                        // --serve and its flags
  bool help = false;                         // --help / -h
  bool version = false;                      // --version
};

/// Parses argv[1..]; throws moec::UsageError.
CliOptions parse_cli(const std::vector<std::string> &args);

/// Resolves `-p -` (read `in`) and `-f FILE` into opt.prompt; throws moec::UsageError.
/// A prompt larger than 64 MiB is refused (no context holds it).
void read_prompt_source(CliOptions &opt, std::istream *in);

/// The --help text.
std::string cli_help(const std::string &argv0);

} // namespace moec
