//===- OnlineAttention.h - tiled online-softmax attention on tensors ------===//
//
// The one attention kernel of the CPU target, built by moe-lower-to-linalg for
// `moe.attention` (prefill and decode) and `moe.paged_attention` (the batched step) alike:
// only where a row's keys and values live differs between them. Sharing the builder is what
// makes a row's output bit-identical whichever way it comes in (the project's batch/step
// invariance): the same key tiles, in the same order, with the same online-softmax update.
//
//===----------------------------------------------------------------------===//
#ifndef MOEC_CODEGEN_CPU_ONLINEATTENTION_H
#define MOEC_CODEGEN_CPU_ONLINEATTENTION_H

#include "mlir/IR/Builders.h"
#include "mlir/IR/Value.h"
#include "llvm/ADT/STLFunctionalExtras.h"

#include <cstdint>
#include <optional>

namespace mlir::moe {

/// Head geometry and numerics of one attention op.
struct AttentionGeometry {
  int64_t kvHeads, group, headDim; // group: query heads per KV head (H / KVH)
  double scale;                    // scores are (q · k) * scale
  std::optional<uint64_t> window;  // sliding window W: row at p sees (p - W, p]
  Type resultType;                 // element type of the output
};

/// The absolute position p of query row `t`.
using RowPositionFn = function_ref<Value(OpBuilder &, Location, Value t)>;
/// The first dimension's index into the key/value tensors of position `at` (<= p) of row t.
using CacheRowFn = function_ref<Value(OpBuilder &, Location, Value t, Value at)>;

/// out[T, KVH, G, HD] = softmax(q · kᵀ * scale, masked) · v for q4[T, KVH, G, HD] over
/// keys/values [rows, KVH, HD] (f32, bf16 or f16), as a tiled online softmax: an scf.forall
/// over (KV head, query row); each iteration keeps its G query heads' running max, sum and
/// HD-wide accumulators in vectors and walks the key tiles [kTile * i, kTile * (i + 1))
/// that hold its visible positions [max(0, p - W + 1), p], in ascending order; each key and
/// value row of a tile is read once for the G heads. No [T, H, L] tensor exists.
Value buildOnlineAttention(OpBuilder &b, Location loc, Value q4, Value keys, Value values,
                           const AttentionGeometry &geometry, RowPositionFn position,
                           CacheRowFn cacheRow);

/// Keys per tile: tiles start at absolute positions that are multiples of it, so that a
/// row's tiles do not depend on how many rows come with it.
constexpr int64_t kAttentionKeyTile = 8;

} // namespace mlir::moe

#endif // MOEC_CODEGEN_CPU_ONLINEATTENTION_H
