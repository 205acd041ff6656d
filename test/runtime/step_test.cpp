// step_test.cpp — moec_step, the batched step over the paged KV pool, on a real compiled model
// (mixtral-compile --emit=obj, linked in here; test/CMakeLists.txt builds one binary per golden
// checkpoint, among them one with a sliding window, and one compiled for nvptx whose kernels run
// in the PTX interpreter, test/gpu-emu). The model is called through the runtime's Backend
// (moec/backend.h), as --serve calls it: host memory for a CPU object, device memory for nvptx.
//
// A schedule runs several sequences of different lengths through moec_step: random chunks of
// their prompts (chunked prefill) interleaved with other sequences' rows, rows shuffled inside
// a step, blocks handed out in shuffled order from a pool larger than needed. Checked here:
//   - batch invariance: every row's logits are bit-identical across schedules that put it in
//     different company, at a different row index, in different blocks, in a pool of another
//     size (a mixed schedule vs one row per step vs the mixed one with rows reversed);
//   - the single-sequence paths (what OUT --prompt calls: Backend::prefill and decode): the same
//     logits as the step, bit for bit. On the CPU they are moec_prefill (last row of each
//     prefix) and moec_decode; on nvptx, whose moec_prefill/moec_decode run f32-activation GEMV
//     kernels where the step's row-count-generic GEMMs take bf16 ones, the CUDA backend runs
//     them through moec_step over the contiguous cache (abi.h's recommendation), and this
//     checks that the identity table over that cache gives the pool's bits;
//   - the pool's index rule equals the contiguous cache's where the two layouts coincide;
//   - nvptx only: moec_step as a CUDA graph (cuda::StepGraph, captured and replayed or updated
//     by the interpreter's driver shim) gives the direct launches' bits, call after call, and
//     costs one cuGraphLaunch per decode token instead of a cuLaunchKernel per kernel.
// The numbers themselves are checked against the numpy reference by test/e2e/check_step.py,
// which reruns the mixed schedule with MOEC_STEP_DUMP=DIR (tokens and logits written there).
#include "moec/abi.h"
#include "moec/backend.h"
#include "moec/checkpoint/pack.h"
#include "moec/cuda.h"
#include "moec/manifest.h"
#include "moec/safetensors.h"
#include "moec/weights.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <numeric>
#include <random>
#include <stdexcept>

#include <dlfcn.h>
#include <unistd.h>
#include <vector>

#ifndef MOEC_STEP_MODEL_DIR
#error "MOEC_STEP_MODEL_DIR must name the checkpoint the object was compiled from"
#endif

namespace moec {
namespace {

/// One sequence of the schedule: all its tokens are known up front (teacher forcing).
struct Sequence {
  std::vector<std::int32_t> tokens;
};

/// One row of a step: position `pos` of sequence `seq`.
struct Row {
  int seq;
  std::int32_t pos;
};

/// The logits of every (sequence, position), filled by a schedule.
using Logits = std::vector<std::vector<std::vector<float>>>; // [seq][pos][V]

/// The backend with the model's weights: copied from the checkpoint, or, for a quantized
/// compile (its manifest names a packed file, with the zero fingerprint of --emit=obj), packed
/// into a temporary file by the compiler's own packer and mapped, as a binary maps its
/// OUT.weights.
std::unique_ptr<Backend> make_model_backend(const Manifest &m, const Checkpoint &ck) {
  std::unique_ptr<Backend> backend =
      make_backend(m, EntryPoints{moec_manifest, moec_prefill, moec_decode, moec_step});
  if (!m.weights_file) {
    backend->load_weights(ck, LoadOptions{});
    backend->warm_up();
    return backend;
  }
  char path[] = "/tmp/moec-step-weights-XXXXXX";
  const int fd = ::mkstemp(path);
  if (fd < 0)
    throw std::runtime_error("cannot create a temporary weights file");
  auto headers = checkpoint::read_checkpoint_headers(MOEC_STEP_MODEL_DIR);
  auto packed = headers ? checkpoint::pack_weights(m, *headers, fd, path)
                        : checkpoint::Result<checkpoint::PackStats>(headers.failure());
  ::close(fd);
  if (!packed) {
    ::unlink(path);
    throw std::runtime_error(packed.error());
  }
  backend->map_weights(path);
  ::unlink(path); // the mapping stays valid
  backend->warm_up();
  return backend;
}

struct Model {
  Manifest m = parse_manifest(moec_manifest);
  Checkpoint ck = Checkpoint::open(MOEC_STEP_MODEL_DIR);
  std::unique_ptr<Backend> backend = make_model_backend(m, ck);
  std::int64_t V() const { return m.config.vocab_size; }
  std::int64_t B() const { return m.step->kv_block_size; }
  std::int64_t MB() const { return m.step->max_blocks_per_seq; }
  /// Floats of a paged pool of n_blocks blocks: [L][2][n_blocks][B][KVH][HD].
  std::size_t pool_floats(std::int64_t n_blocks) const {
    return static_cast<std::size_t>(moec_kv_block_offset(m.config.num_hidden_layers, 0, 0, 0, 0,
                                                         n_blocks, B(), m.config.num_key_value_heads,
                                                         m.config.head_dim));
  }
};

Model &model() {
  static Model *m = new Model();
  return *m;
}

std::vector<Sequence> make_sequences(const std::vector<int> &lengths, std::int64_t vocab,
                                     unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<std::int32_t> id(3, static_cast<std::int32_t>(vocab - 1));
  std::vector<Sequence> seqs;
  for (int n : lengths) {
    Sequence s;
    s.tokens.push_back(1); // BOS
    while (static_cast<int>(s.tokens.size()) < n)
      s.tokens.push_back(id(rng));
    seqs.push_back(std::move(s));
  }
  return seqs;
}

/// Runs `steps` through moec_step with a pool of `n_blocks` blocks, each sequence's blocks
/// drawn in a shuffled order (seeded by `seed`). Every row asks for its logits, or with
/// `sparse_logits` only the rows at odd indices of each step (none in a one-row step); rows
/// without logits keep an empty vector.
Logits run_schedule(const std::vector<Sequence> &seqs, const std::vector<std::vector<Row>> &steps,
                    std::int64_t n_blocks, unsigned seed, bool sparse_logits = false) {
  Model &md = model();
  const std::int64_t V = md.V(), B = md.B(), MB = md.MB();
  md.backend->allocate_kv_pool(md.pool_floats(n_blocks) * sizeof(float)); // a fresh, zeroed one
  std::vector<std::int32_t> free_blocks(static_cast<std::size_t>(n_blocks));
  std::iota(free_blocks.begin(), free_blocks.end(), 0);
  std::shuffle(free_blocks.begin(), free_blocks.end(), std::mt19937(seed));
  std::vector<std::vector<std::int32_t>> tables(seqs.size());
  for (std::size_t s = 0; s < seqs.size(); ++s) {
    const std::size_t blocks = (seqs[s].tokens.size() + B - 1) / B;
    EXPECT_LE(static_cast<std::int64_t>(blocks), MB);
    tables[s].assign(static_cast<std::size_t>(MB), -1); // unused entries are never read
    for (std::size_t i = 0; i < blocks; ++i) {
      EXPECT_FALSE(free_blocks.empty()) << "pool too small for the schedule";
      tables[s][i] = free_blocks.back();
      free_blocks.pop_back();
    }
  }
  Logits out(seqs.size());
  for (std::size_t s = 0; s < seqs.size(); ++s)
    out[s].resize(seqs[s].tokens.size());
  for (const std::vector<Row> &step : steps) {
    const std::size_t n = step.size();
    std::vector<std::int32_t> tokens(n), positions(n), tbl(n * MB), logit_rows;
    for (std::size_t r = 0; r < n; ++r) {
      const Row &row = step[r];
      tokens[r] = seqs[row.seq].tokens[row.pos];
      positions[r] = row.pos;
      std::copy(tables[row.seq].begin(), tables[row.seq].end(), tbl.begin() + r * MB);
      if (!sparse_logits || r % 2 == 1)
        logit_rows.push_back(static_cast<std::int32_t>(r));
    }
    // One spare row past the requested ones: the step must not write it.
    const std::size_t n_logits = logit_rows.size();
    std::vector<float> logits((n_logits + 1) * V, NAN);
    md.backend->step(n_blocks, tokens.data(), positions.data(), tbl.data(),
                     static_cast<std::int64_t>(n), logit_rows.data(),
                     static_cast<std::int64_t>(n_logits), logits.data());
    for (std::size_t i = 0; i < n_logits; ++i) {
      const Row &row = step[static_cast<std::size_t>(logit_rows[i])];
      out[row.seq][row.pos].assign(logits.begin() + i * V, logits.begin() + (i + 1) * V);
    }
    EXPECT_TRUE(std::all_of(logits.end() - V, logits.end(), [](float x) { return std::isnan(x); }))
        << "moec_step wrote past its n_logits rows";
  }
  return out;
}

/// A mixed schedule: each step takes a random chunk (1-9 positions) of a random subset of the
/// unfinished sequences, rows shuffled.
std::vector<std::vector<Row>> mixed_schedule(const std::vector<Sequence> &seqs, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::int32_t> next(seqs.size(), 0);
  std::vector<std::vector<Row>> steps;
  for (;;) {
    std::vector<Row> step;
    for (std::size_t s = 0; s < seqs.size(); ++s) {
      const auto len = static_cast<std::int32_t>(seqs[s].tokens.size());
      if (next[s] == len || rng() % 3 == 0)
        continue;
      const std::int32_t chunk = std::min<std::int32_t>(len - next[s], 1 + rng() % 9);
      for (std::int32_t i = 0; i < chunk; ++i)
        step.push_back({static_cast<int>(s), next[s]++});
    }
    bool done = true;
    for (std::size_t s = 0; s < seqs.size(); ++s)
      done &= next[s] == static_cast<std::int32_t>(seqs[s].tokens.size());
    if (step.empty() && done)
      return steps;
    std::shuffle(step.begin(), step.end(), rng);
    if (!step.empty())
      steps.push_back(std::move(step));
  }
}

/// Each sequence alone, one row per step.
std::vector<std::vector<Row>> single_rows(const std::vector<Sequence> &seqs) {
  std::vector<std::vector<Row>> steps;
  for (std::size_t s = 0; s < seqs.size(); ++s)
    for (std::size_t p = 0; p < seqs[s].tokens.size(); ++p)
      steps.push_back({{static_cast<int>(s), static_cast<std::int32_t>(p)}});
  return steps;
}

/// Number of (sequence, position) rows whose logits differ in any bit; rows `b` has no logits
/// for are skipped (and counted in `compared` otherwise).
int count_bit_differences(const Logits &a, const Logits &b, const char *what,
                          int *compared = nullptr) {
  int differ = 0;
  for (std::size_t s = 0; s < a.size(); ++s)
    for (std::size_t p = 0; p < a[s].size(); ++p) {
      const std::vector<float> &x = a[s][p], &y = b[s][p];
      if (y.empty())
        continue;
      if (compared)
        ++*compared;
      if (x.size() != y.size() || std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) != 0) {
        if (differ++ < 3)
          ADD_FAILURE() << what << ": sequence " << s << " position " << p
                        << " differs in some bit";
      }
    }
  return differ;
}

const std::vector<int> kLengths = {1, 5, 16, 17, 33, 40, 12};

TEST(StepPool, BlockOffsetEqualsContiguousOffsetForTheIdentityTable) {
  const std::int64_t L = 3, S = 48, B = 16, KVH = 2, HD = 8, NB = S / B;
  for (std::int64_t l = 0; l < L; ++l)
    for (std::int64_t w = 0; w < 2; ++w)
      for (std::int64_t p = 0; p < S; ++p)
        for (std::int64_t h = 0; h < KVH; ++h)
          ASSERT_EQ(moec_kv_block_offset(l, w, p / B, p % B, h, NB, B, KVH, HD),
                    moec_kv_offset(l, w, p, h, S, KVH, HD))
              << l << " " << w << " " << p << " " << h;
  // Distinct (block, slot) pairs of one (layer, which) are distinct rows.
  EXPECT_EQ(moec_kv_block_offset(0, 0, 1, 0, 0, 5, B, KVH, HD), B * KVH * HD);
  EXPECT_EQ(moec_kv_block_offset(0, 1, 0, 0, 0, 5, B, KVH, HD), 5 * B * KVH * HD);
}

TEST(StepManifest, DescribesThePool) {
  const Manifest &m = model().m;
  ASSERT_TRUE(m.step);
  EXPECT_EQ(m.step->kv_block_size, 16);
  EXPECT_EQ(m.step->max_blocks_per_seq, (m.max_seq_len + 15) / 16);
}

TEST(Step, RowsAreBitIdenticalWhateverElseIsInTheStep) {
  const std::vector<Sequence> seqs = make_sequences(kLengths, model().V(), 7);
  const std::vector<std::vector<Row>> mixed = mixed_schedule(seqs, 11);
  const Logits a = run_schedule(seqs, mixed, 3 * model().MB() * 4, 1);
  const Logits alone = run_schedule(seqs, single_rows(seqs), 2 * model().MB() * 7 + 3, 2);
  std::vector<std::vector<Row>> reversed = mixed;
  for (std::vector<Row> &step : reversed)
    std::reverse(step.begin(), step.end());
  // Rows reversed, and only every other row's logits requested.
  const Logits c = run_schedule(seqs, reversed, model().MB() * 7, 3, /*sparse_logits=*/true);
  int sparse_rows = 0;
  const int alone_differ = count_bit_differences(a, alone, "mixed steps vs one row per step");
  const int reversed_differ =
      count_bit_differences(a, c, "mixed steps vs rows reversed", &sparse_rows);
  EXPECT_EQ(alone_differ, 0);
  EXPECT_EQ(reversed_differ, 0);
  EXPECT_GT(sparse_rows, 20);
  std::printf("%zu mixed steps of up to %zu rows; rows differing in any bit: %d of %d vs one "
              "row per step, %d of %d vs rows reversed (odd rows' logits only)\n",
              mixed.size(),
              std::max_element(mixed.begin(), mixed.end(), [](auto &x, auto &y) {
                return x.size() < y.size();
              })->size(),
              alone_differ, std::accumulate(kLengths.begin(), kLengths.end(), 0), reversed_differ,
              sparse_rows);
  // The reference check of test/e2e/check_step.py reads these.
  if (const char *dir = std::getenv("MOEC_STEP_DUMP")) {
    nlohmann::json j;
    for (const Sequence &s : seqs)
      j["sequences"].push_back(s.tokens);
    j["vocab_size"] = model().V();
    std::ofstream(std::string(dir) + "/step.json") << j.dump();
    std::ofstream bin(std::string(dir) + "/step_logits.f32", std::ios::binary);
    for (const auto &seq : a)
      for (const auto &row : seq)
        bin.write(reinterpret_cast<const char *>(row.data()),
                  static_cast<std::streamsize>(row.size() * sizeof(float)));
  }
}

TEST(Step, LogitsEqualPrefillAndDecodeBitForBit) {
  Model &md = model();
  const std::vector<Sequence> seqs = make_sequences({40, 23}, md.V(), 5);
  const Logits step = run_schedule(seqs, mixed_schedule(seqs, 4), md.MB() * 2, 9);
  const std::size_t V = static_cast<std::size_t>(md.V());
  int prefill_differ = 0, decode_differ = 0;
  for (std::size_t s = 0; s < seqs.size(); ++s) {
    const std::vector<std::int32_t> &t = seqs[s].tokens;
    md.backend->allocate_kv_cache(); // a fresh, zeroed one
    std::vector<std::int32_t> buf(static_cast<std::size_t>(md.m.max_seq_len), 0);
    std::vector<float> logits(V);
    for (std::size_t n = 1; n <= t.size(); ++n) { // prefill of every prefix
      std::copy(t.begin(), t.begin() + static_cast<std::ptrdiff_t>(n), buf.begin());
      md.backend->prefill(buf.data(), static_cast<std::int64_t>(n), 0, logits.data());
      prefill_differ += std::memcmp(logits.data(), step[s][n - 1].data(), V * 4) != 0;
    }
    // prefill of 3, then decode the rest one by one
    std::copy(t.begin(), t.begin() + 3, buf.begin());
    md.backend->prefill(buf.data(), 3, 0, logits.data());
    for (std::size_t p = 3; p < t.size(); ++p) {
      md.backend->decode(t[p], static_cast<std::int64_t>(p), logits.data());
      decode_differ += std::memcmp(logits.data(), step[s][p].data(), V * 4) != 0;
    }
  }
  std::printf("rows differing from Backend::prefill: %d of %zu; from Backend::decode: %d of %zu\n",
              prefill_differ, seqs[0].tokens.size() + seqs[1].tokens.size(), decode_differ,
              seqs[0].tokens.size() + seqs[1].tokens.size() - 6);
  EXPECT_EQ(prefill_differ, 0);
  EXPECT_EQ(decode_differ, 0);
}

/// The interpreter's count of a host call (test/gpu-emu/driver.cpp, moec_ptxemu_count), -1 if
/// the driver loaded is not the interpreter.
long long shim_count(const char *call) {
  const char *lib = std::getenv("MOEC_CUDA_DRIVER");
  void *h = lib ? ::dlopen(lib, RTLD_NOW | RTLD_NOLOAD) : nullptr;
  auto f = h ? reinterpret_cast<long long (*)(const char *)>(::dlsym(h, "moec_ptxemu_count"))
             : nullptr;
  return f ? f(call) : -1;
}

/// Logits of one schedule on both KV buffers: sequence 0 on the contiguous cache
/// (Backend::prefill of 5 tokens, then decode), sequence 1 on a pool through Backend::step (a
/// 5-row prefill, then one row a step), their decode tokens interleaved, so that every call
/// changes some argument of moec_step (the KV buffer, n_blocks); then 3 decode tokens of
/// sequence 0 alone, whose host calls per token are counted (after a first one, which
/// switches the graph back to the contiguous cache).
struct GraphRun {
  std::vector<std::vector<float>> logits;
  long long launch_calls = 0, graph_launches = 0, kernels = 0; // per decode token
};
GraphRun run_both_caches(const std::vector<Sequence> &seqs) {
  Model &md = model();
  const std::size_t V = static_cast<std::size_t>(md.V());
  const std::int64_t MB = md.MB();
  GraphRun out;
  std::vector<float> logits(V);
  md.backend->allocate_kv_cache();
  md.backend->allocate_kv_pool(md.pool_floats(MB) * sizeof(float));
  std::vector<std::int32_t> table(static_cast<std::size_t>(MB));
  std::iota(table.begin(), table.end(), 0);
  auto step_rows = [&](std::int32_t from, std::int32_t n) {
    std::vector<std::int32_t> positions(static_cast<std::size_t>(n)), tables;
    std::iota(positions.begin(), positions.end(), from);
    for (std::int32_t r = 0; r < n; ++r)
      tables.insert(tables.end(), table.begin(), table.end());
    const std::int32_t last = n - 1;
    md.backend->step(MB, seqs[1].tokens.data() + from, positions.data(), tables.data(), n, &last,
                     1, logits.data());
    out.logits.push_back(logits);
  };
  md.backend->prefill(seqs[0].tokens.data(), 5, 0, logits.data());
  out.logits.push_back(logits);
  step_rows(0, 5);
  for (std::int32_t p = 5; p < 12; ++p) {
    md.backend->decode(seqs[0].tokens[static_cast<std::size_t>(p)], p, logits.data());
    out.logits.push_back(logits);
    step_rows(p, 1);
  }
  // One token to switch back to the contiguous cache (an update), then the counted ones.
  md.backend->decode(seqs[0].tokens[12], 12, logits.data());
  out.logits.push_back(logits);
  const long long calls = shim_count("cuLaunchKernel"), graphs = shim_count("cuGraphLaunch"),
                  kernels = shim_count("kernels");
  constexpr int kTokens = 3;
  for (std::int32_t p = 13; p < 13 + kTokens; ++p) {
    md.backend->decode(seqs[0].tokens[static_cast<std::size_t>(p)], p, logits.data());
    out.logits.push_back(logits);
  }
  out.launch_calls = (shim_count("cuLaunchKernel") - calls) / kTokens;
  out.graph_launches = (shim_count("cuGraphLaunch") - graphs) / kTokens;
  out.kernels = (shim_count("kernels") - kernels) / kTokens;
  return out;
}

TEST(StepGraph, GraphLaunchesGiveTheDirectLaunchesBitsCallAfterCall) {
  Model &md = model();
  if (md.backend->target() != Target::Nvptx || shim_count("kernels") < 0)
    GTEST_SKIP() << "CUDA graphs are the nvptx target's, counted by the PTX interpreter";
  const std::vector<Sequence> seqs = make_sequences({16, 12}, md.V(), 13);
  ::setenv("MOEC_CUDA_GRAPHS", "0", 1);
  const GraphRun direct = run_both_caches(seqs);
  ::setenv("MOEC_CUDA_GRAPHS", "1", 1);
  const cuda::LaunchCounts before = cuda::launch_counts();
  const GraphRun graph = run_both_caches(seqs);
  const cuda::LaunchCounts after = cuda::launch_counts();
  ::unsetenv("MOEC_CUDA_GRAPHS");
  ASSERT_EQ(direct.logits.size(), graph.logits.size());
  int differ = 0, repeated = 0;
  for (std::size_t i = 0; i < graph.logits.size(); ++i) {
    differ += graph.logits[i] != direct.logits[i];
    // A stale replay would give the previous call's logits again.
    repeated += i > 0 && graph.logits[i] == graph.logits[i - 1];
  }
  EXPECT_EQ(differ, 0) << "calls whose logits differ in some bit from the direct launches'";
  EXPECT_EQ(repeated, 0);
  const std::uint64_t graph_launches = after.graph_launches - before.graph_launches;
  const std::uint64_t updates = after.updates - before.updates;
  EXPECT_EQ(graph_launches, graph.logits.size()) << "every call a graph launch";
  EXPECT_GE(updates, 15u) << "each interleaved call updates the executable graph";
  EXPECT_EQ(graph.launch_calls, 0);
  EXPECT_EQ(graph.graph_launches, 1);
  EXPECT_EQ(graph.kernels, direct.kernels);
  EXPECT_EQ(direct.launch_calls, direct.kernels);
  std::printf("host calls per decode token: direct %lld cuLaunchKernel; graph %lld "
              "cuLaunchKernel + %lld cuGraphLaunch (%lld kernels run either way); %zu calls: "
              "%llu captures, %llu updates, %llu instantiates, %d of %zu differing in any bit\n",
              direct.launch_calls, graph.launch_calls, graph.graph_launches, graph.kernels,
              graph.logits.size(),
              static_cast<unsigned long long>(after.captures - before.captures),
              static_cast<unsigned long long>(updates),
              static_cast<unsigned long long>(after.instantiates - before.instantiates), differ,
              graph.logits.size());
}

} // namespace
} // namespace moec
