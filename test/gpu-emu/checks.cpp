// checks.cpp — device allocations and racecheck shadows of the PTX interpreter (checks.h).
#include "checks.h"

#include <cstdlib>
#include <string>

#include <immintrin.h>

namespace ptxemu {

bool racecheck_enabled() {
  static const bool on = [] {
    const char *v = std::getenv("PTXEMU_RACECHECK");
    return !(v && std::string(v) == "0");
  }();
  return on;
}

void Memory::add(const void *p, std::size_t n) {
  std::lock_guard<std::mutex> l(mutex);
  ranges[reinterpret_cast<std::uint64_t>(p)].size = n;
  allocated += n;
}

bool Memory::remove(std::uint64_t p) {
  std::lock_guard<std::mutex> l(mutex);
  auto it = ranges.find(p);
  if (it == ranges.end()) return false;
  allocated -= it->second.size;
  ranges.erase(it);
  return true;
}

Allocation *Memory::contains(std::uint64_t p, std::size_t n, std::uint64_t *lo) {
  std::lock_guard<std::mutex> l(mutex);
  auto it = ranges.upper_bound(p);
  if (it == ranges.begin()) return nullptr;
  --it;
  if (p < it->first || p + n > it->first + it->second.size) return nullptr;
  *lo = it->first;
  return &it->second;
}

bool SharedShadow::cpu_has_avx2() { return __builtin_cpu_supports("avx2"); }

// Four entries per 256-bit vector: an entry's low word is the writer (epoch << 12 | thread),
// the high word the reader. As in access(): a read races with a writer of this epoch that is
// not `me`; a write also with a reader of this epoch that is not `me`.
__attribute__((target("avx2"))) bool SharedShadow::access_avx2(ShadowByte *s, std::size_t n,
                                                               bool write, std::uint32_t epoch,
                                                               std::uint32_t me) {
  const std::uint32_t mine = epoch << kThreadBits | me;
  const __m256i ep = _mm256_set1_epi32(int(epoch)), mn = _mm256_set1_epi32(int(mine));
  // The words of this epoch that are not `me`'s: lanes of 32 bits, writers at even positions.
  const int words = write ? 0xff : 0x55;
  int bad = 0;
  for (std::size_t i = 0; i < n; i += 4) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(s + i));
    const __m256i now = _mm256_cmpeq_epi32(_mm256_srli_epi32(v, int(kThreadBits)), ep);
    const __m256i other = _mm256_andnot_si256(_mm256_cmpeq_epi32(v, mn), now);
    bad |= _mm256_movemask_ps(_mm256_castsi256_ps(other)) & words;
  }
  if (bad) return false;
  const __m256i lo = _mm256_set1_epi64x(0xffffffffll);
  if (write) {
    const __m256i w = _mm256_set1_epi64x(std::int64_t(mine));
    for (std::size_t i = 0; i < n; i += 4) {
      __m256i *p = reinterpret_cast<__m256i *>(s + i);
      _mm256_storeu_si256(p, _mm256_or_si256(_mm256_andnot_si256(lo, _mm256_loadu_si256(p)), w));
    }
    return true;
  }
  // Readers: `me` when none of this epoch, kPackedMany when another of this epoch.
  const __m256i r_mine = _mm256_set1_epi64x(std::int64_t(std::uint64_t(mine) << 32));
  const __m256i r_many =
      _mm256_set1_epi64x(std::int64_t(std::uint64_t(epoch << kThreadBits | kPackedMany) << 32));
  for (std::size_t i = 0; i < n; i += 4) {
    __m256i *p = reinterpret_cast<__m256i *>(s + i);
    const __m256i v = _mm256_loadu_si256(p);
    const __m256i r = _mm256_andnot_si256(lo, v); // the reader word, in place
    const __m256i now = _mm256_cmpeq_epi64(_mm256_srli_epi64(r, 32 + int(kThreadBits)),
                                           _mm256_set1_epi64x(epoch));
    const __m256i same = _mm256_cmpeq_epi64(r, r_mine);
    // not this epoch: me; this epoch and me: unchanged (= r_mine); else many
    const __m256i nr = _mm256_blendv_epi8(r_mine, _mm256_blendv_epi8(r_many, r_mine, same), now);
    _mm256_storeu_si256(p, _mm256_or_si256(_mm256_and_si256(v, lo), nr));
  }
  return true;
}

namespace {
// One lane's access of V x 4 entries (the shadow of 4V bytes), loaded once: the check, then
// (no race) the update from the same registers. False on a race, having changed nothing.
template <int V>
__attribute__((target("avx2"), always_inline)) inline bool
lane_access_avx2(ShadowByte *s, bool write, std::uint32_t epoch, std::uint32_t mine) {
  constexpr std::uint32_t kBits = SharedShadow::kThreadBits;
  const __m256i ep = _mm256_set1_epi32(int(epoch)), mn = _mm256_set1_epi32(int(mine));
  const __m256i lo = _mm256_set1_epi64x(0xffffffffll);
  __m256i v[V];
  int bad = 0;
  for (int i = 0; i < V; ++i) {
    v[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(s + 4 * i));
    const __m256i now = _mm256_cmpeq_epi32(_mm256_srli_epi32(v[i], int(kBits)), ep);
    bad |= _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_andnot_si256(_mm256_cmpeq_epi32(v[i], mn), now)));
  }
  if (bad & (write ? 0xff : 0x55)) return false;
  if (write) {
    const __m256i w = _mm256_set1_epi64x(std::int64_t(mine));
    for (int i = 0; i < V; ++i)
      _mm256_storeu_si256(reinterpret_cast<__m256i *>(s + 4 * i), _mm256_or_si256(_mm256_andnot_si256(lo, v[i]), w));
    return true;
  }
  const __m256i r_mine = _mm256_set1_epi64x(std::int64_t(std::uint64_t(mine) << 32));
  const __m256i r_many = _mm256_set1_epi64x(
      std::int64_t(std::uint64_t(epoch << kBits | SharedShadow::kPackedMany) << 32));
  const __m256i ep64 = _mm256_set1_epi64x(epoch);
  for (int i = 0; i < V; ++i) {
    const __m256i r = _mm256_andnot_si256(lo, v[i]);
    const __m256i now = _mm256_cmpeq_epi64(_mm256_srli_epi64(r, 32 + int(kBits)), ep64);
    const __m256i same = _mm256_cmpeq_epi64(r, r_mine);
    const __m256i nr = _mm256_blendv_epi8(r_mine, _mm256_blendv_epi8(r_many, r_mine, same), now);
    _mm256_storeu_si256(reinterpret_cast<__m256i *>(s + 4 * i), _mm256_or_si256(_mm256_and_si256(v[i], lo), nr));
  }
  return true;
}
} // namespace

// access_avx2 for every lane of a warp access in one call: per lane, the check of its n
// entries, then (no race) their update, so a lane sees the earlier lanes' updates as it would
// in separate calls (two lanes of a warp writing one byte race). 16 and 4 bytes (cp.async,
// ldmatrix rows, v4/u32 shared accesses) with the entries kept in registers.
__attribute__((target("avx2"))) int
SharedShadow::access_warp_avx2(ShadowByte *shadow, const std::uint64_t *byte, const int *lanes,
                               int count, std::size_t n, bool write, std::uint32_t epoch,
                               std::uint32_t me0) {
  for (int k = 0; k < count; ++k) {
    ShadowByte *s = shadow + byte[lanes[k]];
    const std::uint32_t me = me0 + std::uint32_t(lanes[k]), mine = epoch << kThreadBits | me;
    const bool ok = n == 16  ? lane_access_avx2<4>(s, write, epoch, mine)
                    : n == 4 ? lane_access_avx2<1>(s, write, epoch, mine)
                    : n == 8 ? lane_access_avx2<2>(s, write, epoch, mine)
                             : access_avx2(s, n, write, epoch, me);
    if (!ok) return k;
  }
  return count;
}

Memory &memory() {
  static Memory *m = new Memory;
  return *m;
}

// Threads of different blocks cannot order their accesses inside a launch; threads of one
// block can, with a barrier (an older epoch of the writer's).
std::uint32_t global_race(Allocation &al, std::uint64_t off, std::size_t n, Access acc,
                          const GlobalAccess &who) {
  if (acc == Access::Atomic || (acc == Access::Read && al.written_in != who.launch)) return 0;
  if (al.shadow.empty()) al.shadow.resize(al.size);
  if (acc == Access::Write) al.written_in = who.launch;
  for (std::uint64_t b = off; b < off + n; ++b) {
    GlobalShadow &e = al.shadow[std::size_t(b)];
    if (e.launch == who.launch && e.writer != who.me &&
        !((e.writer - 1) / who.per_block == who.block && e.epoch < who.epoch))
      return e.writer;
    if (acc == Access::Write) e = {who.launch, who.me, who.epoch};
  }
  return 0;
}

} // namespace ptxemu
