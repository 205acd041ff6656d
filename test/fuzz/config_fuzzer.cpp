// config_fuzzer.cpp — the shared parse_config() (config.json) on arbitrary text.
//
// Any input must either give a config inside the stated limits, with parameter counts that
// fit (active <= total), which the writer turns into text that parses back to the same config,
// or fail with a one-line message.
#include "moec/checkpoint/config.h"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string_view>

using namespace moec::checkpoint;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  Result<ModelConfig> c =
      parse_config(std::string_view(reinterpret_cast<const char *>(data), size), "config.json");
  if (!c) {
    if (c.error().find('\n') != std::string::npos)
      std::abort();
    return 0;
  }
  if (!validate_config(*c) || c->num_experts_per_tok > c->num_local_experts ||
      c->num_hidden_layers > ConfigLimits::kMaxLayers || !std::isfinite(c->rope_theta) ||
      c->bos_token_id >= c->vocab_size || c->head_dim % 2 != 0)
    std::abort();
  const std::int64_t total = total_parameters(*c), active = active_parameters(*c);
  if (total <= 0 || active <= 0 || active > total || total > ConfigLimits::kMaxParameters)
    std::abort();
  Result<ModelConfig> back = parse_config(write_config_json(*c), "written");
  if (!back || !config_mismatch(*back, *c).empty())
    std::abort(); // the writer and the reader disagree
  return 0;
}
