// bench.cpp — --bench and the cost model of moec/bench.h.
//
// --bench needs no tokenizer: it measures the machine's read bandwidth first (before the
// weights take memory), loads the model, runs one prefill of --bench-prompt random valid ids
// at position 0 and --bench-decode greedy decode steps, and prints one block on stdout that
// puts the decode rate next to its bandwidth roofline. Built with -O2 -fopenmp whatever the
// build type (runtime/CMakeLists.txt), so the bandwidth loop is vectorised and threaded.
#include "moec/bench.h"

#include "driver.h"
#include "moec/arena.h"
#include "moec/cuda.h"
#include "moec/dtype.h"
#include "moec/error.h"
#include "moec/sampler.h"
#include "output_file.h"

#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <ostream>
#include <random>

namespace moec {

namespace {
/// Weights one token multiplies by in one layer: q, k, v, o, the router and k experts' w1/w3/w2.
double layer_matmul_params(const ModelConfig &c) {
  const double D = static_cast<double>(c.hidden_size), F = static_cast<double>(c.intermediate_size);
  const double H = static_cast<double>(c.num_attention_heads);
  const double KVH = static_cast<double>(c.num_key_value_heads);
  const double HD = static_cast<double>(c.head_dim), E = static_cast<double>(c.num_local_experts);
  const double k = static_cast<double>(c.num_experts_per_tok);
  return D * H * HD + 2 * D * KVH * HD + H * HD * D + E * D + k * 3 * D * F;
}
} // namespace

double active_params_per_token(const ModelConfig &c) {
  const double D = static_cast<double>(c.hidden_size), V = static_cast<double>(c.vocab_size);
  const double L = static_cast<double>(c.num_hidden_layers);
  const double per_layer = layer_matmul_params(c) + 2 * D /* norms */;
  return L * per_layer + D /* final norm */ + V * D /* lm_head */ + D /* embedding row */;
}

double weight_bytes_per_token(const ModelConfig &c) {
  return active_params_per_token(c) * static_cast<double>(dtype_size(c.weight_dtype));
}

double prefill_flops(const ModelConfig &c, std::int64_t tokens) {
  const double H = static_cast<double>(c.num_attention_heads);
  const double HD = static_cast<double>(c.head_dim);
  const double L = static_cast<double>(c.num_hidden_layers);
  double ctx_sum = 0; // positions attended to, summed over the tokens
  for (std::int64_t t = 0; t < tokens; ++t)
    ctx_sum += static_cast<double>(c.sliding_window ? std::min<std::int64_t>(t + 1, *c.sliding_window)
                                                    : t + 1);
  const double T = static_cast<double>(tokens);
  return L * (2 * layer_matmul_params(c) * T + 2 * 2 * H * HD * ctx_sum) +
         2 * static_cast<double>(c.vocab_size) * static_cast<double>(c.hidden_size);
}

double measure_read_bandwidth_gbs(std::uint64_t bytes, int repeats) {
  const std::int64_t n = static_cast<std::int64_t>(bytes / sizeof(std::uint64_t));
  if (n == 0)
    throw Error("bandwidth probe: the buffer is smaller than 8 bytes");
  Arena arena(static_cast<std::uint64_t>(n) * sizeof(std::uint64_t), "bandwidth probe buffer");
  auto *buf = static_cast<std::uint64_t *>(arena.data());
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i) // fault the pages in, on the threads that will read them
    buf[i] = static_cast<std::uint64_t>(i);
  volatile std::uint64_t sink = 0; // keeps the sums alive
  double best = 0;
  for (int r = 0; r < std::max(repeats, 1); ++r) {
    auto t0 = driver::Clock::now();
    std::uint64_t sum = 0;
#pragma omp parallel for simd schedule(static) reduction(+ : sum)
    for (std::int64_t i = 0; i < n; ++i)
      sum += buf[i];
    const double secs = driver::seconds_since(t0);
    sink = sink + sum;
    if (secs > 0)
      best = std::max(best, static_cast<double>(n) * sizeof(std::uint64_t) / secs / 1e9);
  }
  (void)sink;
  return best;
}

namespace driver {

int bench(const CliOptions &opt, const Manifest &m, const EntryPoints &entry, RunIO &io) {
  const ModelConfig &c = m.config;
  if (opt.bench_prompt + opt.bench_decode > m.max_seq_len)
    throw UsageError("--bench-prompt " + std::to_string(opt.bench_prompt) + " + --bench-decode " +
                     std::to_string(opt.bench_decode) + " exceed the compiled context of " +
                     std::to_string(m.max_seq_len) + " tokens");
  model_dir(opt, m); // fail early when there is none

  // Bandwidth first, while the weights do not hold memory yet, and again after the run: on a
  // shared VM one probe can land in a noisy moment, and a roofline that is too low would make
  // the ratio meaningless (over 100%). The best probe is the roofline.
  // A GPU model's roofline is the device's memory (copies device to device), not the host's.
  const std::uint64_t probe_bytes = static_cast<std::uint64_t>(opt.bench_buffer_mib) << 20;
  const bool gpu = m.target == "nvptx";
  auto probe = [&] {
    return gpu ? cuda::measure_device_copy_bandwidth_gbs(probe_bytes)
               : measure_read_bandwidth_gbs(probe_bytes);
  };
  double bandwidth = probe();

  Session session(m, entry, opt, io);
  std::mt19937_64 rng(opt.seed ? *opt.seed : 0);
  std::uniform_int_distribution<std::int32_t> pick(0, static_cast<std::int32_t>(c.vocab_size - 1));
  std::vector<std::int32_t> prompt(static_cast<std::size_t>(opt.bench_prompt));
  for (std::int32_t &id : prompt)
    id = pick(rng);

  auto t0 = Clock::now();
  session.prefill(prompt);
  const double prefill_s = seconds_since(t0);

  auto t1 = Clock::now();
  for (std::int64_t i = 0; i < opt.bench_decode; ++i)
    session.decode(Sampler::argmax(session.logits(), c.vocab_size));
  const double decode_s = seconds_since(t1);
  bandwidth = std::max(bandwidth, probe());

  const double P = static_cast<double>(opt.bench_prompt), N = static_cast<double>(opt.bench_decode);
  const double bytes_per_token = weight_bytes_per_token(c);
  const double prefill_tps = prefill_s > 0 ? P / prefill_s : 0;
  const double gflops = prefill_s > 0 ? prefill_flops(c, opt.bench_prompt) / prefill_s / 1e9 : 0;
  const double decode_tps = decode_s > 0 ? N / decode_s : 0;
  const double roofline = bandwidth * 1e9 / bytes_per_token;
  const double ratio = roofline > 0 ? 100.0 * decode_tps / roofline : 0;

  char buf[512];
  std::snprintf(buf, sizeof buf,
                "model: %lld layers, %lld hidden, %lld intermediate, %lld experts top-%lld, "
                "%lld vocab, weights %s\n",
                static_cast<long long>(c.num_hidden_layers), static_cast<long long>(c.hidden_size),
                static_cast<long long>(c.intermediate_size),
                static_cast<long long>(c.num_local_experts),
                static_cast<long long>(c.num_experts_per_tok), static_cast<long long>(c.vocab_size),
                dtype_name(c.weight_dtype));
  io.out << buf;
  std::snprintf(buf, sizeof buf,
                gpu ? "device memory bandwidth (measured: device-to-device copies, read + write, "
                      "best of 6 probes): %.1f GB/s\n"
                    : "memory bandwidth (measured, best of 6 probes): %.1f GB/s\n",
                bandwidth);
  io.out << buf;
  std::snprintf(buf, sizeof buf, "prefill: %lld tokens in %.3f s = %.2f tok/s, %.2f GFLOP/s\n",
                static_cast<long long>(opt.bench_prompt), prefill_s, prefill_tps, gflops);
  io.out << buf;
  std::snprintf(buf, sizeof buf,
                "decode:  %lld tokens in %.3f s = %.2f tok/s; weight bytes read per token %.3f "
                "GB (%.1f GB/s); roofline (bandwidth / bytes per token) %.2f tok/s; "
                "ratio Y/R = %.1f%%\n",
                static_cast<long long>(opt.bench_decode), decode_s, decode_tps,
                bytes_per_token / 1e9, decode_tps * bytes_per_token / 1e9, roofline, ratio);
  io.out << buf;
  flush_checked(io.out);
  return 0;
}

} // namespace driver
} // namespace moec
