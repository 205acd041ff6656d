// safetensors_fuzzer.cpp — the shared parse_safetensors_header() on arbitrary bytes.
//
// Any input must either parse into tensors whose bytes lie inside the input's data region,
// disjoint, with nbytes = product(shape) x dtype size, or fail with a one-line message that
// names the file. Crashes, sanitizer reports, aborts and hangs are bugs.
#include "moec/checkpoint/safetensors.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>

using namespace moec::checkpoint;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  // A private copy so that reads past the input are caught by ASan exactly at its end.
  auto *copy = static_cast<unsigned char *>(std::malloc(size ? size : 1));
  std::memcpy(copy, data, size);
  Result<SafetensorsHeader> h = parse_safetensors_header(copy, size, size, "fuzz.safetensors");
  if (h) {
    for (const TensorInfo &t : h->tensors) {
      if (h->data_start + t.begin + t.nbytes > size || t.begin + t.nbytes < t.begin)
        std::abort(); // a tensor outside the file
      std::uint64_t n = moec::dtype_size(t.dtype);
      for (std::int64_t d : t.shape)
        n *= static_cast<std::uint64_t>(d);
      if (n != t.nbytes || t.shape.size() > kMaxRank)
        std::abort();
    }
  } else if (h.error().find('\n') != std::string::npos ||
             h.error().rfind("fuzz.safetensors: ", 0) != 0) {
    std::abort(); // messages are one line and name the file
  }
  std::free(copy);
  return 0;
}
