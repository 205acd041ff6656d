// tokenizer.cpp — Tokenizer and StreamDecoder.
//
// StreamDecoder keeps a window of ids that starts at an "anchor": a normal text piece whose own
// text is non-empty. sentencepiece drops the leading "▁" only of the first text piece of a
// sequence, so after an anchor decoding is concatenative (earlier text never changes when more
// ids follow) and the new text for a push is decode(window)[emitted_:]. Pieces that decode to ""
// on their own (a lone "▁") are not used as anchors, so the window never starts on a piece whose
// text depends on what follows. Trailing byte pieces that do not yet form a complete UTF-8
// character are held back until they do (or until finish()).
#include "moec/tokenizer.h"

#include "moec/error.h"

#include <sentencepiece_processor.h>

#include <filesystem>

namespace moec {

Tokenizer::Tokenizer(const std::string &model_path)
    : path_(model_path), sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {
  std::error_code ec;
  if (!std::filesystem::exists(model_path, ec))
    throw Error(model_path + ": tokenizer model does not exist");
  if (!std::filesystem::is_regular_file(model_path, ec))
    throw Error(model_path + ": tokenizer model is not a regular file");
  const auto status = sp_->Load(model_path);
  if (!status.ok()) {
    std::string why = status.ToString();
    why.erase(why.find_last_not_of(" \n") + 1);
    throw Error(model_path + ": cannot load the sentencepiece model (" + why + ")");
  }
  if (sp_->GetPieceSize() <= 0)
    throw Error(model_path + ": sentencepiece model has no pieces");
}

Tokenizer::~Tokenizer() = default;

int Tokenizer::vocab_size() const { return sp_->GetPieceSize(); }
int Tokenizer::bos_id() const { return sp_->bos_id(); }
int Tokenizer::eos_id() const { return sp_->eos_id(); }

void Tokenizer::check_id(std::int32_t id) const {
  if (id < 0 || id >= sp_->GetPieceSize())
    throw Error(path_ + ": token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                std::to_string(sp_->GetPieceSize()) + ")");
}

std::vector<std::int32_t> Tokenizer::encode(std::string_view text,
                                            std::optional<std::int32_t> bos) const {
  std::vector<int> ids;
  const auto status = sp_->Encode(text, &ids);
  if (!status.ok())
    throw Error(path_ + ": cannot encode text (" + status.ToString() + ")");
  std::vector<std::int32_t> out;
  out.reserve(ids.size() + 1);
  if (bos)
    out.push_back(*bos);
  out.insert(out.end(), ids.begin(), ids.end());
  return out;
}

std::string Tokenizer::decode(const std::vector<std::int32_t> &ids) const {
  for (std::int32_t id : ids)
    check_id(id);
  std::vector<int> in(ids.begin(), ids.end());
  std::string text;
  const auto status = sp_->Decode(in, &text);
  if (!status.ok())
    throw Error(path_ + ": cannot decode ids (" + status.ToString() + ")");
  return text;
}

std::optional<unsigned char> Tokenizer::byte_value(std::int32_t id) const {
  check_id(id);
  if (!sp_->IsByte(id))
    return std::nullopt;
  const std::string &piece = sp_->IdToPiece(id); // "<0xNN>"
  if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0)
    return std::nullopt;
  return static_cast<unsigned char>(std::stoul(piece.substr(3, 2), nullptr, 16));
}

bool Tokenizer::is_normal(std::int32_t id) const {
  check_id(id);
  return !sp_->IsControl(id) && !sp_->IsUnknown(id) && !sp_->IsUnused(id) && !sp_->IsByte(id);
}

// ---------------------------------------------------------------------------------------------
namespace {
/// Length of the UTF-8 sequence a lead byte starts (1 for ASCII/invalid, 2..4 otherwise).
int utf8_length(unsigned char b) {
  if (b >= 0xF0 && b <= 0xF7)
    return 4;
  if (b >= 0xE0)
    return b <= 0xEF ? 3 : 1;
  if (b >= 0xC0)
    return 2;
  return 1;
}
bool is_continuation(unsigned char b) { return (b & 0xC0) == 0x80; }

bool is_anchor(const Tokenizer &tok, std::int32_t id) {
  return tok.is_normal(id) && !tok.decode({id}).empty();
}
} // namespace

StreamDecoder::StreamDecoder(const Tokenizer &tokenizer, std::vector<std::int32_t> context)
    : tok_(tokenizer), window_(std::move(context)) {
  // Start the window at the last normal piece of the context; its text is already shown.
  std::size_t anchor = 0;
  for (std::size_t i = window_.size(); i-- > 0;)
    if (is_anchor(tok_, window_[i])) {
      anchor = i;
      break;
    }
  window_.erase(window_.begin(), window_.begin() + static_cast<std::ptrdiff_t>(anchor));
  emitted_ = tok_.decode(window_).size();
}

std::size_t StreamDecoder::complete_prefix() const {
  // Walk back over at most 4 trailing byte pieces looking for the lead byte of the last char.
  std::size_t n = window_.size();
  for (std::size_t back = 1; back <= 4 && back <= n; ++back) {
    std::optional<unsigned char> b = tok_.byte_value(window_[n - back]);
    if (!b)
      return n; // a non-byte piece: everything before it is settled text
    if (is_continuation(*b))
      continue;
    const int len = utf8_length(*b);
    return static_cast<std::size_t>(len) > back ? n - back : n;
  }
  return n; // only stray continuation bytes: nothing will complete them
}

std::string StreamDecoder::emit(std::size_t n) {
  std::vector<std::int32_t> head(window_.begin(), window_.begin() + static_cast<std::ptrdiff_t>(n));
  std::string text = tok_.decode(head);
  std::string out = text.size() > emitted_ ? text.substr(emitted_) : std::string();
  emitted_ = std::max(emitted_, text.size());
  // Re-anchor at the last normal piece among the emitted ids to keep the window short.
  for (std::size_t i = n; i-- > 1;)
    if (is_anchor(tok_, window_[i])) {
      window_.erase(window_.begin(), window_.begin() + static_cast<std::ptrdiff_t>(i));
      std::vector<std::int32_t> settled(window_.begin(),
                                        window_.begin() + static_cast<std::ptrdiff_t>(n - i));
      emitted_ = tok_.decode(settled).size();
      break;
    }
  return out;
}

std::string StreamDecoder::push(std::int32_t id) {
  window_.push_back(id);
  return emit(complete_prefix());
}

std::string StreamDecoder::finish() { return emit(window_.size()); }

} // namespace moec
