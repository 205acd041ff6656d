// cli.cpp — parse_cli and cli_help over one flag table.
#include "moec/cli.h"

#include "moec/error.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

namespace moec {
namespace {

std::int64_t parse_int(const std::string &flag, const std::string &v) {
  std::int64_t out = 0;
  const char *end = v.data() + v.size();
  auto [p, ec] = std::from_chars(v.data(), end, out);
  if (v.empty() || ec != std::errc() || p != end)
    throw UsageError(flag + ": expected an integer, got '" + v + "'");
  return out;
}

float parse_float(const std::string &flag, const std::string &v) {
  errno = 0;
  char *end = nullptr;
  double d = std::strtod(v.c_str(), &end);
  if (v.empty() || end != v.c_str() + v.size() || errno == ERANGE || !std::isfinite(d))
    throw UsageError(flag + ": expected a finite number, got '" + v + "'");
  return static_cast<float>(d);
}

/// "1,415,2936", "1, 415, 2936" or "1 415 2936": commas or whitespace separate the ids.
std::vector<std::int64_t> parse_ids(const std::string &flag, const std::string &v) {
  const bool commas = v.find(',') != std::string::npos;
  const char *ws = " \t\n\r";
  std::vector<std::int64_t> ids;
  auto bad = [&]() {
    return UsageError(flag + ": expected integers separated by commas or spaces, got '" + v +
                      "'");
  };
  std::size_t start = 0;
  while (true) {
    std::string item;
    std::size_t next;
    if (commas) {
      std::size_t comma = v.find(',', start);
      item = v.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      next = comma == std::string::npos ? std::string::npos : comma + 1;
      item.erase(0, std::min(item.size(), item.find_first_not_of(ws)));
      item.erase(item.find_last_not_of(ws) + 1);
    } else {
      std::size_t b = v.find_first_not_of(ws, start);
      if (b == std::string::npos) {
        if (ids.empty())
          throw bad();
        break;
      }
      std::size_t e = v.find_first_of(ws, b);
      item = v.substr(b, e == std::string::npos ? std::string::npos : e - b);
      next = e;
    }
    try {
      ids.push_back(parse_int(flag, item));
    } catch (const UsageError &) {
      throw bad();
    }
    if (next == std::string::npos)
      break;
    start = next;
  }
  return ids;
}

void set_mode(CliOptions &o, Mode m, const std::string &flag) {
  if (o.mode != Mode::Generate && o.mode != m)
    throw UsageError(flag +
                     ": only one of --tokenize, --detokenize, --chat, --bench, --serve may be given");
  o.mode = m;
}

std::int64_t parse_int_in(const std::string &flag, const std::string &v, std::int64_t lo,
                          std::int64_t hi) {
  std::int64_t n = parse_int(flag, v);
  if (n < lo || n > hi)
    throw UsageError(flag + ": must be in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                     "], got " + v);
  return n;
}

struct Flag {
  const char *name;  // "--model"
  const char *alias; // "-n" or nullptr
  const char *value; // metavariable, or nullptr for a switch
  const char *help;
  std::function<void(CliOptions &, const std::string &flag, const std::string &value)> apply;
};

const std::vector<Flag> &flags() {
  static const std::vector<Flag> table = {
      {"--model", "-m", "DIR",
       "model directory with the safetensors checkpoint and tokenizer.model "
       "(default: the directory given to mixtral-compile)",
       [](CliOptions &o, const std::string &, const std::string &v) { o.model_dir = v; }},
      {"--tokenizer", nullptr, "FILE", "sentencepiece model (default: DIR/tokenizer.model)",
       [](CliOptions &o, const std::string &, const std::string &v) { o.tokenizer = v; }},
      {"--weights", nullptr, "FILE",
       "the packed weights file of a binary compiled with --pack or --quantize (default: the "
       "one mixtral-compile wrote beside it, OUT.weights)",
       [](CliOptions &o, const std::string &, const std::string &v) { o.weights = v; }},
      {"--prompt", "-p", "TEXT",
       "prompt text; BOS is prepended (default: just BOS); \"-\" reads it from stdin",
       [](CliOptions &o, const std::string &, const std::string &v) { o.prompt = v; }},
      {"--file", "-f", "FILE", "prompt text from FILE (as --prompt)",
       [](CliOptions &o, const std::string &, const std::string &v) { o.prompt_file = v; }},
      {"--system", nullptr, "TEXT",
       "system prompt for --chat or --chat-template, folded into the first user turn as "
       "Mistral's reference template does: [INST] TEXT\\n\\nUSER [/INST]",
       [](CliOptions &o, const std::string &, const std::string &v) { o.system = v; }},
      {"--prompt-ids", nullptr, "IDS",
       "prompt as token ids, e.g. 1,415,2936 or \"1 415 2936\" (used as given; no BOS added)",
       [](CliOptions &o, const std::string &f, const std::string &v) {
         o.prompt_ids = parse_ids(f, v);
       }},
      {"--chat-template", nullptr, nullptr,
       "wrap the --prompt (or --tokenize) text in the Mixtral-Instruct format: "
       "<s>[INST] TEXT [/INST]",
       [](CliOptions &o, const std::string &, const std::string &) { o.chat_template = true; }},
      {"--chat", nullptr, nullptr,
       "interactive multi-turn chat: one message per stdin line, answers on stdout; the KV "
       "cache is kept across turns; EOF ends the chat. -n caps each answer (default: none). "
       "A message that does not fit the context left is refused; when an answer fills the "
       "context the chat ends",
       [](CliOptions &o, const std::string &f, const std::string &) {
         set_mode(o, Mode::Chat, f);
       }},
      {"--tokenize", nullptr, "TEXT",
       "print the token ids of TEXT (BOS first unless --no-bos), space-separated, and exit; "
       "loads only the tokenizer",
       [](CliOptions &o, const std::string &f, const std::string &v) {
         set_mode(o, Mode::Tokenize, f);
         o.tokenize = v;
       }},
      {"--detokenize", nullptr, "IDS",
       "print the text of token ids (\"1,415,2936\" or \"1 415 2936\") and exit; loads only "
       "the tokenizer",
       [](CliOptions &o, const std::string &f, const std::string &v) {
         set_mode(o, Mode::Detokenize, f);
         o.detokenize = parse_ids(f, v);
       }},
      {"--no-bos", nullptr, nullptr, "do not prepend BOS to a --prompt",
       [](CliOptions &o, const std::string &, const std::string &) { o.add_bos = false; }},
      {"-n", "--max-new-tokens", "N", "number of tokens to generate, >= 0 (default 64)",
       [](CliOptions &o, const std::string &f, const std::string &v) {
         o.max_new_tokens = parse_int(f, v);
         if (o.max_new_tokens < 0)
           throw UsageError(f + ": must be >= 0, got " + v);
         o.max_new_tokens_given = true;
       }},
      {"--temperature", "--temp", "F", "sampling temperature, >= 0; 0 = greedy (default 0.7)",
       [](CliOptions &o, const std::string &f, const std::string &v) {
         o.sampling.temperature = parse_float(f, v);
         if (o.sampling.temperature < 0)
           throw UsageError(f + ": must be >= 0, got " + v);
       }},
      {"--top-p", nullptr, "F", "nucleus sampling mass, in (0, 1]; 1 = off (default 0.9)",
       [](CliOptions &o, const std::string &f, const std::string &v) {
         o.sampling.top_p = parse_float(f, v);
         if (!(o.sampling.top_p > 0 && o.sampling.top_p <= 1))
           throw UsageError(f + ": must be in (0, 1], got " + v);
       }},
      {"--top-k", nullptr, "N", "keep the N most likely tokens, >= 0; 0 = off (default 40)",
       [](CliOptions &o, const std::string &f, const std::string &v) {
         std::int64_t k = parse_int(f, v);
         if (k < 0 || k > INT32_MAX)
           throw UsageError(f + ": must be in [0, 2^31), got " + v);
         o.sampling.top_k = static_cast<int>(k);
       }},
      {"--min-p", nullptr, "F",
       "drop tokens less likely than F times the most likely one, in [0, 1]; 0 = off "
       "(default 0)",
       [](CliOptions &o, const std::string &f, const std::string &v) {
         o.sampling.min_p = parse_float(f, v);
         if (!(o.sampling.min_p >= 0 && o.sampling.min_p <= 1))
           throw UsageError(f + ": must be in [0, 1], got " + v);
       }},
      {"--presence-penalty", nullptr, "F",
       "subtract F from the logit of every token already generated, in [-2, 2] (default 0)",
       [](CliOptions &o, const std::string &f, const std::string &v) {
         o.sampling.presence_penalty = parse_float(f, v);
         if (!(o.sampling.presence_penalty >= -2 && o.sampling.presence_penalty <= 2))
           throw UsageError(f + ": must be in [-2, 2], got " + v);
       }},
      {"--frequency-penalty", nullptr, "F",
       "subtract F times its count from the logit of every token already generated, in "
       "[-2, 2] (default 0)",
       [](CliOptions &o, const std::string &f, const std::string &v) {
         o.sampling.frequency_penalty = parse_float(f, v);
         if (!(o.sampling.frequency_penalty >= -2 && o.sampling.frequency_penalty <= 2))
           throw UsageError(f + ": must be in [-2, 2], got " + v);
       }},
      {"--repeat-penalty", nullptr, "F",
       "divide a positive logit (multiply a negative one) by F for every token of the prompt "
       "or already generated, > 0; 1 = off (default 1)",
       [](CliOptions &o, const std::string &f, const std::string &v) {
         o.sampling.repetition_penalty = parse_float(f, v);
         if (!(o.sampling.repetition_penalty > 0))
           throw UsageError(f + ": must be > 0, got " + v);
       }},
      {"--stop", nullptr, "STR",
       "stop before the text STR (repeatable; matched across tokens, never printed)",
       [](CliOptions &o, const std::string &f, const std::string &v) {
         if (v.empty())
           throw UsageError(f + ": the stop string must not be empty");
         o.stop.push_back(v);
       }},
      {"--seed", "-s", "N", "random seed, a non-negative integer (default: from the clock)",
       [](CliOptions &o, const std::string &f, const std::string &v) {
         std::int64_t s = parse_int(f, v);
         if (s < 0)
           throw UsageError(f + ": must be >= 0, got " + v);
         o.seed = static_cast<std::uint64_t>(s);
       }},
      {"--print-ids", nullptr, nullptr,
       "print the generated token ids, space-separated on one line, instead of text",
       [](CliOptions &o, const std::string &, const std::string &) { o.print_ids = true; }},
      {"--logits-out", nullptr, "FILE",
       "write every logits vector the run computes to FILE, one row of vocab_size "
       "little-endian float32 each: the last prompt position's, then one per decoded token "
       "(rows = tokens sampled, a final EOS included; 1 with -n 0)",
       [](CliOptions &o, const std::string &, const std::string &v) { o.logits_out = v; }},
      {"--threads", "-t", "N",
       "OpenMP threads, >= 1 (default: all cores or OMP_NUM_THREADS). -t is threads as in "
       "llama.cpp; the temperature is --temp",
       [](CliOptions &o, const std::string &f, const std::string &v) {
         // -t was this binary's temperature before it followed llama.cpp: a value that is no
         // thread count says where the temperature went instead of a bare "expected an integer".
         const std::string hint = f == "-t" ? " (-t is --threads, as in llama.cpp; the "
                                              "temperature is --temp)"
                                            : "";
         std::int64_t n = 0;
         try {
           n = parse_int(f, v);
         } catch (const UsageError &) {
           throw UsageError(f + ": expected a thread count, got '" + v + "'" + hint);
         }
         if (n < 1 || n > 4096)
           throw UsageError(f + ": must be in [1, 4096], got " + v + hint);
         o.threads = static_cast<int>(n);
       }},
      {"--prefill-chunk", nullptr, "N",
       "prompt tokens per compiled prefill call, >= 1 (default 256); bounds the activation "
       "memory of long prompts",
       [](CliOptions &o, const std::string &f, const std::string &v) {
         o.prefill_chunk = parse_int_in(f, v, 1, INT32_MAX);
       }},
      {"--bench", nullptr, nullptr,
       "benchmark: measure memory bandwidth, then time a prefill of random ids and decode "
       "steps; prints one report block (no tokenizer needed)",
       [](CliOptions &o, const std::string &f, const std::string &) {
         set_mode(o, Mode::Bench, f);
       }},
      {"--bench-prompt", nullptr, "N", "--bench prefill length, >= 1 (default 128)",
       [](CliOptions &o, const std::string &f, const std::string &v) {
         o.bench_prompt = parse_int_in(f, v, 1, INT32_MAX);
       }},
      {"--bench-decode", nullptr, "N", "--bench decode steps, >= 0 (default 32)",
       [](CliOptions &o, const std::string &f, const std::string &v) {
         o.bench_decode = parse_int_in(f, v, 0, INT32_MAX);
       }},
      {"--bench-buffer-mib", nullptr, "N",
       "--bench bandwidth buffer in MiB, >= 1 (default 1024)",
       [](CliOptions &o, const std::string &f, const std::string &v) {
         o.bench_buffer_mib = parse_int_in(f, v, 1, 1 << 20);
       }},
      {"--serve", nullptr, nullptr,
       "serve the OpenAI API over HTTP (/v1/completions, /v1/chat/completions, /v1/models, "
       "/health, /metrics) with continuous batching until SIGTERM or Ctrl-C",
       [](CliOptions &o, const std::string &f, const std::string &) {
         set_mode(o, Mode::Serve, f);
       }},
      {"--host", nullptr, "ADDR", "--serve: address to bind (default 127.0.0.1, loopback only)",
       [](CliOptions &o, const std::string &, const std::string &v) { o.serve.host = v; }},
      {"--port", nullptr, "N", "--serve: TCP port, 0 = any free one (default 8080)",
       [](CliOptions &o, const std::string &f, const std::string &v) {
         o.serve.port = static_cast<int>(parse_int_in(f, v, 0, 65535));
       }},
      {"--api-key", nullptr, "KEY",
       "--serve: require the header \"Authorization: Bearer KEY\" (else 401)",
       [](CliOptions &o, const std::string &f, const std::string &v) {
         if (v.empty())
           throw UsageError(f + ": the key must not be empty");
         o.serve.api_key = v;
       }},
      {"--max-batch", nullptr, "N", "--serve: most sequences in one step, >= 1 (default 16)",
       [](CliOptions &o, const std::string &f, const std::string &v) {
         o.serve.max_batch = parse_int_in(f, v, 1, 4096);
       }},
      {"--max-queue", nullptr, "N",
       "--serve: most requests waiting for a place in the batch; more get 429 (default 64)",
       [](CliOptions &o, const std::string &f, const std::string &v) {
         o.serve.max_queue = parse_int_in(f, v, 0, 1 << 20);
       }},
      {"--kv-cache-mib", nullptr, "M",
       "--serve: paged KV cache size in MiB (default: room for --max-batch sequences of the "
       "full compiled context)",
       [](CliOptions &o, const std::string &f, const std::string &v) {
         o.serve.kv_cache_mib = parse_int_in(f, v, 1, 1 << 24);
       }},
      {"--max-body-bytes", nullptr, "N",
       "--serve: largest request body; a larger one gets 413 (default 1048576)",
       [](CliOptions &o, const std::string &f, const std::string &v) {
         o.serve.max_body_bytes = parse_int_in(f, v, 1024, INT32_MAX);
       }},
      {"--shutdown-timeout", nullptr, "S",
       "--serve: on SIGTERM, seconds to let in-flight requests finish before they are "
       "cancelled (default 30)",
       [](CliOptions &o, const std::string &f, const std::string &v) {
         o.serve.shutdown_seconds = static_cast<double>(parse_int_in(f, v, 0, 86400));
       }},
      {"--served-model-name", nullptr, "NAME",
       "--serve: the model id clients must name (default: this binary's file name)",
       [](CliOptions &o, const std::string &f, const std::string &v) {
         if (v.empty())
           throw UsageError(f + ": the name must not be empty");
         o.serve.model_name = v;
       }},
      {"--test-mem-available", nullptr, "BYTES",
       "testing: use BYTES instead of /proc/meminfo's MemAvailable in the memory check",
       [](CliOptions &o, const std::string &f, const std::string &v) {
         o.test_mem_available = static_cast<std::uint64_t>(parse_int_in(f, v, 0, INT64_MAX));
       }},
      {"--quiet", "-q", nullptr, "no timing lines on stderr",
       [](CliOptions &o, const std::string &, const std::string &) { o.quiet = true; }},
      {"--help", "-h", nullptr, "show this help and exit",
       [](CliOptions &o, const std::string &, const std::string &) { o.help = true; }},
      {"--version", nullptr, nullptr, "print the runtime version, ABI and compiled model, and exit",
       [](CliOptions &o, const std::string &, const std::string &) { o.version = true; }},
  };
  return table;
}

} // namespace

CliOptions parse_cli(const std::vector<std::string> &args) {
  CliOptions o;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i];
    std::optional<std::string> inline_value;
    if (arg.rfind("--", 0) == 0) {
      std::size_t eq = arg.find('=');
      if (eq != std::string::npos) {
        inline_value = arg.substr(eq + 1);
        arg = arg.substr(0, eq);
      }
    }
    const Flag *flag = nullptr;
    for (const Flag &f : flags())
      if (arg == f.name || (f.alias && arg == f.alias))
        flag = &f;
    if (!flag)
      throw UsageError(arg.rfind('-', 0) == 0 ? "unknown flag '" + arg + "' (see --help)"
                                              : "unexpected argument '" + arg + "' (see --help)");
    std::string value;
    if (flag->value) {
      if (inline_value)
        value = *inline_value;
      else if (i + 1 < args.size())
        value = args[++i];
      else
        throw UsageError(arg + ": missing value " + flag->value);
    } else if (inline_value) {
      throw UsageError(arg + ": takes no value");
    }
    flag->apply(o, arg, value);
  }
  if ((o.prompt ? 1 : 0) + (o.prompt_ids ? 1 : 0) + (o.prompt_file ? 1 : 0) > 1)
    throw UsageError("--prompt, -f/--file and --prompt-ids are mutually exclusive");
  if (o.prompt_file) // checks below treat it as a text prompt; read_prompt_source fills it
    o.prompt = "";
  if (o.system && !(o.mode == Mode::Chat || o.chat_template))
    throw UsageError("--system applies to --chat and --chat-template only");
  if (o.mode == Mode::Serve && (o.prompt || o.prompt_ids || o.print_ids || o.logits_out ||
                                !o.stop.empty() || o.system))
    throw UsageError("--serve takes its prompts and sampling settings from each request; "
                     "drop --prompt, -f, --prompt-ids, --stop, --system, --print-ids and "
                     "--logits-out");
  if (!o.stop.empty() && o.print_ids)
    throw UsageError("--stop matches text; it cannot be used with --print-ids");
  if (o.mode == Mode::Chat && o.prompt_ids)
    throw UsageError("--chat takes text turns; --prompt-ids cannot be used with it");
  if (o.chat_template && o.prompt_ids)
    throw UsageError("--chat-template applies to text; it cannot be used with --prompt-ids");
  if ((o.mode == Mode::Tokenize || o.mode == Mode::Detokenize || o.mode == Mode::Bench) &&
      (o.prompt || o.prompt_ids))
    throw UsageError("--tokenize, --detokenize and --bench take no --prompt or --prompt-ids");
  if (o.mode == Mode::Chat && o.max_new_tokens_given && o.max_new_tokens == 0)
    throw UsageError("-n: must be >= 1 with --chat (it caps each answer)");
  if (o.chat_template && o.mode == Mode::Chat)
    throw UsageError("--chat-template: --chat already wraps every turn as [INST] .. [/INST]; "
                     "drop the flag");
  if (o.chat_template && !(o.mode == Mode::Tokenize || (o.mode == Mode::Generate && o.prompt)))
    throw UsageError("--chat-template wraps the text of --prompt or --tokenize; there is none to "
                     "wrap");
  if (o.mode != Mode::Generate && (o.print_ids || o.logits_out))
    throw UsageError("--print-ids and --logits-out apply to plain generation only, not to "
                     "--chat, --tokenize, --detokenize or --bench");
  return o;
}

void read_prompt_source(CliOptions &opt, std::istream *in) {
  constexpr std::size_t kMaxPrompt = std::size_t{64} << 20;
  auto read_all = [&](std::istream &s, const std::string &what) {
    std::string text;
    char buf[1 << 16];
    while (s.read(buf, sizeof buf) || s.gcount() > 0) {
      text.append(buf, static_cast<std::size_t>(s.gcount()));
      if (text.size() > kMaxPrompt)
        throw UsageError(what + ": the prompt is over 64 MiB; no compiled context holds it");
    }
    if (s.bad())
      throw UsageError(what + ": read error");
    return text;
  };
  if (opt.prompt_file) {
    std::error_code ec;
    if (std::filesystem::is_directory(*opt.prompt_file, ec))
      throw UsageError("-f " + *opt.prompt_file + ": is a directory");
    std::ifstream f(*opt.prompt_file, std::ios::binary);
    if (!f)
      throw UsageError("-f " + *opt.prompt_file + ": cannot open: " + std::strerror(errno));
    opt.prompt = read_all(f, "-f " + *opt.prompt_file);
  } else if (opt.prompt && *opt.prompt == "-") {
    if (!in)
      throw UsageError("-p -: there is no standard input to read");
    opt.prompt = read_all(*in, "-p -");
    opt.prompt_from_stdin = true;
  }
}

std::string cli_help(const std::string &argv0) {
  std::ostringstream s;
  s << "usage: " << argv0 << " [options]\n"
    << "Runs the Mixtral-style model compiled into this binary by mixtral-compile.\n"
    << "Generated text goes to stdout (flushed per token); timings and errors to stderr.\n"
    << "Generation stops at EOS, after -n tokens, or when the compiled context is full.\n"
    << "Modes (at most one): --chat, --tokenize TEXT, --detokenize IDS, --bench, --serve; "
       "default: generate from --prompt.\n\n"
    << "options:\n";
  for (const Flag &f : flags()) {
    std::string left = std::string("  ") + f.name;
    if (f.alias)
      left += std::string(", ") + f.alias;
    if (f.value)
      left += std::string(" ") + f.value;
    if (left.size() < 30)
      left.resize(30, ' ');
    else
      left += "\n" + std::string(30, ' ');
    s << left << f.help << "\n";
  }
  s << "\nexit status: 0 ok, 1 runtime error, 2 bad command line\n";
  return s.str();
}

} // namespace moec
