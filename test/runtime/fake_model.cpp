// fake_model.cpp — TEST DOUBLE for the generated object; see fake_model.h. Never link this into
// a real binary: it exists so run()/run_main() can be tested without mixtral-compile.
#include "fake_model.h"

#include "moec/abi.h"
#include "test_util.h"

#include <csignal>
#include <cstring>

// The fake's manifest, exported under the generated object's symbol name.
extern "C" const char moec_manifest[] = R"({
  "magic": "MOEC", "abi_version": 2, "target": "cpu", "max_seq_len": 32,
  "config": { "vocab_size": 16, "hidden_size": 4, "intermediate_size": 8,
              "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
              "head_dim": 2, "num_local_experts": 2, "num_experts_per_tok": 1,
              "rms_norm_eps": 1e-5, "rope_theta": 1000000.0, "max_position_embeddings": 32,
              "sliding_window": null, "bos_token_id": 1, "eos_token_id": 2,
              "weight_dtype": "f32" },
  "weights": { "bytes": 512, "alignment": 64, "tensors": [
    { "name": "embed", "dtype": "f32", "shape": [16, 4], "offset": 0,
      "sources": ["model.embed_tokens.weight"] },
    { "name": "layers.0.moe.w1", "dtype": "f32", "shape": [2, 8, 4], "offset": 256,
      "sources": ["model.layers.0.block_sparse_moe.experts.0.w1.weight",
                  "model.layers.0.block_sparse_moe.experts.1.w1.weight"] } ] },
  "kv_cache": { "bytes": 512, "dtype": "f32", "shape": [1, 2, 32, 1, 2] }
})";

namespace moec::test {
namespace {

constexpr std::int64_t kKvHeads = 1, kHeadDim = 2;

void record_and_check(void *weights, void *kv, const std::int32_t *tokens, std::int64_t n,
                      std::int64_t pos) {
  FakeModelLog &log = fake_log();
  log.positions.push_back(pos);
  log.counts.push_back(n);
  log.sequence.resize(static_cast<std::size_t>(pos));
  log.sequence.insert(log.sequence.end(), tokens, tokens + n);
  std::memcpy(&log.weight_probe, weights, 4);
  float *k = static_cast<float *>(kv);
  auto slot = [&](std::int64_t p) {
    return k + moec_kv_offset(0, 0, p, 0, kFakeSeqLen, kKvHeads, kHeadDim);
  };
  // Positions [0, pos) must hold what earlier calls wrote (tokens stored as id + 1000).
  for (std::int64_t p = 0; p < pos; ++p)
    if (*slot(p) < 1000)
      ++log.kv_mismatches;
  for (std::int64_t i = 0; i < n; ++i)
    *slot(pos + i) = static_cast<float>(tokens[i] + 1000);
  if (log.sigint_at_call && log.prefill_calls + log.decode_calls == log.sigint_at_call)
    std::raise(SIGINT);
}

void fill_logits(std::int32_t last, float *logits) {
  FakeModelLog &log = fake_log();
  for (std::int64_t i = 0; i < log.vocab; ++i)
    logits[i] = 0.0f;
  std::int64_t next = (last + 1) % log.vocab;
  if (!log.script.empty()) {
    next = log.script.front();
    log.script.erase(log.script.begin());
  }
  logits[next] = 10.0f;
  if (log.poison_call >= 0 && log.prefill_calls + log.decode_calls > log.poison_call)
    logits[log.poison_token] = log.poison_value;
}

void fake_prefill(void *weights, void *kv, const std::int32_t *tokens, std::int64_t n,
                  std::int64_t pos, float *logits) {
  ++fake_log().prefill_calls;
  record_and_check(weights, kv, tokens, n, pos);
  fill_logits(tokens[n - 1], logits);
}

void fake_decode(void *weights, void *kv, const std::int32_t *token, std::int64_t pos,
                 float *logits) {
  ++fake_log().decode_calls;
  record_and_check(weights, kv, token, 1, pos);
  fill_logits(token[0], logits);
}

} // namespace

FakeModelLog &fake_log() {
  static FakeModelLog log;
  return log;
}

void write_fake_config(const std::string &dir, std::int64_t vocab) {
  write_bytes(dir + "/config.json",
              R"({"architectures": ["MixtralForCausalLM"], "vocab_size": )" + std::to_string(vocab) +
                  R"(, "hidden_size": 4, "intermediate_size": 8, "num_hidden_layers": 1,
  "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 2, "num_local_experts": 2,
  "num_experts_per_tok": 1, "rms_norm_eps": 1e-5, "rope_theta": 1000000.0,
  "max_position_embeddings": 32, "sliding_window": null, "bos_token_id": 1, "eos_token_id": 2,
  "hidden_act": "silu", "tie_word_embeddings": false})");
}

void write_fake_checkpoint(const std::string &path) {
  write_fake_config(path.substr(0, path.rfind('/')), kFakeVocab);
  write_safetensors(path,
                    {{"model.embed_tokens.weight", "F32", {16, 4}, f32_iota(64, 0.5f)},
                     {"model.layers.0.block_sparse_moe.experts.0.w1.weight", "F32", {8, 4},
                      f32_iota(32, 100)},
                     {"model.layers.0.block_sparse_moe.experts.1.w1.weight", "F32", {8, 4},
                      f32_iota(32, 200)}});
}

EntryPoints fake_entry_points() { return {moec_manifest, fake_prefill, fake_decode}; }

EntryPoints fake_entry_points(std::int64_t vocab) {
  static std::string text; // must outlive the returned EntryPoints
  text = moec_manifest;
  const std::string from = "\"vocab_size\": 16", to = "\"vocab_size\": " + std::to_string(vocab);
  text.replace(text.find(from), from.size(), to);
  fake_log().vocab = vocab;
  return {text.c_str(), fake_prefill, fake_decode};
}

std::string fake_manifest_text() { return moec_manifest; }

} // namespace moec::test

// The generated object's symbols, so that moec::run_main links into the test binary.
extern "C" {
void moec_prefill(void *weights, void *kv, const int32_t *tokens, int64_t n_tokens, int64_t pos,
                  float *logits) {
  moec::test::fake_entry_points().prefill(weights, kv, tokens, n_tokens, pos, logits);
}
void moec_decode(void *weights, void *kv, const int32_t *token, int64_t pos, float *logits) {
  moec::test::fake_entry_points().decode(weights, kv, token, pos, logits);
}
}
