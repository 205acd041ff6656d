// The model builder's output for a small checkpoint: the ABI entry points (moec_prefill,
// moec_decode, moec_step), the layer loop and the MoE block as one moe.sparse_block per layer,
// before any pass runs.
// REQUIRES: mixtral-compile
// RUN: mixtral-compile %S/../goldens/mixtral_e4k2_bf16 --emit=mlir --max-seq-len 64 -o - | FileCheck %s
// RUN: mixtral-compile %S/../goldens/mixtral_e3k1_gqa4_swa8_f32 --emit=mlir --max-seq-len 32 -o - | FileCheck %s --check-prefix=SWA
// RUN: mixtral-compile %S/../goldens/mixtral_e4k2_bf16 --target nvptx --emit=mlir --max-seq-len 64 -o - | FileCheck %s --check-prefix=GPU

// CHECK:       llvm.mlir.global external constant @moec_manifest("{{.*}}\22abi_version\22:2
// CHECK-SAME:    \22max_seq_len\22:64
// CHECK-SAME:    \22step\22:{\22kv_block_size\22:16,\22max_blocks_per_seq\22:4}

// Prefill: T is dynamic; weights, KV cache, tokens and logits are the ABI's flat buffers.
// CHECK-LABEL: func.func @moec_prefill
// CHECK-SAME:    (%[[W:.*]]: memref<{{[0-9]+}}xi8>, %[[KV:.*]]: memref<49152xi8>, %[[TOK:.*]]: memref<64xi32>, %[[N:.*]]: index, %[[POS:.*]]: index, %[[LOGITS:.*]]: memref<512xf32>)
// CHECK:         %[[IDS:.*]] = tensor.extract_slice %{{.*}}[0] [%[[N]]] [1] : tensor<64xi32> to tensor<?xi32>
// CHECK:         %[[H0:.*]] = moe.embedding %{{.*}}, %[[IDS]] : (tensor<512x64xbf16>, tensor<?xi32>) -> tensor<?x64xf32>
// CHECK:         %[[H:.*]] = scf.for %[[L:.*]] = %{{.*}} to %{{.*}} step %{{.*}} iter_args(%[[X:.*]] = %[[H0]]) -> (tensor<?x64xf32>)
// CHECK:           moe.rms_norm %[[X]]
// CHECK-COUNT-3:   moe.linear
// CHECK:           moe.rope %{{.*}}, %[[POS]] {theta = 1.000000e+06 : f64} : (tensor<?x4x16xf32>, index)
// CHECK:           moe.rope %{{.*}}, %[[POS]] {theta = 1.000000e+06 : f64} : (tensor<?x2x16xf32>, index)
// CHECK:           %[[KC:.*]] = tensor.insert_slice %{{.*}} into %{{.*}}[%[[POS]], 0, 0] [%[[N]], 2, 16]
// CHECK:           %[[VC:.*]] = tensor.insert_slice
// CHECK:           moe.attention %{{.*}}, %[[KC]], %[[VC]], %[[POS]] {scale = 2.500000e-01 : f64}
// CHECK:           bufferization.materialize_in_destination %[[KC]] in restrict writable
// CHECK:           moe.linear
// CHECK:           linalg.add
// CHECK:           moe.rms_norm
// CHECK:           moe.sparse_block %{{.*}} {k = 2 : i64} : (tensor<?x64xf32>, tensor<4x64xbf16>, tensor<4x96x64xbf16>, tensor<4x96x64xbf16>, tensor<4x64x96xbf16>) -> tensor<?x64xf32>
// CHECK:           linalg.add
// CHECK:           scf.yield
// The last layer, peeled: attention over every row (the cache needs each row's k and v),
// then the FFN, the final norm and lm_head for the last row only, the one the logits read.
// CHECK:         moe.rms_norm %[[H]]
// CHECK:         moe.attention {{.*}} -> tensor<?x4x16xf32>
// CHECK:         %[[LASTH:.*]] = linalg.add {{.*}} -> tensor<?x64xf32>
// CHECK:         %[[LASTROW:.*]] = tensor.extract_slice %[[LASTH]][%{{.*}}, 0] [1, 64] [1, 1] : tensor<?x64xf32> to tensor<1x64xf32>
// CHECK:         %[[Y:.*]] = moe.rms_norm %[[LASTROW]]
// CHECK:         moe.sparse_block %[[Y]], {{.*}} -> tensor<1x64xf32>
// CHECK:         %[[OUT:.*]] = linalg.add {{.*}} -> tensor<1x64xf32>
// CHECK:         %[[NORMED:.*]] = moe.rms_norm %[[OUT]]
// CHECK:         moe.linear %[[NORMED]], {{.*}} -> tensor<1x512xf32>
// CHECK:         bufferization.materialize_in_destination %{{.*}} in restrict writable %[[LOGITS]]

// Decode: the explicit one-token path, every activation shape static.
// CHECK-LABEL: func.func @moec_decode
// CHECK-SAME:    (%{{.*}}: memref<{{[0-9]+}}xi8>, %{{.*}}: memref<49152xi8>, %{{.*}}: memref<1xi32>, %{{.*}}: index, %{{.*}}: memref<512xf32>)
// CHECK:         moe.embedding {{.*}} -> tensor<1x64xf32>
// CHECK:         moe.sparse_block {{.*}} -> tensor<1x64xf32>
// CHECK-NOT:     tensor<?x

// The batched step: n_rows rows of any sequences at their own positions, over the paged pool
// [L][2][n_blocks][16][KVH][HD]; block tables are [rows][ceil(64 / 16)].
// CHECK-LABEL: func.func @moec_step
// CHECK-SAME:    (%[[SW:.*]]: memref<{{[0-9]+}}xi8>, %[[POOL:.*]]: memref<{{[0-9]+}}xi8>, %[[NB:.*]]: index, %[[STOK:.*]]: memref<65536xi32>, %[[SPOS:.*]]: memref<65536xi32>, %[[TBL:.*]]: memref<65536x4xi32>, %[[ROWS:.*]]: index, %[[LROWS:.*]]: memref<65536xi32>, %[[NL:.*]]: index, %[[SLOG:.*]]: memref<65536x512xf32>)
// CHECK:         %[[IDS2:.*]] = tensor.extract_slice %{{.*}}[0] [%[[ROWS]]] [1] : tensor<65536xi32> to tensor<?xi32>
// CHECK:         %[[P:.*]] = tensor.extract_slice %{{.*}}[0] [%[[ROWS]]] [1] : tensor<65536xi32> to tensor<?xi32>
// CHECK:         %[[T:.*]] = tensor.extract_slice %{{.*}}[0, 0] [%[[ROWS]], 4] [1, 1] : tensor<65536x4xi32> to tensor<?x4xi32>
// CHECK:         moe.embedding %{{.*}}, %[[IDS2]]
// CHECK:         scf.for
// CHECK:           %[[QR:.*]] = moe.rope_at %{{.*}}, %[[P]] {theta = 1.000000e+06 : f64} : (tensor<?x4x16xf32>, tensor<?xi32>)
// CHECK:           %[[KR:.*]] = moe.rope_at %{{.*}}, %[[P]]
// CHECK:           %[[KV:.*]] = memref.view %[[POOL]][%{{.*}}][%[[NB]]] : memref<{{[0-9]+}}xi8> to memref<?x16x2x16xf32>
// CHECK:           %[[KP:.*]] = bufferization.to_tensor %[[KV]] restrict writable
// CHECK:           %[[VP:.*]] = bufferization.to_tensor
// CHECK:           %[[K2:.*]] = moe.paged_kv_write %[[KR]], %[[KP]], %[[T]], %[[P]] : (tensor<?x2x16xf32>, tensor<?x16x2x16xf32>, tensor<?x4xi32>, tensor<?xi32>) -> tensor<?x16x2x16xf32>
// CHECK:           %[[V2:.*]] = moe.paged_kv_write %{{.*}}, %[[VP]], %[[T]], %[[P]]
// CHECK:           moe.paged_attention %[[QR]], %[[K2]], %[[V2]], %[[T]], %[[P]] {scale = 2.500000e-01 : f64}
// CHECK:           bufferization.materialize_in_destination %[[K2]] in restrict writable %[[KV]]
// CHECK:           moe.sparse_block %{{.*}} {k = 2 : i64} : (tensor<?x64xf32>, {{.*}}) -> tensor<?x64xf32>
// CHECK:           scf.yield
// The last layer, peeled as in prefill: attention over every row, then the rows the logits
// read (logit_rows, n_logits of them) gathered for the FFN, the final norm and lm_head.
// CHECK:         moe.paged_attention
// CHECK:         %[[LASTS:.*]] = linalg.add {{.*}} -> tensor<?x64xf32>
// CHECK:         %[[PICKED:.*]] = moe.gather_rows %[[LASTS]], %{{.*}} {k = 1 : i64} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
// CHECK:         %[[SY:.*]] = moe.rms_norm %[[PICKED]]
// CHECK:         moe.sparse_block %[[SY]], {{.*}} -> tensor<?x64xf32>
// CHECK:         %[[SOUT:.*]] = linalg.add ins(%[[PICKED]], {{.*}} -> tensor<?x64xf32>
// CHECK:         %[[SNORMED:.*]] = moe.rms_norm %[[SOUT]]
// CHECK:         moe.linear %[[SNORMED]], {{.*}} -> tensor<?x512xf32>
// CHECK:         tensor.insert_slice %{{.*}}[0, 0] [%[[NL]], 512] [1, 1]
// CHECK:         bufferization.materialize_in_destination %{{.*}} in restrict writable %[[SLOG]]

// Sliding window and GQA 4:1 reach the attention op.
// SWA-LABEL:   func.func @moec_prefill
// SWA:           moe.attention {{.*}} {scale = {{.*}}, sliding_window = 8 : i64} : (tensor<?x8x12xf32>, tensor<32x2x12xf32>, tensor<32x2x12xf32>, index)
// SWA:           moe.sparse_block {{.*}} {k = 1 : i64}
// SWA-LABEL:   func.func @moec_step
// SWA:           moe.paged_attention {{.*}} {scale = {{.*}}, sliding_window = 8 : i64} : (tensor<?x8x12xf32>, tensor<?x16x2x12xf32>, tensor<?x16x2x12xf32>, tensor<?x2xi32>, tensor<?xi32>)

// The GPU target has the same batched step, and the same "step" section in its manifest
// (its launches: gpu-step.mlir).
// GPU:           llvm.mlir.global external constant @moec_manifest("{{.*}}\22target\22:\22nvptx\22
// GPU-SAME:        \22step\22:{\22kv_block_size\22:16,\22max_blocks_per_seq\22:4}
// GPU-LABEL:     func.func @moec_prefill
// GPU-LABEL:     func.func @moec_decode
// GPU-LABEL:     func.func @moec_step
// GPU:             moe.paged_attention
