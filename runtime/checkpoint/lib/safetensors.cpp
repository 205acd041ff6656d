// safetensors.cpp — safetensors headers (one SAX pass, no DOM), indexes, checkpoint folders.
//
// The header is parsed event by event straight into TensorInfo: a 100 MB header costs a few
// times its size in memory, never a DOM, and nesting, duplicate keys and ranks are bounded as
// they are read.
#include "moec/checkpoint/safetensors.h"

#include "json.h"
#include "moec/checkpoint/file.h"

#include <algorithm>
#include <cstring>
#include <set>
#include <sys/stat.h>

namespace moec::checkpoint {
using namespace detail;

namespace {
std::uint64_t read_le_u64(const unsigned char *p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i)
    v = (v << 8) | p[i];
  return v;
}

std::string dims_str(const std::vector<std::uint64_t> &v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i)
    s += (i ? "," : "") + std::to_string(v[i]);
  return s + "]";
}

/// The header's events -> tensors. Each handler returns false (stopping the parse) with
/// `problem` set at the first thing wrong.
class HeaderReader : public nlohmann::json_sax<json> {
public:
  explicit HeaderReader(std::uint64_t data_size) : data_size_(data_size) {}
  std::string problem;
  SafetensorsHeader out;

  bool null() override { return scalar("null"); }
  bool boolean(bool) override { return scalar("bool"); }
  bool number_integer(number_integer_t v) override {
    return v >= 0 ? uint(static_cast<std::uint64_t>(v)) : scalar("negative");
  }
  bool number_unsigned(number_unsigned_t v) override {
    return v <= static_cast<std::uint64_t>(INT64_MAX) ? uint(v) : scalar("huge");
  }
  bool number_float(number_float_t, const string_t &) override { return scalar("float"); }
  bool binary(binary_t &) override { return scalar("binary"); }
  bool string(string_t &s) override {
    if (skip_ || depth_ != 2 || (in_ == In::Tensor && field_ != Field::Dtype))
      return scalar("string");
    if (in_ == In::Metadata) {
      out.metadata[key_] = s;
      return true;
    }
    t_.dtype_text = s;
    t_.has_dtype = true;
    return true;
  }
  bool start_object(std::size_t) override {
    if (!open())
      return false;
    if (skip_)
      return ++skip_, true;
    if (depth_ == 1)
      return true; // the header itself
    if (depth_ == 2 && name_ == "__metadata__")
      return in_ = In::Metadata, keys_.clear(), true;
    if (depth_ == 2)
      return in_ = In::Tensor, t_ = Pending{}, keys_.clear(), true;
    return misplaced(depth_ - 1, /*container=*/true);
  }
  bool start_array(std::size_t) override {
    if (!open())
      return false;
    if (skip_)
      return ++skip_, true;
    if (depth_ == 3 && in_ == In::Tensor && field_ == Field::Shape)
      return t_.has_shape = true, true;
    if (depth_ == 3 && in_ == In::Tensor && field_ == Field::Offsets)
      return t_.has_offsets = true, true;
    return misplaced(depth_ - 1, /*container=*/true);
  }
  bool key(string_t &k) override {
    if (skip_)
      return true;
    if (depth_ == 1) {
      if (!names_.insert(k).second)
        return stop("tensor " + squote(k) + " is listed twice in the header");
      name_ = k;
      return true;
    }
    if (!keys_.insert(k).second)
      return stop(where() + "duplicate key " + squote(k));
    key_ = k;
    if (in_ == In::Tensor)
      field_ = k == "dtype" ? Field::Dtype
               : k == "shape" ? Field::Shape
               : k == "data_offsets" ? Field::Offsets
                                     : Field::Other;
    return true;
  }
  bool end_array() override {
    --depth_;
    if (skip_)
      return --skip_, true;
    if (depth_ == 2 && field_ == Field::Offsets && t_.offsets.size() != 2)
      return stop(where() + "\"data_offsets\" is not an array of two integers");
    return true;
  }
  bool end_object() override {
    --depth_;
    if (skip_)
      return --skip_, true;
    if (depth_ == 1 && in_ == In::Tensor)
      return finish_tensor();
    if (depth_ == 0)
      closed_ = true;
    return true;
  }
  bool parse_error(std::size_t at, const std::string &, const nlohmann::detail::exception &e) override {
    if (problem.empty())
      problem = "header is not valid JSON (byte " + std::to_string(at) + "): " + parse_error_text(e);
    return false;
  }
  Status finish() {
    if (!problem.empty())
      return fail(problem);
    if (!closed_)
      return fail("header is not a JSON object");
    return ok();
  }

private:
  enum class In { Top, Metadata, Tensor };
  enum class Field { Dtype, Shape, Offsets, Other };
  struct Pending {
    bool has_dtype = false, has_shape = false, has_offsets = false;
    std::string dtype_text;
    std::vector<std::uint64_t> shape, offsets;
  };

  bool stop(std::string p) {
    problem = std::move(p);
    return false;
  }
  bool open() {
    if (++depth_ > kMaxJsonDepth)
      return stop("header is nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    return true;
  }
  std::string where() const {
    return in_ == In::Metadata ? "__metadata__: " : "tensor " + squote(name_) + ": ";
  }
  bool scalar(const char *) { return misplaced(depth_, /*container=*/false); }
  /// A value at depth `pos` that is not what its place needs (or sits under an unknown tensor
  /// key, and is skipped).
  bool misplaced(int pos, bool container) {
    if (skip_)
      return true;
    if (pos == 0)
      return stop("header is not a JSON object");
    if (pos == 1 && name_ == "__metadata__")
      return stop("__metadata__ is not a JSON object");
    if (pos == 1)
      return stop(where() + "entry is not a JSON object");
    if (pos == 2 && in_ == In::Metadata)
      return stop("__metadata__ value for " + squote(key_) + " is not a string");
    if (pos == 2 && field_ == Field::Other) {
      if (container)
        skip_ = 1; // skipped to its end
      return true;
    }
    if (pos == 2 && field_ == Field::Dtype)
      return stop(where() + "missing or non-string \"dtype\"");
    if (pos == 2 && field_ == Field::Shape)
      return stop(where() + "missing or non-array \"shape\"");
    if (pos == 2)
      return stop(where() + "\"data_offsets\" is not an array of two integers");
    if (field_ == Field::Shape)
      return stop(where() + "shape has an entry that is not a non-negative integer below 2^63");
    return stop(where() + "data_offsets are not non-negative integers below 2^63");
  }
  bool uint(std::uint64_t v) {
    if (!skip_ && depth_ == 3 && in_ == In::Tensor && field_ == Field::Shape) {
      if (t_.shape.size() == kMaxRank)
        return stop(where() + "shape has more than " + std::to_string(kMaxRank) + " dimensions");
      t_.shape.push_back(v);
      return true;
    }
    if (!skip_ && depth_ == 3 && in_ == In::Tensor && field_ == Field::Offsets) {
      if (t_.offsets.size() == 2)
        return stop(where() + "\"data_offsets\" is not an array of two integers");
      t_.offsets.push_back(v);
      return true;
    }
    return scalar("integer");
  }
  bool finish_tensor();

  std::uint64_t data_size_;
  int depth_ = 0;
  int skip_ = 0; // > 0: inside a container under an unknown tensor key
  bool closed_ = false;
  In in_ = In::Top;
  Field field_ = Field::Other;
  std::string name_, key_;
  std::set<std::string> names_, keys_;
  Pending t_;
};

bool HeaderReader::finish_tensor() {
  in_ = In::Top;
  const std::string w = where();
  if (!t_.has_dtype)
    return stop(w + "missing or non-string \"dtype\"");
  if (!t_.has_shape)
    return stop(w + "missing or non-array \"shape\"");
  if (!t_.has_offsets)
    return stop(w + "\"data_offsets\" is not an array of two integers");
  std::optional<DType> dtype = parse_safetensors_dtype(t_.dtype_text);
  if (!dtype)
    return stop(w + "unknown dtype " + squote(t_.dtype_text));
  const std::uint64_t begin = t_.offsets[0], end = t_.offsets[1];
  const std::string offs = dims_str(t_.offsets), shape = dims_str(t_.shape);
  if (begin > end)
    return stop(w + "data_offsets " + offs + " begin after they end");
  if (end > data_size_)
    return stop(w + "data_offsets " + offs + " run past the end of the data (" +
                std::to_string(data_size_) + " bytes)");
  TensorInfo t;
  t.name = name_;
  t.dtype = *dtype;
  t.shape.assign(t_.shape.begin(), t_.shape.end());
  std::optional<std::uint64_t> nbytes = checked_nbytes(t.shape, dtype_size(t.dtype));
  if (!nbytes)
    return stop(w + "shape " + shape + " overflows a 64-bit byte count");
  if (*nbytes != end - begin)
    return stop(w + "shape " + shape + " of " + dtype_name(t.dtype) + " needs " +
                std::to_string(*nbytes) + " bytes but data_offsets " + offs + " span " +
                std::to_string(end - begin));
  t.begin = begin;
  t.nbytes = *nbytes;
  out.tensors.push_back(std::move(t));
  return true;
}

Status check_overlaps(const std::vector<TensorInfo> &tensors) {
  std::vector<const TensorInfo *> sorted;
  for (const TensorInfo &t : tensors)
    if (t.nbytes > 0) // empty tensors occupy nothing
      sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(), [](const TensorInfo *a, const TensorInfo *b) {
    return a->begin != b->begin ? a->begin < b->begin : a->nbytes < b->nbytes;
  });
  for (std::size_t i = 1; i < sorted.size(); ++i)
    if (sorted[i]->begin < sorted[i - 1]->begin + sorted[i - 1]->nbytes)
      return fail("tensors " + squote(sorted[i - 1]->name) + " and " + squote(sorted[i]->name) +
                  " overlap in the data region");
  return ok();
}
} // namespace

Result<SafetensorsHeader> parse_safetensors_header(const unsigned char *bytes,
                                                   std::uint64_t available,
                                                   std::uint64_t file_size,
                                                   const std::string &name) {
  auto fail_ = [&](const std::string &p) { return fail(name + ": " + p); };
  if (file_size < 8 || available < 8)
    return fail_("file is " + std::to_string(file_size) +
                 " bytes, shorter than the 8-byte safetensors header length");
  const std::uint64_t n = read_le_u64(bytes);
  if (n > file_size - 8)
    return fail_("header length " + std::to_string(n) + " runs past the end of the file (" +
                 std::to_string(file_size) + " bytes)");
  if (n > kMaxHeaderBytes)
    return fail_("header length " + std::to_string(n) + " is over safetensors' limit of " +
                 std::to_string(kMaxHeaderBytes) + " bytes");
  if (n > available - 8)
    return fail_("internal: header bytes not supplied");
  const char *h = reinterpret_cast<const char *>(bytes + 8);
  if (std::memchr(h, '\0', n))
    return fail_("header holds a NUL byte (safetensors pads headers with spaces)");
  HeaderReader reader(file_size - 8 - n);
  json::sax_parse(h, h + n, &reader);
  if (Status s = reader.finish(); !s)
    return fail_(s.error());
  if (Status s = check_overlaps(reader.out.tensors); !s)
    return fail_(s.error());
  reader.out.data_start = 8 + n;
  return std::move(reader.out);
}

Result<SafetensorsHeader> read_safetensors_header(const std::string &path) {
  Result<InputFile> f = InputFile::open(path);
  if (!f)
    return f.failure();
  unsigned char len[8] = {};
  if (f->size() >= 8)
    if (Status s = f->read_at(0, len, 8); !s)
      return s.failure();
  const std::uint64_t n = read_le_u64(len);
  if (f->size() < 8 || n > f->size() - 8 || n > kMaxHeaderBytes)
    return parse_safetensors_header(len, 8, f->size(), path); // the length's own message
  std::string bytes(8 + n, '\0');
  if (Status s = f->read_at(0, bytes.data(), bytes.size()); !s)
    return s.failure();
  return parse_safetensors_header(reinterpret_cast<const unsigned char *>(bytes.data()),
                                  bytes.size(), f->size(), path);
}

std::string write_safetensors_header(const std::vector<TensorInfo> &tensors,
                                     const std::map<std::string, std::string> &metadata) {
  json h = json::object();
  if (!metadata.empty())
    h["__metadata__"] = metadata;
  for (const TensorInfo &t : tensors)
    h[t.name] = {{"dtype", safetensors_dtype_name(t.dtype)},
                 {"shape", t.shape},
                 {"data_offsets", {t.begin, t.begin + t.nbytes}}};
  std::string text = h.dump(-1, ' ', false, json::error_handler_t::replace);
  while ((text.size() + 8) % 8 != 0)
    text.push_back(' ');
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i)
    out[i] = static_cast<char>((static_cast<std::uint64_t>(text.size()) >> (8 * i)) & 0xff);
  return out + text;
}

// --- Indexes and folders -------------------------------------------------------------------
std::string shard_name_problem(const std::string &s) {
  const std::string ext = ".safetensors";
  if (s.find('\0') != std::string::npos)
    return "holds a NUL byte";
  if (s.find('/') != std::string::npos)
    return "is not a plain file name (it holds a '/')";
  if (s.find("..") != std::string::npos)
    return "holds \"..\"";
  if (s.size() <= ext.size() || s.compare(s.size() - ext.size(), ext.size(), ext) != 0)
    return "does not end in \".safetensors\"";
  return "";
}

Result<CheckpointIndex> parse_index(std::string_view text, const std::string &name) {
  Result<json> j = parse_json(text, name);
  if (!j)
    return j.failure();
  if (!j->is_object())
    return fail(name + ": not a JSON object");
  auto wm = j->find("weight_map");
  if (wm == j->end() || !wm->is_object())
    return fail(name + ": missing or non-object \"weight_map\"");
  CheckpointIndex index;
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it.value().is_string())
      return fail(name + ": weight_map entry for " + squote(it.key()) + " is not a string");
    const std::string shard = it.value().get<std::string>();
    if (std::string p = shard_name_problem(shard); !p.empty())
      return fail(name + ": weight_map entry for " + squote(it.key()) + " is " + squote(shard) +
                  ", which " + p + "; shards must be .safetensors files in the index's folder");
    index.weight_map[it.key()] = shard;
  }
  if (index.weight_map.empty())
    return fail(name + ": weight_map is empty");
  return index;
}

namespace {
bool is_dir(const std::string &p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool present(const std::string &p) { // exists, even as a dangling symlink
  struct stat st;
  return ::lstat(p.c_str(), &st) == 0;
}
std::string dir_of(const std::string &p) {
  std::size_t slash = p.rfind('/');
  return slash == std::string::npos ? "." : slash == 0 ? "/" : p.substr(0, slash);
}
bool ends_with(const std::string &s, const std::string &suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
} // namespace

Result<CheckpointFiles> locate_checkpoint(const std::string &path) {
  if (path.empty())
    return fail("the checkpoint path is empty");
  CheckpointFiles out;
  std::string file = path;
  if (is_dir(path)) {
    const std::string sep = ends_with(path, "/") ? "" : "/";
    if (present(path + sep + "model.safetensors.index.json"))
      file = path + sep + "model.safetensors.index.json";
    else if (present(path + sep + "model.safetensors"))
      file = path + sep + "model.safetensors";
    else
      return fail(path + ": directory holds neither model.safetensors.index.json nor "
                         "model.safetensors");
  } else if (std::string why = why_missing(path); !why.empty()) {
    return fail(path + ": " + (why == "does not exist" ? "checkpoint does not exist" : why));
  }
  out.source = file;
  if (!ends_with(file, ".json")) {
    out.files.push_back(file);
    return out;
  }
  Result<std::string> text = read_small_file(file, kMaxJsonFileBytes, "a checkpoint index");
  if (!text)
    return text.failure();
  Result<CheckpointIndex> index = parse_index(*text, file);
  if (!index)
    return index.failure();
  std::set<std::string> shards;
  for (const auto &[tensor, shard] : index->weight_map)
    shards.insert(shard);
  const std::string dir = dir_of(file);
  for (const std::string &shard : shards) {
    const std::string p = dir + "/" + shard;
    if (std::string why = why_missing(p); !why.empty()) {
      std::string holder;
      for (const auto &[tensor, s] : index->weight_map)
        if (s == shard) {
          holder = tensor;
          break;
        }
      return fail(file + ": shard file " + printable(p, 400) + " (holding " + squote(holder) +
                  ") " + (why == "does not exist" ? "does not exist" : why));
    }
    out.files.push_back(p);
  }
  out.index = std::move(*index);
  return out;
}

Status check_checkpoint(const CheckpointFiles &files,
                        const std::vector<const SafetensorsHeader *> &headers) {
  std::map<std::string, std::size_t> where; // tensor -> file index
  for (std::size_t i = 0; i < headers.size(); ++i)
    for (const TensorInfo &t : headers[i]->tensors) {
      auto [it, inserted] = where.emplace(t.name, i);
      if (!inserted)
        return fail(files.source + ": tensor " + squote(t.name) + " appears in both " +
                    files.files[it->second] + " and " + files.files[i]);
    }
  if (!files.index)
    return ok();
  const std::string dir = dir_of(files.source);
  for (const auto &[tensor, shard] : files.index->weight_map) {
    auto it = where.find(tensor);
    const std::string p = dir + "/" + shard;
    if (it == where.end() || files.files[it->second] != p)
      return fail(files.source + ": weight_map puts " + squote(tensor) + " in " +
                  printable(p, 400) + " but that file does not hold it");
  }
  return ok();
}

Result<CheckpointHeaders> read_checkpoint_headers(const std::string &path) {
  Result<CheckpointFiles> files = locate_checkpoint(path);
  if (!files)
    return files.failure();
  CheckpointHeaders out;
  for (const std::string &f : files->files) {
    Result<SafetensorsHeader> h = read_safetensors_header(f);
    if (!h)
      return h.failure();
    out.headers.push_back(std::move(*h));
  }
  std::vector<const SafetensorsHeader *> ptrs;
  for (const SafetensorsHeader &h : out.headers)
    ptrs.push_back(&h);
  if (Status s = check_checkpoint(*files, ptrs); !s)
    return s.failure();
  out.files = std::move(*files);
  return out;
}

std::string shape_str(const std::vector<std::int64_t> &shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i)
    out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

std::string element_index_str(const std::vector<std::int64_t> &shape, std::uint64_t i) {
  std::vector<std::uint64_t> idx(shape.size());
  for (std::size_t d = shape.size(); d-- > 0;) {
    const auto n = static_cast<std::uint64_t>(shape[d]);
    idx[d] = n ? i % n : 0;
    i = n ? i / n : 0;
  }
  std::string out = "[";
  for (std::size_t d = 0; d < idx.size(); ++d)
    out += (d ? ", " : "") + std::to_string(idx[d]);
  return out + "]";
}

} // namespace moec::checkpoint
