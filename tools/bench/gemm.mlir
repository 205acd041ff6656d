// The Mixtral expert GEMM shapes for tools/bench/gemm.sh: x[T, K] · W[N, K]ᵀ with T up to 128
// rows (a 128-token prefill's expert gets 32 on average; a dense projection all 128), w1/w3
// (K 4096, N 14336) and w2 (K 14336, N 4096), with bf16 weights (the model's) and f32 ones
// (the same data type as OpenBLAS's sgemm, which the benchmark runs beside them).
module {
  func.func @w1_bf16(%x: memref<128x4096xf32>, %w: memref<14336x4096xbf16>, %n: index,
                   %out: memref<128x14336xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<128x4096xf32> to tensor<128x4096xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 4096] [1, 1] : tensor<128x4096xf32> to tensor<?x4096xf32>
    %wt = bufferization.to_tensor %w restrict : memref<14336x4096xbf16> to tensor<14336x4096xbf16>
    %y = moe.linear %xs, %wt : (tensor<?x4096xf32>, tensor<14336x4096xbf16>) -> tensor<?x14336xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<128x14336xf32> to tensor<128x14336xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 14336] [1, 1] : tensor<?x14336xf32> into tensor<128x14336xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<128x14336xf32>, memref<128x14336xf32>) -> ()
    return
  }
  func.func @w1_f32(%x: memref<128x4096xf32>, %w: memref<14336x4096xf32>, %n: index,
                   %out: memref<128x14336xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<128x4096xf32> to tensor<128x4096xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 4096] [1, 1] : tensor<128x4096xf32> to tensor<?x4096xf32>
    %wt = bufferization.to_tensor %w restrict : memref<14336x4096xf32> to tensor<14336x4096xf32>
    %y = moe.linear %xs, %wt : (tensor<?x4096xf32>, tensor<14336x4096xf32>) -> tensor<?x14336xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<128x14336xf32> to tensor<128x14336xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 14336] [1, 1] : tensor<?x14336xf32> into tensor<128x14336xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<128x14336xf32>, memref<128x14336xf32>) -> ()
    return
  }
  func.func @w2_bf16(%x: memref<128x14336xf32>, %w: memref<4096x14336xbf16>, %n: index,
                   %out: memref<128x4096xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<128x14336xf32> to tensor<128x14336xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 14336] [1, 1] : tensor<128x14336xf32> to tensor<?x14336xf32>
    %wt = bufferization.to_tensor %w restrict : memref<4096x14336xbf16> to tensor<4096x14336xbf16>
    %y = moe.linear %xs, %wt : (tensor<?x14336xf32>, tensor<4096x14336xbf16>) -> tensor<?x4096xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<128x4096xf32> to tensor<128x4096xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 4096] [1, 1] : tensor<?x4096xf32> into tensor<128x4096xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<128x4096xf32>, memref<128x4096xf32>) -> ()
    return
  }
  func.func @w2_f32(%x: memref<128x14336xf32>, %w: memref<4096x14336xf32>, %n: index,
                   %out: memref<128x4096xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<128x14336xf32> to tensor<128x14336xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 14336] [1, 1] : tensor<128x14336xf32> to tensor<?x14336xf32>
    %wt = bufferization.to_tensor %w restrict : memref<4096x14336xf32> to tensor<4096x14336xf32>
    %y = moe.linear %xs, %wt : (tensor<?x14336xf32>, tensor<4096x14336xf32>) -> tensor<?x4096xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<128x4096xf32> to tensor<128x4096xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 4096] [1, 1] : tensor<?x4096xf32> into tensor<128x4096xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<128x4096xf32>, memref<128x4096xf32>) -> ()
    return
  }
}
