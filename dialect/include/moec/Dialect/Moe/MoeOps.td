//===- MoeOps.td - moe dialect operations ------------------*- tablegen -*-===//
//
// Every op: a summary, a description with an IR example, a declarative assembly format and
// a verifier (MoeOps.cpp) for the invariants that types alone cannot state.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_DIALECT_MOE_MOEOPS_TD
#define MOEC_DIALECT_MOE_MOEOPS_TD

include "moec/Dialect/Moe/MoeDialect.td"
include "moec/Dialect/Moe/MoeAttrs.td"
include "mlir/IR/OpBase.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/Interfaces/DestinationStyleOpInterface.td"
include "mlir/IR/CommonAttrConstraints.td"

// Element types: activations and weights may be f32, bf16 or f16; routing is always f32.
def Moe_Float : AnyTypeOf<[F32, BF16, F16]>;
def Moe_FloatTensor : RankedTensorOf<[F32, BF16, F16]>;
def Moe_F32Tensor : RankedTensorOf<[F32]>;
def Moe_I32Tensor : RankedTensorOf<[I32]>;
// Weights of the GEMMs: a float tensor, or the data of a quantized one (i8 for q8 and q4,
// f8E4M3FN for f8e4m3) together with its scales and a `#moe.quant` attribute.
def Moe_WeightTensor : RankedTensorOf<[F32, BF16, F16, I8, F8E4M3FN]>;
def Moe_ScaleTensor : RankedTensorOf<[F16, F32]>;

//===----------------------------------------------------------------------===//
// Routing
//===----------------------------------------------------------------------===//

def Moe_RouterOp : Moe_Op<"router", [Pure]> {
  let summary = "Router logits: logits[T, E] = x[T, D] · gate[E, D]ᵀ, in f32.";
  let description = [{
    Scores every token against every expert. The result is always f32 because expert
    choices are sensitive to rounding: bf16 router logits flip top-k decisions. A bf16 or f16
    `gate` is widened before the dot products.

    ```mlir
    %logits = moe.router %x, %gate
        : (tensor<?x4096xf32>, tensor<8x4096xbf16>) -> tensor<?x8xf32>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$input, Moe_FloatTensor:$gate_weight);
  let results = (outs Moe_F32Tensor:$logits);
  let assemblyFormat = [{
    $input `,` $gate_weight attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Moe_TopKGatingOp : Moe_Op<"top_k_gating", [Pure]> {
  let summary = "Top-k experts per token and their softmax weights.";
  let description = [{
    For each token picks the `k` largest logits (ties go to the lower expert id) and returns
    their ids, in descending logit order, with weights `softmax` over the k selected logits.
    That equals Hugging Face's `softmax -> top-k -> divide by the sum`, and the paper's
    `Softmax(TopK(x·Wg))`. Requires 1 <= k <= E.

    The order is total, so routing is defined for every input: logits rank by value,
    descending, with -0.0 equal to +0.0 and NaN below -inf (all NaNs equal); equal ranks go
    to the lower expert id. The k ids of a token are therefore always distinct and in
    [0, E), even for a row of NaNs or of -inf. Weights are only meaningful when the chosen
    logits are finite: a NaN among them, an infinite maximum or a row of -inf give NaN
    weights (as Hugging Face's softmax does), except that k = 1 always has weight 1.

    ```mlir
    %weights, %ids = moe.top_k_gating %logits {k = 2 : i64}
        : (tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>)
    ```
  }];
  let arguments = (ins Moe_F32Tensor:$logits, ConfinedAttr<I64Attr, [IntPositive]>:$k);
  let results = (outs Moe_F32Tensor:$weights, Moe_I32Tensor:$expert_ids);
  let assemblyFormat = [{
    $logits attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let hasCanonicalizer = 1;
}

def Moe_DispatchOp : Moe_Op<"dispatch", [Pure]> {
  let summary = "Groups (token, slot) assignments by expert: a permutation and offsets.";
  let description = [{
    Flattens `expert_ids[T, k]` into R = T*k assignments `a = t*k + s` and sorts them stably
    by expert id. `permutation[r]` is the assignment that lands in grouped row r, and rows
    `expert_offsets[e] .. expert_offsets[e+1]` belong to expert e (E+1 entries, first 0, last
    R). Within an expert, rows keep token order, so every downstream reduction is
    deterministic. This is the counts -> prefix sum -> scatter of vLLM's and MLC-LLM's
    dispatch, without padding. Ids outside [0, E) (which `moe.top_k_gating` never
    produces) count as expert E-1, so the permutation and offsets stay in bounds for any
    input.

    ```mlir
    %perm, %offsets = moe.dispatch %ids {num_experts = 8 : i64}
        : (tensor<?x2xi32>) -> (tensor<?xi32>, tensor<9xi32>)
    ```
  }];
  let arguments = (ins Moe_I32Tensor:$expert_ids,
                       ConfinedAttr<I64Attr, [IntPositive]>:$num_experts);
  let results = (outs Moe_I32Tensor:$permutation, Moe_I32Tensor:$expert_offsets);
  let assemblyFormat = [{
    $expert_ids attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Moe_GatherRowsOp : Moe_Op<"gather_rows", [Pure]> {
  let summary = "Copies token rows into expert-grouped order: rows[r] = x[permutation[r] / k].";
  let description = [{
    Materialises the input of the expert GEMMs in the order `moe.dispatch` chose. A token
    routed to k experts appears k times. `--moe-fuse-expert-gemms` removes this copy by
    reading `x` through the permutation inside the grouped GEMM.

    ```mlir
    %rows = moe.gather_rows %x, %perm {k = 2 : i64}
        : (tensor<?x4096xf32>, tensor<?xi32>) -> tensor<?x4096xf32>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$input, Moe_I32Tensor:$permutation,
                       ConfinedAttr<I64Attr, [IntPositive]>:$k);
  let results = (outs Moe_FloatTensor:$rows);
  let assemblyFormat = [{
    $input `,` $permutation attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Moe_GroupedMatmulOp : Moe_Op<"grouped_matmul", [Pure]> {
  let summary = "Per-expert GEMM over grouped rows: out[r] = rows[r] · W[e(r)]ᵀ.";
  let description = [{
    `rows[R, K]` are grouped by expert as `expert_offsets[E+1]` describes; row r belongs to the
    expert e with `offsets[e] <= r < offsets[e+1]` and is multiplied by that expert's
    `weights[e]` of shape [N, K] (checkpoint layout, y = x Wᵀ). Accumulates in f32.

    ```mlir
    %h = moe.grouped_matmul %rows, %w1, %offsets
        : (tensor<?x4096xf32>, tensor<8x14336x4096xbf16>, tensor<9xi32>) -> tensor<?x14336xf32>
    %h4 = moe.grouped_matmul %rows, %w1q, %offsets scales %s1
        {quant = #moe.quant<q4, group_size = 32>}
        : (tensor<?x4096xf32>, tensor<8x14336x2048xi8>, tensor<9xi32>, tensor<8x14336x128xf16>)
        -> tensor<?x14336xf32>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$rows, Moe_WeightTensor:$weights,
                       Moe_I32Tensor:$expert_offsets,
                       Optional<Moe_ScaleTensor>:$weights_scale,
                       OptionalAttr<Moe_QuantAttr>:$quant);
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    $rows `,` $weights `,` $expert_offsets (`scales` $weights_scale^)? attr-dict `:`
    functional-type(operands, results)
  }];
  let builders = [
    OpBuilder<(ins "::mlir::Type":$result, "::mlir::Value":$rows, "::mlir::Value":$weights,
                   "::mlir::Value":$offsets), [{
      build($_builder, $_state, result, rows, weights, offsets, ::mlir::Value(), QuantAttr());
    }]>
  ];
  let hasVerifier = 1;
}

def Moe_SwiGLUOp : Moe_Op<"swiglu", [Pure]> {
  let summary = "SwiGLU: silu(gate) * up, elementwise.";
  let description = [{
    `silu(g) = g * sigmoid(g)`. Operands and result have the same shape and element type.

    ```mlir
    %h = moe.swiglu %gate, %up : (tensor<?x14336xf32>, tensor<?x14336xf32>) -> tensor<?x14336xf32>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$gate, Moe_FloatTensor:$up);
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    $gate `,` $up attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Moe_CombineOp : Moe_Op<"combine", [Pure]> {
  let summary = "Weighted scatter-add of expert outputs back to token order.";
  let description = [{
    `y[t] = sum over s < k of weights[t, s] * expert_out[r]` where r is the grouped row with
    `permutation[r] == t*k + s`. The sum runs in slot order s = 0..k-1, so results do not
    depend on how rows were grouped.

    ```mlir
    %y = moe.combine %out, %perm, %weights
        : (tensor<?x4096xf32>, tensor<?xi32>, tensor<?x2xf32>) -> tensor<?x4096xf32>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$expert_out, Moe_I32Tensor:$permutation,
                       Moe_F32Tensor:$routing_weights);
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    $expert_out `,` $permutation `,` $routing_weights attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Moe_SparseBlockOp : Moe_Op<"sparse_block", [Pure, AttrSizedOperandSegments]> {
  let summary = "A whole sparse mixture-of-experts FFN block (Mixtral).";
  let description = [{
    `y[t] = sum over the k experts e chosen for token t of g[t, e] * w2_e(silu(w1_e x) * w3_e x)`
    with `g = Softmax(TopK(x · gateᵀ))` computed in f32. Expert weights are stacked on a
    leading E axis in checkpoint layout: w1 and w3 are [E, F, D], w2 is [E, D, F].
    `--moe-decompose-sparse-block` rewrites it into the routed steps. Quantized experts
    take the data tensors as w1, w3, w2, their three scale tensors after `scales`, and one
    `quant` attribute for all three (the gate stays a float tensor).

    ```mlir
    %y = moe.sparse_block %x, %gate, %w1, %w3, %w2 {k = 2 : i64}
        : (tensor<?x4096xf32>, tensor<8x4096xbf16>, tensor<8x14336x4096xbf16>,
           tensor<8x14336x4096xbf16>, tensor<8x4096x14336xbf16>) -> tensor<?x4096xf32>
    %y8 = moe.sparse_block %x, %gate, %q1, %q3, %q2 scales %s1, %s3, %s2
        {k = 2 : i64, quant = #moe.quant<q8, group_size = 32>}
        : (tensor<?x4096xf32>, tensor<8x4096xbf16>, tensor<8x14336x4096xi8>,
           tensor<8x14336x4096xi8>, tensor<8x4096x14336xi8>, tensor<8x14336x128xf16>,
           tensor<8x14336x128xf16>, tensor<8x4096x448xf16>) -> tensor<?x4096xf32>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$input, Moe_FloatTensor:$gate_weight,
                       Moe_WeightTensor:$w1, Moe_WeightTensor:$w3, Moe_WeightTensor:$w2,
                       Optional<Moe_ScaleTensor>:$w1_scale, Optional<Moe_ScaleTensor>:$w3_scale,
                       Optional<Moe_ScaleTensor>:$w2_scale,
                       ConfinedAttr<I64Attr, [IntPositive]>:$k,
                       OptionalAttr<Moe_QuantAttr>:$quant);
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $gate_weight `,` $w1 `,` $w3 `,` $w2
    (`scales` $w1_scale^ `,` $w3_scale `,` $w2_scale)? attr-dict `:`
    functional-type(operands, results)
  }];
  let builders = [
    OpBuilder<(ins "::mlir::Type":$result, "::mlir::Value":$input, "::mlir::Value":$gate,
                   "::mlir::Value":$w1, "::mlir::Value":$w3, "::mlir::Value":$w2,
                   "int64_t":$k), [{
      build($_builder, $_state, result, input, gate, w1, w3, w2, ::mlir::Value(),
            ::mlir::Value(), ::mlir::Value(), k, QuantAttr());
    }]>
  ];
  let hasVerifier = 1;
  let hasCanonicalizer = 1;
}

//===----------------------------------------------------------------------===//
// Fused expert kernels (produced by --moe-fuse-expert-gemms)
//===----------------------------------------------------------------------===//

def Moe_GroupedSwiGLUOp : Moe_Op<"grouped_swiglu", [Pure, AttrSizedOperandSegments]> {
  let summary = "Fused gather + gate/up grouped GEMMs + SwiGLU over expert-grouped rows.";
  let description = [{
    `h[r] = silu(x[p] · w1[e]ᵀ) * (x[p] · w3[e]ᵀ)` with `p = permutation[r] / k` and e the
    expert owning row r. One kernel reads each token row once per expert and both expert
    matrices side by side, never materialising the gathered rows or the two GEMM outputs.

    ```mlir
    %h = moe.grouped_swiglu %x, %perm, %offsets, %w1, %w3 {k = 2 : i64}
        : (tensor<?x4096xf32>, tensor<?xi32>, tensor<9xi32>, tensor<8x14336x4096xbf16>,
           tensor<8x14336x4096xbf16>) -> tensor<?x14336xf32>
    %h4 = moe.grouped_swiglu %x, %perm, %offsets, %q1, %q3 scales %s1, %s3
        {k = 2 : i64, quant = #moe.quant<q4, group_size = 32>}
        : (tensor<?x4096xf32>, tensor<?xi32>, tensor<9xi32>, tensor<8x14336x2048xi8>,
           tensor<8x14336x2048xi8>, tensor<8x14336x128xf16>, tensor<8x14336x128xf16>)
        -> tensor<?x14336xf32>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$input, Moe_I32Tensor:$permutation,
                       Moe_I32Tensor:$expert_offsets, Moe_WeightTensor:$w1,
                       Moe_WeightTensor:$w3, Optional<Moe_ScaleTensor>:$w1_scale,
                       Optional<Moe_ScaleTensor>:$w3_scale,
                       ConfinedAttr<I64Attr, [IntPositive]>:$k,
                       OptionalAttr<Moe_QuantAttr>:$quant);
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $permutation `,` $expert_offsets `,` $w1 `,` $w3
    (`scales` $w1_scale^ `,` $w3_scale)? attr-dict `:`
    functional-type(operands, results)
  }];
  let builders = [
    OpBuilder<(ins "::mlir::Type":$result, "::mlir::Value":$input, "::mlir::Value":$perm,
                   "::mlir::Value":$offsets, "::mlir::Value":$w1, "::mlir::Value":$w3,
                   "int64_t":$k), [{
      build($_builder, $_state, result, input, perm, offsets, w1, w3, ::mlir::Value(),
            ::mlir::Value(), k, QuantAttr());
    }]>
  ];
  let hasVerifier = 1;
}

def Moe_GroupedMatmulCombineOp : Moe_Op<"grouped_matmul_combine", [Pure]> {
  let summary = "Fused down-projection grouped GEMM + weighted combine to token order.";
  let description = [{
    `y[t] = sum over s < k of weights[t, s] * (h[r] · w2[e(r)]ᵀ)` where r is the grouped row of
    assignment t*k + s. Equivalent to `moe.grouped_matmul` followed by `moe.combine`, without
    the [R, D] intermediate.

    ```mlir
    %y = moe.grouped_matmul_combine %h, %w2, %offsets, %perm, %weights
        : (tensor<?x14336xf32>, tensor<8x4096x14336xbf16>, tensor<9xi32>, tensor<?xi32>,
           tensor<?x2xf32>) -> tensor<?x4096xf32>
    %y8 = moe.grouped_matmul_combine %h, %q2, %offsets, %perm, %weights scales %s2
        {quant = #moe.quant<q8, group_size = 32>}
        : (tensor<?x14336xf32>, tensor<8x4096x14336xi8>, tensor<9xi32>, tensor<?xi32>,
           tensor<?x2xf32>, tensor<8x4096x448xf16>) -> tensor<?x4096xf32>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$rows, Moe_WeightTensor:$w2,
                       Moe_I32Tensor:$expert_offsets, Moe_I32Tensor:$permutation,
                       Moe_F32Tensor:$routing_weights, Optional<Moe_ScaleTensor>:$w2_scale,
                       OptionalAttr<Moe_QuantAttr>:$quant);
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    $rows `,` $w2 `,` $expert_offsets `,` $permutation `,` $routing_weights
    (`scales` $w2_scale^)? attr-dict `:` functional-type(operands, results)
  }];
  let builders = [
    OpBuilder<(ins "::mlir::Type":$result, "::mlir::Value":$rows, "::mlir::Value":$w2,
                   "::mlir::Value":$offsets, "::mlir::Value":$perm, "::mlir::Value":$weights), [{
      build($_builder, $_state, result, rows, w2, offsets, perm, weights, ::mlir::Value(),
            QuantAttr());
    }]>
  ];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Dense parts of a decoder layer
//===----------------------------------------------------------------------===//

def Moe_EmbeddingOp : Moe_Op<"embedding", [Pure]> {
  let summary = "Embedding lookup: out[t] = table[ids[t]], widened to the result type.";
  let description = [{
    Ids outside [0, V) are undefined behaviour here; the runtime validates them before the
    call.

    ```mlir
    %h = moe.embedding %table, %ids
        : (tensor<32000x4096xbf16>, tensor<?xi32>) -> tensor<?x4096xf32>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$table, Moe_I32Tensor:$ids);
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    $table `,` $ids attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Moe_RMSNormOp : Moe_Op<"rms_norm", [Pure]> {
  let summary = "RMSNorm over the last axis: x * rsqrt(mean(x²) + eps) * weight.";
  let description = [{
    Statistics are computed in f32 whatever the activation type, as Hugging Face does;
    `weight` has the size of the last axis.

    ```mlir
    %y = moe.rms_norm %x, %w {epsilon = 1.0e-05 : f64}
        : (tensor<?x4096xf32>, tensor<4096xbf16>) -> tensor<?x4096xf32>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$input, Moe_FloatTensor:$weight,
                       F64Attr:$epsilon);
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $weight attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Moe_LinearOp : Moe_Op<"linear", [Pure]> {
  let summary = "Dense projection y[T, N] = x[T, K] · W[N, K]ᵀ, f32 accumulation.";
  let description = [{
    Weights stay in their storage type (f32, bf16 or f16) and are widened inside the
    kernel, so decode streams each weight byte once. Weight layout is the checkpoint's
    [out, in].

    A quantized weight is its data tensor, its scales (`scales`) and a `quant` attribute
    (see `#moe.quant`); the kernel dequantises in registers.

    ```mlir
    %q = moe.linear %x, %wq : (tensor<?x4096xf32>, tensor<4096x4096xbf16>) -> tensor<?x4096xf32>
    %k = moe.linear %x, %wk scales %sk {quant = #moe.quant<q8, group_size = 32>}
        : (tensor<?x4096xf32>, tensor<1024x4096xi8>, tensor<1024x128xf16>) -> tensor<?x1024xf32>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$input, Moe_WeightTensor:$weight,
                       Optional<Moe_ScaleTensor>:$weight_scale,
                       OptionalAttr<Moe_QuantAttr>:$quant);
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $weight (`scales` $weight_scale^)? attr-dict `:` functional-type(operands, results)
  }];
  let builders = [
    OpBuilder<(ins "::mlir::Type":$result, "::mlir::Value":$input, "::mlir::Value":$weight), [{
      build($_builder, $_state, result, input, weight, ::mlir::Value(), QuantAttr());
    }]>
  ];
  let hasVerifier = 1;
}

def Moe_RoPEOp : Moe_Op<"rope", [Pure]> {
  let summary = "Rotary position embedding, half-split layout, at positions start + t.";
  let description = [{
    For token t at absolute position `p = start + t` and each head:
    `inv_freq[i] = theta^(-2i/HD)`, `out[:HD/2] = x1*cos - x2*sin`, `out[HD/2:] = x2*cos +
    x1*sin` with `x1 = x[:HD/2]`, `x2 = x[HD/2:]` and angles `p * inv_freq[i]` (Hugging Face's
    `rotate_half`, not interleaved pairs). HD must be even.

    ```mlir
    %q2 = moe.rope %q, %start {theta = 1.0e+06 : f64}
        : (tensor<?x32x128xf32>, index) -> tensor<?x32x128xf32>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$input, Index:$start,
                       F64Attr:$theta);
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $start attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Moe_AttentionOp : Moe_Op<"attention", [Pure]> {
  let summary = "Causal grouped-query attention of T new queries over a KV cache.";
  let description = [{
    Query t sits at absolute position `p = start + t` and attends cache positions j with
    `j <= p` and, when `sliding_window` W is set, `j > p - W`. The cache already holds the
    keys and values of positions [0, start + T). Query head h reads KV head
    `h / (H / KVH)`. Scores are scaled by `scale` (HD^-0.5) and soft-maxed in f32.

    ```mlir
    %o = moe.attention %q, %kc, %vc, %start {scale = 0.088388 : f64}
        : (tensor<?x32x128xf32>, tensor<4096x8x128xf32>, tensor<4096x8x128xf32>, index)
        -> tensor<?x32x128xf32>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$query, Moe_FloatTensor:$key_cache,
                       Moe_FloatTensor:$value_cache, Index:$start, F64Attr:$scale,
                       OptionalAttr<ConfinedAttr<I64Attr, [IntPositive]>>:$sliding_window);
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    $query `,` $key_cache `,` $value_cache `,` $start attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// The batched step: rows at their own positions over a paged KV pool (moec_step)
//===----------------------------------------------------------------------===//

def Moe_RoPEAtOp : Moe_Op<"rope_at", [Pure]> {
  let summary = "Rotary position embedding, half-split layout, at per-row positions.";
  let description = [{
    `moe.rope` with row t at absolute position `positions[t]` instead of `start + t`: the
    rows of a batched step belong to different sequences. The math is `moe.rope`'s, angle
    `f32(p) * inv_freq[i]` included, so a row gets the same bits either way. HD must be even.

    ```mlir
    %q2 = moe.rope_at %q, %positions {theta = 1.0e+06 : f64}
        : (tensor<?x32x128xf32>, tensor<?xi32>) -> tensor<?x32x128xf32>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$input, Moe_I32Tensor:$positions, F64Attr:$theta);
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $positions attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Moe_PagedKVWriteOp : Moe_Op<"paged_kv_write", [Pure]> {
  let summary = "Writes each row's key or value into its sequence's block of a paged KV pool.";
  let description = [{
    `pool` is one (layer, K-or-V) slice of the paged pool, [n_blocks, B, KVH, HD]. Row t of
    `update` ([T, KVH, HD]) sits at position `p = positions[t]` of the sequence whose block
    table is `block_tables[t]` ([T, max_blocks]); it is stored at block
    `block_tables[t, p / B]`, slot `p % B`. The result is the pool with those rows replaced
    (destination style: bufferization writes the runtime's pool in place). Rows must target
    distinct (block, slot) pairs; block ids must be in [0, n_blocks) (the runtime checks).

    ```mlir
    %k2 = moe.paged_kv_write %k, %kpool, %tables, %positions
        : (tensor<?x8x128xf32>, tensor<?x16x8x128xf32>, tensor<?x256xi32>, tensor<?xi32>)
        -> tensor<?x16x8x128xf32>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$update, Moe_FloatTensor:$pool,
                       Moe_I32Tensor:$block_tables, Moe_I32Tensor:$positions);
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    $update `,` $pool `,` $block_tables `,` $positions attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Moe_PagedAttentionOp : Moe_Op<"paged_attention", [Pure]> {
  let summary = "Grouped-query attention of rows at their own positions over a paged KV pool.";
  let description = [{
    Row t (query [H, HD] of `query` [T, H, HD]) sits at position `p = positions[t]` of the
    sequence whose block table is `block_tables[t]`, and attends that sequence's positions
    j in `[max(0, p - W + 1), p]` (W = `sliding_window`, unbounded when absent), reading
    key/value j at block `block_tables[t, j / B]`, slot `j % B` of the pools
    ([n_blocks, B, KVH, HD]). Rows never see each other except through the pool: a row of the
    same sequence at an earlier position is visible once `moe.paged_kv_write` stored it.
    Query head h reads KV head `h / (H / KVH)`; scores scaled by `scale`, soft-maxed in f32.
    Per row the reductions run over positions in ascending order, exactly as `moe.attention`
    orders them, so a row's result does not depend on the other rows of the step.

    ```mlir
    %o = moe.paged_attention %q, %kpool, %vpool, %tables, %positions {scale = 0.088388 : f64}
        : (tensor<?x32x128xf32>, tensor<?x16x8x128xf32>, tensor<?x16x8x128xf32>,
           tensor<?x256xi32>, tensor<?xi32>) -> tensor<?x32x128xf32>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$query, Moe_FloatTensor:$key_pool,
                       Moe_FloatTensor:$value_pool, Moe_I32Tensor:$block_tables,
                       Moe_I32Tensor:$positions, F64Attr:$scale,
                       OptionalAttr<ConfinedAttr<I64Attr, [IntPositive]>>:$sliding_window);
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    $query `,` $key_pool `,` $value_pool `,` $block_tables `,` $positions attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Kernel boundaries (destination style, for bufferization)
//===----------------------------------------------------------------------===//

def Moe_KernelCallOp : Moe_Op<"kernel_call", [AttrSizedOperandSegments,
    DeclareOpInterfaceMethods<MemoryEffectsOpInterface>, DestinationStyleOpInterface]> {
  let summary = "One kernel of a target's library, in destination style.";
  let description = [{
    A kernel boundary: the kernel named `kernel` reads `ins` (tensors or buffers, and
    scalars such as a start position) and writes every element of `outs` that it defines;
    `params` holds its static parameters (epsilon, theta, k, a `#moe.quant` format, ...).
    A target's lowering forms these calls from the moe ops at its kernel boundaries and
    gives each kernel's scratch buffers (split-attention partials, a dispatch's inverse
    permutation, a grouped GEMM's rows before the combine) as extra `outs`, so that every
    buffer a kernel writes exists in the IR before bufferization.

    On tensors the op has one result per output, of the output's type (the output after the
    call); upstream `one-shot-bufferize` then turns it into the same call on buffers, which
    has no results and writes its outputs in place. A kernel that updates part of an output
    (a KV pool) keeps the rest of it: outputs count as read, so a copy is made whenever the
    old value is still needed.

    ```mlir
    // On tensors, before bufferization:
    %e = tensor.empty(%t) : tensor<?x4096xf32>
    %y = moe.kernel_call "rms_norm" ins(%x, %w : tensor<?x4096xf32>, tensor<4096xbf16>)
        outs(%e : tensor<?x4096xf32>) params {epsilon = 1.0e-05 : f64} -> tensor<?x4096xf32>
    // On buffers, after it:
    moe.kernel_call "rms_norm" ins(%xb, %wb : memref<?x4096xf32>, memref<4096xbf16>)
        outs(%yb : memref<?x4096xf32>) params {epsilon = 1.0e-05 : f64}
    ```
  }];
  let arguments = (ins StrAttr:$kernel, Variadic<AnyType>:$inputs,
                       Variadic<AnyShaped>:$outputs, OptionalAttr<DictionaryAttr>:$params);
  let results = (outs Variadic<AnyRankedTensor>:$results);
  let assemblyFormat = [{
    $kernel (`ins` `(` $inputs^ `:` type($inputs) `)`)?
    `outs` `(` $outputs `:` type($outputs) `)` (`params` $params^)? attr-dict
    (`->` type($results)^)?
  }];
  let extraClassDeclaration = [{
    /// DestinationStyleOpInterface: the outputs are the inits.
    ::mlir::MutableOperandRange getDpsInitsMutable() { return getOutputsMutable(); }
  }];
  let hasVerifier = 1;
}

#endif // MOEC_DIALECT_MOE_MOEOPS_TD
