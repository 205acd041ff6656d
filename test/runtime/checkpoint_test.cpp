// checkpoint_test.cpp — the shared checkpoint library (runtime/checkpoint) on its own: each
// malformed safetensors header, index, config.json, manifest and input file gives its exact
// one-line message. The library links nothing else (no runtime, no LLVM).
#include "moec/checkpoint/config.h"
#include "moec/checkpoint/file.h"
#include "moec/checkpoint/manifest.h"
#include "moec/checkpoint/safetensors.h"

#include <gtest/gtest.h>

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
  m.abi_version = 1;
  m.target = "cpu";
  m.max_seq_len = 16;
  m.config = *c;
  m.config.tie_word_embeddings = true;
  m.weights_bytes = 128;
  m.weights_alignment = 64;
  m.tensors = {{"norm", DType::BF16, {4096}, 0, 0, {"model.norm.weight"}, false}};
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

} // namespace
} // namespace moec::checkpoint
