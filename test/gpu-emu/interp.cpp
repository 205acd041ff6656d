// interp.cpp — the PTX interpreter (interp.h).
//
// Model: each thread is interpreted on its own until it reaches bar.sync, a warp-collective
// instruction (shfl.sync, mma.sync, ldmatrix, vote, bar.warp.sync) or exit. Collectives run
// when every non-exited lane their membermask names has arrived at the same instruction;
// barriers release when every non-exited thread of the block waits at one. Anything else is a
// deadlock and fails the launch. $PTXEMU_ORDER=reverse runs a block's threads last-to-first:
// a result that changes with the order reveals a missing barrier.
#include "interp.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace ptxemu {
namespace {

// Operand accessors run once or more per interpreted instruction: inlined into step().
#define MOEC_HOT __attribute__((always_inline)) inline

enum class State : std::uint8_t { Run, Barrier, Collective, Done };

struct Thread {
  int pc = 0;
  State state = State::Run;
  std::uint32_t tid[3] = {0, 0, 0};
  int lane = 0, warp = 0;
  bool carry = false;
  std::uint32_t bar_id = 0, bar_count = 0; // the barrier waited at; count 0 = the whole CTA
  std::vector<std::uint64_t> r;
  std::vector<std::uint8_t> local;
};

struct Launch {
  const Kernel *k;
  std::uint32_t id; // launch number (global racecheck generations)
  std::uint32_t grid[3], block[3], ctaid[3];
  const std::vector<std::uint8_t> *params;
  std::vector<std::uint8_t> shared;  // static shared memory of the running block
  std::vector<std::uint8_t> dynamic; // its dynamic shared memory (launch's sharedMemBytes)
};

class Interp {
public:
  explicit Interp(Launch &l) : L(l), K(*l.k) {}

  void run_block() {
    std::uint32_t n = L.block[0] * L.block[1] * L.block[2];
    threads_.resize(n); // reused from block to block (assign() below keeps the capacity)
    if (racecheck_enabled()) shadow_.reset(L.shared.size() + L.dynamic.size());
    for (std::uint32_t i = 0; i < n; ++i) {
      Thread &t = threads_[i];
      t.pc = 0;
      t.state = State::Run;
      t.carry = false;
      t.tid[0] = i % L.block[0];
      t.tid[1] = (i / L.block[0]) % L.block[1];
      t.tid[2] = i / (L.block[0] * L.block[1]);
      t.lane = int(i % 32);
      t.warp = int(i / 32);
      t.r.assign(K.reg_bits.size(), 0);
      t.local.assign(K.local_bytes, 0);
    }
    static const bool reverse = [] {
      const char *o = std::getenv("PTXEMU_ORDER");
      return o && std::string(o) == "reverse";
    }();
    for (;;) {
      for (std::uint32_t j = 0; j < n; ++j) {
        Thread &t = threads_[reverse ? n - 1 - j : j];
        if (t.state == State::Run) step(t);
      }
      if (resolve_collectives()) continue;
      // Every live thread now waits at a barrier, or none is left.
      // Every live thread now waits at a barrier, or none is left. A barrier releases its
      // waiters when its count (default: every live thread of the CTA) has arrived.
      std::uint32_t live = 0, waiting[16] = {}, want[16] = {};
      for (auto &t : threads_) {
        if (t.state != State::Done) ++live;
        if (t.state == State::Barrier) ++waiting[t.bar_id], want[t.bar_id] = t.bar_count;
      }
      if (live == 0) return;
      bool released = false;
      for (std::uint32_t id = 0; id < 16; ++id) {
        if (!waiting[id] || waiting[id] < (want[id] ? want[id] : live)) continue;
        for (auto &t : threads_)
          if (t.state == State::Barrier && t.bar_id == id) t.state = State::Run, ++t.pc;
        released = true;
        shadow_.barrier(); // accesses before and after this barrier are ordered
      }
      if (!released) deadlock();
    }
  }

private:
  Launch &L;
  const Kernel &K;
  std::vector<Thread> threads_;

  [[noreturn]] void fault(const Thread &t, const std::string &msg) {
    const Inst &in = K.code[std::size_t(t.pc)];
    char where[160];
    std::snprintf(where, sizeof where, "block (%u,%u,%u) thread (%u,%u,%u)", L.ctaid[0],
                  L.ctaid[1], L.ctaid[2], t.tid[0], t.tid[1], t.tid[2]);
    fail("kernel " + K.name + ", " + where + ", PTX line " + std::to_string(in.line) + " `" +
         in.text + "`: " + msg);
  }

  [[noreturn]] void deadlock() {
    for (auto &t : threads_)
      if (t.state == State::Collective || t.state == State::Barrier) {
        std::string others;
        for (auto &u : threads_)
          if (u.state != State::Done && u.pc != t.pc) {
            others = "; thread (" + std::to_string(u.tid[0]) + "," + std::to_string(u.tid[1]) +
                     "," + std::to_string(u.tid[2]) + ") waits at PTX line " +
                     std::to_string(K.code[std::size_t(u.pc)].line);
            break;
          }
        fault(t, "deadlock: not every thread that must arrive here does" + others);
      }
    fail("kernel " + K.name + ": deadlock");
  }

  // ---- operand access ----
  std::uint64_t special(const Thread &t, Special s) const {
    switch (s) {
    case Special::TidX: return t.tid[0];
    case Special::TidY: return t.tid[1];
    case Special::TidZ: return t.tid[2];
    case Special::NtidX: return L.block[0];
    case Special::NtidY: return L.block[1];
    case Special::NtidZ: return L.block[2];
    case Special::CtaidX: return L.ctaid[0];
    case Special::CtaidY: return L.ctaid[1];
    case Special::CtaidZ: return L.ctaid[2];
    case Special::NctaidX: return L.grid[0];
    case Special::NctaidY: return L.grid[1];
    case Special::NctaidZ: return L.grid[2];
    case Special::Laneid: return std::uint64_t(t.lane);
    case Special::Warpid: return std::uint64_t(t.warp);
    case Special::WarpSz: return 32;
    }
    return 0;
  }

  // The raw bits of a source operand, as `ty` (an f32 immediate stays f32 bits; an f64
  // immediate used as f32 is rounded, as ptxas does).
  MOEC_HOT std::uint64_t get(const Thread &t, const Operand &o, Ty ty) const {
    switch (o.kind) {
    case Operand::Reg: return t.r[std::size_t(o.reg)];
    case Operand::Imm:
      if (o.imm_f64 && ty == Ty::F32) return bits32(float(f64(o.imm)));
      if (o.imm_f32 && ty == Ty::F64) return bits64(double(f32(o.imm)));
      return o.imm;
    case Operand::Spec: return special(t, o.spec);
    default: return 0;
    }
  }
  MOEC_HOT std::uint64_t u(const Thread &t, const Operand &o, Ty ty) const { return mask_bits(get(t, o, ty), bits_of(ty)); }
  MOEC_HOT std::int64_t s(const Thread &t, const Operand &o, Ty ty) const { return sext(get(t, o, ty), bits_of(ty)); }
  MOEC_HOT float f(const Thread &t, const Operand &o, bool flush) const {
    float v = f32(get(t, o, Ty::F32));
    return flush ? ftz(v) : v;
  }
  double d(const Thread &t, const Operand &o) const { return f64(get(t, o, Ty::F64)); }

  MOEC_HOT void set(Thread &t, const Operand &o, std::uint64_t v, Ty ty) {
    if (o.kind == Operand::Sink) return;
    if (o.kind != Operand::Reg) fault(t, "destination is not a register");
    t.r[std::size_t(o.reg)] = mask_bits(v, std::max(bits_of(ty), 1));
  }
  void setf(Thread &t, const Operand &o, float v, bool flush) { set(t, o, bits32(flush ? ftz(v) : v), Ty::F32); }

  MOEC_HOT bool pred(const Thread &t, const Operand &o) const {
    if (o.kind == Operand::Imm) return o.imm != 0;
    return t.r[std::size_t(o.reg)] & 1;
  }

  // ---- memory ----
  // The host address of an n-byte access at `a` in space `sp`; faults, as a GPU would, on an
  // access outside its buffer or one not aligned to its size (vector accesses included).
  std::uint8_t *addr(Thread &t, Space sp, std::uint64_t a, std::size_t n, Access acc) {
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
      if (acc != Access::Atomic && racecheck_enabled())
        global_race_check(t, *cache_alloc_, a - cache_lo_, n, acc);
      if (count_reads_ && acc == Access::Read) reads_[cache_alloc_] += n;
      return reinterpret_cast<std::uint8_t *>(a);
    }
    }
  }
  std::uint64_t cache_lo_ = 1, cache_hi_ = 0; // the allocation of the last global access
  Allocation *cache_alloc_ = nullptr;

public:
  // $PTXEMU_TRACE: bytes the launch loaded from each allocation (a GPU's global-memory
  // traffic before caches: a weight read twice shows up twice).
  bool count_reads_ = false;
  std::unordered_map<const Allocation *, std::uint64_t> reads_;

private:

  // Racecheck (checks.h): faults naming the other thread.
  SharedShadow shadow_;
  void global_race_check(Thread &t, Allocation &al, std::uint64_t off, std::size_t n, Access acc) {
    const std::uint32_t per_block = std::uint32_t(threads_.size());
    const std::uint32_t block = (L.ctaid[2] * L.grid[1] + L.ctaid[1]) * L.grid[0] + L.ctaid[0];
    const std::uint32_t me = block * per_block + std::uint32_t(&t - threads_.data()) + 1;
    std::uint32_t w = global_race(al, off, n, acc, {L.id, me, block, per_block, shadow_.epoch()});
    if (!w) return;
    std::uint32_t wb = (w - 1) / per_block, wt = (w - 1) % per_block;
    fault(t, std::string("global-memory race: ") + (acc == Access::Read ? "reads" : "writes") +
                 " a byte that thread " + std::to_string(wt) + " of block " + std::to_string(wb) +
                 " (linear indices) wrote in this launch with no barrier between");
  }
  void race_check(Thread &t, std::uint64_t b0, std::size_t n, Access acc) {
    if (!racecheck_enabled()) return;
    SharedRace r;
    if (shadow_.access(b0, n, acc, std::uint32_t(&t - threads_.data()) + 1, &r)) return;
    auto who = [&](std::uint32_t id) {
      if (id == kManyReaders) return std::string("other threads");
      const Thread &o = threads_[id - 1];
      return "thread (" + std::to_string(o.tid[0]) + "," + std::to_string(o.tid[1]) + "," +
             std::to_string(o.tid[2]) + ")";
    };
    fault(t, std::string("shared-memory race: ") + (acc == Access::Read ? "reads" : "writes") +
                 " byte " + std::to_string(r.byte) + " that " + who(r.other) +
                 (r.other_wrote ? " wrote" : " read") + " since the last barrier");
  }

  std::uint64_t mem_addr(const Thread &t, const Operand &o) const {
    std::uint64_t base = o.reg >= 0 ? t.r[std::size_t(o.reg)] : 0;
    if (o.has_sym) base += o.imm;
    return base + std::uint64_t(o.offset);
  }
  Space mem_space(const Inst &in, const Operand &o) const {
    if (in.space != Space::Generic) return in.space;
    if (o.has_sym && o.reg < 0) return o.sym_space == Space::Param ? Space::Param : o.sym_space;
    return Space::Generic;
  }

  static std::uint64_t load_bits(const std::uint8_t *p, int bytes) {
    std::uint64_t v = 0;
    std::memcpy(&v, p, std::size_t(bytes));
    return v;
  }

  // Converts a register's bits of type `from` into `to` (cvt).
  std::uint64_t convert(const Thread &t, const Inst &in, std::uint64_t x) {
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
  template <class F> std::uint64_t float_op(Thread &t, const Inst &in, F fn) {
    Ty ty = in.type;
    auto arg = [&](int i, int half) -> double {
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
  void step(Thread &t) {
    const std::vector<Inst> &code = K.code;
    for (;;) {
      const Inst &in = code[std::size_t(t.pc)];
      if (in.guard >= 0) {
        bool g = t.r[std::size_t(in.guard)] & 1;
        if (g == in.guard_neg) { ++t.pc; continue; }
      }
      const std::vector<Operand> &o = in.ops;
      Ty ty = in.type;
      int bits = bits_of(ty);
      switch (in.op) {
      case Op::Bra:
        t.pc = in.target;
        continue;
      case Op::Ret: case Op::Exit:
        t.state = State::Done;
        return;
      case Op::Bar:
        t.bar_id = o.empty() ? 0 : std::uint32_t(u(t, o[0], Ty::U32));
        t.bar_count = o.size() > 1 ? std::uint32_t(u(t, o[1], Ty::U32)) : 0;
        if (t.bar_id > 15) fault(t, "barrier number above 15");
        t.state = State::Barrier;
        return;
      case Op::BarWarp: case Op::Shfl: case Op::Mma: case Op::Ldmatrix: case Op::Vote:
        t.state = State::Collective;
        return;
      case Op::Nop: case Op::Membar: break;
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
      case Op::Cvta: {
        std::uint64_t a = get(t, o[1], Ty::U64);
        if (in.space == Space::Shared) a = in.to ? a - kSharedGeneric : a + kSharedGeneric;
        else if (in.space == Space::Local) a = in.to ? a - kLocalGeneric : a + kLocalGeneric;
        set(t, o[0], a, ty);
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
        set(t, o[0], convert(t, in, get(t, o[1], in.stype)), in.type);
        break;
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
              ++t.pc;
              continue;
            }
            r = float_op(t, in, [](double a, double b, double, int w) { return w == 32 ? double(float(a) / float(b)) : a / b; });
            break;
          case Op::Min: case Op::Max: {
            bool mx = in.op == Op::Max;
            r = float_op(t, in, [mx, nanprop](double a, double b, double, int) {
              if (std::isnan(a) || std::isnan(b)) {
                if (nanprop || (std::isnan(a) && std::isnan(b))) return std::nan("");
                return std::isnan(a) ? b : a;
              }
              if (a == 0 && b == 0) // -0 < +0 for min/max
                return mx ? (std::signbit(a) ? b : a) : (std::signbit(a) ? a : b);
              return mx ? std::max(a, b) : std::min(a, b);
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
        if (is_float(ty)) goto fma;
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
      case Op::Fma:
      fma: {
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
      case Op::Selp:
        set(t, o[0], pred(t, o[3]) ? get(t, o[1], ty) : get(t, o[2], ty), ty);
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
        if (!in.sub.empty() && in.sub != "b32") fault(t, "unsupported prmt mode");
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
      case Op::Atom: case Op::Red: {
        const Operand &m = o[in.op == Op::Atom ? 1 : 0];
        std::uint8_t *p = addr(t, mem_space(in, m), mem_addr(t, m), std::size_t(bits / 8), Access::Atomic);
        std::uint64_t old = load_bits(p, bits / 8), v = get(t, o[in.op == Op::Atom ? 2 : 1], ty), r;
        const std::string &a = in.sub;
        if (a == "add") {
          if (ty == Ty::F32) r = bits32(f32(old) + f32(v));
          else if (ty == Ty::F64) r = bits64(f64(old) + f64(v));
          else r = old + v;
        } else if (a == "exch") r = v;
        else if (a == "cas") r = old == mask_bits(v, bits) ? get(t, o[3], ty) : old;
        else if (a == "max") r = is_signed(ty) ? std::uint64_t(std::max(sext(old, bits), sext(v, bits))) : std::max(old, mask_bits(v, bits));
        else if (a == "min") r = is_signed(ty) ? std::uint64_t(std::min(sext(old, bits), sext(v, bits))) : std::min(old, mask_bits(v, bits));
        else if (a == "and") r = old & v;
        else if (a == "or") r = old | v;
        else if (a == "inc") r = old >= mask_bits(v, bits) ? 0 : old + 1;
        else fault(t, "unsupported atomic ." + a);
        std::memcpy(p, &r, std::size_t(bits / 8));
        if (in.op == Op::Atom) set(t, o[0], old, ty);
        break;
      }
      case Op::Activemask: {
        // Lanes of this warp that have not exited (all converged in this emulation's view).
        std::uint64_t m = 0;
        for (auto &u2 : threads_) if (u2.warp == t.warp && u2.state != State::Done) m |= 1ull << u2.lane;
        set(t, o[0], m, Ty::B32);
        break;
      }
      }
      ++t.pc;
    }
  }

  // The lanes of a warp collective: its threads, indexed by lane.
  bool resolve_collectives() {
    bool any = false;
    std::size_t nwarps = (threads_.size() + 31) / 32;
    for (std::size_t w = 0; w < nwarps; ++w) {
      Thread *lanes[32] = {};
      int first = -1;
      for (std::size_t i = w * 32; i < std::min(threads_.size(), w * 32 + 32); ++i) {
        Thread &t = threads_[i];
        lanes[t.lane] = &t;
        if (t.state == State::Collective && first < 0) first = int(i);
      }
      if (first < 0) continue;
      Thread &lead = threads_[std::size_t(first)];
      const Inst &in = K.code[std::size_t(lead.pc)];
      std::uint32_t member = 0xffffffffu;
      if (in.op == Op::Shfl) member = std::uint32_t(get(lead, in.ops.back(), Ty::U32));
      else if (in.op == Op::BarWarp || in.op == Op::Vote) member = std::uint32_t(get(lead, in.op == Op::BarWarp ? in.ops[0] : in.ops.back(), Ty::U32));
      // Everyone named must be here, at this instruction; a lane still running is not ready yet.
      bool ready = true;
      for (int l = 0; l < 32; ++l) {
        if (!(member >> l & 1) || !lanes[l]) continue;
        Thread &t = *lanes[l];
        if (t.state == State::Run) { ready = false; break; }
        if (t.state == State::Done) {
          if (in.op == Op::BarWarp) continue;
          fault(lead, "warp-collective instruction: lane " + std::to_string(l) +
                          " named in its member mask has exited");
        }
        if (t.state == State::Barrier)
          { ready = false; continue; } // may be resolved after the barrier (then a deadlock shows)
        if (t.pc != lead.pc)
          fault(lead, "warp-collective instruction reached by lanes at different instructions (lane " +
                          std::to_string(l) + " is at PTX line " +
                          std::to_string(K.code[std::size_t(t.pc)].line) + ")");
      }
      if (!ready) continue;
      collective(in, lanes, member);
      for (int l = 0; l < 32; ++l)
        if ((member >> l & 1) && lanes[l] && lanes[l]->state == State::Collective)
          lanes[l]->state = State::Run, ++lanes[l]->pc;
      any = true;
    }
    return any;
  }

  void collective(const Inst &in, Thread **lanes, std::uint32_t member) {
    auto active = [&](int l) { return (member >> l & 1) && lanes[l] && lanes[l]->state == State::Collective; };
    switch (in.op) {
    case Op::BarWarp: return;
    case Op::Vote: {
      // vote.sync.{all,any,uni,ballot}: d, pred, membermask
      std::uint32_t ballot = 0;
      for (int l = 0; l < 32; ++l)
        if (active(l) && pred(*lanes[l], in.ops[1])) ballot |= 1u << l;
      for (int l = 0; l < 32; ++l) {
        if (!active(l)) continue;
        std::uint64_t r;
        if (in.sub == "ballot") r = ballot;
        else if (in.sub == "all") r = (ballot & member) == (member & active_mask(lanes, member));
        else if (in.sub == "any") r = ballot != 0;
        else if (in.sub == "uni") r = ballot == 0 || (ballot == (member & active_mask(lanes, member)));
        else fault(*lanes[l], "unsupported vote mode");
        set(*lanes[l], in.ops[0], r, in.sub == "ballot" ? Ty::B32 : Ty::Pred);
      }
      return;
    }
    case Op::Shfl: {
      std::uint64_t vals[32];
      for (int l = 0; l < 32; ++l) vals[l] = active(l) ? get(*lanes[l], in.ops[1], Ty::B32) : 0;
      for (int l = 0; l < 32; ++l) {
        if (!active(l)) continue;
        Thread &t = *lanes[l];
        std::uint32_t b = std::uint32_t(get(t, in.ops[2], Ty::U32)) & 31;
        std::uint32_t c = std::uint32_t(get(t, in.ops[3], Ty::U32));
        std::uint32_t clamp = c & 31, seg = (c >> 8) & 31;
        int maxl = int((std::uint32_t(l) & seg) | (clamp & ~seg)), minl = int(std::uint32_t(l) & seg);
        int j;
        bool p;
        switch (in.sub[0]) { // validated at parse time
        case 'u': j = l - int(b), p = j >= maxl; break;
        case 'd': j = l + int(b), p = j <= maxl; break;
        case 'b': j = l ^ int(b), p = j <= maxl; break;
        default: j = minl | int(b & ~seg), p = j <= maxl; break; // idx
        }
        if (!p) j = l;
        if (!active(j)) fault(t, "shfl.sync reads lane " + std::to_string(j) + ", which is not taking part");
        set(t, in.ops[0], vals[j], Ty::B32);
        if (in.ops[0].reg2 >= 0) t.r[std::size_t(in.ops[0].reg2)] = p ? 1 : 0;
      }
      return;
    }
    case Op::Ldmatrix: {
      if (in.type != Ty::B16) fault(*lanes[0], "unsupported ldmatrix type");
      int nm = in.vec;
      // Lanes 8i..8i+7 give the addresses of the rows 0..7 of matrix i (16 bytes each).
      std::uint16_t m[4][8][8];
      for (int i = 0; i < nm; ++i)
        for (int row = 0; row < 8; ++row) {
          int l = 8 * i + row;
          if (!active(l)) fault(*lanes[0], "ldmatrix: lane " + std::to_string(l) + " is not taking part");
          Thread &t = *lanes[l];
          std::uint64_t a = mem_addr(t, in.ops[1]);
          Space sp = in.space == Space::Generic ? Space::Generic : in.space;
          if (a % 16) fault(t, "ldmatrix row address " + std::to_string(a) + " is not 16-byte aligned");
          std::memcpy(m[i][row], addr(t, sp, a, 16, Access::Read), 16);
        }
      for (int l = 0; l < 32; ++l) {
        if (!active(l)) continue;
        Thread &t = *lanes[l];
        const Operand &d = in.ops[0];
        for (int i = 0; i < nm; ++i) {
          int r = l / 4, c = (l % 4) * 2;
          std::uint32_t lo, hi;
          if (in.trans) lo = m[i][c][r], hi = m[i][c + 1][r];
          else lo = m[i][r][c], hi = m[i][r][c + 1];
          int reg = d.kind == Operand::Vec ? d.vec[std::size_t(i)] : d.reg;
          t.r[std::size_t(reg)] = lo | (std::uint64_t(hi) << 16);
        }
      }
      return;
    }
    case Op::Mma: {
      // m16n8k16, A row-major 16x16, B column-major 16x8, C/D 16x8 (PTX ISA, "Matrix Fragments
      // for mma.m16n8k16 with floating point type").
      if (in.type != Ty::F32 || in.ctype != Ty::F32 || in.atype != in.btype ||
          (in.atype != Ty::BF16 && in.atype != Ty::F16))
        fault(*lanes[0], "unsupported mma types");
      Ty et = in.atype;
      float A[16][16], B[16][8], C[16][8];
      for (int l = 0; l < 32; ++l) {
        if (!active(l)) fault(*lanes[0], "mma.sync: lane " + std::to_string(l) + " is not taking part");
        Thread &t = *lanes[l];
        int g = l >> 2, tg = l & 3;
        const Operand &a = in.ops[1], &b = in.ops[2], &c = in.ops[3];
        for (int i = 0; i < 8; ++i) {
          std::uint64_t reg = t.r[std::size_t(a.vec[std::size_t(i / 2)])];
          std::uint16_t h = std::uint16_t(reg >> (16 * (i & 1)));
          int row = g + ((i & 2) ? 8 : 0), col = tg * 2 + (i & 1) + (i >= 4 ? 8 : 0);
          A[row][col] = half_val(h, et);
        }
        for (int i = 0; i < 4; ++i) {
          std::uint64_t reg = t.r[std::size_t(b.vec[std::size_t(i / 2)])];
          std::uint16_t h = std::uint16_t(reg >> (16 * (i & 1)));
          int row = tg * 2 + (i & 1) + (i >= 2 ? 8 : 0), col = g;
          B[row][col] = half_val(h, et);
        }
        for (int i = 0; i < 4; ++i) {
          int row = g + (i >= 2 ? 8 : 0), col = tg * 2 + (i & 1);
          C[row][col] = f32(c.kind == Operand::Vec ? t.r[std::size_t(c.vec[std::size_t(i)])] : get(t, c, Ty::F32));
        }
      }
      float D[16][8];
      for (int i = 0; i < 16; ++i)
        for (int j = 0; j < 8; ++j) {
          double acc = C[i][j];
          for (int kk = 0; kk < 16; ++kk) acc += double(A[i][kk]) * double(B[kk][j]);
          D[i][j] = float(acc);
        }
      for (int l = 0; l < 32; ++l) {
        Thread &t = *lanes[l];
        int g = l >> 2, tg = l & 3;
        for (int i = 0; i < 4; ++i) {
          int row = g + (i >= 2 ? 8 : 0), col = tg * 2 + (i & 1);
          int reg = in.ops[0].vec[std::size_t(i)];
          if (reg >= 0) t.r[std::size_t(reg)] = bits32(D[row][col]);
        }
      }
      return;
    }
    default: return;
    }
  }

  static std::uint32_t active_mask(Thread **lanes, std::uint32_t member) {
    std::uint32_t m = 0;
    for (int l = 0; l < 32; ++l)
      if ((member >> l & 1) && lanes[l] && lanes[l]->state == State::Collective) m |= 1u << l;
    return m;
  }
};
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
  if (stats) stats->reads = std::move(interp.reads_);
}

} // namespace ptxemu
