// Bare-pointer entry points around moe.linear and moe.grouped_matmul with shapes the packed
// GEMM of moe-cpu-vectorize-matmul takes (K a multiple of 16, N of 32, so the AVX2 and the
// AVX-512 microkernels both apply), compiled by cpu-gemm-numeric*.mlir and checked by
// gemm-harness.cpp. Buffers have room for 64 rows; %n is the row count (dynamic M).
module {
  // out[T, 96] = x · wᵀ with bf16 weights, K = 256.
  func.func @linear_bf16(%x: memref<64x256xf32>, %w: memref<96x256xbf16>, %n: index,
                         %out: memref<64x96xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<64x256xf32> to tensor<64x256xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 256] [1, 1] : tensor<64x256xf32> to tensor<?x256xf32>
    %wt = bufferization.to_tensor %w restrict : memref<96x256xbf16> to tensor<96x256xbf16>
    %y = moe.linear %xs, %wt : (tensor<?x256xf32>, tensor<96x256xbf16>) -> tensor<?x96xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<64x96xf32> to tensor<64x96xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 96] [1, 1] : tensor<?x96xf32> into tensor<64x96xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<64x96xf32>, memref<64x96xf32>) -> ()
    return
  }

  // out[T, 64] = x · wᵀ with f32 weights, K = 80.
  func.func @linear_f32(%x: memref<64x80xf32>, %w: memref<64x80xf32>, %n: index,
                        %out: memref<64x64xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<64x80xf32> to tensor<64x80xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 80] [1, 1] : tensor<64x80xf32> to tensor<?x80xf32>
    %wt = bufferization.to_tensor %w restrict : memref<64x80xf32> to tensor<64x80xf32>
    %y = moe.linear %xs, %wt : (tensor<?x80xf32>, tensor<64x80xf32>) -> tensor<?x64xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<64x64xf32> to tensor<64x64xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 64] [1, 1] : tensor<?x64xf32> into tensor<64x64xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<64x64xf32>, memref<64x64xf32>) -> ()
    return
  }

  // out[T, 32] = x · wᵀ with f16 weights, K = 48.
  func.func @linear_f16(%x: memref<64x48xf32>, %w: memref<32x48xf16>, %n: index,
                        %out: memref<64x32xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<64x48xf32> to tensor<64x48xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 48] [1, 1] : tensor<64x48xf32> to tensor<?x48xf32>
    %wt = bufferization.to_tensor %w restrict : memref<32x48xf16> to tensor<32x48xf16>
    %y = moe.linear %xs, %wt : (tensor<?x48xf32>, tensor<32x48xf16>) -> tensor<?x32xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<64x32xf32> to tensor<64x32xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 32] [1, 1] : tensor<?x32xf32> into tensor<64x32xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<64x32xf32>, memref<64x32xf32>) -> ()
    return
  }

  // Expert-grouped rows (offsets[5]) times 4 bf16 experts [32, 128].
  func.func @grouped_bf16(%rows: memref<64x128xf32>, %w: memref<4x32x128xbf16>,
                          %offsets: memref<5xi32>, %n: index, %out: memref<64x32xf32>) {
    %rt = bufferization.to_tensor %rows restrict : memref<64x128xf32> to tensor<64x128xf32>
    %rs = tensor.extract_slice %rt[0, 0] [%n, 128] [1, 1] : tensor<64x128xf32> to tensor<?x128xf32>
    %wt = bufferization.to_tensor %w restrict : memref<4x32x128xbf16> to tensor<4x32x128xbf16>
    %ot = bufferization.to_tensor %offsets restrict : memref<5xi32> to tensor<5xi32>
    %y = moe.grouped_matmul %rs, %wt, %ot : (tensor<?x128xf32>, tensor<4x32x128xbf16>, tensor<5xi32>) -> tensor<?x32xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<64x32xf32> to tensor<64x32xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 32] [1, 1] : tensor<?x32xf32> into tensor<64x32xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<64x32xf32>, memref<64x32xf32>) -> ()
    return
  }

  // The same experts with the weights' bytes in panel order (#moe.panels: what
  // `mixtral-compile --pack` stores, marked on the arena view as the model builder does):
  // element [e, p, l * 16 + j, r] of the bytes is w[e, 16 p + r, l + 8 j].
  func.func @grouped_bf16_panels(%rows: memref<64x128xf32>, %bytes: memref<32768xi8>,
                                 %offsets: memref<5xi32>, %n: index, %out: memref<64x32xf32>) {
    %c0 = arith.constant 0 : index
    %w = memref.view %bytes[%c0][] {moe.panels = #moe.panels<cols = 16, lanes = 8>}
        : memref<32768xi8> to memref<4x32x128xbf16>
    %rt = bufferization.to_tensor %rows restrict : memref<64x128xf32> to tensor<64x128xf32>
    %rs = tensor.extract_slice %rt[0, 0] [%n, 128] [1, 1] : tensor<64x128xf32> to tensor<?x128xf32>
    %wt = bufferization.to_tensor %w restrict : memref<4x32x128xbf16> to tensor<4x32x128xbf16>
    %ot = bufferization.to_tensor %offsets restrict : memref<5xi32> to tensor<5xi32>
    %y = moe.grouped_matmul %rs, %wt, %ot : (tensor<?x128xf32>, tensor<4x32x128xbf16>, tensor<5xi32>) -> tensor<?x32xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<64x32xf32> to tensor<64x32xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 32] [1, 1] : tensor<?x32xf32> into tensor<64x32xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<64x32xf32>, memref<64x32xf32>) -> ()
    return
  }

  // moe.grouped_swiglu (k = 1, rows[r] = x[perm[r]]) over 4 bf16 experts w1, w3 [32, 128]:
  // per expert the gate and up GEMMs and SwiGLU (unfused: row-major weights take
  // linalg.matmul).
  func.func @grouped_swiglu_bf16(%x: memref<64x128xf32>, %perm: memref<64xi32>,
                                 %w1: memref<4x32x128xbf16>, %w3: memref<4x32x128xbf16>,
                                 %offsets: memref<5xi32>, %n: index, %out: memref<64x32xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<64x128xf32> to tensor<64x128xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 128] [1, 1] : tensor<64x128xf32> to tensor<?x128xf32>
    %pt = bufferization.to_tensor %perm restrict : memref<64xi32> to tensor<64xi32>
    %ps = tensor.extract_slice %pt[0] [%n] [1] : tensor<64xi32> to tensor<?xi32>
    %w1t = bufferization.to_tensor %w1 restrict : memref<4x32x128xbf16> to tensor<4x32x128xbf16>
    %w3t = bufferization.to_tensor %w3 restrict : memref<4x32x128xbf16> to tensor<4x32x128xbf16>
    %ot = bufferization.to_tensor %offsets restrict : memref<5xi32> to tensor<5xi32>
    %y = moe.grouped_swiglu %xs, %ps, %ot, %w1t, %w3t {k = 1 : i64} : (tensor<?x128xf32>, tensor<?xi32>, tensor<5xi32>, tensor<4x32x128xbf16>, tensor<4x32x128xbf16>) -> tensor<?x32xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<64x32xf32> to tensor<64x32xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 32] [1, 1] : tensor<?x32xf32> into tensor<64x32xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<64x32xf32>, memref<64x32xf32>) -> ()
    return
  }

  // The same with w1 and w3 in panel order: for rows >= gemm-min-rows one GEMM reads both
  // and computes SwiGLU in its epilogue (moe-cpu-vectorize-matmul's pair GEMM).
  func.func @grouped_swiglu_bf16_panels(%x: memref<64x128xf32>, %perm: memref<64xi32>,
                                        %w1bytes: memref<32768xi8>, %w3bytes: memref<32768xi8>,
                                        %offsets: memref<5xi32>, %n: index,
                                        %out: memref<64x32xf32>) {
    %c0 = arith.constant 0 : index
    %w1 = memref.view %w1bytes[%c0][] {moe.panels = #moe.panels<cols = 16, lanes = 8>}
        : memref<32768xi8> to memref<4x32x128xbf16>
    %w3 = memref.view %w3bytes[%c0][] {moe.panels = #moe.panels<cols = 16, lanes = 8>}
        : memref<32768xi8> to memref<4x32x128xbf16>
    %xt = bufferization.to_tensor %x restrict : memref<64x128xf32> to tensor<64x128xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 128] [1, 1] : tensor<64x128xf32> to tensor<?x128xf32>
    %pt = bufferization.to_tensor %perm restrict : memref<64xi32> to tensor<64xi32>
    %ps = tensor.extract_slice %pt[0] [%n] [1] : tensor<64xi32> to tensor<?xi32>
    %w1t = bufferization.to_tensor %w1 restrict : memref<4x32x128xbf16> to tensor<4x32x128xbf16>
    %w3t = bufferization.to_tensor %w3 restrict : memref<4x32x128xbf16> to tensor<4x32x128xbf16>
    %ot = bufferization.to_tensor %offsets restrict : memref<5xi32> to tensor<5xi32>
    %y = moe.grouped_swiglu %xs, %ps, %ot, %w1t, %w3t {k = 1 : i64} : (tensor<?x128xf32>, tensor<?xi32>, tensor<5xi32>, tensor<4x32x128xbf16>, tensor<4x32x128xbf16>) -> tensor<?x32xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<64x32xf32> to tensor<64x32xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 32] [1, 1] : tensor<?x32xf32> into tensor<64x32xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<64x32xf32>, memref<64x32xf32>) -> ()
    return
  }
}
