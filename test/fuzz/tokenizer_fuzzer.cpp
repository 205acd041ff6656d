// tokenizer_fuzzer.cpp — the tokenizer's input paths on arbitrary data, with the real Mixtral
// tokenizer.model (MOEC_TOKENIZER_MODEL).
//
// First input byte even: the rest is text (any bytes, not necessarily UTF-8). encode() must not
// fail; streaming its ids must give decode(ids) in pieces that are each valid UTF-8; and valid
// UTF-8 text (without NUL or U+2581) must round-trip exactly.
// First input byte odd: the rest is little-endian u16 token ids, a few of them past the vocabulary.
// Out-of-range ids must throw moec::Error; otherwise the StreamDecoder contract must hold: every
// piece valid UTF-8, concatenation == decode(ids).
#include "utf8_check.h"
#include "moec/error.h"
#include "moec/tokenizer.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

namespace {
std::unique_ptr<moec::Tokenizer> tok;

using moec::test::valid_utf8;

void check_stream(const std::vector<std::int32_t> &ids) {
  const std::string whole = tok->decode(ids);
  moec::StreamDecoder s(*tok);
  std::string streamed;
  for (std::int32_t id : ids) {
    std::string piece = s.push(id);
    if (!valid_utf8(piece)) {
      std::fprintf(stderr, "streamed piece is not valid UTF-8\n");
      std::abort();
    }
    streamed += piece;
  }
  std::string tail = s.finish();
  if (!valid_utf8(tail))
    std::abort();
  streamed += tail;
  if (streamed != whole) {
    std::fprintf(stderr, "streamed text differs from decode(ids)\n");
    std::abort();
  }
}
} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  const char *path = std::getenv("MOEC_TOKENIZER_MODEL");
  if (!path || !*path) {
    std::fprintf(stderr, "fuzz_tokenizer: set MOEC_TOKENIZER_MODEL to a tokenizer.model\n");
    std::exit(1);
  }
  tok = std::make_unique<moec::Tokenizer>(path);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  if (size == 0)
    return 0;
  if ((data[0] & 1) == 0) {
    const std::string text(reinterpret_cast<const char *>(data + 1), size - 1);
    const std::vector<std::int32_t> ids = tok->encode(text, 1);
    check_stream(ids);
    // U+2581 "▁" is sentencepiece's own space marker: it decodes as a space (the Python
    // package does the same), so text holding it cannot round-trip.
    if (valid_utf8(text) && text.find('\0') == std::string::npos &&
        text.find("\xE2\x96\x81") == std::string::npos && tok->decode(ids) != text) {
      std::fprintf(stderr, "valid UTF-8 text does not round-trip\n");
      std::abort();
    }
    return 0;
  }
  std::vector<std::int32_t> ids;
  bool out_of_range = false;
  for (std::size_t i = 1; i + 1 < size && ids.size() < 256; i += 2) {
    std::int32_t id = (data[i] | (data[i + 1] << 8)) % (tok->vocab_size() + 16);
    out_of_range |= id >= tok->vocab_size();
    ids.push_back(id);
  }
  if (out_of_range) {
    try {
      tok->decode(ids);
      std::abort(); // must have thrown
    } catch (const moec::Error &) {
    }
    return 0;
  }
  check_stream(ids);
  return 0;
}
