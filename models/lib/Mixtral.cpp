//===- Mixtral.cpp - the Mixtral forward pass as moe-dialect IR -----------===//
//
// The model graph, written once for both entry points. The builder only states the math in
// moe ops (plus upstream reshapes, residual adds and cache writes); how each op runs is the
// pass pipeline's business. Buffers cross the function boundary as the ABI's flat arenas and
// become tensors through memref.view + bufferization.to_tensor, so one-shot bufferization
// writes the KV cache and the logits in place.
//
//===----------------------------------------------------------------------===//

#include "moec/Models/Mixtral.h"

#include "moec/Dialect/Moe/MoeDialect.h"
#include "moec/Dialect/Moe/MoeOps.h"
#include "moec/abi.h"
#include "moec/checkpoint/manifest.h"
#include "moec/checkpoint/weights_file.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"

#include "llvm/Support/ErrorHandling.h"
#include "llvm/Support/MathExtras.h"

using namespace mlir;
using namespace moec;

//===----------------------------------------------------------------------===//
// Weight layout and manifest
//===----------------------------------------------------------------------===//

namespace {
std::string hf(const llvm::Twine &name) { return ("model." + name).str(); }
} // namespace

std::vector<int64_t> ArenaTensor::dataShape() const {
  std::vector<int64_t> s = shape;
  if (quant == QuantFormat::Q4)
    s.back() /= 2;
  return s;
}

std::vector<int64_t> ArenaTensor::scaleShape() const {
  std::vector<int64_t> s = shape;
  s.back() /= groupSize;
  return s;
}

namespace {
int64_t product(const std::vector<int64_t> &shape) {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

/// Whether a row of `k` elements splits into whole groups of `quant`.
bool fitsGroups(int64_t k, QuantFormat quant) {
  switch (quant) {
  case QuantFormat::None:
    return false;
  case QuantFormat::Q8:
  case QuantFormat::Q4:
    return k % kQuantGroupSize == 0;
  case QuantFormat::F8E4M3:
    return true; // one scale per row
  }
  llvm_unreachable("unknown quant format");
}

/// Sets the storage of `t` (logical shape and sources already filled) to `quant`, or leaves it
/// in `dtype` (returns false) when K does not split into whole groups.
bool placeQuantized(ArenaTensor &t, QuantFormat quant) {
  const int64_t k = t.shape.back();
  if (!fitsGroups(k, quant))
    return false;
  switch (quant) {
  case QuantFormat::None:
    return false;
  case QuantFormat::Q8:
  case QuantFormat::Q4:
    t.dtype = quant == QuantFormat::Q8 ? WeightType::I8 : WeightType::U8;
    t.groupSize = kQuantGroupSize;
    t.scaleDtype = WeightType::F16;
    break;
  case QuantFormat::F8E4M3:
    t.dtype = WeightType::F8E4M3;
    t.groupSize = k;
    t.scaleDtype = WeightType::F32;
    for (const std::string &s : t.sources) // "...proj.weight" -> "...proj.weight_scale"
      t.scaleSources.push_back(s + "_scale");
    break;
  }
  t.quant = quant;
  t.bytes = product(t.dataShape()) * int64_t(dtype_size(t.dtype));
  t.scaleBytes = product(t.scaleShape()) * int64_t(dtype_size(t.scaleDtype));
  return true;
}
} // namespace

WeightLayout WeightLayout::build(const MixtralConfig &c, WeightFormat format) {
  WeightLayout layout;
  layout.dtype = format.dtype;
  layout.quant = format.quant;
  int64_t cursor = 0;
  // `quantizable`: an attention or expert matrix, stored in `format.quant` when it can be;
  // `keep`: one that stays in `dtype` anyway (a sibling cannot be quantized).
  auto add = [&](std::string name, std::vector<int64_t> shape, std::vector<std::string> sources,
                 bool stacked = false, bool quantizable = false, bool keep = false) {
    ArenaTensor t;
    t.name = std::move(name);
    t.shape = std::move(shape);
    t.sources = std::move(sources);
    t.stacked = stacked;
    t.dtype = format.dtype;
    t.bytes = product(t.shape) * int64_t(dtype_size(format.dtype));
    if (quantizable && format.quant != QuantFormat::None &&
        (keep || !placeQuantized(t, format.quant)))
      layout.keptUnquantized.push_back(t.name);
    t.offset = cursor;
    cursor = llvm::alignTo(cursor + t.bytes, MOEC_WEIGHT_ALIGNMENT);
    if (t.quantized()) { // the scales get their own aligned slot right after the data
      t.scaleOffset = cursor;
      cursor = llvm::alignTo(cursor + t.scaleBytes, MOEC_WEIGHT_ALIGNMENT);
    }
    layout.tensors.push_back(std::move(t));
  };
  const int64_t D = c.hidden_size, F = c.intermediate_size, E = c.num_local_experts, V = c.vocab_size;

  add("embed", {V, D}, {hf("embed_tokens.weight")});
  add("norm", {D}, {hf("norm.weight")});
  if (!c.tie_word_embeddings)
    add("lm_head", {V, D}, {"lm_head.weight"});
  layout.layerBase = cursor;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    std::string p = "layers." + std::to_string(l) + ".";
    std::string src = "layers." + std::to_string(l) + ".";
    add(p + "attn_norm", {D}, {hf(src + "input_layernorm.weight")});
    add(p + "wq", {c.q_dim(), D}, {hf(src + "self_attn.q_proj.weight")}, false, true);
    add(p + "wk", {c.kv_dim(), D}, {hf(src + "self_attn.k_proj.weight")}, false, true);
    add(p + "wv", {c.kv_dim(), D}, {hf(src + "self_attn.v_proj.weight")}, false, true);
    add(p + "wo", {D, c.q_dim()}, {hf(src + "self_attn.o_proj.weight")}, false, true);
    add(p + "ffn_norm", {D}, {hf(src + "post_attention_layernorm.weight")});
    add(p + "moe.gate", {E, D}, {hf(src + "block_sparse_moe.gate.weight")});
    // The experts are one moe.sparse_block with one format: w1/w3 (K = D) and w2 (K = F) are
    // quantized together or all kept, never a mix.
    const bool keepExperts = format.quant != QuantFormat::None &&
                             !(fitsGroups(D, format.quant) && fitsGroups(F, format.quant));
    for (const char *w : {"w1", "w3", "w2"}) {
      std::vector<std::string> experts;
      for (int64_t e = 0; e < E; ++e)
        experts.push_back(hf(src + "block_sparse_moe.experts." + std::to_string(e) + "." + w +
                             ".weight"));
      std::vector<int64_t> shape = std::string(w) == "w2" ? std::vector<int64_t>{E, D, F}
                                                          : std::vector<int64_t>{E, F, D};
      add(p + "moe." + w, shape, experts, /*stacked=*/true, /*quantizable=*/true, keepExperts);
      ArenaTensor &t = layout.tensors.back();
      bool reorders = !t.quantized() || (format.q8Panels && t.quant == QuantFormat::Q8);
      if (reorders && format.panelCols > 0 && shape[1] % format.panelCols == 0 &&
          shape[2] % format.panelLanes == 0) // same bytes, another order
        t.panelCols = format.panelCols, t.panelLanes = format.panelLanes;
    }
    if (l == 0)
      layout.layerStride = cursor - layout.layerBase;
  }
  layout.totalBytes = std::max<int64_t>(cursor, MOEC_WEIGHT_ALIGNMENT);
  return layout;
}

const ArenaTensor &WeightLayout::tensor(llvm::StringRef name) const {
  for (const ArenaTensor &t : tensors)
    if (t.name == name)
      return t;
  llvm_unreachable("no such arena tensor");
}

int64_t moec::kvCacheBytes(const MixtralConfig &c, int64_t maxSeqLen) {
  // One past the last element of abi.h's layout: the offset of layer L's first row.
  return moec_kv_offset(c.num_hidden_layers, 0, 0, 0, maxSeqLen, c.num_key_value_heads, c.head_dim) *
         int64_t(sizeof(float));
}

bool moec::emitsStep(const BuildOptions &) { return true; }

std::string moec::buildManifest(const MixtralConfig &c, const WeightLayout &layout,
                                const BuildOptions &options) {
  // The schema, its writer and its reader live in the shared checkpoint library.
  checkpoint::Manifest m;
  m.abi_version = MOEC_ABI_VERSION;
  m.target = options.target;
  m.max_seq_len = options.maxSeqLen;
  m.config = c;
  m.config.weight_dtype = layout.dtype;
  m.weights_bytes = layout.totalBytes;
  m.weights_alignment = MOEC_WEIGHT_ALIGNMENT;
  for (const ArenaTensor &t : layout.tensors) {
    checkpoint::WeightTensor w;
    w.name = t.name;
    w.dtype = t.dtype; // quantized: the data array's element
    w.quant = t.quant;
    w.shape = t.shape;
    w.offset = t.offset;
    w.nbytes = t.bytes;
    w.sources = t.sources;
    w.stacked = t.stacked;
    w.panel_cols = t.panelCols;
    w.panel_lanes = t.panelLanes;
    if (t.quantized()) {
      w.group_size = t.groupSize;
      w.scale.dtype = t.scaleDtype;
      w.scale.offset = t.scaleOffset;
      w.scale.nbytes = t.scaleBytes;
      w.scale_sources = t.scaleSources;
    }
    m.tensors.push_back(std::move(w));
  }
  m.kv_bytes = kvCacheBytes(c, options.maxSeqLen);
  m.kv_shape = {c.num_hidden_layers, 2, options.maxSeqLen, c.num_key_value_heads, c.head_dim};
  if (emitsStep(options))
    m.step = checkpoint::StepInfo{kKvBlockSize,
                                  int64_t(llvm::divideCeil(options.maxSeqLen, kKvBlockSize))};
  m.model_dir = options.modelDir;
  if (!options.weightsFile.empty())
    m.weights_file = checkpoint::WeightsFile{
        options.weightsFile, options.weightsFingerprint,
        checkpoint::kWeightsFileHeaderBytes + static_cast<uint64_t>(layout.totalBytes)};
  return checkpoint::write_manifest(m);
}

//===----------------------------------------------------------------------===//
// The forward graph
//===----------------------------------------------------------------------===//

namespace {

/// Emits one entry function. `tokens` is the static token count (1 on the decode path) or
/// ShapedType::kDynamic (prefill).
class ForwardBuilder {
public:
  ForwardBuilder(OpBuilder &b, const MixtralConfig &c, const WeightLayout &layout,
                 const BuildOptions &options)
      : b(b), c(c), layout(layout), options(options), loc(b.getUnknownLoc()),
        f32(b.getF32Type()) {
    switch (layout.dtype) {
    case WeightType::F32:
      wType = b.getF32Type();
      break;
    case WeightType::BF16:
      wType = b.getBF16Type();
      break;
    case WeightType::F16:
      wType = b.getF16Type();
      break;
    default: // the compiler's callers admit only the weight dtypes
      llvm_unreachable("not a weight dtype");
    }
  }

  void build(StringRef name, int64_t tokens);
  /// moec_step (its section below): n_rows rows at their own positions over the paged pool.
  void buildStep(StringRef name);

private:
  Value index(int64_t v) { return arith::ConstantIndexOp::create(b, loc, v); }
  RankedTensorType act(ArrayRef<int64_t> shape) { return RankedTensorType::get(shape, f32); }

  /// A read-only weight tensor at `byteOffset` of the arena. A tensor the layout quantizes
  /// keeps its logical type here; its view is marked with the format and where the scales
  /// are, for `--moe-quantize-weights` to make the storage explicit.
  Value weight(Value byteOffset, ArrayRef<int64_t> shape, const ArenaTensor *t = nullptr) {
    auto view = memref::ViewOp::create(b, loc, MemRefType::get(shape, wType), weights,
                                       byteOffset, ValueRange{});
    if (t && t->quantized()) {
      moe::QuantFormat format = t->quant == QuantFormat::Q8   ? moe::QuantFormat::q8
                                : t->quant == QuantFormat::Q4 ? moe::QuantFormat::q4
                                                              : moe::QuantFormat::f8e4m3;
      // f8e4m3's attribute has no group size: its group is each weight's whole row.
      int64_t group = format == moe::QuantFormat::f8e4m3 ? 0 : t->groupSize;
      view->setAttr("moe.quant", moe::QuantAttr::get(b.getContext(), format, group));
      view->setAttr("moe.scale_offset", b.getI64IntegerAttr(t->scaleOffset - t->offset));
    }
    if (t && t->panelCols > 0) // moe-lower-to-linalg reads it in panel order
      view->setAttr("moe.panels", moe::PanelsAttr::get(b.getContext(), t->panelCols, t->panelLanes));
    return bufferization::ToTensorOp::create(b, loc, RankedTensorType::get(shape, wType), view,
                                             /*restrict=*/true, /*writable=*/false);
  }
  Value weight(int64_t byteOffset, ArrayRef<int64_t> shape) {
    return weight(index(byteOffset), shape);
  }
  /// Weight of the current layer: layer 0's offset shifted by l * stride.
  Value layerWeight(StringRef suffix, ArrayRef<int64_t> shape) {
    const ArenaTensor &t = layout.tensor(("layers.0." + suffix).str());
    Value offset = arith::AddIOp::create(b, loc, layerBase, index(t.offset - layout.layerBase));
    return weight(offset, shape, &t);
  }

  /// residual + update, elementwise.
  Value add(Value residual, Value update) {
    Value init = tensor::EmptyOp::create(b, loc, dims(residual), f32);
    return linalg::AddOp::create(b, loc, ValueRange{residual, update}, ValueRange{init})
        .getResult(0);
  }
  /// The token count as a static attribute on the decode path, as a value for prefill.
  OpFoldResult tokenCount() {
    return ShapedType::isDynamic(T) ? OpFoldResult(numTokens) : OpFoldResult(b.getIndexAttr(T));
  }
  SmallVector<OpFoldResult> dims(Value tensor) {
    return tensor::getMixedSizes(b, loc, tensor);
  }

  /// Layer l's weights start at layerBase = layout.layerBase + l * layerStride.
  void setLayer(Value l) {
    Value stride = arith::MulIOp::create(b, loc, l, index(layout.layerStride));
    layerBase = arith::AddIOp::create(b, loc, stride, index(layout.layerBase));
  }

  /// One decoder layer; returns the new hidden state. With `keepRows` (the last layer):
  /// attention over every row (the KV cache needs each row's k and v), then keepRows picks
  /// the rows of h [T, D] that the logits read (prefill: the last one; moec_step: its logit
  /// rows) and the FFN runs for those alone: returns [rows, D].
  Value layer(Value h, Value l, function_ref<Value(Value)> keepRows = nullptr);
  /// RoPE, cache write and attention over the contiguous cache (prefill/decode): o [T, H, HD].
  Value contiguousAttention(Value q3, Value k3, Value v3, Value l);
  /// The same over the paged pool, each row at its own position (moec_step).
  Value pagedAttention(Value q3, Value k3, Value v3, Value l);

  OpBuilder &b;
  const MixtralConfig &c;
  const WeightLayout &layout;
  const BuildOptions &options;
  Location loc;
  Type f32, wType;
  int64_t T = 0;                 // static token count or kDynamic
  Value weights, kv, numTokens, pos, layerBase;
  // moec_step only (paged = true): kv is the pool arena.
  bool paged = false;
  Value nBlocks, positions, blockTables; // index; [T] i32; [T, max_blocks] i32
};

void ForwardBuilder::build(StringRef name, int64_t tokens) {
  T = tokens;
  const int64_t S = options.maxSeqLen, D = c.hidden_size, V = c.vocab_size;
  auto i8 = b.getIntegerType(8);
  bool decode = !ShapedType::isDynamic(tokens);
  SmallVector<Type> args = {MemRefType::get({layout.totalBytes}, i8),
                            MemRefType::get({kvCacheBytes(c, S)}, i8),
                            MemRefType::get({decode ? tokens : S}, b.getI32Type())};
  if (!decode)
    args.push_back(b.getIndexType()); // n_tokens
  args.push_back(b.getIndexType());   // pos
  args.push_back(MemRefType::get({V}, f32));
  auto func = func::FuncOp::create(b, loc, name, b.getFunctionType(args, {}));
  OpBuilder::InsertionGuard guard(b);
  Block *entry = func.addEntryBlock();
  b.setInsertionPointToStart(entry);

  weights = entry->getArgument(0);
  kv = entry->getArgument(1);
  Value tokenBuf = entry->getArgument(2);
  numTokens = decode ? index(tokens) : entry->getArgument(3);
  pos = entry->getArgument(decode ? 3 : 4);
  Value logitsBuf = entry->getArgument(decode ? 4 : 5);

  // ids: [T] i32 — the first n_tokens entries of the token buffer.
  auto tokenBufType = cast<MemRefType>(tokenBuf.getType());
  Value allIds = bufferization::ToTensorOp::create(
      b, loc, RankedTensorType::get(tokenBufType.getShape(), b.getI32Type()), tokenBuf,
      /*restrict=*/true, /*writable=*/false);
  Value ids = decode ? allIds
                     : tensor::ExtractSliceOp::create(
                           b, loc, RankedTensorType::get({T}, b.getI32Type()), allIds,
                           ArrayRef<OpFoldResult>{b.getIndexAttr(0)},
                           ArrayRef<OpFoldResult>{numTokens},
                           ArrayRef<OpFoldResult>{b.getIndexAttr(1)})
                           .getResult();

  Value h = moe::EmbeddingOp::create(b, loc, act({T, D}),
                                     weight(layout.offsetOf("embed"), {V, D}), ids);
  // h: [T, D]

  // Only the last position's logits leave the function, so prefill's last layer runs its FFN
  // for that row alone (the other rows' outputs of it are never read; their k and v, which
  // the cache keeps, come before the FFN). Decode has one row: one loop over every layer.
  const int64_t L = c.num_hidden_layers, looped = decode ? L : L - 1;
  // The layer loop: one body, layer l's weights at layerBase + l * layerStride.
  auto loop = scf::ForOp::create(
      b, loc, index(0), index(looped), index(1), ValueRange{h},
      [&](OpBuilder &, Location, Value l, ValueRange iter) {
        setLayer(l);
        Value next = layer(iter[0], l);
        scf::YieldOp::create(b, loc, next);
      });
  h = loop.getResult(0);
  // h: [T, D]
  if (!decode) {
    Value l = index(L - 1);
    setLayer(l);
    h = layer(h, l, [&](Value all) -> Value {
      Value last = arith::SubIOp::create(b, loc, numTokens, index(1));
      return tensor::ExtractSliceOp::create(
          b, loc, act({1, c.hidden_size}), all,
          ArrayRef<OpFoldResult>{last, b.getIndexAttr(0)},
          ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(c.hidden_size)},
          ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1)});
    });
  }
  // h: [1, D], the last position

  Value lastRow = moe::RMSNormOp::create(b, loc, act({1, D}), h,
                                         weight(layout.offsetOf("norm"), {D}),
                                         b.getF64FloatAttr(c.rms_norm_eps));
  // lastRow: [1, D]
  int64_t headOffset = layout.offsetOf(c.tie_word_embeddings ? "embed" : "lm_head");
  Value logits = moe::LinearOp::create(b, loc, act({1, V}), lastRow, weight(headOffset, {V, D}));
  // logits: [1, V]
  Value flat = tensor::CollapseShapeOp::create(b, loc, act({V}), logits,
                                               ArrayRef<ReassociationIndices>{{0, 1}});
  auto store = bufferization::MaterializeInDestinationOp::create(b, loc, Type(), flat, logitsBuf,
                                                                 /*restrict=*/true,
                                                                 /*writable=*/true);
  (void)store;
  func::ReturnOp::create(b, loc);
}

Value ForwardBuilder::layer(Value h, Value l, function_ref<Value(Value)> keepRows) {
  const int64_t D = c.hidden_size, H = c.num_attention_heads, KVH = c.num_key_value_heads, HD = c.head_dim;
  const int64_t E = c.num_local_experts, F = c.intermediate_size;
  FloatAttr eps = b.getF64FloatAttr(c.rms_norm_eps);

  // --- attention ---------------------------------------------------------------------------
  Value x = moe::RMSNormOp::create(b, loc, act({T, D}), h, layerWeight("attn_norm", {D}), eps);
  // x: [T, D]
  Value q = moe::LinearOp::create(b, loc, act({T, H * HD}), x, layerWeight("wq", {H * HD, D}));
  Value k = moe::LinearOp::create(b, loc, act({T, KVH * HD}), x, layerWeight("wk", {KVH * HD, D}));
  Value v = moe::LinearOp::create(b, loc, act({T, KVH * HD}), x, layerWeight("wv", {KVH * HD, D}));
  // q: [T, H*HD], k, v: [T, KVH*HD]
  auto heads = [&](Value t, int64_t n) -> Value {
    return tensor::ExpandShapeOp::create(
        b, loc, act({T, n, HD}), t, ArrayRef<ReassociationIndices>{{0}, {1, 2}},
        ArrayRef<OpFoldResult>{tokenCount(), b.getIndexAttr(n), b.getIndexAttr(HD)});
  };
  Value o = paged ? pagedAttention(heads(q, H), heads(k, KVH), heads(v, KVH), l)
                  : contiguousAttention(heads(q, H), heads(k, KVH), heads(v, KVH), l);
  // o: [T, H, HD]
  Value o2 = tensor::CollapseShapeOp::create(b, loc, act({T, H * HD}), o,
                                             ArrayRef<ReassociationIndices>{{0}, {1, 2}});
  Value attn = moe::LinearOp::create(b, loc, act({T, D}), o2, layerWeight("wo", {D, H * HD}));
  h = add(h, attn);
  // h: [T, D]
  if (keepRows)
    h = keepRows(h);
  const int64_t rows = cast<RankedTensorType>(h.getType()).getDimSize(0);
  // h: [rows, D]

  // --- sparse MoE FFN ----------------------------------------------------------------------
  Value y = moe::RMSNormOp::create(b, loc, act({rows, D}), h, layerWeight("ffn_norm", {D}), eps);
  Value ffn = moe::SparseBlockOp::create(
      b, loc, act({rows, D}), y, layerWeight("moe.gate", {E, D}),
      layerWeight("moe.w1", {E, F, D}), layerWeight("moe.w3", {E, F, D}),
      layerWeight("moe.w2", {E, D, F}), c.num_experts_per_tok);
  // ffn: [rows, D]
  return add(h, ffn);
}

Value ForwardBuilder::contiguousAttention(Value q3, Value k3, Value v3, Value l) {
  const int64_t H = c.num_attention_heads, KVH = c.num_key_value_heads, HD = c.head_dim;
  const int64_t S = options.maxSeqLen;
  FloatAttr theta = b.getF64FloatAttr(c.rope_theta);
  Value qr = moe::RoPEOp::create(b, loc, act({T, H, HD}), q3, pos, theta);
  Value kr = moe::RoPEOp::create(b, loc, act({T, KVH, HD}), k3, pos, theta);
  // qr: [T, H, HD], kr, v3: [T, KVH, HD]

  // This layer's cache: f32 [S, KVH, HD] at moec_kv_offset(l, which, 0, 0) elements. The
  // layout is abi.h's moec_kv_offset itself, evaluated at unit steps, so the runtime and the
  // generated code share one definition; the views are row-major [S, KVH, HD], so the helper's
  // position and head strides must be that (checked: a helper changed to another layout stops
  // the compiler rather than splitting the two sides).
  auto kvOffset = [&](int64_t layer, int64_t which, int64_t p, int64_t head) {
    return moec_kv_offset(layer, which, p, head, S, KVH, HD);
  };
  const int64_t layerStride = kvOffset(1, 0, 0, 0), whichStride = kvOffset(0, 1, 0, 0);
  if (kvOffset(0, 0, 0, 0) != 0 || kvOffset(0, 0, 1, 0) != KVH * HD ||
      kvOffset(0, 0, 0, 1) != HD || kvOffset(1, 1, 1, 1) != layerStride + whichStride + KVH * HD + HD)
    llvm::report_fatal_error("abi.h: moec_kv_offset is not a row-major [S][KVH][HD] block per "
                             "(layer, which), the layout the generated cache views use");
  auto cacheType = MemRefType::get({S, KVH, HD}, f32);
  auto cache = [&](int64_t which) -> std::pair<Value, Value> {
    Value elems = arith::AddIOp::create(
        b, loc, arith::MulIOp::create(b, loc, l, index(layerStride)), index(which * whichStride));
    Value bytes = arith::MulIOp::create(b, loc, elems, index(int64_t(sizeof(float))));
    Value view = memref::ViewOp::create(b, loc, cacheType, kv, bytes, ValueRange{});
    Value t = bufferization::ToTensorOp::create(b, loc, act({S, KVH, HD}), view,
                                                /*restrict=*/true, /*writable=*/true);
    return {view, t};
  };
  auto [kView, kCache] = cache(0);
  auto [vView, vCache] = cache(1);
  auto write = [&](Value update, Value into) -> Value {
    return tensor::InsertSliceOp::create(
        b, loc, update, into, ArrayRef<OpFoldResult>{pos, b.getIndexAttr(0), b.getIndexAttr(0)},
        ArrayRef<OpFoldResult>{tokenCount(), b.getIndexAttr(KVH), b.getIndexAttr(HD)},
        ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1), b.getIndexAttr(1)});
  };
  Value kNew = write(kr, kCache);
  Value vNew = write(v3, vCache);
  // kNew, vNew: [S, KVH, HD], positions [0, pos+T) valid

  IntegerAttr window;
  if (c.sliding_window)
    window = b.getI64IntegerAttr(*c.sliding_window);
  Value o = moe::AttentionOp::create(b, loc, act({T, H, HD}), qr, kNew, vNew, pos,
                                     b.getF64FloatAttr(1.0 / std::sqrt(double(HD))), window);
  // o: [T, H, HD]
  bufferization::MaterializeInDestinationOp::create(b, loc, Type(), kNew, kView, true, true);
  bufferization::MaterializeInDestinationOp::create(b, loc, Type(), vNew, vView, true, true);
  return o;
}

//===----------------------------------------------------------------------===//
// moec_step: rows of many sequences over the paged KV pool
//===----------------------------------------------------------------------===//

// Buffers whose length the runtime chooses per call (the pool, the row arrays) are typed with
// a static bound: the bare-pointer calling convention passes only the pointer, and the body
// views the first n_rows / n_blocks through memref.view with dynamic sizes. The bounds are
// never used to index anything.
constexpr int64_t kPoolBoundBytes = int64_t(1) << 40;

void ForwardBuilder::buildStep(StringRef name) {
  T = ShapedType::kDynamic;
  paged = true;
  const int64_t D = c.hidden_size, V = c.vocab_size, R = MOEC_STEP_MAX_ROWS;
  const int64_t MB = int64_t(llvm::divideCeil(options.maxSeqLen, kKvBlockSize));
  Type i32 = b.getI32Type(), indexType = b.getIndexType();
  auto i8 = b.getIntegerType(8);
  SmallVector<Type> args = {MemRefType::get({layout.totalBytes}, i8), // weights
                            MemRefType::get({kPoolBoundBytes}, i8),   // kv_pool
                            indexType,                                // n_blocks
                            MemRefType::get({R}, i32),                // tokens
                            MemRefType::get({R}, i32),                // positions
                            MemRefType::get({R, MB}, i32),            // block_tables
                            indexType,                                // n_rows
                            MemRefType::get({R}, i32),                // logit_rows
                            indexType,                                // n_logits
                            MemRefType::get({R, V}, f32)};            // logits
  auto func = func::FuncOp::create(b, loc, name, b.getFunctionType(args, {}));
  OpBuilder::InsertionGuard guard(b);
  Block *entry = func.addEntryBlock();
  b.setInsertionPointToStart(entry);
  weights = entry->getArgument(0);
  kv = entry->getArgument(1);
  nBlocks = entry->getArgument(2);
  numTokens = entry->getArgument(6);
  Value numLogits = entry->getArgument(8);

  // The first `n` rows of a read-only row buffer: [n, ...] tensor.
  auto rows = [&](Value buf, Value n) -> Value {
    auto type = cast<MemRefType>(buf.getType());
    Value all = bufferization::ToTensorOp::create(
        b, loc, RankedTensorType::get(type.getShape(), type.getElementType()), buf,
        /*restrict=*/true, /*writable=*/false);
    SmallVector<int64_t> shape(type.getShape());
    shape[0] = ShapedType::kDynamic;
    SmallVector<OpFoldResult> offsets(shape.size(), b.getIndexAttr(0));
    SmallVector<OpFoldResult> sizes = {n}, strides(shape.size(), b.getIndexAttr(1));
    for (size_t d = 1; d < shape.size(); ++d)
      sizes.push_back(b.getIndexAttr(shape[d]));
    return tensor::ExtractSliceOp::create(
        b, loc, RankedTensorType::get(shape, type.getElementType()), all, offsets, sizes, strides);
  };
  Value ids = rows(entry->getArgument(3), numTokens);
  positions = rows(entry->getArgument(4), numTokens);
  blockTables = rows(entry->getArgument(5), numTokens);
  Value logitRows = rows(entry->getArgument(7), numLogits);
  // ids, positions: [T] i32; blockTables: [T, MB] i32; logitRows: [n_logits] i32

  Value h = moe::EmbeddingOp::create(b, loc, act({T, D}),
                                     weight(layout.offsetOf("embed"), {V, D}), ids);
  // h: [T, D]
  const int64_t L = c.num_hidden_layers;
  auto loop = scf::ForOp::create(
      b, loc, index(0), index(L - 1), index(1), ValueRange{h},
      [&](OpBuilder &, Location, Value l, ValueRange iter) {
        setLayer(l);
        scf::YieldOp::create(b, loc, layer(iter[0], l));
      });
  h = loop.getResult(0);
  // h: [T, D]

  // Only the requested rows reach the last layer's FFN, the final norm and the lm_head GEMM:
  // the last layer gathers them after its attention (which writes every row's k and v).
  const int64_t N = ShapedType::kDynamic;
  Value last = index(L - 1);
  setLayer(last);
  Value picked = layer(h, last, [&](Value all) -> Value {
    return moe::GatherRowsOp::create(b, loc, act({N, D}), all, logitRows, 1);
  });
  // picked: [n_logits, D]
  Value normed = moe::RMSNormOp::create(b, loc, act({N, D}), picked,
                                        weight(layout.offsetOf("norm"), {D}),
                                        b.getF64FloatAttr(c.rms_norm_eps));
  int64_t headOffset = layout.offsetOf(c.tie_word_embeddings ? "embed" : "lm_head");
  Value logits = moe::LinearOp::create(b, loc, act({N, V}), normed, weight(headOffset, {V, D}));
  // logits: [n_logits, V]
  Value logitsBuf = entry->getArgument(9);
  Value out = bufferization::ToTensorOp::create(b, loc, act({R, V}), logitsBuf,
                                                /*restrict=*/true, /*writable=*/true);
  out = tensor::InsertSliceOp::create(
      b, loc, logits, out, ArrayRef<OpFoldResult>{b.getIndexAttr(0), b.getIndexAttr(0)},
      ArrayRef<OpFoldResult>{numLogits, b.getIndexAttr(V)},
      ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1)});
  bufferization::MaterializeInDestinationOp::create(b, loc, Type(), out, logitsBuf, true, true);
  func::ReturnOp::create(b, loc);
}

Value ForwardBuilder::pagedAttention(Value q3, Value k3, Value v3, Value l) {
  const int64_t H = c.num_attention_heads, KVH = c.num_key_value_heads, HD = c.head_dim;
  const int64_t B = kKvBlockSize;
  FloatAttr theta = b.getF64FloatAttr(c.rope_theta);
  Value qr = moe::RoPEAtOp::create(b, loc, act({T, H, HD}), q3, positions, theta);
  Value kr = moe::RoPEAtOp::create(b, loc, act({T, KVH, HD}), k3, positions, theta);
  // qr: [T, H, HD], kr, v3: [T, KVH, HD]

  // This layer's K (or V) pool: f32 [n_blocks, B, KVH, HD] at moec_kv_block_offset(l, which,
  // 0, 0, 0) elements, i.e. (2l + which) * n_blocks * B*KVH*HD. As for the contiguous cache,
  // the helper itself is evaluated to get the strides, and checked to be the row-major layout
  // the views assume.
  const int64_t blockElems = B * KVH * HD;
  auto off = [&](int64_t layer, int64_t which, int64_t blk, int64_t slot, int64_t head,
                 int64_t n) { return moec_kv_block_offset(layer, which, blk, slot, head, n, B, KVH, HD); };
  if (off(0, 0, 0, 0, 0, 3) != 0 || off(0, 1, 0, 0, 0, 3) != 3 * blockElems ||
      off(1, 0, 0, 0, 0, 3) != 6 * blockElems || off(0, 0, 1, 0, 0, 3) != blockElems ||
      off(0, 0, 0, 1, 0, 3) != KVH * HD || off(0, 0, 0, 0, 1, 3) != HD)
    llvm::report_fatal_error("abi.h: moec_kv_block_offset is not a row-major "
                             "[2L][n_blocks][B][KVH][HD] pool, the layout the step's views use");
  auto poolType = MemRefType::get({ShapedType::kDynamic, B, KVH, HD}, f32);
  auto pool = [&](int64_t which) -> std::pair<Value, Value> {
    Value slice = arith::AddIOp::create(b, loc, arith::MulIOp::create(b, loc, l, index(2)),
                                        index(which));
    Value elems = arith::MulIOp::create(
        b, loc, arith::MulIOp::create(b, loc, slice, nBlocks), index(blockElems));
    Value bytes = arith::MulIOp::create(b, loc, elems, index(int64_t(sizeof(float))));
    Value view = memref::ViewOp::create(b, loc, poolType, kv, bytes, ValueRange{nBlocks});
    Value t = bufferization::ToTensorOp::create(b, loc, act({ShapedType::kDynamic, B, KVH, HD}),
                                                view, /*restrict=*/true, /*writable=*/true);
    return {view, t};
  };
  auto [kView, kPool] = pool(0);
  auto [vView, vPool] = pool(1);
  Value kNew = moe::PagedKVWriteOp::create(b, loc, kPool.getType(), kr, kPool, blockTables,
                                           positions);
  Value vNew = moe::PagedKVWriteOp::create(b, loc, vPool.getType(), v3, vPool, blockTables,
                                           positions);
  // kNew, vNew: [n_blocks, B, KVH, HD], this step's rows written

  IntegerAttr window;
  if (c.sliding_window)
    window = b.getI64IntegerAttr(*c.sliding_window);
  Value o = moe::PagedAttentionOp::create(b, loc, act({T, H, HD}), qr, kNew, vNew, blockTables,
                                          positions,
                                          b.getF64FloatAttr(1.0 / std::sqrt(double(HD))), window);
  // o: [T, H, HD]
  bufferization::MaterializeInDestinationOp::create(b, loc, Type(), kNew, kView, true, true);
  bufferization::MaterializeInDestinationOp::create(b, loc, Type(), vNew, vView, true, true);
  return o;
}

} // namespace

void moec::registerModelDialects(DialectRegistry &registry) {
  registry.insert<moe::MoeDialect, arith::ArithDialect, bufferization::BufferizationDialect,
                  func::FuncDialect, linalg::LinalgDialect, LLVM::LLVMDialect,
                  memref::MemRefDialect, scf::SCFDialect, tensor::TensorDialect>();
}

OwningOpRef<ModuleOp> moec::buildMixtralModule(MLIRContext &context, const MixtralConfig &c,
                                                const BuildOptions &options) {
  DialectRegistry registry;
  registerModelDialects(registry);
  context.appendDialectRegistry(registry);
  context.loadAllAvailableDialects();

  OpBuilder b(&context);
  Location loc = b.getUnknownLoc();
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc, StringRef("mixtral"));
  b.setInsertionPointToEnd(module->getBody());

  WeightLayout layout = WeightLayout::build(c, options.format());
  std::string manifest = buildManifest(c, layout, options);
  manifest.push_back('\0');
  auto arrayType = LLVM::LLVMArrayType::get(b.getIntegerType(8), manifest.size());
  LLVM::GlobalOp::create(b, loc, arrayType, /*isConstant=*/true, LLVM::Linkage::External,
                         "moec_manifest", b.getStringAttr(manifest));

  ForwardBuilder forward(b, c, layout, options);
  forward.build("moec_prefill", ShapedType::kDynamic);
  forward.build("moec_decode", 1);
  if (emitsStep(options))
    forward.buildStep("moec_step");
  return module;
}
