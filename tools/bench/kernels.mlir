// x[T, 4096] · W[14336, 4096]ᵀ (a Mixtral expert's w1 shape) with bf16 (row-major and in
// panel order), q8 (row-major and in panel order) and q4 weights, for tools/bench/kernels.sh: T = 1 is the decode GEMV,
// T > 1 (128 unless --rows) a prefill GEMM.
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
  // bf16 in panel order (#moe.panels<cols = 16, lanes = 8>, AVX2's GEMM panel), as
  // `mixtral-compile` lays out the experts' bf16 weights (`--pack`, or at load): the GEMM
  // and the panel GEMV read it in place, what a bf16 model runs since session 14.
  func.func @linear_bf16_panels(%x: memref<128x4096xf32>, %w: memref<896x4096x16xbf16>, %n: index,
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
  // q8 in panel order (data [896, 4096, 16], scales [896, 128, 16]; #moe.panels<cols = 16,
  // lanes = 8>, AVX2's GEMM panel), as `mixtral-compile --quantize q8` lays out the experts
  // for a CPU: the GEMM dequantises each stored panel without transposes, the panel GEMV
  // reads it as stored (moe-cpu-vectorize-quant-matmul).
  func.func @linear_q8_panels(%x: memref<128x4096xf32>, %w: memref<896x4096x16xi8>, %s: memref<896x128x16xf16>,
                   %n: index, %out: memref<128x14336xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<128x4096xf32> to tensor<128x4096xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 4096] [1, 1] : tensor<128x4096xf32> to tensor<?x4096xf32>
    %wt = bufferization.to_tensor %w restrict : memref<896x4096x16xi8> to tensor<896x4096x16xi8>
    %st = bufferization.to_tensor %s restrict : memref<896x128x16xf16> to tensor<896x128x16xf16>
    %zero = arith.constant 0.0 : f32
    %e = tensor.empty(%n) : tensor<?x14336xf32>
    %acc = linalg.fill ins(%zero : f32) outs(%e : tensor<?x14336xf32>) -> tensor<?x14336xf32>
    %y = linalg.generic {indexing_maps = [affine_map<(m, n, k) -> (m, k)>,
        affine_map<(m, n, k) -> (n floordiv 16, (k mod 8) * 512 + k floordiv 8, n mod 16)>,
        affine_map<(m, n, k) -> (n floordiv 16, k floordiv 32, n mod 16)>,
        affine_map<(m, n, k) -> (m, n)>], iterator_types = ["parallel", "parallel", "reduction"]}
        ins(%xs, %wt, %st : tensor<?x4096xf32>, tensor<896x4096x16xi8>, tensor<896x128x16xf16>)
        outs(%acc : tensor<?x14336xf32>)
        attrs = {moe.quant = #moe.quant<q8, group_size = 32>, moe.panels = #moe.panels<cols = 16, lanes = 8>} {
    ^bb0(%a: f32, %q: i8, %sc: f16, %c: f32):
      %qf = arith.sitofp %q : i8 to f32
      %sf = arith.extf %sc : f16 to f32
      %w8 = arith.mulf %qf, %sf : f32
      %p = arith.mulf %a, %w8 : f32
      %r = arith.addf %c, %p : f32
      linalg.yield %r : f32
    } -> tensor<?x14336xf32>
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
  // Row-major bf16 GEMVs of the other shapes a decode token reads (kernels.sh --decode):
  // an attention projection (wq / wo, [4096, 4096]) and the lm_head ([32000, 4096]).
  func.func @linear_bf16_attn(%x: memref<128x4096xf32>, %w: memref<4096x4096xbf16>, %n: index,
                   %out: memref<128x4096xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<128x4096xf32> to tensor<128x4096xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 4096] [1, 1] : tensor<128x4096xf32> to tensor<?x4096xf32>
    %wt = bufferization.to_tensor %w restrict : memref<4096x4096xbf16> to tensor<4096x4096xbf16>
    %y = moe.linear %xs, %wt : (tensor<?x4096xf32>, tensor<4096x4096xbf16>) -> tensor<?x4096xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<128x4096xf32> to tensor<128x4096xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 4096] [1, 1] : tensor<?x4096xf32> into tensor<128x4096xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<128x4096xf32>, memref<128x4096xf32>) -> ()
    return
  }
  func.func @linear_bf16_lm_head(%x: memref<128x4096xf32>, %w: memref<32000x4096xbf16>, %n: index,
                   %out: memref<128x32000xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<128x4096xf32> to tensor<128x4096xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 4096] [1, 1] : tensor<128x4096xf32> to tensor<?x4096xf32>
    %wt = bufferization.to_tensor %w restrict : memref<32000x4096xbf16> to tensor<32000x4096xbf16>
    %y = moe.linear %xs, %wt : (tensor<?x4096xf32>, tensor<32000x4096xbf16>) -> tensor<?x32000xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<128x32000xf32> to tensor<128x32000xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 32000] [1, 1] : tensor<?x32000xf32> into tensor<128x32000xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<128x32000xf32>, memref<128x32000xf32>) -> ()
    return
  }
  // w2 in panel order ([4096, 14336] as [256, 14336, 16]): K = 14336, so a lane's stream
  // through a panel is 56 KiB and x (56 KiB of f32) no longer fits the L1 (decode only).
  func.func @linear_bf16_panels_w2(%x: memref<1x14336xf32>, %w: memref<256x14336x16xbf16>,
                   %n: index, %out: memref<1x4096xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<1x14336xf32> to tensor<1x14336xf32>
    %wt = bufferization.to_tensor %w restrict : memref<256x14336x16xbf16> to tensor<256x14336x16xbf16>
    %zero = arith.constant 0.0 : f32
    %e = tensor.empty() : tensor<1x4096xf32>
    %acc = linalg.fill ins(%zero : f32) outs(%e : tensor<1x4096xf32>) -> tensor<1x4096xf32>
    %y = linalg.generic {indexing_maps = [affine_map<(m, n, k) -> (m, k)>,
        affine_map<(m, n, k) -> (n floordiv 16, (k mod 8) * 1792 + k floordiv 8, n mod 16)>,
        affine_map<(m, n, k) -> (m, n)>], iterator_types = ["parallel", "parallel", "reduction"]}
        ins(%xt, %wt : tensor<1x14336xf32>, tensor<256x14336x16xbf16>) outs(%acc : tensor<1x4096xf32>)
        attrs = {moe.panels = #moe.panels<cols = 16, lanes = 8>} {
    ^bb0(%a: f32, %b: bf16, %c: f32):
      %bw = arith.extf %b : bf16 to f32
      %p = arith.mulf %a, %bw : f32
      %s = arith.addf %c, %p : f32
      linalg.yield %s : f32
    } -> tensor<1x4096xf32>
    bufferization.materialize_in_destination %y in restrict writable %out : (tensor<1x4096xf32>, memref<1x4096xf32>) -> ()
    return
  }
}
