// parser.cpp — PTX text to a decoded Module (see parser.h). Two passes over the text: split
// into statements (with the line each starts on), then declarations and instructions.
#include "parser.h"

#include "checks.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>

namespace ptxemu {
namespace {


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
    // A label ends at ':', but not a state-space or cache qualifier such as .shared::cta or
    // .L2::128B.
    bool qualifier = (i + 1 < src.size() && src[i + 1] == ':') || (!cur.empty() && cur.back() == ':');
    if (c == ':' && depth_in_stmt == 0 && !qualifier) {
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
      resolve_sources(*k, in);
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
    // Special registers and constants were numbered apart while registers were still being
    // declared.
    for (auto &in : k->code)
      for (auto &o : in.ops) {
        if (o.src <= kSpecialId) o.src = k->special_base() + (kSpecialId - o.src);
        else if (o.src <= -2) o.src = k->const_base() + (-2 - o.src);
      }
    const_ids_.clear();
    mod_.kernels.push_back(std::move(k));
    return j;
  }

  static Mode decode_mode(const Inst &in) {
    static const std::unordered_map<std::string, Mode> atom = {
        {"add", Mode::AtomAdd}, {"exch", Mode::AtomExch}, {"cas", Mode::AtomCas},
        {"max", Mode::AtomMax}, {"min", Mode::AtomMin},   {"and", Mode::AtomAnd},
        {"or", Mode::AtomOr},   {"inc", Mode::AtomInc}};
    static const std::unordered_map<std::string, Mode> vote = {
        {"ballot", Mode::VoteBallot}, {"all", Mode::VoteAll}, {"any", Mode::VoteAny},
        {"uni", Mode::VoteUni}};
    const std::unordered_map<std::string, Mode> *m = nullptr;
    if (in.op == Op::Atom || in.op == Op::Red) m = &atom;
    if (in.op == Op::Vote) m = &vote;
    if (in.op == Op::Prmt) return in.sub.empty() || in.sub == "b32" ? Mode::None : Mode::Unknown;
    if (!m) return Mode::None;
    auto it = m->find(in.sub);
    return it == m->end() ? Mode::Unknown : it->second;
  }

  // Gives every operand its value slot: registers and special registers by index, any
  // other value as a constant (numbered -2, -3, ... until the kernel's registers are known).
  static constexpr int kSpecialId = -1000000;
  std::unordered_map<std::uint64_t, int> const_ids_;
  void resolve_sources(Kernel &k, Inst &in) {
    Ty conv = in.op == Op::Cvt ? in.stype : in.type;
    for (auto &o : in.ops) {
      if (o.kind == Operand::Reg) { o.src = o.reg; continue; }
      if (o.kind == Operand::Spec) { o.src = kSpecialId - int(o.spec); continue; }
      std::uint64_t v = 0;
      if (o.kind == Operand::Imm) {
        v = o.imm;
        if (o.imm_f64 && conv == Ty::F32) v = bits32(float(f64(o.imm)));
        if (o.imm_f32 && conv == Ty::F64) v = bits64(double(f32(o.imm)));
      }
      auto it = const_ids_.find(v);
      if (it == const_ids_.end()) {
        it = const_ids_.emplace(v, int(k.consts.size())).first;
        k.consts.push_back(v);
      }
      o.src = -2 - it->second;
    }
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
    if (k.regs.count(s)) { // a register named without '%' (inline asm's `.reg .pred p`)
      o.kind = Operand::Reg;
      o.reg = k.regs.at(s);
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

  // cp.async.{ca,cg}.shared{::cta}.global{.L2::...} [dst], [src], cp-size{, src-size};
  // cp.async.commit_group; cp.async.wait_group N; cp.async.wait_all (PTX ISA 9.7.9.25).
  // The copy's size in bytes (4, 8 or 16; .cg only 16) is kept in `vec`.
  Inst parse_cp_async(const Kernel &k, Inst &in, const std::vector<std::string> &parts,
                      const std::string &rest, int line,
                      const std::unordered_map<std::string, std::pair<std::uint64_t, Space>> &syms) {
    auto bad = [&](const std::string &why) {
      fail("line " + std::to_string(line) + ": " + why + " in '" + in.text + "'");
    };
    if (parts.size() < 3 || parts[1] != "async") bad("unsupported instruction");
    if (!rest.empty())
      for (auto &o : split_top(rest, ',')) in.ops.push_back(operand(k, o, line, syms));
    const std::string &form = parts[2];
    if (form == "commit_group" || form == "wait_group" || form == "wait_all") {
      in.op = form == "commit_group" ? Op::CpAsyncCommit : Op::CpAsyncWait;
      std::size_t want = form == "wait_group" ? 1 : 0;
      if (parts.size() != 3 || in.ops.size() != want ||
          (want && in.ops[0].kind != Operand::Imm))
        bad("unsupported cp.async form");
      in.sub = form;
      return in;
    }
    in.op = Op::CpAsync;
    bool shared = false, global = false;
    for (std::size_t i = 3; i < parts.size(); ++i) {
      const std::string &p = parts[i];
      if (p == "shared" || p == "shared::cta") shared = true;
      else if (p == "global" && shared) global = true;
      else if (p.rfind("L2::", 0) == 0) {} // a cache hint: no effect here
      else bad("unsupported modifier ." + p);
    }
    if ((form != "ca" && form != "cg") || !shared || !global) bad("unsupported cp.async form");
    in.space = Space::Shared;
    if (in.ops.size() < 3 || in.ops.size() > 4 || in.ops[0].kind != Operand::Mem ||
        in.ops[1].kind != Operand::Mem || in.ops[2].kind != Operand::Imm)
      bad("cp.async needs [dst], [src], cp-size{, src-size}");
    in.vec = int(in.ops[2].imm);
    if ((in.vec != 4 && in.vec != 8 && in.vec != 16) || (form == "cg" && in.vec != 16))
      bad("cp-size " + std::to_string(in.vec) + " (.ca: 4, 8 or 16; .cg: 16)");
    return in;
  }

  // wgmma.fence.sync.aligned; wgmma.commit_group.sync.aligned; wgmma.wait_group.sync.aligned N;
  // wgmma.mma_async.sync.aligned.m64nNk16.f32.bf16.bf16 {d}, descA, descB, scale-d, imm-scale-a,
  // imm-scale-b, imm-trans-a, imm-trans-b (PTX ISA, "Asynchronous Warpgroup Level Matrix
  // Multiply-Accumulate"; both operands from shared-memory descriptors). N is kept in `vec`.
  Inst parse_wgmma(const Kernel &k, Inst &in, const std::vector<std::string> &parts,
                   const std::string &rest, int line,
                   const std::unordered_map<std::string, std::pair<std::uint64_t, Space>> &syms) {
    auto bad = [&](const std::string &why) {
      fail("line " + std::to_string(line) + ": " + why + " in '" + in.text + "'");
    };
    if (parts.size() < 4 || parts[2] != "sync" || parts[3] != "aligned") bad("unsupported wgmma form");
    if (!rest.empty())
      for (auto &o : split_top(rest, ',')) in.ops.push_back(operand(k, o, line, syms));
    const std::string &form = parts[1];
    if (form == "fence" || form == "commit_group" || form == "wait_group") {
      in.op = form == "fence" ? Op::WgmmaFence : form == "commit_group" ? Op::WgmmaCommit : Op::WgmmaWait;
      std::size_t want = form == "wait_group" ? 1 : 0;
      if (parts.size() != 4 || in.ops.size() != want || (want && in.ops[0].kind != Operand::Imm))
        bad("unsupported wgmma form");
      return in;
    }
    if (form != "mma_async" || parts.size() != 8) bad("unsupported wgmma form");
    int n = 0;
    if (std::sscanf(parts[4].c_str(), "m64n%dk16", &n) != 1 || n < 8 || n > 256 || n % 8 ||
        parts[4] != "m64n" + std::to_string(n) + "k16")
      bad("unsupported wgmma shape ." + parts[4]);
    in.op = Op::Wgmma;
    in.vec = n;
    in.type = parse_type(parts[5]), in.atype = parse_type(parts[6]), in.btype = parse_type(parts[7]);
    if (in.type != Ty::F32 || in.atype != Ty::BF16 || in.btype != Ty::BF16)
      bad("unsupported wgmma types (f32 += bf16 * bf16 only)");
    if (in.ops.size() != 8 || in.ops[0].kind != Operand::Vec ||
        in.ops[0].vec.size() != std::size_t(n / 2) || in.ops[1].kind != Operand::Reg ||
        in.ops[2].kind != Operand::Reg ||
        (in.ops[3].kind != Operand::Reg && in.ops[3].kind != Operand::Imm))
      bad("wgmma needs {" + std::to_string(n / 2) + " f32 registers}, descA, descB, scale-d, and 4 immediates");
    for (int i = 4; i < 8; ++i)
      if (in.ops[std::size_t(i)].kind != Operand::Imm) bad("wgmma's scale and transpose operands must be immediates");
    if (in.ops[4].imm != 1 || in.ops[5].imm != 1) bad("wgmma imm-scale-a/b other than 1");
    if (in.ops[6].imm != 0 || in.ops[7].imm != 0) bad("transposed (MN-major) wgmma operands");
    return in;
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
    if (parts[0] == "cp") return parse_cp_async(k, in, parts, rest, line, syms);
    if (parts[0] == "wgmma") return parse_wgmma(k, in, parts, rest, line, syms);
    if (parts[0] == "fence" && parts.size() > 2 && parts[1] == "proxy" && parts[2] == "async") {
      in.op = Op::Membar; // the generic -> async proxy fence: no effect in this emulation
      return in;
    }
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
    in.mode = decode_mode(in);
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
} // namespace

void parse_module(Module &m, const std::string &src) { Parser(m).parse(src); }

} // namespace ptxemu
