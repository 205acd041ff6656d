// moec/tokenizer.h — text <-> token ids over libsentencepiece, plus a streaming decoder.
//
// Mixtral uses a sentencepiece BPE model with byte fallback: rare characters become several
// <0xNN> byte pieces, and a word's leading space is the piece prefix "▁", which sentencepiece
// drops at the very start of a decoded sequence. StreamDecoder turns ids into text one token at
// a time such that the concatenation of its outputs equals decode(context + ids) minus
// decode(context), and it never emits part of a UTF-8 character.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace moec {

class Tokenizer {
public:
  /// Loads a sentencepiece model file; throws moec::Error if missing or unreadable.
  explicit Tokenizer(const std::string &model_path);
  ~Tokenizer();
  Tokenizer(const Tokenizer &) = delete;
  Tokenizer &operator=(const Tokenizer &) = delete;

  /// Token ids of `text`, with `bos` prepended when given (Mixtral: 1).
  std::vector<std::int32_t> encode(std::string_view text,
                                   std::optional<std::int32_t> bos) const;
  /// Text of `ids`; control tokens (BOS/EOS) decode to nothing.
  std::string decode(const std::vector<std::int32_t> &ids) const;

  int vocab_size() const;
  int bos_id() const;
  int eos_id() const;
  /// If `id` is a byte-fallback piece <0xNN>, its byte value.
  std::optional<unsigned char> byte_value(std::int32_t id) const;
  /// True for ordinary text pieces (not control, unknown, unused or byte).
  bool is_normal(std::int32_t id) const;

private:
  void check_id(std::int32_t id) const;

  std::string path_;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
};

class StreamDecoder {
public:
  /// `context`: ids already shown (e.g. the prompt); they shape spacing but are not emitted.
  explicit StreamDecoder(const Tokenizer &tokenizer, std::vector<std::int32_t> context = {});

  /// Adds one id; returns the text that is now final (possibly empty).
  std::string push(std::int32_t id);
  /// Returns whatever is still held back (an incomplete UTF-8 tail decodes as U+FFFD).
  std::string finish();

private:
  /// Number of leading ids of window_ that form no incomplete UTF-8 byte sequence at the end.
  std::size_t complete_prefix() const;
  std::string emit(std::size_t n);

  const Tokenizer &tok_;
  std::vector<std::int32_t> window_; // ids since the last anchor (see tokenizer.cpp)
  std::size_t emitted_ = 0;          // bytes of decode(window_[:...]) already returned/shown
};

} // namespace moec
