// moec/stop.h — stop strings, matched in the generated text across token boundaries.
//
// The generated text arrives in pieces (one per token, from StreamDecoder). A stop string may
// span several pieces, so the matcher holds back the longest tail of the text that could still
// be the start of a stop string, and shows it only once it cannot. When a stop string is found,
// the text before it is the last shown: neither the stop string nor anything after it is.
// Stop strings are whole UTF-8 strings, so a held-back tail always starts on a character
// boundary and what is shown never ends inside a character that StreamDecoder completed.
#pragma once

#include <string>
#include <vector>

namespace moec {

class StopMatcher {
public:
  /// `stops` must not contain an empty string (callers refuse it: it would match at once).
  explicit StopMatcher(std::vector<std::string> stops = {});

  /// Appends `text`; returns the part that can be shown now. Once a stop string has been found
  /// (stopped()), returns "" for every later piece.
  std::string push(const std::string &text);
  /// The end of the generation: the held-back tail, since no stop string can complete now.
  std::string finish();
  bool stopped() const { return stopped_; }
  bool empty() const { return stops_.empty(); }

private:
  std::vector<std::string> stops_;
  std::string held_; // text that may be the start of a stop string
  bool stopped_ = false;
};

} // namespace moec
