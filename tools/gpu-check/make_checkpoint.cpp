// make_checkpoint.cpp — writes a random bf16 Mixtral checkpoint (model.safetensors, HF names)
// for the GPU benchmark, on the GPU machine itself (a Mixtral-shaped layer is GBs; this is
// faster than shipping it and needs no Python). Values: uniform with the variance of
// N(0, 1/fan_in) for linears (3x for the router), N(0,1)-like embeddings, norms near 1.
//
//   make_checkpoint OUT_DIR VOCAB HIDDEN INTERMEDIATE LAYERS HEADS KV_HEADS EXPERTS
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {
struct Tensor {
  std::string name;
  std::vector<long long> shape;
  double scale;   // uniform half-width
  double offset;  // added (norm weights: 1)
  long long elems() const {
    long long n = 1;
    for (long long d : shape) n *= d;
    return n;
  }
};
uint64_t state = 0x9E3779B97F4A7C15ull;
inline uint64_t next() {
  state ^= state << 13; state ^= state >> 7; state ^= state << 17;
  return state;
}
inline uint16_t bf16(float f) {
  uint32_t b;
  __builtin_memcpy(&b, &f, 4);
  return uint16_t((b + 0x7fff + ((b >> 16) & 1)) >> 16);
}
} // namespace

int main(int argc, char **argv) {
  if (argc != 9) {
    std::fprintf(stderr, "usage: %s OUT_DIR VOCAB HIDDEN INTERMEDIATE LAYERS HEADS KV_HEADS EXPERTS\n", argv[0]);
    return 2;
  }
  std::string out = argv[1];
  long long V = atoll(argv[2]), D = atoll(argv[3]), F = atoll(argv[4]), L = atoll(argv[5]),
            H = atoll(argv[6]), KVH = atoll(argv[7]), E = atoll(argv[8]);
  long long HD = D / H;
  std::vector<Tensor> ts;
  auto lin = [&](std::string n, long long o, long long i, double mul = 1) {
    ts.push_back({n, {o, i}, mul * std::sqrt(3.0 / double(i)), 0});
  };
  ts.push_back({"model.embed_tokens.weight", {V, D}, std::sqrt(3.0), 0});
  ts.push_back({"model.norm.weight", {D}, 0.17, 1});
  lin("lm_head.weight", V, D);
  for (long long l = 0; l < L; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    ts.push_back({p + "input_layernorm.weight", {D}, 0.17, 1});
    ts.push_back({p + "post_attention_layernorm.weight", {D}, 0.17, 1});
    lin(p + "self_attn.q_proj.weight", H * HD, D);
    lin(p + "self_attn.k_proj.weight", KVH * HD, D);
    lin(p + "self_attn.v_proj.weight", KVH * HD, D);
    lin(p + "self_attn.o_proj.weight", D, H * HD);
    lin(p + "block_sparse_moe.gate.weight", E, D, 3);
    for (long long e = 0; e < E; ++e) {
      std::string q = p + "block_sparse_moe.experts." + std::to_string(e) + ".";
      lin(q + "w1.weight", F, D);
      lin(q + "w3.weight", F, D);
      lin(q + "w2.weight", D, F);
    }
  }
  std::string header = "{";
  long long offset = 0;
  for (size_t i = 0; i < ts.size(); ++i) {
    long long bytes = ts[i].elems() * 2;
    header += (i ? "," : "") + std::string("\"") + ts[i].name + "\":{\"dtype\":\"BF16\",\"shape\":[";
    for (size_t j = 0; j < ts[i].shape.size(); ++j)
      header += (j ? "," : "") + std::to_string(ts[i].shape[j]);
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + bytes) + "]}";
    offset += bytes;
  }
  header += "}";
  while (header.size() % 8) header += ' ';
  std::string path = out + "/model.safetensors";
  FILE *f = std::fopen(path.c_str(), "wb");
  if (!f) { std::perror(path.c_str()); return 1; }
  uint64_t n = header.size();
  std::fwrite(&n, 8, 1, f);
  std::fwrite(header.data(), 1, header.size(), f);
  std::vector<uint16_t> buf(1 << 20);
  for (const Tensor &t : ts) {
    long long left = t.elems();
    while (left > 0) {
      long long chunk = left < (long long)buf.size() ? left : (long long)buf.size();
      for (long long i = 0; i < chunk; ++i) {
        double u = double(next() >> 11) * (1.0 / 9007199254740992.0) * 2 - 1;
        buf[i] = bf16(float(t.offset + t.scale * u));
      }
      if (std::fwrite(buf.data(), 2, chunk, f) != size_t(chunk)) { std::perror("write"); return 1; }
      left -= chunk;
    }
  }
  if (std::fclose(f) != 0) { std::perror("close"); return 1; }
  std::printf("%s: %.2f GB\n", path.c_str(), double(offset) / 1e9);
  return 0;
}
