// x[T, 4096] · W[14336, 4096]ᵀ (a Mixtral expert's w1 shape) with bf16, q8 and q4 weights, for
// tools/bench/kernels.sh: T = 1 is the decode GEMV, T = 128 a prefill GEMM tile.
module {
  func.func @linear_bf16(%x: memref<128x4096xf32>, %w: memref<14336x4096xbf16>, %n: index,
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
  func.func @linear_q8(%x: memref<128x4096xf32>, %w: memref<14336x4096xi8>, %s: memref<14336x128xf16>, %n: index,
                   %out: memref<128x14336xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<128x4096xf32> to tensor<128x4096xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 4096] [1, 1] : tensor<128x4096xf32> to tensor<?x4096xf32>
    %wt = bufferization.to_tensor %w restrict : memref<14336x4096xi8> to tensor<14336x4096xi8>
    %st = bufferization.to_tensor %s restrict : memref<14336x128xf16> to tensor<14336x128xf16>
    %y = moe.linear %xs, %wt scales %st {quant = #moe.quant<q8, group_size = 32>} : (tensor<?x4096xf32>, tensor<14336x4096xi8>, tensor<14336x128xf16>) -> tensor<?x14336xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<128x14336xf32> to tensor<128x14336xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 14336] [1, 1] : tensor<?x14336xf32> into tensor<128x14336xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<128x14336xf32>, memref<128x14336xf32>) -> ()
    return
  }
  func.func @linear_q4(%x: memref<128x4096xf32>, %w: memref<14336x2048xi8>, %s: memref<14336x128xf16>, %n: index,
                   %out: memref<128x14336xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<128x4096xf32> to tensor<128x4096xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 4096] [1, 1] : tensor<128x4096xf32> to tensor<?x4096xf32>
    %wt = bufferization.to_tensor %w restrict : memref<14336x2048xi8> to tensor<14336x2048xi8>
    %st = bufferization.to_tensor %s restrict : memref<14336x128xf16> to tensor<14336x128xf16>
    %y = moe.linear %xs, %wt scales %st {quant = #moe.quant<q4, group_size = 32>} : (tensor<?x4096xf32>, tensor<14336x2048xi8>, tensor<14336x128xf16>) -> tensor<?x14336xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<128x14336xf32> to tensor<128x14336xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 14336] [1, 1] : tensor<?x14336xf32> into tensor<128x14336xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<128x14336xf32>, memref<128x14336xf32>) -> ()
    return
  }
}
