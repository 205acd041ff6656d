// index_fuzzer.cpp — the shared parse_index() (model.safetensors.index.json) on arbitrary text.
//
// Any input must either give a weight_map whose every shard name obeys the one shard-name rule
// (a plain *.safetensors file name), or fail with a one-line message.
#include "moec/checkpoint/safetensors.h"

#include <cstdint>
#include <cstdlib>
#include <string_view>

using namespace moec::checkpoint;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  Result<CheckpointIndex> index =
      parse_index(std::string_view(reinterpret_cast<const char *>(data), size), "fuzz.json");
  if (index) {
    if (index->weight_map.empty())
      std::abort();
    for (const auto &[tensor, shard] : index->weight_map)
      if (!shard_name_problem(shard).empty() || shard.find('/') != std::string::npos)
        std::abort();
  } else if (index.error().find('\n') != std::string::npos) {
    std::abort();
  }
  return 0;
}
