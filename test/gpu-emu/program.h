// program.h — a PTX module as the parser leaves it and the interpreter runs it: kernels as
// arrays of decoded instructions (opcode and modifiers as enums, operands resolved to register
// slots, immediates and symbol addresses; branch targets resolved to instruction indices).
// No text is looked at while a kernel runs, except to word a fault.
#pragma once

#include "numerics.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace ptxemu {

// A rejected module or a failed launch: the message names the kernel, thread and PTX line.
struct Fault : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] inline void fail(const std::string &msg) { throw Fault(msg); }

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
  Vote, Activemask, Copysign, Subc, Trap, Nop,
  CpAsync, CpAsyncCommit, CpAsyncWait, // cp.async[.commit_group|.wait_group|.wait_all]
  Wgmma, WgmmaFence, WgmmaCommit, WgmmaWait // wgmma.{mma_async,fence,commit_group,wait_group}
};

enum class Space : std::uint8_t { Generic, Global, Shared, Local, Param, Const };

// setp comparisons (lo/ls/hi/hs: unsigned; ...u: unordered, true when either is NaN).
enum class Cmp : std::uint8_t {
  None, EQ, NE, LT, LE, GT, GE, LO, LS, HI, HS, EQU, NEU, LTU, LEU, GTU, GEU, NUM, NaN
};
inline Cmp parse_cmp(const std::string &c) {
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
constexpr int kSpecials = int(Special::WarpSz) + 1;

// The operation a modifier names, decoded (atom/red's operation, vote's mode; prmt's mode
// other than the default): Unknown faults when executed, naming `sub`.
enum class Mode : std::uint8_t {
  None, Unknown, AtomAdd, AtomExch, AtomCas, AtomMax, AtomMin, AtomAnd, AtomOr, AtomInc,
  VoteBallot, VoteAll, VoteAny, VoteUni
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
  // The value slot a source operand is read from (see Kernel): its register, special
  // register or constant (immediates and symbol addresses, already converted to the
  // instruction's type; 0 for operands that are not values).
  int src = -1;
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
  Mode mode = Mode::None; // `sub` decoded for atom/red, vote and prmt
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
  // Value slots, each one 64-bit value per lane: the registers [0, reg_bits.size()), then
  // the special registers (kSpecials, in Special's order), then the constants (`consts`).
  std::vector<std::uint64_t> consts;
  int special_base() const { return int(reg_bits.size()); }
  int const_base() const { return special_base() + kSpecials; }
  int slots() const { return const_base() + int(consts.size()); }
};

struct Module {
  std::vector<std::unique_ptr<Kernel>> kernels;
  std::vector<std::unique_ptr<std::vector<std::uint8_t>>> globals; // module .global data
};
} // namespace ptxemu
