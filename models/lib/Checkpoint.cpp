//===- Checkpoint.cpp - safetensors header reading and the tiny model -----===//
//
// safetensors: 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}, then the
// data. Reading is bounds-checked so a truncated or hostile file is a one-line error.
//
//===----------------------------------------------------------------------===//

#include "moec/Models/Checkpoint.h"
#include "moec/Models/Mixtral.h"

#include "llvm/Support/Endian.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <cmath>
#include <cstring>
#include <map>
#include <random>

using namespace moec;
using llvm::StringRef;

namespace {

llvm::Error error(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message.str());
}

/// The JSON header of one safetensors file.
llvm::Expected<llvm::json::Value> readHeader(StringRef path) {
  auto file = llvm::MemoryBuffer::getFile(path, /*IsText=*/false, /*RequiresNullTerminator=*/false);
  if (!file)
    return error(path + ": cannot read: " + file.getError().message());
  StringRef data = (*file)->getBuffer();
  if (data.size() < 8)
    return error(path + ": truncated: shorter than the 8-byte header length");
  uint64_t length = llvm::support::endian::read64le(data.data());
  if (length > data.size() - 8)
    return error(llvm::formatv("{0}: header length {1} runs past the end of the file ({2} bytes)",
                               path, length, data.size()));
  auto json = llvm::json::parse(data.substr(8, length));
  if (!json)
    return error(path + ": header is not valid JSON: " + llvm::toString(json.takeError()));
  return json;
}

/// The tensor -> shard map of a sharded checkpoint, or std::nullopt when the folder holds a
/// single model.safetensors.
llvm::Expected<std::optional<llvm::json::Object>> readWeightMap(StringRef modelDir) {
  llvm::SmallString<256> index(modelDir);
  llvm::sys::path::append(index, "model.safetensors.index.json");
  if (!llvm::sys::fs::exists(index))
    return std::nullopt;
  auto buffer = llvm::MemoryBuffer::getFile(index);
  if (!buffer)
    return error(index + ": cannot read: " + buffer.getError().message());
  auto json = llvm::json::parse((*buffer)->getBuffer());
  if (!json)
    return error(index + ": not valid JSON: " + llvm::toString(json.takeError()));
  llvm::json::Object *map = json->getAsObject() ? json->getAsObject()->getObject("weight_map") : nullptr;
  if (!map)
    return error(index + ": no \"weight_map\" object");
  for (const auto &entry : *map)
    if (!entry.second.getAsString())
      return error(index + ": \"weight_map\" values must be file names");
  return std::optional<llvm::json::Object>(std::move(*map));
}

} // namespace

llvm::Expected<WeightType> moec::detectWeightType(StringRef modelDir) {
  const std::string probe = "model.embed_tokens.weight";
  llvm::SmallString<256> file(modelDir);
  auto map = readWeightMap(modelDir);
  if (!map)
    return map.takeError();
  if (*map) {
    std::optional<StringRef> shard = (*map)->getString(probe);
    if (!shard)
      return error(modelDir + "/model.safetensors.index.json: \"weight_map\" does not name a "
                   "file for " + probe);
    llvm::sys::path::append(file, *shard);
  } else {
    llvm::sys::path::append(file, "model.safetensors");
  }
  auto header = readHeader(file);
  if (!header)
    return header.takeError();
  const llvm::json::Object *entry =
      header->getAsObject() ? header->getAsObject()->getObject(probe) : nullptr;
  if (!entry)
    return error(file + ": no tensor named " + probe);
  std::optional<StringRef> dtype = entry->getString("dtype");
  std::optional<WeightType> type = dtype ? parseSafetensorsDtype(*dtype) : std::nullopt;
  if (!type)
    return error(file + ": " + probe + " has dtype " + (dtype ? *dtype : "(none)") +
                 "; supported: F32, BF16, F16");
  return *type;
}

llvm::Expected<CheckpointSummary> moec::summarizeCheckpoint(StringRef modelDir) {
  CheckpointSummary summary;
  auto map = readWeightMap(modelDir);
  if (!map)
    return map.takeError();
  if (*map) {
    for (const auto &entry : **map)
      if (llvm::find(summary.files, entry.second.getAsString()->str()) == summary.files.end())
        summary.files.push_back(entry.second.getAsString()->str());
    llvm::sort(summary.files);
  } else {
    summary.files.push_back("model.safetensors");
  }
  std::map<std::string, int64_t> bytes;
  for (const std::string &name : summary.files) {
    llvm::SmallString<256> path(modelDir);
    llvm::sys::path::append(path, name);
    auto header = readHeader(path);
    if (!header)
      return header.takeError();
    const llvm::json::Object *obj = header->getAsObject();
    if (!obj)
      return error(path + ": header is not a JSON object");
    for (const auto &entry : *obj) {
      if (entry.first == "__metadata__")
        continue;
      const llvm::json::Object *t = entry.second.getAsObject();
      const llvm::json::Array *offsets = t ? t->getArray("data_offsets") : nullptr;
      std::optional<StringRef> dtype = t ? t->getString("dtype") : std::nullopt;
      if (!offsets || offsets->size() != 2 || !dtype)
        return error(path + ": tensor " + entry.first.str() + " lacks dtype or data_offsets");
      std::optional<int64_t> begin = (*offsets)[0].getAsInteger(), end = (*offsets)[1].getAsInteger();
      if (!begin || !end || *begin < 0 || *end < *begin)
        return error(path + ": tensor " + entry.first.str() + " has invalid data_offsets");
      bytes[dtype->str()] += *end - *begin;
      ++summary.tensorCount;
    }
  }
  summary.bytesByDtype.assign(bytes.begin(), bytes.end());
  return summary;
}

MixtralConfig moec::tinyMixtralConfig() {
  MixtralConfig c;
  c.vocabSize = 32000;
  c.hiddenSize = 256;
  c.intermediateSize = 512;
  c.numLayers = 2;
  c.numHeads = 8;
  c.numKVHeads = 4;
  c.headDim = 32;
  c.numExperts = 8;
  c.expertsPerToken = 2;
  c.rmsNormEps = 1e-5;
  c.ropeTheta = 1e6;
  c.maxPositionEmbeddings = 4096;
  return c;
}

namespace {

uint16_t toHalfBits(float f, WeightType type) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if (type == WeightType::BF16) // round to nearest even
    return uint16_t((bits + 0x7fff + ((bits >> 16) & 1)) >> 16);
  // f16 via the compiler's _Float16 conversion (round to nearest even).
  _Float16 h = static_cast<_Float16>(f);
  uint16_t out;
  std::memcpy(&out, &h, 2);
  return out;
}

} // namespace

llvm::Error moec::writeRandomCheckpoint(StringRef dir, const MixtralConfig &c, WeightType dtype,
                                        uint64_t seed) {
  if (std::error_code ec = llvm::sys::fs::create_directories(dir))
    return error(dir + ": cannot create directory: " + ec.message());

  // Tensors in checkpoint order, with their HF names and shapes, taken from the arena layout
  // so the two can never disagree.
  WeightLayout layout = WeightLayout::build(c, dtype);
  struct Entry {
    std::string name;
    std::vector<int64_t> shape;
    bool isNorm;
  };
  std::vector<Entry> entries;
  for (const ArenaTensor &t : layout.tensors) {
    std::vector<int64_t> shape(t.shape.begin() + (t.stacked ? 1 : 0), t.shape.end());
    for (const std::string &s : t.sources)
      entries.push_back({s, shape, shape.size() == 1});
  }

  llvm::json::Object header{{"__metadata__", llvm::json::Object{{"format", "pt"}}}};
  int64_t offset = 0;
  const int64_t elemBytes = weightTypeBytes(dtype);
  const char *dtypeName = dtype == WeightType::F32 ? "F32" : dtype == WeightType::BF16 ? "BF16" : "F16";
  for (const Entry &e : entries) {
    int64_t n = 1;
    for (int64_t d : e.shape)
      n *= d;
    header[e.name] = llvm::json::Object{{"dtype", dtypeName},
                                        {"shape", llvm::json::Array(e.shape)},
                                        {"data_offsets", llvm::json::Array{offset, offset + n * elemBytes}}};
    offset += n * elemBytes;
  }
  std::string headerText;
  llvm::raw_string_ostream(headerText) << llvm::json::Value(std::move(header));
  while ((headerText.size() + 8) % 8 != 0) // keep the data 8-byte aligned
    headerText.push_back(' ');

  llvm::SmallString<256> path(dir);
  llvm::sys::path::append(path, "model.safetensors");
  std::error_code ec;
  llvm::raw_fd_ostream os(path, ec);
  if (ec)
    return error(path + ": cannot write: " + ec.message());
  char len[8];
  llvm::support::endian::write64le(len, headerText.size());
  os.write(len, 8);
  os << headerText;

  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<char> buffer;
  for (const Entry &e : entries) {
    int64_t n = 1;
    for (int64_t d : e.shape)
      n *= d;
    float scale = e.isNorm ? 0.1f : 1.0f / std::sqrt(float(e.shape.back()));
    buffer.resize(n * elemBytes);
    for (int64_t i = 0; i < n; ++i) {
      float v = normal(rng) * scale + (e.isNorm ? 1.0f : 0.0f);
      if (dtype == WeightType::F32) {
        std::memcpy(&buffer[i * 4], &v, 4);
      } else {
        uint16_t h = toHalfBits(v, dtype);
        std::memcpy(&buffer[i * 2], &h, 2);
      }
    }
    os.write(buffer.data(), buffer.size());
  }
  os.close();
  if (os.has_error())
    return error(path + ": write failed: " + os.error().message());

  llvm::SmallString<256> configPath(dir);
  llvm::sys::path::append(configPath, "config.json");
  llvm::raw_fd_ostream cos(configPath, ec);
  if (ec)
    return error(configPath + ": cannot write: " + ec.message());
  cos << llvm::formatv("{0:2}", llvm::json::Value(c.toJSON(dtype))) << "\n";
  return llvm::Error::success();
}
