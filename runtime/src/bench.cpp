// bench.cpp — --bench and the cost model of moec/bench.h.
//
// --bench needs no tokenizer: it loads the model (with the backend's untimed warm-up: a GPU
// model's kernels are JIT-compiled there, not in the timed prefill), runs one prefill of
// --bench-prompt random valid ids at position 0 and --bench-decode greedy decode steps,
// measures the bandwidth of the memory decode reads (Backend::measure_bandwidth), and prints
// one block on stdout that puts the decode rate next to its bandwidth roofline. Built with -O2 -fopenmp whatever the
// build type (runtime/CMakeLists.txt), so the bandwidth loop is vectorised and threaded.
// On nvptx it adds two lines: the host calls a decode token costs (cuLaunchKernel against
// cuGraphLaunch) and the decode time with CUDA graphs on and off, measured alternately.
#include "moec/bench.h"

#include "driver.h"
#include "moec/arena.h"
#include "moec/cuda.h"
#include "moec/dtype.h"
#include "moec/error.h"
#include "moec/sampler.h"
#include "output_file.h"

#include <omp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <ostream>
#include <random>
#include <string>
#include <vector>

namespace moec {

namespace {
/// Weights one token multiplies by in one layer: q, k, v, o, the router and k experts' w1/w3/w2.
/// The attention projections' weights (q, k, v, o) one token multiplies.
double attention_matmul_params(const ModelConfig &c) {
  const double D = static_cast<double>(c.hidden_size), H = static_cast<double>(c.num_attention_heads);
  const double KVH = static_cast<double>(c.num_key_value_heads), HD = static_cast<double>(c.head_dim);
  return D * H * HD + 2 * D * KVH * HD + H * HD * D;
}
/// The sparse FFN's weights one token multiplies: the router and k experts' w1, w3, w2.
double ffn_matmul_params(const ModelConfig &c) {
  const double D = static_cast<double>(c.hidden_size), F = static_cast<double>(c.intermediate_size);
  const double E = static_cast<double>(c.num_local_experts), k = static_cast<double>(c.num_experts_per_tok);
  return E * D + k * 3 * D * F;
}
double layer_matmul_params(const ModelConfig &c) {
  return attention_matmul_params(c) + ffn_matmul_params(c);
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

double weight_bytes_per_token(const Manifest &m) {
  const ModelConfig &c = m.config;
  const double share = static_cast<double>(c.num_experts_per_tok) /
                       static_cast<double>(c.num_local_experts);
  double bytes = 0;
  for (const WeightTensor &t : m.tensors) {
    // Quantized tensors: the data and the scales, in their own formats.
    double b = static_cast<double>(t.nbytes) + (t.quantized() ? static_cast<double>(t.scale.nbytes) : 0);
    if (t.stacked) // experts: k of E are read
      b *= share;
    else if (t.name == "embed" && !c.tie_word_embeddings) // one row (tied: the lm_head)
      b /= static_cast<double>(c.vocab_size);
    bytes += b;
  }
  return bytes;
}

double prefill_flops(const ModelConfig &c, std::int64_t tokens, PrefillFfn last_layer) {
  const double H = static_cast<double>(c.num_attention_heads);
  const double HD = static_cast<double>(c.head_dim);
  const double L = static_cast<double>(c.num_hidden_layers);
  double ctx_sum = 0; // positions attended to, summed over the tokens
  for (std::int64_t t = 0; t < tokens; ++t)
    ctx_sum += static_cast<double>(c.sliding_window ? std::min<std::int64_t>(t + 1, *c.sliding_window)
                                                    : t + 1);
  const double T = static_cast<double>(tokens);
  // The last layer's FFN rows: all of them, or the last one (moec_prefill).
  const double skipped = last_layer == PrefillFfn::LastRowInLastLayer && tokens > 0 ? T - 1 : 0;
  return L * (2 * layer_matmul_params(c) * T + 2 * 2 * H * HD * ctx_sum) -
         2 * ffn_matmul_params(c) * skipped +
         2 * static_cast<double>(c.vocab_size) * static_cast<double>(c.hidden_size);
}

namespace {
double process_cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}
} // namespace

BandwidthProbe measure_read_bandwidth(const void *data, std::uint64_t bytes, int passes) {
  const std::int64_t n = static_cast<std::int64_t>(bytes / sizeof(std::uint64_t));
  if (n == 0)
    throw Error("bandwidth probe: the buffer is smaller than 8 bytes");
  const auto *buf = static_cast<const std::uint64_t *>(data);
  volatile std::uint64_t sink = 0; // keeps the sums alive
  std::vector<double> gbs;
  double cpu = 0, wall = 0;
  for (int r = 0; r <= std::max(passes, 1); ++r) { // pass 0: untimed, wakes threads and TLBs
    const double cpu0 = process_cpu_seconds();
    auto t0 = driver::Clock::now();
    std::uint64_t sum = 0;
#pragma omp parallel for simd schedule(static) reduction(+ : sum)
    for (std::int64_t i = 0; i < n; ++i)
      sum += buf[i];
    const double secs = driver::seconds_since(t0);
    sink = sink + sum;
    if (r == 0 || secs <= 0)
      continue;
    gbs.push_back(static_cast<double>(n) * sizeof(std::uint64_t) / secs / 1e9);
    cpu += process_cpu_seconds() - cpu0;
    wall += secs;
  }
  (void)sink;
  BandwidthProbe p;
  if (gbs.empty())
    return p;
  std::sort(gbs.begin(), gbs.end());
  p.passes = static_cast<int>(gbs.size());
  p.median_gbs = gbs.size() % 2 ? gbs[gbs.size() / 2]
                                : 0.5 * (gbs[gbs.size() / 2 - 1] + gbs[gbs.size() / 2]);
  p.min_gbs = gbs.front();
  p.max_gbs = gbs.back();
  p.cpu_share = cpu / (wall * omp_get_max_threads());
  return p;
}

namespace {
/// The share of [data, data + bytes) mapped by 2 MiB pages, from /proc/self/smaps, or -1 when
/// unknown: AnonHugePages (an arena on transparent huge pages) plus FilePmdMapped (a packed
/// file's page-cache folios of 2 MiB mapped whole, which ext4's large folios give when the
/// file was written in large pieces and memory was not too fragmented). Read bandwidth
/// depends on it: on the 2-core KVM VM, 1 GiB on huge pages read 19-24 GB/s, on 4 KiB pages
/// 13-19 (same run). A q4 file as its compile wrote it was 29% PMD-mapped, read back 100%.
double huge_page_share(const void *data, std::uint64_t bytes) {
  std::ifstream smaps("/proc/self/smaps");
  const auto lo = reinterpret_cast<std::uintptr_t>(data), hi = lo + bytes;
  std::string line;
  bool inside = false;
  std::uint64_t huge_kb = 0;
  bool found = false;
  while (std::getline(smaps, line)) {
    unsigned long begin = 0, end = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> begin >> dash >> end && dash == '-' && line.find(':') > line.find(' ')) {
      inside = begin < hi && end > lo;
      found = found || inside;
      continue;
    }
    if (inside && (line.rfind("AnonHugePages:", 0) == 0 || line.rfind("FilePmdMapped:", 0) == 0))
      huge_kb += std::stoull(line.substr(14));
  }
  return found && bytes > 0 ? std::min(1.0, static_cast<double>(huge_kb) * 1024 / bytes) : -1;
}

std::string huge_pages_text(const void *data, std::uint64_t bytes) {
  const double huge = huge_page_share(data, bytes);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s%.0f%% on 2 MiB pages", huge < 0 ? "? " : "",
                100 * std::max(huge, 0.0));
  return buf;
}

/// The probe over a fresh buffer, written first so that its pages are real, not the zero page;
/// `pages` (when given) gets how it is mapped.
BandwidthProbe probe_fresh_buffer(std::uint64_t bytes, int passes, std::string *pages = nullptr) {
  const std::int64_t n = static_cast<std::int64_t>(bytes / sizeof(std::uint64_t));
  if (n == 0)
    throw Error("bandwidth probe: the buffer is smaller than 8 bytes");
  Arena arena(static_cast<std::uint64_t>(n) * sizeof(std::uint64_t), "bandwidth probe buffer");
  auto *buf = static_cast<std::uint64_t *>(arena.data());
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i) // fault the pages in, on the threads that will read them
    buf[i] = static_cast<std::uint64_t>(i);
  if (pages)
    *pages = huge_pages_text(buf, arena.bytes());
  return measure_read_bandwidth(buf, arena.bytes(), passes);
}
} // namespace

double measure_read_bandwidth_gbs(std::uint64_t bytes, int passes) {
  return probe_fresh_buffer(bytes, passes).median_gbs;
}

std::uint64_t last_level_cache_bytes() {
  // sysfs first, as lscpu: the cache one core can use. glibc's sysconf can report a whole
  // package's L3 (256 MiB on an 8-CCD EPYC VM whose cores each see 32 MiB).
  std::uint64_t best = 0;
  for (int index = 0; index < 8; ++index) {
    std::ifstream f("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) + "/size");
    std::uint64_t n = 0;
    char unit = 0;
    if (f >> n) {
      if (f >> unit)
        n <<= unit == 'K' ? 10 : unit == 'M' ? 20 : unit == 'G' ? 30 : 0;
      best = std::max(best, n);
    }
  }
  if (best > 0)
    return best;
  const long l3 = ::sysconf(_SC_LEVEL3_CACHE_SIZE), l2 = ::sysconf(_SC_LEVEL2_CACHE_SIZE);
  const long llc = l3 > 0 ? l3 : l2;
  return llc > 0 ? static_cast<std::uint64_t>(llc) : std::uint64_t{32} << 20;
}

namespace {

/// Passes of the probes: the best of several is the rate the memory allows; one pass can
/// lose a third of it to another process (the median of 5 moved by 30% between binaries).
constexpr int kProbePasses = 7;

} // namespace

BandwidthReport probe_host_bandwidth(const Arena &weights, std::uint64_t buffer_bytes) {
  const bool use_weights = weights.bytes() >= 8 * last_level_cache_bytes();
  // The reference: a fresh buffer (an arena: MADV_HUGEPAGE), printed beside the roofline so
  // that a weights mapping on 4 KiB pages shows as what it costs.
  std::string fresh_pages;
  const BandwidthProbe fresh = probe_fresh_buffer(buffer_bytes, kProbePasses, &fresh_pages);
  const BandwidthProbe p =
      use_weights ? measure_read_bandwidth(weights.data(), weights.bytes(), kProbePasses) : fresh;

  char text[512];
  if (use_weights)
    std::snprintf(text, sizeof text, "reading the model's %.2f GB of weights as mapped, %s",
                  static_cast<double>(weights.bytes()) / 1e9,
                  huge_pages_text(weights.data(), weights.bytes()).c_str());
  else
    std::snprintf(text, sizeof text,
                  "reading a %.0f MiB buffer, %s: the weights, %.1f MB, would fit in the caches",
                  static_cast<double>(buffer_bytes) / (1 << 20), fresh_pages.c_str(),
                  static_cast<double>(weights.bytes()) / 1e6);
  std::string what = text;
  std::snprintf(text, sizeof text,
                "memory bandwidth (measured: %s; best of %d passes, median %.1f, range %.1f-%.1f, "
                "%.0f%% of the processors): %.1f GB/s\n",
                what.c_str(), p.passes, p.median_gbs, p.min_gbs, p.max_gbs,
                100 * std::min(p.cpu_share, 1.0), p.max_gbs);
  std::string line = text;
  if (use_weights) {
    std::snprintf(text, sizeof text,
                  "reference, not the roofline: a fresh %.0f MiB buffer, %s: best of %d passes "
                  "%.1f GB/s (median %.1f)\n",
                  static_cast<double>(buffer_bytes) / (1 << 20), fresh_pages.c_str(), fresh.passes,
                  fresh.max_gbs, fresh.median_gbs);
    line += text;
  }
  if (std::min(p.cpu_share, fresh.cpu_share) < 0.9)
    line += "note: the probe's threads got less than 90% of the processors (a busy machine): "
            "the bandwidth and the roofline are too low\n";
  return {p.max_gbs, line};
}

namespace driver {
namespace {

/// nvptx: moec_step's host calls per decode token and the decode time per token with CUDA graphs
/// on and off, in alternating rounds ($MOEC_CUDA_GRAPHS, which the CUDA backend reads per step;
/// restored after) that decode positions [P, P + ids.size()) again with the same ids (the KV
/// cache gets the same values back). The medians of each side, and their ratio: the launch
/// gaps the graph removes.
std::string graph_comparison(Backend &backend, std::int64_t P, const std::vector<std::int32_t> &ids,
                             std::int64_t vocab) {
  constexpr int kRounds = 3;
  const char *saved = std::getenv("MOEC_CUDA_GRAPHS");
  const std::string restore = saved ? saved : "";
  std::vector<float> logits(static_cast<std::size_t>(vocab));
  std::vector<double> ms[2];                   // per token: [0] graphs off, [1] on
  double launches[2] = {0, 0}, graphs[2] = {0, 0}; // per token, of the last round of each side
  const double n = static_cast<double>(ids.size());
  for (int round = 0; round < 2 * kRounds; ++round) {
    const int on = round % 2;
    ::setenv("MOEC_CUDA_GRAPHS", on ? "1" : "0", 1);
    const cuda::LaunchCounts before = cuda::launch_counts();
    const auto t = Clock::now();
    for (std::size_t i = 0; i < ids.size(); ++i)
      backend.decode(ids[i], P + static_cast<std::int64_t>(i), logits.data());
    ms[on].push_back(1e3 * seconds_since(t) / n);
    const cuda::LaunchCounts after = cuda::launch_counts();
    launches[on] = static_cast<double>(after.kernel_launches - before.kernel_launches) / n;
    graphs[on] = static_cast<double>(after.graph_launches - before.graph_launches) / n;
  }
  if (saved)
    ::setenv("MOEC_CUDA_GRAPHS", restore.c_str(), 1);
  else
    ::unsetenv("MOEC_CUDA_GRAPHS");
  for (auto &v : ms)
    std::sort(v.begin(), v.end());
  const double off_ms = ms[0][kRounds / 2], on_ms = ms[1][kRounds / 2];
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "launches per decode token: CUDA graphs on %.0f cuLaunchKernel + %.0f "
                "cuGraphLaunch, off %.0f cuLaunchKernel + %.0f cuGraphLaunch\n"
                "decode graphs on/off: %.3f / %.3f ms per token (median of %d alternating rounds "
                "of %zu tokens) = %.2fx\n",
                launches[1], graphs[1], launches[0], graphs[0], on_ms, off_ms, kRounds,
                ids.size(), on_ms > 0 ? off_ms / on_ms : 0.0);
  return buf;
}

} // namespace

int bench(const CliOptions &opt, const Manifest &m, const EntryPoints &entry, RunIO &io) {
  const ModelConfig &c = m.config;
  if (opt.bench_prompt + opt.bench_decode > m.max_seq_len)
    throw UsageError("--bench-prompt " + std::to_string(opt.bench_prompt) + " + --bench-decode " +
                     std::to_string(opt.bench_decode) + " exceed the compiled context of " +
                     std::to_string(m.max_seq_len) + " tokens");
  model_dir(opt, m); // fail early when there is none

  const std::uint64_t probe_bytes = static_cast<std::uint64_t>(opt.bench_buffer_mib) << 20;
  Session session(m, entry, opt, io);
  std::mt19937_64 rng(opt.seed ? *opt.seed : 0);
  std::uniform_int_distribution<std::int32_t> pick(0, static_cast<std::int32_t>(c.vocab_size - 1));
  std::vector<std::int32_t> prompt(static_cast<std::size_t>(opt.bench_prompt));
  for (std::int32_t &id : prompt)
    id = pick(rng);

  session.backend().touch_weights(); // the timed steps run on resident weights, as a server's do
  auto t0 = Clock::now();
  session.prefill(prompt);
  const double prefill_s = seconds_since(t0);

  auto t1 = Clock::now();
  std::vector<std::int32_t> decoded; // the ids decoded, for the graph comparison
  for (std::int64_t i = 0; i < opt.bench_decode; ++i) {
    decoded.push_back(Sampler::argmax(session.logits(), c.vocab_size));
    session.decode(decoded.back());
  }
  const double decode_s = seconds_since(t1);
  std::string graph_lines;
  if (session.backend().target() == Target::Nvptx && !decoded.empty()) {
    decoded.resize(std::min<std::size_t>(decoded.size(), 16));
    graph_lines = graph_comparison(session.backend(), opt.bench_prompt, decoded, c.vocab_size);
  }

  // The roofline is the bandwidth of the memory decode reads, measured after the run (on the
  // CPU: the weights' own pages; on a GPU: device-to-device copies).
  const BandwidthReport probe = session.backend().measure_bandwidth(probe_bytes);
  const double bandwidth = probe.gbs;
  const std::string &probe_line = probe.line;

  const double P = static_cast<double>(opt.bench_prompt), N = static_cast<double>(opt.bench_decode);
  const double bytes_per_token = weight_bytes_per_token(m);
  const double prefill_tps = prefill_s > 0 ? P / prefill_s : 0;
  // Both targets' prefills (CPU: moec_prefill; GPU: moec_step over the cache, asking for the
  // last row's logits) run the last layer's FFN for the last row alone.
  const double gflops =
      prefill_s > 0
          ? prefill_flops(c, opt.bench_prompt, PrefillFfn::LastRowInLastLayer) / prefill_s / 1e9
          : 0;
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
  io.out << probe_line;
  std::snprintf(buf, sizeof buf, "prefill: %lld tokens in %.3f s = %.2f tok/s, %.2f GFLOP/s\n",
                static_cast<long long>(opt.bench_prompt), prefill_s, prefill_tps, gflops);
  io.out << buf;
  std::snprintf(buf, sizeof buf,
                "decode:  %lld tokens in %.3f s = %.2f tok/s; weight bytes read per token %.3f "
                "GB (%.1f GB/s); roofline (bandwidth / bytes per token) %.2f tok/s; "
                "ratio Y/R = %.1f%%\n",
                static_cast<long long>(opt.bench_decode), decode_s, decode_tps,
                bytes_per_token / 1e9, decode_tps * bytes_per_token / 1e9, roofline, ratio);
  io.out << buf << graph_lines;
  flush_checked(io.out);
  return 0;
}

} // namespace driver
} // namespace moec
