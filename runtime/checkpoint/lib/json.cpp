// json.cpp — parse_json: a SAX pass for depth and duplicate keys, then the DOM.
#include "json.h"

#include <set>

namespace moec::checkpoint::detail {
namespace {

/// Walks the events only: stops at the first key repeated within one object or at the first
/// container nested deeper than kMaxJsonDepth. Memory: one key set per open object.
class Guard : public nlohmann::json_sax<json> {
public:
  std::string problem; // empty: the text is well-formed, shallow and duplicate-free

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t &) override { return true; }
  bool string(string_t &) override { return true; }
  bool binary(binary_t &) override { return true; }
  bool start_object(std::size_t) override {
    keys_.emplace_back();
    return open();
  }
  bool key(string_t &k) override {
    if (!keys_.back().insert(k).second) {
      problem = "duplicate key " + squote(k);
      return false;
    }
    return true;
  }
  bool end_object() override {
    keys_.pop_back();
    --depth_;
    return true;
  }
  bool start_array(std::size_t) override { return open(); }
  bool end_array() override {
    --depth_;
    return true;
  }
  bool parse_error(std::size_t at, const std::string &, const nlohmann::detail::exception &e) override {
    problem = "not valid JSON (byte " + std::to_string(at) + "): " + parse_error_text(e);
    return false;
  }

private:
  bool open() {
    if (++depth_ > kMaxJsonDepth) {
      problem = "nested deeper than " + std::to_string(kMaxJsonDepth) + " levels";
      return false;
    }
    return true;
  }
  int depth_ = 0;
  std::vector<std::set<std::string>> keys_;
};

} // namespace

Result<json> parse_json(std::string_view text, const std::string &what) {
  Guard guard;
  json::sax_parse(text.begin(), text.end(), &guard);
  if (!guard.problem.empty())
    return fail(what + ": " + guard.problem);
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    return fail(what + ": not valid JSON");
  return j;
}

} // namespace moec::checkpoint::detail
