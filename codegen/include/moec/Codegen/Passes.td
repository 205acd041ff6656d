//===- Passes.td - moe code generation passes --------------*- tablegen -*-===//
//
// Passes of the code generator. Flag = source file (codegen/<target>/<flag>.cpp) = lit test
// (test/Codegen/<flag>.mlir) = DEBUG_TYPE, all prefixed `moe-`.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_CODEGEN_PASSES_TD
#define MOEC_CODEGEN_PASSES_TD

include "mlir/Pass/PassBase.td"

def MoeLowerToLinalg : Pass<"moe-lower-to-linalg"> {
  let summary = "Lower every moe op on tensors to linalg, tensor, scf, arith and math.";
  let description = [{
    Rewrites each op of the moe dialect into upstream dialects on tensors, keeping the
    numerics the op descriptions promise:

    * `moe.linear`, `moe.router`: `linalg.matmul` with the weight operand transposed
      through its indexing map (y = x Wᵀ), f32 accumulation; narrow weights are widened
      element by element inside the kernel (no widened copy of a weight tensor).
    * `moe.top_k_gating`: per token, k passes of an arg-max that skips the entries already
      taken in (logit descending, expert id ascending) order; the weights are
      `exp(l - max) / sum` over the chosen logits, in f32.
    * `moe.dispatch`: a stable counting sort (counts -> prefix sum -> scatter).
    * `moe.grouped_matmul`, `moe.grouped_swiglu`, `moe.grouped_matmul_combine`: an
      `scf.for` over experts; each expert's rows `[off[e], off[e+1])` are an
      `extract_slice` multiplied by that expert's weight slice.
    * `moe.combine`: a reduction over the k slots, in slot order.
    * `moe.rms_norm`, `moe.rope`, `moe.embedding`, `moe.swiglu`, `moe.gather_rows`:
      `linalg.generic`s.
    * `moe.attention`, `moe.paged_attention`: one tiled online-softmax kernel
      (`OnlineAttention.h`): an `scf.forall` over (KV head, query row) whose body walks the
      row's key tiles of 8 positions (aligned at absolute positions) in an `scf.for`,
      with the G query heads' running max, sum and accumulators as vector iter_args, FMAs
      over the head dim, each key/value row read once for the G heads; no [T, H, L] scores
      tensor. Both ops use the same kernel (only the cache row of a position differs), so a
      row's output has the same bits in a prefill, a decode step or a batched step.
      Attention only reads cache positions `[0, start + T)`.

    Afterwards no moe op remains.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::linalg::LinalgDialect",
    "::mlir::math::MathDialect", "::mlir::scf::SCFDialect",
    "::mlir::tensor::TensorDialect", "::mlir::vector::VectorDialect"
  ];
}

def MoeCpuVectorizeMatmul : Pass<"moe-cpu-vectorize-matmul"> {
  let summary = "Register-blocked, multi-threaded vector code for x·Wᵀ matmuls on memrefs.";
  let description = [{
    Runs after bufferization. Replaces every `linalg.matmul` whose indexing maps are
    `(m, k), (n, k) -> (m, n)` (y = x Wᵀ, both operands contiguous along K), with an f32
    accumulator, static N and K and unit stride along K, by:

    * an `scf.parallel` over blocks of `block-cols` output columns (turned into an OpenMP
      loop later),
    * inside it, register tiles of `tile-rows` x `tile-cols` outputs; each output keeps a
      `vector<vector-width x f32>` of partial sums along K (one FMA per lane per step),
      weights are loaded in their storage type and widened with `arith.extf`,
    * a horizontal add per output at the end of K (a fixed halving tree: lanes l and
      l + width/2 first, ...); a masked tail handles K % width.

    Row and column remainders use smaller register tiles. Other linalg ops are untouched.
    A call without rows (an expert that got no token) forks no parallel region.

    bf16 weights in tiles of up to 4 outputs (decode's single rows) are widened as even and
    odd k: a vector of `vector-width` bf16 loaded as `vector-width / 2` i32, shifted left by
    16 (the even k's f32) and masked with 0xffff0000 (the odd k's), x split alike, each
    chain in half-width accumulators, put back in lane order before the tree. `arith.extf`
    of the vector lowers to a zero-extension and a shift at twice the width, which on Zen 1
    (128-bit FP units, one shifter) made the decode GEMV compute-bound below the memory's
    rate. The bf16 panel GEMV (below gemm-min-rows, weights in panel order of 2 x width
    columns) splits each panel row into even and odd columns the same way, half the lanes'
    chains at a time. Same chains, same tree: same bits.

    Where K % width == 0 and N % `gemm-cols` == 0, calls with at least `gemm-min-rows` rows
    (prefill, batched steps; checked at run time) take a BLAS-style GEMM instead:

    * A (x) is widened to f32 once per call into a scratch buffer in lane-split K order
      (the elements of lane l, k = l, l + width, ..., then lane l + 1), the `gemm-rows`
      rows of a register tile interleaved;
    * an `scf.parallel` over panels of `gemm-cols` output columns; each panel of W is
      widened to f32 once into a scratch panel (per call: the packed weights file of the
      issue "Quantized weights" would let it be done at pack time), transposed in registers
      so that a K step of the panel is `gemm-cols` contiguous f32;
    * an outer-product microkernel of `gemm-rows` x `gemm-cols` accumulators
      (`vector<width x f32>` over columns): each step broadcasts one A element per row and
      issues `gemm-rows` x `gemm-cols` / width FMAs; the last tile's missing rows are zeros
      in A's scratch, so every tile is a full one (the former 1-row kernel had two FMA
      chains, too few to hide the FMA latency) and only the real rows are stored;
    * per panel and block of tiles, the loop over lanes is outside the loop over tiles, so
      one lane's K / width rows of the panel stay in cache for every tile (cache blocking
      over K: w2's whole f32 panel is larger than an AVX2 core's L2).

    The GEMM is emitted once per module and (A, W) element types, as a private function
    over dynamic M, N, K marked `passthrough = ["noinline"]`, and each site calls it (a copy
    per site made compiling a model ~2.3x slower). Its operands travel as base buffer,
    offset, sizes and row stride (`memref.extract_strided_metadata`; the bare-pointer calling
    convention passes no dynamic memref) and its body rebuilds them with
    `memref.reinterpret_cast`. K % width and N % `gemm-cols` are checked statically at the
    call site. When the pass runs on something other than a module, each site gets its own copy.

    Both paths compute every output in the same order: `width` FMA chains over
    k = l, l + width, ... (from 0), the same halving tree, then one add to C. So a row's
    result does not depend on how many rows the call has (the batch invariance the serving
    path promises), bit for bit.

    Gate/up with SwiGLU in the epilogue: two matmuls over weights in panel order
    (`moe.panels`) of the same rows into zero-filled scratch buffers that only an
    elementwise `linalg.generic` reads besides (moe.grouped_swiglu's expert body after
    bufferization) become, for `gemm-min-rows` rows or more, one call of
    `@__moe_gemm_swiglu_<x>_<w>_<out>_panels_<rows>x<cols>`: per step the same vector of
    columns of both weights' panels (6 x (8 + 8) accumulators on AVX2), the same chains and
    tree, `+ 0` as into the zero-filled scratch, then the generic's body (cloned, with the
    constants it captures) per output. Fewer rows keep the buffers, both panel GEMVs and the
    generic. Every output has the unfused bits.

    With `gemm-widen-panels`, calls of 32 rows or more (a run-time branch) widen weights in
    panel order of a narrower type (bf16) once per panel and call into an f32 scratch panel
    that the microkernel reads like a packed one, instead of at every step in registers (the
    same values, so the same bits).

    Example (`vector-width=8 gemm-min-rows=8 gemm-rows=6 gemm-cols=16`):

    ```mlir
    linalg.matmul indexing_maps = [(m, k), (n, k), (m, n)]
        ins(%x, %w : memref<?x64xf32>, memref<32x64xbf16>) outs(%y : memref<?x32xf32>)
    // becomes
    scf.if %many_rows {
      // base buffers, offsets, sizes and row strides of x, w and y
      func.call @__moe_gemm_f32_bf16_6x16(%xb, %c0, %m, %c64, %c64, %wb, %c0, %c32, %c64,
                                          %yb, %c0, %c32) : (...) -> ()
    } else { /* the dot-product kernel */ }
    ...
    func.func private @__moe_gemm_f32_bf16_6x16(...) attributes {passthrough = ["noinline"]} {
      %ap = memref.alloc(%tiles, %k) : memref<?x?x6xf32> // x widened, lane-split
      scf.parallel (%p) = (%c0) to (%panels) step (%c1) {
        %bp = memref.alloc(%k) : memref<?x16xf32>        // the panel, widened, K-major
        ...                                              // 6x16 microkernels, lane-major
      }
    }
    ```
  }];
  let options = [
    Option<"vectorWidth", "vector-width", "int64_t", "16",
           "f32 lanes per vector (16 for AVX-512, 8 for AVX2)">,
    Option<"tileRows", "tile-rows", "int64_t", "4", "rows of a register tile">,
    Option<"tileCols", "tile-cols", "int64_t", "4", "columns of a register tile">,
    Option<"blockCols", "block-cols", "int64_t", "32",
           "output columns per parallel task">,
    Option<"gemmMinRows", "gemm-min-rows", "int64_t", "0",
           "rows from which a call takes the packed GEMM (0: never)">,
    Option<"gemmRows", "gemm-rows", "int64_t", "6", "rows of the GEMM microkernel">,
    Option<"gemmCols", "gemm-cols", "int64_t", "16",
           "columns of the GEMM microkernel and of a packed weight panel (a multiple of "
           "vector-width)">,
    Option<"gemmEpilogues", "gemm-epilogues", "bool", "false",
           "gate/up GEMMs over panels with their elementwise consumer (SwiGLU) in the "
           "epilogue (off by default: 0.87-0.96x the unfused GEMMs at 128 rows, level at 32)">,
    Option<"gemmWidenPanels", "gemm-widen-panels", "bool", "false",
           "weights in panel order of a narrower type (bf16) widened once per panel and call "
           "into an f32 scratch panel for GEMM calls of 32 rows or more, instead of in "
           "registers at every step "
           "(faster on Zen 1, where the in-place split's bit operations compete with the "
           "FMAs); same bits">,
  ];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::memref::MemRefDialect",
    "::mlir::scf::SCFDialect", "::mlir::vector::VectorDialect",
    "::mlir::LLVM::LLVMDialect"
  ];
}

def MoeCpuVectorizeQuantMatmul : Pass<"moe-cpu-vectorize-quant-matmul"> {
  let summary = "Vector kernels for x·Wᵀ with quantized weights, dequantised in registers.";
  let description = [{
    Runs after bufferization, beside `moe-cpu-vectorize-matmul`. Replaces every
    `linalg.generic` that `moe-lower-to-linalg` marked `moe.quant` (x[M, K] f32 times the
    dequantised [N, K] weight, transposed, into C[M, N] f32) by the same blocking as
    `moe-cpu-vectorize-matmul` (parallel column blocks, register tiles of `tile-rows` x
    `tile-cols` vector<vector-width x f32> partial sums), with the weight read in its
    storage format and dequantised in registers:

    * q8 / q4: per group of 32 along K, each column's bytes are loaded once (q4: 16 bytes
      split into low and high nibbles) and its f16 scale is widened; each chunk of
      `vector-width` values becomes f32 and is scaled (q4: `nibble * s - 8 * s`) before the
      FMAs with every row of the tile. Single rows of q4 (decode) take their tile column by
      column instead (a column's scale and bytes, then its chunks in order: the same FMAs),
      which keeps AVX2's loop within its 16 registers. q8 with 8 lanes (AVX2) loads 16
      codes at a time and puts each 8 in the top bytes of i32 lanes with an in-lane byte
      shuffle (`vpshufb`: q * 2^24; `vpmovsxbd` to a ymm crosses 128-bit halves), converts
      them and multiplies by `s * 2^-24`: the same exact q * s.
    * f8e4m3: bytes widened to f32 by bit manipulation (sign to bit 31, exponent and
      mantissa to bits 30..20, which is the value times 2^-120), the per-row scale times
      2^120 applied after the horizontal add.

    * With `int8-activations` (`true`: q8 and q4; `q4`: q4 only, the CPU pipeline's
      default; `false`: neither): every row of x is quantized first, on the calling
      thread, to int8 per group of 32 (`s_x = amax / 127`, `q_x = round-half-even(x * 127 /
      amax)`, llama.cpp's q8_0) into heap buffers freed after the kernel; each group's dot
      products then run on integer instructions (`llvm.call_intrinsic`): AVX2's
      `vpmaddubsw` / `vpmaddwd`, or `vpdpbusd` with `vnni`; the exact int32 sums are
      scaled by `s_x * s_w` in f32. q8 weights use `|w|` and `x * sign(w)` (`vpsignb`) as
      the unsigned/signed pair; q4's `-8` offset is `-8 * sum(q_x)` per lane, made with
      the row, that starts the integer sum. q4 with an even number of groups takes two
      groups per 32-byte load (the row is stored in the matching order); with `q4-octets`
      (AVX2 without `vnni`, K % 256 == 0) 8 groups per step: per 32-byte load and row the
      two `vpmaddubsw` are added as i16, three `vphaddw` and one `vpmaddwd` leave one exact
      int32 per group, which is offset, converted, scaled by s_x and FMA'd with s_w once
      (47 instructions per 128 weight bytes of a decode column where pairs take 76; other
      bits than pairs: each group's sum is rounded once instead of in 4 quarters). Register tiles
      of up to 4 rows share loads only: every output runs the same instructions whichever tile holds it, so a row's
      result is independent of M and of the other rows.

    * Prefill (float q8 / q4, N % `gemm-cols` == 0): calls with at least `gemm-min-rows`
      rows (checked at run time) take `moe-cpu-vectorize-matmul`'s packed GEMM (PackedGemm.h)
      with each panel of `gemm-cols` weight rows dequantised once per call into its f32
      K-major panel scratch, then the same microkernel; the dequantisation is amortised over
      every row. With 8 lanes (AVX2) a group of 8 rows is transposed as signed bytes (q4:
      nibble - 8; three rounds of unpacks) and each element's 8 rows are widened and
      multiplied by the rows' scales as one vector; wider vectors dequantise chunk by chunk
      as the kernels above and transpose the f32. Either way a panel holds the exact
      q * s the kernels above use. One private noinline `@__moe_qgemm_<format>_<rows>x<cols>` per module and
      format that every site calls. The dequantising kernels sum their lanes in the GEMM's
      halving order, so a row has the same bits in either.

    * q8 in panel order (a generic also marked `#moe.panels` whose lanes are `vector-width`
      and cols `gemm-cols`, f32 activations; codes [N / cols, K, cols], scales [N / cols,
      K / 32, cols]): the packed GEMM as above (`@__moe_qgemm_q8_panels_<rows>x<cols>`),
      whose packer reads each stored panel row as it is, widened and scaled by its group's
      scales, no transposes (8 lanes: a row's 16 codes by the in-lane shuffle above); fewer rows (or no `gemm-min-rows`) take a panel GEMV that runs
      the GEMM's chains (lane l of a column over k = l, l + width, ...) 4 lanes at a time
      through the stored panel (each lane's row 32 rows on prefetched once per group), then
      its halving tree: the same bits as the GEMM and as the row-major q8 kernels. Another panel shape stays a generic (scalar loops).

    * With `prefetch` (q8 / q4 single rows, i.e. decode): each group step also prefetches
      the same bytes of the next column tile's weight rows (clamped to the last row), since
      a row is a page or less and the hardware prefetchers stop at page boundaries.

    No dequantised copy of a weight is ever stored in memory beyond one GEMM panel
    (gemm-cols rows, f32, per thread) of scratch. A marked generic it cannot handle
    (f8e4m3 with K % vector-width != 0) stays as it is and becomes scalar loops.
  }];
  let options = [
    Option<"vectorWidth", "vector-width", "int64_t", "16",
           "f32 lanes per vector (16 for AVX-512, 8 for AVX2); must divide 32">,
    Option<"tileRows", "tile-rows", "int64_t", "4", "rows of a register tile">,
    Option<"tileCols", "tile-cols", "int64_t", "4", "columns of a register tile">,
    Option<"blockCols", "block-cols", "int64_t", "32",
           "output columns per parallel task">,
    Option<"gemmMinRows", "gemm-min-rows", "int64_t", "0",
           "rows from which a float q8/q4 call takes the packed GEMM (0: never)">,
    Option<"gemmRows", "gemm-rows", "int64_t", "6", "rows of the GEMM microkernel">,
    Option<"gemmCols", "gemm-cols", "int64_t", "16",
           "columns of the GEMM microkernel and of a dequantised weight panel (a multiple "
           "of vector-width)">,
    Option<"int8Activations", "int8-activations", "mlir::moe::Int8Activations",
           "mlir::moe::Int8Activations::None",
           "which formats take the rows of x quantized to int8 per group of 32 and AVX2 "
           "integer dot products",
           "llvm::cl::values(clEnumValN(mlir::moe::Int8Activations::Q4, \"q4\", \"q4 only\"), "
           "clEnumValN(mlir::moe::Int8Activations::All, \"true\", \"q8 and q4\"), "
           "clEnumValN(mlir::moe::Int8Activations::None, \"false\", \"neither\"))">,
    Option<"vnni", "vnni", "bool", "false",
           "int8 dot products on vpdpbusd (AVX-VNNI, or AVX512-VNNI with AVX512-VL)">,
    Option<"prefetch", "prefetch", "bool", "false",
           "single rows (decode): prefetch the next tile's weight rows a tile ahead">,
    Option<"q4Octets", "q4-octets", "bool", "false",
           "q4 with int8 activations on AVX2 (not vnni), K % 256 == 0: 8 groups per step, "
           "one exact int32 lane per group (vphaddw), one FMA per 8 groups of a column">,
  ];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::memref::MemRefDialect",
    "::mlir::scf::SCFDialect", "::mlir::vector::VectorDialect",
    "::mlir::math::MathDialect", "::mlir::LLVM::LLVMDialect"
  ];
}

def MoeCpuLowerStridedCopies : Pass<"moe-cpu-lower-strided-copies"> {
  let summary = "Turn memref.copy between non-identity layouts into linalg.copy.";
  let description = [{
    The LLVM lowering of `memref.copy` calls `memrefCopy` from MLIR's C runner library
    whenever either side is not a contiguous identity-layout memref (e.g. writing new keys
    into a slice of the KV cache). The generated objects must not depend on that library,
    so such copies become `linalg.copy`, which lowers to plain loops. Identity-layout copies
    stay (they become `memcpy`).
  }];
  let dependentDialects = ["::mlir::linalg::LinalgDialect"];
}

#endif // MOEC_CODEGEN_PASSES_TD
