// ptxemu.cpp — TEST DOUBLE for libcuda.so.1 that runs the PTX it is given: a PTX interpreter
// behind the CUDA driver API. The runtime loads it through $MOEC_CUDA_DRIVER, so an inference
// binary compiled with --target nvptx runs its real kernels on a machine without a GPU (slowly:
// one interpreted instruction at a time), and its logits can be checked against the goldens.
//
// The semantics come from NVIDIA's PTX ISA manual, written here independently of our kernels'
// code generator; test/gpu-emu/ptxemu_test.cpp checks them instruction by instruction.
//
// Model: each thread is interpreted on its own until it reaches bar.sync, a warp-collective
// instruction (shfl.sync, mma.sync, ldmatrix, vote, bar.warp.sync) or exit. Collectives run
// when every non-exited lane their membermask names has arrived at the same instruction;
// barriers release when every non-exited thread of the block waits at one. Anything else is a
// deadlock and fails the launch. Beyond running the code it checks what a GPU would not:
//  - every global access lies inside one cuMemAlloc'd buffer (or a module global),
//  - every shared/local access lies inside the block's / thread's window, and is aligned,
//  - racecheck: no shared or global byte written by one thread is read or written by another
//    before a barrier orders them (never, for threads of different blocks); atomics are
//    exempt ($PTXEMU_RACECHECK=0 turns it off),
//  - shared memory starts as 0xFF bytes (NaN as f32/bf16), so a read before any write shows,
//  - $PTXEMU_ORDER=reverse runs a block's threads last-to-first: a result that changes with
//    the order reveals a missing barrier.
// Device memory is host memory; launches, copies and memsets are synchronous.
#include "moec/cuda.h"

#include <algorithm>
#include <cfenv>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

using namespace moec::cuda;

namespace ptxemu {
namespace {

struct Fault : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void fail(const std::string &msg) { throw Fault(msg); }

// ---------------------------------------------------------------------------------------
// Types, values and number formats
// ---------------------------------------------------------------------------------------

enum class Ty : std::uint8_t {
  None, B8, B16, B32, B64, U8, U16, U32, U64, S8, S16, S32, S64,
  F16, F16x2, BF16, BF16x2, F32, F64, Pred
};

Ty parse_type(const std::string &s) {
  static const std::unordered_map<std::string, Ty> m = {
      {"b8", Ty::B8},     {"b16", Ty::B16},   {"b32", Ty::B32},       {"b64", Ty::B64},
      {"u8", Ty::U8},     {"u16", Ty::U16},   {"u32", Ty::U32},       {"u64", Ty::U64},
      {"s8", Ty::S8},     {"s16", Ty::S16},   {"s32", Ty::S32},       {"s64", Ty::S64},
      {"f16", Ty::F16},   {"f16x2", Ty::F16x2}, {"bf16", Ty::BF16},   {"bf16x2", Ty::BF16x2},
      {"f32", Ty::F32},   {"f64", Ty::F64},   {"pred", Ty::Pred}};
  auto it = m.find(s);
  return it == m.end() ? Ty::None : it->second;
}

inline int bits_of(Ty t) {
  switch (t) {
  case Ty::B8: case Ty::U8: case Ty::S8: return 8;
  case Ty::B16: case Ty::U16: case Ty::S16: case Ty::F16: case Ty::BF16: return 16;
  case Ty::B32: case Ty::U32: case Ty::S32: case Ty::F32: case Ty::F16x2: case Ty::BF16x2: return 32;
  case Ty::B64: case Ty::U64: case Ty::S64: case Ty::F64: return 64;
  case Ty::Pred: return 1;
  default: return 64;
  }
}
inline bool is_signed(Ty t) { return t == Ty::S8 || t == Ty::S16 || t == Ty::S32 || t == Ty::S64; }
bool is_float(Ty t) {
  return t == Ty::F16 || t == Ty::BF16 || t == Ty::F32 || t == Ty::F64 || t == Ty::F16x2 ||
         t == Ty::BF16x2;
}

inline std::uint64_t mask_bits(std::uint64_t v, int bits) {
  return bits >= 64 ? v : v & ((std::uint64_t(1) << bits) - 1);
}
inline std::int64_t sext(std::uint64_t v, int bits) {
  if (bits >= 64) return std::int64_t(v);
  std::uint64_t m = std::uint64_t(1) << (bits - 1);
  v = mask_bits(v, bits);
  return std::int64_t((v ^ m) - m);
}

float f32(std::uint64_t bits) {
  std::uint32_t b = std::uint32_t(bits);
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
std::uint64_t bits32(float f) {
  std::uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}
double f64(std::uint64_t bits) {
  double d;
  std::memcpy(&d, &bits, 8);
  return d;
}
std::uint64_t bits64(double d) {
  std::uint64_t b;
  std::memcpy(&b, &d, 8);
  return b;
}
float bf16_to_f32(std::uint16_t h) { return f32(std::uint64_t(h) << 16); }
// Round to nearest, ties to even; NaN stays a (quiet) NaN.
std::uint16_t f32_to_bf16(float f) {
  std::uint32_t b = std::uint32_t(bits32(f));
  if (std::isnan(f)) return std::uint16_t((b >> 16) | 0x40);
  std::uint32_t lsb = (b >> 16) & 1;
  return std::uint16_t((b + 0x7fff + lsb) >> 16);
}
float f16_to_f32(std::uint16_t h) {
  _Float16 x;
  std::memcpy(&x, &h, 2);
  return float(x);
}
std::uint16_t f32_to_f16(float f) {
  _Float16 x = _Float16(f); // round to nearest even
  std::uint16_t h;
  std::memcpy(&h, &x, 2);
  return h;
}
float ftz(float f) { return std::fpclassify(f) == FP_SUBNORMAL ? std::copysign(0.0f, f) : f; }

// Runs `f` with the FPU rounding mode that a PTX rounding modifier names.
enum class Rnd : std::uint8_t { None, RN, RZ, RM, RP, RNI, RZI, RMI, RPI };
template <class F> auto with_rounding(Rnd r, F f) {
  int mode = FE_TONEAREST;
  if (r == Rnd::RZ || r == Rnd::RZI) mode = FE_TOWARDZERO;
  if (r == Rnd::RM || r == Rnd::RMI) mode = FE_DOWNWARD;
  if (r == Rnd::RP || r == Rnd::RPI) mode = FE_UPWARD;
  if (mode == FE_TONEAREST) return f();
  int old = std::fegetround();
  std::fesetround(mode);
  auto v = f();
  std::fesetround(old);
  return v;
}
double round_int(double x, Rnd r) {
  switch (r) {
  case Rnd::RZI: return std::trunc(x);
  case Rnd::RMI: return std::floor(x);
  case Rnd::RPI: return std::ceil(x);
  default: return std::nearbyint(x); // RNI: ties to even in the default FP environment
  }
}

// ---------------------------------------------------------------------------------------
// Address windows
// ---------------------------------------------------------------------------------------
// Shared and local memory have their own windows starting at 0 (what ld.shared / ld.local
// take). cvta maps them into the generic space at these bases, far above any host pointer.
constexpr std::uint64_t kSharedGeneric = 0x1000000000000000ull;
constexpr std::uint64_t kLocalGeneric = 0x2000000000000000ull;
constexpr std::uint64_t kWindowSize = 0x0100000000000000ull;
// `.extern .shared` arrays (sized by the launch) live at this shared-window offset, past any
// static shared memory, as on a GPU where dynamic shared memory follows the static.
constexpr std::uint64_t kDynamicShared = 0x01000000ull;

// ---------------------------------------------------------------------------------------
// Instructions
// ---------------------------------------------------------------------------------------

enum class Op : std::uint8_t {
  Ld, St, Mov, Cvta, Cvt, Add, Sub, Mul, Mad, Fma, Div, Rem, Neg, Abs, Min, Max, And, Or, Xor,
  Not, Shl, Shr, Setp, Selp, Bra, Ret, Exit, Bar, BarWarp, Shfl, Mma, Ldmatrix, Ex2, Lg2, Rcp,
  Sqrt, Rsqrt, Sin, Cos, Tanh, Bfe, Shf, Prmt, Popc, Clz, Brev, Addc, Madc, Atom, Red, Membar,
  Vote, Activemask, Copysign, Subc, Trap, Nop
};

enum class Space : std::uint8_t { Generic, Global, Shared, Local, Param, Const };

// setp comparisons (lo/ls/hi/hs: unsigned; ...u: unordered, true when either is NaN).
enum class Cmp : std::uint8_t {
  None, EQ, NE, LT, LE, GT, GE, LO, LS, HI, HS, EQU, NEU, LTU, LEU, GTU, GEU, NUM, NaN
};
Cmp parse_cmp(const std::string &c) {
  static const std::unordered_map<std::string, Cmp> m = {
      {"eq", Cmp::EQ},   {"ne", Cmp::NE},   {"lt", Cmp::LT},   {"le", Cmp::LE},
      {"gt", Cmp::GT},   {"ge", Cmp::GE},   {"lo", Cmp::LO},   {"ls", Cmp::LS},
      {"hi", Cmp::HI},   {"hs", Cmp::HS},   {"equ", Cmp::EQU}, {"neu", Cmp::NEU},
      {"ltu", Cmp::LTU}, {"leu", Cmp::LEU}, {"gtu", Cmp::GTU}, {"geu", Cmp::GEU},
      {"num", Cmp::NUM}, {"nan", Cmp::NaN}};
  auto it = m.find(c);
  return it == m.end() ? Cmp::None : it->second;
}

enum class Special : std::uint8_t {
  TidX, TidY, TidZ, NtidX, NtidY, NtidZ, CtaidX, CtaidY, CtaidZ, NctaidX, NctaidY, NctaidZ,
  Laneid, Warpid, WarpSz
};

struct Operand {
  enum Kind : std::uint8_t { None, Reg, Imm, Mem, Vec, Spec, Label, Sink } kind = None;
  int reg = -1;            // Reg; Mem: base register or -1
  std::uint64_t imm = 0;   // Imm: value bits; Mem: symbol address (window or host address)
  std::int64_t offset = 0; // Mem
  Space sym_space = Space::Generic; // Mem with a symbol: its space
  bool has_sym = false;
  Special spec = Special::TidX;
  std::vector<int> vec;    // Vec: registers (-1 for the sink `_`)
  int reg2 = -1;           // Reg written as `%a|%b`: the second (predicate) destination
  bool imm_f64 = false;    // an immediate written 0d...
  bool imm_f32 = false;    // an immediate written 0f...
};

struct Inst {
  Op op = Op::Nop;
  Ty type = Ty::None, stype = Ty::None; // cvt: type = destination, stype = source
  Ty atype = Ty::None, btype = Ty::None, ctype = Ty::None; // mma
  Space space = Space::Generic;
  Rnd rnd = Rnd::None;
  bool ftz = false, sat = false, nan = false, approx = false, cc = false, to = false;
  bool wide = false, hi = false, trans = false;
  int vec = 1;         // ld/st .v2/.v4; ldmatrix .x1/.x2/.x4
  std::string sub;     // setp comparison, shfl mode, shf direction+mode, atom op, vote mode
  std::string boolop;  // setp's .and/.or/.xor
  Cmp cmp = Cmp::None; // setp
  std::uint8_t bop = 0; // setp's boolean op: 0 none, 1 and, 2 or, 3 xor
  bool shf_wrap = false;
  int guard = -1;
  bool guard_neg = false;
  std::vector<Operand> ops;
  int target = -1; // bra: resolved pc
  int line = 0;
  std::string text;
};

struct Param {
  std::string name;
  std::size_t size = 0, align = 1, offset = 0;
};

struct Kernel {
  std::string name;
  std::vector<Param> params;
  std::size_t param_bytes = 0;
  std::vector<Inst> code;
  std::unordered_map<std::string, int> regs; // name -> slot
  std::vector<int> reg_bits;                 // slot -> declared width
  std::size_t shared_bytes = 0;              // static .shared
  std::size_t local_bytes = 0;
};

struct Module {
  std::vector<std::unique_ptr<Kernel>> kernels;
  std::vector<std::unique_ptr<std::vector<std::uint8_t>>> globals; // module .global data
};

// ---------------------------------------------------------------------------------------
// Device memory bookkeeping (allocation ranges, for bounds checks)
// ---------------------------------------------------------------------------------------

// Per byte of a device allocation, for the global racecheck: the last launch that wrote it,
// the writing thread (its global index + 1) and that thread's barrier epoch.
struct GlobalShadow {
  std::uint32_t launch = 0, writer = 0, epoch = 0;
};

struct Allocation {
  std::size_t size = 0;
  std::vector<GlobalShadow> shadow; // empty until a kernel writes the allocation
};

struct Memory {
  std::mutex mutex;
  std::map<std::uint64_t, Allocation> ranges; // by base address
  std::size_t allocated = 0;

  void add(const void *p, std::size_t n) {
    std::lock_guard<std::mutex> l(mutex);
    ranges[reinterpret_cast<std::uint64_t>(p)].size = n;
    allocated += n;
  }
  bool remove(std::uint64_t p) {
    std::lock_guard<std::mutex> l(mutex);
    auto it = ranges.find(p);
    if (it == ranges.end()) return false;
    allocated -= it->second.size;
    ranges.erase(it);
    return true;
  }
  // The allocation holding [p, p+n) (its base in *lo), or null.
  Allocation *contains(std::uint64_t p, std::size_t n, std::uint64_t *lo) {
    std::lock_guard<std::mutex> l(mutex);
    auto it = ranges.upper_bound(p);
    if (it == ranges.begin()) return nullptr;
    --it;
    if (p < it->first || p + n > it->first + it->second.size) return nullptr;
    *lo = it->first;
    return &it->second;
  }
};
// Never destroyed: the runtime frees device buffers from its own static destructors.
Memory &memory() {
  static Memory *m = new Memory;
  return *m;
}

// ---------------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------------

std::string trim(const std::string &s) {
  std::size_t a = s.find_first_not_of(" \t\r\n"), b = s.find_last_not_of(" \t\r\n");
  return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
}

std::vector<std::string> split_top(const std::string &s, char sep) {
  std::vector<std::string> out;
  int depth = 0;
  std::string cur;
  for (char c : s) {
    if (c == '{' || c == '[' || c == '(') ++depth;
    if (c == '}' || c == ']' || c == ')') --depth;
    if (c == sep && depth == 0) {
      out.push_back(trim(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!trim(cur).empty()) out.push_back(trim(cur));
  return out;
}

std::vector<std::string> split_ws(const std::string &s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      if (!cur.empty()) out.push_back(cur), cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

std::size_t parse_size(const std::string &s) { return std::size_t(std::stoull(s)); }

// A PTX statement with the line it started on.
struct Stmt {
  std::string text;
  int line;
  enum Kind { Plain, Label, Open, Close } kind;
};

std::vector<Stmt> statements(const std::string &src) {
  std::vector<Stmt> out;
  std::string cur;
  int line = 1, start_line = 1, depth_in_stmt = 0, paren = 0;
  auto flush = [&](Stmt::Kind k) {
    std::string t = trim(cur);
    if (!t.empty() || k != Stmt::Plain) out.push_back({t, start_line, k});
    cur.clear();
    depth_in_stmt = 0;
  };
  for (std::size_t i = 0; i < src.size(); ++i) {
    char c = src[i];
    if (c == '/' && i + 1 < src.size() && src[i + 1] == '/') {
      while (i < src.size() && src[i] != '\n') ++i;
      --i;
      continue;
    }
    if (c == '/' && i + 1 < src.size() && src[i + 1] == '*') {
      i += 2;
      while (i + 1 < src.size() && !(src[i] == '*' && src[i + 1] == '/')) {
        if (src[i] == '\n') ++line;
        ++i;
      }
      ++i;
      continue;
    }
    if (c == '\n') {
      // .version, .target and .address_size end at the line's end, without a ';'.
      std::string t = trim(cur);
      if (depth_in_stmt == 0 && (t.rfind(".version", 0) == 0 || t.rfind(".target", 0) == 0 ||
                                 t.rfind(".address_size", 0) == 0)) {
        flush(Stmt::Plain);
        ++line;
        continue;
      }
      ++line;
    }
    if (trim(cur).empty()) start_line = line;
    bool header = cur.find(".entry") != std::string::npos || cur.find(".func") != std::string::npos;
    if (c == '(') ++paren;
    if (c == ')') --paren;
    if (c == '{') {
      if (trim(cur).empty() || (header && paren == 0 && depth_in_stmt == 0)) {
        if (!trim(cur).empty()) flush(Stmt::Plain);
        out.push_back({"{", line, Stmt::Open});
        continue;
      }
      ++depth_in_stmt;
    }
    if (c == '}') {
      if (depth_in_stmt == 0) {
        if (!trim(cur).empty()) flush(Stmt::Plain);
        out.push_back({"}", line, Stmt::Close});
        continue;
      }
      --depth_in_stmt;
    }
    if (c == ';' && depth_in_stmt == 0) {
      flush(Stmt::Plain);
      continue;
    }
    if (c == ':' && depth_in_stmt == 0) {
      std::string t = trim(cur);
      bool ident = !t.empty() && t.find_first_of(" \t,[]{}") == std::string::npos;
      if (ident) {
        cur = t;
        flush(Stmt::Label);
        continue;
      }
    }
    cur += c;
  }
  if (!trim(cur).empty()) flush(Stmt::Plain);
  return out;
}

class Parser {
public:
  explicit Parser(Module &m) : mod_(m) {}

  void parse(const std::string &src) {
    std::vector<Stmt> st = statements(src);
    for (std::size_t i = 0; i < st.size(); ++i) {
      const Stmt &s = st[i];
      if (s.kind == Stmt::Plain && (s.text.find(".entry") != std::string::npos ||
                                    s.text.find(".func") != std::string::npos)) {
        bool is_entry = s.text.find(".entry") != std::string::npos;
        // A declaration without a body (`.extern .func ...;`) is skipped.
        if (i + 1 >= st.size() || st[i + 1].kind != Stmt::Open) {
          if (is_entry) fail("line " + std::to_string(s.line) + ": .entry without a body");
          continue;
        }
        if (!is_entry)
          fail("line " + std::to_string(s.line) + ": device functions (.func) are not supported");
        i = parse_kernel(st, i);
        continue;
      }
      if (s.kind == Stmt::Plain) module_directive(s);
    }
  }

private:
  Module &mod_;
  std::unordered_map<std::string, std::uint64_t> globals_; // module .global symbol -> address
  std::unordered_map<std::string, std::pair<std::uint64_t, Space>> module_shared_;
  std::size_t module_shared_bytes_ = 0;


  static std::size_t decl_size(const std::vector<std::string> &w, std::string *name,
                               std::size_t *align, Ty *ty, bool *unsized) {
    *align = 1;
    *ty = Ty::B8;
    *unsized = false;
    std::string last;
    for (std::size_t i = 0; i < w.size(); ++i) {
      if (w[i] == ".align" && i + 1 < w.size()) *align = parse_size(w[++i]);
      else if (w[i][0] == '.' && parse_type(w[i].substr(1)) != Ty::None) *ty = parse_type(w[i].substr(1));
      else if (w[i][0] != '.' && w[i] != "=") { last = w[i]; break; }
    }
    std::size_t elem = std::size_t(bits_of(*ty) / 8);
    if (elem == 0) elem = 1;
    std::size_t lb = last.find('[');
    if (lb == std::string::npos) {
      *name = last;
      *align = std::max(*align, elem);
      return elem;
    }
    *name = last.substr(0, lb);
    std::string n = last.substr(lb + 1, last.find(']') - lb - 1);
    if (n.empty()) {
      *unsized = true;
      return 0;
    }
    return elem * parse_size(n);
  }

  void module_directive(const Stmt &s) {
    std::vector<std::string> w = split_ws(s.text);
    if (w.empty()) return;
    bool is_global = false, is_shared = false, is_const = false;
    for (auto &x : w) {
      is_global |= x == ".global";
      is_shared |= x == ".shared";
      is_const |= x == ".const";
    }
    if (!is_global && !is_shared && !is_const) return; // .version, .target, .address_size...
    std::string name;
    std::size_t align;
    Ty ty;
    bool unsized;
    std::string decl = s.text.substr(0, s.text.find('='));
    std::size_t bytes = decl_size(split_ws(decl), &name, &align, &ty, &unsized);
    if (is_shared) {
      if (unsized) {
        module_shared_[name] = {kDynamicShared, Space::Shared};
        return;
      }
      module_shared_bytes_ = (module_shared_bytes_ + align - 1) / align * align;
      module_shared_[name] = {module_shared_bytes_, Space::Shared};
      module_shared_bytes_ += bytes;
      return;
    }
    auto data = std::make_unique<std::vector<std::uint8_t>>(std::max<std::size_t>(bytes, 1), 0);
    std::size_t eq = s.text.find('=');
    if (eq != std::string::npos) {
      std::string init = s.text.substr(eq + 1);
      init.erase(0, init.find('{') + 1);
      init = init.substr(0, init.rfind('}'));
      std::size_t elem = std::size_t(bits_of(ty) / 8), k = 0;
      for (auto &v : split_top(init, ',')) {
        std::uint64_t x = parse_int(v);
        if ((k + 1) * elem > data->size()) break;
        std::memcpy(data->data() + k * elem, &x, elem);
        ++k;
      }
    }
    memory().add(data->data(), data->size());
    globals_[name] = reinterpret_cast<std::uint64_t>(data->data());
    mod_.globals.push_back(std::move(data));
  }

  static std::uint64_t parse_int(const std::string &t) {
    std::string s = trim(t);
    bool neg = !s.empty() && s[0] == '-';
    if (neg) s = s.substr(1);
    std::uint64_t v;
    if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) v = std::stoull(s.substr(2), nullptr, 16);
    else v = std::stoull(s);
    return neg ? ~v + 1 : v;
  }

  std::size_t parse_kernel(const std::vector<Stmt> &st, std::size_t i) {
    auto k = std::make_unique<Kernel>();
    const std::string &h = st[i].text;
    std::size_t e = h.find(".entry");
    std::size_t lp = h.find('(', e);
    k->name = trim(h.substr(e + 6, (lp == std::string::npos ? h.size() : lp) - e - 6));
    if (lp != std::string::npos) {
      std::string plist = h.substr(lp + 1, h.rfind(')') - lp - 1);
      for (auto &p : split_top(plist, ',')) {
        std::vector<std::string> w = split_ws(p);
        Param prm;
        std::size_t align;
        Ty ty;
        bool unsized;
        std::vector<std::string> rest(w.begin() + 1, w.end()); // drop ".param"
        std::vector<std::string> filtered;
        for (auto &x : rest)
          if (x != ".ptr" && x != ".global" && x != ".shared" && x != ".const" && x != ".local")
            filtered.push_back(x);
        // `.ptr .global .align N` describes the pointee: drop its .align too.
        bool ptr = std::find(rest.begin(), rest.end(), ".ptr") != rest.end();
        if (ptr) {
          std::vector<std::string> f2;
          for (std::size_t j = 0; j < filtered.size(); ++j) {
            if (filtered[j] == ".align") { ++j; continue; }
            f2.push_back(filtered[j]);
          }
          filtered = f2;
        }
        prm.size = decl_size(filtered, &prm.name, &align, &ty, &unsized);
        prm.align = align;
        k->param_bytes = (k->param_bytes + align - 1) / align * align;
        prm.offset = k->param_bytes;
        k->param_bytes += prm.size;
        k->params.push_back(prm);
      }
    }
    // Symbols in scope: params (Param space), shared/local decls, module globals.
    std::unordered_map<std::string, std::pair<std::uint64_t, Space>> syms;
    for (auto &p : k->params) syms[p.name] = {p.offset, Space::Param};
    for (auto &g : globals_) syms[g.first] = {g.second, Space::Global};
    for (auto &g : module_shared_) syms[g.first] = g.second;
    k->shared_bytes = module_shared_bytes_;
    std::unordered_map<std::string, int> labels;
    struct Pending { std::size_t pc; std::string label; };
    std::vector<Pending> pending;
    std::vector<std::pair<std::string, int>> bodies; // statement text, line (instructions)
    int depth = 0;
    std::size_t j = i + 1;
    for (; j < st.size(); ++j) {
      const Stmt &s = st[j];
      if (s.kind == Stmt::Open) { ++depth; continue; }
      if (s.kind == Stmt::Close) {
        if (--depth == 0) break;
        continue;
      }
      if (s.kind == Stmt::Label) {
        labels[s.text] = int(k->code.size());
        continue;
      }
      const std::string &t = s.text;
      if (t.rfind(".reg", 0) == 0) {
        declare_regs(*k, t, s.line);
        continue;
      }
      if (t.rfind(".shared", 0) == 0 || t.rfind(".extern", 0) == 0 || t.rfind(".local", 0) == 0) {
        std::vector<std::string> w = split_ws(t);
        std::string name;
        std::size_t align;
        Ty ty;
        bool unsized;
        std::size_t bytes = decl_size(w, &name, &align, &ty, &unsized);
        bool local = t.find(".local") != std::string::npos;
        std::size_t &top = local ? k->local_bytes : k->shared_bytes;
        if (unsized && !local) {
          syms[name] = {kDynamicShared, Space::Shared};
          continue;
        }
        top = (top + align - 1) / align * align;
        syms[name] = {top, local ? Space::Local : Space::Shared};
        top += bytes;
        continue;
      }
      if (t[0] == '.') continue; // .maxntid, .pragma, .loc, ...
      Inst in = parse_inst(*k, t, s.line, syms);
      if (in.op == Op::Bra) pending.push_back({k->code.size(), in.ops.empty() ? "" : in.text});
      k->code.push_back(std::move(in));
    }
    for (auto &p : pending) {
      Inst &in = k->code[p.pc];
      std::string lbl = trim(in.ops[0].kind == Operand::Label ? label_of(in) : "");
      auto it = labels.find(lbl);
      if (it == labels.end())
        fail(k->name + ": line " + std::to_string(in.line) + ": unknown label '" + lbl + "'");
      in.target = it->second;
    }
    // Falling off the end returns.
    Inst r;
    r.op = Op::Ret;
    r.text = "ret (end of kernel)";
    k->code.push_back(r);
    mod_.kernels.push_back(std::move(k));
    return j;
  }

  static std::string label_of(const Inst &in) {
    std::vector<std::string> w = split_ws(in.text);
    return w.back();
  }

  static void declare_regs(Kernel &k, const std::string &t, int line) {
    std::vector<std::string> w = split_ws(t);
    if (w.size() < 3) fail("line " + std::to_string(line) + ": bad .reg declaration");
    Ty ty = parse_type(w[1].substr(1));
    int bits = ty == Ty::Pred ? 1 : bits_of(ty);
    for (std::size_t i = 2; i < w.size(); ++i) {
      for (auto &d : split_top(w[i], ',')) {
        if (d.empty()) continue;
        std::size_t lt = d.find('<');
        if (lt == std::string::npos) {
          if (!k.regs.count(d)) k.regs[d] = int(k.reg_bits.size()), k.reg_bits.push_back(bits);
          continue;
        }
        std::string base = d.substr(0, lt);
        int n = std::stoi(d.substr(lt + 1));
        for (int r = 0; r < n; ++r) {
          std::string name = base + std::to_string(r);
          if (!k.regs.count(name)) k.regs[name] = int(k.reg_bits.size()), k.reg_bits.push_back(bits);
        }
      }
    }
  }

  static int reg_of(const Kernel &k, const std::string &name, int line) {
    auto it = k.regs.find(name);
    if (it == k.regs.end()) fail("line " + std::to_string(line) + ": undeclared register " + name);
    return it->second;
  }

  Operand operand(const Kernel &k, const std::string &tok, int line,
                  const std::unordered_map<std::string, std::pair<std::uint64_t, Space>> &syms) {
    Operand o;
    std::string s = trim(tok);
    if (s.empty()) fail("line " + std::to_string(line) + ": empty operand");
    if (s == "_") { o.kind = Operand::Sink; return o; }
    if (s[0] == '{') {
      o.kind = Operand::Vec;
      for (auto &e : split_top(s.substr(1, s.size() - 2), ','))
        o.vec.push_back(e == "_" ? -1 : reg_of(k, e, line));
      return o;
    }
    if (s[0] == '[') {
      o.kind = Operand::Mem;
      std::string in = trim(s.substr(1, s.size() - 2));
      std::size_t plus = in.find('+');
      std::string base = trim(in.substr(0, plus));
      if (plus != std::string::npos) o.offset = std::int64_t(parse_int(in.substr(plus + 1)));
      if (base.empty()) return o;
      if (base[0] == '%') {
        o.reg = reg_of(k, base, line);
      } else if (std::isdigit(static_cast<unsigned char>(base[0])) || base[0] == '-') {
        o.offset += std::int64_t(parse_int(base));
      } else {
        auto it = syms.find(base);
        if (it == syms.end()) fail("line " + std::to_string(line) + ": unknown symbol " + base);
        o.has_sym = true;
        o.imm = it->second.first;
        o.sym_space = it->second.second;
      }
      return o;
    }
    if (s[0] == '%') {
      static const std::unordered_map<std::string, Special> specials = {
          {"%tid.x", Special::TidX},       {"%tid.y", Special::TidY},
          {"%tid.z", Special::TidZ},       {"%ntid.x", Special::NtidX},
          {"%ntid.y", Special::NtidY},     {"%ntid.z", Special::NtidZ},
          {"%ctaid.x", Special::CtaidX},   {"%ctaid.y", Special::CtaidY},
          {"%ctaid.z", Special::CtaidZ},   {"%nctaid.x", Special::NctaidX},
          {"%nctaid.y", Special::NctaidY}, {"%nctaid.z", Special::NctaidZ},
          {"%laneid", Special::Laneid},    {"%warpid", Special::Warpid},
          {"WARP_SZ", Special::WarpSz}};
      auto sp = specials.find(s);
      if (sp != specials.end()) { o.kind = Operand::Spec; o.spec = sp->second; return o; }
      std::size_t bar = s.find('|');
      o.kind = Operand::Reg;
      if (bar != std::string::npos) {
        o.reg = reg_of(k, s.substr(0, bar), line);
        o.reg2 = reg_of(k, s.substr(bar + 1), line);
      } else {
        o.reg = reg_of(k, s, line);
      }
      return o;
    }
    if (s == "WARP_SZ") { o.kind = Operand::Spec; o.spec = Special::WarpSz; return o; }
    if (s.size() > 2 && s[0] == '0' && (s[1] == 'f' || s[1] == 'F')) {
      o.kind = Operand::Imm;
      o.imm = std::stoull(s.substr(2), nullptr, 16);
      o.imm_f32 = true;
      return o;
    }
    if (s.size() > 2 && s[0] == '0' && (s[1] == 'd' || s[1] == 'D')) {
      o.kind = Operand::Imm;
      o.imm = std::stoull(s.substr(2), nullptr, 16);
      o.imm_f64 = true;
      return o;
    }
    if (std::isdigit(static_cast<unsigned char>(s[0])) || s[0] == '-') {
      o.kind = Operand::Imm;
      o.imm = parse_int(s);
      return o;
    }
    auto it = syms.find(s);
    if (it != syms.end()) {
      o.kind = Operand::Imm; // a symbol's address
      o.imm = it->second.first;
      return o;
    }
    o.kind = Operand::Label;
    return o;
  }

  Inst parse_inst(const Kernel &k, const std::string &text, int line,
                  const std::unordered_map<std::string, std::pair<std::uint64_t, Space>> &syms) {
    Inst in;
    in.line = line;
    in.text = text;
    std::string t = text;
    if (t[0] == '@') {
      std::size_t sp = t.find_first_of(" \t\r\n");
      std::string g = t.substr(1, sp - 1);
      if (g[0] == '!') in.guard_neg = true, g = g.substr(1);
      in.guard = reg_of(k, g, line);
      t = trim(t.substr(sp));
    }
    std::size_t sp = t.find_first_of(" \t\r\n");
    std::string opcode = t.substr(0, sp);
    std::string rest = sp == std::string::npos ? "" : trim(t.substr(sp));
    std::vector<std::string> parts;
    {
      std::string cur;
      for (char c : opcode) {
        if (c == '.') parts.push_back(cur), cur.clear();
        else cur += c;
      }
      parts.push_back(cur);
    }
    static const std::unordered_map<std::string, Op> ops = {
        {"ld", Op::Ld},         {"ldu", Op::Ld},          {"st", Op::St},
        {"mov", Op::Mov},       {"cvta", Op::Cvta},       {"cvt", Op::Cvt},
        {"add", Op::Add},       {"sub", Op::Sub},         {"mul", Op::Mul},
        {"mad", Op::Mad},       {"fma", Op::Fma},         {"div", Op::Div},
        {"rem", Op::Rem},       {"neg", Op::Neg},         {"abs", Op::Abs},
        {"min", Op::Min},       {"max", Op::Max},         {"and", Op::And},
        {"or", Op::Or},         {"xor", Op::Xor},         {"not", Op::Not},
        {"shl", Op::Shl},       {"shr", Op::Shr},         {"setp", Op::Setp},
        {"selp", Op::Selp},     {"bra", Op::Bra},         {"ret", Op::Ret},
        {"exit", Op::Exit},     {"bar", Op::Bar},         {"barrier", Op::Bar},
        {"shfl", Op::Shfl},     {"mma", Op::Mma},         {"ldmatrix", Op::Ldmatrix},
        {"ex2", Op::Ex2},       {"lg2", Op::Lg2},         {"rcp", Op::Rcp},
        {"sqrt", Op::Sqrt},     {"rsqrt", Op::Rsqrt},     {"sin", Op::Sin},
        {"cos", Op::Cos},       {"tanh", Op::Tanh},       {"bfe", Op::Bfe},
        {"shf", Op::Shf},       {"prmt", Op::Prmt},       {"popc", Op::Popc},
        {"clz", Op::Clz},       {"brev", Op::Brev},       {"addc", Op::Addc},
        {"madc", Op::Madc},     {"atom", Op::Atom},       {"red", Op::Red},
        {"membar", Op::Membar}, {"fence", Op::Membar},    {"vote", Op::Vote},
        {"activemask", Op::Activemask}, {"copysign", Op::Copysign},
        {"subc", Op::Subc},     {"trap", Op::Trap}};
    auto oi = ops.find(parts[0]);
    if (oi == ops.end())
      fail("line " + std::to_string(line) + ": unsupported instruction '" + opcode + "'");
    in.op = oi->second;
    std::vector<Ty> types;
    std::size_t first = 1;
    if (in.op == Op::Setp && parts.size() > 1) in.sub = parts[1], first = 2; // eq, lt, hi, ...
    for (std::size_t i = first; i < parts.size(); ++i) {
      const std::string &p = parts[i];
      Ty ty = parse_type(p);
      if (ty != Ty::None) { types.push_back(ty); continue; }
      if (p == "global") in.space = Space::Global;
      else if (p == "shared") in.space = Space::Shared;
      else if (p == "local") in.space = Space::Local;
      else if (p == "param") in.space = Space::Param;
      else if (p == "const") in.space = Space::Const;
      else if (p == "to") in.to = true;
      else if (p == "v2") in.vec = 2;
      else if (p == "v4") in.vec = 4;
      else if (p == "x1") in.vec = 1;
      else if (p == "x2") in.vec = 2;
      else if (p == "x4") in.vec = 4;
      else if (p == "rn") in.rnd = Rnd::RN;
      else if (p == "rz") in.rnd = Rnd::RZ;
      else if (p == "rm") in.rnd = Rnd::RM;
      else if (p == "rp") in.rnd = Rnd::RP;
      else if (p == "rni") in.rnd = Rnd::RNI;
      else if (p == "rzi") in.rnd = Rnd::RZI;
      else if (p == "rmi") in.rnd = Rnd::RMI;
      else if (p == "rpi") in.rnd = Rnd::RPI;
      else if (p == "ftz") in.ftz = true;
      else if (p == "sat") in.sat = true;
      else if (p == "NaN") in.nan = true;
      else if (p == "approx" || p == "full") in.approx = true;
      else if (p == "cc") in.cc = true;
      else if (p == "wide") in.wide = true;
      else if (p == "hi") in.hi = true;
      else if (p == "lo") {}
      else if (p == "trans") in.trans = true;
      else if (p == "wrap") in.shf_wrap = true;
      else if (p == "clamp") in.shf_wrap = false;
      else if (in.op == Op::Setp && (p == "and" || p == "or" || p == "xor") && !in.sub.empty()) in.boolop = p;
      else if (p == "sync" || p == "aligned" || p == "nc" || p == "m8n8" || p == "m16n8k16" ||
               p == "m16n8k8" || p == "row" || p == "col" || p == "ca" || p == "cg" || p == "cs" ||
               p == "lu" || p == "cv" || p == "wb" || p == "wt" || p == "volatile" ||
               p == "relaxed" || p == "acquire" || p == "release" || p == "cta" || p == "gpu" ||
               p == "sys" || p == "sc" || p == "acq_rel" || p == "warp" || p == "arrive" || p == "red" ||
               p == "uni")
        ; // no effect in a sequential, coherent emulation
      else if (in.sub.empty()) in.sub = p; // comparison, shfl/shf mode, atom op, vote mode
      else fail("line " + std::to_string(line) + ": unsupported modifier ." + p + " in '" + opcode + "'");
    }
    if (in.op == Op::Bar && parts.size() > 1 && parts[1] == "warp") in.op = Op::BarWarp;
    if (in.op == Op::Bar && std::find(parts.begin(), parts.end(), "arrive") != parts.end())
      fail("line " + std::to_string(line) + ": bar.arrive is not supported");
    if (in.op == Op::Mma) {
      if (types.size() != 4) fail("line " + std::to_string(line) + ": unsupported mma form '" + opcode + "'");
      in.type = types[0], in.atype = types[1], in.btype = types[2], in.ctype = types[3];
      if (in.sub != "" || std::find(parts.begin(), parts.end(), "m16n8k16") == parts.end())
        fail("line " + std::to_string(line) + ": unsupported mma shape '" + opcode + "'");
    } else if (in.op == Op::Cvt) {
      if (types.size() != 2) fail("line " + std::to_string(line) + ": bad cvt '" + opcode + "'");
      in.type = types[0], in.stype = types[1];
    } else if (!types.empty()) {
      in.type = types.back();
      if (types.size() > 1) in.stype = types[0];
    }
    if (in.op == Op::Shf) { in.sub = parts.size() > 1 ? parts[1] : ""; }
    if ((in.op == Op::Shfl && in.sub != "up" && in.sub != "down" && in.sub != "bfly" &&
         in.sub != "idx") ||
        (in.op == Op::Shf && in.sub != "l" && in.sub != "r"))
      fail("line " + std::to_string(line) + ": unsupported mode in '" + opcode + "'");
    if (in.op == Op::Setp) {
      in.cmp = parse_cmp(in.sub);
      bool unordered_only = in.cmp >= Cmp::EQU;
      bool unsigned_only = in.cmp >= Cmp::LO && in.cmp <= Cmp::HS;
      if (in.cmp == Cmp::None || (unordered_only && !is_float(in.type)) ||
          (unsigned_only && is_float(in.type)))
        fail("line " + std::to_string(line) + ": unsupported comparison in '" + opcode + "'");
      in.bop = in.boolop.empty() ? 0 : in.boolop == "and" ? 1 : in.boolop == "or" ? 2 : 3;
    }
    if (!rest.empty())
      for (auto &o : split_top(rest, ',')) in.ops.push_back(operand(k, o, line, syms));
    if (in.op == Op::Bra) {
      if (in.ops.size() != 1 || in.ops[0].kind != Operand::Label)
        fail("line " + std::to_string(line) + ": unsupported branch '" + text + "'");
    }
    return in;
  }
};

// ---------------------------------------------------------------------------------------
// Interpreter
// ---------------------------------------------------------------------------------------

// Operand accessors run once or more per interpreted instruction: inlined into step().
#define MOEC_HOT __attribute__((always_inline)) inline

enum class State : std::uint8_t { Run, Barrier, Collective, Done };
enum class Access : std::uint8_t { Read, Write, Atomic };

// Per shared-memory byte: who wrote it and who read it since which barrier (racecheck).
struct ShadowByte {
  std::uint32_t writer = 0, write_epoch = 0; // writer: thread index + 1
  std::uint32_t reader = 0, read_epoch = 0;  // reader: thread index + 1, or kManyReaders
};
constexpr std::uint32_t kManyReaders = ~0u;

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
    if (racecheck_enabled()) shadow_.assign(L.shared.size() + L.dynamic.size(), ShadowByte());
    epoch_ = 1;
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
        ++epoch_; // accesses before and after this barrier are ordered
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

  // Global racecheck: within one launch, a byte written by one thread must not be read or
  // written by another, unless both are in one block with a barrier between (threads of
  // different blocks cannot order their accesses inside a launch).
  void global_race_check(Thread &t, Allocation &al, std::uint64_t off, std::size_t n, Access acc) {
    if (acc == Access::Read && al.shadow.empty()) return;
    if (al.shadow.empty()) al.shadow.resize(al.size);
    const std::uint32_t per_block = std::uint32_t(threads_.size());
    const std::uint32_t block = (L.ctaid[2] * L.grid[1] + L.ctaid[1]) * L.grid[0] + L.ctaid[0];
    const std::uint32_t me = block * per_block + std::uint32_t(&t - threads_.data()) + 1;
    for (std::uint64_t b = off; b < off + n; ++b) {
      GlobalShadow &e = al.shadow[std::size_t(b)];
      if (e.launch == L.id && e.writer != me &&
          !((e.writer - 1) / per_block == block && e.epoch < epoch_)) {
        std::uint32_t w = e.writer - 1, wb = w / per_block, wt = w % per_block;
        fault(t, std::string("global-memory race: ") + (acc == Access::Read ? "reads" : "writes") +
                     " a byte that thread " + std::to_string(wt) + " of block " +
                     std::to_string(wb) + " (linear indices) wrote in this launch with no barrier between");
      }
      if (acc == Access::Write) e = {L.id, me, epoch_};
    }
  }

  // Racecheck: between two barriers, a shared byte that one thread writes must not be read
  // or written by another (what compute-sanitizer's racecheck reports); atomics are exempt.
  // Byte `b` of the shadow is static shared memory, then dynamic. Off with PTXEMU_RACECHECK=0.
  std::vector<ShadowByte> shadow_;
  std::uint32_t epoch_ = 1;
  static bool racecheck_enabled() {
    static const bool on = [] {
      const char *v = std::getenv("PTXEMU_RACECHECK");
      return !(v && std::string(v) == "0");
    }();
    return on;
  }
  void race_check(Thread &t, std::uint64_t b0, std::size_t n, Access acc) {
    if (acc == Access::Atomic || !racecheck_enabled()) return;
    const std::uint32_t me = std::uint32_t(&t - threads_.data()) + 1;
    for (std::uint64_t b = b0; b < b0 + n; ++b) {
      ShadowByte &s = shadow_[std::size_t(b)];
      auto who = [&](std::uint32_t id) {
        const Thread &o = threads_[id - 1];
        return "thread (" + std::to_string(o.tid[0]) + "," + std::to_string(o.tid[1]) + "," +
               std::to_string(o.tid[2]) + ")";
      };
      if (s.write_epoch == epoch_ && s.writer != me)
        fault(t, std::string("shared-memory race: ") + (acc == Access::Read ? "reads" : "writes") +
                     " byte " + std::to_string(b) + " that " + who(s.writer) +
                     " wrote since the last barrier");
      if (acc == Access::Write) {
        if (s.read_epoch == epoch_ && s.reader != me)
          fault(t, "shared-memory race: writes byte " + std::to_string(b) + " that " +
                       (s.reader == kManyReaders ? std::string("other threads") : who(s.reader)) +
                       " read since the last barrier");
        s.writer = me, s.write_epoch = epoch_;
      } else {
        if (s.read_epoch != epoch_) s.reader = me, s.read_epoch = epoch_;
        else if (s.reader != me) s.reader = kManyReaders;
      }
    }
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

// ---------------------------------------------------------------------------------------
// Driver state
// ---------------------------------------------------------------------------------------

// Leaked on purpose, like memory(): used from static destructors of the caller.
std::mutex &g_mutex = *new std::mutex;
std::string &g_last_error = *new std::string;
std::vector<std::unique_ptr<Module>> &g_modules = *new std::vector<std::unique_ptr<Module>>;

CUresult error(CUresult code, const std::string &msg) {
  g_last_error = msg;
  std::fprintf(stderr, "ptxemu: %s\n", msg.c_str());
  return code;
}

// The device's memory: $PTXEMU_MEMORY_MIB, default 16 GiB (allocations past it fail).
std::size_t device_bytes() {
  static const std::size_t bytes = [] {
    const char *v = std::getenv("PTXEMU_MEMORY_MIB");
    return v ? std::size_t(std::strtoull(v, nullptr, 10)) << 20 : std::size_t(16) << 30;
  }();
  return bytes;
}

constexpr CUresult kInvalidValue = 1, kOutOfMemory = 2, kInvalidPtx = 218, kNotFound = 500,
                   kIllegalAddress = 700, kLaunchFailed = 719;

} // namespace
} // namespace ptxemu

using namespace ptxemu;

extern "C" {

const char *moec_ptxemu_last_error() { return g_last_error.c_str(); }

CUresult cuInit(unsigned) { return 0; }
CUresult cuDeviceGetCount(int *n) { *n = 1; return 0; }
CUresult cuDeviceGet(CUdevice *d, int i) { *d = i; return i == 0 ? 0 : kInvalidValue; }
CUresult cuDeviceGetName(char *name, int len, CUdevice) {
  std::snprintf(name, std::size_t(len), "ptxemu (PTX interpreter)");
  return 0;
}
CUresult cuDeviceGetAttribute(int *v, int attr, CUdevice) {
  // 75/76: compute capability major/minor (8.0); 16: multiprocessors; 1: max threads per block.
  *v = attr == 75 ? 8 : attr == 76 ? 0 : attr == 16 ? 1 : attr == 1 ? 1024 : 0;
  return 0;
}
CUresult cuDevicePrimaryCtxRetain(CUcontext *ctx, CUdevice) {
  static int c;
  *ctx = reinterpret_cast<CUcontext>(&c);
  return 0;
}
CUresult cuCtxSetCurrent(CUcontext) { return 0; }
CUresult cuGetErrorName(CUresult r, const char **s) {
  switch (r) {
  case 0: *s = "CUDA_SUCCESS"; break;
  case kInvalidValue: *s = "CUDA_ERROR_INVALID_VALUE"; break;
  case kOutOfMemory: *s = "CUDA_ERROR_OUT_OF_MEMORY"; break;
  case kInvalidPtx: *s = "CUDA_ERROR_INVALID_PTX"; break;
  case kNotFound: *s = "CUDA_ERROR_NOT_FOUND"; break;
  case kIllegalAddress: *s = "CUDA_ERROR_ILLEGAL_ADDRESS"; break;
  default: *s = "CUDA_ERROR_LAUNCH_FAILED"; break;
  }
  return 0;
}
CUresult cuGetErrorString(CUresult, const char **s) {
  *s = g_last_error.empty() ? "ptxemu error" : g_last_error.c_str();
  return 0;
}

CUresult cuModuleLoadDataEx(CUmodule *m, const void *image, unsigned n, int *opts, void **vals) {
  std::lock_guard<std::mutex> l(g_mutex);
  g_last_error.clear();
  auto mod = std::make_unique<Module>();
  try {
    Parser(*mod).parse(static_cast<const char *>(image));
  } catch (const std::exception &e) {
    for (unsigned i = 0; i < n; ++i)
      if (opts[i] == 5) { // CU_JIT_ERROR_LOG_BUFFER; its size is option 6
        std::size_t cap = 0;
        for (unsigned j = 0; j < n; ++j)
          if (opts[j] == 6) cap = reinterpret_cast<std::uintptr_t>(vals[j]);
        if (cap) std::snprintf(static_cast<char *>(vals[i]), cap, "ptxemu: %s", e.what());
      }
    return error(kInvalidPtx, std::string("PTX rejected: ") + e.what());
  }
  *m = reinterpret_cast<CUmodule>(mod.get());
  g_modules.push_back(std::move(mod));
  return 0;
}
CUresult cuModuleUnload(CUmodule) { return 0; }
CUresult cuModuleGetFunction(CUfunction *f, CUmodule m, const char *name) {
  for (auto &k : reinterpret_cast<Module *>(m)->kernels)
    if (k->name == name) {
      *f = reinterpret_cast<CUfunction>(k.get());
      return 0;
    }
  return error(kNotFound, std::string("no kernel named ") + name);
}

CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                        unsigned by, unsigned bz, unsigned smem, CUstream, void **params,
                        void **extra) {
  std::lock_guard<std::mutex> l(g_mutex);
  g_last_error.clear();
  const Kernel &k = *reinterpret_cast<const Kernel *>(f);
  if (extra) return error(kInvalidValue, k.name + ": the `extra` launch argument is not supported");
  // The limits of every GPU since sm_30: a driver refuses such launches.
  if (bx * by * bz == 0 || bx * by * bz > 1024 || bz > 64)
    return error(kInvalidValue, k.name + ": block of " + std::to_string(bx * by * bz) + " threads");
  if (gx == 0 || gy == 0 || gz == 0 || gx > 0x7fffffffu || gy > 65535 || gz > 65535)
    return error(kInvalidValue, k.name + ": grid (" + std::to_string(gx) + ", " +
                                    std::to_string(gy) + ", " + std::to_string(gz) +
                                    ") beyond the grid limits");
  if (k.shared_bytes > 48 * 1024 || smem > 48 * 1024)
    return error(kInvalidValue, k.name + ": " + std::to_string(k.shared_bytes) + " bytes of static and " +
                                    std::to_string(smem) + " of dynamic shared memory: over 48 KiB "
                                    "needs cuFuncSetAttribute, which this runtime does not call");
  static const bool trace = std::getenv("PTXEMU_TRACE") != nullptr;
  if (trace)
    std::fprintf(stderr, "ptxemu: launch %s grid (%u,%u,%u) block (%u,%u,%u), %zu params, %zu bytes\n",
                 k.name.c_str(), gx, gy, gz, bx, by, bz, k.params.size(), k.param_bytes);
  std::vector<std::uint8_t> pbuf(std::max<std::size_t>(k.param_bytes, 1));
  for (std::size_t i = 0; i < k.params.size(); ++i)
    std::memcpy(pbuf.data() + k.params[i].offset, params[i], k.params[i].size);
  static std::uint32_t launches = 0;
  Launch L{&k, ++launches, {gx, gy, gz}, {bx, by, bz}, {0, 0, 0}, &pbuf, {}, {}};
  std::size_t shared = k.shared_bytes;
  auto start = std::chrono::steady_clock::now();
  Interp interp(L);
  interp.count_reads_ = trace;
  try {
    for (unsigned z = 0; z < gz; ++z)
      for (unsigned y = 0; y < gy; ++y)
        for (unsigned x = 0; x < gx; ++x) {
          L.ctaid[0] = x, L.ctaid[1] = y, L.ctaid[2] = z;
          L.shared.assign(shared, 0xff);
          L.dynamic.assign(smem, 0xff);
          interp.run_block();
        }
  } catch (const Fault &e) {
    std::string m = e.what();
    if (trace) std::fprintf(stderr, "ptxemu: launch %s failed: %s\n", k.name.c_str(), m.c_str());
    return error(m.find("outside") != std::string::npos ? kIllegalAddress : kLaunchFailed, m);
  }
  if (trace) {
    std::uint64_t total = 0, top = 0;
    const Allocation *top_alloc = nullptr;
    for (const auto &[al, bytes] : interp.reads_) {
      total += bytes;
      if (bytes > top) top = bytes, top_alloc = al;
    }
    std::fprintf(stderr,
                 "ptxemu: %s done in %.3f s; global loads %" PRIu64 " bytes, %" PRIu64
                 " of them from one buffer of %zu bytes\n",
                 k.name.c_str(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                 total, top, top_alloc ? top_alloc->size : std::size_t(0));
  }
  return 0;
}

CUresult cuStreamCreate(CUstream *s, unsigned) {
  static int st;
  *s = reinterpret_cast<CUstream>(&st);
  return 0;
}
CUresult cuStreamSynchronize(CUstream) { return 0; }
CUresult cuStreamDestroy_v2(CUstream) { return 0; }
CUresult cuStreamWaitEvent(CUstream, CUevent, unsigned) { return 0; }
CUresult cuEventCreate(CUevent *e, unsigned) {
  static int ev;
  *e = reinterpret_cast<CUevent>(&ev);
  return 0;
}
CUresult cuEventDestroy_v2(CUevent) { return 0; }
CUresult cuEventRecord(CUevent, CUstream) { return 0; }
CUresult cuEventSynchronize(CUevent) { return 0; }

CUresult cuMemAlloc_v2(CUdeviceptr *p, std::size_t n) {
  if (memory().allocated + n > device_bytes())
    return error(kOutOfMemory, "out of device memory allocating " + std::to_string(n) + " bytes");
  // Fresh memory is garbage on a GPU: fill it with 0xFF bytes (NaN) so a read of something
  // never written shows in the results.
  void *m = std::malloc(n ? n : 1);
  if (!m) return error(kOutOfMemory, "out of memory allocating " + std::to_string(n) + " bytes");
  std::memset(m, 0xff, n);
  memory().add(m, n);
  *p = reinterpret_cast<CUdeviceptr>(m);
  return 0;
}
CUresult cuMemFree_v2(CUdeviceptr p) {
  if (!p) return 0;
  if (!memory().remove(p)) return error(kInvalidValue, "cuMemFree of a pointer not allocated");
  std::free(reinterpret_cast<void *>(p));
  return 0;
}
CUresult cuMemAllocAsync(CUdeviceptr *p, std::size_t n, CUstream) { return cuMemAlloc_v2(p, n); }
CUresult cuMemFreeAsync(CUdeviceptr p, CUstream) { return cuMemFree_v2(p); }

static CUresult check_range(CUdeviceptr p, std::size_t n, const char *what) {
  std::uint64_t lo;
  if (n && !memory().contains(p, n, &lo))
    return error(kInvalidValue, std::string(what) + " of " + std::to_string(n) +
                                    " bytes outside every allocation");
  return 0;
}
CUresult cuMemcpyHtoD_v2(CUdeviceptr d, const void *h, std::size_t n) {
  if (CUresult r = check_range(d, n, "cuMemcpyHtoD")) return r;
  std::memcpy(reinterpret_cast<void *>(d), h, n);
  return 0;
}
CUresult cuMemcpyDtoH_v2(void *h, CUdeviceptr d, std::size_t n) {
  if (CUresult r = check_range(d, n, "cuMemcpyDtoH")) return r;
  std::memcpy(h, reinterpret_cast<void *>(d), n);
  return 0;
}
// Unified addressing: either side may be host or device memory. Only device sides are checked.
CUresult cuMemcpyAsync(CUdeviceptr d, CUdeviceptr s, std::size_t n, CUstream) {
  std::uint64_t lo;
  bool dd = memory().contains(d, n, &lo) != nullptr, sd = memory().contains(s, n, &lo) != nullptr;
  if (!dd && !sd && n) return error(kInvalidValue, "cuMemcpyAsync between two non-device ranges");
  std::memmove(reinterpret_cast<void *>(d), reinterpret_cast<void *>(s), n);
  return 0;
}
CUresult cuMemsetD8_v2(CUdeviceptr d, unsigned char v, std::size_t n) {
  if (CUresult r = check_range(d, n, "cuMemsetD8")) return r;
  std::memset(reinterpret_cast<void *>(d), v, n);
  return 0;
}
CUresult cuMemsetD32Async(CUdeviceptr d, unsigned v, std::size_t n, CUstream) {
  if (CUresult r = check_range(d, n * 4, "cuMemsetD32")) return r;
  auto *p = reinterpret_cast<std::uint32_t *>(d);
  for (std::size_t i = 0; i < n; ++i) p[i] = v;
  return 0;
}
CUresult cuMemsetD16Async(CUdeviceptr d, unsigned short v, std::size_t n, CUstream) {
  if (CUresult r = check_range(d, n * 2, "cuMemsetD16")) return r;
  auto *p = reinterpret_cast<std::uint16_t *>(d);
  for (std::size_t i = 0; i < n; ++i) p[i] = v;
  return 0;
}
CUresult cuMemGetInfo_v2(std::size_t *free_bytes, std::size_t *total) {
  *total = device_bytes();
  *free_bytes = *total - std::min(*total, memory().allocated);
  return 0;
}

} // extern "C"
