// pack.cpp — pack_weights (moec/checkpoint/pack.h): plan, check, stream slices over threads.
#include "moec/checkpoint/pack.h"

#include "json.h"
#include "moec/abi.h"
#include "moec/checkpoint/file.h"
#include "moec/checkpoint/quantize.h"
#include "moec/checkpoint/safetensors.h"
#include "moec/checkpoint/weights_file.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <mutex>
#include <thread>
#include <unistd.h>

namespace moec::checkpoint {
using detail::squote;

namespace {

/// A checkpoint tensor and where its bytes are.
struct Source {
  const TensorInfo *info = nullptr;
  const InputFile *file = nullptr;
  std::uint64_t at = 0; // file offset of its first byte
};

/// One slice of one source: rows [row0, row0 + rows) of its [R, K] view (unquantized tensors
/// are cut into runs of bytes instead: K is then the element count of a "row" of one element).
struct Job {
  const WeightTensor *tensor;
  Source src;
  Source scale;                  // f8e4m3 only: its weight_scale tensor
  std::int64_t index;            // which source of the tensor (leading stack index)
  std::int64_t row0, rows, k;    // rows of K elements
  std::int64_t rows_per_source;  // R
};

/// The whole plan: open files and jobs.
struct Plan {
  std::vector<InputFile> files;
  std::vector<Job> jobs;
  std::uint64_t source_bytes = 0;
};

Status write_all(int fd, const void *data, std::uint64_t n, std::uint64_t offset,
                 const std::string &path) {
  auto *p = static_cast<const char *>(data);
  while (n > 0) {
    ssize_t put = ::pwrite(fd, p, n, static_cast<off_t>(offset));
    if (put < 0 && errno == EINTR)
      continue;
    if (put <= 0)
      return fail(path + ": cannot write: " + std::strerror(put < 0 ? errno : EIO));
    p += put;
    offset += static_cast<std::uint64_t>(put);
    n -= static_cast<std::uint64_t>(put);
  }
  return ok();
}

bool is_float_source(DType t) { return t == DType::F32 || t == DType::BF16 || t == DType::F16; }

/// The checks that need only headers, for one source of `t` (and its scale source).
Status check_source(const WeightTensor &t, const Source &s, const std::vector<std::int64_t> &want,
                    const Source *scale, const std::string &path) {
  const std::string where = path + ": tensor " + squote(s.info->name);
  if (s.info->shape != want)
    return fail(where + " has shape " + shape_str(s.info->shape) + ", expected " +
                shape_str(want));
  if (!t.quantized()) {
    if (s.info->dtype != t.dtype)
      return fail(where + " is " + dtype_name(s.info->dtype) + ", expected " +
                  dtype_name(t.dtype));
    return ok();
  }
  if (t.quant != QuantFormat::F8E4M3) {
    if (!is_float_source(s.info->dtype))
      return fail(where + " is " + dtype_name(s.info->dtype) + "; " +
                  quant_format_name(t.quant) + " is made from f32, bf16 or f16 weights");
    return ok();
  }
  if (s.info->dtype != DType::F8E4M3)
    return fail(where + " is " + dtype_name(s.info->dtype) + ", expected F8_E4M3");
  const std::string sw = path + ": tensor " + squote(scale->info->name);
  if (!is_float_source(scale->info->dtype))
    return fail(sw + " is " + dtype_name(scale->info->dtype) + "; a weight_scale is f32, bf16 or f16");
  std::int64_t rows = 1, n = 1;
  for (std::size_t i = 0; i + 1 < want.size(); ++i)
    rows *= want[i];
  for (std::int64_t d : scale->info->shape)
    n *= d;
  const std::vector<std::int64_t> &ss = scale->info->shape;
  const bool per_tensor = n == 1 && ss.size() <= 1;
  const bool per_row = n == rows && (ss.size() == 1 || (ss.size() == 2 && ss[1] == 1));
  if (!per_tensor && !per_row)
    return fail(sw + " has shape " + shape_str(ss) + "; a weight_scale of " + shape_str(want) +
                " is per tensor ([] or [1]) or per output channel ([" + std::to_string(rows) +
                "] or [" + std::to_string(rows) + ", 1]); block-wise scales are not supported");
  return ok();
}

/// Checks every source against `m` and cuts the work into jobs.
Result<Plan> make_plan(const Manifest &m, const CheckpointHeaders &ckpt,
                       std::uint64_t slice_bytes) {
  Plan plan;
  std::map<std::string, Source> by_name;
  plan.files.reserve(ckpt.files.files.size());
  for (std::size_t f = 0; f < ckpt.files.files.size(); ++f) {
    Result<InputFile> in = InputFile::open(ckpt.files.files[f]);
    if (!in)
      return in.failure();
    plan.files.push_back(std::move(*in));
  }
  for (std::size_t f = 0; f < ckpt.headers.size(); ++f)
    for (const TensorInfo &t : ckpt.headers[f].tensors)
      by_name[t.name] = Source{&t, &plan.files[f], ckpt.headers[f].data_start + t.begin};
  auto find = [&](const std::string &name, const WeightTensor &t) -> Result<Source> {
    auto it = by_name.find(name);
    if (it == by_name.end())
      return fail(ckpt.files.source + ": no tensor " + squote(name) + ", which " +
                  squote(t.name) + " reads");
    return it->second;
  };
  for (const WeightTensor &t : m.tensors) {
    std::vector<std::int64_t> want(t.shape.begin() + (t.stacked ? 1 : 0), t.shape.end());
    std::int64_t k = want.empty() ? 1 : want.back(), rows = 1;
    for (std::size_t i = 0; i + 1 < want.size(); ++i)
      rows *= want[i];
    if (!t.quantized() && !t.panels()) { // bytes, cut anywhere on an element boundary
      rows = 1;
      for (std::int64_t d : want)
        rows *= d;
      k = 1;
    }
    const std::uint64_t row_bytes =
        static_cast<std::uint64_t>(k) * (t.quantized() ? 4 : dtype_size(t.dtype));
    std::int64_t per_job =
        static_cast<std::int64_t>(std::max<std::uint64_t>(1, slice_bytes / std::max<std::uint64_t>(row_bytes, 1)));
    if (t.panels()) // whole panels per job (the manifest checked rows % cols == 0)
      per_job = std::max(t.panel_cols, per_job - per_job % t.panel_cols);
    for (std::size_t i = 0; i < t.sources.size(); ++i) {
      Result<Source> s = find(t.sources[i], t);
      if (!s)
        return s.failure();
      Source scale;
      if (t.quant == QuantFormat::F8E4M3) {
        if (t.scale_sources.empty())
          return fail("tensor " + squote(t.name) + ": f8e4m3 needs the checkpoint's weight_scale "
                      "tensors (\"scale_sources\")");
        Result<Source> sc = find(t.scale_sources[i], t);
        if (!sc)
          return sc.failure();
        scale = *sc;
      }
      if (Status st = check_source(t, *s, want, scale.info ? &scale : nullptr, s->file->path()); !st)
        return st.failure();
      plan.source_bytes += s->info->nbytes;
      for (std::int64_t r = 0; r < rows; r += per_job)
        plan.jobs.push_back(Job{&t, *s, scale, static_cast<std::int64_t>(i), r,
                                std::min(per_job, rows - r), k, rows});
    }
  }
  return plan;
}

/// A progress line on stderr, redrawn at most every 100 ms.
class Progress {
public:
  Progress(std::uint64_t total, bool enabled, const std::string &path, unsigned threads)
      : total_(total), enabled_(enabled), path_(path), threads_(threads), start_(Clock::now()),
        last_(start_) {}
  void add(std::uint64_t n) {
    if (!enabled_)
      return;
    std::lock_guard<std::mutex> lock(mutex_);
    done_ += n;
    auto now = Clock::now();
    if (done_ < total_ && now - last_ < std::chrono::milliseconds(100))
      return;
    last_ = now;
    const double secs = std::chrono::duration<double>(now - start_).count();
    const double frac = total_ ? static_cast<double>(done_) / static_cast<double>(total_) : 1.0;
    std::string bar(static_cast<std::size_t>(30 * frac), '#');
    bar.resize(30, '.');
    std::fprintf(stderr, "\rpacking %s [%s] %3d%% %.2f/%.2f GB %.2f GB/s, %u threads",
                 path_.c_str(), bar.c_str(), static_cast<int>(100 * frac),
                 static_cast<double>(done_) / 1e9, static_cast<double>(total_) / 1e9,
                 secs > 0 ? static_cast<double>(done_) / secs / 1e9 : 0.0, threads_);
    if (done_ >= total_)
      std::fputc('\n', stderr);
    std::fflush(stderr);
  }

private:
  using Clock = std::chrono::steady_clock;
  std::uint64_t total_, done_ = 0;
  bool enabled_;
  std::string path_;
  unsigned threads_;
  Clock::time_point start_, last_;
  std::mutex mutex_;
};

/// One worker's buffers, reused from job to job.
struct Buffers {
  std::vector<unsigned char> in, scale_in; // source bytes; an FP8 slice's weight_scale bytes
  std::vector<float> f32, scales;
  std::vector<unsigned char> data;
  std::vector<std::uint16_t> half;
  std::vector<unsigned char> panel_data; // q8 in panel order: data and half, permuted
  std::vector<std::uint16_t> panel_half;
};

/// The per-row scales of rows [row0, row0 + rows) of an FP8 source, checked finite and >= 0.
Status read_row_scales(const Job &j, Buffers &b) {
  const std::uint64_t es = dtype_size(j.scale.info->dtype);
  const bool per_tensor = j.scale.info->nbytes == es;
  const std::int64_t n = per_tensor ? 1 : j.rows;
  b.scale_in.resize(static_cast<std::size_t>(n) * es);
  const std::uint64_t at = j.scale.at + (per_tensor ? 0 : static_cast<std::uint64_t>(j.row0) * es);
  if (Status s = j.scale.file->read_at(at, b.scale_in.data(), b.scale_in.size()); !s)
    return s;
  b.scales.resize(static_cast<std::size_t>(j.rows));
  widen_to_f32(b.scale_in.data(), j.scale.info->dtype, n, b.scales.data());
  for (std::int64_t i = 0; i < n; ++i)
    if (!std::isfinite(b.scales[i]) || b.scales[i] < 0)
      return fail(j.scale.file->path() + ": " + j.scale.info->name + ": element " +
                  element_index_str(j.scale.info->shape, static_cast<std::uint64_t>(per_tensor ? 0 : j.row0 + i)) +
                  " is " + detail::number(b.scales[i]) + " (a weight_scale must be finite and >= 0)");
  if (per_tensor)
    std::fill(b.scales.begin(), b.scales.end(), b.scales[0]);
  return ok();
}

Status nonfinite_at(const Job &j, std::uint64_t element, float v) {
  return fail(j.src.file->path() + ": " + j.src.info->name + ": element " +
              element_index_str(j.src.info->shape, element) + " is " +
              (std::isnan(v) ? "NaN" : v > 0 ? "+inf" : "-inf") + " (weights must be finite)");
}

/// Copies an unquantized slice after checking it (by widening: the cost is CPU, not bandwidth).
Status copy_slice(const Job &j, const std::uint64_t es, Buffers &b, int fd, const std::string &path) {
  const std::uint64_t n = static_cast<std::uint64_t>(j.rows), bytes = n * es;
  b.in.resize(bytes);
  if (Status s = j.src.file->read_at(j.src.at + static_cast<std::uint64_t>(j.row0) * es, b.in.data(), bytes); !s)
    return s;
  b.f32.resize(n);
  widen_to_f32(b.in.data(), j.tensor->dtype, static_cast<std::int64_t>(n), b.f32.data());
  for (std::uint64_t i = 0; i < n; ++i)
    if (!std::isfinite(b.f32[i]))
      return nonfinite_at(j, static_cast<std::uint64_t>(j.row0) + i, b.f32[i]);
  const std::uint64_t out = j.tensor->offset + static_cast<std::uint64_t>(j.index) * j.src.info->nbytes +
                            static_cast<std::uint64_t>(j.row0) * es;
  return write_all(fd, b.in.data(), bytes, kWeightsFileHeaderBytes + out, path);
}

/// Writes a slice of whole panels in panel order (WeightTensor::panel_cols) after checking it:
/// the bytes of rows [row0, row0 + rows) of the source, permuted in place of those rows.
Status panel_slice(const Job &j, Buffers &b, int fd, const std::string &path) {
  const WeightTensor &t = *j.tensor;
  const std::uint64_t es = dtype_size(t.dtype), k = static_cast<std::uint64_t>(j.k);
  const std::uint64_t n = static_cast<std::uint64_t>(j.rows) * k;
  b.in.resize(n * es);
  const std::uint64_t first = static_cast<std::uint64_t>(j.row0) * k;
  if (Status s = j.src.file->read_at(j.src.at + first * es, b.in.data(), n * es); !s)
    return s;
  b.f32.resize(n);
  widen_to_f32(b.in.data(), t.dtype, static_cast<std::int64_t>(n), b.f32.data());
  for (std::uint64_t i = 0; i < n; ++i)
    if (!std::isfinite(b.f32[i]))
      return nonfinite_at(j, first + i, b.f32[i]);
  const std::uint64_t cols = static_cast<std::uint64_t>(t.panel_cols),
                      lanes = static_cast<std::uint64_t>(t.panel_lanes), steps = k / lanes;
  b.data.resize(n * es);
  unsigned char *out = b.data.data();
  for (std::uint64_t p = 0; p * cols < static_cast<std::uint64_t>(j.rows); ++p)
    for (std::uint64_t l = 0; l < lanes; ++l)
      for (std::uint64_t s = 0; s < steps; ++s)
        for (std::uint64_t r = 0; r < cols; ++r, out += es)
          std::memcpy(out, &b.in[((p * cols + r) * k + l + lanes * s) * es], es);
  const std::uint64_t at = t.offset + static_cast<std::uint64_t>(j.index) * j.src.info->nbytes + first * es;
  return write_all(fd, b.data.data(), n * es, kWeightsFileHeaderBytes + at, path);
}

/// The q8 codes (b.data) and f16 scales (b.half) of a slice of whole panels in panel order
/// (WeightTensor::panel_cols), into b.panel_data and b.panel_half: panel p's codes lane by
/// lane, step by step, `cols` rows' codes of element l + lanes * step contiguous; its scales
/// group by group, the `cols` rows' scales of each group contiguous.
void q8_to_panels(const WeightTensor &t, const Job &j, Buffers &b) {
  const std::uint64_t k = static_cast<std::uint64_t>(j.k);
  const std::uint64_t rows = static_cast<std::uint64_t>(j.rows);
  const std::uint64_t cols = static_cast<std::uint64_t>(t.panel_cols),
                      lanes = static_cast<std::uint64_t>(t.panel_lanes), steps = k / lanes,
                      groups = k / kQuantGroupSize;
  b.panel_data.resize(rows * k);
  unsigned char *out = b.panel_data.data();
  for (std::uint64_t p = 0; p * cols < rows; ++p)
    for (std::uint64_t l = 0; l < lanes; ++l)
      for (std::uint64_t s = 0; s < steps; ++s)
        for (std::uint64_t r = 0; r < cols; ++r)
          *out++ = b.data[(p * cols + r) * k + l + lanes * s];
  b.panel_half.resize(rows * groups);
  std::uint16_t *half = b.panel_half.data();
  for (std::uint64_t p = 0; p * cols < rows; ++p)
    for (std::uint64_t g = 0; g < groups; ++g)
      for (std::uint64_t r = 0; r < cols; ++r)
        *half++ = b.half[(p * cols + r) * groups + g];
}

/// Quantizes (or, for f8e4m3, passes through) a slice of rows and writes data and scales;
/// q8 in panel order permutes both first.
Status quant_slice(const Job &j, Buffers &b, int fd, const std::string &path) {
  const WeightTensor &t = *j.tensor;
  const std::uint64_t es = dtype_size(j.src.info->dtype), k = static_cast<std::uint64_t>(j.k);
  const std::uint64_t n = static_cast<std::uint64_t>(j.rows) * k;
  b.in.resize(n * es);
  if (Status s = j.src.file->read_at(j.src.at + static_cast<std::uint64_t>(j.row0) * k * es, b.in.data(), n * es); !s)
    return s;
  b.f32.resize(n);
  widen_to_f32(b.in.data(), j.src.info->dtype, static_cast<std::int64_t>(n), b.f32.data());
  for (std::uint64_t i = 0; i < n; ++i)
    if (!std::isfinite(b.f32[i]))
      return nonfinite_at(j, static_cast<std::uint64_t>(j.row0) * k + i, b.f32[i]);
  const std::uint64_t row = static_cast<std::uint64_t>(j.index * j.rows_per_source + j.row0);
  const std::uint64_t row_data = t.quant == QuantFormat::Q4 ? k / 2 : k;
  const std::uint64_t row_scale = t.quant == QuantFormat::F8E4M3 ? 4 : k / kQuantGroupSize * 2;
  const void *data = b.in.data(), *scales = nullptr;
  if (t.quant == QuantFormat::F8E4M3) {
    if (Status s = read_row_scales(j, b); !s)
      return s;
    scales = b.scales.data();
  } else {
    b.data.resize(static_cast<std::size_t>(j.rows) * row_data);
    b.half.resize(static_cast<std::size_t>(j.rows) * (k / kQuantGroupSize));
    std::int64_t bad = t.quant == QuantFormat::Q8
        ? quantize_q8(b.f32.data(), j.rows, j.k, reinterpret_cast<std::int8_t *>(b.data.data()), b.half.data())
        : quantize_q4(b.f32.data(), j.rows, j.k, b.data.data(), b.half.data());
    if (bad >= 0) {
      const std::uint64_t first = static_cast<std::uint64_t>(bad) * kQuantGroupSize;
      float amax = 0;
      for (std::uint64_t i = first; i < first + kQuantGroupSize; ++i)
        amax = std::fmax(amax, std::fabs(b.f32[i]));
      return fail(j.src.file->path() + ": " + j.src.info->name + ": the group of 32 at element " +
                  element_index_str(j.src.info->shape, static_cast<std::uint64_t>(j.row0) * k + first) +
                  " has magnitude " + detail::number(amax) + ", too large for a " +
                  quant_format_name(t.quant) + " scale (f16, at most 65504)");
    }
    data = b.data.data();
    scales = b.half.data();
    if (t.panels()) // q8 (the manifest allows no other): codes and scales in panel order
      q8_to_panels(t, j, b), data = b.panel_data.data(), scales = b.panel_half.data();
  }
  const std::uint64_t rows = static_cast<std::uint64_t>(j.rows);
  if (Status s = write_all(fd, data, rows * row_data, kWeightsFileHeaderBytes + t.offset + row * row_data, path); !s)
    return s;
  return write_all(fd, scales, rows * row_scale, kWeightsFileHeaderBytes + t.scale.offset + row * row_scale, path);
}

/// Drops the source pages of a finished slice from the page cache: one pass over a checkpoint
/// larger than memory must not push everything else out.
void drop_source_pages(const Job &j) {
  const std::uint64_t es = j.tensor->quantized() ? dtype_size(j.src.info->dtype) * static_cast<std::uint64_t>(j.k)
                                                 : dtype_size(j.tensor->dtype) * static_cast<std::uint64_t>(j.k);
  ::posix_fadvise(j.src.file->fd(), static_cast<off_t>(j.src.at + static_cast<std::uint64_t>(j.row0) * es),
                  static_cast<off_t>(static_cast<std::uint64_t>(j.rows) * es), POSIX_FADV_DONTNEED);
}

} // namespace

Result<PackStats> pack_weights(const Manifest &m, const CheckpointHeaders &ckpt, int fd,
                               const std::string &path, const PackOptions &options) {
  if (!m.weights_file)
    return fail("internal error: pack_weights needs a manifest with a weights_file");
  Result<Plan> plan = make_plan(m, ckpt, options.slice_bytes);
  if (!plan)
    return plan.failure();
  const std::uint64_t file_bytes = kWeightsFileHeaderBytes + m.weights_bytes;
  if (::ftruncate(fd, static_cast<off_t>(file_bytes)) != 0)
    return fail(path + ": cannot write: " + std::strerror(errno));

  unsigned threads = options.threads ? options.threads : std::max(1u, std::thread::hardware_concurrency());
  threads = static_cast<unsigned>(std::min<std::size_t>(threads, std::max<std::size_t>(1, plan->jobs.size())));
  Progress progress(plan->source_bytes, options.progress, path, threads);
  // A checkpoint larger than half the memory cannot stay cached anyway: drop its pages as the
  // stream passes them, so packing does not push everything else out. A smaller one stays
  // cached for the next compile or run.
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  const bool drop = pages > 0 && page > 0 &&
                    plan->source_bytes > static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page) / 2;
  std::atomic<std::size_t> next{0};
  std::atomic<bool> stop{false};
  std::mutex error_mutex;
  std::size_t error_job = SIZE_MAX;
  std::string error;
  auto work = [&] {
    Buffers b;
    for (std::size_t i; !stop && (i = next++) < plan->jobs.size();) {
      const Job &j = plan->jobs[i];
      // Source bytes per row of the job (an element for row-major unquantized tensors: k = 1).
      const std::uint64_t es = j.tensor->quantized() ? dtype_size(j.src.info->dtype) * static_cast<std::uint64_t>(j.k)
                                                     : dtype_size(j.tensor->dtype) * static_cast<std::uint64_t>(j.k);
      Status s = j.tensor->quantized() ? quant_slice(j, b, fd, path)
                 : j.tensor->panels()  ? panel_slice(j, b, fd, path)
                                       : copy_slice(j, es, b, fd, path);
      if (!s) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (i < error_job) // the first in file order, whatever the thread timing
          error_job = i, error = s.error();
        stop = true;
        break;
      }
      if (drop)
        drop_source_pages(j);
      progress.add(static_cast<std::uint64_t>(j.rows) * es);
    }
  };
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < threads; ++t)
    pool.emplace_back(work);
  work();
  for (std::thread &t : pool)
    t.join();
  if (!error.empty())
    return fail(error);

  WeightsFileHeader h;
  h.arena_bytes = m.weights_bytes;
  h.file_bytes = file_bytes;
  h.fingerprint = m.weights_file->fingerprint;
  h.abi_version = MOEC_ABI_VERSION;
  const std::string header = encode_weights_file_header(h);
  if (Status s = write_all(fd, header.data(), header.size(), 0, path); !s)
    return s.failure();
  if (::fsync(fd) != 0)
    return fail(path + ": cannot write: " + std::strerror(errno));
  // Leave none of the file in the page cache. Written, it sits in folios of whatever sizes
  // the memory's fragmentation allowed (a q4 file on the 2-vCPU VM: 29% in 2 MiB ones), and a
  // binary maps cached pages as they are (on the VM, 1 GiB on 4 KiB pages read 13-19 GB/s, on
  // 2 MiB pages 19-24). Read back by the binary's first mapping (MADV_HUGEPAGE), it comes in
  // 2 MiB folios mapped whole (the same file: 100%), for every later run too, at the cost of
  // one cold start-up.
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED); // advisory: clean after fsync
  PackStats stats;
  stats.source_bytes = plan->source_bytes;
  stats.file_bytes = file_bytes;
  stats.threads = threads;
  return stats;
}

} // namespace moec::checkpoint
