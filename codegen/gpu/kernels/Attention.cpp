//===- Attention.cpp - attention (split-K online softmax) and its combine -===//
//
//   attention          grid (ceil(T / QT), KVH, splits), block Tiles::attnThreads (4 warps).
//                      QT tokens x G heads = Tiles::attnRows query rows per block share one
//                      KV head, so they share the K/V tiles staged in shared memory
//                      (attnKeyTile(HD) keys at a time, f32). Each warp owns rows
//                      warp, warp + 4, ...; each lane holds ceil(HD / 32) dims of a row's q
//                      (pre-scaled) and o. Per key: q.k by warp shuffles, then the online
//                      softmax update in f32. Each split z of the key range writes the partials
//                      part[(z*T + t)*H + h] = (o[HD], m, l).
//   attention_combine  grid T*H: merges the splits' partials, out = sum e^(m_z - M) o_z / L.
//   paged_attention    grid (T, KVH), the same block for the batched step (moe.paged_attention):
//                      one row of the step per block (its G heads of one KV head), at its own
//                      position p = positions[t], over its own block table: key j is staged
//                      from pool[tables[t, j / B], j % B]. No split: one block walks the row's
//                      whole key range in ascending order and writes o / l, so a row's result
//                      depends on nothing else in the step (batch invariance).
//
// The key range of a block and the row -> (token, head) map are IndexMath.h's; the
// head geometry (HD, G) is a compile-time constant of the library, the sequence geometry
// (T, start, window, chunk) a kernel argument.
//
//===----------------------------------------------------------------------===//

#include "IndexMath.h"
#include "KernelBuilder.h"

#include "mlir/Dialect/Math/IR/Math.h"

namespace mlir::moe::gpu::kernels {
namespace {

namespace mg = ::mlir::gpu;
constexpr int64_t kWarps = Tiles::attnThreads / 32;
constexpr double kNoMax = -1.0e30; // the running max before any key

/// One query row of a warp: where it is and its q (pre-scaled), one value per lane dim.
struct QueryRow {
  Ix t, h, p;       // token, head, position start + t
  Value ok;         // the row exists (row < attnRows of this G, t < T)
  SmallVector<Value> q;
  SmallVector<Value> dIn; // lane dim j < HD
  SmallVector<Ix> d;      // lane + 32 j
};

/// The running state of one row: max, sum, output dims.
struct RowState {
  Value m, l;
  SmallVector<Value> o;
};

/// What the phases of one attention block share.
struct AttnBlock {
  int64_t HD, G, QT, rowsPerWarp, dimsPerLane, keyTile;
  Value q, kc, vc, part, T, start, window, chunk, scale, sk, sv;
  // paged_attention only: the pools are [n_blocks, B, KVH, HD]; the block's one row sits at
  // position `start` (loaded from positions[t0]) and reads its keys through tables[t0, :].
  bool paged = false;
  Value tables, positions, out, blockSize;
  Ix tid, lane, warp, kvh, z, t0;
  Value hasWindow;
  SmallVector<QueryRow> rows;
};

QueryRow loadQueryRow(KernelBuilder &b, const AttnBlock &k, int64_t i) {
  QueryRow r;
  Ix row = k.warp + i * kWarps;
  r.t = k.t0 + index::attnRowToken(row, k.G);
  r.h = k.kvh * k.G + index::attnRowHead(row, k.G);
  r.p = k.paged ? ix(b, k.start) : ix(b, k.start) + r.t; // paged: the block's one row
  r.ok = both(b, ult(b, row, ix(b, k.QT * k.G)), ult(b, r.t, k.T));
  for (int64_t j = 0; j < k.dimsPerLane; ++j) {
    r.d.push_back(k.lane + 32 * j);
    r.dIn.push_back(ult(b, r.d.back(), ix(b, k.HD)));
    r.q.push_back(ifElse(
        b, both(b, r.dIn.back(), r.ok), {b.getF32Type()},
        [&]() -> SmallVector<Value> {
          Value x = memref::LoadOp::create(b, k.q, ValueRange{r.t, r.h, r.d.back()});
          return {arith::MulFOp::create(b, x, k.scale)};
        },
        [&]() -> SmallVector<Value> { return {f32(b, 0.0)}; })[0]);
  }
  return r;
}

/// Keys [j0, j0 + keyTile) of this KV head into sk/sv (zeros past kHi).
void stageKV(KernelBuilder &b, const AttnBlock &k, Ix j0, Value kHi) {
  Value zero = f32(b, 0.0);
  forEach(b, k.tid, ix(b, k.keyTile * k.HD), ix(b, Tiles::attnThreads), [&](Ix e) {
    Ix jj = e / k.HD, d = e % k.HD;
    Ix key = j0 + jj;
    SmallVector<Value> kv = ifElse(
        b, ult(b, key, kHi), {b.getF32Type(), b.getF32Type()},
        [&]() -> SmallVector<Value> {
          if (k.paged) {
            Ix bs = ix(b, k.blockSize);
            Value blk =
                i32ToIndex(b, memref::LoadOp::create(b, k.tables, ValueRange{k.t0, key / bs}));
            Value slot = key % bs;
            return {memref::LoadOp::create(b, k.kc, ValueRange{blk, slot, k.kvh, d}),
                    memref::LoadOp::create(b, k.vc, ValueRange{blk, slot, k.kvh, d})};
          }
          return {memref::LoadOp::create(b, k.kc, ValueRange{key, k.kvh, d}),
                  memref::LoadOp::create(b, k.vc, ValueRange{key, k.kvh, d})};
        },
        [&]() -> SmallVector<Value> { return {zero, zero}; });
    memref::StoreOp::create(b, kv[0], k.sk, ValueRange{jj, d});
    memref::StoreOp::create(b, kv[1], k.sv, ValueRange{jj, d});
  });
}

/// The online-softmax update of row r by one key (kd, vd: this lane's dims of it).
RowState updateRow(KernelBuilder &b, const AttnBlock &k, const QueryRow &r, const RowState &s,
                   Ix key, ArrayRef<Value> kd, ArrayRef<Value> vd) {
  Value dot = f32(b, 0.0);
  for (int64_t j = 0; j < k.dimsPerLane; ++j)
    dot = math::FmaOp::create(b, r.q[j], kd[j], dot);
  Value score = warpSum(b, dot);
  // Causal, and inside the window when there is one.
  Value inWindow = ult(b, r.p, key + ix(b, k.window));
  Value visible = arith::OrIOp::create(b, arith::XOrIOp::create(b, k.hasWindow, i1(b, true)),
                                       inWindow);
  Value ok = both(b, both(b, ule(b, key, r.p), visible), r.ok);
  Value mx = arith::MaximumFOp::create(b, s.m, score);
  RowState n;
  n.m = arith::SelectOp::create(b, ok, mx, s.m);
  Value corr = math::ExpOp::create(b, arith::SubFOp::create(b, s.m, n.m));
  Value pe = math::ExpOp::create(b, arith::SubFOp::create(b, score, n.m));
  Value p = arith::SelectOp::create(b, ok, pe, f32(b, 0.0));
  n.l = arith::AddFOp::create(b, arith::MulFOp::create(b, s.l, corr), p);
  for (int64_t j = 0; j < k.dimsPerLane; ++j)
    n.o.push_back(math::FmaOp::create(b, p, vd[j], arith::MulFOp::create(b, s.o[j], corr)));
  return n;
}

/// States of all rows as a flat iter_args list, and back.
SmallVector<Value> flatten(ArrayRef<RowState> states) {
  SmallVector<Value> v;
  for (const RowState &s : states) {
    v.append({s.m, s.l});
    v.append(s.o.begin(), s.o.end());
  }
  return v;
}
SmallVector<RowState> unflatten(ValueRange v, int64_t rows, int64_t dims) {
  SmallVector<RowState> states;
  for (int64_t i = 0; i < rows; ++i) {
    ValueRange s = v.slice(i * (2 + dims), 2 + dims);
    states.push_back({s[0], s[1], SmallVector<Value>(s.drop_front(2))});
  }
  return states;
}

/// Keys [j0, min(j0 + keyTile, kHi)) from shared memory, every row updated per key.
SmallVector<Value> tileKeys(KernelBuilder &b, const AttnBlock &k, Ix j0, Value kHi,
                            ValueRange state) {
  SmallVector<Ix> dd; // this lane's dims, clamped into the tile
  for (int64_t j = 0; j < k.dimsPerLane; ++j)
    dd.push_back(umin(k.lane + 32 * j, ix(b, k.HD - 1)));
  Value nk = umin(ix(b, kHi) - j0, ix(b, k.keyTile));
  return forLoop(b, ix(b, 0), nk, ix(b, 1), state, [&](Ix jj, ValueRange s) {
    Ix key = j0 + jj;
    SmallVector<Value> kd, vd;
    for (Ix d : dd) {
      kd.push_back(memref::LoadOp::create(b, k.sk, ValueRange{jj, d}));
      vd.push_back(memref::LoadOp::create(b, k.sv, ValueRange{jj, d}));
    }
    SmallVector<RowState> rows = unflatten(s, k.rowsPerWarp, k.dimsPerLane);
    for (int64_t i = 0; i < k.rowsPerWarp; ++i)
      rows[i] = updateRow(b, k, k.rows[i], rows[i], key, kd, vd);
    return flatten(rows);
  });
}

/// part[(z*T + t)*H + h] = (o[HD], m, l) for every existing row.
void writePartials(KernelBuilder &b, const AttnBlock &k, ArrayRef<RowState> fin) {
  Ix heads = gridDim(b, mg::Dimension::y) * k.G;
  for (int64_t i = 0; i < k.rowsPerWarp; ++i) {
    const QueryRow &r = k.rows[i];
    ifThen(b, r.ok, [&] {
      Ix prow = (k.z * ix(b, k.T) + r.t) * heads + r.h;
      for (int64_t j = 0; j < k.dimsPerLane; ++j)
        ifThen(b, r.dIn[j], [&] {
          memref::StoreOp::create(b, fin[i].o[j], k.part, ValueRange{prow, r.d[j]});
        });
      ifThen(b, eq(b, k.lane, ix(b, 0)), [&] {
        memref::StoreOp::create(b, fin[i].m, k.part, ValueRange{prow, ix(b, k.HD)});
        memref::StoreOp::create(b, fin[i].l, k.part, ValueRange{prow, ix(b, k.HD + 1)});
      });
    });
  }
}

/// paged_attention: out[t, h] = o / l for every existing row (one split, nothing to merge).
void writeOutput(KernelBuilder &b, const AttnBlock &k, ArrayRef<RowState> fin) {
  for (int64_t i = 0; i < k.rowsPerWarp; ++i) {
    const QueryRow &r = k.rows[i];
    ifThen(b, r.ok, [&] {
      for (int64_t j = 0; j < k.dimsPerLane; ++j)
        ifThen(b, r.dIn[j], [&] {
          Value o = arith::DivFOp::create(b, fin[i].o[j], fin[i].l);
          memref::StoreOp::create(b, o, k.out, ValueRange{r.t, r.h, r.d[j]});
        });
    });
  }
}

/// paged_attention(q [T,H,HD], kpool, vpool [n_blocks,B,KVH,HD], tables [T,MB] i32,
/// positions [T] i32, out [T,H,HD], T, window, B, scale).
mg::GPUFuncOp beginPagedAttention(KernelBuilder &b, const KernelConfig &c, AttnBlock &k) {
  k.paged = true;
  k.HD = c.headDim, k.G = c.groupSize, k.QT = 1;
  k.rowsPerWarp = (k.G + kWarps - 1) / kWarps;
  k.dimsPerLane = (k.HD + 31) / 32;
  k.keyTile = Tiles::attnKeyTile(k.HD);
  Type f = b.getF32Type(), idx = b.getIndexType(), i32 = b.getI32Type();
  MemRefType m3 = kernelMemref(f, 3), m4 = kernelMemref(f, 4);
  MemRefType tile = workgroupMemref({k.keyTile, k.HD}, f);
  auto fn = beginKernel(b, "paged_attention",
                        {m3, m4, m4, kernelMemref(i32, 2), kernelMemref(i32, 1), m3, idx, idx,
                         idx, f},
                        {tile, tile}, Tiles::attnThreads);
  k.q = fn.getArgument(0), k.kc = fn.getArgument(1), k.vc = fn.getArgument(2);
  k.tables = fn.getArgument(3), k.positions = fn.getArgument(4), k.out = fn.getArgument(5);
  k.T = fn.getArgument(6), k.window = fn.getArgument(7), k.blockSize = fn.getArgument(8);
  k.scale = fn.getArgument(9);
  k.sk = fn.getWorkgroupAttributions()[0], k.sv = fn.getWorkgroupAttributions()[1];
  return fn;
}

mg::GPUFuncOp beginAttention(KernelBuilder &b, const KernelConfig &c, AttnBlock &k) {
  k.HD = c.headDim, k.G = c.groupSize, k.QT = Tiles::attnTokens(k.G);
  k.rowsPerWarp = (k.QT * k.G + kWarps - 1) / kWarps;
  k.dimsPerLane = (k.HD + 31) / 32;
  k.keyTile = Tiles::attnKeyTile(k.HD);
  Type f = b.getF32Type(), idx = b.getIndexType();
  MemRefType m3 = kernelMemref(f, 3);
  MemRefType tile = workgroupMemref({k.keyTile, k.HD}, f);
  auto fn = beginKernel(b, "attention", {m3, m3, m3, kernelMemref(f, 2), idx, idx, idx, idx, f},
                        {tile, tile}, Tiles::attnThreads);
  k.q = fn.getArgument(0), k.kc = fn.getArgument(1), k.vc = fn.getArgument(2);
  k.part = fn.getArgument(3), k.T = fn.getArgument(4), k.start = fn.getArgument(5);
  k.window = fn.getArgument(6), k.chunk = fn.getArgument(7), k.scale = fn.getArgument(8);
  k.sk = fn.getWorkgroupAttributions()[0], k.sv = fn.getWorkgroupAttributions()[1];
  return fn;
}

void buildAttention(KernelBuilder &b, const KernelConfig &c, bool paged) {
  AttnBlock k;
  auto fn = paged ? beginPagedAttention(b, c, k) : beginAttention(b, c, k);
  k.tid = threadIdx(b);
  k.lane = k.tid % 32, k.warp = k.tid / 32;
  k.kvh = blockIdx(b, mg::Dimension::y), k.z = blockIdx(b, mg::Dimension::z);
  k.t0 = blockIdx(b) * k.QT;
  index::KeyRange<Ix> keys;
  if (paged) {
    // The row's own position, as the start of a one-token sequence: keys [lo, p + 1), one
    // chunk (z = 0, chunk = p + 1).
    k.start = i32ToIndex(b, memref::LoadOp::create(b, k.positions, ValueRange{k.t0}));
    keys = index::attnKeyRange(ix(b, 0), ix(b, 1), ix(b, k.start), ix(b, k.window), ix(b, 0),
                               ix(b, k.start) + 1, 1);
  } else {
    keys = index::attnKeyRange(k.t0, ix(b, k.T), ix(b, k.start), ix(b, k.window), k.z,
                               ix(b, k.chunk), k.QT);
  }
  k.hasWindow = isNonZero(ix(b, k.window));
  for (int64_t i = 0; i < k.rowsPerWarp; ++i)
    k.rows.push_back(loadQueryRow(b, k, i));
  RowState empty{f32(b, kNoMax), f32(b, 0.0), SmallVector<Value>(k.dimsPerLane, f32(b, 0.0))};
  SmallVector<RowState> init(k.rowsPerWarp, empty);
  SmallVector<Value> fin = forLoop(
      b, keys.lo, keys.hi, ix(b, k.keyTile), flatten(init), [&](Ix j0, ValueRange s) {
        stageKV(b, k, j0, keys.hi);
        mg::BarrierOp::create(b);
        SmallVector<Value> next = tileKeys(b, k, j0, keys.hi, s);
        mg::BarrierOp::create(b);
        return next;
      });
  SmallVector<RowState> rows = unflatten(fin, k.rowsPerWarp, k.dimsPerLane);
  if (paged)
    writeOutput(b, k, rows);
  else
    writePartials(b, k, rows);
  endKernel(b, fn);
}

/// sum over splits z of f(z, part row of z) from `init`.
Value overSplits(KernelBuilder &b, Value splits, Ix row, Ix TH, Value init,
                 function_ref<Value(Ix pr, Value acc)> f) {
  return forLoop(b, ix(b, 0), splits, ix(b, 1), {init},
                 [&](Ix z, ValueRange a) -> SmallVector<Value> { return {f(z * TH + row, a[0])}; })[0];
}

void buildAttentionCombine(KernelBuilder &b) {
  Type f = b.getF32Type(), idx = b.getIndexType();
  auto fn = beginKernel(b, "attention_combine",
                        {kernelMemref(f, 2), kernelMemref(f, 3), idx, idx, idx, idx}, {},
                        Tiles::attnThreads);
  Value part = fn.getArgument(0), out = fn.getArgument(1), splits = fn.getArgument(5);
  Ix T = ix(b, fn.getArgument(2)), H = ix(b, fn.getArgument(3)), HD = ix(b, fn.getArgument(4));
  Ix row = blockIdx(b), TH = T * H;
  auto weight = [&](Ix pr, Value M) { // e^(m_z - M)
    Value m = memref::LoadOp::create(b, part, ValueRange{pr, HD});
    return math::ExpOp::create(b, arith::SubFOp::create(b, m, M)).getResult();
  };
  Value M = overSplits(b, splits, row, TH, f32(b, kNoMax), [&](Ix pr, Value a) -> Value {
    return arith::MaximumFOp::create(b, a, memref::LoadOp::create(b, part, ValueRange{pr, HD}));
  });
  Value L = overSplits(b, splits, row, TH, f32(b, 0.0), [&](Ix pr, Value a) -> Value {
    Value l = memref::LoadOp::create(b, part, ValueRange{pr, HD + 1});
    return math::FmaOp::create(b, weight(pr, M), l, a);
  });
  forEach(b, threadIdx(b), HD, ix(b, Tiles::attnThreads), [&](Ix d) {
    Value o = overSplits(b, splits, row, TH, f32(b, 0.0), [&](Ix pr, Value a) -> Value {
      Value v = memref::LoadOp::create(b, part, ValueRange{pr, d});
      return math::FmaOp::create(b, weight(pr, M), v, a);
    });
    memref::StoreOp::create(b, arith::DivFOp::create(b, o, L), out, ValueRange{row / H, row % H, d});
  });
  endKernel(b, fn);
}

} // namespace

void buildAttentionKernels(KernelBuilder &b, const KernelConfig &config) {
  buildAttention(b, config, /*paged=*/false);
  buildAttentionCombine(b);
  buildAttention(b, config, /*paged=*/true);
}

} // namespace mlir::moe::gpu::kernels
