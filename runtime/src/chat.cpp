// chat.cpp — --chat: a multi-turn Mixtral-Instruct chat over one KV cache.
//
// The conversation is the id sequence
//   <s> [INST] u1 [/INST] a1 </s> [INST] u2 [/INST] a2 </s> ...
// where "[INST] u [/INST]" is plain text encoded per turn (as mistral-common's v1 instruct
// tokenizer does), <s> = BOS only at the very start, and </s> = EOS closes every answer (the
// sampled one, or one we append when -n cuts an answer short). The KV cache is kept across
// turns: each turn prefills only its new ids, at the position where the previous turn ended —
// the ids of the previous answer that are not in the cache yet (its last sampled token, which
// was never fed through decode, and the closing EOS), then the new user turn.
//
// When the context runs out: a message that does not fit the positions left (keeping one for
// the answer) is refused with a line on stderr and the chat goes on; an answer that reaches the
// end of the context is cut there, and the chat says so on stderr and ends (exit status 0).
// EOF on the input ends the chat (exit status 0). --system joins the first user turn; a --stop
// string ends an answer as -n does (the answer is closed with EOS and the chat goes on).
//
// On a terminal, turns are read with libedit (line editing and history); otherwise one line at
// a time from the input stream.
//
// Ctrl-C while an answer is generated stops that answer between two tokens: what was generated
// stays in the KV cache, EOS closes it, and the chat goes on at the prompt. Ctrl-C at the prompt,
// or a second one during the same answer, ends the process as usual (interrupt.h).
#include "driver.h"
#include "moec/error.h"
#include "interrupt.h"
#include "moec/sampler.h"
#include "moec/stop.h"
#include "output_file.h"

#include <cstdio>
#include <cstdlib>
#include <editline/readline.h>
#include <iostream>
#include <memory>
#include <istream>
#include <limits>
#include <ostream>

namespace moec::driver {
namespace {

/// One line from the terminal with libedit: arrow keys, editing and history (up/down recalls
/// earlier turns). The "> " prompt goes to stderr, like the non-terminal prompt, so stdout holds
/// only answers. False at EOF (Ctrl-D).
bool read_terminal_line(std::string &line) {
  rl_outstream = stderr;
  std::unique_ptr<char, decltype(&std::free)> text(readline("> "), &std::free);
  if (!text)
    return false;
  line = text.get();
  if (!line.empty())
    add_history(text.get());
  return true;
}

} // namespace

int chat(const CliOptions &opt, const Manifest &m, const EntryPoints &entry, RunIO &io) {
  const ModelConfig &cfg = m.config;
  model_dir(opt, m); // fail early when there is none
  std::unique_ptr<Tokenizer> tok = load_tokenizer(opt, m, /*check_vocab=*/true);

  const SamplerOptions sopt = sampler_options(opt);
  const std::uint64_t seed = sopt.seed;
  Sampler sampler(sopt, cfg.vocab_size);

  Session session(m, entry, opt, io);
  const std::int64_t S = session.capacity();
  const std::int64_t limit =
      opt.max_new_tokens_given ? opt.max_new_tokens : std::numeric_limits<std::int64_t>::max();
  if (!opt.seed && !opt.quiet && sopt.temperature > 0)
    io.err << "seed: " << seed << "\n";
  if (io.interactive)
    io.err << "chat: one message per line, EOF (Ctrl-D) ends; context " << S << " tokens\n";

  bool prompt_used = !opt.prompt.has_value(); // --prompt, if given, is the first message
  auto next_message = [&](std::string &msg) -> bool {
    if (!prompt_used) {
      prompt_used = true;
      msg = *opt.prompt;
      return true;
    }
    if (!io.in)
      return false;
    if (io.interactive && io.in == &std::cin)
      return read_terminal_line(msg);
    if (io.interactive)
      io.err << "> " << std::flush;
    if (!std::getline(*io.in, msg))
      return false;
    if (!msg.empty() && msg.back() == '\r')
      msg.pop_back();
    return true;
  };

  std::vector<std::int32_t> pending; // conversation ids not yet in the KV cache
  int turn = 0;
  std::string message;
  while (next_message(message)) {
    if (message.find_first_not_of(" \t") == std::string::npos)
      continue;
    const bool first = turn == 0;
    std::vector<std::int32_t> ids = pending;
    const std::vector<std::int32_t> user = tok->encode(
        instruct_turn(message, first ? opt.system : std::nullopt),
        first && opt.add_bos ? std::optional<std::int32_t>(cfg.bos_token_id) : std::nullopt);
    ids.insert(ids.end(), user.begin(), user.end());
    const std::int64_t left = S - session.filled();
    if (static_cast<std::int64_t>(ids.size()) + 1 > left) {
      io.err << "chat: this message needs " << ids.size() + 1 << " positions (with one for the "
             << "answer) but only " << left << " of the " << S
             << "-token context are left; it was not sent (send a shorter one, or end the chat "
             << "with EOF)\n";
      continue;
    }
    ++turn;
    InterruptGuard interrupt; // this turn's prefill and answer only; not the prompt
    const std::int64_t pos0 = session.filled();
    auto t0 = Clock::now();
    session.prefill(ids);
    const double prefill_s = seconds_since(t0);
    pending.clear();

    // The answer: sampled at position filled(), which the +1 above keeps below S.
    StreamDecoder stream(*tok);
    StopMatcher stop(opt.stop); // --stop ends this answer, as -n does
    std::int64_t generated = 0;
    bool full = false;
    auto t1 = Clock::now();
    while (true) {
      if (interrupt.requested()) { // Ctrl-C: the cache holds every token shown; close the answer
        pending = {cfg.eos_token_id};
        break;
      }
      const std::int32_t next = sampler.sample(session.logits());
      if (next == cfg.eos_token_id) {
        pending = {next};
        break;
      }
      ++generated;
      io.out << stop.push(stream.push(next));
      flush_checked(io.out); // stop at the first failed write
      if (generated >= limit || stop.stopped()) {
        pending = {next, cfg.eos_token_id};
        break;
      }
      if (session.filled() + 1 >= S) {
        full = true; // `next` takes the last position; nothing can follow it
        break;
      }
      session.decode(next);
    }
    const double decode_s = seconds_since(t1);
    io.out << stop.push(stream.finish());
    io.out << stop.finish() << "\n";
    flush_checked(io.out);
    if (!opt.quiet) {
      char buf[256];
      std::snprintf(buf, sizeof buf,
                    "turn %d: prefill %zu tokens at position %lld in %.3f s; answer %lld tokens "
                    "in %.3f s (%.2f tokens/s); context %lld/%lld\n",
                    turn, ids.size(), static_cast<long long>(pos0), prefill_s,
                    static_cast<long long>(generated), decode_s,
                    decode_s > 0 ? static_cast<double>(generated) / decode_s : 0.0,
                    static_cast<long long>(session.filled() + static_cast<std::int64_t>(
                                                                  full ? 1 : pending.size())),
                    static_cast<long long>(S));
      io.err << buf;
    }
    if (interrupt.requested())
      io.err << "chat: answer stopped (Ctrl-C); the chat goes on (Ctrl-C at the prompt or EOF "
                "ends it)\n";
    if (full) {
      io.err << "chat: the compiled context of " << S
             << " tokens is full; the answer was cut and the chat ends\n";
      return 0;
    }
  }
  return 0;
}

} // namespace moec::driver
