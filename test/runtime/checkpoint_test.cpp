// checkpoint_test.cpp — the shared checkpoint library (runtime/checkpoint) on its own: each
// malformed safetensors header, index, config.json, manifest and input file gives its exact
// one-line message. The library links nothing else (no runtime, no LLVM).
#include "moec/checkpoint/config.h"
#include "moec/checkpoint/file.h"
#include "moec/checkpoint/fp8.h"
#include "moec/checkpoint/manifest.h"
#include "moec/checkpoint/quant.h"
#include "moec/checkpoint/quantize.h"
#include "moec/checkpoint/safetensors.h"
#include "moec/checkpoint/weights_file.h"
#include "moec/abi.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace moec::checkpoint {
namespace {

std::string with_length(const std::string &header, const std::string &data = "") {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i)
    out[i] = static_cast<char>((static_cast<std::uint64_t>(header.size()) >> (8 * i)) & 0xff);
  return out + header + data;
}

std::string header_error(const std::string &bytes) {
  Result<SafetensorsHeader> h = parse_safetensors_header(
      reinterpret_cast<const unsigned char *>(bytes.data()), bytes.size(), bytes.size(), "f");
  return h ? "" : h.error();
}

TEST(CheckpointLibrary, SafetensorsHeaderMessages) {
  const std::string w = R"("w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]})";
  std::string rank65;
  for (int i = 1; i < 65; ++i)
    rank65 += ",1";
  struct Case {
    std::string bytes, message;
  };
  const std::vector<Case> cases = {
      {"abc", "f: file is 3 bytes, shorter than the 8-byte safetensors header length"},
      {with_length("{}").substr(0, 8) + "{", "f: header length 2 runs past the end of the file (9 bytes)"},
      {with_length(std::string("{}\0\0\0\0\0\0", 8)),
       "f: header holds a NUL byte (safetensors pads headers with spaces)"},
      {with_length("{oops"), "f: header is not valid JSON (byte 2): syntax error while parsing "
                             "object key - invalid literal; last read: '{o'; expected string literal"},
      {with_length("[1]"), "f: header is not a JSON object"},
      {with_length("{\"w\": 3}"), "f: tensor 'w': entry is not a JSON object"},
      {with_length("{" + w + ", " + w + "}", "1234"), "f: tensor 'w' is listed twice in the header"},
      {with_length(R"({"w": {"dtype": "F32", "dtype": "F32"}})"), "f: tensor 'w': duplicate key 'dtype'"},
      {with_length(R"({"w": {"dtype": "Q4", "shape": [1], "data_offsets": [0, 4]}})", "1234"),
       "f: tensor 'w': unknown dtype 'Q4'"},
      {with_length(R"({"w": {"dtype": 4, "shape": [1], "data_offsets": [0, 4]}})", "1234"),
       "f: tensor 'w': missing or non-string \"dtype\""},
      {with_length(R"({"w": {"dtype": "F32", "shape": {}, "data_offsets": [0, 4]}})", "1234"),
       "f: tensor 'w': missing or non-array \"shape\""},
      {with_length(R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", "1234"),
       "f: tensor 'w': shape has an entry that is not a non-negative integer below 2^63"},
      {with_length(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}})", "1234"),
       "f: tensor 'w': \"data_offsets\" is not an array of two integers"},
      {with_length(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}})", "1234"),
       "f: tensor 'w': shape [2] of f32 needs 8 bytes but data_offsets [0,4] span 4"},
      {with_length(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", "1234"),
       "f: tensor 'w': data_offsets [4,8] run past the end of the data (4 bytes)"},
      {with_length(R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], )"
                   R"("data_offsets": [0, 4]}})", "1234"),
       "f: tensor 'w': shape [4294967296,4294967296] overflows a 64-bit byte count"},
      {with_length(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, )"
                   R"("b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                   std::string(12, 'x')),
       "f: tensors 'a' and 'b' overlap in the data region"},
      {with_length(R"({"__metadata__": {"k": 1}})"), "f: __metadata__ value for 'k' is not a string"},
      {with_length(R"({"w": {"x": )" + std::string(70, '[') + std::string(70, ']') + "}}"),
       "f: header is nested deeper than 64 levels"},
      {with_length(R"({"w": {"dtype": "F32", "shape": [1)" + rank65 + R"(], "data_offsets": [0, 4]}})",
                   "1234"),
       "f: tensor 'w': shape has more than 64 dimensions"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.message);
    EXPECT_EQ(header_error(c.bytes), c.message);
  }
  // Unknown keys in an entry are skipped, whatever they hold.
  EXPECT_EQ(header_error(with_length(R"({"w": {"x": [[{}]], "dtype": "F32", "shape": [1], )"
                                     R"("data_offsets": [0, 4]}})", "1234")), "");
  // The cap is safetensors' own: 100 MB.
  std::string big = with_length("{}");
  const std::uint64_t n = kMaxHeaderBytes + 1;
  for (int i = 0; i < 8; ++i)
    big[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  Result<SafetensorsHeader> h = parse_safetensors_header(
      reinterpret_cast<const unsigned char *>(big.data()), 8, 2 * kMaxHeaderBytes, "f");
  EXPECT_EQ(h.error(), "f: header length 100000001 is over safetensors' limit of 100000000 bytes");
}

TEST(CheckpointLibrary, HeaderWriterRoundTrips) {
  std::vector<TensorInfo> ts = {{"a", DType::BF16, {2, 3}, 0, 12}, {"b", DType::F32, {4}, 12, 16}};
  std::string bytes = write_safetensors_header(ts, {{"format", "pt"}}) + std::string(28, 'x');
  Result<SafetensorsHeader> h = parse_safetensors_header(
      reinterpret_cast<const unsigned char *>(bytes.data()), bytes.size(), bytes.size(), "f");
  ASSERT_TRUE(h) << h.error();
  EXPECT_EQ(h->data_start % 8, 0u);
  ASSERT_EQ(h->tensors.size(), 2u);
  EXPECT_EQ(h->tensors[1].shape, (std::vector<std::int64_t>{4}));
  EXPECT_EQ(h->metadata.at("format"), "pt");
}

TEST(CheckpointLibrary, IndexShardNames) {
  auto error_of = [](const std::string &text) {
    Result<CheckpointIndex> r = parse_index(text, "i.json");
    return r ? "" : r.error();
  };
  const std::string tail = "; shards must be .safetensors files in the index's folder";
  EXPECT_EQ(error_of(R"({"weight_map": {"a": "sub/s.safetensors"}})"),
            "i.json: weight_map entry for 'a' is 'sub/s.safetensors', which is not a plain file "
            "name (it holds a '/')" + tail);
  EXPECT_EQ(error_of(R"({"weight_map": {"a": "s..x.safetensors"}})"),
            "i.json: weight_map entry for 'a' is 's..x.safetensors', which holds \"..\"" + tail);
  EXPECT_EQ(error_of(R"({"weight_map": {"a": "s\u0000.safetensors"}})"),
            "i.json: weight_map entry for 'a' is 's\\x00.safetensors', which holds a NUL byte" + tail);
  EXPECT_EQ(error_of(R"({"weight_map": {"a": "s.bin"}})"),
            "i.json: weight_map entry for 'a' is 's.bin', which does not end in \".safetensors\"" + tail);
  EXPECT_EQ(error_of(R"({"weight_map": {"a": "x.safetensors", "a": "y.safetensors"}})"),
            "i.json: duplicate key 'a'");
  EXPECT_EQ(error_of(R"({"weight_map": {}})"), "i.json: weight_map is empty");
  EXPECT_EQ(error_of(std::string(100, '[') + std::string(100, ']')),
            "i.json: nested deeper than 64 levels");
  EXPECT_EQ(error_of(R"({"weight_map": {"a": "model-00001-of-00002.safetensors"}})"), "");
}

const char *kConfig = R"({"architectures": ["MixtralForCausalLM"], "vocab_size": 32000,
  "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
  "num_attention_heads": 32, "num_key_value_heads": 8, "num_local_experts": 8,
  "num_experts_per_tok": 2, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0,
  "max_position_embeddings": 32768, "sliding_window": null, "tie_word_embeddings": false,
  "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2, "head_dim": null})";

std::string config_error(const std::string &from, const std::string &to) {
  std::string text = kConfig;
  if (!from.empty())
    text.replace(text.find(from), from.size(), to);
  Result<ModelConfig> c = parse_config(text, "c.json");
  return c ? "" : c.error();
}

TEST(CheckpointLibrary, ConfigMessages) {
  struct Case {
    std::string from, to, message;
  };
  const std::vector<Case> cases = {
      {"\"num_hidden_layers\": 32", "\"num_hidden_layers\": 16777216",
       "\"num_hidden_layers\" (16777216) is above the limit of 1024"},
      {"\"num_local_experts\": 8", "\"num_local_experts\": 16777216",
       "\"num_local_experts\" (16777216) is above the limit of 1024"},
      {"\"hidden_size\": 4096", "\"hidden_size\": 16777216",
       "\"hidden_size\" (16777216) is above the limit of 65536"},
      {"\"head_dim\": null", "\"head_dim\": 2305843009213693952",
       "the head dimension must be positive, even (for RoPE) and at most 4096, but it is "
       "2305843009213693952"},
      {"\"rope_theta\": 1000000.0", "\"rope_theta\": 1e400",
       "not valid JSON (byte 288): number overflow parsing '1e400'"},
      {"\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": -1e-5",
       "\"rms_norm_eps\" must be in (0, 1), but it is -1e-05"},
      {"\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"",
       "\"hidden_act\" is \"gelu\", but only \"silu\" is implemented"},
      {"\"eos_token_id\": 2", "\"eos_token_id\": 32000",
       "\"eos_token_id\" (32000) must be a valid token id, in [0, 32000)"},
      {"\"eos_token_id\": 2", "\"eos_token_id\": [2, 3]", "field \"eos_token_id\" must be an integer"},
      {"\"sliding_window\": null", "\"sliding_window\": -4",
       "\"sliding_window\" must be positive (at most 2^31 - 1) or null, but it is -4"},
      {"\"vocab_size\": 32000", "\"vocab_size\": 32000, \"vocab_size\": 16",
       "duplicate key 'vocab_size'"},
      {"\"num_key_value_heads\": 8", "\"num_key_value_heads\": 3",
       "\"num_attention_heads\" (32) must be a multiple of \"num_key_value_heads\" (3)"},
      {"\"intermediate_size\": 14336, \"num_hidden_layers\": 32",
       "\"intermediate_size\": 262144, \"num_hidden_layers\": 1024",
       "the model has 26431532830720 parameters, above the limit of 2^42"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.to);
    EXPECT_EQ(config_error(c.from, c.to), "c.json: " + c.message);
  }
}

TEST(CheckpointLibrary, ParameterCountsOfMixtral8x7B) {
  Result<ModelConfig> c = parse_config(kConfig, "c.json");
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(c->head_dim, 128);
  // By hand: 32 layers x (attention 41,943,040 + experts 1,409,286,144 + router 32,768 +
  // norms 8,192) + embedding and lm_head 2 x 131,072,000 + final norm 4,096 (the 46.7 B
  // Mistral publishes); per token 6 of 8 experts are skipped and the embedding is one row.
  EXPECT_EQ(total_parameters(*c), 46702792704);
  EXPECT_EQ(active_parameters(*c), 46702792704 - 32ll * 6 * 3 * 4096 * 14336 - 32000ll * 4096);
  EXPECT_LE(active_parameters(*c), total_parameters(*c));
  // Written and read back: nothing lost, so the binary's start-up comparison is exact.
  Result<ModelConfig> back = parse_config(write_config_json(*c), "w");
  ASSERT_TRUE(back) << back.error();
  EXPECT_EQ(config_mismatch(*back, *c), "");
  ModelConfig other = *c;
  other.rope_theta = 10000;
  EXPECT_EQ(config_mismatch(other, *c), "rope_theta is 10000 but this binary was compiled for 1000000");
  other = *c;
  other.sliding_window = 4096;
  EXPECT_EQ(config_mismatch(other, *c), "sliding_window is 4096 but this binary was compiled for null");
}

TEST(CheckpointLibrary, ManifestRoundTrip) {
  Result<ModelConfig> c = parse_config(kConfig, "c.json");
  ASSERT_TRUE(c);
  Manifest m;
  m.abi_version = MOEC_ABI_VERSION;
  m.target = "cpu";
  m.max_seq_len = 16;
  m.config = *c;
  m.config.tie_word_embeddings = true;
  m.weights_bytes = 128;
  m.weights_alignment = 64;
  m.tensors.resize(1);
  m.tensors[0].name = "norm";
  m.tensors[0].dtype = DType::BF16;
  m.tensors[0].sources = {"model.norm.weight"};
  m.tensors[0].shape = {32};
  m.tensors[0].nbytes = 64;
  m.kv_shape = {32, 2, 16, 8, 128};
  m.kv_bytes = 32ull * 2 * 16 * 8 * 128 * 4;
  m.model_dir = "/models/m";
  m.step = StepInfo{16, 1};
  Result<Manifest> back = parse_manifest(write_manifest(m));
  ASSERT_TRUE(back) << back.error();
  ASSERT_TRUE(back->step);
  EXPECT_EQ(back->step->kv_block_size, 16);
  EXPECT_EQ(back->step->max_blocks_per_seq, 1);
  m.step = StepInfo{4, 3}; // ceil(16 / 4) is 4
  EXPECT_EQ(parse_manifest(write_manifest(m)).error(),
            "manifest: step: kv_block_size 4 and max_blocks_per_seq 3 do not cover max_seq_len 16 "
            "(max_blocks_per_seq must be ceil(max_seq_len / kv_block_size))");
  m.step.reset();
  EXPECT_FALSE(parse_manifest(write_manifest(m))->step);
  EXPECT_EQ(config_mismatch(back->config, m.config), "");
  EXPECT_TRUE(back->config.tie_word_embeddings);
  EXPECT_EQ(back->tensors[0].sources, m.tensors[0].sources);
  EXPECT_EQ(*back->model_dir, "/models/m");
  EXPECT_EQ(parse_manifest("{\"magic\": \"MOEC\", \"magic\": \"MOEC\"}").error(),
            "manifest: duplicate key 'magic'");
}

TEST(CheckpointLibrary, InputFiles) {
  char tmpl[] = "/tmp/moec_ckpt_XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  const std::string fifo = dir + "/fifo", dangling = dir + "/dangling", small = dir + "/small";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  ASSERT_EQ(::symlink("/nonexistent", dangling.c_str()), 0);
  std::ofstream(small) << "0123456789";
  EXPECT_EQ(InputFile::open(fifo).error(), fifo + ": not a regular file (it is a FIFO)");
  EXPECT_EQ(InputFile::open("/dev/zero").error(),
            "/dev/zero: not a regular file (it is a character device)");
  EXPECT_EQ(InputFile::open(dir).error(), dir + ": not a regular file (it is a directory)");
  EXPECT_EQ(InputFile::open(dangling).error(),
            dangling + ": is a dangling symlink to '/nonexistent'");
  EXPECT_EQ(InputFile::open(dir + "/none").error(), dir + "/none: does not exist");
  EXPECT_EQ(InputFile::open("").error(), "the path is empty");
  EXPECT_EQ(read_small_file(small, 4, "a test file").error(),
            small + ": is 10 bytes, more than the 4-byte limit of a test file");
  EXPECT_EQ(*read_small_file(small, 10, "a test file"), "0123456789");
  EXPECT_EQ(locate_checkpoint(dir).error(),
            dir + ": directory holds neither model.safetensors.index.json nor model.safetensors");
  ASSERT_EQ(::symlink("/nonexistent", (dir + "/model.safetensors").c_str()), 0);
  EXPECT_EQ(read_checkpoint_headers(dir).error(),
            dir + "/model.safetensors: is a dangling symlink to '/nonexistent'");
  std::string cmd = "rm -rf " + dir;
  EXPECT_EQ(std::system(cmd.c_str()), 0);
}

TEST(CheckpointLibrary, QuantFormats) {
  EXPECT_EQ(parse_quant_format("q8"), QuantFormat::Q8);
  EXPECT_EQ(parse_quant_format("q4"), QuantFormat::Q4);
  EXPECT_EQ(parse_quant_format("f8e4m3"), QuantFormat::F8E4M3);
  EXPECT_FALSE(parse_quant_format("none"));
  EXPECT_FALSE(parse_quant_format("Q8"));
  // Mixtral's expert w1 [8, 14336, 4096]: 4096 / 32 scales per row.
  const std::vector<std::int64_t> w1 = {8, 14336, 4096};
  EXPECT_EQ(quant_bytes(QuantFormat::Q8, w1)->data, 8ull * 14336 * 4096);
  EXPECT_EQ(quant_bytes(QuantFormat::Q8, w1)->scale, 8ull * 14336 * 128 * 2);
  EXPECT_EQ(quant_bytes(QuantFormat::Q4, w1)->data, 8ull * 14336 * 2048);
  EXPECT_EQ(quant_bytes(QuantFormat::Q4, w1)->scale, 8ull * 14336 * 128 * 2);
  EXPECT_EQ(quant_bytes(QuantFormat::F8E4M3, w1)->scale, 8ull * 14336 * 4);
  EXPECT_FALSE(quant_bytes(QuantFormat::Q8, {4, 48}));
  EXPECT_TRUE(quant_bytes(QuantFormat::F8E4M3, {4, 48}));
  EXPECT_FALSE(quant_bytes(QuantFormat::Q4, {64}));
  EXPECT_FALSE(quant_bytes(QuantFormat::Q8, {INT64_MAX, INT64_MAX, 32}));
  EXPECT_STREQ(quant_shape_problem(QuantFormat::Q4, {4, 40}),
               "K is not a multiple of the group size 32");
  EXPECT_DOUBLE_EQ(bits_per_weight(QuantFormat::Q8, 4096), 8.5);
  EXPECT_DOUBLE_EQ(bits_per_weight(QuantFormat::Q4, 4096), 4.5);
  EXPECT_DOUBLE_EQ(bits_per_weight(QuantFormat::F8E4M3, 4096), 8.0 + 32.0 / 4096);
  EXPECT_EQ(quant_group_size(QuantFormat::F8E4M3, 4096), 4096);
  EXPECT_EQ(quant_scale_dtype(QuantFormat::Q4), DType::F16);
  EXPECT_EQ(quant_data_dtype(QuantFormat::Q4), DType::U8);
}

TEST(CheckpointLibrary, WeightsFileHeader) {
  const std::string fp = new_fingerprint();
  EXPECT_EQ(fingerprint_problem(fp), "");
  EXPECT_NE(fp, new_fingerprint());
  WeightsFileHeader h;
  h.arena_bytes = 1000;
  h.file_bytes = kWeightsFileHeaderBytes + 1000;
  h.fingerprint = fp;
  h.abi_version = MOEC_ABI_VERSION;
  const std::string bytes = encode_weights_file_header(h);
  ASSERT_EQ(bytes.size(), kWeightsFileHeaderBytes);
  auto check = [&](const std::string &b, std::uint64_t size, std::uint64_t arena,
                   const std::string &want_fp) {
    return check_weights_file_header(reinterpret_cast<const unsigned char *>(b.data()), b.size(),
                                     size, "m.weights", arena, want_fp);
  };
  EXPECT_TRUE(check(bytes, 5096, 1000, fp));
  EXPECT_EQ(check(bytes, 5000, 1000, fp).error(),
            "m.weights: is 5000 bytes but its header says 5096 (truncated?); compile the model "
            "again to rewrite it");
  EXPECT_EQ(check(bytes, 5096, 1064, fp).error(),
            "m.weights: the header describes an arena of 1000 bytes but this binary's is 1064; "
            "compile the model again to rewrite it");
  const std::string other = new_fingerprint();
  EXPECT_EQ(check(bytes, 5096, 1000, other).error(),
            "m.weights: fingerprint " + fp + " but this binary was compiled with " + other +
                ": the file belongs to another compile; recompile, or put the binary's own "
                "weights file beside it");
  std::string bad = bytes;
  bad[0] = 'X';
  EXPECT_EQ(check(bad, 5096, 1000, fp).error(), "m.weights: not a moec weights file (bad magic)");
  bad = bytes;
  bad[8] = 9;
  EXPECT_EQ(check(bad, 5096, 1000, fp).error(),
            "m.weights: weights file version 9 but this runtime reads version 4; compile the "
            "model again to rewrite it");
  EXPECT_EQ(check(bytes.substr(0, 10), 10, 1000, fp).error(),
            "m.weights: is 10 bytes, too short for a moec weights file (truncated?); compile the "
            "model again to rewrite it");
}

// Hand-computed codes: amax 127 gives the scale 1.0 exactly, so the codes are the rounded
// values themselves and ties show the rounding rule (half to even: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2).
TEST(CheckpointLibrary, QuantizeQ8ByHand) {
  std::vector<float> w(64, 0.0f);
  const float first[] = {127, -2, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, 126.6f};
  std::copy(std::begin(first), std::end(first), w.begin());
  for (int i = 0; i < 32; ++i) // second group: amax 254 -> scale 2
    w[32 + i] = i == 0 ? -254.0f : 3.0f; // 3 / 2 = 1.5 -> 2
  std::vector<std::int8_t> q(64);
  std::vector<std::uint16_t> s(2);
  EXPECT_EQ(quantize_q8(w.data(), 1, 64, q.data(), s.data()), -1);
  EXPECT_EQ(f16_to_f32(s[0]), 1.0f);
  EXPECT_EQ(f16_to_f32(s[1]), 2.0f);
  const std::int8_t want[] = {127, -2, 0, 2, 2, 0, -2, 127};
  for (int i = 0; i < 8; ++i)
    EXPECT_EQ(q[i], want[i]) << i;
  EXPECT_EQ(q[32], -127);
  EXPECT_EQ(q[33], 2);
  // A scale above f16's range is reported with its group.
  std::vector<float> big(32, 1e7f);
  EXPECT_EQ(quantize_q8(big.data(), 1, 32, q.data(), s.data()), 0);
}

TEST(CheckpointLibrary, QuantizeQ4ByHand) {
  std::vector<float> w(64, 0.0f); // group 1: all zeros
  w[0] = 8;      // the first element of largest |w|: s = 8 / -8 = -1, code -8, nibble 0
  w[16] = -8;    // as large but later: 8 clamps to 7, high nibble of byte 0: 15
  w[1] = 2.5f;   // -2.5 -> -2 (half to even): byte 1 low 6
  w[17] = -3.5f; // 3.5 -> 4: byte 1 high 12
  std::vector<std::uint8_t> q(32);
  std::uint16_t s[2];
  EXPECT_EQ(quantize_q4(w.data(), 1, 64, q.data(), s), -1);
  EXPECT_EQ(f16_to_f32(s[0]), -1.0f);
  EXPECT_EQ(q[0], 0 | 15 << 4);
  EXPECT_EQ(q[1], 6 | 12 << 4);
  EXPECT_EQ(q[2], 8 | 8 << 4); // zeros
  EXPECT_EQ(s[1], 0x8000);     // a zero group: -0
  EXPECT_EQ(q[16], 8 | 8 << 4);
}

TEST(CheckpointLibrary, F8E4M3Values) {
  EXPECT_EQ(f8e4m3_to_f32(0x00), 0.0f);
  EXPECT_EQ(f8e4m3_to_f32(0x38), 1.0f);           // exponent 7 = bias
  EXPECT_EQ(f8e4m3_to_f32(0x7e), 448.0f);         // the largest finite value
  EXPECT_EQ(f8e4m3_to_f32(0xfe), -448.0f);
  EXPECT_EQ(f8e4m3_to_f32(0x01), 0.001953125f);   // smallest subnormal 2^-9
  EXPECT_TRUE(std::isnan(f8e4m3_to_f32(0x7f)));
  EXPECT_TRUE(std::isnan(f8e4m3_to_f32(0xff)));
}

TEST(CheckpointLibrary, QuantizationConfig) {
  auto parse = [](const std::string &q) {
    return parse_quantization_config("{\"vocab_size\": 8, \"quantization_config\": " + q + "}",
                                     "c.json");
  };
  EXPECT_FALSE(*parse_quantization_config("{\"vocab_size\": 8}", "c.json"));
  EXPECT_FALSE(*parse("null"));
  auto fp8 = parse(R"({"quant_method": "fp8", "activation_scheme": "static"})");
  ASSERT_TRUE(fp8 && *fp8);
  EXPECT_EQ((*fp8)->method, "fp8");
  EXPECT_TRUE((*fp8)->static_activations);
  EXPECT_EQ((*fp8)->note, "activation_scheme \"static\" is not applied: activations stay f32");
  const std::string group = R"({"group_0": {"targets": ["Linear"], "weights": {"num_bits": 8,
      "type": "float", "strategy": "channel", "symmetric": true}, "input_activations": {
      "num_bits": 8, "type": "float", "strategy": "token", "dynamic": true}}})";
  auto ct = parse(R"({"quant_method": "compressed-tensors", "format": "float-quantized",
                      "config_groups": )" + group + "}");
  ASSERT_TRUE(ct && *ct) << ct.error();
  EXPECT_EQ((*ct)->method, "compressed-tensors");
  EXPECT_FALSE((*ct)->static_activations);
  EXPECT_EQ((*ct)->note, "activation quantization is not applied: activations stay f32");
  // What cannot be honoured is refused, in one line naming the file.
  EXPECT_EQ(parse(R"({"quant_method": "fp8", "weight_block_size": [128, 128]})").error(),
            "c.json: quantization_config: block-wise FP8 (\"weight_block_size\" [128,128]) is "
            "not supported; moec reads FP8 (F8_E4M3) checkpoints with per-tensor or per-channel "
            "weight_scale, and quantizes bf16/f16/f32 ones itself (--quantize q8|q4)");
  EXPECT_EQ(parse(R"({"quant_method": "gptq", "bits": 4})").error().rfind(
                "c.json: quantization_config: quant_method \"gptq\" is not supported", 0),
            0u);
  std::string int4 = group;
  int4.replace(int4.find("\"type\": \"float\""), 15, "\"type\": \"int\"");
  EXPECT_NE(parse(R"({"quant_method": "compressed-tensors", "format": "float-quantized",
                      "config_groups": )" + int4 + "}").error().find("are not FP8"),
            std::string::npos);
  std::string grouped = group;
  grouped.replace(grouped.find("\"channel\""), 9, "\"group\"");
  EXPECT_NE(parse(R"({"quant_method": "compressed-tensors", "format": "float-quantized",
                      "config_groups": )" + grouped + "}").error().find(
                "weight strategy \"group\" is not supported"),
            std::string::npos);
  EXPECT_NE(parse(R"({"quant_method": "compressed-tensors", "format": "pack-quantized"})")
                .error().find("format \"pack-quantized\" is not supported"),
            std::string::npos);
  EXPECT_EQ(fp8_scale_name("model.layers.0.self_attn.q_proj.weight"),
            "model.layers.0.self_attn.q_proj.weight_scale");
  EXPECT_EQ(fp8_input_scale_name("model.layers.0.self_attn.q_proj.weight"),
            "model.layers.0.self_attn.q_proj.input_scale");
}

} // namespace
} // namespace moec::checkpoint
