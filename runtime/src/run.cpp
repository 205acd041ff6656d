// run.cpp — run(): the CLI-driven prefill + decode loop.
#include "moec/run.h"

#include "moec/cli.h"
#include "moec/error.h"
#include "moec/kv_cache.h"
#include "moec/manifest.h"
#include "moec/safetensors.h"
#include "moec/sampler.h"
#include "moec/tokenizer.h"
#include "moec/weights.h"

#include <omp.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <ostream>

namespace moec {
namespace fs = std::filesystem;
namespace {
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

/// Writes logits[n] as little-endian float32 to `path` via `path.tmp` + rename, so a reader
/// never sees a partial file.
void write_logits(const std::string &path, const float *logits, std::int64_t n) {
  static_assert(sizeof(float) == 4, "float32 expected");
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "little-endian host expected");
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f)
      throw Error(tmp + ": cannot open for writing");
    f.write(reinterpret_cast<const char *>(logits), static_cast<std::streamsize>(n * 4));
    f.flush();
    if (!f)
      throw Error(tmp + ": write failed");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec)
    throw Error(path + ": cannot rename " + tmp + " into place: " + ec.message());
}

void print_rate(std::ostream &err, const char *what, std::int64_t tokens, double secs) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s: %lld tokens in %.3f s (%.2f tokens/s)\n", what,
                static_cast<long long>(tokens), secs,
                secs > 0 ? static_cast<double>(tokens) / secs : 0.0);
  err << buf;
}

void check_prompt_length(std::int64_t n_tokens, const Manifest &m) {
  if (n_tokens > m.max_seq_len)
    throw Error("the prompt has " + std::to_string(n_tokens) +
                " tokens but the model was compiled for a context of " +
                std::to_string(m.max_seq_len));
}

int generate(const CliOptions &opt, const EntryPoints &entry, RunIO &io) {
  const Manifest m = parse_manifest(entry.manifest);
  const ModelConfig &cfg = m.config;
  validate(opt.sampling);

  // Prompt ids given on the command line are checked against the model before anything runs.
  if (opt.prompt_ids) {
    if (opt.prompt_ids->empty())
      throw UsageError("--prompt-ids: empty list");
    for (std::int64_t id : *opt.prompt_ids)
      if (id < 0 || id >= cfg.vocab_size)
        throw UsageError("--prompt-ids: id " + std::to_string(id) + " is outside [0, " +
                         std::to_string(cfg.vocab_size) + ")");
    check_prompt_length(static_cast<std::int64_t>(opt.prompt_ids->size()), m);
  }

  std::string model_dir;
  if (opt.model_dir)
    model_dir = *opt.model_dir;
  else if (m.model_dir)
    model_dir = *m.model_dir;
  else
    throw Error("no model directory: pass --model DIR (the manifest names none)");

  // The tokenizer is needed to encode a text prompt and to print text.
  const bool need_tokenizer = opt.prompt.has_value() ||
                              (!opt.print_ids && opt.max_new_tokens > 0);
  std::unique_ptr<Tokenizer> tok;
  if (need_tokenizer) {
    tok = std::make_unique<Tokenizer>(opt.tokenizer ? *opt.tokenizer
                                                    : (fs::path(model_dir) / "tokenizer.model")
                                                          .string());
    if (tok->vocab_size() > cfg.vocab_size)
      throw Error("tokenizer has " + std::to_string(tok->vocab_size()) +
                  " pieces but the model's vocab_size is " + std::to_string(cfg.vocab_size));
  }

  std::vector<std::int32_t> prompt;
  if (opt.prompt_ids)
    prompt.assign(opt.prompt_ids->begin(), opt.prompt_ids->end());
  else if (opt.prompt)
    prompt = tok->encode(*opt.prompt, opt.add_bos ? std::optional<std::int32_t>(cfg.bos_token_id)
                                                  : std::nullopt);
  else
    prompt = {cfg.bos_token_id};
  if (prompt.empty())
    throw Error("the prompt is empty (an empty --prompt with --no-bos)");
  const std::int64_t T = static_cast<std::int64_t>(prompt.size());
  check_prompt_length(T, m);

  if (opt.threads)
    omp_set_num_threads(*opt.threads);
  const std::uint64_t seed =
      opt.seed ? *opt.seed
               : static_cast<std::uint64_t>(Clock::now().time_since_epoch().count());
  SamplerOptions sopt = opt.sampling;
  sopt.seed = seed;
  Sampler sampler(sopt, cfg.vocab_size);

  // Heavy part: memory, checkpoint, weights, KV cache.
  check_memory(m);
  const Checkpoint checkpoint = Checkpoint::open(model_dir);
  LoadOptions lopt;
  lopt.progress = io.progress;
  Arena weights = load_weights(m, checkpoint, lopt);
  KvCache kv(m);

  std::vector<std::int32_t> tokens(static_cast<std::size_t>(m.max_seq_len), 0); // ABI: int32[S]
  std::copy(prompt.begin(), prompt.end(), tokens.begin());
  std::vector<float> logits(static_cast<std::size_t>(cfg.vocab_size));

  auto t0 = Clock::now();
  entry.prefill(weights.data(), kv.data(), tokens.data(), T, 0, logits.data());
  kv.advance(T);
  const double prefill_s = seconds_since(t0);
  if (!opt.quiet)
    print_rate(io.err, "prefill", T, prefill_s);

  if (opt.logits_out)
    write_logits(*opt.logits_out, logits.data(), cfg.vocab_size);

  if (!opt.seed && !opt.quiet && sopt.temperature > 0 && opt.max_new_tokens > 0)
    io.err << "seed: " << seed << "\n"; // so a sampled run can be repeated

  std::unique_ptr<StreamDecoder> stream;
  if (!opt.print_ids && tok)
    stream = std::make_unique<StreamDecoder>(*tok, prompt);

  std::int64_t generated = 0;
  std::int64_t pos = T; // position of the token being sampled
  auto t1 = Clock::now();
  while (generated < opt.max_new_tokens && pos < m.max_seq_len) {
    const std::int32_t next = sampler.sample(logits.data());
    if (next == cfg.eos_token_id)
      break;
    ++generated;
    if (opt.print_ids)
      io.out << (generated > 1 ? " " : "") << next;
    else
      io.out << stream->push(next);
    io.out.flush();
    if (generated == opt.max_new_tokens || pos + 1 >= m.max_seq_len)
      break; // no further logits needed
    tokens[static_cast<std::size_t>(pos)] = next;
    entry.decode(weights.data(), kv.data(), &tokens[static_cast<std::size_t>(pos)], pos,
                 logits.data());
    kv.advance(1);
    ++pos;
  }
  const double decode_s = seconds_since(t1);
  if (stream)
    io.out << stream->finish();
  if (generated > 0 || opt.print_ids)
    io.out << "\n";
  io.out.flush();
  if (!opt.quiet) {
    print_rate(io.err, "decode", generated, decode_s);
    if (generated < opt.max_new_tokens && T + generated >= m.max_seq_len)
      io.err << "stopped: the compiled context of " << m.max_seq_len << " tokens is full\n";
  }
  return 0;
}

} // namespace

int run(const std::vector<std::string> &args, const EntryPoints &entry, RunIO &io,
        const std::string &argv0) {
  try {
    const CliOptions opt = parse_cli(args);
    if (opt.help) {
      io.out << cli_help(argv0);
      return 0;
    }
    return generate(opt, entry, io);
  } catch (const UsageError &e) {
    io.err << "error: " << e.what() << "\n";
    return 2;
  } catch (const Error &e) {
    io.err << "error: " << e.what() << "\n";
    return 1;
  } catch (const std::bad_alloc &) {
    io.err << "error: out of memory\n";
    return 1;
  } catch (const std::exception &e) { // a bug or an unexpected library failure
    io.err << "error: internal: " << e.what() << "\n";
    return 1;
  }
}

} // namespace moec
