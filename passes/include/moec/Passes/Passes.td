//===- Passes.td - moe dialect passes ----------------------*- tablegen -*-===//
//
// Every pass of the project is declared here. Flag = source file = lit test name =
// DEBUG_TYPE, all prefixed `moe-`.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_PASSES_TD
#define MOEC_PASSES_TD

include "mlir/Pass/PassBase.td"

def MoeDecomposeSparseBlock : Pass<"moe-decompose-sparse-block"> {
  let summary = "Spell moe.sparse_block as its routed steps.";
  let description = [{
    Rewrites every `moe.sparse_block` into the routing data flow that later passes
    schedule and fuse:

    ```
    router -> top_k_gating -> dispatch -> gather_rows
           -> grouped_matmul(w1), grouped_matmul(w3) -> swiglu -> grouped_matmul(w2)
           -> combine
    ```

    Shapes with a dynamic token count stay dynamic (R = T*k is then dynamic too).
  }];
  let dependentDialects = ["::mlir::moe::MoeDialect"];
}

def MoeFuseExpertGemms : Pass<"moe-fuse-expert-gemms"> {
  let summary = "Fuse the routed expert steps into grouped_swiglu and grouped_matmul_combine.";
  let description = [{
    In the routed form produced by `--moe-decompose-sparse-block`, rewrites

    ```
    gather_rows -> grouped_matmul(w1), grouped_matmul(w3) -> swiglu  =>  grouped_swiglu
    grouped_matmul(w2) -> combine                                    =>  grouped_matmul_combine
    ```

    only when the intermediates (gathered rows, the GEMM outputs) have no other uses and
    the two gate/up GEMMs read the same rows with the same expert offsets.
  }];
  let dependentDialects = ["::mlir::moe::MoeDialect"];
}

def MoeQuantizeWeights : Pass<"moe-quantize-weights", "::mlir::ModuleOp"> {
  let summary = "Rewrite the weights the builder marked for quantization to data + scales.";
  let description = [{
    The model builder lays the weight arena out for the quantization that was asked for
    (`mixtral-compile --quantize q8|q4`, or f8e4m3 for an FP8 checkpoint) and marks each
    quantized weight's `memref.view` with the format and where its scales live:

    ```mlir
    %v = memref.view %arena[%off][] {moe.quant = #moe.quant<q4, group_size = 32>,
                                     moe.scale_offset = 2097152 : i64}
        : memref<?xi8> to memref<4096x4096xbf16>
    %w = bufferization.to_tensor %v restrict : memref<4096x4096xbf16> to tensor<4096x4096xbf16>
    %q = moe.linear %x, %w : (tensor<?x4096xf32>, tensor<4096x4096xbf16>) -> tensor<?x4096xf32>
    ```

    That view still has the weight's logical (float) type: the module is only executable
    after this pass, which makes the storage explicit. Each marked view becomes a view of the
    data (i8 [..., N, K] for q8, i8 [..., N, K/2] for q4, f8E4M3FN for f8e4m3) and one of the
    scales at `%off + scale_offset`, and every op reading the weight takes them:

    ```mlir
    %d = memref.view %arena[%off][] : memref<?xi8> to memref<4096x2048xi8>
    %s = memref.view %arena[%soff][] : memref<?xi8> to memref<4096x128xf16>
    %q = moe.linear %x, %dt scales %st {quant = #moe.quant<q4, group_size = 32>} : ...
    ```

    Readers of quantized weights: `moe.linear` (its weight) and `moe.sparse_block` (w1, w3
    and w2 together, in one format). A marked weight read by anything else, or a
    sparse block whose expert weights are marked differently, is an error. With `format`
    set, every marked weight must be in that format (the layout and the pass agree).
  }];
  let options = [
    Option<"format", "format", "std::string", "\"\"",
           "q8 | q4 | f8e4m3: the format every marked weight must have (empty: as marked)">,
  ];
  let dependentDialects = [
    "::mlir::moe::MoeDialect", "::mlir::arith::ArithDialect",
    "::mlir::bufferization::BufferizationDialect", "::mlir::memref::MemRefDialect"
  ];
}

#endif // MOEC_PASSES_TD
