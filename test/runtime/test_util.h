// test_util.h — helpers shared by the runtime tests: a temp directory and safetensors writers.
#pragma once

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <gtest/gtest.h>
#include <streambuf>
#include <string>
#include <vector>

// A test whose prerequisite is missing skips — except in CI (CI=true), where every
// prerequisite is installed, so a skip means a broken setup and fails instead.
#define MOEC_SKIP_UNLESS_CI(why)                                                               \
  do {                                                                                         \
    const char *ci_ = std::getenv("CI");                                                       \
    if (ci_ && std::string(ci_) == "true")                                                     \
      FAIL() << "CI=true, so this may not skip: " << why;                                      \
    GTEST_SKIP() << why;                                                                       \
  } while (0)

namespace moec::test {

/// A fresh directory under $TMPDIR, removed with its contents on destruction.
class TempDir {
public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "moec_rt_XXXXXX").string();
    if (!::mkdtemp(tmpl.data()))
      throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string &name) const { return (path_ / name).string(); }
  std::string str() const { return path_.string(); }

private:
  std::filesystem::path path_;
};

inline void write_bytes(const std::string &path, const std::string &bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// A safetensors file from a raw header string and data bytes; `declared_len` overrides the
/// 8-byte length field (for malformed cases).
inline void write_raw_safetensors(const std::string &path, const std::string &header,
                                  const std::string &data = "",
                                  std::uint64_t declared_len = UINT64_MAX) {
  std::uint64_t n = declared_len == UINT64_MAX ? header.size() : declared_len;
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i)
    bytes[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xFF);
  write_bytes(path, bytes + header + data);
}

struct TensorSpec {
  std::string name;
  std::string dtype;                // safetensors spelling: "F32", "BF16", ...
  std::vector<std::int64_t> shape;
  std::string data;                 // raw bytes, must match shape * dtype size
};

/// A well-formed safetensors file with the tensors laid out back to back.
inline void write_safetensors(const std::string &path, const std::vector<TensorSpec> &tensors) {
  nlohmann::json header = nlohmann::json::object();
  header["__metadata__"] = {{"format", "pt"}};
  std::string data;
  for (const TensorSpec &t : tensors) {
    header[t.name] = {{"dtype", t.dtype},
                      {"shape", t.shape},
                      {"data_offsets", {data.size(), data.size() + t.data.size()}}};
    data += t.data;
  }
  write_raw_safetensors(path, header.dump(), data);
}

/// n f32 values start, start+1, ... as raw bytes.
inline std::string f32_iota(std::size_t n, float start = 0) {
  std::string out(n * 4, '\0');
  for (std::size_t i = 0; i < n; ++i) {
    float v = start + static_cast<float>(i);
    std::memcpy(&out[i * 4], &v, 4);
  }
  return out;
}

/// A stream buffer whose every write fails as a full disk does (errno ENOSPC): stands for a
/// stdout that cannot be written.
class FullBuf : public std::streambuf {
protected:
  int overflow(int) override {
    errno = ENOSPC;
    return traits_type::eof();
  }
  std::streamsize xsputn(const char *, std::streamsize) override {
    errno = ENOSPC;
    return 0;
  }
};

} // namespace moec::test
