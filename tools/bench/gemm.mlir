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
  // The same with W in panel order (#moe.panels<cols = 16, lanes = 8>, AVX2's GEMM panel:
  // what `mixtral-compile --pack` stores): Wp[p, l * 512 + j, r] = W[16 p + r, l + 8 j].
  func.func @w1_bf16_panels(%x: memref<128x4096xf32>, %w: memref<896x4096x16xbf16>, %n: index,
                   %out: memref<128x14336xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<128x4096xf32> to tensor<128x4096xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 4096] [1, 1] : tensor<128x4096xf32> to tensor<?x4096xf32>
    %wt = bufferization.to_tensor %w restrict : memref<896x4096x16xbf16> to tensor<896x4096x16xbf16>
    %zero = arith.constant 0.0 : f32
    %e = tensor.empty(%n) : tensor<?x14336xf32>
    %acc = linalg.fill ins(%zero : f32) outs(%e : tensor<?x14336xf32>) -> tensor<?x14336xf32>
    %y = linalg.generic {indexing_maps = [affine_map<(m, n, k) -> (m, k)>,
        affine_map<(m, n, k) -> (n floordiv 16, (k mod 8) * 512 + k floordiv 8, n mod 16)>,
        affine_map<(m, n, k) -> (m, n)>], iterator_types = ["parallel", "parallel", "reduction"]}
        ins(%xs, %wt : tensor<?x4096xf32>, tensor<896x4096x16xbf16>) outs(%acc : tensor<?x14336xf32>)
        attrs = {moe.panels = #moe.panels<cols = 16, lanes = 8>} {
    ^bb0(%a: f32, %b: bf16, %c: f32):
      %bw = arith.extf %b : bf16 to f32
      %p = arith.mulf %a, %bw : f32
      %s = arith.addf %c, %p : f32
      linalg.yield %s : f32
    } -> tensor<?x14336xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<128x14336xf32> to tensor<128x14336xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 14336] [1, 1] : tensor<?x14336xf32> into tensor<128x14336xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<128x14336xf32>, memref<128x14336xf32>) -> ()
    return
  }
  // The same with W in panel order (#moe.panels<cols = 16, lanes = 8>, AVX2's GEMM panel:
  // what `mixtral-compile --pack` stores): Wp[p, l * 1792 + j, r] = W[16 p + r, l + 8 j].
  func.func @w2_bf16_panels(%x: memref<128x14336xf32>, %w: memref<256x14336x16xbf16>, %n: index,
                   %out: memref<128x4096xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<128x14336xf32> to tensor<128x14336xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 14336] [1, 1] : tensor<128x14336xf32> to tensor<?x14336xf32>
    %wt = bufferization.to_tensor %w restrict : memref<256x14336x16xbf16> to tensor<256x14336x16xbf16>
    %zero = arith.constant 0.0 : f32
    %e = tensor.empty(%n) : tensor<?x4096xf32>
    %acc = linalg.fill ins(%zero : f32) outs(%e : tensor<?x4096xf32>) -> tensor<?x4096xf32>
    %y = linalg.generic {indexing_maps = [affine_map<(m, n, k) -> (m, k)>,
        affine_map<(m, n, k) -> (n floordiv 16, (k mod 8) * 1792 + k floordiv 8, n mod 16)>,
        affine_map<(m, n, k) -> (m, n)>], iterator_types = ["parallel", "parallel", "reduction"]}
        ins(%xs, %wt : tensor<?x14336xf32>, tensor<256x14336x16xbf16>) outs(%acc : tensor<?x4096xf32>)
        attrs = {moe.panels = #moe.panels<cols = 16, lanes = 8>} {
    ^bb0(%a: f32, %b: bf16, %c: f32):
      %bw = arith.extf %b : bf16 to f32
      %p = arith.mulf %a, %bw : f32
      %s = arith.addf %c, %p : f32
      linalg.yield %s : f32
    } -> tensor<?x4096xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<128x4096xf32> to tensor<128x4096xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 4096] [1, 1] : tensor<?x4096xf32> into tensor<128x4096xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<128x4096xf32>, memref<128x4096xf32>) -> ()
    return
  }
}
