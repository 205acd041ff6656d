// kv_layout_test.cpp — the KV cache contract across the compiler and the runtime: a real model
// compiled by mixtral-compile (--emit=obj, linked in here) writes its keys and values during
// prefill and decode, and the runtime reads them back through KvCache::offset (moec_kv_offset).
// Layer 0's keys and values are recomputed here by plain loops from the checkpoint, so a
// layout change on either side alone — slot order of layer/which/position/head, or decode
// writing another slot than prefill — fails. Later layers: every written row is non-zero, every
// row past the filled positions is untouched.
#include "moec/abi.h"
#include "moec/kv_cache.h"
#include "moec/manifest.h"
#include "moec/safetensors.h"
#include "moec/weights.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#ifndef MOEC_KV_LAYOUT_MODEL_DIR
#error "MOEC_KV_LAYOUT_MODEL_DIR must name the checkpoint the object was compiled from"
#endif

namespace moec {
namespace {

const float *f32_tensor(const Checkpoint &ck, const std::string &name) {
  const TensorView &t = ck.get(name);
  EXPECT_EQ(t.dtype, DType::F32) << name; // the f32 golden checkpoint
  return static_cast<const float *>(t.data);
}

/// Layer 0's K (after RoPE) or V of token `id` at `pos`, head `h`: [head_dim] in double.
std::vector<double> layer0_kv(const Checkpoint &ck, const ModelConfig &c, std::int32_t id,
                              std::int64_t pos, std::int64_t h, int which) {
  const std::int64_t D = c.hidden_size, HD = c.head_dim;
  const float *emb = f32_tensor(ck, "model.embed_tokens.weight") + id * D;
  const float *norm = f32_tensor(ck, "model.layers.0.input_layernorm.weight");
  const float *w = f32_tensor(ck, which == 0 ? "model.layers.0.self_attn.k_proj.weight"
                                             : "model.layers.0.self_attn.v_proj.weight");
  double ms = 0;
  for (std::int64_t d = 0; d < D; ++d)
    ms += double(emb[d]) * emb[d];
  const double r = 1.0 / std::sqrt(ms / double(D) + c.rms_norm_eps);
  std::vector<double> y(static_cast<std::size_t>(HD));
  for (std::int64_t j = 0; j < HD; ++j) {
    double s = 0;
    for (std::int64_t d = 0; d < D; ++d)
      s += double(w[(h * HD + j) * D + d]) * (emb[d] * r * norm[d]);
    y[static_cast<std::size_t>(j)] = s;
  }
  if (which == 1)
    return y;
  std::vector<double> rot(y.size());
  for (std::int64_t j = 0; j < HD; ++j) { // rotate_half RoPE, as Hugging Face
    const std::int64_t i = j % (HD / 2);
    const float inv = 1.0f / std::pow(float(c.rope_theta), float(2 * i) / float(HD));
    const double a = double(float(pos) * inv);
    const double other = j < HD / 2 ? -y[static_cast<std::size_t>(j + HD / 2)]
                                     : y[static_cast<std::size_t>(j - HD / 2)];
    rot[static_cast<std::size_t>(j)] = y[static_cast<std::size_t>(j)] * std::cos(a) + other * std::sin(a);
  }
  return rot;
}

TEST(KvLayout, GeneratedWritesAreWhereTheRuntimeReads) {
  const Manifest m = parse_manifest(moec_manifest);
  const ModelConfig &c = m.config;
  const Checkpoint ck = Checkpoint::open(MOEC_KV_LAYOUT_MODEL_DIR);
  Arena weights = load_weights(m, ck, LoadOptions{});
  KvCache kv(m);
  const std::vector<std::int32_t> ids = {1, 77, 300, 5, 411};
  std::vector<std::int32_t> buf(static_cast<std::size_t>(m.max_seq_len), 0);
  std::vector<float> logits(static_cast<std::size_t>(c.vocab_size));
  std::copy(ids.begin(), ids.end() - 1, buf.begin());
  moec_prefill(weights.data(), kv.data(), buf.data(), 4, 0, logits.data()); // positions 0-3
  buf[0] = ids[4];
  moec_decode(weights.data(), kv.data(), buf.data(), 4, logits.data()); // position 4
  const std::int64_t filled = 5, HD = c.head_dim;
  double worst = 0; // measured error, printed for test/e2e/README.md's table

  for (int which = 0; which < 2; ++which)
    for (std::int64_t p = 0; p < filled; ++p)
      for (std::int64_t h = 0; h < c.num_key_value_heads; ++h) {
        SCOPED_TRACE(testing::Message() << "layer 0, " << (which ? "V" : "K") << ", position "
                                        << p << ", kv head " << h);
        const std::vector<double> want = layer0_kv(ck, c, ids[std::size_t(p)], p, h, which);
        const float *got = kv.f32() + kv.offset(0, which, p, h);
        for (std::int64_t d = 0; d < HD; ++d) {
          const double scale = 1 + std::fabs(want[std::size_t(d)]);
          worst = std::max(worst, std::fabs(got[d] - want[std::size_t(d)]) / scale);
          ASSERT_NEAR(got[d], want[std::size_t(d)], 2e-6 * scale) << "element " << d;
        }
      }
  std::printf("layer 0 K/V: max |got - want| / (1 + |want|) = %.1e (tol 2e-6)\n", worst);
  for (std::int64_t l = 0; l < c.num_hidden_layers; ++l)
    for (int which = 0; which < 2; ++which)
      for (std::int64_t p = 0; p < m.max_seq_len; ++p)
        for (std::int64_t h = 0; h < c.num_key_value_heads; ++h) {
          const float *row = kv.f32() + kv.offset(l, which, p, h);
          bool nonzero = false;
          for (std::int64_t d = 0; d < HD; ++d)
            nonzero |= row[d] != 0.0f;
          EXPECT_EQ(nonzero, p < filled) << "layer " << l << (which ? " V" : " K")
                                         << " position " << p << " head " << h;
        }
}

} // namespace
} // namespace moec
