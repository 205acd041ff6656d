// RUN: moe-opt %s -split-input-file -moe-lower-to-linalg | FileCheck %s --check-prefix=LINALG
// RUN: moe-opt %s -split-input-file -moe-lower-to-linalg -one-shot-bufferize="bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map" -moe-cpu-vectorize-quant-matmul="vector-width=8 tile-rows=3 tile-cols=4" -canonicalize | FileCheck %s
// RUN: moe-opt %s -split-input-file -moe-lower-to-linalg -one-shot-bufferize="bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map" -moe-cpu-vectorize-quant-matmul="vector-width=16 tile-rows=3 tile-cols=4 gemm-cols=32" -o /dev/null 2>&1 | FileCheck %s --check-prefix=WIDE-WARN --implicit-check-not=warning
// RUN: moe-opt %s -split-input-file -moe-lower-to-linalg -one-shot-bufferize="bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map" -moe-cpu-vectorize-quant-matmul="vector-width=8 tile-rows=3 tile-cols=4 int8-activations=true" -o /dev/null 2>&1 | FileCheck %s --check-prefix=INT8-WARN --implicit-check-not=warning

// A q4 linear at each stage. moe-lower-to-linalg: one generic that reads the byte holding
// element (n, k) and the group's scale, dequantising in its body (no weight-sized tensor).
// LINALG-DAG: #[[DATA:.*]] = affine_map<(d0, d1, d2) -> (d1, (d2 floordiv 32) * 16 + d2 mod 16)>
// LINALG-DAG: #[[SCALE:.*]] = affine_map<(d0, d1, d2) -> (d1, d2 floordiv 32)>
// LINALG-LABEL: func.func @linear_q4
// LINALG-SAME:    (%[[X:.*]]: tensor<?x128xf32>, %[[D:.*]]: tensor<64x64xi8>, %[[S:.*]]: tensor<64x4xf16>)
// LINALG-NOT:     tensor.empty() : tensor<64x128xf32>
// LINALG:         linalg.generic {indexing_maps = [#{{.*}}, #[[DATA]], #[[SCALE]], #{{.*}}], iterator_types = ["parallel", "parallel", "reduction"]} ins(%[[X]], %[[D]], %[[S]] : tensor<?x128xf32>, tensor<64x64xi8>, tensor<64x4xf16>) outs(%{{.*}} : tensor<?x64xf32>) attrs = {moe.quant = #moe.quant<q4, group_size = 32>}
// LINALG:           arith.shrui
// LINALG:           arith.andi
// LINALG:           arith.select
// LINALG:           arith.sitofp
// LINALG-NOT:     moe.linear

// After bufferization and moe-cpu-vectorize-quant-matmul: the only buffer is the [T, 64]
// output; per group of 32 and 8 lanes, each weight row's bytes are loaded into 32-bit lanes,
// masked (low nibbles) or shifted (high), scaled in registers (nibble * s - 8 s, one FMA),
// then FMAs into the tile; the lanes are summed by halving (the packed GEMM's order).
// CHECK-LABEL: func.func @linear_q4
// CHECK-SAME:    (%[[X:.*]]: memref<?x128xf32>, %[[D:.*]]: memref<64x64xi8>, %[[S:.*]]: memref<64x4xf16>)
// CHECK-NOT:     memref.alloc{{.*}}64x128
// CHECK-NOT:     memref.alloc{{.*}}128x64
// CHECK:         %[[OUT:.*]] = memref.alloc(%{{.*}}) {{.*}} : memref<?x64xf32>
// CHECK-NOT:     memref.alloc
// CHECK:         scf.parallel
// CHECK:           scf.for %[[G:.*]] = {{.*}} iter_args({{.*}}) -> (vector<8xf32>
// CHECK:             memref.load %[[S]][%{{.*}}, %[[G]]] : memref<64x4xf16>
// CHECK:             vector.broadcast %{{.*}} : f16 to vector<8xf16>
// CHECK:             arith.extf %{{.*}} : vector<8xf16> to vector<8xf32>
// CHECK:             vector.load %[[X]]
// CHECK:             %[[B:.*]] = vector.load %[[D]][%{{.*}}, %{{.*}}] : memref<64x64xi8>, vector<8xi8>
// CHECK:             %[[W:.*]] = arith.extui %[[B]] : vector<8xi8> to vector<8xi32>
// CHECK:             %[[LO:.*]] = arith.andi %[[W]], %{{.*}} : vector<8xi32>
// CHECK:             %[[F:.*]] = arith.sitofp %[[LO]] : vector<8xi32> to vector<8xf32>
// CHECK:             %[[WQ:.*]] = vector.fma %[[F]], %{{.*}}, %{{.*}} : vector<8xf32>
// CHECK:             vector.fma %{{.*}}, %[[WQ]], %{{.*}} : vector<8xf32>
// CHECK:             arith.shrui %{{.*}} : vector<8xi32>
// CHECK-NOT:         memref.alloc
// CHECK:         vector.extract_strided_slice %{{.*}} {offsets = [0], sizes = [4], strides = [1]}
// Single rows (decode) take their tile column by column: a column's scale, then its four
// chunks (a dequantising FMA and an FMA with x each), then the next column's scale.
// CHECK:           scf.for {{.*}} -> (vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>) {
// CHECK:             memref.load %[[S]]
// CHECK-COUNT-8:     vector.fma
// CHECK-NOT:         vector.fma
// CHECK:             memref.load %[[S]]
// CHECK-NOT:     vector.reduction
// CHECK-NOT:     linalg.generic
// CHECK:         return %[[OUT]]
// With prefetch (moe-cpu-pipeline sets it): single rows (decode) prefetch, per group, the
// same bytes of the next tile's weight rows (clamped to the last row); full tiles do not.
// RUN: moe-opt %s -split-input-file -moe-lower-to-linalg -one-shot-bufferize="bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map" -moe-cpu-vectorize-quant-matmul="vector-width=8 tile-rows=3 tile-cols=4 prefetch=true" -canonicalize | FileCheck %s --check-prefix=PREFETCH
// PREFETCH-LABEL: func.func @linear_q4
// PREFETCH-SAME:    (%{{.*}}: memref<?x128xf32>, %[[D:.*]]: memref<64x64xi8>, %{{.*}}: memref<64x4xf16>)
// PREFETCH:         scf.for %[[G:.*]] = {{.*}} iter_args({{.*}}) -> (vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>)
// PREFETCH-NOT:       memref.prefetch
// PREFETCH:         scf.for %[[G1:.*]] = {{.*}} iter_args({{.*}}) -> (vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>)
// PREFETCH:           %[[BYTE:.*]] = arith.muli %[[G1]], %c16
// PREFETCH:           %[[NEXT:.*]] = arith.minui %{{.*}}, %c63
// PREFETCH:           memref.prefetch %[[D]][%[[NEXT]], %[[BYTE]]], read, locality<3>, data : memref<64x64xi8>
func.func @linear_q4(%x: tensor<?x128xf32>, %d: tensor<64x64xi8>, %s: tensor<64x4xf16>) -> tensor<?x64xf32> {
  %y = moe.linear %x, %d scales %s {quant = #moe.quant<q4, group_size = 32>}
      : (tensor<?x128xf32>, tensor<64x64xi8>, tensor<64x4xf16>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// f8e4m3: bytes widened by bit manipulation, the row's scale (times 2^120) after the sum.
// LINALG-LABEL: func.func @linear_f8
// LINALG:         linalg.generic {{.*}} attrs = {moe.quant = #moe.quant<f8e4m3>}
// LINALG:           arith.bitcast %{{.*}} : f8E4M3FN to i8
// CHECK-LABEL: func.func @linear_f8
// CHECK-SAME:    (%{{.*}}: memref<?x128xf32>, %[[D:.*]]: memref<64x128xf8E4M3FN>, %[[S:.*]]: memref<64x1xf32>)
// CHECK-NOT:     memref.alloc{{.*}}64x128xf32
// CHECK:         scf.parallel
// CHECK:           vector.load %[[D]]{{.*}} : memref<64x128xf8E4M3FN>, vector<8xf8E4M3FN>
// CHECK:           arith.bitcast {{.*}} : vector<8xf8E4M3FN> to vector<8xi8>
// CHECK:           arith.shli
// CHECK:           arith.bitcast {{.*}} : vector<8xi32> to vector<8xf32>
// CHECK:           vector.fma
// CHECK:         %[[RS:.*]] = memref.load %[[S]]
// CHECK:         %[[RS120:.*]] = arith.mulf %[[RS]], %{{.*}} : f32
// CHECK:         %[[SUM:.*]] = vector.extract %{{.*}}[0] : f32 from vector<1xf32>
// CHECK:         arith.mulf %[[SUM]], %[[RS120]] : f32
// CHECK-NOT:     linalg.generic
func.func @linear_f8(%x: tensor<?x128xf32>, %d: tensor<64x128xf8E4M3FN>, %s: tensor<64x1xf32>) -> tensor<?x64xf32> {
  %y = moe.linear %x, %d scales %s {quant = #moe.quant<f8e4m3>}
      : (tensor<?x128xf32>, tensor<64x128xf8E4M3FN>, tensor<64x1xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// int8-activations: every row is quantized first (heap buffers for ? rows, freed after the
// kernel), then full 3-row tiles and the remaining rows run the same per-output sequence
// (dot product on vpmaddubsw / vpmaddwd, f32, * s_x, FMA with s_w): row-invariant.
// RUN: moe-opt %s -split-input-file -moe-lower-to-linalg -one-shot-bufferize="bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map" -moe-cpu-vectorize-quant-matmul="vector-width=8 tile-rows=3 tile-cols=4 int8-activations=true" -canonicalize | FileCheck %s --check-prefix=INT8
// RUN: moe-opt %s -split-input-file -moe-lower-to-linalg -one-shot-bufferize="bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map" -moe-cpu-vectorize-quant-matmul="vector-width=8 tile-rows=3 tile-cols=4 int8-activations=true vnni=true" -canonicalize | FileCheck %s --check-prefix=VNNI
// INT8-LABEL: func.func @linear_q8_int8
// INT8:         %[[XQ:.*]] = memref.alloc(%[[ROWS:.*]]) {alignment = 64 : i64} : memref<?x128xi8>
// INT8:         %[[XS:.*]] = memref.alloc(%[[ROWS]]) {alignment = 64 : i64} : memref<?x4xf32>
// INT8:         scf.for %[[ROW:.*]] = %c0 to %[[ROWS]] step %c1 {
// INT8:           math.roundeven {{.*}} : vector<32xf32>
// INT8:           vector.store {{.*}}, %[[XQ]][%[[ROW]], {{.*}}] : memref<?x128xi8>, vector<32xi8>
// INT8:         scf.parallel
// INT8:             %[[X8:.*]] = vector.load %[[XQ]]{{.*}} : memref<?x128xi8>, vector<32xi8>
// INT8:             %[[W:.*]] = vector.load {{.*}} : memref<64x128xi8>, vector<32xi8>
// INT8:             %[[ABS:.*]] = math.absi %[[W]] : vector<32xi8>
// INT8:             %[[SGN:.*]] = llvm.call_intrinsic "llvm.x86.avx2.psign.b"(%[[X8]], %[[W]])
// INT8:             %[[P16:.*]] = llvm.call_intrinsic "llvm.x86.avx2.pmadd.ub.sw"(%[[ABS]], %[[SGN]]) : (vector<32xi8>, vector<32xi8>) -> vector<16xi16>
// INT8:             %[[DOT:.*]] = llvm.call_intrinsic "llvm.x86.avx2.pmadd.wd"(%[[P16]], %{{.*}}) : (vector<16xi16>, vector<16xi16>) -> vector<8xi32>
// INT8:             %[[F:.*]] = arith.sitofp %[[DOT]] : vector<8xi32> to vector<8xf32>
// INT8:             %[[SCALED:.*]] = arith.mulf %[[F]], {{.*}} : vector<8xf32>
// INT8:             vector.fma %[[SCALED]], {{.*}} : vector<8xf32>
// INT8:         memref.dealloc %[[XQ]]
// INT8:         memref.dealloc %[[XS]]
// Without int8 activations the same q8 linear dequantises in registers (row-major): per
// column and group the f16 scale widened and times 2^-24, then per 16 codes one load, and per
// 8 of them a byte shuffle into the top of i32 lanes (q * 2^24), the conversion and the
// scale's multiply (the exact q * s), and the FMA.
// CHECK-LABEL: func.func @linear_q8_int8
// CHECK:         %[[TWO24:.*]] = arith.constant dense<5.96046448E-8> : vector<8xf32>
// CHECK:         scf.for {{.*}} iter_args({{.*}}) -> (vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>)
// CHECK:           %[[SW:.*]] = arith.extf {{.*}} : vector<8xf16> to vector<8xf32>
// CHECK-NEXT:      %[[S24:.*]] = arith.mulf %[[SW]], %[[TWO24]] : vector<8xf32>
// CHECK:           %[[B:.*]] = vector.load %{{.*}} : memref<64x128xi8>, vector<16xi8>
// CHECK-NEXT:      %[[HI:.*]] = vector.shuffle %[[B]], %{{.*}} [16, 16, 16, 0, 16, 16, 16, 1, {{.*}}, 16, 16, 16, 7] : vector<16xi8>, vector<16xi8>
// CHECK-NEXT:      %[[I:.*]] = vector.bitcast %[[HI]] : vector<32xi8> to vector<8xi32>
// CHECK-NEXT:      %[[F:.*]] = arith.sitofp %[[I]] : vector<8xi32> to vector<8xf32>
// CHECK-NEXT:      %[[W:.*]] = arith.mulf %[[F]], %[[S24]] : vector<8xf32>
// CHECK-NEXT:      vector.fma %{{.*}}, %[[W]], %{{.*}} : vector<8xf32>
// CHECK-NOT:       arith.extsi
// CHECK:         return
// VNNI-LABEL: func.func @linear_q8_int8
// VNNI:         %[[ABS:.*]] = math.absi
// VNNI:         %[[SGN:.*]] = llvm.call_intrinsic "llvm.x86.avx2.psign.b"
// VNNI:         llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.256"(%{{.*}}, %[[ABS]], %[[SGN]]) : (vector<8xi32>, vector<32xi8>, vector<32xi8>) -> vector<8xi32>
// VNNI-NOT:     pmadd
func.func @linear_q8_int8(%x: tensor<?x128xf32>, %d: tensor<64x128xi8>, %s: tensor<64x4xf16>) -> tensor<?x64xf32> {
  %y = moe.linear %x, %d scales %s {quant = #moe.quant<q8, group_size = 32>}
      : (tensor<?x128xf32>, tensor<64x128xi8>, tensor<64x4xf16>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// q4 with int8 activations and an even number of groups: two groups per 32-byte load of
// nibbles; the row is stored to match (low halves, high halves, s_x and the -8 offset as
// 8 lanes per pair), and the two halves' dot products are summed exactly.
// INT8-LABEL: func.func @linear_q4_int8_pairs
// INT8:         %[[XQ:.*]] = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x128xi8>
// INT8:         %[[XS:.*]] = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x16xf32>
// INT8:         %[[BIAS:.*]] = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x16xi32>
// INT8:         scf.parallel
// INT8:             %[[XLO:.*]] = vector.load %[[XQ]]{{.*}} : memref<?x128xi8>, vector<32xi8>
// INT8:             %[[XHI:.*]] = vector.load %[[XQ]]{{.*}} : memref<?x128xi8>, vector<32xi8>
// INT8:             %[[SX:.*]] = vector.load %[[XS]]{{.*}} : memref<?x16xf32>, vector<8xf32>
// INT8:             %[[B:.*]] = vector.load %[[BIAS]]{{.*}} : memref<?x16xi32>, vector<8xi32>
// INT8:             %[[BYTES:.*]] = vector.load %arg1{{.*}} : memref<64x64xi8>, vector<32xi8>
// INT8:             %[[LO:.*]] = arith.andi %[[BYTES]]
// INT8:             %[[HI:.*]] = arith.shrui %[[BYTES]]
// INT8:             %[[S2:.*]] = vector.load %arg2{{.*}} : memref<64x4xf16>, vector<2xf16>
// INT8:             %[[P1:.*]] = llvm.call_intrinsic "llvm.x86.avx2.pmadd.ub.sw"(%[[LO]], %[[XLO]])
// INT8:             %[[P2:.*]] = llvm.call_intrinsic "llvm.x86.avx2.pmadd.ub.sw"(%[[HI]], %[[XHI]])
// INT8:             %[[P:.*]] = arith.addi %[[P1]], %[[P2]] : vector<16xi16>
// INT8:             %[[D:.*]] = llvm.call_intrinsic "llvm.x86.avx2.pmadd.wd"(%[[P]], %{{.*}})
// INT8:             arith.addi %[[B]], %[[D]] : vector<8xi32>
// VNNI-LABEL: func.func @linear_q4_int8_pairs
// VNNI:         %[[D1:.*]] = llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.256"
// VNNI:         llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.256"(%[[D1]], {{.*}})
func.func @linear_q4_int8_pairs(%x: tensor<?x128xf32>, %d: tensor<64x64xi8>, %s: tensor<64x4xf16>) -> tensor<?x64xf32> {
  %y = moe.linear %x, %d scales %s {quant = #moe.quant<q4, group_size = 32>}
      : (tensor<?x128xf32>, tensor<64x64xi8>, tensor<64x4xf16>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// q4 with int8 activations, q4-octets and K a multiple of 256 (8 groups) on AVX2: octets.
// x is stored as for pairs; s_x and the -8 offset one lane per group, in the octet's lane
// order [0 2 4 6 1 3 5 7]. Per column the 4 loads' halves go
// through the same two vpmaddubsw each, then three horizontal adds (vphaddw) and
// one vpmaddwd leave one exact int32 per group, converted and scaled once: one FMA per
// 8 groups of a column. VNNI builds keep pairs.
// RUN: moe-opt %s -split-input-file -moe-lower-to-linalg -one-shot-bufferize="bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map" -moe-cpu-vectorize-quant-matmul="vector-width=8 tile-rows=3 tile-cols=4 int8-activations=true q4-octets=true" -canonicalize | FileCheck %s --check-prefix=OCT
// RUN: moe-opt %s -split-input-file -moe-lower-to-linalg -one-shot-bufferize="bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map" -moe-cpu-vectorize-quant-matmul="vector-width=8 tile-rows=3 tile-cols=4 int8-activations=true q4-octets=true vnni=true" -canonicalize | FileCheck %s --check-prefix=OCTVNNI
// OCT-LABEL: func.func @linear_q4_int8_octets
// OCT:         %[[XQ:.*]] = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x256xi8>
// OCT:         %[[XS:.*]] = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x8xf32>
// OCT:         %[[BIAS:.*]] = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x8xi32>
// OCT:         scf.for %[[ROW:.*]] = %c0 to
// OCT:             vector.reduction <add>, {{.*}} : vector<32xi32> into i32
// OCT:             memref.store {{.*}}, %[[XS]][%[[ROW]], {{.*}}] : memref<?x8xf32>
// OCT:             memref.store {{.*}}, %[[BIAS]][%[[ROW]], {{.*}}] : memref<?x8xi32>
// OCT:         scf.parallel
// OCT:             %[[SX:.*]] = vector.load %[[XS]]{{.*}} : memref<?x8xf32>, vector<8xf32>
// OCT:             %[[B:.*]] = vector.load %[[BIAS]]{{.*}} : memref<?x8xi32>, vector<8xi32>
// OCT-COUNT-8:     llvm.call_intrinsic "llvm.x86.avx2.pmadd.ub.sw"
// OCT:             %[[H01:.*]] = llvm.call_intrinsic "llvm.x86.avx2.phadd.w"
// OCT:             %[[H:.*]] = llvm.call_intrinsic "llvm.x86.avx2.phadd.w"(%[[H01]], %[[H23:.*]]) :
// OCT:             %[[S8:.*]] = vector.load %arg2{{.*}} : memref<64x8xf16>, vector<8xf16>
// OCT:             %[[SW8:.*]] = arith.extf %[[S8]] : vector<8xf16> to vector<8xf32>
// OCT:             %[[SW:.*]] = vector.shuffle %[[SW8]], %[[SW8]] [0, 2, 4, 6, 1, 3, 5, 7]
// OCT:             %[[D:.*]] = llvm.call_intrinsic "llvm.x86.avx2.pmadd.wd"(%[[H]], %{{.*}})
// OCT:             %[[DOT:.*]] = arith.addi %[[B]], %[[D]] : vector<8xi32>
// OCT:             %[[F:.*]] = arith.sitofp %[[DOT]] : vector<8xi32> to vector<8xf32>
// OCT:             %[[SCALED:.*]] = arith.mulf %[[F]], %[[SX]] : vector<8xf32>
// OCT:             vector.fma %[[SCALED]], %[[SW]], {{.*}} : vector<8xf32>
// OCTVNNI-LABEL: func.func @linear_q4_int8_octets
// OCTVNNI-NOT:     phadd
// OCTVNNI:         llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.256"
func.func @linear_q4_int8_octets(%x: tensor<?x256xf32>, %d: tensor<64x128xi8>, %s: tensor<64x8xf16>) -> tensor<?x64xf32> {
  %y = moe.linear %x, %d scales %s {quant = #moe.quant<q4, group_size = 32>}
      : (tensor<?x256xf32>, tensor<64x128xi8>, tensor<64x8xf16>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// Prefill: with gemm-min-rows, calls of at least that many rows (a run-time check) take the
// packed GEMM of moe-cpu-vectorize-matmul, one shared @__moe_qgemm_q4_6x16 per module that
// every site calls with (buffer, offset, sizes, row stride); fewer rows keep the kernel
// above. Its panel packer (8 lanes) takes a group of 8 weight rows as signed bytes (q4:
// nibble - 8), transposes the 8 x 32 bytes in 3 rounds of unpacks (24 shuffles), widens each
// 8-byte piece (one element, 8 rows) and multiplies it by the 8 rows' scales as one vector:
// a row of the f32 K-major panel; the microkernel then broadcasts x against panel rows.
// Once per 64-byte line (every 4 groups of q4) it first prefetches each of the 16 rows'
// codes 16 groups ahead, past the row's end the next panel's rows, clamped to the last row.
// RUN: moe-opt %s -split-input-file -moe-lower-to-linalg -one-shot-bufferize="bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map" -moe-cpu-vectorize-quant-matmul="vector-width=8 tile-rows=3 tile-cols=4 gemm-min-rows=8 gemm-rows=6 gemm-cols=16" -canonicalize | FileCheck %s --check-prefix=GEMM
// GEMM-LABEL: func.func @linear_q4_gemm
// GEMM-SAME:    (%[[X:.*]]: memref<?x64xf32>, %[[D:.*]]: memref<32x32xi8>, %[[S:.*]]: memref<32x2xf16>)
// GEMM:         %[[MANY:.*]] = arith.cmpi uge, %[[ROWS:.*]], %c8
// GEMM:         scf.if %[[MANY]] {
// GEMM:           %[[DB:.*]], %{{.*}}, %{{.*}}:2, %[[DLD:.*]]:2 = memref.extract_strided_metadata %[[D]]
// GEMM:           func.call @__moe_qgemm_q4_6x16(%{{.*}}, %c0, %{{.*}}, %c64, %c64, %[[DB]], %c0, %c32, %c32, %{{.*}}, %c0, %c2, %{{.*}}, %c0, %c32)
// GEMM:         } else {
// GEMM:           scf.for
// GEMM:             arith.sitofp
// GEMM-LABEL: func.func private @__moe_qgemm_q4_6x16
// GEMM-SAME:    (%[[XB:.*]]: memref<f32>, %{{.*}}: index, %[[M:.*]]: index, %[[K:.*]]: index, %{{.*}}: index, %[[DB:.*]]: memref<i8>, %{{.*}}: index, %[[N:.*]]: index, %{{.*}}: index, %[[SB:.*]]: memref<f16>, {{.*}}) attributes {llvm.linkage = #llvm.linkage<internal>, passthrough = ["noinline"]}
// GEMM:         %[[DV:.*]] = memref.reinterpret_cast %[[DB]] {{.*}} : memref<i8> to memref<?x?xi8, strided<[?, 1], offset: ?>>
// GEMM:         %[[SV:.*]] = memref.reinterpret_cast %[[SB]] {{.*}} : memref<f16> to memref<?x?xf16, strided<[?, 1], offset: ?>>
// GEMM:         scf.parallel
// GEMM:         scf.parallel
// GEMM:           %[[N0:.*]] = arith.muli %{{.*}}, %c16 : index
// GEMM:           %[[PANEL:.*]] = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x16xf32>
// GEMM:           scf.for %[[G:.*]] =
// GEMM:             %[[GROUPS:.*]] = memref.dim %[[SV]], %c1
// GEMM:             %[[AHEAD:.*]] = arith.addi %[[G]], %c16 : index
// GEMM:             %[[WRAPS:.*]] = arith.cmpi uge, %[[AHEAD]], %[[GROUPS]] : index
// GEMM:             %[[NEXT:.*]] = arith.select %[[WRAPS]], %c16, %c0 : index
// GEMM:             %[[ROWS:.*]] = memref.dim %[[DV]], %c0
// GEMM:             %[[LAST:.*]] = arith.subi %[[ROWS]], %c1 : index
// GEMM:             scf.if
// GEMM:               %[[BYTE:.*]] = arith.muli %{{.*}}, %c16 : index
// GEMM:               %[[R0:.*]] = arith.addi %[[N0]], %[[NEXT]] : index
// GEMM:               %[[R0C:.*]] = arith.minui %[[R0]], %[[LAST]] : index
// GEMM:               memref.prefetch %[[DV]][%[[R0C]], %[[BYTE]]], read, locality<2>, data
// GEMM-COUNT-15:      memref.prefetch %[[DV]]
// GEMM-NEXT:        }
// GEMM:             memref.load %[[SV]][%{{.*}}, %[[G]]]
// GEMM:             %[[B:.*]] = vector.load %[[DV]]{{.*}} : memref<?x?xi8, strided<[?, 1], offset: ?>>, vector<16xi8>
// GEMM:             %[[LO:.*]] = arith.andi %[[B]]
// GEMM:             %[[HI:.*]] = arith.shrui %[[B]]
// GEMM:             %[[NIB:.*]] = vector.shuffle %[[LO]], %[[HI]] [0, 1, 2, {{.*}}] : vector<16xi8>, vector<16xi8>
// GEMM:             arith.subi %[[NIB]], %{{.*}} : vector<32xi8>
// GEMM:             %[[S16:.*]] = vector.from_elements {{.*}} : vector<8xf16>
// GEMM:             %[[S:.*]] = arith.extf %[[S16]] : vector<8xf16> to vector<8xf32>
// GEMM-NEXT:        vector.shuffle %{{.*}}, %{{.*}} [0, 32, 1, 33, {{.*}}] : vector<32xi8>, vector<32xi8>
// GEMM-COUNT-23:    vector.shuffle {{.*}} : vector<32xi8>, vector<32xi8>
// GEMM-NEXT:        %[[E:.*]] = vector.extract_strided_slice %{{.*}} {offsets = [0], sizes = [8], strides = [1]} : vector<32xi8> to vector<8xi8>
// GEMM-NEXT:        %[[EW:.*]] = arith.extsi %[[E]] : vector<8xi8> to vector<8xi32>
// GEMM-NEXT:        %[[EF:.*]] = arith.sitofp %[[EW]] : vector<8xi32> to vector<8xf32>
// GEMM:             %[[V:.*]] = arith.mulf %[[EF]], %[[S]] : vector<8xf32>
// GEMM-NEXT:        vector.store %[[V]], %[[PANEL]]
// GEMM-NOT:         vector.fma
// GEMM-NOT:     memref.alloc{{.*}}x32xf32
// GEMM:             vector.load %[[PANEL]]
// GEMM:             vector.broadcast
// GEMM:             vector.fma
// GEMM:         memref.dealloc %[[PANEL]]
func.func @linear_q4_gemm(%x: tensor<?x64xf32>, %d: tensor<32x32xi8>, %s: tensor<32x2xf16>) -> tensor<?x32xf32> {
  %y = moe.linear %x, %d scales %s {quant = #moe.quant<q4, group_size = 32>}
      : (tensor<?x64xf32>, tensor<32x32xi8>, tensor<32x2xf16>) -> tensor<?x32xf32>
  return %y : tensor<?x32xf32>
}

// -----

// q8 in panel order (moe-lower-to-linalg's generic over an expert's stored codes [N / 16, K,
// 16] and scales [N / 16, K / 32, 16], marked #moe.panels): rows >= gemm-min-rows call the
// shared @__moe_qgemm_q8_panels_6x16 with (buffer, offset, panel count) per operand, whose
// packer widens each stored panel row (16 codes, already the panel's order; in-lane byte
// shuffles, as the GEMV below) and multiplies it by its group's 16 scales: no transposes; fewer rows (and every call without gemm-min-rows)
// take the panel GEMV, 4 lanes at a time through the stored panel, the GEMM's chains, then
// its halving tree across the lanes; per group it prefetches each of its 4 lanes' stored
// row 32 rows on (clamped to the panel's last row, 63). The GEMV loads a stored row's 16
// codes once and puts each 8 in the top bytes of i32 lanes (q * 2^24, an in-lane vpshufb on
// AVX2), converts them and multiplies by the scales times 2^-24: the packer's exact q * s,
// so the same bits.
// CHECK-LABEL: func.func @q8_panels
// CHECK-SAME:    (%[[X:.*]]: memref<?x64xf32>, %[[D:.*]]: memref<2x64x16xi8>, %[[S:.*]]: memref<2x2x16xf16>, %[[Y:.*]]: memref<?x32xf32>)
// CHECK:         %[[TWO24:.*]] = arith.constant dense<5.96046448E-8> : vector<8xf32>
// CHECK:         scf.parallel
// CHECK:           %[[CHAINS:.*]] = memref.alloc() {alignment = 64 : i64} : memref<8x16xf32>
// CHECK:           scf.for
// CHECK:             scf.for {{.*}} iter_args({{.*}}) -> (vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>)
// CHECK:               %[[S16:.*]] = vector.load %[[S]]{{.*}} : memref<2x2x16xf16>, vector<8xf16>
// CHECK:               %[[SW:.*]] = arith.extf %[[S16]]
// CHECK:               %[[S24:.*]] = arith.mulf %[[SW]], %[[TWO24]] : vector<8xf32>
// CHECK:               %[[J0:.*]] = arith.muli %{{.*}}, %c4 : index
// CHECK:               %[[AHEAD:.*]] = arith.addi %[[J0]], %c32 : index
// CHECK-NEXT:          %[[PF:.*]] = arith.minui %[[AHEAD]], %c63 : index
// CHECK-NEXT:          memref.prefetch %[[D]][%{{.*}}, %[[PF]], %c0], read, locality<3>, data : memref<2x64x16xi8>
// CHECK-COUNT-3:       memref.prefetch %[[D]]
// CHECK:               memref.load %[[X]]
// CHECK:               %[[XS:.*]] = vector.broadcast
// CHECK:               %[[ROW:.*]] = vector.load %[[D]]{{.*}} : memref<2x64x16xi8>, vector<16xi8>
// CHECK-NEXT:          %[[HI:.*]] = vector.shuffle %[[ROW]], %{{.*}} [16, 16, 16, 0, 16, 16, 16, 1, {{.*}}, 16, 16, 16, 7] : vector<16xi8>, vector<16xi8>
// CHECK-NEXT:          %[[I:.*]] = vector.bitcast %[[HI]] : vector<32xi8> to vector<8xi32>
// CHECK-NEXT:          %[[F:.*]] = arith.sitofp %[[I]] : vector<8xi32> to vector<8xf32>
// CHECK-NEXT:          %[[W:.*]] = arith.mulf %[[F]], %[[S24]] : vector<8xf32>
// CHECK-NEXT:          vector.shuffle %[[ROW]], %{{.*}} [16, 16, 16, 8, {{.*}}, 16, 16, 16, 15] : vector<16xi8>, vector<16xi8>
// CHECK:               vector.fma %[[XS]], %[[W]]
// CHECK-NOT:           arith.extsi
// CHECK:             vector.store %{{.*}}, %[[CHAINS]]
// CHECK:             vector.load %[[CHAINS]]
// CHECK:             arith.addf
// CHECK:             vector.store %{{.*}}, %[[Y]]
// CHECK-NOT:     linalg.generic
// GEMM-LABEL: func.func @q8_panels
// GEMM:         scf.if
// GEMM:           func.call @__moe_qgemm_q8_panels_6x16(%{{.*}}, %c0, %{{.*}}, %c64, %c64, %{{.*}}, %c0, %c2, %{{.*}}, %c0, %{{.*}}, %c0, %c32)
// GEMM:         } else {
// GEMM:           scf.parallel
// GEMM:             vector.load {{.*}} : memref<2x64x16xi8>, vector<16xi8>
// GEMM:             vector.fma
// GEMM-NOT:     linalg.generic
// GEMM-LABEL: func.func private @__moe_qgemm_q8_panels_6x16
// GEMM:         %[[DV:.*]] = memref.reinterpret_cast {{.*}} : memref<i8> to memref<?x?x16xi8, strided<[?, 16, 1], offset: ?>>
// GEMM:         %[[SV:.*]] = memref.reinterpret_cast {{.*}} : memref<f16> to memref<?x?x16xf16, strided<[?, 16, 1], offset: ?>>
// GEMM:         %[[PANEL:.*]] = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x16xf32>
// GEMM-NOT:     vector.shuffle
// GEMM:         %[[S16:.*]] = vector.load %[[SV]]{{.*}} : memref<?x?x16xf16, strided<[?, 16, 1], offset: ?>>, vector<8xf16>
// GEMM:         %[[SW:.*]] = arith.extf %[[S16]] : vector<8xf16> to vector<8xf32>
// GEMM-NEXT:    %[[SC:.*]] = arith.mulf %[[SW]], %{{.*}} : vector<8xf32>
// GEMM-NOT:     vector.shuffle
// GEMM:         %[[B:.*]] = vector.load %[[DV]]{{.*}} : memref<?x?x16xi8, strided<[?, 16, 1], offset: ?>>, vector<16xi8>
// GEMM-NEXT:    %[[BH:.*]] = vector.shuffle %[[B]], %{{.*}} [16, 16, 16, 0, {{.*}}, 16, 16, 16, 7] : vector<16xi8>, vector<16xi8>
// GEMM-NEXT:    %[[BW:.*]] = vector.bitcast %[[BH]] : vector<32xi8> to vector<8xi32>
// GEMM-NEXT:    %[[BF:.*]] = arith.sitofp %[[BW]] : vector<8xi32> to vector<8xf32>
// GEMM-NEXT:    %[[V:.*]] = arith.mulf %[[BF]], %[[SC]] : vector<8xf32>
// GEMM:         vector.store %[[V]], %[[PANEL]]
// GEMM:         vector.load %[[PANEL]]
// GEMM:         vector.fma
// GEMM:         memref.dealloc %[[PANEL]]
#lhs = affine_map<(m, n, k) -> (m, k)>
#codes = affine_map<(m, n, k) -> (n floordiv 16, (k mod 8) * 8 + k floordiv 8, n mod 16)>
#scales = affine_map<(m, n, k) -> (n floordiv 16, k floordiv 32, n mod 16)>
#out = affine_map<(m, n, k) -> (m, n)>
func.func @q8_panels(%x: memref<?x64xf32>, %d: memref<2x64x16xi8>, %s: memref<2x2x16xf16>,
                     %y: memref<?x32xf32>) {
  // AVX-512's kernels read panels of 32 columns on 16 lanes: these (AVX2's) stay generic.
  // WIDE-WARN: warning: quantized weights in panel order of 16 columns on 8 lanes, but this pipeline's GEMM panel is 32 columns on 16 lanes: left to the generic loops (correct, far slower); pack the weights for this target
  // INT8-WARN: warning: q8 weights in panel order meet int8 activations, whose kernels read row-major weights: left to the generic loops (correct, far slower); pack them without panels for int8 activations
  linalg.generic {indexing_maps = [#lhs, #codes, #scales, #out], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %d, %s : memref<?x64xf32>, memref<2x64x16xi8>, memref<2x2x16xf16>) outs(%y : memref<?x32xf32>)
      attrs = {moe.quant = #moe.quant<q8, group_size = 32>, moe.panels = #moe.panels<cols = 16, lanes = 8>} {
  ^bb0(%a: f32, %q: i8, %sc: f16, %c: f32):
    %qf = arith.sitofp %q : i8 to f32
    %sf = arith.extf %sc : f16 to f32
    %w = arith.mulf %qf, %sf : f32
    %p = arith.mulf %a, %w : f32
    %r = arith.addf %c, %p : f32
    linalg.yield %r : f32
  }
  return
}
