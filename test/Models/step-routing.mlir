// moec_step's MoE block after the routed decomposition (and after fusion): the router scores
// ALL rows of the step — rows of different sequences at different positions — in one [n_rows, E]
// GEMM; top-k, the counting-sort dispatch and the grouped expert GEMMs run over the step's rows
// together, so an expert's rows from every sequence form one group; the combine brings them
// back to row order. The attention before it is per row over the paged pool.
// REQUIRES: mixtral-compile
// RUN: mixtral-compile %S/../goldens/mixtral_e4k2_bf16 --emit=mlir --max-seq-len 64 -o - \
// RUN:   | moe-opt --moe-decompose-sparse-block | FileCheck %s
// RUN: mixtral-compile %S/../goldens/mixtral_e4k2_bf16 --emit=mlir --max-seq-len 64 -o - \
// RUN:   | moe-opt --moe-decompose-sparse-block --moe-fuse-expert-gemms | FileCheck %s --check-prefix=FUSED

// CHECK-LABEL: func.func @moec_step
// CHECK-SAME:    %[[ROWS:arg6]]: index
// CHECK:         %[[H0:.*]] = moe.embedding {{.*}} -> tensor<?x64xf32>
// CHECK:         scf.for {{.*}} iter_args(%{{.*}} = %[[H0]]) -> (tensor<?x64xf32>)
// CHECK:           moe.paged_attention {{.*}} -> tensor<?x4x16xf32>
// CHECK:           %[[X:.*]] = moe.rms_norm {{.*}} -> tensor<?x64xf32>
// CHECK:           %[[L:.*]] = moe.router %[[X]], %{{.*}} : (tensor<?x64xf32>, tensor<4x64xbf16>) -> tensor<?x4xf32>
// CHECK:           %[[W:.*]], %[[IDS:.*]] = moe.top_k_gating %[[L]] {k = 2 : i64} : (tensor<?x4xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>)
// CHECK:           %[[PERM:.*]], %[[OFF:.*]] = moe.dispatch %[[IDS]] {num_experts = 4 : i64} : (tensor<?x2xi32>) -> (tensor<?xi32>, tensor<5xi32>)
// CHECK:           %[[R:.*]] = moe.gather_rows %[[X]], %[[PERM]] {k = 2 : i64}
// CHECK:           %[[G:.*]] = moe.grouped_matmul %[[R]], %{{.*}}, %[[OFF]] : (tensor<?x64xf32>, tensor<4x96x64xbf16>, tensor<5xi32>) -> tensor<?x96xf32>
// CHECK:           %[[U:.*]] = moe.grouped_matmul %[[R]], %{{.*}}, %[[OFF]]
// CHECK:           %[[S:.*]] = moe.swiglu %[[G]], %[[U]]
// CHECK:           %[[D:.*]] = moe.grouped_matmul %[[S]], %{{.*}}, %[[OFF]] : (tensor<?x96xf32>, tensor<4x64x96xbf16>, tensor<5xi32>) -> tensor<?x64xf32>
// CHECK:           moe.combine %[[D]], %[[PERM]], %[[W]] : (tensor<?x64xf32>, tensor<?xi32>, tensor<?x2xf32>) -> tensor<?x64xf32>
// CHECK:         moe.gather_rows %{{.*}} {k = 1 : i64}
// CHECK:         moe.linear {{.*}} -> tensor<?x512xf32>

// FUSED-LABEL: func.func @moec_step
// FUSED:         %[[W:.*]], %[[IDS:.*]] = moe.top_k_gating
// FUSED:         %[[PERM:.*]], %[[OFF:.*]] = moe.dispatch %[[IDS]]
// FUSED:         %[[H:.*]] = moe.grouped_swiglu %{{.*}}, %[[PERM]], %[[OFF]], {{.*}} {k = 2 : i64} : (tensor<?x64xf32>, tensor<?xi32>, tensor<5xi32>, tensor<4x96x64xbf16>, tensor<4x96x64xbf16>) -> tensor<?x96xf32>
// FUSED:         moe.grouped_matmul_combine %[[H]], %{{.*}}, %[[OFF]], %[[PERM]], %[[W]]
