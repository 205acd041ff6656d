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
      {"version", [](json &j) { j["abi_version"] = 99; }, "abi_version 99 but this runtime"},
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
      {"tensor dtype", [](json &j) { j["weights"]["tensors"][0]["dtype"] = "i4"; },
       "tensor 'embed': dtype \"i4\" is not one of f32, bf16, f16, q8, q4, f8e4m3"},
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

/// The fake manifest with w1 as q8 [2, 2, 32] (data 128 B at 256, f16 scales 8 B at 384) and
/// a packed weights file.
json quantized() {
  json j = good();
  json &t = j["weights"]["tensors"][1];
  t["dtype"] = "q8";
  t["shape"] = {2, 2, 32};
  t["group_size"] = 32;
  t["scale"] = {{"dtype", "f16"}, {"offset", 384}};
  j["weights_file"] = {{"name", "model.weights"},
                       {"fingerprint", "0123456789abcdef0123456789abcdef"},
                       {"bytes", 4096 + 512}};
  return j;
}

TEST(Manifest, QuantizedTensorsAndWeightsFile) {
  Manifest m = parse_manifest(quantized().dump());
  const WeightTensor &t = m.tensors[1];
  EXPECT_EQ(t.quant, QuantFormat::Q8);
  EXPECT_EQ(t.dtype, DType::I8);
  EXPECT_EQ(t.nbytes, 128u);
  EXPECT_EQ(t.group_size, 32);
  EXPECT_EQ(t.scale.dtype, DType::F16);
  EXPECT_EQ(t.scale.offset, 384u);
  EXPECT_EQ(t.scale.nbytes, 8u);
  ASSERT_TRUE(m.weights_file);
  EXPECT_EQ(m.weights_file->name, "model.weights");
  EXPECT_EQ(m.weights_file->bytes, 4608u);
  EXPECT_TRUE(m.any_quantized());
  // The writer's text reads back the same.
  Manifest back = parse_manifest(checkpoint::write_manifest(m));
  EXPECT_EQ(back.tensors[1].quant, QuantFormat::Q8);
  EXPECT_EQ(back.tensors[1].scale.offset, 384u);
  EXPECT_EQ(back.weights_file->fingerprint, m.weights_file->fingerprint);

  json q4 = quantized();
  q4["weights"]["tensors"][1]["dtype"] = "q4"; // data [2, 2, 16] bytes
  EXPECT_EQ(parse_manifest(q4.dump()).tensors[1].nbytes, 64u);
  json f8 = quantized();
  json &t8 = f8["weights"]["tensors"][1];
  t8["dtype"] = "f8e4m3";
  t8["group_size"] = 32;
  t8["scale"] = {{"dtype", "f32"}, {"offset", 384}};
  t8["scale_sources"] = {"a.weight_scale", "b.weight_scale"};
  Manifest m8 = parse_manifest(f8.dump());
  EXPECT_EQ(m8.tensors[1].dtype, DType::F8E4M3);
  EXPECT_EQ(m8.tensors[1].scale.nbytes, 16u);
  EXPECT_EQ(m8.tensors[1].scale_sources.size(), 2u);
}

TEST(Manifest, RejectsBadQuantizedTensors) {
  struct Case {
    const char *what;
    std::function<void(json &)> edit;
    const char *needle;
  };
  const std::vector<Case> cases = {
      {"K", [](json &j) { j["weights"]["tensors"][1]["shape"] = {2, 2, 48}; },
       "tensor 'layers.0.moe.w1': q8 cannot hold shape [2, 2, 48]: K is not a multiple of the "
       "group size 32"},
      {"group", [](json &j) { j["weights"]["tensors"][1]["group_size"] = 64; },
       "group_size 64 but q8 of shape [2, 2, 32] has 32"},
      {"no group", [](json &j) { j["weights"]["tensors"][1].erase("group_size"); },
       "missing field \"group_size\""},
      {"scale dtype", [](json &j) { j["weights"]["tensors"][1]["scale"]["dtype"] = "f32"; },
       "scale: dtype \"f32\" but q8 scales are f16"},
      {"scale overlap", [](json &j) { j["weights"]["tensors"][1]["scale"]["offset"] = 320; },
       "overlap"},
      {"scale outside", [](json &j) { j["weights"]["tensors"][1]["scale"]["offset"] = 512; },
       "scale bytes [512, 520) overflow the weights arena of 512 bytes"},
      {"scale unaligned", [](json &j) { j["weights"]["tensors"][1]["scale"]["offset"] = 390; },
       "scale offset 390 is not a multiple of the alignment 64"},
      {"scale on f32", [](json &j) { j["weights"]["tensors"][0]["group_size"] = 32; },
       "\"group_size\" is only for quantized tensors"},
      {"scale_sources on q8",
       [](json &j) { j["weights"]["tensors"][1]["scale_sources"] = {"a", "b"}; },
       "\"scale_sources\" needs dtype f8e4m3"},
      {"no file", [](json &j) { j.erase("weights_file"); },
       "is q8 but the manifest names no \"weights_file\""},
      {"file name", [](json &j) { j["weights_file"]["name"] = "../x.weights"; },
       "weights_file: name '../x.weights' is not a plain file name"},
      {"fingerprint", [](json &j) { j["weights_file"]["fingerprint"] = "XYZ"; },
       "weights_file: fingerprint must be 32 hex digits"},
      {"file bytes", [](json &j) { j["weights_file"]["bytes"] = 512; },
       "weights_file: bytes 512 but a header page and the arena of 512 bytes make 4608"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.what);
    json j = quantized();
    c.edit(j);
    std::string msg = error_of(j);
    EXPECT_EQ(msg.rfind("manifest: ", 0), 0u) << msg;
    EXPECT_NE(msg.find(c.needle), std::string::npos) << msg;
  }
}

/// quantized() with w1 back to a float tensor (bf16 [2, 2, 32]: 256 B at 256) stored in panel
/// order of 2 rows and 8 lanes.
json in_panels() {
  json j = quantized();
  json &t = j["weights"]["tensors"][1];
  t["dtype"] = "bf16";
  t.erase("group_size");
  t.erase("scale");
  t["panels"] = {2, 8};
  return j;
}

TEST(Manifest, PanelOrder) {
  Manifest m = parse_manifest(in_panels().dump());
  EXPECT_TRUE(m.tensors[1].panels());
  EXPECT_EQ(m.tensors[1].panel_cols, 2);
  EXPECT_EQ(m.tensors[1].panel_lanes, 8);
  EXPECT_EQ(m.tensors[1].nbytes, 256u);
  EXPECT_FALSE(m.tensors[0].panels());
  Manifest back = parse_manifest(checkpoint::write_manifest(m));
  EXPECT_EQ(back.tensors[1].panel_cols, 2);
  EXPECT_EQ(back.tensors[1].panel_lanes, 8);
  EXPECT_FALSE(back.tensors[0].panels());
  // Without a packed file the loader permutes the tensor while copying it into the arena.
  json j = in_panels();
  j.erase("weights_file");
  EXPECT_TRUE(parse_manifest(j.dump()).tensors[1].panels());
}

TEST(Manifest, Q8PanelOrder) {
  // q8 codes and scales in panel order (a packed file only, as every quantized tensor).
  json j = quantized();
  j["weights"]["tensors"][1]["panels"] = {2, 8};
  Manifest m = parse_manifest(j.dump());
  EXPECT_TRUE(m.tensors[1].panels());
  EXPECT_EQ(m.tensors[1].quant, QuantFormat::Q8);
  EXPECT_EQ(m.tensors[1].nbytes, 128u);
  EXPECT_EQ(m.tensors[1].scale.nbytes, 8u);
  Manifest back = parse_manifest(checkpoint::write_manifest(m));
  EXPECT_EQ(back.tensors[1].panel_cols, 2);
  EXPECT_EQ(back.tensors[1].panel_lanes, 8);
  j.erase("weights_file");
  EXPECT_NE(error_of(j).find("names no \"weights_file\""), std::string::npos) << error_of(j);
}

TEST(Manifest, RejectsBadPanels) {
  struct Case {
    const char *what;
    std::function<void(json &)> edit;
    const char *needle;
  };
  const std::vector<Case> cases = {
      {"cols", [](json &j) { j["weights"]["tensors"][1]["panels"] = {3, 8}; },
       "tensor 'layers.0.moe.w1': panels of 3 rows and 8 lanes cannot hold shape [2, 2, 32]"},
      {"lanes", [](json &j) { j["weights"]["tensors"][1]["panels"] = {2, 0}; },
       "\"panels\" must be [cols, lanes], two integers in 1..256, got [2,0]"},
      {"not a pair", [](json &j) { j["weights"]["tensors"][1]["panels"] = 16; },
       "\"panels\" must be [cols, lanes]"},
      {"q4",
       [](json &j) {
         j = quantized();
         j["weights"]["tensors"][1]["dtype"] = "q4";
         j["weights"]["tensors"][1]["panels"] = {2, 8};
       },
       "tensor 'layers.0.moe.w1': \"panels\" is only for unquantized (f32, bf16, f16) and q8 "
       "tensors"},
      {"q8 cols",
       [](json &j) {
         j = quantized();
         j["weights"]["tensors"][1]["panels"] = {3, 8};
       },
       "tensor 'layers.0.moe.w1': panels of 3 rows and 8 lanes cannot hold shape [2, 2, 32]"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.what);
    json j = in_panels();
    c.edit(j);
    std::string msg = error_of(j);
    EXPECT_EQ(msg.rfind("manifest: ", 0), 0u) << msg;
    EXPECT_NE(msg.find(c.needle), std::string::npos) << msg;
  }
}

} // namespace
} // namespace moec
