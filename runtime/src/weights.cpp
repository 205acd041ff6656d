// weights.cpp — check_weights / load_weights / the memory check.
#include "moec/weights.h"

#include "moec/error.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

namespace moec {
namespace {

std::string shape_str(const std::vector<std::int64_t> &s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i)
    out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

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
                    " sources but has shape " + shape_str(t.shape));
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
                    shape_str(v->shape) + ", expected " + shape_str(want) +
                    (stacked ? " (one slice of " + shape_str(t.shape) + ")" : std::string()));
    }
  }
}

void copy_weights(const Manifest &manifest, const Checkpoint &checkpoint,
                  const LoadOptions &options,
                  const std::function<void(std::uint64_t, const void *, std::uint64_t)> &write) {
  check_weights(manifest, checkpoint);
  std::uint64_t total = 0;
  for (const WeightTensor &t : manifest.tensors)
    total += t.nbytes;
  ProgressBar bar(total, options.progress);
  std::uint64_t done = 0;
  constexpr std::uint64_t kChunk = 64ull << 20; // progress granularity
  for (const WeightTensor &t : manifest.tensors) {
    std::uint64_t dst = t.offset;
    for (const std::string &src : t.sources) {
      const TensorView &v = checkpoint.get(src);
      const auto *from = static_cast<const unsigned char *>(v.data);
      for (std::uint64_t off = 0; off < v.nbytes; off += kChunk) {
        std::uint64_t n = std::min(kChunk, v.nbytes - off);
        write(dst + off, from + off, n);
        done += n;
        bar.update(done);
      }
      dst += v.nbytes;
    }
  }
  bar.update(total);
}

Arena load_weights(const Manifest &manifest, const Checkpoint &checkpoint,
                   const LoadOptions &options) {
  Arena arena(manifest.weights_bytes, "weights arena"); // mmap: pages are taken as written
  auto *base = static_cast<unsigned char *>(arena.data());
  copy_weights(manifest, checkpoint, options,
               [&](std::uint64_t at, const void *src, std::uint64_t n) { std::memcpy(base + at, src, n); });
  return arena;
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
