// moec_step on the nvptx target at the launch stage (moe-gpu-pipeline up to
// moe-gpu-lower-kernel-calls, canonicalize and cse): the rows of the step at their own positions (rope_at), their
// K/V written into the paged pool in place (paged_kv_write), attention per row over its own
// block table (paged_attention: one block per row and KV head, no split of the key range);
// then the MoE block routes ALL rows of the step together: the router GEMV and top_k over the
// [n_rows, E] logits, one dispatch, the grouped expert GEMMs (tensor cores, one launch per
// weight over every expert's group of rows) and the combine back to row order. Only the rows
// that want logits reach the final norm and the lm_head GEMM (gather_rows). One stream, waited
// for before returning.
// REQUIRES: mixtral-compile
// RUN: mixtral-compile %S/../goldens/mixtral_e4k2_bf16 --target nvptx --gpu sm_80 --emit=mlir \
// RUN:   --max-seq-len 64 -o - | moe-opt --moe-gpu-pipeline=stop-before-binary \
// RUN:   --mlir-print-ir-before=moe-gpu-expand-kernel-memrefs -o /dev/null 2>&1 | FileCheck %s

// CHECK-LABEL: func.func @moec_step
// CHECK-SAME:    %[[POOL:arg1]]: memref<1099511627776xi8>, %[[NB:arg2]]: index
// CHECK-SAME:    %[[POS:arg4]]: memref<65536xi32>, %[[TBL:arg5]]: memref<65536x4xi32>, %[[ROWS:arg6]]: index
// CHECK-SAME:    %[[NLOG:arg8]]: index
// CHECK:         %[[S:.*]] = gpu.wait async
// CHECK:         %[[P:.*]] = memref.subview %[[POS]][0] [%[[ROWS]]] [1]
// CHECK:         %[[T:.*]] = memref.subview %[[TBL]][0, 0] [%[[ROWS]], 4] [1, 1]
// CHECK:         gpu.launch_func async [%[[S]]] @moec_kernels::@embedding blocks in (%[[ROWS]],
// CHECK:         scf.for
// CHECK:           @moec_kernels::@rms_norm blocks in (%[[ROWS]],
// CHECK-COUNT-3:   @moec_kernels::@gemm_mma blocks
// CHECK:           %[[PC:.*]] = memref.cast %[[P]]
// CHECK:           @moec_kernels::@rope_at {{.*}} args({{.*}}, %[[PC]] : memref<?xi32, strided<[1], offset: ?>>,
// CHECK:           @moec_kernels::@rope_at
// CHECK:           memref.view %[[POOL]][%{{.*}}][%[[NB]]] : memref<1099511627776xi8> to memref<?x16x2x16xf32>
// CHECK:           memref.view %[[POOL]][%{{.*}}][%[[NB]]] : memref<1099511627776xi8> to memref<?x16x2x16xf32>
// CHECK:           %[[TC:.*]] = memref.cast %[[T]]
// CHECK:           @moec_kernels::@paged_kv_write {{.*}}, %[[TC]] : memref<?x?xi32, strided<[?, 1], offset: ?>>, %[[PC]] :
// CHECK:           @moec_kernels::@paged_kv_write
// CHECK:           @moec_kernels::@paged_attention {{.*}}, %[[TC]] : memref<?x?xi32, strided<[?, 1], offset: ?>>, %[[PC]] :
// CHECK:           @moec_kernels::@gemm_mma
// CHECK:           @moec_kernels::@add
// CHECK:           @moec_kernels::@rms_norm blocks in (%[[ROWS]],
// CHECK:           @moec_kernels::@gemv blocks in ({{[^,]*}}, %[[ROWS]],
// CHECK:           @moec_kernels::@top_k
// CHECK:           @moec_kernels::@dispatch
// CHECK:           @moec_kernels::@gemm_mma_swiglu
// CHECK:           @moec_kernels::@gemm_mma
// CHECK:           @moec_kernels::@combine blocks in (%[[ROWS]],
// CHECK:           @moec_kernels::@add
// CHECK:         @moec_kernels::@gather_rows blocks in (%[[NLOG]],
// CHECK:         @moec_kernels::@rms_norm blocks in (%[[NLOG]],
// CHECK:         @moec_kernels::@gemm_mma
// CHECK:         @moec_kernels::@copy
// CHECK:         gpu.wait [%{{.*}}]
// CHECK-NEXT:    return

// The kernels: the pools are rank-4 [n_blocks, B, KVH, HD], the tables and positions i32.
// CHECK-LABEL: gpu.func @paged_attention(
// CHECK-SAME:    memref<?x?x?x?xf32, strided<[?, ?, ?, 1], offset: ?>>, %{{.*}}: memref<?x?x?x?xf32, strided<[?, ?, ?, 1], offset: ?>>, %{{.*}}: memref<?x?xi32, strided<[?, 1], offset: ?>>, %{{.*}}: memref<?xi32, strided<[1], offset: ?>>
// CHECK-LABEL: gpu.func @paged_kv_write(
// CHECK-LABEL: gpu.func @gather_rows(
