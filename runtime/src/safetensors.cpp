// safetensors.cpp — mmap + validation of safetensors files and sharded indexes.
//
// Layout of a file: u64 little-endian N, then N bytes of JSON header, then the data region.
// Header entries: {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}}
// with offsets relative to the start of the data region; "__metadata__" maps strings to strings.
#include "moec/safetensors.h"

#include "checked.h"
#include "moec/error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace moec {
namespace fs = std::filesystem;
using detail::checked_add;
using detail::checked_nbytes;
using detail::json_uint;
using nlohmann::json;

namespace {
[[noreturn]] void fail(const std::string &file, const std::string &problem) {
  throw Error(file + ": " + problem);
}

std::string squote(std::string_view s) { return "'" + detail::printable(s) + "'"; }

std::uint64_t read_le_u64(const unsigned char *p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i)
    v = (v << 8) | p[i];
  return v;
}
} // namespace

// ---------------------------------------------------------------------------------------------
MappedFile::MappedFile(const std::string &path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    fail(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    fail(path, std::string("cannot stat: ") + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, "not a regular file");
  }
  size_ = static_cast<std::uint64_t>(st.st_size);
  if (size_ > 0) {
    void *p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      fail(path, std::string("cannot mmap: ") + std::strerror(e));
    }
    data_ = static_cast<const unsigned char *>(p);
  }
  ::close(fd); // the mapping keeps the file alive
}

MappedFile::~MappedFile() {
  if (data_)
    ::munmap(const_cast<unsigned char *>(data_), size_);
}

// ---------------------------------------------------------------------------------------------
SafetensorsFile::SafetensorsFile(const std::string &path) : file_(path) {
  SafetensorsContents c = parse_safetensors(file_.data(), file_.size(), path);
  tensors_ = std::move(c.tensors);
  metadata_ = std::move(c.metadata);
}

SafetensorsContents parse_safetensors(const unsigned char *bytes, std::uint64_t size,
                                      const std::string &path) {
  SafetensorsContents out;
  std::vector<TensorView> &tensors_ = out.tensors;
  std::map<std::string, std::string> &metadata_ = out.metadata;
  if (size < 8)
    fail(path, "file is " + std::to_string(size) +
                   " bytes, shorter than the 8-byte safetensors header length");
  const std::uint64_t header_len = read_le_u64(bytes);
  if (header_len > size - 8)
    fail(path, "header length " + std::to_string(header_len) + " runs past the end of the file (" +
                   std::to_string(size) + " bytes)");
  const char *hbegin = reinterpret_cast<const char *>(bytes + 8);
  json header = json::parse(hbegin, hbegin + header_len, /*cb=*/nullptr,
                            /*allow_exceptions=*/false);
  if (header.is_discarded())
    fail(path, "header is not valid JSON");
  if (!header.is_object())
    fail(path, "header is not a JSON object");

  const std::uint64_t data_start = 8 + header_len;
  const std::uint64_t data_size = size - data_start;
  const unsigned char *data = bytes + data_start;

  struct Range {
    std::uint64_t begin, end;
    std::size_t index;
  };
  std::vector<Range> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string &name = it.key();
    const json &entry = it.value();
    if (name == "__metadata__") {
      if (!entry.is_object())
        fail(path, "__metadata__ is not a JSON object");
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (!m.value().is_string())
          fail(path, "__metadata__ value for " + squote(m.key()) + " is not a string");
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor " + squote(name) + ": ";
    if (!entry.is_object())
      fail(path, where + "entry is not a JSON object");
    auto dt = entry.find("dtype");
    auto sh = entry.find("shape");
    auto off = entry.find("data_offsets");
    if (dt == entry.end() || !dt->is_string())
      fail(path, where + "missing or non-string \"dtype\"");
    if (sh == entry.end() || !sh->is_array())
      fail(path, where + "missing or non-array \"shape\"");
    if (off == entry.end() || !off->is_array() || off->size() != 2)
      fail(path, where + "\"data_offsets\" is not an array of two integers");

    TensorView t;
    t.name = name;
    t.file = path;
    std::optional<DType> dtype = parse_safetensors_dtype(dt->get<std::string>());
    if (!dtype)
      fail(path, where + "unknown dtype " + squote(dt->get<std::string>()));
    t.dtype = *dtype;
    for (const json &d : *sh) {
      std::optional<std::uint64_t> v = json_uint(d);
      if (!v)
        fail(path, where + "shape " + detail::brief_dump(*sh) + " has an entry that is not a non-negative "
                                                     "integer below 2^63");
      t.shape.push_back(static_cast<std::int64_t>(*v));
    }
    std::optional<std::uint64_t> begin = json_uint((*off)[0]);
    std::optional<std::uint64_t> end = json_uint((*off)[1]);
    if (!begin || !end)
      fail(path, where + "data_offsets " + detail::brief_dump(*off) +
                     " are not non-negative integers below 2^63");
    if (*begin > *end)
      fail(path, where + "data_offsets " + detail::brief_dump(*off) + " begin after they end");
    if (*end > data_size)
      fail(path, where + "data_offsets " + detail::brief_dump(*off) + " run past the end of the data (" +
                     std::to_string(data_size) + " bytes)");
    std::optional<std::uint64_t> nbytes = checked_nbytes(t.shape, dtype_size(t.dtype));
    if (!nbytes)
      fail(path, where + "shape " + detail::brief_dump(*sh) + " overflows a 64-bit byte count");
    if (*nbytes != *end - *begin)
      fail(path, where + "shape " + detail::brief_dump(*sh) + " of " + dtype_name(t.dtype) + " needs " +
                     std::to_string(*nbytes) + " bytes but data_offsets " + detail::brief_dump(*off) +
                     " span " + std::to_string(*end - *begin));
    t.data = data + *begin;
    t.nbytes = *nbytes;
    ranges.push_back({*begin, *end, tensors_.size()});
    tensors_.push_back(std::move(t));
  }

  // Overlap check: sort by begin; empty tensors occupy nothing.
  std::sort(ranges.begin(), ranges.end(), [](const Range &a, const Range &b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const Range *prev = nullptr;
  for (const Range &r : ranges) {
    if (r.begin == r.end)
      continue;
    if (prev && r.begin < prev->end)
      fail(path, "tensors " + squote(tensors_[prev->index].name) + " and " +
                     squote(tensors_[r.index].name) + " overlap in the data region");
    prev = &r;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
void Checkpoint::add(std::unique_ptr<SafetensorsFile> file) {
  for (const TensorView &t : file->tensors()) {
    auto [it, inserted] = by_name_.emplace(t.name, &t);
    if (!inserted)
      throw Error(source_ + ": tensor " + squote(t.name) + " appears in both " +
                  it->second->file + " and " + t.file);
  }
  files_.push_back(std::move(file));
}

Checkpoint Checkpoint::open_file(const std::string &path) {
  Checkpoint c;
  c.source_ = path;
  c.add(std::make_unique<SafetensorsFile>(path));
  return c;
}

Checkpoint Checkpoint::open_index(const std::string &index_path) {
  std::ifstream in(index_path, std::ios::binary);
  if (!in)
    fail(index_path, "cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  json index = json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (index.is_discarded())
    fail(index_path, "not valid JSON");
  if (!index.is_object())
    fail(index_path, "not a JSON object");
  auto wm = index.find("weight_map");
  if (wm == index.end() || !wm->is_object())
    fail(index_path, "missing or non-object \"weight_map\"");

  const fs::path dir = fs::path(index_path).parent_path();
  // shard file name -> tensors the index says it holds (std::map: deterministic open order).
  std::map<std::string, std::vector<std::string>> shards;
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it.value().is_string())
      fail(index_path, "weight_map entry for " + squote(it.key()) + " is not a string");
    const std::string shard = it.value().get<std::string>();
    if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..")
      fail(index_path, "weight_map entry for " + squote(it.key()) + " is " + squote(shard) +
                           ", not a file name in the index's directory");
    shards[shard].push_back(it.key());
  }
  if (shards.empty())
    fail(index_path, "weight_map is empty");

  Checkpoint c;
  c.source_ = index_path;
  for (const auto &[shard, names] : shards) {
    const std::string shard_path = (dir / shard).string();
    std::error_code ec;
    if (!fs::exists(shard_path, ec))
      fail(index_path, "shard file " + detail::printable(shard_path, 400) + " (holding " + squote(names.front()) +
                           ") does not exist");
    c.add(std::make_unique<SafetensorsFile>(shard_path));
    for (const std::string &name : names) {
      const TensorView *t = c.find(name);
      if (!t || t->file != shard_path)
        fail(index_path, "weight_map puts " + squote(name) + " in " + detail::printable(shard_path, 400) +
                             " but that file does not hold it");
    }
  }
  return c;
}

Checkpoint Checkpoint::open(const std::string &path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    const fs::path dir(path);
    if (fs::exists(dir / "model.safetensors.index.json", ec))
      return open_index((dir / "model.safetensors.index.json").string());
    if (fs::exists(dir / "model.safetensors", ec))
      return open_file((dir / "model.safetensors").string());
    fail(path, "directory holds neither model.safetensors.index.json nor model.safetensors");
  }
  if (!fs::exists(path, ec))
    fail(path, "checkpoint does not exist");
  const std::string suffix = ".json";
  if (path.size() >= suffix.size() &&
      path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0)
    return open_index(path);
  return open_file(path);
}

const TensorView *Checkpoint::find(std::string_view name) const {
  auto it = by_name_.find(std::string(name));
  return it == by_name_.end() ? nullptr : it->second;
}

const TensorView &Checkpoint::get(std::string_view name) const {
  const TensorView *t = find(name);
  if (!t)
    throw Error(source_ + ": no tensor " + squote(name));
  return *t;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(by_name_.size());
  for (const auto &kv : by_name_)
    out.push_back(kv.first);
  std::sort(out.begin(), out.end());
  return out;
}

} // namespace moec
