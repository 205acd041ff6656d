// checks.cpp — device allocations and racecheck shadows of the PTX interpreter (checks.h).
#include "checks.h"

#include <cstdlib>
#include <string>

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
