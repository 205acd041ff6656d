// manifest_fuzzer.cpp — parse_manifest() on arbitrary text.
//
// Any input must either parse into a manifest whose tensors fit the weights arena without
// overlapping and whose KV-cache size matches its shape, or throw moec::Error with a one-line
// message.
#include "moec/error.h"
#include "moec/manifest.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  try {
    const moec::Manifest m =
        moec::parse_manifest(std::string_view(reinterpret_cast<const char *>(data), size));
    for (const moec::WeightTensor &t : m.tensors) {
      if (t.offset + t.nbytes < t.offset || t.offset + t.nbytes > m.weights_bytes)
        std::abort();
      if (t.offset % m.weights_alignment != 0 || t.sources.empty())
        std::abort();
    }
    if (m.config.num_experts_per_tok > m.config.num_local_experts ||
        m.config.bos_token_id >= m.config.vocab_size || m.kv_shape.size() != 5)
      std::abort();
  } catch (const moec::Error &e) {
    if (std::strchr(e.what(), '\n'))
      std::abort();
  }
  return 0;
}
