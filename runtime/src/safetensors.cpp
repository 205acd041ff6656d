// safetensors.cpp — mmapped safetensors files and checkpoints over the shared reader.
//
// Every check lives in moec/checkpoint/safetensors.h (the compiler uses the same code on the
// same files); this file maps the files, turns header entries into views of the mapping and
// failures into moec::Error.
#include "moec/safetensors.h"

#include "moec/checkpoint/safetensors.h"
#include "moec/error.h"

#include <algorithm>

namespace moec {
namespace {
template <class T> T take(checkpoint::Result<T> r) {
  if (!r)
    throw Error(r.error());
  return std::move(*r);
}

checkpoint::Mapping map(const std::string &path) { return take(checkpoint::Mapping::open(path)); }
} // namespace

MappedFile::MappedFile(const std::string &path) : path_(path), map_(map(path)) {}

SafetensorsContents parse_safetensors(const unsigned char *bytes, std::uint64_t size,
                                      const std::string &name) {
  checkpoint::SafetensorsHeader h =
      take(checkpoint::parse_safetensors_header(bytes, size, size, name));
  SafetensorsContents out;
  out.metadata = std::move(h.metadata);
  for (checkpoint::TensorInfo &t : h.tensors) {
    TensorView v;
    v.name = std::move(t.name);
    v.dtype = t.dtype;
    v.shape = std::move(t.shape);
    v.data = bytes + h.data_start + t.begin;
    v.nbytes = t.nbytes;
    v.file = name;
    out.tensors.push_back(std::move(v));
  }
  return out;
}

SafetensorsFile::SafetensorsFile(const std::string &path) : file_(path) {
  SafetensorsContents c = parse_safetensors(file_.data(), file_.size(), path);
  tensors_ = std::move(c.tensors);
  metadata_ = std::move(c.metadata);
}

Checkpoint Checkpoint::open(const std::string &path) {
  checkpoint::CheckpointFiles files = take(checkpoint::locate_checkpoint(path));
  Checkpoint c;
  c.source_ = files.source;
  // The cross-file checks want headers; the names are all they read.
  std::vector<checkpoint::SafetensorsHeader> headers;
  for (const std::string &f : files.files) {
    c.files_.push_back(std::make_unique<SafetensorsFile>(f));
    checkpoint::SafetensorsHeader h;
    for (const TensorView &t : c.files_.back()->tensors())
      h.tensors.push_back({t.name, t.dtype, {}, 0, 0});
    headers.push_back(std::move(h));
  }
  std::vector<const checkpoint::SafetensorsHeader *> ptrs;
  for (const checkpoint::SafetensorsHeader &h : headers)
    ptrs.push_back(&h);
  take(checkpoint::check_checkpoint(files, ptrs));
  for (const auto &file : c.files_)
    for (const TensorView &t : file->tensors())
      c.by_name_.emplace(t.name, &t);
  return c;
}

const TensorView *Checkpoint::find(std::string_view name) const {
  auto it = by_name_.find(std::string(name));
  return it == by_name_.end() ? nullptr : it->second;
}

const TensorView &Checkpoint::get(std::string_view name) const {
  const TensorView *t = find(name);
  if (!t)
    throw Error(source_ + ": no tensor '" + std::string(name) + "'");
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
