// run.cpp — run(): flag dispatch, the generate loop, --tokenize / --detokenize, and the pieces
// of driver.h that every mode shares (Session, tokenizer loading).
#include "moec/run.h"

#include "driver.h"
#include "moec/cli.h"
#include "moec/error.h"
#include "moec/manifest.h"
#include "moec/safetensors.h"
#include "moec/abi.h"
#include "moec/sampler.h"
#include "moec/stop.h"
#include "moec/tokenizer.h"
#include "moec/weights.h"
#include "interrupt.h"
#include "output_file.h"
#include "server.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <ostream>
#include <sstream>

namespace moec {
namespace fs = std::filesystem;

// --- driver.h ----------------------------------------------------------------------------------
namespace driver {

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

void print_rate(std::ostream &err, const char *what, std::int64_t tokens, double secs) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s: %lld tokens in %.3f s (%.2f tokens/s)\n", what,
                static_cast<long long>(tokens), secs,
                secs > 0 ? static_cast<double>(tokens) / secs : 0.0);
  err << buf;
}

std::string model_dir(const CliOptions &opt, const Manifest &m) {
  if (opt.model_dir)
    return checked_model_dir(*opt.model_dir, /*from_flag=*/true);
  if (m.model_dir)
    return checked_model_dir(*m.model_dir, /*from_flag=*/false);
  throw Error("no model directory: pass --model DIR (the manifest names none)");
}

std::unique_ptr<Tokenizer> load_tokenizer(const CliOptions &opt, const Manifest &m,
                                          bool check_vocab) {
  const std::string path =
      opt.tokenizer ? *opt.tokenizer : (fs::path(model_dir(opt, m)) / "tokenizer.model").string();
  auto tok = std::make_unique<Tokenizer>(path);
  if (check_vocab)
    check_tokenizer_fits(*tok, m.config, path);
  return tok;
}

std::string instruct_turn(const std::string &user, const std::optional<std::string> &system) {
  // mistral-common's v1 instruct tokenizer: the system prompt joins the first user message.
  return "[INST] " + (system ? *system + "\n\n" : std::string()) + user + " [/INST]";
}

void load_model(Backend &backend, const Manifest &m, const CliOptions &opt, const RunIO &io) {
  // The backend exists, so a GPU's driver and device are known good; its memory is checked
  // before minutes of reading (a GPU model's weights go from the mmapped checkpoint straight to
  // the device: host memory holds only the page cache).
  backend.check_memory(opt.test_mem_available ? opt.test_mem_available : mem_available_bytes());
  if (m.weights_file) { // packed: the file is the arena, mapped (weights.h)
    backend.map_weights(weights_file_path(m, opt.weights));
    return;
  }
  if (opt.weights)
    throw UsageError("--weights: this binary was compiled without --pack; it reads the "
                     "checkpoint (--model)");
  check_model_config(m, model_dir(opt, m)); // the folder it was compiled for
  const Checkpoint checkpoint = Checkpoint::open(model_dir(opt, m));
  LoadOptions lopt;
  lopt.progress = io.progress;
  backend.load_weights(checkpoint, lopt);
}

Session::Session(const Manifest &m, const EntryPoints &entry, const CliOptions &opt,
                 const RunIO &io)
    : manifest_(m), backend_(make_backend(manifest_, entry)), chunk_(opt.prefill_chunk),
      tokens_(static_cast<std::size_t>(m.max_seq_len), 0),
      logits_(static_cast<std::size_t>(m.config.vocab_size), 0.0f) {
  load_model(*backend_, manifest_, opt, io);
  backend_->allocate_kv_cache();
  backend_->warm_up(); // untimed: a GPU's kernels are JIT-compiled here, not in the first call
}

SamplerOptions sampler_options(const CliOptions &opt) {
  SamplerOptions sopt = opt.sampling;
  sopt.seed = opt.seed ? *opt.seed
                       : static_cast<std::uint64_t>(Clock::now().time_since_epoch().count());
  return sopt;
}

void Session::check_logits(std::int64_t pos) const {
  // NaN/inf logits mean the activations overflowed (huge weights, an extreme rope_theta):
  // sampling from them would print garbage, so the run ends here, whatever the mode.
  for (std::size_t i = 0; i < logits_.size(); ++i)
    if (!std::isfinite(logits_[i]))
      throw Error("the logits at position " + std::to_string(pos) + " are not finite (token " +
                  std::to_string(i) + " is " + (std::isnan(logits_[i]) ? "NaN" : "infinite") +
                  "): the model's activations overflow; check the weights and config.json");
}

void Session::prefill(const std::vector<std::int32_t> &ids) {
  const std::int64_t n = static_cast<std::int64_t>(ids.size()), pos = filled_;
  if (n < 1 || pos + n > capacity())
    throw Error("prefill of " + std::to_string(n) + " tokens at position " + std::to_string(pos) +
                " does not fit the compiled context of " + std::to_string(capacity()));
  for (std::int64_t begin = 0; begin < n; begin += chunk_) {
    const std::int64_t count = std::min(chunk_, n - begin);
    std::copy(ids.begin() + begin, ids.begin() + begin + count, tokens_.begin());
    backend_->prefill(tokens_.data(), count, filled_, logits_.data());
    filled_ += count;
  }
  check_logits(filled_ - 1);
}

void Session::decode(std::int32_t id) {
  const std::int64_t pos = filled_;
  if (pos >= capacity())
    throw Error("decode at position " + std::to_string(pos) +
                " is past the compiled context of " + std::to_string(capacity()));
  backend_->decode(id, pos, logits_.data());
  filled_ += 1;
  check_logits(pos);
}

} // namespace driver

namespace {
using driver::Clock;
using driver::print_rate;
using driver::seconds_since;

/// Writes logits[n] as little-endian float32 to `path` (output_file.h: a regular file is
/// replaced atomically, so a reader never sees a partial one; a device or FIFO is written
/// through, never replaced).
void write_logits(const std::string &path, const float *logits, std::int64_t n) {
  static_assert(sizeof(float) == 4, "float32 expected");
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "little-endian host expected");
  write_output_file(path, logits, static_cast<std::size_t>(n) * sizeof(float));
}

void check_prompt_length(std::int64_t n_tokens, const Manifest &m) {
  if (n_tokens > m.max_seq_len)
    throw Error("the prompt has " + std::to_string(n_tokens) +
                " tokens but the model was compiled for a context of " +
                std::to_string(m.max_seq_len));
}

std::optional<std::int32_t> bos_if(const CliOptions &opt, const Manifest &m) {
  return opt.add_bos ? std::optional<std::int32_t>(m.config.bos_token_id) : std::nullopt;
}

/// --tokenize TEXT: ids on one line, nothing else loaded.
int tokenize(const CliOptions &opt, const Manifest &m, RunIO &io) {
  auto tok = driver::load_tokenizer(opt, m, /*check_vocab=*/false);
  const std::string text =
      opt.chat_template ? driver::instruct_turn(*opt.tokenize, opt.system) : *opt.tokenize;
  const std::vector<std::int32_t> ids = tok->encode(text, bos_if(opt, m));
  for (std::size_t i = 0; i < ids.size(); ++i)
    io.out << (i ? " " : "") << ids[i];
  io.out << "\n";
  flush_checked(io.out);
  return 0;
}

/// --detokenize IDS: the text, then a newline.
int detokenize(const CliOptions &opt, const Manifest &m, RunIO &io) {
  auto tok = driver::load_tokenizer(opt, m, /*check_vocab=*/false);
  std::vector<std::int32_t> ids;
  for (std::int64_t id : *opt.detokenize) {
    if (id < 0 || id >= tok->vocab_size())
      throw UsageError("--detokenize: id " + std::to_string(id) + " is outside the tokenizer's [0, " +
                       std::to_string(tok->vocab_size()) + ")");
    ids.push_back(static_cast<std::int32_t>(id));
  }
  io.out << tok->decode(ids) << "\n";
  flush_checked(io.out);
  return 0;
}

int generate(const CliOptions &opt, const EntryPoints &entry, const Manifest &m, RunIO &io) {
  const ModelConfig &cfg = m.config;

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
  if (!m.weights_file)
    driver::model_dir(opt, m); // fail early when there is none (a packed binary needs it only
                               // for the tokenizer)
  if (opt.logits_out)
    check_output_path(*opt.logits_out); // before minutes of loading, not after

  // The tokenizer is needed to encode a text prompt and to print text.
  const bool need_tokenizer = opt.prompt.has_value() ||
                              (!opt.print_ids && opt.max_new_tokens > 0);
  std::unique_ptr<Tokenizer> tok;
  if (need_tokenizer)
    tok = driver::load_tokenizer(opt, m, /*check_vocab=*/true);

  std::vector<std::int32_t> prompt;
  if (opt.prompt_ids)
    prompt.assign(opt.prompt_ids->begin(), opt.prompt_ids->end());
  else if (opt.prompt)
    prompt = tok->encode(
        opt.chat_template ? driver::instruct_turn(*opt.prompt, opt.system) : *opt.prompt,
        bos_if(opt, m));
  else
    prompt = {cfg.bos_token_id};
  if (prompt.empty())
    throw Error("the prompt is empty (an empty --prompt with --no-bos)");
  const std::int64_t T = static_cast<std::int64_t>(prompt.size());
  check_prompt_length(T, m);

  const SamplerOptions sopt = driver::sampler_options(opt);
  const std::uint64_t seed = sopt.seed;
  Sampler sampler(sopt, cfg.vocab_size);
  sampler.add_context(prompt); // --repeat-penalty covers the prompt

  driver::Session session(m, entry, opt, io); // memory check, checkpoint, weights, KV cache

  InterruptGuard interrupt; // Ctrl-C: stop between tokens, report as usual, exit 130
  auto t0 = Clock::now();
  session.prefill(prompt);
  const double prefill_s = seconds_since(t0);
  if (!opt.quiet)
    print_rate(io.err, "prefill", T, prefill_s);

  // --logits-out: one row of vocab_size floats per logits vector computed, i.e. every one the
  // sampler sees: row 0 is the last prompt position's (also with -n 0), row i that of the i-th
  // decoded token. A run that ends at EOS or at -n N has sampled as many tokens as it has rows.
  // Written once at the end, so a failed run leaves no file.
  std::vector<float> logits_rows;
  const auto keep_logits = [&] {
    if (opt.logits_out)
      logits_rows.insert(logits_rows.end(), session.logits(), session.logits() + cfg.vocab_size);
  };
  keep_logits();

  if (!opt.seed && !opt.quiet && sopt.temperature > 0 && opt.max_new_tokens > 0)
    io.err << "seed: " << seed << "\n"; // so a sampled run can be repeated

  std::unique_ptr<StreamDecoder> stream;
  if (!opt.print_ids && tok)
    stream = std::make_unique<StreamDecoder>(*tok, prompt);
  StopMatcher stop(opt.stop); // --stop: text (never with --print-ids)

  std::int64_t generated = 0;
  auto t1 = Clock::now();
  // A sampled token takes position filled(); it is shown only if that position exists.
  while (generated < opt.max_new_tokens && session.filled() < session.capacity() &&
         !interrupt.requested()) {
    const std::int32_t next = sampler.sample(session.logits());
    if (next == cfg.eos_token_id) {
      if (opt.print_ids) // ids are data: show where the model stopped; text never shows EOS
        io.out << (generated > 0 ? " " : "") << next;
      break;
    }
    ++generated;
    if (opt.print_ids)
      io.out << (generated > 1 ? " " : "") << next;
    else
      io.out << stop.push(stream->push(next));
    flush_checked(io.out); // stop at the first failed write
    if (stop.stopped() || generated == opt.max_new_tokens ||
        session.filled() + 1 >= session.capacity())
      break; // no further logits needed, or no position left for the token after `next`
    session.decode(next);
    keep_logits();
  }
  const double decode_s = seconds_since(t1);
  if (stream) {
    io.out << stop.push(stream->finish());
    io.out << stop.finish();
  }
  if (generated > 0 || opt.print_ids)
    io.out << "\n";
  flush_checked(io.out);
  if (opt.logits_out)
    write_logits(*opt.logits_out, logits_rows.data(),
                 static_cast<std::int64_t>(logits_rows.size()));
  if (!opt.quiet) {
    print_rate(io.err, "decode", generated, decode_s);
    if (stop.stopped())
      io.err << "stopped: a --stop string\n";
    else if (generated < opt.max_new_tokens && T + generated >= m.max_seq_len)
      io.err << "stopped: the compiled context of " << m.max_seq_len << " tokens is full\n";
  }
  if (interrupt.requested()) {
    io.err << "stopped: interrupted (Ctrl-C)\n";
    return 130; // what a shell reports for a process that SIGINT ended
  }
  return 0;
}

/// --version: the runtime, the ABI and what was compiled into this binary.
std::string version_text(const EntryPoints &entry) {
  std::ostringstream s;
  s << "moec runtime " << kRuntimeVersion << ", ABI " << MOEC_ABI_VERSION << "\n";
  const Manifest m = parse_manifest(entry.manifest);
  const ModelConfig &c = m.config;
  s << "model: target " << m.target << ", " << c.num_hidden_layers << " layers, hidden "
    << c.hidden_size << ", " << c.num_local_experts << " experts (top " << c.num_experts_per_tok
    << "), vocab " << c.vocab_size << ", context " << m.max_seq_len << ", weights "
    << dtype_name(c.weight_dtype) << (entry.step ? ", batched step" : "") << "\n";
  if (m.model_dir)
    s << "model folder: " << *m.model_dir << "\n";
  return s.str();
}

int dispatch(const CliOptions &opt, const EntryPoints &entry, RunIO &io) {
  const Manifest m = parse_manifest(entry.manifest);
  validate(opt.sampling);
  if (opt.threads) {
    // Threads beyond the processors only take turns on them (each parallel loop ends at a
    // barrier, so that is slower, never faster), and every libomp thread reserves a stack:
    // thousands exhaust the address space or the thread limit, and libomp then aborts.
    const int cap = 4 * omp_get_num_procs();
    if (*opt.threads > cap)
      throw UsageError("--threads " + std::to_string(*opt.threads) + ": at most " +
                       std::to_string(cap) + " (4 x the " + std::to_string(omp_get_num_procs()) +
                       " processors this process may use); more would only take turns on them");
    omp_set_num_threads(*opt.threads);
  }
  switch (opt.mode) {
  case Mode::Tokenize:
    return tokenize(opt, m, io);
  case Mode::Detokenize:
    return detokenize(opt, m, io);
  case Mode::Chat:
    return driver::chat(opt, m, entry, io);
  case Mode::Bench:
    return driver::bench(opt, m, entry, io);
  case Mode::Serve:
    return serve(opt, m, entry, io);
  case Mode::Generate:
    break;
  }
  return generate(opt, entry, m, io);
}

} // namespace

int run(const std::vector<std::string> &args, const EntryPoints &entry, RunIO &io,
        const std::string &argv0) {
  try {
    CliOptions opt = parse_cli(args);
    if (opt.help) {
      io.out << cli_help(argv0);
      flush_checked(io.out);
      return 0;
    }
    if (opt.version) {
      io.out << version_text(entry);
      flush_checked(io.out);
      return 0;
    }
    if (opt.mode == Mode::Chat && opt.prompt && *opt.prompt == "-" && !opt.prompt_file)
      throw UsageError("-p -: --chat reads its turns from stdin; give the first one as text");
    read_prompt_source(opt, io.in);
    if (opt.mode == Mode::Serve && !opt.serve.model_name)
      opt.serve.model_name = std::filesystem::path(argv0).filename().string();
    return dispatch(opt, entry, io);
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
