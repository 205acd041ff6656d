// kv_cache_test.cpp — moec_kv_offset and KvCache.
#include "fake_model.h"
#include "moec/abi.h"
#include "moec/error.h"
#include "moec/kv_cache.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace moec {
namespace {

TEST(KvOffset, RowMajorOverLayerWhichPosHead) {
  // [L=3][2][S=5][KVH=4][HD=8]
  const std::int64_t S = 5, KVH = 4, HD = 8;
  EXPECT_EQ(moec_kv_offset(0, 0, 0, 0, S, KVH, HD), 0);
  EXPECT_EQ(moec_kv_offset(0, 0, 0, 1, S, KVH, HD), HD);
  EXPECT_EQ(moec_kv_offset(0, 0, 1, 0, S, KVH, HD), KVH * HD);
  EXPECT_EQ(moec_kv_offset(0, 1, 0, 0, S, KVH, HD), S * KVH * HD);
  EXPECT_EQ(moec_kv_offset(1, 0, 0, 0, S, KVH, HD), 2 * S * KVH * HD);
  EXPECT_EQ(moec_kv_offset(2, 1, 4, 3, S, KVH, HD) + HD, 3 * 2 * S * KVH * HD); // last row
  // Every (layer, which, pos, head) maps to a distinct row.
  std::vector<int> seen(3 * 2 * S * KVH, 0);
  for (int l = 0; l < 3; ++l)
    for (int w = 0; w < 2; ++w)
      for (int p = 0; p < S; ++p)
        for (int h = 0; h < KVH; ++h)
          ++seen[static_cast<std::size_t>(moec_kv_offset(l, w, p, h, S, KVH, HD) / HD)];
  for (int s : seen)
    EXPECT_EQ(s, 1);
}

TEST(KvCache, AllocatesZeroedAndTracksFill) {
  nlohmann::json j = nlohmann::json::parse(test::fake_manifest_text());
  Manifest m = parse_manifest(j.dump());
  KvCache kv(m);
  EXPECT_EQ(kv.bytes(), 512u);
  for (int i = 0; i < 128; ++i)
    ASSERT_EQ(kv.f32()[i], 0.0f);
  EXPECT_EQ(kv.offset(0, 1, 3, 0), (32 + 3) * 2); // [L=1][2][S=32][KVH=1][HD=2]
  EXPECT_THROW(kv.offset(1, 0, 0, 0), Error);
  EXPECT_THROW(kv.offset(0, 2, 0, 0), Error);
  EXPECT_THROW(kv.offset(0, 0, 32, 0), Error);
  EXPECT_THROW(kv.offset(0, 0, 0, 1), Error);
  EXPECT_EQ(kv.filled(), 0);
  kv.advance(30);
  kv.advance(2);
  EXPECT_EQ(kv.filled(), 32);
  EXPECT_THROW(kv.advance(1), Error);
  kv.reset();
  EXPECT_EQ(kv.filled(), 0);
  EXPECT_EQ(kv.capacity(), 32);
}

} // namespace
} // namespace moec
