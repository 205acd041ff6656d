//===- Checkpoint.cpp - checkpoint headers against the model, the tiny model ===//
//
// Headers come from the shared checkpoint library (the runtime's reader): bounds, types,
// offsets, shard names and size caps are checked there, once. This file decides whether the
// checkpoint is the model config.json describes.
//
//===----------------------------------------------------------------------===//

#include "moec/Models/Checkpoint.h"
#include "moec/Models/Mixtral.h"
#include "moec/checkpoint/file.h"
#include "moec/checkpoint/fp8.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
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

std::string shapeStr(const std::vector<int64_t> &shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

/// A tensor of the checkpoint and the file holding it.
struct Located {
  const checkpoint::TensorInfo *info;
  const std::string *file;
  uint64_t dataStart;
};

std::map<std::string, Located> byName(const checkpoint::CheckpointHeaders &h) {
  std::map<std::string, Located> out;
  for (size_t i = 0; i < h.headers.size(); ++i)
    for (const checkpoint::TensorInfo &t : h.headers[i].tensors)
      out.emplace(t.name, Located{&t, &h.files.files[i], h.headers[i].data_start});
  return out;
}

/// True when both tensors hold the same bytes (maps both files; reads only those ranges).
llvm::Expected<bool> sameBytes(const Located &a, const Located &b) {
  if (a.info->dtype != b.info->dtype || a.info->shape != b.info->shape)
    return false;
  auto ma = checkpoint::Mapping::open(*a.file);
  if (!ma)
    return error(ma.error());
  auto mb = checkpoint::Mapping::open(*b.file);
  if (!mb)
    return error(mb.error());
  const uint64_t n = a.info->nbytes;
  if (a.dataStart + a.info->begin + n > ma->size() || b.dataStart + b.info->begin + n > mb->size())
    return error(*a.file + ": the file changed while it was read");
  return std::memcmp(ma->data() + a.dataStart + a.info->begin,
                     mb->data() + b.dataStart + b.info->begin, n) == 0;
}

/// A tensor of a layer the config does not have ("model.layers.<l>." with l >= L), if any.
std::optional<std::pair<int64_t, std::string>>
extraLayer(const std::map<std::string, Located> &tensors, int64_t numLayers) {
  std::optional<std::pair<int64_t, std::string>> worst;
  for (const auto &[name, t] : tensors) {
    StringRef rest(name);
    int64_t l;
    if (!rest.consume_front("model.layers.") || rest.consumeInteger(10, l) ||
        !rest.starts_with("."))
      continue;
    if (l >= numLayers && (!worst || l > worst->first))
      worst = std::make_pair(l, name);
  }
  return worst;
}

} // namespace

llvm::Expected<checkpoint::CheckpointHeaders> moec::readCheckpointHeaders(StringRef modelDir) {
  return toExpected(checkpoint::read_checkpoint_headers(modelDir.str()));
}

llvm::Expected<WeightType> moec::detectWeightType(const checkpoint::CheckpointHeaders &h) {
  const std::string probe = "model.embed_tokens.weight";
  std::map<std::string, Located> tensors = byName(h);
  auto it = tensors.find(probe);
  if (it == tensors.end())
    return error(h.files.source + ": no tensor named " + probe);
  DType type = it->second.info->dtype;
  if (!is_weight_dtype(type))
    return error(*it->second.file + ": " + probe + " has dtype " +
                 safetensors_dtype_name(type) + "; supported: F32, BF16, F16");
  return type;
}

llvm::Error moec::checkCheckpointMatchesConfig(const checkpoint::CheckpointHeaders &h,
                                               const MixtralConfig &c, WeightFormat format,
                                               bool allowUnused) {
  const WeightType dtype = format.dtype;
  const std::string &src = h.files.source;
  std::map<std::string, Located> tensors = byName(h);
  if (auto extra = extraLayer(tensors, c.num_hidden_layers))
    return error(llvm::formatv("{0}: the checkpoint has layer {1} ('{2}') but config.json's "
                               "num_hidden_layers is {3}",
                               src, extra->first, extra->second, c.num_hidden_layers));
  std::map<std::string, bool> used; // checkpoint tensor -> read by the model
  for (const auto &entry : tensors)
    used[entry.first] = false;
  WeightLayout layout = WeightLayout::build(c, format);
  for (const ArenaTensor &t : layout.tensors) {
    const bool fp8 = t.quant == QuantFormat::F8E4M3;
    const WeightType want = fp8 ? WeightType::F8E4M3 : dtype;
    std::vector<int64_t> shape(t.shape.begin() + (t.stacked ? 1 : 0), t.shape.end());
    for (const std::string &name : t.sources) {
      auto it = tensors.find(name);
      if (it == tensors.end())
        return error(src + ": no tensor '" + name + "', which the model of config.json reads");
      const checkpoint::TensorInfo &info = *it->second.info;
      if (info.shape != shape)
        return error(llvm::formatv("{0}: tensor '{1}' has shape {2} but config.json's model "
                                   "needs {3}",
                                   *it->second.file, name, shapeStr(info.shape), shapeStr(shape)));
      if (info.dtype != want)
        return error(llvm::formatv(
            "{0}: tensor '{1}' is {2} but {3}", *it->second.file, name, dtype_name(info.dtype),
            fp8 ? "an FP8 checkpoint's attention and expert weights are all f8_e4m3"
            : info.dtype == WeightType::F8E4M3
                ? std::string("the other weights are ") + dtype_name(dtype) +
                      " (an FP8 checkpoint needs config.json's quantization_config)"
                : std::string("the weights are ") + dtype_name(dtype) +
                      " (one dtype for all weights)"));
      used[name] = true;
    }
    for (const std::string &name : t.scaleSources) { // FP8: the packer checks their shapes
      if (!tensors.count(name))
        return error(src + ": no tensor '" + name + "', the scale of an FP8 weight");
      used[name] = true;
    }
    if (fp8) // static activation scales: read and ignored (activations stay f32)
      for (const std::string &name : t.sources)
        if (tensors.count(checkpoint::fp8_input_scale_name(name)))
          used[checkpoint::fp8_input_scale_name(name)] = true;
  }
  // Tied embeddings with an lm_head in the checkpoint: which one Hugging Face ends up using
  // depends on its loading order and version, so accept only the case where it cannot matter.
  auto head = tensors.find("lm_head.weight");
  if (c.tie_word_embeddings && head != tensors.end()) {
    llvm::Expected<bool> same = sameBytes(head->second, tensors.at("model.embed_tokens.weight"));
    if (!same)
      return same.takeError();
    if (!*same)
      return error(src + ": config.json sets tie_word_embeddings, but the checkpoint's "
                         "lm_head.weight differs from model.embed_tokens.weight; set "
                         "tie_word_embeddings to false to use lm_head.weight, or remove it");
    used["lm_head.weight"] = true;
  }
  int64_t unused = 0;
  std::string first;
  for (const auto &[name, isUsed] : used) {
    // Older exports carry RoPE's inverse frequencies: derived from rope_theta (which the
    // model uses), not weights.
    if (StringRef(name).ends_with(".self_attn.rotary_emb.inv_freq"))
      continue;
    if (!isUsed && unused++ == 0)
      first = name;
  }
  if (unused > 0 && !allowUnused)
    return error(llvm::formatv("{0}: {1} tensor(s) are not read by the model of config.json, "
                               "the first '{2}'; pass --allow-unused-tensors to compile anyway",
                               src, unused, first));
  return llvm::Error::success();
}

CheckpointSummary moec::summarizeCheckpoint(const checkpoint::CheckpointHeaders &h) {
  CheckpointSummary summary;
  std::map<std::string, int64_t> bytes;
  for (size_t i = 0; i < h.headers.size(); ++i) {
    summary.files.push_back(llvm::sys::path::filename(h.files.files[i]).str());
    for (const checkpoint::TensorInfo &t : h.headers[i].tensors) {
      bytes[safetensors_dtype_name(t.dtype)] += int64_t(t.nbytes);
      ++summary.tensorCount;
    }
  }
  summary.bytesByDtype.assign(bytes.begin(), bytes.end());
  return summary;
}

MixtralConfig moec::tinyMixtralConfig() {
  MixtralConfig c;
  c.vocab_size = 32000;
  c.hidden_size = 256;
  c.intermediate_size = 512;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 4;
  c.head_dim = 32;
  c.num_local_experts = 8;
  c.num_experts_per_tok = 2;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 1e6;
  c.max_position_embeddings = 4096;
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

  std::vector<checkpoint::TensorInfo> infos;
  uint64_t offset = 0;
  const int64_t elemBytes = dtype_size(dtype);
  for (const Entry &e : entries) {
    checkpoint::TensorInfo t;
    t.name = e.name;
    t.dtype = dtype;
    t.shape = e.shape;
    t.begin = offset;
    t.nbytes = 1;
    for (int64_t d : e.shape)
      t.nbytes *= uint64_t(d);
    t.nbytes *= uint64_t(elemBytes);
    offset += t.nbytes;
    infos.push_back(std::move(t));
  }
  std::string header = checkpoint::write_safetensors_header(infos, {{"format", "pt"}});

  llvm::SmallString<256> path(dir);
  llvm::sys::path::append(path, "model.safetensors");
  std::error_code ec;
  llvm::raw_fd_ostream os(path, ec);
  if (ec)
    return error(path + ": cannot write: " + ec.message());
  os << header;

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
  MixtralConfig withDtype = c;
  withDtype.weight_dtype = dtype;
  cos << checkpoint::write_config_json(withDtype);
  cos.close();
  if (cos.has_error())
    return error(configPath + ": write failed: " + cos.error().message());
  return llvm::Error::success();
}
