// weights.cpp — check_weights / load_weights / the memory check.
//
// The copy from the mmapped checkpoint is the one pass that touches every weight byte, so it
// also checks that every weight is finite (a NaN or infinity would only surface later as
// NaN logits): into host memory in the same pass as the copy, for a device piece by piece
// just before the upload, while the piece is still in cache. The check costs compute, not
// memory bandwidth. Measured on this 2-vCPU VM, 1 GiB bf16 checkpoint in the page cache, best
// of 7 loads: 0.36 s against 0.34 s without the check (the kernel zeroing fresh arena pages
// takes half of it); user CPU +25%. The same pass turns a SIGBUS (the file shrank under the
// mapping) into an error.
#include "moec/weights.h"

#include "moec/checkpoint/file.h"
#include "moec/checkpoint/safetensors.h"
#include "moec/checkpoint/weights_file.h"
#include "moec/error.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csetjmp>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

namespace moec {
namespace {

/// "512 B", "3.50 KiB", "1.25 GiB".
std::string human_bytes(std::uint64_t bytes) {
  static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 6) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0)
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  else
    std::snprintf(buf, sizeof buf, "%.2f %s", v, units[u]);
  return buf;
}

/// A one-line progress bar on stderr, redrawn at most every 100 ms.
class ProgressBar {
public:
  ProgressBar(std::uint64_t total, bool enabled)
      : total_(total), enabled_(enabled), start_(Clock::now()), last_(start_) {}

  void update(std::uint64_t done) {
    if (!enabled_ || finished_)
      return;
    auto now = Clock::now();
    if (done < total_ && now - last_ < std::chrono::milliseconds(100))
      return;
    last_ = now;
    double secs = std::chrono::duration<double>(now - start_).count();
    double rate = secs > 0 ? static_cast<double>(done) / secs / 1e9 : 0.0;
    int pct = total_ ? static_cast<int>(100.0 * static_cast<double>(done) /
                                        static_cast<double>(total_))
                     : 100;
    const int width = 30;
    std::string bar(static_cast<std::size_t>(width * pct / 100), '#');
    bar.resize(width, '.');
    std::fprintf(stderr, "\rloading weights [%s] %3d%% %.2f/%.2f GB %.2f GB/s", bar.c_str(), pct,
                 static_cast<double>(done) / 1e9, static_cast<double>(total_) / 1e9, rate);
    if (done >= total_) {
      std::fputc('\n', stderr);
      finished_ = true;
    }
    std::fflush(stderr);
  }

private:
  using Clock = std::chrono::steady_clock;
  std::uint64_t total_;
  bool enabled_;
  bool finished_ = false;
  Clock::time_point start_, last_;
};


// --- finiteness ----------------------------------------------------------------------------

/// Bytes checked per step (and, for a device, then uploaded while still in cache: L2 to L3
/// sized, yet large enough that a GPU upload per piece costs little in call overhead).
constexpr std::uint64_t kPiece = 4ull << 20;

/// Byte offset of the first element of [p, p + n) whose exponent bits are all ones (NaN or
/// infinity), or n; elements of `sizeof(Bits)` bytes, exponent mask `kExp`. With `to`, the
/// bytes are also copied there in the same pass (one read of the source; bytes after a bad
/// element may be left uncopied). The fast loop reads 8 bytes (4 or 2 elements) at a time:
/// y = (x & exp) ^ exp has a zero lane exactly where an element is non-finite, and as every
/// lane of y is below its sign bit, y - 1 per lane sets a lane's top bit only below such a
/// zero. Only a block that trips it is searched element by element.
template <typename Bits, Bits kExp>
std::uint64_t first_nonfinite(const unsigned char *p, std::uint64_t n, unsigned char *to) {
  constexpr int kLanes = 8 / sizeof(Bits);
  std::uint64_t exp = 0, ones = 0, tops = 0;
  for (int l = 0; l < kLanes; ++l) {
    exp = exp << (8 * sizeof(Bits)) | kExp;
    ones = ones << (8 * sizeof(Bits)) | 1;
    tops = tops << (8 * sizeof(Bits)) | (Bits(1) << (8 * sizeof(Bits) - 1));
  }
  constexpr std::uint64_t kBlock = 4096; // bytes
  for (std::uint64_t b = 0; b < n; b += kBlock) {
    const std::uint64_t end = std::min(n, b + kBlock), words = (end - b) / 8;
    std::uint64_t acc = 0;
    if (to) {
      for (std::uint64_t i = 0; i < words; ++i) {
        std::uint64_t x;
        std::memcpy(&x, p + b + 8 * i, 8);
        std::memcpy(to + b + 8 * i, &x, 8);
        acc |= ((x & exp) ^ exp) - ones;
      }
      std::memcpy(to + b + 8 * words, p + b + 8 * words, end - b - 8 * words);
    } else {
      for (std::uint64_t i = 0; i < words; ++i) {
        std::uint64_t x;
        std::memcpy(&x, p + b + 8 * i, 8);
        acc |= ((x & exp) ^ exp) - ones;
      }
    }
    if (!(acc & tops) && b + 8 * words == end)
      continue;
    for (std::uint64_t i = b; i < end; i += sizeof(Bits)) {
      Bits x;
      std::memcpy(&x, p + i, sizeof(Bits));
      if ((x & kExp) == kExp)
        return i;
    }
  }
  return n;
}

std::uint64_t first_nonfinite(const unsigned char *p, std::uint64_t n, DType t,
                              unsigned char *to) {
  switch (t) {
  case DType::F32:
    return first_nonfinite<std::uint32_t, 0x7f800000u>(p, n, to);
  case DType::BF16:
    return first_nonfinite<std::uint16_t, 0x7f80u>(p, n, to);
  case DType::F16:
    return first_nonfinite<std::uint16_t, 0x7c00u>(p, n, to);
  default: // check_weights admits only the weight dtypes
    if (to)
      std::memcpy(to, p, n);
    return n;
  }
}

/// Rows [0, n) of an [n, k] matrix `from` (elements of `sizeof(T)` bytes, n a multiple of
/// `cols`, k of `lanes`) into panel order at `to`: per panel of `cols` rows, lane l, step j,
/// the rows' W[r, l + lanes * j] contiguous (WeightTensor::panel_cols; the packer's order).
/// Reads each source row in order, so a panel (<= 896 KiB for Mixtral's w2 in f32) is
/// read from the mapping once and written from cache.
template <typename T>
void to_panels(const unsigned char *from, unsigned char *to, std::uint64_t n, std::uint64_t k,
               std::uint64_t cols, std::uint64_t lanes) {
  const std::uint64_t steps = k / lanes;
  for (std::uint64_t p = 0; p < n / cols; ++p)
    for (std::uint64_t r = 0; r < cols; ++r) {
      const unsigned char *row = from + ((p * cols + r) * k) * sizeof(T);
      unsigned char *out = to + (p * cols * k + r) * sizeof(T);
      for (std::uint64_t l = 0; l < lanes; ++l)
        for (std::uint64_t j = 0; j < steps; ++j)
          std::memcpy(out + ((l * steps + j) * cols) * sizeof(T), row + (l + lanes * j) * sizeof(T),
                      sizeof(T));
    }
}

/// "NaN", "+inf" or "-inf" for a non-finite element at `p`.
const char *nonfinite_name(const unsigned char *p, DType t) {
  std::uint32_t bits = 0, mantissa = 0, sign = 0;
  if (t == DType::F32) {
    std::memcpy(&bits, p, 4);
    mantissa = bits & 0x007fffffu, sign = bits >> 31;
  } else {
    std::uint16_t h;
    std::memcpy(&h, p, 2);
    mantissa = h & (t == DType::F16 ? 0x03ffu : 0x007fu), sign = h >> 15;
  }
  return mantissa ? "NaN" : sign ? "-inf" : "+inf";
}

// --- SIGBUS while reading the mapping --------------------------------------------------------

// A mapped file that shrinks under us makes the next read of a vanished page raise SIGBUS.
// While a piece is copied, the handler jumps back to copy_piece, which reports it; outside,
// the handler puts the previous disposition back and returns, so the fault repeats under it.
thread_local sigjmp_buf *volatile tls_sigbus_jump = nullptr;
struct sigaction g_previous_sigbus;

void on_sigbus(int) {
  if (sigjmp_buf *jump = tls_sigbus_jump) {
    tls_sigbus_jump = nullptr;
    siglongjmp(*jump, 1);
  }
  sigaction(SIGBUS, &g_previous_sigbus, nullptr);
}

/// Installs on_sigbus for its lifetime and restores the previous SIGBUS action afterwards.
class SigbusGuard {
public:
  SigbusGuard() {
    struct sigaction sa {};
    sa.sa_handler = on_sigbus;
    sigemptyset(&sa.sa_mask);
    installed_ = sigaction(SIGBUS, &sa, &previous_) == 0;
    g_previous_sigbus = previous_;
  }
  ~SigbusGuard() {
    if (installed_)
      sigaction(SIGBUS, &previous_, nullptr);
  }
  SigbusGuard(const SigbusGuard &) = delete;
  SigbusGuard &operator=(const SigbusGuard &) = delete;

private:
  struct sigaction previous_ {};
  bool installed_ = false;
};

/// Where the pieces go: host memory, copied in the same pass as the check, or any `write`
/// (device memory), called after the check.
struct Sink {
  unsigned char *host = nullptr;
  const WriteFn *write = nullptr;
};

/// One piece of a checkpoint tensor on its way to the arena.
struct Piece {
  const unsigned char *src; // [n] bytes in the mapping
  std::uint64_t n;
  DType dtype;
  std::uint64_t dst;        // arena offset
  std::uint64_t first_bad;  // out: byte offset of the first non-finite element, or n
  const WeightTensor *panels = nullptr; // in panel order: whole panels of rows of K elements
};

/// Where a permuted piece waits before a device upload (panel order only).
thread_local std::vector<unsigned char> tls_panel_buffer;

/// Checks and writes one piece (nothing when it holds a non-finite element). Returns false
/// if the mapping raised SIGBUS. SIGBUS is caught while this code reads the mapping, never
/// inside `write` (a driver call may hold locks). Nothing here owns resources across the
/// jump: `p` lives in the caller.
[[gnu::noinline]] bool copy_piece(Piece &p, const Sink &sink) {
  sigjmp_buf jump;
  if (sigsetjmp(jump, /*savemask=*/1) != 0) // unblocks SIGBUS again after the jump
    return false;                           // (the handler cleared tls_sigbus_jump)
  tls_sigbus_jump = &jump;
  std::atomic_signal_fence(std::memory_order_seq_cst); // armed before the first read
  const unsigned char *out = p.src;
  if (!p.panels) {
    p.first_bad = first_nonfinite(p.src, p.n, p.dtype, sink.host ? sink.host + p.dst : nullptr);
  } else if ((p.first_bad = first_nonfinite(p.src, p.n, p.dtype, nullptr)) == p.n) {
    // Checked in the source's order (errors name the checkpoint's element), then permuted
    // while the piece is in cache: still one read of the mapping, one write of the arena.
    unsigned char *to = sink.host ? sink.host + p.dst : nullptr;
    if (!to) {
      tls_panel_buffer.resize(p.n);
      to = tls_panel_buffer.data();
    }
    const WeightTensor &t = *p.panels;
    const std::uint64_t k = static_cast<std::uint64_t>(t.shape.back()), es = dtype_size(p.dtype);
    const std::uint64_t rows = p.n / (k * es), cols = static_cast<std::uint64_t>(t.panel_cols),
                        lanes = static_cast<std::uint64_t>(t.panel_lanes);
    if (es == 4)
      to_panels<std::uint32_t>(p.src, to, rows, k, cols, lanes);
    else
      to_panels<std::uint16_t>(p.src, to, rows, k, cols, lanes);
    out = to;
  }
  std::atomic_signal_fence(std::memory_order_seq_cst);
  tls_sigbus_jump = nullptr;
  if (!sink.host && p.first_bad == p.n)
    (*sink.write)(p.dst, out, p.n);
  return true;
}

/// copy_weights into `sink`.
void copy_all(const Manifest &manifest, const Checkpoint &checkpoint, const LoadOptions &options,
              const Sink &sink) {
  check_weights(manifest, checkpoint);
  std::uint64_t total = 0;
  for (const WeightTensor &t : manifest.tensors)
    total += t.nbytes;
  ProgressBar bar(total, options.progress);
  std::uint64_t done = 0;
  SigbusGuard guard;
  for (const WeightTensor &t : manifest.tensors) {
    std::uint64_t dst = t.offset;
    // Panel order (the compiler chose it for its CPU target; manifest "panels"): pieces of
    // whole panels, each permuted as it is copied.
    std::uint64_t piece = kPiece;
    if (t.panels()) {
      const std::uint64_t panel = static_cast<std::uint64_t>(t.panel_cols) *
                                  static_cast<std::uint64_t>(t.shape.back()) * dtype_size(t.dtype);
      piece = std::max(panel, kPiece - kPiece % panel);
    }
    for (const std::string &src : t.sources) {
      const TensorView &v = checkpoint.get(src);
      const auto *from = static_cast<const unsigned char *>(v.data);
      for (std::uint64_t off = 0; off < v.nbytes; off += piece) {
        Piece p{from + off, std::min(piece, v.nbytes - off), v.dtype, dst + off, 0,
                t.panels() ? &t : nullptr};
        if (!copy_piece(p, sink))
          throw Error(v.file + ": the file changed while loading (truncated?)");
        if (p.first_bad < p.n)
          throw Error(v.file + ": " + v.name + ": element " +
                      checkpoint::element_index_str(v.shape, (off + p.first_bad) / dtype_size(v.dtype)) + " is " +
                      nonfinite_name(from + off + p.first_bad, v.dtype) +
                      " (weights must be finite)");
        done += p.n;
        bar.update(done);
      }
      dst += v.nbytes;
    }
  }
  bar.update(total);
}

} // namespace

void check_weights(const Manifest &manifest, const Checkpoint &checkpoint) {
  for (const WeightTensor &t : manifest.tensors) {
    const std::string where = "tensor '" + t.name + "'";
    if (t.offset + t.nbytes > manifest.weights_bytes || t.offset + t.nbytes < t.offset)
      throw Error(where + ": bytes [" + std::to_string(t.offset) + ", +" +
                  std::to_string(t.nbytes) + ") overflow the weights arena of " +
                  std::to_string(manifest.weights_bytes) + " bytes");
    const bool stacked = t.stacked;
    std::vector<std::int64_t> want = t.shape;
    if (stacked) {
      if (want.empty() || want[0] != static_cast<std::int64_t>(t.sources.size()))
        throw Error(where + ": stacks " + std::to_string(t.sources.size()) +
                    " sources but has shape " + checkpoint::shape_str(t.shape));
      want.erase(want.begin());
    }
    for (const std::string &src : t.sources) {
      const TensorView *v = checkpoint.find(src);
      if (!v)
        throw Error(where + ": source '" + src + "' is not in the checkpoint " +
                    checkpoint.source());
      if (v->dtype != t.dtype)
        throw Error(where + ": source '" + src + "' in " + v->file + " is " +
                    dtype_name(v->dtype) + ", expected " + dtype_name(t.dtype));
      if (v->shape != want)
        throw Error(where + ": source '" + src + "' in " + v->file + " has shape " +
                    checkpoint::shape_str(v->shape) + ", expected " + checkpoint::shape_str(want) +
                    (stacked ? " (one slice of " + checkpoint::shape_str(t.shape) + ")" : std::string()));
    }
  }
}

void copy_weights(const Manifest &manifest, const Checkpoint &checkpoint,
                  const LoadOptions &options, const WriteFn &write) {
  copy_all(manifest, checkpoint, options, Sink{nullptr, &write});
}

Arena load_weights(const Manifest &manifest, const Checkpoint &checkpoint,
                   const LoadOptions &options) {
  Arena arena(manifest.weights_bytes, "weights arena"); // mmap: pages are taken as written
  copy_all(manifest, checkpoint, options, Sink{static_cast<unsigned char *>(arena.data()), nullptr});
  return arena;
}

std::string weights_file_path(const Manifest &manifest, const std::optional<std::string> &flag,
                              const std::string &executable) {
  if (flag)
    return *flag;
  std::string exe = executable;
  char buf[4096];
  const ssize_t n = ::readlink(executable.c_str(), buf, sizeof buf);
  if (n > 0 && static_cast<std::size_t>(n) < sizeof buf)
    exe.assign(buf, static_cast<std::size_t>(n));
  const std::size_t slash = exe.rfind('/');
  return (slash == std::string::npos ? std::string() : exe.substr(0, slash + 1)) +
         manifest.weights_file->name;
}

Arena map_weights_file(const Manifest &manifest, const std::string &path) {
  if (!manifest.weights_file)
    throw Error("internal error: this binary has no packed weights file");
  checkpoint::Result<checkpoint::InputFile> f = checkpoint::InputFile::open(path);
  if (!f)
    throw Error(f.error() + " (the packed weights file; mixtral-compile wrote it beside the "
                            "binary, --weights FILE names another place)");
  unsigned char header[checkpoint::kWeightsFileHeaderBytes];
  const std::uint64_t n = std::min<std::uint64_t>(f->size(), sizeof header);
  if (checkpoint::Status s = f->read_at(0, header, n); !s)
    throw Error(s.error());
  if (checkpoint::Status s = checkpoint::check_weights_file_header(
          header, n, f->size(), path, manifest.weights_bytes, manifest.weights_file->fingerprint);
      !s)
    throw Error(s.error());
  return Arena::map_file(f->fd(), f->size(), checkpoint::kWeightsFileHeaderBytes, path);
}

std::optional<std::uint64_t> mem_available_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key, unit;
  std::uint64_t value;
  while (in >> key >> value) {
    std::getline(in, unit);
    if (key == "MemAvailable:")
      return value * 1024; // reported in kB
  }
  return std::nullopt;
}

void check_device_memory(const Manifest &manifest, std::uint64_t free_bytes,
                         const std::string &device) {
  const std::uint64_t need = manifest.weights_bytes + manifest.kv_bytes;
  if (need < manifest.weights_bytes || need > free_bytes)
    throw Error("not enough GPU memory: the model needs " + human_bytes(need) + " (weights " +
                human_bytes(manifest.weights_bytes) + " + KV cache " + human_bytes(manifest.kv_bytes) +
                ") but " + device + " has " + human_bytes(free_bytes) + " free");
}

void check_memory(const Manifest &manifest, std::optional<std::uint64_t> available) {
  if (!available)
    return;
  const std::uint64_t need = manifest.weights_bytes + manifest.kv_bytes;
  if (need < manifest.weights_bytes || need > *available)
    throw Error("not enough memory: the model needs " + human_bytes(need) + " (weights " +
                human_bytes(manifest.weights_bytes) + " + KV cache " + human_bytes(manifest.kv_bytes) +
                ") but MemAvailable is " + human_bytes(*available));
}

} // namespace moec
