// manifest_fuzzer.cpp — the shared parse_manifest() on arbitrary text.
//
// Any input must either parse into a manifest whose tensors fit the weights arena without
// overlapping and whose KV-cache size matches its shape, and which the writer turns into text
// that parses back, or fail with a one-line message.
#include "moec/checkpoint/manifest.h"

#include <cstdint>
#include <cstdlib>
#include <string_view>

using namespace moec::checkpoint;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  Result<Manifest> m = parse_manifest(std::string_view(reinterpret_cast<const char *>(data), size));
  if (!m) {
    if (m.error().find('\n') != std::string::npos || m.error().rfind("manifest: ", 0) != 0)
      std::abort();
    return 0;
  }
  for (const WeightTensor &t : m->tensors) {
    if (t.offset + t.nbytes < t.offset || t.offset + t.nbytes > m->weights_bytes)
      std::abort();
    if (t.offset % m->weights_alignment != 0 || t.sources.empty())
      std::abort();
  }
  if (m->config.num_experts_per_tok > m->config.num_local_experts ||
      m->config.bos_token_id >= m->config.vocab_size || m->kv_shape.size() != 5)
    std::abort();
  Result<Manifest> back = parse_manifest(write_manifest(*m));
  if (!back || back->tensors.size() != m->tensors.size() || back->kv_bytes != m->kv_bytes ||
      !config_mismatch(back->config, m->config).empty())
    std::abort();
  return 0;
}
