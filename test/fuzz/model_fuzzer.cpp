// model_fuzzer.cpp — structure-aware: a valid tiny checkpoint folder, mutated as the fuzz input
// says, then the runtime's whole load and one forward step of a compiled model.
//
// The model object (mixtral-compile --emit=obj of a tiny random checkpoint, built by
// CMakeLists.txt) is linked in; its checkpoint folder is the starting point of every input.
// The input is read as a list of edits (FuzzedDataProvider): config.json fields, safetensors
// header fields (dtype, shape, data_offsets, names, metadata, the header length), raw header
// bytes, special floats in the weights (NaN, ±inf, huge, subnormal), truncated or extended
// data, and an optional sharded index. The folder is written to a temporary directory and run
// through moec::run() exactly as the binary's main() would (--prompt-ids 1,2 -n 1: checkpoint
// open, manifest checks, weight load and check, prefill of 2 tokens, logits check, sampling).
// Only the public API is used (run(), the generated entry points), so the readers underneath
// may change freely.
//
// Any input must end in exit 0 with one id on stdout, or exit 1 with exactly one line
// "error: ..." that is not an internal error (an exception other than moec::Error); anything
// else, and every sanitizer report, aborts. MOEC_FUZZ_VERBOSE=1 prints each run's outcome.
#include "moec/abi.h"
#include "moec/run.h"

#include <fuzzer/FuzzedDataProvider.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#ifndef MOEC_FUZZ_MODEL_DIR
#error "MOEC_FUZZ_MODEL_DIR: the checkpoint folder the linked model was compiled from"
#endif

namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using nlohmann::ordered_json;

std::string read_file(const fs::path &p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void write_file(const fs::path &p, const std::string &bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// The unmutated checkpoint: config.json, the safetensors header and its data section.
struct Base {
  ordered_json config;
  ordered_json header;
  std::string data;
  std::vector<std::string> tensors; // header keys except __metadata__
  fs::path dir;                      // where each input is written
};

/// Removes the input folder when the fuzzer exits.
struct RemoveAtExit {
  fs::path dir;
  ~RemoveAtExit() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

const Base &base() {
  static const Base b = [] {
    Base b;
    const fs::path src = MOEC_FUZZ_MODEL_DIR;
    b.config = ordered_json::parse(read_file(src / "config.json"));
    const std::string st = read_file(src / "model.safetensors");
    std::uint64_t n = 0;
    std::memcpy(&n, st.data(), 8);
    b.header = ordered_json::parse(st.substr(8, n));
    b.data = st.substr(8 + n);
    for (auto it = b.header.begin(); it != b.header.end(); ++it)
      if (it.key() != "__metadata__")
        b.tensors.push_back(it.key());
    std::string tmpl = (fs::temp_directory_path() / "moec_fuzz_model_XXXXXX").string();
    if (!::mkdtemp(tmpl.data()))
      std::abort();
    b.dir = tmpl;
    return b;
  }();
  static const RemoveAtExit cleanup{b.dir};
  return b;
}

/// A JSON value the checks have to get right: edges of each integer type, floats, and types.
ordered_json some_value(FuzzedDataProvider &in, const ordered_json &was) {
  switch (in.ConsumeIntegralInRange(0, 11)) {
  case 0:
    return in.ConsumeIntegral<std::int64_t>();
  case 1:
    return in.ConsumeIntegralInRange<std::int64_t>(-2, 70000);
  case 2:
    return in.ConsumeIntegral<std::uint64_t>();
  case 3:
    return in.ConsumeFloatingPoint<double>();
  case 4:
    return in.PickValueInArray({0.0, -0.0, 1e-300, 1e300, 5e-324, -1.0, 0.5, 1e38, 3.5e38});
  case 5:
    return in.ConsumeRandomLengthString(16);
  case 6:
    return nullptr;
  case 7:
    return in.ConsumeBool();
  case 8:
    return ordered_json::array({in.ConsumeIntegral<std::int32_t>()});
  case 9:
    return ordered_json::object();
  case 10: // off by one from what it was
    if (was.is_number_integer())
      return was.get<std::int64_t>() + (in.ConsumeBool() ? 1 : -1);
    return was;
  default: // a large power of two
    return std::int64_t{1} << in.ConsumeIntegralInRange(8, 62);
  }
}

/// An element of the given safetensors dtype with a special value, as raw bytes.
std::string special_bytes(FuzzedDataProvider &in, const std::string &dtype) {
  const float f = in.PickValueInArray({std::numeric_limits<float>::quiet_NaN(),
                                       std::numeric_limits<float>::infinity(),
                                       -std::numeric_limits<float>::infinity(), 3.0e38f,
                                       -3.0e38f, 1e-45f, 65504.0f, 1e10f, -0.0f});
  std::uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if (dtype == "F32")
    return std::string(reinterpret_cast<const char *>(&bits), 4);
  std::uint16_t h;
  if (dtype == "BF16") {
    h = static_cast<std::uint16_t>(bits >> 16);
  } else { // F16: NaN, inf, max, or a raw pattern
    h = in.PickValueInArray<std::uint16_t>({0x7e00, 0x7c00, 0xfc00, 0x7bff, 0x0001, 0x8000});
  }
  return std::string(reinterpret_cast<const char *>(&h), 2);
}

/// One checkpoint folder as the fuzz input describes it.
struct Folder {
  ordered_json config, header;
  std::string data;
  std::vector<std::pair<std::size_t, char>> header_bytes; // raw edits of the header text
  std::int64_t length_delta = 0;                          // edit of the 8-byte length
  bool sharded = false;                                   // add an index.json
  ordered_json index_edit;                                // null, or one weight_map edit
  std::string index_edit_key;

  void mutate(FuzzedDataProvider &in, const Base &b) {
    const int edits = in.ConsumeIntegralInRange(0, 6);
    for (int i = 0; i < edits && in.remaining_bytes() > 0; ++i) {
      const std::string &t = b.tensors[in.ConsumeIntegralInRange<std::size_t>(0, b.tensors.size() - 1)];
      switch (in.ConsumeIntegralInRange(0, 11)) {
      case 0:
        edit_config(in);
        break;
      case 1: // a header entry: dtype, shape, data_offsets, name
      case 2:
      case 3:
      case 6:
        if (header.contains(t))
          edit_entry(in, b, t);
        break;
      case 4: // special values in the weights (twice as likely)
      case 5:
        poke_weights(in, b.header[t]);
        break;
      case 7: // __metadata__
        header["__metadata__"][in.ConsumeRandomLengthString(8)] = some_value(in, nullptr);
        break;
      case 8: // truncate or extend the data section
        if (in.ConsumeBool())
          data.resize(in.ConsumeIntegralInRange<std::size_t>(0, data.size()));
        else
          data.append(in.ConsumeIntegralInRange<std::size_t>(1, 4096),
                      static_cast<char>(in.ConsumeIntegral<std::uint8_t>()));
        break;
      case 9: // a raw byte of the serialised header
        header_bytes.emplace_back(in.ConsumeIntegral<std::uint16_t>(),
                                  static_cast<char>(in.ConsumeIntegral<std::uint8_t>()));
        break;
      case 10: // the declared header length
        length_delta = in.PickValueInArray<std::int64_t>({-8, -1, 1, 8, 1 << 20, -(1 << 20)});
        break;
      default: // a sharded checkpoint: index.json naming model.safetensors, one entry edited
        sharded = true;
        if (in.ConsumeBool()) {
          index_edit_key = in.ConsumeBool() ? t : in.ConsumeRandomLengthString(16);
          index_edit = in.ConsumeBool()
                           ? ordered_json(in.PickValueInArray<std::string>(
                                 {"missing.safetensors", "../model.safetensors", "sub/x.safetensors",
                                  "", "config.json", "model.safetensors.index.json", "."}))
                           : some_value(in, nullptr);
        }
        break;
      }
    }
  }

  /// One config.json field replaced or removed.
  void edit_config(FuzzedDataProvider &in) {
    if (config.empty())
      return;
    auto it = std::next(config.begin(),
                        in.ConsumeIntegralInRange<std::ptrdiff_t>(0, config.size() - 1));
    if (in.ConsumeIntegralInRange(0, 7) == 0)
      config.erase(it.key());
    else
      *it = some_value(in, *it);
  }

  /// Tensor `t`'s header entry: its dtype, one dimension or the whole shape, one end of its
  /// data_offsets or another tensor's, or its name (renamed, dropped or duplicated).
  void edit_entry(FuzzedDataProvider &in, const Base &b, const std::string &t) {
    ordered_json &entry = header[t];
    switch (in.ConsumeIntegralInRange(0, 3)) {
    case 0:
      entry["dtype"] = in.ConsumeBool() ? ordered_json(in.PickValueInArray<std::string>(
                                              {"F32", "BF16", "F16", "F64", "I32", "U8", "BOOL",
                                               "F8_E4M3", "bf16", ""}))
                                        : some_value(in, entry["dtype"]);
      break;
    case 1: {
      ordered_json &shape = entry["shape"];
      if (shape.is_array() && !shape.empty() && in.ConsumeBool())
        shape[in.ConsumeIntegralInRange<std::size_t>(0, shape.size() - 1)] = some_value(in, shape[0]);
      else
        shape = in.ConsumeBool() ? ordered_json::array() : some_value(in, shape);
      break;
    }
    case 2: {
      ordered_json &off = entry["data_offsets"];
      const std::string &u = b.tensors[in.ConsumeIntegralInRange<std::size_t>(0, b.tensors.size() - 1)];
      if (in.ConsumeBool() && header.contains(u))
        off = header[u]["data_offsets"];
      else if (off.is_array() && off.size() == 2)
        off[in.ConsumeIntegralInRange(0, 1)] = some_value(in, off[0]);
      break;
    }
    default: {
      const int what = in.ConsumeIntegralInRange(0, 2); // rename, drop, duplicate
      const ordered_json copy = entry;
      if (what != 2)
        header.erase(t);
      if (what != 1)
        header[in.ConsumeRandomLengthString(64)] = copy;
      break;
    }
    }
  }

  /// A special value (NaN, ±inf, huge, ...) written over one element or a run of elements of
  /// the tensor whose unmutated header entry is `e`.
  void poke_weights(FuzzedDataProvider &in, const ordered_json &e) {
    const std::string dtype = e["dtype"];
    const std::size_t esize = dtype == "F32" ? 4 : 2;
    const std::uint64_t begin = e["data_offsets"][0], end = e["data_offsets"][1];
    const std::uint64_t count = (end - begin) / esize;
    const std::string v = special_bytes(in, dtype);
    const bool run = in.ConsumeBool();
    std::uint64_t at = in.ConsumeIntegralInRange<std::uint64_t>(0, count - 1);
    const std::uint64_t n = run ? in.ConsumeIntegralInRange<std::uint64_t>(1, count - at) : 1;
    for (std::uint64_t k = 0; k < n; ++k, ++at)
      if (begin + (at + 1) * esize <= data.size())
        data.replace(begin + at * esize, esize, v);
  }

  void write(const fs::path &dir) const {
    constexpr auto kReplace = ordered_json::error_handler_t::replace; // fuzzed strings
    write_file(dir / "config.json", config.dump(2, ' ', false, kReplace));
    std::string h = header.dump(-1, ' ', false, kReplace);
    for (auto [at, byte] : header_bytes)
      if (!h.empty())
        h[at % h.size()] = byte;
    const std::uint64_t len = h.size() + static_cast<std::uint64_t>(length_delta);
    std::string st(8, '\0');
    std::memcpy(st.data(), &len, 8);
    write_file(dir / "model.safetensors", st + h + data);
    std::error_code ec;
    fs::remove(dir / "model.safetensors.index.json", ec);
    if (sharded) {
      ordered_json map = ordered_json::object();
      for (auto it = header.begin(); it != header.end(); ++it)
        if (it.key() != "__metadata__")
          map[it.key()] = "model.safetensors";
      if (!index_edit_key.empty() || !index_edit.is_null())
        map[index_edit_key] = index_edit;
      write_file(dir / "model.safetensors.index.json",
                 ordered_json{{"metadata", ordered_json::object()}, {"weight_map", map}}.dump(
                     -1, ' ', false, kReplace));
    }
  }
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  const Base &b = base();
  FuzzedDataProvider in(data, size);
  Folder f{b.config, b.header, b.data};
  f.mutate(in, b);
  f.write(b.dir);

  std::ostringstream out, err;
  moec::RunIO io{out, err, false};
  const moec::EntryPoints entry{moec_manifest, moec_prefill, moec_decode};
  const int rc = moec::run({"--model", b.dir.string(), "--prompt-ids", "1,2", "-n", "1",
                            "--print-ids", "--temp", "0", "-q", "--threads", "1"},
                           entry, io, "fuzz_model");
  const std::string e = err.str(), o = out.str();
  static const bool verbose = std::getenv("MOEC_FUZZ_VERBOSE") != nullptr; // show outcomes
  if (verbose)
    std::fprintf(stderr, "rc %d: %s", rc, e.empty() ? "\n" : e.c_str());
  const bool one_line = !e.empty() && e.back() == '\n' && e.find('\n') == e.size() - 1;
  if (rc == 0 && (!e.empty() || o.empty()))
    std::abort(); // success prints an id and nothing on stderr
  if (rc == 1 && (!one_line || e.rfind("error: ", 0) != 0 || e.rfind("error: internal", 0) == 0))
    std::abort(); // one user-facing line
  if (rc != 0 && rc != 1)
    std::abort();
  return 0;
}
