// stop.cpp — StopMatcher (see moec/stop.h).
#include "moec/stop.h"

#include "moec/error.h"

#include <algorithm>

namespace moec {

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  for (const std::string &s : stops_)
    if (s.empty())
      throw Error("a stop string must not be empty");
}

std::string StopMatcher::push(const std::string &text) {
  if (stopped_)
    return "";
  std::string buf = held_ + text;
  held_.clear();
  // The earliest stop string in the text ends it.
  std::size_t first = std::string::npos;
  for (const std::string &s : stops_)
    first = std::min(first, buf.find(s));
  if (first != std::string::npos) {
    stopped_ = true;
    buf.resize(first);
    return buf;
  }
  // Hold back the longest tail that is a proper prefix of some stop string.
  std::size_t hold = 0;
  for (const std::string &s : stops_)
    for (std::size_t k = std::min(buf.size(), s.size() - 1); k > hold; --k)
      if (buf.compare(buf.size() - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
  held_ = buf.substr(buf.size() - hold);
  buf.resize(buf.size() - hold);
  return buf;
}

std::string StopMatcher::finish() {
  std::string out = stopped_ ? "" : held_;
  held_.clear();
  return out;
}

} // namespace moec
