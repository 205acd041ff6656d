// weights.cpp — check_weights / load_weights / the memory check.
//
// The copy from the mmapped checkpoint is the one pass that touches every weight byte, so it
// also checks that every weight is finite (a NaN or infinity would only surface later as
// NaN logits): into host memory in the same pass as the copy, for a device piece by piece
// just before the upload, while the piece is still in cache. The check costs compute, not
// memory bandwidth. Measured on this 2-vCPU VM, 1 GiB bf16 checkpoint in the page cache, best
// of 7 loads: 0.36 s against 0.34 s without the check (the kernel zeroing fresh arena pages
// takes half of it); user CPU +25%. The same pass turns a SIGBUS (the file shrank under the
// mapping) into an error, and puts the experts in panel order where the manifest says
// "panels" (a blocked transpose: "panel order" below). Into host memory, the pieces (~4 MiB)
// go over the OpenMP threads (--threads).
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
#include <omp.h>
#include <unistd.h>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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

// --- panel order -----------------------------------------------------------------------------
//
// A panel's source is `cols` rows of K elements; its panel row l * steps + j (steps = K /
// lanes) holds column c = l + lanes * j of those rows (WeightTensor::panel_cols). So the
// reorder is a transpose of each panel with the columns permuted, done in blocks of columns
// (kBlockBytes) and, within a block, in squares of R x R elements (R = 8 for 16-bit, 4 for
// 32-bit elements: one 16-byte vector per row): R rows read as R vectors, transposed in
// registers and written as R vectors, one per column's panel row. The finite check is two
// vector operations per vector read; only a piece that trips it is searched again, element
// by element, in the checkpoint's order. SSE2 is every x86-64's, so the vector form needs no
// run-time choice; elsewhere the scalar square does the same.

/// Moves `rows` x `m` elements (rows of `src`, stride k; columns t < m) to to + at[t] + row:
/// the scalar square, for the edges of a panel and for machines without SSE2. Returns
/// whether one of them has all exponent bits `exp` set (NaN or infinity).
template <typename Bits>
bool move_square(const Bits *src, std::uint64_t k, Bits *to, const std::uint64_t *at,
                 std::uint64_t rows, std::uint64_t m, Bits exp) {
  bool bad = false;
  for (std::uint64_t r = 0; r < rows; ++r)
    for (std::uint64_t t = 0; t < m; ++t) {
      const Bits x = src[r * k + t];
      to[at[t] + r] = x;
      bad |= (x & exp) == exp;
    }
  return bad;
}

#if defined(__SSE2__)
/// The vector square: R rows of R elements in, R columns out; ORs the lanes that are
/// non-finite into `bad`. 16-bit: three rounds of unpacks (16-, 32-, 64-bit interleaves);
/// 32-bit: two.
template <typename Bits>
inline void move_square(const Bits *src, std::uint64_t k, Bits *to, const std::uint64_t *at,
                        __m128i exp, __m128i &bad) {
  constexpr int R = 16 / sizeof(Bits);
  __m128i a[R];
  for (int i = 0; i < R; ++i) {
    a[i] = _mm_loadu_si128(reinterpret_cast<const __m128i *>(src + i * k));
    const __m128i e = _mm_and_si128(a[i], exp);
    bad = _mm_or_si128(bad, sizeof(Bits) == 2 ? _mm_cmpeq_epi16(e, exp) : _mm_cmpeq_epi32(e, exp));
  }
  __m128i c[R];
  if constexpr (R == 8) {
    __m128i b[8];
    for (int i = 0; i < 4; ++i) {
      b[2 * i] = _mm_unpacklo_epi16(a[2 * i], a[2 * i + 1]);     // columns 0-3 of rows 2i, 2i+1
      b[2 * i + 1] = _mm_unpackhi_epi16(a[2 * i], a[2 * i + 1]); // columns 4-7
    }
    for (int h = 0; h < 2; ++h) // h: rows 0-3 or 4-7
      for (int i = 0; i < 2; ++i) {
        a[4 * h + 2 * i] = _mm_unpacklo_epi32(b[4 * h + i], b[4 * h + i + 2]); // columns 4i, 4i+1
        a[4 * h + 2 * i + 1] = _mm_unpackhi_epi32(b[4 * h + i], b[4 * h + i + 2]); // 4i+2, 4i+3
      }
    for (int i = 0; i < 4; ++i) { // a[i]: rows 0-3 of columns 2i, 2i+1; a[i + 4]: rows 4-7
      c[2 * i] = _mm_unpacklo_epi64(a[i], a[i + 4]);
      c[2 * i + 1] = _mm_unpackhi_epi64(a[i], a[i + 4]);
    }
  } else {
    const __m128i b0 = _mm_unpacklo_epi32(a[0], a[1]), b1 = _mm_unpackhi_epi32(a[0], a[1]);
    const __m128i b2 = _mm_unpacklo_epi32(a[2], a[3]), b3 = _mm_unpackhi_epi32(a[2], a[3]);
    c[0] = _mm_unpacklo_epi64(b0, b2), c[1] = _mm_unpackhi_epi64(b0, b2);
    c[2] = _mm_unpacklo_epi64(b1, b3), c[3] = _mm_unpackhi_epi64(b1, b3);
  }
  for (int t = 0; t < R; ++t)
    _mm_storeu_si128(reinterpret_cast<__m128i *>(to + at[t]), c[t]);
}
#endif

/// Bytes per block of columns: the block's `cols` source rows and its output stay in L1.
constexpr std::uint64_t kBlockBytes = 16 << 10, kMaxBlock = 1024;

/// Moves columns [0, w) of `cols` rows of `src` (row stride k) to to + at[t] + r (column t,
/// row r): squares of R x R, the edges scalar. Returns whether an element is non-finite
/// (the vector squares OR theirs into `vbad`).
template <typename Bits, typename Vec>
bool move_columns(const Bits *src, std::uint64_t k, std::uint64_t w, std::uint64_t cols,
                  Bits *to, const std::uint64_t *at, Bits exp, [[maybe_unused]] Vec vexp,
                  [[maybe_unused]] Vec &vbad) {
  constexpr std::uint64_t R = 16 / sizeof(Bits);
  bool bad = false;
  std::uint64_t r = 0;
#if defined(__SSE2__)
  for (; r + R <= cols; r += R) { // a group of R rows through the block: 8 source lines live
    std::uint64_t c = 0;
    for (; c + R <= w; c += R)
      move_square<Bits>(src + r * k + c, k, to + r, at + c, vexp, vbad);
    if (c < w)
      bad |= move_square<Bits>(src + r * k + c, k, to + r, at + c, R, w - c, exp);
  }
#endif
  if (r < cols)
    bad |= move_square<Bits>(src + r * k, k, to + r, at, cols - r, w, exp);
  return bad;
}

/// One panel: `cols` rows of `src` (K = k elements each) into panel order at `to`. Returns
/// whether it holds a non-finite element. A block of columns, a multiple of `lanes`, gives
/// each lane whole panel rows: they are put together in `stage` (L1) and copied out as one
/// run per lane, so the arena is written in runs of ~2 KiB rather than 16 bytes at a time in
/// `lanes` places (measured on this VM: 0.75x the CPU time of writing in place). A panel
/// whose `lanes` columns alone exceed the stage is written in place.
template <typename Bits>
bool panel_to_order(const Bits *src, Bits *to, std::uint64_t k, std::uint64_t cols,
                    std::uint64_t lanes, Bits exp) {
  constexpr std::uint64_t R = 16 / sizeof(Bits), kStage = kBlockBytes / sizeof(Bits);
  const std::uint64_t steps = k / lanes;
  const bool staged = cols * lanes <= kStage && lanes <= kMaxBlock;
  const std::uint64_t block =
      staged ? std::min(kStage / (cols * lanes), kMaxBlock / lanes) * lanes
             : std::clamp<std::uint64_t>(kStage / cols / R * R, R, kMaxBlock);
  alignas(64) Bits stage[kStage];
  std::uint64_t at[kMaxBlock]; // where the block's columns go, from `stage` or `to`
  std::uint64_t l = 0, j = 0;  // in place: the next column is l + lanes * j
  bool bad = false;
#if defined(__SSE2__)
  const __m128i vexp = sizeof(Bits) == 2 ? _mm_set1_epi16(static_cast<short>(exp))
                                         : _mm_set1_epi32(static_cast<int>(exp));
  __m128i vbad = _mm_setzero_si128();
#else
  const int vexp = 0;
  int vbad = 0;
#endif
  for (std::uint64_t c0 = 0; c0 < k; c0 += block) {
    const std::uint64_t w = std::min(block, k - c0); // staged: a multiple of lanes, as k is
    if (staged) {
      const std::uint64_t rows = w / lanes; // panel rows per lane in this block
      if (c0 == 0 || w < block)
        for (std::uint64_t t = 0; t < w; ++t)
          at[t] = ((t % lanes) * rows + t / lanes) * cols;
      bad |= move_columns<Bits>(src + c0, k, w, cols, stage, at, exp, vexp, vbad);
      for (std::uint64_t ln = 0; ln < lanes; ++ln)
        std::memcpy(to + (ln * steps + c0 / lanes) * cols, stage + ln * rows * cols,
                    rows * cols * sizeof(Bits));
    } else {
      for (std::uint64_t t = 0; t < w; ++t) {
        at[t] = (l * steps + j) * cols;
        if (++l == lanes)
          l = 0, ++j;
      }
      bad |= move_columns<Bits>(src + c0, k, w, cols, to, at, exp, vexp, vbad);
    }
  }
#if defined(__SSE2__)
  bad |= _mm_movemask_epi8(vbad) != 0;
#endif
  return bad;
}

template <typename Bits>
bool panels_to_order(const void *from, void *to, std::uint64_t n, std::uint64_t k,
                     std::uint64_t cols, std::uint64_t lanes, Bits exp) {
  const auto *src = static_cast<const Bits *>(from);
  auto *out = static_cast<Bits *>(to);
  for (std::uint64_t p = 0; p < n / cols; ++p)
    if (panel_to_order<Bits>(src + p * cols * k, out + p * cols * k, k, cols, lanes, exp))
      return true;
  return false;
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
  const TensorView *view;   // the checkpoint tensor
  std::uint64_t off, n;     // its bytes [off, off + n)
  std::uint64_t dst;        // arena offset
  const WeightTensor *panels = nullptr; // in panel order: whole panels of rows of K elements
  std::uint64_t first_bad = 0; // out: byte offset of the first non-finite element, or n
  bool truncated = false;      // out: reading the mapping raised SIGBUS

  bool failed() const { return truncated || first_bad < n; }
};

/// Where a permuted piece waits before a device upload (panel order only).
thread_local std::vector<unsigned char> tls_panel_buffer;

/// Checks and writes one piece (nothing when it holds a non-finite element). Sets
/// p.truncated if the mapping raised SIGBUS. SIGBUS is caught while this code reads the
/// mapping, never inside `write` (a driver call may hold locks). Nothing here owns resources
/// across the jump: `p` lives in the caller, the panel buffer is only resized before it.
[[gnu::noinline]] void copy_piece(Piece &p, const Sink &sink) {
  const unsigned char *src = static_cast<const unsigned char *>(p.view->data) + p.off;
  const DType dtype = p.view->dtype;
  unsigned char *to = sink.host ? sink.host + p.dst : nullptr;
  if (p.panels && !to) {
    tls_panel_buffer.resize(p.n);
    to = tls_panel_buffer.data();
  }
  sigjmp_buf jump;
  if (sigsetjmp(jump, /*savemask=*/1) != 0) { // unblocks SIGBUS again after the jump
    p.truncated = true;                       // (the handler cleared tls_sigbus_jump)
    return;
  }
  tls_sigbus_jump = &jump;
  std::atomic_signal_fence(std::memory_order_seq_cst); // armed before the first read
  if (!p.panels) {
    p.first_bad = first_nonfinite(src, p.n, dtype, to);
  } else {
    // Permuted and checked in one pass: one read of the mapping, one write of the arena.
    const WeightTensor &t = *p.panels;
    const std::uint64_t k = static_cast<std::uint64_t>(t.shape.back()), es = dtype_size(dtype);
    const std::uint64_t rows = p.n / (k * es);
    const std::uint64_t bad = to_panels(src, to, rows, k, static_cast<std::uint64_t>(t.panel_cols),
                                        static_cast<std::uint64_t>(t.panel_lanes), dtype);
    p.first_bad = bad < rows * k ? bad * es : p.n;
  }
  std::atomic_signal_fence(std::memory_order_seq_cst);
  tls_sigbus_jump = nullptr;
  if (!sink.host && p.first_bad == p.n)
    (*sink.write)(p.dst, p.panels ? to : src, p.n);
}

/// Every tensor's sources cut into pieces, in arena (and checkpoint) order: ~4 MiB each, a
/// tensor in panel order in pieces of whole panels.
std::vector<Piece> plan_pieces(const Manifest &manifest, const Checkpoint &checkpoint) {
  std::vector<Piece> pieces;
  for (const WeightTensor &t : manifest.tensors) {
    std::uint64_t dst = t.offset;
    std::uint64_t piece = kPiece;
    if (t.panels()) {
      if (t.dtype != DType::F32 && t.dtype != DType::BF16 && t.dtype != DType::F16)
        throw Error("tensor '" + t.name + "': panel order is only for f32, bf16 and f16");
      const std::uint64_t panel = static_cast<std::uint64_t>(t.panel_cols) *
                                  static_cast<std::uint64_t>(t.shape.back()) * dtype_size(t.dtype);
      piece = std::max(panel, kPiece - kPiece % panel);
    }
    for (const std::string &src : t.sources) {
      const TensorView &v = checkpoint.get(src);
      for (std::uint64_t off = 0; off < v.nbytes; off += piece)
        pieces.push_back(Piece{&v, off, std::min(piece, v.nbytes - off), dst + off,
                               t.panels() ? &t : nullptr});
      dst += v.nbytes;
    }
  }
  return pieces;
}

/// Copies `pieces` into host memory over the OpenMP threads (--threads), each piece on one
/// thread, handed out in order. Returns the index of the first piece that failed, or the
/// count: once a piece fails, later ones are skipped, while earlier ones still run, so the
/// error is the one a sequential copy would report.
std::size_t copy_parallel(std::vector<Piece> &pieces, const Sink &sink, ProgressBar &bar) {
  const std::int64_t count = static_cast<std::int64_t>(pieces.size());
  std::atomic<std::int64_t> failed{count};
  std::atomic<std::uint64_t> done{0};
#pragma omp parallel for schedule(dynamic, 1)
  for (std::int64_t i = 0; i < count; ++i) {
    if (i > failed.load(std::memory_order_relaxed))
      continue;
    Piece &p = pieces[static_cast<std::size_t>(i)];
    copy_piece(p, sink);
    if (p.failed()) {
      std::int64_t f = failed.load();
      while (i < f && !failed.compare_exchange_weak(f, i)) {
      }
      continue;
    }
    const std::uint64_t now = done.fetch_add(p.n) + p.n;
    if (omp_get_thread_num() == 0) // the bar is the first thread's
      bar.update(now);
  }
  return static_cast<std::size_t>(failed.load());
}

/// The error a failed piece reports.
Error piece_error(const Piece &p) {
  const TensorView &v = *p.view;
  if (p.truncated)
    return Error(v.file + ": the file changed while loading (truncated?)");
  const auto *at = static_cast<const unsigned char *>(v.data) + p.off + p.first_bad;
  return Error(v.file + ": " + v.name + ": element " +
               checkpoint::element_index_str(v.shape, (p.off + p.first_bad) / dtype_size(v.dtype)) +
               " is " + nonfinite_name(at, v.dtype) + " (weights must be finite)");
}

/// copy_weights into `sink`: host memory in parallel, a device's `write` piece by piece in
/// order on this thread (the driver's context is this thread's).
void copy_all(const Manifest &manifest, const Checkpoint &checkpoint, const LoadOptions &options,
              const Sink &sink) {
  check_weights(manifest, checkpoint);
  std::vector<Piece> pieces = plan_pieces(manifest, checkpoint);
  std::uint64_t total = 0;
  for (const WeightTensor &t : manifest.tensors)
    total += t.nbytes;
  ProgressBar bar(total, options.progress);
  SigbusGuard guard;
  if (sink.host) {
    const std::size_t failed = copy_parallel(pieces, sink, bar);
    if (failed < pieces.size())
      throw piece_error(pieces[failed]);
  } else {
    std::uint64_t done = 0;
    for (Piece &p : pieces) {
      copy_piece(p, sink);
      if (p.failed())
        throw piece_error(p);
      done += p.n;
      bar.update(done);
    }
  }
  bar.update(total);
}

} // namespace

std::uint64_t to_panels(const void *from, void *to, std::uint64_t n, std::uint64_t k,
                        std::uint64_t cols, std::uint64_t lanes, DType dtype) {
  bool bad;
  switch (dtype) {
  case DType::F32:
    bad = panels_to_order<std::uint32_t>(from, to, n, k, cols, lanes, 0x7f800000u);
    break;
  case DType::BF16:
    bad = panels_to_order<std::uint16_t>(from, to, n, k, cols, lanes, 0x7f80u);
    break;
  case DType::F16:
    bad = panels_to_order<std::uint16_t>(from, to, n, k, cols, lanes, 0x7c00u);
    break;
  default:
    throw Error(std::string("internal: panel order for ") + dtype_name(dtype));
  }
  if (!bad)
    return n * k;
  // Which element, in the checkpoint's order (a later panel may hold an earlier row's).
  return first_nonfinite(static_cast<const unsigned char *>(from), n * k * dtype_size(dtype),
                         dtype, nullptr) /
         dtype_size(dtype);
}

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
