//===- MoeDialect.td - the moe dialect ---------------------*- tablegen -*-===//
//
// The dialect definition only; ops live in MoeOps.td.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_DIALECT_MOE_MOEDIALECT_TD
#define MOEC_DIALECT_MOE_MOEDIALECT_TD

include "mlir/IR/OpBase.td"

def Moe_Dialect : Dialect {
  let name = "moe";
  let cppNamespace = "::mlir::moe";
  let summary = "Sparse mixture-of-experts transformer blocks (Mixtral) on tensors.";
  let description = [{
    The `moe` dialect describes a Mixtral-style decoder on tensors, at the level where the
    routing data flow of a sparse mixture-of-experts block is still visible:

    ```
    router -> top_k_gating -> (weights, expert ids)
           -> dispatch     -> (permutation, expert offsets)
           -> gather_rows -> grouped_matmul (w1, w3) -> swiglu -> grouped_matmul (w2)
           -> combine      -> tokens in their original order
    ```

    `moe.sparse_block` is the whole block as one op; `--moe-decompose-sparse-block` spells it
    as the steps above, and `--moe-fuse-expert-gemms` fuses them back into two kernels over
    expert-grouped rows once the routing is explicit.

    Dimension names used throughout: T tokens (dynamic: the number of tokens in a prefill
    call, or static 1 on the decode path), D model width, F expert intermediate width,
    E experts, k experts per token, R = T*k routed rows, V vocabulary, H query heads, KVH key/value
    heads, HD head dim, S cache length. Model dimensions are static per compiled model.

    Dense parts of a layer. Ops that carry semantics upstream dialects would need several ops
    and conventions to express are here: `moe.linear` (y = x Wᵀ with weights kept in their
    storage type — bf16/f16 — and f32 accumulation, the single place where dense matmul
    schedules attach), `moe.rms_norm` (fp32 statistics), `moe.rope` (half-split rotation at
    absolute positions), `moe.attention` (causal GQA attention over a KV cache with an
    optional sliding window) and `moe.embedding`. Everything that upstream expresses exactly
    stays upstream: residual adds are `linalg.add`, head reshapes are
    `tensor.expand_shape`/`tensor.collapse_shape`, writing new keys and values into the cache
    is `tensor.insert_slice` at the token's position, and picking the last token's row is
    `tensor.extract_slice`.

    Kernel boundaries: `moe.kernel_call` names one kernel of a target's library in
    destination style (inputs, outputs it writes, static parameters). A target forms these
    calls from the ops above where its kernels begin and end (`--moe-gpu-form-kernel-calls`)
    so that upstream one-shot bufferization places every buffer its kernels write.

    Numerics follow Hugging Face's `modeling_mixtral.py`: routing in f32, ties in top-k go to
    the lower expert id, SwiGLU is `silu(w1 x) * (w3 x)`.
  }];
  // Canonicalisations create arith constants and tensor reshapes/splats.
  let dependentDialects = ["::mlir::arith::ArithDialect", "::mlir::tensor::TensorDialect"];
  let useDefaultTypePrinterParser = 0;
  let useDefaultAttributePrinterParser = 1;
}

class Moe_Op<string mnemonic, list<Trait> traits = []> :
    Op<Moe_Dialect, mnemonic, traits>;

#endif // MOEC_DIALECT_MOE_MOEDIALECT_TD
