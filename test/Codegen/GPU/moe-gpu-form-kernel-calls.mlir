// RUN: moe-opt %s -split-input-file -moe-gpu-form-kernel-calls="attention-split=32" | FileCheck %s
// RUN: moe-opt %s -split-input-file -moe-gpu-form-kernel-calls="attention-split=32" -one-shot-bufferize -canonicalize | FileCheck %s --check-prefix=BUF
// Every moe op at a GPU kernel boundary becomes a destination-style moe.kernel_call, with an
// output per result and per scratch buffer; then upstream one-shot-bufferize places every
// buffer the kernels write (BUF): a memref.alloc per output, none for the pool updated in
// place, a copy only where a result goes to the caller's buffer.

// CHECK-LABEL: func.func @prefill
// CHECK:         %[[X:.*]] = tensor.extract_slice
// CHECK:         %[[E:.*]] = tensor.empty(%{{.*}}) : tensor<?x64xf32>
// CHECK-NEXT:    %[[Y:.*]] = moe.kernel_call "rms_norm" ins(%[[X]], %{{.*}} : tensor<?x64xf32>, tensor<64xbf16>) outs(%[[E]] : tensor<?x64xf32>) params {epsilon = 1.000000e-05 : f64} -> tensor<?x64xf32>
// CHECK:         %[[E2:.*]] = tensor.empty(%{{.*}}) : tensor<?x32xf32>
// CHECK-NEXT:    %[[Z:.*]] = moe.kernel_call "linear" ins(%[[Y]], %{{.*}} : tensor<?x64xf32>, tensor<32x64xbf16>) outs(%[[E2]] : tensor<?x32xf32>) -> tensor<?x32xf32>
// CHECK:         tensor.insert_slice %[[Z]]
// BUF-LABEL:   func.func @prefill
// BUF:           %[[X:.*]] = memref.subview
// BUF:           %[[A:.*]] = memref.alloc(%{{.*}}) {{.*}} : memref<?x64xf32>
// BUF-NEXT:      moe.kernel_call "rms_norm" ins(%[[X]], %{{.*}} : memref<?x64xf32, strided<[64, 1]>>, memref<64xbf16>) outs(%[[A]] : memref<?x64xf32>)
// BUF:           %[[B:.*]] = memref.alloc(%{{.*}}) {{.*}} : memref<?x32xf32>
// BUF-NEXT:      moe.kernel_call "linear" ins(%[[A]], %{{.*}} : memref<?x64xf32>, memref<32x64xbf16>) outs(%[[B]] : memref<?x32xf32>)
// BUF:           %[[W:.*]] = memref.subview %{{.*}}[0, 0] [%{{.*}}, 32] [1, 1]
// BUF-NEXT:      memref.copy %[[B]], %[[W]]
func.func @prefill(%w: memref<4096xi8>, %xin: memref<64x64xf32>, %n: index, %out: memref<64x32xf32>) {
  %c0 = arith.constant 0 : index
  %c256 = arith.constant 256 : index
  %vn = memref.view %w[%c0][] : memref<4096xi8> to memref<64xbf16>
  %vw = memref.view %w[%c256][] : memref<4096xi8> to memref<32x64xbf16>
  %nw = bufferization.to_tensor %vn restrict : memref<64xbf16> to tensor<64xbf16>
  %lw = bufferization.to_tensor %vw restrict : memref<32x64xbf16> to tensor<32x64xbf16>
  %all = bufferization.to_tensor %xin restrict : memref<64x64xf32> to tensor<64x64xf32>
  %x = tensor.extract_slice %all[0, 0] [%n, 64] [1, 1] : tensor<64x64xf32> to tensor<?x64xf32>
  %y = moe.rms_norm %x, %nw {epsilon = 1.0e-05 : f64} : (tensor<?x64xf32>, tensor<64xbf16>) -> tensor<?x64xf32>
  %z = moe.linear %y, %lw : (tensor<?x64xf32>, tensor<32x64xbf16>) -> tensor<?x32xf32>
  %o = bufferization.to_tensor %out restrict writable : memref<64x32xf32> to tensor<64x32xf32>
  %r = tensor.insert_slice %z into %o[0, 0] [%n, 32] [1, 1] : tensor<?x32xf32> into tensor<64x32xf32>
  bufferization.materialize_in_destination %r in restrict writable %out : (tensor<64x32xf32>, memref<64x32xf32>) -> ()
  return
}

// -----

// The fused MoE block: dispatch writes the inverse permutation as a third output, which the
// combine reads as its last input; the combine's grouped rows [R, D] are its scratch output.
// CHECK-LABEL: func.func @decode
// CHECK:         %[[L:.*]] = moe.kernel_call "router" ins(%{{.*}}, %{{.*}} : tensor<1x64xf32>, tensor<4x64xbf16>) outs(%{{.*}} : tensor<1x4xf32>) -> tensor<1x4xf32>
// CHECK:         %[[G:.*]]:2 = moe.kernel_call "top_k_gating" ins(%[[L]] : tensor<1x4xf32>) outs(%{{.*}}, %{{.*}} : tensor<1x2xf32>, tensor<1x2xi32>) params {k = 2 : i64} -> tensor<1x2xf32>, tensor<1x2xi32>
// CHECK:         %[[D:.*]]:3 = moe.kernel_call "dispatch" ins(%[[G]]#1 : tensor<1x2xi32>) outs(%{{.*}}, %{{.*}}, %{{.*}} : tensor<2xi32>, tensor<5xi32>, tensor<2xi32>) params {num_experts = 4 : i64} -> tensor<2xi32>, tensor<5xi32>, tensor<2xi32>
// CHECK:         %[[H:.*]] = moe.kernel_call "grouped_swiglu" ins(%{{.*}}, %[[D]]#0, %[[D]]#1, %{{.*}}, %{{.*}} : {{.*}}) outs(%{{.*}} : tensor<2x32xf32>) params {k = 2 : i64} -> tensor<2x32xf32>
// CHECK:         %[[Y:.*]]:2 = moe.kernel_call "grouped_matmul_combine" ins(%[[H]], %{{.*}}, %[[D]]#1, %[[D]]#0, %[[G]]#0, %[[D]]#2 : {{.*}}) outs(%{{.*}}, %{{.*}} : tensor<1x64xf32>, tensor<2x64xf32>) -> tensor<1x64xf32>, tensor<2x64xf32>
// CHECK:         bufferization.materialize_in_destination %[[Y]]#0
// BUF-LABEL:   func.func @decode
// BUF-COUNT-9:   memref.alloc()
// BUF-NOT:       memref.alloc
// BUF:           moe.kernel_call "grouped_matmul_combine" {{.*}} outs(%[[Y:.*]], %{{.*}} : memref<1x64xf32>, memref<2x64xf32>)
// BUF-NEXT:      memref.copy %[[Y]], %{{.*}} : memref<1x64xf32> to memref<1x64xf32>
func.func @decode(%w: memref<65536xi8>, %xin: memref<1x64xf32>, %out: memref<1x64xf32>) {
  %c0 = arith.constant 0 : index
  %c1024 = arith.constant 1024 : index
  %c16384 = arith.constant 16384 : index
  %c32768 = arith.constant 32768 : index
  %g = memref.view %w[%c0][] : memref<65536xi8> to memref<4x64xbf16>
  %w1 = memref.view %w[%c1024][] : memref<65536xi8> to memref<4x32x64xbf16>
  %w3 = memref.view %w[%c16384][] : memref<65536xi8> to memref<4x32x64xbf16>
  %w2 = memref.view %w[%c32768][] : memref<65536xi8> to memref<4x64x32xbf16>
  %gt = bufferization.to_tensor %g restrict : memref<4x64xbf16> to tensor<4x64xbf16>
  %w1t = bufferization.to_tensor %w1 restrict : memref<4x32x64xbf16> to tensor<4x32x64xbf16>
  %w3t = bufferization.to_tensor %w3 restrict : memref<4x32x64xbf16> to tensor<4x32x64xbf16>
  %w2t = bufferization.to_tensor %w2 restrict : memref<4x64x32xbf16> to tensor<4x64x32xbf16>
  %x = bufferization.to_tensor %xin restrict : memref<1x64xf32> to tensor<1x64xf32>
  %logits = moe.router %x, %gt : (tensor<1x64xf32>, tensor<4x64xbf16>) -> tensor<1x4xf32>
  %weights, %ids = moe.top_k_gating %logits {k = 2 : i64} : (tensor<1x4xf32>) -> (tensor<1x2xf32>, tensor<1x2xi32>)
  %perm, %offsets = moe.dispatch %ids {num_experts = 4 : i64} : (tensor<1x2xi32>) -> (tensor<2xi32>, tensor<5xi32>)
  %h = moe.grouped_swiglu %x, %perm, %offsets, %w1t, %w3t {k = 2 : i64}
      : (tensor<1x64xf32>, tensor<2xi32>, tensor<5xi32>, tensor<4x32x64xbf16>, tensor<4x32x64xbf16>) -> tensor<2x32xf32>
  %y = moe.grouped_matmul_combine %h, %w2t, %offsets, %perm, %weights
      : (tensor<2x32xf32>, tensor<4x64x32xbf16>, tensor<5xi32>, tensor<2xi32>, tensor<1x2xf32>) -> tensor<1x64xf32>
  bufferization.materialize_in_destination %y in restrict writable %out : (tensor<1x64xf32>, memref<1x64xf32>) -> ()
  return
}

// -----

// Decode attention: the split-KV partials are sized for the whole cache at compile time
// (ceil(128 / 32) splits * 1 token * 4 heads rows of HD + 2), and the call records its split.
// CHECK-LABEL: func.func @attention_decode
// CHECK:         %[[P:.*]] = tensor.empty() : tensor<16x18xf32>
// CHECK-NEXT:    moe.kernel_call "attention" ins({{.*}} : tensor<1x4x16xf32>, tensor<128x2x16xf32>, tensor<128x2x16xf32>, index) outs(%{{.*}}, %[[P]] : tensor<1x4x16xf32>, tensor<16x18xf32>) params {scale = 2.500000e-01 : f64, split = 32 : i64}
// BUF-LABEL:   func.func @attention_decode
// BUF:           memref.alloc() {{.*}} : memref<16x18xf32>
func.func @attention_decode(%qm: memref<1x4x16xf32>, %km: memref<128x2x16xf32>, %vm: memref<128x2x16xf32>, %start: index, %out: memref<1x4x16xf32>) {
  %q = bufferization.to_tensor %qm restrict : memref<1x4x16xf32> to tensor<1x4x16xf32>
  %k = bufferization.to_tensor %km restrict : memref<128x2x16xf32> to tensor<128x2x16xf32>
  %v = bufferization.to_tensor %vm restrict : memref<128x2x16xf32> to tensor<128x2x16xf32>
  %o = moe.attention %q, %k, %v, %start {scale = 0.25 : f64} : (tensor<1x4x16xf32>, tensor<128x2x16xf32>, tensor<128x2x16xf32>, index) -> tensor<1x4x16xf32>
  bufferization.materialize_in_destination %o in restrict writable %out : (tensor<1x4x16xf32>, memref<1x4x16xf32>) -> ()
  return
}

// -----

// Prefill attention: one split over the whole cache, partials [T * H, HD + 2].
// CHECK-LABEL: func.func @attention_prefill
// CHECK:         %[[T:.*]] = tensor.dim %{{.*}}, %{{.*}} : tensor<?x4x16xf32>
// CHECK:         %[[R:.*]] = arith.muli %[[T]], %{{.*}} : index
// CHECK-NEXT:    %[[P:.*]] = tensor.empty(%[[R]]) : tensor<?x18xf32>
// CHECK-NEXT:    moe.kernel_call "attention" {{.*}} outs(%{{.*}}, %[[P]] : tensor<?x4x16xf32>, tensor<?x18xf32>) params {scale = 2.500000e-01 : f64, split = 128 : i64}
func.func @attention_prefill(%q: tensor<?x4x16xf32>, %k: tensor<128x2x16xf32>, %v: tensor<128x2x16xf32>, %start: index) -> tensor<?x4x16xf32> {
  %o = moe.attention %q, %k, %v, %start {scale = 0.25 : f64} : (tensor<?x4x16xf32>, tensor<128x2x16xf32>, tensor<128x2x16xf32>, index) -> tensor<?x4x16xf32>
  return %o : tensor<?x4x16xf32>
}

// -----

// The step: the paged KV write's output is the pool itself, which bufferizes in place into
// the caller's pool (no allocation and no copy back for it).
// CHECK-LABEL: func.func @step
// CHECK:         %[[Q:.*]] = moe.kernel_call "rope_at"
// CHECK:         %[[K:.*]] = moe.kernel_call "rope_at"
// CHECK:         %[[KP:.*]] = moe.kernel_call "paged_kv_write" ins(%[[K]], %{{.*}}, %{{.*}} : tensor<8x2x16xf32>, tensor<8x4xi32>, tensor<8xi32>) outs(%{{.*}} : tensor<4x16x2x16xf32>) -> tensor<4x16x2x16xf32>
// CHECK:         moe.kernel_call "paged_attention" ins(%[[Q]], %[[KP]], %[[KP]], {{.*}}) {{.*}} params {scale = 2.500000e-01 : f64}
// BUF-LABEL:   func.func @step
// BUF-SAME:      %[[POOL:[^:]*]]: memref<4x16x2x16xf32>
// BUF:           moe.kernel_call "paged_kv_write" {{.*}} outs(%[[POOL]] : memref<4x16x2x16xf32>)
// BUF-NEXT:      %[[O:.*]] = memref.alloc() {{.*}} : memref<8x4x16xf32>
// BUF-NEXT:      moe.kernel_call "paged_attention" ins(%{{.*}}, %[[POOL]], %[[POOL]], {{.*}}) outs(%[[O]] : memref<8x4x16xf32>)
// BUF-NEXT:      memref.copy %[[O]]
// BUF-NEXT:      return
func.func @step(%qm: memref<8x4x16xf32>, %km: memref<8x2x16xf32>, %pool: memref<4x16x2x16xf32>, %tm: memref<8x4xi32>, %pm: memref<8xi32>, %out: memref<8x4x16xf32>) {
  %q0 = bufferization.to_tensor %qm restrict : memref<8x4x16xf32> to tensor<8x4x16xf32>
  %k0 = bufferization.to_tensor %km restrict : memref<8x2x16xf32> to tensor<8x2x16xf32>
  %kp = bufferization.to_tensor %pool restrict writable : memref<4x16x2x16xf32> to tensor<4x16x2x16xf32>
  %tbl = bufferization.to_tensor %tm restrict : memref<8x4xi32> to tensor<8x4xi32>
  %pos = bufferization.to_tensor %pm restrict : memref<8xi32> to tensor<8xi32>
  %q = moe.rope_at %q0, %pos {theta = 1.0e+06 : f64} : (tensor<8x4x16xf32>, tensor<8xi32>) -> tensor<8x4x16xf32>
  %k = moe.rope_at %k0, %pos {theta = 1.0e+06 : f64} : (tensor<8x2x16xf32>, tensor<8xi32>) -> tensor<8x2x16xf32>
  %kp2 = moe.paged_kv_write %k, %kp, %tbl, %pos : (tensor<8x2x16xf32>, tensor<4x16x2x16xf32>, tensor<8x4xi32>, tensor<8xi32>) -> tensor<4x16x2x16xf32>
  %o = moe.paged_attention %q, %kp2, %kp2, %tbl, %pos {scale = 2.5e-01 : f64} : (tensor<8x4x16xf32>, tensor<4x16x2x16xf32>, tensor<4x16x2x16xf32>, tensor<8x4xi32>, tensor<8xi32>) -> tensor<8x4x16xf32>
  bufferization.materialize_in_destination %o in restrict writable %out : (tensor<8x4x16xf32>, memref<8x4x16xf32>) -> ()
  bufferization.materialize_in_destination %kp2 in restrict writable %pool : (tensor<4x16x2x16xf32>, memref<4x16x2x16xf32>) -> ()
  return
}
