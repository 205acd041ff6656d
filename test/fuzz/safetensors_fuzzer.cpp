// safetensors_fuzzer.cpp — parse_safetensors() on arbitrary bytes.
//
// Any input must either parse into tensors whose bytes lie inside the input, disjoint, with
// nbytes = product(shape) x dtype size, or throw moec::Error with a one-line message. Crashes,
// sanitizer reports, other exceptions and hangs are bugs.
#include "moec/error.h"
#include "moec/safetensors.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  // A private copy so that reads past the input are caught by ASan exactly at its end.
  auto *copy = static_cast<unsigned char *>(std::malloc(size ? size : 1));
  std::memcpy(copy, data, size);
  try {
    moec::SafetensorsContents c = moec::parse_safetensors(copy, size, "fuzz.safetensors");
    for (const moec::TensorView &t : c.tensors) {
      const auto *p = static_cast<const unsigned char *>(t.data);
      if (p < copy || p + t.nbytes > copy + size)
        std::abort(); // a view outside the file
      volatile unsigned char sink = 0;
      if (t.nbytes)
        sink = sink + p[0] + p[t.nbytes - 1]; // touch both ends
      std::uint64_t n = moec::dtype_size(t.dtype);
      for (std::int64_t d : t.shape)
        n *= static_cast<std::uint64_t>(d);
      if (n != t.nbytes)
        std::abort();
    }
  } catch (const moec::Error &e) {
    if (std::strchr(e.what(), '\n'))
      std::abort(); // messages are one line
  }
  std::free(copy);
  return 0;
}
