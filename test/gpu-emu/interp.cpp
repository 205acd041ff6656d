// interp.cpp — the PTX interpreter (interp.h): SIMT, one warp's lanes at a time.
//
// A block's warps run in turn (last-to-first with $PTXEMU_ORDER=reverse), each until none of
// its lanes can go on: they all wait at a barrier, wait for a warp collective, or exited.
// Within a warp, one decoded instruction is applied to every lane of the running group (the
// lanes at one pc; registers are stored per warp as [slot][lane], so an operand is one array
// index). Divergence is handled by min-pc scheduling: each lane keeps its own pc, the group is
// always the lanes at the lowest pc, so lanes that branched ahead wait there until the others
// catch up and merge with them (the reconvergence point of structured code); arbitrary
// branches stay correct because each lane still executes its own instruction sequence.
// Warp collectives (shfl.sync, vote, mma.sync, ldmatrix, bar.warp.sync) run as one operation
// on the warp's registers once every lane their member mask names has arrived; a barrier
// releases when every live thread of the block (or its thread count) waits at it. Anything
// else is a deadlock and fails the launch.
//
// How a missing barrier still shows, with warps in lock-step: the racecheck (checks.h) flags
// any shared or global byte written by one thread and touched by another without a barrier
// between, lanes of one warp included; and $PTXEMU_ORDER=reverse runs the warps of a block
// (and the lanes of an instruction) last-to-first, so a result that depends on which warp
// got there first changes with the order.
#include "interp.h"

#include <algorithm>
#include <cinttypes>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>

#include <immintrin.h>

namespace ptxemu {
namespace {

// Operand accessors run once per lane of each instruction: inlined into the exec functions.
#define MOEC_HOT __attribute__((always_inline)) inline
#define MOEC_HOT_LAMBDA __attribute__((always_inline))

constexpr int kLanes = 32;

// A warp of the running block. Lanes are in one of these states: run (the group: at `gpc`;
// the rest at pc[lane]), waiting at a collective (`coll`, at pc[lane]), at a barrier (`bar`),
// exited (`done`), or not existing (past the block's last thread).
struct Warp {
  int index = 0;
  std::uint32_t exists = 0, done = 0, run = 0, group = 0, coll = 0, bar = 0;
  int gpc = 0;               // the group's pc (pc[] of its lanes is stale)
  int wait_min = INT_MAX;    // the lowest pc of run lanes outside the group
  int pc[kLanes] = {};
  std::uint32_t bar_id[kLanes] = {}, bar_count[kLanes] = {}; // count 0: the whole block
  std::uint8_t carry[kLanes] = {};                           // CC.CF of add.cc and friends
  std::uint64_t *R = nullptr;     // [slots][kLanes] values (Kernel's slot layout)
  std::uint8_t *local = nullptr;  // [kLanes][local_bytes]
};

// One lane's registers: slot s of lane l is base[s * kLanes + l].
struct LaneRegs {
  std::uint64_t *base;
  int lane;
  MOEC_HOT std::uint64_t &operator[](std::size_t slot) const { return base[slot * kLanes + std::size_t(lane)]; }
};
struct Bytes {
  std::uint8_t *p;
  std::size_t n;
  std::size_t size() const { return n; }
  std::uint8_t *data() const { return p; }
};
// One thread as the per-lane code sees it.
struct Lane {
  LaneRegs r;
  std::uint8_t &carry;
  Bytes local;
  int lane, warp, pc;
};

struct Launch {
  const Kernel *k;
  std::uint32_t id; // launch number (global racecheck generations)
  std::uint32_t grid[3], block[3], ctaid[3];
  const std::vector<std::uint8_t> *params;
  std::vector<std::uint8_t> shared;  // static shared memory of the running block
  std::vector<std::uint8_t> dynamic; // its dynamic shared memory (launch's sharedMemBytes)
};

bool reverse_order() {
  static const bool reverse = [] {
    const char *o = std::getenv("PTXEMU_ORDER");
    return o && std::string(o) == "reverse";
  }();
  return reverse;
}

// The lane-parallel forms of exec_fast_body (classify() picks them once per instruction).
enum class Fast : std::uint8_t {
  None, Add, Sub, Mul, Mad, MulWideS, MulWideU, MadWideS, MadWideU, And, Or, Xor, Shl, ShrU,
  ShrS, Mov, Selp, SetpInt, SetpF32, FAdd, FSub, FMul, Fma, CvtInt, CvtF32Bf16, PAnd, POr,
  PXor, PNot, Not, Cvta, LdUniform, LdSt, CvtBf16F32, FmaRounded,
  LdParam, // a LdUniform whose value the launch's parameters fix (Micro::k2)
  NegInt, NegF32, Ex2F32, CvtSatF32, MinF32, MaxF32, FDiv,
  MinU, MinS, MaxU, MaxS, CvtBf16x2F32
};
Fast classify(const Inst &in);

// The hot loop's compact copy of an instruction (Inst, with its strings and operand vectors,
// stays for the lane-by-lane path and for fault messages).
struct Micro {
  Op op;
  Fast fast;
  std::uint8_t bits, sbits;  // the type's width; cvt: the source type's
  Cmp cmp;                   // setp
  bool sg, guard_neg;        // setp, cvt: signed (cvt: the source)
  bool ftz;                  // NegF32, Ex2F32; MinF32/MaxF32: .NaN
  std::int32_t guard;        // predicate register, or -1
  std::int32_t d, a, b, c;   // value slots of the destination and sources (0 if none)
  std::uint64_t k, k2;       // the destination type's mask; cvta: the address offset;
                             // LdParam: the value loaded
};

Micro micro(const Inst &in) {
  Micro u{};
  u.op = in.op, u.fast = classify(in), u.cmp = in.cmp;
  u.bits = std::uint8_t(bits_of(in.type));
  u.sbits = std::uint8_t(bits_of(in.stype));
  u.sg = is_signed(in.op == Op::Cvt ? in.stype : in.type);
  u.guard = in.guard, u.guard_neg = in.guard_neg;
  u.ftz = (in.op == Op::Min || in.op == Op::Max) ? in.nan : in.ftz;
  const std::vector<Operand> &o = in.ops;
  if (!o.empty() && o[0].kind == Operand::Reg) u.d = o[0].reg;
  u.a = o.size() > 1 && o[1].src >= 0 ? o[1].src : 0;
  u.b = o.size() > 2 && o[2].src >= 0 ? o[2].src : u.a;
  u.c = o.size() > 3 && o[3].src >= 0 ? o[3].src : u.a;
  u.k = u.bits >= 64 ? ~0ull : (1ull << u.bits) - 1;
  std::uint64_t base = in.space == Space::Shared ? kSharedGeneric
                       : in.space == Space::Local ? kLocalGeneric : 0;
  u.k2 = in.to ? 0 - base : base;
  return u;
}

// The registers of every launch on this thread, reused: zeros when first allocated, then
// whatever the last launch left, as between blocks (start_block). Clearing them per launch
// (hundreds of KB: slots x threads x 8 bytes, fresh pages every time) cost more than the
// small kernels it was for.
std::uint64_t *register_file(std::size_t n) {
  thread_local std::vector<std::uint64_t> regs;
  if (regs.size() < n) regs.resize(n);
  return regs.data();
}

class Interp {
public:
  explicit Interp(Launch &l);
  void run_block();

  bool count_reads_ = false; // $PTXEMU_TRACE: fill reads_ and sectors_
  std::unordered_map<const Allocation *, std::uint64_t> reads_;
  // Per allocation read in this launch, a bit per 32-byte sector (a GPU's DRAM access unit)
  // that some load touched: the launch's traffic with an unbounded cache, each byte once.
  std::unordered_map<const Allocation *, std::vector<std::uint64_t>> sectors_;
  void count_read(std::uint64_t off, std::size_t n) {
    reads_[cache_alloc_] += n;
    std::vector<std::uint64_t> &bits = sectors_[cache_alloc_];
    if (bits.empty()) bits.resize((cache_alloc_->size / kSector + 64) / 64);
    for (std::uint64_t s = off / kSector; s <= (off + n - 1) / kSector; ++s)
      bits[s / 64] |= 1ull << (s % 64);
  }
  static constexpr std::uint64_t kSector = 32;

private:
  Launch &L;
  const Kernel &K;
  std::uint32_t nthreads_ = 0;
  std::vector<Warp> warps_;
  std::vector<Micro> micro_;         // [code.size()] the hot loop's copy of each instruction
  std::uint64_t *regs_ = nullptr;    // every warp's [slots][kLanes] (register_file())
  std::vector<std::uint8_t> locals_; // every warp's [kLanes][local_bytes]
  Warp *cur_ = nullptr;              // the warp running now
  SharedShadow shadow_;
  const bool racecheck_ = racecheck_enabled();
  // cp.async (PTX ISA, "cp.async"): each thread's copies since its last commit_group and its
  // committed groups, oldest first. The ISA lets a copy land at any time until the
  // wait_group that retires its group; this emulation moves the bytes at that wait, so a
  // read of the destination before the wait sees the old bytes (0xFF: NaN), and one by
  // another thread after the wait without a barrier is a shared-memory race.
  // Kept per warp: one cp.async of a group of lanes is one entry (the common case: the
  // whole warp issues, commits and waits together), each lane with its own group number.
  struct AsyncCopy {
    std::uint64_t dst, src;
    std::uint32_t size, src_size; // src_size < size: the rest is zero-filled
    int pc;                       // the cp.async, for fault messages
  };
  struct WarpCopies {
    std::uint32_t queued = 0;     // lanes whose copy has not landed yet
    std::uint32_t size = 0;
    int pc = 0;
    std::uint64_t dst[kLanes], src[kLanes];
    std::uint32_t src_size[kLanes];
    std::uint32_t group[kLanes];  // the lane's commit_group count when it issued the copy
  };
  struct AsyncQueue {
    std::vector<WarpCopies> copies; // oldest first; landed entries are dropped from the front
    std::uint32_t committed[kLanes] = {}; // commit_groups per lane since the block started
  };
  std::vector<AsyncQueue> async_; // [warps] when the kernel has cp.async
  // wgmma (PTX ISA, "Asynchronous Warpgroup Level Matrix Multiply-Accumulate"): a warp's
  // mma_async operations since the block started, oldest first, each with the warp's
  // commit_group count when it was issued. An operation runs at the wait_group that retires
  // its group: it reads shared memory then (so a stage overwritten before the wait shows as
  // wrong results) and writes its accumulators then; from the issue to that wait the
  // accumulator registers hold NaN, so a read before the wait shows too. An mma_async that
  // accumulates into the registers of an earlier one still in flight takes that one's
  // result (the chaining the ISA allows without a fence); otherwise its input accumulators
  // are the registers' values at the issue.
  struct WgmmaOp {
    std::uint64_t desc_a, desc_b;
    bool accumulate;              // scale-d
    int n, pc;
    std::uint32_t group;
    std::vector<int> d;           // [n / 2] accumulator registers
    std::vector<std::uint64_t> c; // [n / 2][kLanes] input accumulators (unused where chained)
    std::vector<char> chained;    // [n / 2]: the input is the earlier operation's result
  };
  struct WgmmaQueue {
    std::vector<WgmmaOp> ops;
    std::uint32_t committed = 0;
    bool fenced = false; // a wgmma.fence since the last wait_group
  };
  std::vector<WgmmaQueue> wgmma_; // [warps] when the kernel has wgmma
  void wgmma(Warp &w, const Inst &in);
  void wgmma_run(Warp &w, const WgmmaOp &op);
  void exec_cp_async(Warp &w, const Inst &in, std::uint32_t m);
  void land_copies(Warp &w, WarpCopies &c, std::uint32_t lanes);
  void complete_copy(Lane t, const AsyncCopy &c);
  std::uint64_t cache_lo_ = 1, cache_hi_ = 0; // the allocation of the last global access
  Allocation *cache_alloc_ = nullptr;

  void start_block();
  void set_specials();
  void run_warp(Warp &w);
  void run_warp_body(Warp &w);
  void run_warp_generic(Warp &w);
  void run_warp_avx2(Warp &w);
  void regroup(Warp &w);
  void advance(Warp &w);
  void branch(Warp &w, const Inst &in, std::uint32_t m);
  void exit_lanes(Warp &w, std::uint32_t m);
  void barrier(Warp &w, const Inst &in, std::uint32_t m);
  bool collective_arrive(Warp &w, const Inst &in, std::uint32_t m);
  bool resolve_collectives();
  void collective(Warp &w, const Inst &in, std::uint32_t arrived, std::uint32_t member);
  void shfl(Warp &w, const Inst &in, std::uint32_t active);
  void vote(Warp &w, const Inst &in, std::uint32_t active, std::uint32_t member);
  void ldmatrix(Warp &w, const Inst &in, std::uint32_t active);
  void mma(Warp &w, const Inst &in, std::uint32_t active);
  bool release_barriers();
  void exec(Warp &w, const Inst &in, std::uint32_t m);
  void exec_fast_body(Warp &w, const Micro &u, std::uint32_t m);
  const bool avx2_ = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  void exec_ldst(Warp &w, const Inst &in, std::uint32_t m);
  bool load_warp(Warp &w, const Inst &in, std::uint32_t m, const Operand &mo, const Operand &v,
                 std::size_t n, bool sg);
  bool shared_warp(Warp &w, const Inst &in, std::uint32_t m, const Operand &mo, const Operand &v,
                   std::size_t n, bool sg);
  void exec_lane(Lane &t, const Inst &in);
  void exec_memory(Lane &t, const Inst &in);
  void exec_move(Lane &t, const Inst &in);
  void exec_int(Lane &t, const Inst &in);
  void exec_carry(Lane &t, const Inst &in);
  void exec_float(Lane &t, const Inst &in);
  void exec_fma(Lane &t, const Inst &in);
  void exec_logic(Lane &t, const Inst &in);
  void exec_setp(Lane &t, const Inst &in);
  void exec_bits(Lane &t, const Inst &in);

  Lane lane(Warp &w, int l, int pc) {
    return Lane{{w.R, l}, w.carry[l], {w.local + std::size_t(l) * K.local_bytes, K.local_bytes},
                l, w.index, pc};
  }

  [[noreturn]] void fault(const Lane &t, const std::string &msg);
  [[noreturn]] void deadlock();
  std::string thread_name(std::uint32_t index) const;

  // ---- operand access (sources read their value slot: register, special or constant) ----
  MOEC_HOT std::uint64_t get(const Lane &t, const Operand &o, Ty) const { return t.r[std::size_t(o.src)]; }
  MOEC_HOT std::uint64_t u(const Lane &t, const Operand &o, Ty ty) const { return mask_bits(get(t, o, ty), bits_of(ty)); }
  MOEC_HOT std::int64_t s(const Lane &t, const Operand &o, Ty ty) const { return sext(get(t, o, ty), bits_of(ty)); }
  MOEC_HOT float f(const Lane &t, const Operand &o, bool flush) const {
    float v = f32(get(t, o, Ty::F32));
    return flush ? ftz(v) : v;
  }
  double d(const Lane &t, const Operand &o) const { return f64(get(t, o, Ty::F64)); }
  MOEC_HOT void set(Lane &t, const Operand &o, std::uint64_t v, Ty ty) {
    if (o.kind == Operand::Sink) return;
    if (o.kind != Operand::Reg) fault(t, "destination is not a register");
    t.r[std::size_t(o.reg)] = mask_bits(v, std::max(bits_of(ty), 1));
  }
  void setf(Lane &t, const Operand &o, float v, bool flush) { set(t, o, bits32(flush ? ftz(v) : v), Ty::F32); }
  MOEC_HOT bool pred(const Lane &t, const Operand &o) const {
    if (o.kind == Operand::Imm) return o.imm != 0;
    return t.r[std::size_t(o.src)] & 1;
  }

  // ---- memory ----
  std::uint8_t *addr(Lane &t, Space sp, std::uint64_t a, std::size_t n, Access acc) {
    if (n > 1 && (n & (n - 1)) == 0 && a % n) {
      char buf[96];
      std::snprintf(buf, sizeof buf, "misaligned %zu-byte access at 0x%" PRIx64, n, a);
      fault(t, buf);
    }
    if (sp == Space::Generic) {
      if (a >= kSharedGeneric && a < kSharedGeneric + kWindowSize) sp = Space::Shared, a -= kSharedGeneric;
      else if (a >= kLocalGeneric && a < kLocalGeneric + kWindowSize) sp = Space::Local, a -= kLocalGeneric;
      else sp = Space::Global;
    }
    switch (sp) {
    case Space::Shared:
      if (a >= kDynamicShared) {
        std::uint64_t o = a - kDynamicShared;
        if (o + n > L.dynamic.size())
          fault(t, "dynamic shared-memory access at offset " + std::to_string(o) + " (+" +
                       std::to_string(n) + " bytes) outside the launch's " +
                       std::to_string(L.dynamic.size()) + " bytes");
        race_check(t, L.shared.size() + o, n, acc);
        return L.dynamic.data() + o;
      }
      if (a + n > L.shared.size() || a + n < a)
        fault(t, "shared-memory access at offset " + std::to_string(a) + " (+" + std::to_string(n) +
                     " bytes) outside the block's " + std::to_string(L.shared.size()) + " bytes");
      race_check(t, a, n, acc);
      return L.shared.data() + a;
    case Space::Local:
      if (a + n > t.local.size() || a + n < a)
        fault(t, "local-memory access at offset " + std::to_string(a) + " outside " +
                     std::to_string(t.local.size()) + " bytes");
      return t.local.data() + a;
    case Space::Param:
      if (a + n > L.params->size()) fault(t, "kernel-parameter read past the parameters");
      return const_cast<std::uint8_t *>(L.params->data()) + a;
    default: {
      if (!(a >= cache_lo_ && a + n <= cache_hi_)) {
        std::uint64_t lo;
        Allocation *al = memory().contains(a, n, &lo);
        if (!al) {
          char buf[96];
          std::snprintf(buf, sizeof buf, "global access of %zu bytes at 0x%" PRIx64, n, a);
          fault(t, std::string(buf) + " is outside every allocation (out of bounds or freed)");
        }
        cache_lo_ = lo, cache_hi_ = lo + al->size, cache_alloc_ = al;
      }
      // A read of a buffer this launch has not written cannot race (checks.h).
      if (acc != Access::Atomic && racecheck_ &&
          (acc == Access::Write || cache_alloc_->written_in == L.id))
        global_race_check(t, *cache_alloc_, a - cache_lo_, n, acc);
      if (count_reads_ && acc == Access::Read && n) count_read(a - cache_lo_, n);
      return reinterpret_cast<std::uint8_t *>(a);
    }
    }
  }
  // Racecheck (checks.h): faults naming the other thread. A thread's index in its block is
  // warp * 32 + lane.
  void global_race_check(Lane &t, Allocation &al, std::uint64_t off, std::size_t n, Access acc) {
    const std::uint32_t per_block = nthreads_;
    const std::uint32_t block = (L.ctaid[2] * L.grid[1] + L.ctaid[1]) * L.grid[0] + L.ctaid[0];
    const std::uint32_t me = block * per_block + std::uint32_t(t.warp * kLanes + t.lane) + 1;
    std::uint32_t w = global_race(al, off, n, acc, {L.id, me, block, per_block, shadow_.epoch()});
    if (!w) return;
    std::uint32_t wb = (w - 1) / per_block, wt = (w - 1) % per_block;
    fault(t, std::string("global-memory race: ") + (acc == Access::Read ? "reads" : "writes") +
                 " a byte that thread " + std::to_string(wt) + " of block " + std::to_string(wb) +
                 " (linear indices) wrote in this launch with no barrier between");
  }
  void race_check(Lane &t, std::uint64_t b0, std::size_t n, Access acc) {
    if (!racecheck_) return;
    SharedRace r;
    if (shadow_.access(b0, n, acc, std::uint32_t(t.warp * kLanes + t.lane) + 1, &r)) return;
    std::string who = r.other == kManyReaders ? std::string("other threads") : thread_name(r.other - 1);
    fault(t, std::string("shared-memory race: ") + (acc == Access::Read ? "reads" : "writes") +
                 " byte " + std::to_string(r.byte) + " that " + who +
                 (r.other_wrote ? " wrote" : " read") + " since the last barrier");
  }

  // The shared racecheck of a warp access (SharedShadow::access_warp): lane order[k] accesses
  // shadow bytes [b[order[k]], +n). On a race, the lanes up to the racing one again through
  // race_check, which finds the race again and faults with its message.
  void warp_race_check(Warp &w, const std::uint64_t *b, const int *order, int nl, std::size_t n,
                       Access acc) {
    const int bad = shadow_.access_warp(b, order, nl, n, acc, std::uint32_t(w.index * kLanes) + 1);
    if (bad >= nl) return;
    for (int k = 0; k <= bad; ++k) {
      Lane t = lane(w, order[k], w.gpc);
      race_check(t, b[order[k]], n, acc);
    }
  }

  std::uint64_t mem_addr(const Lane &t, const Operand &o) const {
    std::uint64_t base = o.reg >= 0 ? t.r[std::size_t(o.reg)] : 0;
    if (o.has_sym) base += o.imm;
    return base + std::uint64_t(o.offset);
  }
  Space mem_space(const Inst &in, const Operand &o) const {
    if (in.space != Space::Generic) return in.space;
    if (o.has_sym && o.reg < 0) return o.sym_space == Space::Param ? Space::Param : o.sym_space;
    return Space::Generic;
  }

  // Fixed-size copies (inlined moves, not memcpy calls): these run for every lane's access.
  template <class T> static std::uint64_t load_as(const std::uint8_t *p) {
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  template <class T> static void store_as(std::uint8_t *p, std::uint64_t x) {
    T v = T(x);
    std::memcpy(p, &v, sizeof v);
  }
  static std::uint64_t load_bits(const std::uint8_t *p, int bytes) {
    switch (bytes) {
    case 1: return *p;
    case 2: return load_as<std::uint16_t>(p);
    case 4: return load_as<std::uint32_t>(p);
    case 8: return load_as<std::uint64_t>(p);
    default: {
      std::uint64_t v = 0;
      std::memcpy(&v, p, std::size_t(bytes));
      return v;
    }
    }
  }
  static void store_bits(std::uint8_t *p, std::uint64_t x, int bytes) {
    switch (bytes) {
    case 1: *p = std::uint8_t(x); return;
    case 2: return store_as<std::uint16_t>(p, x);
    case 4: return store_as<std::uint32_t>(p, x);
    case 8: return store_as<std::uint64_t>(p, x);
    default: std::memcpy(p, &x, std::size_t(bytes));
    }
  }

  // Converts a register's bits of type `from` into `to` (cvt).
  std::uint64_t convert(const Lane &t, const Inst &in, std::uint64_t x) {
    Ty to = in.type, from = in.stype;
    bool fto = is_float(to), ffrom = is_float(from);
    if (!fto && !ffrom) {
      std::int64_t v = is_signed(from) ? sext(x, bits_of(from)) : std::int64_t(mask_bits(x, bits_of(from)));
      if (in.sat) {
        int tb = bits_of(to);
        if (is_signed(to)) {
          std::int64_t lo = tb >= 64 ? INT64_MIN : -(std::int64_t(1) << (tb - 1));
          std::int64_t hi = tb >= 64 ? INT64_MAX : (std::int64_t(1) << (tb - 1)) - 1;
          if (!is_signed(from) && mask_bits(x, bits_of(from)) > std::uint64_t(hi)) v = hi;
          else v = std::min(std::max(v, lo), hi);
        } else {
          std::uint64_t hi = tb >= 64 ? UINT64_MAX : (std::uint64_t(1) << tb) - 1;
          if (is_signed(from) && v < 0) v = 0;
          else if (std::uint64_t(v) > hi) v = std::int64_t(hi);
        }
      }
      return mask_bits(std::uint64_t(v), bits_of(to));
    }
    // Through double: exact for every source format here.
    double v;
    if (ffrom) {
      switch (from) {
      case Ty::F16: v = f16_to_f32(std::uint16_t(x)); break;
      case Ty::BF16: v = bf16_to_f32(std::uint16_t(x)); break;
      case Ty::F32: v = in.ftz ? ftz(f32(x)) : f32(x); break;
      case Ty::F64: v = f64(x); break;
      default: fault(t, "unsupported cvt source type");
      }
    } else {
      v = is_signed(from) ? double(sext(x, bits_of(from))) : double(mask_bits(x, bits_of(from)));
      if (bits_of(from) == 64 && fto) {
        // A 64-bit integer does not fit a double exactly; round once, in the target format.
        if (to == Ty::F32)
          return bits32(with_rounding(in.rnd, [&] {
            return is_signed(from) ? float(std::int64_t(x)) : float(x);
          }));
      }
    }
    if (!fto) {
      if (std::isnan(v)) return 0;
      double r = round_int(v, in.rnd);
      int tb = bits_of(to);
      if (is_signed(to)) {
        double lo = -std::ldexp(1.0, tb - 1), hi = std::ldexp(1.0, tb - 1) - 1;
        std::int64_t iv = r <= lo ? std::int64_t(lo) : r >= hi ? (tb >= 64 ? INT64_MAX : std::int64_t(hi)) : std::int64_t(r);
        return mask_bits(std::uint64_t(iv), tb);
      }
      double hi = std::ldexp(1.0, tb) - 1;
      std::uint64_t uv = r <= 0 ? 0 : r >= hi ? (tb >= 64 ? UINT64_MAX : std::uint64_t(hi)) : std::uint64_t(r);
      return mask_bits(uv, tb);
    }
    if (from == to && (in.rnd == Rnd::RNI || in.rnd == Rnd::RZI || in.rnd == Rnd::RMI || in.rnd == Rnd::RPI))
      v = round_int(v, in.rnd);
    if (in.sat) v = std::isnan(v) ? 0.0 : std::min(std::max(v, 0.0), 1.0);
    switch (to) {
    case Ty::F64: return bits64(v);
    case Ty::F32: {
      float r = with_rounding(in.rnd == Rnd::None ? Rnd::RN : in.rnd, [&] { return float(v); });
      return bits32(in.ftz ? ftz(r) : r);
    }
    case Ty::BF16: return f32_to_bf16(float(v)); // from f32 (exact) — the only source we see
    case Ty::F16: return f32_to_f16(float(v));
    default: fault(t, "unsupported cvt destination type");
    }
  }

  // Two 16-bit floats packed in 32 bits, as f32 pairs.
  static float half_lo(std::uint64_t x, Ty ty) {
    return ty == Ty::BF16x2 ? bf16_to_f32(std::uint16_t(x)) : f16_to_f32(std::uint16_t(x));
  }
  static float half_hi(std::uint64_t x, Ty ty) {
    return ty == Ty::BF16x2 ? bf16_to_f32(std::uint16_t(x >> 16)) : f16_to_f32(std::uint16_t(x >> 16));
  }
  static std::uint16_t half_of(float v, Ty ty) {
    return (ty == Ty::BF16 || ty == Ty::BF16x2) ? f32_to_bf16(v) : f32_to_f16(v);
  }
  static float half_val(std::uint64_t x, Ty ty) {
    return (ty == Ty::BF16 || ty == Ty::BF16x2) ? bf16_to_f32(std::uint16_t(x)) : f16_to_f32(std::uint16_t(x));
  }

  // Element-wise float arithmetic in the instruction's format.
  template <class F> std::uint64_t float_op(Lane &t, const Inst &in, F fn) {
    Ty ty = in.type;
    auto arg = [&](int i, int half) -> double {
      if (std::size_t(i + 1) >= in.ops.size()) return 0.0; // fn ignores it
      std::uint64_t x = get(t, in.ops[std::size_t(i + 1)], ty);
      switch (ty) {
      case Ty::F32: return in.ftz ? ftz(f32(x)) : f32(x);
      case Ty::F64: return f64(x);
      case Ty::F16: case Ty::BF16: return half_val(x, ty);
      case Ty::F16x2: case Ty::BF16x2: return half ? half_hi(x, ty) : half_lo(x, ty);
      default: fault(t, "not a float type");
      }
    };
    auto fin = [&](double r) -> double {
      if (in.sat) r = std::isnan(r) ? 0.0 : std::min(std::max(r, 0.0), 1.0);
      return r;
    };
    Rnd rnd = in.rnd == Rnd::None ? Rnd::RN : in.rnd;
    switch (ty) {
    case Ty::F32: {
      float r = with_rounding(rnd, [&] { return fn(arg(0, 0), arg(1, 0), arg(2, 0), 32); });
      r = float(fin(r));
      return bits32(in.ftz ? ftz(r) : r);
    }
    case Ty::F64:
      return bits64(fin(with_rounding(rnd, [&] { return fn(arg(0, 0), arg(1, 0), arg(2, 0), 64); })));
    case Ty::F16: case Ty::BF16:
      // Computed in f32 (exact for one add/mul/fma of 16-bit values up to a double rounding
      // that this emulation accepts), then rounded to the format.
      return half_of(float(fin(fn(arg(0, 0), arg(1, 0), arg(2, 0), 64))), ty);
    case Ty::F16x2: case Ty::BF16x2: {
      std::uint64_t lo = half_of(float(fin(fn(arg(0, 0), arg(1, 0), arg(2, 0), 64))), ty);
      std::uint64_t hi = half_of(float(fin(fn(arg(0, 1), arg(1, 1), arg(2, 1), 64))), ty);
      return lo | (hi << 16);
    }
    default: fault(t, "not a float type");
    }
  }

  // min/max of two floats (as doubles): NaN handling and -0 < +0 as the manual says.
  static double float_minmax(double a, double b, bool mx, bool nanprop) {
    if (std::isnan(a) || std::isnan(b)) {
      if (nanprop || (std::isnan(a) && std::isnan(b))) return std::nan("");
      return std::isnan(a) ? b : a;
    }
    if (a == 0 && b == 0) // -0 < +0 for min/max
      return mx ? (std::signbit(a) ? b : a) : (std::signbit(a) ? a : b);
    return mx ? std::max(a, b) : std::min(a, b);
  }

  static bool compare(Cmp c, double a, double b) {
    bool un = std::isnan(a) || std::isnan(b);
    switch (c) {
    case Cmp::EQ: return !un && a == b;
    case Cmp::NE: return !un && a != b;
    case Cmp::LT: return !un && a < b;
    case Cmp::LE: return !un && a <= b;
    case Cmp::GT: return !un && a > b;
    case Cmp::GE: return !un && a >= b;
    case Cmp::EQU: return un || a == b;
    case Cmp::NEU: return un || a != b;
    case Cmp::LTU: return un || a < b;
    case Cmp::LEU: return un || a <= b;
    case Cmp::GTU: return un || a > b;
    case Cmp::GEU: return un || a >= b;
    case Cmp::NUM: return !un;
    case Cmp::NaN: return un;
    default: return false;
    }
  }

  // Runs `t` until it blocks (barrier or collective) or exits.
};

// ---------------------------------------------------------------------------------------
// Instructions, lane by lane
// ---------------------------------------------------------------------------------------

void Interp::exec_memory(Lane &t, const Inst &in) {
  const std::vector<Operand> &o = in.ops;
  [[maybe_unused]] Ty ty = in.type;
  [[maybe_unused]] int bits = bits_of(ty);
  switch (in.op) {
    case Op::Ld: {
      const Operand &m = o[1];
      Space sp = mem_space(in, m);
      std::uint64_t a = mem_addr(t, m);
      int eb = bits / 8;
      if (in.vec == 1) {
        std::uint64_t x = load_bits(addr(t, sp, a, std::size_t(eb), Access::Read), eb);
        set(t, o[0], is_signed(ty) ? std::uint64_t(sext(x, bits)) : x, Ty::B64);
      } else {
        std::uint8_t *p = addr(t, sp, a, std::size_t(eb * in.vec), Access::Read);
        for (int i = 0; i < in.vec; ++i) {
          int r = o[0].vec[std::size_t(i)];
          if (r >= 0) t.r[std::size_t(r)] = load_bits(p + i * eb, eb);
        }
      }
      break;
    }
    case Op::St: {
      const Operand &m = o[0];
      Space sp = mem_space(in, m);
      if (sp == Space::Param || sp == Space::Const) fault(t, "store to a read-only space");
      std::uint64_t a = mem_addr(t, m);
      int eb = bits / 8;
      if (in.vec == 1) {
        std::uint64_t x = get(t, o[1], ty);
        std::memcpy(addr(t, sp, a, std::size_t(eb), Access::Write), &x, std::size_t(eb));
      } else {
        std::uint8_t *p = addr(t, sp, a, std::size_t(eb * in.vec), Access::Write);
        for (int i = 0; i < in.vec; ++i) {
          std::uint64_t x = o[1].kind == Operand::Vec ? t.r[std::size_t(o[1].vec[std::size_t(i)])] : 0;
          std::memcpy(p + i * eb, &x, std::size_t(eb));
        }
      }
      break;
    }
    case Op::Cvta: {
      std::uint64_t a = get(t, o[1], Ty::U64);
      if (in.space == Space::Shared) a = in.to ? a - kSharedGeneric : a + kSharedGeneric;
      else if (in.space == Space::Local) a = in.to ? a - kLocalGeneric : a + kLocalGeneric;
      set(t, o[0], a, ty);
      break;
    }
    case Op::Atom: case Op::Red: {
      const Operand &m = o[in.op == Op::Atom ? 1 : 0];
      std::uint8_t *p = addr(t, mem_space(in, m), mem_addr(t, m), std::size_t(bits / 8), Access::Atomic);
      std::uint64_t old = load_bits(p, bits / 8), v = get(t, o[in.op == Op::Atom ? 2 : 1], ty), r;
      switch (in.mode) {
      case Mode::AtomAdd:
        if (ty == Ty::F32) r = bits32(f32(old) + f32(v));
        else if (ty == Ty::F64) r = bits64(f64(old) + f64(v));
        else r = old + v;
        break;
      case Mode::AtomExch: r = v; break;
      case Mode::AtomCas: r = old == mask_bits(v, bits) ? get(t, o[3], ty) : old; break;
      case Mode::AtomMax: r = is_signed(ty) ? std::uint64_t(std::max(sext(old, bits), sext(v, bits))) : std::max(old, mask_bits(v, bits)); break;
      case Mode::AtomMin: r = is_signed(ty) ? std::uint64_t(std::min(sext(old, bits), sext(v, bits))) : std::min(old, mask_bits(v, bits)); break;
      case Mode::AtomAnd: r = old & v; break;
      case Mode::AtomOr: r = old | v; break;
      case Mode::AtomInc: r = old >= mask_bits(v, bits) ? 0 : old + 1; break;
      default: fault(t, "unsupported atomic ." + in.sub);
      }
      std::memcpy(p, &r, std::size_t(bits / 8));
      if (in.op == Op::Atom) set(t, o[0], old, ty);
      break;
    }
  default: break;
  }
}

void Interp::exec_move(Lane &t, const Inst &in) {
  const std::vector<Operand> &o = in.ops;
  [[maybe_unused]] Ty ty = in.type;
  [[maybe_unused]] int bits = bits_of(ty);
  switch (in.op) {
    case Op::Mov: {
      if (o[0].kind == Operand::Vec) { // unpack
        std::uint64_t x = get(t, o[1], ty);
        int n = int(o[0].vec.size()), w = bits / n;
        for (int i = 0; i < n; ++i)
          if (o[0].vec[std::size_t(i)] >= 0)
            t.r[std::size_t(o[0].vec[std::size_t(i)])] = mask_bits(x >> (i * w), w);
      } else if (o[1].kind == Operand::Vec) { // pack
        int n = int(o[1].vec.size()), w = bits / n;
        std::uint64_t x = 0;
        for (int i = 0; i < n; ++i) x |= mask_bits(t.r[std::size_t(o[1].vec[std::size_t(i)])], w) << (i * w);
        set(t, o[0], x, ty);
      } else if (ty == Ty::Pred) {
        set(t, o[0], pred(t, o[1]) ? 1 : 0, Ty::Pred);
      } else {
        set(t, o[0], get(t, o[1], ty), ty);
      }
      break;
    }
    case Op::Cvt:
      if (in.type == Ty::BF16x2 || in.type == Ty::F16x2) {
        // cvt.rn.{bf16x2,f16x2}.f32 d, a, b: a goes to the upper half, b to the lower.
        if (in.stype != Ty::F32 || o.size() != 3) fault(t, "unsupported packed cvt");
        Ty half = in.type == Ty::BF16x2 ? Ty::BF16 : Ty::F16;
        float hi = f(t, o[1], in.ftz), lo = f(t, o[2], in.ftz);
        if (in.sat) {
          hi = std::isnan(hi) ? 0.0f : std::min(std::max(hi, 0.0f), 1.0f);
          lo = std::isnan(lo) ? 0.0f : std::min(std::max(lo, 0.0f), 1.0f);
        }
        if (in.rnd != Rnd::RN && in.rnd != Rnd::None) fault(t, "unsupported packed cvt rounding");
        set(t, o[0], std::uint64_t(half_of(lo, half)) | (std::uint64_t(half_of(hi, half)) << 16), Ty::B32);
        break;
      }
      if (in.type == Ty::S8) {
        // A destination register wider than the instruction type is sign-extended for a
        // signed type (manual, "Operand Size Exceeding Instruction-Type Size"): LLVM widens
        // i8 to i16 with cvt.s8.s32 into a 16-bit register. s8 is the only signed type
        // narrower than every register (.b16 is the narrowest).
        std::uint64_t v = std::uint64_t(sext(convert(t, in, get(t, o[1], in.stype)), 8));
        if (o[0].kind == Operand::Reg)
          t.r[std::size_t(o[0].reg)] = mask_bits(v, K.reg_bits[std::size_t(o[0].reg)]);
        break;
      }
      set(t, o[0], convert(t, in, get(t, o[1], in.stype)), in.type);
      break;
    case Op::Selp:
      set(t, o[0], pred(t, o[3]) ? get(t, o[1], ty) : get(t, o[2], ty), ty);
      break;
  default: break;
  }
}

void Interp::exec_int(Lane &t, const Inst &in) {
  const std::vector<Operand> &o = in.ops;
  [[maybe_unused]] Ty ty = in.type;
  [[maybe_unused]] int bits = bits_of(ty);
  switch (in.op) {
    case Op::Add: case Op::Sub: case Op::Mul: case Op::Min: case Op::Max: case Op::Div:
    case Op::Rem: {
      if (is_float(ty)) {
        std::uint64_t r;
        bool nanprop = in.nan;
        switch (in.op) {
        case Op::Add: r = float_op(t, in, [](double a, double b, double, int w) { return w == 32 ? double(float(a) + float(b)) : a + b; }); break;
        case Op::Sub: r = float_op(t, in, [](double a, double b, double, int w) { return w == 32 ? double(float(a) - float(b)) : a - b; }); break;
        case Op::Mul: r = float_op(t, in, [](double a, double b, double, int w) { return w == 32 ? double(float(a) * float(b)) : a * b; }); break;
        case Op::Div:
          if (in.approx && ty == Ty::F32) {
            float a = f(t, o[1], in.ftz), b = f(t, o[2], in.ftz);
            setf(t, o[0], a * (1.0f / b), in.ftz);
            return;
          }
          r = float_op(t, in, [](double a, double b, double, int w) { return w == 32 ? double(float(a) / float(b)) : a / b; });
          break;
        case Op::Min: case Op::Max: {
          bool mx = in.op == Op::Max;
          r = float_op(t, in, [mx, nanprop](double a, double b, double, int) {
            return float_minmax(a, b, mx, nanprop);
          });
          break;
        }
        default: fault(t, "unsupported float operation");
        }
        set(t, o[0], r, ty);
        break;
      }
      bool sg = is_signed(ty);
      std::uint64_t a = u(t, o[1], ty), b = u(t, o[2], ty), r = 0;
      if (in.op == Op::Mul && in.wide) {
        r = sg ? std::uint64_t(s(t, o[1], ty) * s(t, o[2], ty)) : a * b;
        set(t, o[0], r, bits == 32 ? Ty::B64 : Ty::B32);
        break;
      }
      switch (in.op) {
      case Op::Add: {
        r = a + b;
        if (in.cc) t.carry = bits == 64 ? r < a : ((a + b) >> bits) & 1;
        if (in.sat && sg) {
          std::int64_t x = s(t, o[1], ty) + s(t, o[2], ty);
          std::int64_t hi = (std::int64_t(1) << (bits - 1)) - 1, lo = -hi - 1;
          r = std::uint64_t(std::min(std::max(x, lo), hi));
        }
        break;
      }
      case Op::Sub:
        r = a - b;
        if (in.cc) t.carry = a < b; // CC.CF holds the borrow (subc subtracts it)
        break;
      case Op::Mul:
        if (in.hi) {
          if (bits == 64) {
            r = sg ? std::uint64_t((__int128(std::int64_t(a)) * std::int64_t(b)) >> 64)
                   : std::uint64_t((unsigned __int128)a * b >> 64);
          } else {
            r = sg ? std::uint64_t((s(t, o[1], ty) * s(t, o[2], ty)) >> bits) : (a * b) >> bits;
          }
        } else {
          r = a * b;
        }
        break;
      case Op::Min: r = sg ? std::uint64_t(std::min(s(t, o[1], ty), s(t, o[2], ty))) : std::min(a, b); break;
      case Op::Max: r = sg ? std::uint64_t(std::max(s(t, o[1], ty), s(t, o[2], ty))) : std::max(a, b); break;
      case Op::Div: case Op::Rem: {
        if (b == 0) { r = in.op == Op::Div ? mask_bits(~0ull, bits) : a; break; }
        if (sg) {
          std::int64_t x = s(t, o[1], ty), y = s(t, o[2], ty);
          if (y == -1) r = in.op == Op::Div ? std::uint64_t(-x) : 0; // no overflow trap
          else r = std::uint64_t(in.op == Op::Div ? x / y : x % y);
        } else {
          r = in.op == Op::Div ? a / b : a % b;
        }
        break;
      }
      default: break;
      }
      set(t, o[0], r, ty);
      break;
    }
  default: break;
  }
}

void Interp::exec_carry(Lane &t, const Inst &in) {
  const std::vector<Operand> &o = in.ops;
  [[maybe_unused]] Ty ty = in.type;
  [[maybe_unused]] int bits = bits_of(ty);
  switch (in.op) {
    case Op::Subc: {
      std::uint64_t a = u(t, o[1], ty), b = u(t, o[2], ty), br = t.carry ? 1 : 0;
      std::uint64_t r = a - b - br;
      if (in.cc) t.carry = (unsigned __int128)a < (unsigned __int128)b + br;
      set(t, o[0], r, ty);
      break;
    }
    case Op::Trap:
      fault(t, "trap executed");
    case Op::Addc: {
      std::uint64_t a = u(t, o[1], ty), b = u(t, o[2], ty);
      unsigned __int128 r = (unsigned __int128)a + b + (t.carry ? 1 : 0);
      if (in.cc) t.carry = bits == 64 ? (r >> 64) != 0 : ((r >> bits) & 1) != 0;
      set(t, o[0], std::uint64_t(r), ty);
      break;
    }
    case Op::Mad: case Op::Madc: {
      if (is_float(ty)) return exec_fma(t, in);
      {
        bool sg = is_signed(ty);
        std::uint64_t a = u(t, o[1], ty), b = u(t, o[2], ty), c;
        Ty cty = in.wide ? (bits == 32 ? (sg ? Ty::S64 : Ty::U64) : ty) : ty;
        c = u(t, o[3], cty);
        unsigned __int128 prod;
        int pb = bits;
        if (in.wide) {
          prod = sg ? (unsigned __int128)(__int128)(s(t, o[1], ty) * s(t, o[2], ty)) : (unsigned __int128)(a * b);
          pb = 2 * bits;
        } else if (in.hi) {
          prod = sg ? (unsigned __int128)((__int128(s(t, o[1], ty)) * s(t, o[2], ty)) >> bits)
                    : ((unsigned __int128)a * b) >> bits;
          prod = mask_bits(std::uint64_t(prod), bits);
        } else {
          prod = (unsigned __int128)(a * b);
        }
        unsigned __int128 sum = mask_bits(std::uint64_t(prod), pb) + (unsigned __int128)c +
                                ((in.op == Op::Madc && t.carry) ? 1 : 0);
        if (in.cc) t.carry = pb == 64 ? (sum >> 64) != 0 : ((sum >> pb) & 1) != 0;
        set(t, o[0], std::uint64_t(sum), in.wide ? Ty::B64 : ty);
      }
      break;
    }
  default: break;
  }
}

void Interp::exec_fma(Lane &t, const Inst &in) {
  const std::vector<Operand> &o = in.ops;
  [[maybe_unused]] Ty ty = in.type;
  [[maybe_unused]] int bits = bits_of(ty);
  switch (in.op) {
    case Op::Fma: case Op::Mad: {
      if (ty == Ty::F32) {
        float a = f(t, o[1], in.ftz), b = f(t, o[2], in.ftz), c = f(t, o[3], in.ftz);
        Rnd r = in.rnd == Rnd::None ? Rnd::RN : in.rnd;
        float v = with_rounding(r, [&] { return std::fma(a, b, c); });
        if (in.sat) v = std::isnan(v) ? 0.0f : std::min(std::max(v, 0.0f), 1.0f);
        setf(t, o[0], v, in.ftz);
      } else {
        set(t, o[0], float_op(t, in, [](double a, double b, double c, int) { return std::fma(a, b, c); }), ty);
      }
      break;
    }
  default: break;
  }
}

void Interp::exec_float(Lane &t, const Inst &in) {
  const std::vector<Operand> &o = in.ops;
  [[maybe_unused]] Ty ty = in.type;
  [[maybe_unused]] int bits = bits_of(ty);
  switch (in.op) {
    case Op::Neg: case Op::Abs:
      if (is_float(ty)) {
        if (ty == Ty::F32 || ty == Ty::F64 || ty == Ty::F16 || ty == Ty::BF16) {
          std::uint64_t x = get(t, o[1], ty);
          int sb = bits - 1;
          if (ty == Ty::F32 && in.ftz) x = bits32(ftz(f32(x)));
          x = in.op == Op::Neg ? x ^ (std::uint64_t(1) << sb) : x & ~(std::uint64_t(1) << sb);
          set(t, o[0], x, ty);
        } else {
          std::uint64_t x = get(t, o[1], ty);
          x = in.op == Op::Neg ? x ^ 0x80008000u : x & 0x7fff7fffu;
          set(t, o[0], x, ty);
        }
      } else {
        std::int64_t x = s(t, o[1], ty);
        set(t, o[0], std::uint64_t(in.op == Op::Neg ? -x : (x < 0 ? -x : x)), ty);
      }
      break;
    case Op::Ex2: case Op::Lg2: case Op::Rcp: case Op::Sqrt: case Op::Rsqrt: case Op::Sin:
    case Op::Cos: case Op::Tanh: {
      if (ty == Ty::F64) {
        double a = d(t, o[1]), r = 0;
        switch (in.op) {
        case Op::Rcp: r = 1.0 / a; break;
        case Op::Sqrt: r = std::sqrt(a); break;
        case Op::Rsqrt: r = 1.0 / std::sqrt(a); break;
        default: fault(t, "unsupported f64 operation");
        }
        set(t, o[0], bits64(r), ty);
        break;
      }
      if (ty != Ty::F32) fault(t, "unsupported type for " + in.text);
      float a = f(t, o[1], in.ftz), r = 0;
      Rnd rnd = in.rnd == Rnd::None ? Rnd::RN : in.rnd;
      switch (in.op) {
      case Op::Ex2: r = std::exp2(a); break;
      case Op::Lg2: r = std::log2(a); break;
      case Op::Rcp: r = with_rounding(rnd, [&] { return 1.0f / a; }); break;
      case Op::Sqrt: r = with_rounding(rnd, [&] { return std::sqrt(a); }); break;
      case Op::Rsqrt: r = float(1.0 / std::sqrt(double(a))); break;
      case Op::Sin: r = std::sin(a); break;
      case Op::Cos: r = std::cos(a); break;
      case Op::Tanh: r = std::tanh(a); break;
      default: break;
      }
      setf(t, o[0], r, in.ftz);
      break;
    }
    case Op::Copysign:
      if (ty == Ty::F32) setf(t, o[0], std::copysign(f(t, o[2], false), f(t, o[1], false)), false);
      else set(t, o[0], bits64(std::copysign(d(t, o[2]), d(t, o[1]))), ty);
      break;
  default: break;
  }
}

void Interp::exec_logic(Lane &t, const Inst &in) {
  const std::vector<Operand> &o = in.ops;
  [[maybe_unused]] Ty ty = in.type;
  [[maybe_unused]] int bits = bits_of(ty);
  switch (in.op) {
    case Op::And: case Op::Or: case Op::Xor: {
      std::uint64_t a = get(t, o[1], ty), b = get(t, o[2], ty);
      if (ty == Ty::Pred) a = pred(t, o[1]), b = pred(t, o[2]);
      std::uint64_t r = in.op == Op::And ? a & b : in.op == Op::Or ? a | b : a ^ b;
      set(t, o[0], r, ty);
      break;
    }
    case Op::Not:
      set(t, o[0], ty == Ty::Pred ? !pred(t, o[1]) : ~get(t, o[1], ty), ty);
      break;
    case Op::Shl: case Op::Shr: {
      std::uint64_t a = u(t, o[1], ty), n = u(t, o[2], Ty::U32);
      std::uint64_t r;
      if (in.op == Op::Shl) r = n >= std::uint64_t(bits) ? 0 : a << n;
      else if (is_signed(ty)) {
        std::int64_t x = s(t, o[1], ty);
        r = std::uint64_t(n >= std::uint64_t(bits) ? (x < 0 ? -1 : 0) : x >> n);
      } else r = n >= std::uint64_t(bits) ? 0 : a >> n;
      set(t, o[0], r, ty);
      break;
    }
  default: break;
  }
}

void Interp::exec_setp(Lane &t, const Inst &in) {
  const std::vector<Operand> &o = in.ops;
  [[maybe_unused]] Ty ty = in.type;
  [[maybe_unused]] int bits = bits_of(ty);
  switch (in.op) {
    case Op::Setp: {
      bool r;
      if (is_float(ty)) {
        double a = ty == Ty::F64 ? d(t, o[1]) : ty == Ty::F32 ? double(f(t, o[1], in.ftz)) : half_val(get(t, o[1], ty), ty);
        double b = ty == Ty::F64 ? d(t, o[2]) : ty == Ty::F32 ? double(f(t, o[2], in.ftz)) : half_val(get(t, o[2], ty), ty);
        r = compare(in.cmp, a, b);
      } else {
        bool sg = is_signed(ty);
        std::int64_t sa = s(t, o[1], ty), sb = s(t, o[2], ty);
        std::uint64_t ua = u(t, o[1], ty), ub = u(t, o[2], ty);
        switch (in.cmp) {
        case Cmp::EQ: r = ua == ub; break;
        case Cmp::NE: r = ua != ub; break;
        case Cmp::LT: r = sg ? sa < sb : ua < ub; break;
        case Cmp::LE: r = sg ? sa <= sb : ua <= ub; break;
        case Cmp::GT: r = sg ? sa > sb : ua > ub; break;
        case Cmp::GE: r = sg ? sa >= sb : ua >= ub; break;
        case Cmp::LO: r = ua < ub; break;
        case Cmp::LS: r = ua <= ub; break;
        case Cmp::HI: r = ua > ub; break;
        case Cmp::HS: r = ua >= ub; break;
        default: r = false;
        }
      }
      bool r2 = !r;
      if (in.bop) {
        bool c = o.size() > 3 ? pred(t, o[3]) : true;
        auto comb = [&](bool x) { return in.bop == 1 ? (x && c) : in.bop == 2 ? (x || c) : (x != c); };
        r = comb(r), r2 = comb(r2);
      }
      set(t, o[0], r ? 1 : 0, Ty::Pred);
      if (o[0].reg2 >= 0) t.r[std::size_t(o[0].reg2)] = r2 ? 1 : 0;
      break;
    }
  default: break;
  }
}

void Interp::exec_bits(Lane &t, const Inst &in) {
  const std::vector<Operand> &o = in.ops;
  [[maybe_unused]] Ty ty = in.type;
  [[maybe_unused]] int bits = bits_of(ty);
  switch (in.op) {
    case Op::Bfe: {
      std::uint64_t a = u(t, o[1], ty);
      unsigned pos = unsigned(u(t, o[2], Ty::U32) & 0xff), len = unsigned(u(t, o[3], Ty::U32) & 0xff);
      std::uint64_t r = 0;
      bool sbit = false;
      if (is_signed(ty)) {
        unsigned top = std::min(pos + len - 1, unsigned(bits - 1));
        sbit = len == 0 ? false : ((a >> top) & 1);
      }
      for (unsigned i = 0; i < unsigned(bits); ++i) {
        bool b = (i < len && pos + i < unsigned(bits)) ? ((a >> (pos + i)) & 1) : sbit;
        r |= std::uint64_t(b) << i;
      }
      set(t, o[0], r, ty);
      break;
    }
    case Op::Shf: {
      std::uint64_t a = u(t, o[1], Ty::U32), b = u(t, o[2], Ty::U32);
      std::uint32_t n = std::uint32_t(u(t, o[3], Ty::U32));
      n = in.shf_wrap ? (n & 31) : std::min(n, 32u);
      std::uint64_t both = (b << 32) | a;
      std::uint64_t r = in.sub[0] == 'l' ? ((both << n) >> 32) : (both >> n);
      set(t, o[0], r, Ty::B32);
      break;
    }
    case Op::Prmt: {
      std::uint64_t a = u(t, o[1], Ty::U32), b = u(t, o[2], Ty::U32), c = u(t, o[3], Ty::U32);
      if (in.mode == Mode::Unknown) fault(t, "unsupported prmt mode");
      std::uint64_t bytes = (b << 32) | a, r = 0;
      for (int i = 0; i < 4; ++i) {
        unsigned sel = unsigned(c >> (4 * i)) & 0xf;
        std::uint64_t byte = (bytes >> (8 * (sel & 7))) & 0xff;
        if (sel & 8) byte = (byte & 0x80) ? 0xff : 0;
        r |= byte << (8 * i);
      }
      set(t, o[0], r, Ty::B32);
      break;
    }
    case Op::Popc: set(t, o[0], std::uint64_t(__builtin_popcountll(u(t, o[1], ty))), Ty::U32); break;
    case Op::Clz: {
      std::uint64_t a = u(t, o[1], ty);
      set(t, o[0], a == 0 ? std::uint64_t(bits) : std::uint64_t(__builtin_clzll(a) - (64 - bits)), Ty::U32);
      break;
    }
    case Op::Brev: {
      std::uint64_t a = u(t, o[1], ty), r = 0;
      for (int i = 0; i < bits; ++i) r |= ((a >> i) & 1) << (bits - 1 - i);
      set(t, o[0], r, ty);
      break;
    }
  default: break;
  }
}

// ---------------------------------------------------------------------------------------
// Instructions, a warp at a time: the common forms
// ---------------------------------------------------------------------------------------
// The forms that index math and elementwise code use most, run as one loop over the group's
// lanes with no per-lane dispatch. Each gives the same bits as its lane-by-lane path
// (exec_lane), which runs every other form.

Fast classify(const Inst &in) {
  const std::vector<Operand> &o = in.ops;
  if (in.op == Op::Ld && in.vec == 1 && o.size() == 2 && o[0].kind == Operand::Reg &&
      o[1].kind == Operand::Mem && o[1].reg < 0 &&
      (in.space == Space::Param || (in.space == Space::Generic && o[1].has_sym &&
                                    o[1].sym_space == Space::Param)))
    return Fast::LdUniform; // a kernel parameter: the same for every lane
  if ((in.op == Op::Ld || in.op == Op::St) && o.size() == 2 &&
      o[in.op == Op::Ld ? 1 : 0].kind == Operand::Mem)
    return Fast::LdSt;
  if (o.size() < 2 || o[0].kind != Operand::Reg || o[0].reg2 >= 0) return Fast::None;
  for (std::size_t i = 1; i < o.size(); ++i)
    if (o[i].kind != Operand::Reg && o[i].kind != Operand::Imm && o[i].kind != Operand::Spec)
      return Fast::None;
  const Ty ty = in.type;
  const bool ints = !is_float(ty) && ty != Ty::Pred && ty != Ty::None;
  bool preds = ty == Ty::Pred; // with register operands only (an immediate predicate is 0/1)
  for (std::size_t i = 1; i < o.size(); ++i) preds &= o[i].kind == Operand::Reg;
  const bool plain = !in.cc && !in.sat && !in.hi && !in.wide;
  const bool wide32 = ints && in.wide && !in.cc && !in.sat && !in.hi && bits_of(ty) == 32;
  const bool f32 = ty == Ty::F32 && !in.ftz && !in.sat && (in.rnd == Rnd::None || in.rnd == Rnd::RN);
  const std::size_t n = o.size();
  switch (in.op) {
  case Op::Add: return n != 3 ? Fast::None : ints && plain ? Fast::Add : f32 ? Fast::FAdd : Fast::None;
  case Op::Sub: return n != 3 ? Fast::None : ints && plain ? Fast::Sub : f32 ? Fast::FSub : Fast::None;
  case Op::Mul:
    if (n != 3) return Fast::None;
    if (ints && plain) return Fast::Mul;
    if (wide32) return is_signed(ty) ? Fast::MulWideS : Fast::MulWideU;
    return f32 ? Fast::FMul : Fast::None;
  case Op::Mad:
    if (n != 4) return Fast::None;
    if (ints && plain) return Fast::Mad;
    if (wide32) return is_signed(ty) ? Fast::MadWideS : Fast::MadWideU;
    return f32 ? Fast::Fma : Fast::None;
  case Op::Fma:
    if (n == 4 && f32) return Fast::Fma;
    return n == 4 && ty == Ty::F32 && !in.ftz && !in.sat ? Fast::FmaRounded : Fast::None;
  case Op::And: return n != 3 ? Fast::None : ints ? Fast::And : preds ? Fast::PAnd : Fast::None;
  case Op::Or: return n != 3 ? Fast::None : ints ? Fast::Or : preds ? Fast::POr : Fast::None;
  case Op::Xor: return n != 3 ? Fast::None : ints ? Fast::Xor : preds ? Fast::PXor : Fast::None;
  case Op::Not: return n != 2 ? Fast::None : ints ? Fast::Not : preds ? Fast::PNot : Fast::None;
  case Op::Cvta: return n == 2 && ints ? Fast::Cvta : Fast::None;
  case Op::Shl: return n == 3 && ints ? Fast::Shl : Fast::None;
  case Op::Shr: return n != 3 || !ints ? Fast::None : is_signed(ty) ? Fast::ShrS : Fast::ShrU;
  case Op::Mov: return n == 2 && ty != Ty::Pred ? Fast::Mov : Fast::None;
  case Op::Selp: return n == 4 && ty != Ty::Pred && o[3].kind == Operand::Reg ? Fast::Selp : Fast::None;
  case Op::Setp:
    if (n != 3 || in.bop) return Fast::None;
    return ints ? Fast::SetpInt : (ty == Ty::F32 && !in.ftz) ? Fast::SetpF32 : Fast::None;
  case Op::Neg:
    if (n != 2) return Fast::None;
    return ints ? Fast::NegInt : ty == Ty::F32 ? Fast::NegF32 : Fast::None;
  case Op::Ex2: return n == 2 && ty == Ty::F32 && in.rnd == Rnd::None ? Fast::Ex2F32 : Fast::None;
  case Op::Min: case Op::Max:
    if (n == 3 && ints && plain) {
      const bool sg = is_signed(ty);
      return in.op == Op::Max ? (sg ? Fast::MaxS : Fast::MaxU) : (sg ? Fast::MinS : Fast::MinU);
    }
    if (n != 3 || ty != Ty::F32 || in.ftz || in.sat || !(in.rnd == Rnd::None || in.rnd == Rnd::RN))
      return Fast::None;
    return in.op == Op::Max ? Fast::MaxF32 : Fast::MinF32;
  case Op::Div:
    return n == 3 && ty == Ty::F32 && in.rnd == Rnd::RN && !in.ftz && !in.sat && !in.approx
               ? Fast::FDiv : Fast::None;
  case Op::Cvt:
    if (n == 2 && in.sat && ty == Ty::F32 && in.stype == Ty::F32 && !in.ftz && in.rnd == Rnd::None)
      return Fast::CvtSatF32;
    if (n == 3 && ty == Ty::BF16x2 && in.stype == Ty::F32 && !in.sat && !in.ftz &&
        (in.rnd == Rnd::RN || in.rnd == Rnd::None))
      return Fast::CvtBf16x2F32;
    if (n != 2 || in.sat) return Fast::None;
    if (ints && !is_float(in.stype) && in.stype != Ty::Pred && ty != Ty::S8) return Fast::CvtInt;
    if (ty == Ty::BF16 && in.stype == Ty::F32 && !in.ftz && (in.rnd == Rnd::RN || in.rnd == Rnd::None))
      return Fast::CvtBf16F32;
    return ty == Ty::F32 && in.stype == Ty::BF16 && !in.ftz ? Fast::CvtF32Bf16 : Fast::None;
  default: return Fast::None;
  }
}

// d[l] = fn(l) for the lanes of m. A whole warp's results go through a local array: d may be
// a source's slot (add %r1, %r1, %r2), and with stores straight to d the compiler could not
// vectorise the loop (it unrolled it, one lane at a time).
template <class F> MOEC_HOT void for_lanes(std::uint32_t m, std::uint64_t *d, F fn) {
  if (m == ~0u) {
    std::uint64_t out[kLanes];
    for (int l = 0; l < kLanes; ++l) out[l] = fn(l);
    std::memcpy(d, out, sizeof out);
    return;
  }
  for (; m; m &= m - 1) {
    int l = __builtin_ctz(m);
    d[l] = fn(l);
  }
}

// Inlined into the dispatch loop, which is built for AVX2+FMA too (run_warp_avx2, chosen at
// run time): there the lane loops vectorise 4 wide and fma.rn.f32 is one instruction. No
// contraction: a*b+c stays two roundings where the PTX says so (fma is only ever std::fma).
MOEC_HOT void Interp::exec_fast_body(Warp &w, const Micro &u, std::uint32_t m) {
#pragma clang fp contract(off)
  std::uint64_t *d = w.R + std::size_t(u.d) * kLanes;
  const std::uint64_t *a = w.R + std::size_t(u.a) * kLanes, *b = w.R + std::size_t(u.b) * kLanes;
  const std::uint64_t *c = w.R + std::size_t(u.c) * kLanes;
  const int bits = u.bits;
  const std::uint64_t mk = u.k;
  auto fl = [](std::uint64_t x) { return f32(x); };
  switch (u.fast) {
  case Fast::Add: return for_lanes(m, d, [&](int l) { return (a[l] + b[l]) & mk; });
  case Fast::Sub: return for_lanes(m, d, [&](int l) { return (a[l] - b[l]) & mk; });
  case Fast::Mul: return for_lanes(m, d, [&](int l) { return (a[l] * b[l]) & mk; });
  case Fast::Mad: return for_lanes(m, d, [&](int l) { return (a[l] * b[l] + c[l]) & mk; });
  case Fast::MulWideS:
    return for_lanes(m, d, [&](int l) { return std::uint64_t(sext(a[l], 32) * sext(b[l], 32)); });
  case Fast::MulWideU:
    return for_lanes(m, d, [&](int l) { return (a[l] & mk) * (b[l] & mk); });
  case Fast::MadWideS:
    return for_lanes(m, d, [&](int l) { return std::uint64_t(sext(a[l], 32) * sext(b[l], 32)) + c[l]; });
  case Fast::MadWideU:
    return for_lanes(m, d, [&](int l) { return (a[l] & mk) * (b[l] & mk) + c[l]; });
  case Fast::And: return for_lanes(m, d, [&](int l) { return a[l] & b[l] & mk; });
  case Fast::Or: return for_lanes(m, d, [&](int l) { return (a[l] | b[l]) & mk; });
  case Fast::Xor: return for_lanes(m, d, [&](int l) { return (a[l] ^ b[l]) & mk; });
  case Fast::Shl:
    return for_lanes(m, d, [&](int l) {
      std::uint64_t n = b[l] & 0xffffffffu;
      return n >= std::uint64_t(bits) ? 0 : ((a[l] & mk) << n) & mk;
    });
  case Fast::ShrU:
    return for_lanes(m, d, [&](int l) {
      std::uint64_t n = b[l] & 0xffffffffu;
      return n >= std::uint64_t(bits) ? 0 : (a[l] & mk) >> n;
    });
  case Fast::ShrS:
    return for_lanes(m, d, [&](int l) {
      std::uint64_t n = b[l] & 0xffffffffu;
      std::int64_t x = sext(a[l], bits);
      return std::uint64_t(n >= std::uint64_t(bits) ? (x < 0 ? -1 : 0) : x >> n) & mk;
    });
  case Fast::Mov: return for_lanes(m, d, [&](int l) { return a[l] & mk; });
  case Fast::Selp: return for_lanes(m, d, [&](int l) { return ((c[l] & 1) ? a[l] : b[l]) & mk; });
  case Fast::SetpInt: {
    // As int_compare, with the comparison chosen once for the warp: operands become unsigned
    // keys (a signed order compare: sign-extended, sign bit flipped), then one operator.
    const bool so = u.sg && (u.cmp == Cmp::LT || u.cmp == Cmp::LE || u.cmp == Cmp::GT ||
                             u.cmp == Cmp::GE);
    auto run = [&](auto key) MOEC_HOT_LAMBDA {
      switch (u.cmp) {
      case Cmp::EQ: return for_lanes(m, d, [&](int l) { return std::uint64_t(key(a[l]) == key(b[l])); });
      case Cmp::NE: return for_lanes(m, d, [&](int l) { return std::uint64_t(key(a[l]) != key(b[l])); });
      case Cmp::LT: case Cmp::LO:
        return for_lanes(m, d, [&](int l) { return std::uint64_t(key(a[l]) < key(b[l])); });
      case Cmp::LE: case Cmp::LS:
        return for_lanes(m, d, [&](int l) { return std::uint64_t(key(a[l]) <= key(b[l])); });
      case Cmp::GT: case Cmp::HI:
        return for_lanes(m, d, [&](int l) { return std::uint64_t(key(a[l]) > key(b[l])); });
      case Cmp::GE: case Cmp::HS:
        return for_lanes(m, d, [&](int l) { return std::uint64_t(key(a[l]) >= key(b[l])); });
      default: return for_lanes(m, d, [&](int) { return std::uint64_t(0); });
      }
    };
    if (so) return run([&](std::uint64_t x) { return std::uint64_t(sext(x, bits)) ^ (1ull << 63); });
    return run([&](std::uint64_t x) { return x & mk; });
  }
  case Fast::SetpF32:
    return for_lanes(m, d, [&](int l) { return std::uint64_t(compare(u.cmp, fl(a[l]), fl(b[l]))); });
  case Fast::FAdd: return for_lanes(m, d, [&](int l) { return bits32(fl(a[l]) + fl(b[l])); });
  case Fast::FSub: return for_lanes(m, d, [&](int l) { return bits32(fl(a[l]) - fl(b[l])); });
  case Fast::FMul: return for_lanes(m, d, [&](int l) { return bits32(fl(a[l]) * fl(b[l])); });
  case Fast::Fma:
    return for_lanes(m, d, [&](int l) { return bits32(std::fma(fl(a[l]), fl(b[l]), fl(c[l]))); });
  case Fast::CvtInt: {
    const int fb = u.sbits;
    return for_lanes(m, d, [&](int l) {
      return (u.sg ? std::uint64_t(sext(a[l], fb)) : mask_bits(a[l], fb)) & mk;
    });
  }
  case Fast::CvtF32Bf16:
    return for_lanes(m, d, [&](int l) { return bits32(bf16_to_f32(std::uint16_t(a[l]))); });
  case Fast::PAnd: return for_lanes(m, d, [&](int l) { return a[l] & b[l] & 1; });
  case Fast::POr: return for_lanes(m, d, [&](int l) { return (a[l] | b[l]) & 1; });
  case Fast::PXor: return for_lanes(m, d, [&](int l) { return (a[l] ^ b[l]) & 1; });
  case Fast::PNot: return for_lanes(m, d, [&](int l) { return ~a[l] & 1; });
  case Fast::Not: return for_lanes(m, d, [&](int l) { return ~a[l] & mk; });
  case Fast::Cvta: return for_lanes(m, d, [&](int l) { return (a[l] + u.k2) & mk; });
  case Fast::LdUniform: {
    const Inst &in = K.code[std::size_t(w.gpc)];
    const std::vector<Operand> &o = in.ops;
    Lane t = lane(w, __builtin_ctz(m), w.gpc);
    const Ty ty = in.type;
    std::uint64_t x = load_bits(addr(t, Space::Param, mem_addr(t, o[1]), std::size_t(bits / 8),
                                     Access::Read), bits / 8);
    x = mask_bits(is_signed(ty) ? std::uint64_t(sext(x, bits)) : x, 64);
    return for_lanes(m, d, [&](int) { return x; });
  }
  case Fast::CvtBf16F32:
    return for_lanes(m, d, [&](int l) { return std::uint64_t(f32_to_bf16(fl(a[l]))); });
  case Fast::FmaRounded: // one switch of the FPU's rounding mode for the whole warp
    return with_rounding(K.code[std::size_t(w.gpc)].rnd, [&] {
      for_lanes(m, d, [&](int l) { return bits32(std::fma(fl(a[l]), fl(b[l]), fl(c[l]))); });
      return 0;
    }), void();
  case Fast::LdParam: return for_lanes(m, d, [&](int) { return u.k2; });
  case Fast::NegInt: return for_lanes(m, d, [&](int l) { return (0 - a[l]) & mk; });
  case Fast::NegF32: // the sign bit flipped (after flushing a subnormal with .ftz)
    return for_lanes(m, d, [&](int l) {
      std::uint64_t x = u.ftz ? bits32(ftz(fl(a[l]))) : a[l];
      return (x ^ 0x80000000u) & 0xffffffffu;
    });
  case Fast::Ex2F32: // ex2.approx[.ftz].f32 as exec_float computes it
    return for_lanes(m, d, [&](int l) {
      float x = u.ftz ? ftz(fl(a[l])) : fl(a[l]);
      float r = std::exp2(x);
      return bits32(u.ftz ? ftz(r) : r);
    });
  case Fast::CvtSatF32: // cvt.sat.f32.f32: clamped to [0, 1], NaN to 0 (as convert())
    return for_lanes(m, d, [&](int l) {
      double v = fl(a[l]);
      v = std::isnan(v) ? 0.0 : std::min(std::max(v, 0.0), 1.0);
      return bits32(float(v));
    });
  case Fast::MinF32: case Fast::MaxF32: {
    const bool mx = u.fast == Fast::MaxF32;
    return for_lanes(m, d, [&](int l) {
      return bits32(float(float_minmax(fl(a[l]), fl(b[l]), mx, u.ftz)));
    });
  }
  case Fast::FDiv: return for_lanes(m, d, [&](int l) { return bits32(fl(a[l]) / fl(b[l])); });
  case Fast::MinU: return for_lanes(m, d, [&](int l) { return std::min(a[l] & mk, b[l] & mk); });
  case Fast::MaxU: return for_lanes(m, d, [&](int l) { return std::max(a[l] & mk, b[l] & mk); });
  case Fast::MinS:
    return for_lanes(m, d, [&](int l) { return std::uint64_t(std::min(sext(a[l], bits), sext(b[l], bits))) & mk; });
  case Fast::MaxS:
    return for_lanes(m, d, [&](int l) { return std::uint64_t(std::max(sext(a[l], bits), sext(b[l], bits))) & mk; });
  case Fast::CvtBf16x2F32: // cvt.rn.bf16x2.f32 d, a, b: a to the upper half, b to the lower
    return for_lanes(m, d, [&](int l) {
      return std::uint64_t(f32_to_bf16(fl(b[l]))) | std::uint64_t(f32_to_bf16(fl(a[l]))) << 16;
    });
  case Fast::LdSt: return exec_ldst(w, K.code[std::size_t(w.gpc)], m);
  case Fast::None: return;
  }
}

// A global load by the whole group with one check: every lane's address aligned and inside
// one allocation, which this launch has not written (so no race bookkeeping). False, having done nothing, when that does not hold.
bool Interp::load_warp(Warp &w, const Inst &in, std::uint32_t m, const Operand &mo,
                       const Operand &v, std::size_t n, bool sg) {
  std::uint64_t a[kLanes], lo = ~0ull, hi = 0, any = 0;
  const std::uint64_t *base = mo.reg >= 0 ? w.R + std::size_t(mo.reg) * kLanes : nullptr;
  const std::uint64_t off = (mo.has_sym ? mo.imm : 0) + std::uint64_t(mo.offset);
  for (std::uint32_t g = m; g; g &= g - 1) {
    int l = __builtin_ctz(g);
    a[l] = (base ? base[l] : 0) + off;
    lo = std::min(lo, a[l]), hi = std::max(hi, a[l]), any |= a[l];
  }
  if ((n & (n - 1)) || (any & (n - 1)) || hi + n < hi) return false;
  if (lo < cache_lo_ || hi + n > cache_hi_) {
    std::uint64_t b;
    Allocation *al = memory().contains(lo, std::size_t(hi + n - lo), &b);
    if (!al) return false; // out of bounds, or shared/local windows: lane by lane
    cache_lo_ = b, cache_hi_ = b + al->size, cache_alloc_ = al;
  }
  if (racecheck_ && cache_alloc_->written_in == L.id) return false;
  if (in.vec == 1 && v.kind != Operand::Reg && v.kind != Operand::Sink) return false;
  if (count_reads_)
    for (std::uint32_t g = m; g; g &= g - 1) count_read(a[__builtin_ctz(g)] - cache_lo_, n);
  const int bits = bits_of(in.type), eb = bits / 8;
  // The destination slots (null: not written), then one copy loop per element size.
  std::uint64_t *dst[4] = {};
  for (int i = 0; i < in.vec; ++i) {
    int r = in.vec == 1 ? (v.kind == Operand::Reg ? v.reg : -1)
                        : v.kind == Operand::Vec ? v.vec[std::size_t(i)] : -1;
    if (r >= 0) dst[i] = w.R + std::size_t(r) * kLanes;
  }
  const bool sx = sg && in.vec == 1 && bits < 64;
  auto copy = [&](auto elem) {
    using T = decltype(elem);
    for (int i = 0; i < in.vec; ++i) {
      std::uint64_t *d = dst[i];
      if (!d) continue;
      for (std::uint32_t g = m; g; g &= g - 1) {
        int l = __builtin_ctz(g);
        std::uint64_t x = load_as<T>(reinterpret_cast<const std::uint8_t *>(a[l]) + i * eb);
        d[l] = sx ? std::uint64_t(sext(x, bits)) : x;
      }
    }
  };
  switch (eb) {
  case 1: copy(std::uint8_t()); break;
  case 2: copy(std::uint16_t()); break;
  case 4: copy(std::uint32_t()); break;
  default: copy(std::uint64_t()); break; // n is a power of two: eb is 1, 2, 4 or 8
  }
  return true;
}

// ld.shared/st.shared by the whole group: every lane's address aligned and the group's range
// inside the static or the dynamic shared memory (else false, having done nothing), then
// lane by lane: the racecheck (a race faults through race_check, with its message) and the
// copy. The tiles of the GEMM kernels are staged with these.
bool Interp::shared_warp(Warp &w, const Inst &in, std::uint32_t m, const Operand &mo,
                         const Operand &v, std::size_t n, bool sg) {
  std::uint64_t a[kLanes], lo = ~0ull, hi = 0, any = 0;
  const std::uint64_t *base = mo.reg >= 0 ? w.R + std::size_t(mo.reg) * kLanes : nullptr;
  const std::uint64_t off = (mo.has_sym ? mo.imm : 0) + std::uint64_t(mo.offset);
  for (std::uint32_t g = m; g; g &= g - 1) {
    int l = __builtin_ctz(g);
    a[l] = (base ? base[l] : 0) + off;
    lo = std::min(lo, a[l]), hi = std::max(hi, a[l]), any |= a[l];
  }
  if ((n & (n - 1)) || (any & (n - 1)) || hi + n < hi) return false;
  std::uint8_t *mem;
  std::uint64_t shadow_at; // shadow byte of address 0 of this region
  if (hi + n <= L.shared.size()) {
    mem = L.shared.data(), shadow_at = 0;
  } else if (lo >= kDynamicShared && hi + n - kDynamicShared <= L.dynamic.size()) {
    mem = L.dynamic.data() - kDynamicShared, shadow_at = L.shared.size() - kDynamicShared;
  } else {
    return false; // out of bounds somewhere: lane by lane, to fault with the lane's address
  }
  const bool ld = in.op == Op::Ld, rev = reverse_order();
  const Access acc = ld ? Access::Read : Access::Write;
  const int bits = bits_of(in.type), eb = bits / 8;
  int order[kLanes], nl = 0; // the lanes, in the order they access memory
  for (std::uint32_t g = m; g;) {
    int l = rev ? 31 - __builtin_clz(g) : __builtin_ctz(g);
    g &= ~(1u << l);
    order[nl++] = l;
  }
  if (racecheck_) {
    std::uint64_t b[kLanes];
    for (int k = 0; k < nl; ++k) b[order[k]] = a[order[k]] + shadow_at;
    warp_race_check(w, b, order, nl, n, acc);
  }
  // One copy loop per element of the vector and element size (registers as [slot][lane]).
  auto copy = [&](auto elem) {
    using T = decltype(elem);
    for (int i = 0; i < in.vec; ++i) {
      int reg = v.kind == Operand::Vec ? v.vec[std::size_t(i)] : v.kind == Operand::Reg ? v.reg : -1;
      if (ld) {
        if (reg < 0) continue;
        std::uint64_t *d = w.R + std::size_t(reg) * kLanes;
        const bool sx = sg && in.vec == 1 && bits < 64;
        for (int k = 0; k < nl; ++k) {
          const int l = order[k];
          std::uint64_t x = load_as<T>(mem + a[l] + i * eb);
          d[l] = sx ? std::uint64_t(sext(x, bits)) : x;
        }
      } else {
        const std::uint64_t *src = in.vec == 1 ? w.R + std::size_t(v.src) * kLanes
                                   : reg >= 0  ? w.R + std::size_t(reg) * kLanes : nullptr;
        for (int k = 0; k < nl; ++k) {
          const int l = order[k];
          store_as<T>(mem + a[l] + i * eb, src ? src[l] : 0);
        }
      }
    }
  };
  switch (eb) {
  case 1: copy(std::uint8_t()); break;
  case 2: copy(std::uint16_t()); break;
  case 4: copy(std::uint32_t()); break;
  default: copy(std::uint64_t()); break; // n is a power of two: eb is 1, 2, 4 or 8
  }
  return true;
}

// ld/st of 1, 2 or 4 elements, lane by lane (each access is checked on its own).
void Interp::exec_ldst(Warp &w, const Inst &in, std::uint32_t m) {
  const bool ld = in.op == Op::Ld;
  const Operand &mo = in.ops[ld ? 1 : 0], &v = in.ops[ld ? 0 : 1];
  const Space sp = mem_space(in, mo);
  const int bits = bits_of(in.type), eb = bits / 8;
  const std::size_t n = std::size_t(eb * in.vec);
  const bool sg = is_signed(in.type);
  if (ld && (sp == Space::Global || sp == Space::Generic) && load_warp(w, in, m, mo, v, n, sg))
    return;
  if (sp == Space::Shared && shared_warp(w, in, m, mo, v, n, sg)) return;
  const bool rev = reverse_order();
  for (std::uint32_t g = m; g;) {
    int l = rev ? 31 - __builtin_clz(g) : __builtin_ctz(g);
    g &= ~(1u << l);
    Lane t = lane(w, l, w.gpc);
    if (!ld && (sp == Space::Param || sp == Space::Const)) fault(t, "store to a read-only space");
    std::uint8_t *p = addr(t, sp, mem_addr(t, mo), n, ld ? Access::Read : Access::Write);
    if (in.vec == 1 && ld) {
      std::uint64_t x = load_bits(p, eb);
      set(t, v, sg ? std::uint64_t(sext(x, bits)) : x, Ty::B64);
    } else if (in.vec == 1) {
      store_bits(p, get(t, v, in.type), eb);
    } else {
      for (int i = 0; i < in.vec; ++i) {
        int r = v.kind == Operand::Vec ? v.vec[std::size_t(i)] : -1;
        if (ld && r >= 0) t.r[std::size_t(r)] = load_bits(p + i * eb, eb);
        if (ld) continue;
        store_bits(p + i * eb, r >= 0 ? t.r[std::size_t(r)] : 0, eb);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// Blocks and warps
// ---------------------------------------------------------------------------------------

Interp::Interp(Launch &l) : L(l), K(*l.k) {
  nthreads_ = L.block[0] * L.block[1] * L.block[2];
  const std::size_t nw = (nthreads_ + kLanes - 1) / kLanes, slots = std::size_t(K.slots());
  warps_.resize(nw);
  for (const Inst &in : K.code) {
    micro_.push_back(micro(in));
    // A parameter load at a fixed address reads the same bits all launch: load it once here
    // (one outside the parameters stays a LdUniform, to fault where it runs).
    Micro &u = micro_.back();
    if (u.fast != Fast::LdUniform) continue;
    const Operand &mo = in.ops[1];
    const std::uint64_t a = (mo.has_sym ? mo.imm : 0) + std::uint64_t(mo.offset);
    const std::size_t n = std::size_t(u.bits / 8);
    if (a + n <= L.params->size() && a + n >= a && !(n > 1 && (n & (n - 1)) == 0 && a % n)) {
      std::uint64_t x = load_bits(L.params->data() + a, int(n));
      u.k2 = mask_bits(is_signed(in.type) ? std::uint64_t(sext(x, u.bits)) : x, 64);
      u.fast = Fast::LdParam;
    }
  }
  regs_ = register_file(nw * slots * kLanes);
  locals_.assign(nw * kLanes * K.local_bytes, 0);
  if (std::any_of(K.code.begin(), K.code.end(), [](const Inst &in) {
        return in.op == Op::CpAsync || in.op == Op::CpAsyncCommit || in.op == Op::CpAsyncWait;
      }))
    async_.resize(nw);
  if (std::any_of(K.code.begin(), K.code.end(), [](const Inst &in) { return in.op == Op::Wgmma; }))
    wgmma_.resize(nw);
  for (std::size_t i = 0; i < nw; ++i) {
    Warp &w = warps_[i];
    w.index = int(i);
    w.R = regs_ + i * slots * kLanes;
    w.local = locals_.data() + i * kLanes * K.local_bytes;
    std::uint32_t tail = nthreads_ % kLanes;
    w.exists = (i + 1 == nw && tail) ? (1u << tail) - 1 : ~0u;
    for (std::size_t c = 0; c < K.consts.size(); ++c)
      std::fill_n(w.R + (std::size_t(K.const_base()) + c) * kLanes, kLanes, K.consts[c]);
  }
  set_specials();
}

// Fresh registers, local memory and special registers for the block at L.ctaid.
void Interp::start_block() {
  // Registers are not cleared between blocks or launches (register_file()): a GPU's
  // registers start as garbage, and PTX from LLVM never reads one before writing it.
  // The special registers other than %ctaid are the same in every block (set_specials).
  for (Warp &w : warps_) {
    if (K.local_bytes) std::fill_n(w.local, kLanes * K.local_bytes, 0);
    std::fill_n(w.carry, kLanes, 0);
    std::uint64_t *sp = w.R + std::size_t(K.special_base()) * kLanes;
    std::fill_n(sp + int(Special::CtaidX) * kLanes, kLanes, L.ctaid[0]);
    std::fill_n(sp + int(Special::CtaidY) * kLanes, kLanes, L.ctaid[1]);
    std::fill_n(sp + int(Special::CtaidZ) * kLanes, kLanes, L.ctaid[2]);
    w.done = w.coll = w.bar = 0;
    w.run = w.group = w.exists;
    w.gpc = 0;
    w.wait_min = INT_MAX;
  }
  shadow_.reset(racecheck_enabled() ? L.shared.size() + L.dynamic.size() : 0);
  for (AsyncQueue &q : async_) q.copies.clear(), std::fill_n(q.committed, kLanes, 0u);
  for (WgmmaQueue &q : wgmma_) q = WgmmaQueue{};
}

// The special registers of every lane (in the launch's first block: %ctaid is start_block's).
void Interp::set_specials() {
  for (Warp &w : warps_) {
    std::uint64_t *sp = w.R + std::size_t(K.special_base()) * kLanes;
    auto put = [&](Special s, int l, std::uint64_t v) { sp[int(s) * kLanes + l] = v; };
    for (int l = 0; l < kLanes; ++l) {
      std::uint32_t i = std::uint32_t(w.index * kLanes + l);
      put(Special::TidX, l, i % L.block[0]);
      put(Special::TidY, l, (i / L.block[0]) % L.block[1]);
      put(Special::TidZ, l, i / (L.block[0] * L.block[1]));
      put(Special::NtidX, l, L.block[0]), put(Special::NtidY, l, L.block[1]);
      put(Special::NtidZ, l, L.block[2]);
      put(Special::CtaidX, l, L.ctaid[0]), put(Special::CtaidY, l, L.ctaid[1]);
      put(Special::CtaidZ, l, L.ctaid[2]);
      put(Special::NctaidX, l, L.grid[0]), put(Special::NctaidY, l, L.grid[1]);
      put(Special::NctaidZ, l, L.grid[2]);
      put(Special::Laneid, l, std::uint64_t(l)), put(Special::Warpid, l, std::uint64_t(w.index));
      put(Special::WarpSz, l, kLanes);
    }
  }
}

void Interp::run_block() {
  start_block();
  const bool rev = reverse_order();
  const std::size_t nw = warps_.size();
  for (;;) {
    for (std::size_t j = 0; j < nw; ++j) {
      Warp &w = warps_[rev ? nw - 1 - j : j];
      if (w.run) run_warp(w);
    }
    if (resolve_collectives()) continue;
    // Every live thread now waits at a barrier, or none is left.
    std::uint32_t live = 0;
    for (const Warp &w : warps_) live += std::uint32_t(__builtin_popcount(w.exists & ~w.done));
    if (live == 0) return;
    if (!release_barriers()) deadlock();
  }
}

// Runs the warp's lanes until none can go on (barrier, collective not yet complete, exit).
// The loop is built twice, for any x86-64 and for AVX2+FMA, with the lane-parallel forms
// (exec_fast_body) inlined into it: no call per instruction, and vector code where the CPU
// has it.
void Interp::run_warp(Warp &w) { avx2_ ? run_warp_avx2(w) : run_warp_generic(w); }
void Interp::run_warp_generic(Warp &w) { run_warp_body(w); }
__attribute__((target("avx2,fma"))) void Interp::run_warp_avx2(Warp &w) { run_warp_body(w); }

MOEC_HOT void Interp::run_warp_body(Warp &w) {
  cur_ = &w;
  const Inst *code = K.code.data();
  for (;;) {
    if (!w.group) {
      regroup(w);
      if (!w.group) return;
    }
    const Micro &u = micro_[std::size_t(w.gpc)];
    std::uint32_t m = w.group;
    if (u.guard >= 0) {
      const std::uint64_t *g = w.R + std::size_t(u.guard) * kLanes;
      std::uint32_t on = 0;
      for (int l = 0; l < kLanes; ++l) on |= std::uint32_t(g[l] & 1) << l;
      m &= u.guard_neg ? ~on : on;
    }
    switch (u.op) {
    case Op::Bra: branch(w, code[w.gpc], m); break;
    case Op::Ret: case Op::Exit: exit_lanes(w, m); break;
    case Op::Bar: barrier(w, code[w.gpc], m); break;
    case Op::BarWarp: case Op::Shfl: case Op::Mma: case Op::Ldmatrix: case Op::Vote:
    case Op::Wgmma: case Op::WgmmaFence: case Op::WgmmaCommit: case Op::WgmmaWait:
      collective_arrive(w, code[w.gpc], m);
      break;
    default:
      if (m && u.fast != Fast::None) exec_fast_body(w, u, m);
      else if (m) exec(w, code[w.gpc], m);
      advance(w);
    }
  }
}

// The group becomes the run lanes at the lowest pc (min-pc scheduling: lanes ahead wait, so
// diverged lanes meet again where their paths join).
void Interp::regroup(Warp &w) {
  for (std::uint32_t g = w.group; g; g &= g - 1) w.pc[__builtin_ctz(g)] = w.gpc;
  int lo = INT_MAX;
  for (std::uint32_t r = w.run; r; r &= r - 1) lo = std::min(lo, w.pc[__builtin_ctz(r)]);
  w.group = 0;
  w.wait_min = INT_MAX;
  for (std::uint32_t r = w.run; r; r &= r - 1) {
    int l = __builtin_ctz(r);
    if (w.pc[l] == lo) w.group |= 1u << l;
    else w.wait_min = std::min(w.wait_min, w.pc[l]);
  }
  w.gpc = lo;
}

void Interp::advance(Warp &w) {
  if (++w.gpc >= w.wait_min) regroup(w);
}

// `m`: the group's lanes whose guard holds (they jump); the others fall through.
void Interp::branch(Warp &w, const Inst &in, std::uint32_t m) {
  std::uint32_t stay = w.group & ~m;
  if (!stay) {
    w.gpc = in.target;
    if (w.gpc >= w.wait_min) regroup(w);
    return;
  }
  if (!m) return advance(w);
  for (std::uint32_t g = m; g; g &= g - 1) w.pc[__builtin_ctz(g)] = in.target;
  for (std::uint32_t g = stay; g; g &= g - 1) w.pc[__builtin_ctz(g)] = w.gpc + 1;
  w.group = 0; // every lane's pc is written: diverge
  regroup(w);
}

void Interp::exit_lanes(Warp &w, std::uint32_t m) {
  w.done |= m, w.run &= ~m, w.group &= ~m;
  if (w.group) advance(w);
  else regroup(w);
}

void Interp::barrier(Warp &w, const Inst &in, std::uint32_t m) {
  const std::vector<Operand> &o = in.ops;
  if (o.size() < 2 && (o.empty() || (o[0].kind == Operand::Imm && o[0].imm <= 15))) {
    // bar.sync with a constant barrier number (the common form): the same for every lane
    const std::uint32_t id = o.empty() ? 0 : std::uint32_t(o[0].imm);
    for (std::uint32_t g = m; g; g &= g - 1) {
      int l = __builtin_ctz(g);
      w.bar_id[l] = id, w.bar_count[l] = 0, w.pc[l] = w.gpc;
    }
  } else for (std::uint32_t g = m; g; g &= g - 1) {
    int l = __builtin_ctz(g);
    Lane t = lane(w, l, w.gpc);
    w.bar_id[l] = o.empty() ? 0 : std::uint32_t(u(t, o[0], Ty::U32));
    w.bar_count[l] = o.size() > 1 ? std::uint32_t(u(t, o[1], Ty::U32)) : 0;
    if (w.bar_id[l] > 15) fault(t, "barrier number above 15");
    w.pc[l] = w.gpc;
  }
  w.bar |= m, w.run &= ~m, w.group &= ~m;
  if (w.group) advance(w);
  else regroup(w);
}

// A barrier releases its waiters when its count (default: every live thread of the block)
// has arrived. False when none can be released.
bool Interp::release_barriers() {
  std::uint32_t live = 0, waiting[16] = {}, want[16] = {};
  for (const Warp &w : warps_) {
    live += std::uint32_t(__builtin_popcount(w.exists & ~w.done));
    for (std::uint32_t b = w.bar; b; b &= b - 1) {
      int l = __builtin_ctz(b);
      ++waiting[w.bar_id[l]], want[w.bar_id[l]] = w.bar_count[l];
    }
  }
  bool released = false;
  for (std::uint32_t id = 0; id < 16; ++id) {
    if (!waiting[id] || waiting[id] < (want[id] ? want[id] : live)) continue;
    for (Warp &w : warps_)
      for (std::uint32_t b = w.bar; b; b &= b - 1) {
        int l = __builtin_ctz(b);
        if (w.bar_id[l] != id) continue;
        w.bar &= ~(1u << l), w.run |= 1u << l;
        ++w.pc[l];
      }
    released = true;
    shadow_.barrier(); // accesses before and after this barrier are ordered
  }
  return released;
}

void Interp::exec(Warp &w, const Inst &in, std::uint32_t m) {
  if (in.op == Op::CpAsync || in.op == Op::CpAsyncCommit || in.op == Op::CpAsyncWait)
    return exec_cp_async(w, in, m);
  if (reverse_order()) {
    for (std::uint32_t g = m; g;) {
      int l = 31 - __builtin_clz(g);
      g &= ~(1u << l);
      Lane t = lane(w, l, w.gpc);
      exec_lane(t, in);
    }
    return;
  }
  for (std::uint32_t g = m; g; g &= g - 1) {
    Lane t = lane(w, __builtin_ctz(g), w.gpc);
    exec_lane(t, in);
  }
}

void Interp::exec_lane(Lane &t, const Inst &in) {
  switch (in.op) {
  case Op::Ld: case Op::St: case Op::Cvta: case Op::Atom: case Op::Red: return exec_memory(t, in);
  case Op::Mov: case Op::Cvt: case Op::Selp: return exec_move(t, in);
  case Op::Add: case Op::Sub: case Op::Mul: case Op::Min: case Op::Max: case Op::Div:
  case Op::Rem: return exec_int(t, in);
  case Op::Subc: case Op::Addc: case Op::Mad: case Op::Madc: return exec_carry(t, in);
  case Op::Fma: return exec_fma(t, in);
  case Op::Neg: case Op::Abs: case Op::Ex2: case Op::Lg2: case Op::Rcp: case Op::Sqrt:
  case Op::Rsqrt: case Op::Sin: case Op::Cos: case Op::Tanh: case Op::Copysign:
    return exec_float(t, in);
  case Op::And: case Op::Or: case Op::Xor: case Op::Not: case Op::Shl: case Op::Shr:
    return exec_logic(t, in);
  case Op::Setp: return exec_setp(t, in);
  case Op::Bfe: case Op::Shf: case Op::Prmt: case Op::Popc: case Op::Clz: case Op::Brev:
    return exec_bits(t, in);
  case Op::Activemask: // lanes of this warp that have not exited
    return set(t, in.ops[0], cur_->exists & ~cur_->done, Ty::B32);
  case Op::Trap: fault(t, "trap executed");
  default: return; // nop, membar/fence: no effect in a sequential, coherent emulation
  }
}

// cp.async by the lanes m: one queue entry; commit_group and wait_group per lane (a lane's
// groups are numbered by its commits, so diverged lanes keep their own groups).
void Interp::exec_cp_async(Warp &w, const Inst &in, std::uint32_t m) {
  AsyncQueue &q = async_[std::size_t(w.index)];
  if (in.op == Op::CpAsync) {
    const std::vector<Operand> &o = in.ops;
    WarpCopies &c = q.copies.emplace_back();
    c.queued = m, c.size = std::uint32_t(in.vec), c.pc = w.gpc;
    // Addresses as mem_addr() forms them, read straight from the warp's registers.
    auto base = [&](const Operand &mo) { return mo.reg >= 0 ? w.R + std::size_t(mo.reg) * kLanes : nullptr; };
    auto off = [](const Operand &mo) { return (mo.has_sym ? mo.imm : 0) + std::uint64_t(mo.offset); };
    const std::uint64_t *db = base(o[0]), *sb = base(o[1]), doff = off(o[0]), soff = off(o[1]);
    const std::uint64_t *ss = o.size() > 3 ? w.R + std::size_t(o[3].src) * kLanes : nullptr;
    std::uint32_t over = 0; // lanes whose src-size exceeds the copy
    for (std::uint32_t g = m; g; g &= g - 1) {
      const int l = __builtin_ctz(g);
      c.dst[l] = (db ? db[l] : 0) + doff, c.src[l] = (sb ? sb[l] : 0) + soff;
      c.src_size[l] = ss ? std::uint32_t(ss[l]) : c.size;
      c.group[l] = q.committed[l];
      over |= std::uint32_t(c.src_size[l] > c.size) << l;
    }
    if (over)
      fault(lane(w, __builtin_ctz(over), w.gpc),
            "cp.async src-size " + std::to_string(c.src_size[__builtin_ctz(over)]) +
                " above its cp-size " + std::to_string(c.size));
    return;
  }
  const bool all = in.sub == "wait_all";
  if (in.op == Op::CpAsyncCommit || all) // wait_all commits first
    for (std::uint32_t g = m; g; g &= g - 1) ++q.committed[__builtin_ctz(g)];
  if (in.op == Op::CpAsyncCommit) return;
  // wait_group N: a lane's groups but its newest N land (all of them with wait_all).
  const std::uint32_t keep = all ? 0 : std::uint32_t(in.ops[0].imm);
  std::uint32_t below[kLanes]; // a lane's copies of groups below this land
  for (int l = 0; l < kLanes; ++l) below[l] = q.committed[l] > keep ? q.committed[l] - keep : 0;
  for (WarpCopies &c : q.copies) {
    std::uint32_t lands = 0;
    for (std::uint32_t g = c.queued & m; g; g &= g - 1) {
      const int l = __builtin_ctz(g);
      if (c.group[l] < below[l]) lands |= 1u << l;
    }
    if (lands) land_copies(w, c, lands);
  }
  std::size_t done = 0;
  while (done < q.copies.size() && !q.copies[done].queued) ++done;
  q.copies.erase(q.copies.begin(), q.copies.begin() + std::ptrdiff_t(done));
}

// The copies of the lanes `lanes` of one entry land: each source read and destination written
// by its thread now (bounds, alignment, racecheck and the trace's read counts as for ld/st).
// When every source lies in one allocation this launch has not written and every destination
// in one shared region, with one racecheck call for the warp; else lane by lane, to fault
// with the lane's message.
void Interp::land_copies(Warp &w, WarpCopies &c, std::uint32_t lanes) {
  c.queued &= ~lanes;
  const bool rev = reverse_order();
  int order[kLanes], nl = 0;
  for (std::uint32_t g = lanes; g;) {
    const int l = rev ? 31 - __builtin_clz(g) : __builtin_ctz(g);
    g &= ~(1u << l);
    order[nl++] = l;
  }
  const std::uint32_t n = c.size;
  std::uint64_t any = 0, slo = ~0ull, shi = 0, dlo = ~0ull, dhi = 0;
  for (int k = 0; k < nl; ++k) {
    const int l = order[k];
    any |= c.src[l] | c.dst[l];
    dlo = std::min(dlo, c.dst[l]), dhi = std::max(dhi, c.dst[l]);
    if (c.src_size[l]) slo = std::min(slo, c.src[l]), shi = std::max(shi, c.src[l]);
  }
  bool fast = any % n == 0 && dhi + n >= dhi && (slo > shi || shi + n >= shi);
  if (fast && slo <= shi && (slo < cache_lo_ || shi + n > cache_hi_)) {
    std::uint64_t b;
    Allocation *al = memory().contains(slo, std::size_t(shi + n - slo), &b);
    if (al) cache_lo_ = b, cache_hi_ = b + al->size, cache_alloc_ = al;
    else fast = false;
  }
  if (fast && slo <= shi && racecheck_ && cache_alloc_->written_in == L.id) fast = false;
  std::uint8_t *mem = nullptr;
  std::uint64_t shadow_at = 0;
  if (dhi + n <= L.shared.size()) mem = L.shared.data();
  else if (dlo >= kDynamicShared && dhi + n - kDynamicShared <= L.dynamic.size())
    mem = L.dynamic.data() - kDynamicShared, shadow_at = L.shared.size() - kDynamicShared;
  if (!fast || !mem) {
    for (int k = 0; k < nl; ++k) {
      const int l = order[k];
      complete_copy(lane(w, l, c.pc), {c.dst[l], c.src[l], n, c.src_size[l], c.pc});
    }
    return;
  }
  if (racecheck_) {
    std::uint64_t b[kLanes];
    for (int k = 0; k < nl; ++k) b[order[k]] = c.dst[order[k]] + shadow_at;
    const int saved = w.gpc;
    w.gpc = c.pc; // faults name the cp.async
    warp_race_check(w, b, order, nl, n, Access::Write);
    w.gpc = saved;
  }
  for (int k = 0; k < nl; ++k) {
    const int l = order[k];
    const std::uint32_t ss = c.src_size[l];
    if (count_reads_ && ss) count_read(c.src[l] - cache_lo_, ss);
    std::uint8_t *d = mem + c.dst[l];
    const std::uint8_t *src = reinterpret_cast<const std::uint8_t *>(c.src[l]);
    if (ss == 16 && n == 16) {
      std::memcpy(d, src, 16);
    } else {
      std::uint8_t bytes[16] = {};
      std::memcpy(bytes, src, ss);
      std::memcpy(d, bytes, n);
    }
  }
}

// One copy lands, lane by lane: its source read and its destination written by the issuing
// thread now.
void Interp::complete_copy(Lane t, const AsyncCopy &c) {
  if (c.src % c.size) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "misaligned %u-byte cp.async source 0x%" PRIx64, c.size, c.src);
    fault(t, buf);
  }
  std::uint8_t bytes[16] = {};
  if (c.src_size) std::memcpy(bytes, addr(t, Space::Global, c.src, c.src_size, Access::Read), c.src_size);
  std::memcpy(addr(t, Space::Shared, c.dst, c.size, Access::Write), bytes, c.size);
}

// ---------------------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------------------

std::string Interp::thread_name(std::uint32_t i) const {
  return "thread (" + std::to_string(i % L.block[0]) + "," +
         std::to_string((i / L.block[0]) % L.block[1]) + "," +
         std::to_string(i / (L.block[0] * L.block[1])) + ")";
}

void Interp::fault(const Lane &t, const std::string &msg) {
  const Inst &in = K.code[std::size_t(t.pc)];
  char where[64];
  std::snprintf(where, sizeof where, "block (%u,%u,%u) ", L.ctaid[0], L.ctaid[1], L.ctaid[2]);
  fail("kernel " + K.name + ", " + where + thread_name(std::uint32_t(t.warp * kLanes + t.lane)) +
       ", PTX line " + std::to_string(in.line) + " `" + in.text + "`: " + msg);
}

void Interp::deadlock() {
  for (Warp &w : warps_)
    for (std::uint32_t b = w.coll | w.bar; b; b &= b - 1) {
      int l = __builtin_ctz(b);
      std::string others;
      for (const Warp &v : warps_)
        for (std::uint32_t a = v.exists & ~v.done; a && others.empty(); a &= a - 1) {
          int k = __builtin_ctz(a);
          if (v.pc[k] == w.pc[l]) continue;
          others = "; " + thread_name(std::uint32_t(v.index * kLanes + k)) + " waits at PTX line " +
                   std::to_string(K.code[std::size_t(v.pc[k])].line);
        }
      fault(lane(w, l, w.pc[l]), "deadlock: not every thread that must arrive here does" + others);
    }
  fail("kernel " + K.name + ": deadlock");
}

// ---------------------------------------------------------------------------------------
// Warp collectives
// ---------------------------------------------------------------------------------------

// The lanes a collective names: its membermask operand, read in lane `l`.
static std::uint32_t member_mask(const Inst &in, const std::uint64_t *R, int l) {
  const Operand *o = nullptr;
  if (in.op == Op::Shfl || in.op == Op::Vote) o = &in.ops.back();
  if (in.op == Op::BarWarp) o = &in.ops[0];
  return o ? std::uint32_t(R[std::size_t(o->src) * kLanes + std::size_t(l)]) : 0xffffffffu;
}

// The group's lanes `m` reach a collective at gpc. It runs when every live lane it names is
// here (lanes that waited here earlier included); else they wait and the others go on.
bool Interp::collective_arrive(Warp &w, const Inst &in, std::uint32_t m) {
  if (!m) return advance(w), false;
  std::uint32_t here = m;
  for (std::uint32_t c = w.coll; c; c &= c - 1)
    if (w.pc[__builtin_ctz(c)] == w.gpc) here |= 1u << __builtin_ctz(c);
  int lead = __builtin_ctz(here);
  std::uint32_t member = member_mask(in, w.R, lead);
  Lane t = lane(w, lead, w.gpc);
  std::uint32_t missing = member & w.exists & ~here;
  if (missing & w.done & ~(in.op == Op::BarWarp ? ~0u : 0u))
    fault(t, "warp-collective instruction: lane " + std::to_string(__builtin_ctz(missing & w.done)) +
                 " named in its member mask has exited");
  missing &= ~w.done;
  if (missing) { // wait for them
    for (std::uint32_t g = m; g; g &= g - 1) w.pc[__builtin_ctz(g)] = w.gpc;
    w.coll |= m, w.run &= ~m, w.group &= ~m;
    if (w.group) advance(w);
    else regroup(w);
    return false;
  }
  if (here & ~member)
    fault(t, "warp-collective instruction executed by lane " +
                 std::to_string(__builtin_ctz(here & ~member)) + ", which its member mask leaves out");
  collective(w, in, here, member);
  std::uint32_t joined = here & ~m; // lanes that waited here go on with the group
  for (std::uint32_t g = joined; g; g &= g - 1) w.pc[__builtin_ctz(g)] = w.gpc + 1;
  w.coll &= ~joined, w.run |= joined;
  if (joined) w.wait_min = std::min(w.wait_min, w.gpc + 1);
  advance(w);
  return true;
}

// Once every warp is blocked: runs the collectives whose lanes have all arrived.
bool Interp::resolve_collectives() {
  bool any = false;
  for (Warp &w : warps_) {
    if (!w.coll) continue;
    int lead = __builtin_ctz(w.coll), pc = w.pc[lead];
    const Inst &in = K.code[std::size_t(pc)];
    std::uint32_t member = member_mask(in, w.R, lead), here = 0;
    for (std::uint32_t c = w.coll; c; c &= c - 1)
      if (w.pc[__builtin_ctz(c)] == pc) here |= 1u << __builtin_ctz(c);
    Lane t = lane(w, lead, pc);
    bool ready = true;
    for (std::uint32_t a = member & w.exists & ~here; a; a &= a - 1) {
      int l = __builtin_ctz(a);
      if (w.done >> l & 1) {
        if (in.op == Op::BarWarp) continue;
        fault(t, "warp-collective instruction: lane " + std::to_string(l) +
                     " named in its member mask has exited");
      }
      if (w.bar >> l & 1) { ready = false; continue; } // a deadlock shows after the barrier
      fault(t, "warp-collective instruction reached by lanes at different instructions (lane " +
                   std::to_string(l) + " is at PTX line " +
                   std::to_string(K.code[std::size_t(w.pc[l])].line) + ")");
    }
    if (!ready) continue;
    if (here & ~member)
      fault(t, "warp-collective instruction executed by lane " +
                   std::to_string(__builtin_ctz(here & ~member)) + ", which its member mask leaves out");
    int saved = w.gpc;
    w.gpc = pc; // the collective's pc, for faults
    collective(w, in, here, member);
    w.gpc = saved;
    for (std::uint32_t g = here; g; g &= g - 1) ++w.pc[__builtin_ctz(g)];
    w.coll &= ~here, w.run |= here;
    any = true;
  }
  return any;
}

// Runs the collective at w.gpc for the lanes `active` (all named by `member`).
void Interp::collective(Warp &w, const Inst &in, std::uint32_t active, std::uint32_t member) {
  switch (in.op) {
  case Op::Vote: return vote(w, in, active, member);
  case Op::Shfl: return shfl(w, in, active);
  case Op::Ldmatrix: return ldmatrix(w, in, active);
  case Op::Mma: return mma(w, in, active);
  case Op::Wgmma: case Op::WgmmaFence: case Op::WgmmaCommit: case Op::WgmmaWait:
    if (active != ~0u)
      fault(lane(w, __builtin_ctz(active), w.gpc),
            "wgmma .sync.aligned: lane " + std::to_string(__builtin_ctz(~active)) + " is not taking part");
    return wgmma(w, in);
  default: return; // bar.warp.sync: the lanes have met
  }
}

// vote.sync.{all,any,uni,ballot} d, pred, membermask.
void Interp::vote(Warp &w, const Inst &in, std::uint32_t active, std::uint32_t member) {
  std::uint32_t ballot = 0;
  for (std::uint32_t g = active; g; g &= g - 1) {
    int l = __builtin_ctz(g);
    if (pred(lane(w, l, w.gpc), in.ops[1])) ballot |= 1u << l;
  }
  for (std::uint32_t g = active; g; g &= g - 1) {
    Lane t = lane(w, __builtin_ctz(g), w.gpc);
    std::uint64_t r;
    switch (in.mode) {
    case Mode::VoteBallot: r = ballot; break;
    case Mode::VoteAll: r = (ballot & member) == (member & active); break;
    case Mode::VoteAny: r = ballot != 0; break;
    case Mode::VoteUni: r = ballot == 0 || ballot == (member & active); break;
    default: fault(t, "unsupported vote mode");
    }
    set(t, in.ops[0], r, in.mode == Mode::VoteBallot ? Ty::B32 : Ty::Pred);
  }
}

// shfl.sync.{up,down,bfly,idx}.b32 d[|p], a, b, c, membermask (the manual's pseudo-code).
// Operands are read straight from the warp's value slots (one of the hottest collectives:
// every reduction is a ladder of shfl.bfly).
void Interp::shfl(Warp &w, const Inst &in, std::uint32_t active) {
  const std::uint64_t *vals = w.R + std::size_t(in.ops[1].src) * kLanes;
  const std::uint64_t *bs = w.R + std::size_t(in.ops[2].src) * kLanes;
  const std::uint64_t *cs = w.R + std::size_t(in.ops[3].src) * kLanes;
  const Operand &d = in.ops[0];
  if (d.kind != Operand::Reg && d.kind != Operand::Sink)
    fault(lane(w, __builtin_ctz(active), w.gpc), "destination is not a register");
  std::uint64_t *dst = d.kind == Operand::Reg ? w.R + std::size_t(d.reg) * kLanes : nullptr;
  std::uint64_t *pd = d.reg2 >= 0 ? w.R + std::size_t(d.reg2) * kLanes : nullptr;
  const char mode = in.sub[0]; // validated at parse time
  std::uint64_t out[kLanes];
  bool ok[kLanes];
  // The reductions' form: shfl.sync.bfly by a constant lane distance over the whole warp with
  // c = 0x1f (no segments, clamp 31): lane l reads lane l ^ b, always in range.
  if (mode == 'b' && active == ~0u && in.ops[2].kind == Operand::Imm &&
      in.ops[3].kind == Operand::Imm && (std::uint32_t(cs[0]) & 0x1f1f) == 0x1f) {
    const int b = int(std::uint32_t(bs[0]) & 31);
    for (int l = 0; l < kLanes; ++l) out[l] = vals[l ^ b] & 0xffffffffu;
    if (dst) std::copy(out, out + kLanes, dst);
    if (pd) std::fill_n(pd, kLanes, 1);
    return;
  }
  for (std::uint32_t g = active; g; g &= g - 1) {
    int l = __builtin_ctz(g);
    std::uint32_t b = std::uint32_t(bs[l]) & 31;
    std::uint32_t c = std::uint32_t(cs[l]);
    std::uint32_t clamp = c & 31, seg = (c >> 8) & 31;
    int maxl = int((std::uint32_t(l) & seg) | (clamp & ~seg)), minl = int(std::uint32_t(l) & seg);
    int j;
    bool p;
    switch (mode) {
    case 'u': j = l - int(b), p = j >= maxl; break;
    case 'd': j = l + int(b), p = j <= maxl; break;
    case 'b': j = l ^ int(b), p = j <= maxl; break;
    default: j = minl | int(b & ~seg), p = j <= maxl; break; // idx
    }
    if (!p) j = l;
    if (!(active >> j & 1))
      fault(lane(w, l, w.gpc), "shfl.sync reads lane " + std::to_string(j) + ", which is not taking part");
    out[l] = vals[j] & 0xffffffffu, ok[l] = p;
  }
  // Written after every lane has read: d may be a's register.
  for (std::uint32_t g = active; g; g &= g - 1) {
    int l = __builtin_ctz(g);
    if (dst) dst[l] = out[l];
    if (pd) pd[l] = ok[l] ? 1 : 0;
  }
}

// ldmatrix.sync.aligned.m8n8.{x1,x2,x4}[.trans].shared.b16: lanes 8i..8i+7 give the
// addresses of rows 0..7 of matrix i (16 bytes each); lane l gets row l/4, columns 2(l%4)+{0,1}.
void Interp::ldmatrix(Warp &w, const Inst &in, std::uint32_t active) {
  if (in.type != Ty::B16) fault(lane(w, __builtin_ctz(active), w.gpc), "unsupported ldmatrix type");
  const int nm = in.vec, rows = 8 * nm;
  for (int l = 0; l < rows; ++l)
    if (!(active >> l & 1))
      fault(lane(w, __builtin_ctz(active), w.gpc), "ldmatrix: lane " + std::to_string(l) + " is not taking part");
  // Row addresses: lanes 0..rows-1, in lane order.
  const Operand &mo = in.ops[1];
  std::uint64_t a[kLanes], any = 0, lo = ~0ull, hi = 0;
  int order[kLanes];
  for (int l = 0; l < rows; ++l) {
    a[l] = (mo.reg >= 0 ? w.R[std::size_t(mo.reg) * kLanes + std::size_t(l)] : 0) +
           (mo.has_sym ? mo.imm : 0) + std::uint64_t(mo.offset);
    any |= a[l], lo = std::min(lo, a[l]), hi = std::max(hi, a[l]), order[l] = l;
  }
  alignas(32) std::uint16_t m[4][8][8];
  const std::uint8_t *mem = nullptr;
  std::uint64_t shadow_at = 0; // shadow byte of address 0 of the region
  if (in.space == Space::Shared && any % 16 == 0 && hi + 16 >= hi) {
    if (hi + 16 <= L.shared.size()) mem = L.shared.data();
    else if (lo >= kDynamicShared && hi + 16 - kDynamicShared <= L.dynamic.size())
      mem = L.dynamic.data() - kDynamicShared, shadow_at = L.shared.size() - kDynamicShared;
  }
  if (mem) { // every row aligned and inside one shared region: one racecheck call, then copy
    if (racecheck_) {
      std::uint64_t b[kLanes];
      for (int l = 0; l < rows; ++l) b[l] = a[l] + shadow_at;
      warp_race_check(w, b, order, rows, 16, Access::Read);
    }
    for (int l = 0; l < rows; ++l) std::memcpy(m[l / 8][l % 8], mem + a[l], 16);
  } else {
    for (int l = 0; l < rows; ++l) { // the general path, which faults with the lane's message
      Lane t = lane(w, l, w.gpc);
      if (a[l] % 16) fault(t, "ldmatrix row address " + std::to_string(a[l]) + " is not 16-byte aligned");
      std::memcpy(m[l / 8][l % 8], addr(t, in.space, a[l], 16, Access::Read), 16);
    }
  }
  // Lane l gets row l/4, columns 2(l%4)+{0,1}: the 32-bit word l of each matrix, or of the
  // transposed matrix with .trans.
  const Operand &d = in.ops[0];
  for (int i = 0; i < nm; ++i) {
    const int reg = d.kind == Operand::Vec ? d.vec[std::size_t(i)] : d.reg;
    std::uint64_t *out = w.R + std::size_t(reg) * kLanes;
    if (in.trans) {
      for (std::uint32_t g = active; g; g &= g - 1) {
        const int l = __builtin_ctz(g), r = l / 4, c = (l % 4) * 2;
        out[l] = m[i][c][r] | std::uint64_t(m[i][c + 1][r]) << 16;
      }
    } else {
      std::uint32_t words[kLanes];
      std::memcpy(words, m[i], sizeof words);
      for (std::uint32_t g = active; g; g &= g - 1) {
        const int l = __builtin_ctz(g);
        out[l] = words[l];
      }
    }
  }
}

// D += A B for one m16n8k16 tile: each D element gets its 16 products in k order, in double
// (bf16/f16 products are exact there: 8- or 11-bit significands, so a fused multiply-add
// rounds exactly as the multiply then add does); a row of D stays in registers across k and
// the column loop vectorises. The interpreter's heaviest floating-point loop: built for
// AVX2+FMA too, chosen at run time.
template <int> void mma_accumulate_impl(const double (*A)[16], const double (*B)[8], double (*D)[8]) {
  for (int row = 0; row < 16; ++row)
    for (int kk = 0; kk < 16; ++kk)
      for (int col = 0; col < 8; ++col) D[row][col] += A[row][kk] * B[kk][col];
}
__attribute__((target("avx2,fma"))) void mma_accumulate_avx2(const double (*A)[16],
                                                             const double (*B)[8], double (*D)[8]) {
  // The loops above, written out (the compiler's were scalar), four rows at a time so that
  // each row of B is loaded once per four rows; every D element still adds its products in k
  // order.
  for (int row = 0; row < 16; row += 4) {
    __m256d d[4][2];
    for (int i = 0; i < 4; ++i) d[i][0] = _mm256_loadu_pd(D[row + i]), d[i][1] = _mm256_loadu_pd(D[row + i] + 4);
    for (int kk = 0; kk < 16; ++kk) {
      const __m256d b0 = _mm256_loadu_pd(B[kk]), b1 = _mm256_loadu_pd(B[kk] + 4);
      for (int i = 0; i < 4; ++i) {
        const __m256d a = _mm256_broadcast_sd(&A[row + i][kk]);
        d[i][0] = _mm256_fmadd_pd(a, b0, d[i][0]);
        d[i][1] = _mm256_fmadd_pd(a, b1, d[i][1]);
      }
    }
    for (int i = 0; i < 4; ++i) _mm256_storeu_pd(D[row + i], d[i][0]), _mm256_storeu_pd(D[row + i] + 4, d[i][1]);
  }
}
void mma_accumulate(const double (*A)[16], const double (*B)[8], double (*D)[8]) {
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (avx2) mma_accumulate_avx2(A, B, D);
  else mma_accumulate_impl<0>(A, B, D);
}

// The fragments of mma() with AVX2, bf16 only (exactly the scalar gather's values: a bf16 is
// the top half of an f32, widened to double; the f32 accumulators widened to double), four
// lanes' registers a step: lanes 4g..4g+3 hold a row's 8 consecutive A (or C) elements, and
// lanes t + 4g (g = 0..7) a row of B (a transpose of the low words).
__attribute__((target("avx2,fma"), always_inline)) inline void put8(double *dst, __m256 v) {
  _mm256_storeu_pd(dst, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
  _mm256_storeu_pd(dst + 4, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
}
__attribute__((target("avx2,fma"))) void
mma_gather_bf16_avx2(const std::uint64_t *const ra[4], const std::uint64_t *const rb[2],
                     const std::uint64_t *const rc[4], double (*A)[16], double (*B)[8],
                     double (*D)[8]) {
  const __m256i low_words = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
  const __m256i hi_half = _mm256_set1_epi32(int(0xffff0000u));
  for (int r = 0; r < 4; ++r)
    for (int g = 0; g < 8; ++g) { // A[g + 8(r&1)][8(r>>1) + 0..7] from lanes 4g..4g+3
      const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(ra[r] + 4 * g));
      const __m128i h = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(x, low_words));
      const __m256i f = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
      put8(A[g + 8 * (r & 1)] + 8 * (r >> 1), _mm256_castsi256_ps(f));
    }
  for (int r = 0; r < 2; ++r) {
    // B[2t + 8r + {0,1}][0..7] from lanes t, t+4, ..., t+28: y[g] holds the low words of
    // lanes 4g..4g+3 and 4g+16..4g+19 (g < 4); a 4x4 transpose in each 128-bit half gives
    // z[t], the words of lanes t + 4g for g = 0..7 in order.
    __m256i y[4], z[4];
    for (int g = 0; g < 4; ++g) {
      const __m256 a = _mm256_loadu_ps(reinterpret_cast<const float *>(rb[r] + 4 * g));
      const __m256 b = _mm256_loadu_ps(reinterpret_cast<const float *>(rb[r] + 4 * g + 16));
      y[g] = _mm256_permute4x64_epi64(_mm256_castps_si256(_mm256_shuffle_ps(a, b, 0x88)), 0xd8);
    }
    const __m256i t0 = _mm256_unpacklo_epi32(y[0], y[1]), t1 = _mm256_unpackhi_epi32(y[0], y[1]);
    const __m256i t2 = _mm256_unpacklo_epi32(y[2], y[3]), t3 = _mm256_unpackhi_epi32(y[2], y[3]);
    z[0] = _mm256_unpacklo_epi64(t0, t2), z[1] = _mm256_unpackhi_epi64(t0, t2);
    z[2] = _mm256_unpacklo_epi64(t1, t3), z[3] = _mm256_unpackhi_epi64(t1, t3);
    for (int t = 0; t < 4; ++t) {
      put8(B[2 * t + 8 * r], _mm256_castsi256_ps(_mm256_slli_epi32(z[t], 16)));
      put8(B[2 * t + 8 * r + 1], _mm256_castsi256_ps(_mm256_and_si256(z[t], hi_half)));
    }
  }
  const __m256i lo32 = _mm256_set1_epi64x(0xffffffffll);
  for (int h = 0; h < 2; ++h)
    for (int g = 0; g < 8; ++g) { // D[g + 8h][2t + {0,1}] from c's registers 2h, 2h+1 of lane 4g+t
      const __m256i e = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(rc[2 * h] + 4 * g));
      const __m256i o = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(rc[2 * h + 1] + 4 * g));
      const __m256i v = _mm256_or_si256(_mm256_and_si256(e, lo32), _mm256_slli_epi64(o, 32));
      put8(D[g + 8 * h], _mm256_castsi256_ps(v));
    }
}

// D's f32 results into d's registers (null: a sink), the scatter of mma() with AVX2.
__attribute__((target("avx2,fma"))) void mma_scatter_avx2(const double (*D)[8],
                                                          std::uint64_t *const out[4]) {
  const __m256i lo32 = _mm256_set1_epi64x(0xffffffffll);
  for (int h = 0; h < 2; ++h)
    for (int g = 0; g < 8; ++g) {
      const __m128 a = _mm256_cvtpd_ps(_mm256_loadu_pd(D[g + 8 * h]));
      const __m128 b = _mm256_cvtpd_ps(_mm256_loadu_pd(D[g + 8 * h] + 4));
      const __m256i v = _mm256_castps_si256(_mm256_set_m128(b, a)); // lane t: odd << 32 | even
      if (out[2 * h])
        _mm256_storeu_si256(reinterpret_cast<__m256i *>(out[2 * h] + 4 * g), _mm256_and_si256(v, lo32));
      if (out[2 * h + 1])
        _mm256_storeu_si256(reinterpret_cast<__m256i *>(out[2 * h + 1] + 4 * g), _mm256_srli_epi64(v, 32));
    }
}

// mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32: A row-major 16x16, B
// column-major 16x8, C/D 16x8 (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating
// point type"). Products summed in double, rounded once to f32.
void Interp::mma(Warp &w, const Inst &in, std::uint32_t active) {
  Lane lead = lane(w, __builtin_ctz(active), w.gpc);
  if (in.type != Ty::F32 || in.ctype != Ty::F32 || in.atype != in.btype ||
      (in.atype != Ty::BF16 && in.atype != Ty::F16))
    fault(lead, "unsupported mma types");
  if (active != ~0u) fault(lead, "mma.sync: lane " + std::to_string(__builtin_ctz(~active)) + " is not taking part");
  const bool bf = in.atype == Ty::BF16;
  const Operand &a = in.ops[1], &b = in.ops[2], &c = in.ops[3];
  auto slot = [&](int s) { return w.R + std::size_t(s) * kLanes; };
  const std::uint64_t *ra[4], *rb[2], *rc[4];
  for (int i = 0; i < 4; ++i) ra[i] = slot(a.vec[std::size_t(i)]);
  for (int i = 0; i < 2; ++i) rb[i] = slot(b.vec[std::size_t(i)]);
  for (int i = 0; i < 4; ++i) rc[i] = slot(c.kind == Operand::Vec ? c.vec[std::size_t(i)] : c.src);
  // Lane l = 4g + t holds A[g + 8(r&1)][2t + 8(r>>1) + {0,1}] in a's register r, B[2t + 8r +
  // {0,1}][g] in b's register r, and C/D[g + 8(i>>1)][2t + (i&1)] in c's/d's register i.
  double A[16][16], B[16][8], D[16][8];
  std::uint64_t *out[4];
  for (int i = 0; i < 4; ++i) {
    const int dr = in.ops[0].vec[std::size_t(i)];
    out[i] = dr < 0 ? nullptr : slot(dr);
  }
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (avx2 && bf) {
    mma_gather_bf16_avx2(ra, rb, rc, A, B, D);
    mma_accumulate(A, B, D);
    mma_scatter_avx2(D, out);
    return;
  }
  auto gather = [&](auto cv) { // cv: a 16-bit float's bits -> double, chosen once
    for (int l = 0; l < kLanes; ++l) {
      const int g = l >> 2, t = l & 3;
      for (int r = 0; r < 4; ++r) {
        std::uint64_t x = ra[r][l];
        double *row = A[g + 8 * (r & 1)] + 2 * t + 8 * (r >> 1);
        row[0] = cv(x), row[1] = cv(x >> 16);
      }
      for (int r = 0; r < 2; ++r) {
        std::uint64_t x = rb[r][l];
        B[2 * t + 8 * r][g] = cv(x), B[2 * t + 8 * r + 1][g] = cv(x >> 16);
      }
      for (int i = 0; i < 4; ++i) D[g + 8 * (i >> 1)][2 * t + (i & 1)] = f32(rc[i][l]);
    }
  };
  if (bf) gather([](std::uint64_t h) { return double(bf16_to_f32(std::uint16_t(h))); });
  else gather([](std::uint64_t h) { return double(f16_to_f32(std::uint16_t(h))); });
  mma_accumulate(A, B, D);
  if (avx2) return mma_scatter_avx2(D, out);
  for (int i = 0; i < 4; ++i) {
    if (!out[i]) continue;
    for (int l = 0; l < kLanes; ++l)
      out[i][l] = bits32(float(D[(l >> 2) + 8 * (i >> 1)][2 * (l & 3) + (i & 1)]));
  }
}

// wgmma.fence / mma_async / commit_group / wait_group for a whole warp (queue above).
void Interp::wgmma(Warp &w, const Inst &in) {
  Lane lead = lane(w, 0, w.gpc);
  if (wgmma_.empty()) wgmma_.resize(warps_.size()); // a kernel with wgmma fences but no mma
  WgmmaQueue &q = wgmma_[std::size_t(w.index)];
  switch (in.op) {
  case Op::WgmmaFence: q.fenced = true; return;
  case Op::WgmmaCommit: ++q.committed; return;
  case Op::WgmmaWait: {
    const std::uint32_t keep = std::uint32_t(in.ops[0].imm);
    const std::uint32_t below = q.committed > keep ? q.committed - keep : 0;
    std::size_t done = 0;
    while (done < q.ops.size() && q.ops[done].group < below) wgmma_run(w, q.ops[done++]);
    q.ops.erase(q.ops.begin(), q.ops.begin() + std::ptrdiff_t(done));
    q.fenced = false;
    return;
  }
  default: break;
  }
  if (!q.fenced) fault(lead, "wgmma.mma_async without a wgmma.fence since the last wait_group");
  if (nthreads_ % 128) fault(lead, "wgmma.mma_async in a block that is not whole warpgroups");
  WgmmaOp op;
  const auto slot = [&](int s) { return w.R + std::size_t(s) * kLanes; };
  op.desc_a = slot(in.ops[1].src)[0], op.desc_b = slot(in.ops[2].src)[0];
  op.accumulate = slot(in.ops[3].src)[0] & 1;
  for (int l = 1; l < kLanes; ++l)
    if (slot(in.ops[1].src)[l] != op.desc_a || slot(in.ops[2].src)[l] != op.desc_b)
      fault(lane(w, l, w.gpc), "wgmma.mma_async descriptors differ between lanes of a warp");
  op.n = in.vec, op.pc = w.gpc, op.group = q.committed;
  op.d = in.ops[0].vec;
  const std::size_t regs = op.d.size();
  op.c.resize(regs * kLanes);
  op.chained.assign(regs, 0);
  for (std::size_t i = 0; i < regs; ++i) {
    const int r = op.d[i];
    if (r < 0) fault(lead, "wgmma accumulator sink");
    for (const WgmmaOp &p : q.ops)
      if (std::find(p.d.begin(), p.d.end(), r) != p.d.end()) op.chained[i] = 1;
    if (!op.chained[i]) std::memcpy(&op.c[i * kLanes], slot(r), kLanes * sizeof(std::uint64_t));
    std::fill(slot(r), slot(r) + kLanes, 0xffffffffull); // NaN until the wait
  }
  q.ops.push_back(std::move(op));
}

// One wgmma.mma_async m64nNk16 f32 += bf16 * bf16 of warp w, both operands K-major in shared
// memory without swizzle (descriptor: start address bits 0-13, leading-dimension byte offset
// 16-29, stride-dimension byte offset 32-45, each in 16-byte units; base offset 49-51; swizzle
// mode 62-63). An operand is made of core matrices of 8 rows x 16 bytes (8 x 8 bf16, rows 16
// bytes apart); element (row, k) lies at start + (row / 8) * SBO + (k / 8) * LBO +
// (row % 8) * 16 + (k % 8) * 2. Warp w % 4 of the warpgroup owns rows 16 (w % 4) .. + 15 of
// D: accumulator register i of lane l is D[16 (w % 4) + l / 4 + 8 (i / 2 % 2)]
// [8 (i / 4) + 2 (l % 4) + i % 2]. Products summed in k order in double, rounded once.
void Interp::wgmma_run(Warp &w, const WgmmaOp &op) {
  Lane t = lane(w, 0, op.pc);
  auto decode = [&](std::uint64_t d, const char *which, std::uint64_t *start, std::uint64_t *lbo,
                    std::uint64_t *sbo) {
    if (d >> 62) fault(t, std::string("wgmma descriptor of ") + which + ": swizzled layouts are not supported");
    if ((d >> 49) & 7) fault(t, std::string("wgmma descriptor of ") + which + ": nonzero base offset");
    *start = (d & 0x3fff) << 4, *lbo = ((d >> 16) & 0x3fff) << 4, *sbo = ((d >> 32) & 0x3fff) << 4;
  };
  std::uint64_t sa, la, ta, sb, lb, tb;
  decode(op.desc_a, "A", &sa, &la, &ta);
  decode(op.desc_b, "B", &sb, &lb, &tb);
  // The 16 x 16 bytes of a core-matrix row pair: row `row`, k 0-7 and 8-15.
  auto row16 = [&](std::uint64_t start, std::uint64_t lbo, std::uint64_t sbo, int row, double *out) {
    for (int half = 0; half < 2; ++half) {
      const std::uint64_t a = start + std::uint64_t(row / 8) * sbo + std::uint64_t(half) * lbo +
                              std::uint64_t(row % 8) * 16;
      std::uint16_t h[8];
      std::memcpy(h, addr(t, Space::Shared, a, 16, Access::Read), 16);
      for (int k = 0; k < 8; ++k) out[half * 8 + k] = double(bf16_to_f32(h[k]));
    }
  };
  const int m0 = 16 * (w.index % 4), n = op.n;
  double A[16][16];
  std::vector<double> B(std::size_t(n) * 16), D(std::size_t(16 * n));
  for (int r = 0; r < 16; ++r) row16(sa, la, ta, m0 + r, A[r]);
  for (int c = 0; c < n; ++c) row16(sb, lb, tb, c, &B[std::size_t(c) * 16]);
  const auto row_of = [](int l, std::size_t i) { return l / 4 + 8 * int(i / 2 % 2); };
  const auto col_of = [](int l, std::size_t i) { return 8 * int(i / 4) + 2 * (l % 4) + int(i % 2); };
  for (std::size_t i = 0; i < op.d.size(); ++i) {
    const std::uint64_t *in = op.chained[i] ? w.R + std::size_t(op.d[i]) * kLanes : &op.c[i * kLanes];
    for (int l = 0; l < kLanes; ++l)
      D[std::size_t(row_of(l, i) * n + col_of(l, i))] = op.accumulate ? double(f32(in[l])) : 0.0;
  }
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < n; ++c) {
      double acc = D[std::size_t(r * n + c)];
      for (int k = 0; k < 16; ++k) acc += A[r][k] * B[std::size_t(c) * 16 + std::size_t(k)];
      D[std::size_t(r * n + c)] = acc;
    }
  for (std::size_t i = 0; i < op.d.size(); ++i) {
    std::uint64_t *out = w.R + std::size_t(op.d[i]) * kLanes;
    for (int l = 0; l < kLanes; ++l) out[l] = bits32(float(D[std::size_t(row_of(l, i) * n + col_of(l, i))]));
  }
}

} // namespace

void run_launch(const Kernel &k, const LaunchConfig &cfg, LaunchStats *stats) {
  Launch L{&k, cfg.id, {}, {}, {0, 0, 0}, cfg.params, {}, {}};
  std::copy(cfg.grid, cfg.grid + 3, L.grid);
  std::copy(cfg.block, cfg.block + 3, L.block);
  Interp interp(L);
  interp.count_reads_ = cfg.count_reads;
  for (unsigned z = 0; z < L.grid[2]; ++z)
    for (unsigned y = 0; y < L.grid[1]; ++y)
      for (unsigned x = 0; x < L.grid[0]; ++x) {
        L.ctaid[0] = x, L.ctaid[1] = y, L.ctaid[2] = z;
        L.shared.assign(k.shared_bytes, 0xff); // garbage on a GPU: NaN here, so it shows
        L.dynamic.assign(cfg.dynamic_shared, 0xff);
        interp.run_block();
      }
  if (stats) {
    stats->reads = std::move(interp.reads_);
    for (const auto &[al, bits] : interp.sectors_) {
      std::uint64_t n = 0;
      for (std::uint64_t w : bits) n += std::uint64_t(__builtin_popcountll(w));
      stats->distinct[al] = n * Interp::kSector;
    }
  }
}

} // namespace ptxemu
