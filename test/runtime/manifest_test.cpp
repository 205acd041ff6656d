// manifest_test.cpp — parse_manifest on the fake model's manifest and on broken variants.
#include "fake_model.h"
#include "moec/abi.h"
#include "moec/error.h"
#include "moec/manifest.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <functional>

namespace moec {
namespace {
using nlohmann::json;

json good() { return json::parse(test::fake_manifest_text()); }

std::string error_of(const json &j) {
  try {
    parse_manifest(j.dump());
  } catch (const Error &e) {
    return e.what();
  }
  return "";
}

TEST(Manifest, ParsesTheFakeManifest) {
  Manifest m = parse_manifest(test::fake_manifest_text());
  EXPECT_EQ(m.abi_version, MOEC_ABI_VERSION);
  EXPECT_EQ(m.target, "cpu");
  EXPECT_EQ(m.max_seq_len, 32);
  EXPECT_EQ(m.config.vocab_size, 16);
  EXPECT_EQ(m.config.num_key_value_heads, 1);
  EXPECT_EQ(m.config.weight_dtype, DType::F32);
  EXPECT_FALSE(m.config.sliding_window.has_value());
  EXPECT_EQ(m.config.bos_token_id, 1);
  EXPECT_EQ(m.config.eos_token_id, 2);
  ASSERT_EQ(m.tensors.size(), 2u);
  EXPECT_EQ(m.tensors[1].name, "layers.0.moe.w1");
  EXPECT_EQ(m.tensors[1].shape, (std::vector<std::int64_t>{2, 8, 4}));
  EXPECT_EQ(m.tensors[1].offset, 256u);
  EXPECT_EQ(m.tensors[1].nbytes, 256u);
  EXPECT_EQ(m.tensors[1].sources.size(), 2u);
  EXPECT_EQ(m.weights_bytes, 512u);
  EXPECT_EQ(m.kv_bytes, 512u);
  EXPECT_FALSE(m.model_dir.has_value());
}

TEST(Manifest, OptionalFields) {
  json j = good();
  j["model_dir"] = "/models/mixtral";
  j["config"]["sliding_window"] = 4096;
  Manifest m = parse_manifest(j.dump());
  EXPECT_EQ(*m.model_dir, "/models/mixtral");
  EXPECT_EQ(*m.config.sliding_window, 4096);
}

TEST(Manifest, RejectsBadManifests) {
  struct Case {
    const char *what;
    std::function<void(json &)> edit;
    const char *needle;
  };
  const std::vector<Case> cases = {
      {"magic", [](json &j) { j["magic"] = "GGUF"; }, "magic is not \"MOEC\""},
      {"version", [](json &j) { j["abi_version"] = 1; }, "abi_version 1 but this runtime"},
      {"target", [](json &j) { j["target"] = "cuda"; }, "target \"cuda\""},
      {"no config", [](json &j) { j.erase("config"); }, "missing field \"config\""},
      {"vocab", [](json &j) { j["config"]["vocab_size"] = 0; }, "\"vocab_size\" must be"},
      {"vocab str", [](json &j) { j["config"]["vocab_size"] = "16"; }, "\"vocab_size\" must be"},
      {"gqa", [](json &j) { j["config"]["num_key_value_heads"] = 3; }, "\"num_attention_heads\" (2) must be a multiple of \"num_key_value_heads\" (3)"},
      {"topk", [](json &j) { j["config"]["num_experts_per_tok"] = 3; }, "\"num_experts_per_tok\" (3) must not exceed \"num_local_experts\" (2)"},
      {"eps", [](json &j) { j["config"]["rms_norm_eps"] = -1; }, "\"rms_norm_eps\" must be in (0, 1), but it is -1"},
      {"eos", [](json &j) { j["config"]["eos_token_id"] = 16; }, "\"eos_token_id\" (16) must be a valid token id, in [0, 16)"},
      {"window", [](json &j) { j["config"]["sliding_window"] = -1; },
       "\"sliding_window\" must be positive (at most 2^31 - 1) or null, but it is -1"},
      {"act", [](json &j) { j["config"]["hidden_act"] = "gelu"; },
       "manifest: config: \"hidden_act\" is \"gelu\", but only \"silu\" is implemented"},
      {"deep", [](json &j) { j["x"] = json::parse(std::string(70, '[') + std::string(70, ']')); },
       "manifest: nested deeper than 64 levels"},
      {"wdtype", [](json &j) { j["config"]["weight_dtype"] = "i8"; }, "weight_dtype \"i8\""},
      {"alignment", [](json &j) { j["weights"]["alignment"] = 32; }, "alignment 32"},
      {"tensor dtype", [](json &j) { j["weights"]["tensors"][0]["dtype"] = "q4"; },
       "tensor 'embed': dtype \"q4\""},
      {"unaligned", [](json &j) { j["weights"]["tensors"][1]["offset"] = 260; },
       "not a multiple of the alignment"},
      {"arena overflow", [](json &j) { j["weights"]["bytes"] = 500; },
       "overflow the weights arena of 500 bytes"},
      {"huge offset", [](json &j) { j["weights"]["tensors"][1]["offset"] = 9223372036854775744ull; },
       "overflow the weights arena"},
      {"overlap", [](json &j) { j["weights"]["tensors"][1]["offset"] = 192; }, "overlap"},
      {"duplicate", [](json &j) { j["weights"]["tensors"][1]["name"] = "embed"; },
       "listed twice"},
      {"no sources", [](json &j) { j["weights"]["tensors"][0]["sources"] = json::array(); },
       "non-empty array"},
      {"stack count", [](json &j) { j["weights"]["tensors"][1]["shape"] = {3, 8, 4}; },
       "stacks 2 sources but has shape [3, 8, 4]"},
      {"kv shape", [](json &j) { j["kv_cache"]["shape"] = {1, 2, 16, 1, 2}; },
       "kv_cache: shape [1, 2, 16, 1, 2]"},
      {"kv bytes", [](json &j) { j["kv_cache"]["bytes"] = 511; }, "kv_cache: bytes 511"},
      {"kv dtype", [](json &j) { j["kv_cache"]["dtype"] = "bf16"; }, "dtype must be \"f32\""},
      {"model_dir", [](json &j) { j["model_dir"] = 7; }, "\"model_dir\" is not a string"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.what);
    json j = good();
    c.edit(j);
    std::string msg = error_of(j);
    EXPECT_EQ(msg.rfind("manifest: ", 0), 0u) << msg;
    EXPECT_NE(msg.find(c.needle), std::string::npos) << msg;
  }
  EXPECT_THROW(parse_manifest("not json"), Error);
  EXPECT_THROW(parse_manifest("[]"), Error);
}

} // namespace
} // namespace moec
