// stop_test.cpp — StopMatcher: stop strings across token boundaries, never shown.
#include "moec/error.h"
#include "moec/stop.h"

#include <gtest/gtest.h>

namespace moec {
namespace {

/// Feeds `pieces` one by one; returns what was shown (and whether it stopped).
std::string feed(StopMatcher &m, const std::vector<std::string> &pieces) {
  std::string shown;
  for (const std::string &p : pieces)
    shown += m.push(p);
  return shown + m.finish();
}

TEST(StopMatcher, NoStopsPassesEverythingAtOnce) {
  StopMatcher m;
  EXPECT_EQ(m.push("Hello"), "Hello");
  EXPECT_EQ(m.push(" world"), " world");
  EXPECT_FALSE(m.stopped());
}

TEST(StopMatcher, StopSplitAcrossPiecesIsNotShown) {
  StopMatcher m({"###"});
  EXPECT_EQ(m.push("one #"), "one "); // "#" could start "###"
  EXPECT_EQ(m.push("#"), "");
  EXPECT_EQ(m.push("# two"), "");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.push("more"), "");
  EXPECT_EQ(m.finish(), "");
}

TEST(StopMatcher, FalseStartIsShownOnceItCannotMatch) {
  StopMatcher m({"END"});
  EXPECT_EQ(m.push("the EN"), "the ");
  EXPECT_EQ(m.push("D"), "");
  EXPECT_TRUE(m.stopped());
  StopMatcher n({"END"});
  EXPECT_EQ(n.push("the EN"), "the ");
  EXPECT_EQ(n.push("Ds"), "");
  EXPECT_TRUE(n.stopped()); // "ENDs" contains END
  StopMatcher k({"END"});
  EXPECT_EQ(k.push("EN"), "");
  EXPECT_EQ(k.push("VOY"), "ENVOY");
  EXPECT_EQ(feed(k, {" E"}), " E"); // the end of generation shows the held tail
  EXPECT_FALSE(k.stopped());
}

TEST(StopMatcher, EarliestOfSeveralStopsWins) {
  StopMatcher m({"world", "lo w"});
  EXPECT_EQ(feed(m, {"hel", "lo", " wor", "ld"}), "hel");
  EXPECT_TRUE(m.stopped());
  StopMatcher n({"\n\n", "User:"});
  EXPECT_EQ(feed(n, {"A", "\n", "Us", "er:", " hi"}), "A\n");
}

TEST(StopMatcher, StopInsideOnePiece) {
  StopMatcher m({"."});
  EXPECT_EQ(m.push("Yes. No"), "Yes");
  EXPECT_TRUE(m.stopped());
}

TEST(StopMatcher, EmptyStopIsRefused) { EXPECT_THROW(StopMatcher({""}), Error); }

} // namespace
} // namespace moec
