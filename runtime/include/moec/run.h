// moec/run.h — the generation loop and the inference binary's entry point.
//
// run_main(argc, argv) is what main.cpp calls; it binds the symbols of the generated object
// (moec_manifest, moec_prefill, moec_decode) and calls run(). run() takes them as an
// EntryPoints struct and its streams as RunIO so that tests can drive the whole loop with a
// fake model and captured output.
//
// Modes (moec/cli.h): generate (default), --chat, --tokenize / --detokenize (tokenizer only, no
// weights), --bench (no tokenizer). Order of work for generate: parse flags → parse manifest →
// resolve prompt (check ids, context length) → memory check → open checkpoint → load weights →
// KV cache → prefill → decode loop → [logits-out: every row the sampler saw]. Everything that can be rejected cheaply is
// rejected before the weights are loaded.
#pragma once

#include "moec/entry_points.h"

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace moec {

/// The runtime's version (--version).
inline constexpr const char *kRuntimeVersion = "0.1.0";

struct RunIO {
  std::ostream &out;         // generated text / ids
  std::ostream &err;         // timings, seed, errors
  bool progress = false;     // loading progress bar (on the process's stderr)
  std::istream *in = nullptr; // --chat reads the user's turns here (none: EOF at once)
  bool interactive = false;  // --chat: show a "> " prompt on `err` before each turn
};

/// Runs the CLI with `args` (argv[1..]) and returns the exit code: 0 ok, 1 runtime error,
/// 2 bad command line. Never throws moec::Error.
int run(const std::vector<std::string> &args, const EntryPoints &entry, RunIO &io,
        const std::string &argv0 = "moec");

/// main() of the inference binary, bound to the generated object's symbols.
int run_main(int argc, char **argv);

} // namespace moec
