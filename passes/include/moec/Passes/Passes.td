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

#endif // MOEC_PASSES_TD
