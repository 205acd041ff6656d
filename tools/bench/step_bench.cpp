// step_bench.cpp — throughput of the compiled batched step (moec_step) against the one-token
// path (moec_decode), measured in one run.
//
//   moec_step_bench LIBRARY MODEL_DIR [--rows 1,4,16] [--context 32] [--steps 16] [--repeat 3]
//
// LIBRARY is a model compiled with `mixtral-compile MODEL_DIR --emit=obj` and linked into a
// shared library (tools/bench/step.sh does both). For each row count n: n sequences, each
// prefilled through moec_step with `context` tokens (one chunk per sequence), then `steps`
// decode steps of n rows (one per sequence, each at its own position, all logits requested).
// Prints rows/s for each n, the ratio to the first n (1 by default: what batching buys: the expert GEMMs see n
// rows per weight read instead of one), and moec_decode's tokens/s on the same context.
// Each figure is the best of --repeat rounds, the rounds interleaving the row counts, so that a
// busy machine slows all of them alike. The library is dlopen()ed so that one benchmark binary
// serves any model.
#include "moec/abi.h"
#include "moec/manifest.h"
#include "moec/safetensors.h"
#include "moec/weights.h"

#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

using StepFn = decltype(&moec_step);
using DecodeFn = decltype(&moec_decode);
using PrefillFn = decltype(&moec_prefill);

struct Options {
  std::string library, model;
  std::vector<int> rows = {1, 4, 16};
  int context = 32, steps = 16, repeat = 3;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// n sequences of `context` tokens prefilled, then `steps` decode steps of n rows: rows/s.
double step_rows_per_second(StepFn step, const moec::Manifest &m, void *weights, int n,
                            const Options &opt) {
  const std::int64_t B = m.step->kv_block_size, MB = m.step->max_blocks_per_seq;
  const std::int64_t blocks_per_seq = (opt.context + opt.steps + B - 1) / B;
  const std::int64_t n_blocks = blocks_per_seq * n;
  const auto &c = m.config;
  std::vector<float> pool(static_cast<std::size_t>(moec_kv_block_offset(
      c.num_hidden_layers, 0, 0, 0, 0, n_blocks, B, c.num_key_value_heads, c.head_dim)));
  std::vector<std::int32_t> tables(static_cast<std::size_t>(n * MB), 0);
  for (int s = 0; s < n; ++s)
    for (std::int64_t i = 0; i < blocks_per_seq; ++i)
      tables[static_cast<std::size_t>(s * MB + i)] = static_cast<std::int32_t>(i * n + s);
  std::mt19937 rng(1);
  auto token = [&] { return static_cast<std::int32_t>(3 + rng() % (c.vocab_size - 3)); };
  std::vector<float> logits(static_cast<std::size_t>(n * c.vocab_size));
  // Prefill: one chunk of `context` rows per sequence, its last row's logits.
  for (int s = 0; s < n; ++s) {
    std::vector<std::int32_t> toks(opt.context), pos(opt.context),
        tbl(static_cast<std::size_t>(opt.context * MB));
    for (int p = 0; p < opt.context; ++p) {
      toks[p] = token();
      pos[p] = p;
      std::copy(tables.begin() + s * MB, tables.begin() + (s + 1) * MB, tbl.begin() + p * MB);
    }
    const std::int32_t last = opt.context - 1;
    step(weights, pool.data(), n_blocks, toks.data(), pos.data(), tbl.data(), opt.context, &last,
         1, logits.data());
  }
  std::vector<std::int32_t> toks(n), pos(n), rows(n);
  std::iota(rows.begin(), rows.end(), 0);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < opt.steps; ++i) {
    for (int s = 0; s < n; ++s) {
      toks[s] = token();
      pos[s] = opt.context + i;
    }
    step(weights, pool.data(), n_blocks, toks.data(), pos.data(), tables.data(), n, rows.data(),
         n, logits.data());
  }
  return double(n) * opt.steps / seconds_since(t0);
}

double decode_tokens_per_second(PrefillFn prefill, DecodeFn decode, const moec::Manifest &m,
                                void *weights, const Options &opt) {
  std::vector<float> kv(m.kv_bytes / 4), logits(static_cast<std::size_t>(m.config.vocab_size));
  std::vector<std::int32_t> toks(static_cast<std::size_t>(m.max_seq_len), 5);
  prefill(weights, kv.data(), toks.data(), opt.context, 0, logits.data());
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < opt.steps; ++i)
    decode(weights, kv.data(), toks.data(), opt.context + i, logits.data());
  return opt.steps / seconds_since(t0);
}

std::vector<int> parse_list(const std::string &s) {
  std::vector<int> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');)
    out.push_back(std::stoi(item));
  return out;
}

int run(const Options &opt) {
  void *lib = ::dlopen(opt.library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    std::fprintf(stderr, "moec_step_bench: %s\n", ::dlerror());
    return 1;
  }
  auto manifest = static_cast<const char *>(::dlsym(lib, "moec_manifest"));
  auto step = reinterpret_cast<StepFn>(::dlsym(lib, "moec_step"));
  auto prefill = reinterpret_cast<PrefillFn>(::dlsym(lib, "moec_prefill"));
  auto decode = reinterpret_cast<DecodeFn>(::dlsym(lib, "moec_decode"));
  if (!manifest || !step || !prefill || !decode) {
    std::fprintf(stderr, "moec_step_bench: %s does not export moec_step (a CPU model of ABI 2)\n",
                 opt.library.c_str());
    return 1;
  }
  const moec::Manifest m = moec::parse_manifest(manifest);
  if (opt.context < 1 || opt.steps < 1 || opt.context + opt.steps > m.max_seq_len) {
    std::fprintf(stderr, "moec_step_bench: --context + --steps must be in [2, %lld]\n",
                 static_cast<long long>(m.max_seq_len));
    return 2;
  }
  const moec::Checkpoint ck = moec::Checkpoint::open(opt.model);
  moec::Arena weights = moec::load_weights(m, ck, moec::LoadOptions{});
  step_rows_per_second(step, m, weights.data(), 1, opt); // warm-up: page in the weights
  double single = 0;
  std::vector<double> best(opt.rows.size(), 0.0);
  for (int round = 0; round < opt.repeat; ++round) {
    single = std::max(single, decode_tokens_per_second(prefill, decode, m, weights.data(), opt));
    for (std::size_t i = 0; i < opt.rows.size(); ++i)
      best[i] = std::max(best[i], step_rows_per_second(step, m, weights.data(), opt.rows[i], opt));
  }
  std::printf("model %s, context %d, %d decode steps per measurement, best of %d\n",
              opt.model.c_str(), opt.context, opt.steps, opt.repeat);
  std::printf("moec_decode (one sequence): %.2f tok/s\n", single);
  std::printf("%6s %12s %12s %14s\n", "rows", "steps/s", "rows/s", "rows/s ratio");
  for (std::size_t i = 0; i < opt.rows.size(); ++i) // ratio to the first row count (1)
    std::printf("%6d %12.2f %12.2f %13.2fx\n", opt.rows[i], best[i] / opt.rows[i], best[i],
                best[i] / best[0]);
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  Options opt;
  std::vector<std::string> args(argv + 1, argv + argc);
  std::vector<std::string> positional;
  try {
    for (std::size_t i = 0; i < args.size(); ++i) {
      const std::string &a = args[i];
      const bool has_value = i + 1 < args.size();
      if (a == "--rows" && has_value)
        opt.rows = parse_list(args[++i]);
      else if (a == "--context" && has_value)
        opt.context = std::stoi(args[++i]);
      else if (a == "--steps" && has_value)
        opt.steps = std::stoi(args[++i]);
      else if (a == "--repeat" && has_value)
        opt.repeat = std::stoi(args[++i]);
      else
        positional.push_back(a);
    }
    if (positional.size() != 2 || opt.rows.empty() || opt.repeat < 1 ||
        std::any_of(opt.rows.begin(), opt.rows.end(), [](int n) { return n < 1; })) {
      std::fprintf(stderr, "usage: moec_step_bench LIBRARY MODEL_DIR [--rows 1,4,16] "
                           "[--context 32] [--steps 16] [--repeat 3]\n");
      return 2;
    }
    opt.library = positional[0];
    opt.model = positional[1];
    return run(opt);
  } catch (const std::exception &e) {
    std::fprintf(stderr, "moec_step_bench: %s\n", e.what());
    return 1;
  }
}
